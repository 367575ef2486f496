/*  rope - see rope.h */
#include "model/rope.h"

#include <assert.h>
#include <math.h>

static const double PI = 3.14159265358979323846;

bool lmp_rope_block_is_local(const struct lmp_config *c, int32_t block) {
    return c->swa_pattern > 0 && c->sliding_window > 0 && (block + 1) % c->swa_pattern != 0;
}

int32_t lmp_rope_n_dims(const struct lmp_config *c) {
    return c->rope_dims > 0 ? c->rope_dims : c->head_dim;
}

/* YaRN's d(r): the dimension whose wavelength makes r rotations over orig positions. */
static double yarn_corr_dim(double r, double dims, double orig, double theta) {
    return dims * log(orig / (r * 2.0 * PI)) / (2.0 * log(theta));
}

void lmp_rope_freqs(const struct lmp_config *c, bool local, double *inv_freq, double *mscale) {
    assert(c && inv_freq && mscale);
    const int32_t dims = lmp_rope_n_dims(c), half = dims / 2;
    const double  theta = local && c->rope_theta_local > 0 ? c->rope_theta_local : c->rope_theta;
    *mscale             = 1.0;
    for (int32_t i = 0; i < half; i++) inv_freq[i] = pow(theta, -2.0 * (double)i / (double)dims);
    if (local) return;
    if (c->rope_freq_factors)
        for (int32_t i = 0; i < half; i++) inv_freq[i] /= (double)c->rope_freq_factors[i];
    const double factor = c->rope_factor;
    switch (c->rope_scaling) {
    case LMP_ROPE_SCALING_NONE:
        break;
    case LMP_ROPE_SCALING_LINEAR:
        for (int32_t i = 0; i < half; i++) inv_freq[i] /= factor;
        break;
    case LMP_ROPE_SCALING_LLAMA3: {
        const double orig = c->rope_orig_max_seq, lo = c->rope_low_freq_factor,
                     hi = c->rope_high_freq_factor;
        for (int32_t i = 0; i < half; i++) {
            const double wavelen = 2.0 * PI / inv_freq[i];
            if (wavelen > orig / lo) {
                inv_freq[i] /= factor;
            } else if (wavelen >= orig / hi) { /* medium: neither above nor below */
                const double s = (orig / wavelen - lo) / (hi - lo);
                inv_freq[i]    = (1.0 - s) * inv_freq[i] / factor + s * inv_freq[i];
            }
        }
        break;
    }
    case LMP_ROPE_SCALING_YARN: {
        const double orig = c->rope_orig_max_seq;
        double       low  = floor(yarn_corr_dim(c->rope_beta_fast, dims, orig, theta));
        double       high = ceil(yarn_corr_dim(c->rope_beta_slow, dims, orig, theta));
        low               = low > 0 ? low : 0;
        high              = high < dims - 1 ? high : dims - 1;
        if (high == low) high += 0.001;
        for (int32_t i = 0; i < half; i++) {
            double ramp = ((double)i - low) / (high - low);
            ramp        = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
            inv_freq[i] = inv_freq[i] / factor * ramp + inv_freq[i] * (1.0 - ramp);
        }
        *mscale = c->rope_attn_factor > 0 ? c->rope_attn_factor
                  : factor <= 1           ? 1.0
                                          : 0.1 * log(factor) + 1.0;
        break;
    }
    }
}
