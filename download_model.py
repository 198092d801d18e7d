#!/usr/bin/env python3
"""Download the released GPT-2 checkpoints into models/<name>/.

    python3 download_model.py 124M [355M ...] [--models_dir models] [--force]
                              [--base_url URL] [--retries 5] [--timeout 30]

Each file goes to `<file>.part` beside its final name and is renamed into place only once it
is verified: the byte count against Content-Length, the sizes and sha256 digests pinned in
PINS, and the server's Content-MD5 when it sends one. A dropped connection resumes from the
bytes on disk (Range + If-Range), in the same run or the next one. Verified files are
recorded in `models/<name>/.download.json`; a re-run hashes them again and skips those that
still match, so a truncated or corrupted file is fetched again. A lock file per model
directory makes a second concurrent run wait instead of writing the same `.part` file.

argparse, not fire: several positional names, and an unknown flag or a bad value must be a
usage error (exit 2) without a traceback, which argparse does by itself.
"""
import argparse
import base64
import contextlib
import email.utils
import hashlib
import http.client
import json
import os
import re
import signal
import sys
import time
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urljoin, urlsplit

import requests
import urllib3
from tqdm import tqdm

try:
    import fcntl
except ImportError:  # Windows: no lock; do not run two downloads of one model at once.
    fcntl = None

DEFAULT_BASE_URL = "https://openaipublic.blob.core.windows.net/gpt-2/models"
MODELS = ("124M", "355M", "774M", "1558M")
OLD_NAMES = {"117M": "124M", "345M": "355M"}  # the names the first two were released under
DATA = "model.ckpt.data-00000-of-00001"
FILENAMES = ("checkpoint", "encoder.json", "hparams.json", DATA, "model.ckpt.index",
             "model.ckpt.meta", "vocab.bpe")
MANIFEST = ".download.json"
LOCK = ".download.lock"
CHUNK = 1 << 16
BACKOFF_BASE, BACKOFF_CAP = 1.0, 30.0  # seconds; doubled for each attempt without progress
RETRY_AFTER_CAP = 300.0  # a server asking for a longer pause gets this much
EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_SIGINT, EXIT_SIGTERM = 0, 1, 2, 130, 143


@dataclass(frozen=True)
class Pin:
    """What we know about a released file before downloading it; None where we do not."""
    size: int | None = None
    sha256: str | None = None


def _pins() -> dict[str, dict[str, Pin]]:
    # Every size ships the same vocabulary (digests as published by tiktoken).
    vocab = {
        "encoder.json": Pin(1042301, "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"),
        "vocab.bpe": Pin(456318, "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"),
    }
    n_params = {"124M": 124_439_808, "355M": 354_823_168, "774M": 774_030_080, "1558M": 1_557_611_200}
    pins = {name: {**vocab, DATA: Pin(4 * n)} for name, n in n_params.items()}  # float32 weights
    pins["124M"].update({"checkpoint": Pin(77), "hparams.json": Pin(90),
                         "model.ckpt.index": Pin(5215), "model.ckpt.meta": Pin(471155)})
    return pins


PINS = _pins()  # tests replace this table to serve small made-up files


class DownloadError(Exception):
    """A failure the user can act on; its message is the one line printed (exit 1)."""


class UsageError(DownloadError):
    """A bad command line (exit 2)."""


class Terminated(BaseException):
    """SIGTERM, raised like KeyboardInterrupt so the partial file is closed and kept."""


class _Retry(Exception):
    """An attempt failed in a way another attempt may fix."""

    def __init__(self, reason: str, *, answered: bool = True, delay: float | None = None,
                 restart: bool = False):
        super().__init__(reason)
        self.reason, self.answered, self.delay, self.restart = reason, answered, delay, restart


# urllib3 wraps socket errors in its own classes; http.client may leak through on old versions.
_NETWORK_ERRORS = (requests.RequestException, urllib3.exceptions.HTTPError,
                   http.client.HTTPException, ConnectionError, TimeoutError)


