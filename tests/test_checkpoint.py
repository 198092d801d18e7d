"""Loading and writing the released checkpoint layout, and every loading fault (L1-L6)."""
import json
import os
import shlex
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import checkpoint
import gpt2_fixtures as fx
import model_paths
from conftest import TINY

pytestmark = pytest.mark.usefixtures("no_tracebacks")

SRC = os.path.join(os.path.dirname(__file__), "..", "src")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLAIN_PATH = "/usr/bin:/bin"  # a user's PATH: no `python3` of this interpreter's environment


@pytest.fixture(autouse=True)
def plain_path(monkeypatch):
    monkeypatch.setenv("PATH", PLAIN_PATH)


def download(name, models_dir=None, *flags):
    """The remedy command expected: this interpreter and the script by absolute path."""
    words = [sys.executable, os.path.join(ROOT, "download_model.py"), name]
    if models_dir is not None:
        words += ["--models_dir", os.path.abspath(models_dir)]
    return " ".join(map(shlex.quote, [*words, *flags]))


def command_in(message: str) -> str:
    """The command between backticks in a message."""
    assert message.count("`") == 2, message
    return message.split("`")[1]


@pytest.fixture
def model_dir(tmp_path, tiny_dir):
    path = tmp_path / "models" / "124M"
    shutil.copytree(tiny_dir, path)
    return str(path)


def load_error(path) -> str:
    with pytest.raises(ValueError) as e:
        checkpoint.load(str(path))
    return str(e.value)


def test_tf1_checkpoint_loads_into_variables_named_like_the_checkpoint(tiny_dir, tiny_weights):
    assert sorted(os.listdir(tiny_dir)) == sorted([
        "checkpoint", "hparams.json", "model.ckpt.data-00000-of-00001", "model.ckpt.index",
        "model.ckpt.meta"])
    hparams, params = checkpoint.load(tiny_dir)
    assert hparams.n_layer == TINY["n_layer"]
    w = params["h"][1]["attn"]["c_attn"]["w"]
    assert isinstance(w, tf.Variable) and not w.trainable
    np.testing.assert_array_equal(w.numpy(), tiny_weights["model/h1/attn/c_attn/w"])
    np.testing.assert_array_equal(params["ln_f"]["b"].numpy(), tiny_weights["model/ln_f/b"])


def test_variable_shapes_match_the_independent_list():
    hparams = checkpoint.HParams(**TINY)
    assert checkpoint.variable_shapes(hparams) == {
        k: list(v) for k, v in fx.shapes(TINY).items()}


def test_write_then_load_round_trips_and_tf1_saver_restores_it(tmp_path, tiny_model):
    hparams, params = tiny_model
    out = str(tmp_path / "written")
    checkpoint.save(params, hparams, out)
    assert {"checkpoint", "hparams.json", "model.ckpt.index",
            "model.ckpt.data-00000-of-00001"} <= set(os.listdir(out))
    _, again = checkpoint.load(out)
    before = checkpoint.flat_from_tree(params, hparams)
    after = checkpoint.flat_from_tree(again, hparams)
    assert list(before) == list(after)
    for name in before:
        np.testing.assert_array_equal(before[name].numpy(), after[name].numpy())
    restored = fx.read_tf1_checkpoint(out, TINY)
    for name, value in restored.items():
        np.testing.assert_array_equal(value, before[name].numpy())
    assert json.loads(open(os.path.join(out, "hparams.json")).read()) == TINY


def test_bfloat16_load_casts_every_weight(tiny_dir):
    _, params = checkpoint.load(tiny_dir, dtype=tf.bfloat16)
    assert params["wte"].dtype == tf.bfloat16
    assert params["h"][0]["mlp"]["c_fc"]["b"].dtype == tf.bfloat16


# L1
def test_missing_model_dir_says_how_to_download(tmp_path, monkeypatch):
    with pytest.raises(ValueError) as e:
        model_paths.model_dir_for("124M", str(tmp_path / "models"))
    assert str(e.value) == (f"{tmp_path}/models/124M not found: run "
                            f"`{download('124M', tmp_path / 'models')}`")
    monkeypatch.chdir(tmp_path)
    assert load_error("models/355M") == f"models/355M not found: run `{download('355M')}`"


