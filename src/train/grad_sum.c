/* grad_sum.c — see grad_sum.h. */
#include "train/grad_sum.h"
#include "core/alloc.h"
#include "core/parallel.h"
#include "core/status.h"

#include <math.h>
#include <string.h>

static int floor_log2(int k) {
    int n = 0;
    while (k >>= 1) n++;
    return n;
}

void lmf_grad_sum_init(lmf_grad_sum *s, lmf_model *m, int k) {
    memset(s, 0, sizeof *s);
    s->m = m, s->k = k, s->nbuf = floor_log2(k);
    for (int i = 0; i < s->nbuf; i++) s->buf[i] = lmf_alloc_big_lazy(lmf_model_grad_extent(m) * sizeof(float));
}

void lmf_grad_sum_free(lmf_grad_sum *s) {
    for (int i = 0; i < s->nbuf; i++) lmf_free_big(s->buf[i]);
    memset(s, 0, sizeof *s);
}

double lmf_grad_sum_bytes(int k, double held_floats) { return floor_log2(k) * held_floats * sizeof(float); }

/* One piece of an addition or a copy: dst = dst + src (or src) over this thread's share of it. */
typedef struct {
    const lmf_grad_sum *s;
    int dst, src, copy;
} piece_op;

static float *at_id(const lmf_grad_sum *s, int id, float *g, size_t v) { return id < 0 ? g : s->buf[id] + v; }

static void piece(void *ctx, float *g, size_t v, size_t n) {
    const piece_op *o = ctx;
    long lo, hi;
    lmf_omp_range((long)n, &lo, &hi);
    if (hi <= lo) return;
    float *d = at_id(o->s, o->dst, g, v) + lo;
    const float *x = at_id(o->s, o->src, g, v) + lo;
    if (o->copy) {
        memcpy(d, x, (size_t)(hi - lo) * sizeof(float));
        return;
    }
    for (long i = 0; i < hi - lo; i++) d[i] += x[i];
}

/* every thread walks all pieces and takes its share of each: a tensor-parallel rank has thousands of short ones */
static void run(lmf_grad_sum *s, int dst, int src, int copy) {
    piece_op o = {s, dst, src, copy};
#pragma omp parallel
    lmf_model_grad_pieces(s->m, s->at, s->len, piece, &o);
}

static void add(void *ctx, int dst, int src) { run(ctx, dst, src, 0); }

void lmf_grad_sum_add(lmf_grad_sum *s, int a, int deferred) {
    LMF_CHECK(0 <= a && a < s->k && s->k > 1);
    if (a == 0) lmf_sumtree_reset(&s->t);
    s->at = 0, s->len = s->m->num_params;
    if (a == s->k - 1) {
        if (!deferred) lmf_sumtree_push(&s->t, -1, 1, 1, add, s);
        return;
    }
    if (a % 2) { /* it completes blocks: their sums go to the older buffers, m's gradients are free again */
        lmf_sumtree_push(&s->t, -1, 0, 0, add, s);
        return;
    }
    int held[LMF_SUMTREE_MAX], n = lmf_sumtree_held(&s->t, held), free_id = 0; /* an even one waits in a buffer */
    for (int busy = 1; busy;) {
        busy = 0;
        for (int i = 0; i < n; i++) busy |= held[i] == free_id;
        free_id += busy;
    }
    LMF_CHECK(free_id < s->nbuf);
    run(s, free_id, -1, 1);
    lmf_sumtree_push(&s->t, free_id, 0, 0, add, s);
}

void lmf_grad_sum_range(lmf_grad_sum *s, size_t at, size_t len) {
    lmf_sumtree t = s->t; /* every range is summed with the same blocks */
    s->at = at, s->len = len;
    lmf_sumtree_push(&t, -1, 1, 1, add, s);
}
