#!/usr/bin/env python3
"""Completes prompts typed at a terminal, or piped on stdin one per line, with GPT-2.

The original script's flags, defaults and output (`==== SAMPLE n ====` per sample, a line
of 80 `=` after each prompt), with its faults fixed: a prompt too long for the context is
one clear error instead of a crash, an empty prompt is asked again, Ctrl-D exits 0, Ctrl-C
stops the sample being generated (and at the prompt exits 130), tokens appear as they are
generated, and output is UTF-8 whatever the console's encoding.
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before anything imports TensorFlow

import cli  # noqa: E402
import samples_io  # noqa: E402
from cli import Options, UsageError, derive_seed  # noqa: E402
from samples_io import RULE, SampleOutput  # noqa: E402

PROG = "interactive_conditional_samples.py"
PROMPT = "Model prompt >>> "


class PromptTooLong(ValueError):
    """This prompt cannot be sampled (S1); the next one may be."""


def interact_model(model_name='124M', seed=None, nsamples=1, batch_size=1, length=None,
                   temperature=1, top_k=0, top_p=1, models_dir='models', *, stream=None,
                   stop_at_endoftext=False, truncate_prompt=False, dtype='float32') -> int:
    """Completes each prompt with nsamples samples from a GPT-2 model.

    Prompts are typed at the "Model prompt >>> " prompt, or piped on stdin one per line.
    An empty prompt is asked again; Ctrl-D (end of input) exits 0; Ctrl-C stops the sample
    being generated, and at the prompt exits 130. "<|endoftext|>" typed in a prompt is
    plain text (ordinary tokens), as in the original, not the end-of-text token.

    Args:
        model_name: Which model to use: a directory under models_dir.
        seed: Integer seed for the random draws; the same seed and the same prompts give
            the same samples (on the same device).
        nsamples: Number of samples per prompt.
        batch_size: Samples drawn at once; nsamples must be a multiple of it.
        length: Tokens per sample. Default: n_ctx // 2, or fewer if the prompt leaves less
            room. Prompt + length must fit in the model's context (n_ctx tokens).
        temperature: Randomness: 0 is greedy (always the likeliest token), lower is more
            repetitive, higher more random.
        top_k: Draw only among the k likeliest tokens; 0 means no limit, 40 is a good value.
        top_p: Draw only among the likeliest tokens whose probabilities add up to top_p
            (nucleus sampling); 1 means no limit, 0.9 is a good value.
        models_dir: Directory that holds the model directories.
        stream: Print tokens as they are generated (default: on when batch_size is 1);
            --nostream prints each sample when it is complete.
        stop_at_endoftext: End each sample before its first <|endoftext|> token instead of
            printing "<|endoftext|>" and going on, as the original does.
        truncate_prompt: Keep only the last (n_ctx - length) tokens of a prompt that is
            too long, with a note on stderr, instead of refusing it.
        dtype: Weights' type: float32, or bfloat16 for half the memory.
    Returns:
        The exit status: 0 at end of input (1 if a prompt was refused), 1 if the model
        cannot be loaded, 2 for a bad option, 130 after Ctrl-C at the prompt, 143 on
        SIGTERM.
    """
    def body() -> int:
        options = Options.parse(
            model_name=model_name, models_dir=models_dir, seed=seed, nsamples=nsamples,
            batch_size=batch_size, length=length, temperature=temperature, top_k=top_k,
            top_p=top_p, stop_at_endoftext=stop_at_endoftext, dtype=dtype, min_nsamples=1)
        streaming = options.batch_size == 1 if stream is None else \
            cli.as_bool("stream", stream)
        if streaming and options.batch_size != 1:
            raise UsageError(f"--stream prints one sample at a time: use --batch_size 1, or "
                             f"--nostream with --batch_size {options.batch_size}")
        truncate = cli.as_bool("truncate_prompt", truncate_prompt)
        return interact(options, stream=streaming, truncate_prompt=truncate)

    return cli.guarded(PROG, body)


def interact(options: Options, *, stream: bool, truncate_prompt: bool) -> int:
    model = samples_io.load_model(options)
    refused = False
    for index, text in enumerate(prompts(sys.stdin, sys.stdout)):
        try:
            complete(model, options, text, index=index, stream=stream,
                     truncate_prompt=truncate_prompt)
        except PromptTooLong as e:
            cli.note(PROG, f"error: {e}")
            refused = True
        except KeyboardInterrupt:
            cli.note(PROG, "interrupted: sample stopped; enter another prompt, or "
                                  "Ctrl-D to quit")
            print(RULE, flush=True)
    return cli.EXIT_FAILURE if refused else cli.EXIT_OK


def prompts(stdin, stdout):
    """Yields each non-blank prompt, asking again after a blank one, until end of input.
    At a terminal the prompt is typed after "Model prompt >>> "; piped prompts are echoed
    after it, so the output shows what each sample continues."""
    terminal = stdin.isatty()
    while True:
        try:
            text = input(PROMPT) if terminal else read_line(stdin, stdout)
        except EOFError:
            if terminal:
                stdout.write("\n")  # Ctrl-D: leave the shell's prompt on a line of its own
            return
        except KeyboardInterrupt:
            if terminal:
                stdout.write("\n")  # the exit message goes below the prompt, not after it
            raise
        if not text.strip():
            print("Prompt should not be empty!", file=stdout, flush=True)
            continue
        # Lone surrogates cannot be encoded as UTF-8: make them U+FFFD like bad bytes.
        yield text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def read_line(stdin, stdout) -> str:
    line = stdin.readline()
    if not line:
        raise EOFError
    line = line.rstrip("\n").rstrip("\r")
    stdout.write(PROMPT + line + "\n")
    stdout.flush()
    return line


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


def complete(model, options: Options, text: str, *, index: int, stream: bool,
             truncate_prompt: bool) -> None:
    """Prints nsamples continuations of one prompt, then the closing rule."""
    tokens, length, message = fit_prompt(model.enc.encode(text), n_ctx=model.hparams.n_ctx,
                                         length=options.length, truncate=truncate_prompt)
    if message:
        cli.note(PROG, message)
    out = SampleOutput(model.enc, eot=model.eot, out=sys.stdout,
                       stop_at_endoftext=options.stop_at_endoftext)
    for batch in range(options.nsamples // options.batch_size):
        seed = derive_seed(options.seed, index, batch)
        if stream:
            out.stream(model.stream(tokens, length=length, seed=seed))
            continue
        rows = model.generate(tokens, batch_size=options.batch_size, length=length, seed=seed,
                              stop=options.stop_at_endoftext)
        for row in rows:
            out.add(row)
    print(RULE, flush=True)


def main(argv=None) -> int:
    return cli.fire_main(interact_model, argv)


if __name__ == "__main__":
    sys.exit(main())
