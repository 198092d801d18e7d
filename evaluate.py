#!/usr/bin/env python3
"""Zero-shot evaluation of a GPT-2 model on the GPT-2 paper's language-modelling tasks, with
the published metric definitions (lm-evaluation-harness's where it has the task).

    python evaluate.py lambada --data lambada_test.jsonl --model_name 124M
    python evaluate.py wikitext2 --data wikitext-2-raw/wiki.test.raw --output wt2.json
    python evaluate.py text --data notes.txt --models_dir checkpoint --model_name run1
    python evaluate.py text --data notes.txt --backend litert --dtype int8

Prints a table of the metrics; `--output FILE` writes them as one JSON object {"task",
"model", "examples", "metrics", "settings"}. A progress bar with ETA goes to stderr when it
is a terminal. Exit codes: 0 done, 1 bad data or model (one line says which file, which
line and what was expected; also after the results when some examples could not be scored:
they are named, and counted as `skipped`), 2 bad option, 130/143 interrupted.
"""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "src"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before anything imports TensorFlow

import cli  # noqa: E402
import samples_io  # noqa: E402
import tasks  # noqa: E402
from cli import Failure, UsageError  # noqa: E402

PROG = "evaluate.py"
WINDOW_RULES = ("disjoint", "stride")


def evaluate(task=None, data=None, model_name='124M', models_dir='models', batch_size=8,
             limit=None, dtype='float32', window_rule='disjoint', stride=None, output=None,
             overwrite=False, download=False, data_url=None, backend='tf') -> int:
    """Scores a GPT-2 model on a task's test file and prints the task's metrics.

    Args:
        task: lambada, lambada-last-token, wikitext2, wikitext103, ptb, enwik8, text8,
            cbt-cn, cbt-ne or text (any UTF-8 file as one document).
        data: The task's file in its published format: lambada_test.jsonl, wiki.test.raw,
            ptb.test.txt, enwik8, text8, cbtest_CN_valid_2000ex.txt /
            cbtest_NE_valid_2000ex.txt, or any UTF-8 file for text.
        model_name: Which model to use: a directory under models_dir (a released model,
            or a fine-tuning run directory with --models_dir checkpoint).
        models_dir: Directory that holds the model directories.
        batch_size: Windows scored at once (one forward pass each).
        limit: Score only the first N examples (passages, articles or questions).
        dtype: Weights' type: float32, or bfloat16 for half the memory (--backend tf);
            float32 or int8 (--backend litert).
        window_rule: How documents longer than the context are cut: disjoint
            (lm-evaluation-harness's rolling windows, the default) or stride (overlapping
            windows that start every --stride tokens: more context per token, slower).
        stride: Tokens between window starts for --window_rule stride; default half the
            context (512 for GPT-2).
        output: Also write the results to this JSON file.
        overwrite: Replace an existing --output file instead of refusing.
        download: Fetch the task's public file first, unless --data (default:
            data/<the file's name>) already holds it: resumable and verified, as
            download_model.py fetches models.
        data_url: Fetch from this address instead of the task's public one (a mirror).
        backend: tf (TensorFlow), or litert (TensorFlow's LiteRT runtime, exported once
            under the model's directory), as in the sampling scripts.
    Returns:
        The exit status: 0 when done, 1 for a bad data file or model (also after the
        results when some examples could not be scored), 2 for a bad option, 130 after
        Ctrl-C, 143 on SIGTERM.
    """
    def body() -> int:
        options = parse(task=task, data=data, model_name=model_name, models_dir=models_dir,
                        batch_size=batch_size, limit=limit, dtype=dtype,
                        window_rule=window_rule, stride=stride, output=output,
                        overwrite=overwrite, download=download, data_url=data_url,
                        backend=backend)
        return run(options)

    return cli.guarded(PROG, body)


