/*  model_grad - see model_grad.h
 *
 *  Layout: activations row-major, one row per token, sequence-major (row = s*T + t). One
 *  block_grad object per block keeps that block's activations; the first owns the
 *  backward scratch and the others borrow it. The blocks' outputs ping-pong between two
 *  (rows, dim) buffers (each block copies its input), so only the last block's output is
 *  kept here, as the final norm's input.
 *
 *  Loss and head backward, per chunk of C rows (z = hn Wout^T, or c tanh(hn Wout^T / c)
 *  with Gemma 2's final soft-cap c):
 *      dz      = (softmax(z) - softmax(t)) / R          (lmp_kl_rows, model/eval.h)
 *      dz     *= 1 - (z / c)^2                          (through the soft-cap, where c > 0)
 *      dWout  += dz^T hn;  dhn = dz Wout
 *  then the final RMSNorm's backward (as block_grad's) gives dL/dx(L), the blocks run
 *  backward in reverse (dx in place), and the embedding rows of the tokens collect dL/dx0.
 */
#include "worker/model_grad.h"

#include "kernels/kernels.h" /* defines: lmp_kernels_get()->sgemm */
#include "model/eval.h"      /* defines: lmp_kl_rows */
#include "model/rope.h"      /* defines: lmp_rope_block_is_local */

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct lmp_model_grad {
    struct lmp_config       cfg;
    int64_t                 max_seq, T, dim, vocab;
    int64_t                 n_seq;   /* of the last forward (0: none) */
    struct lmp_block_grad **bg;      /* (n_layers) */
    int32_t                *tokens;  /* (max_seq * T) */
    float                  *xa, *xb; /* (rows, dim) ping-pong */
    float                  *xl;      /* (rows, dim) last block's output */
    float                  *sl;      /* (rows) its rms factor */
    float                  *hn;      /* (rows, dim) rmsnorm(xl) * out_norm */
    float                  *dx;      /* (rows, dim) dL/dhn, then dL/dx(b) */
    float                  *z, *dz;  /* (CHUNK, vocab) */
    double                 *acc;     /* (dim) */
    int32_t                 b0;      /* the backward stops at this block */
    int32_t                 s0, s1;  /* the blocks of this object: [s0, s1) */
};

void lmp_model_grad_set_first_block(struct lmp_model_grad *mg, int32_t b0) {
    assert(mg && b0 >= 0 && b0 < mg->cfg.n_layers);
    mg->b0 = b0;
}

/* ---- weights ---------------------------------------------------------------------------- */

static float *tensor_copy(const struct lmp_tensor *t) {
    if (t == NULL) return NULL;
    const int64_t rows = lmp_tensor_n_rows(t), cols = lmp_tensor_n_cols(t);
    float        *p = malloc((size_t)(rows * cols) * sizeof(float));
    if (p) lmp_tensor_rows_f32(t, 0, rows, p);
    return p;
}

void lmp_model_weights_free(struct lmp_model_weights **self_p) {
    assert(self_p);
    struct lmp_model_weights *w = *self_p;
    if (w == NULL) return;
    const int32_t L = w->cfg.n_layers;
    if (w->output != w->tok_emb) free(w->output);
    free(w->tok_emb);
    free(w->out_norm);
    for (int32_t b = 0; b < L; b++) {
        float **norms[] = {w->attn_norm, w->ffn_norm,       w->q_norm,
                           w->k_norm,    w->post_attn_norm, w->post_ffn_norm};
        for (size_t i = 0; i < sizeof(norms) / sizeof(norms[0]); i++)
            if (norms[i]) free(norms[i][b]);
        for (int k = 0; k < LMP_LIN_COUNT; k++) {
            if (w->w) free(w->w[b * LMP_LIN_COUNT + k]);
            if (w->b) free(w->b[b * LMP_LIN_COUNT + k]);
        }
    }
    free(w->attn_norm);
    free(w->ffn_norm);
    free(w->q_norm);
    free(w->k_norm);
    free(w->post_attn_norm);
    free(w->post_ffn_norm);
    free(w->w);
    free(w->b);
    free(w->blocks);
    free(w);
    *self_p = NULL;
}

