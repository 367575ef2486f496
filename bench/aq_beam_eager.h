/*  aq_beam_eager - the previous AVX-512 beam search, bench_kernels' baseline (not in the
 *  kernel library; same signature and search as the table's aq_beam). Call only where
 *  lmp_cpu_has_avx512().
 */
#ifndef LMP_BENCH_AQ_BEAM_EAGER_H
#define LMP_BENCH_AQ_BEAM_EAGER_H

#include "kernels/kernels.h" /* defines: lmp_aq_beam_fn */

lmp_aq_beam_fn lmp_aq_beam_eager_avx512;

#endif /* LMP_BENCH_AQ_BEAM_EAGER_H */
