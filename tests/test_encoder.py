"""src/encoder.py: GPT-2's ids exactly, round trips, streaming, bounded cache, clear errors."""

import hashlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import encoder
from encoder_helpers import DATA_DIR, OriginalEncoder, load_vocab, make_corpus, reference_tokenizer

SHA256 = {
    "encoder.json": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
    "vocab.bpe": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
}
PROPERTY = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def enc():
    return encoder.get_encoder("data", os.path.dirname(DATA_DIR))


@pytest.fixture(scope="module")
def original():
    return OriginalEncoder(*load_vocab())


@pytest.fixture(scope="module")
def reference():
    return reference_tokenizer()


@pytest.fixture(scope="module")
def corpus():
    return make_corpus(1 << 20, seed=2019)


def test_vocabulary_files_are_gpt2s():
    for name, digest in SHA256.items():
        with open(os.path.join(DATA_DIR, name), "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == digest, name


def test_golden_facts(enc):
    assert enc.encode("hello world") == [31373, 995]
    assert enc.n_vocab == len(enc.encoder) == 50257
    assert len(enc.bpe_ranks) == 50000
    assert enc.eot_token == enc.encoder["<|endoftext|>"] == 50256
    assert encoder.ENDOFTEXT == "<|endoftext|>"
    assert enc.decode([31373, 995]) == "hello world"


def test_endoftext_decodes_as_text_and_encodes_as_plain_text(enc, original, reference):
    assert enc.decode([50256]) == "<|endoftext|>"
    assert enc.decode([31373, 50256, 995]) == "hello<|endoftext|> world"
    for text in ["<|endoftext|>", "a <|endoftext|>b", "<|endoftext|><|endoftext|>"]:
        ids = enc.encode(text)
        assert 50256 not in ids
        assert ids == original.encode(text) == reference.encode_ordinary(text)
        assert enc.decode(ids) == text


def test_original_api(enc, original):
    vocab, merges = load_vocab()
    plain = encoder.Encoder(vocab, merges)  # positional, as in the original
    assert plain.encode("Hello, world!") == original.encode("Hello, world!")
    assert plain.decoder[50256] == "<|endoftext|>"
    assert plain.errors == "replace"
    for word in ["Ġinformants", "Ġhello", "antidisestablishmentarianism", "ĠÐ¿ÑĢÐ¸Ð²ÐµÑĤ"]:
        assert plain.bpe(word) == original.bpe(word)


def test_corpus_covers_every_category(corpus):
    assert len(corpus.encode("utf-8")) >= 1 << 20
    needles = ["DON'T", "we'll", "<|endoftext|>", "\u200d", "def ", "我们", "مرحبا", "नमस्ते",
               "привет", "こんにちは", "\t", "\n\n", "   ", "a" * 50, "👍🏽", "🇯🇵"]
    for needle in needles:
        assert needle in corpus, needle
    assert any(ch.isdigit() for ch in corpus[:10000])


def test_corpus_ids_equal_tiktoken_and_the_original(enc, original, reference, corpus):
    ids = enc.encode(corpus)
    assert ids == reference.encode_ordinary(corpus)
    assert ids == original.encode(corpus)
    assert enc.encode(corpus) == ids  # warm cache gives the same answer
    assert enc.decode(ids) == corpus
    assert enc.decode(ids) == original.decode(ids)


def test_every_vocabulary_entry_is_its_own_bpe(enc, original):
    # The whole-entry fast path in Encoder is right only if this holds for the vocabulary.
    for token, i in enc.encoder.items():
        if i != enc.eot_token:
            assert original.bpe(token) == token


@pytest.mark.parametrize("text", [
    "a" * 10000, " " * 5000, "\n" * 3000, "\t \n" * 500, "x" + " " * 100 + "y", "!" * 4096,
    "9" * 2000, "中" * 2000, "👨‍👩‍👧‍👦" * 300, "DON'T WE'LL I'M it's 'S 'll", "",
])
def test_hard_strings(enc, original, reference, text):
    ids = enc.encode(text)
    assert ids == original.encode(text) == reference.encode_ordinary(text)
    assert enc.decode(ids) == text


@PROPERTY
@given(st.text())
def test_round_trip_and_ids_for_arbitrary_unicode(enc, original, text):
    ids = enc.encode(text)
    assert enc.decode(ids) == text
    assert ids == original.encode(text)


@PROPERTY
@given(st.text(alphabet=st.sampled_from(list("ab 中\n\t'sDON'T1😀\u200d🏽é<|>é"))))
def test_ids_equal_tiktoken_for_mixed_text(enc, reference, text):
    assert enc.encode(text) == reference.encode_ordinary(text)


def _stream(enc, ids, cuts):
    """Decodes `ids` fed in chunks that end at the positions in `cuts`."""
    dec = enc.incremental_decoder()
    bounds = [0, *sorted(set(cuts)), len(ids)]
    pieces = [dec.decode(ids[a:b]) for a, b in zip(bounds, bounds[1:])]
    return pieces + [dec.flush()]


@PROPERTY
@given(st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\ufffd")),
       st.data())
def test_streaming_never_shows_replacement_characters(enc, text, data):
    ids = enc.encode(text)
    cuts = data.draw(st.lists(st.integers(0, len(ids)), max_size=len(ids)))
    pieces = _stream(enc, ids, cuts)
    assert not any("\ufffd" in p for p in pieces)
    assert "".join(pieces) == text
    one_by_one = enc.incremental_decoder()
    assert "".join(one_by_one.decode(i) for i in ids) + one_by_one.flush() == text


@PROPERTY
@given(st.lists(st.integers(0, 50256), max_size=40), st.data())
def test_streaming_equals_decode_for_any_ids(enc, ids, data):
    cuts = data.draw(st.lists(st.integers(0, len(ids)), max_size=len(ids)))
    assert "".join(_stream(enc, ids, cuts)) == enc.decode(ids)


def test_streaming_holds_back_a_split_character(enc):
    ids = enc.encode("你")  # one character, several tokens
    assert len(ids) > 1
    assert enc.decode(ids[:1]) == "\ufffd"  # a one-shot decode cannot know more bytes follow
    dec = enc.incremental_decoder()
    assert [dec.decode(i) for i in ids] == [""] * (len(ids) - 1) + ["你"]
    dec.decode(ids[0])
    assert dec.flush() == "\ufffd"  # an unfinished character at the end is still reported


def test_errors_strict_raises_on_partial_characters():
    strict = encoder.Encoder(*load_vocab(), errors="strict")
    with pytest.raises(UnicodeDecodeError):
        strict.decode(strict.encode("你")[:1])


def test_decode_accepts_numpy_ids(enc):
    assert enc.decode(np.array([31373, 995], dtype=np.int64)) == "hello world"
    assert enc.decode(i for i in [31373, 995]) == "hello world"
    assert enc.incremental_decoder().decode(np.int32(31373)) == "hello"


@pytest.mark.parametrize("bad", [50257, -1, 10 ** 9, "31373", None])
def test_unknown_ids_name_the_id_and_the_vocabulary_size(enc, bad):
    for decode in (enc.decode, enc.incremental_decoder().decode):
        with pytest.raises(ValueError) as info:
            decode([31373, bad, 995])
        assert repr(bad) in str(info.value) and "50257" in str(info.value)


def test_cache_is_bounded(original):
    small = encoder.Encoder(*load_vocab(), cache_size=100)
    words = [f" w{n}q{n * 7919 % 10007}" for n in range(5000)]
    text = "".join(words)
    assert small.encode(text) == original.encode(text)
    assert 0 < len(small.cache) <= 100
    assert small.encode(text) == original.encode(text)  # correct after evictions
    with pytest.raises(ValueError, match="cache_size"):
        encoder.Encoder(*load_vocab(), cache_size=0)


def test_lone_surrogates_are_rejected_as_in_the_original(enc):
    # They have no UTF-8 encoding; UnicodeEncodeError is a ValueError naming the character.
    with pytest.raises(ValueError, match="surrogate"):
        enc.encode("ok \ud800 ok")


def test_encode_rejects_bytes(enc):
    with pytest.raises(TypeError, match="str"):
        enc.encode(b"hello")


# --- files -----------------------------------------------------------------------------------
@pytest.fixture
def model_dir(tmp_path):
    target = tmp_path / "124M"
    target.mkdir()
    for name in SHA256:
        shutil.copy(os.path.join(DATA_DIR, name), target / name)
    return tmp_path, target


def _error(models_dir):
    with pytest.raises(ValueError) as info:
        encoder.get_encoder("124M", str(models_dir))
    return str(info.value)


@pytest.mark.parametrize("name", list(SHA256))
def test_missing_file_is_named_with_the_remedy(model_dir, name):
    models_dir, target = model_dir
    (target / name).unlink()
    message = _error(models_dir)
    assert str(target / name) in message and "not found" in message
    assert "download_model.py 124M" in message


@pytest.mark.parametrize("name", list(SHA256))
@pytest.mark.parametrize("content", [
    b"<html><body>404 Not Found</body></html>\n",
    b"\xff\xfe garbage \x00\x81",
    b"",
])
def test_malformed_file_is_named(model_dir, name, content):
    models_dir, target = model_dir
    (target / name).write_bytes(content)
    message = _error(models_dir)
    assert str(target / name) in message
    assert "download_model.py 124M" in message


def test_truncated_vocab_bpe_is_detected(model_dir):
    models_dir, target = model_dir
    lines = (target / "vocab.bpe").read_text(encoding="utf-8").split("\n")
    (target / "vocab.bpe").write_text("\n".join(lines[:25000]) + "\n", encoding="utf-8")
    message = _error(models_dir)
    assert "truncated" in message and str(target / "vocab.bpe") in message


def test_encoder_json_that_is_not_a_token_map(model_dir):
    models_dir, target = model_dir
    (target / "encoder.json").write_text('["not", "a", "map"]')
    assert "not a map from token strings" in _error(models_dir)


def test_files_are_read_as_utf8_whatever_the_locale(model_dir):
    models_dir, target = model_dir
    # The released encoder.json is ASCII (\\u escapes); write the same map as raw UTF-8, which
    # an ASCII-locale default `open` could not read.
    vocab, _ = load_vocab()
    (target / "encoder.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    script = (
        "import locale, sys; sys.path.insert(0, 'src'); import encoder\n"
        "assert 'utf' not in locale.getpreferredencoding(False).lower()\n"
        f"print(encoder.get_encoder('124M', {str(models_dir)!r}).encode({ascii(' привет')}))\n")
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0",
           "PYTHONCOERCECLOCALE": "0"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-X", "utf8=0", "-c", script], cwd=root, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(reference_tokenizer().encode_ordinary(" привет"))
