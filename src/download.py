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
  when sent. The final name never holds a partial or unverified file, and a file already
  there is never removed before its verified replacement exists.
- A dropped connection, a timeout, a 408/429/5xx resumes from the bytes on disk (`Range` +
  `If-Range`), in the same call or a later one, with capped exponential backoff; a server that
  ignores the range or answers another one restarts from zero instead of splicing. Bytes of a
  `.part` file are resumed only under a validator recorded for the same URL; a link planted
  at `.part` is removed, never written through.
- A web page (text/html, or a body starting with <html>) is never taken for the file; a body
  that goes on past its size, or past `Pin.max_size`, is cut off; less than 1 KiB in
  `timeout` seconds is a stall; a host that cannot be reached at all is retried once.
- `<dir>/.download.json` records the size and sha256 of each verified file (and the
  validators of partial ones); a later call hashes the file again and skips it when it still
  matches, so a truncated or altered file is fetched again. A damaged manifest counts as empty.
- `<dir>/.download.lock` makes a second process wait instead of writing the same file; it
  exists only while a download runs, and a folder a failed first download made is removed.
- Every failure is a `DownloadError` whose message is one line saying what to do; `Options`
  lets the caller name its own flags in those remedies.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import stat
import tempfile

from download_http import DownloadError, Options, Pin, head, make_session, note, progress_bar
from download_part import cannot_write, part_size, remove, transfer

try:
    import fcntl
except ImportError:  # Windows: no lock; do not run two downloads into one folder at once.
    fcntl = None

__all__ = ["DownloadError", "Folder", "Options", "Pin", "fetch", "head", "make_session", "note",
           "progress_bar"]

MANIFEST = ".download.json"
LOCK = ".download.lock"
MANIFEST_CAP = 1 << 20  # bytes: a manifest lists a few files
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _verified_record(v) -> bool:
    return (isinstance(v, dict) and _count(v.get("size"))
            and isinstance(v.get("sha256"), str) and bool(_SHA256.fullmatch(v["sha256"])))


def _partial_record(v) -> bool:
    return (isinstance(v, dict) and isinstance(v.get("url"), str)
            and all(v.get(k) is None or isinstance(v[k], str) for k in ("etag", "last_modified", "md5"))
            and (v.get("size") is None or _count(v["size"])))


class Manifest:
    """`.download.json`: size and sha256 of verified files; validators of partial ones.
    A manifest that cannot be read, or of any other shape, counts as empty (entry by entry):
    files are then verified against their pins, or fetched again."""

    def __init__(self, directory: str):
        self.directory = directory
        self.path = os.path.join(directory, MANIFEST)
        try:
            with open(self.path, "rb") as f:
                text = f.read(MANIFEST_CAP + 1)
            data = json.loads(text) if len(text) <= MANIFEST_CAP else {}
        except (OSError, ValueError, RecursionError):  # ValueError: bad JSON, UTF-8, huge ints
            data = {}
        data = data if isinstance(data, dict) else {}
        files, partial = data.get("files"), data.get("partial")
        self.files = {k: v for k, v in files.items() if _verified_record(v)} \
            if isinstance(files, dict) else {}
        self.partial = {k: v for k, v in partial.items() if _partial_record(v)} \
            if isinstance(partial, dict) else {}

    def save(self) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=MANIFEST + ".", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({"files": self.files, "partial": self.partial}, f, indent=1, sort_keys=True)
            os.replace(tmp, self.path)
        except BaseException:
            remove(tmp)
            raise


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


def _open_lock(path: str) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o644)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(f"{path} is not a regular file")
    return fd


