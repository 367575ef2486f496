/*  rtn - see rtn.h */
#include "worker/rtn.h"
#include "kernels/kernels.h" /* defines: lmp_f32_to_f16(), lmp_f16_to_f32() */

#include <math.h>

double lmp_rtn_bits_per_weight(int bits, int64_t group) {
    return (double)bits + 32.0 / (double)group;
}

enum lmp_status lmp_rtn_quantize(float *w_hat, uint8_t *q, uint16_t *scale, uint16_t *zero,
                                 const float *w, int64_t n_out, int64_t n_in, int bits,
                                 int64_t group, struct lmp_err *err) {
    if (bits < 1 || bits > 8)
        return lmp_err_set(err, LMP_EINVAL, "RTN bit width %d outside 1..8", bits);
    if (n_out <= 0 || n_in <= 0)
        return lmp_err_set(err, LMP_EINVAL, "invalid layer shape %lld x %lld", (long long)n_out,
                           (long long)n_in);
    if (group <= 0 || n_in % group != 0)
        return lmp_err_set(err, LMP_EINVAL, "RTN group size %lld does not divide n_in %lld",
                           (long long)group, (long long)n_in);
    const int     qmax  = (1 << bits) - 1;
    const int64_t n_grp = n_in / group;
    for (int64_t o = 0; o < n_out; o++)
        for (int64_t j = 0; j < n_grp; j++) {
            const float *wg = w + o * n_in + j * group;
            float        lo = wg[0], hi = wg[0];
            for (int64_t i = 0; i < group; i++) {
                if (!isfinite(wg[i]))
                    return lmp_err_set(err, LMP_EINVAL, "non-finite weight at (%lld, %lld)",
                                       (long long)o, (long long)(j * group + i));
                lo = wg[i] < lo ? wg[i] : lo;
                hi = wg[i] > hi ? wg[i] : hi;
            }
            uint16_t zh = lmp_f32_to_f16(lo), sh = lmp_f32_to_f16((hi - lo) / (float)qmax);
            float    z = lmp_f16_to_f32(zh), s = lmp_f16_to_f32(sh);
            if (scale) scale[o * n_grp + j] = sh;
            if (zero) zero[o * n_grp + j] = zh;
            for (int64_t i = 0; i < group; i++) {
                float v = s > 0.0f ? rintf((wg[i] - z) / s) : 0.0f;
                int   c = v < 0.0f ? 0 : v > (float)qmax ? qmax : (int)v;
                if (q) q[o * n_in + j * group + i] = (uint8_t)c;
                if (w_hat) w_hat[o * n_in + j * group + i] = z + s * (float)c;
            }
        }
    return LMP_OK;
}
