/*  test_pv - one-process PV-Tuning steps (worker/pv.h) on a tiny random model
 *
 *  The teacher is a random 2-block model (dim 24, GQA 4/2 heads, vocab 50, tied); the
 *  student is the same model with every linear replaced by an AQ code (2 codebooks of 16
 *  entries, groups of 4: 2 bits per weight; codes by one beam-search sweep against the
 *  weights, scales from row norms) and trained against the teacher's logits with
 *  worker/model_grad.h's KL backward:
 *  - registration decodes the codes into the dense weights the forward runs;
 *  - the P step (Adam on codebooks, scales and norms through the decode) lowers the KL:
 *    every one of the first steps at a small rate, and by more than 30% over 40 steps;
 *  - the V step re-encodes at most floor(code_frac x groups) groups per linear, never
 *    increases a re-encoded group's L2 distance to its straight-through buffer (each
 *    group checked), leaves the other groups' codes alone, and keeps every dense weight
 *    equal to the kernel's decode of its codes; code_frac 0 changes nothing;
 *  - LAMB: a P step moves each tensor by lr times its norm, and steps lower the KL;
 *  - with a trust ratio, no linear's decoded weight moves by more than that fraction of
 *    its norm in one V step, and fewer codes change than without;
 *  - P and V steps together lower the KL.
 */
#include "worker/pv.h"
#include "kernels/kernels.h"   /* defines: lmp_kernels_get()->aq_beam, aq_decode */
#include "tests/check.h"       /* defines: CHECK, CHECK_NEAR, RUN, check_report */
#include "tests/tiny_model.h"  /* defines: build, struct spec, random_tokens */
#include "worker/model_grad.h" /* defines: lmp_model_grad_*, lmp_model_weights_* */

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { T = 8, N_SEQ = 2 };
enum { ROWS = N_SEQ * T, NL = LAYERS * LMP_LIN_COUNT, M = 2, K = 16, G = 4 };

/* ---- the student: teacher weights quantized ------------------------------------------- */

struct student {
    struct lmp_model             *m;
    struct lmp_model_weights     *teacher, *w; /* w: the student's dense weights (decoded) */
    struct lmp_model_grad        *mg;
    struct lmp_pv_linear          lin[NL];
    struct lmp_pv_param           prm[2 * LAYERS + 1];
    float                        *t; /* (ROWS, VOCAB) teacher logits */
    int32_t                       tokens[ROWS];
    struct lmp_model_grads_owned *g;
    const float                  *dw[NL], *dp[2 * LAYERS + 1];
};

