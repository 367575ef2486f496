/*  test_block_grad - the training-mode block forward against lmp_transformer_block, and
 *  the backward pass against central finite differences of L = sum(R * block(x)) (R a
 *  fixed random tensor, so dL/dy = R) on tiny blocks: both RoPE pair orders, grouped- and
 *  multi-query attention, with and without biases, and the blocks beyond llama's: per-head
 *  q/k norms (Qwen3); Gemma 3's post norms, GeGLU, attention scale and a local block with
 *  a sliding window and its own RoPE base; Gemma 2's attention soft-cap (small enough that
 *  removing it changes the block's output by over 10 %); YaRN-scaled RoPE on half of a
 *  head. Every parameter kind
 * is checked two ways: the directional derivative along a random direction over all its entries,
 * and a sample of single entries. Also the AQ chain: codebook and scale gradients from aq_grad_dw
 * of the backward's dW against finite differences through the decode.
 */
#include "worker/block_grad.h"
#include "model/rope.h" /* defines: lmp_rope_block_is_local */
#include "model/transformer.h"
#include "kernels/kernels.h" /* defines: lmp_kernels_get, struct lmp_aq_shape */
#include "tests/check.h"     /* defines: CHECK, CHECK_NEAR, RUN, check_report */

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

enum { DIM = 16, HD = 4, HIDDEN = 24, T = 7, N_SEQ = 2, VOCAB = 11 };

struct spec {
    enum lmp_rope rope;
    int           n_heads, n_kv_heads;
    bool          bias; /* q/k/v biases (Qwen2); all_bias: every linear */
    bool          all_bias;
    /* beyond the llama block */
    bool qk_norm;  /* per-head q/k RMSNorm (Qwen3, Gemma 3) */
    bool gemma;    /* post norms, GeGLU, attn_scale, a local block with a 3-key window */
    bool rope_var; /* YaRN scaling (magnitude != 1) and a rope_freqs divisor on half of the
                      head's dimensions */
    bool softcap;  /* Gemma 2: attention scores soft-capped at SOFTCAP (scale 1, so it bites) */
};

#define SOFTCAP 1.0f

static const struct spec specs[] = {
    {LMP_ROPE_INTERLEAVED, 4, 2, false, false, false, false, false, false},
    {LMP_ROPE_HALF, 4, 2, true, false, false, false, false, false},
    {LMP_ROPE_INTERLEAVED, 2, 1, true, true, false, false, false,
     false},                                                         /* multi-query, all biases */
    {LMP_ROPE_HALF, 3, 3, false, false, false, false, false, false}, /* plain multi-head */
    {LMP_ROPE_HALF, 4, 2, false, false, true, false, false, false},  /* Qwen3 */
    {LMP_ROPE_HALF, 4, 1, false, false, true, true, false, false},   /* Gemma 3, local block */
    {LMP_ROPE_INTERLEAVED, 2, 2, false, false, false, false, true,
     false},                                                       /* scaled, partial RoPE */
    {LMP_ROPE_HALF, 4, 2, false, false, false, true, false, true}, /* Gemma 2, local block */
};
enum { N_SPECS = sizeof(specs) / sizeof(specs[0]) };

/* Owned, mutable parameters of one block plus the const view the API takes. */
struct block {
    struct lmp_config cfg;
    float            *norm[2]; /* attn, ffn (DIM) */
    float            *qk[2];   /* q_norm, k_norm (HD) or NULL */
    float            *post[2]; /* post_attn_norm, post_ffn_norm (DIM) or NULL */
    float            *w[LMP_LIN_COUNT], *b[LMP_LIN_COUNT];
    int64_t           n_out[LMP_LIN_COUNT], n_in[LMP_LIN_COUNT];
};

static float *rnd(int64_t n, uint64_t seed, float scale, float offset) {
    float *p = calloc((size_t)n, sizeof(float));
    check_fill_random(p, n, seed);
    for (int64_t i = 0; i < n; i++) p[i] = p[i] * scale + offset;
    return p;
}

