#!/usr/bin/env bash
# Memory of pipeline-parallel training per rank (docs/distributed.md, "Parameters are the stage's"): peak RSS of
# every rank (/usr/bin/time's ru_maxrss) for
#   1. gpt2 L8 C512 F2048 V8192, B8 T256, 8 micro-batches a step: one process, PP4 with each stage holding its own
#      parameters (the default) and PP4 with --pp-full-params (every rank the whole model's, the layout before);
#   2. a model whose parameters, gradients and AdamW moments (16 bytes a parameter) do not fit under a memory limit
#      put on every process (a cgroup v1 memory limit, when /sys/fs/cgroup/memory is writable: root): one process
#      is killed, PP2 trains; without the cgroup only the RSS is shown.
# One step each (the peak comes in the first: every activation set in flight). Prints markdown tables.
# Usage: bench/pp_memory.sh [build-dir]   (mpirun needed; env LIMIT_MIB overrides part 2's limit)
set -uo pipefail
BUILD=${1:-build}
LMF=$(cd "$BUILD" && pwd)/lmforge
WORK=$(mktemp -d /tmp/lmf_ppmem_XXXXXX)
CG=/sys/fs/cgroup/memory
cleanup() {
  for g in "$CG"/lmf_ppmem_*; do [ -d "$g" ] && rmdir "$g" 2>/dev/null; done
  rm -rf "$WORK"
}
trap cleanup EXIT
command -v mpirun > /dev/null || { echo "mpirun not found"; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=4294967295

if command -v bible > /dev/null; then bible gen1:1-rev22:21 > "$WORK/text.txt"; else cat src/*/*.c > "$WORK/text.txt"; fi
"$LMF" data shard --out "$WORK/data" --val-fraction 0.01 "$WORK/text.txt" > /dev/null 2>&1 || { echo "data shard failed"; exit 1; }

# Each rank under /usr/bin/time (its peak RSS into rss.<rank>), in a memory cgroup of LIMIT bytes when asked.
cat > "$WORK/wrap.sh" << 'EOF'
#!/usr/bin/env bash
r=${OMPI_COMM_WORLD_RANK:-0}
if [ -n "${PPMEM_LIMIT:-}" ]; then
  g=/sys/fs/cgroup/memory/lmf_ppmem_$$
  mkdir "$g" && echo "$PPMEM_LIMIT" > "$g/memory.limit_in_bytes" && echo $$ > "$g/cgroup.procs" || exit 99
fi
exec /usr/bin/time -f %M -o "$PPMEM_OUT.$r" "$@"
EOF
chmod +x "$WORK/wrap.sh"

# run NAME NP [flags...]: prints "exit | rss 0 | rss 1 | ..." (MiB; a rank the cgroup killed: its RSS then,
# "(killed)"; "-": no record)
run() {
  local name=$1 np=$2; shift 2
  rm -f "$WORK/$name".rss.*
  if [ "$np" = 1 ]; then
    PPMEM_OUT="$WORK/$name.rss" "$WORK/wrap.sh" "$LMF" train "$@" --out-dir "$WORK/$name" > "$WORK/$name.log" 2>&1
  else
    mpirun -np "$np" --oversubscribe --mca btl self,vader -x GLIBC_TUNABLES -x PPMEM_OUT="$WORK/$name.rss" \
      ${PPMEM_LIMIT:+-x PPMEM_LIMIT} "$WORK/wrap.sh" "$LMF" train "$@" --out-dir "$WORK/$name" > "$WORK/$name.log" 2>&1
  fi
  local rc=$? out kib
  out="$rc"
  for ((r = 0; r < np; r++)); do
    # the last line is ru_maxrss in KiB (a killed rank's file says "Command terminated by signal 9" first)
    kib=$(tail -1 "$WORK/$name.rss.$r" 2>/dev/null)
    if [[ "$kib" =~ ^[0-9]+$ ]]; then
      out+=" | $(( kib / 1024 ))$(grep -q 'signal' "$WORK/$name.rss.$r" && echo ' (killed)')"
    else
      out+=" | -"
    fi
  done
  for ((r = np; r < 4; r++)); do out+=" | "; done
  echo "$out"
}
held() { grep -o "held [0-9.]*-[0-9.]* MiB of parameters and gradients a rank (the whole model's: [0-9.]* MiB)" "$WORK/$1.log" | sed 's/^held //'; }

common=(--train-data "$WORK/data/train.bin" --max-steps 1 --warmup-steps 1 --eval-every 0 --sample-tokens 0
        --checkpoint-every 0 --threads 1 --precision fp32)
m1=(--arch gpt2 --n-layer 8 --n-embd 512 --n-head 8 --n-kv-head 8 --ffn-dim 2048 --vocab-size 8192 --batch-size 8
    --seq-len 256 --grad-accum 8)
echo "lmforge $(git rev-parse --short HEAD 2>/dev/null), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo
echo "1. gpt2 L8 C512 F2048 V8192 (29.7M parameters), B8 T256, 8 micro-batches a step; peak RSS per rank, MiB"
echo
echo "| run | exit | rank 0 | rank 1 | rank 2 | rank 3 | params + grads held a rank |"
echo "|---|---|---|---|---|---|---|"
echo "| one process | $(run one 1 "${common[@]}" "${m1[@]}") | all |"
echo "| PP4, each stage its own (default) | $(run pp4 4 "${common[@]}" "${m1[@]}" --pp 4) | $(held pp4) |"
echo "| PP4 --pp-full-params | $(run pp4f 4 "${common[@]}" "${m1[@]}" --pp 4 --pp-full-params) | all |"

# 2. L16 C1024 F4096 V8192: 210M parameters, 3.1 GiB of parameters, gradients and moments in one process
m2=(--arch gpt2 --n-layer 16 --n-embd 1024 --n-head 8 --n-kv-head 8 --ffn-dim 4096 --vocab-size 8192 --batch-size 1
    --seq-len 64 --grad-accum 2)
LIMIT_MIB=${LIMIT_MIB:-2560}
echo
if [ -w "$CG" ]; then
  export PPMEM_LIMIT=$((LIMIT_MIB * 1048576))
  echo "2. gpt2 L16 C1024 F4096 V8192 (210M parameters: 3.1 GiB of fp32 parameters, gradients and AdamW moments), B1"
  echo "   T64, 2 micro-batches; every process in a memory cgroup of $LIMIT_MIB MiB; peak RSS per rank, MiB"
else
  echo "2. gpt2 L16 C1024 F4096 V8192 (210M parameters), B1 T64, 2 micro-batches; no memory cgroup here ($CG not"
  echo "   writable): peak RSS per rank only, MiB"
fi
echo
echo "| run | exit | rank 0 | rank 1 | rank 2 | rank 3 | params + grads held a rank |"
echo "|---|---|---|---|---|---|---|"
echo "| one process | $(run big1 1 "${common[@]}" "${m2[@]}") | all |"
echo "| PP2, each stage its own | $(run big2 2 "${common[@]}" "${m2[@]}" --pp 2) | $(held big2) |"
echo "| PP2 --pp-full-params | $(run big2f 2 "${common[@]}" "${m2[@]}" --pp 2 --pp-full-params) | all |"
echo "| PP4 (4 micro-batches), each stage its own | $(run big4 4 "${common[@]}" "${m2[@]}" --pp 4 --grad-accum 4) | $(held big4) |"
echo
echo "exit 137, (killed): killed by the cgroup's out-of-memory killer (the RSS it had reached); -: no record"
