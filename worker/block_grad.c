/*  block_grad - see block_grad.h
 *
 *  Layout: activations are row-major, one row per token, sequence-major (row = s*T + t,
 *  T = seq_len). Attention probabilities are kept per (sequence, head) as full (T, T)
 *  matrices with zeros above the diagonal: the backward then is four plain sgemms per
 *  head (dV = P^T dO, dP = dO V^T, dQ = dS K, dK = dS^T Q) at twice the causal minimum,
 *  which is simple and still GEMM-bound.
 *
 *  Backward of the pieces (row vectors, n = x s w with s = (mean(x^2) + eps)^-1/2):
 *      rmsnorm:  dw += dn * x * s;  dx = s (dn*w) - x s^3 <dn*w, x> / dim
 *      rope:     the transposed rotation (a, b) <- (a c + b s', -a s' + b c)
 *      softmax:  dS = P * (dP - rowsum(dP * P)), then the 1/sqrt(head_dim) scale
 *      soft-cap: c tanh(s / c) (Gemma 2): dS *= 1 - tanh^2(s / c), s recomputed from q and k
 *      swiglu:   f = silu(g) u:  du = df silu(g);  dg = df u sig(g) (1 + g (1 - sig(g)))
 *      linear:   y = x W^T + b:  dW += dy^T x;  db += colsum(dy);  dx = dy W
 */
#include "worker/block_grad.h"

#include "kernels/kernels.h" /* defines: lmp_kernels_get()->sgemm */
#include "model/rope.h"      /* defines: lmp_rope_freqs, lmp_rope_n_dims, lmp_rope_block_is_local */

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct lmp_block_grad {
    struct lmp_config cfg;
    int64_t           max_seq, T;    /* capacity in sequences; tokens per sequence */
    int64_t dim, hid, qd, kd, hd;    /* model width, FFN width, q width, kv width, head dim */
    int64_t n_seq;                   /* sequences of the last forward (0: none yet) */
    int64_t half;                    /* rotated pairs per head: rope_dims / 2 */
    float  *rope_cos, *rope_sin;     /* (T, half) global blocks */
    float  *rope_cos_l, *rope_sin_l; /* (T, half) local blocks, or NULL */
    float   scale;                   /* attention scores' factor */
    /* saved by the forward; rows = n_seq * T */
    float *x;  /* (rows, dim) block input */
    float *s1; /* (rows) rms factor of x */
    float *h1; /* (rows, dim) rmsnorm(x) * attn_norm */
    float *q;  /* (rows, qd) rotated queries */
    float *k;  /* (rows, kd) rotated keys */
    float *v;  /* (rows, kd) values */
    float *p;  /* (n_seq, n_heads, T, T) attention probabilities, causal zeros */
    float *a;  /* (rows, qd) attention output */
    float *r;  /* (rows, dim) x + a Wo^T */
    float *s2; /* (rows) rms factor of r */
    float *h2; /* (rows, dim) rmsnorm(r) * ffn_norm */
    float *gp; /* (rows, hid) gate pre-activation */
    float *up; /* (rows, hid) up projection */
    float *f;  /* (rows, hid) act(gp) * up */
    /* beyond the llama block, NULL when the config has none */
    float *q0, *k0; /* (rows, qd), (rows, kd) q and k before their head norms */
    float *sq, *sk; /* (rows * n_heads), (rows * n_kv_heads) their rms factors */
    float *ao, *s3; /* (rows, dim) a Wo^T before the post-attention norm; its rms factor */
    float *fo, *s4; /* (rows, dim) f Wdown^T before the post-FFN norm; its rms factor */
    /* backward scratch */
    float  *dr;       /* (rows, dim) dL/dr, then dL/dx */
    float  *dh;       /* (rows, dim) dL/dh2, then dL/dh1 */
    float  *da;       /* (rows, qd) */
    float  *dq;       /* (rows, qd) */
    float  *dk;       /* (rows, kd) */
    float  *dv;       /* (rows, kd) */
    float  *dgp;      /* (rows, hid) */
    float  *dup;      /* (rows, hid) */
    float  *ds;       /* (T, T) dP then dS of one head */
    float  *ts;       /* (T, T) one head's scores before the soft-cap, or NULL (no cap) */
    double *acc;      /* (dim) norm-weight gradient accumulator */
    bool    borrowed; /* the backward scratch above belongs to another object */
};

