"""GPT-2's byte-level BPE: the same token ids as openai/gpt-2's `encoder.py`, faster.

Text is split into pre-tokens by GPT-2's regular expression, each pre-token's UTF-8 bytes are
mapped to printable characters (`bytes_to_unicode`), and BPE merges them by rank. The merge
semantics are the original's: in each pass the lowest-ranked adjacent pair is merged at every
non-overlapping occurrence, left to right.

What is different from the original, and why:
- A pre-token that is itself a vocabulary entry is looked up directly, as tiktoken does; for
  GPT-2's vocabulary every entry encodes to itself (checked exhaustively in the tests).
- Results are cached per pre-token in a bounded cache (`cache_size` entries; the oldest half is
  dropped when it is full), so memory stays flat over a long stream of distinct words.
- A pre-token of more than LONG_PIECE bytes is merged by `bpe.merge_ids`, in the same order
  but in O(n log n): the original's scan per pass is quadratic in one long piece (a megabyte
  without a space). `max_prompt_bytes` and `encode_tail` bound the work before BPE runs.
- Decoding joins precomputed per-id strings and decodes once; `IncrementalDecoder` holds back
  an incomplete UTF-8 sequence instead of turning it into U+FFFD, for token-by-token streaming.
- Files are read as UTF-8 whatever the locale, and bad files or ids raise `ValueError`s that
  say which file or id and what to do; `encoder.json` must give each id 0..n-1 once.

`<|endoftext|>` (id 50256, `Encoder.eot_token`): `decode` renders it as the text
"<|endoftext|>"; `encode` treats that text in a prompt as plain text, as the original does
(it becomes ordinary tokens such as "<", "|", "endo"..., never id 50256). To put the special
token in a context, append `eot_token` to the id list yourself.
"""

from __future__ import annotations

import codecs
import operator
import os
from itertools import islice
from typing import Iterable

import regex

import bpe
import model_paths
from limits import shorten, whole

__all__ = ["ENDOFTEXT", "Encoder", "IncrementalDecoder", "bytes_to_unicode", "get_encoder"]

ENDOFTEXT = "<|endoftext|>"
# GPT-2's pre-tokenizer, written with one apostrophe for the contractions; it matches exactly
# what the original's `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+|...` matches (case-sensitive: "DON'T"
# splits as "DON", "'", "T", as in GPT-2).
PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
_NO_MERGE = 1 << 62  # rank of a pair that is not in the merge list
# Pre-tokens of more bytes than this go to `bpe.merge_ids` (O(n log n); measured faster from
# about 8 bytes) instead of `_merge` (a scan per pass: quadratic in one long piece).
LONG_PIECE = 16
CACHED_PIECE = 256  # longer pre-tokens are not cached: the cache counts entries, not bytes
# Text is cut this many bytes before what the kept tokens can hold, so that the pre-token the
# cut falls in can be dropped whole (`Encoder.encode_tail`).
TAIL_SLACK = 1024
MAX_FILE_BYTES = 1 << 26  # encoder.json and vocab.bpe: GPT-2's are about 1 MB and 0.5 MB


