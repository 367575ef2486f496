/*  tune - see tune.h */
#include "worker/tune.h"

#include "base/cancel.h" /* defines: lmp_cancelled */
#include "base/fault.h"  /* defines: lmp_fault_sleep */

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct lmp_tune {
    struct lmp_tune_opts            o;
    struct lmp_model_weights       *student;
    const struct lmp_model_weights *teacher;
    const int32_t                  *tokens;
    int64_t                         n_win, seq_len, step;
    int                             n_lins;
    struct lmp_tune_linear         *lins;
    struct lmp_pv                  *pv;
    struct lmp_model_grad          *mg;
    struct lmp_model_grads_owned   *g;
    float                          *teacher_logits; /* (micro_seqs * seq_len, vocab) */
    int32_t                        *micro;          /* (micro_seqs, seq_len) */
    const float                   **dw;             /* (n_lins) */
    const float                   **dparams;        /* (n_params + 1) */
    int64_t                        *step_arr;       /* "tune.step" of lmp_tune_state */
    /* the exact sums: the gradient tensors the steps use, and their fixed-point sums */
    int      n_sum;
    float  **sum_g; /* (n_sum) float gradient buffers in t->g */
    int64_t *sum_n; /* (n_sum) their lengths */
    int64_t *acc;   /* (sum of sum_n + 3): the tensors, then kl, agree, stop */
    int64_t  n_acc;
    int      n_params; /* trained norms; their gradients in dparams */
    /* pipeline stages (o.pipe): this stage's blocks [s0, s1), the first trained block, and
     * the buffer activations and their gradients arrive in (micro_seqs * seq_len, dim) */
    int32_t  s0, s1, first;
    float   *xin;
    int64_t *xfer;       /* collective transfers: (n_replicas, xfer_bytes / 8) */
    size_t   xfer_bytes; /* the largest transfer: one micro-batch's activations */
    /* owner-only P/V (a communicator of 2+ ranks): the linears this rank steps, the buffer
     * the owners' codes, codebooks and scales are exchanged in after a step (and the state
     * gathered in for a checkpoint), and whether this rank's copy of the owners' state (U,
     * moments) is behind */
    bool    *mine;
    int64_t *xch;
    int64_t  n_xch;
    bool     stale;
    bool     want;   /* this rank wants the next step to end gathered (a checkpoint) */
    int64_t *own_lo; /* (comm size + 1) where each rank's linears start in acc; then the end */
};

void lmp_tune_opts_init(struct lmp_tune_opts *o) {
    memset(o, 0, sizeof(*o));
    o->batch_seqs   = 8;
    o->micro_seqs   = 1;
    o->v_every      = 1;
    o->train_norms  = true;
    o->seed         = 1;
    o->pv.code_frac = -1; /* pv's default */
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* splitmix64 */
static uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z          = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z          = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Window of stream position k: perm_e[k mod n] with e = k / n, perm_e a Fisher-Yates
 * shuffle seeded by (seed, e). O(n) per call; n is the number of windows (thousands). */
static int64_t window_at(uint64_t seed, int64_t n, int64_t k, int64_t *perm) {
    const int64_t e = k / n;
    uint64_t      s = seed ^ (0xD1B54A32D192ED03ull * (uint64_t)(e + 1));
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        const int64_t j = (int64_t)(rng_next(&s) % (uint64_t)(i + 1));
        const int64_t t = perm[i];
        perm[i]         = perm[j];
        perm[j]         = t;
    }
    return perm[k % n];
}

void lmp_tune_destroy(struct lmp_tune **self_p) {
    assert(self_p);
    struct lmp_tune *t = *self_p;
    if (t == NULL) return;
    lmp_pv_destroy(&t->pv);
    lmp_model_grad_destroy(&t->mg);
    lmp_model_grads_free(&t->g);
    free(t->teacher_logits);
    free(t->xin);
    free(t->xfer);
    free(t->micro);
    free(t->dw);
    free(t->dparams);
    free(t->lins);
    free(t->step_arr);
    free(t->sum_g);
    free(t->sum_n);
    free(t->acc);
    free(t->mine);
    free(t->xch);
    free(t->own_lo);
    free(t);
    *self_p = NULL;
}

/* Elements of linear kind k of a block of cfg. */
static int64_t lin_size(const struct lmp_config *c, int k) {
    const int64_t q = (int64_t)c->n_heads * c->head_dim, kv = (int64_t)c->n_kv_heads * c->head_dim;
    switch (k) {
    case LMP_LIN_Q:
        return q * c->dim;
    case LMP_LIN_K:
    case LMP_LIN_V:
        return kv * c->dim;
    case LMP_LIN_O:
        return c->dim * q;
    default:
        return (int64_t)c->hidden_dim * c->dim;
    }
}

/* int64 words holding n elements of `size` bytes (the exchange packs raw bytes). */
static int64_t words_of(int64_t n, int64_t size) {
    return (n * size + 7) / 8;
}

/* Words one linear takes in the exchange: codebooks, scales, codes. */
static int64_t xch_words(const struct lmp_aq_shape *s) {
    return words_of((int64_t)s->M * s->K * s->g, 4) + words_of(s->n_out, 4) +
           words_of(s->n_out * (s->n_in / s->g) * s->M, 2);
}

/* The owner of each linear among R ranks: contiguous runs of linears of about equal
 * weight count (a linear's P/V work is proportional to it), ascending, the same on every
 * rank. */
static void assign_owners(const struct lmp_tune_linear *lins, int n, int R, int *owner) {
    int64_t total = 0, before = 0;
    for (int i = 0; i < n; i++) total += lins[i].pv.shape.n_out * lins[i].pv.shape.n_in;
    for (int i = 0; i < n; i++) {
        const int64_t sz = lins[i].pv.shape.n_out * lins[i].pv.shape.n_in;
        const int     o  = (int)((2 * before + sz) * R / (2 * total));
        owner[i]         = o < R ? o : R - 1;
        before += sz;
    }
}

