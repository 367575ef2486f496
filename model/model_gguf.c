/*  model_gguf - struct lmp_model from a GGUF file (llama, mistral, qwen2, gemma3, qwen3, phi3,
 *  gemma2)
 *
 *  The config comes from the "<arch>.*" keys that llama.cpp writes, the tensors from
 *  llama.cpp's names (token_embd, output_norm, output, blk.N.attn_q, ...). llama.cpp's
 *  converter permutes the Q and K rows of llama and mistral checkpoints so that RoPE
 *  rotates adjacent pairs (LMP_ROPE_INTERLEAVED); qwen2, qwen3, phi3 and gemma3 keep the
 *  Hugging Face order and rotate the two halves of each head (LMP_ROPE_HALF, llama.cpp's
 *  NEOX).
 *
 *  qwen3: qwen2 without biases, with a per-head RMSNorm of q and k before RoPE
 *  (attn_q_norm, attn_k_norm: head_dim weights, the block's epsilon).
 *
 *  phi3: q, k and v fused in attn_qkv (rows q, then k, then v) and gate and up fused in
 *  ffn_up (2 * feed_forward_length rows: gate, then up), as llama.cpp's phi3 graph splits
 *  them; both are split on read into the seven linears of the llama block (row views into
 *  the map, lmp_model_split_rows), so every stage, compression included, sees a llama
 *  block. Separate attn_q/attn_k/attn_v (which llama.cpp also accepts) are read as such.
 *  attention.sliding_window is recorded and not applied, as llama.cpp does for phi3
 *  (only contexts beyond the window, 2047 tokens for Phi-3-mini, differ from Hugging
 *  Face's). LongRoPE (rope_factors_long / rope_factors_short tensors: Phi-3 128k,
 *  Phi-3.5, Phi-4-mini) is refused.
 *
 *  gemma3 (llama.cpp's Gemma 3 graph): NEOX RoPE (LMP_ROPE_HALF), GeGLU, q/k norms and
 *  post-attention/post-FFN norms (attn_q_norm, attn_k_norm, post_attention_norm,
 *  post_ffw_norm), embeddings scaled by sqrt(dim), attention scale 1/sqrt(head_dim)
 *  (dim / n_heads for the 27B, as llama.cpp), and with attention.sliding_window set,
 *  local layers every block but each attention.sliding_window_pattern-th (default 6)
 *  with their own RoPE base rope.freq_base_swa (default 10000) and no RoPE scaling.
 *  llama.cpp's converter stores Gemma's norm weights as (1 + w), so they multiply as
 *  they are, like every other norm here.
 *
 *  gemma2 (llama.cpp's Gemma 2 graph): Gemma 3's block without the q/k norms, with
 *  attention and final logit soft-capping (attn_logit_softcapping, default 50;
 *  final_logit_softcapping, default 30: llama.cpp's defaults), attention scale
 *  1/sqrt(head_dim) (dim / n_heads for the 46-layer 27B, as llama.cpp), every even block
 *  local with attention.sliding_window (default 4096) keys, one RoPE base for all blocks.
 *
 *  RoPE variants: rope.scaling.type "linear" or "yarn" with rope.scaling.factor (and
 *  rope.scaling.original_context_length, yarn_beta_fast/slow, attn_factor for YaRN);
 *  a rope_freqs tensor (llama 3.1's frequency divisors, F32); rope.dimension_count for
 *  partial rotary.
 *
 *  The model owns the lmp_gguf object (src), which owns the file map; m->tensors are
 *  copies of the GGUF tensor records whose data point into that map.
 */
#include "model/model.h"
#include "model/gguf.h" /* defines: lmp_gguf_open(), lmp_gguf_get_*() */
#include "base/text.h"  /* defines: lmp_str_escape_n */

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void gguf_src_close(void *src) {
    struct lmp_gguf *g = src;
    lmp_gguf_close(&g);
}