def parse(*, task, data, model_name, models_dir, batch_size, limit, dtype, window_rule,
          stride, output, overwrite, download, data_url, backend="tf") -> dict:
    """Every option cast and checked, before any file or model is read."""
    import tasks_download
    if task not in tasks.TASKS:
        raise UsageError(f"unknown task {task!r}: give one of {', '.join(tasks.TASKS)}")
    download = cli.as_bool("download", download)
    if download and task not in tasks_download.SOURCES:
        raise UsageError(f"--download: the {task} task has no public file: give --data PATH")
    if data_url is not None and not download:
        raise UsageError("--data_url applies to --download: add --download")
    if data is None and download:
        data = tasks_download.default_path(task)
    if data is None:
        fetch = " (or add --download to fetch it)" if task in tasks_download.SOURCES else ""
        raise UsageError(f"--data is required: the path of {task}'s file, "
                         f"{tasks.TASKS[task].expected}{fetch}")
    backend, dtype = cli.backend_and_dtype(backend, dtype)  # as the sampling scripts check
    if window_rule not in WINDOW_RULES:
        raise UsageError(f"--window_rule must be one of {', '.join(WINDOW_RULES)}, got "
                         f"{window_rule!r}")
    if stride is not None and window_rule != "stride":
        raise UsageError("--stride applies to --window_rule stride: add --window_rule stride "
                         "or leave --stride out")
    options = dict(
        task=task, data=cli.as_str("data", data), model_name=cli.as_str("model_name", model_name),
        models_dir=cli.as_str("models_dir", models_dir), dtype=dtype, backend=backend,
        batch_size=cli.as_int("batch_size", batch_size, minimum=1),
        limit=None if limit is None else cli.as_int("limit", limit, minimum=1),
        window_rule=window_rule,
        stride=None if stride is None else cli.as_int("stride", stride, minimum=1),
        output=None if output is None else cli.as_str("output", output),
        overwrite=cli.as_bool("overwrite", overwrite), download=download,
        data_url=None if data_url is None else cli.as_str("data_url", data_url))
    if options["output"] is not None:
        check_output(options["output"], options["overwrite"])
    return options


def check_output(path: str, overwrite: bool) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise UsageError(f"--output {path} is a directory: give a file name")
    if not os.path.isdir(folder):
        raise UsageError(f"--output {path}: the directory {folder} does not exist: create it "
                         f"or choose another path")
    if os.path.exists(path) and not overwrite:
        raise UsageError(f"--output {path} exists: choose another name, or add --overwrite")
    if not os.access(folder, os.W_OK):
        raise UsageError(f"--output {path}: {folder} is not writable: choose another path")


