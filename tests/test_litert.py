"""The LiteRT path against the TensorFlow path on a tiny checkpoint: logits, greedy tokens,
int8, the op list, and the cache of exported files (keyed, rebuilt, never half-written)."""
import errno
import os
import shutil
import sys

import numpy as np
import pytest

import checkpoint
import litert_export
import litert_runtime
import litert_store
import model
import sample
from conftest import TINY


@pytest.fixture(scope="session")
def tiny_copy(tmp_path_factory, tiny_dir):
    """The tiny checkpoint in a folder of its own (exports are written beside it)."""
    path = str(tmp_path_factory.mktemp("litert") / "tiny")
    shutil.copytree(tiny_dir, path)
    return path


@pytest.fixture(scope="session")
def exported(tiny_copy):
    """The tiny model's float32 and int8 exports (converted once per session)."""
    return {dtype: litert_store.ensure(tiny_copy, dtype=dtype) for dtype in ("float32", "int8")}


@pytest.fixture(scope="session")
def greedy(tiny_model):
    """The TensorFlow path's greedy sample: (context, context + 24 tokens)."""
    hparams, params = tiny_model
    context = tokens(0, (2, 5))
    return context, sample.sample_sequence(params=params, hparams=hparams, length=24,
                                           context=context, temperature=0)


def tokens(seed, shape):
    return np.random.default_rng(seed).integers(0, TINY["n_vocab"], size=shape).astype(np.int32)


def stepwise_logits(runtime, ids, n_prompt):
    """Logits [batch, positions, n_vocab] for positions n_prompt-1.. of ids, by prefill and
    then one step per token."""
    out = [runtime.prefill(ids[:, :n_prompt], ids.shape[1])]
    for pos in range(n_prompt, ids.shape[1]):
        out.append(runtime.step(ids[:, pos], pos))
    return np.stack(out, axis=1)


def test_float32_logits_and_greedy_tokens_equal_the_tensorflow_path(
        tiny_model, exported, greedy, monkeypatch):
    # Buckets from 4 slots, so the 24 steps below grow the cache 8 -> 16 -> 29 on the way.
    monkeypatch.setattr(litert_runtime, "SMALLEST_BUCKET", 4)
    hparams, params = tiny_model
    context, theirs = greedy
    runtime = litert_runtime.Runtime(exported["float32"], hparams)
    ours = sample.sample_sequence(params=params, hparams=hparams, length=24, context=context,
                                  sampler=litert_runtime.Sampler(runtime, temperature=0))
    np.testing.assert_array_equal(ours, theirs)
    assert len(set(ours[:, 5:].ravel())) > 3  # a real sequence, not one token repeated
    assert runtime.slots == 29  # grown to the whole sample (the capacity), never past it
    full = model.model(params, ours, hparams=hparams)["logits"].numpy()
    np.testing.assert_allclose(stepwise_logits(runtime, ours, 5), full[:, 4:], atol=1e-4,
                               rtol=0)


def test_top_k_1_draws_the_greedy_tokens_streamed_or_not(tiny_model, exported, greedy):
    hparams, params = tiny_model
    context, theirs = greedy
    sampler = litert_runtime.Sampler(litert_runtime.Runtime(exported["float32"], hparams),
                                     temperature=1.0, top_k=1)
    ours = sample.sample_sequence(params=params, hparams=hparams, length=24, context=context,
                                  sampler=sampler, seed=7)
    np.testing.assert_array_equal(ours, theirs)
    streamed = list(sample.stream_sequence(sampler, context[:1], length=24, seed=8))
    np.testing.assert_array_equal(np.concatenate(streamed), theirs[0, 5:])


def test_int8_is_smaller_and_close_to_float32(tiny_model, exported):
    hparams, params = tiny_model
    assert os.path.getsize(exported["int8"][0]) < 0.6 * os.path.getsize(exported["float32"][0])
    ids = tokens(2, (2, 20))
    full = model.model(params, ids, hparams=hparams)["logits"].numpy()[:, 3:]
    int8 = stepwise_logits(litert_runtime.Runtime(exported["int8"], hparams), ids, 4)
    error = np.abs(int8 - full)
    assert 0 < error.max() < 0.25 * full.std()  # quantized, and still close
    agree = (int8.argmax(-1) == full.argmax(-1)).mean()
    assert agree >= 0.9, agree


def test_exports_use_builtin_ops_only(exported):
    for path in exported["float32"] + exported["int8"]:
        with open(path, "rb") as f:
            ops = litert_export.ops_used(f.read())
        assert "FULLY_CONNECTED" in ops and "BATCH_MATMUL" in ops, ops
        assert not [op for op in ops if op.startswith("CUSTOM")], ops  # no Flex/Select TF


def test_a_model_converted_in_parts_gives_the_same_tokens(tiny_model, tmp_path, tiny_dir,
                                                          greedy, monkeypatch):
    monkeypatch.setattr(litert_export, "PART_BYTES", 60_000)  # one layer per part
    hparams, params = tiny_model
    assert [list(r) for r in litert_export.plan(hparams)] == [[0], [1]]
    folder = str(tmp_path / "tiny")
    shutil.copytree(tiny_dir, folder)
    runtime = litert_runtime.load(folder, dtype="float32")
    assert len(runtime.parts) == 2
    context, theirs = greedy
    ours = sample.sample_sequence(params=params, hparams=hparams, length=24, context=context,
                                  sampler=litert_runtime.Sampler(runtime, temperature=0))
    np.testing.assert_array_equal(ours, theirs)


