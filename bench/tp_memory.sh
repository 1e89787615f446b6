#!/usr/bin/env bash
# Memory of tensor-parallel training per rank (docs/distributed.md, "Tensor-parallel ranks hold their shards"): peak
# RSS of every rank (/usr/bin/time's ru_maxrss) for TP2, TP4 and DP2 x TP2 x PP2 on bench/pp_memory.sh's model (gpt2
# L8 C512 F2048 V8192, B8 T256, 8 micro-batches a step), each with this build and, when BEFORE names another lmforge
# binary (e.g. main's HEAD built into another folder), with that one: the layout before, side by side. One step each
# (the peak comes in the first). Prints a markdown table.
# Usage: [BEFORE=path/to/old/lmforge] bench/tp_memory.sh [build-dir]   (mpirun needed)
set -uo pipefail
BUILD=${1:-build}
LMF=$(cd "$BUILD" && pwd)/lmforge
BEFORE=${BEFORE:-}
WORK=$(mktemp -d /tmp/lmf_tpmem_XXXXXX)
trap 'rm -rf "$WORK"' EXIT
command -v mpirun > /dev/null || { echo "mpirun not found"; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=4294967295

if command -v bible > /dev/null; then bible gen1:1-rev22:21 > "$WORK/text.txt"; else cat src/*/*.c > "$WORK/text.txt"; fi
"$LMF" data shard --out "$WORK/data" --val-fraction 0.01 "$WORK/text.txt" > /dev/null 2>&1 || { echo "data shard failed"; exit 1; }

cat > "$WORK/wrap.sh" << 'EOF'
#!/usr/bin/env bash
exec /usr/bin/time -f %M -o "$TPMEM_OUT.${OMPI_COMM_WORLD_RANK:-0}" "$@"
EOF
chmod +x "$WORK/wrap.sh"

# run NAME NP BIN [flags...]: prints "exit | max | ranks' peak RSS" (MiB, rank order)
run() {
  local name=$1 np=$2 bin=$3; shift 3
  rm -f "$WORK/$name".rss.*
  if [ "$np" = 1 ]; then
    TPMEM_OUT="$WORK/$name.rss" "$WORK/wrap.sh" "$bin" train "$@" --out-dir "$WORK/$name" > "$WORK/$name.log" 2>&1
  else
    mpirun -np "$np" --oversubscribe --mca btl self,vader -x GLIBC_TUNABLES -x TPMEM_OUT="$WORK/$name.rss" \
      "$WORK/wrap.sh" "$bin" train "$@" --out-dir "$WORK/$name" > "$WORK/$name.log" 2>&1
  fi
  local rc=$? list="" max=0 kib
  for ((r = 0; r < np; r++)); do
    kib=$(tail -1 "$WORK/$name.rss.$r" 2>/dev/null)
    [[ "$kib" =~ ^[0-9]+$ ]] || { list+=" -"; continue; }
    list+=" $((kib / 1024))"
    ((kib / 1024 > max)) && max=$((kib / 1024))
  done
  echo "$rc | $max |$list"
}
held() { grep -o "held [0-9.]*-[0-9.]* MiB of parameters and gradients" "$WORK/$1.log" | sed 's/^held //; s/ of .*//'; }

common=(--train-data "$WORK/data/train.bin" --max-steps 1 --warmup-steps 1 --eval-every 0 --sample-tokens 0
        --checkpoint-every 0 --threads 1 --precision fp32)
m1=(--arch gpt2 --n-layer 8 --n-embd 512 --n-head 8 --n-kv-head 8 --ffn-dim 2048 --vocab-size 8192 --batch-size 8
    --seq-len 256 --grad-accum 8)
cpu() { grep -m1 "^$1" /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'; }
echo "lmforge $(git rev-parse --short HEAD 2>/dev/null), $(cpu 'model name') (family $(cpu 'cpu family') model $(cpu 'model\s'))"
echo
echo "gpt2 L8 C512 F2048 V8192 (29.7M parameters; 227 MiB of fp32 parameters and gradients), B8 T256, 8 micro-batches"
echo "a step; peak RSS per rank, MiB"
echo
echo "| run | binary | exit | max | ranks (rank order) | params + grads held a rank (MiB) |"
echo "|---|---|---|---|---|---|"
echo "| one process | this | $(run one 1 "$LMF" "${common[@]}" "${m1[@]}") | all |"
for grid in "2 --tp 2" "4 --tp 4" "8 --dp 2 --tp 2 --pp 2"; do
  set -- $grid; np=$1; shift
  tag=$(echo "$*" | tr -d ' -')
  [ -n "$BEFORE" ] &&
    echo "| ${*} | before | $(run "b$tag" "$np" "$BEFORE" "${common[@]}" "${m1[@]}" "$@") | $(held "b$tag") |"
  echo "| ${*} | this | $(run "a$tag" "$np" "$LMF" "${common[@]}" "${m1[@]}" "$@") | $(held "a$tag") |"
done
echo
echo "held: what the run reported at its end (none: every rank held the whole model's 227 MiB); -: no record"
