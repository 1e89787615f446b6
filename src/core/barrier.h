/* barrier.h — a thread barrier that spins briefly, then sleeps.
 *
 * Why not `#pragma omp barrier`: libgomp's waiters spin for ~300,000 pauses (~15 ms on recent Intel cores) before
 * sleeping. Decode meets ~150 barriers per token, and when another process holds one of the cores, the thread
 * that shares it is descheduled for whole time slices while its partner spins on a core the kernel therefore never
 * sees idle, so it never moves the waiting thread there: SmolLM2 on 2 threads fell from ~300 to 0.8 tokens/s.
 * Here a waiter spins for at most LMF_BARRIER_SPIN_NS (a normal wait between two balanced shares is a few
 * microseconds, so the fast path is unchanged) and then sleeps on a futex, which frees its core. */
#ifndef LMF_CORE_BARRIER_H
#define LMF_CORE_BARRIER_H

#define LMF_BARRIER_SPIN_NS 50000

typedef struct {
    int arrived;  /* atomics: arrivals in this generation */
    int gen;      /* generation: changes when the last thread arrives (the futex word) */
    int sleepers; /* threads in futex_wait, so that the last arrival only makes the syscall when needed */
} lmf_barrier;

void lmf_barrier_init(lmf_barrier *b);
/* returns when all n threads (each passing the same n) have called it; it can be met any number of times in a row,
 * like an OpenMP barrier, and the writes of every thread before it are visible to every thread after it */
void lmf_barrier_wait(lmf_barrier *b, int n);

#endif
