#!/usr/bin/env python3
"""Prints the C tables src/data/minhash.c uses to reproduce datatrove's English word tokenizer (spaCy's blank "en"
tokenizer) on text already simplified by datatrove's simplify_text: the special cases that can still match (lowercase,
no punctuation, no whitespace) with the lengths of their pieces, and the code points of datatrove's PUNCTUATION.
Rerun after a spaCy or datatrove upgrade:  python3 tests/reference/spacy_en_specials.py"""
import spacy
from datatrove.utils.text import PUNCTUATION

tok = spacy.blank("en").tokenizer
punct = set(PUNCTUATION)
rows = []
for k in sorted(tok.rules):
    if k != k.lower() or any(c in punct or c.isspace() for c in k):
        continue
    if any(c.isdigit() for c in k):  # digits are all "0" after simplify_text; no special case starts with 0
        assert not k.startswith("0")
        continue
    pieces = [t.text for t in tok(k)]
    if pieces == [k]:
        continue
    assert "".join(pieces) == k, (k, pieces)
    rows.append((k, pieces))
print(f"/* {len(rows)} special cases of spaCy {spacy.__version__} (blank en) reachable after simplify_text */")
print("static const struct { const char *word; uint8_t n, len[4]; } SPECIALS[] = {")
for k, p in rows:
    print(f'    {{"{k}", {len(p)}, {{{", ".join(str(len(x)) for x in p)}}}}},')
print("};")
cps = sorted(set(ord(c) for c in PUNCTUATION))
print(f"/* datatrove.utils.text.PUNCTUATION: {len(cps)} code points (simplify_text replaces them by spaces) */")
print("static const int32_t PUNCT_CPS[] = {")
for i in range(0, len(cps), 16):
    print("    " + ", ".join(str(c) for c in cps[i:i + 16]) + ",")
print("};")
