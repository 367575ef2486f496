/*  bench_eval - throughput and peak memory of perplexity evaluation
 *
 *  usage: bench_eval MODEL TEXT [CTX [WINDOWS [THREADS [BATCH]]]]   (defaults 512 8 2 1)
 *
 *  Loads MODEL (its own tokenizer), tokenizes TEXT with BOS, evaluates WINDOWS windows
 *  of CTX tokens and prints one JSON object: tokens/s by wall clock and by CPU time
 *  (the machine is shared: compare ratios taken in one run, and CPU-time rates when
 *  other load is present), the achieved GFLOP/s of the forward pass (2 flops per
 *  multiply-add of the linears, attention and lm head), load time and peak RSS
 *  (getrusage ru_maxrss). If TEXT is "-" or cannot be tokenized, deterministic
 *  synthetic token ids are used (throughput does not depend on the ids).
 */
#include "base/file.h"         /* defines: lmp_file_read_all */
#include "model/eval.h"        /* defines: lmp_eval_ppl */
#include "model/model.h"       /* defines: lmp_model_open */
#include "model/tokenizer.h"   /* defines: lmp_tokenizer_open */
#include "model/transformer.h" /* defines: lmp_transformer_new */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec +
           (double)ru.ru_stime.tv_sec + 1e-6 * (double)ru.ru_stime.tv_usec;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL TEXT [CTX [WINDOWS [THREADS [BATCH]]]]\n", argv[0]);
        return 2;
    }
    const char *model_path = argv[1], *text_path = argv[2];
    const long  ctx     = argc > 3 ? atol(argv[3]) : 512;
    const long  windows = argc > 4 ? atol(argv[4]) : 8;
    const int   threads = argc > 5 ? atoi(argv[5]) : 2;
    const long  batch   = argc > 6 ? atol(argv[6]) : 1;
    if (ctx < 2 || windows < 1 || threads < 1 || batch < 1) {
        fprintf(stderr, "bench_eval: bad arguments\n");
        return 2;
    }
    struct lmp_err          err    = {0};
    struct lmp_model       *m      = NULL;
    struct lmp_transformer *tf     = NULL;
    struct lmp_tokenizer   *tok    = NULL;
    int32_t                *ids    = NULL;
    int64_t                 n      = 0;
    char                   *text   = NULL;
    size_t                  len    = 0;
    const char             *source = "text";
    int                     rc     = 1;

    double t0 = now_s();
    if (lmp_model_open(model_path, &m, &err) != LMP_OK) goto fail;
    struct lmp_transformer_opts o = {.n_threads = threads};
    if (lmp_transformer_new(m, &o, &tf, &err) != LMP_OK) goto fail;
    const double load_s = now_s() - t0;

    if (strcmp(text_path, "-") == 0 || lmp_file_read_all(text_path, &text, &len, &err) != LMP_OK ||
        lmp_tokenizer_open(NULL, m, &tok, &err) != LMP_OK ||
        lmp_tokenizer_encode(tok, text, len, true, &ids, &n, &err) != LMP_OK || n < ctx * windows) {
        if (strcmp(text_path, "-") != 0)
            fprintf(stderr, "bench_eval: using synthetic tokens (%s)\n",
                    err.msg[0] ? err.msg : "text shorter than the windows asked for");
        free(ids);
        n   = ctx * windows;
        ids = malloc(sizeof(int32_t) * (size_t)n);
        if (ids == NULL) goto fail;
        uint32_t s = 12345;
        for (int64_t i = 0; i < n; i++) {
            s      = s * 1664525u + 1013904223u;
            ids[i] = (int32_t)((s >> 8) % (uint32_t)m->cfg.vocab_size);
        }
        source = "synthetic";
    }
    struct lmp_eval_opts   eo = {.ctx = ctx, .max_windows = windows, .batch = batch};
    struct lmp_eval_result r;
    const double           c0 = cpu_s();
    if (lmp_eval_ppl(tf, ids, n, &eo, &r, &err) != LMP_OK) goto fail;
    const double cpu = cpu_s() - c0;

    /* flops per window: linears + lm head + causal attention (QK^T and PV) */
    const struct lmp_config *c = &m->cfg;
    const double qd = (double)c->n_heads * c->head_dim, kd = (double)c->n_kv_heads * c->head_dim;
    const double lin = (double)c->dim * (qd + 2 * kd) + qd * c->dim + 3.0 * c->dim * c->hidden_dim;
    const double per_win =
        2.0 * (double)ctx * (lin * c->n_layers + (double)c->dim * c->vocab_size) +
        2.0 * 2.0 * c->n_layers * c->n_heads * c->head_dim * (double)ctx * (ctx + 1) / 2;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("{\"model\":\"%s\",\"tokens_source\":\"%s\",\"ctx\":%ld,\"windows\":%lld,\"batch\":%ld,"
           "\"threads\":%d,\"ppl\":%.6f,\"tokens\":%lld,\"seconds\":%.4f,\"tokens_per_s\":%.2f,"
           "\"cpu_seconds\":%.4f,\"tokens_per_cpu_s\":%.2f,\"gflop_per_window\":%.3f,"
           "\"gflops\":%.2f,\"load_seconds\":%.3f,\"peak_rss_mb\":%.1f}\n",
           model_path, source, ctx, (long long)r.n_windows, batch, lmp_transformer_n_threads(tf),
           r.ppl, (long long)r.n_tokens, r.seconds, (double)r.n_tokens / r.seconds, cpu,
           (double)r.n_tokens / cpu, per_win / 1e9, per_win * (double)r.n_windows / r.seconds / 1e9,
           load_s, (double)ru.ru_maxrss / 1024.0);
    rc = 0;
    goto out;
fail:
    fprintf(stderr, "bench_eval: %s\n", err.msg[0] ? err.msg : "out of memory");
out:
    free(ids);
    free(text);
    lmp_tokenizer_free(&tok);
    lmp_transformer_destroy(&tf);
    lmp_model_close(&m);
    return rc;
}
