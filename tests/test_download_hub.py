"""download_model.py --hub / --source hub against a local server that behaves like the
Hugging Face Hub: `resolve/<revision>/<file>` answered by the Hub itself for small files and
by a 302 to a storage host on another host and port for the large ones, X-Repo-Commit,
X-Linked-Etag = sha256, X-Linked-Size, Range on the storage host."""
import hashlib
import json

import numpy as np
import pytest
import safetensors.numpy

from download_fixtures import ROOT, dm
from http_fixture import Server

import hub_download  # noqa: E402 -- after download_fixtures, which puts the repository on the path

pytestmark = pytest.mark.usefixtures("no_tracebacks")

COMMIT = "0123456789abcdef0123456789abcdef01234567"
TOKEN = "hf_secret_token_0123456789"
N_EMBD, N_LAYER, N_CTX, N_VOCAB = 16, 2, 64, 50257


def tiny_gpt2(seed=0):
    """A Hub-format GPT-2 of 2 layers, 16 wide, as `save_pretrained` names its tensors."""
    rng, e = np.random.default_rng(seed), N_EMBD
    shapes = {"wte.weight": [N_VOCAB, e], "wpe.weight": [N_CTX, e], "ln_f.weight": [e], "ln_f.bias": [e]}
    for i in range(N_LAYER):
        shapes.update({f"h.{i}.ln_1.weight": [e], f"h.{i}.ln_1.bias": [e],
                       f"h.{i}.attn.c_attn.weight": [e, 3 * e], f"h.{i}.attn.c_attn.bias": [3 * e],
                       f"h.{i}.attn.c_proj.weight": [e, e], f"h.{i}.attn.c_proj.bias": [e],
                       f"h.{i}.ln_2.weight": [e], f"h.{i}.ln_2.bias": [e],
                       f"h.{i}.mlp.c_fc.weight": [e, 4 * e], f"h.{i}.mlp.c_fc.bias": [4 * e],
                       f"h.{i}.mlp.c_proj.weight": [4 * e, e], f"h.{i}.mlp.c_proj.bias": [e]})
    return {name: rng.standard_normal(shape).astype(np.float32) * 0.02 for name, shape in shapes.items()}


