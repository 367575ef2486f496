/*  test_transformer - the batched forward pass against a plain one-token-at-a-time
 *  reference written here from the math (RMSNorm, RoPE in both pair orders and every scaled
 *  or partial variant, grouped-query
 *  causal attention, SwiGLU, biases, tied/untied output), on tiny random models built in
 *  memory; prefill + KV-cache decoding against the full forward; hooks; pluggable linears.
 */
#include "model/transformer.h"
#include "model/eval.h"
#include "tests/check.h" /* defines: CHECK, CHECK_NEAR, RUN, check_report */

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct spec {
    enum lmp_rope rope;
    bool          tied, bias;
    int           n_heads, n_kv_heads, n_threads;
};

enum { DIM = 48, HD = 8, HIDDEN = 40, VOCAB = 37, LAYERS = 2, MAX_SEQ = 160 };

/* ---- building a model ------------------------------------------------------------------ */

struct built {
    struct lmp_model *m;
    float            *data; /* every tensor's values, owned by m->src */
};

static struct lmp_tensor *add_tensor(struct lmp_model *m, float **cursor, const char *name,
                                     int n_dims, int64_t d0, int64_t d1, uint64_t seed, float scale,
                                     float offset) {
    struct lmp_tensor *t = &m->tensors[m->n_tensors++];
    snprintf(t->name, sizeof(t->name), "%s", name);
    t->dtype    = LMP_DTYPE_F32;
    t->n_dims   = n_dims;
    t->shape[0] = d0;
    t->shape[1] = d1;
    int64_t n   = n_dims == 1 ? d0 : d0 * d1;
    check_fill_random(*cursor, n, seed);
    for (int64_t i = 0; i < n; i++) (*cursor)[i] = (*cursor)[i] * scale + offset;
    t->data   = *cursor;
    t->nbytes = (uint64_t)n * 4;
    *cursor += n;
    return t;
}

static struct lmp_model *build(const struct spec *sp) {
    struct lmp_model  *m = lmp_model_alloc(LAYERS);
    struct lmp_config *c = &m->cfg;
    c->arch              = LMP_ARCH_LLAMA;
    c->format            = LMP_FORMAT_GGUF;
    c->dim               = DIM;
    c->hidden_dim        = HIDDEN;
    c->n_heads           = sp->n_heads;
    c->n_kv_heads        = sp->n_kv_heads;
    c->head_dim          = HD;
    c->vocab_size        = VOCAB;
    c->max_seq           = MAX_SEQ;
    c->rope_theta        = 500.0f;
    c->norm_eps          = 1e-5f;
    c->rope              = sp->rope;
    c->tied_embeddings   = sp->tied;
    m->path              = strdup("test-model");
    m->tensors           = calloc(64, sizeof(*m->tensors));
    float *data = malloc(200000 * sizeof(float)), *cur = data;
    m->src           = data;
    m->src_close     = free;
    const int64_t qd = (int64_t)sp->n_heads * HD, kd = (int64_t)sp->n_kv_heads * HD;
    uint64_t      seed = 100;
    m->tok_emb         = add_tensor(m, &cur, "tok_emb", 2, VOCAB, DIM, seed++, 1.0f, 0.0f);
    m->out_norm        = add_tensor(m, &cur, "out_norm", 1, DIM, 0, seed++, 0.3f, 1.0f);
    if (!sp->tied) m->output = add_tensor(m, &cur, "output", 2, VOCAB, DIM, seed++, 0.5f, 0.0f);
    for (int b = 0; b < LAYERS; b++) {
        struct lmp_block *blk = &m->blocks[b];
        blk->attn_norm        = add_tensor(m, &cur, "attn_norm", 1, DIM, 0, seed++, 0.3f, 1.0f);
        blk->ffn_norm         = add_tensor(m, &cur, "ffn_norm", 1, DIM, 0, seed++, 0.3f, 1.0f);
        const int64_t shp[LMP_LIN_COUNT][2] = {{qd, DIM},    {kd, DIM},     {kd, DIM},
                                               {DIM, qd},    {HIDDEN, DIM}, {HIDDEN, DIM},
                                               {DIM, HIDDEN}};
        for (int k = 0; k < LMP_LIN_COUNT; k++) {
            /* ~1/sqrt(n_in) so activations stay O(1); q/k larger for peaked attention */
            float sc = (k <= LMP_LIN_K ? 2.5f : 1.0f) / sqrtf((float)shp[k][1]);
            blk->lin[k].weight =
                add_tensor(m, &cur, lmp_lin_name(k), 2, shp[k][0], shp[k][1], seed++, sc, 0.0f);
            if (sp->bias && k <= LMP_LIN_V)
                blk->lin[k].bias = add_tensor(m, &cur, "bias", 1, shp[k][0], 0, seed++, 0.5f, 0.0f);
        }
    }
    struct lmp_err  err = {0};
    enum lmp_status st  = lmp_model_finish(m, &err);
    if (st != LMP_OK) fprintf(stderr, "finish: %s\n", err.msg);
    CHECK(st == LMP_OK);
    CHECK(m->cfg.tied_embeddings == sp->tied);
    CHECK(m->cfg.qkv_bias == sp->bias);
    return m;
}