static void free_all(struct lmp_block_grad *bg) {
    float *bufs[] = {bg->rope_cos, bg->rope_sin, bg->rope_cos_l, bg->rope_sin_l, bg->x,  bg->s1,
                     bg->h1,       bg->q,        bg->k,          bg->v,          bg->p,  bg->a,
                     bg->r,        bg->s2,       bg->h2,         bg->gp,         bg->up, bg->f,
                     bg->q0,       bg->k0,       bg->sq,         bg->sk,         bg->ao, bg->s3,
                     bg->fo,       bg->s4};
    for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++) free(bufs[i]);
    if (bg->borrowed) return;
    float *scratch[] = {bg->dr, bg->dh,  bg->da,  bg->dq, bg->dk,
                        bg->dv, bg->dgp, bg->dup, bg->ds, bg->ts};
    for (size_t i = 0; i < sizeof(scratch) / sizeof(scratch[0]); i++) free(scratch[i]);
    free(bg->acc);
}

/* Entries of the norm-gradient accumulator: the widest norm (dim, or head_dim for q/k). */
static int64_t acc_n(const struct lmp_block_grad *bg) {
    return bg->dim > bg->hd ? bg->dim : bg->hd;
}

/* lmp_block_grad_new and _new_shared: with `from`, the backward scratch is from's. */
static enum lmp_status block_grad_new(const struct lmp_config *cfg, int64_t max_seq,
                                      int64_t seq_len, struct lmp_block_grad *from,
                                      struct lmp_block_grad **out) {
    assert(cfg && out);
    *out = NULL;
    if (max_seq <= 0 || seq_len <= 0 || cfg->dim <= 0 || cfg->hidden_dim <= 0 ||
        cfg->head_dim <= 0 || cfg->head_dim % 2 != 0 || cfg->n_kv_heads <= 0 || cfg->n_heads <= 0 ||
        cfg->n_heads % cfg->n_kv_heads != 0)
        return LMP_EINVAL;
    const int32_t rd = lmp_rope_n_dims(cfg);
    if (rd <= 0 || rd % 2 != 0 || rd > cfg->head_dim) return LMP_EINVAL;
    if (cfg->ffn_act != LMP_ACT_SILU && cfg->ffn_act != LMP_ACT_GELU_TANH) return LMP_EUNSUP;
    struct lmp_block_grad *bg = calloc(1, sizeof(*bg));
    if (bg == NULL) return LMP_ENOMEM;
    bg->cfg            = *cfg;
    bg->max_seq        = max_seq;
    bg->T              = seq_len;
    bg->dim            = cfg->dim;
    bg->hid            = cfg->hidden_dim;
    bg->hd             = cfg->head_dim;
    bg->qd             = (int64_t)cfg->n_heads * cfg->head_dim;
    bg->kd             = (int64_t)cfg->n_kv_heads * cfg->head_dim;
    const int64_t rows = max_seq * seq_len, half = rd / 2;
    bool          any_local = false;
    for (int32_t b = 0; b < cfg->n_layers && !any_local; b++)
        any_local = lmp_rope_block_is_local(cfg, b);
    bg->half  = half;
    bg->scale = cfg->attn_scale > 0 ? cfg->attn_scale : (float)(1.0 / sqrt((double)bg->hd));
#define ALLOC(field, n) ((bg->field = malloc((size_t)(n) * sizeof(*bg->field))) != NULL)
    bool ok = ALLOC(rope_cos, seq_len * half) && ALLOC(rope_sin, seq_len * half) &&
              ALLOC(x, rows * bg->dim) && ALLOC(s1, rows) && ALLOC(h1, rows * bg->dim) &&
              ALLOC(q, rows * bg->qd) && ALLOC(k, rows * bg->kd) && ALLOC(v, rows * bg->kd) &&
              ALLOC(p, max_seq * cfg->n_heads * seq_len * seq_len) && ALLOC(a, rows * bg->qd) &&
              ALLOC(r, rows * bg->dim) && ALLOC(s2, rows) && ALLOC(h2, rows * bg->dim) &&
              ALLOC(gp, rows * bg->hid) && ALLOC(up, rows * bg->hid) && ALLOC(f, rows * bg->hid);
    if (ok && any_local)
        ok = ALLOC(rope_cos_l, seq_len * half) && ALLOC(rope_sin_l, seq_len * half);
    if (ok && cfg->qk_norm)
        ok = ALLOC(q0, rows * bg->qd) && ALLOC(k0, rows * bg->kd) &&
             ALLOC(sq, rows * cfg->n_heads) && ALLOC(sk, rows * cfg->n_kv_heads);
    if (ok && cfg->post_norms)
        ok = ALLOC(ao, rows * bg->dim) && ALLOC(s3, rows) && ALLOC(fo, rows * bg->dim) &&
             ALLOC(s4, rows);
    if (ok && from) {
        bg->borrowed = true;
        bg->dr       = from->dr;
        bg->dh       = from->dh;
        bg->da       = from->da;
        bg->dq       = from->dq;
        bg->dk       = from->dk;
        bg->dv       = from->dv;
        bg->dgp      = from->dgp;
        bg->dup      = from->dup;
        bg->ds       = from->ds;
        bg->ts       = from->ts;
        bg->acc      = from->acc;
    } else if (ok) {
        ok = ALLOC(dr, rows * bg->dim) && ALLOC(dh, rows * bg->dim) && ALLOC(da, rows * bg->qd) &&
             ALLOC(dq, rows * bg->qd) && ALLOC(dk, rows * bg->kd) && ALLOC(dv, rows * bg->kd) &&
             ALLOC(dgp, rows * bg->hid) && ALLOC(dup, rows * bg->hid) &&
             ALLOC(ds, seq_len * seq_len) && ALLOC(acc, acc_n(bg)) &&
             (cfg->attn_softcap == 0 || ALLOC(ts, seq_len * seq_len));
        if (ok) memset(bg->acc, 0, (size_t)acc_n(bg) * sizeof(*bg->acc));
    }
#undef ALLOC
    if (!ok) {
        lmp_block_grad_destroy(&bg);
        return LMP_ENOMEM;
    }
    /* the same tables as the forward pass: angle(pos, i) = pos * inv_freq[i] (model/rope.h),
     * times the variant's magnitude */
    double *inv = malloc((size_t)half * sizeof(double));
    if (inv == NULL) {
        lmp_block_grad_destroy(&bg);
        return LMP_ENOMEM;
    }
    for (int kind = 0; kind < 1 + any_local; kind++) {
        float *cs     = kind ? bg->rope_cos_l : bg->rope_cos,
              *sn     = kind ? bg->rope_sin_l : bg->rope_sin;
        double mscale = 1.0;
        lmp_rope_freqs(cfg, kind == 1, inv, &mscale);
        for (int64_t i = 0; i < half; i++)
            for (int64_t t = 0; t < seq_len; t++) {
                double ang       = (double)t * inv[i];
                cs[t * half + i] = (float)(cos(ang) * mscale);
                sn[t * half + i] = (float)(sin(ang) * mscale);
            }
    }
    free(inv);
    *out = bg;
    return LMP_OK;
}

