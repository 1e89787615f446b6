/* quant_r16.c — the R16 decode layout (quant.h): packing 16 ggml rows into a group, reading a group back to fp32,
 * and the dispatch of lmf_qmatvec_r16 to the variant tables' kernels.
 *
 * Packing runs once per model and the row reader serves the token-embedding lookup, so they are portable C; the
 * k-major reader (the prefill's dequantized slabs) is also the reference table's entry, which the SIMD tables
 * replace. All readers are bit-exact with lmf_dequant_ref of the original rows: the same float operations on the
 * same values. */
#include "kernels/quant.h"

#include "core/dtype.h"
#include "core/status.h"

#include <string.h>

/* bytes of one row's unit: a 32-element block, or a K-quant's 256-element super-block */
static int r16_block_bytes(uint32_t type) {
    switch (type) {
    case LMF_GGML_Q8_0: return 34;
    case LMF_GGML_Q4_0: return 18;
    case LMF_GGML_Q4_1: return 20;
    case LMF_GGML_Q5_0: return 22;
    case LMF_GGML_Q5_1: return 24;
    case LMF_GGML_Q4_K: return 144;
    case LMF_GGML_Q5_K: return 176;
    case LMF_GGML_Q6_K: return 210;
    case LMF_GGML_Q2_K: return 84;
    case LMF_GGML_Q3_K: return 110;
    case LMF_GGML_IQ4_NL: return 18;
    case LMF_GGML_IQ4_XS: return 136;
    default: return 0;
    }
}
static int is_k(uint32_t type) { return type == LMF_GGML_Q4_K || type == LMF_GGML_Q5_K; }
/* Q2_K / Q3_K: 2-bit words (low2_shift), a layout of their own */
static int is_low_k(uint32_t type) { return type == LMF_GGML_Q2_K || type == LMF_GGML_Q3_K; }
/* elements of a unit */
static int r16_unit(uint32_t type) {
    return is_k(type) || is_low_k(type) || type == LMF_GGML_Q6_K || type == LMF_GGML_IQ4_XS ? LMF_QK_K : LMF_QK;
}
/* IQ4_NL / IQ4_XS: nibbles that index lmf_iq4nl_values */
static int is_iq4(uint32_t type) { return type == LMF_GGML_IQ4_NL || type == LMF_GGML_IQ4_XS; }
int lmf_r16_unit(uint32_t type) { return r16_unit(type); }

/* the table's R16 kernel for a type (NULL: that table keeps the type in ggml rows) */
static lmf_qmatvec_fn r16_kernel(const lmf_quant_ops *ops, uint32_t type) {
    switch (type) {
    case LMF_GGML_Q8_0: return ops->q8_0_r16;
    case LMF_GGML_Q4_0: return ops->q4_0_r16;
    case LMF_GGML_Q4_1: return ops->q4_1_r16;
    case LMF_GGML_Q5_0: return ops->q5_0_r16;
    case LMF_GGML_Q5_1: return ops->q5_1_r16;
    case LMF_GGML_Q4_K: return ops->q4_k_r16;
    case LMF_GGML_Q5_K: return ops->q5_k_r16;
    case LMF_GGML_Q6_K: return ops->q6_k_r16;
    case LMF_GGML_Q2_K: return ops->q2_k_r16;
    case LMF_GGML_Q3_K: return ops->q3_k_r16;
    case LMF_GGML_IQ4_NL: return ops->iq4_nl_r16;
    case LMF_GGML_IQ4_XS: return ops->iq4_xs_r16;
    default: return NULL;
    }
}

int lmf_r16_format(uint32_t type, int rows, int n) {
    return r16_block_bytes(type) && rows > 0 && rows % 16 == 0 && n > 0 && n % r16_unit(type) == 0;
}

int lmf_r16_has_kernel(const lmf_quant_ops *ops, uint32_t type) { return r16_kernel(ops, type) != NULL; }

int lmf_r16_supported(uint32_t type, int rows, int n) {
    return lmf_r16_format(type, rows, n) && lmf_r16_has_kernel(lmf_quant(), type);
}

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static void wr32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> 8 * i);
}

