/* dtype.h — the tensor element types: ggml's type numbers (F32, F16, BF16, the Q* block formats) and their block
 * table (elements and bytes per block). Every layer uses them: kernels quantize and dequantize these blocks, io reads
 * and writes them in GGUF and safetensors, the model stores weights in them. They live here, below the kernels, so
 * the kernels need no file-format header; io/gguf.h includes this one. */
#ifndef LMF_CORE_DTYPE_H
#define LMF_CORE_DTYPE_H

#include <stdint.h>

/* ggml tensor types (the numbers are GGUF's; gaps are types ggml removed). */
typedef enum {
    LMF_GGML_F32 = 0,
    LMF_GGML_F16 = 1,
    LMF_GGML_Q4_0 = 2,
    LMF_GGML_Q4_1 = 3,
    LMF_GGML_Q5_0 = 6,
    LMF_GGML_Q5_1 = 7,
    LMF_GGML_Q8_0 = 8,
    LMF_GGML_Q8_1 = 9,
    LMF_GGML_Q2_K = 10,
    LMF_GGML_Q3_K = 11,
    LMF_GGML_Q4_K = 12,
    LMF_GGML_Q5_K = 13,
    LMF_GGML_Q6_K = 14,
    LMF_GGML_Q8_K = 15,
    LMF_GGML_IQ2_XXS = 16,
    LMF_GGML_IQ2_XS = 17,
    LMF_GGML_IQ3_XXS = 18,
    LMF_GGML_IQ1_S = 19,
    LMF_GGML_IQ4_NL = 20,
    LMF_GGML_IQ3_S = 21,
    LMF_GGML_IQ2_S = 22,
    LMF_GGML_IQ4_XS = 23,
    LMF_GGML_I8 = 24,
    LMF_GGML_I16 = 25,
    LMF_GGML_I32 = 26,
    LMF_GGML_I64 = 27,
    LMF_GGML_F64 = 28,
    LMF_GGML_IQ1_M = 29,
    LMF_GGML_BF16 = 30,
    LMF_GGML_TQ1_0 = 34,
    LMF_GGML_TQ2_0 = 35,
    LMF_GGML_MXFP4 = 39,
    LMF_GGML_TYPE_COUNT = 40
} lmf_ggml_type;

/* Name ("Q4_1") of a ggml type, or NULL for a number that is not a known type. */
const char *lmf_ggml_type_name(uint32_t type);
/* Elements per block and bytes per block of a known type (F32: 1 and 4; Q4_1: 32 and 20); 0 if unknown. */
int lmf_ggml_type_block(uint32_t type, uint32_t *blck_size, uint32_t *blck_bytes);

#endif
