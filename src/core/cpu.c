/* cpu.c — runtime ISA detection for kernel dispatch (see cpu.h). */
#include "core/cpu.h"

#include <cpuid.h>
#include <stdlib.h>
#include <string.h>

static unsigned long long xgetbv0(void) {
    unsigned eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((unsigned long long)edx << 32) | eax;
}

lmf_isa lmf_cpu_best_isa(void) {
    static int cached = -1;
    if (cached >= 0) return (lmf_isa)cached;
    unsigned a, b, c, d;
    int isa = LMF_ISA_REF;
    if (__get_cpuid(1, &a, &b, &c, &d)) {
        int osxsave = (c >> 27) & 1, fma = (c >> 12) & 1, avx = (c >> 28) & 1;
        if (osxsave && avx && fma) {
            unsigned long long xcr0 = xgetbv0();
            int ymm_ok = (xcr0 & 0x6) == 0x6, zmm_ok = (xcr0 & 0xe6) == 0xe6;
            if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
                int avx2 = (b >> 5) & 1;
                int avx512f = (b >> 16) & 1, avx512dq = (b >> 17) & 1, avx512bw = (b >> 30) & 1,
                    avx512vl = (b >> 31) & 1;
                if (ymm_ok && avx2) isa = LMF_ISA_AVX2;
                if (zmm_ok && avx2 && avx512f && avx512dq && avx512bw && avx512vl) isa = LMF_ISA_AVX512;
            }
        }
    }
    cached = isa;
    return (lmf_isa)isa;
}

lmf_isa lmf_cpu_isa(void) {
    static int cached = -1;
    if (cached >= 0) return (lmf_isa)cached;
    lmf_isa best = lmf_cpu_best_isa(), want = best;
    const char *env = getenv("LMF_ISA");
    if (env && *env) {
        if (!strcmp(env, "ref") || !strcmp(env, "scalar")) want = LMF_ISA_REF;
        else if (!strcmp(env, "avx2")) want = LMF_ISA_AVX2;
        else if (!strcmp(env, "avx512")) want = LMF_ISA_AVX512;
    }
    cached = want < best ? want : best;
    return (lmf_isa)cached;
}

const char *lmf_isa_name(lmf_isa isa) {
    switch (isa) {
    case LMF_ISA_AVX512: return "avx512";
    case LMF_ISA_AVX2: return "avx2";
    default: return "ref";
    }
}