/* ---- the reference: one token at a time, everything spelled out ------------------------- */

static const float *T(const struct lmp_tensor *t) {
    return t->data;
}

static void ref_rmsnorm(float *o, const float *x, const float *w) {
    double ss = 0;
    for (int i = 0; i < DIM; i++) ss += (double)x[i] * x[i];
    double s = 1.0 / sqrt(ss / DIM + 1e-5);
    for (int i = 0; i < DIM; i++) o[i] = (float)(x[i] * s) * w[i];
}

static void ref_matvec(float *y, const float *x, const struct lmp_linear *l) {
    for (int64_t o = 0; o < l->n_out; o++) {
        double acc = l->bias ? T(l->bias)[o] : 0.0;
        for (int64_t i = 0; i < l->n_in; i++) acc += (double)T(l->weight)[o * l->n_in + i] * x[i];
        y[o] = (float)acc;
    }
}

/* The angle per position of pair i under c's RoPE variant, and the rotated values' factor:
 * a second, direct transcription of the formulas (Hugging Face modeling_rope_utils). */
static double ref_inv_freq(const struct lmp_config *c, int i, double *mscale) {
    const int    d  = c->rope_dims ? c->rope_dims : HD;
    const double th = c->rope_theta, fac = c->rope_factor;
    double       f = pow(th, -2.0 * i / d);
    *mscale        = 1.0;
    if (c->rope_freq_factors) f /= c->rope_freq_factors[i];
    if (c->rope_scaling == LMP_ROPE_SCALING_LINEAR) f /= fac;
    if (c->rope_scaling == LMP_ROPE_SCALING_LLAMA3) {
        const double wl = 2 * M_PI / f, orig = c->rope_orig_max_seq;
        const double lo = c->rope_low_freq_factor, hi = c->rope_high_freq_factor;
        if (wl > orig / lo)
            f = f / fac;
        else if (wl >= orig / hi)
            f = (1 - (orig / wl - lo) / (hi - lo)) * f / fac + (orig / wl - lo) / (hi - lo) * f;
    }
    if (c->rope_scaling == LMP_ROPE_SCALING_YARN) {
        const double orig = c->rope_orig_max_seq;
        double       low  = floor(d * log(orig / (c->rope_beta_fast * 2 * M_PI)) / (2 * log(th)));
        double       high = ceil(d * log(orig / (c->rope_beta_slow * 2 * M_PI)) / (2 * log(th)));
        low = fmax(low, 0), high = fmin(high, d - 1);
        if (low == high) high += 0.001;
        const double ramp = fmin(fmax((i - low) / (high - low), 0), 1);
        f                 = f / fac * ramp + f * (1 - ramp);
        *mscale           = 0.1 * log(fac) + 1;
    }
    return f;
}

/* RoPE of the first rope_dims dimensions of each head (pairs by c->rope). */
static void ref_rope(float *v, int n_heads, int pos, const struct lmp_config *c) {
    const int half = (c->rope_dims ? c->rope_dims : HD) / 2;
    for (int h = 0; h < n_heads; h++)
        for (int i = 0; i < half; i++) {
            double ms, ang = pos * ref_inv_freq(c, i, &ms);
            int    a  = c->rope == LMP_ROPE_INTERLEAVED ? h * HD + 2 * i : h * HD + i;
            int    b  = c->rope == LMP_ROPE_INTERLEAVED ? a + 1 : a + half;
            double x0 = v[a], x1 = v[b];
            v[a] = (float)((x0 * cos(ang) - x1 * sin(ang)) * ms);
            v[b] = (float)((x0 * sin(ang) + x1 * cos(ang)) * ms);
        }
}

/* Logits (n_tok, VOCAB) of one sequence; attn_out0 (n_tok, qd) and ffn_out1 (n_tok, HIDDEN)
 * record the inputs of block 0's o_proj and block 1's down_proj for the hook test. */
