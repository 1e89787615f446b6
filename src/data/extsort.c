/* extsort.c — external sort of fixed-size records (nw uint64 words, lexicographic order) for the deduplicators.
 *
 * Records are appended to one buffer of at most mem_budget bytes (grown on demand, so a small job does not pay for
 * a large budget). When it is full it is sorted and written as a run to one unlinked temporary file. finish()
 * sorts what is left; if nothing was spilled the records are read straight from the buffer, otherwise the last
 * buffer becomes one more run and the runs are merged with a binary heap, each run read through its own slice of
 * the budget. When there are more runs than the budget can give a slice of at least MIN_SLICE records to, groups of
 * runs are first merged into longer runs appended to the same file (multi-pass merge), so memory never exceeds the
 * budget whatever the input size. */
#include "data/dedup.h"

#include "core/alloc.h"
#include "core/status.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { MIN_SLICE = 256, MAX_NW = 4 };

typedef struct {
    off_t off;   /* first byte of the run in the file */
    uint64_t n;  /* records */
} run_info;

typedef struct {
    off_t next;     /* file offset of the next unread record */
    uint64_t left;  /* records not yet read from the file */
    uint64_t *buf;  /* slice of the sorter's buffer */
    size_t cap, len, pos;
} run_reader;

struct lmf_extsort {
    int nw;
    size_t rec_bytes, cap; /* cap: records the buffer holds */
    uint64_t *buf;
    size_t n, alloc;       /* records in buf, records allocated */
    char *tmp_dir;
    int fd;
    off_t file_end;
    run_info *runs;
    size_t nruns, runs_cap, spills;
    uint64_t total;
    /* reading */
    int finished;
    size_t mem_pos;
    run_reader *rd;
    size_t *heap, heap_n;
};

int lmf_dedup_tmpfile(const char *dir) {
    if (!dir || !*dir) dir = getenv("TMPDIR");
    if (!dir || !*dir) dir = "/tmp";
    size_t n = strlen(dir) + 32;
    char *path = lmf_xmalloc(n);
    snprintf(path, n, "%s/lmf-dedup-XXXXXX", dir);
    int fd = mkstemp(path);
    if (fd < 0) {
        lmf_fail(LMF_ERR_IO, "%s: cannot create a temporary file: %s (hint: set tmp_dir or TMPDIR to a writable "
                             "folder with room for the spilled records)", path, strerror(errno));
    } else {
        unlink(path); /* gone from the folder now; the space is freed when fd is closed, even after a crash */
    }
    free(path);
    return fd;
}

/* All n bytes at off, written (writing = 1) or read, retrying short transfers and EINTR. */
static lmf_status transfer_all(int fd, int writing, void *p, size_t n, off_t off) {
    char *c = p;
    while (n) {
        ssize_t k = writing ? pwrite(fd, c, n, off) : pread(fd, c, n, off);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return lmf_fail(LMF_ERR_IO, "dedup spill file: %s of %zu bytes at %lld failed: %s",
                                    writing ? "write" : "read", n, (long long)off,
                                    k < 0 ? strerror(errno) : writing ? "no space" : "unexpected end of file");
        c += k, n -= (size_t)k, off += k;
    }
    return LMF_OK;
}

static lmf_status write_all(int fd, const void *p, size_t n, off_t off) {
    return transfer_all(fd, 1, (void *)p, n, off); /* pwrite does not write through it */
}
static lmf_status read_all(int fd, void *p, size_t n, off_t off) { return transfer_all(fd, 0, p, n, off); }

lmf_status lmf_extsort_create(int nw, size_t mem_budget, const char *tmp_dir, lmf_extsort **out) {
    *out = NULL;
    if (nw < 1 || nw > MAX_NW) return lmf_fail(LMF_ERR_ARG, "extsort: record of %d words (1..%d)", nw, MAX_NW);
    size_t rec = (size_t)nw * 8;
    if (mem_budget < 4 * MIN_SLICE * rec)
        return lmf_fail(LMF_ERR_ARG, "dedup mem_budget %zu bytes is below the minimum %zu", mem_budget,
                        4 * MIN_SLICE * rec);
    lmf_extsort *s = lmf_xcalloc(1, sizeof *s);
    s->nw = nw;
    s->rec_bytes = rec;
    s->cap = mem_budget / rec;
    s->fd = -1;
    if (tmp_dir) s->tmp_dir = strdup(tmp_dir);
    *out = s;
    return LMF_OK;
}

