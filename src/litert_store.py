"""The LiteRT exports of a model, cached under `<model_dir>/litert/`.

Each export is a directory `<dtype>-<key>/` holding the parts `part-<i>-of-<n>.tflite` and a
`manifest.json` with each part's size and sha256. The key is a digest of the checkpoint's
index (which records a checksum of every tensor), hparams.json, the dtype, the layer plan
and EXPORTER_VERSION, so new weights or a new exporter never reuse an old file. An export
is written into a temporary directory and renamed into place when complete, under a lock,
so a crash, a full disk or a second process never leaves a half-written export under the
final name; a damaged or stale export is removed and rebuilt, never loaded.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from typing import Callable

import checkpoint
import litert_export
from model import HParams

# Bump when the exported graph changes: every cached export is then rebuilt.
EXPORTER_VERSION = 2
MANIFEST = "manifest.json"

Progress = Callable[[str], None]


def export_dir(model_dir: str) -> str:
    return os.path.join(model_dir, "litert")


def cache_key(model_dir: str, hparams: HParams, dtype: str) -> str:
    digest = hashlib.sha256()
    prefix = checkpoint.checkpoint_prefix(model_dir)  # a training run's newest checkpoint
    for path in (prefix + ".index", os.path.join(model_dir, "hparams.json")):
        with open(path, "rb") as f:
            digest.update(hashlib.sha256(f.read()).digest())
    layers = [(r.start, r.stop) for r in litert_export.plan(hparams)]
    digest.update(repr((EXPORTER_VERSION, dtype, layers)).encode())
    return digest.hexdigest()[:16]


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check(folder: str, key: str) -> list[str]:
    """The part files of a complete, intact export in `folder`; ValueError says what is
    wrong otherwise."""
    try:
        with open(os.path.join(folder, MANIFEST), encoding="utf-8") as f:
            manifest = json.load(f)
        parts = manifest["parts"]
        if manifest["key"] != key:
            raise ValueError("it was made from other weights or by another exporter version")
    except FileNotFoundError:
        raise ValueError("its manifest is missing") from None
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"its manifest is damaged ({e})") from None
    paths = []
    for part in parts:
        path = os.path.join(folder, os.path.basename(part["file"]))
        size = os.path.getsize(path) if os.path.isfile(path) else None
        if size != part["bytes"]:
            raise ValueError(f"{os.path.basename(path)} is "
                             f"{'missing' if size is None else f'{size:,} bytes'}, "
                             f"expected {part['bytes']:,}")
        if file_sha256(path) != part["sha256"]:
            raise ValueError(f"{os.path.basename(path)} does not match its checksum")
        paths.append(path)
    return paths


def ensure(model_dir: str, *, dtype: str, progress: Progress = lambda message: None,
           convert=None) -> list[str]:
    """The paths of the model's LiteRT parts for `dtype`, exported first if absent, stale
    or damaged. ValueError (with the remedy) when the export cannot be made or written.
    `convert` (litert_export.convert_part's signature) is a seam for tests."""
    convert = convert or litert_export.convert_part
    if dtype not in litert_export.DTYPES:
        raise ValueError(f"dtype {dtype!r} is not exported to LiteRT: use one of "
                         f"{', '.join(litert_export.DTYPES)}")
    hparams = HParams.from_json(os.path.join(model_dir, "hparams.json"))
    checkpoint.check_present(checkpoint.checkpoint_prefix(model_dir))
    key = cache_key(model_dir, hparams, dtype)
    root = export_dir(model_dir)
    final = os.path.join(root, f"{dtype}-{key}")
    with locked(root):
        if os.path.isdir(final):
            try:
                return check(final, key)
            except ValueError as e:
                progress(f"the cached export {final} is unusable ({e}): rebuilding it")
                shutil.rmtree(final, ignore_errors=True)
        for old in sorted(os.listdir(root)):
            path = os.path.join(root, old)
            if old.startswith((f"{dtype}-", f".tmp-{dtype}-")) and os.path.isdir(path):
                if not old.startswith("."):
                    progress(f"removing the stale export {path}")
                shutil.rmtree(path, ignore_errors=True)
        write(model_dir, hparams, dtype=dtype, key=key, final=final, progress=progress,
              convert=convert)
    return check(final, key)


@contextlib.contextmanager
def locked(root: str):
    """Holds `root/.lock`, so two processes never export the same model at once."""
    try:
        os.makedirs(root, exist_ok=True)
        handle = open(os.path.join(root, ".lock"), "a+")
    except OSError as e:
        raise ValueError(unwritable(root, e)) from None
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def write(model_dir: str, hparams: HParams, *, dtype: str, key: str, final: str,
          progress: Progress, convert) -> None:
    """Converts every part into a temporary directory, then renames it to `final`."""
    parts = litert_export.plan(hparams)
    name = os.path.basename(model_dir.rstrip(os.sep))
    progress(f"exporting {name} to LiteRT ({dtype}) in {len(parts)} part(s); this happens "
             f"once, later runs load {final}")
    temp = tempfile.mkdtemp(prefix=f".tmp-{dtype}-", dir=os.path.dirname(final))
    try:
        manifest = {"key": key, "dtype": dtype, "exporter": EXPORTER_VERSION, "parts": []}
        for i, layers in enumerate(parts):
            start = time.monotonic()
            progress(f"part {i + 1} of {len(parts)} (layers {layers.start}-"
                     f"{layers.stop - 1}): converting")
            blob = convert(model_dir, hparams, layers, first=i == 0, last=i == len(parts) - 1,
                           dtype=dtype)
            file = f"part-{i + 1}-of-{len(parts)}.tflite"
            write_file(os.path.join(temp, file), blob)
            manifest["parts"].append({"file": file, "bytes": len(blob),
                                      "sha256": hashlib.sha256(blob).hexdigest()})
            progress(f"part {i + 1} of {len(parts)}: {len(blob) / 1e6:,.0f} MB in "
                     f"{time.monotonic() - start:.0f} s")
            del blob
        write_file(os.path.join(temp, MANIFEST),
                   (json.dumps(manifest, indent=1) + "\n").encode())
        os.rename(temp, final)
    except OSError as e:
        raise ValueError(unwritable(os.path.dirname(final), e)) from None
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def write_file(path: str, data: bytes) -> None:
    """Writes and syncs one file (a seam: tests make it fail like a full disk)."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def unwritable(folder: str, error: OSError) -> str:
    reason = error.strerror or str(error)
    fix = ("free some disk space" if error.errno in (errno.ENOSPC, errno.EDQUOT) else
           "make it writable")
    return (f"cannot write the LiteRT export into {folder} ({reason}): {fix} and run again, "
            f"or use --backend tf")
