/*  aq - AQLM (additive quantization) of one linear layer, or of a range of its rows
 *
 *  A layer W (n_out, n_in) is cut into groups of g consecutive inputs per row; each
 *  group is stored as M codes of B bits and decoded as
 *      w_hat[o, j*g:(j+1)*g] = scale[o] * sum_m codebooks[m, codes[o, j, m], :]
 *  (scheme "MxBgG", e.g. 2x8g8). The objective is the layer's output error on the
 *  calibration inputs, L = ||(W - W_hat) X||^2 = tr((W - W_hat) H (W - W_hat)^T).
 *
 *  H is fp32 (n_in, n_in), symmetric positive semi-definite, any positive scaling (the
 *  calibration stage accumulates X^T X in double and hands over H / n_tok in fp32; fp32
 *  is enough here because every quantity below is a relative one and the kernels' big
 *  products are fp32 GEMMs). A singular H is fine (the objective is still a quadratic
 *  form: directions H does not see are free), so no damping is added by default, as in
 *  AQLM; opts.damp > 0 adds damp * mean(diag H) to the diagonal for the optimisation
 *  only (errors are always reported on the H given). H with NaN/Inf, a negative
 *  diagonal entry or a zero trace is rejected with LMP_EINVAL.
 *
 *  Everything is explicit: inputs in, outputs out, no hidden state, no I/O. The
 *  kernels come from lmp_kernels_get(). Rows are independent given the codebooks, so a
 *  layer split into row shards [r0, r1) runs, per Adam step, on every shard:
 *
 *      lmp_aq_grad_rows(my rows)            -> loss_local, g_cb_local, g_scale (my rows)
 *      sum loss and g_cb over shards          (MPI_Allreduce; one shard: nothing to do)
 *      lmp_aq_adam_step(cb_adam, cb, g_cb)    identical on every shard (same inputs)
 *      lmp_aq_adam_step(my scale_adam, my scales, g_scale)   local
 *
 *  and per round lmp_aq_beam_rows(my rows) then a sum of the losses. (The default
 *  single-process update, conjugate gradient, shards the same way: each iteration's
 *  Hessian-vector product is an lmp_aq_grad_rows call on W = 0, summed over shards.) Adam state is
 *  reset each round, so the state of a layer between rounds is (codes, codebooks,
 *  scales) only. lmp_aq_quantize() is that loop on one process (all rows).
 */
#ifndef LMP_WORKER_AQ_H
#define LMP_WORKER_AQ_H

#include <stdatomic.h>
#include <stdint.h>
#include "base/status.h" /* defines: enum lmp_status, struct lmp_err */

enum { LMP_AQ_MAX_ROUNDS = 64 };

struct lmp_aq_scheme {
    int M; /* codebooks */
    int B; /* bits per code, 1..16 */
    int g; /* in-group size */
    int K; /* 2^B entries per codebook */
};

/* Parse "MxBgG" (e.g. "2x8g8", "1x16g8"): 1 <= M <= 8, 1 <= B <= 16, 1 <= G <= 64.
 * RET LMP_OK, or LMP_EINVAL with a message naming the text. */
enum lmp_status lmp_aq_scheme_parse(struct lmp_aq_scheme *sc, const char *text,
                                    struct lmp_err *err);

/* LMP_EINVAL (with message) unless g divides n_in and both sizes are positive. */
enum lmp_status lmp_aq_scheme_check(const struct lmp_aq_scheme *sc, int64_t n_out, int64_t n_in,
                                    struct lmp_err *err);

/* Stored bits per weight: codes (M B per g weights) + codebooks (M 2^B g entries at 16
 * bits) + one 16-bit scale per row, divided by n_out n_in. */
double lmp_aq_bits_per_weight(const struct lmp_aq_scheme *sc, int64_t n_out, int64_t n_in);