static void ref_forward(const struct lmp_model *m, const int32_t *tok, int n_tok, float *logits,
                        float *attn_out0, float *ffn_out1) {
    const struct lmp_config *c = &m->cfg;
    const int qd = c->n_heads * HD, kd = c->n_kv_heads * HD, group = c->n_heads / c->n_kv_heads;
    float    *kc = calloc((size_t)LAYERS * n_tok * kd, sizeof(float));
    float    *vc = calloc((size_t)LAYERS * n_tok * kd, sizeof(float));
    float     x[DIM], h[DIM], q[64], k[64], v[64], a[64], o[DIM], g[HIDDEN], u[HIDDEN], d[DIM];
    float    *att = malloc((size_t)n_tok * sizeof(float));
    for (int p = 0; p < n_tok; p++) {
        memcpy(x, T(m->tok_emb) + tok[p] * DIM, sizeof(x));
        for (int b = 0; b < LAYERS; b++) {
            const struct lmp_block *blk = &m->blocks[b];
            ref_rmsnorm(h, x, T(blk->attn_norm));
            ref_matvec(q, h, &blk->lin[LMP_LIN_Q]);
            ref_matvec(k, h, &blk->lin[LMP_LIN_K]);
            ref_matvec(v, h, &blk->lin[LMP_LIN_V]);
            ref_rope(q, c->n_heads, p, c);
            ref_rope(k, c->n_kv_heads, p, c);
            memcpy(kc + ((size_t)b * n_tok + p) * kd, k, (size_t)kd * sizeof(float));
            memcpy(vc + ((size_t)b * n_tok + p) * kd, v, (size_t)kd * sizeof(float));
            for (int hh = 0; hh < c->n_heads; hh++) {
                int    kvh = hh / group;
                double mx = -INFINITY, sum = 0;
                for (int t = 0; t <= p; t++) {
                    double s = 0;
                    for (int i = 0; i < HD; i++)
                        s += (double)q[hh * HD + i] *
                             kc[((size_t)b * n_tok + t) * kd + kvh * HD + i];
                    att[t] = (float)(s / sqrt((double)HD));
                    if (att[t] > mx) mx = att[t];
                }
                for (int t = 0; t <= p; t++) sum += exp(att[t] - mx);
                for (int i = 0; i < HD; i++) {
                    double acc = 0;
                    for (int t = 0; t <= p; t++)
                        acc += exp(att[t] - mx) / sum *
                               vc[((size_t)b * n_tok + t) * kd + kvh * HD + i];
                    a[hh * HD + i] = (float)acc;
                }
            }
            if (b == 0 && attn_out0) memcpy(attn_out0 + p * qd, a, (size_t)qd * sizeof(float));
            ref_matvec(o, a, &blk->lin[LMP_LIN_O]);
            for (int i = 0; i < DIM; i++) x[i] += o[i];
            ref_rmsnorm(h, x, T(blk->ffn_norm));
            ref_matvec(g, h, &blk->lin[LMP_LIN_GATE]);
            ref_matvec(u, h, &blk->lin[LMP_LIN_UP]);
            for (int i = 0; i < HIDDEN; i++) g[i] = (float)(g[i] / (1.0 + exp(-g[i])) * u[i]);
            if (b == 1 && ffn_out1) memcpy(ffn_out1 + p * HIDDEN, g, sizeof(g));
            ref_matvec(d, g, &blk->lin[LMP_LIN_DOWN]);
            for (int i = 0; i < DIM; i++) x[i] += d[i];
        }
        ref_rmsnorm(h, x, T(m->out_norm));
        for (int t = 0; t < VOCAB; t++) {
            double acc = 0;
            for (int i = 0; i < DIM; i++) acc += (double)T(m->output)[t * DIM + i] * h[i];
            logits[p * VOCAB + t] = (float)acc;
        }
    }
    free(att);
    free(kc);
    free(vc);
}

/* ---- helpers ----------------------------------------------------------------------------- */

static void fill_tokens(int32_t *tok, int n, uint32_t seed) {
    for (int i = 0; i < n; i++) {
        seed   = seed * 1664525u + 1013904223u;
        tok[i] = (int32_t)((seed >> 8) % VOCAB);
    }
}

static double max_abs_diff(const float *a, const float *b, int64_t n) {
    double d = 0;
    for (int64_t i = 0; i < n; i++) d = fmax(d, fabs((double)a[i] - b[i]));
    return d;
}

static struct lmp_transformer *make_tf(const struct lmp_model *m, int n_threads) {
    struct lmp_transformer_opts o   = {.n_threads = n_threads};
    struct lmp_transformer     *tf  = NULL;
    struct lmp_err              err = {0};
    CHECK(lmp_transformer_new(m, &o, &tf, &err) == LMP_OK);
    return tf;
}

static const struct spec specs[] = {
    {LMP_ROPE_INTERLEAVED, true, false, 6, 2, 2},  /* llama2.c-like, GQA 3:1 */
    {LMP_ROPE_HALF, false, true, 6, 2, 1},         /* qwen2-like: biases, untied */
    {LMP_ROPE_HALF, true, true, 4, 4, 2},          /* multi-head, tied, biases */
    {LMP_ROPE_INTERLEAVED, false, false, 4, 1, 2}, /* multi-query */
};
enum { N_SPECS = sizeof(specs) / sizeof(specs[0]) };

/* ---- tests -------------------------------------------------------------------------------- */