/* An integer key "<arch>.<suffix>" in [lo, hi]; *v untouched when absent and !required. */
static enum lmp_status cfg_int(const struct lmp_gguf *g, const char *arch, const char *suffix,
                               bool required, int64_t lo, int64_t hi, int32_t *v,
                               struct lmp_err *err) {
    char key[128];
    snprintf(key, sizeof(key), "%s.%s", arch, suffix);
    int64_t x;
    if (!lmp_gguf_get_i64(g, key, &x)) {
        if (lmp_gguf_find(g, key) >= 0)
            return lmp_err_set(err, LMP_EFORMAT, "'%s': key %s is not an integer", lmp_gguf_path(g),
                               key);
        if (required)
            return lmp_err_set(err, LMP_EFORMAT, "'%s': missing key %s", lmp_gguf_path(g), key);
        return LMP_OK;
    }
    if (x < lo || x > hi)
        return lmp_err_set(err, LMP_EFORMAT,
                           "'%s': %s = %" PRId64 " is out of range [%" PRId64 ", %" PRId64 "]",
                           lmp_gguf_path(g), key, x, lo, hi);
    *v = (int32_t)x;
    return LMP_OK;
}

static enum lmp_status cfg_float(const struct lmp_gguf *g, const char *arch, const char *suffix,
                                 float *v, struct lmp_err *err) {
    char key[128];
    snprintf(key, sizeof(key), "%s.%s", arch, suffix);
    double x;
    if (!lmp_gguf_get_f64(g, key, &x)) {
        if (lmp_gguf_find(g, key) >= 0)
            return lmp_err_set(err, LMP_EFORMAT, "'%s': key %s is not a float", lmp_gguf_path(g),
                               key);
        return LMP_OK;
    }
    if (!(x > 0 && x < 1e30))
        return lmp_err_set(err, LMP_EFORMAT, "'%s': %s = %g is out of range", lmp_gguf_path(g), key,
                           x);
    *v = (float)x;
    return LMP_OK;
}

/* Our copy of GGUF tensor `name`, or NULL. */
static const struct lmp_tensor *tensor(const struct lmp_model *m, const struct lmp_gguf *g,
                                       const char *name) {
    const struct lmp_tensor *t = lmp_gguf_find_tensor(g, name);
    return t ? &m->tensors[t - lmp_gguf_tensor(g, 0)] : NULL;
}

static enum lmp_status required(const struct lmp_model *m, const struct lmp_gguf *g,
                                const char *name, const struct lmp_tensor **out,
                                struct lmp_err *err) {
    *out = tensor(m, g, name);
    if (*out == NULL)
        return lmp_err_set(err, LMP_EFORMAT, "'%s': missing tensor '%s'", m->path, name);
    return LMP_OK;
}

/* A string key "<arch>.<suffix>" equal to s. */
static bool key_str_is(const struct lmp_gguf *g, const char *arch, const char *suffix,
                       const char *s) {
    char key[128];
    snprintf(key, sizeof(key), "%s.%s", arch, suffix);
    struct lmp_gguf_str v;
    return lmp_gguf_get_str(g, key, &v) && v.len == strlen(s) && memcmp(v.s, s, v.len) == 0;
}

