"""Where a training run starts: the settings, the data, which weights, which hparams, and
which optimizer state.

`--restore_from latest` continues the run's newest checkpoint (weights, optimizer slots,
step, seed), or starts from the released model when the run has none; `fresh` starts from
the released model; `random` from GPT-2's initialisation with the model directory's
hparams.json (training from scratch: the directory needs no weights); a path starts from
that model directory or checkpoint prefix (weights only). A run that already has
checkpoints is never restarted over them: that would delete them as the new run saves.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time

import numpy as np
import tensorflow as tf

import checkpoint
import cli
import data
import encoder
import model_paths
from model import HParams
from optim import Optimizer, Schedule
from run_dir import RunDir


@dataclasses.dataclass(frozen=True)
class Settings:
    """train.py's flags, cast and checked (see its --help)."""

    dataset: str
    model_name: str = "124M"
    models_dir: str = "models"
    run_name: str = "run1"
    checkpoint_dir: str = "checkpoint"
    samples_dir: str = "samples"
    restore_from: str = "latest"
    batch_size: int = 1
    accumulate_gradients: int = 1
    window: int | None = None
    optimizer: Optimizer = Optimizer()
    schedule: Schedule = Schedule(2e-5)
    grad_clip: float = 0.0
    steps: int | None = None
    save_every: int = 1000
    max_checkpoints: int = 5
    sample_every: int = 100
    sample_length: int | None = None
    sample_num: int = 1
    top_k: int = 40
    top_p: float = 1.0
    val_dataset: str | None = None
    val_batch_size: int = 2
    val_batch_count: int = 40
    val_every: int = 0
    only_train_transformer_layers: bool = False
    memory_saving_gradients: bool = False
    dtype: str = "float32"
    seed: int | None = None
    encoding: str = "utf-8"


@dataclasses.dataclass
class Start:
    hparams: HParams
    prefix: str | None  # the checkpoint whose weights start the run; None: random
    vocab_dir: str  # where encoder.json and vocab.bpe are
    model_dir: str | None  # the released model, when there is one
    resume: bool  # continuing this run: restore optimizer slots, step and seed
    state: dict  # the resumed checkpoint's model-<step>.json, or {}


def plan(*, restore_from: str, model_name: str, models_dir: str, run: RunDir) -> Start:
    """Decides where to start, refusing mixed model sizes (T7) and restarts over a run."""
    latest = run.latest()
    missing = None
    try:
        base = model_paths.model_dir_for(model_name, models_dir)
        base_hp = HParams.from_json(os.path.join(base, "hparams.json"))
    except ValueError as e:  # not needed to continue a run, so only raised when it is
        base, base_hp, missing = None, None, e
    if restore_from == "latest" and latest:
        run_hp = HParams.from_json(os.path.join(run.path, "hparams.json"))
        same_size(run_hp, f"{run.path} (hparams.json)", base_hp, base, run.path)
        return Start(run_hp, latest, run.path, base, True, run.read_state(latest) or {})
    if latest:
        raise ValueError(f"{run.path} already holds a run (its newest checkpoint is "
                         f"{os.path.basename(latest)}); --restore_from {restore_from} would "
                         f"start over it: continue it with --restore_from latest, or give "
                         f"another --run_name (or delete {run.path})")
    if restore_from in ("latest", "fresh", "random"):
        if base is None:
            raise missing
        prefix = None if restore_from == "random" else checkpoint.checkpoint_prefix(base)
        start = Start(base_hp, prefix, base, base, False, {})
    else:
        start = from_path(restore_from, base_hp, base)
    if run.hparams() is not None:  # a run directory made earlier, without a checkpoint yet
        same_size(run.hparams(), f"{run.path} (hparams.json)", start.hparams,
                  start.vocab_dir, run.path)
    return start


def from_path(path: str, base_hp: HParams | None, base: str | None) -> Start:
    if os.path.isdir(path):
        prefix, folder = checkpoint.checkpoint_prefix(path), path
    elif os.path.isfile(path + ".index"):
        prefix, folder = path, os.path.dirname(path) or "."
    else:
        raise ValueError(f"--restore_from {path}: no such model directory or checkpoint: "
                         f"give latest, fresh, a model directory, or a checkpoint prefix "
                         f"such as checkpoint/run1/model-1000")
    hparams = HParams.from_json(os.path.join(folder, "hparams.json"))
    same_size(hparams, f"--restore_from {path}", base_hp, base, None)
    vocab = folder if os.path.isfile(os.path.join(folder, "encoder.json")) else base
    if vocab is None:
        raise ValueError(f"{folder} has no encoder.json: restore from a model directory "
                         f"that has one, or download the model named by --model_name")
    return Start(hparams, prefix, vocab, base, False, {})


