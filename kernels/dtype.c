/*  dtype - see dtype.h */
#include "kernels/dtype.h"

static const struct {
    const char *name;
    int64_t     block, bytes;
} dtypes[LMP_DTYPE_COUNT] = {
    [LMP_DTYPE_F32] = {"F32", 1, 4},       [LMP_DTYPE_F16] = {"F16", 1, 2},
    [LMP_DTYPE_BF16] = {"BF16", 1, 2},     [LMP_DTYPE_Q8_0] = {"Q8_0", 32, 34},
    [LMP_DTYPE_Q4_0] = {"Q4_0", 32, 18},   [LMP_DTYPE_Q4_1] = {"Q4_1", 32, 20},
    [LMP_DTYPE_Q5_0] = {"Q5_0", 32, 22},   [LMP_DTYPE_Q5_1] = {"Q5_1", 32, 24},
    [LMP_DTYPE_Q2_K] = {"Q2_K", 256, 84},  [LMP_DTYPE_Q3_K] = {"Q3_K", 256, 110},
    [LMP_DTYPE_Q4_K] = {"Q4_K", 256, 144}, [LMP_DTYPE_Q5_K] = {"Q5_K", 256, 176},
    [LMP_DTYPE_Q6_K] = {"Q6_K", 256, 210},
};

const char *lmp_dtype_name(enum lmp_dtype t) {
    return (unsigned)t < LMP_DTYPE_COUNT ? dtypes[t].name : "?";
}
int64_t lmp_dtype_block(enum lmp_dtype t) {
    return dtypes[t].block;
}
int64_t lmp_dtype_block_bytes(enum lmp_dtype t) {
    return dtypes[t].bytes;
}
