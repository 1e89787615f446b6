/* engine.c — continuous batching (see engine.h for the contract and why results do not depend on the batch).
 *
 * Locks: `mu` guards the queue, the running list's membership, the cancel flags and the stats; `cb_mu` is held
 * while results are turned into events and delivered, and by lmf_engine_cancel, so that once cancel returns no
 * callback of that request runs. Order: cb_mu before mu. The sessions, the pool and the prefix cache belong to the
 * engine thread alone; the steps run without any lock. */
#include "serve/engine.h"
#include "core/alloc.h"
#include "core/progress.h"
#include "core/status.h"
#include "model/block.h"
#include "model/generate.h"
#include "model/infer.h"
#include "serve/prefix_cache.h"

#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef enum { R_WAIT, R_PREFILL, R_DECODE } req_state;

typedef struct req {
    uint64_t id;
    lmf_engine_request r;   /* prompt, stops and stop_ids point at the copies below */
    char **stops;
    int32_t *stop_ids;
    int32_t *toks;          /* prompt, then the generated tokens (n_ctx at most) */
    int n_toks;
    int n_feed;             /* tokens to read before sampling: the prompt (after a preemption, all but the last) */
    int fed;                /* tokens the session holds */
    int prompt_path;        /* LMF_STEP_PREFILL or LMF_STEP_DECODE for the prompt's rows (fixed by its length) */
    int resumed;            /* re-read after a preemption: the next token is already sampled */
    int cached, gen;
    req_state st;
    int cancelled;
    lmf_session *s;
    lmf_sampler *smp;
    lmf_detok dt;
    int32_t *counts;        /* per vocabulary id, generated so far (presence / frequency penalties) */
    int32_t *bias_ids;      /* r.bias_ids / r.bias copied */
    float *bias;
    lmf_grammar_state *gs;  /* where the reply stands in r.grammar (owned with it), or NULL */
    int32_t *ends;          /* the stop tokens the grammar lets through once complete: the model's and r.stop_ids */
    int n_ends;
    double t_submit, t_admit, t_first;
    struct req *next;
} req;

struct lmf_engine {
    const lmf_weights *w;
    const lmf_lora *lora;
    lmf_engine_config cfg;
    int V, nthreads, lora_set;
    int32_t model_stops[4];
    int n_model_stops;
    lmf_grammar_vocab *gvocab; /* the tokens' bytes for grammar masks, built at the first constrained request */
    lmf_kv_pool *pool;
    lmf_prefix_cache *cache;
    pthread_t thread;
    pthread_mutex_t mu, cb_mu;
    pthread_cond_t cv;
    int quit;
    req *waiting, *running; /* FIFO lists; running in admission order */
    int n_waiting, n_running;
    uint64_t next_id;
    lmf_engine_stats stats;
    float *logits, *scratch; /* (QMV_MAX or parallel) x V step output; one V row for sampling */
    int logits_rows;
    long step_gen;           /* tokens sampled in this iteration (engine thread), added to stats under mu */
};

lmf_engine_config lmf_engine_defaults(void) {
    return (lmf_engine_config){.parallel = 16, .kv_tokens = 0, .n_ctx = 0, .max_queue = 64, .chunk = 256,
                               .block_size = 16, .prefix_cache = 1};
}

/* ---- requests ----------------------------------------------------------------------------------------------- */

static void req_free(req *q) {
    if (!q) return;
    for (int i = 0; i < q->r.n_stops; i++) free(q->stops[i]);
    lmf_session_free(q->s);
    lmf_sampler_free(q->smp);
    lmf_detok_free(&q->dt);
    lmf_grammar_state_free(q->gs);
    lmf_grammar_free(q->r.grammar);
    LMF_FREE_ALL(q->stops, q->stop_ids, q->toks, q->counts, q->ends, q->bias_ids, q->bias, q);
}

static void list_push(req **head, req *q) {
    q->next = NULL;
    while (*head) head = &(*head)->next;
    *head = q;
}

static void list_remove(req **head, req *q) {
    for (; *head; head = &(*head)->next)
        if (*head == q) {
            *head = q->next;
            return;
        }
}

