/*  test_hf - the Hugging Face reader on synthetic checkpoints written here (llama, mistral,
 *  qwen2 with biases; F32, F16, BF16; one file and sharded), every value checked, and on
 *  broken checkpoints; plus the converted SmolLM2 checkpoint when it is present */
#define _GNU_SOURCE /* memmem */
#include "model/model.h"
#include "kernels/kernels.h" /* defines: lmp_f32_to_f16(), lmp_f32_to_bf16() */
#include "tests/check.h"

#include <stdbool.h>
#include <unistd.h>

static char tmpdir[256];

enum { DIM = 8, HID = 12, NL = 2, NH = 2, NKV = 1, HEAD = DIM / NH, VOCAB = 16 };

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (f == NULL) return;
    fputs(text, f);
    fclose(f);
}

static uint32_t name_hash(const char *s) {
    uint32_t h = 2166136261u;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

/* Element e of tensor name: a multiple of 1/8 in [-3.75, 3.75], exact in F16 and BF16,
 * different from tensor to tensor so a swapped tensor is caught. */
static float value_of(const char *name, int64_t e) {
    return (float)((int)((name_hash(name) + (uint32_t)e * 7u) % 61u) - 30) / 8.0f;
}

/* --- a tiny safetensors writer ------------------------------------------------------- */

struct wtensor {
    char        name[96];
    const char *dtype; /* "F32", "F16", "BF16", "I64" */
    int         n_dims;
    int64_t     shape[2];
};

struct checkpoint {
    struct wtensor t[64];
    int            n;
};

static void add(struct checkpoint *c, const char *name, const char *dtype, int n_dims, int64_t d0,
                int64_t d1) {
    struct wtensor *t = &c->t[c->n++];
    snprintf(t->name, sizeof(t->name), "%s", name);
    t->dtype    = dtype;
    t->n_dims   = n_dims;
    t->shape[0] = d0;
    t->shape[1] = d1;
}

static int elem_bytes(const char *dtype) {
    return !strcmp(dtype, "F32") ? 4 : !strcmp(dtype, "I64") ? 8 : 2;
}

static int64_t n_elem(const struct wtensor *t) {
    return t->n_dims == 1 ? t->shape[0] : t->shape[0] * t->shape[1];
}

/* Write the tensors t[i] with i % n_files == which into path (all when n_files == 1). */
static void write_safetensors(const char *path, const struct checkpoint *c, int which,
                              int n_files) {
    char   json[16384];
    int    jn  = snprintf(json, sizeof(json), "{\"__metadata__\":{\"format\":\"pt\"}");
    size_t off = 0;
    for (int i = 0; i < c->n; i++) {
        if (i % n_files != which) continue;
        const struct wtensor *t  = &c->t[i];
        size_t                nb = (size_t)n_elem(t) * (size_t)elem_bytes(t->dtype);
        char                  shape[64];
        if (t->n_dims == 1)
            snprintf(shape, sizeof(shape), "[%lld]", (long long)t->shape[0]);
        else
            snprintf(shape, sizeof(shape), "[%lld,%lld]", (long long)t->shape[0],
                     (long long)t->shape[1]);
        jn += snprintf(json + jn, sizeof(json) - (size_t)jn,
                       ",\"%s\":{\"dtype\":\"%s\",\"shape\":%s,\"data_offsets\":[%zu,%zu]}",
                       t->name, t->dtype, shape, off, off + nb);
        off += nb;
    }
    jn += snprintf(json + jn, sizeof(json) - (size_t)jn, "}");
    while (jn % 8) json[jn++] = ' '; /* align the data section, as writers do */

    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (f == NULL) return;
    uint8_t len[8];
    for (int b = 0; b < 8; b++) len[b] = (uint8_t)((uint64_t)jn >> (8 * b));
    fwrite(len, 1, 8, f);
    fwrite(json, 1, (size_t)jn, f);
    for (int i = 0; i < c->n; i++) {
        if (i % n_files != which) continue;
        const struct wtensor *t = &c->t[i];
        for (int64_t e = 0; e < n_elem(t); e++) {
            float v = value_of(t->name, e);
            if (!strcmp(t->dtype, "F32")) {
                fwrite(&v, 4, 1, f);
            } else if (!strcmp(t->dtype, "I64")) {
                int64_t x = (int64_t)v;
                fwrite(&x, 8, 1, f);
            } else {
                uint16_t h = !strcmp(t->dtype, "F16") ? lmp_f32_to_f16(v) : lmp_f32_to_bf16(v);
                fwrite(&h, 2, 1, f);
            }
        }
    }
    fclose(f);
}

/* The tensors of a checkpoint for arch ("llama", "mistral", "qwen2"), in dtype. */
static void make_tensors(struct checkpoint *c, const char *arch, const char *dtype, bool lm_head) {
    c->n = 0;
    add(c, "model.embed_tokens.weight", dtype, 2, VOCAB, DIM);
    for (int b = 0; b < NL; b++) {
        char n[96];
#define T(fmt, nd, d0, d1) (snprintf(n, sizeof(n), fmt, b), add(c, n, dtype, nd, d0, d1))
        T("model.layers.%d.input_layernorm.weight", 1, DIM, 0);
        T("model.layers.%d.post_attention_layernorm.weight", 1, DIM, 0);
        T("model.layers.%d.self_attn.q_proj.weight", 2, NH * HEAD, DIM);
        T("model.layers.%d.self_attn.k_proj.weight", 2, NKV * HEAD, DIM);
        T("model.layers.%d.self_attn.v_proj.weight", 2, NKV * HEAD, DIM);
        T("model.layers.%d.self_attn.o_proj.weight", 2, DIM, NH * HEAD);
        T("model.layers.%d.mlp.gate_proj.weight", 2, HID, DIM);
        T("model.layers.%d.mlp.up_proj.weight", 2, HID, DIM);
        T("model.layers.%d.mlp.down_proj.weight", 2, DIM, HID);
        if (!strcmp(arch, "qwen2")) {
            T("model.layers.%d.self_attn.q_proj.bias", 1, NH * HEAD, 0);
            T("model.layers.%d.self_attn.k_proj.bias", 1, NKV * HEAD, 0);
            T("model.layers.%d.self_attn.v_proj.bias", 1, NKV * HEAD, 0);
        }
#undef T
    }
    add(c, "model.norm.weight", dtype, 1, DIM, 0);
    if (lm_head) add(c, "lm_head.weight", dtype, 2, VOCAB, DIM);
}

/* extra: more fields, ", \"key\": value, ..."; they come last, so they override the
 * defaults (of duplicate keys the last wins, as in Python) */
static void make_config(char *buf, size_t cap, const char *arch, bool tied, const char *extra) {
    snprintf(buf, cap,
             "{\"architectures\": [\"X\"], \"model_type\": \"%s\", \"hidden_size\": %d,"
             " \"intermediate_size\": %d, \"num_hidden_layers\": %d, \"num_attention_heads\": %d,"
             " \"num_key_value_heads\": %d, \"vocab_size\": %d, \"max_position_embeddings\": 64,"
             " \"rope_theta\": 500000.0, \"rms_norm_eps\": 1e-06, \"hidden_act\": \"silu\","
             " \"tie_word_embeddings\": %s, \"rope_scaling\": null%s}",
             arch, DIM, HID, NL, NH, NKV, VOCAB, tied ? "true" : "false", extra ? extra : "");
}

/* Write a checkpoint into a fresh directory under tmpdir; n_files > 1 shards it. */
static void write_checkpoint(char *dir, const char *tag, const char *config,
                             const struct checkpoint *c, int n_files) {
    snprintf(dir, 512, "%s/%s", tmpdir, tag);
    mkdir(dir, 0755);
    char p[600];
    snprintf(p, sizeof(p), "%s/config.json", dir);
    write_text(p, config);
    if (n_files == 1) {
        snprintf(p, sizeof(p), "%s/model.safetensors", dir);
        write_safetensors(p, c, 0, 1);
        return;
    }
    char index[8192];
    int  n = snprintf(index, sizeof(index), "{\"metadata\":{\"total_size\":0},\"weight_map\":{");
    for (int i = 0; i < c->n; i++)
        n += snprintf(index + n, sizeof(index) - (size_t)n,
                      "%s\"%s\":\"model-%05d-of-%05d.safetensors\"", i ? "," : "", c->t[i].name,
                      i % n_files + 1, n_files);
    snprintf(index + n, sizeof(index) - (size_t)n, "}}");
    snprintf(p, sizeof(p), "%s/model.safetensors.index.json", dir);
    write_text(p, index);
    for (int k = 0; k < n_files; k++) {
        snprintf(p, sizeof(p), "%s/model-%05d-of-%05d.safetensors", dir, k + 1, n_files);
        write_safetensors(p, c, k, n_files);
    }
}

static void remove_checkpoint(const char *dir) {
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}

/* Every tensor of m holds value_of(name, e), read through lmp_tensor_rows_f32. */
static void check_values(const struct lmp_model *m, const struct checkpoint *c) {
    for (int i = 0; i < c->n; i++) {
        const struct lmp_tensor *t = lmp_model_find_tensor(m, c->t[i].name);
        CHECK(t != NULL);
        if (t == NULL) continue;
        int64_t n = lmp_tensor_n_elem(t);
        CHECK(n == n_elem(&c->t[i]));
        float *v = malloc((size_t)n * sizeof(float));
        lmp_tensor_rows_f32(t, 0, lmp_tensor_n_rows(t), v);
        int bad = 0;
        for (int64_t e = 0; e < n; e++) bad += v[e] != value_of(c->t[i].name, e);
        CHECK(bad == 0);
        free(v);
    }
    CHECK(m->n_tensors == c->n);
}

static void check_structure(const struct lmp_model *m) {
    for (int b = 0; b < NL; b++) {
        char                     n[96];
        static const char *const mod[] = {"self_attn", "self_attn", "self_attn", "self_attn",
                                          "mlp",       "mlp",       "mlp"};
        for (int k = 0; k < LMP_LIN_COUNT; k++) {
            snprintf(n, sizeof(n), "model.layers.%d.%s.%s.weight", b, mod[k],
                     lmp_lin_name((enum lmp_lin)k));
            CHECK(m->blocks[b].lin[k].weight == lmp_model_find_tensor(m, n));
            CHECK(m->blocks[b].lin[k].weight != NULL);
            snprintf(n, sizeof(n), "model.layers.%d.%s.%s.bias", b, mod[k],
                     lmp_lin_name((enum lmp_lin)k));
            CHECK(m->blocks[b].lin[k].bias == lmp_model_find_tensor(m, n));
        }
        snprintf(n, sizeof(n), "model.layers.%d.input_layernorm.weight", b);
        CHECK(m->blocks[b].attn_norm == lmp_model_find_tensor(m, n));
        snprintf(n, sizeof(n), "model.layers.%d.post_attention_layernorm.weight", b);
        CHECK(m->blocks[b].ffn_norm == lmp_model_find_tensor(m, n));
    }
    CHECK(m->tok_emb == lmp_model_find_tensor(m, "model.embed_tokens.weight"));
    CHECK(m->out_norm == lmp_model_find_tensor(m, "model.norm.weight"));
}

static void test_reads_every_arch_dtype_and_layout(void) {
    static const char *const archs[]  = {"llama", "mistral", "qwen2"};
    static const char *const dtypes[] = {"F32", "F16", "BF16"};
    static struct checkpoint c;
    for (int a = 0; a < 3; a++) {
        for (int d = 0; d < 3; d++) {
            for (int n_files = 1; n_files <= 3; n_files += 2) {
                bool tied = (a + d) % 2 == 0;
                /* tied with an lm_head in the file: the head is ignored, as in transformers */
                make_tensors(&c, archs[a], dtypes[d], !tied || n_files == 3);
                char cfg[1024], dir[512], tag[64];
                make_config(cfg, sizeof(cfg), archs[a], tied,
                            a == 1   ? ", \"sliding_window\": 4096"
                            : a == 2 ? ", \"sliding_window\": 32768, \"use_sliding_window\": false"
                                     : NULL);
                snprintf(tag, sizeof(tag), "%s_%s_%d", archs[a], dtypes[d], n_files);
                write_checkpoint(dir, tag, cfg, &c, n_files);

                struct lmp_model *m   = NULL;
                struct lmp_err    err = {0};
                enum lmp_status   st  = lmp_model_open(dir, &m, &err);
                if (st != LMP_OK) fprintf(stderr, "%s: %s\n", tag, err.msg);
                CHECK(st == LMP_OK);
                if (m) {
                    const struct lmp_config *cf = &m->cfg;
                    CHECK(cf->format == LMP_FORMAT_HF);
                    CHECK(strcmp(lmp_arch_name(cf->arch), archs[a]) == 0);
                    CHECK(cf->dim == DIM && cf->hidden_dim == HID && cf->n_layers == NL);
                    CHECK(cf->n_heads == NH && cf->n_kv_heads == NKV && cf->head_dim == HEAD);
                    CHECK(cf->vocab_size == VOCAB && cf->max_seq == 64);
                    CHECK(cf->rope == LMP_ROPE_HALF);
                    CHECK(cf->rope_theta == 500000.0f);
                    CHECK(cf->norm_eps == 1e-6f);
                    CHECK(cf->tied_embeddings == tied);
                    CHECK(tied ? m->output == m->tok_emb
                               : m->output == lmp_model_find_tensor(m, "lm_head.weight"));
                    CHECK(cf->qkv_bias == (a == 2));
                    CHECK(cf->sliding_window == (a == 1 ? 4096 : 0));
                    CHECK(strcmp(m->path, dir) == 0);
                    check_structure(m);
                    check_values(m, &c);
                }
                lmp_model_close(&m);
                CHECK(m == NULL);
                remove_checkpoint(dir);
            }
        }
    }
}

static void test_opens_via_file_inside_and_defaults(void) {
    static struct checkpoint c;
    make_tensors(&c, "llama", "F32", false); /* no lm_head: tied */
    /* minimal config: defaults for kv heads, theta, eps, tie; architectures instead of
     * model_type */
    char cfg[1024], dir[512], p[600];
    snprintf(cfg, sizeof(cfg),
             "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": %d,"
             " \"intermediate_size\": %d, \"num_hidden_layers\": %d, \"num_attention_heads\": %d,"
             " \"vocab_size\": %d, \"head_dim\": null}",
             DIM, HID, NL, NH, VOCAB);
    /* kv heads default to heads: the checkpoint must have full-size k and v */
    for (int i = 0; i < c.n; i++)
        if (strstr(c.t[i].name, "k_proj") || strstr(c.t[i].name, "v_proj")) c.t[i].shape[0] = DIM;
    write_checkpoint(dir, "defaults", cfg, &c, 1);
    snprintf(p, sizeof(p), "%s/model.safetensors", dir);
    struct lmp_model *m   = NULL;
    struct lmp_err    err = {0};
    CHECK(lmp_model_open(p, &m, &err) == LMP_OK); /* a file inside opens the directory */
    if (m) {
        CHECK(m->cfg.arch == LMP_ARCH_LLAMA);
        CHECK(m->cfg.n_kv_heads == NH);
        CHECK(m->cfg.rope_theta == 10000.0f);
        CHECK(m->cfg.norm_eps == 1e-6f);
        CHECK(m->cfg.tied_embeddings && m->output == m->tok_emb);
        CHECK(m->cfg.sliding_window == 0);
        check_values(m, &c);
    }
    lmp_model_close(&m);

    /* an extra tensor of an unsupported dtype that the model does not need is fine */
    add(&c, "model.rotary_emb.inv_freq_ids", "I64", 1, 4, 0);
    write_checkpoint(dir, "defaults", cfg, &c, 1);
    CHECK(lmp_model_open(dir, &m, &err) == LMP_OK);
    CHECK(m && lmp_model_find_tensor(m, "model.rotary_emb.inv_freq_ids") == NULL);
    lmp_model_close(&m);
    remove_checkpoint(dir);
}

/* --- failures --------------------------------------------------------------------------- */

static void expect_fail(const char *dir, enum lmp_status want, const char *words) {
    struct lmp_model *m   = NULL;
    struct lmp_err    err = {0};
    enum lmp_status   st  = lmp_model_open(dir, &m, &err);
    bool              ok  = st == want && m == NULL && strstr(err.msg, words) != NULL;
    if (!ok)
        fprintf(stderr, "expected %s with '%s', got %s: %s\n", lmp_status_str(want), words,
                lmp_status_str(st), err.msg);
    CHECK(ok);
    CHECK(strchr(err.msg, '\n') == NULL);
    lmp_model_close(&m);
}

/* Overwrite n bytes at off in file path. */
static void patch(const char *path, long off, const void *bytes, size_t n) {
    FILE *f = fopen(path, "r+b");
    CHECK(f != NULL);
    if (f == NULL) return;
    fseek(f, off, SEEK_SET);
    fwrite(bytes, 1, n, f);
    fclose(f);
}

/* Replace the first occurrence of from by to (same length) in the file. */
static void patch_text(const char *path, const char *from, const char *to) {
    FILE  *f = fopen(path, "rb");
    char   buf[32768];
    size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
    if (f) fclose(f);
    buf[n]    = '\0';
    char *hit = memmem(buf, n, from, strlen(from));
    CHECK(hit != NULL && strlen(from) == strlen(to));
    if (hit) patch(path, hit - buf, to, strlen(to));
}

static void test_config_failures(void) {
    static struct checkpoint c;
    make_tensors(&c, "llama", "F32", true);
    char cfg[1024], dir[512], p[600];
    make_config(cfg, sizeof(cfg), "llama", false, NULL);
    write_checkpoint(dir, "cfgfail", cfg, &c, 1);
    snprintf(p, sizeof(p), "%s/config.json", dir);

    unlink(p);
    expect_fail(dir, LMP_ENOENT, "no config.json");
    write_text(p, "{\"model_type\": \"llama\", \"hidden_size\": ");
    expect_fail(dir, LMP_EFORMAT, "config.json': not a JSON object");
    write_text(p, "[1, 2]");
    expect_fail(dir, LMP_EFORMAT, "not a JSON object");
    make_config(cfg, sizeof(cfg), "gpt2", false, NULL);
    write_text(p, cfg);
    expect_fail(dir, LMP_EUNSUP, "model_type 'gpt2' is not supported");
    make_config(cfg, sizeof(cfg), "llama", false,
                ", \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0}");
    write_text(p, cfg);
    expect_fail(dir, LMP_EFORMAT, "missing 'original_max_position_embeddings'");
    make_config(cfg, sizeof(cfg), "llama", false,
                ", \"rope_parameters\": {\"rope_type\": \"longrope\", \"factor\": 4.0}");
    write_text(p, cfg);
    expect_fail(dir, LMP_EUNSUP, "rope_parameters (longrope) is not supported");
    make_config(cfg, sizeof(cfg), "llama", false,
                ", \"rope_scaling\": {\"rope_type\": \"linear\"}");
    write_text(p, cfg);
    expect_fail(dir, LMP_EFORMAT, "rope_scaling (linear) without 'factor'");
    make_config(cfg, sizeof(cfg), "llama", false,
                ", \"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4.0, \"mscale\": 1}");
    write_text(p, cfg);
    expect_fail(dir, LMP_EUNSUP, "yarn with mscale is not supported");
    make_config(cfg, sizeof(cfg), "llama", false,
                ", \"rope_parameters\": {\"full_attention\": {\"rope_theta\": 1e6}}");
    write_text(p, cfg);
    expect_fail(dir, LMP_EUNSUP, "rope_parameters per layer type is not supported");
    make_config(cfg, sizeof(cfg), "llama", false, ", \"partial_rotary_factor\": 0.3");
    write_text(p, cfg);
    expect_fail(dir, LMP_EFORMAT, "partial_rotary_factor 0.3");
    /* the scaled variants: their fields as config.json gives them (model/rope.h computes) */
    {
        make_config(cfg, sizeof(cfg), "llama", false,
                    ", \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0, "
                    "\"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, "
                    "\"original_max_position_embeddings\": 8192}");
        write_text(p, cfg);
        struct lmp_model *m   = NULL;
        struct lmp_err    err = {0};
        CHECK(lmp_model_open(dir, &m, &err) == LMP_OK);
        CHECK(m && m->cfg.rope_scaling == LMP_ROPE_SCALING_LLAMA3 && m->cfg.rope_factor == 8.0f &&
              m->cfg.rope_low_freq_factor == 1.0f && m->cfg.rope_high_freq_factor == 4.0f &&
              m->cfg.rope_orig_max_seq == 8192);
        /* scaled RoPE trains (worker/block_grad.c has every variant) */
        CHECK(m && lmp_model_check_trainable(m, "compression", &err) == LMP_OK);
        lmp_model_close(&m);
        make_config(cfg, sizeof(cfg), "llama", false,
                    ", \"rope_parameters\": {\"rope_type\": \"yarn\", \"factor\": 4.0, "
                    "\"rope_theta\": 10000.0}, \"partial_rotary_factor\": 0.5");
        write_text(p, cfg);
        CHECK(lmp_model_open(dir, &m, &err) == LMP_OK);
        CHECK(m && m->cfg.rope_scaling == LMP_ROPE_SCALING_YARN && m->cfg.rope_factor == 4.0f &&
              m->cfg.rope_orig_max_seq == 64 && m->cfg.rope_beta_fast == 32.0f &&
              m->cfg.rope_beta_slow == 1.0f && m->cfg.rope_theta == 10000.0f &&
              m->cfg.rope_dims == m->cfg.head_dim / 2);
        /* partial rotary dimensions train (test_model_grad, test_block_grad) */
        CHECK(m && lmp_model_check_trainable(m, "compression", &err) == LMP_OK);
        lmp_model_close(&m);
        make_config(cfg, sizeof(cfg), "llama", false,
                    ", \"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0}");
        write_text(p, cfg);
        CHECK(lmp_model_open(dir, &m, &err) == LMP_OK);
        CHECK(m && m->cfg.rope_scaling == LMP_ROPE_SCALING_LINEAR && m->cfg.rope_factor == 2.0f);
        lmp_model_close(&m);
    }
    /* transformers 5 keeps theta in rope_parameters; a "default" type is plain RoPE */
    static const char *const plain[] = {
        ", \"rope_parameters\": {\"rope_theta\": 100000.0, \"rope_type\": \"default\"}",
        ", \"rope_parameters\": {\"rope_theta\": 100000.0}",
        ", \"rope_scaling\": {\"rope_type\": \"default\"}, \"rope_theta\": 100000.0",
    };
    for (int i = 0; i < 3; i++) {
        make_config(cfg, sizeof(cfg), "llama", false, plain[i]);
        write_text(p, cfg);
        struct lmp_model *m   = NULL;
        struct lmp_err    err = {0};
        CHECK(lmp_model_open(dir, &m, &err) == LMP_OK);
        CHECK(m && m->cfg.rope_theta == 100000.0f);
        lmp_model_close(&m);
    }
    make_config(cfg, sizeof(cfg), "llama", false, ", \"hidden_act\": \"gelu\"");
    write_text(p, cfg);
    expect_fail(dir, LMP_EUNSUP, "hidden_act 'gelu'");
    make_config(cfg, sizeof(cfg), "llama", false, ", \"hidden_size\": -8");
    write_text(p, cfg);
    expect_fail(dir, LMP_EFORMAT, "'hidden_size' is not an integer");
    make_config(cfg, sizeof(cfg), "llama", false, ", \"num_key_value_heads\": 2.5");
    write_text(p, cfg);
    expect_fail(dir, LMP_EFORMAT, "'num_key_value_heads'");
    write_text(p, "{\"model_type\": \"llama\", \"hidden_size\": 8}");
    expect_fail(dir, LMP_EFORMAT, "missing 'intermediate_size'");
    make_config(cfg, sizeof(cfg), "llama", false, ", \"num_key_value_heads\": 3");
    write_text(p, cfg);
    expect_fail(dir, LMP_EFORMAT, "num_key_value_heads 3 does not divide num_attention_heads");
    /* issue 10: every field within bounds and agreeing with the others */
    static const struct {
        const char *extra, *says;
    } cfgs[] = {
        {", \"vocab_size\": 1", "vocab_size 1"},
        {", \"vocab_size\": -1", "'vocab_size' is not an integer >= 1"},
        {", \"num_hidden_layers\": 0", "'num_hidden_layers' is not an integer >= 1"},
        {", \"num_hidden_layers\": 100000", "100000 layers"},
        {", \"num_attention_heads\": 3, \"num_key_value_heads\": 3",
         "num_attention_heads 3 does not divide hidden_size"},
        {", \"num_key_value_heads\": 4", "num_key_value_heads 4 does not divide"},
        {", \"head_dim\": 3", "head_dim 3"},
        {", \"hidden_size\": 1073741824", "config dim 1073741824 is out of range"},
        {", \"intermediate_size\": 4294967296", "'intermediate_size' is not an integer"},
        {", \"max_position_embeddings\": 0", "'max_position_embeddings'"},
        {", \"sliding_window\": -1", "'sliding_window'"},
        /* the config disagrees with the tensors' shapes */
        {", \"vocab_size\": 64", "expected (64, 8)"},
        {", \"head_dim\": 8", "expected (16, 8)"},
    };
    for (size_t i = 0; i < sizeof(cfgs) / sizeof(cfgs[0]); i++) {
        make_config(cfg, sizeof(cfg), "llama", false, cfgs[i].extra);
        write_text(p, cfg);
        expect_fail(dir, LMP_EFORMAT, cfgs[i].says);
    }
    /* a config whose shapes disagree with the weights */
    make_config(cfg, sizeof(cfg), "llama", false, ", \"intermediate_size\": 16");
    write_text(p, cfg);
    expect_fail(dir, LMP_EFORMAT, "expected (16, 8)");
    expect_fail("/nonexistent/hf/dir/config.json", LMP_ENOENT, "config.json");
    remove_checkpoint(dir);
}

static void test_weight_failures(void) {
    static struct checkpoint c;
    char                     cfg[1024], dir[512], st_path[600];
    make_config(cfg, sizeof(cfg), "llama", false, NULL);
    make_tensors(&c, "llama", "BF16", true);
    write_checkpoint(dir, "wfail", cfg, &c, 1);
    snprintf(st_path, sizeof(st_path), "%s/model.safetensors", dir);

    /* header length beyond the file */
    uint8_t big[8] = {0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0};
    patch(st_path, 0, big, 8);
    expect_fail(dir, LMP_EFORMAT, "beyond the file");
    /* offsets beyond the data section: make the last tensor end past the file */
    write_checkpoint(dir, "wfail", cfg, &c, 1);
    {
        /* rewrite lm_head's end offset to one byte beyond the data section */
        FILE  *f = fopen(st_path, "rb");
        char   buf[32768];
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n]  = '\0';
        char *o = memmem(buf, n, "\"lm_head.weight\"", 16); /* the length field has NULs */
        CHECK(o != NULL);
        if (o == NULL) return;
        o        = strstr(o, "data_offsets\":[");
        o        = strchr(o, ',') + 1;
        long end = strtol(o, NULL, 10);
        char repl[32];
        int  w = (int)(strchr(o, ']') - o);
        snprintf(repl, sizeof(repl), "%*ld", w, end + 2); /* same width, padded */
        /* leading spaces inside a JSON array are fine */
        patch(st_path, o - buf, repl, (size_t)w);
    }
    expect_fail(dir, LMP_EFORMAT, "outside the data section");
    /* truncated downloads: empty, inside the header, inside the data */
    struct stat sb;
    CHECK(stat(st_path, &sb) == 0);
    const long cuts[] = {0, 5, 100, (long)sb.st_size - 1};
    for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
        write_checkpoint(dir, "wfail", cfg, &c, 1);
        CHECK(truncate(st_path, cuts[i]) == 0);
        expect_fail(dir, LMP_EFORMAT, i < 3 ? "truncated" : "outside the data section");
    }
    /* size mismatch with the shape */
    write_checkpoint(dir, "wfail", cfg, &c, 1);
    patch_text(st_path, "\"model.norm.weight\":{\"dtype\":\"BF16\",\"shape\":[8]",
               "\"model.norm.weight\":{\"dtype\":\"BF16\",\"shape\":[7]");
    expect_fail(dir, LMP_EFORMAT, "need 14");
    /* wrong shape for the config (bytes consistent) */
    write_checkpoint(dir, "wfail", cfg, &c, 1);
    patch_text(st_path,
               "\"model.layers.1.mlp.up_proj.weight\":{\"dtype\":\"BF16\",\"shape\":[12,8]",
               "\"model.layers.1.mlp.up_proj.weight\":{\"dtype\":\"BF16\",\"shape\":[8,12]");
    expect_fail(dir, LMP_EFORMAT, "'model.layers.1.mlp.up_proj.weight' has shape (8, 12)");
    /* unsupported dtype for a needed tensor (same element size, so the file stays valid) */
    write_checkpoint(dir, "wfail", cfg, &c, 1);
    patch_text(st_path, "\"model.layers.0.self_attn.k_proj.weight\":{\"dtype\":\"BF16\"",
               "\"model.layers.0.self_attn.k_proj.weight\":{\"dtype\":\"I16\" ");
    expect_fail(dir, LMP_EUNSUP,
                "'model.layers.0.self_attn.k_proj.weight' has unsupported dtype I16");
    /* missing tensor */
    for (int i = 0; i < c.n; i++)
        if (!strcmp(c.t[i].name, "model.layers.1.self_attn.o_proj.weight")) c.t[i] = c.t[--c.n];
    write_checkpoint(dir, "wfail", cfg, &c, 1);
    expect_fail(dir, LMP_EFORMAT, "missing tensor 'model.layers.1.self_attn.o_proj.weight'");
    /* no weights at all */
    unlink(st_path);
    expect_fail(dir, LMP_ENOENT, "no model.safetensors");
    remove_checkpoint(dir);

    /* qwen2 without its q/k/v biases */
    make_tensors(&c, "llama", "F16", true);
    make_config(cfg, sizeof(cfg), "qwen2", false, NULL);
    write_checkpoint(dir, "wfail", cfg, &c, 1);
    expect_fail(dir, LMP_EFORMAT, "missing tensor 'model.layers.0.self_attn.q_proj.bias'");
    remove_checkpoint(dir);
    /* a bias the forward pass would not apply */
    make_tensors(&c, "llama", "F16", true);
    add(&c, "model.layers.0.self_attn.o_proj.bias", "F16", 1, DIM, 0);
    make_config(cfg, sizeof(cfg), "llama", false, NULL);
    write_checkpoint(dir, "wfail", cfg, &c, 1);
    expect_fail(dir, LMP_EUNSUP, "bias 'model.layers.0.self_attn.o_proj.bias'");
    remove_checkpoint(dir);
}

