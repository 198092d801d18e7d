"""Where the interactive script's prompts come from: `--prompt TEXT` (repeatable),
`--prompt_file FILE`, or standard input (typed at a terminal, or piped one per line).

A prompt file holds one prompt per line; a `.jsonl` file holds one JSON object per line
with a "prompt" string, which may span several lines ("\\n" inside it). Blank lines are
skipped. Both are read whole, and checked, before the model loads.
"""
from __future__ import annotations

import json
import sys

from cli import UsageError

PROMPT = "Model prompt >>> "
EMPTY = "Prompt should not be empty!"


class PromptTooLong(ValueError):
    """This prompt cannot be sampled (S1); the next one may be."""


def clean(text: str) -> str:
    """Lone surrogates cannot be encoded as UTF-8: make them U+FFFD like bad bytes."""
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def given(prompt, prompt_file) -> list[str] | None:
    """The prompts of --prompt then --prompt_file, or None when neither is given."""
    if prompt is None and prompt_file is None:
        return None
    found = []
    for text in [] if prompt is None else prompt if isinstance(prompt, list) else [prompt]:
        if not str(text).strip():
            raise UsageError("--prompt must not be empty")
        found.append(clean(str(text)))
    if prompt_file is not None:
        found += read_file(str(prompt_file))
    return found


def read_file(path: str) -> list[str]:
    try:
        with open(path, "rb") as f:
            data = f.read().decode("utf-8", "replace")
    except OSError as e:
        raise UsageError(f"--prompt_file {path} cannot be read ({e.strerror}): check the "
                         f"path") from None
    lines = data.splitlines()
    if path.endswith(".jsonl"):
        found = [from_json(line, path, n) for n, line in enumerate(lines, 1) if line.strip()]
    else:
        found = [clean(line) for line in lines if line.strip()]
    if not found:
        raise UsageError(f"--prompt_file {path} holds no prompts")
    return found


def from_json(line: str, path: str, number: int) -> str:
    expected = ('expected one JSON object per line with a "prompt" string, such as '
                '{"prompt": "First line\\nsecond line"}')
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):
        raise UsageError(f"--prompt_file {path} line {number} is not JSON: "
                         f"{expected}") from None
    text = record.get("prompt") if isinstance(record, dict) else None
    if not isinstance(text, str):
        raise UsageError(f"--prompt_file {path} line {number} has no \"prompt\" string: "
                         f"{expected}")
    if not text.strip():
        raise UsageError(f"--prompt_file {path} line {number}: the prompt is empty")
    return clean(text)


def from_stdin(stdin, stdout, *, echo: bool = True):
    """Yields each non-blank prompt, asking again after a blank one, until end of input.
    At a terminal the prompt is typed after "Model prompt >>> "; piped prompts are echoed
    after it (with `echo`), so the output shows what each sample continues."""
    terminal = stdin.isatty()
    while True:
        try:
            text = input(PROMPT) if terminal else read_line(stdin, stdout, echo=echo)
        except EOFError:
            if terminal:
                stdout.write("\n")  # Ctrl-D: leave the shell's prompt on a line of its own
            return
        except KeyboardInterrupt:
            if terminal:
                stdout.write("\n")  # the exit message goes below the prompt, not after it
            raise
        if not text.strip():
            print(EMPTY, file=sys.stderr, flush=True)  # stderr: stdout holds the samples
            continue
        yield clean(text)


def read_line(stdin, stdout, *, echo: bool = True) -> str:
    line = stdin.readline()
    if not line:
        raise EOFError
    line = line.rstrip("\n").rstrip("\r")
    if echo:
        stdout.write(PROMPT + line + "\n")
        stdout.flush()
    return line


def prepare(enc, text: str, *, n_ctx: int, length, truncate: bool):
    """(prompt tokens, sample length, a note or None): the one place where the scripts and
    the API encode a prompt, fitted to the context by `fit_prompt`.

    A prompt of more UTF-8 bytes than its room of tokens can stand for cannot fit: it is
    refused, or with `truncate` only its end is encoded, before BPE runs over all of it (a
    megabyte without spaces would keep BPE busy for seconds)."""
    default = n_ctx // 2
    room = n_ctx - (length if length is not None else default if truncate else 1)
    size = len(text.encode("utf-8"))
    if size <= enc.max_prompt_bytes(room):
        return fit_prompt(enc.encode(text), n_ctx=n_ctx, length=length, truncate=truncate)
    if not truncate:
        raise PromptTooLong(f"the prompt has {size:,} bytes, more than {room} tokens can hold "
                            f"(at most {enc.max_prompt_bytes(room):,} bytes) beside the "
                            f"sample in the model's context of {n_ctx} tokens: shorten it, "
                            f"or pass --truncate_prompt to keep its end")
    tokens = enc.encode_tail(text, room)
    return tokens, length or default, (
        f"note: the prompt has {size:,} bytes; keeping its last {len(tokens)} tokens so that "
        f"they and {length or default} new tokens fit the context of {n_ctx}")


def fit_prompt(tokens: list, *, n_ctx: int, length, truncate: bool):
    """(prompt tokens, sample length, a note or None) such that the two fit in n_ctx.

    An explicit length is kept: a prompt too long for it is refused (S1), or with
    `truncate` shortened to its last n_ctx - length tokens. The default length, n_ctx // 2,
    shrinks to the room the prompt leaves, unless `truncate` asks to keep it.
    """
    n = len(tokens)
    if length is None and not truncate:
        length = min(n_ctx // 2, n_ctx - n)
        if length < 1:
            raise PromptTooLong(f"the prompt has {n} tokens, which fills the model's context "
                                f"of {n_ctx} tokens: shorten it, or pass --truncate_prompt "
                                f"to keep its last {n_ctx // 2}")
        shrunk = None if length == n_ctx // 2 else (
            f"note: the prompt has {n} tokens, so samples are {length} tokens long (the "
            f"context holds {n_ctx}); pass --length to choose")
        return tokens, length, shrunk
    length = n_ctx // 2 if length is None else length
    room = n_ctx - length
    if n <= room:
        return tokens, length, None
    if truncate:
        return tokens[-room:], length, (f"note: the prompt has {n} tokens; keeping its last "
                                        f"{room} so that they and {length} new tokens fit the "
                                        f"context of {n_ctx}")
    remedy = f"use --length {n_ctx - n} or less" if n < n_ctx else "shorten the prompt"
    raise PromptTooLong(f"prompt of {n} tokens + length {length} = {n + length} exceeds the "
                        f"model's context of {n_ctx} tokens: {remedy}, or pass "
                        f"--truncate_prompt to keep its last {room} tokens")
