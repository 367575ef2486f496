/*  test_kernels - every slot of every kernel table against the reference table
 *
 *  Same seeded inputs go through lmp_kernels_init_ref() and each table the registry can
 *  build on this CPU (lmp_kernels_names(): blas, avx2 and avx512 where present; with
 *  LMP_KERNELS=NAME only that one); outputs are compared with a normalized error
 *  (nmse = sum (v - r)^2 / sum r^2) and a per-op tolerance; the first mismatches are
 *  printed with index, reference and variant values. Odd shapes first (scalar tails,
 *  fallbacks), then realistic ones. Discrete outputs are not compared bit for bit:
 *  k-means compares the distance to the chosen centroid, beam search the objective its
 *  codes achieve (variant <= ref (1+tol)). dequant_row must be bit-exact.
 *  sgemm: every transpose pair, alpha/beta (beta 0 must ignore NaN in C), leading
 *  dimensions wider than the matrices; nmse 1e-10 against the double-accumulating
 *  reference (fp32 accumulation over k <= 300 terms), and cells outside C untouched.
 *  Memory slots: alloc / copy / free round trip; the scratch arena: alignment, nesting,
 *  reuse, and per-thread arenas.
 *
 *  usage: test_kernels [--mode test|perf]     test (default): fast checks
 *                                              perf: time ref vs best on realistic shapes
 */
#include "kernels/kernels.h"
#include "tests/check.h" /* defines: CHECK, RUN, check_fill_random, check_report */
#include "model/model.h" /* defines: enum lmp_dtype */

#include <pthread.h>
#include <stdlib.h>
#include <time.h>

static struct lmp_kernels ref, best; /* best: the table under test */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t rng_state = 12345;
static uint64_t rng_next(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* Compare n values: nmse <= tol; print the first 5 elements off by more than sqrt(tol)*rms. */
static int compare_f(const char *what, const float *r, const float *v, int64_t n, double tol) {
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double e = (double)v[i] - r[i];
        num += e * e;
        den += (double)r[i] * r[i];
    }
    double nmse = den > 0 ? num / den : num;
    int    ok   = nmse <= tol && num == num;
    if (!ok) {
        double rms = sqrt(den / (n > 0 ? n : 1)), lim = sqrt(tol) * (rms > 0 ? rms : 1.0);
        fprintf(stderr, "  %s: nmse %.3g > tol %.3g\n", what, nmse, tol);
        for (int64_t i = 0, shown = 0; i < n && shown < 5; i++)
            if (!(fabs((double)v[i] - r[i]) <= lim)) {
                fprintf(stderr, "    [%lld] ref %.9g variant %.9g\n", (long long)i, r[i], v[i]);
                shown++;
            }
    }
    CHECK(ok);
    return ok;
}

static int compare_d(const char *what, const double *r, const double *v, int64_t n, double tol) {
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < n; i++) {
        num += (v[i] - r[i]) * (v[i] - r[i]);
        den += r[i] * r[i];
    }
    double nmse = den > 0 ? num / den : num;
    int    ok   = nmse <= tol && num == num;
    if (!ok) {
        fprintf(stderr, "  %s: nmse %.3g > tol %.3g\n", what, nmse, tol);
        for (int64_t i = 0, shown = 0; i < n && shown < 5; i++)
            if (v[i] != r[i]) {
                fprintf(stderr, "    [%lld] ref %.17g variant %.17g\n", (long long)i, r[i], v[i]);
                shown++;
            }
    }
    CHECK(ok);
    return ok;
}

static float *fbuf(int64_t n, uint64_t seed) {
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    check_fill_random(p, n, seed);
    return p;
}

/* ---- dequant_row: bit-exact for every dtype ------------------------------------ */

static uint16_t rand_finite_f16(void) {
    for (;;) {
        uint16_t hv = (uint16_t)rng_next();
        if (((hv >> 10) & 0x1f) != 0x1f) return hv;
    }
}

static void test_dequant_row(void) {
    static const struct {
        int         dtype;
        int64_t     n;
        int64_t     bytes_per_block;
        int64_t     block;
        const char *name;
    } cases[] = {
        {LMP_DTYPE_F32, 37, 4, 1, "F32"},     {LMP_DTYPE_F32, 4096, 4, 1, "F32"},
        {LMP_DTYPE_F16, 37, 2, 1, "F16"},     {LMP_DTYPE_F16, 4099, 2, 1, "F16"},
        {LMP_DTYPE_BF16, 37, 2, 1, "BF16"},   {LMP_DTYPE_BF16, 4099, 2, 1, "BF16"},
        {LMP_DTYPE_Q8_0, 32, 34, 32, "Q8_0"}, {LMP_DTYPE_Q8_0, 4096, 34, 32, "Q8_0"},
        {LMP_DTYPE_Q4_0, 32, 18, 32, "Q4_0"}, {LMP_DTYPE_Q4_0, 4096, 18, 32, "Q4_0"},
        {LMP_DTYPE_Q4_1, 32, 20, 32, "Q4_1"}, {LMP_DTYPE_Q4_1, 4096, 20, 32, "Q4_1"},
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        int64_t  n = cases[c].n, nb = n / cases[c].block, bytes = nb * cases[c].bytes_per_block;
        uint8_t *src = malloc((size_t)bytes);
        for (int64_t i = 0; i < bytes; i++) src[i] = (uint8_t)rng_next();
        if (cases[c].dtype == LMP_DTYPE_F32) /* finite floats: random bits can be NaN */
            for (int64_t i = 0; i < n; i++) {
                float f = (float)((double)(int32_t)rng_next() * 1e-6);
                memcpy(src + 4 * i, &f, 4);
            }
        if (cases[c].dtype >= LMP_DTYPE_Q8_0) /* finite f16 d (and m) fields */
            for (int64_t b = 0; b < nb; b++) {
                uint8_t *blk = src + b * cases[c].bytes_per_block;
                uint16_t d = rand_finite_f16(), m = rand_finite_f16();
                blk[0] = (uint8_t)d;
                blk[1] = (uint8_t)(d >> 8);
                if (cases[c].dtype == LMP_DTYPE_Q4_1) {
                    blk[2] = (uint8_t)m;
                    blk[3] = (uint8_t)(m >> 8);
                }
            }
        float *r = malloc((size_t)n * sizeof(float)), *v = malloc((size_t)n * sizeof(float));
        ref.dequant_row(cases[c].dtype, src, r, n);
        best.dequant_row(cases[c].dtype, src, v, n);
        int bad = 0;
        for (int64_t i = 0; i < n; i++) {
            if (isnan(r[i]) && isnan(v[i])) continue; /* NaN payloads may differ */
            if (memcmp(&r[i], &v[i], 4) != 0) {
                if (bad < 5)
                    fprintf(stderr, "  dequant_row %s n=%lld [%lld] ref %.9g variant %.9g\n",
                            cases[c].name, (long long)n, (long long)i, r[i], v[i]);
                bad++;
            }
        }
        CHECK(bad == 0);
        free(src);
        free(r);
        free(v);
    }
}

/* K-quants (and Q5_0/Q5_1): rows of random super-blocks whose f16 scales are set per block
 * to a random finite value, an extreme one (+-65504, the largest f16), a subnormal one, or
 * the whole block zero; an odd number of rows of 1, 3 and 11 blocks, plus rows of raw random
 * bytes (NaN and inf scales included). The variant must give the reference's bits. */
static void test_dequant_kquants(void) {
    static const struct {
        int         dtype;
        int         bytes, block; /* per block */
        int         d_at, m_at;   /* byte offsets of the f16 scale and min (-1: none) */
        const char *name;
    } types[] = {
        {LMP_DTYPE_Q5_0, 22, 32, 0, -1, "Q5_0"},     {LMP_DTYPE_Q5_1, 24, 32, 0, 2, "Q5_1"},
        {LMP_DTYPE_Q2_K, 84, 256, 80, 82, "Q2_K"},   {LMP_DTYPE_Q3_K, 110, 256, 108, -1, "Q3_K"},
        {LMP_DTYPE_Q4_K, 144, 256, 0, 2, "Q4_K"},    {LMP_DTYPE_Q5_K, 176, 256, 0, 2, "Q5_K"},
        {LMP_DTYPE_Q6_K, 210, 256, 208, -1, "Q6_K"},
    };
    static const uint16_t extreme[] = {0x7bff, 0xfbff, 0x0001, 0x83ff, 0x0400};
    /* the tests after this one draw the same numbers whether it runs or not */
    const uint64_t saved_rng = rng_state;
    for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
        CHECK(lmp_dtype_block(types[t].dtype) == types[t].block &&
              lmp_dtype_block_bytes(types[t].dtype) == types[t].bytes);
        for (int64_t blocks = 1; blocks <= 11; blocks += blocks < 3 ? 2 : 8)
            for (int raw = 0; raw < 2; raw++) {
                const int64_t rows = 5, n = blocks * 256, nb = n / types[t].block;
                const int64_t row_bytes = nb * types[t].bytes;
                uint8_t      *src       = malloc((size_t)(rows * row_bytes));
                for (int64_t i = 0; i < rows * row_bytes; i++) src[i] = (uint8_t)rng_next();
                for (int64_t b = 0; b < rows * nb && !raw; b++) {
                    uint8_t *blk = src + b * types[t].bytes;
                    uint16_t d = rand_finite_f16(), m = rand_finite_f16();
                    if (b % 4 == 1) d = extreme[b % 5], m = extreme[(b + 1) % 5];
                    if (b % 4 == 3) {
                        memset(blk, 0, (size_t)types[t].bytes);
                        continue;
                    }
                    blk[types[t].d_at] = (uint8_t)d, blk[types[t].d_at + 1] = (uint8_t)(d >> 8);
                    if (types[t].m_at >= 0)
                        blk[types[t].m_at] = (uint8_t)m, blk[types[t].m_at + 1] = (uint8_t)(m >> 8);
                }
                float *r = malloc((size_t)n * sizeof(float)),
                      *v = malloc((size_t)n * sizeof(float));
                int bad  = 0;
                for (int64_t row = 0; row < rows; row++) {
                    ref.dequant_row(types[t].dtype, src + row * row_bytes, r, n);
                    best.dequant_row(types[t].dtype, src + row * row_bytes, v, n);
                    for (int64_t i = 0; i < n; i++) {
                        if (isnan(r[i]) && isnan(v[i])) continue;
                        if (memcmp(&r[i], &v[i], 4) != 0 || (!raw && !isfinite(r[i]))) {
                            if (bad < 5)
                                fprintf(stderr,
                                        "  dequant_row %s n=%lld row %lld [%lld] ref %.9g "
                                        "variant %.9g\n",
                                        types[t].name, (long long)n, (long long)row, (long long)i,
                                        r[i], v[i]);
                            bad++;
                        }
                    }
                }
                CHECK(bad == 0);
                free(src);
                free(r);
                free(v);
            }
    }
    rng_state = saved_rng;
}

