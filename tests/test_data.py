"""Token datasets: formats, documents and <|endoftext|>, windows, bad input (T1, T2)."""
import json
import os

import numpy as np
import pytest

import data
import encoder
import text_corpus

EOT = 50256
HERE = os.path.dirname(__file__)


@pytest.fixture(scope="module")
def enc():
    return encoder.get_encoder("data", HERE)


def load_error(path, **kwargs) -> str:
    with pytest.raises(ValueError) as e:
        d = data.load(str(path), **kwargs)
        d.check_window(kwargs.get("window", 8))
    assert "\n" not in str(e.value)
    return str(e.value)


def test_npz_of_nshepperds_format_keeps_its_chunks(tmp_path):
    chunks = [np.arange(10, 30, dtype=np.int32), np.arange(100, 105, dtype=np.int64),
              np.arange(200, 240, dtype=np.uint16)]
    np.savez_compressed(tmp_path / "d.npz", *chunks)
    d = data.load(str(tmp_path / "d.npz"))
    assert [list(c) for c in d.chunks] == [list(c) for c in chunks]
    assert d.n_tokens == 65


def test_windows_never_cross_a_chunk_and_cover_every_start(tmp_path):
    chunks = [np.arange(0, 12), np.arange(1000, 1003), np.arange(2000, 2020)]
    d = data.TokenData([np.asarray(c) for c in chunks], "x")
    w = d.windows(seed=5, step=1, count=4000, window=8)
    assert w.shape == (4000, 8) and w.dtype == np.int32
    assert (np.diff(w, axis=1) == 1).all()  # consecutive ids: one chunk, in order
    starts = set(w[:, 0].tolist())
    assert starts == set(range(0, 5)) | set(range(2000, 2013))  # the short chunk never
    # Uniform over the 18 possible windows: each drawn about 4000 / 18 times.
    counts = np.unique(w[:, 0], return_counts=True)[1]
    assert counts.min() > 150 and counts.max() < 300


def test_windows_are_a_function_of_seed_and_step(tmp_path):
    d = data.TokenData([np.arange(1000)], "x")
    a = d.windows(seed=7, step=3, count=4, window=16)
    np.testing.assert_array_equal(a, d.windows(seed=7, step=3, count=4, window=16))
    assert not np.array_equal(a, d.windows(seed=7, step=4, count=4, window=16))
    assert not np.array_equal(a, d.windows(seed=8, step=3, count=4, window=16))
    # The first rows of a larger draw are the smaller draw: replicas slice one draw.
    np.testing.assert_array_equal(a, d.windows(seed=7, step=3, count=8, window=16)[:4])
    v = d.validation_windows(count=3, window=16)
    np.testing.assert_array_equal(v, data.TokenData([np.arange(1000)], "y")
                                  .validation_windows(count=3, window=16))


def test_token_file_is_memory_mapped(tmp_path):
    ids = np.arange(500, 700, dtype="<u2")
    ids.tofile(tmp_path / "t.bin")
    d = data.load(str(tmp_path / "t.bin"))
    assert isinstance(d.chunks[0], np.memmap)
    np.testing.assert_array_equal(d.chunks[0], ids)
    (tmp_path / "odd.bin").write_bytes(b"abc")
    assert "is 3 bytes, an odd number" in load_error(tmp_path / "odd.bin")


def test_text_documents_are_joined_by_the_real_endoftext_id(tmp_path, enc):
    (tmp_path / "a.txt").write_text("First doc.<|endoftext|>Second doc.\n<|endoftext|>  \n")
    (tmp_path / "b.csv").write_text('text,label\n"Third, with comma",x\n\nFourth,y\n')
    (tmp_path / "c.jsonl").write_text(json.dumps({"text": "Fifth"}) + "\n\n" +
                                      json.dumps({"text": "Sixth", "id": 2}) + "\n")
    (tmp_path / ".hidden").write_text("never read")
    d = data.load(str(tmp_path), enc=enc)
    ids = d.chunks[0].tolist()
    expected = []
    for doc in ["First doc.", "Second doc.\n", "Third, with comma", "Fourth", "Fifth", "Sixth"]:
        expected += ([EOT] if expected else []) + enc.encode(doc)
    assert ids == expected
    assert ids.count(EOT) == 5 and enc.encode("<|endoftext|>") != [EOT]


