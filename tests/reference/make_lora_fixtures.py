#!/usr/bin/env python3
"""Hugging Face PEFT LoRA reference fixtures (float64 PyTorch), for the C LoRA / SFT code.

Rerun (from anywhere; the script chdirs to the repository root):

    python3 -m venv /work/venv-peft
    /work/venv-peft/bin/pip install torch==2.15.0 transformers==5.24.0 peft==0.21.2 accelerate==1.16.0 \
        safetensors==0.8.0 numpy
    /work/venv-peft/bin/python tests/reference/make_lora_fixtures.py

Generated with torch 2.15.0 (PyPI, +cu132 build, run on CPU), transformers 5.24.0, peft 0.21.2,
accelerate 1.16.0, safetensors 0.8.0, Python 3.11.7 (the phi3, gemma3 and gemma2 folders: transformers 5.25.0, in
the venv of make_phi3_fixtures.py with peft and accelerate added). The versions are also recorded in every expected.safetensors.
The output is deterministic: a rerun with these versions rewrites byte-identical files (one CPU thread,
deterministic algorithms, fixed seeds, target_modules sorted in adapter_config.json).

Base models: the existing HF folders tests/reference/fixtures/hf/llama and tests/reference/fixtures/hf/gpt2
(written by hf_fixtures.py, already loaded and checked by the C tests), read as they are; this script does not
write them. llama: LlamaForCausalLM V=64, hidden 16, 2 layers, 4 heads, 2 KV heads (head_dim 4), intermediate 32,
untied head. gpt2: GPT2LMHeadModel V=260, n_embd 16, 2 layers, 4 heads, n_positions 64, tied head, Conv1D weights.

Writes tests/reference/fixtures/lora/<model>_<variant>/ for model in {llama, gpt2} and variant in

  attn         LoraConfig(r=4, lora_alpha=8, target_modules=[q_proj, v_proj] (llama) / [c_attn] (gpt2))
  all_linear   LoraConfig(r=4, lora_alpha=8, target_modules="all-linear") -- every Linear / Conv1D of the blocks,
               not the output head: llama q k v o gate up down, gpt2 attn.c_attn attn.c_proj mlp.c_fc mlp.c_proj
  attn_rslora  as attn with use_rslora=True

and for model mixtral (the mixture of experts tests/reference/fixtures/moe/mixtral: MixtralForCausalLM V=48,
hidden 32, 2 layers, 4 heads, 2 KV heads, 4 experts of 16, top-2, untied head; loaded with
experts_implementation="eager" so that the experts run in float64) in attn, attn_rslora, qkvo (target_modules
[k_proj, o_proj, q_proj, v_proj]) and all_linear: PEFT 0.21's all-linear on a Mixtral adapts q/k/v/o as modules
and, as target_parameters (PEFT's ParamWrapper, docs/moe.md), the router's gate.weight and the fused experts'
gate_up_proj (rank_pattern / alpha_pattern 2r = 8, 2 alpha = 16: the same scale 2) and down_proj; keys
base_model.model.model.layers.<i>.mlp.gate.lora_{A,B}.weight (A (4, 32), B (4 experts, 4)),
.mlp.experts.base_layer.lora_{A,B}.weight (gate_up_proj: A (8 x 4 experts, 32), B (2 x 16, 8 x 4), expert e's
columns j E + e) and .mlp.experts.lora_{A,B}.weight (down_proj: A (4 x 4, 16), B (32, 4 x 4)). Its router's aux
loss is not in the loss (output_router_logits is false, the default).

and for model phi3 (tests/reference/fixtures/phi3/phi3, make_phi3_fixtures.py's Phi3ForCausalLM: V=48, hidden
32, 2 layers, 4 heads, 2 KV heads of 8, intermediate 24, untied head) in attn (target_modules [qkv_proj]) and
all_linear (qkv_proj, o_proj, gate_up_proj, down_proj): Phi-3 keeps q|k|v in one Linear and gate|up in another,
so each adapter has one A over the fused outputs; keys
base_model.model.model.layers.<i>.self_attn.{qkv_proj,o_proj}.lora_{A,B}.weight (qkv_proj: A (4, 32), B (64, 4))
and .mlp.{gate_up_proj,down_proj}.lora_{A,B}.weight (gate_up_proj: B (48, 4), gate rows then up rows).

and for model qwen2_moe (tests/reference/fixtures/qwen2/qwen2_moe, make_qwen2_fixtures.py's Qwen2MoeForCausalLM:
V=48, hidden 32, 2 layers, 4 heads, 2 KV heads, q/k/v biases, 4 experts of 16, top-2 not renormalised, a shared
expert of 24 behind its sigmoid gate) in all_linear: PEFT 0.21.2 has no transformers-5 conversion for qwen2_moe, so
its all-linear adapts the nn.Linear modules only: q/k/v/o and the shared expert's gate_proj, up_proj, down_proj
and shared_expert_gate (a (1, 32) Linear: A (4, 32), B (1, 4)); keys
base_model.model.model.layers.<i>.mlp.shared_expert.{gate,up,down}_proj.lora_{A,B}.weight and
.mlp.shared_expert_gate.lora_{A,B}.weight; target_modules the full paths of the shared expert's modules. The
script checks that no routing choice is within 1e-4 of a tie, before and after the AdamW steps.

Run with arguments (e.g. `make_lora_fixtures.py mixtral_all_linear`) to rewrite only those folders; the others (and
tests/reference/peft_moe_targets.py's mixtral_all_linear_peft beside them) are left as they are.

all with task_type CAUSAL_LM, bias "none", lora_dropout 0.0 (and fan_in_fan_out=True for gpt2, which PEFT would
set itself for Conv1D). Each folder holds:

  adapter_config.json          PEFT's own, from PeftModel.save_pretrained (target_modules list sorted; PEFT's
                               README.md model-card template is deleted). base_model_name_or_path is the
                               repo-relative base folder; fan_in_fan_out is true for gpt2. target_modules is
                               ["q_proj", "v_proj"] / ["c_attn"] for attn*, but for all_linear PEFT writes the
                               resolved FULL module paths (e.g. "model.layers.0.mlp.down_proj",
                               "transformer.h.1.mlp.c_fc"), not "all-linear": a reader must accept both a module
                               name (suffix match) and a full path.
  adapter_model.safetensors    PEFT's own: the INITIAL lora_A / lora_B, F32, keys as listed below
  expected.safetensors         the reference values (below)

PEFT adapter keys (adapter_model.safetensors; "<k>" below is such a key):
  llama  base_model.model.model.layers.<i>.self_attn.{q,k,v,o}_proj.lora_{A,B}.weight
         base_model.model.model.layers.<i>.mlp.{gate,up,down}_proj.lora_{A,B}.weight
  gpt2   base_model.model.transformer.h.<i>.attn.{c_attn,c_proj}.lora_{A,B}.weight
         base_model.model.transformer.h.<i>.mlp.{c_fc,c_proj}.lora_{A,B}.weight
  Shapes: lora_A (r, in_features), lora_B (out_features, r), r = 4, for nn.Linear and Conv1D alike. A Linear
  weight is (out, in); a gpt2 Conv1D weight is stored (in, out) (y = x @ W + b), and PEFT takes in/out from it, so
  c_attn: W (16, 48), A (4, 16), B (48, 4). The adapter's forward is always y = base(x) + s * (x @ A^T) @ B^T, and
  the merged weight is W + s * B @ A for Linear and W + s * (B @ A)^T for Conv1D (fan_in_fan_out).
  Scaling s = lora_alpha / r = 2 (attn, all_linear); s = lora_alpha / sqrt(r) = 4 with use_rslora (attn_rslora).

The initial A and B are random (seeded; the same values for attn and attn_rslora of one model), std 0.1, rounded
to float32: B is non-zero (PEFT's default B = 0 would give A a zero gradient). Everything else is computed with
the PEFT model in float64 (model.double() after loading the float32 weights), in eval mode (no dropout).
The float32 casts inside transformers' llama code (RMSNorm, RoPE inv_freq / cos / sin, eager softmax) are patched
to float64 (see exact_float64), and the loss is computed in float64 (transformers casts logits to float32 for its
own loss; see lm_loss). A plain float32 transformers + PEFT run on these files lands within ~2e-6 of every
tensor here (relative to the tensor's max |value|), so ~1e-4 is a generous tolerance for C float32 code.

expected.safetensors (little-endian, F32 unless said; B = 2, T = 8, V = vocab, S = 10):
  tokens          I32 (B, T)      input ids (seeded, same for every variant of a model)
  labels          I32 (B, T)      tokens with -100 on the 3 prompt positions of each row (SFT prompt masking).
                                  HF shifts inside the model: position t's logits predict labels[:, t + 1], so the
                                  loss averages over labels[:, 3:] -> B * (T - 3) = 10 targets.
  logits          (B, T, V)       PEFT model with the initial adapter
  base_logits     (B, T, V)       same model with the adapter disabled (the plain base model)
  loss            (1,)            mean cross-entropy of the initial model (= train.losses[0])
  grad.<k>        shape of <k>    d loss / d <k> at the initial adapter; the base is frozen (PEFT sets
                                  requires_grad only on lora_A / lora_B)
  train.losses    (S,)            loss at each AdamW step, before that step's update
  final.<k>       shape of <k>    adapter after S = 10 torch.optim.AdamW steps on the same batch, adapter only:
                                  lr 1e-2 constant, betas (0.9, 0.999), eps 1e-8, weight_decay 0, no clipping
  (attn variant only)
  merged_logits   (B, T, V)       PeftModel.from_pretrained(base, folder).merge_and_unload() logits (initial adapter;
                                  equal to `logits` within 1e-12)
  merged.<w>      shape of <w>    the merged base weights that changed, under their HF names, in HF layout:
                                  llama model.layers.<i>.self_attn.{q,v}_proj.weight (out, in);
                                  gpt2 transformer.h.<i>.attn.c_attn.weight (in, out) = (16, 48)

__metadata__ of expected.safetensors (all strings; floats are Python repr() of the float64 value):
  model variant base_dir (repo-relative HF folder) adapter_dir r lora_alpha use_rslora scaling target_modules
  (comma-separated, as resolved by PEFT) fan_in_fan_out lora_dropout bias task_type B T vocab_size
  n_prompt (3) ignore_index (-100) n_targets init_std seed_tokens seed_adapter
  optimizer (AdamW) lr beta1 beta2 eps weight_decay grad_clip (none) steps
  loss (float64) losses (S comma-separated float64, = train.losses) final_loss (float64 loss after the S steps)
  torch transformers peft accelerate safetensors python

Self-checks the script runs: the loss equals a hand-computed shifted cross-entropy; the LoRA layers' scaling is
alpha/r or alpha/sqrt(r); the adapter written by PEFT and read back by PeftModel.from_pretrained reproduces the
logits; merged logits equal the unmerged ones; the merged weights equal W + s*B@A (transposed for Conv1D); a
central finite difference matches one element of every grad tensor; exactly the lora_A / lora_B are trainable.
"""

