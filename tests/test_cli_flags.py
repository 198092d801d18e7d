"""The command line of every script built on cli.fire_main: Fire's syntax parsed strictly,
unknown flags named with the closest real one, and help that lists only flags that work,
printed without a pager (tests in a real terminal). No TensorFlow is needed here.

Issue 14 ("--help: Fire lists short flags that are then rejected as ambiguous; at a
terminal the help opens in a pager, and FIRE_PAGER=cat has no effect; an unknown or
misspelled flag gives `Could not consume arg ... Usage: ... -`").
"""
import os
import re
import subprocess
import sys

import pexpect
import pytest

import flags

pytestmark = pytest.mark.usefixtures("no_tracebacks")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def example(model_name='124M', seed=None, length=None, *, prompt: list[str] | None = None,
            output: str | None = None, stream: bool | None = None, stop_at_endoftext=False,
            top_k=0, top_p=1):
    """Does nothing.

    Args:
        model_name: A text flag.
        seed: A number.
        length: A number: a line that looks: like an arg.
        prompt: Repeatable text.
        output: Text.
        stream: A tri-state switch.
        stop_at_endoftext: A switch.
        top_k: k.
        top_p: p.
    Returns:
        The exit status: 0.
    """


def parse(*argv):
    return flags.parse(example, list(argv))


def test_fire_syntax_is_kept():
    assert parse("--seed", "3", "--length=5", "--model-name", "355M") == (
        [], {"seed": 3, "length": 5, "model_name": "355M"})
    assert parse("355M", "7") == (["355M", 7], {})  # by position, as in the original
    assert parse("--stop_at_endoftext", "--nostream") == (
        [], {"stop_at_endoftext": True, "stream": False})
    assert parse("--no-stop-at-endoftext", "--stream=false", "--top_p", "0.9") == (
        [], {"stop_at_endoftext": False, "stream": False, "top_p": 0.9})
    assert parse("--stop_at_endoftext", "False")[1] == {"stop_at_endoftext": False}


def test_values_are_values_even_when_they_start_with_a_dash():
    """Fire took `--prompt -1x` for a switch followed by a flag."""
    assert parse("--prompt", "-x marks", "--prompt", "-h", "--seed", "-5") == (
        [], {"prompt": ["-x marks", "-h"], "seed": -5})


def test_text_flags_keep_their_text_and_repeat():
    """Fire typed `--prompt 1_000` as the number 1000 and `--prompt True` as a bool."""
    assert parse("--prompt", "1_000", "--prompt", "True", "--output", "[1]") == (
        [], {"prompt": ["1_000", "True"], "output": "[1]"})
    assert parse("--model_name", "1e3")[1] == {"model_name": "1e3"}


@pytest.mark.parametrize("argv, message", [
    (["--lenght", "3"], "unknown flag --lenght: did you mean --length?"),
    (["--top-kk", "3"], "unknown flag --top-kk: did you mean --top_k?"),
    (["-s", "3"], "unknown flag -s (there are no one-letter flags): did you mean --seed, "
                  "--stream or --stop_at_endoftext?"),
    (["-t"], "unknown flag -t (there are no one-letter flags): did you mean --top_k or "
             "--top_p?"),
    (["--xyzzy"], "unknown flag --xyzzy (--help lists every flag)"),
    (["--length"], "--length needs a value (write --length=VALUE for a value that starts "
                   "with --)"),
    (["--prompt", "--seed", "1"], "--prompt needs a value (write --prompt=VALUE for a "
                                  "value that starts with --)"),
    (["--noseed"], "unknown flag --noseed: did you mean --seed?"),
    (["--nostream=1"], "--nostream takes no value: give --nostream alone, or --stream=1"),
    (["a", "1", "2", "3"], "unexpected argument '3': options are given as --flag VALUE "
                           "(--help lists them)"),
    (["124M", "--model_name", "355M"], "model_name is given twice: as the argument '124M' "
                                       "and as --model_name"),
])
def test_bad_command_lines_name_the_flag(argv, message):
    with pytest.raises(flags.ParseError) as e:
        parse(*argv)
    assert str(e.value) == message


def needs(src, dst=None, *, force=False):
    """Args:
        src: Required.
    """


def test_a_parameter_without_a_default_is_required():
    """Fire said `The function received no value for the required argument`; the bare call
    was a TypeError traceback through cli.fire_main."""
    with pytest.raises(flags.ParseError, match=r"^--src is required \(or SRC as argument 1\)$"):
        flags.parse(needs, ["--force"])
    assert flags.parse(needs, ["a"]) == (["a"], {})
    assert "--src=SRC   (required)" in flags.help_text(needs, "x")


