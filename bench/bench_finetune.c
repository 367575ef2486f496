/*  bench_finetune - time of one block fine-tuning step at SmolLM2-135M size
 *
 *  A block of dim 576, FFN 1536, 9 heads / 3 kv heads of 64, every linear AQ 2x8g8 with
 *  random codes and codebooks (a step costs the same whatever the values), minibatches
 *  of --batch sequences of --seq tokens. Times the pieces of a step (training forward,
 *  backward, AQ gradients + Adam + decode of the seven linears) and then whole steps
 *  through lmp_finetune_block (which adds the before/after evaluation passes), and
 *  prints ms per step and the steps per block that fit a whole-model budget.
 *
 *  usage: bench_finetune [--threads N] [--batch B] [--seq T] [--steps S] [--layers L]
 *                        [--budget-min MIN]
 */
#include "worker/finetune.h"
#include "worker/block_grad.h"
#include "kernels/kernels.h" /* defines: lmp_kernels_get, lmp_kernels_set_threads */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t rng = 88172645463325252ull;
static float    frand(void) {
       rng ^= rng << 13;
       rng ^= rng >> 7;
       rng ^= rng << 17;
       return (float)((double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

int main(int argc, char **argv) {
    int     threads = 2, steps = 6, layers = 30;
    int64_t batch = 4, T = 512;
    double  budget_min = 30.0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--threads"))
            threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--batch"))
            batch = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--seq"))
            T = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--steps"))
            steps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--layers"))
            layers = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--budget-min"))
            budget_min = atof(argv[i + 1]);
        else {
            fprintf(stderr, "unknown option '%s'\n", argv[i]);
            return 2;
        }
    }
    if (threads < 1 || batch < 1 || T < 1 || steps < 1 || layers < 1) {
        fprintf(stderr, "usage: bench_finetune [--threads N] [--batch B] [--seq T] [--steps S] "
                        "[--layers L] [--budget-min MIN]\n");
        return 2;
    }
    lmp_kernels_set_threads(threads);
    struct lmp_config   c  = {.dim        = 576,
                              .hidden_dim = 1536,
                              .n_heads    = 9,
                              .n_kv_heads = 3,
                              .head_dim   = 64,
                              .n_layers   = 1,
                              .max_seq    = (int32_t)T,
                              .rope_theta = 100000.0f,
                              .norm_eps   = 1e-5f,
                              .rope       = LMP_ROPE_HALF};
    const int64_t       qd = 576, kd = 192;
    const int64_t       shp[LMP_LIN_COUNT][2] = {{qd, 576},   {kd, 576},   {kd, 576},  {576, qd},
                                                 {1536, 576}, {1536, 576}, {576, 1536}};
    struct lmp_aq_layer aq[LMP_LIN_COUNT];
    struct lmp_ft_block blk = {.cfg = &c};
    float              *norm[2];
    for (int i = 0; i < 2; i++) {
        norm[i] = malloc(576 * sizeof(float));
        for (int j = 0; j < 576; j++) norm[i][j] = 1.0f + 0.1f * frand();
    }
    blk.attn_norm = norm[0];
    blk.ffn_norm  = norm[1];
    for (int k = 0; k < LMP_LIN_COUNT; k++) {
        struct lmp_aq_layer *a = &aq[k];
        *a                     = (struct lmp_aq_layer){
                                .sc = {.M = 2, .B = 8, .g = 8, .K = 256}, .n_out = shp[k][0], .n_in = shp[k][1]};
        const int64_t n_codes = a->n_out * a->n_in / 8 * 2, n_cb = 2 * 256 * 8;
        a->codes     = malloc((size_t)n_codes * sizeof(uint16_t));
        a->codebooks = malloc((size_t)n_cb * sizeof(float));
        a->scales    = malloc((size_t)a->n_out * sizeof(float));
        for (int64_t i = 0; i < n_codes; i++)
            a->codes[i] = (uint16_t)((uint64_t)(frand() * 128 + 128) % 256);
        for (int64_t i = 0; i < n_cb; i++) a->codebooks[i] = 0.05f * frand();
        for (int64_t i = 0; i < a->n_out; i++) a->scales[i] = 1.0f / sqrtf((float)a->n_in) * 4;
        blk.lin[k].aq = a;
    }
    const int64_t n_seq = 2 * batch, per_seq = T * 576;
    float        *x = malloc(sizeof(float) * (size_t)(n_seq * per_seq));
    float        *y = malloc(sizeof(float) * (size_t)(n_seq * per_seq));
    for (int64_t i = 0; i < n_seq * per_seq; i++) {
        x[i] = frand();
        y[i] = x[i] + 0.1f * frand();
    }

    /* ---- the pieces of one step, on one minibatch --------------------------------- */
    const struct lmp_kernels *kt = lmp_kernels_get();
    struct lmp_block_grad    *bg = NULL;
    if (lmp_block_grad_new(&c, batch, T, &bg) != LMP_OK) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    struct lmp_block_params p = {.attn_norm = norm[0], .ffn_norm = norm[1]};
    struct lmp_block_grads  g = {.attn_norm = calloc(576, 4), .ffn_norm = calloc(576, 4)};
    struct lmp_aq_shape     s[LMP_LIN_COUNT];
    float *gcb = malloc(2 * 256 * 8 * sizeof(float)), *gsc = malloc(1536 * sizeof(float));
    for (int k = 0; k < LMP_LIN_COUNT; k++) {
        s[k]     = (struct lmp_aq_shape){shp[k][0], shp[k][1], 2, 256, 8};
        float *w = malloc(sizeof(float) * (size_t)(shp[k][0] * shp[k][1]));
        kt->aq_decode(w, aq[k].codes, aq[k].codebooks, aq[k].scales, &s[k]);
        p.w[k] = w;
        g.w[k] = calloc((size_t)(shp[k][0] * shp[k][1]), sizeof(float));
    }
    float *yh    = malloc(sizeof(float) * (size_t)(batch * per_seq));
    double t_fwd = 1e30, t_bwd = 1e30, t_aq = 1e30;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = now_s();
        lmp_block_grad_forward(bg, &p, x, batch, yh);
        double t1 = now_s();
        lmp_block_grad_backward(bg, &p, yh, NULL, &g);
        double t2 = now_s();
        for (int k = 0; k < LMP_LIN_COUNT; k++) {
            kt->aq_grad_dw(gcb, gsc, g.w[k], aq[k].codes, aq[k].codebooks, aq[k].scales, &s[k]);
            kt->aq_decode((float *)p.w[k], aq[k].codes, aq[k].codebooks, aq[k].scales, &s[k]);
        }
        double t3 = now_s();
        t_fwd     = fmin(t_fwd, t1 - t0);
        t_bwd     = fmin(t_bwd, t2 - t1);
        t_aq      = fmin(t_aq, t3 - t2);
    }
    const double tok = (double)(batch * T);
    /* matmul FLOPs of the linears: 2 per weight per token forward, 4 backward */
    double n_w = 0;
    for (int k = 0; k < LMP_LIN_COUNT; k++) n_w += (double)(shp[k][0] * shp[k][1]);
    printf("block %dx%d, ffn %d, heads %d/%d, batch %lld x %lld tokens, %d threads, kernels '%s'\n",
           576, 576, 1536, 9, 3, (long long)batch, (long long)T, threads, kt->name);
    printf("forward   %8.1f ms  (%.1f GFLOP/s on the linears)\n", 1e3 * t_fwd,
           2 * n_w * tok / t_fwd * 1e-9);
    printf("backward  %8.1f ms  (%.1f GFLOP/s on the linears)\n", 1e3 * t_bwd,
           4 * n_w * tok / t_bwd * 1e-9);
    printf("aq grad+decode (7 linears) %8.1f ms\n", 1e3 * t_aq);

    /* ---- whole steps through the API (adds two evaluation passes over the data) ---- */
    struct lmp_ft_opts o;
    lmp_ft_opts_init(&o);
    o.batch_seqs = batch;
    o.max_steps  = steps;
    o.max_epochs = 1000;
    o.tol        = 0;
    o.n_threads  = threads;
    struct lmp_ft_stats st;
    struct lmp_err      err = {0};
    if (lmp_finetune_block(&blk, x, y, n_seq, T, &o, &st, &err) != LMP_OK) {
        fprintf(stderr, "bench_finetune: %s\n", err.msg);
        return 1;
    }
    const double eval_s  = 2.0 * (double)n_seq / (double)batch * t_fwd; /* before + after */
    const double step_ms = 1e3 * (st.seconds - eval_s) / (double)st.n_steps;
    printf("lmp_finetune_block: %lld steps in %.2f s (%.2f s of it evaluation): %.1f ms/step "
           "(%.2f us/token)\n",
           (long long)st.n_steps, st.seconds, eval_s, step_ms, 1e3 * step_ms / tok);
    /* steps per block that fit the budget on step time alone; the two evaluation passes
     * (one forward over all calibration sequences each) come on top */
    const double per_block_s = budget_min * 60.0 / layers;
    printf("budget %.0f min over %d blocks = %.1f s per block -> about %lld steps of %lld "
           "sequences per block (before the two evaluation passes)\n",
           budget_min, layers, per_block_s, (long long)(per_block_s * 1e3 / step_ms),
           (long long)batch);
    return 0;
}