def same_size(found: HParams, where: str, base: HParams | None, base_dir: str | None,
              run_path: str | None) -> None:
    """T7: a run or a checkpoint of one size cannot continue as another."""
    if base is None or found == base:
        return
    fields = ("n_vocab", "n_ctx", "n_embd", "n_head", "n_layer")
    show = lambda h: ", ".join(f"{k}={getattr(h, k)}" for k in fields)  # noqa: E731
    remedy = ("train it with the --model_name it was made from, or give another --run_name"
              if run_path else "restore from a checkpoint of the same model size")
    raise ValueError(f"{where} is a model of another size ({show(found)}) than {base_dir} "
                     f"({show(base)}): {remedy}")


class Initial:
    """Starting values for `train_loop.Trainer`: the weights streamed from the checkpoint
    in order (one array alive at a time), and, when resuming, the optimizer's slots."""

    def __init__(self, start: Start, *, optimizer: Optimizer, seed: int, chief: bool):
        self.start, self.seed, self.chief = start, seed, chief
        self.names = set(checkpoint.variable_shapes(start.hparams))
        reading = chief and start.prefix is not None
        self.weights = None if not chief else random_weights(start.hparams, seed) \
            if start.prefix is None else checkpoint.read_prefix(start.prefix, start.hparams)
        self.reader = tf.train.load_checkpoint(start.prefix) if reading else None
        stored = self.reader.get_variable_to_shape_map() if reading else {}
        saved_optimizer = start.state.get("optimizer", {}).get("name")
        self.slots_ok = start.resume and saved_optimizer in (None, optimizer.name)
        self.stored = stored if self.slots_ok else {}
        self.step = self.resumed_step(stored, optimizer) if start.resume else 0
        self.optimizer_changed = start.resume and not self.slots_ok

    def resumed_step(self, stored: dict, optimizer: Optimizer) -> int:
        if "step" in self.start.state:
            return int(self.start.state["step"])
        if "global_step" in stored:
            return int(self.reader.get_tensor("global_step"))
        if "beta1_power" in stored:  # TF1's Adam keeps beta1^(t+1) after t steps
            power = float(self.reader.get_tensor("beta1_power"))
            return max(0, round(math.log(power) / math.log(optimizer.beta1)) - 1)
        return 0

    def __call__(self, name: str, shape: list[int]):
        if not self.chief:
            return None  # the chief's values are broadcast
        if name == "global_step":
            return self.step
        if name == "train_seed":
            return self.seed
        if name in self.names:
            found, array = next(self.weights)
            assert found == name, (found, name)
            return array
        if name in self.stored and list(self.stored[name]) == list(shape):
            return np.asarray(self.reader.get_tensor(name))
        return None


def random_weights(hparams: HParams, seed: int):
    """GPT-2's initialisation, in checkpoint order: N(0, 0.02) matrices, N(0, 0.01)
    position embeddings, the residual projections scaled by 1/sqrt(2 n_layer), zero biases,
    unit gains."""
    rng = np.random.default_rng([seed, 1])
    for name, shape in checkpoint.variable_shapes(hparams).items():
        if name.endswith("/g"):
            value = np.ones(shape, np.float32)
        elif name.endswith("/b"):
            value = np.zeros(shape, np.float32)
        else:
            std = 0.01 if name == "model/wpe" else 0.02
            if name.endswith("c_proj/w"):
                std /= math.sqrt(2 * hparams.n_layer)
            value = rng.standard_normal(shape, np.float32) * np.float32(std)
        yield name, value


def writable(action) -> None:
    try:
        action()
    except OSError as e:
        raise cli.Failure(f"cannot write {e.filename or 'the run directory'} ({e.strerror}): "
                          f"choose another --checkpoint_dir or fix its permissions") from None


class LazyEncoder:
    """The vocabulary's encoder, read when first used: a dataset already encoded and no
    samples need none (reading it takes a second or two)."""

    def __init__(self, folder: str):
        self.folder, self.loaded = folder, None

    def __getattr__(self, name):
        if self.loaded is None:
            self.loaded = encoder.get_encoder(os.path.basename(self.folder),
                                              os.path.dirname(self.folder))
        return getattr(self.loaded, name)


def load_data(path, enc, encoding, window, n_vocab, say) -> data.TokenData:
    started = time.time()
    dataset = data.load(path, enc=enc, encoding=encoding)
    dataset.check_window(window)
    dataset.check_vocabulary(n_vocab)
    if time.time() - started > 5:
        say(f"read {dataset.n_tokens:,} tokens from {path} in {time.time() - started:.0f} s: "
            f"encode.py saves them for the next run")
    return dataset
