/*  bench_kernels - throughput of the AQLM kernels on SmolLM2-135M shapes, against the
 *  machine's nominal fp32 peak and an OpenBLAS sgemm measured in the same run, and the
 *  time to quantize whole layers
 *
 *  usage: bench_kernels [--peak GFLOPS] [--scheme 2x8g8] [--beam B] [--reps N]
 *                       [--layer | --model | --no-layer | --gemm-only] [--no-eager]
 *                       [--layer-eager]
 *    --gemm-only  only the sgemm baseline and the routing rows: the table's sgemm slot
 *             against cblas_sgemm called directly with the same arguments, alternating,
 *             minimum over rounds ("table/direct" 1.00: routing costs nothing)
 *    --no-eager  skip the baseline beam kernel in the kernel rows (by default timed right
 *             after the table's, with the ratio printed)
 *    --layer-eager  also quantize each layer with the baseline beam kernel (rows "...e"),
 *             right after the table's run, and print the ratios
 *    --tables [LIST]  only the per-slot comparison of kernel tables (default
 *             ref,avx2,avx512: those this CPU runs): every slot the SIMD tables override,
 *             each table's call timed in the same run (tables alternating, minimum over
 *             --reps rounds, each round at least 20 ms of calls), with the time ratios
 *             ref/avx2, ref/avx512 and avx2/avx512 (the first two and last table given)
 *    --peak   nominal fp32 peak for the fractions (default 450: 2 Sapphire Rapids cores)
 *    --cores  cores that peak is for (default 2); "%core" = GFLOP per CPU-second / (peak/cores)
 *    --layer  (default) also quantize one 576x1536 layer with the default options
 *    --model  quantize one layer of each of the 4 SmolLM2-135M shapes and extrapolate
 *             to the 210 linears (30 blocks x q,k,v,o,gate,up,down)
 *  Inputs are synthetic: W with Gaussian-like entries, H = X^T X / n_tok from
 *  correlated random X (n_tok = 2048). Threads: $LMP_THREADS (kernels) and
 *  $OPENBLAS_NUM_THREADS (sgemm), both default to all cores.
 *
 *  Flop counts (counted once per call, so GFLOP/s is "useful work per second"):
 *    sgemm M x N x K            2 M N K
 *    aq_grad                    2 n_out n_in^2 (R H) + 4 n_out n_in (decode, loss, scatter)
 *    aq_beam, beam b            2 n_out n_in^2 (starting R H) + n_grp M K (2 g^2 + 2 g) (q)
 *                               + n_out P b 2 K g (scoring: g FMAs per candidate)
 *                               + n_out b n_in (n_in - g) (each of the b survivors' rH absorbs
 *                               the weight change of every group once, on the columns right
 *                               of that group: sum_j 2 g (n_in - (j + 1) g) = n_in (n_in - g))
 *                               The same count for both variants: the eager baseline does M
 *                               rank-g updates per group (M times that last term) and the
 *                               blocked kernel some extra inside its column blocks; neither
 *                               extra is counted.
 *    kmeans_assign              2 n K g
 */
#include "kernels/kernels.h"
#ifdef LMP_BENCH_EAGER
#include "bench/aq_beam_eager.h" /* defines: lmp_aq_beam_eager_avx512 (baseline) */
#endif
#include "worker/aq.h"

#include "kernels/dtype.h" /* defines: enum lmp_dtype, lmp_dtype_block */

#include <cblas.h>
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

