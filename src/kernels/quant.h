/* quant.h — quantized weights: matrix-vector products for decode, SIMD dequantization for prefill, and the
 * quantizers `lmforge quantize` writes files with.
 *
 * Block formats (ggml's, bit for bit, so GGUF tensors are used in place from the file mapping; little-endian, a
 * row of n elements is n / block_size consecutive blocks, scales are IEEE half unless noted):
 *   Q8_0  34 B / 32:  d, int8 q[32]                          x = d q
 *   Q4_0  18 B / 32:  d, 16 B nibbles                        x = d (q - 8)
 *   Q4_1  20 B / 32:  d, m, 16 B nibbles                     x = d q + m
 *   Q5_0  22 B / 32:  d, 4 B fifth bits, 16 B nibbles        x = d (q - 16)
 *   Q5_1  24 B / 32:  d, m, 4 B fifth bits, 16 B nibbles     x = d q + m
 *   Q2_K .. Q6_K: super-blocks of 256 with 6- or 8-bit sub-block scales (see quant_ref.c for each layout)
 * In the 32-element 4/5-bit formats byte j of the nibbles holds element j (low nibble) and j + 16 (high nibble).
 *
 * Why the activations are quantized too (lmf_block_q16a): decode reads every weight once per token, so it is bound
 * by memory bandwidth, and the cheapest way to consume a 4- or 8-bit weight is an integer dot product against an
 * integer copy of the activation, made once per row and reused by every weight row. Per 32-element block the
 * integer sum is exact; one float multiply by d_w d_x (and for Q4_1 the min term m_w s_x, s_x = d_x sum q_x) turns
 * it into the block's contribution. The activation scale stays fp32 (nothing is stored).
 *
 * Why int16 and not int8 (as ggml does): a block's int8 step is max|x| / 127, and transformer activations have
 * outlier channels tens of times larger than the rest, so the other 31 elements of such a block keep two or three
 * significant bits. On SmolLM2-135M int8 activations put 3-4% of the largest logit into the error and the greedy
 * continuation leaves the reference at step 5; the int16 step max|x| / 32767 is 258 times finer (1e-5 relative,
 * well below the weights' own quantization: logits within 3e-4 of the float64 reference, greedy identical). The
 * bytes read from memory do not change (the weights are widened to int16 in registers; the activation copy grows
 * from 40 to 72 bytes per block but sits in L1); the cost is compute: vpdpwssd / vpmaddwd take 32 / 16 pairs per
 * instruction against vpdpbusd's 64 / 32, plus the widening (AVX-512 Q4 pairs two rows per zmm to claw some back).
 * Measured on a shared Xeon (Emerald Rapids): SmolLM2 Q4_1 generation (bench_infer, 2 threads, weights resident in
 * L3) 7-8% slower than int8; one thread's whole-model linear layers (bench_quant) 2-15% slower for Q4, ~4% for Q8_0.
 * Logits that match the reference are a project requirement, so lmf_qinput_convert / lmf_qmatvec use int16
 * (LMF_QACT_INT16); the int8 kernels stay behind LMF_QACT=int8 (read once, see lmf_qact_get), for comparison and
 * for users who prefer that speed to the accuracy.
 *
 * Q5_0, Q5_1, Q4_K, Q5_K and Q6_K have integer kernels on lmf_block_q16a too (always int16: LMF_QACT=int8 does not
 * apply to them): they carry most weights of the K-quant files llama.cpp's llama-quantize makes for models whose
 * widths are not multiples of 256 (SmolLM2's Q4_K_M: Q5_0 for q/k/o/gate/up, Q4_K or Q6_K for ffn_down; Q5_K_M:
 * Q5_1; Q6_K: Q8_0 and Q6_K). Q6_K's int8 sub-block scales are applied in float per 16 elements (sc times a
 * sub-block's integer sum could leave int32); Q4_K/Q5_K's 32-element sub-blocks are one activation block each,
 * their min term is Q4_1's. Q2_K and Q3_K (llama-quantize's Q2_K / Q3_K_x files, and ffn_down of Q2_K files) have
 * them too, their 16-element sub-blocks half an activation block each, as Q6_K's; Q2_K's min term takes each half's
 * sum of the activation. Float weight types (F32/F16/BF16) read the fp32 activation directly.
 *
 * Why the kernel shapes: one call computes a block of rows for up to ~16 input columns. The caller splits rows
 * over threads, so the kernels are single-threaded and allocation-free. With one column every weight byte is used
 * once: the loop streams the row with several independent accumulators and a few row streams at once so the
 * loads stay in flight; with several columns each weight block, once unpacked into registers, is multiplied with
 * every column before the next block is loaded (the weights are the expensive operand, the activations sit in L1).
 *
 * Variants (like vec.h): quant_ref.c is the scalar definition (compiled without auto-vectorisation), quant_avx2.c
 * needs AVX2 + FMA + F16C, quant_avx512.c needs AVX-512 F/BW/VL/DQ + AVX512_VNNI. lmf_quant() picks the best
 * table the CPU can run (and LMF_ISA allows) once; lmf_quant_variant() gives tests and benchmarks any runnable
 * one. SIMD results equal the reference up to float rounding of the summation order (integer parts are exact);
 * the activation conversions and lmf_dequant_fast are bit-exact with the reference. */
