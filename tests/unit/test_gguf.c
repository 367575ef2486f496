/*  test_gguf - the GGUF reader, the GGUF model reader and the dequant kernels
 *
 *  Synthetic v2/v3 files (tests/gguf_writer.h) with every metadata type and every
 *  supported tensor type are read back value by value; a tiny llama/mistral/qwen2 model
 *  goes through lmp_model_open; corrupt images (every truncation point, absurd counts,
 *  overflowing lengths, bad offsets, unsupported types, missing or misshapen tensors)
 *  must fail cleanly with a message naming the problem. The AVX-512 dequant variant
 *  must be bit-identical to the reference. The real model: test_gguf_smollm2.c.
 */
#include "model/gguf.h"
#include "model/model.h"
#include "kernels/kernels.h"   /* defines: lmp_kernels_init_ref/best, f16 conversions */
#include "tests/check.h"       /* defines: CHECK, RUN, check_report */
#include "tests/gguf_writer.h" /* defines: struct gw, gw_finish() */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char tmpdir[256];

static const char *write_file(const char *name, const struct gw_buf *b) {
    static char path[4][512];
    static int  slot;
    char       *p = path[slot++ & 3];
    snprintf(p, 512, "%s/%s", tmpdir, name);
    FILE *f = fopen(p, "wb");
    if (f == NULL || fwrite(b->p, 1, b->n, f) != b->n) abort();
    fclose(f);
    return p;
}

static uint64_t rng_state = 1;
static uint32_t rnd(void) {
    rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}
static float rnd_f(float lo, float hi) {
    return lo + (hi - lo) * (float)(rnd() % 100000) / 1e5f;
}

/* Random tensor data of `type` (GW_*) with rows x cols elements, and its fp32 values
 * computed here from the format's definition. Caller frees both. */
static void make_data(uint32_t type, int64_t rows, int64_t cols, uint8_t **data, size_t *nbytes,
                      float **want) {
    int64_t n   = rows * cols;
    *want       = malloc((size_t)n * sizeof(float));
    size_t   sz = type == GW_F32                      ? 4 * n
                  : type == GW_F16 || type == GW_BF16 ? 2 * n
                  : type == GW_Q8_0                   ? n / 32 * 34
                  : type == GW_Q4_0                   ? n / 32 * 18
                                                      : n / 32 * 20;
    uint8_t *p  = malloc(sz);
    *data = p, *nbytes = sz;
    for (int64_t i = 0; i < n; i++) {
        float x = rnd_f(-2, 2);
        switch (type) {
        case GW_F32:
            memcpy(p + 4 * i, &x, 4);
            (*want)[i] = x;
            break;
        case GW_F16: {
            uint16_t h = lmp_f32_to_f16(x);
            p[2 * i] = (uint8_t)h, p[2 * i + 1] = (uint8_t)(h >> 8);
            (*want)[i] = lmp_f16_to_f32(h);
            break;
        }
        case GW_BF16: {
            uint16_t h = lmp_f32_to_bf16(x);
            p[2 * i] = (uint8_t)h, p[2 * i + 1] = (uint8_t)(h >> 8);
            (*want)[i] = lmp_bf16_to_f32(h);
            break;
        }
        default:
            break;
        }
    }
    if (type == GW_F32 || type == GW_F16 || type == GW_BF16) return;
    int bsz = type == GW_Q8_0 ? 34 : type == GW_Q4_0 ? 18 : 20;
    for (int64_t b = 0; b < n / 32; b++) {
        uint8_t *q = p + b * bsz;
        uint16_t d = lmp_f32_to_f16(rnd_f(0.01f, 0.2f)), m = lmp_f32_to_f16(rnd_f(-1, 0));
        float    df = lmp_f16_to_f32(d), mf = lmp_f16_to_f32(m);
        q[0] = (uint8_t)d, q[1] = (uint8_t)(d >> 8);
        float *w = *want + b * 32;
        if (type == GW_Q8_0) {
            for (int i = 0; i < 32; i++) {
                int8_t v = (int8_t)(rnd() % 255 - 127);
                q[2 + i] = (uint8_t)v;
                w[i]     = df * v;
            }
        } else if (type == GW_Q4_0) {
            for (int i = 0; i < 16; i++) {
                uint8_t lo = rnd() & 15, hi = rnd() & 15;
                q[2 + i] = (uint8_t)(lo | hi << 4);
                w[i] = df * (lo - 8), w[i + 16] = df * (hi - 8);
            }
        } else {
            q[2] = (uint8_t)m, q[3] = (uint8_t)(m >> 8);
            for (int i = 0; i < 16; i++) {
                uint8_t lo = rnd() & 15, hi = rnd() & 15;
                q[4 + i] = (uint8_t)(lo | hi << 4);
                w[i] = df * lo + mf, w[i + 16] = df * hi + mf;
            }
        }
    }
}

/* Add a tensor of `type` with shape (rows, cols) (outermost first); returns its values. */
static float *add_tensor(struct gw *w, const char *name, uint32_t type, int64_t rows,
                         int64_t cols) {
    uint8_t *data;
    size_t   nbytes;
    float   *want;
    make_data(type, rows ? rows : 1, cols, &data, &nbytes, &want);
    if (rows == 0)
        gw_tensor(w, name, type, 1, (uint64_t[]){(uint64_t)cols}, data, nbytes);
    else
        gw_tensor(w, name, type, 2, (uint64_t[]){(uint64_t)cols, (uint64_t)rows}, data, nbytes);
    free(data);
    return want;
}

