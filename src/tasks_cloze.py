"""Readers of the cloze tasks: LAMBADA (OpenAI's lambada_test.jsonl) and the Children's
Book Test (cbtest_CN/NE_valid_2000ex.txt), each example as a context and its candidate
continuations.

- `lambada`: lm-evaluation-harness `lambada_openai`: context = the passage without its last
  space-separated word, the one continuation = " " + that word.
- `lambada-last-token`: the reading of OpenAI's protocol most often reproduced (openai/gpt-2
  issue #131): the passage's last BPE token given all the tokens before it. Easier: when a
  word is split into several tokens, the earlier ones are given.
- `cbt-cn`, `cbt-ne`: the paper's rule: the 20 story sentences and the query up to its
  blank are the context; each of the 10 candidates followed by the rest of the query is a
  continuation; the most likely one is the answer. Sentences are joined with spaces and
  detokenized with the PTB rules plus quotes and punctuation.
"""
from __future__ import annotations

import dataclasses
import json

from tasks_text import CONTRACTIONS, DataError, apply_rules, read_text, wrong_format

LAMBADA_FORMAT = ("OpenAI's LAMBADA file (lambada_test.jsonl: one JSON object "
                  "{\"text\": passage} per line)")
CBT_FORMAT = ("a Children's Book Test file (cbtest_CN_valid_2000ex.txt: 20 numbered "
              "sentences, then '21 query<TAB>answer<TAB><TAB>c1|...|c10', then a blank line)")
BLANK = "XXXXX"
CBT_RULES = [("`` ", '"'), (" ''", '"'), ("-LRB- ", "("), (" -RRB-", ")")] + [
    (f" {p}", p) for p in ",.;:!?"] + CONTRACTIONS


@dataclasses.dataclass(frozen=True)
class Cloze:
    context: str
    continuations: tuple  # of str
    answer: int  # index of the right continuation
    line: int


@dataclasses.dataclass(frozen=True)
class Skipped:
    line: int
    reason: str


def read_lambada_passages(path: str) -> list[tuple[int, str]]:
    """(line number, passage) of each non-blank line."""
    text = read_text(path, LAMBADA_FORMAT)
    passages = []
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise wrong_format(path, text, LAMBADA_FORMAT, line=number) from None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise DataError(path, 'no "text" string in this JSON line', LAMBADA_FORMAT,
                            line=number)
        passages.append((number, record["text"]))
    return passages


def read_lambada(path: str) -> list:
    """One `Cloze` per passage (or a `Skipped` for a passage with no context)."""
    examples = []
    for number, passage in read_lambada_passages(path):
        words = passage.split(" ")
        context = " ".join(words[:-1])
        if not context:
            examples.append(Skipped(number, "the passage has one word: no context to "
                                            "predict it from"))
        else:
            examples.append(Cloze(context, (" " + words[-1],), 0, number))
    return examples


def read_cbt(path: str) -> list:
    text = read_text(path, CBT_FORMAT)
    lines = text.split("\n")
    examples, story, start = [], [], None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            if story:
                raise DataError(path, f"the story that starts on line {start} has "
                                      f"{len(story)} sentences and no query", CBT_FORMAT,
                                line=number)
            continue
        index, _, rest = line.partition(" ")
        expected_index = len(story) + 1
        if index != str(expected_index):
            raise (wrong_format(path, text, CBT_FORMAT, line=number) if not examples
                   and not story else
                   DataError(path, f"expected sentence number {expected_index}",
                             CBT_FORMAT, line=number))
        if start is None or not story:
            start = number
        if expected_index < 21:
            story.append(rest)
            continue
        examples.append(cbt_question(path, number, story, rest))
        story = []
    if story:
        raise DataError(path, "the file ends inside a story", CBT_FORMAT, line=len(lines))
    if not examples:
        raise wrong_format(path, text, CBT_FORMAT)
    return examples


def cbt_question(path: str, number: int, story: list, query_line: str) -> Cloze:
    fields = query_line.split("\t")
    if len(fields) != 4 or fields[2] != "":
        raise DataError(path, "the query line does not have 4 tab-separated fields",
                        CBT_FORMAT, line=number)
    query, answer, _, candidates = fields
    candidates = tuple(c for c in candidates.split("|"))
    if BLANK not in query or answer not in candidates or "" in candidates:
        raise DataError(path, f"the query has no {BLANK}, or the answer {answer!r} is not "
                              f"among the candidates", CBT_FORMAT, line=number)
    before, after = query.split(BLANK, 1)
    context_raw = " ".join(story) + " " + before
    context = apply_rules(context_raw, CBT_RULES)
    continuations = []
    for candidate in candidates:
        full = apply_rules(context_raw + candidate + after, CBT_RULES)
        # The rules are local, so the detokenized context is a prefix of the detokenized
        # filled story; if a rule ever reached across the blank, score the raw text.
        continuations.append(full[len(context):] if full.startswith(context) else None)
    if None in continuations:
        context = context_raw
        continuations = [candidate + after for candidate in candidates]
    return Cloze(context, tuple(continuations), candidates.index(answer), number)
