/* quant.c — picks the quantized-kernel table for this CPU once and routes the public entry points (see quant.h).
 *
 * The activation format of the integer kernels (int16 by default, int8 with LMF_QACT=int8) is read once by
 * lmf_qact_get(); lmf_qinput_bytes / lmf_qinput_convert / lmf_qmatvec all follow it, so a caller that uses the three
 * together never sees it.
 *
 * Q5_0, Q5_1, the K-quants (Q2_K..Q6_K) and IQ4_NL / IQ4_XS always read int16 activation blocks. Every table has a
 * kernel for every type lmf_dequant_ref reads (until session 30 Q2_K / Q3_K took a dequantize-then-fp32 path). */
#include "kernels/quant.h"

#include "core/cpu.h"
#include "core/dtype.h"
#include "core/status.h"

#include <stdlib.h>
#include <string.h>

const lmf_quant_ops *lmf_quant_variant(lmf_isa isa) {
    lmf_isa best = lmf_cpu_best_isa();
    switch (isa) {
    case LMF_ISA_REF:
        return &lmf_quant_ref;
    case LMF_ISA_AVX2:
        /* compiled with -mavx2 -mfma -mf16c */
        if (best >= LMF_ISA_AVX2 && lmf_cpu_has(LMF_CPU_F16C) && lmf_quant_avx2.name) return &lmf_quant_avx2;
        return NULL;
    case LMF_ISA_AVX512:
        /* compiled with AVX-512 F/DQ/BW/VL + VNNI (+ F16C, which AVX-512F machines have) */
        if (best >= LMF_ISA_AVX512 && lmf_cpu_has(LMF_CPU_AVX512VNNI) && lmf_cpu_has(LMF_CPU_F16C) &&
            lmf_quant_avx512.name)
            return &lmf_quant_avx512;
        return NULL;
    }
    return NULL;
}

const lmf_quant_ops *lmf_quant(void) {
    static const lmf_quant_ops *ops;
    if (!ops) {
        const lmf_quant_ops *o = NULL;
        for (int isa = (int)lmf_cpu_isa(); !o && isa >= 0; isa--) o = lmf_quant_variant((lmf_isa)isa);
        ops = o ? o : &lmf_quant_ref;
    }
    return ops;
}

const char *lmf_qact_env_rejected(void) {
    const char *env = getenv("LMF_QACT");
    return env && *env && strcmp(env, "int8") && strcmp(env, "int16") ? env : NULL;
}

lmf_qact lmf_qact_get(void) {
    static int cached = -1;
    if (cached < 0) {
        const char *env = getenv("LMF_QACT");
        cached = env && !strcmp(env, "int8") ? LMF_QACT_INT8 : LMF_QACT_INT16; /* invalid: see lmf_qact_env_rejected */
    }
    return (lmf_qact)cached;
}

static int decode_streams; /* 0: not chosen yet */

int lmf_decode_streams(void) {
    int s = __atomic_load_n(&decode_streams, __ATOMIC_RELAXED);
    if (s) return s;
    const char *env = getenv("LMF_DECODE_STREAMS");
    s = env && env[0] >= '1' && env[0] <= '4' && !env[1] ? env[0] - '0'
                                                         : lmf_cpu_vendor_get() == LMF_VENDOR_AMD &&
                                                                   lmf_cpu_family() >= 25 ? 1 : 4;
    __atomic_store_n(&decode_streams, s, __ATOMIC_RELAXED); /* every thread computes the same value */
    return s;
}

void lmf_decode_streams_set(int n) { __atomic_store_n(&decode_streams, n >= 1 && n <= 4 ? n : 0, __ATOMIC_RELAXED); }

static int is_int_type(uint32_t type) {
    return type == LMF_GGML_Q8_0 || type == LMF_GGML_Q4_0 || type == LMF_GGML_Q4_1;
}

/* the activation blocks type's kernel reads (-1: fp32 columns). Q5_0, Q5_1, Q2_K..Q6_K have int16 kernels only:
 * LMF_QACT=int8 is a comparison mode for the three older formats, and a second set of kernels for these would only
 * add a less accurate path nobody asked for. */
static int act_of(lmf_qact act, uint32_t type) {
    if (is_int_type(type)) return (int)act;
    switch (type) {
    case LMF_GGML_Q5_0: case LMF_GGML_Q5_1: case LMF_GGML_Q2_K: case LMF_GGML_Q3_K: case LMF_GGML_Q4_K:
    case LMF_GGML_Q5_K: case LMF_GGML_Q6_K: case LMF_GGML_IQ4_NL: case LMF_GGML_IQ4_XS:
        return (int)LMF_QACT_INT16;
    default: return -1;
    }
}

int lmf_qmatvec_supported(uint32_t type) { return lmf_dequant_ref_supported(type); }

size_t lmf_qinput_bytes_act(lmf_qact act, uint32_t type, int n) {
    int a = act_of(act, type);
    if (a >= 0) return (size_t)(n / LMF_QK) * (a == LMF_QACT_INT8 ? sizeof(lmf_block_q8a) : sizeof(lmf_block_q16a));
    return (size_t)n * sizeof(float);
}

