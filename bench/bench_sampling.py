"""Sampling speed: this project against Hugging Face transformers (torch, CPU).

Both run in their own worker process on the same random weights of the released shapes,
fp32, top_k 40, alternating run by run. Prints a table (tokens/s, ratio to HF and to the
memory-bandwidth ceiling measured here, time to first token, peak RSS) and writes JSON.

    python bench/bench_sampling.py                 # every setting, 5 runs each
    python bench/bench_sampling.py --runs 3 --only b1_256
    python bench/bench_sampling.py --load_rss 1558M  # peak RSS while loading
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import random_checkpoint  # noqa: E402
import workers  # noqa: E402

# name: (model, batch, prompt tokens, new tokens). GPT-2 has 1024 positions, so the long
# run is a 1-token prompt and 1023 new tokens.
SETTINGS = {
    "b1_256": ("124M", 1, 1, 256),
    "b8_256": ("124M", 8, 1, 256),
    "b1_512+256": ("124M", 1, 512, 256),
    "b1_1023": ("124M", 1, 1, 1023),
    "355M_b1_256": ("355M", 1, 1, 256),
}
TOP_K = 40


def weight_bytes(model_name: str) -> int:
    """Bytes of matmul weights read per decoding step (fp32), the bandwidth-bound part."""
    h = random_checkpoint.SIZES[model_name]
    return 4 * (h["n_layer"] * 12 * h["n_embd"] ** 2 + h["n_vocab"] * h["n_embd"])


def prompt(n: int, batch: int):
    import numpy as np
    return np.random.default_rng(n).integers(0, 50256, size=(batch, n)).astype("int32")


class Ours:
    def __init__(self, model_dir):
        import checkpoint
        import sample
        self.sample = sample
        self.hparams, self.params = checkpoint.load(model_dir)
        self.sampler = sample.Sampler(self.params, self.hparams, top_k=TOP_K)
        self.interactive = sample.Sampler(self.params, self.hparams)

    def generate(self, context, length):
        out = self.sample.sample_sequence(params=self.params, hparams=self.hparams,
                                          length=length, context=context,
                                          sampler=self.sampler)
        assert out.shape == (context.shape[0], context.shape[1] + length), out.shape
        return out

    def first_token(self, context):
        return next(self.sample.stream_sequence(self.interactive, context, length=100))

    def greedy(self, context, length):
        out = self.sample.sample_sequence(params=self.params, hparams=self.hparams,
                                          length=length, context=context, temperature=0)
        return out[0, context.shape[1]:].tolist()


class HF:
    def __init__(self, model_dir):
        # No TensorFlow in this process: two OpenMP runtimes in one process slow both.
        import numpy as np
        import torch
        from transformers import GPT2Config, GPT2LMHeadModel
        self.torch = torch
        h = random_checkpoint.SIZES[os.path.basename(model_dir)]
        weights = np.load(os.path.join(model_dir, random_checkpoint.NPZ))
        config = GPT2Config(vocab_size=h["n_vocab"], n_positions=h["n_ctx"],
                            n_embd=h["n_embd"], n_layer=h["n_layer"], n_head=h["n_head"])
        self.model = GPT2LMHeadModel(config).eval()
        state = {}
        for name in weights.files:
            value = weights[name]
            value = value[0] if value.ndim == 3 else value  # conv1d [1, nx, nf] -> [nx, nf]
            state[hf_name(name)] = torch.from_numpy(np.ascontiguousarray(value))
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        assert not unexpected and set(missing) <= {"lm_head.weight"}, (missing, unexpected)
        self.model.tie_weights()
        self.model.generation_config.eos_token_id = None
        self.model.generation_config.pad_token_id = 50256

    def generate(self, context, length, **options):
        with self.torch.inference_mode():
            options = options or dict(do_sample=True, top_k=TOP_K, top_p=1.0)
            out = self.model.generate(self.torch.from_numpy(context).long(),
                                      max_new_tokens=length, min_new_tokens=length,
                                      **options)
        assert tuple(out.shape) == (context.shape[0], context.shape[1] + length)
        return out.numpy()

    def first_token(self, context):
        return self.generate(context, 1, do_sample=True)

    def greedy(self, context, length):
        return self.generate(context, length, do_sample=False)[0, context.shape[1]:].tolist()


def hf_name(name: str) -> str:
    """model/h3/attn/c_attn/w -> transformer.h.3.attn.c_attn.weight (HF's GPT-2 names)."""
    parts = name.split("/")[1:]
    if parts[0] in ("wte", "wpe"):
        return f"transformer.{parts[0]}.weight"
    if parts[0][0] == "h" and parts[0][1:].isdigit():
        parts[:1] = ["h", parts[0][1:]]
    parts[-1] = "bias" if parts[-1] == "b" else "weight"
    return "transformer." + ".".join(parts)


def bandwidth_gbs() -> float:
    """Read bandwidth of a reduction over 1 GiB with TensorFlow, best of 5."""
    import tensorflow as tf
    x = tf.ones([256 * 1024 * 1024])
    best = float("inf")
    for _ in range(6):
        start = time.perf_counter()
        tf.reduce_sum(x).numpy()
        best = min(best, time.perf_counter() - start)
    return x.shape[0] * 4 / best / 1e9


def measure(model_name, settings, runs):
    model_dir = random_checkpoint.ensure(model_name)
    with workers.Pool({"ours": functools.partial(Ours, model_dir),
                       "hf": functools.partial(HF, model_dir)}) as pool:
        greedy = {kind: pool.call(kind, "greedy", prompt(7, 1), 20)[1] for kind in pool.names}
        rows = []
        for name in settings:
            _, batch, n_prompt, new = SETTINGS[name]
            times, _ = pool.alternate("generate", prompt(n_prompt, batch), new, runs=runs)
            rows.append(dict(setting=name, model=model_name, batch=batch, prompt=n_prompt,
                             new=new, **{f"{k}_tokens_per_s": batch * new / statistics.median(v)
                                         for k, v in times.items()},
                             **{f"{k}_seconds": v for k, v in times.items()}))
        ttft = {}
        for kind in pool.names:
            pool.call(kind, "first_token", prompt(20, 1))  # one prompt answered already
            ttft[kind] = pool.call(kind, "first_token", prompt(333, 1))[0]  # then a new one
        rss = pool.peak_rss_mb()
    for row in rows:
        row.update(ours_ttft_s=ttft["ours"], hf_ttft_s=ttft["hf"], ours_peak_rss_mb=rss["ours"],
                   hf_peak_rss_mb=rss["hf"], greedy_tokens_equal=greedy["ours"] == greedy["hf"])
    return rows


def load_rss(model_name):
    """Peak RSS of a fresh process that loads `model_name`'s weights, vs the data file."""
    model_dir = random_checkpoint.ensure(model_name, npz=False)
    code = ("import sys, checkpoint, workers; checkpoint.load(sys.argv[1]); "
            "print(int(workers.peak_rss_mb() * 1024 * 1024))")
    import subprocess
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([workers.SRC, HERE]),
               TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run([sys.executable, "-c", code, model_dir], capture_output=True,
                         text=True, env=env, check=True).stdout
    data = os.path.getsize(os.path.join(model_dir, "model.ckpt.data-00000-of-00001"))
    peak = int(out.split()[-1])
    return dict(model=model_name, data_file_bytes=data, peak_rss_bytes=peak,
                ratio=peak / data)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--only", nargs="*", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--load_rss", nargs="*", default=[], metavar="MODEL")
    parser.add_argument("--json", default=os.path.join(HERE, "results", "sampling.json"))
    args = parser.parse_args()
    result = dict(machine=machine(), bandwidth_gb_s=bandwidth_gbs(), rows=[], load=[])
    for model_name in dict.fromkeys(SETTINGS[s][0] for s in args.only):
        chosen = [s for s in args.only if SETTINGS[s][0] == model_name]
        result["rows"] += measure(model_name, chosen, args.runs)
    result["load"] = [load_rss(name) for name in args.load_rss]
    report(result)
    write(args.json, result)


