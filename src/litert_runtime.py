"""GPT-2 on LiteRT, TensorFlow's runtime for CPUs (XNNPACK kernels), in float32 or int8.

`load` returns a `Runtime` over the model's exported parts (made once by `litert_store`);
`Sampler` puts it behind `sample.Sampler`'s prefill/next interface, so the token loop, the
logit filters and the stateless seeds stay the project's own: with greedy decoding,
float32 LiteRT gives the TensorFlow path's tokens.

The key/value cache lives in the interpreters' input tensors, written in place through
tensor views (a view must be dropped before the next invoke). The cache holds a bucket of
slots, 128/256/512/1024, grown as the sample grows: attending to 1024 mostly empty slots
doubles an int8 step at batch 1, and resizing costs only milliseconds, once per bucket.

(Not `litert.py`: TensorFlow's own import tries a top-level `litert` package first, and
would run a module of that name from `src/`.)
"""
from __future__ import annotations

import functools
import importlib
import os
import threading
import time
import warnings

import numpy as np

import litert_export
from model import HParams

# The maintained `ai-edge-litert` package first; TensorFlow's own copy (deprecated) else.
RUNTIMES = ("ai_edge_litert.interpreter", "tensorflow.lite.python.interpreter")
SMALLEST_BUCKET = 128


def interpreter_class():
    for name in RUNTIMES:
        try:
            return importlib.import_module(name).Interpreter
        except (ImportError, AttributeError):
            continue
    raise ValueError("no LiteRT runtime is installed: `pip install ai-edge-litert`, or use "
                     "--backend tf")


def bucket(needed: int, capacity: int) -> int:
    """Cache slots for `needed` positions: the next power of two from 128, at most
    `capacity` (what the whole sample needs)."""
    slots = max(SMALLEST_BUCKET, 1 << max(needed - 1, 0).bit_length())
    return max(min(slots, capacity), needed)


