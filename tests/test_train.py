"""train.py in-process on a tiny model: the run directory, resume, accumulation, options,
and every bad input of FAULTS.md's T-list that needs no separate process."""
import errno
import fcntl
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

import checkpoint
import cli
import gpt2_fixtures as fx
import train_loop
from train_helpers import (TRAIN_TINY, assert_close, module_workdir, state, train_main,
                           weights)

ADAM = ("--optimizer", "adam", "--learning_rate", 0.01, "--seed", 0)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """One work directory for the module: models/tiny, data.npz, data.txt, and the runs."""
    yield from module_workdir(tmp_path_factory, "train")


@pytest.fixture(scope="module")
def basic(work):
    """10 steps of batch 2, a checkpoint every 2 steps of which 2 are kept, validation
    every 5 steps."""
    code = train_main(*ADAM, "--batch_size", 2, "--steps", 10, "--save_every", 2,
                      "--max_checkpoints", 2, "--val_every", 5, "--val_batch_count", 2,
                      "--run_name", "basic")
    assert code == 0
    return os.path.join(work, "checkpoint", "basic")


def write_npz(name, ids) -> str:
    np.savez(name, np.asarray(ids, np.uint16))
    return name


def one_line_error(capsys, code, expected_code=1) -> str:
    err = capsys.readouterr().err
    assert code == expected_code, err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


def test_run_directory_is_a_model_directory_for_tf2_and_tf1(basic):
    files = set(os.listdir(basic))
    assert {"hparams.json", "encoder.json", "vocab.bpe", "checkpoint", "model-8.index",
            "model-10.index", "model-10.data-00000-of-00001", "model-10.json"} <= files
    assert not [f for f in files if f.startswith(("model-2.", "model-4.", "model-6."))]
    assert open(os.path.join(basic, "checkpoint")).read() == (
        'model_checkpoint_path: "model-10"\nall_model_checkpoint_paths: "model-8"\n'
        'all_model_checkpoint_paths: "model-10"\n')
    assert json.load(open(os.path.join(basic, "hparams.json"))) == TRAIN_TINY
    saved = weights(basic)
    _, params = checkpoint.load(basic)
    for name, value in checkpoint.flat_from_tree(params, checkpoint.HParams(**TRAIN_TINY)).items():
        np.testing.assert_array_equal(value.numpy(), saved[name])
    restored = fx.read_tf1_checkpoint(basic, TRAIN_TINY)  # TF1's Saver, by name
    assert_close(restored, saved, 0, names=list(restored))
    assert int(saved["global_step"]) == 10
    assert saved["beta1_power"] == pytest.approx(0.9 ** 11)  # as TF1's Adam keeps it
    assert saved["model/h1/mlp/c_fc/w/Adam_1"].shape == (1, 16, 64)
    before = weights("models/tiny")
    assert not np.allclose(saved["model/wte"], before["model/wte"])


def test_tensorboard_scalars_are_written(basic):
    events = [f for f in os.listdir(basic) if f.startswith("events.out.tfevents")]
    assert len(events) == 1
    seen = {}
    for event in tf.compat.v1.train.summary_iterator(os.path.join(basic, events[0])):
        for value in event.summary.value:
            seen.setdefault(value.tag, []).append(event.step)
            assert value.metadata.plugin_data.plugin_name == "scalars"
            assert np.isfinite(tf.make_ndarray(value.tensor))
    steps = list(range(1, 11))
    assert seen == {"loss": steps, "learning_rate": steps, "val_loss": [0, 5, 10]}


def test_resume_continues_exactly_like_one_run(basic):
    assert train_main(*ADAM, "--batch_size", 2, "--steps", 5, "--run_name", "resumed") == 0
    assert train_main("--optimizer", "adam", "--learning_rate", 0.01, "--batch_size", 2,
                      "--steps", 10, "--run_name", "resumed") == 0  # the seed is the run's
    straight, resumed = weights(basic), weights("checkpoint/resumed")
    assert sorted(straight) == sorted(resumed)
    assert_close(straight, resumed, 1e-6, names=list(straight))  # weights, slots, step
    assert int(resumed["global_step"]) == 10
    assert state("checkpoint/resumed", 10)["seed"] == 0


def test_only_transformer_layers_leaves_embeddings_and_final_norm(work):
    assert train_main(*ADAM, "--steps", 1, "--only_train_transformer_layers",
                      "--run_name", "blocks") == 0
    before, after = weights("models/tiny"), weights("checkpoint/blocks")
    for name in before:
        same = np.array_equal(before[name], after[name])
        assert same == (not name.startswith("model/h")), name
    assert "model/wte/Adam" not in after


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_mixed_precision_trains_float32_weights(work, dtype):
    assert train_main(*ADAM, "--steps", 2, "--dtype", dtype, "--run_name", dtype) == 0
    after = weights(f"checkpoint/{dtype}")
    assert after["model/wte"].dtype == np.float32
    assert not np.allclose(after["model/wte"], weights("models/tiny")["model/wte"])
    assert ("loss_scale" in after) == (dtype == "float16")


