/* test_omp_spin.c — lmf_bound_omp_spin: on a busy machine (forced with LMF_OMP_BUSY=1) the process starts itself
 * again once with GOMP_SPINCOUNT bounded and the same arguments; on an idle one (LMF_OMP_BUSY=0), or when the user
 * chose an OpenMP wait setting, it returns without restarting. */
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
    assert_int_equal(argc_seen, 3); /* the same argv after the exec */
    assert_string_equal(argv_seen[1], "first arg");
    assert_string_equal(argv_seen[2], "--second");
}

static void test_idle_machine_not_restarted(void **s) {
    if (user_set) skip();
    /* as if this were a fresh start on an idle machine: an exec now would start the program in phase "idle" */
    unsetenv("LMF_OMP_RESTARTED"), unsetenv("GOMP_SPINCOUNT");
    setenv("LMF_OMP_BUSY", "0", 1), setenv("LMF_TEST_PHASE", "idle", 1);
    lmf_bound_omp_spin(argv_seen);
    assert_null(getenv("GOMP_SPINCOUNT"));
    /* and a user's own setting is kept even on a busy machine */
    setenv("LMF_OMP_BUSY", "1", 1), setenv("OMP_WAIT_POLICY", "active", 1);
    lmf_bound_omp_spin(argv_seen);
    assert_null(getenv("GOMP_SPINCOUNT"));
}

int main(int argc, char **argv) {
    const char *phase = getenv("LMF_TEST_PHASE");
    if (phase && !strcmp(phase, "idle")) {
        fprintf(stderr, "test_omp_spin: restarted on an idle machine\n");
        return 1;
    }
    user_set = !getenv("LMF_OMP_RESTARTED") && (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT"));
    if (argc == 1 && !getenv("LMF_OMP_RESTARTED") && !user_set) { /* first start: run again with two arguments */
        char *args[] = {argv[0], "first arg", "--second", NULL};
        setenv("LMF_OMP_BUSY", "1", 1);
        lmf_bound_omp_spin(args);
        fprintf(stderr, "test_omp_spin: lmf_bound_omp_spin returned instead of starting the process again\n");
        return 1;
    }
    argc_seen = argc, argv_seen = argv;
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_restarted_with_bounded_spin),
                                       cmocka_unit_test(test_idle_machine_not_restarted)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
