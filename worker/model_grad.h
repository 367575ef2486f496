/*  model_grad - training-mode forward and backward pass of a whole model under the
 *  KL(teacher || student) loss: the foundation of PV-Tuning (docs/pv-tuning.md)
 *
 *  The same math as model/transformer.c for sequences that each start at position 0:
 *      x0     = tok_emb[tokens] * embed_scale    (cfg.embed_scale: Gemma's sqrt(dim); 0 = 1)
 *      x(b+1) = block_b(x(b))                 b = 0 .. n_layers-1 (worker/block_grad.h)
 *      hn     = rmsnorm(x(L)) * out_norm
 *      z      = hn Wout^T                     (Wout = tok_emb when tied)
 *      loss   = 1/R sum_r KL(softmax(t_r) || softmax(z_r))     over the R = n_seq * T rows
 *  t (R, vocab) are the teacher's logits, or log-probabilities (the same thing to a
 *  softmax). The backward gives dL/d(every parameter): each linear's dense fp32 weight
 *  (what PV-Tuning's straight-through V step and, through the decode, the P step use;
 *  kernels' aq_grad_dw turns one into codebook and scale gradients), biases, the norms,
 *  the embedding and the head.
 *
 *  Memory. Per token and block the forward keeps (floats) 4 dim (block input, both normed
 *  inputs, the residual) + 2 (rms factors) + 2 q_dim (rotated q, attention output) +
 *  2 kv_dim (rotated k, v) + 3 hidden (gate, up, silu(gate) up) + n_heads T (the causal
 *  attention probabilities as full rows); plus, once for the model, dim + 1 (final norm
 *  input and factor) + dim (normed output) per token, the backward's scratch (one block's
 *  worth: 2 dim + 2 q_dim + 2 kv_dim + 2 hidden per token and one (T, T) head, shared by all
 *  blocks with lmp_block_grad_new_shared) and one chunk of (LMP_MODEL_GRAD_CHUNK, vocab)
 *  logits and their gradient. Logits are never kept for all rows. SmolLM2-135M at T = 512:
 *  about 52 KB per token per block (half of it attention probabilities), 1.6 MB per token,
 *  0.8 GB per sequence.
 *
 *  Threads: GEMMs through lmp_kernels_get()->sgemm at the process's budget; the rest
 *  single-threaded. Calls on one object must not overlap.
 *
 *  Calling sequence:
 *      lmp_model_weights_load(model, &w, &err);          fp32 copies of every parameter
 *      g = lmp_model_grads_new(&w->cfg, true);           (or your own buffers)
 *      lmp_model_grad_new(&w->cfg, max_seq, seq_len, &mg);
 *      loop: lmp_model_grad_forward(mg, &w->params, tokens, n_seq, &err);
 *            lmp_model_grads_zero(g);                    (or accumulate micro-batches)
 *            lmp_model_grad_kl_backward(mg, &w->params, teacher, &g->g, &kl, NULL);
 *            ... update w's buffers (worker/pv.h) ...
 *      lmp_model_grad_destroy(&mg); lmp_model_grads_free(&g); lmp_model_weights_free(&w);
 */
#ifndef LMP_WORKER_MODEL_GRAD_H
#define LMP_WORKER_MODEL_GRAD_H

#include <stdbool.h>
#include <stdint.h>
#include "base/status.h"       /* defines: enum lmp_status, struct lmp_err */
#include "model/model.h"       /* defines: struct lmp_model, struct lmp_config */
#include "worker/block_grad.h" /* defines: struct lmp_block_params, struct lmp_block_grads */

/* Rows of logits computed at once by the loss (memory: 2 x this x vocab floats). */
enum { LMP_MODEL_GRAD_CHUNK = 64 };

/* A whole model's parameters, fp32, borrowed. Tied embeddings: output == tok_emb. */
struct lmp_model_params {
    const float                   *tok_emb;  /* (vocab, dim) */
    const float                   *output;   /* (vocab, dim) */
    const float                   *out_norm; /* (dim) */
    const struct lmp_block_params *blocks;   /* (n_layers) */
};

