#!/usr/bin/env python3
"""Phi-3 reference fixtures: transformers' own tiny Phi3ForCausalLM (q|k|v fused in qkv_proj, gate|up in
gate_up_proj, RoPE on halves, untied head) as a Hugging Face folder, and its logits.

Rerun (from anywhere; the script chdirs to the repository root):

    /work/venv-torch/bin/python tests/reference/make_phi3_fixtures.py

Generated with torch and transformers as recorded in logits.safetensors' __metadata__. Deterministic (seeded).

Writes into tests/reference/fixtures/phi3/:

  phi3/              a tiny Phi3ForCausalLM (V 48, C 32, 2 layers, 4 heads / 2 KV heads of 8, FFN 24, untied head,
                     random norm weights) saved by save_pretrained (fp32), pad_token_id 0
  logits.safetensors tokens I32 (2, 8); logits F32 (2, 8, 48): what transformers computes from the folder, in
                     float32, eager attention
"""
import os

import torch
import transformers
from safetensors.torch import save_file
from transformers import Phi3Config, Phi3ForCausalLM

root = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
os.chdir(root)
out = "tests/reference/fixtures/phi3"
torch.manual_seed(3)
cfg = Phi3Config(vocab_size=48, hidden_size=32, intermediate_size=24, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, max_position_embeddings=64, original_max_position_embeddings=64,
                 rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False, pad_token_id=0, bos_token_id=1,
                 eos_token_id=2, sliding_window=None, attn_implementation="eager")
model = Phi3ForCausalLM(cfg).float().eval()
with torch.no_grad():
    for n, p in model.named_parameters():
        if n.endswith("layernorm.weight") or n == "model.norm.weight":
            p.copy_(1 + 0.1 * torch.randn_like(p))
        else:
            p.copy_(0.3 * torch.randn_like(p))
model.save_pretrained(os.path.join(out, "phi3"), safe_serialization=True)
tokens = torch.randint(0, 48, (2, 8), dtype=torch.int32)
with torch.no_grad():
    logits = model(tokens.long()).logits.float()
save_file({"tokens": tokens.contiguous(), "logits": logits.contiguous()}, os.path.join(out, "logits.safetensors"),
          metadata={"torch": torch.__version__, "transformers": transformers.__version__})
print("wrote", out, "logits", tuple(logits.shape))

# LongRoPE (Phi-3 128k's): the same shapes with rope_scaling longrope, original context 16 of 64 (so the attention
# factor is transformers' sqrt(1 + ln 4 / ln 16) = 1.2247), per-pair factors in [1, 6); transformers takes the short
# factors for sequences up to the original context and the long ones past it: tokens (2, 8) and long_tokens (1, 24)
torch.manual_seed(4)
half = 32 // 4 // 2
short = [round(1 + 2 * float(x), 4) for x in torch.rand(half)]
long = [round(1 + 5 * float(x), 4) for x in torch.rand(half)]
cfg2 = Phi3Config(vocab_size=48, hidden_size=32, intermediate_size=24, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=64, original_max_position_embeddings=16,
                  rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False, pad_token_id=0, bos_token_id=1,
                  eos_token_id=2, sliding_window=None, attn_implementation="eager",
                  rope_scaling={"type": "longrope", "short_factor": short, "long_factor": long})
model2 = Phi3ForCausalLM(cfg2).float().eval()
model2.load_state_dict(model.state_dict())
model2.save_pretrained(os.path.join(out, "phi3_longrope"), safe_serialization=True)
long_tokens = torch.randint(0, 48, (1, 24), dtype=torch.int32)
with torch.no_grad():
    lr_logits = model2(tokens.long()).logits.float()
    lr_long = model2(long_tokens.long()).logits.float()
save_file({"tokens": tokens.contiguous(), "logits": lr_logits.contiguous(), "long_tokens": long_tokens.contiguous(),
           "long_logits": lr_long.contiguous()}, os.path.join(out, "longrope.safetensors"),
          metadata={"torch": torch.__version__, "transformers": transformers.__version__})
print("wrote", os.path.join(out, "phi3_longrope"), "short factors", short, "long factors", long)
