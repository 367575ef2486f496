/*  eval - see eval.h */
#include "model/eval.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <time.h>

/* Rows of whole logits computed at once when they are reported: 128 x 49152 x 4 B = 25 MB
 * for SmolLM2. The NLL alone goes through lmp_transformer_hidden_nll, which is faster. */
enum { LOGIT_CHUNK = 128 };

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + 1e-9 * (double) ts.tv_nsec;
}

enum lmp_status lmp_eval_ppl(struct lmp_transformer *tf, const int32_t *ids, int64_t n_ids,
                             const struct lmp_eval_opts *o, struct lmp_eval_result *res,
                             struct lmp_err *err) {
    assert(tf && ids && o && res);
    const struct lmp_config *c = lmp_transformer_config(tf);
    const int64_t ctx = o->ctx, vocab = c->vocab_size;
    *res = (struct lmp_eval_result){.n_text = n_ids};
    if (ctx < 2)
        return lmp_err_set(err, LMP_EINVAL, "context length %lld is too short (at least 2)",
                           (long long) ctx);
    if (c->max_seq > 0 && ctx > c->max_seq)
        return lmp_err_set(err, LMP_EINVAL, "context length %lld exceeds the model's %d",
                           (long long) ctx, c->max_seq);
    int64_t n_windows = n_ids / ctx;
    if (n_windows == 0)
        return lmp_err_set(err, LMP_EINVAL, "the text has %lld tokens, fewer than one window "
                           "of %lld", (long long) n_ids, (long long) ctx);
    if (o->max_windows > 0 && n_windows > o->max_windows) n_windows = o->max_windows;
    const int64_t batch = o->batch > 0 ? (o->batch < n_windows ? o->batch : n_windows) : 1;

    enum lmp_status st     = LMP_OK;
    float          *hidden = malloc(sizeof(float) * (size_t) (batch * ctx * c->dim));
    float          *logits = o->on_logits ? malloc(sizeof(float) * (size_t) (LOGIT_CHUNK * vocab))
                                          : NULL;
    double         *nll     = malloc(sizeof(double) * (size_t) (batch * ctx));
    int32_t        *targets = malloc(sizeof(int32_t) * (size_t) (batch * ctx));
    if (hidden == NULL || (o->on_logits && logits == NULL) || nll == NULL || targets == NULL) {
        st = lmp_err_set(err, LMP_ENOMEM, "out of memory for windows of %lld tokens",
                         (long long) ctx);
        goto out;
    }
    const int64_t n_logit_win = o->on_logits ? (o->logits_windows > 0 ? o->logits_windows : 1) : 0;
    const double  t0          = now_s();
    double        sum         = 0;   /* of per-window mean NLLs */
    for (int64_t w0 = 0; w0 < n_windows; w0 += batch) {
        const int64_t nb = n_windows - w0 < batch ? n_windows - w0 : batch;
        st = lmp_transformer_forward(tf, NULL, ids + w0 * ctx, nb, ctx, hidden, NULL, err);
        if (st != LMP_OK) goto out;
        /* Fast path: NLL of every row of the batch in one vocabulary sweep. Row t of a
         * window predicts token t + 1; the last row of each window has no target (its
         * slot gets a harmless one and is skipped). */
        for (int64_t b = 0; b < nb; b++)
            for (int64_t t = 0; t < ctx; t++)
                targets[b * ctx + t] = t + 1 < ctx ? ids[(w0 + b) * ctx + t + 1] : 0;
        if (w0 + nb > n_logit_win &&
            lmp_transformer_hidden_nll(tf, hidden, nb * ctx, targets, nll) != LMP_OK) {
            st = lmp_err_set(err, LMP_ENOMEM, "out of memory for the lm head");
            goto out;
        }
        for (int64_t b = 0; b < nb; b++) {
            const int64_t w = w0 + b;
            double        wsum = 0;
            if (w < n_logit_win) {   /* slow path: whole logits rows for on_logits */
                for (int64_t r0 = 0; r0 < ctx; r0 += LOGIT_CHUNK) {
                    const int64_t n = ctx - r0 < LOGIT_CHUNK ? ctx - r0 : LOGIT_CHUNK;
                    lmp_transformer_logits(tf, hidden + (b * ctx + r0) * c->dim, n, logits);
                    o->on_logits(o->logits_ctx, w, r0, logits, n, vocab);
                    lmp_transformer_nll(tf, logits, n, targets + b * ctx + r0, nll + b * ctx + r0);
                }
            }
            for (int64_t t = 0; t < ctx - 1; t++) wsum += nll[b * ctx + t];
            sum += wsum / (double) (ctx - 1);
        }
        if (o->progress) o->progress(o->progress_ctx, w0 + nb, n_windows);
    }
    res->seconds   = now_s() - t0;
    res->n_windows = n_windows;
    res->n_tokens  = n_windows * ctx;
    res->nll       = sum / (double) n_windows;
    res->ppl       = exp(res->nll);
out:
    free(hidden);
    free(logits);
    free(nll);
    free(targets);
    return st;
}
