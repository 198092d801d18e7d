"""src/download.py as a library (what evaluate.py --download and the Hub source build on):
one file to one path, pinned or not, with its own remedies in the messages."""
import hashlib

import pytest

from http_fixture import Server

import download

pytestmark = pytest.mark.usefixtures("no_tracebacks")

DATA = bytes(range(256)) * 400


@pytest.fixture
def server():
    s = Server()
    s.serve("/data/test.jsonl", DATA)
    yield s
    s.close()


def options(**kw):
    sleeps = []
    return download.Options(sleep=sleeps.append, log=lambda line: None, **kw), sleeps


def test_fetch_one_file_pinned_then_verified_without_a_request(server, tmp_path):
    pin = download.Pin(size=len(DATA), sha256=hashlib.sha256(DATA).hexdigest())
    opts, _ = options()
    record = download.fetch(server.url + "/data/test.jsonl", str(tmp_path / "d/test.jsonl"), pin=pin,
                            options=opts)
    assert (tmp_path / "d/test.jsonl").read_bytes() == DATA
    assert record == {"size": len(DATA), "sha256": pin.sha256}
    assert download.fetch(server.url + "/data/test.jsonl", str(tmp_path / "d/test.jsonl"), pin=pin,
                          options=opts) == record
    assert len(server.gets("/data/test.jsonl")) == 1


def test_callers_remedies_appear_in_the_messages(server, tmp_path):
    opts, _ = options(check="check --data_url", other_file="the task's data changed: report it")
    with pytest.raises(download.DownloadError, match="^HTTP 404 for .*/nothing: check --data_url$") as e:
        download.fetch(server.url + "/nothing", str(tmp_path / "x"), options=opts)
    assert e.value.status == 404
    with pytest.raises(download.DownloadError, match="sha256 .* differs from the expected 0{64}; removed "
                                                     "the download: the task's data changed: report it$"):
        download.fetch(server.url + "/data/test.jsonl", str(tmp_path / "y"), options=opts,
                       pin=download.Pin(sha256="0" * 64))
    assert not (tmp_path / "y").exists() and not (tmp_path / "y.part").exists()


def test_headers_are_sent_and_names_are_plain(server, tmp_path):
    opts, _ = options()
    with download.Folder(str(tmp_path), opts) as folder:
        folder.fetch(server.url + "/data/test.jsonl", "t.jsonl", headers={"X-Token": "abc"})
        with pytest.raises(ValueError, match="without directories"):
            folder.fetch(server.url + "/data/test.jsonl", "../t.jsonl")
    assert server.gets("/data/test.jsonl")[0]["x-token"] == "abc"


@pytest.mark.parametrize("bad", [dict(timeout=0), dict(timeout=float("nan")), dict(retries=-1),
                                 dict(retries=True), dict(timeout="3")])
def test_options_are_checked(bad):
    with pytest.raises(ValueError, match="timeout|retries"):
        download.Options(**bad)


def test_failed_first_download_leaves_no_folder_and_no_lock(server, tmp_path):
    """FAULTS: no trace of a download that never got a byte: the folder it made goes again;
    a folder that was there before stays, without the lock file."""
    opts, _ = options(retries=0)
    for made_here in (True, False):
        folder = tmp_path / ("new" if made_here else "old")
        if not made_here:
            folder.mkdir()
        with pytest.raises(download.DownloadError, match="404"):
            with download.Folder(str(folder), opts) as f:
                f.fetch(server.url + "/data/missing.jsonl", "missing.jsonl")
        if made_here:
            assert not folder.exists()
        else:
            assert list(folder.iterdir()) == []


def test_a_waiter_takes_the_fresh_lock_when_the_holder_removes_it(tmp_path):
    """The holder unlinks the lock file as it leaves; a process that was waiting on the old
    file must not go on holding a lock nobody else can see (two writers at once)."""
    import fcntl
    import os
    import threading
    waiting, done = threading.Event(), threading.Event()
    first = download.Folder(str(tmp_path / "m"), options()[0]).__enter__()
    second = download.Folder(str(tmp_path / "m"), download.Options(log=lambda _: waiting.set()))
    thread = threading.Thread(target=lambda: (second.__enter__(), done.set()))
    thread.start()
    assert waiting.wait(20)  # it is blocked on the lock file the first one holds
    first.__exit__()
    thread.join(20)
    assert done.is_set()
    lock = tmp_path / "m" / download.LOCK
    assert os.fstat(second._lock).st_ino == os.stat(lock).st_ino
    third = os.open(lock, os.O_RDWR)
    try:
        with pytest.raises(BlockingIOError):  # a third process would wait for the second
            fcntl.flock(third, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(third)
        second.__exit__()
    assert not lock.exists()
