"""download_model.py against a scripted local HTTP server: every D-case of FAULTS.md.

Most tests call `download()` in-process with made-up files (PINS replaced by their sizes and
digests), a recorded fake sleep and a recording progress bar. A few run the script as a
subprocess: exit codes, signals, two concurrent runs, a file-size limit.
"""
import base64
import email.utils
import hashlib
import json
import random
import resource
import shlex
import signal
import sys
import time

import pytest
import requests

from download_fixtures import *  # noqa: F401,F403 -- the fixtures: clean_env, server, run
from download_fixtures import (DATA, FILES, ROOT, SIZES, Server, data_gets, dm, pins_for, sha,
                               subprocess_run, wait_for)

import download  # noqa: E402 -- after download_fixtures, which puts the repository on the path
import download_http  # noqa: E402
import download_part  # noqa: E402

pytestmark = pytest.mark.usefixtures("no_tracebacks")


# --- the normal case --------------------------------------------------------------------

def test_downloads_the_seven_files_once_each(run, server):
    run()
    run.assert_complete()
    assert sorted(p.name for p in (run.dir / "124M").iterdir()) == sorted(
        [*FILES, ".download.json"])  # the lock lasts only while the download runs
    for name in FILES:
        (headers,) = server.gets(f"/models/124M/{name}")
        assert "range" not in headers and headers["accept-encoding"] == "identity"
    manifest = json.loads(run.path(".download.json").read_text())
    assert manifest["files"][DATA] == {"size": SIZES[DATA], "sha256": sha(FILES[DATA])}
    assert manifest["partial"] == {}


def test_real_vocabulary_digests_are_pinned(run, server, monkeypatch):
    vocab = {n: (ROOT / "tests/data" / n).read_bytes() for n in ("encoder.json", "vocab.bpe")}
    for name, data in vocab.items():
        server.serve(f"/models/124M/{name}", data)
    real = dm.released_pins()["124M"]
    monkeypatch.setattr(dm, "PINS", {"124M": {**pins_for(FILES), "encoder.json": real["encoder.json"],
                                              "vocab.bpe": real["vocab.bpe"]}})
    run()
    run.assert_complete(files={**FILES, **vocab})
    # the same name with other bytes is refused by the real pins
    server.serve("/models/124M/vocab.bpe", vocab["vocab.bpe"][:-1] + bytes([vocab["vocab.bpe"][-1] ^ 1]))
    with pytest.raises(dm.DownloadError, match="vocab.bpe: sha256 .* differs from the expected .* --no_pins$"):
        run(force=True)


def test_real_pins_match_the_released_sizes():
    pins = dm.released_pins()
    assert [pins["124M"][n].size for n in dm.FILENAMES] == [77, 1042301, 90, 497759232, 5215, 471155, 456318]
    assert [pins[m][DATA].size for m in dm.MODELS] == [497_759_232, 1_419_292_672, 3_096_120_320, 6_230_444_800]


def test_several_models_and_old_names(run, server, monkeypatch):
    other = {name: data[::-1] for name, data in FILES.items()}
    for name, data in other.items():
        server.serve(f"/models/355M/{name}", data)
    monkeypatch.setattr(dm, "PINS", {"124M": pins_for(FILES), "355M": pins_for(other)})
    run(["117M", "345M", "124M"])
    run.assert_complete("124M")
    run.assert_complete("355M", other)
    assert "note: 117M is the old name of 124M; downloading 124M" in run.logs
    assert "note: 345M is the old name of 355M; downloading 355M" in run.logs
    assert len(data_gets(server)) == 1  # 117M and 124M are one model, fetched once
    assert not (run.dir / "117M").exists()


def test_default_base_url_is_the_original():
    assert dm._base_url(dm._parser().parse_args(["124M"])) == "https://openaipublic.blob.core.windows.net/gpt-2/models"
    assert dm.FILENAMES == ("checkpoint", "encoder.json", "hparams.json", "model.ckpt.data-00000-of-00001",
                            "model.ckpt.index", "model.ckpt.meta", "vocab.bpe")


def test_base_url_from_environment(tmp_path, server, monkeypatch, capsys):
    monkeypatch.setenv("GPT2_BASE_URL", server.url + "/models")
    monkeypatch.chdir(tmp_path)
    assert dm.main(["124M", "--models_dir", "here"]) == 0
    assert (tmp_path / "here/124M" / DATA).read_bytes() == FILES[DATA]
    assert "verified" in capsys.readouterr().err


