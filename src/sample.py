"""Sampling from GPT-2: logit filters, a token-picking strategy, and the generation loop.

Three layers, each usable alone: `top_k_logits`/`top_p_logits`/`pick` choose a token from
logits; `step` runs the model on new tokens against a preallocated key/value cache that is
updated in place; `Sampler` compiles a prefill and a one-token step around them, and
`sample_sequence` (whole samples) and `stream_sequence` (token by token) share one loop
over those. Shapes are dynamic in the traced functions, so a new prompt length, sample
length or batch size reuses the same trace. The entry points check their inputs (limits.py)
before anything is allocated or run, and `sampler_for` keeps one Sampler per strategy.
"""
from __future__ import annotations

import math
import random
from typing import Iterator

import numpy as np
import tensorflow as tf

import model
from limits import (available_memory, check_batch_size, max_batch_size, number,  # noqa: F401
                    out_of_vocabulary, token_ids, whole)
from model import HParams


# Temperatures below this sample as temperature 0 (greedy), which is their limit.
MIN_TEMPERATURE = 1e-6


def top_k_logits(logits: tf.Tensor, k: int) -> tf.Tensor:
    """Keeps the k largest logits of each row ([batch, n_vocab]); k == 0 keeps all."""
    if k == 0:
        return logits
    _, indices = tf.math.top_k(logits, k=k)  # [batch, k]
    keep = tf.reduce_any(tf.one_hot(indices, tf.shape(logits)[-1], on_value=True,
                                    off_value=False, dtype=tf.bool), axis=1)  # [batch, n_vocab]
    return tf.where(keep, logits, tf.cast(-np.inf, logits.dtype))  # exactly k survive


def top_p_logits(logits: tf.Tensor, p: float) -> tf.Tensor:
    """Keeps, per row, the most likely tokens whose probabilities first reach p (the token
    that crosses p included); p >= 1 keeps all."""
    if p >= 1:
        return logits
    ordered = tf.sort(logits, direction="DESCENDING", axis=-1)  # [batch, n_vocab]
    before = tf.cumsum(tf.nn.softmax(ordered, axis=-1), axis=-1, exclusive=True)
    # The mass strictly before a token is < p for exactly the kept set; the top token
    # always stays. The smallest kept logit is each row's threshold.
    kept = tf.logical_or(before < p, tf.range(tf.shape(ordered)[-1]) == 0)
    threshold = tf.reduce_min(tf.where(kept, ordered, tf.cast(np.inf, ordered.dtype)),
                              axis=-1, keepdims=True)  # [batch, 1]
    return tf.where(logits < threshold, tf.cast(-np.inf, logits.dtype), logits)


def pick(logits: tf.Tensor, seed: tf.Tensor, *, temperature: float, top_k: int,
         top_p: float) -> tf.Tensor:
    """One token per row of logits [batch, n_vocab]: greedy at temperature 0, else a draw
    from the filtered, tempered distribution. `seed` is a stateless seed [2]."""
    logits = tf.cast(logits, tf.float32)
    if temperature == 0:
        return tf.argmax(logits, axis=-1, output_type=tf.int32)  # [batch]
    logits = logits / temperature
    if top_k:
        # Draw among the k best only: a top_k and a tiny categorical, no full sort.
        values, indices = tf.math.top_k(logits, k=top_k)  # [batch, k]
        values = top_p_logits(values, top_p)
        choice = tf.random.stateless_categorical(values, 1, seed=seed, dtype=tf.int32)
        return tf.gather(indices, choice[:, 0], batch_dims=1)  # [batch]
    logits = top_p_logits(logits, top_p)
    return tf.random.stateless_categorical(logits, 1, seed=seed, dtype=tf.int32)[:, 0]


def step(params, hparams: HParams, tokens, cache, pos):
    """Runs `tokens` [batch, seq] at positions pos.. against the cache variables (written
    in place); returns the last position's logits [batch, n_vocab] and the cache."""
    out = model.model(params, tokens, hparams=hparams, past=cache, pos=pos,
                      last_logits_only=True)
    return out["logits"][:, -1], out["present"]