static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t rs = 88172645463325252ull;
static float    frand(void) {
       rs ^= rs << 13;
       rs ^= rs >> 7;
       rs ^= rs << 17;
       return (float)((double)(rs >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

struct layer {
    int64_t n_out, n_in;
    float  *w, *h;
};

static int make_layer(struct layer *L, int64_t n_out, int64_t n_in) {
    const int64_t n_tok = 2048;
    L->n_out            = n_out;
    L->n_in             = n_in;
    L->w                = malloc((size_t)(n_out * n_in) * sizeof(float));
    L->h                = malloc((size_t)(n_in * n_in) * sizeof(float));
    float  *x           = malloc((size_t)(n_tok * n_in) * sizeof(float));
    double *hd          = calloc((size_t)(n_in * n_in), sizeof(double));
    if (!L->w || !L->h || !x || !hd) return -1;
    for (int64_t i = 0; i < n_out * n_in; i++)
        L->w[i] = 0.02f * (frand() + frand() + frand() + frand());
    for (int64_t t = 0; t < n_tok; t++) {
        float prev = 0.0f;
        for (int64_t i = 0; i < n_in; i++) {
            float v = frand() * (1.0f + (float)(i % 7)) + 0.6f * prev; /* uneven, correlated */
            x[t * n_in + i] = v;
            prev            = v;
        }
    }
    lmp_kernels_get()->gram_acc(hd, x, n_tok, n_in);
    for (int64_t i = 0; i < n_in * n_in; i++) L->h[i] = (float)(hd[i] / (double)n_tok);
    free(x);
    free(hd);
    return 0;
}

static void free_layer(struct layer *L) {
    free(L->w);
    free(L->h);
}

/* Rates of one measured region: GFLOP per wall second and per CPU second (all threads);
 * on a shared machine the second is the one that does not depend on other load. */
struct rate {
    double wall, cpu;
};

static struct rate rate_of(double flops, double wall_s, double cpu_s_) {
    return (struct rate){flops / wall_s * 1e-9, flops / cpu_s_ * 1e-9};
}

/* Useful flops of one beam-search call (see the header). */
static double beam_flops(int64_t n_out, int64_t n_in, int64_t M, int64_t K, int64_t g, int b) {
    const int64_t n_grp = n_in / g, P = n_grp * M;
    return 2.0 * n_out * n_in * n_in + (double)n_grp * M * K * (2.0 * g * g + 2.0 * g) +
           (double)n_out * P * b * 2.0 * K * g + (double)n_out * b * n_in * (double)(n_in - g);
}

/* Baseline beam kernel timed next to the table's (the previous, eager-update variant). */
#ifdef LMP_BENCH_EAGER
static lmp_aq_beam_fn *g_base = lmp_aq_beam_eager_avx512;
#else
static lmp_aq_beam_fn *g_base = NULL;
#endif

static double      g_peak  = 450.0; /* nominal fp32 GFLOP/s of the cores used */
static int         g_cores = 2;
static struct rate g_gemm;

static void report(const char *shape, const char *kernel, double flops, double wall, double cpu) {
    struct rate r         = rate_of(flops, wall, cpu);
    double      core_peak = g_peak / g_cores;
    printf("%-10s %-22s %9.2f %8.1f %6.0f%% %8.1f %6.0f%% %7.2f\n", shape, kernel, 1e3 * wall,
           r.wall, 100 * r.wall / g_peak, r.cpu, 100 * r.cpu / core_peak, r.cpu / g_gemm.cpu);
}

static struct rate bench_sgemm(int64_t m, int64_t n, int64_t k, int reps) {
    float *a = malloc((size_t)(m * k) * sizeof(float)),
          *b = malloc((size_t)(k * n) * sizeof(float));
    float *c = malloc((size_t)(m * n) * sizeof(float));
    for (int64_t i = 0; i < m * k; i++) a[i] = frand();
    for (int64_t i = 0; i < k * n; i++) b[i] = frand();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)m, (blasint)n, (blasint)k, 1.0f,
                a, (blasint)k, b, (blasint)n, 0.0f, c, (blasint)n); /* warm-up */
    double t0 = now_s(), c0 = cpu_s();
    for (int r = 0; r < reps; r++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)m, (blasint)n, (blasint)k,
                    1.0f, a, (blasint)k, b, (blasint)n, 0.0f, c, (blasint)n);
    double t = now_s() - t0, ct = cpu_s() - c0;
    free(a);
    free(b);
    free(c);
    return rate_of(2.0 * m * n * k * reps, t, ct);
}

/* The table's sgemm against cblas_sgemm called directly, same arguments, alternating
 * calls; minimum time of each over `rounds` rounds of `reps` calls. Prints the ratio
 * table / direct (1.00: routing through the table costs nothing). */