static int has_min(uint32_t type) { return type == LMF_GGML_Q4_1 || type == LMF_GGML_Q5_1 || is_k(type); }
static int has_fifth(uint32_t type) {
    return type == LMF_GGML_Q5_0 || type == LMF_GGML_Q5_1 || type == LMF_GGML_Q5_K;
}
/* bit position of element 8c + e inside nibble word j of chunk c */
static int nib_shift(int e) { return (e & 1) ? 16 + 4 * (e >> 1) : 4 * (e >> 1); }
/* bit position of element 8c + e's fifth bit inside fifth-bit word j (quant.h) */
static int fifth_shift(int c, int e) { return ((e & 1) ? 16 : 0) + 4 * (e >> 1) + c; }
/* byte offsets inside a unit group of block s's fifth-bit words and nibble chunks (quant.h) */
static int qh_at(uint32_t type, int s) {
    if (type == LMF_GGML_Q6_K) return 288 + 384 * s + 256;
    return is_k(type) ? 256 + 64 * s : has_min(type) ? 64 : 32;
}
static int nib_at(uint32_t type, int s) {
    if (type == LMF_GGML_Q6_K) return 288 + 384 * s;
    if (type == LMF_GGML_IQ4_XS) return 128 + 256 * s;
    if (is_k(type)) return (has_fifth(type) ? 768 : 256) + 256 * s;
    return qh_at(type, 0) + (has_fifth(type) ? 64 : 0);
}

/* Q6_K's top two bits: element 8c + e of a block in high word c / 2 at bit 16 (e & 1) + 8 (e / 4) + 4 (c & 1) +
 * 2 (e / 2 & 1): byte 2 (e & 1) + e / 4 of the word, where the chunk's nibbles of e sit after v & 0x0f0f0f0f (even
 * pairs) or (v >> 4) & 0x0f0f0f0f (odd pairs), at one of four 2-bit places per chunk and pair parity, so one shift
 * and one mask put all eight beside their nibbles (quant.h) */
static int top_shift(int c, int e) { return ((e & 1) ? 16 : 0) + 8 * (e >> 2) + 4 * (c & 1) + 2 * (e >> 1 & 1); }
/* the word of pair_fields(.., 2) << 8 (c & 1) (the fields in nib_shift's order) in top_shift's: its bits 4-7 and
 * 8-11 of each half swapped */
static uint32_t top_order(uint32_t w) { return (w & 0xf00ff00fu) | (w & 0x00f000f0u) << 4 | (w & 0x0f000f00u) >> 4; }

/* 8 bytes as a little-endian word (x86 and every target this project builds for) */
static uint64_t rd64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}
/* the w-bit fields in the low bits of 16-bit lanes 0..3 of e (w <= 4), side by side in w-bit steps */
static uint32_t lanes_to_fields(uint64_t e, int w) {
    uint64_t t = (e | e >> (16 - w)) & (0xffull << 32 | 0xff) >> (8 - 2 * w);
    return (uint32_t)((t | t >> (32 - 2 * w)) & ((1u << 4 * w) - 1));
}
/* bytes i < 8 of x hold fields f_i < 2^w: even i at w (i / 2) in the low half, odd i at 16 + w (i / 2): the order
 * of nib_shift (w 4) and top_shift (w 2) */
static uint32_t pair_fields(uint64_t x, int w) {
    const uint64_t even = 0x00ff00ff00ff00ffull;
    return lanes_to_fields(x & even, w) | lanes_to_fields(x >> 8 & even, w) << 16;
}
/* bit e of b (< 256) to bit 0 of byte e */
static uint64_t bits_to_bytes(uint32_t b) {
    uint64_t r = b & 0xff;
    r = (r | r << 28) & 0x0000000f0000000full; /* bits 0-3 and 4-7 to the two halves */
    r = (r | r << 14) & 0x0003000300030003ull;
    return (r | r << 7) & 0x0101010101010101ull;
}
#define NIBBLES 0x0f0f0f0f0f0f0f0full
#define LOW2 0x0303030303030303ull
#define LOW1 0x0101010101010101ull

/* row j's 32 bits of elements 8c .. 8c + 7 of block s in a ggml unit (nibbles), and the fifth bits or Q6_K's top
 * two bits or-ed into *fifth (that word's layout: fifth_shift / top_shift) */
