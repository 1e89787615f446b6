/* vec.c — picks the row-kernel table for this CPU once (see vec.h). */
#include "kernels/vec.h"
#include "core/cpu.h"

const lmf_vec_ops *lmf_vec(void) {
    static const lmf_vec_ops *ops;
    if (!ops) {
        lmf_isa isa = lmf_cpu_isa();
        ops = isa == LMF_ISA_AVX512 ? &lmf_vec_avx512 : isa == LMF_ISA_AVX2 ? &lmf_vec_avx2 : &lmf_vec_ref;
        /* the AVX2 table widens f16 KV caches with F16C (every AVX2 CPU made has it; a VM may hide it) */
        if (ops == &lmf_vec_avx2 && !lmf_cpu_has(LMF_CPU_F16C)) ops = &lmf_vec_ref;
        if (!ops->name) ops = &lmf_vec_ref; /* variant not built in */
    }
    return ops;
}