#ifndef LMF_KERNELS_QUANT_H
#define LMF_KERNELS_QUANT_H

#include "core/cpu.h"

#include <stddef.h>
#include <stdint.h>

#define LMF_QK 32     /* elements per block of the 32-element formats */
#define LMF_QK_K 256  /* elements per K-quant super-block */

/* Activation blocks for the integer dot products, 32 elements each: scale d, s = d * sum(qs) (Q4_1's min term) and
 * x ~= d * qs. A block whose max|x| is below LMF_Q8A_MIN_AMAX is stored as zeros (its 1/d would overflow);
 * lmf_block_q16a stores a block holding a NaN or an infinity as zeros with d = s = NaN, so that every product
 * with it is NaN and a non-finite activation (a NaN norm weight, an overflow) reaches the logits, where generation
 * reports it, instead of vanishing in the integer conversion (int8 leaves those to the int32 conversion, whose
 * result differs between variants).
 *   lmf_block_q16a (the default): d = max|x| / 32767, qs = roundf(x / d) in [-32767, 32767];
 *   lmf_block_q8a (LMF_QACT=int8): d = max|x| / 127, qs in [-127, 127] (never -128). */
#define LMF_Q8A_MIN_AMAX 1e-30f
typedef struct {
    float d;
    float s;
    int16_t qs[32];
} lmf_block_q16a;
typedef struct {
    float d;
    float s;
    int8_t qs[32];
} lmf_block_q8a;

/* the activation format of Q8_0/Q4_0/Q4_1 weights */
typedef enum { LMF_QACT_INT16 = 0, LMF_QACT_INT8 = 1 } lmf_qact;
/* the format the public entry points use: int16, or int8 when the environment has LMF_QACT=int8 (read on the first
 * call; "int16" or unset means int16; any other value means int16 too). The kernels have no sink to warn through,
 * so they stay silent and lmf_qact_env_rejected tells a program (the CLI) what to warn about. */
lmf_qact lmf_qact_get(void);
/* The LMF_QACT value lmf_qact_get ignored (neither int16 nor int8), or NULL when it was valid or unset. */
const char *lmf_qact_env_rejected(void);

typedef struct { uint16_t d; int8_t qs[32]; } lmf_block_q8_0;
typedef struct { uint16_t d; uint8_t qs[16]; } lmf_block_q4_0;
typedef struct { uint16_t d, m; uint8_t qs[16]; } lmf_block_q4_1;

_Static_assert(sizeof(lmf_block_q16a) == 72, "lmf_block_q16a is 72 bytes");
_Static_assert(sizeof(lmf_block_q8a) == 40, "lmf_block_q8a is 40 bytes");
_Static_assert(sizeof(lmf_block_q8_0) == 34, "ggml block_q8_0 is 34 bytes");
_Static_assert(sizeof(lmf_block_q4_0) == 18, "ggml block_q4_0 is 18 bytes");
_Static_assert(sizeof(lmf_block_q4_1) == 20, "ggml block_q4_1 is 20 bytes");

/* ---- the public entry points (dispatching to the table of lmf_quant()) ------------------------------------- */

/* 1 if lmf_qmatvec has a kernel for ggml type `type`: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K..Q6_K,
 * IQ4_NL, IQ4_XS (every type lmf_dequant_ref_supported() lists). */
int lmf_qmatvec_supported(uint32_t type);
/* bytes of one converted input column of n elements for weights of `type` (n/32 activation blocks of the
 * lmf_qact_get() format for Q8_0/Q4_0/Q4_1, n/32 lmf_block_q16a for Q5_0/Q5_1/Q2_K..Q6_K, n floats otherwise). */
size_t lmf_qinput_bytes(uint32_t type, int n);
/* Which activation format type's kernels read (-1: fp32 columns, else an lmf_qact): inputs converted for one type
 * serve every type of the same format, bit for bit. */
int lmf_qinput_format(uint32_t type);
/* converts the fp32 activation row x (n elements; n % 32 == 0 for the integer types) to what the type's kernel reads
 * (out: lmf_qinput_bytes(type, n) bytes). */
void lmf_qinput_convert(uint32_t type, const float *x, int n, void *out);
/* y[c * ldy + r] = dot(W row r, input column c) for r < nrows, c < ncols. Row r starts at (char *)W + r * w_row_bytes
 * and holds n elements of `type` (n a whole number of blocks); column c starts at (char *)x + c * x_col_bytes and
 * was made by lmf_qinput_convert(type, ., n, .). Single-threaded; writes nothing else. */
