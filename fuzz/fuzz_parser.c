/* fuzz_parser.c — libFuzzer harness over tests/fuzz_targets.h; LMF_FUZZ_TARGET selects the parser
 * (fuzz_shard, fuzz_checkpoint, fuzz_safetensors, fuzz_gguf, fuzz_model, fuzz_hf, fuzz_lora, fuzz_config,
 * fuzz_tokenizer_json, fuzz_encode, fuzz_toml, fuzz_sft, fuzz_jinja). Built and run by `make fuzz`. */
#include "fuzz_targets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    LMF_FUZZ_TARGET(data, size);
    return 0;
}
