/*  transformer - see transformer.h
 *
 *  Layout: activations are row-major (rows = tokens, sequence-major); a KV cache layer
 *  is (n_seq, max_ctx, kv_dim). Attention runs per (sequence, head, block of QB query
 *  rows) as two single-threaded sgemms (S = Q K^T over the causal prefix only, O = P V)
 *  on the pool, so the masked upper triangle costs at most one QB-wide strip.
 */
#include "model/transformer.h"
#include "model/rope.h"      /* defines: lmp_rope_freqs, lmp_rope_block_is_local */
#include "base/file.h"       /* defines: lmp_map_release_pages */
#include "kernels/kernels.h" /* defines: lmp_kernels_get()->sgemm, lmp_kernels_parallel */

#include <assert.h>
#include <math.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

enum {
    QB = 64,       /* query rows per attention task: small enough to balance 2 threads
                      and waste little of the causal triangle, large enough for sgemm */
    ROW_TASK = 16, /* rows per task of the elementwise ops */
};

/* ---- parallel-for over task indices, on the kernel pool ----------------------------- */

/* Tasks are taken from one counter by the kernel pool's threads (lmp_kernels_parallel), the
 * same threads the kernels run on: a decoding step hands work to one set of threads, not
 * to two that would take turns on the cores. A task's result does not depend on the thread
 * that runs it (`thread` only picks per-thread scratch, < pool.n_threads). */
typedef void pool_fn(void *ctx, int64_t task, int thread);

struct pool {
    int n_threads; /* including the caller; at most the process's kernel budget */
};

struct pool_job {
    pool_fn     *fn;
    void        *ctx;
    int64_t      n_tasks;
    atomic_llong next;
};

static void pool_part(void *arg, int tid, int n) {
    struct pool_job *j = arg;
    (void)n;
    for (;;) {
        const int64_t t = atomic_fetch_add(&j->next, 1);
        if (t >= j->n_tasks) break;
        j->fn(j->ctx, t, tid);
    }
}

static void pool_start(struct pool *p, int n_threads) {
    const int budget = lmp_kernels_threads();
    p->n_threads     = n_threads < 1 ? 1 : n_threads > budget ? budget : n_threads;
}

static void pool_run(struct pool *p, int64_t n_tasks, pool_fn *fn, void *ctx) {
    if (n_tasks <= 0) return;
    if (p->n_threads <= 1 || n_tasks == 1) {
        for (int64_t t = 0; t < n_tasks; t++) fn(ctx, t, 0);
        return;
    }
    struct pool_job j = {.fn = fn, .ctx = ctx, .n_tasks = n_tasks};
    atomic_init(&j.next, 0);
    lmp_kernels_parallel(n_tasks < p->n_threads ? (int)n_tasks : p->n_threads, pool_part, &j);
}

/* ---- the transformer ---------------------------------------------------------------- */

/* A linear held as AQLM codes: the model's codes, and their packed copy where the kernel
 * table has aq_matvec_pk (24-bit tables for up to AQ_PACKED_ROWS rows: decoding). */
struct aq_op {
    const struct lmp_aq_linear *q;
    struct lmp_aq_packed        pk;
    bool                        tried;  /* packing was attempted */
    bool                        packed; /* pk holds the codes */
};

/* The layer packed for aq_matvec_pk, packing it on first use or when a KV cache is made
 * (eval's long windows never pay for it); false where the table has no packed path or
 * the layer does not fit it. */
static bool aq_op_packed(struct aq_op *a) {
    if (!a->tried) {
        const struct lmp_aq_shape *s = &a->q->shape;
        a->tried                     = true;
        a->packed = lmp_kernels_get()->aq_matvec_pk && s->K <= 256 && s->g <= 16 &&
                    lmp_aq_pack(&a->pk, a->q->codes, a->q->codebooks, a->q->scales, s) == 0;
    }
    return a->packed && lmp_kernels_get()->aq_matvec_pk;
}

enum { AQ_PACKED_ROWS = 8 };

struct tf_block {
    float           *attn_norm;                      /* (dim) */
    float           *ffn_norm;                       /* (dim) */
    const float     *q_norm, *k_norm;                /* (head_dim) or NULL (cfg.qk_norm) */
    const float     *post_attn_norm, *post_ffn_norm; /* (dim) or NULL (cfg.post_norms) */
    bool             local;                          /* sliding-window layer (its own RoPE) */
    struct lmp_linop lin[LMP_LIN_COUNT];
    struct aq_op    *aq[LMP_LIN_COUNT]; /* a linear held as codes (its lin[].ctx), or NULL */
    /* lazy weights: what load_block put into lin[] (to clear it again) and what it owns */
    bool         loaded;
    const float *lazy_w[LMP_LIN_COUNT], *lazy_b[LMP_LIN_COUNT];
    float       *own_w[LMP_LIN_COUNT], *own_b[LMP_LIN_COUNT];
};

struct lmp_transformer {
    const struct lmp_model *model;
    struct lmp_config       cfg;
    int                     n_threads;
    int64_t                 vocab_slice; /* see lmp_transformer_opts */
    struct pool             pool;
    struct tf_block        *blocks;     /* (n_layers) */
    float                  *out_norm;   /* (dim) */
    bool                    lazy;       /* opts.lazy_weights */
    float                  *own_output; /* lazy: the dequantized head, or NULL */
    const float            *output;     /* (vocab, dim): owned or into the map (lazy: NULL
                                           until lmp_transformer_load_head) */
    const float *tok_emb;               /* (vocab, dim) fp32 or NULL: rows dequantized on use */
    float      **owned;                 /* buffers to free */
    int64_t      n_owned, cap_owned;
    int64_t      n_pos;      /* positions with RoPE tables */
    int64_t      rope_half;  /* rotated pairs per head: lmp_rope_n_dims / 2 */
    float       *rope_cos;   /* (n_pos, rope_half) of the global layers */
    float       *rope_sin;   /* (n_pos, rope_half) */
    float       *rope_cos_l; /* (n_pos, rope_half) of the local layers, or NULL */
    float       *rope_sin_l; /* (n_pos, rope_half) */
    /* scratch, grown on demand */
    int64_t cap_rows;
    float  *xb;         /* (rows, dim) normed input */
    float  *q;          /* (rows, q_dim) */
    float  *k;          /* (rows, kv_dim) */
    float  *v;          /* (rows, kv_dim) */
    float  *att;        /* (rows, q_dim) attention output */
    float  *hb;         /* (rows, hidden) gate, then silu(gate) * up */
    float  *hb2;        /* (rows, hidden) up */
    float  *tmp;        /* (rows, max(dim, ...)) output of a callback operator */
    int64_t cap_scores; /* floats per thread */
    float **scores;     /* (n_threads) x (QB, keys) */

    /* opts.head_blocks and a Q8_0 / Q4_1 head: the head run on its blocks (qmatvec) or
     * widened a slice at a time (qslice, (vocab_slice, dim)), never whole; else NULL */
    const struct lmp_tensor *qhead;
    float                   *qslice;
    bool                     codes; /* some linear is held as codes (an artifact's inference) */
};

struct lmp_kvcache {
    int64_t n_seq, max_ctx, pos, kv_dim, n_layers;
    float  *k; /* (n_layers, n_seq, max_ctx, kv_dim) */
    float  *v; /* (n_layers, n_seq, max_ctx, kv_dim) */
};

static float *own(struct lmp_transformer *tf, size_t n_floats) {
    if (tf->n_owned == tf->cap_owned) {
        int64_t cap = tf->cap_owned ? 2 * tf->cap_owned : 64;
        float **o   = realloc(tf->owned, (size_t)cap * sizeof(*o));
        if (o == NULL) return NULL;
        tf->owned     = o;
        tf->cap_owned = cap;
    }
    float *p = malloc(n_floats * sizeof(float));
    if (p) tf->owned[tf->n_owned++] = p;
    return p;
}

