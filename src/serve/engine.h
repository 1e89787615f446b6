/* engine.h — the serving engine: continuous batching of many requests over one model.
 *
 * One engine thread owns the model's KV pool and every running sequence. Each iteration it
 *  - admits waiting requests (FIFO) while fewer than `parallel` run and the pool has blocks for their prompts,
 *    reusing the KV blocks of an earlier prompt with the same prefix (prefix cache, whole blocks);
 *  - decodes one token for every running sequence whose prompt is done, in one pass over the weights (the decode
 *    path, one row per sequence);
 *  - feeds the prompts still being read in chunks of at most `chunk` tokens (chunked prefill: a long prompt takes
 *    several iterations and never stalls the decoding sequences for more than one chunk);
 *  - samples each sequence's next token with the request's own sampler (its own seeded RNG), detokenizes it, checks
 *    the stop tokens and stop strings (the holdback of generate.h: released text never holds part of a stop string)
 *    and reports it through the request's callback.
 * A finished, cancelled or failed request gives its blocks back at once (the blocks of its prompt stay in the prefix
 * cache while nobody needs the memory).
 *
 * Batch invariance: a request's tokens do not depend on what else runs. Every prompt row goes through the prefill
 * path and every generated row through the decode path whatever the batch holds, both compute each row alone (the
 * products sum a row's terms in an order fixed by the weights, not by the rows beside it), the prefill's chunks
 * start at fixed positions, and only prefill-computed blocks are shared. So at temperature 0 (or with a seed) a
 * request alone and the same request among 31 others produce the same tokens, bit for bit the same logits.
 *
 * Threads: lmf_engine_submit / cancel / stats may be called from any thread. Callbacks run on the engine thread,
 * one request's events in order; they must be quick (copy, signal) and must not call back into the engine. */
#ifndef LMF_SERVE_ENGINE_H
#define LMF_SERVE_ENGINE_H

#include "lmforge.h"
#include "model/lora.h"

#include <stdint.h>

typedef struct lmf_engine lmf_engine;

typedef struct {
    int parallel;     /* running sequences at most [16] */
    int kv_tokens;    /* positions the KV pool holds in all [parallel x 2048, at most the model's context each] */
    double kv_bytes;  /* > 0: instead of kv_tokens, as many positions as a KV pool of this many bytes holds */
    int n_ctx;        /* one sequence (prompt + generated) at most [the model's max_seq_len, capped by kv_tokens] */
    int max_queue;    /* requests waiting for a slot at most; one more gets LMF_ERR_BUSY [64] */
    int chunk;        /* prompt tokens per prefill step, all prompts together [256] */
    int block_size;   /* positions per KV block [16]; the prefix cache shares whole blocks */
    int prefix_cache; /* reuse the blocks of earlier prompts that share a prefix [1] */
    lmf_kv_type kv_type; /* the cache's element type [LMF_KV_F32] */
    int kv_lazy;      /* commit the cache's pages as blocks are first used, not all at creation [0]: see below */
    int kv_window_full; /* sliding-window layers keep every position, not only their window [0] (lmforge.h:
                           lmf_kv_pool_create_windows; the pool holds `parallel` sequences' windows) */
} lmf_engine_config;
lmf_engine_config lmf_engine_defaults(void);

#define LMF_ENGINE_TOP_MAX LMF_LOGPROBS_MAX /* alternatives per token at most (OpenAI's top_logprobs limit) */

typedef lmf_token_logprob lmf_engine_logprob; /* lmf_logprobs fills them */

typedef enum {
    LMF_ENGINE_TOKEN = 0, /* one generated token (never a stop token) */
    LMF_ENGINE_DONE = 1,  /* the request ended; always its last event (none follows a cancel) */
    LMF_ENGINE_ERROR = 2, /* the request failed (message); also its last event */
} lmf_engine_event_kind;

typedef struct {
    lmf_engine_event_kind kind;
    uint64_t id;
    /* TOKEN and DONE: text that became final (never part of a stop string, whole UTF-8 characters); may be empty.
     * DONE carries what was still held back when the request ended. The pieces concatenated are the reply. */
    const char *text;
    size_t len;
    /* TOKEN */
    int32_t token;
    float logprob;                  /* the token's log-softmax under the model's raw logits (before penalties,
                                       temperature and truncation), when the request asked for logprobs */
    const lmf_engine_logprob *top;  /* the top_logprobs most likely tokens, most likely first (n_top of them) */
    int n_top;
    /* DONE */
    lmf_stop_reason reason;         /* TOKEN (stop token), STRING, LENGTH (max_tokens), CONTEXT (n_ctx full) */
    int prompt_tokens;              /* the prompt's tokens, cached ones included */
    int cached_tokens;              /* of those, taken from the prefix cache */
    int gen_tokens;                 /* generated tokens (TOKEN events) */
    double queue_s;                 /* submit -> admitted */
    double ttft_s;                  /* submit -> first token sampled (0 when none was) */
    double gen_s;                   /* first token -> end */
    /* ERROR */
    const char *message;
} lmf_engine_event;

