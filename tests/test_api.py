"""The Python API (src/gpt2.py): load once, then generate or stream with the scripts'
options, checks and samples; quiet; installable with `pip install -e .`.

Issue 14: "There is no Python API: generating from a notebook means calling
cli.Options.parse with eleven arguments, and TensorFlow's start-up noise appears."
"""
import os
import shutil
import subprocess
import sys

import pytest

import generate_unconditional_samples as gus
import gpt2
import interactive_conditional_samples as ics
from conftest import CLI_TINY, parse_samples

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def model(cli_models):
    return gpt2.load("tiny", models_dir=cli_models)


def test_generate_gives_the_scripts_samples_for_the_same_seed(model, run_script):
    samples = model.generate("Hello there", nsamples=2, batch_size=2, length=6, seed=5,
                             top_k=40)
    script = run_script(ics, "--prompt", "Hello there", "--nsamples", 2, "--batch_size", 2,
                        "--length", 6, "--seed", 5, "--top_k", 40)
    assert [(n, s.text) for n, s in enumerate(samples, 1)] == parse_samples(script.stdout)
    assert all(len(s.tokens) == 6 and s.seed == 5 and not s.ended for s in samples)
    assert str(samples[0]) == samples[0].text


def test_unconditional_samples_match_the_unconditional_script(model, run_script):
    samples = model.generate(nsamples=2, length=5, seed=8)
    script = run_script(gus, "--nsamples", 2, "--length", 5, "--seed", 8)
    assert [s.text for s in samples] == [text for _, text in parse_samples(script.stdout)]
    assert samples[0].seed == 8 and samples[1].seed != 8  # the second batch's own seed


def test_stream_yields_the_sample_generate_gives(model):
    pieces = list(model.stream("Once upon a time", length=8, seed=3))
    assert len(pieces) > 1
    assert "".join(pieces) == model.generate("Once upon a time", length=8, seed=3)[0].text


def test_score_equals_an_independent_gpt2(model, cli_weights):
    """Each token's log-probability given <|endoftext|> and the tokens before it, against
    the NumPy reference; a text longer than the context goes through rolling windows."""
    import numpy as np
    import reference_gpt2
    text = "The cat sat on the mat."
    scored = model.score(text)
    tokens = model.encoder.encode(text)
    logits = reference_gpt2.logits(cli_weights, [50256] + tokens, CLI_TINY["n_head"])
    expected = [float(row[t] - np.log(np.exp(row - row.max()).sum()) - row.max())
                for row, t in zip(logits, tokens)]
    assert scored.tokens == tokens
    np.testing.assert_allclose(scored.logprobs, expected, rtol=1e-4, atol=1e-4)
    assert scored.logprob == pytest.approx(sum(expected), rel=1e-4)
    assert scored.perplexity == pytest.approx(np.exp(-np.mean(expected)), rel=1e-4)
    long = model.score(" word" * 150)
    assert len(long.logprobs) == 150 and all(x < 0 for x in long.logprobs)
    with pytest.raises(ValueError, match="text must be a non-empty str"):
        model.score("")


def test_a_samples_seed_draws_it_again(model):
    first = model.generate("Hi", length=5)[0]  # no seed given: one is drawn and recorded
    assert model.generate("Hi", length=5, seed=first.seed)[0] == first


@pytest.mark.parametrize("kwargs, message", [
    (dict(length=0), "--length must be at least 1, got 0"),
    (dict(length=64), "--length 64 does not fit the model's context of 64 tokens"),
    (dict(top_p=0), "top_p must be in (0, 1] (1 disables it), got 0.0"),
    (dict(temperature=-1), "temperature must be >= 0 (0 is greedy), got -1.0"),
    (dict(nsamples=3, batch_size=2), "--nsamples 3 is not a multiple of --batch_size 2"),
    (dict(seed="abc"), "--seed must be a whole number, got 'abc'"),
    (dict(prompt="   "), "prompt must be a non-empty str"),
    (dict(prompt="x" + " x" * 39, length=40), "prompt of 40 tokens + length 40 = 80 "
                                              "exceeds the model's context of 64 tokens"),
])
def test_bad_options_are_value_errors_that_name_them(model, kwargs, message):
    kwargs = {"prompt": "Hello", **kwargs}
    with pytest.raises(ValueError) as e:
        model.generate(**kwargs)
    assert message in str(e.value)


def test_load_errors_name_the_problem(cli_models):
    with pytest.raises(ValueError, match="absent not found"):
        gpt2.load("absent", models_dir=cli_models)
    with pytest.raises(ValueError, match="--dtype must be one of float32, bfloat16"):
        gpt2.load("tiny", models_dir=cli_models, dtype="float16")


def test_one_generation_at_a_time(model):
    """A stream holds the model's cache: a second generation meanwhile would corrupt it."""
    stream = model.stream("Hello", length=5, seed=1)
    next(stream)
    with pytest.raises(RuntimeError, match="a stream of this model is still open"):
        model.generate("Hello", length=3)
    stream.close()
    assert len(model.generate("Hello", length=3)) == 1


QUIET = """
import sys
import gpt2
assert "tensorflow" not in sys.modules  # importing the API is instant
model = gpt2.load("tiny", models_dir=sys.argv[1])
print(model.generate("Hello", length=3, seed=1)[0].text != "")
"""


def test_no_tensorflow_chatter_on_import_load_and_generate(cli_models, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_")}
    env["PYTHONPATH"] = os.path.join(ROOT, "src")
    done = subprocess.run([sys.executable, "-c", QUIET, cli_models], capture_output=True,
                          text=True, cwd=tmp_path, env=env, timeout=300)
    assert (done.returncode, done.stdout, done.stderr) == (0, "True\n", "")


def test_pip_install_editable_makes_the_api_importable_anywhere(tmp_path):
    """pyproject.toml: `pip install -e .` (here offline, without its dependencies, into a
    new venv that sees this one's packages) puts src/ on the path: `import gpt2` works from
    any directory, and the scripts still run by path."""
    project = tmp_path / "project"
    project.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE", "requirements.txt"):
        shutil.copy(os.path.join(ROOT, name), project / name)
    shutil.copytree(os.path.join(ROOT, "src"), project / "src",
                    ignore=shutil.ignore_patterns("__pycache__"))
    venv = tmp_path / "venv"
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()"
                           "['purelib'])"], capture_output=True, text=True, check=True).stdout
    with open(os.path.join(site.strip(), "outer.pth"), "w") as f:
        f.write(next(p for p in sys.path if p.endswith("site-packages")) + "\n")
    install = subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-deps",
                              "--no-build-isolation", "--no-index", "-e", str(project)],
                             capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr
    elsewhere = subprocess.run([python, "-c", "import gpt2, encoder; print(gpt2.__file__)"],
                               capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert elsewhere.stdout == f"{project / 'src' / 'gpt2.py'}\n", elsewhere.stderr
    assert not list(project.glob("**/*.egg-info"))  # nothing left in the checkout
