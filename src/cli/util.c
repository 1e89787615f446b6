/* util.c — helpers shared by the commands. */
#include "cli/cli.h"
#include "core/fs.h"
#include "core/status.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Reads a whole stream (or file; "-" = stdin) into a NUL-terminated buffer. */
lmf_status cli_read_all(const char *path, char **out, size_t *len) {
    if (strcmp(path, "-")) return lmf_read_file(path, out, len);
    return lmf_read_stream(stdin, path, (size_t)-1, NULL, out, len);
}

