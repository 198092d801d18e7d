"""interactive_conditional_samples.py in-process on a tiny checkpoint: prompts, lengths,
streaming, Ctrl-C, encodings, and greedy output against an independent NumPy GPT-2.

FAULTS.md cases are named in each test (S1...). Option errors of both scripts are in
test_cli_options.py, the unconditional script in test_cli_unconditional.py, subprocess
and terminal runs in test_cli_subprocess.py.
"""
import io

import numpy as np
import pytest

import encoder
import gpt2_fixtures as fx
import interactive_conditional_samples as ics
import prompts
import reference_gpt2
import samples_io
from conftest import CLI_TINY, RULE, parse_samples

pytestmark = pytest.mark.usefixtures("no_tracebacks")

@pytest.fixture(scope="module")
def enc():
    return encoder.get_encoder("", fx.DATA)


def tokens_of(n, enc):
    """A prompt of exactly n tokens (" x" is one token)."""
    text = "x" + " x" * (n - 1)
    assert len(enc.encode(text)) == n
    return text


@pytest.fixture
def contexts(monkeypatch):
    """Records the context every sample is generated from, streamed or not."""
    seen = []
    generate, stream = samples_io.Model.generate, samples_io.Model.stream

    def record_generate(self, context, **kw):
        seen.append(list(context))
        return generate(self, context, **kw)

    def record_stream(self, context, **kw):
        seen.append(list(context))
        return stream(self, context, **kw)

    monkeypatch.setattr(samples_io.Model, "generate", record_generate)
    monkeypatch.setattr(samples_io.Model, "stream", record_stream)
    return seen


def test_greedy_top_k_1_equals_the_reference_for_20_tokens(run_script, monkeypatch, enc,
                                                             cli_weights):
    rows = []
    generate = samples_io.Model.generate

    def record(self, *args, **kwargs):
        rows.append(generate(self, *args, **kwargs))
        return rows[-1]

    monkeypatch.setattr(samples_io.Model, "generate", record)
    prompt = "The quick brown fox"
    r = run_script(ics, "--top_k", 1, "--length", 20, "--nostream",
                   stdin=f"{prompt}\n".encode())
    expected = reference_gpt2.greedy(cli_weights, enc.encode(prompt), CLI_TINY["n_head"], 20)
    assert r.code == 0, r.stderr
    assert rows[0][0].tolist() == expected
    assert parse_samples(r.stdout) == [(1, enc.decode(expected))]


def test_s9_temperature_0_is_greedy_and_equals_top_k_1(run_script):
    """S9."""
    greedy = run_script(ics, "--temperature", 0, "--length", 12, stdin=b"Hi there\n")
    top1 = run_script(ics, "--top_k", 1, "--length", 12, "--seed", 4, stdin=b"Hi there\n")
    again = run_script(ics, "--temperature", 0, "--length", 12, stdin=b"Hi there\n")
    assert greedy.code == top1.code == 0
    first = parse_samples(greedy.stdout)
    assert len(first) == 1
    assert first == parse_samples(top1.stdout) == parse_samples(again.stdout)


def test_s1_too_long_a_prompt_is_refused_with_both_numbers_and_the_next_is_answered(
        run_script, enc, contexts):
    """S1: 40 tokens + 30 > 64: refused without reaching the model; exit 1 at the end."""
    r = run_script(ics, "--length", 30, stdin=f"{tokens_of(40, enc)}\nHello\n".encode())
    assert r.code == 1
    assert ("prompt of 40 tokens + length 30 = 70 exceeds the model's context of 64 tokens: "
            "use --length 24 or less, or pass --truncate_prompt to keep its last 34 tokens"
            ) in r.stderr
    assert contexts == [enc.encode("Hello")]
    assert [n for n, _ in parse_samples(r.stdout)] == [1]


def test_s1_truncate_prompt_keeps_the_last_tokens(run_script, enc, contexts):
    """S1, opt-in: the last n_ctx - length tokens are kept, with a note."""
    prompt = enc.encode(tokens_of(40, enc) + " end")
    r = run_script(ics, "--length", 30, "--truncate_prompt",
                   stdin=enc.decode(prompt).encode() + b"\n")
    assert r.code == 0, r.stderr
    assert contexts == [prompt[-34:]]
    assert "the prompt has 41 tokens; keeping its last 34" in r.stderr


