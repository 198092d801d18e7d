"""A GPT-2 from the Hugging Face Hub, fetched and converted into a model directory.

    python3 download_model.py --hub openai-community/gpt2 [--revision REV] [--name NAME]
    python3 download_model.py 124M --source hub     # the released sizes' copies on the Hub

The files come from `<endpoint>/<repo>/resolve/<revision>/<file>` (the endpoint is
`HF_ENDPOINT`, by default https://huggingface.co), small ones first: config.json, vocab.json,
merges.txt, then model.safetensors, or model.safetensors.index.json and the shards it names.
Each file is first asked for with HEAD, redirects not followed: the Hub answers with the
commit the revision points to (X-Repo-Commit) and, for its large files, which it stores by
content, their sha256 and size (X-Linked-Etag, X-Linked-Size). Every file is then fetched at
that commit, so all of them belong to one version even if the branch moves meanwhile, through
`download.Folder`: resumed, retried, verified against that sha256, renamed when whole. The
large files are served by another host (a CDN) the Hub redirects to; `HF_TOKEN` goes to the
Hub as `Authorization: Bearer ...` and never to that host (requests drops it when a redirect
leaves the host), and is never printed.

The files are kept under `<models_dir>/.hub/<owner>--<name>/<commit>/` until
`hub_format.hub_to_released` has written `<models_dir>/<NAME>/`, then removed; the model
directory records where it came from in `.hub.json`, so that a second run does nothing.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from urllib.parse import quote, urljoin, urlsplit

from download import DownloadError, Folder, Options, Pin, head

DEFAULT_ENDPOINT = "https://huggingface.co"
RELEASED_ON_HUB = {"124M": "openai-community/gpt2", "355M": "openai-community/gpt2-medium",
                   "774M": "openai-community/gpt2-large", "1558M": "openai-community/gpt2-xl"}
CONFIG, WEIGHTS, INDEX = "config.json", "model.safetensors", "model.safetensors.index.json"
VOCAB = ("vocab.json", "merges.txt")
TOKENIZER = "tokenizer.json"  # the vocabulary again, for repositories without the two files
MARKER = ".hub.json"
SMALL_FILE_CAP = 64 << 20  # bytes; config, vocabulary and index files are far smaller
_REPO = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def check_repo(repo: str) -> str:
    """`owner/name` (or a bare `name`), as the Hub spells repository ids; ValueError if not."""
    if not isinstance(repo, str) or not _REPO.fullmatch(repo) or ".." in repo or len(repo) > 96:
        raise ValueError(f"--hub expects a repository id such as openai-community/gpt2, got "
                         f"{repo!r}")
    return repo


def check_name(name: str) -> str:
    """A model directory's name: one path component, not hidden."""
    if not name or name.startswith(".") or os.path.basename(name) != name or "\\" in name:
        raise ValueError(f"--name must be a folder name without '/' that does not start with "
                         f"'.', got {name!r}")
    return name


def hub_options(opts: Options) -> Options:
    """`opts` with the Hub's remedies in its error messages."""
    return Options(timeout=opts.timeout, retries=opts.retries, session=opts.session,
                   sleep=opts.sleep, progress=opts.progress, log=opts.log, rerun=opts.rerun,
                   elsewhere=opts.elsewhere,
                   check="check the repository name and --revision (a private or gated "
                         "repository needs HF_TOKEN)",
                   other_file="the Hub's file differs from the digest it published: run "
                              "again, or report it",
                   unreachable="set HF_ENDPOINT to a mirror of the Hub")


