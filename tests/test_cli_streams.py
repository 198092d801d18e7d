"""Issue 13's stream and output-file faults, for the sampling scripts (and through
cli.guarded for every script): stdin, stdout and stderr full, closed or missing; --output
on a full disk, at its size limit, shared by two runs, or inside the model directory.

Each case: one line on stderr (if there is a stderr), the right exit code, nothing
half-written, and no traceback from any process (the `no_tracebacks` fixture reads every
subprocess's output). TensorFlow processes are few; most cases run in-process.
"""
import errno
import json
import os
import resource
import subprocess
import sys
import threading

import pytest

import cli
import generate_unconditional_samples as gus
import interactive_conditional_samples as ics
import records
import samples_io

pytestmark = pytest.mark.usefixtures("no_tracebacks")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UNCONDITIONAL = os.path.join(ROOT, "src", "generate_unconditional_samples.py")
INTERACTIVE = os.path.join(ROOT, "src", "interactive_conditional_samples.py")


def tiny(cli_models, *args):
    return ["--models_dir", cli_models, "--model_name", "tiny", *map(str, args)]


def lines_of(path) -> list:
    """The records of a JSON-lines file, which must end with a whole line."""
    data = open(path, "rb").read()
    assert data == b"" or data.endswith(b"\n"), data[-100:]
    return [json.loads(line) for line in data.decode("utf-8").splitlines()]


def bash(command, **kwargs):
    return subprocess.run(["bash", "-c", command], capture_output=True, text=True, cwd=ROOT,
                          timeout=180, **kwargs)


# --- standard streams ---------------------------------------------------------------------------

def test_a_usage_error_with_stderr_closed_still_exits_2_and_stdout_stays_clean():
    """`2>&-`: the error used to land on stdout, among what a pipe would read as samples."""
    done = bash(f"{sys.executable} {UNCONDITIONAL} --temperature abc 2>&-")
    assert (done.returncode, done.stdout) == (2, "")


def test_stdout_on_a_full_disk_is_one_line_exit_1(cli_models):
    """`> /dev/full` while sampling: a traceback from the interpreter before."""
    command = f"{sys.executable} {UNCONDITIONAL} {' '.join(tiny(cli_models))} " \
              f"--nsamples 2 --length 3 >/dev/full"
    done = bash(command, env={k: v for k, v in os.environ.items() if not k.startswith("TF_")})
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == (
        "generate_unconditional_samples.py: error: cannot write to standard output: No "
        "space left on device")


