/* attention_amx.c — training attention in bf16 (lmf_attention_*_b16) on AMX-BF16 tiles, forward and backward.
 *
 * The products path (attention.c) runs each query block's six products through lmf_sgemm_bf16_x: products 64 deep
 * (the head size, or a query block) whose C blocks go out to memory after 8 tile products, a packing pass per
 * operand per call, and a softmax along rows of the scores (a horizontal max and sum a row). Here the products run
 * on operands laid out once per (batch, KV head) for the tiles, every intermediate stays in the thread's scratch
 * (L1 / L2), and the block of 32 queries is held transposed, a query per vector lane:
 *
 *   S^T = K Q^T         (keys x 32 queries; A: K's bf16 rows, B: Q^T as pair rows)
 *   P^T = softmax down each column: the max, the sum and their use are vertical vector operations (Gemma 2: of the
 *         scores soft-capped first, cap tanh(scale s / cap), the capped ones kept for the backward's derivative)
 *   O^T = V^T P^T       (hs x 32, then transposed into the output rows)
 *   backward: dP^T = V dO^T, dS^T = P^T (dP^T - t) scale, dV += P^T dO, dK += dS^T Q (32 queries deep, summed in
 *   an fp32 [T][hs] buffer over the group's heads and the query blocks, copied out once), dQ^T = K^T dS^T
 *
 * A operands are bf16 rows (a tile: 16 rows, 32 along the depth); B operands "pair rows": 32-bit element [p][n]
 * holds depth 2p and 2p + 1 of column n, so a tile is 16 pair rows of 16 columns at any offset. The softmax writes
 * P^T and dS^T in bf16 in whichever form their products take.
 *
 * A block's keys run from its first query's start rounded down to 32 (kb0) to its last query, whole 32-key blocks:
 * masked entries (right of the diagonal, left of a packed row's start or a sliding window's) get probability 0 and
 * gradient 0, as in attention.c. The sums are attention.c's (bf16 inputs, fp32 sums, the fp32 softmax of
 * vec_avx512.c's exp), in the tiles' order: equal within fp32 rounding, and where that flips a bf16 rounding of P or
 * dS, within 2^-8 of it. */
#include "kernels/kernels.h"
#include "core/alloc.h"
#include "core/cpu.h"
#include "core/status.h"
#include "kernels/amx_tiles.h"
#include "kernels/exp_avx512.h"
#include "kernels/transpose16.h"

#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

#define RB 32

int lmf_attention_amx_ok(int hs) { return hs > 0 && hs % 32 == 0 && lmf_cpu_amx(); }

/* lanes [a, b) of a 16-lane chunk, clipped to it */
static inline __mmask16 span(int a, int b) {
    a = a < 0 ? 0 : a, b = b > 16 ? 16 : b;
    return b <= a ? 0 : (__mmask16)(((1u << (b - a)) - 1) << a);
}

/* The lines of `rows` rows of `bytes` (ld bytes apart) from p, fetched ahead (for writing: `w`): the next query
 * block's rows, whose strided lines (2-4 a row, rows a few KiB apart) the hardware prefetchers do not follow */
static inline void ahead(const void *p, long ld, int rows, int bytes, int w) {
    for (int r = 0; r < rows; r++)
        for (int b = 0; b < bytes; b += 64)
            if (w) _mm_prefetch((const char *)p + r * ld + b, _MM_HINT_ET0);
            else _mm_prefetch((const char *)p + r * ld + b, _MM_HINT_T0);
}

/* C[32 x 32] (rows ldc floats apart) = (acc ? C : 0) + A B over `steps` depth steps of 32: A's 32 bf16 rows lda bytes
 * apart, a step 64 bytes on along them; B's pair rows ldb bytes apart, a step 16 pair rows on, columns 16-31 64
 * bytes on */