def machine() -> dict:
    return dict(cpu=platform.processor() or platform.machine(), cores=os.cpu_count(),
                python=platform.python_version())


def write(path: str, result: dict) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    print(f"\nwrote {path}")


def report(result):
    bw = result["bandwidth_gb_s"]
    print(f"memory bandwidth (measured): {bw:.1f} GB/s")
    print("| setting | ours tok/s | HF tok/s | ours/HF | ceiling tok/s | ours/ceiling |")
    print("|---|---|---|---|---|---|")
    for row in result["rows"]:
        ceiling = bw * 1e9 / weight_bytes(row["model"]) * row["batch"]
        ours, hf = row["ours_tokens_per_s"], row["hf_tokens_per_s"]
        row["ceiling_tokens_per_s"] = ceiling
        print(f"| {row['setting']} | {ours:.1f} | {hf:.1f} | {ours / hf:.2f}x | "
              f"{ceiling:.0f} | {ours / ceiling:.0%} |")
    for model_name in dict.fromkeys(r["model"] for r in result["rows"]):
        row = next(r for r in result["rows"] if r["model"] == model_name)
        print(f"{model_name}: time to first token of a new prompt (333 tokens) ours "
              f"{row['ours_ttft_s']:.2f} s, HF {row['hf_ttft_s']:.2f} s; peak RSS ours "
              f"{row['ours_peak_rss_mb']:.0f} MB, HF {row['hf_peak_rss_mb']:.0f} MB; "
              f"greedy tokens equal: {row['greedy_tokens_equal']}")
    for load in result["load"]:
        print(f"loading {load['model']}: peak RSS {load['peak_rss_bytes'] / 1e9:.2f} GB = "
              f"{load['ratio']:.2f}x the data file ({load['data_file_bytes'] / 1e9:.2f} GB)")


if __name__ == "__main__":
    main()