enum lmp_status lmp_block_grad_new(const struct lmp_config *cfg, int64_t max_seq, int64_t seq_len,
                                   struct lmp_block_grad **out) {
    return block_grad_new(cfg, max_seq, seq_len, NULL, out);
}

enum lmp_status lmp_block_grad_new_shared(struct lmp_block_grad  *from,
                                          struct lmp_block_grad **out) {
    assert(from && out);
    *out = NULL;
    if (from->borrowed) return LMP_EINVAL; /* share with the owner only */
    return block_grad_new(&from->cfg, from->max_seq, from->T, from, out);
}

void lmp_block_grad_destroy(struct lmp_block_grad **self_p) {
    assert(self_p);
    struct lmp_block_grad *bg = *self_p;
    if (bg == NULL) return;
    free_all(bg);
    free(bg);
    *self_p = NULL;
}

/* ---- pieces --------------------------------------------------------------------------- */

/* out = x * s * w per row, s = 1/sqrt(mean(x^2) + eps) (saved); the forward pass's order. */
static void rmsnorm_fwd(const float *x, const float *w, int64_t rows, int64_t dim, float eps,
                        float *s_out, float *out) {
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * dim;
        float       *o  = out + r * dim;
        double       ss = 0;
        for (int64_t i = 0; i < dim; i++) ss += (double)xr[i] * xr[i];
        float s  = (float)(1.0 / sqrt(ss / (double)dim + (double)eps));
        s_out[r] = s;
        for (int64_t i = 0; i < dim; i++) o[i] = xr[i] * s * w[i];
    }
}