struct dequant_job {
    const struct lmp_tensor *t;
    float                   *dst;
    int64_t                  rows_per_task, n_rows, n_cols;
};

static void dequant_task(void *ctx, int64_t task, int thread) {
    const struct dequant_job *j  = ctx;
    int64_t                   r0 = task * j->rows_per_task;
    int64_t n = j->n_rows - r0 < j->rows_per_task ? j->n_rows - r0 : j->rows_per_task;
    lmp_tensor_rows_f32(j->t, r0, n, j->dst + r0 * j->n_cols);
}

static bool is_direct_f32(const struct lmp_tensor *t) {
    return t->dtype == LMP_DTYPE_F32 && ((uintptr_t)t->data % sizeof(float)) == 0;
}

/* dst (n_elem) = t dequantized to fp32, rows in parallel on the pool. */
static void dequant(struct lmp_transformer *tf, const struct lmp_tensor *t, float *dst) {
    struct dequant_job j = {
        .t = t, .dst = dst, .n_rows = lmp_tensor_n_rows(t), .n_cols = lmp_tensor_n_cols(t)};
    j.rows_per_task = j.n_rows / 64 > 0 ? j.n_rows / 64 : 1;
    pool_run(&tf->pool, (j.n_rows + j.rows_per_task - 1) / j.rows_per_task, dequant_task, &j);
}

/* fp32 rows of t: the map itself when it is aligned F32, else an owned dequantized copy. */
static const float *tensor_f32(struct lmp_transformer *tf, const struct lmp_tensor *t,
                               bool force_copy) {
    if (!force_copy && is_direct_f32(t)) return t->data;
    float *dst = own(tf, (size_t)lmp_tensor_n_elem(t));
    if (dst == NULL) return NULL;
    dequant(tf, t, dst);
    return dst;
}

/* Lazy weights: fp32 rows of t as tensor_f32, but a copy goes to *owned (freed by the
 * caller) instead of the transformer's list. NULL on out-of-memory. */
static const float *tensor_f32_lazy(struct lmp_transformer *tf, const struct lmp_tensor *t,
                                    float **owned) {
    *owned = NULL;
    if (is_direct_f32(t)) return t->data;
    if ((*owned = malloc((size_t)lmp_tensor_n_elem(t) * sizeof(float))) == NULL) return NULL;
    dequant(tf, t, *owned);
    return *owned;
}

static void release_tensor_pages(const struct lmp_tensor *t) {
    if (t) lmp_map_release_pages(t->data, (size_t)t->nbytes);
}

static void free_scratch(struct lmp_transformer *tf) {
    free(tf->xb);
    free(tf->q);
    free(tf->k);
    free(tf->v);
    free(tf->att);
    free(tf->hb);
    free(tf->hb2);
    free(tf->tmp);
    tf->xb = tf->q = tf->k = tf->v = tf->att = tf->hb = tf->hb2 = tf->tmp = NULL;
    tf->cap_rows                                                          = 0;
}

static int64_t q_dim(const struct lmp_config *c) {
    return (int64_t)c->n_heads * c->head_dim;
}
static int64_t kv_dim(const struct lmp_config *c) {
    return (int64_t)c->n_kv_heads * c->head_dim;
}

static bool ensure_rows(struct lmp_transformer *tf, int64_t rows) {
    if (rows <= tf->cap_rows) return true;
    const struct lmp_config *c = &tf->cfg;
    free_scratch(tf);
    int64_t wide = c->dim > q_dim(c) ? c->dim : q_dim(c);
    tf->xb       = malloc((size_t)(rows * c->dim) * sizeof(float));
    tf->q        = malloc((size_t)(rows * q_dim(c)) * sizeof(float));
    tf->k        = malloc((size_t)(rows * kv_dim(c)) * sizeof(float));
    tf->v        = malloc((size_t)(rows * kv_dim(c)) * sizeof(float));
    tf->att      = malloc((size_t)(rows * q_dim(c)) * sizeof(float));
    tf->hb       = malloc((size_t)(rows * c->hidden_dim) * sizeof(float));
    tf->hb2      = malloc((size_t)(rows * c->hidden_dim) * sizeof(float));
    tf->tmp      = malloc((size_t)(rows * wide) * sizeof(float));
    if (!tf->xb || !tf->q || !tf->k || !tf->v || !tf->att || !tf->hb || !tf->hb2 || !tf->tmp) {
        free_scratch(tf);
        return false;
    }
    tf->cap_rows = rows;
    return true;
}

static bool ensure_scores(struct lmp_transformer *tf, int64_t n_keys) {
    const int64_t need = (int64_t)QB * n_keys;
    if (need <= tf->cap_scores) return true;
    /* decoding asks for one key more per token: grown by half at least (up to the model's
     * positions), so a token does not free and map a new buffer */
    int64_t want = tf->cap_scores + tf->cap_scores / 2;
    want         = want < need ? need : want;
    if (want > (int64_t)QB * tf->n_pos)
        want = need > (int64_t)QB * tf->n_pos ? need : (int64_t)QB * tf->n_pos;
    for (int i = 0; i < tf->n_threads; i++) {
        free(tf->scores[i]);
        tf->scores[i] = malloc((size_t)want * sizeof(float));
        if (tf->scores[i] == NULL) {
            tf->cap_scores = 0;
            return false;
        }
    }
    tf->cap_scores = want;
    return true;
}

/* A linear held as AQLM codes (lmp_linear.aq): y (n_tok, n_out) = x W_hat^T by the
 * aq_matvec_pk kernel (24-bit lookup tables on the packed codes) for a few rows where
 * the layer was packed, else aq_matvec (fp32 lookup tables for one token, decoded tiles +
 * sgemm for many). */
static void linop_apply(const struct lmp_linop *op, const float *x, int64_t n_tok, float *y,
                        bool accumulate, float *tmp);

static void aq_linop_apply(void *ctx, const float *x, int64_t n_tok, float *y) {
    struct aq_op               *a  = ctx;
    const struct lmp_aq_linear *q  = a->q;
    const struct lmp_aq_shape  *s  = &q->shape;
    const struct lmp_kernels   *kt = lmp_kernels_get();
    if (n_tok <= AQ_PACKED_ROWS && aq_op_packed(a)) {
        const struct lmp_aq_packed *w[1] = {&a->pk};
        if (kt->aq_matvec_pk(1, &y, x, n_tok, w) == 0) return;
    }
    if (kt->aq_matvec(y, x, n_tok, q->codes, q->codebooks, q->scales, s) == 0) return;
    /* the kernel's scratch could not be had: the same product without any, slowly */
    const int64_t n_grp = s->n_in / s->g;
    for (int64_t t = 0; t < n_tok; t++)
        for (int64_t o = 0; o < s->n_out; o++) {
            double acc = 0.0;
            for (int64_t j = 0; j < n_grp; j++)
                for (int m = 0; m < s->M; m++) {
                    const float *c =
                        q->codebooks +
                        ((int64_t)m * s->K + q->codes[(o * n_grp + j) * s->M + m]) * s->g;
                    for (int64_t i = 0; i < s->g; i++)
                        acc += (double)c[i] * x[t * s->n_in + j * s->g + i];
                }
            y[t * s->n_out + o] = (float)(acc * q->scales[o]);
        }
}

/* y[i] = x op_i^T for the n linears kinds[] of a block that share the input x (q, k, v;
 * gate, up): one aq_matvec_pk call for all when each is a packed AQ linear without
 * bias (one fork/join instead of n), else one at a time. */
