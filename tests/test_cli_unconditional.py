"""generate_unconditional_samples.py in-process on a tiny checkpoint: numbering, the start
token, JSON-lines records, appending, seeds, the progress bar.

FAULTS.md S3, S12, S14, S15; interrupted endless runs (S13) are in test_cli_subprocess.py.
"""
import json
import os

import numpy as np
import pytest

import encoder
import generate_unconditional_samples as gus
import gpt2_fixtures as fx
import reference_gpt2
import samples_io
from conftest import CLI_TINY, parse_samples

pytestmark = pytest.mark.usefixtures("no_tracebacks")

KEYS = ["id", "ended", "length", "text"]  # gpt-2-output-dataset's, first and unchanged
SETTINGS = ["model", "seed", "batch_size", "length_asked", "temperature", "top_k", "top_p",
            "stop_at_endoftext", "dtype", "backend"]


def records(path) -> list:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_s15_batches_give_exactly_nsamples_numbered_1_to_n(run_script):
    """S15: the original printed 2, 4, 6, 8, 10, 12, 14, 16 here."""
    r = run_script(gus, "--batch_size", 2, "--nsamples", 4, "--length", 5)
    assert r.code == 0, r.stderr
    found = parse_samples(r.stdout)
    assert [n for n, _ in found] == [1, 2, 3, 4]
    assert len({text for _, text in found}) == 4  # rows and batches draw differently


def test_the_start_token_is_not_printed(run_script, cli_weights):
    """Greedy samples continue <|endoftext|>, which is not part of the text."""
    enc = encoder.get_encoder("", fx.DATA)
    r = run_script(gus, "--temperature", 0, "--length", 12, "--nsamples", 1)
    expected = reference_gpt2.greedy(cli_weights, [50256], CLI_TINY["n_head"], 12)
    assert parse_samples(r.stdout) == [(1, enc.decode(expected))]


def test_s3_s15_jsonl_records_in_the_dataset_schema(run_script, tmp_path):
    """S3: the start token + 63 == n_ctx; one record per sample, ids 0..3."""
    out = tmp_path / "samples.jsonl"
    r = run_script(gus, "--output", out, "--nsamples", 4, "--batch_size", 2, "--length", 63)
    assert r.code == 0, r.stderr
    assert r.stdout == ""
    found = records(out)
    assert [list(rec) for rec in found] == [KEYS + SETTINGS] * 4
    assert [rec["id"] for rec in found] == [0, 1, 2, 3]
    assert all(rec["length"] == 63 and rec["ended"] is False for rec in found)
    assert r.stderr == f"{gus.PROG}: 4 samples written to {out} (ids 0-3)\n"


def test_s14_an_existing_file_is_appended_to_and_ids_continue(run_script, tmp_path):
    """S14: never truncated; ids continue after the last whole record (id 6 here, not the
    line count); a cut-off last line (a crash) stays on its own line and is no record."""
    out = tmp_path / "samples.jsonl"
    before = '{"id": 5, "ended": false, "length": 1, "text": "a"}\n{"id": 6, "ended": tr'
    out.write_text(before, encoding="utf-8")
    r = run_script(gus, "--output", out, "--nsamples", 2, "--length", 4)
    assert r.code == 0, r.stderr
    lines = out.read_text(encoding="utf-8").split("\n")
    assert "\n".join(lines[:2]) == before and lines[-1] == ""
    added = [json.loads(line) for line in lines[2:-1]]
    assert [rec["id"] for rec in added] == [6, 7] and len(lines) == 5


@pytest.fixture
def fake_rows(monkeypatch):
    """Generation replaced by fixed rows: the second reaches <|endoftext|>."""
    enc = encoder.get_encoder("", fx.DATA)
    rows = [enc.encode(" one two three"), enc.encode(" four") + [50256] + enc.encode(" x")]
    monkeypatch.setattr(samples_io.Model, "generate",
                        lambda self, context, *, batch_size, **kw: np.array(rows))
    return rows