/* ---- gram_acc ------------------------------------------------------------------- */

static void test_gram_acc(void) {
    static const int64_t shapes[][2] = {{7, 5}, {300, 33}, {513, 96}, {1, 1}};
    for (size_t c = 0; c < sizeof(shapes) / sizeof(shapes[0]); c++) {
        int64_t n_tok = shapes[c][0], n_in = shapes[c][1];
        float  *x  = fbuf(n_tok * n_in, 10 + c);
        double *hr = malloc((size_t)(n_in * n_in) * sizeof(double));
        double *hv = malloc((size_t)(n_in * n_in) * sizeof(double));
        for (int64_t a = 0; a < n_in; a++) /* symmetric non-zero start: it accumulates */
            for (int64_t b = 0; b <= a; b++)
                hr[a * n_in + b] = hr[b * n_in + a] = (double)(a + 2 * b) * 0.25;
        memcpy(hv, hr, (size_t)(n_in * n_in) * sizeof(double));
        ref.gram_acc(hr, x, n_tok, n_in);
        best.gram_acc(hv, x, n_tok, n_in);
        compare_d("gram_acc", hr, hv, n_in * n_in, 1e-24);
        free(x);
        free(hr);
        free(hv);
    }
}

/* ---- kmeans --------------------------------------------------------------------- */

static double dist_exact(const float *p, const float *c, int g) {
    double d = 0.0;
    for (int t = 0; t < g; t++) d += ((double)p[t] - c[t]) * ((double)p[t] - c[t]);
    return d;
}

static void test_kmeans(void) {
    static const int64_t shapes[][3] = {{37, 5, 3}, {200, 20, 8}, {333, 48, 4}, {5000, 256, 8}};
    for (size_t c = 0; c < sizeof(shapes) / sizeof(shapes[0]); c++) {
        int64_t n = shapes[c][0], K = shapes[c][1];
        int     g   = (int)shapes[c][2];
        float  *pts = fbuf(n * g, 20 + c), *cent = fbuf(K * g, 30 + c), *wts = fbuf(n, 40 + c);
        for (int64_t i = 0; i < n; i++) wts[i] = fabsf(wts[i]);
        int32_t *ar = malloc((size_t)n * sizeof(int32_t)),
                *av = malloc((size_t)n * sizeof(int32_t));
        float *dr = malloc((size_t)n * sizeof(float)), *dv = malloc((size_t)n * sizeof(float));
        ref.kmeans_assign(ar, dr, pts, n, cent, K, g);
        best.kmeans_assign(av, dv, pts, n, cent, K, g);
        int bad = 0;
        for (int64_t i = 0; i < n; i++) {
            double er = dist_exact(pts + i * g, cent + ar[i] * g, g),
                   ev = dist_exact(pts + i * g, cent + av[i] * g, g);
            if (av[i] < 0 || av[i] >= K || ev > er * (1 + 1e-5) + 1e-6) {
                if (bad++ < 5)
                    fprintf(stderr, "  kmeans_assign [%lld] ref k=%d d=%.9g variant k=%d d=%.9g\n",
                            (long long)i, ar[i], er, av[i], ev);
            }
        }
        CHECK(bad == 0);
        compare_f("kmeans_assign dist2", dr, dv, n, 1e-10);
        for (int wi = 0; wi < 2; wi++) { /* update, without then with weights */
            float *cr = malloc((size_t)(K * g) * sizeof(float)),
                  *cv = malloc((size_t)(K * g) * sizeof(float));
            memcpy(cr, cent, (size_t)(K * g) * sizeof(float));
            memcpy(cv, cent, (size_t)(K * g) * sizeof(float));
            ref.kmeans_update(cr, pts, wi ? wts : NULL, ar, n, K, g);
            best.kmeans_update(cv, pts, wi ? wts : NULL, ar, n, K, g);
            compare_f("kmeans_update", cr, cv, K * g, 1e-12);
            free(cr);
            free(cv);
        }
        free(pts);
        free(cent);
        free(wts);
        free(ar);
        free(av);
        free(dr);
        free(dv);
    }
}

/* ---- AQ ops: shared fixture ----------------------------------------------------- */

struct aq_case {
    int64_t n_out, n_in;
    int     M, K, g;
};
static const struct aq_case aq_cases[] = {
    {3, 24, 2, 16, 8},                          /* odd and tiny */
    {5, 12, 3, 4, 4},                           /* K < 16: the beam search and matvec fall back */
    {7, 40, 1, 32, 8},                          /* P = 5 positions: scalar tails */
    {6, 48, 1, 64, 16},   {16, 136, 2, 256, 8}, /* n_in not a multiple of 32 */
    {24, 576, 2, 256, 8},                       /* SmolLM2 width, 2x8g8 */
    {19, 96, 2, 32, 16}, /* g = 16 path, row blocks of the beam search left partial */
    {40, 200, 2, 32, 8}, /* beam search: several row blocks per thread, column blocks with a partial
                            last */
    {24, 576, 2, 256, 4}, /* SmolLM2 width, 2x8g4: masked 8-lane steps */
    {11, 90, 3, 32, 6},   /* g = 6: a partial column block, odd rows */
};
enum { N_AQ_CASES = sizeof(aq_cases) / sizeof(aq_cases[0]) };

struct aq_fix {
    struct lmp_aq_shape s;
    float              *w, *cb, *scale, *h;
    uint16_t           *codes;
};

static void aq_fix_init(struct aq_fix *f, const struct aq_case *c, uint64_t seed) {
    f->s         = (struct lmp_aq_shape){c->n_out, c->n_in, c->M, c->K, c->g};
    int64_t n_in = c->n_in, P = n_in / c->g * c->M, n_tok = n_in + 17;
    f->w  = fbuf(c->n_out * n_in, seed);
    f->cb = fbuf((int64_t)c->M * c->K * c->g, seed + 1);
    for (int64_t i = 0; i < (int64_t)c->M * c->K * c->g; i++) f->cb[i] *= 0.5f;
    f->scale = fbuf(c->n_out, seed + 2);
    for (int64_t o = 0; o < c->n_out; o++) f->scale[o] = 0.5f + fabsf(f->scale[o]);
    f->codes = malloc((size_t)(c->n_out * P) * sizeof(uint16_t));
    for (int64_t i = 0; i < c->n_out * P; i++)
        f->codes[i] = (uint16_t)(rng_next() % (uint64_t)c->K);
    float *x = fbuf(n_tok * n_in, seed + 3); /* H = X^T X / n_tok: SPD, correlated */
    for (int64_t t = 0; t < n_tok; t++)
        for (int64_t i = 1; i < n_in; i++) x[t * n_in + i] += 0.5f * x[t * n_in + i - 1];
    double *hd = calloc((size_t)(n_in * n_in), sizeof(double));
    lmp_gram_acc_ref(hd, x, n_tok, n_in);
    f->h = malloc((size_t)(n_in * n_in) * sizeof(float));
    for (int64_t i = 0; i < n_in * n_in; i++) f->h[i] = (float)(hd[i] / (double)n_tok);
    free(hd);
    free(x);
}

static void aq_fix_free(struct aq_fix *f) {
    free(f->w);
    free(f->cb);
    free(f->scale);
    free(f->h);
    free(f->codes);
}

/* Exact objective sum_o r H r^T of the given codes (double). */
static double aq_objective(const struct aq_fix *f, const uint16_t *codes) {
    const int64_t n_out = f->s.n_out, n_in = f->s.n_in;
    float        *wh = malloc((size_t)(n_out * n_in) * sizeof(float));
    double       *r  = malloc((size_t)n_in * sizeof(double));
    lmp_aq_decode_ref(wh, codes, f->cb, f->scale, &f->s);
    double L = 0.0;
    for (int64_t o = 0; o < n_out; o++) {
        for (int64_t i = 0; i < n_in; i++) r[i] = (double)f->w[o * n_in + i] - wh[o * n_in + i];
        for (int64_t a = 0; a < n_in; a++) {
            double acc = 0.0;
            for (int64_t b = 0; b < n_in; b++) acc += (double)f->h[a * n_in + b] * r[b];
            L += r[a] * acc;
        }
    }
    free(wh);
    free(r);
    return L;
}