def test_old_model_names_find_the_new_folders_and_unknown_names_list_the_valid(tmp_path):
    (tmp_path / "124M").mkdir()
    assert model_paths.model_dir_for("117M", str(tmp_path)) == str(tmp_path / "124M")
    with pytest.raises(ValueError) as e:
        model_paths.model_dir_for("345M", str(tmp_path))
    assert f"{tmp_path}/355M not found: run `{download('355M', tmp_path)}`" in str(e.value)
    with pytest.raises(ValueError, match="give --model_name one of 124M, 355M, 774M, 1558M"):
        model_paths.model_dir_for("tiny", str(tmp_path))


# L2
@pytest.mark.parametrize("name", ["model.ckpt.index", "model.ckpt.data-00000-of-00001"])
def test_missing_checkpoint_file_is_named(model_dir, name):
    os.remove(os.path.join(model_dir, name))
    message = load_error(model_dir)
    # A plain re-run fetches only what is missing; --force would fetch all seven files.
    assert message == (f"{model_dir}/{name} is missing: run `"
                       f"{download('124M', os.path.dirname(model_dir))}` (it fetches only the "
                       f"missing files)")


def test_truncated_data_file_is_caught_before_tensorflow_reads_it(model_dir):
    data = os.path.join(model_dir, checkpoint.DATA)
    size = os.path.getsize(data)
    os.truncate(data, size - 100)
    message = load_error(model_dir)
    assert f"{data} is {size - 100:,} bytes but hparams.json implies {size:,}" in message


def test_flipped_byte_in_data_file_names_the_file(model_dir):
    data = os.path.join(model_dir, checkpoint.DATA)
    flip(data, os.path.getsize(data) // 2)
    message = load_error(model_dir)
    assert message.startswith(f"{data}: variable model/")
    assert "is corrupt" in message and command_in(message) == download(
        "124M", os.path.dirname(model_dir))


def flip(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ 0x40]))


