"""Exports GPT-2's step to LiteRT flatbuffers (.tflite), from the same `model.py` functions.

One signature, `step`, serves the prompt and every later token alike: token ids `x` [batch,
seq] at positions pos.. attend to a key/value cache that comes in as read-only inputs `k<i>`
and `v<i>` [batch, head, T, head_dim], and the step returns only the new keys and values
(`present`). The caller writes them into the cache through the interpreter's tensor views:
a cache passed in and out, or kept in resource variables, measured 2-3x slower, because
LiteRT copies graph inputs it updates and XNNPACK does not take variables.

A model whose conversion would not fit in memory (the converter peaks near 6x the float32
weights it converts) is exported in parts, each a run of layers; past the first part `x`
is the hidden state [batch, seq, n_embd], and only the last part returns logits.
"""
from __future__ import annotations

import contextlib
import math
import os
import re
import sys
import tempfile

import tensorflow as tf

import checkpoint
import model
from model import HParams

DTYPES = ("float32", "int8")
# float32 weight bytes per conversion: 1558M as 4 parts of 12 layers peaks near 10 GB.
PART_BYTES = 1_600_000_000


class ConversionError(ValueError):
    """The TFLite converter refused the graph (an op with no LiteRT builtin kernel)."""


def plan(hparams: HParams) -> list[range]:
    """The layers of each part: as few parts as keep each conversion near PART_BYTES."""
    total = 4 * sum(math.prod(s) for s in checkpoint.variable_shapes(hparams).values())
    parts = min(hparams.n_layer, math.ceil(total / PART_BYTES))
    per = math.ceil(hparams.n_layer / parts)
    return [range(i, min(i + per, hparams.n_layer)) for i in range(0, hparams.n_layer, per)]


def part_names(hparams: HParams, layers: range, *, first: bool, last: bool) -> set[str]:
    """The checkpoint variables a part needs: its layers, and the tied embedding at the
    ends (`wte` and `wpe` for the input, `wte` and `ln_f` for the logits)."""
    wanted = {f"h{i}" for i in layers} | ({"wte", "wpe"} if first else set())
    wanted |= {"wte", "ln_f"} if last else set()
    return {n for n in checkpoint.variable_shapes(hparams) if n.split("/")[1] in wanted}


def attend_cache(filled: tf.Tensor):
    """`model.attn`'s `attend` for a read-only cache: the queries attend to the cache's
    filled slots (`filled` is 0 there and -1e9 elsewhere, [T]) and, causally, to the new
    keys; the softmax runs over both at once, so nothing is concatenated or copied.

    Against the cache, the products are broadcast multiplies and sums, not BATCH_MATMULs:
    with one query per row, XNNPACK's batch matmul repacks the cache on every call, which
    measured 1.3-2x slower at batch 8 and 128-512 slots. The broadcasts hold for the two
    ways `Runtime` calls a step: one token (seq 1) against T slots, or a prompt (seq n)
    against one empty slot; anything else fails to broadcast, never computes silently."""
    def attend(q, k, v, *, past, pos):
        k_cache, v_cache = past  # [batch, head, T, head_dim]
        batch, head, seq, hd = (tf.shape(q)[i] for i in range(4))
        slots = tf.shape(k_cache)[2]
        scale = tf.math.rsqrt(tf.cast(q.shape[-1], q.dtype))
        # seq 1: [b, h, 1, hd] * [b, h, T, hd]; T 1: [b, h, seq, hd] * [b, h, 1, hd]
        w_cache = tf.reshape(tf.reduce_sum(q * k_cache, axis=-1),
                             [batch, head, seq, slots]) * scale + filled  # [b, h, seq, T]
        w_new = tf.matmul(q, k, transpose_b=True) * scale + model.attention_mask(
            seq, seq, dtype=q.dtype)  # [batch, head, seq, seq]
        w = tf.nn.softmax(tf.concat([w_cache, w_new], axis=-1), axis=-1)
        # seq 1: [b, h, T, 1] * [b, h, T, hd], summed over T; T 1: [b, h, seq, 1] * [b, h, 1, hd]
        weighted = tf.reshape(w[..., :slots], [batch, head, -1, 1]) * v_cache
        a_cache = tf.reshape(tf.reduce_sum(tf.reshape(weighted, [batch, head, slots, -1]),
                                           axis=2), [batch, head, seq, hd])
        a = a_cache + tf.matmul(w[..., slots:], v)  # [batch, head, seq, head_dim]
        return a, tf.stack([k, v], axis=1)  # [b, 2, h, seq, hd]
    return attend


