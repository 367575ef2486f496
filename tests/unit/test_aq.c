/*  test_aq - AQLM layer quantization: scheme parsing, bit accounting, H validation,
 *  convergence on a small random layer, beam width ordering, row-shard additivity,
 *  and agreement between the reported error and the decoded weights.
 */
#include "worker/aq.h"
#include "worker/rtn.h"
#include "kernels/kernels.h" /* defines: lmp_aq_decode_ref() */
#include "tests/check.h"     /* defines: CHECK, CHECK_NEAR, RUN, check_report */

/* A small layer with Gaussian-like weights and a correlated SPD H = X^T X / n_tok. */
enum { N_OUT = 128, N_IN = 256, N_TOK = 512 };
static float W[N_OUT * N_IN], H[N_IN * N_IN], Hsing[N_IN * N_IN];

static void make_layer(void) {
    static float u[4][N_OUT * N_IN], x[N_TOK * N_IN];
    for (int k = 0; k < 4; k++) check_fill_random(u[k], N_OUT * N_IN, 50 + k);
    for (int i = 0; i < N_OUT * N_IN; i++)
        W[i] = (u[0][i] + u[1][i] + u[2][i] + u[3][i]) * (0.5f + (float)(i / N_IN) / N_OUT);
    check_fill_random(x, N_TOK * N_IN, 60);
    for (int t = 0; t < N_TOK; t++)
        for (int i = 1; i < N_IN; i++) x[t * N_IN + i] += 0.7f * x[t * N_IN + i - 1];
    static double hd[N_IN * N_IN];
    lmp_gram_acc_ref(hd, x, N_TOK, N_IN);
    for (int i = 0; i < N_IN * N_IN; i++) H[i] = (float)(hd[i] / N_TOK);
    memset(hd, 0, sizeof(hd)); /* rank 64 < n_in: singular */
    lmp_gram_acc_ref(hd, x, 64, N_IN);
    for (int i = 0; i < N_IN * N_IN; i++) Hsing[i] = (float)(hd[i] / 64);
}

static void test_aq_scheme_parse(void) {
    struct lmp_aq_scheme sc;
    CHECK(lmp_aq_scheme_parse(&sc, "2x8g8", NULL) == LMP_OK);
    CHECK(sc.M == 2 && sc.B == 8 && sc.g == 8 && sc.K == 256);
    CHECK(lmp_aq_scheme_parse(&sc, "1x16g8", NULL) == LMP_OK);
    CHECK(sc.M == 1 && sc.B == 16 && sc.g == 8 && sc.K == 65536);
    CHECK(lmp_aq_scheme_parse(&sc, "2x6g4", NULL) == LMP_OK);
    CHECK(sc.M == 2 && sc.B == 6 && sc.g == 4 && sc.K == 64);
    CHECK(lmp_aq_scheme_parse(&sc, "1x8g8", NULL) == LMP_OK && sc.K == 256 && sc.M == 1);
    static const char *bad[] = {"",       "2x8",   "2x8g",   "0x8g8",  "2x17g8", "2x8g0",
                                "2x8g8x", "ax8g8", "2 x8g8", "-1x8g8", "2x8g65", "9x8g8"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct lmp_err err = {0};
        CHECK(lmp_aq_scheme_parse(&sc, bad[i], &err) == LMP_EINVAL);
        CHECK(strstr(err.msg, "AQ scheme") != NULL);
    }
    CHECK(lmp_aq_scheme_parse(&sc, NULL, NULL) == LMP_EINVAL);
    struct lmp_err err = {0};
    CHECK(lmp_aq_scheme_parse(&sc, "2x8g8", NULL) == LMP_OK);
    CHECK(lmp_aq_scheme_check(&sc, 4, 20, &err) == LMP_EINVAL);
    CHECK(strstr(err.msg, "does not divide n_in 20") != NULL);
    CHECK(lmp_aq_scheme_check(&sc, 4, 24, NULL) == LMP_OK);
    CHECK(lmp_aq_scheme_check(&sc, 0, 24, NULL) == LMP_EINVAL);
}

