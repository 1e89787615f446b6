/* vec_avx2.c — AVX2+FMA row kernels (see vec.h). */
#include "kernels/vec.h"
const lmf_vec_ops lmf_vec_avx2 = {0};