static void bench_gemm_routing(const struct lmp_kernels *kt, int64_t m, int64_t n, int64_t k,
                               int reps, int rounds) {
    float *a = malloc((size_t)(m * k) * sizeof(float)),
          *b = malloc((size_t)(k * n) * sizeof(float));
    float *c = malloc((size_t)(m * n) * sizeof(float));
    for (int64_t i = 0; i < m * k; i++) a[i] = frand();
    for (int64_t i = 0; i < k * n; i++) b[i] = frand();
    double best[2] = {1e30, 1e30};
    for (int r = 0; r < rounds; r++)
        for (int v = 0; v < 2; v++) {
            double t0 = now_s();
            for (int i = 0; i < reps; i++) {
                if (v == 0)
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)m, (blasint)n,
                                (blasint)k, 1.0f, a, (blasint)k, b, (blasint)k, 0.0f, c,
                                (blasint)n);
                else
                    kt->sgemm(LMP_NO_TRANS, LMP_TRANS, m, n, k, 1.0f, a, k, b, k, 0.0f, c, n);
            }
            double t = (now_s() - t0) / reps;
            if (t < best[v]) best[v] = t;
        }
    printf("sgemm %4lldx%4lldx%4lld (N,T)  direct cblas %10.3f us  table '%s' %10.3f us  "
           "table/direct %.3f\n",
           (long long)m, (long long)n, (long long)k, 1e6 * best[0], kt->name, 1e6 * best[1],
           best[1] / best[0]);
    free(a);
    free(b);
    free(c);
}

/* ---- --tables: the same call on each kernel table, alternating ------------------------- */

/* Inputs of every slot timed (one set, shared by the tables; outputs written per call). */
struct tab_in {
    struct lmp_aq_shape s, sb; /* aq_grad / aq_decode / aq_matvec shape; the beam's (fewer rows) */
    float              *w, *h, *cb, *scale, *wd, *x, *y, *gcb, *gsc, *pts, *cent, *gx;
    uint16_t           *codes, *c2;
    int32_t            *assign;
    double             *hd;
    uint8_t            *dq;
    float              *dq_out;
    int64_t             n_pts, K_km, n_tok, n_gram, dn;
    int                 dtype, beam;
};

enum tab_op { T_DEQUANT, T_GRAM, T_KM_ASSIGN, T_KM_UPDATE, T_DECODE, T_GRAD, T_BEAM, T_MATVEC };

static void tab_call(const struct lmp_kernels *k, enum tab_op op, struct tab_in *in) {
    double L;
    switch (op) {
    case T_DEQUANT: { /* a dn x dn tensor row by row (lmp_tensor_rows_f32) */
        const int64_t rb = in->dn / lmp_dtype_block(in->dtype) * lmp_dtype_block_bytes(in->dtype);
        for (int64_t r = 0; r < in->dn; r++)
            k->dequant_row(in->dtype, in->dq + r * rb, in->dq_out + r * in->dn, in->dn);
        break;
    }
    case T_GRAM:
        k->gram_acc(in->hd, in->gx, in->n_tok, in->n_gram);
        break;
    case T_KM_ASSIGN:
        k->kmeans_assign(in->assign, NULL, in->pts, in->n_pts, in->cent, in->K_km, 8);
        break;
    case T_KM_UPDATE:
        k->kmeans_update(in->cent, in->pts, NULL, in->assign, in->n_pts, in->K_km, 8);
        break;
    case T_DECODE:
        k->aq_decode(in->wd, in->codes, in->cb, in->scale, &in->s);
        break;
    case T_GRAD:
        k->aq_grad(&L, in->gcb, in->gsc, in->codes, in->w, in->scale, in->cb, in->h, &in->s);
        break;
    case T_BEAM: /* from the same starting codes every call */
        memcpy(in->c2, in->codes,
               (size_t)(in->sb.n_out * in->sb.n_in / in->sb.g * in->sb.M) * sizeof(uint16_t));
        k->aq_beam(in->c2, NULL, in->w, in->scale, in->cb, in->h, &in->sb, in->beam, NULL);
        break;
    case T_MATVEC:
        k->aq_matvec(in->y, in->x, 1, in->codes, in->cb, in->scale, &in->s);
        break;
    }
}

