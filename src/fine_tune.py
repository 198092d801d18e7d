"""train.py's loop: data -> steps -> checkpoints, with progress, TensorBoard scalars,
samples, validation loss, and a save on Ctrl-C or SIGTERM.

The checks that need no model (dataset, window, vocabulary, run directory lock) come
before any weight is read. Only the chief of a multi-worker job writes files.
"""
from __future__ import annotations

import dataclasses
import os
import random
import signal
import sys
import time

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import summary_pb2

import cli
import sample
import train_loop
import train_setup
import validation
from run_dir import RunDir, SaveError
from train_setup import LazyEncoder, Settings, load_data, writable

# What TensorBoard's scalar plugin writes with each value (tf.summary.scalar needs the
# tensorboard package; tf.summary.write with this metadata does not).
SCALAR = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"),
    data_class=summary_pb2.DATA_CLASS_SCALAR)


def run(s: Settings, prog: str) -> int:
    strategy = train_loop.make_strategy()  # first: a multi-worker strategy needs a fresh TF
    chief = train_loop.is_chief(strategy)
    say = (lambda message: cli.note(prog, message)) if chief else (lambda message: None)
    folder = RunDir(os.path.join(s.checkpoint_dir, s.run_name))
    try:
        start = train_setup.plan(restore_from=s.restore_from, model_name=s.model_name,
                                 models_dir=s.models_dir, run=folder)
        hparams = start.hparams
        enc = LazyEncoder(start.vocab_dir)
        window = s.window or hparams.n_ctx
        if window > hparams.n_ctx or window < 2:
            raise cli.UsageError(f"--window {window} does not fit the model: give 2 to "
                                 f"{hparams.n_ctx} (n_ctx)")
        train_data = load_data(s.dataset, enc, s.encoding, window, hparams.n_vocab, say)
        val_data = None
        if s.val_every:
            val_data = train_data if s.val_dataset in (None, s.dataset) else load_data(
                s.val_dataset, enc, s.encoding, window, hparams.n_vocab, say)
        if chief:
            writable(folder.lock)
        seed = s.seed if s.seed is not None else start.state.get("seed")
        seed = random.SystemRandom().getrandbits(62) if seed is None else int(seed)
        initial = train_setup.Initial(start, optimizer=s.optimizer, seed=seed, chief=chief)
    except ValueError as e:
        raise e if isinstance(e, cli.UsageError) else cli.Failure(str(e)) from None
    if initial.optimizer_changed:
        say(f"note: {start.state['optimizer']['name']} optimizer state is not used by "
            f"--optimizer {s.optimizer.name}, which starts afresh")
    trainable = (lambda n: n.startswith("model/h")) if s.only_train_transformer_layers \
        else (lambda n: True)
    try:
        trainer = train_loop.Trainer(
            strategy, hparams, optimizer=s.optimizer, initial=initial, train=trainable,
            accumulate=s.accumulate_gradients, recompute=s.memory_saving_gradients,
            dtype=s.dtype, grad_clip=s.grad_clip)
    except ValueError as e:
        raise cli.Failure(str(e)) from None
    if chief:
        writable(lambda: folder.prepare(start.vocab_dir, hparams))
    loop = Loop(s, trainer, folder, train_data, val_data, enc, window, chief, say)
    return loop.run()


