/*  pv - see pv.h
 *
 *  V step, per linear: the distance of every group (o, j), d = ||U[o, jg:(j+1)g] -
 *  W_hat[o, jg:(j+1)g]||^2, is computed in double; the n_sel = floor(code_frac n_grp)
 *  largest (ties to the lower group index; groups at distance 0 are never worth a search)
 *  are packed as rows of one aq_beam call of shape (n_sel, g) with H = I_g: target U's
 *  group, the row's scale, the group's M codes. The beam's objective is then exactly the
 *  group's squared L2 distance, and its per-row loss output is the distance after.
 */
#include "worker/pv.h"

#include "worker/aq.h" /* defines: struct lmp_aq_adam, lmp_aq_adam_* */

#include <assert.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct pv_lin {
    struct lmp_pv_linear l;
    float               *u;                  /* (n_out, n_in) straight-through buffer */
    float               *g_cb, *g_scale;     /* (M, K, g), (n_out) */
    struct lmp_aq_adam   a_cb, a_scale, a_u; /* P: codebooks, scales; V: the buffer */
};

struct lmp_pv {
    struct lmp_pv_opts   o;
    int                  n_lins, n_params;
    struct pv_lin       *lins;    /* (n_lins) */
    struct lmp_pv_param *params;  /* (n_params) */
    struct lmp_aq_adam  *a_param; /* (n_params) */
    int64_t             *adam_t;  /* every Adam's step count, for lmp_pv_state (or NULL) */
    bool                *mine;    /* (n_lins) the linears this process steps; NULL: all */
};

static bool owns(const struct lmp_pv *pv, int i) {
    return pv->mine == NULL || pv->mine[i];
}

/* The dense buffer of a linear from its codes, codebooks and scales (the kernel's decode,
 * bit for bit, wherever it is rewritten). */
static void lin_decode(struct pv_lin *p) {
    lmp_kernels_get()->aq_decode(p->l.w, p->l.codes, p->l.cb, p->l.scale, &p->l.shape);
}

static void lin_release(struct pv_lin *p) {
    free(p->u);
    free(p->g_cb);
    free(p->g_scale);
    lmp_aq_adam_release(&p->a_cb);
    lmp_aq_adam_release(&p->a_scale);
    lmp_aq_adam_release(&p->a_u);
}

void lmp_pv_destroy(struct lmp_pv **self_p) {
    assert(self_p);
    struct lmp_pv *pv = *self_p;
    if (pv == NULL) return;
    for (int i = 0; pv->lins && i < pv->n_lins; i++) lin_release(&pv->lins[i]);
    for (int i = 0; pv->a_param && i < pv->n_params; i++) lmp_aq_adam_release(&pv->a_param[i]);
    free(pv->lins);
    free(pv->params);
    free(pv->a_param);
    free(pv->adam_t);
    free(pv->mine);
    free(pv);
    *self_p = NULL;
}

float lmp_pv_default_code_lr(double bits_per_weight) {
    double b = bits_per_weight;
    if (!(b > 2.0)) b = 2.0; /* NaN too */
    if (b > 4.0) b = 4.0;
    return (float)(3e-3 * pow(6.0, -(b - 2.0) / 2.0));
}

void lmp_pv_opts_resolve(struct lmp_pv_opts *o) {
    if (o->lr <= 0) o->lr = 1e-4f;
    if (o->beta1 <= 0) o->beta1 = 0.9f;
    if (o->beta2 <= 0) o->beta2 = 0.95f;
    if (o->code_lr <= 0) o->code_lr = 3e-3f;
    if (o->code_beta2 <= 0) o->code_beta2 = 0.95f;
    if (o->code_frac < 0) o->code_frac = 0.01;
    if (o->beam <= 0) o->beam = 8;
}

