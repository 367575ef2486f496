/*  test_gguf_kquants - GGUF K-quant tensors (Q2_K..Q6_K) and Q5_0/Q5_1 with known values
 *
 *  Each tensor is packed here from chosen integers (quants, sub-block scales and mins) and
 *  power-of-two or extreme f16 scales, so its dequantized floats are known exactly; the
 *  packers follow ggml's block layouts (ggml-common.h) independently of the dequantizers,
 *  which run backwards. Checked: the reader maps every type, both kernel tables give
 *  exactly those floats, a row length that is not a whole number of super-blocks and a
 *  tensor whose bytes run into the next tensor are refused with a message naming the file
 *  and the tensor, and a tiny llama whose linears are all K-quants evaluates to the same
 *  perplexity, bit for bit, as the same model stored in F32.
 */
#include "model/gguf.h"
#include "model/model.h"
#include "model/eval.h"        /* defines: lmp_eval_ppl */
#include "model/transformer.h" /* defines: lmp_transformer_new */
#include "kernels/kernels.h"   /* defines: lmp_kernels_init_ref, f16 conversions */
#include "tests/check.h"       /* defines: CHECK, RUN, check_report */
#include "tests/gguf_writer.h" /* defines: struct gw, gw_finish() */

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

static uint64_t rng_state = 7;
static int      rnd(int lo, int hi) { /* uniform in [lo, hi] */
    rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
    return lo + (int)((rng_state >> 16) % (uint64_t)(hi - lo + 1));
}

static void put16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8);
}

static const struct kq {
    uint32_t       gw;
    enum lmp_dtype dtype;
    int            bytes, block;
} kqs[] = {
    {GW_Q2_K, LMP_DTYPE_Q2_K, 84, 256},  {GW_Q3_K, LMP_DTYPE_Q3_K, 110, 256},
    {GW_Q4_K, LMP_DTYPE_Q4_K, 144, 256}, {GW_Q5_K, LMP_DTYPE_Q5_K, 176, 256},
    {GW_Q6_K, LMP_DTYPE_Q6_K, 210, 256}, {GW_Q5_0, LMP_DTYPE_Q5_0, 22, 32},
    {GW_Q5_1, LMP_DTYPE_Q5_1, 24, 32},
};
enum { N_KQ = sizeof(kqs) / sizeof(kqs[0]) };

/* One block of kq packed from random integers with scale d (and min dmin, f16 bits) into
 * blk (zeroed here); want gets its exact values. Every product below is exact in double
 * and in fp32, and a difference of two of them is rounded once either way. */
