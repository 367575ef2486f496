/*  test_finetune - block fine-tuning on a tiny random block whose linears are quantized
 *  with a coarse AQ scheme (1x4g4, about 1 bit per weight, so there is error to win back):
 *  the relative output error drops by a real margin, codes and dense weights stay as
 *  they were, the run is bit-for-bit repeatable for a fixed seed, a run that makes things
 *  worse is rolled back, and bad arguments are rejected without touching the block.
 *  The same on a Qwen3 block (per-head q/k norms) and a Gemma 3 local block (q/k and post
 *  norms, GeGLU, attention scale, a sliding window shorter than the sequence): the error
 *  drops, the extra norms are trained (and frozen with train_extra_norms off), and a block
 *  whose extra norms do not match its config is refused.
 */
#include "worker/finetune.h"
#include "worker/block_grad.h"
#include "worker/aq.h"
#include "kernels/kernels.h" /* defines: lmp_aq_decode_ref, struct lmp_aq_shape */
#include "model/rope.h"      /* defines: lmp_rope_block_is_local */
#include "tests/check.h"     /* defines: CHECK, CHECK_NEAR, RUN, check_report */

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { DIM = 32, HD = 8, HIDDEN = 48, T = 16, N_SEQ = 6 };

struct fixture {
    struct lmp_config   cfg;
    float              *norm[2];          /* original norms (DIM) */
    float              *w[LMP_LIN_COUNT]; /* original weights */
    int64_t             n_out[LMP_LIN_COUNT], n_in[LMP_LIN_COUNT];
    struct lmp_aq_layer aq[LMP_LIN_COUNT]; /* quantized, pristine */
    float              *x, *y;             /* (N_SEQ, T, DIM) inputs, original outputs */
    float *extra[4]; /* q_norm, k_norm (HD), post_attn_norm, post_ffn_norm (DIM) or NULL */
    bool   local;    /* the block is block 0 of a Gemma-3-like config: local */
};

enum { ARCH_LLAMA, ARCH_QWEN3, ARCH_GEMMA3 };

static float *rnd(int64_t n, uint64_t seed, float scale, float offset) {
    float *p = calloc((size_t)n, sizeof(float));
    check_fill_random(p, n, seed);
    for (int64_t i = 0; i < n; i++) p[i] = p[i] * scale + offset;
    return p;
}

