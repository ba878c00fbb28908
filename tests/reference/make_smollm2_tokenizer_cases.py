#!/usr/bin/env python3
"""Reference token ids for SmolLM2-135M-Instruct's tokenizer, made by Hugging Face (never by loom).

Builds ~2,200 input texts deterministically (fixed seed, word lists and snippets in this file, plus
lines sampled from a fixed list of CPython standard-library modules), encodes each with Hugging Face
`tokenizers` set up as SmolLM2's own tokenizer.json is: the vocabulary, merges and added tokens that
`transformers` converts from the GGUF (`AutoTokenizer.from_pretrained(dir, gguf_file=name)`), with
the model's pre-tokenizer Sequence[Digits(individual_digits=True), ByteLevel(use_regex=True)].
transformers' conversion alone does not know tokenizer.ggml.pre = "smollm" and falls back to plain
ByteLevel, which differs from the model's tokenizer in ~60 cases (whitespace before digits,
non-ASCII numerals); --compare-gguf-conversion lists them. Writes one JSON object per line:

    {"text": str, "add_special": false, "parse_special": true, "ids": [int, ...]}

ids = tok.encode(text, add_special_tokens=False). The GGUF's control tokens (<|im_start|> ...) are
added tokens in that tokenizer, so they are split out of the text (parse_special = true).

Usage (see tests/reference/README.md for the pinned package versions):
    python make_smollm2_tokenizer_cases.py                 # build texts, encode, write the .jsonl
    python make_smollm2_tokenizer_cases.py --reencode      # re-encode the texts already in the
                                                           # .jsonl, fail if any ids change
    python make_smollm2_tokenizer_cases.py --compare-gguf-conversion
                                                           # also report where transformers' plain
                                                           # GGUF conversion gives other ids
Options: --gguf PATH (default test-models/cache/SmolLM2-135M-Instruct.Q4_1.gguf), --out PATH.
"""

import argparse
import json
import os
import random
import sys
import sysconfig
import unicodedata
from collections import Counter

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
DEFAULT_GGUF = os.path.join(ROOT, "test-models", "cache", "SmolLM2-135M-Instruct.Q4_1.gguf")
DEFAULT_OUT = os.path.join(HERE, "smollm2_tokenizer_cases.jsonl")
SEED = 20240603


# ----------------------------------------------------------------------------------------------
# English prose
# ----------------------------------------------------------------------------------------------

NAMES = ["Alice", "Bob", "Carol", "Dave", "Eve", "Mallory", "Trent", "Peggy", "Victor", "Walter",
         "Zoë", "O'Brien", "McDonald", "Jean-Luc", "Dr. Smith", "Mrs. Robinson", "the professor",
         "my neighbour", "the committee", "our team", "the cat", "a stranger", "everyone", "nobody"]
SUBJ = ["I", "you", "we", "they", "he", "she", "it", "You", "We", "They", "He", "She", "It"]
VERBS_PAST = ["walked", "ran", "wrote", "read", "found", "lost", "built", "broke", "painted",
              "carried", "fixed", "measured", "ignored", "borrowed", "remembered", "forgot",
              "discovered", "explained", "rewrote", "tokenized", "compiled", "debugged"]
VERBS_BASE = ["walk", "run", "write", "read", "find", "lose", "build", "break", "paint", "carry",
              "fix", "measure", "ignore", "borrow", "remember", "forget", "discover", "explain",
              "see", "go", "think", "know", "want", "try", "ship", "test", "deploy", "refactor"]
ADJ = ["quick", "lazy", "bright", "quiet", "enormous", "tiny", "ancient", "modern", "red",
       "bitter", "gentle", "suspicious", "well-known", "state-of-the-art", "half-finished",
       "beautiful", "strange", "careful", "noisy", "empty", "brand-new", "fifty-year-old"]
NOUNS = ["fox", "dog", "river", "mountain", "library", "kernel", "compiler", "garden", "bridge",
         "letter", "window", "engine", "tokenizer", "teapot", "violin", "harbour", "spreadsheet",
         "committee", "algorithm", "sandwich", "umbrella", "lighthouse", "notebook", "server"]
ADV = ["quickly", "slowly", "carefully", "suddenly", "quietly", "eventually", "happily",
       "reluctantly", "almost", "never", "always", "sometimes", "rarely", "finally"]
PLACES = ["in the morning", "after lunch", "near the station", "at midnight", "on Tuesday",
          "before the meeting", "under the bridge", "in São Paulo", "in New York City",
          "at 5 p.m.", "during the storm", "on the 3rd floor", "behind the café"]
CONTRACTIONS = ["don't", "I'll", "it's", "we're", "they've", "she'd", "can't", "won't",
                "shouldn't", "I'm", "you're", "he's", "that's", "let's", "y'all", "o'clock",
                "ma'am", "rock 'n' roll", "'tis", "isn't", "wouldn't've", "DON'T", "I'LL", "IT'S",
                "We'Re", "Don’t", "I’ll", "it’s"]
POSSESSIVES = ["John's", "the dog's", "James'", "children's", "the Joneses'", "Alice's",
               "NASA's", "Mozart's", "the 1990's", "today's"]
NEG = ["don't", "can't", "won't", "shouldn't", "didn't"]
NEG_Q = ["don't", "can't", "won't", "didn't", "would"]
CONNECT = ["and", "but", "so", "because", "although", "while", "or", "yet", "since", "unless"]
QUOTES = [('"', '"'), ("'", "'"), ("“", "”"), ("‘", "’"), ("«", "»"), ("„", "“"), ("(", ")"),
          ("[", "]"), ("`", "`")]
END = [".", "!", "?", "...", "?!", "…", ".", ".", "!!", ";", ":", " —", "."]

