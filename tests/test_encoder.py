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

pytestmark = pytest.mark.usefixtures("no_tracebacks")

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
    assert str(target / name) in message and "is missing" in message
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


# --- one long pre-token (issue 13): O(n log n), the same ids --------------------------------
def _random_piece(alphabet, n, seed=0):
    rng = np.random.default_rng(seed)
    return "".join(rng.choice(list(alphabet), n))


LONG = [
    ("letters", "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"),
    ("digits", "0123456789"), ("two letters", "ab"), ("punctuation", "!-=.#/"),
    ("CJK", "中文字語"), ("accents", "éàüß"),
]


@pytest.mark.parametrize("kind, alphabet", LONG)
def test_a_long_piece_gives_the_original_ids(enc, original, reference, kind, alphabet):
    text = _random_piece(alphabet, 3000)
    assert len(enc.pat.findall(text)) == 1  # one pre-token: the long path
    ids = enc.encode(text)
    assert ids == original.encode(text) == reference.encode_ordinary(text)
    word = text.encode("utf-8").decode("latin-1").translate(enc.byte_encoder)
    assert enc.bpe(word) == original.bpe(word)  # the original API goes the same way


@pytest.mark.parametrize("kind, alphabet", LONG[:3])
def test_a_very_long_piece_gives_tiktokens_ids(enc, reference, kind, alphabet):
    text = _random_piece(alphabet, 200_000, seed=1)
    ids = enc.encode(text)
    assert ids == reference.encode_ordinary(text)
    assert enc.decode(ids) == text
    assert text not in enc.cache  # long pieces are not cached


@PROPERTY
@given(st.text(alphabet=st.sampled_from(list("aabbc0 1é中!")), min_size=17, max_size=300))
def test_both_merge_paths_agree_with_the_original(enc, original, text):
    word = text.encode("utf-8").decode("latin-1").translate(enc.byte_encoder)
    merged = enc._merge(list(word))  # the per-pass scan, used for short pieces
    assert enc._merge_long(text.encode("utf-8")) == [enc.encoder[t] for t in merged]
    assert enc.encode(text) == original.encode(text)


