/*  test_calib - calibration sequences, per-input Gram matrices and the block walk
 *  (stories260K from the shared data) */
#include "worker/calib.h"
#include "model/model.h"
#include "model/transformer.h"
#include "worker/rtn.h"
#include "tests/check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static struct lmp_model *open_stories(void) {
    const char       *p   = check_shared_file(0, "models/stories260K/stories260K.bin");
    struct lmp_model *m   = NULL;
    struct lmp_err    err = {0};
    if (p == NULL) return NULL;
    if (lmp_model_open(p, &m, &err) != LMP_OK) {
        check_skip(err.msg);
        return NULL;
    }
    return m;
}

static void random_tokens(int32_t *t, int64_t n, int32_t vocab, uint64_t seed) {
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        t[i] = (int32_t)((seed >> 33) % (uint64_t)vocab);
    }
}

static void test_sample_text_reproducible(void) {
    enum { N = 500, NS = 6, CTX = 17 };
    int32_t ids[N], a[NS * CTX], b[NS * CTX], c[NS * CTX];
    for (int i = 0; i < N; i++) ids[i] = i; /* a window is then identified by its start */
    CHECK(lmp_calib_sample_text(a, ids, N, NS, CTX, 42, NULL) == LMP_OK);
    CHECK(lmp_calib_sample_text(b, ids, N, NS, CTX, 42, NULL) == LMP_OK);
    CHECK(lmp_calib_sample_text(c, ids, N, NS, CTX, 43, NULL) == LMP_OK);
    CHECK(memcmp(a, b, sizeof(a)) == 0);
    CHECK(memcmp(a, c, sizeof(a)) != 0);
    for (int s = 0; s < NS; s++) {
        CHECK(a[s * CTX] >= 0 && a[s * CTX] <= N - CTX);
        for (int t = 1; t < CTX; t++) CHECK(a[s * CTX + t] == a[s * CTX] + t);
    }
    struct lmp_err err = {0};
    CHECK(lmp_calib_sample_text(a, ids, CTX - 1, 1, CTX, 0, &err) ==
          LMP_EFORMAT); /* input rejected */
    CHECK(strstr(err.msg, "fewer than one window") != NULL);
}

struct capture {
    float                  *x; /* first LMP_INPUT_FFN_OUT rows seen */
    int64_t                 n_rows, n_cols;
    struct lmp_calib_grams *grams;
};

static void capture_hook(void *ctx, int32_t block, enum lmp_input which, const float *x,
                         int64_t n_rows, int64_t n_cols) {
    struct capture *c = ctx;
    lmp_calib_grams_hook(c->grams, block, which, x, n_rows, n_cols);
    if (which == LMP_INPUT_FFN_OUT && c->x == NULL) {
        c->x = malloc((size_t)(n_rows * n_cols) * sizeof(float));
        memcpy(c->x, x, (size_t)(n_rows * n_cols) * sizeof(float));
        c->n_rows = n_rows, c->n_cols = n_cols;
    }
}

/* H of the attention input of block 0 against X^T X of rmsnorm(embedding) * norm computed
 * here from the model's tensors, and H of the FFN output against the rows the hook saw. */