@pytest.mark.parametrize("damage", ["flip-early", "flip-footer", "truncate", "garbage"])
def test_damaged_index_is_a_clear_error_in_a_fresh_process(model_dir, damage):
    # A corrupt index can make TensorFlow abort the whole process, so load in a child.
    index = os.path.join(model_dir, checkpoint.INDEX)
    if damage == "flip-early":
        flip(index, 10)
    elif damage == "flip-footer":
        flip(index, os.path.getsize(index) - 3)
    elif damage == "truncate":
        os.truncate(index, os.path.getsize(index) // 2)
    else:
        open(index, "wb").write(b"<?xml version='1.0'?><Error>BlobNotFound</Error>")
    code = ("import checkpoint, sys\n"
            "try:\n    checkpoint.load(sys.argv[1])\n"
            "except ValueError as e:\n    print(e); sys.exit(1)\n")
    result = subprocess.run([sys.executable, "-c", code, model_dir], capture_output=True,
                            text=True, env=dict(os.environ, PYTHONPATH=SRC), timeout=120)
    assert result.returncode == 1, result.stderr
    models_dir = os.path.dirname(model_dir)
    assert result.stdout.strip() == (
        f"{index} is corrupt or not a TensorFlow checkpoint index: run "
        f"`{download('124M', models_dir)}` to replace it (it downloads again every file that "
        f"fails verification; add --force to download all seven again)")
    assert "Traceback" not in result.stderr


# L3
@pytest.mark.parametrize("state", [None, "garbage \x00\x01", 'model_checkpoint_path: "/etc/x"'])
def test_checkpoint_state_file_is_not_needed(model_dir, tiny_weights, state):
    path = os.path.join(model_dir, "checkpoint")
    os.remove(path)
    if state is not None:
        open(path, "w").write(state)
    _, params = checkpoint.load(model_dir)
    np.testing.assert_array_equal(params["wte"].numpy(), tiny_weights["model/wte"])


# L4
def test_hparams_of_another_size_name_the_variable_and_both_shapes(model_dir):
    json.dump(dict(TINY, n_embd=48), open(os.path.join(model_dir, "hparams.json"), "w"))
    assert load_error(model_dir) == (
        "variable model/wte has shape [97, 32] in the checkpoint but [97, 48] per "
        "hparams.json: the checkpoint and hparams.json belong to different models")


@pytest.mark.parametrize("n_layer, message", [
    (3, "has no variable model/h2/ln_1/g, which hparams.json (n_layer=3) requires"),
    (1, "has variables hparams.json does not describe (first: model/h1/attn/c_attn/b)"),
])
def test_hparams_with_another_depth_are_rejected(model_dir, n_layer, message):
    json.dump(dict(TINY, n_layer=n_layer), open(os.path.join(model_dir, "hparams.json"), "w"))
    assert message in load_error(model_dir)


# L5
def test_hparams_that_is_an_error_page_names_the_file(model_dir):
    path = os.path.join(model_dir, "hparams.json")
    open(path, "w").write("<html><body>403 Forbidden</body></html>")
    message = load_error(model_dir)
    assert message.startswith(f"{path} is not valid JSON")
    assert command_in(message) == download("124M", os.path.dirname(model_dir))


def test_missing_hparams_names_the_file(model_dir):
    os.remove(os.path.join(model_dir, "hparams.json"))
    assert load_error(model_dir).startswith(f"{model_dir}/hparams.json is missing: run")


# L6
@pytest.mark.parametrize("change, message", [
    (dict(n_layers=2), "unknown key(s) n_layers"),
    (dict(n_ctx=-1), "n_ctx=-1 is out of range"),
    (dict(n_vocab=10 ** 12), "n_vocab=1000000000000 is out of range"),
])
def test_unknown_keys_or_absurd_sizes_are_rejected(model_dir, change, message):
    json.dump(dict(TINY, **change), open(os.path.join(model_dir, "hparams.json"), "w"))
    assert message in load_error(model_dir)


def test_hparams_json_that_is_not_an_object_is_rejected(model_dir):
    path = os.path.join(model_dir, "hparams.json")
    open(path, "w").write("[1, 2]")
    assert load_error(model_dir) == f"{path}: expected a JSON object, got list"


# Run directories of TF1 training scripts (gpt-2-simple, nshepperd's fork) and of train.py
@pytest.fixture(scope="module")
def tf1_run(tmp_path_factory, tiny_weights):
    run_dir = str(tmp_path_factory.mktemp("runs") / "run1")
    saved = fx.write_tf1_training_run(run_dir, TINY, tiny_weights, steps=(1, 2))
    return run_dir, saved


@pytest.fixture
def run_dir(tmp_path, tf1_run):
    path = tmp_path / "checkpoint" / "run1"
    shutil.copytree(tf1_run[0], path)
    return str(path)


def test_tf1_training_run_loads_the_newest_checkpoint_its_state_file_names(tf1_run):
    run_dir, saved = tf1_run
    files = set(os.listdir(run_dir))
    assert {"model-1.index", "model-2.index", "model-2.meta", "counter"} <= files
    assert not any(f.startswith("model.ckpt") for f in files)
    assert 'model_checkpoint_path: "model-2"' in open(os.path.join(run_dir, "checkpoint")).read()
    reader = tf.train.load_checkpoint(os.path.join(run_dir, "model-2"))
    names = set(reader.get_variable_to_shape_map())
    assert {"global_step", "beta1_power", "model/wte/Adam", "model/h1/mlp/c_fc/w/Adam_1"} <= names
    hparams, params = checkpoint.load(run_dir)
    flat = checkpoint.flat_from_tree(params, hparams)
    assert list(flat) == list(fx.shapes(TINY))
    for name, value in flat.items():
        np.testing.assert_array_equal(value.numpy(), saved[2][name])
    assert not np.array_equal(saved[1]["model/wte"], saved[2]["model/wte"])


def write_state(run_dir, newest):
    open(os.path.join(run_dir, "checkpoint"), "w").write(
        f'model_checkpoint_path: "{newest}"\nall_model_checkpoint_paths: "{newest}"\n')


def test_state_file_naming_an_older_step_is_followed(run_dir, tf1_run):
    write_state(run_dir, "model-1")
    _, params = checkpoint.load(run_dir)
    np.testing.assert_array_equal(params["wte"].numpy(), tf1_run[1][1]["model/wte"])


@pytest.mark.parametrize("named", ["/etc/model-2", "../run0/model-2", "sub/../../model-2"])
def test_state_file_pointing_outside_a_run_directory_is_refused(run_dir, named):
    write_state(run_dir, named)
    message = load_error(run_dir)
    assert message.startswith(f"{run_dir}/checkpoint names {named!r}, which is not inside "
                              f"{run_dir}: only paths relative to the directory are followed")
    assert "\n" not in message


def test_state_file_naming_a_missing_checkpoint_says_to_pick_an_earlier_one(run_dir):
    write_state(run_dir, "model-7")
    assert load_error(run_dir) == (
        f"{run_dir}/model-7.index is missing: point {run_dir}/checkpoint at an earlier "
        f"checkpoint of the run (its all_model_checkpoint_paths lines list them) or train again")


def test_run_directory_weights_and_slots_are_still_checked_against_hparams(run_dir):
    json.dump(dict(TINY, n_layer=1), open(os.path.join(run_dir, "hparams.json"), "w"))
    assert "has variables hparams.json does not describe (first: model/h1/" in load_error(run_dir)
    json.dump(dict(TINY, n_embd=48), open(os.path.join(run_dir, "hparams.json"), "w"))
    assert load_error(run_dir).startswith("variable model/wte has shape [97, 32]")


def test_truncated_run_checkpoint_is_measured_against_its_index(run_dir):
    data = os.path.join(run_dir, "model-2.data-00000-of-00001")
    size = os.path.getsize(data)
    os.truncate(data, size - 8)
    assert load_error(run_dir).startswith(
        f"{data} is {size - 8:,} bytes but its index implies {size:,}: the file is truncated")


# --- Remedies that work when pasted (issue 14) -----------------------------------------------
def test_a_remedy_is_a_command_that_runs_from_anywhere(tmp_path, monkeypatch):
    """Absolute, shell-quoted paths and this interpreter: the printed command runs from
    another directory, with a PATH whose python3 lacks the project's packages."""
    odd = tmp_path / "my models" / "it's"
    odd.mkdir(parents=True)
    monkeypatch.chdir(odd.parent)
    with pytest.raises(ValueError) as e:
        model_paths.model_dir_for("124M", "it's")
    command = command_in(str(e.value))
    argv = shlex.split(command)
    assert argv == [sys.executable, os.path.join(ROOT, "download_model.py"), "124M",
                    "--models_dir", str(odd)]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = subprocess.run(["bash", "-c", command + " --help"], cwd=elsewhere, timeout=60,
                          capture_output=True, text=True, env=dict(os.environ, PATH=PLAIN_PATH))
    assert done.returncode == 0, done.stderr
    assert "--models_dir" in done.stdout and "Traceback" not in done.stderr


def test_models_dir_is_left_out_only_where_it_is_the_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert shlex.split(model_paths.download_command("models/774M"))[2:] == ["774M"]
    assert shlex.split(model_paths.download_command(str(tmp_path / "models" / "774M")))[2:] \
        == ["774M"]
    assert shlex.split(model_paths.download_command("other/774M"))[2:] == [
        "774M", "--models_dir", str(tmp_path / "other")]


def test_python3_is_printed_only_when_it_runs_this_interpreter(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable))
    if shutil.which("python3") is None or os.path.realpath(shutil.which("python3")) != \
            os.path.realpath(sys.executable):
        pytest.skip("this interpreter's folder has no python3 for it")
    assert model_paths.python_command() == "python3"  # as in an activated venv
    other = tmp_path / "bin"
    other.mkdir()
    os.symlink(os.path.realpath(sys.executable), other / "python3")  # same binary, no venv
    monkeypatch.setenv("PATH", str(other))
    assert model_paths.python_command() == shlex.quote(sys.executable)