@dataclass
class _Options:
    session: requests.Session
    timeout: float
    retries: int
    sleep: Callable[[float], None]
    progress: Callable[..., object]
    log: Callable[[str], None]


def resolve_names(names: list[str], log: Callable[[str], None]) -> list[str]:
    """Checks the model names (before any I/O) and maps the old names to the new ones."""
    valid = ", ".join(MODELS)
    if not names:
        raise UsageError(f"no model name given; valid names: {valid}")
    resolved = []
    for name in names:
        if name in OLD_NAMES:
            log(f"note: {name} is the old name of {OLD_NAMES[name]}; downloading {OLD_NAMES[name]}")
            name = OLD_NAMES[name]
        if name not in MODELS:
            raise UsageError(f"unknown model name {name!r}; valid names: {valid} "
                             f"(117M and 345M are accepted as the old names of 124M and 355M)")
        if name not in resolved:
            resolved.append(name)
    return resolved


def _refuse_bad_redirect(r: requests.Response, *args, **kwargs) -> None:
    """Response hook: runs before requests follows a redirect."""
    if not r.is_redirect:
        return
    target = urljoin(r.url, r.headers["Location"])
    old, new = urlsplit(r.url).scheme, urlsplit(target).scheme
    if new not in ("http", "https") or (old == "https" and new != "https"):
        raise DownloadError(f"refused redirect from {r.url} to {target}: only http(s) redirects "
                            f"that keep https are followed; check --base_url")


def make_session() -> requests.Session:
    session = requests.Session()  # trust_env: HTTP(S)_PROXY and NO_PROXY are honoured
    session.hooks["response"].append(_refuse_bad_redirect)
    return session


def _progress(*, total: int | None, initial: int, desc: str) -> tqdm:
    return tqdm(total=total, initial=initial, desc=desc, unit="B", unit_scale=True,
                unit_divisor=1024, disable=not sys.stderr.isatty())


def _note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Manifest:
    """`.download.json`: size and sha256 of verified files; validators of partial ones."""

    def __init__(self, directory: str):
        self.path = os.path.join(directory, MANIFEST)
        try:
            with open(self.path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError):
            data = {}
        data = data if isinstance(data, dict) else {}
        self.files = {k: v for k, v in data.get("files", {}).items() if isinstance(v, dict)}
        self.partial = {k: v for k, v in data.get("partial", {}).items() if isinstance(v, dict)}

    def save(self) -> None:
        tmp = f"{self.path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"files": self.files, "partial": self.partial}, f, indent=1, sort_keys=True)
        os.replace(tmp, self.path)


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


def _hash(path: str, *, md5: bool = False) -> tuple[int, str, str | None]:
    """(size, sha256 hex, base64 md5 or None) of a file on disk."""
    sha, md, size = hashlib.sha256(), hashlib.md5(usedforsecurity=False) if md5 else None, 0
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            size += len(block)
            sha.update(block)
            if md:
                md.update(block)
    return size, sha.hexdigest(), base64.b64encode(md.digest()).decode() if md else None


def _retry_after(r: requests.Response) -> float | None:
    value = r.headers.get("Retry-After", "").strip()
    if not value:
        return None
    with contextlib.suppress(ValueError):
        return max(0.0, float(value))
    with contextlib.suppress(TypeError, ValueError):
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    return None


def _reason(e: BaseException) -> str:
    """A few words for a network error (requests' own messages run to several lines)."""
    if isinstance(e, (requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError)):
        return "timed out"
    errno_text = re.findall(r"\[Errno -?\d+\] ([^'\")\]]+)", str(e))
    return errno_text[-1].strip() if errno_text else "connection broken"


def _int_header(r: requests.Response, name: str) -> int | None:
    with contextlib.suppress(TypeError, ValueError):
        return int(r.headers.get(name))
    return None


