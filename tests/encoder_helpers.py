"""Shared by tests/test_encoder.py and bench/bench_encoder.py.

- `make_corpus`: a deterministic mixed-script test corpus of any size.
- `OriginalEncoder`: the original openai/gpt-2 algorithm (unbounded dict cache, per-pass pair
  set and `min` over it, per-character joins), rewritten here as the baseline to compare with.
- `reference_tokenizer`: tiktoken's GPT-2 encoding built offline from the local vocabulary.
"""

from __future__ import annotations

import json
import os
import random

import regex

DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def load_vocab(data_dir: str = DATA_DIR) -> tuple[dict[str, int], list[tuple[str, str]]]:
    with open(os.path.join(data_dir, "encoder.json"), encoding="utf-8") as f:
        vocab = json.load(f)
    with open(os.path.join(data_dir, "vocab.bpe"), encoding="utf-8") as f:
        lines = f.read().split("\n")
    return vocab, [tuple(line.split(" ")) for line in lines[1:] if line]


def byte_alphabet() -> dict[int, str]:
    """Byte -> character, built the way GPT-2 describes it (printable bytes keep their code)."""
    keep = set(range(0x21, 0x7F)) | set(range(0xA1, 0xAD)) | set(range(0xAE, 0x100))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(0x100 + extra)
            extra += 1
    return table


class OriginalEncoder:
    """The original algorithm: what openai/gpt-2's Encoder computes, the way it computes it."""

    def __init__(self, vocab: dict[str, int], merges: list[tuple[str, str]]):
        self.vocab = vocab
        self.inverse = {i: s for s, i in vocab.items()}
        self.to_char = byte_alphabet()
        self.to_byte = {c: b for b, c in self.to_char.items()}
        self.rank = {pair: r for r, pair in enumerate(merges)}
        self.memo: dict[str, str] = {}
        self.splitter = regex.compile(GPT2_PATTERN)

    def bpe(self, piece: str) -> str:
        if piece in self.memo:
            return self.memo[piece]
        symbols = tuple(piece)
        if len(symbols) < 2:
            return piece
        while True:
            pairs = set(zip(symbols, symbols[1:]))
            pair = min(pairs, key=lambda p: self.rank.get(p, float("inf")))
            if pair not in self.rank:
                break
            merged, k = [], 0
            while k < len(symbols):  # every occurrence of `pair`, scanning left to right
                if k + 1 < len(symbols) and (symbols[k], symbols[k + 1]) == pair:
                    merged.append(symbols[k] + symbols[k + 1])
                    k += 2
                else:
                    merged.append(symbols[k])
                    k += 1
            symbols = tuple(merged)
            if len(symbols) == 1:
                break
        out = " ".join(symbols)
        self.memo[piece] = out
        return out

    def encode(self, text: str) -> list[int]:
        ids = []
        for piece in regex.findall(self.splitter, text):
            chars = "".join(self.to_char[b] for b in piece.encode("utf-8"))
            ids.extend(self.vocab[t] for t in self.bpe(chars).split(" "))
        return ids

    def decode(self, ids: list[int]) -> str:
        chars = "".join([self.inverse[i] for i in ids])
        return bytearray([self.to_byte[c] for c in chars]).decode("utf-8", errors="replace")


def reference_tokenizer(data_dir: str = DATA_DIR):
    """tiktoken's GPT-2 encoding, built from the local files (no network)."""
    import tiktoken

    vocab, _ = load_vocab(data_dir)
    to_byte = {c: b for b, c in byte_alphabet().items()}
    ranks = {bytes(to_byte[c] for c in tok): i for tok, i in vocab.items() if tok != "<|endoftext|>"}
    pat = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
    return tiktoken.Encoding(name="gpt2-local", pat_str=pat, mergeable_ranks=ranks,
                             special_tokens={"<|endoftext|>": vocab["<|endoftext|>"]})


