/*  pv - one PV-Tuning step on one process: the P step and the linearized V step
 *
 *  PV-Tuning (Malinovskii et al., NeurIPS 2024; docs/pv-tuning.md) tunes a quantized model
 *  against the original with the gradients of worker/model_grad.h. Each quantized linear
 *  W_hat[o, j g + t] = s_o sum_m cb_m[codes[o, j, m]][t] is registered with its codes,
 *  codebooks, scales and the dense fp32 buffer the forward runs (its decode, kept equal to
 *  it by every step); unquantized parameters (norms, optionally embeddings) are plain
 *  vectors. Given dL/dW_hat of every linear (model_grad's dense weight gradients):
 *
 *  P step (codes fixed): dL/dcb and dL/ds through the decode (kernel aq_grad_dw), one Adam
 *      step on codebooks, scales and the plain parameters (lr 1e-4, betas 0.9/0.95 by
 *      default), then every dense buffer is decoded again.
 *  V step (linearized): each linear keeps a straight-through buffer U (n_out, n_in), the
 *      decoded weight at registration, which takes its own Adam step (code_lr, beta1 0,
 *      beta2 0.95: the reference's settings) with dL/dW_hat. The groups (row o, group j)
 *      whose U moved farthest (squared L2) from the current W_hat, a fraction code_frac of
 *      the linear's groups (1% by default, rounded down), are re-encoded by beam search
 *      (kernel aq_beam) minimizing ||U_group - s_o sum_m cb_m[c_m]||^2, i.e. the L2
 *      distance to U/s_o in codebook space, starting from their current codes: the beam
 *      keeps "no change" as a candidate, so a re-encoded group's distance never grows.
 *      With H = I the row objective separates over groups, so the selected groups are
 *      searched as independent one-group rows. U is kept (not reset to W_hat), as in the
 *      reference; the changed groups are decoded into the dense buffer.
 *
 *  With trust_ratio > 0 the V step keeps the new codes of the farthest groups first and
 *  only while the decoded weight's total change stays within trust_ratio x ||W_hat||_F.
 *  With lamb the P step is LAMB's: each tensor's Adam direction rescaled so the step is lr
 *  times the tensor's norm. Checkpoints: lmp_pv_state.
 *
 *  Ownership: every array registered is borrowed and updated in place; the object owns the
 *  Adam states and the buffers U. Threads: the kernels' (aq_beam's rows); calls on one
 *  object must not overlap.
 *
 *  Calling sequence:
 *      lmp_pv_new(lins, n_lins, params, n_params, &opts, &pv);
 *      loop: model_grad forward + lmp_model_grad_kl_backward -> dW of every linear, dparams
 *            lmp_pv_p_step(pv, dw, dparams);
 *            lmp_pv_v_step(pv, dw, &stats);          (same gradient; or every few steps)
 *      lmp_pv_destroy(&pv);
 */
#ifndef LMP_WORKER_PV_H
#define LMP_WORKER_PV_H

#include <stdbool.h>
#include <stdint.h>
#include "base/status.h"     /* defines: enum lmp_status */
#include "kernels/kernels.h" /* defines: struct lmp_aq_shape */

/* One quantized linear, every array borrowed and updated in place. */
struct lmp_pv_linear {
    struct lmp_aq_shape shape; /* n_out, n_in, M, K, g (all rows of the linear) */
    uint16_t           *codes; /* (n_out, n_in/g, M) */
    float              *cb;    /* (M, K, g) */
    float              *scale; /* (n_out) */
    float              *w;     /* (n_out, n_in) the dense weight the forward reads: the
                                  decode, rewritten by lmp_pv_new and every step */
};

/* An unquantized parameter trained by the P step (a norm, an embedding): x (n) in place. */
struct lmp_pv_param {
    float  *x;
    int64_t n;
};

struct lmp_pv_opts {
    float lr;           /* P step Adam learning rate; <= 0: 1e-4 */
    float beta1;        /* P step; <= 0: 0.9 */
    float beta2;        /* P step; <= 0: 0.95 */
    float code_lr;      /* V step: the buffers' Adam learning rate; <= 0: 3e-3 (callers
                           that know the scheme use lmp_pv_default_code_lr) */
    float  code_beta2;  /* V step (beta1 is 0); <= 0: 0.95 */
    double code_frac;   /* V step: fraction of each linear's groups re-encoded; < 0: 0.01 */
    int    beam;        /* V step: beam width; <= 0: 8 */
    bool   lamb;        /* P step: LAMB (lr a fraction of each tensor's norm) instead of Adam */
    double trust_ratio; /* V step: keep new codes, farthest groups first, only while the
                           decoded weight's change stays within trust_ratio x its Frobenius
                           norm (the reference's code trust ratio); <= 0: no cap */
};

