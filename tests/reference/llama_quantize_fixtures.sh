#!/usr/bin/env bash
# What llama.cpp's llama-quantize writes, for tests/cli_quantize.sh to hold `lmforge quantize` to.
#
#   LLAMA_CPP_DIR=/path/to/llama.cpp/build/bin tests/reference/llama_quantize_fixtures.sh build/lmforge [SMOLLM2.Q4_1.gguf]
#
# Writes into tests/reference/fixtures/:
#   llama_quantize_types.txt   "MODEL TYPE tensor ggml_type" for every tensor llama-quantize writes, for the small
#                              models of llama_quantize_models.sh (widths that are multiples of 256, so the K-quant
#                              mixes' per-layer choices show, unlike SmolLM2's 576 that sends most matrices to the
#                              fallback types). Their F32 GGUFs are lmforge exports of one-step training runs: the same
#                              tensor names, order and shapes the test quantizes.
#   llama_quantize_smollm2_options.txt "ID digest" of llama-quantize with the options of each LQ_OPTION_CASES entry
#                              (--pure, --output-tensor-type, --tensor-type, --include-weights, ...) on SmolLM2;
#   llama_quantize_smollm2.txt "TYPE digest" of llama-quantize's output for the real SmolLM2 (its Q4_1 file
#                              dequantized to F32 by lmforge: exact), per file type: lq_digest, the sha256 of every
#                              tensor's name, type and xxh64 (llama-quantize writes its tensors in another order).
# Needs: a built lmforge, llama-quantize (any llama.cpp build; the quantizers live in ggml-base, compiled without
# -march flags, so every build writes the same bytes), sha256sum.
set -euo pipefail
LMF=$(realpath "$1")
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
SMOL="${2:-$ROOT/build/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
Q="${LLAMA_CPP_DIR:?set LLAMA_CPP_DIR to the bin folder of a llama.cpp build}/llama-quantize"
OUT="$ROOT/tests/reference/fixtures"
dir=$(mktemp -d /tmp/lmf_lq_fix_XXXXXX)
trap 'rm -rf "$dir"' EXIT
. "$ROOT/tests/reference/llama_quantize_models.sh"

# 1. tensor types of small models
lq_data "$LMF" "$ROOT" "$dir"
: > "$OUT/llama_quantize_types.txt"
for m in $LQ_MODELS; do
  lq_train "$LMF" "$dir/data" "$dir/$m" "$m"
  "$LMF" export "$dir/$m" --to gguf --type f32 -o "$dir/$m.gguf" > /dev/null 2>&1
  for t in $LQ_TYPES; do
    "$Q" "$dir/$m.gguf" "$dir/$m.$t.gguf" "$t" 2 > /dev/null 2>&1
    lq_types "$LMF" "$dir/$m.$t.gguf" | sed "s/^/$m $t /" >> "$OUT/llama_quantize_types.txt"
    rm -f "$dir/$m.$t.gguf"
  done
done

# 2. the real SmolLM2, byte for byte
"$LMF" quantize "$SMOL" "$dir/smol.f32.gguf" --type f32 > /dev/null
: > "$OUT/llama_quantize_smollm2.txt"
for t in $LQ_TYPES; do
  "$Q" "$dir/smol.f32.gguf" "$dir/smol.$t.gguf" "$t" 2 > /dev/null 2>&1
  echo "$t $(lq_digest "$LMF" "$dir/smol.$t.gguf")" >> "$OUT/llama_quantize_smollm2.txt"
  rm -f "$dir/smol.$t.gguf"
done
# 3. llama-quantize's options on SmolLM2 (LQ_OPTION_CASES)
: > "$OUT/llama_quantize_smollm2_options.txt"
set -f
for c in "${LQ_OPTION_CASES[@]}"; do
  IFS=';' read -r id t _ <<< "$c"
  # shellcheck disable=SC2046
  "$Q" $(lq_case_flags "$c" "$OUT/smollm2_imatrix.gguf") "$dir/smol.f32.gguf" "$dir/smol.o.gguf" "$t" 2 > /dev/null 2>&1
  echo "$id $(lq_digest "$LMF" "$dir/smol.o.gguf")" >> "$OUT/llama_quantize_smollm2_options.txt"
done
set +f
wc -l "$OUT/llama_quantize_types.txt" "$OUT/llama_quantize_smollm2.txt" "$OUT/llama_quantize_smollm2_options.txt"
