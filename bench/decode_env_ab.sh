#!/usr/bin/env bash
# Generation speed of one lmforge build with and without an environment setting, in paired rounds: each round runs
# bench_infer's tg128 once with ENV_A set and once without, back to back, so both see the same host load; prints
# the median of the per-round ratios (default / ENV_A) with its range. Made for the decode read streams
# (kernels/quant.h: lmf_decode_streams), whose per-CPU choice comes from such rounds.
#
# usage: bench/decode_env_ab.sh [ROUNDS=5] [THREADS="1 2"] FILE.gguf...
# env:   ENV_A="LMF_DECODE_STREAMS=1"  BUILD=build
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
ENV_A=${ENV_A:-LMF_DECODE_STREAMS=1}
ROUNDS=${1:-5}
THREADS=${2:-"1 2"}
shift 2 || true
[ $# -gt 0 ] || { echo "usage: bench/decode_env_ab.sh [ROUNDS] [THREADS] FILE.gguf..." >&2; exit 2; }
cmake --build "$BUILD" -j"$(nproc)" --target bench_infer > /dev/null
tg() { sed -n 's/.*tg_tok_s=\([^ ]*\).*/\1/p'; }
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p'), family $(lscpu | sed -n 's/^CPU family: *//p'), model $(lscpu | sed -n 's/^Model: *//p')"
echo "| model | threads | rounds | $ENV_A tok/s (median) | default tok/s (median) | default / $ENV_A: median of rounds | min - max |"
echo "|---|---|---|---|---|---|---|"
for f in "$@"; do
  for th in $THREADS; do
    a=() b=() r=()
    for ((i = 0; i < ROUNDS; i++)); do
      x=$(env "$ENV_A" "$BUILD/bench_infer" "$f" "$th" 0 128 1 | tg)
      y=$("$BUILD/bench_infer" "$f" "$th" 0 128 1 | tg)
      a+=("$x") b+=("$y") r+=("$(awk -v x="$x" -v y="$y" 'BEGIN { printf "%.4f", y / x }')")
    done
    med() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
    printf '| %s | %s | %s | %.1f | %.1f | %.2fx | %.2fx - %.2fx |\n' "$(basename "$f" .gguf)" "$th" "$ROUNDS" \
      "$(printf '%s\n' "${a[@]}" | med)" "$(printf '%s\n' "${b[@]}" | med)" "$(printf '%s\n' "${r[@]}" | med)" \
      "$(printf '%s\n' "${r[@]}" | sort -g | head -1)" "$(printf '%s\n' "${r[@]}" | sort -g | tail -1)"
  done
done
