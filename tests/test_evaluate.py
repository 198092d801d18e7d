"""evaluate.py end to end on the tiny model: the JSON and the table, and every bad input of
FAULTS.md E1-E4 and the issue: one line naming the file (and line) and the format, exit 1
or 2, never a traceback."""
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import reference_gpt2
from conftest import CLI_TINY
from test_score import log_softmax
from test_tasks import CANDIDATES, LAMBADA, WIKITEXT, cbt_story, harness_pair, write_lambada

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import evaluate  # noqa: E402

CBT_STORY = cbt_story(0, "He saw a XXXXX .", "cat", CANDIDATES)
KEYS = {"task", "model", "examples", "metrics", "settings"}
TEXT_METRICS = {"log_likelihood", "tokens", "words", "bytes", "token_perplexity",
                "word_perplexity", "bits_per_byte", "skipped"}


def one_line_error(result, *needles):
    """stderr is exactly one line naming evaluate.py and containing each needle."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("evaluate.py: error: "), lines[0]
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert str(needle) in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture
def lambada_file(tmp_path):
    return write_lambada(tmp_path / "lambada_test.jsonl", LAMBADA)


@pytest.fixture
def wiki_file(tmp_path):
    path = tmp_path / "wiki.test.raw"
    path.write_text(WIKITEXT, encoding="utf-8")
    return path


def reference_metrics(task, weights, enc, data_text):
    """The task's metrics from per-token log-probs of the NumPy GPT-2, by plain loops."""
    n_ctx = CLI_TINY["n_ctx"]

    def scored(tokens, n_scored):  # (log-probs, argmax hits) of the last n_scored tokens
        lp = log_softmax(reference_gpt2.logits(weights, tokens[:-1], CLI_TINY["n_head"]))
        rows = range(len(tokens) - 1 - n_scored, len(tokens) - 1)
        return [lp[i, tokens[i + 1]] for i in rows], [lp[i].argmax() == tokens[i + 1]
                                                      for i in rows]
    if task == "lambada":
        lls, hits = [], []
        for passage in LAMBADA:
            context, target = passage.rsplit(" ", 1)
            c, t = harness_pair(enc, context, " " + target)
            logprobs, greedy = scored((c + t)[-(n_ctx + 1):], len(t))
            lls.append(sum(logprobs))
            hits.append(all(greedy))
        return dict(accuracy=sum(hits) / len(hits), perplexity=math.exp(-sum(lls) / len(lls)))
    tokens = enc.encode(data_text)
    assert len(tokens) <= n_ctx  # one window: <|endoftext|> and the text
    ll = sum(scored([enc.eot_token] + tokens, len(tokens))[0])
    words, n_bytes = len(re.split(r"\s+", data_text)), len(data_text.encode("utf-8"))
    return dict(log_likelihood=ll, tokens=len(tokens), words=words, bytes=n_bytes,
                token_perplexity=math.exp(-ll / len(tokens)),
                word_perplexity=math.exp(-ll / words),
                bits_per_byte=-ll / n_bytes / math.log(2))


NOTES = "Some notes.\nMore notes, with ünïcödé and tabs\tand  double spaces.\n"


