"""Engines under test in worker processes of their own, called in turn.

Each engine (this project, Hugging Face transformers, LiteRT) lives in its own spawned
process: one framework per process (two OpenMP runtimes in one process slow both), and
each process's peak RSS is its own. A benchmark alternates the engines call by call, so
that a change in the machine's load falls on all of them alike:

    with workers.Pool({"ours": functools.partial(Ours, model_dir),
                       "hf": functools.partial(HF, model_dir)}) as pool:
        seconds, results = pool.alternate("generate", context, 256, runs=5)
        rss = pool.peak_rss_mb()

An engine is any picklable factory whose product has the methods called; only the method
call itself is timed, in the worker. A worker that fails raises in the caller with the
worker's traceback, instead of leaving the benchmark waiting.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import sys
import time
import traceback

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM). Not getrusage: Linux carries ru_maxrss over from the
    parent across fork and exec, so a child of a large parent would report the parent's."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


def _serve(make, conn) -> None:
    """A worker: builds its engine, then answers ("call", method, args) with ("ok", seconds,
    result) and ("rss",) with ("ok", MB), until ("quit",); a failure is ("error", text)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, SRC)
    try:
        engine = make()
        while True:
            message = conn.recv()
            if message[0] == "quit":
                return
            if message[0] == "rss":
                conn.send(("ok", peak_rss_mb()))
                continue
            _, method, args = message
            began = time.perf_counter()
            result = getattr(engine, method)(*args)
            conn.send(("ok", time.perf_counter() - began, result))
    except Exception:  # noqa: BLE001 -- reported to the caller, which raises it
        conn.send(("error", traceback.format_exc()))


class Pool:
    """Named engines, one worker process each, started at once (they load in parallel)."""

    def __init__(self, makers: dict):
        self.workers = {}
        for name, make in makers.items():
            parent, child = mp.Pipe()
            process = mp.get_context("spawn").Process(target=_serve, args=(make, child))
            process.start()
            child.close()  # the worker's end: if the worker dies, recv() sees EOF
            self.workers[name] = (process, parent)

    @property
    def names(self) -> list[str]:
        return list(self.workers)

    def _ask(self, name: str, *message):
        conn = self.workers[name][1]
        conn.send(message)
        try:
            reply = conn.recv()
        except EOFError:
            raise RuntimeError(f"the {name} worker died (out of memory?)") from None
        if reply[0] == "error":
            raise RuntimeError(f"the {name} worker failed:\n{reply[1]}")
        return reply[1:]

    def call(self, name: str, method: str, *args) -> tuple[float, object]:
        """(seconds, result) of `method(*args)` on the engine `name`."""
        seconds, result = self._ask(name, "call", method, args)
        return seconds, result

    def alternate(self, method: str, *args, runs: int, names=None, numbered: bool = False):
        """An untimed warm-up call per engine, then `runs` rounds of `method(*args)`, engine
        after engine. With `numbered`, the round's number is the last argument (0 is the
        warm-up). Returns ({name: [seconds]}, {name: [result]}) of the timed rounds."""
        names = list(names or self.workers)
        times, results = {n: [] for n in names}, {n: [] for n in names}
        for round_ in range(runs + 1):
            for name in names:
                seconds, result = self.call(name, method, *args, *([round_] * numbered))
                if round_:
                    times[name].append(seconds)
                    results[name].append(result)
        return times, results

    def peak_rss_mb(self) -> dict[str, float]:
        return {name: self._ask(name, "rss")[0] for name in self.workers}

    def close(self) -> None:
        for process, conn in self.workers.values():
            try:
                conn.send(("quit",))
            except OSError:
                pass  # already gone
            process.join()
        self.workers = {}

    def __enter__(self) -> "Pool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
