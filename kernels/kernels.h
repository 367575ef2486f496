/*  kernels - the compute ops of lmpress and the table that picks their variants
 *
 *  Every op has a plain scalar reference in kernels/ref/ that defines it; optimized
 *  variants (kernels/cpu/ AVX2/AVX-512, kernels/cuda/) keep the same signature and
 *  are compared with the reference by tests/kernels/test_kernels.c. The table is
 *  chosen once at startup (lmp_kernels_select) and read-only afterwards, so stages
 *  never mention a device. Kernels do no I/O and hold no state.
 */
#ifndef LMP_KERNELS_KERNELS_H
#define LMP_KERNELS_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum lmp_device { LMP_DEVICE_CPU, LMP_DEVICE_CUDA };

/* ---- scalar conversions (exact IEEE round-to-nearest-even) ---------------------- */
float    lmp_f16_to_f32(uint16_t h);
uint16_t lmp_f32_to_f16(float f);
float    lmp_bf16_to_f32(uint16_t h);
uint16_t lmp_f32_to_bf16(float f);

/* ---- op signatures ---------------------------------------------------------------- */

/* Dequantize n elements (n a multiple of the dtype's block) of a row stored as `dtype`
 * (enum lmp_dtype value from worker/model/model.h) into fp32. */
typedef void lmp_dequant_row_fn(int dtype, const void *src, float *dst, int64_t n);

struct lmp_kernels {
    const char         *name;       /* "ref", "avx512", "cuda" */
    enum lmp_device     device;
    lmp_dequant_row_fn *dequant_row;
};

/* References (kernels/ref/). */
lmp_dequant_row_fn lmp_dequant_row_ref;

/* Fill every slot with the reference. */
void lmp_kernels_init_ref(struct lmp_kernels *k);
/* References first, then the best variant this CPU supports for each slot. */
void lmp_kernels_init_best(struct lmp_kernels *k);

/* Select the process-wide table: "ref" or "best" (default when never called).
 * Returns false for an unknown name. Call before starting threads. */
bool lmp_kernels_select(const char *name);
const struct lmp_kernels *lmp_kernels_get(void);

/* CPU feature probes (cpuid). */
bool lmp_cpu_has_avx2(void);     /* AVX2 + FMA */
bool lmp_cpu_has_avx512(void);   /* AVX-512 F + BW + VL */

#endif /* LMP_KERNELS_KERNELS_H */