static void pack_block(const struct kq *k, uint16_t d16, uint16_t dmin16, uint8_t *blk,
                       float *want) {
    const double d = lmp_f16_to_f32(d16), dmin = lmp_f16_to_f32(dmin16);
    int          q[256], sc[16], mn[16];
    memset(blk, 0, (size_t)k->bytes);
    switch (k->gw) {
    case GW_Q2_K: /* u8 sc[16] (scale | min << 4), u8 qs[64], f16 d, f16 dmin */
        for (int s = 0; s < 16; s++) sc[s] = rnd(0, 15), mn[s] = rnd(0, 15);
        for (int s = 0; s < 16; s++) blk[s] = (uint8_t)(sc[s] | mn[s] << 4);
        for (int i = 0; i < 256; i++) {
            q[i] = rnd(0, 3);
            blk[16 + 32 * (i / 128) + i % 32] |= (uint8_t)(q[i] << 2 * (i % 128 / 32));
            want[i] = (float)(d * sc[i / 16] * q[i] - dmin * mn[i / 16]);
        }
        put16(blk + 80, d16), put16(blk + 82, dmin16);
        break;
    case GW_Q3_K: /* u8 hmask[32], u8 qs[64], u8 sc[12], f16 d */
        for (int s = 0; s < 16; s++) {
            sc[s] = rnd(-32, 31);
            int v = sc[s] + 32;
            blk[96 + s % 8] |= (uint8_t)((v & 15) << (s < 8 ? 0 : 4));
            blk[96 + 8 + s % 4] |= (uint8_t)((v >> 4) << 2 * (s / 4));
        }
        for (int i = 0; i < 256; i++) {
            q[i]  = rnd(-4, 3);
            int u = q[i] + 4, h = i / 128, j = i % 128 / 32, l = i % 32;
            blk[32 + 32 * h + l] |= (uint8_t)((u & 3) << 2 * j);
            blk[l] |= (uint8_t)((u >> 2) << (4 * h + j));
            want[i] = (float)(d * sc[i / 16] * q[i]);
        }
        put16(blk + 108, d16);
        break;
    case GW_Q4_K: /* f16 d, f16 dmin, u8 sc[12] (6-bit scales and mins), [u8 qh[32]], qs[128] */
    case GW_Q5_K: {
        const int q5 = k->gw == GW_Q5_K, qs = q5 ? 48 : 16;
        for (int j = 0; j < 8; j++) sc[j] = rnd(0, 63), mn[j] = rnd(0, 63);
        for (int j = 0; j < 4; j++) {
            blk[4 + j]     = (uint8_t)(sc[j] | (sc[j + 4] >> 4) << 6);
            blk[4 + j + 4] = (uint8_t)(mn[j] | (mn[j + 4] >> 4) << 6);
            blk[4 + j + 8] = (uint8_t)((sc[j + 4] & 15) | (mn[j + 4] & 15) << 4);
        }
        for (int i = 0; i < 256; i++) {
            q[i]  = rnd(0, q5 ? 31 : 15);
            int s = i / 32, l = i % 32;
            blk[qs + 32 * (s / 2) + l] |= (uint8_t)((q[i] & 15) << 4 * (s % 2));
            if (q5) blk[16 + l] |= (uint8_t)((q[i] >> 4) << s);
            want[i] = (float)(d * sc[s] * q[i] - dmin * mn[s]);
        }
        put16(blk, d16), put16(blk + 2, dmin16);
        break;
    }
    case GW_Q6_K: /* u8 ql[128], u8 qh[64], i8 sc[16], f16 d */
        for (int s = 0; s < 16; s++) sc[s] = rnd(-128, 127), blk[192 + s] = (uint8_t)sc[s];
        for (int i = 0; i < 256; i++) {
            q[i]  = rnd(-32, 31);
            int u = q[i] + 32, h = i / 128, kk = i % 128 / 32, l = i % 32;
            blk[64 * h + 32 * (kk % 2) + l] |= (uint8_t)((u & 15) << 4 * (kk / 2));
            blk[128 + 32 * h + l] |= (uint8_t)((u >> 4) << 2 * kk);
            want[i] = (float)(d * sc[i / 16] * q[i]);
        }
        put16(blk + 208, d16);
        break;
    default: { /* Q5_0: f16 d, u32 qh, u8 qs[16]; Q5_1: f16 d, f16 m, u32 qh, u8 qs[16] */
        const int q51 = k->gw == GW_Q5_1, qh = q51 ? 4 : 2;
        for (int i = 0; i < 32; i++) {
            q[i] = rnd(0, 31);
            blk[qh + 4 + i % 16] |= (uint8_t)((q[i] & 15) << (i < 16 ? 0 : 4));
            blk[qh + i / 8] |= (uint8_t)((q[i] >> 4) << i % 8);
            want[i] = (float)(q51 ? d * q[i] - dmin : d * (q[i] - 16));
        }
        put16(blk, d16);
        if (q51) put16(blk + 2, (uint16_t)(dmin16 ^ 0x8000)); /* m = -dmin */
        break;
    }
    }
}

/* A (rows, cols) tensor of kq: blocks cycle through a small power-of-two scale, the
 * largest f16 (65504) and an all-zero block unless `plain` (then every block has scales
 * 2^-10 and 2^-11, for a model). Caller frees *data and the returned values. */
