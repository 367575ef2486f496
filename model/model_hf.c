/*  model_hf - reader for Hugging Face checkpoint directories (llama, mistral, qwen2, qwen3,
 *  phi3, gemma2)
 *
 *  A directory holds config.json and either model.safetensors or shards listed in
 *  model.safetensors.index.json ({"weight_map": {tensor: file}}). Every shard is
 *  mapped once; m->tensors holds every tensor of every shard whose dtype lmpress can
 *  compute with (F32, F16, BF16), pointing into the maps. Tensors of other dtypes are
 *  only an error when the model needs one of them.
 *
 *  Weights keep the Hugging Face layout, so RoPE rotates the halves of each head
 *  (LMP_ROPE_HALF). Scaled RoPE: rope_scaling / rope_parameters of type linear, llama3
 *  or yarn (without DeepSeek's mscale keys), and partial_rotary_factor; other types are
 *  rejected, and so is any activation other than silu and any bias the forward pass does
 *  not apply (o_proj, MLP). An absent
 *  lm_head.weight, or tie_word_embeddings, means the output shares the token embedding.
 *
 *  qwen3: self_attn.q_norm / k_norm (head_dim) are the per-head RMSNorms of q and k.
 *  phi3: self_attn.qkv_proj (rows q, k, v) and mlp.gate_up_proj (rows gate, up) are split
 *  on read into the llama block's linears (lmp_model_split_rows); sliding_window is
 *  recorded and not applied (as llama.cpp), rope_scaling longrope / su is refused.
 *  gemma2 (transformers' modeling_gemma2): GeGLU (hidden_activation or hidden_act
 *  gelu_pytorch_tanh), embeddings times sqrt(hidden_size), attention scale
 *  query_pre_attn_scalar^-1/2, the soft-caps attn_logit_softcapping and
 *  final_logit_softcapping (absent: transformers' defaults 50 and 30; null: none), every
 *  even layer local with sliding_window keys (layer_types, where given, must say so), tied
 *  head by default. Its norms are input_layernorm, post_attention_layernorm (of the
 *  attention output), pre_feedforward_layernorm, post_feedforward_layernorm and the final
 *  norm, each computing x * (1 + w): the reader holds (1 + w) in fp32 copies it owns (the
 *  tensors keep their names), as llama.cpp's converter writes them into a GGUF, so the
 *  forward pass multiplies by the weight as for every other model.
 */
#include "model/model.h"
#include "model/safetensors.h" /* defines: lmp_safetensors_parse_header() */
#include "base/file.h"         /* defines: lmp_map_open(), lmp_file_read_all() */
#include "base/text.h"         /* defines: lmp_str_escape (file text in messages) */

#include <cjson/cJSON.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HF_PATH_MAX 4096

struct hf_shard {
    struct lmp_map         map;
    struct lmp_safetensors st;
};

struct hf_src {
    struct hf_shard *shards; /* (n_shards) */
    int              n_shards;
    float          **owned; /* (n_owned) fp32 tensors the reader made (Gemma's 1 + w) */
    int              n_owned;
};

static void hf_src_close(void *p) {
    struct hf_src *s = p;
    if (s == NULL) return;
    for (int i = 0; i < s->n_shards; i++) {
        lmp_safetensors_release(&s->shards[i].st);
        lmp_map_close(&s->shards[i].map);
    }
    free(s->shards);
    for (int i = 0; i < s->n_owned; i++) free(s->owned[i]);
    free(s->owned);
    free(s);
}

static enum lmp_status join(char *out, const char *dir, const char *file, struct lmp_err *err) {
    int n = snprintf(out, HF_PATH_MAX, "%s/%s", dir, file);
    if (n < 0 || n >= HF_PATH_MAX)
        return lmp_err_set(err, LMP_EINVAL, "path too long: '%s/%s'", dir, file);
    return LMP_OK;
}

/* --- config.json ---------------------------------------------------------------------- */

/* The value of key in obj; of duplicate keys the last wins, as in Python's json module
 * (cJSON's own lookup returns the first). */
static const cJSON *cfg_get(const cJSON *obj, const char *key) {
    const cJSON *hit                                                             = NULL, *e;
    cJSON_ArrayForEach(e, obj) if (e->string && strcmp(e->string, key) == 0) hit = e;
    return hit;
}

