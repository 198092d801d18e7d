"""What the two sampling scripts share: typed options, exit codes, UTF-8 output, the
original's sample format, JSON-lines records, signals, and loading a model.

One `SampleOutput` numbers, cuts, decodes and prints (or writes) every sample of both
scripts, so they cannot drift apart (the original's unconditional script counted
`generated += batch_size` once per row). TensorFlow is imported only by `load_model`, so a
bad flag is answered at once instead of after TensorFlow's start-up.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import re
import signal
import sys
import tempfile
from typing import Callable, Iterable

import fire

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_SIGINT, EXIT_SIGTERM = 0, 1, 2, 130, 143
RULE = "=" * 80  # the interactive script's line after each prompt's samples
DTYPES = ("float32", "bfloat16")
# TensorFlow's info lines at import ("I0000 00:00:... port.cc:153] oneDNN ...") and absl's
# notice that precedes them.
TF_NOISE = re.compile(r"I\d{4} |WARNING: All log messages before absl::InitializeLog")


def header(n: int) -> str:
    return "=" * 40 + " SAMPLE " + str(n) + " " + "=" * 40


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


@dataclasses.dataclass
class Model:
    """A loaded model with its encoder and its compiled sampler (one per run)."""

    enc: object  # encoder.Encoder
    hparams: object  # model.HParams
    params: dict
    sampler: object  # sample.Sampler
    eot: int  # <|endoftext|>: the unconditional start token, and where samples may end

    def generate(self, context: list[int] | None, *, batch_size: int, length: int,
                 seed: int | None, stop: bool):
        """New tokens [batch_size, <= length] after `context`, or after the start token
        (which is not part of the sample) when `context` is None."""
        import sample
        start = self.eot if context is None else None
        out = sample.sample_sequence(
            params=self.params, hparams=self.hparams, length=length, start_token=start,
            context=context, batch_size=batch_size, seed=seed, sampler=self.sampler,
            stop_token=self.eot if stop else None)
        return out[:, 1 if context is None else len(context):]

    def stream(self, context: list[int], *, length: int, seed: int | None):
        """One sample's tokens as they are drawn, each an array [1]."""
        import numpy as np
        import sample
        return sample.stream_sequence(self.sampler, np.asarray([context], np.int32),
                                      length=length, seed=seed)


def check_length(length: int | None, n_ctx: int) -> None:
    """Every sample needs at least one position before it (a prompt or the start token)."""
    if length is not None and length > n_ctx - 1:
        raise UsageError(f"--length {length} does not fit the model's context of {n_ctx} "
                         f"tokens, one of which the prompt or start token needs: use "
                         f"--length {n_ctx - 1} or less")


def import_tensorflow_quietly():
    """Imports TensorFlow without its start-up chatter on stderr.

    TensorFlow 2.21 logs info lines (oneDNN, CUDA drivers) from C++ before it reads
    TF_CPP_MIN_LOG_LEVEL, so they are caught at the file-descriptor level; any other line
    (a real warning or error) is passed on.
    """
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            import tensorflow
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            for line in caught.read().decode("utf-8", "replace").splitlines(keepends=True):
                if not TF_NOISE.match(line):
                    sys.stderr.write(line)
    return tensorflow


def load_model(options: Options) -> Model:
    """Checks the options that need hparams.json, then loads the encoder and the weights."""
    tf = import_tensorflow_quietly()  # here, so that usage errors skip its start-up
    import checkpoint
    import encoder
    import sample
    from model import HParams

    try:
        model_dir = checkpoint.model_dir_for(options.model_name, options.models_dir)
        hparams = HParams.from_json(os.path.join(model_dir, "hparams.json"))
    except ValueError as e:
        raise Failure(str(e)) from None
    try:
        strategy = sample.strategy(hparams=hparams, temperature=options.temperature,
                                   top_k=options.top_k, top_p=options.top_p)
    except ValueError as e:
        raise UsageError(str(e)) from None
    check_length(options.length, hparams.n_ctx)
    try:
        enc = encoder.get_encoder(options.model_name, options.models_dir)
        if enc.n_vocab != hparams.n_vocab:
            raise ValueError(f"{model_dir}/encoder.json has {enc.n_vocab} tokens but "
                             f"hparams.json says n_vocab={hparams.n_vocab}: the files belong "
                             f"to different models; download the model again")
        hparams, params = checkpoint.load(model_dir, dtype=getattr(tf, options.dtype))
    except ValueError as e:
        raise Failure(str(e)) from None
    sampler = sample.Sampler(params, hparams, **strategy)
    return Model(enc=enc, hparams=hparams, params=params, sampler=sampler,
                 eot=enc.encoder[encoder.ENDOFTEXT])