static float *make_tensor(const struct kq *k, int64_t rows, int64_t cols, bool plain,
                          uint8_t **data, size_t *nbytes) {
    int64_t nb   = rows * cols / k->block;
    float  *want = malloc((size_t)(rows * cols) * sizeof(float));
    *nbytes      = (size_t)(nb * k->bytes);
    *data        = malloc(*nbytes);
    for (int64_t b = 0; b < nb; b++) {
        uint8_t *blk  = *data + b * k->bytes;
        float   *w    = want + b * k->block;
        int      kind = plain ? 0 : (int)(b % 3);
        if (kind == 2) {
            memset(blk, 0, (size_t)k->bytes);
            for (int i = 0; i < k->block; i++) w[i] = 0.0f;
        } else if (kind == 1) {
            pack_block(k, 0x7bff, 0x7bff, blk, w);
        } else {
            pack_block(k, plain ? 0x1400 : 0x2c00, plain ? 0x1000 : 0x2800, blk, w);
        }
    }
    return want;
}

static int same_floats(const float *a, const float *b, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (a[i] != b[i]) {
            fprintf(stderr, "  [%lld] got %.9g want %.9g\n", (long long)i, a[i], b[i]);
            return 0;
        }
    return 1;
}

static void test_kquant_values(void) {
    enum { ROWS = 3, COLS = 512 };
    struct gw w;
    gw_init(&w);
    gw_kv_str(&w, "general.name", "kquants");
    float *want[N_KQ];
    for (int t = 0; t < N_KQ; t++) {
        uint8_t *data;
        size_t   nbytes;
        char     name[32];
        want[t] = make_tensor(&kqs[t], ROWS, COLS, false, &data, &nbytes);
        snprintf(name, sizeof(name), "t.%s", lmp_dtype_name(kqs[t].dtype));
        gw_tensor(&w, name, kqs[t].gw, 2, (uint64_t[]){COLS, ROWS}, data, nbytes);
        free(data);
    }
    struct gw_buf    img  = gw_finish(&w, 3);
    const char      *path = write_file("kquants.gguf", &img);
    struct lmp_gguf *g    = NULL;
    struct lmp_err   err  = {0};
    free(img.p);
    CHECK(lmp_gguf_open(path, &g, &err) == LMP_OK);
    if (g == NULL) {
        fprintf(stderr, "  %s\n", err.msg);
        goto out;
    }
    struct lmp_kernels ref;
    lmp_kernels_init_ref(&ref);
    float *got = malloc(ROWS * COLS * sizeof(float));
    for (int t = 0; t < N_KQ; t++) {
        const struct lmp_tensor *x = lmp_gguf_tensor(g, t);
        CHECK(x->dtype == kqs[t].dtype && lmp_tensor_n_rows(x) == ROWS &&
              lmp_tensor_n_cols(x) == COLS);
        CHECK(x->nbytes == (uint64_t)(ROWS * COLS / kqs[t].block * kqs[t].bytes));
        lmp_tensor_rows_f32(x, 0, ROWS, got); /* the process's table (best) */
        CHECK(same_floats(got, want[t], ROWS * COLS));
        ref.dequant_row((int)x->dtype, x->data, got, ROWS * COLS);
        CHECK(same_floats(got, want[t], ROWS * COLS));
        lmp_tensor_rows_f32(x, 2, 1, got); /* one row from the middle of the data */
        CHECK(same_floats(got, want[t] + 2 * COLS, COLS));
    }
    free(got);
    lmp_gguf_close(&g);
out:
    for (int t = 0; t < N_KQ; t++) free(want[t]);
}

static void expect_parse(const struct gw_buf *img, enum lmp_status code, const char *needle) {
    struct lmp_gguf *g   = NULL;
    struct lmp_err   err = {0};
    CHECK(lmp_gguf_parse(img->p, img->n, "x.gguf", &g, &err) == code);
    CHECK(g == NULL);
    CHECK(strstr(err.msg, "'x.gguf'") != NULL && strstr(err.msg, needle) != NULL &&
          strchr(err.msg, '\n') == NULL);
    if (strstr(err.msg, needle) == NULL) fprintf(stderr, "  got: %s\n", err.msg);
}