/* An integer field in [lo, INT32_MAX]; absent or null gives def (or an error if required). */
static enum lmp_status cfg_int(const cJSON *cfg, const char *key, bool required, int32_t def,
                               int32_t lo, int32_t *out, const char *path, struct lmp_err *err) {
    const cJSON *j = cfg_get(cfg, key);
    if (j == NULL || cJSON_IsNull(j)) {
        if (required) return lmp_err_set(err, LMP_EFORMAT, "'%s': missing '%s'", path, key);
        *out = def;
        return LMP_OK;
    }
    double d = cJSON_IsNumber(j) ? j->valuedouble : -1.0;
    if (!cJSON_IsNumber(j) || !(d >= lo && d <= 2147483647.0) || d != (double)(int64_t)d)
        return lmp_err_set(err, LMP_EFORMAT, "'%s': '%s' is not an integer >= %d", path, key, lo);
    *out = (int32_t)d;
    return LMP_OK;
}

static enum lmp_status cfg_float(const cJSON *cfg, const char *key, double def, float *out,
                                 const char *path, struct lmp_err *err) {
    const cJSON *j = cfg_get(cfg, key);
    if (j == NULL || cJSON_IsNull(j)) {
        *out = (float)def;
        return LMP_OK;
    }
    if (!cJSON_IsNumber(j) || !(j->valuedouble > 0.0 && j->valuedouble < 1e30))
        return lmp_err_set(err, LMP_EFORMAT, "'%s': '%s' is not a positive number", path, key);
    *out = (float)j->valuedouble;
    return LMP_OK;
}

static bool cfg_bool(const cJSON *cfg, const char *key, bool def) {
    const cJSON *j = cfg_get(cfg, key);
    return cJSON_IsBool(j) ? cJSON_IsTrue(j) : def;
}

/* rope_scaling / rope_parameters: the variant and its fields (model/rope.h). A missing
 * original_max_position_embeddings is filled from max_position_embeddings afterwards. */
static enum lmp_status parse_rope(const cJSON *cfg, const char *path, struct lmp_config *c,
                                  struct lmp_err *err) {
    static const char *const rope_keys[] = {"rope_scaling", "rope_parameters"};
    enum lmp_status          st;
    for (int i = 0; i < 2; i++) {
        const cJSON *rs = cfg_get(cfg, rope_keys[i]);
        if (rs == NULL || cJSON_IsNull(rs)) continue;
        if (!cJSON_IsObject(rs))
            return lmp_err_set(err, LMP_EFORMAT, "'%s': %s is not an object", path, rope_keys[i]);
        const cJSON *sub;
        cJSON_ArrayForEach(sub, rs) if (cJSON_IsObject(sub)) /* per layer type */
            return lmp_err_set(err, LMP_EUNSUP, "'%s': %s per layer type is not supported", path,
                               rope_keys[i]);
        const cJSON *rt = cfg_get(rs, "rope_type");
        if (rt == NULL) rt = cfg_get(rs, "type");
        if (rt == NULL && i == 1) continue; /* rope_parameters with only rope_theta */
        static const struct {
            const char           *name;
            enum lmp_rope_scaling kind;
        } types[] = {{"default", LMP_ROPE_SCALING_NONE},
                     {"linear", LMP_ROPE_SCALING_LINEAR},
                     {"llama3", LMP_ROPE_SCALING_LLAMA3},
                     {"yarn", LMP_ROPE_SCALING_YARN}};
        int t     = -1;
        for (int k = 0; k < 4 && t < 0; k++)
            if (cJSON_IsString(rt) && strcmp(rt->valuestring, types[k].name) == 0) t = k;
        if (t < 0) {
            char q[96];
            return lmp_err_set(
                err, LMP_EUNSUP, "'%s': %s (%s) is not supported (default, linear, llama3, yarn)",
                path, rope_keys[i],
                lmp_str_escape(q, sizeof(q),
                               cJSON_IsString(rt) ? rt->valuestring : "unknown type"));
        }
        if (types[t].kind == LMP_ROPE_SCALING_NONE) continue;
        c->rope_scaling = types[t].kind;
        const cJSON *f  = cfg_get(rs, "factor");
        if (f == NULL || cJSON_IsNull(f))
            return lmp_err_set(err, LMP_EFORMAT, "'%s': %s (%s) without 'factor'", path,
                               rope_keys[i], types[t].name);
        if ((st = cfg_float(rs, "factor", 1.0, &c->rope_factor, path, err)) ||
            (st = cfg_int(rs, "original_max_position_embeddings",
                          types[t].kind == LMP_ROPE_SCALING_LLAMA3, 0, 1, &c->rope_orig_max_seq,
                          path, err)))
            return st;
        if (types[t].kind == LMP_ROPE_SCALING_LLAMA3 &&
            ((st = cfg_float(rs, "low_freq_factor", 1.0, &c->rope_low_freq_factor, path, err)) ||
             (st = cfg_float(rs, "high_freq_factor", 4.0, &c->rope_high_freq_factor, path, err))))
            return st;
        if (types[t].kind == LMP_ROPE_SCALING_YARN &&
            ((st = cfg_float(rs, "beta_fast", 32.0, &c->rope_beta_fast, path, err)) ||
             (st = cfg_float(rs, "beta_slow", 1.0, &c->rope_beta_slow, path, err))))
            return st;
        if (types[t].kind == LMP_ROPE_SCALING_YARN) {
            if (cfg_get(rs, "mscale") || cfg_get(rs, "mscale_all_dim"))
                return lmp_err_set(err, LMP_EUNSUP, "'%s': %s yarn with mscale is not supported",
                                   path, rope_keys[i]);
            if ((st = cfg_float(rs, "attention_factor", 0.0, &c->rope_attn_factor, path, err)))
                return st;
        }
    }
    return LMP_OK;
}

