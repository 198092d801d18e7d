"""Every shell command and Python example in README.md and DEVELOPERS.md either runs, or is
listed in NOT_RUN below with the reason it cannot run here.

The blocks are found when the tests are collected, so a block added to the docs later is run
too; a command that can neither run nor is listed fails, and so does an entry of NOT_RUN that
no longer matches a command. Commands run offline in a sandbox laid out as a checkout after
README's install step: a temp folder with links to the repository's files; `.venv`, a real
virtual environment holding what `pip install -e .` leaves there (this environment's packages
and `src/` on the path); `models/<name>/` holding a tiny random checkpoint in the released
layout with the real vocabulary (the same tiny model under each of the four names). The PATH is
the user's, without any virtual environment on it, so a bare `python3` is the system's (which
lacks the requirements); each block starts with `. .venv/bin/activate`, as the README tells a
user to do in each new terminal. Each bash block runs as one bash script with
`set -eo pipefail`; its standard input is a one-line prompt, so an interactive command gets a
prompt and then end of input. A Python block runs as a file with the activated `python3`.
No block may print a Python traceback.
"""
import concurrent.futures
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass

import pytest

from test_docker import ROOT, check_invocations, instructions, shell_tokens

DOCS = ("README.md", "DEVELOPERS.md")
SHELL_LANGUAGES = {"bash", "sh", "shell", "console", "zsh"}
PYTHON_LANGUAGES = {"python", "py"}
# Seconds per block, a guard against hangs: a block of six TensorFlow start-ups takes over a
# minute on a busy 2-core machine.
TIMEOUT = 240
PROMPT = "Hello, my name is\n"
TINY_HPARAMS = dict(n_vocab=50257, n_ctx=128, n_embd=16, n_head=2, n_layer=2)  # --length 100 fits
MODEL_NAMES = ("124M", "355M", "774M", "1558M")
OFFLINE = "http://127.0.0.1:9"  # the discard port: nothing listens, connections fail at once

INTERNET = "needs the internet"
RECURSES = "runs the test suite, this test included"
DOCKER = "needs a Docker engine (tests/test_docker.py lints the Dockerfiles instead)"
DOCKER_GPU = "needs a Docker engine and an NVIDIA GPU"
BENCH = "a benchmark: minutes of full load on real-size weights (requirements-bench.txt)"
TEST_SET = "needs the task's public test file (the sandbox is offline and has none)"
TWO_HOSTS = ("needs two hosts, host1 and host2, that reach each other "
             "(tests/test_train_distributed.py runs two workers on 127.0.0.1)")
TF_CONFIG = ("""TF_CONFIG='{{"cluster": {{"worker": ["host1:2222", "host2:2222"]}}, "task": """
             """{{"type": "worker", "index": {index}}}}}' """)
LITERT_QUALITY = ("a benchmark: builds a corpus from this machine's documentation and trains "
                  "on it for most of an hour (bench/litert_quality.py)")
TRAIN_ON_TWO_HOSTS = "python3 train.py --dataset docs.bin --model_name 124M --steps 1000"

