/*  export_hf - see export_hf.h
 *
 *  The plan: one entry per tensor of model.safetensors, in model order (embeddings,
 *  then per block the norms and the seven linears, the final norm, the head), each
 *  with its shape derived from the job's config (what is read is checked against it).
 *  The entries are then ordered by element size, 2-byte (F16, I16) before 1-byte (I8),
 *  so every tensor is aligned without holes, and written in one stream; the layer whose
 *  arrays are being written is kept in memory between its entries.
 */
#define _GNU_SOURCE /* nftw, mkdtemp */
#include "artifact/export_hf.h"
#include "artifact/safetensors_write.h" /* defines: struct lmp_st_writer */
#include "base/cancel.h"                /* defines: lmp_cancel_is_shutdown */
#include "base/file.h"                  /* defines: lmp_file_read_all, lmp_fsync_path */
#include "base/log.h"                   /* defines: lmp_log_warn */
#include "base/text.h"                  /* defines: lmp_strfmt, lmp_str_escape */
#include "kernels/kernels.h"            /* defines: lmp_f32_to_f16 */

#include <assert.h>
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int64_t lmp_export_hf_rope_row(int64_t r, int32_t head_dim) {
    assert(head_dim > 0 && head_dim % 2 == 0 && r >= 0);
    int64_t h = r / head_dim, k = r % head_dim, half = head_dim / 2;
    return h * head_dim + (k % 2) * half + k / 2;
}

int32_t lmp_export_hf_code(uint32_t c, int32_t B) {
    assert(B >= 1 && B <= 16 && c < (1u << B));
    return c >= (1u << (B - 1)) ? (int32_t)c - (int32_t)(1u << B) : (int32_t)c;
}

/* The shortest decimal that reads back as the same float (JSON number). */
static void fmt_float(float f, char *buf, size_t n) {
    if (f == floorf(f) && fabsf(f) < 1e15f) {
        snprintf(buf, n, "%.1f", (double)f);
        return;
    }
    for (int p = 1; p <= 9; p++) {
        snprintf(buf, n, "%.*g", p, (double)f);
        if (strtof(buf, NULL) == f) break;
    }
    if (strpbrk(buf, ".eE") == NULL && strlen(buf) + 2 < n) strcat(buf, ".0");
}

/* --- config.json ------------------------------------------------------------------ */

