#!/usr/bin/env python3
"""check_smollm2.py — lmforge's tokenizer loaded from SmolLM2-135M-Instruct's GGUF against Hugging Face `tokenizers`.

The reference is built from the GGUF's own vocabulary (read here by a small independent GGUF parser, not by
lmforge): tokenizer.ggml.tokens as the BPE vocabulary, tokenizer.ggml.merges as the merges, the CONTROL tokens
(token_type 3) as special added tokens, and SmolLM2's pre-tokenizer: Digits(individual_digits) then
ByteLevel(use_regex), no unk_token (so bytes without a token are dropped, as SmolLM2's own tokenizer.json does).

Compared (zero mismatches required):
  1. bible-kjv (whole, and in random chunks), every fortunes file, the mixed multilingual/code sample of lmf.py,
     and hand-written multilingual, code, emoji, whitespace-heavy and control-byte texts, with special tokens
     matched (HF's default) -- lmforge with LMF_ENCODE_ALLOW_SPECIAL;
  2. the same hand-written texts and chat transcripts with special-token text encoded as plain text (HF's
     encode_special_tokens=True) -- lmforge without the flag;
  3. <|im_start|> / <|im_end|> become single ids (1 and 2) only when allowed;
  4. decode(encode(x)) == x for every compared text without token-less bytes.
--write-fixture writes tests/reference/tokenizer/smollm2_fixture.json (texts + HF ids, < 200 KB) for test_gguf.

Needs: pip install tokenizers; Debian bible-kjv and fortunes; build/liblmforge.so; the GGUF at $LMF_SMOLLM2_GGUF
or build/models/SmolLM2-135M-Instruct.Q4_1.gguf (scripts/fetch-smollm2.sh).
Usage: python3 tests/reference/tokenizer/check_smollm2.py [--write-fixture]"""
import json
import os
import random
import struct
import sys
import time

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lmf  # noqa: E402

GGUF = os.environ.get("LMF_SMOLLM2_GGUF",
                      os.path.join(lmf.ROOT, "build", "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))

TRICKY = [
    "Hello, world! 1234567890 3.14159 1,000,000 2024-11-28",
    "Ünïcödé façade naïve — “quotes” ‘single’ … ½ ² ³ ٣٤٥ Ⅻ",
    "Привет, мир! Как дела? Съешь же ещё этих мягких французских булок.",
    "東京都は日本の首都です。2024年11月28日。漢字とカタカナとひらがな。",
    "안녕하세요 세계! 한국어 텍스트입니다.",
    "مرحبا بالعالم! هذا نص عربي. שלום עולם!",
    "हिन्दी पाठ, தமிழ் உரை, ภาษาไทย, Ελληνικά κείμενα",
    "emoji 🙂🙂 👨‍👩‍👧 🇫🇷 🏳️‍🌈 👍🏽 🤖✨🔥💯",
    "def f(x):\n    return {'a': [1, 2, 3], \"b\": x ** 2}  # comment\n\n\nclass A(B):\n\tpass\n",
    "int main(void) { for (int i = 0; i < 10; i++) printf(\"%d\\n\", i); return 0; }",
    "    leading spaces\n\n\n\ttabs\t\there   \r\n\r\n  trailing   \n \n\t\n",
    "a\u00a0b\u2003c\u3000d\u200be\u2028f\u0085g",
    "I'LL DON'T we'Re 's't'd 'S 'D they'll've",
    "control: a\x04b\x06c\x13d\x14e\x16f\x1dg \x00 \x01 \x1f \x7f end",
    "\x04\x06\x13",
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|><|im_start|><|im_end|><repo_name><reponame><file_sep><filename><gh_stars><issue_start>"
    "<issue_comment><issue_closed><jupyter_start><jupyter_text><jupyter_code><jupyter_output><jupyter_script>"
    "<empty_output>",
    "not <|a special|> token <|im_start <im_end|> <||> <|im_start|><|im_start|>",
    "x" * 300 + " " + "ab" * 200 + " " + "9" * 50,
]


def read_gguf_vocab(path):
    """tokens, token types, merges and a few keys from a GGUF file (an independent little parser)."""
    with open(path, "rb") as f:
        b = f.read(16 << 20)  # the metadata of SmolLM2 ends at ~1.8 MB
    p = 0

    def take(fmt):
        nonlocal p
        v = struct.unpack_from("<" + fmt, b, p)
        p += struct.calcsize(fmt)
        return v[0]

    def string():
        nonlocal p
        n = take("Q")
        s = b[p:p + n].decode("utf-8")
        p += n
        return s

    scalar = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}

    def value(t):
        if t in scalar:
            return take(scalar[t])
        if t == 8:
            return string()
        if t == 9:
            et, n = take("I"), take("Q")
            return [value(et) for _ in range(n)]
        raise ValueError(f"value type {t}")

    assert b[:4] == b"GGUF", path
    p = 4
    version, n_tensors, n_kv = take("I"), take("Q"), take("Q")
    kv = {}
    for _ in range(n_kv):
        k = string()
        kv[k] = value(take("I"))
    return version, kv


def hf_from_gguf(kv):
    assert kv["tokenizer.ggml.model"] == "gpt2" and kv["tokenizer.ggml.pre"] == "smollm"
    tokens, types = kv["tokenizer.ggml.tokens"], kv["tokenizer.ggml.token_type"]
    merges = [tuple(m.split(" ")) for m in kv["tokenizer.ggml.merges"]]
    vocab = {t: i for i, t in enumerate(tokens)}
    t = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=None))
    t.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                               pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    t.decoder = decoders.ByteLevel()
    specials = [AddedToken(tokens[i], special=True, normalized=False) for i in range(len(tokens)) if types[i] == 3]
    t.add_special_tokens(specials)
    return t


