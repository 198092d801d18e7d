"""HTTP for download.py: the options, the session, one request with each way of failing
sorted out, and the retry policy (capped exponential backoff, `Retry-After`, a budget of
attempts that resets on real progress, one retry at most for a host that cannot be reached).

`download.py` is the public surface; `download_part.py` fills a `.part` file through this.
"""
from __future__ import annotations

import contextlib
import email.utils
import http.client
import re
import sys
import time
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urljoin, urlsplit

import requests
import urllib3
from tqdm import tqdm

BACKOFF_BASE, BACKOFF_CAP = 1.0, 30.0  # seconds; doubled for each attempt without progress
MAX_EXPONENT = 16  # 2**16 s is far past the cap, so any --retries is safe
RETRY_AFTER_CAP = 300.0  # a server asking for a longer pause gets this much


class DownloadError(Exception):
    """A failure the user can act on; its message is the one line to print. `status` is the
    HTTP status when the server refused the file (404...), else None."""

    def __init__(self, message: str, *, status: int | None = None):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Pin:
    """What is known about a file before it is downloaded; None where nothing is.
    `max_size` bounds a file whose size is not known, so an endless body cannot fill the disk."""
    size: int | None = None
    sha256: str | None = None
    max_size: int | None = None


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
                            f"that keep https are followed")


def make_session() -> requests.Session:
    """A session that honours HTTP(S)_PROXY/NO_PROXY and refuses file:// or https->http.
    requests drops an Authorization header when a redirect leaves the host."""
    session = requests.Session()
    session.hooks["response"].append(refuse_bad_redirect)
    return session


@dataclass
class Options:
    """How downloads behave. Every field has a default; tests inject `sleep` and `progress`.
    The last four complete the error messages with the caller's own remedies."""
    timeout: float = 30.0  # seconds to connect, to wait for bytes, and the low-speed window
    retries: int = 5  # failed attempts in a row without progress before giving up on a file
    session: requests.Session | None = None  # make_session() when None
    sleep: Callable[[float], None] = time.sleep
    progress: Callable[..., object] = progress_bar
    log: Callable[[str], None] = note
    check: str = "check the URL"  # the server refused, or sent a page instead of the file
    other_file: str = "the server has another file than the one expected"  # size/digest differ
    unreachable: str = ""  # after "cannot reach HOST: check the network or proxy"
    elsewhere: str = "write elsewhere"  # after "free some disk space or"
    rerun: str = "the same command"  # "run <rerun> again to resume"

    def __post_init__(self):
        if not (isinstance(self.timeout, (int, float)) and 0 < self.timeout < float("inf")):
            raise ValueError(f"timeout must be a number of seconds > 0, got {self.timeout!r}")
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            raise ValueError(f"retries must be a whole number >= 0, got {self.retries!r}")
        if self.session is None:
            self.session = make_session()


class Retry(Exception):
    """An attempt failed in a way another attempt may fix. `answered`: the server was reached;
    `waited`: the attempt already waited `timeout` seconds (no backoff on top); `unreachable`:
    the name did not resolve or the connection was refused (retried once at most)."""

    def __init__(self, reason: str, *, answered: bool = True, delay: float | None = None,
                 restart: bool = False, waited: bool = False, unreachable: bool = False):
        super().__init__(reason)
        self.reason, self.answered, self.delay, self.restart = reason, answered, delay, restart
        self.waited, self.unreachable = waited, unreachable


# urllib3 wraps socket errors in its own classes; http.client may leak through on old versions.
NETWORK_ERRORS = (requests.RequestException, urllib3.exceptions.HTTPError,
                  http.client.HTTPException, ConnectionError, TimeoutError)
TIMEOUTS = (requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError)


def retry_after(r: requests.Response) -> float | None:
    value = r.headers.get("Retry-After", "").strip()
    if not value:
        return None
    with contextlib.suppress(ValueError):
        return max(0.0, float(value))
    with contextlib.suppress(TypeError, ValueError):
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    return None