enum lmp_status lmp_export_hf_config(const struct lmp_config *cfg, int32_t M, int32_t B, int32_t g,
                                     const char *const *keep, int64_t n_keep, int32_t bos,
                                     int32_t eos, char **json, struct lmp_err *err) {
    assert(cfg && json);
    *json               = NULL;
    const char *arch    = NULL, *type;
    bool        bias_ok = false;
    /* Gemma 2 is transformers' Gemma2ForCausalLM exactly: every field it has, none other
     * (the norms are tensors: make_plan requires the post norms and places no q/k norm) */
    const bool g2 = cfg->arch == LMP_ARCH_GEMMA2;
    if (g2 && !(cfg->ffn_act == LMP_ACT_GELU_TANH && !cfg->qkv_bias && cfg->swa_pattern == 2 &&
                cfg->rope_theta_local == 0 && cfg->rope_scaling == LMP_ROPE_SCALING_NONE &&
                cfg->rope_freq_factors == NULL &&
                (cfg->rope_dims == 0 || cfg->rope_dims == cfg->head_dim) && cfg->attn_scale > 0 &&
                cfg->embed_scale == sqrtf((float)cfg->dim) && cfg->rope == LMP_ROPE_HALF))
        return lmp_err_set(err, LMP_EUNSUP,
                           "a gemma2 model with fields beyond Gemma 2's (RoPE scaling, another "
                           "window pattern, activation or norms) has no hf-aqlm export");
    /* format 3's fields (GeGLU, extra norms, scaled or partial RoPE, sliding-window blocks)
     * have no place in the config written here: refused rather than exported wrong */
    if (!g2 && lmp_artifact_cfg_is_v3(cfg))
        return lmp_err_set(err, LMP_EUNSUP,
                           "a %s model with fields beyond the llama block (artifact format 3: "
                           "norms, activation, RoPE scaling or sliding windows) has no hf-aqlm "
                           "export yet",
                           lmp_arch_name(cfg->arch));
    switch (cfg->arch) {
    case LMP_ARCH_LLAMA:
    case LMP_ARCH_PHI3: /* its fused qkv and gate_up were split on read: a llama block */
        arch = "LlamaForCausalLM", type = "llama";
        break;
    case LMP_ARCH_MISTRAL:
        arch = "MistralForCausalLM", type = "mistral";
        break;
    case LMP_ARCH_QWEN2:
        arch = "Qwen2ForCausalLM", type = "qwen2", bias_ok = true;
        break;
    case LMP_ARCH_GEMMA2:
        arch = "Gemma2ForCausalLM", type = "gemma2";
        break;
    default:
        return lmp_err_set(err, LMP_EUNSUP, "no Hugging Face class for architecture %d",
                           (int)cfg->arch);
    }
    if (cfg->qkv_bias != bias_ok)
        return lmp_err_set(err, LMP_EUNSUP,
                           "a %s model %s q/k/v biases: transformers' %s cannot hold it", type,
                           cfg->qkv_bias ? "with" : "without", arch);
    char   f[40];
    cJSON *o = cJSON_CreateObject(), *a = cJSON_AddArrayToObject(o, "architectures");
    cJSON_AddItemToArray(a, cJSON_CreateString(arch));
    cJSON_AddStringToObject(o, "model_type", type);
    cJSON_AddNumberToObject(o, "hidden_size", cfg->dim);
    cJSON_AddNumberToObject(o, "intermediate_size", cfg->hidden_dim);
    cJSON_AddNumberToObject(o, "num_hidden_layers", cfg->n_layers);
    cJSON_AddNumberToObject(o, "num_attention_heads", cfg->n_heads);
    cJSON_AddNumberToObject(o, "num_key_value_heads", cfg->n_kv_heads);
    cJSON_AddNumberToObject(o, "head_dim", cfg->head_dim);
    cJSON_AddStringToObject(o, "hidden_act", g2 ? "gelu_pytorch_tanh" : "silu");
    cJSON_AddNumberToObject(o, "max_position_embeddings", cfg->max_seq);
    cJSON_AddNumberToObject(o, "vocab_size", cfg->vocab_size);
    fmt_float(cfg->norm_eps, f, sizeof(f));
    cJSON_AddRawToObject(o, "rms_norm_eps", f);
    fmt_float(cfg->rope_theta, f, sizeof(f));
    cJSON_AddRawToObject(o, "rope_theta", f);
    cJSON_AddNullToObject(o, "rope_scaling");
    cJSON_AddBoolToObject(o, "tie_word_embeddings", cfg->tied_embeddings);
    const bool llama = strcmp(type, "llama") == 0;
    if (llama) {
        cJSON_AddBoolToObject(o, "attention_bias", false);
        cJSON_AddBoolToObject(o, "mlp_bias", false);
    }
    if (!llama) {
        if (cfg->sliding_window > 0)
            cJSON_AddNumberToObject(o, "sliding_window", cfg->sliding_window);
        else
            cJSON_AddNullToObject(o, "sliding_window");
    }
    if (cfg->arch == LMP_ARCH_QWEN2) {
        cJSON_AddBoolToObject(o, "use_sliding_window", false);
        cJSON_AddNumberToObject(o, "max_window_layers", cfg->n_layers);
    }
    if (g2) { /* scores scaled by query_pre_attn_scalar^-1/2, both caps (null: none) */
        cJSON_AddStringToObject(o, "hidden_activation", "gelu_pytorch_tanh");
        const double qpas = 1.0 / ((double)cfg->attn_scale * cfg->attn_scale), qi = nearbyint(qpas);
        if (qi >= 1 && 1.0f / sqrtf((float)qi) == cfg->attn_scale) {
            cJSON_AddNumberToObject(o, "query_pre_attn_scalar", qi);
        } else {
            fmt_float((float)qpas, f, sizeof(f));
            cJSON_AddRawToObject(o, "query_pre_attn_scalar", f);
        }
        const float caps[2]  = {cfg->attn_softcap, cfg->final_softcap};
        const char *names[2] = {"attn_logit_softcapping", "final_logit_softcapping"};
        for (int i = 0; i < 2; i++) {
            if (caps[i] > 0) {
                fmt_float(caps[i], f, sizeof(f));
                cJSON_AddRawToObject(o, names[i], f);
            } else {
                cJSON_AddNullToObject(o, names[i]);
            }
        }
        cJSON_AddBoolToObject(o, "attention_bias", false);
        cJSON_AddStringToObject(o, "cache_implementation", "hybrid");
    }
    cJSON_AddNumberToObject(o, "attention_dropout", 0);
    cJSON_AddNumberToObject(o, "initializer_range", 0.02);
    cJSON_AddBoolToObject(o, "use_cache", true);
    if (bos >= 0)
        cJSON_AddNumberToObject(o, "bos_token_id", bos);
    else
        cJSON_AddNullToObject(o, "bos_token_id");
    if (eos >= 0)
        cJSON_AddNumberToObject(o, "eos_token_id", eos);
    else
        cJSON_AddNullToObject(o, "eos_token_id");
    cJSON_AddStringToObject(o, "torch_dtype", "float16");
    cJSON *q = cJSON_AddObjectToObject(o, "quantization_config");
    cJSON_AddStringToObject(q, "quant_method", "aqlm");
    cJSON_AddNumberToObject(q, "num_codebooks", M);
    cJSON_AddNumberToObject(q, "nbits_per_codebook", B);
    cJSON_AddNumberToObject(q, "in_group_size", g);
    cJSON_AddNumberToObject(q, "out_group_size", 1);
    cJSON *k = cJSON_AddArrayToObject(q, "linear_weights_not_to_quantize");
    for (int64_t i = 0; i < n_keep; i++) cJSON_AddItemToArray(k, cJSON_CreateString(keep[i]));
    *json = cJSON_Print(o);
    cJSON_Delete(o);
    if (*json == NULL) return lmp_err_set(err, LMP_ENOMEM, "out of memory writing config.json");
    return LMP_OK;
}

/* --- the plan --------------------------------------------------------------------- */

enum src_kind { SRC_TENSOR, SRC_CODES, SRC_CODEBOOKS, SRC_SCALES };

struct entry {
    char              hf[LMP_NAME_MAX + 16]; /* name in model.safetensors */
    char              src[LMP_NAME_MAX];     /* artifact tensor or layer name */
    enum src_kind     kind;
    enum lmp_st_dtype dtype;
    int               n_dims;
    int64_t           shape[4];
    int64_t           rope_rows; /* > 0: permute this many rows (interleaved -> half) */
    bool              minus_one; /* a Gemma norm: the artifact's 1 + w written as w */
    int64_t           order;     /* position in model order (stable sort key) */
};

struct plan {
    struct entry *e;
    int64_t       n, cap;
    char        **keep; /* (n_keep) names for linear_weights_not_to_quantize */
    int64_t       n_keep;
    bool          oom;
};

