#!/usr/bin/env bash
# A mixture of experts against the dense model with the same active parameters, on the demo corpus (the King James
# Bible, a 4096-token BPE), same tokens and steps: validation loss and training tokens/s for both, run one after
# the other in the same session (then once more in the other order: timings drift on a shared host).
#
#   bench/moe_bench.sh [path/to/lmforge] [steps]
#
# dense: llama, 4 layers, C 128, 4 heads, ffn_dim 512                         (FFN per token: 3 x 128 x 512)
# moe:   the same with 8 experts of ffn_dim 256, top-2, renormalised (Mixtral) (FFN per token: 2 x 3 x 128 x 256)
#        router_aux_coef 0.01, router_z_coef 0.001, dropless
# Both: batch 16 x 128 tokens, lr 1e-3 -> 1e-4 cosine, warmup 30, weight decay 0.1, clip 1.0, seed 1337.
set -euo pipefail
LMF=${1:-build/lmforge}
STEPS=${2:-300}
dir=${MOE_BENCH_DIR:-/tmp/lmf_moe_bench}
mkdir -p "$dir"
if [ ! -s "$dir/data/train.bin" ]; then
    bible gen1:1-rev22:21 > "$dir/kjv.txt"
    "$LMF" tokenizer train --vocab-size 4096 --special "<|endoftext|>" -o "$dir/tokenizer.json" "$dir/kjv.txt" > /dev/null
    "$LMF" data shard --tokenizer "$dir/tokenizer.json" --out "$dir/data" "$dir/kjv.txt" > /dev/null
fi
common=(--arch llama --n-layer 4 --n-embd 128 --n-head 4 --n-kv-head 4 --batch-size 16 --seq-len 128 --lr 1e-3
        --min-lr 1e-4 --warmup-steps 30 --max-steps "$STEPS" --weight-decay 0.1 --grad-clip 1.0 --eval-every 0
        --eval-batches 32 --checkpoint-every 0 --sample-tokens 0 --seed 1337 --tokenizer "$dir/tokenizer.json"
        --train-data "$dir/data/train.bin" --val-data "$dir/data/val.bin")
dense=(--ffn-dim 512)
moe=(--ffn-dim 256 --n-expert 8 --n-expert-used 2 --norm-topk-prob true --router-aux-coef 0.01 --router-z-coef 0.001)

run() { # name flags...: prints "name params val_loss tok/s"
    local name=$1; shift
    rm -rf "$dir/$name"
    "$LMF" train "${common[@]}" "$@" --out-dir "$dir/$name" > /dev/null 2> "$dir/$name.log"
    local val tps params
    val=$(grep -o 'final val loss [0-9.]*' "$dir/$name.log" | awk '{print $4}')
    # median tokens/s over the steps after the first 10 (warm-up of caches and pages)
    tps=$(grep '"tok_per_s"' "$dir/$name/metrics.jsonl" | tail -n +11 | grep -o '"tok_per_s":[0-9.]*' | cut -d: -f2 |
          sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    params=$(grep -o '[0-9.]*[KM]* parameters' "$dir/$name.log" | head -1 || true)
    printf "%-6s %-22s val loss %-8s %8s tok/s\n" "$name" "${params:-?}" "$val" "$tps"
}
echo "CPU: $(lscpu | grep -m1 'Model name' | sed 's/.*: *//') (family $(lscpu | grep -m1 'CPU family' | awk '{print $3}'), model $(lscpu | grep -m1 '^Model:' | awk '{print $2}')), OMP_NUM_THREADS=${OMP_NUM_THREADS:-all}"
echo "$STEPS steps x 16 x 128 tokens"
run dense "${dense[@]}"
run moe "${moe[@]}"
run moe2 "${moe[@]}"
run dense2 "${dense[@]}"