static void block_init(struct block *b, const struct spec *sp, uint64_t seed) {
    memset(b, 0, sizeof(*b));
    struct lmp_config *c = &b->cfg;
    c->arch              = LMP_ARCH_LLAMA;
    c->format            = LMP_FORMAT_GGUF;
    c->n_layers          = 1;
    c->dim               = DIM;
    c->hidden_dim        = HIDDEN;
    c->n_heads           = sp->n_heads;
    c->n_kv_heads        = sp->n_kv_heads;
    c->head_dim          = HD;
    c->vocab_size        = VOCAB;
    c->max_seq           = 32;
    c->rope_theta        = 100.0f;
    c->norm_eps          = 1e-5f;
    c->rope              = sp->rope;
    c->qkv_bias          = sp->bias;
    c->qk_norm           = sp->qk_norm;
    if (sp->gemma) {
        c->post_norms       = true;
        c->ffn_act          = LMP_ACT_GELU_TANH;
        c->attn_scale       = 0.3f;
        c->sliding_window   = 3; /* block 0 of a 2-pattern is local: 3 keys of T = 7 */
        c->swa_pattern      = 2;
        c->rope_theta_local = 10.0f;
    }
    if (sp->softcap) { /* Gemma 2: one RoPE base, scores soft-capped */
        c->attn_scale       = 1.0f;
        c->rope_theta_local = 0;
        c->attn_softcap     = SOFTCAP;
    }
    if (sp->rope_var) {
        c->rope_dims                  = HD / 2;
        c->rope_scaling               = LMP_ROPE_SCALING_YARN;
        c->rope_factor                = 4.0f;
        c->rope_orig_max_seq          = 8;
        c->rope_beta_fast             = 32.0f;
        c->rope_beta_slow             = 1.0f;
        static const float ff[HD / 4] = {2.5f}; /* GGUF rope_freqs divisors, one per pair */
        c->rope_freq_factors          = ff;
    }
    const int64_t qd = (int64_t)sp->n_heads * HD, kd = (int64_t)sp->n_kv_heads * HD;
    const int64_t shp[LMP_LIN_COUNT][2] = {{qd, DIM},     {kd, DIM},     {kd, DIM},    {DIM, qd},
                                           {HIDDEN, DIM}, {HIDDEN, DIM}, {DIM, HIDDEN}};
    b->norm[0]                          = rnd(DIM, seed++, 0.3f, 1.0f);
    b->norm[1]                          = rnd(DIM, seed++, 0.3f, 1.0f);
    for (int i = 0; i < 2; i++) {
        if (sp->qk_norm) b->qk[i] = rnd(HD, seed++, 0.3f, 1.0f);
        if (sp->gemma) b->post[i] = rnd(DIM, seed++, 0.3f, 1.0f);
    }
    for (int k = 0; k < LMP_LIN_COUNT; k++) {
        b->n_out[k] = shp[k][0];
        b->n_in[k]  = shp[k][1];
        /* ~1/sqrt(n_in) keeps activations O(1); larger q/k make attention peaked */
        float sc = (k <= LMP_LIN_K ? 2.5f : 1.0f) / sqrtf((float)shp[k][1]);
        b->w[k]  = rnd(shp[k][0] * shp[k][1], seed++, sc, 0.0f);
        if (sp->all_bias || (sp->bias && k <= LMP_LIN_V))
            b->b[k] = rnd(shp[k][0], seed++, 0.5f, 0.0f);
    }
}

static void block_free(struct block *b) {
    for (int i = 0; i < 2; i++) {
        free(b->norm[i]);
        free(b->qk[i]);
        free(b->post[i]);
    }
    for (int k = 0; k < LMP_LIN_COUNT; k++) {
        free(b->w[k]);
        free(b->b[k]);
    }
}

static struct lmp_block_params view(const struct block *b) {
    struct lmp_block_params p = {.attn_norm      = b->norm[0],
                                 .ffn_norm       = b->norm[1],
                                 .q_norm         = b->qk[0],
                                 .k_norm         = b->qk[1],
                                 .post_attn_norm = b->post[0],
                                 .post_ffn_norm  = b->post[1],
                                 .local          = lmp_rope_block_is_local(&b->cfg, 0)};
    for (int k = 0; k < LMP_LIN_COUNT; k++) {
        p.w[k] = b->w[k];
        p.b[k] = b->b[k];
    }
    return p;
}

/* L = sum R * block(x), in double. */
static double loss(struct lmp_block_grad *bg, const struct block *b, const float *x, const float *r,
                   float *y) {
    struct lmp_block_params p = view(b);
    lmp_block_grad_forward(bg, &p, x, N_SEQ, y);
    double L = 0;
    for (int64_t i = 0; i < (int64_t)N_SEQ * T * DIM; i++) L += (double)r[i] * y[i];
    return L;
}

