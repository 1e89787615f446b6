/* progress.c — see progress.h. */
#include "core/progress.h"

#include <string.h>
#include <time.h>
#include <unistd.h>

double lmf_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void fmt_duration(char *buf, size_t n, double s) {
    if (s < 0 || s > 1e8) snprintf(buf, n, "?");
    else if (s < 60) snprintf(buf, n, "%.0fs", s);
    else if (s < 3600) snprintf(buf, n, "%dm%02ds", (int)s / 60, (int)s % 60);
    else snprintf(buf, n, "%dh%02dm", (int)s / 3600, ((int)s % 3600) / 60);
}

void lmf_progress_start(lmf_progress *p, long start, long total, const char *unit) {
    p->start = start, p->total = total, p->unit = unit;
    p->t0 = p->last_print = lmf_now();
    p->out = stderr;
    p->tty = isatty(fileno(stderr));
    p->done = start, p->pending = 0, p->status[0] = 0;
}

static void draw(lmf_progress *p, double now) {
    double el = now - p->t0;
    long done = p->done;
    p->last_print = now, p->pending = 0;
    double rate = el > 0 ? (done - p->start) / el : 0;
    char eta[32], elapsed[32];
    fmt_duration(eta, sizeof eta, rate > 0 ? (p->total - done) / rate : -1);
    fmt_duration(elapsed, sizeof elapsed, el);
    int width = 24, fill = p->total > 0 ? (int)((double)done / p->total * width) : 0;
    char bar[64];
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
    bar[width] = 0;
    fprintf(p->out, "%s[%s] %ld/%ld %3.0f%% | %s | %.2f %s/s | %s elapsed, ETA %s%s", p->tty ? "\r\033[K" : "", bar,
            done, p->total, p->total ? 100.0 * done / p->total : 100.0, p->status, rate, p->unit, elapsed, eta,
            p->tty ? "" : "\n");
    fflush(p->out);
}

void lmf_progress_update(lmf_progress *p, long done, const char *status) {
    double now = lmf_now();
    p->done = done, p->pending = 1;
    snprintf(p->status, sizeof p->status, "%s", status ? status : "");
    /* a terminal redraws in place, so often is cheap (but not faster than the eye); a log keeps every line */
    if (now - p->last_print >= (p->tty ? 0.1 : LMF_PROGRESS_LOG_S) || (p->tty && done >= p->total)) draw(p, now);
}

void lmf_progress_log(lmf_progress *p, const char *line) {
    fprintf(p->out, "%s%s\n", p->tty ? "\r\033[K" : "", line);
    fflush(p->out);
}

void lmf_progress_finish(lmf_progress *p) {
    if (p->pending) draw(p, lmf_now());
    if (p->tty) fputc('\n', p->out);
    fflush(p->out);
}
