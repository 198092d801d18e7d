"""Encode/decode throughput: this encoder vs the original algorithm vs tiktoken.

Usage: python bench/bench_encoder.py [--size-mb 5] [--repeats 3] [--long-mb 1]

All three run on the same deterministic mixed corpus (tests/encoder_helpers.make_corpus:
English, code, CJK/Arabic/Devanagari/Cyrillic and more, emoji, whitespace runs, digits).
"cold" is the first encode by a freshly built encoder (empty cache); "warm" is the same
encoder encoding the same text again. MB are 10**6 UTF-8 bytes of text.

A second table times one long pre-token (`--long-mb` of random letters, then of random
digits, with no space: one piece for GPT-2's pattern), the input that made BPE quadratic:
this encoder against tiktoken, alternating run by run (median and best of `--repeats`), and
the per-pass scan that short pieces still use (`Encoder._merge`, the original's order) on a
20 KB piece to show what the heap path replaces. Prints both tables and writes
bench/results/encoder.json.
"""

import argparse
import json
import os
import platform
import random
import statistics
import string
import sys
import time

import regex

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "src"), os.path.join(ROOT, "tests")]

import encoder  # noqa: E402
from encoder_helpers import (  # noqa: E402
    DATA_DIR, GPT2_PATTERN, OriginalEncoder, load_vocab, make_corpus, reference_tokenizer)


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


def measure(tokenizers, text, repeats):
    """Best-of-`repeats` seconds for cold encode, warm encode and decode, per tokenizer.

    The rounds interleave the tokenizers, so load from other processes on a shared machine
    falls on all of them alike.
    """
    times = {name: {"encode_cold": [], "encode_warm": [], "decode": []} for name in tokenizers}
    ids = {}
    for _ in range(repeats):
        for name, (build, encode, decode) in tokenizers.items():
            tok = build()
            seconds, ids[name] = timed(encode(tok), text)
            times[name]["encode_cold"].append(seconds)
            times[name]["encode_warm"].append(timed(encode(tok), text)[0])
            seconds, back = timed(decode(tok), ids[name])
            times[name]["decode"].append(seconds)
            assert back == text, f"{name}: decode(encode(corpus)) differs from the corpus"
    return {name: {k: min(v) for k, v in t.items()} for name, t in times.items()}, ids


def long_piece_rows(enc, ref, size_mb, repeats):
    """Seconds to encode one pre-token of `size_mb` MB, this encoder vs tiktoken."""
    rows = []
    rng = random.Random(7)
    for kind, alphabet in (("letters", string.ascii_letters), ("digits", string.digits)):
        text = "".join(rng.choice(alphabet) for _ in range(int(size_mb * 1e6)))
        assert len(enc.pat.findall(text)) == 1
        times = {"this encoder": [], "tiktoken (Rust)": []}
        ids = {}
        for _ in range(repeats):  # alternate the two, so load falls on both alike
            for name, encode in (("this encoder", enc.encode),
                                 ("tiktoken (Rust)", ref.encode_ordinary)):
                seconds, ids[name] = timed(encode, text)
                times[name].append(seconds)
        small = text[:20_000]
        word = small.encode("utf-8").decode("latin-1").translate(enc.byte_encoder)
        scan = timed(enc._merge, list(word))[0]
        rows.append({"kind": kind, "bytes": len(text),
                     "identical_ids": ids["this encoder"] == ids["tiktoken (Rust)"],
                     "n_tokens": len(ids["this encoder"]),
                     **{f"{name} median_s": statistics.median(t) for name, t in times.items()},
                     **{f"{name} best_s": min(t) for name, t in times.items()},
                     "per-pass scan, 20 KB piece_s": scan})
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--long-mb", type=float, default=1.0)
    args = parser.parse_args()

    text = make_corpus(int(args.size_mb * 1e6), seed=args.seed)
    n_bytes = len(text.encode("utf-8"))
    vocab, merges = load_vocab()
    ref = reference_tokenizer()

    tokenizers = {
        "original algorithm": (lambda: OriginalEncoder(vocab, merges),
                               lambda t: t.encode, lambda t: t.decode),
        "this encoder": (lambda: encoder.get_encoder(os.path.basename(DATA_DIR),
                                                     os.path.dirname(DATA_DIR)),
                         lambda t: t.encode, lambda t: t.decode),
        "tiktoken (Rust)": (lambda: ref, lambda t: t.encode_ordinary, lambda t: t.decode),
    }
    seconds, ids = measure(tokenizers, text, args.repeats)
    rows = [{"name": name, **{k: n_bytes / v / 1e6 for k, v in t.items()},
             "n_tokens": len(ids[name])} for name, t in seconds.items()]
    all_ids = list(ids.values())
    same = all(i == all_ids[0] for i in all_ids)

    pattern = regex.compile(GPT2_PATTERN)
    split = min(timed(pattern.findall, text)[0] for _ in range(args.repeats))

    base = rows[0]
    print(f"corpus: {n_bytes / 1e6:.2f} MB, {len(all_ids[0])} tokens, seed {args.seed}; "
          f"identical ids from all three: {same}")
    print(f"{'':20} {'encode cold':>12} {'encode warm':>12} {'decode':>10}   (MB/s; x original)")
    for row in rows:
        cells = [f"{row[k]:6.2f} {row[k] / base[k]:4.1f}x"
                 for k in ("encode_cold", "encode_warm", "decode")]
        print(f"{row['name']:20} {cells[0]:>12} {cells[1]:>12} {cells[2]:>10}")
    print(f"regex pre-tokenizing pass alone: {n_bytes / split / 1e6:.2f} MB/s")

    enc = tokenizers["this encoder"][0]()
    long_rows = long_piece_rows(enc, ref, args.long_mb, args.repeats)
    print(f"\none pre-token of {args.long_mb:g} MB (goal: under 5 s); seconds, median (best) "
          f"of {args.repeats}, alternating")
    print(f"{'':10} {'this encoder':>16} {'tiktoken':>16} {'same ids':>9}   "
          f"per-pass scan of 20 KB")
    for row in long_rows:
        print(f"{row['kind']:10} {row['this encoder median_s']:8.2f} "
              f"({row['this encoder best_s']:5.2f}) {row['tiktoken (Rust) median_s']:8.3f} "
              f"({row['tiktoken (Rust) best_s']:5.3f}) {str(row['identical_ids']):>9}   "
              f"{row['per-pass scan, 20 KB piece_s']:.1f} s")
    same = same and all(row["identical_ids"] for row in long_rows)

    result = {"corpus_bytes": n_bytes, "long_piece": long_rows, "seed": args.seed, "repeats": args.repeats,
              "identical_ids": same, "regex_split_mb_s": n_bytes / split / 1e6,
              "python": sys.version.split()[0], "machine": platform.machine(),
              "cpu_count": os.cpu_count(), "rows": rows,
              "ratios_vs_original": {row["name"]: {k: row[k] / base[k] for k in
                                                   ("encode_cold", "encode_warm", "decode")}
                                     for row in rows}}
    out_dir = os.path.join(ROOT, "bench", "results")
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "encoder.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
    if not same:
        sys.exit("the three tokenizers disagree on the corpus")


if __name__ == "__main__":
    main()
