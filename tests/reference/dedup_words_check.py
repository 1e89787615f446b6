#!/usr/bin/env python3
"""Adversarial agreement check of the MinHash text path with datatrove: 3,000 random strings built from pieces that
exercise every rule (accents, Greek with final sigma, CJK, Hangul, Arabic digits and separators, fullwidth forms,
symbols and emoji, currency, units after digits, contractions, combining marks, Unicode spaces) go through
datatrove's simplify_text + spaCy word_tokenize and through lmforge (bench_dedup --words); simplified texts and word
hashes must be identical.  Usage: python3 tests/reference/dedup_words_check.py [path/to/bench_dedup]
(needs the datatrove venv: pip install datatrove spacy "xxhash<4" regex tokenizers)."""
import random, subprocess, sys, xxhash, warnings
warnings.filterwarnings("ignore")
from datatrove.utils.text import simplify_text
from datatrove.utils.word_tokenizers import load_word_tokenizer
w = load_word_tokenizer("eng")
random.seed(int(sys.argv[2]) if len(sys.argv) > 2 else 1)
pieces = ["café", "naïve", "Ærø", "straße", "İstanbul", "ΣΟΦΙΑ", "σοφός", "ΟΔΟΣ", "ΟΔΟΣ.", "ΣΑ", "AΣB", "Σ", "Москва", "北京市", "한국어", "١٢٣", "٣٫٥", "x²", "5km", "10°C", "£5", "€20", "5€", "☺", "🙂", "👍🏽", "¿qué?", "¡sí!", "«quote»", "‘single’", "“double”", "—", "–", "…", "§12", "©2020", "don't", "I'm", "y'all", "gonna", "cannot", "ﬁne", "Å", "ǅ", "ᾂ", "e\u0301", "a\u0308b", "\u00a0", "\u2003", "tab\there", "line\nbreak", "x·y", "a‚b", "『x』", "〔y〕", "⟦z⟧", "٪", "؟", "।", "hello", "world", "the", "0", "3.14", "1,000,000", "mph", "kg", "m²", "µm", "5µm", "km/h", "hPa", "5MB", "10GB", "$5", "a/b", "c:d", "e=f", "#tag", "@user", "http://x.com/a?b=c", "x@y.com", "'s", "ǈ", "ß", "ﬀ", "Ⅻ", "①", "½", "³", "ｆｕｌｌ", "ｗｉｄｔｈ", "１２"]
lines = []
for i in range(3000):
    k = random.randint(1, 12)
    lines.append("".join(random.choice(pieces) + random.choice(["", " ", " ", "  "]) for _ in range(k)).replace("\n", " "))
out = subprocess.run([sys.argv[1] if len(sys.argv) > 1 else "build/bench_dedup", "--words"], input="\n".join(lines) + "\n", capture_output=True, text=True).stdout.split("\n")
bad_s = bad_t = 0
for line, o in zip(lines, out):
    cs, ct = o.split("\t")
    ps = simplify_text(line)
    pt = [xxhash.xxh64_intdigest(t) for t in w.word_tokenize(ps)]
    ctl = [int(x) for x in ct.split()]
    if cs != ps:
        bad_s += 1
        if bad_s <= 6: print("SIMPLIFY", repr(line), repr(cs), repr(ps))
    elif ctl != pt:
        bad_t += 1
        if bad_t <= 8: print("TOKENS", repr(ps), w.word_tokenize(ps))
print(f"{len(lines)} strings: simplify differs {bad_s}, words differ {bad_t}")
sys.exit(1 if bad_s or bad_t else 0)
