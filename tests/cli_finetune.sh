#!/usr/bin/env bash
# `lmforge finetune` end to end on the tiny Hugging Face gpt2 fixture (it carries a tokenizer): LoRA on supervised
# prompt/completion JSONL lowers the validation loss and writes a PEFT folder and a GGUF adapter that `generate --lora`
# applies identically; a run resumed from its middle checkpoint ends bit for bit where the uninterrupted run does (grouped
# by length too);
# the head's loss over vocabulary slabs (--loss fused) reaches the logits' validation loss, LoRA and --full, and a
# resumed run keeps its loss; --full writes a model.gguf that runs, in bf16 too; bad input is refused naming the file:line or the valid module names;
# only the newest --keep-checkpoints checkpoints stay.
# Usage: cli_finetune.sh path/to/lmforge
set -uo pipefail
LMF=$1
M="$(cd "$(dirname "$0")" && pwd)/reference/fixtures/hf/gpt2"
dir=$(mktemp -d /tmp/lmf_ft_XXXXXX)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

for i in $(seq 0 11); do
  printf '{"prompt": "Question %d: what is %d plus %d?", "completion": " It is %d."}\n' $i $i $i $((2 * i))
done > "$dir/data.jsonl"
common=(-m "$M" --data "$dir/data.jsonl" --batch-size 2 --seq-len 64 --max-steps 20 --lr 5e-3 --lora-dropout 0.1
        --lora-targets c_attn,c_proj,c_fc --checkpoint-every 10 --threads 2)

# 1. LoRA: validation loss falls; adapters in both formats
"$LMF" finetune "${common[@]}" --out-dir "$dir/a" 2> "$dir/a.log" || { cat "$dir/a.log"; fail "finetune"; }
before=$(head -1 "$dir/a/metrics.jsonl" | sed 's/.*"val_loss":\([^}]*\)}/\1/')
after=$(tail -1 "$dir/a/metrics.jsonl" | sed 's/.*"val_loss":\([^}]*\)}/\1/')
awk -v a="$after" -v b="$before" 'BEGIN{exit !(a < b)}' || fail "validation loss did not fall: $before -> $after"
[ -s "$dir/a/adapter/adapter_config.json" ] && [ -s "$dir/a/adapter/adapter_model.safetensors" ] || fail "no PEFT"
[ -s "$dir/a/adapter.gguf" ] || fail "no GGUF adapter"
# padded batches run at their longest example (~25 of the tokens here), not --seq-len 64
grep -q "padded batches ran at their longest example's length: [0-9.]* of 64 positions" "$dir/a.log" ||
  fail "batch length not reported"
ran=$(sed -n "s/.*example's length: \([0-9.]*\) of 64.*/\1/p" "$dir/a.log")
awk -v r="$ran" 'BEGIN { exit !(r < 64) }' || fail "padded batches ran at $ran of --seq-len 64"
grep -q '"peft_type":[[:space:]]*"LORA"' "$dir/a/adapter/adapter_config.json" || fail "adapter_config.json: peft_type"

# 2. generate with either adapter file: the same tokens, and not the base model's
p="Question 3: what is 3 plus 3?"
base=$("$LMF" generate -m "$M" -p "$p" -n 12 --temp 0 2>/dev/null | od -An -c)
peft=$("$LMF" generate -m "$M" -p "$p" -n 12 --temp 0 --lora "$dir/a/adapter" 2>/dev/null | od -An -c)
gguf=$("$LMF" generate -m "$M" -p "$p" -n 12 --temp 0 --lora "$dir/a/adapter.gguf" 2>/dev/null | od -An -c)
[ "$peft" = "$gguf" ] || fail "PEFT and GGUF adapters generate differently"
[ "$peft" != "$base" ] || fail "the adapter changes nothing"

