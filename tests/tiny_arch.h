/*  tiny_arch - tiny_model.h's random model with what Qwen3, Gemma 3 and Gemma 2 add, for
 *  tests of the backward passes and the tuning loop
 *
 *  build_arch(ARCH_QWEN3, ...): per-head q/k norms, untied head, 4 query heads on 2 kv
 *  heads. build_arch(ARCH_GEMMA3, ...): q/k norms, post norms, GeGLU, embeddings times
 *  sqrt(dim), attention scale 0.3, block 0 local (a 3-key window, RoPE base 10), linear
 *  RoPE scaling (factor 2) on block 1, tied head, multi-query. build_arch(ARCH_GEMMA2, ...):
 *  Gemma 3's without q/k norms, RoPE scaling or local base, 4 query heads on 2 kv heads,
 *  with soft-caps small enough to bite on these values (TINY_ATTN_CAP on the attention
 *  scores, TINY_FINAL_CAP on the logits, whose largest is 2.6 times it without the cap;
 *  removing either changes the logits by over 10 %: test_model_grad). Test code only.
 */
#ifndef LMP_TESTS_TINY_ARCH_H
#define LMP_TESTS_TINY_ARCH_H

#include "tests/tiny_model.h" /* defines: build, add_tensor, struct spec, DIM, HD, LAYERS */

enum { ARCH_QWEN3 = 1, ARCH_GEMMA3 = 2, ARCH_GEMMA2 = 3 };
#define TINY_ATTN_CAP  1.5f
#define TINY_FINAL_CAP 5.0f

/* build()'s model with what the architecture adds (model/model.h: config fields, optional
 * block tensors), finished again. *extra: the added tensors' data, freed by the caller after
 * lmp_model_close. */
static struct lmp_model *build_arch(int kind, uint64_t seed, float **extra) {
    const bool         g2    = kind == ARCH_GEMMA2;
    const bool         gemma = kind == ARCH_GEMMA3 || g2;
    const struct spec  sp    = {LMP_ROPE_HALF, gemma, false, 4, gemma && !g2 ? 1 : 2};
    struct lmp_model  *m     = build(&sp, seed);
    struct lmp_config *c     = &m->cfg;
    float             *cur   = malloc(sizeof(float) * LAYERS * (2 * HD + 2 * DIM));
    *extra                   = cur;
    for (int b = 0; b < LAYERS; b++) {
        struct lmp_block *blk = &m->blocks[b];
        if (!g2) {
            blk->q_norm = add_tensor(m, &cur, "q_norm", 1, HD, 0, seed + 50 + 4 * b, 0.3f, 1.0f);
            blk->k_norm = add_tensor(m, &cur, "k_norm", 1, HD, 0, seed + 51 + 4 * b, 0.3f, 1.0f);
        }
        if (gemma) {
            blk->post_attn_norm =
                add_tensor(m, &cur, "post_attn_norm", 1, DIM, 0, seed + 52 + 4 * b, 0.3f, 1.0f);
            blk->post_ffn_norm =
                add_tensor(m, &cur, "post_ffn_norm", 1, DIM, 0, seed + 53 + 4 * b, 0.3f, 1.0f);
        }
    }
    c->arch = g2 ? LMP_ARCH_GEMMA2 : gemma ? LMP_ARCH_GEMMA3 : LMP_ARCH_QWEN3;
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
    if (g2) { /* one RoPE base; the window on block 0 as Gemma 2's even blocks */
        c->attn_scale       = 1.0f;
        c->rope_theta_local = 0;
        c->rope_scaling     = LMP_ROPE_SCALING_NONE;
        c->rope_factor      = 0;
        c->attn_softcap     = TINY_ATTN_CAP;
        c->final_softcap    = TINY_FINAL_CAP;
    }
    struct lmp_err err = {0};
    CHECK(lmp_model_finish(m, &err) == LMP_OK);
    CHECK(c->qk_norm == !g2 && c->post_norms == gemma);
    return m;
}

#endif /* LMP_TESTS_TINY_ARCH_H */