/* Two sequences of 70 tokens (two query blocks) in one batch == the reference, per sequence. */
static void test_batched_forward_matches_reference(void) {
    enum { N_SEQ = 2, N_TOK = 70 };
    for (int si = 0; si < N_SPECS; si++) {
        struct lmp_model       *m  = build(&specs[si]);
        struct lmp_transformer *tf = make_tf(m, specs[si].n_threads);
        int32_t                 tok[N_SEQ * N_TOK];
        fill_tokens(tok, N_SEQ * N_TOK, 7 + si);
        float         *hidden = malloc(sizeof(float) * N_SEQ * N_TOK * DIM);
        float         *got    = malloc(sizeof(float) * N_SEQ * N_TOK * VOCAB);
        float         *want   = malloc(sizeof(float) * N_TOK * VOCAB);
        struct lmp_err err    = {0};
        CHECK(lmp_transformer_forward(tf, NULL, tok, N_SEQ, N_TOK, hidden, NULL, &err) == LMP_OK);
        lmp_transformer_logits(tf, hidden, N_SEQ * N_TOK, got);
        for (int s = 0; s < N_SEQ; s++) {
            ref_forward(m, tok + s * N_TOK, N_TOK, want, NULL, NULL);
            double d = max_abs_diff(got + s * N_TOK * VOCAB, want, N_TOK * VOCAB);
            if (d > 2e-4) fprintf(stderr, "spec %d seq %d: max |diff| %g\n", si, s, d);
            CHECK(d <= 2e-4);
        }
        free(hidden);
        free(got);
        free(want);
        lmp_transformer_destroy(&tf);
        lmp_model_close(&m);
    }
}

/* Every RoPE variant (linear, llama3, YaRN, rope_freqs divisors, partial rotary) in the
 * forward pass == the reference with the same config, and each differs from plain RoPE. */
static void test_rope_variants_match_reference(void) {
    enum { N_TOK = 40 };
    static const float ff[HD / 2] = {1.0f, 1.5f, 3.0f, 8.0f};
    for (int variant = 0; variant < 5; variant++)
        for (int si = 0; si < 2; si++) {
            struct lmp_model  *m = build(&specs[si]);
            struct lmp_config *c = &m->cfg;
            switch (variant) {
            case 0:
                c->rope_scaling = LMP_ROPE_SCALING_LINEAR, c->rope_factor = 3.0f;
                break;
            case 1: /* wavelengths 6.3 .. 2.9e3 against orig / hi = 8 and orig / lo = 32 */
                c->rope_scaling = LMP_ROPE_SCALING_LLAMA3, c->rope_factor = 8.0f;
                c->rope_low_freq_factor = 1.0f, c->rope_high_freq_factor = 4.0f;
                c->rope_orig_max_seq = 32;
                break;
            case 2:
                c->rope_scaling = LMP_ROPE_SCALING_YARN, c->rope_factor = 4.0f;
                c->rope_orig_max_seq = 64, c->rope_beta_fast = 32.0f, c->rope_beta_slow = 1.0f;
                break;
            case 3:
                c->rope_freq_factors = ff;
                break;
            case 4:
                c->rope_dims = HD / 2;
                break;
            }
            struct lmp_transformer *tf = make_tf(m, specs[si].n_threads);
            int32_t                 tok[N_TOK];
            fill_tokens(tok, N_TOK, 11 + variant);
            float         *hidden = malloc(sizeof(float) * N_TOK * DIM);
            float         *got    = malloc(sizeof(float) * N_TOK * VOCAB);
            float         *want   = malloc(sizeof(float) * N_TOK * VOCAB);
            struct lmp_err err    = {0};
            CHECK(lmp_transformer_forward(tf, NULL, tok, 1, N_TOK, hidden, NULL, &err) == LMP_OK);
            lmp_transformer_logits(tf, hidden, N_TOK, got);
            ref_forward(m, tok, N_TOK, want, NULL, NULL);
            double d = max_abs_diff(got, want, N_TOK * VOCAB);
            if (d > 2e-4) fprintf(stderr, "variant %d spec %d: max |diff| %g\n", variant, si, d);
            CHECK(d <= 2e-4);
            struct lmp_config saved = *c; /* plain RoPE gives other logits */
            c->rope_scaling         = LMP_ROPE_SCALING_NONE;
            c->rope_freq_factors    = NULL;
            c->rope_dims            = 0;
            ref_forward(m, tok, N_TOK, want, NULL, NULL);
            CHECK(max_abs_diff(got, want, N_TOK * VOCAB) > 1e-3);
            *c = saved;
            free(hidden);
            free(got);
            free(want);
            lmp_transformer_destroy(&tf);
            lmp_model_close(&m);
        }
}

/* The two RoPE orders really differ (so the comparison above can tell them apart). */
static void test_rope_orders_differ(void) {
    enum { N_TOK = 9 };
    struct spec a = specs[0], b = specs[0];
    b.rope                     = LMP_ROPE_HALF;
    struct lmp_model       *ma = build(&a), *mb = build(&b);
    struct lmp_transformer *ta = make_tf(ma, 1), *tb = make_tf(mb, 1);
    int32_t                 tok[N_TOK];
    fill_tokens(tok, N_TOK, 3);
    float ha[N_TOK * DIM], hb[N_TOK * DIM];
    CHECK(lmp_transformer_forward(ta, NULL, tok, 1, N_TOK, ha, NULL, NULL) == LMP_OK);
    CHECK(lmp_transformer_forward(tb, NULL, tok, 1, N_TOK, hb, NULL, NULL) == LMP_OK);
    CHECK(max_abs_diff(ha, hb, DIM) < 1e-6); /* position 0: no rotation */
    CHECK(max_abs_diff(ha, hb, N_TOK * DIM) > 1e-3);
    lmp_transformer_destroy(&ta);
    lmp_transformer_destroy(&tb);
    lmp_model_close(&ma);
    lmp_model_close(&mb);
}