/* RoPE scaling keys and the rope_freqs tensor (see the header). */
static enum lmp_status read_rope(struct lmp_config *c, const struct lmp_gguf *g, const char *arch,
                                 struct lmp_err *err) {
    const char     *path = lmp_gguf_path(g);
    enum lmp_status st;
    char            key[128];
    snprintf(key, sizeof(key), "%s.rope.scaling.type", arch);
    struct lmp_gguf_str type;
    bool                has_type = lmp_gguf_get_str(g, key, &type);
    if (!has_type && lmp_gguf_find(g, key) >= 0)
        return lmp_err_set(err, LMP_EFORMAT, "'%s': key %s is not a string", path, key);
    if ((st = cfg_int(g, arch, "rope.dimension_count", false, 2, INT32_MAX, &c->rope_dims, err)))
        return st;
    /* llama.cpp: the type defaults to linear, a missing (or 1) factor means none */
    float factor = 0;
    if ((st = cfg_float(g, arch, "rope.scaling.factor", &factor, err))) return st;
    if (has_type && key_str_is(g, arch, "rope.scaling.type", "yarn"))
        c->rope_scaling = LMP_ROPE_SCALING_YARN;
    else if (!has_type || key_str_is(g, arch, "rope.scaling.type", "linear"))
        c->rope_scaling =
            factor > 0 && factor != 1 ? LMP_ROPE_SCALING_LINEAR : LMP_ROPE_SCALING_NONE;
    else if (!key_str_is(g, arch, "rope.scaling.type", "none")) {
        char q[64];
        return lmp_err_set(err, LMP_EUNSUP, "'%s': %s '%s' is not supported (none, linear, yarn)",
                           path, key, lmp_str_escape_n(q, sizeof(q), type.s, type.len));
    }
    if (c->rope_scaling == LMP_ROPE_SCALING_YARN && factor == 0)
        return lmp_err_set(err, LMP_EFORMAT,
                           "'%s': yarn rope scaling without %s.rope.scaling.factor", path, arch);
    if (c->rope_scaling != LMP_ROPE_SCALING_NONE) {
        c->rope_factor       = factor;
        c->rope_orig_max_seq = c->max_seq;
        if ((st = cfg_int(g, arch, "rope.scaling.original_context_length", false, 1, INT32_MAX,
                          &c->rope_orig_max_seq, err)) ||
            (st = cfg_float(g, arch, "rope.scaling.yarn_beta_fast", &c->rope_beta_fast, err)) ||
            (st = cfg_float(g, arch, "rope.scaling.yarn_beta_slow", &c->rope_beta_slow, err)) ||
            (st = cfg_float(g, arch, "rope.scaling.attn_factor", &c->rope_attn_factor, err)))
            return st;
        /* llama.cpp's attn_factor multiplies YaRN's 0.1 ln(factor) + 1; ours replaces it */
        if (c->rope_scaling == LMP_ROPE_SCALING_YARN && c->rope_attn_factor > 0 &&
            c->rope_factor > 1)
            c->rope_attn_factor *= 0.1f * logf(c->rope_factor) + 1.0f;
    }
    const struct lmp_tensor *f = lmp_gguf_find_tensor(g, "rope_freqs.weight");
    if (f != NULL) {
        const int32_t dims = c->rope_dims ? c->rope_dims : c->head_dim;
        if (f->dtype != LMP_DTYPE_F32 || f->n_dims != 1 || f->shape[0] != dims / 2 ||
            (uintptr_t)f->data % sizeof(float) != 0)
            return lmp_err_set(err, LMP_EFORMAT,
                               "'%s': rope_freqs.weight must be F32 of %d elements (rope dims / 2)",
                               path, dims / 2);
        const float *v = f->data;
        for (int32_t i = 0; i < dims / 2; i++)
            if (!(v[i] > 0 && v[i] < 1e30f))
                return lmp_err_set(err, LMP_EFORMAT,
                                   "'%s': rope_freqs.weight[%d] = %g is not positive", path, i,
                                   (double)v[i]);
        c->rope_freq_factors = v;
    }
    return LMP_OK;
}

/* Gemma 3's fixed choices and its sliding-window keys (see the header). */
static enum lmp_status read_gemma3(struct lmp_config *c, const struct lmp_gguf *g, const char *arch,
                                   struct lmp_err *err) {
    enum lmp_status st;
    c->ffn_act     = LMP_ACT_GELU_TANH;
    c->embed_scale = sqrtf((float)c->dim); /* in float, as llama.cpp's ggml_scale */
    c->attn_scale  = c->n_layers == 62 ? 1.0f / sqrtf((float)(c->dim / c->n_heads))
                                       : 1.0f / sqrtf((float)c->head_dim);
    if (c->sliding_window <= 0) return LMP_OK;
    char key[128];
    snprintf(key, sizeof(key), "%s.attention.sliding_window_pattern", arch);
    if (lmp_gguf_arr_n(g, key, NULL) >= 0)
        return lmp_err_set(err, LMP_EUNSUP, "'%s': %s as a per-layer array is not supported",
                           lmp_gguf_path(g), key);
    c->swa_pattern      = 6;
    c->rope_theta_local = 10000.0f;
    if ((st = cfg_int(g, arch, "attention.sliding_window_pattern", false, 1, 4096, &c->swa_pattern,
                      err)) ||
        (st = cfg_float(g, arch, "rope.freq_base_swa", &c->rope_theta_local, err)))
        return st;
    return LMP_OK;
}

