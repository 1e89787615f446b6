#!/usr/bin/env python3
"""Qwen3 / Qwen3-MoE / OLMoE reference fixtures: transformers' own tiny models as Hugging Face folders, and a
float64 PyTorch twin of lmforge's training of a Qwen3-MoE (a per-head RMSNorm on q and k before RoPE, Mixtral-style
experts with the top-k renormalised), checked against transformers' Qwen3MoeForCausalLM, and the same twin as an
OLMoE (the RMSNorm over the whole q and k rows, top-k not renormalised, 4 KV heads), checked against
OlmoeForCausalLM.

Rerun (from anywhere; the script chdirs to the repository root):

    /work/venv-peft/bin/python tests/reference/make_qwen3_fixtures.py

Generated with torch 2.15.0 and transformers 5.24.0 (recorded in each file's __metadata__). Deterministic.

Writes into tests/reference/fixtures/qwen3/:

  qwen3/       a tiny Qwen3ForCausalLM (V 48, C 32, 2 layers, 4 heads / 2 KV heads of head_dim 8, FFN 24, tied
               head, random q/k norm weights) saved by save_pretrained (fp32)
  qwen3_moe/   the twin's Qwen3MoeForCausalLM (below) saved by save_pretrained (fp32)
  olmoe/       the OLMoE twin's OlmoeForCausalLM saved by save_pretrained (fp32)
  olmoe.safetensors: as moe.safetensors below for the OLMoE twin (q_norm_w (L, C), k_norm_w (L, KV)), with
               olmoe_logits
  hd.safetensors, qwen3_hd/, qwen3_moe_hd/: moe.safetensors, qwen3/ and qwen3_moe/ again with heads of 16 on C 32
               (head_dim 16: q 64 wide, attn_proj_w (L, C, 64); logits qwen3_hd_logits, qwen3_moe_hd_logits; metadata
               head_dim); the files above are unchanged by it (byte for byte)
  moe.safetensors, holding (F32 unless said):
    qwen3_logits, qwen3_moe_logits  (B, T, V) what transformers computes from each folder in float32
    params.<t>   lmforge's parameter table (model.h), q_norm_w and k_norm_w (L, hs) among them
    tokens, targets  I32 (B, T); targets -1 are ignored
    logits       (B, T, V) the twin's
    ce, aux, z   (1,) mean cross-entropy; load-balancing loss and router z-loss before their coefficients
    grad.<t>     d(ce + aux_coef aux + z_coef z) / d params.<t>
    train.losses (10,) that total before each of 10 torch.optim.AdamW steps (lr 1e-2, betas 0.9/0.999, eps 1e-8,
                 weight decay 0.1 on the tensors lmf_param_decays names: every matrix but the token embedding; not
                 the norms, q_norm_w and k_norm_w included)
    final.<t>    every parameter after the 10 steps

The twin (V 48, C 32, 2 layers, 4 / 2 heads, E 4 experts of F 16, top-2 renormalised, no shared expert, untied head,
B 2 x T 8, dropless) is plain float64 torch written from the formulas of src/model/moe.h and block.h. Before
writing, the script checks that its logits equal transformers' Qwen3MoeForCausalLM (float64 weights; its RMSNorms
compute in float32) holding the same weights, that no two router probabilities tie within 1e-4 at the top-k
boundary, and that no gradient element is within 1e-6 of zero relative to its tensor.
"""

import math
import os
import sys

import torch
import torch.nn.functional as F

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_lora_fixtures import write_safetensors  # noqa: E402

OUT = "tests/reference/fixtures/qwen3"
V, C, L, NH, NKV, F_, E, K, FD = 48, 32, 2, 4, 2, 16, 4, 2, 24
HS = C // NH
QD = NH * HS  # q's width: C unless the head size is set apart from it (HD)
KVD = NKV * HS
S = QD + 2 * KVD
KIND = "qwen3"  # or "olmoe": set_kind
HD = False  # the head_dim twin: 4 heads of 16 on C = 32 (q 64 wide, as Qwen3-0.6B's 16 x 128 on 1024)