enum lmp_status lmp_model_weights_load(const struct lmp_model *m, struct lmp_model_weights **out,
                                       struct lmp_err *err) {
    assert(m && out);
    *out                        = NULL;
    struct lmp_model_weights *w = calloc(1, sizeof(*w));
    const int32_t             L = m->cfg.n_layers;
    if (w == NULL) goto oom;
    w->cfg            = m->cfg;
    w->attn_norm      = calloc((size_t)L, sizeof(float *));
    w->ffn_norm       = calloc((size_t)L, sizeof(float *));
    w->q_norm         = calloc((size_t)L, sizeof(float *));
    w->k_norm         = calloc((size_t)L, sizeof(float *));
    w->post_attn_norm = calloc((size_t)L, sizeof(float *));
    w->post_ffn_norm  = calloc((size_t)L, sizeof(float *));
    w->w              = calloc((size_t)L * LMP_LIN_COUNT, sizeof(float *));
    w->b              = calloc((size_t)L * LMP_LIN_COUNT, sizeof(float *));
    w->blocks         = calloc((size_t)L, sizeof(*w->blocks));
    if (!w->attn_norm || !w->ffn_norm || !w->q_norm || !w->k_norm || !w->post_attn_norm ||
        !w->post_ffn_norm || !w->w || !w->b || !w->blocks)
        goto oom;
    if ((w->tok_emb = tensor_copy(m->tok_emb)) == NULL) goto oom;
    w->output = m->output == m->tok_emb ? w->tok_emb : tensor_copy(m->output);
    if (w->output == NULL || (w->out_norm = tensor_copy(m->out_norm)) == NULL) goto oom;
    for (int32_t b = 0; b < L; b++) {
        const struct lmp_block  *src = &m->blocks[b];
        struct lmp_block_params *bp  = &w->blocks[b];
        if ((w->attn_norm[b] = tensor_copy(src->attn_norm)) == NULL ||
            (w->ffn_norm[b] = tensor_copy(src->ffn_norm)) == NULL)
            goto oom;
        bp->attn_norm = w->attn_norm[b];
        bp->ffn_norm  = w->ffn_norm[b];
        /* beyond llama: present exactly where the model has them (lmp_model_finish checked
         * every block has the same) */
        if ((src->q_norm && (w->q_norm[b] = tensor_copy(src->q_norm)) == NULL) ||
            (src->k_norm && (w->k_norm[b] = tensor_copy(src->k_norm)) == NULL) ||
            (src->post_attn_norm &&
             (w->post_attn_norm[b] = tensor_copy(src->post_attn_norm)) == NULL) ||
            (src->post_ffn_norm && (w->post_ffn_norm[b] = tensor_copy(src->post_ffn_norm)) == NULL))
            goto oom;
        bp->q_norm         = w->q_norm[b];
        bp->k_norm         = w->k_norm[b];
        bp->post_attn_norm = w->post_attn_norm[b];
        bp->post_ffn_norm  = w->post_ffn_norm[b];
        bp->local          = lmp_rope_block_is_local(&m->cfg, b);
        for (int k = 0; k < LMP_LIN_COUNT; k++) {
            const int64_t i = (int64_t)b * LMP_LIN_COUNT + k;
            if ((w->w[i] = tensor_copy(src->lin[k].weight)) == NULL) goto oom;
            if (src->lin[k].bias && (w->b[i] = tensor_copy(src->lin[k].bias)) == NULL) goto oom;
            bp->w[k] = w->w[i];
            bp->b[k] = w->b[i];
        }
    }
    w->params = (struct lmp_model_params){
        .tok_emb = w->tok_emb, .output = w->output, .out_norm = w->out_norm, .blocks = w->blocks};
    *out = w;
    return LMP_OK;
oom:
    lmp_model_weights_free(&w);
    return lmp_err_set(err, LMP_ENOMEM, "'%s': out of memory for fp32 weights",
                       m->path ? m->path : "model");
}

/* ---- gradient buffers ------------------------------------------------------------------- */