static void test_aq_decode_matvec(void) {
    for (int c = 0; c < N_AQ_CASES; c++) {
        struct aq_fix f;
        aq_fix_init(&f, &aq_cases[c], 100 + c);
        int64_t n_out = f.s.n_out, n_in = f.s.n_in, nb = 3;
        float  *wr = malloc((size_t)(n_out * n_in) * sizeof(float)),
              *wv  = malloc((size_t)(n_out * n_in) * sizeof(float));
        ref.aq_decode(wr, f.codes, f.cb, f.scale, &f.s);
        best.aq_decode(wv, f.codes, f.cb, f.scale, &f.s);
        compare_f("aq_decode", wr, wv, n_out * n_in, 1e-12);
        float *x  = fbuf(nb * n_in, 200 + c);
        float *yr = malloc((size_t)(nb * n_out) * sizeof(float)),
              *yv = malloc((size_t)(nb * n_out) * sizeof(float));
        CHECK(ref.aq_matvec(yr, x, nb, f.codes, f.cb, f.scale, &f.s) == 0);
        CHECK(best.aq_matvec(yv, x, nb, f.codes, f.cb, f.scale, &f.s) == 0);
        compare_f("aq_matvec", yr, yv, nb * n_out, 1e-10);
        free(wr);
        free(wv);
        free(x);
        free(yr);
        free(yv);
        aq_fix_free(&f);
    }
}

/* aq_matvec on every path of the variants (kernels/cpu/aq_matvec_cpu.h): lookup tables
 * (Kx8, batch <= 8), decode-dot (1x16 up to batch 15, K not a multiple of the vector
 * width), decoded tiles + sgemm (Kx8 from batch 9, 1x16 from 16); odd shapes (a partial last chunk
 * of 16 groups, g 4/6/16, K not a multiple of the vector width) and both codebook sizes, 2x8 and
 * 1x16. */
static void test_aq_matvec_paths(void) {
    static const struct aq_case cases[] = {
        {3, 24, 2, 256, 8},    {37, 136, 2, 256, 8}, /* 17 groups: a chunk of 1 */
        {24, 576, 2, 256, 8},  {70, 1536, 2, 256, 8}, {33, 576, 2, 256, 4},
        {11, 90, 3, 32, 6},    {5, 12, 3, 4, 4},      {9, 48, 1, 256, 16},
        {13, 40, 1, 65536, 8}, {20, 96, 1, 65536, 8}, {7, 64, 2, 65536, 16},
    };
    static const int64_t batches[] = {1, 2, 5, 8, 9, 16, 33};
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        const struct aq_case *k = &cases[c];
        struct lmp_aq_shape   s = {k->n_out, k->n_in, k->M, k->K, k->g};
        int64_t               P = k->n_in / k->g * k->M, n_cb = (int64_t)k->M * k->K * k->g;
        float                *cb = fbuf(n_cb, 500 + c), *scale = fbuf(k->n_out, 600 + c);
        uint16_t             *codes = malloc((size_t)(k->n_out * P) * sizeof(uint16_t));
        for (int64_t i = 0; i < k->n_out * P; i++)
            codes[i] = (uint16_t)(rng_next() % (uint64_t)k->K);
        for (int64_t o = 0; o < k->n_out; o++) scale[o] = 0.5f + fabsf(scale[o]);
        for (size_t bi = 0; bi < sizeof(batches) / sizeof(batches[0]); bi++) {
            int64_t nb = batches[bi];
            float  *x  = fbuf(nb * k->n_in, 700 + c * 10 + bi);
            float  *yr = malloc((size_t)(nb * k->n_out) * sizeof(float)),
                  *yv  = malloc((size_t)(nb * k->n_out) * sizeof(float));
            CHECK(ref.aq_matvec(yr, x, nb, codes, cb, scale, &s) == 0);
            CHECK(best.aq_matvec(yv, x, nb, codes, cb, scale, &s) == 0);
            char what[96];
            snprintf(what, sizeof(what), "aq_matvec %lldx%lld %dx%d g%d batch %lld",
                     (long long)k->n_out, (long long)k->n_in, k->M, k->K, k->g, (long long)nb);
            CHECK(compare_f(what, yr, yv, nb * k->n_out, 1e-10));
            /* the decoded weights agree too: y == x W^T with W from aq_decode */
            if (bi == 0) {
                float *w = malloc((size_t)(k->n_out * k->n_in) * sizeof(float));
                ref.aq_decode(w, codes, cb, scale, &s);
                for (int64_t o = 0; o < k->n_out; o++) {
                    double d = 0;
                    for (int64_t i = 0; i < k->n_in; i++) d += (double)w[o * k->n_in + i] * x[i];
                    yr[o] = (float)d;
                }
                CHECK(compare_f("aq_matvec vs decode", yr, yv, k->n_out, 1e-10));
                free(w);
            }
            free(x);
            free(yr);
            free(yv);
        }
        free(cb);
        free(scale);
        free(codes);
    }
}

/* aq_matvec_pk (24-bit integer tables on packed codes): lmp_aq_pack keeps every code
 * (lmp_aq_packed_code), the reference's integer tables agree with the fp32 tables of
 * aq_matvec's reference (nmse <= 1e-11; 1e-14 to 3e-13 measured, the larger with an input
 * 40 times the others, which sets its chunk's scale), and a table's variant
 * equals the reference (the same integer entries and sums: nmse <= 1e-12) on odd
 * shapes (rows not a multiple of 64, an odd number of positions, a partial chunk, g 4 to
 * 16, K 4 to 256, M 1 to 3), at batch 1 to 8, and several layers in one call. */
static void test_aq_matvec_pk(void) {
    static const struct aq_case cases[] = {
        {3, 24, 2, 256, 8},    {37, 136, 2, 256, 8},  {64, 576, 2, 256, 8}, {200, 1536, 2, 256, 8},
        {33, 576, 2, 256, 4},  {11, 90, 3, 32, 6},    {5, 12, 3, 4, 4},     {9, 48, 1, 256, 16},
        {130, 200, 1, 128, 8}, {576, 576, 2, 256, 8},
    };
    static const int64_t batches[] = {1, 2, 5, 8};
    if (ref.aq_matvec_pk == NULL) return;
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        const struct aq_case *k = &cases[c];
        struct lmp_aq_shape   s = {k->n_out, k->n_in, k->M, k->K, k->g};
        int64_t               P = k->n_in / k->g * k->M, n_cb = (int64_t)k->M * k->K * k->g;
        float                *cb = fbuf(n_cb, 1500 + c), *scale = fbuf(k->n_out, 1600 + c);
        uint16_t             *codes = malloc((size_t)(k->n_out * P) * sizeof(uint16_t));
        for (int64_t i = 0; i < k->n_out * P; i++)
            codes[i] = (uint16_t)(rng_next() % (uint64_t)k->K);
        for (int64_t o = 0; o < k->n_out; o++) scale[o] = 0.5f + fabsf(scale[o]);
        struct lmp_aq_packed pk;
        CHECK(lmp_aq_pack(&pk, codes, cb, scale, &s) == 0);
        int bad = 0;
        for (int64_t o = 0; o < k->n_out; o++)
            for (int64_t p = 0; p < P; p++)
                bad += lmp_aq_packed_code(&pk, o, p) != codes[o * P + p];
        CHECK(bad == 0);
        for (size_t bi = 0; bi < sizeof(batches) / sizeof(batches[0]); bi++) {
            int64_t nb = batches[bi];
            float  *x  = fbuf(nb * k->n_in, 1700 + c * 10 + bi);
            if (c == 3) x[5] = 40.0f; /* an outlier: its chunk's scale */
            float *yf                        = malloc((size_t)(nb * k->n_out) * sizeof(float)),
                  *yr                        = malloc((size_t)(nb * k->n_out) * sizeof(float)),
                  *yv                        = malloc((size_t)(nb * k->n_out) * sizeof(float));
            const struct lmp_aq_packed *w[1] = {&pk};
            CHECK(ref.aq_matvec(yf, x, nb, codes, cb, scale, &s) == 0);
            CHECK(ref.aq_matvec_pk(1, &yr, x, nb, w) == 0);
            char what[96];
            snprintf(what, sizeof(what), "aq_matvec_pk ref vs fp32 %lldx%lld %dx%d g%d b%lld",
                     (long long)k->n_out, (long long)k->n_in, k->M, k->K, k->g, (long long)nb);
            CHECK(compare_f(what, yf, yr, nb * k->n_out, 1e-11));
            if (best.aq_matvec_pk) {
                CHECK(best.aq_matvec_pk(1, &yv, x, nb, w) == 0);
                snprintf(what, sizeof(what), "aq_matvec_pk %lldx%lld %dx%d g%d batch %lld",
                         (long long)k->n_out, (long long)k->n_in, k->M, k->K, k->g, (long long)nb);
                CHECK(compare_f(what, yr, yv, nb * k->n_out, 1e-12));
            }
            free(x);
            free(yf);
            free(yr);
            free(yv);
        }
        lmp_aq_packed_free(&pk);
        free(cb);
        free(scale);
        free(codes);
    }
    /* three layers sharing the input in one call (q, k, v), against one at a time */
    if (best.aq_matvec_pk == NULL) return;
    static const int64_t outs[3] = {576, 192, 70};
    struct lmp_aq_packed pk[3];
    float               *cbs[3], *scs[3], *y1[3], *y3[3];
    uint16_t            *cds[3];
    const int64_t        n_in = 576, P = n_in / 8 * 2;
    float               *x = fbuf(2 * n_in, 1800);
    for (int l = 0; l < 3; l++) {
        struct lmp_aq_shape s = {outs[l], n_in, 2, 256, 8};
        cbs[l]                = fbuf(2 * 256 * 8, 1810 + l);
        scs[l]                = fbuf(outs[l], 1820 + l);
        cds[l]                = malloc((size_t)(outs[l] * P) * sizeof(uint16_t));
        for (int64_t i = 0; i < outs[l] * P; i++) cds[l][i] = (uint16_t)(rng_next() % 256);
        CHECK(lmp_aq_pack(&pk[l], cds[l], cbs[l], scs[l], &s) == 0);
        y1[l]                             = malloc((size_t)(2 * outs[l]) * sizeof(float));
        y3[l]                             = malloc((size_t)(2 * outs[l]) * sizeof(float));
        const struct lmp_aq_packed *w1[1] = {&pk[l]};
        CHECK(best.aq_matvec_pk(1, &y1[l], x, 2, w1) == 0);
    }
    const struct lmp_aq_packed *w3[3] = {&pk[0], &pk[1], &pk[2]};
    CHECK(best.aq_matvec_pk(3, y3, x, 2, w3) == 0);
    for (int l = 0; l < 3; l++) {
        CHECK(memcmp(y1[l], y3[l], (size_t)(2 * outs[l]) * sizeof(float)) == 0);
        lmp_aq_packed_free(&pk[l]);
        free(cbs[l]);
        free(scs[l]);
        free(cds[l]);
        free(y1[l]);
        free(y3[l]);
    }
    free(x);
}

