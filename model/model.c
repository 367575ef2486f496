/*  model - format detection, the shared description, validation (see model.h) */
#include "model/model.h"
#include "kernels/kernels.h" /* defines: lmp_kernels_get() for dequantization */
#include "base/file.h"       /* defines: lmp_path_is_dir() */

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int64_t lmp_tensor_n_elem(const struct lmp_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->n_dims; i++) n *= t->shape[i];
    return n;
}

int64_t lmp_tensor_n_cols(const struct lmp_tensor *t) {
    return t->n_dims > 0 ? t->shape[t->n_dims - 1] : 1;
}

int64_t lmp_tensor_n_rows(const struct lmp_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i + 1 < t->n_dims; i++) n *= t->shape[i];
    return n;
}

int64_t lmp_tensor_expected_bytes(enum lmp_dtype dtype, int n_dims, const int64_t *shape) {
    if ((unsigned)dtype >= LMP_DTYPE_COUNT || n_dims < 1 || n_dims > LMP_MAX_DIMS) return -1;
    const int64_t limit  = INT64_C(1) << 50; /* a petabyte: anything above is corrupt */
    int64_t       n_elem = 1;
    for (int i = 0; i < n_dims; i++) {
        if (shape[i] < 0 || (shape[i] > 0 && n_elem > limit / shape[i])) return -1;
        n_elem *= shape[i];
    }
    int64_t cols = shape[n_dims - 1];
    if (cols % lmp_dtype_block(dtype) != 0) return -1;
    return n_elem / lmp_dtype_block(dtype) * lmp_dtype_block_bytes(dtype);
}

void lmp_tensor_rows_f32(const struct lmp_tensor *t, int64_t row0, int64_t n_rows, float *dst) {
    const int64_t cols = lmp_tensor_n_cols(t);
    assert(row0 >= 0 && n_rows >= 0 && row0 + n_rows <= lmp_tensor_n_rows(t));
    const int64_t row_bytes = cols / lmp_dtype_block(t->dtype) * lmp_dtype_block_bytes(t->dtype);
    lmp_dequant_row_fn *fn  = lmp_kernels_get()->dequant_row;
    for (int64_t r = 0; r < n_rows; r++)
        fn((int)t->dtype, (const uint8_t *)t->data + (row0 + r) * row_bytes, dst + r * cols, cols);
}

static const char *const arch_names[LMP_ARCH_COUNT] = {"llama", "mistral", "qwen2", "gemma3",
                                                       "qwen3", "phi3",    "gemma2"};
const char              *lmp_arch_name(enum lmp_arch a) {
                 return (unsigned)a < LMP_ARCH_COUNT ? arch_names[a] : "?";
}

void lmp_softcap(float *x, int64_t n, float cap) {
    if (cap == 0) return;
    const float inv = 1.0f / cap;
    for (int64_t i = 0; i < n; i++) x[i] = cap * tanhf(x[i] * inv);
}

const char *lmp_format_name(enum lmp_format f) {
    switch (f) {
    case LMP_FORMAT_GGUF:
        return "gguf";
    case LMP_FORMAT_HF:
        return "hf";
    case LMP_FORMAT_LLAMA2C:
        return "llama2c";
    }
    return "?";
}

static const char *const lin_names[LMP_LIN_COUNT] = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                                     "gate_proj", "up_proj", "down_proj"};
const char              *lmp_lin_name(enum lmp_lin k) {
                 return lin_names[k];
}

enum lmp_input lmp_lin_input(enum lmp_lin k) {
    switch (k) {
    case LMP_LIN_Q:
    case LMP_LIN_K:
    case LMP_LIN_V:
        return LMP_INPUT_ATTN;
    case LMP_LIN_O:
        return LMP_INPUT_ATTN_OUT;
    case LMP_LIN_GATE:
    case LMP_LIN_UP:
        return LMP_INPUT_FFN;
    case LMP_LIN_DOWN:
    case LMP_LIN_COUNT:
        break;
    }
    return LMP_INPUT_FFN_OUT;
}

