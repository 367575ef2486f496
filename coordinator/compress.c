/*  compress - see compress.h */
#include "coordinator/compress.h"
#include "kernels/kernels.h" /* defines: lmp_f16_to_f32 */

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The artifact form of a task result. Arrays are allocated into *l (release it). */
static enum lmp_status result_to_layer(struct lmp_art_layer *l, const struct lmp_compress_result *r,
                                       const char *name, struct lmp_err *err) {
    memset(l, 0, sizeof(*l));
    snprintf(l->name, sizeof(l->name), "%s", name);
    l->n_out = r->n_out;
    l->n_in  = r->n_in;
    l->stats = (struct lmp_art_stats){.rel_err_before  = r->rel_err_before,
                                      .rel_err_after   = r->rel_err_after,
                                      .bits_per_weight = r->bits_per_weight,
                                      .seconds         = r->seconds,
                                      .steps           = r->steps};
    if (r->method == LMP_COMPRESS_AQLM) {
        const struct lmp_aq_layer *q = &r->aq;
        l->codec                     = LMP_ART_CODEC_AQ;
        l->M = q->sc.M, l->B = q->sc.B, l->g = q->sc.g;
        const size_t nc = (size_t)(r->n_out * (r->n_in / q->sc.g) * q->sc.M);
        const size_t nb = (size_t)q->sc.M * (size_t)q->sc.K * (size_t)q->sc.g;
        l->codes        = malloc(nc * sizeof(uint16_t));
        l->codebooks    = malloc(nb * sizeof(float));
        l->scales       = malloc((size_t)r->n_out * sizeof(float));
        if (l->codes == NULL || l->codebooks == NULL || l->scales == NULL)
            return lmp_err_set(err, LMP_ENOMEM, "out of memory storing '%s'", name);
        memcpy(l->codes, q->codes, nc * sizeof(uint16_t));
        memcpy(l->codebooks, q->codebooks, nb * sizeof(float));
        memcpy(l->scales, q->scales, (size_t)r->n_out * sizeof(float));
        return LMP_OK;
    }
    return lmp_err_set(err, LMP_EINVAL, "layer '%s': not an AQ result", name);
}

/* RTN w_hat = z + s q  ->  artifact w = scale * (q - zero) with scale = s, zero = -z / s;
 * a constant group (s = 0, every q = 0) stores scale = z, zero = -1. */
static enum lmp_status rtn_to_layer(struct lmp_art_layer *l, const struct lmp_compress_result *r,
                                    int bits, int64_t group, const char *name,
                                    struct lmp_err *err) {
    memset(l, 0, sizeof(*l));
    snprintf(l->name, sizeof(l->name), "%s", name);
    l->codec = LMP_ART_CODEC_RTN;
    l->n_out = r->n_out, l->n_in = r->n_in, l->M = 1, l->B = bits, l->g = (int32_t)group;
    l->stats        = (struct lmp_art_stats){.rel_err_before  = r->rel_err_before,
                                             .rel_err_after   = r->rel_err_after,
                                             .bits_per_weight = r->bits_per_weight,
                                             .seconds         = r->seconds,
                                             .steps           = r->steps};
    const int64_t n = r->n_out * r->n_in, n_s = r->n_out * (r->n_in / group);
    l->codes  = malloc((size_t)n * sizeof(uint16_t));
    l->scales = malloc((size_t)n_s * sizeof(float));
    l->zeros  = malloc((size_t)n_s * sizeof(float));
    if (l->codes == NULL || l->scales == NULL || l->zeros == NULL)
        return lmp_err_set(err, LMP_ENOMEM, "out of memory storing '%s'", name);
    for (int64_t i = 0; i < n; i++) l->codes[i] = r->rtn_q[i];
    for (int64_t j = 0; j < n_s; j++) {
        const float s = lmp_f16_to_f32(r->rtn_scale[j]), z = lmp_f16_to_f32(r->rtn_zero[j]);
        if (s > 0.0f)
            l->scales[j] = s, l->zeros[j] = -z / s;
        else
            l->scales[j] = z, l->zeros[j] = -1.0f;
    }
    return LMP_OK;
}

enum lmp_status lmp_compress_result_to_layer(struct lmp_art_layer             *l,
                                             const struct lmp_compress_result *r,
                                             const struct lmp_compress_spec *spec, const char *name,
                                             struct lmp_err *err) {
    assert(l && r && spec && name);
    return r->method == LMP_COMPRESS_RTN
               ? rtn_to_layer(l, r, spec->rtn_bits, spec->rtn_group, name, err)
               : result_to_layer(l, r, name, err);
}
