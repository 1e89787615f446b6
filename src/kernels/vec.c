/* vec.c — picks the row-kernel table for this CPU once (see vec.h). */
#include "kernels/vec.h"
#include "core/cpu.h"

const lmf_vec_ops *lmf_vec(void) {
    static const lmf_vec_ops *ops;
    if (!ops) {
        lmf_isa isa = lmf_cpu_isa();
        ops = isa == LMF_ISA_AVX512 ? &lmf_vec_avx512 : isa == LMF_ISA_AVX2 ? &lmf_vec_avx2 : &lmf_vec_ref;
        if (!ops->name) ops = &lmf_vec_ref; /* variant not built in */
    }
    return ops;
}