class Loop:
    def __init__(self, s: Settings, trainer, folder, train_data, val_data, enc, window,
                 chief, say):
        self.s, self.trainer, self.folder, self.enc = s, trainer, folder, enc
        self.train_data, self.window, self.chief, self.print = train_data, window, chief, say
        self.line_open = False  # a progress line at a terminal, to end before a note
        self.seed = int(trainer.seed.numpy())  # the chief's, on every worker
        self.step = self.saved = int(trainer.global_step.numpy())
        self.global_batch = s.batch_size * trainer.replicas
        self.validation = val_data and validation.Validation(
            trainer, val_data.validation_windows(count=s.val_batch_count * s.val_batch_size,
                                                 window=window), s.val_batch_size)
        self.writer = tf.summary.create_file_writer(folder.path) if chief else None
        self.sampler = None
        self.average = self.weight = 0.0

    def run(self) -> int:
        s = self.s
        if s.steps is not None and self.step >= s.steps:
            self.say(f"{self.folder.path} is already at step {self.step}, --steps {s.steps}: "
                     f"nothing to do (give a larger --steps to train on)")
            return cli.EXIT_OK
        self.say(f"training {self.folder.path} from step {self.step}: {self.train_data.n_tokens:,}"
                 f" tokens, windows of {self.window}, global batch {self.global_batch}"
                 f" x {s.accumulate_gradients} on {self.trainer.replicas} replica(s)")
        self.validate()
        try:
            while s.steps is None or self.step < s.steps:
                self.train_one()
                if self.step % s.save_every == 0:
                    self.save()
                if s.sample_every and self.step % s.sample_every == 0:
                    self.samples()
                if s.val_every and self.step % s.val_every == 0:
                    self.validate()
            self.save()
        except (KeyboardInterrupt, cli.Terminated) as stop:
            self.step = int(self.trainer.global_step.numpy())
            self.save()
            stop.detail = f": saved step {self.step} in {self.folder.path}"
            raise
        self.say(f"done: step {self.step} saved in {self.folder.path}")
        return cli.EXIT_OK

    def train_one(self) -> None:
        s, t = self.s, self.step + 1
        windows = self.train_data.windows(
            seed=self.seed, step=t, count=s.accumulate_gradients * self.global_batch,
            window=self.window).reshape(s.accumulate_gradients, self.global_batch, -1)
        lr = s.schedule(t)
        started = time.time()
        loss, norm = self.trainer.step(windows, lr)
        if not np.isfinite(loss):
            raise cli.Failure(
                f"the loss became {loss} at step {t}; stopped without applying that step. "
                f"{self.last_checkpoint()}: resume with --restore_from latest and a lower "
                f"--learning_rate, --warmup_steps or --grad_clip")
        self.step = t
        self.average = self.average * 0.99 + loss
        self.weight = self.weight * 0.99 + 1
        tokens_per_s = windows.size / max(time.time() - started, 1e-9)
        self.scalars(loss=loss, learning_rate=lr)
        self.progress(f"step {t}{'' if s.steps is None else f'/{s.steps}'}: loss {loss:.4f}"
                      f" (avg {self.average / self.weight:.4f}), {tokens_per_s:,.0f} tokens/s,"
                      f" lr {lr:.3g}, grad norm {norm:.3g}")

    def say(self, message: str) -> None:
        if self.line_open:
            sys.stderr.write("\n")
            self.line_open = False
        self.print(message)

    def progress(self, line: str) -> None:
        """One line per step at a terminal (overwritten), else one every 10 seconds."""
        if not self.chief:
            return
        now = time.time()
        if sys.stderr.isatty():
            sys.stderr.write("\r\033[K" + line)
            sys.stderr.flush()
            self.line_open = True
        elif now - getattr(self, "printed", 0) >= 10 or self.step == self.s.steps:
            self.printed = now
            self.say(line)

    def scalars(self, **values) -> None:
        if self.writer is None:
            return
        with self.writer.as_default():
            for name, value in values.items():
                tf.summary.write(name, tf.constant(value, tf.float32), step=self.step,
                                 metadata=SCALAR)

    def validate(self) -> None:
        if not self.validation or not self.chief:
            return
        loss = self.validation.loss()
        self.scalars(val_loss=loss)
        self.say(f"step {self.step}: validation loss {loss:.4f} "
                 f"({self.s.val_batch_count} x {self.s.val_batch_size} windows)")

    def samples(self) -> None:
        """`sample_num` unconditional samples in samples/<run_name>/samples-<step>."""
        if not self.chief:
            return
        s, hparams = self.s, self.trainer.hparams
        if self.sampler is None:
            self.sampler = sample.Sampler(self.trainer.params, hparams, **sample.strategy(
                hparams=hparams, top_k=s.top_k, top_p=s.top_p))
        length = min(s.sample_length or hparams.n_ctx - 1, hparams.n_ctx - 1)
        texts = []
        for index in range(s.sample_num):
            tokens = sample.sample_sequence(
                params=self.trainer.params, hparams=hparams, length=length,
                start_token=self.enc.eot_token, batch_size=1, sampler=self.sampler,
                seed=cli.derive_seed(self.seed, self.step, index))
            texts.append(f"{'=' * 20} SAMPLE {index + 1} {'=' * 20}\n"
                         f"{self.enc.decode(tokens[0, 1:].tolist())}\n")
        folder = os.path.join(s.samples_dir, s.run_name)
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"samples-{self.step}")
        with open(path, "w", encoding="utf-8") as f:
            f.write("".join(texts))
        self.say(f"step {self.step}: {s.sample_num} sample(s) in {path}")

    def last_checkpoint(self) -> str:
        if self.folder.latest() is None:
            return "No checkpoint of this run was saved yet"
        return f"The last checkpoint (step {self.saved}) is kept"

    def save(self) -> None:
        """Saves the current step unless it is saved already; Ctrl-C and SIGTERM wait."""
        if not self.chief or self.step == self.saved:
            return
        s = self.s
        state = dict(step=self.step, seed=self.seed, optimizer=dataclasses.asdict(s.optimizer),
                     schedule=dataclasses.asdict(s.schedule), batch_size=s.batch_size,
                     replicas=self.trainer.replicas, window=self.window,
                     accumulate_gradients=s.accumulate_gradients, dataset=s.dataset,
                     tokens=self.train_data.n_tokens, dtype=s.dtype)
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            self.folder.save(self.step, self.trainer.state_tensors(), state,
                             keep=s.max_checkpoints)
        except SaveError as e:
            raise cli.Failure(f"{e}; {self.last_checkpoint().lower()}: free some space and "
                              f"continue with --restore_from latest") from None
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        self.saved = self.step
        if self.writer is not None:
            self.writer.flush()
        self.say(f"saved step {self.step} in {self.folder.path}")