/* Gradient buffers, owned by the caller; the backward ADDS into every non-NULL one. Tied
 * embeddings: the head's gradient is added into tok_emb, and output must be NULL. */
struct lmp_model_grads {
    float                        *tok_emb;  /* (vocab, dim) or NULL */
    float                        *output;   /* (vocab, dim) or NULL (always NULL when tied) */
    float                        *out_norm; /* (dim) or NULL */
    const struct lmp_block_grads *blocks;   /* (n_layers) or NULL: no block gradients */
};

/* Owned fp32 copies of every parameter of a model, and the borrowed view of them. */
struct lmp_model_weights {
    struct lmp_config       cfg;
    struct lmp_model_params params;                      /* points into the buffers below */
    float                  *tok_emb, *output, *out_norm; /* output == tok_emb when tied */
    float                 **attn_norm, **ffn_norm;       /* (n_layers) of (dim) */
    float **q_norm, **k_norm; /* (n_layers) of (head_dim), entries NULL unless cfg.qk_norm */
    float **post_attn_norm, **post_ffn_norm; /* (n_layers) of (dim), NULL unless post_norms */
    float **w, **b;                  /* (n_layers * LMP_LIN_COUNT), block-major; b may hold NULL */
    struct lmp_block_params *blocks; /* (n_layers), what params.blocks points to */
};

/* Dequantize every tensor of m to fp32 (lmp_tensor_rows_f32: the forward pass's values).
 * RET LMP_OK, LMP_ENOMEM (message in err). */
enum lmp_status lmp_model_weights_load(const struct lmp_model *m, struct lmp_model_weights **out,
                                       struct lmp_err *err);
void            lmp_model_weights_free(struct lmp_model_weights **self_p);

/* Zeroed gradient buffers for cfg: every block parameter (biases where qkv_bias, q/k norms
 * where qk_norm, post norms where post_norms), the final norm, and with embeddings the tok_emb (and
 * untied output) gradients. Owned by the struct (free with lmp_model_grads_free). RET NULL on
 * out-of-memory. */
struct lmp_model_grads_owned {
    struct lmp_model_grads  g;
    struct lmp_block_grads *blocks; /* (n_layers), what g.blocks points to */
    int32_t                 n_layers;
    int64_t                 n_floats; /* total, for lmp_model_grads_zero */
    float                  *mem;      /* one buffer of n_floats */
};
struct lmp_model_grads_owned *lmp_model_grads_new(const struct lmp_config *cfg, bool embeddings);
void                          lmp_model_grads_zero(struct lmp_model_grads_owned *g);
void                          lmp_model_grads_free(struct lmp_model_grads_owned **self_p);

struct lmp_model_grad;

/* Room for max_seq sequences of seq_len tokens of a model shaped by cfg (copied). RET
 * LMP_OK, LMP_EINVAL (sizes <= 0, an attention shape block_grad cannot run, or seq_len
 * beyond cfg.max_seq), LMP_ENOMEM. */
enum lmp_status lmp_model_grad_new(const struct lmp_config *cfg, int64_t max_seq, int64_t seq_len,
                                   struct lmp_model_grad **out);
void            lmp_model_grad_destroy(struct lmp_model_grad **self_p);

/* Forward tokens (n_seq, seq_len) (borrowed for the call; copied), 0 < n_seq <= max_seq,
 * saving what the backward needs. RET LMP_OK or LMP_EINVAL (message in err) for a token
 * outside the vocabulary. */
enum lmp_status lmp_model_grad_forward(struct lmp_model_grad         *self,
                                       const struct lmp_model_params *p, const int32_t *tokens,
                                       int64_t n_seq, struct lmp_err *err);