enum lmp_status lmp_pv_new(const struct lmp_pv_linear *lins, int n_lins,
                           const struct lmp_pv_param *params, int n_params,
                           const struct lmp_pv_opts *opts, struct lmp_pv **out) {
    assert(out && n_lins >= 0 && n_params >= 0 && (lins || n_lins == 0) &&
           (params || n_params == 0));
    *out = NULL;
    for (int i = 0; i < n_lins; i++) {
        const struct lmp_aq_shape *s = &lins[i].shape;
        if (s->n_out <= 0 || s->g <= 0 || s->n_in <= 0 || s->n_in % s->g != 0 || s->M <= 0 ||
            s->K <= 0 || s->K > 65536)
            return LMP_EINVAL;
    }
    struct lmp_pv *pv = calloc(1, sizeof(*pv));
    if (pv == NULL) return LMP_ENOMEM;
    struct lmp_pv_opts o = opts ? *opts : (struct lmp_pv_opts){.code_frac = -1};
    lmp_pv_opts_resolve(&o);
    pv->o        = o;
    pv->n_lins   = n_lins;
    pv->n_params = n_params;
    pv->lins     = calloc((size_t)(n_lins > 0 ? n_lins : 1), sizeof(*pv->lins));
    pv->params   = calloc((size_t)(n_params > 0 ? n_params : 1), sizeof(*pv->params));
    pv->a_param  = calloc((size_t)(n_params > 0 ? n_params : 1), sizeof(*pv->a_param));
    if (pv->lins == NULL || pv->params == NULL || pv->a_param == NULL) goto oom;
    if (n_params > 0) memcpy(pv->params, params, (size_t)n_params * sizeof(*params));
    for (int i = 0; i < n_params; i++)
        if (lmp_aq_adam_init(&pv->a_param[i], params[i].n, o.beta1, o.beta2) != LMP_OK) goto oom;
    for (int i = 0; i < n_lins; i++) {
        struct pv_lin             *p  = &pv->lins[i];
        const struct lmp_aq_shape *s  = &lins[i].shape;
        const int64_t              nw = s->n_out * s->n_in, nc = (int64_t)s->M * s->K * s->g;
        p->l       = lins[i];
        p->u       = malloc((size_t)nw * sizeof(float));
        p->g_cb    = malloc((size_t)nc * sizeof(float));
        p->g_scale = malloc((size_t)s->n_out * sizeof(float));
        if (p->u == NULL || p->g_cb == NULL || p->g_scale == NULL ||
            lmp_aq_adam_init(&p->a_cb, nc, o.beta1, o.beta2) != LMP_OK ||
            lmp_aq_adam_init(&p->a_scale, s->n_out, o.beta1, o.beta2) != LMP_OK ||
            lmp_aq_adam_init(&p->a_u, nw, 0.0f, o.code_beta2) != LMP_OK)
            goto oom;
        lin_decode(p);
        memcpy(p->u, p->l.w, (size_t)nw * sizeof(float));
    }
    *out = pv;
    return LMP_OK;
oom:
    lmp_pv_destroy(&pv);
    return LMP_ENOMEM;
}

enum lmp_status lmp_pv_set_owned(struct lmp_pv *pv, const bool *mine) {
    assert(pv);
    free(pv->mine);
    pv->mine = NULL;
    if (mine == NULL) return LMP_OK;
    if ((pv->mine = malloc((size_t)(pv->n_lins > 0 ? pv->n_lins : 1) * sizeof(bool))) == NULL)
        return LMP_ENOMEM;
    if (pv->n_lins > 0) memcpy(pv->mine, mine, (size_t)pv->n_lins * sizeof(bool));
    return LMP_OK;
}

void lmp_pv_decode(struct lmp_pv *pv, int i) {
    assert(pv && i >= 0 && i < pv->n_lins);
    lin_decode(&pv->lins[i]);
}

const float *lmp_pv_buffer(const struct lmp_pv *pv, int i) {
    assert(pv && i >= 0 && i < pv->n_lins);
    return pv->lins[i].u;
}

/* ---- P step ----------------------------------------------------------------------------- */