/* Does t hold exactly `want` (n_rows x n_cols)? */
static int tensor_matches(const struct lmp_tensor *t, const float *want) {
    int64_t n   = lmp_tensor_n_elem(t);
    float  *got = malloc((size_t)n * sizeof(float));
    lmp_tensor_rows_f32(t, 0, lmp_tensor_n_rows(t), got);
    int ok = 1;
    for (int64_t i = 0; i < n; i++)
        if (!(fabsf(got[i] - want[i]) <= 1e-6f * (1 + fabsf(want[i])))) ok = 0;
    free(got);
    return ok;
}

static int str_is(struct lmp_gguf_str s, const char *want) {
    return s.s != NULL && s.len == strlen(want) && memcmp(s.s, want, s.len) == 0;
}

/* ---- metadata and tensors of every type, v2 and v3 ------------------------------ */

static void check_roundtrip(uint32_t version, uint32_t align) {
    static const uint32_t       types[]  = {GW_F32, GW_F16, GW_BF16, GW_Q8_0, GW_Q4_0, GW_Q4_1};
    static const enum lmp_dtype dtypes[] = {LMP_DTYPE_F32,  LMP_DTYPE_F16,  LMP_DTYPE_BF16,
                                            LMP_DTYPE_Q8_0, LMP_DTYPE_Q4_0, LMP_DTYPE_Q4_1};
    struct gw                   w;
    gw_init(&w);
    gw_kv_u8(&w, "t.u8", 250);
    gw_kv_i8(&w, "t.i8", -100);
    gw_kv_u16(&w, "t.u16", 65000);
    gw_kv_i16(&w, "t.i16", -30000);
    gw_kv_u32(&w, "t.u32", 4000000000u);
    gw_kv_i32(&w, "t.i32", -2000000000);
    gw_kv_f32(&w, "t.f32", 0.15625f);
    gw_kv_bool(&w, "t.bool", 1);
    gw_kv_str(&w, "t.str", "héllo");
    gw_kv_u64(&w, "t.u64_big", UINT64_MAX);
    gw_kv_u64(&w, "t.u64", 1ull << 40);
    gw_kv_i64(&w, "t.i64", -(1ll << 50));
    gw_kv_f64(&w, "t.f64", 1e-300);
    gw_kv_arr_i32(&w, "t.arr_i32", (int32_t[]){7, -8, 9}, 3);
    gw_kv_arr_f32(&w, "t.arr_f32", (float[]){0.5f, -1.5f}, 2);
    gw_kv_arr_str(&w, "t.arr_str", (const char *[]){"a", "", "token three"}, 3);
    gw_kv_arr_str(&w, "t.arr_empty", NULL, 0);
    if (align != 32) {
        gw_kv_u32(&w, "general.alignment", align);
        w.align = align;
    }
    float *want[6];
    for (int i = 0; i < 6; i++) {
        char name[32];
        snprintf(name, sizeof(name), "tensor.%s", lmp_dtype_name(dtypes[i]));
        want[i] = add_tensor(&w, name, types[i], 3, 64);
    }
    float        *want1d = add_tensor(&w, "vec", GW_F32, 0, 5); /* 1-D, odd length */
    int64_t       n_kv   = (int64_t)w.n_kv;
    struct gw_buf img    = gw_finish(&w, version);
    char          fname[64];
    snprintf(fname, sizeof(fname), "all_v%u_a%u.gguf", version, align);
    const char *path = write_file(fname, &img);

    struct lmp_gguf *g   = NULL;
    struct lmp_err   err = {0};
    CHECK(lmp_gguf_open(path, &g, &err) == LMP_OK);
    if (g == NULL) {
        fprintf(stderr, "  %s\n", err.msg);
        goto out;
    }
    CHECK(lmp_gguf_version(g) == version);
    CHECK(strcmp(lmp_gguf_path(g), path) == 0);
    CHECK(lmp_gguf_n_kv(g) == n_kv);
    CHECK(str_is(lmp_gguf_key(g, 0), "t.u8"));
    CHECK(str_is(lmp_gguf_key(g, 8), "t.str"));
    CHECK(lmp_gguf_key(g, n_kv).s == NULL);
    CHECK(lmp_gguf_find(g, "t.f64") == 12);
    CHECK(lmp_gguf_find(g, "t.f6") == -1);
    CHECK(lmp_gguf_kv_type(g, 7) == LMP_GGUF_BOOL);
    CHECK(lmp_gguf_kv_type(g, 13) == LMP_GGUF_ARRAY);

    int64_t             i64 = 0;
    double              f64 = 0;
    bool                b   = false;
    struct lmp_gguf_str s;
    CHECK(lmp_gguf_get_i64(g, "t.u8", &i64) && i64 == 250);
    CHECK(lmp_gguf_get_i64(g, "t.i8", &i64) && i64 == -100);
    CHECK(lmp_gguf_get_i64(g, "t.u16", &i64) && i64 == 65000);
    CHECK(lmp_gguf_get_i64(g, "t.i16", &i64) && i64 == -30000);
    CHECK(lmp_gguf_get_i64(g, "t.u32", &i64) && i64 == 4000000000ll);
    CHECK(lmp_gguf_get_i64(g, "t.i32", &i64) && i64 == -2000000000);
    CHECK(lmp_gguf_get_i64(g, "t.u64", &i64) && i64 == 1ll << 40);
    CHECK(lmp_gguf_get_i64(g, "t.i64", &i64) && i64 == -(1ll << 50));
    CHECK(!lmp_gguf_get_i64(g, "t.u64_big", &i64)); /* does not fit */
    CHECK(!lmp_gguf_get_i64(g, "t.f32", &i64));
    CHECK(!lmp_gguf_get_i64(g, "t.str", &i64));
    CHECK(!lmp_gguf_get_i64(g, "absent", &i64));
    CHECK(lmp_gguf_get_f64(g, "t.f32", &f64) && f64 == 0.15625);
    CHECK(lmp_gguf_get_f64(g, "t.f64", &f64) && f64 == 1e-300);
    CHECK(!lmp_gguf_get_f64(g, "t.i32", &f64));
    CHECK(lmp_gguf_get_bool(g, "t.bool", &b) && b);
    CHECK(!lmp_gguf_get_bool(g, "t.u8", &b));
    CHECK(lmp_gguf_get_str(g, "t.str", &s) && str_is(s, "héllo"));
    CHECK(!lmp_gguf_get_str(g, "t.arr_str", &s));

    enum lmp_gguf_type elem;
    CHECK(lmp_gguf_arr_n(g, "t.arr_i32", &elem) == 3 && elem == LMP_GGUF_INT32);
    const uint8_t *ai = lmp_gguf_arr_data(g, "t.arr_i32");
    int32_t        ai1;
    CHECK(ai != NULL);
    if (ai) {
        memcpy(&ai1, ai + 4, 4);
        CHECK(ai1 == -8);
    }
    CHECK(lmp_gguf_arr_n(g, "t.arr_f32", &elem) == 2 && elem == LMP_GGUF_FLOAT32);
    const uint8_t *af  = lmp_gguf_arr_data(g, "t.arr_f32");
    float          af1 = 0;
    if (af) memcpy(&af1, af + 4, 4);
    CHECK(af1 == -1.5f);
    CHECK(lmp_gguf_arr_n(g, "t.arr_str", &elem) == 3 && elem == LMP_GGUF_STRING);
    CHECK(lmp_gguf_arr_data(g, "t.arr_str") == NULL);
    CHECK(str_is(lmp_gguf_arr_str(g, "t.arr_str", 0), "a"));
    CHECK(lmp_gguf_arr_str(g, "t.arr_str", 1).len == 0 && lmp_gguf_arr_str(g, "t.arr_str", 1).s);
    CHECK(str_is(lmp_gguf_arr_str(g, "t.arr_str", 2), "token three"));
    CHECK(lmp_gguf_arr_str(g, "t.arr_str", 3).s == NULL);
    CHECK(lmp_gguf_arr_str(g, "t.arr_str", -1).s == NULL);
    CHECK(lmp_gguf_arr_str(g, "t.arr_i32", 0).s == NULL);
    CHECK(lmp_gguf_arr_n(g, "t.arr_empty", &elem) == 0);
    CHECK(lmp_gguf_arr_n(g, "t.u8", &elem) == -1);
    CHECK(lmp_gguf_arr_n(g, "absent", NULL) == -1);

    CHECK(lmp_gguf_n_tensors(g) == 7);
    for (int i = 0; i < 6; i++) {
        const struct lmp_tensor *t = lmp_gguf_tensor(g, i);
        CHECK(t->dtype == dtypes[i]);
        CHECK(t->n_dims == 2 && t->shape[0] == 3 && t->shape[1] == 64);
        CHECK((int64_t)t->nbytes == lmp_tensor_expected_bytes(t->dtype, 2, t->shape));
        CHECK((uintptr_t)t->data % align == 0); /* the map is page-aligned */
        CHECK(lmp_gguf_find_tensor(g, t->name) == t);
        CHECK(tensor_matches(t, want[i]));
    }
    const struct lmp_tensor *v = lmp_gguf_find_tensor(g, "vec");
    CHECK(v && v->n_dims == 1 && v->shape[0] == 5 && tensor_matches(v, want1d));
    CHECK(lmp_gguf_find_tensor(g, "ve") == NULL);
    CHECK(lmp_gguf_tensor(g, 7) == NULL && lmp_gguf_tensor(g, -1) == NULL);
out:
    lmp_gguf_close(&g);
    CHECK(g == NULL);
    lmp_gguf_close(&g);
    for (int i = 0; i < 6; i++) free(want[i]);
    free(want1d);
    free(img.p);
}

