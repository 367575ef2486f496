/*  test_export_hf - lmpress export --format hf-aqlm on tiny artifacts: the safetensors
 *  layout, dtypes, shapes and values against the artifact (codes exactly, in aqlm's signed
 *  convention; codebooks, scales and tensors within float16 rounding; q/k rows permuted from
 *  interleaved RoPE), config.json and tokenizer.json; the exported model, decoded to dense
 *  weights and read back by lmpress's Hugging Face reader, computes the artifact model's
 *  logits; refusals (non-empty directory, incomplete artifact, a value beyond float16) and
 *  failures (full disk, unwritable directory) leave no half-written directory. */
#define _GNU_SOURCE /* mkdtemp */
#include "artifact/artifact.h"
#include "artifact/artifact_model.h" /* defines: lmp_artifact_model_open */
#include "artifact/export_hf.h"
#include "artifact/safetensors_write.h"
#include "base/file.h"         /* defines: lmp_map_open, lmp_file_read_all */
#include "kernels/kernels.h"   /* defines: lmp_f32_to_f16, lmp_f16_to_f32 */
#include "model/gguf.h"        /* defines: lmp_gguf_open */
#include "model/safetensors.h" /* defines: lmp_safetensors_parse_header */
#include "model/tokenizer.h"   /* defines: lmp_tokenizer_encode */
#include "model/transformer.h" /* defines: lmp_transformer_forward */
#include "tests/check.h"       /* defines: CHECK, RUN, check_report */
#include "tests/gguf_writer.h" /* defines: struct gw, gw_finish */
#include "tests/tiny_model.h"  /* defines: build, tiny_aq_encode, DIM, VOCAB, LAYERS */

#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[256];

static const char *tpath(int slot, const char *name) {
    static char buf[8][512];
    snprintf(buf[slot & 7], sizeof(buf[0]), "%s/%s", tmpdir, name);
    return buf[slot & 7];
}

static void rm_rf(const char *path) {
    char cmd[1200];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s' '%s.parts'", path, path);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", path);
}

/* A llama2.c tokenizer.bin of VOCAB tokens: <unk>, <s>, </s>, a..z, " ", " a".." t". */
static uint8_t *llama2c_tok(size_t *n) {
    uint8_t *b = calloc(1, 4096), *p = b + 4;
    int32_t  max_len = 8;
    memcpy(b, &max_len, 4);
    for (int i = 0; i < VOCAB; i++) {
        char s[16];
        if (i == 0)
            snprintf(s, sizeof(s), "<unk>");
        else if (i == 1)
            snprintf(s, sizeof(s), "\n<s>\n");
        else if (i == 2)
            snprintf(s, sizeof(s), "\n</s>\n");
        else if (i < 29)
            snprintf(s, sizeof(s), "%c", 'a' + (i - 3));
        else if (i == 29)
            snprintf(s, sizeof(s), " ");
        else
            snprintf(s, sizeof(s), " %c", 'a' + (i - 30));
        float   score = -(float)i;
        int32_t len   = (int32_t)strlen(s);
        memcpy(p, &score, 4);
        memcpy(p + 4, &len, 4);
        memcpy(p + 8, s, (size_t)len);
        p += 8 + len;
    }
    *n = (size_t)(p - b);
    return b;
}

enum { KEEP = LMP_LIN_COUNT + LMP_LIN_Q }; /* block 1's q_proj stays float */

struct art_opts {
    int         M, B, g;
    const char *scheme;
    bool        poison; /* one codebook entry beyond float16: a format-1 artifact (fp32
                           codebooks), since format 2 refuses to store it */
    bool incomplete;    /* the last linear is never committed, no finalize */
};

static void make_artifact(const char *path, const struct art_opts *o) {
    const struct spec sp = {
        .rope = LMP_ROPE_INTERLEAVED, .tied = false, .n_heads = 4, .n_kv_heads = 2};
    struct lmp_model  *m = build(&sp, 11);
    struct lmp_art_job job;
    struct lmp_err     err = {0};
    if (o->poison) lmp_artifact_set_write_version(1);
    lmp_art_job_init(&job);
    CHECK(lmp_art_job_from_model(&job, m) == LMP_OK);
    snprintf(job.method, sizeof(job.method), "aqlm");
    snprintf(job.scheme, sizeof(job.scheme), "%s", o->scheme);
    job.calib_fp = 42;
    CHECK(lmp_art_job_set_text(&job.calib_desc, "test_export_hf") == LMP_OK);
    rm_rf(path);
    struct lmp_artifact *a = NULL;
    CHECK(lmp_artifact_open_write(path, &job, &a, &err) == LMP_OK);
    int64_t n_lin = lmp_model_n_linears(m);
    bool    q[LAYERS * LMP_LIN_COUNT];
    for (int64_t i = 0; i < n_lin; i++) q[i] = i != KEEP;
    CHECK(lmp_artifact_put_model_tensors(a, m, q, false, &err) == LMP_OK);
    size_t   nt  = 0;
    uint8_t *tok = llama2c_tok(&nt);
    CHECK(lmp_artifact_put_tokenizer(a, LMP_ART_TOK_LLAMA2C, tok, nt, &err) == LMP_OK);
    free(tok);
    for (int64_t i = 0; i < n_lin - (o->incomplete ? 1 : 0); i++) {
        if (!q[i]) continue;
        const struct lmp_linear *l = lmp_model_linear(m, i);
        struct lmp_art_layer     L;
        memset(&L, 0, sizeof(L));
        snprintf(L.name, sizeof(L.name), "%s", l->name);
        L.codec = LMP_ART_CODEC_AQ, L.n_out = l->n_out, L.n_in = l->n_in;
        L.M = o->M, L.B = o->B, L.g = o->g;
        float *W    = malloc((size_t)(l->n_out * l->n_in) * sizeof(float));
        L.codes     = calloc((size_t)lmp_art_layer_n_codes(&L), sizeof(uint16_t)); /* beam start */
        L.codebooks = malloc((size_t)lmp_art_layer_n_codebooks(&L) * sizeof(float));
        L.scales    = malloc((size_t)l->n_out * sizeof(float));
        lmp_tensor_rows_f32(l->weight, 0, l->n_out, W);
        tiny_aq_encode(W, l->n_out, l->n_in, o->M, 1 << o->B, o->g, L.codes, L.codebooks, L.scales,
                       (uint64_t)i + 3);
        if (o->poison && i == 2) L.codebooks[5] = 1e5f;
        CHECK(lmp_artifact_commit_layer(a, &L, &err) == LMP_OK);
        free(W);
        lmp_art_layer_release(&L);
    }
    if (!o->incomplete) CHECK(lmp_artifact_finalize(a, &err) == LMP_OK);
    lmp_artifact_set_write_version(LMP_ARTIFACT_FORMAT_VERSION);
    if (err.msg[0]) fprintf(stderr, "make_artifact: %s\n", err.msg);
    lmp_artifact_close(&a);
    lmp_art_job_release(&job);
    lmp_model_close(&m);
}