/* A soft-cap: absent gives def (transformers' default), null none (0), else a number > 0. */
static enum lmp_status cfg_cap(const cJSON *cfg, const char *key, double def, float *out,
                               const char *path, struct lmp_err *err) {
    const cJSON *j = cfg_get(cfg, key);
    if (j != NULL && cJSON_IsNull(j)) {
        *out = 0;
        return LMP_OK;
    }
    return cfg_float(cfg, key, def, out, path, err);
}

/* Gemma 2's fields beyond the llama config (see the header). */
static enum lmp_status parse_gemma2(const cJSON *cfg, const char *path, struct lmp_config *c,
                                    struct lmp_err *err) {
    enum lmp_status st;
    float           qpas = 256.0f; /* transformers' default query_pre_attn_scalar */
    c->ffn_act           = LMP_ACT_GELU_TANH;
    c->swa_pattern       = 2; /* layers 0, 2, 4, ... local */
    if ((st = cfg_float(cfg, "query_pre_attn_scalar", 256.0, &qpas, path, err)) ||
        (st = cfg_cap(cfg, "attn_logit_softcapping", 50.0, &c->attn_softcap, path, err)) ||
        (st = cfg_cap(cfg, "final_logit_softcapping", 30.0, &c->final_softcap, path, err)))
        return st;
    c->attn_scale     = 1.0f / sqrtf(qpas);
    const cJSON *lt   = cfg_get(cfg, "layer_types"); /* transformers 5: one name per layer */
    const int    n_lt = cJSON_IsArray(lt) ? cJSON_GetArraySize(lt) : 0;
    for (int i = 0; i < n_lt; i++) {
        const cJSON *e    = cJSON_GetArrayItem(lt, i);
        const char  *want = i % 2 == 0 ? "sliding_attention" : "full_attention";
        if (!cJSON_IsString(e) || strcmp(e->valuestring, want) != 0)
            return lmp_err_set(err, LMP_EUNSUP,
                               "'%s': layer_types[%d] is not '%s' (only Gemma 2's alternation, "
                               "even layers local, is supported)",
                               path, i, want);
    }
    if (lt != NULL && !cJSON_IsNull(lt) && !cJSON_IsArray(lt))
        return lmp_err_set(err, LMP_EFORMAT, "'%s': 'layer_types' is not an array", path);
    return LMP_OK;
}

static enum lmp_status parse_config(const char *path, struct lmp_config *c, struct lmp_err *err) {
    char           *text = NULL;
    size_t          len  = 0;
    cJSON          *cfg  = NULL;
    enum lmp_status st   = lmp_file_read_all(path, &text, &len, err);
    if (st != LMP_OK) return st;
    cfg = cJSON_ParseWithLength(text, len);
    if (cfg == NULL || !cJSON_IsObject(cfg)) {
        st = lmp_err_set(err, LMP_EFORMAT, "'%s': not a JSON object", path);
        goto out;
    }

    memset(c, 0, sizeof(*c));
    c->format = LMP_FORMAT_HF;
    c->rope   = LMP_ROPE_HALF;
    static const struct {
        const char   *type, *cls;
        enum lmp_arch arch;
    } archs[] = {
        {"llama", "LlamaForCausalLM", LMP_ARCH_LLAMA},
        {"mistral", "MistralForCausalLM", LMP_ARCH_MISTRAL},
        {"qwen2", "Qwen2ForCausalLM", LMP_ARCH_QWEN2},
        {"qwen3", "Qwen3ForCausalLM", LMP_ARCH_QWEN3},
        {"phi3", "Phi3ForCausalLM", LMP_ARCH_PHI3},
        {"gemma2", "Gemma2ForCausalLM", LMP_ARCH_GEMMA2},
    };
    const cJSON *mt   = cfg_get(cfg, "model_type");
    const cJSON *arcs = cfg_get(cfg, "architectures");
    const char  *type = cJSON_IsString(mt) ? mt->valuestring : NULL;
    const char  *cls  = NULL;
    if (cJSON_IsArray(arcs) && cJSON_IsString(cJSON_GetArrayItem(arcs, 0)))
        cls = cJSON_GetArrayItem(arcs, 0)->valuestring;
    int found = -1;
    for (int i = 0; i < (int)(sizeof(archs) / sizeof(archs[0])) && found < 0; i++)
        if ((type && strcmp(type, archs[i].type) == 0) ||
            (type == NULL && cls && strcmp(cls, archs[i].cls) == 0))
            found = i;
    if (found < 0) {
        const char *what = type ? type : cls ? cls : "(none)";
        for (const char *q = what; *q; q++) /* outside text in a message: one line, no escapes */
            if ((unsigned char)*q < 0x20 || *q == 0x7f) what = "(not printable)";
        st = lmp_err_set(err, LMP_EUNSUP,
                         "'%s': model_type '%.64s' is not supported (llama, mistral, qwen2, "
                         "qwen3, phi3, gemma2)",
                         path, what);
        goto out;
    }
    c->arch = archs[found].arch;