static void test_gguf_roundtrip_v3(void) {
    check_roundtrip(3, 32);
}
static void test_gguf_roundtrip_v2(void) {
    check_roundtrip(2, 32);
}
static void test_gguf_roundtrip_alignment_64(void) {
    check_roundtrip(3, 64);
}

/* ---- tiny models ------------------------------------------------------------------ */

enum { T_LAYERS = 2, T_DIM = 64, T_HEADS = 4, T_KV = 2, T_HID = 96, T_VOCAB = 40, T_HD = 16 };

struct tiny_opts {
    const char *arch;
    const char *skip;      /* tensor to leave out */
    const char *misshape;  /* tensor written with one row too many */
    bool        output;    /* untied output.weight */
    bool        bias;      /* q/k/v biases */
    bool        iq4;       /* an extra tensor of an unsupported type */
    bool        no_layers; /* leave out <arch>.block_count */
    int         heads, kv; /* head counts written (0: T_HEADS, T_KV) */
};

/* Writes the model file; *emb gets the token embedding values (caller frees). */
static const char *write_tiny(const char *fname, const struct tiny_opts *o, float **emb) {
    struct gw w;
    gw_init(&w);
    char        key[96];
    const char *a = o->arch;
    gw_kv_str(&w, "general.architecture", a);
    gw_kv_str(&w, "general.name", "tiny");
#define KEY(suffix) (snprintf(key, sizeof(key), "%s.%s", a, suffix), key)
    if (!o->no_layers) gw_kv_u32(&w, KEY("block_count"), T_LAYERS);
    gw_kv_u32(&w, KEY("embedding_length"), T_DIM);
    gw_kv_u64(&w, KEY("feed_forward_length"), T_HID); /* any integer type is accepted */
    gw_kv_u32(&w, KEY("attention.head_count"), o->heads ? (uint32_t)o->heads : T_HEADS);
    gw_kv_u32(&w, KEY("attention.head_count_kv"), o->kv ? (uint32_t)o->kv : T_KV);
    gw_kv_u32(&w, KEY("context_length"), 256);
    gw_kv_f32(&w, KEY("rope.freq_base"), 500000.0f);
    gw_kv_f32(&w, KEY("attention.layer_norm_rms_epsilon"), 1e-6f);
#undef KEY
    const char *toks[T_VOCAB];
    char        tokbuf[T_VOCAB][8];
    for (int i = 0; i < T_VOCAB; i++) snprintf(tokbuf[i], 8, "t%d", i), toks[i] = tokbuf[i];
    gw_kv_arr_str(&w, "tokenizer.ggml.tokens", toks, T_VOCAB);

    struct {
        const char *name;
        uint32_t    type;
        int64_t     rows, cols;
    } ts[64];
    int n = 0;
#define T(nm, ty, r, c)                                                                            \
    (ts[n].name = strdup(nm), ts[n].type = ty, ts[n].rows = r, ts[n].cols = c, n++)
    T("token_embd.weight", GW_Q8_0, T_VOCAB, T_DIM);
    T("output_norm.weight", GW_F32, 0, T_DIM);
    if (o->output) T("output.weight", GW_Q4_0, T_VOCAB, T_DIM);
    char nm[96];
    for (int b = 0; b < T_LAYERS; b++) {
#define B(suffix, ty, r, c) (snprintf(nm, sizeof(nm), "blk.%d.%s", b, suffix), T(nm, ty, r, c))
        B("attn_norm.weight", GW_F32, 0, T_DIM);
        B("attn_q.weight", GW_Q4_0, T_HEADS * T_HD, T_DIM);
        B("attn_k.weight", GW_Q4_1, T_KV * T_HD, T_DIM);
        B("attn_v.weight", GW_F16, T_KV * T_HD, T_DIM);
        if (o->bias) {
            B("attn_q.bias", GW_F32, 0, T_HEADS * T_HD);
            B("attn_k.bias", GW_F32, 0, T_KV * T_HD);
            B("attn_v.bias", GW_F32, 0, T_KV * T_HD);
        }
        B("attn_output.weight", GW_BF16, T_DIM, T_HEADS * T_HD);
        B("ffn_norm.weight", GW_F32, 0, T_DIM);
        B("ffn_gate.weight", GW_Q8_0, T_HID, T_DIM);
        B("ffn_up.weight", GW_F16, T_HID, T_DIM);
        B("ffn_down.weight", GW_Q4_1, T_DIM, T_HID);
#undef B
    }
#undef T
    for (int i = 0; i < n; i++) {
        if (o->skip && strcmp(ts[i].name, o->skip) == 0) {
            free((char *)ts[i].name);
            continue;
        }
        int64_t rows = ts[i].rows + (o->misshape && strcmp(ts[i].name, o->misshape) == 0);
        float  *want = add_tensor(&w, ts[i].name, ts[i].type, rows, ts[i].cols);
        if (i == 0 && emb)
            *emb = want;
        else
            free(want);
        free((char *)ts[i].name);
    }
    if (o->iq4) {
        uint8_t blk[136] = {0};
        gw_tensor(&w, "extra.weight", GW_IQ4_XS, 2, (uint64_t[]){256, 1}, blk, sizeof(blk));
    }
    struct gw_buf img  = gw_finish(&w, 3);
    const char   *path = write_file(fname, &img);
    free(img.p);
    return path;
}

