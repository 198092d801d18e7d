"""Issue 14's prompts and records: --prompt (repeatable), --prompt_file (lines or JSONL
with multi-line prompts) and --output in the interactive script; JSON lines that carry the
settings that made each sample (and its batch's seed draws it again); progress lines off a
terminal and the last line saying how many samples went where. In-process, tiny model.
"""
import json

import pytest

import generate_unconditional_samples as gus
import interactive_conditional_samples as ics
import progress
import samples_io
from conftest import RULE, parse_samples

pytestmark = pytest.mark.usefixtures("no_tracebacks")

KEYS = ["id", "ended", "length", "text", "prompt", "model", "seed", "batch_size",
        "length_asked", "temperature", "top_k", "top_p", "stop_at_endoftext", "dtype",
        "backend"]


def records(path) -> list:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@pytest.fixture
def contexts(monkeypatch):
    """The text of every prompt that reached the model."""
    seen = []
    generate = samples_io.Model.generate

    def record(self, context, **kw):
        seen.append(self.enc.decode(context))
        return generate(self, context, **kw)

    monkeypatch.setattr(samples_io.Model, "generate", record)
    return seen


def test_prompts_from_flags_are_answered_in_order_and_stdin_is_not_read(run_script, contexts):
    """Text flags keep their text: `-1 ...` is a prompt, not a flag; `1_000` not 1000."""
    r = run_script(ics, "--prompt", "-1 is odd", "--prompt", "1_000", "--length", 3,
                   "--nostream", stdin=b"never read\n")
    assert r.code == 0, r.stderr
    assert contexts == ["-1 is odd", "1_000"]
    assert "Model prompt >>> -1 is odd\n" in r.stdout and r.stdout.count(RULE + "\n") == 2
    assert r.stderr == f"{ics.PROG}: 2 samples for 2 prompts printed\n"


