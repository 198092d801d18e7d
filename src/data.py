"""Token datasets for training: load them, and draw training windows reproducibly.

A dataset is a list of chunks, 1-D arrays of token ids; a window never crosses a chunk's
end. Formats, chosen by file name:
- `.npz`: nshepperd's encode.py output (and ours), one array per chunk;
- `.bin` / `.tokens`: little-endian uint16 ids, one chunk, memory-mapped, never loaded
  whole (nanoGPT's `train.bin` is this format; `encode.py` writes it);
- anything else is text (see text_corpus.py), encoded on the fly into one chunk.
A directory or glob may mix them.

Windows are a pure function of (seed, step, stream): the same run draws the same windows
whether it ran straight through or was stopped and resumed, on any number of devices.
"""
from __future__ import annotations

import dataclasses
import os
import zipfile

import numpy as np

import text_corpus

VALIDATION_SEED = 1  # validation windows are the same for every run, so runs compare


@dataclasses.dataclass
class TokenData:
    """Chunks of token ids, and the files they came from (for messages)."""

    chunks: list[np.ndarray]
    source: str

    @property
    def n_tokens(self) -> int:
        return int(sum(len(c) for c in self.chunks))

    def check_window(self, window: int) -> None:
        """Every window has `window` tokens from one chunk: at least one must fit (T1)."""
        longest = max((len(c) for c in self.chunks), default=0)
        if longest >= window:
            return
        if self.n_tokens == 0:
            raise ValueError(f"dataset {self.source} is empty: it holds no tokens")
        where = "" if len(self.chunks) == 1 else \
            f" (in {len(self.chunks)} chunks, the longest {longest:,})"
        raise ValueError(f"dataset {self.source} has {self.n_tokens:,} tokens{where}, fewer "
                         f"than one training window of {window:,}: add text, or pass "
                         f"--window {longest} or less")

    def check_vocabulary(self, n_vocab: int) -> None:
        for chunk in self.chunks:
            top = int(max_id(chunk))
            if top >= n_vocab:
                raise ValueError(f"dataset {self.source} holds token id {top}, but the model "
                                 f"has {n_vocab} tokens: it was encoded for another "
                                 f"vocabulary; encode the text again with encode.py")

    def windows(self, *, seed: int, step: int, count: int, window: int,
                stream: int = 0) -> np.ndarray:
        """`count` windows [count, window] (int32) drawn uniformly among all windows that
        fit inside a chunk, from the random stream (seed, step, stream)."""
        starts = np.asarray([max(0, len(c) - window + 1) for c in self.chunks], np.int64)
        total = starts.cumsum()
        assert total[-1] > 0, "check_window first"
        rng = np.random.default_rng([seed & (2 ** 63 - 1), step, stream])
        picks = rng.integers(0, total[-1], size=count)
        which = np.searchsorted(total, picks, side="right")
        offsets = picks - (total[which] - starts[which])
        return np.stack([np.asarray(self.chunks[c][o:o + window], np.int32)
                         for c, o in zip(which, offsets)])

    def validation_windows(self, *, count: int, window: int) -> np.ndarray:
        return self.windows(seed=VALIDATION_SEED, step=0, count=count, window=window,
                            stream=1)


def max_id(chunk: np.ndarray) -> int:
    """The largest id, in slices so that a memory-mapped file is read once, in pieces."""
    step = 1 << 26
    return max(int(chunk[i:i + step].max()) for i in range(0, len(chunk), step))


def read_npz(path: str) -> list[np.ndarray]:
    try:
        with np.load(path) as archive:
            named = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise ValueError(f"{path} is not a readable .npz ({e}): encode the text again with "
                         f"encode.py") from None
    for name, chunk in named.items():
        if chunk.ndim != 1 or not np.issubdtype(chunk.dtype, np.integer) or \
                (chunk.size and int(chunk.min()) < 0):
            raise ValueError(f"{path}: array {name} is not a list of token ids (shape "
                             f"{chunk.shape}, {chunk.dtype}): encode the text again with "
                             f"encode.py")
    return list(named.values())


def read_tokens(path: str) -> np.ndarray:
    size = os.path.getsize(path)
    if size % 2:
        raise ValueError(f"{path} is {size:,} bytes, an odd number: a token file holds "
                         f"2-byte ids; it is truncated or not a token file")
    if size == 0:
        return np.zeros([0], np.uint16)
    return np.memmap(path, dtype="<u2", mode="r")


def load(pattern: str, *, enc=None, encoding: str = "utf-8", progress=None) -> TokenData:
    """The dataset a --dataset value names. Text needs `enc` (an encoder.Encoder)."""
    encoding = text_corpus.check_encoding(encoding)
    paths = text_corpus.expand(pattern)
    chunks, texts = [], []
    for path in paths:
        try:
            if path.lower().endswith(".npz"):
                chunks += read_npz(path)
            elif path.lower().endswith(text_corpus.TOKEN_SUFFIXES):
                chunks.append(read_tokens(path))
            else:
                texts.append(path)
        except OSError as e:
            raise ValueError(f"{path} cannot be read ({e.strerror})") from None
    if texts:
        if enc is None:
            raise ValueError(f"{texts[0]} is text, and no encoder was given to encode it")
        pieces = list(text_corpus.encode_files(texts, enc, encoding=encoding,
                                               progress=progress))
        chunks.append(np.concatenate(pieces) if pieces else np.zeros([0], np.uint16))
    return TokenData([c for c in chunks if len(c)], source=pattern)
