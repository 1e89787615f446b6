#!/usr/bin/env bash
# Data-parallel scaling on this machine: the same global batch (B x T x grad_accum tokens a step) trained by
#   1 rank x 1 thread, 1 rank x N threads, N ranks x 1 thread (shared memory), and 2 ranks x 1 thread in two
#   network namespaces joined by a veth pair (Open MPI TCP; needs root),
# each N-rank run also with --overlap-grad-reduce (each layer's gradients reduced during the backward),
# then the collectives alone (build/bench_comm: ZeRO-1's reduce-scatter + all-gather pair by buffer size) on one
# host and between the namespaces. The step table: median ms/step over the measured steps, the median communication ms (the step's
# reduce-scatter + all-reduce + all-gather, waits included), the data-parallel efficiency against 1 rank x 1 thread
# (t1 / (N tN): the issue's comparison, not against 1 rank x N threads) and the collective bandwidth the ranks saw
# (each rank sends and receives (N-1)/N of the parameters twice a step: bytes / comm time).
#
# usage: bench/dist_bench.sh [STEPS]        env: BUILD=build N=2 L=4 C=256 F=1024 B=8 T=128 ACCUM=2
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}; LMF=$BUILD/lmforge
STEPS=${1:-12}; N=${N:-2}; L=${L:-4}; C=${C:-256}; F=${F:-1024}; B=${B:-8}; T=${T:-128}; ACCUM=${ACCUM:-2}
dir=$(mktemp -d /tmp/lmf_dist_bench_XXXXXX)
ns=lmfb$$
trap 'ip netns del ${ns}a 2>/dev/null; ip netns del ${ns}b 2>/dev/null; rm -rf "$dir"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=4294967295
bible gen1:1-rev22:21 > "$dir/kjv.txt"
"$LMF" data shard --out "$dir/data" "$dir/kjv.txt" > /dev/null 2>&1
args=(--train-data "$dir/data/train.bin" --n-layer "$L" --n-embd "$C" --n-head 4 --n-kv-head 4 --ffn-dim "$F"
      --batch-size "$B" --seq-len "$T" --grad-accum "$ACCUM" --max-steps "$STEPS" --warmup-steps 2 --eval-every 0
      --sample-tokens 0 --checkpoint-every 0)
P=$(( $("$LMF" train "${args[@]}" --max-steps 1 --warmup-steps 0 --out-dir "$dir/p" 2>&1 | sed -n 's/.*gpt2, \([0-9]*\) parameters.*/\1/p') ))
# median of a metrics field over the steps after the first two (warm-up: page faults, first collectives)
median() { grep -o "\"$2\":[0-9.]*" "$1/metrics.jsonl" | cut -d: -f2 | tail -n +3 | sort -g |
           awk '{a[NR]=$1} END {print (NR % 2 ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2)}'; }
row() { # label ranks dir
  local ms comm eff bw
  ms=$(median "$3" ms)
  comm=$( [ "$2" -gt 1 ] && median "$3" comm_ms || echo 0)
  eff=$(awk -v t1="$t1" -v t="$ms" -v n="$2" 'BEGIN { printf "%.0f%%", 100 * t1 / (n * t) }')
  bw=$(awk -v p="$P" -v n="$2" -v c="$comm" 'BEGIN { if (c > 0) printf "%.2f GB/s", 2 * (n - 1) / n * p * 4 / (c / 1e3) / 1e9; else print "-" }')
  echo "| $1 | $ms | $comm | $(awk -v m="$ms" -v c="$comm" 'BEGIN { printf "%.0f", m - c }') | $eff | $bw |"
}
cmake --build "$BUILD" --target bench_comm > /dev/null
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) (2 vCPUs; a shared host skews every row)"
"$LMF" train "${args[@]}" --threads 1 --out-dir "$dir/r1" 2> /dev/null
t1=$(median "$dir/r1" ms)
"$LMF" train "${args[@]}" --threads "$N" --out-dir "$dir/rt" 2> /dev/null
mpirun -np "$N" --oversubscribe -x GLIBC_TUNABLES "$LMF" train "${args[@]}" --threads 1 --out-dir "$dir/rn" > /dev/null 2>&1
mpirun -np "$N" --oversubscribe -x GLIBC_TUNABLES "$LMF" train "${args[@]}" --threads 1 --overlap-grad-reduce \
  --out-dir "$dir/rno" > /dev/null 2>&1
