/* dtype.c — see dtype.h. */
#include "core/dtype.h"

#include <stddef.h>

static const struct {
    const char *name;
    uint32_t blck, bytes; /* elements and bytes per block (ggml-common.h's block structs) */
} ggml_types[LMF_GGML_TYPE_COUNT] = {
    [LMF_GGML_F32] = {"F32", 1, 4},          [LMF_GGML_F16] = {"F16", 1, 2},
    [LMF_GGML_Q4_0] = {"Q4_0", 32, 18},      [LMF_GGML_Q4_1] = {"Q4_1", 32, 20},
    [LMF_GGML_Q5_0] = {"Q5_0", 32, 22},      [LMF_GGML_Q5_1] = {"Q5_1", 32, 24},
    [LMF_GGML_Q8_0] = {"Q8_0", 32, 34},      [LMF_GGML_Q8_1] = {"Q8_1", 32, 36},
    [LMF_GGML_Q2_K] = {"Q2_K", 256, 84},     [LMF_GGML_Q3_K] = {"Q3_K", 256, 110},
    [LMF_GGML_Q4_K] = {"Q4_K", 256, 144},    [LMF_GGML_Q5_K] = {"Q5_K", 256, 176},
    [LMF_GGML_Q6_K] = {"Q6_K", 256, 210},    [LMF_GGML_Q8_K] = {"Q8_K", 256, 292},
    [LMF_GGML_IQ2_XXS] = {"IQ2_XXS", 256, 66}, [LMF_GGML_IQ2_XS] = {"IQ2_XS", 256, 74},
    [LMF_GGML_IQ3_XXS] = {"IQ3_XXS", 256, 98}, [LMF_GGML_IQ1_S] = {"IQ1_S", 256, 50},
    [LMF_GGML_IQ4_NL] = {"IQ4_NL", 32, 18},  [LMF_GGML_IQ3_S] = {"IQ3_S", 256, 110},
    [LMF_GGML_IQ2_S] = {"IQ2_S", 256, 82},   [LMF_GGML_IQ4_XS] = {"IQ4_XS", 256, 136},
    [LMF_GGML_I8] = {"I8", 1, 1},            [LMF_GGML_I16] = {"I16", 1, 2},
    [LMF_GGML_I32] = {"I32", 1, 4},          [LMF_GGML_I64] = {"I64", 1, 8},
    [LMF_GGML_F64] = {"F64", 1, 8},          [LMF_GGML_IQ1_M] = {"IQ1_M", 256, 56},
    [LMF_GGML_BF16] = {"BF16", 1, 2},        [LMF_GGML_TQ1_0] = {"TQ1_0", 256, 54},
    [LMF_GGML_TQ2_0] = {"TQ2_0", 256, 66},   [LMF_GGML_MXFP4] = {"MXFP4", 32, 17},
};

const char *lmf_ggml_type_name(uint32_t type) { return type < LMF_GGML_TYPE_COUNT ? ggml_types[type].name : NULL; }

int lmf_ggml_type_block(uint32_t type, uint32_t *blck_size, uint32_t *blck_bytes) {
    if (!lmf_ggml_type_name(type)) return 0;
    *blck_size = ggml_types[type].blck, *blck_bytes = ggml_types[type].bytes;
    return 1;
}