static inline int rec_cmp(const uint64_t *a, const uint64_t *b, int nw) {
    for (int i = 0; i < nw; i++)
        if (a[i] != b[i]) return a[i] < b[i] ? -1 : 1;
    return 0;
}

static int cmp1(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}
static int cmp2(const void *a, const void *b) { return rec_cmp(a, b, 2); }
static int cmp3(const void *a, const void *b) { return rec_cmp(a, b, 3); }
static int cmp4(const void *a, const void *b) { return rec_cmp(a, b, 4); }

static void sort_buf(lmf_extsort *s) {
    int (*cmp[])(const void *, const void *) = {cmp1, cmp1, cmp2, cmp3, cmp4};
    if (s->n) qsort(s->buf, s->n, s->rec_bytes, cmp[s->nw]); /* an empty sorter has no buffer: qsort(NULL) is UB */
}

static lmf_status add_run(lmf_extsort *s, const uint64_t *recs, uint64_t n, off_t off) {
    if (s->nruns == s->runs_cap) {
        s->runs_cap = s->runs_cap ? 2 * s->runs_cap : 16;
        s->runs = lmf_xrealloc(s->runs, s->runs_cap * sizeof *s->runs);
    }
    s->runs[s->nruns++] = (run_info){off, n};
    if (recs) {
        LMF_TRY(write_all(s->fd, recs, n * s->rec_bytes, off));
        s->file_end = off + (off_t)(n * s->rec_bytes);
    }
    return LMF_OK;
}

static lmf_status spill(lmf_extsort *s) {
    if (s->fd < 0 && (s->fd = lmf_dedup_tmpfile(s->tmp_dir)) < 0) return LMF_ERR_IO;
    sort_buf(s);
    LMF_TRY(add_run(s, s->buf, s->n, s->file_end));
    s->spills++;
    s->n = 0;
    return LMF_OK;
}

lmf_status lmf_extsort_push(lmf_extsort *s, const uint64_t *rec) {
    LMF_CHECK(!s->finished);
    if (s->n == s->alloc) {
        if (s->alloc == s->cap) {
            LMF_TRY(spill(s));
        } else {
            size_t a = s->alloc ? 2 * s->alloc : 1024;
            if (a > s->cap) a = s->cap;
            s->buf = lmf_xrealloc(s->buf, a * s->rec_bytes);
            s->alloc = a;
        }
    }
    memcpy(s->buf + s->n * (size_t)s->nw, rec, s->rec_bytes);
    s->n++;
    s->total++;
    return LMF_OK;
}

/* ---- merging ---- */

static lmf_status reader_fill(lmf_extsort *s, run_reader *r) {
    size_t k = r->left < r->cap ? (size_t)r->left : r->cap;
    if (k) LMF_TRY(read_all(s->fd, r->buf, k * s->rec_bytes, r->next));
    r->next += (off_t)(k * s->rec_bytes);
    r->left -= k;
    r->len = k;
    r->pos = 0;
    return LMF_OK;
}

static inline const uint64_t *reader_head(const lmf_extsort *s, const run_reader *r) {
    return r->buf + r->pos * (size_t)s->nw;
}

static inline int heap_less(const lmf_extsort *s, size_t a, size_t b) {
    int c = rec_cmp(reader_head(s, &s->rd[a]), reader_head(s, &s->rd[b]), s->nw);
    return c < 0 || (c == 0 && a < b);
}

static void heap_down(lmf_extsort *s, size_t i) {
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        if (l < s->heap_n && heap_less(s, s->heap[l], s->heap[m])) m = l;
        if (l + 1 < s->heap_n && heap_less(s, s->heap[l + 1], s->heap[m])) m = l + 1;
        if (m == i) return;
        size_t t = s->heap[i];
        s->heap[i] = s->heap[m], s->heap[m] = t;
        i = m;
    }
}

