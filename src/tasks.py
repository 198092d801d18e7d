"""Zero-shot evaluation tasks: each task's reader (tasks_text.py, tasks_cloze.py) and its
metric, over any scorer.

Public surface:
- `TASKS`: task name -> `Task` (its reader, the format it expects, what it reproduces).
- `read(task, path)` -> examples (raises `DataError`); `evaluate(task, examples, *, scorer,
  encoder, batch_size=8, stride=None, progress=None)` -> `Result(examples, metrics,
  skipped)`. `scorer` is anything with
  `hparams.n_ctx` and `score(windows, batch_size=, progress=)` like `score.Scorer` (a
  LiteRT backend plugs in here); `encoder` is GPT-2's `encoder.Encoder`.
- `DataError`: a bad data file, with a message that names the file, the line and the
  format expected.

Metrics (DEVELOPERS.md has the definitions and where they come from): text-like tasks
report `log_likelihood` (natural log, summed), `tokens`, `words`, `bytes`,
`token_perplexity`, `word_perplexity` and `bits_per_byte` (text8 adds `characters` and
`bits_per_character`); LAMBADA reports `accuracy` and `perplexity`; CBT `accuracy`. All
report `skipped`: examples that could not be scored (E2), never counted as zeros.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable

import tasks_cloze
import tasks_text
from tasks_cloze import Skipped
from tasks_text import DataError, Document

__all__ = ["TASKS", "Task", "Result", "DataError", "read", "evaluate", "encode_pair"]


@dataclasses.dataclass(frozen=True)
class Task:
    read: Callable[[str], list]
    expected: str  # the file format, for messages
    reproduces: str  # the published definition it follows
    kind: str = "text"  # "text", "cloze" (one continuation) or "choice" (pick one)


TASKS = {
    "lambada": Task(tasks_cloze.read_lambada, tasks_cloze.LAMBADA_FORMAT,
                    "lm-evaluation-harness lambada_openai", "cloze"),
    "lambada-last-token": Task(tasks_cloze.read_lambada_passages, tasks_cloze.LAMBADA_FORMAT,
                               "last BPE token of each passage (openai/gpt-2#131)", "cloze"),
    "wikitext2": Task(tasks_text.read_wikitext, tasks_text.WIKITEXT_FORMAT,
                      "lm-evaluation-harness wikitext (wikitext-2-raw-v1 test)"),
    "wikitext103": Task(tasks_text.read_wikitext, tasks_text.WIKITEXT_FORMAT,
                        "lm-evaluation-harness wikitext on wikitext-103-raw-v1 test"),
    "ptb": Task(tasks_text.read_ptb, tasks_text.PTB_FORMAT,
                "PTB test set, per-token perplexity with <eos> (GPT-2 paper)"),
    "enwik8": Task(tasks_text.read_enwik8, tasks_text.ENWIK8_FORMAT,
                   "enwik8 last 5M bytes, bits per byte (GPT-2 paper)"),
    "text8": Task(tasks_text.read_text8, tasks_text.TEXT8_FORMAT,
                  "text8 last 5M characters, bits per character (GPT-2 paper)"),
    "cbt-cn": Task(tasks_cloze.read_cbt, tasks_cloze.CBT_FORMAT,
                   "CBT common nouns, validation (GPT-2 paper's LM rule)", "choice"),
    "cbt-ne": Task(tasks_cloze.read_cbt, tasks_cloze.CBT_FORMAT,
                   "CBT named entities, validation (GPT-2 paper's LM rule)", "choice"),
    "text": Task(tasks_text.read_plain, tasks_text.TEXT_FORMAT, "any UTF-8 file, one document"),
}


@dataclasses.dataclass
class Result:
    examples: int  # scored examples
    metrics: dict
    skipped: list  # of Skipped: (file line, reason)


def read(task_name: str, path: str) -> list:
    """The task's examples in file order, with a `Skipped` for each unusable one; raises
    DataError for a bad file. Fast, and needs no model: check the data first."""
    return TASKS[task_name].read(path)


def encode_pair(encoder, context: str, continuation: str) -> tuple[list, list]:
    """The harness's encoding of a pair: trailing spaces of the context move to the
    continuation; context + continuation is encoded as one text and the continuation's
    tokens are those past the context's own token count."""
    stripped = context.rstrip()
    continuation = context[len(stripped):] + continuation
    whole = encoder.encode(stripped + continuation)
    context_tokens = encoder.encode(stripped)
    return context_tokens, whole[len(context_tokens):]


