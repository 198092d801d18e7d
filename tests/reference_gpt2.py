"""An independent NumPy GPT-2 (float64) that tests compare the TensorFlow model against.

It shares no code with src/: it reads the flat checkpoint dict ("model/h0/attn/c_attn/w")
directly and computes the whole sequence at once, with no cache.
"""
import numpy as np


def _layer_norm(x, g, b):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-5) * g + b


def _gelu(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def logits(weights: dict, tokens, n_head: int) -> np.ndarray:
    """[len(tokens), n_vocab] logits for one sequence."""
    w = {k: np.asarray(v, np.float64) for k, v in weights.items()}
    tokens = np.asarray(tokens)
    n = len(tokens)
    x = w["model/wte"][tokens] + w["model/wpe"][np.arange(n)]
    layer = 0
    while f"model/h{layer}/ln_1/g" in w:
        p = lambda name: w[f"model/h{layer}/{name}"]  # noqa: E731
        a = _layer_norm(x, p("ln_1/g"), p("ln_1/b"))
        qkv = a @ p("attn/c_attn/w")[0] + p("attn/c_attn/b")
        heads = [np.split(t, n_head, axis=-1) for t in np.split(qkv, 3, axis=-1)]
        causal = np.tril(np.ones((n, n), bool))
        outs = []
        for q, k, v in zip(*heads):
            scores = q @ k.T / np.sqrt(q.shape[-1])
            outs.append(_softmax(np.where(causal, scores, -np.inf)) @ v)
        x = x + np.concatenate(outs, -1) @ p("attn/c_proj/w")[0] + p("attn/c_proj/b")
        m = _layer_norm(x, p("ln_2/g"), p("ln_2/b"))
        hidden = _gelu(m @ p("mlp/c_fc/w")[0] + p("mlp/c_fc/b"))
        x = x + hidden @ p("mlp/c_proj/w")[0] + p("mlp/c_proj/b")
        layer += 1
    x = _layer_norm(x, w["model/ln_f/g"], w["model/ln_f/b"])
    return x @ w["model/wte"].T


def greedy(weights: dict, tokens, n_head: int, length: int) -> list:
    """Greedy continuation: `length` argmax tokens after `tokens`."""
    tokens = list(tokens)
    for _ in range(length):
        tokens.append(int(np.argmax(logits(weights, tokens, n_head)[-1])))
    return tokens[-length:]