static void test_grams_match_direct(void) {
    struct lmp_model *m = open_stories();
    if (m == NULL) return;
    enum { NS = 3, CTX = 11 };
    struct lmp_transformer     *tf  = NULL;
    struct lmp_transformer_opts to  = {.n_threads = 1};
    struct lmp_err              err = {0};
    CHECK(lmp_transformer_new(m, &to, &tf, &err) == LMP_OK);
    const int64_t dim = m->cfg.dim, n = NS * CTX;
    int32_t       tok[NS * CTX];
    random_tokens(tok, n, m->cfg.vocab_size, 5);
    float *x    = malloc((size_t)(n * dim) * sizeof(float)),
          *norm = malloc((size_t)dim * sizeof(float));
    float *emb  = malloc((size_t)dim * sizeof(float));
    CHECK(lmp_transformer_embed(tf, tok, n, x, &err) == LMP_OK);
    struct capture         cap   = {.grams = lmp_calib_grams_new(&m->cfg)};
    struct lmp_block_hooks hooks = {.on_input = capture_hook, .ctx = &cap};
    CHECK(lmp_transformer_block(tf, 0, NULL, x, NS, CTX, &hooks, &err) == LMP_OK);

    double *want = calloc((size_t)(dim * dim), sizeof(double));
    lmp_tensor_rows_f32(m->blocks[0].attn_norm, 0, 1, norm);
    for (int64_t r = 0; r < n; r++) {
        lmp_tensor_rows_f32(m->tok_emb, tok[r], 1, emb);
        double ss = 0;
        for (int64_t i = 0; i < dim; i++) ss += (double)emb[i] * emb[i];
        const double inv = 1.0 / sqrt(ss / (double)dim + m->cfg.norm_eps);
        for (int64_t i = 0; i < dim; i++)
            for (int64_t j = 0; j < dim; j++)
                want[i * dim + j] += (emb[i] * inv * norm[i]) * (emb[j] * inv * norm[j]);
    }
    const double *got = lmp_calib_grams_sum(cap.grams, LMP_INPUT_ATTN);
    CHECK(lmp_calib_grams_n_tok(cap.grams, LMP_INPUT_ATTN) == n);
    double max_rel = 0;
    for (int64_t k = 0; k < dim * dim; k++) {
        double d = fabs(got[k] - want[k]) / (fabs(want[k]) + 1e-3);
        max_rel  = d > max_rel ? d : max_rel;
    }
    CHECK(max_rel < 1e-3);

    /* FFN output: rows as the hook saw them */
    CHECK(cap.x != NULL && cap.n_cols == m->cfg.hidden_dim && cap.n_rows == n);
    const int64_t hd  = cap.n_cols;
    const double *gf  = lmp_calib_grams_sum(cap.grams, LMP_INPUT_FFN_OUT);
    int           bad = 0;
    for (int64_t i = 0; i < hd && cap.x; i += 7)
        for (int64_t j = 0; j < hd; j += 5) {
            double w = 0;
            for (int64_t r = 0; r < n; r++) w += (double)cap.x[r * hd + i] * cap.x[r * hd + j];
            if (fabs(gf[i * hd + j] - w) > 1e-4 * (fabs(w) + 1e-2)) bad++;
        }
    CHECK(bad == 0);
    /* the fp32 H handed to the quantizer is the mean */
    float *h = malloc((size_t)(dim * dim) * sizeof(float));
    CHECK(lmp_calib_grams_h(cap.grams, LMP_INPUT_ATTN, h) == LMP_OK);
    CHECK_NEAR(h[3 * dim + 5], got[3 * dim + 5] / (double)n, 1e-6);
    lmp_calib_grams_reset(cap.grams);
    CHECK(lmp_calib_grams_h(cap.grams, LMP_INPUT_ATTN, h) == LMP_EINVAL);

    free(h);
    free(cap.x);
    free(want);
    free(emb);
    free(norm);
    free(x);
    lmp_calib_grams_destroy(&cap.grams);
    lmp_transformer_destroy(&tf);
    lmp_model_close(&m);
}

/* Same H for block 0 in both modes; after block 0 is replaced by a coarse quantization,
 * the sequential walk sees other inputs for block 1, the independent one the original's. */