import json
import math
import os
import platform
import shutil
import struct
import sys

import torch
import torch.nn.functional as F

import accelerate
import peft
import safetensors
import transformers
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors import safe_open
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT_REL = "tests/reference/fixtures/lora"
B, T, N_PROMPT, STEPS = 2, 8, 3, 10
INIT_STD = 0.1
OPT = dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)

MODELS = {
    "llama": dict(base="tests/reference/fixtures/hf/llama", attn=["q_proj", "v_proj"], fan_in_fan_out=False,
                  seed=101),
    "gpt2": dict(base="tests/reference/fixtures/hf/gpt2", attn=["c_attn"], fan_in_fan_out=True, seed=202),
    # a mixture of experts (make_moe_fixtures.py's MixtralForCausalLM): the attention projections as modules. Its
    # experts are fused 3-D parameters and its router a bare weight, which PEFT 0.21's all-linear adapts as
    # target_parameters (one LoRA over all experts of a layer); lmforge does not, so no all_linear variant here
    "mixtral": dict(base="tests/reference/fixtures/moe/mixtral", attn=["q_proj", "v_proj"], fan_in_fan_out=False,
                    seed=303, variants=["attn", "attn_rslora", "qkvo", "all_linear"]),
    # Phi-3 (make_phi3_fixtures.py's Phi3ForCausalLM): q|k|v fused in one Linear qkv_proj and gate|up in
    # gate_up_proj, so PEFT's adapter on either is one A over the fused outputs
    "phi3": dict(base="tests/reference/fixtures/phi3/phi3", attn=["qkv_proj"], fan_in_fan_out=False, seed=505,
                 variants=["attn", "all_linear"]),
    # Gemma 3 (test_load_hf's Gemma3ForCausalLM: every 3rd layer global, the others a window of 5, which T = 8
    # exceeds; two RoPE bases, GeGLU, sandwich norms, scaled embeddings) and Gemma 2 (every 2nd layer a window of 5,
    # scores capped at 5 and logits at 3): the windows and caps in the adapters' gradients
    "gemma3": dict(base="tests/reference/fixtures/hf/gemma3", attn=["q_proj", "v_proj"], fan_in_fan_out=False,
                   seed=606, variants=["attn"]),
    "gemma2": dict(base="tests/reference/fixtures/hf/gemma2", attn=["q_proj", "v_proj"], fan_in_fan_out=False,
                   seed=707, variants=["all_linear"]),
    # Qwen2-MoE: PEFT's all-linear is its nn.Linear modules, the shared expert's among them (docs/moe.md)
    "qwen2_moe": dict(base="tests/reference/fixtures/qwen2/qwen2_moe", attn=["q_proj", "v_proj"],
                      fan_in_fan_out=False, seed=404, variants=["all_linear"]),
}
VARIANTS = {  # name -> (targets ("attn" = the model's attn list), use_rslora, adapter seed offset)
    "attn": ("attn", False, 1),
    "all_linear": ("all-linear", False, 2),
    "attn_rslora": ("attn", True, 1),  # same A, B as attn: only the scaling differs
    "qkvo": (["k_proj", "o_proj", "q_proj", "v_proj"], False, 3),  # every attention projection (mixtral only)
}


