"""Where a model's files live, and the command that fetches them again.

Shared by every loader so that each remedy names the right model and folder; TensorFlow-free,
so the encoder can use it too.
"""
from __future__ import annotations

import os

RELEASED = ("124M", "355M", "774M", "1558M")
OLD_NAMES = {"117M": "124M", "345M": "355M"}  # the first names of the two smaller models


def download_command(model_dir: str, *, force: bool = False) -> str:
    """`python3 download_model.py <name> [--models_dir DIR] [--force]` for `model_dir`."""
    models_dir, name = os.path.split(os.path.normpath(model_dir))
    flags = "" if os.path.normpath(models_dir or ".") == "models" else f" --models_dir {models_dir}"
    return f"python3 download_model.py {name}{flags}" + (" --force" if force else "")


def model_dir_for(model_name: str, models_dir: str = "models") -> str:
    """`models_dir/model_name` (an old name finds the folder of its new name), or a
    ValueError that says how to get it."""
    path = os.path.join(models_dir, model_name)
    if not os.path.isdir(path) and model_name in OLD_NAMES:
        path = os.path.join(models_dir, OLD_NAMES[model_name])
    if os.path.isdir(path):
        return path
    if os.path.basename(path) in RELEASED:
        raise ValueError(f"{path} not found: run `{download_command(path)}`")
    raise ValueError(f"{path} not found: give --model_name one of {', '.join(RELEASED)} "
                     f"(fetched with `python3 download_model.py NAME`) or a folder in "
                     f"{models_dir}")
