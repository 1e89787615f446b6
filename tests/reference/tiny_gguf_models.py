#!/usr/bin/env python3
"""Tiny GGUF models (llama, gpt2 and phi3 architectures, llama.cpp's tensor names) with every weight type the executor
reads, plus their logits from an independent NumPy float64 forward over the dequantized tensors.

Writes tests/reference/fixtures/tiny_llama.gguf, tiny_gpt2.gguf, tiny_phi3.gguf and tiny_gguf_logits.json. Tensors are written
and dequantized by gguf-py (PyPI `gguf`), the reference implementation of the formats, so the C executor is held
to files and values it did not produce itself. Needs: pip install gguf numpy.

The llama forward applies RoPE to adjacent pairs (2i, 2i+1) of q/k as stored in the GGUF (llama.cpp's layout);
gpt2 uses learned positions, LayerNorm, GELU (tanh) and a fused attn_qkv; phi3 is llama's block with q|k|v fused in
attn_qkv and gate|up in ffn_up (2F rows, gate first: llama.cpp's SWIGLU halves), RoPE on halves (rotate_half, NEOX:
its rows are stored as Hugging Face has them). phi3 draws from its own generator, so the llama and gpt2 files and
logits are those the script wrote before it had phi3."""
import json
import os

import numpy as np
from gguf import GGMLQuantizationType as Q
from gguf import GGUFWriter, quants

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures")
rng = np.random.default_rng(1234)

V, C, NH, L, T = 96, 64, 4, 2, 12
TOKENS = [int(t) for t in rng.integers(0, V, T)]


def stored(w, qtype, writer, name):
    """Quantizes w (rows, cols) to qtype, adds it to the GGUF, returns the dequantized float64 values."""
    w = w.astype(np.float32)
    if qtype == Q.F32:
        writer.add_tensor(name, w)
        return w.astype(np.float64)
    if qtype == Q.F16:
        writer.add_tensor(name, w.astype(np.float16))
        return w.astype(np.float16).astype(np.float64)
    q = quants.quantize(w, qtype)
    writer.add_tensor(name, q, raw_dtype=qtype)
    return quants.dequantize(q, qtype).reshape(w.shape).astype(np.float64)


