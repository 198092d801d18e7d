"""The scoring core against an independent NumPy GPT-2 and Hugging Face transformers, and the
two window rules against hand-worked examples of their definitions."""
import numpy as np
import pytest
import tensorflow as tf

import model
import reference_gpt2
import score
from conftest import TINY
from score import Window

ATOL = 1e-4
N_CTX = TINY["n_ctx"]
P = 96  # the prefix token used in these tests (any id of the tiny vocabulary)


def log_softmax(logits):
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def reference_window(weights, tokens, n_scored):
    """(log-probs, argmax matches) of the last n_scored tokens, by the NumPy GPT-2."""
    tokens = list(tokens)
    lp = log_softmax(reference_gpt2.logits(weights, tokens[:-1], TINY["n_head"]))
    rows = range(len(tokens) - 1 - n_scored, len(tokens) - 1)
    return (np.array([lp[i, tokens[i + 1]] for i in rows]),
            np.array([lp[i].argmax() == tokens[i + 1] for i in rows]))


def numpy_forward(weights):
    """Input tokens -> [len, n_vocab] log-softmax, by the NumPy GPT-2."""
    return lambda inputs: log_softmax(reference_gpt2.logits(weights, inputs, TINY["n_head"]))


def hf_forward(hf):
    """Input tokens -> [len, n_vocab] log-softmax, by Hugging Face transformers."""
    import torch

    def forward(inputs):
        with torch.inference_mode():
            logits = hf(torch.tensor([list(inputs)])).logits[0].double()
        return torch.log_softmax(logits, -1).numpy()
    return forward


def reference_disjoint(forward, seq):
    """Per-token log-probs of seq under the disjoint rule, worked out here on its own:
    tokens are predicted in chunks of n_ctx; a chunk's model input is the n_ctx tokens
    before the chunk's last token (the prefix and the first n_ctx - 1 for the first)."""
    out = []
    for start in range(0, len(seq), N_CTX):
        end = min(start + N_CTX, len(seq))
        inputs = [P] + seq[:end - 1] if start == 0 else seq[end - 1 - N_CTX:end - 1]
        assert len(inputs) <= N_CTX
        lp = forward(inputs)
        out += [lp[len(inputs) - (end - i), seq[i]] for i in range(start, end)]
    return np.array(out)


