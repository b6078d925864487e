#!/usr/bin/env python3
"""Writes the tokenizer goldens used by tests/model/tokenizer_test.cpp (dev-time only; CI never runs this).

Oracle: PyPI `tokenizers` (Hugging Face's Rust implementation), run in /root/venv-ref:
    /root/venv-ref/bin/python tools/make_tokenizer_golden.py

Outputs (JSON lines; one object per line):
  tests/data/golden/tokenizer/qwen_golden.jsonl   real Qwen tokenizer (../shared/data/qwen-tokenizer/)
  tests/data/golden/tokenizer/tiny_golden.jsonl   tests/data/golden/tokenizer/tiny_flags/tokenizer.json
  tests/data/golden/tokenizer/tiny_flags/tokenizer.json
      the tiny Qwen-style tokenizer of tests/data/tiny/qwen2_5_vl-bf16-hf452 re-saved with "a b" string merges
      (the older tokenizer.json form) and extra added tokens exercising lstrip / rstrip / single_word /
      normalized / non-special flags.
Line kinds:
  {"text": T, "ids": [...], "ids_no_special": [...]?, "decoded": D?, "decoded_skip_special": S?}
      ids = encode(T) (special tokens in T recognised, the default); ids_no_special only when it differs
      (encode_special_tokens=True); decoded only when decode(ids) != T; decoded_skip_special only when it
      differs from the decoded text.
  {"decode_ids": [...], "decoded": D, "decoded_skip_special": S}
      decode-only cases (cut UTF-8 sequences, unknown ids).
Bulk text comes from Debian's `fortunes` and `fortunes-zh` packages (apt install fortunes fortunes-zh).
"""
import json
import os
import random
import sys

from tokenizers import Tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests/data/golden/tokenizer")
QWEN = os.path.join(ROOT, "../shared/data/qwen-tokenizer/tokenizer.json")
TINY_SRC = os.path.join(ROOT, "tests/data/tiny/qwen2_5_vl-bf16-hf452/tokenizer.json")
FORTUNES = "/usr/share/games/fortunes"

