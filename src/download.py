"""Resumable, verified, atomic downloads of single files over HTTP(S).

The building block of `download_model.py` (the released checkpoints, Hub models) and of
anything else that fetches data files:

    import download
    download.fetch("https://example.org/data/test.jsonl", "data/test.jsonl",
                   pin=download.Pin(size=1_234, sha256="9f86d0..."))

    with download.Folder("models/124M", download.Options(retries=3)) as folder:
        for name in names:          # several files under one lock and one manifest
            folder.fetch(f"{base}/{name}", name, pins.get(name, download.Pin()))

What it guarantees:
- A file is written to `<name>.part` and renamed to `<name>` only once verified: its byte
  count against Content-Length, `Pin.size`/`Pin.sha256` when given, the server's Content-MD5
  when sent. The final name never holds a partial or unverified file.
- A dropped connection, a timeout, a 408/429/5xx resumes from the bytes on disk (`Range` +
  `If-Range`), in the same call or a later one, with capped exponential backoff; a server that
  ignores the range or answers another one restarts from zero instead of splicing.
- `<dir>/.download.json` records the size and sha256 of each verified file (and the
  validators of partial ones); a later call hashes the file again and skips it when it still
  matches, so a truncated or altered file is fetched again.
- `<dir>/.download.lock` makes a second process wait instead of writing the same file.
- Every failure is a `DownloadError` whose message is one line saying what to do.
"""
from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os

from download_http import (DownloadError, Options, Pin, make_session, note, progress_bar,
                           remove, transfer)

try:
    import fcntl
except ImportError:  # Windows: no lock; do not run two downloads into one folder at once.
    fcntl = None

__all__ = ["DownloadError", "Folder", "Options", "Pin", "fetch", "make_session", "note",
           "progress_bar"]

MANIFEST = ".download.json"
LOCK = ".download.lock"


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


def file_digest(path: str, *, md5: bool = False) -> tuple[int, str, str | None]:
    """(size, sha256 hex, base64 MD5 or None) of a file on disk."""
    sha, md, size = hashlib.sha256(), hashlib.md5(usedforsecurity=False) if md5 else None, 0
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            size += len(block)
            sha.update(block)
            if md:
                md.update(block)
    return size, sha.hexdigest(), base64.b64encode(md.digest()).decode() if md else None


def _publish(part: str, final: str) -> None:
    os.replace(part, final)  # atomic: the final name only ever holds a verified file


class Folder:
    """A directory files are downloaded into, held under its lock while the `with` lasts."""

    def __init__(self, directory: str, options: Options | None = None):
        self.directory = directory
        self.options = options or Options()
        self._lock = None

    def __enter__(self) -> "Folder":
        try:
            os.makedirs(self.directory, exist_ok=True)
            self._lock = open(os.path.join(self.directory, LOCK), "a")
            if fcntl is not None:
                try:
                    fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    self.options.log(f"another download into {self.directory} is running; "
                                     f"waiting for it to finish")
                    fcntl.flock(self._lock, fcntl.LOCK_EX)
        except OSError as e:
            self.__exit__()
            raise self._cannot_write(e) from None
        self.manifest = Manifest(self.directory)
        return self

    def __exit__(self, *exc) -> None:
        if self._lock is not None:
            self._lock.close()  # closing releases the lock
            self._lock = None

    def _cannot_write(self, e: OSError) -> DownloadError:
        return DownloadError(f"cannot write in {self.directory}: {e}: choose another "
                             f"--models_dir or fix its permissions")

    def fetch(self, url: str, name: str, pin: Pin = Pin(), *, force: bool = False) -> dict:
        """Makes `<directory>/<name>` a verified copy of `url`; returns its record
        `{"size": ..., "sha256": ...}`. With `force`, downloads again even if verified (the
        old file stays in place until its replacement has been verified)."""
        try:
            return self._fetch(url, name, pin, force)
        except OSError as e:
            raise self._cannot_write(e) from None

    def _fetch(self, url: str, name: str, pin: Pin, force: bool) -> dict:
        opts, manifest = self.options, self.manifest
        final = os.path.join(self.directory, name)
        part = final + ".part"
        record = manifest.files.get(name) or {}
        if force:
            remove(part)
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
                remove(final)
                remove(part)
            manifest.partial.pop(name, None)
        elif os.path.exists(final):
            size, sha256, _ = file_digest(final)
            want_size = pin.size if pin.size is not None else record.get("size")
            want_sha = pin.sha256 or record.get("sha256")
            if size == want_size and sha256 == want_sha:
                opts.log(f"{final}: already downloaded and verified")
                return record
            opts.log(f"{final}: {size:,} bytes with sha256 {sha256[:12]}..., expected {want_size} "
                     f"bytes with sha256 {str(want_sha)[:12]}...; downloading it again")
            remove(final)
            remove(part)
            manifest.files.pop(name, None)
            manifest.partial.pop(name, None)
        meta = manifest.partial.get(name, {}) if os.path.exists(part) else {}

        def save(meta: dict) -> None:
            manifest.partial[name] = meta
            manifest.save()

        transfer(url, part, pin, meta, opts, save)
        size, sha256, md5 = file_digest(part, md5=bool(meta.get("md5")))
        problem = None
        if pin.size is not None and size != pin.size:
            problem = f"{size:,} bytes, the released file has {pin.size:,}"
        elif pin.sha256 and sha256 != pin.sha256:
            problem = f"sha256 {sha256} differs from the released file's {pin.sha256}"
        elif meta.get("md5") and md5 != meta["md5"]:
            problem = f"MD5 {md5} differs from the server's Content-MD5 {meta['md5']}"
        if problem:
            remove(part)
            manifest.partial.pop(name, None)
            manifest.save()
            raise DownloadError(f"{final}: {problem}; removed the download: run again, or check "
                                f"--base_url")
        _publish(part, final)
        manifest.files[name] = {"size": size, "sha256": sha256}
        manifest.partial.pop(name, None)
        manifest.save()
        opts.log(f"{final}: {size:,} bytes, verified")
        return manifest.files[name]


def fetch(url: str, path: str, *, pin: Pin = Pin(), force: bool = False,
          options: Options | None = None) -> dict:
    """Downloads one file to `path` (see the module docstring); returns its record."""
    directory, name = os.path.split(os.path.abspath(path))
    with Folder(directory, options) as folder:
        return folder.fetch(url, name, pin, force=force)

