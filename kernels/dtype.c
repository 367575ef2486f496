/*  dtype - see dtype.h */
#include "kernels/dtype.h"

static const struct {
    const char *name;
    int64_t     block, bytes;
} dtypes[LMP_DTYPE_COUNT] = {
    [LMP_DTYPE_F32] = {"F32", 1, 4},     [LMP_DTYPE_F16] = {"F16", 1, 2},
    [LMP_DTYPE_BF16] = {"BF16", 1, 2},   [LMP_DTYPE_Q8_0] = {"Q8_0", 32, 34},
    [LMP_DTYPE_Q4_0] = {"Q4_0", 32, 18}, [LMP_DTYPE_Q4_1] = {"Q4_1", 32, 20},
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
