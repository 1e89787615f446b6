/* dequant_ref.c — checked dequantization of ggml types (see dequant.h); the formats themselves are defined once,
 * in kernels/quant_ref.c, because the kernels layer needs them and may not include model/. */
#include "model/dequant.h"

#include "core/status.h"
#include "io/gguf.h"

int lmf_dequant_supported(uint32_t type) { return lmf_dequant_ref_supported(type); }

lmf_status lmf_dequant_row(uint32_t type, const void *src, float *dst, size_t n, const char *what) {
    const char *tn = lmf_ggml_type_name(type);
    if (!lmf_dequant_supported(type))
        return lmf_fail(LMF_ERR_FORMAT,
                        "%s: ggml type %s (%u) is not supported (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, "
                        "Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS)",
                        what, tn ? tn : "unknown", type);
    uint32_t bs = 1, bb = 0;
    lmf_ggml_type_block(type, &bs, &bb);
    if (n % bs)
        return lmf_fail(LMF_ERR_FORMAT, "%s: %zu elements is not a whole number of %s blocks of %u", what, n, tn, bs);
    lmf_dequant_ref(type, src, dst, n);
    return LMF_OK;
}
