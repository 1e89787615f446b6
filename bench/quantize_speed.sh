#!/usr/bin/env bash
# Quantization speed: `lmforge quantize` against llama.cpp's llama-quantize on the same F32 GGUF, the same threads,
# alternated round by round (the host drifts), wall time of the whole command (load, quantize, write). Prints a
# markdown table: median seconds of each, the median of the per-round ratios (llama-quantize / lmforge: > 1 means
# lmforge is faster) with its range. Both write the same tensors (tests/cli_quantize.sh checks it).
#
# usage: LLAMA_CPP_DIR=/path/to/llama.cpp/build/bin bench/quantize_speed.sh [ROUNDS] [THREADS] [TYPES...]
#        (defaults: 3 rounds, 2 threads, Q8_0 Q4_0 Q4_K_M Q5_K_M Q6_K)
# env:   LMF=build/lmforge  SRC=build/models/SmolLM2-135M-Instruct.F32.gguf (made from the Q4_1 release if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
LMF=${LMF:-build/lmforge}
SRC=${SRC:-build/models/SmolLM2-135M-Instruct.F32.gguf}
Q="${LLAMA_CPP_DIR:?set LLAMA_CPP_DIR to the bin folder of a llama.cpp build}/llama-quantize"
ROUNDS=${1:-3}
THREADS=${2:-2}
shift 2 2> /dev/null || shift $#
TYPES=("$@")
[ ${#TYPES[@]} -gt 0 ] || TYPES=(Q8_0 Q4_0 Q4_K_M Q5_K_M Q6_K)
if [ ! -f "$SRC" ]; then
  ORIG=build/models/SmolLM2-135M-Instruct.Q4_1.gguf
  [ -f "$ORIG" ] || scripts/fetch-smollm2.sh build/models > /dev/null
  "$LMF" quantize "$ORIG" "$SRC" --type f32 > /dev/null
fi
dir=$(mktemp -d /tmp/lmf_qspeed_XXXXXX)
trap 'rm -rf "$dir"' EXIT
secs() { local t0 t1; t0=$(date +%s.%N); "$@" > /dev/null 2>&1; t1=$(date +%s.%N); echo "$t1 - $t0" | bc -l; }
median() { sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

echo "CPU: $(lscpu | sed -n 's/^Model name: *//p') (family $(lscpu | sed -n 's/^CPU family: *//p'), model $(lscpu | sed -n 's/^Model: *//p')), $THREADS threads, $ROUNDS rounds; source $(basename "$SRC")"
echo
echo "| type | lmforge s (median) | llama-quantize s (median) | ratio: median of rounds | min - max |"
echo "|---|---|---|---|---|"
for t in "${TYPES[@]}"; do
  : > "$dir/a"; : > "$dir/b"; : > "$dir/r"
  for ((r = 0; r < ROUNDS; r++)); do
    a=$(OMP_NUM_THREADS=$THREADS secs "$LMF" quantize "$SRC" "$dir/l.gguf" --type "$t" -t "$THREADS")
    b=$(secs "$Q" "$SRC" "$dir/q.gguf" "$t" "$THREADS")
    echo "$a" >> "$dir/a"; echo "$b" >> "$dir/b"; echo "$b / $a" | bc -l >> "$dir/r"
    rm -f "$dir/l.gguf" "$dir/q.gguf"
  done
  printf "| %s | %.2f | %.2f | %.2fx | %.2fx - %.2fx |\n" "$t" "$(median < "$dir/a")" "$(median < "$dir/b")" \
    "$(median < "$dir/r")" "$(sort -g "$dir/r" | head -1)" "$(sort -g "$dir/r" | tail -1)"
done