def test_default_length_shrinks_to_fit_a_long_prompt(enc):
    assert ics.fit_prompt([1] * 10, n_ctx=64, length=None, truncate=False)[:2] == (
        [1] * 10, 32)
    tokens, length, note = ics.fit_prompt([1] * 40, n_ctx=64, length=None, truncate=False)
    assert (len(tokens), length) == (40, 24) and "samples are 24 tokens long" in note
    with pytest.raises(ics.PromptTooLong, match="the prompt has 64 tokens, which fills"):
        ics.fit_prompt([1] * 64, n_ctx=64, length=None, truncate=False)
    assert ics.fit_prompt(list(range(64)), n_ctx=64, length=None, truncate=True)[:2] == (
        list(range(32, 64)), 32)


@pytest.mark.parametrize("stream", ["--stream", "--nostream"])
def test_s3_prompt_plus_length_equal_to_n_ctx_works(run_script, enc, stream):
    """S3: 50 + 14 == 64, streamed and not."""
    r = run_script(ics, "--length", 14, stream, stdin=f"{tokens_of(50, enc)}\n".encode())
    assert r.code == 0, r.stderr
    assert [n for n, _ in parse_samples(r.stdout)] == [1]


def test_s4_s5_blank_prompts_ask_again_and_piped_prompts_are_each_answered(run_script):
    """S4 and S5 (piped): two blank lines, two prompts, end of input -> exit 0. The blank
    lines' messages go to stderr, never among the samples on stdout; the last line of
    stderr says how many samples were printed."""
    r = run_script(ics, "--length", 4, stdin=b"\n   \nOne\nTwo\n")
    assert r.code == 0, r.stderr
    assert "Prompt should not be empty!" not in r.stdout
    assert r.stdout.count(RULE + "\n") == 2
    assert "Model prompt >>> One\n" in r.stdout and "Model prompt >>> Two\n" in r.stdout
    assert r.stderr == ("Prompt should not be empty!\n" * 2 +
                        f"{ics.PROG}: 2 samples for 2 prompts printed\n")


def test_s15_batches_number_samples_1_to_n(run_script):
    """S15: batch_size 2, nsamples 4 -> exactly samples 1..4 for each prompt."""
    r = run_script(ics, "--batch_size", 2, "--nsamples", 4, "--length", 5, "--nostream",
                   stdin=b"A\nB\n")
    assert r.code == 0, r.stderr
    assert [n for n, _ in parse_samples(r.stdout)] == [1, 2, 3, 4, 1, 2, 3, 4]
    assert r.stdout.count(RULE + "\n") == 2


def test_stream_with_a_batch_is_a_usage_error(run_script):
    r = run_script(ics, "--batch_size", 2, "--nsamples", 2, "--stream")
    assert r.code == 2 and "--stream prints one sample at a time" in r.stderr


def test_s12_same_seed_same_samples_streamed_or_not(run_script):
    """S12; streaming draws the same tokens as the compiled loop."""
    runs = [run_script(ics, "--seed", seed, "--length", 10, "--nsamples", 2, mode,
                       stdin=b"Hello\nHello\n")
            for seed, mode in [(7, "--stream"), (7, "--nostream"), (8, "--stream")]]
    first, same, other = (parse_samples(r.stdout) for r in runs)
    assert len(first) == 4 and first == same
    assert first != other
    assert first[0] != first[2]  # the second prompt's draws are new ones


class Recorder(io.TextIOWrapper):
    """stdout that logs each flushed write, to see when text reaches the user."""

    def __init__(self, log):
        super().__init__(io.BytesIO(), encoding="utf-8")
        self.log = log

    def write(self, text):
        self.log.append(("write", text))
        return super().write(text)

    def flush(self):
        self.log.append(("flush", None))
        super().flush()


def test_tokens_are_printed_as_they_are_generated(cli_models, monkeypatch):
    """Each token's text is written (and flushed) before the next token is drawn."""
    log = []
    stream = samples_io.Model.stream

    def logged(self, *args, **kwargs):
        for token in stream(self, *args, **kwargs):
            log.append(("token", int(token[0])))
            yield token

    monkeypatch.setattr(samples_io.Model, "stream", logged)
    monkeypatch.setattr(ics.sys, "stdin", io.TextIOWrapper(io.BytesIO(b"Hi\n"), "utf-8"))
    monkeypatch.setattr(ics.sys, "stdout", Recorder(log))
    assert ics.main(["--models_dir", cli_models, "--model_name", "tiny", "--length", "6"]
                    ) == 0
    kinds = [kind for kind, _ in log]
    assert kinds.count("token") == 6
    after = [kinds[i + 1:i + 3] for i, kind in enumerate(kinds) if kind == "token"]
    assert after == [["write", "flush"]] * 6