/* dx += d rmsnorm / dx applied to dn; acc += dn * x * s (norm weight gradient). */
static void rmsnorm_bwd(const float *x, const float *w, const float *s, const float *dn,
                        int64_t rows, int64_t dim, float *dx, double *acc) {
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * dim, *dr = dn + r * dim;
        const double sr  = s[r];
        double       dot = 0;
        for (int64_t i = 0; i < dim; i++) {
            dot += (double)dr[i] * w[i] * xr[i];
            acc[i] += (double)dr[i] * xr[i] * sr;
        }
        const double c = sr * sr * sr * dot / (double)dim;
        float       *o = dx + r * dim;
        for (int64_t i = 0; i < dim; i++) o[i] += (float)(sr * dr[i] * w[i] - c * xr[i]);
    }
}

/* y (rows, n_out) = x (rows, n_in) W^T + b. */
static void linear_fwd(const float *x, const float *w, const float *b, int64_t rows, int64_t n_out,
                       int64_t n_in, float beta, float *y) {
    lmp_kernels_get()->sgemm(LMP_NO_TRANS, LMP_TRANS, rows, n_out, n_in, 1.0f, x, n_in, w, n_in,
                             beta, y, n_out);
    if (b)
        for (int64_t t = 0; t < rows; t++)
            for (int64_t o = 0; o < n_out; o++) y[t * n_out + o] += b[o];
}

/* dW (n_out, n_in) += dy^T x; db (n_out) += colsum(dy); either may be NULL. */
static void linear_bwd_params(const float *dy, const float *x, int64_t rows, int64_t n_out,
                              int64_t n_in, float *dw, float *db) {
    if (dw)
        lmp_kernels_get()->sgemm(LMP_TRANS, LMP_NO_TRANS, n_out, n_in, rows, 1.0f, dy, n_out, x,
                                 n_in, 1.0f, dw, n_in);
    if (db)
        for (int64_t o = 0; o < n_out; o++) {
            double sum = 0;
            for (int64_t t = 0; t < rows; t++) sum += dy[t * n_out + o];
            db[o] += (float)sum;
        }
}

/* dx (rows, n_in) = dy (rows, n_out) W (+ dx when beta = 1). */
static void linear_bwd_input(const float *dy, const float *w, int64_t rows, int64_t n_out,
                             int64_t n_in, float beta, float *dx) {
    lmp_kernels_get()->sgemm(LMP_NO_TRANS, LMP_NO_TRANS, rows, n_in, n_out, 1.0f, dy, n_out, w,
                             n_in, beta, dx, n_in);
}

/* Rotate (inverse = false) or rotate back (inverse = true, the transpose, the magnitude
 * included) the first rope_dims of every head of x (rows, n_heads * hd), row r at position
 * r % T, with the local or the global tables. */
static void rope_rows(const struct lmp_block_grad *bg, bool local, float *x, int64_t rows,
                      int n_heads, bool inverse) {
    const int64_t hd = bg->hd, half = bg->half, width = (int64_t)n_heads * hd;
    const bool    inter = bg->cfg.rope == LMP_ROPE_INTERLEAVED;
    const float  *tc    = local ? bg->rope_cos_l : bg->rope_cos;
    const float  *ts    = local ? bg->rope_sin_l : bg->rope_sin;
    for (int64_t r = 0; r < rows; r++) {
        const int64_t pos = r % bg->T;
        const float  *cs = tc + pos * half, *sn = ts + pos * half;
        for (int h = 0; h < n_heads; h++) {
            float *y = x + r * width + h * hd;
            for (int64_t i = 0; i < half; i++) {
                float *pa = inter ? &y[2 * i] : &y[i], *pb = inter ? &y[2 * i + 1] : &y[i + half];
                float  a = *pa, b = *pb, s = inverse ? -sn[i] : sn[i];
                *pa = a * cs[i] - b * s;
                *pb = a * s + b * cs[i];
            }
        }
    }
}

/* ---- forward -------------------------------------------------------------------------- */