def hub_files(tensors, *, sharded=False):
    config = {"model_type": "gpt2", "vocab_size": N_VOCAB, "n_positions": N_CTX, "n_ctx": N_CTX,
              "n_embd": N_EMBD, "n_layer": N_LAYER, "n_head": 2, "activation_function": "gelu_new",
              "layer_norm_epsilon": 1e-5, "architectures": ["GPT2LMHeadModel"]}
    files = {"config.json": json.dumps(config).encode(),
             "vocab.json": (ROOT / "tests/data/encoder.json").read_bytes(),
             "merges.txt": (ROOT / "tests/data/vocab.bpe").read_bytes()}
    if not sharded:
        files["model.safetensors"] = safetensors.numpy.save(tensors)
        return files
    names = sorted(tensors)
    halves = {"model-00001-of-00002.safetensors": names[:len(names) // 2],
              "model-00002-of-00002.safetensors": names[len(names) // 2:]}
    for shard, keys in halves.items():
        files[shard] = safetensors.numpy.save({k: tensors[k] for k in keys})
    files["model.safetensors.index.json"] = json.dumps(
        {"metadata": {}, "weight_map": {k: s for s, keys in halves.items() for k in keys}}).encode()
    return files


def sha(data):
    return hashlib.sha256(data).hexdigest()


class FakeHub:
    """The Hub on 127.0.0.1; its storage host on `localhost` at another port."""

    def __init__(self):
        self.api, self.cdn = Server(), Server()
        self.cdn_url = f"http://localhost:{self.cdn.httpd.server_address[1]}"

    def publish(self, repo, files, *, branch="main", commit=COMMIT):
        for name, data in files.items():
            for rev in (branch, commit):
                path = f"/{repo}/resolve/{rev}/{name}"
                if name.endswith(".safetensors"):  # stored by content, served from elsewhere
                    self.api.link(path, f"{self.cdn_url}/blobs/{sha(data)}", {
                        "X-Linked-Etag": f'"{sha(data)}"', "X-Linked-Size": str(len(data)),
                        "X-Repo-Commit": commit, "ETag": f'"{sha(data)}"'})
                    self.cdn.serve(f"/blobs/{sha(data)}", data, etag='"storage-etag-7"')
                else:  # the git blob's sha1 as ETag
                    self.api.serve(path, data, etag=f'"{hashlib.sha1(data).hexdigest()}"',
                                   headers={"X-Repo-Commit": commit})

    def close(self):
        self.api.close()
        self.cdn.close()


@pytest.fixture
def hub(monkeypatch):
    h = FakeHub()
    for key in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy",
                "NO_PROXY", "no_proxy", "GPT2_BASE_URL", "HF_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", h.api.url)
    yield h
    h.close()


def main(tmp_path, *args):
    return dm.main([*args, "--models_dir", str(tmp_path / "models")])


def opts(**kw):
    return dm.Options(sleep=lambda s: None, log=lambda line: None, **kw)


def test_hub_model_fetched_and_converted(hub, tmp_path, monkeypatch, capsys):
    tensors = tiny_gpt2()
    hub.publish("openai-community/gpt2", hub_files(tensors))
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert main(tmp_path, "--hub", "openai-community/gpt2") == 0
    model = tmp_path / "models/gpt2"
    assert json.loads((model / "hparams.json").read_text()) == {
        "n_vocab": N_VOCAB, "n_ctx": N_CTX, "n_embd": N_EMBD, "n_head": 2, "n_layer": N_LAYER}
    assert (model / "encoder.json").read_bytes() == (ROOT / "tests/data/encoder.json").read_bytes()
    import tensorflow as tf
    reader = tf.train.load_checkpoint(str(model / "model.ckpt"))
    assert np.array_equal(reader.get_tensor("model/wte"), tensors["wte.weight"])
    assert np.array_equal(reader.get_tensor("model/h1/mlp/c_fc/w")[0], tensors["h.1.mlp.c_fc.weight"])
    assert not (tmp_path / "models/.hub/openai-community--gpt2").exists()  # the Hub copy is gone
    # The token went to the Hub with every request, never to the storage host, never printed.
    assert hub.api.requests and all(h["authorization"] == f"Bearer {TOKEN}" for _, _, h in hub.api.requests)
    assert hub.cdn.requests and all("authorization" not in h for _, _, h in hub.cdn.requests)
    # After config.json, every file was asked for at the commit the branch pointed to.
    later = [target for method, target, _ in hub.api.requests][2:]
    assert later and all(f"/resolve/{COMMIT}/" in target for target in later)
    err = capsys.readouterr().err
    assert TOKEN not in err and "Traceback" not in err
    count = len(hub.api.requests)
    assert main(tmp_path, "--hub", "openai-community/gpt2") == 0  # done already: nothing fetched
    assert len(hub.api.requests) == count and "already converted" in capsys.readouterr().err


def test_released_names_from_the_hub_and_sharded_weights(hub, tmp_path):
    tensors = tiny_gpt2(1)
    hub.publish("openai-community/gpt2-medium", hub_files(tensors, sharded=True))
    assert main(tmp_path, "345M", "--source", "hub") == 0
    import tensorflow as tf
    reader = tf.train.load_checkpoint(str(tmp_path / "models/355M/model.ckpt"))
    assert np.array_equal(reader.get_tensor("model/ln_f/g"), tensors["ln_f.weight"])
    shards = [t for _, t, _ in hub.cdn.requests]
    assert len(shards) == 2


def test_resume_after_a_drop_on_the_storage_host(hub, tmp_path):
    files = hub_files(tiny_gpt2())
    hub.publish("o/m", files)
    blob = f"/blobs/{sha(files['model.safetensors'])}"
    hub.cdn.script[blob].extend([{"drop_after": 1_000_000}, {"drop_after": 0}])
    hub_obj = hub_download.Hub("o/m", "main", endpoint=hub.api.url, token=None, opts=opts(retries=0))
    with pytest.raises(dm.DownloadError, match="gave up on .*/o/m/resolve/.*/model.safetensors"):
        hub_obj.fetch_all(str(tmp_path / "models"), force=False)
    stage = tmp_path / f"models/.hub/o--m/{COMMIT}"
    assert (stage / "model.safetensors.part").stat().st_size == 1_000_000
    hub_obj = hub_download.Hub("o/m", "main", endpoint=hub.api.url, token=None, opts=opts())
    assert hub_obj.fetch_all(str(tmp_path / "models"), force=False) == str(stage)
    assert (stage / "model.safetensors").read_bytes() == files["model.safetensors"]
    last = hub.cdn.gets(blob)[-1]
    assert last["range"] == "bytes=1000000-" and last["if-range"] == '"storage-etag-7"'
    assert hub.cdn.sent[blob] == len(files["model.safetensors"])  # no byte sent twice


def test_wrong_digest_is_refused_and_removed(hub, tmp_path, capsys):
    files = hub_files(tiny_gpt2())
    hub.publish("o/m", files)
    blob = f"/blobs/{sha(files['model.safetensors'])}"
    bad = bytearray(files["model.safetensors"])
    bad[-5] ^= 1
    hub.cdn.serve(blob, bytes(bad), etag='"storage-etag-7"')
    assert main(tmp_path, "--hub", "o/m") == 1
    err = capsys.readouterr().err.splitlines()[-1]
    assert err.startswith("download_model.py: error: ") and "model.safetensors: sha256 " in err
    assert err.endswith(f"differs from the expected {sha(files['model.safetensors'])}; removed the "
                        "download: the Hub's file differs from the digest it published: run again, or report it")
    assert not list((tmp_path / "models").rglob("model.safetensors*"))
    assert not (tmp_path / "models/m").exists()


@pytest.mark.parametrize("case", ["missing repo", "private", "private with a token", "offline"])
def test_hub_failures_are_one_line(hub, tmp_path, monkeypatch, capsys, case):
    if case.startswith("private"):
        hub.api.script["/o/secret/resolve/main/config.json"].append(
            {"status": 401, "headers": {"X-Error-Code": "GatedRepo"}})
    if case.endswith("token"):
        monkeypatch.setenv("HF_TOKEN", TOKEN)
    if case == "offline":
        monkeypatch.setenv("HF_ENDPOINT", "http://hub.invalid")
    assert main(tmp_path, "--hub", "o/secret", "--retries", "1") == 1
    err = capsys.readouterr().err
    last = err.splitlines()[-1]
    expected = {
        "missing repo": "/o/secret/resolve/main/config.json not found: o/secret at main has no "
                        "config.json; check the repository name and --revision",
        "private": "HTTP 401 for ", "private with a token": "(the one set was refused)",
        "offline": "cannot reach hub.invalid ("}[case]
    assert expected in last and TOKEN not in err and "Traceback" not in err
    if case == "offline":
        assert last.endswith("check the network or proxy, or set HF_ENDPOINT to a mirror of the Hub")
    if case.startswith("private"):
        assert "set HF_TOKEN to a token that may read it" in last


@pytest.mark.parametrize("argv, message", [
    (["--hub", "o/m", "124M"], "give model names or --hub REPO, not both"),
    (["124M", "--name", "x"], "--name goes with --hub"),
    (["124M", "--revision", "v1"], "--revision goes with --hub or --source hub"),
    (["--hub", "o//m"], "--hub expects a repository id"),
    (["--hub", "../m"], "--hub expects a repository id"),
    (["--hub", "o/m", "--name", "../x"], "--name must be a folder name"),
    (["--hub", "o/m", "--name", ".hub"], "--name must be a folder name"),
    (["--hub", "o/m", "--no_pins"], "--no_pins is for mirrors of the released files"),
    (["--hub", "o/m", "--base_url", "http://x/y"], "for a mirror of the Hub, set HF_ENDPOINT"),
    (["124M", "--source", "elsewhere"], "invalid choice"),
])
def test_hub_usage_errors(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as e:
        main(tmp_path, *argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err and err.count("\n") == 1
    assert not (tmp_path / "models").exists()


def test_bad_endpoint_and_an_occupied_destination_are_usage_errors(hub, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_ENDPOINT", "ftp://mirror")
    with pytest.raises(SystemExit) as e:
        main(tmp_path, "--hub", "o/m")
    assert e.value.code == 2 and "HF_ENDPOINT must be an http(s) URL" in capsys.readouterr().err
    monkeypatch.setenv("HF_ENDPOINT", hub.api.url)
    (tmp_path / "models/m").mkdir(parents=True)
    (tmp_path / "models/m/notes.txt").write_text("mine")
    with pytest.raises(SystemExit) as e:
        main(tmp_path, "--hub", "o/m")
    assert e.value.code == 2 and "exists and is not empty" in capsys.readouterr().err
    assert hub.api.requests == []  # refused before anything was fetched
    assert (tmp_path / "models/m/notes.txt").read_text() == "mine"


def test_hub_download_as_a_process_prints_only_its_own_lines(hub, tmp_path):
    """Run as a user runs it: the conversion's TensorFlow start-up says nothing on stderr
    (TF_CPP_MIN_LOG_LEVEL left unset, as in a user's shell)."""
    import os
    import subprocess
    import sys
    hub.publish("o/m", hub_files(tiny_gpt2()))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_CPP")}
    done = subprocess.run([sys.executable, str(ROOT / "download_model.py"), "--hub", "o/m",
                           "--models_dir", str(tmp_path / "models")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert lines[-2:] == [f"converting o/m into {tmp_path / 'models/m'}",
                          f"{tmp_path / 'models/m'}: converted from o/m at main"], done.stderr
    assert all(line.startswith(str(tmp_path / "models")) for line in lines[:-2]), done.stderr