static void fixture_init_arch(struct fixture *f, int arch) {
    memset(f, 0, sizeof(*f));
    struct lmp_config *c = &f->cfg;
    c->dim               = DIM;
    c->hidden_dim        = HIDDEN;
    c->n_heads           = 4;
    c->n_kv_heads        = 2;
    c->head_dim          = HD;
    c->n_layers          = 1;
    c->max_seq           = T;
    c->rope_theta        = 1000.0f;
    c->norm_eps          = 1e-5f;
    c->rope              = LMP_ROPE_HALF;
    if (arch != ARCH_LLAMA) {
        c->qk_norm  = true;
        f->extra[0] = rnd(HD, 3, 0.2f, 1.0f);
        f->extra[1] = rnd(HD, 4, 0.2f, 1.0f);
    }
    if (arch == ARCH_GEMMA3) {
        c->post_norms       = true;
        c->ffn_act          = LMP_ACT_GELU_TANH;
        c->attn_scale       = 0.3f;
        c->n_layers         = 2; /* block 0 of 2, pattern 2: local */
        c->sliding_window   = 5;
        c->swa_pattern      = 2;
        c->rope_theta_local = 100.0f;
        f->extra[2]         = rnd(DIM, 5, 0.2f, 1.0f);
        f->extra[3]         = rnd(DIM, 6, 0.2f, 1.0f);
        f->local            = lmp_rope_block_is_local(c, 0);
        CHECK(f->local);
    }
    const int64_t qd = 4 * HD, kd = 2 * HD;
    const int64_t shp[LMP_LIN_COUNT][2] = {{qd, DIM},     {kd, DIM},     {kd, DIM},    {DIM, qd},
                                           {HIDDEN, DIM}, {HIDDEN, DIM}, {DIM, HIDDEN}};
    f->norm[0]                          = rnd(DIM, 1, 0.2f, 1.0f);
    f->norm[1]                          = rnd(DIM, 2, 0.2f, 1.0f);
    struct lmp_aq_scheme sc;
    struct lmp_err       err = {0};
    CHECK(lmp_aq_scheme_parse(&sc, "1x4g4", &err) == LMP_OK);
    struct lmp_aq_opts ao;
    lmp_aq_opts_init(&ao);
    ao.adam_steps = 20;
    ao.max_rounds = 2;
    ao.seed       = 7;
    for (int k = 0; k < LMP_LIN_COUNT; k++) {
        f->n_out[k] = shp[k][0];
        f->n_in[k]  = shp[k][1];
        f->w[k]     = rnd(shp[k][0] * shp[k][1], 10 + k, 1.5f / sqrtf((float)shp[k][1]), 0.0f);
        /* H from random correlated inputs (what calibration would hand over) */
        const int64_t n = shp[k][1], n_tok = 4 * n;
        float        *xs = rnd(n_tok * n, 30 + k, 1.0f, 0.0f), *h = calloc((size_t)(n * n), 4);
        for (int64_t t = 0; t < n_tok; t++)
            for (int64_t i = 1; i < n; i++) xs[t * n + i] += 0.5f * xs[t * n + i - 1];
        for (int64_t t = 0; t < n_tok; t++)
            for (int64_t i = 0; i < n; i++)
                for (int64_t j = 0; j < n; j++)
                    h[i * n + j] += xs[t * n + i] * xs[t * n + j] / n_tok;
        CHECK(lmp_aq_quantize(&f->aq[k], NULL, f->w[k], h, shp[k][0], n, &sc, &ao, &err) == LMP_OK);
        free(xs);
        free(h);
    }
    f->x                      = rnd(N_SEQ * T * DIM, 99, 1.0f, 0.0f);
    f->y                      = malloc(sizeof(float) * N_SEQ * T * DIM);
    struct lmp_block_grad *bg = NULL;
    CHECK(lmp_block_grad_new(c, N_SEQ, T, &bg) == LMP_OK);
    struct lmp_block_params p = {.attn_norm      = f->norm[0],
                                 .ffn_norm       = f->norm[1],
                                 .q_norm         = f->extra[0],
                                 .k_norm         = f->extra[1],
                                 .post_attn_norm = f->extra[2],
                                 .post_ffn_norm  = f->extra[3],
                                 .local          = f->local};
    for (int k = 0; k < LMP_LIN_COUNT; k++) p.w[k] = f->w[k];
    lmp_block_grad_forward(bg, &p, f->x, N_SEQ, f->y);
    lmp_block_grad_destroy(&bg);
}

static void fixture_init(struct fixture *f) {
    fixture_init_arch(f, ARCH_LLAMA);
}

static void fixture_free(struct fixture *f) {
    free(f->norm[0]);
    free(f->norm[1]);
    for (int i = 0; i < 4; i++) free(f->extra[i]);
    free(f->x);
    free(f->y);
    for (int k = 0; k < LMP_LIN_COUNT; k++) {
        free(f->w[k]);
        lmp_aq_layer_release(&f->aq[k]);
    }
}

/* A fresh, independently owned copy of the quantized block to tune. */
struct tuned {
    struct lmp_aq_layer aq[LMP_LIN_COUNT];
    float              *norm[2];
    float              *extra[4]; /* copies of the fixture's, or NULL */
    struct lmp_ft_block blk;
};

