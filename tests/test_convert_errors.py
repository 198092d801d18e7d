"""convert_checkpoint.py on bad input (issue 12, FAULTS.md C1-C3): every case ends with one
line on stderr naming the file, tensor or key, exit 1 (or 2 for a usage error), and nothing
at the destination, not even the temporary directory it is written in.

The script's `main` runs in this process (a process per case would cost seconds each);
tests/test_convert.py runs it as a process and checks that stderr stays empty.
"""
import json
import os
import shutil

import numpy as np
import pytest

from conftest import CLI_TINY
from test_convert import converted, hf_gpt2, save_hub

pytestmark = pytest.mark.usefixtures("no_tracebacks")

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def hub_source(tmp_path_factory):
    return save_hub(hf_gpt2(seed=2), tmp_path_factory.mktemp("hub-src") / "src")


@pytest.fixture
def hub(tmp_path, hub_source):
    """A fresh copy of a valid Hub directory, to spoil."""
    return shutil.copytree(hub_source, tmp_path / "hub")


@pytest.fixture
def released(tmp_path, cli_models):
    return shutil.copytree(os.path.join(cli_models, "tiny"), tmp_path / "released")


@pytest.fixture
def run(tmp_path, capsys):
    """Converts `src` into tmp/out/model; returns (exit code, stderr) after checking that
    stdout is empty and stderr one line, and that out/ holds nothing but what was there."""
    out = tmp_path / "out"
    out.mkdir()

    def run(src, *args, dst=None, code=1):
        dst = out / "model" if dst is None else dst
        before = sorted(os.listdir(out))
        capsys.readouterr()  # what the test's own set-up printed (transformers' progress)
        assert converted(src, dst, *args) == code
        # One line: "error: <what, where, what to do>", or "interrupted".
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err.count("\n") == 1, captured.err
        assert captured.err.startswith("convert_checkpoint.py: "), captured.err
        assert sorted(os.listdir(out)) == before  # no partial or temporary directory
        return captured.err

    run.out = out
    return run


def edit_json(path, **changes):
    with open(path) as f:
        values = json.load(f)
    values.update(changes)
    with open(path, "w") as f:
        json.dump(values, f)


