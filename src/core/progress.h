/* progress.h — a progress bar for long jobs: done/total, percentage, rate, ETA and a caller-supplied status.
 * On a terminal it redraws one line on stderr in place (at most 10 times a second); otherwise (logs, CI, a pipe)
 * it prints a line at most every LMF_PROGRESS_LOG_S seconds, and finish prints the final state once if it was not
 * the last line printed: a job of a few seconds leaves one line, however many steps it reports. */
#ifndef LMF_CORE_PROGRESS_H
#define LMF_CORE_PROGRESS_H

#include <stdio.h>

#define LMF_PROGRESS_LOG_S 5.0

typedef struct {
    long start, total;
    double t0, last_print;
    int tty;
    const char *unit;
    FILE *out;
    long done;        /* the latest update, and whether it is still unprinted (finish prints it) */
    int pending;
    char status[160];
} lmf_progress;

double lmf_now(void); /* monotonic seconds */
void lmf_progress_start(lmf_progress *p, long start, long total, const char *unit);
/* done: items finished so far (absolute); status: extra text such as "loss 2.31 lr 1e-3". */
void lmf_progress_update(lmf_progress *p, long done, const char *status);
void lmf_progress_finish(lmf_progress *p);
/* Prints a line above the bar (e.g. a validation result) without garbling it. */
void lmf_progress_log(lmf_progress *p, const char *line);

#endif