/* Opens readers on runs [first, first + k), each with a slice of the buffer, and builds the heap. */
static lmf_status open_merge(lmf_extsort *s, size_t first, size_t k) {
    size_t slice = s->alloc / k;
    LMF_CHECK(slice >= 1);
    s->rd = lmf_xrealloc(s->rd, k * sizeof *s->rd);
    s->heap = lmf_xrealloc(s->heap, k * sizeof *s->heap);
    s->heap_n = 0;
    for (size_t i = 0; i < k; i++) {
        run_reader *r = &s->rd[i];
        r->next = s->runs[first + i].off;
        r->left = s->runs[first + i].n;
        r->buf = s->buf + i * slice * (size_t)s->nw;
        r->cap = slice;
        LMF_TRY(reader_fill(s, r));
        if (r->len) s->heap[s->heap_n++] = i;
    }
    for (size_t i = s->heap_n; i-- > 0;) heap_down(s, i);
    return LMF_OK;
}

/* Pops the smallest record into rec; 1, 0 at the end, -1 on error. */
static int merge_next(lmf_extsort *s, uint64_t *rec) {
    if (!s->heap_n) return 0;
    size_t top = s->heap[0];
    run_reader *r = &s->rd[top];
    memcpy(rec, reader_head(s, r), s->rec_bytes);
    if (++r->pos == r->len) {
        if (reader_fill(s, r) != LMF_OK) return -1;
        if (!r->len) s->heap[0] = s->heap[--s->heap_n];
    }
    if (s->heap_n) heap_down(s, 0);
    return 1;
}

lmf_status lmf_extsort_finish(lmf_extsort *s) {
    LMF_CHECK(!s->finished);
    s->finished = 1;
    if (!s->nruns) { /* everything fits: sort in place and read from RAM */
        sort_buf(s);
        return LMF_OK;
    }
    if (s->n) LMF_TRY(spill(s));
    /* The buffer becomes the merge's read slices: give it its full budget now. */
    if (s->alloc < s->cap) {
        s->buf = lmf_xrealloc(s->buf, s->cap * s->rec_bytes);
        s->alloc = s->cap;
    }
    size_t fanin = s->alloc / MIN_SLICE;
    if (fanin < 2) fanin = 2;
    /* Multi-pass: merge the oldest `fanin` runs into one appended run until one final merge suffices. The output
     * of an intermediate pass goes through a write buffer taken from the slices' share (half the budget). */
    while (s->nruns > fanin) {
        size_t k = fanin / 2 < 2 ? 2 : fanin / 2;
        size_t out_cap = s->alloc / 2; /* records: second half of buf is the write buffer */
        uint64_t *obuf = s->buf + out_cap * (size_t)s->nw;
        size_t saved_alloc = s->alloc;
        s->alloc = out_cap; /* open_merge slices only the first half */
        lmf_status st = open_merge(s, 0, k);
        s->alloc = saved_alloc;
        LMF_TRY(st);
        off_t off = s->file_end, w = off;
        uint64_t n = 0;
        size_t on = 0;
        int g;
        while ((g = merge_next(s, obuf + on * (size_t)s->nw)) == 1) {
            n++;
            if (++on == out_cap) {
                LMF_TRY(write_all(s->fd, obuf, on * s->rec_bytes, w));
                w += (off_t)(on * s->rec_bytes);
                on = 0;
            }
        }
        if (g < 0) return LMF_ERR_IO;
        if (on) LMF_TRY(write_all(s->fd, obuf, on * s->rec_bytes, w));
        s->file_end = off + (off_t)(n * s->rec_bytes);
        memmove(s->runs, s->runs + k, (s->nruns - k) * sizeof *s->runs);
        s->nruns -= k;
        LMF_TRY(add_run(s, NULL, n, off));
    }
    return open_merge(s, 0, s->nruns);
}

int lmf_extsort_next(lmf_extsort *s, uint64_t *rec) {
    LMF_CHECK(s->finished);
    if (!s->nruns) {
        if (s->mem_pos == s->n) return 0;
        memcpy(rec, s->buf + s->mem_pos++ * (size_t)s->nw, s->rec_bytes);
        return 1;
    }
    return merge_next(s, rec);
}

uint64_t lmf_extsort_count(const lmf_extsort *s) { return s->total; }
size_t lmf_extsort_spills(const lmf_extsort *s) { return s->spills; }

void lmf_extsort_free(lmf_extsort *s) {
    if (!s) return;
    if (s->fd >= 0) close(s->fd);
    LMF_FREE_ALL(s->buf, s->runs, s->rd, s->heap, s->tmp_dir, s);
}