echo "CPU: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(nproc) cores; gpt2 L$L C$C F$F, $P parameters; global batch $B x $T x $ACCUM"
echo
echo "| run | ms/step | comm ms | compute ms | efficiency vs 1 rank x 1 thread | collective bandwidth |"
echo "|---|---|---|---|---|---|"
row "1 rank x 1 thread" 1 "$dir/r1"
row "1 rank x $N threads" 1 "$dir/rt"
row "$N ranks x 1 thread (shared memory)" "$N" "$dir/rn"
row "$N ranks x 1 thread (shared memory), --overlap-grad-reduce" "$N" "$dir/rno"
if [ "$(id -u)" = 0 ] && command -v ip > /dev/null; then
  ip netns add ${ns}a && ip netns add ${ns}b && ip link add ${ns}va type veth peer name ${ns}vb
  ip link set ${ns}va netns ${ns}a && ip link set ${ns}vb netns ${ns}b
  ip -n ${ns}a addr add 10.231.9.1/24 dev ${ns}va && ip -n ${ns}b addr add 10.231.9.2/24 dev ${ns}vb
  for s in a b; do ip -n ${ns}$s link set ${ns}v$s up; ip -n ${ns}$s link set lo up; done
  printf '#!/bin/bash\nh=$1; shift\n[ "$h" = 10.231.9.1 ] && n=%sa || n=%sb\nexec ip netns exec $n /bin/sh -c "$*"\n' \
    "$ns" "$ns" > "$dir/nsrsh"; chmod +x "$dir/nsrsh"
  nsrun() { # FLAG OUT
    ip netns exec ${ns}a mpirun -np 2 --bind-to none --host 10.231.9.1:1,10.231.9.2:1 --mca plm_rsh_agent "$dir/nsrsh" \
      --mca btl self,tcp --mca btl_tcp_if_include 10.231.9.0/24 --mca oob_tcp_if_include 10.231.9.0/24 \
      -x OMPI_ALLOW_RUN_AS_ROOT -x OMPI_ALLOW_RUN_AS_ROOT_CONFIRM -x GLIBC_TUNABLES \
      "$LMF" train "${args[@]}" --threads 1 $1 --out-dir "$dir/$2" > /dev/null 2>&1
  }
  nsrun "" rns; nsrun --overlap-grad-reduce rnso
  row "2 ranks x 1 thread, two namespaces (TCP over veth)" 2 "$dir/rns"
  row "2 ranks x 1 thread, two namespaces (TCP over veth), --overlap-grad-reduce" 2 "$dir/rnso"
fi
echo
echo "Collectives alone, 2 ranks, one host (shared memory):"
echo
mpirun -np 2 --oversubscribe -x GLIBC_TUNABLES "$BUILD/bench_comm" $((16 << 20)) 9
if [ -f "$dir/nsrsh" ]; then
  echo
  echo "Collectives alone, 2 ranks in two namespaces (TCP over veth):"
  echo
  ip netns exec ${ns}a mpirun -np 2 --bind-to none --host 10.231.9.1:1,10.231.9.2:1 --mca plm_rsh_agent "$dir/nsrsh" \
    --mca btl self,tcp --mca btl_tcp_if_include 10.231.9.0/24 --mca oob_tcp_if_include 10.231.9.0/24 \
    -x OMPI_ALLOW_RUN_AS_ROOT -x OMPI_ALLOW_RUN_AS_ROOT_CONFIRM -x GLIBC_TUNABLES "$BUILD/bench_comm" $((16 << 20)) 9
fi
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