static void linops_shared_input(const struct tf_block *blk, const enum lmp_lin *kinds, int n,
                                const float *x, int64_t n_tok, float *const *y, float *tmp) {
    const struct lmp_kernels   *kt = lmp_kernels_get();
    const struct lmp_aq_packed *w[LMP_LIN_COUNT];
    bool                        fuse = kt->aq_matvec_pk && n_tok <= AQ_PACKED_ROWS;
    for (int i = 0; fuse && i < n; i++) {
        const struct lmp_linop *op = &blk->lin[kinds[i]];
        struct aq_op           *a  = blk->aq[kinds[i]];
        fuse = a && op->apply == aq_linop_apply && op->ctx == a && !op->bias && aq_op_packed(a) &&
               a->pk.shape.n_in == blk->aq[kinds[0]]->pk.shape.n_in;
        if (fuse) w[i] = &a->pk;
    }
    if (fuse && kt->aq_matvec_pk(n, y, x, n_tok, w) == 0) return;
    for (int i = 0; i < n; i++) linop_apply(&blk->lin[kinds[i]], x, n_tok, y[i], false, tmp);
}

enum lmp_status lmp_transformer_new(const struct lmp_model            *m,
                                    const struct lmp_transformer_opts *opts,
                                    struct lmp_transformer **out, struct lmp_err *err) {
    assert(m && out);
    *out                       = NULL;
    const struct lmp_config *c = &m->cfg;
    if (c->head_dim <= 0 || c->head_dim % 2 != 0 || c->n_kv_heads <= 0 ||
        c->n_heads % c->n_kv_heads != 0)
        return lmp_err_set(err, LMP_EUNSUP,
                           "'%s': attention shape not supported (%d heads, "
                           "%d kv heads, head dim %d)",
                           m->path ? m->path : "model", c->n_heads, c->n_kv_heads, c->head_dim);
    struct lmp_transformer *tf = calloc(1, sizeof(*tf));
    if (tf == NULL) return lmp_err_set(err, LMP_ENOMEM, "out of memory building the forward pass");
    tf->model     = m;
    tf->cfg       = *c;
    tf->n_threads = opts && opts->n_threads > 1 ? opts->n_threads : 1;
    /* 4096 columns: the (rows, 4096) slice of logits stays small (8 MB for 512 rows) while
     * each sgemm is wide enough to run near peak */
    tf->vocab_slice = opts && opts->vocab_slice > 0 ? opts->vocab_slice : 4096;
    tf->lazy        = opts && opts->lazy_weights;
    /* fixes the process's thread budget (OpenBLAS's count) unless something did before:
     * one transformer per process (eval, generate) gets exactly n_threads, as before */
    lmp_kernels_set_threads(tf->n_threads);
    pool_start(&tf->pool, tf->n_threads);
    tf->n_threads = tf->pool.n_threads;
    tf->scores    = calloc((size_t)tf->n_threads, sizeof(*tf->scores));
    tf->blocks    = calloc((size_t)c->n_layers, sizeof(*tf->blocks));
    if (tf->scores == NULL || tf->blocks == NULL) goto oom;

    const int64_t dim = c->dim;
    for (int32_t b = 0; b < c->n_layers; b++) {
        const struct lmp_block *src = &m->blocks[b];
        struct tf_block        *dst = &tf->blocks[b];
        if ((dst->attn_norm = (float *)tensor_f32(tf, src->attn_norm, true)) == NULL ||
            (dst->ffn_norm = (float *)tensor_f32(tf, src->ffn_norm, true)) == NULL)
            goto oom;
        if ((src->q_norm && (dst->q_norm = tensor_f32(tf, src->q_norm, true)) == NULL) ||
            (src->k_norm && (dst->k_norm = tensor_f32(tf, src->k_norm, true)) == NULL) ||
            (src->post_attn_norm &&
             (dst->post_attn_norm = tensor_f32(tf, src->post_attn_norm, true)) == NULL) ||
            (src->post_ffn_norm &&
             (dst->post_ffn_norm = tensor_f32(tf, src->post_ffn_norm, true)) == NULL))
            goto oom;
        dst->local = lmp_rope_block_is_local(c, b);
        for (int k = 0; k < LMP_LIN_COUNT; k++) {
            const struct lmp_linear *l  = &src->lin[k];
            struct lmp_linop        *op = &dst->lin[k];
            op->n_out                   = l->n_out;
            op->n_in                    = l->n_in;
            if (l->aq) { /* codes: run by the kernel, never a dense copy */
                struct aq_op *a = calloc(1, sizeof(*a));
                if (a == NULL) goto oom;
                a->q       = l->aq;
                dst->aq[k] = a;
                tf->codes  = true;
                op->apply  = aq_linop_apply;
                op->ctx    = a;
            }
            if (tf->lazy) continue; /* lmp_transformer_load_block */
            if (!l->aq && (op->w = tensor_f32(tf, l->weight, false)) == NULL) goto oom;
            if (l->bias && (op->bias = tensor_f32(tf, l->bias, false)) == NULL) goto oom;
        }
    }
    if ((tf->out_norm = (float *)tensor_f32(tf, m->out_norm, true)) == NULL) goto oom;
    if (opts && opts->head_blocks && m->output->n_dims == 2 && c->dim % 32 == 0 &&
        (m->output->dtype == LMP_DTYPE_Q8_0 || m->output->dtype == LMP_DTYPE_Q4_1 ||
         m->output->dtype == LMP_DTYPE_F16)) {
        tf->qhead       = m->output; /* a tied embedding's rows are then dequantized on use */
        const int64_t n = c->vocab_size < tf->vocab_slice ? c->vocab_size : tf->vocab_slice;
        if ((tf->qslice = own(tf, (size_t)(n * c->dim))) == NULL) goto oom;
    }
    if (tf->lazy) { /* head: lmp_transformer_load_head; embeddings: rows on use */
        if (is_direct_f32(m->tok_emb)) tf->tok_emb = m->tok_emb->data;
    } else {
        if (!tf->qhead && (tf->output = tensor_f32(tf, m->output, false)) == NULL) goto oom;
        if (m->output == m->tok_emb && tf->output)
            tf->tok_emb = tf->output;
        else if (is_direct_f32(m->tok_emb))
            tf->tok_emb = m->tok_emb->data;
    }
    (void)dim;

    /* RoPE: angle(pos, i) = pos * inv_freq[i] (model/rope.h), in double. */
    tf->rope_half  = lmp_rope_n_dims(c) / 2;
    tf->n_pos      = c->max_seq > 0 ? c->max_seq : 4096;
    bool any_local = false;
    for (int32_t b = 0; b < c->n_layers; b++) any_local = any_local || tf->blocks[b].local;
    for (int kind = 0; kind < 1 + any_local; kind++) {
        const int64_t half = tf->rope_half;
        float  *cs = own(tf, (size_t)(tf->n_pos * half)), *sn = own(tf, (size_t)(tf->n_pos * half));
        double *inv = malloc((size_t)half * sizeof(double)), mscale = 1.0;
        if (cs == NULL || sn == NULL || inv == NULL) {
            free(inv);
            goto oom;
        }
        lmp_rope_freqs(c, kind == 1, inv, &mscale);
        for (int64_t i = 0; i < half; i++)
            for (int64_t p = 0; p < tf->n_pos; p++) {
                double a         = (double)p * inv[i];
                cs[p * half + i] = (float)(cos(a) * mscale);
                sn[p * half + i] = (float)(sin(a) * mscale);
            }
        free(inv);
        if (kind == 0)
            tf->rope_cos = cs, tf->rope_sin = sn;
        else
            tf->rope_cos_l = cs, tf->rope_sin_l = sn;
    }
    *out = tf;
    return LMP_OK;
oom:
    lmp_transformer_destroy(&tf);
    return lmp_err_set(err, LMP_ENOMEM, "'%s': out of memory building the forward pass",
                       m->path ? m->path : "model");
}