# (document, command) -> why it is not run. The command is compared token by token, so
# spacing, quoting and trailing comments do not matter; anything else does.
NOT_RUN = {
    ("README.md", "python3 -m venv .venv && . .venv/bin/activate && pip install -e . && "
                  "python3 download_model.py 124M && "
                  "python3 src/interactive_conditional_samples.py --model_name 124M"):
        f"{INTERNET}: installs from PyPI (the sandbox's .venv is what it leaves) and downloads "
        f"the real 124M weights",
    ("README.md", "./test.sh"): RECURSES,
    ("README.md", "python3 bench/bench_sampling.py"): BENCH,
    ("README.md", "python3 bench/bench_encoder.py"): BENCH,
    ("README.md", "python3 bench/bench_score.py"): BENCH,
    ("DEVELOPERS.md", "python3 -m venv .venv"):
        "would replace the sandbox's .venv (./test.sh runs the same command)",
    ("DEVELOPERS.md", "pip install -e ."): f"{INTERNET}: installs from PyPI",
    ("DEVELOPERS.md", "./test.sh"): RECURSES,
    ("DEVELOPERS.md", "./test.sh -k encoder"): RECURSES,
    ("DEVELOPERS.md", "python3 download_model.py 124M"): f"{INTERNET}: downloads the real weights",
    ("DEVELOPERS.md", "python3 download_model.py 124M 355M --models_dir /data/gpt2"):
        f"{INTERNET}: downloads the real weights",
    ("DEVELOPERS.md", "GPT2_BASE_URL=http://mirror.local/gpt-2/models python3 download_model.py 1558M"):
        f"{INTERNET}: downloads from a mirror that exists only in the example",
    ("DEVELOPERS.md", "python3 download_model.py 124M --base_url http://mirror.local/finetuned --no_pins"):
        f"{INTERNET}: downloads from a mirror that exists only in the example",
    ("DEVELOPERS.md", "python3 download_model.py --hub openai-community/gpt2"):
        f"{INTERNET}: downloads from the Hugging Face Hub",
    ("DEVELOPERS.md", "python3 download_model.py --hub distilbert/distilgpt2 --revision main --name distilgpt2"):
        f"{INTERNET}: downloads from the Hugging Face Hub",
    ("DEVELOPERS.md", "python3 download_model.py 1558M --source hub"):
        f"{INTERNET}: downloads from the Hugging Face Hub",
    ("DEVELOPERS.md", "HF_TOKEN=hf_xxx python3 download_model.py --hub my-org/private-gpt2 --name mine"):
        f"{INTERNET}: downloads a private repository that exists only in the example",
    # The "## Evaluating" section.
    ("DEVELOPERS.md", "python3 evaluate.py lambada --download --model_name 124M"):
        f"{INTERNET}: downloads OpenAI's LAMBADA file",
    ("DEVELOPERS.md", "python3 evaluate.py lambada --data lambada_test.jsonl --model_name 124M "
                      "--output lambada.json"): TEST_SET,
    ("DEVELOPERS.md", "python3 evaluate.py wikitext2 --data wikitext-2-raw/wiki.test.raw "
                      "--window_rule stride --stride 512"): TEST_SET,
    ("DEVELOPERS.md", "python3 evaluate.py text --data notes.txt --models_dir checkpoint "
                      "--model_name run1"):
        "needs a fine-tuning run directory made by train.py, and the user's notes.txt",
    # The "## Speed and benchmarks" section.
    ("DEVELOPERS.md", "pip install -r requirements-bench.txt"):
        f"{INTERNET}: installs psutil (and the test requirements) from PyPI",
    ("DEVELOPERS.md", "python3 bench/bench_sampling.py --runs 5"): BENCH,
    ("DEVELOPERS.md", "python3 bench/bench_sampling.py --runs 3 --only b1_256 b8_256"): BENCH,
    ("DEVELOPERS.md", "python3 bench/bench_sampling.py --only b1_256 --load_rss 1558M"): BENCH,
    ("DEVELOPERS.md", "python3 bench/bench_dtype.py"): BENCH,
    ("DEVELOPERS.md", "python3 bench/bench_encoder.py"): BENCH,
    # The "## Fine-tuning" sections.
    ("README.md", "python3 bench/bench_train.py"): BENCH,
    ("README.md", "python3 bench/bench_train.py --runs 5 --memory"): BENCH,
    ("README.md", "python3 bench/bench_train.py --runs 0 --memory 774M 1558M"): BENCH,
    ("DEVELOPERS.md", "python3 bench/bench_train.py --runs 5"): BENCH,
    ("DEVELOPERS.md", "python3 bench/bench_train.py --runs 0 --memory 1558M"): BENCH,
    ("DEVELOPERS.md", TF_CONFIG.format(index=0) + TRAIN_ON_TWO_HOSTS): TWO_HOSTS,
    ("DEVELOPERS.md", TF_CONFIG.format(index=1) + TRAIN_ON_TWO_HOSTS): TWO_HOSTS,
    # The "## Docker" section.
    ("DEVELOPERS.md", "docker build -f Dockerfile.cpu -t gpt-2:cpu ."): DOCKER,
    ("DEVELOPERS.md", 'docker build -f Dockerfile.cpu --build-arg MODELS="124M 355M" -t gpt-2:cpu .'):
        f"{DOCKER}; {INTERNET}",
    ("DEVELOPERS.md", "docker build -f Dockerfile.cpu --build-arg MODELS= -t gpt-2:cpu-nomodels ."): DOCKER,
    ("DEVELOPERS.md", "docker build -f Dockerfile.gpu -t gpt-2:gpu ."): DOCKER,
    ("DEVELOPERS.md", "docker run --rm -it gpt-2:cpu"): DOCKER,
    ("DEVELOPERS.md", "docker run --rm -it gpt-2:cpu python3 src/generate_unconditional_samples.py "
                      "--model_name 124M --nsamples 2 --length 40 --seed 1"): DOCKER,
    ("DEVELOPERS.md", "docker run --rm -it --gpus all gpt-2:gpu"): DOCKER_GPU,
    ("DEVELOPERS.md", "docker run --rm -it --gpus all gpt-2:gpu python3 "
                      "src/interactive_conditional_samples.py --model_name 124M --top_k 40"): DOCKER_GPU,
    ("DEVELOPERS.md", "docker run --rm -v gpt2-models:/gpt-2/models gpt-2:cpu-nomodels "
                      "python3 download_model.py 355M 774M"): f"{DOCKER}; {INTERNET}",
    ("DEVELOPERS.md", "docker run --rm -it --gpus all -v gpt2-models:/gpt-2/models gpt-2:gpu "
                      "python3 src/interactive_conditional_samples.py --model_name 774M"): DOCKER_GPU,
    ("DEVELOPERS.md", 'docker run --rm -it -v "$PWD/models:/gpt-2/models:ro" gpt-2:cpu-nomodels '
                      "python3 src/interactive_conditional_samples.py --model_name 124M"): DOCKER,
    ("DEVELOPERS.md", 'docker run --rm --user "$(id -u):$(id -g)" -v "$PWD/models:/gpt-2/models" '
                      "gpt-2:cpu-nomodels python3 download_model.py 124M"): f"{DOCKER}; {INTERNET}",
    ("DEVELOPERS.md", "docker run --rm gpt-2:cpu python3 src/generate_unconditional_samples.py --help"):
        DOCKER,
    # The LiteRT sections.
    ("DEVELOPERS.md", "python3 bench/bench_litert.py --runs 3"): BENCH,
    ("DEVELOPERS.md", "python3 bench/bench_litert.py --export 124M 355M 774M --dtypes int8 float32"): BENCH,
    ("DEVELOPERS.md", "python3 bench/bench_litert.py --export 1558M --dtypes int8 --sample_rss 1558M"):
        f"{BENCH}; writes 1558M's 6.2 GB of random weights and converts them",
    ("README.md", "python3 bench/bench_litert.py --runs 3"): BENCH,
    ("README.md", "python3 bench/litert_quality.py corpus"): LITERT_QUALITY,
    ("README.md", "python3 bench/litert_quality.py init"): LITERT_QUALITY,
    ("README.md", "python3 bench/litert_quality.py subset"): LITERT_QUALITY,
    ("README.md", "python3 train.py --dataset bench/cache/quality/train.jsonl --models_dir "
                  "bench/cache/quality/models --model_name small --checkpoint_dir "
                  "bench/cache/quality/checkpoint --run_name small --restore_from fresh "
                  "--batch_size 8 --window 128 --learning_rate 0.001 --warmup_steps 30 "
                  "--grad_clip 1.0 --steps 600 --save_every 100 --sample_every 0 --seed 1"):
        LITERT_QUALITY,
    ("README.md", "python3 evaluate.py text --data bench/cache/quality/heldout-100k.txt "
                  "--models_dir bench/cache/quality/checkpoint --model_name small --backend "
                  "litert --dtype int8"): LITERT_QUALITY,
    ("README.md", "python3 bench/litert_quality.py agreement --model_dir "
                  "bench/cache/quality/checkpoint/small"): LITERT_QUALITY,
    # The "## Converting checkpoints" section.
    ("DEVELOPERS.md", ".venv/bin/python bench/bench_convert.py --size 1558M"):
        f"{BENCH}; writes 19 GB of random weights and conversions",
}