static void test_aq_bits_per_weight(void) {
    struct lmp_aq_scheme sc;
    lmp_aq_scheme_parse(&sc, "2x8g8", NULL);
    /* codes 576*1536/8*2*8 = 1769472, codebooks 2*256*8*16 = 65536, scales 576*16 = 9216 */
    CHECK(lmp_aq_bits_per_weight(&sc, 576, 1536) == (1769472.0 + 65536.0 + 9216.0) / 884736.0);
    lmp_aq_scheme_parse(&sc, "1x16g8", NULL);
    /* 4096^2: codes 2 bpw, codebook 65536*8*16 = 8388608 bits = 0.5 bpw, scales 1/256 bpw */
    CHECK(lmp_aq_bits_per_weight(&sc, 4096, 4096) == 2.50390625);
    lmp_aq_scheme_parse(&sc, "1x8g8", NULL);
    CHECK(lmp_aq_bits_per_weight(&sc, 8192, 8192) == 1.0 + 32768.0 / 67108864.0 + 16.0 / 8192.0);
}

static void test_aq_rejects_bad_h(void) {
    struct lmp_aq_scheme sc;
    struct lmp_aq_opts   o;
    struct lmp_aq_layer  l;
    lmp_aq_scheme_parse(&sc, "2x8g8", NULL);
    lmp_aq_opts_init(&o);
    static float h[N_IN * N_IN];
    memcpy(h, H, sizeof(h));
    h[3 * N_IN + 7]    = NAN;
    struct lmp_err err = {0};
    CHECK(lmp_aq_quantize(&l, NULL, W, h, N_OUT, N_IN, &sc, &o, &err) == LMP_EINVAL);
    CHECK(strstr(err.msg, "non-finite entry at (3, 7)") != NULL);
    CHECK(l.codes == NULL);
    memset(h, 0, sizeof(h));
    err = (struct lmp_err){0};
    CHECK(lmp_aq_quantize(&l, NULL, W, h, N_OUT, N_IN, &sc, &o, &err) == LMP_EINVAL);
    CHECK(strstr(err.msg, "H is zero") != NULL);
    memcpy(h, H, sizeof(h));
    h[5 * N_IN + 5] = -1.0f;
    CHECK(lmp_aq_check_h(h, N_IN, NULL) == LMP_EINVAL);
    err = (struct lmp_err){0};
    CHECK(lmp_aq_quantize(&l, NULL, W, H, N_OUT, N_IN - 4, &sc, &o, &err) == LMP_EINVAL);
    CHECK(strstr(err.msg, "does not divide") != NULL);
}

static double decoded_rel_err(const struct lmp_aq_layer *l, const float *h) {
    static float        wh[N_OUT * N_IN];
    struct lmp_aq_shape s = {l->n_out, l->n_in, l->sc.M, l->sc.K, l->sc.g};
    lmp_aq_decode_ref(wh, l->codes, l->codebooks, l->scales, &s);
    double rel = -1;
    CHECK(lmp_aq_rel_err(&rel, W, wh, h, l->n_out, l->n_in) == LMP_OK);
    return rel;
}