/* attn_row (one query token against a cache, a GQA group of query heads): the reference
 * against a double computation of softmax(scale q K^T) V, and each table's variant against
 * the reference (nmse <= 1e-10), with a key stride wider than a head (the cache's rows hold
 * every kv head), a window (k0 > 0), groups of 1 to 9 query heads (9: the reference) and
 * head sizes 16 to 128 (24: the reference). */
static void test_attn_row(void) {
    static const struct {
        int     grp;
        int64_t hd, n, k0;
    } cases[] = {{1, 64, 1, 0},    {3, 64, 5, 0},  {3, 64, 300, 0}, {8, 16, 40, 7},
                 {2, 128, 33, 32}, {9, 64, 20, 0}, {4, 24, 17, 3},  {3, 80, 129, 100}};
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        const int     grp = cases[c].grp;
        const int64_t hd = cases[c].hd, n = cases[c].n, k0 = cases[c].k0, ks = 3 * hd;
        float        *q = fbuf(grp * hd, 2100 + c), *k = fbuf(n * ks, 2110 + c),
              *v          = fbuf(n * ks, 2120 + c);
        float *orf        = malloc((size_t)(grp * hd) * sizeof(float)),
              *ov         = malloc((size_t)(grp * hd) * sizeof(float)),
              *od         = malloc((size_t)(grp * hd) * sizeof(float)),
              *s          = malloc((size_t)(grp * n) * sizeof(float));
        const float scale = 0.125f;
        for (int i = 0; i < grp; i++) { /* double: the math */
            double p[300], mx = -1e300, sum = 0;
            for (int64_t j = k0; j < n; j++) {
                double d = 0;
                for (int64_t t = 0; t < hd; t++) d += (double)q[i * hd + t] * k[j * ks + t];
                p[j] = scale * d;
                mx   = fmax(mx, p[j]);
            }
            for (int64_t j = k0; j < n; j++) sum += (p[j] = exp(p[j] - mx));
            for (int64_t t = 0; t < hd; t++) {
                double o = 0;
                for (int64_t j = k0; j < n; j++) o += p[j] / sum * v[j * ks + t];
                od[i * hd + t] = (float)o;
            }
        }
        ref.attn_row(orf, q, k, v, ks, k0, n, grp, hd, scale, s);
        char what[80];
        snprintf(what, sizeof(what), "attn_row ref grp %d hd %lld n %lld", grp, (long long)hd,
                 (long long)n);
        CHECK(compare_f(what, od, orf, grp * hd, 1e-10));
        if (best.attn_row) {
            best.attn_row(ov, q, k, v, ks, k0, n, grp, hd, scale, s);
            snprintf(what, sizeof(what), "attn_row grp %d hd %lld n %lld", grp, (long long)hd,
                     (long long)n);
            CHECK(compare_f(what, orf, ov, grp * hd, 1e-10));
        }
        free(q);
        free(k);
        free(v);
        free(orf);
        free(ov);
        free(od);
        free(s);
    }
}

/* qmatvec (the quantized lm head): lmp_quantize_row puts every weight within half a step
 * of its block's scale (the step rounded to fp16); the reference equals a double product
 * with the dequantized rows; every variant equals the reference, on odd and SmolLM2-like
 * shapes (a row range per thread; rows not a multiple of the 4 a one-input pass takes),
 * batch 1..9 (a partial batch of QMV_BATCH); Q8_0, Q4_1 and F16 rows. */
static void test_qmatvec(void) {
    static const struct {
        int64_t n_rows, n_cols;
    } shapes[]                     = {{3, 32}, {37, 96}, {5, 64}, {1030, 576}};
    static const int     dtypes[]  = {LMP_DTYPE_Q8_0, LMP_DTYPE_Q4_1, LMP_DTYPE_F16};
    static const int64_t batches[] = {1, 2, 4, 5, 9};
    for (size_t c = 0; c < sizeof(shapes) / sizeof(shapes[0]); c++)
        for (size_t t = 0; t < 3; t++) {
            const int     dt = dtypes[t];
            const int64_t R = shapes[c].n_rows, C = shapes[c].n_cols;
            const int64_t rb =
                dt == LMP_DTYPE_F16 ? 2 * C : C / 32 * lmp_dtype_block_bytes((enum lmp_dtype)dt);
            float   *w = fbuf(R * C, 900 + c), *wd = malloc((size_t)(R * C) * sizeof(float));
            uint8_t *q = malloc((size_t)(R * rb));
            if (c == 1) w[5] = w[6] = 0.0f, w[40] = 3.0f;             /* zeros, an outlier */
            for (int64_t i = 64; c == 1 && i < 96; i++) w[i] = 0.25f; /* a constant block */
            for (int64_t r = 0; r < R; r++) {
                if (dt == LMP_DTYPE_F16) /* halves (an exact fp16 head: the transformer's) */
                    for (int64_t i = 0; i < C; i++) {
                        const uint16_t h      = lmp_f32_to_f16(w[r * C + i]);
                        q[r * rb + 2 * i]     = (uint8_t)(h & 0xff);
                        q[r * rb + 2 * i + 1] = (uint8_t)(h >> 8);
                    }
                else
                    CHECK(lmp_quantize_row(dt, w + r * C, q + r * rb, C) == 0);
                ref.dequant_row(dt, q + r * rb, wd + r * C, C);
            }
            int bad = 0;
            for (int64_t r = 0; r < R && dt != LMP_DTYPE_F16; r++)
                for (int64_t b = 0; b < C / 32; b++) {
                    const uint8_t *p = q + r * rb + b * lmp_dtype_block_bytes((enum lmp_dtype)dt);
                    const float    d = lmp_f16_to_f32((uint16_t)(p[0] | p[1] << 8));
                    const float   *x = w + r * C + b * 32, *xd = wd + r * C + b * 32;
                    if (dt == LMP_DTYPE_Q8_0) {
                        for (int i = 0; i < 32; i++)
                            bad += !(fabsf(xd[i] - x[i]) <= 0.5f * d * 1.001f + 1e-6f);
                        continue;
                    }
                    /* Q4_1: no worse than the codes of the block's range (what it uses) */
                    float lo = x[0], hi = x[0];
                    for (int i = 1; i < 32; i++) lo = fminf(lo, x[i]), hi = fmaxf(hi, x[i]);
                    const float m0 = lmp_f16_to_f32(lmp_f32_to_f16(lo)),
                                d0 = lmp_f16_to_f32(lmp_f32_to_f16((hi - lo) / 15.0f));
                    double e = 0, e0 = 0;
                    for (int i = 0; i < 32; i++) {
                        const float v = d0 > 0 ? fminf(fmaxf(roundf((x[i] - m0) / d0), 0), 15) : 0;
                        e += ((double)xd[i] - x[i]) * ((double)xd[i] - x[i]);
                        e0 += ((double)d0 * v + m0 - x[i]) * ((double)d0 * v + m0 - x[i]);
                    }
                    bad += !(e <= e0 * (1 + 1e-6) + 1e-12);
                }
            CHECK(bad == 0);
            CHECK(ref.qmatvec(NULL, w, 1, LMP_DTYPE_BF16, q, R, C) == LMP_EINVAL);
            for (size_t bi = 0; bi < sizeof(batches) / sizeof(batches[0]); bi++) {
                const int64_t nb = batches[bi];
                float        *x  = fbuf(nb * C, 950 + c * 10 + bi);
                float        *yr = malloc((size_t)(nb * R) * sizeof(float)),
                      *yv        = malloc((size_t)(nb * R) * sizeof(float)),
                      *yd        = malloc((size_t)(nb * R) * sizeof(float));
                for (int64_t i = 0; i < nb; i++)
                    for (int64_t r = 0; r < R; r++) {
                        double d = 0;
                        for (int64_t k = 0; k < C; k++) d += (double)wd[r * C + k] * x[i * C + k];
                        yd[i * R + r] = (float)d;
                    }
                CHECK(ref.qmatvec(yr, x, nb, dt, q, R, C) == 0);
                CHECK(best.qmatvec(yv, x, nb, dt, q, R, C) == 0);
                char what[96];
                snprintf(what, sizeof(what), "qmatvec %s %lldx%lld batch %lld",
                         lmp_dtype_name((enum lmp_dtype)dt), (long long)R, (long long)C,
                         (long long)nb);
                CHECK(compare_f(what, yd, yr, nb * R, 1e-10)); /* the reference is the math */
                CHECK(compare_f(what, yr, yv, nb * R, 1e-10));
                free(x);
                free(yr);
                free(yv);
                free(yd);
            }
            free(w);
            free(wd);
            free(q);
        }
}