def run(options: dict) -> int:
    if options["download"]:
        import tasks_download
        try:
            tasks_download.ensure(options["task"], options["data"], url=options["data_url"])
        except tasks_download.DownloadError as e:
            raise Failure(str(e)) from None
    try:
        examples = tasks.read(options["task"], options["data"])  # before the model loads
    except tasks.DataError as e:
        raise Failure(f"{e} ({options['task']})") from None
    limit = options["limit"]
    if limit is not None and limit > len(examples):
        raise UsageError(f"--limit {limit} is larger than the {len(examples)} examples in "
                         f"{options['data']}: use --limit {len(examples)} or less, or leave "
                         f"it out")
    examples = examples[:limit]
    model = load(options)
    hparams = model.hparams
    stride = options["stride"]
    if options["window_rule"] == "stride":
        stride = stride or max(1, hparams.n_ctx // 2)
        if stride > hparams.n_ctx:
            raise UsageError(f"--stride {stride} is larger than the model's context of "
                             f"{hparams.n_ctx}: use --stride {hparams.n_ctx} or less")
    scorer = model.scorer()  # score.Scorer, or its LiteRT twin with --backend litert
    with progress_bar() as bar:
        result = tasks.evaluate(options["task"], examples, scorer=scorer, encoder=model.enc,
                                batch_size=options["batch_size"], stride=stride,
                                progress=bar)
    if result.examples == 0:
        raise skipped_failure(options, result)
    record = dict(task=options["task"], model=options["model_name"],
                  examples=result.examples, metrics=result.metrics,
                  settings=dict(data=options["data"], model_dir=model.model_dir,
                                n_ctx=hparams.n_ctx, batch_size=options["batch_size"],
                                limit=limit, dtype=options["dtype"],
                                backend=options["backend"],
                                window_rule=options["window_rule"], stride=stride,
                                definition=tasks.TASKS[options["task"]].reproduces))
    print_table(record)
    if options["output"] is not None:
        write_json(options["output"], record)
    if result.skipped:  # E2: scored what could be, counted the rest; the data needs a look
        raise skipped_failure(options, result)
    return cli.EXIT_OK


def load(options: dict):
    """The model (samples_io.Model: encoder, hparams, params, model_dir), or Failure naming
    what is wrong; loaded as the sampling scripts load it."""
    samples_io.import_tensorflow_quietly()  # here, so that usage errors skip its start-up
    import model_paths
    from model import HParams
    try:
        model_dir = model_paths.model_dir_for(options["model_name"], options["models_dir"])
        hparams = HParams.from_json(os.path.join(model_dir, "hparams.json"))
    except ValueError as e:
        raise Failure(str(e)) from None
    return samples_io.open_model(model_dir, hparams, dtype=options["dtype"], strategy={},
                                 backend=options["backend"])


def progress_bar():
    """tqdm over the input tokens, with ETA, on stderr only when it is a terminal."""
    from tqdm import tqdm
    return tqdm(total=0, unit="tok", unit_scale=True, file=sys.stderr, desc="scoring",
                disable=not sys.stderr.isatty())


def skipped_failure(options: dict, result, shown: int = 5) -> Failure:
    """What to say when examples were skipped (E2): one line naming the file, the line, why
    and the format expected when it is one example; else a note for each (the first
    `shown`) and a summary."""
    data, expected = options["data"], tasks.TASKS[options["task"]].expected
    were = "examples were" if result.examples > 1 else "example was"
    outcome = ("nothing could be scored" if result.examples == 0 else
               f"the other {result.examples} {were} scored (results above, skipped: "
               f"{len(result.skipped)})")
    if len(result.skipped) == 1:
        [skipped] = result.skipped
        return Failure(f"{data}: line {skipped.line}: skipped: {skipped.reason}; expected "
                       f"{expected}; {outcome}")
    for skipped in result.skipped[:shown]:
        cli.note(PROG, f"{data}: line {skipped.line}: skipped: {skipped.reason}")
    if len(result.skipped) > shown:
        cli.note(PROG, f"{data}: {len(result.skipped) - shown} more skipped")
    return Failure(f"{data}: {len(result.skipped)} examples skipped (lines above); expected "
                   f"{expected}; {outcome}")


def print_table(record: dict) -> None:
    rows = [("task", record["task"]), ("model", record["model"]),
            ("examples", str(record["examples"]))]
    rows += [(name, format_value(value)) for name, value in record["metrics"].items()]
    width = max(len(name) for name, _ in rows)
    print(f"| {'metric':<{width}} | value |")
    print(f"|{'-' * (width + 2)}|-------|")
    for name, value in rows:
        print(f"| {name:<{width}} | {value} |")
    sys.stdout.flush()


def format_value(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}" if abs(value) < 1e6 else f"{value:.1f}"
    return str(value)


def write_json(path: str, record: dict) -> None:
    """Written to a temporary file beside `path`, then renamed: never half a file."""
    temporary = f"{path}.tmp-{os.getpid()}"
    try:
        with open(temporary, "w", encoding="utf-8") as f:
            json.dump(record, f, indent=2)
            f.write("\n")
        os.replace(temporary, path)
    except OSError as e:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise Failure(f"cannot write --output {path} ({e.strerror}); the results are printed "
                      f"above") from None


def main(argv=None) -> int:
    return cli.fire_main(evaluate, argv)


if __name__ == "__main__":
    sys.exit(main())
