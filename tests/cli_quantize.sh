#!/usr/bin/env bash
# `lmforge quantize` against llama.cpp's llama-quantize (fixtures from tests/reference/llama_quantize_fixtures.sh):
#   1. small models with 256-multiple widths (llama untied and tied, gpt2, two MoE with 8 experts): every tensor of
#      every file type (Q4_0 ... Q8_0, the K mixes Q4_K_S ... Q6_K) gets llama-quantize's type;
#   2. the real SmolLM2 (skipped when not fetched): every tensor of each file type has llama-quantize's type and bytes
#      (a digest of the tensors' xxh64), so the K-quant, legacy and fallback quantizers and the mix all agree;
#   3. a K-quant SmolLM2 answers as the original; a bad --type names the accepted ones.
# Usage: cli_quantize.sh path/to/lmforge
set -uo pipefail
LMF=$1
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
FIX="$ROOT/tests/reference/fixtures"
dir=$(mktemp -d /tmp/lmf_cli_quantize_XXXXXX)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
. "$ROOT/tests/reference/llama_quantize_models.sh"

# 1. the type of every tensor
lq_data "$LMF" "$ROOT" "$dir" || fail "data shard"
n=0
for m in $LQ_MODELS; do
  lq_train "$LMF" "$dir/data" "$dir/$m" "$m" || fail "train $m"
  for t in $LQ_TYPES; do
    "$LMF" quantize "$dir/$m" "$dir/q.gguf" --type "$t" > "$dir/out.txt" 2>&1 || { cat "$dir/out.txt"; fail "quantize $m $t"; }
    lq_types "$LMF" "$dir/q.gguf" | sort > "$dir/got.txt"
    awk -v m=$m -v t=$t '$1 == m && $2 == t { print $3, $4 }' "$FIX/llama_quantize_types.txt" | sort > "$dir/want.txt"
    [ -s "$dir/want.txt" ] || fail "no fixture lines for $m $t"
    diff "$dir/want.txt" "$dir/got.txt" > "$dir/diff.txt" || { head -20 "$dir/diff.txt"; fail "$m $t: tensor types differ from llama-quantize's (< llama-quantize, > lmforge)"; }
    n=$((n + $(wc -l < "$dir/got.txt")))
  done
done
"$LMF" info "$dir/llama16" --hash > /dev/null 2> "$dir/err.txt"; [ $? = 2 ] && grep -q "not a GGUF file" "$dir/err.txt" \
  || { cat "$dir/err.txt"; fail "info --hash on a checkpoint"; }
echo "types: $n tensors of $(echo $LQ_MODELS | wc -w) models x $(echo $LQ_TYPES | wc -w) file types as llama-quantize"

# 2. the real model, byte for byte
SMOL="${LMF_SMOLLM2_GGUF:-$ROOT/build/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
if [ ! -f "$SMOL" ]; then echo "SmolLM2 not fetched (scripts/fetch-smollm2.sh): byte-for-byte check skipped"; exit 0; fi
for t in $LQ_TYPES; do
  want=$(awk -v t=$t '$1 == t { print $2 }' "$FIX/llama_quantize_smollm2.txt")
  "$LMF" quantize "$SMOL" "$dir/smol.gguf" --type "$t" > "$dir/out.txt" 2>&1 || { cat "$dir/out.txt"; fail "quantize SmolLM2 $t"; }
  grep -q "matrices in $t" "$dir/out.txt" || { cat "$dir/out.txt"; fail "quantize report for $t"; }
  got=$(lq_digest "$LMF" "$dir/smol.gguf")
  [ "$got" = "$want" ] || fail "SmolLM2 $t: tensors' digest $got, llama-quantize's $want (compare lmforge info --hash)"
  echo "SmolLM2 $t: every tensor's type and bytes as llama-quantize's"
done

# 3. the K-quant model runs; a bad type is refused
"$LMF" quantize "$SMOL" "$dir/k.gguf" --type q4_k_m > /dev/null 2>&1 || fail "quantize q4_k_m"
"$LMF" generate -m "$dir/k.gguf" -p "The capital of France is" -n 3 --temp 0 > "$dir/g.txt" 2>/dev/null || fail "generate Q4_K_M"
grep -q "^The capital of France is Paris" "$dir/g.txt" || { cat "$dir/g.txt"; fail "Q4_K_M answer"; }
"$LMF" quantize "$SMOL" "$dir/x.gguf" --type q3_k_m 2> "$dir/err.txt"; [ $? = 2 ] && grep -q "q4_k_m" "$dir/err.txt" \
  || { cat "$dir/err.txt"; fail "bad --type"; }
[ ! -e "$dir/x.gguf" ] || fail "a refused --type left a file"
echo "ok"
