"""The training step: loss, gradients, accumulation and the update, on one device or many.

The forward pass is the model's own (`model.block`, `model.norm`), laid out for training:
no cache, the logits as h @ wte^T straight into the cross-entropy, and each block callable
through `tf.recompute_grad`, which keeps only the blocks' inputs for the backward pass and
recomputes the rest (`--memory_saving_gradients`).

Distribution is tf.distribute with our own step rather than Keras: each replica computes
the mean loss of its windows and its gradients, averaged over `accumulate` micro-batches;
the replicas all-reduce (mean) them, so N replicas of batch b train exactly like one device
with batch N*b; then `merge_call` hands them to `extended.update`, which runs the
optimizer's in-place update on every copy of every variable. A step whose loss is NaN or
inf changes nothing.
"""
from __future__ import annotations

import os
from typing import Callable

import numpy as np
import tensorflow as tf

import checkpoint
import model
from model import HParams
from optim import Optimizer

MEAN = tf.distribute.ReduceOp.MEAN


def make_strategy() -> tf.distribute.Strategy:
    """MultiWorkerMirroredStrategy when TF_CONFIG describes a cluster; MirroredStrategy
    over the local GPUs when there are several (or over CPU devices a program split into
    logical devices); otherwise the default strategy on one device."""
    if os.environ.get("TF_CONFIG"):
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    cpus = tf.config.list_logical_devices("CPU")
    devices = gpus if len(gpus) > 1 else cpus if not gpus and len(cpus) > 1 else []
    if devices:
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    return tf.distribute.get_strategy()


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Only the chief writes files; every worker computes."""
    return bool(strategy.extended.should_checkpoint)


def forward_loss(params: dict, tokens, *, hparams: HParams, recompute: bool = False,
                 dtype=tf.float32) -> tf.Tensor:
    """Mean cross-entropy of the window's n - 1 next-token predictions; tokens [batch, n]."""
    x, labels = tokens[:, :-1], tokens[:, 1:]
    seq = x.shape[1]
    wte = tf.cast(tf.convert_to_tensor(params["wte"]), dtype)  # [n_vocab, n_embd]
    wpe = tf.cast(tf.convert_to_tensor(params["wpe"]), dtype)  # [n_ctx, n_embd]
    h = tf.gather(wte, x) + wpe[:seq]  # [batch, seq, n_embd]
    for layer in range(hparams.n_layer):
        names, weights = zip(*sorted(flatten(params["h"][layer]).items()))
        run = layer_function(names, hparams)
        run = tf.recompute_grad(run) if recompute else run
        h = run(h, *[tf.cast(tf.convert_to_tensor(w), dtype) for w in weights])
    h = model.norm(h, **params_as(params["ln_f"], dtype))  # [batch, seq, n_embd]
    logits = tf.matmul(tf.reshape(h, [-1, hparams.n_embd]), wte, transpose_b=True)
    losses = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.reshape(labels, [-1]), logits=tf.cast(logits, tf.float32))  # [batch * seq]
    return tf.reduce_mean(losses)


def layer_function(names, hparams: HParams) -> Callable:
    """One block as a function of its input and its weights (in `names` order), the form
    `tf.recompute_grad` needs."""
    def run(h, *weights):
        p = unflatten(dict(zip(names, weights)))
        seq = h.shape[1]
        mask = model.attention_mask(seq, seq, dtype=h.dtype)  # [seq, seq]
        return model.block(h, p, past=None, hparams=hparams, mask=mask)[0]
    return run


def flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}/"))
        else:
            out[prefix + key] = value
    return out


def unflatten(flat: dict) -> dict:
    tree: dict = {}
    for name, value in flat.items():
        *path, leaf = name.split("/")
        node = tree
        for part in path:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def params_as(tree: dict, dtype) -> dict:
    return {k: tf.cast(tf.convert_to_tensor(v), dtype) for k, v in tree.items()}


