/*  rtn - round-to-nearest scalar quantization, the baseline every compressed layer is
 *  compared with
 *
 *  Each row is cut into groups of G consecutive inputs; a group stores N-bit unsigned
 *  codes q and an fp16 scale and zero (asymmetric min/max):
 *      scale = (max - min) / (2^N - 1),  zero = min,  w_hat = zero + scale * q,
 *      q = clamp(round((w - zero) / scale), 0, 2^N - 1)
 *  with scale and zero rounded to fp16 first, so w_hat is exactly what would be stored.
 *  Bits per weight: N + 32/G. No state, no I/O.
 */
#ifndef LMP_WORKER_RTN_H
#define LMP_WORKER_RTN_H

#include <stdint.h>
#include "base/status.h" /* defines: enum lmp_status, struct lmp_err */

/* N + 32 / G (fp16 scale and zero per group). */
double lmp_rtn_bits_per_weight(int bits, int64_t group);

/* Quantize w (n_out, n_in). Outputs, each optional (NULL): w_hat (n_out, n_in) the
 * dequantized weights, q (n_out, n_in) codes, scale and zero (n_out, n_in/G) as fp16 bits.
 * RET LMP_OK, or LMP_EINVAL (bits outside 1..8, G <= 0, G not dividing n_in, bad shape,
 * non-finite weight) with err set. */
enum lmp_status lmp_rtn_quantize(float *w_hat, uint8_t *q, uint16_t *scale, uint16_t *zero,
                                 const float *w, int64_t n_out, int64_t n_in, int bits,
                                 int64_t group, struct lmp_err *err);

#endif /* LMP_WORKER_RTN_H */
