#!/usr/bin/env python3
"""Generates unconditional samples from GPT-2: printed, or appended to a JSON-lines file.

The original script's flags, defaults and output (`==== SAMPLE n ====` per sample), with
its faults fixed: samples are numbered 1..n (the original counted `batch_size` per row),
the start token is not printed, and `--output FILE.jsonl` appends one record per sample,
written as soon as the sample is done, so an endless run stopped with Ctrl-C or SIGTERM
keeps every finished sample.
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before anything imports TensorFlow

import cli  # noqa: E402
import samples_io  # noqa: E402
from cli import Options, derive_seed  # noqa: E402
from samples_io import JsonlWriter, SampleOutput  # noqa: E402

PROG = "generate_unconditional_samples.py"


def sample_model(model_name='124M', seed=None, nsamples=0, batch_size=1, length=None,
                 temperature=1, top_k=0, top_p=1, models_dir='models', *, output=None,
                 stop_at_endoftext=False, dtype='float32') -> int:
    """Generates samples from a GPT-2 model with no prompt.

    Each sample starts after the <|endoftext|> token, which is not part of the output.
    Ctrl-C or SIGTERM stops the run (exit 130 or 143) and says how many samples are done.

    Args:
        model_name: Which model to use: a directory under models_dir.
        seed: Integer seed for the random draws; the same seed gives the same samples (on
            the same device).
        nsamples: Number of samples; 0 (the default) generates until interrupted.
        batch_size: Samples drawn at once; nsamples must be a multiple of it.
        length: Tokens per sample. Default: n_ctx - 1, the whole context after the start
            token; at most n_ctx - 1.
        temperature: Randomness: 0 is greedy (always the likeliest token), lower is more
            repetitive, higher more random.
        top_k: Draw only among the k likeliest tokens; 0 means no limit, 40 is a good value.
        top_p: Draw only among the likeliest tokens whose probabilities add up to top_p
            (nucleus sampling); 1 means no limit, 0.9 is a good value.
        models_dir: Directory that holds the model directories.
        output: Append samples to this file as JSON lines, {"id", "ended", "length",
            "text"} (gpt-2-output-dataset's fields; length counts tokens, ended is true
            when the sample reached <|endoftext|>) instead of printing them. An existing
            file is appended to, never truncated; ids continue after its last line. A
            progress bar is shown when nsamples > 0 and stderr is a terminal.
        stop_at_endoftext: End each sample before its first <|endoftext|> token instead of
            printing "<|endoftext|>" and going on, as the original does.
        dtype: Weights' type: float32, or bfloat16 for half the memory.
    Returns:
        The exit status: 0 when done, 1 if the model cannot be loaded, 2 for a bad option,
        130 after Ctrl-C, 143 on SIGTERM.
    """
    def body() -> int:
        options = Options.parse(
            model_name=model_name, models_dir=models_dir, seed=seed, nsamples=nsamples,
            batch_size=batch_size, length=length, temperature=temperature, top_k=top_k,
            top_p=top_p, stop_at_endoftext=stop_at_endoftext, dtype=dtype, min_nsamples=0)
        # Opened before the model loads, so a bad path costs no waiting.
        jsonl = None if output is None else JsonlWriter(cli.as_str("output", output))
        try:
            return generate(options, jsonl=jsonl)
        finally:
            if jsonl is not None:
                jsonl.close()

    return cli.guarded(PROG, body)


def generate(options: Options, *, jsonl: JsonlWriter | None) -> int:
    model = samples_io.load_model(options)
    length = options.length or model.hparams.n_ctx - 1
    out = SampleOutput(model.enc, eot=model.eot, out=sys.stdout, jsonl=jsonl,
                       stop_at_endoftext=options.stop_at_endoftext)
    bar = progress_bar(options.nsamples, to_file=jsonl is not None)
    batch = 0
    try:
        while options.nsamples == 0 or out.count < options.nsamples:
            rows = model.generate(None, batch_size=options.batch_size, length=length,
                                  seed=derive_seed(options.seed, batch),
                                  stop=options.stop_at_endoftext)
            for row in rows:
                out.add(row)
                bar.update(1)
            batch += 1
    except (KeyboardInterrupt, cli.Terminated) as stop:
        where = f", all in {jsonl.path}" if jsonl is not None else ""
        stop.detail = f" after {out.count} samples{where}"
        raise
    finally:
        bar.close()
    return cli.EXIT_OK


def progress_bar(nsamples: int, *, to_file: bool):
    """tqdm over the samples, shown only when it cannot garble them: a known total, stderr
    a terminal, and the samples going to a file or elsewhere than that terminal."""
    from tqdm import tqdm
    show = (nsamples > 0 and sys.stderr.isatty()
            and (to_file or not sys.stdout.isatty()))
    return tqdm(total=nsamples, unit="sample", file=sys.stderr, disable=not show)


def main(argv=None) -> int:
    return cli.fire_main(sample_model, argv)


if __name__ == "__main__":
    sys.exit(main())
