/*  transformer - the fp32 forward pass of a llama-family decoder on the CPU
 *
 *  A struct lmp_transformer holds what the forward pass needs of a struct lmp_model:
 *  every linear layer as a pluggable operator (struct lmp_linop: a dense fp32 weight
 *  dequantized once at load, or any apply() callback: a linear the model holds as AQLM
 *  codes (lmp_linear.aq) runs from its codes through the aq_matvec kernel), the norm
 *  weights and the RoPE tables. Stages run the whole model (eval, generation, the
 *  teacher of fine-tuning) or one block at a time (calibration, block fine-tuning);
 *  a hook sees every distinct linear input (enum lmp_input) as it is consumed, so
 *  calibration accumulates X^T X without a copy of this code.
 *
 *  Math per block (x is the residual stream, one row per token):
 *      h  = rmsnorm(x) * attn_norm                       -> hook LMP_INPUT_ATTN
 *      q, k, v = h Wq^T + bq, h Wk^T + bk, h Wv^T + bv   (biases where the model has them)
 *      rope(q), rope(k) at each token's position (cfg.rope: interleaved or half pairs)
 *      a  = softmax(q k^T / sqrt(head_dim), causal) v    (grouped-query: n_heads / n_kv_heads
 *                                                         query heads share a kv head)
 *      x += a Wo^T                                       (a -> hook LMP_INPUT_ATTN_OUT)
 *      h  = rmsnorm(x) * ffn_norm                        -> hook LMP_INPUT_FFN
 *      g  = silu(h Wgate^T) * (h Wup^T)                  -> hook LMP_INPUT_FFN_OUT
 *      x += g Wdown^T
 *  then logits = (rmsnorm(x) * out_norm) Wout^T (Wout = tok_emb when tied).
 *  Gemma 2 soft-caps the scores before the softmax and the logits: x -> cap * tanh(x / cap)
 *  (cfg.attn_softcap, cfg.final_softcap; lmp_transformer_logits, _logits_row and
 *  _hidden_nll all return capped logits).
 *
 *  Threads: the GEMMs go through the kernel table (lmp_kernels_get()->sgemm: OpenBLAS on
 *  the CPU tables), whose thread count is the process's budget: lmp_transformer_new fixes
 *  it to n_threads unless the program (or an earlier transformer) fixed it first
 *  (lmp_kernels_set_threads). The rest (norms, RoPE, attention per (sequence, head),
 *  SwiGLU) runs on the transformer's own pool of n_threads threads (the caller's thread
 *  included); attention's per-task GEMMs run inside a BLAS serial section
 *  (lmp_kernels_blas_serial_begin/end), so the pool and OpenBLAS never oversubscribe the
 *  cores, and several transformers (in-process workers) may run at once.
 *
 *  A transformer owns scratch buffers: calls on one transformer must not overlap. The
 *  model must outlive it (its config is shared; lazy weights are read from it on use).
 *
 *  Weights, eager or lazy. By default every linear and the lm head are dequantized at
 *  load (fast repeated whole-model passes: eval, generation). With opts.lazy_weights a
 *  block's linears are dequantized when the block first runs (or by
 *  lmp_transformer_load_block) and freed by lmp_transformer_release_block, which also
 *  drops the file pages of the block's source tensors; the lm head likewise with
 *  lmp_transformer_load_head / _release_head, and embeddings are dequantized row by row
 *  on use. A stage that walks the model block by block (calibration) then holds one
 *  block's weights at a time, whatever the number of blocks. Results are bit-identical
 *  in both modes (the same dequantization, the same arithmetic).
 *
 *  Calling sequence for generation:
 *      lmp_transformer_new(model, &opts, &tf, &err);
 *      lmp_kvcache_new(tf, n_seq, max_ctx, &kv);
 *      lmp_transformer_forward(tf, kv, prompt, n_seq, n_prompt, hidden, &err);   prefill
 *      lmp_transformer_logits(tf, hidden + (n_prompt-1)*dim, 1, logits);           last row
 *      loop: lmp_transformer_forward(tf, kv, &next, 1, 1, hidden, &err); ...        one token
 *      lmp_kvcache_destroy(&kv); lmp_transformer_destroy(&tf);
 */
#ifndef LMP_MODEL_TRANSFORMER_H
#define LMP_MODEL_TRANSFORMER_H

#include <stdint.h>
#include "base/status.h" /* defines: enum lmp_status, struct lmp_err */
#include "model/model.h" /* defines: struct lmp_model, enum lmp_lin, enum lmp_input */

/* y (n_tok, n_out) = x (n_tok, n_in) W^T, for an operator that is not a dense matrix.
 * x and y do not overlap; the bias is added by the caller afterwards. */
