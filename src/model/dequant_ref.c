/* dequant_ref.c — scalar reference dequantization of ggml types (see dequant.h). */
#include "model/dequant.h"

#include "core/status.h"
#include "io/gguf.h"

#include <math.h>
#include <string.h>

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

float lmf_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) & 1u, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    float v;
    if (exp == 0) v = ldexpf((float)man, -24);                      /* zero / subnormal: man * 2^-24 */
    else if (exp == 31) v = man ? NAN : INFINITY;
    else v = ldexpf((float)(man | 0x400u), (int)exp - 25);          /* (1024 + man) * 2^(exp - 15 - 10) */
    return sign ? -v : v;
}

float lmf_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

int lmf_dequant_supported(uint32_t type) {
    switch (type) {
    case LMF_GGML_F32: case LMF_GGML_F16: case LMF_GGML_BF16: case LMF_GGML_Q8_0: case LMF_GGML_Q4_0:
    case LMF_GGML_Q4_1: return 1;
    default: return 0;
    }
}

lmf_status lmf_dequant_row(uint32_t type, const void *src, float *dst, size_t n, const char *what) {
    const uint8_t *p = src;
    const char *tn = lmf_ggml_type_name(type);
    if (!lmf_dequant_supported(type))
        return lmf_fail(LMF_ERR_FORMAT, "%s: ggml type %s (%u) is not supported (supported: F32, F16, BF16, Q8_0, "
                        "Q4_0, Q4_1)", what, tn ? tn : "unknown", type);
    uint32_t bs = 1, bb = 0;
    lmf_ggml_type_block(type, &bs, &bb);
    if (n % bs)
        return lmf_fail(LMF_ERR_FORMAT, "%s: %zu elements is not a whole number of %s blocks of %u", what, n, tn, bs);
    switch (type) {
    case LMF_GGML_F32:
        memcpy(dst, p, n * sizeof(float));
        break;
    case LMF_GGML_F16:
        for (size_t i = 0; i < n; i++) dst[i] = lmf_f16_to_f32(rd16(p + 2 * i));
        break;
    case LMF_GGML_BF16:
        for (size_t i = 0; i < n; i++) dst[i] = lmf_bf16_to_f32(rd16(p + 2 * i));
        break;
    case LMF_GGML_Q8_0:
        for (size_t b = 0; b < n / 32; b++, p += 34, dst += 32) {
            float d = lmf_f16_to_f32(rd16(p));
            for (int j = 0; j < 32; j++) dst[j] = d * (float)(int8_t)p[2 + j];
        }
        break;
    case LMF_GGML_Q4_0:
        for (size_t b = 0; b < n / 32; b++, p += 18, dst += 32) {
            float d = lmf_f16_to_f32(rd16(p));
            for (int j = 0; j < 16; j++) {
                dst[j] = d * (float)((p[2 + j] & 0x0f) - 8);
                dst[j + 16] = d * (float)((p[2 + j] >> 4) - 8);
            }
        }
        break;
    case LMF_GGML_Q4_1:
        for (size_t b = 0; b < n / 32; b++, p += 20, dst += 32) {
            float d = lmf_f16_to_f32(rd16(p)), m = lmf_f16_to_f32(rd16(p + 2));
            for (int j = 0; j < 16; j++) {
                dst[j] = d * (float)(p[4 + j] & 0x0f) + m;
                dst[j + 16] = d * (float)(p[4 + j] >> 4) + m;
            }
        }
        break;
    }
    return LMF_OK;
}
