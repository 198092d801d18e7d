"""Progress of a long run on stderr: a tqdm bar at a terminal, elsewhere (a log file, CI)
one plain line at most every `EVERY` seconds, with the rate and, when the total is known,
the time left. Nothing is shown where it would land among the samples themselves.
"""
from __future__ import annotations

import os
import sys
import time

EVERY = 5.0  # seconds between two progress lines off a terminal


def same_file(a, b) -> bool:
    """Whether two streams write to the same file or pipe (`> out 2>&1`)."""
    try:
        x, y = os.fstat(a.fileno()), os.fstat(b.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return (x.st_dev, x.st_ino) == (y.st_dev, y.st_ino)


def wanted(*, to_stdout: bool) -> bool:
    """Progress is shown unless the samples go to stdout and stdout is where stderr goes:
    the same terminal, or the same file."""
    err = sys.stderr
    if not to_stdout:
        return True
    if err.isatty() and sys.stdout.isatty():
        return False
    return not same_file(sys.stdout, err)


def duration(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    hours, rest = divmod(seconds, 3600)
    return (f"{hours}h{rest // 60:02d}m" if hours else
            f"{rest // 60}m{rest % 60:02d}s" if rest >= 60 else f"{rest}s")


class Progress:
    """Counts samples; `total` None (or 0) means an endless run."""

    def __init__(self, total: int | None, *, prog: str, show: bool, unit: str = "sample",
                 clock=time.monotonic, every: float | None = None):
        self.total, self.prog, self.unit = total or None, prog, unit
        self.clock, self.every, self.done = clock, EVERY if every is None else every, 0
        self.bar = None
        self.lines = show and not sys.stderr.isatty()
        if show and not self.lines:
            from tqdm import tqdm
            self.bar = tqdm(total=self.total, unit=unit, file=sys.stderr)
        self.start = self.last = clock()

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.lines:
            now = self.clock()
            if now - self.last >= self.every:
                self.last = now
                print(f"{self.prog}: {self.line(now - self.start)}", file=sys.stderr,
                      flush=True)

    def line(self, elapsed: float) -> str:
        rate = self.done / elapsed if elapsed > 0 else 0.0
        units = f"{self.unit}s" if (self.total or self.done) != 1 else self.unit
        if self.total is None:
            return f"{self.done} {units} in {duration(elapsed)}, {rate:.2f}/s"
        left = (self.total - self.done) / rate if rate > 0 else float("inf")
        eta = duration(left) if left != float("inf") else "unknown"
        return (f"{self.done}/{self.total} {units} ({100 * self.done // self.total}%) in "
                f"{duration(elapsed)}, {rate:.2f}/s, about {eta} left")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
