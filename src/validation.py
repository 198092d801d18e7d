"""Validation loss: the mean next-token cross-entropy over fixed windows, the training
loss's definition, so the two curves compare."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

import train_loop


class Validation:
    def __init__(self, trainer, windows: np.ndarray, batch_size: int):
        self.batches = [windows[i:i + batch_size] for i in range(0, len(windows), batch_size)]
        self.compiled = tf.function(
            lambda tokens: train_loop.forward_loss(trainer.params, tokens,
                                                   hparams=trainer.hparams),
            autograph=False)

    def loss(self) -> float:
        """Every window weighs the same (all batches have the same size)."""
        return float(np.mean([self.compiled(tf.constant(b)).numpy() for b in self.batches]))