def evaluate(task_name: str, examples: list, *, scorer, encoder, batch_size: int = 8,
             stride: int | None = None, progress=None) -> Result:
    """Scores `examples` (from `read`) and returns the task's metrics. `progress` is
    None or a tqdm-like bar: its `total` is set to the input tokens to score, and
    `update(n)` follows each batch."""
    n_ctx, eot = scorer.hparams.n_ctx, encoder.eot_token
    skipped = {k: e for k, e in enumerate(examples) if isinstance(e, Skipped)}
    windows, owners = [], []  # owners[i]: (example index, continuation index)
    for k, example in enumerate(examples):
        if k in skipped:
            continue
        per_continuation = windows_of(example, encoder, n_ctx, eot, stride)
        if per_continuation is None:
            skipped[k] = Skipped(line_of(example), "too short to score (fewer than two "
                                                   "tokens, or no context)")
            continue
        for j, ws in enumerate(per_continuation):
            windows += ws
            owners += [(k, j)] * len(ws)
    update = None
    if progress is not None:
        progress.total = sum(len(w.tokens) - 1 for w in windows)
        progress.refresh()
        update = progress.update
    per_example: dict = {}
    for (k, j), result in zip(owners, scorer.score(windows, batch_size=batch_size,
                                                   progress=update)):
        per_example.setdefault(k, {}).setdefault(j, []).append(result)
    scored = [(k, e) for k, e in enumerate(examples) if k not in skipped]
    metric = {"text": text_metrics, "cloze": cloze_metrics, "choice": choice_metrics}
    metrics = metric[TASKS[task_name].kind](task_name, scored, per_example)
    metrics["skipped"] = len(skipped)
    return Result(len(scored), metrics, [skipped[k] for k in sorted(skipped)])


def line_of(example) -> int:
    return example[0] if isinstance(example, tuple) else example.line


def windows_of(example, encoder, n_ctx, eot, stride) -> list | None:
    """The windows of each continuation (or of the document), or None when the example
    cannot be scored."""
    import score  # here: it imports TensorFlow, which `read` (and --help) must not wait for
    if isinstance(example, Document):
        tokens = encoder.encode(example.text)
        if len(tokens) < 2:
            return None
        return [score.rolling_windows(tokens, n_ctx=n_ctx, prefix_token=eot, stride=stride)]
    if isinstance(example, tuple):  # lambada-last-token: (line, passage)
        tokens = encoder.encode(example[1])
        if len(tokens) < 2:
            return None
        return [[score.pair_window(tokens[:-1], tokens[-1:], n_ctx=n_ctx)]]
    out = []
    for continuation in example.continuations:
        context_tokens, continuation_tokens = encode_pair(encoder, example.context,
                                                          continuation)
        if not context_tokens or not 0 < len(continuation_tokens) <= n_ctx:
            return None
        out.append([score.pair_window(context_tokens, continuation_tokens,
                                      n_ctx=n_ctx)])
    return out


def text_metrics(task_name, scored, per_example) -> dict:
    ll = sum(float(r.logprobs.sum()) for k, _ in scored for r in per_example[k][0])
    tokens = sum(len(r.logprobs) for k, _ in scored for r in per_example[k][0])
    words = sum(d.words if d.words is not None else tasks_text.count_words(d.original)
                for _, d in scored)
    n_bytes = sum(len(d.original.encode("utf-8")) for _, d in scored)
    metrics = dict(log_likelihood=ll, tokens=tokens, words=words, bytes=n_bytes,
                   token_perplexity=perplexity(ll, tokens),
                   word_perplexity=perplexity(ll, words),
                   bits_per_byte=-ll / n_bytes / math.log(2) if n_bytes else math.nan)
    if task_name == "text8":
        characters = sum(len(d.original) for _, d in scored)
        metrics.update(characters=characters,
                       bits_per_character=-ll / characters / math.log(2))
    return metrics


def cloze_metrics(task_name, scored, per_example) -> dict:
    lls = [float(per_example[k][0][0].logprobs.sum()) for k, _ in scored]
    hits = [bool(per_example[k][0][0].greedy.all()) for k, _ in scored]
    return dict(accuracy=sum(hits) / len(hits) if hits else math.nan,
                perplexity=perplexity(sum(lls), len(lls)))


def choice_metrics(task_name, scored, per_example) -> dict:
    hits = 0
    for k, example in scored:
        lls = [float(per_example[k][j][0].logprobs.sum())
               for j in range(len(example.continuations))]
        hits += max(range(len(lls)), key=lls.__getitem__) == example.answer
    return dict(accuracy=hits / len(scored) if scored else math.nan)


def perplexity(ll: float, n: int) -> float:
    return math.exp(-ll / n) if n else math.nan
