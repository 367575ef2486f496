/*  test_calib_slices - calibration slices (worker/calib.h): a block's Gram sums formed
 *  from per-slice calib objects, added in slice order, are the bits of one calib object
 *  over every sequence, at block 0 and after walking to block 1 (stories260K) */
#include "worker/calib.h"
#include "model/model.h"
#include "model/transformer.h"
#include "tests/check.h"

#include <stdlib.h>
#include <string.h>

static void test_slice_sizes(void) {
    CHECK(lmp_calib_slice_seqs(1) == 1 && lmp_calib_n_slices(1) == 1);
    CHECK(lmp_calib_slice_seqs(8) == 1 && lmp_calib_n_slices(8) == 8);
    CHECK(lmp_calib_slice_seqs(12) == 2 && lmp_calib_n_slices(12) == 6);
    CHECK(lmp_calib_slice_seqs(128) == 16 && lmp_calib_n_slices(128) == 8);
    CHECK(lmp_calib_slice_seqs(129) == 17 && lmp_calib_n_slices(129) == 8);
    for (int64_t n = 1; n < 300; n++) { /* slices cover every sequence, at most 8 of them */
        const int64_t k = lmp_calib_slice_seqs(n), s = lmp_calib_n_slices(n);
        CHECK(s >= 1 && s <= LMP_CALIB_SLICES && (s - 1) * k < n && s * k >= n);
    }
}

static void test_slices_equal_whole(void) {
    const char *p = check_shared_file(0, "models/stories260K/stories260K.bin");
    if (p == NULL) return;
    struct lmp_model *m   = NULL;
    struct lmp_err    err = {0};
    if (lmp_model_open(p, &m, &err) != LMP_OK) {
        check_skip(err.msg);
        return;
    }
    enum { NS = 13, CTX = 20 }; /* 7 slices of 2 sequences, the last of 1 */
    int32_t  tok[NS * CTX];
    uint64_t s = 17;
    for (int i = 0; i < NS * CTX; i++) {
        s      = s * 6364136223846793005ULL + 1442695040888963407ULL;
        tok[i] = (int32_t)((s >> 33) % (uint64_t)m->cfg.vocab_size);
    }
    struct lmp_transformer     *tf = NULL;
    struct lmp_transformer_opts to = {.n_threads = 2, .lazy_weights = true};
    CHECK(lmp_transformer_new(m, &to, &tf, &err) == LMP_OK);
    const int64_t k = lmp_calib_slice_seqs(NS), n_sl = lmp_calib_n_slices(NS);
    CHECK(n_sl == 7);
    struct lmp_calib *whole = NULL, *part[7] = {0};
    CHECK(lmp_calib_new(tf, tok, NS, CTX, &whole, &err) == LMP_OK);
    for (int64_t i = 0; i < n_sl; i++) {
        const int64_t b = i * k, e = b + k < NS ? b + k : NS;
        CHECK(lmp_calib_new(tf, tok + b * CTX, e - b, CTX, &part[i], &err) == LMP_OK);
        lmp_calib_set_slice(part[i], e - b);
    }
    struct lmp_calib_grams *gw = lmp_calib_grams_new(&m->cfg), *gp = lmp_calib_grams_new(&m->cfg),
                           *gs = lmp_calib_grams_new(&m->cfg);
    for (int32_t blk = 0; blk < 2; blk++) {
        lmp_calib_grams_reset(gw);
        lmp_calib_grams_reset(gs);
        CHECK(lmp_calib_collect(whole, blk, gw, &err) == LMP_OK);
        /* the slices walked block by block, in reverse order (they are independent) */
        for (int64_t j = n_sl - 1; j >= 0; j--) {
            lmp_calib_grams_reset(gp);
            CHECK(lmp_calib_collect(part[j], blk, gp, &err) == LMP_OK);
            lmp_calib_take_output(part[j]);
        }
        for (int64_t j = 0; j < n_sl; j++) { /* in slice order, as the coordinator adds them */
            struct lmp_calib *c = NULL;
            const int64_t     b = j * k, e = b + k < NS ? b + k : NS;
            CHECK(lmp_calib_new(tf, tok + b * CTX, e - b, CTX, &c, &err) == LMP_OK);
            lmp_calib_set_slice(c, e - b);
            for (int32_t q = 0; q < blk; q++) CHECK(lmp_calib_advance(c, q, &err) == LMP_OK);
            lmp_calib_grams_reset(gp);
            CHECK(lmp_calib_collect(c, blk, gp, &err) == LMP_OK);
            /* the walked slice object holds the same activations as the fresh one */
            CHECK(memcmp(lmp_calib_y(c), lmp_calib_x(part[j]),
                         (size_t)((e - b) * CTX * m->cfg.dim) * sizeof(float)) == 0);
            for (int w = 0; w < LMP_INPUT_COUNT; w++)
                lmp_calib_grams_add(gs, (enum lmp_input)w,
                                    lmp_calib_grams_sum(gp, (enum lmp_input)w),
                                    lmp_calib_grams_n_tok(gp, (enum lmp_input)w));
            lmp_calib_destroy(&c);
        }
        for (int w = 0; w < LMP_INPUT_COUNT; w++) {
            const int64_t n = lmp_calib_grams_n_in(gw, (enum lmp_input)w);
            CHECK(lmp_calib_grams_n_tok(gs, (enum lmp_input)w) == NS * CTX);
            CHECK(lmp_calib_grams_n_tok(gw, (enum lmp_input)w) == NS * CTX);
            CHECK(memcmp(lmp_calib_grams_sum(gw, (enum lmp_input)w),
                         lmp_calib_grams_sum(gs, (enum lmp_input)w),
                         (size_t)(n * n) * sizeof(double)) == 0);
        }
        /* the whole object's output equals the slices' outputs, sequence for sequence */
        for (int64_t j = 0; j < n_sl; j++) {
            const int64_t b = j * k, e = b + k < NS ? b + k : NS;
            CHECK(memcmp(lmp_calib_y(whole) + b * CTX * m->cfg.dim, lmp_calib_x(part[j]),
                         (size_t)((e - b) * CTX * m->cfg.dim) * sizeof(float)) == 0);
        }
        lmp_calib_take_output(whole);
    }
    lmp_calib_grams_destroy(&gw);
    lmp_calib_grams_destroy(&gp);
    lmp_calib_grams_destroy(&gs);
    lmp_calib_destroy(&whole);
    for (int i = 0; i < 7; i++) lmp_calib_destroy(&part[i]);
    lmp_transformer_destroy(&tf);
    lmp_model_close(&m);
}

int main(void) {
    RUN(test_slice_sizes);
    RUN(test_slices_equal_whole);
    return check_report();
}