/* f = act(gp) * up over n entries (the forward pass's formulas: silu, or tanh-GELU). */
static const float GELU_K = 0.7978845608028654f; /* sqrt(2 / pi) */

static void act_fwd(enum lmp_act act, const float *gp, const float *up, int64_t n, float *f) {
    if (act == LMP_ACT_GELU_TANH) {
        for (int64_t i = 0; i < n; i++) {
            const float x = gp[i];
            f[i]          = 0.5f * x * (1.0f + tanhf(GELU_K * (x + 0.044715f * x * x * x))) * up[i];
        }
    } else {
        for (int64_t i = 0; i < n; i++) f[i] = gp[i] / (1.0f + expf(-gp[i])) * up[i];
    }
}

/* From df (in dup): dup = df act(gp), dgp = df up act'(gp). */
static void act_bwd(enum lmp_act act, const float *gp, const float *up, int64_t n, float *dup,
                    float *dgp) {
    for (int64_t i = 0; i < n; i++) {
        const float z = gp[i], df = dup[i];
        if (act == LMP_ACT_GELU_TANH) {
            const float u = GELU_K * (z + 0.044715f * z * z * z), th = tanhf(u);
            const float g  = 0.5f * z * (1.0f + th);
            const float dg = 0.5f * (1.0f + th) + 0.5f * z * (1.0f - th * th) * GELU_K *
                                                      (1.0f + 3.0f * 0.044715f * z * z);
            dup[i] = df * g;
            dgp[i] = df * up[i] * dg;
        } else {
            const float sg = 1.0f / (1.0f + expf(-z));
            dup[i]         = df * z * sg;
            dgp[i]         = df * up[i] * sg * (1.0f + z * (1.0f - sg));
        }
    }
}

/* ---- forward -------------------------------------------------------------------------- */