HANDWRITTEN = [
    # sanity vectors of qwen2_5_vl.md §6
    "Hello world", " Hello world", "Hello world!", "<|vision_start|><|image_pad|><|vision_end|>Describe.",
    "You are a helpful assistant.", "Describe this image.",
    # multilingual
    "The quick brown fox jumps over the lazy dog.",
    "Le cœur a ses raisons que la raison ne connaît point. Ça va? L'été à Noël, où êtes-vous?",
    "Falsches Üben von Xylophonmusik quält jeden größeren Zwerg. Straße, Maß, Fußgängerübergänge.",
    "我能吞下玻璃而不伤身体。今天天气很好，我们去公园散步吧！",
    "私はガラスを食べられます。それは私を傷つけません。カタカナとひらがな、漢字。",
    "أنا قادر على أكل الزجاج و هذا لا يؤلمني. مرحبا بالعالم!",
    "Я могу есть стекло, оно мне не вредит. Съешь же ещё этих мягких французских булок.",
    "मैं काँच खा सकता हूँ और मुझे उससे कोई चोट नहीं पहुंचती। नमस्ते दुनिया",
    "한국어 텍스트도 있습니다. Ελληνικά: Καλημέρα κόσμε. עברית: שלום עולם",
    "Tiếng Việt có dấu: Xin chào thế giới. ไทย: สวัสดีชาวโลก",
    # emoji: ZWJ sequences, flags, skin tones, keycaps, variation selectors
    "👋🏽 Hi! 👨‍👩‍👧‍👦 family, 🏳️‍🌈 flag, 🇫🇷🇩🇪🇯🇵 flags, 👍🏿👍🏻 thumbs, 1️⃣ keycap, ❤️ heart, 🧑‍💻 coder",
    "🤖🤖🤖🤖 robots😀😃😄😁 and 🫠 melting, ©®™ ✓✗ ★☆ ♠♣♥♦",
    # code with tabs and indentation
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "int main(int argc, char** argv) {\n\tfor (int i = 0; i < argc; ++i) {\n\t\tstd::cout << argv[i] << '\\n';\n\t}\n\treturn 0;\n}\n",
    "#include <vector>\ntemplate <typename T>\nauto sum(const std::vector<T>& v) -> T { return std::accumulate(v.begin(), v.end(), T{}); }",
    "    x = {'a': [1, 2, 3], \"b\": None}  # comment\n\n\n\tif x['a'][0] >= 1 and not y: pass",
    "SELECT id, name FROM users WHERE age >= 18 ORDER BY name DESC LIMIT 10;",
    "https://example.com/path?query=1&x=%20y#frag user@example.org C:\\Windows\\System32",
    # whitespace runs
    "a  b   c    d     e", "tabs\there\t\tand\t\t\tthere", "windows\r\nline\r\nendings\r\n", "old mac\rline",
    "trailing spaces   ", "   leading spaces", "\n", "\n\n", " \n ", "\t", "   ", " ", "a\n\n\nb", "a \n b",
    "x\u00a0\u00a0y nbsp", "ideographic\u3000space", "em\u2003space\u2009thin", "line\u2028sep\u2029para",
    "mixed \t \n \r\n \t  end", "word\n    indented\n        more\n",
    # numbers
    "1234567890", "3.14159 2.71828 -42 +7 1e10 0x1F 1,000,000 ½ ¾ ² ³ ٣ ४ 〇", "2024-01-15T12:34:56Z",
    "Version 1.2.3-rc.4+build.567", "$1,234.56 €99,99 ¥1000 £5",
    # contractions
    "I'm sure you'll see it's what we've done, they'd say, and we're OK; don't.",
    "I'M SURE YOU'LL SEE IT'S WHAT WE'VE DONE; THEY'D SAY WE'RE OK", "'s 'S 'LL 'll 'Ll 've 'VE 're 'd 'D 'm 'M 't 'T",
    "rock'n'roll o'clock 'quoted' \"double\" ‘curly’ “quotes”",
    # special tokens written in text
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    "<|vision_start|><|image_pad|><|vision_end|>",
    "<|vision_start|><|image_pad|><|image_pad|><|image_pad|><|vision_end|><|vision_start|><|video_pad|><|vision_end|>",
    "before<|endoftext|>after", "<|im_start|><|im_start|>", "<|im_start", "|im_start|>", "<|im_start|", "<<|im_end|>>",
    "<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call>", "<|fim_prefix|>a<|fim_suffix|>b<|fim_middle|>",
    "<think>\nreasoning\n</think>\n\nanswer", " <|im_end|> spaced ", "<|box_start|>(10,20),(30,40)<|box_end|>",
    "<|object_ref_start|>the cat<|object_ref_end|>", "<|IM_START|> not special in upper case",
    # invalid-looking things
    "\ufffd replacement \ufffd\ufffd", "\x00 nul \x01 ctrl \x7f del \x1b[31mred\x1b[0m", "\ufeffBOM at start",
    "zero\u200bwidth\u200cnon\u200djoiner", "rtl \u202eoverride\u202c end", "private \ue000\uf8ff use",
    "astral 𝕳𝖊𝖑𝖑𝖔 𝟙𝟚𝟛 𓀀 𐍈", "<|>", "<||>", "|||", "<<>>", "''''", "'", "''s", "...", "!!!???", "-----", "=====",
    "\\u00e9 \\n \\t literal escapes",
    # NFC-relevant combining sequences
    "e\u0301 cafe\u0301 re\u0301sume\u0301", "A\u030a Å \u212b ångström", "n\u0303 ñ", "\u1100\u1161\u11a8 hangul jamo",
    "o\u0308\u0304 stacked", "\u0041\u0328\u0301 ogonek acute", "ﬁ ligature ﬀ", "x\u0301\u0301\u0301", "\u0301 leading mark",
    "ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３", "Ω\u2126 ohm", "\u00c5\u212b", "\u0958 devanagari nukta \u0915\u093c",
    # long repeated runs (word cache, long BPE)
    "a" * 300, " " * 100 + "x", "ab" * 200, "\n" * 50, "😀" * 40, "ー" * 60, "—" * 30,
    "",
]


def fortune_entries(name, limit, rng):
    path = os.path.join(FORTUNES, name)
    with open(path, encoding="utf-8", errors="strict") as f:
        entries = [e.strip("\n") for e in f.read().split("\n%\n")]
    entries = [e for e in entries if 0 < len(e) <= 700]
    rng.shuffle(entries)
    return entries[:limit]


def corpus_bulk():
    rng = random.Random(20240601)
    out = []
    for name, n in [("computers", 40), ("science", 30), ("people", 30), ("songs-poems", 25), ("literature", 25),
                    ("linux", 25), ("perl", 20), ("art", 10), ("ascii-art", 6), ("definitions", 20), ("tao", 10),
                    ("startrek", 10), ("zippy", 10), ("wisdom", 15), ("cookie", 20), ("chinese", 70), ("tang300", 30)]:
        out += fortune_entries(name, n, rng)
    return out


def random_mixes():
    # Random strings over a pool of troublesome characters (combining marks, ZWJ, CR/LF, digits, CJK, emoji,
    # apostrophes for the contraction rule, NBSP and other Unicode spaces).
    rng = random.Random(7)
    pool = ["a", "Z", " ", "  ", "\n", "\r\n", "\t", "1", "23", "é", "e\u0301", "\u0301", "中", "文", "😀", "👍🏽",
            "\u200d", "'s", "'LL", "'", ".", "...", "!", "<|im_start|>", "<|im_end", "\u00a0", "\u3000", "ß", "Ω",
            "ﬁ", "ا", "ह", "\u093c", "ん", "\u3099", "\ufeff", "\x00", "\x1b", "#", "{", "}", "\\", "\"", "_"]
    return ["".join(rng.choice(pool) for _ in range(n)) for n in (50, 120, 300, 600, 900)]