struct lmp_model_grads_owned *lmp_model_grads_new(const struct lmp_config *cfg, bool embeddings) {
    assert(cfg);
    const int64_t dim = cfg->dim, hid = cfg->hidden_dim, vocab = cfg->vocab_size;
    const int64_t qd                = (int64_t)cfg->n_heads * cfg->head_dim;
    const int64_t kd                = (int64_t)cfg->n_kv_heads * cfg->head_dim;
    const int64_t wn[LMP_LIN_COUNT] = {qd * dim,  kd * dim,  kd * dim, dim * qd,
                                       hid * dim, hid * dim, dim * hid};
    const int64_t bn[LMP_LIN_COUNT] = {qd, kd, kd, dim, hid, hid, dim};
    const int64_t hd                = cfg->head_dim;
    int64_t per_block = 2 * dim + (cfg->qk_norm ? 2 * hd : 0) + (cfg->post_norms ? 2 * dim : 0);
    for (int k = 0; k < LMP_LIN_COUNT; k++)
        per_block += wn[k] + (cfg->qkv_bias && k <= LMP_LIN_V ? bn[k] : 0);
    const int64_t emb               = embeddings ? vocab * dim * (cfg->tied_embeddings ? 1 : 2) : 0;
    struct lmp_model_grads_owned *g = calloc(1, sizeof(*g));
    if (g == NULL) return NULL;
    g->n_layers = cfg->n_layers;
    g->n_floats = dim + emb + per_block * cfg->n_layers;
    g->mem      = calloc((size_t)g->n_floats, sizeof(float));
    g->blocks   = calloc((size_t)cfg->n_layers, sizeof(*g->blocks));
    if (g->mem == NULL || g->blocks == NULL) {
        lmp_model_grads_free(&g);
        return NULL;
    }
    float *cur    = g->mem;
    g->g.out_norm = cur;
    cur += dim;
    if (embeddings) {
        g->g.tok_emb = cur;
        cur += vocab * dim;
        if (!cfg->tied_embeddings) {
            g->g.output = cur;
            cur += vocab * dim;
        }
    }
    for (int32_t b = 0; b < cfg->n_layers; b++) {
        struct lmp_block_grads *bg = &g->blocks[b];
        bg->attn_norm              = cur;
        bg->ffn_norm               = cur + dim;
        cur += 2 * dim;
        if (cfg->qk_norm) {
            bg->q_norm = cur;
            bg->k_norm = cur + hd;
            cur += 2 * hd;
        }
        if (cfg->post_norms) {
            bg->post_attn_norm = cur;
            bg->post_ffn_norm  = cur + dim;
            cur += 2 * dim;
        }
        for (int k = 0; k < LMP_LIN_COUNT; k++) {
            bg->w[k] = cur;
            cur += wn[k];
            if (cfg->qkv_bias && k <= LMP_LIN_V) {
                bg->b[k] = cur;
                cur += bn[k];
            }
        }
    }
    assert(cur == g->mem + g->n_floats);
    g->g.blocks = g->blocks;
    return g;
}

void lmp_model_grads_zero(struct lmp_model_grads_owned *g) {
    memset(g->mem, 0, (size_t)g->n_floats * sizeof(float));
}

void lmp_model_grads_free(struct lmp_model_grads_owned **self_p) {
    assert(self_p);
    struct lmp_model_grads_owned *g = *self_p;
    if (g == NULL) return;
    free(g->mem);
    free(g->blocks);
    free(g);
    *self_p = NULL;
}

/* ---- the object ------------------------------------------------------------------------- */

void lmp_model_grad_destroy(struct lmp_model_grad **self_p) {
    assert(self_p);
    struct lmp_model_grad *mg = *self_p;
    if (mg == NULL) return;
    if (mg->bg) /* borrowers first: block s0 owns the scratch */
        for (int32_t b = mg->cfg.n_layers - 1; b >= 0; b--) lmp_block_grad_destroy(&mg->bg[b]);
    free(mg->bg);
    free(mg->tokens);
    float *bufs[] = {mg->xa, mg->xb, mg->xl, mg->sl, mg->hn, mg->dx, mg->z, mg->dz};
    for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++) free(bufs[i]);
    free(mg->acc);
    free(mg);
    *self_p = NULL;
}