    /* RoPE: transformers 4 writes rope_theta and rope_scaling (null unless scaled);
     * transformers 5 writes rope_parameters {"rope_theta", "rope_type", ...}. */
    if ((st = parse_rope(cfg, path, c, err))) goto out;
    const bool  g2          = c->arch == LMP_ARCH_GEMMA2;
    const char *act_want    = g2 ? "gelu_pytorch_tanh" : "silu";
    const char *act_keys[2] = {"hidden_act", "hidden_activation"}; /* Gemma 2 reads the second */
    for (int i = 0; i < (g2 ? 2 : 1); i++) {
        const cJSON *act = cfg_get(cfg, act_keys[i]);
        if (act && !cJSON_IsNull(act) &&
            !(cJSON_IsString(act) && strcmp(act->valuestring, act_want) == 0)) {
            char q[96];
            st = lmp_err_set(
                err, LMP_EUNSUP, "'%s': %s '%s' is not supported (%s only)", path, act_keys[i],
                lmp_str_escape(q, sizeof(q), cJSON_IsString(act) ? act->valuestring : "?"),
                act_want);
            goto out;
        }
    }
    if (g2 && (st = parse_gemma2(cfg, path, c, err))) goto out;

    if ((st = cfg_int(cfg, "hidden_size", true, 0, 1, &c->dim, path, err)) ||
        (st = cfg_int(cfg, "intermediate_size", true, 0, 1, &c->hidden_dim, path, err)) ||
        (st = cfg_int(cfg, "num_hidden_layers", true, 0, 1, &c->n_layers, path, err)) ||
        (st = cfg_int(cfg, "num_attention_heads", true, 0, 1, &c->n_heads, path, err)) ||
        (st = cfg_int(cfg, "num_key_value_heads", false, c->n_heads, 1, &c->n_kv_heads, path,
                      err)) ||
        (st = cfg_int(cfg, "head_dim", false, g2 ? 256 : 0, 1, &c->head_dim, path, err)) ||
        (st = cfg_int(cfg, "vocab_size", true, 0, 1, &c->vocab_size, path, err)) ||
        (st = cfg_int(cfg, "max_position_embeddings", false, 2048, 1, &c->max_seq, path, err)) ||
        (st = cfg_int(cfg, "sliding_window", false, 0, 0, &c->sliding_window, path, err)) ||
        (st = cfg_float(cfg, "rope_theta", 10000.0, &c->rope_theta, path, err)) ||
        (st = cfg_float(cfg, "rms_norm_eps", 1e-6, &c->norm_eps, path, err)))
        goto out;
    const cJSON *rp = cfg_get(cfg, "rope_parameters");
    if (cJSON_IsObject(rp) &&
        (st = cfg_float(rp, "rope_theta", c->rope_theta, &c->rope_theta, path, err)))
        goto out;
    /* partial rotary (top level in transformers 4, in rope_parameters in 5) */
    float prf = 1.0f;
    if ((st = cfg_float(cfg, "partial_rotary_factor", 1.0, &prf, path, err)) ||
        (cJSON_IsObject(rp) && (st = cfg_float(rp, "partial_rotary_factor", prf, &prf, path, err))))
        goto out;
    if (prf != 1.0f) {
        /* the factor went through a float: 0.4 x 80 is 32.0000005, 2/3 x 6 is 4.0000002 */
        const int32_t hd = c->head_dim ? c->head_dim : c->n_heads ? c->dim / c->n_heads : 0;
        const double  d  = nearbyint((double)hd * prf);
        if (!(prf > 0 && prf <= 1) || fabs(d - (double)hd * prf) > 1e-3 || (int32_t)d % 2 != 0 ||
            d < 2) {
            st = lmp_err_set(err, LMP_EFORMAT,
                             "'%s': partial_rotary_factor %g does not give an even number of "
                             "dimensions of a head of %d",
                             path, (double)prf, hd);
            goto out;
        }
        c->rope_dims = (int32_t)d;
    }
    if (c->rope_scaling != LMP_ROPE_SCALING_NONE && c->rope_orig_max_seq == 0)
        c->rope_orig_max_seq = c->max_seq;
    /* the fields that must agree, named as config.json names them (lmp_model_finish
     * checks the bounds of every field again, whatever the reader) */
    if (c->n_kv_heads > c->n_heads || c->n_heads % c->n_kv_heads != 0) {
        st = lmp_err_set(err, LMP_EFORMAT,
                         "'%s': num_key_value_heads %d does not divide num_attention_heads %d",
                         path, c->n_kv_heads, c->n_heads);
        goto out;
    }
    if (c->head_dim == 0 && c->dim % c->n_heads != 0) {
        st = lmp_err_set(err, LMP_EFORMAT,
                         "'%s': num_attention_heads %d does not divide hidden_size %d (and no "
                         "head_dim)",
                         path, c->n_heads, c->dim);
        goto out;
    }
    if (c->vocab_size < 2) {
        st = lmp_err_set(err, LMP_EFORMAT, "'%s': vocab_size %d (at least 2)", path, c->vocab_size);
        goto out;
    }
    if (c->n_layers > 4096 || c->head_dim % 2 != 0) {
        st = lmp_err_set(err, LMP_EFORMAT, "'%s': invalid config (%d layers, head_dim %d)", path,
                         c->n_layers, c->head_dim);
        goto out;
    }
    /* Qwen2 writes a window but applies it only with use_sliding_window */
    if ((c->arch == LMP_ARCH_QWEN2 || c->arch == LMP_ARCH_QWEN3) &&
        !cfg_bool(cfg, "use_sliding_window", false))
        c->sliding_window = 0;
    if (c->arch == LMP_ARCH_LLAMA) c->sliding_window = 0;
    if (g2 && c->sliding_window == 0) c->sliding_window = 4096; /* transformers' default */
    if (g2) c->embed_scale = sqrtf((float)c->dim);
    c->tied_embeddings = cfg_bool(cfg, "tie_word_embeddings", g2);
out:
    cJSON_Delete(cfg);
    free(text);
    return st;
}

