/* infer.h — what the server's engine needs from the executor beyond lmforge.h: the path of a step chosen by the
 * caller, and KV blocks shared between sessions (the prefix cache).
 *
 * Why the caller picks the path: the decode path (matrix-vector kernels on int16 activations) and the prefill path
 * (SGEMM over dequantized fp32 slabs) round differently, and lmf_session_eval_batch picks by the number of rows in
 * the step. A server that let the batch decide would give a request other logits, and at temperature 0 other
 * tokens, depending on how many others ran beside it. Each path on its own computes every row alone (a row's sums
 * run in an order fixed by the weights, whatever rows sit beside it), so fixing the path per row (prompt rows:
 * prefill, generated rows: decode) makes results independent of the batch.
 *
 * Shared blocks: a block is held by reference (the sessions whose tables list it, plus whoever else took a
 * reference, e.g. a prefix-cache entry) and returns to the free list when the last reference goes. Only full blocks
 * are shared, and a session only writes at positions past its shared prefix, so shared blocks are read-only. */
#ifndef LMF_MODEL_INFER_H
#define LMF_MODEL_INFER_H

#include "lmforge.h"
#include "model/block.h"

typedef enum {
    LMF_STEP_AUTO = 0,    /* lmf_session_eval_batch's choice: decode up to LMF_BLOCK_QMV_AUTO rows */
    LMF_STEP_PREFILL = 1, /* SGEMM over dequantized slabs, any number of rows (<= LMF_BLOCK_NB) */
    LMF_STEP_DECODE = 2,  /* matrix-vector kernels, at most LMF_BLOCK_QMV_MAX rows */
} lmf_step_path;

/* lmf_session_eval_batch on the given path. */
lmf_status lmf_session_step(lmf_session *const *s, const int32_t *const *tokens, const int *n, int count,
                            float *logits, lmf_step_path path);

/* Every prefill step of the session's pool shows its linear layers' input rows to fn first (block.h:
 * lmf_block_observe_fn; NULL: none). Decode steps (a few rows) are not observed. */
void lmf_session_set_observer(lmf_session *s, lmf_block_observe_fn fn, void *user);

/* lmf_perplexity with every prefill step's linear inputs shown to observe (lmforge imatrix): windows [skip,
 * max) only (the result's windows count those); all_logits: the head runs on every position (its input rows
 * observed too), not only the scored ones; after_window(user, k) after window k, an error stopping the run. */
typedef struct {
    lmf_block_observe_fn observe;
    void *user;
    long skip;
    int all_logits;
    lmf_status (*after_window)(void *user, long k);
} lmf_ppl_observer;
lmf_status lmf_perplexity_observed(const lmf_weights *w, const char *text, size_t len, int ctx, int max_windows,
                                   int all_positions, const lmf_sink *sink, const lmf_ppl_observer *ob,
                                   lmf_ppl_result *out);

lmf_kv_pool *lmf_session_pool(const lmf_session *s);
/* The session's block table: block i holds positions [i bs, (i + 1) bs). Returns the number of blocks. */
int lmf_session_block_table(const lmf_session *s, const int **blocks);
/* Its windowed layers' table beside it (a pool that splits, lmforge.h: lmf_kv_pool_create_windows), or NULL: -1
 * where the block went back to the pool. */
const int *lmf_session_window_table(const lmf_session *s);
/* Blocks the session must take from the pool to append n tokens (as many windowed ones, in a pool that splits). */
int lmf_session_blocks_needed(const lmf_session *s, int n);
/* An empty session starts with n full blocks of another's (a reference each): its position becomes n x bs. In a pool
 * that splits, wblocks lists their windowed blocks, which must be there for the window before position n x bs
 * (lmf_kv_pool_window); older ones are not taken. */
lmf_status lmf_session_adopt(lmf_session *s, const int *blocks, const int *wblocks, int n);
/* The sliding window whose layers have blocks of their own, or 0 when the pool does not split. */
int lmf_kv_pool_window(const lmf_kv_pool *p);
int lmf_kv_pool_window_blocks(const lmf_kv_pool *p);
int lmf_kv_pool_window_blocks_free(const lmf_kv_pool *p);
/* The positions a pool of `bytes` holds (lmf_kv_pool_create_windows with these arguments; INFINITY when every layer
 * is windowed: positions then cost no memory). */
double lmf_kv_pool_positions_for(const lmf_model_config *c, double bytes, int block_size, int n_windows,
                                 int max_step, lmf_kv_type type);
/* The first windowed block a sequence at pos still reads: the one holding pos - W + 1, the next token's first key
 * (0 while the window reaches the start). */
int lmf_kv_pool_window_first(const lmf_kv_pool *p, int pos);
/* Windowed blocks one sequence holds at most at once. */
int lmf_kv_pool_window_peak(const lmf_kv_pool *p);
/* Takes / drops a reference on a block (windowed ones included); the last drop frees it. */
void lmf_kv_pool_ref(lmf_kv_pool *p, int block);
void lmf_kv_pool_unref(lmf_kv_pool *p, int block);
int lmf_kv_pool_block_refs(const lmf_kv_pool *p, int block);

#endif