def cut_at_endoftext(tokens: Iterable[int], eot: int, stop: bool) -> tuple[list[int], bool]:
    """(the sample's tokens, whether it reached <|endoftext|>); with `stop`, the tokens end
    before the first <|endoftext|>."""
    tokens = [int(t) for t in tokens]
    ended = eot in tokens
    if stop and ended:
        tokens = tokens[:tokens.index(eot)]
    return tokens, ended


class JsonlWriter:
    """Appends one JSON object per sample (gpt-2-output-dataset's `id, ended, length,
    text`) to a file, each written whole by one unbuffered write, so an interrupted run
    keeps every finished record. Ids continue after the records already in the file."""

    def __init__(self, path: str):
        try:
            self.file = open(path, "ab", buffering=0)
        except IsADirectoryError:
            raise UsageError(f"--output {path} is a directory: give a file name") from None
        except FileNotFoundError:
            raise UsageError(f"--output {path}: the directory "
                             f"{os.path.dirname(path) or '.'} does not exist: create it or "
                             f"choose another path") from None
        except OSError as e:
            raise UsageError(f"--output {path} cannot be written ({e.strerror}): choose "
                             f"another path") from None
        self.path = path
        self.next_id, last = 0, b"\n"
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                self.next_id, last = self.next_id + chunk.count(b"\n"), chunk[-1:]
        self.pending_newline = last != b"\n"  # a cut-off last line: it counts as one
        self.next_id += self.pending_newline

    def write(self, *, ended: bool, length: int, text: str) -> None:
        record = {"id": self.next_id, "ended": ended, "length": length, "text": text}
        line = json.dumps(record, ensure_ascii=False) + "\n"
        if self.pending_newline:  # a cut-off last line from an earlier run stays on its own
            line, self.pending_newline = "\n" + line, False
        data = line.encode("utf-8")
        while data:  # a regular file takes it in one write; loop only for the odd short one
            data = data[self.file.write(data):]
        self.next_id += 1

    def close(self) -> None:
        self.file.close()


class SampleOutput:
    """Numbers samples 1..n for one prompt (or one run) and prints them in the original's
    format, or writes them as JSON lines; streamed samples go through `stream`."""

    def __init__(self, enc, *, eot: int, stop_at_endoftext: bool, out=None,
                 jsonl: JsonlWriter | None = None):
        self.enc, self.eot, self.stop = enc, eot, stop_at_endoftext
        self.out, self.jsonl = out, jsonl
        self.count = 0

    def add(self, tokens: Iterable[int]) -> None:
        tokens, ended = cut_at_endoftext(tokens, self.eot, self.stop)
        text = self.enc.decode(tokens)
        self.count += 1
        if self.jsonl is not None:
            self.jsonl.write(ended=ended, length=len(tokens), text=text)
        else:
            self.out.write(header(self.count) + "\n" + text + "\n")
            self.out.flush()

    def stream(self, tokens: Iterable) -> None:
        """Prints each token of one sample as it arrives; `tokens` yields arrays [1]."""
        self.count += 1
        self.out.write(header(self.count) + "\n")
        self.out.flush()
        decoder = self.enc.incremental_decoder()
        try:
            for batch in tokens:
                token = int(batch[0])
                if self.stop and token == self.eot:
                    break
                self.out.write(decoder.decode(token))
                self.out.flush()
        finally:  # also on Ctrl-C: end the line so the next output starts cleanly
            self.out.write(decoder.flush() + "\n")
            self.out.flush()


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
