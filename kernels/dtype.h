/*  dtype - element types of stored tensors (the kernels' dequantization input)
 *
 *  The kernels own this enum: dequant_row takes one of these values, and the model
 *  readers map each file format's type codes onto it.
 */
#ifndef LMP_KERNELS_DTYPE_H
#define LMP_KERNELS_DTYPE_H

#include <stdint.h>

enum lmp_dtype {
    LMP_DTYPE_F32,
    LMP_DTYPE_F16,
    LMP_DTYPE_BF16,
    LMP_DTYPE_Q8_0, /* ggml: blocks of 32: f16 d, int8 q[32]; x = d*q */
    LMP_DTYPE_Q4_0, /* ggml: blocks of 32: f16 d, 16 bytes of nibbles; x = d*(q-8) */
    LMP_DTYPE_Q4_1, /* ggml: blocks of 32: f16 d, f16 m, 16 bytes of nibbles; x = d*q + m */
    LMP_DTYPE_Q5_0, /* ggml: blocks of 32: f16 d, u32 qh, 16 bytes of nibbles; x = d*(q-16) */
    LMP_DTYPE_Q5_1, /* ggml: blocks of 32: f16 d, f16 m, u32 qh, 16 bytes of nibbles; x = d*q + m */
    /* ggml K-quants: super-blocks of 256 in sub-blocks of 16 or 32 with their own scales
     * (layouts and formulas: kernels/ref/dequant_ref.c) */
    LMP_DTYPE_Q2_K, /* 84 bytes: 2-bit q, 4-bit scale and min per 16, f16 d, dmin */
    LMP_DTYPE_Q3_K, /* 110 bytes: 3-bit q, 6-bit signed scale per 16, f16 d */
    LMP_DTYPE_Q4_K, /* 144 bytes: 4-bit q, 6-bit scale and min per 32, f16 d, dmin */
    LMP_DTYPE_Q5_K, /* 176 bytes: 5-bit q, 6-bit scale and min per 32, f16 d, dmin */
    LMP_DTYPE_Q6_K, /* 210 bytes: 6-bit signed q, int8 scale per 16, f16 d */
    LMP_DTYPE_COUNT
};

/* "F32", "Q4_1", ... ("?" for a value out of range) */
const char *lmp_dtype_name(enum lmp_dtype t);
/* Elements per block (1 for plain types, 32 for the ggml quants, 256 for the K-quants). */
int64_t lmp_dtype_block(enum lmp_dtype t);
/* Bytes per block. */
int64_t lmp_dtype_block_bytes(enum lmp_dtype t);

#endif /* LMP_KERNELS_DTYPE_H */