enum lmp_status lmp_model_grad_new(const struct lmp_config *cfg, int64_t max_seq, int64_t seq_len,
                                   struct lmp_model_grad **out) {
    assert(cfg);
    return lmp_model_grad_new_stage(cfg, max_seq, seq_len, 0, cfg->n_layers, out);
}

enum lmp_status lmp_model_grad_new_stage(const struct lmp_config *cfg, int64_t max_seq,
                                         int64_t seq_len, int32_t s0, int32_t s1,
                                         struct lmp_model_grad **out) {
    assert(cfg && out);
    *out = NULL;
    if (max_seq <= 0 || seq_len <= 0 || cfg->n_layers <= 0 || cfg->vocab_size <= 0 ||
        (cfg->max_seq > 0 && seq_len > cfg->max_seq) || s0 < 0 || s1 <= s0 || s1 > cfg->n_layers)
        return LMP_EINVAL;
    struct lmp_model_grad *mg = calloc(1, sizeof(*mg));
    if (mg == NULL) return LMP_ENOMEM;
    mg->cfg     = *cfg;
    mg->max_seq = max_seq;
    mg->T       = seq_len;
    mg->dim     = cfg->dim;
    mg->vocab   = cfg->vocab_size;
    mg->s0      = s0;
    mg->s1      = s1;
    mg->bg      = calloc((size_t)cfg->n_layers, sizeof(*mg->bg));
    if (mg->bg == NULL) goto oom;
    enum lmp_status st = lmp_block_grad_new(cfg, max_seq, seq_len, &mg->bg[s0]);
    for (int32_t b = s0 + 1; st == LMP_OK && b < s1; b++)
        st = lmp_block_grad_new_shared(mg->bg[s0], &mg->bg[b]);
    if (st != LMP_OK) {
        lmp_model_grad_destroy(&mg);
        return st;
    }
    const int64_t rows = max_seq * seq_len, dim = mg->dim;
#define ALLOC(field, n) ((mg->field = malloc((size_t)(n) * sizeof(*mg->field))) != NULL)
    if (!(ALLOC(tokens, rows) && ALLOC(xa, rows * dim) && ALLOC(xb, rows * dim) &&
          ALLOC(xl, rows * dim) && ALLOC(sl, rows) && ALLOC(hn, rows * dim) &&
          ALLOC(dx, rows * dim) && ALLOC(z, LMP_MODEL_GRAD_CHUNK * mg->vocab) &&
          ALLOC(dz, LMP_MODEL_GRAD_CHUNK * mg->vocab) && ALLOC(acc, dim)))
        goto oom;
#undef ALLOC
    memset(mg->acc, 0, (size_t)dim * sizeof(*mg->acc));
    *out = mg;
    return LMP_OK;
oom:
    lmp_model_grad_destroy(&mg);
    return LMP_ENOMEM;
}

/* ---- forward ---------------------------------------------------------------------------- */

enum lmp_status lmp_model_grad_forward(struct lmp_model_grad *mg, const struct lmp_model_params *p,
                                       const int32_t *tokens, int64_t n_seq, struct lmp_err *err) {
    return lmp_model_grad_forward_stage(mg, p, tokens, NULL, n_seq, err);
}

