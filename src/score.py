"""Log-likelihoods of token sequences under GPT-2: the scoring core of evaluation, of
training's validation loss, and of the Python API's `score`.

Public surface:
- `Window(tokens, n_scored)`: score the last `n_scored` tokens of `tokens`, each given every
  token before it in `tokens` (so the model reads `tokens[:-1]`, at most n_ctx of them).
- `rolling_windows(tokens, n_ctx=, prefix_token=, stride=None)`: the windows that score
  every token of a long document once. `stride=None` is lm-evaluation-harness's
  `loglikelihood_rolling` (disjoint windows, the default); a stride gives overlapping
  windows, Hugging Face's "perplexity of fixed-length models".
- `pair_window(context, continuation, n_ctx=)`: the continuation's tokens given the
  context, keeping the last tokens when they do not fit (lm-evaluation-harness's rule).
- `Scorer(params, hparams)`: compiled scoring; `Scorer.score(windows, batch_size=)` returns
  one `Scored(logprobs, greedy)` per window: the natural-log probability of each scored
  token (float64 array [n_scored]) and whether it was the model's argmax (bool array).
- `token_logprobs(scorer, sequences, prefix_token=, stride=None)`: per-token log-probs of
  whole sequences of any length, log p(seq[i] | prefix_token, seq[:i]) for every i.

How it is computed: windows are sorted by length and batched (right-padded: a causal model
never looks right, so padding changes nothing before it); one forward pass per batch gives
the final hidden states (model.py's embed, blocks and ln_f, with `causal_attention`: the
causal mask as blocks of queries, less attention work); only the scored positions are
gathered, and their logits are computed, log-softmaxed, compared with their argmax and
dropped chunk by chunk, so the full [batch, seq, n_vocab] logits (1.6 GB in float32 for
8 x 1024 positions) never exist at once.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Iterable, Sequence

import numpy as np
import tensorflow as tf

import model
from model import HParams

__all__ = ["Window", "Scored", "Scorer", "rolling_windows", "pair_window", "token_logprobs"]

# Positions whose logits are computed at once: [CHUNK, n_vocab] float32 is 206 MB for
# GPT-2's vocabulary, small enough to stay flat in memory and large enough for full-speed
# matrix products.
CHUNK = 1024
# Queries attended at once (`causal_attention`): blocks of 256 of 1,024 positions compute
# 62.5% of the full [seq, seq] scores; the forward pass of 124M at 8 x 1024 measured 16%
# faster than with model.multihead_attn on 2 CPU cores (alternating, a shared machine).
ATTENTION_BLOCK = 256


@dataclasses.dataclass(frozen=True)
class Window:
    """The last `n_scored` tokens of `tokens`, each scored given every token before it."""

    tokens: tuple
    n_scored: int

    def __post_init__(self) -> None:
        assert 0 < self.n_scored < len(self.tokens), (self.n_scored, len(self.tokens))


@dataclasses.dataclass(frozen=True)
class Scored:
    """Per scored token: log-probability (natural log) and whether it was the argmax."""

    logprobs: np.ndarray  # float64 [n_scored]
    greedy: np.ndarray  # bool [n_scored]


def rolling_windows(tokens: Sequence[int], *, n_ctx: int, prefix_token: int,
                    stride: int | None = None) -> list[Window]:
    """Windows that score every token of `tokens` exactly once, the first given
    `prefix_token` (GPT-2's <|endoftext|>).

    `stride=None`, disjoint windows (lm-evaluation-harness `loglikelihood_rolling`): the
    first window reads the prefix and the first n_ctx - 1 tokens and scores the first n_ctx
    tokens; each later one scores the next (up to) n_ctx tokens, reading the n_ctx tokens
    before its last scored token, so the first token it scores sees one token of context.

    `stride=S` (Hugging Face's fixed-length rule on prefix + tokens): window k reads n_ctx
    tokens from position k * S of prefix + tokens and scores those no earlier window
    scored, so every token after the first window sees at least n_ctx - S + 1 tokens.
    """
    tokens = list(tokens)
    if not tokens:
        return []
    if stride is None:
        return _disjoint(tokens, n_ctx, prefix_token)
    if not 0 < stride <= n_ctx:
        raise ValueError(f"stride must be between 1 and n_ctx={n_ctx}, got {stride}")
    sequence = [prefix_token] + tokens
    windows, scored_to = [], 1  # sequence[:scored_to] is scored (or the prefix)
    for begin in range(0, len(sequence), stride):
        end = min(begin + n_ctx + 1, len(sequence))
        windows.append(Window(tuple(sequence[begin:end]), end - scored_to))
        scored_to = end
        if end == len(sequence):
            break
    return windows


def _disjoint(tokens: list, n_ctx: int, prefix_token: int) -> list[Window]:
    first = min(n_ctx, len(tokens))
    windows = [Window(tuple([prefix_token] + tokens[:first]), first)]
    done = first
    while done < len(tokens):
        n = min(len(tokens) - done, n_ctx)
        end = done + n
        windows.append(Window(tuple(tokens[end - n_ctx - 1:end]), n))
        done = end
    return windows


def pair_window(context: Sequence[int], continuation: Sequence[int], *, n_ctx: int) -> Window:
    """`continuation` scored after `context`; the model reads the last n_ctx tokens of
    context + continuation[:-1] (lm-evaluation-harness's left truncation)."""
    if not context or not continuation:
        raise ValueError("context and continuation need at least one token each")
    if len(continuation) > n_ctx:
        raise ValueError(f"the continuation has {len(continuation)} tokens, more than the "
                         f"model's context of {n_ctx}")
    tokens = (list(context) + list(continuation))[-(n_ctx + 1):]
    return Window(tuple(tokens), len(continuation))


class Scorer:
    """Scores windows with one compiled function (traced once for every batch shape)."""

    def __init__(self, params: dict, hparams: HParams, *, chunk: int = CHUNK,
                 attention_block: int = ATTENTION_BLOCK):
        self.params, self.hparams, self.chunk = params, hparams, chunk
        self.attention_block = attention_block
        spec = tf.TensorSpec([None, None], tf.int32)
        self._score_batch = tf.function(
            self._score_batch_graph,
            input_signature=[spec, spec, tf.TensorSpec([None, None], tf.bool)])

    def score(self, windows: Sequence[Window], *, batch_size: int = 8,
              progress: Callable[[int], None] | None = None) -> list[Scored]:
        """One `Scored` per window, in order; `progress(n)` after each batch, n being the
        input tokens of its windows (for a bar with a fair ETA)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        for w in windows:
            if len(w.tokens) > self.hparams.n_ctx + 1:
                raise ValueError(f"a window of {len(w.tokens) - 1} input tokens does not fit "
                                 f"the model's context of {self.hparams.n_ctx}")
        # Longest first: little padding per batch, and memory peaks at the start.
        order = sorted(range(len(windows)), key=lambda i: -len(windows[i].tokens))
        results: list = [None] * len(windows)
        for start in range(0, len(order), batch_size):
            batch = [windows[i] for i in order[start:start + batch_size]]
            for i, scored in zip(order[start:start + batch_size], self._run(batch)):
                results[i] = scored
            if progress is not None:
                progress(sum(len(w.tokens) - 1 for w in batch))
        return results

    def _run(self, batch: list[Window]) -> list[Scored]:
        width = max(len(w.tokens) for w in batch) - 1
        inputs = np.zeros([len(batch), width], np.int32)
        targets = np.zeros([len(batch), width], np.int32)
        scored = np.zeros([len(batch), width], bool)
        for row, w in enumerate(batch):
            n = len(w.tokens) - 1
            inputs[row, :n] = w.tokens[:-1]
            targets[row, :n] = w.tokens[1:]
            scored[row, n - w.n_scored:n] = True
        logprobs, greedy = self._score_batch(inputs, targets, scored)
        logprobs, greedy = logprobs.numpy().astype(np.float64), greedy.numpy()
        bounds = np.cumsum([0] + [w.n_scored for w in batch])
        return [Scored(logprobs[a:b], greedy[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]

    def _hidden(self, inputs):
        """model.model(..., logits=False)'s hidden states, with `causal_attention`."""
        def attend(q, k, v, *, past, pos):
            assert past is None and pos is None  # whole windows, no cache
            # `present` as model.attn makes it; unused, so the traced graph drops it
            return causal_attention(q, k, v, block=self.attention_block), tf.stack([k, v], 1)

        return model.model(self.params, inputs, hparams=self.hparams, logits=False,
                           attend=attend)["hidden"]  # [batch, seq, n_embd]

    def _score_batch_graph(self, inputs, targets, scored):
        """Log-probs and argmax matches [n_scored] of the scored positions, row-major."""
        hidden = self._hidden(inputs)  # [batch, seq, n_embd]
        h = tf.boolean_mask(hidden, scored)  # [n_scored, n_embd]
        y = tf.boolean_mask(targets, scored)  # [n_scored]
        n = tf.shape(y)[0]
        # As few chunks as CHUNK allows, of equal size, so a handful of scored positions
        # (LAMBADA) costs a handful of rows, not a padded chunk.
        n_chunks = tf.maximum(1, (n + self.chunk - 1) // self.chunk)
        rows = (n + n_chunks - 1) // n_chunks
        pad = n_chunks * rows - n
        h = tf.reshape(tf.pad(h, [[0, pad], [0, 0]]), [n_chunks, rows, self.hparams.n_embd])
        y = tf.reshape(tf.pad(y, [[0, pad]]), [n_chunks, rows])
        wte = tf.convert_to_tensor(self.params["wte"])  # [n_vocab, n_embd]

        def head(args):
            h_chunk, y_chunk = args  # [rows, n_embd], [rows]
            logits = tf.cast(tf.matmul(h_chunk, wte, transpose_b=True), tf.float32)
            target = tf.gather(logits, y_chunk, batch_dims=1)  # [rows]
            logprob = target - tf.reduce_logsumexp(logits, axis=-1)
            return logprob, tf.argmax(logits, axis=-1, output_type=tf.int32) == y_chunk

        logprobs, greedy = tf.map_fn(head, (h, y), parallel_iterations=1,
                                     fn_output_signature=(tf.float32, tf.bool))
        return tf.reshape(logprobs, [-1])[:n], tf.reshape(greedy, [-1])[:n]


def causal_attention(q, k, v, *, block: int = ATTENTION_BLOCK) -> tf.Tensor:
    """model.multihead_attn with the causal mask, for q, k, v [batch, head, seq, head_dim]
    of the same positions: queries in blocks of at most `block` (equal sizes, the last
    padded), each block against only the keys up to its last position, so about half the
    scores are computed and each block's [batch, head, block, keys] scores stay small."""
    seq, head_dim = tf.shape(q)[2], q.shape[-1]
    n_blocks = (seq + block - 1) // block
    size = (seq + n_blocks - 1) // n_blocks
    # Scaling q instead of the scores: the same values (exactly, for GPT-2's head_dim 64).
    q = tf.pad(q, [[0, 0], [0, 0], [0, n_blocks * size - seq], [0, 0]]) * tf.math.rsqrt(
        tf.cast(head_dim, q.dtype))  # [batch, head, n_blocks * size, head_dim]

    def step(i, out):
        begin = i * size
        end = tf.minimum(begin + size, seq)  # this block sees keys [0, end)
        w = tf.matmul(q[:, :, begin:begin + size], k[:, :, :end],
                      transpose_b=True)  # [batch, head, size, end]
        visible = begin + tf.range(size)[:, None] >= tf.range(end)[None, :]  # [size, end]
        w = tf.nn.softmax(tf.where(visible, w, tf.constant(-1e10, w.dtype)), axis=-1)
        return i + 1, out.write(i, tf.matmul(w, v[:, :, :end]))  # [batch, head, size, hd]

    _, out = tf.while_loop(lambda i, _: i < n_blocks, step,
                           [0, tf.TensorArray(q.dtype, size=n_blocks)])
    a = tf.transpose(out.stack(), [1, 2, 0, 3, 4])  # [batch, head, n_blocks, size, hd]
    shape = tf.shape(q)
    return tf.reshape(a, [shape[0], shape[1], -1, head_dim])[:, :, :seq]


def token_logprobs(scorer: Scorer, sequences: Iterable[Sequence[int]], *, prefix_token: int,
                   stride: int | None = None, batch_size: int = 8) -> list[np.ndarray]:
    """log p(seq[i] | prefix_token, seq[:i]) for every token of every sequence (float64
    arrays), long sequences through `rolling_windows`."""
    sequences = [list(s) for s in sequences]
    windows, owners = [], []
    for k, seq in enumerate(sequences):
        ws = rolling_windows(seq, n_ctx=scorer.hparams.n_ctx, prefix_token=prefix_token,
                             stride=stride)
        windows += ws
        owners += [k] * len(ws)
    pieces: list[list] = [[] for _ in sequences]
    for k, scored in zip(owners, scorer.score(windows, batch_size=batch_size)):
        pieces[k].append(scored.logprobs)
    return [np.concatenate(p) if p else np.zeros([0]) for p in pieces]