def bytes_to_unicode() -> dict[int, str]:
    """Maps each byte to a printable character; printable Latin-1 bytes map to themselves."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    table = {b: chr(b) for b in printable}
    table.update((b, chr(256 + n)) for n, b in enumerate(others))
    return table


class Encoder:
    """Encodes text to GPT-2 token ids and back.

    Args:
        encoder: token string (in the `bytes_to_unicode` alphabet) -> id, from encoder.json.
        bpe_merges: merge pairs in rank order, from vocab.bpe.
        errors: how `decode` treats ids whose bytes are not valid UTF-8 (`bytes.decode`).
        cache_size: how many pre-tokens' ids to keep cached.
    """

    def __init__(self, encoder: dict[str, int], bpe_merges: Iterable[tuple[str, str]],
                 errors: str = "replace", *, cache_size: int = 1 << 16):
        if cache_size < 1:
            raise ValueError(f"cache_size must be at least 1, got {cache_size}")
        self.encoder = encoder
        self.decoder = {i: s for s, i in encoder.items()}
        self.errors = errors
        self.byte_encoder = bytes_to_unicode()
        self.byte_decoder = {c: b for b, c in self.byte_encoder.items()}
        self.bpe_ranks = {tuple(pair): rank for rank, pair in enumerate(bpe_merges)}
        self.eot_token: int | None = encoder.get(ENDOFTEXT)
        self.cache: dict[str, tuple[int, ...]] = {}
        self.cache_size = cache_size
        self.pat = regex.compile(PATTERN)
        # id -> its bytes as a Latin-1 str: joining str is ~3x faster than joining bytes.
        self._id_latin1 = {i: self._token_bytes(s).decode("latin-1")
                           for i, s in self.decoder.items()}
        self.max_token_bytes = max(map(len, self._id_latin1.values()), default=1)
        # The same as a list indexed by id: a list index takes only integers (a float id
        # fails instead of finding its integer's entry) and is no slower than the dict.
        self._latin1_at: list[str | None] = [None] * (max(self.decoder, default=-1) + 1)
        for i, text in self._id_latin1.items():
            if i >= 0:
                self._latin1_at[i] = text
        self._pairs: tuple[dict[int, int], int, list[int]] | None = None  # see _merge_long

    @property
    def n_vocab(self) -> int:
        return len(self.encoder)

    def _token_bytes(self, token: str) -> bytes:
        try:
            return bytes(self.byte_decoder[c] for c in token)
        except KeyError as e:
            raise ValueError(f"vocabulary entry {token!r} has a character outside the byte "
                             f"alphabet: {e.args[0]!r}") from None

    def _merge(self, word: list[str]) -> list[str]:
        """BPE over the characters of one pre-token, in the original's merge order."""
        get = self.bpe_ranks.get
        ranks = [get(pair, _NO_MERGE) for pair in zip(word, word[1:])]  # ranks[k]: word[k:k+2]
        while ranks:
            best = min(ranks)
            if best == _NO_MERGE:
                break
            at = [ranks.index(best)]  # every occurrence, left to right, not overlapping
            try:
                while True:
                    at.append(ranks.index(best, at[-1] + 2))
            except ValueError:
                pass
            if len(at) == 1:  # the common case: patch the word and two ranks in place
                i = at[0]
                word[i:i + 2] = [word[i] + word[i + 1]]
                del ranks[i]
                if i > 0:
                    ranks[i - 1] = get((word[i - 1], word[i]), _NO_MERGE)
                if i < len(ranks):
                    ranks[i] = get((word[i], word[i + 1]), _NO_MERGE)
                continue
            merged, start = [], 0  # many occurrences (long runs): rebuild in one sweep
            for i in at:
                merged += word[start:i]
                merged.append(word[i] + word[i + 1])
                start = i + 2
            word = merged + word[start:]
            ranks = [get(pair, _NO_MERGE) for pair in zip(word, word[1:])]
        return word

    def _merge_long(self, data: bytes) -> list[int]:
        """`_merge` of a pre-token's UTF-8 bytes, as ids, in O(n log n) (see bpe.py)."""
        if self._pairs is None:
            table, shift = bpe.pair_table(self.encoder, self.bpe_ranks)
            missing = [c for c in self.byte_encoder.values() if c not in self.encoder]
            if missing:
                raise ValueError(f"the vocabulary lacks the byte token {missing[0]!r}")
            self._pairs = table, shift, [self.encoder[self.byte_encoder[b]] for b in range(256)]
        table, shift, byte_ids = self._pairs
        return bpe.merge_ids([byte_ids[b] for b in data], table, shift)

    def bpe(self, token: str) -> str:
        """The original's `bpe`: a pre-token in the byte alphabet -> its tokens joined by ' '."""
        if len(token) <= LONG_PIECE:
            return " ".join(self._merge(list(token)))
        ids = self._merge_long(self._token_bytes(token))
        return " ".join(map(self.decoder.__getitem__, ids))

    def _encode_piece(self, piece: str) -> tuple[int, ...]:
        data = piece.encode("utf-8")
        word = data.decode("latin-1").translate(self.byte_encoder)
        entry = self.encoder.get(word)
        if entry is not None:
            ids: tuple[int, ...] = (entry,)
        elif len(data) > LONG_PIECE:
            ids = tuple(self._merge_long(data))
            if len(data) > CACHED_PIECE:
                return ids
        else:
            ids = tuple(map(self.encoder.__getitem__, self._merge(list(word))))
        cache = self.cache
        if len(cache) >= self.cache_size:  # drop the oldest half: amortised O(1) per insert
            for key in list(islice(cache, max(1, len(cache) // 2))):
                del cache[key]
        cache[piece] = ids
        return ids

    def encode(self, text: str) -> list[int]:
        """Text -> token ids. `<|endoftext|>` in the text is encoded as plain text."""
        if not isinstance(text, str):
            raise TypeError(f"encode expects str, got {type(text).__name__}")
        get, miss = self.cache.get, self._encode_piece
        ids: list[int] = []
        extend = ids.extend
        for piece in self.pat.findall(text):
            extend(get(piece) or miss(piece))  # cached ids are never empty
        return ids

    def max_prompt_bytes(self, n_tokens: int) -> int:
        """The most UTF-8 bytes that `n_tokens` tokens can stand for: n_tokens times the
        longest token (128 bytes in GPT-2's vocabulary).

        A text of more bytes encodes to more than `n_tokens` tokens, so a caller with room
        for `n_tokens` can refuse it (or keep its end with `encode_tail`) before any BPE
        runs: `len(text.encode("utf-8")) > enc.max_prompt_bytes(n_ctx - length)`.
        """
        n = whole("n_tokens", n_tokens)
        if n < 0:
            raise ValueError(f"n_tokens must be >= 0, got {n}")
        return n * self.max_token_bytes

    def encode_tail(self, text: str, n_tokens: int) -> list[int]:
        """The ids of the end of `text`, at most `n_tokens` of them, in work that depends on
        `n_tokens` and not on the length of the text.

        Only the last `max_prompt_bytes(n_tokens)` + TAIL_SLACK bytes are encoded, from the
        first pre-token boundary in them on, so the result is `encode(text)[-n_tokens:]`
        unless a single pre-token (a run with no space or change of character class) longer
        than TAIL_SLACK bytes spans the cut: that one is encoded from the cut on.
        """
        if not isinstance(text, str):
            raise TypeError(f"encode_tail expects str, got {type(text).__name__}")
        keep = self.max_prompt_bytes(n_tokens) + TAIL_SLACK
        if n_tokens == 0:
            return []
        data = text.encode("utf-8")
        if len(data) > keep:
            text = data[-keep:].decode("utf-8", "ignore")  # drops a character cut in two
            first = self.pat.search(text)
            if first is not None and first.end() < len(text) and first.end() <= TAIL_SLACK:
                text = text[first.end():]
        return self.encode(text)[-n_tokens:]

    def decode_bytes(self, tokens: Iterable[int]) -> bytes:
        """Token ids -> the UTF-8 bytes they stand for (possibly a partial character).

        `tokens` is a list or other iterable of integers (Python or NumPy), a 0-d or 1-d
        integer array or tensor, or a single integer."""
        tokens = as_ids(tokens)
        try:
            if tokens and min(tokens) < 0:
                raise IndexError  # a negative index would count from the end
            return "".join(map(self._latin1_at.__getitem__, tokens)).encode("latin-1")
        except (IndexError, TypeError):  # TypeError: not an integer, or an id in a gap
            bad = next(t for t in tokens if not self._known(t))
            raise ValueError(f"token id {bad!r} is outside the vocabulary: ids are integers "
                             f"from 0 to {self.n_vocab - 1} ({self.n_vocab} tokens)") from None

    def _known(self, token: object) -> bool:
        try:
            return operator.index(token) in self._id_latin1
        except TypeError:  # not an integer
            return False

    def decode(self, tokens: Iterable[int]) -> str:
        """Token ids -> text; invalid UTF-8 is handled by `errors` (U+FFFD by default)."""
        return self.decode_bytes(tokens).decode("utf-8", self.errors)

    def incremental_decoder(self) -> IncrementalDecoder:
        return IncrementalDecoder(self)


class IncrementalDecoder:
    """Decodes a stream of ids, returning only complete characters.

    A character split across tokens (common for CJK and emoji) is held back until its last
    byte arrives, so streamed output never shows a spurious U+FFFD. The concatenation of every
    `decode` result and the final `flush()` equals `Encoder.decode` of all the ids.
    """

    def __init__(self, encoder: Encoder):
        self._encoder = encoder
        self._utf8 = codecs.getincrementaldecoder("utf-8")(encoder.errors)

    def decode(self, tokens: int | Iterable[int]) -> str:
        """Feeds one id or several (as `Encoder.decode_bytes` takes them: a NumPy array
        [1] from `sample.stream_sequence` too); returns the text completed by them."""
        return self._utf8.decode(self._encoder.decode_bytes(tokens))

    def flush(self) -> str:
        """Ends the stream: bytes still held back are decoded with `errors` and returned."""
        return self._utf8.decode(b"", final=True)


def as_ids(tokens) -> list | tuple:
    """A list or tuple of the ids in `tokens` (see `Encoder.decode_bytes`)."""
    if isinstance(tokens, (list, tuple)):
        return tokens
    if hasattr(tokens, "numpy") and callable(tokens.numpy):  # a TensorFlow tensor
        tokens = tokens.numpy()
    ndim = getattr(tokens, "ndim", None)
    if ndim is not None and hasattr(tokens, "tolist"):  # a NumPy array or scalar
        if ndim > 1:
            raise ValueError(f"token ids must be one id or a flat sequence of ids, got an "
                             f"array of shape {tuple(tokens.shape)}")
        return [tokens.tolist()] if ndim == 0 else tokens.tolist()
    if hasattr(tokens, "__index__"):
        return [tokens]
    try:
        return list(tokens)
    except TypeError:
        raise ValueError(f"token ids must be integers or a sequence of them, got "
                         f"{type(tokens).__name__}") from None


def check_vocabulary(encoder: object, path: str) -> dict[str, int]:
    """encoder.json must map token strings to the ids 0..n-1, each once, and hold the 256
    byte tokens; anything else would fail later, mid-sample, with a message about ids."""
    remedy = model_paths.damaged_remedy(path)
    if not isinstance(encoder, dict) or not all(
            isinstance(k, str) and type(v) is int for k, v in encoder.items()):
        raise ValueError(f"{path} is not a map from token strings to integer ids: {remedy}")
    n, owner = len(encoder), {}
    for token, i in encoder.items():
        if not 0 <= i < n:
            raise ValueError(f"{path}: token {token[:40]!r} has id {shorten(i)}, but the ids "
                             f"of {n} tokens must be 0..{n - 1}: {remedy}")
        if i in owner:
            raise ValueError(f"{path}: tokens {owner[i][:40]!r} and {token[:40]!r} both have "
                             f"id {i}; each id must be used once: {remedy}")
        owner[i] = token
    missing = [c for c in bytes_to_unicode().values() if c not in encoder]
    if missing:
        raise ValueError(f"{path} lacks the byte token {missing[0]!r} (one of the 256 every "
                         f"byte-level vocabulary has): {remedy}")
    return encoder


def get_encoder(model_name: str, models_dir: str = "models") -> Encoder:
    """Builds the Encoder from `models_dir/model_name/{encoder.json,vocab.bpe}`."""
    json_path = os.path.join(models_dir, model_name, "encoder.json")
    bpe_path = os.path.join(models_dir, model_name, "vocab.bpe")
    encoder = check_vocabulary(model_paths.read_json(json_path, limit=MAX_FILE_BYTES),
                               json_path)
    merges = []
    text = model_paths.read_text(bpe_path, limit=MAX_FILE_BYTES)
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line or (lineno == 1 and line.startswith("#version")):
            continue
        pair = line.split(" ")
        if len(pair) != 2 or not all(p in encoder for p in (*pair, "".join(pair))):
            raise ValueError(f"{bpe_path} line {lineno} is not a merge of two tokens of "
                             f"{json_path}: {line[:60]!r}: {model_paths.damaged_remedy(bpe_path)}")
        merges.append((pair[0], pair[1]))
    if len(merges) < len(encoder) - 257:  # 256 byte tokens and <|endoftext|> need no merge
        raise ValueError(f"{bpe_path} has {len(merges)} merges but {json_path} has "
                         f"{len(encoder)} tokens, so one of them is truncated: "
                         f"{model_paths.damaged_remedy(bpe_path)}")
    return Encoder(encoder=encoder, bpe_merges=merges)
