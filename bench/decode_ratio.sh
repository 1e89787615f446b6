#!/usr/bin/env bash
# Generation speed against llama.cpp, made robust to a shared, noisy host: ROUNDS rounds, each one lmforge run and
# one llama-bench run of tg128 (128 tokens generated one at a time from an empty context) back to back, so both
# programs of a round see the same load; prints the median of the per-round ratios with its range, and each
# program's median tokens/s. infer_bench.sh measures all of one program's repetitions, then all of the other's:
# there a load change between the two halves moves the ratio by up to ~1.5x on these machines.
#
# usage: bench/decode_ratio.sh [ROUNDS=7] [THREADS="1 2"] FILE.gguf...
# env:   BUILD=build  LLAMA_CPP_DIR=/work/ref/llama.cpp/build/bin (see bench/llamacpp_ref.sh for building one)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
LLAMA_CPP_DIR=${LLAMA_CPP_DIR:-/work/ref/llama.cpp/build/bin}
ROUNDS=${1:-7}
THREADS=${2:-"1 2"}
shift 2 || true
[ $# -gt 0 ] || { echo "usage: bench/decode_ratio.sh [ROUNDS] [THREADS] FILE.gguf..." >&2; exit 2; }
[ -x "$LLAMA_CPP_DIR/llama-bench" ] || { echo "decode_ratio: no llama-bench in $LLAMA_CPP_DIR" >&2; exit 2; }
cmake --build "$BUILD" -j"$(nproc)" --target bench_infer > /dev/null
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
echo "| model | threads | rounds | lmforge tg128 tok/s (median) | llama.cpp tg128 (median) | ratio: median of rounds | min - max |"
echo "|---|---|---|---|---|---|---|"
for f in "$@"; do
  for th in $THREADS; do
    lm=() ll=() r=()
    for ((i = 0; i < ROUNDS; i++)); do
      a=$("$BUILD/bench_infer" "$f" "$th" 0 128 1 | sed -n 's/.*tg_tok_s=\([^ ]*\).*/\1/p')
      b=$("$LLAMA_CPP_DIR/llama-bench" -m "$f" -t "$th" -p 0 -n 128 -r 1 2> /dev/null |
          awk -F'|' '/tg128/ { split($(NF - 1), x, " "); print x[1] }')
      lm+=("$a") ll+=("$b") r+=("$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.4f", a / b }')")
    done
    mr=$(printf '%s\n' "${r[@]}" | median)
    lo=$(printf '%s\n' "${r[@]}" | sort -g | head -1) hi=$(printf '%s\n' "${r[@]}" | sort -g | tail -1)
    printf '| %s | %s | %s | %.1f | %.1f | %.2fx | %.2fx - %.2fx |\n' "$(basename "$f" .gguf)" "$th" "$ROUNDS" \
      "$(printf '%s\n' "${lm[@]}" | median)" "$(printf '%s\n' "${ll[@]}" | median)" "$mr" "$lo" "$hi"
  done
done