static void test_aq_converges_and_beats_rtn(void) {
    struct lmp_aq_scheme sc;
    struct lmp_aq_opts   o;
    struct lmp_aq_layer  l;
    struct lmp_aq_stats  st;
    lmp_aq_scheme_parse(&sc, "2x8g8", NULL);
    lmp_aq_opts_init(&o);
    o.cg_iters         = 0; /* the Adam update (test_aq_cg_update covers the default) */
    o.adam_steps       = 40;
    o.max_rounds       = 4;
    o.tol              = 0.0; /* run every round: the monotonicity check needs several */
    o.beam             = 4;
    o.lr               = 1e-3f;
    o.seed             = 1;
    struct lmp_err err = {0};
    CHECK(lmp_aq_quantize(&l, &st, W, H, N_OUT, N_IN, &sc, &o, &err) == LMP_OK);
    if (err.msg[0]) fprintf(stderr, "  %s\n", err.msg);
    fprintf(stderr, "  2x8g8: init %.5f", st.rel_err_init);
    for (int r = 0; r < st.n_rounds; r++) fprintf(stderr, " -> %.5f", st.rel_err_round[r]);
    fprintf(stderr, " (%lld steps, %.2f s)\n", (long long)st.n_adam_steps, st.seconds);
    CHECK(st.n_rounds == 4);
    CHECK(st.n_adam_steps == 160);
    CHECK(st.rel_err_round[0] < st.rel_err_init);
    for (int r = 1; r < st.n_rounds; r++) CHECK(st.rel_err_round[r] <= st.rel_err_round[r - 1]);
    CHECK(st.rel_err_final < 0.9 * st.rel_err_init);
    CHECK(st.bits_per_weight == lmp_aq_bits_per_weight(&sc, N_OUT, N_IN));
    CHECK_NEAR(decoded_rel_err(&l, H) / st.rel_err_final, 1.0, 1e-4); /* what was reported */

    static float wr[N_OUT * N_IN]; /* RTN 2-bit, G = 64 (2.5 bpw) */
    CHECK(lmp_rtn_quantize(wr, NULL, NULL, NULL, W, N_OUT, N_IN, 2, 64, NULL) == LMP_OK);
    double rel_rtn = -1;
    CHECK(lmp_aq_rel_err(&rel_rtn, W, wr, H, N_OUT, N_IN) == LMP_OK);
    fprintf(stderr, "  RTN 2-bit g64: %.5f\n", rel_rtn);
    CHECK(st.rel_err_final < rel_rtn);
    lmp_aq_layer_release(&l);
    lmp_aq_layer_release(&l);
}

static void test_aq_stops_at_tolerance(void) {
    struct lmp_aq_scheme sc;
    struct lmp_aq_opts   o;
    struct lmp_aq_layer  l;
    struct lmp_aq_stats  st;
    lmp_aq_scheme_parse(&sc, "1x8g8", NULL);
    lmp_aq_opts_init(&o);
    o.cg_iters   = 0;
    o.adam_steps = 20;
    o.beam       = 1;
    o.tol        = 0.5; /* no round improves by half: one round only */
    CHECK(lmp_aq_quantize(&l, &st, W, H, N_OUT, N_IN, &sc, &o, NULL) == LMP_OK);
    CHECK(st.n_rounds == 1);
    o.tol            = 0.0;
    o.max_rounds     = 10;
    o.max_adam_steps = 50; /* the step budget ends it: 20 + 20 + 10 */
    lmp_aq_layer_release(&l);
    CHECK(lmp_aq_quantize(&l, &st, W, H, N_OUT, N_IN, &sc, &o, NULL) == LMP_OK);
    CHECK(st.n_adam_steps == 50 && st.n_rounds == 3);
    lmp_aq_layer_release(&l);
}

/* The progress observer: called once per round with that round's index, the round limit,
 * a loss that never increases and the round's relative error; the results are the same
 * bits with and without it. */
struct aq_seen {
    int    calls, last_round, max_rounds;
    double loss[LMP_AQ_MAX_ROUNDS], rel[LMP_AQ_MAX_ROUNDS];
    bool   ordered;
};
static void on_round(void *ctx, int round, int max_rounds, double loss, double rel_err) {
    struct aq_seen *s = ctx;
    s->ordered &= round == s->last_round + 1 && round <= LMP_AQ_MAX_ROUNDS;
    if (round >= 1 && round <= LMP_AQ_MAX_ROUNDS)
        s->loss[round - 1] = loss, s->rel[round - 1] = rel_err;
    s->calls++, s->last_round = round, s->max_rounds = max_rounds;
}