struct lmp_model *lmp_model_alloc(int32_t n_layers) {
    if (n_layers <= 0 || n_layers > 4096) return NULL;
    struct lmp_model *m = calloc(1, sizeof(*m));
    if (m == NULL) return NULL;
    m->blocks = calloc((size_t)n_layers, sizeof(*m->blocks));
    if (m->blocks == NULL) {
        free(m);
        return NULL;
    }
    m->cfg.n_layers = n_layers;
    return m;
}

void lmp_model_close(struct lmp_model **mp) {
    if (mp == NULL || *mp == NULL) return;
    struct lmp_model *m = *mp;
    if (m->src_close) m->src_close(m->src);
    free(m->blocks);
    free(m->tensors);
    free(m->views);
    free(m->path);
    free(m);
    *mp = NULL;
}

/* Check that t has exactly the given shape (n_dims entries). */
static enum lmp_status want_shape(const struct lmp_model *m, const struct lmp_tensor *t,
                                  const char *what, int n_dims, int64_t d0, int64_t d1,
                                  struct lmp_err *err) {
    if (t == NULL) return lmp_err_set(err, LMP_EFORMAT, "'%s': missing tensor %s", m->path, what);
    int64_t want[2] = {d0, d1};
    /* A 1-D tensor may also be stored as (1, n) by some writers. */
    int ok = 0;
    if (n_dims == 1)
        ok = (t->n_dims == 1 && t->shape[0] == d0) ||
             (t->n_dims == 2 && t->shape[0] == 1 && t->shape[1] == d0);
    else
        ok = t->n_dims == 2 && t->shape[0] == want[0] && t->shape[1] == want[1];
    if (!ok) {
        char got[96] = "";
        int  off     = 0;
        for (int i = 0; i < t->n_dims && off < (int)sizeof(got) - 24; i++)
            off += snprintf(got + off, sizeof(got) - (size_t)off, "%s%lld", i ? ", " : "",
                            (long long)t->shape[i]);
        if (n_dims == 1)
            return lmp_err_set(err, LMP_EFORMAT,
                               "'%s': tensor '%s' has shape (%s), expected (%lld)", m->path,
                               t->name, got, (long long)d0);
        return lmp_err_set(err, LMP_EFORMAT,
                           "'%s': tensor '%s' has shape (%s), expected (%lld, %lld)", m->path,
                           t->name, got, (long long)d0, (long long)d1);
    }
    return LMP_OK;
}

enum lmp_status lmp_model_split_rows(struct lmp_model *m, const struct lmp_tensor *t, int64_t n_in,
                                     int n_parts, const int64_t *rows,
                                     const struct lmp_tensor **const *out, struct lmp_err *err) {
    int64_t total = 0; /* the config is not range-checked yet: no sum may overflow */
    for (int i = 0; i < n_parts; i++) {
        if (rows[i] <= 0 || rows[i] > (INT64_C(1) << 40))
            return lmp_err_set(err, LMP_EFORMAT, "'%s': tensor '%s': part %d has %lld rows",
                               m->path, t->name, i, (long long)rows[i]);
        total += rows[i];
    }
    enum lmp_status st = want_shape(m, t, t->name, 2, total, n_in, err);
    if (st != LMP_OK) return st;
    /* rows of every dtype are whole blocks (lmp_tensor_expected_bytes), stored in order */
    const int64_t row_bytes = lmp_tensor_expected_bytes(t->dtype, 1, &t->shape[1]);
    if (row_bytes <= 0 || (uint64_t)(row_bytes * total) != t->nbytes)
        return lmp_err_set(err, LMP_EFORMAT, "'%s': tensor '%s' has %llu bytes for %lld rows",
                           m->path, t->name, (unsigned long long)t->nbytes, (long long)total);
    const int64_t cap = (int64_t)m->cfg.n_layers * LMP_LIN_COUNT;
    if (m->views == NULL && (m->views = calloc((size_t)cap, sizeof(*m->views))) == NULL)
        return lmp_err_set(err, LMP_ENOMEM, "'%s': out of memory", m->path);
    if (m->n_views + n_parts > cap)
        return lmp_err_set(err, LMP_EFORMAT, "'%s': more than %lld split tensors", m->path,
                           (long long)cap);
    int64_t row0 = 0;
    for (int i = 0; i < n_parts; i++) {
        struct lmp_tensor *v = &m->views[m->n_views++];
        *v                   = *t;
        snprintf(v->name, sizeof(v->name), "%.120s[%lld:%lld]", t->name, (long long)row0,
                 (long long)(row0 + rows[i]));
        v->shape[0] = rows[i];
        v->data     = (const uint8_t *)t->data + row0 * row_bytes;
        v->nbytes   = (uint64_t)(rows[i] * row_bytes);
        *out[i]     = v;
        row0 += rows[i];
    }
    return LMP_OK;
}

