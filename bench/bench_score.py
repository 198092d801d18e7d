"""Scoring speed: this project's `score.Scorer` against Hugging Face transformers (torch, CPU).

Both score the same token windows on the same random weights of the released shapes, each
in its own worker process, alternating run by run (median of the runs after a warm-up).
Settings: WikiText-like windows (batch 8 x 1024 tokens, every position scored) and
LAMBADA-like passages (batch 8 x 90 tokens, the last 2 scored). HF computes what the
lm-evaluation-harness computes: all logits, log-softmax, the targets' log-probs and argmax.
Prints a table and the estimated time for the full LAMBADA and WikiText-2 test sets per
model size, and writes JSON.

    python bench/bench_score.py                      # 124M, 5 runs
    python bench/bench_score.py --runs 3 --models 124M 355M --dtype bfloat16
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import random_checkpoint  # noqa: E402
import workers  # noqa: E402
from bench_sampling import HF  # noqa: E402

# name: (batch, tokens per window, scored positions per window)
SETTINGS = {"windows_8x1024": (8, 1024, 1024), "lambada_8x90": (8, 90, 2)}
# The test sets, in GPT-2 tokens (neither can be fetched here, so neither was counted here).
# LAMBADA: 5,153 passages; 90 tokens each is an assumption (the passages average about 75
# words plus punctuation). WikiText-2: 287,644 tokens, the length of the GPT-2 encoding of
# the wikitext-2-raw-v1 test split joined by blank lines, the input of Hugging Face's
# "perplexity of fixed-length models" guide, as reported by users of that guide; it agrees
# with the split's 245,569 word-level tokens (Merity et al. 2016) at ~1.17 BPE tokens per
# word. The harness scores the 62 articles separately, so each adds a partly filled window.
LAMBADA_PASSAGES = 5153
WIKITEXT2_TOKENS, WIKITEXT2_ARTICLES = 287_644, 62


def windows(batch: int, length: int, seed: int = 0):
    import numpy as np
    return np.random.default_rng(seed).integers(0, 50256, size=(batch, length + 1))


class Ours:
    def __init__(self, model_dir, dtype):
        import checkpoint
        import score
        import tensorflow as tf
        hparams, params = checkpoint.load(model_dir, dtype=getattr(tf, dtype))
        self.score, self.scorer = score, score.Scorer(params, hparams)

    def run(self, batch, length, scored):
        ws = [self.score.Window(tuple(row.tolist()), scored) for row in windows(batch, length)]
        out = self.scorer.score(ws, batch_size=batch)
        return float(sum(s.logprobs.sum() for s in out))


class Theirs:
    def __init__(self, model_dir, dtype):
        import torch
        self.torch, self.model = torch, HF(model_dir).model
        if dtype == "bfloat16":
            self.model = self.model.to(torch.bfloat16)

    def run(self, batch, length, scored):
        torch = self.torch
        tokens = torch.from_numpy(windows(batch, length))
        with torch.inference_mode():
            logits = self.model(tokens[:, :-1]).logits[:, -scored:]
            logprobs = torch.log_softmax(logits.float(), dim=-1)
            targets = tokens[:, -scored:]
            chosen = logprobs.gather(-1, targets[..., None])[..., 0]
            (logits.argmax(-1) == targets).all(-1)
        return float(chosen.double().sum())


def measure(model_name, runs, dtype):
    model_dir = random_checkpoint.ensure(model_name)
    rows = []
    with workers.Pool({"ours": functools.partial(Ours, model_dir, dtype),
                       "hf": functools.partial(Theirs, model_dir, dtype)}) as pool:
        for name, (batch, length, scored) in SETTINGS.items():
            # the warm-up call is also the one trace
            times, totals = pool.alternate("run", batch, length, scored, runs=runs)
            rows.append(dict(
                setting=name, model=model_name, dtype=dtype, batch=batch, length=length,
                scored=scored, **{f"{k}_seconds": v for k, v in times.items()},
                **{f"{k}_tokens_per_s": batch * length / statistics.median(v)
                   for k, v in times.items()},
                log_likelihood_ours=totals["ours"][-1], log_likelihood_hf=totals["hf"][-1]))
        rss = pool.peak_rss_mb()
    for row in rows:
        row.update(ours_peak_rss_mb=rss["ours"], hf_peak_rss_mb=rss["hf"])
    return rows


def flops_per_token(model_name: str, length: int = 1024) -> float:
    """Multiply-adds x 2 of one position of a full forward pass at `length` positions:
    the layers' matrices, attention over the window, and the logits."""
    h = random_checkpoint.SIZES[model_name]
    e, layers = h["n_embd"], h["n_layer"]
    return 2 * (12 * layers * e * e + 2 * layers * length * e + h["n_vocab"] * e)