HANDWRITTEN_ENGLISH = [
    "The quick brown fox jumps over the lazy dog.",
    "Hello, world!",
    "hello world",
    "HELLO WORLD",
    "Hello",
    " Hello",
    "Hello ",
    "I don't think it's going to work, but we'll see.",
    "She said, \"I'll be there at 5 o'clock,\" and then she left.",
    "It's the dog's bone, not the cat's.",
    "You're right -- it isn't what we'd expected.",
    "Wait... what?! No way!!!",
    "e.g., i.e., etc., vs., Mr., Mrs., Ms., Dr., St., Ave., U.S.A.",
    "Well—actually—no; that's not it: try again.",
    "He asked: 'Why not?'",
    "'Quoted at the start' and \"double quoted\".",
    "A sentence with trailing spaces.   ",
    "   A sentence with leading spaces.",
    "Email me at someone@example.com or visit https://example.org/path?query=1&x=y#frag.",
    "The price is $19.99 (tax incl.), or €17,50 / £15.00 / ¥2,000.",
    "50% off! Buy 1, get 1 free* (*terms apply).",
    "Use the #hashtag and @mention in your post.",
    "To be, or not to be, that is the question:",
    "Whether 'tis nobler in the mind to suffer",
    "The slings and arrows of outrageous fortune,",
    "Or to take arms against a sea of troubles",
    "It was the best of times, it was the worst of times.",
    "Call me Ishmael.",
    "All happy families are alike; each unhappy family is unhappy in its own way.",
    "In the beginning God created the heaven and the earth.",
    "Four score and seven years ago our fathers brought forth on this continent a new nation.",
    "I can't believe it's not butter!",
    "Y'all'd've liked it.",
    "The 'single' and \"double\" and `back` quotes.",
    "rock'n'roll, o'er, ne'er, e'en",
    "Don't-stop-me-now",
    "supercalifragilisticexpialidocious",
    "antidisestablishmentarianism",
    "Pneumonoultramicroscopicsilicovolcanoconiosis is a long word.",
    "a b c d e f g h i j k l m n o p q r s t u v w x y z",
    "A B C D E F G H I J K L M N O P Q R S T U V W X Y Z",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!",
    "????",
    "...",
    "—",
    "- - - - -",
    "=====",
    "*****",
    "________________",
    "~!@#$%^&*()_+-=[]{}|;':\",./<>?`",
    "Q: What's 2+2? A: 4.",
    "Note: this is (mostly) fine [citation needed].",
    "The U.S. economy grew 2.1% in Q3, per the BEA's report.",
    "OK, ok, Ok, oK.",
    "It's it's IT'S It'S iT's",
    "'s 't 're 've 'm 'll 'd",
    "'S 'T 'RE 'VE 'M 'LL 'D",
    "x's y't z're",
    "'hello'",
    "''",
    "\"\"",
    "I'", "'ll", "'", "''''", "'s'", "it''s",
    "The user's request: \"Summarize this article in 3 bullet points.\"",
    "Sure! Here's a summary:\n- Point one\n- Point two\n- Point three",
    "Thanks!\n\nBest regards,\nThe Team",
    "Dear Sir or Madam,\n\nI am writing to inquire about the position.\n",
    "Step 1: Preheat the oven.\nStep 2: Mix the flour and sugar.\nStep 3: Bake for 20 minutes.",
]


def english_cases(rng):
    out = list(HANDWRITTEN_ENGLISH)

    def sentence():
        k = rng.randrange(10)
        who = rng.choice(NAMES + SUBJ)
        if k == 0:
            s = f"{who} {rng.choice(VERBS_PAST)} the {rng.choice(ADJ)} {rng.choice(NOUNS)} {rng.choice(PLACES)}"
        elif k == 1:
            s = f"{rng.choice(SUBJ)} {rng.choice(NEG)} {rng.choice(VERBS_BASE)} {rng.choice(POSSESSIVES)} {rng.choice(NOUNS)}"
        elif k == 2:
            s = f"{rng.choice(CONTRACTIONS).capitalize()} {rng.choice(ADV)} {rng.choice(VERBS_BASE)} the {rng.choice(NOUNS)}, {rng.choice(CONNECT)} {rng.choice(CONTRACTIONS)} {rng.choice(ADJ)}"
        elif k == 3:
            q = rng.choice(QUOTES)
            s = f"{who} said, {q[0]}{rng.choice(CONTRACTIONS).capitalize()} {rng.choice(VERBS_BASE)} it {rng.choice(ADV)}{rng.choice(END)}{q[1]}"
        elif k == 4:
            s = f"The {rng.choice(ADJ)}, {rng.choice(ADJ)} {rng.choice(NOUNS)} {rng.choice(VERBS_PAST)} {rng.choice(POSSESSIVES)} {rng.choice(NOUNS)} {rng.choice(PLACES)}"
        elif k == 5:
            s = f"Why {rng.choice(NEG_Q)} {rng.choice(SUBJ).lower()} {rng.choice(VERBS_BASE)} the {rng.choice(NOUNS)}"
        elif k == 6:
            s = f"{who} {rng.choice(ADV)} {rng.choice(VERBS_PAST)} {rng.randrange(2, 999)} {rng.choice(NOUNS)}s ({rng.choice(ADJ)} ones)"
        elif k == 7:
            s = f"{rng.choice(SUBJ)}'{rng.choice(['ll', 're', 've', 'd', 's', 'm'])} {rng.choice(VERBS_BASE)} {rng.choice(['it', 'them', 'that', 'this'])} {rng.choice(PLACES)}"
        elif k == 8:
            s = f"If {who.lower() if who in SUBJ else who} {rng.choice(VERBS_PAST)} the {rng.choice(NOUNS)}; {rng.choice(SUBJ).lower()} {rng.choice(['would', 'could', 'might'])} {rng.choice(VERBS_BASE)} the {rng.choice(NOUNS)}"
        else:
            s = f"\"{rng.choice(ADJ).capitalize()} {rng.choice(NOUNS)}s {rng.choice(ADV)} {rng.choice(VERBS_BASE)}\" - {who}"
        s = s[0].upper() + s[1:]
        if s[-1] not in ".!?\"”»)":
            s += rng.choice(END)
        return s

    for _ in range(300):
        out.append(sentence())
    for _ in range(80):  # short paragraphs, sometimes with newlines between sentences
        sep = rng.choice([" ", " ", "  ", "\n", "\n\n"])
        out.append(sep.join(sentence() for _ in range(rng.randrange(2, 6))))
    for _ in range(40):  # case variations of the same sentence
        s = sentence()
        out.append(rng.choice([s.upper(), s.lower(), s.title(), s.swapcase()]))
    return out


# ----------------------------------------------------------------------------------------------
# Source code
# ----------------------------------------------------------------------------------------------