enum lmp_status lmp_model_grad_forward_stage(struct lmp_model_grad         *mg,
                                             const struct lmp_model_params *p,
                                             const int32_t *tokens, const float *x_in,
                                             int64_t n_seq, struct lmp_err *err) {
    assert(mg && p && n_seq > 0 && n_seq <= mg->max_seq);
    assert(mg->s0 == 0 ? tokens != NULL : x_in != NULL);
    const int64_t rows = n_seq * mg->T, dim = mg->dim;
    const int32_t L = mg->cfg.n_layers;
    mg->n_seq       = 0;
    if (mg->s0 > 0)
        memcpy(mg->xa, x_in, (size_t)(rows * dim) * sizeof(float));
    else
        for (int64_t r = 0; r < rows; r++) {
            const int32_t t = tokens[r];
            if (t < 0 || t >= mg->vocab)
                return lmp_err_set(err, LMP_EINVAL, "token id %d is outside the vocabulary of %lld",
                                   t, (long long)mg->vocab);
            mg->tokens[r] = t;
            memcpy(mg->xa + r * dim, p->tok_emb + (int64_t)t * dim, (size_t)dim * sizeof(float));
        }
    /* Gemma: x0 = tok_emb[t] * sqrt(dim), in float as the forward pass (lmp_transformer_embed) */
    const float es = mg->cfg.embed_scale;
    if (mg->s0 == 0 && es != 0 && es != 1)
        for (int64_t i = 0; i < rows * dim; i++) mg->xa[i] *= es;
    float *in = mg->xa, *out = mg->xb;
    for (int32_t b = mg->s0; b < mg->s1; b++) {
        float *y = b == mg->s1 - 1 ? mg->xl : out;
        lmp_block_grad_forward(mg->bg[b], &p->blocks[b], in, n_seq, y);
        out = in;
        in  = y;
    }
    /* the final norm, in the forward pass's order (block_grad's rmsnorm) */
    for (int64_t r = 0; mg->s1 == L && r < rows; r++) {
        const float *x  = mg->xl + r * dim;
        float       *o  = mg->hn + r * dim;
        double       ss = 0;
        for (int64_t i = 0; i < dim; i++) ss += (double)x[i] * x[i];
        const float s = (float)(1.0 / sqrt(ss / (double)dim + (double)mg->cfg.norm_eps));
        mg->sl[r]     = s;
        for (int64_t i = 0; i < dim; i++) o[i] = x[i] * s * p->out_norm[i];
    }
    mg->n_seq = n_seq;
    return LMP_OK;
}

const float *lmp_model_grad_stage_out(const struct lmp_model_grad *mg) {
    return mg->xl;
}

const float *lmp_model_grad_stage_dx(const struct lmp_model_grad *mg) {
    return mg->dx;
}

void lmp_model_grad_logits(struct lmp_model_grad *mg, const struct lmp_model_params *p,
                           int64_t row0, int64_t n_rows, float *logits) {
    assert(mg && p && logits && mg->n_seq > 0 && row0 >= 0 && row0 + n_rows <= mg->n_seq * mg->T);
    lmp_kernels_get()->sgemm(LMP_NO_TRANS, LMP_TRANS, n_rows, mg->vocab, mg->dim, 1.0f,
                             mg->hn + row0 * mg->dim, mg->dim, p->output, mg->dim, 0.0f, logits,
                             mg->vocab);
    lmp_softcap(logits, n_rows * mg->vocab, mg->cfg.final_softcap); /* Gemma 2 */
}

const float *lmp_model_grad_hidden(const struct lmp_model_grad *mg) {
    return mg->hn;
}

/* ---- loss and backward ------------------------------------------------------------------ */

/* dx holds dL/d(output of block s1 - 1): the blocks [b0, s1) backward (dx in place, down
 * to dL/d(input of block b0) where the block below needs it), then the embedding rows. */
static void blocks_backward(struct lmp_model_grad *mg, const struct lmp_model_params *p,
                            const struct lmp_model_grads *g) {
    if (g->blocks == NULL && g->tok_emb == NULL) return;
    const int64_t                rows = mg->n_seq * mg->T, dim = mg->dim;
    const struct lmp_block_grads none = {0};
    const int32_t                lo   = mg->b0 > mg->s0 ? mg->b0 : mg->s0;
    for (int32_t b = mg->s1 - 1; b >= lo; b--)
        lmp_block_grad_backward(mg->bg[b], &p->blocks[b], mg->dx,
                                b > mg->b0 || (b == 0 && g->tok_emb) ? mg->dx : NULL,
                                g->blocks ? &g->blocks[b] : &none);
    const float es = mg->cfg.embed_scale; /* x0 = tok_emb[t] * es: dL/de = es dL/dx0 */
    if (g->tok_emb && mg->b0 == 0 && mg->s0 == 0)
        for (int64_t r = 0; r < rows; r++) {
            float       *e = g->tok_emb + (int64_t)mg->tokens[r] * dim;
            const float *d = mg->dx + r * dim;
            if (es != 0 && es != 1)
                for (int64_t i = 0; i < dim; i++) e[i] += es * d[i];
            else
                for (int64_t i = 0; i < dim; i++) e[i] += d[i];
        }
}

