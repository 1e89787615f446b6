/* finetune.h — fine-tuning a pretrained model on supervised data: full (every weight, fp32 master weights and AdamW
 * as in pretraining) or LoRA (adapters over the frozen base in its stored type; model/lora.h).
 *
 * The run: load the model (any format lmf_weights_load reads), tokenize the JSONL data (train/sft.h: chat
 * template, assistant-only loss, padding), split a validation set off (or read a file), then steps of the training
 * step (train/step.h) with warmup + cosine decay, validation loss every eval_every steps, metrics.jsonl, progress
 * through the sink, checkpoints (the trainable parameters and AdamW's moments) every checkpoint_every steps and at the
 * end, exact resume from the newest checkpoint in out_dir. The result: LoRA, out_dir/adapter/ (a PEFT folder:
 * adapter_config.json + adapter_model.safetensors) and out_dir/adapter.gguf (llama.cpp's --lora); full,
 * out_dir/model.gguf with the base's tokenizer.
 *
 * Data parallel (`mpirun -np D lmforge finetune ...`, dist/grid.h): rank r takes micro-batches [r k/D, (r+1) k/D) of
 * each step's k = grad_accum (D must divide k), read in the one process's data order, and the ranks add their
 * gradients in the order one process adds its micro-batches' (comm.h, train/grad_sum.h): for D a power of two (or
 * D = k) the run equals one process's bit for bit. ZeRO-1 (dist/zero.h): each rank updates its shard of the trainable
 * parameters with its own shard of AdamW's moments, then the shards are all-gathered; validation batches are dealt
 * round-robin and their losses added in batch order; rank 0 alone reports, writes metrics and the result, and
 * writes the checkpoints (the one-process file: the moments' shards gathered to it); every rank resumes from the same
 * file. A rank that fails ends the whole job. */
#ifndef LMF_TRAIN_FINETUNE_H
#define LMF_TRAIN_FINETUNE_H

#include "lmforge.h"

typedef struct {
    const char *model, *data, *val_data, *out_dir;
    double val_fraction;        /* used when val_data is NULL: this share of data, split by a seeded shuffle */
    int full;                   /* every weight trains (else LoRA) */
    int lora_r;
    float lora_alpha, lora_dropout;
    int use_rslora;
    const char *lora_targets;   /* PEFT module names, comma-separated, or "all-linear"; NULL: PEFT's default for the
                                 * model's family (lmf_lora_default_targets) */
    int batch_size, seq_len, grad_accum;
    int grad_sum_inline;        /* the micro-batches' products add into the gradients (else grad_sum.h's tree) */
    int max_steps;              /* 0: epochs x the steps of one pass over the data */
    int epochs;
    int warmup_steps, eval_every, eval_batches, checkpoint_every;
    int keep_checkpoints;       /* the newest this many stay in out_dir (as train's keep_checkpoints) */
    float lr, min_lr, weight_decay, grad_clip;
    int train_on_prompt, refuse_long, resume;
    const char *chat_template;  /* a Jinja file to render {"messages"} data with instead of the model's, or NULL */
    int precision;              /* LMF_PRECISION_*: LoRA's frozen-base products, or full fine-tuning's every product */
    int packing;                /* several examples per row (attention kept inside each), else one per row, padded */
    int group_by_length;        /* padded: batches of examples of similar lengths (lmf_sft_loader_group) */
    int loss;                   /* LMF_LOSS_*: the head's cross-entropy over vocabulary slabs or over kept logits */
    int threads;                /* 0: the cores (under mpirun, this host's ranks share them) */
    const char *comm;           /* "auto" (NULL), "self" or "mpi": data parallel over the ranks mpirun started */
    int overlap_grad_reduce;    /* data parallel: each layer's gradients exchanged while the backward goes on */
    int ddp_bucket;             /* data parallel: ZeRO's bucket, floats a rank (0: LMF_ZERO_BUCKET; the same bits) */
    uint64_t seed;
} lmf_finetune_config;

/* AUTO: bf16 where this CPU runs bf16 products faster than fp32 (lmf_sgemm_bf16_pays), else fp32; a resumed run
 * keeps the precision it started with. */
enum { LMF_PRECISION_AUTO = 0, LMF_PRECISION_FP32 = 1, LMF_PRECISION_BF16 = 2 };
/* FUSED: lmf_model_set_fused_loss (no batch x seq x vocabulary logits). AUTO: FUSED under LoRA; --full keeps the
 * LOGITS (one head product fewer) unless the run would not fit in memory with them. A resumed run keeps the loss it
 * started with (a checkpoint written before the choice existed: LOGITS). */
enum { LMF_LOSS_AUTO = 0, LMF_LOSS_FUSED = 1, LMF_LOSS_LOGITS = 2 };

/* Defaults: LoRA r 16, alpha 32, dropout 0.1 on PEFT's default modules (q_proj,v_proj: the fine-tuning issue's
 * recipe; gpt2 c_attn, phi3 qkv_proj), B 4, T 512, lr 2e-4,
 * 1 epoch, warmup 10, eval every 50 steps, val 10%. */
void lmf_finetune_defaults(lmf_finetune_config *c);
/* Runs to the end; with resume, continues from out_dir's newest checkpoint bit for bit. *stop != 0: checkpoint and
 * LMF_ERR_INTERRUPTED. Reports to sink. Writes nothing half: every file is atomic. */
lmf_status lmf_finetune_run(const lmf_finetune_config *c, volatile sig_atomic_t *stop, const lmf_sink *sink);

#endif
