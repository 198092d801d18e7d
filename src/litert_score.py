"""Scoring (score.py's `Scorer`) on LiteRT, through the same exported step as sampling.

The step returns the logits of its last position only, so a batch of windows is run as
sampling runs a prompt: one prefill up to the first scored position, then one step per
position, each step's logits scored as they come. What is measured is exactly the graph,
the quantization and the cache that sampling uses, with no second export.
"""
from __future__ import annotations

import numpy as np

import score
from litert_runtime import Runtime


class Scorer(score.Scorer):
    """`score.Scorer` (same windows, batching, order and results) over a LiteRT Runtime."""

    def __init__(self, runtime: Runtime):
        self.runtime, self.hparams = runtime, runtime.hparams

    def _run(self, batch: list[score.Window]) -> list[score.Scored]:
        lengths = [len(w.tokens) - 1 for w in batch]  # inputs per row
        inputs = np.zeros([len(batch), max(lengths)], np.int32)
        for row, w in enumerate(batch):
            inputs[row, :lengths[row]] = w.tokens[:-1]  # right-padded: never looked at
        starts = [n - w.n_scored for n, w in zip(lengths, batch)]
        first = min(starts)
        logprobs = [np.zeros(w.n_scored) for w in batch]
        greedy = [np.zeros(w.n_scored, bool) for w in batch]
        logits = self.runtime.prefill(inputs[:, :first + 1], inputs.shape[1])
        for pos in range(first, inputs.shape[1]):
            if pos > first:
                logits = self.runtime.step(inputs[:, pos], pos)
            x = logits.astype(np.float64)  # [batch, n_vocab]
            top = x.max(axis=-1, keepdims=True)
            norm = top[:, 0] + np.log(np.exp(x - top).sum(axis=-1))
            for row, w in enumerate(batch):
                if starts[row] <= pos < lengths[row]:
                    target = w.tokens[pos + 1]
                    logprobs[row][pos - starts[row]] = x[row, target] - norm[row]
                    greedy[row][pos - starts[row]] = x[row].argmax() == target
        return [score.Scored(p, g) for p, g in zip(logprobs, greedy)]
