"""Readers of the language-modelling test files in their published formats, and the
detokenizers that undo their tokenization before GPT-2 reads them.

Each reader returns `Document`s: the text to score and the dataset's own text, on which
words and bytes are counted. Bad files raise `DataError` naming the file, the line and the
format expected. Definitions (see DEVELOPERS.md, "Evaluating"):
- WikiText (wiki.test.raw of wikitext-2-raw-v1 or wikitext-103-raw-v1; both releases share
  the test articles): split into articles at level-1 headings (" = Title = ") exactly as
  the lm-evaluation-harness's `wikitext_document_level` dataset does, detokenized with the
  harness's `wikitext_detokenizer` rules.
- PTB (Mikolov's ptb.test.txt): one document; contractions re-attached; words are the
  dataset's tokens plus one <eos> per sentence (the count PTB perplexities use).
- enwik8: the last 5,000,000 bytes; text8: the last 5,000,000 characters; no
  detokenization. text: the whole file, as it is.
"""
from __future__ import annotations

import dataclasses
import re

WIKITEXT_FORMAT = ("WikiText's raw test file (wiki.test.raw: UTF-8 articles under "
                   "' = Title = ' heading lines)")
PTB_FORMAT = ("Mikolov's PTB test file (ptb.test.txt: lowercase space-separated tokens, N "
              "for numbers, one sentence per line)")
ENWIK8_FORMAT = ("enwik8 (the first 100,000,000 bytes of an English Wikipedia XML dump, "
                 "starting with '<mediawiki')")
TEXT8_FORMAT = "text8 (lowercase letters a-z and single spaces, one line)"
TEXT_FORMAT = "UTF-8 text"
TEST_SPLIT = 5_000_000  # enwik8 bytes / text8 characters: the usual 90M/5M/5M split


class DataError(ValueError):
    """A data file that is missing, empty, undecodable or of another format."""

    def __init__(self, path: str, problem: str, expected: str, line: int | None = None):
        where = f"{path}: line {line}: " if line is not None else f"{path}: "
        super().__init__(f"{where}{problem}; expected {expected}")


@dataclasses.dataclass(frozen=True)
class Document:
    text: str  # what the model scores
    original: str  # the dataset's own text: words and bytes are counted on it
    line: int  # the file line where it starts
    words: int | None = None  # None: `count_words(original)`


def count_words(text: str) -> int:
    """The harness's word count: pieces of `re.split(r"\\s+", text)` (so a leading or
    trailing run of whitespace adds an empty piece, as it does there)."""
    return len(re.split(r"\s+", text))