def estimates(rows):
    """Estimated seconds for the full test sets, per size: the test set's tokens over the
    throughput measured for that size, else over 124M's measured throughput divided by the
    ratio of the forward pass's FLOPs per token (parameters and attention)."""
    by_model = {(r["model"], r["setting"]): r for r in rows}
    out = []
    for name in random_checkpoint.SIZES:
        entry = dict(model=name)
        for side in ("ours", "hf"):
            for setting, key in (("lambada_8x90", "lambada_s"), ("windows_8x1024", "wikitext2_s")):
                row = by_model.get((name, setting))
                source = f"{name}'s throughput measured here"
                if row is None:
                    base = by_model.get(("124M", setting))
                    if base is None:
                        continue
                    source = ("estimate: 124M's measured throughput / FLOPs-per-token "
                              "ratio (not measured)")
                    scale = (flops_per_token(name, base["length"]) /
                             flops_per_token("124M", base["length"]))
                    tps = base[f"{side}_tokens_per_s"] / scale
                else:
                    tps = row[f"{side}_tokens_per_s"]
                if setting == "lambada_8x90":
                    seconds = LAMBADA_PASSAGES * 90 / tps
                else:  # each article's last window is partly filled: count it whole
                    seconds = (WIKITEXT2_TOKENS + WIKITEXT2_ARTICLES * 512) / tps
                entry[f"{side}_{key}"] = seconds
                entry["source"] = source
        out.append(entry)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--models", nargs="*", default=["124M"],
                        choices=list(random_checkpoint.SIZES))
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--json", default=os.path.join(HERE, "results", "score.json"))
    args = parser.parse_args()
    rows, load_before = [], os.getloadavg()[0]
    for name in args.models:
        rows += measure(name, args.runs, args.dtype)
    result = dict(machine=dict(cpu=cpu_name(), cores=os.cpu_count(),
                               python=platform.python_version(),
                               load_average_before_after=[load_before, os.getloadavg()[0]]),
                  command=" ".join(["python"] + sys.argv), runs=args.runs, rows=rows,
                  estimates=estimates(rows))
    report(result)
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(result, f, indent=2)
    print(f"\nwrote {args.json}")


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    except OSError:
        names = []
    return names[0] if names else platform.processor() or platform.machine()


def report(result):
    m = result["machine"]
    print(f"{result['command']}\n{m['cpu']}, {m['cores']} cores, load average "
          f"{m['load_average_before_after'][0]:.1f} before / "
          f"{m['load_average_before_after'][1]:.1f} after")
    print(f"median of {result['runs']} runs each, alternating; tokens/s counts input positions")
    print("| model | dtype | setting | ours tok/s | HF tok/s | ours/HF "
          "| log-likelihood ours / HF |")
    print("|---|---|---|---|---|---|---|")
    for r in result["rows"]:
        ours, hf = r["ours_tokens_per_s"], r["hf_tokens_per_s"]
        print(f"| {r['model']} | {r['dtype']} | {r['setting']} | {ours:.1f} | {hf:.1f} | "
              f"{ours / hf:.2f}x | {r['log_likelihood_ours']:.2f} / "
              f"{r['log_likelihood_hf']:.2f} |")
    rss = {r["model"]: (r["ours_peak_rss_mb"], r["hf_peak_rss_mb"]) for r in result["rows"]}
    for model_name, (ours, hf) in rss.items():
        print(f"{model_name}: peak RSS ours {ours:.0f} MB, HF {hf:.0f} MB")
    print("\nEstimated time for the full test sets (LAMBADA: 5,153 passages of ~90 tokens; "
          "WikiText-2: 287,644 tokens in 62 articles):")
    print("| model | LAMBADA ours | LAMBADA HF | WikiText-2 ours | WikiText-2 HF | source |")
    print("|---|---|---|---|---|---|")
    for e in result["estimates"]:
        if "ours_lambada_s" in e:
            print(f"| {e['model']} | {minutes(e['ours_lambada_s'])} | {minutes(e['hf_lambada_s'])} "
                  f"| {minutes(e['ours_wikitext2_s'])} | {minutes(e['hf_wikitext2_s'])} | "
                  f"{e['source']} |")


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 60 else f"{seconds:.0f} s"


if __name__ == "__main__":
    main()