static void test_aq_progress_callback(void) {
    struct lmp_aq_scheme sc;
    struct lmp_aq_opts   o;
    struct lmp_aq_layer  a, b;
    struct lmp_aq_stats  sa, sb;
    lmp_aq_scheme_parse(&sc, "2x6g8", NULL);
    lmp_aq_opts_init(&o);
    CHECK(o.progress == NULL);
    o.max_rounds = 4;
    o.tol        = 0.0;
    o.beam       = 2;
    o.cg_iters   = 4;
    o.seed       = 9;
    CHECK(lmp_aq_quantize(&a, &sa, W, H, N_OUT, N_IN, &sc, &o, NULL) == LMP_OK);
    struct aq_seen seen = {.ordered = true};
    o.progress = on_round, o.progress_ctx = &seen;
    CHECK(lmp_aq_quantize(&b, &sb, W, H, N_OUT, N_IN, &sc, &o, NULL) == LMP_OK);
    CHECK(seen.calls == sb.n_rounds && seen.calls >= 2 && seen.ordered && seen.max_rounds == 4);
    for (int r = 0; r < seen.calls; r++) {
        CHECK(seen.rel[r] == sb.rel_err_round[r]);
        CHECK(seen.loss[r] > 0 && (r == 0 || seen.loss[r] <= seen.loss[r - 1]));
    }
    CHECK(sa.n_rounds == sb.n_rounds && sa.rel_err_final == sb.rel_err_final);
    CHECK(memcmp(a.codes, b.codes, (size_t)(N_OUT * (N_IN / sc.g) * sc.M) * 2) == 0);
    CHECK(memcmp(a.codebooks, b.codebooks, (size_t)(sc.M * sc.K * sc.g) * sizeof(float)) == 0);
    CHECK(memcmp(a.scales, b.scales, N_OUT * sizeof(float)) == 0);
    lmp_aq_layer_release(&a);
    lmp_aq_layer_release(&b);
}

/* The default update (conjugate gradient on the codebooks, closed-form scales) reaches at
 * least the error of the Adam update with a tenth of the objective evaluations (on average
 * over four seeds: one seed's searches differ by up to 1% either way), keeps the rounds
 * monotone, and honours the step budget. */
static void test_aq_cg_update(void) {
    struct lmp_aq_scheme sc;
    struct lmp_aq_opts   o;
    struct lmp_aq_layer  la, lc;
    struct lmp_aq_stats  sa, scg;
    lmp_aq_scheme_parse(&sc, "2x8g8", NULL);
    lmp_aq_opts_init(&o);
    CHECK(o.cg_iters > 0);
    double sum_adam = 0.0, sum_cg = 0.0;
    for (uint64_t seed = 1; seed <= 4; seed++) {
        o.max_rounds     = 3;
        o.max_adam_steps = 10000;
        o.tol            = 0.0;
        o.beam           = 4;
        o.seed           = seed;
        o.cg_iters       = 0;
        o.adam_steps     = 100;
        o.lr             = 1e-3f;
        CHECK(lmp_aq_quantize(&la, &sa, W, H, N_OUT, N_IN, &sc, &o, NULL) == LMP_OK);
        o.cg_iters = 8;
        CHECK(lmp_aq_quantize(&lc, &scg, W, H, N_OUT, N_IN, &sc, &o, NULL) == LMP_OK);
        fprintf(stderr,
                "  seed %d: Adam 3 x 100 steps: %.5f -> %.5f; CG 3 x 8: %.5f -> %.5f -> %.5f -> "
                "%.5f\n",
                (int)seed, sa.rel_err_init, sa.rel_err_final, scg.rel_err_init,
                scg.rel_err_round[0], scg.rel_err_round[1], scg.rel_err_round[2]);
        CHECK(scg.rel_err_init == sa.rel_err_init); /* same k-means start */
        CHECK(scg.n_rounds == 3 && scg.n_adam_steps <= 24 && scg.n_adam_steps > 3);
        CHECK(scg.rel_err_round[0] < scg.rel_err_init);
        for (int r = 1; r < scg.n_rounds; r++)
            CHECK(scg.rel_err_round[r] <= scg.rel_err_round[r - 1]);
        CHECK(scg.rel_err_final <= sa.rel_err_final * 1.02);
        CHECK_NEAR(decoded_rel_err(&lc, H) / scg.rel_err_final, 1.0, 1e-4);
        sum_adam += sa.rel_err_final;
        sum_cg += scg.rel_err_final;
        lmp_aq_layer_release(&la);
        lmp_aq_layer_release(&lc);
    }
    CHECK(sum_cg <= sum_adam * 1.001);
    struct lmp_aq_layer l1; /* the budget counts CG iterations: one round of 5 */
    o.max_rounds     = 4;
    o.max_adam_steps = 5;
    CHECK(lmp_aq_quantize(&l1, &scg, W, H, N_OUT, N_IN, &sc, &o, NULL) == LMP_OK);
    CHECK(scg.n_adam_steps == 5 && scg.n_rounds == 1);
    CHECK(scg.rel_err_final < scg.rel_err_init);
    lmp_aq_layer_release(&l1);
}