def test_a_prompt_file_of_lines_skips_blank_lines(run_script, contexts, tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("First prompt\n\n   \nSecond: ✓\r\n", encoding="utf-8")
    r = run_script(ics, "--prompt_file", path, "--length", 3, "--nostream")
    assert r.code == 0, r.stderr
    assert contexts == ["First prompt", "Second: ✓"]


def test_a_jsonl_prompt_file_carries_multi_line_prompts_into_the_records(run_script, contexts,
                                                                         tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "Dear Sir,\\nI write"}\n\n{"prompt": "Q: why?\\nA:"}\n')
    out = tmp_path / "out.jsonl"
    r = run_script(ics, "--prompt_file", prompts, "--output", out, "--nsamples", 2,
                   "--batch_size", 2, "--length", 4, "--seed", 9, "--top_k", 40)
    assert r.code == 0, r.stderr
    assert r.stdout == ""
    assert contexts == ["Dear Sir,\nI write", "Q: why?\nA:"]
    found = records(out)
    assert [list(rec) for rec in found] == [KEYS] * 4
    assert [(rec["id"], rec["prompt"]) for rec in found] == [
        (0, "Dear Sir,\nI write"), (1, "Dear Sir,\nI write"), (2, "Q: why?\nA:"),
        (3, "Q: why?\nA:")]
    first = found[0]
    assert {k: first[k] for k in KEYS[5:]} == {
        "model": "tiny", "seed": 9, "batch_size": 2, "length_asked": 4, "temperature": 1.0,
        "top_k": 40, "top_p": 1.0, "stop_at_endoftext": False, "dtype": "float32",
        "backend": "tf"}
    assert found[2]["seed"] != 9  # the second prompt's batch draws from its own seed
    assert r.stderr == f"{ics.PROG}: 4 samples for 2 prompts written to {out} (ids 0-3)\n"


@pytest.mark.parametrize("content, message", [
    ('{"prompt": "ok"}\n{"text": "no prompt"}\n', 'line 2 has no "prompt" string'),
    ('not json\n', "line 1 is not JSON"),
    ('{"prompt": "  "}\n', "line 1: the prompt is empty"),
    ('\n\n', "holds no prompts"),
])
def test_a_bad_prompt_file_is_a_usage_error_before_the_model_loads(run_script, tmp_path,
                                                                   monkeypatch, content,
                                                                   message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    monkeypatch.setattr(samples_io, "load_model", lambda o: pytest.fail("model loaded"))
    r = run_script(ics, "--prompt_file", path)
    assert r.code == 2
    assert r.stderr.startswith(f"{ics.PROG}: error: --prompt_file {path} {message}")
    assert r.stderr.count("\n") == 1


@pytest.mark.parametrize("args, message", [
    (["--prompt", ""], "--prompt must not be empty"),
    (["--prompt_file", "/nonexistent/p.txt"], "--prompt_file /nonexistent/p.txt cannot be "
                                              "read (No such file or directory)"),
    (["--output", "o.jsonl", "--stream"], "--stream prints samples; with --output they are "
                                          "written whole: drop --stream"),
])
def test_bad_prompt_options(run_script, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    r = run_script(ics, *args)
    assert r.code == 2 and r.stderr.startswith(f"{ics.PROG}: error: {message}")


def test_a_records_seed_draws_its_batch_again(run_script, tmp_path):
    """The seed a record carries is its batch's: given as --seed (with the record's batch
    size as --nsamples and --batch_size) it gives the same samples. Unseeded runs too."""
    out = tmp_path / "out.jsonl"
    r = run_script(gus, "--output", out, "--nsamples", 4, "--batch_size", 2, "--length", 5)
    assert r.code == 0, r.stderr
    second_batch = records(out)[2:]
    seed = second_batch[0]["seed"]
    assert second_batch[1]["seed"] == seed != records(out)[0]["seed"]
    again = run_script(gus, "--seed", seed, "--nsamples", 2, "--batch_size", 2, "--length", 5)
    assert [text for _, text in parse_samples(again.stdout)] == [
        rec["text"] for rec in second_batch]

    answers = tmp_path / "answers.jsonl"
    r = run_script(ics, "--prompt", "Hi", "--prompt", "Bye", "--output", answers,
                   "--length", 5)
    assert r.code == 0, r.stderr
    bye = records(answers)[1]
    again = run_script(ics, "--prompt", "Bye", "--seed", bye["seed"], "--length", 5)
    assert parse_samples(again.stdout) == [(1, bye["text"])]


def test_progress_lines_off_a_terminal_with_rate_and_time_left(run_script, tmp_path,
                                                              monkeypatch):
    """Off a terminal a long dump said nothing; now one line per progress.EVERY seconds
    (0 here: one per sample), then the last line."""
    monkeypatch.setattr(progress, "EVERY", 0.0)
    out = tmp_path / "out.jsonl"
    r = run_script(gus, "--output", out, "--nsamples", 2, "--length", 3)
    assert r.code == 0, r.stderr
    first, second, last = r.stderr.splitlines()
    assert first.startswith(f"{gus.PROG}: 1/2 samples (50%) in ")
    assert "/s, about " in first and first.endswith(" left")
    assert second.startswith(f"{gus.PROG}: 2/2 samples (100%) in ")
    assert last == f"{gus.PROG}: 2 samples written to {out} (ids 0-1)"


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_progress_is_at_most_one_line_per_interval(capsys):
    clock = Clock()
    bar = progress.Progress(10, prog="p", show=True, clock=clock, every=5.0)
    for step in range(10):
        clock.now += 2.0  # a sample every 2 s: a line at 6 s, 12 s, 18 s
        bar.update()
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["p: 3/10 samples (30%) in 6s, 0.50/s, about 14s left",
                     "p: 6/10 samples (60%) in 12s, 0.50/s, about 8s left",
                     "p: 9/10 samples (90%) in 18s, 0.50/s, about 2s left"]
    endless = progress.Progress(0, prog="p", show=True, clock=clock, every=5.0)
    clock.now += 3600 * 2 + 60 * 5
    endless.update(7)
    assert capsys.readouterr().err == "p: 7 samples in 2h05m, 0.00/s\n"


def test_no_progress_among_samples_printed_to_the_same_place(monkeypatch, tmp_path):
    """`> log 2>&1`: progress lines would land between the samples."""
    import sys
    log = open(tmp_path / "log", "w")
    monkeypatch.setattr(sys, "stdout", log)
    monkeypatch.setattr(sys, "stderr", log)
    assert not progress.wanted(to_stdout=True)
    assert progress.wanted(to_stdout=False)
    log.close()


@pytest.fixture
def no_long_bpe(monkeypatch):
    """Fails the test if BPE is asked to encode a long text whole."""
    import encoder
    encode = encoder.Encoder.encode

    def bounded(self, text):
        assert len(text) < 100_000, "the whole prompt went through BPE"
        return encode(self, text)

    monkeypatch.setattr(encoder.Encoder, "encode", bounded)


def test_a_megabyte_prompt_is_refused_before_bpe_and_the_next_is_answered(run_script,
                                                                          no_long_bpe):
    """Issue 13: a 1 MB prompt without spaces kept BPE busy for minutes before it was
    refused as too long; its byte count alone shows it cannot fit."""
    r = run_script(ics, "--length", 8, "--nostream", stdin=b"a" * 1_000_000 + b"\nHi\n")
    assert r.code == 1
    assert (f"{ics.PROG}: error: the prompt has 1,000,000 bytes, more than 56 tokens can "
            f"hold (at most 7,168 bytes) beside the sample in the model's context of 64 "
            f"tokens: shorten it, or pass --truncate_prompt to keep its end") in r.stderr
    assert len(parse_samples(r.stdout)) == 1
    assert r.stderr.endswith("1 sample for 1 prompt printed; 1 refused (see above)\n")


def test_truncate_prompt_encodes_only_the_end_of_a_megabyte_prompt(run_script, contexts,
                                                                   no_long_bpe):
    text = "word " * 200_000 + "the end"
    r = run_script(ics, "--length", 8, "--nostream", "--truncate_prompt",
                   stdin=text.encode() + b"\n")
    assert r.code == 0, r.stderr
    assert contexts[0].endswith(" word word the end") and len(contexts[0]) < 300
    assert "note: the prompt has 1,000,007 bytes; keeping its last 56 tokens" in r.stderr


@pytest.mark.parametrize("batch_size", ["1e10", "1e30"])
def test_a_batch_too_large_for_memory_is_a_usage_error(run_script, batch_size):
    """Issue 13: a NumPy MemoryError traceback before TensorFlow's out-of-memory path."""
    r = run_script(gus, "--batch_size", batch_size, "--length", 4)
    assert r.code == 2
    assert r.stderr.startswith(f"{gus.PROG}: error: batch_size {int(float(batch_size))} "
                               f"cannot fit: the key/value cache of 5 positions per sample")
    assert r.stderr.count("\n") == 1 and "use --batch_size" in r.stderr


def test_an_endless_dump_reports_progress_off_a_terminal(run_script, tmp_path, monkeypatch):
    """Issue 14: the endless mode showed no progress. Stopped by Ctrl-C in its third batch."""
    monkeypatch.setattr(progress, "EVERY", 0.0)
    generate, calls = samples_io.Model.generate, []

    def interrupted(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return generate(self, *args, **kwargs)

    monkeypatch.setattr(samples_io.Model, "generate", interrupted)
    out = tmp_path / "endless.jsonl"
    r = run_script(gus, "--output", out, "--length", 3)
    assert r.code == 130
    first, second, last = r.stderr.splitlines()
    assert first.startswith(f"{gus.PROG}: 1 sample in ") and first.endswith("/s")
    assert second.startswith(f"{gus.PROG}: 2 samples in ")
    assert last == f"{gus.PROG}: interrupted after 2 samples, all in {out}"