void lmp_transformer_destroy(struct lmp_transformer **self_p) {
    assert(self_p);
    struct lmp_transformer *tf = *self_p;
    if (tf == NULL) return;
    if (tf->blocks)
        for (int32_t b = 0; b < tf->cfg.n_layers; b++)
            for (int k = 0; k < LMP_LIN_COUNT; k++) {
                free(tf->blocks[b].own_w[k]);
                free(tf->blocks[b].own_b[k]);
                if (tf->blocks[b].aq[k]) lmp_aq_packed_free(&tf->blocks[b].aq[k]->pk);
                free(tf->blocks[b].aq[k]);
            }
    free(tf->own_output);
    for (int64_t i = 0; i < tf->n_owned; i++) free(tf->owned[i]);
    free(tf->owned);
    free_scratch(tf);
    if (tf->scores)
        for (int i = 0; i < tf->n_threads; i++) free(tf->scores[i]);
    free(tf->scores);
    free(tf->blocks);
    free(tf);
    *self_p = NULL;
}

const struct lmp_config *lmp_transformer_config(const struct lmp_transformer *self) {
    return &self->cfg;
}

int lmp_transformer_n_threads(const struct lmp_transformer *self) {
    return self->n_threads;
}

struct lmp_linop *lmp_transformer_linop(struct lmp_transformer *self, int32_t block,
                                        enum lmp_lin kind) {
    assert(block >= 0 && block < self->cfg.n_layers && (unsigned)kind < LMP_LIN_COUNT);
    return &self->blocks[block].lin[kind];
}

float *lmp_transformer_norm(struct lmp_transformer *self, int32_t block, bool ffn) {
    assert(block >= 0 && block < self->cfg.n_layers);
    return ffn ? self->blocks[block].ffn_norm : self->blocks[block].attn_norm;
}

enum lmp_status lmp_transformer_load_block(struct lmp_transformer *tf, int32_t block,
                                           struct lmp_err *err) {
    assert(tf && block >= 0 && block < tf->cfg.n_layers);
    struct tf_block *blk = &tf->blocks[block];
    if (!tf->lazy || blk->loaded) return LMP_OK;
    const struct lmp_block *src = &tf->model->blocks[block];
    for (int k = 0; k < LMP_LIN_COUNT; k++) {
        const struct lmp_linear *l  = &src->lin[k];
        struct lmp_linop        *op = &blk->lin[k];
        if (op->w == NULL && op->apply == NULL) {
            if ((op->w = tensor_f32_lazy(tf, l->weight, &blk->own_w[k])) == NULL) goto oom;
            blk->lazy_w[k] = op->w;
        }
        if (l->bias && op->bias == NULL) {
            if ((op->bias = tensor_f32_lazy(tf, l->bias, &blk->own_b[k])) == NULL) goto oom;
            blk->lazy_b[k] = op->bias;
        }
    }
    blk->loaded = true;
    return LMP_OK;
oom:
    lmp_transformer_release_block(tf, block);
    return lmp_err_set(err, LMP_ENOMEM, "'%s': out of memory for the weights of block %d",
                       tf->model->path ? tf->model->path : "model", block);
}

void lmp_transformer_release_block(struct lmp_transformer *tf, int32_t block) {
    assert(tf && block >= 0 && block < tf->cfg.n_layers);
    if (!tf->lazy) return;
    struct tf_block        *blk = &tf->blocks[block];
    const struct lmp_block *src = &tf->model->blocks[block];
    for (int k = 0; k < LMP_LIN_COUNT; k++) {
        struct lmp_linop *op = &blk->lin[k];
        if (blk->lazy_w[k] && op->w == blk->lazy_w[k]) op->w = NULL;
        if (blk->lazy_b[k] && op->bias == blk->lazy_b[k]) op->bias = NULL;
        free(blk->own_w[k]);
        free(blk->own_b[k]);
        blk->own_w[k] = blk->own_b[k] = NULL;
        blk->lazy_w[k] = blk->lazy_b[k] = NULL;
        release_tensor_pages(src->lin[k].weight);
        release_tensor_pages(src->lin[k].bias);
    }
    release_tensor_pages(src->attn_norm);
    release_tensor_pages(src->ffn_norm);
    blk->loaded = false;
}

enum lmp_status lmp_transformer_load_head(struct lmp_transformer *tf, struct lmp_err *err) {
    assert(tf);
    if (tf->output != NULL || tf->qhead != NULL) return LMP_OK;
    if ((tf->output = tensor_f32_lazy(tf, tf->model->output, &tf->own_output)) == NULL)
        return lmp_err_set(err, LMP_ENOMEM, "'%s': out of memory for the output layer",
                           tf->model->path ? tf->model->path : "model");
    return LMP_OK;
}

void lmp_transformer_release_head(struct lmp_transformer *tf) {
    assert(tf);
    if (!tf->lazy) return;
    free(tf->own_output);
    tf->own_output = NULL;
    tf->output     = NULL;
    release_tensor_pages(tf->model->output);
    if (tf->model->tok_emb != tf->model->output) release_tensor_pages(tf->model->tok_emb);
    release_tensor_pages(tf->model->out_norm);
}

/* ---- KV cache ------------------------------------------------------------------------- */

struct lmp_kvcache *lmp_kvcache_new(const struct lmp_transformer *tf, int64_t n_seq,
                                    int64_t max_ctx) {
    assert(tf && n_seq > 0 && max_ctx > 0);
    struct lmp_kvcache *kv = calloc(1, sizeof(*kv));
    if (kv == NULL) return NULL;
    kv->n_seq    = n_seq;
    kv->max_ctx  = max_ctx;
    kv->kv_dim   = kv_dim(&tf->cfg);
    kv->n_layers = tf->cfg.n_layers;
    size_t n     = (size_t)(kv->n_layers * n_seq * max_ctx * kv->kv_dim);
    kv->k        = malloc(n * sizeof(float));
    kv->v        = malloc(n * sizeof(float));
    if (kv->k == NULL || kv->v == NULL) lmp_kvcache_destroy(&kv);
    /* a cache means decoding: what its few-row steps use is made now, with the model's
     * loading, not inside the first token (the packed codes) */
    if (kv && n_seq <= AQ_PACKED_ROWS) {
        struct lmp_transformer *mt = (struct lmp_transformer *)tf; /* caches of the pass */
        for (int32_t b = 0; b < mt->cfg.n_layers; b++)
            for (int k = 0; k < LMP_LIN_COUNT; k++)
                if (mt->blocks[b].aq[k]) aq_op_packed(mt->blocks[b].aq[k]);
    }
    return kv;
}

void lmp_kvcache_destroy(struct lmp_kvcache **self_p) {
    assert(self_p);
    struct lmp_kvcache *kv = *self_p;
    if (kv == NULL) return;
    free(kv->k);
    free(kv->v);
    free(kv);
    *self_p = NULL;
}

void lmp_kvcache_reset(struct lmp_kvcache *self) {
    self->pos = 0;
}
int64_t lmp_kvcache_pos(const struct lmp_kvcache *self) {
    return self->pos;
}
void lmp_kvcache_advance(struct lmp_kvcache *self, int64_t n_tok) {
    assert(self->pos + n_tok <= self->max_ctx);
    self->pos += n_tok;
}

/* ---- operators ------------------------------------------------------------------------ */

