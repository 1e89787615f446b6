#!/usr/bin/env python3
"""RoPE scaling reference fixtures: transformers' own tiny models with rope_type "llama3" and "linear", for
tests/test_rope_scaling.c.

Rerun (the venv of make_lora_fixtures.py; from anywhere, the script chdirs to the repository root):

    /work/venv-peft/bin/python tests/reference/make_rope_fixtures.py

Generated with torch 2.15.0 and transformers 5.24.0 (recorded in rope.safetensors' __metadata__). Deterministic.

Every model: V 48, hidden 64, 2 layers, 4 heads / 2 KV heads (head_dim 16), intermediate 48, rms_norm_eps 1e-5,
rope_theta 500, max_position_embeddings 64, untied head, random (seeded) weights larger than HF's init. The
sequences (B 2 x T 48) run well past the original context of 32, and rope_theta 500 with head_dim 16 puts the 8
RoPE pairs in all three of llama3's bands (wavelengths 6.3 < 32/4: kept; 13.3 and 28.1: interpolated; 59.5 and up
> 32/1: divided by the factor).

Writes tests/reference/fixtures/rope/:

  llama3/        LlamaForCausalLM, rope_parameters {"rope_type": "llama3", "factor": 8, "low_freq_factor": 1,
                 "high_freq_factor": 4, "original_max_position_embeddings": 32} (save_pretrained, fp32)
  linear/        LlamaForCausalLM, rope_parameters {"rope_type": "linear", "factor": 2}
  qwen2_llama3/  Qwen2ForCausalLM (q/k/v biases) with llama3's parameters above
  rope.safetensors, holding (F32 unless said):
    tokens               I32 (B, T)
    <name>_logits        (B, T, V) what transformers computes from each folder in float32 (eager attention)
    <name>_plain_logits  (B, T, V) the same weights with plain RoPE (rope_type default): the scaling changes them
    llama3_factors       (8,) the divisors llama.cpp's converter writes as rope_freqs.weight (its formula, float32)
    for <name> in llama3, linear, a float64 twin (the model in float64, with make_lora_fixtures.py's float64
    RMSNorm and attention and a float64 RoPE of the same scaled frequencies):
    <name>.loss          (1,) mean cross-entropy of every position predicting the next token (HF's shift)
    <name>.grad.<w>      HF shape: d loss / d <w> for every parameter under its transformers name

The script checks that transformers' float32 frequencies equal its float64 ones (1e-6) and the converter's divisors.
"""

import math
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_lora_fixtures as L  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM  # noqa: E402

OUT = "tests/reference/fixtures/rope"
V, C, NL, NH, NKV, FF = 48, 64, 2, 4, 2, 48
HS = C // NH
THETA, MAXPOS, B, T = 500.0, 64, 2, 48
LLAMA3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
          "original_max_position_embeddings": 32}
LINEAR = {"rope_type": "linear", "factor": 2.0}
MODELS = {"llama3": (LlamaConfig, LlamaForCausalLM, LLAMA3, 11), "linear": (LlamaConfig, LlamaForCausalLM, LINEAR, 12),
          "qwen2_llama3": (Qwen2Config, Qwen2ForCausalLM, LLAMA3, 13)}


def config(cls, rope):
    return cls(vocab_size=V, hidden_size=C, intermediate_size=FF, num_hidden_layers=NL, num_attention_heads=NH,
               num_key_value_heads=NKV, max_position_embeddings=MAXPOS, rms_norm_eps=1e-5, tie_word_embeddings=False,
               rope_parameters=dict(rope, rope_theta=THETA), attn_implementation="eager")


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))


def inv_freq64(rope):
    """transformers' _compute_llama3_parameters / _compute_linear_scaling_rope_parameters in float64."""
    inv = 1.0 / (THETA ** (torch.arange(0, HS, 2, dtype=torch.float64) / HS))
    if rope["rope_type"] == "linear":
        return inv / rope["factor"]
    f, lo, hi, ctx = rope["factor"], rope["low_freq_factor"], rope["high_freq_factor"], \
        rope["original_max_position_embeddings"]
    wavelen = 2 * math.pi / inv
    out = torch.where(wavelen > ctx / lo, inv / f, inv)
    smooth = (ctx / wavelen - lo) / (hi - lo)
    mid = ~(wavelen < ctx / hi) & ~(wavelen > ctx / lo)
    return torch.where(mid, (1 - smooth) * out / f + smooth * out, out)