static void test_aq_grad(void) {
    for (int c = 0; c < N_AQ_CASES; c++) {
        struct aq_fix f;
        aq_fix_init(&f, &aq_cases[c], 300 + c);
        int64_t n_cb = (int64_t)f.s.M * f.s.K * f.s.g;
        float  *gr   = malloc((size_t)n_cb * sizeof(float)),
              *gv    = malloc((size_t)n_cb * sizeof(float));
        float *sr    = malloc((size_t)f.s.n_out * sizeof(float)),
              *sv    = malloc((size_t)f.s.n_out * sizeof(float));
        double lr = 0, lv = 0;
        CHECK(ref.aq_grad(&lr, gr, sr, f.codes, f.w, f.scale, f.cb, f.h, &f.s) == 0);
        CHECK(best.aq_grad(&lv, gv, sv, f.codes, f.w, f.scale, f.cb, f.h, &f.s) == 0);
        CHECK_NEAR(lv / lr, 1.0, 1e-5);
        CHECK_NEAR(lr / aq_objective(&f, f.codes), 1.0, 1e-6);
        compare_f("aq_grad codebooks", gr, gv, n_cb, 1e-9);
        compare_f("aq_grad scales", sr, sv, f.s.n_out, 1e-9);
        free(gr);
        free(gv);
        free(sr);
        free(sv);
        aq_fix_free(&f);
    }
}

/* aq_grad_dw: best vs ref, and tied to aq_grad: with dw = dL/dW_hat = -2 (W - W_hat) H
 * it must give aq_grad's codebook and scale gradients (the same chain rule). */
static void test_aq_grad_dw(void) {
    for (int c = 0; c < N_AQ_CASES; c++) {
        struct aq_fix f;
        aq_fix_init(&f, &aq_cases[c], 350 + c);
        const int64_t n_out = f.s.n_out, n_in = f.s.n_in, n_cb = (int64_t)f.s.M * f.s.K * f.s.g;
        float        *wh = malloc((size_t)(n_out * n_in) * sizeof(float));
        float        *dw = malloc((size_t)(n_out * n_in) * sizeof(float));
        float        *gr = malloc((size_t)n_cb * sizeof(float)),
              *gv        = malloc((size_t)n_cb * sizeof(float));
        float *ga        = malloc((size_t)n_cb * sizeof(float));
        float *sr        = malloc((size_t)n_out * sizeof(float)),
              *sv        = malloc((size_t)n_out * sizeof(float));
        float *sa        = malloc((size_t)n_out * sizeof(float));
        lmp_aq_decode_ref(wh, f.codes, f.cb, f.scale, &f.s);
        for (int64_t o = 0; o < n_out; o++)
            for (int64_t i = 0; i < n_in; i++) {
                double acc = 0.0;
                for (int64_t a = 0; a < n_in; a++)
                    acc += ((double)f.w[o * n_in + a] - wh[o * n_in + a]) * f.h[a * n_in + i];
                dw[o * n_in + i] = (float)(-2.0 * acc);
            }
        CHECK(ref.aq_grad_dw(gr, sr, dw, f.codes, f.cb, f.scale, &f.s) == 0);
        CHECK(best.aq_grad_dw(gv, sv, dw, f.codes, f.cb, f.scale, &f.s) == 0);
        compare_f("aq_grad_dw codebooks", gr, gv, n_cb, 1e-9);
        compare_f("aq_grad_dw scales", sr, sv, n_out, 1e-9);
        double L = 0;
        CHECK(ref.aq_grad(&L, ga, sa, f.codes, f.w, f.scale, f.cb, f.h, &f.s) == 0);
        compare_f("aq_grad_dw vs aq_grad codebooks", ga, gr, n_cb, 1e-8);
        compare_f("aq_grad_dw vs aq_grad scales", sa, sr, n_out, 1e-8);
        free(wh);
        free(dw);
        free(gr);
        free(gv);
        free(ga);
        free(sr);
        free(sv);
        free(sa);
        aq_fix_free(&f);
    }
}

/* A codebook order per group (n_grp, M): a seeded shuffle of 0..M-1 for each group. */
static uint8_t *aq_m_order(int64_t n_grp, int M) {
    uint8_t *mo = malloc((size_t)(n_grp * M));
    for (int64_t j = 0; j < n_grp; j++) {
        for (int m = 0; m < M; m++) mo[j * M + m] = (uint8_t)m;
        for (int m = M - 1; m > 0; m--) {
            int     k     = (int)(rng_next() % (uint64_t)(m + 1));
            uint8_t t     = mo[j * M + m];
            mo[j * M + m] = mo[j * M + k];
            mo[j * M + k] = t;
        }
    }
    return mo;
}

static void test_aq_beam(void) {
    static const int beams[]     = {1, 3, 8};            /* 3: an odd number of hypotheses */
    lmp_aq_beam_fn  *variants[2] = {best.aq_beam, NULL}; /* room for a second variant */
    for (int c = 0; c < N_AQ_CASES; c++)
        for (int bi = 0; bi < 3; bi++)
            for (int shuffled = 0; shuffled < 2; shuffled++) { /* natural, then m_order */
                struct aq_fix f;
                aq_fix_init(&f, &aq_cases[c], 400 + c);
                int64_t   n  = f.s.n_out * (f.s.n_in / f.s.g) * f.s.M;
                uint8_t  *mo = shuffled ? aq_m_order(f.s.n_in / f.s.g, f.s.M) : NULL;
                uint16_t *cr = malloc((size_t)n * sizeof(uint16_t)),
                         *cv = malloc((size_t)n * sizeof(uint16_t));
                memcpy(cr, f.codes, (size_t)n * sizeof(uint16_t));
                double *lr = malloc((size_t)f.s.n_out * sizeof(double)),
                       *lv = malloc((size_t)f.s.n_out * sizeof(double));
                CHECK(ref.aq_beam(cr, lr, f.w, f.scale, f.cb, f.h, &f.s, beams[bi], mo) == 0);
                double o0 = aq_objective(&f, f.codes), orf = aq_objective(&f, cr), sr = 0;
                for (int64_t o = 0; o < f.s.n_out; o++) sr += lr[o];
                for (int vi = 0; vi < 2 && variants[vi]; vi++) {
                    memcpy(cv, f.codes, (size_t)n * sizeof(uint16_t));
                    CHECK(variants[vi](cv, lv, f.w, f.scale, f.cb, f.h, &f.s, beams[bi], mo) == 0);
                    double ov = aq_objective(&f, cv), sv = 0;
                    for (int64_t o = 0; o < f.s.n_out; o++) sv += lv[o];
                    int ok = orf <= o0 && ov <= orf * (1 + 1e-3) && fabs(sr / orf - 1) < 1e-6 &&
                             fabs(sv / ov - 1) < 1e-3;
                    if (!ok)
                        fprintf(stderr,
                                "  aq_beam%s case %d beam %d%s: start %.9g ref %.9g (reported "
                                "%.9g) variant %.9g (reported %.9g)\n",
                                vi ? " (second)" : "", c, beams[bi], mo ? " m_order" : "", o0, orf,
                                sr, ov, sv);
                    CHECK(ok);
                }
                free(mo);
                free(cr);
                free(cv);
                free(lr);
                free(lv);
                aq_fix_free(&f);
            }
}

/* m_order is honoured: the identity order is the NULL order, bit for bit, and the same
 * swap of two codebooks in every group is the natural search on the swapped codebooks
 * (codes equal up to that swap: with M = 2 both decode sums are the same bits), in
 * every table, so a variant that ignored m_order or read it per position wrongly fails. */
