#!/usr/bin/env python3
"""A random Gemma 3 text model with gemma-3-270m's shape, as a Hugging Face folder, for speed runs against llama.cpp
(no Gemma weights are packaged): 18 layers, C 640, 4 heads / 1 KV head of 256, FFN 2048, a window of 512 on all but
every 6th layer, transformers' Gemma3ForCausalLM init. Its vocabulary is the tokenizer folder's (Gemma's own has
262144 tokens; SmolLM2's 49152 keep the head small), so the folder runs everywhere a tokenizer.json does.

    python3 bench/gemma3_random_hf.py OUT TOKENIZER_DIR [--gemma2] [--vocab N]
    # e.g. TOKENIZER_DIR from: build/lmforge export build/models/SmolLM2-135M-Instruct.Q8_0.gguf --to safetensors -o s2
    build/lmforge export OUT --to gguf -o g270.f32.gguf && build/lmforge quantize g270.f32.gguf g270.q8_0.gguf --type q8_0

--vocab N: a head of N rows (262144: Gemma's own), the tokenizer's tokens its first rows (the rest never drawn).

--gemma2: the same shape as a Gemma2ForCausalLM (no q/k norms, every 2nd layer global, Gemma2Config's window 4096
and soft-caps 50 / 30) with its own seed.

Needs torch and transformers >= 4.50 (Gemma 3).
"""
import json
import os
import shutil
import sys

import torch
from transformers import AutoModelForCausalLM, Gemma2Config, Gemma3TextConfig

out, tok = sys.argv[1], sys.argv[2]
gemma2 = "--gemma2" in sys.argv[3:]
wide = int(sys.argv[sys.argv.index("--vocab") + 1]) if "--vocab" in sys.argv else 0
with open(os.path.join(tok, "tokenizer.json")) as f:
    t = json.load(f)
vocab = max(max(t["model"]["vocab"].values()), max((a["id"] for a in t.get("added_tokens", [])), default=0)) + 1
vocab = max(vocab, wide)
shape = dict(vocab_size=vocab, hidden_size=640, intermediate_size=2048, num_hidden_layers=18, num_attention_heads=4,
             num_key_value_heads=1, head_dim=256, query_pre_attn_scalar=256, rms_norm_eps=1e-6,
             tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=0)
if gemma2:
    cfg = Gemma2Config(max_position_embeddings=8192, sliding_window=4096, **shape)
else:
    cfg = Gemma3TextConfig(max_position_embeddings=32768, sliding_window=512, **shape)
torch.manual_seed(4 if gemma2 else 3)
model = AutoModelForCausalLM.from_config(cfg)
shutil.rmtree(out, ignore_errors=True)
model.save_pretrained(out)
for f in ("tokenizer.json", "tokenizer_config.json"):
    if os.path.exists(os.path.join(tok, f)):
        shutil.copy(os.path.join(tok, f), out)
print("wrote", out, sum(p.numel() for p in model.parameters()), "parameters")