# --- D1-D9: resume, ranges, byte counts ----------------------------------------------------

def test_d1_drop_at_40_percent_resumes_from_the_bytes_on_disk(run, server):
    server.script[f"/models/124M/{DATA}"].append({"drop_after": 80_000})
    run()
    run.assert_complete()
    first, second = data_gets(server)
    assert "range" not in first
    assert second["range"] == "bytes=80000-" and second["if-range"] == '"v1"'
    assert server.sent[f"/models/124M/{DATA}"] == SIZES[DATA]  # no byte was sent twice
    assert run.sleeps == []  # progress was made: resume at once


def test_d1_resume_across_runs(run, server):
    server.script[f"/models/124M/{DATA}"].extend([{"drop_after": 80_000}, {"drop_after": 0}])
    with pytest.raises(dm.DownloadError, match="run the same command again to resume"):
        run(retries=0)
    assert not run.path(DATA).exists()
    assert run.path(DATA + ".part").stat().st_size == 80_000
    run()
    run.assert_complete()
    assert data_gets(server)[-1]["range"] == "bytes=80000-"
    assert data_gets(server)[-1]["if-range"] == '"v1"'


def test_d2_many_drops_with_progress_still_complete(run, server):
    server.script[f"/models/124M/{DATA}"].extend({"drop_after": 20_000} for _ in range(9))
    run(retries=1)
    run.assert_complete()
    assert [h.get("range") for h in data_gets(server)] == [None] + [f"bytes={k * 20_000}-" for k in range(1, 10)]


def test_d3_drops_without_progress_give_up(run, server):
    server.script[f"/models/124M/{DATA}"].extend({"drop_after": 0} for _ in range(10))
    url = f"{server.url}/models/124M/{DATA}"
    with pytest.raises(dm.DownloadError) as e:
        run(retries=3)
    assert str(e.value).startswith(f"gave up on {url} (")
    assert "with 0 of 200,000 bytes: run the same command again to resume" in str(e.value)
    assert len(data_gets(server)) == 4 and run.sleeps == [1, 2, 4]
    assert not run.path(DATA).exists()