def test_without_ai_edge_litert_tensorflows_interpreter_runs_it(tiny_model, exported,
                                                                 monkeypatch):
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)  # import fails
    assert litert_runtime.interpreter_class().__module__.startswith("tensorflow")
    hparams, params = tiny_model
    runtime = litert_runtime.Runtime(exported["float32"], hparams)
    ids = tokens(4, (1, 8))
    full = model.model(params, ids, hparams=hparams)["logits"].numpy()[:, 3:]
    np.testing.assert_allclose(stepwise_logits(runtime, ids, 4), full, atol=1e-4, rtol=0)


def test_no_runtime_is_one_error_before_any_export(tiny_dir, tmp_path, monkeypatch):
    for name in litert_runtime.RUNTIMES:
        monkeypatch.setitem(sys.modules, name, None)
    folder = str(tmp_path / "tiny")
    shutil.copytree(tiny_dir, folder)
    with pytest.raises(ValueError, match="pip install ai-edge-litert"):
        litert_runtime.load(folder, dtype="int8")
    assert not os.path.exists(os.path.join(folder, "litert"))


# The export cache. `convert` is a seam: these tests hand out the session's real export
# instead of converting again, and count the calls.

@pytest.fixture
def model_copy(tiny_dir, tmp_path, exported):
    folder = str(tmp_path / "tiny")
    shutil.copytree(tiny_dir, folder)
    blob = open(exported["float32"][0], "rb").read()
    calls = []

    def convert(model_dir, hparams, layers, *, first, last, dtype):
        calls.append(dtype)
        return blob

    def ensure():
        return litert_store.ensure(folder, dtype="float32", convert=convert)

    return folder, ensure, calls


def export_folders(folder):
    return sorted(os.listdir(os.path.join(folder, "litert")))


def test_an_export_is_reused_until_the_weights_or_the_exporter_change(model_copy,
                                                                      monkeypatch):
    folder, ensure, calls = model_copy
    first = ensure()
    assert ensure() == first and calls == ["float32"]  # reused, not converted again
    monkeypatch.setattr(litert_store, "EXPORTER_VERSION", litert_store.EXPORTER_VERSION + 1)
    second = ensure()
    assert calls == ["float32"] * 2 and second != first
    assert not os.path.exists(first[0])  # the stale export is gone
    monkeypatch.undo()
    # New weights under the same name: a new checkpoint index, a new key.
    hparams, params = checkpoint.load(folder)
    params["wte"].assign(params["wte"] * 2)
    checkpoint.save(params, hparams, folder)
    third = ensure()
    assert calls == ["float32"] * 3 and third not in (first, second)
    assert [f for f in export_folders(folder) if not f.startswith(".")] == [
        os.path.basename(os.path.dirname(third[0]))]


@pytest.mark.parametrize("damage", ["truncate", "flip", "manifest"])
def test_a_damaged_export_is_rebuilt_never_used(model_copy, damage):
    folder, ensure, calls = model_copy
    (path,) = ensure()
    good = open(path, "rb").read()
    if damage == "truncate":
        open(path, "wb").write(good[:len(good) // 2])
    elif damage == "flip":
        open(path, "wb").write(good[:100] + bytes([good[100] ^ 1]) + good[101:])
    else:
        open(os.path.join(os.path.dirname(path), "manifest.json"), "w").write("{not json")
    notes = []
    assert litert_store.ensure(folder, dtype="float32", progress=notes.append,
                               convert=lambda *a, **k: calls.append(1) or good) == [path]
    assert len(calls) == 2 and open(path, "rb").read() == good
    assert any("unusable" in note and "rebuilding" in note for note in notes), notes


def test_a_full_disk_leaves_no_partial_export(model_copy, monkeypatch):
    folder, ensure, calls = model_copy

    def full(path, data):
        with open(path, "wb") as f:
            f.write(data[:10])  # a partial write, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(litert_store, "write_file", full)
    with pytest.raises(ValueError, match="No space left on device.*free some disk space"):
        ensure()
    assert export_folders(folder) == [".lock"]  # nothing under a final name, no temp
    monkeypatch.undo()
    assert os.path.getsize(ensure()[0]) > 10  # the next run exports normally


def test_an_op_without_a_builtin_kernel_is_one_error_naming_it(tiny_dir, tmp_path,
                                                                monkeypatch):
    import tensorflow as tf
    folder = str(tmp_path / "tiny")
    shutil.copytree(tiny_dir, folder)
    # An MLP built on an op that LiteRT has no kernel for.
    monkeypatch.setattr(model, "mlp", lambda x, **weights: tf.math.igamma(x * x + 1, x * x))
    with pytest.raises(litert_export.ConversionError, match="Igamma.*--backend tf"):
        litert_store.ensure(folder, dtype="float32")
    assert export_folders(folder) == [".lock"]


@pytest.mark.parametrize("needed, capacity, slots", [
    (1, 1024, 128), (128, 1024, 128), (129, 1024, 256), (513, 1024, 1024),
    (20, 25, 25), (200, 300, 256), (257, 300, 300), (30, 30, 30)])
def test_bucket(needed, capacity, slots):
    assert litert_runtime.bucket(needed, capacity) == slots


def test_scoring_on_litert_equals_scoring_on_tensorflow(tiny_model, exported):
    import litert_score
    import score
    hparams, params = tiny_model
    windows = [score.Window(tuple(tokens(5, (1, 30))[0]), 29),  # every token scored
               score.Window(tuple(tokens(6, (1, 12))[0]), 3),  # a long context, 3 scored
               score.Window(tuple(tokens(7, (1, 2))[0]), 1)]
    theirs = score.Scorer(params, hparams).score(windows, batch_size=2)
    ours = litert_score.Scorer(litert_runtime.Runtime(exported["float32"], hparams)).score(
        windows, batch_size=2)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a.logprobs, b.logprobs, atol=1e-4, rtol=0)
        np.testing.assert_array_equal(a.greedy, b.greedy)