class Folder:
    """A directory files are downloaded into, held under its lock while the `with` lasts."""

    def __init__(self, directory: str, options: Options | None = None):
        self.directory = directory
        self.options = options or Options()
        self._lock: int | None = None

    def __enter__(self) -> "Folder":
        lock = os.path.join(self.directory, LOCK)
        self._made = not os.path.isdir(self.directory)
        try:
            while not self._take(lock):
                pass  # the holder removed the lock file as it left: take a fresh one
        except OSError as e:
            self.__exit__()
            where = lock if os.path.isdir(self.directory) else self.directory
            raise cannot_write(where, e, self.options) from None
        self.manifest = Manifest(self.directory)
        return self

    def _take(self, lock: str) -> bool:
        """Opens and locks `lock`; False if it was unlinked while this process waited."""
        os.makedirs(self.directory, exist_ok=True)
        try:
            self._lock = _open_lock(lock)
        except FileNotFoundError:
            return False  # the folder was removed between the two calls: make it again
        if fcntl is None:
            return True
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.options.log(f"another download into {self.directory} is running; "
                             f"waiting for it to finish")
            fcntl.flock(self._lock, fcntl.LOCK_EX)
        try:
            held, named = os.fstat(self._lock), os.stat(lock, follow_symlinks=False)
            current = (held.st_dev, held.st_ino) == (named.st_dev, named.st_ino)
        except FileNotFoundError:
            current = False
        if not current:
            os.close(self._lock)
            self._lock = None
        return current

    def __exit__(self, *exc) -> None:
        """Releases the lock and leaves no trace of it: the lock file is removed while still
        held (a waiter sees that and takes a new one), and a folder this call made is removed
        again if nothing was downloaded into it."""
        if self._lock is None:
            return
        if fcntl is not None:
            try:
                os.unlink(os.path.join(self.directory, LOCK))
                if self._made:
                    os.rmdir(self.directory)  # only if empty
            except OSError:
                pass  # files remain (downloaded, partial) or it is not ours: keep the folder
        os.close(self._lock)  # closing releases the lock
        self._lock = None

    def fetch(self, url: str, name: str, pin: Pin = Pin(), *, force: bool = False,
              headers: dict | None = None) -> dict:
        """Makes `<directory>/<name>` a verified copy of `url`; returns its record
        `{"size": ..., "sha256": ...}`. `headers` go with each request (not to another host
        a redirect leads to). A file already there stays until its replacement has been
        verified; with `force` it is fetched again even if it verifies."""
        if not name or os.path.basename(name) != name or name in (".", ".."):
            raise ValueError(f"a file name without directories, got {name!r}")
        try:
            return self._fetch(url, name, pin, force, headers or {})
        except OSError as e:
            raise cannot_write(os.path.join(self.directory, name), e, self.options) from None

    def _fetch(self, url: str, name: str, pin: Pin, force: bool, headers: dict) -> dict:
        opts, manifest = self.options, self.manifest
        final = os.path.join(self.directory, name)
        part = final + ".part"
        if force:
            remove(part)
            manifest.partial.pop(name, None)
        elif os.path.isfile(final):
            record = self._check(name, final, pin)
            if record:
                return record
        if not force and pin.sha256 and pin.size is not None and part_size(part) == pin.size \
                and file_digest(part)[1] == pin.sha256:
            meta = {}  # every byte is there and is the pinned file: killed before the rename
        else:
            meta = manifest.partial.get(name, {}) if part_size(part) else {}

            def save(meta: dict) -> None:
                manifest.partial[name] = meta
                manifest.save()

            transfer(url, part, pin, meta, opts, headers=headers, save=save)
        return self._verify_and_publish(name, part, final, pin, meta)

    def _check(self, name: str, final: str, pin: Pin) -> dict | None:
        """The record of `final` if it is the file wanted; None (after saying why) if not."""
        opts, manifest = self.options, self.manifest
        record = manifest.files.get(name) or {}
        want_size = pin.size if pin.size is not None else record.get("size")
        want_sha = pin.sha256 or record.get("sha256")
        kept = "it stays until its replacement has been verified"
        if want_sha is None:
            # Not ours (the original script wrote straight to the final name and could leave an
            # error page there). Only a file of the pinned size is kept; anything else is
            # fetched again from zero, never resumed.
            if pin.size is None or os.path.getsize(final) != pin.size:
                opts.log(f"{final}: not downloaded by this script and not verifiable; "
                         f"downloading it again ({kept})")
                return None
            want_size = pin.size
        size, sha256, _ = file_digest(final)
        if (want_size is not None and size != want_size) or (want_sha and sha256 != want_sha):
            opts.log(f"{final}: {size:,} bytes with sha256 {sha256[:12]}..., expected {want_size} "
                     f"bytes with sha256 {str(want_sha)[:12]}...; downloading it again ({kept})")
            manifest.files.pop(name, None)
            return None
        if record != {"size": size, "sha256": sha256}:
            manifest.files[name] = {"size": size, "sha256": sha256}
            manifest.save()
        opts.log(f"{final}: already downloaded and verified")
        return manifest.files[name]

    def _verify_and_publish(self, name: str, part: str, final: str, pin: Pin, meta: dict) -> dict:
        opts, manifest = self.options, self.manifest
        size, sha256, md5 = file_digest(part, md5=bool(meta.get("md5")))
        want_size = pin.size if pin.size is not None else meta.get("size")
        problem = None
        if want_size is not None and size != want_size:
            problem = f"{size:,} bytes, expected {want_size:,}"
        elif pin.sha256 and sha256 != pin.sha256:
            problem = f"sha256 {sha256} differs from the expected {pin.sha256}"
        elif meta.get("md5") and md5 != meta["md5"]:
            problem = f"MD5 {md5} differs from the server's Content-MD5 {meta['md5']}"
        if problem:
            remove(part)
            manifest.partial.pop(name, None)
            manifest.save()
            raise DownloadError(f"{final}: {problem}; removed the download: {opts.other_file}")
        _publish(part, final)
        manifest.files[name] = {"size": size, "sha256": sha256}
        manifest.partial.pop(name, None)
        manifest.save()
        opts.log(f"{final}: {size:,} bytes, verified")
        return manifest.files[name]


def fetch(url: str, path: str, *, pin: Pin = Pin(), force: bool = False,
          options: Options | None = None, headers: dict | None = None) -> dict:
    """Downloads one file to `path` (see the module docstring); returns its record."""
    directory, name = os.path.split(os.path.abspath(path))
    with Folder(directory, options) as folder:
        return folder.fetch(url, name, pin, force=force, headers=headers)
