#!/usr/bin/env python3
"""Tiny Hugging Face model folders and their transformers logits, for tests/test_load_hf.c.

Usage (needs torch + transformers; e.g. a venv with PyPI torch 2.x and `pip install transformers safetensors`):

    python3 tests/reference/hf_fixtures.py [NAME...]

With names, only those folders and their logits.json entries are rewritten (the others kept as they are; each such
entry records its own transformers version).

Writes tests/reference/fixtures/hf/<name>/ (config.json + safetensors exactly as save_pretrained writes them) and
tests/reference/fixtures/hf/logits.json: for each folder the token ids and the float64 logits transformers'
AutoModelForCausalLM computes from the saved weights (every position, T x V, row-major). Folders:

  llama        LlamaForCausalLM, GQA (4 heads, 2 KV heads), untied head, F32, one model.safetensors
  llama_shard  LlamaForCausalLM, 1 KV head, tied head, rope_theta 5e5, BF16, sharded with an index
  gpt2         GPT2LMHeadModel (Conv1D weights), F32, with a tiny byte-level BPE tokenizer.json (V = 260)
  opt          OPTForCausalLM (learned positions at offset 2, ReLU), F16
  mistral      MistralForCausalLM, sliding_window 5 over 40 tokens (each query sees its last 5 positions), head_dim
               12 (q 48 wide on hidden_size 32), GQA 4 / 2, F32
  phi3_swa     Phi3ForCausalLM (qkv_proj, gate_up_proj fused), sliding_window 7 over 30 tokens, F32
  smollm3      SmolLM3ForCausalLM, 4 layers (the 4th without RoPE: no_rope_layer_interval 4), GQA 4 / 2, tied, F32
  gemma3       Gemma3ForCausalLM (gemma3_text): 6 layers, every 3rd global (the others a window of 5 over 40 tokens,
               RoPE base 100; the global ones base 1e4, linear factor 2), head_dim 16 on hidden_size 32,
               query_pre_attn_scalar 24, GQA 4 / 2, tied, F32
  gemma3_mm    Gemma3ForConditionalGeneration (model_type gemma3: text_config, language_model.* tensors beside a tiny
               SigLIP vision tower), 3 layers, a window of 5 over 20 text tokens (ids below the image tokens), F32
  gemma2       Gemma2ForCausalLM: 4 layers, every 2nd global (the others a window of 5 over 40 tokens), scores capped at
               5 and logits at 3 (small, so the caps bite), query_pre_attn_scalar 24, GQA, tied, F32

Weights are random (seeded) and larger than HF's 0.02 init so logits differ visibly between positions and tokens.
Everything is small (about 200 KB in all) so the folders are committed.
"""

import json
import os
import shutil
import sys

import torch
import transformers
from transformers import (AutoModelForCausalLM, GPT2Config, LlamaConfig, MistralConfig, OPTConfig,
                          Phi3Config, SmolLM3Config, Gemma3TextConfig,
                          Gemma3Config, SiglipVisionConfig, Gemma2Config)

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures", "hf")
TEXT = "In the beginning God created the heaven and the earth."
PROMPT = "God created the earth."  # what the gpt2 fixture encodes and runs


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or "ln_" in name:
                if name.endswith("weight"):
                    p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
                else:
                    p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))