/* LMP_OK if h (n_in, n_in) is usable: finite, diagonal >= 0, trace > 0; else LMP_EINVAL
 * with the first offending entry in the message. */
enum lmp_status lmp_aq_check_h(const float *h, int64_t n_in, struct lmp_err *err);

/* rel = ||(W - W_hat) X||^2 / ||W X||^2 = tr(R H R^T) / tr(W H W^T).
 * RET LMP_OK, LMP_ENOMEM, or LMP_EINVAL if tr(W H W^T) is 0. */
enum lmp_status lmp_aq_rel_err(double *rel, const float *w, const float *w_hat, const float *h,
                               int64_t n_out, int64_t n_in);

/* ---- slice primitives (rows [r0, r1) of a layer: pass those rows and n_rows) ---- */

/* scale[o] = ||w_o||_2 (1 where the row is zero). w (n_rows, n_in), scale (n_rows) out. */
void lmp_aq_scales_from_rows(float *scale, const float *w, int64_t n_rows, int64_t n_in);

/* Residual k-means initialisation: codebook m is fitted (Lloyd, iters rounds, on at most
 * max_points sampled groups (<= 0: every group), seeded) to what codebooks 0..m-1 leave
 * of the normalized groups w_o/scale_o, then every group gets its nearest entry. With h
 * (n_in, n_in) given, points are weighted by scale_o^2 tr(H_jj) / g (their weight in the
 * objective, to first order); h NULL: unweighted, as AQLM (lower final errors on
 * SmolLM2's layers, docs/results.md "AQLM initialisation and search order").
 * cb (M, K, g) out, codes (n_rows, n_in/g, M) out. RET LMP_OK or LMP_ENOMEM. */
enum lmp_status lmp_aq_kmeans_init(float *cb, uint16_t *codes, const float *w, const float *scale,
                                   const float *h, int64_t n_rows, int64_t n_in,
                                   const struct lmp_aq_scheme *sc, int iters, int64_t max_points,
                                   uint64_t seed, struct lmp_err *err);

/* Local objective and gradients of rows w (n_rows, n_in): *loss, g_cb (M, K, g) (sum it
 * over shards), g_scale (n_rows). RET LMP_OK or LMP_ENOMEM. */
enum lmp_status lmp_aq_grad_rows(double *loss, float *g_cb, float *g_scale, const uint16_t *codes,
                                 const float *w, const float *scale, const float *cb,
                                 const float *h, int64_t n_rows, int64_t n_in,
                                 const struct lmp_aq_scheme *sc, struct lmp_err *err);

/* The visiting order of round `round` (0-based) of the beam search of a layer with seed
 * `seed`, as AQLM's (groups shuffled, and the codebooks of each group shuffled, every
 * round): gperm (n_grp) the groups in the order they are visited, m_order (n_grp, M) the
 * codebook order of the i-th visited group. A function of (seed, round) only, so every
 * row shard and every thread count visits in the same order. */
void lmp_aq_beam_order(int32_t *gperm, uint8_t *m_order, int64_t n_grp, int M, uint64_t seed,
                       int round);

/* One beam-search sweep over the codes of rows w (n_rows, n_in), the groups visited in
 * the order gperm (n_in/g; NULL: 0, 1, ...), the codebooks of the i-th visited group in
 * the order m_order[i M .. i M + M) (NULL: 0..M-1); codes in/out; loss (n_rows) out or
 * NULL. (The kernel is run on the problem with its groups permuted.)
 * RET LMP_OK or LMP_ENOMEM (codes unchanged). */
enum lmp_status lmp_aq_beam_rows(uint16_t *codes, double *loss, const float *w, const float *scale,
                                 const float *cb, const float *h, int64_t n_rows, int64_t n_in,
                                 const struct lmp_aq_scheme *sc, int beam, const int32_t *gperm,
                                 const uint8_t *m_order, struct lmp_err *err);

