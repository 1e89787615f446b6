/* log.c — the lmf_sink helpers (declared in lmforge.h, reporting section; see core/log.h). */
#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>

void lmf_sink_logf(const lmf_sink *s, lmf_log_level level, const char *fmt, ...) {
    if (!s || !s->log) return;
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    s->log(s->ctx, level, line);
}

void lmf_sink_progress(const lmf_sink *s, lmf_progress_event ev, long done, long total, const char *unit,
                       const char *status) {
    if (s && s->progress) s->progress(s->ctx, ev, done, total, unit, status);
}

void lmf_sink_text(const lmf_sink *s, const char *data, size_t len) {
    if (s && s->text && len) s->text(s->ctx, data, len);
}