def test_glob_selects_files(tmp_path, enc):
    for name in ("x1.txt", "x2.txt", "y.txt"):
        (tmp_path / name).write_text(name)
    d = data.load(str(tmp_path / "x*.txt"), enc=enc)
    assert d.chunks[0].tolist() == enc.encode("x1.txt") + [EOT] + enc.encode("x2.txt")


def test_large_text_is_read_in_blocks_with_the_same_ids(tmp_path, enc, monkeypatch):
    text = "".join(f"Line {i}:  words\tand  spaces \n\n  indented {i}\n'quoted' \n"
                   f"x\n" for i in range(300))
    (tmp_path / "big.txt").write_text(text)
    monkeypatch.setattr(text_corpus, "BLOCK", 97)
    blocks = list(text_corpus.text_blocks(str(tmp_path / "big.txt"), "utf-8"))
    assert len(blocks) > 50 and "".join(blocks) == text
    assert data.load(str(tmp_path / "big.txt"), enc=enc).chunks[0].tolist() == enc.encode(text)


# T1
def test_missing_empty_or_too_small_datasets_give_the_numbers(tmp_path, enc):
    assert load_error(tmp_path / "none.txt", enc=enc).startswith(
        f"dataset {tmp_path}/none.txt not found")
    (tmp_path / "empty.txt").write_text("  \n")
    assert load_error(tmp_path / "empty.txt", enc=enc) == \
        f"dataset {tmp_path}/empty.txt is empty: it holds no tokens"
    (tmp_path / "small.txt").write_text("one two three")
    assert load_error(tmp_path / "small.txt", enc=enc) == (
        f"dataset {tmp_path}/small.txt has 3 tokens, fewer than one training window of 8: "
        f"add text, or pass --window 3 or less")
    os.mkdir(tmp_path / "dir")
    assert "is an empty directory" in load_error(tmp_path / "dir", enc=enc)


def test_token_ids_outside_the_vocabulary_are_refused(tmp_path):
    np.savez(tmp_path / "d.npz", np.array([1, 2, 60000]))
    with pytest.raises(ValueError, match="holds token id 60000, but the model has 50257"):
        data.load(str(tmp_path / "d.npz")).check_vocabulary(50257)


# T2
@pytest.mark.parametrize("name", ["bad.txt", "bad.csv", "bad.jsonl"])
def test_text_that_is_not_utf8_names_the_file_and_byte_offset(tmp_path, enc, name):
    prefix = ('text\n"' if name.endswith("csv") else '{"text": "' if name.endswith("l")
              else "") + "caf"
    raw = prefix.encode() + b"\xe9 au lait" + (b'"}' if name.endswith("l") else b"") + b"\n"
    (tmp_path / name).write_bytes(raw * 3)
    assert load_error(tmp_path / name, enc=enc) == (
        f"{tmp_path}/{name} is not utf-8 text: byte 0xe9 at offset {len(prefix)} cannot be "
        f"decoded; pass --encoding with the file's encoding (for example --encoding "
        f"latin-1 or --encoding cp1252)")
    d = data.load(str(tmp_path / name), enc=enc, encoding="latin-1")
    assert enc.decode([t for t in d.chunks[0].tolist() if t != EOT]).count("café") == 3


def test_unknown_encoding_and_bad_jsonl_lines(tmp_path, enc):
    (tmp_path / "a.txt").write_text("x")
    assert "not a text encoding Python knows" in load_error(tmp_path / "a.txt", enc=enc,
                                                            encoding="klingon")
    (tmp_path / "b.jsonl").write_text('{"text": "ok"}\n{"body": "no text"}\n')
    assert load_error(tmp_path / "b.jsonl", enc=enc) == (
        f"{tmp_path}/b.jsonl line 2 has no string field \"text\": each line must be an "
        f"object like {{\"text\": \"...\"}}")
