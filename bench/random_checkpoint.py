"""Random-weight checkpoints of the released shapes, for benchmarks (speed and memory do
not depend on the weights' values). Written once into bench/cache/ and reused."""
from __future__ import annotations

import os
import shutil
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "src"))

# Plain dicts, so that importing this module does not import TensorFlow (the HF worker
# must not load it); every size has n_vocab 50257 and n_ctx 1024.
SIZES = {
    "124M": dict(n_vocab=50257, n_ctx=1024, n_embd=768, n_head=12, n_layer=12),
    "355M": dict(n_vocab=50257, n_ctx=1024, n_embd=1024, n_head=16, n_layer=24),
    "774M": dict(n_vocab=50257, n_ctx=1024, n_embd=1280, n_head=20, n_layer=36),
    "1558M": dict(n_vocab=50257, n_ctx=1024, n_embd=1600, n_head=25, n_layer=48),
}
CACHE = os.path.join(ROOT, "bench", "cache", "models")
NPZ = "weights.npz"


def random_weights(hparams, *, seed: int = 0) -> dict:
    """GPT-2-like scales: N(0, 0.02) matrices, unit gains, zero biases."""
    import checkpoint
    rng = np.random.default_rng(seed)
    flat = {}
    for name, shape in checkpoint.variable_shapes(hparams).items():
        if name.endswith("/g"):
            flat[name] = np.ones(shape, np.float32)
        elif len(shape) == 1:
            flat[name] = np.zeros(shape, np.float32)
        else:
            flat[name] = rng.standard_normal(shape, np.float32) * np.float32(0.02)
    return flat


def ensure(model_name: str, models_dir: str = CACHE, *, npz: bool = True) -> str:
    """models_dir/<name> in the released layout with the real vocabulary, plus (with
    `npz`) the same weights as `weights.npz` for readers without TensorFlow; made if
    absent. The hparams file is written last, so its presence marks a complete folder."""
    path = os.path.join(models_dir, model_name)
    done = os.path.exists(os.path.join(path, "hparams.json"))
    if done and (not npz or os.path.exists(os.path.join(path, NPZ))):
        return path
    import checkpoint
    hparams = checkpoint.HParams(**SIZES[model_name])
    flat = random_weights(hparams)
    if npz:
        os.makedirs(path, exist_ok=True)
        np.savez(os.path.join(path, NPZ), **flat)
    if done:
        return path
    os.makedirs(path, exist_ok=True)
    for name in ("encoder.json", "vocab.bpe"):
        shutil.copy(os.path.join(ROOT, "tests", "data", name), os.path.join(path, name))
    checkpoint.save(checkpoint.tree_from_flat(flat, hparams), hparams, path)  # hparams last
    return path


if __name__ == "__main__":
    for name in sys.argv[1:] or ["124M"]:
        print(ensure(name))