void lmf_qmatvec(uint32_t type, int n, int nrows, const void *W, size_t w_row_bytes, int ncols, const void *x,
                 size_t x_col_bytes, float *y, int ldy);
/* n elements (whole blocks, from a block start) of `type` to fp32; bit-exact with lmf_dequant_ref. Every type of
 * lmf_dequant_ref_supported(). */
void lmf_dequant_fast(uint32_t type, const void *src, float *dst, size_t n);
/* quantizes n floats (whole blocks) to `type` exactly as ggml's reference code does (quantize_row_q8_0_ref,
 * q4_0_ref, q4_1_ref, q5_0_ref, q5_1_ref, q4_K_ref, q5_K_ref, q6_K_ref; f16 round-to-nearest-even with NaN -> 0x7e00
 * like ggml's ggml_compute_fp32_to_fp16; bf16 like ggml_compute_fp32_to_bf16, NaN made quiet). Types: F32, F16,
 * BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, and IQ4_NL / IQ4_XS as lmf_quantize_iq4
 * (lmf_quantize_supported); any other type is a bug (asserts). */
void lmf_quantize_row(uint32_t type, const float *x, void *out, size_t n);
int lmf_quantize_supported(uint32_t type);
/* lmf_quantize_row on this CPU's table (the K-quants' scale search runs several sub-blocks at a time where the
 * table has it), the same bytes: for whole models (export). */
void lmf_quantize_fast(uint32_t type, const float *x, void *out, size_t n);

/* The K-quants (quant_kquant_ref.c): a super-block's fitted sub-block scales (Q4_K / Q5_K: 8 scales and mins,
 * quants 0..nmax; Q6_K: 16 signed scales, quants q + 32 in 0..63), what ggml's make_qkx2_quants / make_qx_quants
 * find, then lmf_kq_pack stores the scales and requantizes against them (L is its scratch). */
typedef struct {
    float scale[16], min[8];
    uint8_t L[256];
} lmf_kq_fit;
typedef void (*lmf_kq_fit_fn)(uint32_t type, const float *x, lmf_kq_fit *f);
void lmf_kq_fit_ref(uint32_t type, const float *x, lmf_kq_fit *f);
void lmf_kq_fit_avx2(uint32_t type, const float *x, lmf_kq_fit *f); /* the same numbers, 8 sub-blocks a vector */
void lmf_quantize_blocks_ref(uint32_t type, const float *x, void *out, size_t nblocks);
void lmf_quantize_blocks_avx2(uint32_t type, const float *x, void *out, size_t nblocks);
void lmf_kq_pack(uint32_t type, const float *x, lmf_kq_fit *f, void *out);
/* nblocks super-blocks of 256 floats to Q4_K, Q5_K or Q6_K blocks, fitted by fit */
void lmf_quantize_kquant(uint32_t type, const float *x, void *out, size_t nblocks, lmf_kq_fit_fn fit);
/* Q2_K's search: the 16 sub-blocks of 16 of a super-block x weighted by w (256 each), ggml's make_qkx2_quants with
 * nmax 3 (rmin, rdelta, nstep; mad: absolute errors, as quantize_row_q2_K_ref) or make_qkx3_quants: their scales,
 * mins (-min) and quants; the AVX2 one runs 8 sub-blocks in the lanes of a vector, the same numbers */
typedef void (*lmf_q2_fit_fn)(const float *x, const float *w, float rmin, float rdelta, int nstep, int mad,
                              float scales[16], float mins[16], uint8_t L[256]);
void lmf_q2_fit_ref(const float *x, const float *w, float rmin, float rdelta, int nstep, int mad, float scales[16],
                    float mins[16], uint8_t L[256]);
void lmf_q2_fit_avx2(const float *x, const float *w, float rmin, float rdelta, int nstep, int mad, float scales[16],
                     float mins[16], uint8_t L[256]);
/* Q3_K's: the 16 sub-blocks of 16 of x, by ggml's make_q3_quants (w NULL: quantize_row_q3_K_ref) or make_qx_quants
 * weighted by w (quantize_row_q3_K_impl): their scales and quants + 4 (a sub-block below GROUP_MAX_EPS: scale 0,
 * quants 0) */
typedef void (*lmf_q3_fit_fn)(const float *x, const float *w, float scales[16], int8_t L[256]);
void lmf_q3_fit_ref(const float *x, const float *w, float scales[16], int8_t L[256]);
void lmf_q3_fit_avx2(const float *x, const float *w, float scales[16], int8_t L[256]);
/* nblocks super-blocks of 256 floats to Q2_K or Q3_K blocks (quantize_row_q2_K_ref / q3_K_ref), fitted by ops'
 * q2_fit / q3_fit */