/* No OUT.tmp-* or OUT.old-* left in tmpdir. */
static bool no_leftovers(void) {
    DIR *d = opendir(tmpdir);
    if (d == NULL) return false;
    bool           ok = true;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (strstr(de->d_name, ".tmp-") || strstr(de->d_name, ".old-")) {
            fprintf(stderr, "leftover %s\n", de->d_name);
            ok = false;
        }
    closedir(d);
    return ok;
}

static float f16r(float x) {
    return lmp_f16_to_f32(lmp_f32_to_f16(x));
}

struct st_file {
    struct lmp_map         map;
    struct lmp_safetensors st;
};

static bool st_open(struct st_file *f, const char *dir) {
    memset(f, 0, sizeof(*f));
    char           p[4200];
    struct lmp_err err = {0};
    snprintf(p, sizeof(p), "%s/model.safetensors", dir);
    if (lmp_map_open(&f->map, p, &err) != LMP_OK) return false;
    if (lmp_safetensors_parse_header(f->map.data, f->map.size, p, &f->st, &err) != LMP_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return false;
    }
    return true;
}

static void st_close(struct st_file *f) {
    lmp_safetensors_release(&f->st);
    lmp_map_close(&f->map);
}

static const void *st_data(const struct st_file *f, const struct lmp_st_tensor *t) {
    return f->map.data + f->st.data_offset + t->begin;
}

static const struct lmp_st_tensor *expect(const struct st_file *f, const char *name,
                                          const char *dtype, int n_dims, int64_t d0, int64_t d1,
                                          int64_t d2, int64_t d3) {
    const struct lmp_st_tensor *t = lmp_safetensors_find(&f->st, name);
    if (t == NULL) {
        fprintf(stderr, "missing %s\n", name);
        CHECK(t != NULL);
        return NULL;
    }
    const int64_t d[4] = {d0, d1, d2, d3};
    bool          ok   = strcmp(t->dtype_name, dtype) == 0 && t->n_dims == n_dims;
    for (int k = 0; ok && k < n_dims; k++) ok = t->shape[k] == d[k];
    if (!ok) fprintf(stderr, "%s: %s rank %d\n", name, t->dtype_name, t->n_dims);
    CHECK(ok);
    int esz = strcmp(dtype, "I8") == 0 ? 1 : 2;
    CHECK(t->begin % (uint64_t)esz == 0); /* aligned: no torch copy needed */
    return ok ? t : NULL;
}