static void test_kquant_size_errors(void) {
    uint8_t       z[2048] = {0};
    struct gw     w;
    struct gw_buf img;

    gw_init(&w); /* a row that is not a whole number of super-blocks */
    gw_tensor(&w, "blk.0.ffn_down.weight", GW_Q4_K, 2, (uint64_t[]){320, 2}, z, 360);
    img = gw_finish(&w, 3);
    expect_parse(&img, LMP_EFORMAT,
                 "tensor 'blk.0.ffn_down.weight' has a shape invalid for type Q4_K (row length "
                 "320, block 256)");
    free(img.p);

    gw_init(&w); /* bytes that run into the next tensor's (type x shape needs 420) */
    gw_tensor(&w, "a", GW_Q6_K, 2, (uint64_t[]){256, 2}, z, 420);
    gw_tensor(&w, "b", GW_Q6_K, 2, (uint64_t[]){256, 2}, z, 420);
    gw_tensor(&w, "c", GW_F32, 1, (uint64_t[]){256}, z, 1024);
    w.off_override[1] = 224;
    img               = gw_finish(&w, 3);
    expect_parse(&img, LMP_EFORMAT,
                 "tensor 'a' (Q6_K, 512 elements) needs 420 bytes but tensor 'b' starts 224 "
                 "bytes after it");
    free(img.p);

    gw_init(&w); /* two tensors at one offset */
    gw_tensor(&w, "a", GW_Q2_K, 1, (uint64_t[]){256}, z, 84);
    gw_tensor(&w, "b", GW_Q3_K, 1, (uint64_t[]){256}, z, 110);
    gw_tensor(&w, "c", GW_F32, 1, (uint64_t[]){64}, z, 256);
    w.off_override[1] = 0;
    img               = gw_finish(&w, 3);
    expect_parse(&img, LMP_EFORMAT, "needs 84 bytes but tensor 'b' starts 0 bytes after it");
    free(img.p);

    gw_init(&w); /* truncated data of a K-quant tensor */
    gw_tensor(&w, "q", GW_Q5_K, 2, (uint64_t[]){256, 3}, z, 176 * 2);
    img = gw_finish(&w, 3);
    expect_parse(&img, LMP_EFORMAT, "tensor 'q' data");
    free(img.p);
}

/* ---- a tiny llama whose linears are all K-quants vs the same model in F32 --------- */

enum { M_DIM = 256, M_HID = 512, M_HEADS = 4, M_KV = 2, M_HD = 64, M_VOCAB = 16 };

