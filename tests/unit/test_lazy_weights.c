/*  test_lazy_weights - the transformer's lazy per-block weights (opts.lazy_weights) give
 *  bit-identical block outputs, logits and calibration Gram matrices to the eager path;
 *  releasing a block frees only what loading filled and drops the file pages of its
 *  source tensors without changing what a later read sees; lmp_map_release_pages leaves
 *  non-map memory alone. The model is tiny, F16 linears and embeddings (so the lazy path
 *  really dequantizes), written to a temporary file and mapped like a checkpoint.
 */
#include "model/transformer.h"
#include "worker/calib.h"
#include "kernels/kernels.h" /* defines: lmp_f32_to_f16 */
#include "base/file.h"       /* defines: lmp_map_open, lmp_map_release_pages */
#include "tests/check.h"     /* defines: CHECK, RUN, check_report, check_fill_random */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum {
    DIM     = 64,
    HD      = 16,
    NH      = 4,
    NKV     = 2,
    HIDDEN  = 96,
    VOCAB   = 50,
    LAYERS  = 3,
    MAX_SEQ = 64,
    N_SEQ   = 3,
    N_TOK   = 21
};

/* ---- a mapped model ------------------------------------------------------------------- */

struct src {
    struct lmp_map map;
};

static void src_close(void *p) {
    struct src *s = p;
    lmp_map_close(&s->map);
    free(s);
}

struct layout {
    uint8_t *buf; /* file image */
    size_t   size, cap;
};

/* Append a tensor of random values (scale, offset) as dtype at a 64-byte aligned offset;
 * its data pointer holds the offset until the file is mapped. */
static struct lmp_tensor *put(struct lmp_model *m, struct layout *L, const char *name,
                              enum lmp_dtype dt, int n_dims, int64_t d0, int64_t d1, uint64_t seed,
                              float scale, float offset) {
    struct lmp_tensor *t = &m->tensors[m->n_tensors++];
    snprintf(t->name, sizeof(t->name), "%s", name);
    t->dtype        = dt;
    t->n_dims       = n_dims;
    t->shape[0]     = d0;
    t->shape[1]     = d1;
    const int64_t n = n_dims == 1 ? d0 : d0 * d1;
    const size_t  w = dt == LMP_DTYPE_F32 ? 4 : 2, off = (L->size + 63) / 64 * 64;
    t->nbytes = (uint64_t)n * w;
    while (off + t->nbytes > L->cap) {
        L->cap = L->cap ? 2 * L->cap : 1 << 16;
        L->buf = realloc(L->buf, L->cap);
    }
    memset(L->buf + L->size, 0, off - L->size);
    float *v = malloc((size_t)n * sizeof(float));
    check_fill_random(v, n, seed);
    for (int64_t i = 0; i < n; i++) {
        float x = v[i] * scale + offset;
        if (dt == LMP_DTYPE_F32)
            memcpy(L->buf + off + 4 * (size_t)i, &x, 4);
        else {
            uint16_t h = lmp_f32_to_f16(x);
            memcpy(L->buf + off + 2 * (size_t)i, &h, 2);
        }
    }
    free(v);
    t->data = (const void *)(uintptr_t)off;
    L->size = off + t->nbytes;
    return t;
}