static bool same_cfg(const struct lmp_config *a, const struct lmp_config *b) {
    return a->n_layers == b->n_layers && a->dim == b->dim && a->hidden_dim == b->hidden_dim &&
           a->n_heads == b->n_heads && a->n_kv_heads == b->n_kv_heads &&
           a->head_dim == b->head_dim && a->vocab_size == b->vocab_size && a->rope == b->rope &&
           a->tied_embeddings == b->tied_embeddings && a->qkv_bias == b->qkv_bias &&
           a->qk_norm == b->qk_norm && a->post_norms == b->post_norms && a->ffn_act == b->ffn_act &&
           a->swa_pattern == b->swa_pattern && a->attn_softcap == b->attn_softcap &&
           a->final_softcap == b->final_softcap;
}

/* Elements of trained norm k of np, per_block of them per tuned block (lmp_tune_new's
 * order: attn, ffn, [q, k], [post_attn, post_ffn]; the final norm last). */
static int64_t norm_len(const struct lmp_config *c, int per_block, int np, int k) {
    const int j = k % per_block;
    return k < np - 1 && c->qk_norm && (j == 2 || j == 3) ? c->head_dim : c->dim;
}

/* The first of the L blocks of stage k of S (stage k owns [lo(k), lo(k + 1))). */
static int32_t stage_lo(int32_t L, int k, int S) {
    return (int32_t)((int64_t)L * k / S);
}