static void test_aq_singular_h_and_damping(void) {
    struct lmp_aq_scheme sc;
    struct lmp_aq_opts   o;
    struct lmp_aq_layer  l;
    struct lmp_aq_stats  st;
    lmp_aq_scheme_parse(&sc, "2x6g4", NULL);
    lmp_aq_opts_init(&o);
    o.adam_steps = 10;
    o.max_rounds = 2;
    o.beam       = 2;
    CHECK(lmp_aq_quantize(&l, &st, W, Hsing, N_OUT, N_IN, &sc, &o, NULL) == LMP_OK);
    CHECK(isfinite(st.rel_err_final) && st.rel_err_final <= st.rel_err_init);
    lmp_aq_layer_release(&l);
    o.damp = 0.01; /* optimised on H + damping, reported on H itself */
    CHECK(lmp_aq_quantize(&l, &st, W, Hsing, N_OUT, N_IN, &sc, &o, NULL) == LMP_OK);
    CHECK_NEAR(decoded_rel_err(&l, Hsing) / st.rel_err_final, 1.0, 1e-4);
    lmp_aq_layer_release(&l);
}

/* Objective of the given codes with the given codebooks/scales on rows [0, N_OUT). */
static double objective(const uint16_t *codes, const float *cb, const float *scale,
                        const struct lmp_aq_scheme *sc) {
    static float gc[2 * 256 * 8], gs[N_OUT];
    double       L = -1;
    CHECK(lmp_aq_grad_rows(&L, gc, gs, codes, W, scale, cb, H, N_OUT, N_IN, sc, NULL) == LMP_OK);
    return L;
}

/* The per-round order: a permutation of the groups and, per group, of the codebooks, a
 * function of (seed, round) only. */