# 3. resume from the middle checkpoint: the final checkpoint is byte-identical
"$LMF" finetune "${common[@]}" --out-dir "$dir/b" > /dev/null 2>&1 || fail "second run"
rm "$dir/b/ckpt-00000020.lmfc"
"$LMF" finetune "${common[@]}" --out-dir "$dir/b" --resume 2> "$dir/b.log" || { cat "$dir/b.log"; fail "resume"; }
grep -q "resuming from .*ckpt-00000010.lmfc (step 10)" "$dir/b.log" || fail "resume message"
cmp "$dir/a/ckpt-00000020.lmfc" "$dir/b/ckpt-00000020.lmfc" || fail "resumed run differs"
"$LMF" finetune "${common[@]}" --lora-r 8 --out-dir "$dir/b" --resume 2> "$dir/c.log" && fail "mismatched resume"
grep -q "other options" "$dir/c.log" || fail "mismatched resume message"

# 3b / 3c. An option a resumed run keeps without being told: run X (20 steps) with option $2 (it reports $3), then
# resume X's middle checkpoint without it: the same report and the final checkpoint bit for bit; asking for the
# other value $4 on it is a mismatch, and the bad value $5 is refused with the message $6.
kept() {
  local x=$1 flag=${2% *} value=${2#* }
  "$LMF" finetune "${common[@]}" "$flag" "$value" --out-dir "$dir/$x" 2> "$dir/$x.log" || { cat "$dir/$x.log"; fail "$x"; }
  grep -q "$3" "$dir/$x.log" || fail "$x: not reported"
  mkdir "$dir/${x}2" && cp "$dir/$x/ckpt-00000010.lmfc" "$dir/${x}2/"
  "$LMF" finetune "${common[@]}" --out-dir "$dir/${x}2" --resume 2> "$dir/${x}2.log" || { cat "$dir/${x}2.log"; fail "$x resume"; }
  grep -q "$3" "$dir/${x}2.log" || fail "$x: the resumed run did not keep $2"
  cmp "$dir/$x/ckpt-00000020.lmfc" "$dir/${x}2/ckpt-00000020.lmfc" || fail "$x: the resumed run differs"
  "$LMF" finetune "${common[@]}" "$flag" "$4" --out-dir "$dir/${x}2" --resume 2> "$dir/${x}3.log" && fail "$x: $4 on it"
  grep -q "other options" "$dir/${x}3.log" || fail "$x: mismatch message"
  "$LMF" finetune "${common[@]}" "$flag" "$5" --out-dir "$dir/x" 2> "$dir/${x}4.log" && fail "$flag $5"
  grep -q "$6" "$dir/${x}4.log" || fail "$flag message"
}
# 3b. bf16 products for the frozen base (forced: auto picks them only where they are faster)
kept h "--precision bf16" "frozen base products in bf16" fp32 half "not auto, bf16 or fp32"
# 3c. the head's loss: fused (over vocabulary slabs, the default) or logits (kept whole) reach the same validation loss
kept l "--loss logits" "loss over kept logits" fused half "not auto, fused or logits"
grep -q "loss over vocabulary slabs" "$dir/a.log" || fail "fused not reported"
# the last validation losses of runs $1 and $2 agree to 1e-3
same_val() {
  local u v
  u=$(tail -1 "$dir/$1/metrics.jsonl" | sed 's/.*"val_loss":\([^}]*\)}/\1/')
  v=$(tail -1 "$dir/$2/metrics.jsonl" | sed 's/.*"val_loss":\([^}]*\)}/\1/')
  awk -v a="$u" -v b="$v" 'BEGIN{d = a - b; exit !(d * d < 1e-6 * b * b)}' || fail "$1 $u vs $2 $v"
}
same_val a l

# 3d. three micro-batches a step, their gradients added in one tree (train/grad_sum.h: LoRA copies a waiting one
# out, --full moves the gradient views) or inline: a resumed run ends bit for bit where the uninterrupted one does;
# a tree run's checkpoint is not resumed inline
for mode in lora full inline; do
  acc=(--grad-accum 3 --batch-size 1); [ $mode = full ] && acc+=(--full); [ $mode = inline ] && acc+=(--grad-sum inline)
  "$LMF" finetune "${common[@]}" "${acc[@]}" --out-dir "$dir/g$mode" 2> "$dir/g$mode.log" || { cat "$dir/g$mode.log"; fail "$mode grad_accum 3"; }
  mkdir "$dir/g${mode}2" && cp "$dir/g$mode/ckpt-00000010.lmfc" "$dir/g${mode}2/"
  "$LMF" finetune "${common[@]}" "${acc[@]}" --out-dir "$dir/g${mode}2" --resume 2> "$dir/g${mode}2.log" \
    || { cat "$dir/g${mode}2.log"; fail "$mode grad_accum 3 resume"; }
  cmp "$dir/g$mode/ckpt-00000020.lmfc" "$dir/g${mode}2/ckpt-00000020.lmfc" || fail "$mode grad_accum 3: resumed run differs"
done
cmp -s "$dir/glora/ckpt-00000020.lmfc" "$dir/ginline/ckpt-00000020.lmfc" && fail "tree and inline gave the same bits"
"$LMF" finetune "${common[@]}" --grad-accum 3 --batch-size 1 --grad-sum inline --out-dir "$dir/glora" --resume \
  2> "$dir/gx.log" && fail "a tree checkpoint resumed inline"
grep -q "other options" "$dir/gx.log" || fail "grad_sum mismatch message"

# 3c. packed rows: fewer rows than examples, and a resumed packed run ends bit for bit where the whole one does
"$LMF" finetune "${common[@]}" --packing --out-dir "$dir/p" 2> "$dir/p.log" || { cat "$dir/p.log"; fail "packing"; }
grep -q "packing [0-9]* examples into [0-9]* rows" "$dir/p.log" || fail "packing not reported"
mkdir "$dir/p2" && cp "$dir/p/ckpt-00000010.lmfc" "$dir/p2/"
"$LMF" finetune "${common[@]}" --packing --out-dir "$dir/p2" --resume 2> "$dir/p2.log" || { cat "$dir/p2.log"; fail "packed resume"; }
cmp "$dir/p/ckpt-00000020.lmfc" "$dir/p2/ckpt-00000020.lmfc" || fail "resumed packed run differs"
"$LMF" finetune "${common[@]}" --out-dir "$dir/p2" --resume 2> "$dir/p3.log" && fail "unpacked resume of a packed run"
grep -q "other options" "$dir/p3.log" || fail "packing mismatch message"

# 3e. grouped by length: a resumed grouped run ends bit for bit where the whole one does; an ungrouped resume of it
# and grouping packed rows are refused
"$LMF" finetune "${common[@]}" --group-by-length --out-dir "$dir/gl" 2> "$dir/gl.log" || { cat "$dir/gl.log"; fail "grouped"; }
mkdir "$dir/gl2" && cp "$dir/gl/ckpt-00000010.lmfc" "$dir/gl2/"
"$LMF" finetune "${common[@]}" --group-by-length --out-dir "$dir/gl2" --resume 2> "$dir/gl2.log" ||
  { cat "$dir/gl2.log"; fail "grouped resume"; }
cmp "$dir/gl/ckpt-00000020.lmfc" "$dir/gl2/ckpt-00000020.lmfc" || fail "resumed grouped run differs"
"$LMF" finetune "${common[@]}" --out-dir "$dir/gl2" --resume 2> "$dir/gl3.log" && fail "ungrouped resume of a grouped run"
grep -q "other options" "$dir/gl3.log" || fail "grouping mismatch message"
"$LMF" finetune "${common[@]}" --group-by-length --packing --out-dir "$dir/gl4" 2> "$dir/gl4.log" && fail "grouped, packed"
grep -q "group-by-length groups padded batches" "$dir/gl4.log" || fail "grouped and packed message"

# 4. full fine-tuning writes a model that runs
"$LMF" finetune -m "$M" --data "$dir/data.jsonl" --batch-size 2 --seq-len 64 --max-steps 3 --full \
  --out-dir "$dir/full" 2> "$dir/full.log" || { cat "$dir/full.log"; fail "full"; }
"$LMF" generate -m "$dir/full/model.gguf" -p "$p" -n 4 --temp 0 > /dev/null 2>&1 || fail "full model does not run"
grep -q "loss over kept logits" "$dir/full.log" || fail "--full: auto did not keep the logits where they fit"
# a trained head over vocabulary slabs: the same validation loss (to rounding) as over its logits
"$LMF" finetune -m "$M" --data "$dir/data.jsonl" --batch-size 2 --seq-len 64 --max-steps 3 --full --loss fused \
  --out-dir "$dir/fullf" 2> "$dir/fullf.log" || { cat "$dir/fullf.log"; fail "full fused"; }
same_val fullf full
# the run's own checkpoint is that model (its base gives the architecture and tokenizer): the same GGUF bytes, and
# a LoRA run's checkpoint is refused naming the way to its model
"$LMF" export "$dir/full" --to gguf -o "$dir/full/again.gguf" > /dev/null 2>&1 || fail "export of the full run"
cmp "$dir/full/model.gguf" "$dir/full/again.gguf" || fail "the full run's checkpoint exports another model"
"$LMF" generate -m "$dir/a" -p "$p" -n 1 2> "$dir/lora_ck.log" && fail "a LoRA run's checkpoint ran as a model"
grep -q "holds the adapters, not a model" "$dir/lora_ck.log" || fail "LoRA checkpoint message"
# 4b. full fine-tuning in bf16 (mixed precision as `train --precision bf16`: every product, fp32 master weights):
# it runs, says so, trains other numbers than fp32, and its resumed run keeps bf16 bit for bit
ffull=(-m "$M" --data "$dir/data.jsonl" --batch-size 2 --seq-len 64 --max-steps 4 --full --checkpoint-every 2)
"$LMF" finetune "${ffull[@]}" --precision bf16 --out-dir "$dir/fb" 2> "$dir/fb.log" || { cat "$dir/fb.log"; fail "full bf16"; }
grep -q "linear products in bf16" "$dir/fb.log" || fail "full bf16 not reported"
"$LMF" finetune "${ffull[@]}" --precision fp32 --out-dir "$dir/ff" 2> /dev/null || fail "full fp32"
cmp -s "$dir/fb/ckpt-00000004.lmfc" "$dir/ff/ckpt-00000004.lmfc" && fail "full bf16 and fp32 runs are the same"
mkdir "$dir/fb2" && cp "$dir/fb/ckpt-00000002.lmfc" "$dir/fb2/"
"$LMF" finetune "${ffull[@]}" --out-dir "$dir/fb2" --resume 2> "$dir/fb2.log" || { cat "$dir/fb2.log"; fail "full bf16 resume"; }
cmp "$dir/fb/ckpt-00000004.lmfc" "$dir/fb2/ckpt-00000004.lmfc" || fail "resumed full bf16 run differs"

# 5. bad input
printf '{"prompt": "a", "completion": "b"}\n{"prompt": oops}\n' > "$dir/bad.jsonl"
"$LMF" finetune -m "$M" --data "$dir/bad.jsonl" --out-dir "$dir/x" 2> "$dir/e1" && fail "bad JSONL accepted"
grep -q "bad.jsonl:2" "$dir/e1" || { cat "$dir/e1"; fail "bad JSONL not named by file:line"; }
"$LMF" finetune -m "$M" --data "$dir/data.jsonl" --lora-targets q_proj --out-dir "$dir/x" 2> "$dir/e2" && fail "q_proj"
grep -q "c_attn" "$dir/e2" || { cat "$dir/e2"; fail "unknown target without the valid names"; }
"$LMF" finetune -m "$M" --data "$dir/data.jsonl" --batch-size 1000000 --out-dir "$dir/x" 2> "$dir/e3" && fail "huge batch"
grep -q "GiB of memory .* but the machine has" "$dir/e3" || { cat "$dir/e3"; fail "huge batch not refused up front"; }
"$LMF" finetune "${common[@]}" --keep-checkpoints 0 --out-dir "$dir/x" 2> "$dir/e4" && fail "--keep-checkpoints 0"
grep -q "keep-checkpoints" "$dir/e4" || { cat "$dir/e4"; fail "--keep-checkpoints 0 message"; }

# 6. only the newest --keep-checkpoints (2 by default) stay
"$LMF" finetune "${common[@]}" --max-steps 12 --checkpoint-every 3 --out-dir "$dir/k" 2> /dev/null || fail "keep run"
[ "$(cd "$dir/k" && ls ckpt-*.lmfc | tr '\n' ' ')" = "ckpt-00000009.lmfc ckpt-00000012.lmfc " ] || fail "kept: $(ls "$dir/k")"
echo "cli_finetune: ok (val loss $before -> $after)"
