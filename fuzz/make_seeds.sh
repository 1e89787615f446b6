#!/usr/bin/env bash
# make_seeds.sh — the seed corpora of `make fuzz`'s file targets, made by lmforge itself: the smallest real files of
# each kind (a 300-token BPE tokenizer, 1-layer models of width 8 or 32) so every execution loads and runs a whole
# model in well under a millisecond of real work and libFuzzer spends its time on the parsers, not on the products.
#
#   fuzz/make_seeds.sh [BUILD [FUZZ_DIR]]     (defaults: build build-fuzz; needs BUILD/lmforge)
#
# Writes FUZZ_DIR/corpus-{tokjson,ckpt,model,hf,safetensors}/ seed files (existing corpora are kept and added to).
set -euo pipefail
B=${1:-build}
F=${2:-build-fuzz}
L=$B/lmforge
W=$F/seed-work
rm -rf "$W"
mkdir -p "$W" "$F"/corpus-{tokjson,ckpt,model,hf,safetensors}

# A BPE tokenizer (merges, a special token) and the README's first 30 KB as shards in it.
head -c 30000 README.md > "$W/text.txt"
"$L" tokenizer train --vocab-size 300 --special "<|endoftext|>" -o "$W/tokenizer.json" "$W/text.txt" > /dev/null
cp "$W/tokenizer.json" "$F/corpus-tokjson/seed.json"
"$L" data shard --out "$W/data" --tokenizer "$W/tokenizer.json" "$W/text.txt" > /dev/null

train() { # NAME FLAGS...: one step of a 1-layer model on the shards
    local name=$1
    shift
    "$L" train --train-data "$W/data/train.bin" --tokenizer "$W/tokenizer.json" --n-layer 1 --seq-len 8 \
        --batch-size 1 --max-steps 1 --warmup-steps 0 --eval-every 0 --sample-tokens 0 --out-dir "$W/$name" "$@" \
        2> /dev/null
}
train gpt2 --arch gpt2 --n-embd 8 --n-head 2 --n-kv-head 2 --ffn-dim 8
train llama --arch llama --n-embd 8 --n-head 2 --n-kv-head 1 --ffn-dim 8 --tied-embeddings 0
train qwen3 --arch qwen3 --n-embd 8 --n-head 2 --n-kv-head 1 --ffn-dim 8
# mixtures of experts (4 experts, top-2, a gated shared expert): width 8, and 32 for the 32-element blocks of
# Q8_0, Q4_1, Q5_0 and Q5_1
train moe --arch qwen2 --n-embd 8 --n-head 2 --n-kv-head 1 --ffn-dim 8 --n-expert 4 --n-expert-used 2 \
    --shared-ffn-dim 8 --shared-gate 1
train moe32 --arch qwen2 --n-embd 32 --n-head 2 --n-kv-head 1 --ffn-dim 32 --n-expert 4 --n-expert-used 2 \
    --shared-ffn-dim 32 --shared-gate 1

for m in gpt2 llama moe; do cp "$W/$m/ckpt-00000001.lmfc" "$F/corpus-ckpt/$m.lmfc"; done
for m in gpt2 llama qwen3 moe; do
    "$L" export "$W/$m" --to gguf -o "$F/corpus-model/$m.gguf" > /dev/null
    "$L" export "$W/$m" --to safetensors -o "$W/hf-$m" > /dev/null
    cp "$W/hf-$m/model.safetensors" "$F/corpus-safetensors/$m.safetensors"
    # fuzz_hf's input: the config's length as a little-endian u32, config.json, model.safetensors
    python3 -c "import struct, sys; c = open(sys.argv[1], 'rb').read(); sys.stdout.buffer.write(struct.pack('<I', \
len(c)) + c + open(sys.argv[2], 'rb').read())" "$W/hf-$m/config.json" "$W/hf-$m/model.safetensors" \
        > "$F/corpus-hf/$m.bin"
done
"$L" export "$W/llama" --to gguf --type f16 -o "$F/corpus-model/llama_f16.gguf" > /dev/null
"$L" export "$W/llama" --to safetensors --type bf16 -o "$W/hf-llama-bf16" > /dev/null
cp "$W/hf-llama-bf16/model.safetensors" "$F/corpus-safetensors/llama_bf16.safetensors"
"$L" export "$W/moe32" --to gguf -o "$W/moe32.gguf" > /dev/null
for t in q8_0 q4_1 q5_0 q5_1; do
    "$L" quantize "$W/moe32.gguf" "$F/corpus-model/moe32_$t.gguf" --type $t > /dev/null 2>&1
done
rm -rf "$W"
du -b "$F"/corpus-{tokjson,ckpt,model,hf,safetensors}/* | sort -n | awk '{printf "%7d %s\n", $1, $2}'