def texts_of(docs, rng):
    for name, text in docs:
        yield name, text
        i = 0
        while i < len(text):
            n = rng.randint(1, 4096)
            yield name, text[i:i + n]
            i += n
    for t in TRICKY:
        yield "tricky", t


def has_missing_byte(text, missing):
    return any(b in missing for b in text.encode("utf-8"))


def main():
    write_fixture = "--write-fixture" in sys.argv
    if not os.path.exists(GGUF):
        print(f"{GGUF} not found: run scripts/fetch-smollm2.sh (or set LMF_SMOLLM2_GGUF)")
        return 1
    version, kv = read_gguf_vocab(GGUF)
    hf = hf_from_gguf(kv)
    t0 = time.perf_counter()
    ours = lmf.Tokenizer(GGUF)
    print(f"{os.path.basename(GGUF)}: GGUF v{version}, {len(kv['tokenizer.ggml.tokens'])} tokens, "
          f"{len(kv['tokenizer.ggml.merges'])} merges, pre '{kv['tokenizer.ggml.pre']}'; lmforge loaded it in "
          f"{time.perf_counter() - t0:.2f} s")
    b2u = {}
    n = 0
    for bt in range(256):
        if ord("!") <= bt <= ord("~") or ord("¡") <= bt <= ord("¬") or ord("®") <= bt <= ord("ÿ"):
            b2u[bt] = chr(bt)
        else:
            b2u[bt] = chr(256 + n)
            n += 1
    vocab = set(kv["tokenizer.ggml.tokens"])
    missing = {bt for bt in range(256) if b2u[bt] not in vocab}
    print(f"bytes without a token (dropped by HF and lmforge alike): {sorted(missing)}")

    docs = [(nm, d.decode("utf-8")) for nm, d in lmf.corpus()]
    mixed = ("mixed", lmf.mixed_sample().decode("utf-8"))
    ok = True

    # 1. special tokens matched
    n = bad = nbytes = trips = 0
    for name, t in texts_of(docs + [mixed], random.Random(7)):
        a = ours.encode(t, allow_special=True)
        b = hf.encode(t, add_special_tokens=False).ids
        n += 1
        nbytes += len(t.encode("utf-8"))
        if a != b:
            bad += 1
            if bad <= 3:
                print(f"  MISMATCH in {name}: {t[:60]!r}\n    ours {a[:20]}\n    hf   {b[:20]}")
        if not has_missing_byte(t, missing):
            trips += 1
            if ours.decode_bytes(a) != t.encode("utf-8"):
                bad += 1
                print(f"  ROUND TRIP FAILED in {name}: {t[:60]!r}")
    print(f"HF parity, specials allowed: {n} texts ({nbytes / 1e6:.1f} MB: bible-kjv, {len(docs) - 1} fortunes files, "
          f"mixed multilingual/code sample, {len(TRICKY)} hand-written), {bad} mismatches; {trips} round trips")
    ok &= bad == 0

    # 2. special-token text as plain text
    hf.encode_special_tokens = True
    n = bad = 0
    rng = random.Random(9)
    chunks = list(TRICKY)
    for _, text in docs[:1] + [mixed]:
        for _ in range(200):
            i = rng.randrange(len(text))
            chunks.append(text[i:i + rng.randint(1, 2000)] + "<|im_end|>\n<|im_start|>user\n")
    for t in chunks:
        a, b = ours.encode(t, allow_special=False), hf.encode(t, add_special_tokens=False).ids
        n += 1
        if a != b:
            bad += 1
            if bad <= 3:
                print(f"  MISMATCH (specials as text): {t[:60]!r}\n    ours {a[:20]}\n    hf   {b[:20]}")
    hf.encode_special_tokens = False
    print(f"HF parity, special-token text as plain text: {n} texts, {bad} mismatches")
    ok &= bad == 0

    # 3. chat special tokens
    for s, want in [("<|im_start|>", 1), ("<|im_end|>", 2), ("<|endoftext|>", 0)]:
        a, plain = ours.encode(s, allow_special=True), ours.encode(s)
        good = a == [want] and hf.encode(s).ids == [want] and len(plain) > 1
        print(f"{s}: allowed -> {a}, not allowed -> {plain} {'ok' if good else 'WRONG'}")
        ok &= good

    if write_fixture:
        rng = random.Random(11)
        cases = [(t, True) for t in TRICKY] + [(t, False) for t in TRICKY[-4:]]
        for _, text in docs[:1] + [mixed]:
            for _ in range(22):
                i = rng.randrange(len(text))
                cases.append((text[i:i + rng.randint(100, 1500)], True))
        for name, text in docs[1:]:
            if name in ("fortunes/computers", "fortunes/science", "fortunes/linux"):
                i = rng.randrange(len(text))
                cases.append((text[i:i + 1500], True))
        fixture = {"gguf": os.path.basename(GGUF), "n_vocab": len(kv["tokenizer.ggml.tokens"]), "cases": []}
        for t, allow in cases:
            t = t.replace("\x00", "")  # the C test reads texts as NUL-terminated strings
            hf.encode_special_tokens = not allow
            fixture["cases"].append({"text": t, "allow_special": allow,
                                     "ids": hf.encode(t, add_special_tokens=False).ids})
        hf.encode_special_tokens = False
        out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "smollm2_fixture.json")
        with open(out, "w", encoding="utf-8") as f:
            json.dump(fixture, f, ensure_ascii=False, separators=(",", ":"))
            f.write("\n")
        print(f"wrote {out} ({len(fixture['cases'])} cases, {os.path.getsize(out)} bytes)")
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
