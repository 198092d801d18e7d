"""Quality of LiteRT int8 against float32 on a small GPT-2 trained here, on held-out text.

Random weights say little about quantization error (their logits are spread unlike a
trained model's), so this trains a small model on English text found offline on this
machine (Python's pydoc topics, package documentation, man pages), holds every tenth
document out, and compares int8 with float32 there:

    python bench/litert_quality.py corpus      # bench/cache/quality/{train.jsonl, heldout.txt}
    python bench/litert_quality.py init        # bench/cache/quality/models/small (random)
    python bench/litert_quality.py subset      # heldout-100k.txt: its first 100,000 characters
    python train.py --dataset bench/cache/quality/train.jsonl ...   (see DEVELOPERS.md)
    python evaluate.py text --data bench/cache/quality/heldout.txt --backend litert ...
    python bench/litert_quality.py agreement --model_dir checkpoint/small  # greedy, 200

`agreement` greedy-decodes 200 tokens after each of 20 held-out prompts with float32 and
counts how often int8 picks the same next token given float32's text (teacher-forced), and
how many tokens the free-running int8 sample keeps before it first differs.
"""
from __future__ import annotations

import argparse
import glob
import gzip
import hashlib
import json
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "src"))
OUT = os.path.join(HERE, "cache", "quality")
# A small GPT-2 that trains in about an hour on 2 cores; the released vocabulary.
SMALL = dict(n_vocab=50257, n_ctx=256, n_embd=256, n_head=4, n_layer=4)
DOC_NAMES = re.compile(r"readme|\.md|\.txt|\.rst|faq|howto|guide", re.I)


def documents():
    """(name, text) of every document, in a fixed order."""
    import pydoc_data.topics
    for name, text in sorted(pydoc_data.topics.topics.items()):
        yield f"pydoc:{name}", text
    for path in sorted(glob.glob("/usr/share/doc/**/*", recursive=True)):
        base = os.path.basename(path).lower()
        if (os.path.islink(path) or not os.path.isfile(path) or not DOC_NAMES.search(base)
                or base.startswith(("changelog", "copyright"))):
            continue
        try:
            raw = gzip.open(path).read() if path.endswith(".gz") else open(path, "rb").read()
            yield path, raw.decode("utf-8")
        except (OSError, UnicodeDecodeError, EOFError):
            continue
    env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8")
    for path in sorted(glob.glob("/usr/share/man/man[2578]/*")):
        if os.path.islink(path):
            continue
        text = subprocess.run(f"man -l '{path}' 2>/dev/null | col -bx", shell=True, env=env,
                              capture_output=True).stdout.decode("utf-8", "replace")
        if text.strip():
            yield path, text


def corpus(heldout_chars: int = 500_000) -> None:
    """Writes train.jsonl (one document per line) and heldout.txt (every tenth document by
    a hash of its name, joined by blank lines, up to `heldout_chars`; held-out documents
    past that are used nowhere)."""
    os.makedirs(OUT, exist_ok=True)
    counts = {"train": [0, 0], "heldout": [0, 0]}
    with open(os.path.join(OUT, "train.jsonl"), "w", encoding="utf-8") as train, \
            open(os.path.join(OUT, "heldout.txt"), "w", encoding="utf-8") as heldout:
        for name, text in documents():
            text = re.sub(r"[ \t]+\n", "\n", text).strip()
            if len(text) < 200:
                continue
            held = int(hashlib.sha1(name.encode()).hexdigest(), 16) % 10 == 0
            if held and counts["heldout"][1] >= heldout_chars:
                continue
            if held:
                heldout.write(text + "\n\n")
            else:
                train.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
            side = counts["heldout" if held else "train"]
            side[0], side[1] = side[0] + 1, side[1] + len(text)
    for side, (docs, chars) in counts.items():
        print(f"{side}: {docs} documents, {chars / 1e6:.1f} M characters")


def subset(chars: int = 100_000) -> str:
    """heldout-100k.txt: heldout.txt's first paragraphs, up to the one that reaches `chars`
    characters (scoring all of it takes long on LiteRT, one position per step)."""
    text = open(os.path.join(OUT, "heldout.txt"), encoding="utf-8").read()
    kept, n = [], 0
    for paragraph in text.split("\n\n"):
        if n >= chars:
            break
        kept.append(paragraph)
        n += len(paragraph) + 2
    path = os.path.join(OUT, f"heldout-{chars // 1000}k.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n\n".join(kept) + "\n")
    print(path)
    return path


def init(path: str) -> None:
    """A randomly initialised model of SMALL's shape (GPT-2's N(0, 0.02)), with the real
    vocabulary, for train.py to start from."""
    sys.path.insert(0, HERE)
    import shutil
    import checkpoint
    import random_checkpoint
    hparams = checkpoint.HParams(**SMALL)
    flat = random_checkpoint.random_weights(hparams, seed=0)
    checkpoint.save(checkpoint.tree_from_flat(flat, hparams), hparams, path)
    for name in ("encoder.json", "vocab.bpe"):
        shutil.copy(os.path.join(ROOT, "tests", "data", name), os.path.join(path, name))
    print(path)


def agreement(model_dir: str, prompts: int = 20, length: int = 200) -> dict:
    import numpy as np
    import encoder
    import litert_runtime
    text = open(os.path.join(OUT, "heldout.txt"), encoding="utf-8").read()
    enc = encoder.get_encoder(os.path.basename(model_dir), os.path.dirname(model_dir))
    ids = enc.encode(text)
    fp32 = litert_runtime.load(model_dir, dtype="float32")
    int8 = litert_runtime.load(model_dir, dtype="int8")
    rng = np.random.default_rng(0)
    same, kept = 0, []
    for start in rng.integers(0, len(ids) - 64, size=prompts):
        prompt = np.asarray([ids[start:start + 32]], np.int32)
        ours = [int(fp32.prefill(prompt, 32 + length).argmax(-1)[0])]
        for pos in range(32, 32 + length - 1):
            ours.append(int(fp32.step(np.asarray([ours[-1]]), pos).argmax(-1)[0]))
        theirs = [int(int8.prefill(prompt, 32 + length).argmax(-1)[0])]
        for pos in range(32, 32 + length - 1):  # teacher-forced on float32's tokens
            theirs.append(int(int8.step(np.asarray([ours[pos - 32]]), pos).argmax(-1)[0]))
        agree = [a == b for a, b in zip(ours, theirs)]
        same += sum(agree)
        kept.append(agree.index(False) if False in agree else length)
    result = dict(prompts=prompts, length=length, teacher_forced_agreement=same / (prompts * length),
                  median_tokens_before_first_difference=float(np.median(kept)))
    print(json.dumps(result))
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=["corpus", "init", "subset", "agreement"])
    parser.add_argument("--model_dir", default=os.path.join(OUT, "models", "small"))
    args = parser.parse_args()
    if args.step == "corpus":
        corpus()
    elif args.step == "init":
        init(args.model_dir)
    elif args.step == "subset":
        subset()
    else:
        agreement(args.model_dir)


if __name__ == "__main__":
    main()
