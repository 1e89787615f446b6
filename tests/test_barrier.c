/* test_barrier.c — core/barrier.h: every thread sees every other thread's writes from before a barrier, over many
 * rounds in a row, for team sizes 1..4 (the spin path), and with a thread that sleeps past the spin time before
 * arriving (the futex path: the others must sleep and be woken, not deadlock or leave early). */
#include "test_util.h"

#include "core/barrier.h"

#include <omp.h>
#include <time.h>

static void rounds(int nth, int n_rounds, int sleeper) {
    lmf_barrier b;
    lmf_barrier_init(&b);
    int slots[8] = {0}, errors = 0;
#pragma omp parallel num_threads(nth) reduction(+ : errors)
    {
        int t = omp_get_thread_num(), n = omp_get_num_threads();
        for (int r = 1; r <= n_rounds; r++) {
            if (sleeper && t == n - 1 && r % 8 == 0) nanosleep(&(struct timespec){0, 200000}, NULL); /* 4x the spin */
            __atomic_store_n(&slots[t], r, __ATOMIC_RELAXED);
            lmf_barrier_wait(&b, n);
            for (int u = 0; u < n; u++) errors += __atomic_load_n(&slots[u], __ATOMIC_RELAXED) != r;
            lmf_barrier_wait(&b, n); /* nobody writes round r + 1 before everyone has read round r */
        }
    }
    if (errors) fail_msg("%d threads, %d rounds%s: %d stale reads", nth, n_rounds, sleeper ? ", one sleeper" : "",
                         errors);
}

static void test_spin(void **state) {
    (void)state;
    for (int nth = 1; nth <= 4; nth++) rounds(nth, 3000, 0);
}

static void test_sleepers(void **state) {
    (void)state;
    for (int nth = 2; nth <= 3; nth++) rounds(nth, 200, 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spin),
        cmocka_unit_test(test_sleepers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
