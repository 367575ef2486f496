/*  test_aq_cancel - the AQ stage stops when asked (issue 10, item 5), and the beam search
 *  it now runs in chunks of rows gives the same codes as one call over every row.
 */
#include "worker/aq.h"
#include "base/cancel.h"     /* defines: atomic_int polled through lmp_cancelled */
#include "kernels/kernels.h" /* defines: lmp_gram_acc_ref() */
#include "tests/check.h"     /* defines: CHECK, RUN, check_report */

#include <string.h>

enum { N_OUT = 600, N_IN = 256, N_TOK = 512 };
static float W[N_OUT * N_IN], H[N_IN * N_IN];

static void make_layer(void) {
    static float x[N_TOK * N_IN];
    check_fill_random(W, N_OUT * N_IN, 7);
    check_fill_random(x, N_TOK * N_IN, 8);
    for (int t = 0; t < N_TOK; t++)
        for (int i = 1; i < N_IN; i++) x[t * N_IN + i] += 0.5f * x[t * N_IN + i - 1];
    static double hd[N_IN * N_IN];
    lmp_gram_acc_ref(hd, x, N_TOK, N_IN);
    for (int i = 0; i < N_IN * N_IN; i++) H[i] = (float)(hd[i] / N_TOK);
}

/* What beam_chunked (worker/aq.c) relies on: rows are searched independently, so the
 * search over rows [0, 600) in one call equals the search over 256 + 256 + 88 rows, in
 * order (j, m) and in a round's shuffled order. */
static void test_beam_rows_are_independent(void) {
    struct lmp_aq_scheme sc;
    lmp_aq_scheme_parse(&sc, "2x8g8", NULL);
    static float    cb[2 * 256 * 8], sc_rows[N_OUT];
    static uint16_t one[N_OUT * (N_IN / 8) * 2], parts[N_OUT * (N_IN / 8) * 2];
    int32_t         gperm[N_IN / 8];
    uint8_t         m_order[N_IN / 8 * 2];
    lmp_aq_beam_order(gperm, m_order, N_IN / 8, 2, 4, 1);
    check_fill_random(cb, 2 * 256 * 8, 9);
    for (int o = 0; o < N_OUT; o++) sc_rows[o] = 1.0f + 0.01f * (float)(o % 7);
    for (int shuffled = 0; shuffled < 2; shuffled++) {
        const int32_t *gp = shuffled ? gperm : NULL;
        const uint8_t *mo = shuffled ? m_order : NULL;
        for (size_t i = 0; i < sizeof(one) / sizeof(one[0]); i++) one[i] = (uint16_t)(i * 37 % 256);
        memcpy(parts, one, sizeof(one));
        struct lmp_err err = {0};
        CHECK(lmp_aq_beam_rows(one, NULL, W, sc_rows, cb, H, N_OUT, N_IN, &sc, 8, gp, mo, &err) ==
              LMP_OK);
        const int64_t per_row = (N_IN / 8) * 2;
        for (int64_t o0 = 0; o0 < N_OUT; o0 += 256) {
            const int64_t n = N_OUT - o0 < 256 ? N_OUT - o0 : 256;
            CHECK(lmp_aq_beam_rows(parts + o0 * per_row, NULL, W + o0 * N_IN, sc_rows + o0, cb, H,
                                   n, N_IN, &sc, 8, gp, mo, &err) == LMP_OK);
        }
        CHECK(memcmp(one, parts, sizeof(one)) == 0);
    }
}

static atomic_int flag;
static int        rounds_seen;
static void       on_round(void *ctx, int round, int max_rounds, double loss, double rel) {
          (void)ctx, (void)max_rounds, (void)loss, (void)rel;
          rounds_seen = round;
          if (round == 1) atomic_store(&flag, 1); /* a TaskCancel arrives during round 1 */
}

static void test_quantize_stops_on_its_flag(void) {
    struct lmp_aq_scheme sc;
    struct lmp_aq_opts   o;
    struct lmp_aq_layer  l;
    lmp_aq_scheme_parse(&sc, "2x8g8", NULL);
    lmp_aq_opts_init(&o);
    o.max_rounds = 10, o.tol = 0.0, o.seed = 1;
    o.cancel = &flag, o.progress = on_round;
    struct lmp_err err = {0};
    atomic_store(&flag, 0);
    CHECK(lmp_aq_quantize(&l, NULL, W, H, N_OUT, N_IN, &sc, &o, &err) == LMP_ECANCEL);
    CHECK(rounds_seen == 1 && strstr(err.msg, "AQ quantization stopped") != NULL);
    CHECK(l.codes == NULL && l.codebooks == NULL); /* nothing half-made is handed out */
    o.progress = NULL;                             /* flag still set: stops before round 1 */
    CHECK(lmp_aq_quantize(&l, NULL, W, H, N_OUT, N_IN, &sc, &o, &err) == LMP_ECANCEL);
    atomic_store(&flag, 0); /* cleared: runs to the end */
    o.max_rounds = 2;
    CHECK(lmp_aq_quantize(&l, NULL, W, H, N_OUT, N_IN, &sc, &o, &err) == LMP_OK);
    lmp_aq_layer_release(&l);
}

/* Last: the process-wide stop (a SIGTERM handler's) stops every stage, flag or none. */
static void test_quantize_stops_on_shutdown(void) {
    struct lmp_aq_scheme sc;
    struct lmp_aq_opts   o;
    struct lmp_aq_layer  l;
    lmp_aq_scheme_parse(&sc, "2x8g8", NULL);
    lmp_aq_opts_init(&o);
    CHECK(!lmp_cancel_is_shutdown() && !lmp_cancelled(NULL));
    lmp_cancel_shutdown();
    CHECK(lmp_cancelled(NULL));
    struct lmp_err err = {0};
    CHECK(lmp_aq_quantize(&l, NULL, W, H, N_OUT, N_IN, &sc, &o, &err) == LMP_ECANCEL);
}

int main(void) {
    make_layer();
    RUN(test_beam_rows_are_independent);
    RUN(test_quantize_stops_on_its_flag);
    RUN(test_quantize_stops_on_shutdown);
    return check_report();
}