def _attempt(url: str, part: str, name: str, pin: Pin, meta: dict, manifest: Manifest,
             opts: _Options) -> None:
    """One GET from the bytes on disk to the end; returns when the body is complete."""
    offset = _size(part)
    headers = {"Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        validator = meta.get("etag") or meta.get("last_modified")
        if validator:
            headers["If-Range"] = validator
    try:
        r = opts.session.get(url, headers=headers, stream=True, timeout=opts.timeout)
    except (requests.ConnectionError, requests.Timeout) as e:
        raise _Retry(_reason(e), answered=isinstance(e, requests.ReadTimeout)) from None
    except requests.RequestException as e:
        raise DownloadError(f"cannot download {url}: {e}") from None
    with r:
        status = r.status_code
        if status in (408, 429) or status >= 500:
            raise _Retry(f"HTTP {status}", delay=_retry_after(r))
        if status == 416 and offset:
            m = re.fullmatch(r"bytes \*/(\d+)", r.headers.get("Content-Range", "").strip())
            if m and int(m.group(1)) == offset:
                meta["size"] = offset  # every byte was already on disk
                return
            raise _Retry("the server cannot serve the rest of the partial file", restart=True)
        if status not in (200, 206):
            raise DownloadError(f"HTTP {status} for {url}: check the model name and --base_url")
        # Asked for identity; a server that gzips anyway is decoded, so the disk holds the file's
        # bytes (which a later Range request for the rest continues correctly).
        encoded = r.headers.get("Content-Encoding", "identity").strip().lower() not in ("identity", "")
        length = None if encoded else _int_header(r, "Content-Length")  # bytes in this body
        if status == 206:
            m = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", r.headers.get("Content-Range", "").strip())
            if not m or int(m.group(1)) != offset or encoded:
                raise _Retry(f"asked for bytes from {offset:,}, the server answered "
                             f"{r.headers.get('Content-Range')!r}; restarting from 0", restart=True)
            total = int(m.group(3))
        else:
            if offset:
                opts.log(f"{url}: the server sent the whole file, not the rest; restarting from 0")
            offset, total = 0, length
            meta.pop("md5", None)
            if not encoded and r.headers.get("Content-MD5"):
                meta["md5"] = r.headers["Content-MD5"].strip()
        if r.headers.get("x-ms-blob-content-md5"):  # Azure: the whole blob's MD5, even for a range
            meta["md5"] = r.headers["x-ms-blob-content-md5"].strip()
        if total is not None and pin.size is not None and total != pin.size:
            _remove(part)
            raise DownloadError(f"{url} has {total:,} bytes, the released file {pin.size:,}: "
                                f"the server offers a different file; check --base_url")
        etag = r.headers.get("ETag", "")
        meta.update(url=url, size=total, etag=None if etag.startswith("W/") else etag or None,
                    last_modified=r.headers.get("Last-Modified"))
        manifest.partial[name] = meta
        manifest.save()
        expected = pin.size if pin.size is not None else total
        bar = opts.progress(total=expected, initial=offset, desc=f"Fetching {name}")
        written = 0
        try:
            with open(part, "ab" if status == 206 else "wb") as f:
                while True:
                    try:
                        chunk = r.raw.read(CHUNK, decode_content=encoded)
                    except _NETWORK_ERRORS as e:
                        raise _Retry(f"connection lost: {_reason(e)}") from None
                    if not chunk:
                        break
                    f.write(chunk)
                    written += len(chunk)
                    bar.update(len(chunk))
                    if expected is not None and offset + written > expected:
                        _remove(part)
                        raise DownloadError(f"{url} sent more than its {expected:,} bytes; "
                                            f"check --base_url")
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            raise DownloadError(f"cannot write {part}: {e.strerror}: free some disk space or "
                                f"choose another --models_dir, then run again to resume") from None
        finally:
            bar.close()
        if expected is not None and offset + written < expected:  # counted: urllib3 may not
            raise _Retry(f"connection closed after {offset + written:,} of {expected:,} bytes")


def _download(url: str, part: str, name: str, pin: Pin, manifest: Manifest, opts: _Options) -> None:
    """Fills `part` with the whole file, resuming and retrying; DownloadError when it cannot."""
    meta = manifest.partial.get(name, {}) if os.path.exists(part) else {}
    failures, answered = 0, False
    while True:
        have = _size(part)
        total = pin.size if pin.size is not None else meta.get("size")
        if total is not None and have > total:
            opts.log(f"{part} is longer than the file; restarting from 0")
            _remove(part)
            have = 0
        if have and have == total:
            return  # every byte is on disk already (killed before the rename): just verify
        try:
            _attempt(url, part, name, pin, meta, manifest, opts)
            return
        except _Retry as e:
            if e.restart:
                _remove(part)
            answered = answered or e.answered
            failures = 0 if _size(part) > have else failures + 1  # the budget resets on progress
            if failures > opts.retries:
                if not answered:
                    host = urlsplit(url).hostname
                    raise DownloadError(f"cannot reach {host}: check the network or proxy "
                                        f"({e.reason})") from None
                total = pin.size if pin.size is not None else meta.get("size")
                raise DownloadError(f"gave up on {url} ({e.reason}) with {_size(part):,} of "
                                    f"{total if total is None else format(total, ',')} bytes: "
                                    f"run the same command again to resume") from None
            backoff = BACKOFF_BASE * 2 ** (failures - 1) if failures else 0.0
            delay = min(max(backoff, e.delay or 0.0), BACKOFF_CAP if e.delay is None else RETRY_AFTER_CAP)
            opts.log(f"{url}: {e.reason}; retrying" + (f" in {delay:g} s" if delay else ""))
            if delay:
                opts.sleep(delay)


def _publish(part: str, final: str) -> None:
    os.replace(part, final)  # atomic: the final name only ever holds a verified file


def _fetch(model: str, name: str, directory: str, manifest: Manifest, *, base_url: str,
           force: bool, opts: _Options) -> None:
    final = os.path.join(directory, name)
    part = final + ".part"
    url = f"{base_url.rstrip('/')}/{model}/{name}"
    pin = PINS.get(model, {}).get(name, Pin())
    record = manifest.files.get(name) or {}
    if force:
        _remove(part)
        manifest.partial.pop(name, None)
    elif os.path.exists(final) and not record and pin.sha256 is None:
        # Not ours (say the original script's, which wrote straight to the final name and
        # could leave an error page there): only a file of the pinned size is kept, to be
        # verified; anything else is fetched again from zero, never resumed, so an error
        # page can never become the start of a model file.
        if pin.size is not None and os.path.getsize(final) == pin.size:
            os.replace(final, part)
        else:
            opts.log(f"{final}: not downloaded by this script and not verifiable; "
                     f"downloading it again")
            _remove(final)
            _remove(part)
        manifest.partial.pop(name, None)
    elif os.path.exists(final):
        size, sha256, _ = _hash(final)
        want_size = pin.size if pin.size is not None else record.get("size")
        want_sha = pin.sha256 or record.get("sha256")
        if size == want_size and sha256 == want_sha:
            opts.log(f"{final}: already downloaded and verified")
            return
        opts.log(f"{final}: {size:,} bytes with sha256 {sha256[:12]}..., expected {want_size} "
                 f"bytes with sha256 {str(want_sha)[:12]}...; downloading it again")
        _remove(final)
        _remove(part)
        manifest.files.pop(name, None)
        manifest.partial.pop(name, None)
    _download(url, part, name, pin, manifest, opts)
    meta = manifest.partial.get(name, {})
    size, sha256, md5 = _hash(part, md5=bool(meta.get("md5")))
    problem = None
    if pin.size is not None and size != pin.size:
        problem = f"{size:,} bytes, the released file has {pin.size:,}"
    elif pin.sha256 and sha256 != pin.sha256:
        problem = f"sha256 {sha256} differs from the released file's {pin.sha256}"
    elif meta.get("md5") and md5 != meta["md5"]:
        problem = f"MD5 {md5} differs from the server's Content-MD5 {meta['md5']}"
    if problem:
        _remove(part)
        manifest.partial.pop(name, None)
        manifest.save()
        raise DownloadError(f"{final}: {problem}; removed the download: run again, or check "
                            f"--base_url")
    _publish(part, final)
    manifest.files[name] = {"size": size, "sha256": sha256}
    manifest.partial.pop(name, None)
    manifest.save()
    opts.log(f"{final}: {size:,} bytes, verified")


@contextlib.contextmanager
def _locked(directory: str, log: Callable[[str], None]):
    """Holds `directory/.download.lock` so that two runs never write the same file."""
    with open(os.path.join(directory, LOCK), "a") as f:
        if fcntl is not None:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log(f"another download into {directory} is running; waiting for it to finish")
                fcntl.flock(f, fcntl.LOCK_EX)
        yield


def download(model_names: list[str], *, models_dir: str = "models",
             base_url: str = DEFAULT_BASE_URL, force: bool = False, retries: int = 5,
             timeout: float = 30.0, session: requests.Session | None = None,
             sleep: Callable[[float], None] = time.sleep, progress: Callable[..., object] = _progress,
             log: Callable[[str], None] = _note) -> None:
    """Downloads and verifies every file of each model into `models_dir/<name>/`.

    Raises UsageError for a bad model name (before any I/O) and DownloadError for a failure.
    """
    names = resolve_names(list(model_names), log)
    opts = _Options(session or make_session(), timeout, retries, sleep, progress, log)
    for model in names:
        directory = os.path.join(models_dir, model)
        try:
            os.makedirs(directory, exist_ok=True)
            with _locked(directory, log):
                manifest = Manifest(directory)
                for name in FILENAMES:
                    _fetch(model, name, directory, manifest, base_url=base_url, force=force,
                           opts=opts)
        except OSError as e:
            raise DownloadError(f"cannot write in {directory}: {e}: choose another "
                                f"--models_dir or fix its permissions") from None


def _parser() -> argparse.ArgumentParser:
    def count(value: str) -> int:
        if not value.isdigit():
            raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {value!r}")
        return int(value)

    def seconds(value: str) -> float:
        try:
            number = float(value)
        except ValueError:
            number = -1.0
        if not 0 < number < float("inf"):
            raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {value!r}")
        return number

    def url(value: str) -> str:
        if urlsplit(value).scheme not in ("http", "https") or not urlsplit(value).netloc:
            raise argparse.ArgumentTypeError(f"expected an http(s) URL, got {value!r}")
        return value

    p = argparse.ArgumentParser(
        prog="download_model.py",
        description="Download released GPT-2 checkpoints, resumable and verified.",
        epilog="Exit codes: 0 done, 1 failed (run again to resume), 2 usage error, "
               "130 interrupted, 143 terminated.")
    p.add_argument("model_names", nargs="+", metavar="MODEL",
                   help=f"one or more of {', '.join(MODELS)} (117M and 345M are old names)")
    p.add_argument("--models_dir", default="models", help="where to put <MODEL>/ (default: models)")
    p.add_argument("--force", action="store_true", help="download again even if verified files exist")
    p.add_argument("--base_url", type=url, default=os.environ.get("GPT2_BASE_URL") or DEFAULT_BASE_URL,
                   help="where the files are: <base_url>/<MODEL>/<file> (default: $GPT2_BASE_URL, "
                        f"else {DEFAULT_BASE_URL})")
    p.add_argument("--retries", type=count, default=5,
                   help="attempts without progress before giving up on a file (default: 5)")
    p.add_argument("--timeout", type=seconds, default=30.0,
                   help="seconds to wait to connect or for the next bytes (default: 30)")
    return p


def _on_sigterm(signum, frame):
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        names = resolve_names(args.model_names, _note)
    except UsageError as e:
        parser.error(str(e))
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        download(names, models_dir=args.models_dir, base_url=args.base_url, force=args.force,
                 retries=args.retries, timeout=args.timeout)
    except DownloadError as e:
        print(f"download_model.py: error: {e}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("\ninterrupted: partial files are kept; run the same command again to resume",
              file=sys.stderr)
        return EXIT_SIGINT
    except Terminated:
        print("terminated: partial files are kept; run the same command again to resume",
              file=sys.stderr)
        return EXIT_SIGTERM
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