#define INLINE static inline __attribute__((always_inline))
INLINE void unit_chunk(uint32_t type, const uint8_t *blk, int s, int c, uint32_t *word, uint32_t *fifth) {
    uint64_t q;
    if (type == LMF_GGML_Q6_K) { /* dq_q6_k's element order: half s / 4, quarter s % 4 */
        int half = s / 4, kq = s % 4;
        q = rd64(blk + 64 * half + 32 * (kq & 1) + 8 * c) >> 4 * (kq >> 1) & NIBBLES;
        *fifth |= pair_fields(rd64(blk + 128 + 32 * half + 8 * c) >> 2 * kq & LOW2, 2) << 8 * (c & 1);
    } else if (type == LMF_GGML_IQ4_XS) { /* each 32-element sub-block's 16 bytes as a Q4_0 block's */
        q = rd64(blk + 8 + 16 * s + 8 * (c & 1)) >> (c >= 2 ? 4 : 0) & NIBBLES;
    } else if (is_k(type)) {
        q = rd64(blk + (has_fifth(type) ? 48 : 16) + 32 * (s / 2) + 8 * c) >> 4 * (s & 1) & NIBBLES;
        if (has_fifth(type)) *fifth |= pair_fields(rd64(blk + 16 + 8 * c) >> s & LOW1, 4) << c;
    } else {
        int at = 2 + (has_min(type) ? 2 : 0); /* the fifth bits, then the nibbles: element k < 16 low, else high */
        q = rd64(blk + at + (has_fifth(type) ? 4 : 0) + 8 * (c & 1)) >> (c >= 2 ? 4 : 0) & NIBBLES;
        if (has_fifth(type)) *fifth |= pair_fields(bits_to_bytes(rd32(blk + at) >> 8 * c & 0xff), 4) << c;
    }
    *word = pair_fields(q, 4);
}

/* Q2_K / Q3_K (quant.h): element e < 16 of half h of a block at bit low2_shift(e) of chunk h's word: byte
 * (e / 2) % 2 + 2 (e % 2), 2-bit slot e / 4, so pair i of the chunk is slot i / 2 of bytes 0 and 2 (even i) or 1 and
 * 3 (odd i). Its Q3_K high bit at bit high_shift(h, e) of the block's high word: slots 0 and 2 of half 0 at bits 2
 * and 6 of the byte, 1 and 3 at 3 and 7, half 1's at 0, 4 and 1, 5, where one shift (none, >> 1, << 2, << 1) puts
 * them above the 2-bit values of (w & 0x33333333) or (w >> 2 & 0x33333333). */
static int low2_shift(int e) { return 8 * ((e >> 1 & 1) + 2 * (e & 1)) + 2 * (e >> 2); }
static int high_shift(int h, int e) {
    int slot = e >> 2;
    return 8 * ((e >> 1 & 1) + 2 * (e & 1)) + (slot & 2 ? 4 : 0) + (h ? 0 : 2) + (slot & 1);
}
/* Q3_K's sixteen 6-bit scales sc - 32 as two's complement fields (sc ^ 32): scale s < 15 at bits 6 (s % 5) of word
 * s / 5, scale 15's bits 2t, 2t + 1 at bits 30, 31 of word t */
static uint32_t k3_words(const uint8_t *scales, int t) {
    uint32_t w = 0;
    for (int k = 0; k < 5; k++) w |= (uint32_t)((lmf_k3_scale(5 * t + k, scales) + 32) ^ 32) << 6 * k;
    return w | (uint32_t)(((lmf_k3_scale(15, scales) + 32) ^ 32) >> 2 * t & 3) << 30;
}
/* IQ4_XS's eight scales ls - 32 as two's complement 6-bit fields: scale ib < 5 at bit 6 ib of word j at 32, scales
 * 5 and 6 at bits 0 and 6 of half j at 96, scale 7's low two bits at bits 30-31 of the word and its high four at
 * 12-15 of the half */
static int iq4xs_field(const uint8_t *g, int j, int ib) {
    uint32_t w = rd32(g + 32 + 4 * j), h = rd16(g + 96 + 2 * j);
    uint32_t v = ib < 5 ? w >> 6 * ib : ib < 7 ? h >> 6 * (ib - 5) : (w >> 30) | (h >> 12) << 2;
    return (int32_t)(v << 26) >> 26;
}
/* Q4_K / Q5_K's eight 6-bit scales and mins (ggml's 12 bytes q) as three words of 6-bit fields: sc0-4 in word 0,
 * m0-4 in word 1, sc5-7 then m5-6 in word 2 (at bits 6 k), m7's bits 2t, 2t + 1 at bits 30-31 of word t */
