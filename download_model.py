"""Download the released GPT-2 checkpoints into models/<name>/.

    python3 download_model.py 124M [355M ...] [--models_dir models] [--force]
                              [--base_url URL] [--retries 5] [--timeout 30]

The fetching itself (resume, retries, verification, atomic rename, the manifest and the lock)
is `src/download.py`; this script knows the released models: their names, their files, where
they are, and what they must look like (PINS).

argparse, not fire: several positional names, and an unknown flag or a bad value must be a
usage error (exit 2) without a traceback, which argparse does by itself.
"""
import argparse
import contextlib
import difflib
import os
import re
import shlex
import shutil
import signal
import sys
import time
from typing import Callable
from urllib.parse import urlsplit

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "src"))

import requests  # noqa: E402

from download import DownloadError, Folder, Options, Pin, note, progress_bar  # noqa: E402
from model_paths import OLD_NAMES, RELEASED as MODELS  # noqa: E402

DEFAULT_BASE_URL = "https://openaipublic.blob.core.windows.net/gpt-2/models"
DATA = "model.ckpt.data-00000-of-00001"
FILENAMES = ("checkpoint", "encoder.json", "hparams.json", DATA, "model.ckpt.index",
             "model.ckpt.meta", "vocab.bpe")
SMALL_FILE_CAP = 64 << 20  # bytes; the released small files are at most a few MB
EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_SIGINT, EXIT_SIGTERM = 0, 1, 2, 130, 143


def _pins() -> dict[str, dict[str, Pin]]:
    """Size and sha256 of the released files, as far as public sources give them.

    124M: sizes as checked against the server by rasbt/LLMs-from-scratch
    (ch05/01_main-chapter-code/tests.py); sha256 as listed by MontrealAI/AGI-Alpha-Agent-v0
    (scripts/download_openai_gpt2.py), whose `checkpoint` and `hparams.json` digests equal those
    of the files' published text, and whose vocabulary digests equal tiktoken's.
    355M: hobg0blin/ganterbury-tales committed models/355M (commit da18c90, Nov 2019): the
    checkpoint and hparams.json as files (sha256 computed here), the three model.ckpt files as
    Git LFS pointers, which record each file's sha256 and size; the sizes equal
    LLMs-from-scratch's.
    774M, 1558M: the vocabulary (every size ships the same two files) and the data file's
    size, 4 bytes per float32 parameter: n_vocab*n_embd + n_ctx*n_embd + n_layer*(12*n_embd**2
    + 13*n_embd) + 2*n_embd, which gives exactly the published sizes of 124M and 355M. No
    public source found gives their other files; those are bounded by SMALL_FILE_CAP.
    """
    vocab = {
        "encoder.json": Pin(1042301, "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"),
        "vocab.bpe": Pin(456318, "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"),
    }
    checkpoint = Pin(77, "dd1b025d2e155283f5e300ce95bf6d5b6bc0f7fe010db73daa6975eb896ab9cb")
    return {
        "124M": {**vocab, "checkpoint": checkpoint,
                 "hparams.json": Pin(90, "d9d56e4121c427164e0c55c6f03c08e1daf9002b9b672825112d19097b680318"),
                 DATA: Pin(497759232, "2060c885360cc0cf41d7a6dbc4d24b5127aae20260c8b5ae521b5a6578407118"),
                 "model.ckpt.index": Pin(5215, "71916f763f9746f9b2a06b12d91996cf1084ae008d0424543d39391c5f2dc687"),
                 "model.ckpt.meta": Pin(471155, "4668c448fa11531fd6700460487f73e82d3272960cea942252f8744bf225c77b")},
        "355M": {**vocab, "checkpoint": checkpoint,
                 "hparams.json": Pin(91, "310dfdb1f0c786b79d93459eaa470f3978d873bdc3e1f9fed1cad24d9dd0b1f6"),
                 DATA: Pin(1419292672, "22b4212602a087d1cdeec3509648f4d7b1f181eaa33ce0f3c688fbfb732d622f"),
                 "model.ckpt.index": Pin(10399, "4490e7b1f5ec0abfc1e111fcd27cdda7cb280c597ba0a885c364134e62ce43aa"),
                 "model.ckpt.meta": Pin(926519, "06e1a92057d2a4fbdc483bd1f61a26cc274f1c999b84c6d9e9c50aa8d5ead44a")},
        "774M": {**vocab, DATA: Pin(4 * 774_030_080)},
        "1558M": {**vocab, DATA: Pin(4 * 1_557_611_200)},
    }


