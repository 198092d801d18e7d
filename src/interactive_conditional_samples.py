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
import progress  # noqa: E402
import prompts  # noqa: E402
import samples_io  # noqa: E402
from cli import Options, UsageError, derive_seed  # noqa: E402
from prompts import PROMPT, PromptTooLong, fit_prompt  # noqa: E402,F401
from samples_io import RULE, SampleOutput  # noqa: E402

PROG = "interactive_conditional_samples.py"


def interact_model(model_name='124M', seed=None, nsamples=1, batch_size=1, length=None,
                   temperature=1, top_k=0, top_p=1, models_dir='models', *,
                   prompt: list[str] | None = None, prompt_file: str | None = None,
                   output: str | None = None, stream: bool | None = None,
                   stop_at_endoftext=False, truncate_prompt=False, dtype='float32',
                   backend='tf') -> int:
    """Completes each prompt with nsamples samples from a GPT-2 model.

    Prompts are typed at the "Model prompt >>> " prompt, piped on stdin one per line, or
    given with --prompt and --prompt_file (then stdin is not read). An empty prompt is
    asked again; Ctrl-D (end of input) exits 0; Ctrl-C stops the sample being generated,
    and at the prompt exits 130. "<|endoftext|>" typed in a prompt is plain text
    (ordinary tokens), as in the original, not the end-of-text token.

    Args:
        model_name: Which model to use: a directory under models_dir.
        seed: Integer seed for the random draws; the same seed and the same prompts give
            the same samples (on the same device).
        nsamples: Number of samples per prompt.
        batch_size: Samples drawn at once; nsamples must be a multiple of it.
        length: Tokens per sample. Default: n_ctx // 2 (512 for the released models, as
            in the original), or fewer if the prompt leaves less room; --length 100 gives
            a whole answer sooner. Prompt + length must fit in the model's context.
        temperature: Randomness: 0 is greedy (always the likeliest token), lower is more
            repetitive, higher more random.
        top_k: Draw only among the k likeliest tokens; 0 means no limit, 40 is a good value.
        top_p: Draw only among the likeliest tokens whose probabilities add up to top_p
            (nucleus sampling); 1 means no limit, 0.9 is a good value.
        models_dir: Directory that holds the model directories.
        prompt: A prompt to complete; give --prompt several times for several prompts.
        prompt_file: A file of prompts, one per line; a .jsonl file holds one JSON object
            per line with a "prompt" string, which may span several lines.
        output: Append the samples to this file as JSON lines (the fields of
            generate_unconditional_samples.py --output, plus "prompt") instead of
            printing them.
        stream: Print tokens as they are generated (default: on when batch_size is 1 and
            samples are printed); --nostream prints each sample when it is complete.
        stop_at_endoftext: End each sample before its first <|endoftext|> token instead of
            printing "<|endoftext|>" and going on, as the original does.
        truncate_prompt: Keep only the last (n_ctx - length) tokens of a prompt that is
            too long, with a note on stderr, instead of refusing it.
        dtype: Weights' type: float32, or bfloat16 for half the memory (and faster on
            CPUs with bfloat16 support); with --backend litert, float32 or int8 (int8
            weights, a quarter of the memory, fastest on a CPU).
        backend: tf (TensorFlow) or litert: LiteRT, TensorFlow's runtime for CPUs,
            several times faster there; the first run exports the model once into
            models_dir/model_name/litert/.
    Returns:
        The exit status: 0 when every prompt is answered (1 if one was refused), 1 if the
        model cannot be loaded, 2 for a bad option, 130 after Ctrl-C at the prompt (or
        during --prompt/--prompt_file runs), 143 on SIGTERM.
    """
    def body() -> int:
        options = samples_io.with_seed(Options.parse(
            model_name=model_name, models_dir=models_dir, seed=seed, nsamples=nsamples,
            batch_size=batch_size, length=length, temperature=temperature, top_k=top_k,
            top_p=top_p, stop_at_endoftext=stop_at_endoftext, dtype=dtype, min_nsamples=1,
            backend=backend))
        printed = output is None
        streaming = options.batch_size == 1 and printed if stream is None else \
            cli.as_bool("stream", stream)
        if streaming and not printed:
            raise UsageError("--stream prints samples; with --output they are written "
                             "whole: drop --stream")
        if streaming and options.batch_size != 1:
            raise UsageError(f"--stream prints one sample at a time: use --batch_size 1, or "
                             f"--nostream with --batch_size {options.batch_size}")
        truncate = cli.as_bool("truncate_prompt", truncate_prompt)
        given = prompts.given(prompt, prompt_file)
        jsonl = samples_io.open_output(output, options)
        try:
            return interact(options, stream=streaming, truncate_prompt=truncate,
                            given=given, jsonl=jsonl)
        finally:
            if jsonl is not None:
                jsonl.close()

    return cli.guarded(PROG, body)


