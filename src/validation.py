"""Validation loss through the shared scoring core (`score.py`, as evaluate.py scores): the
mean next-token cross-entropy over fixed windows, the training loss's definition, so the
two curves compare."""
from __future__ import annotations

import numpy as np

import score


class Validation:
    def __init__(self, trainer, windows: np.ndarray, batch_size: int):
        # Each window scores all its tokens but the first, as a training window does.
        self.windows = [score.Window(tuple(int(t) for t in w), len(w) - 1) for w in windows]
        self.scorer = score.Scorer(trainer.params, trainer.hparams)
        self.batch_size = batch_size

    def loss(self) -> float:
        scored = self.scorer.score(self.windows, batch_size=self.batch_size)
        return float(-np.mean(np.concatenate([s.logprobs for s in scored])))