/* y = x op^T + bias (+ y when accumulate). tmp: (n_tok, n_out) scratch for callbacks. */
static void linop_apply(const struct lmp_linop *op, const float *x, int64_t n_tok, float *y,
                        bool accumulate, float *tmp) {
    if (op->apply == NULL) {
        lmp_kernels_get()->sgemm(LMP_NO_TRANS, LMP_TRANS, n_tok, op->n_out, op->n_in, 1.0f, x,
                                 op->n_in, op->w, op->n_in, accumulate ? 1.0f : 0.0f, y, op->n_out);
    } else if (accumulate) {
        op->apply(op->ctx, x, n_tok, tmp);
        for (int64_t i = 0; i < n_tok * op->n_out; i++) y[i] += tmp[i];
    } else {
        op->apply(op->ctx, x, n_tok, y);
    }
    if (op->bias)
        for (int64_t t = 0; t < n_tok; t++)
            for (int64_t o = 0; o < op->n_out; o++) y[t * op->n_out + o] += op->bias[o];
}

void lmp_linop_run(const struct lmp_linop *op, const float *x, int64_t n_tok, float *y) {
    linop_apply(op, x, n_tok, y, false, NULL);
}

/* ---- elementwise stages, rows in parallel --------------------------------------------- */

struct rows_job {
    const struct lmp_transformer *tf;
    int64_t                       n_rows;
    const float                  *x;           /* rmsnorm input */
    float                        *out;         /* rmsnorm output */
    const float                  *w;           /* rmsnorm weight */
    int64_t                       pos0, n_tok; /* rope: row r has position pos0 + r % n_tok */
    const struct tf_block        *blk;         /* rope, q/k norms: the block */
};

static void rmsnorm_task(void *ctx, int64_t task, int thread) {
    const struct rows_job *j   = ctx;
    const int64_t          dim = j->tf->cfg.dim;
    int64_t r1 = (task + 1) * ROW_TASK < j->n_rows ? (task + 1) * ROW_TASK : j->n_rows;
    for (int64_t r = task * ROW_TASK; r < r1; r++) {
        const float *x  = j->x + r * dim;
        float       *o  = j->out + r * dim;
        double       ss = 0;
        for (int64_t i = 0; i < dim; i++) ss += (double)x[i] * x[i];
        float s = (float)(1.0 / sqrt(ss / (double)dim + (double)j->tf->cfg.norm_eps));
        for (int64_t i = 0; i < dim; i++) o[i] = x[i] * s * j->w[i];
    }
}

static void rmsnorm_rows(struct lmp_transformer *tf, const float *x, const float *w, int64_t n_rows,
                         float *out) {
    struct rows_job j = {.tf = tf, .n_rows = n_rows, .x = x, .out = out, .w = w};
    pool_run(&tf->pool, (n_rows + ROW_TASK - 1) / ROW_TASK, rmsnorm_task, &j);
}

/* x (n_rows, dim) += rmsnorm(y) * w; y is overwritten. */
static void add_normed(struct lmp_transformer *tf, float *x, float *y, const float *w,
                       int64_t n_rows) {
    rmsnorm_rows(tf, y, w, n_rows, y);
    for (int64_t i = 0; i < n_rows * tf->cfg.dim; i++) x[i] += y[i];
}

/* Rotate n_heads heads of one row in place at position pos (the first 2 * rope_half
 * dimensions of each head; the rest pass unrotated). */
static void rope_row(const struct lmp_transformer *tf, bool local, float *row, int n_heads,
                     int64_t pos) {
    const int64_t hd = tf->cfg.head_dim, half = tf->rope_half;
    const float  *cs = (local ? tf->rope_cos_l : tf->rope_cos) + pos * half;
    const float  *sn = (local ? tf->rope_sin_l : tf->rope_sin) + pos * half;
    for (int h = 0; h < n_heads; h++) {
        float *x = row + h * hd;
        if (tf->cfg.rope == LMP_ROPE_INTERLEAVED) {
            for (int64_t i = 0; i < half; i++) {
                float a = x[2 * i], b = x[2 * i + 1];
                x[2 * i]     = a * cs[i] - b * sn[i];
                x[2 * i + 1] = a * sn[i] + b * cs[i];
            }
        } else {
            for (int64_t i = 0; i < half; i++) {
                float a = x[i], b = x[i + half];
                x[i]        = a * cs[i] - b * sn[i];
                x[i + half] = a * sn[i] + b * cs[i];
            }
        }
    }
}

static void rope_task(void *ctx, int64_t task, int thread) {
    const struct rows_job        *j  = ctx;
    const struct lmp_transformer *tf = j->tf;
    int64_t r1 = (task + 1) * ROW_TASK < j->n_rows ? (task + 1) * ROW_TASK : j->n_rows;
    for (int64_t r = task * ROW_TASK; r < r1; r++) {
        int64_t pos = j->pos0 + r % j->n_tok;
        rope_row(tf, j->blk->local, tf->q + r * q_dim(&tf->cfg), tf->cfg.n_heads, pos);
        rope_row(tf, j->blk->local, tf->k + r * kv_dim(&tf->cfg), tf->cfg.n_kv_heads, pos);
    }
}

/* x (n_heads, head_dim) of one row: each head = rmsnorm(head) * w, in place. */
static void head_norm_row(float *x, int n_heads, int64_t hd, const float *w, float eps) {
    for (int h = 0; h < n_heads; h++) {
        float *v  = x + h * hd;
        double ss = 0;
        for (int64_t i = 0; i < hd; i++) ss += (double)v[i] * v[i];
        float s = (float)(1.0 / sqrt(ss / (double)hd + (double)eps));
        for (int64_t i = 0; i < hd; i++) v[i] = v[i] * s * w[i];
    }
}

/* Gemma's q/k norms: RMSNorm of every head of q and k, before RoPE. */
static void qk_norm_task(void *ctx, int64_t task, int thread) {
    const struct rows_job        *j  = ctx;
    const struct lmp_transformer *tf = j->tf;
    const struct lmp_config      *c  = &tf->cfg;
    int64_t r1 = (task + 1) * ROW_TASK < j->n_rows ? (task + 1) * ROW_TASK : j->n_rows;
    (void)thread;
    for (int64_t r = task * ROW_TASK; r < r1; r++) {
        head_norm_row(tf->q + r * q_dim(c), c->n_heads, c->head_dim, j->blk->q_norm, c->norm_eps);
        head_norm_row(tf->k + r * kv_dim(c), c->n_kv_heads, c->head_dim, j->blk->k_norm,
                      c->norm_eps);
    }
}

/* GeGLU: g = gelu_tanh(g) * u, gelu_tanh(x) = x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). */
static void geglu_task(void *ctx, int64_t task, int thread) {
    const struct rows_job *j   = ctx;
    const int64_t          hid = j->tf->cfg.hidden_dim;
    int64_t r1 = (task + 1) * ROW_TASK < j->n_rows ? (task + 1) * ROW_TASK : j->n_rows;
    float  *g = j->tf->hb, *u = j->tf->hb2;
    (void)thread;
    const float k = 0.7978845608028654f; /* sqrt(2 / pi) */
    for (int64_t i = task * ROW_TASK * hid; i < r1 * hid; i++) {
        const float x = g[i];
        g[i]          = 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x))) * u[i];
    }
}