static void test_aq_beam_order(void) {
    enum { NG = 72, M = 3 };
    int32_t g1[NG], g2[NG], g3[NG];
    uint8_t m1[NG * M], m2[NG * M], m3[NG * M];
    lmp_aq_beam_order(g1, m1, NG, M, 11, 2);
    lmp_aq_beam_order(g2, m2, NG, M, 11, 2);
    CHECK(memcmp(g1, g2, sizeof(g1)) == 0 && memcmp(m1, m2, sizeof(m1)) == 0);
    lmp_aq_beam_order(g3, m3, NG, M, 11, 3); /* next round: another order */
    CHECK(memcmp(g1, g3, sizeof(g1)) != 0 && memcmp(m1, m3, sizeof(m1)) != 0);
    lmp_aq_beam_order(g3, m3, NG, M, 12, 2); /* another layer seed: another order */
    CHECK(memcmp(g1, g3, sizeof(g1)) != 0);
    int seen[NG] = {0}, moved = 0;
    for (int i = 0; i < NG; i++) {
        CHECK(g1[i] >= 0 && g1[i] < NG);
        if (g1[i] >= 0 && g1[i] < NG) seen[g1[i]]++;
        moved += g1[i] != i;
        int ms = 0;
        for (int m = 0; m < M; m++) ms |= 1 << m1[i * M + m];
        CHECK(ms == (1 << M) - 1);
    }
    for (int i = 0; i < NG; i++) CHECK(seen[i] == 1);
    CHECK(moved > NG / 2);
}

/* lmp_aq_beam_rows in an order is the kernel's search on the problem with its groups
 * permuted (w's columns, H's rows and columns, the codes), codes permuted back. */
static void test_aq_beam_rows_in_order(void) {
    struct lmp_aq_scheme sc;
    lmp_aq_scheme_parse(&sc, "2x8g8", NULL);
    enum { G = 8, NG = N_IN / G, P = NG * 2, NCB = 2 * 256 * 8, R = 40 };
    static uint16_t c0[N_OUT * P], ca[R * P], cb_[R * P];
    static float    cb[NCB], scale[N_OUT], wp[R * N_IN], hp[N_IN * N_IN];
    int32_t         gperm[NG];
    uint8_t         m_order[P];
    lmp_aq_scales_from_rows(scale, W, N_OUT, N_IN);
    CHECK(lmp_aq_kmeans_init(cb, c0, W, scale, NULL, N_OUT, N_IN, &sc, 5, 0, 3, NULL) == LMP_OK);
    lmp_aq_beam_order(gperm, m_order, NG, 2, 5, 0);
    memcpy(ca, c0, sizeof(ca));
    CHECK(lmp_aq_beam_rows(ca, NULL, W, scale, cb, H, R, N_IN, &sc, 4, gperm, m_order, NULL) ==
          LMP_OK);
    for (int i = 0; i < NG; i++) {
        for (int a = 0; a < G; a++)
            for (int k = 0; k < NG; k++)
                for (int b = 0; b < G; b++)
                    hp[(i * G + a) * N_IN + k * G + b] =
                        H[(gperm[i] * G + a) * N_IN + gperm[k] * G + b];
        for (int o = 0; o < R; o++) {
            for (int t = 0; t < G; t++) wp[o * N_IN + i * G + t] = W[o * N_IN + gperm[i] * G + t];
            for (int m = 0; m < 2; m++) cb_[(o * NG + i) * 2 + m] = c0[(o * NG + gperm[i]) * 2 + m];
        }
    }
    const struct lmp_aq_shape s = {.n_out = R, .n_in = N_IN, .M = 2, .K = 256, .g = G};
    CHECK(lmp_kernels_get()->aq_beam(cb_, NULL, wp, scale, cb, hp, &s, 4, m_order) == 0);
    int same = 1;
    for (int o = 0; o < R; o++)
        for (int i = 0; i < NG; i++)
            for (int m = 0; m < 2; m++)
                same &= ca[(o * NG + gperm[i]) * 2 + m] == cb_[(o * NG + i) * 2 + m];
    CHECK(same);
    /* and the order changes the search (else the test above proves nothing) */
    memcpy(cb_, c0, sizeof(cb_));
    CHECK(lmp_aq_beam_rows(cb_, NULL, W, scale, cb, H, R, N_IN, &sc, 4, NULL, NULL, NULL) ==
          LMP_OK);
    CHECK(memcmp(ca, cb_, sizeof(ca)) != 0);
}

/* k-means: every group by default (max_points 0), unweighted when h is NULL; a sample and
 * weights are options, each giving another start. */