/* Bounds of a believable config, whatever the reader: far above any model lmpress can
 * run (the largest public models have dim 16384, FFN 53248, vocab 256000, 128 heads of
 * 128), far below what could overflow the shape arithmetic: every product of two of
 * them stays under 2^46 elements. */
#define CFG_MAX_DIM   (1 << 20)
#define CFG_MAX_HEADS (1 << 14)
#define CFG_MAX_VOCAB (1 << 24)
#define CFG_MAX_SEQ   (1 << 28)

/* field in [lo, hi], else LMP_EFORMAT naming the model and the field */
static enum lmp_status cfg_range(const struct lmp_model *m, const char *field, int64_t v,
                                 int64_t lo, int64_t hi, struct lmp_err *err) {
    if (v >= lo && v <= hi) return LMP_OK;
    return lmp_err_set(err, LMP_EFORMAT, "'%s': config %s %lld is out of range [%lld, %lld]",
                       m->path, field, (long long)v, (long long)lo, (long long)hi);
}

/* float field finite and in [lo, hi] */
static enum lmp_status cfg_frange(const struct lmp_model *m, const char *field, float v, double lo,
                                  double hi, struct lmp_err *err) {
    if (v >= lo && v <= hi) return LMP_OK;
    return lmp_err_set(err, LMP_EFORMAT, "'%s': config %s %g is out of range [%g, %g]", m->path,
                       field, (double)v, lo, hi);
}

/* The RoPE variant's and Gemma's fields: each in range where the variant uses it. */
static enum lmp_status check_rope(const struct lmp_model *m, struct lmp_config *c,
                                  struct lmp_err *err) {
    enum lmp_status st;
    if ((st = cfg_range(m, "rope_dims", c->rope_dims, 0, c->head_dim, err)) ||
        (st = cfg_range(m, "swa_pattern", c->swa_pattern, 0, 4096, err)) ||
        (st = cfg_range(m, "rope_scaling", (int64_t)c->rope_scaling, LMP_ROPE_SCALING_NONE,
                        LMP_ROPE_SCALING_YARN, err)) ||
        (st = cfg_range(m, "ffn_act", (int64_t)c->ffn_act, LMP_ACT_SILU, LMP_ACT_GELU_TANH, err)) ||
        (st = cfg_frange(m, "rope_theta_local", c->rope_theta_local, 0, 1e30, err)) ||
        (st = cfg_frange(m, "embed_scale", c->embed_scale, 0, 1e6, err)) ||
        (st = cfg_frange(m, "attn_scale", c->attn_scale, 0, 1e6, err)) ||
        (st = cfg_frange(m, "attn_softcap", c->attn_softcap, 0, 1e6, err)) ||
        (st = cfg_frange(m, "final_softcap", c->final_softcap, 0, 1e6, err)))
        return st;
    if (c->rope_dims == 0) c->rope_dims = c->head_dim;
    if (c->rope_dims % 2 != 0)
        return lmp_err_set(err, LMP_EFORMAT, "'%s': config rope_dims %d is odd", m->path,
                           c->rope_dims);
    if (c->rope_scaling == LMP_ROPE_SCALING_NONE) return LMP_OK;
    if ((st = cfg_frange(m, "rope_factor", c->rope_factor, 1e-3, 1e6, err))) return st;
    if (c->rope_scaling == LMP_ROPE_SCALING_LLAMA3 &&
        ((st = cfg_frange(m, "rope_low_freq_factor", c->rope_low_freq_factor, 1e-6, 1e6, err)) ||
         (st = cfg_frange(m, "rope_high_freq_factor", c->rope_high_freq_factor, 1e-6, 1e6, err)) ||
         (st = cfg_range(m, "rope_orig_max_seq", c->rope_orig_max_seq, 1, CFG_MAX_SEQ, err))))
        return st;
    if (c->rope_scaling == LMP_ROPE_SCALING_LLAMA3 &&
        !(c->rope_high_freq_factor > c->rope_low_freq_factor))
        return lmp_err_set(err, LMP_EFORMAT,
                           "'%s': config rope high_freq_factor %g is not above low_freq_factor %g",
                           m->path, (double)c->rope_high_freq_factor,
                           (double)c->rope_low_freq_factor);
    if (c->rope_scaling == LMP_ROPE_SCALING_YARN) {
        if (c->rope_beta_fast == 0) c->rope_beta_fast = 32.0f;
        if (c->rope_beta_slow == 0) c->rope_beta_slow = 1.0f;
        if ((st = cfg_range(m, "rope_orig_max_seq", c->rope_orig_max_seq, 1, CFG_MAX_SEQ, err)) ||
            (st = cfg_frange(m, "rope_beta_fast", c->rope_beta_fast, 1e-6, 1e6, err)) ||
            (st = cfg_frange(m, "rope_beta_slow", c->rope_beta_slow, 1e-6, 1e6, err)) ||
            (st = cfg_frange(m, "rope_attn_factor", c->rope_attn_factor, 0, 1e3, err)))
            return st;
    }
    return LMP_OK;
}

