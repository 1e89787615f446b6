/* fuzz_parser.c — libFuzzer harness over tests/fuzz_targets.h; LMF_FUZZ_TARGET selects the parser
 * (fuzz_shard, fuzz_checkpoint, fuzz_safetensors, fuzz_gguf, fuzz_model, fuzz_hf, fuzz_lora, fuzz_config,
 * fuzz_tokenizer_json, fuzz_encode, fuzz_toml, fuzz_sft, fuzz_jinja, fuzz_spm_model, ...). Built and run by `make
 * fuzz`. */
#include "fuzz_targets.h"

/* One OpenMP thread unless the caller says otherwise: the seeds are tiny models, so extra threads only spin in
 * the barriers between regions (3-7x fewer executions a second measured); libFuzzer's -jobs / -workers use the
 * other cores. libomp reads the variable at its first parallel region, after this. */
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    setenv("OMP_NUM_THREADS", "1", 0);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    LMF_FUZZ_TARGET(data, size);
    return 0;
}