def test_help_wins_and_a_value_named_h_is_a_value():
    for argv in (["--help"], ["-h"], ["--lenght", "3", "--help"], ["--seed", "1", "-h"]):
        with pytest.raises(flags.Help):
            parse(*argv)
    with pytest.raises(flags.Help):  # --help is never taken as a value without "="
        parse("--prompt", "--help")
    assert parse("--prompt=--help")[1] == {"prompt": ["--help"]}


def test_help_text_lists_every_parameter_once_with_its_description():
    text = flags.help_text(example, "example.py", width=80)
    listed = re.findall(r"^  (--\w+)", text, re.M)
    assert listed == ["--model_name", "--seed", "--length", "--prompt", "--output", "--stream",
                      "--stop_at_endoftext", "--top_k", "--top_p"]
    assert "A number: a line that looks: like an arg." in " ".join(text.split())
    assert "--stream / --nostream" in text and "(repeatable)" in text
    assert text.rstrip().endswith("Exit status: 0.")


# --- every script built on fire_main, in a terminal ----------------------------------------------

def fire_scripts() -> list[str]:
    """Every script of the repository (src/ and the top level) that hands its command line
    to cli.fire_main, so a new script is checked too."""
    found = []
    for folder in (ROOT, os.path.join(ROOT, "src")):
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            if name.endswith(".py") and name != "cli.py":
                with open(path, encoding="utf-8") as f:
                    if "fire_main(" in f.read():
                        found.append(os.path.relpath(path, ROOT))
    return found


SCRIPTS = fire_scripts()


def in_terminal(script, *args, **env):
    """(output, exit status) of the script in a pseudo-terminal; PAGER names a 'pager' that
    would announce itself, as Fire ran `less` at a terminal."""
    child = pexpect.spawn(sys.executable, [script, *args], cwd=ROOT, encoding="utf-8",
                          timeout=60, dimensions=(40, 100),
                          env={**os.environ, "PAGER": "echo PAGED; cat", **env})
    child.expect(pexpect.EOF)
    child.close()
    return child.before.replace("\r\n", "\n"), child.exitstatus


def test_the_scripts_are_found():
    assert {"src/interactive_conditional_samples.py",
            "src/generate_unconditional_samples.py"} <= set(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_at_a_terminal_prints_without_a_pager_and_lists_only_working_flags(script):
    """Every flag the help lists is accepted: given all of them and then a made-up one,
    the script complains about the made-up one only."""
    text, status = in_terminal(script, "--help")
    assert status == 0 and text.startswith("Usage: ") and "PAGED" not in text
    assert re.findall(r"(?<![\w-])-[a-zA-Z]\b", text) == ["-h"]
    listed = re.findall(r"^  (--\w+)(?:=\w+| / (--\w+))?", text, re.M)
    given = [flag for name, negated in listed for flag in (f"{name}=1", negated) if flag]
    assert len(given) >= 3
    out, status = in_terminal(script, *given, "--zz_made_up")
    assert (status, out) == (2, f"{os.path.basename(script)}: error: unknown flag "
                                f"--zz_made_up (--help lists every flag)\n")


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_misspelled_flag_at_a_terminal_is_one_line_with_the_closest_flag(script):
    text, _ = in_terminal(script, "--help")
    first = re.findall(r"^  --(\w+)=", text, re.M)[0]
    typo = first[:-2] + first[-1] + first[-2]  # two letters swapped
    out, status = in_terminal(script, f"--{typo}", "1")
    assert status == 2
    assert out == (f"{os.path.basename(script)}: error: unknown flag --{typo}: did you mean "
                   f"--{first}?\n")


def test_fire_pager_is_used_when_asked_and_cat_prints():
    script = SCRIPTS[0]
    paged, status = in_terminal(script, "--help", FIRE_PAGER="echo ASKED; cat")
    assert status == 0 and paged.startswith("ASKED\nUsage: ")
    plain, status = in_terminal(script, "--help", FIRE_PAGER="cat")
    assert status == 0 and plain.startswith("Usage: ")


@pytest.mark.parametrize("redirect, reason", [(">/dev/full", "No space left on device"),
                                              (">&-", "it is closed")])
def test_help_into_a_full_or_closed_stdout_is_one_line_exit_1(redirect, reason):
    """Issue 13: Fire's help into a full disk was a traceback."""
    done = subprocess.run(["bash", "-c", f"{sys.executable} {SCRIPTS[0]} --help {redirect}"],
                          cwd=ROOT, timeout=60, capture_output=True, text=True)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (f"{os.path.basename(SCRIPTS[0])}: error: cannot write to "
                           f"standard output: {reason}\n")