typedef void lmp_linop_apply_fn(void *ctx, const float *x, int64_t n_tok, float *y);

/* One linear layer as the forward pass applies it. apply == NULL: dense weight w. */
struct lmp_linop {
    int64_t             n_out, n_in;
    const float        *w;     /* (n_out, n_in) dense fp32, row-major, or NULL */
    const float        *bias;  /* (n_out), or NULL */
    lmp_linop_apply_fn *apply; /* used instead of w when set */
    void               *ctx;   /* for apply, borrowed */
};

/* y (n_tok, n_out) = x (n_tok, n_in) op^T + bias. */
void lmp_linop_run(const struct lmp_linop *op, const float *x, int64_t n_tok, float *y);

/* Called with each distinct linear input of a block as the forward pass consumes it:
 * x (n_rows, n_cols), borrowed for the call. Rows are sequence-major (row = s*n_tok + t). */
typedef void lmp_block_hook_fn(void *ctx, int32_t block, enum lmp_input which, const float *x,
                               int64_t n_rows, int64_t n_cols);

struct lmp_block_hooks {
    lmp_block_hook_fn *on_input; /* NULL: no hook */
    void              *ctx;
};

struct lmp_transformer_opts {
    int     n_threads;    /* threads for GEMMs and for the rest; <= 0: 1 */
    int64_t vocab_slice;  /* lm-head columns per step of lmp_transformer_hidden_nll; <= 0: 4096 */
    bool    lazy_weights; /* dequantize linears and the lm head on use (see the header) */
    bool    head_blocks;  /* a Q8_0 / Q4_1 / F16 lm head (an artifact's --embed-bits 8/4/16,
                             or its fp32 head narrowed at load: artifact_model.h) is run on
                             its blocks (qmatvec kernel; a few rows) or widened a vocab_slice
                             at a time (sgemm), never to a whole fp32 copy; a tied embedding's
                             rows are dequantized on use */
};

struct lmp_transformer;
struct lmp_kvcache;

/* Build the forward pass of m: dequantize every linear, the embeddings and the norms to
 * fp32 (owned by the transformer; with opts->lazy_weights only the norms) and precompute
 * the RoPE tables for cfg.max_seq positions (at least 1). RET LMP_OK; LMP_ENOMEM;
 * LMP_EUNSUP for a config the forward pass cannot run (odd head_dim). */
enum lmp_status lmp_transformer_new(const struct lmp_model            *m,
                                    const struct lmp_transformer_opts *opts,
                                    struct lmp_transformer **out, struct lmp_err *err);
void            lmp_transformer_destroy(struct lmp_transformer **self_p);

const struct lmp_config *lmp_transformer_config(const struct lmp_transformer *self);
int                      lmp_transformer_n_threads(const struct lmp_transformer *self);

/* The operator of linear `kind` in `block`, for a stage to replace (e.g. set apply/ctx
 * to a compressed layer's decode). Shapes must stay the same. With lazy weights, w and
 * bias are NULL until the block is loaded; loading fills only operators whose w (bias)
 * is NULL and apply unset, and releasing clears only what loading filled. */
struct lmp_linop *lmp_transformer_linop(struct lmp_transformer *self, int32_t block,
                                        enum lmp_lin kind);

/* The RMSNorm weight (dim) of `block` before attention (ffn false) or before the FFN
 * (ffn true), owned by the transformer, for a stage to overwrite (e.g. tuned norms). */
float *lmp_transformer_norm(struct lmp_transformer *self, int32_t block, bool ffn);

/* Lazy weights: dequantize block's linears now (a no-op when loaded, or in eager mode).
 * lmp_transformer_block loads on demand; call this to read lmp_transformer_linop()->w
 * before the block has run. RET LMP_OK or LMP_ENOMEM. */
enum lmp_status lmp_transformer_load_block(struct lmp_transformer *self, int32_t block,
                                           struct lmp_err *err);
/* Lazy weights: free block's dequantized linears and drop the file pages of its source
 * tensors (weights, biases, norms). The block reloads when it runs again. No-op in eager
 * mode. */
void lmp_transformer_release_block(struct lmp_transformer *self, int32_t block);
/* Lazy weights: dequantize the lm head (needed by lmp_transformer_logits; loaded on
 * demand by lmp_transformer_hidden_nll). RET LMP_OK or LMP_ENOMEM. No-op when eager. */
enum lmp_status lmp_transformer_load_head(struct lmp_transformer *self, struct lmp_err *err);
/* Lazy weights: free the lm head and drop the file pages of the embedding and head
 * tensors (e.g. after embedding the calibration tokens). No-op in eager mode. */
void lmp_transformer_release_head(struct lmp_transformer *self);

