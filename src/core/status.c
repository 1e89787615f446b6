/* status.c — the per-thread "last error" message behind lmf_last_error(). */
#include "core/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char last_error[1024];

const char *lmf_last_error(void) { return last_error; }

lmf_status lmf_fail(lmf_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return s;
}

void lmf_clear_error(void) { last_error[0] = 0; }

const char *lmf_status_name(lmf_status s) {
    switch (s) {
    case LMF_OK: return "ok";
    case LMF_ERR_IO: return "I/O error";
    case LMF_ERR_FORMAT: return "format error";
    case LMF_ERR_ARG: return "invalid argument";
    case LMF_ERR_MISMATCH: return "mismatch";
    case LMF_ERR_INTERRUPTED: return "interrupted";
    case LMF_ERR_BUSY: return "busy";
    }
    return "unknown status";
}

int lmf_name_index(const char *name, const char *const *names, int n) {
    for (int i = 0; i < n; i++)
        if (!strcmp(name, names[i])) return i;
    return -1;
}