static struct entry *plan_add(struct plan *p, const char *hf, const char *src, enum src_kind kind,
                              enum lmp_st_dtype dtype, int n_dims, int64_t d0, int64_t d1,
                              int64_t d2, int64_t d3) {
    if (p->n == p->cap) {
        int64_t       cap = p->cap ? 2 * p->cap : 256;
        struct entry *e   = realloc(p->e, (size_t)cap * sizeof(*e));
        if (e == NULL) {
            p->oom = true;
            return NULL;
        }
        p->e   = e;
        p->cap = cap;
    }
    struct entry *e = &p->e[p->n];
    memset(e, 0, sizeof(*e));
    snprintf(e->hf, sizeof(e->hf), "%s", hf);
    snprintf(e->src, sizeof(e->src), "%s", src);
    e->kind     = kind;
    e->dtype    = dtype;
    e->n_dims   = n_dims;
    e->shape[0] = d0, e->shape[1] = d1, e->shape[2] = d2, e->shape[3] = d3;
    e->order = p->n++;
    return e;
}

static void plan_keep(struct plan *p, const char *name) {
    char **k = realloc(p->keep, (size_t)(p->n_keep + 1) * sizeof(*k));
    if (k == NULL || (k[p->n_keep] = lmp_strfmt("%s", name)) == NULL) {
        if (k) p->keep = k;
        p->oom = true;
        return;
    }
    p->keep = k;
    p->n_keep++;
}

static void plan_release(struct plan *p) {
    free(p->e);
    for (int64_t i = 0; i < p->n_keep; i++) free(p->keep[i]);
    free(p->keep);
    memset(p, 0, sizeof(*p));
}

static int cmp_entry(const void *va, const void *vb) {
    const struct entry *a = va, *b = vb;
    int                 sa = lmp_st_dtype_size(a->dtype), sb = lmp_st_dtype_size(b->dtype);
    if (sa != sb) return sa > sb ? -1 : 1;
    return a->order < b->order ? -1 : a->order > b->order;
}