size_t lmf_qinput_bytes(uint32_t type, int n) { return lmf_qinput_bytes_act(lmf_qact_get(), type, n); }

int lmf_qinput_format(uint32_t type) { return act_of(lmf_qact_get(), type); }

void lmf_qinput_convert_ops(const lmf_quant_ops *ops, lmf_qact act, uint32_t type, const float *x, int n, void *out) {
    int a = act_of(act, type);
    if (a >= 0) {
        LMF_CHECK(n % LMF_QK == 0);
        if (a == LMF_QACT_INT8) ops->quantize_q8a(x, n, out);
        else ops->quantize_q16a(x, n, out);
    } else {
        memcpy(out, x, (size_t)n * sizeof(float));
    }
}

void lmf_qinput_convert(uint32_t type, const float *x, int n, void *out) {
    lmf_qinput_convert_ops(lmf_quant(), lmf_qact_get(), type, x, n, out);
}

void lmf_qmatvec_ops(const lmf_quant_ops *ops, lmf_qact act, uint32_t type, int n, int nrows, const void *W,
                     size_t w_row_bytes, int ncols, const void *x, size_t x_col_bytes, float *y, int ldy) {
    if (nrows <= 0 || ncols <= 0) return;
    lmf_qmatvec_fn f = NULL;
    int i8 = act == LMF_QACT_INT8;
    switch (type) {
    case LMF_GGML_Q8_0: f = i8 ? ops->q8_0_i8 : ops->q8_0; break;
    case LMF_GGML_Q4_0: f = i8 ? ops->q4_0_i8 : ops->q4_0; break;
    case LMF_GGML_Q4_1: f = i8 ? ops->q4_1_i8 : ops->q4_1; break;
    case LMF_GGML_Q5_0: f = ops->q5_0; break;
    case LMF_GGML_Q5_1: f = ops->q5_1; break;
    case LMF_GGML_Q4_K: f = ops->q4_k; break;
    case LMF_GGML_Q5_K: f = ops->q5_k; break;
    case LMF_GGML_Q6_K: f = ops->q6_k; break;
    case LMF_GGML_Q2_K: f = ops->q2_k; break;
    case LMF_GGML_Q3_K: f = ops->q3_k; break;
    case LMF_GGML_IQ4_NL: f = ops->iq4_nl; break;
    case LMF_GGML_IQ4_XS: f = ops->iq4_xs; break;
    case LMF_GGML_F32: f = ops->f32; break;
    case LMF_GGML_F16: f = ops->f16; break;
    case LMF_GGML_BF16: f = ops->bf16; break;
    default: break;
    }
    LMF_CHECK(f && (act_of(act, type) < 0 || n % LMF_QK == 0)); /* every table has every readable type's kernel */
    f(n, nrows, W, w_row_bytes, ncols, x, x_col_bytes, y, ldy);
}

void lmf_qmatvec(uint32_t type, int n, int nrows, const void *W, size_t w_row_bytes, int ncols, const void *x,
                 size_t x_col_bytes, float *y, int ldy) {
    lmf_qmatvec_ops(lmf_quant(), lmf_qact_get(), type, n, nrows, W, w_row_bytes, ncols, x, x_col_bytes, y, ldy);
}

void lmf_dequant_fast(uint32_t type, const void *src, float *dst, size_t n) { lmf_quant()->dequant(type, src, dst, n); }

void lmf_quantize_weighted_fast(uint32_t type, const float *x, void *out, size_t n, const float *qw) {
    /* Q8_0 and the float types take no importance (ggml's quantize_q8_0): the table's own quantizers, same bytes */
    int weighs = type != LMF_GGML_Q8_0 && type != LMF_GGML_F32 && type != LMF_GGML_F16 && type != LMF_GGML_BF16;
    if (qw && weighs) lmf_quantize_weighted(type, x, out, n, qw, lmf_quant());
    else lmf_quantize_fast(type, x, out, n);
}

void lmf_quantize_fast(uint32_t type, const float *x, void *out, size_t n) {
    if (type == LMF_GGML_Q4_K || type == LMF_GGML_Q5_K || type == LMF_GGML_Q6_K)
        lmf_quantize_kquant(type, x, out, n / 256, lmf_quant()->kq_fit);
    else if (type == LMF_GGML_Q8_0 || type == LMF_GGML_Q4_0 || type == LMF_GGML_Q4_1 || type == LMF_GGML_Q5_0 ||
             type == LMF_GGML_Q5_1)
        lmf_quant()->quantize_blocks(type, x, out, n / 32);
    else if (type == LMF_GGML_Q2_K || type == LMF_GGML_Q3_K)
        lmf_quantize_kquant_low(type, x, out, n / 256, lmf_quant());
    else if (type == LMF_GGML_IQ4_NL || type == LMF_GGML_IQ4_XS)
        lmf_quantize_iq4(type, x, out, n, NULL, lmf_quant()->iq4_scales);
    else
        lmf_quantize_row(type, x, out, n);
}
