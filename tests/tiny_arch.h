/*  tiny_arch - tiny_model.h's random model with what Qwen3 and Gemma 3 add, for tests of
 *  the backward passes and the tuning loop
 *
 *  build_arch(ARCH_QWEN3, ...): per-head q/k norms, untied head, 4 query heads on 2 kv
 *  heads. build_arch(ARCH_GEMMA3, ...): q/k norms, post norms, GeGLU, embeddings times
 *  sqrt(dim), attention scale 0.3, block 0 local (a 3-key window, RoPE base 10), linear
 *  RoPE scaling (factor 2) on block 1, tied head, multi-query. Test code only.
 */
#ifndef LMP_TESTS_TINY_ARCH_H
#define LMP_TESTS_TINY_ARCH_H

#include "tests/tiny_model.h" /* defines: build, add_tensor, struct spec, DIM, HD, LAYERS */

enum { ARCH_QWEN3 = 1, ARCH_GEMMA3 = 2 };

/* build()'s model with what the architecture adds (model/model.h: config fields, optional
 * block tensors), finished again. *extra: the added tensors' data, freed by the caller after
 * lmp_model_close. */
static struct lmp_model *build_arch(int kind, uint64_t seed, float **extra) {
    const bool         gemma = kind == ARCH_GEMMA3;
    const struct spec  sp    = {LMP_ROPE_HALF, gemma, false, 4, gemma ? 1 : 2};
    struct lmp_model  *m     = build(&sp, seed);
    struct lmp_config *c     = &m->cfg;
    float             *cur   = malloc(sizeof(float) * LAYERS * (2 * HD + 2 * DIM));
    *extra                   = cur;
    for (int b = 0; b < LAYERS; b++) {
        struct lmp_block *blk = &m->blocks[b];
        blk->q_norm = add_tensor(m, &cur, "q_norm", 1, HD, 0, seed + 50 + 4 * b, 0.3f, 1.0f);
        blk->k_norm = add_tensor(m, &cur, "k_norm", 1, HD, 0, seed + 51 + 4 * b, 0.3f, 1.0f);
        if (gemma) {
            blk->post_attn_norm =
                add_tensor(m, &cur, "post_attn_norm", 1, DIM, 0, seed + 52 + 4 * b, 0.3f, 1.0f);
            blk->post_ffn_norm =
                add_tensor(m, &cur, "post_ffn_norm", 1, DIM, 0, seed + 53 + 4 * b, 0.3f, 1.0f);
        }
    }
    c->arch = gemma ? LMP_ARCH_GEMMA3 : LMP_ARCH_QWEN3;
    if (gemma) {
        c->ffn_act          = LMP_ACT_GELU_TANH;
        c->embed_scale      = sqrtf((float)DIM);
        c->attn_scale       = 0.3f;
        c->sliding_window   = 3; /* shorter than T: the window cuts */
        c->swa_pattern      = 2; /* block 0 local, block 1 global */
        c->rope_theta_local = 10.0f;
        c->rope_scaling     = LMP_ROPE_SCALING_LINEAR;
        c->rope_factor      = 2.0f;
    }
    struct lmp_err err = {0};
    CHECK(lmp_model_finish(m, &err) == LMP_OK);
    CHECK(c->qk_norm && c->post_norms == gemma);
    return m;
}

#endif /* LMP_TESTS_TINY_ARCH_H */