/* Return non-zero to cancel the request (the client went away): no further events. */
typedef int (*lmf_engine_cb)(void *ctx, const lmf_engine_event *ev);

typedef struct {
    const int32_t *prompt;       /* copied by submit */
    int n_prompt;                /* >= 1 */
    lmf_sampler_params sampling; /* temperature 0: greedy; seed: the request's own RNG */
    float presence_penalty;      /* OpenAI's: logit -= presence x [count > 0] + frequency x count, counting the */
    float frequency_penalty;     /* tokens generated so far; 0 = off */
    const int32_t *bias_ids;     /* logit_bias: bias[i] is added to the logit of token bias_ids[i] before sampling */
    const float *bias;           /* (copied; ids inside the vocabulary) */
    int n_bias;
    int max_tokens;              /* tokens to generate at most; <= 0: until the context is full */
    const char *const *stops;    /* stop strings (copied) */
    int n_stops;
    const int32_t *stop_ids;     /* stop tokens besides the model's eos / end of turn (copied) */
    int n_stop_ids;
    int logprobs;                /* 1: TOKEN events carry logprob */
    int top_logprobs;            /* alternatives per token, 0..LMF_ENGINE_TOP_MAX (needs logprobs) */
    lmf_grammar *grammar;        /* NULL, or the grammar the reply must follow (constrained decoding: every token
                                    outside it is masked before sampling, the stop tokens until it is complete);
                                    a successful submit takes it over (the engine frees it) */
    lmf_engine_cb cb;
    void *ctx;
} lmf_engine_request;

/* Loads nothing: w (and lora, NULL for none, applied unmerged) must outlive the engine. Starts the engine thread,
 * which runs its steps on as many OpenMP threads as omp_get_max_threads() gives the caller here (a new thread would
 * otherwise start from OMP_NUM_THREADS). The KV pool's memory is committed here (lmf_kv_pool_commit), as
 * llama-server and vLLM claim theirs at start: no request pays the first-touch page faults (on the VMs measured a
 * fresh pool's faults cost a 16-stream run ~14% of its throughput), and a pool the machine cannot hold fails here,
 * not under load. kv_lazy keeps it reserved only, paid for as sequences grow into it. */
lmf_status lmf_engine_create(const lmf_weights *w, const lmf_lora *lora, const lmf_engine_config *cfg,
                             lmf_engine **out);
/* Stops the thread; requests still waiting or running get an ERROR event ("the server is shutting down"). NULL is
 * ignored. */
void lmf_engine_free(lmf_engine *e);

/* Queues a request; *id names it in events and for cancel. LMF_ERR_ARG when the prompt is empty, has an id outside
 * the vocabulary or leaves no room to generate in n_ctx (the message says which); LMF_ERR_BUSY when max_queue
 * requests already wait. */
lmf_status lmf_engine_submit(lmf_engine *e, const lmf_engine_request *r, uint64_t *id);
/* Ends a waiting or running request and frees its blocks. When it returns no callback of that request runs or will
 * run. Unknown or finished ids are ignored. */
void lmf_engine_cancel(lmf_engine *e, uint64_t id);

typedef struct {
    int waiting, running, parallel;
    int kv_blocks, kv_blocks_used, kv_block_size; /* used: held by sequences or the prefix cache */
    int kv_blocks_cached;                         /* held by the prefix cache alone (reclaimable) */
    double kv_bytes;                              /* the cache's memory */
    int kv_window;                                /* > 0: the sliding window whose layers have blocks of their
                                                     own (lmf_kv_pool_create_windows), of which: */
    int kv_window_blocks, kv_window_blocks_used;
    int n_ctx;
    int last_batch;                               /* rows of the last step (decode rows + prefill tokens) */
    long steps;
    long prompt_tokens, cached_tokens, gen_tokens; /* totals since start */
    long preempted;                               /* sequences sent back to the queue to free blocks */
} lmf_engine_stats;
void lmf_engine_get_stats(lmf_engine *e, lmf_engine_stats *s);

#endif