/* Prefill 37 tokens, then decode one at a time: every step's logits == the full forward. */
static void test_kvcache_decoding_matches_full_forward(void) {
    enum { N_SEQ = 2, N_TOK = 75, N_PRE = 37 };
    for (int si = 0; si < N_SPECS; si++) {
        struct lmp_model       *m  = build(&specs[si]);
        struct lmp_transformer *tf = make_tf(m, specs[si].n_threads);
        int32_t                 tok[N_SEQ * N_TOK], step[N_SEQ], pre[N_SEQ * N_PRE];
        fill_tokens(tok, N_SEQ * N_TOK, 11 + si);
        float *full = malloc(sizeof(float) * N_SEQ * N_TOK * VOCAB);
        float *h    = malloc(sizeof(float) * N_SEQ * N_TOK * DIM);
        float  lg[N_SEQ * VOCAB];
        CHECK(lmp_transformer_forward(tf, NULL, tok, N_SEQ, N_TOK, h, NULL, NULL) == LMP_OK);
        lmp_transformer_logits(tf, h, N_SEQ * N_TOK, full);

        struct lmp_kvcache *kv = lmp_kvcache_new(tf, N_SEQ, N_TOK);
        CHECK(kv != NULL);
        for (int s = 0; s < N_SEQ; s++)
            memcpy(pre + s * N_PRE, tok + s * N_TOK, sizeof(int32_t) * N_PRE);
        CHECK(lmp_transformer_forward(tf, kv, pre, N_SEQ, N_PRE, h, NULL, NULL) == LMP_OK);
        CHECK(lmp_kvcache_pos(kv) == N_PRE);
        double worst = 0;
        for (int s = 0; s < N_SEQ; s++) {
            lmp_transformer_logits(tf, h + (s * N_PRE + N_PRE - 1) * DIM, 1, lg);
            worst = fmax(worst, max_abs_diff(lg, full + (s * N_TOK + N_PRE - 1) * VOCAB, VOCAB));
            /* the one-row matvec head (generation) gives the same logits */
            lmp_transformer_logits_row(tf, h + (s * N_PRE + N_PRE - 1) * DIM, lg);
            worst = fmax(worst, max_abs_diff(lg, full + (s * N_TOK + N_PRE - 1) * VOCAB, VOCAB));
        }
        for (int p = N_PRE; p < N_TOK; p++) {
            for (int s = 0; s < N_SEQ; s++) step[s] = tok[s * N_TOK + p];
            CHECK(lmp_transformer_forward(tf, kv, step, N_SEQ, 1, h, NULL, NULL) == LMP_OK);
            lmp_transformer_logits(tf, h, N_SEQ, lg);
            for (int s = 0; s < N_SEQ; s++)
                worst = fmax(worst,
                             max_abs_diff(lg + s * VOCAB, full + (s * N_TOK + p) * VOCAB, VOCAB));
        }
        CHECK(lmp_kvcache_pos(kv) == N_TOK);
        if (worst > 1e-4) fprintf(stderr, "spec %d: decode max |diff| %g\n", si, worst);
        CHECK(worst <= 1e-4);
        /* the cache is full: one more token is refused, not written out of bounds */
        struct lmp_err err = {0};
        CHECK(lmp_transformer_forward(tf, kv, step, N_SEQ, 1, h, NULL, &err) == LMP_EINVAL);
        CHECK(err.msg[0] != '\0');
        lmp_kvcache_reset(kv);
        CHECK(lmp_kvcache_pos(kv) == 0);
        lmp_kvcache_destroy(&kv);
        CHECK(kv == NULL);
        free(full);
        free(h);
        lmp_transformer_destroy(&tf);
        lmp_model_close(&m);
    }
}

struct hook_log {
    int     calls[LAYERS][LMP_INPUT_COUNT];
    int64_t rows, cols[LMP_INPUT_COUNT];
    float  *attn_out0, *ffn_out1; /* copies of what the hooks saw */
};

static void on_input(void *ctx, int32_t block, enum lmp_input which, const float *x, int64_t n_rows,
                     int64_t n_cols) {
    struct hook_log *l = ctx;
    l->calls[block][which]++;
    l->rows        = n_rows;
    l->cols[which] = n_cols;
    if (block == 0 && which == LMP_INPUT_ATTN_OUT)
        memcpy(l->attn_out0, x, sizeof(float) * (size_t)(n_rows * n_cols));
    if (block == 1 && which == LMP_INPUT_FFN_OUT)
        memcpy(l->ffn_out1, x, sizeof(float) * (size_t)(n_rows * n_cols));
}