static void student_init(struct student *s, uint64_t seed) {
    memset(s, 0, sizeof(*s));
    const struct spec sp  = {LMP_ROPE_HALF, true, false, 4, 2};
    struct lmp_err    err = {0};
    s->m                  = build(&sp, seed);
    CHECK(lmp_model_weights_load(s->m, &s->teacher, &err) == LMP_OK);
    CHECK(lmp_model_weights_load(s->m, &s->w, &err) == LMP_OK);
    CHECK(lmp_model_grad_new(&s->m->cfg, N_SEQ, T, &s->mg) == LMP_OK);
    random_tokens(s->tokens, ROWS, VOCAB, seed + 1);
    s->t = malloc(sizeof(float) * ROWS * VOCAB);
    CHECK(lmp_model_grad_forward(s->mg, &s->teacher->params, s->tokens, N_SEQ, &err) == LMP_OK);
    lmp_model_grad_logits(s->mg, &s->teacher->params, 0, ROWS, s->t);
    for (int i = 0; i < NL; i++) {
        const struct lmp_linear *l     = &s->m->blocks[i / LMP_LIN_COUNT].lin[i % LMP_LIN_COUNT];
        struct lmp_pv_linear    *q     = &s->lin[i];
        const int64_t            n_grp = l->n_in / G;
        q->shape =
            (struct lmp_aq_shape){.n_out = l->n_out, .n_in = l->n_in, .M = M, .K = K, .g = G};
        q->codes = calloc((size_t)(l->n_out * n_grp * M), sizeof(uint16_t));
        q->cb    = calloc((size_t)(M * K * G), sizeof(float));
        q->scale = calloc((size_t)l->n_out, sizeof(float));
        q->w     = s->w->w[i];
        tiny_aq_encode(s->teacher->w[i], l->n_out, l->n_in, M, K, G, q->codes, q->cb, q->scale,
                       seed + 100 + i);
    }
    for (int b = 0; b < LAYERS; b++) {
        s->prm[2 * b]     = (struct lmp_pv_param){s->w->attn_norm[b], DIM};
        s->prm[2 * b + 1] = (struct lmp_pv_param){s->w->ffn_norm[b], DIM};
    }
    s->prm[2 * LAYERS] = (struct lmp_pv_param){s->w->out_norm, DIM};
    s->g               = lmp_model_grads_new(&s->m->cfg, false);
    for (int i = 0; i < NL; i++) s->dw[i] = s->g->g.blocks[i / LMP_LIN_COUNT].w[i % LMP_LIN_COUNT];
    for (int b = 0; b < LAYERS; b++) {
        s->dp[2 * b]     = s->g->g.blocks[b].attn_norm;
        s->dp[2 * b + 1] = s->g->g.blocks[b].ffn_norm;
    }
    s->dp[2 * LAYERS] = s->g->g.out_norm;
}

static void student_free(struct student *s) {
    for (int i = 0; i < NL; i++) {
        free(s->lin[i].codes);
        free(s->lin[i].cb);
        free(s->lin[i].scale);
    }
    lmp_model_grads_free(&s->g);
    free(s->t);
    lmp_model_grad_destroy(&s->mg);
    lmp_model_weights_free(&s->w);
    lmp_model_weights_free(&s->teacher);
    lmp_model_close(&s->m);
}

/* KL of the student now; with grad, its gradients in s->g (zeroed first). */
static double kl_now(struct student *s, bool grad) {
    struct lmp_err err = {0};
    CHECK(lmp_model_grad_forward(s->mg, &s->w->params, s->tokens, N_SEQ, &err) == LMP_OK);
    double kl = 0;
    if (grad) lmp_model_grads_zero(s->g);
    lmp_model_grad_kl_backward(s->mg, &s->w->params, s->t, grad ? &s->g->g : NULL, &kl, NULL);
    return kl;
}

static bool w_is_decode(const struct lmp_pv_linear *q) {
    const int64_t n = q->shape.n_out * q->shape.n_in;
    float        *d = malloc((size_t)n * sizeof(float));
    lmp_kernels_get()->aq_decode(d, q->codes, q->cb, q->scale, &q->shape);
    bool same = memcmp(d, q->w, (size_t)n * sizeof(float)) == 0;
    free(d);
    return same;
}

static void test_p_step_lowers_kl(void) {
    struct student s;
    student_init(&s, 10);
    struct lmp_pv     *pv = NULL;
    struct lmp_pv_opts o  = {.lr = 2e-3f, .code_frac = -1};
    CHECK(lmp_pv_new(s.lin, NL, s.prm, 2 * LAYERS + 1, &o, &pv) == LMP_OK);
    for (int i = 0; i < NL; i++) CHECK(w_is_decode(&s.lin[i]));
    const double kl0 = kl_now(&s, true);
    CHECK(kl0 > 0.05);
    double prev = kl0, kl = kl0;
    int    rises = 0;
    for (int step = 0; step < 40; step++) {
        CHECK(lmp_pv_p_step(pv, s.dw, s.dp) == LMP_OK);
        kl = kl_now(&s, true);
        if (step < 5 && !(kl < prev)) rises++;
        prev = kl;
    }
    fprintf(stderr, "  P step: KL %.4f -> %.4f after 40 steps\n", kl0, kl);
    CHECK(rises == 0);
    CHECK(kl < 0.7 * kl0);
    for (int i = 0; i < NL; i++) CHECK(w_is_decode(&s.lin[i]));
    lmp_pv_destroy(&pv);
    student_free(&s);
}

