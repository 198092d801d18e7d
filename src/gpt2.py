"""GPT-2 from Python: load a model once, then generate whole samples, stream one, or
score a text.

    import gpt2
    model = gpt2.load("124M")                      # reads models/124M once
    for sample in model.generate("The meaning of life is", nsamples=2, length=40,
                                 top_k=40, seed=1):
        print(sample.text)
    for text in model.stream("Once upon a time", length=40, top_k=40):
        print(text, end="", flush=True)
    print(model.score("The cat sat on the mat.").perplexity)

The options, defaults and checks are the scripts' (a bad value is a ValueError whose
message names the flag, as the scripts print it), and so are the samples: the same seed
gives the same samples as `interactive_conditional_samples.py --prompt ...` (or, with no
prompt, as `generate_unconditional_samples.py`). TensorFlow is imported by `load`, quietly.
"""
from __future__ import annotations

import dataclasses
import os
import random
from typing import Iterator

from cli import Failure, Options, derive_seed

__all__ = ["load", "GPT2", "Sample", "Score"]


@dataclasses.dataclass(frozen=True)
class Sample:
    """One sample: its text and tokens (cut before <|endoftext|> with stop_at_endoftext),
    whether it reached <|endoftext|>, and the seed its batch drew from."""

    text: str
    tokens: list[int]
    ended: bool
    seed: int

    def __str__(self) -> str:
        return self.text


@dataclasses.dataclass(frozen=True)
class Score:
    """A text's tokens and the natural-log probability of each, given <|endoftext|> and
    every token before it (long texts in lm-evaluation-harness's rolling windows)."""

    tokens: list[int]
    logprobs: list[float]

    @property
    def logprob(self) -> float:
        """The log-probability of the whole text."""
        return float(sum(self.logprobs))

    @property
    def perplexity(self) -> float:
        """exp of the mean negative log-probability per token."""
        import math
        return math.exp(-self.logprob / len(self.tokens))