/* Every tensor of the export against the artifact. */
static void check_values(const char *art, const char *dir, const struct art_opts *o) {
    struct st_file f;
    CHECK(st_open(&f, dir));
    CHECK(f.st.data_offset % 8 == 0);
    struct lmp_artifact *a   = NULL;
    struct lmp_err       err = {0};
    CHECK(lmp_artifact_open_read(art, &a, &err) == LMP_OK);
    const struct lmp_art_job *job   = lmp_artifact_job(a);
    const int32_t             K     = 1 << o->B;
    int64_t                   n_neg = 0, n_checked = 0;
    for (int64_t i = 0; i < job->n_linears; i++) {
        const struct lmp_art_linear *jl   = &job->linears[i];
        bool                         rope = i % LMP_LIN_COUNT <= LMP_LIN_K;
        char                         nm[256];
        if (i == KEEP) {
            struct lmp_art_tensor t;
            snprintf(nm, sizeof(nm), "%s.weight", jl->name);
            CHECK(lmp_artifact_read_tensor(a, nm, &t, &err) == LMP_OK);
            const struct lmp_st_tensor *s = expect(&f, nm, "F16", 2, jl->n_out, jl->n_in, 0, 0);
            const uint16_t             *h = s ? st_data(&f, s) : NULL;
            const float                *w = t.data;
            for (int64_t r = 0; h && r < jl->n_out; r++) {
                int64_t hr = rope ? lmp_export_hf_rope_row(r, HD) : r;
                for (int64_t c = 0; c < jl->n_in; c++)
                    CHECK(lmp_f16_to_f32(h[hr * jl->n_in + c]) == f16r(w[r * jl->n_in + c]));
            }
            lmp_art_tensor_release(&t);
            continue;
        }
        struct lmp_art_layer L;
        CHECK(lmp_artifact_read_layer(a, jl->name, &L, &err) == LMP_OK);
        int64_t ng = L.n_in / L.g;
        snprintf(nm, sizeof(nm), "%s.codes", jl->name);
        const struct lmp_st_tensor *c =
            expect(&f, nm, o->B <= 8 ? "I8" : "I16", 3, L.n_out, ng, L.M, 0);
        snprintf(nm, sizeof(nm), "%s.codebooks", jl->name);
        const struct lmp_st_tensor *cb = expect(&f, nm, "F16", 4, L.M, K, 1, L.g);
        snprintf(nm, sizeof(nm), "%s.scales", jl->name);
        const struct lmp_st_tensor *sc = expect(&f, nm, "F16", 4, L.n_out, 1, 1, 1);
        for (int64_t r = 0; c && sc && r < L.n_out; r++) {
            int64_t hr = rope ? lmp_export_hf_rope_row(r, HD) : r;
            CHECK(lmp_f16_to_f32(((const uint16_t *)st_data(&f, sc))[hr]) == f16r(L.scales[r]));
            for (int64_t k = 0; k < ng * L.M; k++) {
                int32_t  v    = o->B <= 8 ? ((const int8_t *)st_data(&f, c))[hr * ng * L.M + k]
                                          : ((const int16_t *)st_data(&f, c))[hr * ng * L.M + k];
                uint16_t want = L.codes[r * ng * L.M + k];
                CHECK(((v % K) + K) % K == want);                       /* aqlm: v mod 2^B */
                CHECK(v == (want >= K / 2 ? (int32_t)want - K : want)); /* pack_int_data */
                n_neg += v < 0;
                n_checked++;
            }
        }
        for (int64_t k = 0; cb && k < (int64_t)L.M * K * L.g; k++)
            CHECK(lmp_f16_to_f32(((const uint16_t *)st_data(&f, cb))[k]) == f16r(L.codebooks[k]));
        lmp_art_layer_release(&L);
    }
    CHECK(n_checked > 0 && n_neg > 0); /* the signed convention was exercised */
    /* unquantized tensors */
    const char *names[] = {"model.embed_tokens.weight", "lm_head.weight", "model.norm.weight",
                           "model.layers.1.input_layernorm.weight",
                           "model.layers.0.post_attention_layernorm.weight"};
    for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
        struct lmp_art_tensor t;
        CHECK(lmp_artifact_read_tensor(a, names[k], &t, &err) == LMP_OK);
        int64_t                     n = t.n_dims == 2 ? t.shape[0] * t.shape[1] : t.shape[0];
        const struct lmp_st_tensor *s =
            expect(&f, names[k], "F16", t.n_dims, t.shape[0], t.n_dims == 2 ? t.shape[1] : 0, 0, 0);
        for (int64_t i = 0; s && i < n; i++)
            CHECK(lmp_f16_to_f32(((const uint16_t *)st_data(&f, s))[i]) ==
                  f16r(((const float *)t.data)[i]));
        lmp_art_tensor_release(&t);
    }
    lmp_artifact_close(&a);
    st_close(&f);
}

static cJSON *read_json(const char *dir, const char *name) {
    char   p[4200], *s = NULL;
    size_t n = 0;
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    if (lmp_file_read_all(p, &s, &n, NULL) != LMP_OK) return NULL;
    cJSON *j = cJSON_Parse(s);
    free(s);
    return j;
}

static int json_int(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? (int)v->valuedouble : -999;
}

static bool json_has_str(const cJSON *arr, const char *s) {
    const cJSON *it;
    cJSON_ArrayForEach(it,
                       arr) if (cJSON_IsString(it) && strcmp(it->valuestring, s) == 0) return true;
    return false;
}

