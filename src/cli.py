"""Command-line plumbing shared by the two sampling scripts: typed options, exit codes,
UTF-8 streams, signals, one-line errors, and Fire without its surprises.

Nothing here imports TensorFlow, so a bad flag is answered at once.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import signal
import sys
from typing import Callable

import fire

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_SIGINT, EXIT_SIGTERM = 0, 1, 2, 130, 143
DTYPES = ("float32", "bfloat16")


class UsageError(ValueError):
    """A bad option value (exit 2); the message names the flag and the fix."""


class Failure(Exception):
    """A problem outside the command line, such as a missing model (exit 1)."""


class Terminated(BaseException):
    """SIGTERM, raised like KeyboardInterrupt so files are closed on the way out."""


# Fire types each value by how it was typed ("1" is an int, "abc" a str, a bare flag True),
# so every option is cast here, with the flag's name in the error.

def as_int(name: str, value, *, minimum: int) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"--{name} must be a whole number, got {value!r}")
    if value < minimum:
        raise UsageError(f"--{name} must be at least {minimum}, got {value}")
    return value


def as_float(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UsageError(f"--{name} must be a number, got {value!r}")
    return float(value)


def as_bool(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise UsageError(f"--{name} is a switch: give --{name} or --no{name}, got {value!r}")
    return value


def as_str(name: str, value) -> str:
    if isinstance(value, bool) or value is None or str(value) == "":
        raise UsageError(f"--{name} needs a value, got {value!r}")
    return str(value)


@dataclasses.dataclass(frozen=True)
class Options:
    """The options both scripts share, cast and checked as far as possible without the
    model (ranges that need hparams are checked by `load_model`)."""

    model_name: str
    models_dir: str
    seed: int | None
    nsamples: int
    batch_size: int
    length: int | None
    temperature: float
    top_k: int
    top_p: float
    stop_at_endoftext: bool
    dtype: str

    @classmethod
    def parse(cls, *, model_name, models_dir, seed, nsamples, batch_size, length,
              temperature, top_k, top_p, stop_at_endoftext, dtype,
              min_nsamples: int) -> "Options":
        batch_size = 1 if batch_size is None else as_int("batch_size", batch_size, minimum=1)
        nsamples = as_int("nsamples", nsamples, minimum=min_nsamples)
        if nsamples % batch_size:
            below = nsamples // batch_size * batch_size
            fits = f"--nsamples {below} or {below + batch_size}" if below else \
                f"--nsamples {batch_size}"
            raise UsageError(f"--nsamples {nsamples} is not a multiple of --batch_size "
                             f"{batch_size}: use {fits}, or --batch_size 1")
        if str(dtype) not in DTYPES:
            raise UsageError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        return cls(
            model_name=as_str("model_name", model_name),
            models_dir=as_str("models_dir", models_dir),
            seed=None if seed is None else as_int("seed", seed, minimum=-(1 << 63)),
            nsamples=nsamples, batch_size=batch_size,
            length=None if length is None else as_int("length", length, minimum=1),
            temperature=as_float("temperature", temperature),
            top_k=as_int("top_k", top_k, minimum=0),
            top_p=as_float("top_p", top_p),
            stop_at_endoftext=as_bool("stop_at_endoftext", stop_at_endoftext),
            dtype=str(dtype))


def derive_seed(seed: int | None, *path: int) -> int | None:
    """An independent seed for each batch (and prompt) of a seeded run, so one --seed
    reproduces the whole run while no two batches repeat each other's draws."""
    if seed is None:
        return None
    digest = hashlib.blake2b(repr((seed, *path)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 2


def utf8_streams() -> None:
    """UTF-8 in and out whatever the console's encoding: nothing we print can raise
    UnicodeEncodeError, and undecodable input becomes U+FFFD."""
    for stream in (sys.stdin, sys.stdout, sys.stderr):
        try:
            stream.reconfigure(encoding="utf-8", errors="replace")
        except (AttributeError, ValueError, OSError):
            pass  # not a TextIOWrapper, closed, or already read from: leave it


def note(prog: str, message: str) -> None:
    print(f"{prog}: {message}", file=sys.stderr, flush=True)


def _on_sigterm(signum, frame):
    raise Terminated()


def guarded(prog: str, body: Callable[[], int]) -> int:
    """Runs `body` with UTF-8 streams and a SIGTERM handler; turns every expected way of
    ending into an exit status and one line on stderr, never a traceback."""
    utf8_streams()
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return body()
    except UsageError as e:
        note(prog, f"error: {e}")
        return EXIT_USAGE
    except Failure as e:
        note(prog, f"error: {e}")
        return EXIT_FAILURE
    except KeyboardInterrupt as e:
        note(prog, "interrupted" + getattr(e, "detail", ""))
        return EXIT_SIGINT
    except Terminated as e:
        note(prog, "terminated" + getattr(e, "detail", ""))
        return EXIT_SIGTERM
    except BrokenPipeError:
        # The reader (`head`) has gone: stop quietly, and point stdout at /dev/null so the
        # interpreter's final flush cannot fail again.
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        return EXIT_OK
    except Exception as e:  # noqa: BLE001 -- only TensorFlow's runtime errors, re-raised else
        tf = sys.modules.get("tensorflow")
        if tf is None or not isinstance(e, tf.errors.OpError):
            raise
        fix = ("use a smaller --batch_size or --length, or --dtype bfloat16"
               if isinstance(e, tf.errors.ResourceExhaustedError) else
               "please report it with the command that caused it")
        detail = (e.message or type(e).__name__).strip().splitlines()[0][:200]
        note(prog, f"error: TensorFlow failed ({type(e).__name__}: {detail}): {fix}")
        return EXIT_FAILURE
    finally:
        signal.signal(signal.SIGTERM, previous)


def fire_main(component: Callable[..., int], argv: list[str] | None) -> int:
    """Parses the command line with Fire, then runs `component` and returns its exit
    status. Fire's own usage errors (an unknown flag, an extra argument) exit 2 and --help
    exits 0, before anything runs.

    Fire calls its component first and only then complains about arguments left over, so
    it is given a stand-in with the same signature and docstring that only records them.
    """
    calls = []

    @functools.wraps(component)
    def record(*args, **kwargs):
        calls.append((args, kwargs))

    try:
        fire.Fire(record, command=argv, serialize=lambda result: None)
    except fire.core.FireExit as e:
        return e.code
    args, kwargs = calls[0]
    return component(*args, **kwargs)
