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
import os
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
EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_SIGINT, EXIT_SIGTERM = 0, 1, 2, 130, 143


def _pins() -> dict[str, dict[str, Pin]]:
    # Every size ships the same vocabulary (digests as published by tiktoken).
    vocab = {
        "encoder.json": Pin(1042301, "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"),
        "vocab.bpe": Pin(456318, "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"),
    }
    n_params = {"124M": 124_439_808, "355M": 354_823_168, "774M": 774_030_080, "1558M": 1_557_611_200}
    pins = {name: {**vocab, DATA: Pin(4 * n)} for name, n in n_params.items()}  # float32 weights
    pins["124M"].update({"checkpoint": Pin(77), "hparams.json": Pin(90),
                         "model.ckpt.index": Pin(5215), "model.ckpt.meta": Pin(471155)})
    return pins


PINS = _pins()  # tests replace this table to serve small made-up files


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
             base_url: str = DEFAULT_BASE_URL, force: bool = False, retries: int = 5,
             timeout: float = 30.0, session: requests.Session | None = None,
             sleep: Callable[[float], None] = time.sleep,
             progress: Callable[..., object] = progress_bar,
             log: Callable[[str], None] = note) -> None:
    """Downloads and verifies every file of each model into `models_dir/<name>/`.

    Raises UsageError for a bad model name (before any I/O) and DownloadError for a failure.
    """
    names = resolve_names(list(model_names), log)
    opts = Options(timeout=timeout, retries=retries, session=session, sleep=sleep,
                   progress=progress, log=log)
    for model in names:
        with Folder(os.path.join(models_dir, model), opts) as folder:
            for name in FILENAMES:
                url = f"{base_url.rstrip('/')}/{model}/{name}"
                folder.fetch(url, name, PINS.get(model, {}).get(name, Pin()), force=force)


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

    p = argparse.ArgumentParser(
        prog="download_model.py",
        description="Download released GPT-2 checkpoints, resumable and verified.",
        epilog="Exit codes: 0 done, 1 failed (run again to resume), 2 usage error, "
               "130 interrupted, 143 terminated.")
    p.add_argument("model_names", nargs="+", metavar="MODEL",
                   help=f"one or more of {', '.join(MODELS)} (117M and 345M are old names)")
    p.add_argument("--models_dir", default="models", help="where to put <MODEL>/ (default: models)")
    p.add_argument("--force", action="store_true", help="download again even if verified files exist")
    p.add_argument("--base_url", type=url, default=os.environ.get("GPT2_BASE_URL") or DEFAULT_BASE_URL,
                   help="where the files are: <base_url>/<MODEL>/<file> (default: $GPT2_BASE_URL, "
                        f"else {DEFAULT_BASE_URL})")
    p.add_argument("--retries", type=count, default=5,
                   help="attempts without progress before giving up on a file (default: 5)")
    p.add_argument("--timeout", type=seconds, default=30.0,
                   help="seconds to wait to connect or for the next bytes (default: 30)")
    return p


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
    try:
        download(names, models_dir=args.models_dir, base_url=args.base_url, force=args.force,
                 retries=args.retries, timeout=args.timeout)
    except DownloadError as e:
        print(f"download_model.py: error: {e}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("\ninterrupted: partial files are kept; run the same command again to resume",
              file=sys.stderr)
        return EXIT_SIGINT
    except Terminated:
        print("terminated: partial files are kept; run the same command again to resume",
              file=sys.stderr)
        return EXIT_SIGTERM
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
