#!/usr/bin/env python3
"""datatrove's side of bench/bench_data_filters.c: each stage over every document of the real corpora
(tests/reference/datatrove_corpus.py), one core, printing "stage cpu_seconds megabytes" lines (process CPU time: the machine is shared, and CPU
time is what "MB/s per core" means).

    /work/venv-dt/bin/python bench/datatrove_filters_bench.py [--repeat N] [--stride K] [--corpus-dir DIR]
Stages: words (split_into_words), gopher_quality, gopher_repetition, c4, fineweb, pii (PIIFormatter).
Each stage loops over all documents, so each filter tokenizes afresh (datatrove's lru_cache of 5 texts only helps
when filters run back to back on one document); "all_filters" runs the four filters per document back to back,
where that cache does help."""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "reference"))
import datatrove_corpus  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--stride", type=int, default=1, help="every K-th document only")
    ap.add_argument("--corpus-dir", help="one document per file under this folder (bench/mixed_corpus.py) instead "
                    "of the real corpora; files in byte order of their paths, as bench_data_filters reads them")
    a = ap.parse_args()
    from datatrove.data import Document
    from datatrove.pipeline.filters import (C4QualityFilter, FineWebQualityFilter, GopherQualityFilter,
                                            GopherRepetitionFilter)
    from datatrove.pipeline.formatters import PIIFormatter
    from datatrove.utils.text import split_into_words

    if a.corpus_dir:
        paths = sorted(os.path.join(r, f).encode() for r, _, fs in os.walk(a.corpus_dir) for f in fs)
        docs = (open(p, "rb").read().decode("utf-8", "replace") for p in paths)
    else:
        docs = (t for _, _, t in datatrove_corpus.all_docs())
    texts = [t for i, t in enumerate(docs) if i % a.stride == 0]
    mb = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    split_into_words("warm up the tokenizer.")
    pii = PIIFormatter()
    stages = [
        ("words", lambda t: split_into_words(t)),
        ("gopher_quality", lambda t, f=GopherQualityFilter(): f.filter(Document(text=t, id="x"))),
        ("gopher_repetition", lambda t, f=GopherRepetitionFilter(): f.filter(Document(text=t, id="x"))),
        ("c4", lambda t, f=C4QualityFilter(): f.filter(Document(text=t, id="x"))),
        ("fineweb", lambda t, f=FineWebQualityFilter(): f.filter(Document(text=t, id="x"))),
        ("pii", lambda t: pii.format(t)),
    ]
    fs = [GopherQualityFilter(), GopherRepetitionFilter(), C4QualityFilter(), FineWebQualityFilter()]

    def all_filters(t):
        for f in fs:
            f.filter(Document(text=t, id="x"))

    stages.append(("all_filters", all_filters))
    for name, fn in stages:
        best = None
        for _ in range(a.repeat):
            t0 = time.process_time()
            for t in texts:
                fn(t)
            dt = time.process_time() - t0
            best = dt if best is None else min(best, dt)
        print("%s %.4f %.4f" % (name, best, mb), flush=True)


if __name__ == "__main__":
    main()
