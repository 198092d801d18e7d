"""JSON-lines output that is never half-written and never numbered twice.

`JsonlWriter` appends one JSON object per sample. Each record is written under an advisory
lock (flock) on the file, taking its id from the last record in the file at that moment,
so two runs appending to one file get distinct, consecutive ids. A record that cannot be
written whole (disk full, file size limit, Ctrl-C in the middle) is cut back: the file is
truncated to where the record began, so it ends with whole records only.
"""
from __future__ import annotations

import contextlib
import json
import os
import stat

from cli import Failure, UsageError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; concurrent runs are then the user's care
    fcntl = None

TAIL_CHUNK = 1 << 16


def inside(path: str, directory: str) -> bool:
    """Whether writing `path` would write into `directory` (also through a symlink, or a
    hard link to one of its files)."""
    real, base = os.path.realpath(path), os.path.realpath(directory)
    if os.path.commonpath([real, base]) == base:
        return True
    if not os.path.exists(path):
        return False
    with contextlib.suppress(OSError):
        for name in os.listdir(base):
            with contextlib.suppress(OSError):
                if os.path.samefile(path, os.path.join(base, name)):
                    return True
    return False


def check_not_inside(path: str, model_dir: str | None, *, flag: str = "output") -> None:
    if model_dir is not None and os.path.isdir(model_dir) and inside(path, model_dir):
        raise UsageError(f"--{flag} {path} is inside the model directory {model_dir}, which "
                         f"this run reads: writing there would damage the model; choose a "
                         f"path outside it")


class JsonlWriter:
    """Appends records {"id", ...fields} to `path`, one line each (see the module's doc).

    A pipe, terminal or /dev/stdout cannot be read back, locked or truncated: ids there
    start at 0 and count this run's records."""

    def __init__(self, path: str, *, flag: str = "output", model_dir: str | None = None):
        check_not_inside(path, model_dir, flag=flag)
        try:
            self.file = open(path, "ab", buffering=0)
        except IsADirectoryError:
            raise UsageError(f"--{flag} {path} is a directory: give a file name") from None
        except FileNotFoundError:
            raise UsageError(f"--{flag} {path}: the directory "
                             f"{os.path.dirname(path) or '.'} does not exist: create it or "
                             f"choose another path") from None
        except OSError as e:
            raise UsageError(f"--{flag} {path} cannot be written ({e.strerror}): choose "
                             f"another path") from None
        self.path, self.flag = path, flag
        self.fd = self.file.fileno()
        self.regular = stat.S_ISREG(os.fstat(self.fd).st_mode)
        self.reader = None  # the ids continue the file's: read its last record
        if self.regular:
            try:
                self.reader = os.open(path, os.O_RDONLY)
            except OSError as e:
                self.file.close()
                raise UsageError(f"--{flag} {path} cannot be read back to continue its ids "
                                 f"({e.strerror}): choose another path") from None
        self.written, self.first_id, self.last_id = 0, None, None
        self._known = None  # (file size after our last record, the next id): no re-read

    def write(self, **fields) -> int:
        """Appends {"id": <next id>, **fields} as one line; returns the id."""
        with self._locked():
            offset, next_id, newline = self._position()
            line = json.dumps({"id": next_id, **fields}, ensure_ascii=False) + "\n"
            data = memoryview((("\n" if newline else "") + line).encode("utf-8"))
            size = len(data)
            try:
                while data:  # a regular file takes it in one write; loop for a short one
                    data = data[os.write(self.fd, data):]
            except BaseException as e:  # also Ctrl-C or SIGTERM between two short writes
                cut = self._cut(offset)
                if isinstance(e, OSError) and not isinstance(e, BrokenPipeError):
                    raise Failure(f"cannot write --{self.flag} {self.path}: "
                                  f"{e.strerror or type(e).__name__}{cut}; "
                                  f"{self.written} records written by this run") from None
                raise
            if self.regular:
                self._known = (offset + size, next_id + 1)
        self.written += 1
        self.first_id = next_id if self.first_id is None else self.first_id
        self.last_id = next_id
        return next_id

    @contextlib.contextmanager
    def _locked(self):
        locked = False
        if self.regular and fcntl is not None:
            with contextlib.suppress(OSError):  # a filesystem without locks: go on unlocked
                fcntl.flock(self.fd, fcntl.LOCK_EX)
                locked = True
        try:
            yield
        finally:
            if locked:
                fcntl.flock(self.fd, fcntl.LOCK_UN)

    def _position(self) -> tuple[int | None, int, bool]:
        """(offset where the record starts, its id, whether a newline must come first)."""
        if not self.regular:
            return None, self.written, False
        size = os.fstat(self.fd).st_size
        if self._known and self._known[0] == size:
            return size, self._known[1], False
        return (size, *next_id_of(self.reader, size))

    def _cut(self, offset: int | None) -> str:
        """Truncates a regular file back to `offset`; says what is left."""
        if offset is None:
            return ""
        try:
            os.ftruncate(self.fd, offset)
            return " (the unfinished record was removed)"
        except OSError:
            return f" (whole records end at byte {offset}; the last line may be cut off)"

    def close(self) -> None:
        self.file.close()
        if self.reader is not None:
            os.close(self.reader)
            self.reader = None


def next_id_of(fd: int, size: int) -> tuple[int, bool]:
    """(the id after the last whole record of the file, whether its last line is cut off).

    The id comes from the last complete line when it is a record with an integer id;
    otherwise (a file of other lines) from the number of complete lines."""
    if size == 0:
        return 0, False
    cut_off = os.pread(fd, 1, size - 1) != b"\n"
    end = size if not cut_off else last_newline(fd, size) + 1  # just after the last "\n"
    if end == 0:
        return 0, cut_off  # a single cut-off line: no record yet
    start = last_newline(fd, end - 1) + 1
    try:
        record = json.loads(os.pread(fd, end - start, start))
        if isinstance(record, dict) and type(record.get("id")) is int and record["id"] >= 0:
            return record["id"] + 1, cut_off
    except (ValueError, RecursionError):
        pass
    count, offset = 0, 0
    while offset < end:
        chunk = os.pread(fd, min(1 << 20, end - offset), offset)
        count, offset = count + chunk.count(b"\n"), offset + len(chunk)
    return count, cut_off


def last_newline(fd: int, end: int) -> int:
    """The offset of the last b"\\n" before `end`, or -1."""
    while end > 0:
        start = max(0, end - TAIL_CHUNK)
        found = os.pread(fd, end - start, start).rfind(b"\n")
        if found >= 0:
            return start + found
        end = start
    return -1