static void test_aq_beam_m_order(void) {
    const struct lmp_kernels *tabs[2] = {&ref, &best};
    for (int c = 0; c < N_AQ_CASES; c++) {
        if (aq_cases[c].M != 2) continue;
        for (int ti = 0; ti < 2; ti++)
            for (int b = 1; b <= 8; b *= 8) {
                struct aq_fix f;
                aq_fix_init(&f, &aq_cases[c], 700 + c);
                const int64_t n_grp = f.s.n_in / f.s.g, n = f.s.n_out * n_grp * 2;
                const int64_t n_cb = (int64_t)f.s.K * f.s.g;
                uint8_t      *id = malloc((size_t)(n_grp * 2)), *sw = malloc((size_t)(n_grp * 2));
                uint16_t     *c0 = malloc((size_t)n * sizeof(uint16_t)),
                         *c1     = malloc((size_t)n * sizeof(uint16_t)),
                         *c2     = malloc((size_t)n * sizeof(uint16_t));
                float *cbs       = malloc((size_t)(2 * n_cb) * sizeof(float));
                for (int64_t j = 0; j < n_grp; j++) {
                    id[j * 2] = 0, id[j * 2 + 1] = 1;
                    sw[j * 2] = 1, sw[j * 2 + 1] = 0;
                }
                memcpy(c0, f.codes, (size_t)n * sizeof(uint16_t));
                memcpy(c1, f.codes, (size_t)n * sizeof(uint16_t));
                CHECK(tabs[ti]->aq_beam(c0, NULL, f.w, f.scale, f.cb, f.h, &f.s, b, NULL) == 0);
                CHECK(tabs[ti]->aq_beam(c1, NULL, f.w, f.scale, f.cb, f.h, &f.s, b, id) == 0);
                CHECK(memcmp(c0, c1, (size_t)n * sizeof(uint16_t)) == 0);
                memcpy(cbs, f.cb + n_cb, (size_t)n_cb * sizeof(float)); /* codebooks 1, 0 */
                memcpy(cbs + n_cb, f.cb, (size_t)n_cb * sizeof(float));
                for (int64_t i = 0; i < n; i += 2) c2[i] = f.codes[i + 1], c2[i + 1] = f.codes[i];
                memcpy(c1, f.codes, (size_t)n * sizeof(uint16_t));
                CHECK(tabs[ti]->aq_beam(c1, NULL, f.w, f.scale, f.cb, f.h, &f.s, b, sw) == 0);
                CHECK(tabs[ti]->aq_beam(c2, NULL, f.w, f.scale, cbs, f.h, &f.s, b, NULL) == 0);
                int same = 1;
                for (int64_t i = 0; i < n; i += 2) same &= c1[i] == c2[i + 1] && c1[i + 1] == c2[i];
                if (!same)
                    fprintf(stderr,
                            "  aq_beam m_order table %s case %d beam %d: swapped order "
                            "differs from swapped codebooks\n",
                            tabs[ti]->name, c, b);
                CHECK(same);
                free(id);
                free(sw);
                free(c0);
                free(c1);
                free(c2);
                free(cbs);
                aq_fix_free(&f);
            }
    }
}

/* ---- avx2 against avx512: the same bits ------------------------------------------ */

static int same_bits(const char *what, int c, const void *a, const void *b, size_t bytes) {
    const int same = memcmp(a, b, bytes) == 0;
    if (!same) fprintf(stderr, "  %s case %d: avx2 and avx512 differ\n", what, c);
    CHECK(same);
    return same;
}

/* The AVX2 variants do the AVX-512 variants' floating-point operations lane for lane
 * (kernels/cpu/<op>_avx2.c), so on a CPU that runs both tables the slots they override
 * give the same bits: Gram, k-means assignments and updates, decode, gradient, beam-search
 * codes, and beam losses for g = 8 and 16; dequant_row and aq_decode are the reference's
 * bits in both (test_dequant_*, here). The k-means distances and the beam losses for
 * other g go through scalar C that the compiler fuses differently under -mavx512f: nmse
 * 1e-12 there. aq_matvec is not included: its lookup-table sums run 8 or 16 wide (nmse
 * 1e-10 against the reference). */
static void test_avx2_same_bits(void) {
    struct lmp_kernels a, b;
    if (!lmp_kernels_init_named(&a, "avx2") || !lmp_kernels_init_named(&b, "avx512")) {
        fprintf(stderr, "  avx2 or avx512 not run by this CPU: skipped\n");
        return;
    }
    static const int64_t gshape[][2] = {{7, 5}, {300, 33}, {513, 96}};
    for (int c = 0; c < 3; c++) {
        const int64_t n_tok = gshape[c][0], n_in = gshape[c][1];
        float        *x  = fbuf(n_tok * n_in, 900 + c);
        double       *ha = calloc((size_t)(n_in * n_in), sizeof(double));
        double       *hb = calloc((size_t)(n_in * n_in), sizeof(double));
        a.gram_acc(ha, x, n_tok, n_in);
        b.gram_acc(hb, x, n_tok, n_in);
        same_bits("gram_acc", c, ha, hb, (size_t)(n_in * n_in) * sizeof(double));
        free(x);
        free(ha);
        free(hb);
    }
    static const int64_t kshape[][3] = {
        {37, 5, 3}, {200, 20, 8}, {333, 48, 4}, {5000, 256, 8}, {999, 40, 6}};
    for (int c = 0; c < 5; c++) {
        const int64_t n = kshape[c][0], K = kshape[c][1];
        const int     g   = (int)kshape[c][2];
        float        *pts = fbuf(n * g, 910 + c), *cent = fbuf(K * g, 920 + c);
        float        *wts = fbuf(n, 930 + c), *da = fbuf(n, 1), *db = fbuf(n, 1);
        float        *ca = fbuf(K * g, 940 + c), *cc = fbuf(K * g, 940 + c);
        int32_t      *aa = malloc((size_t)n * sizeof(int32_t)),
                *ab      = malloc((size_t)n * sizeof(int32_t));
        for (int64_t i = 0; i < n; i++) wts[i] = fabsf(wts[i]);
        a.kmeans_assign(aa, da, pts, n, cent, K, g);
        b.kmeans_assign(ab, db, pts, n, cent, K, g);
        same_bits("kmeans_assign", c, aa, ab, (size_t)n * sizeof(int32_t));
        if (g == 8)
            same_bits("kmeans_assign dist2", c, da, db, (size_t)n * sizeof(float));
        else
            compare_f("kmeans_assign dist2 avx2/avx512", db, da, n, 1e-12);
        for (int wi = 0; wi < 2; wi++) {
            a.kmeans_update(ca, pts, wi ? wts : NULL, aa, n, K, g);
            b.kmeans_update(cc, pts, wi ? wts : NULL, aa, n, K, g);
            same_bits("kmeans_update", c, ca, cc, (size_t)(K * g) * sizeof(float));
        }
        free(pts);
        free(cent);
        free(wts);
        free(da);
        free(db);
        free(ca);
        free(cc);
        free(aa);
        free(ab);
    }
    for (int c = 0; c < N_AQ_CASES; c++) {
        struct aq_fix f;
        aq_fix_init(&f, &aq_cases[c], 950 + c);
        const int64_t n_out = f.s.n_out, n_in = f.s.n_in, n_grp = n_in / f.s.g;
        const int64_t n = n_out * n_grp * f.s.M, n_cb = (int64_t)f.s.M * f.s.K * f.s.g;
        float        *wa = malloc((size_t)(n_out * n_in) * sizeof(float)),
              *wb        = malloc((size_t)(n_out * n_in) * sizeof(float));
        a.aq_decode(wa, f.codes, f.cb, f.scale, &f.s);
        b.aq_decode(wb, f.codes, f.cb, f.scale, &f.s);
        same_bits("aq_decode", c, wa, wb, (size_t)(n_out * n_in) * sizeof(float));
        lmp_aq_decode_ref(wb, f.codes, f.cb, f.scale, &f.s); /* and the reference's bits */
        same_bits("aq_decode (ref)", c, wa, wb, (size_t)(n_out * n_in) * sizeof(float));
        float *ga = malloc((size_t)n_cb * sizeof(float)),
              *gb = malloc((size_t)n_cb * sizeof(float));
        float *sa = malloc((size_t)n_out * sizeof(float)),
              *sb = malloc((size_t)n_out * sizeof(float));
        double La = 0, Lb = 0;
        CHECK(a.aq_grad(&La, ga, sa, f.codes, f.w, f.scale, f.cb, f.h, &f.s) == 0);
        CHECK(b.aq_grad(&Lb, gb, sb, f.codes, f.w, f.scale, f.cb, f.h, &f.s) == 0);
        same_bits("aq_grad loss", c, &La, &Lb, sizeof(double));
        same_bits("aq_grad codebooks", c, ga, gb, (size_t)n_cb * sizeof(float));
        same_bits("aq_grad scales", c, sa, sb, (size_t)n_out * sizeof(float));
        uint16_t *cda = malloc((size_t)n * sizeof(uint16_t)),
                 *cdb = malloc((size_t)n * sizeof(uint16_t));
        double *la    = malloc((size_t)n_out * sizeof(double)),
               *lb    = malloc((size_t)n_out * sizeof(double));
        for (int beam = 1; beam <= 20; beam = beam == 1 ? 3 : beam == 3 ? 8 : beam + 12)
            for (int shuffled = 0; shuffled < 2; shuffled++) {
                /* 1, 3, 8 and 20 (over 16: the sorted-list selection bound) */
                uint8_t *mo = shuffled ? aq_m_order(n_grp, f.s.M) : NULL;
                memcpy(cda, f.codes, (size_t)n * sizeof(uint16_t));
                memcpy(cdb, f.codes, (size_t)n * sizeof(uint16_t));
                CHECK(a.aq_beam(cda, la, f.w, f.scale, f.cb, f.h, &f.s, beam, mo) == 0);
                CHECK(b.aq_beam(cdb, lb, f.w, f.scale, f.cb, f.h, &f.s, beam, mo) == 0);
                same_bits("aq_beam codes", c, cda, cdb, (size_t)n * sizeof(uint16_t));
                if (f.s.g == 8 || f.s.g == 16)
                    same_bits("aq_beam loss", c, la, lb, (size_t)n_out * sizeof(double));
                else
                    compare_d("aq_beam loss avx2/avx512", lb, la, n_out, 1e-12);
                free(mo);
            }
        free(wa);
        free(wb);
        free(ga);
        free(gb);
        free(sa);
        free(sb);
        free(cda);
        free(cdb);
        free(la);
        free(lb);
        aq_fix_free(&f);
    }
}

