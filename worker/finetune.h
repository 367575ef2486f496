/*  finetune - block fine-tuning of an AQLM-quantized transformer block
 *
 *  After every linear of a block has been quantized (worker/aq.h), the block as a whole
 *  is tuned so that its output matches the original block's output on calibration
 *  inputs: codes stay frozen; the codebooks and scales of every AQ linear and the two
 *  RMSNorm weights are trained by Adam on the relative output error
 *
 *      L = ||block_hat(X) - Y||^2 / ||Y||^2          (over a minibatch of sequences)
 *
 *  where X (n_seq, seq_len, dim) are the block's calibration inputs and Y the original
 *  block's outputs. Which X is the caller's choice: the outputs of the already-quantized
 *  blocks 0..i-1 (AQLM's sequential protocol) or of the original ones (independent blocks).
 *
 *  Per Adam step: decode W_hat of each AQ linear (aq_decode), run the training-mode block
 *  forward (worker/block_grad.h) on a minibatch, backpropagate dL/dY_hat to dense weight
 *  gradients dW, map them to codebook and scale gradients with frozen codes
 *  (aq_grad_dw), take one Adam step per parameter tensor.
 *
 *  What is trained (decided here, documented so the export knows what changed):
 *    - AQ linears: codebooks (M, K, g) and scales (n_out), updated in place.
 *    - attn_norm, ffn_norm (dim): updated in place when opts.train_norms (default on).
 *    - the norms beyond the llama block, where the model has them: q_norm, k_norm
 *      (head_dim; Qwen3, Gemma 3) and post_attn_norm, post_ffn_norm (dim; Gemma 3):
 *      updated in place with them when opts.train_norms and opts.train_extra_norms (both
 *      default on).
 *    - biases (q/k/v of Qwen2): updated in place only when opts.train_bias (default off).
 *    - dense (unquantized) linears: always frozen; an unquantized linear stays equal to the
 *      original checkpoint's weight, so the artifact never has to carry a tuned copy.
 *
 *  Everything is explicit (inputs in, parameters updated in place, statistics out): no
 *  globals, no I/O, so a distributed worker can run it on one block it was sent. The
 *  run is deterministic for fixed inputs, options and thread count (minibatch order
 *  comes from opts.seed). If the final relative error is not below the initial one, every
 *  trained parameter is restored to its value on entry (the block never gets worse).
 *
 *  Threads: the GEMMs run on the kernel table (OpenBLAS), whose thread count is the
 *  process's budget: opts.n_threads fixes it unless it was fixed before
 *  (lmp_kernels_set_threads); the rest is single-threaded. Memory: the saved
 *  activations of one minibatch (about (14 dim + 5 hidden + n_heads seq_len) floats per
 *  token), dense copies of the seven weights and their gradients, Adam moments.
 *
 *  Calling sequence (pipeline):
 *      struct lmp_ft_block blk = {.cfg = &model->cfg, .attn_norm = ..., .ffn_norm = ...};
 *      blk.lin[k] = (struct lmp_ft_linear){.aq = &layer[k], .bias = bias_k};   (or .w = dense)
 *      struct lmp_ft_opts o; lmp_ft_opts_init(&o); o.max_steps = ...;
 *      lmp_finetune_block(&blk, x, y, n_seq, seq_len, &o, &stats, &err);
 *      write layer[k].codebooks/.scales, attn_norm, ffn_norm (and biases if train_bias).
 */
#ifndef LMP_WORKER_FINETUNE_H
#define LMP_WORKER_FINETUNE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include "base/status.h" /* defines: enum lmp_status, struct lmp_err */
#include "worker/aq.h"   /* defines: struct lmp_aq_layer */
#include "model/model.h" /* defines: struct lmp_config, LMP_LIN_COUNT */

/* One linear of the block: exactly one of aq and w is non-NULL. Shapes follow cfg
 * (q: (n_heads*head_dim, dim), k/v: (n_kv_heads*head_dim, dim), o: (dim, n_heads*head_dim),
 * gate/up: (hidden_dim, dim), down: (dim, hidden_dim)). All borrowed. */
