/* lmforge.h — public C API of lmforge: the large-language-model lifecycle in C.
 *
 * Conventions
 *  - Every fallible call returns an lmf_status; on failure lmf_last_error() holds a message (per thread) that names
 *    the file, field or offset and, where useful, a hint. Library code never exits the process.
 *  - Handles are opaque; each *_create / *_open has a matching *_free that accepts NULL.
 *  - Out of memory aborts with the size requested (there is nothing sensible to return at that point).
 */
#ifndef LMFORGE_H
#define LMFORGE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LMF_VERSION "0.1.0"

typedef enum {
    LMF_OK = 0,
    LMF_ERR_IO,          /* a file could not be opened, read, written or renamed */
    LMF_ERR_FORMAT,      /* a file's bytes are not what its format requires (bad magic, truncated, out of range) */
    LMF_ERR_ARG,         /* a flag, config value or function argument is invalid */
    LMF_ERR_MISMATCH,    /* two valid things do not fit together (checkpoint vs config, data vs vocab) */
    LMF_ERR_INTERRUPTED, /* the job was asked to stop (SIGINT/SIGTERM) and stopped cleanly */
} lmf_status;

/* Message describing the last failure on this thread ("" if none). */
const char *lmf_last_error(void);
const char *lmf_status_name(lmf_status s);

/* ---- model ---------------------------------------------------------------------------------------------------- */

typedef enum { LMF_ARCH_GPT2 = 0, LMF_ARCH_LLAMA = 1 } lmf_arch;

/* One configurable pre-norm transformer, two families:
 *  gpt2:  token + learned position embeddings, LayerNorm, attention and MLP with biases, GELU (tanh), tied head.
 *  llama: RoPE (rope_theta), RMSNorm, grouped-query attention (n_kv_head divides n_head), SwiGLU, no biases,
 *         tied or untied output head. */
typedef struct {
    lmf_arch arch;
    int vocab_size;      /* V */
    int max_seq_len;     /* longest sequence T the model accepts (gpt2: rows of the position table) */
    int n_layer;         /* L */
    int n_embd;          /* C; head size is C / n_head */
    int n_head;
    int n_kv_head;       /* gpt2: must equal n_head */
    int ffn_dim;         /* hidden size of the MLP (gpt2: usually 4C) */
    float norm_eps;
    float rope_theta;    /* llama only */
    int tied_embeddings; /* output head shares the token embedding (gpt2: always) */
} lmf_model_config;

/* Defaults for a family (GPT-2 124M shape, or a small llama); callers then override fields. */
lmf_model_config lmf_model_config_default(lmf_arch arch);
/* Checks every field and the relations between them; names the first bad field. */
lmf_status lmf_model_config_validate(const lmf_model_config *cfg);
const char *lmf_arch_name(lmf_arch arch);
lmf_status lmf_arch_parse(const char *name, lmf_arch *out);

typedef struct lmf_model lmf_model;

/* Allocates parameters (and, when training, gradients and activations for batches up to B x T). */
lmf_model *lmf_model_create(const lmf_model_config *cfg, int max_batch, int max_seq, int training);
void lmf_model_free(lmf_model *m);
/* GPT-2 style initialisation: normal(0, 0.02), residual projections scaled by 1/sqrt(2L), norms 1, biases 0. */
void lmf_model_init_weights(lmf_model *m, uint64_t seed);
size_t lmf_model_num_params(const lmf_model *m);
const lmf_model_config *lmf_model_get_config(const lmf_model *m);
float *lmf_model_params(lmf_model *m);
float *lmf_model_grads(lmf_model *m);

/* Forward pass over tokens (B x T, row-major). With targets (ignore index -1) it returns the mean cross-entropy
 * over the non-ignored targets; without, it returns 0. Logits (B x T x V) stay valid until the next backward. */
float lmf_model_forward(lmf_model *m, const int32_t *tokens, const int32_t *targets, int B, int T);
const float *lmf_model_logits(const lmf_model *m);
void lmf_model_zero_grad(lmf_model *m);
/* Adds d(loss_scale * loss)/d(params) of the last forward (which must have had targets) into the gradients;
 * loss_scale = 1/k averages over k accumulated micro-batches. */
void lmf_model_backward(lmf_model *m, float loss_scale);

/* ---- training ------------------------------------------------------------------------------------------------- */

/* Learning rate at 0-based step: linear warmup over warmup_steps to lr, then cosine decay to min_lr at max_steps. */
float lmf_lr_at(int step, float lr, float min_lr, int warmup_steps, int max_steps);

/* Asks a running job (training) to stop at its next safe point, checkpoint and return LMF_ERR_INTERRUPTED.
 * Async-signal-safe: meant to be called from a SIGINT/SIGTERM handler. */
void lmf_request_stop(void);
int lmf_stop_requested(void);

#ifdef __cplusplus
}
#endif
#endif