CODE_SNIPPETS = [
    # Python
    "def main():\n    print(\"Hello, world!\")\n\nif __name__ == \"__main__\":\n    main()\n",
    "import numpy as np\nx = np.zeros((3, 4), dtype=np.float32)\n",
    "for i in range(10):\n\tif i % 2 == 0:\n\t\tcontinue\n\tprint(i)",
    "class Foo(Bar):\n    \"\"\"Docstring.\"\"\"\n    def __init__(self, *args, **kwargs) -> None:\n        super().__init__(*args, **kwargs)\n",
    "x = [i**2 for i in range(100) if i % 3 == 0]",
    "d = {'a': 1, \"b\": 2.5, 'c': None, 'd': True, 'e': [1, 2, 3]}",
    "lambda x, y=0: x if x > y else y",
    "async def fetch(url: str) -> bytes:\n    async with session.get(url) as r:\n        return await r.read()",
    "@dataclass(frozen=True)\nclass Point:\n    x: float = 0.0\n    y: float = 0.0",
    "print(f\"{name!r:>10} = {value:.3f}\")",
    "raise ValueError(f'bad value: {x}') from None",
    "    # TODO(someone): handle the edge case where n == 0",
    "try:\n    pass\nexcept (KeyError, IndexError) as e:\n    log.exception(e)\nfinally:\n    cleanup()",
    "s = r'\\d+\\.\\d*' + b'\\x00\\xff'.hex()",
    "assert a != b and not (c <= d or e >= f), \"message\"",
    "x += 1; y -= 2; z *= 3; w //= 4; v **= 5; u %= 6; t >>= 1; s <<= 2; q ^= r; p |= o; n &= m",
    # C / C++
    "#include <iostream>\n\nint main(int argc, char** argv) {\n    std::cout << \"Hello\" << std::endl;\n    return 0;\n}\n",
    "template <typename T, std::size_t N>\nconstexpr auto size(const T (&)[N]) noexcept -> std::size_t { return N; }",
    "for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }",
    "std::vector<std::unique_ptr<Node>> children;",
    "auto [it, inserted] = map.try_emplace(key, std::move(value));",
    "__global__ void add(const float* __restrict__ a, float* b, int n) {\n  int i = blockIdx.x * blockDim.x + threadIdx.x;\n  if (i < n) b[i] += a[i];\n}",
    "#define MAX(a, b) ((a) > (b) ? (a) : (b))",
    "static_assert(sizeof(void*) == 8, \"64-bit only\");",
    "if (ptr != nullptr && ptr->next) { ptr = ptr->next; } else { break; }",
    "uint32_t h = 0x811c9dc5u; h ^= c; h *= 16777619u;",
    "/* block comment */ // line comment\n/** Doxygen @param x the value */",
    "namespace loom::tokenizer {\n}  // namespace loom::tokenizer",
    "std::string_view sv{\"abc\"}; char c = '\\n'; wchar_t w = L'x';",
    # JavaScript / TypeScript
    "const add = (a, b) => a + b;\nconsole.log(add(1, 2));",
    "export default function App({ items = [] }) {\n  return <ul>{items.map(i => <li key={i.id}>{i.name}</li>)}</ul>;\n}",
    "let x = a ?? b; let y = obj?.prop?.[0]; x ||= 1; y &&= 2;",
    "document.querySelector('#app').addEventListener('click', (e) => { e.preventDefault(); });",
    "interface User { id: number; name: string; email?: string | null }",
    "const re = /^[a-z0-9_.+-]+@[a-z0-9-]+\\.[a-z]{2,}$/i;",
    "fetch(`/api/v1/users/${id}?fields=name,email`).then(r => r.json()).catch(console.error);",
    "if (a === b && c !== d) { return void 0; }",
    # Shell
    "#!/usr/bin/env bash\nset -euo pipefail\nfor f in *.txt; do echo \"$f\"; done",
    "ls -la | grep -v '^d' | awk '{print $5, $9}' | sort -n | tail -5",
    "export PATH=\"$HOME/.local/bin:$PATH\"",
    "cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build -j$(nproc)",
    "find . -name '*.py' -exec wc -l {} + | sort -rn | head",
    "curl -sSL -H 'Accept: application/json' \"https://api.example.com/v2/items?page=2\" | jq '.items[] | .id'",
    "if [ -z \"${VAR:-}\" ]; then echo 'unset' >&2; exit 1; fi",
    "git commit -m \"Fix bug #123\" && git push origin main",
    "tar -xzf archive.tar.gz -C /tmp/out 2>/dev/null || true",
    # JSON / YAML / TOML / misc
    "{\"name\": \"loom\", \"version\": \"0.1.0\", \"deps\": [], \"nested\": {\"a\": [1, 2, {\"b\": null}]}}",
    "{\n  \"id\": 42,\n  \"tags\": [\"x\", \"y\"],\n  \"ok\": true,\n  \"ratio\": 0.75\n}",
    "[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":\"hello\"}]",
    "key: value\nlist:\n  - one\n  - two\nnested:\n  deep: {a: 1, b: 2}",
    "[package]\nname = \"loom\"\nversion = \"0.1.0\"\nedition = \"2021\"",
    "SELECT u.id, u.name, COUNT(*) AS n FROM users u JOIN orders o ON o.user_id = u.id WHERE o.total > 100 GROUP BY u.id HAVING n > 2 ORDER BY n DESC LIMIT 10;",
    "<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>Test</title></head>\n<body><p class=\"x\">Hi &amp; bye</p></body>\n</html>",
    "fn main() {\n    let v: Vec<u32> = (0..10).map(|x| x * x).collect();\n    println!(\"{:?}\", v);\n}",
    "func main() {\n\tfmt.Println(\"hello\")\n\tif err != nil {\n\t\treturn err\n\t}\n}",
    "SELECT * FROM t WHERE name LIKE '%foo%';",
    "<div style=\"color: #ff0000; margin: 0 auto;\">&lt;tag&gt;</div>",
    "| col1 | col2 |\n|------|------|\n| a    | b    |",
    "```python\nprint('hi')\n```",
    "diff --git a/x.py b/x.py\n--- a/x.py\n+++ b/x.py\n@@ -1,3 +1,3 @@\n-old line\n+new line",
    "0x7fffffff 0b1010_1010 0o755 1e-9 3.14f 1'000'000 1_000_000 .5 5. 6.02214076e23",
    "a->b a=>b a<=b a>=b a==b a!=b a===b a!==b a::b a..b a...b a|>b a<|b",
    "<|im_start|>=1; <im_start> </s> <s> [INST] [/INST] <<SYS>>",
]