static void test_aq_kmeans_options(void) {
    struct lmp_aq_scheme sc;
    lmp_aq_scheme_parse(&sc, "2x8g8", NULL);
    struct lmp_aq_opts o;
    lmp_aq_opts_init(&o);
    CHECK(o.kmeans_max_points == 0 && o.kmeans_weighted == 0 && o.beam_shuffle == 1);
    enum { P = N_IN / 8 * 2, NCB = 2 * 256 * 8 };
    static uint16_t ca[N_OUT * P], cw[N_OUT * P], cs[N_OUT * P], cn[N_OUT * P];
    static float    cba[NCB], cbw[NCB], cbs[NCB], cbn[NCB], scale[N_OUT];
    lmp_aq_scales_from_rows(scale, W, N_OUT, N_IN);
    CHECK(lmp_aq_kmeans_init(cba, ca, W, scale, NULL, N_OUT, N_IN, &sc, 6, 0, 9, NULL) == LMP_OK);
    CHECK(lmp_aq_kmeans_init(cbn, cn, W, scale, NULL, N_OUT, N_IN, &sc, 6, N_OUT * (N_IN / 8), 9,
                             NULL) == LMP_OK); /* a "sample" of every group is all of them */
    CHECK(memcmp(cba, cbn, sizeof(cba)) == 0 && memcmp(ca, cn, sizeof(ca)) == 0);
    CHECK(lmp_aq_kmeans_init(cbw, cw, W, scale, H, N_OUT, N_IN, &sc, 6, 0, 9, NULL) == LMP_OK);
    CHECK(lmp_aq_kmeans_init(cbs, cs, W, scale, NULL, N_OUT, N_IN, &sc, 6, 1024, 9, NULL) ==
          LMP_OK);
    CHECK(memcmp(cba, cbw, sizeof(cba)) != 0 && memcmp(cba, cbs, sizeof(cba)) != 0);
    /* every start is a sensible one: each codebook's entries are used */
    for (int v = 0; v < 3; v++) {
        const uint16_t *c    = v == 0 ? ca : v == 1 ? cw : cs;
        int             used = 0;
        static char     u[256];
        memset(u, 0, sizeof(u));
        for (int i = 0; i < N_OUT * P; i += 2) used += !u[c[i]]++;
        CHECK(used > 128);
    }
}

