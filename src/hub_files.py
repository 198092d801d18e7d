"""The small files beside the weights: GPT-2's vocabulary under both names (the release's
`encoder.json`/`vocab.bpe`, the Hub's `vocab.json`/`merges.txt` or, failing those, its
`tokenizer.json`: the same content), the Hub's tokenizer settings and a model card.

A vocabulary other than GPT-2's is refused: this project encodes text only with GPT-2's
byte-level BPE."""
from __future__ import annotations

import hashlib
import json
import os

# GPT-2's vocabulary is OpenAI's released encoder.json and vocab.bpe, identified by their
# sha256. Any other file is parsed and brought to that canonical form (ids in order as
# `json.dumps` writes them; merges after a header line, a newline after the last): it is
# GPT-2's vocabulary if the result has the same digest.
ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
HEADER = "#version: 0.2"  # the first line of vocab.bpe and merges.txt
NOT_GPT2 = ("is not GPT-2's vocabulary (50257 tokens, 50000 merges): this project encodes "
            "text only with GPT-2's byte-level BPE, so the model is not converted")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_bytes(path: str, *, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise ValueError(f"{path} not found: {what}") from None
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror}") from None


def parse_json(data: bytes, path: str):
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text (byte {e.start}): the file is damaged"
                         ) from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e.msg}, line {e.lineno}): the file is "
                         f"damaged or not what its name says") from None


def read_json(path: str):
    return parse_json(read_bytes(path, what="it is needed"), path)


def canonical_vocab(vocab, path: str) -> bytes:
    if not isinstance(vocab, dict) or not all(type(i) is int for i in vocab.values()):
        raise ValueError(f"{path} is not a map from tokens to integer ids: it {NOT_GPT2}")
    data = json.dumps(dict(sorted(vocab.items(), key=lambda item: item[1]))).encode()
    if sha256(data) != ENCODER_JSON_SHA256:
        raise ValueError(f"{path} ({len(vocab)} tokens) {NOT_GPT2}")
    return data


def canonical_merges(merges: list[str], path: str) -> bytes:
    data = (HEADER + "\n" + "".join(m + "\n" for m in merges)).encode("utf-8")
    if sha256(data) != VOCAB_BPE_SHA256:
        raise ValueError(f"{path} ({len(merges)} merges) {NOT_GPT2}")
    return data


def merge_lines(data: bytes, path: str) -> list[str]:
    """The merges of a vocab.bpe/merges.txt, without the header line and blank lines."""
    try:
        lines = data.decode("utf-8").split("\n")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text (byte {e.start}): the file is damaged"
                         ) from None
    if lines and lines[0].startswith("#version"):
        lines = lines[1:]
    return [line for line in lines if line]


def read(model_dir: str, vocab_name: str, merges_name: str) -> tuple[bytes, bytes]:
    """GPT-2's vocabulary from `vocab_name` and `merges_name` in `model_dir`, as the bytes
    of the canonical encoder.json and vocab.bpe; anything else is refused. A Hub directory
    without those two files may hold them inside `tokenizer.json`."""
    vocab_path, merges_path = (os.path.join(model_dir, n) for n in (vocab_name, merges_name))
    tokenizer = os.path.join(model_dir, "tokenizer.json")
    if (vocab_name == "vocab.json" and not os.path.exists(vocab_path)
            and not os.path.exists(merges_path) and os.path.isfile(tokenizer)):
        return read_tokenizer_json(tokenizer)
    what = f"the vocabulary ({vocab_name} and {merges_name}) must be beside the weights"
    vocab, merges = (read_bytes(path, what=what) for path in (vocab_path, merges_path))
    if sha256(vocab) != ENCODER_JSON_SHA256:  # OpenAI's own files need no parsing
        vocab = canonical_vocab(parse_json(vocab, vocab_path), vocab_path)
    if sha256(merges) != VOCAB_BPE_SHA256:
        merges = canonical_merges(merge_lines(merges, merges_path), merges_path)
    return vocab, merges


def read_tokenizer_json(path: str) -> tuple[bytes, bytes]:
    """The BPE model of a `tokenizers` file: its merges are "a b" strings or [a, b] pairs."""
    bpe = read_json(path)
    bpe = bpe.get("model") if isinstance(bpe, dict) else None
    if not isinstance(bpe, dict) or bpe.get("type") != "BPE":
        raise ValueError(f"{path} holds no BPE model: it {NOT_GPT2}")
    merges = [" ".join(m) if isinstance(m, list) else str(m) for m in bpe.get("merges") or []]
    return canonical_vocab(bpe.get("vocab"), path), canonical_merges(merges, path)


def write(model_dir: str, vocabulary: tuple[bytes, bytes], vocab_name: str,
          merges_name: str) -> None:
    """Writes what `read` returned under these names; for the released names, these are
    OpenAI's files byte for byte, and transformers reads them under the Hub's names."""
    for name, data in zip((vocab_name, merges_name), vocabulary):
        with open(os.path.join(model_dir, name), "wb") as f:
            f.write(data)


def tokenizer_config(n_ctx: int) -> dict:
    """transformers' tokenizer settings for GPT-2: <|endoftext|> is its only special token."""
    eot = "<|endoftext|>"
    return {"tokenizer_class": "GPT2Tokenizer", "model_max_length": n_ctx,
            "bos_token": eot, "eos_token": eot, "unk_token": eot, "add_prefix_space": False}


def model_card(src_dir: str, hparams, *, checkpoint: str) -> str:
    """A short README that says what the model is and where it came from; `checkpoint` is
    the name of the checkpoint read (`model.ckpt`, or a training run's `model-<step>`)."""
    size = f"{hparams.n_layer} layers, {hparams.n_head} heads, n_embd {hparams.n_embd}"
    source = ("the model directory" if checkpoint == "model.ckpt" else
              f"checkpoint `{checkpoint}` of the training run directory")
    return (
        f"---\nlibrary_name: transformers\ntags: [gpt2]\n---\n"
        f"# GPT-2 ({size})\n\n"
        f"Converted by `convert_checkpoint.py` from {source} `{source_name(src_dir)}`, in "
        f"OpenAI's released GPT-2 layout (a TensorFlow checkpoint with hparams.json, "
        f"encoder.json and vocab.bpe). The weights are the "
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