/* Is name one of the artifact's unquantized tensors? (lmp_artifact_tensor_name is sorted.) */
static bool has_tensor(struct lmp_artifact *a, const char *name) {
    int64_t lo = 0, hi = lmp_artifact_n_tensors(a);
    while (lo < hi) {
        int64_t mid = (lo + hi) / 2;
        int     c   = strcmp(lmp_artifact_tensor_name(a, mid), name);
        if (c == 0) return true;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

/* Fill the plan from the job. RET LMP_OK, LMP_EINVAL (a linear neither compressed nor
 * kept), LMP_EUNSUP (an artifact tensor the export has no place for), LMP_ENOMEM. */
static enum lmp_status make_plan(struct lmp_artifact *a, const char *art, int32_t M, int32_t B,
                                 int32_t g, struct plan *p, struct lmp_err *err) {
    const struct lmp_art_job *job = lmp_artifact_job(a);
    const struct lmp_config  *c   = &job->cfg;
    bool                      il  = c->rope == LMP_ROPE_INTERLEAVED;
    enum lmp_st_dtype         ct  = B <= 8 ? LMP_ST_I8 : LMP_ST_I16;
    char                      q[200], nm[LMP_NAME_MAX + 16];
    int64_t                   used = 0; /* artifact tensors placed */
    if (job->n_linears != (int64_t)c->n_layers * LMP_LIN_COUNT)
        return lmp_err_set(err, LMP_EFORMAT, "'%s': %" PRId64 " linears for %d blocks",
                           lmp_str_escape(q, sizeof(q), art), job->n_linears, c->n_layers);
#define TENSOR(name_, n_dims_, d0_, d1_)                                                           \
    do {                                                                                           \
        if (!has_tensor(a, name_))                                                                 \
            return lmp_err_set(err, LMP_EFORMAT, "'%s' has no tensor '%s'",                        \
                               lmp_str_escape(q, sizeof(q), art), name_);                          \
        plan_add(p, name_, name_, SRC_TENSOR, LMP_ST_F16, n_dims_, d0_, d1_, 0, 0);                \
        plan_keep(p, name_);                                                                       \
        used++;                                                                                    \
    } while (0)
        /* a Gemma 2 norm: artifact name src_, Hugging Face name hf_, written as w (not 1 + w) */
#define GEMMA_NORM(hf_, src_)                                                                      \
    do {                                                                                           \
        if (!has_tensor(a, src_))                                                                  \
            return lmp_err_set(err, LMP_EFORMAT, "'%s' has no tensor '%s'",                        \
                               lmp_str_escape(q, sizeof(q), art), src_);                           \
        struct entry *e_ = plan_add(p, hf_, src_, SRC_TENSOR, LMP_ST_F16, 1, c->dim, 0, 0, 0);     \
        if (e_) e_->minus_one = true;                                                              \
        used++;                                                                                    \
    } while (0)
    const bool g2 = c->arch == LMP_ARCH_GEMMA2;
    char       src[LMP_NAME_MAX + 16];
    TENSOR("model.embed_tokens.weight", 2, c->vocab_size, c->dim);
    for (int32_t b = 0; b < c->n_layers; b++) {
        snprintf(nm, sizeof(nm), "model.layers.%d.input_layernorm.weight", b);
        if (g2)
            GEMMA_NORM(nm, nm);
        else
            TENSOR(nm, 1, c->dim, 0);
        for (int k = 0; k < LMP_LIN_COUNT; k++) {
            const struct lmp_art_linear *l = &job->linears[(int64_t)b * LMP_LIN_COUNT + k];
            int64_t rope = il && (k == LMP_LIN_Q || k == LMP_LIN_K) ? l->n_out : 0;
            if (lmp_artifact_has_layer(a, l->name)) {
                if (l->n_in % g != 0)
                    return lmp_err_set(err, LMP_EFORMAT,
                                       "'%s': layer '%s' has n_in %" PRId64
                                       " not a multiple of the group size %d",
                                       lmp_str_escape(q, sizeof(q), art), l->name, l->n_in, g);
                snprintf(nm, sizeof(nm), "%s.codes", l->name);
                struct entry *e =
                    plan_add(p, nm, l->name, SRC_CODES, ct, 3, l->n_out, l->n_in / g, M, 0);
                if (e) e->rope_rows = rope;
                snprintf(nm, sizeof(nm), "%s.codebooks", l->name);
                plan_add(p, nm, l->name, SRC_CODEBOOKS, LMP_ST_F16, 4, M, (int64_t)1 << B, 1, g);
                snprintf(nm, sizeof(nm), "%s.scales", l->name);
                e = plan_add(p, nm, l->name, SRC_SCALES, LMP_ST_F16, 4, l->n_out, 1, 1, 1);
                if (e) e->rope_rows = rope;
            } else {
                snprintf(nm, sizeof(nm), "%s.weight", l->name);
                if (!has_tensor(a, nm))
                    return lmp_err_set(err, LMP_EINVAL,
                                       "'%s' is not complete: linear '%s' is neither compressed "
                                       "nor kept",
                                       lmp_str_escape(q, sizeof(q), art), l->name);
                struct entry *e =
                    plan_add(p, nm, nm, SRC_TENSOR, LMP_ST_F16, 2, l->n_out, l->n_in, 0, 0);
                if (e) e->rope_rows = rope;
                plan_keep(p, nm);
                plan_keep(p, l->name);
                used++;
            }
            snprintf(nm, sizeof(nm), "%s.bias", l->name);
            if (has_tensor(a, nm)) {
                struct entry *e = plan_add(p, nm, nm, SRC_TENSOR, LMP_ST_F16, 1, l->n_out, 0, 0, 0);
                if (e) e->rope_rows = rope;
                used++;
            }
        }
        snprintf(nm, sizeof(nm), "model.layers.%d.post_attention_layernorm.weight", b);
        if (g2) { /* the artifact's names: ffn_norm is post_attention_layernorm (llama's) */
            snprintf(src, sizeof(src), "model.layers.%d.post_attention_norm.weight", b);
            GEMMA_NORM(nm, src);
            snprintf(nm, sizeof(nm), "model.layers.%d.pre_feedforward_layernorm.weight", b);
            snprintf(src, sizeof(src), "model.layers.%d.post_attention_layernorm.weight", b);
            GEMMA_NORM(nm, src);
            snprintf(nm, sizeof(nm), "model.layers.%d.post_feedforward_layernorm.weight", b);
            GEMMA_NORM(nm, nm);
        } else {
            TENSOR(nm, 1, c->dim, 0);
        }
    }
    if (g2)
        GEMMA_NORM("model.norm.weight", "model.norm.weight");
    else
        TENSOR("model.norm.weight", 1, c->dim, 0);
    /* transformers must not make the head a QuantizedLinear, tied or not */
    if (!c->tied_embeddings)
        TENSOR("lm_head.weight", 2, c->vocab_size, c->dim);
    else
        plan_keep(p, "lm_head.weight");
    plan_keep(p, "lm_head");
#undef TENSOR
#undef GEMMA_NORM
    if (p->oom) return lmp_err_set(err, LMP_ENOMEM, "out of memory planning the export");
    if (used != lmp_artifact_n_tensors(a)) {
        for (int64_t i = 0; i < lmp_artifact_n_tensors(a); i++) {
            const char *t     = lmp_artifact_tensor_name(a, i);
            bool        found = false;
            for (int64_t j = 0; j < p->n && !found; j++)
                found = p->e[j].kind == SRC_TENSOR && strcmp(p->e[j].src, t) == 0;
            if (!found)
                return lmp_err_set(err, LMP_EUNSUP,
                                   "'%s': tensor '%s' has no place in a Hugging Face %s model",
                                   lmp_str_escape(q, sizeof(q), art), t, lmp_arch_name(c->arch));
        }
    }
    qsort(p->e, (size_t)p->n, sizeof(*p->e), cmp_entry);
    return LMP_OK;
}

/* --- conversions ------------------------------------------------------------------ */

/* x[0, n) to float16 in out; a value that is not finite or rounds beyond +-65504 is
 * LMP_EINVAL naming the tensor. */
static enum lmp_status to_f16(const float *x, int64_t n, uint16_t *out, const char *tensor,
                              struct lmp_err *err) {
    for (int64_t i = 0; i < n; i++) {
        uint16_t h = lmp_f32_to_f16(x[i]);
        if ((h & 0x7C00u) == 0x7C00u)
            return lmp_err_set(
                err, LMP_EINVAL,
                "tensor '%s': value %g at index %" PRId64 " %s float16 (|x| <= 65504)", tensor,
                (double)x[i], i, isfinite(x[i]) ? "is beyond the range of" : "is not finite in");
        out[i] = h;
    }
    return LMP_OK;
}

/* The rows of src (n_rows of row_bytes) in Hugging Face order into dst when rope_rows
 * (== n_rows) is set; a plain copy otherwise. */
static void permute_rows(const void *src, void *dst, int64_t n_rows, size_t row_bytes,
                         int64_t rope_rows, int32_t head_dim) {
    if (rope_rows <= 0) {
        memcpy(dst, src, (size_t)n_rows * row_bytes);
        return;
    }
    for (int64_t r = 0; r < n_rows; r++)
        memcpy((uint8_t *)dst + (size_t)lmp_export_hf_rope_row(r, head_dim) * row_bytes,
               (const uint8_t *)src + (size_t)r * row_bytes, row_bytes);
}

struct writer_ctx {
    struct lmp_artifact  *a;
    const char           *art;
    int32_t               M, B, g, head_dim;
    struct lmp_art_layer  layer; /* the layer being written (name[0] == 0: none) */
    struct lmp_st_writer *w;
    void                 *buf; /* scratch of buf_bytes */
    size_t                buf_bytes;
};

static void *scratch(struct writer_ctx *c, size_t bytes) {
    if (bytes <= c->buf_bytes) return c->buf;
    void *p = realloc(c->buf, bytes ? bytes : 1);
    if (p == NULL) return NULL;
    c->buf       = p;
    c->buf_bytes = bytes;
    return p;
}

/* Make c->layer the layer name, read and checked. */
static enum lmp_status load_layer(struct writer_ctx *c, const struct entry *e,
                                  struct lmp_err *err) {
    if (c->layer.name[0] && strcmp(c->layer.name, e->src) == 0) return LMP_OK;
    lmp_art_layer_release(&c->layer);
    memset(&c->layer, 0, sizeof(c->layer));
    enum lmp_status st = lmp_artifact_read_layer(c->a, e->src, &c->layer, err);
    if (st != LMP_OK) return st;
    const struct lmp_art_layer *l = &c->layer;
    char                        q[200];
    if (l->codec != LMP_ART_CODEC_AQ || l->M != c->M || l->B != c->B || l->g != c->g)
        return lmp_err_set(err, LMP_EUNSUP,
                           "'%s': layer '%s' is %s %dx%dg%d, not the artifact's scheme %dx%dg%d: "
                           "aqlm's format holds one scheme per model",
                           lmp_str_escape(q, sizeof(q), c->art), l->name,
                           l->codec == LMP_ART_CODEC_AQ ? "AQ" : "RTN", l->M, l->B, l->g, c->M,
                           c->B, c->g);
    const struct lmp_art_job *job = lmp_artifact_job(c->a);
    int64_t                   k   = 0;
    while (k < job->n_linears && strcmp(job->linears[k].name, l->name) != 0) k++;
    if (k == job->n_linears || l->n_out != job->linears[k].n_out || l->n_in != job->linears[k].n_in)
        return lmp_err_set(err, LMP_EFORMAT, "'%s': layer '%s' does not have its linear's shape",
                           lmp_str_escape(q, sizeof(q), c->art), l->name);
    int64_t nc = lmp_art_layer_n_codes(l);
    for (int64_t i = 0; i < nc; i++)
        if (l->codes[i] >> l->B)
            return lmp_err_set(err, LMP_EFORMAT,
                               "'%s': layer '%s' has code %u at %" PRId64 ", beyond %d bits",
                               lmp_str_escape(q, sizeof(q), c->art), l->name, l->codes[i], i, l->B);
    return LMP_OK;
}

static enum lmp_status write_entry(struct writer_ctx *c, const struct entry *e,
                                   struct lmp_err *err) {
    enum lmp_status st = LMP_OK;
    char            q[200];
    int64_t         n = 1;
    for (int d = 0; d < e->n_dims; d++) n *= e->shape[d];
    size_t bytes = (size_t)n * (size_t)lmp_st_dtype_size(e->dtype);
    if (e->kind == SRC_TENSOR) {
        struct lmp_art_tensor t;
        memset(&t, 0, sizeof(t));
        if ((st = lmp_artifact_read_tensor(c->a, e->src, &t, err)) != LMP_OK) return st;
        bool shape_ok = t.n_dims == e->n_dims;
        for (int d = 0; shape_ok && d < e->n_dims; d++) shape_ok = t.shape[d] == e->shape[d];
        uint16_t *h = scratch(c, 2 * bytes);
        if (!shape_ok) {
            st = lmp_err_set(err, LMP_EFORMAT, "'%s': tensor '%s' does not have the model's shape",
                             lmp_str_escape(q, sizeof(q), c->art), e->src);
        } else if (h == NULL) {
            st = lmp_err_set(err, LMP_ENOMEM, "out of memory converting tensor '%s'", e->src);
        } else if (e->minus_one) { /* transformers' Gemma norms compute x * (1 + w) */
            float *f = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
            if (f == NULL)
                st = lmp_err_set(err, LMP_ENOMEM, "out of memory converting tensor '%s'", e->src);
            for (int64_t i = 0; f && i < n; i++) {
                const float    *f32 = t.data;
                const uint16_t *b   = t.data;
                f[i]                = (t.dtype == LMP_DTYPE_F32    ? f32[i]
                                       : t.dtype == LMP_DTYPE_BF16 ? lmp_bf16_to_f32(b[i])
                                                                   : lmp_f16_to_f32(b[i])) -
                       1.0f;
            }
            if (f && t.dtype != LMP_DTYPE_F32 && t.dtype != LMP_DTYPE_BF16 &&
                t.dtype != LMP_DTYPE_F16)
                st = lmp_err_set(err, LMP_EFORMAT, "'%s': norm '%s' is %s, not F32, F16 or BF16",
                                 lmp_str_escape(q, sizeof(q), c->art), e->src,
                                 lmp_dtype_name(t.dtype));
            else if (f)
                st = to_f16(f, n, h + n, e->hf, err);
            free(f);
        } else if (t.dtype == LMP_DTYPE_F32) {
            st = to_f16(t.data, n, h + n, e->hf, err);
        } else if (t.dtype == LMP_DTYPE_BF16 || t.dtype == LMP_DTYPE_Q8_0 ||
                   t.dtype == LMP_DTYPE_Q4_1) { /* widened, then rounded */
            float *f = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
            if (f == NULL) {
                st = lmp_err_set(err, LMP_ENOMEM, "out of memory converting tensor '%s'", e->src);
            } else {
                const uint16_t *b = t.data;
                if (t.dtype == LMP_DTYPE_BF16)
                    for (int64_t i = 0; i < n; i++) f[i] = lmp_bf16_to_f32(b[i]);
                else { /* the embedding or head stored as blocks (2-D: (rows, cols)) */
                    const int64_t cols = t.shape[1],
                                  rb   = n ? lmp_tensor_expected_bytes(t.dtype, 1, &t.shape[1]) : 0;
                    for (int64_t r = 0; r < t.shape[0]; r++)
                        lmp_kernels_get()->dequant_row(t.dtype, (const uint8_t *)t.data + r * rb,
                                                       f + r * cols, cols);
                }
                st = to_f16(f, n, h + n, e->hf, err);
                free(f);
            }
        } else if (t.dtype == LMP_DTYPE_F16) {
            memcpy(h + n, t.data, (size_t)n * 2);
            for (int64_t i = 0; st == LMP_OK && i < n; i++)
                if ((h[n + i] & 0x7C00u) == 0x7C00u)
                    st = lmp_err_set(err, LMP_EINVAL,
                                     "tensor '%s': value at index %" PRId64 " is not finite", e->hf,
                                     i);
        } else {
            st = lmp_err_set(err, LMP_EFORMAT,
                             "'%s': tensor '%s' is %s, not F32, F16, BF16, Q8_0 or Q4_1",
                             lmp_str_escape(q, sizeof(q), c->art), e->src, lmp_dtype_name(t.dtype));
        }
        if (st == LMP_OK) {
            int64_t rows = e->shape[0], row = n / (rows ? rows : 1);
            permute_rows(h + n, h, rows, (size_t)row * 2, e->rope_rows, c->head_dim);
            st = lmp_st_writer_write(c->w, h, bytes, err);
        }
        lmp_art_tensor_release(&t);
        return st;
    }
    if ((st = load_layer(c, e, err)) != LMP_OK) return st;
    const struct lmp_art_layer *l = &c->layer;
    void                       *s = scratch(c, 2 * bytes + 4 * (size_t)n);
    if (s == NULL) return lmp_err_set(err, LMP_ENOMEM, "out of memory converting '%s'", e->hf);
    if (e->kind == SRC_CODEBOOKS) {
        if ((st = to_f16(l->codebooks, n, s, e->hf, err)) != LMP_OK) return st;
        return lmp_st_writer_write(c->w, s, bytes, err);
    }
    if (e->kind == SRC_SCALES) {
        uint16_t *h = s;
        if ((st = to_f16(l->scales, n, h + n, e->hf, err)) != LMP_OK) return st;
        permute_rows(h + n, h, n, 2, e->rope_rows, c->head_dim);
        return lmp_st_writer_write(c->w, h, bytes, err);
    }
    /* codes: (n_out, n_in/g, M) as int8 / int16, rows permuted like the weight's */
    int64_t row = n / e->shape[0];
    if (e->dtype == LMP_ST_I8) {
        int8_t *v = s;
        for (int64_t i = 0; i < n; i++) v[n + i] = (int8_t)lmp_export_hf_code(l->codes[i], l->B);
        permute_rows(v + n, v, e->shape[0], (size_t)row, e->rope_rows, c->head_dim);
    } else {
        int16_t *v = s;
        for (int64_t i = 0; i < n; i++) v[n + i] = (int16_t)lmp_export_hf_code(l->codes[i], l->B);
        permute_rows(v + n, v, e->shape[0], (size_t)row * 2, e->rope_rows, c->head_dim);
    }
    return lmp_st_writer_write(c->w, s, bytes, err);
}

/* --- the output directory ----------------------------------------------------------- */

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

/* Remove the tree at path (a leftover temporary or moved-aside directory). */
static void rm_tree(const char *path) {
    if (nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0 && errno != ENOENT)
        lmp_log_warn("cannot remove '%s': %s", path, strerror(errno));
}

/* 0: absent, 1: an empty directory, 2: a non-empty directory, 3: not a directory,
 * -1: cannot tell (errno set). */
static int out_state(const char *path) {
    struct stat sb;
    if (stat(path, &sb) != 0) return errno == ENOENT ? 0 : -1;
    if (!S_ISDIR(sb.st_mode)) return 3;
    DIR *d = opendir(path);
    if (d == NULL) return -1;
    int            st = 1;
    struct dirent *de;
    while (st == 1 && (de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) st = 2;
    closedir(d);
    return st;
}

static bool is_enospc(int e) {
    return e == ENOSPC || e == EFBIG || e == EDQUOT;
}

/* Write text as dir/name (new file, fsync'ed); messages name shown/name. */
static enum lmp_status write_text(const char *dir, const char *shown, const char *name,
                                  const char *text, struct lmp_err *err) {
    char *path = lmp_strfmt("%s/%s", dir, name);
    char  q[300];
    if (path == NULL) return lmp_err_set(err, LMP_ENOMEM, "out of memory");
    enum lmp_status st = LMP_OK;
    int             fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    size_t          n = strlen(text), done = 0;
    if (fd < 0) {
        st = errno;
        goto fail;
    }
    while (done < n) {
        ssize_t w = write(fd, text + done, n - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            st = w < 0 ? errno : ENOSPC;
            goto fail;
        }
        done += (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        st = errno;
        fd = -1;
        goto fail;
    }
    free(path);
    return LMP_OK;
fail:
    if (fd >= 0) close(fd);
    free(path);
    snprintf(q, sizeof(q), "%s/%s", shown, name);
    {
        char e2[320];
        int  e = (int)st;
        return lmp_err_set(err, is_enospc(e) ? LMP_ENOSPC : LMP_EIO, "cannot write '%s': %s",
                           lmp_str_escape(e2, sizeof(e2), q), strerror(e));
    }
}

/* --- the export ------------------------------------------------------------------- */

/* tokenizer_config.json of a Hugging Face source directory, when the directory (the
 * job's model path) still holds the tokenizer.json the artifact was made with. */
static char *source_tokenizer_config(const struct lmp_art_job *job, const uint8_t *tok, size_t n) {
    if (job->cfg.format != LMP_FORMAT_HF || job->model_name == NULL ||
        lmp_path_is_dir(job->model_name) != 1)
        return NULL;
    char  *p = lmp_strfmt("%s/tokenizer.json", job->model_name), *same = NULL, *cfg = NULL;
    size_t len = 0;
    if (p && lmp_file_read_all(p, &same, &len, NULL) == LMP_OK && len == n &&
        memcmp(same, tok, n) == 0) {
        free(p);
        p = lmp_strfmt("%s/tokenizer_config.json", job->model_name);
        if (p && lmp_file_read_all(p, &cfg, &len, NULL) != LMP_OK) cfg = NULL;
    }
    free(p);
    free(same);
    return cfg;
}

enum lmp_status lmp_export_hf(const char *art_path, const char *out_dir,
                              const struct lmp_export_hf_opts *opts,
                              struct lmp_export_hf_result *res, struct lmp_err *err) {
    assert(art_path && out_dir);
    struct lmp_export_hf_opts   dflt = {0};
    struct lmp_export_hf_result r;
    memset(&r, 0, sizeof(r));
    if (opts == NULL) opts = &dflt;
    enum lmp_status         st = LMP_OK;
    struct lmp_artifact    *a  = NULL;
    struct plan             p  = {0};
    struct lmp_hf_tok_files tf = {0};
    struct writer_ctx       wc = {0};
    char *cfg = NULL, *tmp = NULL, *old = NULL, *path = NULL, *shown = NULL, *srccfg = NULL,
         *out        = NULL;
    uint8_t *tok     = NULL;
    size_t   n_tok   = 0;
    bool     created = false;
    char     q[300], q2[300];

    /* the output directory, without trailing slashes */
    size_t lo = strlen(out_dir);
    while (lo > 1 && out_dir[lo - 1] == '/') lo--;
    if (lo == 0 || (out = lmp_strfmt("%.*s", (int)lo, out_dir)) == NULL) {
        st = lmp_err_set(err, lo ? LMP_ENOMEM : LMP_EINVAL, "no output directory");
        goto out;
    }
    int os = out_state(out);
    if (os < 0) {
        int e = errno;
        st    = lmp_err_set(err, LMP_EIO, "cannot use '%s' as the output directory: %s",
                            lmp_str_escape(q, sizeof(q), out), strerror(e));
        goto out;
    }
    if (os == 3) {
        st = lmp_err_set(err, LMP_EINVAL, "'%s' exists and is not a directory",
                         lmp_str_escape(q, sizeof(q), out));
        goto out;
    }
    if (os == 2 && !opts->force) {
        st = lmp_err_set(err, LMP_EINVAL, "'%s' is not empty: use --force to replace it",
                         lmp_str_escape(q, sizeof(q), out));
        goto out;
    }

    if ((st = lmp_artifact_open_read(art_path, &a, err)) != LMP_OK) goto out;
    const struct lmp_art_job *job = lmp_artifact_job(a);
    if (strcmp(job->method, "aqlm") != 0) {
        st = lmp_err_set(err, LMP_EUNSUP,
                         "'%s' was made with method '%s': the hf-aqlm format holds AQLM codes only",
                         lmp_str_escape(q, sizeof(q), art_path), job->method);
        goto out;
    }
    int32_t M = 0, B = 0, g = 0;
    int     used = 0;
    if (sscanf(job->scheme, "%dx%dg%d%n", &M, &B, &g, &used) != 3 || job->scheme[used] != '\0' ||
        M < 1 || M > 64 || B < 1 || B > 16 || g < 1 || g > 1024) {
        st = lmp_err_set(err, LMP_EUNSUP, "'%s': scheme '%s' is not MxBgG with B <= 16",
                         lmp_str_escape(q, sizeof(q), art_path), job->scheme);
        goto out;
    }
    if (!lmp_artifact_is_complete(a)) {
        st = lmp_err_set(err, LMP_EINVAL,
                         "'%s' is not complete: finish the job (run the same compress again) "
                         "before exporting",
                         lmp_str_escape(q, sizeof(q), art_path));
        goto out;
    }
    const struct lmp_config *c = &job->cfg;
    if (c->head_dim <= 0 || c->head_dim % 2 != 0 || c->n_heads <= 0 || c->n_kv_heads <= 0) {
        st = lmp_err_set(err, LMP_EFORMAT, "'%s': bad head layout (head_dim %d)",
                         lmp_str_escape(q, sizeof(q), art_path), c->head_dim);
        goto out;
    }
    if ((st = make_plan(a, art_path, M, B, g, &p, err)) != LMP_OK) goto out;

    /* the small files first, in memory: a tokenizer problem fails before the long write */
    if (!lmp_artifact_has_tokenizer(a)) {
        st = lmp_err_set(err, LMP_EFORMAT, "'%s' holds no tokenizer",
                         lmp_str_escape(q, sizeof(q), art_path));
        goto out;
    }
    enum lmp_art_tok kind;
    if ((st = lmp_artifact_read_tokenizer(a, &kind, &tok, &n_tok, err)) != LMP_OK) goto out;
    srccfg = kind == LMP_ART_TOK_HF ? source_tokenizer_config(job, tok, n_tok) : NULL;
    if ((st = lmp_export_hf_tokenizer(kind, tok, n_tok, c, srccfg, &tf, err)) != LMP_OK) goto out;
    if ((st = lmp_export_hf_config(c, M, B, g, (const char *const *)p.keep, p.n_keep, tf.bos,
                                   tf.eos, &cfg, err)) != LMP_OK)
        goto out;

    /* the temporary directory beside out */
    if ((tmp = lmp_strfmt("%s.tmp-XXXXXX", out)) == NULL) {
        st = lmp_err_set(err, LMP_ENOMEM, "out of memory");
        goto out;
    }
    if (mkdtemp(tmp) == NULL) {
        int e = errno;
        st    = lmp_err_set(err, is_enospc(e) ? LMP_ENOSPC : LMP_EIO, "cannot create '%s': %s",
                            lmp_str_escape(q, sizeof(q), tmp), strerror(e));
        goto out;
    }
    created = true;
    {
        /* mkdtemp makes it 0700: give it the mode mkdir(2) would (0777 less the umask), so
         * the published model is as readable as any directory made here (the export runs on
         * one thread: reading the umask sets it back at once) */
        mode_t mask = umask(0);
        umask(mask);
        if (chmod(tmp, 0777 & ~mask) != 0) {
            int e = errno;
            st    = lmp_err_set(err, LMP_EIO, "cannot set the mode of '%s': %s",
                                lmp_str_escape(q, sizeof(q), tmp), strerror(e));
            goto out;
        }
    }

    /* model.safetensors */
    wc = (struct writer_ctx){
        .a = a, .art = art_path, .M = M, .B = B, .g = g, .head_dim = c->head_dim};
    if ((wc.w = lmp_st_writer_new()) == NULL) {
        st = lmp_err_set(err, LMP_ENOMEM, "out of memory");
        goto out;
    }
    for (int64_t i = 0; st == LMP_OK && i < p.n; i++)
        st = lmp_st_writer_add(wc.w, p.e[i].hf, p.e[i].dtype, p.e[i].n_dims, p.e[i].shape, err);
    if (st != LMP_OK) goto out;
    if ((path = lmp_strfmt("%s/model.safetensors", tmp)) == NULL ||
        (shown = lmp_strfmt("%s/model.safetensors", out)) == NULL) {
        st = lmp_err_set(err, LMP_ENOMEM, "out of memory");
        goto out;
    }
    if ((st = lmp_st_writer_open(wc.w, path, shown, err)) != LMP_OK) goto out;
    for (int64_t i = 0; st == LMP_OK && i < p.n; i++) {
        if (lmp_cancel_is_shutdown()) {
            st = lmp_err_set(err, LMP_ECANCEL, "export of '%s' interrupted",
                             lmp_str_escape(q, sizeof(q), art_path));
            break;
        }
        st = write_entry(&wc, &p.e[i], err);
    }
    if (st == LMP_OK) st = lmp_st_writer_close(wc.w, err);
    if (st != LMP_OK) goto out;
    r.bytes = lmp_st_writer_file_size(wc.w);

    if ((st = write_text(tmp, out, "config.json", cfg, err)) != LMP_OK ||
        (st = write_text(tmp, out, "tokenizer.json", tf.tokenizer_json, err)) != LMP_OK ||
        (st = write_text(tmp, out, "tokenizer_config.json", tf.tokenizer_config_json, err)) !=
            LMP_OK)
        goto out;
    if (lmp_fsync_path(tmp, true) != 0) {
        int e = errno;
        st    = lmp_err_set(err, LMP_EIO, "cannot sync '%s': %s", lmp_str_escape(q, sizeof(q), tmp),
                            strerror(e));
        goto out;
    }

    /* publish: move a replaced directory aside, rename, then remove the old one */
    os = out_state(out);
    if (os == 2) {
        if ((old = lmp_strfmt("%s.old-XXXXXX", out)) == NULL || mkdtemp(old) == NULL ||
            rename(out, old) != 0) {
            int e = errno;
            if (old && old[strlen(old) - 1] != 'X') rmdir(old);
            st = lmp_err_set(err, LMP_EIO, "cannot move '%s' aside: %s",
                             lmp_str_escape(q, sizeof(q), out), strerror(e));
            free(old);
            old = NULL;
            goto out;
        }
    }
    if (rename(tmp, out) != 0) {
        int e = errno;
        if (old && rename(old, out) == 0) {
            free(old);
            old = NULL;
        }
        st = lmp_err_set(err, is_enospc(e) ? LMP_ENOSPC : LMP_EIO, "cannot rename '%s' to '%s': %s",
                         lmp_str_escape(q, sizeof(q), tmp), lmp_str_escape(q2, sizeof(q2), out),
                         strerror(e));
        goto out;
    }
    created = false;
    {
        const char *slash  = strrchr(out, '/');
        char       *parent = slash ? lmp_strfmt("%.*s", (int)(slash == out ? 1 : slash - out), out)
                                   : lmp_strfmt(".");
        if (parent && lmp_fsync_path(parent, true) != 0)
            lmp_log_warn("cannot sync the directory of '%s': %s", out, strerror(errno));
        free(parent);
    }
    if (old) rm_tree(old);

    r.M = M, r.B = B, r.g = g;
    r.permuted_rope = c->rope == LMP_ROPE_INTERLEAVED;
    r.n_tensors     = p.n;
    for (int64_t i = 0; i < job->n_linears; i++) {
        if (lmp_artifact_has_layer(a, job->linears[i].name))
            r.n_quantized++;
        else
            r.n_kept++;
    }
    snprintf(r.tokenizer, sizeof(r.tokenizer), "%s", tf.how);
out:
    if (created) rm_tree(tmp);
    lmp_st_writer_destroy(&wc.w);
    lmp_art_layer_release(&wc.layer);
    free(wc.buf);
    lmp_artifact_close(&a);
    plan_release(&p);
    lmp_hf_tok_files_release(&tf);
    free(cfg), free(tmp), free(old), free(path), free(shown), free(srccfg), free(out), free(tok);
    if (res) *res = r;
    return st;
}