PINS = _pins()  # tests replace this table to serve small made-up files


def pin_for(model: str, name: str, *, no_pins: bool = False) -> Pin:
    """What `name` of `model` must be: the pins, or with `no_pins` only a bound on the small
    files (sizes then come from the server and the sha256 is recorded as downloaded)."""
    pin = Pin() if no_pins else PINS.get(model, {}).get(name, Pin())
    if pin.size is None and name != DATA:
        pin = Pin(sha256=pin.sha256, max_size=SMALL_FILE_CAP)
    return pin


class UsageError(DownloadError):
    """A bad command line (exit 2)."""


class Terminated(BaseException):
    """SIGTERM, raised like KeyboardInterrupt so the partial file is closed and kept."""


def resolve_names(names: list[str], log: Callable[[str], None]) -> list[str]:
    """Checks the model names (before any I/O) and maps the old names to the new ones."""
    valid = ", ".join(MODELS)
    if not names:
        raise UsageError(f"no model name given; valid names: {valid}")
    resolved = []
    for name in names:
        if name in OLD_NAMES:
            log(f"note: {name} is the old name of {OLD_NAMES[name]}; downloading {OLD_NAMES[name]}")
            name = OLD_NAMES[name]
        if name not in MODELS:
            raise UsageError(f"unknown model name {name!r}; valid names: {valid} "
                             f"(117M and 345M are accepted as the old names of 124M and 355M)")
        if name not in resolved:
            resolved.append(name)
    return resolved


def download(model_names: list[str], *, models_dir: str = "models",
             base_url: str = DEFAULT_BASE_URL, force: bool = False, no_pins: bool = False,
             retries: int = 5, timeout: float = 30.0, session: requests.Session | None = None,
             sleep: Callable[[float], None] = time.sleep,
             progress: Callable[..., object] = progress_bar,
             log: Callable[[str], None] = note, rerun: str = "the same command") -> None:
    """Downloads and verifies every file of each model into `models_dir/<name>/`: the small
    files of every model first, so that a wrong mirror fails in seconds, then the data files.

    Raises UsageError for a bad model name (before any I/O) and DownloadError for a failure.
    """
    names = resolve_names(list(model_names), log)
    opts = Options(timeout=timeout, retries=retries, session=session, sleep=sleep,
                   progress=progress, log=log, rerun=rerun,
                   check="check the model name and --base_url (or GPT2_BASE_URL)",
                   other_file="the server has other files than the released ones: check "
                              "--base_url (or GPT2_BASE_URL), or accept a mirror's own files "
                              "with --no_pins",
                   unreachable="download from a mirror with --base_url URL (or GPT2_BASE_URL)",
                   elsewhere="choose another --models_dir")
    small = [name for name in FILENAMES if name != DATA]
    with contextlib.ExitStack() as stack:
        # Locks taken in one order, so that two runs naming the same models cannot deadlock.
        folders = {model: stack.enter_context(Folder(os.path.join(models_dir, model), opts))
                   for model in sorted(names, key=MODELS.index)}
        for files in (small, [DATA]):
            for model in names:
                for name in files:
                    folders[model].fetch(f"{base_url.rstrip('/')}/{model}/{name}", name,
                                         pin_for(model, name, no_pins=no_pins), force=force)