static void check_json(const char *dir, const struct art_opts *o) {
    cJSON *c = read_json(dir, "config.json");
    CHECK(c != NULL);
    const cJSON *arch = cJSON_GetObjectItemCaseSensitive(c, "architectures");
    CHECK(json_has_str(arch, "LlamaForCausalLM"));
    CHECK(json_int(c, "hidden_size") == DIM && json_int(c, "intermediate_size") == HIDDEN);
    CHECK(json_int(c, "num_hidden_layers") == LAYERS && json_int(c, "vocab_size") == VOCAB);
    CHECK(json_int(c, "num_attention_heads") == 4 && json_int(c, "num_key_value_heads") == 2);
    CHECK(json_int(c, "head_dim") == HD && json_int(c, "bos_token_id") == 1 &&
          json_int(c, "eos_token_id") == 2);
    CHECK(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(c, "tie_word_embeddings")));
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(c, "quantization_config");
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(q, "quant_method");
    CHECK(cJSON_IsString(m) && strcmp(m->valuestring, "aqlm") == 0);
    CHECK(json_int(q, "num_codebooks") == o->M && json_int(q, "nbits_per_codebook") == o->B &&
          json_int(q, "in_group_size") == o->g && json_int(q, "out_group_size") == 1);
    const cJSON *keep = cJSON_GetObjectItemCaseSensitive(q, "linear_weights_not_to_quantize");
    CHECK(json_has_str(keep, "model.embed_tokens.weight") && json_has_str(keep, "lm_head.weight"));
    CHECK(json_has_str(keep, "lm_head"));
    CHECK(json_has_str(keep, "model.layers.1.self_attn.q_proj.weight"));
    CHECK(!json_has_str(keep, "model.layers.0.self_attn.q_proj.weight"));
    cJSON_Delete(c);

    cJSON       *t     = read_json(dir, "tokenizer.json");
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(t, "model");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    CHECK(cJSON_GetArraySize(vocab) == VOCAB);
    CHECK(json_int(vocab, "<s>") == 1 && json_int(vocab, "\xE2\x96\x81") == 29);
    CHECK(json_int(vocab, "\xE2\x96\x81"
                          "a") == 30);
    CHECK(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(model, "byte_fallback")));
    /* " a" (id 30) is the merge of U+2581 and "a" */
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    const cJSON *m0     = cJSON_GetArrayItem(merges, 0);
    CHECK(cJSON_GetArraySize(merges) == 20 && cJSON_GetArraySize(m0) == 2);
    CHECK(strcmp(cJSON_GetArrayItem(m0, 0)->valuestring, "\xE2\x96\x81") == 0 &&
          strcmp(cJSON_GetArrayItem(m0, 1)->valuestring, "a") == 0);
    cJSON_Delete(t);
    cJSON       *tc  = read_json(dir, "tokenizer_config.json");
    const cJSON *bos = cJSON_GetObjectItemCaseSensitive(tc, "bos_token");
    CHECK(cJSON_IsString(bos) && strcmp(bos->valuestring, "<s>") == 0);
    cJSON_Delete(tc);
}

/* Decode the export to a dense float32 Hugging Face directory (what transformers' aqlm
 * QuantizedLinear computes, W = scales * sum_m codebooks[m, codes mod 2^B]). */
static void dense_copy(const char *dir, const char *dense, int B) {
    struct st_file f;
    CHECK(st_open(&f, dir));
    CHECK(mkdir(dense, 0755) == 0);
    char   p[4200], *cfg = NULL;
    size_t n = 0;
    snprintf(p, sizeof(p), "%s/config.json", dir);
    CHECK(lmp_file_read_all(p, &cfg, &n, NULL) == LMP_OK);
    snprintf(p, sizeof(p), "%s/config.json", dense);
    FILE *fc = fopen(p, "w");
    CHECK(fc && fwrite(cfg, 1, n, fc) == n && fclose(fc) == 0);
    free(cfg);
    struct lmp_st_writer *w   = lmp_st_writer_new();
    struct lmp_err        err = {0};
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) {
            snprintf(p, sizeof(p), "%s/model.safetensors", dense);
            CHECK(lmp_st_writer_open(w, p, NULL, &err) == LMP_OK);
        }
        for (int64_t i = 0; i < f.st.n_tensors; i++) {
            const struct lmp_st_tensor *t = &f.st.tensors[i];
            char                        name[256];
            const char                 *dot = strrchr(t->name, '.');
            if (strcmp(dot, ".codebooks") == 0 || strcmp(dot, ".scales") == 0) continue;
            if (strcmp(dot, ".codes") == 0) {
                snprintf(name, sizeof(name), "%.*s", (int)(dot - t->name), t->name);
                char cbn[300], scn[300], wn[300];
                snprintf(cbn, sizeof(cbn), "%s.codebooks", name);
                snprintf(scn, sizeof(scn), "%s.scales", name);
                snprintf(wn, sizeof(wn), "%s.weight", name);
                const struct lmp_st_tensor *cb = lmp_safetensors_find(&f.st, cbn);
                const struct lmp_st_tensor *sc = lmp_safetensors_find(&f.st, scn);
                int64_t n_out = t->shape[0], ng = t->shape[1], M = t->shape[2], g = cb->shape[3];
                int64_t K = (int64_t)1 << B, shape[2] = {n_out, ng * g};
                if (pass == 0) {
                    CHECK(lmp_st_writer_add(w, wn, LMP_ST_F32, 2, shape, &err) == LMP_OK);
                    continue;
                }
                float          *W   = calloc((size_t)(n_out * ng * g), sizeof(float));
                const uint16_t *cbd = st_data(&f, cb), *scd = st_data(&f, sc);
                for (int64_t o = 0; o < n_out; o++)
                    for (int64_t j = 0; j < ng; j++)
                        for (int64_t m = 0; m < M; m++) {
                            int64_t k    = (o * ng + j) * M + m;
                            int32_t v    = B <= 8 ? ((const int8_t *)st_data(&f, t))[k]
                                                  : ((const int16_t *)st_data(&f, t))[k];
                            int64_t code = ((v % K) + K) % K;
                            for (int64_t e = 0; e < g; e++)
                                W[o * ng * g + j * g + e] +=
                                    lmp_f16_to_f32(scd[o]) *
                                    lmp_f16_to_f32(cbd[(m * K + code) * g + e]);
                        }
                CHECK(lmp_st_writer_write(w, W, (size_t)(n_out * ng * g) * 4, &err) == LMP_OK);
                free(W);
                continue;
            }
            int64_t ne = 1;
            for (int d = 0; d < t->n_dims; d++) ne *= t->shape[d];
            if (pass == 0) {
                CHECK(lmp_st_writer_add(w, t->name, LMP_ST_F32, t->n_dims, t->shape, &err) ==
                      LMP_OK);
                continue;
            }
            float *x = malloc((size_t)ne * 4);
            for (int64_t e = 0; e < ne; e++)
                x[e] = lmp_f16_to_f32(((const uint16_t *)st_data(&f, t))[e]);
            CHECK(lmp_st_writer_write(w, x, (size_t)ne * 4, &err) == LMP_OK);
            free(x);
        }
    }
    CHECK(lmp_st_writer_close(w, &err) == LMP_OK);
    if (err.msg[0]) fprintf(stderr, "dense_copy: %s\n", err.msg);
    lmp_st_writer_destroy(&w);
    st_close(&f);
}

