#!/usr/bin/env python3
"""A random-weight mixture-of-experts GGUF (llama architecture, llama.cpp's MoE names) of a realistic small shape,
for the inference speed check against llama-bench (bench/moe_infer_bench.sh); with --experts 0 a dense llama
(ffn_gate / ffn_up / ffn_down), for decode checks on shapes SmolLM2 lacks (bench/kquant_decode_bench.sh: widths
that are multiples of 256, which the K-quants need). F32; make Q8_0 / Q4_1 copies with
`lmforge quantize`, so both programs read byte-identical weights.

usage: moe_random_gguf.py OUT.gguf [--layers 12] [--embd 1024] [--heads 16] [--kv-heads 4] [--ffn 1024]
                          [--experts 8] [--used 2] [--vocab 32000] [--phi3] [--vocab-gguf FILE.gguf]
needs numpy and gguf-py (from a llama.cpp tree: LLAMA_CPP=/work/ref/llama.cpp by default).
Weights: normal(0, 0.02), norms 1; no tokenizer (tokenizer.ggml.model "none": both programs bench random ids).
--phi3 (dense only): llama.cpp's phi3 architecture, q|k|v fused in attn_qkv and gate|up in ffn_up, named "Phi3
random". --vocab-gguf: the vocabulary (tokenizer.* keys) of another GGUF instead of none; --vocab is then its size
(e.g. tests/data/phi3/vocab.gguf: a Phi-3 model lmforge and llama.cpp can both prompt with text). --longrope ORIG
(with --phi3): Phi-3 128k's LongRoPE, random short and long factors in [1, 4), original context ORIG, llama.cpp's
attention factor sqrt(1 + ln(4096 / ORIG) / ln ORIG).
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.environ.get("LLAMA_CPP", "/work/ref/llama.cpp"), "gguf-py"))
import gguf  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    for k, v in dict(layers=12, embd=1024, heads=16, kv_heads=4, ffn=1024, experts=8, used=2, vocab=32000).items():
        ap.add_argument("--" + k.replace("_", "-"), type=int, default=v)
    ap.add_argument("--phi3", action="store_true")
    ap.add_argument("--vocab-gguf")
    ap.add_argument("--longrope", type=int, default=0, metavar="ORIG")
    a = ap.parse_args()
    if a.phi3:
        a.experts = 0
    vocab = gguf.GGUFReader(a.vocab_gguf) if a.vocab_gguf else None
    if vocab:
        a.vocab = len(vocab.fields["tokenizer.ggml.tokens"].data)
    C, L, E, F, V, hs = a.embd, a.layers, a.experts, a.ffn, a.vocab, a.embd // a.heads
    KV = a.kv_heads * hs
    w = gguf.GGUFWriter(a.out, "phi3" if a.phi3 else "llama")
    w.add_name("Phi3 random" if a.phi3 else "random-moe")
    w.add_context_length(4096)
    w.add_embedding_length(C)
    w.add_block_count(L)
    w.add_feed_forward_length(F)
    w.add_head_count(a.heads)
    w.add_head_count_kv(a.kv_heads)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_rope_dimension_count(hs)
    if a.longrope:
        w.add_rope_scaling_orig_ctx_len(a.longrope)
        w.add_rope_scaling_attn_factors(float(np.sqrt(1 + np.log(4096 / a.longrope) / np.log(a.longrope))))
    if E:
        w.add_expert_count(E)
        w.add_expert_used_count(a.used)
    w.add_vocab_size(V)
    w.add_file_type(0)
    if vocab:
        for k, f in vocab.fields.items():
            if not k.startswith("tokenizer."):
                continue
            kind = f.types[0]
            if kind == gguf.GGUFValueType.ARRAY:
                sub = f.types[1]
                vals = [bytes(f.parts[i]).decode() if sub == gguf.GGUFValueType.STRING else f.parts[i][0].item()
                        for i in f.data]
                w.add_array(k, vals)
            elif kind == gguf.GGUFValueType.STRING:
                w.add_string(k, bytes(f.parts[f.data[0]]).decode())
            else:
                w.add_key_value(k, f.parts[f.data[0]][0].item(), kind)
    else:
        w.add_tokenizer_model("none")
    rng = np.random.default_rng(0)
    total = 0

    def t(name, *shape):  # numpy shape (outer..., rows, cols): gguf writes ggml dims reversed
        nonlocal total
        x = (rng.standard_normal(shape, dtype=np.float32) * 0.02) if len(shape) > 1 else np.ones(shape, np.float32)
        total += x.size
        w.add_tensor(name, x)

    if a.longrope:
        for k in ("long", "short"):
            w.add_tensor(f"rope_factors_{k}.weight", (1 + 3 * rng.random(hs // 2)).astype(np.float32))
    t("token_embd.weight", V, C)
    t("output_norm.weight", C)
    t("output.weight", V, C)
    for i in range(L):
        p = f"blk.{i}."
        t(p + "attn_norm.weight", C)
        t(p + "ffn_norm.weight", C)
        if a.phi3:
            t(p + "attn_qkv.weight", C + 2 * KV, C)
            t(p + "attn_output.weight", C, C)
            t(p + "ffn_up.weight", 2 * F, C)
            t(p + "ffn_down.weight", C, F)
            continue
        t(p + "attn_q.weight", C, C)
        t(p + "attn_k.weight", KV, C)
        t(p + "attn_v.weight", KV, C)
        t(p + "attn_output.weight", C, C)
        if not E:
            t(p + "ffn_gate.weight", F, C)
            t(p + "ffn_up.weight", F, C)
            t(p + "ffn_down.weight", C, F)
            continue
        t(p + "ffn_gate_inp.weight", E, C)
        t(p + "ffn_gate_exps.weight", E, F, C)
        t(p + "ffn_up_exps.weight", E, F, C)
        t(p + "ffn_down_exps.weight", E, C, F)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"{a.out}: {total / 1e6:.0f}M parameters" + (f" ({E} experts, top-{a.used})" if E else " (dense)"))


if __name__ == "__main__":
    main()
