"""Where a model's files live, how they are read, and what to do when one cannot be.

Shared by every loader so that each remedy names the right model and folder and is a
command that works when pasted: the interpreter that is running (plain `python3` when that
is the one on PATH), absolute, shell-quoted paths, `--models_dir` only where it is not the
default, `--force` only where a plain re-run would not do, and no `download_model.py` for a
directory it cannot fetch (a fine-tuned run, a converted model). TensorFlow-free, so the
encoder can use it too.
"""
from __future__ import annotations

import errno
import json
import os
import shlex
import shutil
import sys

RELEASED = ("124M", "355M", "774M", "1558M")
OLD_NAMES = {"117M": "124M", "345M": "355M"}  # the first names of the two smaller models
# What download_model.py fetches into models/<name>/, and what the scripts need of it.
DOWNLOADED = ("checkpoint", "encoder.json", "hparams.json", "model.ckpt.data-00000-of-00001",
              "model.ckpt.index", "model.ckpt.meta", "vocab.bpe")
NEEDED = ("hparams.json", "encoder.json", "vocab.bpe", "model.ckpt.index",
          "model.ckpt.data-00000-of-00001")
VOCABULARY = ("encoder.json", "vocab.bpe")  # the same files in every GPT-2 model
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def python_command() -> str:
    """`python3` if that name runs this very interpreter, else its absolute path: a venv's
    python run by path must not become a system `python3` without the packages."""
    on_path = shutil.which("python3")
    if on_path and os.path.dirname(os.path.abspath(on_path)) == os.path.dirname(
            os.path.abspath(sys.executable)) and os.path.realpath(on_path) == os.path.realpath(
            sys.executable):
        return "python3"
    return shlex.quote(os.path.abspath(sys.executable))


def released_name(model_dir: str) -> str | None:
    """The released model that download_model.py can fetch into `model_dir`, if any."""
    name = os.path.basename(os.path.normpath(model_dir))
    return name if name in RELEASED else None


def download_command(model_dir: str, *, force: bool = False) -> str:
    """`<python> <repo>/download_model.py <name> [--models_dir DIR] [--force]`, to paste in
    the current directory; `model_dir` should be a released name's directory."""
    models_dir, name = os.path.split(os.path.abspath(model_dir))
    script = os.path.join(ROOT, "download_model.py")
    words = [python_command(), shlex.quote(script if os.path.isfile(script) else
                                           "download_model.py"), shlex.quote(name)]
    if models_dir != os.path.abspath("models"):  # download_model.py's default
        words += ["--models_dir", shlex.quote(models_dir)]
    return " ".join(words + (["--force"] if force else []))


def sample_command(model_dir: str) -> str:
    """`<python> <repo>/src/interactive_conditional_samples.py [--models_dir DIR] --model_name
    NAME`, to paste in the current directory, for a model directory written here."""
    models_dir, name = os.path.split(os.path.abspath(model_dir))
    script = os.path.join(ROOT, "src", "interactive_conditional_samples.py")
    words = [python_command(), shlex.quote(script)]
    if models_dir != os.path.abspath("models"):  # the sampling scripts' default
        words += ["--models_dir", shlex.quote(models_dir)]
    return " ".join(words + ["--model_name", shlex.quote(name)])


def _contents(model_dir: str, name: str) -> str:
    needed = ", ".join(NEEDED)
    tip = (f"; every GPT-2 size has the same {' and '.join(VOCABULARY)}: copy {name} from a "
           f"downloaded model" if name in VOCABULARY else "")
    return (f"{model_dir} is not a released model ({', '.join(RELEASED)}), so "
            f"download_model.py cannot fetch it: a model directory must hold {needed} (or, "
            f"for a training run, the model-<step> files its checkpoint file names){tip}")


def missing_message(path: str) -> str:
    """`path` (a file inside a model directory) does not exist: what to run or provide."""
    model_dir, name = os.path.split(path)
    if released_name(model_dir) is None:
        return f"{path} is missing: {_contents(model_dir, name)}"
    command = download_command(model_dir)
    if not any(os.path.exists(os.path.join(model_dir, f)) for f in DOWNLOADED):
        return (f"{path} is missing: nothing has been downloaded into {model_dir} yet: "
                f"run `{command}`")
    return f"{path} is missing: run `{command}` (it fetches only the missing files)"


