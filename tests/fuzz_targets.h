/* fuzz_targets.h — one function per parser of untrusted input, each taking arbitrary bytes.
 *
 * Shared by the deterministic mutation test (tests/test_fuzz.c, run by ctest and under ASan) and the libFuzzer
 * harnesses (fuzz/, `make fuzz`). A target must never crash, hang or leak, whatever the bytes; it returns whether
 * the parser accepted them. Parsers that read files get the bytes through a temporary file. */
#ifndef LMF_TESTS_FUZZ_TARGETS_H
#define LMF_TESTS_FUZZ_TARGETS_H

#include "io/safetensors.h"
#include "io/shard.h"
#include "train/checkpoint.h"
#include "train/train_config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *fuzz_file(const uint8_t *data, size_t n) {
    static char path[64];
    if (!path[0]) snprintf(path, sizeof path, "/tmp/lmf_fuzz_%d.bin", (int)getpid());
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (n) fwrite(data, 1, n, f);
    fclose(f);
    return path;
}

static int fuzz_shard(const uint8_t *data, size_t n) {
    lmf_shard *s;
    if (lmf_shard_open(fuzz_file(data, n), &s) != LMF_OK) return 0;
    volatile uint32_t sum = 0; /* touch every token: a wrong size check would read out of bounds */
    for (uint64_t i = 0; i < s->n_tokens; i++) sum += lmf_shard_token(s, i);
    lmf_shard_close(s);
    return 1;
}

static int fuzz_checkpoint(const uint8_t *data, size_t n) {
    lmf_checkpoint ck;
    if (lmf_checkpoint_load(fuzz_file(data, n), &ck) != LMF_OK) return 0;
    volatile float sum = 0;
    for (uint64_t i = 0; i < ck.num_params; i++) sum += ck.params[i] + ck.m[i] + ck.v[i];
    lmf_train_config c;
    lmf_train_config_default(&c);
    lmf_train_config_parse(&c, ck.config_text, "fuzz");
    lmf_checkpoint_free(&ck);
    return 1;
}

static int fuzz_safetensors(const uint8_t *data, size_t n) {
    lmf_safetensors *st;
    if (lmf_safetensors_open(fuzz_file(data, n), &st) != LMF_OK) return 0;
    volatile uint8_t x = 0;
    for (int i = 0; i < st->n_tensors; i++)
        for (size_t b = 0; b < st->tensors[i].nbytes; b++) x ^= ((const uint8_t *)st->tensors[i].data)[b];
    lmf_safetensors_close(st);
    return 1;
}

static int fuzz_config(const uint8_t *data, size_t n) {
    char *text = malloc(n + 1);
    memcpy(text, data, n);
    text[n] = 0;
    lmf_train_config c;
    lmf_train_config_default(&c);
    int ok = lmf_train_config_parse(&c, text, "fuzz") == LMF_OK;
    if (ok) {
        char *back = lmf_train_config_to_text(&c);
        free(back);
        lmf_train_config_validate(&c);
    }
    free(text);
    return ok;
}

#endif