# --- the corpus ------------------------------------------------------------------------------
ENGLISH = """the of and to in is was that for on with as by at from his her they this which
have had not but are be one all were we when there can an your what so if about out them
would these other into has more two time like could no see first been call who its now find
long down day did get come made may part over new sound take only little work know place year
live me back give most very after thing our just name good sentence man think say great where
help through much before line right too mean old any same tell boy follow came want show also
around form three small set put end does another well large must big even such because turn
here why ask went men read need land different home us move try kind hand picture again change
off play spell air away animal house point page letter mother answer found study still learn
should America world high every near add food between own below country plant last school
father keep tree never start city earth eye light thought head under story saw left few while
along might close something seem next hard open example begin life always those both paper
together got group often run important until children side feet car mile night walk white sea
began grow took river four carry state once book hear stop without second later miss idea
enough eat face watch far Indian really almost let above girl sometimes mountain cut young talk
soon list song being leave family tokenizer transformer gradient Wikipedia Massachusetts""".split()
CONTRACTIONS = ["don't", "DON'T", "we'll", "WE'LL", "it's", "IT'S", "I'm", "I'M", "they're",
                "THEY'RE", "we've", "WE'VE", "she'd", "SHE'D", "can't", "Won't", "o'clock",
                "'s", "'S", "''", "rock'n'roll", "y'all", "isn’t", "l'été"]
WORDS = {
    "zh": "我们 中国 今天 天气 很好 学习 语言 模型 北京 上海 朋友 时间 问题 世界 电脑 音乐 "
          "文化 历史 发展 经济 社会 科学 技术 人工智能 的 了 是 在 不 有".split(),
    "ja": "こんにちは ありがとう 日本語 東京 カタカナ ひらがな 勉強 します でした 学校 "
          "コンピューター ラーメン 桜 の は を に が".split(),
    "ko": "안녕하세요 감사합니다 한국어 서울 학교 컴퓨터 사랑 음식 친구 시간 는 을 이".split(),
    "ar": "مرحبا شكرا العربية القاهرة كتاب مدرسة الحاسوب السلام عليكم جميل في من إلى على".split(),
    "hi": "नमस्ते धन्यवाद हिन्दी भारत दिल्ली किताब विद्यालय कंप्यूटर भाषा है और में का".split(),
    "ru": "привет спасибо русский Москва книга школа компьютер язык мир время и в не на".split(),
    "el": "γειά σας ευχαριστώ ελληνικά Αθήνα βιβλίο σχολείο".split(),
    "he": "שלום תודה עברית ירושלים ספר".split(),
    "th": "สวัสดี ขอบคุณ ภาษาไทย กรุงเทพ".split(),
}
EMOJI = ["😀", "🚀", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇯🇵", "🇺🇳", "❤️", "🧑🏿‍💻", "👩‍❤️‍💋‍👨",
         "🫠", "✨", "🤷‍♀️", "1️⃣", "#️⃣", "🏴󠁧󠁢󠁳󠁣󠁴󠁿"]
ODD = ["\u00a0", "\u200b", "\u200d", "\ufeff", "\u3000", "\u2028", "e\u0301", "\u0085",
       "\x00", "\x7f", "\ufffd", "𝕳𝖊𝖑𝖑𝖔", "①②③", "٣٤٥", "१२३", "Ⅻ", "½", "\U0001d11e", "ﬁ"]
CODE = [
    "def {w}(x, *, y=None):\n    \"\"\"{W}.\"\"\"\n    return [i ** 2 for i in range(x) if i % 3 == 0]\n",
    "for (int {w} = 0; {w} < n; ++{w}) {{\n\tif ({w} != 0x7f) sum += a[{w}] >> 2;\n}}\n",
    "const {w} = async () => {{ await fetch(`/api/{w}?id=${{id}}`); }};\n",
    "SELECT {w}, COUNT(*) FROM t WHERE name LIKE '%{w}%' GROUP BY 1;\n",
    "<div class=\"{w}\">&nbsp;{W}</div>\n",
    "    {w}_list = {{\"{w}\": [1, 2.5e-3, -7], 'k': None}}  # {W}\n",
    "fn {w}(&mut self) -> Result<(), Box<dyn Error>> {{ Ok(()) }}\n",
]