static void test_v_step(void) {
    struct student s;
    student_init(&s, 30);
    struct lmp_pv     *pv   = NULL;
    const double       frac = 0.05;
    struct lmp_pv_opts o    = {.code_lr = 5e-2f, .code_frac = frac, .beam = 4};
    CHECK(lmp_pv_new(s.lin, NL, s.prm, 2 * LAYERS + 1, &o, &pv) == LMP_OK);
    int64_t total_changed = 0;
    for (int step = 0; step < 4; step++) {
        kl_now(&s, true);
        uint16_t *old_codes[NL];
        float    *old_w[NL];
        int64_t   allowed = 0;
        for (int i = 0; i < NL; i++) {
            const struct lmp_aq_shape *sh = &s.lin[i].shape;
            const int64_t nc = sh->n_out * (sh->n_in / G) * M, nw = sh->n_out * sh->n_in;
            old_codes[i] = malloc((size_t)nc * sizeof(uint16_t));
            old_w[i]     = malloc((size_t)nw * sizeof(float));
            memcpy(old_codes[i], s.lin[i].codes, (size_t)nc * sizeof(uint16_t));
            memcpy(old_w[i], s.lin[i].w, (size_t)nw * sizeof(float));
            allowed += (int64_t)(frac * (double)(sh->n_out * (sh->n_in / G)));
        }
        struct lmp_pv_v_stats st;
        CHECK(lmp_pv_v_step(pv, s.dw, &st) == LMP_OK);
        CHECK(st.n_selected <= allowed && st.n_changed <= st.n_selected);
        CHECK(st.dist_after <= st.dist_before);
        int64_t changed = 0, worse = 0;
        for (int i = 0; i < NL; i++) {
            const struct lmp_aq_shape *sh     = &s.lin[i].shape;
            const int64_t              groups = sh->n_out * (sh->n_in / G);
            const float               *u      = lmp_pv_buffer(pv, i);
            int64_t                    here   = 0;
            for (int64_t gi = 0; gi < groups; gi++) {
                if (memcmp(old_codes[i] + gi * M, s.lin[i].codes + gi * M, M * sizeof(uint16_t)) ==
                    0)
                    continue;
                here++;
                double before = 0, after = 0;
                for (int t = 0; t < G; t++) {
                    const double a = (double)u[gi * G + t] - old_w[i][gi * G + t];
                    const double b = (double)u[gi * G + t] - s.lin[i].w[gi * G + t];
                    before += a * a;
                    after += b * b;
                }
                if (!(after <= before * (1 + 1e-5) + 1e-12)) worse++;
            }
            CHECK(here <= (int64_t)(frac * (double)groups)); /* per linear */
            CHECK(w_is_decode(&s.lin[i]));
            changed += here;
            free(old_codes[i]);
            free(old_w[i]);
        }
        CHECK(worse == 0);
        CHECK(changed == st.n_changed);
        total_changed += changed;
        if (step == 0)
            fprintf(stderr,
                    "  V step: %lld of %lld groups selected, %lld changed, distance %.4g -> %.4g\n",
                    (long long)st.n_selected, (long long)st.n_groups, (long long)st.n_changed,
                    st.dist_before, st.dist_after);
    }
    CHECK(total_changed > 0);
    lmp_pv_destroy(&pv);

    /* code_frac 0: the buffers move, no code does */
    struct lmp_pv_opts o0 = {.code_lr = 5e-2f, .code_frac = 0};
    CHECK(lmp_pv_new(s.lin, NL, s.prm, 2 * LAYERS + 1, &o0, &pv) == LMP_OK);
    kl_now(&s, true);
    struct lmp_pv_v_stats st;
    CHECK(lmp_pv_v_step(pv, s.dw, &st) == LMP_OK);
    CHECK(st.n_selected == 0 && st.n_changed == 0 && st.n_groups > 0);
    lmp_pv_destroy(&pv);
    student_free(&s);
}

