# The small models whose tensor types llama_quantize_fixtures.sh records and tests/cli_quantize.sh checks (sourced by
# both): widths that are multiples of 256, so the K-quant mixes' choices per layer show. LQ_MODELS names them,
# lq_cfg NAME prints the `lmforge train` flags of one, lq_train LMF DATA_DIR OUT_DIR NAME trains it for one step.
LQ_MODELS="llama16 llama8tied gpt2 moe8 qwen2moe8"
LQ_TYPES="Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K_S Q3_K_M Q3_K_L Q4_K_S Q4_K_M Q5_K_S Q5_K_M Q6_K IQ4_NL IQ4_XS"
lq_cfg() {
  case $1 in
    llama16) echo "--arch llama --n-layer 16 --n-embd 256 --n-head 4 --n-kv-head 2 --ffn-dim 512 --tied-embeddings 0" ;;
    llama8tied) echo "--arch llama --n-layer 8 --n-embd 256 --n-head 4 --n-kv-head 4 --ffn-dim 768 --tied-embeddings 1" ;;
    gpt2) echo "--arch gpt2 --n-layer 8 --n-embd 256 --n-head 4 --ffn-dim 1024 --max-seq-len 64" ;;
    moe8) echo "--arch llama --n-layer 2 --n-embd 256 --n-head 4 --n-kv-head 2 --ffn-dim 256 --n-expert 8" \
               "--n-expert-used 2 --norm-topk-prob 1 --tied-embeddings 0" ;;
    qwen2moe8) echo "--arch qwen2 --n-layer 2 --n-embd 256 --n-head 4 --n-kv-head 2 --ffn-dim 256 --n-expert 8" \
                    "--n-expert-used 2 --shared-ffn-dim 512 --shared-gate 1 --tied-embeddings 0" ;;
  esac
}
# A byte-level token shard of some text for the one-step runs.
lq_data() { cat "$2"/src/model/*.c > "$3/text.txt" && "$1" data shard --out "$3/data" --val-fraction 0 "$3/text.txt" > /dev/null 2>&1; }
lq_train() {
  # shellcheck disable=SC2046
  "$1" train $(lq_cfg "$4") --train-data "$2/train.bin" --batch-size 1 --seq-len 16 --max-steps 1 --warmup-steps 1 \
    --sample-tokens 0 --eval-every 0 --checkpoint-every 1 --out-dir "$3" > /dev/null 2>&1
}
# "NAME TYPE" of every tensor of a GGUF file, from lmforge info
lq_types() { "$1" info "$2" | awk '/ at [0-9]+$/ { print $1, $2 }'; }
# one digest of a GGUF file's tensors, whatever their order and the metadata: sha256 of the sorted lines
# "NAME TYPE XXH64" (lmforge info --hash)
lq_digest() { "$1" info --hash "$2" | awk '/ at [0-9]+  xxh64 / { print $1, $2, $NF }' | LC_ALL=C sort | sha256sum | cut -d' ' -f1; }
# llama-quantize's options, the same spelling in both tools: "ID;TYPE;FLAGS" (IMATRIX stands for the importance
# matrix fixture, tests/reference/fixtures/smollm2_imatrix.gguf), quantizing the real SmolLM2
LQ_OPTION_CASES=(
  "pure;Q4_K_M;--pure"
  "embd_q5_1;Q4_K_M;--output-tensor-type q8_0 --token-embedding-type q5_1"
  "out_f16;Q4_K_M;--output-tensor-type f16"
  "rules;Q4_0;--tensor-type attn_v=q8_0 --tensor-type blk\.(0|1)\.ffn_down=q6_k"
  "pure_rule;Q4_K_S;--pure --tensor-type ffn_up=q5_k"
  "im_exclude;Q4_K_M;--imatrix IMATRIX --exclude-weights ffn_down"
  "im_include;Q4_0;--imatrix IMATRIX --include-weights attn"
)
# the flags of a case, IMATRIX replaced by $2 (split on spaces, never globbed)
lq_case_flags() { local f=${1##*;}; echo "${f//IMATRIX/$2}"; }
