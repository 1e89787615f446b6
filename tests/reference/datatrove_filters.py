#!/usr/bin/env python3
"""Runs datatrove's GopherQualityFilter, GopherRepetitionFilter, C4QualityFilter and FineWebQualityFilter (their
defaults, English) on the real corpora (datatrove_corpus.py) and writes every document's decisions to
tests/reference/datatrove_decisions.tsv, which test_data_parity compares with src/data/.

    python3 -m venv /work/venv-dt && /work/venv-dt/bin/pip install datatrove spacy
    /work/venv-dt/bin/python tests/reference/datatrove_filters.py [--words FILE]

Fixture format (text, one line per document, in corpus order):
    #datatrove <version> spacy <version>
    #reasons keep <reason1> <reason2> ...          (codes: index in this list)
    <corpus letter b|f|d> <doc index> <gopher_quality> <gopher_repetition> <c4> <fineweb> <c4 text fnv1a32 hex>
The C4 hash is FNV-1a (32-bit) of the kept text's UTF-8 (0 when dropped). --words also writes each document's
datatrove words (split_into_words) joined by U+0001, one document per line, for debugging the word splitter."""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import datatrove_corpus  # noqa: E402


def fnv1a(b):
    h = 0x811C9DC5
    for x in b:
        h = ((h ^ x) * 0x01000193) & 0xFFFFFFFF
    return h


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "datatrove_decisions.tsv"))
    ap.add_argument("--words")
    a = ap.parse_args()

    import datatrove
    import spacy
    from datatrove.data import Document
    from datatrove.pipeline.filters import (C4QualityFilter, FineWebQualityFilter, GopherQualityFilter,
                                            GopherRepetitionFilter)
    from datatrove.utils.text import split_into_words

    filters = [GopherQualityFilter(), GopherRepetitionFilter(), C4QualityFilter(), FineWebQualityFilter()]
    reasons = ["keep"]
    rows = []
    wf = open(a.words, "w", encoding="utf-8") if a.words else None
    for corpus, doc_id, text in datatrove_corpus.all_docs():
        row = [corpus[0], doc_id]
        c4hash = 0
        for f in filters:
            doc = Document(text=text, id=doc_id)
            r = f.filter(doc)
            reason = "keep" if r is True else r[1]
            if reason not in reasons:
                reasons.append(reason)
            row.append(reasons.index(reason))
            if isinstance(f, C4QualityFilter) and r is True:
                c4hash = fnv1a(doc.text.encode("utf-8"))
        row.append(c4hash)
        rows.append(row)
        if wf:
            wf.write("\x01".join(split_into_words(text)).replace("\n", "\\n") + "\n")
    with open(a.out, "w") as o:
        o.write("#datatrove %s spacy %s\n" % (datatrove.__version__ if hasattr(datatrove, "__version__") else
                                              __import__("importlib.metadata").metadata.version("datatrove"),
                                              spacy.__version__))
        o.write("#reasons " + " ".join(reasons) + "\n")
        idx = {}
        for r in rows:
            k = idx.get(r[0], 0)
            idx[r[0]] = k + 1
            o.write("%s %d %d %d %d %d %x\n" % (r[0], k, r[2], r[3], r[4], r[5], r[6]))
    print("wrote %s: %d documents, reasons %s" % (a.out, len(rows), reasons))


if __name__ == "__main__":
    main()