STDLIB_MODULES = ["json/decoder.py", "json/encoder.py", "textwrap.py", "string.py", "heapq.py",
                  "bisect.py", "fractions.py", "shlex.py", "difflib.py", "argparse.py",
                  "dataclasses.py", "functools.py", "csv.py", "base64.py", "ipaddress.py",
                  "colorsys.py", "calendar.py", "statistics.py", "html/__init__.py", "pprint.py"]


def stdlib_lines():
    """Lines of a fixed list of CPython stdlib modules (from the interpreter that runs this)."""
    stdlib = sysconfig.get_paths()["stdlib"]
    files = []
    for rel in STDLIB_MODULES:
        path = os.path.join(stdlib, rel)
        with open(path, encoding="utf-8") as f:
            files.append((rel, f.read().split("\n")))
    return files


def code_cases(rng):
    out = list(CODE_SNIPPETS)
    files = stdlib_lines()
    # single lines (indentation kept), skipping blank ones
    pool = [ln for _, lines in files for ln in lines if ln.strip()]
    out += rng.sample(pool, 260)
    # chunks of consecutive lines, joined with "\n" (blank lines and indentation kept)
    for _ in range(60):
        _, lines = rng.choice(files)
        start = rng.randrange(0, max(1, len(lines) - 20))
        out.append("\n".join(lines[start:start + rng.randrange(3, 16)]))
    return out


# ----------------------------------------------------------------------------------------------
# CJK
# ----------------------------------------------------------------------------------------------

CJK_SENTENCES = [
    # Chinese (simplified and traditional)
    "你好，世界！", "我爱北京天安门。", "今天天气很好，我们去公园散步吧。", "机器学习是人工智能的一个分支。",
    "这个模型有一亿三千五百万个参数。", "请问洗手间在哪里？", "中华人民共和国成立于1949年10月1日。",
    "他说：“我明天再来。”", "《红楼梦》是中国古典四大名著之一。", "繁體中文與簡體中文有些不同。",
    "學而時習之，不亦說乎？", "我的電話號碼是０１２３４５６７８９。", "一二三四五六七八九十百千万亿",
    "标点符号：，。、；：？！「」『』（）【】《》〈〉…—～·", "北京欢迎你", "中文English混合Mixed文本",
    # Japanese
    "こんにちは、世界！", "私は日本語を勉強しています。", "東京は日本の首都です。", "カタカナとひらがなと漢字。",
    "ｶﾀｶﾅ（半角）とカタカナ（全角）", "今日はいい天気ですね。", "吾輩は猫である。名前はまだ無い。",
    "ありがとうございます！", "「こんにちは」と彼女は言った。", "ラーメンを食べたい。", "ＡＢＣ１２３（全角英数）",
    "令和5年4月1日", "〜ですか？〜ですよ！", "ゃゅょっ ャュョッ ー", "ぱぴぷぺぽ ガギグゲゴ",
    # Korean
    "안녕하세요, 세계!", "저는 한국어를 공부하고 있어요.", "서울은 대한민국의 수도입니다.", "감사합니다!",
    "한글은 1443년에 창제되었다.", "오늘 날씨가 정말 좋네요.", "ㄱㄴㄷㄹㅁㅂㅅㅇㅈㅊㅋㅌㅍㅎ ㅏㅑㅓㅕㅗㅛㅜㅠㅡㅣ",
    "대한민국 만세", "한국어 English 混合", "뭐라고요?", "똠방각하 뷁 쀍",
]

CJK_RANGES = [(0x4E00, 0x9FFF), (0x3040, 0x309F), (0x30A0, 0x30FF), (0xAC00, 0xD7A3),
              (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0xFF01, 0xFF5E), (0x3000, 0x303F)]


def cjk_cases(rng):
    out = list(CJK_SENTENCES)
    for _ in range(50):  # random characters from the CJK blocks, with spaces and punctuation
        lo, hi = rng.choice(CJK_RANGES)
        n = rng.randrange(1, 20)
        s = "".join(chr(rng.randrange(lo, hi + 1)) if rng.random() > 0.1 else rng.choice(" 、。 ,")
                    for _ in range(n))
        out.append(s)
    for _ in range(40):  # sentences joined, with ASCII words and numbers in between
        parts = rng.sample(CJK_SENTENCES, rng.randrange(2, 4))
        glue = rng.choice(["", " ", "\n", " and ", " 123 ", "：", " (", ") "])
        out.append(glue.join(parts))
    for _ in range(30):  # CJK next to ASCII letters/digits without spaces
        a = rng.choice(CJK_SENTENCES)
        b = rng.choice(["GPU", "loom", "v2", "2024年", "3.14", "OK", "AI", "x", "Tokyo", "ID123"])
        i = rng.randrange(len(a) + 1)
        out.append(a[:i] + b + a[i:])
    return out


# ----------------------------------------------------------------------------------------------
# Emoji
# ----------------------------------------------------------------------------------------------

EMOJI_BASIC = ["😀", "😂", "🤣", "😍", "🥺", "😭", "🙏", "👍", "👎", "🔥", "✨", "❤️", "❤", "💔", "🎉",
               "🚀", "🐍", "🦀", "🤖", "🧠", "🍕", "☕", "⭐", "✅", "❌", "⚠️", "♻️", "™️", "©️", "🆗",
               "🀄", "🃏", "🪐", "🫠", "🫶", "🥲", "🧑‍💻", "🙂", "🙃", "💯"]
EMOJI_ZWJ = ["👨‍👩‍👧‍👦", "👩‍❤️‍👨", "👨‍👨‍👧", "🏳️‍🌈", "🏳️‍⚧️", "🧑‍🚀", "👩‍🔬", "👨‍🍳", "🐕‍🦺",
             "🐻‍❄️", "❤️‍🔥", "😶‍🌫️", "🧔‍♀️", "👁️‍🗨️", "🏴‍☠️", "👩🏽‍💻", "🧑🏿‍🤝‍🧑🏻"]
EMOJI_FLAGS = ["🇺🇸", "🇬🇧", "🇯🇵", "🇩🇪", "🇫🇷", "🇨🇳", "🇰🇷", "🇮🇳", "🇧🇷", "🇺🇦", "🇪🇺", "🇺🇳",
               "🏴󠁧󠁢󠁳󠁣󠁴󠁿", "🏴󠁧󠁢󠁷󠁬󠁳󠁿", "🏁", "🚩"]
