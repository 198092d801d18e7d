"""The sampler: logit filters, picking, the compiled loop and streaming, with a fake step
function (no weights) and, for greedy decoding, the tiny model against the reference."""
import numpy as np
import pytest
import tensorflow as tf

import reference_gpt2
import sample
from conftest import TINY
from model import HParams

V = 10
FAKE = HParams(n_vocab=V, n_ctx=64, n_embd=2, n_head=1, n_layer=1)
FAKE_PARAMS = {"wte": tf.zeros([V, 2])}


def prefers_next(params, hparams, tokens, cache, pos):
    """A step that always prefers last + 1 (mod V), strongly but not absolutely."""
    return 5.0 * tf.one_hot((tokens[:, -1] + 1) % V, V), cache


def fake_sampler(**options):
    return sample.Sampler(FAKE_PARAMS, FAKE, step_fn=prefers_next, **options)


def rows(batch, seed=0):
    return tf.constant(np.random.default_rng(seed).normal(0, 2, (batch, 50)), tf.float32)


@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("k", [1, 3, 50])
def test_top_k_keeps_exactly_the_k_largest_per_row(batch, k):
    logits = rows(batch, seed=k)
    kept = np.isfinite(sample.top_k_logits(logits, k).numpy())
    for row, mask in zip(logits.numpy(), kept):
        assert mask.sum() == k
        assert set(np.flatnonzero(mask)) == set(np.argsort(-row)[:k])


def test_top_k_zero_and_top_p_one_are_no_ops():
    logits = rows(3)
    assert sample.top_k_logits(logits, 0) is logits
    assert sample.top_p_logits(logits, 1.0) is logits


def smallest_set_reaching(row, p):
    """Brute force: grow the set in order of probability until its mass reaches p."""
    probs = np.exp(row - row.max())
    probs /= probs.sum()
    chosen, mass = set(), 0.0
    for token in np.argsort(-probs):
        chosen.add(int(token))
        mass += probs[token]
        if mass >= p:
            return chosen
    return chosen


@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("p", [0.05, 0.5, 0.9, 0.999])
def test_top_p_keeps_the_smallest_set_reaching_p_in_every_row(batch, p):
    logits = rows(batch, seed=int(p * 1000))
    kept = np.isfinite(sample.top_p_logits(logits, p).numpy())
    for row, mask in zip(logits.numpy(), kept):
        assert set(np.flatnonzero(mask)) == smallest_set_reaching(row, p)


def test_greedy_equals_top_k_1_equals_argmax():
    logits = rows(6)
    seed = sample.new_seed(1)
    greedy = sample.pick(logits, seed, temperature=0.0, top_k=0, top_p=1.0).numpy()
    top1 = sample.pick(logits, seed, temperature=1.0, top_k=1, top_p=1.0).numpy()
    np.testing.assert_array_equal(greedy, np.argmax(logits.numpy(), -1))
    np.testing.assert_array_equal(top1, greedy)


# Critical values of the chi-square distribution at significance 0.001 (standard tables).
CHI2_001 = {2: 13.816, 3: 16.266, 4: 18.467}


@pytest.mark.parametrize("options, support", [
    (dict(temperature=1.0, top_k=4, top_p=1.0), 4),
    (dict(temperature=0.7, top_k=0, top_p=0.8), None),
    (dict(temperature=1.3, top_k=5, top_p=0.9), None),
])
def test_draws_follow_the_filtered_distribution(options, support):
    base = np.array([2.0, 1.5, 1.0, 0.5, 0.0, -0.5, -1.0, -2.0], np.float32)
    n = 40000
    logits = tf.constant(np.tile(base, (n, 1)))
    draws = sample.pick(logits, sample.new_seed(7), **options).numpy()
    # The expected distribution, computed independently in NumPy.
    scaled = base / options["temperature"]
    probs = np.exp(scaled - scaled.max())
    probs /= probs.sum()
    order = np.argsort(-probs)
    keep = order[:options["top_k"]] if options["top_k"] else order
    # As in the original, top-p applies to the distribution top-k left (renormalised).
    within = probs[keep] / probs[keep].sum()
    keep = keep[np.cumsum(within) - within < options["top_p"]]
    expected = np.zeros_like(probs)
    expected[keep] = probs[keep] / probs[keep].sum()
    if support:
        assert len(keep) == support
    counts = np.bincount(draws, minlength=len(base))
    assert counts[expected == 0].sum() == 0  # filtered tokens are never drawn
    observed, wanted = counts[keep], n * expected[keep]
    chi2 = ((observed - wanted) ** 2 / wanted).sum()
    assert chi2 < CHI2_001[len(keep) - 1], (counts, wanted)


