/* vec_avx512.c — AVX-512 row kernels (see vec.h). */
#include "kernels/vec.h"
const lmf_vec_ops lmf_vec_avx512 = {0};