static void tuned_init(struct tuned *t, const struct fixture *f, unsigned dense_mask) {
    memset(t, 0, sizeof(*t));
    t->blk.cfg = &f->cfg;
    for (int i = 0; i < 2; i++) {
        t->norm[i] = malloc(DIM * sizeof(float));
        memcpy(t->norm[i], f->norm[i], DIM * sizeof(float));
    }
    t->blk.attn_norm = t->norm[0];
    t->blk.ffn_norm  = t->norm[1];
    for (int i = 0; i < 4; i++) {
        if (f->extra[i] == NULL) continue;
        const size_t n = (i < 2 ? HD : DIM) * sizeof(float);
        t->extra[i]    = malloc(n);
        memcpy(t->extra[i], f->extra[i], n);
    }
    t->blk.q_norm         = t->extra[0];
    t->blk.k_norm         = t->extra[1];
    t->blk.post_attn_norm = t->extra[2];
    t->blk.post_ffn_norm  = t->extra[3];
    t->blk.local          = f->local;
    for (int k = 0; k < LMP_LIN_COUNT; k++) {
        if (dense_mask & (1u << k)) {
            t->blk.lin[k].w = f->w[k]; /* left unquantized: the original weight, frozen */
            continue;
        }
        const struct lmp_aq_layer *a = &f->aq[k];
        struct lmp_aq_layer       *b = &t->aq[k];
        *b                           = *a;
        const size_t n_codes         = (size_t)(a->n_out * a->n_in / a->sc.g * a->sc.M);
        const size_t n_cb            = (size_t)a->sc.M * (size_t)a->sc.K * (size_t)a->sc.g;
        b->codes                     = malloc(n_codes * sizeof(uint16_t));
        b->codebooks                 = malloc(n_cb * sizeof(float));
        b->scales                    = malloc((size_t)a->n_out * sizeof(float));
        memcpy(b->codes, a->codes, n_codes * sizeof(uint16_t));
        memcpy(b->codebooks, a->codebooks, n_cb * sizeof(float));
        memcpy(b->scales, a->scales, (size_t)a->n_out * sizeof(float));
        t->blk.lin[k].aq = b;
    }
}

static void tuned_free(struct tuned *t) {
    free(t->norm[0]);
    free(t->norm[1]);
    for (int i = 0; i < 4; i++) free(t->extra[i]);
    for (int k = 0; k < LMP_LIN_COUNT; k++) lmp_aq_layer_release(&t->aq[k]);
}

/* Do the trained tensors of a and b hold the same bits? Of a and the fixture? */
static bool same_params(const struct tuned *a, const struct tuned *b) {
    if (memcmp(a->norm[0], b->norm[0], DIM * 4) || memcmp(a->norm[1], b->norm[1], DIM * 4))
        return false;
    for (int k = 0; k < LMP_LIN_COUNT; k++) {
        const struct lmp_aq_layer *x = &a->aq[k], *y = &b->aq[k];
        if (x->codebooks == NULL) continue;
        if (memcmp(x->codebooks, y->codebooks, (size_t)x->sc.M * x->sc.K * x->sc.g * 4) ||
            memcmp(x->scales, y->scales, (size_t)x->n_out * 4))
            return false;
    }
    return true;
}

static bool codes_unchanged(const struct tuned *t, const struct fixture *f) {
    for (int k = 0; k < LMP_LIN_COUNT; k++) {
        const struct lmp_aq_layer *a = &t->aq[k];
        if (a->codes == NULL) continue;
        if (memcmp(a->codes, f->aq[k].codes,
                   (size_t)(a->n_out * a->n_in / a->sc.g * a->sc.M) * sizeof(uint16_t)))
            return false;
    }
    return true;
}

static void ft_opts(struct lmp_ft_opts *o) {
    lmp_ft_opts_init(o);
    o->lr         = 2e-3f; /* a tiny block tolerates (and needs) a larger step */
    o->batch_seqs = 2;
    o->max_epochs = 6;
    o->tol        = 0;
    o->seed       = 3;
}