def set_kind(kind, hd=False):
    global KIND, NKV, KVD, S, HS, QD, HD
    KIND, HD = kind, hd
    NKV = 2 if kind == "qwen3" else 4  # llama.cpp's olmoe has k's norm as wide as q's: no GQA
    HS = 16 if hd else C // NH
    QD = NH * HS
    KVD = NKV * HS
    S = QD + 2 * KVD
B, T = 2, 8
THETA, EPS = 10000.0, 1e-6
AUX, ZC = 0.1, 0.01
STEPS, LR, WD = 10, 1e-2, 0.1
DECAY = {"qkv_w", "attn_proj_w", "lm_head", "router_w", "exp_fc_w", "exp_proj_w"}


class Reseed(Exception):
    pass


def need(cond, why):
    if not cond:
        raise Reseed(why)


def make_params(gen):
    shapes = {
        "wte": (V, C), "ln1_w": (L, C), "qkv_w": (L, S, C), "attn_proj_w": (L, C, QD), "ln2_w": (L, C),
        "lnf_w": (C,), "lm_head": (V, C), "router_w": (L, E, C), "exp_fc_w": (L, E * 2 * F_, C),
        "exp_proj_w": (L, E * C, F_), "q_norm_w": (L, HS if KIND == "qwen3" else QD),
        "k_norm_w": (L, HS if KIND == "qwen3" else KVD),
    }
    p = {}
    for name, shp in shapes.items():
        if name.startswith("ln") or name.endswith("norm_w"):
            p[name] = 1.0 + 0.1 * torch.randn(shp, generator=gen, dtype=torch.float64)
        else:
            std = 0.5 if name == "router_w" else 0.15
            p[name] = std * torch.randn(shp, generator=gen, dtype=torch.float64)
    return {k: v.requires_grad_(True) for k, v in p.items()}


def rms(x, w):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS))


def rope(x):  # x (B, T, H, HS), rotate_half layout (HF's)
    inv = THETA ** (-torch.arange(0, HS, 2, dtype=torch.float64) / HS)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]
    cos = torch.cat([ang.cos(), ang.cos()], -1)[None, :, None, :]
    sin = torch.cat([ang.sin(), ang.sin()], -1)[None, :, None, :]
    x1, x2 = x[..., : HS // 2], x[..., HS // 2:]
    return x * cos + torch.cat([-x2, x1], -1) * sin


def attention(x, qkv_w, o_w, qn, kn):
    qkv = x @ qkv_w.T
    if KIND == "qwen3":
        q = rms(qkv[..., :QD].view(B, T, NH, HS), qn)  # each head on its own, one weight for all heads
        k = rms(qkv[..., QD:QD + KVD].view(B, T, NKV, HS), kn)
    else:  # olmoe: the whole q and k rows
        q = rms(qkv[..., :QD], qn).view(B, T, NH, HS)
        k = rms(qkv[..., QD:QD + KVD], kn).view(B, T, NKV, HS)
    v = qkv[..., QD + KVD:].view(B, T, NKV, HS)
    q, k = rope(q), rope(k)
    rep = NH // NKV
    k = k.repeat_interleave(rep, dim=2)
    v = v.repeat_interleave(rep, dim=2)
    s = torch.einsum("bthd,bshd->bhts", q, k) / math.sqrt(HS)
    s = s.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf"))
    y = torch.einsum("bhts,bshd->bthd", s.softmax(-1), v).reshape(B, T, QD)
    return y @ o_w.T


def moe(x, p, l, stats):
    logits = x @ p["router_w"][l].T
    prob = logits.softmax(-1)
    w, idx = torch.topk(prob, K, dim=-1)
    if KIND == "qwen3":
        w = w / w.sum(-1, keepdim=True)  # norm_topk_prob true; OLMoE's false
    srt = prob.detach().sort(-1, descending=True).values
    gap = (srt[:, K - 1] - srt[:, K]).min().item()
    need(gap > 1e-4, f"router probabilities tie within {gap:.2g} at the top-k boundary")
    out = torch.zeros_like(x)
    fc = p["exp_fc_w"][l].view(E, 2 * F_, C)
    dn = p["exp_proj_w"][l].view(E, C, F_)
    for e in range(E):
        for j in range(K):
            rows = (idx[:, j] == e).nonzero().flatten()
            if len(rows) == 0:
                continue
            h = x[rows] @ fc[e].T
            a = F.silu(h[:, :F_]) * h[:, F_:]
            out = out.index_add(0, rows, (a @ dn[e].T) * w[rows, j, None])
    stats["logits"].append(logits)
    stats["chosen"].append(torch.bincount(idx.flatten(), minlength=E))
    return out


def forward(p, tokens, targets):
    stats = {"logits": [], "chosen": []}
    x = p["wte"][tokens]
    for l in range(L):
        x = x + attention(rms(x, p["ln1_w"][l]), p["qkv_w"][l], p["attn_proj_w"][l], p["q_norm_w"][l],
                          p["k_norm_w"][l])
        x = x + moe(rms(x, p["ln2_w"][l]).reshape(B * T, C), p, l, stats).view(B, T, C)
    logits = rms(x, p["lnf_w"]) @ p["lm_head"].T
    ce = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1).long(), ignore_index=-1)
    lg = torch.cat(stats["logits"], 0)
    LN = lg.shape[0]
    chosen = torch.stack(stats["chosen"]).sum(0).double()
    aux = E * ((chosen / LN) * (lg.softmax(-1).sum(0) / LN)).sum()
    z = torch.logsumexp(lg, -1).pow(2).mean()
    return logits, ce, aux, z


