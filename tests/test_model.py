"""The forward pass against an independent NumPy GPT-2, and cached decoding against it."""
import json

import numpy as np
import pytest
import tensorflow as tf

import model
import reference_gpt2
from conftest import TINY

pytestmark = pytest.mark.usefixtures("no_tracebacks")

ATOL = 1e-4


def tokens(seed, n, batch=1):
    return np.random.default_rng(seed).integers(0, TINY["n_vocab"], size=(batch, n))


@pytest.mark.parametrize("n", [1, 7, TINY["n_ctx"]])
def test_logits_match_reference(tiny_model, tiny_weights, n):
    hparams, params = tiny_model
    X = tokens(n, n, batch=2)
    ours = model.model(params, X, hparams=hparams)["logits"].numpy()
    assert ours.shape == (2, n, TINY["n_vocab"])
    for row in range(2):
        ref = reference_gpt2.logits(tiny_weights, X[row], TINY["n_head"])
        assert np.abs(ref).max() > 1.0  # the weights are large enough to show a wrong op
        np.testing.assert_allclose(ours[row], ref, atol=ATOL, rtol=0)


def test_present_has_the_original_layout(tiny_model):
    hparams, params = tiny_model
    out = model.model(params, tokens(0, 5, batch=3), hparams=hparams)
    assert out["present"].shape == (3, 2, 2, 4, 5, 8)
    assert model.past_shape(hparams=hparams, batch_size=3, sequence=5) == [3, 2, 2, 4, 5, 8]


@pytest.mark.parametrize("chunks", [[1] * 12, [3, 4, 5], [7, 1, 4]])
def test_incremental_decoding_with_past_equals_full_pass(tiny_model, chunks):
    hparams, params = tiny_model
    X = tokens(11, sum(chunks), batch=2)
    full = model.model(params, X, hparams=hparams)["logits"].numpy()
    past, start, pieces = None, 0, []
    for size in chunks:
        out = model.model(params, X[:, start:start + size], hparams=hparams, past=past)
        present = out["present"]
        past = present if past is None else tf.concat([past, present], axis=-2)
        pieces.append(out["logits"].numpy())
        start += size
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), full, atol=ATOL, rtol=0)


@pytest.mark.parametrize("chunks", [[1] * 10, [4, 3, 3], [TINY["n_ctx"]]])
def test_cache_decoding_in_place_equals_full_pass(tiny_model, chunks):
    hparams, params = tiny_model
    X = tokens(5, sum(chunks), batch=2)
    full = model.model(params, X, hparams=hparams)["logits"].numpy()
    cache = model.empty_cache(hparams=hparams, batch_size=2, length=sum(chunks))
    start, pieces = 0, []
    for size in chunks:
        out = model.model(params, X[:, start:start + size], hparams=hparams, past=cache,
                          pos=tf.constant(start))
        # Updated in place, not copied: the same variables come back.
        assert all(a is b for a, b in zip(out["present"], cache))
        pieces.append(out["logits"].numpy())
        start += size
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), full, atol=ATOL, rtol=0)


def test_last_logits_only_equals_the_last_row_of_all_logits(tiny_model):
    hparams, params = tiny_model
    X = tokens(4, 9, batch=2)
    full = model.model(params, X, hparams=hparams)["logits"].numpy()
    last = model.model(params, X, hparams=hparams, last_logits_only=True)["logits"].numpy()
    assert last.shape == (2, 1, TINY["n_vocab"])
    np.testing.assert_allclose(last[:, 0], full[:, -1], atol=ATOL, rtol=0)


def test_resized_cache_serves_a_new_batch_and_length(tiny_model):
    hparams, params = tiny_model
    cache = model.empty_cache(hparams=hparams, batch_size=1, length=1)
    X = tokens(9, 5, batch=3)
    model.resize_cache(cache, hparams=hparams, batch_size=3, length=5)
    out = model.model(params, X, hparams=hparams, past=cache, pos=0)
    full = model.model(params, X, hparams=hparams)["logits"].numpy()
    np.testing.assert_allclose(out["logits"].numpy(), full, atol=ATOL, rtol=0)
    assert cache[0].numpy().shape == (2 * 3 * 4, 5, 8)


def test_hparams_from_json_reads_a_released_file(tmp_path):
    path = tmp_path / "hparams.json"
    path.write_text(json.dumps(dict(n_vocab=50257, n_ctx=1024, n_embd=1024, n_head=16,
                                    n_layer=24)))
    h = model.HParams.from_json(path)
    assert (h.n_embd, h.n_head, h.n_layer, h.head_dim) == (1024, 16, 24, 64)
    with pytest.raises(dataclasses_error()):
        h.n_layer = 3


def dataclasses_error():
    import dataclasses
    return dataclasses.FrozenInstanceError


@pytest.mark.parametrize("values, message", [
    (dict(TINY, n_embd=30), "n_embd=30 is not divisible by n_head=4"),
    (dict(TINY, n_layer=0), "n_layer=0 is out of range"),
    (dict(TINY, n_ctx=10 ** 9), "n_ctx=1000000000 is out of range"),
    (dict(TINY, n_head="4"), "n_head must be an integer, got '4'"),
    (dict(TINY, n_head=True), "n_head must be an integer"),
    (dict(TINY, n_head=4.0), "n_head must be an integer"),
    (dict(TINY, dropout=0.1), "unknown key(s) dropout"),
])
def test_hparams_rejects_invalid_values(tmp_path, values, message):
    path = tmp_path / "hparams.json"
    path.write_text(json.dumps(values))
    with pytest.raises(ValueError) as e:
        model.HParams.from_json(path)
    assert message in str(e.value)
    assert str(path) in str(e.value)


@pytest.mark.parametrize("text, problem", [
    ("[" * 5000 + "]" * 5000, "nests arrays or objects too deeply to be read"),
    ('{"n_vocab": 1' + "0" * 5000 + "}", "holds a number too long to read"),
    ('{"n_vocab": 5', "is not valid JSON (Expecting ',' delimiter, line 1 column 14)"),
    (b"\xff\xfe{}", "is not UTF-8 text (invalid start byte at byte 0)"),
])
def test_every_kind_of_json_error_names_the_file(tmp_path, text, problem):
    """A RecursionError or Python's integer-digits ValueError would name no file."""
    path = tmp_path / "124M" / "hparams.json"
    path.parent.mkdir()
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    with pytest.raises(ValueError) as e:
        model.HParams.from_json(path)
    assert str(e.value).startswith(f"{path} {problem}")
    assert "download_model.py 124M" in str(e.value)


def test_a_huge_number_within_the_digit_limit_is_shown_short(tmp_path):
    path = tmp_path / "hparams.json"
    path.write_text(json.dumps(dict(TINY, n_ctx=int("9" * 4000))))
    with pytest.raises(ValueError) as e:
        model.HParams.from_json(path)
    assert str(e.value).startswith(f"{path}: n_ctx=99999999999999999999...(4000 characters) "
                                   f"is out of range")
    assert len(str(e.value)) < 200 + len(str(path))


def test_a_file_far_larger_than_any_hparams_json_is_not_read_whole(tmp_path):
    path = tmp_path / "hparams.json"
    path.write_text('{"n_vocab": 50257' + " " * (1 << 20) + "}")
    with pytest.raises(ValueError, match="is larger than 65,536 bytes"):
        model.HParams.from_json(path)