def test_s6_ctrl_c_while_generating_returns_to_the_prompt(run_script, monkeypatch):
    """S6: KeyboardInterrupt after two tokens of the first prompt's sample."""
    stream = samples_io.Model.stream
    calls = []

    def interrupted(self, *args, **kwargs):
        calls.append(1)
        for i, token in enumerate(stream(self, *args, **kwargs)):
            if len(calls) == 1 and i == 2:
                raise KeyboardInterrupt
            yield token

    monkeypatch.setattr(samples_io.Model, "stream", interrupted)
    r = run_script(ics, "--length", 5, stdin=b"First\nSecond\n")
    assert r.code == 0, r.stderr
    assert "interrupted: sample stopped; enter another prompt, or Ctrl-D to quit" in r.stderr
    assert r.stdout.count(RULE + "\n") == 2
    assert "Model prompt >>> Second\n" in r.stdout and len(parse_samples(r.stdout)) == 2


def test_s6_ctrl_c_at_the_prompt_exits_130(run_script, monkeypatch):
    def interrupt(stdin, stdout, **kw):
        raise KeyboardInterrupt
    monkeypatch.setattr(prompts, "read_line", interrupt)
    r = run_script(ics)
    assert r.code == 130 and r.stderr.endswith("interrupted\n")


@pytest.mark.parametrize("console", ["ascii", "cp1252"])
def test_s7_output_is_utf8_whatever_the_console_encoding(run_script, console):
    """S7: run_script decodes stdout as strict UTF-8; the prompt echo must survive."""
    r = run_script(ics, "--length", 30, "--seed", 2, encoding=console,
                   stdin="Ünïcödé ✓ 日本\n".encode())
    assert r.code == 0, r.stderr
    assert "Model prompt >>> Ünïcödé ✓ 日本\n" in r.stdout


def test_s16_invalid_utf8_and_lone_surrogates_on_stdin(run_script, contexts, enc):
    """S16: bad bytes (and UTF-8-encoded surrogates) become U+FFFD; a str with a lone
    surrogate is made encodable too."""
    r = run_script(ics, "--length", 3, stdin=b"bad \xff\xfe bytes\nsur \xed\xa0\x80\n")
    assert r.code == 0, r.stderr
    assert contexts[0] == enc.encode("bad \ufffd\ufffd bytes")
    assert len(contexts) == 2 and len(parse_samples(r.stdout)) == 2
    lone = list(prompts.from_stdin(io.StringIO("a\ud800b\n"), io.StringIO()))
    assert lone == ["a\ufffd\ufffd\ufffdb"]


def test_s17_endoftext_typed_in_a_prompt_is_plain_text(run_script, contexts, enc):
    """S17: as in the original, the text becomes ordinary tokens, never id 50256."""
    r = run_script(ics, "--length", 3, stdin=b"Hi<|endoftext|>there\n")
    assert r.code == 0, r.stderr
    assert contexts == [enc.encode("Hi<|endoftext|>there")]
    assert 50256 not in contexts[0] and len(contexts[0]) > 3


@pytest.fixture
def fake_tokens(monkeypatch, enc):
    """Generation replaced by fixed tokens: "A", "B", <|endoftext|>, "C"."""
    row = enc.encode("A") + enc.encode("B") + [50256] + enc.encode("C")
    monkeypatch.setattr(samples_io.Model, "generate", lambda self, context, *, batch_size,
                        **kw: np.array([row] * batch_size))
    monkeypatch.setattr(samples_io.Model, "stream", lambda self, context, **kw: (
        np.array([t]) for t in row))


@pytest.mark.parametrize("mode", ["--stream", "--nostream"])
def test_stop_at_endoftext_ends_the_sample_there(run_script, fake_tokens, mode):
    cut = run_script(ics, "--stop_at_endoftext", mode, stdin=b"x\n")
    whole = run_script(ics, mode, stdin=b"x\n")
    assert parse_samples(cut.stdout) == [(1, "AB")]
    assert parse_samples(whole.stdout) == [(1, "AB<|endoftext|>C")]