/* ---- forward equals the inference forward pass ------------------------------------------ */

static struct lmp_tensor *tensor(struct lmp_model *m, const char *name, float *data, int64_t d0,
                                 int64_t d1) {
    struct lmp_tensor *t = &m->tensors[m->n_tensors++];
    snprintf(t->name, sizeof(t->name), "%s", name);
    t->dtype    = LMP_DTYPE_F32;
    t->n_dims   = d1 ? 2 : 1;
    t->shape[0] = d0;
    t->shape[1] = d1;
    t->data     = data;
    t->nbytes   = (uint64_t)(d1 ? d0 * d1 : d0) * 4;
    return t;
}

static void test_forward_matches_transformer(void) {
    for (int si = 0; si < N_SPECS; si++) {
        if (specs[si].all_bias) continue; /* the model format has biases on q/k/v only */
        struct block b;
        block_init(&b, &specs[si], 10 + si);
        struct lmp_model *m = lmp_model_alloc(1);
        m->cfg              = b.cfg;
        m->path             = strdup("test-block");
        m->tensors          = calloc(32, sizeof(*m->tensors));
        float *emb = rnd(VOCAB * DIM, 1, 1.0f, 0.0f), *on = rnd(DIM, 2, 0.0f, 1.0f);
        m->tok_emb = m->output = tensor(m, "tok_emb", emb, VOCAB, DIM);
        m->cfg.tied_embeddings = true;
        m->out_norm            = tensor(m, "out_norm", on, DIM, 0);
        m->blocks[0].attn_norm = tensor(m, "attn_norm", b.norm[0], DIM, 0);
        m->blocks[0].ffn_norm  = tensor(m, "ffn_norm", b.norm[1], DIM, 0);
        if (b.qk[0]) {
            m->blocks[0].q_norm = tensor(m, "q_norm", b.qk[0], HD, 0);
            m->blocks[0].k_norm = tensor(m, "k_norm", b.qk[1], HD, 0);
        }
        if (b.post[0]) {
            m->blocks[0].post_attn_norm = tensor(m, "post_attn_norm", b.post[0], DIM, 0);
            m->blocks[0].post_ffn_norm  = tensor(m, "post_ffn_norm", b.post[1], DIM, 0);
        }
        for (int k = 0; k < LMP_LIN_COUNT; k++) {
            m->blocks[0].lin[k].weight = tensor(m, lmp_lin_name(k), b.w[k], b.n_out[k], b.n_in[k]);
            if (b.b[k]) m->blocks[0].lin[k].bias = tensor(m, "bias", b.b[k], b.n_out[k], 0);
        }
        struct lmp_err err = {0};
        CHECK(lmp_model_finish(m, &err) == LMP_OK);
        struct lmp_transformer *tf = NULL;
        CHECK(lmp_transformer_new(m, NULL, &tf, &err) == LMP_OK);
        float *x    = rnd(N_SEQ * T * DIM, 77 + si, 1.0f, 0.0f);
        float *want = malloc(sizeof(float) * N_SEQ * T * DIM),
              *got  = malloc(sizeof(float) * N_SEQ * T * DIM);
        memcpy(want, x, sizeof(float) * N_SEQ * T * DIM);
        CHECK(lmp_transformer_block(tf, 0, NULL, want, N_SEQ, T, NULL, &err) == LMP_OK);
        struct lmp_block_grad *bg = NULL;
        CHECK(lmp_block_grad_new(&b.cfg, N_SEQ, T, &bg) == LMP_OK);
        struct lmp_block_params p = view(&b);
        lmp_block_grad_forward(bg, &p, x, N_SEQ, got);
        double md = 0, mx = 0;
        for (int i = 0; i < N_SEQ * T * DIM; i++) {
            md = fmax(md, fabs((double)got[i] - want[i]));
            mx = fmax(mx, fabs((double)want[i]));
        }
        CHECK(mx > 0.1); /* not a degenerate block */
        CHECK(md <= 1e-5 * mx);
        if (md > 1e-5 * mx) fprintf(stderr, "  spec %d: max diff %g (max %g)\n", si, md, mx);
        if (specs[si].softcap) { /* the cap bites: without it the output moves */
            struct lmp_config      c0  = b.cfg;
            struct lmp_block_grad *bg0 = NULL;
            c0.attn_softcap            = 0;
            CHECK(lmp_block_grad_new(&c0, N_SEQ, T, &bg0) == LMP_OK);
            lmp_block_grad_forward(bg0, &p, x, N_SEQ, got);
            double d0 = 0;
            for (int i = 0; i < N_SEQ * T * DIM; i++) d0 = fmax(d0, fabs((double)got[i] - want[i]));
            fprintf(stderr, "  spec %d: without the soft-cap max diff %.3g (max %.3g)\n", si, d0,
                    mx);
            CHECK(d0 > 0.1 * mx);
            lmp_block_grad_destroy(&bg0);
        }
        lmp_block_grad_destroy(&bg);
        lmp_transformer_destroy(&tf);
        for (int64_t i = 0; i < m->n_tensors; i++) m->tensors[i].data = NULL;
        free(emb);
        free(on);
        free(x);
        free(want);
        free(got);
        lmp_model_close(&m);
        block_free(&b);
    }
}

