"""Download the released GPT-2 checkpoints into models/<name>/, or a GPT-2 from the Hub.

    python3 download_model.py 124M [355M ...] [--models_dir models] [--force] [--no_pins]
                              [--base_url URL] [--retries 5] [--timeout 30]
    python3 download_model.py --hub OWNER/NAME [--revision REV] [--name NAME]
    python3 download_model.py 124M --source hub

The fetching itself (resume, retries, verification, atomic rename, the manifest and the lock)
is `src/download.py`; what the released files must be is `src/released_files.py`; the Hub
source is `src/hub_download.py`. This script is the command line over them: names and flags,
the order of the files, exit codes, and remedies that can be pasted back into a shell.

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

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # --hub converts with TensorFlow: no chatter
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "src"))

import requests  # noqa: E402

import hub_download  # noqa: E402
import stdio  # noqa: E402
from download import DownloadError, Folder, Options, Pin, note, progress_bar  # noqa: E402
from model_paths import OLD_NAMES, RELEASED as MODELS  # noqa: E402
from released_files import DATA, DEFAULT_BASE_URL, FILENAMES, released_pins  # noqa: E402

SMALL_FILE_CAP = 64 << 20  # bytes; the released small files are at most a few MB
EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_SIGINT, EXIT_SIGTERM = 0, 1, 2, 130, 143
PINS = released_pins()  # tests replace this table to serve small made-up files


def pin_for(model: str, name: str, *, no_pins: bool = False) -> Pin:
    """What `name` of `model` must be: the pins, or with `no_pins` only a bound on the small
    files (sizes then come from the server and the sha256 is recorded as downloaded)."""
    pin = Pin() if no_pins else PINS.get(model, {}).get(name, Pin())
    if pin.size is None and name != DATA:
        pin = Pin(sha256=pin.sha256, max_size=SMALL_FILE_CAP)
    return pin


class UsageError(ValueError):
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
    flags = {"--hub": args.hub, "--name": args.name,
             "--revision": args.revision if args.revision != "main" else None,
             "--source": "hub" if args.source == "hub" else None,
             "--base_url": None if args.hub or args.source == "hub" or
             _base_url(args) == DEFAULT_BASE_URL else _base_url(args),
             "--retries": str(args.retries) if args.retries != 5 else None,
             "--timeout": f"{args.timeout:g}" if args.timeout != 30.0 else None}
    command += [part for flag, value in flags.items() if value for part in (flag, value)]
    return shlex.join(command + ["--no_pins"] * args.no_pins)


def _base_url(args: argparse.Namespace) -> str:
    return args.base_url or os.environ.get("GPT2_BASE_URL") or DEFAULT_BASE_URL


def _check(args: argparse.Namespace) -> None:
    """What argparse cannot see: flags that go together, names, the environment's URLs."""
    hub = args.hub is not None or args.source == "hub"
    if args.hub is not None and args.model_names:
        raise UsageError("give model names or --hub REPO, not both")
    if args.name is not None and args.hub is None:
        raise UsageError("--name goes with --hub (the released models keep their names)")
    if args.revision != "main" and not hub:
        raise UsageError("--revision goes with --hub or --source hub")
    if hub and args.no_pins:
        raise UsageError("--no_pins is for mirrors of the released files; files from the Hub "
                         "are checked against the digests it publishes")
    if hub and args.base_url:
        raise UsageError("--base_url is for mirrors of OpenAI's storage; for a mirror of the "
                         "Hub, set HF_ENDPOINT")
    name, value = ("HF_ENDPOINT", _endpoint()) if hub else ("GPT2_BASE_URL", _base_url(args))
    if urlsplit(value).scheme not in ("http", "https") or not urlsplit(value).netloc:
        raise UsageError(f"{name} must be an http(s) URL, got {value!r}")
    if args.hub is not None:
        hub_download.check_repo(args.hub)
        hub_download.check_name(args.name or args.hub.split("/")[-1])
    else:
        args.model_names = resolve_names(args.model_names, note)


def _endpoint() -> str:
    return os.environ.get("HF_ENDPOINT") or hub_download.DEFAULT_ENDPOINT