def test_fake_step_greedy_loop_counts_up():
    out = sample.sample_sequence(params=FAKE_PARAMS, hparams=FAKE, length=12,
                                 context=[[3], [8]], temperature=0, sampler=fake_sampler(
                                     temperature=0))
    np.testing.assert_array_equal(out[0], [(3 + i) % V for i in range(13)])
    np.testing.assert_array_equal(out[1], [(8 + i) % V for i in range(13)])


def test_stop_token_ends_once_every_row_has_produced_it():
    sampler = fake_sampler(temperature=0)
    out = sample.sample_sequence(params=FAKE_PARAMS, hparams=FAKE, length=20,
                                 context=[[1], [5]], stop_token=7, sampler=sampler)
    # Row 0 reaches 7 after 6 tokens, row 1 after 2: the loop runs until both have.
    assert out.shape == (2, 1 + 6)
    assert out[0, -1] == 7 and 7 in out[1]


def test_same_seed_reproduces_and_another_seed_differs():
    sampler = fake_sampler(temperature=3.0)

    def run(seed):
        return sample.sample_sequence(params=FAKE_PARAMS, hparams=FAKE, length=40,
                                      context=[[0]] * 4, seed=seed, sampler=sampler)
    first, again, other = run(123), run(123), run(124)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_streaming_yields_the_same_draws_as_the_loop():
    sampler = fake_sampler(temperature=2.0, top_k=3)
    context = np.array([[2, 3], [4, 4], [9, 1]], np.int32)
    whole = sample.sample_sequence(params=FAKE_PARAMS, hparams=FAKE, length=15,
                                   context=context, seed=5, sampler=sampler)
    streamed = list(sample.stream_sequence(sampler, context, length=15, seed=5))
    assert len(streamed) == 15
    np.testing.assert_array_equal(np.stack(streamed, axis=1), whole[:, 2:])


def test_one_trace_serves_every_prompt_length_length_and_batch():
    sampler = fake_sampler(temperature=1.0)
    for batch, n, length in [(1, 1, 5), (2, 7, 3), (3, 30, 34), (1, 63, 1)]:
        out = sample.sample_sequence(params=FAKE_PARAMS, hparams=FAKE, length=length,
                                     context=np.zeros([batch, n], np.int32), sampler=sampler)
        assert out.shape == (batch, n + length)
    assert sampler.prefill.experimental_get_tracing_count() == 1
    assert sampler.next.experimental_get_tracing_count() == 1


def test_prompt_plus_length_equal_to_n_ctx_fits_and_one_more_does_not():
    sampler = fake_sampler(temperature=0)
    out = sample.sample_sequence(params=FAKE_PARAMS, hparams=FAKE, length=60,
                                 context=[[1, 2, 3, 4]], sampler=sampler)
    assert out.shape == (1, 64)
    with pytest.raises(ValueError) as e:
        sample.sample_sequence(params=FAKE_PARAMS, hparams=FAKE, length=61,
                               context=[[1, 2, 3, 4]], sampler=sampler)
    assert str(e.value) == ("prompt of 4 tokens + length 61 = 65 exceeds the model's context "
                            "of 64 tokens: use --length 60 or less")


@pytest.mark.parametrize("options, message", [
    (dict(temperature=-0.1), "temperature must be >= 0 (0 is greedy), got -0.1"),
    (dict(top_k=-1), "top_k must be a whole number >= 0 (0 disables it), got -1"),
    (dict(top_k=2.5), "top_k must be a whole number >= 0"),
    (dict(top_p=0), "top_p must be in (0, 1] (1 disables it), got 0.0"),
    (dict(top_p=1.5), "top_p must be in (0, 1]"),
])
def test_strategy_rejects_bad_options_with_the_remedy(options, message):
    with pytest.raises(ValueError) as e:
        sample.strategy(hparams=FAKE, **options)
    assert message in str(e.value)


@pytest.mark.parametrize("temperature", [float("inf"), float("nan")])
def test_strategy_rejects_temperatures_that_are_not_finite(temperature):
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        sample.strategy(hparams=FAKE, temperature=temperature)


def test_a_vanishing_temperature_is_greedy_not_a_crash():
    assert sample.strategy(hparams=FAKE, temperature=1e-50)["temperature"] == 0.0
    logits = rows(3) * 100
    draw = sample.pick(logits, sample.new_seed(0), **sample.strategy(
        hparams=FAKE, temperature=1e-50))
    np.testing.assert_array_equal(draw.numpy(), np.argmax(logits.numpy(), -1))


