"""Peak memory and time of convert_checkpoint.py on random weights of a released size, in both
directions: Hugging Face format -> released layout, and that back to the Hugging Face format.

    .venv/bin/python bench/bench_convert.py [--size 1558M] [--runs 1] [--keep]

Each conversion runs in a fresh process that reports its own peak resident memory
(VmHWM, Linux); a process that only imports what a conversion imports gives the baseline. The
goal is a peak within 1.5x the weights (their float32 bytes). The source, a Hub directory of
random weights of the real shapes (memory does not depend on the values), is written once to
bench/cache/convert/ and kept; the converted copies are removed at the end unless --keep.
A table is printed and JSON written to bench/results/convert_<size>.json. With --runs > 1
the measurements alternate run by run, and the medians are reported.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys

import random_checkpoint  # puts src/ on the path

ROOT = random_checkpoint.ROOT
RESULTS = os.path.join(ROOT, "bench", "results")
# Runs in a fresh interpreter: converts argv[1] into argv[2] (or only imports, with no
# arguments) and prints {"code", "seconds", "peak_rss"} as its last line.
CHILD = """
import json, os, sys, time
sys.path.insert(0, {root!r})
sys.path.insert(0, os.path.join({root!r}, "src"))
import convert_checkpoint, samples_io
samples_io.import_tensorflow_quietly()
import checkpoint, hub_format, safetensors.numpy
start = time.perf_counter()
code = convert_checkpoint.main(sys.argv[1:] + ["--force"]) if sys.argv[1:] else 0
seconds = time.perf_counter() - start
# VmHWM, not getrusage: Linux carries ru_maxrss over from the parent across fork and exec.
with open("/proc/self/status") as f:
    peak = next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM:"))
print(json.dumps({{"code": code, "seconds": seconds, "peak_rss": peak}}))
"""


def measure(*args: str) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD.format(root=ROOT), *args],
                          capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"bench_convert: the conversion failed:\n{done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result["code"] != 0:
        sys.exit(f"bench_convert: convert_checkpoint.py exited {result['code']}:\n"
                 f"{done.stderr[-2000:]}")
    return result


def shapes(size: str) -> dict:
    import checkpoint
    return checkpoint.variable_shapes(checkpoint.HParams(**random_checkpoint.SIZES[size]))


def ensure_hub_source(size: str, path: str) -> str:
    """A Hub directory of random weights of `size`, made if absent (config.json last, so
    that its presence marks a complete one). Written straight in the Hub format: holding
    the weights once, where the released writer would hold them twice."""
    if os.path.exists(os.path.join(path, "config.json")):
        return path
    import hub_format
    import hub_io
    hparams = hub_format.tensorflow_modules()[1].HParams(**random_checkpoint.SIZES[size])
    flat = random_checkpoint.random_weights(hparams)
    names = {name: hub for hub, name in hub_format.hub_names(hparams).items()}
    os.makedirs(path, exist_ok=True)
    hub_io.write_safetensors({names[n]: a.reshape(hub_format.hub_shape(a.shape))
                              for n, a in flat.items()}, os.path.join(path, hub_io.WEIGHTS))
    del flat
    data = os.path.join(ROOT, "tests", "data")
    shutil.copy(os.path.join(data, "encoder.json"), os.path.join(path, "vocab.json"))
    shutil.copy(os.path.join(data, "vocab.bpe"), os.path.join(path, "merges.txt"))
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(hub_format.config_from_hparams(hparams), f, indent=2)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1558M", choices=sorted(random_checkpoint.SIZES))
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the converted copies")
    args = parser.parse_args()
    work = os.path.join(ROOT, "bench", "cache", "convert")
    source = ensure_hub_source(args.size, os.path.join(work, f"{args.size}-hf"))
    released, back = (os.path.join(work, f"{args.size}-{name}") for name in ("released",
                                                                              "hf-back"))
    weights = 4 * sum(math.prod(s) for s in shapes(args.size).values())
    rows = {"import only": [], "hub -> released": [], "released -> hub": []}
    try:
        for _ in range(args.runs):  # alternating, so that a noisy neighbour hits each
            rows["import only"].append(measure())
            rows["hub -> released"].append(measure(source, released))
            rows["released -> hub"].append(measure(released, back))
    finally:
        if not args.keep:
            for path in (released, back):
                shutil.rmtree(path, ignore_errors=True)
    table = {}
    print(f"{args.size}: weights {weights / 1e9:.2f} GB (float32); median of {args.runs} "
          f"run(s), each a fresh process; 'above import' excludes the interpreter, "
          f"TensorFlow and safetensors themselves")
    print(f"{'':16} {'peak RSS GB':>12} {'x weights':>10} {'above import':>13} "
          f"{'seconds':>8}")
    base = statistics.median(r["peak_rss"] for r in rows["import only"])
    for name, runs in rows.items():
        peak = statistics.median(r["peak_rss"] for r in runs)
        seconds = statistics.median(r["seconds"] for r in runs)
        table[name] = {"peak_rss_bytes": peak, "ratio_to_weights": peak / weights,
                       "ratio_above_import": (peak - base) / weights, "seconds": seconds,
                       "runs": runs}
        print(f"{name:16} {peak / 1e9:12.2f} {peak / weights:10.2f} "
              f"{(peak - base) / weights:13.2f} {seconds:8.1f}")
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, f"convert_{args.size}.json")
    with open(path, "w") as f:
        json.dump({"size": args.size, "weights_bytes": weights, "results": table}, f,
                  indent=2)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