static void test_sharded_failures(void) {
    static struct checkpoint c;
    char                     cfg[1024], dir[512], p[600];
    make_config(cfg, sizeof(cfg), "mistral", false, NULL);
    make_tensors(&c, "mistral", "F32", true);
    write_checkpoint(dir, "shfail", cfg, &c, 2);

    /* the index names a shard that is not there */
    snprintf(p, sizeof(p), "%s/model-00002-of-00002.safetensors", dir);
    unlink(p);
    expect_fail(dir, LMP_ENOENT, "model-00002-of-00002.safetensors");
    /* the index maps a tensor to a file that does not contain it */
    write_checkpoint(dir, "shfail", cfg, &c, 2);
    snprintf(p, sizeof(p), "%s/model.safetensors.index.json", dir);
    {
        /* find which shard holds model.norm.weight and point it at the other */
        char   buf[8192];
        FILE  *f = fopen(p, "rb");
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n]  = '\0';
        char *h = strstr(buf, "\"model.norm.weight\":\"model-0000");
        CHECK(h != NULL);
        if (h) {
            h += strlen("\"model.norm.weight\":\"model-0000");
            char other = *h == '1' ? '2' : '1';
            patch(p, h - buf, &other, 1);
        }
    }
    expect_fail(dir, LMP_EFORMAT, "tensor 'model.norm.weight' is not in");
    /* an index escaping the directory, or without a weight_map */
    write_text(p, "{\"weight_map\": {\"model.norm.weight\": \"../x.safetensors\"}}");
    expect_fail(dir, LMP_EFORMAT, "invalid file name");
    write_text(p, "{\"metadata\": {}}");
    expect_fail(dir, LMP_EFORMAT, "no weight_map");
    write_text(p, "{\"weight_map\": ");
    expect_fail(dir, LMP_EFORMAT, "no weight_map");
    /* a tensor present in two shards */
    write_checkpoint(dir, "shfail", cfg, &c, 2);
    int orig_shard = -1;
    for (int i = 0; i < c.n; i++)
        if (!strcmp(c.t[i].name, "model.norm.weight")) orig_shard = i % 2;
    CHECK(orig_shard >= 0);
    struct checkpoint *both = calloc(1, sizeof(*both)); /* the other shard, plus the norm */
    for (int i = 0; i < c.n; i++)
        if (i % 2 != orig_shard) both->t[both->n++] = c.t[i];
    add(both, "model.norm.weight", "F32", 1, DIM, 0);
    snprintf(p, sizeof(p), "%s/model-%05d-of-00002.safetensors", dir, 2 - orig_shard);
    write_safetensors(p, both, 0, 1);
    expect_fail(dir, LMP_EFORMAT, "tensor 'model.norm.weight' also in");
    free(both);
    remove_checkpoint(dir);
}