/* Logits of tokens under model m. */
static float *logits_of(const struct lmp_model *m, const int32_t *tok, int64_t n) {
    struct lmp_transformer           *tf   = NULL;
    struct lmp_err                    err  = {0};
    const struct lmp_transformer_opts opts = {.n_threads = 1};
    CHECK(lmp_transformer_new(m, &opts, &tf, &err) == LMP_OK);
    float *h = malloc((size_t)(n * DIM) * 4), *l = malloc((size_t)(n * VOCAB) * 4);
    CHECK(lmp_transformer_forward(tf, NULL, tok, 1, n, h, NULL, &err) == LMP_OK);
    lmp_transformer_logits(tf, h, n, l);
    free(h);
    lmp_transformer_destroy(&tf);
    return l;
}

static void check_forward(const char *art, const char *dir, int B) {
    const char *dense = tpath(5, "dense");
    rm_rf(dense);
    dense_copy(dir, dense, B);
    struct lmp_model *hf = NULL, *am = NULL;
    struct lmp_err    err = {0};
    CHECK(lmp_model_open(dense, &hf, &err) == LMP_OK);
    if (hf == NULL) {
        fprintf(stderr, "%s\n", err.msg);
        return;
    }
    CHECK(hf->cfg.rope == LMP_ROPE_HALF);
    CHECK(lmp_artifact_model_open(art, &am, NULL, &err) == LMP_OK);
    CHECK(am->cfg.rope == LMP_ROPE_INTERLEAVED);
    enum { N = 12 };
    int32_t tok[N];
    random_tokens(tok, N, VOCAB, 5);
    float *a = logits_of(am, tok, N), *b = logits_of(hf, tok, N);
    double diff = 0, mag = 0;
    for (int i = 0; i < N * VOCAB; i++) {
        diff = fmax(diff, fabs((double)a[i] - b[i]));
        mag  = fmax(mag, fabs((double)a[i]));
    }
    fprintf(stderr, "forward: max |logit| %.3g, max difference %.3g\n", mag, diff);
    CHECK(mag > 0.1 && diff < 2e-2 * mag); /* float16 rounding only */
    free(a);
    free(b);
    lmp_model_close(&hf);
    lmp_model_close(&am);
    rm_rf(dense);
}

static void export_and_check(const struct art_opts *o) {
    const char *art = tpath(0, "a.h5"), *out = tpath(1, "out");
    make_artifact(art, o);
    rm_rf(out);
    struct lmp_err              err = {0};
    struct lmp_export_hf_result r;
    enum lmp_status             st = lmp_export_hf(art, out, NULL, &r, &err);
    if (st != LMP_OK) fprintf(stderr, "export: %s\n", err.msg);
    CHECK(st == LMP_OK);
    CHECK(r.n_quantized == LAYERS * LMP_LIN_COUNT - 1 && r.n_kept == 1 && r.permuted_rope);
    CHECK(r.M == o->M && r.B == o->B && r.g == o->g);
    struct stat sb;
    mode_t      mask = umask(0);
    umask(mask);
    CHECK(stat(out, &sb) == 0 && (sb.st_mode & 0777) == (0777 & ~mask)); /* as mkdir makes it */
    check_values(art, out, o);
    check_json(out, o);
    check_forward(art, out, o->B);
    CHECK(no_leftovers());
    CHECK(lmp_artifact_n_open_ids() == 0);
}

static void test_export_2x8g8(void) {
    const struct art_opts o = {.M = 2, .B = 8, .g = 8, .scheme = "2x8g8"};
    export_and_check(&o);
}

static void test_export_1x12g4_int16(void) {
    const struct art_opts o = {.M = 1, .B = 12, .g = 4, .scheme = "1x12g4"};
    export_and_check(&o);
}