# Python blocks not run: (document, the block's first line) -> why.
PYTHON_NOT_RUN: dict[tuple[str, str], str] = {
    ("README.md", "from transformers import AutoTokenizer, GPT2LMHeadModel"):
        "loads hf/gpt2-124M, which the bash block before it makes (each block has its own "
        "sandbox); tests/test_convert.py loads converted models in transformers",
}


def python_not_run(block) -> str | None:
    first = block.text.strip().splitlines()[0] if block.text.strip() else ""
    return PYTHON_NOT_RUN.get((block.doc, first.strip()))


def tokens_of(command: str) -> list[str]:
    try:
        return shell_tokens(command)
    except ValueError:  # unbalanced quotes, say a line of a here-document: plain words then
        return command.split()


def canonical(command: str) -> str:
    return " ".join(tokens_of(command))


NOT_RUN_CANONICAL = {(doc, canonical(command)): reason for (doc, command), reason in NOT_RUN.items()}


@dataclass(frozen=True)
class Block:
    doc: str
    line: int  # of the opening fence, 1-based
    language: str
    text: str

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}"

    def commands(self) -> list[str]:
        """Logical command lines: continuation lines joined, blank and comment lines dropped."""
        out, current = [], ""
        for line in self.text.splitlines():
            if line.rstrip().endswith("\\"):
                current += line.rstrip()[:-1] + " "
                continue
            current += line
            if current.strip() and not current.strip().startswith("#"):
                out.append(current.strip())
            current = ""
        if current.strip():
            out.append(current.strip())
        return out

    def skipped(self) -> dict[str, str]:
        """command -> reason, for the commands of this block that NOT_RUN lists."""
        return {c: NOT_RUN_CANONICAL[(self.doc, canonical(c))] for c in self.commands()
                if (self.doc, canonical(c)) in NOT_RUN_CANONICAL}

    def script(self) -> str:
        """The block as run: every command that NOT_RUN does not list, in order."""
        skipped = self.skipped()
        return "\n".join(c for c in self.commands() if c not in skipped)


FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([^`\s]*)")


def fenced_blocks(doc: str) -> list[Block]:
    with open(os.path.join(ROOT, doc), encoding="utf-8") as f:
        lines = f.read().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence, language, start, body = opening.group(1), opening.group(2).lower(), i, []
        i += 1
        while i < len(lines) and not (lines[i].strip().startswith(fence[0] * len(fence))
                                      and not lines[i].strip().strip(fence[0])):
            body.append(lines[i])
            i += 1
        assert i < len(lines), f"{doc}:{start + 1}: a code block that never closes"
        blocks.append(Block(doc, start + 1, language, "\n".join(body)))
        i += 1
    return blocks


ALL_BLOCKS = [block for doc in DOCS for block in fenced_blocks(doc)]
SHELL_BLOCKS = [block for block in ALL_BLOCKS if block.language in SHELL_LANGUAGES]
PYTHON_BLOCKS = [block for block in ALL_BLOCKS if block.language in PYTHON_LANGUAGES]


# --- the sandbox --------------------------------------------------------------------------------

NOT_LINKED = {".git", ".venv", "models", "bench", ".pytest_cache", ".hypothesis", "__pycache__"}


@pytest.fixture(scope="session")
def tiny_released_model(tmp_path_factory) -> str:
    """A tiny random GPT-2 in the released layout: the seven files, the real vocabulary."""
    import gpt2_fixtures as fx
    path = str(tmp_path_factory.mktemp("docs-model") / "124M")
    fx.write_tf1_checkpoint(path, TINY_HPARAMS, fx.random_weights(TINY_HPARAMS, seed=7))
    fx.copy_vocabulary(path)
    return path


@pytest.fixture(scope="session")
def installed_venv(tmp_path_factory) -> str:
    """A real virtual environment holding what `pip install -e .` leaves there: this
    environment's packages (the requirements) and src/ on the path (setuptools' editable
    install of our src layout writes exactly that path into a .pth file; test_api.py checks
    it with pip itself)."""
    return make_venv(str(tmp_path_factory.mktemp("docs-venv") / "venv"))


def make_venv(path: str) -> str:
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", path], check=True, timeout=120)
    site = subprocess.run([os.path.join(path, "bin", "python"), "-c",
                           "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    ours = sysconfig.get_paths()["purelib"]
    with open(os.path.join(site, "gpt2_requirements.pth"), "w") as f:
        f.write(f"import site; site.addsitedir({ours!r})\n")
    with open(os.path.join(site, "__editable__.gpt_2_tf2.pth"), "w") as f:
        f.write(os.path.join(ROOT, "src") + "\n")
    return path


def user_path() -> str:
    """PATH without any virtual environment's bin folder: what a user's shell has before
    `. .venv/bin/activate`."""
    keep = [d for d in os.environ.get("PATH", "").split(os.pathsep)
            if d and not os.path.exists(os.path.join(d, "..", "pyvenv.cfg"))]
    return os.pathsep.join(keep)


def make_sandbox(root: str, model: str, venv: str) -> dict:
    """Fills `root` as a checkout would look after README's install step; returns the
    environment."""
    for name in os.listdir(ROOT):
        if name not in NOT_LINKED:
            os.symlink(os.path.join(ROOT, name), os.path.join(root, name))
    os.symlink(venv, os.path.join(root, ".venv"))
    os.makedirs(os.path.join(root, "bench"))  # a real folder, so results stay in the sandbox
    bench = os.path.join(ROOT, "bench")
    for name in os.listdir(bench) if os.path.isdir(bench) else []:
        if name not in ("results", "__pycache__"):
            os.symlink(os.path.join(bench, name), os.path.join(root, "bench", name))
    shutil.copytree(model, os.path.join(root, "models", "124M"))
    for name in MODEL_NAMES[1:]:
        os.symlink("124M", os.path.join(root, "models", name))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TF_CPP", "PYTHON", "FIRE_", "PAGER", "VIRTUAL_ENV"))}
    env.update({
        "PATH": user_path(), "LANG": "C.UTF-8",
        "GPT2_BASE_URL": f"{OFFLINE}/gpt-2/models", "HTTP_PROXY": OFFLINE, "HTTPS_PROXY": OFFLINE,
        "http_proxy": OFFLINE, "https_proxy": OFFLINE, "NO_PROXY": "", "no_proxy": "",
        "PIP_NO_INDEX": "1",
    })
    return env


ACTIVATE = ". .venv/bin/activate"  # README: in each new terminal, before anything else


@dataclass
class Outcome:
    returncode: int | None  # None: killed at the timeout
    output: str
    seconds: float


def run_script(script: str, model: str, venv: str, *, python: str | None = None,
               activate: bool = True) -> Outcome:
    """Runs a bash script (or, with `python`, that Python code as a file) in a sandbox."""
    with tempfile.TemporaryDirectory(prefix="docs-") as root:
        env = make_sandbox(root, model, venv)
        if python is not None:
            with open(os.path.join(root, "docs_example.py"), "w", encoding="utf-8") as f:
                f.write(python)
            script = "python3 docs_example.py"
        if activate:
            script = f"{ACTIVATE}\n{script}"
        start = time.monotonic()
        process = subprocess.Popen(["bash", "-e", "-o", "pipefail", "-c", script], cwd=root, env=env,
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        try:
            output, _ = process.communicate(PROMPT.encode(), timeout=TIMEOUT)
            code = process.returncode
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the block's own process group
            output, _ = process.communicate()
            code = None
        return Outcome(code, output.decode("utf-8", "replace"), time.monotonic() - start)


@pytest.fixture(scope="session")
def outcomes(request, tiny_released_model, installed_venv) -> dict:
    """Runs every selected block that has something to run, two at a time."""
    selected = [item.callspec.params["block"] for item in request.session.items
                if getattr(item, "originalname", None) in ("test_block_runs",
                                                           "test_python_block_runs")]
    todo = {}
    for block in selected:
        if block.language in PYTHON_LANGUAGES and not python_not_run(block):
            todo[block.id] = dict(script="", python=block.text)
        elif block.language in SHELL_LANGUAGES and block.script().strip():
            todo[block.id] = dict(script=block.script())
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        futures = {key: pool.submit(run_script, model=tiny_released_model, venv=installed_venv,
                                    **job)
                   for key, job in todo.items()}
        return {key: future.result() for key, future in futures.items()}


# --- the tests ------------------------------------------------------------------------------------

@pytest.mark.parametrize("block", SHELL_BLOCKS, ids=[b.id for b in SHELL_BLOCKS])
def test_block_runs(block, outcomes):
    script = block.script()
    if not script.strip():
        reasons = sorted({r for reason in block.skipped().values() for r in reason.split("; ")})
        pytest.skip(f"not run: {'; '.join(reasons)}")
    outcome = outcomes[block.id]
    tail = outcome.output[-3000:]
    assert outcome.returncode is not None, \
        f"{block.id} ran past {TIMEOUT} s.\n--- script ---\n{script}\n--- output ---\n{tail}"
    assert outcome.returncode == 0, (
        f"{block.id} exited {outcome.returncode}. Fix the command, or list it in NOT_RUN in "
        f"tests/test_docs.py with the reason it cannot run offline on a tiny model.\n"
        f"--- script ---\n{script}\n--- output ---\n{tail}")
    assert "Traceback (most recent call last)" not in outcome.output, tail


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=[b.id for b in PYTHON_BLOCKS])
def test_python_block_runs(block, outcomes):
    """A Python example runs as a file with the activated environment's python3, from the
    checkout's top folder, as a user who followed README's install would run it."""
    if python_not_run(block):
        pytest.skip(f"not run: {python_not_run(block)}")
    outcome = outcomes[block.id]
    tail = outcome.output[-3000:]
    assert outcome.returncode == 0 and "Traceback" not in outcome.output, (
        f"{block.id} exited {outcome.returncode}. Fix the example, or list it in "
        f"PYTHON_NOT_RUN in tests/test_docs.py with the reason.\n--- code ---\n{block.text}"
        f"\n--- output ---\n{tail}")


def test_docs_have_shell_blocks():
    assert {b.doc for b in SHELL_BLOCKS} == set(DOCS)


def test_every_code_block_says_its_language():
    """An untagged block would escape this test; `text` marks one that is not to be run."""
    untagged = [b.id for b in ALL_BLOCKS if not b.language]
    assert untagged == [], "tag these blocks (bash to have them run, text if they are not commands)"


def test_not_run_list_matches_the_docs():
    """Every entry names a command that is in that document now: when a command changes, its
    entry must change with it (or go, so the command runs)."""
    present = {(b.doc, canonical(c)) for b in SHELL_BLOCKS for c in b.commands()}
    stale = [key for key in NOT_RUN_CANONICAL if key not in present]
    assert stale == []
    firsts = {(b.doc, b.text.strip().splitlines()[0].strip()) for b in PYTHON_BLOCKS
              if b.text.strip()}
    assert [key for key in PYTHON_NOT_RUN if key not in firsts] == []


@pytest.mark.parametrize("block", SHELL_BLOCKS, ids=[b.id for b in SHELL_BLOCKS])
def test_block_is_valid_bash(block):
    result = subprocess.run(["bash", "-n"], input=block.text, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def docker_problems(tokens: list[str], where: str) -> list[str]:
    """A `docker build` must name a Dockerfile that exists and only build args it declares."""
    if tokens[:2] != ["docker", "build"]:
        return []
    options = dict(zip(tokens, tokens[1:]))
    dockerfile = options.get("-f") or options.get("--file") or "Dockerfile"
    if not os.path.isfile(os.path.join(ROOT, dockerfile)):
        return [f"{where}: no {dockerfile} in the repository"]
    declared = {args.split("=")[0] for keyword, args in instructions(dockerfile) if keyword == "ARG"}
    used = {value.split("=")[0] for option, value in zip(tokens, tokens[1:]) if option == "--build-arg"}
    return [f"{where}: {dockerfile} declares no ARG {name}" for name in sorted(used - declared)]


@pytest.mark.parametrize("block", SHELL_BLOCKS, ids=[b.id for b in SHELL_BLOCKS])
def test_commands_name_real_scripts_and_flags(block):
    """Also for the commands that are not run: scripts exist, their flags exist, a docker build
    names a real Dockerfile and its build args."""
    problems = []
    for command in block.commands():
        tokens = tokens_of(command)
        problems += check_invocations(tokens, block.id) + docker_problems(tokens, block.id)
    assert problems == []


def test_sandbox_is_offline_with_a_tiny_released_model(tiny_released_model, installed_venv):
    """The machinery under test_block_runs, on a made-up block: before activation `python3`
    is the system's, which lacks the requirements (the old sandbox put this environment's
    interpreter first on PATH, which hid README's `ModuleNotFoundError: fire`); after it,
    the sandbox's .venv has them and src/; the four model names hold the released layout,
    the prompt arrives on stdin, and a download fails at once instead of reaching the
    internet."""
    script = "\n".join([
        "python3 -c 'import sys; print(sys.prefix)'",
        "! python3 -c 'import fire' 2>/dev/null",
        ACTIVATE,
        'python3 -c "import sys, fire, gpt2, importlib.util as u; u.find_spec(\'tensorflow\').name; print(sys.prefix)"',
        "python3 -c \"import json; print(json.load(open('models/1558M/hparams.json'))['n_vocab'])\"",
        "ls models/124M",
        "head -c 17 -",
        "! python3 download_model.py 355M --retries 0 --timeout 5",
        "test ! -e bench/results",
    ])
    outcome = run_script(script, tiny_released_model, installed_venv, activate=False)
    assert outcome.returncode == 0, outcome.output
    system, *lines = outcome.output.splitlines()
    assert os.path.realpath(system) != os.path.realpath(installed_venv)
    assert os.path.realpath(lines[0]) == os.path.realpath(installed_venv)
    assert lines[1] == "50257"
    assert lines[2:9] == sorted(["checkpoint", "encoder.json", "hparams.json",
                                 "model.ckpt.data-00000-of-00001", "model.ckpt.index",
                                 "model.ckpt.meta", "vocab.bpe"])
    assert "Hello, my name is" in outcome.output
    assert "127.0.0.1" in outcome.output and outcome.seconds < 30


def test_readme_activates_before_anything_else():
    """README's install step leaves the environment active, and says to activate it in each
    new terminal: what every block here assumes."""
    first = SHELL_BLOCKS[0]
    assert first.doc == "README.md" and ". .venv/bin/activate" in first.text
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        assert "in each new terminal, run `. .venv/bin/activate` first" in " ".join(
            f.read().split())


def test_readme_names_the_faster_settings_next_to_the_defaults():
    """Issue 14: `--dtype bfloat16` and the other faster settings were only listed as flags."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        quick = f.read().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    for setting in ("--top_k 40", "--length", "--dtype bfloat16", "n_ctx // 2"):
        assert setting in quick


def test_a_failing_block_fails(tiny_released_model, installed_venv):
    outcome = run_script("true\nfalse\necho unreachable", tiny_released_model, installed_venv)
    assert outcome.returncode != 0 and "unreachable" not in outcome.output