def _sentence(rng: random.Random) -> str:
    words = [rng.choice(ENGLISH) for _ in range(rng.randint(4, 18))]
    if rng.random() < 0.3:
        words.insert(rng.randrange(len(words)), rng.choice(CONTRACTIONS))
    if rng.random() < 0.2:
        words.insert(rng.randrange(len(words)), str(rng.randint(0, 10 ** rng.randint(1, 12))))
    text = " ".join(words)
    return text[0].upper() + text[1:] + rng.choice([".", ".", "!", "?", ",", ";", "..."])


def _special(rng: random.Random) -> str:
    """One of the awkward cases: whitespace runs, long runs, odd characters, <|endoftext|>."""
    kind = rng.randrange(9)
    if kind == 0:
        return "".join(rng.choice(" \t\n\r") for _ in range(rng.randint(1, 40)))
    if kind == 1:
        length = rng.randint(500, 3000) if rng.random() < 0.1 else rng.randint(20, 200)
        return rng.choice("a !-=\n.0xé中") * length
    if kind == 2:
        return rng.choice(["<|endoftext|>", " <|endoftext|>", "x<|endoftext|>y",
                           "<|endoftext|><|endoftext|>", "\n<|endoftext|>\n", "<|endo"])
    if kind == 3:
        return "".join(rng.choice(EMOJI) for _ in range(rng.randint(1, 8)))
    if kind == 4:
        return rng.choice(ODD) + rng.choice(ENGLISH)
    if kind == 5:
        return "".join(str(rng.randint(0, 9)) for _ in range(rng.randint(1, 60)))
    if kind == 6:
        return " ".join(rng.choice(CONTRACTIONS) for _ in range(rng.randint(1, 5)))
    if kind == 7:  # characters from across the planes that are assigned in old Unicode versions
        ranges = [(0x20, 0x7E), (0xA0, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF), (0x590, 0x6FF),
                  (0x900, 0x97F), (0x3040, 0x30FF), (0x4E00, 0x9FA5), (0xAC00, 0xD7A3),
                  (0x1F300, 0x1F5FF)]
        return "".join(chr(rng.randint(*rng.choice(ranges))) for _ in range(rng.randint(1, 30)))
    return rng.choice(["\r\n", "\n\n\n", "\t\t", "   ", " \n ", "\u3000"])


def _paragraph(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.40:
        parts = [_sentence(rng) for _ in range(rng.randint(2, 8))]
    elif kind < 0.60:
        lang = rng.choice(sorted(WORDS))
        sep = "" if lang in ("zh", "ja", "th") else " "
        parts = [sep.join(rng.choice(WORDS[lang]) for _ in range(rng.randint(3, 25))) +
                 rng.choice(["。", "،", "।", ".", "!", "?"]) for _ in range(rng.randint(1, 5))]
    elif kind < 0.80:
        word = rng.choice(ENGLISH)
        parts = [rng.choice(CODE).format(w=word, W=word.title()) for _ in range(rng.randint(1, 5))]
    else:
        parts = [_special(rng) if rng.random() < 0.5 else _sentence(rng)
                 for _ in range(rng.randint(1, 6))]
    return " ".join(parts)


def make_corpus(size: int = 1 << 20, seed: int = 2019) -> str:
    """Mixed text of at least `size` UTF-8 bytes; the same text for the same arguments."""
    rng = random.Random(seed)
    parts, total = [], 0
    while total < size:
        p = _paragraph(rng) + rng.choice(["\n", "\n\n", "\n\n", " ", "\n\n\n", "\r\n"])
        parts.append(p)
        total += len(p.encode("utf-8"))
    return "".join(parts)
