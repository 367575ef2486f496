/*  eval - perplexity of a model on a text, with the GPTQ/AQLM protocol
 *
 *  The text is tokenized once by the caller (BOS first where the tokenizer has one).
 *  It is cut into floor(n / ctx) non-overlapping windows of ctx tokens; each window
 *  runs from an empty context and contributes the mean NLL of its ctx - 1 next-token
 *  predictions; ppl = exp(mean over windows of those means). NLLs are summed in double.
 *  Logits are computed per chunk of positions, so memory stays at one chunk of
 *  (rows, vocab) whatever the window and batch sizes.
 */
#ifndef LMP_MODEL_EVAL_H
#define LMP_MODEL_EVAL_H

#include <stdint.h>
#include "base/status.h"                 /* defines: enum lmp_status, struct lmp_err */
#include "model/transformer.h"     /* defines: struct lmp_transformer */

/* After each batch of windows: windows_done of n_windows. */
typedef void lmp_eval_progress_fn(void *ctx, int64_t windows_done, int64_t n_windows);

/* Logits of window `window`, rows [row0, row0 + n_rows) of its ctx positions,
 * shape (n_rows, vocab), borrowed for the call. Every position of the first
 * logits_windows windows is reported once, in order. */
typedef void lmp_eval_logits_fn(void *ctx, int64_t window, int64_t row0, const float *logits,
                                int64_t n_rows, int64_t vocab);

struct lmp_eval_opts {
    int64_t               ctx;           /* window length in tokens (>= 2) */
    int64_t               max_windows;   /* evaluate at most this many windows; <= 0: all */
    int64_t               batch;         /* windows per forward pass; <= 0: 1 */
    lmp_eval_progress_fn *progress;      /* NULL: none */
    void                 *progress_ctx;
    lmp_eval_logits_fn   *on_logits;     /* NULL: none */
    void                 *logits_ctx;
    int64_t               logits_windows;  /* windows reported to on_logits; <= 0: 1. Those
                                              run slower: whole logits rows are materialized */
};

struct lmp_eval_result {
    double  ppl;           /* exp(nll) */
    double  nll;           /* mean over windows of each window's mean NLL (nats) */
    int64_t n_windows;     /* windows evaluated */
    int64_t n_tokens;      /* tokens run through the model: n_windows * ctx */
    int64_t n_text;        /* tokens in the whole text */
    double  seconds;       /* wall time of the forward passes and losses */
};

/* Perplexity of tf on ids (n_ids). RET LMP_OK; LMP_EINVAL (err says why) if ctx < 2,
 * ctx exceeds the model's context, or the text is shorter than one window, or a token
 * is outside the vocabulary; LMP_ENOMEM. */
enum lmp_status lmp_eval_ppl(struct lmp_transformer *tf, const int32_t *ids, int64_t n_ids,
                             const struct lmp_eval_opts *opts, struct lmp_eval_result *res,
                             struct lmp_err *err);

#endif /* LMP_MODEL_EVAL_H */
