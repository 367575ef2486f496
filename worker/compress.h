/*  compress - one compression task: quantize one linear layer given W and H
 *
 *  This is the unit of work a distributed worker receives: the layer's weights W
 *  (n_out, n_in) fp32, the Gram matrix H (n_in, n_in) of its calibration inputs, the
 *  method and its settings, and a seed; it returns the compressed representation, the
 *  decoded W_hat (for propagating calibration activations and for fine-tuning) and
 *  statistics. The job (calibration, the tasks of each block, the artifact) is the
 *  coordinator's (coordinator/coord.h).
 *  No I/O, no hidden state; thread-safe on distinct results.
 */
#ifndef LMP_WORKER_COMPRESS_H
#define LMP_WORKER_COMPRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "base/status.h" /* defines: enum lmp_status, struct lmp_err */
#include "worker/aq.h"   /* defines: struct lmp_aq_scheme, struct lmp_aq_opts, lmp_aq_layer */

enum lmp_compress_method { LMP_COMPRESS_AQLM, LMP_COMPRESS_RTN };

struct lmp_compress_spec {
    enum lmp_compress_method method;
    struct lmp_aq_scheme     sc;        /* AQLM scheme */
    struct lmp_aq_opts       aq;        /* AQLM settings (aq.seed is replaced per task) */
    int                      rtn_bits;  /* RTN: bits per weight, 1..8 */
    int64_t                  rtn_group; /* RTN: group size along n_in */
};

/* Defaults: AQLM 2x8g8 with lmp_aq_opts_init(), RTN 4 bits group 128. */
void lmp_compress_spec_init(struct lmp_compress_spec *spec);

/* "2x8g8" for AQLM, "rtn3g64" for RTN. */
void lmp_compress_spec_name(const struct lmp_compress_spec *spec, char *buf, size_t cap);

/* Bits per weight of an (n_out, n_in) layer under spec (codes, codebooks, scales). */
double lmp_compress_bits_per_weight(const struct lmp_compress_spec *spec, int64_t n_out,
                                    int64_t n_in);

/* LMP_OK if spec can compress an (n_out, n_in) layer, else LMP_EINVAL with a message
 * naming the layer, its shape and the scheme. */
enum lmp_status lmp_compress_check(const struct lmp_compress_spec *spec, const char *name,
                                   int64_t n_out, int64_t n_in, struct lmp_err *err);

struct lmp_compress_result {
    enum lmp_compress_method method;
    int64_t                  n_out, n_in;
    struct lmp_aq_layer      aq;             /* AQLM: codes, codebooks, scales */
    uint8_t                 *rtn_q;          /* RTN: (n_out, n_in) codes */
    uint16_t                *rtn_scale;      /* RTN: (n_out, n_in/G) fp16 bits */
    uint16_t                *rtn_zero;       /* RTN: (n_out, n_in/G) fp16 bits */
    float                   *w_hat;          /* (n_out, n_in) decoded weights */
    double                   rel_err_before; /* AQLM: after k-means init; RTN: = after */
    double                   rel_err_after;  /* ||(W - W_hat) X||^2 / ||W X||^2 */
    double                   bits_per_weight;
    double                   seconds;
    int64_t                  steps; /* AQLM: beam rounds + Adam steps; RTN: 0 */
};

void lmp_compress_result_release(struct lmp_compress_result *res);

/* Quantize w (n_out, n_in) under h (n_in, n_in) with spec (h may be NULL for RTN, which
 * needs no calibration: the error is then measured with H = I); the task's randomness is
 * fixed by seed. name is for messages. res is filled (release it also after an error).
 * RET LMP_OK; LMP_EINVAL with a message naming the layer (scheme does not divide it,
 * H with NaN/Inf or zero trace, non-finite weights); LMP_ENOMEM. */
enum lmp_status lmp_compress_linear(struct lmp_compress_result     *res,
                                    const struct lmp_compress_spec *spec, const char *name,
                                    const float *w, const float *h, int64_t n_out, int64_t n_in,
                                    uint64_t seed, struct lmp_err *err);

/* True if name matches any of the n shell glob patterns (fnmatch, '*' crosses dots). */
bool lmp_compress_keep_match(const char *const *patterns, int n, const char *name);

/* A per-layer seed derived from the job seed and the layer name (FNV-1a mix), so a
 * layer's result does not depend on which layers ran before it. */
uint64_t lmp_compress_layer_seed(uint64_t seed, const char *name);

#endif /* LMP_WORKER_COMPRESS_H */
