/* alloc.h — big, long-lived buffers (parameters, gradients, optimizer state, activations).
 *
 * On this kind of VM the first touch of a fresh 4 KiB page costs ~14 us, so big buffers are allocated once, backed
 * by transparent huge pages where the kernel allows (madvise), and pre-touched at allocation time rather than inside
 * a timed training step. Out of memory aborts with the size. */
#ifndef LMF_CORE_ALLOC_H
#define LMF_CORE_ALLOC_H

#include <stddef.h>

/* [lo, hi) of a flat buffer (elements, not bytes, unless said) */
typedef struct {
    size_t lo, hi;
} lmf_range;

/* 64-byte aligned, zero-filled, pre-touched. Free with lmf_free_big. */
void *lmf_alloc_big(size_t bytes);
/* The same without the pre-touch: pages are committed when first written (a server's KV pool, sized for the worst
 * case, costs memory only as far as sequences have grown into it). Freed with lmf_free_big. */
void *lmf_alloc_big_lazy(size_t bytes);
void lmf_free_big(void *p);
/* Sparse: like lazy, but never backed by huge pages unless a range is committed, so writing a few spans of it (a
 * pipeline stage's parameters inside the whole model's flat buffer, model.h's lmf_model_partition) costs those
 * spans' pages only, not the 2 MiB around each. Freed with lmf_free_big. */
void *lmf_alloc_big_sparse(size_t bytes);
/* Commits bytes [off, off + len) of a sparse buffer now: huge pages for the 2 MiB-aligned interior, every page
 * pre-touched (zero-filled, as fresh), so a training step meets no page fault there. */
void lmf_alloc_commit(void *p, size_t off, size_t len);
/* Bytes of the whole pages inside [p, p + bytes) that are resident (mincore(2): written, or read and mapped to the
 * zero page); 0 when none, or when mincore is unavailable. For checking that a sparse buffer's gaps stay unmapped. */
size_t lmf_resident_bytes(const void *p, size_t bytes);
/* A per-thread scratch buffer of at least `bytes` (2 MiB-aligned, huge-page backed, pre-touched), kept for the
 * thread's lifetime and grown when a larger size is asked for; freed at thread exit. For kernels' packing
 * buffers: the first call on a thread allocates, later calls cost a compare. Contents are not preserved. */
void *lmf_thread_scratch(size_t bytes);
/* This machine's physical memory in bytes (sysconf), or 0 when it cannot be told: for refusing a job that cannot
 * fit before it allocates, rather than being OOM-killed after it has. */
double lmf_mem_physical(void);
/* Bytes the kernel says can be allocated now without swapping (MemAvailable in /proc/meminfo), or 0 when it
 * cannot be told: for refusing to commit a buffer that would get the process OOM-killed. */
double lmf_mem_available(void);
/* Small allocations that abort with the size on failure. */
void *lmf_xmalloc(size_t bytes);
void *lmf_xcalloc(size_t n, size_t size);
void *lmf_xrealloc(void *p, size_t bytes);
/* free() on each of the n pointers, in order (NULL ones are skipped, as free does). For the tail of a _free
 * function; LMF_FREE_ALL(a, b, c) counts its arguments: every argument is read before the first is freed, so the
 * owning struct itself may come last. */
void lmf_free_each(void *const *ptrs, size_t n);
#define LMF_FREE_ALL(...) \
    lmf_free_each((void *const[]){__VA_ARGS__}, sizeof((void *const[]){__VA_ARGS__}) / sizeof(void *))

#endif