void lmp_block_grad_forward(struct lmp_block_grad *bg, const struct lmp_block_params *p,
                            const float *x, int64_t n_seq, float *y) {
    assert(bg && p && x && y && n_seq > 0 && n_seq <= bg->max_seq);
    const struct lmp_config  *c = &bg->cfg;
    const int64_t             T = bg->T, rows = n_seq * T, dim = bg->dim, hd = bg->hd;
    const int64_t             qd = bg->qd, kd = bg->kd, hid = bg->hid;
    const int                 group  = c->n_heads / c->n_kv_heads;
    const float               sc     = bg->scale;
    const bool                local  = p->local && bg->rope_cos_l != NULL;
    const int64_t             window = local ? c->sliding_window : 0;
    const struct lmp_kernels *kt     = lmp_kernels_get();
    assert(!c->qk_norm || (p->q_norm && p->k_norm));
    assert(!c->post_norms || (p->post_attn_norm && p->post_ffn_norm));
    bg->n_seq = n_seq;

    memcpy(bg->x, x, (size_t)(rows * dim) * sizeof(float));
    rmsnorm_fwd(bg->x, p->attn_norm, rows, dim, c->norm_eps, bg->s1, bg->h1);
    float *q = c->qk_norm ? bg->q0 : bg->q, *k = c->qk_norm ? bg->k0 : bg->k;
    linear_fwd(bg->h1, p->w[LMP_LIN_Q], p->b[LMP_LIN_Q], rows, qd, dim, 0.0f, q);
    linear_fwd(bg->h1, p->w[LMP_LIN_K], p->b[LMP_LIN_K], rows, kd, dim, 0.0f, k);
    linear_fwd(bg->h1, p->w[LMP_LIN_V], p->b[LMP_LIN_V], rows, kd, dim, 0.0f, bg->v);
    if (c->qk_norm) { /* each head: rmsnorm over head_dim, as rows of hd */
        rmsnorm_fwd(bg->q0, p->q_norm, rows * c->n_heads, hd, c->norm_eps, bg->sq, bg->q);
        rmsnorm_fwd(bg->k0, p->k_norm, rows * c->n_kv_heads, hd, c->norm_eps, bg->sk, bg->k);
    }
    rope_rows(bg, local, bg->q, rows, c->n_heads, false);
    rope_rows(bg, local, bg->k, rows, c->n_kv_heads, false);

    for (int64_t s = 0; s < n_seq; s++)
        for (int h = 0; h < c->n_heads; h++) {
            const int64_t kvh = h / group;
            const float  *Q   = bg->q + s * T * qd + h * hd;
            const float  *K   = bg->k + s * T * kd + kvh * hd;
            const float  *V   = bg->v + s * T * kd + kvh * hd;
            float        *P   = bg->p + (s * c->n_heads + h) * T * T;
            float        *O   = bg->a + s * T * qd + h * hd;
            kt->sgemm(LMP_NO_TRANS, LMP_TRANS, T, T, hd, sc, Q, qd, K, kd, 0.0f, P, T);
            for (int64_t i = 0; i < T; i++) {
                float        *row = P + i * T;
                const int64_t j0  = window > 0 && i - window + 1 > 0 ? i - window + 1 : 0;
                lmp_softcap(row + j0, i + 1 - j0, c->attn_softcap);
                float mx = row[j0];
                for (int64_t j = j0 + 1; j <= i; j++) mx = row[j] > mx ? row[j] : mx;
                float sum = 0;
                for (int64_t j = j0; j <= i; j++) {
                    row[j] = expf(row[j] - mx);
                    sum += row[j];
                }
                float inv = 1.0f / sum;
                for (int64_t j = 0; j < j0; j++) row[j] = 0.0f;
                for (int64_t j = j0; j <= i; j++) row[j] *= inv;
                for (int64_t j = i + 1; j < T; j++) row[j] = 0.0f;
            }
            kt->sgemm(LMP_NO_TRANS, LMP_NO_TRANS, T, hd, T, 1.0f, P, T, V, kd, 0.0f, O, qd);
        }

    if (c->post_norms) { /* r = x + rmsnorm(a Wo^T) * post_attn_norm */
        linear_fwd(bg->a, p->w[LMP_LIN_O], p->b[LMP_LIN_O], rows, dim, qd, 0.0f, bg->ao);
        rmsnorm_fwd(bg->ao, p->post_attn_norm, rows, dim, c->norm_eps, bg->s3, bg->r);
        for (int64_t i = 0; i < rows * dim; i++) bg->r[i] += bg->x[i];
    } else {
        memcpy(bg->r, bg->x, (size_t)(rows * dim) * sizeof(float));
        linear_fwd(bg->a, p->w[LMP_LIN_O], p->b[LMP_LIN_O], rows, dim, qd, 1.0f, bg->r);
    }
    rmsnorm_fwd(bg->r, p->ffn_norm, rows, dim, c->norm_eps, bg->s2, bg->h2);
    linear_fwd(bg->h2, p->w[LMP_LIN_GATE], p->b[LMP_LIN_GATE], rows, hid, dim, 0.0f, bg->gp);
    linear_fwd(bg->h2, p->w[LMP_LIN_UP], p->b[LMP_LIN_UP], rows, hid, dim, 0.0f, bg->up);
    act_fwd(c->ffn_act, bg->gp, bg->up, rows * hid, bg->f);
    if (c->post_norms) { /* y = r + rmsnorm(f Wdown^T) * post_ffn_norm */
        linear_fwd(bg->f, p->w[LMP_LIN_DOWN], p->b[LMP_LIN_DOWN], rows, dim, hid, 0.0f, bg->fo);
        rmsnorm_fwd(bg->fo, p->post_ffn_norm, rows, dim, c->norm_eps, bg->s4, y);
        for (int64_t i = 0; i < rows * dim; i++) y[i] += bg->r[i];
    } else {
        memcpy(y, bg->r, (size_t)(rows * dim) * sizeof(float));
        linear_fwd(bg->f, p->w[LMP_LIN_DOWN], p->b[LMP_LIN_DOWN], rows, dim, hid, 1.0f, y);
    }
}

/* ---- backward ------------------------------------------------------------------------- */

static void add_acc(float *dst, double *acc, int64_t n) {
    if (dst)
        for (int64_t i = 0; i < n; i++) dst[i] += (float)acc[i];
    memset(acc, 0, (size_t)n * sizeof(*acc));
}

