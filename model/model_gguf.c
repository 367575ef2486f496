/*  model_gguf - struct lmp_model from a GGUF file (llama, mistral, qwen2)
 *
 *  The config comes from the "<arch>.*" keys that llama.cpp writes, the tensors from
 *  llama.cpp's names (token_embd, output_norm, output, blk.N.attn_q, ...). llama.cpp's
 *  converter permutes the Q and K rows of llama and mistral checkpoints so that RoPE
 *  rotates adjacent pairs (LMP_ROPE_INTERLEAVED); qwen2 keeps the Hugging Face order
 *  and rotates the two halves of each head (LMP_ROPE_HALF).
 *
 *  The model owns the lmp_gguf object (src), which owns the file map; m->tensors are
 *  copies of the GGUF tensor records whose data point into that map.
 */
#include "model/model.h"
#include "model/gguf.h" /* defines: lmp_gguf_open(), lmp_gguf_get_*() */
#include "base/text.h"  /* defines: lmp_str_escape_n */

#include <inttypes.h>
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
                         "(llama, mistral, qwen2)",
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
    c->rope              = arch_id == LMP_ARCH_QWEN2 ? LMP_ROPE_HALF : LMP_ROPE_INTERLEAVED;
    if ((st = read_config(c, g, arch, err))) goto fail;

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
        for (int k = 0; k < LMP_LIN_COUNT; k++) {
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
