#!/usr/bin/env python3
"""Ambrose Bierce's Devil's Dictionary (Debian package dict-devil) as supervised chat examples for `make
demo-finetune`: one conversation per entry, "Define 'X' the way Ambrose Bierce's Devil's Dictionary would." ->
the entry's first paragraph. Entries are split 90/10 into train.jsonl and val.jsonl by a seeded shuffle (whole
entries, so no definition is in both). Standard library only.

usage: scripts/devil-sft.py OUT_DIR [--dict /usr/share/dictd/devil.dict.dz] [--max-chars 400]
"""
import argparse
import gzip
import json
import os
import random
import re

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("--dict", default="/usr/share/dictd/devil.dict.dz")
ap.add_argument("--max-chars", type=int, default=400)
a = ap.parse_args()

text = gzip.open(a.dict, "rt", encoding="latin-1").read()
head = re.compile(r"^([A-Z][A-Z'\- ]*[A-Z]), ([a-z.]+(?: and [a-z.]+)?)\s+(.*)$", re.S)
entries = []
for para in re.split(r"\n\s*\n", text):
    m = head.match(para.strip())
    if not m:
        continue
    word, body = m.group(1), " ".join(m.group(3).split())
    if len(body) < 20:
        continue
    if len(body) > a.max_chars:  # the first sentences that fit
        cut = body[: a.max_chars]
        body = cut[: cut.rfind(". ") + 1] if ". " in cut else cut
    entries.append((word.title(), body))

random.Random(1906).shuffle(entries)
n_val = max(1, len(entries) // 10)
os.makedirs(a.out, exist_ok=True)
for name, part in (("val.jsonl", entries[:n_val]), ("train.jsonl", entries[n_val:])):
    with open(os.path.join(a.out, name), "w") as f:
        for word, body in part:
            q = f"Define '{word.lower()}' the way Ambrose Bierce's Devil's Dictionary would."
            f.write(json.dumps({"messages": [{"role": "user", "content": q},
                                             {"role": "assistant", "content": body}]}) + "\n")
print(f"{len(entries)} entries: {len(entries) - n_val} train, {n_val} validation -> {a.out}")