/* Gemma 2's fixed choices, its soft-caps and its window (see the header). */
static enum lmp_status read_gemma2(struct lmp_config *c, const struct lmp_gguf *g, const char *arch,
                                   struct lmp_err *err) {
    enum lmp_status st;
    c->ffn_act       = LMP_ACT_GELU_TANH;
    c->embed_scale   = sqrtf((float)c->dim);
    c->attn_scale    = c->n_layers == 46 ? 1.0f / sqrtf((float)(c->dim / c->n_heads))
                                         : 1.0f / sqrtf((float)c->head_dim);
    c->attn_softcap  = 50.0f;
    c->final_softcap = 30.0f;
    c->swa_pattern   = 2; /* blocks 0, 2, 4, ... local */
    if (c->sliding_window == 0) c->sliding_window = 4096;
    if ((st = cfg_float(g, arch, "attn_logit_softcapping", &c->attn_softcap, err)) ||
        (st = cfg_float(g, arch, "final_logit_softcapping", &c->final_softcap, err)))
        return st;
    return LMP_OK;
}

static enum lmp_status read_config(struct lmp_config *c, const struct lmp_gguf *g, const char *arch,
                                   struct lmp_err *err) {
    const int32_t   big = INT32_MAX;
    enum lmp_status st;
    int32_t         key_len = 0, value_len = 0;
    c->n_kv_heads = 0;
    c->max_seq    = 0;
    if ((st = cfg_int(g, arch, "embedding_length", true, 1, big, &c->dim, err)) ||
        (st = cfg_int(g, arch, "feed_forward_length", true, 1, big, &c->hidden_dim, err)) ||
        (st = cfg_int(g, arch, "attention.head_count", true, 1, big, &c->n_heads, err)) ||
        (st = cfg_int(g, arch, "attention.head_count_kv", false, 1, big, &c->n_kv_heads, err)) ||
        (st = cfg_int(g, arch, "attention.key_length", false, 2, big, &key_len, err)) ||
        (st = cfg_int(g, arch, "attention.value_length", false, 2, big, &value_len, err)) ||
        (st = cfg_int(g, arch, "context_length", false, 1, big, &c->max_seq, err)) ||
        (st = cfg_int(g, arch, "attention.sliding_window", false, 0, big, &c->sliding_window,
                      err)) ||
        (st = cfg_float(g, arch, "rope.freq_base", &c->rope_theta, err)) ||
        (st = cfg_float(g, arch, "attention.layer_norm_rms_epsilon", &c->norm_eps, err)))
        return st;
    if (c->n_kv_heads == 0) c->n_kv_heads = c->n_heads;
    if (c->n_kv_heads > c->n_heads || c->n_heads % c->n_kv_heads != 0)
        return lmp_err_set(err, LMP_EFORMAT,
                           "'%s': %s.attention.head_count_kv %d does not divide "
                           "%s.attention.head_count %d",
                           lmp_gguf_path(g), arch, c->n_kv_heads, arch, c->n_heads);
    if (key_len == 0 && c->dim % c->n_heads != 0)
        return lmp_err_set(err, LMP_EFORMAT,
                           "'%s': %s.attention.head_count %d does not divide "
                           "%s.embedding_length %d",
                           lmp_gguf_path(g), arch, c->n_heads, arch, c->dim);
    c->head_dim = key_len ? key_len : c->dim / c->n_heads;
    if (value_len && value_len != c->head_dim)
        return lmp_err_set(err, LMP_EUNSUP,
                           "'%s': value head size %d differs from key head "
                           "size %d",
                           lmp_gguf_path(g), value_len, c->head_dim);
    if (c->arch == LMP_ARCH_GEMMA3 && (st = read_gemma3(c, g, arch, err))) return st;
    if (c->arch == LMP_ARCH_GEMMA2 && (st = read_gemma2(c, g, arch, err))) return st;
    return read_rope(c, g, arch, err);
}

/* Phi-3's fused tensors of block b split into its linears: attn_qkv where present (else
 * the separate attn_q/k/v are read as usual), ffn_up always (gate rows, then up rows). */
