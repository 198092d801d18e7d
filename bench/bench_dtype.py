"""What `--dtype bfloat16` does: speed against float32, and how far the outputs move.

On random weights of the 124M shape (speed does not depend on the values; the output
differences are only indicative, real weights may differ): tokens/s at batch 1 and 8
(median of the runs, top_k 40), the largest logit difference on a 64-token prompt, and how
many of 50 greedy tokens agree. Prints a table and writes JSON.

    python bench/bench_dtype.py [--runs 3]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(os.path.dirname(HERE), "src")]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import checkpoint  # noqa: E402
import model  # noqa: E402
import random_checkpoint  # noqa: E402
import sample  # noqa: E402


def tokens_per_s(params, hparams, *, batch, runs, length=128) -> float:
    sampler = sample.Sampler(params, hparams, top_k=40)
    context = np.ones([batch, 1], np.int32)
    sample.sample_sequence(params=params, hparams=hparams, length=8, context=context,
                           sampler=sampler)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        sample.sample_sequence(params=params, hparams=hparams, length=length,
                               context=context, sampler=sampler)
        times.append(time.perf_counter() - start)
    return batch * length / statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", default=os.path.join(HERE, "results", "dtype.json"))
    args = parser.parse_args()
    model_dir = random_checkpoint.ensure("124M")
    loaded = {name: checkpoint.load(model_dir, dtype=getattr(tf, name))
              for name in ("float32", "bfloat16")}
    hparams = loaded["float32"][0]
    prompt = np.random.default_rng(0).integers(0, hparams.n_vocab, (1, 64))
    logits = {name: tf.cast(model.model(params, prompt, hparams=h)["logits"], tf.float32)
              for name, (h, params) in loaded.items()}
    greedy = {name: sample.sample_sequence(params=params, hparams=h, length=50,
                                           context=prompt[0, :8], temperature=0)[0, 8:]
              for name, (h, params) in loaded.items()}
    result = dict(
        max_abs_logit_difference=float(tf.reduce_max(tf.abs(
            logits["float32"] - logits["bfloat16"]))),
        logit_range=float(tf.reduce_max(tf.abs(logits["float32"]))),
        greedy_tokens_agreeing=int(np.sum(greedy["float32"] == greedy["bfloat16"])),
        greedy_tokens_first_difference=int(np.argmax(greedy["float32"] != greedy["bfloat16"])
                                           if (greedy["float32"] != greedy["bfloat16"]).any()
                                           else 50),
        speed={f"{name}_b{batch}": tokens_per_s(params, h, batch=batch, runs=args.runs)
               for batch in (1, 8) for name, (h, params) in loaded.items()})
    print("| batch | float32 tok/s | bfloat16 tok/s |")
    print("|---|---|---|")
    for batch in (1, 8):
        print(f"| {batch} | {result['speed'][f'float32_b{batch}']:.1f} | "
              f"{result['speed'][f'bfloat16_b{batch}']:.1f} |")
    print(f"largest logit difference {result['max_abs_logit_difference']:.3f} (logits up to "
          f"{result['logit_range']:.2f}); greedy tokens agreeing "
          f"{result['greedy_tokens_agreeing']}/50, first difference at token "
          f"{result['greedy_tokens_first_difference']}")
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