/* --- shards ---------------------------------------------------------------------------- */

static enum lmp_status open_shard(struct hf_shard *sh, const char *path, struct lmp_err *err) {
    enum lmp_status st = lmp_map_open(&sh->map, path, err);
    if (st != LMP_OK) return st;
    return lmp_safetensors_parse_header(sh->map.data, sh->map.size, path, &sh->st, err);
}

/* Shard file names from the index must name plain files in the checkpoint directory. */
static bool plain_name(const char *f) {
    return f[0] != '\0' && f[0] != '.' && strchr(f, '/') == NULL && strlen(f) < 256;
}

static enum lmp_status open_sharded(struct hf_src *src, const char *dir, const char *index,
                                    struct lmp_err *err) {
    char           *text    = NULL;
    size_t          len     = 0;
    cJSON          *root    = NULL;
    const char    **files   = NULL;
    int             n_files = 0;
    char            path[HF_PATH_MAX];
    enum lmp_status st = lmp_file_read_all(index, &text, &len, err);
    if (st != LMP_OK) return st;
    root            = cJSON_ParseWithLength(text, len);
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (root == NULL || !cJSON_IsObject(wm) || wm->child == NULL) {
        st = lmp_err_set(err, LMP_EFORMAT, "'%s': no weight_map object", index);
        goto out;
    }
    /* the distinct files, each opened once */
    int n_entries = cJSON_GetArraySize(wm);
    if ((files = calloc((size_t)n_entries, sizeof(*files))) == NULL) {
        st = lmp_err_set(err, LMP_ENOMEM, "out of memory reading '%s'", index);
        goto out;
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, wm) {
        if (!cJSON_IsString(e) || !plain_name(e->valuestring)) {
            char q[LMP_NAME_MAX];
            st = lmp_err_set(err, LMP_EFORMAT, "'%s': tensor '%s' maps to an invalid file name",
                             index, lmp_str_escape(q, sizeof(q), e->string));
            goto out;
        }
        int k = 0;
        while (k < n_files && strcmp(files[k], e->valuestring) != 0) k++;
        if (k == n_files) files[n_files++] = e->valuestring;
    }
    if ((src->shards = calloc((size_t)n_files, sizeof(*src->shards))) == NULL) {
        st = lmp_err_set(err, LMP_ENOMEM, "out of memory reading '%s'", index);
        goto out;
    }
    for (int k = 0; k < n_files; k++) {
        src->n_shards++;
        if ((st = join(path, dir, files[k], err)) || (st = open_shard(&src->shards[k], path, err)))
            goto out;
    }
    /* every mapped tensor is in the file the index names */
    cJSON_ArrayForEach(e, wm) {
        int k = 0;
        while (strcmp(files[k], e->valuestring) != 0) k++;
        if (lmp_safetensors_find(&src->shards[k].st, e->string) == NULL) {
            char q[LMP_NAME_MAX];
            st = lmp_err_set(err, LMP_EFORMAT, "'%s': tensor '%s' is not in '%s' as the index says",
                             index, lmp_str_escape(q, sizeof(q), e->string), files[k]);
            goto out;
        }
    }
out:
    free(files);
    cJSON_Delete(root);
    free(text);
    return st;
}

