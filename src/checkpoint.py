"""Reads and writes GPT-2 checkpoints in the released layout.

The layout is `<dir>/{hparams.json, checkpoint, model.ckpt.index,
model.ckpt.data-00000-of-00001}` holding variables named like `model/h3/attn/c_attn/w`.
Only this module knows it. The `.meta` graph is never read (a serialized graph is a
program).

A training run directory (ours, gpt-2-simple's, nshepperd's fork) has the same files with
the prefixes `model-<step>`, named by the `checkpoint` state file as TF's Saver writes it,
and extra variables beside the weights (`global_step`, optimizer slots such as
`model/h0/attn/c_attn/w/Adam`). The loader follows the state file when it names a
checkpoint inside the directory by a relative path, and otherwise reads `<dir>/model.ckpt`,
so a released directory needs no state file at all.
"""
from __future__ import annotations

import codecs
import glob
import os
import re
from typing import Iterator

import numpy as np
import tensorflow as tf

import model_paths
from model import HParams, redownload_hint

PREFIX = "model.ckpt"
INDEX = PREFIX + ".index"
DATA = PREFIX + ".data-00000-of-00001"
STATE = "checkpoint"  # TF's checkpoint state file: which prefix is the newest


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


def read_state(model_dir: str) -> tuple[str | None, list[str]]:
    """(newest, all kept) prefixes as the `checkpoint` state file names them, unresolved;
    (None, []) when the file is missing or is not a state file."""
    try:
        with open(os.path.join(model_dir, STATE), encoding="utf-8") as f:
            text = f.read(1 << 20)
    except (OSError, UnicodeDecodeError):
        return None, []
    entries = {}
    for key, value in re.findall(r'^\s*(model_checkpoint_path|all_model_checkpoint_paths)'
                                 r'\s*:\s*"((?:[^"\\\n]|\\.)*)"\s*$', text, re.M):
        try:
            value = codecs.escape_decode(value.encode("utf-8"))[0].decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return None, []
        entries.setdefault(key, []).append(value)
    newest = entries.get("model_checkpoint_path", [None])[-1]
    return newest, entries.get("all_model_checkpoint_paths", [])


def write_state(model_dir: str, newest: str, kept: list[str]) -> None:
    """Points the state file at `newest` (relative prefixes, as TF's Saver writes them with
    a relative directory), atomically: written beside, then renamed over the old one."""
    def quoted(prefix: str) -> str:
        return '"' + prefix.replace("\\", "\\\\").replace('"', '\\"') + '"'
    text = f"model_checkpoint_path: {quoted(newest)}\n" + "".join(
        f"all_model_checkpoint_paths: {quoted(p)}\n" for p in kept)
    path = os.path.join(model_dir, STATE)
    write_atomically(path, text.encode("utf-8"))


def write_atomically(path: str, data: bytes) -> None:
    temporary = f"{path}.tmp-{os.getpid()}"
    with open(temporary, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)


def inside(relative: str) -> bool:
    """Whether a prefix from a state file stays inside its directory."""
    return not (os.path.isabs(relative) or relative.startswith(("/", "\\"))
                or ".." in re.split(r"[/\\]", relative))


def checkpoint_prefix(model_dir: str) -> str:
    """The weights to read: the newest checkpoint the state file names inside `model_dir`,
    else `<dir>/model.ckpt` (a released directory needs no state file, whatever it holds)."""
    released = os.path.join(model_dir, PREFIX)
    newest, _ = read_state(model_dir)
    if not newest or newest == PREFIX:
        return released
    if not inside(newest):
        if os.path.basename(newest) == PREFIX or glob.glob(glob.escape(released) + ".*"):
            return released  # a released directory (its state file is not needed)
        raise ValueError(f"{os.path.join(model_dir, STATE)} names {newest!r}, which is not "
                         f"inside {model_dir}: only paths relative to the directory are "
                         f"followed; edit it to name the checkpoint by its file name, e.g. "
                         f"model_checkpoint_path: \"{os.path.basename(newest)}\"")
    prefix = os.path.join(model_dir, newest)
    if not os.path.isfile(prefix + ".index") and os.path.isfile(released + ".index"):
        return released
    return prefix


def data_files(prefix: str) -> list[str]:
    """The data shards of a checkpoint prefix (one, `-00000-of-00001`, unless sharded)."""
    single = prefix + ".data-00000-of-00001"
    if os.path.isfile(single):
        return [single]
    return sorted(glob.glob(glob.escape(prefix) + ".data-[0-9][0-9][0-9][0-9][0-9]-of-"
                                                  "[0-9][0-9][0-9][0-9][0-9]"))


def remedy(path: str) -> str:
    """What to do about a damaged file: download a released model again; in a training
    run, fall back to an earlier checkpoint."""
    model_dir = os.path.dirname(path)
    if os.path.basename(path).startswith(PREFIX + "."):
        return redownload_hint(path)
    return (f"point {os.path.join(model_dir, STATE)} at an earlier checkpoint of the run "
            f"(its all_model_checkpoint_paths lines list them) or train again")