struct lmf_quant_ops;
void lmf_quantize_kquant_low(uint32_t type, const float *x, void *out, size_t nblocks, const struct lmf_quant_ops *ops);
/* n floats (whole blocks) to IQ4_NL or IQ4_XS as ggml_quantize_chunk writes them (quantize_iq4_nl / quantize_iq4_xs:
 * 15 trial scales a 32-element block around the largest element's, IQ4_XS's block scales then requantized to 6 bits
 * under a super-block d; what llama-quantize writes, not ggml's quantize_row_iq4_nl_ref, which skips the trials);
 * qw: an importance matrix row (n values) or NULL */
typedef void (*lmf_iq4_scales_fn)(int sbs, int nb, const float *x, const float *qw, float scales[8]);
void lmf_quantize_iq4(uint32_t type, const float *x, void *out, size_t n, const float *qw, lmf_iq4_scales_fn fit);
/* That search (the 15 trials), the part that costs: the scales of nb <= 8 blocks of 32 at x (sbs 256: an IQ4_XS
 * super-block, sigma^2 over all of it; sbs 32: IQ4_NL blocks, each its own); the AVX2 one runs the 8 in the lanes
 * of a vector (nb 8 only), the same numbers */
void lmf_iq4_scales_ref(int sbs, int nb, const float *x, const float *qw, float scales[8]);
void lmf_iq4_scales_avx2(int sbs, int nb, const float *x, const float *qw, float scales[8]);
/* One row of n floats quantized under an importance matrix's row qw (n values, the columns' mean squared inputs):
 * ggml's quantize_row_*_impl (ggml_quantize_chunk with an imatrix, what `llama-quantize --imatrix` writes), the same
 * bytes. Q4_0, Q4_1, Q5_0, Q5_1, Q2_K ... Q6_K, IQ4_NL, IQ4_XS use qw; Q8_0 and the float types ignore it (as
 * ggml); qw NULL is lmf_quantize_row. */
void lmf_quantize_row_weighted(uint32_t type, const float *x, void *out, size_t n, const float *qw);
/* The searches of that quantization, the weights w made (importance x sqrt(sigma^2 + x^2); Q6_K: the importance):
 *   LMF_WFIT_MIN       8 sub-blocks of 32, a scale and a min each, quants 0..nmax (make_qkx3_quants, 37 trials):
 *                      Q4_K and Q4_1 (nmax 15), Q5_K and Q5_1 (31); f->scale, f->min (-min), f->L
 *   LMF_WFIT_SIGNED16  16 sub-blocks of 16, signed (make_qx_quants, 19 trials), quants + nmax: Q6_K (nmax 32)
 *   LMF_WFIT_SIGNED32  8 sub-blocks of 32, signed: Q4_0 (nmax 8), Q5_0 (16)
 * x and w hold 256 floats. The tables' versions (wfit) give the reference's numbers. */
typedef enum { LMF_WFIT_MIN, LMF_WFIT_SIGNED16, LMF_WFIT_SIGNED32 } lmf_wfit_kind;
typedef void (*lmf_wfit_fn)(lmf_wfit_kind kind, int nmax, const float *x, const float *w, lmf_kq_fit *f);
void lmf_wfit_ref(lmf_wfit_kind kind, int nmax, const float *x, const float *w, lmf_kq_fit *f);
void lmf_wfit_avx2(lmf_wfit_kind kind, int nmax, const float *x, const float *w, lmf_kq_fit *f);
/* lmf_quantize_row_weighted (qw not NULL) with the searches of a variant table (wfit, iq4_scales, q2_fit, q3_fit) */
void lmf_quantize_weighted(uint32_t type, const float *x, void *out, size_t n, const float *qw,
                           const struct lmf_quant_ops *ops);
/* lmf_quantize_row_weighted on this CPU's table: the same bytes */
void lmf_quantize_weighted_fast(uint32_t type, const float *x, void *out, size_t n, const float *qw);