/* --- assembling the model ------------------------------------------------------------- */

/* The tensor named name, or NULL when absent. A present tensor whose dtype or rank
 * lmpress cannot use is LMP_EUNSUP, naming the file, the tensor and the dtype. */
static enum lmp_status get(const struct lmp_model *m, const struct hf_src *src, const char *name,
                           bool required, const struct lmp_tensor **out, struct lmp_err *err) {
    *out = lmp_model_find_tensor(m, name);
    if (*out) return LMP_OK;
    for (int k = 0; k < src->n_shards; k++) {
        const struct lmp_st_tensor *t = lmp_safetensors_find(&src->shards[k].st, name);
        if (t == NULL) continue;
        if (t->unsup && strcmp(t->unsup, "rank") == 0)
            return lmp_err_set(err, LMP_EUNSUP, "'%s': tensor '%s' has rank %d (at most %d)",
                               src->shards[k].map.path, name, t->n_dims, LMP_MAX_DIMS);
        char q[64];
        return lmp_err_set(err, LMP_EUNSUP, "'%s': tensor '%s' has unsupported dtype %s",
                           src->shards[k].map.path, name,
                           lmp_str_escape(q, sizeof(q), t->dtype_name));
    }
    if (required) return lmp_err_set(err, LMP_EFORMAT, "'%s': missing tensor '%s'", m->path, name);
    return LMP_OK;
}

static enum lmp_status collect_tensors(struct lmp_model *m, const struct hf_src *src,
                                       struct lmp_err *err) {
    int64_t n = 0;
    for (int k = 0; k < src->n_shards; k++) n += src->shards[k].st.n_tensors;
    if (n == 0) return lmp_err_set(err, LMP_EFORMAT, "'%s': no tensors", m->path);
    if ((m->tensors = calloc((size_t)n, sizeof(*m->tensors))) == NULL)
        return lmp_err_set(err, LMP_ENOMEM, "out of memory opening '%s'", m->path);
    for (int k = 0; k < src->n_shards; k++) {
        const struct hf_shard *sh = &src->shards[k];
        for (int64_t i = 0; i < sh->st.n_tensors; i++) {
            const struct lmp_st_tensor *s = &sh->st.tensors[i];
            /* a name in two shards is ambiguous, whatever its dtype */
            for (int j = 0; j < k; j++)
                if (lmp_safetensors_find(&src->shards[j].st, s->name)) {
                    char q[LMP_NAME_MAX];
                    return lmp_err_set(err, LMP_EFORMAT, "'%s': tensor '%s' also in '%s'",
                                       sh->map.path, lmp_str_escape(q, sizeof(q), s->name),
                                       src->shards[j].map.path);
                }
            if (s->unsup) continue;
            struct lmp_tensor *t = &m->tensors[m->n_tensors++];
            memcpy(t->name, s->name, sizeof(t->name));
            t->dtype  = s->dtype;
            t->n_dims = s->n_dims;
            memcpy(t->shape, s->shape, sizeof(t->shape));
            t->nbytes = s->end - s->begin;
            t->data   = sh->map.data + sh->st.data_offset + s->begin;
        }
    }
    return LMP_OK;
}

