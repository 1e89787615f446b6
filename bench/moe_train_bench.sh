#!/usr/bin/env bash
# Training speed of a mixture of experts: lmforge against transformers' MixtralForCausalLM (PyTorch, fp32, its
# eager loop over the experts: bench/moe_torch_train.py) on the same shape (bench/moe_bench.sh's MoE: 4 layers,
# C 128, 8 experts of 256, top-2, vocab 4096, B 16 x T 128), at 1 and 2 threads, the two alternating.
# lmforge: `lmforge train` for STEPS + 10 steps on the demo corpus's shards, median tokens/s of the steps after the
# first 10; torch: the median of STEPS steps after 3 warm-up steps on random tokens.
#
# usage: bench/moe_train_bench.sh [STEPS=10] [THREADS="1 2"]
# env:   BUILD=build  PY=/work/venv-peft/bin/python  MOE_BENCH_DIR=/tmp/lmf_moe_bench (bench/moe_bench.sh's data)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
PY=${PY:-/work/venv-peft/bin/python}
dir=${MOE_BENCH_DIR:-/tmp/lmf_moe_bench}
STEPS=${1:-10}
THREADS=${2:-"1 2"}
[ -s "$dir/data/train.bin" ] || { echo "run bench/moe_bench.sh first (it makes $dir/data)" >&2; exit 2; }
echo "CPU: $(lscpu | grep -m1 'Model name' | sed 's/.*: *//') (family $(lscpu | grep -m1 'CPU family' | awk '{print $3}'), model $(lscpu | grep -m1 '^Model:' | awk '{print $2}')); load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "| threads | lmforge tok/s | transformers Mixtral tok/s | ratio |"
echo "|---|---|---|---|"
for th in $THREADS; do
  rm -rf "$dir/speed"
  OMP_NUM_THREADS=$th "$BUILD/lmforge" train --arch llama --n-layer 4 --n-embd 128 --n-head 4 --n-kv-head 4 \
    --ffn-dim 256 --n-expert 8 --n-expert-used 2 --norm-topk-prob true --router-aux-coef 0.01 --batch-size 16 \
    --seq-len 128 --max-steps $((STEPS + 10)) --warmup-steps 2 --eval-every 0 --checkpoint-every 0 --sample-tokens 0 \
    --threads "$th" --train-data "$dir/data/train.bin" --out-dir "$dir/speed" > /dev/null 2>&1
  lm=$(grep '"tok_per_s"' "$dir/speed/metrics.jsonl" | tail -n +11 | grep -o '"tok_per_s":[0-9.]*' | cut -d: -f2 |
       sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  pt=$("$PY" bench/moe_torch_train.py "$th" "$STEPS" 2> /dev/null | sed -n 's/.*tok_per_s=\([0-9.]*\).*/\1/p')
  printf "| %s | %s | %s | %.2f |\n" "$th" "$lm" "$pt" "$(echo "$lm / $pt" | bc -l)"
done