static void test_finetune_reduces_error(void) {
    struct fixture f;
    fixture_init(&f);
    struct tuned t;
    tuned_init(&t, &f, 0);
    struct lmp_ft_opts o;
    ft_opts(&o);
    struct lmp_ft_stats st;
    struct lmp_err      err = {0};
    CHECK(lmp_finetune_block(&t.blk, f.x, f.y, N_SEQ, T, &o, &st, &err) == LMP_OK);
    fprintf(stderr, "  rel mse %.5f -> %.5f in %lld steps, %d epochs, %.3f s\n", st.rel_mse_before,
            st.rel_mse_after, (long long)st.n_steps, st.n_epochs, st.seconds);
    CHECK(st.rel_mse_before > 1e-3); /* the coarse scheme leaves real error */
    CHECK(st.rel_mse_after <= 0.9 * st.rel_mse_before);
    CHECK(!st.restored);
    CHECK(st.n_steps == 6 * 3);
    CHECK(st.n_epochs == 6);
    CHECK(codes_unchanged(&t, &f));

    /* the reported error is the block's actual error with the tuned parameters */
    struct lmp_block_grad *bg = NULL;
    CHECK(lmp_block_grad_new(&f.cfg, N_SEQ, T, &bg) == LMP_OK);
    struct lmp_block_params p = {.attn_norm = t.norm[0], .ffn_norm = t.norm[1]};
    float                  *w[LMP_LIN_COUNT], *yh = malloc(sizeof(float) * N_SEQ * T * DIM);
    for (int k = 0; k < LMP_LIN_COUNT; k++) {
        w[k]                  = malloc(sizeof(float) * (size_t)(f.n_out[k] * f.n_in[k]));
        struct lmp_aq_shape s = {f.n_out[k], f.n_in[k], t.aq[k].sc.M, t.aq[k].sc.K, t.aq[k].sc.g};
        lmp_aq_decode_ref(w[k], t.aq[k].codes, t.aq[k].codebooks, t.aq[k].scales, &s);
        p.w[k] = w[k];
    }
    lmp_block_grad_forward(bg, &p, f.x, N_SEQ, yh);
    double e = 0, y2 = 0;
    for (int i = 0; i < N_SEQ * T * DIM; i++) {
        e += ((double)yh[i] - f.y[i]) * ((double)yh[i] - f.y[i]);
        y2 += (double)f.y[i] * f.y[i];
    }
    CHECK_NEAR(e / y2, st.rel_mse_after, 1e-4 * st.rel_mse_after);
    for (int k = 0; k < LMP_LIN_COUNT; k++) free(w[k]);
    free(yh);
    lmp_block_grad_destroy(&bg);
    tuned_free(&t);
    fixture_free(&f);
}

struct ft_seen {
    int64_t calls, last_step, n_steps;
    bool    ordered, loss_ok;
};
static void on_step(void *ctx, int64_t step, int64_t n_steps, double loss) {
    struct ft_seen *s = ctx;
    if (s->calls == 0) s->ordered = s->loss_ok = true;
    s->ordered &= step == s->last_step + 1 && (s->calls == 0 || n_steps == s->n_steps);
    s->loss_ok &= isfinite(loss) && loss > 0;
    s->calls++, s->last_step = step, s->n_steps = n_steps;
}

static void test_finetune_is_deterministic(void) {
    struct fixture f;
    fixture_init(&f);
    struct tuned a, b;
    tuned_init(&a, &f, 0);
    tuned_init(&b, &f, 0);
    struct lmp_ft_opts o;
    ft_opts(&o);
    o.max_epochs = 2;
    struct lmp_ft_stats sa, sb;
    struct lmp_err      err = {0};
    CHECK(lmp_finetune_block(&a.blk, f.x, f.y, N_SEQ, T, &o, &sa, &err) == LMP_OK);
    struct ft_seen seen = {0}; /* the same run observed step by step: the same bits */
    o.progress = on_step, o.progress_ctx = &seen;
    CHECK(lmp_finetune_block(&b.blk, f.x, f.y, N_SEQ, T, &o, &sb, &err) == LMP_OK);
    o.progress = NULL, o.progress_ctx = NULL;
    CHECK(same_params(&a, &b));
    CHECK(sa.rel_mse_after == sb.rel_mse_after && sa.n_steps == sb.n_steps);
    CHECK(seen.calls == sb.n_steps && seen.ordered && seen.last_step == sb.n_steps);
    CHECK(seen.n_steps >= sb.n_steps && seen.loss_ok);
    /* another seed visits the minibatches in another order: other bits */
    tuned_free(&b);
    tuned_init(&b, &f, 0);
    o.seed = 4;
    CHECK(lmp_finetune_block(&b.blk, f.x, f.y, N_SEQ, T, &o, &sb, &err) == LMP_OK);
    CHECK(!same_params(&a, &b));
    tuned_free(&a);
    tuned_free(&b);
    fixture_free(&f);
}