def test_stdin_and_stderr_closed_end_of_input_and_no_log_in_the_output_file(cli_models,
                                                                               tmp_path):
    """`<&- 2>&-`: sys.stdin was None (`sys.stdin.isatty()`, an AttributeError), and the
    output file took a free descriptor 0 or 2, where TensorFlow's C++ logs (all of them at
    TF_CPP_MIN_LOG_LEVEL=0) go."""
    out = tmp_path / "out.jsonl"
    done = bash(f"{sys.executable} {INTERACTIVE} {' '.join(tiny(cli_models))} --output {out} "
                f"<&- 2>&-", env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0"})
    assert (done.returncode, done.stdout, out.read_bytes()) == (0, "", b"")


def test_stdout_full_in_process_for_the_interactive_script(run_script):
    r = run_script(ics, "--length", 3, stdin=b"Hello\n", full_stdout=True)
    assert r.code == 1
    assert r.stderr == (f"{ics.PROG}: error: cannot write to standard output: No space "
                        f"left on device\n")


# --- output files -----------------------------------------------------------------------------

def test_output_on_a_full_device_is_one_line_exit_1(run_script):
    r = run_script(gus, "--output", "/dev/full", "--nsamples", 2, "--length", 3)
    assert r.code == 1
    assert r.stderr == (f"{gus.PROG}: error: cannot write --output /dev/full: No space left "
                        f"on device; 0 records written by this run\n")


def test_a_disk_that_fills_mid_record_leaves_only_whole_records(run_script, tmp_path,
                                                                monkeypatch):
    """The third record gets half written, then ENOSPC: the file is cut back to the two
    whole records (a later run would have counted the fragment as a record)."""
    out = tmp_path / "out.jsonl"
    write, calls = os.write, []

    def filling(fd, data):
        calls.append(len(data))
        if len(calls) == 3:
            return write(fd, bytes(data[:len(data) // 2]))
        if len(calls) > 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return write(fd, data)

    monkeypatch.setattr(records.os, "write", filling)
    r = run_script(gus, "--output", out, "--nsamples", 4, "--length", 3)
    assert r.code == 1
    assert r.stderr == (f"{gus.PROG}: error: cannot write --output {out}: No space left on "
                        f"device (the unfinished record was removed); 2 records written by "
                        f"this run\n")
    assert [rec["id"] for rec in lines_of(out)] == [0, 1]


DRIVER = """
import sys
sys.path.insert(0, {src!r})
import cli, records
def body():
    writer = records.JsonlWriter(sys.argv[1])
    for i in range(int(sys.argv[2])):
        writer.write(ended=False, length=i, text="x" * 40)
    return 0
sys.exit(cli.guarded("driver", body))
"""


def driver(tmp_path, out, n, **kwargs):
    script = tmp_path / "driver.py"
    script.write_text(DRIVER.format(src=os.path.join(ROOT, "src")))
    return subprocess.Popen([sys.executable, str(script), str(out), str(n)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def test_the_file_size_limit_cuts_the_record_back(tmp_path):
    """`ulimit -f`: a short write, then EFBIG; whole records stay, one line, exit 1."""
    out = tmp_path / "out.jsonl"
    limit = 500  # bytes: room for 5 records of ~95 bytes and part of a sixth
    process = driver(tmp_path, out, 20, preexec_fn=lambda: resource.setrlimit(
        resource.RLIMIT_FSIZE, (limit, limit)))
    stdout, stderr = process.communicate(timeout=60)
    found = lines_of(out)
    assert process.returncode == 1 and 0 < len(found) < 20
    assert os.path.getsize(out) <= limit
    assert stderr == (f"driver: error: cannot write --output {out}: File too large (the "
                      f"unfinished record was removed); {len(found)} records written by this "
                      f"run\n")
    assert [rec["id"] for rec in found] == list(range(len(found)))


def test_two_processes_appending_at_once_get_distinct_ids(tmp_path):
    out = tmp_path / "shared.jsonl"
    processes = [driver(tmp_path, out, 150) for _ in range(2)]
    for process in processes:
        assert process.communicate(timeout=60)[1] == "" and process.returncode == 0
    assert sorted(rec["id"] for rec in lines_of(out)) == list(range(300))


def test_two_writers_in_one_process_get_distinct_ids(tmp_path):
    """Ids used to be counted once, when the file was opened: both writers wrote 0, 1..."""
    out = tmp_path / "shared.jsonl"
    writers = [records.JsonlWriter(str(out)) for _ in range(2)]
    start = threading.Barrier(2)

    def work(writer):
        start.wait()
        for i in range(100):
            writer.write(text=str(i))

    threads = [threading.Thread(target=work, args=(w,)) for w in writers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(rec["id"] for rec in lines_of(out)) == list(range(200))
    assert writers[0].written == writers[1].written == 100


@pytest.mark.parametrize("where", ["hparams.json", "model.ckpt.data-00000-of-00001",
                                   "new.jsonl", "symlink", "hardlink"])
def test_output_inside_the_model_directory_is_refused(run_script, cli_models, tmp_path,
                                                      monkeypatch, where):
    """Appending to hparams.json or the data file broke the model (exit 0)."""
    model = os.path.join(cli_models, "tiny")
    before = {name: open(os.path.join(model, name), "rb").read() for name in os.listdir(model)}
    if where == "symlink":
        os.symlink(model, tmp_path / "link")
        path = tmp_path / "link" / "hparams.json"
    elif where == "hardlink":
        path = tmp_path / "hparams.json"
        os.link(os.path.join(model, "hparams.json"), path)
    else:
        path = os.path.join(model, where)
    loads = []
    monkeypatch.setattr(samples_io, "load_model", loads.append)
    for script, extra in ((gus, []), (ics, ["--prompt", "x"])):
        r = run_script(script, "--output", path, "--nsamples", 1, *extra)
        assert r.code == 2, r.stderr
        assert r.stderr.startswith(f"{script.PROG}: error: --output {path} is inside the "
                                   f"model directory {model}, which this run reads")
    assert loads == []
    after = {name: open(os.path.join(model, name), "rb").read() for name in os.listdir(model)}
    assert after == before


def test_next_id_comes_from_the_last_whole_record(tmp_path):
    path = tmp_path / "f.jsonl"
    cases = [(b"", (0, False)),
             (b'{"id": 41, "text": "a"}\n', (42, False)),
             (b'{"id": 3}\n{"id": 9, "te', (4, True)),  # a cut-off tail is no record
             (b"plain text\nlines\n", (2, False)),  # not records: their count
             (b'{"id": 3}\n' + b'{"id": 7, "text": "' + b"y" * 200000 + b'"}\n', (8, False))]
    for data, expected in cases:
        path.write_bytes(data)
        fd = os.open(path, os.O_RDONLY)
        try:
            assert records.next_id_of(fd, len(data)) == expected, data[:40]
        finally:
            os.close(fd)


# --- cli.guarded's other ways to end --------------------------------------------------------------

@pytest.mark.parametrize("raised, code, line", [
    (lambda: SystemError("returned a result with an exception set"), None, None),
    (MemoryError, 1, "x: error: out of memory: use a smaller --batch_size or --length\n"),
    (lambda: PermissionError(errno.EACCES, "Permission denied", "/data/out.json"), 1,
     "x: error: Permission denied (/data/out.json)\n"),
    (lambda: ModuleNotFoundError("No module named 'fire'", name="fire"), 1, None),
])
def test_guarded_turns_each_ending_into_one_line(capsys, raised, code, line):
    def body():
        raise raised()

    if code is None:  # a SystemError that does not wrap a signal is a bug: it propagates
        with pytest.raises(SystemError):
            cli.guarded("x", body)
        return
    assert cli.guarded("x", body) == code
    err = capsys.readouterr().err
    assert err == line if line else err.startswith("x: error: the Python package 'fire' is "
                                                   "not installed for ")


def test_a_signal_wrapped_by_numpy_still_exits_143(capsys):
    """SIGTERM raised inside NumPy's callback reaches Python as a SystemError whose context
    is the Terminated: that was a traceback and exit 1."""
    def body():
        try:
            raise cli.Terminated()
        except cli.Terminated:
            raise SystemError("<built-in method __array__> returned a result with an "
                              "exception set")
    assert cli.guarded("x", body) == 143
    assert capsys.readouterr().err == "x: terminated\n"


def test_without_the_venv_the_error_is_one_line_whose_remedy_works(tmp_path):
    """Issue 14: `python3 src/...` outside the venv was `ModuleNotFoundError: fire`, a
    traceback on the documented path. The line's remedy, pasted, makes the command work."""
    base = getattr(sys, "_base_executable", sys.executable)
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('fire') is None)"
    if subprocess.run([base, "-c", probe]).returncode == 0:
        pytest.skip("the system Python has fire installed")
    done = subprocess.run([base, UNCONDITIONAL, "--temperature", "1", "--help"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert done.returncode == 1 and done.stdout == ""
    prefix = ("generate_unconditional_samples.py: error: the Python package 'fire' is not "
              f"installed for {base}: ")
    assert done.stderr.startswith(prefix) and done.stderr.count("\n") == 1
    remedy = done.stderr[len(prefix):].strip()
    if not remedy.startswith("activate the project's environment first: "):
        pytest.skip(f"no .venv in this checkout: {remedy}")
    activate = remedy.split(": ", 1)[1]
    again = bash(f"{activate} && python3 {UNCONDITIONAL} --help")
    assert again.returncode == 0 and again.stdout.startswith("Usage: ")
