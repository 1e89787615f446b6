/* cli.h — the `lmforge` commands. Each is thin: parse flags, call the library, print, map status to exit code. */
#ifndef LMF_CLI_CLI_H
#define LMF_CLI_CLI_H

#include "core/progress.h"
#include "lmforge.h"

int cmd_train(int argc, char **argv);
int cmd_finetune(int argc, char **argv);
int cmd_data(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_tokenizer(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_perplexity(int argc, char **argv);
int cmd_imatrix(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_serve(int argc, char **argv);

/* Reads a whole file ("-" = stdin) into a NUL-terminated malloc'd buffer; errors name the file. */
lmf_status cli_read_all(const char *path, char **out, size_t *len);

/* The LoRA adapter at path for the model's weights: a PEFT folder or a GGUF adapter file; its scale multiplied by
 * scale (--lora-scale). */
struct lmf_lora;
lmf_status cli_open_lora(const char *path, const lmf_weights *w, float scale, struct lmf_lora **out);

/* --cache-type f32|f16, a CLI_FN entry whose dst is an lmf_kv_type. */
#define CLI_CACHE_TYPE_HELP "KV cache elements: f32, or f16 (half the memory and attention reads; llama.cpp's default)"
lmf_status cli_kv_type(void *dst, const char *flag, const char *value);

/* Prints "lmforge <cmd>: <status>: <message>" to stderr and returns the process exit code for s. */
int cli_fail(const char *cmd, lmf_status s);

/* The terminal sink every long command passes to the library: log lines on stderr (above the progress bar while
 * one is drawn, without garbling it), progress as core/progress's bar on stderr, text on stdout flushed as it
 * comes. So the commands print exactly what they printed when the library drew its own bar. Zero a cli_term,
 * then pass cli_term_sink(&t); t outlives the job. */
typedef struct {
    lmf_progress bar;
    int bar_on;
    lmf_sink sink;
} cli_term;
const lmf_sink *cli_term_sink(cli_term *t);

#endif
