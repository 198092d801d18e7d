"""Command-line plumbing shared by the scripts: typed options, exit codes, standard
streams, signals, one-line errors, and the command line itself (see flags.py).

Every script runs its work as `cli.guarded(PROG, body)` inside `cli.fire_main(fn, argv)`:
whatever goes wrong ends as one line on stderr (if there is a stderr) and the exit status
of FAULTS.md, never a traceback. Nothing here imports TensorFlow or Fire at import time, so
a bad flag is answered at once, and a missing package is a one-line error too.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import shlex
import signal
import subprocess
import sys
from typing import Callable

import flags
import stdio
from stdio import StreamError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_SIGINT, EXIT_SIGTERM = 0, 1, 2, 130, 143
DTYPES = ("float32", "bfloat16")  # TensorFlow's (--backend tf)
# The weights' types each runtime offers; the first is the default.
BACKENDS = {"tf": DTYPES, "litert": ("float32", "int8")}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
        raise UsageError(f"--{name} must be a whole number, got {flags.shown(value)}")
    if value < minimum:
        raise UsageError(f"--{name} must be at least {minimum}, got {value}")
    return value


def as_float(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UsageError(f"--{name} must be a number, got {flags.shown(value)}")
    return float(value)


def as_bool(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise UsageError(f"--{name} is a switch: give --{name} or --no{name}, got "
                         f"{flags.shown(value)}")
    return value


def as_str(name: str, value) -> str:
    if isinstance(value, bool) or value is None or str(value) == "":
        raise UsageError(f"--{name} needs a value, got {flags.shown(value)}")
    return str(value)


@dataclasses.dataclass(frozen=True)
class Options:
    """The options both sampling scripts share, cast and checked as far as possible
    without the model (ranges that need hparams are checked by `load_model`)."""

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
    backend: str = "tf"

    @classmethod
    def parse(cls, *, model_name, models_dir, seed, nsamples, batch_size, length,
              temperature, top_k, top_p, stop_at_endoftext, dtype,
              min_nsamples: int, backend="tf") -> "Options":
        batch_size = 1 if batch_size is None else as_int("batch_size", batch_size, minimum=1)
        nsamples = as_int("nsamples", nsamples, minimum=min_nsamples)
        if nsamples % batch_size:
            below = nsamples // batch_size * batch_size
            fits = f"--nsamples {below} or {below + batch_size}" if below else \
                f"--nsamples {batch_size}"
            raise UsageError(f"--nsamples {nsamples} is not a multiple of --batch_size "
                             f"{batch_size}: use {fits}, or --batch_size 1")
        backend, dtype = backend_and_dtype(backend, dtype)
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
            dtype=dtype, backend=backend)


def backend_and_dtype(backend, dtype) -> tuple[str, str]:
    """--backend tf|litert and a --dtype that backend offers (int8 is LiteRT's only,
    bfloat16 TensorFlow's only)."""
    if str(backend) not in BACKENDS:
        raise UsageError(f"--backend must be one of {', '.join(BACKENDS)}, got "
                         f"{flags.shown(backend)}")
    backend, offered = str(backend), BACKENDS[str(backend)]
    elsewhere = [b for b, types in BACKENDS.items() if str(dtype) in types]
    if not elsewhere:
        raise UsageError(f"--dtype must be one of {', '.join(offered)}, got "
                         f"{flags.shown(dtype)}")
    if str(dtype) not in offered:
        raise UsageError(f"--dtype {dtype} needs --backend {elsewhere[0]} (--backend "
                         f"{backend} offers {', '.join(offered)})")
    return backend, str(dtype)


def derive_seed(seed: int | None, *path: int) -> int | None:
    """An independent seed for each batch (and prompt) of a seeded run, so one --seed
    reproduces the whole run while no two batches repeat each other's draws. The first
    batch of the first prompt draws from `seed` itself, so a batch's recorded seed,
    given as --seed, draws that batch again."""
    if seed is None or not any(path):
        return seed
    digest = hashlib.blake2b(repr((seed, *path)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 2


def utf8_streams() -> None:
    """UTF-8 in and out whatever the console's encoding (see stdio.install)."""
    stdio.install()


def note(prog: str, message: str) -> None:
    """One line on stderr; silently nothing if there is no stderr to write to."""
    if sys.stderr is None:
        return
    try:
        print(f"{prog}: {message}", file=sys.stderr, flush=True)
    except (OSError, ValueError):
        stdio.silence(sys.stderr)


def missing_package(e: ModuleNotFoundError) -> str:
    """What to do when a required package is not importable by this interpreter."""
    activate = os.path.join(ROOT, ".venv", "bin", "activate")
    if sys.prefix == sys.base_prefix and os.path.isfile(activate):
        fix = f"activate the project's environment first: . {shlex.quote(activate)}"
    elif sys.prefix == sys.base_prefix:
        fix = (f"install the project first: cd {shlex.quote(ROOT)} && python3 -m venv .venv "
               f"&& . .venv/bin/activate && pip install -e .")
    else:
        fix = (f"install the requirements: {shlex.quote(sys.executable)} -m pip install -r "
               f"{shlex.quote(os.path.join(ROOT, 'requirements.txt'))}")
    return f"the Python package {e.name!r} is not installed for {sys.executable}: {fix}"


def ours(module: str | None) -> bool:
    return bool(module) and os.path.exists(
        os.path.join(ROOT, "src", module.split(".")[0] + ".py"))


def _on_sigterm(signum, frame):
    raise Terminated()


def interruption(e: BaseException) -> BaseException | None:
    """The Ctrl-C or SIGTERM behind `e`, if any. Raised by a signal handler while C code
    was calling back into Python (NumPy converting an array for TensorFlow), it arrives
    wrapped in a SystemError ("returned a result with an exception set")."""
    while e is not None:
        if isinstance(e, (KeyboardInterrupt, Terminated)):
            return e
        if not isinstance(e, SystemError):
            return None
        e = e.__cause__ or e.__context__
    return None


def guarded(prog: str, body: Callable[[], int]) -> int:
    """Runs `body` with safe standard streams (stdio.py) and a SIGTERM handler; turns
    every expected way of ending into an exit status and one line on stderr."""
    stdio.install()
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        try:
            code = body()
        except SystemError as e:
            stop = interruption(e)
            if stop is None:
                raise
            raise stop from None
        stdio.flush()  # a full stdout is reported here, not by the interpreter at exit
        return code
    except UsageError as e:
        note(prog, f"error: {e}")
        return EXIT_USAGE
    except (Failure, StreamError) as e:
        note(prog, f"error: {e}")
        return EXIT_FAILURE
    except KeyboardInterrupt as e:
        note(prog, "interrupted" + getattr(e, "detail", ""))
        return EXIT_SIGINT
    except Terminated as e:
        note(prog, "terminated" + getattr(e, "detail", ""))
        return EXIT_SIGTERM
    except BrokenPipeError:
        return EXIT_OK  # the reader (`head`) has gone: stop quietly
    except MemoryError:
        note(prog, "error: out of memory: use a smaller --batch_size or --length")
        return EXIT_FAILURE
    except ModuleNotFoundError as e:
        if ours(e.name):
            raise
        note(prog, f"error: {missing_package(e)}")
        return EXIT_FAILURE
    except OSError as e:  # a file the body did not wrap itself: still one line, exit 1
        where = f" ({e.filename})" if e.filename else ""
        note(prog, f"error: {e.strerror or type(e).__name__}{where}")
        return EXIT_FAILURE
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
        stdio.settle()
        signal.signal(signal.SIGTERM, previous)


def fire_main(component: Callable[..., int], argv: list[str] | None, *,
              prog: str | None = None) -> int:
    """Parses the command line for `component` (Fire's syntax, see flags.py) and returns
    its exit status. `--help` prints the help and exits 0; an unknown flag or extra
    argument is one line and exit 2, before anything runs."""
    module = sys.modules.get(getattr(component, "__module__", ""), None)
    prog = prog or getattr(module, "PROG", None) or os.path.basename(sys.argv[0])
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]

    def run() -> int:
        try:
            args, kwargs = flags.parse(component, argv)
        except flags.Help:
            show_help(flags.help_text(component, prog))
            return EXIT_OK
        except flags.ParseError as e:
            raise UsageError(str(e)) from None
        return component(*args, **kwargs)

    return guarded(prog, run)


def show_help(text: str) -> None:
    """Prints `text`; through the pager named by FIRE_PAGER only when asked and at a
    terminal (FIRE_PAGER=less). PAGER, which Fire itself read, is not used."""
    pager = os.environ.get("FIRE_PAGER", "").strip()
    if pager and pager != "cat" and sys.stdout.isatty():
        sys.stdout.flush()
        interrupt = signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the pager's
        try:
            if subprocess.run(pager, shell=True, input=text.encode("utf-8")).returncode == 0:
                return
        except OSError:
            pass  # no shell: print it instead
        finally:
            signal.signal(signal.SIGINT, interrupt)
    sys.stdout.write(text)
