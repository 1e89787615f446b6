#!/usr/bin/env python3
"""A mixed, held-out-like corpus from what Debian installs on the machine, one document per file, for the data
benchmarks (bench/bench_data.sh). The filters were tuned and checked on bible-kjv, fortunes and dict-devil; this
corpus is text they never saw, in other shapes and languages:

  man/LANG/   manual pages rendered as a terminal shows them (man -l | col -bx), in English, German, French,
              Spanish and Russian (up to --man-pages per language, by name; manpages-de/-fr/-es/-ru add more)
  pydoc/      Python's documentation of standard-library modules (python3 -m pydoc MODULE)
  changelog/  Debian changelog entries (/usr/share/doc/*/changelog.Debian.gz, every --changelog-stride-th package,
              at most 20 entries each)
  info/       GNU info pages (/usr/share/info/*.info*.gz), one document per node (every --info-stride-th)

Every document is written as UTF-8 (undecodable bytes replaced), so lmforge and datatrove read the same text.
Deterministic for a given set of installed packages. Prints what it wrote per kind.

    python3 bench/mixed_corpus.py OUT_DIR [--man-pages 80] [--changelog-stride 8] [--info-stride 3]
"""
import argparse
import concurrent.futures
import glob
import gzip
import os
import re
import subprocess
import sys

MAN_LANGS = ["en", "de", "fr", "es", "ru"]
PYDOC_MODULES = ["argparse", "asyncio", "base64", "collections", "contextlib", "csv", "dataclasses", "datetime",
                 "decimal", "email", "enum", "fractions", "functools", "gzip", "hashlib", "heapq", "html", "http",
                 "io", "itertools", "json", "logging", "math", "os", "pathlib", "pickle", "random", "re", "shutil",
                 "socket", "sqlite3", "statistics", "string", "struct", "subprocess", "tarfile", "textwrap",
                 "threading", "time", "typing", "unittest", "urllib", "uuid", "zipfile"]


def run(cmd, env=None):
    r = subprocess.run(cmd, capture_output=True, env=env, shell=isinstance(cmd, str))
    return r.stdout.decode("utf-8", "replace") if r.returncode == 0 else ""


def man_pages(lang, limit):
    root = "/usr/share/man" if lang == "en" else "/usr/share/man/" + lang
    pages = sorted(glob.glob(root + "/man[1-8]/*"))[:limit]
    env = dict(os.environ, MANWIDTH="80", LANG="C.UTF-8", MAN_KEEP_FORMATTING="0")

    def render(p):
        return run("man --nj --nh -l '%s' 2>/dev/null | col -bx" % p.replace("'", "'\\''"), env)

    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as ex:
        return [t for t in ex.map(render, pages) if t.strip()]


def pydocs():
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as ex:
        docs = ex.map(lambda m: run([sys.executable, "-m", "pydoc", m], dict(os.environ, PAGER="cat")), PYDOC_MODULES)
        return [t for t in docs if t.strip()]


def changelogs(stride):
    files = sorted(glob.glob("/usr/share/doc/*/changelog.Debian.gz"))[::stride]
    head = re.compile(r"^\S+ \([^)]*\) [^;]*; urgency=", re.M)
    out = []
    for f in files:
        try:
            text = gzip.open(f).read().decode("utf-8", "replace")
        except OSError:
            continue
        starts = [m.start() for m in head.finditer(text)] + [len(text)]
        out += [text[a:b].strip() for a, b in zip(starts, starts[1:])][:20]
    return [t for t in out if t]


def info_nodes(stride):
    out = []
    for f in sorted(glob.glob("/usr/share/info/*.info*.gz")):
        text = gzip.open(f).read().decode("utf-8", "replace")
        out += [n.strip() for n in text.split("\x1f") if len(n.strip()) >= 200]
    return out[::stride]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--man-pages", type=int, default=80)
    ap.add_argument("--changelog-stride", type=int, default=8)
    ap.add_argument("--info-stride", type=int, default=3)
    a = ap.parse_args()
    kinds = [("man/" + l, lambda l=l: man_pages(l, a.man_pages)) for l in MAN_LANGS]
    kinds += [("pydoc", pydocs), ("changelog", lambda: changelogs(a.changelog_stride)), ("info", lambda: info_nodes(a.info_stride))]
    total_docs = total_bytes = 0
    for name, fn in kinds:
        docs = fn()
        d = os.path.join(a.out, name)
        os.makedirs(d, exist_ok=True)
        nb = 0
        for i, t in enumerate(docs):
            b = t.encode("utf-8")
            nb += len(b)
            with open(os.path.join(d, "%05d.txt" % i), "wb") as f:
                f.write(b)
        print("  %-12s %6d documents %8.2f MB" % (name, len(docs), nb / 1e6))
        total_docs += len(docs)
        total_bytes += nb
    print("  %-12s %6d documents %8.2f MB" % ("total", total_docs, total_bytes / 1e6))


if __name__ == "__main__":
    main()
