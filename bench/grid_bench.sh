#!/usr/bin/env bash
# Every parallel grid on this machine: the same global batch (B x T x ACCUM tokens a step) trained by 1 rank and by
# DP2, TP2, PP2, DP2xTP2, TP2xPP2, DP2xPP2 and DP2xTP2xPP2, each rank 1 thread. Per grid: the median ms/step, the
# exchange ms (the step's collectives, the tensor-parallel all-reduces inside the layers and the pipeline's sends
# and receives, waits included: a pipeline's bubble shows up here as the time a stage waits for its neighbour), the
# compute ms (the rest), the bubble the 1F1B schedule predicts ((p - 1) / m of the compute) and the efficiency
# against 1 rank x 1 thread (t1 / (N tN)). Grids of more ranks than cores run oversubscribed: their rows measure the
# overheads' share, not speed-up (docs/distributed.md).
#
# usage: bench/grid_bench.sh [STEPS]        env: BUILD=build L=4 C=256 H=4 F=1024 V=0 (the shard's) B=8 T=128 ACCUM=8
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}; LMF=$BUILD/lmforge
STEPS=${1:-8}; L=${L:-4}; C=${C:-256}; H=${H:-4}; F=${F:-1024}; V=${V:-0}; B=${B:-8}; T=${T:-128}; ACCUM=${ACCUM:-8}
dir=$(mktemp -d /tmp/lmf_grid_bench_XXXXXX)
trap 'rm -rf "$dir"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=4294967295
if command -v bible > /dev/null; then bible gen1:1-rev22:21 > "$dir/text.txt"; else cat src/*/*.c > "$dir/text.txt"; fi
"$LMF" data shard --out "$dir/data" "$dir/text.txt" > /dev/null 2>&1
args=(--train-data "$dir/data/train.bin" --n-layer "$L" --n-embd "$C" --n-head "$H" --n-kv-head "$H" --ffn-dim "$F"
      --vocab-size "$V" --batch-size "$B" --seq-len "$T" --grad-accum "$ACCUM" --max-steps "$STEPS" --warmup-steps 2
      --eval-every 0 --sample-tokens 0 --checkpoint-every 0 --threads 1)
# median of a metrics field over the steps after the first two (warm-up: page faults, first collectives)
median() { grep -o "\"$2\":[0-9.]*" "$1/metrics.jsonl" | cut -d: -f2 | tail -n +3 | sort -g |
           awk '{a[NR]=$1} END {print (NR % 2 ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2)}'; }
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
"$LMF" train "${args[@]}" --out-dir "$dir/g1" 2> "$dir/g1.txt"
t1=$(median "$dir/g1" ms)
echo "CPU: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1) (family $(sed -n 's/^cpu family[[:space:]]*: //p' /proc/cpuinfo | head -1) model $(sed -n 's/^model[[:space:]]*: //p' /proc/cpuinfo | head -1)), $(nproc) cores"
echo "model: $(sed -n 's/.*lmforge train: \([^,]*, [0-9]* parameters ([^)]*), L[^,]*\).*/\1/p' "$dir/g1.txt"); B$B T$T x$ACCUM micro-batches a step"
echo
echo "| grid | ranks | ms/step | exchange ms | compute ms | 1F1B bubble (predicted) | efficiency vs 1 rank x 1 thread |"
echo "|---|---|---|---|---|---|---|"
echo "| 1 rank | 1 | $t1 | 0 | $t1 | - | 100% |"
for grid in "2 1 1" "1 2 1" "1 1 2" "2 2 1" "1 2 2" "2 1 2" "2 2 2"; do
  read -r dp tp pp <<< "$grid"
  n=$((dp * tp * pp)) m=$((ACCUM / dp)) name=dp${dp}tp${tp}pp${pp}
  label=$(for a in "DP $dp" "TP $tp" "PP $pp"; do set -- $a; if [ "$2" -gt 1 ]; then printf '%s%s x ' "$1" "$2"; fi; done |
          sed 's/ x $//')
  mpirun -np "$n" --oversubscribe -x GLIBC_TUNABLES "$LMF" train "${args[@]}" --dp "$dp" --tp "$tp" --pp "$pp" \
    --out-dir "$dir/$name" > "$dir/$name.txt" 2>&1 || { cat "$dir/$name.txt"; exit 1; }
  ms=$(median "$dir/$name" ms) ex=$(median "$dir/$name" comm_ms)
  awk -v l="$label" -v n="$n" -v ms="$ms" -v ex="$ex" -v p="$pp" -v m="$m" -v t1="$t1" 'BEGIN {
    c = ms - ex; bub = "-"
    if (p > 1) bub = sprintf("%.1f ms ((p-1)/m = %.3f)", c * (p - 1) / m, (p - 1) / m)
    printf "| %s | %d | %.1f | %.1f | %.1f | %s | %.0f%% |\n", l, n, ms, ex, c, bub, 100 * t1 / (n * ms) }'
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