/* Hooks see each distinct linear input once per block, with the reference's values. */
static void test_hooks_see_linear_inputs(void) {
    enum { N_TOK = 20 };
    struct lmp_model       *m  = build(&specs[0]);
    struct lmp_transformer *tf = make_tf(m, 2);
    const int               qd = specs[0].n_heads * HD;
    int32_t                 tok[N_TOK];
    fill_tokens(tok, N_TOK, 5);
    float           h[N_TOK * DIM], lg[N_TOK * VOCAB];
    struct hook_log log          = {.attn_out0 = malloc(sizeof(float) * N_TOK * qd),
                                    .ffn_out1  = malloc(sizeof(float) * N_TOK * HIDDEN)};
    float          *want_a       = malloc(sizeof(float) * N_TOK * qd),
          *want_f                = malloc(sizeof(float) * N_TOK * HIDDEN);
    struct lmp_block_hooks hooks = {on_input, &log};
    CHECK(lmp_transformer_forward(tf, NULL, tok, 1, N_TOK, h, &hooks, NULL) == LMP_OK);
    for (int b = 0; b < LAYERS; b++)
        for (int i = 0; i < LMP_INPUT_COUNT; i++) CHECK(log.calls[b][i] == 1);
    CHECK(log.rows == N_TOK);
    CHECK(log.cols[LMP_INPUT_ATTN] == DIM && log.cols[LMP_INPUT_ATTN_OUT] == qd);
    CHECK(log.cols[LMP_INPUT_FFN] == DIM && log.cols[LMP_INPUT_FFN_OUT] == HIDDEN);
    ref_forward(m, tok, N_TOK, lg, want_a, want_f);
    CHECK(max_abs_diff(log.attn_out0, want_a, N_TOK * qd) < 1e-4);
    CHECK(max_abs_diff(log.ffn_out1, want_f, N_TOK * HIDDEN) < 1e-4);
    free(log.attn_out0);
    free(log.ffn_out1);
    free(want_a);
    free(want_f);
    lmp_transformer_destroy(&tf);
    lmp_model_close(&m);
}

/* Block-by-block == whole model (what calibration does). */
static void test_block_by_block_equals_forward(void) {
    enum { N_TOK = 33 };
    struct lmp_model       *m  = build(&specs[1]);
    struct lmp_transformer *tf = make_tf(m, 2);
    int32_t                 tok[N_TOK];
    fill_tokens(tok, N_TOK, 9);
    float a[N_TOK * DIM], b[N_TOK * DIM];
    CHECK(lmp_transformer_forward(tf, NULL, tok, 1, N_TOK, a, NULL, NULL) == LMP_OK);
    CHECK(lmp_transformer_embed(tf, tok, N_TOK, b, NULL) == LMP_OK);
    for (int blk = 0; blk < LAYERS; blk++)
        CHECK(lmp_transformer_block(tf, blk, NULL, b, 1, N_TOK, NULL, NULL) == LMP_OK);
    lmp_transformer_final_norm(tf, b, N_TOK, b);
    CHECK(max_abs_diff(a, b, N_TOK * DIM) == 0.0);
    lmp_transformer_destroy(&tf);
    lmp_model_close(&m);
}

struct dense_cb {
    const float *w;
    int64_t      n_out, n_in;
    int          calls;
    float        scale;
};

static void dense_apply(void *ctx, const float *x, int64_t n_tok, float *y) {
    struct dense_cb *d = ctx;
    d->calls++;
    for (int64_t t = 0; t < n_tok; t++)
        for (int64_t o = 0; o < d->n_out; o++) {
            double acc = 0;
            for (int64_t i = 0; i < d->n_in; i++)
                acc += (double)d->w[o * d->n_in + i] * x[t * d->n_in + i];
            y[t * d->n_out + o] = (float)acc * d->scale;
        }
}

/* A callback operator replaces a dense linear: same result when it computes the same
 * product, a different one when it does not (so it is really used). */
static void test_pluggable_linear(void) {
    enum { N_TOK = 12 };
    struct lmp_model       *m  = build(&specs[1]);
    struct lmp_transformer *tf = make_tf(m, 1);
    int32_t                 tok[N_TOK];
    fill_tokens(tok, N_TOK, 4);
    float ref[N_TOK * DIM], got[N_TOK * DIM];
    CHECK(lmp_transformer_forward(tf, NULL, tok, 1, N_TOK, ref, NULL, NULL) == LMP_OK);
    for (int k = 0; k < LMP_LIN_COUNT; k++) {
        struct lmp_linop *op    = lmp_transformer_linop(tf, 1, (enum lmp_lin)k);
        struct lmp_linop  saved = *op;
        struct dense_cb   cb    = {op->w, op->n_out, op->n_in, 0, 1.0f};
        op->apply               = dense_apply;
        op->ctx                 = &cb;
        op->w                   = NULL;
        CHECK(lmp_transformer_forward(tf, NULL, tok, 1, N_TOK, got, NULL, NULL) == LMP_OK);
        CHECK(cb.calls == 1);
        CHECK(max_abs_diff(ref, got, N_TOK * DIM) < 1e-4);
        cb.scale = 0.5f;
        CHECK(lmp_transformer_forward(tf, NULL, tok, 1, N_TOK, got, NULL, NULL) == LMP_OK);
        CHECK(max_abs_diff(ref, got, N_TOK * DIM) > 1e-3);
        *op = saved;
    }
    lmp_transformer_destroy(&tf);
    lmp_model_close(&m);
}