class Sampler:
    """Compiled prefill and token step for one model and one strategy.

    Traced once per strategy (temperature, top_k, top_p) and reused for every prompt,
    length and batch size. Holds the key/value cache, so one generation at a time.
    The token loop runs in Python around the compiled step: measured on CPU, the same step
    inside a compiled `tf.while_loop` ran at half the speed (the loop body's graph is not
    optimized like a function's), while a call from Python costs well under 1%.
    """

    def __init__(self, params, hparams: HParams, *, temperature: float = 1.0,
                 top_k: int = 0, top_p: float = 1.0, step_fn=step):
        # `step_fn` has `step`'s signature; tests pass a fake that needs no weights.
        self.params, self.hparams, self.step_fn = params, hparams, step_fn
        self.choose = lambda logits, seed: pick(logits, seed, temperature=temperature,
                                                top_k=top_k, top_p=top_p)
        self.cache = model.empty_cache(hparams=hparams, batch_size=1, length=1,
                                       dtype=params["wte"].dtype)
        ids = tf.TensorSpec([None, None], tf.int32)
        seed = tf.TensorSpec([2], tf.int32)
        scalar = tf.TensorSpec([], tf.int32)
        self.prefill = tf.function(self._prefill, input_signature=[ids, scalar, seed])
        self.next = tf.function(self._next, input_signature=[
            tf.TensorSpec([None], tf.int32), scalar, seed, scalar])

    def _prefill(self, context, capacity, seed):
        """Sizes the cache to `capacity` positions, runs the context, picks draw 0."""
        model.resize_cache(self.cache, hparams=self.hparams, batch_size=tf.shape(context)[0],
                           length=capacity)
        logits, _ = self.step_fn(self.params, self.hparams, context, self.cache, 0)
        return self.choose(logits, seed_at(seed, 0))

    def _next(self, token, pos, seed, index):
        """Feeds the previous token [batch] at `pos` and picks draw number `index`."""
        logits, _ = self.step_fn(self.params, self.hparams, token[:, None], self.cache, pos)
        return self.choose(logits, seed_at(seed, index))


def seed_at(seed: tf.Tensor, index) -> tf.Tensor:
    """The stateless seed of draw number `index`: reproducible, independent per draw."""
    return tf.random.experimental.stateless_fold_in(seed, index)


def new_seed(seed: int | None) -> tf.Tensor:
    """A stateless seed [2] from a user's integer seed, or a fresh one for None."""
    value = random.SystemRandom().getrandbits(62) if seed is None else whole("seed", seed)
    return tf.constant([value & 0x7FFFFFFF, (value >> 31) & 0x7FFFFFFF], tf.int32)


def check_lengths(*, hparams: HParams, n_context: int, length: int) -> None:
    """Prompt + length must fit in the n_ctx positions of `wpe`."""
    if n_context + length > hparams.n_ctx:
        fits = hparams.n_ctx - n_context
        remedy = (f"use --length {fits} or less" if fits > 0 else
                  "shorten the prompt")
        raise ValueError(f"prompt of {n_context} tokens + length {length} = "
                         f"{n_context + length} exceeds the model's context of "
                         f"{hparams.n_ctx} tokens: {remedy}")


def context_array(*, start_token, batch_size, context, n_vocab: int | None = None
                  ) -> np.ndarray:
    """The original's two ways to start: a start token, or a context of token ids. With
    `n_vocab`, every id is checked against the vocabulary."""
    if (start_token is None) == (context is None):
        raise ValueError("specify exactly one of start_token and context")
    if batch_size is not None and whole("batch_size", batch_size) < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    vocab = n_vocab if n_vocab is not None else np.iinfo(np.int32).max
    if context is None:
        start = token_ids("start_token", whole("start_token", start_token), n_vocab=vocab)
        return np.full([batch_size or 1, 1], start, np.int32)
    context = token_ids("context", context, n_vocab=vocab)
    if context.ndim == 1:
        context = np.tile(context[None], [batch_size or 1, 1])
    if context.ndim != 2 or context.shape[1] == 0:
        raise ValueError("context must be a non-empty list of token ids (or [batch, n])")
    if batch_size is not None and context.shape[0] != batch_size:
        raise ValueError(f"context has {context.shape[0]} rows but batch_size={batch_size}")
    return context


def sample_sequence(*, params, hparams: HParams, length: int, start_token=None,
                    batch_size=None, context=None, temperature=1, top_k=0, top_p=1,
                    seed=None, stop_token=None, sampler: Sampler | None = None) -> np.ndarray:
    """The original's entry point: context (or start token) followed by up to `length`
    sampled tokens, as an array [batch, n_context + n_new]. With `stop_token`, generation
    ends once every row has produced it. Without `sampler`, the one `sampler_for` keeps for
    this model and strategy is used, so repeated calls compile once."""
    length = whole("length", length)
    if batch_size is not None:  # before a [batch_size, n] array is made: bound it first
        check_batch_size(whole("batch_size", batch_size), hparams=hparams,
                         positions=min(length + 1, hparams.n_ctx),
                         # LiteRT holds no TensorFlow weights (params None), and
                         # float32 keys/values
                         dtype_size=4 if params is None else
                         tf.as_dtype(params["wte"].dtype).size)
    context = context_array(start_token=start_token, batch_size=batch_size, context=context,
                            n_vocab=hparams.n_vocab)
    if stop_token is not None:
        stop_token = int(token_ids("stop_token", whole("stop_token", stop_token),
                                   n_vocab=hparams.n_vocab))
    cached = sampler is None
    if cached:
        sampler = sampler_for(params, hparams, temperature=temperature, top_k=top_k,
                              top_p=top_p)
    new, done = [], np.zeros(context.shape[0], bool)
    try:
        for token in draws(sampler, context, length=length, seed=seed):
            new.append(token)
            if stop_token is not None:
                done |= token.numpy() == stop_token
                if done.all():
                    break
    finally:
        if cached:  # a kept sampler keeps no batch-sized cache between calls
            model.resize_cache(sampler.cache, hparams=hparams, batch_size=1, length=1)
    return np.concatenate([context, tf.stack(new, axis=1).numpy()], axis=1)