/* One step on x (a->n): Adam's, or with lamb LAMB's layer-wise trust ratio (You et al.,
 * 2020): the Adam direction d is scaled so the step is lr ||x|| / ||d|| x d, i.e. lr is a
 * fraction of the tensor's norm, whatever its scale (codebooks, row scales and norms differ
 * by orders of magnitude). Same arithmetic order everywhere: deterministic. */
static void p_update(struct lmp_aq_adam *a, float *x, const float *grad, float lr, bool lamb) {
    if (!lamb) {
        lmp_aq_adam_step(a, x, grad, lr);
        return;
    }
    a->t++;
    const double c1 = 1.0 - pow(a->beta1, (double)a->t), c2 = 1.0 - pow(a->beta2, (double)a->t);
    double       xx = 0, dd = 0;
    for (int64_t i = 0; i < a->n; i++) {
        a->m[i]        = a->beta1 * a->m[i] + (1.0f - a->beta1) * grad[i];
        a->v[i]        = a->beta2 * a->v[i] + (1.0f - a->beta2) * grad[i] * grad[i];
        const double d = (a->m[i] / c1) / (sqrt(a->v[i] / c2) + a->eps);
        xx += (double)x[i] * x[i];
        dd += d * d;
    }
    const double r = xx > 0 && dd > 0 ? sqrt(xx / dd) : 1.0;
    for (int64_t i = 0; i < a->n; i++) {
        const double d = (a->m[i] / c1) / (sqrt(a->v[i] / c2) + a->eps);
        x[i] -= (float)(lr * r * d);
    }
}

enum lmp_status lmp_pv_p_step(struct lmp_pv *pv, const float *const *dw,
                              const float *const *dparams) {
    assert(pv);
    const struct lmp_kernels *kt = lmp_kernels_get();
    for (int i = 0; dw && i < pv->n_lins; i++) {
        struct pv_lin *p = &pv->lins[i];
        if (dw[i] == NULL) continue;
        if (!owns(pv, i)) { /* the owner steps it; the step numbers stay the owner's */
            p->a_cb.t++;
            p->a_scale.t++;
            continue;
        }
        if (kt->aq_grad_dw(p->g_cb, p->g_scale, dw[i], p->l.codes, p->l.cb, p->l.scale,
                           &p->l.shape) != 0)
            return LMP_ENOMEM;
        p_update(&p->a_cb, p->l.cb, p->g_cb, pv->o.lr, pv->o.lamb);
        p_update(&p->a_scale, p->l.scale, p->g_scale, pv->o.lr, pv->o.lamb);
        lin_decode(p);
    }
    for (int i = 0; dparams && i < pv->n_params; i++)
        if (dparams[i])
            p_update(&pv->a_param[i], pv->params[i].x, dparams[i], pv->o.lr, pv->o.lamb);
    return LMP_OK;
}

/* ---- V step ----------------------------------------------------------------------------- */

struct grp {
    double  d;    /* squared distance of U's group to W_hat's */
    int64_t i;    /* group index o * n_grp + j */
    int64_t rank; /* 0 = the farthest */
};

static int by_distance_desc(const void *a, const void *b) {
    const struct grp *x = a, *y = b;
    if (x->d != y->d) return x->d < y->d ? 1 : -1;
    return x->i < y->i ? -1 : x->i > y->i;
}

static int by_index(const void *a, const void *b) {
    const struct grp *x = a, *y = b;
    return x->i < y->i ? -1 : x->i > y->i;
}

static double dist2(const float *a, const float *b, int g) {
    double s = 0;
    for (int t = 0; t < g; t++) {
        const double d = (double)a[t] - (double)b[t];
        s += d * d;
    }
    return s;
}

