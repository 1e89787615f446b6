#!/usr/bin/env bash
# Mixture of experts through the CLI: train a small MoE llama with the MoE flags (router losses, capacity) on a real
# text with a BPE tokenizer, check its metrics lines, resume it, export it to GGUF, quantize it, read it with info and
# generate from each form, fine-tune LoRA adapters on the Q8_0 file; bad MoE flags fail with messages naming the
# field; a Qwen2-MoE (arch qwen2, gated shared expert) and a Qwen3-MoE (arch qwen3, q/k norms) from train to GGUF
# and HF folder. Usage: cli_moe.sh lmforge
set -uo pipefail
LMF=$1
dir=$(mktemp -d /tmp/lmf_cli_moe_XXXXXX)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

if command -v bible >/dev/null; then bible gen1:1-gen20:18 > "$dir/text.txt"; else cat "$(dirname "$0")"/../src/*/*.c > "$dir/text.txt"; fi
"$LMF" tokenizer train --vocab-size 400 --special "<|endoftext|>" -o "$dir/tok.json" "$dir/text.txt" > /dev/null 2>&1 ||
    fail "tokenizer train"
"$LMF" data shard --tokenizer "$dir/tok.json" --out "$dir/data" --val-fraction 0.1 --block 4096 "$dir/text.txt" \
    > /dev/null 2>&1 || fail "data shard"

moe=(--arch llama --n-layer 2 --n-embd 64 --n-head 4 --n-kv-head 2 --ffn-dim 64 --n-expert 4 --n-expert-used 2
     --norm-topk-prob true --shared-ffn-dim 32 --router-aux-coef 0.01 --router-z-coef 0.001 --capacity-factor 1.0)
common=(--train-data "$dir/data/train.bin" --val-data "$dir/data/val.bin" --tokenizer "$dir/tok.json"
        --batch-size 4 --seq-len 32 --warmup-steps 2 --eval-every 5 --eval-batches 2 --checkpoint-every 5
        --sample-tokens 10)

# 1. a short run: a router line per step in metrics.jsonl, the router on the progress line, the knobs saved
"$LMF" train "${moe[@]}" "${common[@]}" --max-steps 8 --out-dir "$dir/run" > "$dir/out.txt" 2> "$dir/err.txt" ||
    { cat "$dir/err.txt"; fail "train"; }
[ "$(grep -c '"aux_loss"' "$dir/run/metrics.jsonl")" = 8 ] || fail "metrics should have 8 router lines"
grep '"aux_loss"' "$dir/run/metrics.jsonl" | head -1 | grep -q '"expert_load":\[[0-9.e-]*,[0-9.e-]*,[0-9.e-]*,[0-9.e-]*\]' ||
    fail "router line without 4 expert loads: $(grep -m1 aux_loss "$dir/run/metrics.jsonl")"
grep -q 'aux [0-9.]* z [0-9.]* drop [0-9]*' "$dir/err.txt" || fail "progress line without the router"
grep -q '^n_expert = 4' "$dir/run/train.conf" || fail "train.conf lacks n_expert"

# 1b. mixed precision reaches the experts too (forward and backward products in bf16): 6 steps land near the fp32
# run's losses without equalling them
for prec in fp32 bf16; do
  "$LMF" train "${moe[@]}" "${common[@]}" --max-steps 6 --precision $prec --sample-tokens 0 --out-dir "$dir/p_$prec" \
    > /dev/null 2> "$dir/p_err.txt" || { cat "$dir/p_err.txt"; fail "train --precision $prec"; }
done
python3 - "$dir/p_fp32/metrics.jsonl" "$dir/p_bf16/metrics.jsonl" <<'EOF' || fail "bf16 MoE losses"
import json, sys
loss = lambda f: [json.loads(l)["loss"] for l in open(f) if '"loss"' in l and '"step"' in l and '"val' not in l]
a, b = loss(sys.argv[1]), loss(sys.argv[2])
assert len(a) == len(b) == 6, (a, b)
assert a != b, "bf16 gave the fp32 losses: the products did not run in bf16"
assert all(abs(x - y) <= 0.02 * x for x, y in zip(a, b)), (a, b)
EOF

# 2. resume continues the MoE run
"$LMF" train --resume "$dir/run" --max-steps 10 --sample-tokens 0 2> "$dir/res.txt" || { cat "$dir/res.txt"; fail "resume"; }
[ -f "$dir/run/ckpt-00000010.lmfc" ] || fail "no checkpoint after resume"

# 3. export to GGUF, quantize, info, generate from checkpoint, GGUF and Q8_0 GGUF
"$LMF" export "$dir/run" --to gguf -o "$dir/moe.gguf" > /dev/null 2>&1 || fail "export gguf"
"$LMF" quantize "$dir/moe.gguf" "$dir/moe_q8.gguf" --type q8_0 > /dev/null 2>&1 || fail "quantize"
"$LMF" info "$dir/moe_q8.gguf" > "$dir/info.txt" || fail "info"
grep -q 'blk.0.ffn_gate_exps.weight *Q8_0 *\[64, 64, 4\]' "$dir/info.txt" ||
    fail "experts not quantized: $(grep exps "$dir/info.txt" | head -2)"
"$LMF" info "$dir/run" > "$dir/info_ckpt.txt" || fail "info of the checkpoint"
grep -q 'n_expert  *4' "$dir/info_ckpt.txt" || fail "info of the checkpoint does not show n_expert"
grep -q 'layers.1.experts.3.down' "$dir/info_ckpt.txt" || fail "info of the checkpoint does not list the experts"
for m in "$dir/run" "$dir/moe.gguf" "$dir/moe_q8.gguf"; do
    "$LMF" generate -m "$m" -p "And God said" -n 8 --temp 0 > "$dir/gen.txt" 2> "$dir/gen_err.txt" ||
        { cat "$dir/gen_err.txt"; fail "generate from $m"; }
done
# 3b. LoRA on the quantized MoE (QLoRA): adapters on the attention projections, the router and the Q8_0 experts
# (PEFT's target_parameters), gradients through the frozen Q8_0 experts and the router; the adapter applied at
# generation (GGUF and PEFT folder) equals the merged model; all-linear on a llama MoE with a shared expert (no HF
# model defines it), separate expert gate/up targets and dropout on expert adapters refused; resume is bit-exact
for i in 1 2 3 4 5 6; do
  echo '{"prompt": "And God said", "completion": ", Let there be light: and there was light."}'
  echo '{"text": "And the evening and the morning were the first day."}'
done > "$dir/ft.jsonl"
"$LMF" finetune -m "$dir/moe_q8.gguf" --data "$dir/ft.jsonl" --lora-r 4 --lora-dropout 0 \
    --lora-targets q_proj,k_proj,v_proj,o_proj,gate.weight,experts.gate_up_proj,experts.down_proj --batch-size 2 --seq-len 32 --max-steps 10 --lr 1e-2 --out-dir "$dir/ft" > /dev/null 2> "$dir/ft_err.txt" ||
    { cat "$dir/ft_err.txt"; fail "LoRA fine-tune of the Q8_0 MoE"; }
# a run resumed from its middle checkpoint ends bit for bit where the uninterrupted one does (expert adapters included)
rs=(-m "$dir/moe_q8.gguf" --data "$dir/ft.jsonl" --lora-r 2 --lora-dropout 0 --lora-targets q_proj,gate.weight,experts.gate_up_proj,experts.down_proj
    --batch-size 2 --seq-len 32 --max-steps 6 --checkpoint-every 3 --lr 1e-2 --val-fraction 0)
"$LMF" finetune "${rs[@]}" --out-dir "$dir/r1" > /dev/null 2>&1 || fail "expert LoRA run for resume"
"$LMF" finetune "${rs[@]}" --out-dir "$dir/r2" > /dev/null 2>&1 && rm "$dir/r2/ckpt-00000006.lmfc" &&
    "$LMF" finetune "${rs[@]}" --out-dir "$dir/r2" --resume > /dev/null 2>&1 || fail "expert LoRA resume"
cmp -s "$dir/r1/ckpt-00000006.lmfc" "$dir/r2/ckpt-00000006.lmfc" || fail "resumed expert LoRA run differs"
python3 - "$dir/ft/metrics.jsonl" <<'EOF' || fail "LoRA on the MoE did not lower the validation loss"
import json, sys
v = [json.loads(l)["val_loss"] for l in open(sys.argv[1]) if '"val_loss"' in l]
assert len(v) >= 2 and v[-1] < v[0], v
EOF
grep -q '"o_proj"' "$dir/ft/adapter/adapter_config.json" || fail "PEFT adapter_config lacks o_proj"
grep -q '"gate_up_proj"' "$dir/ft/adapter/adapter_config.json" || fail "PEFT adapter_config lacks target_parameters"
"$LMF" export "$dir/moe_q8.gguf" --merge-lora "$dir/ft/adapter" --to gguf -o "$dir/merged.gguf" > /dev/null 2>&1 ||
    fail "merge the adapter into the MoE"
a=$("$LMF" generate -m "$dir/moe_q8.gguf" --lora "$dir/ft/adapter.gguf" -p "And God said" -n 8 --temp 0 2> /dev/null)
b=$("$LMF" generate -m "$dir/merged.gguf" -p "And God said" -n 8 --temp 0 2> /dev/null)
c=$("$LMF" generate -m "$dir/moe_q8.gguf" --lora "$dir/ft/adapter" -p "And God said" -n 8 --temp 0 2> /dev/null)
[ -n "$a" ] && [ "$a" = "$b" ] || fail "adapter at generation ($a) differs from the merged model ($b)"
[ "$a" = "$c" ] || fail "the GGUF adapter ($a) and the PEFT folder ($c) generate differently"
"$LMF" finetune -m "$dir/moe_q8.gguf" --data "$dir/ft.jsonl" --lora-targets all-linear --out-dir "$dir/x" \
    2> "$dir/e.txt" && fail "all-linear on a MoE with a shared expert accepted"
grep -q "no Hugging Face model" "$dir/e.txt" || fail "all-linear: $(cat "$dir/e.txt")"
"$LMF" finetune -m "$dir/moe_q8.gguf" --data "$dir/ft.jsonl" --lora-targets experts.gate_proj --out-dir "$dir/x" \
    2> "$dir/e.txt" && fail "experts.gate_proj on a MoE accepted"
grep -q "one fused parameter, gate_up_proj" "$dir/e.txt" || fail "experts.gate_proj: $(cat "$dir/e.txt")"
"$LMF" finetune -m "$dir/moe_q8.gguf" --data "$dir/ft.jsonl" --lora-targets q_proj,experts.down_proj \
    --out-dir "$dir/x" 2> "$dir/e.txt" && fail "expert adapters with dropout 0.1 accepted"
grep -q "raises for lora_dropout != 0" "$dir/e.txt" || fail "dropout: $(cat "$dir/e.txt")"

# the shared expert has no Mixtral equivalent: the HF export says so
"$LMF" export "$dir/run" --to safetensors -o "$dir/hf" > /dev/null 2> "$dir/hf_err.txt" && fail "HF export of a shared expert"
grep -q "shared expert" "$dir/hf_err.txt" || fail "HF export refusal does not say why: $(cat "$dir/hf_err.txt")"

# 4. bad MoE flags name the field
expect_error() {
    local want=$1; shift
    "$@" > /dev/null 2> "$dir/e.txt" && fail "succeeded: $*"
    grep -q "$want" "$dir/e.txt" || fail "expected '$want', got: $(cat "$dir/e.txt")"
}
expect_error "n_expert_used" "$LMF" train "${common[@]}" --arch llama --n-expert 4 --n-expert-used 5 --max-steps 2 \
    --out-dir "$dir/bad"
expect_error "llama" "$LMF" train "${common[@]}" --arch gpt2 --n-expert 4 --n-expert-used 2 --max-steps 2 --out-dir "$dir/bad"
expect_error "capacity_factor" "$LMF" train "${common[@]}" "${moe[@]}" --capacity-factor -1 --max-steps 2 --out-dir "$dir/bad"
expect_error "shared_gate" "$LMF" train "${common[@]}" --arch qwen2 --shared-gate true --max-steps 2 --out-dir "$dir/bad"

# 5. a Qwen2-MoE (q/k/v biases, a gated shared expert) from the flags: its knobs saved and checked on resume, the
# same greedy text from the checkpoint, its qwen2moe GGUF and its Qwen2MoeForCausalLM folder read back
qwen=(--arch qwen2 --n-layer 2 --n-embd 64 --n-head 4 --n-kv-head 2 --ffn-dim 64 --n-expert 4 --n-expert-used 2
      --shared-ffn-dim 32 --shared-gate true --router-aux-coef 0.01)
"$LMF" train "${qwen[@]}" "${common[@]}" --max-steps 6 --sample-tokens 0 --out-dir "$dir/qw" > /dev/null 2> "$dir/err.txt" ||
    { cat "$dir/err.txt"; fail "train qwen2 MoE"; }
grep -q '^arch = qwen2' "$dir/qw/train.conf" && grep -q '^qkv_bias = 1' "$dir/qw/train.conf" &&
    grep -q '^shared_gate = 1' "$dir/qw/train.conf" || fail "train.conf lacks the qwen2 knobs"
expect_error "shared_gate" "$LMF" train --resume "$dir/qw" --shared-gate false --max-steps 8
"$LMF" export "$dir/qw" --to gguf -o "$dir/qw.gguf" > /dev/null 2>&1 || fail "export qwen2moe gguf"
"$LMF" info "$dir/qw.gguf" > "$dir/info.txt" || fail "info qwen2moe"
grep -q 'architecture: qwen2moe' "$dir/info.txt" && grep -q 'blk.1.ffn_gate_inp_shexp.weight' "$dir/info.txt" &&
    grep -q 'blk.1.attn_v.bias' "$dir/info.txt" || fail "qwen2moe GGUF: $(head -3 "$dir/info.txt")"
"$LMF" export "$dir/qw.gguf" --to safetensors -o "$dir/qw_hf" > /dev/null 2>&1 || fail "export Qwen2-MoE folder"
grep -q '"model_type":[[:space:]]*"qwen2_moe"' "$dir/qw_hf/config.json" || fail "HF export is not qwen2_moe"
ref=$("$LMF" generate -m "$dir/qw" -p "And God said" -n 8 --temp 0 2> /dev/null)
for m in "$dir/qw.gguf" "$dir/qw_hf"; do
    got=$("$LMF" generate -m "$m" -p "And God said" -n 8 --temp 0 2> /dev/null)
    [ -n "$ref" ] && [ "$got" = "$ref" ] || fail "generate from $m: '$got', the checkpoint: '$ref'"
done
# 5b. LoRA all-linear on the Qwen2-MoE as PEFT defines it there: q/k/v/o and the shared expert's gate_proj, up_proj,
# down_proj and shared_expert_gate (nn.Linear modules: dropout 0.1 allowed); both adapter forms written (the GGUF's
# shared expert under llama.cpp's qwen2moe names), resume bit-exact, and the GGUF adapter, the PEFT folder and the
# merged model generate the same tokens
qft=(-m "$dir/qw.gguf" --data "$dir/ft.jsonl" --lora-r 4 --lora-targets all-linear --batch-size 2 --seq-len 32
     --max-steps 6 --checkpoint-every 3 --lr 1e-2 --val-fraction 0)
"$LMF" finetune "${qft[@]}" --out-dir "$dir/q1" > /dev/null 2> "$dir/err.txt" || { cat "$dir/err.txt"; fail "all-linear LoRA on the Qwen2-MoE"; }
grep -q '"shared_expert_gate"' "$dir/q1/adapter/adapter_config.json" &&
    grep -q '"shared_expert.down_proj"' "$dir/q1/adapter/adapter_config.json" || fail "PEFT config lacks the shared expert"
"$LMF" info "$dir/q1/adapter.gguf" > "$dir/info.txt" 2>&1 || fail "info of the Qwen2-MoE GGUF adapter"
grep -q 'blk.1.ffn_gate_inp_shexp.weight.lora_b' "$dir/info.txt" && grep -q 'blk.0.ffn_down_shexp.weight.lora_a' "$dir/info.txt" ||
    fail "GGUF adapter lacks the shared expert: $(head -5 "$dir/info.txt")"
"$LMF" finetune "${qft[@]}" --out-dir "$dir/q2" > /dev/null 2>&1 && rm "$dir/q2/ckpt-00000006.lmfc" &&
    "$LMF" finetune "${qft[@]}" --out-dir "$dir/q2" --resume > /dev/null 2>&1 || fail "Qwen2-MoE LoRA resume"
cmp -s "$dir/q1/ckpt-00000006.lmfc" "$dir/q2/ckpt-00000006.lmfc" || fail "resumed Qwen2-MoE LoRA run differs"
"$LMF" export "$dir/qw.gguf" --merge-lora "$dir/q1/adapter" --to gguf -o "$dir/q_merged.gguf" > /dev/null 2>&1 ||
    fail "merge the shared expert adapter"
a=$("$LMF" generate -m "$dir/qw.gguf" --lora "$dir/q1/adapter.gguf" -p "And God said" -n 8 --temp 0 2> /dev/null)
b=$("$LMF" generate -m "$dir/q_merged.gguf" -p "And God said" -n 8 --temp 0 2> /dev/null)
c=$("$LMF" generate -m "$dir/qw.gguf" --lora "$dir/q1/adapter" -p "And God said" -n 8 --temp 0 2> /dev/null)
[ -n "$a" ] && [ "$a" = "$b" ] && [ "$a" = "$c" ] || fail "Qwen2-MoE adapter: GGUF '$a', merged '$b', PEFT '$c'"
[ "$a" != "$ref" ] || fail "the Qwen2-MoE adapter changed nothing ('$a')"

# 6. a Qwen3-MoE (per-head q/k norms, top-k renormalised) from the flags: the knob saved and checked on resume, the
# same greedy text from the checkpoint, its qwen3moe GGUF and its Qwen3MoeForCausalLM folder read back
expect_error "qk_norm" "$LMF" train "${common[@]}" --arch qwen3 --qk-norm 3 --max-steps 2 --out-dir "$dir/bad"
q3=(--arch qwen3 --n-layer 2 --n-embd 64 --n-head 4 --n-kv-head 2 --ffn-dim 64 --n-expert 4 --n-expert-used 2
    --norm-topk-prob true --router-aux-coef 0.01)
"$LMF" train "${q3[@]}" "${common[@]}" --max-steps 6 --sample-tokens 0 --out-dir "$dir/q3" > /dev/null 2> "$dir/err.txt" ||
    { cat "$dir/err.txt"; fail "train qwen3 MoE"; }
grep -q '^arch = qwen3' "$dir/q3/train.conf" && grep -q '^qk_norm = 1' "$dir/q3/train.conf" ||
    fail "train.conf lacks the qwen3 knobs"
expect_error "qk_norm" "$LMF" train --resume "$dir/q3" --qk-norm 0 --max-steps 8
"$LMF" export "$dir/q3" --to gguf -o "$dir/q3.gguf" > /dev/null 2>&1 || fail "export qwen3moe gguf"
"$LMF" info "$dir/q3.gguf" > "$dir/info.txt" || fail "info qwen3moe"
grep -q 'architecture: qwen3moe' "$dir/info.txt" && grep -q 'blk.1.attn_k_norm.weight' "$dir/info.txt" ||
    fail "qwen3moe GGUF: $(head -3 "$dir/info.txt")"
"$LMF" export "$dir/q3.gguf" --to safetensors -o "$dir/q3_hf" > /dev/null 2>&1 || fail "export Qwen3-MoE folder"
grep -q '"model_type":[[:space:]]*"qwen3_moe"' "$dir/q3_hf/config.json" || fail "HF export is not qwen3_moe"
ref=$("$LMF" generate -m "$dir/q3" -p "And God said" -n 8 --temp 0 2> /dev/null)
for m in "$dir/q3.gguf" "$dir/q3_hf"; do
    got=$("$LMF" generate -m "$m" -p "And God said" -n 8 --temp 0 2> /dev/null)
    [ -n "$ref" ] && [ "$got" = "$ref" ] || fail "generate from $m: '$got', the checkpoint: '$ref'"
done
echo "cli_moe: OK"
