/*  eval - see eval.h */
#include "model/eval.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <time.h>

/* Rows of whole logits computed at once when they are reported: 128 x 49152 x 4 B = 25 MB
 * for SmolLM2. The NLL alone goes through lmp_transformer_hidden_nll, which is faster. */
enum { LOGIT_CHUNK = 128 };

double lmp_kl_rows(const float *teacher, const float *student, int64_t n_rows, int64_t vocab,
                   float scale, float *dstudent, double *kl_row, int64_t *n_agree) {
    assert(teacher && student && vocab > 0);
    double  total = 0;
    int64_t agree = 0;
    for (int64_t r = 0; r < n_rows; r++) {
        const float *t = teacher + r * vocab, *s = student + r * vocab;
        int64_t      at = 0, as = 0;
        for (int64_t v = 1; v < vocab; v++) {
            if (t[v] > t[at]) at = v;
            if (s[v] > s[as]) as = v;
        }
        const float mt = t[at], ms = s[as];
        /* KL = sum_v p_t,v (t_v - s_v) - lse(t) + lse(s), as sum_v p_t,v = 1 */
        double zt = 0, zs = 0, cross = 0;
        for (int64_t v = 0; v < vocab; v++) {
            const double et = expf(t[v] - mt);
            zt += et;
            cross += et * ((double)t[v] - (double)s[v]);
            zs += expf(s[v] - ms);
        }
        const double lt = (double)mt + log(zt), ls = (double)ms + log(zs);
        const double kl = cross / zt - lt + ls;
        total += kl;
        if (kl_row) kl_row[r] = kl;
        agree += at == as;
        if (dstudent) {
            float *d = dstudent + r * vocab;
            for (int64_t v = 0; v < vocab; v++)
                d[v] = (float)((double)scale * (exp((double)s[v] - ls) - exp((double)t[v] - lt)));
        }
    }
    if (n_agree) *n_agree = agree;
    return total;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

enum lmp_status lmp_eval_ppl(struct lmp_transformer *tf, const int32_t *ids, int64_t n_ids,
                             const struct lmp_eval_opts *o, struct lmp_eval_result *res,
                             struct lmp_err *err) {
    assert(tf && ids && o && res);
    const struct lmp_config *c   = lmp_transformer_config(tf);
    const int64_t            ctx = o->ctx, vocab = c->vocab_size;
    *res = (struct lmp_eval_result){.n_text = n_ids};
    if (ctx < 2)
        return lmp_err_set(err, LMP_EINVAL, "context length %lld is too short (at least 2)",
                           (long long)ctx);
    if (c->max_seq > 0 && ctx > c->max_seq)
        return lmp_err_set(err, LMP_EINVAL, "context length %lld exceeds the model's %d",
                           (long long)ctx, c->max_seq);
    int64_t n_windows = n_ids / ctx;
    if (n_windows == 0)
        return lmp_err_set(err, LMP_EINVAL,
                           "the text has %lld tokens, fewer than one window "
                           "of %lld",
                           (long long)n_ids, (long long)ctx);
    if (o->max_windows > 0 && n_windows > o->max_windows) n_windows = o->max_windows;
    const int64_t batch          = o->batch > 0 ? (o->batch < n_windows ? o->batch : n_windows) : 1;
    struct lmp_transformer  *ref = o->reference;
    const struct lmp_config *rc  = ref ? lmp_transformer_config(ref) : NULL;
    if (rc && rc->vocab_size != c->vocab_size)
        return lmp_err_set(err, LMP_EINVAL,
                           "the reference's vocabulary (%d) differs from the "
                           "model's (%d)",
                           rc->vocab_size, c->vocab_size);
    if (rc && rc->max_seq > 0 && ctx > rc->max_seq)
        return lmp_err_set(err, LMP_EINVAL, "context length %lld exceeds the reference's %d",
                           (long long)ctx, rc->max_seq);

    enum lmp_status st      = LMP_OK;
    const bool      whole   = o->on_logits || ref; /* whole logits rows needed */
    float          *hidden  = malloc(sizeof(float) * (size_t)(batch * ctx * c->dim));
    float          *logits  = whole ? malloc(sizeof(float) * (size_t)(LOGIT_CHUNK * vocab)) : NULL;
    double         *nll     = malloc(sizeof(double) * (size_t)(batch * ctx));
    int32_t        *targets = malloc(sizeof(int32_t) * (size_t)(batch * ctx));
    float  *ref_hidden      = ref ? malloc(sizeof(float) * (size_t)(batch * ctx * rc->dim)) : NULL;
    float  *ref_logits      = ref ? malloc(sizeof(float) * (size_t)(LOGIT_CHUNK * vocab)) : NULL;
    double *ref_nll         = ref ? malloc(sizeof(double) * LOGIT_CHUNK) : NULL;
    if (hidden == NULL || (whole && logits == NULL) || nll == NULL || targets == NULL ||
        (ref && (ref_hidden == NULL || ref_logits == NULL || ref_nll == NULL))) {
        st = lmp_err_set(err, LMP_ENOMEM, "out of memory for windows of %lld tokens",
                         (long long)ctx);
        goto out;
    }
    double        kl_sum = 0, ref_sum = 0; /* KL over predicted tokens; reference window means */
    int64_t       n_agree     = 0;
    const int64_t n_logit_win = o->on_logits ? (o->logits_windows > 0 ? o->logits_windows : 1) : 0;
    const double  t0          = now_s();
    double        sum         = 0; /* of per-window mean NLLs */
    for (int64_t w0 = 0; w0 < n_windows; w0 += batch) {
        const int64_t nb = n_windows - w0 < batch ? n_windows - w0 : batch;
        st = lmp_transformer_forward(tf, NULL, ids + w0 * ctx, nb, ctx, hidden, NULL, err);
        if (st == LMP_OK && ref)
            st = lmp_transformer_forward(ref, NULL, ids + w0 * ctx, nb, ctx, ref_hidden, NULL, err);
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
            const int64_t w    = w0 + b;
            double        wsum = 0;
            double        rsum = 0;
            if (w < n_logit_win || ref) { /* slow path: whole logits rows */
                for (int64_t r0 = 0; r0 < ctx; r0 += LOGIT_CHUNK) {
                    const int64_t n      = ctx - r0 < LOGIT_CHUNK ? ctx - r0 : LOGIT_CHUNK;
                    const int64_t n_pred = r0 + n < ctx ? n : n - 1; /* rows with a target */
                    lmp_transformer_logits(tf, hidden + (b * ctx + r0) * c->dim, n, logits);
                    if (w < n_logit_win) {
                        o->on_logits(o->logits_ctx, w, r0, logits, n, vocab);
                        lmp_transformer_nll(tf, logits, n, targets + b * ctx + r0,
                                            nll + b * ctx + r0);
                    }
                    if (ref == NULL || n_pred <= 0) continue;
                    /* all n rows, as the model's: sgemm's rounding may depend on the shape */
                    lmp_transformer_logits(ref, ref_hidden + (b * ctx + r0) * rc->dim, n,
                                           ref_logits);
                    int64_t agree = 0;
                    kl_sum +=
                        lmp_kl_rows(ref_logits, logits, n_pred, vocab, 0.0f, NULL, NULL, &agree);
                    n_agree += agree;
                    lmp_transformer_nll(ref, ref_logits, n_pred, targets + b * ctx + r0, ref_nll);
                    for (int64_t t = 0; t < n_pred; t++) rsum += ref_nll[t];
                }
            }
            for (int64_t t = 0; t < ctx - 1; t++) wsum += nll[b * ctx + t];
            sum += wsum / (double)(ctx - 1);
            ref_sum += rsum / (double)(ctx - 1);
        }
        if (o->progress) o->progress(o->progress_ctx, w0 + nb, n_windows);
    }
    res->seconds   = now_s() - t0;
    res->n_windows = n_windows;
    res->n_tokens  = n_windows * ctx;
    res->nll       = sum / (double)n_windows;
    res->ppl       = exp(res->nll);
    if (ref) {
        res->n_pred  = n_windows * (ctx - 1);
        res->kl      = kl_sum / (double)res->n_pred;
        res->top1    = (double)n_agree / (double)res->n_pred;
        res->ref_nll = ref_sum / (double)n_windows;
        res->ref_ppl = exp(res->ref_nll);
    }
out:
    free(ref_hidden);
    free(ref_logits);
    free(ref_nll);
    free(hidden);
    free(logits);
    free(nll);
    free(targets);
    return st;
}