/* A KV cache for n_seq sequences of up to max_ctx positions each (max_ctx <=
 * cfg.max_seq), all sequences at the same position. NULL on out-of-memory. */
struct lmp_kvcache *lmp_kvcache_new(const struct lmp_transformer *tf, int64_t n_seq,
                                    int64_t max_ctx);
void                lmp_kvcache_destroy(struct lmp_kvcache **self_p);
/* Forget every cached position (start new sequences). */
void    lmp_kvcache_reset(struct lmp_kvcache *self);
int64_t lmp_kvcache_pos(const struct lmp_kvcache *self); /* positions cached so far */

/* Embed tokens (n_seq, n_tok) into x (n_seq * n_tok, dim).
 * RET LMP_OK, or LMP_EINVAL (message in err) if a token is outside the vocabulary. */
enum lmp_status lmp_transformer_embed(const struct lmp_transformer *self, const int32_t *tokens,
                                      int64_t n_rows, float *x, struct lmp_err *err);

/* Run block `block` on x (n_seq * n_tok, dim) in place (input hidden states -> output).
 * With kv, the tokens sit at positions lmp_kvcache_pos(kv).. and attend to the cached
 * ones too; their keys and values are appended to the block's cache (the position is
 * advanced by lmp_transformer_forward, or lmp_kvcache_advance for block-by-block use).
 * Without kv, each sequence starts at position 0 from an empty context. hooks may be
 * NULL. RET LMP_OK, LMP_EINVAL if the tokens do not fit the cache or cfg.max_seq,
 * LMP_ENOMEM. */
enum lmp_status lmp_transformer_block(struct lmp_transformer *self, int32_t block,
                                      struct lmp_kvcache *kv, float *x, int64_t n_seq,
                                      int64_t n_tok, const struct lmp_block_hooks *hooks,
                                      struct lmp_err *err);

/* Advance the cache's position by n_tok after running every block by hand. */
void lmp_kvcache_advance(struct lmp_kvcache *self, int64_t n_tok);

/* The final RMSNorm: out (n_rows, dim) = rmsnorm(x) * out_norm (in place allowed). */
void lmp_transformer_final_norm(struct lmp_transformer *self, const float *x, int64_t n_rows,
                                float *out);

/* Whole model: tokens (n_seq, n_tok) -> hidden (n_seq * n_tok, dim), the final-normed
 * states (feed them to lmp_transformer_logits). kv as in lmp_transformer_block (NULL:
 * each sequence from an empty context, nothing kept); its position advances by n_tok.
 * hooks (may be NULL) see every block's linear inputs. RET as lmp_transformer_block, or
 * LMP_EINVAL for a token outside the vocabulary. */
enum lmp_status lmp_transformer_forward(struct lmp_transformer *self, struct lmp_kvcache *kv,
                                        const int32_t *tokens, int64_t n_seq, int64_t n_tok,
                                        float *hidden, const struct lmp_block_hooks *hooks,
                                        struct lmp_err *err);

/* logits (n_rows, vocab) = hidden (n_rows, dim) Wout^T. Lazy weights: the head must be
 * loaded (lmp_transformer_load_head). */
void lmp_transformer_logits(struct lmp_transformer *self, const float *hidden, int64_t n_rows,
                            float *logits);

/* logits (vocab) of one row hidden (dim), as lmp_transformer_logits up to rounding, by a
 * matvec over the vocabulary on the transformer's threads: a one-row sgemm packs the whole
 * head for every token (a third of a decoding step of SmolLM2), this streams it once.
 * The result does not depend on the thread count. */
void lmp_transformer_logits_row(struct lmp_transformer *self, const float *hidden, float *logits);

/* Negative log-likelihood of target[r] under each logits row (n_rows, vocab), by a
 * numerically stable log-softmax, rows in parallel; nll (n_rows) out. */
void lmp_transformer_nll(struct lmp_transformer *self, const float *logits, int64_t n_rows,
                         const int32_t *target, double *nll);

/* nll (n_rows) = the NLL of target[r] given hidden row r (n_rows, dim), without keeping
 * whole logits rows: the vocabulary is swept in slices (a (n_rows, slice) sgemm each,
 * so the lm head's weight is packed once per slice, not once per few rows) with an
 * online log-sum-exp per row. Same result as lmp_transformer_logits + _nll up to
 * rounding; memory (n_rows, opts.vocab_slice) floats. RET LMP_OK or LMP_ENOMEM. */
enum lmp_status lmp_transformer_hidden_nll(struct lmp_transformer *self, const float *hidden,
                                           int64_t n_rows, const int32_t *target, double *nll);

#endif /* LMP_MODEL_TRANSFORMER_H */
