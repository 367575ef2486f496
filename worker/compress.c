/*  compress - see compress.h */
#define _POSIX_C_SOURCE 200809L
#include "worker/compress.h"
#include "kernels/kernels.h" /* defines: lmp_kernels_get(), aq_decode, lmp_f16_to_f32 */
#include "worker/rtn.h"      /* defines: lmp_rtn_quantize */

#include <assert.h>
#include <fnmatch.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void lmp_compress_spec_init(struct lmp_compress_spec *spec) {
    assert(spec);
    memset(spec, 0, sizeof(*spec));
    spec->method = LMP_COMPRESS_AQLM;
    spec->sc     = (struct lmp_aq_scheme){.M = 2, .B = 8, .g = 8, .K = 256};
    lmp_aq_opts_init(&spec->aq);
    spec->rtn_bits  = 4;
    spec->rtn_group = 128;
}

void lmp_compress_spec_name(const struct lmp_compress_spec *spec, char *buf, size_t cap) {
    if (spec->method == LMP_COMPRESS_RTN)
        snprintf(buf, cap, "rtn%dg%lld", spec->rtn_bits, (long long)spec->rtn_group);
    else
        snprintf(buf, cap, "%dx%dg%d", spec->sc.M, spec->sc.B, spec->sc.g);
}

double lmp_compress_bits_per_weight(const struct lmp_compress_spec *spec, int64_t n_out,
                                    int64_t n_in) {
    if (spec->method == LMP_COMPRESS_RTN)
        return lmp_rtn_bits_per_weight(spec->rtn_bits, spec->rtn_group);
    return lmp_aq_bits_per_weight(&spec->sc, n_out, n_in);
}

enum lmp_status lmp_compress_check(const struct lmp_compress_spec *spec, const char *name,
                                   int64_t n_out, int64_t n_in, struct lmp_err *err) {
    char sname[64];
    lmp_compress_spec_name(spec, sname, sizeof(sname));
    const int64_t g = spec->method == LMP_COMPRESS_RTN ? spec->rtn_group : spec->sc.g;
    if (n_out <= 0 || n_in <= 0 || g <= 0 || n_in % g != 0)
        return lmp_err_set(err, LMP_EINVAL,
                           "scheme %s does not fit layer '%s' (%lld x %lld): "
                           "group size %lld does not divide n_in %lld (use --keep to leave it "
                           "unquantized, or a smaller group)",
                           sname, name, (long long)n_out, (long long)n_in, (long long)g,
                           (long long)n_in);
    return LMP_OK;
}

void lmp_compress_result_release(struct lmp_compress_result *res) {
    if (res == NULL) return;
    lmp_aq_layer_release(&res->aq);
    free(res->rtn_q);
    free(res->rtn_scale);
    free(res->rtn_zero);
    free(res->w_hat);
    memset(res, 0, sizeof(*res));
}

enum lmp_status lmp_compress_linear(struct lmp_compress_result     *res,
                                    const struct lmp_compress_spec *spec, const char *name,
                                    const float *w, const float *h, int64_t n_out, int64_t n_in,
                                    uint64_t seed, struct lmp_err *err) {
    assert(res && spec && name && w);
    memset(res, 0, sizeof(*res));
    res->method        = spec->method;
    res->n_out         = n_out;
    res->n_in          = n_in;
    const double    t0 = now_s();
    enum lmp_status st;
    struct lmp_err  e = {0};

    if ((st = lmp_compress_check(spec, name, n_out, n_in, err))) return st;
    if (h == NULL && spec->method != LMP_COMPRESS_RTN)
        return lmp_err_set(err, LMP_EINVAL, "layer '%s': AQLM needs calibration statistics", name);
    if (h != NULL && (st = lmp_aq_check_h(h, n_in, &e)) != LMP_OK)
        return lmp_err_set(err, st, "layer '%s': calibration Gram matrix unusable: %s", name,
                           e.msg);
    res->w_hat = malloc((size_t)(n_out * n_in) * sizeof(float));
    if (res->w_hat == NULL) return lmp_err_set(err, LMP_ENOMEM, "layer '%s': out of memory", name);

    if (spec->method == LMP_COMPRESS_RTN) {
        const int64_t n_grp = n_in / spec->rtn_group;
        res->rtn_q          = malloc((size_t)(n_out * n_in));
        res->rtn_scale      = malloc((size_t)(n_out * n_grp) * sizeof(uint16_t));
        res->rtn_zero       = malloc((size_t)(n_out * n_grp) * sizeof(uint16_t));
        if (res->rtn_q == NULL || res->rtn_scale == NULL || res->rtn_zero == NULL)
            return lmp_err_set(err, LMP_ENOMEM, "layer '%s': out of memory", name);
        if ((st = lmp_rtn_quantize(res->w_hat, res->rtn_q, res->rtn_scale, res->rtn_zero, w, n_out,
                                   n_in, spec->rtn_bits, spec->rtn_group, &e)))
            return lmp_err_set(err, st, "layer '%s': %s", name, e.msg);
        if (h == NULL) { /* no calibration: the weights' own relative error (H = I) */
            double num = 0.0, den = 0.0;
            for (int64_t k = 0; k < n_out * n_in; k++) {
                const double d = (double)w[k] - (double)res->w_hat[k];
                num += d * d;
                den += (double)w[k] * (double)w[k];
            }
            res->rel_err_after = den > 0.0 ? num / den : 0.0;
        } else if ((st = lmp_aq_rel_err(&res->rel_err_after, w, res->w_hat, h, n_out, n_in)))
            return lmp_err_set(err, st,
                               "layer '%s': cannot measure the error (zero output "
                               "energy or out of memory)",
                               name);
        res->rel_err_before = res->rel_err_after;
    } else {
        struct lmp_aq_opts  o = spec->aq;
        struct lmp_aq_stats S;
        o.seed = seed;
        if ((st = lmp_aq_quantize(&res->aq, &S, w, h, n_out, n_in, &spec->sc, &o, &e)))
            return lmp_err_set(err, st, "layer '%s': %s", name, e.msg);
        const struct lmp_aq_shape shape = {
            .n_out = n_out, .n_in = n_in, .M = spec->sc.M, .K = spec->sc.K, .g = spec->sc.g};
        lmp_kernels_get()->aq_decode(res->w_hat, res->aq.codes, res->aq.codebooks, res->aq.scales,
                                     &shape);
        res->rel_err_before = S.rel_err_init;
        res->rel_err_after  = S.rel_err_final;
        res->steps          = S.n_rounds + S.n_adam_steps;
    }
    if (!isfinite(res->rel_err_after))
        return lmp_err_set(err, LMP_EINVAL, "layer '%s': the quantization error is not finite",
                           name);
    res->bits_per_weight = lmp_compress_bits_per_weight(spec, n_out, n_in);
    res->seconds         = now_s() - t0;
    return LMP_OK;
}

bool lmp_compress_keep_match(const char *const *patterns, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (fnmatch(patterns[i], name, 0) == 0) return true;
    return false;
}

uint64_t lmp_compress_layer_seed(uint64_t seed, const char *name) {
    uint64_t h = 0xcbf29ce484222325ULL ^ seed;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        h ^= *p;
        h *= 0x100000001b3ULL;
    }
    return h ^ (h >> 29);
}