/* ---- R16: 16 weight rows interleaved, the decode layout ----------------------------------------------------
 *
 * Why: the row-major ggml layout makes a matrix-vector kernel reduce each row's vector of partial sums
 * horizontally and fetch each block's scale alone, ~5 vector instructions per 32 weights. Interleaving 16 rows so
 * that 32-bit lane j of every vector is row j turns the product into vertical work only: one vpdpwssd multiplies a
 * pair of weights of all 16 rows by one broadcast activation pair, and the 16 rows' scales load as one vector. The
 * same bytes as the ggml rows (a repacked matrix is exactly as large), made once when a session first runs the
 * weights (model/weights.c), ~2x fewer instructions per weight in decode.
 *
 * A group is 16 rows of n elements (n % 32 == 0), stored as n / 32 block groups of 16 ggml blocks' bytes:
 *   Q8_0 544 B: d[16] (fp16, d[j] = row j's scale), then 16 pair chunks of 32 B: byte 2j + e of chunk p is row j's
 *               element 2p + e (int8);
 *   Q4_0 288 B: d[16], then 4 nibble chunks of 64 B;
 *   Q4_1 320 B: d[16], m[16], then 4 nibble chunks of 64 B;
 *   Q5_0 352 B: d[16], 16 fifth-bit words (64 B), then 4 nibble chunks of 64 B;
 *   Q5_1 384 B: d[16], m[16], 16 fifth-bit words, then 4 nibble chunks of 64 B.
 * In nibble chunk c, little-endian 32-bit word j holds row j's elements 8c .. 8c + 7 (the low 4 bits of q): element
 * 8c + e sits at bit 4 (e / 2) for even e and at bit 16 + 4 (e / 2) for odd e, so masking (w >> 4i) with 0x000F000F
 * gives the 16-bit pairs (8c + 2i, 8c + 2i + 1) that vpdpwssd / vpmaddwd multiply with the activation's int16 pair
 * 4c + i (lmf_block_q16a.qs is read as 16 such pairs). Fifth-bit word j holds row j's 32 fifth bits in the same
 * pairing: element 8c + e's at bit 4 (e / 2) + c for even e and 16 + 4 (e / 2) + c for odd e, so shifting the word
 * by 4i + c - 4 (right; left when negative) puts pair (8c + 2i, 8c + 2i + 1)'s bits at bits 4 and 20, where they
 * mask to the 16 they add to each half word.
 * The K-quants' units are 256-element super-blocks (n % 256 == 0), each 32-element sub-block laid out as a block
 * above:
 *   Q4_K 2304 B: d[16], dmin[16], the rows' eight 6-bit scales and mins as three words a row of 6-bit fields (word
 *               t of row j at 64 + 64 t + 4 j: scales 0-4, mins 0-4, then scales 5-7 and mins 5-6, at bits 6 k;
 *               min 7's bits 2t, 2t + 1 at bits 30-31 of word t), then sub-block s's 4 nibble chunks at
 *               256 + 256 s;
 *   Q5_K 2816 B: as Q4_K, with sub-block s's fifth-bit words at 256 + 64 s and its nibble chunks at 768 + 256 s;
 *   Q6_K 3360 B: d[16], the rows' 16 int8 scales as four words a row (at 32 + 64 t + 4 j), then per sub-block s at
 *               288 + 384 s: the low nibbles as 4 chunks, and the top two bits as two words a row (chunks 0-1 and
 *               2-3; element 8c + e's at bit 16 (e & 1) + 8 (e / 4) + 4 (c & 1) + 2 (e / 2 & 1)): in byte
 *               2 (e & 1) + e / 4, the byte its nibble lands in after masking the chunk's word with 0x0f0f0f0f
 *               (even e / 2) or shifting it right by 4 first (odd), so one shift and one mask put a chunk's eight
 *               top-bit pairs beside those bytes' nibbles. Each 16 elements keep their own scale, so a sub-block
 *               is two integer dots.
 *   Q2_K 1344 B: d[16], dmin[16], the rows' 16 scale bytes (scale | min << 4) as four words a row (word t of row j
 *               at 64 + 64 t + 4 j), then block b's two chunks (16 elements each: 32 b + 16 h + e) at 320 + 128 b +
 *               64 h: in word j, row j's element e at bit 8 ((e / 2) % 2 + 2 (e % 2)) + 2 (e / 4), so slot s
 *               (bits 2s, 2s + 1 of each byte) holds pair 2 s in bytes 0 and 2 and pair 2 s + 1 in bytes 1 and 3;
 *   Q3_K 1760 B: d[16], the rows' sixteen 6-bit scales as three words a row (at 32 + 64 t + 4 j; scale s < 15
 *               at bit 6 (s % 5) of word s / 5, scale 15's bits 2t, 2t + 1 at bits 30-31 of word t; each field
 *               the scale - 32 in two's complement), then block b at 224 + 192 b: its two chunks of the low two
 *               bits as Q2_K's, then the rows' high-bit words: element e of half h at bit 8 ((e / 2) % 2 +
 *               2 (e % 2)) + 4 (slot / 2) + 2 (1 - h) + slot % 2 (slot = e / 4), one shift from bit 2 or 6 of the
 *               byte its low bits sit in after w & 0x33333333 or (w >> 2) & 0x33333333. q is stored + 4 (0..7);
 *   IQ4_NL 288 B: Q4_0's group (d[16], 4 nibble chunks of 64 B), the nibbles indices into lmf_iq4nl_values;
 *   IQ4_XS 2176 B: d[16], the rows' eight 6-bit scales ls - 32 as two's complement fields (scale ib < 5 at bit 6 ib
 *               of word j at 32 + 4 j, scales 5 and 6 at bits 0 and 6 of half j at 96 + 2 j, scale 7's low two
 *               bits at bits 30-31 of the word, its high four at 12-15 of the half), then sub-block s's 4 nibble
 *               chunks at 128 + 256 s.
 * A matrix of rows % 16 == 0 is rows / 16 groups, one after the other (group g at 16 g row_bytes). */
