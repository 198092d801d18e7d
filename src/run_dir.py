"""The run directory `checkpoint/<run_name>/` that training writes, itself a model directory.

    hparams.json, encoder.json, vocab.bpe    copied from the model trained
    model-<step>.index, .data-00000-of-00001 the weights by their released names, plus
                                             `global_step`, the optimizer's slots
                                             (`model/wte/Adam`...) and, for Adam, TF1's
                                             `beta1_power`/`beta2_power`
    model-<step>.json                        the rest of the state: seed, flags, tokens seen
    checkpoint                               TF's state file: the newest step, written last
    events.out.tfevents.*                    TensorBoard scalars
    train.lock                               held while a train.py writes here

A save writes everything under a temporary folder, renames the files into place, and only
then points the state file at them; a crash at any moment leaves the previous step's files
and state file as they were, so the directory still loads.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import threading

import tensorflow as tf

import checkpoint
from model import HParams

LOCK = "train.lock"
STEP = re.compile(r"^model-(\d+)\.(index|json|data-\d{5}-of-\d{5})$")
# Tests set this to "<fd>:<stage>:<step>" to have the save of that step write the stage's
# name to that file descriptor and then block at `stage` ("written": files complete under
# temporary names; "renamed": files in place, state file not yet updated), so that they can
# kill the process exactly there.
PAUSE_ENV = "GPT2_TRAIN_TEST_PAUSE_SAVE"


class SaveError(Exception):
    """A save failed (disk full, permissions); the previous checkpoint is intact."""


class RunDir:
    def __init__(self, path: str):
        self.path = path
        self._lock = None

    def lock(self) -> None:
        """Holds `train.lock` until the process ends (T8); clears temporary folders left by
        a process that was killed mid-save."""
        os.makedirs(self.path, exist_ok=True)
        handle = open(os.path.join(self.path, LOCK), "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            owner = handle.read().strip() or "another process"
            handle.close()
            raise ValueError(f"{self.path} is in use by another train.py ({owner}): wait for "
                             f"it to finish, or give another --run_name") from None
        handle.truncate(0)
        handle.write(f"pid {os.getpid()}\n")
        handle.flush()
        self._lock = handle
        for name in os.listdir(self.path):
            if name.startswith(".tmp-"):
                shutil.rmtree(os.path.join(self.path, name), ignore_errors=True)

    def latest(self) -> str | None:
        """The newest checkpoint's prefix, or None when the run has none yet."""
        newest, _ = checkpoint.read_state(self.path)
        if not newest or not checkpoint.inside(newest):
            return None
        prefix = os.path.join(self.path, newest)
        return prefix if os.path.isfile(prefix + ".index") else None

    def hparams(self) -> HParams | None:
        path = os.path.join(self.path, "hparams.json")
        return HParams.from_json(path) if os.path.isfile(path) else None

    def prepare(self, model_dir: str, hparams: HParams) -> None:
        """Copies the vocabulary and writes hparams.json, so the run is a model directory."""
        for name in ("encoder.json", "vocab.bpe"):
            target = os.path.join(self.path, name)
            if not os.path.exists(target):
                shutil.copyfile(os.path.join(model_dir, name), target + ".tmp")
                os.replace(target + ".tmp", target)
        checkpoint.write_atomically(os.path.join(self.path, "hparams.json"),
                                    checkpoint.hparams_json(hparams).encode())

    def save(self, step: int, tensors: dict, state: dict, *, keep: int) -> None:
        """Writes step `step` atomically and keeps the newest `keep` steps."""
        name = f"model-{step}"
        temporary = os.path.join(self.path, f".tmp-{name}-{os.getpid()}")
        try:
            os.makedirs(temporary)
            checkpoint.write_tensors(os.path.join(temporary, name), tensors)
            checkpoint.write_atomically(os.path.join(temporary, name + ".json"),
                                        (json.dumps(state, indent=1) + "\n").encode())
            for file in os.listdir(temporary):
                with open(os.path.join(temporary, file), "rb") as f:
                    os.fsync(f.fileno())
            pause("written", step)
            for file in sorted(os.listdir(temporary)):
                os.replace(os.path.join(temporary, file), os.path.join(self.path, file))
            pause("renamed", step)
            _, kept = checkpoint.read_state(self.path)
            kept = [p for p in kept if checkpoint.inside(p) and p != name][-(keep - 1):] \
                if keep > 1 else []
            checkpoint.write_state(self.path, name, kept + [name])
        except (OSError, tf.errors.OpError) as e:
            reason = getattr(e, "strerror", None) or checkpoint.first_line(e)
            raise SaveError(f"could not save step {step} in {self.path} ({reason})") from None
        finally:
            shutil.rmtree(temporary, ignore_errors=True)
        self.prune(kept + [name])

    def prune(self, kept: list[str]) -> None:
        """Deletes the files of every step the state file no longer lists."""
        keep = {os.path.basename(p) for p in kept}
        for file in os.listdir(self.path):
            match = STEP.match(file)
            if match and f"model-{match.group(1)}" not in keep:
                try:
                    os.remove(os.path.join(self.path, file))
                except OSError:
                    pass  # read-only or gone: it only costs space

    def read_state(self, prefix: str) -> dict | None:
        try:
            with open(prefix + ".json", encoding="utf-8") as f:
                state = json.load(f)
        except (OSError, ValueError):
            return None
        return state if isinstance(state, dict) else None


def pause(stage: str, step: int) -> None:
    setting = os.environ.get(PAUSE_ENV, "")
    if not setting.endswith(f":{stage}:{step}"):
        return
    fd = int(setting.split(":")[0])
    os.write(fd, stage.encode())
    threading.Event().wait()  # until the test kills this process
