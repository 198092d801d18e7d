"""What the two sampling scripts share about samples: loading a model, the original's
sample format, and JSON-lines records.

One `SampleOutput` numbers, cuts, decodes and prints (or writes) every sample of both
scripts, so they cannot drift apart (the original's unconditional script counted
`generated += batch_size` once per row). TensorFlow is imported only by `load_model`, so a
bad flag is answered at once instead of after TensorFlow's start-up.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import stat
import sys
import tempfile
from typing import Iterable

from cli import Failure, Options, UsageError

RULE = "=" * 80  # the interactive script's line after each prompt's samples
# TensorFlow's info lines at import ("I0000 00:00:... port.cc:153] oneDNN ..."), absl's
# notice that precedes them, and the CUDA probe's errors on a machine without a GPU.
TF_NOISE = re.compile(r"I\d{4} |WARNING: All log messages before absl::InitializeLog"
                      r"|E\d{4} .*(cuInit|cuda_platform|cuda_dnn|cuda_blas|cuda_fft)")


def header(n: int) -> str:
    return "=" * 40 + " SAMPLE " + str(n) + " " + "=" * 40

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
    import model_paths
    import sample
    from model import HParams

    try:
        model_dir = model_paths.model_dir_for(options.model_name, options.models_dir)
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
        enc = encoder.get_encoder(os.path.basename(model_dir), os.path.dirname(model_dir))
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
        # Ids continue after the lines of a regular file; a pipe, terminal or /dev/stdout
        # has nothing to count (reading it back would block forever).
        if stat.S_ISREG(os.fstat(self.file.fileno()).st_mode):
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
