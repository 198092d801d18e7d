"""The Hugging Face Hub's GPT-2 format beside the released layout: the one mapping of names,
hyperparameters and vocabulary files that `convert_checkpoint.py` and the Hub download share.

Public surface (names kept stable):
    hparams_from_config(config, *, source) -> HParams
        `config.json` as HParams; a configuration this model cannot represent is refused in
        one line naming the key and its value.
    config_from_hparams(hparams) -> dict       the `config.json` of a released model
    hub_to_released(src_dir, dst_dir, *, force=False, progress=None)
    released_to_hub(src_dir, dst_dir, *, force=False, progress=None)
    convert(src_dir, dst_dir, *, force=False, progress=None) -> "hub" | "released"
        either of the two, chosen by `detect_format(src_dir)`; returns the source's format.
    hub_names(hparams) -> {Hub tensor name: released variable name}, in checkpoint order.
    detect_format(src_dir) -> "hub" | "released", or a ValueError saying what is missing.

Every problem is a `ValueError` whose one line names the file, tensor or key and the remedy.
`dst_dir` is written in a directory beside it and renamed into place at the end, so it is
never left half written; a non-empty one is replaced only with `force`. `progress(done,
total)` is called after each tensor is read, in bytes of float32 weights.

Facts the mapping rests on: the Hub's `h.3.attn.c_attn.weight` is the release's
`model/h3/attn/c_attn/w`, stored [nx, nf] where the release has [1, nx, nf] (the same
matrix: both apply it as x @ w, so there is no transpose); a layer norm's `g`/`b` are
`weight`/`bias`; `lm_head.weight` is tied to `wte.weight` and usually absent; the
`h.{i}.attn.bias`/`masked_bias` tensors of older files are causal-mask constants, not
weights; files saved from `GPT2LMHeadModel` prefix the names with `transformer.`.
"""
from __future__ import annotations

import json
import math
import os
import re
from typing import TYPE_CHECKING, Callable

import numpy as np

import hub_files
import hub_io
from hub_io import detect_format

if TYPE_CHECKING:
    from model import HParams

CONFIG, GENERATION_CONFIG, TOKENIZER_CONFIG = ("config.json", "generation_config.json",
                                               "tokenizer_config.json")
VOCAB, MERGES = "vocab.json", "merges.txt"  # the Hub's
ENCODER_JSON, VOCAB_BPE, HPARAMS = "encoder.json", "vocab.bpe", "hparams.json"  # released
PREFIX = "transformer."
MASK_BUFFER = re.compile(r"h\.\d+\.attn\.(bias|masked_bias)")
EOT = 50256  # <|endoftext|>: GPT-2's only special token, its bos and eos
Progress = Callable[[int, int], None]

# key -> (the values this model computes it with, what it computes). A config.json that
# leaves a key out gets transformers' GPT2Config default: the first value, and SIZES.
SUPPORTED = {
    "model_type": (["gpt2"], "is a GPT-2 (model_type 'gpt2')"),
    # gelu_pytorch_tanh is gelu_new's tanh formula, computed by another kernel.
    "activation_function": (["gelu_new", "gelu_pytorch_tanh"],
                            "uses GELU's tanh approximation ('gelu_new')"),
    "layer_norm_epsilon": ([1e-5], "has layer norms with epsilon 1e-05"),
    "n_inner": ([None], "has MLPs of 4 * n_embd units"),  # or 4 * n_embd itself
    "scale_attn_weights": ([True], "scales attention by 1/sqrt(head size)"),
    "scale_attn_by_inverse_layer_idx": ([False], "does not scale attention by layer"),
    "reorder_and_upcast_attn": ([False], "computes attention in the weights' own precision"),
    "add_cross_attention": ([False], "has no cross-attention"),
    "tie_word_embeddings": ([True], "computes logits with wte (tied embeddings)"),
    "vocab_size": ([50257], "has GPT-2's vocabulary of 50257 tokens"),
}
SIZES = dict(n_positions=1024, n_embd=768, n_layer=12, n_head=12)


def tensorflow_modules():
    """(checkpoint, model), imported after TensorFlow has started without its chatter."""
    import samples_io
    samples_io.import_tensorflow_quietly()
    import checkpoint
    import model
    return checkpoint, model


def hparams_from_config(config: dict, *, source: str = CONFIG) -> HParams:
    """The HParams of a Hub `config.json` (parsed), or a ValueError naming `source`."""
    if not isinstance(config, dict):
        raise ValueError(f"{source}: expected a JSON object, got {type(config).__name__}")
    values = {**SIZES, **{key: ok[0] for key, (ok, _) in SUPPORTED.items()}, **config}
    if "n_positions" not in config and "n_ctx" in config:  # configs older than n_positions
        values["n_positions"] = config["n_ctx"]
    for key, (allowed, computes) in SUPPORTED.items():
        if values[key] not in allowed + ([4 * values["n_embd"]] if key == "n_inner" else []):
            raise ValueError(f"{source}: {key}={values[key]!r} cannot be represented: this "
                             f"project's GPT-2 {computes}, so the model is not converted")
    _, model = tensorflow_modules()
    return model.HParams.from_dict(
        {"n_vocab": values["vocab_size"], "n_ctx": values["n_positions"],
         "n_embd": values["n_embd"], "n_head": values["n_head"],
         "n_layer": values["n_layer"]}, source=source)


