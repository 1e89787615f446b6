/* lazy_fill.h — a lazy tensor's bytes made a few rows at a time (the GGUF and safetensors writers' fill callbacks):
 * so neither a converted model nor its largest tensor ever sits whole in memory. */
#ifndef LMF_IO_LAZY_FILL_H
#define LMF_IO_LAZY_FILL_H

#include "core/alloc.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define LMF_FILL_BYTES ((size_t)16 << 20)

/* fill(ctx, dst, r0, n) writes rows [r0, r0 + n) (rb bytes each) into dst; each piece of at most LMF_FILL_BYTES (or
 * one row) goes to out(octx, bytes, size) from one reused buffer. Returns the first nonzero out's. */
static inline int lmf_fill_pieces(void (*fill)(void *, void *, uint64_t, uint64_t), void *ctx, uint64_t rows,
                                  size_t rb, int (*out)(void *, const void *, size_t), void *octx) {
    if (!rows) return 0;
    size_t per = rb && rb < LMF_FILL_BYTES ? LMF_FILL_BYTES / rb : 1;
    void *buf = lmf_xmalloc(rb ? (per < rows ? per : (size_t)rows) * rb : 1);
    int e = 0;
    for (uint64_t r0 = 0; r0 < rows && !e; r0 += per) {
        uint64_t n = rows - r0 < per ? rows - r0 : per;
        fill(ctx, buf, r0, n);
        e = out(octx, buf, (size_t)(n * rb));
    }
    free(buf);
    return e;
}

/* an out that writes to a FILE *: nonzero on a short write */
static inline int lmf_fill_fwrite(void *f, const void *p, size_t n) { return fwrite(p, 1, n, f) != n; }

#endif