def converter_factors(rope):
    """llama.cpp convert_hf_to_gguf.py's rope_freqs for llama3 (its formula, written from its description)."""
    freqs = 1.0 / (THETA ** (torch.arange(0, HS, 2, dtype=torch.float32) / HS))
    f, lo, hi, ctx = rope["factor"], rope["low_freq_factor"], rope["high_freq_factor"], \
        rope["original_max_position_embeddings"]
    out = []
    for fr in freqs.tolist():
        w = 2 * math.pi / fr
        if w < ctx / hi:
            out.append(1.0)
        elif w > ctx / lo:
            out.append(f)
        else:
            s = (ctx / w - lo) / (hi - lo)
            out.append(1 / ((1 - s) / f + s))
    return torch.tensor(out, dtype=torch.float32)


def twin(model, rope, tokens):
    """Loss and every gradient in float64: make_lora_fixtures.py's float64 RMSNorm and attention, and a RoPE of the
    scaled frequencies in float64 (transformers computes them, and the angles, in float32)."""
    from transformers.models.llama import modeling_llama as ml
    inv = inv_freq64(rope)

    def rope_forward(self, x, position_ids):
        assert self.attention_scaling == 1.0
        own = self.inv_freq.double()
        assert torch.allclose(own, inv, rtol=1e-6, atol=0), (own, inv)
        freqs = position_ids[..., None].to(torch.float64) * inv
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(x.dtype), emb.sin().to(x.dtype)

    ml.LlamaRotaryEmbedding.forward = rope_forward
    m = model.double()
    logits = m(input_ids=tokens).logits
    loss = L.lm_loss(logits, tokens)
    loss.backward()
    grads = {k: p.grad.detach().float() for k, p in m.named_parameters()}
    return loss.detach().reshape(1).float(), grads


def main():
    os.chdir(L.ROOT)
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    L.transformers.logging.set_verbosity_error()
    os.makedirs(OUT, exist_ok=True)
    tokens = torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(5))
    out = {"tokens": tokens.to(torch.int32)}
    twins = {}
    for name, (cfg_cls, model_cls, rope, seed) in MODELS.items():
        model = model_cls(config(cfg_cls, rope)).eval()
        randomize(model, seed)
        path = os.path.join(OUT, name)
        model.save_pretrained(path, safe_serialization=True)
        model = model_cls.from_pretrained(path, dtype=torch.float32, attn_implementation="eager").eval()
        with torch.no_grad():
            logits = model(input_ids=tokens).logits
            plain = model_cls(config(cfg_cls, {"rope_type": "default"})).eval()
            plain.load_state_dict(model.state_dict())
            plain_logits = plain(input_ids=tokens).logits
        d = (logits - plain_logits).abs().max().item() / logits.abs().max().item()
        assert d > 0.05, f"{name}: the scaling barely changes the logits ({d:.3g})"
        out[name + "_logits"] = logits.float()
        out[name + "_plain_logits"] = plain_logits.float()
        if model_cls is LlamaForCausalLM:
            twins[name] = (model, rope)
        print(f"{path}: logits differ from plain RoPE's by {d:.3g} of their largest")
    out["llama3_factors"] = converter_factors(LLAMA3)
    want = (1.0 / (THETA ** (torch.arange(0, HS, 2, dtype=torch.float64) / HS))) / inv_freq64(LLAMA3)
    assert torch.allclose(out["llama3_factors"].double(), want, rtol=1e-6), (out["llama3_factors"], want)
    L.exact_float64()  # float64 RMSNorm and attention (its RoPE is replaced in twin)
    for name, (model, rope) in twins.items():
        loss, grads = twin(model, rope, tokens)
        out[name + ".loss"] = loss
        for k, g in grads.items():
            out[f"{name}.grad.{k}"] = g
        print(f"{name} twin: loss {loss.item():.6f}, {len(grads)} gradients")
    meta = dict(V=V, C=C, L=NL, n_head=NH, n_kv_head=NKV, ffn_dim=FF, rope_theta=THETA, B=B, T=T,
                torch=torch.__version__, transformers=L.transformers.__version__)
    L.write_safetensors(os.path.join(OUT, "rope.safetensors"), out, meta)


if __name__ == "__main__":
    main()