def nfc_variants(texts):
    # A few bulk lines decomposed (NFD) so that NFC has work to do.
    import unicodedata
    out = []
    for t in texts:
        d = unicodedata.normalize("NFD", t)
        if d != t:
            out.append(d)
    return out[:15]


def golden_lines(tok, texts, decode_cases):
    lines = []
    for text in texts:
        tok.encode_special_tokens = False
        enc = tok.encode(text, add_special_tokens=True)
        rec = {"text": text, "ids": enc.ids}
        tok.encode_special_tokens = True
        ids_ns = tok.encode(text, add_special_tokens=True).ids
        tok.encode_special_tokens = False
        if ids_ns != enc.ids:
            rec["ids_no_special"] = ids_ns
        dec = tok.decode(enc.ids, skip_special_tokens=False)
        if dec != text:
            rec["decoded"] = dec
        dec_skip = tok.decode(enc.ids, skip_special_tokens=True)
        if dec_skip != dec:
            rec["decoded_skip_special"] = dec_skip
        lines.append(rec)
    for ids in decode_cases:
        lines.append({"decode_ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False),
                      "decoded_skip_special": tok.decode(ids, skip_special_tokens=True)})
    return lines


def cut_utf8_cases(tok, vocab_size):
    cases = []
    for text in ["😀👍🏽中文", "é世界🇫🇷", "👨‍👩‍👧‍👦"]:
        ids = tok.encode(text).ids
        for k in range(1, len(ids) + 1):
            cases.append(ids[:k])
        cases.append(ids[1:])  # starts with continuation bytes
        cases.append(list(reversed(ids)))
    cases.append([vocab_size + 5, 9707, vocab_size + 1000])  # unknown ids are skipped
    return cases


def write_jsonl(path, lines):
    with open(path, "w", encoding="utf-8") as f:
        for rec in lines:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    print(f"{path}: {len(lines)} lines, {os.path.getsize(path)} bytes")


def make_tiny_flags():
    with open(TINY_SRC, encoding="utf-8") as f:
        tj = json.load(f)
    tj["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m for m in tj["model"]["merges"]]
    next_id = max(max(tj["model"]["vocab"].values()), max(t["id"] for t in tj["added_tokens"])) + 1
    extra = [
        dict(content="<lstrip>", lstrip=True, rstrip=False, single_word=False, normalized=False, special=True),
        dict(content="<rstrip>", lstrip=False, rstrip=True, single_word=False, normalized=False, special=True),
        dict(content="<both>", lstrip=True, rstrip=True, single_word=False, normalized=False, special=False),
        dict(content="word", lstrip=False, rstrip=False, single_word=True, normalized=False, special=False),
        dict(content="café", lstrip=False, rstrip=False, single_word=False, normalized=True, special=False),
        dict(content="<plain>", lstrip=False, rstrip=False, single_word=False, normalized=False, special=False),
        dict(content="<plain>x", lstrip=False, rstrip=False, single_word=False, normalized=False, special=True),
        dict(content="héllo", lstrip=False, rstrip=False, single_word=False, normalized=False, special=False),
    ]
    for e in extra:
        tj["added_tokens"].append({"id": next_id, **e})
        next_id += 1
    os.makedirs(os.path.join(OUT, "tiny_flags"), exist_ok=True)
    path = os.path.join(OUT, "tiny_flags/tokenizer.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(tj, f, ensure_ascii=False, indent=1)
        f.write("\n")
    return path


TINY_TEXTS = [
    "Hello world", "a <lstrip> b", "a   <lstrip>b", "a <rstrip>   b", "x <both>  y", "<both><both>",
    "word", "a word here", "words", "sword", "word_x", "_word", "(word)", "wordword", "café au lait",
    "cafe\u0301 au lait", "<plain> and <plain>x and <plain>y", "héllo there", "<|im_start|>user\nhi<|im_end|>",
    "<|vision_start|><|image_pad|><|vision_end|>Describe.", "tabs\tand  spaces\n\n", "数字 123 😀",
]


def main():
    os.makedirs(OUT, exist_ok=True)
    if not os.path.exists(os.path.join(FORTUNES, "chinese")):
        sys.exit("install Debian packages fortunes and fortunes-zh first")
    bulk = corpus_bulk()
    texts = HANDWRITTEN + random_mixes() + bulk + nfc_variants(bulk)
    qwen = Tokenizer.from_file(QWEN)
    write_jsonl(os.path.join(OUT, "qwen_golden.jsonl"),
                golden_lines(qwen, texts, cut_utf8_cases(qwen, qwen.get_vocab_size(with_added_tokens=True))))
    tiny_path = make_tiny_flags()
    tiny = Tokenizer.from_file(tiny_path)
    write_jsonl(os.path.join(OUT, "tiny_golden.jsonl"),
                golden_lines(tiny, TINY_TEXTS + HANDWRITTEN[:40], cut_utf8_cases(tiny, tiny.get_vocab_size(True))))


if __name__ == "__main__":
    main()
