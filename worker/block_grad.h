/*  block_grad - training-mode forward and backward pass of one transformer block
 *
 *  The same math as lmp_transformer_block (model/transformer.h) for sequences that
 *  each start at position 0 (no KV cache):
 *      h1 = rmsnorm(x) * attn_norm
 *      q, k, v = h1 Wq^T + bq, h1 Wk^T + bk, h1 Wv^T + bv
 *      [qk_norm] q, k = rmsnorm(each head) * q_norm, k_norm
 *      rope(q), rope(k)    (cfg.rope: interleaved or half pairs; model/rope.h: the first
 *                           rope_dims of a head, scaled variants, local blocks' own base)
 *      a  = softmax(cap(q k^T * scale), causal [, last sliding_window keys on local blocks]) v
 *           (grouped-query; scale cfg.attn_scale or 1/sqrt(head_dim); cap(s) = c tanh(s / c)
 *           with c = cfg.attn_softcap, the identity where it is 0)
 *      r  = x + o,  o = a Wo^T  [post_norms: r = x + rmsnorm(o) * post_attn_norm]
 *      h2 = rmsnorm(r) * ffn_norm
 *      f  = act(h2 Wgate^T) * (h2 Wup^T)    (act: silu, or tanh-GELU for GeGLU)
 *      y  = r + d,  d = f Wdown^T  [post_norms: y = r + rmsnorm(d) * post_ffn_norm]
 *  (any of the seven linears may have a bias). The forward saves what the backward needs
 *  (normed inputs, rms factors, rotated q/k, v, attention probabilities, attention output,
 *  residual, gate/up pre-activations, SwiGLU output); the backward takes dL/dy and
 *  accumulates dL/d(every parameter) and writes dL/dx, so blocks can be chained in
 *  reverse for a whole-model backward pass.
 *
 *  Threads: the GEMMs run on OpenBLAS with whatever thread count the process has set;
 *  everything else is single-threaded. An object holds the activations of at most
 *  max_seq sequences of seq_len tokens; calls on one object must not overlap.
 *
 *  Calling sequence:
 *      lmp_block_grad_new(cfg, max_seq, seq_len, &bg);
 *      loop: lmp_block_grad_forward(bg, &params, x, n_seq, y);
 *            zero the gradients you want (or keep accumulating over micro-batches);
 *            lmp_block_grad_backward(bg, &params, dy, dx, &grads);
 *      lmp_block_grad_destroy(&bg);
 */
#ifndef LMP_WORKER_BLOCK_GRAD_H
#define LMP_WORKER_BLOCK_GRAD_H

#include <stdbool.h>
#include <stdint.h>
#include "base/status.h" /* defines: enum lmp_status */
#include "model/model.h" /* defines: struct lmp_config, LMP_LIN_COUNT */

/* One block's parameters, fp32, borrowed. Shapes as in struct lmp_ft_linear. */
struct lmp_block_params {
    const float *attn_norm;        /* (dim) */
    const float *ffn_norm;         /* (dim) */
    const float *w[LMP_LIN_COUNT]; /* (n_out, n_in) dense, by enum lmp_lin */
    const float *b[LMP_LIN_COUNT]; /* (n_out) or NULL */
    /* beyond the llama block (Gemma 3, Qwen3): non-NULL exactly where cfg says so */
    const float *q_norm, *k_norm;                /* (head_dim) if cfg.qk_norm */
    const float *post_attn_norm, *post_ffn_norm; /* (dim) if cfg.post_norms */
    bool         local; /* a sliding-window block (lmp_rope_block_is_local): its window and
                           its RoPE tables */
};

/* Gradient buffers, owned by the caller. The backward ADDS into every non-NULL buffer
 * (zero them first); NULL means "not wanted" and skips that work where possible. A bias
 * gradient is only touched where params.b[k] is non-NULL. */
struct lmp_block_grads {
    float *attn_norm;                      /* (dim) or NULL */
    float *ffn_norm;                       /* (dim) or NULL */
    float *w[LMP_LIN_COUNT];               /* (n_out, n_in) or NULL */
    float *b[LMP_LIN_COUNT];               /* (n_out) or NULL */
    float *q_norm, *k_norm;                /* (head_dim) or NULL; only with cfg.qk_norm */
    float *post_attn_norm, *post_ffn_norm; /* (dim) or NULL; only with cfg.post_norms */
};

struct lmp_block_grad;

/* Room for max_seq sequences of seq_len tokens of a block shaped by cfg (copied). RoPE
 * tables for positions [0, seq_len) are built here (global, and local where cfg has
 * sliding-window blocks). RET LMP_OK, LMP_EINVAL for sizes <= 0 or an attention shape the
 * block cannot run (odd head_dim or rope_dims, n_heads not a multiple of n_kv_heads),
 * LMP_EUNSUP for an FFN activation it lacks, LMP_ENOMEM. */
enum lmp_status lmp_block_grad_new(const struct lmp_config *cfg, int64_t max_seq, int64_t seq_len,
                                   struct lmp_block_grad **out);
void            lmp_block_grad_destroy(struct lmp_block_grad **self_p);

/* Like lmp_block_grad_new with from's config and sizes, but the backward's scratch (about
 * as large as the saved activations: dL/d of the residual, normed inputs, q/k/v, attention
 * output, gate/up, one head's (T, T) dS) is from's, not a copy: a chain of blocks run
 * backward one at a time (worker/model_grad.c) then holds one set of scratch, not one per
 * block. Saved activations stay per object. from must be an object made by
 * lmp_block_grad_new, outlive *out, and not run a backward at the same time. RET LMP_OK,
 * LMP_EINVAL if from itself borrows its scratch, LMP_ENOMEM. */
enum lmp_status lmp_block_grad_new_shared(struct lmp_block_grad *from, struct lmp_block_grad **out);

/* y (n_seq, seq_len, dim) = block(x), x of the same shape; both borrowed (y may not alias
 * x). 0 < n_seq <= max_seq. Saves the activations for one backward. */
void lmp_block_grad_forward(struct lmp_block_grad *self, const struct lmp_block_params *p,
                            const float *x, int64_t n_seq, float *y);

/* Backward of the last forward (same params): dy (n_seq, seq_len, dim) in; dx of the same
 * shape out (overwritten; NULL if not needed; may alias dy); parameter gradients added into
 * g. The saved activations stay valid (a second backward with another dy is allowed). */
void lmp_block_grad_backward(struct lmp_block_grad *self, const struct lmp_block_params *p,
                             const float *dy, float *dx, const struct lmp_block_grads *g);

#endif /* LMP_WORKER_BLOCK_GRAD_H */