def test_after_an_offline_first_run_the_remedy_is_a_plain_download(tmp_path):
    """Nothing was ever fetched: no "not found ... --force", just the download."""
    model_dir = tmp_path / "models" / "355M"
    model_dir.mkdir(parents=True)
    for leftover in (".download.lock", "hparams.json.part", ".download.json"):
        (model_dir / leftover).write_text("")
    message = load_error(model_dir)
    assert message == (f"{model_dir}/hparams.json is missing: nothing has been downloaded "
                       f"into {model_dir} yet: run `{download('355M', tmp_path / 'models')}`")


def test_a_damaged_file_names_what_force_does_without_requiring_it(model_dir):
    flip(os.path.join(model_dir, checkpoint.DATA), 1000)
    message = load_error(model_dir)
    assert "--force" not in command_in(message)
    assert message.endswith("add --force to download all seven again)")


@pytest.fixture
def converted_dir(tmp_path, tiny_dir):
    """A model directory in the released layout that is not a released name (a converted
    model, say): download_model.py cannot fetch it."""
    path = tmp_path / "converted" / "tiny-hub"
    shutil.copytree(tiny_dir, path)
    return str(path)


@pytest.mark.parametrize("name", ["hparams.json", checkpoint.INDEX, checkpoint.DATA])
def test_a_directory_download_model_cannot_fetch_gets_no_download_command(converted_dir, name):
    os.remove(os.path.join(converted_dir, name))
    message = load_error(converted_dir)
    assert message.startswith(f"{converted_dir}/{name} is missing: {converted_dir} is not a "
                              f"released model")
    assert "download_model.py cannot fetch it" in message and "`" not in message
    assert "a model directory must hold hparams.json, encoder.json, vocab.bpe, " \
           "model.ckpt.index, model.ckpt.data-00000-of-00001" in message