def qwen3_moe_model(p):
    """transformers' Qwen3MoeForCausalLM (float64) holding the twin's weights."""
    from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM
    cfg = Qwen3MoeConfig(vocab_size=V, hidden_size=C, intermediate_size=FD, num_hidden_layers=L,
                         num_attention_heads=NH, num_key_value_heads=NKV, head_dim=HS, num_experts=E,
                         num_experts_per_tok=K, moe_intermediate_size=F_, norm_topk_prob=True,
                         max_position_embeddings=64, rms_norm_eps=EPS,
                         rope_parameters={"rope_type": "default", "rope_theta": THETA}, tie_word_embeddings=False,
                         router_aux_loss_coef=AUX, attn_implementation="eager", experts_implementation="eager",
                         bos_token_id=1, eos_token_id=2)
    torch.manual_seed(0)
    model = Qwen3MoeForCausalLM(cfg).double().eval()
    sd = {"model.embed_tokens.weight": p["wte"], "model.norm.weight": p["lnf_w"], "lm_head.weight": p["lm_head"]}
    for l in range(L):
        pre = f"model.layers.{l}."
        qkv = p["qkv_w"][l]
        for name, lo, hi in (("q", 0, QD), ("k", QD, QD + KVD), ("v", QD + KVD, S)):
            sd[pre + f"self_attn.{name}_proj.weight"] = qkv[lo:hi]
        sd[pre + "self_attn.q_norm.weight"] = p["q_norm_w"][l]
        sd[pre + "self_attn.k_norm.weight"] = p["k_norm_w"][l]
        sd[pre + "self_attn.o_proj.weight"] = p["attn_proj_w"][l]
        sd[pre + "input_layernorm.weight"] = p["ln1_w"][l]
        sd[pre + "post_attention_layernorm.weight"] = p["ln2_w"][l]
        sd[pre + "mlp.gate.weight"] = p["router_w"][l]
        sd[pre + "mlp.experts.gate_up_proj"] = p["exp_fc_w"][l].view(E, 2 * F_, C)
        sd[pre + "mlp.experts.down_proj"] = p["exp_proj_w"][l].view(E, C, F_)
    missing, unexpected = model.load_state_dict({k: v.detach() for k, v in sd.items()}, strict=False)
    assert not unexpected and all("rotary" in k for k in missing), (missing, unexpected)
    return model


