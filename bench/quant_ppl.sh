#!/usr/bin/env bash
# Quantization: size and perplexity of every `lmforge quantize` type. Makes each type from one source model with
# `lmforge quantize SRC OUT --type T` (into a temporary folder, removed at the end), scores every file with
# `lmforge perplexity` (llama.cpp's method: windows of CTX tokens, the second half of each scored) over the whole
# held-out text, and prints a markdown table: file size and its change against the F32 file, bits per weight of
# the matrices (2-D tensors, token embedding included), perplexity +/- its standard error, and the change against
# F32. The F32 baseline is SRC written as f32 and is scored once; ORIG, the file SRC came from, gets its own row.
#
# usage: bench/quant_ppl.sh [TYPES...]   (default: f32 bf16 f16 q8_0 q5_1 q5_0 q4_1 q4_0; f32 is always done)
# env:   LMF=build/lmforge  MODELS_DIR=build/models  THREADS=1  CTX=512  CHUNKS= (empty: every window)
#        ORIG=$MODELS_DIR/SmolLM2-135M-Instruct.Q4_1.gguf (the real release; its own row; fetched if missing)
#        SRC=$MODELS_DIR/SmolLM2-135M-Instruct.F32.gguf (made from ORIG by `lmforge quantize --type f32` if missing)
#        TEXT=build/kjv_heldout.txt: the last 5% of the King James Bible (Debian bible-kjv), made if missing as
#        `bible gen1:1-rev22:21` cut at the first line start after 95% of its bytes (55,116 SmolLM2 tokens,
#        107 windows of 512)
#
# One thread takes ~3 minutes per model on SmolLM2-135M (107 windows), ~30 minutes for the 9 rows.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac
LMF=${LMF:-build/lmforge}
MODELS_DIR=${MODELS_DIR:-build/models}
ORIG=${ORIG:-$MODELS_DIR/SmolLM2-135M-Instruct.Q4_1.gguf}
SRC=${SRC:-$MODELS_DIR/SmolLM2-135M-Instruct.F32.gguf}
TEXT=${TEXT:-build/kjv_heldout.txt}
THREADS=${THREADS:-1}
CTX=${CTX:-512}
CHUNKS=${CHUNKS:-}
TYPES=("$@")
[ ${#TYPES[@]} -gt 0 ] || TYPES=(f32 bf16 f16 q8_0 q5_1 q5_0 q4_1 q4_0)

[ -x "$LMF" ] || { echo "quant_ppl: no lmforge binary at $LMF (build it, or set LMF)" >&2; exit 2; }
if [ ! -f "$ORIG" ] && [ "$ORIG" = "$MODELS_DIR/SmolLM2-135M-Instruct.Q4_1.gguf" ]; then
  scripts/fetch-smollm2.sh "$MODELS_DIR" > /dev/null
fi
if [ ! -f "$SRC" ]; then
  [ -f "$ORIG" ] || { echo "quant_ppl: neither SRC ($SRC) nor ORIG ($ORIG) exists" >&2; exit 2; }
  "$LMF" quantize "$ORIG" "$SRC" --type f32 -t "$THREADS" > /dev/null
fi
if [ ! -f "$TEXT" ]; then
  command -v bible > /dev/null || { echo "quant_ppl: no $TEXT and no \`bible\` to make it (apt-get install bible-kjv)" >&2; exit 2; }
  mkdir -p "$(dirname "$TEXT")"
  bible gen1:1-rev22:21 > "$TEXT.all"
  size=$(stat -c %s "$TEXT.all")
  tail -c +$((size * 95 / 100 + 1)) "$TEXT.all" | tail -n +2 > "$TEXT"
  rm -f "$TEXT.all"
fi

tmp=$(mktemp -d /tmp/lmf_quant_ppl_XXXXXX)
trap 'rm -rf "$tmp"' EXIT

# bits per weight over the 2-D tensors, from `lmforge info`'s tensor list (type and shape) and ggml's block sizes
bpw() {
  "$LMF" info "$1" | awk '
    BEGIN { b["F32"] = 32; b["F16"] = 16; b["BF16"] = 16; b["Q8_0"] = 8.5; b["Q5_1"] = 6; b["Q5_0"] = 5.5;
            b["Q4_1"] = 5; b["Q4_0"] = 4.5; b["Q2_K"] = 2.625; b["Q3_K"] = 3.4375; b["Q4_K"] = 4.5;
            b["Q5_K"] = 5.5; b["Q6_K"] = 6.5625 }
    $2 in b && $3 ~ /^\[[0-9]+,$/ && $4 ~ /^[0-9]+\]$/ {
      n = substr($3, 2) * substr($4, 1, length($4) - 1); e += n; bits += n * b[$2] }
    END { if (e) printf "%.2f", bits / e; else printf "-" }'
}
# "PPL SE WINDOWS" from `lmforge perplexity`
ppl() {
  local args=(-m "$1" -f "$TEXT" -c "$CTX" -t "$THREADS")
  [ -z "$CHUNKS" ] || args+=(--chunks "$CHUNKS")
  "$LMF" perplexity "${args[@]}" 2> /dev/null |
    sed -n 's/^perplexity: \([0-9.]*\) +\/- \([0-9.]*\) over [0-9]* scored tokens (\([0-9]*\) windows.*/\1 \2 \3/p'
}

declare -A FILE PPL SE
FILE[f32]="$tmp/f32.gguf"
"$LMF" quantize "$SRC" "${FILE[f32]}" --type f32 -t "$THREADS" > /dev/null
for t in "${TYPES[@]}"; do
  [ "$t" = f32 ] && continue
  FILE[$t]="$tmp/$t.gguf"
  "$LMF" quantize "$SRC" "${FILE[$t]}" --type "$t" -t "$THREADS" > /dev/null
done
rows=(f32)
for t in "${TYPES[@]}"; do [ "$t" = f32 ] || rows+=("$t"); done
if [ -f "$ORIG" ]; then FILE[orig]="$ORIG"; rows+=(orig); fi

windows=
for t in "${rows[@]}"; do
  echo "quant_ppl: scoring $t ($(date +%T))" >&2
  read -r PPL[$t] SE[$t] windows < <(ppl "${FILE[$t]}")
  [ -n "${PPL[$t]}" ] || { echo "quant_ppl: lmforge perplexity failed on ${FILE[$t]}" >&2; exit 1; }
done

f32size=$(stat -c %s "${FILE[f32]}")
echo "SmolLM2-135M-Instruct from $(basename "$SRC"); perplexity over $(basename "$TEXT"), $windows windows of $CTX" \
     "tokens, second half scored; $THREADS thread(s)"
echo
echo "| type | file MiB | size vs F32 | bits/weight (matrices) | perplexity | change vs F32 |"
echo "|---|---|---|---|---|---|"
for t in "${rows[@]}"; do
  f=${FILE[$t]}
  s=$(stat -c %s "$f")
  name=${t^^}
  [ "$t" = orig ] && name="$(basename "$ORIG" .gguf | sed 's/.*\.//') (original file)"
  awk -v n="$name" -v s="$s" -v f="$f32size" -v bpw="$(bpw "$f")" -v p="${PPL[$t]}" -v se="${SE[$t]}" \
      -v p0="${PPL[f32]}" 'BEGIN {
    printf "| %s | %.2f | %+.1f%% | %s | %.4f ± %.4f | %+.2f%% |\n", n, s / 1048576, (s / f - 1) * 100, bpw, p, se,
           (p / p0 - 1) * 100 }'
done
