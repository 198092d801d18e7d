"""Shared fixtures: tiny random checkpoints in the released layout."""
import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import gpt2_fixtures as fx  # noqa: E402

TINY = dict(n_vocab=97, n_ctx=32, n_embd=32, n_head=4, n_layer=2)


@pytest.fixture(scope="session")
def tiny_weights():
    return fx.random_weights(TINY, seed=1)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory, tiny_weights):
    """A tiny model written by TF1-style code (variable_scope, get_variable, Saver)."""
    path = str(tmp_path_factory.mktemp("models") / "tiny")
    fx.write_tf1_checkpoint(path, TINY, tiny_weights)
    return path


@pytest.fixture(scope="session")
def tiny_model(tiny_dir):
    import checkpoint
    return checkpoint.load(tiny_dir)
