/* amx_tiles.h — loading an AMX tile configuration, shared by the tile kernels (gemm_amx.c, quant_amx.c,
 * attention_amx.c); included
 * only by files compiled with -mamx-tile. Each kernel call loads its own configuration on its thread, which is
 * cheap, since the thread may have run the other kernel's tiles in between. */
#ifndef LMF_KERNELS_AMX_TILES_H
#define LMF_KERNELS_AMX_TILES_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

/* palette 1: tile t is rows[t] rows of colsb[t] bytes (t < 8) */
static inline void lmf_tiles_configure(const uint8_t rows[8], const uint16_t colsb[8]) {
    struct {
        uint8_t palette, start_row, reserved[14];
        uint16_t colsb[16];
        uint8_t rows[16];
    } cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) cfg.colsb[t] = colsb[t], cfg.rows[t] = rows[t];
    _tile_loadconfig(&cfg);
}

/* eight 16 x 64-byte tiles: the bf16 kernels' 2 x 2 blocks (gemm_amx.c, attention_amx.c) */
static inline void lmf_tiles_configure_full(void) {
    static const uint8_t rows[8] = {16, 16, 16, 16, 16, 16, 16, 16};
    static const uint16_t colsb[8] = {64, 64, 64, 64, 64, 64, 64, 64};
    lmf_tiles_configure(rows, colsb);
}

/* Rows k and k + 1 of a B operand (32 bf16 columns each) as the two 16-pair tile rows tdpbf16ps takes: 32-bit
 * element j of *lo is (l[j], h[j]) (k in the low half), of *hi (l[16 + j], h[16 + j]). */
static inline void lmf_pair_rows(__m512i l, __m512i h, __m512i *lo, __m512i *hi) {
    /* 16-bit lane 2j is l's column j, 2j + 1 h's (bit 5 of an index picks the second operand) */
    static const uint16_t idx[2][32] = {{0, 32, 1, 33, 2,  34, 3,  35, 4,  36, 5,  37, 6,  38, 7,  39,
                                         8, 40, 9, 41, 10, 42, 11, 43, 12, 44, 13, 45, 14, 46, 15, 47},
                                        {16, 48, 17, 49, 18, 50, 19, 51, 20, 52, 21, 53, 22, 54, 23, 55,
                                         24, 56, 25, 57, 26, 58, 27, 59, 28, 60, 29, 61, 30, 62, 31, 63}};
    *lo = _mm512_permutex2var_epi16(l, _mm512_loadu_si512(idx[0]), h);
    *hi = _mm512_permutex2var_epi16(l, _mm512_loadu_si512(idx[1]), h);
}

#endif
