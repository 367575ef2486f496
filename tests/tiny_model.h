/*  tiny_model - a random Llama-shaped model in memory, for tests of the backward passes
 *
 *  build(spec, seed): LAYERS blocks of width DIM, head_dim HD, FFN HIDDEN, vocabulary
 *  VOCAB; the spec picks the RoPE pair order, tied or untied
 *  embeddings, q/k/v biases and the head counts. Weights are F32 from check_fill_random,
 *  scaled so activations stay O(1). Free with lmp_model_close. random_tokens fills token
 *  ids; tiny_aq_encode quantizes a weight to AQ codes. Test code only.
 */
#ifndef LMP_TESTS_TINY_MODEL_H
#define LMP_TESTS_TINY_MODEL_H

#include "kernels/kernels.h" /* defines: lmp_kernels_get()->aq_beam */
#include "model/model.h"     /* defines: struct lmp_model, lmp_model_alloc, lmp_model_finish */
#include "tests/check.h"     /* defines: CHECK, check_fill_random */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { DIM = 24, HD = 6, HIDDEN = 40, VOCAB = 50, LAYERS = 2 };

struct spec {
    enum lmp_rope rope;
    bool          tied, bias;
    int           n_heads, n_kv_heads;
};

static struct lmp_tensor *add_tensor(struct lmp_model *m, float **cur, const char *name, int n_dims,
                                     int64_t d0, int64_t d1, uint64_t seed, float scale,
                                     float offset) {
    struct lmp_tensor *t = &m->tensors[m->n_tensors++];
    snprintf(t->name, sizeof(t->name), "%s", name);
    t->dtype    = LMP_DTYPE_F32;
    t->n_dims   = n_dims;
    t->shape[0] = d0;
    t->shape[1] = d1;
    int64_t n   = n_dims == 1 ? d0 : d0 * d1;
    check_fill_random(*cur, n, seed);
    for (int64_t i = 0; i < n; i++) (*cur)[i] = (*cur)[i] * scale + offset;
    t->data   = *cur;
    t->nbytes = (uint64_t)n * 4;
    *cur += n;
    return t;
}

static struct lmp_model *build(const struct spec *sp, uint64_t seed) {
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
    c->max_seq           = 32;
    c->rope_theta        = 100.0f;
    c->norm_eps          = 1e-5f;
    c->rope              = sp->rope;
    c->tied_embeddings   = sp->tied;
    m->path              = strdup("tiny-model");
    m->tensors           = calloc(64, sizeof(*m->tensors));
    float *data = malloc(100000 * sizeof(float)), *cur = data;
    m->src           = data;
    m->src_close     = free;
    const int64_t qd = (int64_t)sp->n_heads * HD, kd = (int64_t)sp->n_kv_heads * HD;
    m->tok_emb  = add_tensor(m, &cur, "tok_emb", 2, VOCAB, DIM, seed++, 1.0f, 0.0f);
    m->out_norm = add_tensor(m, &cur, "out_norm", 1, DIM, 0, seed++, 0.3f, 1.0f);
    m->output =
        sp->tied ? m->tok_emb : add_tensor(m, &cur, "output", 2, VOCAB, DIM, seed++, 0.7f, 0.0f);
    for (int b = 0; b < LAYERS; b++) {
        struct lmp_block *blk = &m->blocks[b];
        blk->attn_norm        = add_tensor(m, &cur, "attn_norm", 1, DIM, 0, seed++, 0.3f, 1.0f);
        blk->ffn_norm         = add_tensor(m, &cur, "ffn_norm", 1, DIM, 0, seed++, 0.3f, 1.0f);
        const int64_t shp[LMP_LIN_COUNT][2] = {{qd, DIM},    {kd, DIM},     {kd, DIM},
                                               {DIM, qd},    {HIDDEN, DIM}, {HIDDEN, DIM},
                                               {DIM, HIDDEN}};
        for (int k = 0; k < LMP_LIN_COUNT; k++) {
            /* ~1/sqrt(n_in) keeps activations O(1); larger q/k make attention peaked */
            float sc = (k <= LMP_LIN_K ? 2.5f : 1.0f) / sqrtf((float)shp[k][1]);
            blk->lin[k].weight =
                add_tensor(m, &cur, lmp_lin_name(k), 2, shp[k][0], shp[k][1], seed++, sc, 0.0f);
            if (sp->bias && k <= LMP_LIN_V)
                blk->lin[k].bias = add_tensor(m, &cur, "bias", 1, shp[k][0], 0, seed++, 0.5f, 0.0f);
        }
    }
    struct lmp_err err = {0};
    c->qkv_bias        = sp->bias;
    enum lmp_status st = lmp_model_finish(m, &err);
    if (st != LMP_OK) fprintf(stderr, "finish: %s\n", err.msg);
    CHECK(st == LMP_OK);
    return m;
}

/* Quantize W (n_out, n_in) to AQ codes: M codebooks of K random entries of g (scaled down
 * per codebook), scales the rows' rms, codes by one beam-search sweep (width 4, H = I).
 * codes (n_out, n_in / g, M), cb (M, K, g), scale (n_out) are the caller's. */
static inline void tiny_aq_encode(const float *W, int64_t n_out, int64_t n_in, int M, int K, int g,
                                  uint16_t *codes, float *cb, float *scale, uint64_t seed) {
    const struct lmp_aq_shape sh = {.n_out = n_out, .n_in = n_in, .M = M, .K = K, .g = g};
    for (int64_t o = 0; o < n_out; o++) { /* scale: the row's rms */
        double ss = 0;
        for (int64_t j = 0; j < n_in; j++) ss += (double)W[o * n_in + j] * W[o * n_in + j];
        scale[o] = (float)sqrt(ss / (double)n_in);
    }
    check_fill_random(cb, (int64_t)M * K * g, seed);
    for (int j = 0; j < M * K * g; j++) cb[j] *= 1.2f / (float)(j / (K * g) + 1);
    float *h = calloc((size_t)(n_in * n_in), sizeof(float));
    for (int64_t j = 0; j < n_in; j++) h[j * n_in + j] = 1.0f;
    CHECK(lmp_kernels_get()->aq_beam(codes, NULL, W, scale, cb, h, &sh, 4, NULL) == 0);
    free(h);
}

static void random_tokens(int32_t *t, int64_t n, int32_t vocab, uint64_t seed) {
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        t[i] = (int32_t)((seed >> 33) % (uint64_t)vocab);
    }
}

#endif /* LMP_TESTS_TINY_MODEL_H */