struct lmp_ft_linear {
    struct lmp_aq_layer *aq;   /* quantized: codes read only; codebooks, scales trained */
    const float         *w;    /* (n_out, n_in) dense fp32, frozen */
    float               *bias; /* (n_out) or NULL; trained only with opts.train_bias */
};

struct lmp_ft_block {
    const struct lmp_config *cfg;                /* dims, heads, RoPE order and theta, norm eps */
    float                   *attn_norm;          /* (dim), trained in place (train_norms) */
    float                   *ffn_norm;           /* (dim), trained in place (train_norms) */
    struct lmp_ft_linear     lin[LMP_LIN_COUNT]; /* indexed by enum lmp_lin */
    /* beyond the llama block: non-NULL exactly where cfg says so, trained in place with
     * train_norms and train_extra_norms */
    float *q_norm, *k_norm;                /* (head_dim) if cfg.qk_norm */
    float *post_attn_norm, *post_ffn_norm; /* (dim) if cfg.post_norms */
    bool   local; /* a sliding-window block: lmp_rope_block_is_local(cfg, its index) */
};

struct lmp_ft_opts {
    float   lr;             /* Adam learning rate (default 1e-4) */
    float   beta1, beta2;   /* Adam betas (default 0.9, 0.95, as the AQ stage) */
    int64_t batch_seqs;     /* sequences per minibatch (default 4; clipped to n_seq) */
    int     max_epochs;     /* passes over the calibration sequences (default 4) */
    int64_t max_steps;      /* Adam steps in total, <= 0: no limit but max_epochs (default 0) */
    double  tol;            /* stop after an epoch whose mean training loss improves on the
                               previous epoch's by less than this fraction (default 0.01);
                               0: never stop early */
    bool train_norms;       /* default true */
    bool train_extra_norms; /* with train_norms, the q/k and post norms too (default true) */
    bool train_bias;        /* default false */
    int  n_threads; /* the process's GEMM threads if not fixed yet; <= 0: leave as is (default 0) */
    uint64_t seed;  /* minibatch order (default 1) */
    /* Optional observer (NULL: none, the default): called after each Adam step with the
     * steps taken so far, the planned total (max_steps, or max_epochs times the minibatches
     * per epoch, whichever is smaller; early stopping may end sooner) and that minibatch's
     * relative error before the step. It only observes: the results do not depend on it. */
    void (*progress)(void *ctx, int64_t step, int64_t n_steps, double loss);
    void *progress_ctx;
    /* Optional (NULL: none, the default): a task's cancel flag, polled with the process's
     * stop (base/cancel.h) before each Adam step and each minibatch of the error passes;
     * the block's parameters are then restored and the call returns LMP_ECANCEL. */
    const atomic_int *cancel;
};
void lmp_ft_opts_init(struct lmp_ft_opts *o);

struct lmp_ft_stats {
    double  rel_mse_before; /* ||block_hat(X) - Y||^2 / ||Y||^2 over all of X, on entry */
    double  rel_mse_after;  /* the same on return (<= before: see restore above) */
    int64_t n_steps;        /* Adam steps taken */
    int     n_epochs;       /* epochs started */
    bool    restored;       /* tuning did not help and the entry parameters were put back */
    double  seconds;        /* wall time of the call */
};

/* Fine-tune blk on calibration inputs x and targets y, both (n_seq, seq_len, dim) fp32,
 * borrowed for the call. Trained parameters of blk are updated in place (see the file
 * header); codes, dense weights, x and y are not modified. stats may be NULL.
 * RET LMP_OK; LMP_EINVAL (shapes: a linear with neither or both of aq/w, an AQ layer whose
 * n_out/n_in differ from cfg, q/k or post norms missing where cfg has them or given where
 * it has none, n_seq or seq_len <= 0, a zero ||Y||, bad options);
 * LMP_ENOMEM, LMP_ECANCEL (opts.cancel). err names the problem. On error blk is left as on entry.
 */
enum lmp_status lmp_finetune_block(struct lmp_ft_block *blk, const float *x, const float *y,
                                   int64_t n_seq, int64_t seq_len, const struct lmp_ft_opts *opts,
                                   struct lmp_ft_stats *stats, struct lmp_err *err);

#endif /* LMP_WORKER_FINETUNE_H */
