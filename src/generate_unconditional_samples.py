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
import progress  # noqa: E402
import samples_io  # noqa: E402
from cli import Options, derive_seed  # noqa: E402
from samples_io import JsonlWriter, SampleOutput  # noqa: E402

PROG = "generate_unconditional_samples.py"


def sample_model(model_name='124M', seed=None, nsamples=0, batch_size=1, length=None,
                 temperature=1, top_k=0, top_p=1, models_dir='models', *,
                 output: str | None = None, stop_at_endoftext=False, dtype='float32',
                 backend='tf') -> int:
    """Generates samples from a GPT-2 model with no prompt.

    Each sample starts after the <|endoftext|> token, which is not part of the output.
    Ctrl-C or SIGTERM stops the run (exit 130 or 143) and says how many samples are done;
    otherwise the last line on stderr says how many samples were written where. Long
    runs report progress on stderr: a bar at a terminal, else a line every few seconds.

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
        output: Append samples to this file as JSON lines instead of printing them:
            "id", "ended", "length", "text" (gpt-2-output-dataset's fields; length counts
            tokens, ended is true when the sample reached <|endoftext|>), then the
            settings that made the sample: "model", "seed" (its batch's: --seed SEED
            --batch_size B --nsamples B draws that batch again), "batch_size",
            "length_asked", "temperature", "top_k", "top_p", "stop_at_endoftext",
            "dtype". An existing file is appended to, never truncated; ids continue after
            its last record, also when several runs append at once. A record that cannot
            be written whole (disk full) is removed again. Progress goes to stderr.
        stop_at_endoftext: End each sample before its first <|endoftext|> token instead of
            printing "<|endoftext|>" and going on, as the original does.
        dtype: Weights' type: float32, or bfloat16 for half the memory; with --backend
            litert, float32 or int8 (int8 weights, a quarter of the memory, fastest on a
            CPU).
        backend: tf (TensorFlow) or litert: LiteRT, TensorFlow's runtime for CPUs,
            several times faster there; the first run exports the model once into
            models_dir/model_name/litert/.
    Returns:
        The exit status: 0 when done, 1 if the model cannot be loaded, 2 for a bad option,
        130 after Ctrl-C, 143 on SIGTERM.
    """
    def body() -> int:
        options = samples_io.with_seed(Options.parse(
            model_name=model_name, models_dir=models_dir, seed=seed, nsamples=nsamples,
            batch_size=batch_size, length=length, temperature=temperature, top_k=top_k,
            top_p=top_p, stop_at_endoftext=stop_at_endoftext, dtype=dtype, min_nsamples=0,
            backend=backend))
        jsonl = samples_io.open_output(output, options)
        try:
            return generate(options, jsonl=jsonl)
        finally:
            if jsonl is not None:
                jsonl.close()

    return cli.guarded(PROG, body)


def generate(options: Options, *, jsonl: JsonlWriter | None) -> int:
    model = samples_io.load_model(options)
    length = options.length or model.hparams.n_ctx - 1
    shown = progress.wanted(to_stdout=jsonl is None)
    bar = progress.Progress(options.nsamples, prog=PROG, show=shown)
    out = SampleOutput(model.enc, eot=model.eot, out=sys.stdout, jsonl=jsonl,
                       stop_at_endoftext=options.stop_at_endoftext, progress=bar,
                       settings=samples_io.settings(options, model.model_dir))
    batch = 0
    try:
        while options.nsamples == 0 or out.total < options.nsamples:
            seed = derive_seed(options.seed, batch)
            rows = model.generate(None, batch_size=options.batch_size, length=length,
                                  seed=seed, stop=options.stop_at_endoftext)
            for row in rows:
                out.add(row, seed=seed, length_asked=length)
            batch += 1
    except BaseException as e:
        stop = cli.interruption(e)
        if stop is not None:
            where = f", all in {jsonl.path}" if jsonl is not None else ""
            stop.detail = f" after {out.total} samples{where}"
        raise
    finally:
        bar.close()
    cli.note(PROG, out.summary())
    return cli.EXIT_OK


def main(argv=None) -> int:
    return cli.fire_main(sample_model, argv)


if __name__ == "__main__":
    sys.exit(main())
