"""Reads and writes GPT-2 checkpoints in the released layout.

The layout is `<dir>/{hparams.json, checkpoint, model.ckpt.index,
model.ckpt.data-00000-of-00001}` holding variables named like `model/h3/attn/c_attn/w`.
Only this module knows it. The `.meta` graph is never read (a serialized graph is a
program), and neither is the `checkpoint` state file: the prefix is always
`<dir>/model.ckpt`.
"""
from __future__ import annotations

import os
from typing import Iterator

import numpy as np
import tensorflow as tf

from model import HParams, redownload_hint
from model_paths import download_command

PREFIX = "model.ckpt"
INDEX = PREFIX + ".index"
DATA = PREFIX + ".data-00000-of-00001"


def variable_shapes(hparams: HParams) -> dict[str, list[int]]:
    """Every variable of a released checkpoint with its shape, in checkpoint order."""
    e, v, c = hparams.n_embd, hparams.n_vocab, hparams.n_ctx
    shapes = {"model/wte": [v, e], "model/wpe": [c, e]}
    for i in range(hparams.n_layer):
        layer = {
            "ln_1/g": [e], "ln_1/b": [e],
            "attn/c_attn/w": [1, e, 3 * e], "attn/c_attn/b": [3 * e],
            "attn/c_proj/w": [1, e, e], "attn/c_proj/b": [e],
            "ln_2/g": [e], "ln_2/b": [e],
            "mlp/c_fc/w": [1, e, 4 * e], "mlp/c_fc/b": [4 * e],
            "mlp/c_proj/w": [1, 4 * e, e], "mlp/c_proj/b": [e],
        }
        shapes.update({f"model/h{i}/{k}": s for k, s in layer.items()})
    shapes.update({"model/ln_f/g": [e], "model/ln_f/b": [e]})
    return shapes


def subtree(params: dict, name: str) -> tuple[dict, str]:
    """The dict of `params` that holds variable `name`, and its key there."""
    parts = name.split("/")[1:]  # drop the "model" scope
    node = params
    if parts[0][0] == "h" and parts[0][1:].isdigit():
        node, parts = params["h"][int(parts[0][1:])], parts[1:]
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    return node, parts[-1]


def tree_from_flat(flat: dict[str, object], hparams: HParams) -> dict:
    """{"model/h3/attn/c_attn/w": x} -> params["h"][3]["attn"]["c_attn"]["w"] = x."""
    params: dict = {"h": [{} for _ in range(hparams.n_layer)]}
    for name, value in flat.items():
        node, key = subtree(params, name)
        node[key] = value
    return params


def flat_from_tree(params: dict, hparams: HParams) -> dict[str, object]:
    """The inverse of `tree_from_flat`, in checkpoint order."""
    flat = {}
    for name in variable_shapes(hparams):
        node, key = subtree(params, name)
        flat[name] = node[key]
    return flat


def check_present(model_dir: str) -> None:
    for name in (INDEX, DATA):
        path = os.path.join(model_dir, name)
        if not os.path.isfile(path):
            raise ValueError(f"{path} is missing: {redownload_hint(path)}")


def check_data_size(model_dir: str, hparams: HParams) -> None:
    """A truncated data file is caught here, before TensorFlow reads past its end."""
    data = os.path.join(model_dir, DATA)
    expected = 4 * sum(int(np.prod(s)) for s in variable_shapes(hparams).values())
    actual = os.path.getsize(data)
    if actual != expected:
        raise ValueError(f"{data} is {actual:,} bytes but hparams.json implies {expected:,} "
                         f"(float32): the file is truncated or does not belong to these "
                         f"hparams; {redownload_hint(data)}")


