/* amx_tiles.h — loading an AMX tile configuration, shared by the tile kernels (gemm_amx.c, quant_amx.c); included
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

#endif
