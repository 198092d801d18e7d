"""Standard input, output and error that fail in one known way, whatever state the shell
left them in: closed (`2>&-`), full (`>/dev/full`), gone (`| head`), not UTF-8.

- A descriptor closed at start-up is reopened on /dev/null, so no file the script opens
  later can take its number (TensorFlow's C++ logs go to descriptor 2 whatever it holds).
- stdout and stdin raise `StreamError`, one line naming the stream and the OS reason,
  instead of a bare OSError; a closed stdout says so on the first write.
- stderr never raises: if it cannot be written, messages are dropped and the exit status
  alone tells what happened.
- Text is UTF-8 whatever the console's encoding; bytes that are not UTF-8 become U+FFFD.
"""
from __future__ import annotations

import os
import sys


class StreamError(Exception):
    """stdout or stdin failed; the message says which and why (cli maps it to exit 1)."""


def silence(stream) -> None:
    """Points the stream's descriptor at /dev/null, so that the interpreter's last flush
    at exit cannot fail again after the failure has been reported."""
    try:
        fd = stream.fileno()
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, fd)
        os.close(null)
    except (OSError, ValueError, AttributeError):
        pass  # not backed by a descriptor (a test's StringIO): nothing will flush it


class Checked:
    """A standard stream whose failures are `StreamError`s (or, quiet, are dropped)."""

    def __init__(self, stream, label: str, *, quiet: bool = False):
        self._stream, self._label, self._quiet = stream, label, quiet
        self._failed = False  # once reported, a failed stream takes nothing more

    def _call(self, method: str, *args):
        if self._failed:
            return "" if method.startswith("read") else None
        try:
            return getattr(self._stream, method)(*args)
        except OSError as e:
            self._failed = True
            silence(self._stream)
            if self._quiet:
                return None
            if isinstance(e, BrokenPipeError):
                raise  # the reader has gone (`| head`): the caller ends quietly
            verb = "read" if self._label == "standard input" else "write to"
            raise StreamError(f"cannot {verb} {self._label}: "
                              f"{e.strerror or type(e).__name__}") from None

    def write(self, text):
        return self._call("write", text)

    def flush(self):
        return self._call("flush")

    def readline(self, *args):
        return self._call("readline", *args)

    def read(self, *args):
        return self._call("read", *args)

    def __iter__(self):
        return iter(self.readline, "")

    def __getattr__(self, name):
        return getattr(self._stream, name)


class Closed:
    """Stands for a stdout that was closed when the script started."""

    encoding, errors = "utf-8", "replace"

    def __init__(self, fd: int, label: str):
        self._fd, self._label = fd, label

    def write(self, text):
        if text:
            raise StreamError(f"cannot write to {self._label}: it is closed")
        return 0

    def flush(self):
        pass

    def isatty(self):
        return False

    def fileno(self):
        return self._fd


def reopen_closed() -> None:
    """Descriptors 0, 1, 2 closed at start-up (Python then sets sys.stdin/stdout/stderr
    to None) are reopened on /dev/null, and the streams replaced."""
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        if getattr(sys, name) is not None:
            continue
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
        if name == "stdout":
            sys.stdout = Closed(fd, "standard output")
        else:
            setattr(sys, name, open(fd, "r" if fd == 0 else "w", encoding="utf-8",
                                    errors="replace", closefd=False))


def utf8(stream) -> None:
    try:
        stream.reconfigure(encoding="utf-8", errors="replace")
    except (AttributeError, ValueError, OSError):
        pass  # not a TextIOWrapper, closed, or already read from: leave it


def install() -> None:
    """Makes the three standard streams safe as described above; idempotent."""
    reopen_closed()
    for name, label, quiet in (("stdin", "standard input", False),
                               ("stdout", "standard output", False),
                               ("stderr", "standard error", True)):
        stream = getattr(sys, name)
        if isinstance(stream, (Checked, Closed)):
            continue
        utf8(stream)
        setattr(sys, name, Checked(stream, label, quiet=quiet))


def flush() -> None:
    """Flushes stdout now, so that a full disk is reported as one line, not at exit."""
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()


def settle() -> None:
    """After a failure: whatever is still buffered must not fail again at exit."""
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError, StreamError):
            silence(stream)
