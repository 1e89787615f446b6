/* cmd_finetune.c — `lmforge finetune -m MODEL --data TRAIN.jsonl --out-dir DIR [flags]`. */
#include "cli/cli.h"
#include "cli/opts.h"
#include "core/status.h"
#include "train/finetune.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static volatile sig_atomic_t stop_requested;

static lmf_status parse_precision(void *dst, const char *flag, const char *v) {
    int *p = dst;
    if (!strcmp(v, "auto")) *p = LMF_PRECISION_AUTO;
    else if (!strcmp(v, "fp32")) *p = LMF_PRECISION_FP32;
    else if (!strcmp(v, "bf16")) *p = LMF_PRECISION_BF16;
    else return lmf_fail(LMF_ERR_ARG, "%s: '%s' is not auto, bf16 or fp32", flag, v);
    return LMF_OK;
}
static lmf_status parse_grad_sum(void *dst, const char *flag, const char *v) {
    int *inl = dst;
    if (!strcmp(v, "tree")) *inl = 0;
    else if (!strcmp(v, "inline")) *inl = 1;
    else return lmf_fail(LMF_ERR_ARG, "%s: '%s' is not tree or inline", flag, v);
    return LMF_OK;
}
static lmf_status parse_loss(void *dst, const char *flag, const char *v) {
    int *p = dst;
    if (!strcmp(v, "auto")) *p = LMF_LOSS_AUTO;
    else if (!strcmp(v, "fused")) *p = LMF_LOSS_FUSED;
    else if (!strcmp(v, "logits")) *p = LMF_LOSS_LOGITS;
    else return lmf_fail(LMF_ERR_ARG, "%s: '%s' is not auto, fused or logits", flag, v);
    return LMF_OK;
}
static void on_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