def test_the_long_path_merges_in_passes_as_the_original_not_one_pair_at_a_time():
    """A vocabulary where the two orders differ: after "bc", every "a bc" becomes "abc" in
    one pass; merging one pair at a time would make "abca" from the first "abc" and the
    next "a" (a lower rank) before the second "a bc" is merged."""
    vocab = {c: i for i, c in enumerate(encoder.bytes_to_unicode().values())}
    merges = [("b", "c"), ("a", "b"), ("ab", "c"), ("abc", "a"), ("a", "bc")]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    synthetic = encoder.Encoder(vocab, merges)
    reference_ids = OriginalEncoder(vocab, merges)
    for text in ["abcabc", "abcabc" * 20]:  # short path, long path
        assert synthetic.encode(text) == reference_ids.encode(text) == \
            [vocab["abc"]] * (len(text) // 3)


# --- bounds before BPE (issue 13) ------------------------------------------------------------
def test_max_prompt_bytes_is_what_n_tokens_can_hold(enc):
    longest = max(enc.decoder, key=lambda i: len(enc.decode_bytes([i])))
    text = enc.decode([longest])
    assert enc.encode(text) == [longest]
    assert enc.max_prompt_bytes(1) == len(text.encode("utf-8")) == enc.max_token_bytes == 128
    assert enc.max_prompt_bytes(1024) == 1024 * 128
    with pytest.raises(ValueError, match="n_tokens must be a whole number"):
        enc.max_prompt_bytes(2.5)


@PROPERTY
@given(st.text())
def test_no_text_needs_fewer_tokens_than_its_bytes_allow(enc, text):
    n = len(enc.encode(text))
    assert len(text.encode("utf-8")) <= enc.max_prompt_bytes(n)


def test_encode_tail_equals_the_end_of_encode(enc, corpus):
    text = corpus[:300_000]
    ids = enc.encode(text)
    for n in [1, 7, 100, 1000, 3000]:
        assert enc.encode_tail(text, n) == ids[-n:], n
    assert enc.encode_tail("hello world", 5) == [31373, 995]
    assert enc.encode_tail("hello world", 0) == []


def test_encode_tail_of_one_huge_piece_is_a_suffix_of_the_text(enc):
    text = "ab" * 500_000
    ids = enc.encode_tail(text, 1000)
    assert len(ids) == 1000 and text.endswith(enc.decode(ids))


# --- ids in every form; floats refused (issue 13) --------------------------------------------
def test_the_incremental_decoder_takes_what_stream_sequence_yields(enc):
    ids = enc.encode("hello world 你好")
    dec = enc.incremental_decoder()
    text = "".join(dec.decode(np.array([i], np.int32)) for i in ids) + dec.flush()
    assert text == "hello world 你好"
    assert enc.incremental_decoder().decode(np.array(31373)) == "hello"  # a 0-d array
    assert enc.incremental_decoder().decode(np.int64(31373)) == "hello"
    assert enc.decode(np.array([31373, 995], np.uint16)) == "hello world"


@pytest.mark.parametrize("bad, shown", [
    ([31373, 1.0], "1.0"), (np.array([995.0]), "995.0"), ([True, 2.5], "2.5"),
])
def test_float_ids_are_refused_not_truncated(enc, bad, shown):
    for decode in (enc.decode, enc.incremental_decoder().decode):
        with pytest.raises(ValueError, match=f"token id {shown} is outside the vocabulary"):
            decode(bad)


def test_an_array_of_rows_is_refused_with_its_shape(enc):
    with pytest.raises(ValueError, match=r"flat sequence of ids, got an array of shape \(2, 1\)"):
        enc.decode(np.array([[1], [2]]))


# --- encoder.json checked whole (issue 13) ---------------------------------------------------
@pytest.mark.parametrize("change, message", [
    ({"hello": 0}, "tokens '!' and 'hello' both have id 0"),
    ({"<|endoftext|>": 50257}, "token '<|endoftext|>' has id 50257, but the ids of 50257 "
                               "tokens must be 0..50256"),
    ({"hello": -1}, "token 'hello' has id -1"),
    ({"hello": 10 ** 30}, "token 'hello' has id 1000000000000000000000000000000"),
])
def test_encoder_json_ids_must_be_exactly_0_to_n_minus_1(model_dir, change, message):
    models_dir, target = model_dir
    vocab, _ = load_vocab()
    vocab.update(change)
    (target / "encoder.json").write_text(json.dumps(vocab))
    error = _error(models_dir)
    assert error.startswith(f"{target / 'encoder.json'}: {message}")
    assert "download_model.py 124M" in error


def test_encoder_json_must_hold_every_byte_token(model_dir):
    models_dir, target = model_dir
    vocab, _ = load_vocab()
    vocab["not a byte"] = vocab.pop("!")
    (target / "encoder.json").write_text(json.dumps(vocab))
    assert _error(models_dir).startswith(f"{target / 'encoder.json'} lacks the byte token '!'")


@pytest.mark.parametrize("text, problem", [
    ("[" * 5000 + "]" * 5000, "nests arrays or objects too deeply to be read"),
    ('{"!": 1' + "0" * 5000 + "}", "holds a number too long to read"),
])
def test_encoder_json_errors_of_every_kind_name_the_file(model_dir, text, problem):
    models_dir, target = model_dir
    (target / "encoder.json").write_text(text)
    assert _error(models_dir).startswith(f"{target / 'encoder.json'} {problem}")


@pytest.mark.parametrize("name", list(SHA256))
def test_a_directory_in_place_of_a_vocabulary_file_is_named(model_dir, name):
    models_dir, target = model_dir
    (target / name).unlink()
    (target / name).mkdir()
    message = _error(models_dir)
    assert message.startswith(f"{target / name} cannot be read (Is a directory)")
    assert "download" not in message


def test_vocabulary_files_of_a_run_directory_say_where_to_copy_them_from(tmp_path):
    run = tmp_path / "run1"
    run.mkdir()
    shutil.copy(os.path.join(DATA_DIR, "vocab.bpe"), run / "vocab.bpe")
    with pytest.raises(ValueError) as e:
        encoder.get_encoder("run1", str(tmp_path))
    assert "`" not in str(e.value)  # no command to paste: download_model.py cannot fetch it
    assert "copy encoder.json from a downloaded model" in str(e.value)
