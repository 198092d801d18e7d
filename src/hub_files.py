"""The small files beside the weights: GPT-2's vocabulary under both names (the release's
`encoder.json`/`vocab.bpe`, the Hub's `vocab.json`/`merges.txt` or, failing those, its
`tokenizer.json`: the same content), the Hub's tokenizer settings and a model card.

A vocabulary other than GPT-2's is refused: this project encodes text only with GPT-2's
byte-level BPE."""
from __future__ import annotations

import hashlib
import json
import os

# sha256 of the canonical forms `digests` hashes, computed from OpenAI's released
# encoder.json (file sha256 1961396...636783) and vocab.bpe (1ce1664...26adc5).
VOCAB_SHA256 = "e35d8b86ebd35ebd260d040aa455e09759f7e675f4dbb7f3d727516f27eca190"
MERGES_SHA256 = "04e3597d7996f292ca9b8b7285ca4d58a6ae171ac47d73fc7140ceb0c7a6bbc0"
N_TOKENS, N_MERGES = 50257, 50000
HEADER = "#version: 0.2"  # the first line of vocab.bpe and merges.txt


def digests(vocab, merges: list[str]) -> tuple[str, str]:
    """sha256 of the token -> id map (as sorted compact JSON) and of the merges ("a b"
    lines in rank order)."""
    canonical = json.dumps(vocab, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return (hashlib.sha256(canonical.encode()).hexdigest(),
            hashlib.sha256("\n".join(merges).encode("utf-8")).hexdigest())


def read_text(path: str, *, what: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        raise ValueError(f"{path} not found: {what}") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text (byte {e.start}): the file is damaged"
                         ) from None
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror}") from None


def read_json(path: str, *, what: str):
    try:
        return json.loads(read_text(path, what=what))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e.msg}, line {e.lineno}): the file is "
                         f"damaged or not what its name says") from None


def merge_lines(text: str) -> list[str]:
    """The merges of a vocab.bpe/merges.txt, without the header line and blank lines."""
    lines = text.split("\n")
    if lines and lines[0].startswith("#version"):
        lines = lines[1:]
    return [line for line in lines if line]


def read(model_dir: str, vocab_name: str, merges_name: str) -> tuple[dict, list[str]]:
    """(token -> id, merges) from `vocab_name` and `merges_name` in `model_dir`, checked to
    be GPT-2's. A Hub directory without them may have them inside `tokenizer.json`."""
    vocab_path, merges_path = (os.path.join(model_dir, n) for n in (vocab_name, merges_name))
    tokenizer = os.path.join(model_dir, "tokenizer.json")
    if (vocab_name == "vocab.json" and not os.path.exists(vocab_path)
            and not os.path.exists(merges_path) and os.path.isfile(tokenizer)):
        return read_tokenizer_json(tokenizer)
    what = (f"the model's vocabulary ({vocab_name} and {merges_name}) must be beside its "
            f"weights")
    vocab = read_json(vocab_path, what=what)
    merges = merge_lines(read_text(merges_path, what=what))
    check(vocab, merges, vocab_path=vocab_path, merges_path=merges_path)
    return vocab, merges


def read_tokenizer_json(path: str) -> tuple[dict, list[str]]:
    """The BPE model of a `tokenizers` file: its merges are "a b" strings or [a, b] pairs."""
    bpe = read_json(path, what="")
    bpe = bpe.get("model") if isinstance(bpe, dict) else None
    if not isinstance(bpe, dict) or bpe.get("type") != "BPE":
        raise ValueError(f"{path} holds no BPE model: the vocabulary is not GPT-2's")
    merges = [" ".join(m) if isinstance(m, list) else str(m) for m in bpe.get("merges") or []]
    vocab = bpe.get("vocab")
    check(vocab, merges, vocab_path=path, merges_path=path)
    return vocab, merges


def check(vocab, merges: list[str], *, vocab_path: str, merges_path: str) -> None:
    vocab_digest, merges_digest = digests(vocab, merges)
    for path, ok, found, wanted in (
            (vocab_path, vocab_digest == VOCAB_SHA256, vocab, f"{N_TOKENS} tokens"),
            (merges_path, merges_digest == MERGES_SHA256, merges, f"{N_MERGES} merges")):
        if not ok:
            size = f"{len(found)} entries" if isinstance(found, (dict, list)) else "no map"
            raise ValueError(f"{path} is not GPT-2's vocabulary ({size}; GPT-2's has "
                             f"{wanted}): this project encodes text only with GPT-2's "
                             f"byte-level BPE, so the model is not converted")


def write(model_dir: str, vocab: dict, merges: list[str], vocab_name: str,
          merges_name: str) -> None:
    """Writes the canonical files: ids in order as `json.dumps` writes them, merges after
    the header line, a newline after the last. For GPT-2's vocabulary these are OpenAI's
    encoder.json and vocab.bpe byte for byte, and transformers reads both."""
    ordered = dict(sorted(vocab.items(), key=lambda item: item[1]))
    with open(os.path.join(model_dir, vocab_name), "w", encoding="utf-8") as f:
        f.write(json.dumps(ordered))
    with open(os.path.join(model_dir, merges_name), "w", encoding="utf-8", newline="\n") as f:
        f.write(HEADER + "\n" + "\n".join(merges) + "\n")


def tokenizer_config(n_ctx: int) -> dict:
    """transformers' tokenizer settings for GPT-2: <|endoftext|> is its only special token."""
    eot = "<|endoftext|>"
    return {"tokenizer_class": "GPT2Tokenizer", "model_max_length": n_ctx,
            "bos_token": eot, "eos_token": eot, "unk_token": eot, "add_prefix_space": False}


def model_card(src_dir: str, hparams) -> str:
    """A short README that says what the model is and where it came from."""
    size = f"{hparams.n_layer} layers, {hparams.n_head} heads, n_embd {hparams.n_embd}"
    return (
        f"---\nlibrary_name: transformers\ntags: [gpt2]\n---\n"
        f"# GPT-2 ({size})\n\n"
        f"Converted by `convert_checkpoint.py` from the model directory "
        f"`{source_name(src_dir)}`, in OpenAI's released GPT-2 layout (a TensorFlow "
        f"checkpoint with hparams.json, encoder.json and vocab.bpe). The weights are the "
        f"same float32 values under the Hugging Face names, and the tokenizer is GPT-2's "
        f"(50,257 tokens).\n\n"
        f"| n_layer | n_head | n_embd | n_ctx | n_vocab |\n|---|---|---|---|---|\n"
        f"| {hparams.n_layer} | {hparams.n_head} | {hparams.n_embd} | {hparams.n_ctx} | "
        f"{hparams.n_vocab} |\n\n"
        f"Where the weights descend from OpenAI's GPT-2, the terms and intended uses of "
        f"OpenAI's GPT-2 model card apply.\n")


def source_name(src_dir: str) -> str:
    """The source's own name (`124M`), not the path to it on this machine."""
    return os.path.basename(os.path.normpath(os.path.abspath(src_dir)))
