/* alloc.h — big, long-lived buffers (parameters, gradients, optimizer state, activations).
 *
 * On this kind of VM the first touch of a fresh 4 KiB page costs ~14 us, so big buffers are allocated once, backed
 * by transparent huge pages where the kernel allows (madvise), and pre-touched at allocation time rather than inside
 * a timed training step. Out of memory aborts with the size. */
#ifndef LMF_CORE_ALLOC_H
#define LMF_CORE_ALLOC_H

#include <stddef.h>

/* 64-byte aligned, zero-filled, pre-touched. Free with lmf_free_big. */
void *lmf_alloc_big(size_t bytes);
void lmf_free_big(void *p);
/* Small allocations that abort with the size on failure. */
void *lmf_xmalloc(size_t bytes);
void *lmf_xcalloc(size_t n, size_t size);

#endif
