#!/usr/bin/env python3
"""check_tiktoken.py — lmforge's GPT-2 tokenizer against the original GPT-2 ids and against tiktoken.

1. Every case of tests/data/gpt2/reference_cases.json (ids from the original GPT-2 encoder) encodes exactly.
2. tiktoken's GPT-2 Encoding, built from the same local encoder.json (no download), and lmforge give the same ids
   over the whole real corpus (King James Bible + every fortunes file) and the mixed multilingual/code sample:
   each document whole, then cut into chunks of random length (1..4096 characters, cut anywhere), then chunks with
   <|endoftext|> inserted and special tokens allowed on both sides. Also decode(encode(x)) == x on every chunk.
3. Writes a sample of chunks and their ids to gpt2_corpus_sample.json for the C test (tests/test_tokenizer.c).

Needs: pip install tiktoken; Debian bible-kjv and fortunes; a build of liblmforge.so (LMF_BUILD, default build/).
Usage: python3 tests/reference/tokenizer/check_tiktoken.py [--write-fixture]"""
import json
import os
import random
import sys
import time

import tiktoken
from tiktoken_ext.openai_public import r50k_pat_str

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lmf  # noqa: E402


def byte_decoder():
    """GPT-2's byte-to-unicode alphabet, inverted: character -> byte."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def tiktoken_gpt2():
    enc = json.load(open(os.path.join(lmf.GPT2, "encoder.json"), encoding="utf-8"))
    dec = byte_decoder()
    ranks = {bytes(dec[ch] for ch in tok): i for tok, i in enc.items() if tok != "<|endoftext|>"}
    return tiktoken.Encoding("gpt2-local", pat_str=r50k_pat_str, mergeable_ranks=ranks,
                             special_tokens={"<|endoftext|>": enc["<|endoftext|>"]}, explicit_n_vocab=len(enc))


def chunks(text, rng, max_len=4096):
    i = 0
    while i < len(text):
        n = rng.randint(1, max_len)
        yield text[i:i + n]
        i += n


def main():
    write_fixture = "--write-fixture" in sys.argv
    ours = lmf.Tokenizer(lmf.GPT2)
    tk = tiktoken_gpt2()

    cases = json.load(open(os.path.join(lmf.GPT2, "reference_cases.json"), encoding="utf-8"))
    bad = sum(ours.encode(c["text"]) != c["ids"] for c in cases)
    tk_bad = sum(tk.encode(c["text"]) != c["ids"] for c in cases)
    print(f"reference_cases.json: {len(cases)} cases, {bad} mismatches (tiktoken itself: {tk_bad})")
    ok = bad == 0

    docs = [(n, b.decode("utf-8")) for n, b in lmf.corpus()]
    docs.append(("mixed multilingual/code sample", lmf.mixed_sample().decode("utf-8")))
    rng = random.Random(1234)
    totals = {"documents": [0, 0, 0], "chunks": [0, 0, 0], "chunks+special": [0, 0, 0]}
    sample = []
    t0 = time.time()
    for name, text in docs:
        groups = {"documents": [text], "chunks": list(chunks(text, rng))}
        sp = []
        for c in chunks(text, rng, 2048):
            k = rng.randint(0, len(c))
            sp.append(c[:k] + "<|endoftext|>" + c[k:])
        groups["chunks+special"] = sp
        for g, items in groups.items():
            allow = g == "chunks+special"
            for t in items:
                a = ours.encode(t, allow_special=allow)
                b = tk.encode(t, allowed_special="all" if allow else set(), disallowed_special=())
                totals[g][0] += 1
                totals[g][2] += len(t.encode())
                if a != b:
                    totals[g][1] += 1
                    if totals[g][1] <= 3:
                        print(f"  MISMATCH in {name} ({g}): {t[:80]!r}")
                if g == "chunks" and ours.decode_bytes(a) != t.encode():
                    print(f"  ROUNDTRIP FAILED in {name}: {t[:80]!r}")
                    ok = False
                if g == "chunks" and len(t) > 200 and rng.random() < 0.02:
                    sample.append({"doc": name, "text": t, "ids": b})
    for g, (n, m, nbytes) in totals.items():
        print(f"tiktoken parity, {g}: {n} texts, {nbytes / 1e6:.2f} MB, {m} mismatches")
        ok = ok and m == 0
    print(f"({time.time() - t0:.1f} s)")

    if write_fixture:
        rng.shuffle(sample)
        keep, size = [], 0
        for s in sample:
            if size + len(s["text"].encode()) > 80_000:
                continue
            keep.append(s)
            size += len(s["text"].encode())
        # and the reference cases with special tokens allowed, for the C test of that path
        extra = [{"doc": "special", "text": t, "ids": tk.encode(t, allowed_special="all"), "allow_special": True}
                 for t in ["Hello<|endoftext|>world", "<|endoftext|><|endoftext|> a", "x <|endoftext|>\n\n"]]
        out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gpt2_corpus_sample.json")
        with open(out, "w", encoding="utf-8") as f:
            json.dump(keep + extra, f, ensure_ascii=False, separators=(",", ":"))
            f.write("\n")
        print(f"wrote {out}: {len(keep)} chunks, {size} bytes of text")
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