def exact_float64():
    """Keep transformers' llama code in float64. It runs three pieces in float32 whatever the model dtype:
    LlamaRMSNorm (casts the input to float32), LlamaRotaryEmbedding (inv_freq and the angles in float32) and
    eager attention (softmax with dtype=float32). The replacements below are the same math in the input's dtype;
    everything else (and all of GPT-2, whose eager path has no such casts) is transformers' own code."""
    from transformers.models.llama import modeling_llama as ml

    def rms_forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon))

    def rope_forward(self, x, position_ids):
        assert self.rope_type == "default" and self.attention_scaling == 1.0
        rp = self.config.rope_parameters
        dim = getattr(self.config, "head_dim", None) or self.config.hidden_size // self.config.num_attention_heads
        inv_freq = 1.0 / (rp["rope_theta"] ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
        freqs = position_ids[..., None].to(torch.float64) * inv_freq
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(x.dtype), emb.sin().to(x.dtype)

    def eager_attention(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
        key_states = ml.repeat_kv(key, module.num_key_value_groups)
        value_states = ml.repeat_kv(value, module.num_key_value_groups)
        w = torch.matmul(query, key_states.transpose(2, 3)) * scaling
        if attention_mask is not None:
            w = w + attention_mask
        w = torch.softmax(w, dim=-1)
        w = torch.nn.functional.dropout(w, p=dropout, training=module.training)
        return torch.matmul(w, value_states).transpose(1, 2).contiguous(), w

    ml.LlamaRMSNorm.forward = rms_forward
    ml.LlamaRotaryEmbedding.forward = rope_forward
    ml.eager_attention_forward = eager_attention

    # Mixtral has its own copies of the three (the same replacements serve), and its router takes the softmax of
    # router_logits.float()
    from transformers.models.mixtral import modeling_mixtral as mx

    def router_forward(self, hidden_states):
        hidden_states = hidden_states.reshape(-1, self.hidden_dim)
        router_logits = F.linear(hidden_states, self.weight)
        router_probs = torch.softmax(router_logits, dim=-1)
        top_value, top_index = torch.topk(router_probs, self.top_k, dim=-1)
        top_value = top_value / top_value.sum(dim=-1, keepdim=True)
        return router_logits, top_value, top_index

    mx.MixtralRMSNorm.forward = rms_forward
    mx.MixtralRotaryEmbedding.forward = rope_forward
    mx.MixtralTopKRouter.forward = router_forward
    mx.eager_attention_forward = eager_attention  # the same math (repeat_kv is the same in both modules)

    # Qwen2-MoE: the same three, and its router's softmax in float32 (its top-k weights are not renormalised)
    from transformers.models.qwen2_moe import modeling_qwen2_moe as qm

    def qwen2_router_forward(self, hidden_states):
        hidden_states = hidden_states.reshape(-1, self.hidden_dim)
        router_logits = F.linear(hidden_states, self.weight)
        router_probs = torch.softmax(router_logits, dim=-1)
        top_value, top_index = torch.topk(router_probs, self.top_k, dim=-1)
        assert not self.norm_topk_prob
        ROUTER_PROBS.append(router_probs.detach())
        return router_logits, top_value, top_index

    # Phi-3: the same three
    from transformers.models.phi3 import modeling_phi3 as ph

    ph.Phi3RMSNorm.forward = rms_forward
    ph.Phi3RotaryEmbedding.forward = rope_forward
    ph.eager_attention_forward = eager_attention

    qm.Qwen2MoeRMSNorm.forward = rms_forward
    qm.Qwen2MoeRotaryEmbedding.forward = rope_forward
    qm.Qwen2MoeTopKRouter.forward = qwen2_router_forward
    qm.eager_attention_forward = eager_attention

    # Gemma 3 and 2: RMSNorm by 1 + w, RoPE per layer type (Gemma 3: linear scaling on the global layers), softmax
    # after the optional soft-cap, all in float32 in transformers; the same math in the input's dtype here
    from transformers.models.gemma2 import modeling_gemma2 as g2
    from transformers.models.gemma3 import modeling_gemma3 as g3

    def gemma_rms_forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * (1.0 + self.weight)

    def gemma_inv_freq(config, rp):
        dim = config.head_dim
        inv = 1.0 / (rp["rope_theta"] ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
        assert rp["rope_type"] in ("default", "linear")
        return inv / rp["factor"] if rp["rope_type"] == "linear" else inv

    def gemma_cos_sin(x, position_ids, inv_freq):
        freqs = position_ids[..., None].to(torch.float64) * inv_freq
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(x.dtype), emb.sin().to(x.dtype)

    def gemma3_rope_forward(self, x, position_ids, layer_type):
        return gemma_cos_sin(x, position_ids, gemma_inv_freq(self.config, self.config.rope_parameters[layer_type]))

    def gemma2_rope_forward(self, x, position_ids):
        return gemma_cos_sin(x, position_ids, gemma_inv_freq(self.config, self.config.rope_parameters))

    def gemma_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, softcap=None,
                        **kwargs):
        key_states = g3.repeat_kv(key, module.num_key_value_groups)
        value_states = g3.repeat_kv(value, module.num_key_value_groups)
        w = torch.matmul(query, key_states.transpose(2, 3)) * scaling
        if softcap is not None:
            w = torch.tanh(w / softcap) * softcap
        if attention_mask is not None:
            w = w + attention_mask
        w = torch.softmax(w, dim=-1)
        return torch.matmul(w, value_states).transpose(1, 2).contiguous(), w

    g3.Gemma3RMSNorm.forward = gemma_rms_forward
    g3.Gemma3RotaryEmbedding.forward = gemma3_rope_forward
    g3.eager_attention_forward = gemma_attention
    g2.Gemma2RMSNorm.forward = gemma_rms_forward
    g2.Gemma2RotaryEmbedding.forward = gemma2_rope_forward
    g2.eager_attention_forward = gemma_attention


ROUTER_PROBS = []  # Qwen2-MoE's router probabilities of the last forwards (the tie check)


def top_k_margin(k):
    """The smallest gap between the k-th and (k+1)-th probability of a row over the recorded routings."""
    m = min((p.sort(dim=-1, descending=True).values[:, k - 1] - p.sort(dim=-1, descending=True).values[:, k]).min()
            .item() for p in ROUTER_PROBS)
    ROUTER_PROBS.clear()
    return m


def load_base(path, dtype):
    kw = {"experts_implementation": "eager"} if "moe" in path else {}  # Mixtral: the loop over experts, any dtype
    m = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation="eager", **kw).eval()
    emb = m.get_input_embeddings()
    if hasattr(emb, "embed_scale"):  # Gemma's sqrt(hidden) buffer: float32's value whatever the dtype it is made in
        with torch.no_grad():
            emb.embed_scale.copy_(emb.embed_scale.float().to(emb.embed_scale.dtype))
    return m


def peft_key(name):
    """Parameter name in the PeftModel -> key in adapter_model.safetensors (adapter name dropped)."""
    for ab in ("lora_A", "lora_B"):
        name = name.replace("." + ab + ".default.", "." + ab + ".")
    return name


def lora_params(pm):
    out = {}
    for name, p in pm.named_parameters():
        if ".lora_A." in name or ".lora_B." in name:
            out[peft_key(name)] = p
    return out


def lm_loss(logits, labels):
    """HF's causal-LM loss (ForCausalLMLoss: shift, ignore -100, mean) but in float64: transformers casts the
    logits to float32 before its own cross-entropy, so the model's `loss` output is only float32-accurate."""
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                           ignore_index=-100, reduction="mean")