class Trainer:
    """Variables (weights, optimizer slots, step), and the compiled distributed step.

    `initial(name, shape)` gives each variable's starting value (an array, or None for
    zeros); under MultiWorkerMirroredStrategy the chief's values are broadcast to every
    worker when the variables are created, so other workers may pass None throughout.
    """

    def __init__(self, strategy, hparams: HParams, *, optimizer: Optimizer,
                 initial: Callable, train: Callable[[str], bool], accumulate: int = 1,
                 recompute: bool = False, dtype: str = "float32", grad_clip: float = 0.0):
        self.strategy, self.hparams, self.optimizer = strategy, hparams, optimizer
        self.accumulate, self.recompute, self.grad_clip = accumulate, recompute, grad_clip
        self.dtype = tf.as_dtype(dtype)
        shapes = checkpoint.variable_shapes(hparams)
        self.train_names = [n for n in shapes if train(n)]

        def variable(name, shape, dtype=tf.float32, trainable=False, default=0):
            value = initial(name, shape)
            value = tf.fill(shape, tf.constant(default, dtype)) if value is None else \
                tf.constant(value, dtype)
            return tf.Variable(value, trainable=trainable, name=name.replace("/", "."))

        with strategy.scope():
            self.weights = {n: variable(n, s, trainable=n in self.train_names)
                            for n, s in shapes.items()}
            self.slots = {n: {slot: variable(slot, shape) for slot, shape
                              in optimizer.slot_shapes(n, shapes[n]).items()}
                          for n in self.train_names}
            self.global_step = variable("global_step", [], tf.int64)
            self.seed = variable("train_seed", [], tf.int64)
            self.loss_scale = variable("loss_scale", [], tf.float32, default=2.0 ** 15)
            self.good_steps = variable("loss_scale_good_steps", [], tf.int64)
        self.params = checkpoint.tree_from_flat(self.weights, hparams)
        # No autograph: the step uses tf.while_loop and tf.cond explicitly, and converting
        # the model code costs seconds per trace.
        self._step = tf.function(self._distributed_step, autograph=False)

    @property
    def replicas(self) -> int:
        return self.strategy.num_replicas_in_sync

    def step(self, windows: np.ndarray, learning_rate: float) -> tuple[float, float]:
        """One optimizer step on windows [accumulate, batch * replicas, n]; returns the
        mean loss before the update and the gradients' global norm."""
        per_replica = windows.shape[1] // self.replicas
        assert windows.shape[0] == self.accumulate and per_replica * self.replicas == \
            windows.shape[1], (windows.shape, self.accumulate, self.replicas)

        def local(context):
            i = context.replica_id_in_sync_group
            return tf.constant(windows[:, i * per_replica:(i + 1) * per_replica])

        tokens = self.strategy.experimental_distribute_values_from_function(local)
        loss, norm = self._step(tokens, tf.constant(learning_rate, tf.float32))
        return float(loss), float(norm)

    def _distributed_step(self, tokens, learning_rate):
        loss, norm = self.strategy.run(self._replica_step, args=(tokens, learning_rate))
        return (self.strategy.reduce(MEAN, loss, axis=None),
                self.strategy.reduce(MEAN, norm, axis=None))

    def _replica_step(self, tokens, learning_rate):
        context = tf.distribute.get_replica_context()
        grads, loss = self._gradients(tokens)
        if context.num_replicas_in_sync > 1:
            grads = context.all_reduce(MEAN, grads)
            loss = context.all_reduce(MEAN, loss)
        norm = tf.linalg.global_norm(grads)
        ok = tf.math.is_finite(loss)
        scaled = self.dtype == tf.float16
        if scaled or self.grad_clip:
            ok = tf.logical_and(ok, tf.math.is_finite(norm))
        if self.grad_clip:
            grads, _ = tf.clip_by_global_norm(grads, self.grad_clip, use_norm=norm)
        t = tf.cast(self.global_step + 1, tf.float32)
        context.merge_call(self._apply, args=(grads, learning_rate, t, ok))
        return loss, norm

    def _gradients(self, tokens):
        """Gradients of the mean loss over the micro-batches tokens [accumulate, b, n]."""
        trainable = [self.weights[n] for n in self.train_names]
        scale = self.loss_scale if self.dtype == tf.float16 else None

        def micro(window):
            with tf.GradientTape() as tape:
                loss = forward_loss(self.params, window, hparams=self.hparams,
                                    recompute=self.recompute, dtype=self.dtype)
                target = loss * scale if scale is not None else loss
            grads = [tf.convert_to_tensor(g) for g in tape.gradient(target, trainable)]
            return [g / scale for g in grads] if scale is not None else grads, loss

        if self.accumulate == 1:
            return micro(tokens[0])

        def body(i, total, *sums):
            more, value = micro(tokens[i])
            return (i + 1, total + value, *[a + b for a, b in zip(sums, more)])

        zeros = [tf.zeros(w.shape, tf.float32) for w in trainable]
        _, loss, *grads = tf.while_loop(lambda i, *_: i < self.accumulate, body,
                                        (tf.constant(0), tf.constant(0.0), *zeros))
        n = tf.constant(self.accumulate, tf.float32)
        return [g / n for g in grads], loss / n

    def _apply(self, strategy, grads, learning_rate, t, ok):
        """In cross-replica context: every variable's update, unless the step failed."""
        extended = strategy.extended

        def update():
            ops = []
            for name, grad in zip(self.train_names, grads):
                slots = list(self.slots[name].values())
                ops.append(extended.update(self.weights[name], self.optimizer.apply,
                                           args=(grad, slots, learning_rate, t), group=True))
            with tf.control_dependencies(ops):
                extended.update(self.global_step, lambda v: v.assign_add(1), group=True)

        passed = strategy.experimental_local_results(ok)[0]
        tf.cond(passed, update, lambda: None)
        if self.dtype == tf.float16:
            extended.update(self.loss_scale, adjust_loss_scale,
                            args=(self.good_steps, passed), group=True)

    def state_tensors(self) -> dict:
        """What a checkpoint holds: weights, slots, the step (TF1's `global_step`), and for
        Adam TF1's beta powers."""
        step = int(self.global_step.numpy())
        tensors = dict(self.weights)
        for slots in self.slots.values():
            tensors.update(slots)
        tensors["global_step"] = self.global_step
        tensors.update({k: tf.constant(v) for k, v in self.optimizer.tf1_scalars(step).items()})
        if self.dtype == tf.float16:
            tensors["loss_scale"] = self.loss_scale
        return tensors


def adjust_loss_scale(scale, good_steps, passed):
    """Dynamic loss scaling for float16: halve on overflow, double after 2000 good steps."""
    grow = tf.logical_and(passed, good_steps + 1 >= 2000)
    new = tf.where(passed, tf.where(grow, scale * 2, scale), tf.maximum(scale / 2, 1.0))
    good_steps.assign(tf.where(passed & ~grow, good_steps + 1, tf.constant(0, tf.int64)))
    return scale.assign(new)