def damaged_remedy(path: str) -> str:
    """What to do about `path`, a file of a model directory that exists but is damaged."""
    model_dir, name = os.path.split(path)
    if released_name(model_dir) is None:
        return (f"restore it from where the model came from ({_contents(model_dir, name)})")
    return (f"run `{download_command(model_dir)}` to replace it (it downloads again every "
            f"file that fails verification; add --force to download all seven again)")


def unreadable_message(path: str, error: OSError) -> str:
    """`path` exists but cannot be opened: the OS's reason, and no advice to download a
    file that is there (another copy would be just as unreadable)."""
    reason = error.strerror or type(error).__name__
    if error.errno in (errno.EACCES, errno.EPERM):
        where = path if os.access(os.path.dirname(path) or ".", os.X_OK) else \
            os.path.dirname(path)
        return (f"{path} cannot be read ({reason}): give this user read access to {where} "
                f"(as {_owner(where)}: `chmod a+rX {shlex.quote(os.path.abspath(where))}`)")
    if error.errno == errno.EISDIR or os.path.isdir(path):
        return (f"{path} cannot be read (Is a directory): a file belongs there; move the "
                f"directory away")
    return f"{path} cannot be read ({reason})"


def _owner(path: str) -> str:
    try:
        import pwd
        return f"its owner, {pwd.getpwuid(os.stat(path).st_uid).pw_name}"
    except (ImportError, KeyError, OSError):
        return "its owner"


def check_readable(path: str) -> None:
    """A ValueError that names `path` if it is missing or cannot be opened for reading
    (permissions, a directory in its place), before a library with vaguer errors reads it."""
    try:
        with open(path, "rb"):
            pass
    except FileNotFoundError:
        raise ValueError(missing_message(path)) from None
    except OSError as e:
        raise ValueError(unreadable_message(path, e)) from None


def read_bytes(path: str, *, limit: int) -> bytes:
    """The bytes of a model file, or a ValueError that names it and says what to do."""
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except FileNotFoundError:
        raise ValueError(missing_message(path)) from None
    except OSError as e:
        raise ValueError(unreadable_message(path, e)) from None
    if len(data) > limit:
        raise ValueError(f"{path} is larger than {limit:,} bytes, far more than a "
                         f"{os.path.basename(path)} holds: {damaged_remedy(path)}")
    return data


def read_text(path: str, *, limit: int) -> str:
    """A model file as UTF-8 text (whatever the locale); errors as in `read_bytes`."""
    data = read_bytes(path, limit=limit)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start}): "
                         f"{damaged_remedy(path)}") from None


def read_json(path: str, *, limit: int) -> object:
    """A JSON model file; every way it can fail (unreadable, not UTF-8, not JSON, nested
    too deeply, a number too long to convert) is a ValueError that names the file."""
    text = read_text(path, limit=limit)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        problem = (f"is not valid JSON ({e.msg}, line {e.lineno} column {e.colno}), perhaps "
                   f"an error page saved by a failed download")
    except RecursionError:
        problem = "nests arrays or objects too deeply to be read"
    except ValueError as e:  # Python's limit on the digits of an integer
        problem = f"holds a number too long to read ({str(e).split(':')[0]})"
    raise ValueError(f"{path} {problem}: {damaged_remedy(path)}")


def model_dir_for(model_name: str, models_dir: str = "models") -> str:
    """`models_dir/model_name` (an old name finds the folder of its new name), or a
    ValueError that says how to get it."""
    path = os.path.join(models_dir, model_name)
    if not os.path.isdir(path) and model_name in OLD_NAMES:
        path = os.path.join(models_dir, OLD_NAMES[model_name])
    try:
        os.stat(path)
    except FileNotFoundError:
        raise ValueError(missing_dir_message(path)) from None
    except OSError as e:
        raise ValueError(unreadable_message(path, e)) from None
    if not os.path.isdir(path):
        raise ValueError(f"{path} is not a directory: --model_name names a folder of "
                         f"{models_dir} that holds {', '.join(NEEDED)}")
    return path


def missing_dir_message(path: str) -> str:
    """A model directory that does not exist: the download command, or what to give."""
    if released_name(path) is not None:
        return f"{path} not found: run `{download_command(path)}`"
    models_dir = os.path.dirname(path) or "."
    example = download_command(os.path.join(models_dir, RELEASED[0]))
    return (f"{path} not found: give --model_name one of {', '.join(RELEASED)} (fetched "
            f"with `{example}`, say) or a folder of {models_dir} that holds "
            f"{', '.join(NEEDED)}")
