#!/usr/bin/env bash
# Prompt processing on AMX tiles against the fp32 SGEMM path, in the same run: ROUNDS rounds, each one pp512 with
# the default dispatch (on AMX CPUs: R16 quantized weights on the AMX-INT8 integer products, F16 / BF16 / other
# dequantized slabs on the split bf16 products, lmf_sgemm_bf16x3) and one with LMF_ISA=avx512 (no tiles: every
# prefill product the fp32 SGEMM of dequantized slabs, as before the tiles) back to back; prints the CPU, each
# path's median tokens/s and the median of the per-round ratios with its range. On a CPU without AMX both runs take
# the same path (ratio ~1).
#
# usage: bench/prefill_tiles.sh [ROUNDS=5] [THREADS="1 2"] FILE.gguf...
# env:   BUILD=build  PP=512
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
PP=${PP:-512}
ROUNDS=${1:-5}
THREADS=${2:-"1 2"}
shift 2 || true
[ $# -gt 0 ] || { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
cmake --build "$BUILD" -j"$(nproc)" --target bench_infer > /dev/null
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
pp() { "$BUILD/bench_infer" "$1" "$2" "$PP" 0 1 | sed -n 's/.*pp_tok_s=\([^ ]*\).*/\1/p'; }
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p'), family $(lscpu | sed -n 's/^CPU family: *//p') model" \
     "$(lscpu | sed -n 's/^Model: *//p'), AMX: $(grep -q amx_bf16 /proc/cpuinfo && echo yes || echo no)"
echo
echo "| model | threads | rounds | tiles pp$PP tok/s (median) | fp32 SGEMM (LMF_ISA=avx512) |" \
     "ratio: median of rounds | min - max |"
echo "|---|---|---|---|---|---|---|"
for f in "$@"; do
  for th in $THREADS; do
    a=() b=() r=()
    pp "$f" "$th" > /dev/null # page the model in
    for ((i = 0; i < ROUNDS; i++)); do
      x=$(pp "$f" "$th") y=$(LMF_ISA=avx512 pp "$f" "$th")
      a+=("$x") b+=("$y") r+=("$(awk -v a="$x" -v b="$y" 'BEGIN { printf "%.4f", a / b }')")
    done
    printf '| %s | %s | %s | %.1f | %.1f | %.2fx | %.2f - %.2f |\n' "$(basename "$f")" "$th" "$ROUNDS" \
      "$(printf '%s\n' "${a[@]}" | median)" "$(printf '%s\n' "${b[@]}" | median)" \
      "$(printf '%s\n' "${r[@]}" | median)" "$(printf '%s\n' "${r[@]}" | sort -g | head -1)" \
      "$(printf '%s\n' "${r[@]}" | sort -g | tail -1)"
  done
done