static void test_dense_linears_frozen_and_steps_limit(void) {
    struct fixture f;
    fixture_init(&f);
    struct tuned   t;
    const unsigned dense = (1u << LMP_LIN_V) | (1u << LMP_LIN_DOWN);
    tuned_init(&t, &f, dense);
    float *wv = malloc(sizeof(float) * (size_t)(f.n_out[LMP_LIN_V] * f.n_in[LMP_LIN_V]));
    memcpy(wv, f.w[LMP_LIN_V], sizeof(float) * (size_t)(f.n_out[LMP_LIN_V] * f.n_in[LMP_LIN_V]));
    struct lmp_ft_opts o;
    ft_opts(&o);
    o.max_steps = 5;
    struct lmp_ft_stats st;
    struct lmp_err      err = {0};
    CHECK(lmp_finetune_block(&t.blk, f.x, f.y, N_SEQ, T, &o, &st, &err) == LMP_OK);
    CHECK(st.n_steps == 5);
    CHECK(st.n_epochs == 2);
    CHECK(st.rel_mse_after < st.rel_mse_before);
    CHECK(memcmp(wv, f.w[LMP_LIN_V],
                 sizeof(float) * (size_t)(f.n_out[LMP_LIN_V] * f.n_in[LMP_LIN_V])) == 0);
    CHECK(codes_unchanged(&t, &f));
    free(wv);
    tuned_free(&t);
    fixture_free(&f);
}

static void test_norms_frozen_when_asked(void) {
    struct fixture f;
    fixture_init(&f);
    struct tuned t;
    tuned_init(&t, &f, 0);
    struct lmp_ft_opts o;
    ft_opts(&o);
    o.max_epochs       = 1;
    o.train_norms      = false;
    struct lmp_err err = {0};
    CHECK(lmp_finetune_block(&t.blk, f.x, f.y, N_SEQ, T, &o, NULL, &err) == LMP_OK);
    CHECK(memcmp(t.norm[0], f.norm[0], DIM * 4) == 0 && memcmp(t.norm[1], f.norm[1], DIM * 4) == 0);
    CHECK(memcmp(t.aq[LMP_LIN_Q].scales, f.aq[LMP_LIN_Q].scales, (size_t)f.n_out[LMP_LIN_Q] * 4) !=
          0);
    tuned_free(&t);
    fixture_free(&f);
}

static void test_worse_run_is_rolled_back(void) {
    struct fixture f;
    fixture_init(&f);
    struct tuned t, ref;
    tuned_init(&t, &f, 0);
    tuned_init(&ref, &f, 0);
    struct lmp_ft_opts o;
    ft_opts(&o);
    o.lr         = 5.0f; /* absurd: every step overshoots */
    o.max_epochs = 1;
    struct lmp_ft_stats st;
    struct lmp_err      err = {0};
    CHECK(lmp_finetune_block(&t.blk, f.x, f.y, N_SEQ, T, &o, &st, &err) == LMP_OK);
    CHECK(st.restored);
    CHECK(st.rel_mse_after == st.rel_mse_before);
    CHECK(same_params(&t, &ref));
    tuned_free(&t);
    tuned_free(&ref);
    fixture_free(&f);
}

static void test_rejects_bad_arguments(void) {
    struct fixture f;
    fixture_init(&f);
    struct tuned t, ref;
    tuned_init(&t, &f, 0);
    tuned_init(&ref, &f, 0);
    struct lmp_ft_opts o;
    ft_opts(&o);
    struct lmp_err err = {0};

    t.blk.lin[LMP_LIN_K].w = f.w[LMP_LIN_K]; /* both AQ and dense */
    CHECK(lmp_finetune_block(&t.blk, f.x, f.y, N_SEQ, T, &o, NULL, &err) == LMP_EINVAL);
    CHECK(strstr(err.msg, "k_proj") != NULL);
    t.blk.lin[LMP_LIN_K].w = NULL;

    err                   = (struct lmp_err){0}; /* lmp_err keeps the first message */
    t.aq[LMP_LIN_UP].n_in = DIM / 2;             /* wrong shape */
    CHECK(lmp_finetune_block(&t.blk, f.x, f.y, N_SEQ, T, &o, NULL, &err) == LMP_EINVAL);
    CHECK(strstr(err.msg, "up_proj") != NULL);
    t.aq[LMP_LIN_UP].n_in = DIM;

    float *zero = calloc(N_SEQ * T * DIM, sizeof(float));
    CHECK(lmp_finetune_block(&t.blk, f.x, zero, N_SEQ, T, &o, NULL, &err) == LMP_EINVAL);
    CHECK(lmp_finetune_block(&t.blk, f.x, f.y, 0, T, &o, NULL, &err) == LMP_EINVAL);
    o.lr = 0;
    CHECK(lmp_finetune_block(&t.blk, f.x, f.y, N_SEQ, T, &o, NULL, &err) == LMP_EINVAL);
    struct lmp_config bad = f.cfg;
    bad.n_kv_heads        = 3;
    t.blk.cfg             = &bad;
    ft_opts(&o);
    CHECK(lmp_finetune_block(&t.blk, f.x, f.y, N_SEQ, T, &o, NULL, &err) == LMP_EINVAL);
    CHECK(same_params(&t, &ref)); /* nothing touched */
    free(zero);
    tuned_free(&t);
    tuned_free(&ref);
    fixture_free(&f);
}

