/*  cpu_variants - declarations of the optimized CPU kernels (same signatures as the
 *  references in kernels/kernels.h). Each file in kernels/cpu/ is compiled with the
 *  instruction-set flags its suffix names and is only called after a cpuid check.
 */
#ifndef LMP_KERNELS_CPU_VARIANTS_H
#define LMP_KERNELS_CPU_VARIANTS_H

#include "kernels/kernels.h"

lmp_dequant_row_fn lmp_dequant_row_avx512;   /* dequant_avx512.c (+F16C) */

#endif /* LMP_KERNELS_CPU_VARIANTS_H */