static void test_sequential_vs_independent(void) {
    struct lmp_model *m = open_stories();
    if (m == NULL) return;
    enum { NS = 4, CTX = 24 };
    struct lmp_transformer     *tf  = NULL;
    struct lmp_transformer_opts to  = {.n_threads = 1};
    struct lmp_err              err = {0};
    CHECK(lmp_transformer_new(m, &to, &tf, &err) == LMP_OK);
    int32_t tok[NS * CTX];
    random_tokens(tok, NS * CTX, m->cfg.vocab_size, 9);
    struct lmp_calib *seq = NULL, *ind = NULL;
    CHECK(lmp_calib_new(tf, tok, NS, CTX, &seq, &err) == LMP_OK);
    CHECK(lmp_calib_new(tf, tok, NS, CTX, &ind, &err) == LMP_OK);
    struct lmp_calib_grams *gs = lmp_calib_grams_new(&m->cfg), *gi = lmp_calib_grams_new(&m->cfg);

    CHECK(lmp_calib_collect(seq, 0, gs, &err) == LMP_OK);
    CHECK(lmp_calib_collect(ind, 0, gi, &err) == LMP_OK);
    for (int w = 0; w < LMP_INPUT_COUNT; w++) {
        const int64_t k = lmp_calib_grams_n_in(gs, w);
        CHECK(memcmp(lmp_calib_grams_sum(gs, w), lmp_calib_grams_sum(gi, w),
                     (size_t)(k * k) * sizeof(double)) == 0);
    }
    /* quantize block 0 coarsely (RTN 2 bits) and install it for the sequential walk */
    float       *what[LMP_LIN_COUNT];
    const float *orig[LMP_LIN_COUNT];
    for (int k = 0; k < LMP_LIN_COUNT; k++) {
        const struct lmp_linear *l = &m->blocks[0].lin[k];
        float                   *w = malloc((size_t)(l->n_out * l->n_in) * sizeof(float));
        what[k]                    = malloc((size_t)(l->n_out * l->n_in) * sizeof(float));
        lmp_tensor_rows_f32(l->weight, 0, l->n_out, w);
        CHECK(lmp_rtn_quantize(what[k], NULL, NULL, NULL, w, l->n_out, l->n_in, 2, 4, &err) ==
              LMP_OK);
        free(w);
        struct lmp_linop *op = lmp_transformer_linop(tf, 0, (enum lmp_lin)k);
        orig[k]              = op->w;
        op->w                = what[k];
    }
    CHECK(lmp_calib_advance(seq, 0, &err) == LMP_OK);
    for (int k = 0; k < LMP_LIN_COUNT; k++)
        lmp_transformer_linop(tf, 0, (enum lmp_lin)k)->w = orig[k];
    lmp_calib_take_output(ind);

    /* the independent input of block 1 is the original model's block-0 output */
    float *ref = malloc((size_t)(NS * CTX * m->cfg.dim) * sizeof(float));
    CHECK(lmp_transformer_embed(tf, tok, NS * CTX, ref, &err) == LMP_OK);
    CHECK(lmp_transformer_block(tf, 0, NULL, ref, NS, CTX, NULL, &err) == LMP_OK);
    double d_ind = 0, d_seq = 0;
    for (int64_t i = 0; i < NS * CTX * m->cfg.dim; i++) {
        d_ind = fmax(d_ind, fabs(lmp_calib_x(ind)[i] - ref[i]));
        d_seq = fmax(d_seq, fabs(lmp_calib_x(seq)[i] - ref[i]));
    }
    CHECK(d_ind < 1e-4);
    CHECK(d_seq > 1e-3);

    lmp_calib_grams_reset(gs);
    lmp_calib_grams_reset(gi);
    CHECK(lmp_calib_collect(seq, 1, gs, &err) == LMP_OK);
    CHECK(lmp_calib_collect(ind, 1, gi, &err) == LMP_OK);
    const int64_t k    = lmp_calib_grams_n_in(gs, LMP_INPUT_ATTN);
    double        diff = 0, mag = 0;
    for (int64_t i = 0; i < k * k; i++) {
        diff += fabs(lmp_calib_grams_sum(gs, LMP_INPUT_ATTN)[i] -
                     lmp_calib_grams_sum(gi, LMP_INPUT_ATTN)[i]);
        mag += fabs(lmp_calib_grams_sum(gi, LMP_INPUT_ATTN)[i]);
    }
    CHECK(diff > 1e-4 * mag);

    free(ref);
    for (int i = 0; i < LMP_LIN_COUNT; i++) free(what[i]);
    lmp_calib_grams_destroy(&gs);
    lmp_calib_grams_destroy(&gi);
    lmp_calib_destroy(&seq);
    lmp_calib_destroy(&ind);
    lmp_calib_destroy(&ind); /* twice is safe */
    lmp_transformer_destroy(&tf);
    lmp_model_close(&m);
}

