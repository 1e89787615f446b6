/* dequant.h — ggml tensor rows to fp32, with the input checks a loader needs (for loading GGUF weights into the
 * fp32 model and for prefill's dequantized slabs).
 *
 * Supported types: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS.
 * The block formats and their scalar definitions live in the kernels layer (kernels/quant.h, quant_ref.c), next to
 * the SIMD kernels that read them; this module adds the checks on untrusted input (type, whole blocks) and the error
 * messages. */
#ifndef LMF_MODEL_DEQUANT_H
#define LMF_MODEL_DEQUANT_H

#include "lmforge.h"
#include "kernels/quant.h" /* lmf_f16_to_f32, lmf_bf16_to_f32, lmf_dequant_ref */

#include <stddef.h>
#include <stdint.h>

/* 1 if lmf_dequant_row handles ggml type `type`, else 0. */
int lmf_dequant_supported(uint32_t type);

/* Dequantizes n elements (a multiple of the type's block size) starting at src, which must be the start of a
 * block, into dst (the scalar reference; bit-exact with ggml's dequantize_row_* and gguf-py). Fails with
 * LMF_ERR_FORMAT naming `what` (e.g. the tensor) and the type when the type is not supported or n is not a whole
 * number of blocks. */
lmf_status lmf_dequant_row(uint32_t type, const void *src, float *dst, size_t n, const char *what);

#endif