def test_continues_a_tf1_run_directory_with_its_adam_state(work, capsys):
    run = os.path.join(work, "checkpoint", "tf1run")
    fx.write_tf1_training_run(run, TRAIN_TINY, fx.random_weights(TRAIN_TINY, seed=4))
    fx.copy_vocabulary(run)
    assert train_main(*ADAM, "--steps", 3, "--run_name", "tf1run") == 0
    assert "from step 2" in capsys.readouterr().err
    after = weights(run)
    assert int(after["global_step"]) == 3 and "model/wte/Adam" in after


# Bad input: one line each, never a traceback.

def test_missing_empty_non_utf8_and_too_small_datasets(work, capsys):
    assert "dataset nothing.txt not found" in one_line_error(
        capsys, train_main("--run_name", "bad", dataset="nothing.txt"))
    assert "dataset empty.npz is empty" in one_line_error(
        capsys, train_main("--run_name", "bad", dataset=write_npz("empty.npz", [])))
    open("empty.txt", "w").close()
    assert "dataset empty.txt is empty" in one_line_error(
        capsys, train_main("--run_name", "bad", dataset="empty.txt"))
    open("latin.txt", "wb").write(b"d\xe9j\xe0 vu " * 50)
    assert one_line_error(capsys, train_main("--run_name", "bad", dataset="latin.txt")) == (
        "train.py: error: latin.txt is not utf-8 text: byte 0xe9 at offset 1 cannot be "
        "decoded; pass --encoding with the file's encoding (for example --encoding latin-1 "
        "or --encoding cp1252)")
    open("short.txt", "w").write("too short")
    assert one_line_error(capsys, train_main("--run_name", "bad", dataset="short.txt")) == (
        "train.py: error: dataset short.txt has 2 tokens, fewer than one training window of "
        "16: add text, or pass --window 2 or less")
    assert not os.path.exists("checkpoint/bad")  # refused before the run directory


def test_run_of_another_size_is_refused_naming_both(work, basic, capsys):
    other = os.path.join(work, "models", "wide")
    fx.write_tf1_checkpoint(other, dict(TRAIN_TINY, n_embd=32),
                            fx.random_weights(dict(TRAIN_TINY, n_embd=32)))
    fx.copy_vocabulary(other)
    line = one_line_error(capsys, train_main("--run_name", "basic", "--model_name", "wide",
                                             model=False))
    assert line == (
        f"train.py: error: checkpoint/basic (hparams.json) is a model of another size "
        f"(n_vocab=50257, n_ctx=16, n_embd=16, n_head=2, n_layer=2) than models/wide "
        f"(n_vocab=50257, n_ctx=16, n_embd=32, n_head=2, n_layer=2): train it with the "
        f"--model_name it was made from, or give another --run_name")
    line = one_line_error(capsys, train_main("--restore_from", "models/wide", "--run_name",
                                             "new"))
    assert line.startswith("train.py: error: --restore_from models/wide is a model of "
                           "another size (n_vocab=50257, n_ctx=16, n_embd=32")


def test_fresh_start_over_an_existing_run_is_refused(basic, capsys):
    line = one_line_error(capsys, train_main("--restore_from", "fresh", "--run_name", "basic"))
    assert "checkpoint/basic already holds a run (its newest checkpoint is model-10)" in line


