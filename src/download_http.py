"""The HTTP half of download.py: one file's bytes into its `.part` file, resumed and retried.

Not imported by the scripts directly: `download.py` is the public surface. Here live the
request (timeouts, `Range` + `If-Range`, identity encoding), the reading of the body (bytes
counted as they are written) and the retry loop (capped exponential backoff, `Retry-After`,
a budget of attempts that resets whenever an attempt made progress).
"""
from __future__ import annotations

import contextlib
import email.utils
import http.client
import os
import re
import sys
import time
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urljoin, urlsplit

import requests
import urllib3
from tqdm import tqdm

CHUNK = 1 << 16
BACKOFF_BASE, BACKOFF_CAP = 1.0, 30.0  # seconds; doubled for each attempt without progress
RETRY_AFTER_CAP = 300.0  # a server asking for a longer pause gets this much


class DownloadError(Exception):
    """A failure the user can act on; its message is the one line to print."""


@dataclass(frozen=True)
class Pin:
    """What is known about a file before it is downloaded; None where nothing is."""
    size: int | None = None
    sha256: str | None = None


def progress_bar(*, total: int | None, initial: int, desc: str) -> tqdm:
    """A tqdm bar of bytes on stderr, shown only when stderr is a terminal."""
    return tqdm(total=total, initial=initial, desc=desc, unit="B", unit_scale=True,
                unit_divisor=1024, disable=not sys.stderr.isatty())


def note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def refuse_bad_redirect(r: requests.Response, *args, **kwargs) -> None:
    """Response hook: runs before requests follows a redirect."""
    if not r.is_redirect:
        return
    target = urljoin(r.url, r.headers["Location"])
    old, new = urlsplit(r.url).scheme, urlsplit(target).scheme
    if new not in ("http", "https") or (old == "https" and new != "https"):
        raise DownloadError(f"refused redirect from {r.url} to {target}: only http(s) redirects "
                            f"that keep https are followed; check --base_url")


def make_session() -> requests.Session:
    """A session that honours HTTP(S)_PROXY/NO_PROXY and refuses file:// or https->http."""
    session = requests.Session()
    session.hooks["response"].append(refuse_bad_redirect)
    return session


@dataclass
class Options:
    """How downloads behave. Every field has a default; tests inject `sleep` and `progress`."""
    timeout: float = 30.0  # seconds to connect, and to wait for the next bytes
    retries: int = 5  # failed attempts in a row without progress before giving up on a file
    session: requests.Session | None = None  # make_session() when None
    sleep: Callable[[float], None] = time.sleep
    progress: Callable[..., object] = progress_bar
    log: Callable[[str], None] = note

    def __post_init__(self):
        if self.session is None:
            self.session = make_session()


class _Retry(Exception):
    """An attempt failed in a way another attempt may fix."""

    def __init__(self, reason: str, *, answered: bool = True, delay: float | None = None,
                 restart: bool = False):
        super().__init__(reason)
        self.reason, self.answered, self.delay, self.restart = reason, answered, delay, restart


# urllib3 wraps socket errors in its own classes; http.client may leak through on old versions.
_NETWORK_ERRORS = (requests.RequestException, urllib3.exceptions.HTTPError,
                   http.client.HTTPException, ConnectionError, TimeoutError)


def part_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0


def remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


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


def _attempt(url: str, part: str, pin: Pin, meta: dict, opts: Options,
             save: Callable[[dict], None]) -> None:
    """One GET from the bytes on disk to the end; returns when the body is complete."""
    offset = part_size(part)
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
            remove(part)
            raise DownloadError(f"{url} has {total:,} bytes, the released file {pin.size:,}: "
                                f"the server offers a different file; check --base_url")
        etag = r.headers.get("ETag", "")
        meta.update(url=url, size=total, etag=None if etag.startswith("W/") else etag or None,
                    last_modified=r.headers.get("Last-Modified"))
        save(meta)
        expected = pin.size if pin.size is not None else total
        name = os.path.basename(part).removesuffix(".part")
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
                        remove(part)
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


def transfer(url: str, part: str, pin: Pin, meta: dict, opts: Options,
             save: Callable[[dict], None]) -> None:
    """Fills `part` with the whole file at `url`, resuming and retrying; DownloadError when it
    cannot. `meta` holds what earlier attempts learned (size, validators, the server's MD5);
    it is updated in place and handed to `save` before any byte of a response is written."""
    failures, answered = 0, False
    while True:
        have = part_size(part)
        total = pin.size if pin.size is not None else meta.get("size")
        if total is not None and have > total:
            opts.log(f"{part} is longer than the file; restarting from 0")
            remove(part)
            have = 0
        if have and have == total:
            return  # every byte is on disk already (killed before the rename): just verify
        try:
            _attempt(url, part, pin, meta, opts, save)
            return
        except _Retry as e:
            if e.restart:
                remove(part)
            answered = answered or e.answered
            failures = 0 if part_size(part) > have else failures + 1  # the budget resets on progress
            if failures > opts.retries:
                if not answered:
                    host = urlsplit(url).hostname
                    raise DownloadError(f"cannot reach {host}: check the network or proxy "
                                        f"({e.reason})") from None
                total = pin.size if pin.size is not None else meta.get("size")
                raise DownloadError(f"gave up on {url} ({e.reason}) with {part_size(part):,} of "
                                    f"{total if total is None else format(total, ',')} bytes: "
                                    f"run the same command again to resume") from None
            backoff = BACKOFF_BASE * 2 ** (failures - 1) if failures else 0.0
            delay = min(max(backoff, e.delay or 0.0), BACKOFF_CAP if e.delay is None else RETRY_AFTER_CAP)
            opts.log(f"{url}: {e.reason}; retrying" + (f" in {delay:g} s" if delay else ""))
            if delay:
                opts.sleep(delay)
