"""Both sampling scripts' options: every bad value is a one-line usage error (exit 2)
before the model loads, --help documents every flag, a missing model exits 1.

FAULTS.md S2, S9, S10, S11, S14, S18 (and S1's start-up half).
"""
import re

import pytest

import generate_unconditional_samples as gus
import interactive_conditional_samples as ics
import samples_io
from conftest import parse_samples

SCRIPTS = [pytest.param(ics, id="interactive"), pytest.param(gus, id="unconditional")]
SHARED_FLAGS = ("model_name", "seed", "nsamples", "batch_size", "length", "temperature",
                "top_k", "top_p", "models_dir", "stop_at_endoftext", "dtype", "backend")


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("flag, value, message", [
    ("temperature", -1, "temperature must be >= 0 (0 is greedy), got -1.0"),  # S9
    ("top_p", 0, "top_p must be in (0, 1] (1 disables it), got 0.0"),  # S10
    ("top_p", 1.5, "top_p must be in (0, 1] (1 disables it), got 1.5"),  # S10
    ("top_k", -1, "--top_k must be at least 0, got -1"),  # S10
    ("top_k", 2.5, "--top_k must be a whole number, got 2.5"),  # S10
    ("temperature", "abc", "--temperature must be a number, got 'abc'"),  # S18
    ("seed", "abc", "--seed must be a whole number, got 'abc'"),  # S18
    ("length", 0, "--length must be at least 1, got 0"),  # S2
    ("length", -5, "--length must be at least 1, got -5"),  # S2
    ("length", 1.5, "--length must be a whole number, got 1.5"),  # S2
    ("length", 65, "--length 65 does not fit the model's context of 64 tokens, one of which "
                   "the prompt or start token needs: use --length 63 or less"),  # S2, S1
    ("batch_size", 0, "--batch_size must be at least 1, got 0"),  # S11
    ("nsamples", 3, "--nsamples 3 is not a multiple of --batch_size 2: use --nsamples 2 "
                    "or 4, or --batch_size 1"),  # S11
    ("dtype", "float64", "--dtype must be one of float32, bfloat16, got 'float64'"),
    ("dtype", "int8", "--dtype int8 needs --backend litert (--backend tf offers float32, "
                      "bfloat16)"),
    ("backend", "tflite", "--backend must be one of tf, litert, got 'tflite'"),
])
def test_bad_values_are_one_line_usage_errors(run_script, monkeypatch, script, flag, value,
                                              message):
    loads = []
    load = samples_io.load_model
    monkeypatch.setattr(samples_io, "load_model", lambda o: loads.append(o) or load(o))
    extra = ["--batch_size", 2, "--nostream"] if flag == "nsamples" else []
    if flag == "nsamples" and script is gus:
        extra = ["--batch_size", 2]
    r = run_script(script, f"--{flag}", value, *extra, stdin=b"never read\n")
    assert r.code == 2
    assert r.stderr == f"{script.PROG}: error: {message}\n"
    assert "SAMPLE" not in r.stdout
    checked_by_hparams = flag in ("temperature", "top_p") and value != "abc" or value == 65
    assert len(loads) == checked_by_hparams  # only range checks that need hparams.json


def test_s10_top_k_above_the_vocabulary_is_clamped(run_script):
    """S10: top_k 10**6 means the whole vocabulary."""
    r = run_script(gus, "--top_k", 10 ** 6, "--length", 3, "--nsamples", 1)
    assert r.code == 0, r.stderr
    assert [n for n, _ in parse_samples(r.stdout)] == [1]


@pytest.mark.parametrize("script", SCRIPTS)
def test_s18_unknown_flag_is_one_line_with_the_closest_flag(run_script, script):
    """S18: one line naming the flag and the closest real one, exit 2, before anything runs
    (else the missing models dir would be reported, and the unconditional default would run
    forever). Fire said `Could not consume arg: --tempreature`, then a usage with a stray
    `-`, and no suggestion."""
    r = run_script(script, "--models_dir", "/nonexistent", "--tempreature", 1, model=False)
    assert r.code == 2
    assert r.stderr == (f"{script.PROG}: error: unknown flag --tempreature: did you mean "
                        f"--temperature?\n")
    assert r.stdout == ""


@pytest.mark.parametrize("script, own", [
    (ics, ("stream", "truncate_prompt", "prompt", "prompt_file", "output")),
    (gus, ("output",))])
def test_help_documents_every_flag_and_only_working_ones(run_script, script, own):
    """--help goes to stdout, names every flag; no one-letter flags (Fire listed -s and -t,
    then refused them as ambiguous)."""
    r = run_script(script, "--help", model=False)
    assert r.code == 0 and r.stderr == ""
    text = r.stdout
    for flag in SHARED_FLAGS + own:
        assert re.search(rf"^  --{flag}[= ]", text, re.M), flag
    assert re.findall(r"(?<![\w-])-[a-zA-Z]\b", text) == ["-h"]
    words = " ".join(text.split())
    if script is ics:  # S17 is documented
        assert '"<|endoftext|>" typed in a prompt is plain text' in words
    else:
        assert "An existing file is appended to, never truncated" in words


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_missing_model_exits_1_with_the_download_command(run_script, tmp_path, script):
    """The command itself (interpreter, absolute paths) is model_paths' business and tested
    there; here: one line, exit 1, the download of the right model into the right folder."""
    r = run_script(script, "--models_dir", tmp_path, "--model_name", "124M", model=False)
    assert r.code == 1
    assert re.fullmatch(rf"{script.PROG}: error: {tmp_path}/124M not found.*: run "
                        rf"`\S*python\S* \S*download_model.py 124M --models_dir {tmp_path}`\n",
                        r.stderr), r.stderr


@pytest.mark.parametrize("output, message", [
    ("missing/out.jsonl", "the directory {tmp}/missing does not exist"),
    ("", "--output {tmp}/ is a directory: give a file name"),
])
def test_s14_a_bad_output_path_is_refused_before_the_model_loads(run_script, tmp_path,
                                                                 output, message):
    """S14: the model named does not exist, so reaching the loader would say so instead."""
    r = run_script(gus, "--output", f"{tmp_path}/{output}", "--model_name", "absent",
                   "--models_dir", tmp_path, model=False)
    assert r.code == 2
    assert message.format(tmp=tmp_path) in r.stderr and "absent" not in r.stderr
