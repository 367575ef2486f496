/*  bench_gguf - cost of opening a GGUF model and of dequantizing it
 *
 *      bench_gguf [model.gguf]   (default: the SmolLM2 model of deploy/setup.sh)
 *
 *  Prints the median wall time of lmp_model_open + lmp_model_close (headers only: the
 *  tensor data stay mapped and untouched), then the dequantization throughput of every
 *  linear weight with the reference kernel and with the best variant, as a ratio
 *  measured in the same run.
 */
#include "model/model.h"
#include "kernels/kernels.h" /* defines: lmp_kernels_init_ref/best */

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Dequantize every linear weight of m with fn; returns ms and the element count. */
static double dequant_all(const struct lmp_model *m, lmp_dequant_row_fn *fn, int64_t *n_elem) {
    float  *row = NULL;
    int64_t cap = 0;
    *n_elem     = 0;
    double t0   = now_ms();
    for (int64_t i = 0; i < lmp_model_n_linears(m); i++) {
        const struct lmp_tensor *t    = lmp_model_linear(m, i)->weight;
        int64_t                  cols = lmp_tensor_n_cols(t), rows = lmp_tensor_n_rows(t);
        int64_t row_bytes = cols / lmp_dtype_block(t->dtype) * lmp_dtype_block_bytes(t->dtype);
        if (cols > cap) {
            free(row);
            row = malloc((size_t)cols * sizeof(float));
            cap = cols;
        }
        for (int64_t r = 0; r < rows; r++)
            fn((int)t->dtype, (const char *)t->data + r * row_bytes, row, cols);
        *n_elem += rows * cols;
    }
    free(row);
    return now_ms() - t0;
}

int main(int argc, char **argv) {
    char        def[4096];
    const char *home = getenv("HOME");
    snprintf(def, sizeof(def), "%s/.cache/lmpress/models/SmolLM2-135M-Instruct.Q4_1.gguf",
             home ? home : ".");
    const char *path = argc > 1 ? argv[1] : def;
    enum { REPS = 21 };
    double            t[REPS];
    struct lmp_model *m   = NULL;
    struct lmp_err    err = {0};
    for (int r = 0; r < REPS; r++) {
        double t0 = now_ms();
        if (lmp_model_open(path, &m, &err) != LMP_OK) {
            fprintf(stderr, "bench_gguf: %s\n", err.msg);
            return 1;
        }
        lmp_model_close(&m);
        t[r] = now_ms() - t0;
    }
    qsort(t, REPS, sizeof(double), cmp_double);
    printf("open+close: median %.3f ms, min %.3f ms (%d runs)\n", t[REPS / 2], t[0], REPS);

    if (lmp_model_open(path, &m, &err) != LMP_OK) return 1;
    struct lmp_kernels ref, best;
    lmp_kernels_init_ref(&ref);
    lmp_kernels_init_best(&best);
    int64_t n;
    dequant_all(m, best.dequant_row, &n); /* page the weights in */
    double t_ref  = dequant_all(m, ref.dequant_row, &n);
    double t_best = dequant_all(m, best.dequant_row, &n);
    printf("dequant %lld weights (%s): ref %.1f ms, %s %.1f ms, speedup %.2fx\n", (long long)n,
           lmp_dtype_name(lmp_model_linear(m, 0)->weight->dtype), t_ref, best.name, t_best,
           t_ref / t_best);
    lmp_model_close(&m);
    return 0;
}