/* Every config field within its bounds, and the head counts dividing as attention needs;
 * a zero head_dim is dim / n_heads, which must then divide. */
static enum lmp_status check_config(const struct lmp_model *m, struct lmp_config *c,
                                    struct lmp_err *err) {
    enum lmp_status st;
    if ((st = cfg_range(m, "n_layers", c->n_layers, 1, 4096, err)) ||
        (st = cfg_range(m, "dim", c->dim, 1, CFG_MAX_DIM, err)) ||
        (st = cfg_range(m, "hidden_dim", c->hidden_dim, 1, CFG_MAX_DIM, err)) ||
        (st = cfg_range(m, "n_heads", c->n_heads, 1, CFG_MAX_HEADS, err)) ||
        (st = cfg_range(m, "n_kv_heads", c->n_kv_heads, 1, c->n_heads, err)) ||
        (st = cfg_range(m, "head_dim", c->head_dim, 0, CFG_MAX_HEADS, err)) ||
        (st = cfg_range(m, "vocab_size", c->vocab_size, 2, CFG_MAX_VOCAB, err)) ||
        (st = cfg_range(m, "max_seq", c->max_seq, 0, CFG_MAX_SEQ, err)) ||
        (st = cfg_range(m, "sliding_window", c->sliding_window, 0, CFG_MAX_SEQ, err)))
        return st;
    if (c->head_dim == 0 && c->dim % c->n_heads != 0)
        return lmp_err_set(err, LMP_EFORMAT, "'%s': config n_heads %d does not divide dim %d",
                           m->path, c->n_heads, c->dim);
    if (c->head_dim == 0) c->head_dim = c->dim / c->n_heads;
    if ((int64_t)c->n_heads * c->head_dim > CFG_MAX_DIM)
        return lmp_err_set(err, LMP_EFORMAT,
                           "'%s': config n_heads %d x head_dim %d is out of range (at most %d)",
                           m->path, c->n_heads, c->head_dim, CFG_MAX_DIM);
    if (c->n_heads % c->n_kv_heads != 0)
        return lmp_err_set(err, LMP_EFORMAT,
                           "'%s': config n_kv_heads %d does not divide n_heads %d", m->path,
                           c->n_kv_heads, c->n_heads);
    if (c->head_dim % 2 != 0)
        return lmp_err_set(err, LMP_EFORMAT, "'%s': config head_dim %d is odd (RoPE rotates pairs)",
                           m->path, c->head_dim);
    return check_rope(m, c, err);
}

enum lmp_status lmp_model_finish(struct lmp_model *m, struct lmp_err *err) {
    struct lmp_config *c  = &m->cfg;
    enum lmp_status    st = check_config(m, c, err);
    if (st != LMP_OK) return st;
    if (c->rope_theta <= 0) c->rope_theta = 10000.0f;
    if (c->norm_eps <= 0) c->norm_eps = 1e-5f;
    if (m->output == NULL && c->tied_embeddings) m->output = m->tok_emb;
    c->tied_embeddings = (m->output == m->tok_emb);