def reference_stride(forward, seq, stride):
    """Per-token log-probs of seq under the stride rule, worked out here on its own: over
    full = [P] + seq, window k reads full[k * stride:k * stride + n_ctx]; token full[i] is
    predicted by the first window that reaches it, i.e. given full[begin:i] where begin is
    the smallest multiple of the stride with begin + n_ctx >= i."""
    full, out, cache = [P] + seq, [], {}
    for i in range(1, len(full)):
        begin = max(0, -(-(i - N_CTX) // stride)) * stride
        if begin not in cache:
            cache[begin] = forward(full[begin:begin + N_CTX])
        out.append(cache[begin][i - 1 - begin, full[i]])
    return np.array(out)


def reference(forward, seq, stride):
    return (reference_disjoint(forward, seq) if stride is None else
            reference_stride(forward, seq, stride))


def sequence(seed, n):
    return np.random.default_rng(seed).integers(0, TINY["n_vocab"], n).tolist()


@pytest.fixture(scope="module")
def scorer(tiny_model):
    hparams, params = tiny_model
    return score.Scorer(params, hparams)


@pytest.fixture(scope="module")
def hf_model(tiny_weights):
    """GPT2LMHeadModel holding the tiny checkpoint's weights."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel
    config = GPT2Config(vocab_size=TINY["n_vocab"], n_positions=N_CTX, n_embd=TINY["n_embd"],
                        n_layer=TINY["n_layer"], n_head=TINY["n_head"],
                        bos_token_id=None, eos_token_id=None,
                        attn_implementation="eager")
    hf = GPT2LMHeadModel(config).eval()
    state = {}
    for name, value in tiny_weights.items():
        parts = name.split("/")[1:]  # model/h3/attn/c_attn/w -> h.3.attn.c_attn.weight
        if parts[0][0] == "h" and parts[0][1:].isdigit():
            parts[:1] = ["h", parts[0][1:]]
        leaf = parts.pop()
        parts += [leaf, "weight"] if leaf in ("wte", "wpe") else \
            ["bias" if leaf == "b" else "weight"]
        value = value[0] if value.ndim == 3 else value  # conv1d [1, nx, nf] -> [nx, nf]
        state["transformer." + ".".join(parts)] = torch.from_numpy(value.copy())
    missing, unexpected = hf.load_state_dict(state, strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}, (missing, unexpected)
    hf.tie_weights()
    return hf


def test_disjoint_windows_follow_the_harness_rule():
    # n_ctx 4, ten tokens: [P 0 1 2] predicts 0..3; then the 4 tokens before 7 predict 4..7
    # (4 sees one token of context); then the 4 tokens before 9 predict 8 and 9.
    windows = score.rolling_windows(list(range(10)), n_ctx=4, prefix_token=P)
    assert windows == [Window((P, 0, 1, 2, 3), 4), Window((3, 4, 5, 6, 7), 4),
                       Window((5, 6, 7, 8, 9), 2)]
    assert score.rolling_windows([5, 6], n_ctx=4, prefix_token=P) == [Window((P, 5, 6), 2)]
    assert score.rolling_windows([], n_ctx=4, prefix_token=P) == []


def test_stride_windows_follow_the_fixed_length_rule():
    # Over [P 0 .. 9], windows of 4 inputs start every 2 positions and score what is new.
    windows = score.rolling_windows(list(range(10)), n_ctx=4, prefix_token=P, stride=2)
    assert windows == [Window((P, 0, 1, 2, 3), 4), Window((1, 2, 3, 4, 5), 2),
                       Window((3, 4, 5, 6, 7), 2), Window((5, 6, 7, 8, 9), 2)]
    # A stride of n_ctx: consecutive windows of the prefixed sequence.
    assert score.rolling_windows(list(range(6)), n_ctx=4, prefix_token=P, stride=4) == [
        Window((P, 0, 1, 2, 3), 4), Window((3, 4, 5), 2)]
    with pytest.raises(ValueError, match="stride must be between 1 and n_ctx=4"):
        score.rolling_windows([1, 2], n_ctx=4, prefix_token=P, stride=5)


@pytest.mark.parametrize("stride", [None, 1, 3, N_CTX // 2, N_CTX])
@pytest.mark.parametrize("n", [1, N_CTX - 1, N_CTX, N_CTX + 1, 3 * N_CTX + 5])
def test_every_token_is_scored_once_with_its_preceding_tokens(stride, n):
    seq = [1000 + i for i in range(n)]  # distinct values, so positions can be recovered
    covered = []
    for w in score.rolling_windows(seq, n_ctx=N_CTX, prefix_token=P, stride=stride):
        assert len(w.tokens) - 1 <= N_CTX
        full = [P] + seq
        begin = full.index(w.tokens[0]) if w.tokens[0] != P else 0
        assert list(w.tokens) == full[begin:begin + len(w.tokens)]  # contiguous
        covered += list(w.tokens[-w.n_scored:])
    assert covered == seq


def test_pair_window_keeps_the_last_tokens():
    assert score.pair_window([1, 2, 3], [4, 5], n_ctx=4) == Window((1, 2, 3, 4, 5), 2)
    assert score.pair_window(list(range(10)), [20, 21], n_ctx=4) == Window((7, 8, 9, 20, 21), 2)
    with pytest.raises(ValueError, match="more than the model's context of 4"):
        score.pair_window([1], list(range(5)), n_ctx=4)


@pytest.mark.parametrize("stride", [None, N_CTX // 2 - 3])
@pytest.mark.parametrize("n", [5, N_CTX, int(3.5 * N_CTX)])
@pytest.mark.parametrize("batch_size", [1, 3])
def test_token_logprobs_equal_the_numpy_reference_and_hf(scorer, tiny_weights, hf_model, n,
                                                         batch_size, stride):
    """Shorter than, equal to and 3.5x the context; one window per batch and several; both
    window rules, each worked out in the test and run on both independent models."""
    sequences = [sequence(n + k, n - k) for k in range(3)]  # three lengths up to n
    assert max(map(len, sequences)) == n
    ours = score.token_logprobs(scorer, sequences, prefix_token=P, stride=stride,
                                batch_size=batch_size)
    for seq, got in zip(sequences, ours):
        assert got.shape == (len(seq),)
        np.testing.assert_allclose(got, reference(numpy_forward(tiny_weights), seq, stride),
                                   atol=ATOL, rtol=0)
        np.testing.assert_allclose(got, reference(hf_forward(hf_model), seq, stride),
                                   atol=ATOL, rtol=0)
    assert min(np.ptp(g) for g in ours) > 0.5  # weights large enough to show a wrong row


def test_the_two_rules_differ_past_the_first_window(scorer, tiny_weights):
    seq = sequence(7, 2 * N_CTX + 3)
    disjoint, stride = (score.token_logprobs(scorer, [seq], prefix_token=P, stride=s)[0]
                        for s in (None, 5))
    np.testing.assert_allclose(disjoint[:N_CTX], stride[:N_CTX], atol=1e-6)  # one window
    assert np.abs(disjoint - stride)[N_CTX:].max() > 1e-3  # more context changes them


def test_greedy_flags_and_mixed_lengths_in_one_batch(scorer, tiny_model, tiny_weights):
    hparams, params = tiny_model
    windows = [Window(tuple(sequence(k, length)), scored)
               for k, (length, scored) in enumerate([(N_CTX + 1, 5), (2, 1), (9, 8), (17, 3)])]
    # Make one scored token the argmax, so both flag values occur.
    lp = log_softmax(reference_gpt2.logits(tiny_weights, windows[1].tokens[:1], TINY["n_head"]))
    windows[1] = Window((windows[1].tokens[0], int(lp[0].argmax())), 1)
    for batch_size in (1, 4):
        got = scorer.score(windows, batch_size=batch_size)
        for w, s in zip(windows, got):
            logprobs, greedy = reference_window(tiny_weights, w.tokens, w.n_scored)
            np.testing.assert_allclose(s.logprobs, logprobs, atol=ATOL, rtol=0)
            np.testing.assert_array_equal(s.greedy, greedy)
    assert got[1].greedy.tolist() == [True]
    assert not all(all(s.greedy) for s in got)


def test_chunks_of_the_head_change_nothing(tiny_model, scorer):
    hparams, params = tiny_model
    windows = [Window(tuple(sequence(k, 20)), 19 - k) for k in range(3)]
    small = score.Scorer(params, hparams, chunk=7)  # 54 positions in 8 chunks, padded
    for a, b in zip(small.score(windows, batch_size=3), scorer.score(windows, batch_size=3)):
        np.testing.assert_allclose(a.logprobs, b.logprobs, atol=1e-6, rtol=0)
        np.testing.assert_array_equal(a.greedy, b.greedy)


@pytest.mark.parametrize("block", [1, 5, 8, N_CTX - 1])
def test_attention_in_blocks_of_queries_equals_the_reference(tiny_model, tiny_weights, block):
    """Blocks that divide the window, that do not (the last padded), of one query."""
    hparams, params = tiny_model
    blocked = score.Scorer(params, hparams, attention_block=block)
    windows = [Window(tuple(sequence(k, n)), n - 1) for k, n in enumerate([N_CTX + 1, 17, 2])]
    for w, s in zip(windows, blocked.score(windows, batch_size=3)):
        logprobs, greedy = reference_window(tiny_weights, w.tokens, w.n_scored)
        np.testing.assert_allclose(s.logprobs, logprobs, atol=ATOL, rtol=0)
        np.testing.assert_array_equal(s.greedy, greedy)


def test_causal_attention_equals_the_models(tiny_model):
    rng = np.random.default_rng(0)
    q, k, v = (tf.constant(rng.standard_normal([2, 3, 37, 8]), tf.float32) for _ in range(3))
    expected = model.multihead_attn(q, k, v, mask=model.attention_mask(37, 37,
                                                                       dtype=tf.float32))
    for block in (4, 37, 128):
        np.testing.assert_allclose(score.causal_attention(q, k, v, block=block), expected,
                                   atol=1e-6, rtol=0)


def test_one_trace_serves_every_batch_shape(scorer):
    before = scorer._score_batch.experimental_get_tracing_count()
    for batch_size, n in [(1, 3), (2, 11), (3, N_CTX)]:
        scorer.score([Window(tuple(sequence(i, n)), 1) for i in range(batch_size)],
                     batch_size=batch_size)
    assert scorer._score_batch.experimental_get_tracing_count() - before <= 1


def test_bfloat16_weights_score_close_to_float32(tiny_dir, tiny_weights):
    import checkpoint
    hparams, params = checkpoint.load(tiny_dir, dtype=tf.bfloat16)
    seq = sequence(3, 12)
    got = score.token_logprobs(score.Scorer(params, hparams), [seq], prefix_token=P)[0]
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, reference_disjoint(numpy_forward(tiny_weights), seq),
                               atol=0.25)


def test_windows_that_do_not_fit_are_refused(scorer):
    with pytest.raises(ValueError, match="does not fit the model's context of 32"):
        scorer.score([Window(tuple(range(N_CTX + 2)), 1)])
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        scorer.score([Window((1, 2), 1)], batch_size=0)
