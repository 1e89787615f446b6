/* alloc.c — see alloc.h. Big buffers are mmap'd directly so they can be madvise'd for huge pages and unmapped
 * exactly; a small header in front remembers the mapping length. */
#include "core/alloc.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#define HDR 64 /* keeps the user pointer 64-byte aligned */

static void oom(size_t bytes) {
    fprintf(stderr, "lmforge: out of memory allocating %zu bytes (%.1f MiB)\n", bytes, bytes / 1048576.0);
    abort();
}

static void *map_big(size_t bytes, int touch, int huge) {
    size_t len = bytes + HDR;
    void *base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) oom(bytes);
#ifdef MADV_HUGEPAGE
    if (huge && len >= (2u << 20)) madvise(base, len, MADV_HUGEPAGE);
#endif
#ifdef MADV_NOHUGEPAGE
    if (!huge) madvise(base, len, MADV_NOHUGEPAGE); /* with THP "always", a 2 MiB page would fill the gaps */
#endif
    /* Pre-touch: the mapping is zero-filled already, writing one byte per page commits it now. */
    for (size_t off = 0; touch && off < len; off += 4096) ((volatile char *)base)[off] = 0;
    *(size_t *)base = len;
    return (char *)base + HDR;
}

void *lmf_alloc_big(size_t bytes) { return map_big(bytes, 1, 1); }
void *lmf_alloc_big_lazy(size_t bytes) { return map_big(bytes, 0, 1); }
void *lmf_alloc_big_sparse(size_t bytes) { return map_big(bytes, 0, 0); }

void lmf_alloc_commit(void *p, size_t off, size_t len) {
    if (!len) return;
    const uintptr_t huge = 2u << 20;
    uintptr_t a = (uintptr_t)p + off, b = a + len, ha = (a + huge - 1) & ~(huge - 1), hb = b & ~(huge - 1);
#ifdef MADV_HUGEPAGE
    if (hb > ha) madvise((void *)ha, hb - ha, MADV_HUGEPAGE);
#endif
    /* a page already holding data keeps it: writing back the byte read commits the page without changing it */
    for (uintptr_t q = a; q < b; q = (q | 4095) + 1) {
        volatile char *c = (volatile char *)q;
        *c = *c;
    }
}

size_t lmf_resident_bytes(const void *p, size_t bytes) {
    uintptr_t a = ((uintptr_t)p + 4095) & ~(uintptr_t)4095, b = ((uintptr_t)p + bytes) & ~(uintptr_t)4095;
    if (b <= a) return 0;
    size_t pages = (b - a) / 4096, got = 0;
    unsigned char vec[4096];
    for (size_t i = 0; i < pages; i += sizeof vec) {
        size_t n = pages - i < sizeof vec ? pages - i : sizeof vec;
        if (mincore((void *)(a + i * 4096), n * 4096, vec) != 0) return 0;
        for (size_t k = 0; k < n; k++) got += (vec[k] & 1) ? 4096 : 0;
    }
    return got;
}

void lmf_free_big(void *p) {
    if (!p) return;
    char *base = (char *)p - HDR;
    munmap(base, *(size_t *)base);
}

double lmf_mem_physical(void) {
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    return pages > 0 && page > 0 ? (double)pages * (double)page : 0;
}

double lmf_mem_available(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return 0;
    char line[256];
    double kib = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %lf kB", &kib) == 1) break;
    fclose(f);
    return kib * 1024.0;
}

void *lmf_xmalloc(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) oom(bytes);
    return p;
}

void *lmf_xrealloc(void *p, size_t bytes) {
    void *q = realloc(p, bytes ? bytes : 1);
    if (!q) oom(bytes);
    return q;
}

void lmf_free_each(void *const *ptrs, size_t n) {
    for (size_t i = 0; i < n; i++) free(ptrs[i]);
}

void *lmf_xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) oom(n * size);
    return p;
}

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static _Thread_local void *scratch_mem;
static _Thread_local size_t scratch_size;

static void scratch_key_init(void) { pthread_key_create(&scratch_key, free); }

void *lmf_thread_scratch(size_t bytes) {
    if (bytes <= scratch_size) return scratch_mem;
    const size_t huge = 2u << 20;
    size_t len = (bytes + huge - 1) & ~(huge - 1);
    free(scratch_mem);
    void *p = aligned_alloc(huge, len);
    if (!p) oom(len);
#ifdef MADV_HUGEPAGE
    madvise(p, len, MADV_HUGEPAGE); /* one fault for the whole buffer instead of hundreds (see DESIGN.md) */
#endif
    memset(p, 0, len);
    pthread_once(&scratch_once, scratch_key_init);
    pthread_setspecific(scratch_key, p); /* the key's destructor frees it when the thread exits */
    scratch_mem = p, scratch_size = len;
    return p;
}