/* Seconds per call of op on each of the nt tables: a warm-up call each, then `rounds`
 * rounds in which every table runs n_t calls in turn (n_t: 20 ms worth, from the warm-up);
 * the minimum over rounds. */
static void tab_time(double *t, const struct lmp_kernels *tabs, int nt, enum tab_op op,
                     struct tab_in *in, int rounds) {
    int n[8];
    for (int v = 0; v < nt; v++) {
        double t0 = now_s();
        tab_call(&tabs[v], op, in);
        double w = now_s() - t0;
        n[v]     = w >= 0.02 ? 1 : (int)(0.02 / (w > 1e-7 ? w : 1e-7)) + 1;
        t[v]     = 1e30;
    }
    for (int r = 0; r < rounds; r++)
        for (int v = 0; v < nt; v++) {
            double t0 = now_s();
            for (int i = 0; i < n[v]; i++) tab_call(&tabs[v], op, in);
            double w = (now_s() - t0) / n[v];
            if (w < t[v]) t[v] = w;
        }
}

static uint32_t urand(void) {
    frand(); /* advances rs */
    return (uint32_t)(rs >> 32);
}

static float *tab_buf(int64_t n) {
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (p)
        for (int64_t i = 0; i < n; i++) p[i] = frand();
    return p;
}