/* NLL = stable log-softmax, also with huge logits. */
static void test_nll_matches_log_softmax(void) {
    struct lmp_model       *m  = build(&specs[0]);
    struct lmp_transformer *tf = make_tf(m, 2);
    enum { R = 5 };
    float lg[R * VOCAB];
    check_fill_random(lg, R * VOCAB, 77);
    for (int i = 0; i < VOCAB; i++) lg[4 * VOCAB + i] = lg[4 * VOCAB + i] * 1000.0f + 5000.0f;
    int32_t tgt[R] = {0, 5, 36, 17, 2};
    double  nll[R];
    lmp_transformer_nll(tf, lg, R, tgt, nll);
    for (int r = 0; r < R; r++) {
        double mx = -INFINITY, sum = 0;
        for (int i = 0; i < VOCAB; i++) mx = fmax(mx, lg[r * VOCAB + i]);
        for (int i = 0; i < VOCAB; i++) sum += exp((double)lg[r * VOCAB + i] - mx);
        CHECK(isfinite(nll[r]));
        CHECK_NEAR(nll[r], log(sum) + mx - lg[r * VOCAB + tgt[r]], 1e-4);
    }
    lmp_transformer_destroy(&tf);
    lmp_model_close(&m);
}

/* The vocabulary sweep with an online log-sum-exp == whole logits rows. */
static void test_hidden_nll_matches_logits(void) {
    enum { N_TOK = 30 };
    struct lmp_model           *m  = build(&specs[1]);
    struct lmp_transformer_opts o  = {.n_threads = 2, .vocab_slice = 5}; /* 8 slices */
    struct lmp_transformer     *tf = NULL;
    CHECK(lmp_transformer_new(m, &o, &tf, NULL) == LMP_OK);
    int32_t tok[N_TOK], tgt[N_TOK];
    fill_tokens(tok, N_TOK, 8);
    fill_tokens(tgt, N_TOK, 9);
    float  h[N_TOK * DIM], lg[N_TOK * VOCAB];
    double a[N_TOK], b[N_TOK];
    CHECK(lmp_transformer_forward(tf, NULL, tok, 1, N_TOK, h, NULL, NULL) == LMP_OK);
    lmp_transformer_logits(tf, h, N_TOK, lg);
    lmp_transformer_nll(tf, lg, N_TOK, tgt, a);
    CHECK(lmp_transformer_hidden_nll(tf, h, N_TOK, tgt, b) == LMP_OK);
    for (int i = 0; i < N_TOK; i++) CHECK_NEAR(a[i], b[i], 1e-5);
    lmp_transformer_destroy(&tf);
    lmp_model_close(&m);
}

static void test_rejects_bad_tokens_and_positions(void) {
    struct lmp_model       *m      = build(&specs[0]);
    struct lmp_transformer *tf     = make_tf(m, 1);
    int32_t                 bad[3] = {1, VOCAB, 2}, neg[1] = {-1};
    float                  *h   = malloc(sizeof(float) * (MAX_SEQ + 1) * DIM);
    struct lmp_err          err = {0};
    CHECK(lmp_transformer_forward(tf, NULL, bad, 1, 3, h, NULL, &err) == LMP_EINVAL);
    CHECK(strstr(err.msg, "vocabulary") != NULL);
    CHECK(lmp_transformer_forward(tf, NULL, neg, 1, 1, h, NULL, NULL) == LMP_EINVAL);
    int32_t       *tok  = calloc(MAX_SEQ + 1, sizeof(int32_t));
    struct lmp_err err2 = {0};
    CHECK(lmp_transformer_forward(tf, NULL, tok, 1, MAX_SEQ + 1, h, NULL, &err2) == LMP_EINVAL);
    CHECK(strstr(err2.msg, "context") != NULL);
    free(tok);
    free(h);
    lmp_transformer_destroy(&tf);
    CHECK(tf == NULL);
    lmp_transformer_destroy(&tf);
    lmp_model_close(&m);
}

struct logit_log {
    int64_t next_row, window, calls;
    float  *rows; /* (ctx, VOCAB) of window 0 */
};