SKIN = ["\U0001F3FB", "\U0001F3FC", "\U0001F3FD", "\U0001F3FE", "\U0001F3FF"]
SKIN_BASES = ["👋", "👍", "✋", "🤞", "👶", "🧒", "💪", "🙌", "🤝", "🧑", "👩", "👨", "🏃", "🤷"]
KEYCAPS = ["0️⃣", "1️⃣", "#️⃣", "*️⃣", "🔟", "1⃣", "2\u20e3"]
EMOJI_TEXT = ["I love it ❤️", "Great job 👍👍👍", "LOL 😂😂", "Ship it 🚀!", "Hot 🔥 take",
              "🎉 Happy birthday! 🎂🎈", "Weather: ☀️ → 🌧️ → ⛈️", ":) :-( ;P <3 :D xD ^_^ ¯\\_(ツ)_/¯",
              "(╯°□°)╯︵ ┻━┻", "ʕ•ᴥ•ʔ", "emoji😀without😀spaces", "👍🏻👍🏼👍🏽👍🏾👍🏿",
              "🇯🇵🇰🇷🇨🇳 flags in a row", "❤\ufe0f vs ❤\ufe0e vs ❤", "☺ ☹ ☠ ✌ ☝ ✍"]


def emoji_cases(rng):
    out = EMOJI_BASIC[:20] + EMOJI_ZWJ + EMOJI_FLAGS + KEYCAPS + EMOJI_TEXT
    out += [b + s for b in SKIN_BASES[:6] for s in SKIN[:3]]
    every = EMOJI_BASIC + EMOJI_ZWJ + EMOJI_FLAGS + KEYCAPS + [b + rng.choice(SKIN) for b in SKIN_BASES]
    for _ in range(60):
        n = rng.randrange(1, 8)
        seps = ["", "", " ", "  ", "\n", " x ", "a", "1"]
        out.append(rng.choice(seps).join(rng.choice(every) for _ in range(n)))
    for _ in range(20):  # emoji inside English sentences
        words = f"The {rng.choice(ADJ)} {rng.choice(NOUNS)} {rng.choice(VERBS_PAST)} it".split()
        i = rng.randrange(len(words) + 1)
        words.insert(i, rng.choice(every))
        out.append(" ".join(words) + rng.choice(["", "!", " " + rng.choice(every)]))
    return out


# ----------------------------------------------------------------------------------------------
# Whitespace
# ----------------------------------------------------------------------------------------------

WS_HANDWRITTEN = [
    "", " ", "  ", "   ", "    ", "        ", " " * 16, " " * 33, "\t", "\t\t", "\t\t\t\t", "\n",
    "\n\n", "\n\n\n", "\n" * 8, "\r\n", "\r\n\r\n", "\r", " \n", "\n ", " \t \n ", "\t\n\t",
    "a b", "a  b", "a   b", "a    b", "a\tb", "a\t\tb", "a\nb", "a\n\nb", "a\r\nb", "a \n b",
    "a\n  b", "a  \n  b", " a", "  a", "   a", "a ", "a  ", "a   ", " a ", "  a  ",
    "\ta", "a\t", "\na", "a\n", "\n\na\n\n", "word\n\n\n\nword",
    "trailing spaces then newline   \nnext line",
    "    indented line",
    "\tindented with tab",
    "x = 1    # comment after spaces",
    "end.  Two spaces after period.  Again.",
    "a\u00a0b", "a\u00a0\u00a0b", "\u00a0", "a\u2009b", "a\u2002b\u2003c", "a\u3000b", "\u3000\u3000",
    "a\u200bb", "a\u200cb\u200dc", "\ufeffBOM at start", "a\x0bb", "a\x0cb", "a\x85b", "a\u2028b\u2029c",
    "a\x00b", "\x01\x02\x03\x7f", "tab\tseparated\tvalues\there", "one,two\nthree,four\n",
    "  \n  \n  ", " \t\t \t", "\n \n \n", "\t \n \t", "   1", "  !", "  'll", "\n\n1", "\n 'x",
]


def whitespace_cases(rng):
    out = list(WS_HANDWRITTEN)
    atoms = [" ", " ", " ", "\t", "\n", "\r\n", "\u00a0", "\u3000"]
    words = ["a", "word", "Hello", "x", "1", "42", "(", ")", "'s", "don't", "你好", "😀", ".", "-", "=="]
    for _ in range(100):
        parts = []
        for _ in range(rng.randrange(1, 7)):
            parts.append("".join(rng.choice(atoms) for _ in range(rng.randrange(0, 7))))
            parts.append(rng.choice(words))
        if rng.random() < 0.5:
            parts.append("".join(rng.choice(atoms) for _ in range(rng.randrange(1, 5))))
        out.append("".join(parts))
    return out


# ----------------------------------------------------------------------------------------------
# Digits
# ----------------------------------------------------------------------------------------------

DIGITS_HANDWRITTEN = [
    "0", "1", "9", "10", "42", "100", "123", "1234", "12345", "123456", "1234567",
    "12345678901234567890", "3.14159265358979323846", "-273.15", "+1", "1,000,000", "1.000.000,50",
    "1e10", "6.022e23", "1.5E-7", "0.0001", ".5", "5.", "007", "0x1F", "0b1010", "1/2", "3/4",
    "2024-06-03", "03/06/2024", "6/3/24", "12:34:56", "12:34 PM", "2024-06-03T12:34:56.789Z",
    "1999-12-31 23:59:59+01:00", "+1 (555) 123-4567", "555-0100", "192.168.0.1", "::1",
    "v1.2.3", "3.11.7", "ISBN 978-3-16-148410-0", "$1,234.56", "€ 99,99", "100%", "50°C", "72°F",
    "1st 2nd 3rd 4th 11th 21st 101st", "abc123", "123abc", "a1b2c3", "x86_64", "GPT4", "H2O",
    "CO2", "4K", "1080p", "MP3", "2x", "x2", "A4", "B-52", "COVID-19", "iPhone15", "Win11",
    "route66", "Room 101", "Top 10", "page 3 of 12", "1 + 1 = 2", "2^10=1024", "10**6",
    "99 bottles of beer", "3 2 1 0", "1  2   3    4", "1\t2\t3", "1\n2\n3",
    "²", "³", "¹²³", "x²+y²=z²", "½", "¼ ¾", "⅓ ⅔ ⅛", "Ⅰ Ⅱ Ⅲ Ⅳ Ⅻ", "① ② ③ ⑩", "⁰¹²³⁴⁵⁶⁷⁸⁹ ₀₁₂₃",
    "٠١٢٣٤٥٦٧٨٩", "۰۱۲۳", "०१२३४५६७८९", "০১২৩", "๐๑๒๓", "０１２３４５６７８９", "𝟎𝟏𝟐𝟑",
    "一二三", "壹贰叁", "10万", "3億円", "2024年6月3日", "第1章", "1호선",
    "  1", "   12", " 1 ", "a  1", "foo   123", "x\n\n42", "(1)", "[2]", "{3}", "#4", "5!", "6?",
    "7.", "8,9", "10:30", "11-12", "13_14", "15'16", "17\"", "18%20", "$19", "20€", "21st",
]


