/* cmd_finetune.c — `lmforge finetune -m MODEL --data TRAIN.jsonl --out-dir DIR [flags]`. */
#include "cli/cli.h"
#include "core/status.h"
#include "train/finetune.h"

#include <omp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static volatile sig_atomic_t stop_requested;
static void on_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

static void help(FILE *f) {
    fprintf(f,
            "usage: lmforge finetune -m MODEL --data TRAIN.jsonl --out-dir DIR [flags]\n\n"
            "Fine-tunes a pretrained model (GGUF of any supported type, Hugging Face folder, lmforge checkpoint) on\n"
            "supervised JSONL: {\"messages\": [...]} rendered with the model's chat template, {\"prompt\", "
            "\"completion\"} or {\"text\"}.\nLoss on assistant / completion tokens only unless --train-on-prompt. "
            "LoRA by default (the base stays\nfrozen in its stored type), every weight with --full. Ctrl-C writes a "
            "checkpoint; --resume continues it.\n\n"
            "  -m, --model PATH       the pretrained model\n"
            "  --data FILE            training examples (JSONL)\n"
            "  --val-data FILE        validation examples (default: --val-fraction of --data)\n"
            "  --val-fraction F       share of --data held out for validation [0.1]\n"
            "  --out-dir DIR          checkpoints, metrics.jsonl, and the result\n"
            "  --full                 full fine-tuning (fp32 master weights; writes DIR/model.gguf)\n"
            "  --lora-r N             LoRA rank [16]\n"
            "  --lora-alpha A         LoRA alpha [32]\n"
            "  --lora-dropout P       LoRA dropout [0.1]\n"
            "  --lora-targets LIST    PEFT module names (q_proj,v_proj; c_attn; ...) or all-linear [q_proj,v_proj]\n"
            "  --use-rslora           scale alpha / sqrt(r) instead of alpha / r\n"
            "  --precision P          LoRA's frozen-base products: auto, bf16 or fp32 [auto: bf16 where this CPU runs\n"
            "                         bf16 products faster than fp32; a resumed run keeps its own]\n"
            "  --batch-size B [4]  --seq-len T [512]  --grad-accum K [1]\n"
            "  --epochs E [1]  --max-steps N (overrides epochs)  --warmup-steps N [10]\n"
            "  --lr LR [2e-4]  --min-lr LR [2e-5]  --weight-decay W [0]  --grad-clip G [1]\n"
            "  --eval-every N [50]  --eval-batches N [all]  --checkpoint-every N [end only]\n"
            "  --train-on-prompt      loss on every token\n"
            "  --refuse-long          fail on an example longer than --seq-len instead of truncating it\n"
            "  --packing              pack several examples into each row (attention stays inside each example;\n"
            "                         positions restart); default: one example per row, padded\n"
            "  --seed S [1337]  --threads N  --resume\n");
}

int cmd_finetune(int argc, char **argv) {
    lmf_finetune_config c;
    lmf_finetune_defaults(&c);
    int threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return help(stdout), 0;
        if (!strcmp(a, "--full")) { c.full = 1; continue; }
        if (!strcmp(a, "--use-rslora")) { c.use_rslora = 1; continue; }
        if (!strcmp(a, "--train-on-prompt")) { c.train_on_prompt = 1; continue; }
        if (!strcmp(a, "--refuse-long")) { c.refuse_long = 1; continue; }
        if (!strcmp(a, "--resume")) { c.resume = 1; continue; }
        if (!strcmp(a, "--packing")) { c.packing = 1; continue; }
        if (i + 1 >= argc) {
            fprintf(stderr, "lmforge finetune: %s needs a value (see --help)\n", a);
            return 2;
        }
        const char *v = argv[++i];
        char *end = NULL;
        double x = strtod(v, &end);
        int num = end && end != v && !*end;
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) c.model = v;
        else if (!strcmp(a, "--data")) c.data = v;
        else if (!strcmp(a, "--val-data")) c.val_data = v;
        else if (!strcmp(a, "--out-dir")) c.out_dir = v;
        else if (!strcmp(a, "--lora-targets")) c.lora_targets = v;
        else if (!strcmp(a, "--precision")) {
            if (!strcmp(v, "auto")) c.precision = LMF_PRECISION_AUTO;
            else if (!strcmp(v, "fp32")) c.precision = LMF_PRECISION_FP32;
            else if (!strcmp(v, "bf16")) c.precision = LMF_PRECISION_BF16;
            else {
                fprintf(stderr, "lmforge finetune: --precision: '%s' is not auto, bf16 or fp32\n", v);
                return 2;
            }
        }
        else if (!num) {
            fprintf(stderr, "lmforge finetune: %s: unknown flag, or '%s' is not a number (see --help)\n", a, v);
            return 2;
        } else if (!strcmp(a, "--val-fraction")) c.val_fraction = x;
        else if (!strcmp(a, "--lora-r")) c.lora_r = (int)x;
        else if (!strcmp(a, "--lora-alpha")) c.lora_alpha = (float)x;
        else if (!strcmp(a, "--lora-dropout")) c.lora_dropout = (float)x;
        else if (!strcmp(a, "--batch-size")) c.batch_size = (int)x;
        else if (!strcmp(a, "--seq-len")) c.seq_len = (int)x;
        else if (!strcmp(a, "--grad-accum")) c.grad_accum = (int)x;
        else if (!strcmp(a, "--epochs")) c.epochs = (int)x;
        else if (!strcmp(a, "--max-steps")) c.max_steps = (int)x;
        else if (!strcmp(a, "--warmup-steps")) c.warmup_steps = (int)x;
        else if (!strcmp(a, "--lr")) c.lr = (float)x;
        else if (!strcmp(a, "--min-lr")) c.min_lr = (float)x;
        else if (!strcmp(a, "--weight-decay")) c.weight_decay = (float)x;
        else if (!strcmp(a, "--grad-clip")) c.grad_clip = (float)x;
        else if (!strcmp(a, "--eval-every")) c.eval_every = (int)x;
        else if (!strcmp(a, "--eval-batches")) c.eval_batches = (int)x;
        else if (!strcmp(a, "--checkpoint-every")) c.checkpoint_every = (int)x;
        else if (!strcmp(a, "--seed")) c.seed = (uint64_t)x;
        else if (!strcmp(a, "--threads")) threads = (int)x;
        else {
            fprintf(stderr, "lmforge finetune: unknown flag %s (see --help)\n", a);
            return 2;
        }
    }
    if (!c.model || !c.data || !c.out_dir) {
        fprintf(stderr, "lmforge finetune: -m MODEL, --data FILE and --out-dir DIR are required (see --help)\n");
        return 2;
    }
    if (threads > 0) omp_set_num_threads(threads);
    cli_term t = {0};
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    lmf_status s = lmf_finetune_run(&c, &stop_requested, cli_term_sink(&t));
    return s == LMF_OK ? 0 : cli_fail("finetune", s);
}