static void k4_words(const uint8_t *q, uint32_t w[3]) {
    uint8_t sc[8], m[8];
    for (int j = 0; j < 8; j++) lmf_k4_scale_min(j, q, &sc[j], &m[j]);
    w[0] = w[1] = 0, w[2] = (uint32_t)m[5] << 18 | (uint32_t)m[6] << 24;
    for (int k = 0; k < 5; k++) w[0] |= (uint32_t)sc[k] << 6 * k, w[1] |= (uint32_t)m[k] << 6 * k;
    for (int k = 0; k < 3; k++) w[2] |= (uint32_t)sc[5 + k] << 6 * k;
    for (int t = 0; t < 3; t++) w[t] |= (uint32_t)(m[7] >> 2 * t & 3) << 30;
}
/* sub-block s's scale and min from the words of row j (k4_words) */
static void k4_field(const uint8_t *g, int j, int s, int *sc, int *mn) {
    uint32_t w0 = rd32(g + 64 + 4 * j), w1 = rd32(g + 128 + 4 * j), w2 = rd32(g + 192 + 4 * j);
    *sc = (int)((s < 5 ? w0 >> 6 * s : w2 >> 6 * (s - 5)) & 63);
    *mn = (int)(s < 5   ? w1 >> 6 * s & 63
                : s < 7 ? w2 >> 6 * (s - 2) & 63
                        : w0 >> 30 | (w1 >> 30) << 2 | (w2 >> 30) << 4);
}
static int k3_field(const uint8_t *g, int j, int s) {
    if (s < 15) return (int32_t)(rd32(g + 32 + 64 * (s / 5) + 4 * j) << (26 - 6 * (s % 5))) >> 26;
    uint32_t v = 0;
    for (int t = 0; t < 3; t++) v |= (rd32(g + 32 + 64 * t + 4 * j) >> 30) << (26 + 2 * t);
    return (int32_t)v >> 26;
}
/* byte offsets in a Q2_K / Q3_K super-block group: block b's two chunks (and Q3_K's high words after them) */
static int low_k_block_at(uint32_t type, int b) { return type == LMF_GGML_Q3_K ? 224 + 192 * b : 320 + 128 * b; }

/* the fields (p[e] >> sh) & 3 (mask LOW2) or & 1 (LOW1) of 16 bytes p where low2_shift / high_shift put them: element
 * e's at byte (e / 2) % 2 + 2 (e % 2) of the word, shifted by 0 (e < 4), o1 (4-7), o2 (8-11), o3 (12-15) */
static uint32_t spread16(const uint8_t *p, int sh, uint64_t mask, int o1, int o2, int o3) {
    uint64_t x = rd64(p) >> sh & mask, y = rd64(p + 8) >> sh & mask;
    uint32_t w = (uint32_t)x | (uint32_t)(x >> 32) << o1 | (uint32_t)y << o2 | (uint32_t)(y >> 32) << o3;
    return (w & 0xff0000ffu) | (w & 0x0000ff00u) << 8 | (w & 0x00ff0000u) >> 8; /* bytes 1 and 2 swapped */
}

/* one row's Q2_K / Q3_K super-block blk into group g as row j */
static void pack_low_k(uint32_t type, const uint8_t *blk, int j, uint8_t *g) {
    const int q3 = type == LMF_GGML_Q3_K;
    memcpy(g + 2 * j, blk + (q3 ? 108 : 80), 2); /* d */
    if (!q3) memcpy(g + 32 + 2 * j, blk + 82, 2); /* dmin */
    for (int t = 0; t < (q3 ? 3 : 4); t++) /* Q2_K's scale bytes four a word, Q3_K's fields (k3_words) */
        wr32(g + (q3 ? 32 : 64) + 64 * t + 4 * j, q3 ? k3_words(blk + 96, t) : rd32(blk + 4 * t));
    const uint8_t *qs = blk + (q3 ? 32 : 16);
    for (int b = 0; b < 8; b++) {
        uint8_t *o = g + low_k_block_at(type, b);
        uint32_t high = 0;
        for (int h = 0; h < 2; h++) { /* dq_q2_k: element 32 b + 16 h + e from byte 32 (b / 4) + 16 h + e */
            wr32(o + 64 * h + 4 * j, spread16(qs + 32 * (b / 4) + 16 * h, 2 * (b % 4), LOW2, 2, 4, 6));
            if (q3) high |= spread16(blk + 16 * h, b, LOW1, 1, 4, 5) << 2 * (1 - h); /* bit b of hmask[16 h + e] */
        }
        if (q3) wr32(o + 128 + 4 * j, high);
    }
}

