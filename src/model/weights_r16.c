/* weights_r16.c — repacking a model's quantized matrices into the R16 decode layout (kernels/quant.h), once.
 *
 * Why here and not in the loaders: quantize, export and info read the ggml rows as the file has them; only the
 * executor wants R16, so the first session over a set of weights makes it. The repack is as large as the original,
 * so a file mapping's pages of each repacked tensor are released right after it is packed (MADV_DONTNEED on a
 * read-only private file mapping drops them; a later read faults them back in from the file): resident memory
 * peaks at the model plus its largest matrix, then settles at one model. Buffers the loader owns are not released
 * (their contents would be lost). */
#include "core/alloc.h"
#include "core/cpu.h"
#include "core/status.h"
#include "io/gguf.h"
#include "kernels/quant.h"
#include "model/weights.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

static pthread_mutex_t prepare_lock = PTHREAD_MUTEX_INITIALIZER;

/* the whole pages of [p, p + n) inside the weights' GGUF mapping, handed back to the kernel */
static void release_mapped(const lmf_weights *w, const void *p, size_t n) {
    const lmf_gguf *g = w->gguf;
    if (!g || (const uint8_t *)p < g->map || (const uint8_t *)p + n > g->map + g->size) return;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), lo = ((uintptr_t)p + page - 1) & ~(page - 1),
              hi = ((uintptr_t)p + n) & ~(page - 1);
    if (hi > lo) (void)madvise((void *)lo, hi - lo, MADV_DONTNEED); /* advice: failure only costs memory */
}

static void pack(lmf_weights *w, lmf_wtensor *t, uint8_t *dst) {
    const uint8_t *src = t->data;
    long groups = t->rows / 16;
#pragma omp parallel for schedule(static)
    for (long g = 0; g < groups; g++)
        lmf_r16_pack(t->type, t->cols, src + (size_t)g * 16 * t->row_bytes, t->row_bytes, dst + (size_t)g * 16 * t->row_bytes);
    t->r16 = dst;
    release_mapped(w, t->data, (size_t)t->rows * t->row_bytes);
}

static int wants_r16(const lmf_wtensor *t) { return !t->r16 && t->rows && lmf_r16_supported(t->type, t->rows, t->cols); }
static size_t slot_bytes(const lmf_wtensor *t) { return ((size_t)t->rows * t->row_bytes + 63) & ~(size_t)63; }

/* Every repacked matrix goes into one buffer, in the order a decode step reads them: one allocation of the model's
 * size is backed by huge pages (a matrix alone is mostly under 2 MiB, and as its own malloc got 4 KiB pages), and
 * the step's reads run through it as one stream. */
void lmf_weights_prepare_decode(lmf_weights *w) {
    if (lmf_qact_get() != LMF_QACT_INT16) return;
    pthread_mutex_lock(&prepare_lock);
    int cap = w->cfg.n_layer * (LMF_LAYER_MATRICES + LMF_MOE_MATRICES(LMF_MAX_EXPERT)) + 1, n = 0;
    lmf_wtensor **todo = lmf_xcalloc((size_t)cap, sizeof *todo);
    size_t total = 0;
    for (int l = 0; l < w->cfg.n_layer; l++) {
        const lmf_wtensor *m[LMF_LAYER_MATRICES + LMF_MOE_MATRICES(LMF_MAX_EXPERT)];
        lmf_layer_matrices(&w->layers[l], m);
        /* a mixture of experts' experts too (each a row range of its stack: whole R16 groups when F and C are
         * multiples of 16), read by the decode step as any matrix is */
        int k = LMF_LAYER_MATRICES + lmf_layer_moe_matrices(&w->layers[l], w->cfg.n_expert, m + LMF_LAYER_MATRICES);
        for (int i = 0; i < k; i++)
            if (wants_r16(m[i])) todo[n++] = (lmf_wtensor *)m[i]; /* w's own tensors */
    }
    if (wants_r16(&w->lm_head)) todo[n++] = &w->lm_head;
    for (int i = 0; i < n; i++) total += slot_bytes(todo[i]);
    uint8_t *buf = n ? lmf_weights_alloc(w, total) : NULL;
    for (int i = 0; i < n; i++) {
        pack(w, todo[i], buf);
        buf += slot_bytes(todo[i]);
    }
    /* a tied head: the token embedding reads its rows from the same copy */
    if (w->tok_emb.data == w->lm_head.data && w->tok_emb.type == w->lm_head.type) w->tok_emb.r16 = w->lm_head.r16;
    free(todo);
    pthread_mutex_unlock(&prepare_lock);
}

int lmf_weights_integer_prefill(const lmf_weights *w) {
    if (!lmf_cpu_amx_int8()) return 0;
    if (w->lm_head.r16) return 1;
    for (int l = 0; l < w->cfg.n_layer; l++) {
        const lmf_wtensor *m[LMF_LAYER_MATRICES];
        lmf_layer_matrices(&w->layers[l], m);
        for (int i = 0; i < LMF_LAYER_MATRICES; i++)
            if (m[i]->r16) return 1;
    }
    return 0;
}
