#!/usr/bin/env python3
"""bench_tokenizer.py — lmforge's tokenizer against tiktoken and Hugging Face `tokenizers`, in one run.

Encode: single thread, GPT-2 vocabulary (tests/data/gpt2) in all three, on the King James Bible (bible-kjv)
and the mixed multilingual/code sample of tests/reference/tokenizer/lmf.py; each library encodes the whole text in
one call (tiktoken: encode_ordinary; HF: encode without special tokens, RAYON_NUM_THREADS=1; lmforge: through
ctypes, a freshly loaded tokenizer per run so its pre-token cache starts cold). Median of --runs runs, runs of the
libraries alternating. Throughput counts UTF-8 bytes in.

Training: a 32,000-token vocabulary on bible-kjv + every fortunes file (one document per file), lmforge vs HF's
BpeTrainer with the same settings (ByteLevel GPT-2 regex, 256-byte initial alphabet, <|endoftext|>, min_frequency
0); HF timed with 1 thread and with its default thread pool (each in a fresh process). Merges are compared.

Needs: pip install tiktoken tokenizers; Debian bible-kjv, fortunes; build/liblmforge.so.
Usage: python3 bench/bench_tokenizer.py [--runs 5]"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "reference", "tokenizer"))
import lmf  # noqa: E402

TRAIN_HF = r"""
import json, sys, time
sys.path.insert(0, %r)
import lmf
from tokenizers import Tokenizer, models, pre_tokenizers, trainers, decoders
docs = [b.decode("utf-8") for _, b in lmf.corpus()]
t = Tokenizer(models.BPE())
t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
t.decoder = decoders.ByteLevel()
tr = trainers.BpeTrainer(vocab_size=%d, min_frequency=0, special_tokens=["<|endoftext|>"],
                         initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
t0 = time.perf_counter()
t.train_from_iterator(docs, tr)
dt = time.perf_counter() - t0
t.save(%r)
print(dt)
"""


def main():
    runs = int(sys.argv[sys.argv.index("--runs") + 1]) if "--runs" in sys.argv else 5
    os.environ["RAYON_NUM_THREADS"] = "1"
    import tiktoken  # noqa: F401
    from tokenizers import Tokenizer
    from check_tiktoken import tiktoken_gpt2
    from check_hf import hf_from_gpt2, merges_of

    tk = tiktoken_gpt2()
    hf = hf_from_gpt2("gpt2")
    texts = [("bible-kjv", lmf.corpus()[0][1]), ("mixed multilingual/code", lmf.mixed_sample())]
    lib = lmf._lib()
    print("## encode, single thread, GPT-2 vocabulary\n")
    print("| text | MB | lmforge MB/s | tiktoken MB/s | HF tokenizers MB/s | lmforge / tiktoken | lmforge / HF |")
    print("|---|---|---|---|---|---|---|")
    for name, b in texts:
        s = b.decode("utf-8")
        t = {"lmforge": [], "tiktoken": [], "hf": []}
        n_ids = {}
        for _ in range(runs):
            ours = lmf.Tokenizer(lmf.GPT2, lib=lib)
            t0 = time.perf_counter()
            n_ids["lmforge"] = ours.encode_count(b)
            t["lmforge"].append(time.perf_counter() - t0)
            del ours
            t0 = time.perf_counter()
            n_ids["tiktoken"] = len(tk.encode_ordinary(s))
            t["tiktoken"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            n_ids["hf"] = len(hf.encode(s, add_special_tokens=False).ids)
            t["hf"].append(time.perf_counter() - t0)
        # HF always matches added tokens, and the code sample quotes "<|endoftext|>": its count may differ there
        assert n_ids["lmforge"] == n_ids["tiktoken"], n_ids
        mbs = {k: len(b) / statistics.median(v) / 1e6 for k, v in t.items()}
        print(f"| {name} | {len(b) / 1e6:.2f} | {mbs['lmforge']:.1f} | {mbs['tiktoken']:.1f} | {mbs['hf']:.1f} | "
              f"{mbs['lmforge'] / mbs['tiktoken']:.1f}x | {mbs['lmforge'] / mbs['hf']:.1f}x |")

    vocab = 32000
    print(f"\n## BPE training, {vocab} tokens, bible-kjv + fortunes\n")
    raw = [b for _, b in lmf.corpus()]
    ts = []
    for _ in range(3):
        t0 = time.perf_counter()
        ours = lmf.train(raw, vocab, ["<|endoftext|>"])
        ts.append(time.perf_counter() - t0)
    tmp = tempfile.mkdtemp(prefix="lmf_bench_tok_")
    ours.save(os.path.join(tmp, "ours.json"))
    rows = [("lmforge (1 thread)", statistics.median(ts))]
    for threads in ("1", str(os.cpu_count())):
        env = dict(os.environ, RAYON_NUM_THREADS=threads)
        out = os.path.join(tmp, f"hf{threads}.json")
        dts = [float(subprocess.run([sys.executable, "-c", TRAIN_HF % (os.path.dirname(lmf.__file__), vocab, out)],
                                    env=env, check=True, capture_output=True, text=True).stdout) for _ in range(2)]
        rows.append((f"HF BpeTrainer ({threads} thread{'s' if threads != '1' else ''})", min(dts)))
    same = merges_of(os.path.join(tmp, "ours.json")) == merges_of(os.path.join(tmp, "hf1.json"))
    print(f"| trainer | seconds | lmforge speed-up |\n|---|---|---|")
    for name, dt in rows:
        print(f"| {name} | {dt:.2f} | {dt / rows[0][1]:.1f}x |")
    print(f"\nmerges and vocabulary identical to HF's: {same}")


if __name__ == "__main__":
    main()