def test_source_missing_empty_or_of_neither_format(run, tmp_path):
    assert "not found" in run(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    assert "neither" in run(tmp_path / "empty")
    (tmp_path / "a-file").write_text("x")
    assert "not a directory" in run(tmp_path / "a-file")


def test_hub_directory_without_safetensors(run, hub):
    os.remove(hub / "model.safetensors")
    (hub / "pytorch_model.bin").write_bytes(b"pickle")
    err = run(hub)
    assert "model.safetensors" in err and "pytorch_model.bin" in err


@pytest.mark.parametrize("key,value", [
    ("n_inner", 32), ("scale_attn_by_inverse_layer_idx", True),
    ("reorder_and_upcast_attn", True), ("activation_function", "relu"),
    ("layer_norm_epsilon", 1e-6), ("vocab_size", 50258), ("model_type", "gpt_neo")])
def test_config_the_model_cannot_represent(run, hub, key, value):
    edit_json(hub / "config.json", **{key: value})
    assert f"{key}={value!r}" in run(hub)


def test_another_vocabulary(run, hub):
    vocab = json.loads((hub / "vocab.json").read_text(encoding="utf-8"))
    vocab["hello"], vocab["world"] = vocab["world"], vocab["hello"]
    (hub / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    assert "vocab.json (50257 tokens) is not GPT-2's vocabulary" in run(hub)
    del vocab["hello"]
    (hub / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    assert "vocab.json (50256 tokens) is not GPT-2's vocabulary" in run(hub)
    (hub / "vocab.json").write_text('{"a": "1"}', encoding="utf-8")
    assert "vocab.json is not a map from tokens to integer ids" in run(hub)


def test_another_merge_order(run, released):
    lines = (released / "vocab.bpe").read_text(encoding="utf-8").split("\n")
    lines[1], lines[2] = lines[2], lines[1]
    (released / "vocab.bpe").write_text("\n".join(lines), encoding="utf-8")
    assert "vocab.bpe (50000 merges) is not GPT-2's vocabulary" in run(released)
    os.remove(released / "encoder.json")
    assert "encoder.json not found" in run(released)


@pytest.mark.parametrize("keep", [0, 5, 12, -100])
def test_truncated_safetensors(run, hub, keep):
    """Cut inside the 8-byte length, inside the header, inside the data."""
    data = (hub / "model.safetensors").read_bytes()
    (hub / "model.safetensors").write_bytes(data[:keep])
    err = run(hub)
    assert "model.safetensors is not a complete safetensors file" in err


def write_tensors(hub, change):
    """Rewrites model.safetensors with `change(tensors)` applied."""
    from safetensors.numpy import load_file, save_file
    tensors = load_file(str(hub / "model.safetensors"))
    change(tensors)
    save_file(tensors, str(hub / "model.safetensors"), metadata={"format": "pt"})


def test_tensor_of_the_wrong_shape(run, hub):
    def shrink(t):
        name = "transformer.h.1.mlp.c_fc.weight"
        t[name] = np.ascontiguousarray(t[name][:, :-1])
    write_tensors(hub, shrink)
    err = run(hub)
    assert "transformer.h.1.mlp.c_fc.weight has shape [16, 63]" in err and "[16, 64]" in err


def test_missing_unexpected_and_untied(run, hub):
    write_tensors(hub, lambda t: t.pop("transformer.h.1.ln_2.bias"))
    assert "no tensor h.1.ln_2.bias" in run(hub)
    write_tensors(hub, lambda t: t.update({"transformer.h.1.ln_2.bias": np.zeros(16, "f4"),
                                           "score.weight": np.zeros((2, 16), "f4")}))
    assert "tensor score.weight is not part of" in run(hub)

    def untie(t):
        del t["score.weight"]
        t["lm_head.weight"] = t["transformer.wte.weight"] + np.float32(1)
    write_tensors(hub, untie)
    assert "lm_head.weight differs from wte.weight" in run(hub)


def test_sharded_index_naming_a_missing_shard(run, tmp_path):
    src = save_hub(hf_gpt2(seed=5), tmp_path / "sharded", max_shard_size="1MB")
    with open(os.path.join(src, "model.safetensors.index.json")) as f:
        shards = sorted(set(json.load(f)["weight_map"].values()))
    os.remove(os.path.join(src, shards[-1]))
    assert f"{shards[-1]} is missing" in run(src)


def test_released_checkpoint_of_the_wrong_shape(run, released):
    edit_json(released / "hparams.json", n_embd=32, n_head=2)
    assert "model/wte" in run(released)  # checkpoint.py names the variable and the shapes


def test_destination_not_empty_refused_unless_force(run, hub):
    dst = run.out / "model"
    dst.mkdir()
    (dst / "notes.txt").write_text("mine")
    assert "not empty" in run(hub, dst=dst) and "--force" in run(hub, dst=dst)
    assert (dst / "notes.txt").read_text() == "mine"
    assert converted(hub, dst, "--force") == 0
    assert "notes.txt" not in os.listdir(dst) and "hparams.json" in os.listdir(dst)
    assert sorted(os.listdir(run.out)) == ["model"]
    empty = run.out / "empty"
    empty.mkdir()
    assert converted(hub, empty) == 0  # an empty directory is no data to lose


def test_destination_that_would_replace_the_source(run, hub, tmp_path):
    assert "would replace the source" in run(hub, "--force", dst=hub)
    assert "would replace the source" in run(hub, "--force", dst=tmp_path)
    assert (hub / "model.safetensors").exists()


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyboardInterrupt])
def test_failure_while_writing_leaves_the_old_destination(run, hub, monkeypatch, error):
    """C3: written in a temporary directory beside DST; a failure, or Ctrl-C, at the last
    file removes it and leaves DST as it was."""
    import hub_files
    dst = run.out / "model"
    dst.mkdir()
    (dst / "old.txt").write_text("old")

    def fail(*args, **kwargs):
        assert any(name.startswith(".model.partial-") for name in os.listdir(run.out))
        raise error
    monkeypatch.setattr(hub_files, "write", fail)
    expected = 130 if error is KeyboardInterrupt else 1
    err = run(hub, "--force", dst=dst, code=expected)
    assert err == ("convert_checkpoint.py: interrupted\n" if expected == 130 else
                   f"convert_checkpoint.py: error: cannot write {dst}: No space left on "
                   f"device\n")
    assert os.listdir(dst) == ["old.txt"]


def test_usage_errors_exit_2(capsys, hub, tmp_path):
    assert converted(hub) == 2  # DST missing
    assert converted(hub, tmp_path / "x", "--bogus") == 2
    assert converted(hub, tmp_path / "x", "--force", "maybe") == 2
    assert not (tmp_path / "x").exists()
    capsys.readouterr()


def test_unsupported_config_is_refused_without_tensorflow_work():
    import hub_format
    with pytest.raises(ValueError, match=r"^c.json: n_inner=100 cannot be represented"):
        hub_format.hparams_from_config({"n_embd": 16, "n_head": 2, "n_inner": 100},
                                       source="c.json")
    with pytest.raises(ValueError, match="expected a JSON object"):
        hub_format.hparams_from_config([], source="c.json")
    tiny = dict(vocab_size=50257, n_positions=64, n_embd=16, n_head=2, n_layer=2)
    assert hub_format.hparams_from_config(
        {**tiny, "n_inner": 64, "activation_function": "gelu_pytorch_tanh"}, source="c"
    ).n_ctx == CLI_TINY["n_ctx"]


def test_full_stdout_says_the_destination_is_complete(hub, tmp_path):
    """`>/dev/full`: the report is lost, so exit 1 as for any lost output, but the line says
    DST was written in full (no rerun needed) and DST loads."""
    import subprocess
    import sys
    from test_convert import CONVERT, user_env
    dst = tmp_path / "models" / "hf"
    with open(os.devnull.replace("null", "full"), "w") as full:
        done = subprocess.run([sys.executable, CONVERT, str(hub), str(dst)], stdout=full,
                              stderr=subprocess.PIPE, text=True, env=user_env(), timeout=120)
    assert done.returncode == 1
    assert done.stderr == (f"convert_checkpoint.py: error: {dst} was written in full; only "
                           f"this report was lost: cannot write to standard output: No space "
                           f"left on device\n")
    assert os.listdir(dst.parent) == ["hf"]  # renamed into place, no temporary left
    assert {"hparams.json", "encoder.json", "vocab.bpe", "checkpoint", "model.ckpt.index",
            "model.ckpt.data-00000-of-00001"} <= set(os.listdir(dst))