/* ---- sgemm --------------------------------------------------------------------- */

static void test_sgemm(void) {
    static const int64_t shapes[][3] = {{1, 1, 1},    {7, 5, 3},      {33, 17, 65},
                                        {64, 96, 64}, {130, 70, 300}, {5, 300, 1}};
    static const float   ab[][2]     = {{1.0f, 0.0f}, {0.7f, 1.0f}, {-1.3f, 0.25f}};
    for (size_t c = 0; c < sizeof(shapes) / sizeof(shapes[0]); c++)
        for (int tr = 0; tr < 4; tr++)
            for (size_t q = 0; q < sizeof(ab) / sizeof(ab[0]); q++) {
                const int64_t        m = shapes[c][0], n = shapes[c][1], k = shapes[c][2];
                const enum lmp_trans ta = tr & 1 ? LMP_TRANS : LMP_NO_TRANS;
                const enum lmp_trans tb = tr & 2 ? LMP_TRANS : LMP_NO_TRANS;
                /* stored shapes, with leading dimensions 3 wider than needed */
                const int64_t ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;
                const int64_t lda = ac + 3, ldb = bc + 3, ldc = n + 3;
                float        *a = fbuf(ar * lda, 500 + c), *b = fbuf(br * ldb, 600 + c);
                float *cr = fbuf(m * ldc, 700 + c), *cv = malloc((size_t)(m * ldc) * sizeof(float));
                if (ab[q][1] == 0.0f) /* beta 0: C is write-only, NaN must not propagate */
                    for (int64_t i = 0; i < m * ldc; i += 2) cr[i] = NAN;
                memcpy(cv, cr, (size_t)(m * ldc) * sizeof(float));
                ref.sgemm(ta, tb, m, n, k, ab[q][0], a, lda, b, ldb, ab[q][1], cr, ldc);
                best.sgemm(ta, tb, m, n, k, ab[q][0], a, lda, b, ldb, ab[q][1], cv, ldc);
                float *pr  = malloc((size_t)(m * n) * sizeof(float)),
                      *pv  = malloc((size_t)(m * n) * sizeof(float));
                int pad_ok = 1;
                for (int64_t i = 0; i < m; i++)
                    for (int64_t j = 0; j < ldc; j++) {
                        if (j < n) {
                            pr[i * n + j] = cr[i * ldc + j];
                            pv[i * n + j] = cv[i * ldc + j];
                        } else if (memcmp(&cr[i * ldc + j], &cv[i * ldc + j], sizeof(float)) != 0) {
                            pad_ok = 0; /* outside C: untouched by both */
                        }
                    }
                char what[96];
                snprintf(what, sizeof(what), "sgemm %lldx%lldx%lld %c%c alpha %g beta %g",
                         (long long)m, (long long)n, (long long)k, ta ? 'T' : 'N', tb ? 'T' : 'N',
                         ab[q][0], ab[q][1]);
                compare_f(what, pr, pv, m * n, 1e-10);
                if (!pad_ok) fprintf(stderr, "  %s: wrote outside C\n", what);
                CHECK(pad_ok);
                free(a);
                free(b);
                free(cr);
                free(cv);
                free(pr);
                free(pv);
            }
}

/* ---- memory slots and the scratch arena ----------------------------------------- */

static void test_memory(void) {
    const size_t n = 1000;
    float       *h = fbuf((int64_t)n, 800), *back = malloc(n * sizeof(float));
    float       *d = best.mem_alloc(n * sizeof(float)), *d2 = best.mem_alloc(n * sizeof(float));
    CHECK(d != NULL && d2 != NULL);
    CHECK(((uintptr_t)d & 63) == 0);
    best.mem_copy(d, h, n * sizeof(float), LMP_COPY_HOST_TO_DEVICE);
    best.mem_copy(d2, d, n * sizeof(float), LMP_COPY_DEVICE_TO_DEVICE);
    best.mem_copy(back, d2, n * sizeof(float), LMP_COPY_DEVICE_TO_HOST);
    CHECK(memcmp(h, back, n * sizeof(float)) == 0);
    best.mem_free(d);
    best.mem_free(d2);
    best.mem_free(NULL);
    free(h);
    free(back);
}

static void *scratch_thread(void *arg) {
    (void)arg;
    struct lmp_scratch_mark m = lmp_scratch_mark();
    char                   *p = lmp_scratch_alloc(100);
    if (p) memset(p, 7, 100);
    lmp_scratch_reset(m);
    return p;
}

static void test_scratch(void) {
    struct lmp_scratch_mark m0 = lmp_scratch_mark();
    char                   *a  = lmp_scratch_alloc(10);
    char                   *b = lmp_scratch_alloc(3u << 20); /* beyond the first chunk: a new one */
    CHECK(a != NULL && b != NULL);
    CHECK(((uintptr_t)a & 63) == 0 && ((uintptr_t)b & 63) == 0);
    memset(a, 1, 10);
    memset(b, 2, 3u << 20);
    struct lmp_scratch_mark m1 = lmp_scratch_mark();
    char                   *c  = lmp_scratch_alloc(1000);
    CHECK(c != NULL);
    memset(c, 3, 1000);
    CHECK(a[9] == 1 && b[(3u << 20) - 1] == 2); /* earlier carvings intact */
    lmp_scratch_reset(m1);
    char *c2 = lmp_scratch_alloc(1000);
    CHECK(c2 == c); /* reset gives the same memory back */
    lmp_scratch_reset(m0);
    const size_t held = lmp_scratch_held();
    CHECK(held >= (3u << 20));
    char *a2 = lmp_scratch_alloc(10); /* cached: nothing new */
    CHECK(a2 == a && lmp_scratch_held() == held);
    lmp_scratch_reset(m0);
    pthread_t th;
    void     *other = NULL;
    CHECK(pthread_create(&th, NULL, scratch_thread, NULL) == 0);
    pthread_join(th, &other);
    CHECK(other != NULL && other != (void *)a); /* each thread its own arena */
    lmp_scratch_trim();
    CHECK(lmp_scratch_held() == 0);
}

/* ---- perf mode ------------------------------------------------------------------- */