/* Re-encode the n_sel farthest groups of one linear. RET LMP_OK or LMP_ENOMEM. */
static enum lmp_status reencode(struct pv_lin *p, double frac, int beam, double trust,
                                struct lmp_pv_v_stats *st) {
    const struct lmp_kernels  *kt = lmp_kernels_get();
    const struct lmp_aq_shape *s  = &p->l.shape;
    const int                  g = s->g, M = s->M;
    const int64_t              n_grp = s->n_in / g, total = s->n_out * n_grp;
    int64_t                    n_sel = (int64_t)(frac * (double)total);
    st->n_groups += total;
    if (n_sel <= 0) return LMP_OK;
    if (n_sel > total) n_sel = total;
    /* the n_sel farthest groups: a min-heap (by the total order "farther, then lower index")
     * of the best so far, O(total log n_sel) instead of sorting every group */
    struct grp *gr = malloc((size_t)n_sel * sizeof(*gr));
    if (gr == NULL) return LMP_ENOMEM;
    int64_t n_heap = 0;
    for (int64_t i = 0; i < total; i++) {
        const struct grp c = {dist2(p->u + i * g, p->l.w + i * g, g), i, 0};
        if (n_heap < n_sel) {
            int64_t k = n_heap++;
            while (k > 0 && by_distance_desc(&c, &gr[(k - 1) / 2]) > 0) {
                gr[k] = gr[(k - 1) / 2];
                k     = (k - 1) / 2;
            }
            gr[k] = c;
        } else if (by_distance_desc(&c, &gr[0]) < 0) { /* c ranks before the heap's worst */
            int64_t k = 0;
            for (;;) {
                int64_t ch = 2 * k + 1;
                if (ch >= n_sel) break;
                if (ch + 1 < n_sel && by_distance_desc(&gr[ch + 1], &gr[ch]) > 0) ch++;
                if (by_distance_desc(&gr[ch], &c) <= 0) break;
                gr[k] = gr[ch];
                k     = ch;
            }
            gr[k] = c;
        }
    }
    qsort(gr, (size_t)n_sel, sizeof(*gr), by_distance_desc);
    while (n_sel > 0 && gr[n_sel - 1].d == 0) n_sel--; /* nothing to gain there */
    for (int64_t r = 0; r < n_sel; r++) gr[r].rank = r;
    qsort(gr, (size_t)n_sel, sizeof(*gr), by_index); /* memory order */

    enum lmp_status st_ = LMP_OK;
    float          *tw  = malloc((size_t)(n_sel * g + g * g + n_sel + 1) * sizeof(float));
    uint16_t       *tc  = malloc((size_t)(n_sel * M + 1) * sizeof(uint16_t));
    double         *lo  = malloc((size_t)(n_sel + 1) * sizeof(double));
    if (tw == NULL || tc == NULL || lo == NULL) {
        st_ = LMP_ENOMEM;
        goto out;
    }
    float *h = tw + n_sel * g, *sc = h + g * g; /* H = I_g; per packed row, its scale */
    memset(h, 0, (size_t)(g * g) * sizeof(float));
    for (int t = 0; t < g; t++) h[t * g + t] = 1.0f;
    for (int64_t r = 0; r < n_sel; r++) {
        const int64_t i = gr[r].i;
        memcpy(tw + r * g, p->u + i * g, (size_t)g * sizeof(float));
        memcpy(tc + r * M, p->l.codes + i * M, (size_t)M * sizeof(uint16_t));
        sc[r] = p->l.scale[i / n_grp];
        st->dist_before += gr[r].d;
    }
    const struct lmp_aq_shape ps = {.n_out = n_sel, .n_in = g, .M = M, .K = s->K, .g = g};
    if (kt->aq_beam(tc, lo, tw, sc, p->l.cb, h, &ps, beam, NULL) != 0) {
        st_ = LMP_ENOMEM;
        goto out;
    }
    st->n_selected += n_sel;
    if (trust > 0) { /* keep the new codes of the farthest groups while the change of the
                      * decoded weight stays within trust x its norm; revert the rest */
        double w2 = 0, used = 0;
        for (int64_t k = 0; k < s->n_out * s->n_in; k++) w2 += (double)p->l.w[k] * p->l.w[k];
        const double budget  = trust * trust * w2;
        int64_t     *by_rank = malloc((size_t)n_sel * sizeof(int64_t));
        float       *nw      = malloc((size_t)g * sizeof(float));
        if (by_rank == NULL || nw == NULL) {
            free(by_rank);
            free(nw);
            st_ = LMP_ENOMEM;
            goto out;
        }
        for (int64_t r = 0; r < n_sel; r++) by_rank[gr[r].rank] = r;
        bool full = false;
        for (int64_t k = 0; k < n_sel; k++) {
            const int64_t r = by_rank[k], i = gr[r].i;
            if (memcmp(p->l.codes + i * M, tc + r * M, (size_t)M * sizeof(uint16_t)) == 0) continue;
            double d = 0;
            if (!full) {
                for (int t = 0; t < g; t++) {
                    double v = 0;
                    for (int m = 0; m < M; m++)
                        v += p->l.cb[((int64_t)m * s->K + tc[r * M + m]) * g + t];
                    nw[t] = (float)(v * sc[r]);
                    d += ((double)nw[t] - p->l.w[i * g + t]) * ((double)nw[t] - p->l.w[i * g + t]);
                }
            }
            if (full || used + d > budget) { /* over the budget: this group keeps its codes */
                full = true;
                memcpy(tc + r * M, p->l.codes + i * M, (size_t)M * sizeof(uint16_t));
                st->n_capped++;
                continue;
            }
            used += d;
        }
        free(by_rank);
        free(nw);
    }
    int64_t changed = 0;
    for (int64_t r = 0; r < n_sel; r++) {
        uint16_t *c = p->l.codes + gr[r].i * M;
        if (memcmp(c, tc + r * M, (size_t)M * sizeof(uint16_t)) != 0) {
            memcpy(c, tc + r * M, (size_t)M * sizeof(uint16_t));
            changed++;
        }
    }
    /* the whole decode, not the changed groups by hand: the dense buffer stays bit for bit
     * the kernel's decode (O(n_out n_in), small next to a forward) */
    if (changed) lin_decode(p);
    st->n_changed += changed;
    for (int64_t r = 0; r < n_sel; r++)
        st->dist_after += dist2(p->u + gr[r].i * g, p->l.w + gr[r].i * g, g);
out:
    free(gr);
    free(tw);
    free(tc);
    free(lo);
    return st_;
}