static void test_generate_reproducible(void) {
    struct lmp_model *m = open_stories();
    if (m == NULL) return;
    enum { NS = 3, CTX = 20 };
    struct lmp_transformer     *tf  = NULL;
    struct lmp_transformer_opts to  = {.n_threads = 1};
    struct lmp_err              err = {0};
    CHECK(lmp_transformer_new(m, &to, &tf, &err) == LMP_OK);
    const int32_t bos = 1;
    int32_t       a[NS * CTX], b[NS * CTX], c[NS * CTX];
    CHECK(lmp_calib_generate(a, tf, &bos, 1, NS, CTX, 3, &err) == LMP_OK);
    CHECK(lmp_calib_generate(b, tf, &bos, 1, NS, CTX, 3, &err) == LMP_OK);
    CHECK(lmp_calib_generate(c, tf, &bos, 1, NS, CTX, 4, &err) == LMP_OK);
    CHECK(memcmp(a, b, sizeof(a)) == 0);
    CHECK(memcmp(a, c, sizeof(a)) != 0);
    CHECK(memcmp(a, a + CTX, CTX * sizeof(int32_t)) != 0); /* sequences differ */
    for (int i = 0; i < NS * CTX; i++) CHECK(a[i] >= 0 && a[i] < m->cfg.vocab_size);
    for (int s = 0; s < NS; s++) CHECK(a[s * CTX] == bos);
    CHECK(lmp_calib_generate(a, tf, &bos, 1, 1, m->cfg.max_seq + 1, 3, &err) == LMP_EINVAL);
    lmp_transformer_destroy(&tf);
    lmp_model_close(&m);
}

/* Generation split into parts (processes) adds up to one process's: chunks seeded by index. */
static void test_generate_parts(void) {
    struct lmp_model *m = open_stories();
    if (m == NULL) return;
    const char           *tp  = check_shared_file(0, "models/stories260K/tok512.bin");
    struct lmp_tokenizer *tok = NULL;
    struct lmp_err        err = {0};
    CHECK(tp && lmp_tokenizer_open(tp, m, &tok, &err) == LMP_OK);
    enum { NS = 2 * LMP_CALIB_GEN_CHUNK + 5, CTX = 12, N = NS * CTX };
    int32_t *one = calloc(N, sizeof(int32_t)), *sum = calloc(N, sizeof(int32_t));
    int32_t *part = calloc(N, sizeof(int32_t)), *other = calloc(N, sizeof(int32_t));
    CHECK(one && sum && part && other && tok);
    if (one && sum && part && other && tok) {
        CHECK(lmp_calib_generate_part(one, m, tok, NS, CTX, 7, 0, 1, 1, &err) == LMP_OK);
        for (int p = 0; p < 3; p++) { /* parts 0-2 of 4: part 3 has no chunk of the 3 */
            memset(part, 0, N * sizeof(int32_t));
            CHECK(lmp_calib_generate_part(part, m, tok, NS, CTX, 7, p, 4, 1, &err) == LMP_OK);
            for (int i = 0; i < N; i++) {
                const int chunk = i / (CTX * LMP_CALIB_GEN_CHUNK);
                if (chunk % 4 != p) CHECK(part[i] == 0); /* other parts' chunks untouched */
                sum[i] += part[i];
            }
        }
        CHECK(memcmp(one, sum, N * sizeof(int32_t)) == 0);
        for (int s = 0; s < NS; s++) CHECK(one[s * CTX] == lmp_tokenizer_bos(tok));
        for (int i = 0; i < N; i++) CHECK(one[i] >= 0 && one[i] < m->cfg.vocab_size);
        /* chunks differ from each other, and another seed gives other text */
        CHECK(memcmp(one, one + CTX * LMP_CALIB_GEN_CHUNK, CTX * sizeof(int32_t)) != 0);
        CHECK(lmp_calib_generate_part(other, m, tok, NS, CTX, 8, 0, 1, 1, &err) == LMP_OK);
        CHECK(memcmp(one, other, N * sizeof(int32_t)) != 0);
    }
    free(one);
    free(sum);
    free(part);
    free(other);
    lmp_tokenizer_free(&tok);
    lmp_model_close(&m);
}

int main(void) {
    RUN(test_sample_text_reproducible);
    RUN(test_grams_match_direct);
    RUN(test_sequential_vs_independent);
    RUN(test_generate_reproducible);
    RUN(test_generate_parts);
    return check_report();
}