/* 1 if a rows x n matrix of `type` fits the layout (Q8_0/Q4_0/Q4_1/Q5_0/Q5_1 with n % 32 == 0, Q2_K..Q6_K with
 * n % 256 == 0; rows % 16 == 0) */
int lmf_r16_format(uint32_t type, int rows, int n);
/* 1 if it fits and this CPU's table (lmf_quant()) has an R16 kernel for the type: what the executor repacks. Every
 * table has all ten (the AVX2 and AVX-512 ones from quant_r16_mv.inc, the AVX-512 table's Q8_0 / Q4_x from its
 * own multi-stream tiles); the AMX tiles take Q8_0 / Q4_x only. */
int lmf_r16_supported(uint32_t type, int rows, int n);
/* elements of the type's R16 unit: 32, or 256 for the K-quants (n of lmf_r16_dequant_t is a multiple of it) */
int lmf_r16_unit(uint32_t type);
/* 16 ggml rows of n elements (row_bytes apart) -> one group at dst (16 row_bytes bytes; dst != src) */
void lmf_r16_pack(uint32_t type, int n, const void *src, size_t row_bytes, void *dst);
/* row j < 16 of a group back to fp32 (bit-exact with lmf_dequant_ref of the original row) */
void lmf_r16_dequant_row(uint32_t type, int n, const void *group, int j, float *dst);
/* a whole group to fp32, k-major: dst[k * ld + j] = element k of row j (k < n, j < 16); bit-exact as above */
void lmf_r16_dequant_t(uint32_t type, int n, const void *group, float *dst, size_t ld);
/* How the SIMD R16 kernels read memory. One thread's rows are read as LMF_R16_STREAMS concurrent streams (its
 * groups split into that many contiguous runs, the kernel stepping through one block group of each in turn) with
 * software prefetch LMF_R16_PREFETCH bytes ahead in each. Why: one core's reads of one linear stream stop at ~13
 * GB/s on these machines (the hardware prefetcher keeps a bounded number of lines in flight per stream); with two
 * to eight streams a plain read of a model-sized buffer reaches 15-18 GB/s on one core and 34-39 on two instead of
 * 27 (bench_quant), and whole-model decode gained 10-30% (docs/benchmarks.md). */
#define LMF_R16_STREAMS 3
#define LMF_R16_PREFETCH 4096
/* The most read streams a thread's one-column decode products use (R16 groups: LMF_R16_STREAMS at most for the
 * AVX-512 table's Q8_0 / Q4_x, 1 for quant_r16_mv.inc's kernels: AVX2, and Q5_x / K-quants on AVX-512;
 * float rows: 4 at most): 4 (no cap), or 1 on AMD Zen 3 and later (cpuid family >= 25). On the Intel machines
 * several streams read faster than one (above), while on an AMD EPYC Zen 4 one stream per thread read ~24 GB/s and
 * two or more only ~15-16 (bench_quant --quick). An AMD EPYC Zen 1 (family 23) reads like the Intel ones (one
 * stream ~10-11 GB/s, four 11-15), and its F16 / F32 decode ran 1.05-1.5x faster with four (docs/benchmarks.md,
 * session 24). LMF_DECODE_STREAMS=1..4 in the environment overrides the CPU's choice (read once), as does
 * lmf_decode_streams_set(n) (0: back to the CPU's). Results do not depend on it: a row's sums run in the same
 * order for any number of streams (test_quant). */
int lmf_decode_streams(void);
void lmf_decode_streams_set(int n);
/* units [0, n) (R16 groups, or rows for the float kernels) as s contiguous runs, one per stream (some empty when
 * s > n): run k is [start[k], start[k + 1]); returns the longest run */
static inline int lmf_stream_runs(int n, int s, int start[]) {
    int len = (n + s - 1) / s;
    for (int k = 0; k <= s; k++) start[k] = k * len < n ? k * len : n;
    return len;
}
/* lmf_qmatvec over R16 groups (nrows % 16 == 0, W = the first group, row_bytes = the ggml row size of n elements)
 * against int16 activation columns (lmf_block_q16a: lmf_qinput_convert's output unless LMF_QACT=int8, in which case
 * the executor keeps the ggml layout) */
void lmf_qmatvec_r16(uint32_t type, int n, int nrows, const void *W, size_t row_bytes, int ncols, const void *x,
                     size_t x_col_bytes, float *y, int ldy);