void lmp_block_grad_backward(struct lmp_block_grad *bg, const struct lmp_block_params *p,
                             const float *dy, float *dx, const struct lmp_block_grads *g) {
    assert(bg && p && dy && g && bg->n_seq > 0);
    const struct lmp_config *c = &bg->cfg;
    const int64_t n_seq = bg->n_seq, T = bg->T, rows = n_seq * T, dim = bg->dim, hd = bg->hd;
    const int64_t qd = bg->qd, kd = bg->kd, hid = bg->hid;
    const int     group          = c->n_heads / c->n_kv_heads;
    const float   sc             = bg->scale;
    const bool    local          = p->local && bg->rope_cos_l != NULL;
    const struct lmp_kernels *kt = lmp_kernels_get();
#define BIAS_GRAD(kind) (p->b[kind] ? g->b[kind] : NULL)

    /* y = r + d (d = f Wd^T + bd), or r + rmsnorm(d) * post_ffn_norm: dd into dh */
    memcpy(bg->dr, dy, (size_t)(rows * dim) * sizeof(float));
    const float *dd = bg->dr;
    if (c->post_norms) {
        memset(bg->dh, 0, (size_t)(rows * dim) * sizeof(float));
        rmsnorm_bwd(bg->fo, p->post_ffn_norm, bg->s4, dy, rows, dim, bg->dh, bg->acc);
        add_acc(g->post_ffn_norm, bg->acc, dim);
        dd = bg->dh;
    }
    linear_bwd_params(dd, bg->f, rows, dim, hid, g->w[LMP_LIN_DOWN], BIAS_GRAD(LMP_LIN_DOWN));
    linear_bwd_input(dd, p->w[LMP_LIN_DOWN], rows, dim, hid, 0.0f, bg->dup); /* df */

    /* f = act(gp) * up */
    act_bwd(c->ffn_act, bg->gp, bg->up, rows * hid, bg->dup, bg->dgp);
    linear_bwd_params(bg->dgp, bg->h2, rows, hid, dim, g->w[LMP_LIN_GATE], BIAS_GRAD(LMP_LIN_GATE));
    linear_bwd_params(bg->dup, bg->h2, rows, hid, dim, g->w[LMP_LIN_UP], BIAS_GRAD(LMP_LIN_UP));
    linear_bwd_input(bg->dgp, p->w[LMP_LIN_GATE], rows, hid, dim, 0.0f, bg->dh);
    linear_bwd_input(bg->dup, p->w[LMP_LIN_UP], rows, hid, dim, 1.0f, bg->dh);

    /* h2 = rmsnorm(r) * ffn_norm; dr now holds the full dL/dr */
    rmsnorm_bwd(bg->r, p->ffn_norm, bg->s2, bg->dh, rows, dim, bg->dr, bg->acc);
    add_acc(g->ffn_norm, bg->acc, dim);

    /* r = x + o (o = a Wo^T + bo), or x + rmsnorm(o) * post_attn_norm: do into dh */
    const float *dout = bg->dr;
    if (c->post_norms) {
        memset(bg->dh, 0, (size_t)(rows * dim) * sizeof(float));
        rmsnorm_bwd(bg->ao, p->post_attn_norm, bg->s3, bg->dr, rows, dim, bg->dh, bg->acc);
        add_acc(g->post_attn_norm, bg->acc, dim);
        dout = bg->dh;
    }
    linear_bwd_params(dout, bg->a, rows, dim, qd, g->w[LMP_LIN_O], BIAS_GRAD(LMP_LIN_O));
    linear_bwd_input(dout, p->w[LMP_LIN_O], rows, dim, qd, 0.0f, bg->da);

    /* attention, per (sequence, head); P is zero outside each row's keys */
    memset(bg->dk, 0, (size_t)(rows * kd) * sizeof(float));
    memset(bg->dv, 0, (size_t)(rows * kd) * sizeof(float));
    for (int64_t s = 0; s < n_seq; s++)
        for (int h = 0; h < c->n_heads; h++) {
            const int64_t kvh = h / group;
            const float  *Q   = bg->q + s * T * qd + h * hd;
            const float  *K   = bg->k + s * T * kd + kvh * hd;
            const float  *V   = bg->v + s * T * kd + kvh * hd;
            const float  *P   = bg->p + (s * c->n_heads + h) * T * T;
            const float  *dO  = bg->da + s * T * qd + h * hd;
            float        *dQ  = bg->dq + s * T * qd + h * hd;
            float        *dK  = bg->dk + s * T * kd + kvh * hd;
            float        *dV  = bg->dv + s * T * kd + kvh * hd;
            float        *dS  = bg->ds;
            kt->sgemm(LMP_TRANS, LMP_NO_TRANS, T, hd, T, 1.0f, P, T, dO, qd, 1.0f, dV, kd);
            kt->sgemm(LMP_NO_TRANS, LMP_TRANS, T, T, hd, 1.0f, dO, qd, V, kd, 0.0f, dS, T);
            for (int64_t i = 0; i < T; i++) {
                const float *pr  = P + i * T;
                float       *dr  = dS + i * T;
                double       dot = 0;
                for (int64_t j = 0; j <= i; j++) dot += (double)pr[j] * dr[j];
                for (int64_t j = 0; j <= i; j++) dr[j] = pr[j] * (dr[j] - (float)dot);
                for (int64_t j = i + 1; j < T; j++) dr[j] = 0.0f;
            }
            if (c->attn_softcap > 0) { /* through cap tanh(s / cap): the forward's s again */
                const float inv = 1.0f / c->attn_softcap;
                kt->sgemm(LMP_NO_TRANS, LMP_TRANS, T, T, hd, sc, Q, qd, K, kd, 0.0f, bg->ts, T);
                for (int64_t i = 0; i < T; i++)
                    for (int64_t j = 0; j <= i; j++) {
                        const float th = tanhf(bg->ts[i * T + j] * inv);
                        dS[i * T + j] *= 1.0f - th * th;
                    }
            }
            kt->sgemm(LMP_NO_TRANS, LMP_NO_TRANS, T, hd, T, sc, dS, T, K, kd, 0.0f, dQ, qd);
            kt->sgemm(LMP_TRANS, LMP_NO_TRANS, T, hd, T, sc, dS, T, Q, qd, 1.0f, dK, kd);
        }
    rope_rows(bg, local, bg->dq, rows, c->n_heads, true);
    rope_rows(bg, local, bg->dk, rows, c->n_kv_heads, true);

    /* q, k = rmsnorm(each head of q0, k0) * q_norm, k_norm: the pre-norm gradients are
     * formed in da (used up by now) and copied back into dq and dk */
    const float *dq0 = bg->dq, *dk0 = bg->dk;
    if (c->qk_norm) {
        float *tq = bg->da; /* (rows, qd): dL/da is used up */
        memset(tq, 0, (size_t)(rows * qd) * sizeof(float));
        rmsnorm_bwd(bg->q0, p->q_norm, bg->sq, bg->dq, rows * c->n_heads, hd, tq, bg->acc);
        add_acc(g->q_norm, bg->acc, hd);
        memcpy(bg->dq, tq, (size_t)(rows * qd) * sizeof(float));
        memset(tq, 0, (size_t)(rows * kd) * sizeof(float));
        rmsnorm_bwd(bg->k0, p->k_norm, bg->sk, bg->dk, rows * c->n_kv_heads, hd, tq, bg->acc);
        add_acc(g->k_norm, bg->acc, hd);
        memcpy(bg->dk, tq, (size_t)(rows * kd) * sizeof(float));
    }
    /* q, k, v = h1 W^T + b */
    linear_bwd_params(dq0, bg->h1, rows, qd, dim, g->w[LMP_LIN_Q], BIAS_GRAD(LMP_LIN_Q));
    linear_bwd_params(dk0, bg->h1, rows, kd, dim, g->w[LMP_LIN_K], BIAS_GRAD(LMP_LIN_K));
    linear_bwd_params(bg->dv, bg->h1, rows, kd, dim, g->w[LMP_LIN_V], BIAS_GRAD(LMP_LIN_V));
    linear_bwd_input(dq0, p->w[LMP_LIN_Q], rows, qd, dim, 0.0f, bg->dh);
    linear_bwd_input(dk0, p->w[LMP_LIN_K], rows, kd, dim, 1.0f, bg->dh);
    linear_bwd_input(bg->dv, p->w[LMP_LIN_V], rows, kd, dim, 1.0f, bg->dh);

    /* h1 = rmsnorm(x) * attn_norm; the residual's gradient is already in dr */
    rmsnorm_bwd(bg->x, p->attn_norm, bg->s1, bg->dh, rows, dim, bg->dr, bg->acc);
    add_acc(g->attn_norm, bg->acc, dim);
    if (dx) memcpy(dx, bg->dr, (size_t)(rows * dim) * sizeof(float));
#undef BIAS_GRAD
}