/* Adam over n parameters (deterministic: same inputs give the same bits everywhere). */
struct lmp_aq_adam {
    int64_t n;
    int64_t t; /* steps taken */
    float   beta1, beta2, eps;
    float  *m, *v; /* (n) moments */
};
enum lmp_status lmp_aq_adam_init(struct lmp_aq_adam *a, int64_t n, float beta1, float beta2);
void            lmp_aq_adam_reset(struct lmp_aq_adam *a); /* zero moments and t */
void            lmp_aq_adam_release(struct lmp_aq_adam *a);
void            lmp_aq_adam_step(struct lmp_aq_adam *a, float *param, const float *grad, float lr);

/* ---- the whole layer on one process ------------------------------------------------ */

struct lmp_aq_opts {
    int beam;                  /* beam width of the code search (default 8) */
    int cg_iters;              /* codebook update per round: this many preconditioned
                                  conjugate-gradient iterations, then every scale set to its
                                  exact minimiser (default 16); 0: adam_steps Adam steps */
    int     adam_steps;        /* Adam steps per round when cg_iters is 0 (default 100) */
    float   lr;                /* Adam learning rate (default 1e-4) */
    float   beta1, beta2;      /* Adam betas (default 0.9, 0.95) */
    double  tol;               /* stop when a round improves L by less than tol (default 0.01) */
    int     max_rounds;        /* at most this many rounds (default 20, <= LMP_AQ_MAX_ROUNDS) */
    int64_t max_adam_steps;    /* total step budget (Adam steps or CG iterations) over all
                                  rounds (default 10000) */
    int     kmeans_iters;      /* Lloyd iterations per codebook (default 20) */
    int64_t kmeans_max_points; /* groups k-means fits on, a seeded sample (default 0: all) */
    int     kmeans_weighted;   /* 1: k-means points weighted by scale^2 tr(H_jj) / g;
                                  0 (default): unweighted, as AQLM */
    int beam_shuffle;          /* 1 (default): the beam search visits groups and codebooks in
                                  a new seeded order every round (lmp_aq_beam_order, as
                                  AQLM); 0: in order (j, m) */
    double   damp;             /* relative diagonal damping of H (default 0) */
    uint64_t seed;
    /* Optional observer (NULL: none, the default): called once after each optimisation
     * round r (1-based) of at most max_rounds, with the objective L after the round (the
     * sum over shards, on the possibly damped H) and the relative error rel_err_round[r-1].
     * It only observes: the results do not depend on it. Called on the quantizing thread. */
    void (*progress)(void *ctx, int round, int max_rounds, double loss, double rel_err);
    void *progress_ctx;
    /* Optional (NULL: none, the default): a task's cancel flag, polled with the process's
     * stop (base/cancel.h) before each round, each codebook-update iteration and each
     * chunk of the beam search (a fraction of a second apart); the layer then ends with
     * LMP_ECANCEL. */
    const atomic_int *cancel;
};
void lmp_aq_opts_init(struct lmp_aq_opts *o);

struct lmp_aq_stats {
    double  rel_err_init; /* after the k-means initialisation */
    double  rel_err_final;
    double  rel_err_round[LMP_AQ_MAX_ROUNDS]; /* after each round's beam search */
    int     n_rounds;
    int64_t n_adam_steps; /* Adam steps or CG iterations */
    double  bits_per_weight;
    double  seconds, seconds_init, seconds_adam, seconds_beam;
};

struct lmp_aq_layer {
    struct lmp_aq_scheme sc;
    int64_t              n_out, n_in;
    uint16_t            *codes;     /* (n_out, n_in/g, M) */
    float               *codebooks; /* (M, K, g) */
    float               *scales;    /* (n_out) */
};
void lmp_aq_layer_release(struct lmp_aq_layer *l); /* frees the arrays; safe twice */