class Part:
    """One exported part in its own interpreter (its one signature is subgraph 0)."""

    def __init__(self, path: str, hparams: HParams, *, num_threads: int):
        Interpreter = interpreter_class()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
                self.it = Interpreter(model_path=path, num_threads=num_threads)
            runner = self.it.get_signature_runner()
        except (ValueError, RuntimeError) as e:
            raise ValueError(f"LiteRT cannot load {path} ({str(e).strip()[:200]}): delete "
                             f"it to export again, or use --backend tf") from None
        self.inputs = {n: d["index"] for n, d in runner.get_input_details().items()}
        self.outputs = {n: d["index"] for n, d in runner.get_output_details().items()}
        assert {d["index"] for d in self.it.get_input_details()} == set(self.inputs.values())
        self.layers = sum(n.startswith("k") for n in self.inputs)
        self.caches = [self.inputs[f"{kv}{i}"] for i in range(self.layers) for kv in "kv"]
        self.hparams, self.shape = hparams, None
        self.last = "logits" in self.outputs

    def resize(self, x_shape: list, slots: int) -> None:
        """Shapes the inputs for x [batch, seq(, n_embd)] and `slots` cache slots; the
        cache then holds zeros (fresh buffers may hold NaN, which no mask cancels)."""
        h = self.hparams
        self.it.resize_tensor_input(self.inputs["x"], x_shape)
        for index in self.caches:
            self.it.resize_tensor_input(index, [x_shape[0], h.n_head, slots, h.head_dim])
        with litert_export.quiet_stderr(keep=lambda line: not line.startswith("INFO: ")):
            self.it.allocate_tensors()  # the first one applies the XNNPACK delegate
        self.shape = (tuple(x_shape), slots)
        for index in self.caches:
            self.it.tensor(index)().fill(0)

    def run(self, x: np.ndarray, pos: int) -> np.ndarray:
        """Invokes the step; returns the logits [batch, n_vocab] or hidden state."""
        self.it.set_tensor(self.inputs["x"], x)
        self.it.set_tensor(self.inputs["pos"], np.array(pos, np.int32))
        self.it.invoke()
        return self.it.get_tensor(self.outputs["logits" if self.last else "h"])

    def present(self) -> np.ndarray:
        """A copy of the last step's new keys/values [batch, layers, 2, head, seq, hd]."""
        return self.it.get_tensor(self.outputs["present"])

    def write(self, present: np.ndarray, start: int) -> None:
        """Writes keys/values [batch, layers, 2, head, seq, head_dim] at slots start..."""
        seq = present.shape[4]
        for i, index in enumerate(self.caches):
            self.it.tensor(index)()[:, :, start:start + seq] = present[:, i // 2, i % 2]

    def write_step(self, pos: int) -> None:
        """Writes the last step's one new key/value per layer at slot `pos`, view to view."""
        present = self.it.tensor(self.outputs["present"])()  # [b, layers, 2, h, 1, hd]
        for i, index in enumerate(self.caches):
            self.it.tensor(index)()[:, :, pos] = present[:, i // 2, i % 2, :, 0]

    def read(self, end: int) -> np.ndarray:
        """A copy of the cache's slots [0, end) as [batch, layers, 2, head, end, hd]."""
        kv = [self.it.tensor(index)()[:, :, :end] for index in self.caches]
        batch, head, _, hd = kv[0].shape
        return np.stack(kv, axis=1).reshape(batch, self.layers, 2, head, end, hd)


class Runtime:
    """The exported parts run one after another, with the cache; one generation at a
    time. `prefill` starts one, `step` continues it."""

    def __init__(self, paths: list[str], hparams: HParams, *, num_threads: int | None = None):
        num_threads = num_threads or len(os.sched_getaffinity(0))
        self.hparams = hparams
        self.parts = [Part(p, hparams, num_threads=num_threads) for p in paths]
        self.capacity = self.slots = 0

    def prefill(self, tokens: np.ndarray, capacity: int) -> np.ndarray:
        """Runs the prompt tokens [batch, n] (against an empty one-slot cache), sizes the
        cache for what follows, and returns the last position's logits [batch, n_vocab]."""
        batch, n = tokens.shape
        x, presents = np.asarray(tokens, np.int32), []
        for part in self.parts:
            part.resize(list(x.shape), 1)
            x = part.run(x, 0)
            presents.append(part.present())
        self.capacity, self.slots = capacity, bucket(n + 1, capacity)
        for part, present in zip(self.parts, presents):
            part.resize([batch, 1] + ([] if part is self.parts[0] else
                                      [self.hparams.n_embd]), self.slots)
            part.write(present, 0)
        return x

    def step(self, token: np.ndarray, pos: int) -> np.ndarray:
        """Feeds one token per row [batch] at position `pos`; returns logits [batch, V]."""
        if pos >= self.slots:
            self.grow(bucket(pos + 1, self.capacity), pos)
        x = np.asarray(token, np.int32)[:, None]  # [batch, 1]
        for part in self.parts:
            x = part.run(x, pos)
            part.write_step(pos)
        return x

    def grow(self, slots: int, filled: int) -> None:
        for part in self.parts:
            kept = part.read(filled)
            part.resize(list(part.shape[0]), slots)
            part.write(kept, 0)
        self.slots = slots


def load(model_dir: str, *, dtype: str, progress=lambda message: None,
         num_threads: int | None = None) -> Runtime:
    """The model's LiteRT runtime for `dtype` (float32 or int8), exporting it first if
    needed. ValueError, with the remedy, for every expected failure."""
    import litert_store
    interpreter_class()  # no runtime: say so before a minute of exporting
    paths = litert_store.ensure(model_dir, dtype=dtype, progress=progress)
    hparams = HParams.from_json(os.path.join(model_dir, "hparams.json"))
    return Runtime(paths, hparams, num_threads=num_threads)


class Sampler:
    """`sample.Sampler`'s interface over a Runtime: `prefill` and `next` return the drawn
    tokens [batch] as tensors, chosen by `sample.pick` with the same per-draw seeds."""

    def __init__(self, runtime: Runtime, *, temperature: float = 1.0, top_k: int = 0,
                 top_p: float = 1.0):
        import sample
        import tensorflow as tf
        self.runtime, self.hparams = runtime, runtime.hparams
        # sample.draws bounds the batch size by the cache's element type (float32 here);
        # the cache itself lives in the interpreters.
        self.cache = [tf.zeros([0], tf.float32)]
        pick = functools.partial(sample.pick, temperature=temperature, top_k=top_k,
                                 top_p=top_p)
        self.choose = tf.function(
            lambda logits, seed, index: pick(logits, sample.seed_at(seed, index)),
            input_signature=[tf.TensorSpec([None, self.hparams.n_vocab], tf.float32),
                             tf.TensorSpec([2], tf.int32), tf.TensorSpec([], tf.int32)])

    def prefill(self, context, capacity, seed):
        logits = self.runtime.prefill(np.asarray(context), int(capacity))
        return self.choose(logits, seed, 0)

    def next(self, token, pos, seed, index):
        return self.choose(self.runtime.step(np.asarray(token), int(pos)), seed, index)


class ExportProgress:
    """Shows `litert_store.ensure`'s messages on `stream` (stderr), one line each; at a
    terminal the newest line counts the seconds, so a minute of converting shows life."""

    def __init__(self, stream, prefix: str):
        self.stream, self.prefix = stream, prefix
        self.tty = getattr(stream, "isatty", lambda: False)()
        self.lock, self.stop = threading.Lock(), None

    def __call__(self, message: str) -> None:
        self.close()
        line = f"{self.prefix}{message}"
        with self.lock:
            self.stream.write(line + ("" if self.tty else "\n"))
            self.stream.flush()
        if self.tty:
            self.stop = threading.Event()
            threading.Thread(target=self._tick, args=(line, self.stop), daemon=True).start()

    def _tick(self, line: str, stop: threading.Event) -> None:
        start = time.monotonic()
        while not stop.wait(1.0):
            with self.lock:
                if not stop.is_set():
                    self.stream.write(f"\r{line} ({time.monotonic() - start:.0f} s)")
                    self.stream.flush()

    def close(self) -> None:
        """Ends the newest line (call when the export is done or has failed)."""
        if self.stop is not None:
            with self.lock:
                self.stop.set()
                self.stream.write("\n")
                self.stream.flush()
            self.stop = None