def read_checkpoint(model_dir: str, hparams: HParams) -> Iterator[tuple[str, np.ndarray]]:
    """Every variable as (name, NumPy array), in checkpoint order, after checking all
    names and shapes against `hparams`. One array at a time, so that a caller that keeps
    only its own copy holds the weights about once."""
    check_present(model_dir)
    index = os.path.join(model_dir, INDEX)
    try:
        reader = tf.train.load_checkpoint(os.path.join(model_dir, PREFIX))
        found = reader.get_variable_to_shape_map()
    except (tf.errors.OpError, ValueError):
        raise ValueError(f"{index} is corrupt or not a TensorFlow checkpoint index: "
                         f"{redownload_hint(index)}") from None
    expected = variable_shapes(hparams)
    for name, shape in expected.items():
        if name not in found:
            raise ValueError(f"{index} has no variable {name}, which hparams.json "
                             f"(n_layer={hparams.n_layer}) requires: the checkpoint and "
                             f"hparams.json belong to different models")
        if list(found[name]) != shape:
            raise ValueError(f"variable {name} has shape {list(found[name])} in the "
                             f"checkpoint but {shape} per hparams.json: the checkpoint and "
                             f"hparams.json belong to different models")
    extra = sorted(n for n in found if n.startswith("model/") and n not in expected)
    if extra:
        raise ValueError(f"{index} has variables hparams.json does not describe (first: "
                         f"{extra[0]}): the checkpoint and hparams.json belong to different "
                         f"models")
    check_data_size(model_dir, hparams)
    return read_tensors(reader, list(expected), os.path.join(model_dir, DATA))


def read_tensors(reader, names: list[str], data: str) -> Iterator[tuple[str, np.ndarray]]:
    for name in names:
        try:
            array = reader.get_tensor(name)
        except tf.errors.OpError as e:
            raise ValueError(f"{data}: variable {name} is corrupt ({first_line(e)}): "
                             f"{redownload_hint(data)}") from None
        yield name, array


def load(model_dir: str, *, dtype=tf.float32) -> tuple[HParams, dict]:
    """(hparams, params) with each weight a non-trainable `tf.Variable` of `dtype`."""
    if not os.path.isdir(model_dir):
        raise ValueError(f"{model_dir} not found: run `{download_command(model_dir)}`")
    hparams = HParams.from_json(os.path.join(model_dir, "hparams.json"))
    flat = {}
    for name, array in read_checkpoint(model_dir, hparams):
        # One tensor at a time, so peak memory stays near one copy of the weights.
        flat[name] = tf.Variable(array if dtype == tf.float32 else tf.cast(array, dtype),
                                 trainable=False, name=name.replace("/", "."))
        del array
    return hparams, tree_from_flat(flat, hparams)


def save(params: dict, hparams: HParams, model_dir: str) -> None:
    """Writes `params` (tensors, variables or arrays) in the released layout.

    TF1's `tf.compat.v1.train.Saver` restores the result by name; `hparams.json` and the
    `checkpoint` state file are written beside it. Weights are stored as float32.
    """
    os.makedirs(model_dir, exist_ok=True)
    flat = flat_from_tree(params, hparams)
    expected = variable_shapes(hparams)
    for name, value in flat.items():
        assert list(value.shape) == expected[name], (name, value.shape, expected[name])
    names = list(flat)
    tensors = [tf.cast(tf.convert_to_tensor(flat[n]), tf.float32) for n in names]
    tf.raw_ops.SaveV2(prefix=os.path.join(model_dir, PREFIX), tensor_names=names,
                      shape_and_slices=[""] * len(names), tensors=tensors)
    with open(os.path.join(model_dir, "checkpoint"), "w", encoding="utf-8") as f:
        f.write(f'model_checkpoint_path: "{PREFIX}"\n'
                f'all_model_checkpoint_paths: "{PREFIX}"\n')
    with open(os.path.join(model_dir, "hparams.json"), "w", encoding="utf-8") as f:
        f.write(hparams_json(hparams))


def hparams_json(hparams: HParams) -> str:
    keys = ("n_vocab", "n_ctx", "n_embd", "n_head", "n_layer")
    return "{\n" + ",\n".join(f'  "{k}": {getattr(hparams, k)}' for k in keys) + "\n}\n"


def first_line(error: Exception) -> str:
    text = getattr(error, "message", None) or str(error)
    return text.strip().splitlines()[0] if text.strip() else type(error).__name__
