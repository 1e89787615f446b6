#!/usr/bin/env bash
# How far each parallel grid's run is from one process's (docs/distributed.md "Which grids equal one process"): 20
# steps of the small gpt2 / llama configs of tests/cli_mpi.sh, every grid against a single-process run of the same
# global batch, in one precision; prints the largest relative difference of the losses and of the final weights
# ("0 (bits)": bit-identical). Needs mpirun (Open MPI).
#
# usage: bench/grid_vs_one.sh [LMFORGE=build/lmforge] [PRECISION=bf16]
set -uo pipefail
cd "$(dirname "$0")/.."
LMF=${1:-build/lmforge} PREC=${2:-bf16}
dir=$(mktemp -d /tmp/lmf_grid_XXXXXX)
trap 'rm -rf "$dir"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=4294967295
cat src/*/*.c > "$dir/text.txt"
"$LMF" data shard --out "$dir/data" --val-fraction 0.1 --block 4096 "$dir/text.txt" > /dev/null 2>&1 || exit 1
common=(--precision "$PREC" --n-layer 2 --n-embd 64 --n-head 4 --ffn-dim 128 --batch-size 2 --seq-len 32
        --warmup-steps 3 --max-steps 20 --eval-every 0 --sample-tokens 0 --checkpoint-every 0 --threads 1 --lr 3e-3
        --train-data "$dir/data/train.bin")
mpi() { timeout 300 mpirun -np "$1" --oversubscribe --mca btl self,tcp -x GLIBC_TUNABLES "${@:2}"; }
losses() { grep -o '"loss":[-0-9.e+]*' "$1/metrics.jsonl" | cut -d: -f2; }
last() { ls "$1"/ckpt-*.lmfc | tail -1; }
echo "| model | grid | micro-batches | losses, max rel. diff | weights, max rel. diff |"
echo "|---|---|---|---|---|"
for model in "gpt2 (tied)" "llama (tied)" "llama (untied)"; do
  case $model in
    gpt2*) extra=(--arch gpt2 --n-kv-head 4) ;;
    "llama (tied)") extra=(--arch llama --n-kv-head 2) ;;
    *) extra=(--arch llama --n-kv-head 2 --tied-embeddings 0) ;;
  esac
  for row in "1 2 1" "1 4 1" "1 6 1" "2 2 --dp 2" "2 4 --dp 2" "2 6 --dp 2" "4 4 --dp 4" "2 2 --pp 2" "4 4 --dp 2 --pp 2" \
             "2 2 --tp 2" "8 4 --dp 2 --tp 2 --pp 2"; do
    set -- $row
    np=$1 acc=$2; shift 2
    out="$dir/$np-$acc-$*"; out=${out// /_}
    if [ "$np" = 1 ]; then
      "$LMF" train "${common[@]}" "${extra[@]}" --grad-accum "$acc" --out-dir "$dir/one-$acc" > /dev/null 2>&1 || echo "one process failed"
      continue
    fi
    mpi "$np" "$LMF" train "${common[@]}" "${extra[@]}" --grad-accum "$acc" "$@" --out-dir "$out" > /dev/null 2>&1 \
      || { echo "| $model | $* | $acc | failed | |"; continue; }
    d=$(paste <(losses "$out") <(losses "$dir/one-$acc") | awk '{ d = $1 - $2; if (d < 0) d = -d; r = d / ($2 < 0 ? -$2 : $2); if (r > m) m = r }
      END { if (m == 0) print "0 (bits)"; else printf "%.2g\n", m }')
    w=$(python3 tests/ckpt_params.py "$(last "$out")" "$(last "$dir/one-$acc")" 1 | sed -n 's/max relative difference \([^ ]*\).*/\1/p')
    [ "$w" = 0 ] && w="0 (bits)"
    echo "| $model | $* | $acc | $d | $w |"
  done
done
echo
echo "precision $PREC; CPU: $(lscpu | sed -n 's/^Model name: *//p') (family $(lscpu | sed -n 's/^CPU family: *//p'), model $(lscpu | sed -n 's/^Model: *//p')), $(nproc) cores"
