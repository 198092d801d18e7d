"""download_model.py against what a hostile network, disk or user does to it (issues 13, 14):
web pages served as files, leftovers and links planted at `.part`, a trickling server, local
edits, damaged manifests, endless bodies, unreachable hosts, mirrors of other files, and the
remedies it prints, pasted back into a shell.
"""
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from download_fixtures import *  # noqa: F401,F403 -- the fixtures: clean_env, server, run
from download_fixtures import DATA, FILES, ROOT, SIZES, Server, data_gets, dm, sha, subprocess_run

import download_http  # noqa: E402 -- after download_fixtures, which puts the repository on the path

pytestmark = pytest.mark.usefixtures("no_tracebacks")

PORTAL = b"<!DOCTYPE html><html><head><title>Sign in to the Wi-Fi</title></head><body>...</body></html>"
SMALL = [name for name in dm.FILENAMES if name != DATA]


def closed_port_url() -> str:
    dead = Server()
    dead.close()  # nobody listens there any more
    return dead.url


# --- web pages instead of files --------------------------------------------------------------

@pytest.mark.parametrize("model", dm.MODELS)
def test_html_with_200_for_every_file_is_never_saved(run, server, monkeypatch, model):
    monkeypatch.setattr(dm, "PINS", dm.released_pins())  # the real pins: 774M/1558M lack some
    for name in dm.FILENAMES:
        server.script[f"/models/{model}/{name}"].extend(
            [{"status": 200, "headers": {"Content-Type": "text/html; charset=utf-8"}, "body": PORTAL}] * 3)
    for _ in range(2):  # a re-run does not keep it either
        with pytest.raises(dm.DownloadError, match=r"/checkpoint answered with a web page \(Content-Type "
                           r"text/html; charset=utf-8\), not the file: a captive portal or a login page\?"):
            run([model])
        folder = run.dir / model
        assert not folder.exists() or {p.name for p in folder.iterdir()} <= {".download.json"}
        manifest = run.path(".download.json", model)
        assert not manifest.exists() or json.loads(manifest.read_text())["files"] == {}


@pytest.mark.parametrize("name", SMALL)
def test_html_page_labelled_as_a_file_is_refused_by_its_first_bytes(run, server, monkeypatch, name):
    monkeypatch.setattr(dm, "PINS", {})  # nothing to compare with: the page itself must give it away
    server.script[f"/models/124M/{name}"].append(
        {"status": 200, "headers": {"Content-Type": "application/octet-stream"}, "body": b"\n " + PORTAL})
    with pytest.raises(dm.DownloadError, match=f"/{name} answered with a web page .it starts with <html>."):
        run()
    assert not run.path(name).exists() and not run.path(name + ".part").exists()


def test_html_page_in_a_subprocess_is_one_line_and_exit_1(tmp_path, server):
    for name in dm.FILENAMES:
        server.script[f"/models/355M/{name}"].append(
            {"status": 200, "headers": {"Content-Type": "text/html"}, "body": PORTAL})
    p = subprocess_run(["355M", "--base_url", server.url + "/models"], tmp_path, unpinned=False)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 1 and "Traceback" not in err
    assert err.splitlines() == [f"download_model.py: error: {server.url}/models/355M/checkpoint answered "
                                f"with a web page (Content-Type text/html), not the file: a captive portal "
                                f"or a login page? Check the network, or check the model name and "
                                f"--base_url (or GPT2_BASE_URL)"]


# --- what is found at `.part` ------------------------------------------------------------

def test_foreign_part_file_is_not_resumed(run, server):
    run.path(DATA).parent.mkdir(parents=True)
    run.path(DATA + ".part").write_bytes(b"\x00" * 50_000)  # no record of where it came from
    run()
    run.assert_complete()
    assert "range" not in data_gets(server)[0]
    assert any("cannot be resumed safely" in line for line in run.logs)


def test_part_recorded_for_another_url_is_not_resumed(run, server):
    server.script[f"/models/124M/{DATA}"].extend([{"drop_after": 80_000}, {"drop_after": 0}])
    with pytest.raises(dm.DownloadError):
        run(retries=0)
    assert run.path(DATA + ".part").stat().st_size == 80_000
    server.serve(f"/mirror/124M/{DATA}", FILES[DATA])
    for name in SMALL:
        server.serve(f"/mirror/124M/{name}", FILES[name])
    run(base_url=server.url + "/mirror")
    run.assert_complete()
    assert "range" not in server.gets(f"/mirror/124M/{DATA}")[0]