def rmsnorm(x, g, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * g


def layernorm(x, g, b, eps):
    m = x.mean(-1, keepdims=True)
    v = ((x - m) ** 2).mean(-1, keepdims=True)
    return (x - m) / np.sqrt(v + eps) * g + b


def attend(q, k, v, nh, nkv):
    T, C = q.shape
    hs = C // nh
    out = np.zeros_like(q)
    mask = np.triu(np.ones((T, T), bool), 1)
    for h in range(nh):
        kh = h // (nh // nkv)
        s = q[:, h * hs:(h + 1) * hs] @ k[:, kh * hs:(kh + 1) * hs].T / np.sqrt(hs)
        s[mask] = -np.inf
        p = np.exp(s - s.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        out[:, h * hs:(h + 1) * hs] = p @ v[:, kh * hs:(kh + 1) * hs]
    return out


def rope_interleaved(x, nheads, theta):
    T, D = x.shape
    hs = D // nheads
    out = x.copy()
    pos = np.arange(T)[:, None]
    inv = theta ** (-2.0 * np.arange(hs // 2) / hs)
    ang = pos * inv[None, :]
    c, s = np.cos(ang), np.sin(ang)
    for h in range(nheads):
        a = x[:, h * hs:(h + 1) * hs:2]
        b = x[:, h * hs + 1:(h + 1) * hs:2]
        out[:, h * hs:(h + 1) * hs:2] = a * c - b * s
        out[:, h * hs + 1:(h + 1) * hs:2] = a * s + b * c
    return out


def rope_half(x, nheads, theta):
    T, D = x.shape
    hs = D // nheads
    out = x.copy()
    pos = np.arange(T)[:, None]
    inv = theta ** (-2.0 * np.arange(hs // 2) / hs)
    ang = pos * inv[None, :]
    c, s = np.cos(ang), np.sin(ang)
    for h in range(nheads):
        a = x[:, h * hs:h * hs + hs // 2]
        b = x[:, h * hs + hs // 2:(h + 1) * hs]
        out[:, h * hs:h * hs + hs // 2] = a * c - b * s
        out[:, h * hs + hs // 2:(h + 1) * hs] = b * c + a * s
    return out


def llama_writer(arch, NKV, F, eps, theta):
    """A GGUF writer for tiny_<arch>.gguf with llama's hyperparameter keys under arch's prefix."""
    w = GGUFWriter(os.path.join(OUT, f"tiny_{arch}.gguf"), arch)
    w.add_name(f"tiny {arch} (lmforge test fixture)")
    w.add_block_count(L)
    w.add_context_length(64)
    w.add_embedding_length(C)
    w.add_feed_forward_length(F)
    w.add_head_count(NH)
    w.add_head_count_kv(NKV)
    w.add_layer_norm_rms_eps(eps)
    w.add_rope_freq_base(theta)
    return w


def llama():
    NKV, F, eps, theta = 2, 96, 1e-5, 10000.0
    hs = C // NH
    w = llama_writer("llama", NKV, F, eps, theta)
    # every type in the model, rotated across tensors and layers
    types = [Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.F16, Q.BF16, Q.F32]
    r = lambda *s: rng.normal(0, 0.3, s)
    emb = stored(r(V, C), Q.Q8_0, w, "token_embd.weight")
    head = stored(r(V, C), Q.Q4_1, w, "output.weight")
    gf = 1 + 0.1 * r(C)
    w.add_tensor("output_norm.weight", gf.astype(np.float32))
    layers = []
    for l in range(L):
        t = lambda i: types[(i + l) % len(types)]
        g1, g2 = 1 + 0.1 * r(C), 1 + 0.1 * r(C)
        w.add_tensor(f"blk.{l}.attn_norm.weight", g1.astype(np.float32))
        w.add_tensor(f"blk.{l}.ffn_norm.weight", g2.astype(np.float32))
        Wq = stored(r(C, C), t(0), w, f"blk.{l}.attn_q.weight")
        Wk = stored(r(NKV * hs, C), t(1), w, f"blk.{l}.attn_k.weight")
        Wv = stored(r(NKV * hs, C), t(2), w, f"blk.{l}.attn_v.weight")
        Wo = stored(r(C, C), t(3), w, f"blk.{l}.attn_output.weight")
        Wg = stored(r(F, C), t(4), w, f"blk.{l}.ffn_gate.weight")
        Wu = stored(r(F, C), t(5), w, f"blk.{l}.ffn_up.weight")
        Wd = stored(r(C, F), t(0), w, f"blk.{l}.ffn_down.weight")
        layers.append((g1.astype(np.float32).astype(np.float64), g2.astype(np.float32).astype(np.float64),
                       Wq, Wk, Wv, Wo, Wg, Wu, Wd))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    x = emb[TOKENS]
    for g1, g2, Wq, Wk, Wv, Wo, Wg, Wu, Wd in layers:
        h = rmsnorm(x, g1, eps)
        q, k, v = rope_interleaved(h @ Wq.T, NH, theta), rope_interleaved(h @ Wk.T, NKV, theta), h @ Wv.T
        x = x + attend(q, k, v, NH, NKV) @ Wo.T
        h = rmsnorm(x, g2, eps)
        g = h @ Wg.T
        x = x + ((g / (1 + np.exp(-g))) * (h @ Wu.T)) @ Wd.T
    return rmsnorm(x, gf.astype(np.float32).astype(np.float64), eps) @ head.T


def gpt2():
    F, eps, P = 4 * C, 1e-5, 32
    w = GGUFWriter(os.path.join(OUT, "tiny_gpt2.gguf"), "gpt2")
    w.add_name("tiny gpt2 (lmforge test fixture)")
    w.add_block_count(L)
    w.add_context_length(P)
    w.add_embedding_length(C)
    w.add_feed_forward_length(F)
    w.add_head_count(NH)
    w.add_layer_norm_eps(eps)
    r = lambda *s: rng.normal(0, 0.3, s)
    f32 = lambda name, a: (w.add_tensor(name, a.astype(np.float32)), a.astype(np.float32).astype(np.float64))[1]
    emb = stored(r(V, C), Q.F16, w, "token_embd.weight")
    pos = stored(r(P, C), Q.F32, w, "position_embd.weight")
    gf, bf = f32("output_norm.weight", 1 + 0.1 * r(C)), f32("output_norm.bias", 0.1 * r(C))
    layers = []
    types = [Q.Q8_0, Q.F16, Q.Q4_1, Q.F32]
    for l in range(L):
        t = lambda i: types[(i + l) % len(types)]
        g1, b1 = f32(f"blk.{l}.attn_norm.weight", 1 + 0.1 * r(C)), f32(f"blk.{l}.attn_norm.bias", 0.1 * r(C))
        Wqkv = stored(r(3 * C, C), t(0), w, f"blk.{l}.attn_qkv.weight")
        bqkv = f32(f"blk.{l}.attn_qkv.bias", 0.1 * r(3 * C))
        Wo = stored(r(C, C), t(1), w, f"blk.{l}.attn_output.weight")
        bo = f32(f"blk.{l}.attn_output.bias", 0.1 * r(C))
        g2, b2 = f32(f"blk.{l}.ffn_norm.weight", 1 + 0.1 * r(C)), f32(f"blk.{l}.ffn_norm.bias", 0.1 * r(C))
        Wu = stored(r(F, C), t(2), w, f"blk.{l}.ffn_up.weight")
        bu = f32(f"blk.{l}.ffn_up.bias", 0.1 * r(F))
        Wd = stored(r(C, F), t(3), w, f"blk.{l}.ffn_down.weight")
        bd = f32(f"blk.{l}.ffn_down.bias", 0.1 * r(C))
        layers.append((g1, b1, Wqkv, bqkv, Wo, bo, g2, b2, Wu, bu, Wd, bd))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    x = emb[TOKENS] + pos[:T]
    for g1, b1, Wqkv, bqkv, Wo, bo, g2, b2, Wu, bu, Wd, bd in layers:
        h = layernorm(x, g1, b1, eps)
        qkv = h @ Wqkv.T + bqkv
        x = x + attend(qkv[:, :C], qkv[:, C:2 * C], qkv[:, 2 * C:], NH, NH) @ Wo.T + bo
        h = layernorm(x, g2, b2, eps) @ Wu.T + bu
        h = 0.5 * h * (1 + np.tanh(np.sqrt(2 / np.pi) * (h + 0.044715 * h ** 3)))
        x = x + h @ Wd.T + bd
    return layernorm(x, gf, bf, eps) @ emb.T


def phi3():
    NKV, F, eps, theta = 2, 96, 1e-5, 10000.0
    hs = C // NH
    g = np.random.default_rng(31)
    w = llama_writer("phi3", NKV, F, eps, theta)
    w.add_rope_dimension_count(hs)
    types = [Q.Q8_0, Q.Q4_0, Q.F16, Q.Q4_1, Q.BF16, Q.F32]
    r = lambda *s: g.normal(0, 0.3, s)
    emb = stored(r(V, C), Q.Q4_0, w, "token_embd.weight")
    head = stored(r(V, C), Q.Q8_0, w, "output.weight")
    gf = 1 + 0.1 * r(C)
    w.add_tensor("output_norm.weight", gf.astype(np.float32))
    layers = []
    for l in range(L):
        t = lambda i: types[(i + l) % len(types)]
        g1, g2 = 1 + 0.1 * r(C), 1 + 0.1 * r(C)
        w.add_tensor(f"blk.{l}.attn_norm.weight", g1.astype(np.float32))
        w.add_tensor(f"blk.{l}.ffn_norm.weight", g2.astype(np.float32))
        Wqkv = stored(r(C + 2 * NKV * hs, C), t(0), w, f"blk.{l}.attn_qkv.weight")
        Wo = stored(r(C, C), t(1), w, f"blk.{l}.attn_output.weight")
        Wgu = stored(r(2 * F, C), t(2), w, f"blk.{l}.ffn_up.weight")
        Wd = stored(r(C, F), t(3), w, f"blk.{l}.ffn_down.weight")
        layers.append((g1.astype(np.float32).astype(np.float64), g2.astype(np.float32).astype(np.float64),
                       Wqkv, Wo, Wgu, Wd))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    x = emb[TOKENS]
    for g1, g2, Wqkv, Wo, Wgu, Wd in layers:
        h = rmsnorm(x, g1, eps)
        qkv = h @ Wqkv.T
        q, k, v = qkv[:, :C], qkv[:, C:C + NKV * hs], qkv[:, C + NKV * hs:]
        x = x + attend(rope_half(q, NH, theta), rope_half(k, NKV, theta), v, NH, NKV) @ Wo.T
        h = rmsnorm(x, g2, eps)
        gu = h @ Wgu.T
        gate, up = gu[:, :F], gu[:, F:]
        x = x + ((gate / (1 + np.exp(-gate))) * up) @ Wd.T
    return rmsnorm(x, gf.astype(np.float32).astype(np.float64), eps) @ head.T


out = {"tokens": TOKENS, "llama": llama().astype(np.float32).ravel().tolist(),
       "gpt2": gpt2().astype(np.float32).ravel().tolist(), "phi3": phi3().astype(np.float32).ravel().tolist(),
       "vocab": V}
with open(os.path.join(OUT, "tiny_gguf_logits.json"), "w") as f:
    json.dump(out, f)
print("wrote tiny_llama.gguf, tiny_gpt2.gguf, tiny_phi3.gguf, tiny_gguf_logits.json")
