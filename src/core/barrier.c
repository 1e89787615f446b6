/* barrier.c — see barrier.h. A centralized barrier with a generation counter: the last thread to arrive resets the
 * count and bumps the generation; the others wait for the generation to change, spinning first and then in
 * FUTEX_WAIT (which returns at once if the generation changed in between, so no wake-up is lost). */
#include "core/barrier.h"

#include <linux/futex.h>
#include <limits.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

static long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000L + t.tv_nsec;
}

void lmf_barrier_init(lmf_barrier *b) {
    __atomic_store_n(&b->arrived, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&b->gen, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&b->sleepers, 0, __ATOMIC_SEQ_CST);
}

void lmf_barrier_wait(lmf_barrier *b, int n) {
    if (n <= 1) {
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        return;
    }
    int gen = __atomic_load_n(&b->gen, __ATOMIC_ACQUIRE);
    if (__atomic_add_fetch(&b->arrived, 1, __ATOMIC_ACQ_REL) == n) {
        __atomic_store_n(&b->arrived, 0, __ATOMIC_RELAXED); /* ordered before the release of gen below */
        __atomic_store_n(&b->gen, gen + 1, __ATOMIC_SEQ_CST);
        if (__atomic_load_n(&b->sleepers, __ATOMIC_SEQ_CST))
            syscall(SYS_futex, &b->gen, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
        return;
    }
    long t0 = 0;
    for (int i = 0; __atomic_load_n(&b->gen, __ATOMIC_ACQUIRE) == gen; i++) {
        if ((i & 63) == 63) {
            long t = now_ns();
            if (!t0) t0 = t;
            else if (t - t0 > LMF_BARRIER_SPIN_NS) {
                __atomic_add_fetch(&b->sleepers, 1, __ATOMIC_SEQ_CST);
                /* sleeps only while gen is still the old value */
                syscall(SYS_futex, &b->gen, FUTEX_WAIT_PRIVATE, gen, NULL, NULL, 0);
                __atomic_sub_fetch(&b->sleepers, 1, __ATOMIC_SEQ_CST);
                continue;
            }
        }
        CPU_RELAX();
    }
}