static void on_logits(void *ctx, int64_t window, int64_t row0, const float *lg, int64_t n_rows,
                      int64_t vocab) {
    struct logit_log *l = ctx;
    l->calls++;
    if (window != l->window) { /* a new window starts at row 0 */
        CHECK(window == l->window + 1 && l->next_row > 0);
        l->window   = window;
        l->next_row = 0;
    }
    CHECK(row0 == l->next_row && vocab == VOCAB);
    if (window == 0) memcpy(l->rows + row0 * VOCAB, lg, sizeof(float) * (size_t)(n_rows * VOCAB));
    l->next_row = row0 + n_rows;
}

static void on_progress(void *ctx, int64_t done, int64_t n) {
    int64_t *last = ctx;
    CHECK(done > *last && done <= n);
    *last = done;
}

/* The GPTQ protocol: floor(n/ctx) windows, each from an empty context, mean of means. */
static void test_eval_ppl_protocol(void) {
    enum { CTX = 21, N_IDS = 3 * CTX + 13 };
    struct lmp_model       *m  = build(&specs[2]);
    struct lmp_transformer *tf = make_tf(m, 2);
    int32_t                 ids[N_IDS];
    fill_tokens(ids, N_IDS, 21);
    float *lg = malloc(sizeof(float) * CTX * VOCAB), *first = malloc(sizeof(float) * CTX * VOCAB);
    double want = 0;
    for (int w = 0; w < 3; w++) {
        ref_forward(m, ids + w * CTX, CTX, lg, NULL, NULL);
        if (w == 0) memcpy(first, lg, sizeof(float) * CTX * VOCAB);
        double s = 0;
        for (int t = 0; t < CTX - 1; t++) {
            double mx = -INFINITY, sum = 0;
            for (int i = 0; i < VOCAB; i++) mx = fmax(mx, lg[t * VOCAB + i]);
            for (int i = 0; i < VOCAB; i++) sum += exp(lg[t * VOCAB + i] - mx);
            s += log(sum) + mx - lg[t * VOCAB + ids[w * CTX + t + 1]];
        }
        want += s / (CTX - 1) / 3;
    }
    for (int batch = 1; batch <= 4; batch += 3) {
        struct logit_log       ll   = {.rows = calloc(CTX * VOCAB, sizeof(float))};
        int64_t                last = 0;
        struct lmp_eval_opts   o    = {.ctx            = CTX,
                                       .batch          = batch,
                                       .on_logits      = on_logits,
                                       .logits_ctx     = &ll,
                                       .logits_windows = batch == 1 ? 3 : 0,
                                       .progress       = on_progress,
                                       .progress_ctx   = &last};
        struct lmp_eval_result r;
        struct lmp_err         err = {0};
        CHECK(lmp_eval_ppl(tf, ids, N_IDS, &o, &r, &err) == LMP_OK);
        CHECK(r.n_windows == 3 && r.n_tokens == 3 * CTX && r.n_text == N_IDS);
        CHECK_NEAR(r.nll, want, 1e-5);
        CHECK_NEAR(r.ppl, exp(want), 1e-4 * exp(want));
        CHECK(last == 3);
        if (batch == 1)
            CHECK(ll.window == 2 && ll.next_row == CTX); /* all reported */
        else
            CHECK(ll.window == 0 && ll.next_row == CTX); /* the first only */
        CHECK(max_abs_diff(ll.rows, first, CTX * VOCAB) < 2e-4);
        free(ll.rows);
    }
    /* max_windows, and the errors */
    struct lmp_eval_opts   o = {.ctx = CTX, .max_windows = 1};
    struct lmp_eval_result r;
    struct lmp_err         err = {0};
    CHECK(lmp_eval_ppl(tf, ids, N_IDS, &o, &r, &err) == LMP_OK && r.n_windows == 1);
    o.ctx = N_IDS + 1;
    CHECK(lmp_eval_ppl(tf, ids, N_IDS, &o, &r, &err) == LMP_EINVAL);
    CHECK(strstr(err.msg, "fewer than one window") != NULL);
    o.ctx               = MAX_SEQ + 1;
    struct lmp_err err2 = {0};
    CHECK(lmp_eval_ppl(tf, ids, N_IDS, &o, &r, &err2) == LMP_EINVAL);
    o.ctx = 1;
    CHECK(lmp_eval_ppl(tf, ids, N_IDS, &o, &r, NULL) == LMP_EINVAL);
    free(lg);
    free(first);
    lmp_transformer_destroy(&tf);
    lmp_model_close(&m);
}

int main(void) {
    RUN(test_batched_forward_matches_reference);
    RUN(test_rope_orders_differ);
    RUN(test_rope_variants_match_reference);
    RUN(test_kvcache_decoding_matches_full_forward);
    RUN(test_hooks_see_linear_inputs);
    RUN(test_block_by_block_equals_forward);
    RUN(test_pluggable_linear);
    RUN(test_nll_matches_log_softmax);
    RUN(test_hidden_nll_matches_logits);
    RUN(test_rejects_bad_tokens_and_positions);
    RUN(test_eval_ppl_protocol);
    return check_report();
}