/* Quantize w (n_out, n_in) under h (n_in, n_in): k-means init, then rounds of
 * {codebook and scale update, one beam search over codes}
 * until a round improves the objective by less than opts.tol, or max_rounds or
 * max_adam_steps is reached. The objective never increases from round to round (an
 * Adam phase that ends worse keeps its best iterate; a beam search that ends worse keeps
 * the old codes). The update is, with opts.cg_iters > 0, block coordinate descent:
 * with codes and scales fixed L is a quadratic in the codebooks, minimised by
 * conjugate gradient preconditioned with the diagonal of its Hessian (each iteration one
 * Hessian-vector product, i.e. one aq_grad call on W = 0), then each row's scale is set
 * to its closed-form minimiser s_o = u_o H w_o^T / u_o H u_o^T; with cg_iters 0 it is
 * opts.adam_steps joint Adam steps (one aq_grad call each), as in AQLM.
 * out is filled (caller releases it); stats may be NULL.
 * RET LMP_OK, LMP_EINVAL (scheme, shapes, H) or LMP_ENOMEM, with err set. */
enum lmp_status lmp_aq_quantize(struct lmp_aq_layer *out, struct lmp_aq_stats *stats,
                                const float *w, const float *h, int64_t n_out, int64_t n_in,
                                const struct lmp_aq_scheme *sc, const struct lmp_aq_opts *opts,
                                struct lmp_err *err);

/* ---- one layer in row shards ------------------------------------------------------ */

/* Sum over the shards of one layer (an all-reduce): vec (n doubles) holds this shard's
 * part on entry and, on return, the sum over every shard, the same bits on every shard
 * (the reducer adds the parts in shard order). Called at the same points, with the same
 * n, by every shard. RET LMP_OK, or an error (a lost shard, a cancel) that ends the
 * layer. */
struct lmp_aq_reducer {
    enum lmp_status (*sum)(void *ctx, double *vec, int64_t n, struct lmp_err *err);
    void *ctx;
};

/* lmp_aq_quantize on the rows [r0, r1) of w_all (n_out_all, n_in), one shard of several
 * that run together and meet in red (NULL or red->sum NULL: one shard, no sums). It is
 * the same algorithm, factored at its sums: every reduction point of the round (the
 * codebook gradient and loss, each conjugate-gradient Hessian-vector product, the Jacobi
 * diagonal, the norms) sums n_cb + 1 values over the shards, so the codebooks follow the
 * same path on every shard; codes (beam search) and scales (closed form or Adam) are
 * per row and stay local. The k-means initialisation reads every row of w_all (its
 * sampling must not depend on the split) and keeps the codes of [r0, r1).
 * out: n_out = r1 - r0 rows of codes and scales, the full codebooks (identical on every
 * shard); stats: the whole layer's (the losses are sums). With r0 = 0, r1 = n_out_all
 * and no reducer it is lmp_aq_quantize, bit for bit. Sharded, the results agree with the
 * unsharded ones up to fp32 rounding of the sums (the search may then take a different
 * path; the final errors agree closely, see tests/unit/test_aq_rows.c).
 * RET as lmp_aq_quantize, LMP_EINVAL for a bad row range, or the reducer's error. */
enum lmp_status lmp_aq_quantize_rows(struct lmp_aq_layer *out, struct lmp_aq_stats *stats,
                                     const float *w_all, const float *h, int64_t n_out_all,
                                     int64_t n_in, int64_t r0, int64_t r1,
                                     const struct lmp_aq_scheme *sc, const struct lmp_aq_opts *opts,
                                     const struct lmp_aq_reducer *red, struct lmp_err *err);

/* Split n_out rows into n shards with sizes proportional to weight[i] (e.g. measured
 * throughputs; all <= 0: equal), each at least one row (needs n <= n_out): shard i is
 * rows [bounds[i], bounds[i + 1]), bounds has n + 1 entries. */
void lmp_aq_shard_rows(int64_t *bounds, int64_t n_out, const double *weight, int n);

#endif /* LMP_WORKER_AQ_H */
