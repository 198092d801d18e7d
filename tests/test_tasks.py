"""Each task's reader on a fixture in its published format, and its metrics against a plain
loop written here from the published definitions.

Most checks score with a fake scorer whose log-prob for a token depends on the token, the
one before it and how many tokens the window shows before it, so that a wrong split, window
or truncation changes the numbers; the greedy flag takes both values. The loops here
recompute the same numbers from the definitions alone. A few checks use the tiny model.
"""
import json
import math
import os
import re
from types import SimpleNamespace

import numpy as np
import pytest

import score
import tasks
import tasks_text

N_CTX = 64  # the tiny model's, and the fake scorer's
REL = 1e-6


def fake_logprob(token, previous, seen):
    return -((token * 31 + previous * 17 + seen) % 97 + 1) / 10


def fake_greedy(token, previous):
    return (token + previous) % 3 == 0


class FakeScorer:
    hparams = SimpleNamespace(n_ctx=N_CTX)

    def score(self, windows, *, batch_size=8, progress=None):
        out = []
        for w in windows:
            assert len(w.tokens) - 1 <= N_CTX
            rows = range(len(w.tokens) - w.n_scored, len(w.tokens))
            out.append(score.Scored(
                np.array([fake_logprob(w.tokens[i], w.tokens[i - 1], i) for i in rows]),
                np.array([fake_greedy(w.tokens[i], w.tokens[i - 1]) for i in rows])))
        return out


@pytest.fixture(scope="module")
def enc(cli_models):
    import encoder
    return encoder.get_encoder("tiny", cli_models)


@pytest.fixture(scope="module")
def tiny_scorer(cli_models):
    import checkpoint
    hparams, params = checkpoint.load(os.path.join(cli_models, "tiny"))
    return score.Scorer(params, hparams)