def stream_sequence(sampler: Sampler, context, *, length: int,
                    seed=None) -> Iterator[np.ndarray]:
    """Yields each new token batch [batch] as soon as it is drawn; the same draws as
    `sample_sequence` for the same seed. `context` is [batch, n] token ids (or [n]); the
    arguments are checked at the call, the model runs as the tokens are taken."""
    context = context_array(start_token=None, batch_size=None, context=context,
                            n_vocab=sampler.hparams.n_vocab)
    return (token.numpy() for token in draws(sampler, context, length=length, seed=seed))


def draws(sampler: Sampler, context: np.ndarray, *, length: int, seed) -> Iterator[tf.Tensor]:
    """The token loop shared by both entry points: prefill, then one step per token.
    `context` is a checked int32 array [batch, n] (see `context_array`); the other
    arguments are checked here, before the generator starts."""
    batch, n = context.shape
    length = whole("length", length)
    check_lengths(hparams=sampler.hparams, n_context=n, length=length)
    if length < 1:
        raise ValueError(f"length must be at least 1, got {length}")
    check_batch_size(batch, hparams=sampler.hparams, positions=n + length,
                     dtype_size=sampler.cache[0].dtype.size)
    return _loop(sampler, context, length, new_seed(seed))


def _loop(sampler: Sampler, context: np.ndarray, length: int, seed) -> Iterator[tf.Tensor]:
    n = context.shape[1]
    token = sampler.prefill(tf.constant(context), tf.constant(n + length), seed)
    yield token
    for i in range(1, length):
        token = sampler.next(token, tf.constant(n + i - 1), seed, tf.constant(i))
        yield token


class _Samplers:
    """The samplers `sampler_for` made, for one model (params object) at a time."""

    def __init__(self):
        self.params, self.by_strategy = None, {}


_SAMPLERS = _Samplers()


def sampler_for(params, hparams: HParams, *, temperature=1, top_k=0, top_p=1) -> Sampler:
    """The `Sampler` for this model and strategy, made (and traced) once and then reused.

    Samplers are kept for the model of the latest call only: asking for another params
    object drops them, and with them their hold on the old model's weights (as does
    `clear_samplers()`). Like any Sampler, one generation at a time.
    """
    options = strategy(hparams=hparams, temperature=temperature, top_k=top_k, top_p=top_p)
    if _SAMPLERS.params is not params:
        clear_samplers()
        _SAMPLERS.params = params
    key = (hparams, options["temperature"], options["top_k"], options["top_p"])
    if key not in _SAMPLERS.by_strategy:
        _SAMPLERS.by_strategy[key] = Sampler(params, hparams, **options)
    return _SAMPLERS.by_strategy[key]


def clear_samplers() -> None:
    """Forgets the samplers `sampler_for` kept (and the model they hold)."""
    _SAMPLERS.params, _SAMPLERS.by_strategy = None, {}


def strategy(*, hparams: HParams, temperature=1, top_k=0, top_p=1) -> dict:
    """Validated, typed sampling options; `ValueError` names the bad value and the fix."""
    temperature, top_p = number("temperature", temperature), number("top_p", top_p)
    if not 0 <= temperature < math.inf:
        raise ValueError(f"temperature must be >= 0 (0 is greedy), got {temperature}")
    if temperature < MIN_TEMPERATURE:
        temperature = 0.0  # the limit is greedy; float32 logits / 1e-50 would overflow
    if isinstance(top_k, float) and top_k.is_integer():
        top_k = int(top_k)
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 0:
        raise ValueError(f"top_k must be a whole number >= 0 (0 disables it), got {top_k!r}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1] (1 disables it), got {top_p}")
    return dict(temperature=temperature, top_k=min(int(top_k), hparams.n_vocab),
                top_p=top_p)