/* Qwen3 and Gemma 3 blocks: the error drops, the extra norms train (or stay frozen when
 * asked), and extra norms that do not match the config are refused. */
static void test_arch_blocks(void) {
    for (int arch = ARCH_QWEN3; arch <= ARCH_GEMMA3; arch++) {
        const char    *name = arch == ARCH_GEMMA3 ? "gemma3" : "qwen3";
        struct fixture f;
        fixture_init_arch(&f, arch);
        struct tuned t;
        tuned_init(&t, &f, 0);
        struct lmp_ft_opts o;
        ft_opts(&o);
        struct lmp_ft_stats st;
        struct lmp_err      err = {0};
        CHECK(lmp_finetune_block(&t.blk, f.x, f.y, N_SEQ, T, &o, &st, &err) == LMP_OK);
        fprintf(stderr, "  %s: rel mse %.5f -> %.5f in %lld steps\n", name, st.rel_mse_before,
                st.rel_mse_after, (long long)st.n_steps);
        CHECK(st.rel_mse_before > 1e-3);
        CHECK(st.rel_mse_after <= 0.9 * st.rel_mse_before);
        CHECK(!st.restored && codes_unchanged(&t, &f));
        for (int i = 0; i < 4; i++) /* every extra norm the block has moved */
            CHECK(f.extra[i] == NULL ||
                  memcmp(t.extra[i], f.extra[i], (size_t)(i < 2 ? HD : DIM) * 4) != 0);
        tuned_free(&t);

        /* frozen extra norms: the llama norms still train, the extra ones keep their bits */
        tuned_init(&t, &f, 0);
        o.train_extra_norms = false;
        o.max_epochs        = 1;
        CHECK(lmp_finetune_block(&t.blk, f.x, f.y, N_SEQ, T, &o, &st, &err) == LMP_OK);
        for (int i = 0; i < 4; i++)
            CHECK(f.extra[i] == NULL ||
                  memcmp(t.extra[i], f.extra[i], (size_t)(i < 2 ? HD : DIM) * 4) == 0);
        CHECK(memcmp(t.norm[0], f.norm[0], DIM * 4) != 0);
        tuned_free(&t);

        /* the extra norms must match the config */
        tuned_init(&t, &f, 0);
        ft_opts(&o);
        t.blk.k_norm = NULL;
        err          = (struct lmp_err){0};
        CHECK(lmp_finetune_block(&t.blk, f.x, f.y, N_SEQ, T, &o, NULL, &err) == LMP_EINVAL);
        CHECK(strstr(err.msg, "q/k norms") != NULL);
        t.blk.k_norm = t.extra[1];
        if (arch == ARCH_QWEN3) { /* post norms where the model has none */
            t.blk.post_attn_norm = t.blk.post_ffn_norm = t.norm[0];
            CHECK(lmp_finetune_block(&t.blk, f.x, f.y, N_SEQ, T, &o, NULL, &err) == LMP_EINVAL);
        }
        CHECK(memcmp(t.extra[0], f.extra[0], HD * 4) == 0); /* nothing touched */
        tuned_free(&t);
        fixture_free(&f);
    }
}

int main(void) {
    RUN(test_finetune_reduces_error);
    RUN(test_finetune_is_deterministic);
    RUN(test_dense_linears_frozen_and_steps_limit);
    RUN(test_norms_frozen_when_asked);
    RUN(test_worse_run_is_rolled_back);
    RUN(test_rejects_bad_arguments);
    RUN(test_arch_blocks);
    return check_report();
}