enum lmp_status lmp_tune_new(struct lmp_model_weights       *student,
                             const struct lmp_model_weights *teacher,
                             const struct lmp_tune_linear *lins, int n_lins, const int32_t *tokens,
                             int64_t n_win, int64_t seq_len, const struct lmp_tune_opts *opts,
                             struct lmp_tune **out, struct lmp_err *err) {
    assert(student && teacher && out && (lins || n_lins == 0) && tokens);
    *out                         = NULL;
    struct lmp_tune_opts     o   = {0};
    const struct lmp_config *cfg = &student->cfg;
    if (opts)
        o = *opts;
    else
        lmp_tune_opts_init(&o);
    if (!same_cfg(cfg, &teacher->cfg))
        return lmp_err_set(err, LMP_EINVAL,
                           "tune: the original model's shape differs from the "
                           "compressed model's");
    if (n_win <= 0 || seq_len < 2 || seq_len > cfg->max_seq || o.batch_seqs <= 0 ||
        o.micro_seqs <= 0 || o.v_every < 0)
        return lmp_err_set(
            err, LMP_EINVAL, "tune: bad sizes (windows %lld, length %lld, batch %lld, micro %lld)",
            (long long)n_win, (long long)seq_len, (long long)o.batch_seqs, (long long)o.micro_seqs);
    if (o.micro_seqs > o.batch_seqs) o.micro_seqs = o.batch_seqs;
    for (int64_t i = 0; i < n_win * seq_len; i++)
        if (tokens[i] < 0 || tokens[i] >= cfg->vocab_size)
            return lmp_err_set(err, LMP_EINVAL, "tune: token %d at %lld outside the vocabulary",
                               tokens[i], (long long)i);
    const struct lmp_tune_pipe *q = o.pipe;
    if (q && (q->n_stages < 1 || q->n_stages > cfg->n_layers || q->stage < 0 ||
              q->stage >= q->n_stages || q->n_replicas < 1 || q->replica < 0 ||
              q->replica >= q->n_replicas ||
              (int64_t)q->n_stages * q->n_replicas != (o.comm ? o.comm->size : 1) ||
              (q->n_stages > 1 &&
               ((q->send == NULL) != (q->recv == NULL) || (q->send == NULL && o.comm == NULL)))))
        return lmp_err_set(err, LMP_EINVAL,
                           "tune: %d pipeline stages x %d replicas do not fit %d ranks and %d "
                           "blocks",
                           q->n_stages, q->n_replicas, o.comm ? o.comm->size : 1, cfg->n_layers);
    for (int i = 0; i < n_lins; i++) {
        const struct lmp_tune_linear *l = &lins[i];
        if (l->block < 0 || l->block >= cfg->n_layers || (int)l->kind < 0 ||
            l->kind >= LMP_LIN_COUNT || l->pv.w != student->w[l->block * LMP_LIN_COUNT + l->kind])
            return lmp_err_set(err, LMP_EINVAL, "tune: linear %d is not one of the student's", i);
    }
    struct lmp_tune *t = calloc(1, sizeof(*t));
    if (t == NULL) return lmp_err_set(err, LMP_ENOMEM, "out of memory");
    t->o               = o;
    t->student         = student;
    t->teacher         = teacher;
    t->tokens          = tokens;
    t->n_win           = n_win;
    t->seq_len         = seq_len;
    t->n_lins          = n_lins;
    enum lmp_status st = LMP_ENOMEM;
    /* the tuned blocks: those with a linear given (all when none is); their norms and the
     * final one are trained, and the backward stops at the first of them */
    bool *tuned = calloc((size_t)cfg->n_layers, sizeof(bool));
    if (tuned == NULL) {
        free(t);
        return lmp_err_set(err, LMP_ENOMEM, "out of memory");
    }
    int n_tuned = 0, first = cfg->n_layers - 1;
    for (int i = 0; i < n_lins; i++) tuned[lins[i].block] = true;
    for (int b = 0; b < cfg->n_layers; b++) {
        if (n_lins == 0) tuned[b] = true;
        if (tuned[b]) n_tuned++, first = b < first ? b : first;
    }
    /* per tuned block: attn_norm, ffn_norm, then (Qwen3, Gemma 3) q_norm, k_norm, then
     * (Gemma 3) post_attn_norm, post_ffn_norm; the final norm last */
    const int per_block = 2 + (cfg->qk_norm ? 2 : 0) + (cfg->post_norms ? 2 : 0);
    const int np        = o.train_norms ? per_block * n_tuned + 1 : 0;
    t->lins             = calloc((size_t)(n_lins > 0 ? n_lins : 1), sizeof(*t->lins));
    t->dw               = calloc((size_t)(n_lins > 0 ? n_lins : 1), sizeof(*t->dw));
    t->dparams          = calloc((size_t)np + 1, sizeof(*t->dparams));
    t->micro            = malloc((size_t)(o.micro_seqs * seq_len) * sizeof(int32_t));
    t->s0               = q ? stage_lo(cfg->n_layers, q->stage, q->n_stages) : 0;
    t->s1               = q ? stage_lo(cfg->n_layers, q->stage + 1, q->n_stages) : cfg->n_layers;
    t->first            = first;
    if (t->s1 == cfg->n_layers) /* the last stage computes the loss */
        t->teacher_logits =
            malloc((size_t)(o.micro_seqs * seq_len) * (size_t)cfg->vocab_size * sizeof(float));
    if (q && q->n_stages > 1) {
        t->xfer_bytes = (size_t)(o.micro_seqs * seq_len * cfg->dim) * sizeof(float);
        t->xin        = malloc(t->xfer_bytes);
        if (q->send == NULL)
            t->xfer = calloc((t->xfer_bytes + 7) / 8 * (size_t)q->n_replicas, sizeof(int64_t));
    }
    t->g = lmp_model_grads_new(cfg, false);
    if (!t->lins || !t->dw || !t->dparams || !t->micro || !t->g ||
        (t->s1 == cfg->n_layers && !t->teacher_logits) ||
        (q && q->n_stages > 1 && (!t->xin || (q->send == NULL && !t->xfer))))
        goto fail;
    if (n_lins > 0) memcpy(t->lins, lins, (size_t)n_lins * sizeof(*lins));
    if ((st = lmp_model_grad_new_stage(cfg, o.micro_seqs, seq_len, t->s0, t->s1, &t->mg)) !=
        LMP_OK) {
        if (st == LMP_EINVAL) lmp_err_set(err, st, "tune: a shape the backward cannot run");
        goto fail_set;
    }
    lmp_model_grad_set_first_block(t->mg, first);
    struct lmp_pv_linear *pl = calloc((size_t)(n_lins > 0 ? n_lins : 1), sizeof(*pl));
    struct lmp_pv_param  *pp = calloc((size_t)np + 1, sizeof(*pp));
    if (pl == NULL || pp == NULL) {
        free(pl);
        free(pp);
        goto fail;
    }
    for (int i = 0; i < n_lins; i++) pl[i] = lins[i].pv;
    for (int b = 0, k = 0; np > 0 && b < cfg->n_layers; b++) {
        if (!tuned[b]) continue;
        const struct lmp_block_grads *bg = &t->g->g.blocks[b];
        t->dparams[k]                    = bg->attn_norm;
        pp[k++]                          = (struct lmp_pv_param){student->attn_norm[b], cfg->dim};
        t->dparams[k]                    = bg->ffn_norm;
        pp[k++]                          = (struct lmp_pv_param){student->ffn_norm[b], cfg->dim};
        if (cfg->qk_norm) {
            t->dparams[k] = bg->q_norm;
            pp[k++]       = (struct lmp_pv_param){student->q_norm[b], cfg->head_dim};
            t->dparams[k] = bg->k_norm;
            pp[k++]       = (struct lmp_pv_param){student->k_norm[b], cfg->head_dim};
        }
        if (cfg->post_norms) {
            t->dparams[k] = bg->post_attn_norm;
            pp[k++]       = (struct lmp_pv_param){student->post_attn_norm[b], cfg->dim};
            t->dparams[k] = bg->post_ffn_norm;
            pp[k++]       = (struct lmp_pv_param){student->post_ffn_norm[b], cfg->dim};
        }
    }
    if (np > 0) {
        t->dparams[np - 1] = t->g->g.out_norm;
        pp[np - 1]         = (struct lmp_pv_param){student->out_norm, cfg->dim};
    }
    t->n_params = np;
    st          = lmp_pv_new(pl, n_lins, pp, np, &o.pv, &t->pv);
    free(pl);
    free(pp);
    if (st == LMP_EINVAL) {
        lmp_err_set(err, st, "tune: a quantized linear's shape the P/V steps cannot run");
        goto fail_set;
    }
    if (st != LMP_OK) goto fail;
    t->sum_g = calloc((size_t)(n_lins + np + 1), sizeof(*t->sum_g));
    t->sum_n = calloc((size_t)(n_lins + np + 1), sizeof(*t->sum_n));
    if (t->sum_g == NULL || t->sum_n == NULL) goto fail;
    for (int i = 0; i < n_lins; i++) {
        t->sum_g[t->n_sum]   = t->g->g.blocks[lins[i].block].w[lins[i].kind];
        t->sum_n[t->n_sum++] = lins[i].pv.shape.n_out * lins[i].pv.shape.n_in;
    }
    for (int k = 0; k < np; k++) {
        t->sum_g[t->n_sum]   = (float *)t->dparams[k];
        t->sum_n[t->n_sum++] = norm_len(cfg, per_block, np, k);
    }
    for (int i = 0; i < t->n_sum; i++) t->n_acc += t->sum_n[i];
    t->n_acc += 4;
    if ((t->acc = malloc((size_t)t->n_acc * sizeof(int64_t))) == NULL) goto fail;
    if (o.owner_pv && o.comm && o.comm->size > 1 && n_lins > 0) { /* owner-only P/V */
        if ((t->mine = calloc((size_t)n_lins, sizeof(bool))) == NULL) goto fail;
        /* the exchange buffer: a step's exchange in one piece where it fits in 64 MiB */
        for (int i = 0; i < n_lins; i++) t->n_xch += xch_words(&lins[i].pv.shape);
        if (t->n_xch > (1 << 23)) t->n_xch = 1 << 23;
        if (t->n_xch < (1 << 17)) t->n_xch = 1 << 17;
        if (o.xch_words > 0) t->n_xch = o.xch_words;
        if ((t->xch = malloc((size_t)t->n_xch * sizeof(int64_t))) == NULL ||
            (t->own_lo = calloc((size_t)o.comm->size + 1, sizeof(int64_t))) == NULL)
            goto fail;
        /* rank r's linears: a run [own_lo[r], own_lo[r + 1]) of acc (owners ascend) */
        int *owner = calloc((size_t)n_lins, sizeof(int));
        if (owner == NULL) goto fail;
        assign_owners(lins, n_lins, o.comm->size, owner);
        int64_t off = 0;
        for (int i = 0, r = 0; i <= n_lins; i++) {
            for (; r <= o.comm->size && (i == n_lins || r <= owner[i]); r++) t->own_lo[r] = off;
            if (i < n_lins) {
                t->mine[i] = owner[i] == o.comm->rank;
                off += t->sum_n[i];
            }
        }
        free(owner);
        if (lmp_pv_set_owned(t->pv, t->mine) != LMP_OK) goto fail;
    }
    free(tuned);
    *out = t;
    return LMP_OK;
fail:
    lmp_err_set(err, LMP_ENOMEM, "out of memory setting up tuning");
fail_set:
    free(tuned);
    lmp_tune_destroy(&t);
    return st == LMP_OK ? LMP_ENOMEM : st;
}

