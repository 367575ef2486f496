/*  eval - perplexity of a model on a text, with the GPTQ/AQLM protocol
 *
 *  The text is tokenized once by the caller (BOS first where the tokenizer has one).
 *  It is cut into floor(n / ctx) non-overlapping windows of ctx tokens; each window
 *  runs from an empty context and contributes the mean NLL of its ctx - 1 next-token
 *  predictions; ppl = exp(mean over windows of those means). NLLs are summed in double.
 *  Logits are computed per chunk of positions, so memory stays at one chunk of
 *  (rows, vocab) whatever the window and batch sizes.
 *
 *  Against a reference (opts.reference, e.g. the original of a compressed model), the
 *  same windows also run through the reference, and every predicted position (the ctx - 1
 *  of each window that have a target) adds KL(reference || model) of its next-token
 *  distributions over the whole vocabulary and whether their argmaxes agree: kl is the
 *  mean over those positions (nats), top1 the fraction that agree. The perplexity itself
 *  is computed exactly as without a reference (same bits).
 */
#ifndef LMP_MODEL_EVAL_H
#define LMP_MODEL_EVAL_H

#include <stdint.h>
#include "base/status.h"       /* defines: enum lmp_status, struct lmp_err */
#include "model/transformer.h" /* defines: struct lmp_transformer */

/* After each batch of windows: windows_done of n_windows. */
typedef void lmp_eval_progress_fn(void *ctx, int64_t windows_done, int64_t n_windows);

/* Logits of window `window`, rows [row0, row0 + n_rows) of its ctx positions,
 * shape (n_rows, vocab), borrowed for the call. Every position of the first
 * logits_windows windows is reported once, in order. */
typedef void lmp_eval_logits_fn(void *ctx, int64_t window, int64_t row0, const float *logits,
                                int64_t n_rows, int64_t vocab);

struct lmp_eval_opts {
    int64_t               ctx;         /* window length in tokens (>= 2) */
    int64_t               max_windows; /* evaluate at most this many windows; <= 0: all */
    int64_t               batch;       /* windows per forward pass; <= 0: 1 */
    lmp_eval_progress_fn *progress;    /* NULL: none */
    void                 *progress_ctx;
    lmp_eval_logits_fn   *on_logits; /* NULL: none */
    void                 *logits_ctx;
    int64_t               logits_windows; /* windows reported to on_logits; <= 0: 1. Those
                                             run slower: whole logits rows are materialized */
    struct lmp_transformer *reference;    /* NULL: none; else KL and top-1 agreement against
                                             it (same vocabulary; it runs the same windows) */
};

struct lmp_eval_result {
    double  ppl;       /* exp(nll) */
    double  nll;       /* mean over windows of each window's mean NLL (nats) */
    int64_t n_windows; /* windows evaluated */
    int64_t n_tokens;  /* tokens run through the model: n_windows * ctx */
    int64_t n_text;    /* tokens in the whole text */
    double  seconds;   /* wall time of the forward passes and losses */
    /* with opts.reference only (else 0): */
    double  kl;      /* mean KL(reference || model) per predicted token (nats) */
    double  top1;    /* fraction of predicted tokens whose argmaxes agree */
    double  ref_nll; /* the reference's nll and ppl on the same windows */
    double  ref_ppl;
    int64_t n_pred; /* predicted tokens compared: n_windows * (ctx - 1) */
};

/* KL(teacher || student) of the next-token distributions of n_rows rows of logits
 * teacher, student (n_rows, vocab) (log-probabilities are logits too): RET the sum over
 * rows of sum_v p_t,v (log p_t,v - log p_s,v) in nats, each row by a stable log-sum-exp,
 * accumulated in double (exactly 0 when the rows are equal). kl_row (n_rows) gets each
 * row's term, and *n_agree the number of rows whose argmaxes (lowest index on ties)
 * agree; either may be NULL. With dstudent (n_rows, vocab) non-NULL it is overwritten
 * with scale * (p_s - p_t), the gradient of scale * KL with respect to the student's
 * logits. Single-threaded; rows independent. */
double lmp_kl_rows(const float *teacher, const float *student, int64_t n_rows, int64_t vocab,
                   float scale, float *dstudent, double *kl_row, int64_t *n_agree);

/* Perplexity of tf on ids (n_ids), and with opts.reference the KL and top-1 agreement.
 * RET LMP_OK; LMP_EINVAL (err says why) if ctx < 2, ctx exceeds the model's (or the
 * reference's) context, the text is shorter than one window, a token is outside the
 * vocabulary, or the reference's vocabulary differs; LMP_ENOMEM. */
enum lmp_status lmp_eval_ppl(struct lmp_transformer *tf, const int32_t *ids, int64_t n_ids,
                             const struct lmp_eval_opts *opts, struct lmp_eval_result *res,
                             struct lmp_err *err);

#endif /* LMP_MODEL_EVAL_H */
