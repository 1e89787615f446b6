/* util.c — helpers shared by the commands. */
#include "cli/cli.h"
#include "core/fs.h"
#include "core/status.h"
#include "model/lora_io.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Reads a whole stream (or file; "-" = stdin) into a NUL-terminated buffer. */
lmf_status cli_read_all(const char *path, char **out, size_t *len) {
    if (strcmp(path, "-")) return lmf_read_file(path, out, len);
    return lmf_read_stream(stdin, path, (size_t)-1, NULL, out, len);
}


static void term_log(void *ctx, lmf_log_level level, const char *line) {
    cli_term *t = ctx;
    if (t->bar_on) lmf_progress_log(&t->bar, line); /* above the bar, without garbling it */
    else fprintf(stderr, "%s\n", line);
}

static void term_progress(void *ctx, lmf_progress_event ev, long done, long total, const char *unit,
                          const char *status) {
    cli_term *t = ctx;
    if (ev == LMF_PROGRESS_BEGIN) lmf_progress_start(&t->bar, done, total, unit), t->bar_on = 1;
    else if (ev == LMF_PROGRESS_UPDATE && t->bar_on) lmf_progress_update(&t->bar, done, status);
    else if (ev == LMF_PROGRESS_END && t->bar_on) lmf_progress_finish(&t->bar), t->bar_on = 0;
}

static void term_text(void *ctx, const char *data, size_t len) {
    fwrite(data, 1, len, stdout);
    fflush(stdout); /* a sample appears token by token */
}

const lmf_sink *cli_term_sink(cli_term *t) {
    t->sink = (lmf_sink){term_log, term_progress, term_text, t};
    return &t->sink;
}

lmf_status cli_kv_type(void *dst, const char *flag, const char *value) {
    if (lmf_kv_type_parse(value, dst) == LMF_OK) return LMF_OK;
    return lmf_fail(LMF_ERR_ARG, "%s '%s': expected f32 or f16", flag, value);
}

lmf_status cli_open_lora(const char *path, const lmf_weights *w, float scale, lmf_lora **out) {
    struct stat sb;
    if (stat(path, &sb) != 0) return lmf_fail(LMF_ERR_IO, "%s: no such adapter file or folder", path);
    LMF_TRY(S_ISDIR(sb.st_mode) ? lmf_lora_load_peft(path, lmf_weights_config(w), out)
                                : lmf_lora_load_gguf(path, lmf_weights_config(w), out));
    (*out)->scale *= scale;
    return LMF_OK;
}
