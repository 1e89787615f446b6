"""The real corpora of the data-filter parity test, split into documents exactly as tests/corpus_util.h does:
  bible   - `bible gen1:1-rev22:21` (Debian bible-kjv), one document per chapter (header line to next header)
  fortune - every fortune file in /usr/share/games/fortunes (Debian fortunes; not the .dat indexes or .u8
            links), sorted by name, split on lines that are exactly "%"; blank documents skipped
  devil   - /usr/share/dictd/devil.dict.dz (Debian dict-devil), one document per entry of devil.index,
            the dictd 00database* entries skipped
Yields (corpus, doc_id, text)."""
import gzip
import os
import subprocess

FORTUNE_DIR = "/usr/share/games/fortunes"
DEVIL = "/usr/share/dictd/devil"
B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def bible_chapters():
    out = subprocess.run(["bible", "gen1:1-rev22:21"], capture_output=True, check=True).stdout
    lines = out.decode("utf-8", "replace").split("\n")
    heads = [i for i in range(len(lines))
             if lines[i] and not lines[i].startswith(" ") and (i == 0 or lines[i - 1] == "")
             and i + 1 < len(lines) and lines[i + 1] == ""]
    for k, h in enumerate(heads):
        end = heads[k + 1] if k + 1 < len(heads) else len(lines)
        text = "\n".join(lines[h:end]).strip("\n")
        yield "bible", lines[h], text


def fortunes():
    names = sorted(n for n in os.listdir(FORTUNE_DIR)
                   if not n.endswith(".dat") and not os.path.islink(os.path.join(FORTUNE_DIR, n)))
    for n in names:
        data = open(os.path.join(FORTUNE_DIR, n), "rb").read().decode("utf-8", "replace")
        docs, cur = [], []
        for line in data.split("\n"):
            if line == "%":
                docs.append("\n".join(cur))
                cur = []
            else:
                cur.append(line)
        docs.append("\n".join(cur))
        for i, d in enumerate(docs):
            if d.strip():
                yield "fortune", "%s:%d" % (n, i), d


def b64num(s):
    v = 0
    for ch in s:
        v = v * 64 + B64.index(ch)
    return v


def devil_entries():
    data = gzip.open(DEVIL + ".dict.dz").read()
    for i, line in enumerate(open(DEVIL + ".index", encoding="utf-8")):
        parts = line.rstrip("\n").split("\t")
        if len(parts) < 3 or parts[0].startswith("00database"):
            continue
        off, ln = b64num(parts[1]), b64num(parts[2])
        yield "devil", "%s:%d" % (parts[0], i), data[off:off + ln].decode("utf-8", "replace")


def all_docs():
    yield from bible_chapters()
    yield from fortunes()
    yield from devil_entries()
