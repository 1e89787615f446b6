/* cpu.h — which SIMD variant of each kernel runs on this machine.
 *
 * Probed once from cpuid (and the OS's XSAVE state, so AVX-512 is only used where the kernel saves zmm registers).
 * The environment variable LMF_ISA=ref|avx2|avx512 forces a lower level, for tests and benchmarks that compare
 * variants; asking for a level the CPU lacks falls back to the best one it has. */
#ifndef LMF_CORE_CPU_H
#define LMF_CORE_CPU_H

typedef enum { LMF_ISA_REF = 0, LMF_ISA_AVX2 = 1, LMF_ISA_AVX512 = 2 } lmf_isa;

lmf_isa lmf_cpu_best_isa(void);   /* best level the hardware supports, ignoring LMF_ISA */
lmf_isa lmf_cpu_isa(void);        /* level the dispatchers use: min(best, LMF_ISA) */
const char *lmf_isa_name(lmf_isa isa);

#endif