static enum lmp_status read_phi3_fused(struct lmp_model *m, const struct lmp_gguf *g, int32_t b,
                                       bool *split_qkv, bool *split_ffn, struct lmp_err *err) {
    const struct lmp_config *c   = &m->cfg;
    struct lmp_block        *blk = &m->blocks[b];
    char                     name[LMP_NAME_MAX];
    enum lmp_status          st;
    snprintf(name, sizeof(name), "blk.%d.attn_qkv.weight", b);
    const struct lmp_tensor *qkv = tensor(m, g, name);
    if (qkv != NULL) {
        const int64_t                   rows[3] = {(int64_t)c->n_heads * c->head_dim,
                                                   (int64_t)c->n_kv_heads * c->head_dim,
                                                   (int64_t)c->n_kv_heads * c->head_dim};
        const struct lmp_tensor **const out[3]  = {
             &blk->lin[LMP_LIN_Q].weight, &blk->lin[LMP_LIN_K].weight, &blk->lin[LMP_LIN_V].weight};
        snprintf(name, sizeof(name), "blk.%d.attn_qkv.bias", b);
        if (tensor(m, g, name) != NULL)
            return lmp_err_set(err, LMP_EUNSUP, "'%s': bias '%s' is not supported", m->path, name);
        if ((st = lmp_model_split_rows(m, qkv, c->dim, 3, rows, out, err))) return st;
        *split_qkv = true;
    }
    snprintf(name, sizeof(name), "blk.%d.ffn_up.weight", b);
    const struct lmp_tensor *gate_up = NULL;
    if ((st = required(m, g, name, &gate_up, err))) return st;
    const int64_t                   rows[2] = {c->hidden_dim, c->hidden_dim};
    const struct lmp_tensor **const out[2]  = {&blk->lin[LMP_LIN_GATE].weight,
                                               &blk->lin[LMP_LIN_UP].weight};
    if ((st = lmp_model_split_rows(m, gate_up, c->dim, 2, rows, out, err))) return st;
    *split_ffn = true;
    return LMP_OK;
}

enum lmp_status lmp_model_open_gguf(const char *path, struct lmp_model **out, struct lmp_err *err) {
    *out                = NULL;
    struct lmp_gguf  *g = NULL;
    struct lmp_model *m = NULL;
    enum lmp_status   st;
    if ((st = lmp_gguf_open(path, &g, err))) return st;

    struct lmp_gguf_str a;
    if (!lmp_gguf_get_str(g, "general.architecture", &a)) {
        st = lmp_err_set(err, LMP_EFORMAT, "'%s': missing key general.architecture", path);
        goto fail;
    }
    enum lmp_arch arch_id = LMP_ARCH_COUNT;
    for (int i = 0; i < LMP_ARCH_COUNT; i++)
        if (a.len == strlen(lmp_arch_name((enum lmp_arch)i)) &&
            memcmp(a.s, lmp_arch_name((enum lmp_arch)i), a.len) == 0)
            arch_id = (enum lmp_arch)i;
    if (arch_id == LMP_ARCH_COUNT) {
        char q[80]; /* file text: escaped (control bytes), cut */
        st = lmp_err_set(err, LMP_EUNSUP,
                         "'%s': architecture '%s' is not supported "
                         "(llama, mistral, qwen2, gemma3, qwen3, phi3, gemma2)",
                         path, lmp_str_escape_n(q, sizeof(q), a.s, a.len));
        goto fail;
    }
    const char *arch = lmp_arch_name(arch_id);

    int32_t n_layers = 0;
    if ((st = cfg_int(g, arch, "block_count", true, 1, 4096, &n_layers, err))) goto fail;
    if ((m = lmp_model_alloc(n_layers)) == NULL || (m->path = strdup(path)) == NULL) {
        st = lmp_err_set(err, LMP_ENOMEM, "'%s': out of memory", path);
        goto fail;
    }
    struct lmp_config *c = &m->cfg;
    c->arch              = arch_id;
    c->format            = LMP_FORMAT_GGUF;
    c->rope = arch_id == LMP_ARCH_LLAMA || arch_id == LMP_ARCH_MISTRAL ? LMP_ROPE_INTERLEAVED
                                                                       : LMP_ROPE_HALF;
    if ((st = read_config(c, g, arch, err))) goto fail;
    static const char *const longrope[2] = {"rope_factors_long.weight",
                                            "rope_factors_short.weight"};
    for (int i = 0; i < 2; i++)
        if (lmp_gguf_find_tensor(g, longrope[i]) != NULL) {
            st = lmp_err_set(err, LMP_EUNSUP,
                             "'%s': LongRoPE scaling (tensor %s: Phi-3 128k, Phi-3.5, "
                             "Phi-4-mini) is not supported",
                             path, longrope[i]);
            goto fail;
        }

