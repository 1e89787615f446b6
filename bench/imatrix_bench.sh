#!/usr/bin/env bash
# Importance matrices: `lmforge imatrix` against llama-imatrix, `lmforge quantize --imatrix` against
# `llama-quantize --imatrix`, and what the matrix buys in perplexity.
#
# usage: LLAMA_CPP_DIR=/path/to/llama.cpp/build/bin bench/imatrix_bench.sh [TYPES...]   (default: q4_0 q4_k_m q5_k_m)
# env:   LMF=build/lmforge  THREADS=2  CTX=512  CALIB_CHUNKS=40  PPL_CHUNKS=40 (0: no perplexity table)
#        ROUNDS=3 (quantization timings: the tools alternated, the median of each)
#        SRC=build/models/SmolLM2-135M-Instruct.F32.gguf (made from the Q4_1 release by `lmforge quantize` if missing)
#        CALIB: the calibration text, fortunes (Debian `fortunes`: computers science literature wisdom people politics
#        work education, the % lines dropped), out of the evaluation's domain
#        TEXT=build/kjv_heldout.txt: the held-out text (bench/quant_ppl.sh makes it)
# Prints three markdown tables: the matrix's time (same text, windows and threads; both print the perplexity of the
# windows, which must agree), each type's quantization time with the matrix, and the held-out perplexity of each
# type without and with it (the matrix from lmforge imatrix; llama-quantize with it writes the same bytes).
set -euo pipefail
cd "$(dirname "$0")/.."
LMF=${LMF:-build/lmforge}
BIN=${LLAMA_CPP_DIR:?set LLAMA_CPP_DIR to the bin folder of a llama.cpp build}
THREADS=${THREADS:-2}
CTX=${CTX:-512}
CALIB_CHUNKS=${CALIB_CHUNKS:-40}
PPL_CHUNKS=${PPL_CHUNKS:-40}
ROUNDS=${ROUNDS:-3}
SRC=${SRC:-build/models/SmolLM2-135M-Instruct.F32.gguf}
TEXT=${TEXT:-build/kjv_heldout.txt}
TYPES=("$@")
[ ${#TYPES[@]} -gt 0 ] || TYPES=(q4_0 q4_k_m q5_k_m)
[ -f "$TEXT" ] || { echo "imatrix_bench: no $TEXT (bench/quant_ppl.sh makes it)" >&2; exit 2; }
[ -f "$SRC" ] || "$LMF" quantize build/models/SmolLM2-135M-Instruct.Q4_1.gguf "$SRC" --type f32 > /dev/null
tmp=$(mktemp -d /tmp/lmf_imatrix_bench_XXXXXX)
trap 'rm -rf "$tmp"' EXIT
CALIB=${CALIB:-$tmp/calib.txt}
[ -f "$CALIB" ] || for f in computers science literature wisdom people politics work education; do
  grep -v '^%$' "/usr/share/games/fortunes/$f"; done > "$CALIB"
now() { date +%s.%N; }
cpu=$(lscpu | awk -F: '/Model name/ { gsub(/^ +/, "", $2); n = $2 } /CPU family/ { f = $2 + 0 } /^Model:/ { m = $2 + 0 }
  END { printf "%s, family %d model %d", n, f, m }')
echo "CPU: $cpu; $THREADS threads; $(basename "$SRC"); calibration $CALIB_CHUNKS windows of $CTX"
echo
echo "| tool | seconds | tokens/s | perplexity of the windows | ratio |"
echo "|---|---|---|---|---|"
t0=$(now); "$BIN/llama-imatrix" -m "$SRC" -f "$CALIB" -o "$tmp/llama.imatrix.gguf" -c "$CTX" -b "$CTX" -ub "$CTX" \
  --chunks "$CALIB_CHUNKS" -t "$THREADS" > "$tmp/li.log" 2>&1; t1=$(now)
"$LMF" imatrix -m "$SRC" -f "$CALIB" -o "$tmp/lmf.imatrix.gguf" -c "$CTX" --chunks "$CALIB_CHUNKS" -t "$THREADS" \
  2> /dev/null > "$tmp/lm.log"; t2=$(now)
lp=$(grep -o 'Final estimate: PPL = [0-9.]*' "$tmp/li.log" | awk '{print $NF}')
mp=$(grep -o 'perplexity [0-9.]*' "$tmp/lm.log" | awk '{print $2}')
tok=$((CALIB_CHUNKS * CTX))
awk -v a="$t0" -v b="$t1" -v c="$t2" -v n="$tok" -v lp="$lp" -v mp="$mp" 'BEGIN {
  printf "| llama-imatrix | %.1f | %.0f | %s | 1.00x |\n", b - a, n / (b - a), lp
  printf "| lmforge imatrix | %.1f | %.0f | %s | %.2fx |\n", c - b, n / (c - b), mp, (b - a) / (c - b) }'
echo
echo "| type | llama-quantize --imatrix s | lmforge quantize --imatrix s | speed-up (median of $ROUNDS) | same bytes |"
echo "|---|---|---|---|---|"
. tests/reference/llama_quantize_models.sh
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
for t in "${TYPES[@]}"; do
  T=$(echo "$t" | tr a-z A-Z)
  : > "$tmp/a"; : > "$tmp/b"
  for r in $(seq "$ROUNDS"); do
    t0=$(now); "$BIN/llama-quantize" --imatrix "$tmp/lmf.imatrix.gguf" "$SRC" "$tmp/l.gguf" "$T" "$THREADS" > /dev/null 2>&1
    t1=$(now); "$LMF" quantize "$SRC" "$tmp/$t.im.gguf" --type "$t" --imatrix "$tmp/lmf.imatrix.gguf" -t "$THREADS" \
      > /dev/null 2>&1; t2=$(now)
    echo "$t1 - $t0" | bc >> "$tmp/a"; echo "$t2 - $t1" | bc >> "$tmp/b"
  done
  same=$([ "$(lq_digest "$LMF" "$tmp/l.gguf")" = "$(lq_digest "$LMF" "$tmp/$t.im.gguf")" ] && echo yes || echo NO)
  awk -v t="$T" -v a="$(median < "$tmp/a")" -v b="$(median < "$tmp/b")" -v s="$same" \
    'BEGIN { printf "| %s | %.2f | %.2f | %.2fx | %s |\n", t, a, b, a / b, s }'
done
[ "$PPL_CHUNKS" -gt 0 ] || exit 0
echo
echo "| type | perplexity without | with the imatrix | change |"
echo "|---|---|---|---|"
ppl() { "$LMF" perplexity -m "$1" -f "$TEXT" -c "$CTX" --chunks "$PPL_CHUNKS" -t "$THREADS" 2> /dev/null |
  grep -o 'perplexity: [0-9.]* +/- [0-9.]*' | awk '{print $2, $4}'; }
read -r p32 e32 < <(ppl "$SRC")
echo "| F32 | $p32 +/- $e32 | | |"
for t in "${TYPES[@]}"; do
  "$LMF" quantize "$SRC" "$tmp/$t.gguf" --type "$t" -t "$THREADS" > /dev/null 2>&1
  read -r a ea < <(ppl "$tmp/$t.gguf"); read -r b eb < <(ppl "$tmp/$t.im.gguf")
  awk -v t="$(echo "$t" | tr a-z A-Z)" -v a="$a" -v ea="$ea" -v b="$b" -v eb="$eb" -v f="$p32" 'BEGIN {
    printf "| %s | %s +/- %s (%+.1f%%) | %s +/- %s (%+.1f%%) | %+.2f%% |\n", t, a, ea, 100 * (a - f) / f, b, eb,
      100 * (b - f) / f, 100 * (b - a) / a }'
done
