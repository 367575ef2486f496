/*  finetune - see finetune.h
 *
 *  State of a run: for each linear a dense fp32 weight the block forward reads (the
 *  decoded W_hat of an AQ linear, refreshed after each Adam step, or the caller's frozen
 *  dense weight), the dense gradient dW of each AQ linear, and one Adam state per trained
 *  tensor (codebooks and scales of each AQ linear, each norm, each trained bias). A copy
 *  of every trained tensor taken on entry restores the block when tuning does not help
 *  or fails halfway.
 */
#include "worker/finetune.h"
#include "worker/block_grad.h" /* defines: lmp_block_grad_*, struct lmp_block_params */
#include "kernels/kernels.h"   /* defines: lmp_kernels_get, struct lmp_aq_shape */
#include "base/cancel.h"       /* defines: lmp_cancelled */

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void lmp_ft_opts_init(struct lmp_ft_opts *o) {
    /* lr and betas as the per-layer AQ stage (and AQLM's block fine-tuning); 4 sequences
     * of 512-4096 tokens per step keeps the saved activations of a 7B block under ~10 GB */
    *o = (struct lmp_ft_opts){.lr                = 1e-4f,
                              .beta1             = 0.9f,
                              .beta2             = 0.95f,
                              .batch_seqs        = 4,
                              .max_epochs        = 4,
                              .max_steps         = 0,
                              .tol               = 0.01,
                              .train_norms       = true,
                              .train_extra_norms = true,
                              .train_bias        = false,
                              .n_threads         = 0,
                              .seed              = 1};
}

/* A trained tensor: parameters (in place), gradient, Adam state, entry copy. */
struct param {
    float             *v;    /* (n) borrowed, updated in place */
    float             *g;    /* (n) gradient */
    float             *save; /* (n) value on entry */
    int64_t            n;
    struct lmp_aq_adam adam;
};

