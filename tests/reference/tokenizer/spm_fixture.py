"""Writes tests/data/phi3/spm_cases.txt: texts and the ids llama.cpp's llama-tokenize gives them under the Phi-3
vocabulary (tests/data/phi3/vocab.gguf, a SentencePiece BPE of 32064 tokens with byte fallback). test_tokenizer
checks lmforge's SentencePiece encoder against every line.

    python3 spm_fixture.py /path/to/llama.cpp/build/bin/llama-tokenize [out]

One case per line: "<special> <hex of the text's bytes> <ids...>" (special 1: special tokens parsed). The texts:
llama.cpp's own tokenizer test strings (models/ggml-vocab-*.inp, the ones in the vocabulary's folder), the KJV
fixture line by line and whole, C source with indentation, random Unicode mixes (accents, CJK, emoji, characters no
piece holds, runs of spaces, U+2581 itself), random bytes (invalid UTF-8) and special tokens inside text. llama.cpp
strips the whitespace after Phi-3's special tokens (a rule keyed to the model's name, not the vocabulary), so the
special-token cases before the last batch never put whitespace right after one; the last batch does."""
import os, random, subprocess, sys, tempfile

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.normpath(os.path.join(here, "..", "..", ".."))
lt = sys.argv[1]
out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(root, "tests/data/phi3/spm_cases.txt")
vocab = os.path.join(root, "tests/data/phi3/vocab.gguf")
env = dict(os.environ, LD_LIBRARY_PATH=os.path.dirname(lt))


def ids(text: bytes, special: bool):
    with tempfile.NamedTemporaryFile() as f:
        f.write(text)
        f.flush()
        cmd = [lt, "-m", vocab, "-f", f.name, "--ids", "--log-disable", "--no-bos", "--no-escape"]
        if not special:
            cmd.append("--no-parse-special")
        r = subprocess.run(cmd, capture_output=True, env=env, check=True)
    line = r.stdout.decode().strip().splitlines()[-1]
    return [int(x) for x in line.strip("[]").split(",") if x.strip()]


rng = random.Random(20261206)
cases = []
inp = os.path.join(here, "spm_llamacpp_tests.txt")
for t in open(inp, encoding="utf-8").read().split("\n__ggml_vocab_test__\n"):
    cases.append((t.encode(), False))
kjv = open(os.path.join(root, "tests/reference/fixtures/kjv_genesis_1-4.txt"), "rb").read()
cases += [(l, False) for l in kjv.split(b"\n")[:60] if l]
cases.append((kjv, False))
src = open(os.path.join(root, "src/tokenizer/spm.c"), "rb").read()
cases.append((src[:6000], False))
pool = list("abcdefghijklmnopqrstuvwxyz ABCXYZ0123456789.,;:!?'\"()-") + list("      \t\n\r") + \
    list("éèàüöäßçñÅØÆœ") + list("数据中文字符日本語한국어") + list("🙂🚀👍🏽🇩🇪") + \
    list("\u2581\u00a0\u200b\u2028\ufeff\U0001d49c\u0378\uffff") + list("ѢѣΩωαβγ∑∫≈")
for _ in range(150):
    cases.append(("".join(rng.choice(pool) for _ in range(rng.randint(1, 40))).encode(), False))
for _ in range(40):
    cases.append((bytes(rng.randrange(256) for _ in range(rng.randint(1, 24))), False))
specials = ["<s>", "</s>", "<|endoftext|>", "<|user|>", "<|assistant|>", "<|end|>", "<|system|>"]
words = ["Hello", "world", "x", ".", "数据", "<", "s>", "<|", "end"]
for _ in range(40):
    parts = []
    for _ in range(rng.randint(1, 6)):
        if rng.random() < 0.4:
            parts.append(rng.choice(specials))
        else:
            w = rng.choice(words)
            if rng.random() < 0.5 and not (parts and parts[-1] in specials):
                w = " " + w
            parts.append(w)
    cases.append(("".join(parts).encode(), True))
cases += [(b"", False), (b" ", False), (b"\xe2\x96\x81", False), (b"\xe2\x96\x81\xe2\x96\x81x y", False)]
# whitespace around special tokens: llama.cpp's Phi-3 rule (the vocabulary's general.name is "Phi3") strips the
# whitespace after every special token but <unk>, <s> and <|endoftext|>; the chat template's own layout first
cases.append((b"<|system|>\nYou are helpful.<|end|>\n<|user|>\nHello!<|end|>\n<|assistant|>\n", True))
cases.append((b"<|user|>\n\n  \t Hi <|end|> \r\n<|assistant|>", True))
spaces = [" ", "  ", "\n", "\t", " \n ", "\r\n", "\u00a0", "\u3000"]
for _ in range(60):
    parts = []
    for _ in range(rng.randint(1, 6)):
        r = rng.random()
        parts.append(rng.choice(specials) if r < 0.4 else rng.choice(spaces) if r < 0.7 else rng.choice(words))
    cases.append(("".join(parts).encode(), True))
with open(out, "w") as f:
    for text, special in cases:
        f.write("%d %s %s\n" % (special, text.hex() or "-", " ".join(map(str, ids(text, special)))))
print(len(cases), "cases ->", out)