def _run(args: argparse.Namespace, rerun: str) -> None:
    if args.hub is None and args.source != "hub":
        download(args.model_names, models_dir=args.models_dir, base_url=_base_url(args),
                 force=args.force, no_pins=args.no_pins, retries=args.retries,
                 timeout=args.timeout, rerun=rerun)
        return
    opts = Options(timeout=args.timeout, retries=args.retries, rerun=rerun,
                   elsewhere="choose another --models_dir")
    repos = ([(args.hub, args.name)] if args.hub is not None else
             [(hub_download.RELEASED_ON_HUB[name], name) for name in args.model_names])
    for repo, name in repos:
        hub_download.download_hub(repo, revision=args.revision, name=name,
                                  models_dir=args.models_dir, force=args.force, opts=opts,
                                  endpoint=_endpoint(), token=os.environ.get("HF_TOKEN") or None)


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
        description="Download released GPT-2 checkpoints, or a GPT-2 from the Hugging Face "
                    "Hub, resumable and verified.",
        epilog="Environment: GPT2_BASE_URL (a mirror of OpenAI's storage), HF_ENDPOINT (a "
               "mirror of the Hub), HF_TOKEN (for private or gated Hub repositories), "
               "HTTP(S)_PROXY, NO_PROXY. Exit codes: 0 done, 1 failed (run again to resume), "
               "2 usage error, 130 interrupted, 143 terminated.")
    p.add_argument("model_names", nargs="*", metavar="MODEL",
                   help=f"one or more of {', '.join(MODELS)} (117M and 345M are old names)")
    p.add_argument("--models_dir", default="models", help="where to put <MODEL>/ (default: models)")
    p.add_argument("--force", action="store_true",
                   help="download again even if verified files exist (each stays in place "
                        "until its replacement has been verified)")
    p.add_argument("--no_pins", action="store_true",
                   help="accept a mirror's own files (a re-saved or fine-tuned checkpoint): "
                        "sizes from the server, sha256 recorded, instead of the released "
                        "files' sizes and digests")
    p.add_argument("--base_url", type=url,
                   help="where the files are: <base_url>/<MODEL>/<file> (default: $GPT2_BASE_URL, "
                        f"else {DEFAULT_BASE_URL})")
    p.add_argument("--hub", metavar="REPO",
                   help="fetch a GPT-2 from the Hugging Face Hub (e.g. openai-community/gpt2, "
                        "distilbert/distilgpt2) and convert it into <models_dir>/<NAME>/")
    p.add_argument("--revision", default="main",
                   help="with --hub or --source hub: a branch, tag or commit (default: main)")
    p.add_argument("--name", help="with --hub: the model folder's name (default: the "
                                  "repository's name, e.g. gpt2)")
    p.add_argument("--source", choices=("openai", "hub"), default="openai",
                   help="where the released models come from: OpenAI's storage (default) or "
                        "their copies on the Hub (124M: openai-community/gpt2, 355M: "
                        "gpt2-medium, 774M: gpt2-large, 1558M: gpt2-xl), converted")
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

    def print_help(self, file=None):
        """--help into a full or closed stdout: one line and exit 1, not a silent 0."""
        try:
            stream = file or sys.stdout
            stream.write(self.format_help())
            stream.flush()
        except BrokenPipeError:  # `--help | head`: the reader has what it wanted
            stdio.silence(sys.stdout)
            self.exit(EXIT_OK)
        except (OSError, stdio.StreamError) as e:
            stdio.silence(sys.stdout)
            reason = e if isinstance(e, stdio.StreamError) else (
                f"cannot write to standard output: {e.strerror or type(e).__name__}")
            self.exit(EXIT_FAILURE, f"{self.prog}: error: {reason}\n")


def _on_sigterm(signum, frame):
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    # A full or closed stderr drops the log lines instead of failing the download; a
    # closed descriptor is reopened on /dev/null, so no file written here takes its number.
    stdio.install()
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        _check(args)
    except ValueError as e:  # UsageError included
        parser.error(str(e))
    signal.signal(signal.SIGTERM, _on_sigterm)
    rerun = f"`{rerun_command(args)}`"
    try:
        _run(args, rerun)
    except ValueError as e:  # a destination in the way of a conversion
        parser.error(str(e))
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
