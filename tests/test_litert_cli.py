"""`--backend litert` in the sampling scripts and the Python API, on the tiny model with the
real vocabulary: the same tokens as TensorFlow, the export's progress, and every failure as
one line with exit 1."""
import errno
import json
import os
import shutil
import sys

import pytest

import generate_unconditional_samples as gus
import interactive_conditional_samples as ics
import litert_export
import litert_runtime
import litert_store
import model
from conftest import parse_samples


@pytest.fixture(scope="module")
def litert_models(tmp_path_factory, cli_models):
    """The scripts' tiny model in a models folder of its own, exported once (float32)."""
    models = str(tmp_path_factory.mktemp("litert_cli") / "models")
    shutil.copytree(cli_models, models)
    litert_store.ensure(os.path.join(models, "tiny"), dtype="float32")
    return models


@pytest.fixture
def fresh_models(tmp_path, cli_models):
    """A copy with no export yet; `blob` hands out a converted part instead of converting."""
    models = str(tmp_path / "models")
    shutil.copytree(cli_models, models, ignore=shutil.ignore_patterns("litert"))
    return models


def flags(models):
    return ["--models_dir", models, "--model_name", "tiny"]


def test_greedy_samples_equal_the_tensorflow_backend(run_script, litert_models):
    common = [*flags(litert_models), "--prompt", "Hello, my name is", "--length", 20,
              "--top_k", 1, "--seed", 3, "--nsamples", 2, "--batch_size", 2]
    tf_run = run_script(ics, *common, model=False)
    lite = run_script(ics, *common, "--backend", "litert", model=False)
    assert tf_run.code == lite.code == 0, lite.stderr
    assert parse_samples(lite.stdout) == parse_samples(tf_run.stdout)
    assert len(parse_samples(lite.stdout)) == 2
    assert "litert:" not in lite.stderr  # exported by the fixture: no progress this time


def test_streamed_sample_equals_the_tensorflow_backend(run_script, litert_models):
    common = [*flags(litert_models), "--prompt", "Once upon a time", "--length", 25,
              "--temperature", 0]
    tf_run = run_script(ics, *common, model=False)
    lite = run_script(ics, *common, "--backend", "litert", "--dtype", "float32", model=False)
    assert lite.code == 0 and lite.stdout == tf_run.stdout


def test_int8_unconditional_records_say_their_backend(run_script, fresh_models, tmp_path):
    out = str(tmp_path / "samples.jsonl")
    r = run_script(gus, *flags(fresh_models), "--backend", "litert", "--dtype", "int8",
                   "--nsamples", 2, "--length", 8, "--top_k", 40, "--output", out, model=False)
    assert r.code == 0, r.stderr
    records = [json.loads(line) for line in open(out, encoding="utf-8")]
    assert len(records) == 2 and {(x["backend"], x["dtype"]) for x in records} == {
        ("litert", "int8")}
    # The first run shows the one-time export, line by line off a terminal.
    assert "litert: exporting tiny to LiteRT (int8)" in r.stderr
    assert "litert: part 1 of 1" in r.stderr
    assert os.listdir(os.path.join(fresh_models, "tiny", "litert")) != []


def test_python_api_generates_and_scores_on_litert(litert_models):
    import gpt2
    lite = gpt2.load("tiny", models_dir=litert_models, backend="litert")
    ref = gpt2.load("tiny", models_dir=litert_models)
    ours = lite.generate("The sky", length=12, top_k=1, seed=1)
    assert [s.tokens for s in ours] == [s.tokens for s in ref.generate("The sky", length=12,
                                                                       top_k=1, seed=1)]
    assert lite.score("The cat sat on the mat.").perplexity == pytest.approx(
        ref.score("The cat sat on the mat.").perplexity, rel=1e-4)
    with pytest.raises(ValueError, match="--dtype int8 needs --backend litert"):
        gpt2.load("tiny", models_dir=litert_models, dtype="int8")


def one_error_line(r, *needles):
    assert r.code == 1 and r.stdout == ""
    lines = r.stderr.splitlines()
    assert len([x for x in lines if not x.startswith("litert: ")]) == 1, r.stderr
    assert lines[-1].startswith(f"{ics.PROG}: error: "), r.stderr
    for needle in needles:
        assert needle in lines[-1], r.stderr


def test_no_litert_runtime_is_one_line_and_exit_1(run_script, fresh_models, monkeypatch):
    for name in litert_runtime.RUNTIMES:
        monkeypatch.setitem(sys.modules, name, None)  # the import fails
    r = run_script(ics, *flags(fresh_models), "--backend", "litert", "--prompt", "Hi",
                   model=False)
    one_error_line(r, "no LiteRT runtime is installed", "pip install ai-edge-litert",
                   "--backend tf")
    assert not os.path.exists(os.path.join(fresh_models, "tiny", "litert"))