static int bench_tables(const char *list, const struct lmp_aq_scheme *sc, int beam, int rounds) {
    struct lmp_kernels tabs[8];
    const char        *names[8];
    int                nt = 0;
    char               buf[128];
    snprintf(buf, sizeof(buf), "%s", list);
    for (char *tok = strtok(buf, ","); tok && nt < 8; tok = strtok(NULL, ","))
        if (lmp_kernels_init_named(&tabs[nt], tok))
            names[nt] = tabs[nt].name, nt++;
        else
            printf("table '%s': not run by this CPU, left out\n", tok);
    if (nt == 0) return 2;
    struct tab_in in = {0};
    struct layer  L;
    const int64_t n_out = 576, n_in = 576, n_beam = 64;
    if (make_layer(&L, n_out, n_in) != 0) return 1;
    in.s            = (struct lmp_aq_shape){n_out, n_in, sc->M, sc->K, sc->g};
    in.sb           = (struct lmp_aq_shape){n_beam, n_in, sc->M, sc->K, sc->g};
    in.beam         = beam;
    in.w            = L.w;
    in.h            = L.h;
    const int64_t P = n_in / sc->g * sc->M, n_cb = (int64_t)sc->M * sc->K * sc->g;
    in.cb     = tab_buf(n_cb);
    in.scale  = tab_buf(n_out);
    in.codes  = malloc((size_t)(n_out * P) * sizeof(uint16_t));
    in.c2     = malloc((size_t)(n_out * P) * sizeof(uint16_t));
    in.wd     = tab_buf(n_out * n_in);
    in.x      = tab_buf(n_in);
    in.y      = tab_buf(n_out);
    in.gcb    = tab_buf(n_cb);
    in.gsc    = tab_buf(n_out);
    in.n_pts  = 20000;
    in.K_km   = 256;
    in.pts    = tab_buf(in.n_pts * 8);
    in.cent   = tab_buf(in.K_km * 8);
    in.assign = malloc((size_t)in.n_pts * sizeof(int32_t));
    in.n_tok  = 1024;
    in.n_gram = 576;
    in.gx     = tab_buf(in.n_tok * in.n_gram);
    in.hd     = calloc((size_t)(in.n_gram * in.n_gram), sizeof(double));
    in.dn     = 2048;
    in.dq     = malloc((size_t)(in.dn * in.dn * 2)); /* F16: the widest row timed */
    in.dq_out = tab_buf(in.dn * in.dn);
    if (!in.cb || !in.scale || !in.codes || !in.c2 || !in.wd || !in.x || !in.y || !in.gcb ||
        !in.gsc || !in.pts || !in.cent || !in.assign || !in.gx || !in.hd || !in.dq || !in.dq_out)
        return 1;
    for (int64_t i = 0; i < n_cb; i++) in.cb[i] *= 0.02f;
    for (int64_t o = 0; o < n_out; o++) in.scale[o] = 0.5f + fabsf(in.scale[o]);
    for (int64_t i = 0; i < n_out * P; i++) in.codes[i] = (uint16_t)(urand() % (uint32_t)sc->K);
    for (int64_t i = 0; i < in.n_pts; i++) in.assign[i] = (int32_t)(i % in.K_km);
    /* bytes masked to 0x3f: every f16 scale finite (as test_kernels --mode perf) */
    for (int64_t i = 0; i < in.dn * in.dn * 2; i++) in.dq[i] = (uint8_t)(urand() & 0x3f);
    printf("per-slot time of each table, same run (tables alternating, minimum of %d rounds)\n",
           rounds);
    printf("%-34s", "slot (shape)");
    for (int v = 0; v < nt; v++) printf(" %9s ms", names[v]);
    if (nt >= 2) printf("  %s/%s", names[0], names[1]);
    if (nt >= 3) printf("  %s/%s  %s/%s", names[0], names[nt - 1], names[1], names[nt - 1]);
    printf("\n");
    static const int dqt[]  = {LMP_DTYPE_F16,  LMP_DTYPE_Q8_0, LMP_DTYPE_Q4_0,
                               LMP_DTYPE_Q4_K, LMP_DTYPE_Q5_K, LMP_DTYPE_Q6_K};
    const int        n_rows = (int)(sizeof(dqt) / sizeof(dqt[0])) + 7;
    for (int row = 0; row < n_rows; row++) {
        char        what[64];
        enum tab_op op;
        if (row < (int)(sizeof(dqt) / sizeof(dqt[0]))) {
            op       = T_DEQUANT;
            in.dtype = dqt[row];
            snprintf(what, sizeof(what), "dequant_row %s (2048 x 2048)", lmp_dtype_name(in.dtype));
        } else {
            static const enum tab_op ops[]   = {T_GRAM, T_KM_ASSIGN, T_KM_UPDATE, T_DECODE,
                                                T_GRAD, T_BEAM,      T_MATVEC};
            static const char *const what7[] = {"gram_acc (1024 x 576)",
                                                "kmeans_assign (20000, K 256, g 8)",
                                                "kmeans_update (20000, K 256, g 8)",
                                                "aq_decode (576 x 576)",
                                                "aq_grad (576 x 576)",
                                                "aq_beam (64 x 576, beam %d)",
                                                "aq_matvec (576 x 576, batch 1)"};
            const int                i       = row - (int)(sizeof(dqt) / sizeof(dqt[0]));
            op                               = ops[i];
            snprintf(what, sizeof(what), what7[i], beam);
        }
        double t[8];
        tab_time(t, tabs, nt, op, &in, rounds);
        printf("%-34s", what);
        for (int v = 0; v < nt; v++) printf(" %12.3f", 1e3 * t[v]);
        if (nt >= 2) printf("  %9.2f", t[0] / t[1]);
        if (nt >= 3) printf("  %9.2f  %9.2f", t[0] / t[nt - 1], t[1] / t[nt - 1]);
        printf("\n");
        fflush(stdout);
    }
    printf("(ratios are time / time: above 1 the second table is faster)\n");
    free_layer(&L);
    free(in.cb);
    free(in.scale);
    free(in.codes);
    free(in.c2);
    free(in.wd);
    free(in.x);
    free(in.y);
    free(in.gcb);
    free(in.gsc);
    free(in.pts);
    free(in.cent);
    free(in.assign);
    free(in.gx);
    free(in.hd);
    free(in.dq);
    free(in.dq_out);
    return 0;
}