static void swiglu_task(void *ctx, int64_t task, int thread) {
    const struct rows_job *j   = ctx;
    const int64_t          hid = j->tf->cfg.hidden_dim;
    int64_t r1 = (task + 1) * ROW_TASK < j->n_rows ? (task + 1) * ROW_TASK : j->n_rows;
    float  *g = j->tf->hb, *u = j->tf->hb2;
    for (int64_t i = task * ROW_TASK * hid; i < r1 * hid; i++)
        g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

/* A row of attention scores over keys [0, n): the keys below k0 (outside the window) get 0,
 * [k0, n) the softmax of their scores, soft-capped first where cap > 0 (Gemma 2). */
static void softmax_keys(float *row, int64_t k0, int64_t n, float cap) {
    for (int64_t k = 0; k < k0; k++) row[k] = 0.0f;
    lmp_softcap(row + k0, n - k0, cap);
    float mx = row[k0];
    for (int64_t k = k0 + 1; k < n; k++) mx = row[k] > mx ? row[k] : mx;
    float sum = 0;
    for (int64_t k = k0; k < n; k++) {
        row[k] = expf(row[k] - mx);
        sum += row[k];
    }
    const float inv = 1.0f / sum;
    for (int64_t k = k0; k < n; k++) row[k] *= inv;
}

/* ---- attention ------------------------------------------------------------------------ */

struct attn_job {
    struct lmp_transformer *tf;
    int64_t                 n_seq, n_tok, pos0;
    int64_t                 window;     /* keys a query sees (itself included); 0: all */
    int64_t                 n_qb;       /* query blocks per sequence */
    const float            *kc, *vc;    /* (n_seq, seq_stride/kv_dim, kv_dim) keys and values */
    int64_t                 seq_stride; /* floats between sequences in kc/vc */
};

static void attn_task(void *ctx, int64_t task, int thread) {
    const struct attn_job   *j  = ctx;
    struct lmp_transformer  *tf = j->tf;
    const struct lmp_config *c  = &tf->cfg;
    const int64_t            qb = task % j->n_qb, h = task / j->n_qb % c->n_heads,
                  s  = task / j->n_qb / c->n_heads;
    const int64_t hd = c->head_dim, qd = q_dim(c), kd = kv_dim(c);
    const int64_t kvh = h / (c->n_heads / c->n_kv_heads);
    const int64_t t0 = qb * QB, t1 = t0 + QB < j->n_tok ? t0 + QB : j->n_tok, m = t1 - t0;
    const int64_t n_keys = j->pos0 + t1; /* causal: the last row sees keys [0, pos0 + t1) */
    const float  *Q      = tf->q + (s * j->n_tok + t0) * qd + h * hd;
    const float  *K      = j->kc + s * j->seq_stride + kvh * hd;
    const float  *V      = j->vc + s * j->seq_stride + kvh * hd;
    float        *O      = tf->att + (s * j->n_tok + t0) * qd + h * hd;
    float        *S      = tf->scores[thread]; /* (m, n_keys) */

    const struct lmp_kernels *kt = lmp_kernels_get();
    const float scale = c->attn_scale > 0 ? c->attn_scale : (float)(1.0 / sqrt((double)hd));
    kt->sgemm(LMP_NO_TRANS, LMP_TRANS, m, n_keys, hd, scale, Q, qd, K, kd, 0.0f, S, n_keys);
    for (int64_t i = 0; i < m; i++) {
        float        *row = S + i * n_keys;
        const int64_t n   = j->pos0 + t0 + i + 1; /* keys this query may see: [k0, n) */
        const int64_t k0  = j->window > 0 && n > j->window ? n - j->window : 0;
        softmax_keys(row, k0, n, c->attn_softcap);
        for (int64_t k = n; k < n_keys; k++) row[k] = 0.0f;
    }
    kt->sgemm(LMP_NO_TRANS, LMP_NO_TRANS, m, hd, n_keys, 1.0f, S, n_keys, V, kd, 0.0f, O, qd);
}

/* One token per sequence (decoding): the query heads that share a key/value head (GQA)
 * go together, task = (sequence, kv head): the attn_row kernel reads each key and value
 * row once for the group (where the table has it), else the group's rows are one product
 * each, S = Q K^T (group, keys) and O = P V. */
static void attn_task_1tok(void *ctx, int64_t task, int thread) {
    const struct attn_job   *j   = ctx;
    struct lmp_transformer  *tf  = j->tf;
    const struct lmp_config *c   = &tf->cfg;
    const int64_t            kvh = task % c->n_kv_heads, s = task / c->n_kv_heads;
    const int64_t            hd = c->head_dim, qd = q_dim(c), kd = kv_dim(c);
    const int64_t            grp = c->n_heads / c->n_kv_heads; /* query heads per kv head */
    const int64_t            n   = j->pos0 + 1;                /* keys [k0, n) */
    const int64_t            k0  = j->window > 0 && n > j->window ? n - j->window : 0;
    const float             *Q   = tf->q + s * qd + kvh * grp * hd; /* (grp, hd) */
    const float             *K   = j->kc + s * j->seq_stride + kvh * hd;
    const float             *V   = j->vc + s * j->seq_stride + kvh * hd;
    float                   *O   = tf->att + s * qd + kvh * grp * hd;
    float                   *S   = tf->scores[thread]; /* (grp, n) */

    const struct lmp_kernels *kt = lmp_kernels_get();
    const float scale = c->attn_scale > 0 ? c->attn_scale : (float)(1.0 / sqrt((double)hd));
    if (kt->attn_row && c->attn_softcap == 0) { /* the key and value rows read once for the
                                                   group; the kernel has no soft-cap */
        kt->attn_row(O, Q, K, V, kd, k0, n, (int)grp, hd, scale, S);
        return;
    }
    kt->sgemm(LMP_NO_TRANS, LMP_TRANS, grp, n, hd, scale, Q, hd, K, kd, 0.0f, S, n);
    for (int64_t i = 0; i < grp; i++) {
        float *row = S + i * n;
        softmax_keys(row, k0, n, c->attn_softcap);
    }
    kt->sgemm(LMP_NO_TRANS, LMP_NO_TRANS, grp, hd, n, 1.0f, S, n, V, kd, 0.0f, O, hd);
}

/* ---- block and model ------------------------------------------------------------------ */

static void hook(const struct lmp_block_hooks *hooks, int32_t block, enum lmp_input which,
                 const float *x, int64_t n_rows, int64_t n_cols) {
    if (hooks && hooks->on_input) hooks->on_input(hooks->ctx, block, which, x, n_rows, n_cols);
}

enum lmp_status lmp_transformer_block(struct lmp_transformer *tf, int32_t block,
                                      struct lmp_kvcache *kv, float *x, int64_t n_seq,
                                      int64_t n_tok, const struct lmp_block_hooks *hooks,
                                      struct lmp_err *err) {
    assert(tf && x && block >= 0 && block < tf->cfg.n_layers && n_seq > 0 && n_tok > 0);
    const struct lmp_config *c    = &tf->cfg;
    const struct tf_block   *blk  = &tf->blocks[block];
    const int64_t            rows = n_seq * n_tok, dim = c->dim, kd = kv_dim(c);
    const int64_t            pos0 = kv ? kv->pos : 0;
    if (kv && (kv->n_seq != n_seq || pos0 + n_tok > kv->max_ctx))
        return lmp_err_set(err, LMP_EINVAL,
                           "%lld sequences of %lld tokens at position %lld do "
                           "not fit a cache of %lld x %lld",
                           (long long)n_seq, (long long)n_tok, (long long)pos0,
                           (long long)kv->n_seq, (long long)kv->max_ctx);
    if (pos0 + n_tok > tf->n_pos)
        return lmp_err_set(err, LMP_EINVAL, "position %lld is beyond the model's context of %lld",
                           (long long)(pos0 + n_tok), (long long)tf->n_pos);
    if (!ensure_rows(tf, rows) || !ensure_scores(tf, pos0 + n_tok))
        return lmp_err_set(err, LMP_ENOMEM, "out of memory for %lld tokens", (long long)rows);
    enum lmp_status st = lmp_transformer_load_block(tf, block, err);
    if (st != LMP_OK) return st;

    /* attention */
    rmsnorm_rows(tf, x, blk->attn_norm, rows, tf->xb);
    hook(hooks, block, LMP_INPUT_ATTN, tf->xb, rows, dim);
    {
        static const enum lmp_lin qkv[3] = {LMP_LIN_Q, LMP_LIN_K, LMP_LIN_V};
        float *const              y[3]   = {tf->q, tf->k, tf->v};
        linops_shared_input(blk, qkv, 3, tf->xb, rows, y, tf->tmp);
    }
    struct rows_job rj = {.tf = tf, .n_rows = rows, .pos0 = pos0, .n_tok = n_tok, .blk = blk};
    if (blk->q_norm) pool_run(&tf->pool, (rows + ROW_TASK - 1) / ROW_TASK, qk_norm_task, &rj);
    pool_run(&tf->pool, (rows + ROW_TASK - 1) / ROW_TASK, rope_task, &rj);

    struct attn_job aj = {.tf     = tf,
                          .n_seq  = n_seq,
                          .n_tok  = n_tok,
                          .pos0   = pos0,
                          .n_qb   = (n_tok + QB - 1) / QB,
                          .window = blk->local ? c->sliding_window : 0};
    if (kv) {
        const int64_t layer = (int64_t)block * kv->n_seq * kv->max_ctx * kd;
        aj.seq_stride       = kv->max_ctx * kd;
        for (int64_t s = 0; s < n_seq; s++) {
            memcpy(kv->k + layer + s * aj.seq_stride + pos0 * kd, tf->k + s * n_tok * kd,
                   (size_t)(n_tok * kd) * sizeof(float));
            memcpy(kv->v + layer + s * aj.seq_stride + pos0 * kd, tf->v + s * n_tok * kd,
                   (size_t)(n_tok * kd) * sizeof(float));
        }
        aj.kc = kv->k + layer;
        aj.vc = kv->v + layer;
    } else {
        aj.seq_stride = n_tok * kd;
        aj.kc         = tf->k;
        aj.vc         = tf->v;
    }
    /* The pool owns the cores here: each task's sgemms run on one thread. */
    if (tf->n_threads > 1) lmp_kernels_blas_serial_begin();
    /* one token, a model on codes (dense models, whose decoding the worker's generated
     * calibration uses, keep the per-head products bit for bit); the scores hold QB rows */
    if (n_tok == 1 && tf->codes && c->n_heads / c->n_kv_heads <= QB)
        pool_run(&tf->pool, n_seq * c->n_kv_heads, attn_task_1tok, &aj);
    else
        pool_run(&tf->pool, n_seq * c->n_heads * aj.n_qb, attn_task, &aj);
    if (tf->n_threads > 1) lmp_kernels_blas_serial_end();

    hook(hooks, block, LMP_INPUT_ATTN_OUT, tf->att, rows, q_dim(c));
    if (blk->post_attn_norm) { /* x += rmsnorm(a Wo^T) * post_attn_norm (xb is free here) */
        linop_apply(&blk->lin[LMP_LIN_O], tf->att, rows, tf->xb, false, tf->tmp);
        add_normed(tf, x, tf->xb, blk->post_attn_norm, rows);
    } else {
        linop_apply(&blk->lin[LMP_LIN_O], tf->att, rows, x, true, tf->tmp);
    }

    /* feed-forward */
    rmsnorm_rows(tf, x, blk->ffn_norm, rows, tf->xb);
    hook(hooks, block, LMP_INPUT_FFN, tf->xb, rows, dim);
    {
        static const enum lmp_lin gu[2] = {LMP_LIN_GATE, LMP_LIN_UP};
        float *const              y[2]  = {tf->hb, tf->hb2};
        linops_shared_input(blk, gu, 2, tf->xb, rows, y, tf->tmp);
    }
    pool_run(&tf->pool, (rows + ROW_TASK - 1) / ROW_TASK,
             c->ffn_act == LMP_ACT_GELU_TANH ? geglu_task : swiglu_task, &rj);
    hook(hooks, block, LMP_INPUT_FFN_OUT, tf->hb, rows, c->hidden_dim);
    if (blk->post_ffn_norm) {
        linop_apply(&blk->lin[LMP_LIN_DOWN], tf->hb, rows, tf->xb, false, tf->tmp);
        add_normed(tf, x, tf->xb, blk->post_ffn_norm, rows);
    } else {
        linop_apply(&blk->lin[LMP_LIN_DOWN], tf->hb, rows, x, true, tf->tmp);
    }
    return LMP_OK;
}

enum lmp_status lmp_transformer_embed(const struct lmp_transformer *tf, const int32_t *tokens,
                                      int64_t n_rows, float *x, struct lmp_err *err) {
    const int64_t dim = tf->cfg.dim;
    for (int64_t r = 0; r < n_rows; r++) {
        int32_t t = tokens[r];
        if (t < 0 || t >= tf->cfg.vocab_size)
            return lmp_err_set(err, LMP_EINVAL, "token id %d is outside the vocabulary of %d", t,
                               tf->cfg.vocab_size);
        if (tf->tok_emb)
            memcpy(x + r * dim, tf->tok_emb + (int64_t)t * dim, (size_t)dim * sizeof(float));
        else
            lmp_tensor_rows_f32(tf->model->tok_emb, t, 1, x + r * dim);
    }
    const float scale = tf->cfg.embed_scale; /* Gemma: sqrt(dim) */
    if (scale != 0 && scale != 1)
        for (int64_t i = 0; i < n_rows * dim; i++) x[i] *= scale;
    return LMP_OK;
}

void lmp_transformer_final_norm(struct lmp_transformer *tf, const float *x, int64_t n_rows,
                                float *out) {
    rmsnorm_rows(tf, x, tf->out_norm, n_rows, out);
}

enum lmp_status lmp_transformer_forward(struct lmp_transformer *tf, struct lmp_kvcache *kv,
                                        const int32_t *tokens, int64_t n_seq, int64_t n_tok,
                                        float *hidden, const struct lmp_block_hooks *hooks,
                                        struct lmp_err *err) {
    assert(tf && tokens && hidden && n_seq > 0 && n_tok > 0);
    enum lmp_status st = lmp_transformer_embed(tf, tokens, n_seq * n_tok, hidden, err);
    for (int32_t b = 0; st == LMP_OK && b < tf->cfg.n_layers; b++)
        st = lmp_transformer_block(tf, b, kv, hidden, n_seq, n_tok, hooks, err);
    if (st != LMP_OK) return st;
    if (kv) lmp_kvcache_advance(kv, n_tok);
    lmp_transformer_final_norm(tf, hidden, n_seq * n_tok, hidden);
    return LMP_OK;
}

/* A block head (opts.head_blocks): rows [v0, v0 + n) widened into qslice, n <= vocab_slice. */
struct qrows_job {
    const struct lmp_tensor *t;
    float                   *dst;
    int64_t                  v0, n;
};

enum { QROWS_TASK = 256 }; /* head rows widened per task */

static void qrows_task(void *ctx, int64_t task, int thread) {
    const struct qrows_job *j = ctx;
    const int64_t r = task * QROWS_TASK, n = j->n - r < QROWS_TASK ? j->n - r : QROWS_TASK;
    (void)thread;
    lmp_tensor_rows_f32(j->t, j->v0 + r, n, j->dst + r * lmp_tensor_n_cols(j->t));
}

/* fp32 rows [v0, v0 + n) of the head: into the dense head, or widened into qslice. */
static const float *head_rows(struct lmp_transformer *tf, int64_t v0, int64_t n) {
    if (tf->output != NULL) return tf->output + v0 * tf->cfg.dim;
    struct qrows_job j = {.t = tf->qhead, .dst = tf->qslice, .v0 = v0, .n = n};
    pool_run(&tf->pool, (n + QROWS_TASK - 1) / QROWS_TASK, qrows_task, &j);
    return tf->qslice;
}

/* A few rows against a block head: qmatvec reads the blocks once for QMV_BATCH rows; more
 * rows go to sgemm over widened slices. */
enum { QHEAD_MATVEC_ROWS = 8 };

void lmp_transformer_logits(struct lmp_transformer *tf, const float *hidden, int64_t n_rows,
                            float *logits) {
    const struct lmp_config *c = &tf->cfg;
    if (tf->qhead && (n_rows <= QHEAD_MATVEC_ROWS || tf->output == NULL)) {
        const int64_t V = c->vocab_size;
        if (n_rows > QHEAD_MATVEC_ROWS ||
            lmp_kernels_get()->qmatvec(logits, hidden, n_rows, tf->qhead->dtype, tf->qhead->data, V,
                                       c->dim) != 0)
            for (int64_t v0 = 0; v0 < V; v0 += tf->vocab_slice) {
                const int64_t n = V - v0 < tf->vocab_slice ? V - v0 : tf->vocab_slice;
                lmp_kernels_get()->sgemm(LMP_NO_TRANS, LMP_TRANS, n_rows, n, c->dim, 1.0f, hidden,
                                         c->dim, head_rows(tf, v0, n), c->dim, 0.0f, logits + v0,
                                         V);
            }
    } else {
        assert(tf->output != NULL); /* lazy weights: lmp_transformer_load_head first */
        lmp_kernels_get()->sgemm(LMP_NO_TRANS, LMP_TRANS, n_rows, c->vocab_size, c->dim, 1.0f,
                                 hidden, c->dim, tf->output, c->dim, 0.0f, logits, c->vocab_size);
    }
    lmp_softcap(logits, n_rows * c->vocab_size, c->final_softcap); /* Gemma 2 */
}

struct head_job {
    const float *w;      /* (vocab, dim) */
    const float *h;      /* (dim) */
    float       *logits; /* (vocab) */
    int64_t      vocab, dim;
};

enum { HEAD_ROWS = 1024 }; /* vocabulary rows per task of the one-row head */

static void head_task(void *ctx, int64_t task, int thread) {
    const struct head_job *j  = ctx;
    const int64_t          v0 = task * HEAD_ROWS;
    const int64_t          v1 = v0 + HEAD_ROWS < j->vocab ? v0 + HEAD_ROWS : j->vocab;
    (void)thread;
    for (int64_t v = v0; v < v1; v++) {
        const float *w      = j->w + v * j->dim;
        float        acc[8] = {0}; /* 8 lanes: the compiler's vectors; a fixed order */
        int64_t      i      = 0;
        for (; i + 8 <= j->dim; i += 8)
            for (int l = 0; l < 8; l++) acc[l] += w[i + l] * j->h[i + l];
        float sum =
            ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
        for (; i < j->dim; i++) sum += w[i] * j->h[i];
        j->logits[v] = sum;
    }
}

void lmp_transformer_logits_row(struct lmp_transformer *tf, const float *hidden, float *logits) {
    const struct lmp_config *c = &tf->cfg;
    if (tf->qhead) { /* straight from the blocks */
        lmp_transformer_logits(tf, hidden, 1, logits);
        return;
    }
    assert(tf->output != NULL); /* lazy weights: lmp_transformer_load_head first */
    struct head_job j = {
        .w = tf->output, .h = hidden, .logits = logits, .vocab = c->vocab_size, .dim = c->dim};
    pool_run(&tf->pool, (j.vocab + HEAD_ROWS - 1) / HEAD_ROWS, head_task, &j);
    lmp_softcap(logits, c->vocab_size, c->final_softcap);
}

struct nll_job {
    const float   *logits;
    const int32_t *target;
    double        *nll;
    int64_t        vocab;
};

static void nll_task(void *ctx, int64_t r, int thread) {
    const struct nll_job *j   = ctx;
    const float          *row = j->logits + r * j->vocab;
    float                 mx  = row[0];
    for (int64_t i = 1; i < j->vocab; i++) mx = row[i] > mx ? row[i] : mx;
    double sum = 0;
    for (int64_t i = 0; i < j->vocab; i++) sum += expf(row[i] - mx);
    j->nll[r] = log(sum) + (double)mx - (double)row[j->target[r]];
}

void lmp_transformer_nll(struct lmp_transformer *tf, const float *logits, int64_t n_rows,
                         const int32_t *target, double *nll) {
    struct nll_job j = {logits, target, nll, tf->cfg.vocab_size};
    pool_run(&tf->pool, n_rows, nll_task, &j);
}

/* Online log-sum-exp over vocabulary slices (see lmp_transformer_hidden_nll). */

struct lse_job {
    const float   *lg; /* (n_rows, n) logits of vocabulary [v0, v0 + n) */
    int64_t        v0, n;
    const int32_t *target;
    double        *mx, *sum, *tgt; /* (n_rows) running max, sum of exp(l - mx), target logit */
    int64_t        n_rows;
};

static void lse_task(void *ctx, int64_t task, int thread) {
    const struct lse_job *j = ctx;
    int64_t r1              = (task + 1) * ROW_TASK < j->n_rows ? (task + 1) * ROW_TASK : j->n_rows;
    for (int64_t r = task * ROW_TASK; r < r1; r++) {
        const float *row = j->lg + r * j->n;
        float        m   = row[0];
        for (int64_t i = 1; i < j->n; i++) m = row[i] > m ? row[i] : m;
        double s = 0;
        for (int64_t i = 0; i < j->n; i++) s += expf(row[i] - m);
        if (m > j->mx[r]) {
            j->sum[r] = j->sum[r] * exp(j->mx[r] - m) + s;
            j->mx[r]  = m;
        } else {
            j->sum[r] += s * exp(m - j->mx[r]);
        }
        int64_t t = j->target[r] - j->v0;
        if (t >= 0 && t < j->n) j->tgt[r] = row[t];
    }
}

enum lmp_status lmp_transformer_hidden_nll(struct lmp_transformer *tf, const float *hidden,
                                           int64_t n_rows, const int32_t *target, double *nll) {
    const struct lmp_config *c = &tf->cfg;
    const int64_t vocab = c->vocab_size, slice = vocab < tf->vocab_slice ? vocab : tf->vocab_slice;
    if (lmp_transformer_load_head(tf, NULL) != LMP_OK) return LMP_ENOMEM;
    float  *lg  = malloc(sizeof(float) * (size_t)(n_rows * slice));
    double *acc = malloc(sizeof(double) * (size_t)(3 * n_rows));
    if (lg == NULL || acc == NULL) {
        free(lg);
        free(acc);
        return LMP_ENOMEM;
    }
    struct lse_job j = {.lg     = lg,
                        .target = target,
                        .mx     = acc,
                        .sum    = acc + n_rows,
                        .tgt    = acc + 2 * n_rows,
                        .n_rows = n_rows};
    for (int64_t r = 0; r < n_rows; r++) {
        j.mx[r]  = -INFINITY;
        j.sum[r] = 0;
        j.tgt[r] = 0;
    }
    for (int64_t v0 = 0; v0 < vocab; v0 += slice) {
        j.v0 = v0;
        j.n  = vocab - v0 < slice ? vocab - v0 : slice;
        lmp_kernels_get()->sgemm(LMP_NO_TRANS, LMP_TRANS, n_rows, j.n, c->dim, 1.0f, hidden, c->dim,
                                 head_rows(tf, v0, j.n), c->dim, 0.0f, lg, j.n);
        lmp_softcap(lg, n_rows * j.n, c->final_softcap);
        pool_run(&tf->pool, (n_rows + ROW_TASK - 1) / ROW_TASK, lse_task, &j);
    }
    for (int64_t r = 0; r < n_rows; r++) nll[r] = log(j.sum[r]) + j.mx[r] - j.tgt[r];
    free(lg);
    free(acc);
    return LMP_OK;
}