def test_an_op_that_cannot_convert_is_one_line_and_exit_1(run_script, fresh_models,
                                                          monkeypatch):
    import tensorflow as tf
    monkeypatch.setattr(model, "mlp", lambda x, **weights: tf.math.igamma(x * x + 1, x * x))
    r = run_script(ics, *flags(fresh_models), "--backend", "litert", "--prompt", "Hi",
                   model=False)
    one_error_line(r, "no builtin kernel for TensorFlow op(s) Igamma", "--backend tf")
    assert os.listdir(os.path.join(fresh_models, "tiny", "litert")) == [".lock"]


def test_a_full_disk_during_the_export_is_one_line_and_exit_1(run_script, fresh_models,
                                                               litert_models, monkeypatch):
    (part,) = litert_store.ensure(os.path.join(litert_models, "tiny"), dtype="float32")
    blob = open(part, "rb").read()
    monkeypatch.setattr(litert_export, "convert_part", lambda *a, **k: blob)

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr(litert_store, "write_file", full)
    r = run_script(ics, *flags(fresh_models), "--backend", "litert", "--prompt", "Hi",
                   model=False)
    one_error_line(r, "No space left on device", "free some disk space")
    assert os.listdir(os.path.join(fresh_models, "tiny", "litert")) == [".lock"]


def test_a_truncated_export_is_rebuilt_and_the_run_succeeds(run_script, fresh_models,
                                                            litert_models, monkeypatch):
    (part,) = litert_store.ensure(os.path.join(litert_models, "tiny"), dtype="float32")
    blob = open(part, "rb").read()
    monkeypatch.setattr(litert_export, "convert_part", lambda *a, **k: blob)
    (mine,) = litert_store.ensure(os.path.join(fresh_models, "tiny"), dtype="float32")
    with open(mine, "r+b") as f:
        f.truncate(len(blob) // 3)
    r = run_script(ics, *flags(fresh_models), "--backend", "litert", "--prompt", "Hi",
                   "--length", 5, model=False)
    assert r.code == 0, r.stderr
    assert "is unusable (part-1-of-1.tflite is" in r.stderr and "rebuilding it" in r.stderr
    assert open(mine, "rb").read() == blob


def test_evaluate_text_on_litert_float32_equals_tensorflow(run_script, litert_models,
                                                           tmp_path):
    """`evaluate.py text --backend litert`: the windows (n_ctx 64, so several, each a batch
    row) score as TensorFlow scores them, to 1e-4 per token."""
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import evaluate
    path = tmp_path / "notes.txt"
    path.write_text("The quick brown fox jumps over the lazy dog. " * 16 + "Fin.\n",
                    encoding="utf-8")
    results = {}
    for backend in ("tf", "litert"):
        out = tmp_path / f"{backend}.json"
        r = run_script(evaluate, "text", "--data", path, *flags(litert_models), "--backend",
                       backend, "--batch_size", 2, "--output", out, model=False)
        assert r.code == 0, r.stderr
        results[backend] = json.loads(out.read_text())
    tf_m, lite_m = results["tf"]["metrics"], results["litert"]["metrics"]
    assert tf_m["tokens"] == lite_m["tokens"] > 2 * 64  # three windows at least (two rows, then one)
    assert lite_m["log_likelihood"] / lite_m["tokens"] == pytest.approx(
        tf_m["log_likelihood"] / tf_m["tokens"], abs=1e-4)
    assert lite_m["token_perplexity"] == pytest.approx(tf_m["token_perplexity"], rel=1e-4)
    assert results["litert"]["settings"]["backend"] == "litert"


@pytest.mark.parametrize("args, needles", [
    (["--backend", "litert", "--dtype", "bfloat16"], ["--dtype bfloat16 needs --backend tf"]),
    (["--backend", "litert", "--dtype", "int4"], ["--dtype must be one of float32, int8"]),
    (["--dtype", "int8"], ["--dtype int8 needs --backend litert"]),
    (["--backend", "onnx"], ["--backend must be one of tf, litert"]),
])
def test_evaluate_checks_the_backend_and_dtype_pair(run_script, tmp_path, args, needles):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import evaluate
    path = tmp_path / "notes.txt"
    path.write_text("Some notes.\n", encoding="utf-8")
    r = run_script(evaluate, "text", "--data", path, *args, model=False)
    assert r.code == 2 and r.stdout == "" and len(r.stderr.splitlines()) == 1, r.stderr
    assert all(needle in r.stderr for needle in needles), r.stderr