def test_second_run_on_one_directory_is_refused(work, capsys):
    os.makedirs("checkpoint/locked", exist_ok=True)
    with open("checkpoint/locked/train.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write("pid 4242\n")
        held.flush()
        line = one_line_error(capsys, train_main("--run_name", "locked", "--steps", 1))
    assert line == ("train.py: error: checkpoint/locked is in use by another train.py "
                    "(pid 4242): wait for it to finish, or give another --run_name")


def test_disk_full_while_saving_keeps_the_previous_checkpoint(work, capsys, monkeypatch):
    real, calls = checkpoint.write_tensors, []

    def fails_second_time(prefix, tensors):
        calls.append(prefix)
        if len(calls) == 2:
            real(prefix, dict(list(tensors.items())[:3]))  # part of it reached the disk
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(prefix, tensors)

    monkeypatch.setattr(checkpoint, "write_tensors", fails_second_time)
    line = one_line_error(capsys, train_main("--steps", 3, "--save_every", 1, "--run_name",
                                             "full"))
    assert line == ("train.py: error: could not save step 2 in checkpoint/full (No space left "
                    "on device); the last checkpoint (step 1) is kept: free some space and "
                    "continue with --restore_from latest")
    assert sorted(os.listdir("checkpoint/full")) == sorted([
        "checkpoint", "encoder.json", "hparams.json", "vocab.bpe", "train.lock",
        "model-1.index", "model-1.data-00000-of-00001", "model-1.json",
        *[f for f in os.listdir("checkpoint/full") if f.startswith("events")]])
    checkpoint.load("checkpoint/full")


def test_nan_loss_stops_at_that_step_and_keeps_the_last_checkpoint(work, capsys):
    line = one_line_error(capsys, train_main("--optimizer", "sgd", "--learning_rate", 1e30,
                                             "--steps", 5, "--save_every", 1,
                                             "--run_name", "nan"))
    assert line.startswith("train.py: error: the loss became ")
    assert "at step 2; stopped without applying that step. The last checkpoint (step 1) is " \
           "kept" in line
    assert checkpoint.read_state("checkpoint/nan")[0] == "model-1"


@pytest.mark.parametrize("signal_error, code, word", [
    (KeyboardInterrupt, 130, "interrupted"), (cli.Terminated, 143, "terminated")])
def test_ctrl_c_and_sigterm_save_then_exit(work, capsys, monkeypatch, signal_error, code,
                                           word):
    real, steps = train_loop.Trainer.step, []

    def interrupted_at_second(self, windows, lr):
        steps.append(1)
        if len(steps) == 2:  # the signal arrives after the step ran (as from C++)
            real(self, windows, lr)
            raise signal_error()
        return real(self, windows, lr)

    monkeypatch.setattr(train_loop.Trainer, "step", interrupted_at_second)
    name = f"stopped{code}"
    line = one_line_error(capsys, train_main("--run_name", name), expected_code=code)
    assert line == f"train.py: {word}: saved step 2 in checkpoint/{name}"
    assert checkpoint.read_state(f"checkpoint/{name}")[0] == "model-2"


@pytest.mark.parametrize("argv, message", [
    (["--batch_size", 0], "--batch_size must be at least 1, got 0"),
    (["--optimizer", "rmsprop"], "--optimizer must be one of adam, adamw, sgd, adafactor"),
    (["--dtype", "float64"], "--dtype must be one of float32, bfloat16, float16"),
    (["--learning_rate", "fast"], "--learning_rate must be a number, got 'fast'"),
    (["--decay", "cosine"], "--decay cosine needs a length: give --decay_steps, or --steps"),
    (["--window", 17], "--window 17 does not fit the model: give 2 to 16 (n_ctx)"),
    (["--encoding", "klingon"], "--encoding 'klingon' is not a text encoding Python knows"),
    (["--no_such_flag", 1], None),
])
def test_bad_options_are_usage_errors(work, capsys, argv, message):
    code = train_main(*argv, "--run_name", "usage")
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert message is None or message in err


def test_a_path_restores_weights_only(work, basic, capsys):
    assert train_main(*ADAM, "--restore_from", "checkpoint/basic", "--steps", 1,
                      "--run_name", "frompath") == 0
    assert "from step 0" in capsys.readouterr().err
    assert int(weights("checkpoint/frompath")["global_step"]) == 1
    shutil.rmtree("checkpoint/frompath")


def test_random_start_trains_from_scratch_with_gpt2_initialisation(work):
    os.makedirs("models/scratch", exist_ok=True)
    for name in ("hparams.json", "encoder.json", "vocab.bpe"):  # no weights at all
        shutil.copy(os.path.join("models/tiny", name), "models/scratch")
    assert train_main("--model_name", "scratch", "--restore_from", "random", "--optimizer",
                      "sgd", "--learning_rate", 1e-9, "--steps", 1, "--seed", 3,
                      "--run_name", "scratch", model=False) == 0
    w = weights("checkpoint/scratch")
    assert np.std(w["model/wte"]) == pytest.approx(0.02, rel=0.01)
    assert np.std(w["model/wpe"]) == pytest.approx(0.01, rel=0.1)
    assert np.std(w["model/h1/mlp/c_proj/w"]) == pytest.approx(0.01, rel=0.05)  # / sqrt(4)
    np.testing.assert_allclose(w["model/h0/ln_1/g"], 1, atol=1e-6)
    np.testing.assert_allclose(w["model/h0/attn/c_attn/b"], 0, atol=1e-6)


@pytest.mark.parametrize("script", ["train.py", "encode.py"])
def test_help_documents_every_flag_in_full(script):
    """Fire reads `Args:`; a colon inside a continuation line would cut the text there."""
    import inspect
    import fire.docstrings
    from train_helpers import load_script
    function = load_script(script).main.__globals__[script.split(".")[0]]
    parsed = fire.docstrings.parse(function.__doc__)
    assert [a.name for a in parsed.args] == list(inspect.signature(function).parameters)
    for arg in parsed.args:
        assert arg.description.endswith("."), (arg.name, arg.description)
