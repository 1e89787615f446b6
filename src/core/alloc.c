/* alloc.c — see alloc.h. Big buffers are mmap'd directly so they can be madvise'd for huge pages and unmapped
 * exactly; a small header in front remembers the mapping length. */
#include "core/alloc.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define HDR 64 /* keeps the user pointer 64-byte aligned */

static void oom(size_t bytes) {
    fprintf(stderr, "lmforge: out of memory allocating %zu bytes (%.1f MiB)\n", bytes, bytes / 1048576.0);
    abort();
}

void *lmf_alloc_big(size_t bytes) {
    size_t len = bytes + HDR;
    void *base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) oom(bytes);
#ifdef MADV_HUGEPAGE
    if (len >= (2u << 20)) madvise(base, len, MADV_HUGEPAGE);
#endif
    /* Pre-touch: the mapping is zero-filled already, writing one byte per page commits it now. */
    for (size_t off = 0; off < len; off += 4096) ((volatile char *)base)[off] = 0;
    *(size_t *)base = len;
    return (char *)base + HDR;
}

void lmf_free_big(void *p) {
    if (!p) return;
    char *base = (char *)p - HDR;
    munmap(base, *(size_t *)base);
}

void *lmf_xmalloc(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) oom(bytes);
    return p;
}

void *lmf_xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) oom(n * size);
    return p;
}