/* Delivers an event unless the request was cancelled; a callback that returns non-zero cancels it. cb_mu held. */
static void deliver(req *q, lmf_engine_event *ev) {
    if (q->cancelled) return;
    ev->id = q->id;
    if (q->r.cb(q->r.ctx, ev)) q->cancelled = 1;
}

static void fail_req(req *q, const char *msg) {
    lmf_engine_event ev = {.kind = LMF_ENGINE_ERROR, .message = msg, .text = "", .gen_tokens = q->gen};
    deliver(q, &ev);
}

/* ---- the step's results ------------------------------------------------------------------------------------- */

static void finish(lmf_engine *e, req *q, lmf_stop_reason reason, double now) {
    const char *text = "";
    size_t len = 0;
    if (lmf_detok_finish(&q->dt, &text, &len) && reason != LMF_STOP_STRING) reason = LMF_STOP_STRING;
    lmf_engine_event ev = {.kind = LMF_ENGINE_DONE, .text = text, .len = len, .reason = reason,
                           .prompt_tokens = (int)q->r.n_prompt, .cached_tokens = q->cached, .gen_tokens = q->gen,
                           .queue_s = q->t_admit - q->t_submit, .ttft_s = q->t_first ? q->t_first - q->t_submit : 0,
                           .gen_s = q->t_first ? now - q->t_first : 0};
    deliver(q, &ev);
    q->cancelled = 1; /* ended: the engine drops it at the next iteration */
}

/* Samples q's next token from its logits row, reports it, and decides whether q goes on. cb_mu held. */
static void sample(lmf_engine *e, req *q, const float *row) {
    double now = lmf_now();
    if (!q->t_first) q->t_first = now;
    int V = e->V;
    float *lg = e->scratch;
    memcpy(lg, row, sizeof(float) * (size_t)V);
    if (q->counts)
        for (int i = 0; i < V; i++)
            if (q->counts[i]) lg[i] -= q->r.presence_penalty + q->r.frequency_penalty * (float)q->counts[i];
    for (int i = 0; i < q->r.n_bias; i++) lg[q->bias_ids[i]] += q->bias[i];
    if (q->gs && !lmf_grammar_mask(q->gs, e->gvocab, q->ends, q->n_ends, lg)) {
        /* nothing may follow (nesting past the grammar's depth): end here rather than leave the grammar */
        finish(e, q, LMF_STOP_TOKEN, now);
        return;
    }
    int32_t tok = lmf_sampler_sample(q->smp, lg, q->toks, q->n_toks);
    int stop = 0;
    for (int k = 0; k < e->n_model_stops; k++) stop |= tok == e->model_stops[k];
    for (int k = 0; k < q->r.n_stop_ids; k++) stop |= tok == q->stop_ids[k];
    if (stop) {
        finish(e, q, LMF_STOP_TOKEN, now);
        return;
    }
    if (q->gs) lmf_grammar_accept(q->gs, e->gvocab, tok); /* allowed by the mask: always accepted */
    q->toks[q->n_toks++] = tok;
    q->gen++;
    e->step_gen++;
    if (q->counts) q->counts[tok]++;
    lmf_engine_logprob top[LMF_ENGINE_TOP_MAX];
    lmf_engine_event ev = {.kind = LMF_ENGINE_TOKEN, .token = tok};
    if (q->r.logprobs) {
        ev.logprob = lmf_logprobs(row, V, tok, q->r.top_logprobs, top);
        ev.top = top, ev.n_top = q->r.top_logprobs;
    }
    int hit = lmf_detok_push(&q->dt, tok, &ev.text, &ev.len);
    deliver(q, &ev);
    if (hit) finish(e, q, LMF_STOP_STRING, now);
    else if (q->r.max_tokens > 0 && q->gen >= q->r.max_tokens) finish(e, q, LMF_STOP_LENGTH, now);
    else if (q->n_toks >= lmf_session_n_ctx(q->s)) finish(e, q, LMF_STOP_CONTEXT, now);
    else q->st = R_DECODE;
}

