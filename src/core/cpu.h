/* cpu.h — which SIMD variant of each kernel runs on this machine.
 *
 * Probed once from cpuid (and the OS's XSAVE state, so AVX-512 is only used where the kernel saves zmm registers).
 * The environment variable LMF_ISA=ref|avx2|avx512 forces a lower level, for tests and benchmarks that compare
 * variants; asking for a level the CPU lacks falls back to the best one it has. LMF_ISA=amx is the avx512 level
 * with AMX tiles allowed (as unset is); LMF_ISA=avx512 keeps the bf16 products off the tiles.
 *
 * The levels are the baselines the variant files are compiled for: AVX2 = AVX2 + FMA, AVX512 = F/DQ/BW/VL. Kernels
 * that need more (VNNI int8 dot products, F16C half conversions, BF16 dot products) ask lmf_cpu_has() as well, so a
 * variant is never dispatched on a CPU that lacks an instruction it uses. */
#ifndef LMF_CORE_CPU_H
#define LMF_CORE_CPU_H

typedef enum { LMF_ISA_REF = 0, LMF_ISA_AVX2 = 1, LMF_ISA_AVX512 = 2 } lmf_isa;

lmf_isa lmf_cpu_best_isa(void);   /* best level the hardware supports, ignoring LMF_ISA */
lmf_isa lmf_cpu_isa(void);        /* level the dispatchers use: min(best, LMF_ISA) */
const char *lmf_isa_name(lmf_isa isa);

/* Single instruction-set extensions. A feature is reported only when both the CPU and the OS support it (the
 * AVX-512 ones need the zmm state enabled in XCR0, the AVX ones the ymm state, AMX the tile state in XCR0; Linux
 * additionally wants arch_prctl(ARCH_REQ_XCOMP_PERM) before a process touches AMX tiles). LMF_ISA does not
 * affect these: they describe the hardware. */
typedef enum {
    LMF_CPU_AVX2,
    LMF_CPU_FMA,
    LMF_CPU_F16C,         /* vcvtph2ps / vcvtps2ph */
    LMF_CPU_AVXVNNI,      /* VEX-encoded vpdpbusd on ymm (AVX-VNNI) */
    LMF_CPU_AVX512F,
    LMF_CPU_AVX512BW,
    LMF_CPU_AVX512VL,
    LMF_CPU_AVX512DQ,
    LMF_CPU_AVX512VNNI,   /* vpdpbusd / vpdpwssd on xmm/ymm/zmm */
    LMF_CPU_AVX512BF16,   /* vdpbf16ps, vcvtne2ps2bf16 */
    LMF_CPU_AVX512FP16,
    LMF_CPU_AMX_INT8,
    LMF_CPU_AMX_BF16,
    LMF_CPU_FEATURE_COUNT
} lmf_cpu_feature;

int lmf_cpu_has(lmf_cpu_feature f);          /* 1 if usable here, else 0 */
/* "GenuineIntel" / "AuthenticAMD" from cpuid leaf 0: the memory systems differ enough that some kernels choose how
 * they read by vendor (kernels/quant.h: lmf_decode_streams). */
typedef enum { LMF_VENDOR_OTHER = 0, LMF_VENDOR_INTEL = 1, LMF_VENDOR_AMD = 2 } lmf_cpu_vendor;
lmf_cpu_vendor lmf_cpu_vendor_get(void);
/* cpuid leaf 1's display family (base + extended): AMD 23 = Zen 1 / Zen 2, 25 = Zen 3 / Zen 4, 26 = Zen 5; Intel 6 */
int lmf_cpu_family(void);
const char *lmf_cpu_feature_name(lmf_cpu_feature f);

/* 1 where the bf16 products may run on AMX tiles: the CPU has AMX-BF16 and AVX512_BF16 (the packing converts with
 * it), Linux granted the tile state (arch_prctl(ARCH_REQ_XCOMP_PERM), asked once here), and LMF_ISA is unset or
 * "amx" (any lower level, avx512 included, turns the tiles off). */
int lmf_cpu_amx(void);
/* 1 where the integer decode products may run on AMX-INT8 tiles: lmf_cpu_amx() and the CPU has AMX-INT8. */
int lmf_cpu_amx_int8(void);

#endif
