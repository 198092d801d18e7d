"""Both sampling scripts as real processes on a tiny checkpoint: in a terminal (pexpect),
piped, interrupted by signals, and cut off by `head`.

FAULTS.md S4, S5, S6, S7, S8, S13, S16, S18. Each TensorFlow process costs seconds, so
there are few of them; processes are synchronised on their output, never by sleeping.
"""
import json
import os
import re
import signal
import subprocess
import sys
import time

import pexpect
import pytest

import interactive_conditional_samples as ics
from conftest import RULE, parse_samples

pytestmark = pytest.mark.usefixtures("no_tracebacks")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INTERACTIVE = os.path.join(ROOT, "src", "interactive_conditional_samples.py")
UNCONDITIONAL = os.path.join(ROOT, "src", "generate_unconditional_samples.py")
PROMPT = "Model prompt >>> "
PROGRESS = re.compile(r"generate_unconditional_samples.py: \d+ samples? in \S+, [\d.]+/s")


@pytest.fixture
def env():
    """The user's environment: TensorFlow's log level is left to the scripts."""
    return {k: v for k, v in os.environ.items() if not k.startswith("TF_CPP")}


def tiny(cli_models, *args):
    return ["--models_dir", cli_models, "--model_name", "tiny", *map(str, args)]


def spawn(cli_models, env, *args):
    return pexpect.spawn(sys.executable, [INTERACTIVE, *tiny(cli_models, *args)], env=env,
                         cwd=ROOT, encoding="utf-8", timeout=60, dimensions=(40, 500))


def test_terminal_prompt_stream_empty_prompt_and_ctrl_d(cli_models, env, run_script):
    """S4, S5: the streamed sample is the one `--nostream` prints for the same seed."""
    args = ("--length", 12, "--seed", 5)
    expected = parse_samples(run_script(ics, *args, "--nostream", stdin=b"Hello\n").stdout)
    child = spawn(cli_models, env, *args)
    child.expect_exact(PROMPT)
    child.sendline("   ")
    child.expect_exact("Prompt should not be empty!")
    child.expect_exact(PROMPT)
    child.sendline("Hello")
    child.expect_exact(RULE)
    sample = child.before.replace("\r\n", "\n")
    child.expect_exact(PROMPT)
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert parse_samples(sample[sample.index("="):] + RULE + "\n") == expected
    assert child.before == "\r\n"  # Ctrl-D leaves the shell prompt on a line of its own
    assert child.exitstatus == 0


def test_terminal_ctrl_c_at_the_prompt_exits_130(cli_models, env):
    """S6."""
    child = spawn(cli_models, env)
    child.expect_exact(PROMPT)
    # The echo of a typed key shows that readline is reading: a Ctrl-C sent between its
    # prompt and its first read would wait for the next key (readline's own race).
    child.send("x")
    child.expect_exact("x")
    child.sendintr()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130
    assert child.before.endswith("\r\ninteractive_conditional_samples.py: interrupted\r\n")
    assert "Traceback" not in child.before


def test_piped_prompts_on_an_ascii_console_with_bad_bytes(cli_models, env):
    """S5, S7, S16: each prompt answered, exit 0 at end of input, UTF-8 out, no noise."""
    prompts = "Ünïcödé ✓\n".encode() + b"bad \xff bytes\n" + b"surrogate \xed\xa0\x80\n"
    done = subprocess.run([sys.executable, INTERACTIVE, *tiny(cli_models, "--length", 40)],
                          input=prompts, capture_output=True, cwd=ROOT, timeout=120,
                          env={**env, "PYTHONIOENCODING": "ascii"})
    out = done.stdout.decode("utf-8")  # strict: the output is UTF-8
    assert done.returncode == 0, done.stderr
    # Not even TensorFlow's start-up lines: only the last line, saying what was done.
    assert done.stderr == b"interactive_conditional_samples.py: 3 samples for 3 prompts printed\n"
    assert f"{PROMPT}Ünïcödé ✓\n" in out and f"{PROMPT}bad \ufffd bytes\n" in out
    assert out.count(RULE + "\n") == 3


def test_s18_usage_error_in_a_process(env):
    """S18: one line, exit 2, answered without importing TensorFlow."""
    probe = ("import runpy, sys\n"
             f"sys.argv = [{UNCONDITIONAL!r}, '--temperature', 'abc']\n"
             "try:\n    runpy.run_path(sys.argv[0], run_name='__main__')\n"
             "finally:\n    print('tensorflow' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          cwd=os.path.join(ROOT, "src"), env=env, timeout=60)
    assert done.returncode == 2
    assert done.stderr == ("generate_unconditional_samples.py: error: --temperature must be "
                           "a number, got 'abc'\n")
    assert done.stdout == "False\n"


def test_piped_into_head_stops_quietly(cli_models, env, tmp_path):
    """S8: an endless run into `head -1`: no BrokenPipeError, exit 0."""
    command = (f"{sys.executable} {UNCONDITIONAL} {' '.join(tiny(cli_models, '--length', 4))}"
               " 2>stderr.txt | head -1; echo \"status=${PIPESTATUS[0]}\" >&2")
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=120)
    assert done.stdout == "=" * 40 + " SAMPLE 1 " + "=" * 40 + "\n"
    assert done.stderr == "status=0\n"
    logged = (tmp_path / "stderr.txt").read_text()  # nothing but progress lines
    assert all(PROGRESS.fullmatch(line) for line in logged.splitlines()), logged


def wait_for_lines(path, count, process, deadline=90):
    """Returns once `path` holds `count` complete lines; fails if the process dies."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        assert process.poll() is None, process.communicate()
        if os.path.exists(path):
            with open(path, "rb") as f:
                if f.read().count(b"\n") >= count:
                    return
        time.sleep(0.05)  # polling the file, not waiting for a guessed time
    pytest.fail(f"{path} did not reach {count} lines")


@pytest.mark.parametrize("signum, status, word", [
    (signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated"),
    (signal.SIGKILL, -signal.SIGKILL, None)])
def test_s13_an_endless_dump_stopped_by_a_signal_keeps_every_sample(
        cli_models, env, tmp_path, signum, status, word):
    """S13: after k samples are on disk, the signal; then exactly the samples reported,
    each a complete record. SIGKILL allows no clean-up, so a buffered writer would leave a
    cut-off line."""
    out = tmp_path / "endless.jsonl"
    process = subprocess.Popen(
        [sys.executable, UNCONDITIONAL, *tiny(cli_models, "--length", 6, "--output", out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    wait_for_lines(out, 3, process)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == status, stderr
    lines = out.read_text(encoding="utf-8").split("\n")
    assert lines[-1] == ""  # ends with a whole line
    found = [json.loads(line) for line in lines[:-1]]
    assert len(found) >= 3 and [rec["id"] for rec in found] == list(range(len(found)))
    if word:  # progress lines (a slow machine), then the last line
        *progress, last = stderr.splitlines()
        assert last == (f"generate_unconditional_samples.py: {word} after {len(found)} "
                        f"samples, all in {out}")
        assert all(PROGRESS.fullmatch(line) for line in progress), progress
    assert stdout == ""
