/* grad_sum.c — see grad_sum.h. */
#include "train/grad_sum.h"
#include "core/alloc.h"
#include "core/parallel.h"
#include "core/status.h"

#include <string.h>

static void commit_piece(void *buf, float *g, size_t v, size_t n) {
    (void)g;
    lmf_alloc_commit(buf, v * sizeof(float), n * sizeof(float));
}

void lmf_grad_sum_init(lmf_grad_sum *s, lmf_model *m, int k) {
    memset(s, 0, sizeof *s);
    s->m = m, s->k = k, s->nbuf = lmf_sumtree_most(k) - 1; /* the newest waits in m's own */
    /* committed now, as the model's own gradients are: no page faults inside a step; a rank holding pieces of the
     * buffer (a pipeline stage, a tensor-parallel share) commits those pieces only */
    int sparse = m->held || m->packed;
    size_t bytes = lmf_model_grad_extent(m) * sizeof(float);
    for (int i = 0; i < s->nbuf; i++) {
        s->buf[i] = sparse ? lmf_alloc_big_sparse(bytes) : lmf_alloc_big(bytes);
        if (sparse) lmf_model_grad_pieces(m, 0, m->num_params, commit_piece, s->buf[i]);
    }
    s->buf[s->nbuf] = m->grads; /* the model's own: the pool's last */
}

void lmf_grad_sum_share(lmf_grad_sum *s, lmf_model *const *sharers, int n) { s->sharers = sharers, s->n_sharers = n; }

void lmf_grad_sum_free(lmf_grad_sum *s) {
    if (s->m && s->m->grads != s->buf[s->nbuf]) lmf_model_swap_grads(s->m, s->buf[s->nbuf], s->sharers, s->n_sharers);
    for (int i = 0; i < s->nbuf; i++) lmf_free_big(s->buf[i]);
    memset(s, 0, sizeof *s);
}

double lmf_grad_sum_bytes(int k, double held_floats) {
    return (lmf_sumtree_most(k) - 1) * held_floats * sizeof(float);
}

/* The pool's buffer that m's gradients are now. */
static int current(const lmf_grad_sum *s) {
    for (int i = 0; i <= s->nbuf; i++)
        if (s->buf[i] == s->m->grads) return i;
    LMF_CHECK(0);
    return -1;
}

/* One piece of an addition or a copy: dst = dst + src (or src) over this thread's share of it. */
typedef struct {
    const lmf_grad_sum *s;
    int dst, src, cur, copy;
} piece_op;

/* id's floats of the piece: m's own place for the buffer m's gradients are (a packed row's lies apart) */
static float *at_id(const piece_op *o, int id, float *g, size_t v) { return id == o->cur ? g : o->s->buf[id] + v; }

static void piece(void *ctx, float *g, size_t v, size_t n) {
    const piece_op *o = ctx;
    long lo, hi;
    lmf_omp_range((long)n, &lo, &hi);
    if (hi <= lo) return;
    float *d = at_id(o, o->dst, g, v) + lo;
    const float *x = at_id(o, o->src, g, v) + lo;
    if (o->copy) {
        memcpy(d, x, (size_t)(hi - lo) * sizeof(float));
        return;
    }
    for (long i = 0; i < hi - lo; i++) d[i] += x[i];
}

/* every thread walks all pieces and takes its share of each: a tensor-parallel rank has thousands of short ones */
static void run(lmf_grad_sum *s, int dst, int src, int copy) {
    piece_op o = {s, dst, src, current(s), copy};
#pragma omp parallel
    lmf_model_grad_pieces(s->m, s->at, s->len, piece, &o);
}

static void add(void *ctx, int dst, int src) { run(ctx, dst, src, 0); }

/* A pool buffer neither on the tree's stack nor m's gradients. */
static int free_buffer(const lmf_grad_sum *s) {
    int cur = current(s);
    for (int i = 0; i <= s->nbuf; i++) {
        int busy = i == cur;
        for (int j = 0; j < s->t.depth; j++) busy |= s->t.id[j] == i; /* a waiting sum's */
        if (!busy) return i;
    }
    LMF_CHECK(0);
    return -1;
}

void lmf_grad_sum_add(lmf_grad_sum *s, int a, int deferred) {
    LMF_CHECK(0 <= a && a < s->k && s->k > 1);
    if (a == 0) lmf_sumtree_reset(&s->t, s->k);
    s->at = 0, s->len = s->m->num_params;
    int cur = current(s);
    if (a == s->k - 1) { /* the total into m's gradients */
        if (!deferred) lmf_sumtree_push(&s->t, cur, 1, add, s);
        return;
    }
    /* sums it completes go to the older buffers, leaving m's gradients free again */
    if (lmf_sumtree_push(&s->t, cur, 0, add, s) != cur) return;
    int f = free_buffer(s); /* else it waits: in its buffer, m's gradients moving to a free one, or copied out */
    if (lmf_model_grads_swappable(s->m)) {
        lmf_model_swap_grads(s->m, s->buf[f], s->sharers, s->n_sharers);
        return;
    }
    run(s, f, cur, 1);
    s->t.id[s->t.depth - 1] = f;
}

void lmf_grad_sum_range(lmf_grad_sum *s, size_t at, size_t len) {
    lmf_sumtree t = s->t; /* every range is summed with the same blocks */
    s->at = at, s->len = len;
    lmf_sumtree_push(&t, current(s), 1, add, s);
}