static void test_gguf_model_tiny_llama(void) {
    float      *emb     = NULL;
    const char *path    = write_tiny("tiny_llama.gguf", &(struct tiny_opts){.arch = "llama"}, &emb);
    struct lmp_model *m = NULL;
    struct lmp_err    err = {0};
    CHECK(lmp_model_open(path, &m, &err) == LMP_OK);
    if (m == NULL) {
        fprintf(stderr, "  %s\n", err.msg);
        free(emb);
        return;
    }
    const struct lmp_config *c = &m->cfg;
    CHECK(c->arch == LMP_ARCH_LLAMA && c->format == LMP_FORMAT_GGUF);
    CHECK(c->n_layers == T_LAYERS && c->dim == T_DIM && c->hidden_dim == T_HID);
    CHECK(c->n_heads == T_HEADS && c->n_kv_heads == T_KV && c->head_dim == T_HD);
    CHECK(c->vocab_size == T_VOCAB && c->max_seq == 256);
    CHECK(c->rope_theta == 500000.0f && c->norm_eps == 1e-6f);
    CHECK(c->rope == LMP_ROPE_INTERLEAVED);
    CHECK(c->tied_embeddings && m->output == m->tok_emb && !c->qkv_bias);
    CHECK(m->gguf != NULL && lmp_gguf_arr_n(m->gguf, "tokenizer.ggml.tokens", NULL) == T_VOCAB);
    CHECK(m->n_tensors == 2 + T_LAYERS * 9);
    CHECK(m->tok_emb == lmp_model_find_tensor(m, "token_embd.weight"));
    CHECK(m->tok_emb >= m->tensors && m->tok_emb < m->tensors + m->n_tensors);
    CHECK(m->tok_emb->dtype == LMP_DTYPE_Q8_0 && tensor_matches(m->tok_emb, emb));
    const struct lmp_linear *down = lmp_model_linear(m, 1 * LMP_LIN_COUNT + LMP_LIN_DOWN);
    CHECK(down->weight == lmp_model_find_tensor(m, "blk.1.ffn_down.weight"));
    CHECK(down->n_out == T_DIM && down->n_in == T_HID && down->weight->dtype == LMP_DTYPE_Q4_1);
    CHECK(strcmp(down->name, "model.layers.1.mlp.down_proj") == 0);
    CHECK(m->blocks[0].attn_norm == lmp_model_find_tensor(m, "blk.0.attn_norm.weight"));
    CHECK(lmp_model_linear(m, LMP_LIN_K)->n_out == T_KV * T_HD);
    lmp_model_close(&m);
    CHECK(m == NULL);
    free(emb);
}