int64_t lmp_tune_steps_done(const struct lmp_tune *t) {
    return t->step;
}

/* Teacher logits, then the student's forward and (g non-NULL) backward on t->micro. */
static enum lmp_status micro_batch(struct lmp_tune *t, int64_t n, const struct lmp_model_grads *g,
                                   double *kl, int64_t *agree, struct lmp_err *err) {
    enum lmp_status st;
    const int64_t   rows = n * t->seq_len;
    if ((st = lmp_model_grad_forward(t->mg, &t->teacher->params, t->micro, n, err)) != LMP_OK)
        return st;
    lmp_model_grad_logits(t->mg, &t->teacher->params, 0, rows, t->teacher_logits);
    if ((st = lmp_model_grad_forward(t->mg, &t->student->params, t->micro, n, err)) != LMP_OK)
        return st;
    lmp_model_grad_kl_backward(t->mg, &t->student->params, t->teacher_logits, g, kl, agree);
    return LMP_OK;
}

/* ---- pipeline stages ------------------------------------------------------------------ */

static bool collective(const struct lmp_tune *t) {
    return t->o.pipe->send == NULL;
}

/* Every rank calls move() for every transfer of the schedule, in the same order: n bytes
 * from stage `from` (src, read when have) to stage `to` (dst) of each chain. Point to point,
 * the two stages concerned exchange them; collectively (no send/recv), the transfer is an
 * exact integer sum over all ranks of n_replicas segments, each chain's sender filling its
 * own and everybody else adding zeros. */
static enum lmp_status move(struct lmp_tune *t, int from, int to, const void *src, void *dst,
                            size_t n, bool have, struct lmp_err *err) {
    const struct lmp_tune_pipe *q  = t->o.pipe;
    enum lmp_status             st = LMP_OK;
    if (!collective(t)) {
        if (q->stage == from) st = q->send(q->ctx, to, src, n);
        if (q->stage == to) st = q->recv(q->ctx, from, dst, n);
    } else {
        const int64_t words = (int64_t)((t->xfer_bytes + 7) / 8);
        memset(t->xfer, 0, (size_t)(words * q->n_replicas) * sizeof(int64_t));
        if (q->stage == from && have) memcpy(t->xfer + words * q->replica, src, n);
        st = t->o.comm->sum_i64(t->o.comm->ctx, t->xfer, words * q->n_replicas);
        if (st == LMP_OK && q->stage == to) memcpy(dst, t->xfer + words * q->replica, n);
    }
    if (st != LMP_OK)
        return lmp_err_set(err, st, "tune: stage %d: the transfer from stage %d to %d failed",
                           q->stage, from, to);
    return LMP_OK;
}

/* The forward of params p down the chain: each stage from the tokens (stage 0) or the
 * previous stage's output, to the next. */
static enum lmp_status chain_forward(struct lmp_tune *t, const struct lmp_model_params *p,
                                     int64_t n, bool have, struct lmp_err *err) {
    const struct lmp_tune_pipe *q     = t->o.pipe;
    const size_t                bytes = (size_t)(n * t->seq_len * t->student->cfg.dim) * 4;
    enum lmp_status             st;
    for (int k = 0; k < q->n_stages; k++) {
        if (q->stage == k && have &&
            (st = lmp_model_grad_forward_stage(t->mg, p, t->micro, t->xin, n, err)) != LMP_OK)
            return st;
        if (k < q->n_stages - 1 &&
            (st = move(t, k, k + 1, lmp_model_grad_stage_out(t->mg), t->xin, bytes, have, err)))
            return st;
    }
    return LMP_OK;
}

/* micro_batch on a pipeline stage: its blocks' share of the same computation. kl and
 * agree are set on the last stage (0 elsewhere). !have: this chain has no micro-batch in
 * this round (collective transfers only): the transfers without the computation. */