/* ---- scheduling --------------------------------------------------------------------------------------------- */

static int bs(const lmf_engine *e) { return lmf_kv_pool_block_size(e->pool); }

/* Blocks the pool can hand out, the prefix cache's reclaimable ones included (windowed ones: a pool that splits). */
static int blocks_available(const lmf_engine *e) {
    return lmf_kv_pool_blocks_free(e->pool) + (e->cache ? lmf_prefix_cache_reclaimable(e->cache) : 0);
}
static int window_available(const lmf_engine *e) {
    return lmf_kv_pool_window_blocks_free(e->pool) + (e->cache ? lmf_prefix_cache_window_reclaimable(e->cache) : 0);
}

/* Whether the pool has `need` free blocks of each kind a step takes. */
static int pool_has(const lmf_engine *e, int need) {
    return lmf_kv_pool_blocks_free(e->pool) >= need &&
           (!lmf_kv_pool_window(e->pool) || lmf_kv_pool_window_blocks_free(e->pool) >= need);
}

static int make_room(lmf_engine *e, int need) {
    int lack = need - lmf_kv_pool_blocks_free(e->pool);
    int wlack = lmf_kv_pool_window(e->pool) ? need - lmf_kv_pool_window_blocks_free(e->pool) : 0;
    if ((lack > 0 || wlack > 0) && e->cache) lmf_prefix_cache_evict(e->cache, lack, wlack);
    return pool_has(e, need);
}

/* Moves waiting requests into the running set while slots and blocks allow (FIFO: the head waits for room rather
 * than being overtaken). mu held. */
static void admit(lmf_engine *e) {
    while (e->waiting && e->n_running < e->cfg.parallel) {
        req *q = e->waiting;
        int b = bs(e), nb = (q->n_feed + b - 1) / b, matched = 0, W = lmf_kv_pool_window(e->pool);
        int *blocks = lmf_xmalloc(sizeof(int) * 2 * (size_t)(nb + 1)), *wblocks = blocks + nb + 1;
        /* the prompt's last token is always computed: its logits give the first token */
        if (e->cache && q->prompt_path == LMF_STEP_PREFILL && !q->resumed)
            matched = lmf_prefix_cache_match(e->cache, q->toks, (q->n_feed - 1) / b, blocks, wblocks);
        /* room for the prompt and the first generated token (a prompt that fills the context needs no more), and
         * for as many windowed blocks as a sequence holds at once, checked before anything is made: the head may
         * wait many iterations. Matched blocks only the cache holds count as reclaimable now but will be pinned by
         * the adoption (windowed ones: those of the window before the match's end). */
        int upto = q->n_feed + 1 < e->cfg.n_ctx ? q->n_feed + 1 : e->cfg.n_ctx, pinned = 0, wpinned = 0;
        int need = (upto + b - 1) / b - matched;
        for (int i = 0; i < matched; i++) pinned += lmf_kv_pool_block_refs(e->pool, blocks[i]) == 1;
        for (int i = lmf_kv_pool_window_first(e->pool, matched * b); W && i < matched; i++)
            wpinned += lmf_kv_pool_block_refs(e->pool, wblocks[i]) == 1;
        int wneed = need < lmf_kv_pool_window_peak(e->pool) ? need : lmf_kv_pool_window_peak(e->pool);
        lmf_session *s = NULL;
        if (blocks_available(e) - pinned < need || (W && window_available(e) - wpinned < wneed)) {
            free(blocks);
            return; /* not now */
        }
        if (lmf_session_create_pooled(e->pool, e->cfg.n_ctx, &s) != LMF_OK ||
            lmf_session_adopt(s, blocks, wblocks, matched) != LMF_OK) {
            free(blocks);
            lmf_session_free(s);
            return; /* cannot happen with validated requests; leave it waiting */
        }
        free(blocks);
        if (e->lora && !e->lora_set) lmf_session_set_lora(s, e->lora), e->lora_set = 1;
        e->waiting = q->next, e->n_waiting--;
        q->s = s;
        q->fed = q->cached = matched * b;
        q->st = R_PREFILL;
        if (!q->t_admit) q->t_admit = lmf_now();
        list_push(&e->running, q);
        e->n_running++;
        e->stats.cached_tokens += q->cached;
    }
}