static const char *write_model(const char *fname, bool f32) {
    static const struct {
        const char *name;
        int         kq; /* index into kqs */
        int64_t     rows, cols;
    } ts[] = {
        {"token_embd.weight", 2, M_VOCAB, M_DIM},
        {"blk.0.attn_q.weight", 2, M_HEADS * M_HD, M_DIM},
        {"blk.0.attn_k.weight", 3, M_KV * M_HD, M_DIM},
        {"blk.0.attn_v.weight", 4, M_KV * M_HD, M_DIM},
        {"blk.0.attn_output.weight", 1, M_DIM, M_HEADS * M_HD},
        {"blk.0.ffn_gate.weight", 0, M_HID, M_DIM},
        {"blk.0.ffn_up.weight", 5, M_HID, M_DIM},
        {"blk.0.ffn_down.weight", 4, M_DIM, M_HID},
    };
    struct gw w;
    gw_init(&w);
    gw_kv_str(&w, "general.architecture", "llama");
    gw_kv_u32(&w, "llama.block_count", 1);
    gw_kv_u32(&w, "llama.embedding_length", M_DIM);
    gw_kv_u32(&w, "llama.feed_forward_length", M_HID);
    gw_kv_u32(&w, "llama.attention.head_count", M_HEADS);
    gw_kv_u32(&w, "llama.attention.head_count_kv", M_KV);
    gw_kv_u32(&w, "llama.context_length", 64);
    gw_kv_f32(&w, "llama.rope.freq_base", 10000.0f);
    gw_kv_f32(&w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    const char *toks[M_VOCAB];
    char        tokbuf[M_VOCAB][8];
    for (int i = 0; i < M_VOCAB; i++) snprintf(tokbuf[i], 8, "t%d", i), toks[i] = tokbuf[i];
    gw_kv_arr_str(&w, "tokenizer.ggml.tokens", toks, M_VOCAB);
    float ones[M_DIM];
    for (int i = 0; i < M_DIM; i++) ones[i] = 1.0f;
    gw_tensor(&w, "output_norm.weight", GW_F32, 1, (uint64_t[]){M_DIM}, ones, sizeof(ones));
    gw_tensor(&w, "blk.0.attn_norm.weight", GW_F32, 1, (uint64_t[]){M_DIM}, ones, sizeof(ones));
    gw_tensor(&w, "blk.0.ffn_norm.weight", GW_F32, 1, (uint64_t[]){M_DIM}, ones, sizeof(ones));
    rng_state = 99; /* both files get the same values */
    for (size_t i = 0; i < sizeof(ts) / sizeof(ts[0]); i++) {
        uint8_t *data;
        size_t   nbytes;
        float   *want = make_tensor(&kqs[ts[i].kq], ts[i].rows, ts[i].cols, true, &data, &nbytes);
        const uint64_t ne[2] = {(uint64_t)ts[i].cols, (uint64_t)ts[i].rows};
        if (f32)
            gw_tensor(&w, ts[i].name, GW_F32, 2, ne, want,
                      (size_t)(ts[i].rows * ts[i].cols) * sizeof(float));
        else
            gw_tensor(&w, ts[i].name, kqs[ts[i].kq].gw, 2, ne, data, nbytes);
        free(data);
        free(want);
    }
    struct gw_buf img  = gw_finish(&w, 3);
    const char   *path = write_file(fname, &img);
    free(img.p);
    return path;
}

static bool eval_model(const char *path, bool kq, double *ppl) {
    struct lmp_model       *m   = NULL;
    struct lmp_transformer *tf  = NULL;
    struct lmp_err          err = {0};
    int32_t                 ids[48];
    for (int i = 0; i < 48; i++) ids[i] = (int32_t)((i * 7 + 3) % M_VOCAB);
    struct lmp_eval_opts   opts = {.ctx = 16};
    struct lmp_eval_result res  = {0};
    bool                   ok   = lmp_model_open(path, &m, &err) == LMP_OK &&
              lmp_transformer_new(m, &(struct lmp_transformer_opts){.n_threads = 1}, &tf, &err) ==
                  LMP_OK &&
              lmp_eval_ppl(tf, ids, 48, &opts, &res, &err) == LMP_OK;
    if (!ok) fprintf(stderr, "  %s: %s\n", path, err.msg);
    if (m != NULL && kq) {
        CHECK(lmp_model_linear(m, LMP_LIN_Q)->weight->dtype == LMP_DTYPE_Q4_K);
        CHECK(lmp_model_linear(m, LMP_LIN_DOWN)->weight->dtype == LMP_DTYPE_Q6_K);
        CHECK(lmp_model_linear(m, LMP_LIN_GATE)->weight->dtype == LMP_DTYPE_Q2_K);
        CHECK(lmp_model_linear(m, LMP_LIN_O)->weight->dtype == LMP_DTYPE_Q3_K);
    }
    lmp_transformer_destroy(&tf);
    lmp_model_close(&m);
    *ppl = res.ppl;
    return ok;
}

static void test_kquant_model_matches_f32(void) {
    double ppl_kq = 0, ppl_f32 = 0;
    CHECK(eval_model(write_model("tiny_kq.gguf", false), true, &ppl_kq));
    CHECK(eval_model(write_model("tiny_f32.gguf", true), false, &ppl_f32));
    fprintf(stderr, "  ppl K-quants %.9g, F32 %.9g\n", ppl_kq, ppl_f32);
    CHECK(ppl_kq > 1 && ppl_kq == ppl_f32);
}

int main(void) {
    const char *t = getenv("TMPDIR");
    snprintf(tmpdir, sizeof(tmpdir), "%s/test_gguf_kquants.XXXXXX", t ? t : "/tmp");
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_kquant_values);
    RUN(test_kquant_size_errors);
    RUN(test_kquant_model_matches_f32);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", tmpdir);
    return check_report();
}
