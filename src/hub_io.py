"""Files of a conversion: safetensors weights read one tensor at a time (single or sharded),
and a destination directory that appears whole or not at all.

`hub_format.py` holds the names and the rules; this module only moves bytes, and turns
every problem with them into a one-line `ValueError` that names the file or tensor. The Hub
download uses `read_index` and `check_destination` too: their names and arguments stay.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from typing import Iterator

import numpy as np

WEIGHTS = "model.safetensors"
INDEX = "model.safetensors.index.json"
FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")  # widened or narrowed to float32 on reading


def detect_format(src_dir: str) -> str:
    """"released" (hparams.json + model.ckpt.*) or "hub" (config.json + safetensors)."""
    if not os.path.isdir(src_dir):
        raise ValueError(f"{src_dir} not found: give a model directory (released layout "
                         f"or Hugging Face format)" if not os.path.exists(src_dir) else
                         f"{src_dir} is not a directory: give a model directory")
    has = {name for name in os.listdir(src_dir)
           if os.path.isfile(os.path.join(src_dir, name))}
    if {"hparams.json", "config.json"} <= has:
        raise ValueError(f"{src_dir} holds both hparams.json (released layout) and "
                         f"config.json (Hugging Face format): keep one of them")
    if "hparams.json" in has:
        return "released"
    if "config.json" not in has:
        raise ValueError(f"{src_dir} holds neither a released-layout model (hparams.json, "
                         f"model.ckpt.*) nor a Hugging Face one (config.json, {WEIGHTS})")
    if not has & {WEIGHTS, INDEX}:
        others = sorted(has & {"pytorch_model.bin", "tf_model.h5", "flax_model.msgpack"})
        found = f" (only {', '.join(others)}, which is not read here)" if others else ""
        raise ValueError(f"{src_dir} has config.json but no {WEIGHTS} or {INDEX}{found}: "
                         f"fetch the safetensors weights, or save the model with "
                         f"transformers' save_pretrained(safe_serialization=True)")
    return "hub"


def damaged(path: str, reason: str) -> ValueError:
    return ValueError(f"{path} is not a complete safetensors file ({reason}): it is "
                      f"truncated or damaged; download it again")


class SafetensorsReader:
    """The tensors of a Hub directory: `model.safetensors`, or the shards that
    `model.safetensors.index.json` lists. Every file's header is read and checked against
    the file's size on opening, so a truncated file is refused before anything is written;
    data is read by `pread`, one tensor at a time, never mapped."""

    def __init__(self, src_dir: str):
        import safetensors
        self._stack = contextlib.ExitStack()
        self.where: dict[str, str] = {}  # tensor name -> the file that holds it
        self._files: dict[str, object] = {}  # path -> its open safe_open
        single, index = os.path.join(src_dir, WEIGHTS), os.path.join(src_dir, INDEX)
        shards = None if os.path.isfile(single) else read_index(index)
        try:
            for file in [WEIGHTS] if shards is None else dict.fromkeys(shards.values()):
                path = os.path.join(src_dir, file)
                try:
                    self._files[path] = self._stack.enter_context(
                        safetensors.safe_open(path, framework="np", backend="pread"))
                except FileNotFoundError:
                    raise ValueError(f"{path} is missing: {index} lists it; download "
                                     f"it again") from None
                except safetensors.SafetensorError as e:
                    raise damaged(path, str(e).strip().splitlines()[0]) from None
                except OSError as e:
                    raise ValueError(f"cannot read {path}: {e.strerror}") from None
            if shards is None:
                self.where = dict.fromkeys(self._files[single].keys(), single)
            held = {path: set(f.keys()) for path, f in self._files.items()}
            for name, file in (shards or {}).items():
                path = os.path.join(src_dir, file)
                if name not in held[path]:
                    raise ValueError(f"{index} places tensor {name} in {file}, which does "
                                     f"not hold it: download the shards again")
                self.where[name] = path
        except BaseException:
            self.close()
            raise

    def shape(self, name: str) -> list[int]:
        return list(self._files[self.where[name]].get_slice(name).get_shape())

    def dtype(self, name: str) -> str:
        return self._files[self.where[name]].get_slice(name).get_dtype()

    def read(self, name: str) -> np.ndarray:
        """Tensor `name` as float32 (its dtype checked by the caller to be a float)."""
        if self.dtype(name) == "BF16":
            import ml_dtypes  # noqa: F401 -- TensorFlow's dependency; registers bfloat16
        array = self._files[self.where[name]].get_tensor(name)
        return array.astype(np.float32, copy=False)

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> "SafetensorsReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_index(path: str) -> dict[str, str]:
    """`weight_map` of a sharded checkpoint's index: tensor name -> shard file name."""
    try:
        with open(path, encoding="utf-8") as f:
            index = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON ({e}): download it again") from None
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise ValueError(f"{path} has no \"weight_map\" of tensor names to shard files: "
                         f"download it again")
    for name, file in weight_map.items():
        if (not isinstance(file, str) or os.path.basename(file) != file
                or file in ("", ".", "..")):
            raise ValueError(f"{path} places tensor {name} in {file!r}, which is not a file "
                             f"name beside it")
    return weight_map


