"""What the downloader's tests share: made-up model files, the scripted server with them, a
recording `download()` runner, and the script as a subprocess.

Imported by the test modules with `from download_fixtures import *`, fixtures included.
"""
import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from http_fixture import Server

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import download_model as dm  # noqa: E402

DATA = dm.DATA
SIZES = {"checkpoint": 77, "encoder.json": 3000, "hparams.json": 90, DATA: 200_000,
         "model.ckpt.index": 5215, "model.ckpt.meta": 4000, "vocab.bpe": 2000}
_rng = random.Random(5)
FILES = {name: _rng.randbytes(size) for name, size in SIZES.items()}
ENV_KEYS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "GPT2_BASE_URL")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pins_for(files: dict[str, bytes]) -> dict[str, dm.Pin]:
    return {name: dm.Pin(len(data), sha(data)) for name, data in files.items()}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for key in ENV_KEYS:
        monkeypatch.delenv(key, raising=False)
        monkeypatch.delenv(key.upper(), raising=False)
    monkeypatch.setattr(dm, "PINS", {"124M": pins_for(FILES)})
    old = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, old)  # main() installs its own handler


@pytest.fixture
def server():
    s = Server()
    for name, data in FILES.items():
        s.serve(f"/models/124M/{name}", data)
    yield s
    s.close()


class Bar:
    def __init__(self, total, initial, desc):
        self.total, self.initial, self.n, self.desc, self.closed = total, initial, initial, desc, False

    def update(self, k):
        self.n += k

    def close(self):
        self.closed = True


class Run:
    """Calls dm.download with recording seams; keeps what it saw."""

    def __init__(self, tmp_path, server):
        self.dir = tmp_path / "models"
        self.server = server
        self.sleeps, self.logs, self.bars = [], [], []
        self.on_sleep = None  # called with each delay: lets a test change the server meanwhile

    def __call__(self, names=("124M",), **kw):
        kw.setdefault("base_url", self.server.url + "/models")
        kw.setdefault("timeout", 5.0)
        dm.download(list(names), models_dir=str(self.dir), sleep=self.sleep,
                    progress=self.progress, log=self.logs.append, **kw)

    def sleep(self, delay):
        self.sleeps.append(delay)
        if self.on_sleep:
            self.on_sleep(delay)

    def progress(self, *, total, initial, desc):
        self.bars.append(Bar(total, initial, desc))
        return self.bars[-1]

    def path(self, name, model="124M"):
        return self.dir / model / name

    def assert_complete(self, model="124M", files=FILES):
        for name, data in files.items():
            assert self.path(name, model).read_bytes() == data, name
        assert not list((self.dir / model).glob("*.part"))


@pytest.fixture
def run(tmp_path, server):
    return Run(tmp_path, server)


def data_gets(server, model="124M"):
    return server.gets(f"/models/{model}/{DATA}")


def subprocess_run(args, cwd, *, unpinned=True, **kw):
    """The script in a subprocess; `unpinned` adds --no_pins, so that made-up files verify."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in ENV_KEYS}
    cmd = [sys.executable, str(ROOT / "download_model.py"), *args, *(["--no_pins"] * unpinned)]
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def wait_for(condition, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the condition"
        time.sleep(0.01)