static enum lmp_status stage_micro_batch(struct lmp_tune *t, int64_t n, bool have,
                                         const struct lmp_model_grads *g, double *kl,
                                         int64_t *agree, struct lmp_err *err) {
    const struct lmp_tune_pipe *q     = t->o.pipe;
    const int                   S     = q->n_stages;
    const bool                  last  = q->stage == S - 1;
    const int64_t               rows  = n * t->seq_len;
    const size_t                bytes = (size_t)(rows * t->student->cfg.dim) * 4;
    enum lmp_status             st;
    if ((st = chain_forward(t, &t->teacher->params, n, have, err)) != LMP_OK) return st;
    if (last && have) lmp_model_grad_logits(t->mg, &t->teacher->params, 0, rows, t->teacher_logits);
    if ((st = chain_forward(t, &t->student->params, n, have, err)) != LMP_OK) return st;
    if (last && have)
        lmp_model_grad_kl_backward(t->mg, &t->student->params, t->teacher_logits, g, kl, agree);
    if (g == NULL) return LMP_OK;
    /* backward up the chain, as far as the first trained block */
    for (int k = S - 1; k >= 0; k--) {
        if (q->stage == k && k < S - 1 && have)
            lmp_model_grad_backward_stage(t->mg, &t->student->params, t->xin, g);
        if (k > 0 && stage_lo(t->student->cfg.n_layers, k, S) > t->first &&
            (st = move(t, k, k - 1, lmp_model_grad_stage_dx(t->mg), t->xin, bytes, have, err)))
            return st;
    }
    return LMP_OK;
}

/* Whether to stop before the next micro-batch: stage 0 decides (its cancel flag) and the
 * other stages take its word (collectively: any chain's stage 0). RET LMP_OK with *stop
 * set, or a transfer's error. */
static enum lmp_status stop_here(struct lmp_tune *t, bool *stop, struct lmp_err *err) {
    const struct lmp_tune_pipe *q = t->o.pipe;
    int64_t                     f = 0;
    if (q == NULL || q->n_stages == 1) {
        *stop = lmp_cancelled(t->o.cancel);
        return LMP_OK;
    }
    if (q->stage == 0) f = lmp_cancelled(t->o.cancel) ? 1 : 0;
    enum lmp_status st = LMP_OK;
    if (collective(t)) {
        int64_t any = f;
        st          = t->o.comm->sum_i64(t->o.comm->ctx, &any, 1);
        f           = any;
    } else {
        for (int k = 0; k < q->n_stages - 1 && st == LMP_OK; k++)
            if (q->stage == k)
                st = q->send(q->ctx, k + 1, &f, sizeof(f));
            else if (q->stage == k + 1)
                st = q->recv(q->ctx, k, &f, sizeof(f));
    }
    if (st != LMP_OK)
        return lmp_err_set(err, st, "tune: stage %d: the word to stop or go did not arrive",
                           q->stage);
    *stop = f != 0;
    return LMP_OK;
}

static enum lmp_status any_micro_batch(struct lmp_tune *t, int64_t n, bool have,
                                       const struct lmp_model_grads *g, double *kl, int64_t *agree,
                                       struct lmp_err *err) {
    *kl    = 0;
    *agree = 0;
    if (t->o.pipe && t->o.pipe->n_stages > 1)
        return stage_micro_batch(t, n, have, g, kl, agree, err);
    return have ? micro_batch(t, n, g, kl, agree, err) : LMP_OK;
}

/* Rounds of micro-batches a step or measurement runs on this rank: its own count, or with
 * collective transfers the largest chain's (every rank takes part in every transfer). */
static int64_t rounds(const struct lmp_tune *t, int64_t mine, int64_t most) {
    return t->o.pipe && t->o.pipe->n_stages > 1 && collective(t) ? most : mine;
}

/* Largest |contribution| of one micro-batch to a fixed-point sum: the step's micro-batches
 * (over all ranks) can then never overflow an int64. */
static int64_t fixed_cap(int64_t n_micro) {
    int64_t cap = INT64_MAX / 2;
    while (n_micro > 1) {
        cap /= 2;
        n_micro = (n_micro + 1) / 2;
    }
    return cap;
}

/* acc[i] += round(g[i] * 2^LMP_TUNE_FIXED_BITS), each term clamped to [-cap, cap]. */
static void add_fixed(int64_t *acc, const float *g, int64_t n, int64_t cap) {
    const double sc = (double)(1ull << LMP_TUNE_FIXED_BITS), lim = (double)cap;
    for (int64_t i = 0; i < n; i++) {
        double v = nearbyint((double)g[i] * sc);
        if (!(v <= lim)) v = isnan(v) ? 0.0 : lim; /* NaN: contributes nothing */
        if (v < -lim) v = -lim;
        acc[i] += (int64_t)v;
    }
}

/* A region of bytes that its owner holds and every rank should have. */
struct share {
    void  *p;
    size_t n;
    bool   own; /* this rank is its owner */
};

/* Every region to every rank (collective; every rank lists the same regions in the same
 * order): exact sums through the exchange buffer, the owner adding its raw bytes and the
 * others zeros, in pieces of at most the buffer's size. RET LMP_OK, LMP_ENOMEM or the
 * communicator's error (the regions not the owner's are then partly overwritten). */
