"""GPT-2's forward pass as pure TensorFlow 2 functions over a params tree.

The tree mirrors the released checkpoint: `model/h3/attn/c_attn/w` is
`params["h"][3]["attn"]["c_attn"]["w"]`, so this file reads beside OpenAI's `src/model.py`
function by function (`norm, conv1d, attn, mlp, block, model`).
"""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

import tensorflow as tf

import model_paths
from limits import shorten

# Sizes past these are not GPT-2 checkpoints but typos or corrupt files; reject them before
# TensorFlow tries to allocate them.
_LIMITS = {"n_vocab": 1_000_000, "n_ctx": 65_536, "n_embd": 65_536, "n_head": 1_024,
           "n_layer": 1_024}


@dataclasses.dataclass(frozen=True)
class HParams:
    """The five numbers in a released `hparams.json`; defaults are the 124M model's."""

    n_vocab: int = 50257  # 256 byte tokens + 50,000 merges + <|endoftext|>
    n_ctx: int = 1024  # positions in `wpe`: prompt + sample must fit
    n_embd: int = 768
    n_head: int = 12  # must divide n_embd
    n_layer: int = 12

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{field.name} must be an integer, got {shorten(value)}")
            if not 0 < value <= _LIMITS[field.name]:
                raise ValueError(f"{field.name}={shorten(value)} is out of range: expected 1.."
                                 f"{_LIMITS[field.name]}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}")

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: str = "hparams") -> "HParams":
        if not isinstance(values, dict):
            raise ValueError(f"{source}: expected a JSON object, got {type(values).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            shown = (k if len(k) <= 40 else k[:40] + "..." for k in unknown)
            raise ValueError(f"{source}: unknown key(s) {', '.join(shown)}; expected "
                             f"{', '.join(sorted(known))}")
        try:
            return cls(**values)
        except ValueError as e:
            raise ValueError(f"{source}: {e}") from None

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> "HParams":
        """Reads `hparams.json`; every problem is a ValueError naming the file."""
        path = os.fspath(path)
        return cls.from_dict(model_paths.read_json(path, limit=1 << 16), source=path)

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


def redownload_hint(path: str) -> str:
    """The remedy for a damaged file inside a model directory."""
    return model_paths.damaged_remedy(path)


def shape_list(x: tf.Tensor) -> list:
    """Static dimensions where known, dynamic ones elsewhere."""
    static = x.shape.as_list()
    dynamic = tf.shape(x)
    return [dynamic[i] if s is None else s for i, s in enumerate(static)]


def gelu(x: tf.Tensor) -> tf.Tensor:
    # The tanh approximation GPT-2 was trained with (not the exact erf form).
    return 0.5 * x * (1.0 + tf.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x * x * x)))


def norm(x: tf.Tensor, *, g: tf.Tensor, b: tf.Tensor, epsilon: float = 1e-5) -> tf.Tensor:
    """Layer norm over the last axis."""
    u = tf.reduce_mean(x, axis=-1, keepdims=True)
    s = tf.reduce_mean(tf.square(x - u), axis=-1, keepdims=True)
    return (x - u) * tf.math.rsqrt(s + epsilon) * g + b