def document_ll(tokens, eot):
    """The disjoint rule for a fake scorer: tokens in chunks of n_ctx; the first chunk's
    token j sees the prefix and j tokens; a later chunk ending at `end` is read from
    end - n_ctx - 1, so its token j sees j - (end - n_ctx - 1) tokens."""
    total = 0.0
    for j, token in enumerate(tokens):
        previous = tokens[j - 1] if j else eot
        end = min((j // N_CTX + 1) * N_CTX, len(tokens))
        seen = j + 1 if j < N_CTX else j - (end - N_CTX - 1)
        total += fake_logprob(token, previous, seen)
    return total, len(tokens)


def pair_scores(context, continuation):
    """A continuation after its context, the last n_ctx + 1 tokens kept."""
    full = context + continuation
    start = max(0, len(full) - N_CTX - 1)
    positions = range(len(context), len(full))
    ll = sum(fake_logprob(full[i], full[i - 1], i - start) for i in positions)
    return ll, all(fake_greedy(full[i], full[i - 1]) for i in positions)


def harness_pair(enc, context, continuation):
    """lm-evaluation-harness's encoding, restated: trailing spaces of the context go to the
    continuation; the continuation's tokens follow the context's in the joint encoding."""
    n = len(context) - len(context.rstrip())
    if n:
        context, continuation = context[:-n], context[-n:] + continuation
    context_tokens = enc.encode(context)
    return context_tokens, enc.encode(context + continuation)[len(context_tokens):]


def close(a, b):
    return math.isclose(a, b, rel_tol=REL)


def assert_text_metrics(m, ll, tokens, words, n_bytes):
    """Every metric of a text-like task, from its definition."""
    assert (m["tokens"], m["words"], m["bytes"]) == (tokens, words, n_bytes)
    for name, value in [("log_likelihood", ll), ("token_perplexity", math.exp(-ll / tokens)),
                        ("word_perplexity", math.exp(-ll / words)),
                        ("bits_per_byte", -ll / n_bytes / math.log(2))]:
        assert close(m[name], value), name


def run(task, path, enc, scorer=None, **options):
    return tasks.evaluate(task, tasks.read(task, str(path)), scorer=scorer or FakeScorer(),
                          encoder=enc, **options)


LAMBADA = [
    "In my palm is a clear stone, and inside it is a small ivory statuette. A guardian "
    "angel. \"Figured if you're going to be out at night getting hit by cars, you might as "
    "well have some backup.\" I look at him, feeling stunned. Like this is some sort of "
    "sign. But as I stare at Harlin, his mouth curved in a confident grin, I don't care "
    "about signs",
    "Give me a minute to change and I'll meet you at the docks.\" She'd forced those words "
    "through her teeth. \"No need to change. We won't be that long.\" Shane gripped her arm "
    "and started leading her to the dock. \"I can make it there on my own, Shane",
    "\"Only one,\" he said. \"The rest are decoys.\" He winked at Charlotte",
    "Fog rolled over the harbour until the lamps were only smudges of yellow and the bell "
    "rang twice",
]


def write_lambada(path, passages):
    path.write_text("".join(json.dumps({"text": p}) + "\n" for p in passages))
    return path


def test_lambada_is_lm_eval_lambada_openai(tmp_path, enc):
    path = write_lambada(tmp_path / "lambada_test.jsonl", LAMBADA + ["Alone"])
    result = run("lambada", path, enc)
    lls, hits = [], []
    for passage in LAMBADA:
        context, target = passage.rsplit(" ", 1)
        ll, greedy = pair_scores(*harness_pair(enc, context, " " + target))
        lls.append(ll)
        hits.append(greedy)
    assert 0 < sum(hits) < len(hits)  # both outcomes occur
    assert result.examples == 4 and result.metrics["skipped"] == 1
    assert result.skipped[0].line == 5 and "one word" in result.skipped[0].reason
    assert close(result.metrics["accuracy"], sum(hits) / 4)
    assert close(result.metrics["perplexity"], math.exp(-sum(lls) / 4))
    assert set(result.metrics) == {"accuracy", "perplexity", "skipped"}


def test_lambada_keeps_the_last_tokens_of_a_long_passage(tmp_path, enc):
    passage = " ".join(["word"] * 150) + " lighthouse"  # 151 tokens, n_ctx 64
    result = run("lambada", write_lambada(tmp_path / "l.jsonl", [passage]), enc)
    context, continuation = harness_pair(enc, passage.rsplit(" ", 1)[0], " lighthouse")
    assert len(context) + len(continuation) > N_CTX + 1
    assert close(result.metrics["perplexity"],
                 math.exp(-pair_scores(context, continuation)[0]))


def test_lambada_last_token_scores_the_passages_last_token(tmp_path, enc):
    path = write_lambada(tmp_path / "l.jsonl", LAMBADA)
    result = run("lambada-last-token", path, enc)
    scored = [pair_scores(t[:-1], t[-1:]) for t in map(enc.encode, LAMBADA)]
    assert close(result.metrics["accuracy"], sum(g for _, g in scored) / len(scored))
    assert close(result.metrics["perplexity"],
                 math.exp(-sum(ll for ll, _ in scored) / len(scored)))


def test_lambada_on_the_tiny_model(tmp_path, enc, tiny_scorer):
    path = write_lambada(tmp_path / "l.jsonl", LAMBADA)
    result = run("lambada", path, enc, scorer=tiny_scorer, batch_size=3)
    lls, hits = [], []
    for passage in LAMBADA:
        context, target = passage.rsplit(" ", 1)
        c, t = harness_pair(enc, context, " " + target)
        window = score.Window(tuple((c + t)[-(N_CTX + 1):]), len(t))
        scored = tiny_scorer.score([window], batch_size=1)[0]
        lls.append(scored.logprobs.sum())
        hits.append(scored.greedy.all())
    assert close(result.metrics["perplexity"], math.exp(-sum(lls) / len(lls)))
    assert result.metrics["accuracy"] == sum(hits) / len(hits)


# WikiText's raw format: every line starts and ends with a space; articles begin at
# " = Title = " and sections at " = = Section = = ".
WIKITEXT = (
    " \n = Robert Boulter = \n \n Robert Boulter is an English film , television and theatre "
    "actor . He had a guest @-@ starring role on the television series The Bill in 2000 . \n"
    " \n = = Career = = \n \n In 2006 , Boulter starred alongside Whishaw in the play "
    "Citizenship written by Mark Ravenhill ( a play ) . He earned 1 @,@ 000 dollars and 3 @.@ "
    "5 % of \" the takings \" . \n \n = Du Fu = \n \n Du Fu ( Wade – Giles : Tu Fu ; 712 – 770 )"
    " was a prominent Chinese poet of the Tang dynasty . It was 20 ° C ; the poets ' works "
    "survive . \n \n")
# The two articles after the harness's detokenizer, worked out by hand from its rules.
WIKITEXT_DETOKENIZED = [
    " = Robert Boulter =\n\nRobert Boulter is an English film, television and theatre actor. "
    "He had a guest-starring role on the television series The Bill in 2000.\n\n== Career =="
    "\n\nIn 2006, Boulter starred alongside Whishaw in the play Citizenship written by Mark "
    "Ravenhill (a play). He earned 1,000 dollars and 3.5 % of \"the takings\".\n",
    " = Du Fu =\n\nDu Fu (Wade – Giles: Tu Fu; 712 – 770) was a prominent Chinese poet of the "
    "Tang dynasty. It was 20°C; the poets' works survive.\n\n",
]


@pytest.mark.parametrize("task", ["wikitext2", "wikitext103"])
def test_wikitext_articles_detokenized_and_counted_as_the_harness_does(tmp_path, enc, task):
    path = tmp_path / "wiki.test.raw"
    path.write_text(WIKITEXT, encoding="utf-8")
    documents = tasks.read(task, str(path))
    assert [d.text for d in documents] == WIKITEXT_DETOKENIZED
    assert [d.line for d in documents] == [2, 10]
    second = WIKITEXT.index("\n = Du Fu = ")  # an article runs from its heading line
    originals = [WIKITEXT[2:second], WIKITEXT[second + 1:]]  # to the next one's
    assert [d.original for d in documents] == originals
    result = run(task, path, enc)
    ll = tokens = 0
    for text in WIKITEXT_DETOKENIZED:
        doc_ll, doc_tokens = document_ll(enc.encode(text), enc.eot_token)
        ll, tokens = ll + doc_ll, tokens + doc_tokens
    assert tokens > N_CTX  # the first article spans two windows
    words = sum(len(re.split(r"\s+", o)) for o in originals)
    n_bytes = sum(len(o.encode("utf-8")) for o in originals)
    assert_text_metrics(result.metrics, ll, tokens, words, n_bytes)


def test_wikitext_on_the_tiny_model_with_both_window_rules(tmp_path, enc, tiny_scorer):
    path = tmp_path / "wiki.test.raw"
    path.write_text(WIKITEXT, encoding="utf-8")
    for stride in (None, 16):
        result = run("wikitext2", path, enc, scorer=tiny_scorer, stride=stride)
        lps = score.token_logprobs(tiny_scorer, [enc.encode(t) for t in WIKITEXT_DETOKENIZED],
                                   prefix_token=enc.eot_token, stride=stride)
        assert close(result.metrics["log_likelihood"], sum(float(x.sum()) for x in lps))
        assert result.metrics["tokens"] == sum(len(x) for x in lps)


PTB = (" no it was n't black monday \n but while the new york stock exchange did n't fall "
       "apart friday as the dow jones industrial average plunged N points \n the N stock "
       "specialist firms could n't handle the selling pressure \n heavy selling of standard & "
       "poor 's 500-stock index futures in chicago <unk> beat stocks downward \n")
PTB_DETOKENIZED = (
    "no it wasn't black monday\nbut while the new york stock exchange didn't fall apart "
    "friday as the dow jones industrial average plunged N points\nthe N stock specialist "
    "firms couldn't handle the selling pressure\nheavy selling of standard & poor's "
    "500-stock index futures in chicago <unk> beat stocks downward\n")


def test_ptb_counts_tokens_and_eos_of_the_dataset(tmp_path, enc):
    path = tmp_path / "ptb.test.txt"
    path.write_text(PTB)
    [document] = tasks.read("ptb", str(path))
    assert document.text == PTB_DETOKENIZED
    result = run("ptb", path, enc)
    ll, tokens = document_ll(enc.encode(PTB_DETOKENIZED), enc.eot_token)
    words = len(PTB.split()) + PTB.count("\n")  # the dataset's tokens and one <eos> a line
    assert words == 54 + 4
    assert_text_metrics(result.metrics, ll, tokens, words, len(PTB.encode()))


def test_enwik8_scores_the_last_bytes_whole_characters_only(tmp_path, enc, monkeypatch):
    head = b'<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.3/">\n  <page>\n' * 3
    tail = "本語 and ü in <text>[[Tokyo]] ''city''</text>\n  </page>\n".encode()
    path = tmp_path / "enwik8"
    path.write_bytes(head + "日".encode() + tail)
    monkeypatch.setattr(tasks_text, "TEST_SPLIT", len(tail) + 2)  # cut inside 日
    result = run("enwik8", path, enc)
    ll, tokens = document_ll(enc.encode(tail.decode()), enc.eot_token)
    words = len(re.split(r"\s+", tail.decode()))
    assert_text_metrics(result.metrics, ll, tokens, words, len(tail))


def test_text8_scores_the_last_characters(tmp_path, enc, monkeypatch):
    text = (" anarchism originated as a term of abuse first used against early working class "
            "radicals including the diggers of the english revolution")
    path = tmp_path / "text8"
    path.write_text(text)
    monkeypatch.setattr(tasks_text, "TEST_SPLIT", 60)
    result = run("text8", path, enc)
    ll, tokens = document_ll(enc.encode(text[-60:]), enc.eot_token)
    assert result.metrics["characters"] == 60
    assert close(result.metrics["bits_per_character"], -ll / 60 / math.log(2))
    assert_text_metrics(result.metrics, ll, tokens, len(re.split(r"\s+", text[-60:])), 60)


def cbt_story(n, query, answer, candidates):
    lines = [f"{i} Sentence number {i} of story {n} , which is n't long ." for i in range(1, 21)]
    return "\n".join(lines + [f"21 {query}\t{answer}\t\t{'|'.join(candidates)}", "", ""])


CANDIDATES = ["bird", "cat", "dog", "fish", "house", "king", "mouse", "queen", "tree", "wolf"]
NAMES = ["Alice", "Bob", "Carol", "Dave", "Eve", "Frank", "Grace", "Heidi", "Ivan", "Judy"]


@pytest.mark.parametrize("task, query, candidates, context_end, filled", [
    # A common noun mid-query: the rest of the query follows the candidate.
    ("cbt-cn", "`` Would n't you like to be a XXXXX , too ? '' said the cat .", CANDIDATES,
     ' "Wouldn\'t you like to be a ', 'queen, too?" said the cat.'),
    # A named entity opening the query: the context ends with a space, which the
    # harness's encoding moves to the continuation.
    ("cbt-ne", "XXXXX said that the king 's horse could n't run .", NAMES, " ",
     "Heidi said that the king's horse couldn't run."),
])
def test_cbt_picks_the_likeliest_candidate_with_the_rest_of_the_query(
        tmp_path, enc, task, query, candidates, context_end, filled):
    text = "".join(cbt_story(n, query, candidates[n], candidates) for n in range(4))
    path = tmp_path / f"cbtest_{task[-2:].upper()}_valid_2000ex.txt"
    path.write_text(text)
    questions = tasks.read(task, str(path))
    story = " ".join(f"Sentence number {i} of story 0, which isn't long." for i in range(1, 21))
    assert questions[0].context == story + context_end
    assert questions[0].continuations[7] == filled
    assert [q.line for q in questions] == [21, 43, 65, 87]
    assert [q.answer for q in questions] == [0, 1, 2, 3]
    result = run(task, path, enc)
    hits = 0
    for q in questions:
        lls = [pair_scores(*harness_pair(enc, q.context, c))[0] for c in q.continuations]
        assert len(set(lls)) > 1
        hits += int(np.argmax(lls)) == q.answer
    assert close(result.metrics["accuracy"], hits / 4)
    assert set(result.metrics) == {"accuracy", "skipped"}


def test_text_is_the_whole_file_as_one_document(tmp_path, enc):
    text = "Any text at all: ünïcödé, emoji 🙂, tabs\tand\n\nblank lines.\n" * 4
    path = tmp_path / "notes.txt"
    path.write_text(text, encoding="utf-8")
    result = run("text", path, enc)
    ll, tokens = document_ll(enc.encode(text), enc.eot_token)
    assert tokens > N_CTX  # two windows
    assert_text_metrics(result.metrics, ll, tokens, len(re.split(r"\s+", text)),
                        len(text.encode("utf-8")))