static void test_gguf_model_qwen2_bias_and_untied(void) {
    const char *path =
        write_tiny("tiny_qwen2.gguf",
                   &(struct tiny_opts){.arch = "qwen2", .output = true, .bias = true}, NULL);
    struct lmp_model *m   = NULL;
    struct lmp_err    err = {0};
    CHECK(lmp_model_open(path, &m, &err) == LMP_OK);
    if (m == NULL) {
        fprintf(stderr, "  %s\n", err.msg);
        return;
    }
    CHECK(m->cfg.arch == LMP_ARCH_QWEN2 && m->cfg.rope == LMP_ROPE_HALF);
    CHECK(!m->cfg.tied_embeddings && m->output == lmp_model_find_tensor(m, "output.weight"));
    CHECK(m->cfg.qkv_bias && m->blocks[1].lin[LMP_LIN_V].bias != NULL);
    CHECK(m->blocks[1].lin[LMP_LIN_O].bias == NULL);
    lmp_model_close(&m);

    path = write_tiny("tiny_mistral.gguf", &(struct tiny_opts){.arch = "mistral"}, NULL);
    err  = (struct lmp_err){0};
    CHECK(lmp_model_open(path, &m, &err) == LMP_OK);
    CHECK(m && m->cfg.arch == LMP_ARCH_MISTRAL && m->cfg.rope == LMP_ROPE_INTERLEAVED);
    lmp_model_close(&m);
}

/* Model open must fail with `code` and a message containing path and both needles. */
static void expect_model_error(const char *fname, const struct tiny_opts *o, enum lmp_status code,
                               const char *needle1, const char *needle2) {
    const char       *path = write_tiny(fname, o, NULL);
    struct lmp_model *m    = NULL;
    struct lmp_err    err  = {0};
    enum lmp_status   st   = lmp_model_open(path, &m, &err);
    CHECK(st == code && m == NULL);
    CHECK(strstr(err.msg, path) != NULL);
    CHECK(strstr(err.msg, needle1) != NULL);
    CHECK(needle2 == NULL || strstr(err.msg, needle2) != NULL);
    if (st != code || !strstr(err.msg, needle1))
        fprintf(stderr, "  %s: got %s '%s'\n", fname, lmp_status_str(st), err.msg);
    lmp_model_close(&m);
}

static void test_gguf_model_errors(void) {
    expect_model_error("missing.gguf",
                       &(struct tiny_opts){.arch = "llama", .skip = "blk.0.ffn_down.weight"},
                       LMP_EFORMAT, "blk.0.ffn_down.weight", "missing");
    expect_model_error("no_norm.gguf",
                       &(struct tiny_opts){.arch = "llama", .skip = "output_norm.weight"},
                       LMP_EFORMAT, "output_norm.weight", NULL);
    expect_model_error("shape.gguf",
                       &(struct tiny_opts){.arch = "llama", .misshape = "blk.1.attn_k.weight"},
                       LMP_EFORMAT, "blk.1.attn_k.weight", "shape");
    expect_model_error("arch.gguf", &(struct tiny_opts){.arch = "gpt2"}, LMP_EUNSUP,
                       "architecture 'gpt2' is not supported", "qwen2");
    expect_model_error("nolayers.gguf", &(struct tiny_opts){.arch = "llama", .no_layers = true},
                       LMP_EFORMAT, "llama.block_count", NULL);
    expect_model_error("iq4.gguf", &(struct tiny_opts){.arch = "llama", .iq4 = true}, LMP_EUNSUP,
                       "tensor 'extra.weight' has unsupported type IQ4_XS", NULL);
    /* issue 10: head counts that do not divide, named by their keys */
    expect_model_error("heads.gguf", &(struct tiny_opts){.arch = "llama", .heads = 5, .kv = 5},
                       LMP_EFORMAT, "llama.attention.head_count 5 does not divide",
                       "llama.embedding_length 64");
    expect_model_error("kvheads.gguf", &(struct tiny_opts){.arch = "llama", .kv = 3}, LMP_EFORMAT,
                       "llama.attention.head_count_kv 3 does not divide", NULL);
    expect_model_error("kvmore.gguf", &(struct tiny_opts){.arch = "qwen2", .kv = 8}, LMP_EFORMAT,
                       "qwen2.attention.head_count_kv 8", NULL);
    /* heads of 64 / 32 = 2: dividing, but the tensors' shapes disagree with the config */
    expect_model_error("heads32.gguf", &(struct tiny_opts){.arch = "llama", .heads = 32, .kv = 2},
                       LMP_EFORMAT, "blk.0.attn_k.weight", "expected (4, 64)");
    struct lmp_model *m   = NULL;
    struct lmp_err    err = {0};
    char              missing[600];
    snprintf(missing, sizeof(missing), "%s/absent.gguf", tmpdir);
    CHECK(lmp_model_open(missing, &m, &err) == LMP_ENOENT && m == NULL);
}

