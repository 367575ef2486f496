/*  rope - the rotary position embedding's frequencies for every RoPE variant
 *
 *  RoPE rotates pairs of a head's first rope_dims dimensions (which pairs: cfg.rope) by
 *  the angle pos * inv_freq[i], i < rope_dims / 2, and multiplies the rotated pair by
 *  mscale (1 except YaRN). The plain frequencies are
 *      inv_freq[i] = theta^(-2i / rope_dims)
 *  and the variants, with the formulas of Hugging Face's modeling_rope_utils (which the
 *  GGUF converters reproduce), change them for the global layers only:
 *    - rope_freq_factors (GGUF rope_freqs): inv_freq[i] /= factors[i]
 *    - linear:  inv_freq[i] /= factor
 *    - llama3:  wavelen = 2 pi / inv_freq; wavelen > orig / low_ff: inv_freq / factor;
 *               wavelen < orig / high_ff: unchanged; between, with
 *               s = (orig / wavelen - low_ff) / (high_ff - low_ff):
 *               (1 - s) inv_freq / factor + s inv_freq
 *    - yarn:    d(r) = rope_dims ln(orig / (2 pi r)) / (2 ln theta);
 *               low = max(floor(d(beta_fast)), 0), high = min(ceil(d(beta_slow)), rope_dims - 1);
 *               ramp(i) = clamp((i - low) / (high - low), 0, 1) (high += 0.001 when equal);
 *               inv_freq[i] = inv_freq[i] / factor * ramp(i) + inv_freq[i] * (1 - ramp(i));
 *               mscale = attn_factor, or 0.1 ln(factor) + 1 (1 when factor <= 1)
 *  Local (sliding-window) layers of a model with swa_pattern use rope_theta_local and no
 *  scaling, as Gemma 3 does.
 */
#ifndef LMP_MODEL_ROPE_H
#define LMP_MODEL_ROPE_H

#include <stdbool.h>
#include <stdint.h>
#include "model/model.h" /* defines: struct lmp_config */

/* Whether block b is a local (sliding-window) layer: cfg.swa_pattern > 0,
 * cfg.sliding_window > 0 and (b + 1) % swa_pattern != 0. */
bool lmp_rope_block_is_local(const struct lmp_config *c, int32_t block);

/* Rotated dimensions per head: cfg.rope_dims, or head_dim when 0. */
int32_t lmp_rope_n_dims(const struct lmp_config *c);

/* inv_freq (lmp_rope_n_dims(c) / 2) out: the angle per position of each pair, for a
 * local (true) or global layer; *mscale the factor of the rotated values. */
void lmp_rope_freqs(const struct lmp_config *c, bool local, double *inv_freq, double *mscale);

#endif /* LMP_MODEL_ROPE_H */