/* LAMB: one P step moves each tensor by lr times its norm; steps lower the KL. */
static void test_lamb(void) {
    struct student s;
    student_init(&s, 32);
    struct lmp_pv     *pv = NULL;
    const float        lr = 1e-2f;
    struct lmp_pv_opts o  = {.lr = lr, .lamb = true, .code_frac = 0};
    CHECK(lmp_pv_new(s.lin, NL, s.prm, 2 * LAYERS + 1, &o, &pv) == LMP_OK);
    const int64_t nc  = M * K * G;
    float        *cb0 = malloc(sizeof(float) * (size_t)nc);
    memcpy(cb0, s.lin[3].cb, sizeof(float) * (size_t)nc);
    const double kl0 = kl_now(&s, true);
    CHECK(lmp_pv_p_step(pv, s.dw, s.dp) == LMP_OK);
    double dd = 0, xx = 0;
    for (int64_t i = 0; i < nc; i++) {
        dd += ((double)s.lin[3].cb[i] - cb0[i]) * ((double)s.lin[3].cb[i] - cb0[i]);
        xx += (double)cb0[i] * cb0[i];
    }
    CHECK(fabs(sqrt(dd / xx) - lr) < 1e-4);
    for (int step = 1; step < 20; step++) {
        kl_now(&s, true);
        CHECK(lmp_pv_p_step(pv, s.dw, s.dp) == LMP_OK);
    }
    const double kl1 = kl_now(&s, false);
    fprintf(stderr, "  LAMB: relative step %.5f (lr %.3g); KL %.4f -> %.4f in 20 steps\n",
            sqrt(dd / xx), lr, kl0, kl1);
    CHECK(kl1 < 0.7 * kl0);
    free(cb0);
    lmp_pv_destroy(&pv);
    student_free(&s);
}

/* The trust ratio caps each linear's decoded weight change per V step. */
static void test_trust_ratio(void) {
    const double trust      = 0.15;
    int64_t      changed[2] = {0, 0}, capped = 0;
    double       worst = 0;
    for (int run = 0; run < 2; run++) {
        struct student s;
        student_init(&s, 31);
        struct lmp_pv     *pv = NULL;
        struct lmp_pv_opts o  = {
             .code_lr = 5e-2f, .code_frac = 0.2, .beam = 4, .trust_ratio = run ? trust : 0};
        CHECK(lmp_pv_new(s.lin, NL, s.prm, 2 * LAYERS + 1, &o, &pv) == LMP_OK);
        for (int step = 0; step < 3; step++) {
            kl_now(&s, true);
            float *old_w[NL];
            for (int i = 0; i < NL; i++) {
                const int64_t nw = s.lin[i].shape.n_out * s.lin[i].shape.n_in;
                old_w[i]         = malloc((size_t)nw * sizeof(float));
                memcpy(old_w[i], s.lin[i].w, (size_t)nw * sizeof(float));
            }
            struct lmp_pv_v_stats st;
            CHECK(lmp_pv_v_step(pv, s.dw, &st) == LMP_OK);
            changed[run] += st.n_changed;
            capped += run ? st.n_capped : 0;
            CHECK(run || st.n_capped == 0);
            for (int i = 0; i < NL; i++) {
                const int64_t nw = s.lin[i].shape.n_out * s.lin[i].shape.n_in;
                double        d = 0, w = 0;
                for (int64_t k = 0; k < nw; k++) {
                    d += ((double)s.lin[i].w[k] - old_w[i][k]) *
                         ((double)s.lin[i].w[k] - old_w[i][k]);
                    w += (double)old_w[i][k] * old_w[i][k];
                }
                if (run) worst = fmax(worst, sqrt(d / w));
                CHECK(w_is_decode(&s.lin[i]));
                free(old_w[i]);
            }
        }
        lmp_pv_destroy(&pv);
        student_free(&s);
    }
    fprintf(stderr,
            "  trust ratio %.2f: %lld codes changed (%lld without), %lld capped, largest "
            "relative change %.4f\n",
            trust, (long long)changed[1], (long long)changed[0], (long long)capped, worst);
    CHECK(capped > 0 && changed[1] < changed[0]);
    CHECK(worst <= trust * (1 + 1e-4));
}