class Part(tf.Module):
    """Layers `layers` of the model as one traced `step` (see the module docstring)."""

    def __init__(self, params: dict, hparams: HParams, layers: range, *, first: bool,
                 last: bool):
        super().__init__()
        self.params, self.hparams, self.layers = params, hparams, layers
        self.first, self.last = first, last
        cache = tf.TensorSpec([None, hparams.n_head, None, hparams.head_dim], tf.float32)
        x = (tf.TensorSpec([None, None], tf.int32, name="x") if first else
             tf.TensorSpec([None, None, hparams.n_embd], tf.float32, name="x"))
        names = [f"{kv}{i}" for i in range(len(layers)) for kv in "kv"]
        self.step = tf.function(self._step, input_signature=[
            x, tf.TensorSpec([], tf.int32, name="pos"),
            [tf.TensorSpec(cache.shape, cache.dtype, name=n) for n in names]])

    def _step(self, x, pos, cache):
        slots = tf.shape(cache[0])[2]
        filled = tf.where(tf.range(slots) < pos, 0.0, -1e9)  # [T]
        attend = attend_cache(filled)
        h = model.embed(self.params, x, n_prior=pos) if self.first else x  # [b, seq, embd]
        presents = []
        for n, layer in enumerate(self.layers):
            h, present = model.block(h, self.params["h"][layer], past=tuple(cache[2 * n:2 * n + 2]),
                                     hparams=self.hparams, mask=None, pos=pos, attend=attend)
            presents.append(present)
        out = {"present": tf.stack(presents, axis=1)}  # [batch, layers, 2, head, seq, hd]
        if self.last:
            h = model.norm(h[:, -1:], **self.params["ln_f"])  # [batch, 1, n_embd]
            out["logits"] = model.unembed(self.params, h, hparams=self.hparams)[:, 0]
        else:
            out["h"] = h  # [batch, seq, n_embd]
        return out


def convert_part(model_dir: str, hparams: HParams, layers: range, *, first: bool,
                 last: bool, dtype: str) -> bytes:
    """Reads the part's weights and converts its step; int8 is dynamic-range quantization
    (int8 weights, per output channel; float activations)."""
    names = part_names(hparams, layers, first=first, last=last)
    flat = {name: tf.Variable(array, trainable=False)
            for name, array in checkpoint.read_checkpoint(model_dir, hparams, names=names)}
    params = checkpoint.tree_from_flat(flat, hparams)
    part = Part(params, hparams, layers, first=first, last=last)
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [part.step.get_concrete_function()], part)
    # Builtin kernels only: a Flex (select TF) fallback would need TensorFlow's kernels
    # at run time and is slow; an op without a builtin kernel is an error instead.
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if dtype == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    try:
        with quiet_stderr():  # the converter logs pages of MLIR diagnostics
            return converter.convert()
    except Exception as e:  # noqa: BLE001 -- ConverterError's module is private
        raise ConversionError(conversion_failure(e)) from None


@contextlib.contextmanager
def quiet_stderr(keep=lambda line: False):
    """Holds back what C++ code writes to file descriptor 2 (Python's `sys.stderr` cannot
    catch it), then passes on the lines that `keep` accepts."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            for line in caught.read().decode("utf-8", "replace").splitlines(keepends=True):
                if keep(line):
                    sys.stderr.write(line)


def conversion_failure(error: Exception) -> str:
    """One line from the converter's pages of MLIR: which TensorFlow ops it refused."""
    ops = sorted(set(re.findall(r"'tf\.(\w+)' op is neither a custom op nor a flex op",
                                str(error))))
    if ops:
        return (f"the LiteRT converter has no builtin kernel for TensorFlow op(s) "
                f"{', '.join(ops)}: this model cannot run on LiteRT; use --backend tf")
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return f"the LiteRT converter failed ({first[:200]}): use --backend tf"


def ops_used(flatbuffer: bytes) -> set[str]:
    """The operator names in a .tflite flatbuffer: builtins by name, others as CUSTOM:<name>
    (a Flex op is CUSTOM:Flex...)."""
    from tensorflow.lite.python import schema_py_generated as schema
    m = schema.ModelT.InitFromPackedBuf(bytearray(flatbuffer), 0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    found = set()
    for code in m.operatorCodes:
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        found.add(f"CUSTOM:{code.customCode.decode()}" if builtin == schema.BuiltinOperator.CUSTOM
                  else names[builtin])
    return found