/* The SmolLM2-135M checkpoint converted to Hugging Face format, when present. */
static void test_smollm2_hf(void) {
    char dir[8192];
    snprintf(dir, sizeof(dir), "%s", check_cache_file(0, "models/smollm2-135m-hf"));
    char cfg[8300];
    snprintf(cfg, sizeof(cfg), "%s/config.json", dir);
    if (access(cfg, R_OK) != 0) {
        fprintf(stderr, "note: '%s' absent, SmolLM2 HF check not run\n", dir);
        return;
    }
    struct lmp_model *m   = NULL;
    struct lmp_err    err = {0};
    enum lmp_status   st  = lmp_model_open(dir, &m, &err);
    if (st != LMP_OK) fprintf(stderr, "smollm2: %s\n", err.msg);
    CHECK(st == LMP_OK);
    if (m == NULL) return;
    CHECK(m->cfg.format == LMP_FORMAT_HF && m->cfg.arch == LMP_ARCH_LLAMA);
    CHECK(m->cfg.n_layers == 30);
    CHECK(m->cfg.dim == 576);
    CHECK(m->cfg.n_heads == 9);
    CHECK(m->cfg.n_kv_heads == 3);
    CHECK(m->cfg.head_dim == 64);
    CHECK(m->cfg.hidden_dim == 1536);
    CHECK(m->cfg.vocab_size == 49152);
    CHECK(m->cfg.tied_embeddings && m->output == m->tok_emb);
    CHECK(m->cfg.rope == LMP_ROPE_HALF);
    CHECK(m->cfg.rope_theta == 100000.0f);
    CHECK_NEAR(m->cfg.norm_eps, 1e-5, 1e-9);
    CHECK(m->cfg.max_seq == 8192);
    float row[576];
    lmp_tensor_rows_f32(m->tok_emb, 1000, 1, row);
    double ss = 0;
    for (int i = 0; i < 576; i++) ss += (double)row[i] * row[i];
    CHECK(ss > 0 && isfinite(ss));

    /* the same token's embedding in the GGUF release of the model (Q8_0 there) points
     * the same way: the HF reader found the right bytes */
    const char       *gguf = check_cache_file(1, CHECK_SMOLLM2_GGUF);
    struct lmp_model *g    = NULL;
    if (access(gguf, R_OK) == 0 && lmp_model_open(gguf, &g, &err) == LMP_OK) {
        float  grow[576];
        double dot = 0, gg = 0;
        lmp_tensor_rows_f32(g->tok_emb, 1000, 1, grow);
        for (int i = 0; i < 576; i++) {
            dot += (double)row[i] * grow[i];
            gg += (double)grow[i] * grow[i];
        }
        double cosine = dot / sqrt(ss * gg);
        fprintf(stderr, "smollm2: cosine of token 1000's embedding, HF vs GGUF: %.6f\n", cosine);
        CHECK(cosine > 0.9);
        lmp_model_close(&g);
    }
    lmp_model_close(&m);
}

int main(void) {
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof(tmpdir), "%s/lmp_hf_XXXXXX", base ? base : "/tmp");
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_reads_every_arch_dtype_and_layout);
    RUN(test_opens_via_file_inside_and_defaults);
    RUN(test_config_failures);
    RUN(test_weight_failures);
    RUN(test_sharded_failures);
    RUN(test_smollm2_hf);
    remove_checkpoint(tmpdir);
    return check_report();
}