/* Phi-3's qkv_proj and gate_up_proj of block b split into the llama block's linears. */
static enum lmp_status split_phi3(struct lmp_model *m, const struct hf_src *src, int32_t b,
                                  struct lmp_err *err) {
    const struct lmp_config *c   = &m->cfg;
    struct lmp_block        *blk = &m->blocks[b];
    const struct lmp_tensor *qkv = NULL, *gate_up = NULL;
    char                     name[LMP_NAME_MAX];
    enum lmp_status          st;
    snprintf(name, sizeof(name), "model.layers.%d.self_attn.qkv_proj.weight", b);
    if ((st = get(m, src, name, true, &qkv, err))) return st;
    snprintf(name, sizeof(name), "model.layers.%d.mlp.gate_up_proj.weight", b);
    if ((st = get(m, src, name, true, &gate_up, err))) return st;
    const int32_t hd         = c->head_dim ? c->head_dim : c->dim / c->n_heads;
    const int64_t q_rows[3]  = {(int64_t)c->n_heads * hd, (int64_t)c->n_kv_heads * hd,
                                (int64_t)c->n_kv_heads * hd},
                  ff_rows[2] = {c->hidden_dim, c->hidden_dim};
    const struct lmp_tensor **const q_out[3] = {
        &blk->lin[LMP_LIN_Q].weight, &blk->lin[LMP_LIN_K].weight, &blk->lin[LMP_LIN_V].weight};
    const struct lmp_tensor **const ff_out[2] = {&blk->lin[LMP_LIN_GATE].weight,
                                                 &blk->lin[LMP_LIN_UP].weight};
    if ((st = lmp_model_split_rows(m, qkv, c->dim, 3, q_rows, q_out, err))) return st;
    return lmp_model_split_rows(m, gate_up, c->dim, 2, ff_rows, ff_out, err);
}

/* Gemma's x * (1 + w): the norm *t replaced, in m->tensors, by an fp32 copy of 1 + w owned
 * by src. A norm that is not a vector of at most 1 << 24 floats is left to
 * lmp_model_finish's shape check. RET LMP_OK or LMP_ENOMEM. */
static enum lmp_status norm_shift(struct lmp_model *m, struct hf_src *src,
                                  const struct lmp_tensor **t, struct lmp_err *err) {
    const int64_t n = lmp_tensor_n_elem(*t);
    if (lmp_tensor_n_rows(*t) != 1 || n <= 0 || n > (1 << 24)) return LMP_OK;
    float  *w   = malloc((size_t)n * sizeof(float));
    float **own = realloc(src->owned, (size_t)(src->n_owned + 1) * sizeof(*own));
    if (own) src->owned = own;
    if (w == NULL || own == NULL) {
        free(w);
        return lmp_err_set(err, LMP_ENOMEM, "'%s': out of memory", m->path);
    }
    src->owned[src->n_owned++] = w;
    lmp_tensor_rows_f32(*t, 0, 1, w);
    for (int64_t i = 0; i < n; i++) w[i] += 1.0f;
    struct lmp_tensor *mt = &m->tensors[*t - m->tensors]; /* the model's own record */
    mt->dtype             = LMP_DTYPE_F32;
    mt->data              = w;
    mt->nbytes            = (uint64_t)n * sizeof(float);
    return LMP_OK;
}

static enum lmp_status attach(struct lmp_model *m, struct hf_src *src, struct lmp_err *err) {
    struct lmp_config       *c = &m->cfg;
    enum lmp_status          st;
    const struct lmp_tensor *lm_head = NULL;
    if ((st = get(m, src, "model.embed_tokens.weight", true, &m->tok_emb, err)) ||
        (st = get(m, src, "model.norm.weight", true, &m->out_norm, err)) ||
        (st = get(m, src, "lm_head.weight", false, &lm_head, err)))
        return st;
    /* tied (or no head in the file): the output is the embedding */
    m->output          = (c->tied_embeddings || lm_head == NULL) ? m->tok_emb : lm_head;
    c->tied_embeddings = m->output == m->tok_emb;

