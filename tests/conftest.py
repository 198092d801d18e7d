"""Shared fixtures: tiny random checkpoints in the released layout."""
import os
import signal

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# A suite started in the background (`./test.sh &`, nohup) inherits SIGINT ignored, and
# so would every script the tests run: their Ctrl-C cases would test nothing. A handler
# here is reset to the default in each child process, where Python installs its own.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

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


# The sampling scripts use the real vocabulary, so their tiny model has GPT-2's n_vocab.
CLI_TINY = dict(n_vocab=50257, n_ctx=64, n_embd=16, n_head=2, n_layer=2)


@pytest.fixture(scope="session")
def cli_weights():
    return fx.random_weights(CLI_TINY, seed=3)


@pytest.fixture(scope="session")
def cli_models(tmp_path_factory, cli_weights):
    """A models directory holding `tiny/` in the released layout, vocabulary included:
    pass `--models_dir <this> --model_name tiny` to the scripts."""
    models = tmp_path_factory.mktemp("cli") / "models"
    fx.write_tf1_checkpoint(str(models / "tiny"), CLI_TINY, cli_weights)
    fx.copy_vocabulary(str(models / "tiny"))
    return str(models)


import io  # noqa: E402
import re  # noqa: E402


class _Terminal(io.TextIOWrapper):
    """A captured stream that claims to be a terminal (for progress-bar decisions)."""

    def isatty(self):
        return True


_MODELS = {}


def _shared_model(model_dir, hparams, *, dtype, strategy, backend="tf"):
    """samples_io.open_model, read once per test session: runs share the weights and the
    compiled samplers (each new sampler costs seconds of tracing), with their own strategy.
    A test that replaces checkpoint.load gets a fresh read."""
    import dataclasses

    import checkpoint
    import samples_io
    key = (model_dir, dtype, backend, checkpoint.load)
    if key not in _MODELS:
        _MODELS[key] = _OPEN_MODEL(model_dir, hparams, dtype=dtype, strategy=strategy,
                                   backend=backend)
    return dataclasses.replace(_MODELS[key], strategy=strategy)


class _Full(io.RawIOBase):
    """A file on a full disk: every write fails with ENOSPC (until emptied)."""

    full = True

    def writable(self):
        return True

    def write(self, data):
        import errno
        if self.full:
            raise OSError(errno.ENOSPC, "No space left on device")
        return len(data)


@pytest.fixture
def run_script(monkeypatch, cli_models):
    """Runs a sampling script's `main` in-process on the tiny model and returns
    (exit code, stdout, stderr). stdin is given as bytes; `encoding` is the console's
    (the scripts must write UTF-8 whatever it is); stdout and stderr are decoded as strict
    UTF-8, so anything else fails the test. `full_stdout` makes stdout a full disk.
    Progress lines are off (a slow machine would add them); a test may set
    progress.EVERY itself after asking for this fixture."""
    import sys
    from types import SimpleNamespace

    import progress
    import samples_io
    monkeypatch.setattr(progress, "EVERY", float("inf"))
    monkeypatch.setattr(samples_io, "open_model", _shared_model)

    def run(module, *args, stdin=b"", encoding="utf-8", tty_stderr=False, model=True,
            full_stdout=False):
        streams = {
            "stdin": io.TextIOWrapper(io.BytesIO(stdin), encoding=encoding),
            "stdout": io.TextIOWrapper(io.BufferedWriter(_Full()) if full_stdout else
                                       io.BytesIO(), encoding=encoding),
            "stderr": (_Terminal if tty_stderr else io.TextIOWrapper)(
                io.BytesIO(), encoding=encoding),
        }
        for name, stream in streams.items():
            monkeypatch.setattr(sys, name, stream)
        where = ["--models_dir", cli_models, "--model_name", "tiny"] if model else []
        code = module.main([*where, *map(str, args)])
        captured = {}
        for name in ("stdout", "stderr"):
            try:
                streams[name].flush()
                captured[name] = streams[name].buffer.getvalue().decode("utf-8")
            except (OSError, AttributeError):
                captured[name] = ""  # the full disk keeps nothing
                streams[name].buffer.raw.full = False  # so closing it later is quiet
        return SimpleNamespace(code=code, **captured)

    return run


SAMPLE_HEADER = re.compile(r"^={40} SAMPLE (\d+) ={40}\n", re.M)
RULE = "=" * 80


def parse_samples(out: str) -> list:
    """[(n, text)] in the order printed, from the original's output format."""
    parts = SAMPLE_HEADER.split(out)
    found = []
    for n, body in zip(parts[1::2], parts[2::2]):
        body = body.split("\n" + RULE + "\n")[0]
        found.append((int(n), body[:-1] if body.endswith("\n") else body))
    return found


TRACEBACK = "Traceback (most recent call last)"
import samples_io as _samples_io  # noqa: E402

_OPEN_MODEL = _samples_io.open_model


@pytest.fixture
def no_tracebacks(monkeypatch):
    """Fails the test if a process it runs prints a Python traceback: everything read from
    subprocesses (`subprocess.run`, `Popen.communicate`) and from pexpect children is kept
    and searched at the end. Fault-suite modules use it for every test
    (`pytestmark = pytest.mark.usefixtures("no_tracebacks")`)."""
    import subprocess

    import pexpect
    seen = []
    communicate, read = subprocess.Popen.communicate, pexpect.spawn.read_nonblocking

    def text(data):
        return data.decode("utf-8", "replace") if isinstance(data, bytes) else data or ""

    def communicating(self, *args, **kwargs):
        out, err = communicate(self, *args, **kwargs)
        seen.extend([text(out), text(err)])
        return out, err

    def reading(self, *args, **kwargs):
        data = read(self, *args, **kwargs)
        seen.append(text(data))
        return data

    monkeypatch.setattr(subprocess.Popen, "communicate", communicating)
    monkeypatch.setattr(pexpect.spawn, "read_nonblocking", reading)
    yield seen
    everything = "".join(seen)
    assert TRACEBACK not in everything, everything[everything.index(TRACEBACK):][:3000]
