"""A file's bytes into its `.part` file, for download.py: the GET from the bytes on disk
(`Range` + `If-Range`, identity encoding), the body written as it arrives and counted (a
low-speed limit, a size cap, no web page taken for the file), and the loop of attempts.

The `.part` file is only ever written as a regular file of its own: a link found there is
removed, never followed, and a new one is created with O_EXCL. Bytes already in it are
resumed only under a validator (ETag or Last-Modified) recorded for the same URL.
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import time
from typing import Callable

import requests

from download_http import (NETWORK_ERRORS, TIMEOUTS, Budget, DownloadError, Options, Pin, Retry,
                           describe, request, retry_after)

CHUNK = 1 << 16
# Fewer new bytes than this within `timeout` seconds is a stall, and an attempt that got fewer
# is no progress: a trickling server ends the download instead of holding it for days.
LOW_SPEED_BYTES = 1024
SNIFF = 64  # bytes looked at for an HTML page served in place of the file


def part_size(path: str) -> int:
    """Bytes in the partial file `path`. Anything there that is not a regular file of its own
    (a symlink, a hard link, a FIFO) is removed, the link itself, never what it points to."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return 0
    if stat.S_ISREG(st.st_mode) and st.st_nlink == 1:
        return st.st_size
    if stat.S_ISDIR(st.st_mode):
        raise DownloadError(f"{path} is a directory: remove it, then run again")
    os.unlink(path)
    return 0


def remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