def loss_manual(logits, labels):
    lg = logits[:, :-1].reshape(-1, logits.shape[-1])
    tg = labels[:, 1:].reshape(-1)
    keep = tg != -100
    lp = torch.log_softmax(lg[keep], dim=-1)
    return -lp[torch.arange(int(keep.sum())), tg[keep]].mean()


def loss_of(pm, tokens, labels):
    return lm_loss(pm(input_ids=tokens).logits, labels)


def write_safetensors(path, tensors, metadata):
    """Deterministic safetensors writer (safetensors' own save_file orders __metadata__ by Rust hash order, which
    changes from run to run): __metadata__ first with sorted keys, then the tensors in the given order, contiguous,
    data start 8-byte aligned (header padded with spaces), little-endian."""
    header = {"__metadata__": {k: str(metadata[k]) for k in sorted(metadata)}}
    blobs, off = [], 0
    for name, t in tensors.items():
        dt = {torch.float32: "F32", torch.int32: "I32"}[t.dtype]
        data = t.contiguous().numpy().astype(t.numpy().dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": dt, "shape": list(t.shape), "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    hj = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hj += b" " * ((-(8 + len(hj))) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hj)) + hj + b"".join(blobs))
    back = load_file(path)
    assert set(back) == set(tensors)
    for k, t in tensors.items():
        assert back[k].dtype == t.dtype and torch.equal(back[k], t), k
    with safe_open(path, "pt") as f:
        assert f.metadata() == header["__metadata__"]