@pytest.mark.parametrize("kind", ["symlink", "hardlink"])
@pytest.mark.parametrize("recorded", [False, True])
def test_link_at_part_is_never_written_through(run, server, tmp_path, kind, recorded):
    precious = tmp_path / "precious.bin"
    precious.write_bytes(b"do not touch " * 1000)
    before = precious.read_bytes()
    if recorded:  # even with a partial record that would allow a resume
        server.script[f"/models/124M/{DATA}"].extend([{"drop_after": 80_000}, {"drop_after": 0}])
        with pytest.raises(dm.DownloadError):
            run(retries=0)
        run.path(DATA + ".part").unlink()
    run.path(DATA).parent.mkdir(parents=True, exist_ok=True)
    (os.symlink if kind == "symlink" else os.link)(precious, run.path(DATA + ".part"))
    run()
    run.assert_complete()
    assert precious.read_bytes() == before and not precious.is_symlink()
    assert "range" not in data_gets(server)[-1]


def test_symlink_at_the_lock_or_manifest_is_not_followed(run, server, tmp_path):
    outside = tmp_path / "outside.json"
    outside.write_text("keep")
    run.path(".download.json").parent.mkdir(parents=True)
    run.path(".download.json").symlink_to(outside)
    run()
    run.assert_complete()
    assert outside.read_text() == "keep" and not run.path(".download.json").is_symlink()
    run.path(".download.lock").symlink_to(outside)
    with pytest.raises(dm.DownloadError, match=r"/\.download\.lock: Too many levels of symbolic links: fix its"):
        run()
    assert outside.read_text() == "keep"


def without_dac(args, cwd):
    """The script as a user whom permissions bind: root without CAP_DAC_OVERRIDE."""
    if os.geteuid() == 0 and not shutil.which("setpriv"):
        pytest.skip("needs setpriv to drop root's permission override")
    prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
    return subprocess.run([*prefix, sys.executable, str(ROOT / "download_model.py"), *args, "--no_pins"],
                          cwd=cwd, capture_output=True, text=True, timeout=60)


def test_permission_problems_name_the_path_and_no_download(tmp_path, server):
    args = ["124M", "--base_url", server.url + "/models"]
    (tmp_path / "models").mkdir()
    (tmp_path / "models").chmod(0o555)
    try:
        p = without_dac(args, tmp_path)
    finally:
        (tmp_path / "models").chmod(0o755)
    assert p.returncode == 1 and p.stderr == ("download_model.py: error: models/124M: Permission denied: "
                                              "fix its permissions or choose another --models_dir\n")
    assert without_dac(args, tmp_path).returncode == 0
    data = tmp_path / "models/124M" / DATA
    data.chmod(0o000)  # as after a download as root in Docker
    requests_before = len(server.requests)
    p = without_dac(args, tmp_path)
    assert p.returncode == 1 and p.stderr.splitlines()[-1] == (
        f"download_model.py: error: models/124M/{DATA}: Permission denied: fix its permissions or "
        f"choose another --models_dir")
    assert len(server.requests) == requests_before  # a download would not fix it
    data.chmod(0o644)
    assert data.read_bytes() == FILES[DATA]


# --- slow servers, damaged records, endless bodies ----------------------------------------

def test_trickling_server_ends_by_itself_with_its_bytes_on_disk(tmp_path, server):
    path = f"/models/124M/{DATA}"
    server.script[path].extend([{"trickle": 1}] * 20)  # 1 byte a second, every attempt
    start = time.monotonic()
    p = subprocess_run(["124M", "--base_url", server.url + "/models", "--timeout", "3"], tmp_path)
    out, err = p.communicate(timeout=60)
    elapsed = time.monotonic() - start
    assert p.returncode == 1 and elapsed < 30, (elapsed, err)
    last = err.splitlines()[-1]
    assert last.startswith(f"download_model.py: error: gave up on {server.url}{path} (too slow: ")
    part = tmp_path / "models/124M" / (DATA + ".part")
    have = part.stat().st_size
    assert f"with {have:,} of 200,000 bytes: run `" in last and last.endswith("` again to resume")
    assert 6 <= have < 1000 and part.read_bytes() == FILES[DATA][:have]  # what was sent, kept


def test_locally_edited_file_survives_an_offline_rerun(run, server):
    run()
    edited = bytearray(FILES[DATA])
    edited[1234] ^= 0xFF
    run.path(DATA).write_bytes(bytes(edited))
    run.path("hparams.json").write_bytes(b'{"n_vocab": 5}')
    for force in (False, True):
        with pytest.raises(dm.DownloadError, match="^cannot reach 127.0.0.1"):
            run(base_url=closed_port_url(), force=force)
        assert run.path(DATA).read_bytes() == bytes(edited)  # not deleted before a replacement
        assert run.path("hparams.json").read_bytes() == b'{"n_vocab": 5}'
        assert run.path("checkpoint").read_bytes() == FILES["checkpoint"]
    assert any("it stays until its replacement has been verified" in line for line in run.logs)
    run()  # online again: both fixed
    run.assert_complete()