def digit_cases(rng):
    out = list(DIGITS_HANDWRITTEN)
    for n in range(1, 41, 3):  # long runs of digits
        out.append("".join(rng.choice("0123456789") for _ in range(n)))
    for _ in range(30):  # decimals, negatives, exponents
        out.append(rng.choice(["", "-", "+"]) + str(rng.randrange(0, 10 ** rng.randrange(1, 12)))
                   + rng.choice(["", "." + str(rng.randrange(0, 10 ** rng.randrange(1, 8))),
                                 "e" + str(rng.randrange(-30, 30))]))
    for _ in range(30):  # dates, times, versions, IPs
        k = rng.randrange(4)
        if k == 0:
            out.append(f"{rng.randrange(1900, 2100)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}")
        elif k == 1:
            out.append(f"{rng.randrange(0, 24)}:{rng.randrange(0, 60):02d}:{rng.randrange(0, 60):02d}.{rng.randrange(0, 1000):03d}")
        elif k == 2:
            out.append(f"v{rng.randrange(0, 20)}.{rng.randrange(0, 100)}.{rng.randrange(0, 1000)}")
        else:
            out.append(".".join(str(rng.randrange(0, 256)) for _ in range(4)))
    for _ in range(40):  # digits glued to letters, spaces before digits
        w = rng.choice(["abc", "x", "Hello", "ID", "v", "page", "π", "你", "é"])
        d = str(rng.randrange(0, 10 ** rng.randrange(1, 9)))
        sp = rng.choice(["", "", " ", "  ", "   ", "\t", "\n"])
        out.append(rng.choice([w + sp + d, d + sp + w, w + d + w, d + w + d, sp + d + sp]))
    return out


# ----------------------------------------------------------------------------------------------
# Other scripts, accents, combining marks, symbols
# ----------------------------------------------------------------------------------------------

MULTI_SENTENCES = [
    # Cyrillic
    "Привет, мир!", "Москва — столица России.", "Я не знаю, что сказать.", "Ёлка, ёжик, съешь же ещё этих мягких французских булок.",
    "Слава Україні! Ґанок, їжак, єнот.", "Здраво, свете! Ђурђевдан, љубав, њива, џеп.",
    # Greek
    "Γειά σου Κόσμε!", "Η γρήγορη καφέ αλεπού πηδάει πάνω από τον τεμπέλη σκύλο.", "αβγδεζηθικλμνξοπρστυφχψω ΑΒΓΔΕΖΗΘΙΚΛΜΝΞΟΠΡΣΤΥΦΧΨΩ ς",
    "E = mc², ∑ᵢ xᵢ, ∫₀^∞ e^{-x} dx = 1, Δt, λ, μ, σ²", "ἐν ἀρχῇ ἦν ὁ λόγος",
    # Arabic, Hebrew, Persian (RTL)
    "مرحبا بالعالم!", "اللغة العربية جميلة.", "السَّلَامُ عَلَيْكُمْ", "שלום עולם!", "עִבְרִית עם ניקוד",
    "سلام دنیا! این یک آزمایش است.", "mixed RTL: abc مرحبا def שלום 123", "\u202eRTL override\u202c and \u200fRLM\u200e LRM",
    # Indic and South-East Asian
    "नमस्ते दुनिया!", "हिन्दी एक भाषा है।", "क्षत्रिय ज्ञान श्री", "বাংলা ভাষা", "தமிழ் மொழி", "తెలుగు", "ગુજરાતી", "ਪੰਜਾਬੀ",
    "ಕನ್ನಡ", "മലയാളം", "සිංහල", "สวัสดีชาวโลก", "ภาษาไทยไม่มีช่องว่างระหว่างคำ", "ພາສາລາວ", "ភាសាខ្មែរ", "မြန်မာဘာသာ",
    "Xin chào thế giới! Tiếng Việt có nhiều dấu: ắ ằ ẳ ẵ ặ ố ồ ổ ỗ ộ ư ơ đ.",
    # Other scripts
    "Բարեւ աշխարհ", "გამარჯობა მსოფლიო", "ሰላም ልዑል", "ᐊᐃᓐᓇᐅᓪᓗ", "ᚠᚢᚦᚨᚱᚲ", "ꦲꦤꦕꦫꦏ", "Ⰰⰱⰲ", "𐌰𐌱𐌲 (Gothic)",
    "𝔉𝔯𝔞𝔨𝔱𝔲𝔯 𝐁𝐨𝐥𝐝 𝑰𝒕𝒂𝒍𝒊𝒄 𝓢𝓬𝓻𝓲𝓹𝓽 𝕯𝖔𝖚𝖇𝖑𝖊",
    # Latin with accents
    "café naïve résumé coöperate jalapeño façade fiancée über", "Ça va? Où est la bibliothèque? À bientôt!",
    "Straße, Größe, Fußgängerübergänge, ẞ", "Æsir, Øresund, Åland, ß, œuvre, Œ", "İstanbul ıslak ĞÜŞÖÇ ğüşöç",
    "Łódź, Kraków, Gdańsk, Wrocław, zażółć gęślą jaźń", "Příliš žluťoučký kůň úpěl ďábelské ódy.",
    "Árvíztűrő tükörfúrógép", "¿Dónde está el baño? ¡Olé!", "São Paulo, Açores, coração, pão",
    "Þetta er íslenska. Ð ð Þ þ", "ﬁ ﬂ ﬀ ﬃ ﬄ ﬅ ﬆ", "Ǆ ǅ ǆ Ǉ ǈ ǉ", "ʔ ʕ ɐ ɑ ɒ ə ɛ ɪ ʊ ʌ ŋ θ ð ʃ ʒ",
    # Combining marks: decomposed (NFD) vs precomposed (NFC)
    "cafe\u0301 vs caf\u00e9", "n\u0303 vs \u00f1", "A\u030a vs \u00c5 vs \u212b", "e\u0301\u0302\u0303\u0304",
    "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319\u0324\u031e\u0349\u035a\u032f\u031e\u0320\u034da\u0357\u0365\u0305\u0307\u0343\u0302lgo\u0489",
    "\u0915\u094d\u0937", "\u1100\u1161\u11a8 (conjoining jamo) vs \uac01", "o\u0308 vs \u00f6 vs \u00f6",
    "\u0301 starts with a combining mark", "\u0627\u064e\u0644\u0652",
    # Symbols, math, currency, arrows, box drawing, dingbats
    "∀x∈ℝ: x² ≥ 0 ⇒ √(x²) = |x|", "≤ ≥ ≠ ≈ ≡ ± × ÷ ∞ ∂ ∇ ∏ ∑ ∫ ∮", "← ↑ → ↓ ↔ ⇐ ⇒ ⇔ ↩ ↪",
    "¢ £ ¤ ¥ ₩ ₪ ₫ € ₹ ₽ ₿ ฿", "┌─┬─┐\n│a│b│\n└─┴─┘", "░▒▓█ ▀▄ ■□▪▫", "♠♣♥♦ ♩♪♫♬ ☯☮☢☣",
    "§ ¶ † ‡ • ‰ ′ ″ ‹ › ※ ‽ ⁂", "© ® ™ ℠ ℗ ℃ ℉ № ℮", "\ufffd replacement char", "\ue000\uf8ff private use",
    "\U0010fffd plane 16 \U000f0000", "\U0001d11e \U0001f600 \U00020000 astral",
]