def check_present(prefix: str) -> None:
    """Missing or unreadable files are named here: TensorFlow would call them corrupt."""
    for path in [prefix + ".index", *(data_files(prefix) or [prefix + ".data-00000-of-00001"])]:
        if not os.path.lexists(path) and not os.path.basename(path).startswith(PREFIX + "."):
            raise ValueError(f"{path} is missing: {remedy(path)}")  # a run's checkpoint
        model_paths.check_readable(path)


def check_data_size(prefix: str, shapes: dict, dtypes: dict, *, extra: bool) -> None:
    """A truncated data file is caught here, before TensorFlow reads past its end. The
    index gives every variable's shape and type, hence the bytes the data must hold."""
    if any(not dtypes[n].is_numpy_compatible or dtypes[n] == tf.string for n in shapes):
        return  # strings have no fixed size; TensorFlow's checksums still catch damage
    expected = sum(int(np.prod(shapes[n])) * dtypes[n].size for n in shapes)
    files = data_files(prefix)
    actual = sum(os.path.getsize(f) for f in files)
    if actual != expected:
        source = "its index" if extra else "hparams.json"
        raise ValueError(f"{files[0]} is {actual:,} bytes but {source} implies {expected:,}"
                         f"{'' if extra else ' (float32)'}: the file is truncated or does "
                         f"not belong to these hparams; {remedy(files[0])}")


def model_variable(name: str, expected: dict) -> bool:
    """Whether a `model/` variable is a weight or an optimizer slot of one (TF1 names a
    slot `<weight>/<slot>`, e.g. `model/wte/Adam_1`)."""
    parts = name.split("/")
    return any("/".join(parts[:i]) in expected for i in range(2, len(parts) + 1))


def read_checkpoint(model_dir: str, hparams: HParams, *,
                    names=None) -> Iterator[tuple[str, np.ndarray]]:
    """Every weight (or only those in `names`) as (name, NumPy array), in checkpoint
    order, after checking all names and shapes against `hparams`. One array at a time, so
    that a caller that keeps only its own copy holds the weights about once. Other
    variables (a step counter, optimizer slots) are allowed and not read."""
    return read_prefix(checkpoint_prefix(model_dir), hparams, names=names)


def read_prefix(prefix: str, hparams: HParams, *,
                names=None) -> Iterator[tuple[str, np.ndarray]]:
    """`read_checkpoint` of one checkpoint prefix."""
    check_present(prefix)
    index = prefix + ".index"
    try:
        reader = tf.train.load_checkpoint(prefix)
        found = reader.get_variable_to_shape_map()
        dtypes = reader.get_variable_to_dtype_map()
    except (tf.errors.OpError, ValueError):
        raise ValueError(f"{index} is corrupt or not a TensorFlow checkpoint index: "
                         f"{remedy(index)}") from None
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
    unknown = sorted(n for n in found if n.startswith("model/")
                     and not model_variable(n, expected))
    if unknown:
        raise ValueError(f"{index} has variables hparams.json does not describe (first: "
                         f"{unknown[0]}): the checkpoint and hparams.json belong to different "
                         f"models")
    check_data_size(prefix, found, dtypes, extra=len(found) > len(expected))
    wanted = [n for n in expected if names is None or n in names]
    return read_tensors(reader, wanted, data_files(prefix)[0])


def read_tensors(reader, names: list[str], data: str) -> Iterator[tuple[str, np.ndarray]]:
    for name in names:
        try:
            array = reader.get_tensor(name)
        except tf.errors.OpError as e:
            raise ValueError(f"{data}: variable {name} is corrupt ({first_line(e)}): "
                             f"{remedy(data)}") from None
        yield name, array


def load(model_dir: str, *, dtype=tf.float32) -> tuple[HParams, dict]:
    """(hparams, params) with each weight a non-trainable `tf.Variable` of `dtype`."""
    if not os.path.isdir(model_dir):
        raise ValueError(model_paths.missing_dir_message(model_dir))
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
    write_tensors(os.path.join(model_dir, PREFIX), float32_weights(params, hparams))
    write_state(model_dir, PREFIX, [PREFIX])
    with open(os.path.join(model_dir, "hparams.json"), "w", encoding="utf-8") as f:
        f.write(hparams_json(hparams))


def float32_weights(params: dict, hparams: HParams) -> dict[str, tf.Tensor]:
    """The weights of a params tree by checkpoint name, as float32 tensors."""
    flat = flat_from_tree(params, hparams)
    expected = variable_shapes(hparams)
    for name, value in flat.items():
        assert list(value.shape) == expected[name], (name, value.shape, expected[name])
    return {n: tf.cast(tf.convert_to_tensor(v), tf.float32) for n, v in flat.items()}


def write_tensors(prefix: str, tensors: dict[str, object]) -> None:
    """One checkpoint bundle, `<prefix>.index` and `<prefix>.data-00000-of-00001`, holding
    `tensors` by name, as TF's Saver writes it (and reads it back)."""
    names = list(tensors)
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[tf.convert_to_tensor(tensors[n]) for n in names])


def hparams_json(hparams: HParams) -> str:
    keys = ("n_vocab", "n_ctx", "n_embd", "n_head", "n_layer")
    return "{\n" + ",\n".join(f'  "{k}": {getattr(hparams, k)}' for k in keys) + "\n}\n"


def first_line(error: Exception) -> str:
    text = getattr(error, "message", None) or str(error)
    return text.strip().splitlines()[0] if text.strip() else type(error).__name__