@pytest.mark.parametrize("stop", [True, False])
def test_ended_length_and_text_follow_endoftext(run_script, tmp_path, fake_rows, stop):
    out = tmp_path / "samples.jsonl"
    args = ["--stop_at_endoftext"] if stop else []
    r = run_script(gus, "--output", out, "--nsamples", 2, "--batch_size", 2, *args)
    assert r.code == 0, r.stderr
    first, second = ({k: rec[k] for k in KEYS} for rec in records(out))
    assert first == {"id": 0, "ended": False, "length": 3, "text": " one two three"}
    if stop:
        assert second == {"id": 1, "ended": True, "length": 1, "text": " four"}
    else:
        assert second == {"id": 1, "ended": True, "length": 3,
                          "text": " four<|endoftext|> x"}


def test_s12_same_seed_same_samples(run_script):
    """S12."""
    one, two, other = (run_script(gus, "--seed", seed, "--nsamples", 2, "--length", 8)
                       for seed in (11, 11, 12))
    assert parse_samples(one.stdout) == parse_samples(two.stdout)
    assert parse_samples(one.stdout) != parse_samples(other.stdout)
    assert len(parse_samples(one.stdout)) == 2


def test_progress_bar_at_a_terminal_and_the_last_line_says_where(run_script, tmp_path):
    """A bar at a terminal; elsewhere a short run (under progress.EVERY seconds) prints
    only the last line."""
    out = tmp_path / "samples.jsonl"
    shown = run_script(gus, "--output", out, "--nsamples", 2, "--length", 3, tty_stderr=True)
    quiet = run_script(gus, "--output", out, "--nsamples", 2, "--length", 3)
    assert shown.code == quiet.code == 0
    assert "2/2" in shown.stderr and "sample" in shown.stderr
    assert quiet.stderr == f"{gus.PROG}: 2 samples written to {out} (ids 2-3)\n"


def test_dtype_bfloat16_loads_the_weights_as_bfloat16(run_script, monkeypatch):
    import checkpoint
    import tensorflow as tf
    dtypes = []
    load = checkpoint.load
    monkeypatch.setattr(checkpoint, "load", lambda path, *, dtype: dtypes.append(dtype) or
                        load(path, dtype=dtype))
    r = run_script(gus, "--dtype", "bfloat16", "--nsamples", 2, "--batch_size", 2,
                   "--length", 4)
    assert r.code == 0, r.stderr
    assert dtypes == [tf.bfloat16] and len(parse_samples(r.stdout)) == 2


def test_s13_each_record_is_on_disk_before_the_next_batch_is_drawn(run_script, tmp_path,
                                                                   monkeypatch):
    """S13: what an interrupted run keeps is everything finished, not a buffer's worth."""
    out = tmp_path / "samples.jsonl"
    on_disk = []
    generate = samples_io.Model.generate

    def checking(self, *args, **kwargs):
        on_disk.append(out.read_bytes().count(b"\n"))
        return generate(self, *args, **kwargs)

    monkeypatch.setattr(samples_io.Model, "generate", checking)
    r = run_script(gus, "--output", out, "--nsamples", 6, "--batch_size", 2, "--length", 3)
    assert r.code == 0, r.stderr
    assert on_disk == [0, 2, 4] and out.read_bytes().count(b"\n") == 6


def test_output_to_a_pipe_writes_records_without_reading_it_back(tmp_path):
    # Counting the lines already there would block forever on a pipe (or /dev/stdout).
    import threading
    from samples_io import JsonlWriter
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    done = threading.Event()

    def write():
        writer = JsonlWriter(fifo)
        writer.write(ended=False, length=2, text="hi")
        writer.close()
        done.set()
    threading.Thread(target=write, daemon=True).start()
    assert done.wait(timeout=10), "JsonlWriter blocked on a pipe"
    assert json.loads(os.read(reader, 1000)) == {"id": 0, "ended": False, "length": 2,
                                                 "text": "hi"}
    os.close(reader)


def test_out_of_memory_is_one_line_with_the_remedy(run_script, monkeypatch):
    import tensorflow as tf

    def exhausted(self, context, **kw):
        raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")
    monkeypatch.setattr(samples_io.Model, "generate", exhausted)
    r = run_script(gus, "--nsamples", 2, "--batch_size", 2, "--length", 4)
    assert r.code == 1
    assert r.stderr == ("generate_unconditional_samples.py: error: TensorFlow failed "
                        "(ResourceExhaustedError: OOM when allocating tensor): use a smaller "
                        "--batch_size or --length, or --dtype bfloat16\n")