class Hub:
    """One repository at one revision: probes and fetches its files into a staging folder."""

    def __init__(self, repo: str, revision: str, *, endpoint: str, token: str | None,
                 opts: Options):
        self.repo, self.revision, self.opts = repo, revision, hub_options(opts)
        self.endpoint = endpoint.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def url(self, name: str, revision: str) -> str:
        return f"{self.endpoint}/{self.repo}/resolve/{quote(revision, safe='')}/{quote(name)}"

    def probe(self, name: str, revision: str) -> tuple[Pin, str | None] | None:
        """(what the file must be, the commit) from the Hub's answer to HEAD; None if the
        repository has no such file."""
        url = self.url(name, revision)
        for _ in range(5):  # the Hub's own redirects: a renamed repository
            r = head(url, {**self.headers, "Accept-Encoding": "identity"}, self.opts)
            location = urljoin(url, r.headers.get("Location", ""))
            if not (r.is_redirect and urlsplit(location).netloc == urlsplit(url).netloc):
                break
            url = location
        if r.status_code == 404 and r.headers.get("X-Error-Code", "EntryNotFound") == "EntryNotFound":
            return None
        if r.status_code in (401, 403):
            raise DownloadError(f"HTTP {r.status_code} for {url}: the repository is private or "
                                f"gated: set HF_TOKEN to a token that may read it"
                                + (" (the one set was refused)" if self.headers else ""),
                                status=r.status_code)
        if r.status_code not in (200, 301, 302, 303, 307, 308):
            raise DownloadError(f"HTTP {r.status_code} for {url}: {self.opts.check}",
                                status=r.status_code)
        etag = (r.headers.get("X-Linked-Etag") or r.headers.get("ETag") or "").removeprefix("W/")
        sha256 = etag.strip('"') if _SHA256.fullmatch(etag.strip('"')) else None
        size = r.headers.get("X-Linked-Size") or (r.headers.get("Content-Length")
                                                  if r.status_code == 200 else None)
        size = int(size) if size and size.isdigit() else None
        cap = None if size is not None or name.endswith(".safetensors") else SMALL_FILE_CAP
        return Pin(size=size, sha256=sha256, max_size=cap), r.headers.get("X-Repo-Commit")

    def fetch_all(self, models_dir: str, *, force: bool) -> str:
        """Every file the conversion needs, verified, in the staging folder it returns."""
        found = self.probe(CONFIG, self.revision)
        if found is None:
            raise DownloadError(f"{self.url(CONFIG, self.revision)} not found: {self.repo} at "
                                f"{self.revision} has no {CONFIG}; {self.opts.check}", status=404)
        commit = found[1] or self.revision
        stage = os.path.join(models_dir, ".hub", self.repo.replace("/", "--"),
                             re.sub(r"[^\w.-]", "_", commit))
        with Folder(stage, self.opts) as folder:
            def get(name: str, pin: Pin | None = None) -> bool:
                found = (pin, commit) if pin else self.probe(name, commit)
                if found is not None:
                    folder.fetch(self.url(name, commit), name, found[0], force=force,
                                 headers=self.headers)
                return found is not None

            get(CONFIG, found[0])
            if not all([get(name) for name in VOCAB]) and not get(TOKENIZER):
                raise DownloadError(f"{self.repo} has neither {' and '.join(VOCAB)} nor "
                                    f"{TOKENIZER}: no GPT-2 vocabulary to convert")
            if not get(WEIGHTS):
                if not get(INDEX):
                    raise DownloadError(f"{self.repo} at {commit} has no {WEIGHTS} (nor {INDEX}): "
                                        f"only safetensors weights are read; {self.opts.check}")
                import hub_io
                try:
                    shards = sorted(set(hub_io.read_index(os.path.join(stage, INDEX)).values()))
                except ValueError as e:
                    raise DownloadError(str(e)) from None
                for shard in shards:
                    if not get(shard):
                        raise DownloadError(f"{self.repo}: {INDEX} names {shard}, which the "
                                            f"repository does not have")
        return stage


def download_hub(repo: str, *, revision: str = "main", name: str | None = None,
                 models_dir: str = "models", force: bool = False, opts: Options,
                 endpoint: str = DEFAULT_ENDPOINT, token: str | None = None) -> str:
    """Fetches `repo` at `revision` and converts it into `<models_dir>/<name>` (by default
    the repository's name); returns that directory. DownloadError when it cannot;
    ValueError for a destination that is in the way (without `force`)."""
    import hub_format
    import hub_io
    dst = os.path.join(models_dir, check_name(name or check_repo(repo).split("/")[-1]))
    source = {"repo": repo, "revision": revision}
    marker = os.path.join(dst, MARKER)
    if not force and _read_marker(marker, source):
        opts.log(f"{dst}: already converted from {repo} at {revision}; --force fetches it again")
        return dst
    hub_io.check_destination(dst, force=force, src_dir=os.path.join(models_dir, ".hub"))
    stage = Hub(repo, revision, endpoint=endpoint, token=token, opts=opts).fetch_all(
        models_dir, force=force)
    opts.log(f"converting {repo} into {dst}")
    try:
        hub_format.hub_to_released(stage, dst, force=force)
    except ValueError as e:
        raise DownloadError(f"cannot convert {repo}: {e}") from None
    with open(marker, "w", encoding="utf-8") as f:
        json.dump({**source, "commit": os.path.basename(stage)}, f)
    shutil.rmtree(stage, ignore_errors=True)
    for empty in (os.path.dirname(stage), os.path.dirname(os.path.dirname(stage))):
        with contextlib.suppress(OSError):
            os.rmdir(empty)  # .hub/<owner>--<name>, then .hub, when nothing else is in them
    opts.log(f"{dst}: converted from {repo} at {revision}")
    return dst


def _read_marker(path: str, source: dict) -> bool:
    try:
        with open(path, encoding="utf-8") as f:
            found = json.load(f)
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(found, dict) and all(found.get(k) == v for k, v in source.items())
