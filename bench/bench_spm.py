#!/usr/bin/env python3
"""bench_spm.py — lmforge's SentencePiece tokenizer against the sentencepiece library, Hugging Face tokenizers and
llama.cpp, in one run.

Encode, single thread, the Phi-3 GGUF vocabulary (tests/data/phi3/vocab.gguf; a Llama-2 SentencePiece BPE with byte
fallback) in all: lmforge through ctypes with a freshly loaded tokenizer per run (its word cache starts cold);
sentencepiece 0.2 on the same pieces as a model proto (tests/reference/tokenizer/check_sentencepiece.py), one
encode() of the whole text; Hugging Face `tokenizers` (RAYON_NUM_THREADS=1) on the tokenizer.json lmforge writes for
the vocabulary (`lmforge tokenize --save`: byte_fallback BPE, merges derived from the scores), one encode() of the
whole text; llama.cpp's llama-tokenize when LLAMA_CPP_DIR is set (its process time on the text
less its time on one character: the vocabulary load and start-up). Texts: the King James Bible (bible-kjv) and the
mixed multilingual/code sample of tests/reference/tokenizer/lmf.py. Median of --runs runs, libraries alternating;
MB/s of UTF-8 input. The ids are compared on each text (HF's with lmforge's own with special tokens parsed: HF
always splits out added tokens such as Phi-3's <|endoftext|>, which the mixed sample holds; the others without).

Needs: pip install sentencepiece protobuf gguf tokenizers; Debian bible-kjv; build/liblmforge.so (LMF_BUILD=dir to change).
Usage: [LLAMA_CPP_DIR=.../build/bin] python3 bench/bench_spm.py [--runs 5]"""
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "reference", "tokenizer"))
import lmf  # noqa: E402
from check_sentencepiece import V, proto  # noqa: E402


def llama_tokenize(bindir, text):
    """(seconds, ids) of llama-tokenize on text."""
    with tempfile.NamedTemporaryFile() as f:
        f.write(text)
        f.flush()
        cmd = [os.path.join(bindir, "llama-tokenize"), "-m", V, "-f", f.name, "--ids", "--log-disable", "--no-bos",
               "--no-escape", "--no-parse-special"]
        t0 = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, check=True, env=dict(os.environ, LD_LIBRARY_PATH=bindir))
        dt = time.perf_counter() - t0
    line = r.stdout.decode().strip().splitlines()[-1]
    return dt, [int(x) for x in line.strip("[]").split(",") if x.strip()]


def main():
    runs = int(sys.argv[sys.argv.index("--runs") + 1]) if "--runs" in sys.argv else 5
    os.environ["RAYON_NUM_THREADS"] = "1"
    import sentencepiece as spm
    from tokenizers import Tokenizer
    sp = spm.SentencePieceProcessor(model_proto=proto())
    with tempfile.TemporaryDirectory() as d:
        lmf.Tokenizer(V).save(d + "/tokenizer.json")
        hf = Tokenizer.from_file(d + "/tokenizer.json")
    bindir = os.environ.get("LLAMA_CPP_DIR")
    texts = [("bible-kjv", lmf.corpus()[0][1]), ("mixed multilingual/code", lmf.mixed_sample())]
    lib = lmf._lib()
    cpu = subprocess.run(["sh", "-c", "lscpu | grep -E 'Model name|CPU family|^Model:' | tr -s ' '"],
                         capture_output=True, text=True).stdout.replace("\n", "; ")
    print(f"CPU: {cpu}\n")
    print("| text | MB | lmforge MB/s | sentencepiece MB/s | HF tokenizers MB/s | llama.cpp MB/s | "
          "lmforge / sentencepiece | lmforge / HF | lmforge / llama.cpp |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, b in texts:
        s = b.decode("utf-8", "replace")
        b = s.encode()  # sentencepiece takes str: all three see the same valid UTF-8
        ours, theirs, hft, lc = [], [], [], []
        base = llama_tokenize(bindir, b"x")[0] if bindir else None
        for _ in range(runs):
            tok = lmf.Tokenizer(V, lib=lib)
            t0 = time.perf_counter()
            n = tok.encode_count(b)
            ours.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            want = sp.encode(s)
            theirs.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            hids = hf.encode(s, add_special_tokens=False).ids
            hft.append(time.perf_counter() - t0)
            if bindir:
                dt, got = llama_tokenize(bindir, b)
                lc.append(max(dt - base, 1e-9))
        ids = lmf.Tokenizer(V, lib=lib).encode(b)
        if ids != want or n != len(want):
            sys.exit(f"{name}: lmforge's ids differ from sentencepiece's")
        if hids != lmf.Tokenizer(V, lib=lib).encode(b, allow_special=True):  # HF always parses added tokens
            sys.exit(f"{name}: HF tokenizers' ids differ from lmforge's with special tokens parsed")
        if bindir and got != want:
            sys.exit(f"{name}: llama.cpp's ids differ from sentencepiece's")
        mb = len(b) / 1e6
        a, c, h = mb / statistics.median(ours), mb / statistics.median(theirs), mb / statistics.median(hft)
        d = mb / statistics.median(lc) if bindir else None
        print(f"| {name} | {mb:.2f} | {a:.1f} | {c:.1f} | {h:.2f} | " + (f"{d:.1f}" if bindir else "-") +
              f" | {a / c:.1f}x | {a / h:.0f}x | " + (f"{a / d:.1f}x |" if bindir else "- |"))
    print(f"\n(ids of every library equal on every text; {len(want)} tokens in the last)")


if __name__ == "__main__":
    main()