/* lmf_qmatvec_r16 on AMX-INT8 tiles (quant_amx.c), bit for bit the AVX-512 table's R16 kernels; only where
 * lmf_cpu_amx_int8(). lmf_qmatvec_r16 takes it from LMF_R16_AMX_COLS columns on (AVX-512 table chosen): below that
 * the weights are used too few times for the tiles' fixed costs (measured: docs/benchmarks.md). */
#define LMF_R16_AMX_COLS 12
/* 1 for the types the AMX tiles take (Q8_0, Q4_0, Q4_1); the others' R16 groups stay on the SIMD kernels */
int lmf_r16_amx_type(uint32_t type);
void lmf_qmatvec_r16_amx(uint32_t type, int n, int nrows, const void *W, size_t row_bytes, int ncols, const void *x,
                         size_t x_col_bytes, float *y, int ldy);

/* ---- scalar format helpers (quant_ref.c) -------------------------------------------------------------------- */

float lmf_f16_to_f32(uint16_t h);
/* Q4_K / Q5_K's 6-bit scale and min of sub-block j from the block's 12 scale bytes q (ggml's get_scale_min_k4) */
void lmf_k4_scale_min(int j, const uint8_t *q, uint8_t *sc, uint8_t *m);
/* Q3_K's scale of sub-block j (-32..31) from the block's 12 scale bytes s */
int lmf_k3_scale(int j, const uint8_t *s);
/* IQ4_NL's sixteen values (ggml's kvalues_iq4nl), which IQ4_XS shares */
extern const int8_t lmf_iq4nl_values[16];
/* IQ4_XS's scale ls - 32 (-32..31) of sub-block ib < 8 of the super-block at p */
int lmf_iq4xs_scale(int ib, const uint8_t *p);
float lmf_bf16_to_f32(uint16_t h);
uint16_t lmf_f32_to_f16(float f);   /* round to nearest even; NaN -> sign | 0x7e00 (ggml) */
uint16_t lmf_f32_to_bf16(float f);  /* round to nearest even; NaN -> quiet (ggml) */
/* the types lmf_dequant_ref / lmf_dequant_fast handle: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K,
 * Q4_K, Q5_K, Q6_K */
int lmf_dequant_ref_supported(uint32_t type);
/* the scalar definition of each format; n whole blocks; an unsupported type is a bug (asserts) */
void lmf_dequant_ref(uint32_t type, const void *src, float *dst, size_t n);

/* ---- the variant tables ------------------------------------------------------------------------------------ */

/* one weight format's matrix-vector kernel, same contract as lmf_qmatvec */
typedef void (*lmf_qmatvec_fn)(int n, int nrows, const void *W, size_t w_row_bytes, int ncols, const void *x,
                               size_t x_col_bytes, float *y, int ldy);

typedef struct lmf_quant_ops {
    const char *name;
    lmf_qmatvec_fn q8_0, q4_0, q4_1;           /* against lmf_block_q16a columns (the default) */
    lmf_qmatvec_fn q5_0, q5_1, q4_k, q5_k, q6_k; /* against lmf_block_q16a columns, whatever LMF_QACT says */
    lmf_qmatvec_fn q2_k, q3_k, iq4_nl, iq4_xs; /* the same */
    lmf_qmatvec_fn q8_0_i8, q4_0_i8, q4_1_i8;  /* against lmf_block_q8a columns (LMF_QACT=int8) */
    lmf_qmatvec_fn f32, f16, bf16;             /* against fp32 columns */
    lmf_qmatvec_fn q8_0_r16, q4_0_r16, q4_1_r16; /* R16 groups against lmf_block_q16a columns (lmf_qmatvec_r16) */
    lmf_qmatvec_fn q5_0_r16, q5_1_r16, q4_k_r16, q5_k_r16, q6_k_r16; /* the same, NULL where the table has none */
    lmf_qmatvec_fn q2_k_r16, q3_k_r16, iq4_nl_r16, iq4_xs_r16;
    /* fp32 row (n % 32 == 0) -> n / 32 activation blocks; bit-exact with the reference */
    void (*quantize_q16a)(const float *x, int n, lmf_block_q16a *out);
    void (*quantize_q8a)(const float *x, int n, lmf_block_q8a *out);
    /* dequantization of whole blocks; types the variant does not accelerate go to lmf_dequant_ref */
    void (*dequant)(uint32_t type, const void *src, float *dst, size_t n);
    /* lmf_r16_dequant_t (groups of the types it has R16 kernels for, k-major), bit-exact with the reference */
    void (*dequant_r16)(uint32_t type, int n, const void *group, float *dst, size_t ld);
    /* the K-quants' scale search (lmf_kq_fit) and the searches under an importance matrix (lmf_wfit), the
     * reference's numbers exactly */
    lmf_kq_fit_fn kq_fit;
    lmf_wfit_fn wfit;
    lmf_iq4_scales_fn iq4_scales; /* IQ4_NL / IQ4_XS's */
    lmf_q2_fit_fn q2_fit;         /* Q2_K's */
    lmf_q3_fit_fn q3_fit;         /* Q3_K's */
    /* fp32 -> nblocks blocks of Q8_0, Q4_0, Q4_1, Q5_0 or Q5_1, the reference's bytes */
    void (*quantize_blocks)(uint32_t type, const float *x, void *out, size_t nblocks);
} lmf_quant_ops;