def test_d3_exit_code_and_one_line(tmp_path, server, monkeypatch, capsys):
    server.script[f"/models/124M/{DATA}"].extend([{"drop_after": 50_000}, {"drop_after": 0}])
    monkeypatch.chdir(tmp_path)
    assert dm.main(["124M", "--base_url", server.url + "/models", "--retries", "0"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith("download_model.py: error: gave up on")
    assert "50,000 of 200,000 bytes" in err[-1] and "Traceback" not in "\n".join(err)


def test_d4_server_ignoring_range_restarts_from_zero(run, server):
    server.script[f"/models/124M/{DATA}"].extend([{"drop_after": 80_000}, {"ignore_range": True}])
    run()
    run.assert_complete()  # not the 80,000 bytes followed by the whole file
    assert data_gets(server)[1]["range"] == "bytes=80000-"
    assert any("sent the whole file" in line for line in run.logs)


def test_d5_content_range_elsewhere_is_never_spliced(run, server):
    server.script[f"/models/124M/{DATA}"].extend([{"drop_after": 80_000}, {"range_start": 70_000}])
    run()
    run.assert_complete()
    assert [h.get("range") for h in data_gets(server)] == [None, "bytes=80000-", None]


def test_d6_file_changed_upstream_with_pinned_digest(run, server):
    path = f"/models/124M/{DATA}"
    server.script[path].extend([{"drop_after": 80_000}, {"status": 503}])
    run.on_sleep = lambda _delay: server.serve(path, FILES[DATA][::-1], etag='"v2"')  # upstream changes
    with pytest.raises(dm.DownloadError, match=r"sha256 .* differs from the expected .*; removed the download"):
        run()
    gets = data_gets(server)
    assert gets[2]["range"] == "bytes=80000-" and gets[2]["if-range"] == '"v1"'
    assert not run.path(DATA).exists() and not run.path(DATA + ".part").exists()


def test_d6_file_changed_upstream_without_pins(run, server, monkeypatch):
    monkeypatch.setattr(dm, "PINS", {})
    path, new = f"/models/124M/{DATA}", FILES[DATA][::-1]
    server.script[path].extend([{"drop_after": 80_000}, {"status": 503}])
    run.on_sleep = lambda _delay: server.serve(path, new, etag='"v2"')
    run()
    assert run.path(DATA).read_bytes() == new  # restarted: no A prefix spliced onto B
    assert data_gets(server)[2]["if-range"] == '"v1"'
    manifest = json.loads(run.path(".download.json").read_text())
    assert manifest["files"][DATA]["sha256"] == sha(new)


def test_d7_partial_file_already_complete_pinned(run, server):
    run.path(DATA).parent.mkdir(parents=True)
    run.path(DATA + ".part").write_bytes(FILES[DATA])
    run()
    run.assert_complete()
    assert data_gets(server) == []  # nothing to ask for: no request that would answer 416


def test_d7_killed_before_the_rename_unpinned(run, server, monkeypatch):
    monkeypatch.setattr(dm, "PINS", {})
    publish = download._publish

    def killed(part, final):
        if final.endswith(DATA):
            raise KeyboardInterrupt
        publish(part, final)
    monkeypatch.setattr(download, "_publish", killed)
    with pytest.raises(KeyboardInterrupt):
        run()
    assert run.path(DATA + ".part").read_bytes() == FILES[DATA] and not run.path(DATA).exists()
    monkeypatch.setattr(download, "_publish", publish)
    run()
    run.assert_complete()
    assert len(data_gets(server)) == 1  # the size recorded from the first response sufficed


@pytest.mark.parametrize("pinned", [True, False])
def test_d8_short_body_detected_by_counting(run, server, monkeypatch, pinned):
    if not pinned:
        monkeypatch.setattr(dm, "PINS", {})
    session = download.make_session()

    def lenient(r, *args, **kwargs):  # like urllib3 1.x: a short body is not an error
        r.raw.enforce_content_length = False
    session.hooks["response"].append(lenient)
    server.script[f"/models/124M/{DATA}"].append({"drop_after": SIZES[DATA] - 1000})
    run(session=session)
    run.assert_complete()
    assert data_gets(server)[1]["range"] == "bytes=199000-"


def test_d9_no_content_length(run, server):
    path = f"/models/124M/{DATA}"
    server.script[path].extend([{"no_length": True, "drop_after": 50_000}, {"no_length": True}])
    run()
    run.assert_complete()
    assert data_gets(server)[1]["range"] == "bytes=50000-"
    bars = [b for b in run.bars if b.desc.endswith(DATA)]
    assert [(b.total, b.initial, b.n) for b in bars] == [(200_000, 0, 50_000), (200_000, 50_000, 200_000)]


def test_d9_no_content_length_and_nothing_known(run, server, monkeypatch):
    monkeypatch.setattr(dm, "PINS", {})
    server.script[f"/models/124M/{DATA}"].append({"no_length": True})
    run()
    run.assert_complete()
    assert [b.total for b in run.bars if b.desc.endswith(DATA)] == [None]


def test_content_md5_is_checked(run, server, monkeypatch):
    monkeypatch.setattr(dm, "PINS", {})  # nothing pinned: the server's digest is all we have
    good = base64.b64encode(hashlib.md5(FILES[DATA]).digest()).decode()
    path = f"/models/124M/{DATA}"
    server.script[path].append({"headers": {"Content-MD5": good}})
    run()
    run.assert_complete()
    server.script[path].append({"headers": {"Content-MD5": base64.b64encode(bytes(16)).decode()}})
    with pytest.raises(dm.DownloadError, match=r"MD5 .* differs from the server's Content-MD5 .* removed"):
        run(force=True)
    assert not run.path(DATA + ".part").exists()
    assert run.path(DATA).read_bytes() == FILES[DATA]  # --force keeps the verified file until replaced


def test_a_different_file_is_refused_before_and_while_writing(run, server):
    path = f"/models/124M/{DATA}"
    server.serve(path, FILES[DATA] + b"0123456789")
    with pytest.raises(dm.DownloadError, match="has 200,010 bytes, not the 200,000 expected"):
        run()
    assert not run.path(DATA + ".part").exists()
    server.script[path].append({"no_length": True})  # the excess shows only while writing
    with pytest.raises(dm.DownloadError, match="sent more than its 200,000 bytes"):
        run()
    assert not run.path(DATA + ".part").exists() and not run.path(DATA).exists()


# --- D10-D16: HTTP errors, retries, timeouts, network -------------------------------------

@pytest.mark.parametrize("status", [404, 403, 400])
def test_d10_client_errors_are_not_retried_or_saved(run, server, status):
    path = "/models/124M/hparams.json"
    server.script[path].append({"status": status, "body": b"<?xml version='1.0'?><Error>No</Error>"})
    with pytest.raises(dm.DownloadError, match=f"^HTTP {status} for {server.url}{path}: check"):
        run()
    assert len(server.gets(path)) == 1 and run.sleeps == []
    assert not run.path("hparams.json").exists() and not run.path("hparams.json.part").exists()
    assert run.path("encoder.json").read_bytes() == FILES["encoder.json"]  # earlier files stay


def test_d10_exit_code_of_the_real_script(tmp_path, server):
    p = subprocess_run(["124M", "--base_url", server.url + "/nowhere"], tmp_path, unpinned=False)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 1
    assert err == f"download_model.py: error: HTTP 404 for {server.url}/nowhere/124M/checkpoint: " \
                  "check the model name and --base_url (or GPT2_BASE_URL)\n"
    assert not (tmp_path / "models/124M/checkpoint").exists()


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
def test_d11_server_errors_back_off_then_succeed(run, server, status):
    server.script[f"/models/124M/{DATA}"].extend([{"status": status}] * 3)
    run()
    run.assert_complete()
    assert run.sleeps == [1, 2, 4]


def test_d11_429_honours_retry_after_seconds_and_date(run, server):
    date = email.utils.formatdate(time.time() + 100, usegmt=True)
    server.script[f"/models/124M/{DATA}"].extend([
        {"status": 429, "headers": {"Retry-After": "7"}},
        {"status": 503, "headers": {"Retry-After": date}},
        {"status": 429, "headers": {"Retry-After": "100000"}},
    ])
    run()
    run.assert_complete()
    assert run.sleeps[0] == 7 and 95 < run.sleeps[1] <= 100 and run.sleeps[2] == download_http.RETRY_AFTER_CAP


def test_d11_backoff_is_capped(run, server):
    server.script[f"/models/124M/{DATA}"].extend([{"status": 503}] * 8)
    run(retries=8)
    run.assert_complete()
    assert run.sleeps == [1, 2, 4, 8, 16, 30, 30, 30]


def test_d12_stalled_server_times_out_then_resumes(run, server):
    # Stall after whole chunks: bytes urllib3 had buffered for a chunk when the timeout fired
    # never reached the disk, and the resume starts from the disk.
    stall_at = 2 * download_part.CHUNK
    server.script[f"/models/124M/{DATA}"].extend([{"stall": 30}, {"stall_after": stall_at}])
    start = time.monotonic()
    run(timeout=0.3)
    run.assert_complete()
    assert time.monotonic() - start < 10
    assert [h.get("range") for h in data_gets(server)] == [None, None, f"bytes={stall_at}-"]


def test_d13_connection_refused(run, server):
    closed = Server()
    closed.close()  # a port nobody listens on
    with pytest.raises(dm.DownloadError, match=r"^cannot reach 127.0.0.1 \(Connection refused\): check "
                       r"the network or proxy, or download from a mirror with --base_url URL \(or GPT2_BASE_URL\)$"):
        run(base_url=closed.url, retries=5)
    assert run.sleeps == [1]  # one retry at most: waiting does not make a port listen


def test_d13_unknown_host(run):
    with pytest.raises(dm.DownloadError, match=r"^cannot reach gpt2.invalid \(.+\): check the network or "
                       r"proxy, or download from a mirror with --base_url URL \(or GPT2_BASE_URL\)$"):
        run(base_url="http://gpt2.invalid/", retries=5)
    assert len(run.sleeps) <= 1


def test_d14_gzip_despite_identity(run, server):
    server.script[f"/models/124M/{DATA}"].append({"gzip": True})
    server.script["/models/124M/hparams.json"].extend([{"drop_after": 40}, {"gzip": True}])
    run()
    run.assert_complete()  # the file's bytes, not the gzip stream
    assert [h.get("range") for h in server.gets("/models/124M/hparams.json")] == [None, "bytes=40-", None]


def test_d15_redirect_to_file_is_refused(run, server):
    server.script["/models/124M/checkpoint"].append({"redirect": "file:///etc/passwd"})
    with pytest.raises(dm.DownloadError, match="^refused redirect from .* to file:///etc/passwd"):
        run()
    assert not run.path("checkpoint").exists() and not run.path("checkpoint.part").exists()


def test_d15_http_redirects_are_followed(run, server):
    server.script[f"/models/124M/{DATA}"].append({"redirect": f"{server.url}/mirror/data"})
    server.serve("/mirror/data", FILES[DATA])
    run()
    run.assert_complete()


def test_d15_https_to_http_is_refused():
    r = requests.Response()
    r.status_code, r.url = 302, "https://openaipublic.example/gpt-2/models/124M/checkpoint"
    r.headers["Location"] = "http://evil.example/checkpoint"
    with pytest.raises(dm.DownloadError, match="^refused redirect from https://.* to http://evil"):
        download_http.refuse_bad_redirect(r)
    r.headers["Location"] = "https://mirror.example/checkpoint"
    download_http.refuse_bad_redirect(r)  # https to https is fine


def test_d16_http_proxy_is_used(run, server, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", server.url)  # the server plays the proxy
    run(base_url="http://gpt2-mirror.invalid/models")
    run.assert_complete()
    targets = [target for _, target, _ in server.requests]
    assert targets and all(t.startswith("http://gpt2-mirror.invalid/models/124M/") for t in targets)


def test_d16_no_proxy_is_honoured(run, server, monkeypatch):
    dead = Server()
    dead.close()
    monkeypatch.setenv("HTTP_PROXY", dead.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    run()
    run.assert_complete()
    assert all(target.startswith("/models/") for _, target, _ in server.requests)


# --- D17-D18: re-runs -------------------------------------------------------------------

def test_d17_rerun_makes_no_requests_and_force_downloads_again(run, server):
    run()
    count = len(server.requests)
    run()
    assert len(server.requests) == count
    assert f"{run.path(DATA)}: already downloaded and verified" in run.logs
    run(force=True)
    run.assert_complete()
    assert len(server.requests) == count + len(FILES)
    assert all("range" not in h for _, _, h in server.requests[count:])


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_d18_damaged_file_is_fetched_again(run, server, damage):
    run()
    data = bytearray(FILES[DATA])
    if damage == "truncate":
        del data[-1]
    else:
        data[123_456] ^= 0x01
    run.path(DATA).write_bytes(bytes(data))
    run()
    run.assert_complete()
    assert len(data_gets(server)) == 2 and "range" not in data_gets(server)[1]
    assert any("downloading it again" in line for line in run.logs)


def test_d18_unpinned_file_without_record_is_fetched_again_whole(run, server, monkeypatch):
    monkeypatch.setattr(dm, "PINS", {})
    run()
    run.path(".download.json").unlink()  # as if the original script had written the files
    run()
    run.assert_complete()
    assert len(data_gets(server)) == 2 and "range" not in data_gets(server)[1]


def test_d18_leftover_error_page_is_never_spliced_onto_the_file(run, server, monkeypatch):
    # The original script saved error pages under the model's file names; with only a size
    # pinned, resuming after such a page would glue it to the rest of the real file.
    monkeypatch.setattr(dm, "PINS", {"124M": {DATA: dm.Pin(size=len(FILES[DATA]))}})
    run.path(DATA).parent.mkdir(parents=True, exist_ok=True)
    run.path(DATA).write_bytes(b"<?xml version='1.0'?><Error><Code>BlobNotFound</Code></Error>")
    run()
    run.assert_complete()
    assert "range" not in data_gets(server)[0]


# --- D19-D23: signals, concurrency, disk, names, progress ---------------------------------

@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_d19_interrupted_then_resumed(tmp_path, server, sig, code):
    big = random.Random(1).randbytes(4 << 20)
    path = f"/models/124M/{DATA}"
    server.serve(path, big)
    server.rate = 4 << 20  # about a second for the whole file
    args = ["124M", "--base_url", server.url + "/models"]
    p = subprocess_run(args, tmp_path)
    part = tmp_path / "models/124M" / (DATA + ".part")
    wait_for(lambda: part.exists() and part.stat().st_size > 512 << 10)
    p.send_signal(sig)
    out, err = p.communicate(timeout=30)
    assert p.returncode == code
    assert "partial files are kept; run `" in err and "` to resume" in err
    assert "Traceback" not in err and "\r" not in err  # stderr is not a terminal: no bar
    assert not (tmp_path / "models/124M" / DATA).exists()
    have = part.stat().st_size
    assert 0 < have < len(big)
    server.rate = None
    sent_before = server.sent[path]
    p = subprocess_run(args, tmp_path)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    assert (tmp_path / "models/124M" / DATA).read_bytes() == big
    assert data_gets(server)[-1]["range"] == f"bytes={have}-"
    assert server.sent[path] - sent_before == len(big) - have  # only the missing bytes


def test_d19_kill_9_then_resumed(tmp_path, server):
    big = random.Random(2).randbytes(2 << 20)
    server.serve(f"/models/124M/{DATA}", big)
    server.rate = 2 << 20
    args = ["124M", "--base_url", server.url + "/models"]
    p = subprocess_run(args, tmp_path)
    part = tmp_path / "models/124M" / (DATA + ".part")
    wait_for(lambda: part.exists() and part.stat().st_size > 256 << 10)
    p.kill()
    p.communicate(timeout=30)
    server.rate = None
    have = part.stat().st_size
    p = subprocess_run(args, tmp_path)
    assert p.wait(timeout=30) == 0
    assert (tmp_path / "models/124M" / DATA).read_bytes() == big
    assert data_gets(server)[-1]["range"] == f"bytes={have}-"


def test_d20_two_concurrent_runs(tmp_path, server):
    big = random.Random(3).randbytes(2 << 20)
    server.serve(f"/models/124M/{DATA}", big)
    server.rate = 256 << 10  # slow until the second run is seen waiting
    args = ["124M", "--base_url", server.url + "/models"]
    first = subprocess_run(args, tmp_path)
    wait_for(lambda: server.sent[f"/models/124M/{DATA}"] > 0)
    second = subprocess_run(args, tmp_path)
    assert second.stderr.readline() == "another download into models/124M is running; waiting for it to finish\n"
    server.rate = None
    (out1, err1), (out2, err2) = first.communicate(timeout=30), second.communicate(timeout=30)
    assert first.returncode == 0 and second.returncode == 0, err1 + err2
    assert (tmp_path / "models/124M" / DATA).read_bytes() == big
    assert len(data_gets(server)) == 1  # the second run found it verified


def test_d21_disk_full_names_the_path(tmp_path, server):
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # so write() fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
    p = subprocess_run(["124M", "--base_url", server.url + "/models"], tmp_path, preexec_fn=limit)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 1
    head, command, tail = err.splitlines()[-1].split("`")
    assert head == (f"download_model.py: error: cannot write models/124M/{DATA}.part: File too large: "
                    "free some disk space or choose another --models_dir, then run ")
    assert tail == " again to resume"
    assert shlex.split(command) == [sys.executable, str(ROOT / "download_model.py"), "124M", "--models_dir",
                                    str(tmp_path / "models"), "--base_url", server.url + "/models", "--no_pins"]
    assert not (tmp_path / "models/124M" / DATA).exists()


def test_d22_bad_name_rejected_before_any_io(tmp_path):
    p = subprocess_run(["../../etc"], tmp_path, unpinned=False)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 2
    assert "error: unknown model name '../../etc'; valid names: 124M, 355M, 774M, 1558M" in err
    assert "Traceback" not in err and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv", [["999M"], ["124m"], [""], ["124M", "../x"], [],
                                  ["124M", "--bogus"], ["124M", "--retries", "-1"],
                                  ["124M", "--timeout", "abc"], ["124M", "--base_url", "file:///tmp"]])
def test_d22_usage_errors_exit_2(tmp_path, monkeypatch, capsys, argv):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        dm.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("download_model.py: error: ") and err.endswith("; see --help\n")
    assert err.count("\n") == 1 and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_d23_progress_counts_written_bytes_from_the_resumed_offset(run, server):
    server.script[f"/models/124M/{DATA}"].append({"drop_after": 80_000})
    run()
    bars = [b for b in run.bars if b.desc == f"Fetching {DATA}"]
    assert [(b.total, b.initial, b.n) for b in bars] == [(200_000, 0, 80_000), (200_000, 80_000, 200_000)]
    assert all(b.closed for b in run.bars)


def test_d23_default_bar_is_quiet_without_a_terminal(capsys):
    bar = download.progress_bar(total=10, initial=4, desc="x")
    bar.update(6)
    bar.close()
    assert bar.disable and capsys.readouterr().err == ""