/* The V step's default learning rate for linears of bits_per_weight code bits per weight
 * (M B / g, weighted over the linears): 3e-3 at 2 bits and below, 5e-4 at 4 and above
 * (both measured on SmolLM2: at 4 bits 3e-3 changes a quarter to half of the selected
 * groups every step and the KL stops falling, docs/pv-tuning.md), geometric in between
 * (1.22e-3 at 3 bits, not measured). A 4-bit layer's error is a fraction of a 2-bit one's,
 * so its straight-through buffer needs a smaller step. */
float lmp_pv_default_code_lr(double bits_per_weight);

/* Replace the "default" values of o (see above) by the defaults themselves, so that two
 * spellings of one setting (0 and 1e-4 for lr) are one setting (checkpoint keys, specs). */
void lmp_pv_opts_resolve(struct lmp_pv_opts *o);

/* What one V step did, summed over the linears. */
struct lmp_pv_v_stats {
    int64_t n_groups;    /* groups of all linears */
    int64_t n_selected;  /* groups re-encoded (sum over linears of floor(code_frac x groups)) */
    int64_t n_changed;   /* of those, groups whose codes changed */
    int64_t n_capped;    /* groups whose new codes the trust ratio turned down */
    double  dist_before; /* sum over the selected groups of ||U - W_hat||^2 before ... */
    double  dist_after;  /* ... and after the re-encoding */
};

struct lmp_pv;

/* Register n_lins linears and n_params plain parameters (arrays copied; their contents
 * borrowed). Each linear's dense buffer is set to its decode and its buffer U to a copy.
 * RET LMP_OK, LMP_EINVAL (a shape the kernels cannot run: g not dividing n_in, K > 65536),
 * LMP_ENOMEM. */
enum lmp_status lmp_pv_new(const struct lmp_pv_linear *lins, int n_lins,
                           const struct lmp_pv_param *params, int n_params,
                           const struct lmp_pv_opts *opts, struct lmp_pv **out);
void            lmp_pv_destroy(struct lmp_pv **self_p);

/* P step. dw[i] (n_out, n_in) is dL/dW_hat of linear i (NULL: not trained this step);
 * dparams[i] (n) the gradient of param i (NULL entries or a NULL array: not trained).
 * RET LMP_OK or LMP_ENOMEM (kernel scratch; parameters may then be partly updated). */
enum lmp_status lmp_pv_p_step(struct lmp_pv *self, const float *const *dw,
                              const float *const *dparams);

/* V step with the same gradients (dw[i] NULL: linear i untouched); stats may be NULL.
 * RET LMP_OK or LMP_ENOMEM. */
enum lmp_status lmp_pv_v_step(struct lmp_pv *self, const float *const *dw,
                              struct lmp_pv_v_stats *stats);

/* Owner-only stepping (data-parallel ranks splitting the P/V work): mine[i] says whether
 * this process steps linear i (copied; NULL: every linear, the default). For a linear not
 * its own, a step only counts (the Adam step numbers advance as the owner's do) and leaves
 * codes, codebooks, scales, U and moments alone: the caller copies the owner's codes,
 * codebooks and scales in after the step and calls lmp_pv_decode; U and the moments stay
 * the owner's (lmp_pv_array.local) until gathered for a checkpoint. RET LMP_OK or
 * LMP_ENOMEM. */
enum lmp_status lmp_pv_set_owned(struct lmp_pv *self, const bool *mine);

/* Decode linear i's dense buffer from its codes, codebooks and scales (after they were
 * overwritten, e.g. by the owner's). */
void lmp_pv_decode(struct lmp_pv *self, int i);

/* The straight-through buffer U (n_out, n_in) of linear i, owned by the object. */
const float *lmp_pv_buffer(const struct lmp_pv *self, int i);

/* The object's whole mutable state, for checkpoints: one entry per array, in a fixed
 * order (per linear: codes, codebooks, scales, U, the Adam moments of codebooks, scales
 * and U; per plain parameter: x and its moments; last, "adam_t": every Adam's step
 * count). Names are stable ("lin.<i>.codes", "param.<i>.m", ...). Writing the arrays
 * back (same shapes) and calling lmp_pv_state_loaded restores the object exactly: the
 * next steps give the same bits as an uninterrupted run. */
struct lmp_pv_array {
    char      name[48];
    float    *f32; /* exactly one of f32, u16, i64 is set */
    uint16_t *u16;
    int64_t  *i64;
    int64_t   n;     /* elements */
    int32_t   lin;   /* the linear it belongs to, or -1 */
    bool      local; /* U or an Adam moment of linear lin: under owner-only stepping only
                        the owner's copy is current */
};
/* Fill *arrays (malloc'ed, caller frees) and *n. RET LMP_OK or LMP_ENOMEM. */
enum lmp_status lmp_pv_state(struct lmp_pv *self, struct lmp_pv_array **arrays, int *n);
/* After the arrays of lmp_pv_state were overwritten: take the Adam step counts back from
 * "adam_t" (the array that lmp_pv_state listed must have been refilled) and decode every
 * dense buffer from its codes, codebooks and scales. */
void lmp_pv_state_loaded(struct lmp_pv *self);

#endif /* LMP_WORKER_PV_H */
