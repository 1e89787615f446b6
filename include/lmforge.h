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

#include <signal.h> /* sig_atomic_t: a training job's stop flag */
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif
/* The library is compiled with -fvisibility=hidden: what is declared between this push and the pop at the end of
 * the file is its exported API (liblmforge.so exports these functions and nothing else; tests/check_exports.sh). */
#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif

#define LMF_VERSION "0.1.0"

typedef enum {
    LMF_OK = 0,
    LMF_ERR_IO,          /* a file could not be opened, read, written or renamed */
    LMF_ERR_FORMAT,      /* a file's bytes are not what its format requires (bad magic, truncated, out of range) */
    LMF_ERR_ARG,         /* a flag, config value or function argument is invalid */
    LMF_ERR_MISMATCH,    /* two valid things do not fit together (checkpoint vs config, data vs vocab) */
    LMF_ERR_INTERRUPTED, /* the job was asked to stop (SIGINT/SIGTERM) and stopped cleanly */
    LMF_ERR_BUSY,        /* a bounded queue or pool is full right now: try again later (the server's 429 / 503) */
} lmf_status;

/* Message describing the last failure on this thread ("" if none). */
const char *lmf_last_error(void);
const char *lmf_status_name(lmf_status s);

/* ---- reporting -------------------------------------------------------------------------------------------------
 * The library never writes to stdout or stderr. A long job (training, the data pipeline, perplexity) takes an
 * lmf_sink and sends it
 *   log lines   one finished line of text, no trailing newline ("checkpoint: out/ckpt-00000500.lmfc");
 *   progress    BEGIN (done = where the job starts, total, unit), UPDATE (done so far, a status such as
 *               "loss 2.31 lr 1e-3"), END; the caller draws a bar or ignores it;
 *   text        raw bytes of generated output as they come (a text sample), not line-based.
 * Any callback may be NULL and a NULL sink drops everything, so a job runs silently by default. Callbacks run on
 * the job's calling thread, between its steps, and must not call back into the job. */
typedef enum { LMF_LOG_INFO = 0, LMF_LOG_WARN = 1 } lmf_log_level;
typedef enum { LMF_PROGRESS_BEGIN = 0, LMF_PROGRESS_UPDATE = 1, LMF_PROGRESS_END = 2 } lmf_progress_event;

typedef struct {
    void (*log)(void *ctx, lmf_log_level level, const char *line);
    void (*progress)(void *ctx, lmf_progress_event ev, long done, long total, const char *unit, const char *status);
    void (*text)(void *ctx, const char *data, size_t len);
    void *ctx;
} lmf_sink;

/* Helpers for jobs (the library's and a caller's own): each does nothing for a NULL sink or callback.
 * lmf_sink_logf formats a printf-style line (at most 2047 bytes) only when there is a log callback. */