    if ((st = want_shape(m, m->tok_emb, "token embedding", 2, c->vocab_size, c->dim, err)) ||
        (st = want_shape(m, m->out_norm, "final norm", 1, c->dim, 0, err)) ||
        (st = want_shape(m, m->output, "output (lm head)", 2, c->vocab_size, c->dim, err)))
        return st;

    const int64_t q_out  = (int64_t)c->n_heads * c->head_dim;
    const int64_t kv_out = (int64_t)c->n_kv_heads * c->head_dim;
    for (int32_t b = 0; b < c->n_layers; b++) {
        struct lmp_block *blk = &m->blocks[b];
        char              what[96];
        snprintf(what, sizeof(what), "attention norm of block %d", b);
        if ((st = want_shape(m, blk->attn_norm, what, 1, c->dim, 0, err))) return st;
        snprintf(what, sizeof(what), "ffn norm of block %d", b);
        if ((st = want_shape(m, blk->ffn_norm, what, 1, c->dim, 0, err))) return st;
        /* Gemma's extra norms: all of a kind in every block, or none anywhere */
        const bool qk   = blk->q_norm || blk->k_norm,
                   post = blk->post_attn_norm || blk->post_ffn_norm;
        if (b == 0) c->qk_norm = qk, c->post_norms = post;
        if (qk != c->qk_norm || post != c->post_norms)
            return lmp_err_set(err, LMP_EFORMAT,
                               "'%s': block %d has %s q/k or post norms than block 0", m->path, b,
                               qk || post ? "more" : "fewer");
        if (qk) {
            snprintf(what, sizeof(what), "q norm of block %d", b);
            if ((st = want_shape(m, blk->q_norm, what, 1, c->head_dim, 0, err))) return st;
            snprintf(what, sizeof(what), "k norm of block %d", b);
            if ((st = want_shape(m, blk->k_norm, what, 1, c->head_dim, 0, err))) return st;
        }
        if (post) {
            snprintf(what, sizeof(what), "post-attention norm of block %d", b);
            if ((st = want_shape(m, blk->post_attn_norm, what, 1, c->dim, 0, err))) return st;
            snprintf(what, sizeof(what), "post-FFN norm of block %d", b);
            if ((st = want_shape(m, blk->post_ffn_norm, what, 1, c->dim, 0, err))) return st;
        }
        for (int k = 0; k < LMP_LIN_COUNT; k++) {
            struct lmp_linear       *l                  = &blk->lin[k];
            static const char *const mod[LMP_LIN_COUNT] = {
                "self_attn", "self_attn", "self_attn", "self_attn", "mlp", "mlp", "mlp"};
            snprintf(l->name, sizeof(l->name), "model.layers.%d.%s.%s", b, mod[k], lin_names[k]);
            l->block = b;
            l->kind  = (enum lmp_lin)k;
            l->input = lmp_lin_input(l->kind);
            switch (l->kind) {
            case LMP_LIN_Q:
                l->n_out = q_out;
                l->n_in  = c->dim;
                break;
            case LMP_LIN_K:
            case LMP_LIN_V:
                l->n_out = kv_out;
                l->n_in  = c->dim;
                break;
            case LMP_LIN_O:
                l->n_out = c->dim;
                l->n_in  = q_out;
                break;
            case LMP_LIN_GATE:
            case LMP_LIN_UP:
                l->n_out = c->hidden_dim;
                l->n_in  = c->dim;
                break;
            case LMP_LIN_DOWN:
                l->n_out = c->dim;
                l->n_in  = c->hidden_dim;
                break;
            case LMP_LIN_COUNT:
                break;
            }
            if (l->aq) {
                const struct lmp_aq_shape *q = &l->aq->shape;
                if (q->n_out != l->n_out || q->n_in != l->n_in || q->g <= 0 ||
                    q->n_in % q->g != 0 || q->M <= 0 || q->K <= 0 || q->K > 65536)
                    return lmp_err_set(err, LMP_EFORMAT,
                                       "'%s': %s: codes of shape (%lld, %lld) M %d K %d g %d, "
                                       "expected (%lld, %lld)",
                                       m->path, l->name, (long long)q->n_out, (long long)q->n_in,
                                       q->M, q->K, q->g, (long long)l->n_out, (long long)l->n_in);
            } else if ((st = want_shape(m, l->weight, l->name, 2, l->n_out, l->n_in, err)))
                return st;
            if (l->bias && (st = want_shape(m, l->bias, l->name, 1, l->n_out, 0, err))) return st;
        }
        c->qkv_bias = c->qkv_bias || blk->lin[LMP_LIN_Q].bias != NULL;
    }
    return LMP_OK;
}