static void test_aq_beam_width_and_row_shards(void) {
    struct lmp_aq_scheme sc;
    lmp_aq_scheme_parse(&sc, "2x8g8", NULL);
    enum { P = N_IN / 8 * 2, NCB = 2 * 256 * 8, R0 = 45 };
    static uint16_t c0[N_OUT * P], c1[N_OUT * P], c8[N_OUT * P], cs[N_OUT * P];
    static float    cb[NCB], scale[N_OUT];
    lmp_aq_scales_from_rows(scale, W, N_OUT, N_IN);
    CHECK(lmp_aq_kmeans_init(cb, c0, W, scale, H, N_OUT, N_IN, &sc, 10, 0, 7, NULL) == LMP_OK);
    memcpy(c1, c0, sizeof(c0));
    memcpy(c8, c0, sizeof(c0));
    CHECK(lmp_aq_beam_rows(c1, NULL, W, scale, cb, H, N_OUT, N_IN, &sc, 1, NULL, NULL, NULL) ==
          LMP_OK);
    CHECK(lmp_aq_beam_rows(c8, NULL, W, scale, cb, H, N_OUT, N_IN, &sc, 8, NULL, NULL, NULL) ==
          LMP_OK);
    double L0 = objective(c0, cb, scale, &sc), L1 = objective(c1, cb, scale, &sc),
           L8 = objective(c8, cb, scale, &sc);
    fprintf(stderr, "  beam search from k-means codes: %.6g -> beam 1 %.6g, beam 8 %.6g\n", L0, L1,
            L8);
    CHECK(L1 < L0);
    CHECK(L8 <= L1);

    /* row shards: beam on [0, R0) and [R0, N_OUT) == beam on all rows */
    memcpy(cs, c0, sizeof(c0));
    CHECK(lmp_aq_beam_rows(cs, NULL, W, scale, cb, H, R0, N_IN, &sc, 8, NULL, NULL, NULL) ==
          LMP_OK);
    CHECK(lmp_aq_beam_rows(cs + R0 * P, NULL, W + R0 * N_IN, scale + R0, cb, H, N_OUT - R0, N_IN,
                           &sc, 8, NULL, NULL, NULL) == LMP_OK);
    CHECK_NEAR(objective(cs, cb, scale, &sc) / L8, 1.0, 1e-5);

    /* gradients: the codebook gradient of the layer is the sum over shards */
    static float ga[NCB], gb[NCB], gfull[NCB], sa[N_OUT], sfull[N_OUT];
    double       la, lb, lf;
    CHECK(lmp_aq_grad_rows(&lf, gfull, sfull, c8, W, scale, cb, H, N_OUT, N_IN, &sc, NULL) ==
          LMP_OK);
    CHECK(lmp_aq_grad_rows(&la, ga, sa, c8, W, scale, cb, H, R0, N_IN, &sc, NULL) == LMP_OK);
    CHECK(lmp_aq_grad_rows(&lb, gb, sa + R0, c8 + R0 * P, W + R0 * N_IN, scale + R0, cb, H,
                           N_OUT - R0, N_IN, &sc, NULL) == LMP_OK);
    CHECK_NEAR((la + lb) / lf, 1.0, 1e-6);
    double num = 0, den = 0;
    for (int i = 0; i < NCB; i++) {
        num += (ga[i] + gb[i] - gfull[i]) * (ga[i] + gb[i] - gfull[i]);
        den += gfull[i] * gfull[i];
    }
    CHECK(num <= 1e-10 * den);
    for (int o = 0; o < N_OUT; o++) CHECK_NEAR(sa[o], sfull[o], 1e-4 * (fabs(sfull[o]) + 1e-3));
}

static void test_aq_adam_deterministic(void) {
    struct lmp_aq_adam a, b;
    float              p[5] = {1, 2, 3, 4, 5}, q[5] = {1, 2, 3, 4, 5}, g[5] = {0.5f, -1, 0, 2, -3};
    CHECK(lmp_aq_adam_init(&a, 5, 0.9f, 0.95f) == LMP_OK);
    CHECK(lmp_aq_adam_init(&b, 5, 0.9f, 0.95f) == LMP_OK);
    for (int s = 0; s < 3; s++) {
        lmp_aq_adam_step(&a, p, g, 0.1f);
        lmp_aq_adam_step(&b, q, g, 0.1f);
    }
    CHECK(memcmp(p, q, sizeof(p)) == 0);
    CHECK_NEAR(p[0], 1.0 - 0.3, 1e-5); /* constant gradient: Adam moves lr per step */
    CHECK_NEAR(p[4], 5.0 + 0.3, 1e-5);
    CHECK(p[2] == 3.0f);
    lmp_aq_adam_release(&a);
    lmp_aq_adam_release(&b);
}

int main(void) {
    make_layer();
    RUN(test_aq_scheme_parse);
    RUN(test_aq_bits_per_weight);
    RUN(test_aq_rejects_bad_h);
    RUN(test_aq_adam_deterministic);
    RUN(test_aq_beam_width_and_row_shards);
    RUN(test_aq_beam_order);
    RUN(test_aq_beam_rows_in_order);
    RUN(test_aq_kmeans_options);
    RUN(test_aq_converges_and_beats_rtn);
    RUN(test_aq_stops_at_tolerance);
    RUN(test_aq_cg_update);
    RUN(test_aq_progress_callback);
    RUN(test_aq_singular_h_and_damping);
    return check_report();
}
