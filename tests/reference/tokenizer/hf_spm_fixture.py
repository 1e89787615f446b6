"""Writes tests/data/hf_spm/: a Hugging Face tokenizer.json of the Llama / Mistral kind (model BPE with
byte_fallback, the legacy Prepend + Replace normalizer) and cases.txt, the ids Hugging Face `tokenizers` gives a set
of texts under it and under two other space rules; test_tokenizer_spm checks lmforge against every line.

    pip install sentencepiece protobuf gguf transformers tokenizers
    python3 hf_spm_fixture.py

The vocabulary: the first 8,000 pieces of the Phi-3 GGUF vocabulary (tests/data/phi3/vocab.gguf: specials, the 256
byte tokens, Llama 2's most frequent pieces) and every piece of one character (Llama keeps them at the end), its
merges as transformers' SentencePieceExtractor derives them from the pieces and scores (those whose sides and
result are kept), plus a non-special added token "<tool>" and
a special "<|end|>". Variants (the first field of each line): 0 the file as written; 1 no normalizer and a Metaspace
pre-tokenizer with prepend_scheme "first", split false (transformers' legacy=false form); 2 Metaspace "always",
split true; 3 the file as written with lstrip / rstrip on "<|end|>" and rstrip on "<tool>" (texts with Unicode
spaces beside them: Hugging Face strips every White_Space character); 4 Gemma's normalizer (Replace without Prepend)
and pre-tokenizer (Split on " "). Each line: "<variant> 1 <hex of the text>
<ids...>" (1: added tokens parsed, as Hugging Face always parses them)."""
import json
import os
import random
import sys
import tempfile

from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers
from transformers.convert_slow_tokenizer import SentencePieceExtractor

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
from check_sentencepiece import proto  # noqa: E402

root = os.path.normpath(os.path.join(here, "..", "..", ".."))
out_dir = os.path.join(root, "tests", "data", "hf_spm")
N = 8000
M = "\u2581"

with tempfile.NamedTemporaryFile(suffix=".model") as f:
    f.write(proto())
    f.flush()
    r = SentencePieceExtractor(f.name).extract(models.BPE)
vocab = {t: i for t, i in r["vocab"].items() if i < N or len(t) == 1}
merges = [(a, b) for a, b in r["merges"] if a in vocab and b in vocab and a + b in vocab]
tok = Tokenizer(models.BPE(vocab, merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True))
tok.add_special_tokens([AddedToken(x, normalized=False, special=True) for x in ("<unk>", "<s>", "</s>", "<|end|>")])
tok.add_tokens([AddedToken("<tool>", normalized=False, special=False)])
tok.normalizer = normalizers.Sequence([normalizers.Prepend(M), normalizers.Replace(" ", M)])
tok.decoder = decoders.Sequence([decoders.Replace(M, " "), decoders.ByteFallback(), decoders.Fuse(),
                                 decoders.Strip(" ", 1, 0)])
tok.save(os.path.join(out_dir, "tokenizer.json"))


def variant(v):
    t = Tokenizer.from_file(os.path.join(out_dir, "tokenizer.json"))
    if v:
        t.normalizer = None
        t.pre_tokenizer = pre_tokenizers.Metaspace(replacement=M, prepend_scheme="first" if v == 1 else "always",
                                                   split=v == 2)
    return t


rng = random.Random(20261206)
texts = [t for t in open(os.path.join(here, "spm_llamacpp_tests.txt"), encoding="utf-8").read()
         .split("\n__ggml_vocab_test__\n")]
kjv = open(os.path.join(root, "tests/reference/fixtures/kjv_genesis_1-4.txt"), encoding="utf-8").read()
texts += [l for l in kjv.split("\n")[:40] if l]
pool = list("abcdefghijklmnopqrstuvwxyz ABCXYZ0123456789.,;:!?'\"()-") + list("      \t\n") + \
    list("éèàüöäßçñÅØÆœ") + list("数据中文字符日本語한국어") + list("🙂🚀👍🏽") + list("\u00a0\u200b\ufeffѢѣΩωαβγ∑∫≈")
texts += ["".join(rng.choice(pool) for _ in range(rng.randint(1, 40))) for _ in range(120)]
specials = ["<s>", "</s>", "<|end|>", "<tool>", "<unk>"]
words = ["Hello", " world", "x", " ", "  ", ".", "数据", "<", "s>"]
special_texts = ["".join(rng.choice(specials) if rng.random() < 0.35 else rng.choice(words)
                         for _ in range(rng.randint(1, 7))) for _ in range(60)]
with open(os.path.join(out_dir, "cases.txt"), "w") as f:
    for v in range(3):
        t = variant(v)
        for x in texts + special_texts:
            ids = t.encode(x, add_special_tokens=False).ids
            f.write("%d 1 %s %s\n" % (v, x.encode().hex() or "-", " ".join(map(str, ids))))
# Variant 3: the file as written with "<|end|>" lstrip and rstrip and "<tool>" rstrip: Hugging Face strips the
# whitespace beside them, every character with Unicode's White_Space property (U+00A0, U+3000, ...; not U+200B),
# not only ASCII's. Texts of special tokens among ASCII and Unicode spaces, drawn after the others (which the same
# seed keeps as they were).
j = json.loads(open(os.path.join(out_dir, "tokenizer.json"), encoding="utf-8").read())
for a in j["added_tokens"]:
    if a["content"] == "<|end|>":
        a["lstrip"] = a["rstrip"] = True
    if a["content"] == "<tool>":
        a["rstrip"] = True
strip_tok = Tokenizer.from_str(json.dumps(j))
spaces = [" ", "  ", "\t", "\n", "\u00a0", "\u3000", "\u2003", "\u0085", "\u1680", "\u205f", "\u2028",
          "\u202f", "\u200b", "\ufeff", " \u00a0 "]
strip_texts = ["".join(rng.choice(specials[2:4]) if rng.random() < 0.3 else
                       rng.choice(spaces) if rng.random() < 0.5 else rng.choice(words) for _ in range(rng.randint(1, 9)))
               for _ in range(80)]
with open(os.path.join(out_dir, "cases.txt"), "a") as f:
    for x in strip_texts:
        f.write("3 1 %s %s\n" % (x.encode().hex() or "-", " ".join(map(str, strip_tok.encode(x, add_special_tokens=False).ids))))
# Variant 4: Gemma's form (transformers' GemmaConverter): Replace " " -> "▁" without the Prepend, and a Split on " "
# (a no-op once the normalizer has replaced every space); the same texts as variants 0-2.
gemma = Tokenizer.from_file(os.path.join(out_dir, "tokenizer.json"))
gemma.normalizer = normalizers.Replace(" ", M)
gemma.pre_tokenizer = pre_tokenizers.Split(" ", "merged_with_previous")
with open(os.path.join(out_dir, "cases.txt"), "a") as f:
    for x in texts + special_texts:
        ids = gemma.encode(x, add_special_tokens=False).ids
        f.write("4 1 %s %s\n" % (x.encode().hex() or "-", " ".join(map(str, ids))))
print(len(vocab), "pieces,", len(merges), "merges,",
      4 * (len(texts) + len(special_texts)) + len(strip_texts), "cases")