/* Sends the most recently admitted running request back to the head of the queue, to re-read everything it has
 * (its generated tokens included) when blocks are free again. mu held. */
static int preempt(lmf_engine *e, req *keep) {
    req *last = NULL;
    for (req *q = e->running; q; q = q->next)
        if (q != keep && !q->cancelled) last = q;
    if (!last) return 0;
    list_remove(&e->running, last);
    e->n_running--;
    lmf_session_free(last->s);
    last->s = NULL;
    if (last->st == R_DECODE) last->n_feed = last->n_toks - 1, last->resumed = 1;
    last->fed = 0;
    last->prompt_path = LMF_STEP_PREFILL;
    last->st = R_WAIT;
    last->next = e->waiting;
    e->waiting = last, e->n_waiting++;
    e->stats.preempted++;
    return 1;
}

typedef struct {
    lmf_session *s[LMF_BLOCK_NB];
    const int32_t *t[LMF_BLOCK_NB];
    int n[LMF_BLOCK_NB];
    req *q[LMF_BLOCK_NB];
    int count, rows, blocks, prompt_rows;
} batch;

static void batch_add(batch *b, req *q, int n) {
    b->s[b->count] = q->s, b->t[b->count] = q->toks + q->fed, b->n[b->count] = n, b->q[b->count] = q;
    b->blocks += lmf_session_blocks_needed(q->s, n);
    if (q->st == R_PREFILL) b->prompt_rows += n;
    b->count++, b->rows += n;
}

/* The iteration's two batches: the decode rows (one per generating sequence, and prompts short enough for the
 * decode path) and one prefill chunk of at most cfg.chunk prompt tokens. mu held. */
static void plan(lmf_engine *e, batch *dec, batch *pre) {
    dec->count = dec->rows = dec->blocks = dec->prompt_rows = 0;
    pre->count = pre->rows = pre->blocks = pre->prompt_rows = 0;
    int budget = e->cfg.chunk;
    for (req *q = e->running; q; q = q->next) {
        if (q->cancelled) continue;
        if (q->st == R_DECODE && dec->rows < LMF_BLOCK_QMV_MAX) {
            batch_add(dec, q, 1);
        } else if (q->st == R_PREFILL && q->prompt_path == LMF_STEP_DECODE) {
            int n = q->n_feed - q->fed;
            if (dec->rows + n <= LMF_BLOCK_QMV_MAX) batch_add(dec, q, n);
        } else if (q->st == R_PREFILL && budget > 0) {
            int n = q->n_feed - q->fed < budget ? q->n_feed - q->fed : budget;
            batch_add(pre, q, n);
            budget -= n;
        }
    }
}

/* After a step: the sequences that read their last prompt token or a generated one sample. cb_mu held. */
static void absorb(lmf_engine *e, const batch *b) {
    for (int i = 0; i < b->count; i++) {
        req *q = b->q[i];
        q->fed += b->n[i];
        /* the prompt's full blocks enter the prefix cache chunk by chunk: a request that shares them finds them
         * while this one still reads, and they enter with the windowed blocks the session holds yet (it hands back
         * those that fall out of its window as it reads on; the cache keeps them while there is room) */
        if (q->st == R_PREFILL && q->prompt_path == LMF_STEP_PREFILL && e->cache && !q->resumed) {
            const int *blocks;
            int n = lmf_session_block_table(q->s, &blocks), full = q->fed / bs(e);
            lmf_prefix_cache_insert(e->cache, q->toks, full < n ? full : n, blocks, lmf_session_window_table(q->s),
                                    q->fed == q->n_feed);
        }
        if (q->st == R_PREFILL && q->fed < q->n_feed) continue;
        if (q->resumed && q->st == R_PREFILL) { /* re-read: its next token was sampled before the preemption */
            q->st = R_DECODE;
            q->resumed = 0;
            continue;
        }
        sample(e, q, e->logits + (size_t)i * e->V);
    }
}