def fmt(x):
    return repr(float(x))


def make(model_name, variant):
    mc = MODELS[model_name]
    targets, rslora, seed_off = VARIANTS[variant]
    target_modules = mc["attn"] if targets == "attn" else targets
    out_rel = os.path.join(OUT_REL, model_name + "_" + variant)
    shutil.rmtree(out_rel, ignore_errors=True)
    os.makedirs(out_rel)

    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=target_modules, lora_dropout=0.0, bias="none",
                     task_type="CAUSAL_LM", use_rslora=rslora, fan_in_fan_out=mc["fan_in_fan_out"])
    pm = get_peft_model(load_base(mc["base"], torch.float32), cfg)
    lp = lora_params(pm)
    trainable = {peft_key(n) for n, p in pm.named_parameters() if p.requires_grad}
    assert trainable == set(lp), (trainable ^ set(lp))

    # random non-zero A and B, float32-rounded, in named_parameters order
    seed_adapter = mc["seed"] * 10 + seed_off
    g = torch.Generator().manual_seed(seed_adapter)
    with torch.no_grad():
        for k, p in lp.items():
            p.copy_((INIT_STD * torch.randn(p.shape, generator=g, dtype=torch.float64)).to(torch.float32))
    pm.save_pretrained(out_rel)
    os.remove(os.path.join(out_rel, "README.md"))  # PEFT's empty model-card template
    cpath = os.path.join(out_rel, "adapter_config.json")
    with open(cpath) as f:
        ac = json.load(f)
    if isinstance(ac.get("target_modules"), list):
        ac["target_modules"] = sorted(ac["target_modules"])  # PEFT writes a set: order follows string hashing
    if ac.get("target_parameters"):
        ac["target_parameters"] = sorted(ac["target_parameters"])  # the same (PEFT sorts them itself when matching)
    with open(cpath, "w") as f:
        json.dump(ac, f, indent=2, sort_keys=True)
        f.write("\n")
    saved = load_file(os.path.join(out_rel, "adapter_model.safetensors"))
    assert set(saved) == set(lp), set(saved) ^ set(lp)
    for k, p in lp.items():
        assert saved[k].dtype == torch.float32 and torch.equal(saved[k], p.detach()), k
    resolved = sorted(ac["target_modules"]) if isinstance(ac["target_modules"], list) else [ac["target_modules"]]

    # LoRA layers and their scaling
    s_expect = 8 / math.sqrt(4) if rslora else 8 / 4
    layers = {n: m for n, m in pm.named_modules() if isinstance(m, peft.tuners.lora.LoraLayer)}
    assert layers and all(abs(m.scaling["default"] - s_expect) == 0 for m in layers.values())
    assert len(layers) * 2 == len(lp)

    pm = pm.double().eval()
    lp = lora_params(pm)
    V = pm.config.vocab_size
    gt = torch.Generator().manual_seed(mc["seed"])
    tokens = torch.randint(0, V, (B, T), generator=gt)
    labels = tokens.clone()
    labels[:, :N_PROMPT] = -100
    n_targets = int((labels[:, 1:] != -100).sum())

    ROUTER_PROBS.clear()
    out = pm(input_ids=tokens, labels=labels)
    if model_name == "qwen2_moe":  # no routing choice near a tie (lmforge's fp32 routing must choose the same)
        margin = top_k_margin(pm.config.num_experts_per_tok)
        assert margin > 1e-4, margin
    loss = lm_loss(out.logits, labels)
    logits = out.logits.detach().clone()
    assert abs(loss.item() - loss_manual(logits, labels).item()) < 1e-12
    assert abs(loss.item() - out.loss.item()) < 1e-5 * loss.item()  # HF's own (float32) loss
    pm.zero_grad()
    loss.backward()
    grads = {k: p.grad.detach().clone() for k, p in lp.items()}
    loss0 = loss.item()
    with torch.no_grad(), pm.disable_adapter():
        base_logits = pm(input_ids=tokens).logits.detach().clone()
    assert (base_logits - logits).abs().max().item() > 1e-3  # the adapter changes the output

    # finite differences: one element of every grad tensor
    gfd = torch.Generator().manual_seed(seed_adapter + 7)
    h = 1e-6
    with torch.no_grad():
        for k, p in lp.items():
            i = int(torch.randint(0, p.numel(), (1,), generator=gfd))
            flat = p.view(-1)
            old = flat[i].item()
            flat[i] = old + h
            lp_ = loss_of(pm, tokens, labels).item()
            flat[i] = old - h
            lm_ = loss_of(pm, tokens, labels).item()
            flat[i] = old
            fd, an = (lp_ - lm_) / (2 * h), grads[k].view(-1)[i].item()
            assert abs(fd - an) <= 1e-7 * max(1.0, abs(an)) + 1e-8, (k, i, fd, an)

    # AdamW on the adapter only, same batch every step
    opt = torch.optim.AdamW(list(lp.values()), **OPT)
    losses = []
    for _ in range(STEPS):
        opt.zero_grad()
        l = loss_of(pm, tokens, labels)
        l.backward()
        losses.append(l.item())
        opt.step()
    assert losses[0] == loss0
    ROUTER_PROBS.clear()
    with torch.no_grad():
        final_loss = loss_of(pm, tokens, labels).item()
    assert final_loss < losses[0]
    if model_name == "qwen2_moe":
        margin = top_k_margin(pm.config.num_experts_per_tok)
        assert margin > 1e-4, margin
    final = {k: p.detach().clone() for k, p in lp.items()}

    t = {"tokens": tokens.to(torch.int32), "labels": labels.to(torch.int32), "logits": logits,
         "base_logits": base_logits, "loss": torch.tensor([loss0], dtype=torch.float64),
         "train.losses": torch.tensor(losses, dtype=torch.float64)}
    t.update({"grad." + k: grads[k] for k in lp})
    t.update({"final." + k: final[k] for k in lp})

    if variant == "attn":
        # PEFT's own files read back, then merged
        ref = PeftModel.from_pretrained(load_base(mc["base"], torch.float64), out_rel).eval()
        with torch.no_grad():
            rl = ref(input_ids=tokens).logits
        assert (rl - logits).abs().max().item() < 1e-12
        base_sd = load_base(mc["base"], torch.float64).state_dict()
        merged = ref.merge_and_unload()
        with torch.no_grad():
            ml = merged(input_ids=tokens).logits.detach().clone()
        assert (ml - logits).abs().max().item() < 1e-12
        t["merged_logits"] = ml
        msd = merged.state_dict()
        changed = sorted(k for k in base_sd if not torch.equal(base_sd[k], msd[k]))
        assert len(changed) == len(layers), changed
        for w in changed:
            pre = "base_model.model." + w[: -len(".weight")]
            A = saved[pre + ".lora_A.weight"].double()
            Bm = saved[pre + ".lora_B.weight"].double()
            d = s_expect * (Bm @ A)
            if mc["fan_in_fan_out"]:
                d = d.T
            assert (msd[w] - (base_sd[w] + d)).abs().max().item() < 1e-14, w
            t["merged." + w] = msd[w]

    tensors = {k: (v.to(torch.float32) if v.is_floating_point() else v).contiguous() for k, v in t.items()}
    meta = dict(
        model=model_name, variant=variant, base_dir=mc["base"], adapter_dir=out_rel, r=4, lora_alpha=8,
        use_rslora=int(rslora), scaling=fmt(s_expect), target_modules=",".join(resolved),
        fan_in_fan_out=int(mc["fan_in_fan_out"]), lora_dropout=fmt(0.0), bias="none", task_type="CAUSAL_LM",
        B=B, T=T, vocab_size=V, n_prompt=N_PROMPT, ignore_index=-100, n_targets=n_targets,
        init_std=fmt(INIT_STD), seed_tokens=mc["seed"], seed_adapter=seed_adapter,
        optimizer="AdamW", lr=fmt(OPT["lr"]), beta1=fmt(OPT["betas"][0]), beta2=fmt(OPT["betas"][1]),
        eps=fmt(OPT["eps"]), weight_decay=fmt(OPT["weight_decay"]), grad_clip="none", steps=STEPS,
        loss=fmt(loss0), losses=",".join(fmt(x) for x in losses), final_loss=fmt(final_loss),
        torch=torch.__version__, transformers=transformers.__version__, peft=peft.__version__,
        accelerate=accelerate.__version__, safetensors=safetensors.__version__,
        python=platform.python_version())
    write_safetensors(os.path.join(out_rel, "expected.safetensors"), tensors, meta)
    print("%-18s s=%g modules=%d loss %.6f -> %.6f (final %.6f)" % (
        model_name + "_" + variant, s_expect, len(layers), losses[0], losses[-1], final_loss))