def read_bytes(path: str, expected: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise DataError(path, "not found: give --data the path of the file", expected) from None
    except IsADirectoryError:
        raise DataError(path, "is a directory, not a file", expected) from None
    except OSError as e:
        raise DataError(path, f"cannot be read ({e.strerror})", expected) from None
    if not data.strip():
        raise DataError(path, "is empty", expected)
    return data


def decode(path: str, data: bytes, expected: str, *, first_line: int = 1) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = first_line + data[:e.start].count(b"\n")
        raise DataError(path, f"byte 0x{data[e.start]:02x} (offset {e.start}) is not UTF-8",
                        expected, line=line) from None


def read_text(path: str, expected: str) -> str:
    return decode(path, read_bytes(path, expected), expected)


def looks_like(text: str) -> str | None:
    """What another task's file looks like, for the error message."""
    first = text.lstrip()[:200]
    if first.startswith("{"):
        return "JSON lines (like LAMBADA's lambada_test.jsonl)"
    if re.match(r"1 \S", first) and "\t" in text[:20000]:
        return "a Children's Book Test file"
    if re.search(r"^ = [^=].* = *$", text[:20000], re.M):
        return "a WikiText file"
    if first.startswith("<mediawiki"):
        return "enwik8"
    return None


def wrong_format(path: str, text: str, expected: str, line: int = 1) -> DataError:
    other = looks_like(text)
    problem = f"this looks like {other}" if other else "not in this task's format"
    return DataError(path, problem, expected, line=line)


# The harness's wikitext detokenizer, as an ordered table of literal replacements (str) and
# regular expressions (re.Pattern). The "/' [0-9]/" pattern matches those literal
# characters, slashes included; it is kept because the harness applies it.
WIKITEXT_RULES = [
    ("s '", "s'"), (re.compile(r"/' [0-9]/"), r"/'[0-9]/"),
    (" @-@ ", "-"), (" @,@ ", ","), (" @.@ ", "."),
    (" : ", ": "), (" ; ", "; "), (" . ", ". "), (" ! ", "! "), (" ? ", "? "), (" , ", ", "),
    (re.compile(r"\(\s*([^\)]*?)\s*\)"), r"(\1)"), (re.compile(r"\[\s*([^\]]*?)\s*\]"), r"[\1]"),
    (re.compile(r"{\s*([^}]*?)\s*}"), r"{\1}"), (re.compile(r"\"\s*([^\"]*?)\s*\""), r'"\1"'),
    (re.compile(r"'\s*([^']*?)\s*'"), r"'\1'"),
    ("= = = =", "===="), ("= = =", "==="), ("= =", "=="), (" \N{DEGREE SIGN} ", "\N{DEGREE SIGN}"),
    (" \n", "\n"), ("\n ", "\n"), (" N ", " 1 "), (" 's", "'s"),
]
# PTB and CBT: only changes that re-tokenizing undoes (the paper's "invertible").
CONTRACTIONS = [(f" {c}", c) for c in ("n't", "'s", "'re", "'ve", "'m", "'ll", "'d")]
PTB_RULES = CONTRACTIONS + [("s ' ", "s' ")]


def apply_rules(text: str, rules) -> str:
    for pattern, replacement in rules:
        if isinstance(pattern, str):
            text = text.replace(pattern, replacement)
        else:
            text = pattern.sub(replacement, text)
    return text


def is_article_heading(line: str) -> bool:
    """A level-1 heading (" = Title = "), the start of a WikiText article."""
    squeezed = line.replace("= = =", "===").replace("= =", "==").strip()
    return squeezed.startswith("= ") and squeezed.endswith(" =")


def read_wikitext(path: str) -> list[Document]:
    text = read_text(path, WIKITEXT_FORMAT)
    lines = text.split("\n")
    if not any(is_article_heading(line) for line in lines):
        raise wrong_format(path, text, WIKITEXT_FORMAT + ": no ' = Title = ' line found")
    pages, page, start = [], [], 1
    for number, line in enumerate(lines, 1):
        if is_article_heading(line):
            if "\n".join(page).strip():
                pages.append((start, "\n".join(page)))
            page, start = [], number
        page.append(line)
    pages.append((start, "\n".join(page)))  # the last page is kept even if blank, as there
    return [Document(apply_rules(p, WIKITEXT_RULES), p, start) for start, p in pages]


def read_ptb(path: str) -> list[Document]:
    text = read_text(path, PTB_FORMAT)
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the file's last newline ends the last sentence
    for number, line in enumerate(lines, 1):  # lowercase tokens, N for every number
        if "\t" in line or any(t != t.lower() and t != "N" for t in line.split()):
            raise wrong_format(path, text, PTB_FORMAT, line=number)
    sentences = [line.strip() for line in lines]
    scored = "\n".join(apply_rules(s, PTB_RULES) for s in sentences) + "\n"
    words = sum(len(s.split()) + 1 for s in sentences)  # + <eos>
    return [Document(scored, text, 1, words=words)]


def read_enwik8(path: str) -> list[Document]:
    data = read_bytes(path, ENWIK8_FORMAT)
    if not data.startswith(b"<mediawiki"):
        raise wrong_format(path, data[:20000].decode("utf-8", "replace"), ENWIK8_FORMAT)
    begin = max(0, len(data) - TEST_SPLIT)
    split = data[begin:]
    # The 5M-byte cut (and the file's end) may fall inside a character: those bytes are
    # not scored and not counted.
    lead = 0
    while lead < min(3, len(split)) and 0x80 <= split[lead] < 0xC0:
        lead += 1
    split = split[lead:]
    for tail in range(1, min(4, len(split)) + 1):  # an incomplete last character
        head = split[-tail]
        if head >= 0xC0:
            if tail < (2 if head < 0xE0 else 3 if head < 0xF0 else 4):
                split = split[:-tail]
            break
        if head < 0x80:
            break
    first_line = 1 + data[:begin + lead].count(b"\n")
    text = decode(path, split, ENWIK8_FORMAT, first_line=first_line)
    return [Document(text, text, first_line)]


def read_text8(path: str) -> list[Document]:
    text = read_text(path, TEXT8_FORMAT)
    bad = re.search(r"[^a-z ]", text)
    if bad:
        line = 1 + text[:bad.start()].count("\n")
        raise DataError(path, f"character {bad.group()!r} at offset {bad.start()} is not a "
                        f"lowercase letter or a space", TEXT8_FORMAT, line=line)
    split = text[-TEST_SPLIT:]
    return [Document(split, split, 1)]


def read_plain(path: str) -> list[Document]:
    text = read_text(path, TEXT_FORMAT)
    return [Document(text, text, 1)]