enum lmp_status lmp_model_check_trainable(const struct lmp_model *m, const char *what,
                                          struct lmp_err *err) {
    const struct lmp_config *c   = &m->cfg;
    const char              *has = NULL;
    /* worker/block_grad.c and worker/model_grad.c run the llama block and what Gemma 3,
     * Gemma 2 and Qwen3 add (q/k and post norms, GeGLU, the embedding and attention scales,
     * sliding-window blocks with their own RoPE base, the attention and final soft-caps,
     * scaled RoPE, partial rotary dimensions, GGUF rope_freqs divisors); the rest is
     * refused here */
    if (c->ffn_act != LMP_ACT_SILU && c->ffn_act != LMP_ACT_GELU_TANH)
        has = "an FFN activation the backward lacks";
    if (has == NULL) return LMP_OK;
    return lmp_err_set(err, LMP_EUNSUP,
                       "'%s': %s of %s models is not supported (the model has %s; "
                       "eval and generate work)",
                       m->path ? m->path : "model", what, lmp_arch_name(c->arch), has);
}

const struct lmp_linear *lmp_model_linear(const struct lmp_model *m, int64_t idx) {
    assert(idx >= 0 && idx < lmp_model_n_linears(m));
    return &m->blocks[idx / LMP_LIN_COUNT].lin[idx % LMP_LIN_COUNT];
}

int64_t lmp_model_n_linears(const struct lmp_model *m) {
    return (int64_t)m->cfg.n_layers * LMP_LIN_COUNT;
}

int64_t lmp_model_n_params(const struct lmp_model *m) {
    int64_t n = 0;
    for (int64_t i = 0; i < m->n_tensors; i++) n += lmp_tensor_n_elem(&m->tensors[i]);
    return n;
}

const struct lmp_tensor *lmp_model_find_tensor(const struct lmp_model *m, const char *name) {
    for (int64_t i = 0; i < m->n_tensors; i++)
        if (strcmp(m->tensors[i].name, name) == 0) return &m->tensors[i];
    return NULL;
}

static int has_suffix(const char *s, const char *suf) {
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && strcmp(s + n - k, suf) == 0;
}

enum lmp_status lmp_model_open(const char *path, struct lmp_model **out, struct lmp_err *err) {
    *out = NULL;
    if (lmp_path_is_dir(path)) return lmp_model_open_hf(path, out, err);
    if (has_suffix(path, "config.json") || has_suffix(path, ".safetensors") ||
        has_suffix(path, ".safetensors.index.json")) {
        /* a file inside a HF checkpoint: open its directory */
        const char *slash = strrchr(path, '/');
        char       *dir   = slash ? strndup(path, (size_t)(slash - path)) : strdup(".");
        if (dir == NULL) return lmp_err_set(err, LMP_ENOMEM, "out of memory opening '%s'", path);
        enum lmp_status st = lmp_model_open_hf(dir, out, err);
        free(dir);
        return st;
    }
    FILE *f = fopen(path, "rb");
    if (f == NULL) return lmp_err_set(err, LMP_ENOENT, "cannot open model '%s'", path);
    unsigned char magic[4] = {0};
    size_t        n        = fread(magic, 1, 4, f);
    fclose(f);
    if (n == 4 && memcmp(magic, "GGUF", 4) == 0) return lmp_model_open_gguf(path, out, err);
    if (n == 4 && memcmp(magic, "\x89HDF", 4) == 0) /* HDF5's signature: most likely ours */
        return lmp_err_set(err, LMP_EFORMAT,
                           "'%s': an HDF5 file, not a checkpoint (an lmpress artifact is run "
                           "with --artifact)",
                           path);
    if (has_suffix(path, ".gguf"))
        return lmp_err_set(err, LMP_EFORMAT, "'%s': not a GGUF file (bad magic)", path);
    return lmp_model_open_llama2c(path, out, err);
}