enum lmp_status lmp_pv_v_step(struct lmp_pv *pv, const float *const *dw,
                              struct lmp_pv_v_stats *stats) {
    assert(pv && dw);
    struct lmp_pv_v_stats st = {0};
    for (int i = 0; i < pv->n_lins; i++) {
        struct pv_lin *p = &pv->lins[i];
        if (dw[i] == NULL) continue;
        if (!owns(pv, i)) {
            p->a_u.t++;
            continue;
        }
        lmp_aq_adam_step(&p->a_u, p->u, dw[i], pv->o.code_lr);
        enum lmp_status e = reencode(p, pv->o.code_frac, pv->o.beam, pv->o.trust_ratio, &st);
        if (e != LMP_OK) return e;
    }
    if (stats) *stats = st;
    return LMP_OK;
}

/* ---- state ------------------------------------------------------------------------------ */

struct lmp_pv_state_list {
    struct lmp_pv_array *a;
    int                  n, cap;
};

static enum lmp_status st_add(struct lmp_pv_state_list *l, const char *name, float *f, uint16_t *u,
                              int64_t *i, int64_t n, int32_t lin, bool local) {
    if (l->n == l->cap) {
        int                  cap = l->cap ? 2 * l->cap : 64;
        struct lmp_pv_array *na  = realloc(l->a, (size_t)cap * sizeof(*na));
        if (na == NULL) return LMP_ENOMEM;
        l->a   = na;
        l->cap = cap;
    }
    struct lmp_pv_array *e = &l->a[l->n++];
    memset(e, 0, sizeof(*e));
    snprintf(e->name, sizeof(e->name), "%s", name);
    e->f32   = f;
    e->u16   = u;
    e->i64   = i;
    e->n     = n;
    e->lin   = lin;
    e->local = local;
    return LMP_OK;
}