def config_from_hparams(hparams: HParams) -> dict:
    """A `config.json` that transformers reads as exactly this model."""
    return {
        "architectures": ["GPT2LMHeadModel"], "vocab_size": hparams.n_vocab,
        "n_positions": hparams.n_ctx, "n_ctx": hparams.n_ctx,
        "n_embd": hparams.n_embd, "n_head": hparams.n_head, "n_layer": hparams.n_layer,
        **{key: ok[0] for key, (ok, _) in SUPPORTED.items() if key != "vocab_size"},
        # GPT-2's training dropout and init scale (transformers' defaults): fine-tuning only.
        "attn_pdrop": 0.1, "embd_pdrop": 0.1, "resid_pdrop": 0.1, "initializer_range": 0.02,
        "bos_token_id": EOT, "eos_token_id": EOT, "use_cache": True,
    }


def hub_names(hparams: HParams) -> dict[str, str]:
    """{"h.3.attn.c_attn.weight": "model/h3/attn/c_attn/w", "wte.weight": "model/wte",
    ...} for every variable of the released checkpoint, in its order."""
    checkpoint, _ = tensorflow_modules()
    leaves = {"w": "weight", "g": "weight", "b": "bias"}
    names = {}
    for name in checkpoint.variable_shapes(hparams):
        *scopes, leaf = name.split("/")[1:]  # without the "model" scope
        if not scopes:  # wte, wpe
            scopes, leaf = [leaf], "w"
        elif scopes[0][0] == "h" and scopes[0][1:].isdigit():
            scopes[:1] = ["h", scopes[0][1:]]
        names[".".join(scopes + [leaves[leaf]])] = name
    return names


def hub_shape(shape) -> list[int]:
    """A released conv1d weight [1, nx, nf] is stored [nx, nf] on the Hub."""
    return list(shape[1:] if len(shape) == 3 else shape)


def convert(src_dir: str, dst_dir: str, *, force: bool = False,
            progress: Progress | None = None) -> str:
    source = detect_format(src_dir)
    to = hub_to_released if source == "hub" else released_to_hub
    to(src_dir, dst_dir, force=force, progress=progress)
    return source


def hub_to_released(src_dir: str, dst_dir: str, *, force: bool = False,
                    progress: Progress | None = None) -> None:
    """A Hub-format directory -> a model directory in the released layout."""
    if detect_format(src_dir) != "hub":
        raise ValueError(f"{src_dir} is not in the Hugging Face format ({CONFIG}, "
                         f"{hub_io.WEIGHTS})")
    hub_io.check_destination(dst_dir, force=force, src_dir=src_dir)
    config_path = os.path.join(src_dir, CONFIG)
    hparams = hparams_from_config(hub_files.read_json(config_path), source=config_path)
    vocabulary = hub_files.read(src_dir, VOCAB, MERGES)
    checkpoint, _ = tensorflow_modules()
    import tensorflow as tf
    shapes = checkpoint.variable_shapes(hparams)
    # On the CPU: a GPU would only be a detour for the weights (and may not hold them).
    with hub_io.SafetensorsReader(src_dir) as reader, tf.device("/CPU:0"):
        keys, lm_head = match_tensors(reader, hparams)
        with hub_io.staged_directory(dst_dir) as stage:
            flat, done, total = {}, 0, 4 * sum(math.prod(s) for s in shapes.values())
            for name, key in keys.items():
                # One tensor at a time, the NumPy copy dropped once TensorFlow holds its
                # own. Not convert_to_tensor: its result keeps the array alive too (2x RSS).
                flat[name] = tf.identity(reader.read(key).reshape(shapes[name]))
                if name == "model/wte" and lm_head is not None:
                    check_tied(reader, lm_head, flat[name].numpy())
                done += 4 * math.prod(shapes[name])
                if progress is not None:
                    progress(done, total)
            try:
                checkpoint.save(checkpoint.tree_from_flat(flat, hparams), hparams, stage)
                hub_files.write(stage, vocabulary, ENCODER_JSON, VOCAB_BPE)
            except (tf.errors.OpError, OSError) as e:
                reason = getattr(e, "strerror", None) or checkpoint.first_line(e)
                raise ValueError(f"cannot write {dst_dir}: {reason}") from None