    static const char *const mod[LMP_LIN_COUNT] = {
        "self_attn", "self_attn", "self_attn", "self_attn", "mlp", "mlp", "mlp"};
    char       name[LMP_NAME_MAX];
    const bool g2 = c->arch == LMP_ARCH_GEMMA2;
    if (g2 && (st = norm_shift(m, src, &m->out_norm, err))) return st;
    for (int32_t b = 0; b < c->n_layers; b++) {
        struct lmp_block *blk = &m->blocks[b];
        snprintf(name, sizeof(name), "model.layers.%d.input_layernorm.weight", b);
        if ((st = get(m, src, name, true, &blk->attn_norm, err))) return st;
        /* Gemma 2: post_attention_layernorm is the attention output's, the FFN's input
         * norm is pre_feedforward_layernorm */
        snprintf(name, sizeof(name), "model.layers.%d.post_attention_layernorm.weight", b);
        if ((st = get(m, src, name, true, g2 ? &blk->post_attn_norm : &blk->ffn_norm, err)))
            return st;
        if (g2) {
            snprintf(name, sizeof(name), "model.layers.%d.pre_feedforward_layernorm.weight", b);
            if ((st = get(m, src, name, true, &blk->ffn_norm, err))) return st;
            snprintf(name, sizeof(name), "model.layers.%d.post_feedforward_layernorm.weight", b);
            if ((st = get(m, src, name, true, &blk->post_ffn_norm, err))) return st;
            const struct lmp_tensor **norms[4] = {&blk->attn_norm, &blk->post_attn_norm,
                                                  &blk->ffn_norm, &blk->post_ffn_norm};
            for (int i = 0; i < 4; i++)
                if ((st = norm_shift(m, src, norms[i], err))) return st;
        }
        if (c->arch == LMP_ARCH_QWEN3) {
            snprintf(name, sizeof(name), "model.layers.%d.self_attn.q_norm.weight", b);
            if ((st = get(m, src, name, true, &blk->q_norm, err))) return st;
            snprintf(name, sizeof(name), "model.layers.%d.self_attn.k_norm.weight", b);
            if ((st = get(m, src, name, true, &blk->k_norm, err))) return st;
        }
        if (c->arch == LMP_ARCH_PHI3 && (st = split_phi3(m, src, b, err))) return st;
        for (int k = 0; k < LMP_LIN_COUNT; k++) {
            struct lmp_linear *l  = &blk->lin[k];
            const char        *ln = lmp_lin_name((enum lmp_lin)k);
            if (c->arch == LMP_ARCH_PHI3 && k != LMP_LIN_O && k != LMP_LIN_DOWN) {
                snprintf(name, sizeof(name), "model.layers.%d.%s.%s.bias", b, mod[k],
                         k <= LMP_LIN_V ? "qkv_proj" : "gate_up_proj");
                const struct lmp_tensor *bias = NULL;
                if ((st = get(m, src, name, false, &bias, err))) return st;
                if (bias)
                    return lmp_err_set(err, LMP_EUNSUP, "'%s': bias '%s' is not supported", m->path,
                                       name);
                continue; /* split_phi3 */
            }
            snprintf(name, sizeof(name), "model.layers.%d.%s.%s.weight", b, mod[k], ln);
            if ((st = get(m, src, name, true, &l->weight, err))) return st;
            snprintf(name, sizeof(name), "model.layers.%d.%s.%s.bias", b, mod[k], ln);
            bool qkv = k == LMP_LIN_Q || k == LMP_LIN_K || k == LMP_LIN_V;
            if ((st = get(m, src, name, qkv && c->arch == LMP_ARCH_QWEN2, &l->bias, err)))
                return st;
            if (l->bias && !qkv)
                return lmp_err_set(err, LMP_EUNSUP, "'%s': bias '%s' is not supported", m->path,
                                   name);
        }
    }
    return LMP_OK;
}

enum lmp_status lmp_model_open_hf(const char *dir, struct lmp_model **out, struct lmp_err *err) {
    *out                  = NULL;
    enum lmp_status   st  = LMP_OK;
    struct lmp_model *m   = NULL;
    struct hf_src    *src = NULL;
    struct lmp_config cfg;
    char              path[HF_PATH_MAX];

    if ((st = join(path, dir, "config.json", err))) return st;
    if (!lmp_path_is_file(path))
        return lmp_err_set(err, LMP_ENOENT, "'%s': no config.json (not a Hugging Face checkpoint)",
                           dir);
    if ((st = parse_config(path, &cfg, err))) return st;

    if ((m = lmp_model_alloc(cfg.n_layers)) == NULL || (m->path = strdup(dir)) == NULL ||
        (src = calloc(1, sizeof(*src))) == NULL) {
        st = lmp_err_set(err, LMP_ENOMEM, "out of memory opening '%s'", dir);
        goto fail;
    }
    m->cfg       = cfg;
    m->src       = src;
    m->src_close = hf_src_close;

    char index[HF_PATH_MAX];
    if ((st = join(index, dir, "model.safetensors.index.json", err)) ||
        (st = join(path, dir, "model.safetensors", err)))
        goto fail;
    if (lmp_path_is_file(index)) {
        if ((st = open_sharded(src, dir, index, err))) goto fail;
    } else if (lmp_path_is_file(path)) {
        if ((src->shards = calloc(1, sizeof(*src->shards))) == NULL) {
            st = lmp_err_set(err, LMP_ENOMEM, "out of memory opening '%s'", dir);
            goto fail;
        }
        src->n_shards = 1;
        if ((st = open_shard(&src->shards[0], path, err))) goto fail;
    } else {
        st = lmp_err_set(err, LMP_ENOENT,
                         "'%s': no model.safetensors or model.safetensors.index.json", dir);
        goto fail;
    }
    if ((st = collect_tensors(m, src, err)) || (st = attach(m, src, err)) ||
        (st = lmp_model_finish(m, err)))
        goto fail;
    *out = m;
    return LMP_OK;
fail:
    if (m && m->src == NULL) hf_src_close(src);
    lmp_model_close(&m);
    return st;
}