static void test_refusals_and_failures(void) {
    const struct art_opts o   = {.M = 2, .B = 5, .g = 4, .scheme = "2x5g4"};
    const char           *art = tpath(0, "r.h5"), *out = tpath(1, "rout");
    struct lmp_err        err = {0};
    make_artifact(art, &o);
    rm_rf(out);
    memset(&err, 0, sizeof(err)); /* the first error is kept */
    CHECK(lmp_export_hf(art, out, NULL, NULL, &err) == LMP_OK);

    /* an existing non-empty directory: refused, then replaced with force */
    char marker[4200];
    snprintf(marker, sizeof(marker), "%s/mine.txt", out);
    FILE *f = fopen(marker, "w");
    CHECK(f && fclose(f) == 0);
    memset(&err, 0, sizeof(err)); /* the first error is kept */
    CHECK(lmp_export_hf(art, out, NULL, NULL, &err) == LMP_EINVAL);
    CHECK(strstr(err.msg, "not empty") && strstr(err.msg, "--force"));
    CHECK(access(marker, F_OK) == 0);
    const struct lmp_export_hf_opts force = {.force = true};
    memset(&err, 0, sizeof(err)); /* the first error is kept */
    CHECK(lmp_export_hf(art, out, &force, NULL, &err) == LMP_OK);
    CHECK(access(marker, F_OK) != 0);
    check_values(art, out, &o);

    /* a full disk: one line naming the file, the old directory intact, nothing left */
    CHECK(access(marker, F_OK) != 0);
    f = fopen(marker, "w");
    CHECK(f && fclose(f) == 0);
    setenv("LMP_FAULT_WRITE_LIMIT", "2000", 1);
    memset(&err, 0, sizeof(err)); /* the first error is kept */
    CHECK(lmp_export_hf(art, out, &force, NULL, &err) == LMP_ENOSPC);
    unsetenv("LMP_FAULT_WRITE_LIMIT");
    fprintf(stderr, "full disk: %s\n", err.msg);
    CHECK(strstr(err.msg, "model.safetensors") != NULL && strchr(err.msg, '\n') == NULL);
    CHECK(access(marker, F_OK) == 0);
    CHECK(no_leftovers());
    const char *fresh = tpath(2, "fresh");
    rm_rf(fresh);
    setenv("LMP_FAULT_WRITE_LIMIT", "2000", 1);
    memset(&err, 0, sizeof(err)); /* the first error is kept */
    CHECK(lmp_export_hf(art, fresh, NULL, NULL, &err) == LMP_ENOSPC);
    unsetenv("LMP_FAULT_WRITE_LIMIT");
    CHECK(access(fresh, F_OK) != 0 && no_leftovers());

    /* an unwritable place (a regular file as the parent): one line, non-zero */
    memset(&err, 0, sizeof(err)); /* the first error is kept */
    CHECK(lmp_export_hf(art, tpath(3, "rout/mine.txt/x"), NULL, NULL, &err) == LMP_EIO);
    fprintf(stderr, "unwritable: %s\n", err.msg);
    CHECK(strstr(err.msg, "mine.txt/x") != NULL);
    memset(&err, 0, sizeof(err));                                      /* the first error is kept */
    CHECK(lmp_export_hf(art, marker, NULL, NULL, &err) == LMP_EINVAL); /* a file as OUT */

    /* a codebook value beyond float16, named */
    const struct art_opts p = {.M = 2, .B = 5, .g = 4, .scheme = "2x5g4", .poison = true};
    make_artifact(art, &p);
    rm_rf(fresh);
    memset(&err, 0, sizeof(err)); /* the first error is kept */
    CHECK(lmp_export_hf(art, fresh, NULL, NULL, &err) == LMP_EINVAL);
    fprintf(stderr, "beyond float16: %s\n", err.msg);
    CHECK(strstr(err.msg, "model.layers.0.self_attn.v_proj.codebooks") &&
          strstr(err.msg, "float16"));
    CHECK(access(fresh, F_OK) != 0 && no_leftovers());

    /* an unfinished job */
    const struct art_opts u = {.M = 2, .B = 5, .g = 4, .scheme = "2x5g4", .incomplete = true};
    make_artifact(art, &u);
    memset(&err, 0, sizeof(err)); /* the first error is kept */
    CHECK(lmp_export_hf(art, fresh, NULL, NULL, &err) == LMP_EINVAL);
    fprintf(stderr, "unfinished: %s\n", err.msg);
    CHECK(strstr(err.msg, "not complete") != NULL);
    CHECK(access(fresh, F_OK) != 0 && no_leftovers());
    CHECK(lmp_artifact_n_open_ids() == 0);
}

/* config.json by architecture: Phi-3 (split on read) is a llama block; a model with format
 * 3's fields (Gemma 3, Qwen3's q/k norms, scaled RoPE) is refused, not exported wrong. */
static void test_config_architectures(void) {
    struct lmp_config c    = {.arch       = LMP_ARCH_PHI3,
                              .n_layers   = 2,
                              .dim        = 16,
                              .hidden_dim = 32,
                              .n_heads    = 4,
                              .n_kv_heads = 2,
                              .head_dim   = 4,
                              .vocab_size = 40,
                              .max_seq    = 64,
                              .rope_theta = 10000,
                              .norm_eps   = 1e-5f,
                              .rope       = LMP_ROPE_HALF};
    char             *json = NULL;
    struct lmp_err    err  = {0};
    CHECK(lmp_export_hf_config(&c, 2, 8, 8, NULL, 0, 1, 2, &json, &err) == LMP_OK);
    cJSON *cj = json ? cJSON_Parse(json) : NULL;
    CHECK(cj != NULL);
    const cJSON *arch =
        cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(cj, "architectures"), 0);
    CHECK(cJSON_IsString(arch) && strcmp(arch->valuestring, "LlamaForCausalLM") == 0);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(cj, "model_type");
    CHECK(cJSON_IsString(type) && strcmp(type->valuestring, "llama") == 0);
    CHECK(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(cj, "attention_bias")));
    cJSON_Delete(cj);
    free(json);
    json                     = NULL;
    struct lmp_config scaled = c;
    scaled.arch              = LMP_ARCH_LLAMA;
    scaled.rope_scaling      = LMP_ROPE_SCALING_LLAMA3;
    scaled.rope_factor       = 8;
    memset(&err, 0, sizeof(err)); /* the first error is kept */
    CHECK(lmp_export_hf_config(&scaled, 2, 8, 8, NULL, 0, 1, 2, &json, &err) == LMP_EUNSUP);
    CHECK(json == NULL && strstr(err.msg, "format 3") != NULL);
    struct lmp_config qk = c;
    qk.arch              = LMP_ARCH_QWEN3;
    qk.qk_norm           = true;
    memset(&err, 0, sizeof(err));
    CHECK(lmp_export_hf_config(&qk, 2, 8, 8, NULL, 0, 1, 2, &json, &err) == LMP_EUNSUP);
    CHECK(json == NULL && strstr(err.msg, "qwen3") != NULL);
}