def multiscript_cases(rng):
    out = list(MULTI_SENTENCES)
    for _ in range(40):  # two or three scripts mixed
        parts = rng.sample(MULTI_SENTENCES, rng.randrange(2, 4))
        out.append(rng.choice([" ", "", "\n", " | "]).join(parts))
    forms = ["NFC", "NFD", "NFKC", "NFKD"]
    for s in rng.sample(MULTI_SENTENCES, 30):  # normalization forms of the same text
        t = unicodedata.normalize(rng.choice(forms), s)
        if t != s:
            out.append(t)
    ranges = [(0x0400, 0x04FF), (0x0370, 0x03FF), (0x0600, 0x06FF), (0x0900, 0x097F),
              (0x00C0, 0x024F), (0x0E00, 0x0E7F), (0x0590, 0x05FF), (0x1E00, 0x1EFF),
              (0x2000, 0x2BFF), (0x0300, 0x036F), (0x1F300, 0x1FAFF), (0x10000, 0x1FFFF)]
    for _ in range(40):  # random code points from many blocks (no surrogates)
        s = []
        for _ in range(rng.randrange(1, 15)):
            lo, hi = rng.choice(ranges)
            s.append(chr(rng.randrange(lo, hi + 1)) if rng.random() > 0.15 else " ")
        out.append("".join(s))
    return out


# ----------------------------------------------------------------------------------------------
# Special-token text
# ----------------------------------------------------------------------------------------------

def special_cases(rng, specials):
    im_start, im_end, eot = "<|im_start|>", "<|im_end|>", "<|endoftext|>"
    assert {im_start, im_end, eot} <= set(specials), specials
    out = [
        f"{im_start}user\nhi{im_end}",
        f"{im_start}system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face{im_end}\n"
        f"{im_start}user\nWhat is 2+2?{im_end}\n{im_start}assistant\n",
        f"{im_start}user\nWhat's the capital of France?{im_end}\n{im_start}assistant\nIt's Paris.{im_end}\n",
        f"{im_start}assistant\n{im_end}", f"{im_start}{im_end}", f"{im_end}{im_start}", f"{eot}",
        f"{eot}{eot}", f"{eot}{eot}{eot}", f"Hello{eot}World", f"Hello {eot} World", f"Hello  {eot}  World",
        f"text{eot}", f"{eot}text", f" {eot}", f"{eot} ", f"\n{eot}\n", f"a{im_start}b", f"a {im_start} b",
        f"don't{im_end}'s", f"{im_end}'s", f"'{im_start}'", f"\"{im_end}\"", f"({eot})", f"1{eot}2",
        f"{im_start}{im_start}{im_start}", f"{im_end}{im_end}", f"<{im_start}>", f"<<{im_end}>>",
        f"<|{im_start}|>", "<|im_start|", "|im_start|>", "<|im_start", "im_start|>", "<im_start>",
        "<|im_start |>", "< |im_start|>", "<|IM_START|>", "<|Im_Start|>", "<|im_start|>>",
        "<<|im_start|>", "<|im_start|><", "<|im_end", "<|im_end|", "<|endoftext", "<|endoftext|",
        "endoftext", "<|endoftext |>", "<|end of text|>", "<|im_sta rt|>", "<|im_\nstart|>",
        "<|im_start|\u200b>", "<\uff5cim_start\uff5c>", "＜|im_start|＞", "<|im_start|>\u0301",
        "<|im_start|>user", "<|im_start|>\n", "\n<|im_start|>", "<|im_start|>😀<|im_end|>",
        "<|im_start|>你好<|im_end|>", "<|im_start|>12345<|im_end|>", "<|im_start|>   <|im_end|>",
        "<|im_start|>\t\t<|im_end|>", "<s></s>", "<|endoftext|><|im_start|><|im_end|>", "<|>", "<||>",
        "<repo_name>loom<file_sep>main.cpp\nint main() {}", "<reponame>x<filename>a.py<gh_stars>100",
        "<issue_start>Bug: crash<issue_comment>Fixed.<issue_closed>",
        "<jupyter_start><jupyter_code>print(1)<jupyter_output>1<empty_output>",
        "<jupyter_text>Markdown cell<jupyter_script>", "<repo_name><reponame>", "<reponame><repo_name>",
        "<repo_name", "repo_name>", "<repo name>", "<file_sep><file_sep>", "<gh_stars>5<gh_stars>",
        "<jupyter_start", "<jupyter_>", "<empty_output >", "< empty_output>",
    ]
    for sp in specials:  # every control token alone, in a word, with spaces, and as partials
        out += [sp, f"x{sp}y", f" {sp} ", sp[:-1], sp[1:], sp.upper()]
    words = ["user", "assistant", "system", "hi", "Hello there!", "don't", " ", "\n", "", "42",
             "你好", "😀", "def f():\n    return 1", "  ", "'s", "<", ">", "|", "<|", "|>"]
    for _ in range(120):  # random mixes of specials and text
        parts = []
        for _ in range(rng.randrange(1, 7)):
            parts.append(rng.choice(specials) if rng.random() < 0.45 else rng.choice(words))
        out.append("".join(parts))
    for _ in range(20):  # chat transcripts in the model's template
        msgs = []
        for turn in range(rng.randrange(1, 4)):
            role = ["user", "assistant"][turn % 2]
            msgs.append(f"{im_start}{role}\n{rng.choice(HANDWRITTEN_ENGLISH)}{im_end}\n")
        if rng.random() < 0.5:
            msgs.insert(0, f"{im_start}system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face{im_end}\n")
        out.append("".join(msgs) + rng.choice(["", f"{im_start}assistant\n"]))
    return out