/* ---- corrupt images ------------------------------------------------------------------ */

/* A small valid image: 3 keys (one a string array) and 2 tensors. */
static struct gw_buf small_image(uint32_t version) {
    struct gw w;
    gw_init(&w);
    gw_kv_str(&w, "general.architecture", "llama");
    gw_kv_arr_str(&w, "tokenizer.ggml.tokens", (const char *[]){"<s>", "hello"}, 2);
    gw_kv_f32(&w, "x.eps", 1e-5f);
    float v[4] = {1, 2, 3, 4};
    gw_tensor(&w, "a", GW_F32, 1, (uint64_t[]){4}, v, sizeof(v));
    uint8_t q[34 * 2] = {0};
    gw_tensor(&w, "b", GW_Q8_0, 2, (uint64_t[]){32, 2}, q, sizeof(q));
    return gw_finish(&w, version);
}

/* Parse a private heap copy of image[0, n) (so that ASan sees any overread). */
static enum lmp_status parse_copy(const uint8_t *image, size_t n, struct lmp_err *err) {
    uint8_t *copy = malloc(n ? n : 1);
    if (n) memcpy(copy, image, n);
    struct lmp_gguf *g = NULL;
    *err               = (struct lmp_err){0};
    enum lmp_status st = lmp_gguf_parse(n ? copy : NULL, n, "img.gguf", &g, err);
    if (st == LMP_OK) { /* walk everything, as a consumer would */
        for (int64_t i = 0; i < lmp_gguf_n_tensors(g); i++) {
            const struct lmp_tensor *t = lmp_gguf_tensor(g, i);
            volatile uint8_t sink      = t->nbytes ? ((const uint8_t *)t->data)[t->nbytes - 1] : 0;
            (void)sink;
        }
    }
    CHECK((st == LMP_OK) == (g != NULL));
    lmp_gguf_close(&g);
    free(copy);
    return st;
}

static void put64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void test_gguf_every_truncation_fails(void) {
    struct gw_buf  img = small_image(3);
    struct lmp_err err;
    CHECK(parse_copy(img.p, img.n, &err) == LMP_OK);
    int bad = 0;
    for (size_t n = 0; n < img.n; n++) {
        enum lmp_status st = parse_copy(img.p, n, &err);
        if (st != LMP_EFORMAT || strstr(err.msg, "img.gguf") == NULL) {
            bad++;
            fprintf(stderr, "  truncated at %zu: %s '%s'\n", n, lmp_status_str(st), err.msg);
        }
    }
    CHECK(bad == 0);
    free(img.p);
}

static void expect_parse(const struct gw_buf *img, enum lmp_status code, const char *needle) {
    struct lmp_err  err;
    enum lmp_status st = parse_copy(img->p, img->n, &err);
    CHECK(st == code);
    CHECK(code == LMP_OK || strstr(err.msg, "'img.gguf'") != NULL);
    CHECK(needle == NULL || strstr(err.msg, needle) != NULL);
    if (st != code || (needle && !strstr(err.msg, needle)))
        fprintf(stderr, "  want %s '%s', got %s '%s'\n", lmp_status_str(code), needle ? needle : "",
                lmp_status_str(st), err.msg);
}

static void test_gguf_header_errors(void) {
    struct gw_buf img = small_image(3);
    img.p[0]          = 'X';
    expect_parse(&img, LMP_EFORMAT, "bad magic");
    img.p[0] = 'G';
    img.p[4] = 1;
    expect_parse(&img, LMP_EUNSUP, "version 1");
    img.p[4] = 4;
    expect_parse(&img, LMP_EUNSUP, "version 4");
    img.p[4] = 0, img.p[7] = 3;
    expect_parse(&img, LMP_EUNSUP, "big-endian");
    img.p[4] = 3, img.p[7] = 0;
    expect_parse(&img, LMP_OK, NULL);

    put64(img.p + 8, 1ull << 40); /* n_tensors */
    expect_parse(&img, LMP_EFORMAT, "tensor count");
    put64(img.p + 8, UINT64_MAX);
    expect_parse(&img, LMP_EFORMAT, "tensor count");
    put64(img.p + 8, 2);
    put64(img.p + 16, UINT64_MAX); /* n_kv */
    expect_parse(&img, LMP_EFORMAT, "metadata count");
    put64(img.p + 16, 1ull << 33);
    expect_parse(&img, LMP_EFORMAT, "metadata count");
    put64(img.p + 16, 3);

    put64(img.p + 24, UINT64_MAX); /* first key length */
    expect_parse(&img, LMP_EFORMAT, "length");
    put64(img.p + 24, img.n - 32 + 1); /* one past the end */
    expect_parse(&img, LMP_EFORMAT, "length");
    put64(img.p + 24, strlen("general.architecture"));
    expect_parse(&img, LMP_OK, NULL);

    /* first element length of the string array: after the first key/value pair */
    size_t at = 24 + 8 + 20 + 4 + 8 + 5 + 8 + 21 + 4 + 4 + 8;
    CHECK(img.p[at] == 3); /* "<s>" */
    put64(img.p + at, 1ull << 62);
    expect_parse(&img, LMP_EFORMAT, "string array element");
    put64(img.p + at - 8, 1ull << 61); /* the element count */
    expect_parse(&img, LMP_EFORMAT, "does not fit");
    free(img.p);

    struct lmp_err err;
    CHECK(parse_copy(NULL, 0, &err) == LMP_EFORMAT);
}

