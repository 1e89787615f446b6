/* log.h — how library code reports to its caller without printing: a sink of callbacks the caller provides.
 *
 * The library never writes to stdout or stderr (STYLE.md). A long job (training now; the data pipeline and
 * perplexity could follow) takes an lmf_sink and sends it
 *   log lines      one finished line of text, no trailing newline ("checkpoint: out/ckpt-00000500.lmfc");
 *   progress       BEGIN (done = where the job starts, total), UPDATE (done so far, a status such as
 *                  "loss 2.31 lr 1e-3"), END; the caller draws a bar (core/progress.h) or ignores it;
 *   text           raw bytes of generated output as they come (a text sample), not line-based.
 * Any callback may be NULL and a NULL sink drops everything, so a job runs silently by default. Callbacks run on
 * the job's thread, between its steps, and must not call back into the job. The CLI's sinks print exactly what the
 * commands printed before sinks existed. */
#ifndef LMF_CORE_LOG_H
#define LMF_CORE_LOG_H

#include <stddef.h>

typedef enum { LMF_LOG_INFO = 0, LMF_LOG_WARN = 1 } lmf_log_level;
typedef enum { LMF_PROGRESS_BEGIN = 0, LMF_PROGRESS_UPDATE = 1, LMF_PROGRESS_END = 2 } lmf_progress_event;

typedef struct {
    void (*log)(void *ctx, lmf_log_level level, const char *line);
    void (*progress)(void *ctx, lmf_progress_event ev, long done, long total, const char *unit, const char *status);
    void (*text)(void *ctx, const char *data, size_t len);
    void *ctx;
} lmf_sink;

/* printf-style line to sink->log (formatted only when there is a log callback). */
void lmf_sink_logf(const lmf_sink *s, lmf_log_level level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void lmf_sink_progress(const lmf_sink *s, lmf_progress_event ev, long done, long total, const char *unit,
                       const char *status);
void lmf_sink_text(const lmf_sink *s, const char *data, size_t len);

#endif
