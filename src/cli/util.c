/* util.c — helpers shared by the commands. */
#include "cli/cli.h"
#include "core/status.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Reads a whole stream (or file; "-" = stdin) into a NUL-terminated buffer. */
lmf_status cli_read_all(const char *path, char **out, size_t *len) {
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) return lmf_fail(LMF_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (n + 1 >= cap) {
            cap *= 2;
            char *nb = realloc(buf, cap);
            if (!nb) {
                fprintf(stderr, "lmforge: out of memory reading %s (%zu bytes)\n", path, cap);
                abort();
            }
            buf = nb;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0) break;
    }
    int err = ferror(f);
    if (f != stdin) fclose(f);
    if (err) {
        free(buf);
        return lmf_fail(LMF_ERR_IO, "%s: read error", path);
    }
    buf[n] = 0;
    *out = buf, *len = n;
    return LMF_OK;
}

