# Scans every tracked file of the repository for what would let the haiku test pass without running
# a model: a stored haiku, or a minute word paired with a nonce. First it proves it can see them, on
# planted files in a temporary folder. Exit 0 clean, 1 found (each hit printed), 77 not a git checkout.
#
# Rules, per tracked text file:
#   artifact  a run's output is tracked (test-results/, verification.json, sse_transcript.ndjson, ...)
#   pairing   one line holds a minute word ("seven", "fifty-two") and a nonce-like token: 8 characters
#             of [a-z0-9] with at least one letter and one digit, standing alone
#   haiku     three consecutive short lines of plain words (split at newlines, escaped newlines and
#             double quotes, as in JSON strings) with 5, 7 and 5 syllables, each within one
#   data      a data file (json, jsonl, ndjson, txt, tsv, csv, yaml) mentions "haiku" at all
# Usage: fixture_scan.py [--repo DIR]
import argparse
import codecs
import os
import re
import subprocess
import sys
import tempfile

ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
        "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
TENS = ["twenty", "thirty", "forty", "fifty"]
MINUTE_WORDS = ONES + TENS + [f"{t}[- ]{o}" for t in TENS for o in ONES[1:10]]
MINUTE_RE = re.compile(r"(?<![a-z])(" + "|".join(sorted(MINUTE_WORDS, key=len, reverse=True)) + r")(?![a-z])", re.I)
NONCE_RE = re.compile(r"(?<![A-Za-z0-9])(?=[a-z0-9]*[a-z])(?=[a-z0-9]*[0-9])[a-z0-9]{8}(?![A-Za-z0-9])")
ARTIFACT_NAMES = {"verification.json", "sse_transcript.ndjson", "metrics_before.txt", "metrics_after.txt"}
DATA_EXTENSIONS = {".json", ".jsonl", ".ndjson", ".txt", ".tsv", ".csv", ".yaml", ".yml"}
CODE_CHARS = re.compile(r"[;{}()=<>#|\\/_\[\]`*$@]")


def syllables(word):
    """An English syllable estimate: vowel groups, a silent final e dropped, at least one."""
    w = re.sub(r"[^a-z]", "", word.lower())
    if not w:
        return 0
    n = len(re.findall(r"[aeiouy]+", w))
    if w.endswith("e") and not w.endswith(("le", "ee", "ye")) and n > 1:
        n -= 1
    return max(n, 1)


def poem_lines(text):
    """Candidate verse lines with their line numbers: the text split at newlines, JSON's escaped \\n
    and double quotes."""
    for number, line in enumerate(text.split("\n"), 1):
        for raw in re.split(r'\\n|"', line):
            yield number, raw.strip().strip("',").strip()


def is_verse(line):
    words = line.split()
    return 2 <= len(words) <= 10 and len(line) <= 60 and not CODE_CHARS.search(line) and \
        all(re.fullmatch(r"[A-Za-z'’.,!?:-]+", w) for w in words)


def find_haiku(text):
    numbered = list(poem_lines(text))
    lines = [l for _, l in numbered]
    for i in range(len(lines) - 2):
        three = lines[i:i + 3]
        if all(is_verse(l) for l in three):
            counts = [sum(syllables(w) for w in l.split()) for l in three]
            if all(abs(c - want) <= 1 for c, want in zip(counts, (5, 7, 5))):
                return numbered[i][0], three
    return None


def scan_text(path, text):
    hits = []
    base = os.path.basename(path)
    if path.startswith("test-results/") or base in ARTIFACT_NAMES:
        hits.append(f"{path}: artifact: a haiku run's output is tracked")
    for n, line in enumerate(text.splitlines(), 1):
        word = MINUTE_RE.search(line)
        nonce = NONCE_RE.search(line)
        if word and nonce:
            hits.append(f"{path}:{n}: pairing: minute word {word.group(0)!r} with nonce-like {nonce.group(0)!r}")
    found = find_haiku(text)
    if found:
        hits.append(f"{path}:{found[0]}: haiku: {' / '.join(found[1])}")
    if os.path.splitext(path)[1].lower() in DATA_EXTENSIONS and base != "CMakeLists.txt" and re.search(r"haiku", text, re.I):
        hits.append(f"{path}: data: a data file mentions a haiku")
    return hits


def scan_repo(repo):
    files = subprocess.run(["git", "-C", repo, "ls-files", "-z"], check=True, capture_output=True).stdout
    hits, scanned = [], 0
    for rel in files.decode().split("\0"):
        if not rel:
            continue
        full = os.path.join(repo, rel)
        if not os.path.isfile(full) or os.path.getsize(full) > 16 << 20:
            continue
        data = open(full, "rb").read()
        if b"\0" in data[:8192]:
            continue
        scanned += 1
        hits += scan_text(rel, data.decode("utf-8", "replace"))
    return hits, scanned


def self_check():
    """The scan must see planted fixtures, and must not see ordinary text."""
    # Stored in ROT13 so that this file itself holds no fixture; decoded here.
    planted = {
        'tests/fixtures/poem.txt': codecs.decode('Fvyvpba eviref\ngubhfnaqf bs pberf uhz va gvzr\ngur xreary ergheaf\n', "rot13"),
        'tests/fixtures/answer.json': codecs.decode('{"pbagrag": "Fvyvpba eviref,\\agubhfnaqf bs pberf uhz va gvzr,\\agur xreary ergheaf"}', "rot13"),
        'tests/fixtures/pair.tsv': codecs.decode('zvahgr\tjbeq\tabapr\n52\tsvsgl-gjb\tx3k9d2no\n', "rot13"),
        'tests/fixtures/case.cpp': codecs.decode('pbafg pune* xPnfr = "frira 7no3xd0m";\n', "rot13"),
        'test-results/haiku/run/verification.json': codecs.decode('{}\n', "rot13"),
    }
    clean = {"docs/notes.md": "The kernel reads 8 blocks of 32 values.\nIt runs on the GPU.\n",
             "tests/case.cpp": "int seven = 7;  // seven blocks\n"}
    for path, text in planted.items():
        assert scan_text(path, text), f"self-check: the planted fixture {path} was not found"
    for path, text in clean.items():
        assert not scan_text(path, text), f"self-check: ordinary text in {path} was flagged: {scan_text(path, text)}"
    with tempfile.TemporaryDirectory() as d:
        subprocess.run(["git", "init", "-q", d], check=True)
        for path, text in planted.items():
            os.makedirs(os.path.join(d, os.path.dirname(path)), exist_ok=True)
            open(os.path.join(d, path), "w").write(text)
        subprocess.run(["git", "-C", d, "add", "-f", "."], check=True)
        hits, _ = scan_repo(d)
        assert len(hits) >= len(planted), f"self-check: a planted repository gave only {hits}"
    print(f"self-check: {len(planted)} planted fixtures found, {len(clean)} ordinary files clean")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", default=os.path.join(os.path.dirname(__file__), "..", ".."))
    repo = ap.parse_args().repo
    if subprocess.run(["git", "-C", repo, "rev-parse", "--git-dir"], capture_output=True).returncode != 0:
        print(f"SKIPPED: {repo} is not a git checkout (the scan reads its tracked files)")
        return 77
    self_check()
    hits, scanned = scan_repo(repo)
    for h in hits:
        print("FOUND", h)
    print(f"scanned {scanned} tracked files: {len(hits)} findings")
    return 1 if hits else 0


if __name__ == "__main__":
    sys.exit(main())