def load(model_name: str = "124M", *, models_dir: str = "models",
         dtype: str = "float32", backend: str = "tf") -> "GPT2":
    """Loads `models_dir/model_name` (a released checkpoint or any model directory in its
    layout); raises ValueError naming the problem and the fix. `backend="litert"` (with
    dtype float32 or int8) runs it on LiteRT, exporting it once first."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow is imported
    import samples_io
    options = parse(model_name=model_name, models_dir=models_dir, dtype=dtype,
                    backend=backend)
    try:
        return GPT2(samples_io.load_model(options))
    except Failure as e:
        raise ValueError(str(e)) from None


def parse(**given) -> Options:
    """The scripts' checks (Options.parse) on the API's arguments."""
    options = dict(model_name="124M", models_dir="models", seed=None, nsamples=1,
                   batch_size=1, length=None, temperature=1, top_k=0, top_p=1,
                   stop_at_endoftext=False, dtype="float32", backend="tf")
    return Options.parse(**{**options, **given}, min_nsamples=1)


class GPT2:
    """A loaded model. One generation runs at a time (finish or close a stream first)."""

    def __init__(self, model):
        self.model = model
        self.encoder, self.hparams = model.enc, model.hparams
        self._streaming = False
        self._scorer = None

    def _prepare(self, prompt, *, length, truncate_prompt, **options):
        """(options, strategy, context tokens or None, sample length)."""
        import prompts
        import sample
        import samples_io
        self._check_idle()
        opts = parse(length=length, **options)
        strategy = sample.strategy(hparams=self.hparams, temperature=opts.temperature,
                                   top_k=opts.top_k, top_p=opts.top_p)
        samples_io.check_length(opts.length, self.hparams.n_ctx)
        if prompt is None:
            return opts, strategy, None, opts.length or self.hparams.n_ctx - 1
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"prompt must be a non-empty str, got {prompt!r:.60}")
        tokens, length, _ = prompts.prepare(self.encoder, prompts.clean(prompt),
                                            n_ctx=self.hparams.n_ctx, length=opts.length,
                                            truncate=truncate_prompt)
        return opts, strategy, tokens, length

    def generate(self, prompt: str | None = None, *, nsamples: int = 1, batch_size: int = 1,
                 length: int | None = None, temperature: float = 1, top_k: int = 0,
                 top_p: float = 1, seed: int | None = None, stop_at_endoftext: bool = False,
                 truncate_prompt: bool = False) -> list[Sample]:
        """`nsamples` samples continuing `prompt`, or unconditional ones for None."""
        opts, strategy, context, length = self._prepare(
            prompt, length=length, truncate_prompt=truncate_prompt, nsamples=nsamples,
            batch_size=batch_size, temperature=temperature, top_k=top_k, top_p=top_p,
            seed=seed, stop_at_endoftext=stop_at_endoftext)
        import samples_io
        base = random_seed() if opts.seed is None else opts.seed
        found = []
        for batch in range(opts.nsamples // opts.batch_size):
            path = (batch,) if context is None else (0, batch)
            batch_seed = derive_seed(base, *path)
            rows = self.model.generate(context, batch_size=opts.batch_size, length=length,
                                       seed=batch_seed, stop=opts.stop_at_endoftext,
                                       strategy=strategy)
            for row in rows:
                tokens, ended = samples_io.cut_at_endoftext(row, self.model.eot,
                                                            opts.stop_at_endoftext)
                found.append(Sample(self.encoder.decode(tokens), tokens, ended, batch_seed))
        return found

    def stream(self, prompt: str, *, length: int | None = None, temperature: float = 1,
               top_k: int = 0, top_p: float = 1, seed: int | None = None,
               stop_at_endoftext: bool = False, truncate_prompt: bool = False
               ) -> Iterator[str]:
        """One sample's text, piece by piece as its tokens are drawn (a character split
        over several tokens comes whole); the same sample `generate` gives first."""
        opts, strategy, context, length = self._prepare(
            prompt, length=length, truncate_prompt=truncate_prompt, temperature=temperature,
            top_k=top_k, top_p=top_p, seed=seed, stop_at_endoftext=stop_at_endoftext)
        base = random_seed() if opts.seed is None else opts.seed
        tokens = self.model.stream(context, length=length, seed=derive_seed(base, 0, 0),
                                   strategy=strategy)
        return self._pieces(tokens, stop=opts.stop_at_endoftext)

    def score(self, text: str, *, stride: int | None = None, batch_size: int = 8) -> Score:
        """Each token's log-probability (src/score.py, which evaluate.py uses too). A text
        longer than the context is scored in disjoint windows, or with `stride` in
        overlapping ones that give every token more context."""
        import prompts
        import score
        self._check_idle()
        if not isinstance(text, str) or not text:
            raise ValueError(f"text must be a non-empty str, got {text!r:.60}")
        tokens = self.encoder.encode(prompts.clean(text))
        if self._scorer is None:
            self._scorer = self.model.scorer()
        logprobs, = score.token_logprobs(self._scorer, [tokens], prefix_token=self.model.eot,
                                         stride=stride, batch_size=batch_size)
        return Score(tokens, [float(x) for x in logprobs])

    def _check_idle(self) -> None:
        if self._streaming:
            raise RuntimeError("a stream of this model is still open: finish it or call "
                               "its close() first")

    def _pieces(self, tokens, *, stop: bool) -> Iterator[str]:
        self._check_idle()
        self._streaming = True
        decoder = self.encoder.incremental_decoder()
        try:
            for batch in tokens:
                token = int(batch[0])
                if stop and token == self.model.eot:
                    break
                text = decoder.decode(token)
                if text:
                    yield text
            rest = decoder.flush()
            if rest:
                yield rest
        finally:
            self._streaming = False


def random_seed() -> int:
    """A seed for a run that was given none; recorded in each Sample."""
    return random.SystemRandom().getrandbits(62)