/* The GGUF gpt2 BPE tokenizer of SmolLM2 rebuilt as tokenizer.json encodes like the GGUF's
 * (lmpress reads tokenizer.json too), and its chat template reaches tokenizer_config.json. */
static void test_gguf_bpe_tokenizer(void) {
    const char *path = check_cache_file(0, CHECK_SMOLLM2_GGUF);
    if (!check_have_file(path)) return;
    struct lmp_gguf      *g   = NULL;
    struct lmp_tokenizer *ref = NULL, *got = NULL;
    struct lmp_err        err = {0};
    uint8_t              *img = NULL;
    size_t                n   = 0;
    CHECK(lmp_gguf_open(path, &g, &err) == LMP_OK);
    if (g == NULL) return;
    CHECK(lmp_tokenizer_from_gguf(g, &ref, &err) == LMP_OK);
    CHECK(lmp_gguf_tokenizer_image(g, &img, &n, &err) == LMP_OK);
    struct lmp_config       cfg = {.max_seq = 8192, .vocab_size = lmp_tokenizer_n_vocab(ref)};
    struct lmp_hf_tok_files tf;
    CHECK(lmp_export_hf_tokenizer(LMP_ART_TOK_GGUF, img, n, &cfg, NULL, &tf, &err) == LMP_OK);
    if (tf.tokenizer_json == NULL) {
        fprintf(stderr, "%s\n", err.msg);
        goto out;
    }
    CHECK(lmp_tokenizer_parse_hf(tf.tokenizer_json, strlen(tf.tokenizer_json), "exported", &got,
                                 &err) == LMP_OK);
    static const char text[] =
        "Hello, world! It's 2026: numbers 12345 and  spaces,\ttabs\nnew lines, caf\xC3\xA9, "
        "\xE4\xB8\xAD\xE6\x96\x87, <|im_start|>user\nHi<|im_end|> emoji \xF0\x9F\x98\x80.";
    int32_t *a = NULL, *b = NULL;
    int64_t  na = 0, nb = 0;
    CHECK(got && lmp_tokenizer_encode(ref, text, sizeof(text) - 1, true, &a, &na, &err) == LMP_OK);
    CHECK(got && lmp_tokenizer_encode(got, text, sizeof(text) - 1, true, &b, &nb, &err) == LMP_OK);
    CHECK(na > 20 && na == nb && a && b && memcmp(a, b, (size_t)na * sizeof(*a)) == 0);
    CHECK(lmp_tokenizer_n_vocab(got) == lmp_tokenizer_n_vocab(ref));
    cJSON       *c  = cJSON_Parse(tf.tokenizer_config_json);
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(c, "chat_template");
    CHECK(cJSON_IsString(ct) && strstr(ct->valuestring, "im_start") != NULL);
    cJSON_Delete(c);
    CHECK(tf.eos >= 0 && strstr(tf.how, "smollm") != NULL);
    /* the same file as a Hugging Face source: copied byte for byte, its config made or kept */
    struct lmp_hf_tok_files hf;
    const char             *js = tf.tokenizer_json;
    CHECK(lmp_export_hf_tokenizer(LMP_ART_TOK_HF, (const uint8_t *)js, strlen(js), &cfg, NULL, &hf,
                                  &err) == LMP_OK);
    CHECK(hf.tokenizer_json && strcmp(hf.tokenizer_json, js) == 0);
    CHECK(hf.tokenizer_config_json && strstr(hf.tokenizer_config_json, "PreTrainedTokenizerFast"));
    lmp_hf_tok_files_release(&hf);
    static const char own[] = "{\"eos_token\": \"<|endoftext|>\", \"chat_template\": \"x\"}";
    CHECK(lmp_export_hf_tokenizer(LMP_ART_TOK_HF, (const uint8_t *)js, strlen(js), &cfg, own, &hf,
                                  &err) == LMP_OK);
    CHECK(hf.tokenizer_config_json && strcmp(hf.tokenizer_config_json, own) == 0);
    CHECK(hf.eos == 0); /* the config's eos_token, <|endoftext|>, id 0 in SmolLM2 */
    lmp_hf_tok_files_release(&hf);
    if (getenv("LMP_EXPORT_TOKENIZER_JSON")) { /* for a check with Python's tokenizers */
        FILE *f = fopen(getenv("LMP_EXPORT_TOKENIZER_JSON"), "w");
        if (f) fputs(tf.tokenizer_json, f), fclose(f);
    }
    free(a);
    free(b);
out:
    lmp_hf_tok_files_release(&tf);
    lmp_tokenizer_free(&got);
    lmp_tokenizer_free(&ref);
    free(img);
    lmp_gguf_close(&g);
}