static enum lmp_status share_all(struct lmp_tune *t, const struct share *r, int n_r) {
    struct piece {
        char  *dst; /* NULL: this rank's own */
        size_t n, at;
    } *pc = malloc((size_t)(n_r + 1) * sizeof(*pc)); /* a flush holds a piece per region */
    if (pc == NULL) return LMP_ENOMEM;
    const size_t    cap  = (size_t)t->n_xch * sizeof(int64_t);
    size_t          used = 0, n_pc = 0;
    enum lmp_status st = LMP_OK;
    memset(t->xch, 0, cap);
    for (int k = 0; k <= n_r && st == LMP_OK; k++) {
        const bool   last  = k == n_r;
        const size_t bytes = last ? 0 : r[k].n;
        size_t       pos   = 0;
        for (;;) {
            if (used == cap || (last && pos == bytes)) { /* flush */
                if (used > 0 && (st = t->o.comm->sum_i64(t->o.comm->ctx, t->xch,
                                                         (int64_t)(used / 8))) != LMP_OK)
                    break;
                for (size_t j = 0; j < n_pc; j++)
                    if (pc[j].dst) memcpy(pc[j].dst, (char *)t->xch + pc[j].at, pc[j].n);
                memset(t->xch, 0, used);
                used = n_pc = 0;
            }
            if (pos == bytes) break;
            const size_t take = bytes - pos < cap - used ? bytes - pos : cap - used;
            if (r[k].own) memcpy((char *)t->xch + used, (char *)r[k].p + pos, take);
            pc[n_pc++] = (struct piece){r[k].own ? NULL : (char *)r[k].p + pos, take, used};
            used += (take + 7) / 8 * 8;
            pos += take;
        }
    }
    free(pc);
    return st;
}

/* After an owner-only P/V step: every owner's codebooks, scales and (codes: after a V
 * step) codes to every rank, which then decodes the linears it does not own; and the V
 * step's counts summed. vs comes in with this rank's counts and goes out with the sum. */
static enum lmp_status exchange(struct lmp_tune *t, bool codes, struct lmp_pv_v_stats *vs,
                                struct lmp_err *err) {
    t->stale        = true; /* from here until a gather: and after a failure, for good */
    struct share *r = malloc((size_t)(3 * t->n_lins) * sizeof(*r));
    if (r == NULL) return lmp_err_set(err, LMP_ENOMEM, "out of memory");
    int n = 0;
    for (int i = 0; i < t->n_lins; i++) {
        const struct lmp_pv_linear *l = &t->lins[i].pv;
        const struct lmp_aq_shape  *s = &l->shape;
        const int64_t n_c = s->n_out * (s->n_in / s->g) * s->M, n_cb = (int64_t)s->M * s->K * s->g;
        r[n++] = (struct share){l->cb, (size_t)n_cb * sizeof(float), t->mine[i]};
        r[n++] = (struct share){l->scale, (size_t)s->n_out * sizeof(float), t->mine[i]};
        if (codes) r[n++] = (struct share){l->codes, (size_t)n_c * sizeof(uint16_t), t->mine[i]};
    }
    enum lmp_status st    = share_all(t, r, n);
    int64_t         nv[2] = {vs->n_changed, vs->n_selected};
    free(r);
    if (st == LMP_OK) st = t->o.comm->sum_i64(t->o.comm->ctx, nv, 2);
    if (st != LMP_OK)
        return lmp_err_set(err, st, "tune: the exchange of the stepped codebooks failed");
    for (int i = 0; i < t->n_lins; i++)
        if (!t->mine[i]) lmp_pv_decode(t->pv, i);
    vs->n_changed  = nv[0];
    vs->n_selected = nv[1];
    return LMP_OK;
}

void lmp_tune_want_checkpoint(struct lmp_tune *t) {
    assert(t);
    t->want = true;
}

/* Under owner-only P/V: every owner's U and moments to every rank (collective), so that any
 * rank's state is whole. Nothing to do without it. */
static enum lmp_status gather_state(struct lmp_tune *t, struct lmp_err *err) {
    if (t->mine == NULL || !t->stale) return LMP_OK;
    struct lmp_pv_array *a  = NULL;
    int                  na = 0;
    enum lmp_status      st = lmp_pv_state(t->pv, &a, &na);
    struct share        *r  = st == LMP_OK ? malloc((size_t)(na + 1) * sizeof(*r)) : NULL;
    if (r == NULL) {
        free(a);
        return lmp_err_set(err, LMP_ENOMEM, "out of memory");
    }
    int n = 0;
    for (int k = 0; k < na; k++)
        if (a[k].local && a[k].lin >= 0 && a[k].f32)
            r[n++] = (struct share){a[k].f32, (size_t)a[k].n * sizeof(float), t->mine[a[k].lin]};
    st = share_all(t, r, n);
    free(r);
    free(a);
    if (st != LMP_OK)
        return lmp_err_set(err, st, "tune: gathering the tuning state for a checkpoint failed");
    t->stale = false;
    return LMP_OK;
}

/* The step's integer sums over the ranks: one sum of everything, or under owner-only P/V
 * with a reduce, each owner's run of linear gradients to it alone (the others never read
 * them: half the traffic of everybody receiving everything) and the norms and statistics
 * after them to all. */
static enum lmp_status sum_grads(struct lmp_tune *t) {
    const struct lmp_tune_comm *c = t->o.comm;
    if (t->mine == NULL || c->reduce_i64 == NULL) return c->sum_i64(c->ctx, t->acc, t->n_acc);
    for (int r = 0; r < c->size; r++) {
        const int64_t   n  = t->own_lo[r + 1] - t->own_lo[r];
        enum lmp_status st = n > 0 ? c->reduce_i64(c->ctx, r, t->acc + t->own_lo[r], n) : LMP_OK;
        if (st != LMP_OK) return st;
    }
    const int64_t end = t->own_lo[c->size];
    return c->sum_i64(c->ctx, t->acc + end, t->n_acc - end);
}