@pytest.mark.parametrize("task", ["lambada", "text"])
def test_the_commands_write_the_json(cli_models, cli_weights, tmp_path, task):
    """The acceptance's commands, as a new user runs them (a subprocess, from the repo
    root); the metrics equal the NumPy GPT-2's, summed by plain loops."""
    import encoder
    enc = encoder.get_encoder("tiny", cli_models)
    if task == "lambada":
        data = write_lambada(tmp_path / "lambada_test.jsonl", LAMBADA)
    else:
        data = tmp_path / "notes.txt"
        data.write_text(NOTES, encoding="utf-8")
    out = tmp_path / "out.json"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run(
        [sys.executable, "evaluate.py", task, "--data", str(data), "--model_name", "tiny",
         "--models_dir", cli_models, "--output", str(out)],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    record = json.loads(out.read_text())
    assert set(record) == KEYS
    examples = len(LAMBADA) if task == "lambada" else 1
    assert (record["task"], record["model"], record["examples"]) == (task, "tiny", examples)
    expected = reference_metrics(task, cli_weights, enc, NOTES)
    assert set(record["metrics"]) == set(expected) | {"skipped"}
    assert record["metrics"]["skipped"] == 0
    for name, value in expected.items():
        assert math.isclose(record["metrics"][name], value, rel_tol=1e-5), name
    assert record["settings"]["window_rule"] == "disjoint"
    for name in record["metrics"]:
        assert f"| {name} " in done.stdout


def test_the_text_command_writes_the_json(run_script, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("Some notes.\nMore notes, with ünïcödé.\n", encoding="utf-8")
    out = tmp_path / "out.json"
    result = run_script(evaluate, "text", "--data", path, "--output", out)
    assert result.code == 0, result.stderr
    record = json.loads(out.read_text())
    assert set(record) == KEYS and record["examples"] == 1
    assert set(record["metrics"]) == TEXT_METRICS
    assert record["metrics"]["bytes"] == len(path.read_bytes())
    for name in TEXT_METRICS:
        assert f"| {name} " in result.stdout
    assert result.stderr == ""  # no progress bar when stderr is not a terminal


def test_progress_bar_at_a_terminal_and_the_stride_rule(run_script, wiki_file):
    result = run_script(evaluate, "wikitext2", "--data", wiki_file, "--window_rule", "stride",
                        tty_stderr=True)
    assert result.code == 0, result.stderr
    assert "scoring" in result.stderr and "tok" in result.stderr and "100%" in result.stderr
    assert "| word_perplexity" in result.stdout


def test_an_existing_output_is_kept_unless_overwrite(run_script, lambada_file, tmp_path):
    out = tmp_path / "out.json"
    out.write_text("earlier results")
    result = run_script(evaluate, "lambada", "--data", lambada_file, "--output", out)
    assert result.code == 2
    one_line_error(result, out, "--overwrite")
    assert out.read_text() == "earlier results"
    result = run_script(evaluate, "lambada", "--data", lambada_file, "--output", out,
                        "--limit", 2, "--overwrite")
    assert result.code == 0 and json.loads(out.read_text())["examples"] == 2


def test_a_one_word_passage_is_named_counted_and_fails_the_run(run_script, tmp_path):
    """E2 and the issue: the other passages are scored and reported with the passage counted
    as skipped; one line names the file, the line and the format; exit 1."""
    path = write_lambada(tmp_path / "l.jsonl", LAMBADA[:2] + ["Alone"])
    out = tmp_path / "out.json"
    result = run_script(evaluate, "lambada", "--data", path, "--output", out)
    assert result.code == 1
    line = one_line_error(result, f"{path}: line 3: skipped: the passage has one word",
                          "expected OpenAI's LAMBADA file", "the other 2 examples were scored")
    assert "| skipped    | 1 |" in result.stdout
    record = json.loads(out.read_text())  # nothing computed is lost
    assert record["examples"] == 2 and record["metrics"]["skipped"] == 1, line
    only = write_lambada(tmp_path / "one.jsonl", ["Alone"])
    result = run_script(evaluate, "lambada", "--data", only)
    assert result.code == 1 and result.stdout == ""
    one_line_error(result, f"{only}: line 1: skipped: the passage has one word",
                   "expected OpenAI's LAMBADA file", "nothing could be scored")


def test_several_skipped_examples_are_each_named(run_script, tmp_path):
    passages = ["One", LAMBADA[0], "Two", "Three", "Four", "Five", "Six", "Seven"]
    path = write_lambada(tmp_path / "l.jsonl", passages)
    result = run_script(evaluate, "lambada", "--data", path)
    assert result.code == 1 and "Traceback" not in result.stderr
    *notes, last = result.stderr.strip().splitlines()
    assert notes == [f"evaluate.py: {path}: line {n}: skipped: the passage has one word: no "
                     f"context to predict it from" for n in (1, 3, 4, 5, 6)] + [
                         f"evaluate.py: {path}: 2 more skipped"]
    assert last.startswith(f"evaluate.py: error: {path}: 7 examples skipped (lines above); "
                           f"expected OpenAI's LAMBADA file")
    assert last.endswith("the other 1 example was scored (results above, skipped: 7)")


def test_a_text_too_short_to_score(run_script, tmp_path):
    path = tmp_path / "one.txt"
    path.write_text("a")  # one token: E2's "document shorter than two tokens"
    result = run_script(evaluate, "text", "--data", path)
    assert result.code == 1
    one_line_error(result, f"{path}: line 1: skipped: too short to score",
                   "expected UTF-8 text", "nothing could be scored")


@pytest.mark.parametrize("task, content, needles", [
    ("lambada", None, ["not found", "lambada_test.jsonl"]),
    ("lambada", b"", ["is empty", "lambada_test.jsonl"]),
    ("lambada", b" \n  \n", ["is empty", "lambada_test.jsonl"]),
    ("lambada", WIKITEXT.encode(), ["line 2: this looks like a WikiText file",
                                    "lambada_test.jsonl"]),
    ("lambada", b'{"text": "fine passage here"}\n["no", "text"]\n', ['line 2: no "text"']),
    ("lambada", b'{"text": "a passage"}\n{"text": "caf\xe9 au lait"}\n',
     ["line 2: byte 0xe9 (offset 35) is not UTF-8", "lambada_test.jsonl"]),
    ("wikitext2", b'{"text": "a passage"}\n', ["line 1: this looks like JSON lines",
                                               "wiki.test.raw"]),
    ("wikitext2", CBT_STORY.encode(), ["this looks like a Children's Book Test file"]),
    ("lambada", CBT_STORY.encode(), ["line 1: this looks like a Children's Book Test file"]),
    ("ptb", WIKITEXT.encode(), ["line 2: this looks like a WikiText file", "ptb.test.txt"]),
    ("enwik8", b"anarchism originated as a term of abuse", ["<mediawiki"]),
    ("text8", b'<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.3/">',
     ["line 1", "'<' at offset 0", "a-z"]),
    ("wikitext103", b" plain text\n without headings \n", ["no ' = Title = ' line found"]),
    ("ptb", b" no it was n't black monday \n But Capitals Here \n", ["line 2", "ptb.test.txt"]),
    ("enwik8", b"plain text, not xml\n", ["line 1", "<mediawiki"]),
    ("text8", b"lowercase words then a Capital", ["line 1", "'C' at offset 23", "a-z"]),
    ("cbt-cn", b'{"text": "a passage"}\n', ["line 1: this looks like JSON lines",
                                            "cbtest_CN_valid_2000ex.txt"]),
    ("cbt-ne", b"1 One .\n2 Two .\n\n", ["line 3", "has 2 sentences and no query"]),
    ("text", b"\xff\xfe text", ["line 1: byte 0xff (offset 0) is not UTF-8", "UTF-8 text"]),
])
def test_bad_data_files(run_script, tmp_path, task, content, needles):
    path = tmp_path / "data"
    if content is not None:
        path.write_bytes(content)
    result = run_script(evaluate, task, "--data", path)
    assert result.code == 1
    one_line_error(result, path, "expected", *needles)
    assert result.stdout == ""


@pytest.mark.parametrize("args, needles", [
    (["--limit", 5], ["--limit 5 is larger than the 4 examples", "--limit 4"]),
    (["--limit", 0], ["--limit must be at least 1"]),
    (["--batch_size", 0], ["--batch_size must be at least 1"]),
    (["--batch_size", -3], ["--batch_size must be at least 1"]),
    (["--batch_size", "abc"], ["--batch_size must be a whole number"]),
    (["--dtype", "float16"], ["--dtype must be one of float32, bfloat16"]),
    (["--stride", 8], ["--stride applies to --window_rule stride"]),
    (["--window_rule", "stride", "--stride", 65], ["larger than the model's context of 64"]),
    (["--window_rule", "overlap"], ["--window_rule must be one of disjoint, stride"]),
])
def test_bad_options_are_usage_errors(run_script, lambada_file, args, needles):
    result = run_script(evaluate, "lambada", "--data", lambada_file, *args)
    assert result.code == 2
    one_line_error(result, *needles)


def test_unknown_task_and_missing_data_are_usage_errors(run_script, lambada_file):
    result = run_script(evaluate, "lambda", "--data", lambada_file)
    assert result.code == 2
    one_line_error(result, "unknown task 'lambda'", "lambada, lambada-last-token, wikitext2")
    result = run_script(evaluate, "wikitext2")
    assert result.code == 2
    one_line_error(result, "--data is required", "wiki.test.raw")


def test_a_missing_model_is_named(run_script, lambada_file, tmp_path):
    result = run_script(evaluate, "lambada", "--data", lambada_file, "--models_dir",
                        tmp_path, "--model_name", "124M", model=False)
    assert result.code == 1
    one_line_error(result, os.path.join(tmp_path, "124M"), "download_model.py 124M")


# --download: the task's public file through download.py, against a local server.

@pytest.fixture
def server():
    from http_fixture import Server
    s = Server()
    yield s
    s.close()


def test_lambada_is_fetched_beside_the_models_then_reused(run_script, server, tmp_path):
    import tasks_download
    assert tasks_download.SOURCES["lambada"].url == \
        "https://openaipublic.blob.core.windows.net/gpt-2/data/lambada_test.jsonl"
    body = write_lambada(tmp_path / "served.jsonl", LAMBADA).read_bytes()
    url_path = "/gpt-2/data/lambada_test.jsonl"
    server.serve(url_path, body)
    server.script[url_path].append({"drop_after": 100})  # a dropped transfer resumes
    data = tmp_path / "data" / "lambada_test.jsonl"
    args = ["lambada", "--download", "--data", data, "--data_url", server.url + url_path]
    result = run_script(evaluate, *args)
    assert result.code == 0, result.stderr
    assert data.read_bytes() == body and "| perplexity" in result.stdout
    assert server.gets(url_path)[-1]["range"] == "bytes=100-"
    fetched = len(server.gets(url_path))
    assert run_script(evaluate, *args).code == 0
    assert len(server.gets(url_path)) == fetched  # verified on disk: no new request


def test_an_archive_member_is_extracted_and_checked(run_script, server, tmp_path, monkeypatch):
    import io
    import zipfile

    import tasks_download
    text = " anarchism originated as a term of abuse first used against early working class"
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("text8", text)
    server.serve("/dc/text8.zip", archive.getvalue())
    source = tasks_download.SOURCES["text8"]
    monkeypatch.setitem(tasks_download.SOURCES, "text8",
                        tasks_download.Source(source.url, source.file, source.member,
                                              source.pin, size=len(text)))
    data = tmp_path / "text8"
    result = run_script(evaluate, "text8", "--download", "--data", data, "--data_url",
                        server.url + "/dc/text8.zip")
    assert result.code == 0, result.stderr
    assert data.read_text() == text and (tmp_path / "text8.zip").exists()
    assert not list(tmp_path.glob("*.part"))
    data.unlink()  # a member of another size than the one known is refused, not kept
    monkeypatch.setitem(tasks_download.SOURCES, "text8", source)
    result = run_script(evaluate, "text8", "--download", "--data", data, "--data_url",
                        server.url + "/dc/text8.zip")
    assert result.code == 1 and "Traceback" not in result.stderr
    *notes, last = result.stderr.strip().splitlines()  # the archive's note: verified
    assert notes == [f"{tmp_path / 'text8.zip'}: already downloaded and verified"]
    assert last == (f"evaluate.py: error: text8 in {tmp_path / 'text8.zip'} is {len(text)} "
                    f"bytes, not 100,000,000: delete {tmp_path / 'text8.zip'} and run again "
                    f"with --download")
    assert not data.exists() and not list(tmp_path.glob("*.part"))


def test_a_tar_member_and_a_missing_one(tmp_path):
    import io
    import tarfile

    import tasks_download
    archive = tmp_path / "CBTest.tgz"
    with tarfile.open(archive, "w:gz") as t:
        data = b"1 One .\n"
        info = tarfile.TarInfo("CBTest/data/cbtest_CN_valid_2000ex.txt")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    tasks_download.extract(str(archive), "CBTest/data/cbtest_CN_valid_2000ex.txt",
                           str(tmp_path / "cn.txt"), size=None)
    assert (tmp_path / "cn.txt").read_bytes() == b"1 One .\n"
    with pytest.raises(tasks_download.DownloadError, match="has no CBTest/data/other.txt"):
        tasks_download.extract(str(archive), "CBTest/data/other.txt", str(tmp_path / "x"),
                               size=None)
    assert not (tmp_path / "x").exists()


def test_download_failures_are_one_line(run_script, server, tmp_path):
    result = run_script(evaluate, "ptb", "--download", "--data", tmp_path / "ptb.test.txt",
                        "--data_url", server.url + "/missing/ptb.test.txt")
    assert result.code == 1
    one_line_error(result, "HTTP 404", "/missing/ptb.test.txt")
    assert not (tmp_path / "ptb.test.txt").exists()
    result = run_script(evaluate, "text", "--download")
    assert result.code == 2
    one_line_error(result, "the text task has no public file")
    result = run_script(evaluate, "ptb", "--data", "x", "--data_url", server.url)
    assert result.code == 2
    one_line_error(result, "--data_url applies to --download")