static void perf(void) {
    struct aq_case c = {64, 576, 2, 256, 8};
    struct aq_fix  f;
    aq_fix_init(&f, &c, 7);
    int64_t n_cb = (int64_t)c.M * c.K * c.g, n = c.n_out * (c.n_in / c.g) * c.M;
    float *gc = malloc((size_t)n_cb * sizeof(float)), *gs = malloc((size_t)c.n_out * sizeof(float));
    uint16_t                 *codes = malloc((size_t)n * sizeof(uint16_t));
    float                    *wd    = malloc((size_t)(c.n_out * c.n_in) * sizeof(float));
    double                    L;
    const struct lmp_kernels *tabs[2] = {&ref, &best};
    printf("op (64 x 576, 2x8g8)      ref ms     best ms   speedup\n");
    double t[2];
    for (int v = 0; v < 2; v++) {
        double t0 = now_s();
        tabs[v]->aq_grad(&L, gc, gs, f.codes, f.w, f.scale, f.cb, f.h, &f.s);
        t[v] = now_s() - t0;
    }
    printf("aq_grad               %9.2f   %9.2f   %7.1f\n", 1e3 * t[0], 1e3 * t[1], t[0] / t[1]);
    for (int b = 1; b <= 8; b *= 8) {
        for (int v = 0; v < 2; v++) {
            memcpy(codes, f.codes, (size_t)n * sizeof(uint16_t));
            double t0 = now_s();
            tabs[v]->aq_beam(codes, NULL, f.w, f.scale, f.cb, f.h, &f.s, b, NULL);
            t[v] = now_s() - t0;
        }
        printf("aq_beam (beam %d)      %9.2f   %9.2f   %7.1f\n", b, 1e3 * t[0], 1e3 * t[1],
               t[0] / t[1]);
    }
    for (int v = 0; v < 2; v++) {
        double t0 = now_s();
        tabs[v]->aq_decode(wd, f.codes, f.cb, f.scale, &f.s);
        t[v] = now_s() - t0;
    }
    printf("aq_decode             %9.2f   %9.2f   %7.1f\n", 1e3 * t[0], 1e3 * t[1], t[0] / t[1]);
    for (int v = 0; v < 2; v++) {
        double t0 = now_s();
        tabs[v]->aq_matvec(gs, f.w, 1, f.codes, f.cb, f.scale, &f.s);
        t[v] = now_s() - t0;
    }
    printf("aq_matvec (batch 1)   %9.2f   %9.2f   %7.1f\n", 1e3 * t[0], 1e3 * t[1], t[0] / t[1]);
    /* SmolLM2's linears at batch 1: aq_matvec (fp32 tables, gathers) against
     * aq_matvec_pk (24-bit tables, byte permutes), best of 20, the process's threads */
    if (best.aq_matvec_pk) {
        static const int64_t shp[][2] = {{576, 576}, {192, 576}, {1536, 576}, {576, 1536}};
        for (int k = 0; k < 5; k++) {
            const int            nl   = k == 4 ? 3 : 1; /* 4: q, k, v in one call */
            const int64_t        n_in = k == 4 ? 576 : shp[k][1], P = n_in / 8 * 2;
            struct lmp_aq_packed pk[3];
            uint16_t            *cd[3];
            float               *yy[3], *cbk = fbuf(2 * 256 * 8, 11), *xx = fbuf(n_in, 12);
            float               *sc = fbuf(1536, 13);
            int64_t              outs[3];
            for (int l = 0; l < nl; l++) {
                outs[l]               = k == 4 ? (l == 0 ? 576 : 192) : shp[k][0];
                struct lmp_aq_shape s = {outs[l], n_in, 2, 256, 8};
                cd[l]                 = malloc((size_t)(outs[l] * P) * sizeof(uint16_t));
                for (int64_t i = 0; i < outs[l] * P; i++) cd[l][i] = (uint16_t)(rng_next() % 256);
                lmp_aq_pack(&pk[l], cd[l], cbk, sc, &s);
                yy[l] = malloc((size_t)outs[l] * sizeof(float));
            }
            const struct lmp_aq_packed *ws[3] = {&pk[0], &pk[1], &pk[2]};
            double                      t_old = 1e9, t_new = 1e9;
            for (int r = 0; r < 20; r++) {
                double t0 = now_s();
                for (int l = 0; l < nl; l++) {
                    struct lmp_aq_shape s = {outs[l], n_in, 2, 256, 8};
                    best.aq_matvec(yy[l], xx, 1, cd[l], cbk, sc, &s);
                }
                double t1 = now_s();
                best.aq_matvec_pk(nl, yy, xx, 1, ws);
                double t2 = now_s();
                t_old     = fmin(t_old, t1 - t0);
                t_new     = fmin(t_new, t2 - t1);
            }
            if (k < 4)
                printf("aq_matvec %4lldx%-4lld fp32 %7.1f us, packed 24-bit %7.1f us, %.1fx\n",
                       (long long)shp[k][0], (long long)shp[k][1], 1e6 * t_old, 1e6 * t_new,
                       t_old / t_new);
            else
                printf("aq_matvec q,k,v 576x576, 2x 192x576: fp32 %7.1f us, packed %7.1f us "
                       "(one call), %.1fx\n",
                       1e6 * t_old, 1e6 * t_new, t_old / t_new);
            for (int l = 0; l < nl; l++) {
                lmp_aq_packed_free(&pk[l]);
                free(cd[l]);
                free(yy[l]);
            }
            free(cbk);
            free(xx);
            free(sc);
        }
    }
    int64_t  np  = 20000;
    float   *pts = fbuf(np * 8, 1);
    int32_t *as  = malloc((size_t)np * sizeof(int32_t));
    for (int v = 0; v < 2; v++) {
        double t0 = now_s();
        tabs[v]->kmeans_assign(as, NULL, pts, np, f.cb, 256, 8);
        t[v] = now_s() - t0;
    }
    printf("kmeans_assign 20000x256 %7.2f   %9.2f   %7.1f\n", 1e3 * t[0], 1e3 * t[1], t[0] / t[1]);
    double *hd = calloc(576 * 576, sizeof(double));
    for (int v = 0; v < 2; v++) {
        double t0 = now_s();
        tabs[v]->gram_acc(hd, wd, 64, 576);
        t[v] = now_s() - t0;
    }
    printf("gram_acc 64x576       %9.2f   %9.2f   %7.1f\n", 1e3 * t[0], 1e3 * t[1], t[0] / t[1]);
    free(hd);
    /* the lm head of SmolLM2 (49152 x 576) for one token: fp32 rows (one thread's dot
     * products, what a dense head reads) against the best qmatvec on Q8_0 / Q4_1 blocks at
     * the process's threads; best of 5 */
    {
        const int64_t V = 49152, D = 576;
        float   *hw = fbuf(V * D, 3), *hx = fbuf(D, 4), *hy = malloc((size_t)V * sizeof(float));
        uint8_t *hq = malloc((size_t)(V * D / 32 * 34));
        double   tf = 1e9;
        for (int r = 0; r < 5; r++) {
            double t0 = now_s();
            for (int64_t v = 0; v < V; v++) { /* 8 lanes, as the transformer's dense head */
                float acc[8] = {0};
                for (int64_t i = 0; i < D; i += 8)
                    for (int l = 0; l < 8; l++) acc[l] += hw[v * D + i + l] * hx[i + l];
                hy[v] = ((acc[0] + acc[1]) + (acc[2] + acc[3])) +
                        ((acc[4] + acc[5]) + (acc[6] + acc[7]));
            }
            tf = fmin(tf, now_s() - t0);
        }
        printf("head 49152x576 fp32 (1 thread) %7.2f ms\n", 1e3 * tf);
        static const int hd_t[2] = {LMP_DTYPE_Q8_0, LMP_DTYPE_Q4_1};
        for (int k = 0; k < 2; k++) {
            const int64_t rb = D / 32 * lmp_dtype_block_bytes((enum lmp_dtype)hd_t[k]);
            for (int64_t v = 0; v < V; v++) lmp_quantize_row(hd_t[k], hw + v * D, hq + v * rb, D);
            double tq = 1e9;
            for (int r = 0; r < 5; r++) {
                double t0 = now_s();
                best.qmatvec(hy, hx, 1, hd_t[k], hq, V, D);
                tq = fmin(tq, now_s() - t0);
            }
            printf("head 49152x576 %s qmatvec (%d threads) %7.2f ms, %.1fx\n",
                   lmp_dtype_name((enum lmp_dtype)hd_t[k]), lmp_kernels_threads(), 1e3 * tq,
                   tf / tq);
        }
        free(hw);
        free(hx);
        free(hy);
        free(hq);
    }
    /* dequant_row of a 2048 x 2048 tensor, row by row (what lmp_tensor_rows_f32 does);
     * bytes masked to 0x3f so every f16 scale is finite; best of 3 */
    static const int dq[] = {LMP_DTYPE_Q8_0, LMP_DTYPE_Q4_K, LMP_DTYPE_Q5_K, LMP_DTYPE_Q6_K};
    const int64_t    dn   = 2048;
    uint8_t         *dsrc = malloc((size_t)(dn * dn / 32 * 34));
    float           *dout = malloc((size_t)(dn * dn) * sizeof(float));
    for (int64_t i = 0; i < dn * dn / 32 * 34; i++) dsrc[i] = (uint8_t)(rng_next() & 0x3f);
    for (size_t k = 0; k < sizeof(dq) / sizeof(dq[0]); k++) {
        const int64_t rb = dn / lmp_dtype_block(dq[k]) * lmp_dtype_block_bytes(dq[k]);
        for (int v = 0; v < 2; v++) {
            t[v] = 1e9;
            for (int rep = 0; rep < 3; rep++) {
                double t0 = now_s();
                for (int64_t r = 0; r < dn; r++)
                    tabs[v]->dequant_row(dq[k], dsrc + r * rb, dout + r * dn, dn);
                double dt = now_s() - t0;
                if (dt < t[v]) t[v] = dt;
            }
        }
        printf("dequant %-4s 2048^2    %9.2f   %9.2f   %7.1f\n", lmp_dtype_name(dq[k]), 1e3 * t[0],
               1e3 * t[1], t[0] / t[1]);
    }
    free(dsrc);
    free(dout);
    free(pts);
    free(as);
    free(gc);
    free(gs);
    free(codes);
    free(wd);
    aq_fix_free(&f);
}

int main(int argc, char **argv) {
    const char *mode = "test";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--mode") == 0 && i + 1 < argc)
            mode = argv[++i];
        else {
            fprintf(stderr, "usage: test_kernels [--mode test|perf]\n");
            return 2;
        }
    }
    lmp_kernels_init_ref(&ref);
    if (strcmp(mode, "perf") == 0) {
        lmp_kernels_init_best(&best);
        fprintf(stderr, "comparing '%s' with '%s'\n", best.name, ref.name);
        perf();
        return 0;
    }
    if (strcmp(mode, "test") != 0) {
        fprintf(stderr, "unknown mode '%s'\n", mode);
        return 2;
    }
    /* every table this CPU runs but the reference itself (LMP_KERNELS=ref checks that the
     * reference agrees with itself), or only $LMP_KERNELS (a name or "best") */
    const char        *only     = getenv("LMP_KERNELS");
    const char *const *names    = lmp_kernels_names();
    int                n_tables = 0;
    for (int t = 0; names[t]; t++) {
        if (!(only && *only) && strcmp(names[t], "ref") == 0) continue;
        if (only && *only && strcmp(only, names[t]) != 0 &&
            !(strcmp(only, "best") == 0 &&
              (lmp_kernels_init_best(&best), strcmp(best.name, names[t]) == 0)))
            continue;
        CHECK(lmp_kernels_init_named(&best, names[t]));
        fprintf(stderr, "comparing '%s' with '%s'\n", best.name, ref.name);
        n_tables++;
        RUN(test_sgemm);
        RUN(test_memory);
        RUN(test_dequant_row);
        RUN(test_dequant_kquants);
        RUN(test_gram_acc);
        RUN(test_kmeans);
        RUN(test_aq_decode_matvec);
        RUN(test_aq_matvec_paths);
        RUN(test_aq_matvec_pk);
        RUN(test_attn_row);
        RUN(test_qmatvec);
        RUN(test_aq_grad);
        RUN(test_aq_grad_dw);
        RUN(test_aq_beam);
        RUN(test_aq_beam_m_order);
    }
    if (only && *only && n_tables == 0) {
        fprintf(stderr, "LMP_KERNELS='%s': not a table this CPU runs\n", only);
        return 2;
    }
    if (!(only && *only) || strcmp(only, "avx2") == 0) RUN(test_avx2_same_bits);
    RUN(test_scratch);
    return check_report();
}