/* ---- backward against finite differences ------------------------------------------------ */

struct fd_ctx {
    struct lmp_block_grad *bg;
    struct block          *b;
    float                 *x, *r, *y;
};

/* Central differences of L along direction d of the n floats at v (eps scaled to v). */
static double fd_dir(struct fd_ctx *c, float *v, const float *d, int64_t n, double eps) {
    float *save = malloc((size_t)n * sizeof(float));
    memcpy(save, v, (size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) v[i] = (float)(save[i] + eps * d[i]);
    double lp = loss(c->bg, c->b, c->x, c->r, c->y);
    for (int64_t i = 0; i < n; i++) v[i] = (float)(save[i] - eps * d[i]);
    double lm = loss(c->bg, c->b, c->x, c->r, c->y);
    memcpy(v, save, (size_t)n * sizeof(float));
    free(save);
    return (lp - lm) / (2.0 * eps);
}

/* Check the analytic gradient g (n) of the tensor v (n): along a random direction, and at
 * a few single entries. Returns the number of failed comparisons (also CHECKed). */
static int check_tensor(struct fd_ctx *c, const char *what, float *v, const float *g, int64_t n,
                        uint64_t seed) {
    int    bad = 0;
    float *d   = rnd(n, seed, 1.0f, 0.0f);
    double an = 0, gn = 0;
    for (int64_t i = 0; i < n; i++) {
        an += (double)g[i] * d[i];
        gn += (double)g[i] * g[i];
    }
    double fd = fd_dir(c, v, d, n, 1e-3);
    /* rounding of L in fp32 is ~1e-7 |L|; divided by 2 eps it stays far below 1e-3 |grad| */
    double tol = 1e-2 * fabs(an) + 1e-3 * sqrt(gn) + 1e-4;
    if (!(fabs(fd - an) <= tol)) {
        fprintf(stderr, "  %s: directional analytic %.6g fd %.6g\n", what, an, fd);
        bad++;
    }
    CHECK(gn > 0); /* every parameter kind affects the loss */
    for (int s = 0; s < 4; s++) {
        int64_t i = (int64_t)((seed * 2654435761u + (uint64_t)s * 97u) % (uint64_t)n);
        memset(d, 0, (size_t)n * sizeof(float));
        d[i]      = 1.0f;
        double f1 = fd_dir(c, v, d, n, 1e-3);
        double t1 = 2e-2 * fabs(g[i]) + 2e-3 * sqrt(gn / (double)n) + 2e-4;
        if (!(fabs(f1 - g[i]) <= t1)) {
            fprintf(stderr, "  %s[%lld]: analytic %.6g fd %.6g\n", what, (long long)i, g[i], f1);
            bad++;
        }
    }
    CHECK(bad == 0);
    free(d);
    return bad;
}

static void test_backward_matches_finite_differences(void) {
    for (int si = 0; si < N_SPECS; si++) {
        struct block b;
        block_init(&b, &specs[si], 200 + 10 * si);
        struct lmp_block_grad *bg = NULL;
        CHECK(lmp_block_grad_new(&b.cfg, N_SEQ, T, &bg) == LMP_OK);
        const int64_t n_act = (int64_t)N_SEQ * T * DIM;
        float        *x = rnd(n_act, 300 + si, 1.0f, 0.0f), *r = rnd(n_act, 400 + si, 1.0f, 0.0f);
        float        *y = malloc(sizeof(float) * n_act), *dx = malloc(sizeof(float) * n_act);
        struct lmp_block_grads g = {.attn_norm = calloc(DIM, 4), .ffn_norm = calloc(DIM, 4)};
        if (b.qk[0]) g.q_norm = calloc(HD, 4), g.k_norm = calloc(HD, 4);
        if (b.post[0]) g.post_attn_norm = calloc(DIM, 4), g.post_ffn_norm = calloc(DIM, 4);
        for (int k = 0; k < LMP_LIN_COUNT; k++) {
            g.w[k] = calloc((size_t)(b.n_out[k] * b.n_in[k]), 4);
            g.b[k] = calloc((size_t)b.n_out[k], 4);
        }
        struct lmp_block_params p = view(&b);
        lmp_block_grad_forward(bg, &p, x, N_SEQ, y);
        lmp_block_grad_backward(bg, &p, r, dx, &g);

        struct fd_ctx c = {bg, &b, x, r, y};
        char          what[64];
        int           bad = 0;
        snprintf(what, sizeof(what), "spec %d attn_norm", si);
        bad += check_tensor(&c, what, b.norm[0], g.attn_norm, DIM, 1);
        snprintf(what, sizeof(what), "spec %d ffn_norm", si);
        bad += check_tensor(&c, what, b.norm[1], g.ffn_norm, DIM, 2);
        static const char *const extra[4] = {"q_norm", "k_norm", "post_attn_norm", "post_ffn_norm"};
        float                   *ev[4]    = {b.qk[0], b.qk[1], b.post[0], b.post[1]};
        float                   *eg[4]    = {g.q_norm, g.k_norm, g.post_attn_norm, g.post_ffn_norm};
        for (int e = 0; e < 4; e++) {
            if (ev[e] == NULL) continue;
            snprintf(what, sizeof(what), "spec %d %s", si, extra[e]);
            bad += check_tensor(&c, what, ev[e], eg[e], e < 2 ? HD : DIM, 40 + e);
        }
        for (int k = 0; k < LMP_LIN_COUNT; k++) {
            snprintf(what, sizeof(what), "spec %d %s weight", si, lmp_lin_name(k));
            bad += check_tensor(&c, what, b.w[k], g.w[k], b.n_out[k] * b.n_in[k], 10 + k);
            if (b.b[k]) {
                snprintf(what, sizeof(what), "spec %d %s bias", si, lmp_lin_name(k));
                bad += check_tensor(&c, what, b.b[k], g.b[k], b.n_out[k], 20 + k);
            } else {
                for (int64_t o = 0; o < b.n_out[k]; o++) CHECK(g.b[k][o] == 0.0f); /* untouched */
            }
        }
        snprintf(what, sizeof(what), "spec %d input", si);
        bad += check_tensor(&c, what, x, dx, n_act, 30);

        /* accumulation: a second backward adds the same gradient again */
        float w0 = g.w[LMP_LIN_DOWN][5], n0 = g.attn_norm[3];
        lmp_block_grad_forward(bg, &p, x, N_SEQ, y);
        lmp_block_grad_backward(bg, &p, r, NULL, &g);
        CHECK_NEAR(g.w[LMP_LIN_DOWN][5], 2.0f * w0, 1e-5 * (1 + fabsf(w0)));
        CHECK_NEAR(g.attn_norm[3], 2.0f * n0, 1e-5 * (1 + fabsf(n0)));
        if (bad) fprintf(stderr, "  spec %d: %d mismatches\n", si, bad);

        free(g.attn_norm);
        free(g.ffn_norm);
        free(g.q_norm);
        free(g.k_norm);
        free(g.post_attn_norm);
        free(g.post_ffn_norm);
        for (int k = 0; k < LMP_LIN_COUNT; k++) {
            free(g.w[k]);
            free(g.b[k]);
        }
        free(x);
        free(r);
        free(y);
        free(dx);
        lmp_block_grad_destroy(&bg);
        block_free(&b);
    }
}

/* ---- the AQ chain: dL/dcodebooks, dL/dscales through the decode -------------------------- */

static void test_aq_gradient_through_decode(void) {
    struct block b;
    block_init(&b, &specs[1], 500);
    const int           k    = LMP_LIN_GATE;
    struct lmp_aq_shape s    = {.n_out = b.n_out[k], .n_in = b.n_in[k], .M = 2, .K = 4, .g = 4};
    const int64_t       n_cb = (int64_t)s.M * s.K * s.g, n_codes = s.n_out * s.n_in / s.g * s.M;
    float              *cb = rnd(n_cb, 501, 0.3f, 0.0f), *scale = rnd(s.n_out, 502, 0.2f, 0.6f);
    uint16_t           *codes = malloc((size_t)n_codes * sizeof(uint16_t));
    for (int64_t i = 0; i < n_codes; i++) codes[i] = (uint16_t)((i * 7 + i / 3) % s.K);
    const struct lmp_kernels *kt = lmp_kernels_get();
    kt->aq_decode(b.w[k], codes, cb, scale, &s);

    struct lmp_block_grad *bg = NULL;
    CHECK(lmp_block_grad_new(&b.cfg, N_SEQ, T, &bg) == LMP_OK);
    const int64_t n_act = (int64_t)N_SEQ * T * DIM;
    float        *x = rnd(n_act, 503, 1.0f, 0.0f), *r = rnd(n_act, 504, 1.0f, 0.0f);
    float        *y  = malloc(sizeof(float) * n_act);
    float        *dw = calloc((size_t)(s.n_out * s.n_in), 4), *gcb = malloc(sizeof(float) * n_cb);
    float        *gsc         = malloc(sizeof(float) * s.n_out);
    struct lmp_block_grads g  = {0};
    g.w[k]                    = dw;
    struct lmp_block_params p = view(&b);
    lmp_block_grad_forward(bg, &p, x, N_SEQ, y);
    lmp_block_grad_backward(bg, &p, r, NULL, &g);
    CHECK(kt->aq_grad_dw(gcb, gsc, dw, codes, cb, scale, &s) == 0);

    /* finite differences: perturb a codebook entry or a scale, decode, run the block */
    const double eps = 1e-3;
    int          bad = 0;
    for (int q = 0; q < 12; q++) {
        bool   is_cb = q < 8;
        float *v     = is_cb ? &cb[(q * 5 + 1) % n_cb] : &scale[(q * 3) % s.n_out];
        double an    = is_cb ? gcb[(q * 5 + 1) % n_cb] : gsc[(q * 3) % s.n_out];
        float  v0    = *v;
        *v           = (float)(v0 + eps);
        kt->aq_decode(b.w[k], codes, cb, scale, &s);
        double lp = loss(bg, &b, x, r, y);
        *v        = (float)(v0 - eps);
        kt->aq_decode(b.w[k], codes, cb, scale, &s);
        double lm = loss(bg, &b, x, r, y);
        *v        = v0;
        double fd = (lp - lm) / (2 * eps);
        if (!(fabs(fd - an) <= 2e-2 * fabs(an) + 2e-3)) {
            fprintf(stderr, "  %s %d: analytic %.6g fd %.6g\n", is_cb ? "codebook" : "scale", q, an,
                    fd);
            bad++;
        }
    }
    CHECK(bad == 0);
    double gn = 0;
    for (int64_t i = 0; i < n_cb; i++) gn += (double)gcb[i] * gcb[i];
    CHECK(gn > 0);
    free(x);
    free(r);
    free(y);
    free(dw);
    free(gcb);
    free(gsc);
    free(cb);
    free(scale);
    free(codes);
    lmp_block_grad_destroy(&bg);
    block_free(&b);
}

static void test_rejects_bad_shapes(void) {
    struct block b;
    block_init(&b, &specs[0], 1);
    struct lmp_block_grad *bg = (struct lmp_block_grad *)&b; /* must be reset to NULL */
    CHECK(lmp_block_grad_new(&b.cfg, 0, T, &bg) == LMP_EINVAL && bg == NULL);
    CHECK(lmp_block_grad_new(&b.cfg, 1, 0, &bg) == LMP_EINVAL);
    struct lmp_config c = b.cfg;
    c.head_dim          = 3;
    CHECK(lmp_block_grad_new(&c, 1, T, &bg) == LMP_EINVAL);
    c            = b.cfg;
    c.n_kv_heads = 3; /* 4 heads do not split into 3 */
    CHECK(lmp_block_grad_new(&c, 1, T, &bg) == LMP_EINVAL);
    lmp_block_grad_destroy(&bg); /* NULL: safe */
    block_free(&b);
}

int main(void) {
    RUN(test_forward_matches_transformer);
    RUN(test_backward_matches_finite_differences);
    RUN(test_aq_gradient_through_decode);
    RUN(test_rejects_bad_shapes);
    return check_report();
}
