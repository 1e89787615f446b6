/* dequant.h — ggml tensor rows to fp32 (for loading GGUF weights into the fp32 model).
 *
 * Block formats (little-endian; a row of n elements is n / block_size consecutive blocks):
 *   F32   4-byte IEEE float                      F16 / BF16  2-byte half / bfloat16
 *   Q8_0  34 bytes: f16 d, 32 x int8 q           x = d * q
 *   Q4_0  18 bytes: f16 d, 16 bytes of nibbles   x = d * (q - 8)
 *   Q4_1  20 bytes: f16 d, f16 m, 16 bytes       x = d * q + m
 * In the 4-bit formats byte j of the nibbles holds element j (low nibble) and element j + 16 (high nibble). */
#ifndef LMF_MODEL_DEQUANT_H
#define LMF_MODEL_DEQUANT_H

#include "lmforge.h"

#include <stddef.h>
#include <stdint.h>

float lmf_f16_to_f32(uint16_t h);
float lmf_bf16_to_f32(uint16_t h);

/* 1 if lmf_dequant_row handles ggml type `type`, else 0. */
int lmf_dequant_supported(uint32_t type);

/* Dequantizes n elements (a multiple of the type's block size) starting at src, which must be the start of a
 * block, into dst. Fails with LMF_ERR_FORMAT naming `what` (e.g. the tensor) and the type when the type is not
 * supported or n is not a whole number of blocks. */
lmf_status lmf_dequant_row(uint32_t type, const void *src, float *dst, size_t n, const char *what);

#endif
