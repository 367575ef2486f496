/*  test_rtn - round-to-nearest baseline: bits, exact cases, error bound, validation */
#include "worker/rtn.h"
#include "kernels/kernels.h" /* defines: lmp_f16_to_f32() */
#include "tests/check.h"     /* defines: CHECK, CHECK_NEAR, RUN, check_report */

static void test_rtn_bits_per_weight(void) {
    CHECK(lmp_rtn_bits_per_weight(2, 64) == 2.5);
    CHECK(lmp_rtn_bits_per_weight(4, 32) == 5.0);
    CHECK(lmp_rtn_bits_per_weight(3, 128) == 3.25);
    CHECK(lmp_rtn_bits_per_weight(8, 1) == 40.0);
}

static void test_rtn_exact_grid(void) {
    /* values already on a 2-bit grid are reproduced exactly */
    const float w[8] = {0, 1, 2, 3, -1, -0.5f, 0, 0.5f};
    float       wh[8];
    uint8_t     q[8];
    uint16_t    sc[2], zr[2];
    CHECK(lmp_rtn_quantize(wh, q, sc, zr, w, 1, 8, 2, 4, NULL) == LMP_OK);
    for (int i = 0; i < 8; i++) CHECK(wh[i] == w[i]);
    CHECK(q[0] == 0 && q[1] == 1 && q[2] == 2 && q[3] == 3);
    CHECK(q[4] == 0 && q[7] == 3);
    CHECK(lmp_f16_to_f32(sc[0]) == 1.0f && lmp_f16_to_f32(zr[0]) == 0.0f);
    CHECK(lmp_f16_to_f32(sc[1]) == 0.5f && lmp_f16_to_f32(zr[1]) == -1.0f);
}

static void test_rtn_constant_group(void) {
    const float w[4] = {0.25f, 0.25f, 0.25f, 0.25f};
    float       wh[4];
    CHECK(lmp_rtn_quantize(wh, NULL, NULL, NULL, w, 1, 4, 3, 4, NULL) == LMP_OK);
    for (int i = 0; i < 4; i++) CHECK(wh[i] == 0.25f);
}

static void test_rtn_error_bound_and_bits_order(void) {
    enum { N_OUT = 9, N_IN = 96, G = 32 };
    static float    w[N_OUT * N_IN], wh[N_OUT * N_IN];
    static uint8_t  q[N_OUT * N_IN];
    static uint16_t sc[N_OUT * N_IN / G], zr[N_OUT * N_IN / G];
    check_fill_random(w, N_OUT * N_IN, 3);
    double prev = INFINITY;
    for (int bits = 1; bits <= 8; bits++) {
        CHECK(lmp_rtn_quantize(wh, q, sc, zr, w, N_OUT, N_IN, bits, G, NULL) == LMP_OK);
        double mse = 0.0;
        int    bad = 0;
        for (int i = 0; i < N_OUT * N_IN; i++) {
            float s = lmp_f16_to_f32(sc[i / G]), z = lmp_f16_to_f32(zr[i / G]);
            if (q[i] > (1 << bits) - 1) bad++;
            if (wh[i] != z + s * q[i]) bad++; /* stored = dequantized */
            /* half a step, plus what fp16 rounding of scale and zero can add at the ends */
            if (fabs(w[i] - wh[i]) > 0.5 * s + (((1 << bits) - 1) * s + 1.0) * 1e-3) bad++;
            mse += (w[i] - wh[i]) * (w[i] - wh[i]);
        }
        CHECK(bad == 0);
        CHECK(mse < prev); /* more bits, less error */
        prev = mse;
    }
}

static void test_rtn_rejects_bad_input(void) {
    float          w[8] = {0}, wh[8];
    struct lmp_err err  = {0};
    CHECK(lmp_rtn_quantize(wh, NULL, NULL, NULL, w, 1, 8, 0, 4, &err) == LMP_EINVAL);
    CHECK(strstr(err.msg, "bit width") != NULL);
    CHECK(lmp_rtn_quantize(wh, NULL, NULL, NULL, w, 1, 8, 9, 4, NULL) == LMP_EINVAL);
    err = (struct lmp_err){0};
    CHECK(lmp_rtn_quantize(wh, NULL, NULL, NULL, w, 1, 8, 2, 3, &err) == LMP_EINVAL);
    CHECK(strstr(err.msg, "does not divide") != NULL);
    CHECK(lmp_rtn_quantize(wh, NULL, NULL, NULL, w, 1, 8, 2, 0, NULL) == LMP_EINVAL);
    w[5] = NAN;
    CHECK(lmp_rtn_quantize(wh, NULL, NULL, NULL, w, 1, 8, 2, 4, NULL) == LMP_EINVAL);
}

int main(void) {
    RUN(test_rtn_bits_per_weight);
    RUN(test_rtn_exact_grid);
    RUN(test_rtn_constant_group);
    RUN(test_rtn_error_bound_and_bits_order);
    RUN(test_rtn_rejects_bad_input);
    return check_report();
}
