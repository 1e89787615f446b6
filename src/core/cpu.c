/* cpu.c — runtime ISA detection for kernel dispatch (see cpu.h). */
#include "core/cpu.h"

#include <cpuid.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static unsigned long long xgetbv0(void) {
    unsigned eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((unsigned long long)edx << 32) | eax;
}

/* Bit set of lmf_cpu_feature, probed once. */
static unsigned features(void) {
    static int done;
    static unsigned f;
    if (done) return f;
    unsigned a, b, c, d;
    unsigned out = 0;
    if (__get_cpuid(1, &a, &b, &c, &d)) {
        int osxsave = (c >> 27) & 1, fma = (c >> 12) & 1, avx = (c >> 28) & 1, f16c = (c >> 29) & 1;
        if (osxsave && avx) {
            unsigned long long xcr0 = xgetbv0();
            int ymm_ok = (xcr0 & 0x6) == 0x6, zmm_ok = (xcr0 & 0xe6) == 0xe6;
            int amx_ok = ((xcr0 >> 17) & 3) == 3; /* XTILECFG + XTILEDATA */
            if (ymm_ok) {
                if (fma) out |= 1u << LMF_CPU_FMA;
                if (f16c) out |= 1u << LMF_CPU_F16C;
            }
            unsigned max_leaf = __get_cpuid_max(0, NULL);
            if (max_leaf >= 7 && __get_cpuid_count(7, 0, &a, &b, &c, &d)) {
                unsigned l7b = b, l7c = c, l7d = d;
                if (ymm_ok && ((l7b >> 5) & 1)) out |= 1u << LMF_CPU_AVX2;
                if (zmm_ok) {
                    if ((l7b >> 16) & 1) out |= 1u << LMF_CPU_AVX512F;
                    if ((l7b >> 17) & 1) out |= 1u << LMF_CPU_AVX512DQ;
                    if ((l7b >> 30) & 1) out |= 1u << LMF_CPU_AVX512BW;
                    if ((l7b >> 31) & 1) out |= 1u << LMF_CPU_AVX512VL;
                    if ((l7c >> 11) & 1) out |= 1u << LMF_CPU_AVX512VNNI;
                    if ((l7d >> 23) & 1) out |= 1u << LMF_CPU_AVX512FP16;
                }
                if (amx_ok) {
                    if ((l7d >> 22) & 1) out |= 1u << LMF_CPU_AMX_BF16;
                    if ((l7d >> 25) & 1) out |= 1u << LMF_CPU_AMX_INT8;
                }
                /* leaf 7 subleaf 1: AVX-VNNI (eax bit 4), AVX512_BF16 (eax bit 5) */
                if (__get_cpuid_count(7, 1, &a, &b, &c, &d)) {
                    if (ymm_ok && ((a >> 4) & 1)) out |= 1u << LMF_CPU_AVXVNNI;
                    if (zmm_ok && ((a >> 5) & 1)) out |= 1u << LMF_CPU_AVX512BF16;
                }
            }
        }
    }
    f = out;
    done = 1;
    return f;
}

lmf_cpu_vendor lmf_cpu_vendor_get(void) {
    unsigned a, b, c, d;
    char id[13] = {0};
    if (!__get_cpuid(0, &a, &b, &c, &d)) return LMF_VENDOR_OTHER;
    memcpy(id, &b, 4), memcpy(id + 4, &d, 4), memcpy(id + 8, &c, 4);
    return !strcmp(id, "GenuineIntel") ? LMF_VENDOR_INTEL : !strcmp(id, "AuthenticAMD") ? LMF_VENDOR_AMD
                                                                                         : LMF_VENDOR_OTHER;
}

int lmf_cpu_family(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    int base = (a >> 8) & 0xf;
    return base == 0xf ? base + (int)((a >> 20) & 0xff) : base;
}

int lmf_cpu_has(lmf_cpu_feature f) { return f >= 0 && f < LMF_CPU_FEATURE_COUNT && ((features() >> f) & 1u); }

const char *lmf_cpu_feature_name(lmf_cpu_feature f) {
    static const char *const names[LMF_CPU_FEATURE_COUNT] = {
        "avx2", "fma", "f16c", "avx_vnni", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_vnni",
        "avx512_bf16", "avx512_fp16", "amx_int8", "amx_bf16"};
    return f >= 0 && f < LMF_CPU_FEATURE_COUNT ? names[f] : "?";
}

lmf_isa lmf_cpu_best_isa(void) {
    static int cached = -1;
    if (cached >= 0) return (lmf_isa)cached;
    int isa = LMF_ISA_REF;
    if (lmf_cpu_has(LMF_CPU_AVX2) && lmf_cpu_has(LMF_CPU_FMA)) isa = LMF_ISA_AVX2;
    if (isa == LMF_ISA_AVX2 && lmf_cpu_has(LMF_CPU_AVX512F) && lmf_cpu_has(LMF_CPU_AVX512DQ) &&
        lmf_cpu_has(LMF_CPU_AVX512BW) && lmf_cpu_has(LMF_CPU_AVX512VL))
        isa = LMF_ISA_AVX512;
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
        else if (!strcmp(env, "avx512") || !strcmp(env, "amx")) want = LMF_ISA_AVX512;
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

int lmf_cpu_amx(void) {
    static int cached = -1; /* racing first calls decide alike; the permission request is idempotent */
    if (cached >= 0) return cached;
    int ok = lmf_cpu_isa() == LMF_ISA_AVX512 && lmf_cpu_has(LMF_CPU_AMX_BF16) && lmf_cpu_has(LMF_CPU_AVX512BF16);
    const char *env = getenv("LMF_ISA");
    if (env && *env && strcmp(env, "amx")) ok = 0;
#ifdef SYS_arch_prctl
    /* ARCH_REQ_XCOMP_PERM (0x1023) for XFEATURE_XTILEDATA (18): without it the first tile instruction faults */
    if (ok && syscall(SYS_arch_prctl, 0x1023, 18) != 0) ok = 0;
#else
    ok = 0;
#endif
    cached = ok;
    return ok;
}

int lmf_cpu_amx_int8(void) {
    static int cached = -1;
    if (cached < 0) cached = lmf_cpu_amx() && lmf_cpu_has(LMF_CPU_AMX_INT8);
    return cached;
}
