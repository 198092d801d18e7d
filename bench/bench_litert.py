"""LiteRT sampling speed (float32, int8) against Hugging Face transformers, the one-time
export's cost, and the memory of sampling.

Each engine runs in its own worker process on the same random weights of the released
shapes, top_k 40, alternating run by run (HF, then each LiteRT dtype, then HF again...);
the table gives median tokens/s and the ratio to HF from that one alternating run. Exports
are made first, each in a process of its own, so that a worker's peak RSS is sampling's.

    python bench/bench_litert.py                                # speed, 124M, 5 runs
    python bench/bench_litert.py --runs 3 --only b1_256 b8_256
    python bench/bench_litert.py --export 124M 355M --dtypes int8 float32  # export cost
    python bench/bench_litert.py --sample_rss 1558M             # int8 sampling memory
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import bench_sampling  # noqa: E402
import random_checkpoint  # noqa: E402
import workers  # noqa: E402
from bench_sampling import TOP_K  # noqa: E402

# name: (batch, prompt tokens, new tokens, engines). The long run starts from one token,
# so LiteRT's cache grows through every bucket (128 ... 1024) during the sample.
SETTINGS = {
    "b1_256": (1, 1, 256, ("hf", "litert-float32", "litert-int8")),
    "b8_256": (8, 1, 256, ("hf", "litert-float32", "litert-int8")),
    "b1_1023": (1, 1, 1023, ("hf", "litert-int8")),
}


class LiteRT:
    def __init__(self, model_dir: str, *, dtype: str):
        import litert_runtime
        import sample
        self.sample = sample
        self.runtime = litert_runtime.load(model_dir, dtype=dtype)  # exported beforehand
        self.sampler = litert_runtime.Sampler(self.runtime, top_k=TOP_K)

    def generate(self, context, length):
        out = self.sample.sample_sequence(params=None, hparams=self.runtime.hparams,
                                          length=length, context=context,
                                          sampler=self.sampler)
        assert out.shape == (context.shape[0], context.shape[1] + length), out.shape
        return out


def engine(kind: str, model_dir: str):
    """The worker factory for `kind`: hf, tf (this project's TF path), litert-float32/int8."""
    if kind.startswith("litert-"):
        return functools.partial(LiteRT, model_dir, dtype=kind.split("-", 1)[1])
    return functools.partial(bench_sampling.Ours if kind == "tf" else bench_sampling.HF,
                             model_dir)


def in_subprocess(code: str, *args: str) -> dict:
    """Runs `code` (which prints one JSON object last) in a fresh Python with src/ and
    bench/ on the path; workers.peak_rss_mb() there is the code's own."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([workers.SRC, HERE]),
               TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run([sys.executable, "-c", code, *args], env=env, check=True,
                         stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


EXPORT = """
import json, os, shutil, sys, time
import litert_store, workers
model_dir, dtype = sys.argv[1:3]
shutil.rmtree(os.path.join(litert_store.export_dir(model_dir)), ignore_errors=True) \\
    if sys.argv[3] == "fresh" else None
start = time.perf_counter()
paths = litert_store.ensure(model_dir, dtype=dtype,
                            progress=lambda m: print(m, file=sys.stderr, flush=True))
print(json.dumps(dict(seconds=time.perf_counter() - start, parts=len(paths),
                      bytes=sum(os.path.getsize(p) for p in paths),
                      peak_rss_bytes=int(workers.peak_rss_mb() * 2**20))))
"""


def export(model_name: str, dtype: str, *, fresh: bool) -> dict:
    model_dir = random_checkpoint.ensure(model_name, npz=model_name == "124M")
    row = in_subprocess(EXPORT, model_dir, dtype, "fresh" if fresh else "reuse")
    data = os.path.getsize(os.path.join(model_dir, "model.ckpt.data-00000-of-00001"))
    return dict(model=model_name, dtype=dtype, checkpoint_bytes=data, **row)


SAMPLE_RSS = """
import json, sys, time
import numpy as np, litert_runtime, sample, workers
runtime = litert_runtime.load(sys.argv[1], dtype=sys.argv[2])
sampler = litert_runtime.Sampler(runtime, top_k=40)
times = []
for _ in range(2):
    start = time.perf_counter()
    sample.sample_sequence(params=None, hparams=runtime.hparams, length=int(sys.argv[3]),
                           context=np.zeros([1, 1], np.int32), sampler=sampler)
    times.append(time.perf_counter() - start)
print(json.dumps(dict(peak_rss_bytes=int(workers.peak_rss_mb() * 2**20),
                      tokens_per_s=int(sys.argv[3]) / min(times))))
"""


def sample_rss(model_name: str, dtype: str = "int8", length: int = 256) -> dict:
    model_dir = random_checkpoint.ensure(model_name, npz=model_name == "124M")
    export(model_name, dtype, fresh=False)  # made once, in its own process
    row = in_subprocess(SAMPLE_RSS, model_dir, dtype, str(length))
    return dict(model=model_name, dtype=dtype, new=length, **row)


def measure(settings, runs):
    model_dir = random_checkpoint.ensure("124M")
    kinds = list(dict.fromkeys(k for s in settings for k in SETTINGS[s][3]))
    for kind in kinds:
        if kind.startswith("litert-"):
            export("124M", kind.split("-", 1)[1], fresh=False)
    rows = []
    with workers.Pool({kind: engine(kind, model_dir) for kind in kinds}) as pool:
        for name in settings:
            batch, n_prompt, new, engines = SETTINGS[name]
            times, _ = pool.alternate("generate", bench_sampling.prompt(n_prompt, batch), new,
                                      runs=runs, names=engines)
            speed = {k: batch * new / statistics.median(v) for k, v in times.items()}
            rows.append(dict(setting=name, batch=batch, prompt=n_prompt, new=new,
                             tokens_per_s=speed, seconds=times,
                             ratio_to_hf={k: v / speed["hf"] for k, v in speed.items()}))
        rss = pool.peak_rss_mb()
    return rows, rss


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--only", nargs="*", choices=list(SETTINGS), default=None)
    parser.add_argument("--export", nargs="*", default=[], metavar="MODEL")
    parser.add_argument("--dtypes", nargs="*", default=["int8"], choices=["int8", "float32"])
    parser.add_argument("--sample_rss", nargs="*", default=[], metavar="MODEL")
    parser.add_argument("--json", default=os.path.join(HERE, "results", "litert.json"))
    args = parser.parse_args()
    only = args.only if args.only is not None else (
        [] if args.export or args.sample_rss else list(SETTINGS))
    result = dict(machine=bench_sampling.machine(), rows=[], peak_rss_mb={}, exports=[],
                  sampling_rss=[])
    if only:
        result["rows"], result["peak_rss_mb"] = measure(only, args.runs)
    result["exports"] = [export(m, d, fresh=True) for m in args.export for d in args.dtypes]
    result["sampling_rss"] = [sample_rss(m) for m in args.sample_rss]
    report(result)
    bench_sampling.write(args.json, result)


def report(result):
    if result["rows"]:
        print("| setting | engine | tokens/s | / HF |")
        print("|---|---|---|---|")
        for row in result["rows"]:
            for kind, speed in row["tokens_per_s"].items():
                print(f"| {row['setting']} | {kind} | {speed:.1f} | "
                      f"{row['ratio_to_hf'][kind]:.2f}x |")
        print("peak RSS of each worker (MB): " + ", ".join(
            f"{k} {v:.0f}" for k, v in result["peak_rss_mb"].items()))
    for row in result["exports"]:
        print(f"export {row['model']} {row['dtype']}: {row['seconds']:.0f} s, {row['parts']} "
              f"part(s), {row['bytes'] / 1e6:,.0f} MB (checkpoint {row['checkpoint_bytes'] / 1e6:,.0f}"
              f" MB), peak RSS {row['peak_rss_bytes'] / 1e9:.1f} GB")
    for row in result["sampling_rss"]:
        print(f"sampling {row['model']} {row['dtype']} ({row['new']} tokens, batch 1): peak RSS "
              f"{row['peak_rss_bytes'] / 1e9:.2f} GB, {row['tokens_per_s']:.1f} tokens/s")


if __name__ == "__main__":
    main()