int cmd_finetune(int argc, char **argv) {
    lmf_finetune_config c;
    lmf_finetune_defaults(&c);
    const cli_opt opts[] = {
        CLI_OPT("-m", "--model", CLI_STR, &c.model, "PATH", "the pretrained model (required)"),
        CLI_OPT(NULL, "--data", CLI_STR, &c.data, "FILE", "training examples, JSONL (required)"),
        CLI_OPT(NULL, "--val-data", CLI_STR, &c.val_data, "FILE", "validation examples",
                .def = "--val-fraction of --data"),
        CLI_OPT(NULL, "--val-fraction", CLI_DOUBLE, &c.val_fraction, "F", "share of --data held out for validation"),
        CLI_OPT(NULL, "--out-dir", CLI_STR, &c.out_dir, "DIR", "checkpoints, metrics.jsonl, and the result (required)"),
        CLI_OPT(NULL, "--full", CLI_BOOL, &c.full, NULL,
                "full fine-tuning (fp32 master weights; writes DIR/model.gguf)"),
        CLI_OPT(NULL, "--lora-r", CLI_INT, &c.lora_r, "N", "LoRA rank", .lo = 1),
        CLI_OPT(NULL, "--lora-alpha", CLI_FLOAT, &c.lora_alpha, "A", "LoRA alpha"),
        CLI_OPT(NULL, "--lora-dropout", CLI_FLOAT, &c.lora_dropout, "P", "LoRA dropout"),
        CLI_OPT(NULL, "--lora-targets", CLI_STR, &c.lora_targets, "LIST",
                "PEFT module names (q_proj,v_proj; c_attn; ...; a MoE's router and experts as PEFT's "
                "target_parameters: gate.weight,gate_up_proj,experts.down_proj, dropout 0; a Qwen2-MoE's shared "
                "expert: gate_proj,up_proj,down_proj,shared_expert_gate) or all-linear (PEFT's set per model); by "
                "default PEFT's per family: q_proj,v_proj, gpt2 c_attn, phi3 qkv_proj"),
        CLI_OPT(NULL, "--use-rslora", CLI_BOOL, &c.use_rslora, NULL, "scale alpha / sqrt(r) instead of alpha / r"),
        CLI_OPT(NULL, "--precision", CLI_FN, &c.precision, "P",
                "products in auto, bf16 or fp32 (LoRA: the frozen base's and attention's; --full: every linear and "
                "attention product, fp32 master weights, their inputs kept in bf16; auto: bf16 where this CPU runs "
                "them faster than fp32, as with AMX tiles; a resumed run keeps its own)",
                .def = "auto", .fn = parse_precision),
        CLI_OPT(NULL, "--packing", CLI_BOOL, &c.packing, NULL,
                "several examples per row, attention kept inside each (default: one per row, padded)"),
        CLI_OPT(NULL, "--group-by-length", CLI_BOOL, &c.group_by_length, NULL,
                "padded batches of examples of similar lengths, as transformers' group_by_length (megabatches of up "
                "to 50 batches, each sorted longest first): less padding to run"),
        CLI_OPT(NULL, "--loss", CLI_FN, &c.loss, "HOW",
                "the head's cross-entropy: fused (over vocabulary slabs, never batch x seq x vocabulary logits; "
                "prompt and padding tokens skip the head) or logits (kept whole); auto: fused for LoRA, and for "
                "--full (where fused costs one more head product) logits unless only fused fits in memory; a resumed "
                "run keeps its own", .def = "auto", .fn = parse_loss),
        CLI_OPT(NULL, "--batch-size", CLI_INT, &c.batch_size, "B", "examples per micro-batch", .lo = 1),
        CLI_OPT(NULL, "--seq-len", CLI_INT, &c.seq_len, "T", "tokens per example at most", .lo = 1),
        CLI_OPT(NULL, "--grad-accum", CLI_INT, &c.grad_accum, "K", "micro-batches per step", .lo = 1),
        CLI_OPT(NULL, "--grad-sum", CLI_FN, &c.grad_sum_inline, "HOW",
                "how a step adds its micro-batches' gradients: tree (each on its own, added in a fixed tree; up to "
                "ceil(log2 K) more gradient-sized buffers) or inline (each product adds into the gradients)",
                .def = "tree", .fn = parse_grad_sum),
        CLI_OPT(NULL, "--epochs", CLI_INT, &c.epochs, "E", "passes over the data", .lo = 1),
        CLI_OPT(NULL, "--max-steps", CLI_INT, &c.max_steps, "N", "steps (overrides --epochs)", .def = "from --epochs"),
        CLI_OPT(NULL, "--warmup-steps", CLI_INT, &c.warmup_steps, "N", "linear warmup steps"),
        CLI_OPT(NULL, "--lr", CLI_FLOAT, &c.lr, "LR", "peak learning rate"),
        CLI_OPT(NULL, "--min-lr", CLI_FLOAT, &c.min_lr, "LR", "learning rate at the end of the cosine decay"),
        CLI_OPT(NULL, "--weight-decay", CLI_FLOAT, &c.weight_decay, "W", "AdamW weight decay"),
        CLI_OPT(NULL, "--grad-clip", CLI_FLOAT, &c.grad_clip, "G", "clip the gradient norm to G; 0 = off"),
        CLI_OPT(NULL, "--eval-every", CLI_INT, &c.eval_every, "N", "validate every N steps"),
        CLI_OPT(NULL, "--eval-batches", CLI_INT, &c.eval_batches, "N", "validation batches", .def = "all"),
        CLI_OPT(NULL, "--checkpoint-every", CLI_INT, &c.checkpoint_every, "N", "checkpoint every N steps",
                .def = "end only"),
        CLI_OPT(NULL, "--keep-checkpoints", CLI_INT, &c.keep_checkpoints, "N",
                "keep the newest N checkpoints in --out-dir, delete older ones", .lo = 1),
        CLI_OPT(NULL, "--train-on-prompt", CLI_BOOL, &c.train_on_prompt, NULL, "loss on every token"),
        CLI_OPT(NULL, "--chat-template", CLI_STR, &c.chat_template, "FILE",
                "render {\"messages\"} data with this Jinja template (its {% generation %} blocks, if any, mark the "
                "loss)", .def = "the model's template"),
        CLI_OPT(NULL, "--refuse-long", CLI_BOOL, &c.refuse_long, NULL,
                "fail on an example longer than --seq-len instead of truncating it"),
        CLI_OPT(NULL, "--seed", CLI_U64, &c.seed, "S", "seed of the split, shuffling and dropout"),
        CLI_OPT(NULL, "--threads", CLI_INT, &c.threads, "N", "threads",
                .def = "OMP_NUM_THREADS or all cores (shared by this host's ranks under mpirun)", .lo = 1),
        CLI_OPT(NULL, "--comm", CLI_STR, &c.comm, "NAME",
                "self, mpi, or auto: mpi when mpirun started this process among several (data parallel: each rank "
                "takes grad-accum / ranks micro-batches of a step; bit for bit one process's run for a power-of-two "
                "number of ranks)", .def = "auto"),
        CLI_OPT(NULL, "--overlap-grad-reduce", CLI_BOOL, &c.overlap_grad_reduce, NULL,
                "under mpirun: exchange each layer's gradients while the backward goes on (the same bits)"),
        CLI_OPT(NULL, "--ddp-bucket-size", CLI_INT, &c.ddp_bucket, "N",
                "under mpirun: floats a rank in each bucket of ZeRO's exchanges (the same bits)", .def = "2097152",
                .lo = 1),
        CLI_OPT(NULL, "--resume", CLI_BOOL, &c.resume, NULL, "continue from --out-dir's newest checkpoint"),
    };
    cli_cmd cmd = {.cmd = "finetune", .opts = opts, .n_opts = (int)(sizeof opts / sizeof opts[0]),
                   .usage = "usage: lmforge finetune -m MODEL --data TRAIN.jsonl --out-dir DIR [flags]\n\n"
                            "Fine-tunes a pretrained model (GGUF of any supported type, Hugging Face folder, lmforge "
                            "checkpoint) on\nsupervised JSONL: {\"messages\": [...]} rendered with the model's chat "
                            "template, {\"prompt\", \"completion\"} or {\"text\"}.\nLoss on assistant / "
                            "completion tokens only unless --train-on-prompt. LoRA by default (the base stays\nfrozen "
                            "in its stored type), every weight with --full. Ctrl-C writes a checkpoint; --resume "
                            "continues it.\nUnder mpirun -np D: data parallel, each rank K/D of a step's --grad-accum "
                            "K micro-batches, bit for bit\none process's run for D a power of two "
                            "(docs/distributed.md).\n"};
    int r = cli_parse(&cmd, argc, argv);
    if (r <= 0) return r < 0 ? 0 : 2;
    if (!c.model || !c.data || !c.out_dir) {
        fprintf(stderr, "lmforge finetune: -m MODEL, --data FILE and --out-dir DIR are required (see --help)\n");
        return 2;
    }
    cli_term t = {0};
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    lmf_status s = lmf_finetune_run(&c, &stop_requested, cli_term_sink(&t));
    return s == LMF_OK ? 0 : cli_fail("finetune", s);
}