int main(int argc, char **argv) {
    const char *scheme   = "2x8g8";
    int         beam_big = 8, reps = 3, mode = 1; /* 0 kernels only, 1 + one layer, 2 + model */
    int         layer_eager = 0, kern_eager = 1;
    const char *tables = NULL; /* --tables: the per-slot table comparison only */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--peak") && i + 1 < argc)
            g_peak = atof(argv[++i]);
        else if (!strcmp(argv[i], "--scheme") && i + 1 < argc)
            scheme = argv[++i];
        else if (!strcmp(argv[i], "--cores") && i + 1 < argc)
            g_cores = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--beam") && i + 1 < argc)
            beam_big = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--layer"))
            mode = 1;
        else if (!strcmp(argv[i], "--model"))
            mode = 2;
        else if (!strcmp(argv[i], "--no-layer"))
            mode = 0;
        else if (!strcmp(argv[i], "--no-eager"))
            kern_eager = 0;
        else if (!strcmp(argv[i], "--layer-eager"))
            layer_eager = 1;
        else if (!strcmp(argv[i], "--gemm-only"))
            mode = -1;
        else if (!strcmp(argv[i], "--tables"))
            tables = i + 1 < argc && argv[i + 1][0] != '-' ? argv[++i] : "ref,avx2,avx512";
        else {
            fprintf(stderr,
                    "usage: bench_kernels [--peak GFLOPS] [--scheme MxBgG] [--beam B] [--reps N] "
                    "[--layer|--model|--no-layer|--gemm-only] [--no-eager] [--layer-eager] "
                    "[--tables [ref,avx2,avx512]]\n");
            return 2;
        }
    }
    struct lmp_aq_scheme sc;
    struct lmp_err       err = {0};
    if (lmp_aq_scheme_parse(&sc, scheme, &err) != LMP_OK) {
        fprintf(stderr, "bench_kernels: %s\n", err.msg);
        return 2;
    }
    if (tables) return bench_tables(tables, &sc, beam_big, reps);
    const struct lmp_kernels *kt = lmp_kernels_get();
    if (!lmp_cpu_has_avx512() || strcmp(kt->name, "avx512") != 0) g_base = NULL;
    printf("kernels '%s', scheme %s, nominal peak %.0f GFLOP/s on %d cores, load average %s",
           kt->name, scheme, g_peak, g_cores, "");
    FILE *la        = fopen("/proc/loadavg", "r");
    char  lbuf[128] = "?\n";
    if (la) {
        if (!fgets(lbuf, sizeof(lbuf), la)) strcpy(lbuf, "?\n");
        fclose(la);
    }
    printf("%s", lbuf);
    g_gemm = bench_sgemm(576, 1536, 1536, reps);
    printf("baseline OpenBLAS sgemm 576x1536x1536: %.1f GFLOP/s wall (%.0f%% of peak), %.1f GFLOP "
           "per CPU-second "
           "(%.0f%% of one core's peak)\n\n",
           g_gemm.wall, 100 * g_gemm.wall / g_peak, g_gemm.cpu,
           100 * g_gemm.cpu / (g_peak / g_cores));
    /* routing cost: the shapes of a linear layer, the lm head slice, an attention tile */
    bench_gemm_routing(kt, 512, 576, 576, 5, 5);
    bench_gemm_routing(kt, 64, 512, 64, 200, 5);
    bench_gemm_routing(kt, 8, 8, 8, 100000, 9);
    printf("\n");
    if (mode < 0) return 0;
    printf("%-10s %-22s %9s %8s %7s %8s %7s %7s\n", "shape", "kernel", "wall ms", "GF/s", "%peak",
           "GF/cpu-s", "%core", "/sgemm");
    static const int64_t shapes[][2] = {{576, 576}, {1536, 576}, {576, 1536}};
    for (int si = 0; si < 3; si++) {
        struct layer L;
        if (make_layer(&L, shapes[si][0], shapes[si][1]) != 0) {
            fprintf(stderr, "bench_kernels: out of memory\n");
            return 1;
        }
        const int64_t n_out = L.n_out, n_in = L.n_in, K = sc.K, g = sc.g, M = sc.M,
                      n_grp = n_in / g, P = n_grp * M;
        struct lmp_aq_shape s  = {n_out, n_in, sc.M, sc.K, sc.g};
        float              *cb = malloc((size_t)(M * K * g) * sizeof(float)),
              *scale           = malloc((size_t)n_out * sizeof(float));
        uint16_t *codes        = malloc((size_t)(n_out * P) * sizeof(uint16_t)),
                 *c2           = malloc((size_t)(n_out * P) * sizeof(uint16_t));
        float *gcb             = malloc((size_t)(M * K * g) * sizeof(float)),
              *gsc             = malloc((size_t)n_out * sizeof(float));
        lmp_aq_scales_from_rows(scale, L.w, n_out, n_in);
        double t0 = now_s(), c0 = cpu_s();
        if (lmp_aq_kmeans_init(cb, codes, L.w, scale, L.h, n_out, n_in, &sc, 10, 0, 1, &err) !=
            LMP_OK) {
            fprintf(stderr, "bench_kernels: %s\n", err.msg);
            return 1;
        }
        double t_km = now_s() - t0, c_km = cpu_s() - c0;
        char   name[32];
        snprintf(name, sizeof(name), "%lldx%lld", (long long)n_out, (long long)n_in);
        /* k-means init (10 Lloyd iterations on 64 K sampled groups, M codebooks, then all groups)
         */
        double S    = (double)(64 * K < n_out * n_grp ? 64 * K : n_out * n_grp);
        double f_km = M * (10.0 * 2 * S * K * g + 2.0 * n_out * n_grp * K * g);
        report(name, "kmeans init", f_km, t_km, c_km);
        double loss;
        kt->aq_grad(&loss, gcb, gsc, codes, L.w, scale, cb, L.h, &s); /* warm-up */
        t0 = now_s();
        c0 = cpu_s();
        for (int r = 0; r < reps; r++) kt->aq_grad(&loss, gcb, gsc, codes, L.w, scale, cb, L.h, &s);
        double t_gr = (now_s() - t0) / reps, c_gr = (cpu_s() - c0) / reps;
        double f_gr = 2.0 * n_out * n_in * n_in + 4.0 * n_out * n_in;
        report(name, "aq_grad", f_gr, t_gr, c_gr);
        int    beams[2] = {1, beam_big};
        double t_new[2] = {0, 0}, c_new[2] = {0, 0};
        for (int bi = 0; bi < 2; bi++)
            for (int var = 0; var < 1 + (kern_eager && g_base != NULL);
                 var++) { /* the table's, then the baseline */
                int             b  = beams[bi];
                lmp_aq_beam_fn *fn = var == 0 ? kt->aq_beam : g_base;
                memcpy(c2, codes, (size_t)(n_out * P) * sizeof(uint16_t));
                t0 = now_s();
                c0 = cpu_s();
                if (fn(c2, NULL, L.w, scale, cb, L.h, &s, b, NULL) != 0) {
                    fprintf(stderr, "bench_kernels: out of memory\n");
                    return 1;
                }
                double t_b = now_s() - t0, c_b = cpu_s() - c0;
                double f_b = beam_flops(n_out, n_in, M, K, g, b);
                char   kn[32];
                snprintf(kn, sizeof(kn), "aq_beam%s (beam %d)", var ? " eager" : "", b);
                report(name, kn, f_b, t_b, c_b);
                if (var == 0)
                    t_new[bi] = t_b, c_new[bi] = c_b;
                else
                    printf("%-10s %-22s %9s  eager/blocked: wall %.2fx, CPU %.2fx\n", name, "", "",
                           t_b / t_new[bi], c_b / c_new[bi]);
            }
        float *x = malloc((size_t)n_in * sizeof(float)), *y = malloc((size_t)n_out * sizeof(float));
        for (int64_t i = 0; i < n_in; i++) x[i] = frand();
        t0 = now_s();
        for (int r = 0; r < 20; r++) kt->aq_matvec(y, x, 1, codes, cb, scale, &s);
        double t_mv = (now_s() - t0) / 20;
        printf("%-10s %-22s %9.3f %8.1f  (equivalent dense GFLOP/s; %.2f GB/s of codes)\n", name,
               "aq_matvec (batch 1)", 1e3 * t_mv, 2.0 * n_out * n_in / t_mv * 1e-9,
               (double)n_out * P * 2 / t_mv * 1e-9);
        free(x);
        free(y);
        free(cb);
        free(scale);
        free(codes);
        free(c2);
        free(gcb);
        free(gsc);
        free_layer(&L);
    }
    if (mode == 0) return 0;

    struct lmp_aq_opts o;
    lmp_aq_opts_init(&o);
    o.beam                            = beam_big;
    static const int64_t mshapes[][3] = {/* n_out, n_in, count in SmolLM2-135M (30 blocks) */
                                         {576, 1536, 30},
                                         {576, 576, 60},
                                         {192, 576, 60},
                                         {1536, 576, 60}};
    int                  n_sh         = mode == 2 ? 4 : 1;
    double               total        = 0.0;
    if (o.cg_iters > 0)
        printf("\nquantize (beam %d, %d CG iterations + closed-form scales/round, tol %g):\n",
               o.beam, o.cg_iters, o.tol);
    else
        printf("\nquantize (beam %d, %d Adam steps/round, lr %g, tol %g):\n", o.beam, o.adam_steps,
               (double)o.lr, o.tol);
    printf("%-10s %8s %8s %8s %8s %8s %7s %6s %11s %11s %6s %8s\n", "layer", "total s", "init s",
           "update s", "beam s", "rounds", "steps", "bits", "rel err 0", "rel err", "count",
           "CPU s");
    if (layer_eager && g_base != NULL)
        printf("(rows ending in e: the same layer with the eager baseline beam kernel)\n");
    for (int si = 0; si < n_sh; si++) {
        struct layer L;
        if (make_layer(&L, mshapes[si][0], mshapes[si][1]) != 0) return 1;
        struct lmp_aq_stats st0  = {0};
        double              cpu0 = 0.0;
        for (int var = 0; var < 1 + (layer_eager && g_base != NULL); var++) {
            struct lmp_aq_layer q;
            struct lmp_aq_stats st;
            /* the baseline run swaps the table's beam slot between layers: single-threaded
             * here, no kernel running, restored right after */
            struct lmp_kernels *kw   = (struct lmp_kernels *)kt;
            lmp_aq_beam_fn     *keep = kw->aq_beam;
            if (var == 1) kw->aq_beam = g_base;
            double          c0 = cpu_s();
            enum lmp_status qs = lmp_aq_quantize(&q, &st, L.w, L.h, L.n_out, L.n_in, &sc, &o, &err);
            double          c  = cpu_s() - c0;
            kw->aq_beam        = keep;
            if (qs != LMP_OK) {
                fprintf(stderr, "bench_kernels: %s\n", err.msg);
                return 1;
            }
            char name[32];
            snprintf(name, sizeof(name), "%lldx%lld%s", (long long)L.n_out, (long long)L.n_in,
                     var ? "e" : "");
            printf("%-10s %8.2f %8.2f %8.2f %8.2f %8d %7lld %6.3f %11.5f %11.5f %6lld %8.2f\n",
                   name, st.seconds, st.seconds_init, st.seconds_adam, st.seconds_beam, st.n_rounds,
                   (long long)st.n_adam_steps, st.bits_per_weight, st.rel_err_init,
                   st.rel_err_final, (long long)mshapes[si][2], c);
            if (var == 0) {
                total += st.seconds * (double)mshapes[si][2];
                st0  = st;
                cpu0 = c;
            } else {
                printf("%-10s eager/blocked: beam s %.2fx, layer s %.2fx, layer CPU s %.2fx\n", "",
                       st.seconds_beam / st0.seconds_beam, st.seconds / st0.seconds, c / cpu0);
            }
            lmp_aq_layer_release(&q);
        }
        free_layer(&L);
    }
    if (mode == 2)
        printf("extrapolated SmolLM2-135M (210 linears, synthetic H): %.1f s = %.1f min (target 30 "
               "min)\n",
               total, total / 60.0);
    return 0;
}