struct run {
    const struct lmp_config *cfg;
    int64_t                  n_out[LMP_LIN_COUNT], n_in[LMP_LIN_COUNT];
    float                   *w_own[LMP_LIN_COUNT]; /* (n_out, n_in) decoded W_hat of AQ linears */
    float                   *dw[LMP_LIN_COUNT];    /* (n_out, n_in) dL/dW_hat of AQ linears */
    struct lmp_aq_shape      shape[LMP_LIN_COUNT];
    struct param             cb[LMP_LIN_COUNT], sc[LMP_LIN_COUNT], bias[LMP_LIN_COUNT];
    struct param norm[6]; /* attn, ffn, q, k, post_attn, post_ffn (the last four where present) */
    struct lmp_block_params p;
    struct lmp_block_grads  g;
    struct lmp_block_grad  *bg;
    float                  *xb, *yb, *yh; /* (batch, T, dim) minibatch, output */
    int64_t                *order;        /* (n_seq) sequence order of an epoch */
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static bool param_init(struct param *pa, float *v, int64_t n, const struct lmp_ft_opts *o) {
    pa->v    = v;
    pa->n    = n;
    pa->g    = malloc((size_t)n * sizeof(float));
    pa->save = malloc((size_t)n * sizeof(float));
    if (pa->g == NULL || pa->save == NULL ||
        lmp_aq_adam_init(&pa->adam, n, o->beta1, o->beta2) != LMP_OK)
        return false;
    memcpy(pa->save, v, (size_t)n * sizeof(float));
    return true;
}

static void param_release(struct param *pa) {
    free(pa->g);
    free(pa->save);
    lmp_aq_adam_release(&pa->adam);
    memset(pa, 0, sizeof(*pa));
}

static void run_release(struct run *r) {
    for (int k = 0; k < LMP_LIN_COUNT; k++) {
        free(r->w_own[k]);
        free(r->dw[k]);
        param_release(&r->cb[k]);
        param_release(&r->sc[k]);
        param_release(&r->bias[k]);
    }
    for (int i = 0; i < 6; i++) param_release(&r->norm[i]);
    lmp_block_grad_destroy(&r->bg);
    free(r->xb);
    free(r->yb);
    free(r->yh);
    free(r->order);
}

/* Put every trained tensor back to its entry value (and the decoded weights with it). */
static void restore(struct run *r, const struct lmp_ft_block *blk) {
    struct param *all[3 * LMP_LIN_COUNT + 6];
    int           n = 0;
    for (int k = 0; k < LMP_LIN_COUNT; k++) {
        all[n++] = &r->cb[k];
        all[n++] = &r->sc[k];
        all[n++] = &r->bias[k];
    }
    for (int i = 0; i < 6; i++) all[n++] = &r->norm[i];
    for (int i = 0; i < n; i++)
        if (all[i]->v && all[i]->save)
            memcpy(all[i]->v, all[i]->save, (size_t)all[i]->n * sizeof(float));
    for (int k = 0; k < LMP_LIN_COUNT; k++)
        if (blk->lin[k].aq)
            lmp_kernels_get()->aq_decode(r->w_own[k], blk->lin[k].aq->codes,
                                         blk->lin[k].aq->codebooks, blk->lin[k].aq->scales,
                                         &r->shape[k]);
}

static enum lmp_status check_args(const struct lmp_ft_block *blk, const float *x, const float *y,
                                  int64_t n_seq, int64_t seq_len, const struct lmp_ft_opts *o,
                                  struct run *r, struct lmp_err *err) {
    const struct lmp_config *c = blk->cfg;
    if (c == NULL || x == NULL || y == NULL || blk->attn_norm == NULL || blk->ffn_norm == NULL)
        return lmp_err_set(err, LMP_EINVAL, "block fine-tuning: missing config, norms or data");
    if (n_seq <= 0 || seq_len <= 0)
        return lmp_err_set(err, LMP_EINVAL, "block fine-tuning: %lld sequences of %lld tokens",
                           (long long)n_seq, (long long)seq_len);
    if (!(o->lr > 0) || o->batch_seqs <= 0 || o->max_epochs <= 0 || !(o->tol >= 0) ||
        !(o->beta1 >= 0 && o->beta1 < 1) || !(o->beta2 >= 0 && o->beta2 < 1))
        return lmp_err_set(err, LMP_EINVAL,
                           "block fine-tuning: bad options (lr %g, batch %lld, "
                           "epochs %d, tol %g)",
                           (double)o->lr, (long long)o->batch_seqs, o->max_epochs, o->tol);
    if ((blk->q_norm != NULL) != c->qk_norm || (blk->k_norm != NULL) != c->qk_norm ||
        (blk->post_attn_norm != NULL) != c->post_norms ||
        (blk->post_ffn_norm != NULL) != c->post_norms)
        return lmp_err_set(err, LMP_EINVAL,
                           "block fine-tuning: the block's q/k norms (model: %s) or post norms "
                           "(model: %s) are not what the model has",
                           c->qk_norm ? "yes" : "no", c->post_norms ? "yes" : "no");
    const int64_t dim = c->dim, hid = c->hidden_dim, qd = (int64_t)c->n_heads * c->head_dim,
                  kd                    = (int64_t)c->n_kv_heads * c->head_dim;
    const int64_t shp[LMP_LIN_COUNT][2] = {{qd, dim},  {kd, dim},  {kd, dim}, {dim, qd},
                                           {hid, dim}, {hid, dim}, {dim, hid}};
    for (int k = 0; k < LMP_LIN_COUNT; k++) {
        const struct lmp_ft_linear *l = &blk->lin[k];
        r->n_out[k]                   = shp[k][0];
        r->n_in[k]                    = shp[k][1];
        if ((l->aq == NULL) == (l->w == NULL))
            return lmp_err_set(err, LMP_EINVAL,
                               "block fine-tuning: %s needs exactly one of an "
                               "AQ layer and a dense weight",
                               lmp_lin_name(k));
        if (l->aq) {
            const struct lmp_aq_layer *a = l->aq;
            if (a->n_out != shp[k][0] || a->n_in != shp[k][1] || a->sc.g <= 0 ||
                a->n_in % a->sc.g != 0 || a->sc.M <= 0 || a->sc.K <= 0 || a->codes == NULL ||
                a->codebooks == NULL || a->scales == NULL)
                return lmp_err_set(err, LMP_EINVAL,
                                   "block fine-tuning: AQ layer %s is (%lld, "
                                   "%lld) with g %d, the block needs (%lld, %lld)",
                                   lmp_lin_name(k), (long long)a->n_out, (long long)a->n_in,
                                   a->sc.g, (long long)shp[k][0], (long long)shp[k][1]);
            r->shape[k] = (struct lmp_aq_shape){a->n_out, a->n_in, a->sc.M, a->sc.K, a->sc.g};
        }
    }
    return LMP_OK;
}

/* sum over sequences [s0, s0 + n) of ||block(x) - y||^2 (current parameters). */
static double sq_err(struct run *r, const float *x, const float *y, int64_t n, int64_t per_seq) {
    lmp_block_grad_forward(r->bg, &r->p, x, n, r->yh);
    double e = 0;
    for (int64_t i = 0; i < n * per_seq; i++) {
        double d = (double)r->yh[i] - y[i];
        e += d * d;
    }
    return e;
}

/* -1 when cancel (or the process's stop) interrupts it between minibatches */
static double rel_mse(struct run *r, const float *x, const float *y, int64_t n_seq, int64_t per_seq,
                      int64_t batch, double y2, const atomic_int *cancel) {
    double e = 0;
    for (int64_t s = 0; s < n_seq; s += batch) {
        if (lmp_cancelled(cancel)) return -1.0;
        int64_t n = n_seq - s < batch ? n_seq - s : batch;
        e += sq_err(r, x + s * per_seq, y + s * per_seq, n, per_seq);
    }
    return e / y2;
}

static uint64_t rng_next(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

enum lmp_status lmp_finetune_block(struct lmp_ft_block *blk, const float *x, const float *y,
                                   int64_t n_seq, int64_t seq_len, const struct lmp_ft_opts *opts,
                                   struct lmp_ft_stats *stats, struct lmp_err *err) {
    assert(blk);
    const double       t_start = now_s();
    struct lmp_ft_opts o;
    if (opts)
        o = *opts;
    else
        lmp_ft_opts_init(&o);
    struct run           r        = {0};
    struct lmp_ft_stats  st_local = {0};
    struct lmp_ft_stats *st       = stats ? stats : &st_local;
    memset(st, 0, sizeof(*st));
    enum lmp_status st_code = check_args(blk, x, y, n_seq, seq_len, &o, &r, err);
    if (st_code != LMP_OK) return st_code;

    const struct lmp_config  *c  = blk->cfg;
    const struct lmp_kernels *kt = lmp_kernels_get();
    const int64_t per_seq = seq_len * c->dim, batch = o.batch_seqs < n_seq ? o.batch_seqs : n_seq;
    double        y2 = 0;
    for (int64_t i = 0; i < n_seq * per_seq; i++) y2 += (double)y[i] * y[i];
    if (!(y2 > 0) || !isfinite(y2))
        return lmp_err_set(err, LMP_EINVAL,
                           "block fine-tuning: the targets are all zero or "
                           "not finite");
    /* the process's thread budget, fixed here unless something fixed it before (one
     * count per process: no set-and-restore that concurrent workers would race on) */
    if (o.n_threads > 0) lmp_kernels_set_threads(o.n_threads);

    /* ---- set up: weights the forward reads, gradients, Adam states, entry copies ---- */
    r.cfg               = c;
    bool            ok  = true;
    enum lmp_status bst = lmp_block_grad_new(c, batch, seq_len, &r.bg);
    if (bst != LMP_OK) {
        st_code = bst == LMP_EINVAL ? lmp_err_set(err, LMP_EINVAL,
                                                  "block fine-tuning: attention shape not "
                                                  "supported (%d heads, %d kv heads, head dim %d)",
                                                  c->n_heads, c->n_kv_heads, c->head_dim)
                                    : lmp_err_set(err, LMP_ENOMEM,
                                                  "block fine-tuning: out of memory for the "
                                                  "activations of %lld sequences",
                                                  (long long)batch);
        goto out;
    }
    r.p.attn_norm      = blk->attn_norm;
    r.p.ffn_norm       = blk->ffn_norm;
    r.p.q_norm         = blk->q_norm;
    r.p.k_norm         = blk->k_norm;
    r.p.post_attn_norm = blk->post_attn_norm;
    r.p.post_ffn_norm  = blk->post_ffn_norm;
    r.p.local          = blk->local;
    for (int k = 0; k < LMP_LIN_COUNT && ok; k++) {
        struct lmp_ft_linear *l  = &blk->lin[k];
        const int64_t         nw = r.n_out[k] * r.n_in[k];
        r.p.b[k]                 = l->bias;
        if (l->aq) {
            r.w_own[k] = malloc((size_t)nw * sizeof(float));
            r.dw[k]    = malloc((size_t)nw * sizeof(float));
            ok         = r.w_own[k] && r.dw[k] &&
                 param_init(&r.cb[k], l->aq->codebooks,
                            (int64_t)r.shape[k].M * r.shape[k].K * r.shape[k].g, &o) &&
                 param_init(&r.sc[k], l->aq->scales, r.n_out[k], &o);
            if (!ok) break;
            kt->aq_decode(r.w_own[k], l->aq->codes, l->aq->codebooks, l->aq->scales, &r.shape[k]);
            r.p.w[k] = r.w_own[k];
            r.g.w[k] = r.dw[k];
        } else {
            r.p.w[k] = l->w;
        }
        if (o.train_bias && l->bias) {
            ok       = param_init(&r.bias[k], l->bias, r.n_out[k], &o);
            r.g.b[k] = r.bias[k].g;
        }
    }
    if (ok && o.train_norms) {
        ok = param_init(&r.norm[0], blk->attn_norm, c->dim, &o) &&
             param_init(&r.norm[1], blk->ffn_norm, c->dim, &o);
        r.g.attn_norm = r.norm[0].g;
        r.g.ffn_norm  = r.norm[1].g;
    }
    if (ok && o.train_norms && o.train_extra_norms && c->qk_norm) {
        ok = param_init(&r.norm[2], blk->q_norm, c->head_dim, &o) &&
             param_init(&r.norm[3], blk->k_norm, c->head_dim, &o);
        r.g.q_norm = r.norm[2].g;
        r.g.k_norm = r.norm[3].g;
    }
    if (ok && o.train_norms && o.train_extra_norms && c->post_norms) {
        ok = param_init(&r.norm[4], blk->post_attn_norm, c->dim, &o) &&
             param_init(&r.norm[5], blk->post_ffn_norm, c->dim, &o);
        r.g.post_attn_norm = r.norm[4].g;
        r.g.post_ffn_norm  = r.norm[5].g;
    }
    if (ok) {
        r.xb    = malloc((size_t)(batch * per_seq) * sizeof(float));
        r.yb    = malloc((size_t)(batch * per_seq) * sizeof(float));
        r.yh    = malloc((size_t)(batch * per_seq) * sizeof(float));
        r.order = malloc((size_t)n_seq * sizeof(*r.order));
        ok      = r.xb && r.yb && r.yh && r.order;
    }
    if (!ok) {
        st_code = lmp_err_set(err, LMP_ENOMEM, "block fine-tuning: out of memory");
        goto out;
    }

    /* ---- train ------------------------------------------------------------------------ */
    if ((st->rel_mse_before = rel_mse(&r, x, y, n_seq, per_seq, batch, y2, o.cancel)) < 0) {
        st_code = lmp_err_set(err, LMP_ECANCEL, "block fine-tuning stopped");
        goto out;
    }
    uint64_t rng        = o.seed * 0x9E3779B97F4A7C15ull + 1;
    double   prev_epoch = -1;
    bool     done       = false;
    for (int64_t s = 0; s < n_seq; s++) r.order[s] = s;
    int64_t planned = (int64_t)o.max_epochs * ((n_seq + batch - 1) / batch);
    if (o.max_steps > 0 && o.max_steps < planned) planned = o.max_steps;
    for (int ep = 0; ep < o.max_epochs && !done; ep++) {
        st->n_epochs = ep + 1;
        for (int64_t s = n_seq - 1; s > 0; s--) { /* Fisher-Yates */
            int64_t j = (int64_t)(rng_next(&rng) % (uint64_t)(s + 1)), t = r.order[s];
            r.order[s] = r.order[j];
            r.order[j] = t;
        }
        double  ep_loss  = 0;
        int64_t ep_steps = 0;
        for (int64_t s0 = 0; s0 < n_seq && !done; s0 += batch) {
            const int64_t n = n_seq - s0 < batch ? n_seq - s0 : batch, rows = n * per_seq;
            if (lmp_cancelled(o.cancel)) { /* one Adam step between polls */
                restore(&r, blk);
                st_code = lmp_err_set(err, LMP_ECANCEL, "block fine-tuning stopped at step %lld",
                                      (long long)st->n_steps);
                goto out;
            }
            for (int64_t i = 0; i < n; i++) {
                memcpy(r.xb + i * per_seq, x + r.order[s0 + i] * per_seq,
                       (size_t)per_seq * sizeof(float));
                memcpy(r.yb + i * per_seq, y + r.order[s0 + i] * per_seq,
                       (size_t)per_seq * sizeof(float));
            }
            double e = sq_err(&r, r.xb, r.yb, n, per_seq), yb2 = 0;
            for (int64_t i = 0; i < rows; i++) yb2 += (double)r.yb[i] * r.yb[i];
            if (!(yb2 > 0)) yb2 = y2 / (double)n_seq * (double)n; /* an all-zero batch */
            ep_loss += e / yb2;
            ep_steps++;
            /* L = ||yh - y||^2 / ||y||^2  ->  dL/dyh = 2 (yh - y) / ||y||^2 (into yh) */
            const float f = (float)(2.0 / yb2);
            for (int64_t i = 0; i < rows; i++) r.yh[i] = (r.yh[i] - r.yb[i]) * f;
            for (int k = 0; k < LMP_LIN_COUNT; k++) {
                if (r.dw[k]) memset(r.dw[k], 0, (size_t)(r.n_out[k] * r.n_in[k]) * sizeof(float));
                if (r.bias[k].g) memset(r.bias[k].g, 0, (size_t)r.bias[k].n * sizeof(float));
            }
            for (int i = 0; i < 6; i++)
                if (r.norm[i].g) memset(r.norm[i].g, 0, (size_t)r.norm[i].n * sizeof(float));
            lmp_block_grad_backward(r.bg, &r.p, r.yh, NULL, &r.g);

            for (int k = 0; k < LMP_LIN_COUNT; k++) {
                struct lmp_aq_layer *a = blk->lin[k].aq;
                if (a) {
                    if (kt->aq_grad_dw(r.cb[k].g, r.sc[k].g, r.dw[k], a->codes, a->codebooks,
                                       a->scales, &r.shape[k]) != 0) {
                        restore(&r, blk);
                        st_code = lmp_err_set(err, LMP_ENOMEM, "block fine-tuning: out of memory");
                        goto out;
                    }
                    lmp_aq_adam_step(&r.cb[k].adam, a->codebooks, r.cb[k].g, o.lr);
                    lmp_aq_adam_step(&r.sc[k].adam, a->scales, r.sc[k].g, o.lr);
                    kt->aq_decode(r.w_own[k], a->codes, a->codebooks, a->scales, &r.shape[k]);
                }
                if (r.bias[k].v) lmp_aq_adam_step(&r.bias[k].adam, r.bias[k].v, r.bias[k].g, o.lr);
            }
            for (int i = 0; i < 6; i++)
                if (r.norm[i].v) lmp_aq_adam_step(&r.norm[i].adam, r.norm[i].v, r.norm[i].g, o.lr);
            st->n_steps++;
            if (o.progress) o.progress(o.progress_ctx, st->n_steps, planned, e / yb2);
            if (o.max_steps > 0 && st->n_steps >= o.max_steps) done = true;
        }
        const double mean = ep_loss / (double)ep_steps;
        if (!isfinite(mean)) break; /* diverged: the final check below restores */
        if (prev_epoch > 0 && o.tol > 0 && (prev_epoch - mean) / prev_epoch < o.tol) done = true;
        prev_epoch = mean;
    }
    if ((st->rel_mse_after = rel_mse(&r, x, y, n_seq, per_seq, batch, y2, o.cancel)) < 0) {
        restore(&r, blk);
        st_code = lmp_err_set(err, LMP_ECANCEL, "block fine-tuning stopped");
        goto out;
    }
    if (!(st->rel_mse_after < st->rel_mse_before)) {
        restore(&r, blk);
        st->rel_mse_after = st->rel_mse_before;
        st->restored      = true;
    }

out:
    run_release(&r);
    st->seconds = now_s() - t_start;
    return st_code;
}