@pytest.mark.parametrize("content", [
    b'{"files": []}', b'{"files": {"checkpoint": "x"}, "partial": 5}', b"[" * 100_000 + b"]" * 100_000,
    b'{"files": {"checkpoint": {"size": "77", "sha256": 5}}}', b"\xff\xfe\x00", b"", b"null",
    b'{"files": {"hparams.json": {"size": ' + b"9" * 5000 + b', "sha256": "' + b"0" * 64 + b'"}}}',
    b'{"partial": {"' + DATA.encode() + b'": {"url": 5, "etag": ["x"]}}}'])
def test_damaged_manifest_counts_as_empty(run, server, content):
    run()
    requests_before = len(server.requests)
    run.path(".download.json").write_bytes(content)
    run()  # no traceback; the files verify against their pins, so nothing is fetched
    run.assert_complete()
    assert len(server.requests) == requests_before
    manifest = json.loads(run.path(".download.json").read_text())
    assert manifest["files"][DATA] == {"size": SIZES[DATA], "sha256": sha(FILES[DATA])}


def test_damaged_manifest_with_a_part_file_restarts_it(run, server):
    server.script[f"/models/124M/{DATA}"].extend([{"drop_after": 80_000}, {"drop_after": 0}])
    with pytest.raises(dm.DownloadError):
        run(retries=0)
    run.path(".download.json").write_bytes(b'{"files": {}, "partial": []}')
    run()
    run.assert_complete()
    assert "range" not in data_gets(server)[-1]


def test_endless_body_of_an_unpinned_small_file_is_cut_off(run, server, monkeypatch):
    monkeypatch.setattr(dm, "PINS", {})
    monkeypatch.setattr(dm, "SMALL_FILE_CAP", 100_000)
    server.script["/models/124M/model.ckpt.meta"].append({"endless": True, "no_length": True})
    with pytest.raises(dm.DownloadError, match=r"/model.ckpt.meta sent more than 100,000 bytes, more than "
                                               r"such a file can have; check the model name"):
        run()
    assert not run.path("model.ckpt.meta.part").exists() and not run.path("model.ckpt.meta").exists()
    server.script["/models/124M/model.ckpt.meta"].append(
        {"no_length": True, "headers": {"Content-Length": str(10 ** 12)}})
    with pytest.raises(dm.DownloadError, match=r"has 1,000,000,000,000 bytes, more than the 100,000"):
        run()


def test_backoff_exponent_is_capped_for_any_retries(run):
    budget = download_http.Budget("http://x/y", download_http.Options(retries=10 ** 6, sleep=run.sleep))
    budget.failures = 5000  # 2.0 ** 5000 would overflow
    budget.spend(download_http.Retry("HTTP 503"), progressed=False)
    assert run.sleeps == [download_http.BACKOFF_CAP]