def main():
    os.chdir(ROOT)  # base_model_name_or_path in adapter_config.json is then the repo-relative base folder
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    # the float64 patches change the llama logits only at float32 rounding level
    ids = torch.randint(0, 64, (B, T), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = load_base(MODELS["llama"]["base"], torch.float64)(input_ids=ids).logits
        exact_float64()
        after = load_base(MODELS["llama"]["base"], torch.float64)(input_ids=ids).logits
    d = (before - after).abs().max().item() / after.abs().max().item()
    assert 0 < d < 1e-5, d
    mix = MODELS["mixtral"]["base"]  # the patches were applied above: compare against a float32 run instead
    with torch.no_grad():
        f32 = load_base(mix, torch.float32)(input_ids=ids % 48).logits.double()
        f64 = load_base(mix, torch.float64)(input_ids=ids % 48).logits
    d = (f32 - f64).abs().max().item() / f64.abs().max().item()
    assert 0 < d < 1e-5, d
    for g in ("gemma3", "gemma2"):  # the Gemma patches too: float32 (transformers' casts kept) against float64
        with torch.no_grad():
            f32 = load_base(MODELS[g]["base"], torch.float32)(input_ids=ids % 48).logits.double()
            f64 = load_base(MODELS[g]["base"], torch.float64)(input_ids=ids % 48).logits
        d = (f32 - f64).abs().max().item() / f64.abs().max().item()
        assert 0 < d < 1e-5, (g, d)
    only = sys.argv[1:]
    for m in MODELS:  # each folder is rewritten whole (make removes it first)
        for v in MODELS[m].get("variants", ["attn", "all_linear", "attn_rslora"]):
            if not only or m + "_" + v in only:
                make(m, v)
    total = sum(os.path.getsize(os.path.join(d, x)) for d, _, fs in os.walk(OUT_REL) for x in fs)
    print("wrote", OUT_REL, total, "bytes")


if __name__ == "__main__":
    main()