/* lmf_r16_pack for one type, inlined into a copy per type (the type's tests fold away) */
INLINE void pack_rows(uint32_t type, int n, const uint8_t *s, size_t row_bytes, uint8_t *g) {
    int bsz = r16_block_bytes(type), nu = n / r16_unit(type), blocks = r16_unit(type) / LMF_QK;
    for (int u = 0; u < nu; u++, g += 16 * bsz) {
        memset(g, 0, (size_t)16 * bsz);
        for (int j = 0; j < 16; j++) {
            const uint8_t *blk = s + (size_t)j * row_bytes + (size_t)u * bsz;
            if (is_low_k(type)) {
                pack_low_k(type, blk, j, g);
                continue;
            }
            if (type == LMF_GGML_Q6_K) /* d, then the 16 int8 scales as four words a row */
                for (int t = 0; t < 4; t++) wr32(g + 32 + 64 * t + 4 * j, rd32(blk + 192 + 4 * t));
            memcpy(g + 2 * j, blk + (type == LMF_GGML_Q6_K ? 208 : 0), 2); /* d */
            if (type == LMF_GGML_Q8_0) {
                for (int p = 0; p < 16; p++) memcpy(g + 32 + 32 * p + 2 * j, blk + 2 + 2 * p, 2);
                continue;
            }
            if (has_min(type)) memcpy(g + 32 + 2 * j, blk + 2, 2); /* m, or a K-quant's dmin */
            if (type == LMF_GGML_IQ4_XS) { /* the eight scales as signed 6-bit fields (iq4xs_field) */
                uint64_t f = 0;
                for (int ib = 0; ib < 8; ib++) f |= (uint64_t)((lmf_iq4xs_scale(ib, blk) + 32) ^ 32) << 6 * ib;
                wr32(g + 32 + 4 * j, (uint32_t)(f & 0x3fffffff) | (uint32_t)(f >> 42 & 3) << 30);
                uint16_t h = (uint16_t)((f >> 30 & 0xfff) | (f >> 44 & 0xf) << 12);
                memcpy(g + 96 + 2 * j, &h, 2);
            }
            if (is_k(type)) {
                uint32_t w[3];
                k4_words(blk + 4, w);
                for (int t = 0; t < 3; t++) wr32(g + 64 + 64 * t + 4 * j, w[t]);
            }
            for (int b = 0; b < blocks; b++) {
                uint32_t fifth = 0, top[2] = {0, 0};
                for (int c = 0; c < 4; c++) {
                    uint32_t word = 0;
                    unit_chunk(type, blk, b, c, &word, type == LMF_GGML_Q6_K ? &top[c / 2] : &fifth);
                    wr32(g + nib_at(type, b) + 64 * c + 4 * j, word);
                }
                if (has_fifth(type)) wr32(g + qh_at(type, b) + 4 * j, fifth);
                if (type == LMF_GGML_Q6_K)
                    for (int t = 0; t < 2; t++) wr32(g + qh_at(type, b) + 64 * t + 4 * j, top_order(top[t]));
            }
        }
    }
}

void lmf_r16_pack(uint32_t type, int n, const void *src, size_t row_bytes, void *dst) {
    LMF_CHECK(r16_block_bytes(type) && n % r16_unit(type) == 0);
    switch (type) {
    case LMF_GGML_Q8_0: pack_rows(LMF_GGML_Q8_0, n, src, row_bytes, dst); break;
    case LMF_GGML_Q4_0: pack_rows(LMF_GGML_Q4_0, n, src, row_bytes, dst); break;
    case LMF_GGML_Q4_1: pack_rows(LMF_GGML_Q4_1, n, src, row_bytes, dst); break;
    case LMF_GGML_Q5_0: pack_rows(LMF_GGML_Q5_0, n, src, row_bytes, dst); break;
    case LMF_GGML_Q5_1: pack_rows(LMF_GGML_Q5_1, n, src, row_bytes, dst); break;
    case LMF_GGML_Q4_K: pack_rows(LMF_GGML_Q4_K, n, src, row_bytes, dst); break;
    case LMF_GGML_Q5_K: pack_rows(LMF_GGML_Q5_K, n, src, row_bytes, dst); break;
    case LMF_GGML_Q2_K: case LMF_GGML_Q3_K: pack_rows(type, n, src, row_bytes, dst); break;
    case LMF_GGML_IQ4_NL: pack_rows(LMF_GGML_IQ4_NL, n, src, row_bytes, dst); break;
    case LMF_GGML_IQ4_XS: pack_rows(LMF_GGML_IQ4_XS, n, src, row_bytes, dst); break;
    default: pack_rows(LMF_GGML_Q6_K, n, src, row_bytes, dst); break;
    }
}