    /* Every tensor, copied; the model's pointers go to the copies. */
    m->n_tensors = lmp_gguf_n_tensors(g);
    m->tensors   = malloc((size_t)(m->n_tensors ? m->n_tensors : 1) * sizeof(*m->tensors));
    if (m->tensors == NULL) {
        st = lmp_err_set(err, LMP_ENOMEM, "'%s': out of memory", path);
        goto fail;
    }
    for (int64_t i = 0; i < m->n_tensors; i++) m->tensors[i] = *lmp_gguf_tensor(g, i);

    if ((st = required(m, g, "token_embd.weight", &m->tok_emb, err)) ||
        (st = required(m, g, "output_norm.weight", &m->out_norm, err)))
        goto fail;
    m->output          = tensor(m, g, "output.weight");
    c->tied_embeddings = m->output == NULL;

    /* Vocabulary: the embedding rows (which may include padding beyond the tokenizer's). */
    int64_t vocab = lmp_tensor_n_rows(m->tok_emb);
    if (vocab <= 0 || vocab > INT32_MAX) {
        st = lmp_err_set(err, LMP_EFORMAT, "'%s': token_embd.weight has %" PRId64 " rows", path,
                         vocab);
        goto fail;
    }
    c->vocab_size = (int32_t)vocab;

    static const char *const lin_tensor[LMP_LIN_COUNT] = {
        [LMP_LIN_Q] = "attn_q",      [LMP_LIN_K] = "attn_k",      [LMP_LIN_V] = "attn_v",
        [LMP_LIN_O] = "attn_output", [LMP_LIN_GATE] = "ffn_gate", [LMP_LIN_UP] = "ffn_up",
        [LMP_LIN_DOWN] = "ffn_down"};
    for (int32_t b = 0; b < n_layers; b++) {
        struct lmp_block *blk = &m->blocks[b];
        char              name[LMP_NAME_MAX];
        snprintf(name, sizeof(name), "blk.%d.attn_norm.weight", b);
        if ((st = required(m, g, name, &blk->attn_norm, err))) goto fail;
        snprintf(name, sizeof(name), "blk.%d.ffn_norm.weight", b);
        if ((st = required(m, g, name, &blk->ffn_norm, err))) goto fail;
        /* the optional block tensors each architecture has: gemma3 all four, gemma2 the
         * post norms, qwen3 q/k */
        const int n_extra = arch_id == LMP_ARCH_GEMMA3 || arch_id == LMP_ARCH_GEMMA2 ? 4
                            : arch_id == LMP_ARCH_QWEN3                              ? 2
                                                                                     : 0;
        const int first   = arch_id == LMP_ARCH_GEMMA2 ? 2 : 0;
        static const char *const  extra[4] = {"attn_q_norm", "attn_k_norm", "post_attention_norm",
                                              "post_ffw_norm"};
        const struct lmp_tensor **dst[4]   = {&blk->q_norm, &blk->k_norm, &blk->post_attn_norm,
                                              &blk->post_ffn_norm};
        for (int i = first; i < n_extra; i++) {
            snprintf(name, sizeof(name), "blk.%d.%s.weight", b, extra[i]);
            if ((st = required(m, g, name, dst[i], err))) goto fail;
        }
        bool split_qkv = false, split_ffn = false;
        if (arch_id == LMP_ARCH_PHI3 &&
            (st = read_phi3_fused(m, g, b, &split_qkv, &split_ffn, err)))
            goto fail;
        for (int k = 0; k < LMP_LIN_COUNT; k++) {
            if ((split_qkv && k <= LMP_LIN_V) ||
                (split_ffn && (k == LMP_LIN_GATE || k == LMP_LIN_UP)))
                continue;
            snprintf(name, sizeof(name), "blk.%d.%s.weight", b, lin_tensor[k]);
            if ((st = required(m, g, name, &blk->lin[k].weight, err))) goto fail;
            if (k == LMP_LIN_Q || k == LMP_LIN_K || k == LMP_LIN_V) {
                snprintf(name, sizeof(name), "blk.%d.%s.bias", b, lin_tensor[k]);
                blk->lin[k].bias = tensor(m, g, name);
            }
        }
    }

    m->gguf      = g;
    m->src       = g;
    m->src_close = gguf_src_close;
    g            = NULL; /* owned by m from here */
    if ((st = lmp_model_finish(m, err))) goto fail;
    *out = m;
    return LMP_OK;
fail:
    lmp_model_close(&m);
    lmp_gguf_close(&g);
    return st;
}
