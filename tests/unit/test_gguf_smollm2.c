/*  test_gguf_smollm2 - the real default model (SmolLM2-135M-Instruct, Q4_1 GGUF) through
 *  lmp_model_open: config, tensor types, tokenizer metadata, plausible dequantized rows.
 *  Skipped (failed under CI=true) when deploy/setup.sh has not fetched the model.
 */
#include "model/gguf.h"
#include "model/model.h"
#include "tests/check.h" /* defines: CHECK, RUN, check_report, check_skip */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int str_is(struct lmp_gguf_str s, const char *want) {
    return s.s != NULL && s.len == strlen(want) && memcmp(s.s, want, s.len) == 0;
}

static void test_gguf_smollm2(void) {
    char        path[4096];
    const char *cache = getenv("LMP_CACHE"), *home = getenv("HOME");
    if (cache)
        snprintf(path, sizeof(path), "%s/models/SmolLM2-135M-Instruct.Q4_1.gguf", cache);
    else
        snprintf(path, sizeof(path), "%s/.cache/lmpress/models/SmolLM2-135M-Instruct.Q4_1.gguf",
                 home ? home : ".");
    if (access(path, R_OK) != 0) {
        char why[4200];
        snprintf(why, sizeof(why), "model '%s' not found (deploy/setup.sh fetches it)", path);
        check_skip(why);
        return;
    }
    struct lmp_model *m   = NULL;
    struct lmp_err    err = {0};
    struct timespec   t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    enum lmp_status st = lmp_model_open(path, &m, &err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    CHECK(st == LMP_OK);
    if (m == NULL) {
        fprintf(stderr, "  %s\n", err.msg);
        return;
    }
    fprintf(stderr, "  lmp_model_open: %.2f ms\n",
            (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6);
    const struct lmp_config *c = &m->cfg;
    CHECK(c->arch == LMP_ARCH_LLAMA && c->rope == LMP_ROPE_INTERLEAVED);
    CHECK(c->n_layers == 30 && c->dim == 576 && c->n_heads == 9 && c->n_kv_heads == 3);
    CHECK(c->head_dim == 64 && c->hidden_dim == 1536 && c->vocab_size == 49152);
    CHECK(c->tied_embeddings && m->output == m->tok_emb);
    CHECK(m->n_tensors == 2 + 30 * 9);
    struct lmp_gguf_str pre;
    CHECK(lmp_gguf_get_str(m->gguf, "tokenizer.ggml.pre", &pre) && str_is(pre, "smollm"));
    CHECK(lmp_gguf_arr_n(m->gguf, "tokenizer.ggml.tokens", NULL) == 49152);
    const struct lmp_linear *q = lmp_model_linear(m, 7 * LMP_LIN_COUNT + LMP_LIN_Q);
    CHECK(q->weight->dtype == LMP_DTYPE_Q4_1 && q->n_out == 576 && q->n_in == 576);
    CHECK(lmp_model_linear(m, 29 * LMP_LIN_COUNT + LMP_LIN_DOWN)->weight->dtype == LMP_DTYPE_Q4_1);
    /* one row of a q_proj: finite, not constant, typical weight magnitudes */
    float row[576];
    lmp_tensor_rows_f32(q->weight, 100, 1, row);
    double sum = 0, sq = 0, mx = 0;
    int    finite = 1;
    for (int i = 0; i < 576; i++) {
        finite &= isfinite(row[i]) != 0;
        sum += row[i], sq += (double)row[i] * row[i];
        if (fabs(row[i]) > mx) mx = fabs(row[i]);
    }
    double mean = sum / 576, sd = sqrt(sq / 576 - mean * mean);
    fprintf(stderr, "  q_proj row 100: mean %.4f sd %.4f max|w| %.3f\n", mean, sd, mx);
    CHECK(finite && sd > 1e-3 && sd < 1.0 && mx < 10.0 && fabs(mean) < sd);
    float norm[576];
    lmp_tensor_rows_f32(m->out_norm, 0, 1, norm);
    CHECK(m->out_norm->dtype == LMP_DTYPE_F32 && isfinite(norm[0]) && norm[0] != 0);
    lmp_model_close(&m);
}

int main(void) {
    RUN(test_gguf_smollm2);
    return check_report();
}
