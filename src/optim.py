"""Optimizer updates on tf.Variables, learning-rate schedules.

No Keras: each optimizer is a small frozen dataclass that names its slot variables (by the
names TF1's optimizers gave them in checkpoints, `<weight>/Adam`...) and updates one
variable in place. `train_loop` calls `apply` once per variable and device, inside
`tf.distribute`'s `extended.update`, so the same code runs on one device or many.

- `adam`: TF1's `AdamOptimizer`, through the very kernel it used (`ApplyAdam`):
  lr_t = lr * sqrt(1 - beta2^t) / (1 - beta1^t); m = beta1 m + (1 - beta1) g;
  v = beta2 v + (1 - beta2) g^2; w -= lr_t m / (sqrt(v) + epsilon).
- `adamw`: the same, plus decoupled weight decay w -= lr * weight_decay * w (Loshchilov &
  Hutter) on matrices and embeddings only, never on biases and layer-norm gains.
- `sgd`: w -= lr g, no momentum.
- `adafactor` (Shazeer & Stern 2018, with an explicit learning rate and no momentum): second
  moments factored into row and column means for matrices, decay 1 - t^-0.8, epsilon 1e-30,
  updates clipped to RMS 1. Its state is a few numbers per row and column: the optimizer
  for memory.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import tensorflow as tf

NAMES = ("adam", "adamw", "sgd", "adafactor")
DECAYS = ("constant", "linear", "cosine")


@dataclasses.dataclass(frozen=True)
class Schedule:
    """Learning rate of optimizer step t (1-based): linear warm-up over `warmup_steps`,
    then constant, or a linear or cosine decay that reaches `min_learning_rate` at step
    `decay_steps` and stays there."""

    learning_rate: float
    warmup_steps: int = 0
    decay: str = "constant"
    decay_steps: int | None = None
    min_learning_rate: float = 0.0

    def __post_init__(self):
        if self.decay not in DECAYS:
            raise ValueError(f"--decay must be one of {', '.join(DECAYS)}, got {self.decay!r}")
        if self.decay != "constant" and not self.decay_steps:
            raise ValueError(f"--decay {self.decay} needs a length: give --decay_steps, or "
                             f"--steps (the decay then ends at the last step)")

    def __call__(self, t: int) -> float:
        if t <= self.warmup_steps:
            return self.learning_rate * t / self.warmup_steps
        if self.decay == "constant":
            return self.learning_rate
        span = max(1, self.decay_steps - self.warmup_steps)
        done = min(1.0, (t - self.warmup_steps) / span)
        shape = 1 - done if self.decay == "linear" else 0.5 * (1 + math.cos(math.pi * done))
        return self.min_learning_rate + (self.learning_rate - self.min_learning_rate) * shape


@dataclasses.dataclass(frozen=True)
class Optimizer:
    name: str = "adam"
    beta1: float = 0.9
    beta2: float = 0.999
    epsilon: float = 1e-8
    weight_decay: float = 0.01  # adamw only
    clip_threshold: float = 1.0  # adafactor: the largest RMS of one update

    def __post_init__(self):
        if self.name not in NAMES:
            raise ValueError(f"--optimizer must be one of {', '.join(NAMES)}, got "
                             f"{self.name!r}")

    def slot_shapes(self, name: str, shape: list[int]) -> dict[str, list[int]]:
        """Slot variables of weight `name`, by their checkpoint names."""
        if self.name in ("adam", "adamw"):
            return {f"{name}/Adam": shape, f"{name}/Adam_1": shape}
        if self.name == "adafactor":
            if factored(shape):
                return {f"{name}/adafactor_vr": shape[:-1],
                        f"{name}/adafactor_vc": shape[:-2] + shape[-1:]}
            return {f"{name}/adafactor_v": shape}
        return {}

    def tf1_scalars(self, t: int) -> dict[str, np.ndarray]:
        """TF1's AdamOptimizer keeps beta^(t+1) after t steps in two variables; saved so
        that TF1 training code can restore its optimizer from our run directories."""
        if self.name not in ("adam", "adamw"):
            return {}
        return {"beta1_power": np.float32(self.beta1) ** np.float32(t + 1),
                "beta2_power": np.float32(self.beta2) ** np.float32(t + 1)}

    def apply(self, var, grad, slots: list, lr, t):
        """Updates `var` (one device's copy) with `grad`; `slots` in `slot_shapes` order,
        `lr` the step's learning rate and `t` its 1-based number (float32 tensors)."""
        lr = tf.cast(lr, var.dtype)
        if self.name == "sgd":
            return tf.raw_ops.ResourceApplyGradientDescent(var=var.handle, alpha=lr,
                                                           delta=grad)
        if self.name == "adafactor":
            return self.adafactor(var, grad, slots, lr, t)
        decay = []
        if self.name == "adamw" and len(var.shape) > 1 and self.weight_decay:
            decay = [var.assign_sub(lr * self.weight_decay * var, read_value=False)]
        m, v = slots
        with tf.control_dependencies(decay):
            return tf.raw_ops.ResourceApplyAdam(
                var=var.handle, m=m.handle, v=v.handle, beta1_power=self.beta1 ** t,
                beta2_power=self.beta2 ** t, lr=lr, beta1=tf.constant(self.beta1),
                beta2=tf.constant(self.beta2), epsilon=tf.constant(self.epsilon), grad=grad)

    def adafactor(self, var, grad, slots, lr, t):
        rho = 1.0 - tf.pow(t, -0.8)  # 0 at the first step: the first moments are g^2
        g2 = tf.square(grad) + 1e-30
        if factored(var.shape.as_list()):
            vr, vc = slots
            vr.assign(rho * vr + (1 - rho) * tf.reduce_mean(g2, axis=-1))
            vc.assign(rho * vc + (1 - rho) * tf.reduce_mean(g2, axis=-2))
            row = tf.math.rsqrt(vr / tf.reduce_mean(vr, axis=-1, keepdims=True))
            update = grad * row[..., None] * tf.math.rsqrt(vc)[..., None, :]
        else:
            (v,) = slots
            v.assign(rho * v + (1 - rho) * g2)
            update = grad * tf.math.rsqrt(v)
        rms = tf.sqrt(tf.reduce_mean(tf.square(update)))
        update = update / tf.maximum(1.0, rms / self.clip_threshold)
        return var.assign_sub(lr * update, read_value=False)


def factored(shape: list[int]) -> bool:
    """Adafactor factors the last two axes of matrices (conv1d weights [1, nx, nf] too)."""
    return len(shape) >= 2 and shape[-1] > 1 and shape[-2] > 1
