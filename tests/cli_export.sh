#!/usr/bin/env bash
# End to end through the CLI: train a small llama, gpt2, phi3 (q|k|v, gate|up fused on export), gemma3 and gemma2
# (local layers' windows of 16 over rows of 64; gemma2's soft-caps) with a BPE tokenizer, export each checkpoint to
# GGUF and to a Hugging Face folder, then generate greedily from the GGUFs — the checkpoint's GGUF and the GGUF
# re-exported from the HF folder must continue a prompt identically — and refuse bad exports with clear messages.
# Usage: cli_export.sh path/to/lmforge [workdir to keep]
set -uo pipefail
LMF=$1
if [ $# -ge 2 ]; then dir=$2; mkdir -p "$dir"; else dir=$(mktemp -d /tmp/lmf_export_XXXXXX); trap 'rm -rf "$dir"' EXIT; fi
fail() { echo "FAIL: $*"; exit 1; }

if command -v bible >/dev/null; then bible gen1:1-gen50:26 > "$dir/text.txt"; else cat "$(dirname "$0")"/../src/*/*.c > "$dir/text.txt"; fi
"$LMF" tokenizer train --vocab-size 512 --special "<|endoftext|>" -o "$dir/tok.json" "$dir/text.txt" 2> "$dir/err.txt" \
  || { cat "$dir/err.txt"; fail "tokenizer train"; }
"$LMF" data shard --tokenizer "$dir/tok.json" --out "$dir/data" --val-fraction 0.1 "$dir/text.txt" 2> "$dir/err.txt" \
  || { cat "$dir/err.txt"; fail "data shard"; }

for arch in llama gpt2 phi3 gemma3 gemma2; do
  kv=2; [ $arch = gpt2 ] && kv=4
  extra=()
  [ $arch = gemma3 ] && extra=(--sliding-window 16 --swa-pattern 2 --rope-theta-swa 10000)
  [ $arch = gemma2 ] && extra=(--attn-softcap 50 --final-softcap 30 --sliding-window 16 --swa-pattern 2)
  "$LMF" train --arch $arch --train-data "$dir/data/train.bin" --val-data "$dir/data/val.bin" --tokenizer "$dir/tok.json" \
    --n-layer 2 --n-embd 64 --n-head 4 --n-kv-head $kv --ffn-dim 128 --batch-size 4 --seq-len 64 --max-steps 30 "${extra[@]}" \
    --warmup-steps 2 --eval-every 0 --checkpoint-every 0 --sample-tokens 0 --out-dir "$dir/run_$arch" > /dev/null 2> "$dir/err.txt" \
    || { cat "$dir/err.txt"; fail "train $arch"; }
  "$LMF" export "$dir/run_$arch" --to gguf -o "$dir/$arch.gguf" 2> "$dir/err.txt" || { cat "$dir/err.txt"; fail "export gguf $arch"; }
  grep -q "with tokenizer" "$dir/err.txt" || fail "$arch: the tokenizer did not come along"
  "$LMF" export "$dir/run_$arch" --to safetensors -o "$dir/hf_$arch" 2> "$dir/err.txt" || { cat "$dir/err.txt"; fail "export hf $arch"; }
  for f in config.json model.safetensors tokenizer.json tokenizer_config.json; do
    [ -s "$dir/hf_$arch/$f" ] || fail "$arch: $f missing from the HF folder"
  done
  "$LMF" export "$dir/hf_$arch" --to gguf -o "$dir/${arch}_via_hf.gguf" 2> "$dir/err.txt" || { cat "$dir/err.txt"; fail "hf -> gguf $arch"; }
  "$LMF" export "$dir/run_$arch" --to gguf --type f16 -o "$dir/${arch}_f16.gguf" 2> "$dir/err.txt" || { cat "$dir/err.txt"; fail "f16 $arch"; }
  "$LMF" generate -m "$dir/$arch.gguf" -p "And God said" -n 24 --temp 0 > "$dir/a.txt" 2> "$dir/err.txt" || { cat "$dir/err.txt"; fail "generate $arch"; }
  "$LMF" generate -m "$dir/${arch}_via_hf.gguf" -p "And God said" -n 24 --temp 0 > "$dir/b.txt" 2> "$dir/err.txt" || { cat "$dir/err.txt"; fail "generate via hf $arch"; }
  [ -s "$dir/a.txt" ] || fail "$arch: no text generated"
  cmp -s "$dir/a.txt" "$dir/b.txt" || { cat "$dir/a.txt" "$dir/b.txt"; fail "$arch: checkpoint->gguf and checkpoint->hf->gguf generate differently"; }
  echo "$arch: $(head -c 120 "$dir/a.txt" | tr '\n' ' ')"
done

expect_error() { # expect_error WANT CMD...: CMD fails and its stderr contains WANT
  local want=$1; shift
  "$@" > /dev/null 2> "$dir/e.err" && fail "'$*' succeeded"
  grep -q -- "$want" "$dir/e.err" || { cat "$dir/e.err"; fail "error for '$*' lacks '$want'"; }
}
expect_error "expected gguf or safetensors" "$LMF" export "$dir/run_llama" --to onnx -o "$dir/x"
expect_error "expected f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, q2_k_s, q3_k_s, q3_k_m, q3_k_l, q4_k_s, q4_k_m, q5_k_s, q5_k_m, q6_k, iq4_nl or iq4_xs" "$LMF" export "$dir/run_llama" --to gguf --type q3 -o "$dir/x"
expect_error "no such file" "$LMF" export "$dir/nothing" --to gguf -o "$dir/x"
expect_error "need MODEL, --to FORMAT and -o OUT" "$LMF" export "$dir/run_llama" --to gguf
head -c 1000 "$dir/hf_llama/model.safetensors" > "$dir/trunc.safetensors"
mkdir -p "$dir/bad_hf" && cp "$dir/hf_llama/config.json" "$dir/bad_hf/" && cp "$dir/trunc.safetensors" "$dir/bad_hf/model.safetensors"
expect_error "bad_hf/model.safetensors" "$LMF" export "$dir/bad_hf" --to gguf -o "$dir/x.gguf"
[ -e "$dir/x.gguf" ] && fail "a failed export left a file"
echo "cli_export: OK"