static void test_pv_steps_lower_kl(void) {
    struct student s;
    student_init(&s, 50);
    struct lmp_pv     *pv = NULL;
    struct lmp_pv_opts o  = {.lr = 2e-3f, .code_lr = 1e-2f, .code_frac = 0.02};
    CHECK(lmp_pv_new(s.lin, NL, s.prm, 2 * LAYERS + 1, &o, &pv) == LMP_OK);
    const double kl0     = kl_now(&s, true);
    double       kl      = kl0;
    int64_t      changed = 0;
    for (int step = 0; step < 30; step++) {
        struct lmp_pv_v_stats st;
        CHECK(lmp_pv_p_step(pv, s.dw, s.dp) == LMP_OK);
        CHECK(lmp_pv_v_step(pv, s.dw, &st) == LMP_OK);
        changed += st.n_changed;
        kl = kl_now(&s, true);
    }
    fprintf(stderr, "  P+V steps: KL %.4f -> %.4f after 30 steps, %lld codes changed\n", kl0, kl,
            (long long)changed);
    CHECK(kl < 0.8 * kl0);
    lmp_pv_destroy(&pv);
    student_free(&s);
}

/* The default code lr by the scheme: the two measured points, between them geometric, and
 * outside them (or given nonsense) the nearer end. */
static void test_default_code_lr(void) {
    CHECK(fabsf(lmp_pv_default_code_lr(2.0) - 3e-3f) < 1e-9f); /* 2x8g8, 1x16g8 */
    CHECK(fabsf(lmp_pv_default_code_lr(4.0) - 5e-4f) < 1e-9f); /* 2x8g4 */
    CHECK(fabsf(lmp_pv_default_code_lr(3.0) - 3e-3f / sqrtf(6.0f)) < 1e-8f);
    CHECK(lmp_pv_default_code_lr(1.0) == lmp_pv_default_code_lr(2.0));
    CHECK(lmp_pv_default_code_lr(8.0) == lmp_pv_default_code_lr(4.0));
    CHECK(lmp_pv_default_code_lr(NAN) == lmp_pv_default_code_lr(2.0));
    CHECK(lmp_pv_default_code_lr(2.5) < 3e-3f && lmp_pv_default_code_lr(2.5) > 5e-4f);
}

static void test_rejects_bad_shapes(void) {
    struct lmp_pv       *pv = NULL;
    struct lmp_pv_linear l  = {.shape = {.n_out = 2, .n_in = 10, .M = 1, .K = 16, .g = 4}};
    CHECK(lmp_pv_new(&l, 1, NULL, 0, NULL, &pv) == LMP_EINVAL && pv == NULL);
    l.shape.n_in = 8;
    l.shape.K    = 70000;
    CHECK(lmp_pv_new(&l, 1, NULL, 0, NULL, &pv) == LMP_EINVAL);
    CHECK(lmp_pv_new(NULL, 0, NULL, 0, NULL, &pv) == LMP_OK && pv != NULL);
    lmp_pv_destroy(&pv);
    CHECK(pv == NULL);
}

int main(void) {
    RUN(test_p_step_lowers_kl);
    RUN(test_v_step);
    RUN(test_lamb);
    RUN(test_trust_ratio);
    RUN(test_pv_steps_lower_kl);
    RUN(test_rejects_bad_shapes);
    RUN(test_default_code_lr);
    return check_report();
}