enum lmp_status lmp_tune_step(struct lmp_tune *t, struct lmp_tune_step_stats *stats,
                              struct lmp_err *err) {
    assert(t);
    const double                t0 = now_s();
    const int64_t               B = t->o.batch_seqs, mu = t->o.micro_seqs, T = t->seq_len;
    const struct lmp_tune_comm *c       = t->o.comm;
    const int64_t               n_micro = (B + mu - 1) / mu;
    const struct lmp_tune_pipe *q       = t->o.pipe;
    const int R = q ? q->n_replicas : c ? c->size : 1, r = q ? q->replica : c ? c->rank : 0;
    /* this rank's (or chain's) contiguous share of the micro-batches */
    const int64_t m0 = n_micro * r / R, m1 = n_micro * (r + 1) / R, cap = fixed_cap(n_micro);
    int64_t      *perm = malloc((size_t)t->n_win * sizeof(int64_t));
    if (perm == NULL) return lmp_err_set(err, LMP_ENOMEM, "out of memory");
    lmp_fault_sleep("LMP_FAULT_ROUND_SLEEP_MS"); /* tests: a slow step */
    memset(t->acc, 0, (size_t)t->n_acc * sizeof(int64_t));
    int64_t *const acc_stats = t->acc + t->n_acc - 4; /* kl (fixed point), agree, stop,
                                                       * checkpoint wanted */
    double        kl_sum   = 0;
    const int64_t n_rounds = rounds(t, m1 - m0, (n_micro + R - 1) / R);
    for (int64_t m = m0; m < m0 + n_rounds; m++) {
        bool            stop = false;
        enum lmp_status st   = stop_here(t, &stop, err);
        if (st != LMP_OK) {
            free(perm);
            return st;
        }
        if (stop) {
            acc_stats[2] = 1;
            break;
        }
        const bool    have = m < m1;
        const int64_t i0 = m * mu, n = !have ? mu : B - i0 < mu ? B - i0 : mu;
        for (int64_t s = 0; have && s < n; s++) {
            const int64_t w = window_at(t->o.seed, t->n_win, t->step * B + i0 + s, perm);
            memcpy(t->micro + s * T, t->tokens + w * T, (size_t)T * sizeof(int32_t));
        }
        double  kl = 0;
        int64_t ag = 0;
        lmp_model_grads_zero(t->g);
        st = any_micro_batch(t, n, have, &t->g->g, &kl, &ag, err);
        if (st != LMP_OK) {
            free(perm);
            return st;
        }
        if (!have) continue;
        int64_t off = 0;
        for (int i = 0; i < t->n_sum; i++) {
            add_fixed(t->acc + off, t->sum_g[i], t->sum_n[i], cap);
            off += t->sum_n[i];
        }
        kl_sum += kl * (double)n; /* kl is the micro-batch's row mean */
        acc_stats[1] += ag;
    }
    free(perm);
    acc_stats[0]    = (int64_t)nearbyint(kl_sum * 1e12); /* stats: exact to 1e-12 nats */
    acc_stats[3]    = t->want ? 1 : 0;
    const double t1 = now_s();
    if (c) {
        enum lmp_status st = sum_grads(t);
        if (st != LMP_OK) return lmp_err_set(err, st, "tune: the ranks' gradient sum failed");
    }
    /* every rank now knows whether to stop and whether some rank wants a checkpoint */
    const bool gather = acc_stats[3] > 0;
    t->want           = false;
    if (acc_stats[2] > 0) { /* stopped: the state of the last step, gathered for the lead */
        enum lmp_status st = gather_state(t, err);
        return st != LMP_OK ? st : lmp_err_set(err, LMP_ECANCEL, "tuning cancelled");
    }
    /* the mean over the step's micro-batches, back in the gradient buffers */
    const double inv = 1.0 / ((double)(1ull << LMP_TUNE_FIXED_BITS) * (double)n_micro);
    int64_t      off = 0;
    for (int i = 0; i < t->n_sum; i++) {
        float *g = t->sum_g[i];
        if (!(i < t->n_lins && t->mine && !t->mine[i])) /* another rank steps that one */
            for (int64_t k = 0; k < t->sum_n[i]; k++) g[k] = (float)((double)t->acc[off + k] * inv);
        off += t->sum_n[i];
    }
    for (int i = 0; i < t->n_lins; i++)
        t->dw[i] = t->g->g.blocks[t->lins[i].block].w[t->lins[i].kind];
    const double          t2 = now_s();
    enum lmp_status       st = lmp_pv_p_step(t->pv, t->dw, t->n_params ? t->dparams : NULL);
    struct lmp_pv_v_stats vs = {0};
    const bool            v  = t->o.v_every > 0 && (t->step + 1) % t->o.v_every == 0;
    if (st == LMP_OK && v) st = lmp_pv_v_step(t->pv, t->dw, &vs);
    if (st != LMP_OK) return lmp_err_set(err, st, "out of memory in a P/V step");
    if (t->mine && (st = exchange(t, v, &vs, err)) != LMP_OK) return st;
    t->step++;
    const double t3 = now_s(); /* a checkpoint's gather counts in the step, not in its P/V */
    if (gather && (st = gather_state(t, err)) != LMP_OK) return st;
    if (stats)
        *stats = (struct lmp_tune_step_stats){
            .step           = t->step,
            .kl             = (double)acc_stats[0] * 1e-12 / (double)B,
            .agree          = (double)acc_stats[1] / (double)(B * T),
            .rows           = B * T,
            .codes_changed  = vs.n_changed,
            .codes_selected = vs.n_selected,
            .seconds        = now_s() - t0,
            .seconds_sum    = t2 - t1,
            .seconds_pv     = t3 - t2,
            .gathered       = gather,
        };
    return LMP_OK;
}