def olmoe_model(p):
    """transformers' OlmoeForCausalLM (float64) holding the OLMoE twin's weights."""
    from transformers import OlmoeConfig, OlmoeForCausalLM
    cfg = OlmoeConfig(vocab_size=V, hidden_size=C, intermediate_size=F_, num_hidden_layers=L, num_attention_heads=NH,
                      num_key_value_heads=NKV, num_experts=E, num_experts_per_tok=K, norm_topk_prob=False,
                      max_position_embeddings=64, rms_norm_eps=EPS,
                      rope_parameters={"rope_type": "default", "rope_theta": THETA}, tie_word_embeddings=False,
                      router_aux_loss_coef=AUX, attn_implementation="eager", experts_implementation="eager",
                      pad_token_id=None, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(0)
    model = OlmoeForCausalLM(cfg).double().eval()
    sd = {"model.embed_tokens.weight": p["wte"], "model.norm.weight": p["lnf_w"], "lm_head.weight": p["lm_head"]}
    for l in range(L):
        pre = f"model.layers.{l}."
        qkv = p["qkv_w"][l]
        for name, lo, hi in (("q", 0, QD), ("k", QD, QD + KVD), ("v", QD + KVD, S)):
            sd[pre + f"self_attn.{name}_proj.weight"] = qkv[lo:hi]
        sd[pre + "self_attn.q_norm.weight"] = p["q_norm_w"][l]
        sd[pre + "self_attn.k_norm.weight"] = p["k_norm_w"][l]
        sd[pre + "self_attn.o_proj.weight"] = p["attn_proj_w"][l]
        sd[pre + "input_layernorm.weight"] = p["ln1_w"][l]
        sd[pre + "post_attention_layernorm.weight"] = p["ln2_w"][l]
        sd[pre + "mlp.gate.weight"] = p["router_w"][l]
        sd[pre + "mlp.experts.gate_up_proj"] = p["exp_fc_w"][l].view(E, 2 * F_, C)
        sd[pre + "mlp.experts.down_proj"] = p["exp_proj_w"][l].view(E, C, F_)
    missing, unexpected = model.load_state_dict({k: v.detach() for k, v in sd.items()}, strict=False)
    assert not unexpected and all("rotary" in k for k in missing), (missing, unexpected)
    return model


def qwen3_dense_folder(tokens, folder="qwen3"):
    """A tiny Qwen3ForCausalLM with random weights and q/k norms (heads of HS), saved as `folder`; its fp32
    logits from the saved folder."""
    from transformers import Qwen3Config, Qwen3ForCausalLM
    cfg = Qwen3Config(vocab_size=V, hidden_size=C, intermediate_size=FD, num_hidden_layers=L, num_attention_heads=NH,
                      num_key_value_heads=NKV, head_dim=HS, max_position_embeddings=64, rms_norm_eps=EPS,
                      rope_parameters={"rope_type": "default", "rope_theta": THETA}, tie_word_embeddings=True,
                      attn_implementation="eager", bos_token_id=1, eos_token_id=2)
    torch.manual_seed(300)
    model = Qwen3ForCausalLM(cfg).eval()
    gen = torch.Generator().manual_seed(301)
    with torch.no_grad():
        for name, t in model.named_parameters():  # transformers sets norms to 1: random ones test them
            if "norm" in name:
                t.copy_(1.0 + 0.2 * torch.randn(t.shape, generator=gen))
            else:
                t.copy_(0.15 * torch.randn(t.shape, generator=gen))
    path = os.path.join(OUT, folder)
    model.save_pretrained(path, safe_serialization=True)
    m32 = Qwen3ForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager").eval()
    with torch.no_grad():
        return m32(input_ids=tokens).logits.float()


def run(seed):
    gen = torch.Generator().manual_seed(seed)
    p = make_params(gen)
    tokens = torch.randint(0, V, (B, T), generator=gen)
    targets = torch.randint(0, V, (B, T), generator=gen)
    targets[0, 0] = targets[1, 3] = -1
    logits, ce, aux, z = forward(p, tokens, targets)
    model = qwen3_moe_model(p) if KIND == "qwen3" else olmoe_model(p)
    with torch.no_grad():
        hf = model(input_ids=tokens).logits
    err = (hf - logits).abs().max().item() / logits.abs().max().item()
    assert err < 1e-5, f"twin logits differ from {type(model).__name__} by {err:.3g}"
    loss = ce + AUX * aux + ZC * z
    loss.backward()
    for k, v in p.items():  # AdamW's first steps follow a gradient's sign: fp32 must know it for every element
        small = ((v.grad != 0) & (v.grad.abs() < 1e-6 * v.grad.abs().max())).sum().item()
        need(small == 0, f"{k}: {small} gradients within 1e-6 of zero (relative)")
    out = {"tokens": tokens.to(torch.int32), "targets": targets.to(torch.int32), "logits": logits.detach().float(),
           "ce": ce.detach().reshape(1).float(), "aux": aux.detach().reshape(1).float(),
           "z": z.detach().reshape(1).float()}
    for k, v in p.items():
        out["params." + k] = v.detach().float()
        out["grad." + k] = v.grad.detach().float()
    q = {k: v.detach().float().double().requires_grad_(True) for k, v in p.items()}
    opt = torch.optim.AdamW([{"params": [v for k, v in q.items() if k in DECAY], "weight_decay": WD},
                             {"params": [v for k, v in q.items() if k not in DECAY], "weight_decay": 0.0}],
                            lr=LR, betas=(0.9, 0.999), eps=1e-8)
    losses = []
    for _ in range(STEPS):
        opt.zero_grad()
        _, c_, a_, z_ = forward(q, tokens, targets)
        tot = c_ + AUX * a_ + ZC * z_
        losses.append(tot.item())
        tot.backward()
        opt.step()
    out["train.losses"] = torch.tensor(losses, dtype=torch.float32)
    for k, v in q.items():
        out["final." + k] = v.detach().float()
    from transformers import AutoModelForCausalLM
    name = ("qwen3_moe" if KIND == "qwen3" else "olmoe") + ("_hd" if HD else "")
    path = os.path.join(OUT, name)
    model.float().save_pretrained(path, safe_serialization=True)
    m32 = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager",
                                               experts_implementation="eager").eval()
    with torch.no_grad():
        out[name + "_logits"] = m32(input_ids=tokens).logits.float()
    if KIND == "qwen3":
        out["qwen3_hd_logits" if HD else "qwen3_logits"] = qwen3_dense_folder(tokens, "qwen3_hd" if HD else "qwen3")
    import transformers
    meta = dict(seed=seed, V=V, C=C, L=L, n_head=NH, n_kv_head=NKV, ffn_dim=F_, n_expert=E, n_expert_used=K,
                norm_topk_prob=int(KIND == "qwen3"), router_aux_coef=AUX, router_z_coef=ZC, B=B, T=T, rope_theta=THETA, norm_eps=EPS,
                lr=LR, weight_decay=WD, steps=STEPS, losses=",".join(repr(x) for x in losses),
                torch=torch.__version__, transformers=transformers.__version__)
    if HD:
        meta["head_dim"] = HS
    fixture = "hd.safetensors" if HD else "moe.safetensors" if KIND == "qwen3" else "olmoe.safetensors"
    write_safetensors(os.path.join(OUT, fixture), out, meta)
    print(f"{KIND}{' head_dim' if HD else ''}: twin == {type(model).__name__}: logits {err:.2g}; ce {ce.item():.6f} aux {aux.item():.6f} "
          f"z {z.item():.6f}, loss {losses[0]:.6f} -> {losses[-1]:.6f}")


def main():
    os.chdir(ROOT)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    import transformers
    transformers.logging.set_verbosity_error()
    os.makedirs(OUT, exist_ok=True)
    for kind, hd in (("qwen3", False), ("olmoe", False), ("qwen3", True)):
        set_kind(kind, hd)
        for seed in range(400, 500):
            try:
                run(seed)
                break
            except Reseed as why:
                print(f"{kind} seed {seed}: {why}; next seed")
        else:
            sys.exit(f"{kind}: no usable seed")


if __name__ == "__main__":
    main()