def test_huge_retries_flag_is_accepted(tmp_path, server, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(dm, "PINS", {})
    assert dm.main(["124M", "--base_url", server.url + "/models", "--retries", str(10 ** 30)]) == 0


# --- unreachable hosts, mirrors, remedies ------------------------------------------------

@pytest.mark.parametrize("where", ["http://gpt2.invalid/models", "refused"])
def test_unreachable_host_fails_fast_and_names_the_flag(tmp_path, where):
    url = closed_port_url() if where == "refused" else where
    start = time.monotonic()
    p = subprocess_run(["124M", "--base_url", url], tmp_path)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 1 and time.monotonic() - start < 10
    assert err.splitlines()[-1].endswith("check the network or proxy, or download from a mirror with "
                                         "--base_url URL (or GPT2_BASE_URL)")
    assert err.count("retrying") <= 1


def test_small_files_first_so_a_wrong_mirror_fails_before_the_big_ones(run, server, monkeypatch):
    other = {name: data[::-1] for name, data in FILES.items()}
    for name, data in other.items():
        server.serve(f"/models/355M/{name}", data)
    monkeypatch.setattr(dm, "PINS", {"124M": dm.PINS["124M"], "355M": dm.PINS["124M"]})
    with pytest.raises(dm.DownloadError, match="355M/checkpoint: sha256 .* differs .* --no_pins$"):
        run(["124M", "355M"])
    order = [target.rsplit("/", 2)[1:] for _, target, _ in server.requests]
    assert order == [["124M", name] for name in SMALL] + [["355M", "checkpoint"]]  # no data file yet


def test_no_pins_accepts_a_mirrors_own_files(run, server, monkeypatch):
    monkeypatch.setattr(dm, "PINS", dm.released_pins())  # the real released files' pins
    with pytest.raises(dm.DownloadError, match="checkpoint: sha256 .* differs from the expected .* --no_pins$"):
        run()
    server.script[f"/models/124M/{DATA}"].append({"drop_after": 80_000})
    run(no_pins=True)  # sizes from the server, sha256 recorded; resumable as ever
    run.assert_complete()
    assert data_gets(server)[-1]["range"] == "bytes=80000-"
    manifest = json.loads(run.path(".download.json").read_text())
    assert manifest["files"] == {n: {"size": len(d), "sha256": sha(d)} for n, d in FILES.items()}
    count = len(server.requests)
    run(no_pins=True)  # verified against the recorded digests: no download
    assert len(server.requests) == count
    run.path(DATA).write_bytes(FILES[DATA][:-1] + b"?")
    run(no_pins=True)  # a damaged file is still detected
    run.assert_complete()


def test_printed_remedy_succeeds_when_pasted(tmp_path, server):
    models_dir = tmp_path / "my models" / "it's here"
    server.script[f"/models/124M/{DATA}"].extend([{"drop_after": 50_000}, {"drop_after": 0}])
    p = subprocess_run(["124M", "--base_url", server.url + "/models", "--models_dir", "my models/it's here",
                        "--retries", "0"], tmp_path)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 1
    command = err.splitlines()[-1].split("`")[1]
    env = {k: v for k, v in os.environ.items() if k != "GPT2_BASE_URL"}
    pasted = subprocess.run(["bash", "-c", command], cwd="/", env=env, capture_output=True, text=True,
                            timeout=60)
    assert pasted.returncode == 0, pasted.stderr
    assert (models_dir / "124M" / DATA).read_bytes() == FILES[DATA]
    assert data_gets(server)[-1]["range"] == "bytes=50000-"


@pytest.mark.parametrize("typo, suggestion", [("--forse", "--force"), ("--model_dir", "--models_dir"),
                                              ("--nopins", "--no_pins")])
def test_misspelled_flag_gets_the_closest_one(capsys, typo, suggestion):
    with pytest.raises(SystemExit) as e:
        dm.main(["124M", typo])
    assert e.value.code == 2
    assert capsys.readouterr().err == (f"download_model.py: error: unrecognized argument: {typo} "
                                       f"(did you mean {suggestion}?); see --help\n")


def test_help_in_a_terminal_is_printed_without_a_pager(tmp_path):
    pexpect = pytest.importorskip("pexpect")
    env = {**os.environ, "PAGER": "false", "FIRE_PAGER": "false"}
    child = pexpect.spawn(sys.executable, [str(ROOT / "download_model.py"), "--help"], env=env,
                          encoding="utf-8", timeout=30)
    text = child.read()
    child.close()
    assert child.exitstatus == 0
    assert "--no_pins" in text and "--base_url" in text and " -s" not in text


# --- standard streams that are full or closed (issue 13) ---------------------------------

def shell_run(redirect, args, cwd):
    """The script in bash with `redirect` applied: (exit status, stdout, stderr)."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "no_proxy")}
    done = subprocess.run(["bash", "-c", f'"$@" {redirect}', "-", sys.executable,
                           str(ROOT / "download_model.py"), *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    return done.returncode, done.stdout, done.stderr


@pytest.mark.parametrize("redirect", ["2>/dev/full", "2>&-"])
def test_a_full_or_closed_stderr_does_not_stop_the_download(tmp_path, server, redirect):
    """Log lines that cannot be written are dropped; they used to fail the first file as
    'cannot write .../checkpoint: No space left on device' (or an AttributeError)."""
    code, out, _ = shell_run(redirect, ["124M", "--no_pins", "--models_dir", "models",
                                        "--base_url", server.url + "/models"], tmp_path)
    assert (code, out) == (0, "")
    for name, data in FILES.items():
        assert (tmp_path / "models/124M" / name).read_bytes() == data, name


@pytest.mark.parametrize("redirect, reason", [(">/dev/full", "No space left on device"),
                                              (">&-", "it is closed")])
def test_help_into_a_full_or_closed_stdout_is_one_line_exit_1(tmp_path, redirect, reason):
    """It exited 0 with the help lost (full), or printed the help on stderr (closed)."""
    assert shell_run(redirect, ["--help"], tmp_path) == (
        1, "", f"download_model.py: error: cannot write to standard output: {reason}\n")