def test_strategy_clamps_top_k_to_the_vocabulary_and_casts_types():
    assert sample.strategy(hparams=FAKE, temperature=1, top_k=10 ** 6, top_p=1) == dict(
        temperature=1.0, top_k=V, top_p=1.0)


def test_length_below_one_is_rejected():
    with pytest.raises(ValueError, match="length must be at least 1, got 0"):
        sample.sample_sequence(params=FAKE_PARAMS, hparams=FAKE, length=0, context=[[1]],
                               sampler=fake_sampler())


def test_greedy_on_the_tiny_model_matches_the_reference(tiny_model, tiny_weights):
    hparams, params = tiny_model
    context = [5, 17, 3]
    out = sample.sample_sequence(params=params, hparams=hparams, length=20, context=context,
                                 temperature=1, top_k=1)
    assert out[0, 3:].tolist() == reference_gpt2.greedy(tiny_weights, context,
                                                         TINY["n_head"], 20)


# --- inputs checked at the boundary (issue 13) ----------------------------------------------
def fake_sample(**kwargs):
    options = dict(params=FAKE_PARAMS, hparams=FAKE, length=3, context=[[1]],
                   sampler=fake_sampler(temperature=0))
    return sample.sample_sequence(**{**options, **kwargs})


@pytest.mark.parametrize("context, message", [
    ([[1, V]], f"context holds token id {V}, outside the vocabulary: ids are 0..{V - 1}"),
    ([3, -1], "context holds token id -1, outside the vocabulary"),
    ([2 ** 32 + 1], "context holds token id 4294967297, outside"),  # no wrap to 1 in int32
    ([1.5, 2], "context must hold integer token ids, got 1.5"),
    ([2.0], "context must hold integer token ids, got 2.0"),
    ([True], "context must hold integer token ids, got True"),
    ([[1, 2], [3]], "context must be a list of token ids or equal-length rows of them"),
])
def test_context_ids_are_checked_before_the_model_runs(context, message):
    with pytest.raises(ValueError) as e:
        fake_sample(context=context)
    assert str(e.value).startswith(message)
    with pytest.raises(ValueError) as e:
        sample.stream_sequence(fake_sampler(), context, length=2)  # at the call, not later
    assert str(e.value).startswith(message)


def test_an_id_past_the_vocabulary_never_reaches_tensorflow(tiny_model):
    """On CPU the embedding gather fails ("Graph execution error"); on a GPU it reads zeros."""
    hparams, params = tiny_model
    with pytest.raises(ValueError, match=f"token id {hparams.n_vocab}, outside the vocabulary"):
        sample.sample_sequence(params=params, hparams=hparams, length=2,
                               context=[1, hparams.n_vocab], top_k=1)
    with pytest.raises(ValueError, match="start_token holds token id -5"):
        sample.sample_sequence(params=params, hparams=hparams, length=2, start_token=-5,
                               batch_size=1)


@pytest.mark.parametrize("options, message", [
    (dict(length=1.9), "length must be a whole number, got 1.9"),
    (dict(length=2.0), "length must be a whole number, got 2.0"),
    (dict(length=True), "length must be a whole number, got True"),
    (dict(seed=1.5), "seed must be a whole number, got 1.5"),
    (dict(seed="7"), "seed must be a whole number, got '7'"),
    (dict(batch_size=1.0), "batch_size must be a whole number, got 1.0"),
    (dict(batch_size=0), "batch_size must be at least 1, got 0"),
    (dict(stop_token=2.5), "stop_token must be a whole number, got 2.5"),
    (dict(stop_token=V), f"stop_token holds token id {V}, outside the vocabulary"),
    (dict(start_token=1.0, context=None), "start_token must be a whole number, got 1.0"),
])
def test_lengths_seeds_and_tokens_must_be_whole_numbers(options, message):
    with pytest.raises(ValueError) as e:
        fake_sample(**options)
    assert str(e.value).startswith(message)


def test_numpy_integers_are_whole_numbers():
    expected = fake_sample(length=4, seed=3, sampler=fake_sampler(temperature=2.0))
    same = fake_sample(length=np.int64(4), seed=np.int32(3), context=np.array([[1]], np.int64),
                       sampler=fake_sampler(temperature=2.0))
    np.testing.assert_array_equal(expected, same)