/* Adam objects in state order: per linear cb, scale, u; per param one. */
static int64_t n_adams(const struct lmp_pv *pv) {
    return 3 * (int64_t)pv->n_lins + pv->n_params;
}

static struct lmp_aq_adam *adam_at(struct lmp_pv *pv, int64_t k) {
    if (k < 3 * (int64_t)pv->n_lins) {
        struct pv_lin *p = &pv->lins[k / 3];
        return k % 3 == 0 ? &p->a_cb : k % 3 == 1 ? &p->a_scale : &p->a_u;
    }
    return &pv->a_param[k - 3 * (int64_t)pv->n_lins];
}

enum lmp_status lmp_pv_state(struct lmp_pv *pv, struct lmp_pv_array **arrays, int *n) {
    assert(pv && arrays && n);
    *arrays = NULL;
    *n      = 0;
    if (pv->adam_t == NULL) {
        pv->adam_t = calloc((size_t)n_adams(pv) + 1, sizeof(int64_t));
        if (pv->adam_t == NULL) return LMP_ENOMEM;
    }
    for (int64_t k = 0; k < n_adams(pv); k++) pv->adam_t[k] = adam_at(pv, k)->t;
    struct lmp_pv_state_list l  = {0};
    enum lmp_status          st = LMP_OK;
    char                     nm[48];
    for (int i = 0; i < pv->n_lins && st == LMP_OK; i++) {
        struct pv_lin             *p  = &pv->lins[i];
        const struct lmp_aq_shape *s  = &p->l.shape;
        const int64_t              nw = s->n_out * s->n_in, nc = (int64_t)s->M * s->K * s->g;
#define ADD(suffix, f, u, cnt, local)                                                              \
    if (st == LMP_OK) {                                                                            \
        snprintf(nm, sizeof(nm), "lin.%d.%s", i, suffix);                                          \
        st = st_add(&l, nm, f, u, NULL, cnt, i, local);                                            \
    }
        ADD("codes", NULL, p->l.codes, s->n_out * (s->n_in / s->g) * s->M, false)
        ADD("codebooks", p->l.cb, NULL, nc, false)
        ADD("scales", p->l.scale, NULL, s->n_out, false)
        ADD("u", p->u, NULL, nw, true)
        ADD("cb.m", p->a_cb.m, NULL, nc, true)
        ADD("cb.v", p->a_cb.v, NULL, nc, true)
        ADD("scales.m", p->a_scale.m, NULL, s->n_out, true)
        ADD("scales.v", p->a_scale.v, NULL, s->n_out, true)
        ADD("u.v", p->a_u.v, NULL, nw, true) /* beta1 0: the first moment is the gradient */
#undef ADD
    }
    for (int i = 0; i < pv->n_params && st == LMP_OK; i++) {
        snprintf(nm, sizeof(nm), "param.%d.x", i);
        st = st_add(&l, nm, pv->params[i].x, NULL, NULL, pv->params[i].n, -1, false);
        snprintf(nm, sizeof(nm), "param.%d.m", i);
        if (st == LMP_OK)
            st = st_add(&l, nm, pv->a_param[i].m, NULL, NULL, pv->params[i].n, -1, false);
        snprintf(nm, sizeof(nm), "param.%d.v", i);
        if (st == LMP_OK)
            st = st_add(&l, nm, pv->a_param[i].v, NULL, NULL, pv->params[i].n, -1, false);
    }
    if (st == LMP_OK) st = st_add(&l, "adam_t", NULL, NULL, pv->adam_t, n_adams(pv), -1, false);
    if (st != LMP_OK) {
        free(l.a);
        return st;
    }
    *arrays = l.a;
    *n      = l.n;
    return LMP_OK;
}

void lmp_pv_state_loaded(struct lmp_pv *pv) {
    assert(pv && pv->adam_t);
    for (int64_t k = 0; k < n_adams(pv); k++) adam_at(pv, k)->t = pv->adam_t[k];
    for (int i = 0; i < pv->n_lins; i++) lin_decode(&pv->lins[i]);
}