def test_a_damaged_file_of_another_directory_says_to_restore_it(converted_dir):
    open(os.path.join(converted_dir, "hparams.json"), "w").write("<html>")
    message = load_error(converted_dir)
    assert "restore it from where the model came from" in message and "`" not in message


def test_a_model_name_that_is_a_file_is_named(tmp_path):
    (tmp_path / "124M").write_text("")
    with pytest.raises(ValueError, match="124M is not a directory"):
        model_paths.model_dir_for("124M", str(tmp_path))


# --- Files that cannot be read (issue 13) ----------------------------------------------------
@pytest.mark.parametrize("name", ["hparams.json", checkpoint.INDEX, checkpoint.DATA])
def test_a_directory_in_place_of_a_file_is_named_without_download_advice(model_dir, name):
    path = os.path.join(model_dir, name)
    os.remove(path)
    os.mkdir(path)
    message = load_error(model_dir)
    assert message.startswith(f"{path} cannot be read (Is a directory)")
    assert "download" not in message and "--force" not in message


UNREADABLE = """
import json, os, sys
import checkpoint, encoder
model_dir = sys.argv[1]
models_dir, name = os.path.split(model_dir)
found = {}
for target in sys.argv[2:]:
    path = os.path.join(model_dir, target) if target != "." else model_dir
    mode = os.stat(path).st_mode
    os.chmod(path, 0)
    try:
        if target in ("encoder.json", "vocab.bpe"):
            encoder.get_encoder(name, models_dir)
        else:
            checkpoint.load(model_dir)
        found[target] = "loaded"
    except ValueError as e:
        found[target] = str(e)
    finally:
        os.chmod(path, mode)
print(json.dumps(found))
"""


def test_unreadable_files_name_the_file_and_the_reason_not_a_download(model_dir):
    """chmod 000 (files downloaded as root in Docker, read by a user): one child process
    without the privilege to read them anyway, trying each file in turn."""
    prefix = fx.unprivileged()
    if prefix is None:
        pytest.skip("running as root without setpriv: cannot take away the right to read")
    fx.copy_vocabulary(model_dir)
    names = ["hparams.json", checkpoint.INDEX, checkpoint.DATA, "encoder.json", "vocab.bpe", "."]
    done = subprocess.run([*prefix, sys.executable, "-c", UNREADABLE, model_dir, *names],
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=SRC))
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    found = json.loads(done.stdout)
    for name in names:
        path = os.path.join(model_dir, name) if name != "." else model_dir
        message = found[name]
        assert message.startswith(f"{path} cannot be read (Permission denied)") or (
            name == "." and "cannot be read (Permission denied): give this user read access "
                            f"to {model_dir} " in message), (name, message)
        assert "download" not in message and "--force" not in message, (name, message)
        assert "chmod a+rX" in message