def test_streamed_tokens_decode_with_the_incremental_decoder():
    """stream_sequence yields arrays [1]; the decoder takes them as they are."""
    import encoder
    from encoder_helpers import DATA_DIR
    import os
    enc = encoder.get_encoder(os.path.basename(DATA_DIR), os.path.dirname(DATA_DIR))
    decoder = enc.incremental_decoder()
    tokens = list(sample.stream_sequence(fake_sampler(temperature=0), [[4]], length=5))
    assert all(isinstance(t, np.ndarray) and t.shape == (1,) for t in tokens)
    text = "".join(decoder.decode(t) for t in tokens) + decoder.flush()
    assert text == enc.decode([5, 6, 7, 8, 9])


@pytest.mark.parametrize("batch_size", [10 ** 12, 10 ** 30])
def test_a_huge_batch_size_is_refused_before_any_array_is_made(batch_size):
    with pytest.raises(ValueError) as e:
        fake_sample(batch_size=batch_size)
    assert str(e.value).startswith(f"batch_size {batch_size} cannot fit")
    fits = sample.max_batch_size(hparams=FAKE, positions=4)
    assert str(e.value).endswith(f"use --batch_size {fits} or less")


def test_max_batch_size_is_the_largest_batch_whose_cache_and_weights_fit(tiny_model):
    """Against the bytes that the model's own cache variables and weights take."""
    hparams, params = tiny_model
    weights = sum(v.numpy().nbytes for v in checkpoint_flat(params, hparams))

    def needed(batch, positions):
        import model
        cache = model.empty_cache(hparams=hparams, batch_size=batch, length=positions)
        return weights + sum(c.numpy().nbytes for c in cache)

    for memory, positions in [(10 ** 6, 32), (3 * 10 ** 6, 7), (10 ** 8, 1)]:
        k = sample.max_batch_size(hparams=hparams, positions=positions, memory_bytes=memory)
        assert needed(k, positions) <= memory < needed(k + 1, positions)
        sample.check_batch_size(k, hparams=hparams, positions=positions, memory_bytes=memory)
        with pytest.raises(ValueError, match=f"use --batch_size {k} or less"):
            sample.check_batch_size(k + 1, hparams=hparams, positions=positions,
                                    memory_bytes=memory)
    sample.check_batch_size(1, hparams=hparams, positions=32, memory_bytes=1)  # never refused


def checkpoint_flat(params, hparams):
    import checkpoint
    return checkpoint.flat_from_tree(params, hparams).values()


@pytest.mark.parametrize("options, message", [
    (dict(temperature="hot"), "temperature must be a number, got 'hot'"),
    (dict(top_p=None), "top_p must be a number, got None"),
    (dict(top_k="40"), "top_k must be a whole number >= 0 (0 disables it), got '40'"),
])
def test_strategy_names_values_of_the_wrong_type(options, message):
    with pytest.raises(ValueError) as e:
        sample.strategy(hparams=FAKE, **options)
    assert str(e.value) == message


# --- one sampler per strategy (issue 13) -----------------------------------------------------
def test_repeated_calls_without_a_sampler_trace_once(monkeypatch):
    """Counts the traces of a fake step inside every Sampler that sample_sequence makes."""
    traced = []

    def counting_step(params, hparams, tokens, cache, pos):
        traced.append(tokens.shape)  # Python runs here only while tracing
        return prefers_next(params, hparams, tokens, cache, pos)

    class CountingSampler(sample.Sampler):
        def __init__(self, params, hparams, **options):
            super().__init__(params, hparams, step_fn=counting_step, **options)

    monkeypatch.setattr(sample, "Sampler", CountingSampler)
    params = {"wte": tf.zeros([V, 2])}
    runs = [sample.sample_sequence(params=params, hparams=FAKE, length=length, context=context,
                                   temperature=0)
            for length, context in [(3, [[1]]), (5, [[2, 3]]), (2, [[4], [5]])]]
    assert len(traced) == 2  # one prefill, one step, for all three calls
    np.testing.assert_array_equal(runs[1], [[2, 3, 4, 5, 6, 7, 8]])
    sample.sample_sequence(params=params, hparams=FAKE, length=2, context=[[1]], top_k=3)
    assert len(traced) == 4  # another strategy is another sampler
    sample.sample_sequence(params=params, hparams=FAKE, length=2, context=[[1]],
                           temperature=0.0)
    assert len(traced) == 4
    other = {"wte": tf.zeros([V, 2])}  # another model: its own sampler, the old one dropped
    sample.sample_sequence(params=other, hparams=FAKE, length=2, context=[[1]], temperature=0)
    assert len(traced) == 6
    # Between calls the kept sampler holds a cache of one position, not the last batch's.
    assert sample.sampler_for(other, FAKE, temperature=0).cache[0].numpy().shape == (2, 1, 2)
    sample.clear_samplers()