/* Pipeline stages (worker/tune.h): an object for blocks [s0, s1) only, 0 <= s0 < s1 <=
 * n_layers, keeping the activations of those blocks alone. Its forward
 * (lmp_model_grad_forward_stage) starts from the tokens when s0 is 0 and from the previous
 * stage's output otherwise, and ends with the final norm when s1 is n_layers (the last
 * stage: lmp_model_grad_logits and lmp_model_grad_kl_backward as for a whole model) or with
 * its last block's output otherwise (lmp_model_grad_stage_out, the next stage's x_in).
 * Backward of a stage that is not the last: lmp_model_grad_backward_stage from the next
 * stage's dL/d(its input). Each block computes exactly as in a whole-model object, so a
 * chain of stages gives the whole model's bits. RET as lmp_model_grad_new. */
enum lmp_status lmp_model_grad_new_stage(const struct lmp_config *cfg, int64_t max_seq,
                                         int64_t seq_len, int32_t s0, int32_t s1,
                                         struct lmp_model_grad **out);

/* Backward through blocks [b0, n_layers) only (default 0, all): PockEngine-style sparse
 * tuning, no computation below the earliest block being trained. Block b0's parameter
 * gradients are computed, nothing below it (no block gradients, no embedding gradient). */
void lmp_model_grad_set_first_block(struct lmp_model_grad *self, int32_t b0);

/* The forward of a stage object: tokens (n_seq, seq_len) when its s0 is 0 (as
 * lmp_model_grad_forward; x_in unused), else x_in (n_seq * seq_len, dim), the previous
 * stage's output (copied; tokens unused). Only p's blocks of the stage are read (and
 * tok_emb on the first stage, out_norm on the last). RET as lmp_model_grad_forward. */
enum lmp_status lmp_model_grad_forward_stage(struct lmp_model_grad         *self,
                                             const struct lmp_model_params *p,
                                             const int32_t *tokens, const float *x_in,
                                             int64_t n_seq, struct lmp_err *err);

/* A stage's output of the last forward (n_seq * seq_len, dim): its last block's output
 * (for the last stage: the final norm's input). Borrowed, valid until the next forward. */
const float *lmp_model_grad_stage_out(const struct lmp_model_grad *self);

/* Backward of a stage that is not the last, from dx_out = dL/d(its output) (n_seq *
 * seq_len, dim; copied): gradients of its blocks from the first trained one
 * (lmp_model_grad_set_first_block) up are ADDED to g; nothing when the whole stage lies
 * below that block. Afterwards lmp_model_grad_stage_dx holds dL/d(the stage's input) when
 * the stage's first block is above the first trained one (the previous stage needs it). */
void lmp_model_grad_backward_stage(struct lmp_model_grad *self, const struct lmp_model_params *p,
                                   const float *dx_out, const struct lmp_model_grads *g);

/* dL/d(the input of the stage's first block) after a backward that computed it (see
 * lmp_model_grad_backward_stage; the same after lmp_model_grad_kl_backward of a last stage
 * whose first block is above the first trained one). Borrowed. */
const float *lmp_model_grad_stage_dx(const struct lmp_model_grad *self);

/* Logits (n_rows, vocab) of rows [row0, row0 + n_rows) of the last forward (row = s *
 * seq_len + t). */
void lmp_model_grad_logits(struct lmp_model_grad *self, const struct lmp_model_params *p,
                           int64_t row0, int64_t n_rows, float *logits);

/* The normed final hidden states of the last forward, (n_seq * seq_len, dim), borrowed. */
const float *lmp_model_grad_hidden(const struct lmp_model_grad *self);

/* The loss of the last forward against teacher (n_seq * seq_len, vocab) logits or
 * log-probabilities: *kl = mean over rows of KL(teacher || student) (nats, double); with
 * g non-NULL, its gradients with respect to every parameter g asks for are ADDED to g (a
 * backward through every block; with g->blocks NULL and no embedding gradient wanted, the
 * blocks are skipped). The saved activations stay valid. *agree (may be NULL): rows whose
 * argmaxes agree. */
void lmp_model_grad_kl_backward(struct lmp_model_grad *self, const struct lmp_model_params *p,
                                const float *teacher, const struct lmp_model_grads *g, double *kl,
                                int64_t *agree);

#endif /* LMP_WORKER_MODEL_GRAD_H */