def rerun_command(args: argparse.Namespace) -> str:
    """The command that resumes this download, as it can be pasted into any shell: the
    interpreter that runs now (`python3` when that is the one on PATH), absolute paths, and
    the base URL even if it came from GPT2_BASE_URL."""
    python = shutil.which("python3")
    same = python and os.path.dirname(os.path.abspath(python)) == os.path.dirname(sys.executable)
    command = ["python3" if same else sys.executable, os.path.abspath(__file__),
               *args.model_names, "--models_dir", os.path.abspath(args.models_dir)]
    if args.base_url != DEFAULT_BASE_URL:
        command += ["--base_url", args.base_url]
    if args.no_pins:
        command.append("--no_pins")
    if args.retries != 5:
        command += ["--retries", str(args.retries)]
    if args.timeout != 30.0:
        command += ["--timeout", f"{args.timeout:g}"]
    return shlex.join(command)


def _parser() -> argparse.ArgumentParser:
    def count(value: str) -> int:
        if not value.isdigit():
            raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {value!r}")
        return int(value)

    def seconds(value: str) -> float:
        try:
            number = float(value)
        except ValueError:
            number = -1.0
        if not 0 < number < float("inf"):
            raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {value!r}")
        return number

    def url(value: str) -> str:
        if urlsplit(value).scheme not in ("http", "https") or not urlsplit(value).netloc:
            raise argparse.ArgumentTypeError(f"expected an http(s) URL, got {value!r}")
        return value

    p = _Parser(
        prog="download_model.py",
        description="Download released GPT-2 checkpoints, resumable and verified.",
        epilog="Exit codes: 0 done, 1 failed (run again to resume), 2 usage error, "
               "130 interrupted, 143 terminated.")
    p.add_argument("model_names", nargs="+", metavar="MODEL",
                   help=f"one or more of {', '.join(MODELS)} (117M and 345M are old names)")
    p.add_argument("--models_dir", default="models", help="where to put <MODEL>/ (default: models)")
    p.add_argument("--force", action="store_true",
                   help="download again even if verified files exist (each stays in place "
                        "until its replacement has been verified)")
    p.add_argument("--no_pins", action="store_true",
                   help="accept a mirror's own files (a re-saved or fine-tuned checkpoint): "
                        "sizes from the server, sha256 recorded, instead of the released "
                        "files' sizes and digests")
    p.add_argument("--base_url", type=url, default=os.environ.get("GPT2_BASE_URL") or DEFAULT_BASE_URL,
                   help="where the files are: <base_url>/<MODEL>/<file> (default: $GPT2_BASE_URL, "
                        f"else {DEFAULT_BASE_URL})")
    p.add_argument("--retries", type=count, default=5,
                   help="attempts without progress before giving up on a file (default: 5)")
    p.add_argument("--timeout", type=seconds, default=30.0,
                   help="seconds to wait to connect or for the next bytes; less than 1 KiB in "
                        "that time is a stall (default: 30)")
    return p


class _Parser(argparse.ArgumentParser):
    """argparse that answers a bad command line with one line, suggesting the closest flag."""

    def error(self, message: str):
        unknown = re.match(r"unrecognized arguments: (.*)", message)
        if unknown:
            flags = [o for action in self._actions for o in action.option_strings]
            words = []
            for arg in unknown.group(1).split():
                close = difflib.get_close_matches(arg.split("=")[0], flags, n=1, cutoff=0.6)
                words.append(f"{arg} (did you mean {close[0]}?)" if close else arg)
            message = f"unrecognized argument{'s' * (len(words) > 1)}: {', '.join(words)}"
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}; see --help\n")


def _on_sigterm(signum, frame):
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        names = resolve_names(args.model_names, note)
    except UsageError as e:
        parser.error(str(e))
    signal.signal(signal.SIGTERM, _on_sigterm)
    rerun = f"`{rerun_command(args)}`"
    try:
        download(names, models_dir=args.models_dir, base_url=args.base_url, force=args.force,
                 no_pins=args.no_pins, retries=args.retries, timeout=args.timeout, rerun=rerun)
    except DownloadError as e:
        print(f"download_model.py: error: {e}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print(f"\ninterrupted: partial files are kept; run {rerun} to resume", file=sys.stderr)
        return EXIT_SIGINT
    except Terminated:
        print(f"terminated: partial files are kept; run {rerun} to resume", file=sys.stderr)
        return EXIT_SIGTERM
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
