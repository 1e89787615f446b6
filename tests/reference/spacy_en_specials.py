#!/usr/bin/env python3
"""Prints the C table src/data/minhash.c uses for datatrove's simplify_text: the code points of datatrove's PUNCTUATION.
(The English word splitter itself is src/data/text.c, shared with the quality filters; its spaCy tables are in
src/data/wordtok_en_tables.h.) Rerun after a datatrove upgrade:  python3 tests/reference/spacy_en_specials.py"""
from datatrove.utils.text import PUNCTUATION

cps = sorted(set(ord(c) for c in PUNCTUATION))
print(f"/* datatrove.utils.text.PUNCTUATION: {len(cps)} code points (simplify_text replaces them by spaces) */")
print("static const int32_t PUNCT_CPS[] = {")
for i in range(0, len(cps), 16):
    print("    " + ", ".join(str(c) for c in cps[i:i + 16]) + ",")
print("};")