void lmp_model_grad_kl_backward(struct lmp_model_grad *mg, const struct lmp_model_params *p,
                                const float *teacher, const struct lmp_model_grads *g, double *kl,
                                int64_t *agree) {
    assert(mg && p && teacher && mg->n_seq > 0 && mg->s1 == mg->cfg.n_layers);
    const struct lmp_kernels *kt   = lmp_kernels_get();
    const int64_t             rows = mg->n_seq * mg->T, dim = mg->dim, V = mg->vocab;
    const bool                tied = p->output == p->tok_emb;
    const float               sc   = (float)(1.0 / (double)rows);
    float                    *dout = g ? (tied ? g->tok_emb : g->output) : NULL; /* head gradient */
    assert(!(g && tied && g->output));
    const bool deep    = g && (g->blocks || g->tok_emb || g->out_norm);
    double     total   = 0;
    int64_t    n_agree = 0;
    for (int64_t r0 = 0; r0 < rows; r0 += LMP_MODEL_GRAD_CHUNK) {
        const int64_t n = rows - r0 < LMP_MODEL_GRAD_CHUNK ? rows - r0 : LMP_MODEL_GRAD_CHUNK;
        lmp_model_grad_logits(mg, p, r0, n, mg->z);
        int64_t a = 0;
        total += lmp_kl_rows(teacher + r0 * V, mg->z, n, V, sc, g ? mg->dz : NULL, NULL, &a);
        n_agree += a;
        if (g == NULL) continue;
        const float cap = mg->cfg.final_softcap;
        if (cap > 0) /* z = cap tanh(u / cap): du = dz (1 - (z / cap)^2) */
            for (int64_t i = 0; i < n * V; i++) {
                const float th = mg->z[i] / cap;
                mg->dz[i] *= 1.0f - th * th;
            }
        const float *hn = mg->hn + r0 * dim;
        if (dout) /* dWout (V, dim) += dz^T hn */
            kt->sgemm(LMP_TRANS, LMP_NO_TRANS, V, dim, n, 1.0f, mg->dz, V, hn, dim, 1.0f, dout,
                      dim);
        if (deep) /* dhn = dz Wout */
            kt->sgemm(LMP_NO_TRANS, LMP_NO_TRANS, n, dim, V, 1.0f, mg->dz, V, p->output, dim, 0.0f,
                      mg->dx + r0 * dim, dim);
    }
    if (kl) *kl = total / (double)rows;
    if (agree) *agree = n_agree;
    if (!deep) return;

    /* final norm: dx(L) = d rmsnorm^T dhn (in place), d out_norm += sum dhn x s */
    for (int64_t r = 0; r < rows; r++) {
        const float *x   = mg->xl + r * dim;
        float       *d   = mg->dx + r * dim;
        const double s   = mg->sl[r];
        double       dot = 0;
        for (int64_t i = 0; i < dim; i++) {
            dot += (double)d[i] * p->out_norm[i] * x[i];
            mg->acc[i] += (double)d[i] * x[i] * s;
        }
        const double c = s * s * s * dot / (double)dim;
        for (int64_t i = 0; i < dim; i++) d[i] = (float)(s * d[i] * p->out_norm[i] - c * x[i]);
    }
    if (g->out_norm)
        for (int64_t i = 0; i < dim; i++) g->out_norm[i] += (float)mg->acc[i];
    memset(mg->acc, 0, (size_t)dim * sizeof(*mg->acc));

    blocks_backward(mg, p, g);
}

void lmp_model_grad_backward_stage(struct lmp_model_grad *mg, const struct lmp_model_params *p,
                                   const float *dx_out, const struct lmp_model_grads *g) {
    assert(mg && p && dx_out && g && mg->n_seq > 0 && mg->s1 < mg->cfg.n_layers);
    if (mg->s1 <= mg->b0) return; /* below the first trained block: nothing to do */
    memcpy(mg->dx, dx_out, (size_t)(mg->n_seq * mg->T * mg->dim) * sizeof(float));
    blocks_backward(mg, p, g);
}