# ----------------------------------------------------------------------------------------------
# Random mixtures of all of the above
# ----------------------------------------------------------------------------------------------

def mixed_cases(rng, pools):
    out = []
    flat = [s for p in pools for s in p if s]
    for _ in range(150):
        n = rng.randrange(2, 5)
        out.append(rng.choice(["", " ", "\n", "\t", "  "]).join(rng.choice(flat) for _ in range(n)))
    for _ in range(30):  # slices at arbitrary code point offsets (may cut inside words/graphemes)
        s = rng.choice(flat)
        if len(s) > 2:
            i = rng.randrange(len(s))
            j = rng.randrange(i + 1, len(s) + 1)
            out.append(s[i:j])
    return out


# ----------------------------------------------------------------------------------------------

def read_specials(gguf_path):
    """Control (3) and user-defined (4) tokens of the GGUF vocabulary."""
    from gguf import GGUFReader
    r = GGUFReader(gguf_path)
    tokens = r.fields["tokenizer.ggml.tokens"].contents()
    types = r.fields["tokenizer.ggml.token_type"].contents()
    return [t for t, ty in zip(tokens, types) if ty in (3, 4)]


def build_cases(specials):
    rng = random.Random(SEED)
    cats = [
        ("english", english_cases(rng)),
        ("code", code_cases(rng)),
        ("cjk", cjk_cases(rng)),
        ("emoji", emoji_cases(rng)),
        ("whitespace", whitespace_cases(rng)),
        ("digits", digit_cases(rng)),
        ("multiscript", multiscript_cases(rng)),
        ("special", special_cases(rng, specials)),
    ]
    cats.append(("mixed", mixed_cases(rng, [c for _, c in cats])))
    seen, cases = set(), []
    for cat, texts in cats:
        for t in texts:
            if t in seen:
                continue
            seen.add(t)
            cases.append((cat, t))
    return cases


def load_hf_tokenizer(gguf_path):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(os.path.dirname(os.path.abspath(gguf_path)),
                                         gguf_file=os.path.basename(gguf_path))


def original_layout(tok):
    """SmolLM2's own tokenizer.json splits digits one by one before the byte-level regex.
    transformers' GGUF conversion does not map "smollm" and uses plain ByteLevel; this rebuilds the
    model's layout around the converted vocabulary, merges and added tokens."""
    from tokenizers import Tokenizer, pre_tokenizers
    t = Tokenizer.from_str(tok.backend_tokenizer.to_str())
    t.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    return t


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", default=DEFAULT_GGUF)
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--reencode", action="store_true",
                    help="re-encode the texts of the existing --out file and fail if any ids differ")
    ap.add_argument("--compare-gguf-conversion", action="store_true",
                    help="report cases whose ids differ under transformers' plain GGUF conversion")
    args = ap.parse_args()

    import tokenizers
    import transformers
    print(f"transformers {transformers.__version__}, tokenizers {tokenizers.__version__}", file=sys.stderr)
    converted = load_hf_tokenizer(args.gguf)
    tok = original_layout(converted)
    specials = read_specials(args.gguf)
    added = {t.content for t in converted.added_tokens_decoder.values()}
    missing = [s for s in specials if s not in added]
    if missing:
        sys.exit(f"special tokens of the GGUF missing from the HF tokenizer: {missing}")

    if args.reencode:
        with open(args.out, encoding="utf-8") as f:
            old = [json.loads(line) for line in f]
        bad = [o for o in old if tok.encode(o["text"], add_special_tokens=False).ids != o["ids"]]
        print(f"re-encoded {len(old)} cases: {len(bad)} differ", file=sys.stderr)
        for o in bad[:10]:
            print("  ", json.dumps(o["text"], ensure_ascii=False), file=sys.stderr)
        sys.exit(1 if bad else 0)

    cases = build_cases(specials)
    counts = Counter(cat for cat, _ in cases)
    roundtrip_bad = []
    conv_diff = []
    with open(args.out, "w", encoding="utf-8", newline="\n") as f:
        for cat, text in cases:
            ids = tok.encode(text, add_special_tokens=False).ids
            assert all(isinstance(i, int) for i in ids)
            # decode(encode(text)) == text, checked on every case (special tokens decode to their text)
            if tok.decode(ids, skip_special_tokens=False) != text:
                roundtrip_bad.append(text)
            if args.compare_gguf_conversion and converted.encode(text, add_special_tokens=False) != ids:
                conv_diff.append((cat, text))
            rec = {"text": text, "add_special": False, "parse_special": True, "ids": ids}
            f.write(json.dumps(rec, ensure_ascii=False, separators=(",", ":")) + "\n")

    print(f"wrote {len(cases)} cases to {args.out} ({os.path.getsize(args.out)} bytes)", file=sys.stderr)
    for cat, n in counts.items():
        print(f"  {cat:12s} {n}", file=sys.stderr)
    with_special = sum(1 for _, t in cases if any(s in t for s in specials))
    print(f"decode(encode(text)) != text for {len(roundtrip_bad)} of {len(cases)} cases "
          f"({len(cases) - with_special} without special-token text)", file=sys.stderr)
    for t in roundtrip_bad[:10]:
        print("  ", json.dumps(t, ensure_ascii=False), file=sys.stderr)
    if args.compare_gguf_conversion:
        print(f"transformers' plain GGUF conversion gives other ids in {len(conv_diff)} cases: "
              f"{dict(Counter(c for c, _ in conv_diff))}", file=sys.stderr)
        for c, t in conv_diff[:15]:
            print(f"   [{c}]", json.dumps(t, ensure_ascii=False), file=sys.stderr)


if __name__ == "__main__":
    main()
