/* test_progress.c — core/progress.h: off a terminal (a log, a pipe) the bar prints at most a line every
 * LMF_PROGRESS_LOG_S seconds and finish prints the final state once, so a quick job of many steps leaves one line
 * (perplexity printed a line per window); on a terminal every line is a redraw in place ("\r\033[K", no newline). */
#include "test_util.h"

#include "core/progress.h"

#include <string.h>

static size_t count(const char *s, const char *what) {
    size_t n = 0;
    for (const char *p = s; (p = strstr(p, what)); p += strlen(what)) n++;
    return n;
}

static char *run(int tty, int steps, int finish) {
    static char buf[1 << 16];
    memset(buf, 0, sizeof buf);
    FILE *f = fmemopen(buf, sizeof buf - 1, "w");
    assert_non_null(f);
    lmf_progress p;
    lmf_progress_start(&p, 0, steps, "windows");
    p.out = f, p.tty = tty;
    for (int i = 1; i <= steps; i++) {
        char status[32];
        snprintf(status, sizeof status, "ppl %d", 100 - i);
        lmf_progress_update(&p, i, status);
    }
    if (finish) lmf_progress_finish(&p);
    fclose(f);
    return buf;
}

static void test_log_one_line(void **state) {
    (void)state;
    const char *out = run(0, 200, 1);
    assert_int_equal(count(out, "\n"), 1); /* the final state only */
    assert_non_null(strstr(out, "200/200 100% | ppl -100 |"));
    assert_null(strstr(out, "\033[K"));
}

static void test_log_nothing_lost(void **state) {
    (void)state;
    /* before finish nothing of a quick job is printed; finish prints the last update, whatever its count */
    assert_int_equal(strlen(run(0, 3, 0)), 0);
    const char *out = run(0, 3, 1);
    assert_non_null(strstr(out, "3/3 100% | ppl 97 |"));
}

static void test_tty_redraws(void **state) {
    (void)state;
    const char *out = run(1, 50, 1);
    /* the last update always redraws; every draw starts with the erase sequence; one newline at the end */
    assert_true(count(out, "\r\033[K") >= 1);
    assert_int_equal(count(out, "\n"), 1);
    assert_non_null(strstr(out, "50/50 100% | ppl 50 |"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_log_one_line),
        cmocka_unit_test(test_log_nothing_lost),
        cmocka_unit_test(test_tty_redraws),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