def conv1d(x: tf.Tensor, *, w: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """The checkpoint's 1x1 convolution, i.e. a dense layer; `w` is [1, nx, nf]."""
    *start, nx = shape_list(x)
    nf = w.shape[-1]
    # MatMul + BiasAdd is what TensorFlow's graph optimizer fuses into one kernel.
    y = tf.nn.bias_add(tf.matmul(tf.reshape(x, [-1, nx]), tf.reshape(w, [nx, nf])), b)
    return tf.reshape(y, start + [nf])  # [..., nf]


def split_heads(x: tf.Tensor, n_head: int) -> tf.Tensor:
    *start, n_embd = shape_list(x)
    x = tf.reshape(x, start + [n_head, n_embd // n_head])  # [batch, seq, head, head_dim]
    return tf.transpose(x, [0, 2, 1, 3])  # [batch, head, seq, head_dim]


def merge_heads(x: tf.Tensor) -> tf.Tensor:
    x = tf.transpose(x, [0, 2, 1, 3])  # [batch, seq, head, head_dim]
    *start, n_head, head_dim = shape_list(x)
    return tf.reshape(x, start + [n_head * head_dim])  # [batch, seq, n_embd]


def attention_mask(nd, ns, *, dtype) -> tf.Tensor | None:
    """Additive bias letting query i (the last nd of ns positions) see keys j <= i + ns - nd.

    The original multiplies by a 0/1 mask and subtracts 1e10 where it is 0; adding 0 or
    -1e10 gives the same softmax in one op. A single query sees every key: no mask.
    """
    if isinstance(nd, int) and nd == 1:
        return None
    i = tf.range(nd)[:, None]
    j = tf.range(ns)[None, :]
    return tf.where(i >= j - ns + nd, tf.constant(0, dtype), tf.constant(-1e10, dtype))


def multihead_attn(q, k, v, *, mask) -> tf.Tensor:
    """Attention of q [batch, head, nd, head_dim] over k/v [batch, head, ns, head_dim]."""
    w = tf.matmul(q, k, transpose_b=True)  # [batch, head, nd, ns]
    w = w * tf.math.rsqrt(tf.cast(q.shape[-1], w.dtype))
    if mask is not None:
        w = w + mask  # [batch, head, nd, ns]
    w = tf.nn.softmax(w, axis=-1)
    return tf.matmul(w, v)  # [batch, head, nd, head_dim]


def attn(x, *, c_attn, c_proj, past, hparams: HParams, mask, pos=None, attend=None):
    """Self-attention; returns (output [batch, seq, n_embd], present).

    With `pos=None` this is the original: `past` [batch, 2, head, n_past, head_dim] (or None)
    is prepended and `present` holds only the new keys/values. With `pos` given, `past` is a
    preallocated cache variable (see `empty_cache`): the new keys/values are written in
    place at slots [pos, pos + seq), only the filled slots [0, pos + seq) are attended, and
    `present` is the cache itself. `attend(q, k, v, past=, pos=)` replaces both for a
    runtime that keeps its cache elsewhere (LiteRT): it returns the attention of q
    [batch, head, seq, head_dim] and `present`.
    """
    c = conv1d(x, **c_attn)  # [batch, seq, 3 * n_embd]
    q, k, v = [split_heads(t, hparams.n_head) for t in tf.split(c, 3, axis=2)]
    if attend is not None:
        a, present = attend(q, k, v, past=past, pos=pos)  # [batch, head, seq, head_dim]
    else:
        if pos is None:
            present = tf.stack([k, v], axis=1)  # [batch, 2, head, seq, head_dim]
            if past is not None:
                pk, pv = tf.unstack(past, axis=1)
                k = tf.concat([pk, k], axis=-2)  # [batch, head, n_past + seq, head_dim]
                v = tf.concat([pv, v], axis=-2)
        else:
            k, v = update_cache(past, tf.stack([k, v]), pos)  # [batch, head, pos + seq, hd]
            present = past
        a = multihead_attn(q, k, v, mask=mask)  # [batch, head, seq, head_dim]
    return conv1d(merge_heads(a), **c_proj), present  # [batch, seq, n_embd]


def update_cache(cache: tf.Variable, kv: tf.Tensor, pos):
    """Writes kv [2, batch, head, seq, head_dim] at slots [pos, pos + seq) of the cache
    and returns keys and values [batch, head, pos + seq, head_dim] of the filled slots.

    The cache is [2 * batch * head, T, head_dim], one row per key/value vector sequence,
    touched only by a sparse scatter and a batched gather. A dense slice-assign would put
    the variable in copy-on-read mode, and then every read copies the whole cache.
    """
    two, batch, head, seq, head_dim = shape_list(kv)
    rows = two * batch * head
    end = pos + seq
    slots = tf.stack(tf.meshgrid(tf.range(rows), pos + tf.range(seq), indexing="ij"), -1)
    tf.raw_ops.ResourceScatterNdUpdate(ref=cache.handle, indices=slots,  # [rows, seq, 2]
                                       updates=tf.reshape(kv, [rows, seq, head_dim]))
    filled = tf.tile(tf.range(end)[None], [rows, 1])  # [rows, end]
    kv = tf.raw_ops.ResourceGather(resource=cache.handle, indices=filled, dtype=cache.dtype,
                                   batch_dims=1)  # [rows, end, head_dim]
    k, v = tf.unstack(tf.reshape(kv, [2, batch, head, end, head_dim]))
    return k, v


def mlp(x, *, c_fc, c_proj) -> tf.Tensor:
    h = tf.nn.gelu(conv1d(x, **c_fc), approximate=True)  # GPT-2's tanh form of GELU
    return conv1d(h, **c_proj)  # [batch, seq, n_embd]


def block(x, p, *, past, hparams: HParams, mask, pos=None, attend=None):
    """One transformer layer; `p` is `params["h"][i]` (the original's scope `h<i>`)."""
    a, present = attn(norm(x, **p["ln_1"]), **p["attn"], past=past, hparams=hparams,
                      mask=mask, pos=pos, attend=attend)
    x = x + a  # [batch, seq, n_embd]
    x = x + mlp(norm(x, **p["ln_2"]), **p["mlp"])  # [batch, seq, n_embd]
    return x, present


def model(params, X, *, hparams: HParams, past=None, pos=None, last_logits_only=False,
          logits=True, attend=None):
    """Logits for token ids X [batch, seq], and `present` to feed back as `past`.

    Without `pos` (the original API), `past` is None or [batch, n_layer, 2, head, n_past,
    head_dim] and `present` holds X's keys/values in that layout. With `pos` (a scalar:
    how many positions the cache already holds), `past` is the list of n_layer cache
    variables from `empty_cache`, updated in place, and `present` is that list. With
    `last_logits_only`, logits are [batch, 1, n_vocab] for the last position only (a
    sampler needs no more, and a long prompt's full logits are large). With `logits=False`,
    the output holds `hidden` [batch, seq, n_embd] (after `ln_f`) instead of `logits`, for a
    caller that needs the logits of a few positions at a time (score.py). `attend` is
    passed to every layer's `attn` (score.py's blocked causal attention).
    """
    X = tf.convert_to_tensor(X, tf.int32)  # [batch, seq]
    if pos is None:
        pasts = [None] * hparams.n_layer if past is None else tf.unstack(past, axis=1)
        n_prior = 0 if past is None else shape_list(past)[-2]
    else:
        pasts, n_prior = past, pos
    assert len(pasts) == hparams.n_layer, (len(pasts), hparams.n_layer)
    seq = shape_list(X)[1]
    if isinstance(n_prior, int) and isinstance(seq, int):
        # Callers validate lengths; past the table the gather would crash (CPU) or read
        # zeros (GPU), so fail loudly instead.
        assert n_prior + seq <= hparams.n_ctx, (n_prior, seq, hparams.n_ctx)
    h = embed(params, X, n_prior=n_prior)  # [batch, seq, n_embd]
    mask = attention_mask(seq, n_prior + seq, dtype=h.dtype)  # [seq, n_prior + seq]
    presents = []
    for layer, layer_past in enumerate(pasts):
        h, present = block(h, params["h"][layer], past=layer_past, hparams=hparams,
                           mask=mask, pos=pos, attend=attend)
        presents.append(present)
    if last_logits_only:
        h = h[:, -1:]  # [batch, 1, n_embd]
    h = norm(h, **params["ln_f"])  # [batch, seq, n_embd]
    present = tf.stack(presents, axis=1) if pos is None else presents
    if not logits:
        return {"hidden": h, "present": present}
    return {"logits": unembed(params, h, hparams=hparams), "present": present}


def embed(params, X, *, n_prior=0) -> tf.Tensor:
    """Token plus position embeddings of ids X [batch, seq] at positions n_prior.. ."""
    # Gather from a tensor, not the variable: a ResourceGather would switch `wte` to
    # copy-on-read and every later read for the logits would copy the whole table.
    wte = tf.convert_to_tensor(params["wte"])  # [n_vocab, n_embd]
    wpe = tf.convert_to_tensor(params["wpe"])  # [n_ctx, n_embd]
    return tf.gather(wte, X) + tf.gather(wpe, n_prior + tf.range(shape_list(X)[1]))


def unembed(params, h, *, hparams: HParams) -> tf.Tensor:
    """Logits [batch, seq, n_vocab] of final hidden states h (after `ln_f`), through the
    tied embedding."""
    batch, seq = shape_list(h)[:2]
    # wte @ h^T, then a small transpose: measured faster on CPU than h @ wte^T (up to 2x
    # at batch 8), and wte is never copied or transposed.
    wte = tf.convert_to_tensor(params["wte"])  # [n_vocab, n_embd]
    logits = tf.matmul(wte, tf.reshape(h, [-1, hparams.n_embd]), transpose_b=True)
    return tf.reshape(tf.transpose(logits), [batch, seq, hparams.n_vocab])


def past_shape(*, hparams: HParams, batch_size=None, sequence=None) -> list:
    """The original's layout of `past`/`present`."""
    return [batch_size, hparams.n_layer, 2, hparams.n_head, sequence, hparams.head_dim]


def empty_cache(*, hparams: HParams, batch_size: int, length: int, dtype=tf.float32) -> list:
    """A zeroed cache for `model(..., pos=...)`: one variable per layer, [2 * batch * head,
    length, head_dim] (keys then values). `resize_cache` changes batch and length."""
    shape = tf.TensorShape([None, None, hparams.head_dim])
    return [tf.Variable(tf.zeros(cache_shape(hparams, batch_size, length), dtype),
                        shape=shape, trainable=False) for _ in range(hparams.n_layer)]


def resize_cache(cache: list, *, hparams: HParams, batch_size, length) -> None:
    """Reallocates every layer's cache as zeros for a new batch size and length."""
    for layer in cache:
        layer.assign(tf.zeros(cache_shape(hparams, batch_size, length), layer.dtype))


def cache_shape(hparams: HParams, batch_size, length) -> list:
    return [2 * batch_size * hparams.n_head, length, hparams.head_dim]
