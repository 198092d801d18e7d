"""Text to GPT-2 token ids for training: files, directories and globs of `.txt`, `.csv`
(first column) and `.jsonl` (field `text`), one document after another with the real
`<|endoftext|>` id (50256 in GPT-2's vocabulary) between documents.

What a document is: a `.csv` row's first cell (the first row is a header, as in
gpt-2-simple's CSVs), a `.jsonl` line's `text`, and in any other file its text between the
literal separators "<|endoftext|>" (the convention of gpt-2-simple's text files; a file
without one is one document). Documents that are only whitespace are dropped.

Text files are read in blocks cut only where GPT-2's pre-tokenizer cannot join the two sides
(after a newline with non-space on both sides), so a file larger than memory encodes to the
same ids as if it were read whole.
"""
from __future__ import annotations

import codecs
import csv
import glob
import json
import os
import re
from typing import Iterator

import numpy as np

ENDOFTEXT = "<|endoftext|>"
BLOCK = 1 << 20  # characters per block of a text file
TOKEN_SUFFIXES = (".bin", ".tokens")  # raw uint16 token files, read by data.py
CUT = re.compile(r"\S\n(?=\S)")


def expand(pattern: str) -> list[str]:
    """The files a --dataset value names: itself, every file under a directory (sorted,
    hidden ones skipped), or a glob's matches; ValueError when there are none."""
    if os.path.isfile(pattern):
        return [pattern]
    if os.path.isdir(pattern):
        found = []
        for root, dirs, files in os.walk(pattern):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            found += [os.path.join(root, f) for f in sorted(files) if not f.startswith(".")]
        if not found:
            raise ValueError(f"dataset {pattern} is an empty directory: put text files in it")
        return found
    found = sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
    if not found:
        raise ValueError(f"dataset {pattern} not found: give a text file, a directory, a glob "
                         f"(quoted), an .npz or a token file (encode.py makes both)")
    return found


def decode_error(path: str, encoding: str) -> ValueError:
    """The first undecodable byte of `path`, found by decoding it again from the start (only
    after a failure, so the byte offset is exact whatever read it)."""
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    offset = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(BLOCK), b""):
            pending = len(decoder.getstate()[0])
            try:
                decoder.decode(block)
            except UnicodeDecodeError as e:
                at = offset - pending + e.start
                with open(path, "rb") as g:
                    g.seek(at)
                    byte = g.read(1)
                return ValueError(
                    f"{path} is not {encoding} text: byte 0x{byte.hex()} at offset {at:,} "
                    f"cannot be decoded; pass --encoding with the file's encoding (for "
                    f"example --encoding latin-1 or --encoding cp1252)")
            offset += len(block)
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            pass
    return ValueError(f"{path} ends inside a {encoding} character (truncated?): pass "
                      f"--encoding with the file's encoding, or repair its last bytes")


def check_encoding(encoding: str) -> str:
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        raise ValueError(f"--encoding {encoding!r} is not a text encoding Python knows: "
                         f"use e.g. utf-8, latin-1, cp1252 or utf-16") from None


def text_blocks(path: str, encoding: str) -> Iterator[str]:
    """A text file's contents in blocks that tokenize independently."""
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    rest = ""
    with open(path, "rb") as f:
        while True:
            raw = f.read(BLOCK)
            text = rest + decoder.decode(raw, final=not raw)
            if not raw:
                if text:
                    yield text
                return
            cut = None
            for cut in CUT.finditer(text):
                pass
            if cut is None:
                rest = text  # no safe place yet: read on
                continue
            yield text[:cut.start() + 2]
            rest = text[cut.start() + 2:]


def text_documents(path: str, encoding: str) -> Iterator[Iterator[str]]:
    """Each document of a text file, as its pieces (blocks split at the separators)."""
    pending: list[str] = []
    for block in text_blocks(path, encoding):
        parts = block.split(ENDOFTEXT)
        for part in parts[:-1]:
            yield iter(pending + [part])
            pending = []
        pending.append(parts[-1])
    yield iter(pending)


def csv_documents(path: str, encoding: str) -> Iterator[Iterator[str]]:
    with open(path, encoding=encoding, newline="") as f:
        rows = csv.reader(f)
        next(rows, None)  # the header
        for row in rows:
            if row:
                yield iter([row[0]])


def jsonl_documents(path: str, encoding: str) -> Iterator[Iterator[str]]:
    with open(path, encoding=encoding) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path} line {number} is not JSON ({e.msg}): each line must "
                                 f"be an object with a string field \"text\"") from None
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                raise ValueError(f"{path} line {number} has no string field \"text\": each "
                                 f"line must be an object like {{\"text\": \"...\"}}")
            yield iter([record["text"]])


def documents(path: str, encoding: str) -> Iterator[Iterator[str]]:
    lower = path.lower()
    if lower.endswith(".csv"):
        return csv_documents(path, encoding)
    if lower.endswith(".jsonl"):
        return jsonl_documents(path, encoding)
    return text_documents(path, encoding)


def encode_files(paths: list[str], enc, *, encoding: str = "utf-8",
                 progress=None) -> Iterator[np.ndarray]:
    """Token arrays (uint16 when the vocabulary fits) of every document of every file,
    with `<|endoftext|>` between documents. `progress(path, tokens)` is called per file."""
    eot = enc.eot_token
    if eot is None:
        raise ValueError(f"the vocabulary has no {ENDOFTEXT} token to separate documents")
    dtype = np.uint16 if enc.n_vocab <= 1 << 16 else np.int32
    first = True
    for path in paths:
        count = 0
        try:
            for pieces in documents(path, encoding):
                ids: list[int] = []
                blank = True
                for piece in pieces:
                    blank = blank and not piece.strip()
                    ids += enc.encode(piece)
                if blank:
                    continue
                if not first:
                    ids.insert(0, eot)
                first = False
                count += len(ids)
                yield np.asarray(ids, dtype)
        except UnicodeDecodeError:
            raise decode_error(path, encoding) from None
        except IsADirectoryError:
            continue
        except OSError as e:
            raise ValueError(f"{path} cannot be read ({e.strerror})") from None
        if progress is not None:
            progress(path, count)


def is_text(path: str) -> bool:
    return not path.lower().endswith((".npz", *TOKEN_SUFFIXES))