static void test_gguf_metadata_errors(void) {
    struct gw     w;
    struct gw_buf img;
    gw_init(&w); /* duplicate key */
    gw_kv_u32(&w, "k", 1);
    gw_kv_u32(&w, "k", 2);
    img = gw_finish(&w, 3);
    expect_parse(&img, LMP_EFORMAT, "duplicate metadata key 'k'");
    free(img.p);

    gw_init(&w); /* unknown value type */
    gw_key(&w, "k", 13);
    gw_u32(&w.kv, 0);
    img = gw_finish(&w, 3);
    expect_parse(&img, LMP_EFORMAT, "unknown value type 13");
    free(img.p);

    gw_init(&w); /* array of arrays */
    gw_key(&w, "nested", 9);
    gw_u32(&w.kv, 9);
    gw_u64(&w.kv, 0);
    img = gw_finish(&w, 3);
    expect_parse(&img, LMP_EUNSUP, "array of arrays");
    free(img.p);

    gw_init(&w); /* numeric array longer than the file */
    gw_key(&w, "arr", 9);
    gw_u32(&w.kv, 12);
    gw_u64(&w.kv, 1ull << 61);
    gw_u64(&w.kv, 0);
    img = gw_finish(&w, 3);
    expect_parse(&img, LMP_EFORMAT, "does not fit");
    free(img.p);

    float v[4] = {0};
    gw_init(&w); /* alignment not a power of two */
    gw_kv_u32(&w, "general.alignment", 24);
    gw_tensor(&w, "a", GW_F32, 1, (uint64_t[]){4}, v, sizeof(v));
    img = gw_finish(&w, 3);
    expect_parse(&img, LMP_EFORMAT, "general.alignment 24");
    free(img.p);

    gw_init(&w); /* alignment of the wrong type */
    gw_kv_str(&w, "general.alignment", "32");
    img = gw_finish(&w, 3);
    expect_parse(&img, LMP_EFORMAT, "general.alignment has type string");
    free(img.p);
}

static void test_gguf_tensor_errors(void) {
    float         v[64] = {0};
    struct gw     w;
    struct gw_buf img;

    gw_init(&w); /* misaligned offset */
    gw_tensor(&w, "a", GW_F32, 1, (uint64_t[]){4}, v, 16);
    gw_tensor(&w, "b", GW_F32, 1, (uint64_t[]){4}, v, 16);
    w.off_override[1] = 48;
    img               = gw_finish(&w, 3);
    expect_parse(&img, LMP_EFORMAT, "tensor 'b' offset 48 is not a multiple of the alignment 32");
    free(img.p);

    gw_init(&w); /* data beyond the end of the file */
    gw_tensor(&w, "a", GW_F32, 1, (uint64_t[]){4}, v, 16);
    gw_tensor(&w, "far", GW_F32, 1, (uint64_t[]){4}, v, 16);
    w.off_override[1] = 1ull << 40;
    img               = gw_finish(&w, 3);
    expect_parse(&img, LMP_EFORMAT, "tensor 'far' data");
    free(img.p);

    gw_init(&w); /* a shape larger than the data */
    gw_tensor(&w, "big", GW_F32, 2, (uint64_t[]){4, 1000}, v, 16);
    img = gw_finish(&w, 3);
    expect_parse(&img, LMP_EFORMAT, "beyond the end of the file");
    free(img.p);

    gw_init(&w); /* an overflowing shape */
    gw_tensor(&w, "huge", GW_F32, 3, (uint64_t[]){1ull << 30, 1ull << 30, 1ull << 30}, v, 16);
    img = gw_finish(&w, 3);
    expect_parse(&img, LMP_EFORMAT, "tensor 'huge' has a shape invalid");
    free(img.p);

    gw_init(&w); /* a dimension above INT64_MAX */
    gw_tensor(&w, "neg", GW_F32, 1, (uint64_t[]){UINT64_MAX}, v, 16);
    img = gw_finish(&w, 3);
    expect_parse(&img, LMP_EFORMAT, "tensor 'neg' has dimension");
    free(img.p);

    gw_init(&w); /* row not a whole number of blocks */
    gw_tensor(&w, "q", GW_Q8_0, 2, (uint64_t[]){33, 2}, v, 68);
    img = gw_finish(&w, 3);
    expect_parse(&img, LMP_EFORMAT, "row length 33, block 32");
    free(img.p);

    gw_init(&w); /* rank 0 and rank 5 */
    gw_tensor(&w, "r0", GW_F32, 0, NULL, v, 16);
    img = gw_finish(&w, 3);
    expect_parse(&img, LMP_EFORMAT, "tensor 'r0' has 0 dimensions");
    free(img.p);
    gw_init(&w);
    gw_tensor(&w, "r5", GW_F32, 1, (uint64_t[]){4}, v, 16);
    w.t[0].n_dims = 5; /* ne[4] is read from the type field on */
    img           = gw_finish(&w, 3);
    expect_parse(&img, LMP_EFORMAT, NULL);
    free(img.p);

    gw_init(&w); /* duplicate tensor */
    gw_tensor(&w, "a", GW_F32, 1, (uint64_t[]){4}, v, 16);
    gw_tensor(&w, "a", GW_F32, 1, (uint64_t[]){4}, v, 16);
    img = gw_finish(&w, 3);
    expect_parse(&img, LMP_EFORMAT, "duplicate tensor 'a'");
    free(img.p);

    gw_init(&w); /* name too long */
    char longname[200];
    memset(longname, 'n', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    gw_tensor(&w, longname, GW_F32, 1, (uint64_t[]){4}, v, 16);
    img = gw_finish(&w, 3);
    expect_parse(&img, LMP_EFORMAT, "invalid name");
    free(img.p);

    gw_init(&w); /* unsupported ggml type (valid range) */
    uint8_t iq4[136] = {0};
    gw_tensor(&w, "blk.0.attn_q.weight", GW_IQ4_XS, 2, (uint64_t[]){256, 1}, iq4, sizeof(iq4));
    img = gw_finish(&w, 3);
    expect_parse(&img, LMP_EUNSUP, "tensor 'blk.0.attn_q.weight' has unsupported type IQ4_XS");
    free(img.p);

    gw_init(&w); /* unknown ggml type */
    gw_tensor(&w, "odd", 99, 1, (uint64_t[]){4}, v, 16);
    img = gw_finish(&w, 3);
    expect_parse(&img, LMP_EUNSUP, "tensor 'odd' has unknown ggml type 99");
    free(img.p);
}

/* ---- dequant: best variant == reference, bit for bit ------------------------------- */

static int same_bits_or_both_nan(const float *a, const float *b, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], 4) != 0 && !(isnan(a[i]) && isnan(b[i]))) return 0;
    return 1;
}