/* element k (< the unit's) of row j in unit group g: the integer q (before ggml's "- 8" / "- 16" for Q4_0 / Q5_0) */
static int r16_q(uint32_t type, const uint8_t *g, int j, int k) {
    if (type == LMF_GGML_Q8_0) return (int8_t)g[32 + 32 * (k / 2) + 2 * j + (k & 1)];
    if (is_low_k(type)) { /* Q3_K: q + 4 (the high bit set) */
        const uint8_t *o = g + low_k_block_at(type, k / 32);
        int h = k / 16 % 2, e = k % 16, q = (int)(rd32(o + 64 * h + 4 * j) >> low2_shift(e)) & 3;
        if (type == LMF_GGML_Q3_K) q |= (int)(rd32(o + 128 + 4 * j) >> high_shift(h, e) & 1) << 2;
        return q;
    }
    int s = k / 32, kk = k % 32;
    int q = (int)(rd32(g + nib_at(type, s) + 64 * (kk / 8) + 4 * j) >> nib_shift(kk % 8)) & 0x0f;
    if (type == LMF_GGML_Q6_K)
        q |= (int)(rd32(g + qh_at(type, s) + 64 * (kk / 16) + 4 * j) >> top_shift(kk / 8, kk % 8) & 3) << 4;
    if (has_fifth(type)) q |= (int)(rd32(g + qh_at(type, s) + 4 * j) >> fifth_shift(kk / 8, kk % 8) & 1) << 4;
    return q;
}

/* row j's scale and min (or offset) for element k of unit group g, as lmf_dequant_ref forms them: a K-quant's
 * d * sc and dmin * m of k's sub-block */
static void r16_scales(uint32_t type, const uint8_t *g, int j, int k, float *d, float *m) {
    *d = lmf_f16_to_f32(rd16(g + 2 * j));
    *m = has_min(type) || type == LMF_GGML_Q2_K ? lmf_f16_to_f32(rd16(g + 32 + 2 * j)) : 0.0f;
    if (type == LMF_GGML_Q2_K) { /* k's sub-block's scale byte: sc | m << 4 */
        int s = k / 16, b = (int)(rd32(g + 64 + 64 * (s / 4) + 4 * j) >> 8 * (s % 4)) & 0xff;
        *d = *d * (float)(b & 0xf), *m = *m * (float)(b >> 4);
        return;
    }
    if (type == LMF_GGML_Q3_K) {
        *d = *d * (float)k3_field(g, j, k / 16);
        return;
    }
    if (type == LMF_GGML_IQ4_XS) {
        *d = *d * (float)iq4xs_field(g, j, k / 32);
        return;
    }
    if (type == LMF_GGML_Q6_K) { /* the int8 scale of k's 16 elements */
        *d = *d * (float)(int8_t)(rd32(g + 32 + 64 * (k / 64) + 4 * j) >> 8 * (k / 16 % 4));
        return;
    }
    if (!is_k(type)) return;
    int sc, mn;
    k4_field(g, j, k / 32, &sc, &mn);
    *d = *d * (float)sc, *m = *m * (float)mn;
}

/* one element exactly as lmf_dequant_ref computes it */
static float r16_value(uint32_t type, int q, float d, float m) {
    if (type == LMF_GGML_Q8_0) return (float)q * d;
    if (type == LMF_GGML_Q4_0) return (float)(q - 8) * d;
    if (type == LMF_GGML_Q5_0) return (float)(q - 16) * d;
    if (type == LMF_GGML_Q6_K) return (float)(q - 32) * d;
    if (type == LMF_GGML_Q3_K) return (float)(q - 4) * d;
    if (is_iq4(type)) return d * (float)lmf_iq4nl_values[q];
    float t = (float)q * d;
    return is_k(type) || type == LMF_GGML_Q2_K ? t - m : t + m;
}

void lmf_r16_dequant_row(uint32_t type, int n, const void *group, int j, float *dst) {
    int bsz = r16_block_bytes(type), unit = r16_unit(type);
    LMF_CHECK(bsz && j >= 0 && j < 16 && n % unit == 0);
    const uint8_t *g = group;
    for (int u = 0; u < n / unit; u++, g += 16 * bsz, dst += unit)
        for (int k = 0; k < unit; k++) {
            float d, m;
            r16_scales(type, g, j, k, &d, &m);
            dst[k] = r16_value(type, r16_q(type, g, j, k), d, m);
        }
}

