"""What the sampling scripts and the Python API share about samples: loading a model,
the original's sample format, and JSON-lines records.

One `SampleOutput` numbers, cuts, decodes and prints (or writes) every sample of both
scripts, so they cannot drift apart (the original's unconditional script counted
`generated += batch_size` once per row). TensorFlow is imported only by `load_model`, so a
bad flag is answered at once instead of after TensorFlow's start-up.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import sys
import tempfile
from typing import Iterable

from cli import Failure, Options, UsageError
from records import JsonlWriter  # noqa: F401 -- the scripts' writer, re-exported

RULE = "=" * 80  # the interactive script's line after each prompt's samples
# TensorFlow's info lines at import ("I0000 00:00:... port.cc:153] oneDNN ..."), absl's
# notice that precedes them, and the CUDA probe's errors on a machine without a GPU.
TF_NOISE = re.compile(r"I\d{4} |WARNING: All log messages before absl::InitializeLog"
                      r"|E\d{4} .*(cuInit|cuda_platform|cuda_dnn|cuda_blas|cuda_fft)")


def header(n: int) -> str:
    return "=" * 40 + " SAMPLE " + str(n) + " " + "=" * 40


@dataclasses.dataclass
class Model:
    """A loaded model with its encoder; samplers are made (and kept) per strategy."""

    enc: object  # encoder.Encoder
    hparams: object  # model.HParams
    params: dict
    strategy: dict  # the run's temperature, top_k, top_p, checked by sample.strategy
    eot: int  # <|endoftext|>: the unconditional start token, and where samples may end
    model_dir: str = ""
    runtime: object = None  # litert_runtime.Runtime with --backend litert (params is None)
    runtime_samplers: dict = dataclasses.field(default_factory=dict)

    @property
    def sampler(self):
        return self.sampler_for(self.strategy)

    def sampler_for(self, strategy: dict):
        """The compiled sampler of `strategy` (sample.strategy's dict), kept by
        sample.sampler_for (or here, for LiteRT): the one place the scripts and the API
        get samplers from."""
        if self.runtime is not None:
            key = tuple(sorted(strategy.items()))
            if key not in self.runtime_samplers:
                import litert_runtime
                self.runtime_samplers[key] = litert_runtime.Sampler(self.runtime, **strategy)
            return self.runtime_samplers[key]
        import sample
        return sample.sampler_for(self.params, self.hparams, **strategy)

    def scorer(self):
        """A score.Scorer of this model (on LiteRT with --backend litert)."""
        if self.runtime is not None:
            import litert_score
            return litert_score.Scorer(self.runtime)
        import score
        return score.Scorer(self.params, self.hparams)

    def generate(self, context: list[int] | None, *, batch_size: int, length: int,
                 seed: int | None, stop: bool, strategy: dict | None = None):
        """New tokens [batch_size, <= length] after `context`, or after the start token
        (which is not part of the sample) when `context` is None."""
        import sample
        start = self.eot if context is None else None
        out = sample.sample_sequence(
            params=self.params, hparams=self.hparams, length=length, start_token=start,
            context=context, batch_size=batch_size, seed=seed,
            sampler=self.sampler_for(strategy or self.strategy),
            stop_token=self.eot if stop else None)
        return out[:, 1 if context is None else len(context):]

    def stream(self, context: list[int], *, length: int, seed: int | None,
               strategy: dict | None = None):
        """One sample's tokens as they are drawn, each an array [1]."""
        import numpy as np
        import sample
        return sample.stream_sequence(self.sampler_for(strategy or self.strategy),
                                      np.asarray([context], np.int32), length=length,
                                      seed=seed)


def check_length(length: int | None, n_ctx: int) -> None:
    """Every sample needs at least one position before it (a prompt or the start token)."""
    if length is not None and length > n_ctx - 1:
        raise UsageError(f"--length {length} does not fit the model's context of {n_ctx} "
                         f"tokens, one of which the prompt or start token needs: use "
                         f"--length {n_ctx - 1} or less")


@contextlib.contextmanager
def quiet_tensorflow():
    """Keeps TensorFlow's chatter off stderr while the block runs.

    TensorFlow 2.21 logs info lines (oneDNN, CUDA drivers) from C++ before it reads
    TF_CPP_MIN_LOG_LEVEL, and the CUDA probe's errors when the first tensor is made, so
    they are caught at the file-descriptor level; any other line (a real warning or error,
    or our own) is passed on when the block ends.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield  # no descriptor 2 to catch (a test's captured stream): nothing to do
        return
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            for line in caught.read().decode("utf-8", "replace").splitlines(keepends=True):
                if not TF_NOISE.match(line):
                    sys.stderr.write(line)


def import_tensorflow_quietly():
    """Imports TensorFlow without its start-up chatter on stderr (see quiet_tensorflow)."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    with quiet_tensorflow():
        import tensorflow
    return tensorflow


def load_model(options: Options) -> Model:
    """Checks the options that need hparams.json, then loads the encoder and the weights."""
    import_tensorflow_quietly()  # here, so that usage errors skip its start-up
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
    try:  # a batch whose key/value cache cannot fit in memory (1e10) is refused here
        sample.check_batch_size(options.batch_size, hparams=hparams,
                                positions=(options.length or hparams.n_ctx - 1) + 1,
                                dtype_size=2 if options.dtype == "bfloat16" else 4)
    except ValueError as e:
        raise UsageError(str(e)) from None
    return open_model(model_dir, hparams, dtype=options.dtype, strategy=strategy,
                      backend=options.backend)


def open_model(model_dir: str, hparams, *, dtype: str, strategy: dict,
               backend: str = "tf") -> Model:
    """Reads the encoder and the weights of a model whose hparams.json has been read;
    with backend "litert", opens its LiteRT export instead (made first if needed)."""
    tf = import_tensorflow_quietly()
    import checkpoint
    import encoder
    params = runtime = None
    try:
        enc = encoder.get_encoder(os.path.basename(model_dir), os.path.dirname(model_dir))
        if enc.n_vocab != hparams.n_vocab:
            raise ValueError(f"{model_dir}/encoder.json has {enc.n_vocab} tokens but "
                             f"hparams.json says n_vocab={hparams.n_vocab}: the files belong "
                             f"to different models; download the model again")
        if backend == "litert":
            runtime = open_litert(model_dir, dtype)
        else:
            with quiet_tensorflow():  # the first tensor wakes the CUDA probe
                hparams, params = checkpoint.load(model_dir, dtype=getattr(tf, dtype))
    except ValueError as e:
        raise Failure(str(e)) from None
    return Model(enc=enc, hparams=hparams, params=params, strategy=strategy,
                 eot=enc.encoder[encoder.ENDOFTEXT], model_dir=model_dir, runtime=runtime)


def open_litert(model_dir: str, dtype: str):
    """The model's LiteRT runtime; an export, when one is needed, shows its progress."""
    import litert_runtime
    progress = litert_runtime.ExportProgress(sys.stderr, "litert: ")
    try:
        with quiet_tensorflow():
            return litert_runtime.load(model_dir, dtype=dtype, progress=progress)
    finally:
        progress.close()


def existing_model_dir(options: Options) -> str | None:
    """The model directory the options name, if it exists (no TensorFlow needed)."""
    import model_paths
    try:
        return model_paths.model_dir_for(options.model_name, options.models_dir)
    except ValueError:
        return None


def with_seed(options: Options) -> Options:
    """The options with a drawn seed if none was given: every record then names the seed
    its batch drew from, so any sample can be drawn again."""
    if options.seed is not None:
        return options
    import random
    return dataclasses.replace(options, seed=random.SystemRandom().getrandbits(62))


def open_output(path, options: Options) -> JsonlWriter | None:
    """The --output writer, opened before the model loads so a bad path costs no waiting;
    a path inside the model directory is refused."""
    if path is None:
        return None
    from cli import as_str
    return JsonlWriter(as_str("output", path), model_dir=existing_model_dir(options))


def settings(options: Options, model_dir: str) -> dict:
    """The settings a JSON-lines record carries after its own fields; `seed` and
    `length_asked` are each batch's."""
    return {"model": os.path.basename(os.path.normpath(model_dir)), "seed": options.seed,
            "batch_size": options.batch_size, "length_asked": options.length,
            "temperature": options.temperature, "top_k": options.top_k,
            "top_p": options.top_p, "stop_at_endoftext": options.stop_at_endoftext,
            "dtype": options.dtype, "backend": options.backend}


def cut_at_endoftext(tokens: Iterable[int], eot: int, stop: bool) -> tuple[list[int], bool]:
    """(the sample's tokens, whether it reached <|endoftext|>); with `stop`, the tokens end
    before the first <|endoftext|>."""
    tokens = [int(t) for t in tokens]
    ended = eot in tokens
    if stop and ended:
        tokens = tokens[:tokens.index(eot)]
    return tokens, ended


class SampleOutput:
    """Numbers samples 1..n for one prompt (or one run) and prints them in the original's
    format, or writes them as JSON lines with the settings that made them; streamed
    samples go through `stream`. `total` counts every sample of the run."""

    def __init__(self, enc, *, eot: int, stop_at_endoftext: bool, out=None,
                 jsonl: JsonlWriter | None = None, settings: dict | None = None,
                 progress=None):
        self.enc, self.eot, self.stop = enc, eot, stop_at_endoftext
        self.out, self.jsonl, self.settings = out, jsonl, settings or {}
        self.progress = progress
        self.count = self.total = 0

    def restart(self) -> None:
        """The next sample is number 1 again (a new prompt)."""
        self.count = 0

    def add(self, tokens: Iterable[int], *, prompt: str | None = None, **batch) -> None:
        """One sample; `batch` overrides settings (the batch's seed and length)."""
        tokens, ended = cut_at_endoftext(tokens, self.eot, self.stop)
        text = self.enc.decode(tokens)
        if self.jsonl is not None:
            extra = {} if prompt is None else {"prompt": prompt}
            self.jsonl.write(ended=ended, length=len(tokens), text=text, **extra,
                             **{**self.settings, **batch})
        else:
            self.out.write(header(self.count + 1) + "\n" + text + "\n")
            self.out.flush()
        self.counted()

    def counted(self) -> None:
        self.count += 1
        self.total += 1
        if self.progress is not None:
            self.progress.update(1)

    def stream(self, tokens: Iterable) -> None:
        """Prints each token of one sample as it arrives; `tokens` yields arrays [1]."""
        self.out.write(header(self.count + 1) + "\n")
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
        self.counted()

    def summary(self, prompts: int | None = None) -> str:
        """The last line of a run: how many samples went where."""
        n = f"{self.total} sample{'s' if self.total != 1 else ''}"
        if prompts is not None:
            n += f" for {prompts} prompt{'s' if prompts != 1 else ''}"
        if self.jsonl is None:
            return f"{n} printed"
        ids = ("" if self.jsonl.first_id is None or not self.jsonl.regular else
               f" (ids {self.jsonl.first_id}-{self.jsonl.last_id})")
        return f"{n} written to {self.jsonl.path}{ids}"