static void run_batch(lmf_engine *e, batch *b, lmf_step_path path) {
    if (!b->count) return;
    lmf_status st = lmf_session_step(b->s, b->t, b->n, b->count, e->logits, path);
    pthread_mutex_lock(&e->cb_mu);
    if (st != LMF_OK) {
        for (int i = 0; i < b->count; i++) fail_req(b->q[i], lmf_last_error()), b->q[i]->cancelled = 1;
    } else {
        absorb(e, b);
    }
    pthread_mutex_unlock(&e->cb_mu);
}

/* Drops ended and cancelled requests from the running set (their blocks go back at once). mu held. */
static void reap(lmf_engine *e) {
    for (req **p = &e->running; *p;) {
        req *q = *p;
        if (!q->cancelled) {
            p = &q->next;
            continue;
        }
        *p = q->next;
        e->n_running--;
        req_free(q);
    }
}

/* The pool's numbers, read here by the thread that changes them (mu held). */
static void update_stats(lmf_engine *e) {
    lmf_engine_stats *s = &e->stats;
    s->waiting = e->n_waiting, s->running = e->n_running;
    s->kv_blocks = lmf_kv_pool_blocks(e->pool);
    s->kv_blocks_used = s->kv_blocks - lmf_kv_pool_blocks_free(e->pool);
    s->kv_block_size = lmf_kv_pool_block_size(e->pool);
    s->kv_bytes = (double)lmf_kv_pool_bytes(e->pool);
    s->kv_blocks_cached = e->cache ? lmf_prefix_cache_reclaimable(e->cache) : 0;
    s->kv_window = lmf_kv_pool_window(e->pool);
    s->kv_window_blocks = lmf_kv_pool_window_blocks(e->pool);
    s->kv_window_blocks_used = s->kv_window_blocks - lmf_kv_pool_window_blocks_free(e->pool);
}

static void *engine_main(void *arg) {
    lmf_engine *e = arg;
    omp_set_num_threads(e->nthreads); /* a new thread starts from the defaults, not the creator's setting */
    batch *dec = lmf_xmalloc(sizeof *dec), *pre = lmf_xmalloc(sizeof *pre);
    pthread_mutex_lock(&e->mu);
    for (;;) {
        reap(e);
        update_stats(e);
        while (!e->quit && !e->waiting && !e->running) pthread_cond_wait(&e->cv, &e->mu);
        if (e->quit) break;
        admit(e);
        plan(e, dec, pre);
        /* blocks for both batches, from the free list, the prefix cache, or by preempting the newest sequence */
        while (!make_room(e, dec->blocks + pre->blocks)) {
            if (!preempt(e, e->running)) break;
            plan(e, dec, pre);
        }
        e->stats.last_batch = dec->rows + pre->rows;
        pthread_mutex_unlock(&e->mu);
        if (pool_has(e, dec->blocks + pre->blocks)) {
            run_batch(e, dec, LMF_STEP_DECODE);
            run_batch(e, pre, LMF_STEP_PREFILL);
        } else { /* one sequence alone does not fit (cannot happen: n_ctx <= the pool) */
            pthread_mutex_lock(&e->cb_mu);
            for (int i = 0; i < dec->count; i++) fail_req(dec->q[i], "the KV pool is exhausted"), dec->q[i]->cancelled = 1;
            for (int i = 0; i < pre->count; i++) fail_req(pre->q[i], "the KV pool is exhausted"), pre->q[i]->cancelled = 1;
            pthread_mutex_unlock(&e->cb_mu);
        }
        pthread_mutex_lock(&e->mu);
        e->stats.steps++;
        e->stats.prompt_tokens += pre->prompt_rows + dec->prompt_rows;
        e->stats.gen_tokens += e->step_gen;
        e->step_gen = 0;
        update_stats(e);
    }
    pthread_mutex_unlock(&e->mu);
    free(dec);
    free(pre);
    return NULL;
}

/* ---- the API ------------------------------------------------------------------------------------------------ */

