/* lora_io.h — LoRA adapters (model/lora.h) to and from the files other tools read: a Hugging Face PEFT folder and
 * a llama.cpp GGUF adapter.
 *
 * PEFT folder (what PeftModel.save_pretrained writes):
 *   adapter_config.json        {"peft_type": "LORA", "r", "lora_alpha", "lora_dropout", "target_modules": [...],
 *                               "use_rslora", "bias": "none", "fan_in_fan_out", ...}
 *   adapter_model.safetensors  per adapted module: <prefix>.<layer>.<module path>.lora_A.weight (r, in) and
 *                              .lora_B.weight (out, r), prefix and path per family:
 *     llama  base_model.model.model.layers.L.self_attn.{q,k,v,o}_proj, .mlp.{gate,up,down}_proj
 *     gpt2   base_model.model.transformer.h.L.attn.c_attn, .attn.c_proj, .mlp.c_fc, .mlp.c_proj
 *     opt    base_model.model.model.decoder.layers.L.self_attn.{q,k,v,out}_proj, .fc1, .fc2
 *   GPT-2's Conv1D keeps its base weight as (in, out), but PEFT's lora_A / lora_B are nn.Linear all the same
 *   (A (r, in), B (out, r)): fan_in_fan_out only transposes the merged delta.
 *
 * GGUF adapter (llama.cpp's convert_lora_to_gguf.py / llama-adapter.cpp): general.type = "adapter",
 * general.architecture = the base's, adapter.type = "lora", adapter.lora.alpha (f32; llama.cpp scales by
 * alpha / r, so an rsLoRA adapter is written with alpha * sqrt r); per adapted base tensor <base name>.lora_a
 * (ggml ne [in, r]) and .lora_b (ne [r, out]): blk.L.attn_q.weight.lora_a, attn_k, attn_v, attn_output, ffn_gate,
 * ffn_up, ffn_down (llama); blk.L.attn_qkv, attn_output, ffn_up, ffn_down (gpt2). llama.cpp has no OPT.
 *
 * Q/K row order: PEFT adapters live in Hugging Face's rotate_half order, GGUF ones in llama.cpp's interleaved order;
 * an lmf_lora is in its model's order (cfg->pos). q and k B rows are permuted per head wherever the two differ.
 *
 * target_modules follow PEFT's matching: a name matches a module whose path in the Hugging Face model
 * ("model.layers.0.self_attn.q_proj") it equals or ends with after a dot; "all-linear" (PEFT >= 0.20 saves it as
 * every module's full path). A module must be targeted in every layer or in none.
 *
 * Loaders check every tensor against the model (r, in, out), accept F32, F16 and BF16, and refuse a missing
 * tensor, an unexpected one (a layer beyond the model, a module not in the targets) and what lmforge cannot
 * represent (DoRA, bias training, layers_to_transform, modules_to_save, per-module ranks), each error naming the
 * file and the tensor or field. Writers build everything in memory first, then replace each file atomically. */
#ifndef LMF_MODEL_LORA_IO_H
#define LMF_MODEL_LORA_IO_H

#include "lmforge.h"
#include "model/lora.h"

/* Writes dir/adapter_config.json and dir/adapter_model.safetensors (fp32), creating dir. base_name goes to
 * base_model_name_or_path (NULL: null). */
lmf_status lmf_lora_save_peft(const lmf_lora *l, const lmf_model_config *cfg, const char *base_name, const char *dir);
/* Reads the PEFT folder dir into a new adapter for a model of cfg (*out, freed with lmf_lora_free). */
lmf_status lmf_lora_load_peft(const char *dir, const lmf_model_config *cfg, lmf_lora **out);
/* The same from the two files by path (the fuzz target's entry). */
lmf_status lmf_lora_load_peft_files(const char *config_path, const char *tensors_path, const lmf_model_config *cfg,
                                    lmf_lora **out);

/* Writes a GGUF LoRA adapter (F32) for llama.cpp. LMF_ERR_ARG for an OPT model. */
lmf_status lmf_lora_save_gguf(const lmf_lora *l, const lmf_model_config *cfg, const char *path);
/* Reads one: alpha from adapter.lora.alpha (absent: alpha = r, llama.cpp's scale 1), r from the tensors, the
 * targets from which tensors exist in layer 0; rslora off, dropout 0. */
lmf_status lmf_lora_load_gguf(const char *path, const lmf_model_config *cfg, lmf_lora **out);

#endif
