#!/usr/bin/env bash
# RoPE scaling through the CLI: a llama trained with llama3 scaling from flags keeps it in train.conf, exports it
# (GGUF rope_freqs.weight read back as the same parameters, HF rope_scaling), and the checkpoint, the GGUF and the HF
# folder continue a prompt with the same greedy tokens; bad combinations are refused by field.
# Usage: cli_rope.sh path/to/lmforge
set -uo pipefail
LMF=$1
dir=$(mktemp -d /tmp/lmf_cli_rope_XXXXXX)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
expect_error() { # expected-substring command...
  local want=$1; shift
  "$@" > "$dir/e.out" 2> "$dir/e.err" && fail "expected failure: $*"
  grep -q -- "$want" "$dir/e.err" || { cat "$dir/e.err"; fail "error for '$*' lacks '$want'"; }
}

if command -v bible >/dev/null; then bible gen1:1-gen5:32 > "$dir/text.txt"; else cat "$(dirname "$0")"/../src/model/*.c > "$dir/text.txt"; fi
"$LMF" tokenizer train --vocab-size 300 --special "<|endoftext|>" -o "$dir/tok.json" "$dir/text.txt" > /dev/null 2>&1 ||
  fail "tokenizer train"
"$LMF" data shard --tokenizer "$dir/tok.json" --out "$dir/data" --val-fraction 0.1 --block 4096 "$dir/text.txt" \
  > /dev/null 2>&1 || fail "data shard"

# sequences of 64 past an original context of 16: the scaled band is in use
run=(--train-data "$dir/data/train.bin" --tokenizer "$dir/tok.json" --arch llama --n-layer 2 --n-embd 64 --n-head 4 --n-kv-head 2 --ffn-dim 128
     --batch-size 2 --seq-len 64 --warmup-steps 1 --eval-every 0 --checkpoint-every 0 --sample-tokens 0
     --rope-scaling 2 --rope-factor 8 --rope-low-freq-factor 1 --rope-high-freq-factor 4 --rope-orig-ctx 16)
"$LMF" train "${run[@]}" --max-steps 30 --out-dir "$dir/r" 2> "$dir/r.txt" || { cat "$dir/r.txt"; fail "train llama3"; }
for kv in "rope_scaling = 2" "rope_factor = 8" "rope_low_freq_factor = 1" "rope_high_freq_factor = 4" "rope_orig_ctx = 16"; do
  grep -q "^$kv\$" "$dir/r/train.conf" || fail "train.conf lacks '$kv'"
done
"$LMF" export "$dir/r" --to gguf -o "$dir/r.gguf" 2> "$dir/e.err" || { cat "$dir/e.err"; fail "export gguf"; }
"$LMF" info "$dir/r.gguf" > "$dir/info.txt" 2>&1 || { cat "$dir/info.txt"; fail "info gguf"; }
grep -q "rope_freqs.weight  *F32  *\[8\]" "$dir/info.txt" || { cat "$dir/info.txt"; fail "GGUF lacks rope_freqs.weight"; }
grep -q "rope.scaling" "$dir/info.txt" && fail "llama.cpp's converter writes no rope.scaling keys for llama3"
# the GGUF back to HF: rope_freqs.weight read back as the same parameters
"$LMF" export "$dir/r.gguf" --to safetensors -o "$dir/hf" 2> "$dir/e.err" || { cat "$dir/e.err"; fail "export hf"; }
"$LMF" info "$dir/hf" > "$dir/info.txt" 2>&1 || { cat "$dir/info.txt"; fail "info hf"; }
grep -q "rope_scaling  *llama3, factor 8, low_freq_factor 1, high_freq_factor 4, original context 16" "$dir/info.txt" ||
  { cat "$dir/info.txt"; fail "the scaling did not come back"; }
grep -qE '"rope_type":[[:space:]]*"llama3"' "$dir/hf/config.json" || fail "HF export lacks rope_type llama3"
grep -qE '"original_max_position_embeddings":[[:space:]]*16' "$dir/hf/config.json" || fail "HF export lacks the original context"
# the checkpoint, its GGUF and the HF folder from that GGUF: the same greedy text and perplexity over windows of 64;
# the HF folder with its rope_scaling removed (plain RoPE) scores otherwise, so the comparison sees the scaling
p="And God said"
a=$("$LMF" generate -m "$dir/r" -p "$p" -n 40 --temp 0 2> "$dir/g.err") || { cat "$dir/g.err"; fail "generate ckpt"; }
b=$("$LMF" generate -m "$dir/r.gguf" -p "$p" -n 40 --temp 0 2> "$dir/g.err") || { cat "$dir/g.err"; fail "generate gguf"; }
c=$("$LMF" generate -m "$dir/hf" -p "$p" -n 40 --temp 0 2> "$dir/g.err") || { cat "$dir/g.err"; fail "generate hf"; }
[ "$a" = "$b" ] && [ "$a" = "$c" ] || fail "greedy text differs: ckpt '$a' gguf '$b' hf '$c'"
cp -r "$dir/hf" "$dir/plain"
python3 -c 'import json,sys; p=sys.argv[1]; c=json.load(open(p)); c["rope_scaling"]=None; json.dump(c, open(p, "w"))' \
  "$dir/plain/config.json" || fail "edit config.json"
ppl() { "$LMF" perplexity -m "$1" -f "$dir/text.txt" -c 64 --chunks 4 2> /dev/null | grep -o 'perplexity: [0-9.]*'; }
pa=$(ppl "$dir/r") pb=$(ppl "$dir/r.gguf") pc=$(ppl "$dir/hf") pd=$(ppl "$dir/plain")
[ -n "$pa" ] && [ "$pa" = "$pb" ] && [ "$pa" = "$pc" ] || fail "perplexity differs: ckpt $pa gguf $pb hf $pc"
[ -n "$pd" ] && [ "$pd" != "$pa" ] || fail "plain RoPE scores as the scaled model ($pd): the check cannot see the scaling"

# resuming with another RoPE (context extension) is allowed but said; resuming unchanged says nothing
"$LMF" train "${run[@]}" --max-steps 2 --checkpoint-every 1 --out-dir "$dir/res" 2> /dev/null || fail "train for resume"
"$LMF" train --resume "$dir/res" --max-steps 3 2> "$dir/res.txt" || { cat "$dir/res.txt"; fail "resume"; }
grep -q "note:" "$dir/res.txt" && { cat "$dir/res.txt"; fail "an unchanged resume reported a change"; }
"$LMF" train --resume "$dir/res" --max-steps 4 --rope-factor 16 --rope-theta 20000 2> "$dir/res.txt" ||
  { cat "$dir/res.txt"; fail "resume with another RoPE"; }
for f in "rope_factor = 8, this run 16" "rope_theta = 10000, this run 20000"; do
  grep -q "$f" "$dir/res.txt" || { cat "$dir/res.txt"; fail "resume did not report '$f'"; }
done

expect_error "low < high" "$LMF" train "${run[@]}" --rope-high-freq-factor 1 --max-steps 1 --out-dir "$dir/x"
expect_error "need rope_scaling" "$LMF" train "${run[@]}" --rope-scaling 0 --max-steps 1 --out-dir "$dir/x"
expect_error "rope_scaling: 5" "$LMF" train "${run[@]}" --rope-scaling 5 --max-steps 1 --out-dir "$dir/x"
echo "cli_rope: OK"