def tiny_tokenizer(path):
    """A byte-level BPE with 256 byte tokens, <|endoftext|> and 3 merges (V = 260), trained by HF tokenizers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tr = trainers.BpeTrainer(vocab_size=260, special_tokens=["<|endoftext|>"],
                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([TEXT] * 4, trainer=tr)
    assert tok.get_vocab_size() == 260, tok.get_vocab_size()
    tok.save(os.path.join(path, "tokenizer.json"))
    with open(os.path.join(path, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "add_bos_token": False,
                   "tokenizer_class": "PreTrainedTokenizerFast",
                   "chat_template": "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
                                    "<|im_end|>\n{% endfor %}"}, f, indent=1)
    return tok


def build(name, cfg, seed, dtype, shard=None, tokenizer=False, n_tokens=9, max_id=None):
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager")
    randomize(model, seed)
    path = os.path.join(OUT, name)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    model.to(dtype)
    kw = {"max_shard_size": shard} if shard else {}
    model.save_pretrained(path, safe_serialization=True, **kw)
    for extra in ("generation_config.json",):
        p = os.path.join(path, extra)
        if os.path.exists(p) and name != "llama":
            os.remove(p)  # keep one generation_config.json (llama) to exercise reading it
    tok = tiny_tokenizer(path) if tokenizer else None
    # the reference: the saved weights, read back by transformers and run in float64
    ref = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float64, attn_implementation="eager")
    ref.eval()
    V = cfg.get_text_config().vocab_size
    if tok is not None:
        ids = tok.encode(PROMPT).ids
    else:
        g = torch.Generator().manual_seed(seed + 1)
        ids = torch.randint(0, max_id or V, (n_tokens,), generator=g).tolist()
    with torch.no_grad():
        logits = ref(torch.tensor([ids])).logits[0]
    entry = {"tokens": ids, "vocab": V, "logits": [float("%.9g" % x) for x in logits.reshape(-1).tolist()]}
    if tok is not None:
        entry["text"] = PROMPT
    return entry


def models():
    return {
        "llama": lambda: build("llama", LlamaConfig(
            vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-5, rope_theta=10000.0,
            tie_word_embeddings=False, bos_token_id=1, eos_token_id=2), 11, torch.float32),
        "llama_shard": lambda: build("llama_shard", LlamaConfig(
            vocab_size=64, hidden_size=32, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=1, max_position_embeddings=32, rms_norm_eps=1e-6, rope_theta=500000.0,
            tie_word_embeddings=True, bos_token_id=0, eos_token_id=0), 22, torch.bfloat16, shard="12KB"),
        "gpt2": lambda: build("gpt2", GPT2Config(
            vocab_size=260, n_embd=16, n_layer=2, n_head=4, n_positions=64, layer_norm_epsilon=1e-5,
            bos_token_id=259, eos_token_id=259), 33, torch.float32, tokenizer=True),
        "opt": lambda: build("opt", OPTConfig(
            vocab_size=64, hidden_size=16, ffn_dim=48, num_hidden_layers=2, num_attention_heads=2,
            max_position_embeddings=32, word_embed_proj_dim=16, do_layer_norm_before=True, pad_token_id=1,
            bos_token_id=2, eos_token_id=2), 44, torch.float16),
        "mistral": lambda: build("mistral", MistralConfig(
            vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, head_dim=12, max_position_embeddings=64, rms_norm_eps=1e-5,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}, sliding_window=5,
            tie_word_embeddings=False, bos_token_id=1, eos_token_id=2), 55, torch.float32, n_tokens=40),
        "phi3_swa": lambda: build("phi3_swa", Phi3Config(
            vocab_size=64, hidden_size=32, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=4, max_position_embeddings=64, original_max_position_embeddings=64,
            rms_norm_eps=1e-5, sliding_window=7, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2,
            pad_token_id=2), 66, torch.float32, n_tokens=30),
        "smollm3": lambda: build("smollm3", SmolLM3Config(
            vocab_size=64, hidden_size=32, intermediate_size=40, num_hidden_layers=4, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-6,
            rope_parameters={"rope_type": "default", "rope_theta": 50000.0}, tie_word_embeddings=True,
            bos_token_id=1, eos_token_id=2, pad_token_id=2), 77, torch.float32, n_tokens=16),
        "gemma3": lambda: build("gemma3", Gemma3TextConfig(
            vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=6, num_attention_heads=4,
            num_key_value_heads=2, head_dim=16, query_pre_attn_scalar=24, max_position_embeddings=64,
            rms_norm_eps=1e-6, sliding_window=5, layer_types=["sliding_attention", "sliding_attention",
                                                              "full_attention"] * 2,
            rope_parameters={"full_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0},
                             "sliding_attention": {"rope_type": "default", "rope_theta": 100.0}},
            tie_word_embeddings=True, bos_token_id=2, eos_token_id=1, pad_token_id=0), 88, torch.float32,
            n_tokens=40),
        "gemma3_mm": lambda: build("gemma3_mm", Gemma3Config(
            text_config=Gemma3TextConfig(
                vocab_size=300, hidden_size=32, intermediate_size=48, num_hidden_layers=3, num_attention_heads=4,
                num_key_value_heads=2, head_dim=16, query_pre_attn_scalar=16, max_position_embeddings=64,
                sliding_window=5, layer_types=["sliding_attention", "sliding_attention", "full_attention"],
                tie_word_embeddings=True, bos_token_id=2, eos_token_id=1, pad_token_id=0),
            vision_config=SiglipVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                             num_attention_heads=2, image_size=28, patch_size=14),
            mm_tokens_per_image=4, boi_token_index=297, eoi_token_index=298, image_token_index=299), 99,
            torch.float32, n_tokens=20, max_id=297),
        "gemma2": lambda: build("gemma2", Gemma2Config(
            vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=4, num_attention_heads=4,
            num_key_value_heads=2, head_dim=16, query_pre_attn_scalar=24, max_position_embeddings=64,
            rms_norm_eps=1e-6, sliding_window=5, attn_logit_softcapping=5.0, final_logit_softcapping=3.0,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, tie_word_embeddings=True,
            bos_token_id=2, eos_token_id=1, pad_token_id=0), 111, torch.float32, n_tokens=40),
    }


def main(names):
    os.makedirs(OUT, exist_ok=True)
    table = models()
    path = os.path.join(OUT, "logits.json")
    if names:
        with open(path) as f:
            out = json.load(f)
    else:
        out = {"transformers": transformers.__version__, "torch": torch.__version__}
    for name in names or list(table):
        out[name] = table[name]()
        if names:
            out[name]["transformers"] = transformers.__version__
    with open(path, "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(d, x)) for d, _, fs in os.walk(OUT) for x in fs)
    print("wrote", OUT, total, "bytes")


if __name__ == "__main__":
    main(sys.argv[1:])