const lmf_quant_ops *lmf_quant(void);              /* the table for this CPU and LMF_ISA, chosen once */
const lmf_quant_ops *lmf_quant_variant(lmf_isa isa); /* that level's table, NULL if this CPU cannot run it */
extern const lmf_quant_ops lmf_quant_ref, lmf_quant_avx2, lmf_quant_avx512;
/* the reference table's R16 kernels (quant_r16.c, next to the layout they define) */
void lmf_r16_dequant_t_ref(uint32_t type, int n, const void *group, float *dst, size_t ld);
void lmf_r16_q8_0_ref(int n, int nrows, const void *W, size_t rb, int ncols, const void *x, size_t xb, float *y,
                      int ldy);
void lmf_r16_q4_0_ref(int n, int nrows, const void *W, size_t rb, int ncols, const void *x, size_t xb, float *y,
                      int ldy);
void lmf_r16_q4_1_ref(int n, int nrows, const void *W, size_t rb, int ncols, const void *x, size_t xb, float *y,
                      int ldy);
void lmf_r16_q5_0_ref(int n, int nrows, const void *W, size_t rb, int ncols, const void *x, size_t xb, float *y,
                      int ldy);
void lmf_r16_q5_1_ref(int n, int nrows, const void *W, size_t rb, int ncols, const void *x, size_t xb, float *y,
                      int ldy);
void lmf_r16_q4_k_ref(int n, int nrows, const void *W, size_t rb, int ncols, const void *x, size_t xb, float *y,
                      int ldy);
void lmf_r16_q5_k_ref(int n, int nrows, const void *W, size_t rb, int ncols, const void *x, size_t xb, float *y,
                      int ldy);
void lmf_r16_q6_k_ref(int n, int nrows, const void *W, size_t rb, int ncols, const void *x, size_t xb, float *y,
                      int ldy);
void lmf_r16_q2_k_ref(int n, int nrows, const void *W, size_t rb, int ncols, const void *x, size_t xb, float *y,
                      int ldy);
void lmf_r16_q3_k_ref(int n, int nrows, const void *W, size_t rb, int ncols, const void *x, size_t xb, float *y,
                      int ldy);
void lmf_r16_iq4_nl_ref(int n, int nrows, const void *W, size_t rb, int ncols, const void *x, size_t xb, float *y,
                        int ldy);
void lmf_r16_iq4_xs_ref(int n, int nrows, const void *W, size_t rb, int ncols, const void *x, size_t xb, float *y,
                        int ldy);
/* the AVX2 table's row-major Q2_K / Q3_K kernels, which the AVX-512 table shares (a layout decode only meets for
 * matrices of rows % 16 != 0) */
void lmf_q2_k_mv_avx2(int n, int nrows, const void *W, size_t rb, int ncols, const void *x, size_t xb, float *y,
                      int ldy);
void lmf_q3_k_mv_avx2(int n, int nrows, const void *W, size_t rb, int ncols, const void *x, size_t xb, float *y,
                      int ldy);
void lmf_iq4_nl_mv_avx2(int n, int nrows, const void *W, size_t rb, int ncols, const void *x, size_t xb, float *y,
                        int ldy);
void lmf_iq4_xs_mv_avx2(int n, int nrows, const void *W, size_t rb, int ncols, const void *x, size_t xb, float *y,
                        int ldy);
/* 1 if the table has an R16 kernel (and k-major reader) for the type */
int lmf_r16_has_kernel(const lmf_quant_ops *ops, uint32_t type);

/* the entry points through a given table and activation format (tests and benchmarks compare variants and formats
 * with them); act only matters for Q8_0/Q4_0/Q4_1 */
size_t lmf_qinput_bytes_act(lmf_qact act, uint32_t type, int n);
void lmf_qinput_convert_ops(const lmf_quant_ops *ops, lmf_qact act, uint32_t type, const float *x, int n, void *out);
void lmf_qmatvec_ops(const lmf_quant_ops *ops, lmf_qact act, uint32_t type, int n, int nrows, const void *W,
                     size_t w_row_bytes, int ncols, const void *x, size_t x_col_bytes, float *y, int ldy);
void lmf_qmatvec_r16_ops(const lmf_quant_ops *ops, uint32_t type, int n, int nrows, const void *W, size_t row_bytes,
                         int ncols, const void *x, size_t x_col_bytes, float *y, int ldy);

#endif