def interact(options: Options, *, stream: bool, truncate_prompt: bool,
             given: list[str] | None = None, jsonl=None) -> int:
    model = samples_io.load_model(options)
    terminal = given is None and sys.stdin.isatty()
    total = None if given is None else len(given) * options.nsamples
    bar = progress.Progress(total, prog=PROG, show=given is not None and progress.wanted(
        to_stdout=jsonl is None))
    out = SampleOutput(model.enc, eot=model.eot, out=sys.stdout, jsonl=jsonl,
                       stop_at_endoftext=options.stop_at_endoftext, progress=bar,
                       settings=samples_io.settings(options, model.model_dir))
    source = prompts.from_stdin(sys.stdin, sys.stdout, echo=jsonl is None) \
        if given is None else given
    refused = answered = 0
    try:
        for index, text in enumerate(source):
            if given is not None and jsonl is None:
                print(PROMPT + text, flush=True)
            try:
                complete(model, options, out, text, index=index, stream=stream,
                         truncate_prompt=truncate_prompt)
                answered += 1
            except PromptTooLong as e:
                cli.note(PROG, f"error: {e}")
                refused += 1
            except (KeyboardInterrupt, SystemError) as e:
                if given is not None or not isinstance(cli.interruption(e), KeyboardInterrupt):
                    raise
                cli.note(PROG, "interrupted: sample stopped; enter another prompt, or "
                               "Ctrl-D to quit")
                if jsonl is None:
                    print(RULE, flush=True)
            if terminal and jsonl is not None:
                cli.note(PROG, out.summary())
    except BaseException as e:
        stop = cli.interruption(e)
        if stop is not None and given is not None:
            where = f", all in {jsonl.path}" if jsonl is not None else ""
            stop.detail = f" after {out.total} samples{where}"
        raise
    finally:
        bar.close()
    if not terminal:
        also = f"; {refused} refused (see above)" if refused else ""
        cli.note(PROG, out.summary(prompts=answered) + also)
    return cli.EXIT_FAILURE if refused else cli.EXIT_OK


def complete(model, options: Options, out: SampleOutput, text: str, *, index: int,
             stream: bool, truncate_prompt: bool) -> None:
    """nsamples continuations of one prompt, printed and closed by the rule, or written."""
    tokens, length, message = prompts.prepare(model.enc, text, n_ctx=model.hparams.n_ctx,
                                              length=options.length, truncate=truncate_prompt)
    if message:
        cli.note(PROG, message)
    out.restart()
    for batch in range(options.nsamples // options.batch_size):
        seed = derive_seed(options.seed, index, batch)
        if stream:
            out.stream(model.stream(tokens, length=length, seed=seed))
            continue
        rows = model.generate(tokens, batch_size=options.batch_size, length=length, seed=seed,
                              stop=options.stop_at_endoftext)
        for row in rows:
            out.add(row, prompt=text, seed=seed, length_asked=length)
    if out.jsonl is None:
        print(RULE, flush=True)


def main(argv=None) -> int:
    return cli.fire_main(interact_model, argv)


if __name__ == "__main__":
    sys.exit(main())
