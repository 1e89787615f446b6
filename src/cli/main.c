/* main.c — `lmforge <command> [flags]`: dispatch to the commands in this folder. */
#include "cli/cli.h"
#include "kernels/quant.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    const char *name, *summary;
    int (*run)(int argc, char **argv);
} command;

static const command commands[] = {
    {"train", "pretrain a transformer (gpt2, llama, qwen2, qwen3, olmoe, phi3 or gemma family) on token shards; --resume continues a run", cmd_train},
    {"finetune", "fine-tune a pretrained model on JSONL chats / completions: LoRA (default) or --full", cmd_finetune},
    {"data", "prepare corpora: `data shard` turns text files into token shards for training", cmd_data},
    {"tokenize", "text -> token ids (JSON) through a tokenizer, or back with --decode", cmd_tokenize},
    {"tokenizer", "`tokenizer train` learns a byte-level BPE and saves a Hugging Face tokenizer.json", cmd_tokenizer},
    {"generate", "continue a prompt with a model (GGUF, HF folder, checkpoint), streaming tokens", cmd_generate},
    {"chat", "chat with a model through its chat template (interactive, or one turn with -p)", cmd_chat},
    {"serve", "serve a model over HTTP: the OpenAI API (chat, completions, streaming), metrics, a web page", cmd_serve},
    {"perplexity", "perplexity of a model over a text file, in context windows", cmd_perplexity},
    {"export", "write a checkpoint or model as GGUF (llama.cpp) or a Hugging Face folder (transformers)", cmd_export},
    {"quantize", "convert a model to a GGUF (q8_0, q4_x, q5_x, K-quant mixes, f16/bf16/f32) as llama-quantize does; sizes, perplexity", cmd_quantize},
    {"imatrix", "a model's importance matrix over a calibration text (llama-imatrix's), for quantize --imatrix", cmd_imatrix},
    {"info", "what a GGUF model file holds: architecture, hyperparameters, tokenizer, metadata, tensors", cmd_info},
};

int cli_fail(const char *cmd, lmf_status s) {
    /* library messages that name their function ("perplexity: ...") would read "lmforge perplexity: ...:
     * perplexity: ..."; the command's name is said once */
    const char *msg = lmf_last_error();
    size_t n = strlen(cmd);
    if (!strncmp(msg, cmd, n) && msg[n] == ':' && msg[n + 1] == ' ') msg += n + 2;
    fprintf(stderr, "lmforge %s: %s: %s\n", cmd, lmf_status_name(s), msg);
    return s == LMF_ERR_INTERRUPTED ? 130 : s == LMF_ERR_ARG ? 2 : 1;
}

static void usage(FILE *f) {
    fprintf(f, "lmforge %s — the large-language-model lifecycle in C\n\nusage: lmforge <command> [flags]\n\ncommands:\n",
            LMF_VERSION);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n`lmforge <command> --help` documents each command's flags.\n");
}

/* What a command printed to stdout (generated text, token ids, reports) is output like any file: a full disk or a
 * closed pipe reader is an error with a non-zero exit, not a silently short result. */
static int finish(const char *cmd, int rc) {
    errno = 0;
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "lmforge %s: %s: standard output: write failed: %s\n", cmd, lmf_status_name(LMF_ERR_IO),
                strerror(errno ? errno : EIO));
        return rc ? rc : 1;
    }
    return rc;
}

int main(int argc, char **argv) {
    lmf_bound_omp_spin(argv); /* first: it may start the process again */
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("lmforge %s\n", LMF_VERSION);
        return 0;
    }
    /* The kernels ignore a bad LMF_QACT silently (they cannot print); the warning they once printed is ours. */
    const char *qact = lmf_qact_env_rejected();
    if (qact) fprintf(stderr, "lmforge: LMF_QACT=%s: expected int16 or int8; using int16 (hint: unset it)\n", qact);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return finish(argv[1], commands[i].run(argc - 1, argv + 1));
    fprintf(stderr, "lmforge: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