void lmf_r16_dequant_t_ref(uint32_t type, int n, const void *group, float *dst, size_t ld) {
    int bsz = r16_block_bytes(type), unit = r16_unit(type);
    LMF_CHECK(bsz && n % unit == 0);
    const uint8_t *g = group;
    for (int u = 0; u < n / unit; u++, g += 16 * bsz, dst += (size_t)unit * ld)
        for (int k = 0; k < unit; k++)
            for (int j = 0; j < 16; j++) {
                float d, m;
                r16_scales(type, g, j, k, &d, &m);
                dst[(size_t)k * ld + j] = r16_value(type, r16_q(type, g, j, k), d, m);
            }
}

void lmf_r16_dequant_t(uint32_t type, int n, const void *group, float *dst, size_t ld) {
    LMF_CHECK(r16_block_bytes(type) && n % r16_unit(type) == 0 && lmf_r16_has_kernel(lmf_quant(), type));
    lmf_quant()->dequant_r16(type, n, group, dst, ld);
}

/* the arguments of an R16 product: whole groups, and the ggml row size of n elements */
static void r16_check(uint32_t type, int n, int nrows, size_t row_bytes) {
    LMF_CHECK(lmf_r16_format(type, nrows, n) && row_bytes == (size_t)(n / r16_unit(type)) * r16_block_bytes(type));
}

void lmf_qmatvec_r16_ops(const lmf_quant_ops *ops, uint32_t type, int n, int nrows, const void *W, size_t row_bytes,
                         int ncols, const void *x, size_t x_col_bytes, float *y, int ldy) {
    if (nrows <= 0 || ncols <= 0) return;
    r16_check(type, n, nrows, row_bytes);
    lmf_qmatvec_fn f = r16_kernel(ops, type);
    LMF_CHECK(f);
    f(n, nrows, W, row_bytes, ncols, x, x_col_bytes, y, ldy);
}

int lmf_r16_amx_type(uint32_t type) {
    return type == LMF_GGML_Q8_0 || type == LMF_GGML_Q4_0 || type == LMF_GGML_Q4_1;
}

void lmf_qmatvec_r16(uint32_t type, int n, int nrows, const void *W, size_t row_bytes, int ncols, const void *x,
                     size_t x_col_bytes, float *y, int ldy) {
    const lmf_quant_ops *ops = lmf_quant();
    if (ncols >= LMF_R16_AMX_COLS && ops == &lmf_quant_avx512 && lmf_cpu_amx_int8() && nrows > 0 &&
        lmf_r16_amx_type(type)) {
        r16_check(type, n, nrows, row_bytes);
        lmf_qmatvec_r16_amx(type, n, nrows, W, row_bytes, ncols, x, x_col_bytes, y, ldy);
        return;
    }
    lmf_qmatvec_r16_ops(ops, type, n, nrows, W, row_bytes, ncols, x, x_col_bytes, y, ldy);
}

/* The scalar definition of the R16 product (the reference table's kernels): per 32-element block, the exact integer
 * dot of each row with the int16 column, then acc += dot * (d_w d_x) and the min / offset term m_w s_x (Q4_1) or
 * d_w s_x (Q4_0, subtracted 8 times at the end: sum (q - 8) x = sum q x - 8 sum x). Q5_0's "- 16" stays in the
 * integer dot (q - 16 is a signed 5-bit value: |dot| <= 32 * 16 * 32767 < 2^24, exact in float too); Q5_1 is Q4_1
 * with a fifth bit. Q4_K / Q5_K: each 32-element sub-block is one block, with the row-major reference's terms
 * ((d sc) d_x) dot - (dmin m) s_x. Q6_K: each 16-element half of a block with its own ((d sc) d_x) and q - 32 in the
 * integer dot (|dot| <= 16 * 32 * 32767 < 2^24), as the row-major reference. Q2_K / Q3_K: as Q6_K (Q3_K's q - 4);
 * Q2_K's min term as a sum over each super-block of m (d_x sum(x)) a 16-element half, times dmin, subtracted at the
 * end. */
