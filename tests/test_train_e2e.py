"""train.py as a user runs it: fine-tune, then complete a prompt with the run; and a run
killed with SIGKILL in the middle of a save (T3)."""
import os
import select
import signal
import subprocess
import sys

import pytest

import checkpoint
import generate_unconditional_samples
import interactive_conditional_samples
import run_dir
from train_helpers import ROOT, make_workdir, train_main, train_process

SENTENCE = "The quick brown fox jumps over the lazy dog."


def test_fine_tuned_run_completes_the_sentence_in_the_sampling_script(tmp_path):
    make_workdir(tmp_path)
    (tmp_path / "sentence.txt").write_text((SENTENCE + " ") * 30)
    training = subprocess.run(
        [sys.executable, os.path.join(ROOT, "train.py"), "--dataset", "sentence.txt",
         "--models_dir", "models", "--model_name", "tiny", "--run_name", "fox",
         "--steps", "300", "--batch_size", "4", "--learning_rate", "0.001", "--seed", "1"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert training.returncode == 0, training.stderr
    assert "train.py: done: step 300 saved in checkpoint/fox" in training.stderr
    samples = (tmp_path / "samples" / "fox" / "samples-300").read_text()
    header = "=" * 20 + " SAMPLE 1 " + "=" * 20 + "\n"
    assert samples.startswith(header)
    words = samples[len(header):].replace(".", " ").split()  # top_k 40 draws: mostly learnt
    learnt = [w for w in words if w in SENTENCE.replace(".", " ").split()]
    assert len(words) >= 5 and len(learnt) >= 0.8 * len(words), samples
    sampling = subprocess.run(
        [sys.executable, os.path.join(ROOT, "src", "interactive_conditional_samples.py"),
         "--models_dir", "checkpoint", "--model_name", "fox", "--top_k", "1",
         "--length", "10"], input="The quick brown\n", cwd=tmp_path, capture_output=True,
        text=True, timeout=300)
    assert sampling.returncode == 0, sampling.stderr
    sample = sampling.stdout.split(" SAMPLE 1 " + "=" * 40 + "\n")[1]
    assert sample.startswith(" fox jumps over the lazy dog."), sampling.stdout


def test_kill_during_a_save_leaves_the_previous_checkpoint_loadable(tmp_path, monkeypatch,
                                                                    run_script):
    make_workdir(tmp_path)
    read, write = os.pipe()
    process = train_process(tmp_path, "--dataset", "data.npz", "--run_name", "killed",
                            "--steps", 3, "--save_every", 1, pass_fds=(write,),
                            env={run_dir.PAUSE_ENV: f"{write}:renamed:2"})
    os.close(write)
    try:
        ready, _, _ = select.select([read], [], [], 300)
        assert ready and os.read(read, 64) == b"renamed", process.communicate()
        process.send_signal(signal.SIGKILL)  # step 2's files in place, the state file not
        process.communicate()
    finally:
        os.close(read)
        process.kill() if process.poll() is None else None
    folder = tmp_path / "checkpoint" / "killed"
    assert {"model-2.index", "model-1.index"} <= set(os.listdir(folder))
    assert checkpoint.read_state(str(folder))[0] == "model-1"
    monkeypatch.chdir(tmp_path)
    where = ("--models_dir", "checkpoint", "--model_name", "killed", "--length", 1)
    done = run_script(generate_unconditional_samples, *where, "--nsamples", 1, model=False)
    assert done.code == 0 and done.stdout.count(" SAMPLE 1 ") == 1, done.stderr
    done = run_script(interactive_conditional_samples, *where, stdin=b"Hello\n", model=False)
    assert done.code == 0 and done.stdout.count(" SAMPLE 1 ") == 1, done.stderr
    assert train_main("--restore_from", "latest", "--steps", 3, "--run_name", "killed") == 0
    assert checkpoint.read_state(str(folder)) == ("model-3", ["model-1", "model-3"])
    assert not [f for f in os.listdir(folder) if f.startswith("model-2.")]  # the orphans
