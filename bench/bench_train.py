"""Training speed and memory: this project against Hugging Face transformers (torch, CPU).

Speed: one Adam step of the 124M shape (window 256, batch 4, fp32, no dropout) on the same
random weights of the released shape, each side in its own worker process, alternating
step by step; tokens/s is windows x window / median seconds per step. Memory: the peak RSS
of `train.py --steps 1 --memory_saving_gradients --optimizer adafactor` (window n_ctx =
1024, batch 1; loading, the step and the save) on 774M and 1558M, each in a fresh process.
Prints a table and writes JSON.

    python bench/bench_train.py                          # speed (5 steps each), 774M, 1558M
    python bench/bench_train.py --runs 0 --memory 1558M  # the 1558M memory reading only
    python bench/bench_train.py --memory                 # speed only
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import bench_sampling  # noqa: E402
import random_checkpoint  # noqa: E402
import workers  # noqa: E402

WINDOW, BATCH, LEARNING_RATE = 256, 4, 1e-4


def windows(step: int):
    import numpy as np
    rng = np.random.default_rng(step)
    return rng.integers(0, 50256, size=(BATCH, WINDOW)).astype("int32")


class Ours:
    def __init__(self, model_dir):
        import checkpoint
        import optim
        import tensorflow as tf
        import train_loop
        from model import HParams
        hparams = HParams.from_json(os.path.join(model_dir, "hparams.json"))
        arrays = checkpoint.read_checkpoint(model_dir, hparams)  # in variable order
        weights = set(checkpoint.variable_shapes(hparams))
        self.trainer = train_loop.Trainer(
            tf.distribute.get_strategy(), hparams, optimizer=optim.Optimizer("adam"),
            initial=lambda name, shape: next(arrays)[1] if name in weights else None,
            train=lambda name: True)

    def step(self, step):
        loss, _ = self.trainer.step(windows(step)[None], LEARNING_RATE)
        return loss


class HF(bench_sampling.HF):
    """bench_sampling's model on the same weights, in eval mode (no dropout, like ours;
    autograd works all the same), with torch's Adam at TF1's settings (the same update:
    epsilon added to sqrt(v))."""

    def __init__(self, model_dir):
        super().__init__(model_dir)
        self.optimizer = self.torch.optim.Adam(self.model.parameters(), lr=LEARNING_RATE,
                                               betas=(0.9, 0.999), eps=1e-8)

    def step(self, step):
        ids = self.torch.from_numpy(windows(step)).long()
        loss = self.model(ids, labels=ids).loss
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(loss)


def speed(runs: int) -> dict:
    model_dir = random_checkpoint.ensure("124M")
    with workers.Pool({"ours": functools.partial(Ours, model_dir),
                       "hf": functools.partial(HF, model_dir)}) as pool:
        # step 0 warms up (tracing, allocation); the timed steps are 1..runs
        times, losses = pool.alternate("step", runs=runs, numbered=True)
        rss = pool.peak_rss_mb()
    tokens = BATCH * WINDOW
    return dict(model="124M", window=WINDOW, batch=BATCH, dtype="float32",
                **{f"{k}_tokens_per_s": tokens / statistics.median(v) for k, v in times.items()},
                **{f"{k}_seconds": v for k, v in times.items()},
                **{f"{k}_losses": v for k, v in losses.items()},
                **{f"{k}_peak_rss_mb": v for k, v in rss.items()})


def memory(model_name: str) -> dict:
    """Peak RSS of train.py doing one step (and its save) on `model_name` in a new process."""
    import numpy as np
    model_dir = random_checkpoint.ensure(model_name, npz=False)
    with tempfile.TemporaryDirectory(dir=os.path.join(HERE, "cache")) as work:
        np.savez(os.path.join(work, "data.npz"),
                 np.random.default_rng(0).integers(0, 50256, 4096).astype(np.uint16))
        command = [sys.executable, os.path.join(ROOT, "train.py"), "--dataset", "data.npz",
                   "--models_dir", os.path.dirname(model_dir), "--model_name", model_name,
                   "--steps", "1", "--batch_size", "1", "--sample_every", "0",
                   "--memory_saving_gradients", "--optimizer", "adafactor",
                   "--restore_from", "fresh"]
        code = ("import resource, subprocess, sys, time; began = time.time(); "
                "done = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
                "print(done.returncode, time.time() - began, "
                "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024); "
                "print(done.stderr[-2000:], file=sys.stderr)")
        done = subprocess.run([sys.executable, "-c", code, *command], cwd=work,
                              capture_output=True, text=True, check=True)
    returncode, seconds, peak = done.stdout.split()
    if returncode != "0":
        raise RuntimeError(f"train.py failed on {model_name}: {done.stderr}")
    weights = os.path.getsize(os.path.join(model_dir, "model.ckpt.data-00000-of-00001"))
    return dict(model=model_name, window=1024, batch=1, peak_rss_bytes=int(peak),
                weight_bytes=weights, seconds=float(seconds))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed steps per side; 0: none")
    parser.add_argument("--memory", nargs="*", default=["774M", "1558M"], metavar="MODEL",
                        help="models whose one-step peak RSS to measure (none: skip)")
    parser.add_argument("--json", default=os.path.join(HERE, "results", "train.json"))
    args = parser.parse_args()
    result = dict(machine=dict(cpu=platform.processor() or platform.machine(),
                               cores=os.cpu_count(), python=platform.python_version()))
    if args.runs:
        result["speed"] = speed(args.runs)
    result["memory"] = [memory(name) for name in args.memory]
    report(result)
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(result, f, indent=2)
    print(f"\nwrote {args.json}")


def report(result):
    if "speed" in result:
        row = result["speed"]
        ours, hf = row["ours_tokens_per_s"], row["hf_tokens_per_s"]
        print("| training step (124M, window 256, batch 4, fp32, Adam) | ours tok/s | "
              "HF tok/s | ours/HF |")
        print("|---|---|---|---|")
        print(f"| median of {len(row['ours_seconds'])} steps, alternating | {ours:.0f} | "
              f"{hf:.0f} | {ours / hf:.2f}x |")
        print(f"peak RSS: ours {row['ours_peak_rss_mb']:.0f} MB, HF "
              f"{row['hf_peak_rss_mb']:.0f} MB; first losses ours "
              f"{row['ours_losses'][0]:.3f}, HF {row['hf_losses'][0]:.3f}")
    if not result["memory"]:
        return
    print("| train.py --steps 1 --memory_saving_gradients --optimizer adafactor "
          "(window 1024, batch 1) | peak RSS | weights (fp32) | seconds |")
    print("|---|---|---|---|")
    for row in result["memory"]:
        print(f"| {row['model']} | {row['peak_rss_bytes'] / 2 ** 30:.2f} GiB | "
              f"{row['weight_bytes'] / 2 ** 30:.2f} GiB | {row['seconds']:.0f} |")


if __name__ == "__main__":
    main()