static void r16_mv_ref(uint32_t type, int n, int nrows, const void *W, size_t rb, int ncols, const void *x,
                       size_t xb, float *y, int ldy) {
    int bsz = r16_block_bytes(type), nb = n / LMF_QK, per = r16_unit(type) / LMF_QK;
    int q_offset = type == LMF_GGML_Q5_0 ? 16 : type == LMF_GGML_Q6_K ? 32 : type == LMF_GGML_Q3_K ? 4 : 0;
    int halves = type == LMF_GGML_Q6_K || is_low_k(type);
    for (int r0 = 0; r0 < nrows; r0 += 16) {
        const uint8_t *G = (const uint8_t *)W + (size_t)r0 * rb;
        for (int c = 0; c < ncols; c++) {
            const lmf_block_q16a *xc = (const lmf_block_q16a *)((const char *)x + (size_t)c * xb);
            float acc[16] = {0}, acc2[16] = {0}, msum[16] = {0};
            for (int b = 0; b < nb; b++) {
                const uint8_t *g = G + (size_t)(b / per) * 16 * bsz;
                int k0 = b % per * LMF_QK;
                for (int j = 0; j < 16; j++) {
                    if (halves) { /* two 16-element sub-blocks, each with its own scale */
                        for (int h = 0; h < 2; h++) {
                            int32_t dot = 0, xs = 0;
                            for (int k = 16 * h; k < 16 * h + 16; k++) {
                                dot += (r16_q(type, g, j, k0 + k) - q_offset) * xc[b].qs[k];
                                xs += xc[b].qs[k];
                            }
                            float dw, mw;
                            r16_scales(type, g, j, k0 + 16 * h, &dw, &mw);
                            acc[j] += (dw * xc[b].d) * (float)dot;
                            if (type == LMF_GGML_Q2_K) { /* m: the sub-block's scale byte's high nibble */
                                int s = k0 / 16 + h;
                                int m = (int)(rd32(g + 64 + 64 * (s / 4) + 4 * j) >> (8 * (s % 4) + 4)) & 15;
                                msum[j] += (float)m * (xc[b].d * (float)xs);
                            }
                        }
                        if (type == LMF_GGML_Q2_K && b % per == per - 1)
                            acc2[j] += lmf_f16_to_f32(rd16(g + 32 + 2 * j)) * msum[j], msum[j] = 0.0f;
                        continue;
                    }
                    int32_t dot = 0;
                    for (int k = 0; k < 32; k++) {
                        int q = r16_q(type, g, j, k0 + k);
                        dot += (is_iq4(type) ? lmf_iq4nl_values[q] : q - q_offset) * xc[b].qs[k];
                    }
                    float dw, mw;
                    r16_scales(type, g, j, k0, &dw, &mw);
                    if (is_k(type)) {
                        acc[j] += (dw * xc[b].d) * (float)dot - mw * xc[b].s;
                        continue;
                    }
                    acc[j] += (float)dot * (dw * xc[b].d);
                    if (has_min(type)) acc2[j] += mw * xc[b].s;
                    if (type == LMF_GGML_Q4_0) acc2[j] += dw * xc[b].s;
                }
            }
            for (int j = 0; j < 16; j++)
                y[(size_t)c * ldy + r0 + j] = has_min(type) && !is_k(type) ? acc[j] + acc2[j]
                                              : type == LMF_GGML_Q4_0      ? acc[j] - 8.0f * acc2[j]
                                              : type == LMF_GGML_Q2_K      ? acc[j] - acc2[j]
                                                                           : acc[j];
        }
    }
}

#define R16_REF(name, TYPE)                                                                                        \
    void name(int n, int nrows, const void *W, size_t rb, int ncols, const void *x, size_t xb, float *y, int ldy) { \
        r16_mv_ref(TYPE, n, nrows, W, rb, ncols, x, xb, y, ldy);                                                   \
    }
R16_REF(lmf_r16_q8_0_ref, LMF_GGML_Q8_0)
R16_REF(lmf_r16_q4_0_ref, LMF_GGML_Q4_0)
R16_REF(lmf_r16_q4_1_ref, LMF_GGML_Q4_1)
R16_REF(lmf_r16_q5_0_ref, LMF_GGML_Q5_0)
R16_REF(lmf_r16_q5_1_ref, LMF_GGML_Q5_1)
R16_REF(lmf_r16_q4_k_ref, LMF_GGML_Q4_K)
R16_REF(lmf_r16_q5_k_ref, LMF_GGML_Q5_K)
R16_REF(lmf_r16_q6_k_ref, LMF_GGML_Q6_K)
R16_REF(lmf_r16_q2_k_ref, LMF_GGML_Q2_K)
R16_REF(lmf_r16_q3_k_ref, LMF_GGML_Q3_K)
R16_REF(lmf_r16_iq4_nl_ref, LMF_GGML_IQ4_NL)
R16_REF(lmf_r16_iq4_xs_ref, LMF_GGML_IQ4_XS)