def describe(e: BaseException) -> str:
    """A few words for a network error (requests' own messages run to several lines)."""
    if isinstance(e, TIMEOUTS):
        return "timed out"
    errno_text = re.findall(r"\[Errno -?\d+\] ([^'\")\]]+)", str(e))
    return errno_text[-1].strip() if errno_text else "connection broken"


def _unreachable(e: requests.ConnectionError) -> bool:
    """The name did not resolve, or nothing listens: not a fault that waiting fixes."""
    inner = e.args[0] if e.args else None
    inner = getattr(inner, "reason", inner)  # MaxRetryError(reason=...)
    return isinstance(e, requests.exceptions.ProxyError) or isinstance(
        inner, (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ProxyError))


def request(method: str, url: str, headers: dict, opts: Options, **kw) -> requests.Response:
    """One request, with each way of failing sorted into Retry or DownloadError."""
    try:
        return opts.session.request(method, url, headers=headers, timeout=opts.timeout, **kw)
    except requests.ConnectTimeout:
        raise Retry("timed out connecting", answered=False, waited=True) from None
    except requests.ReadTimeout:
        raise Retry("timed out waiting for an answer", waited=True) from None
    except requests.ConnectionError as e:
        raise Retry(describe(e), answered=False, unreachable=_unreachable(e)) from None
    except DownloadError as e:  # a redirect refused by the hook
        raise DownloadError(f"{e}; {opts.check}") from None
    except requests.TooManyRedirects:
        raise DownloadError(f"too many redirects for {url}; {opts.check}") from None
    except requests.RequestException as e:
        raise DownloadError(f"cannot download {url}: {str(e).splitlines()[0]}") from None


class Budget:
    """Failed attempts at one URL: sleeps between them, and gives up with one line."""

    def __init__(self, url: str, opts: Options):
        self.url, self.opts = url, opts
        self.failures = self.unreachable = 0
        self.answered = False

    def spend(self, e: Retry, *, progressed: bool, so_far: str = "") -> None:
        opts = self.opts
        self.answered = self.answered or e.answered
        self.failures = 0 if progressed else self.failures + 1  # the budget resets on progress
        self.unreachable = self.unreachable + 1 if e.unreachable else 0
        if self.failures > opts.retries or self.unreachable > min(1, opts.retries):
            if not self.answered:
                also = f", or {opts.unreachable}" if opts.unreachable else ""
                raise DownloadError(f"cannot reach {urlsplit(self.url).hostname} ({e.reason}): "
                                    f"check the network or proxy{also}")
            raise DownloadError(f"gave up on {self.url} ({e.reason}){so_far}: run {opts.rerun} "
                                f"again to resume")
        backoff = 0.0  # after a timeout, the wait itself was the pause
        if self.failures and not e.waited:
            backoff = BACKOFF_BASE * 2 ** min(self.failures - 1, MAX_EXPONENT)
        delay = min(max(backoff, e.delay or 0.0), BACKOFF_CAP if e.delay is None else RETRY_AFTER_CAP)
        opts.log(f"{self.url}: {e.reason}; retrying" + (f" in {delay:g} s" if delay else ""))
        if delay:
            opts.sleep(delay)


def head(url: str, headers: dict, opts: Options) -> requests.Response:
    """The answer to HEAD `url`, redirects not followed (a 3xx is an answer), retried like a
    download; a 4xx other than 408/429 is returned for the caller to judge."""
    budget = Budget(url, opts)
    while True:
        try:
            r = request("HEAD", url, headers, opts, allow_redirects=False)
            r.close()
            if r.status_code in (408, 429) or r.status_code >= 500:
                raise Retry(f"HTTP {r.status_code}", delay=retry_after(r))
            return r
        except Retry as e:
            budget.spend(e, progressed=False)
