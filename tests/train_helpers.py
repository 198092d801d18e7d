"""Shared by the training tests: a tiny real-vocabulary model, running train.py in-process
and as a process, and reading run directories back."""
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np

import gpt2_fixtures as fx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The real vocabulary (the run directory must load in the sampling scripts), and the
# smallest everything else: a window is n_ctx = 16 tokens.
TRAIN_TINY = dict(n_vocab=50257, n_ctx=16, n_embd=16, n_head=2, n_layer=2)


def make_workdir(path, *, h=TRAIN_TINY, seed=4) -> str:
    """path/models/tiny (random weights, released layout, real vocabulary), path/data.npz
    (600 random token ids: training needs no meaning, and no encoder then) and
    path/data.txt; returns path."""
    model_dir = os.path.join(path, "models", "tiny")
    fx.write_tf1_checkpoint(model_dir, h, fx.random_weights(h, seed=seed))
    fx.copy_vocabulary(model_dir)
    ids = np.random.default_rng(seed).integers(0, h["n_vocab"], 600)
    np.savez(os.path.join(path, "data.npz"), ids.astype(np.uint16))
    with open(os.path.join(path, "data.txt"), "w") as f:
        f.write("".join(f"Line {i}: the quick brown fox jumps over the lazy dog.\n"
                        for i in range(40)))
    return str(path)


def module_workdir(tmp_path_factory, name: str):
    """For a module-scoped fixture: a work directory (see make_workdir), current while the
    module's tests run."""
    path = make_workdir(tmp_path_factory.mktemp(name))
    cwd = os.getcwd()
    os.chdir(path)
    yield path
    os.chdir(cwd)


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name.replace(".py", "_script"),
                                                  os.path.join(ROOT, name))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TRAIN = None


def train_main(*argv, dataset="data.npz", model=True) -> int:
    """train.py's main in this process, in the current directory, on models/tiny."""
    global TRAIN
    TRAIN = TRAIN or load_script("train.py")
    where = ["--models_dir", "models", "--model_name", "tiny"] if model else []
    return TRAIN.main([*where, "--dataset", dataset, "--sample_every", "0", *map(str, argv)])


def train_process(cwd, *argv, env=None, command=None, **popen) -> subprocess.Popen:
    """train.py (or `command`, given train.py's arguments) as a process of its own, output
    piped, on models/tiny in `cwd`."""
    command = command or [sys.executable, os.path.join(ROOT, "train.py")]
    command += ["--models_dir", "models", "--model_name", "tiny", "--sample_every", "0",
                *map(str, argv)]
    environment = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    environment.update(TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=os.path.join(ROOT, "src"),
                       **(env or {}))
    return subprocess.Popen(command, cwd=cwd, env=environment, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **popen)


def weights(run_dir: str, prefix: str | None = None) -> dict:
    """Every variable of a run's newest checkpoint (or of `prefix`), by name."""
    import tensorflow as tf
    import checkpoint
    prefix = prefix or checkpoint.checkpoint_prefix(run_dir)
    reader = tf.train.load_checkpoint(prefix)
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def assert_close(a: dict, b: dict, atol: float, names=None) -> None:
    names = names or [n for n in a if n.startswith("model/")]
    assert names
    for name in names:
        np.testing.assert_allclose(a[name], b[name], rtol=0, atol=atol, err_msg=name)


def state(run_dir: str, step: int) -> dict:
    with open(os.path.join(run_dir, f"model-{step}.json")) as f:
        return json.load(f)
