"""Checks at the library's boundary: whole numbers, token ids, and what fits in memory.

Each failure is a ValueError that names the value and, where there is one, the remedy.
TensorFlow-free (the parameter count comes from `checkpoint` only when it is needed), so the
encoder can use it too.
"""
from __future__ import annotations

import math
import operator
import os
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from model import HParams


def shorten(value: object, width: int = 40) -> str:
    """repr(value), cut to `width` characters: a 4000-digit number stays readable."""
    try:
        text = repr(value)
    except ValueError:  # an int past Python's digit limit for str()
        return f"an integer of about {value.bit_length() * 30103 // 100000} digits"
    return text if len(text) <= width else f"{text[:width - 20]}...({len(text)} characters)"


def whole(name: str, value) -> int:
    """`value` as an int if it is one (Python or NumPy; not bool, not 1.9, not 2.0)."""
    if not isinstance(value, bool):
        try:
            return operator.index(value)
        except TypeError:
            pass
    raise ValueError(f"{name} must be a whole number, got {value!r}")


def token_ids(name: str, ids, *, n_vocab: int) -> np.ndarray:
    """`ids` (any nesting of lists, or an array) as int32, after checking that every one is
    an integer id of the vocabulary: past the table, the embedding gather fails on CPU and
    reads zeros on a GPU."""
    try:
        array = np.asarray(ids)
    except ValueError:  # ragged
        raise ValueError(f"{name} must be a list of token ids or equal-length rows of them"
                         ) from None
    if not np.issubdtype(array.dtype, np.integer):
        for x in array.ravel():  # find the offender: a non-integer, or a huge integer
            x = x.item() if isinstance(x, np.generic) else x
            if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, np.integer)):
                raise ValueError(f"{name} must hold integer token ids, got {x!r}")
            if not 0 <= x < n_vocab:
                raise ValueError(out_of_vocabulary(name, x, n_vocab))
    elif array.size and (array.min() < 0 or array.max() >= n_vocab):
        bad = array.min() if array.min() < 0 else array.max()
        raise ValueError(out_of_vocabulary(name, bad, n_vocab))
    return array.astype(np.int32)


def out_of_vocabulary(name: str, token, n_vocab: int) -> str:
    return (f"{name} holds token id {token}, outside the vocabulary: ids are 0..{n_vocab - 1} "
            f"({n_vocab} tokens)")


def available_memory() -> int | None:
    """Bytes of memory this process may use: the machine's physical memory, or a smaller
    cgroup limit (a container's); None where neither can be read."""
    limits = []
    try:
        limits.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        pass
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path, encoding="ascii") as f:
                limits.append(int(f.read().strip()))
        except (OSError, ValueError):  # absent, or "max"
            pass
    return min(limits) if limits else None


def max_batch_size(*, hparams: HParams, positions: int, dtype_size: int = 4,
                   memory_bytes: int | None = None) -> int | None:
    """The largest batch whose weights and key/value cache for `positions` positions
    (prompt + length; n_ctx when the prompt is not known yet) fit in `memory_bytes`
    (default: `available_memory()`); None if the memory is unknown. A lower bound on what
    sampling needs, so a batch above it cannot run; one at or below it may still meet
    TensorFlow's own out-of-memory error."""
    memory = available_memory() if memory_bytes is None else memory_bytes
    if memory is None:
        return None
    import checkpoint  # imports TensorFlow: only here, so that the encoder need not
    weights = sum(math.prod(s) for s in checkpoint.variable_shapes(hparams).values())
    # Keys and values of every layer, every position of the row.
    per_row = 2 * hparams.n_layer * positions * hparams.n_embd * dtype_size
    return max(0, (memory - weights * dtype_size) // per_row)


def check_batch_size(batch_size: int, *, hparams: HParams, positions: int,
                     dtype_size: int = 4, memory_bytes: int | None = None) -> None:
    """A ValueError with the largest batch size that fits when `batch_size` cannot fit in
    memory (see `max_batch_size`); a batch size of 1 is never refused."""
    batch_size = whole("batch_size", batch_size)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    fits = max_batch_size(hparams=hparams, positions=positions, dtype_size=dtype_size,
                          memory_bytes=memory_bytes)
    if fits is not None and batch_size > max(fits, 1):
        memory = available_memory() if memory_bytes is None else memory_bytes
        raise ValueError(f"batch_size {batch_size} cannot fit: the key/value cache of "
                         f"{positions} positions per sample alone needs more than the "
                         f"{memory / 2 ** 30:.1f} GiB of memory here: use --batch_size "
                         f"{max(fits, 1)} or less")


def number(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    return float(value)