/* A GGUF "llama" (SentencePiece) tokenizer gives the same tokenizer.json as the llama2.c
 * tokenizer.bin it was made from (tok512: spaces as U+2581, <s> and </s> named plainly). */
static void test_gguf_spm_tokenizer(void) {
    const char *bin = LMP_SHARED_DIR "/models/stories260K/tok512.bin";
    if (!check_have_file(bin)) return;
    struct lmp_map map;
    struct lmp_err err = {0};
    CHECK(lmp_map_open(&map, bin, &err) == LMP_OK);
    enum { NV = 512 };
    static char   *tok[NV];
    static float   score[NV];
    static int32_t type[NV];
    size_t         pos = 4;
    for (int i = 0; i < NV; i++) {
        int32_t len;
        memcpy(&score[i], map.data + pos, 4);
        memcpy(&len, map.data + pos + 4, 4);
        pos += 8;
        char *t = calloc(3 * (size_t)len + 8, 1), *d = t;
        for (int k = 0; k < len; k++) {
            char c = (char)map.data[pos + (size_t)k];
            if (c == ' ')
                memcpy(d, "\xE2\x96\x81", 3), d += 3;
            else
                *d++ = c;
        }
        pos += (size_t)len;
        if (i == 1) strcpy(t, "<s>");
        if (i == 2) strcpy(t, "</s>");
        tok[i]  = t;
        type[i] = i == 0 ? 2 : i <= 2 ? 3 : (strncmp(t, "<0x", 3) == 0 && strlen(t) == 6) ? 6 : 1;
    }
    struct gw w;
    gw_init(&w);
    gw_kv_str(&w, "tokenizer.ggml.model", "llama");
    gw_kv_arr_str(&w, "tokenizer.ggml.tokens", (const char *const *)tok, NV);
    gw_kv_arr_f32(&w, "tokenizer.ggml.scores", score, NV);
    gw_kv_arr_i32(&w, "tokenizer.ggml.token_type", type, NV);
    gw_kv_u32(&w, "tokenizer.ggml.bos_token_id", 1);
    gw_kv_u32(&w, "tokenizer.ggml.eos_token_id", 2);
    gw_kv_u32(&w, "tokenizer.ggml.unknown_token_id", 0);
    gw_kv_bool(&w, "tokenizer.ggml.add_bos_token", 1);
    gw_kv_str(&w, "tokenizer.chat_template", "{{ messages }}");
    struct gw_buf           img = gw_finish(&w, 3);
    struct lmp_config       cfg = {.max_seq = 512, .vocab_size = NV};
    struct lmp_hf_tok_files a, b;
    CHECK(lmp_export_hf_tokenizer(LMP_ART_TOK_LLAMA2C, map.data, map.size, &cfg, NULL, &a, &err) ==
          LMP_OK);
    CHECK(lmp_export_hf_tokenizer(LMP_ART_TOK_GGUF, img.p, img.n, &cfg, NULL, &b, &err) == LMP_OK);
    if (err.msg[0]) fprintf(stderr, "%s\n", err.msg);
    CHECK(a.tokenizer_json && b.tokenizer_json && strcmp(a.tokenizer_json, b.tokenizer_json) == 0);
    CHECK(a.bos == 1 && b.bos == 1 && a.eos == 2 && b.eos == 2);
    CHECK(b.tokenizer_config_json && strstr(b.tokenizer_config_json, "{{ messages }}"));
    CHECK(a.tokenizer_config_json && !strstr(a.tokenizer_config_json, "chat_template"));
    lmp_hf_tok_files_release(&a);
    lmp_hf_tok_files_release(&b);
    for (int i = 0; i < NV; i++) free(tok[i]);
    free(img.p);
    lmp_map_close(&map);
}

static void test_rope_row_and_code(void) {
    /* head_dim 6: source rows (0,1) (2,3) (4,5) are pairs; HF puts pair i at (i, i+3) */
    const int64_t want[12] = {0, 3, 1, 4, 2, 5, 6, 9, 7, 10, 8, 11};
    for (int r = 0; r < 12; r++) CHECK(lmp_export_hf_rope_row(r, 6) == want[r]);
    CHECK(lmp_export_hf_code(0, 8) == 0 && lmp_export_hf_code(127, 8) == 127);
    CHECK(lmp_export_hf_code(128, 8) == -128 && lmp_export_hf_code(255, 8) == -1);
    CHECK(lmp_export_hf_code(9, 4) == -7 && lmp_export_hf_code(65535, 16) == -1);
}

int main(void) {
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/lmp_test_export_hf.XXXXXX");
    if (mkdtemp(tmpdir) == NULL) return 1;
    RUN(test_rope_row_and_code);
    RUN(test_export_2x8g8);
    RUN(test_export_1x12g4_int16);
    RUN(test_refusals_and_failures);
    RUN(test_config_architectures);
    RUN(test_gguf_bpe_tokenizer);
    RUN(test_gguf_spm_tokenizer);
    int rc = check_report();
    if (rc == 0) rm_rf(tmpdir);
    return rc;
}