def _open_part(part: str, *, append: bool) -> int:
    """The partial file for writing, never through a link: appended to only if it is a regular
    file of its own, else created anew with O_EXCL."""
    flags = os.O_WRONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    if not append:
        remove(part)
        return os.open(part, flags | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        fd = os.open(part, flags | os.O_APPEND | os.O_NONBLOCK)  # NONBLOCK: a FIFO fails, not hangs
    except OSError as e:
        if e.errno not in (errno.ENOENT, errno.ELOOP, errno.ENXIO):
            raise
        fd = None
    if fd is not None and stat.S_ISREG(os.fstat(fd).st_mode) and os.fstat(fd).st_nlink == 1:
        return fd
    if fd is not None:
        os.close(fd)
    part_size(part)  # removes whatever replaced it
    raise Retry(f"{part} was replaced while it was being resumed; starting again from 0",
                restart=True)


def _int_header(r: requests.Response, name: str) -> int | None:
    with contextlib.suppress(TypeError, ValueError):
        return int(r.headers.get(name))
    return None


def _html_page(url: str, what: str, opts: Options) -> DownloadError:
    return DownloadError(f"{url} answered with a web page ({what}), not the file: a captive "
                         f"portal or a login page? Check the network, or {opts.check}")


def _looks_like_html(head: bytes) -> bool:
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return start.startswith((b"<!doctype html", b"<html"))


def _attempt(url: str, part: str, pin: Pin, meta: dict, opts: Options, headers: dict,
             save: Callable[[dict], None]) -> None:
    """One GET from the bytes on disk to the end; returns when the body is complete."""
    offset = part_size(part)
    asked = {**headers, "Accept-Encoding": "identity"}
    if offset:
        asked["Range"] = f"bytes={offset}-"
        asked["If-Range"] = meta.get("etag") or meta["last_modified"]
    with request("GET", url, asked, opts, stream=True) as r:
        status = r.status_code
        if status in (408, 429) or status >= 500:
            raise Retry(f"HTTP {status}", delay=retry_after(r))
        if status == 416 and offset:
            m = re.fullmatch(r"bytes \*/(\d+)", r.headers.get("Content-Range", "").strip())
            if m and int(m.group(1)) == offset:
                meta["size"] = offset  # every byte was already on disk
                return
            raise Retry("the server cannot serve the rest of the partial file", restart=True)
        if status not in (200, 206):
            raise DownloadError(f"HTTP {status} for {url}: {opts.check}", status=status)
        content_type = r.headers.get("Content-Type", "")
        if content_type.split(";")[0].strip().lower() in ("text/html", "application/xhtml+xml"):
            raise _html_page(url, f"Content-Type {content_type}", opts)
        # Asked for identity; a server that gzips anyway is decoded, so the disk holds the file's
        # bytes (which a later Range request for the rest continues correctly).
        encoded = r.headers.get("Content-Encoding", "identity").strip().lower() not in ("identity", "")
        length = None if encoded else _int_header(r, "Content-Length")  # bytes in this body
        if status == 206:
            m = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", r.headers.get("Content-Range", "").strip())
            if not m or int(m.group(1)) != offset or encoded:
                raise Retry(f"asked for bytes from {offset:,}, the server answered "
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
            remove(part)
            raise DownloadError(f"{url} has {total:,} bytes, not the {pin.size:,} expected: "
                                f"{opts.other_file}")
        if total is not None and pin.max_size is not None and total > pin.max_size:
            raise DownloadError(f"{url} has {total:,} bytes, more than the {pin.max_size:,} such "
                                f"a file can have: {opts.check}")
        etag = r.headers.get("ETag", "")
        meta.update(url=url, size=total, etag=None if etag.startswith("W/") else etag or None,
                    last_modified=r.headers.get("Last-Modified"))
        save(meta)  # the validators are on disk before the first byte is
        _receive(r, part, url, offset=offset, append=status == 206, encoded=encoded,
                 expected=pin.size if pin.size is not None else total, pin=pin, opts=opts)


def _receive(r: requests.Response, part: str, url: str, *, offset: int, append: bool,
             encoded: bool, expected: int | None, pin: Pin, opts: Options) -> None:
    """Writes the body to `part` as it arrives, counting the bytes written."""
    # read1 hands over what has arrived (urllib3 2); read(n) would wait for n bytes.
    read = getattr(r.raw, "read1", None) or r.raw.read
    limit = expected if expected is not None else pin.max_size
    name = os.path.basename(part).removesuffix(".part")
    bar = opts.progress(total=expected, initial=offset, desc=f"Fetching {name}")
    written, head, fd = 0, b"", None
    window_start, window_bytes = time.monotonic(), 0
    try:
        fd = _open_part(part, append=append)
        while True:
            try:
                chunk = read(CHUNK, decode_content=encoded)
            except NETWORK_ERRORS as e:
                raise Retry(f"connection lost: {describe(e)}",
                            waited=isinstance(e, TIMEOUTS)) from None
            if not chunk:
                break
            _write_all(fd, chunk)
            written += len(chunk)
            bar.update(len(chunk))
            if offset == 0 and len(head) < SNIFF:
                head += chunk[:SNIFF - len(head)]
                if len(head) == SNIFF and _looks_like_html(head):
                    remove(part)
                    raise _html_page(url, "it starts with <html>", opts)
            if limit is not None and offset + written > limit:
                remove(part)
                what = (f"its {expected:,} bytes" if expected is not None else
                        f"{limit:,} bytes, more than such a file can have")
                raise DownloadError(f"{url} sent more than {what}; {opts.check}")
            window_bytes += len(chunk)
            now = time.monotonic()
            if now - window_start >= opts.timeout:
                if window_bytes < LOW_SPEED_BYTES:
                    raise Retry(f"too slow: {window_bytes:,} bytes in {now - window_start:.0f} s",
                                waited=True)
                window_start, window_bytes = now, 0
        if offset == 0 and len(head) < SNIFF and _looks_like_html(head):
            remove(part)
            raise _html_page(url, "it starts with <html>", opts)
        os.fsync(fd)
    except OSError as e:
        raise cannot_write(part, e, opts) from None
    finally:
        if fd is not None:
            os.close(fd)
        bar.close()
    if expected is not None and offset + written < expected:  # counted: urllib3 may not
        raise Retry(f"connection closed after {offset + written:,} of {expected:,} bytes")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def cannot_write(path: str, e: OSError, opts: Options) -> DownloadError:
    """The one line for a file that cannot be written (or read): a full disk, or permissions."""
    if e.errno in (errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return DownloadError(f"cannot write {path}: {e.strerror}: free some disk space or "
                             f"{opts.elsewhere}, then run {opts.rerun} again to resume")
    return DownloadError(f"{path}: {e.strerror or e}: fix its permissions or {opts.elsewhere}")


def transfer(url: str, part: str, pin: Pin, meta: dict, opts: Options, *,
             headers: dict | None = None, save: Callable[[dict], None] = lambda meta: None) -> None:
    """Fills `part` with the whole file at `url`, resuming and retrying; DownloadError when it
    cannot. `meta` holds what earlier attempts learned (url, size, validators, the server's
    MD5); it is updated in place and handed to `save` before any byte of a response is
    written. Bytes already in `part` are resumed only under a validator recorded for `url`."""
    budget = Budget(url, opts)
    while True:
        have = part_size(part)
        total = pin.size if pin.size is not None else meta.get("size")
        if have and total is not None and have > total:
            opts.log(f"{part} is longer than the file; starting again from 0")
            remove(part)
            have = 0
        if have and not (meta.get("url") == url and (meta.get("etag") or meta.get("last_modified"))):
            opts.log(f"{part}: no ETag or Last-Modified is recorded for its bytes, so they cannot "
                     f"be resumed safely; starting again from 0")
            remove(part)
            have = 0
        if have and have == total:
            return  # every byte is on disk already (killed before the rename): just verify
        try:
            _attempt(url, part, pin, meta, opts, headers or {}, save)
            return
        except Retry as e:
            if e.restart:
                remove(part)
            now = part_size(part)
            total = pin.size if pin.size is not None else meta.get("size")
            progressed = now - have >= LOW_SPEED_BYTES or (now > have and now == total)
            budget.spend(e, progressed=progressed, so_far=f" with {now:,} of "
                         f"{'?' if total is None else format(total, ',')} bytes")
