#!/usr/bin/env bash
# `lmforge quantize` against llama.cpp's llama-quantize (fixtures from tests/reference/llama_quantize_fixtures.sh):
#   1. small models with 256-multiple widths (llama untied and tied, gpt2, two MoE with 8 experts): every tensor of
#      every file type (Q4_0 ... Q8_0, the K mixes Q4_K_S ... Q6_K) gets llama-quantize's type;
#   2. the real SmolLM2 (skipped when not fetched): every tensor of each file type has llama-quantize's type and bytes
#      (a digest of the tensors' xxh64), so the K-quant, legacy and fallback quantizers and the mix all agree;
#      and under an importance matrix (--imatrix, GGUF and legacy .dat) as llama-quantize --imatrix's; a matrix of
#      another model is refused; with llama-quantize's options (--pure, --output-tensor-type, --tensor-type, ...) its
#      bytes too;
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

# 2b. under an importance matrix (llama-imatrix's on SmolLM2, reduced to layers 0, 14, 29: the others quantize
# unweighted, as llama-quantize does for entries it lacks; imatrix_fixtures.sh): llama-quantize --imatrix's bytes.
# Q4_0 takes ffn_down of the first eighth of the layers to Q4_1 (llama's guard), so every weighted quantizer runs.
for t in Q4_0 Q5_1 Q4_K_M Q5_K_S Q6_K; do
  want=$(awk -v t=$t '$1 == t { print $2 }' "$FIX/llama_quantize_smollm2_imatrix.txt")
  "$LMF" quantize "$SMOL" "$dir/smol.gguf" --type "$t" --imatrix "$FIX/smollm2_imatrix.gguf" > "$dir/out.txt" 2>&1 \
    || { cat "$dir/out.txt"; fail "quantize SmolLM2 $t --imatrix"; }
  got=$(lq_digest "$LMF" "$dir/smol.gguf")
  [ "$got" = "$want" ] || fail "SmolLM2 $t --imatrix: tensors' digest $got, llama-quantize's $want"
  echo "SmolLM2 $t under an importance matrix: every tensor's type and bytes as llama-quantize --imatrix's"
done
"$LMF" info "$dir/smol.gguf" > "$dir/info.txt"
grep -q 'quantize.imatrix.entries_count *u32 *21$' "$dir/info.txt" || fail "quantize.imatrix.* keys"
want=$(awk '$1 == "Q4_K_M.dat" { print $2 }' "$FIX/llama_quantize_smollm2_imatrix.txt")
"$LMF" quantize "$SMOL" "$dir/smol.gguf" --type q4_k_m --imatrix "$FIX/smollm2_imatrix.dat" > /dev/null 2>&1 \
  || fail "quantize --imatrix with a legacy .dat"
[ "$(lq_digest "$LMF" "$dir/smol.gguf")" = "$want" ] || fail "SmolLM2 Q4_K_M with the legacy .dat: not llama-quantize's bytes"
echo "SmolLM2 Q4_K_M under the legacy .dat: llama-quantize's bytes"
# a matrix of another model (a legacy .dat whose blk.0.attn_q.weight has 4 columns): refused, nothing is written
printf '\x01\x00\x00\x00\x13\x00\x00\x00blk.0.attn_q.weight\x01\x00\x00\x00\x04\x00\x00\x00' > "$dir/tiny.dat"
for i in 1 2 3 4; do printf '\x00\x00\x80\x3f' >> "$dir/tiny.dat"; done
"$LMF" quantize "$SMOL" "$dir/y.gguf" --type q4_0 --imatrix "$dir/tiny.dat" 2> "$dir/err.txt"
[ $? = 2 ] && grep -q "entry blk.0.attn_q.weight holds" "$dir/err.txt" || { cat "$dir/err.txt"; fail "foreign imatrix"; }
[ ! -e "$dir/y.gguf" ] || fail "a refused imatrix left a file"

# 2c. llama-quantize's options (LQ_OPTION_CASES: --pure, --output-tensor-type, --token-embedding-type, --tensor-type,
# --include-weights / --exclude-weights): llama-quantize's bytes under each
set -f
for c in "${LQ_OPTION_CASES[@]}"; do
  IFS=';' read -r id t _ <<< "$c"
  want=$(awk -v id="$id" '$1 == id { print $2 }' "$FIX/llama_quantize_smollm2_options.txt")
  # shellcheck disable=SC2046
  "$LMF" quantize "$SMOL" "$dir/smol.gguf" --type "$t" $(lq_case_flags "$c" "$FIX/smollm2_imatrix.gguf") \
    > "$dir/out.txt" 2>&1 || { cat "$dir/out.txt"; fail "quantize SmolLM2 ($c)"; }
  [ "$(lq_digest "$LMF" "$dir/smol.gguf")" = "$want" ] || fail "SmolLM2 $c: not llama-quantize's bytes"
  echo "SmolLM2 $t ${c##*;}: llama-quantize's bytes"
done
set +f
# --leave-output-tensor keeps an untied head as it is (F32 here); a type that does not fit a row is refused
"$LMF" quantize "$dir/llama16" "$dir/q.gguf" --type q4_k_m --leave-output-tensor > /dev/null 2>&1 || fail "--leave-output-tensor"
lq_types "$LMF" "$dir/q.gguf" > "$dir/types.txt"
grep -q "^output.weight F32$" "$dir/types.txt" && grep -q "^blk.0.attn_q.weight Q4_K$" "$dir/types.txt" \
  || { cat "$dir/types.txt"; fail "--leave-output-tensor types"; }
"$LMF" quantize "$SMOL" "$dir/z.gguf" --type q5_k_m --token-embedding-type q4_k 2> "$dir/err.txt"
[ $? = 2 ] && grep -q "token_embd.weight has rows of 576" "$dir/err.txt" || { cat "$dir/err.txt"; fail "unfit type"; }
[ ! -e "$dir/z.gguf" ] || fail "a refused type left a file"
"$LMF" quantize "$SMOL" "$dir/z.gguf" --type q2_k_s 2> "$dir/err.txt"  # llama-quantize's too needs an imatrix there
[ $? = 2 ] && grep -q "needs an importance matrix" "$dir/err.txt" || { cat "$dir/err.txt"; fail "Q2_K_S without imatrix"; }
[ ! -e "$dir/z.gguf" ] || fail "a refused Q2_K_S left a file"
"$LMF" quantize "$SMOL" "$dir/z.gguf" --type q4_0 --tensor-type 'attn_v=iq2_xxs' 2> "$dir/err.txt"
[ $? = 2 ] && grep -q "not a type quantize writes" "$dir/err.txt" || { cat "$dir/err.txt"; fail "bad --tensor-type"; }

# 3. the K-quant model runs; a bad type is refused
"$LMF" quantize "$SMOL" "$dir/k.gguf" --type q4_k_m > /dev/null 2>&1 || fail "quantize q4_k_m"
"$LMF" generate -m "$dir/k.gguf" -p "The capital of France is" -n 3 --temp 0 > "$dir/g.txt" 2>/dev/null || fail "generate Q4_K_M"
grep -q "^The capital of France is Paris" "$dir/g.txt" || { cat "$dir/g.txt"; fail "Q4_K_M answer"; }
"$LMF" quantize "$SMOL" "$dir/x.gguf" --type iq2_xxs 2> "$dir/err.txt"; [ $? = 2 ] && grep -q "q4_k_m" "$dir/err.txt" \
  || { cat "$dir/err.txt"; fail "bad --type"; }
[ ! -e "$dir/x.gguf" ] || fail "a refused --type left a file"
echo "ok"
