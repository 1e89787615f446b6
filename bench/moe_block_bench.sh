#!/usr/bin/env bash
# Training speed of the mixture-of-experts block alone (issue 14: "training tokens/s of the MoE block against a
# PyTorch implementation"): build/bench_moe_block (lmf_moe_forward + the router losses + lmf_moe_backward) against
# transformers' MixtralSparseMoeBlock with its eager loop over the experts (bench/moe_torch_block.py: router, experts,
# aux loss, backward), fp32, on the same rows: C 128, 8 experts of 256, top-2, N = 16 x 128 (the shape of
# bench/moe_train_bench.sh's model). ROUNDS alternating rounds per thread count; each side's median over the rounds.
#
# usage: bench/moe_block_bench.sh [ROUNDS=3] [THREADS="1 2"]      env: BUILD=build PY=/work/venv-peft/bin/python
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
PY=${PY:-/work/venv-peft/bin/python}
ROUNDS=${1:-3}
THREADS=${2:-"1 2"}
shape=(128 8 2 256 16 128)
cmake --build "$BUILD" --target bench_moe_block > /dev/null
echo "CPU: $(lscpu | grep -m1 'Model name' | sed 's/.*: *//') (family $(lscpu | grep -m1 'CPU family' | awk '{print $3}'), model $(lscpu | grep -m1 '^Model:' | awk '{print $2}')); load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "| threads | lmforge tok/s | transformers MixtralSparseMoeBlock tok/s | ratio |"
echo "|---|---|---|---|"
med() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for th in $THREADS; do
  lm=() pt=()
  for ((r = 0; r < ROUNDS; r++)); do
    lm+=("$("$BUILD/bench_moe_block" "${shape[@]}" "$th" 50 | sed -n 's/.*tok_per_s=\([0-9.]*\).*/\1/p')")
    pt+=("$("$PY" bench/moe_torch_block.py "${shape[@]}" "$th" 50 2> /dev/null | sed -n 's/.*tok_per_s=\([0-9.]*\).*/\1/p')")
  done
  a=$(printf '%s\n' "${lm[@]}" | med) b=$(printf '%s\n' "${pt[@]}" | med)
  printf "| %s | %s | %s | %.2f |\n" "$th" "$a" "$b" "$(echo "$a / $b" | bc -l)"
done