static inline void block(float *c, long ldc, int acc, const void *a, long lda, const void *b, long ldb, int steps) {
    if (acc) {
        _tile_loadd(0, c, ldc * 4);
        _tile_loadd(1, c + 16, ldc * 4);
        _tile_loadd(2, c + 16 * ldc, ldc * 4);
        _tile_loadd(3, c + 16 * ldc + 16, ldc * 4);
    } else {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
    }
    const char *pa = a, *pb = b;
    for (int s = 0; s < steps; s++, pa += 64, pb += 16 * ldb) {
        _tile_loadd(4, pa, lda);
        _tile_loadd(6, pb, ldb);
        _tile_dpbf16ps(0, 4, 6);
        _tile_loadd(7, pb + 64, ldb);
        _tile_dpbf16ps(1, 4, 7);
        _tile_loadd(5, pa + 16 * lda, lda);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    _tile_stored(0, c, ldc * 4);
    _tile_stored(1, c + 16, ldc * 4);
    _tile_stored(2, c + 16 * ldc, ldc * 4);
    _tile_stored(3, c + 16 * ldc + 16, ldc * 4);
}

/* dst[c][r] = src[r][c] (32-bit elements; rows ldd / lds elements apart) for c < cols and r < rpad (a multiple of
 * 16), src's rows from `rows` on read as zero; src's columns are read in whole 16s */
static void transpose_u32(void *dst, long ldd, const void *src, long lds, int rows, int rpad, int cols) {
    float *d = dst;
    const float *s = src;
    for (int r0 = 0; r0 < rpad; r0 += 16) {
        if (r0 + 16 < rows) ahead(s + (long)(r0 + 16) * lds, 4 * lds, rows - r0 - 16 < 16 ? rows - r0 - 16 : 16, 4 * cols, 0);
        for (int c0 = 0; c0 < cols; c0 += 16) {
            __m512 t[16];
            for (int i = 0; i < 16; i++)
                t[i] = r0 + i < rows ? _mm512_loadu_ps(s + (long)(r0 + i) * lds + c0) : _mm512_setzero_ps();
            transpose16(t);
            for (int i = 0; i < 16 && c0 + i < cols; i++) _mm512_storeu_ps(d + (long)(c0 + i) * ldd + r0, t[i]);
        }
    }
}

/* dst[r / 2][c] = (src[r][c], src[r + 1][c]) for even r < rpad (bf16 rows lds elements apart; rows from `rows` on
 * zero) and c < cols (a multiple of 32): B's pair rows */
static void pair_rows(uint32_t *dst, long ldd, const uint16_t *src, long lds, int rows, int rpad, int cols) {
    for (int r = 0; r < rpad; r += 2) {
        const uint16_t *lo = src + (long)r * lds;
        uint32_t *d = dst + (long)(r / 2) * ldd;
        if (r + 8 < rows) ahead(lo + 8 * lds, 2 * lds, 2, 2 * cols, 0);
        for (int c = 0; c < cols; c += 32) {
            __m512i l = r < rows ? _mm512_loadu_si512(lo + c) : _mm512_setzero_si512(), p0, p1;
            __m512i h = r + 1 < rows ? _mm512_loadu_si512(lo + lds + c) : _mm512_setzero_si512();
            lmf_pair_rows(l, h, &p0, &p1);
            _mm512_storeu_si512(d + c, p0);
            _mm512_storeu_si512(d + c + 16, p1);
        }
    }
}


/* dst[c][r] = src[r][c] for bf16 elements (rows ldd / lds elements apart), r < rpad (a multiple of 32; src's rows
 * from `rows` on zero) and c < cols (a multiple of 32): a row's pairs, then their 32-bit transpose */
static void transpose_b16(uint16_t *dst, long ldd, const uint16_t *src, long lds, int rows, int rpad, int cols) {
    for (int r0 = 0; r0 < rpad; r0 += 32) {
        if (r0 + 32 < rows) ahead(src + (long)(r0 + 32) * lds, 2 * lds, rows - r0 - 32 < 32 ? rows - r0 - 32 : 32, 2 * cols, 0);
        for (int c0 = 0; c0 < cols; c0 += 32) {
            __m512i lo[16], hi[16];
            for (int p = 0; p < 16; p++) {
                int r = r0 + 2 * p;
                __m512i l = r < rows ? _mm512_loadu_si512(src + (long)r * lds + c0) : _mm512_setzero_si512();
                __m512i h = r + 1 < rows ? _mm512_loadu_si512(src + (long)(r + 1) * lds + c0) : _mm512_setzero_si512();
                lmf_pair_rows(l, h, &lo[p], &hi[p]);
            }
            transpose16((__m512 *)lo);
            transpose16((__m512 *)hi);
            for (int c = 0; c < 16; c++) {
                _mm512_storeu_si512(dst + (long)(c0 + c) * ldd + r0, lo[c]);
                _mm512_storeu_si512(dst + (long)(c0 + 16 + c) * ldd + r0, hi[c]);
            }
        }
    }
}

/* A thread's buffers (see the top): bf16 A rows (_a), pair rows (_b), fp32 */
typedef struct {
    int T, Tp, hs, C, S;
    float scale, cap;    /* the scores' scale, Gemma 2's soft-cap (0: none) */
    uint16_t *ka, *va;   /* [Tp][hs] K, V rows */
    uint16_t *kta, *vta; /* [hs][Tp] K^T, V^T rows */
    float *dk, *dv;      /* [Tp][hs] the group's key gradients */
    float *s, *dp;       /* [Tp][RB] a block's S^T, then P^T; dP^T */
    uint16_t *pa, *dsa;  /* [Tp][RB] P^T, dS^T rows */
    uint32_t *pb, *dsb;  /* [Tp/2][RB] P^T, dS^T pair rows */
    uint32_t *qtb, *dotb; /* [hs/2][RB] Q^T, dO^T pair rows */
    uint32_t *qb, *dob;  /* [RB/2][hs] Q, dO pair rows */
    uint16_t *doa;       /* [RB][hs] dO rows in bf16 */
    float *ot;           /* [hs][RB] a block's O^T or dQ^T */
    float *y;            /* [Tp][RB] the capped scores S^T (backward, soft-capped) */
} work;

static work work_of(int T, int hs, int C, int S, float cap, int backward) {
    work w = {.T = T, .Tp = (T + RB - 1) / RB * RB, .hs = hs, .C = C, .S = S, .scale = 1.0f / sqrtf((float)hs),
              .cap = cap};
    long th = (long)w.Tp * hs, rt = (long)RB * w.Tp, rh = (long)RB * hs; /* counts of 32-bit elements below */
    /* the TAKEs below: forward th + 3 rt / 2 + 3 rh / 2, backward 3 th + 5 rt / 2 + 2 rh more (+ rt capped) */
    long bw = backward ? 6 * th + 5 * rt + 4 * rh + (cap ? 2 * rt : 0) : 0;
    size_t need = (size_t)(2 * th + 3 * rt + 3 * rh + bw) / 2;
    uint32_t *p = lmf_thread_scratch(sizeof(uint32_t) * need), *end = p + need;
#define TAKE(field, type, n) (w.field = (type *)p, p += (n))
    TAKE(ka, uint16_t, th / 2), TAKE(vta, uint16_t, th / 2), TAKE(s, float, rt), TAKE(pb, uint32_t, rt / 2);
    TAKE(qtb, uint32_t, rh / 2), TAKE(ot, float, rh / 2 * 2);
    if (backward) {
        TAKE(va, uint16_t, th / 2), TAKE(kta, uint16_t, th / 2), TAKE(dk, float, th), TAKE(dv, float, th);
        TAKE(dp, float, rt), TAKE(pa, uint16_t, rt / 2), TAKE(dsa, uint16_t, rt / 2), TAKE(dsb, uint32_t, rt / 2);
        TAKE(dotb, uint32_t, rh / 2), TAKE(qb, uint32_t, rh / 2), TAKE(dob, uint32_t, rh / 2);
        TAKE(doa, uint16_t, rh / 2);
        if (cap) TAKE(y, float, rt);
    }
#undef TAKE
    LMF_CHECK(p <= end);
    return w;
}

/* K's (or V's) rows of the task, bf16 S apart, as A rows [Tp][hs] (a: zero past T) and transposed [hs][Tp] (t) */
static void lay_out(const work *w, uint16_t *a, uint16_t *t, const uint16_t *x) {
    for (int r = 0; a && r < w->Tp; r++)
        if (r < w->T) memcpy(a + (long)r * w->hs, x + (long)r * w->S, sizeof(uint16_t) * (size_t)w->hs);
        else memset(a + (long)r * w->hs, 0, sizeof(uint16_t) * (size_t)w->hs);
    if (t) transpose_b16(t, w->Tp, x, w->S, w->T, w->Tp, w->hs);
}

/* A block's per-lane bookkeeping: lane i is query i0 + i (16 a vector, two vectors) */
typedef struct {
    __m512i q[2], st[2]; /* the query's index and its first key */
    __mmask16 real[2];   /* lanes of queries below T */
    int first_q, last_st; /* the block's first query, its last real query's start (the largest) */
} lanes_t;

static lanes_t lanes_of(const int32_t *ps, int W, int i0, int m) {
    lanes_t l = {.first_q = i0, .last_st = lmf_attention_start(ps, W, i0 + m - 1)};
    __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    for (int v = 0; v < 2; v++) {
        l.real[v] = span(0, m - 16 * v);
        l.q[v] = _mm512_add_epi32(iota, _mm512_set1_epi32(i0 + 16 * v));
        l.st[v] = ps ? _mm512_sub_epi32(l.q[v], _mm512_maskz_loadu_epi32(l.real[v], ps + i0 + 16 * v)) : _mm512_setzero_si512();
        if (W) l.st[v] = _mm512_max_epi32(l.st[v], _mm512_sub_epi32(l.q[v], _mm512_set1_epi32(W - 1)));
    }
    return l;
}

/* the lanes whose queries attend to key kj (their start <= kj <= the query) */
static inline __mmask16 sees(const lanes_t *l, int v, int kj) {
    __m512i k = _mm512_set1_epi32(kj);
    return _mm512_mask_cmple_epi32_mask(l->real[v], l->st[v], k) & _mm512_cmpge_epi32_mask(l->q[v], k);
}

/* S^T of the block (w->s: key kb0 + j's row j of the 32 queries' scores) into P^T over each query's keys, zero
 * elsewhere: the softmax runs down the rows, a query per lane (its max and sum need no horizontal reductions). The
 * max, the exp and the scale's rounding as the row kernels' softmax (vec_avx512.c). backward: P^T kept in fp32 (s)
 * and written as bf16 rows (pa), else written as pair rows (pb) */
/* max over keys j0 .. j1 - 1 of the scaled scores into mx, masked per key (each query's own keys) or not */
static inline void col_max(const float *x, const lanes_t *l, int kb0, int j0, int j1, __m512 vsc, int masked,
                           __m512 mx[2]) {
    __m512 m[4] = {mx[0], mx[1], mx[0], mx[1]}; /* even and odd keys: two chains a vector */
    for (int j = j0; j < j1; j++)
        for (int v = 0; v < 2; v++) {
            __m512 y = _mm512_mul_ps(_mm512_loadu_ps(x + j * RB + 16 * v), vsc);
            int c = v + 2 * (j & 1);
            m[c] = masked ? _mm512_mask_max_ps(m[c], sees(l, v, kb0 + j), m[c], y) : _mm512_max_ps(m[c], y);
        }
    mx[0] = _mm512_max_ps(m[0], m[2]), mx[1] = _mm512_max_ps(m[1], m[3]);
}

/* e = exp(scaled score - max) over keys j0 .. j1 - 1, stored over the scores and summed */
static inline void col_exp(float *x, const lanes_t *l, int kb0, int j0, int j1, __m512 vsc, int masked,
                           const __m512 mx[2], __m512 sum[2]) {
    for (int j = j0; j < j1; j++)
        for (int v = 0; v < 2; v++) {
            float *r = x + j * RB + 16 * v;
            __m512 e = exp16(_mm512_sub_ps(rounded(_mm512_mul_ps(_mm512_loadu_ps(r), vsc)), mx[v]));
            if (masked) e = _mm512_maskz_mov_ps(sees(l, v, kb0 + j), e);
            _mm512_storeu_ps(r, e);
            sum[v] = _mm512_add_ps(sum[v], e);
        }
}

static void softmax_t(const work *w, const lanes_t *l, int kb0, int wp, int backward) {
    if (w->cap) { /* Gemma 2: the scores capped once, c tanh(scale s / c) (kept for the backward); then unscaled */
        __m512 k = _mm512_set1_ps(w->scale / w->cap), c = _mm512_set1_ps(w->cap);
        for (long i = 0; i < (long)wp * RB; i += 16) {
            __m512 y = softcap16(_mm512_loadu_ps(w->s + i), k, c);
            _mm512_storeu_ps(w->s + i, y);
            if (backward) _mm512_storeu_ps(w->y + i, y);
        }
    }
    __m512 vsc = _mm512_set1_ps(w->cap ? 1.0f : w->scale), inv[2];
    __m512 mx[2] = {_mm512_set1_ps(-INFINITY), _mm512_set1_ps(-INFINITY)}, sum[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
    float *x = w->s;
    /* keys [f0, f1) are every query's (past the block's last start, before its first query): no masks there; a
     * query past T sums garbage, and its inverse is zero */
    int f0 = l->last_st - kb0, f1 = l->first_q - kb0;
    f0 = f0 < 0 ? 0 : f0, f1 = f1 < f0 ? f0 : f1;
    col_max(x, l, kb0, 0, f0, vsc, 1, mx);
    col_max(x, l, kb0, f0, f1, vsc, 0, mx);
    col_max(x, l, kb0, f1, wp, vsc, 1, mx);
    col_exp(x, l, kb0, 0, f0, vsc, 1, mx, sum);
    col_exp(x, l, kb0, f0, f1, vsc, 0, mx, sum);
    col_exp(x, l, kb0, f1, wp, vsc, 1, mx, sum);
    for (int v = 0; v < 2; v++) inv[v] = _mm512_maskz_div_ps(l->real[v], _mm512_set1_ps(1.0f), sum[v]);
    for (int j = 0; j < wp; j += 2) {
        __m512 p[4];
        for (int i = 0; i < 4; i++) p[i] = _mm512_mul_ps(_mm512_loadu_ps(x + (j + i / 2) * RB + 16 * (i % 2)), inv[i % 2]);
        __m512i r0 = (__m512i)_mm512_cvtne2ps_pbh(p[1], p[0]), r1 = (__m512i)_mm512_cvtne2ps_pbh(p[3], p[2]);
        if (backward) {
            for (int i = 0; i < 4; i++) _mm512_storeu_ps(x + (j + i / 2) * RB + 16 * (i % 2), p[i]);
            _mm512_storeu_si512(w->pa + j * RB, r0);
            _mm512_storeu_si512(w->pa + (j + 1) * RB, r1);
        } else {
            __m512i lo, hi;
            lmf_pair_rows(r0, r1, &lo, &hi);
            _mm512_storeu_si512(w->pb + j / 2 * RB, lo);
            _mm512_storeu_si512(w->pb + j / 2 * RB + 16, hi);
        }
    }
}

/* dP^T (w->dp) into dS^T = P^T (dP^T - t) scale, t a query's sum of P dP over its keys (the row kernels'
 * softmax_backward, down the rows), as bf16 rows (dsa) and pair rows (dsb); P^T is zero outside each query's keys.
 * Soft-capped: times the cap's derivative 1 - (y / cap)^2 (the row kernels' softcap_backward). */
static void softmax_backward_t(const work *w, int wp) {
    __m512 t[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()}, vsc = _mm512_set1_ps(w->scale);
    __m512 kc = _mm512_set1_ps(w->cap ? 1.0f / w->cap : 0.0f), one = _mm512_set1_ps(1.0f);
    for (int j = 0; j < wp; j++)
        for (int v = 0; v < 2; v++)
            t[v] = _mm512_fmadd_ps(_mm512_loadu_ps(w->s + j * RB + 16 * v), _mm512_loadu_ps(w->dp + j * RB + 16 * v), t[v]);
    for (int j = 0; j < wp; j += 2) {
        __m512 d[4];
        for (int i = 0; i < 4; i++) {
            long o = (j + i / 2) * RB + 16 * (i % 2);
            d[i] = _mm512_mul_ps(_mm512_loadu_ps(w->s + o), _mm512_sub_ps(_mm512_loadu_ps(w->dp + o), t[i % 2]));
            if (w->cap) {
                __m512 r = _mm512_mul_ps(_mm512_loadu_ps(w->y + o), kc);
                d[i] = _mm512_mul_ps(d[i], _mm512_mul_ps(_mm512_fnmadd_ps(r, r, one), vsc));
            } else {
                d[i] = _mm512_mul_ps(d[i], vsc);
            }
        }
        __m512i r0 = (__m512i)_mm512_cvtne2ps_pbh(d[1], d[0]), r1 = (__m512i)_mm512_cvtne2ps_pbh(d[3], d[2]), lo, hi;
        _mm512_storeu_si512(w->dsa + j * RB, r0);
        _mm512_storeu_si512(w->dsa + (j + 1) * RB, r1);
        lmf_pair_rows(r0, r1, &lo, &hi);
        _mm512_storeu_si512(w->dsb + j / 2 * RB, lo);
        _mm512_storeu_si512(w->dsb + j / 2 * RB + 16, hi);
    }
}

/* S^T = K Q^T for the block's keys kb0 .. kb0 + wp - 1 (Q^T as pair rows in w->qtb) into w->s */
static void scores_t(const work *w, int kb0, int wp) {
    for (int j = 0; j < wp; j += 32)
        block(w->s + j * RB, RB, 0, w->ka + (long)(kb0 + j) * w->hs, 2L * w->hs, w->qtb, 4 * RB, w->hs / 32);
}

/* X^T = A^T-rows (at (hs x Tp) from key kb0) times pair rows b ([wp/2][RB]) into w->ot, then X's rows i0 .. + m - 1
 * into dst (rows ldd floats apart) */
static void rows_out_t(const work *w, float *dst, long ldd, int m, const uint16_t *at, int kb0, int wp,
                       const uint32_t *b) {
    for (int d0 = 0; d0 < w->hs; d0 += 32)
        block(w->ot + d0 * RB, RB, 0, at + (long)d0 * w->Tp + kb0, 2L * w->Tp, b, 4 * RB, wp / 32);
    transpose_u32(dst, ldd, w->ot, RB, w->hs, w->hs, m);
}

/* The query block after (head h, rows from i0): this head's next, or the next head's first; its head, *ni its row */
static inline int next_block(int T, int h, int i0, int *ni) {
    *ni = i0 + RB < T ? i0 + RB : 0;
    return *ni ? h : h + 1;
}

/* The forward of batch row b's query heads [h0, h1), which share KV head kh */
static void forward_heads(float *out, const uint16_t *qkv, const int32_t *pos, int W, float cap, int b, int kh, int h0,
                          int h1, int T, int NH, int NKV, int hs) {
    int C = NH * hs, KVC = NKV * hs, S = C + 2 * KVC;
    work w = work_of(T, hs, C, S, cap, 0);
    long ko = (long)b * T * S + C + (long)kh * hs;
    const int32_t *ps = pos ? pos + (long)b * T : NULL;
    lmf_tiles_configure_full();
    lay_out(&w, w.ka, NULL, qkv + ko);
    lay_out(&w, NULL, w.vta, qkv + ko + KVC);
    for (int h = h0; h < h1; h++)
        for (int i0 = 0; i0 < T; i0 += RB) {
            int m = T - i0 < RB ? T - i0 : RB, kb0 = lmf_attention_start(ps, W, i0) / 32 * 32, wp = i0 + RB - kb0;
            const uint16_t *q = qkv + (long)b * T * S + (long)h * hs + (long)i0 * S;
            int ni, nh = next_block(T, h, i0, &ni), nm = T - ni < RB ? T - ni : RB;
            if (nh < h1) { /* the next block's Q rows and output rows */
                ahead(qkv + (long)b * T * S + (long)nh * hs + (long)ni * S, 2L * S, nm, 2 * hs, 0);
                ahead(out + ((long)b * T + ni) * C + (long)nh * hs, 4L * C, nm, 4 * hs, 1);
            }
            lanes_t l = lanes_of(ps, W, i0, m);
            transpose_u32(w.qtb, RB, q, S / 2, m, RB, hs / 2);
            scores_t(&w, kb0, wp);
            softmax_t(&w, &l, kb0, wp, 0);
            rows_out_t(&w, out + ((long)b * T + i0) * C + (long)h * hs, C, m, w.vta, kb0, wp, w.pb);
        }
    _tile_release();
}

void lmf_attention_forward_amx(float *out, const uint16_t *qkv, const int32_t *pos, int W, float cap, int B, int T,
                               int NH, int NKV, int hs) {
    int G = NH / NKV, np = lmf_attention_split(B, NKV, G);
    /* one task per (batch, KV head, part of the group's heads: lmf_attention_split), K and V laid out once a task */
#pragma omp parallel for collapse(3) schedule(dynamic, 1)
    for (int b = 0; b < B; b++)
        for (int kh = 0; kh < NKV; kh++)
            for (int part = 0; part < np; part++)
                forward_heads(out, qkv, pos, W, cap, b, kh, kh * G + G * part / np, kh * G + G * (part + 1) / np, T,
                              NH, NKV, hs);
}

/* The backward of batch row b's query heads [h0, h1) (KV head kh): their dQ, and their K and V gradients summed in
 * the thread's buffers, then written to dK / dV (rows ld floats apart: q|k|v's, or a part's own rows) */
static void backward_heads(float *dqkv, const float *dout, const uint16_t *qkv, const int32_t *pos, int W, float cap,
                           int b, int kh, int h0, int h1, float *dK, float *dV, long ld, int T, int NH, int NKV,
                           int hs) {
    int C = NH * hs, KVC = NKV * hs, S = C + 2 * KVC;
    work w = work_of(T, hs, C, S, cap, 1);
    long ko = (long)b * T * S + C + (long)kh * hs;
    const int32_t *ps = pos ? pos + (long)b * T : NULL;
    lmf_tiles_configure_full();
    lay_out(&w, w.ka, w.kta, qkv + ko);
    lay_out(&w, w.va, NULL, qkv + ko + KVC);
    memset(w.dk, 0, sizeof(float) * (size_t)w.Tp * hs);
    memset(w.dv, 0, sizeof(float) * (size_t)w.Tp * hs);
    for (int h = h0; h < h1; h++) {
        long qo = (long)b * T * S + (long)h * hs;
        for (int i0 = 0; i0 < T; i0 += RB) {
            int m = T - i0 < RB ? T - i0 : RB, kb0 = lmf_attention_start(ps, W, i0) / 32 * 32, wp = i0 + RB - kb0;
            const uint16_t *q = qkv + qo + (long)i0 * S;
            const float *dO = dout + ((long)b * T + i0) * C + (long)h * hs;
            int ni, nh = next_block(T, h, i0, &ni), nm = T - ni < RB ? T - ni : RB;
            if (nh < h1) { /* the next block's Q and dO rows, and its dQ rows for writing */
                ahead(qkv + (long)b * T * S + (long)nh * hs + (long)ni * S, 2L * S, nm, 2 * hs, 0);
                ahead(dout + ((long)b * T + ni) * C + (long)nh * hs, 4L * C, nm, 4 * hs, 0);
                ahead(dqkv + (long)b * T * S + (long)nh * hs + (long)ni * S, 4L * S, nm, 4 * hs, 1);
            }
            for (int r = 0; r < RB; r++) /* dO's rows in bf16, as the products round them */
                for (int d = 0; d < hs; d += 32) {
                    __m512 lo = r < m ? _mm512_loadu_ps(dO + (long)r * C + d) : _mm512_setzero_ps();
                    __m512 hi = r < m ? _mm512_loadu_ps(dO + (long)r * C + d + 16) : _mm512_setzero_ps();
                    _mm512_storeu_si512(w.doa + r * hs + d, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
                }
            lanes_t l = lanes_of(ps, W, i0, m);
            transpose_u32(w.qtb, RB, q, S / 2, m, RB, hs / 2);
            transpose_u32(w.dotb, RB, w.doa, hs / 2, RB, RB, hs / 2);
            pair_rows(w.qb, hs, q, S, m, RB, hs);
            pair_rows(w.dob, hs, w.doa, hs, RB, RB, hs);
            scores_t(&w, kb0, wp);
            softmax_t(&w, &l, kb0, wp, 1);
            for (int j = 0; j < wp; j += 32) /* dP^T = V dO^T */
                block(w.dp + j * RB, RB, 0, w.va + (long)(kb0 + j) * hs, 2L * hs, w.dotb, 4 * RB, hs / 32);
            softmax_backward_t(&w, wp);
            for (int j = 0; j < wp; j += 32) /* dV += P^T dO, dK += dS^T Q: 32 queries deep */
                for (int d0 = 0; d0 < hs; d0 += 32) {
                    block(w.dv + (long)(kb0 + j) * hs + d0, hs, 1, w.pa + j * RB, 2 * RB, w.dob + d0, 4L * hs, 1);
                    block(w.dk + (long)(kb0 + j) * hs + d0, hs, 1, w.dsa + j * RB, 2 * RB, w.qb + d0, 4L * hs, 1);
                }
            /* dQ = dS K, written: dQ^T = K^T dS^T */
            rows_out_t(&w, dqkv + qo + (long)i0 * S, S, m, w.kta, kb0, wp, w.dsb);
        }
    }
    for (int r = 0; r < T; r++) {
        if (r + 8 < T && ld > hs) { /* q|k|v's rows, a few KiB apart: fetched ahead, as the blocks' rows */
            ahead(dK + (r + 8) * ld, 0, 1, 4 * hs, 1);
            ahead(dV + (r + 8) * ld, 0, 1, 4 * hs, 1);
        }
        memcpy(dK + r * ld, w.dk + (long)r * hs, sizeof(float) * (size_t)hs);
        memcpy(dV + r * ld, w.dv + (long)r * hs, sizeof(float) * (size_t)hs);
    }
    _tile_release();
}

void lmf_attention_backward_amx(float *dqkv, const float *dout, const uint16_t *qkv, const int32_t *pos, int W,
                                float cap, int B, int T, int NH, int NKV, int hs) {
    int C = NH * hs, KVC = NKV * hs, S = C + 2 * KVC, G = NH / NKV;
    /* one task per (batch, KV head, part of the group's heads): the part's heads add to the same dK and dV, written
     * to q|k|v's rows, or to the part's own rows when the group is split (added up after) */
    lmf_attention_parts pt = lmf_attention_parts_of(B, T, NKV, G, hs);
#pragma omp parallel for collapse(3) schedule(dynamic, 1)
    for (int b = 0; b < B; b++)
        for (int kh = 0; kh < NKV; kh++)
            for (int part = 0; part < pt.n; part++) {
                int h0 = kh * G + G * part / pt.n, h1 = kh * G + G * (part + 1) / pt.n;
                float *dK = dqkv + (long)b * T * S + C + (long)kh * hs, *dV = dK + KVC;
                if (pt.n > 1) dK = lmf_attention_part_rows(&pt, b, kh, part, 0);
                if (pt.n > 1) dV = lmf_attention_part_rows(&pt, b, kh, part, 1);
                backward_heads(dqkv, dout, qkv, pos, W, cap, b, kh, h0, h1, dK, dV, pt.n > 1 ? hs : S, T, NH, NKV,
                               hs);
            }
    lmf_attention_parts_sum(&pt, dqkv, C, S);
}