static void test_dequant_best_matches_ref(void) {
    struct lmp_kernels ref, best;
    lmp_kernels_init_ref(&ref);
    lmp_kernels_init_best(&best);
    fprintf(stderr, "  best table: %s\n", best.name);
    enum { N = 65536 };
    uint8_t *src = malloc(2 * N + 64);
    float   *a = malloc((N + 16) * sizeof(float)), *b = malloc((N + 16) * sizeof(float));
    for (uint32_t h = 0; h < N; h++) src[2 * h] = (uint8_t)h, src[2 * h + 1] = (uint8_t)(h >> 8);
    /* every f16 and bf16 bit pattern, NaN payloads included: exact bits */
    static const enum lmp_dtype half[] = {LMP_DTYPE_F16, LMP_DTYPE_BF16};
    for (int k = 0; k < 2; k++) {
        ref.dequant_row(half[k], src, a, N);
        best.dequant_row(half[k], src, b, N);
        CHECK(memcmp(a, b, N * sizeof(float)) == 0);
        for (int64_t n = 1; n < 40; n += 3) { /* odd lengths, unaligned starts */
            ref.dequant_row(half[k], src + 2 * n, a, n);
            best.dequant_row(half[k], src + 2 * n, b, n);
            CHECK(memcmp(a, b, (size_t)n * sizeof(float)) == 0);
        }
    }
    float f[37];
    check_fill_random(f, 37, 3);
    best.dequant_row(LMP_DTYPE_F32, f, a, 37);
    CHECK(memcmp(a, f, sizeof(f)) == 0);
    /* block quants over random bytes: any d and m, NaN and inf included */
    static const enum lmp_dtype quant[] = {LMP_DTYPE_Q8_0, LMP_DTYPE_Q4_0, LMP_DTYPE_Q4_1};
    for (int64_t i = 0; i < 2 * N + 64; i++) src[i] = (uint8_t)rnd();
    for (int k = 0; k < 3; k++) {
        int64_t bb = lmp_dtype_block_bytes(quant[k]);
        for (int64_t n = 32; n <= 4096; n *= 2) {
            ref.dequant_row(quant[k], src + 1 + bb, a, n); /* odd address on purpose */
            best.dequant_row(quant[k], src + 1 + bb, b, n);
            CHECK(same_bits_or_both_nan(a, b, n));
        }
        ref.dequant_row(quant[k], src, a, 96);
        best.dequant_row(quant[k], src, b, 96);
        CHECK(same_bits_or_both_nan(a, b, 96));
    }
    free(src);
    free(a);
    free(b);
}

int main(void) {
    const char *t = getenv("TMPDIR");
    snprintf(tmpdir, sizeof(tmpdir), "%s/test_gguf.XXXXXX", t ? t : "/tmp");
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_gguf_roundtrip_v3);
    RUN(test_gguf_roundtrip_v2);
    RUN(test_gguf_roundtrip_alignment_64);
    RUN(test_gguf_model_tiny_llama);
    RUN(test_gguf_model_qwen2_bias_and_untied);
    RUN(test_gguf_model_errors);
    RUN(test_gguf_every_truncation_fails);
    RUN(test_gguf_header_errors);
    RUN(test_gguf_metadata_errors);
    RUN(test_gguf_tensor_errors);
    RUN(test_dequant_best_matches_ref);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", tmpdir);
    return check_report();
}