def write_safetensors(tensors: dict[str, np.ndarray], path: str) -> None:
    """One file, no copy of the tensors (safetensors >= 0.8 writes from their buffers).
    The "format" entry is what transformers' loader expects of a PyTorch-side file."""
    from safetensors.numpy import save_file
    save_file(tensors, path, metadata={"format": "pt"})
    os.chmod(path, 0o666 & ~current_umask())  # it is created private (0600)


def check_destination(dst_dir: str, *, force: bool, src_dir: str) -> None:
    """Refuses a destination that would lose data: a file, a non-empty directory (unless
    `force`), the source itself or a directory holding it."""
    dst, src = os.path.realpath(dst_dir), os.path.realpath(src_dir)
    if dst == src or src.startswith(dst + os.sep):
        raise ValueError(f"the destination {dst_dir} would replace the source {src_dir}: "
                         f"choose another destination")
    if os.path.exists(dst_dir) and not os.path.isdir(dst_dir):
        raise ValueError(f"the destination {dst_dir} is a file: choose a directory name")
    if os.path.isdir(dst_dir) and os.listdir(dst_dir) and not force:
        raise ValueError(f"the destination {dst_dir} exists and is not empty: choose "
                         f"another one, or replace it with --force")


@contextlib.contextmanager
def staged_directory(dst_dir: str) -> Iterator[str]:
    """A fresh directory beside `dst_dir` to write into; when the block ends normally it
    replaces `dst_dir` by renames, and on any error or interruption it is removed, so that
    `dst_dir` is never partly written."""
    parent = os.path.dirname(os.path.abspath(dst_dir))
    name = os.path.basename(os.path.abspath(dst_dir))
    try:
        os.makedirs(parent, exist_ok=True)
        stage = tempfile.mkdtemp(prefix=f".{name}.partial-", dir=parent)
    except OSError as e:
        raise ValueError(f"cannot write in {parent}: {e.strerror}") from None
    try:
        yield stage
        os.chmod(stage, 0o777 & ~current_umask())  # mkdtemp's 0700 is for the work only
        replace_directory(stage, dst_dir)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def replace_directory(stage: str, dst_dir: str) -> None:
    if os.path.isdir(dst_dir) and not os.listdir(dst_dir):
        os.rmdir(dst_dir)
    if not os.path.exists(dst_dir):
        os.rename(stage, dst_dir)
        return
    old = tempfile.mkdtemp(prefix=f".{os.path.basename(stage)}.old-",
                           dir=os.path.dirname(stage))
    os.rmdir(old)  # a free name beside both, for the directory being replaced
    os.rename(dst_dir, old)
    try:
        os.rename(stage, dst_dir)
    except BaseException:
        os.rename(old, dst_dir)
        raise
    shutil.rmtree(old, ignore_errors=True)


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