lmf_status lmf_engine_create(const lmf_weights *w, const lmf_lora *lora, const lmf_engine_config *cfg,
                             lmf_engine **out) {
    *out = NULL;
    const lmf_model_config *mc = lmf_weights_config(w);
    lmf_engine_config c = cfg ? *cfg : lmf_engine_defaults();
    if (!lmf_weights_tokenizer(w)) return lmf_fail(LMF_ERR_ARG, "serving needs a tokenizer; the model carries none");
    LMF_REQUIRE_ARG(c.parallel >= 1 && c.parallel <= 1024, "parallel %d must be in [1, 1024]", c.parallel);
    LMF_REQUIRE_ARG(c.max_queue >= 0, "max queue %d must be >= 0", c.max_queue);
    LMF_REQUIRE_ARG(c.chunk >= 1 && c.chunk <= LMF_BLOCK_NB, "chunk %d must be in [1, %d]", c.chunk, LMF_BLOCK_NB);
    LMF_REQUIRE_ARG(c.block_size >= 1 && c.block_size <= 4096, "block size %d must be in [1, 4096]", c.block_size);
    LMF_REQUIRE_ARG(c.n_ctx >= 0 && c.kv_tokens >= 0, "n_ctx %d and kv_tokens %d must be >= 0", c.n_ctx, c.kv_tokens);
    if (!c.n_ctx || c.n_ctx > mc->max_seq_len) c.n_ctx = mc->max_seq_len;
    /* sliding-window layers: room for the running sequences' windows; the prefix cache keeps prompts' last windows
     * in what they leave free (a running sequence never waits for windowed blocks: the cache's are evicted first) */
    int windows = c.kv_window_full ? 0 : c.parallel;
    /* a sequence's rows in a step: a prefill chunk, or a short prompt's on the decode path */
    int step = c.chunk > LMF_BLOCK_QMV_AUTO ? c.chunk : LMF_BLOCK_QMV_AUTO;
    if (c.kv_bytes > 0) {
        double P = lmf_kv_pool_positions_for(mc, c.kv_bytes, c.block_size, windows, step, c.kv_type);
        if (isinf(P)) P = (double)c.parallel * c.n_ctx; /* every layer windowed: room for every sequence's context */
        LMF_REQUIRE_ARG(P >= 1 && P <= 1 << 30, "a KV cache of %.0f MiB holds %.0f positions of this model (1 to 2^30)",
                        c.kv_bytes / 1048576.0, P);
        c.kv_tokens = (int)P;
    }
    if (!c.kv_tokens) c.kv_tokens = c.parallel * (c.n_ctx < 2048 ? c.n_ctx : 2048);
    if (c.n_ctx > c.kv_tokens) c.n_ctx = c.kv_tokens;
    LMF_REQUIRE_ARG(c.n_ctx >= 2, "the context (%d tokens) leaves no room to generate", c.n_ctx);
    lmf_engine *e = lmf_xcalloc(1, sizeof *e);
    e->w = w, e->lora = lora, e->cfg = c;
    e->V = mc->vocab_size;
    e->nthreads = omp_get_max_threads();
    e->n_model_stops = lmf_weights_stop_tokens(w, e->model_stops);
    lmf_status st = lmf_kv_pool_create_windows(w, c.kv_tokens, c.block_size, c.n_ctx, c.kv_type, windows, step,
                                               &e->pool);
    if (st == LMF_OK && !c.kv_lazy && (st = lmf_kv_pool_commit(e->pool)) != LMF_OK) lmf_kv_pool_free(e->pool);
    if (st != LMF_OK) {
        free(e);
        return st;
    }
    if (c.prefix_cache) e->cache = lmf_prefix_cache_create(e->pool);
    e->logits_rows = LMF_BLOCK_QMV_MAX > c.parallel ? LMF_BLOCK_QMV_MAX : c.parallel;
    e->logits = lmf_xmalloc(sizeof(float) * (size_t)e->logits_rows * e->V);
    e->scratch = lmf_xmalloc(sizeof(float) * (size_t)e->V);
    e->stats.parallel = c.parallel;
    e->stats.n_ctx = c.n_ctx;
    update_stats(e);
    pthread_mutex_init(&e->mu, NULL);
    pthread_mutex_init(&e->cb_mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    e->next_id = 1;
    if (pthread_create(&e->thread, NULL, engine_main, e)) {
        lmf_prefix_cache_free(e->cache);
        lmf_kv_pool_free(e->pool);
        LMF_FREE_ALL(e->logits, e->scratch, e);
        return lmf_fail(LMF_ERR_IO, "could not start the engine thread");
    }
    *out = e;
    return LMF_OK;
}

void lmf_engine_free(lmf_engine *e) {
    if (!e) return;
    pthread_mutex_lock(&e->mu);
    e->quit = 1;
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
    pthread_join(e->thread, NULL);
    pthread_mutex_lock(&e->cb_mu);
    for (req *lists[2] = {e->running, e->waiting}, **l = lists; l < lists + 2; l++)
        for (req *q = *l, *nx; q; q = nx) {
            nx = q->next;
            fail_req(q, "the server is shutting down");
            req_free(q);
        }
    pthread_mutex_unlock(&e->cb_mu);
    lmf_prefix_cache_free(e->cache);
    lmf_kv_pool_free(e->pool);
    lmf_grammar_vocab_free(e->gvocab);
    pthread_mutex_destroy(&e->mu);
    pthread_mutex_destroy(&e->cb_mu);
    pthread_cond_destroy(&e->cv);
    LMF_FREE_ALL(e->logits, e->scratch, e);
}

lmf_status lmf_engine_submit(lmf_engine *e, const lmf_engine_request *r, uint64_t *id) {
    *id = 0;
    int n_ctx = e->cfg.n_ctx;
    if (!r->cb) return lmf_fail(LMF_ERR_ARG, "a request needs a callback");
    if (r->n_prompt < 1) return lmf_fail(LMF_ERR_ARG, "the prompt is empty");
    if (r->n_prompt >= n_ctx)
        return lmf_fail(LMF_ERR_ARG, "the prompt has %d tokens; the context holds %d (prompt and reply together)",
                        r->n_prompt, n_ctx);
    for (int i = 0; i < r->n_prompt; i++)
        if (r->prompt[i] < 0 || r->prompt[i] >= e->V)
            return lmf_fail(LMF_ERR_ARG, "prompt token %d (at %d) is outside the vocabulary [0, %d)", r->prompt[i], i,
                            e->V);
    if (r->top_logprobs < 0 || r->top_logprobs > LMF_ENGINE_TOP_MAX)
        return lmf_fail(LMF_ERR_ARG, "top_logprobs %d must be in [0, %d]", r->top_logprobs, LMF_ENGINE_TOP_MAX);
    if (r->n_stops < 0 || r->n_stop_ids < 0 || r->n_bias < 0) return lmf_fail(LMF_ERR_ARG, "negative counts");
    for (int i = 0; i < r->n_bias; i++)
        if (r->bias_ids[i] < 0 || r->bias_ids[i] >= e->V || !isfinite(r->bias[i]))
            return lmf_fail(LMF_ERR_ARG, "logit bias %d: token %d or bias %g out of range", i, r->bias_ids[i],
                            (double)r->bias[i]);
    if (r->grammar && !lmf_weights_tokenizer(e->w))
        return lmf_fail(LMF_ERR_ARG, "constrained decoding needs the model's tokenizer, and this model carries none");
    req *q = lmf_xcalloc(1, sizeof *q);
    q->r = *r;
    q->r.grammar = NULL; /* the caller's until the submit succeeds */
    if (!q->r.logprobs) q->r.top_logprobs = 0;
    lmf_status st = lmf_sampler_create(&r->sampling, e->V, &q->smp);
    if (st != LMF_OK) {
        req_free(q);
        return st;
    }
    q->toks = lmf_xmalloc(sizeof(int32_t) * (size_t)n_ctx);
    memcpy(q->toks, r->prompt, sizeof(int32_t) * (size_t)r->n_prompt);
    q->n_toks = q->n_feed = r->n_prompt;
    q->r.prompt = q->toks;
    q->stops = lmf_xcalloc((size_t)r->n_stops + 1, sizeof(char *));
    for (int i = 0; i < r->n_stops; i++) {
        size_t n = strlen(r->stops[i]) + 1;
        q->stops[i] = memcpy(lmf_xmalloc(n), r->stops[i], n);
    }
    q->r.stops = (const char *const *)q->stops;
    q->stop_ids = lmf_xmalloc(sizeof(int32_t) * ((size_t)r->n_stop_ids + 1));
    if (r->n_stop_ids) memcpy(q->stop_ids, r->stop_ids, sizeof(int32_t) * (size_t)r->n_stop_ids);
    q->r.stop_ids = q->stop_ids;
    if (r->n_bias) {
        q->bias_ids = memcpy(lmf_xmalloc(sizeof(int32_t) * (size_t)r->n_bias), r->bias_ids,
                             sizeof(int32_t) * (size_t)r->n_bias);
        q->bias = memcpy(lmf_xmalloc(sizeof(float) * (size_t)r->n_bias), r->bias, sizeof(float) * (size_t)r->n_bias);
    }
    if (r->presence_penalty != 0 || r->frequency_penalty != 0)
        q->counts = lmf_xcalloc((size_t)e->V, sizeof(int32_t));
    lmf_detok_init(&q->dt, lmf_weights_tokenizer(e->w), q->r.stops, r->n_stops);
    /* the prompt's path, fixed by the prompt alone (infer.h: why the batch must not choose it) */
    q->prompt_path = r->n_prompt > LMF_BLOCK_QMV_AUTO ? LMF_STEP_PREFILL : LMF_STEP_DECODE;
    q->t_submit = lmf_now();
    pthread_mutex_lock(&e->mu);
    /* the queue is what waits beyond the free slots (requests the engine has not admitted yet do not count) */
    if (e->n_waiting - (e->cfg.parallel - e->n_running) >= e->cfg.max_queue) {
        int nw = e->n_waiting;
        pthread_mutex_unlock(&e->mu);
        req_free(q);
        return lmf_fail(LMF_ERR_BUSY, "%d requests are already waiting (--max-queue %d)", nw, e->cfg.max_queue);
    }
    if (r->grammar) {
        if (!e->gvocab) lmf_grammar_vocab_create(lmf_weights_tokenizer(e->w), &e->gvocab);
        q->r.grammar = r->grammar;
        q->gs = lmf_grammar_state_create(r->grammar);
        q->ends = lmf_xmalloc(sizeof(int32_t) * (size_t)(e->n_model_stops + r->n_stop_ids + 1));
        for (int k = 0; k < e->n_model_stops; k++) q->ends[q->n_ends++] = e->model_stops[k];
        for (int k = 0; k < r->n_stop_ids; k++) q->ends[q->n_ends++] = r->stop_ids[k];
    }
    q->id = *id = e->next_id++;
    list_push(&e->waiting, q);
    e->n_waiting++;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    return LMF_OK;
}

void lmf_engine_cancel(lmf_engine *e, uint64_t id) {
    pthread_mutex_lock(&e->cb_mu);
    pthread_mutex_lock(&e->mu);
    req *found = NULL;
    for (req *q = e->waiting; q && !found; q = q->next)
        if (q->id == id) found = q;
    if (found) {
        list_remove(&e->waiting, found);
        e->n_waiting--;
        req_free(found);
    } else {
        for (req *q = e->running; q; q = q->next)
            if (q->id == id) q->cancelled = 1; /* the engine thread owns its session: it frees it */
    }
    pthread_mutex_unlock(&e->mu);
    pthread_mutex_unlock(&e->cb_mu);
}

void lmf_engine_get_stats(lmf_engine *e, lmf_engine_stats *s) {
    pthread_mutex_lock(&e->mu);
    *s = e->stats;
    s->waiting = e->n_waiting, s->running = e->n_running; /* these two change under mu, outside iterations too */
    pthread_mutex_unlock(&e->mu);
}
