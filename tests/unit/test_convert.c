/*  test_convert - fp16/bf16 conversions and ggml block dequantization against hand values */
#include "kernels/kernels.h"
#include "model/model.h"
#include "tests/check.h"

static void test_f16_roundtrip_all(void) {
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = lmp_f16_to_f32((uint16_t)h);
        if (f != f) continue; /* nan */
        if (lmp_f32_to_f16(f) != h) bad++;
    }
    CHECK(bad == 0);
    CHECK(lmp_f16_to_f32(0x3c00) == 1.0f);
    CHECK(lmp_f16_to_f32(0xc000) == -2.0f);
    CHECK(lmp_f16_to_f32(0x0001) == 5.9604644775390625e-08f);
    CHECK(lmp_f32_to_f16(65520.0f) == 0x7c00);           /* rounds to inf */
    CHECK(lmp_f32_to_f16(1.0f + 1.0f / 2048) == 0x3c00); /* tie to even */
}

static void test_bf16(void) {
    CHECK(lmp_bf16_to_f32(0x3f80) == 1.0f);
    CHECK(lmp_f32_to_bf16(1.0f) == 0x3f80);
    CHECK(lmp_f32_to_bf16(1.00390625f) == 0x3f80); /* tie to even */
}

static void test_q4_1_block(void) {
    uint8_t  blk[20];
    uint16_t d = lmp_f32_to_f16(0.5f), m = lmp_f32_to_f16(-1.0f);
    blk[0] = d & 0xff;
    blk[1] = d >> 8;
    blk[2] = m & 0xff;
    blk[3] = m >> 8;
    for (int i = 0; i < 16; i++) blk[4 + i] = (uint8_t)((i & 0xf) | ((15 - i) << 4));
    float out[32];
    lmp_dequant_row_ref(LMP_DTYPE_Q4_1, blk, out, 32);
    for (int i = 0; i < 16; i++) {
        CHECK(out[i] == 0.5f * i - 1.0f);
        CHECK(out[16 + i] == 0.5f * (15 - i) - 1.0f);
    }
}

int main(void) {
    RUN(test_f16_roundtrip_all);
    RUN(test_bf16);
    RUN(test_q4_1_block);
    return check_report();
}