void lmf_sink_logf(const lmf_sink *s, lmf_log_level level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
void lmf_sink_progress(const lmf_sink *s, lmf_progress_event ev, long done, long total, const char *unit,
                       const char *status);
void lmf_sink_text(const lmf_sink *s, const char *data, size_t len);

/* Call first thing in main, before any OpenMP use: when other processes are running on the machine at start-up,
 * bounds how long libgomp's idle threads spin before sleeping (GOMP_SPINCOUNT 1000 instead of 300,000 pause
 * iterations), which keeps prefill, perplexity and training from crawling beside the other work; on an idle machine
 * it does nothing (the long spin is faster there). libgomp reads the setting only when it loads, so this sets it and
 * execs /proc/self/exe with the same argv (once; an exec failure is ignored). Does nothing when OMP_WAIT_POLICY or
 * GOMP_SPINCOUNT is set; LMF_OMP_BUSY=1 / 0 overrides the busy test. The lmforge CLI and benchmarks call it. */
void lmf_bound_omp_spin(char **argv);

/* ---- model ---------------------------------------------------------------------------------------------------- */

typedef enum {
    LMF_ARCH_GPT2 = 0, LMF_ARCH_LLAMA = 1, LMF_ARCH_OPT = 2, LMF_ARCH_QWEN2 = 3, LMF_ARCH_QWEN3 = 4, LMF_ARCH_OLMOE = 5,
    LMF_ARCH_PHI3 = 6, /* llama's block, q|k|v and gate|up stored fused (GGUF attn_qkv, ffn_up) */
    LMF_ARCH_GEMMA3 = 7, /* Gemma 3 (text): GeGLU, sandwich norms, scaled embeddings, local / global attention */
    LMF_ARCH_GEMMA2 = 8  /* Gemma 2: gemma3's block without the q/k norms, with soft-capped scores and logits */
} lmf_arch;
typedef enum { LMF_NORM_LAYER = 0, LMF_NORM_RMS = 1 } lmf_norm_kind;
typedef enum {
    LMF_ACT_GELU_TANH = 0,
    LMF_ACT_SWIGLU = 1, /* silu(gate) * up */
    LMF_ACT_RELU = 2,
    LMF_ACT_GEGLU = 3, /* gelu_tanh(gate) * up (Gemma) */
} lmf_act_kind;
/* A gated activation (SwiGLU, GeGLU): the FFN's first product makes gate | up, 2 ffn_dim wide. */
int lmf_act_gated(lmf_act_kind act);
typedef enum {
    LMF_POS_LEARNED = 0,          /* position table row (position + pos_offset) added to the token embedding */
    LMF_POS_ROPE_HALF = 1,        /* RoPE, Hugging Face rotate_half: dimension d pairs with d + hs/2 */
    LMF_POS_ROPE_INTERLEAVED = 2, /* RoPE on adjacent pairs (2i, 2i+1): llama.cpp's GGUF Q/K row order */
} lmf_pos_kind;
/* An RMSNorm on the queries and keys after their projection, before RoPE (cfg.qk_norm). */
typedef enum {
    LMF_QK_NORM_NONE = 0,
    LMF_QK_NORM_HEAD = 1, /* each head's hs values on their own, one weight of hs shared by the heads (Qwen3) */
    LMF_QK_NORM_FULL = 2, /* all of q (n_head hs) and all of k (n_kv_head hs) as one row each (OLMoE) */
} lmf_qk_norm_kind;
/* RoPE scaling (cfg.rope_scaling): every RoPE pair i turns by position * theta^(-2i/hs) / f_i, f_i from the kind.
 * Both are Hugging Face's rope_type of the same name (docs/formats.md, "RoPE scaling"). */
typedef enum {
    LMF_ROPE_SCALING_NONE = 0,   /* f_i = 1 */
    LMF_ROPE_SCALING_LINEAR = 1, /* f_i = rope_factor: positions interpolated (transformers' "linear") */
    LMF_ROPE_SCALING_LLAMA3 = 2, /* Llama 3.1+: f_i = 1 for wavelengths below rope_orig_ctx / rope_high_freq_factor,
                                  * rope_factor above rope_orig_ctx / rope_low_freq_factor, smoothly between */
    LMF_ROPE_SCALING_LONGROPE = 3, /* Phi-3 128k (LongRoPE): f_i the model's own per-pair factors (its weights'
                                    * rope_short, or rope_long for a context past rope_orig_ctx, as llama.cpp picks
                                    * them), cos and sin scaled by rope_factor (the attention factor); inference only */
} lmf_rope_scaling_kind;

/* The one description of a model: every architectural choice, for training and inference alike. A pre-norm
 * transformer; the family names the usual settings of the knobs below (lmf_model_config_default /
 * lmf_model_config_set_arch fill them):
 *  gpt2:  token + learned position embeddings, LayerNorm, attention and MLP with biases, GELU (tanh), tied head.
 *  llama: RoPE (rope_theta), RMSNorm, grouped-query attention (n_kv_head divides n_head), SwiGLU, no biases,
 *         tied or untied output head.
 *  opt:   as gpt2 but ReLU and learned positions starting at row 2 (inference; training takes gpt2 and llama).
 *  qwen2: llama's knobs plus biases on q, k and v (qkv_bias; o and the FFN have none): Qwen2 / Qwen2.5, and with
 *         n_expert > 0 Qwen2-MoE (whose shared expert is gated: shared_gate).
 *  qwen3: llama's knobs plus a per-head RMSNorm on q and k (qk_norm): Qwen3, and with n_expert > 0 Qwen3-MoE
 *         (Mixtral's router and experts, no shared expert).
 *  olmoe: llama's knobs plus an RMSNorm over the whole q and k rows (qk_norm full width): with n_expert > 0 OLMoE
 *         (64 experts top-8, not renormalised).
 *  gemma3: Gemma 3's text model: qwen3's per-head q/k norm, GeGLU, an RMSNorm on attention's and the FFN's outputs
 *         (post_norms), embeddings scaled by sqrt(n_embd), local layers (sliding_window, every swa_pattern-th layer
 *         global) with their own RoPE base; norm weights hold 1 + Gemma's (as llama.cpp's GGUFs).
 *  gemma2: Gemma 2: gemma3's knobs without the q/k norm, every 2nd layer global, attention scores and the output
 *         logits soft-capped (attn_softcap, final_softcap); inference only. */
#define LMF_MAX_EXPERT 256 /* experts per layer lmforge accepts */

typedef struct {
    lmf_arch arch;
    int vocab_size;      /* V */
    int max_seq_len;     /* longest sequence T the model accepts (learned positions: rows of the table) */
    int n_layer;         /* L */
    int n_embd;          /* C */
    int n_head;
    int n_kv_head;       /* learned positions (gpt2, opt): must equal n_head */
    int head_dim;        /* hs, a head's size (llama family); 0: C / n_head (gpt2 and opt always). q is n_head hs
                          * wide, k and v n_kv_head hs: Qwen3-0.6B has 16 heads of 128 on C = 1024 */
    int ffn_dim;         /* hidden size of the MLP (gpt2: usually 4C) */
    float norm_eps;
    float rope_theta;    /* RoPE only */
    int tied_embeddings; /* output head shares the token embedding (gpt2: always) */
    /* the knobs (set by the family) */
    lmf_norm_kind norm;
    lmf_act_kind act;
    lmf_pos_kind pos;
    int pos_offset;      /* learned positions start at this row (OPT: 2) */
    int bias;            /* the linear layers carry biases (LayerNorm always has its own) */
    int qkv_bias;        /* q, k and v carry biases even without `bias` (qwen2); o and the FFN do not */
    /* mixture of experts (llama family; docs/moe.md). n_expert 0: a dense FFN. Otherwise each layer's FFN is a
     * router (C -> n_expert) choosing n_expert_used SwiGLU experts of hidden size ffn_dim per token (Mixtral's
     * intermediate_size), plus a shared expert of hidden size shared_ffn_dim on every token when it is > 0. */
    int n_expert;
    int n_expert_used;     /* top-k */
    int shared_ffn_dim;    /* 0: no shared expert */
    int norm_topk_prob;    /* renormalise the chosen experts' probabilities to sum to 1 (Mixtral: yes) */
    float router_aux_coef; /* training: weight of the load-balancing loss (transformers' router_aux_loss_coef) */
    float router_z_coef;   /* training: weight of the router z-loss (ST-MoE) */
    float capacity_factor; /* training: expert capacity ceil(factor x tokens x k / E), slots over it dropped; 0: none */
    int shared_gate;       /* the shared expert's output is scaled by sigmoid(x . w) per token, w a (C) vector of
                            * each layer (Qwen2-MoE's shared_expert_gate); needs shared_ffn_dim > 0 */
    lmf_qk_norm_kind qk_norm; /* RMSNorm on q and k before RoPE, with norm_eps (qwen3: per head, olmoe: full
                               * width); needs RMSNorm */
    /* RoPE scaling (llama family): all 0 for plain RoPE, as every config before it */
    lmf_rope_scaling_kind rope_scaling;
    float rope_factor;           /* linear and llama3: > 0 (usually >= 1) */
    float rope_low_freq_factor;  /* llama3: 0 < low < high (Llama 3.x: 1 and 4) */
    float rope_high_freq_factor;
    int rope_orig_ctx;           /* llama3: the context length pretraining used (original_max_position_embeddings) */
    /* Sliding-window attention (Mistral 7B v0.1, Phi-3-mini-4k, Gemma 3; Hugging Face's sliding_window): 0 attends to
     * every earlier position; W > 0 to the last W positions only, the query's own included (keys p > query - W), on
     * every layer (Gemma: those swa_pattern says). Inference applies it; training refuses a sequence length past W
     * (up to W it is the same function). */
    int sliding_window;
    /* NoPE layers (SmolLM3): 0 rotates q and k on every layer; N > 0 leaves layers N-1, 2N-1, ... (every Nth, counted
     * from 1) without RoPE, as Hugging Face's no_rope_layer_interval (SmolLM3: 4) and llama.cpp's smollm3 */
    int nope_interval;
    /* Gemma 3 (gemma3 sets the first two, the loaders the others) */
    int post_norms;       /* RMSNorm of attention's and the FFN's outputs before each residual add (own weights) */
    int embed_scale;      /* the token embeddings times sqrt(n_embd) (the tied head reads them unscaled) */
    float attn_scale;     /* q.k scale: 0 is 1 / sqrt(hs); Gemma's query_pre_attn_scalar^-1/2 */
    int swa_pattern;      /* with sliding_window: 0 windows every layer; N > 0 all but every Nth (N-1, 2N-1, ...) */
    float rope_theta_swa; /* the windowed layers' RoPE base, without rope_scaling (0: rope_theta, scaled) */
    /* Gemma 2's soft-capping, x -> cap tanh(x / cap) (0: none): of the scaled attention scores, of the logits */
    float attn_softcap, final_softcap;
} lmf_model_config;

/* Defaults for a family (GPT-2 124M shape, or a small llama); callers then override fields. */
lmf_model_config lmf_model_config_default(lmf_arch arch);
/* Sets the family and its knobs (norm, act, pos, pos_offset, bias, qkv_bias, qk_norm), leaving the sizes as they are. */
void lmf_model_config_set_arch(lmf_model_config *cfg, lmf_arch arch);
/* A head's size hs (head_dim, or n_embd / n_head when it is 0), the width of q and of attention's output
 * (n_head hs) and of k or v (n_kv_head hs). */
int lmf_head_size(const lmf_model_config *cfg);
int lmf_q_width(const lmf_model_config *cfg);
int lmf_kv_width(const lmf_model_config *cfg);
/* RoPE's per-pair frequency divisors f_i (i < hs/2) of cfg.rope_scaling into out (hs/2 floats); 0 (out untouched)
 * for plain RoPE, 1 when scaled. Training and inference build their tables from it; the GGUF writer stores it as
 * llama.cpp's rope_freqs.weight. */
int lmf_rope_freq_factors(const lmf_model_config *cfg, float *out);
/* Checks every field and the relations between them; names the first bad field. */
lmf_status lmf_model_config_validate(const lmf_model_config *cfg);
const char *lmf_arch_name(lmf_arch arch);
/* llama and the families built on it (qwen2, qwen3, olmoe): RoPE, RMSNorm, SwiGLU, llama's module names. */
int lmf_arch_is_llama_family(lmf_arch arch);
/* gemma3 and gemma2: GeGLU, the sandwich norms, scaled embeddings, Gemma's norm weights (1 + w). */
int lmf_arch_is_gemma(lmf_arch arch);
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
/* The forward's loss for evaluation: no backward follows (a fused loss then sums no gradient). */
float lmf_model_eval_loss(lmf_model *m, const int32_t *tokens, const int32_t *targets, int B, int T);
/* With on, a forward with targets runs the head's product over vocabulary slabs with an online log-sum-exp instead
 * of keeping B x T x V logits (their memory stays unused: 4 GiB for Gemma 3's 262k vocabulary at 4 x 1024 tokens),
 * and lmf_model_logits then returns NULL; rows whose target is -1 skip the head. A frozen head (LoRA) costs the same
 * products; a trained one, one more (its backward makes each slab's logits again). A forward without targets, and
 * tensor parallelism's vocabulary-parallel head, still keep logits. The losses and gradients equal the kept
 * logits' to rounding (summed in another order). A pipeline stage before the last has no head: on is refused. */
void lmf_model_set_fused_loss(lmf_model *m, int on);
void lmf_model_zero_grad(lmf_model *m);
/* Adds d(loss_scale * loss)/d(params) of the last forward (which must have had targets) into the gradients;
 * loss_scale = 1/k averages over k accumulated micro-batches. */
void lmf_model_backward(lmf_model *m, float loss_scale);

/* ---- training ------------------------------------------------------------------------------------------------- */

/* Learning rate at 0-based step: linear warmup over warmup_steps to lr, then cosine decay to min_lr at max_steps. */
float lmf_lr_at(int step, float lr, float min_lr, int warmup_steps, int max_steps);

/* A pretraining run on token shards, configured by option names (docs/training.md): the options of the config file
 * and of `lmforge train --help` ("lr", "max_steps", "train_data", ...), the same defaults, checks and messages.
 * Typical use: create; resume (optional, first); load_config and/or set; run; free. A job runs once. */
typedef struct lmf_train_job lmf_train_job;

/* A job holding the default options. */
lmf_status lmf_train_job_create(lmf_train_job **out);
/* Sets one option from text. option is a name ("max_steps"; dashes and underscores are interchangeable) or a flag
 * ("--max-steps"), and errors name it that way. LMF_ERR_ARG for an unknown option, a NULL value ("needs a value")
 * or a value of the wrong type or range. */
lmf_status lmf_train_job_set(lmf_train_job *j, const char *option, const char *value);
/* Applies a config file: TOML when the name ends in ".toml", else `name = value` lines (.conf). Errors name
 * file:line. */
lmf_status lmf_train_job_load_config(lmf_train_job *j, const char *path);
/* Continues the run whose checkpoints are in dir, from the newest dir/ckpt-*.lmfc, bit for bit: its saved options
 * replace every option set so far (so call it first), out_dir becomes dir and stop_at is cleared; later calls may
 * change schedule options (max_steps), not the model's shape (run then fails with LMF_ERR_MISMATCH). checkpoint
 * (optional) receives the file's path, owned by the job; step (optional) the step it holds. A damaged newest
 * checkpoint is renamed to <name>.corrupt and the previous one resumes (the run's sink is told at its start).
 * Paths saved inside dir are taken relative to dir, so a copied or moved run folder resumes from anywhere.
 * LMF_ERR_IO when dir has no checkpoint, LMF_ERR_FORMAT when none loads; the job is unchanged on failure. */
lmf_status lmf_train_job_resume(lmf_train_job *j, const char *dir, const char **checkpoint, uint64_t *step);
/* Trains to max_steps, writing checkpoints, metrics and a sample into out_dir. Once *stop != 0 (stop may be NULL;
 * setting it is async-signal-safe, e.g. from a SIGINT handler) the run stops before its next step, writes a
 * checkpoint and returns LMF_ERR_INTERRUPTED, as it does at stop_at. Reports to sink (NULL: silent): a banner,
 * validation and checkpoint lines (log), steps (progress, unit "steps", status "loss .. lr .."), the final
 * sample's text (text). Prints nothing. */
lmf_status lmf_train_job_run(lmf_train_job *j, volatile sig_atomic_t *stop, const lmf_sink *sink);
/* Makes the job one rank of a distributed job (docs/distributed.md); call it before resume. comm: "self", "mpi" (a
 * process started by mpirun among others) or "auto" (mpi when an MPI launcher started this process among several);
 * dp x tp x pp must equal the number of ranks (dp 0: the ranks / (tp x pp)). Data parallel runs with ZeRO-1 (over
 * all ranks when tp or pp is above 1), pipeline parallel with the 1F1B schedule, tensor parallel as Megatron-LM's
 * (tp must divide n_head, n_kv_head and ffn_dim, and for a mixture of experts shared_ffn_dim: otherwise the run
 * fails with LMF_ERR_ARG naming the sizes). A rank's sink should be NULL except on rank 0
 * (lmf_train_job_rank), which reports for the job. LMF_ERR_ARG names a size that does not fit or a backend this
 * build lacks. Without this call a job is one process. MPI is initialised here and finalised by
 * lmf_train_job_free, so a process holds one parallel job in its life. */
lmf_status lmf_train_job_set_parallel(lmf_train_job *j, const char *comm, int dp, int tp, int pp);
/* Reduce the gradients while the backward pass runs (Megatron-LM's --overlap-grad-reduce): each layer's as soon as
 * the backward has passed it, instead of all of them after it. Bit-identical results either way; it matters where
 * the network moves data without the CPU (docs/distributed.md). Without effect on one process. */
void lmf_train_job_set_overlap(lmf_train_job *j, int on);
/* ZeRO-1 exchanges the gradients and parameters in buckets of this many floats a rank (Megatron-LM's
 * --ddp-bucket-size; <= 0: 2M floats, 8 MiB): the staging memory is ranks x bucket floats and the overlapped
 * reduction's ring up to 4 buckets a rank. The same bits in any size. */
void lmf_train_job_set_ddp_bucket(lmf_train_job *j, long floats);
/* Pipeline parallel keeps on each rank only its stage's parameters and gradients (and its optimizer shard) by
 * default; on: every rank keeps the whole model's, as before (rank 0 then validates and samples the whole model
 * itself). The same results either way (docs/distributed.md). */
void lmf_train_job_set_pp_full_params(lmf_train_job *j, int on);
/* This process's rank in the job (0 without lmf_train_job_set_parallel) and the number of ranks. */
int lmf_train_job_rank(const lmf_train_job *j, int *size);
/* Frees the job. When its run failed in a job of several ranks (any error but LMF_ERR_INTERRUPTED, which every rank
 * agrees on), this ends every rank of the job with exit status 1 rather than leave them waiting for this one in a
 * collective: print the error first. */
void lmf_train_job_free(lmf_train_job *j);

/* ---- tokenizer ------------------------------------------------------------------------------------------------ */

/* Byte-level BPE (GPT-2 family: GPT-2, Llama-3, SmolLM2, ...) and SentencePiece BPE (GGUF vocabularies of model
 * "llama": Llama 2, Mistral, TinyLlama, ...). Any byte string encodes, and decode(encode(x)) == x byte for byte,
 * invalid UTF-8 included (SentencePiece: with LMF_DECODE_TEXT_START, where the vocabulary has byte tokens, x holds
 * no U+2581, the character that stands for a space, and no UTF-8 lead byte runs into a space, as in llama.cpp). A tokenizer is immutable once built and may be shared by threads; the
 * streaming encoder/decoder objects belong to one thread at a time. See docs/tokenizer.md. */
typedef struct lmf_tokenizer lmf_tokenizer;

/* Growable outputs the library appends to (realloc). Start them zeroed; the caller owns data and frees it with
 * free(). lmf_text keeps data NUL-terminated (data[len] == 0) whenever data != NULL. */
typedef struct {
    int32_t *data;
    size_t len, cap;
} lmf_ids;
typedef struct {
    char *data;
    size_t len, cap;
} lmf_text;

/* Pre-tokenizers: how text is split into pieces before BPE runs inside each piece. */
typedef enum {
    LMF_PRETOK_GPT2 = 0,   /* GPT-2's regex ('s|'t|...| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+) */
    LMF_PRETOK_LLAMA3 = 1, /* Llama-3 / cl100k regex (case-insensitive contractions, numbers of 1-3 digits) */
    LMF_PRETOK_SMOLLM = 2, /* SmolLM/StarCoder: every \p{N} character alone, then the GPT-2 regex */
    LMF_PRETOK_CUSTOM = 3, /* the regexes given in lmf_tokenizer_def.patterns, applied in sequence */
    LMF_PRETOK_QWEN2 = 4,  /* Qwen2 / Qwen3: the Llama-3 regex with every \p{N} character alone */
} lmf_pretok;

/* Names "gpt2", "llama3", "smollm", "qwen2" (and the GGUF tokenizer.ggml.pre aliases "llama-bpe", "starcoder",
 * "deepseek-r1-qwen", ...). */
lmf_status lmf_pretok_parse(const char *name, lmf_pretok *out);
const char *lmf_pretok_name(lmf_pretok p);

typedef enum {
    LMF_TOKEN_NORMAL = 0,  /* a BPE token; its text is in GPT-2's byte-to-unicode alphabet ("Ġthe") */
    LMF_TOKEN_CONTROL = 1, /* special token (<|endoftext|>): one id in the input only where the caller allows */
    LMF_TOKEN_USER = 2,    /* user-defined added token: always one id in the input; text is literal UTF-8 */
    LMF_TOKEN_UNUSED = 3,  /* an id with no token (a hole in the vocabulary); decodes to nothing */
} lmf_token_type;

/* A vocabulary in memory, as tokenizer.json, GPT-2's encoder.json + vocab.bpe and GGUF (tokenizer.ggml.tokens,
 * .token_type, .merges, .pre) all describe it. Nothing is retained: lmf_tokenizer_build copies what it needs. */
typedef struct {
    int n_vocab;
    const char *const *tokens;   /* [n_vocab] token text: byte-level form for NORMAL, literal for CONTROL/USER;
                                    NULL entries are holes (UNUSED) */
    const uint8_t *types;        /* [n_vocab] lmf_token_type, or NULL: all NORMAL */
    int n_merges;
    const char *const *merges;   /* [n_merges] "left right" in byte-level form, rank order (first merges first) */
    lmf_pretok pretok;
    int n_patterns;              /* LMF_PRETOK_CUSTOM only: regexes (PCRE2 syntax), each splitting the pieces of */
    const char *const *patterns; /* the one before; matches and the gaps between them both become pieces */
    int ignore_merges;           /* a piece that is itself a token becomes that token without merging (Llama-3) */
    int missing_bytes_ok;        /* allow bytes without a token: they are dropped from the input before merging, as
                                    Hugging Face's BPE without unk_token does (SmolLM2 has no token for 21 bytes,
                                    e.g. 0x04 and 0xF5..0xFF); otherwise all 256 byte tokens are required */
    int nfc;                     /* Unicode NFC before pre-tokenizing (tokenizer.json's "normalizer": NFC, Qwen2's):
                                    the input's valid UTF-8 is composed, other bytes pass as they are */
} lmf_tokenizer_def;

/* Builds a tokenizer from a definition; `origin` (a path, "GGUF file x", ...) prefixes error messages. Fails with
 * LMF_ERR_FORMAT naming the token or merge at fault (unknown merge part, missing byte token, duplicate text, ...). */
lmf_status lmf_tokenizer_build(const lmf_tokenizer_def *def, const char *origin, lmf_tokenizer **out);
/* path: a Hugging Face tokenizer.json, a GGUF model file (its tokenizer.ggml.* vocabulary), a SentencePiece model
 * file (name ending in .model: tokenizer.model, BPE models), or a folder holding tokenizer.json, GPT-2's
 * encoder.json + vocab.bpe, or tokenizer.model (tried in that order). */
lmf_status lmf_tokenizer_load(const char *path, lmf_tokenizer **out);
/* Writes a Hugging Face tokenizer.json (loadable by the `tokenizers` library), atomically. */
lmf_status lmf_tokenizer_save(const lmf_tokenizer *tok, const char *path);
void lmf_tokenizer_free(lmf_tokenizer *tok);

int lmf_tokenizer_vocab_size(const lmf_tokenizer *tok);
lmf_pretok lmf_tokenizer_pretok(const lmf_tokenizer *tok);
int lmf_tokenizer_nfc(const lmf_tokenizer *tok); /* whether encode composes its input to NFC first */
int lmf_tokenizer_sentencepiece(const lmf_tokenizer *tok); /* a SentencePiece vocabulary (GGUF model "llama") */
/* Id of the token whose text (as in tokenizer.json: "Ġthe", "<|endoftext|>") is `text`, or -1. */
int32_t lmf_tokenizer_token_id(const lmf_tokenizer *tok, const char *text);
/* Raw bytes of a token (not NUL-terminated), NULL for an out-of-range id; *len receives the length. */
const char *lmf_tokenizer_token_bytes(const lmf_tokenizer *tok, int32_t id, size_t *len);
lmf_token_type lmf_tokenizer_token_type(const lmf_tokenizer *tok, int32_t id);

/* Encode flags. Without LMF_ENCODE_ALLOW_SPECIAL, the text of control tokens is ordinary text. */
enum { LMF_ENCODE_ALLOW_SPECIAL = 1 };
/* Decode flags. LMF_DECODE_TEXT_START: the ids begin a text, so a SentencePiece tokenizer's leading space (the one
 * its encoder puts before every text) is dropped, as Hugging Face's decode and llama.cpp's detokenize do; without
 * it tokens decode as pieces (" Hello"), as llama.cpp prints generated tokens. No effect on byte-level BPE. */
enum { LMF_DECODE_SKIP_SPECIAL = 1, LMF_DECODE_TEXT_START = 2 };

/* Appends the ids of `len` bytes of text to *out. Any bytes are valid input; the one failure is a pre-tokenizer
 * regex from the tokenizer file that exceeds PCRE2's match limits on this text (catastrophic backtracking):
 * LMF_ERR_FORMAT naming the file and the pattern, *out then holding a partial result to discard. The built-in
 * GPT-2 / Llama-3 / SmolLM patterns never fail. */
lmf_status lmf_tokenizer_encode(const lmf_tokenizer *tok, const char *text, size_t len, unsigned flags,
                                lmf_ids *out);
/* Appends the bytes of ids to *out; LMF_ERR_ARG names the first id outside the vocabulary (nothing appended). */
lmf_status lmf_tokenizer_decode(const lmf_tokenizer *tok, const int32_t *ids, size_t n, unsigned flags, lmf_text *out);

/* Streaming encoder: text arrives in chunks cut anywhere (even inside a UTF-8 character or a special token);
 * feed appends the ids that are final, finish appends the rest. The concatenated ids equal one encode() of the
 * concatenated text. The encoder refers to tok, which must outlive it. */
typedef struct lmf_tokenizer_encoder lmf_tokenizer_encoder;
lmf_tokenizer_encoder *lmf_tokenizer_encoder_create(const lmf_tokenizer *tok, unsigned flags);
/* Both fail as lmf_tokenizer_encode does; the text buffered so far is then dropped. */
lmf_status lmf_tokenizer_encoder_feed(lmf_tokenizer_encoder *enc, const char *text, size_t len, lmf_ids *out);
lmf_status lmf_tokenizer_encoder_finish(lmf_tokenizer_encoder *enc, lmf_ids *out); /* also resets it for reuse */
void lmf_tokenizer_encoder_free(lmf_tokenizer_encoder *enc);

/* Streaming decoder (generation, server): feed appends only complete UTF-8 characters, holding back the start of
 * a character split across tokens; bytes that can never become valid UTF-8 are passed through as they are, so the
 * concatenated output equals one decode() of all the ids. finish flushes what is held and resets. */
typedef struct lmf_tokenizer_decoder lmf_tokenizer_decoder;
lmf_tokenizer_decoder *lmf_tokenizer_decoder_create(const lmf_tokenizer *tok, unsigned flags);
lmf_status lmf_tokenizer_decoder_feed(lmf_tokenizer_decoder *dec, const int32_t *ids, size_t n, lmf_text *out);
void lmf_tokenizer_decoder_finish(lmf_tokenizer_decoder *dec, lmf_text *out);
void lmf_tokenizer_decoder_free(lmf_tokenizer_decoder *dec);

/* BPE training (Hugging Face BpeTrainer's algorithm and tie rule: the most frequent pair, ties to the smallest
 * (left id, right id); ids: special tokens first, then the 256 byte tokens in code-point order of their byte-level
 * characters, then one per merge). Documents are pre-tokenized as the tokenizer will be; words are counted once. */
typedef struct {
    int vocab_size;                    /* final size, special tokens and the 256 byte tokens included */
    int n_special;
    const char *const *special_tokens; /* control tokens, e.g. "<|endoftext|>" */
    lmf_pretok pretok;                 /* LMF_PRETOK_GPT2, LLAMA3, SMOLLM or QWEN2 */
    int64_t min_frequency;             /* stop when the best pair occurs fewer times [0] */
} lmf_bpe_train_config;

typedef struct lmf_bpe_trainer lmf_bpe_trainer;
lmf_status lmf_bpe_trainer_create(const lmf_bpe_train_config *cfg, lmf_bpe_trainer **out);
/* Counts the words of one document (any bytes). */
void lmf_bpe_trainer_feed(lmf_bpe_trainer *tr, const char *text, size_t len);
/* Learns the merges and builds the tokenizer. */
lmf_status lmf_bpe_trainer_finish(lmf_bpe_trainer *tr, lmf_tokenizer **out);
void lmf_bpe_trainer_free(lmf_bpe_trainer *tr);

/* ---- inference ------------------------------------------------------------------------------------------------
 * A model loaded for inference (any weight dtype, used in place from the memory-mapped file where possible) and
 * sessions over it: one sequence each, with its KV cache. See docs/inference.md. */
typedef struct lmf_weights lmf_weights;

/* path: a GGUF file (llama / gpt2 architectures; F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K tensors), a Hugging
 * Face folder (config.json + model.safetensors or model-*.safetensors with its index; llama, gpt2, opt families),
 * or an lmforge checkpoint. The tokenizer comes along when the source has one (GGUF vocabulary, tokenizer.json). */
lmf_status lmf_weights_load(const char *path, lmf_weights **out);
void lmf_weights_free(lmf_weights *w);
const lmf_model_config *lmf_weights_config(const lmf_weights *w);
const char *lmf_weights_family(const lmf_weights *w);     /* "llama", "gpt2", "opt" */
const lmf_tokenizer *lmf_weights_tokenizer(const lmf_weights *w); /* NULL when the model carries none */

typedef struct lmf_session lmf_session;
/* A sequence of up to n_ctx tokens (capped at the model's max_seq_len), with a KV pool of its own allocated up front
 * (lmf_kv_pool below). */
lmf_status lmf_session_create(const lmf_weights *w, int n_ctx, lmf_session **out);
/* The KV cache's element type: fp32 (exact), or IEEE half (f16: half the memory and the bytes decode attention
 * reads; K and V rounded to nearest even when stored, as llama.cpp's default cache type). */
typedef enum { LMF_KV_F32 = 0, LMF_KV_F16 = 1 } lmf_kv_type;
size_t lmf_kv_type_bytes(lmf_kv_type type);               /* 4 or 2 */
lmf_status lmf_kv_type_parse(const char *name, lmf_kv_type *out); /* "f32" / "f16"; else LMF_ERR_ARG naming both */
/* lmf_session_create with the cache in `type`. */
lmf_status lmf_session_create_kv(const lmf_weights *w, int n_ctx, lmf_kv_type type, lmf_session **out);
void lmf_session_free(lmf_session *s);
/* Appends n tokens at the current position and runs them through the model (one batched prefill when n > 1).
 * *logits receives the logits of the last token (V floats), or with all_logits of every token (n x V); they stay
 * valid until the next call. LMF_ERR_ARG when a token is outside the vocabulary or the context would overflow. */
lmf_status lmf_session_eval(lmf_session *s, const int32_t *tokens, int n, int all_logits, const float **logits);
int lmf_session_pos(const lmf_session *s);
int lmf_session_n_ctx(const lmf_session *s); /* the context length (after capping) */
/* Forgets every token from position pos on (0 clears the session): a chat reuses its common prefix. A model with
 * sliding-window layers keeps only their last window (lmf_kv_pool_create_windows): rewinding further back than a
 * block before it clears the session; lmf_session_pos says where it stands. */
void lmf_session_rewind(lmf_session *s, int pos);

/* Serving many sequences: a KV pool owns the cache memory of the sessions made in it (elements of `type`), as
 * fixed-size blocks of block_size positions (paged: a session takes blocks as it grows and gives them back on rewind
 * and free), and the scratch of one step, so a pooled session costs only its block table. Room for n_positions
 * positions in all;
 * max_ctx caps one session's context (0: the model's max_seq_len); block_size 0 picks 256. A pool and its sessions
 * belong to one thread at a time. The weights must outlive the pool, the pool its sessions. A cache larger than the
 * machine's physical memory is refused (LMF_ERR_ARG, with the sizes). */
typedef struct lmf_kv_pool lmf_kv_pool;
lmf_status lmf_kv_pool_create(const lmf_weights *w, int n_positions, int block_size, int max_ctx, lmf_kv_type type,
                               lmf_kv_pool **out);
/* A model with sliding-window layers (Gemma 2 / 3, Mistral) reads only the last window of positions in them: its
 * pool keeps those layers apart, in blocks that a session hands back once they fall out of its window, with room for
 * n_windows sequences' windows at once (lmf_kv_pool_create: n_positions / max_ctx, at least 1; 0 keeps every
 * position of every layer, as for a model without windows). A session's window spans its step too: max_step caps the
 * tokens one session appends in a step (0: 512; lmf_session_eval cuts longer inputs into such steps), and a session
 * then holds about (window + max_step) / block_size + 2 windowed blocks. More sequences than n_windows at once fail
 * their step (LMF_ERR_ARG). Such a session rewinds to where its windows still hold (up to a block back), or else to 0:
 * lmf_session_pos says where it stands. The pool splits only where the windows take fewer blocks than the
 * positions. */
lmf_status lmf_kv_pool_create_windows(const lmf_weights *w, int n_positions, int block_size, int max_ctx,
                                      lmf_kv_type type, int n_windows, int max_step, lmf_kv_pool **out);
void lmf_kv_pool_free(lmf_kv_pool *p);
int lmf_kv_pool_blocks(const lmf_kv_pool *p);      /* blocks in all */
int lmf_kv_pool_blocks_free(const lmf_kv_pool *p); /* blocks no session holds */
int lmf_kv_pool_block_size(const lmf_kv_pool *p);
size_t lmf_kv_pool_bytes(const lmf_kv_pool *p); /* the cache's memory (K and V, every block) */
/* The cache's memory is mapped lazily: a block's pages are committed (zeroed by the kernel) when first written.
 * This commits all of it now, so no later step pays those page faults and a pool the machine cannot hold fails
 * here, with a message, rather than getting the process OOM-killed under load (LMF_ERR_ARG when it exceeds the
 * memory available). */
lmf_status lmf_kv_pool_commit(lmf_kv_pool *p);
/* A session whose cache lives in pool (n_ctx capped at the pool's max_ctx); nothing is reserved until it evaluates. */
lmf_status lmf_session_create_pooled(lmf_kv_pool *pool, int n_ctx, lmf_session **out);
/* One step for count sessions of one pool: session i appends the n[i] tokens at tokens[i] (at most 512 tokens in
 * all). Each weight matrix is read once for all of them, whatever their positions, and every session gets the same
 * logits as evaluating its tokens alone would (up to float rounding across steps). The last token's logits of
 * session i go to logits + i x V when logits is not NULL, and to the session's own buffer as lmf_session_eval leaves
 * them. Fails before changing anything when a session's context or the pool's blocks would overflow (LMF_ERR_ARG). */
lmf_status lmf_session_eval_batch(lmf_session *const *s, const int32_t *const *tokens, const int *n, int count,
                                  float *logits);

/* Sampling the next token from logits (modified in place). temperature 0 is greedy (argmax, ties to the lowest
 * id) and ignores the rest. Otherwise, in llama.cpp's order: repetition penalty over the last repeat_last_n tokens
 * (positive logits divided, negative multiplied), top-k, top-p (smallest set with cumulative probability >= p),
 * min-p (drop tokens below min_p x the top probability), temperature, then a draw from a seeded PCG32. */
typedef struct {
    float temperature;    /* 0.8 */
    int top_k;            /* 40; 0 = off */
    float top_p;          /* 0.95; 1 = off */
    float min_p;          /* 0.05; 0 = off */
    float repeat_penalty; /* 1.0 = off */
    int repeat_last_n;    /* 64 */
    uint64_t seed;
} lmf_sampler_params;
lmf_sampler_params lmf_sampler_defaults(void);
typedef struct lmf_sampler lmf_sampler;
lmf_status lmf_sampler_create(const lmf_sampler_params *p, int n_vocab, lmf_sampler **out);
void lmf_sampler_free(lmf_sampler *s);
int32_t lmf_sampler_sample(lmf_sampler *s, float *logits, const int32_t *history, int n_history);

/* Constrained decoding (docs/serving.md "Structured output"): generation restricted to what a grammar accepts, as
 * vLLM's guided decoding and llama.cpp's grammars restrict it. A grammar is JSON (any object, or a JSON Schema of
 * the subset the docs list: type, properties, required, additionalProperties false or a schema, items, minItems,
 * maxItems, enum, const, anyOf / oneOf of different JSON types, $ref to #/$defs; annotations and format ignored;
 * other keywords refused by name) or Hermes tool calls: `<tool_call>\n{"name": "NAME", "arguments": ARGS}\n
 * </tool_call>` with NAME one of names and ARGS following that function's parameters schema (NULL: any object),
 * one call or, with parallel, several separated by newlines. The output is byte-exact JSON (whitespace between
 * tokens allowed, 64 bytes in a row at most; nesting 32 deep at most). A token is allowed when all its bytes are
 * accepted in turn; the stop tokens only once the grammar is complete, and nothing else then. */
typedef struct lmf_grammar lmf_grammar;
/* schema: a JSON Schema text whose root allows an object or an array, or NULL for any JSON object (JSON mode).
 * LMF_ERR_ARG naming the keyword and its path ("schema.properties.age: keyword \"minimum\" is not supported"). */
lmf_status lmf_grammar_json(const char *schema, lmf_grammar **out);
lmf_status lmf_grammar_tool_calls(int n, const char *const *names, const char *const *params, int parallel,
                                  lmf_grammar **out);
void lmf_grammar_free(lmf_grammar *g);
/* The vocabulary's tokens by their bytes (normal and user-defined tokens; control tokens never match a byte). */
typedef struct lmf_grammar_vocab lmf_grammar_vocab;
lmf_status lmf_grammar_vocab_create(const lmf_tokenizer *tok, lmf_grammar_vocab **out);
void lmf_grammar_vocab_free(lmf_grammar_vocab *v);
/* Where one generation stands in a grammar (the grammar must outlive it). */
typedef struct lmf_grammar_state lmf_grammar_state;
lmf_grammar_state *lmf_grammar_state_create(const lmf_grammar *g);
void lmf_grammar_state_free(lmf_grammar_state *s);
/* Whether the text so far is a complete sentence of the grammar (the stop tokens are allowed). */
int lmf_grammar_done(const lmf_grammar_state *s);
/* Advances over bytes or a token's bytes: 1, or 0 (state unchanged) when the grammar refuses them. */
int lmf_grammar_feed(lmf_grammar_state *s, const char *bytes, size_t n);
int lmf_grammar_accept(lmf_grammar_state *s, const lmf_grammar_vocab *v, int32_t id);
/* Whether token id may come next (stops: the ids that end the generation). */
int lmf_grammar_allows(const lmf_grammar_state *s, const lmf_grammar_vocab *v, int32_t id, const int32_t *stops,
                       int n_stops);
/* Sets the logits of every token that may not come next to -infinity; returns how many may. */
int lmf_grammar_mask(const lmf_grammar_state *s, const lmf_grammar_vocab *v, const int32_t *stops, int n_stops,
                     float *logits);

/* Generation: the loop that `lmforge generate`, `lmforge chat`, the trainer's sample and the server share. */
/* The weights a session runs (not owned by the session). */
const lmf_weights *lmf_session_weights(const lmf_session *s);
/* Receives generated text as it becomes final: whole UTF-8 characters (bytes that can never form one pass through
 * as they are), never any part of a stop string. Return non-zero to stop the generation. */
typedef int (*lmf_text_cb)(void *ctx, const char *text, size_t len);
typedef enum {
    LMF_STOP_TOKEN = 0,    /* the model sampled a stop token (not appended, not decoded) */
    LMF_STOP_STRING = 1,   /* a stop string appeared: the text ends just before it */
    LMF_STOP_LENGTH = 2,   /* n_predict tokens were generated */
    LMF_STOP_CONTEXT = 3,  /* the session's context is full */
    LMF_STOP_CALLBACK = 4, /* on_text returned non-zero */
} lmf_stop_reason;
/* The name of a stop reason as a message says it: "stop token", "stop string", "length", "context full",
 * "callback". */
const char *lmf_stop_reason_name(lmf_stop_reason r);

/* Log-probabilities: the log-softmax of a model's raw logits (before penalties, temperature and truncation), what
 * --logprobs and the server's logprobs report. */
#define LMF_LOGPROBS_MAX 20 /* alternatives per token at most (OpenAI's top_logprobs limit) */
typedef struct {
    int32_t id;
    float logprob;
} lmf_token_logprob;
/* Returns id's log-probability under logits (V floats) and writes the k most likely tokens to top (most likely
 * first, ties to the lower id; k <= V). */
float lmf_logprobs(const float *logits, int V, int32_t id, int k, lmf_token_logprob *top);
/* One sampled token, as lmf_generate's on_token receives it: id, its log-probability, and the n_top alternatives
 * (lmf_generate_params.n_logprobs) from lmf_logprobs. top is valid during the call only. */
typedef struct {
    int32_t id;
    float logprob;
    const lmf_token_logprob *top;
    int n_top;
} lmf_token_info;
/* Return non-zero to stop the generation (stop reason LMF_STOP_CALLBACK). */
typedef int (*lmf_token_cb)(void *ctx, const lmf_token_info *t);

typedef struct {
    int n_predict;               /* tokens to generate at most (>= 0) */
    const char *const *stops;    /* stop strings (empty ones are ignored) */
    int n_stops;
    const int32_t *stop_ids;     /* stop tokens besides the model's (lmf_weights_stop_tokens), e.g. a shard's eot */
    int n_stop_ids;
    lmf_text_cb on_text;         /* NULL: nothing is streamed (the text still goes to *reply) */
    void *ctx;                   /* on_text's first argument */
    const lmf_tokenizer *tok;    /* decodes the ids; NULL: the weights' own (LMF_ERR_ARG when they carry none) */
    lmf_token_cb on_token;       /* NULL: none; else called with each sampled token appended to hist (never a stop
                                    token), before its text goes to on_text; its first argument is ctx */
    int n_logprobs;              /* alternatives on_token receives per token, 0..LMF_LOGPROBS_MAX */
    const int32_t *bias_ids;     /* logit bias: bias[i] is added to token bias_ids[i]'s logit before sampling (and */
    const float *bias;           /* before the grammar's mask; -INFINITY bans the token); ids in the vocabulary */
    int n_bias;
    const lmf_grammar *grammar;  /* NULL, or the grammar the reply must follow (constrained decoding, as the server's
                                    response_format): tokens outside it are masked before sampling, the stop tokens
                                    until it is complete */
} lmf_generate_params;
typedef struct {
    int prompt_tokens, gen_tokens; /* evaluated before sampling; sampled and appended to hist */
    double prompt_s, gen_s;        /* wall seconds of the prompt's evaluation and of the generation */
    lmf_stop_reason stop_reason;
} lmf_generate_result;
/* Continues hist. The session must hold hist's first hist->len - n_new ids; the last n_new are evaluated (one
 * batched prefill), or with n_new == 0 (the session holds all of hist) the last one is evaluated again for its
 * logits. Then up to n_predict tokens are sampled (smp sees hist as history for its repetition penalty), each
 * appended to hist and evaluated in turn, until a stop token, a stop string, n_predict, a full context or on_text
 * asks to stop (res->stop_reason says which). The id appended last is evaluated only when a stop token followed
 * it: lmf_session_pos(s) says how much of hist the session holds on return (chat trims hist to it). Decoded text
 * (special tokens skipped; ids the tokenizer lacks decode to nothing) is streamed through on_text, holding back any
 * tail that could still become a stop string, and the same bytes are appended to *reply: the pieces on_text
 * received, concatenated, equal what was appended. reply and res may be NULL.
 * LMF_ERR_ARG when the session and hist disagree, the prompt overflows the context, or an id is outside the
 * vocabulary; what was generated until an error stays in hist and *reply. */
lmf_status lmf_generate(lmf_session *s, lmf_sampler *smp, lmf_ids *hist, size_t n_new, const lmf_generate_params *p,
                        lmf_text *reply, lmf_generate_result *res);

/* Perplexity of a model over a text, llama.cpp's llama-perplexity method (see docs/inference.md): the text is
 * tokenized once (BOS first when the model adds one) and cut into consecutive windows of ctx tokens; each window
 * is evaluated from an empty cache (first token replaced by BOS when the model uses one) and its second half
 * scored (every position with all_positions). max_windows > 0 stops early. Reports progress to sink (NULL:
 * silent): BEGIN, UPDATE after each window (unit "windows", status "ppl 12.3456"), END. LMF_ERR_ARG when the
 * text is shorter than one window or ctx exceeds the model's. */
typedef struct {
    double ppl, se;        /* exp(mean NLL) and its standard error (delta method) */
    long tokens, scored;   /* tokens in the text, positions scored */
    long windows;
    double tokens_per_s;   /* evaluation speed */
} lmf_ppl_result;
lmf_status lmf_perplexity(const lmf_weights *w, const char *text, size_t len, int ctx, int max_windows,
                          int all_positions, const lmf_sink *sink, lmf_ppl_result *out);

/* ---- importance matrices ---------------------------------------------------------------------------------------
 * llama.cpp's importance matrix (docs/formats.md, "Importance matrix"): per weight matrix, the sum of the squares
 * of each input column over a calibration text and the number of rows summed (per expert for a mixture's stacked
 * experts), named as the GGUF tensor ("blk.0.attn_q.weight"). Quantizing under it (lmf_export_opts.imatrix) weighs
 * each column's error by its mean squared input, as `llama-quantize --imatrix` does, with the same bytes.
 *
 * lmf_imatrix_compute runs lmf_perplexity's windows (progress to sink; ppl, which may be NULL, gets the perplexity of
 * the windows run) and collects every linear layer's input rows but the output head's (unless process_output), as
 * llama-imatrix does by default. A long run writes what it has every save_every windows to save_path (atomically),
 * and resume continues such a file (the same model, text and ctx: its windows are skipped and its sums added to).
 * lmf_imatrix_load reads llama-imatrix's GGUF files and its legacy .dat; lmf_imatrix_save writes the GGUF format
 * (atomically). Bad files fail with LMF_ERR_FORMAT naming the file and the entry or offset. */
typedef struct lmf_imatrix lmf_imatrix;
typedef struct {
    int ctx;                     /* tokens per window, >= 16 */
    int max_chunks;              /* windows in all at most, a resumed matrix's included (0: the whole text) */
    const char *dataset;         /* recorded in imatrix.datasets (NULL: nothing new) */
    int process_output;          /* also the output head's input rows (llama-imatrix --process-output; an untied head
                                  * only, as there) */
    const lmf_imatrix *resume;   /* continue this matrix (NULL: from nothing) */
    const char *save_path;       /* the matrix so far is written here every save_every windows (NULL / 0: never) */
    int save_every;
} lmf_imatrix_params;
lmf_status lmf_imatrix_compute(const lmf_weights *w, const char *text, size_t len, const lmf_imatrix_params *p,
                               const lmf_sink *sink, lmf_imatrix **out, lmf_ppl_result *ppl);
lmf_status lmf_imatrix_load(const char *path, lmf_imatrix **out);
lmf_status lmf_imatrix_save(const lmf_imatrix *m, const char *path);
void lmf_imatrix_free(lmf_imatrix *m);
int lmf_imatrix_entries(const lmf_imatrix *m);
int lmf_imatrix_chunks(const lmf_imatrix *m);       /* windows of text the sums cover (0: not recorded) */
const char *lmf_imatrix_dataset(const lmf_imatrix *m); /* the first dataset recorded, or NULL */
/* Entry i (0 <= i < lmf_imatrix_entries): its name, values per matrix, matrices, rows summed per matrix. NULL when i
 * is out of range. */
const char *lmf_imatrix_entry(const lmf_imatrix *m, int i, int *cols, int *n_mat, const int64_t **counts);
/* The importance of tensor `name`'s input columns as llama-quantize reads them: sum / rows per matrix (a matrix no
 * row reached: all 1), *n values (cols x matrices); NULL when the file has no such entry. */
const float *lmf_imatrix_find(const lmf_imatrix *m, const char *name, size_t *n);
/* Keeps the entries whose name contains one of names (include), or drops them (!include): llama-quantize's
 * --include-weights / --exclude-weights. */
void lmf_imatrix_select(lmf_imatrix *m, const char *const *names, int n, int include);

/* ---- chat ------------------------------------------------------------------------------------------------------
 * Chat templates. A model's tokenizer.chat_template (Jinja) is run by lmforge's Jinja interpreter exactly as
 * transformers' apply_chat_template runs it (docs/chat-templates.md); its family (lmf_chat_format) is recognised
 * from its markers for the end-of-turn text and for `--chat-format`, which renders with a built-in C renderer
 * instead (as do models without a template: ChatML). */
typedef enum { LMF_CHAT_CHATML = 0, LMF_CHAT_LLAMA2 = 1, LMF_CHAT_LLAMA3 = 2, LMF_CHAT_OTHER = 3 } lmf_chat_format;
typedef struct lmf_jinja lmf_jinja;
typedef struct {
    lmf_chat_format format; /* LMF_CHAT_OTHER: no built-in renderer, only the template renders it */
    char *default_system;   /* built-in ChatML: the system message the template adds when the chat has none (owned) */
    lmf_jinja *jinja;       /* the template compiled (owned); NULL: rendered by format in C */
    char *bos_token, *eos_token; /* what the template sees as bos_token / eos_token (owned), or NULL: undefined */
    char *end_of_turn;      /* the text that closes an assistant turn (owned), or NULL: lmf_chat_end_of_turn(format) */
    char *kwargs_json;      /* extra template variables, a JSON object ({"enable_thinking": false}) (owned), or NULL */
    long long now;          /* what strftime_now formats (seconds since the epoch); 0: the time of the render */
    /* What the template's text shows it knows (lmf_chat_template_parse); the server parses replies by them: */
    int renders_tools;      /* it reads the `tools` variable */
    int hermes_tool_calls;  /* it teaches <tool_call>{"name": ..., "arguments": {...}}</tool_call> (Qwen2.5, Qwen3,
                             * Hermes, SmolLM3) */
    int thinks;             /* it knows <think>...</think> reasoning (Qwen3, DeepSeek-R1, SmolLM3) */
} lmf_chat_template;
typedef struct {
    const char *role; /* built-in renderers: "system" (first only), "user", "assistant"; templates decide their own */
    const char *content;
} lmf_chat_message;
/* jinja NULL or empty: built-in ChatML. Otherwise the template is compiled (a template that does not compile is
 * LMF_ERR_FORMAT naming its line, unless its family is recognised: then the built-in renderer is kept and
 * t->jinja stays NULL). bos_token / eos_token are not set: lmf_chat_template_from_weights does that. */
lmf_status lmf_chat_template_parse(const char *jinja, lmf_chat_template *out);
/* The model's template (lmf_chat_template_parse) with the model's BOS / EOS token texts. */
lmf_status lmf_chat_template_from_weights(const lmf_weights *w, lmf_chat_template *out);
/* A template from a Jinja file instead of the model's (`--chat-template FILE`: vLLM's flag; e.g. one with
 * {% generation %} blocks for fine-tuning), with the model's BOS / EOS texts. It must compile (no fallback to a
 * built-in renderer): LMF_ERR_FORMAT naming the file and line; LMF_ERR_IO when it cannot be read. */
lmf_status lmf_chat_template_from_file(const lmf_weights *w, const char *path, lmf_chat_template *out);
/* Extra variables for the template, a JSON object (`--chat-template-kwargs '{"enable_thinking": false}'`);
 * LMF_ERR_ARG when json is not an object. */
lmf_status lmf_chat_template_set_kwargs(lmf_chat_template *t, const char *json);
/* Drops the compiled template: renders with the built-in renderer of t->format (`--chat-format NAME`). */
void lmf_chat_template_use_builtin(lmf_chat_template *t);
void lmf_chat_template_free(lmf_chat_template *t);
const char *lmf_chat_format_name(lmf_chat_format f);
/* "chatml", "llama2", "llama3": the built-in renderers. */
lmf_status lmf_chat_format_parse(const char *name, lmf_chat_format *out);
/* Appends the prompt text for msgs (special tokens as text: encode it with LMF_ENCODE_ALLOW_SPECIAL), ending with
 * the assistant's header when add_generation_prompt. A template's raise_exception is LMF_ERR_ARG with its message. */
lmf_status lmf_chat_render(const lmf_chat_template *t, const lmf_chat_message *msgs, int n, int add_generation_prompt,
                           lmf_text *out);
/* lmf_chat_render over messages given as JSON text, as the template sees them (transformers passes each message
 * dict unchanged): an array of OpenAI-shaped messages, with "tool_calls" ([{"type": "function", "function":
 * {"name", "arguments"}}], arguments an object or its JSON text), role "tool" with "tool_call_id" / "name",
 * "reasoning_content", content a string or a list of text parts (joined with "\n"). tools_json: the `tools`
 * variable, a JSON array of OpenAI tool objects, or NULL (none). Built-in renderers refuse tools, tool calls and
 * role "tool". Errors name the field ("messages[1].tool_calls[0].function.arguments: ..."). */
lmf_status lmf_chat_render_messages_json(const lmf_chat_template *t, const char *messages_json, const char *tools_json,
                                         int add_generation_prompt, lmf_text *out);
/* The token ids of a rendered chat, exactly as `lmforge chat` feeds them to the model: bos first when bos >= 0 (pass
 * lmf_weights_bos's id when it says add_bos, else -1) except when a template rendered it (the template writes
 * bos_token where the model wants it, as transformers' apply_chat_template(tokenize=True) adds no special token) or
 * for built-in Llama-3, whose text starts with <|begin_of_text|>; then the text encoded with
 * LMF_ENCODE_ALLOW_SPECIAL. Appends to *out. lmf_chat_encode renders msgs first (its
 * errors are lmf_chat_render's); lmf_chat_encode_text takes text already rendered (a prefix of a render, say). */
lmf_status lmf_chat_encode(const lmf_tokenizer *tok, const lmf_chat_template *t, int32_t bos,
                           const lmf_chat_message *msgs, int n, int add_generation_prompt, lmf_ids *out);
lmf_status lmf_chat_encode_text(const lmf_tokenizer *tok, const lmf_chat_template *t, int32_t bos, const char *text,
                                size_t len, lmf_ids *out);
/* The text of the token that closes a turn in format f: "<|im_end|>" (ChatML), "<|eot_id|>" (Llama-3), "</s>"
 * (Llama-2, after an assistant reply). */
const char *lmf_chat_end_of_turn(lmf_chat_format f);
/* The text that closes an assistant turn under t: t->end_of_turn, else lmf_chat_end_of_turn(t->format) ("" when
 * neither knows). */
const char *lmf_chat_template_end_of_turn(const lmf_chat_template *t);
/* The model's chat template text (tokenizer.chat_template), or NULL. */
const char *lmf_weights_chat_template(const lmf_weights *w);
/* Token ids that end a reply: eos and, where the model has one, the end-of-turn token (<|im_end|>, <|eot_id|>);
 * returns how many were written to ids (at most 4). */
int lmf_weights_stop_tokens(const lmf_weights *w, int32_t ids[4]);
/* Whether prompts should start with BOS (tokenizer.ggml.add_bos_token), and BOS's id (-1: none). */
int32_t lmf_weights_bos(const lmf_weights *w, int *add_bos);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif
#ifdef __cplusplus
}
#endif
#endif
