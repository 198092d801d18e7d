"""encode.py: text -> .npz (nshepperd's format) or a uint16 token file, as train.py reads."""
import os

import numpy as np
import pytest

import data
import encoder
import gpt2_fixtures as fx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EOT = 50256


@pytest.fixture
def workdir(tmp_path, monkeypatch, capsys):
    os.makedirs(tmp_path / "models" / "124M")
    fx.copy_vocabulary(str(tmp_path / "models" / "124M"))
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "a.txt").write_text("Hello world<|endoftext|>Bonjour")
    (tmp_path / "texts" / "b.jsonl").write_text('{"text": "third"}\n')
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(*argv):
    import importlib.util
    spec = importlib.util.spec_from_file_location("encode_script", os.path.join(ROOT, "encode.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(list(argv))


def expected_ids():
    enc = encoder.get_encoder("124M", "models")
    return enc.encode("Hello world") + [EOT] + enc.encode("Bonjour") + [EOT] + \
        enc.encode("third")


@pytest.mark.parametrize("out", ["d.npz", "d.bin", "d.tokens"])
def test_encode_writes_what_training_reads(workdir, out, capsys):
    assert run("texts", out) == 0
    err = capsys.readouterr().err
    ids = expected_ids()
    assert f"encode.py: wrote {len(ids)} tokens from 2 file(s) to {out}" in err
    loaded = data.load(out)
    assert [c.tolist() for c in loaded.chunks] == [ids]
    if out.endswith(".npz"):
        assert np.load(out).files == ["arr_0"]  # nshepperd's train.py reads it too
    else:
        assert os.path.getsize(out) == 2 * len(ids)
    assert not [f for f in os.listdir(".") if ".tmp-" in f]


def test_non_utf8_input_is_one_line_and_writes_nothing(workdir, capsys):
    (workdir / "texts" / "c.txt").write_bytes(b"ok \xff no")
    assert run("texts", "d.npz") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == ("encode.py: error: texts/c.txt is not utf-8 text: byte 0xff at offset 3 "
                       "cannot be decoded; pass --encoding with the file's encoding (for "
                       "example --encoding latin-1 or --encoding cp1252)")
    assert not os.path.exists("d.npz")
    assert run("texts", "d.npz", "--encoding", "latin-1") == 0


@pytest.mark.parametrize("argv, code, message", [
    (["missing.txt", "d.npz"], 1, "dataset missing.txt not found"),
    (["texts", "d.txt"], 2, "d.txt: the output must end in .npz, .bin or .tokens"),
    (["texts"], 2, "give the input and the output"),
    (["texts", "d.npz", "--encoding", "nope"], 2, "is not a text encoding Python knows"),
    (["texts", "d.npz", "--model_name", "355M"], 1, "models/355M not found"),
])
def test_bad_input_is_one_line(workdir, capsys, argv, code, message):
    assert run(*argv) == code
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