def match_tensors(reader: hub_io.SafetensorsReader, hparams: HParams
                  ) -> tuple[dict[str, str], str | None]:
    """{released variable name: the file's tensor name} in checkpoint order, and the
    name of `lm_head.weight` if the file has one, after checking every tensor's name, shape
    and dtype against config.json."""
    checkpoint, _ = tensorflow_modules()
    wanted, shapes = hub_names(hparams), checkpoint.variable_shapes(hparams)
    found, lm_head = {}, None
    config = (f"config.json (n_layer={hparams.n_layer}, n_embd={hparams.n_embd}, "
              f"n_positions={hparams.n_ctx}, vocab_size={hparams.n_vocab})")
    for key, path in reader.where.items():
        name = key[len(PREFIX):] if key.startswith(PREFIX) else key
        if MASK_BUFFER.fullmatch(name):
            continue  # a constant causal mask, rebuilt by the model
        if name == "lm_head.weight":
            lm_head, expected = key, [hparams.n_vocab, hparams.n_embd]
        elif name in wanted and wanted[name] not in found:
            found[wanted[name]], expected = key, hub_shape(shapes[wanted[name]])
        elif name in wanted:
            raise ValueError(f"{path}: tensor {name} appears twice ({found[wanted[name]]} "
                             f"and {key}): the file is not one GPT-2")
        else:
            raise ValueError(f"{path}: tensor {key} is not part of the GPT-2 that {config} "
                             f"describes: the file belongs to another model")
        if reader.shape(key) != expected:
            raise ValueError(f"{path}: tensor {key} has shape {reader.shape(key)} but "
                             f"{config} implies {expected}: the weights and config.json "
                             f"belong to different models")
        if reader.dtype(key) not in hub_io.FLOAT_DTYPES:
            raise ValueError(f"{path}: tensor {key} holds {reader.dtype(key)}, not "
                             f"floating-point weights: the file is not a GPT-2")
    missing = [hub for hub, name in wanted.items() if name not in found]
    if missing:
        raise ValueError(f"{', '.join(sorted(set(reader.where.values())))} has no tensor "
                         f"{missing[0]}, which {config} requires: the weights are "
                         f"incomplete or belong to another model")
    return {name: found[name] for name in shapes}, lm_head


def check_tied(reader: hub_io.SafetensorsReader, lm_head: str, wte) -> None:
    if not np.array_equal(reader.read(lm_head), wte):
        raise ValueError(f"{reader.where[lm_head]}: {lm_head} differs from wte.weight: "
                         f"GPT-2 computes its logits with wte (tied embeddings), so a "
                         f"separate output layer cannot be represented")


def released_to_hub(src_dir: str, dst_dir: str, *, force: bool = False,
                    progress: Progress | None = None) -> None:
    """A released-layout model directory (or a fine-tuning run directory) -> the Hub
    format: config.json, model.safetensors, vocab.json, merges.txt, tokenizer_config.json,
    generation_config.json and a README model card."""
    if detect_format(src_dir) != "released":
        raise ValueError(f"{src_dir} is not in the released layout ({HPARAMS}, "
                         f"model.ckpt.*)")
    hub_io.check_destination(dst_dir, force=force, src_dir=src_dir)
    checkpoint, model = tensorflow_modules()
    hparams = model.HParams.from_json(os.path.join(src_dir, HPARAMS))
    vocabulary = hub_files.read(src_dir, ENCODER_JSON, VOCAB_BPE)
    names = {name: hub for hub, name in hub_names(hparams).items()}
    tensors, done, total = {}, 0, 4 * sum(map(math.prod, checkpoint.variable_shapes(hparams)
                                                   .values()))
    prefix = checkpoint.checkpoint_prefix(src_dir)  # a training run's newest checkpoint
    for name, array in checkpoint.read_prefix(prefix, hparams):
        array = array.astype(np.float32, copy=False)  # no copy: float32 unless trained so
        tensors[names[name]] = array.reshape(hub_shape(array.shape))  # a view, no copy
        done += array.nbytes
        if progress is not None:
            progress(done, total)
    with hub_io.staged_directory(dst_dir) as stage:
        try:
            hub_io.write_safetensors(tensors, os.path.join(stage, hub_io.WEIGHTS))
            hub_files.write(stage, vocabulary, VOCAB, MERGES)
            for file, content in (
                    (CONFIG, config_from_hparams(hparams)),
                    (GENERATION_CONFIG, {"bos_token_id": EOT, "eos_token_id": EOT}),
                    (TOKENIZER_CONFIG, hub_files.tokenizer_config(hparams.n_ctx))):
                with open(os.path.join(stage, file), "w", encoding="utf-8") as f:
                    f.write(json.dumps(content, indent=2) + "\n")
            with open(os.path.join(stage, "README.md"), "w", encoding="utf-8") as f:
                f.write(hub_files.model_card(src_dir, hparams,
                                             checkpoint=os.path.basename(prefix)))
        except OSError as e:
            raise ValueError(f"cannot write {dst_dir}: {e.strerror or e}") from None