enum lmp_status lmp_tune_measure(struct lmp_tune *t, const int32_t *tokens, int64_t n, double *kl,
                                 double *agree, struct lmp_err *err) {
    assert(t && tokens && kl && agree && n > 0);
    const struct lmp_tune_comm *c = t->o.comm;
    const struct lmp_tune_pipe *q = t->o.pipe;
    const int     R = q ? q->n_replicas : c ? c->size : 1, r = q ? q->replica : c ? c->rank : 0;
    double        sums[3] = {0, 0, 0}; /* kl, agree, stop: this rank's share */
    const int64_t mu = t->o.micro_seqs, b = n * r / R, e = n * (r + 1) / R;
    const int64_t n_rounds = rounds(t, (e - b + mu - 1) / mu, ((n + R - 1) / R + mu - 1) / mu);
    for (int64_t k = 0; k < n_rounds; k++) {
        const int64_t   i0   = b + k * mu;
        const bool      have = i0 < e;
        bool            stop = false;
        enum lmp_status st   = stop_here(t, &stop, err);
        if (st != LMP_OK) return st;
        if (stop) {
            sums[2] = 1;
            break;
        }
        const int64_t m = !have ? mu : e - i0 < mu ? e - i0 : mu;
        if (have)
            memcpy(t->micro, tokens + i0 * t->seq_len, (size_t)(m * t->seq_len) * sizeof(int32_t));
        double  kk = 0;
        int64_t ag = 0;
        if ((st = any_micro_batch(t, m, have, NULL, &kk, &ag, err)) != LMP_OK) return st;
        sums[0] += kk * (double)m;
        sums[1] += (double)ag;
    }
    if (c) {
        enum lmp_status st = c->sum_f64(c->ctx, sums, 3);
        if (st != LMP_OK) return lmp_err_set(err, st, "tune: the ranks' sum failed");
    }
    if (sums[2] > 0) return lmp_err_set(err, LMP_ECANCEL, "tuning cancelled");
    *kl    = sums[0] / (double)n;
    *agree = sums[1] / (double)(n * t->seq_len);
    return LMP_OK;
}

enum lmp_status lmp_tune_state(struct lmp_tune *t, struct lmp_pv_array **arrays, int *n) {
    assert(t && arrays && n);
    if (t->stale) return LMP_EINVAL;
    if (t->step_arr == NULL && (t->step_arr = calloc(1, sizeof(int64_t))) == NULL)
        return LMP_ENOMEM;
    struct lmp_pv_array *a  = NULL;
    int                  na = 0;
    enum lmp_status      st = lmp_pv_state(t->pv, &a, &na);
    if (st != LMP_OK) return st;
    struct lmp_pv_array *b = realloc(a, (size_t)(na + 1) * sizeof(*a));
    if (b == NULL) {
        free(a);
        return LMP_ENOMEM;
    }
    t->step_arr[0] = t->step;
    memset(&b[na], 0, sizeof(b[na]));
    strcpy(b[na].name, "tune.step");
    b[na].lin = -1;
    b[na].i64 = t->step_arr;
    b[na].n   = 1;
    *arrays   = b;
    *n        = na + 1;
    return LMP_OK;
}

void lmp_tune_state_loaded(struct lmp_tune *t) {
    assert(t && t->step_arr);
    t->step  = t->step_arr[0];
    t->stale = false;
    lmp_pv_state_loaded(t->pv);
}

enum lmp_status lmp_tune_probe(const struct lmp_model_weights *student,
                               const struct lmp_model_weights *teacher, const int32_t *tokens,
                               int64_t n, int64_t seq_len, const atomic_int *cancel, double *score,
                               struct lmp_err *err) {
    assert(student && teacher && tokens && score && n > 0);
    const struct lmp_config *cfg = &student->cfg;
    struct lmp_model_grad   *mg  = NULL;
    enum lmp_status          st  = lmp_model_grad_new(cfg, 1, seq_len, &mg);
    if (st != LMP_OK) return lmp_err_set(err, st, "tune: cannot set up the block probe");
    struct lmp_model_grads_owned *g = lmp_model_grads_new(cfg, false);
    float *tl = malloc((size_t)seq_len * (size_t)cfg->vocab_size * sizeof(float));
    if (g == NULL || tl == NULL) {
        st = lmp_err_set(err, LMP_ENOMEM, "out of memory in the block probe");
        goto out;
    }
    for (int64_t w = 0; w < n; w++) {
        if (lmp_cancelled(cancel)) {
            st = lmp_err_set(err, LMP_ECANCEL, "tuning cancelled");
            goto out;
        }
        const int32_t *tok = tokens + w * seq_len;
        if ((st = lmp_model_grad_forward(mg, &teacher->params, tok, 1, err))) goto out;
        lmp_model_grad_logits(mg, &teacher->params, 0, seq_len, tl);
        if ((st = lmp_model_grad_forward(mg, &student->params, tok, 1, err))) goto out;
        lmp_model_grad_kl_backward(mg, &student->params, tl, &g->g, NULL, NULL);
    }
    for (int b = 0; b < cfg->n_layers; b++) {
        const struct lmp_block_grads *bg = &g->g.blocks[b];
        double                        s  = 0;
        for (int k = 0; k < LMP_LIN_COUNT; k++) {
            const int64_t m = student->w[b * LMP_LIN_COUNT + k] ? (int64_t)lin_size(cfg, k) : 0;
            for (int64_t i = 0; i < m; i++) s += fabs((double)bg->w[k][i]);
        }
        for (int64_t i = 0; i < cfg->dim; i++)
            s += fabs((double)bg->attn_norm[i]) + fabs((double)bg->ffn_norm[i]);
        for (int64_t i = 0; cfg->qk_norm && i < cfg->head_dim; i++)
            s += fabs((double)bg->q_norm[i]) + fabs((double)bg->k_norm[i]);
        for (int64_t i = 0; cfg->post_norms && i < cfg->dim; i++)
            s += fabs((double)bg->post_attn_norm[i]) + fabs((double)bg->post_ffn_norm[i]);
        score[b] = s / (double)n;
    }
out:
    free(tl);
    lmp_model_grads_free(&g);
    lmp_model_grad_destroy(&mg);
    return st;
}
