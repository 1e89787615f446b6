/* progress.h — a progress bar for long jobs: done/total, percentage, rate, ETA and a caller-supplied status.
 * On a terminal it redraws one line on stderr; otherwise (logs, CI) it prints a line at most every few seconds. */
#ifndef LMF_CORE_PROGRESS_H
#define LMF_CORE_PROGRESS_H

#include <stdio.h>

typedef struct {
    long start, total;
    double t0, last_print;
    int tty;
    const char *unit;
    FILE *out;
} lmf_progress;

double lmf_now(void); /* monotonic seconds */
void lmf_progress_start(lmf_progress *p, long start, long total, const char *unit);
/* done: items finished so far (absolute); status: extra text such as "loss 2.31 lr 1e-3". */
void lmf_progress_update(lmf_progress *p, long done, const char *status);
void lmf_progress_finish(lmf_progress *p);
/* Prints a line above the bar (e.g. a validation result) without garbling it. */
void lmf_progress_log(lmf_progress *p, const char *line);

#endif
