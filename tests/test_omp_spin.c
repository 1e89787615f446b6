/* test_omp_spin.c — lmf_bound_omp_spin: the process starts itself again once with GOMP_SPINCOUNT bounded and the
 * same arguments, and leaves a user's own OpenMP wait settings alone. */
#include "test_util.h"

#include "lmforge.h"

#include <stdlib.h>
#include <string.h>

static int user_set, argc_seen;
static char **argv_seen;

static void test_restarted_with_bounded_spin(void **s) {
    if (user_set) skip(); /* the environment chose a policy itself: the call must have left it alone */
    assert_non_null(getenv("LMF_OMP_RESTARTED"));
    assert_string_equal(getenv("GOMP_SPINCOUNT"), "1000");
    /* the same argv after the exec */
    assert_int_equal(argc_seen, 3);
    assert_string_equal(argv_seen[1], "first arg");
    assert_string_equal(argv_seen[2], "--second");
}

static void test_user_setting_kept(void **s) {
    /* a second call in the restarted process is a no-op (no exec loop) */
    lmf_bound_omp_spin(argv_seen);
    if (!user_set) assert_string_equal(getenv("GOMP_SPINCOUNT"), "1000");
}

int main(int argc, char **argv) {
    user_set = !getenv("LMF_OMP_RESTARTED") && (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT"));
    if (argc == 1 && !getenv("LMF_OMP_RESTARTED") && !user_set) { /* first start: run again with two arguments */
        char *args[] = {argv[0], "first arg", "--second", NULL};
        lmf_bound_omp_spin(args);
        fail_msg("lmf_bound_omp_spin returned instead of starting the process again");
    }
    argc_seen = argc, argv_seen = argv;
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_restarted_with_bounded_spin),
                                       cmocka_unit_test(test_user_setting_kept)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