static struct lmp_model *build(bool bias, char *path, size_t path_cap) {
    struct lmp_model  *m = lmp_model_alloc(LAYERS);
    struct lmp_config *c = &m->cfg;
    c->arch              = LMP_ARCH_LLAMA;
    c->format            = LMP_FORMAT_HF;
    c->dim               = DIM;
    c->hidden_dim        = HIDDEN;
    c->n_heads           = NH;
    c->n_kv_heads        = NKV;
    c->head_dim          = HD;
    c->vocab_size        = VOCAB;
    c->max_seq           = MAX_SEQ;
    c->rope_theta        = 10000.0f;
    c->norm_eps          = 1e-5f;
    c->rope              = LMP_ROPE_HALF;
    m->path              = strdup("lazy-test-model");
    m->tensors           = calloc(64, sizeof(*m->tensors));
    struct layout L      = {0};
    uint64_t      seed   = 7;
    m->tok_emb           = put(m, &L, "tok_emb", LMP_DTYPE_F16, 2, VOCAB, DIM, seed++, 1.0f, 0.0f);
    m->out_norm          = put(m, &L, "out_norm", LMP_DTYPE_F32, 1, DIM, 0, seed++, 0.3f, 1.0f);
    m->output            = put(m, &L, "output", LMP_DTYPE_F16, 2, VOCAB, DIM, seed++, 0.5f, 0.0f);
    const int64_t qd = NH * HD, kd = NKV * HD;
    const int64_t shp[LMP_LIN_COUNT][2] = {{qd, DIM},     {kd, DIM},     {kd, DIM},    {DIM, qd},
                                           {HIDDEN, DIM}, {HIDDEN, DIM}, {DIM, HIDDEN}};
    for (int b = 0; b < LAYERS; b++) {
        struct lmp_block *blk = &m->blocks[b];
        blk->attn_norm = put(m, &L, "attn_norm", LMP_DTYPE_F32, 1, DIM, 0, seed++, 0.3f, 1.0f);
        blk->ffn_norm  = put(m, &L, "ffn_norm", LMP_DTYPE_F32, 1, DIM, 0, seed++, 0.3f, 1.0f);
        for (int k = 0; k < LMP_LIN_COUNT; k++) {
            float sc = (k <= LMP_LIN_K ? 2.5f : 1.0f) / sqrtf((float)shp[k][1]);
            /* one F32 linear per block: the lazy path points into the map, copies nothing */
            enum lmp_dtype dt = k == LMP_LIN_O ? LMP_DTYPE_F32 : LMP_DTYPE_F16;
            blk->lin[k].weight =
                put(m, &L, lmp_lin_name(k), dt, 2, shp[k][0], shp[k][1], seed++, sc, 0.0f);
            if (bias && k <= LMP_LIN_V)
                blk->lin[k].bias =
                    put(m, &L, "bias", LMP_DTYPE_F16, 1, shp[k][0], 0, seed++, 0.5f, 0.0f);
        }
    }
    snprintf(path, path_cap, "%s/lmp_lazy_XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    CHECK(write(fd, L.buf, L.size) == (ssize_t)L.size);
    close(fd);
    free(L.buf);
    struct src    *s   = calloc(1, sizeof(*s));
    struct lmp_err err = {0};
    CHECK(lmp_map_open(&s->map, path, &err) == LMP_OK);
    m->src       = s;
    m->src_close = src_close;
    for (int64_t i = 0; i < m->n_tensors; i++)
        m->tensors[i].data = s->map.data + (uintptr_t)m->tensors[i].data;
    enum lmp_status st = lmp_model_finish(m, &err);
    if (st != LMP_OK) fprintf(stderr, "finish: %s\n", err.msg);
    CHECK(st == LMP_OK);
    return m;
}

static struct lmp_transformer *make_tf(const struct lmp_model *m, bool lazy) {
    struct lmp_transformer_opts o   = {.n_threads = 2, .lazy_weights = lazy};
    struct lmp_transformer     *tf  = NULL;
    struct lmp_err              err = {0};
    CHECK(lmp_transformer_new(m, &o, &tf, &err) == LMP_OK);
    return tf;
}

static void fill_tokens(int32_t *tok, int64_t n, uint32_t seed) {
    for (int64_t i = 0; i < n; i++) {
        seed   = seed * 1664525u + 1013904223u;
        tok[i] = (int32_t)((seed >> 8) % VOCAB);
    }
}

enum { ROWS = N_SEQ * N_TOK };

/* ---- tests -------------------------------------------------------------------------------- */

/* Block by block, releasing each lazy block after use: the same bits as the eager model;
 * then the whole forward (blocks reload) and the logits and NLL after loading the head. */
static void test_lazy_blocks_and_logits_identical(void) {
    for (int bias = 0; bias <= 1; bias++) {
        char                    path[256];
        struct lmp_model       *m = build(bias, path, sizeof(path));
        struct lmp_transformer *e = make_tf(m, false), *l = make_tf(m, true);
        struct lmp_err          err = {0};
        int32_t                 tok[ROWS];
        static float            xe[ROWS * DIM], xl[ROWS * DIM], le[ROWS * VOCAB], ll[ROWS * VOCAB];
        fill_tokens(tok, ROWS, 11u + (uint32_t)bias);
        CHECK(lmp_transformer_linop(l, 0, LMP_LIN_Q)->w == NULL); /* nothing loaded yet */
        CHECK(lmp_transformer_embed(e, tok, ROWS, xe, &err) == LMP_OK);
        CHECK(lmp_transformer_embed(l, tok, ROWS, xl, &err) == LMP_OK);
        CHECK(memcmp(xe, xl, sizeof(xe)) == 0);
        for (int32_t b = 0; b < LAYERS; b++) {
            CHECK(lmp_transformer_block(e, b, NULL, xe, N_SEQ, N_TOK, NULL, &err) == LMP_OK);
            CHECK(lmp_transformer_block(l, b, NULL, xl, N_SEQ, N_TOK, NULL, &err) == LMP_OK);
            CHECK(memcmp(xe, xl, sizeof(xe)) == 0);
            CHECK(lmp_transformer_linop(l, b, LMP_LIN_DOWN)->w != NULL);
            CHECK((lmp_transformer_linop(l, b, LMP_LIN_Q)->bias != NULL) == (bias != 0));
            lmp_transformer_release_block(l, b);
            CHECK(lmp_transformer_linop(l, b, LMP_LIN_DOWN)->w == NULL);
            CHECK(lmp_transformer_linop(l, b, LMP_LIN_O)->w == NULL); /* F32: into the map */
            CHECK(lmp_transformer_linop(l, b, LMP_LIN_Q)->bias == NULL);
        }
        /* whole model twice on the lazy side: once fresh, once after releasing everything */
        for (int rep = 0; rep < 2; rep++) {
            CHECK(lmp_transformer_forward(e, NULL, tok, N_SEQ, N_TOK, xe, NULL, &err) == LMP_OK);
            CHECK(lmp_transformer_forward(l, NULL, tok, N_SEQ, N_TOK, xl, NULL, &err) == LMP_OK);
            CHECK(memcmp(xe, xl, sizeof(xe)) == 0);
            CHECK(lmp_transformer_load_head(l, &err) == LMP_OK);
            lmp_transformer_logits(e, xe, ROWS, le);
            lmp_transformer_logits(l, xl, ROWS, ll);
            CHECK(memcmp(le, ll, sizeof(le)) == 0);
            for (int32_t b = 0; b < LAYERS; b++) lmp_transformer_release_block(l, b);
            lmp_transformer_release_head(l);
        }
        double  ne[ROWS], nl[ROWS];
        int32_t tgt[ROWS];
        fill_tokens(tgt, ROWS, 5u);
        CHECK(lmp_transformer_hidden_nll(e, xe, ROWS, tgt, ne) == LMP_OK);
        CHECK(lmp_transformer_hidden_nll(l, xl, ROWS, tgt, nl) == LMP_OK); /* loads the head */
        CHECK(memcmp(ne, nl, sizeof(ne)) == 0);
        lmp_transformer_destroy(&l);
        lmp_transformer_destroy(&e);
        lmp_model_close(&m);
        unlink(path);
    }
}

/* The calibration walk (sequential: collect, advance) over an eager and a lazy transformer
 * yields identical Gram sums, token counts and block outputs. */
static void test_lazy_calib_grams_identical(void) {
    char                    path[256];
    struct lmp_model       *m      = build(true, path, sizeof(path));
    struct lmp_transformer *tf[2]  = {make_tf(m, false), make_tf(m, true)};
    struct lmp_calib       *cal[2] = {0};
    struct lmp_calib_grams *g[2]   = {lmp_calib_grams_new(&m->cfg), lmp_calib_grams_new(&m->cfg)};
    struct lmp_err          err    = {0};
    int32_t                 tok[ROWS];
    fill_tokens(tok, ROWS, 3u);
    for (int i = 0; i < 2; i++)
        CHECK(lmp_calib_new(tf[i], tok, N_SEQ, N_TOK, &cal[i], &err) == LMP_OK);
    lmp_transformer_release_head(tf[1]);
    for (int32_t b = 0; b < LAYERS; b++) {
        for (int i = 0; i < 2; i++) {
            lmp_calib_grams_reset(g[i]);
            CHECK(lmp_calib_collect(cal[i], b, g[i], &err) == LMP_OK);
        }
        for (int w = 0; w < LMP_INPUT_COUNT; w++) {
            const int64_t n = lmp_calib_grams_n_in(g[0], (enum lmp_input)w);
            CHECK(lmp_calib_grams_n_tok(g[0], (enum lmp_input)w) == ROWS);
            CHECK(lmp_calib_grams_n_tok(g[1], (enum lmp_input)w) == ROWS);
            CHECK(memcmp(lmp_calib_grams_sum(g[0], (enum lmp_input)w),
                         lmp_calib_grams_sum(g[1], (enum lmp_input)w),
                         (size_t)(n * n) * sizeof(double)) == 0);
        }
        CHECK(memcmp(lmp_calib_y(cal[0]), lmp_calib_y(cal[1]), sizeof(float) * ROWS * DIM) == 0);
        for (int i = 0; i < 2; i++) CHECK(lmp_calib_advance(cal[i], b, &err) == LMP_OK);
        lmp_transformer_release_block(tf[1], b);
        CHECK(memcmp(lmp_calib_x(cal[0]), lmp_calib_x(cal[1]), sizeof(float) * ROWS * DIM) == 0);
    }
    for (int i = 0; i < 2; i++) {
        lmp_calib_destroy(&cal[i]);
        lmp_calib_grams_destroy(&g[i]);
        lmp_transformer_destroy(&tf[i]);
    }
    lmp_model_close(&m);
    unlink(path);
}

/* An operator a stage installed survives release (only what loading filled is cleared),
 * and the block then runs with it and with the reloaded others, as the eager model does. */
static void test_release_keeps_installed_operator(void) {
    char                    path[256];
    struct lmp_model       *m = build(false, path, sizeof(path));
    struct lmp_transformer *e = make_tf(m, false), *l = make_tf(m, true);
    struct lmp_err          err = {0};
    static float            w[DIM * HIDDEN], xe[ROWS * DIM], xl[ROWS * DIM];
    check_fill_random(w, DIM * HIDDEN, 99);
    for (int i = 0; i < DIM * HIDDEN; i++) w[i] *= 0.1f;
    CHECK(lmp_transformer_load_block(l, 1, &err) == LMP_OK);
    CHECK(lmp_transformer_load_block(l, 1, &err) == LMP_OK); /* loaded: no-op */
    lmp_transformer_linop(l, 1, LMP_LIN_DOWN)->w = w;
    lmp_transformer_linop(e, 1, LMP_LIN_DOWN)->w = w;
    lmp_transformer_release_block(l, 1);
    CHECK(lmp_transformer_linop(l, 1, LMP_LIN_DOWN)->w == w);
    CHECK(lmp_transformer_linop(l, 1, LMP_LIN_UP)->w == NULL);
    check_fill_random(xe, ROWS * DIM, 4);
    memcpy(xl, xe, sizeof(xe));
    CHECK(lmp_transformer_block(e, 1, NULL, xe, N_SEQ, N_TOK, NULL, &err) == LMP_OK);
    CHECK(lmp_transformer_block(l, 1, NULL, xl, N_SEQ, N_TOK, NULL, &err) == LMP_OK);
    CHECK(memcmp(xe, xl, sizeof(xe)) == 0);
    lmp_transformer_release_block(e, 1); /* eager: no-op */
    CHECK(lmp_transformer_linop(e, 1, LMP_LIN_UP)->w != NULL);
    lmp_transformer_destroy(&l);
    lmp_transformer_destroy(&e);
    lmp_model_close(&m);
    unlink(path);
}

/* Pages of a map are dropped and read back unchanged; heap memory is never touched. */
static void test_map_release_pages(void) {
    const long   ps   = sysconf(_SC_PAGESIZE);
    const size_t n    = (size_t)ps * 4;
    uint8_t     *want = malloc(n);
    for (size_t i = 0; i < n; i++) want[i] = (uint8_t)(i * 131u + 7u);
    char path[256];
    snprintf(path, sizeof(path), "%s/lmp_pages_XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    CHECK(write(fd, want, n) == (ssize_t)n);
    close(fd);
    struct lmp_map map;
    struct lmp_err err = {0};
    CHECK(lmp_map_open(&map, path, &err) == LMP_OK);
    CHECK(memcmp(map.data, want, n) == 0);                               /* pages in */
    CHECK(lmp_map_release_pages(map.data + 1, n - 1) == n - (size_t)ps); /* whole pages only */
    CHECK(lmp_map_release_pages(map.data, n) == n);
    CHECK(memcmp(map.data, want, n) == 0);                 /* read back from the file */
    CHECK(lmp_map_release_pages(map.data + 10, 100) == 0); /* no whole page */
    CHECK(lmp_map_release_pages(map.data, n + 1) == 0);    /* crosses the map's end */
    CHECK(lmp_map_release_pages(NULL, n) == 0);
    uint8_t *heap = aligned_alloc((size_t)ps, n);
    memcpy(heap, want, n);
    CHECK(lmp_map_release_pages(heap, n) == 0);
    CHECK(memcmp(heap, want, n) == 0);
    free(heap);
    const uint8_t *old = map.data;
    lmp_map_close(&map);
    CHECK(lmp_map_release_pages(old, n) == 0); /* closed: forgotten */
    unlink(path);
    free(want);
}

int main(void) {
    RUN(test_lazy_blocks_and_logits_identical);
    RUN(test_lazy_calib_grams_identical);
    RUN(test_release_keeps_installed_operator);
    RUN(test_map_release_pages);
    return check_report();
}
