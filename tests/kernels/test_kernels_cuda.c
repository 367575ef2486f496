/*  test_kernels_cuda - every op of the CUDA table against its scalar reference
 *
 *  Same seeded inputs go through the reference (kernels/ref/) on the host and the CUDA op
 *  on device copies; outputs are compared with a normalized error (nmse = sum (v - r)^2 /
 *  sum r^2) or an elementwise bound, per op (the tolerances are in each test's comment and
 *  in docs/gpu.md), and the first mismatches are printed with index, reference and CUDA
 *  values. Odd shapes first, then realistic ones. Discrete outputs: k-means must pick the
 *  reference's centroid (same double arithmetic); beam search is held to the objective its
 *  codes achieve (CUDA <= ref (1 + 1e-9)), and the loss it returns must be the objective
 *  of the codes it returns (to 1e-6: the running loss drifts, in the reference too). aq_decode is
 * bit-exact; the CUDA k-means and codebook gradient do the reference's operations in its order
 * without FMA contraction, so they give its bits where the reference is compiled without
 * contraction too (not with -DLMP_NATIVE=ON, where gcc fuses its multiply-adds): they are held to
 * 1e-6 relative.
 *
 *  Where no GPU can be used (built without -DLMP_CUDA=ON, or cudaGetDeviceCount fails:
 *  no device, no driver), the comparisons are skipped with the reason (exit 77, also under
 *  CI=true: a GPU is not a prerequisite of CI); the checks that need no GPU still run
 *  first: `--device cuda:0` is refused with a one-line reason, and the CUDA table's
 *  calls fail cleanly (ENODEV, NULL) instead of crashing.
 *
 *  usage: test_kernels_cuda [--perf [FILE]]   --perf: also time each op on realistic
 *                                             shapes (ms, GFLOP/s or GB/s, fraction of
 *                                             the device's nominal peak), to stdout or
 *                                             appended to FILE as TSV
 */
#include "kernels/kernels.h"
#include "kernels/device.h"  /* defines: lmp_device_resolve */
#include "kernels/forward.h" /* defines: lmp_rmsnorm_ref, ... */
#ifdef LMP_HAVE_CUDA
#include "kernels/cuda/cuda_kernels.h" /* defines: lmp_kernels_init_cuda, the CUDA ops */
#include "kernels/cuda/cuda_mem.h"     /* defines: lmp_cuda_devices, lmp_cuda_sync */
#endif
#include "tests/check.h" /* defines: CHECK, RUN, check_fill_random */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Runs where no GPU is usable: a GPU request is refused in one line, never a crash. */
static void test_device_cuda_refused_without_gpu(void) {
    struct lmp_device_sel sel;
    struct lmp_err        err = {0};
    enum lmp_status       st  = lmp_device_resolve("cuda:0", &sel, &err);
    CHECK(st == LMP_ENODEV);
    CHECK(strncmp(err.msg, "cannot use cuda:0: ", 19) == 0);
    CHECK(strchr(err.msg, '\n') == NULL);
    fprintf(stderr, "  (--device cuda:0 here: %s)\n", err.msg);
    CHECK(lmp_device_resolve("auto", &sel, NULL) == LMP_OK && sel.device == LMP_DEVICE_CPU);
    CHECK(strcmp(sel.name, "cpu") == 0);
}

static void test_device_names(void) {
    struct lmp_device_sel sel;
    struct lmp_err        err = {0};
    CHECK(lmp_device_resolve("cpu", &sel, &err) == LMP_OK && strcmp(sel.name, "cpu") == 0);
    CHECK(lmp_device_resolve("gpu", &sel, &err) == LMP_EINVAL);
    CHECK(lmp_device_name_ok("cpu") && lmp_device_name_ok("cuda:0") &&
          lmp_device_name_ok("cuda:15"));
    CHECK(!lmp_device_name_ok("cuda:") && !lmp_device_name_ok("cuda:x") &&
          !lmp_device_name_ok("cuda:00000") && !lmp_device_name_ok("CPU") &&
          !lmp_device_name_ok("") && !lmp_device_name_ok(NULL) && !lmp_device_name_ok("cuda:1 "));
}

#ifdef LMP_HAVE_CUDA
static struct lmp_kernels cu; /* the table under test */

static void test_cuda_table_refused_without_gpu(void) {
    struct lmp_kernels k   = {0};
    struct lmp_err     err = {0};
    int                n   = -1;
    CHECK(lmp_cuda_devices(&n, &err) == LMP_ENODEV && n == 0);
    CHECK(strstr(err.msg, "no CUDA device") != NULL);
    memset(&err, 0, sizeof(err));
    CHECK(lmp_kernels_init_cuda(&k, 0, &err) == LMP_ENODEV && k.name == NULL);
    CHECK(lmp_cuda_alloc(64) == NULL); /* recorded, reported by the sync below */
    lmp_cuda_free(NULL);
    memset(&err, 0, sizeof(err));
    CHECK(lmp_cuda_sync(&err) != LMP_OK && err.msg[0] != '\0');
    CHECK(lmp_cuda_sync(NULL) == LMP_OK); /* cleared */
}

/* ---- helpers ---------------------------------------------------------------------- */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void *up(const void *host, size_t bytes) {
    if (bytes == 0) return NULL; /* an empty operand (k = 0) */
    void *d = cu.mem_alloc(bytes);
    CHECK(d != NULL);
    if (d) cu.mem_copy(d, host, bytes, LMP_COPY_HOST_TO_DEVICE);
    return d;
}

static void down(void *host, const void *dev, size_t bytes) {
    cu.mem_copy(host, dev, bytes, LMP_COPY_DEVICE_TO_HOST);
}

static bool synced(const char *what) {
    struct lmp_err err = {0};
    if (lmp_cuda_sync(&err) == LMP_OK) return true;
    fprintf(stderr, "  %s: %s\n", what, err.msg);
    CHECK(!"CUDA error");
    return false;
}

/* nmse(v, r) <= tol; print the first 5 elements off by more than sqrt(tol) rms. */
static bool compare_f(const char *what, const float *r, const float *v, int64_t n, double tol) {
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double e = (double)v[i] - r[i];
        num += e * e;
        den += (double)r[i] * r[i];
    }
    double nmse = den > 0 ? num / den : num;
    bool   ok   = nmse <= tol && num == num;
    if (!ok) {
        double rms = sqrt(den / (double)(n > 0 ? n : 1)), lim = sqrt(tol) * (rms > 0 ? rms : 1);
        fprintf(stderr, "  %s: nmse %.3g > tol %.3g\n", what, nmse, tol);
        for (int64_t i = 0, shown = 0; i < n && shown < 5; i++)
            if (!(fabs((double)v[i] - r[i]) <= lim)) {
                fprintf(stderr, "    [%lld] ref %.9g cuda %.9g\n", (long long)i, r[i], v[i]);
                shown++;
            }
    }
    CHECK(ok);
    return ok;
}

/* |v - r| <= rel |r| + abs_tol elementwise. */
static bool close_f(const char *what, const float *r, const float *v, int64_t n, double rel,
                    double abs_tol) {
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++)
        if (!(fabs((double)v[i] - r[i]) <= rel * fabs((double)r[i]) + abs_tol)) {
            if (bad < 5)
                fprintf(stderr, "  %s [%lld] ref %.9g cuda %.9g\n", what, (long long)i, r[i], v[i]);
            bad++;
        }
    CHECK(bad == 0);
    return bad == 0;
}

static float *rnd(int64_t n, uint64_t seed) {
    float *x = malloc((size_t)n * sizeof(float));
    check_fill_random(x, n, seed);
    return x;
}

static uint16_t *rnd_codes(int64_t n, int K, uint64_t seed) {
    uint16_t *c = malloc((size_t)n * sizeof(uint16_t));
    uint64_t  s = seed * 0x9E3779B97F4A7C15ull + 7;
    for (int64_t i = 0; i < n; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        c[i] = (uint16_t)(s % (uint64_t)K);
    }
    return c;
}

/* ---- the ops ---------------------------------------------------------------------- */

static void test_mem_round_trip(void) {
    float  h[37], back[37];
    float *d = NULL;
    check_fill_random(h, 37, 3);
    CHECK(cu.mem_alloc(0) == NULL);
    d = cu.mem_alloc(sizeof(h));
    CHECK(d != NULL && ((uintptr_t)d & 63) == 0);
    cu.mem_copy(d, h, sizeof(h), LMP_COPY_HOST_TO_DEVICE);
    float *d2 = cu.mem_alloc(sizeof(h));
    cu.mem_copy(d2, d, sizeof(h), LMP_COPY_DEVICE_TO_DEVICE);
    cu.mem_copy(back, d2, sizeof(h), LMP_COPY_DEVICE_TO_HOST);
    CHECK(memcmp(h, back, sizeof(h)) == 0);
    cu.mem_free(d);
    cu.mem_free(d2);
    cu.mem_free(NULL);
    synced("mem");
}

/* sgemm: nmse 1e-10 against the double-accumulating reference (fp32 sums over k). */
static void sgemm_case(enum lmp_trans ta, enum lmp_trans tb, int64_t m, int64_t n, int64_t k,
                       float alpha, float beta, int64_t pad) {
    const int64_t lda = (ta ? m : k) + pad, ldb = (tb ? k : n) + pad, ldc = n + pad;
    const int64_t na = (ta ? k : m) * lda, nb = (tb ? n : k) * ldb, nc = m * ldc;
    float        *a = rnd(na, 11), *b = rnd(nb, 12), *c = rnd(nc, 13), *got = malloc(nc * 4);
    float        *da = up(a, na * 4), *db = up(b, nb * 4), *dc = up(c, nc * 4);
    if (beta == 0.0f) c[0] = NAN; /* must be ignored */
    if (beta == 0.0f) cu.mem_copy(dc, c, 4, LMP_COPY_HOST_TO_DEVICE);
    lmp_sgemm_ref(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    cu.sgemm(ta, tb, m, n, k, alpha, da, lda, db, ldb, beta, dc, ldc);
    if (synced("sgemm")) {
        down(got, dc, nc * 4);
        char what[96];
        snprintf(what, sizeof(what), "sgemm %c%c %lldx%lldx%lld", ta ? 'T' : 'N', tb ? 'T' : 'N',
                 (long long)m, (long long)n, (long long)k);
        compare_f(what, c, got, nc, 1e-10);
    }
    cu.mem_free(da), cu.mem_free(db), cu.mem_free(dc);
    free(a), free(b), free(c), free(got);
}

static void test_sgemm(void) {
    for (int t = 0; t < 4; t++) {
        sgemm_case(t & 1, t >> 1, 7, 5, 3, 1.0f, 0.0f, 0);
        sgemm_case(t & 1, t >> 1, 33, 17, 65, 0.5f, 1.5f, 3);
        sgemm_case(t & 1, t >> 1, 256, 192, 300, 1.0f, 0.0f, 0);
    }
    sgemm_case(LMP_NO_TRANS, LMP_NO_TRANS, 5, 4, 0, 1.0f, 2.0f, 1); /* k = 0: C = beta C */
}

/* gram_acc: relative 1e-12 of max |h| (both in double; another summation order). */
static void gram_case(int64_t n_tok, int64_t n_in) {
    float  *x = rnd(n_tok * n_in, 21);
    double *h = malloc(n_in * n_in * 8), *got = malloc(n_in * n_in * 8);
    for (int64_t a = 0; a < n_in; a++) /* a symmetric start */
        for (int64_t b = 0; b < n_in; b++) h[a * n_in + b] = 0.25 * (double)((a + b) % 7);
    float  *dx = up(x, n_tok * n_in * 4);
    double *dh = up(h, n_in * n_in * 8);
    lmp_gram_acc_ref(h, x, n_tok, n_in);
    cu.gram_acc(dh, dx, n_tok, n_in);
    if (synced("gram_acc")) {
        down(got, dh, n_in * n_in * 8);
        double mx = 0, err = 0;
        for (int64_t i = 0; i < n_in * n_in; i++) {
            mx  = fmax(mx, fabs(h[i]));
            err = fmax(err, fabs(h[i] - got[i]));
        }
        if (!(err <= 1e-12 * mx))
            fprintf(stderr, "  gram_acc %lldx%lld: max error %.3g of %.3g\n", (long long)n_tok,
                    (long long)n_in, err, mx);
        CHECK(err <= 1e-12 * mx);
        for (int64_t a = 0; a < n_in; a++) /* exactly symmetric */
            for (int64_t b = 0; b < a; b++) CHECK(got[a * n_in + b] == got[b * n_in + a]);
    }
    cu.mem_free(dx), cu.mem_free(dh);
    free(x), free(h), free(got);
}

static void test_gram_acc(void) {
    gram_case(7, 5);
    gram_case(5000, 96); /* more tokens than one widening chunk (4096) */
}

/* aq_decode: bit-exact (the reference's operations in its order). */
static void decode_case(struct lmp_aq_shape s) {
    const int64_t n_grp = s.n_in / s.g, nc = s.n_out * n_grp * s.M, ncb = (int64_t)s.M * s.K * s.g;
    uint16_t     *codes = rnd_codes(nc, s.K, 31);
    float        *cb = rnd(ncb, 32), *sc = rnd(s.n_out, 33), *w = malloc(s.n_out * s.n_in * 4),
          *got       = malloc(s.n_out * s.n_in * 4);
    uint16_t *dcodes = up(codes, nc * 2);
    float    *dcb = up(cb, ncb * 4), *dsc = up(sc, s.n_out * 4),
          *dw = cu.mem_alloc(s.n_out * s.n_in * 4);
    lmp_aq_decode_ref(w, codes, cb, sc, &s);
    cu.aq_decode(dw, dcodes, dcb, dsc, &s);
    if (synced("aq_decode")) {
        down(got, dw, s.n_out * s.n_in * 4);
        close_f("aq_decode", w, got, s.n_out * s.n_in, 0, 0);
    }
    cu.mem_free(dcodes), cu.mem_free(dcb), cu.mem_free(dsc), cu.mem_free(dw);
    free(codes), free(cb), free(sc), free(w), free(got);
}

static void test_aq_decode(void) {
    decode_case((struct lmp_aq_shape){.n_out = 3, .n_in = 24, .M = 2, .K = 16, .g = 8});
    decode_case((struct lmp_aq_shape){.n_out = 5, .n_in = 12, .M = 3, .K = 7, .g = 4});
    decode_case((struct lmp_aq_shape){.n_out = 576, .n_in = 1536, .M = 2, .K = 256, .g = 8});
    decode_case((struct lmp_aq_shape){.n_out = 64, .n_in = 256, .M = 1, .K = 65536, .g = 8});
}

/* aq_matvec: nmse 1e-10 (fp32 tables and codewords, double sums in another order). */
static void matvec_case(struct lmp_aq_shape s, int64_t n_batch) {
    const int64_t n_grp = s.n_in / s.g, nc = s.n_out * n_grp * s.M, ncb = (int64_t)s.M * s.K * s.g;
    uint16_t     *codes = rnd_codes(nc, s.K, 41);
    float        *cb = rnd(ncb, 42), *sc = rnd(s.n_out, 43), *x = rnd(n_batch * s.n_in, 44),
          *y = malloc(n_batch * s.n_out * 4), *got = malloc(n_batch * s.n_out * 4);
    uint16_t *dcodes = up(codes, nc * 2);
    float    *dcb = up(cb, ncb * 4), *dsc = up(sc, s.n_out * 4), *dx = up(x, n_batch * s.n_in * 4),
          *dy = cu.mem_alloc(n_batch * s.n_out * 4);
    CHECK(lmp_aq_matvec_ref(y, x, n_batch, codes, cb, sc, &s) == 0);
    CHECK(cu.aq_matvec(dy, dx, n_batch, dcodes, dcb, dsc, &s) == 0);
    if (synced("aq_matvec")) {
        down(got, dy, n_batch * s.n_out * 4);
        char what[96];
        snprintf(what, sizeof(what), "aq_matvec %lldx%lld M%d K%d g%d batch %lld",
                 (long long)s.n_out, (long long)s.n_in, s.M, s.K, s.g, (long long)n_batch);
        compare_f(what, y, got, n_batch * s.n_out, 1e-10);
    }
    cu.mem_free(dcodes), cu.mem_free(dcb), cu.mem_free(dsc), cu.mem_free(dx), cu.mem_free(dy);
    free(codes), free(cb), free(sc), free(x), free(y), free(got);
}

static void test_aq_matvec(void) {
    matvec_case((struct lmp_aq_shape){.n_out = 3, .n_in = 24, .M = 2, .K = 16, .g = 8}, 1);
    matvec_case((struct lmp_aq_shape){.n_out = 37, .n_in = 60, .M = 3, .K = 5, .g = 4}, 3);
    matvec_case((struct lmp_aq_shape){.n_out = 576, .n_in = 1536, .M = 2, .K = 256, .g = 8}, 4);
    matvec_case((struct lmp_aq_shape){.n_out = 64, .n_in = 256, .M = 1, .K = 65536, .g = 8}, 2);
    matvec_case((struct lmp_aq_shape){.n_out = 9, .n_in = 40, .M = 2, .K = 300, .g = 8}, 5);
}

/* kmeans_assign: a nearest centroid for every point: the distance to the chosen centroid
 * within 1e-6 relative of the reference's (the same point where no two centroids tie). */
static void test_kmeans_assign(void) {
    const int64_t n = 1001, K = 37;
    const int     g   = 8;
    float        *pts = rnd(n * g, 51), *cent = rnd(K * g, 52), *d2 = malloc(n * 4),
          *got_d2 = malloc(n * 4);
    int32_t *as = malloc(n * 4), *got = malloc(n * 4);
    float   *dp = up(pts, n * g * 4), *dc = up(cent, K * g * 4), *dd = cu.mem_alloc(n * 4);
    int32_t *da = cu.mem_alloc(n * 4);
    lmp_kmeans_assign_ref(as, d2, pts, n, cent, K, g);
    cu.kmeans_assign(da, dd, dp, n, dc, K, g);
    if (synced("kmeans_assign")) {
        down(got, da, n * 4);
        down(got_d2, dd, n * 4);
        int64_t same = 0;
        for (int64_t i = 0; i < n; i++) same += as[i] == got[i];
        if (same != n)
            fprintf(stderr, "  kmeans_assign: %lld of %lld the same centroid\n", (long long)same,
                    (long long)n);
        close_f("kmeans_assign dist2", d2, got_d2, n, 1e-6, 0);
    }
    cu.mem_free(dp), cu.mem_free(dc), cu.mem_free(dd), cu.mem_free(da);
    free(pts), free(cent), free(d2), free(got_d2), free(as), free(got);
}

/* kmeans_update: the reference's centroids (same sums, same order) within 1e-6 relative; a
 * centroid with no points keeps its value. With and without weights. */
static void test_kmeans_update(void) {
    const int64_t n = 777, K = 41;
    const int     g = 8;
    for (int wt = 0; wt < 2; wt++) {
        float *pts = rnd(n * g, 55), *cent = rnd(K * g, 56), *w = rnd(n, 57),
              *got  = malloc(K * g * 4);
        int32_t *as = malloc(n * 4);
        for (int64_t i = 0; i < n; i++) as[i] = (int32_t)((i * 7) % (K - 1)), w[i] += 1.5f;
        float   *dp = up(pts, n * g * 4), *dc = up(cent, K * g * 4), *dw = up(w, n * 4);
        int32_t *da = up(as, n * 4);
        lmp_kmeans_update_ref(cent, pts, wt ? w : NULL, as, n, K, g);
        cu.kmeans_update(dc, dp, wt ? dw : NULL, da, n, K, g);
        if (synced("kmeans_update")) {
            down(got, dc, K * g * 4);
            close_f(wt ? "kmeans_update weighted" : "kmeans_update", cent, got, K * g, 1e-6, 0);
        }
        cu.mem_free(dp), cu.mem_free(dc), cu.mem_free(dw), cu.mem_free(da);
        free(pts), free(cent), free(w), free(got), free(as);
    }
}

/* aq_grad_dw: g_cb within 1e-6 relative (+1e-7; the reference's order), g_scale nmse 1e-10. */
static void grad_dw_case(struct lmp_aq_shape s) {
    const int64_t n_grp = s.n_in / s.g, nc = s.n_out * n_grp * s.M, ncb = (int64_t)s.M * s.K * s.g;
    uint16_t     *codes = rnd_codes(nc, s.K, 121);
    float        *cb = rnd(ncb, 122), *sc = rnd(s.n_out, 123), *dw = rnd(s.n_out * s.n_in, 124),
          *gcb = malloc(ncb * 4), *gsc = malloc(s.n_out * 4), *got_cb = malloc(ncb * 4),
          *got_sc    = malloc(s.n_out * 4);
    uint16_t *dcodes = up(codes, nc * 2);
    float *dcb = up(cb, ncb * 4), *dsc = up(sc, s.n_out * 4), *ddw = up(dw, s.n_out * s.n_in * 4),
          *dgcb = cu.mem_alloc(ncb * 4), *dgsc = cu.mem_alloc(s.n_out * 4);
    CHECK(lmp_aq_grad_dw_ref(gcb, gsc, dw, codes, cb, sc, &s) == 0);
    CHECK(cu.aq_grad_dw(dgcb, dgsc, ddw, dcodes, dcb, dsc, &s) == 0);
    if (synced("aq_grad_dw")) {
        down(got_cb, dgcb, ncb * 4);
        down(got_sc, dgsc, s.n_out * 4);
        close_f("aq_grad_dw g_cb", gcb, got_cb, ncb, 1e-6, 1e-7);
        compare_f("aq_grad_dw g_scale", gsc, got_sc, s.n_out, 1e-10);
    }
    cu.mem_free(dcodes), cu.mem_free(dcb), cu.mem_free(dsc), cu.mem_free(ddw);
    cu.mem_free(dgcb), cu.mem_free(dgsc);
    free(codes), free(cb), free(sc), free(dw), free(gcb), free(gsc), free(got_cb), free(got_sc);
}

static float *make_h(int64_t n); /* below */

/* aq_grad: loss within 1e-12 relative (double, another summation order), g_cb and g_scale
 * nmse 1e-10 (double sums rounded to fp32 once). */
static void grad_case(struct lmp_aq_shape s) {
    const int64_t n_grp = s.n_in / s.g, nc = s.n_out * n_grp * s.M, ncb = (int64_t)s.M * s.K * s.g;
    uint16_t     *codes = rnd_codes(nc, s.K, 131);
    float        *cb = rnd(ncb, 132), *sc = rnd(s.n_out, 133), *w = rnd(s.n_out * s.n_in, 134),
          *h = make_h(s.n_in), *gcb = malloc(ncb * 4), *gsc = malloc(s.n_out * 4),
          *got_cb = malloc(ncb * 4), *got_sc = malloc(s.n_out * 4);
    double    loss = 0, got_loss = 0;
    uint16_t *dcodes = up(codes, nc * 2);
    float    *dcb = up(cb, ncb * 4), *dsc = up(sc, s.n_out * 4), *dw = up(w, s.n_out * s.n_in * 4),
          *dh = up(h, s.n_in * s.n_in * 4), *dgcb = cu.mem_alloc(ncb * 4),
          *dgsc   = cu.mem_alloc(s.n_out * 4);
    double *dloss = cu.mem_alloc(8);
    CHECK(lmp_aq_grad_ref(&loss, gcb, gsc, codes, w, sc, cb, h, &s) == 0);
    CHECK(cu.aq_grad(dloss, dgcb, dgsc, dcodes, dw, dsc, dcb, dh, &s) == 0);
    if (synced("aq_grad")) {
        down(&got_loss, dloss, 8);
        down(got_cb, dgcb, ncb * 4);
        down(got_sc, dgsc, s.n_out * 4);
        if (!(fabs(got_loss - loss) <= 1e-12 * fabs(loss)))
            fprintf(stderr, "  aq_grad loss: ref %.17g cuda %.17g\n", loss, got_loss);
        CHECK(fabs(got_loss - loss) <= 1e-12 * fabs(loss));
        compare_f("aq_grad g_cb", gcb, got_cb, ncb, 1e-10);
        compare_f("aq_grad g_scale", gsc, got_sc, s.n_out, 1e-10);
    }
    cu.mem_free(dcodes), cu.mem_free(dcb), cu.mem_free(dsc), cu.mem_free(dw), cu.mem_free(dh);
    cu.mem_free(dgcb), cu.mem_free(dgsc), cu.mem_free(dloss);
    free(codes), free(cb), free(sc), free(w), free(h), free(gcb), free(gsc), free(got_cb),
        free(got_sc);
}

static void test_aq_grad(void) {
    grad_case((struct lmp_aq_shape){.n_out = 3, .n_in = 24, .M = 2, .K = 16, .g = 8});
    grad_case((struct lmp_aq_shape){.n_out = 37, .n_in = 60, .M = 3, .K = 5, .g = 4});
    grad_case((struct lmp_aq_shape){.n_out = 192, .n_in = 576, .M = 2, .K = 256, .g = 8});
}

static void test_aq_grad_dw(void) {
    grad_dw_case((struct lmp_aq_shape){.n_out = 3, .n_in = 24, .M = 2, .K = 16, .g = 8});
    grad_dw_case((struct lmp_aq_shape){.n_out = 37, .n_in = 60, .M = 3, .K = 5, .g = 4});
    grad_dw_case((struct lmp_aq_shape){.n_out = 192, .n_in = 576, .M = 2, .K = 256, .g = 8});
}

/* A positive definite H (n, n): X^T X / n_tok + 0.1 I. */
static float *make_h(int64_t n) {
    const int64_t n_tok = 2 * n;
    float        *x = rnd(n_tok * n, 61), *h = malloc(n * n * 4);
    double       *hd = calloc(n * n, 8);
    lmp_gram_acc_ref(hd, x, n_tok, n);
    for (int64_t i = 0; i < n * n; i++) h[i] = (float)(hd[i] / n_tok) + (i % (n + 1) == 0) * 0.1f;
    free(x), free(hd);
    return h;
}

/* aq_beam: objective of the CUDA codes <= the reference's (1 + 1e-9) (+1e-9 absolute),
 * and the returned loss is the objective of the returned codes (relative 1e-9). */
static void beam_case(struct lmp_aq_shape s, int beam, bool with_order) {
    const int64_t n_grp = s.n_in / s.g, nc = s.n_out * n_grp * s.M, ncb = (int64_t)s.M * s.K * s.g;
    uint16_t     *codes = rnd_codes(nc, s.K, 71), *got = malloc(nc * 2);
    float        *cb = rnd(ncb, 72), *sc = rnd(s.n_out, 73), *w = rnd(s.n_out * s.n_in, 74),
          *h       = make_h(s.n_in);
    uint8_t *order = NULL;
    if (with_order) { /* a fixed permutation per group: rotate by j */
        order = malloc(n_grp * s.M);
        for (int64_t j = 0; j < n_grp; j++)
            for (int m = 0; m < s.M; m++) order[j * s.M + m] = (uint8_t)((m + j) % s.M);
    }
    double   *loss_ref = malloc(s.n_out * 8), *loss_cu = malloc(s.n_out * 8);
    uint16_t *dcodes = up(codes, nc * 2);
    float    *dcb = up(cb, ncb * 4), *dsc = up(sc, s.n_out * 4), *dw = up(w, s.n_out * s.n_in * 4),
          *dh       = up(h, s.n_in * s.n_in * 4);
    uint8_t *dorder = order ? up(order, n_grp * s.M) : NULL;
    double  *dloss  = cu.mem_alloc(s.n_out * 8);
    CHECK(lmp_aq_beam_ref(codes, loss_ref, w, sc, cb, h, &s, beam, order) == 0);
    CHECK(cu.aq_beam(dcodes, dloss, dw, dsc, dcb, dh, &s, beam, dorder) == 0);
    if (synced("aq_beam")) {
        down(got, dcodes, nc * 2);
        down(loss_cu, dloss, s.n_out * 8);
        double lr = 0, lc = 0, lr_codes = 0, lc_codes = 0;
        float *g_cb = malloc(ncb * 4), *g_sc = malloc(s.n_out * 4);
        for (int64_t o = 0; o < s.n_out; o++) lr += loss_ref[o], lc += loss_cu[o];
        CHECK(lmp_aq_grad_ref(&lr_codes, g_cb, g_sc, codes, w, sc, cb, h, &s) == 0);
        CHECK(lmp_aq_grad_ref(&lc_codes, g_cb, g_sc, got, w, sc, cb, h, &s) == 0);
        int64_t same = 0;
        for (int64_t i = 0; i < nc; i++) same += got[i] == codes[i];
        fprintf(stderr,
                "  aq_beam %lldx%lld M%d K%d g%d beam %d%s: objective ref %.10g cuda %.10g "
                "(running loss ref %.10g cuda %.10g), %.1f%% codes equal\n",
                (long long)s.n_out, (long long)s.n_in, s.M, s.K, s.g, beam,
                with_order ? " m_order" : "", lr_codes, lc_codes, lr, lc,
                100.0 * (double)same / (double)nc);
        CHECK(lc_codes <= lr_codes * (1 + 1e-9) + 1e-9);
        /* the running loss drifts from the recomputed objective (fp32 H and codebooks, rank-g
         * updates): ~1e-8 relative in the reference too */
        CHECK(fabs(lc - lc_codes) <= 1e-6 * fabs(lc_codes) + 1e-9);
        CHECK(fabs(lc - lr) <= 1e-6 * fabs(lr) + 1e-9);
        free(g_cb), free(g_sc);
    }
    cu.mem_free(dcodes), cu.mem_free(dcb), cu.mem_free(dsc), cu.mem_free(dw), cu.mem_free(dh);
    cu.mem_free(dorder), cu.mem_free(dloss);
    free(codes), free(got), free(cb), free(sc), free(w), free(h), free(order), free(loss_ref),
        free(loss_cu);
}

static void test_aq_beam(void) {
    beam_case((struct lmp_aq_shape){.n_out = 3, .n_in = 24, .M = 2, .K = 16, .g = 8}, 1, false);
    beam_case((struct lmp_aq_shape){.n_out = 5, .n_in = 24, .M = 2, .K = 16, .g = 8}, 4, true);
    beam_case((struct lmp_aq_shape){.n_out = 7, .n_in = 20, .M = 3, .K = 9, .g = 4}, 3, true);
    beam_case((struct lmp_aq_shape){.n_out = 16, .n_in = 128, .M = 2, .K = 256, .g = 8}, 8, false);
}

/* forward ops: elementwise relative 1e-6 (+1e-7 absolute): the device's expf and the
 * row sums' order differ from the host's by a few ulp. */
static void test_rmsnorm(void) {
    const int64_t rows = 5, dim = 577;
    float        *x = rnd(rows * dim, 81), *w = rnd(dim, 82), *out = malloc(rows * dim * 4),
          *got = malloc(rows * dim * 4);
    float *dx = up(x, rows * dim * 4), *dw = up(w, dim * 4), *dout = cu.mem_alloc(rows * dim * 4);
    lmp_rmsnorm_ref(out, x, w, rows, dim, 1e-5f);
    lmp_rmsnorm_cuda(dout, dx, dw, rows, dim, 1e-5f);
    if (synced("rmsnorm")) {
        down(got, dout, rows * dim * 4);
        close_f("rmsnorm", out, got, rows * dim, 1e-6, 1e-7);
    }
    cu.mem_free(dx), cu.mem_free(dw), cu.mem_free(dout);
    free(x), free(w), free(out), free(got);
}

static void test_rope(void) {
    const int64_t n_tok = 6, rows = 12, hd = 64, half = hd / 2, n_pos = 40, pos0 = 3;
    const int     n_heads = 3;
    float        *cs = malloc(n_pos * half * 4), *sn = malloc(n_pos * half * 4);
    for (int64_t p = 0; p < n_pos; p++)
        for (int64_t i = 0; i < half; i++) {
            double th        = (double)p * pow(10000.0, -2.0 * (double)i / (double)hd);
            cs[p * half + i] = (float)cos(th), sn[p * half + i] = (float)sin(th);
        }
    for (int il = 0; il < 2; il++) {
        float *x = rnd(rows * n_heads * hd, 91 + il), *got = malloc(rows * n_heads * hd * 4);
        float *dx = up(x, rows * n_heads * hd * 4), *dcs = up(cs, n_pos * half * 4),
              *dsn = up(sn, n_pos * half * 4);
        lmp_rope_ref(x, rows, n_heads, hd, cs, sn, pos0, n_tok, il);
        lmp_rope_cuda(dx, rows, n_heads, hd, dcs, dsn, pos0, n_tok, il);
        if (synced("rope")) {
            down(got, dx, rows * n_heads * hd * 4);
            close_f(il ? "rope interleaved" : "rope halves", x, got, rows * n_heads * hd, 1e-6,
                    1e-7);
        }
        cu.mem_free(dx), cu.mem_free(dcs), cu.mem_free(dsn);
        free(x), free(got);
    }
    free(cs), free(sn);
}

static void test_swiglu(void) {
    const int64_t n = 4099;
    float        *g = rnd(n, 101), *u = rnd(n, 102), *got = malloc(n * 4);
    for (int64_t i = 0; i < n; i++) g[i] *= 12.0f; /* the sigmoid's tails too */
    float *dg = up(g, n * 4), *du = up(u, n * 4);
    lmp_swiglu_ref(g, u, n);
    lmp_swiglu_cuda(dg, du, n);
    if (synced("swiglu")) {
        down(got, dg, n * 4);
        close_f("swiglu", g, got, n, 1e-6, 1e-7);
    }
    cu.mem_free(dg), cu.mem_free(du);
    free(g), free(u), free(got);
}

static void test_softmax(void) {
    const int64_t rows = 7, n = 1003;
    float        *x = rnd(rows * n, 111), *got = malloc(rows * n * 4);
    for (int64_t i = 0; i < rows * n; i++) x[i] *= 20.0f;
    float *dx = up(x, rows * n * 4);
    lmp_softmax_ref(x, rows, n);
    lmp_softmax_cuda(dx, rows, n);
    if (synced("softmax")) {
        down(got, dx, rows * n * 4);
        close_f("softmax", x, got, rows * n, 1e-6, 1e-9);
    }
    cu.mem_free(dx);
    free(x), free(got);
}

/* ---- --perf ----------------------------------------------------------------------- */

static FILE                *perf_out;
static struct lmp_cuda_info dev_info;

/* Time reps calls of op (after one warm-up), report the best, with flops or bytes. */
#define PERF(name, shape, flops, bytes, reps, call)                                                \
    do {                                                                                           \
        call;                                                                                      \
        synced(name);                                                                              \
        double best_ = 1e30;                                                                       \
        for (int r_ = 0; r_ < (reps); r_++) {                                                      \
            double t0_ = now_s();                                                                  \
            call;                                                                                  \
            if (!synced(name)) break;                                                              \
            double t_ = now_s() - t0_;                                                             \
            best_     = t_ < best_ ? t_ : best_;                                                   \
        }                                                                                          \
        perf_row(name, shape, best_, (double)(flops), (double)(bytes));                            \
    } while (0)

static void perf_row(const char *op, const char *shape, double s, double flops, double bytes) {
    const double gf = flops / s / 1e9, gb = bytes / s / 1e9;
    const double pf = dev_info.peak_fp32 > 0 ? flops / s / dev_info.peak_fp32 : 0;
    const double pb = dev_info.peak_bw > 0 ? bytes / s / dev_info.peak_bw : 0;
    fprintf(perf_out, "%s\t%s\t%.4f\t%.1f\t%.3f\t%.1f\t%.3f\n", op, shape, s * 1e3, gf, pf, gb, pb);
    fflush(perf_out);
}

static void perf(const char *path) {
    perf_out = path ? fopen(path, "a") : stdout;
    if (perf_out == NULL) {
        perror(path);
        CHECK(!"cannot open the --perf file");
        return;
    }
    struct lmp_err err = {0};
    if (lmp_cuda_device_info(0, &dev_info, &err) != LMP_OK) fprintf(stderr, "%s\n", err.msg);
    fprintf(perf_out, "# %s, cc %d, %d SMs, nominal %.1f TFLOP/s fp32, %.0f GB/s\n", dev_info.name,
            dev_info.cc, dev_info.n_sm, dev_info.peak_fp32 / 1e12, dev_info.peak_bw / 1e9);
    fprintf(perf_out, "op\tshape\tms\tGFLOP/s\tfrac_peak_flops\tGB/s\tfrac_peak_bw\n");
    { /* sgemm 4096^3 */
        const int64_t n = 4096;
        float        *a = cu.mem_alloc(n * n * 4), *b = cu.mem_alloc(n * n * 4),
              *c = cu.mem_alloc(n * n * 4);
        lmp_cuda_zero(a, n * n * 4), lmp_cuda_zero(b, n * n * 4);
        PERF("sgemm", "4096x4096x4096", 2.0 * n * n * n, 3.0 * n * n * 4, 5,
             cu.sgemm(LMP_NO_TRANS, LMP_TRANS, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n));
        /* gram 4096 tokens x 4096 (dsyrk: n_in^2 n_tok flops in double; peak is fp32's) */
        double *h = cu.mem_alloc(n * n * 8);
        lmp_cuda_zero(h, n * n * 8);
        PERF("gram_acc", "4096x4096 (fp64)", 1.0 * n * n * n, 1.0 * n * n * 4 + 2.0 * n * n * 8, 3,
             cu.gram_acc(h, a, n, n));
        cu.mem_free(h);
        cu.mem_free(a), cu.mem_free(b), cu.mem_free(c);
    }
    { /* AQLM 2x8g8 on a 4096x4096 layer */
        struct lmp_aq_shape s  = {.n_out = 4096, .n_in = 4096, .M = 2, .K = 256, .g = 8};
        const int64_t       nc = s.n_out * (s.n_in / s.g) * s.M, ncb = (int64_t)s.M * s.K * s.g;
        uint16_t           *codes  = rnd_codes(nc, s.K, 5);
        float              *cb     = rnd(ncb, 6);
        uint16_t           *dcodes = up(codes, nc * 2);
        float              *dcb = up(cb, ncb * 4), *dsc = cu.mem_alloc(s.n_out * 4),
              *dw = cu.mem_alloc(s.n_out * s.n_in * 4), *dx = cu.mem_alloc(16 * s.n_in * 4),
              *dy = cu.mem_alloc(16 * s.n_out * 4);
        lmp_cuda_zero(dsc, s.n_out * 4), lmp_cuda_zero(dx, 16 * s.n_in * 4);
        PERF("aq_decode", "4096x4096 2x8g8", 0, nc * 2.0 + s.n_out * s.n_in * 4.0, 5,
             cu.aq_decode(dw, dcodes, dcb, dsc, &s));
        PERF("aq_matvec", "4096x4096 2x8g8 batch 1", 2.0 * s.n_out * s.n_in, nc * 2.0, 5,
             cu.aq_matvec(dy, dx, 1, dcodes, dcb, dsc, &s));
        PERF("aq_matvec", "4096x4096 2x8g8 batch 16", 32.0 * s.n_out * s.n_in, nc * 2.0, 5,
             cu.aq_matvec(dy, dx, 16, dcodes, dcb, dsc, &s));
        float *dgcb = cu.mem_alloc(ncb * 4), *dgsc = cu.mem_alloc(s.n_out * 4);
        PERF("aq_grad_dw", "4096x4096 2x8g8", 0, s.n_out * s.n_in * 4.0 + nc * 2.0, 3,
             cu.aq_grad_dw(dgcb, dgsc, dw, dcodes, dcb, dsc, &s));
        cu.mem_free(dgcb), cu.mem_free(dgsc);
        /* beam search: 256 rows, beam 8; flops as bench_kernels counts them (docs/kernels.md) */
        struct lmp_aq_shape sb = s;
        sb.n_out               = 256;
        const int64_t P = s.n_in / s.g * s.M, b = 8;
        float        *h = make_h(s.n_in), *dh = up(h, s.n_in * s.n_in * 4);
        const double  fl = 2.0 * sb.n_out * s.n_in * s.n_in + (double)P * s.K * (2.0 * 64 + 16) +
                          (double)sb.n_out * P * b * 2 * s.K * s.g +
                          (double)sb.n_out * b * s.n_in * (s.n_in - s.g);
        PERF("aq_beam", "256x4096 2x8g8 beam 8", fl, 0, 1,
             cu.aq_beam(dcodes, NULL, dw, dsc, dcb, dh, &sb, (int)b, NULL));
        /* the codebook update's gradient: r H (fp64 GEMM) dominates; peak is fp32's */
        float  *dgcb2 = cu.mem_alloc(ncb * 4), *dgsc2 = cu.mem_alloc(s.n_out * 4);
        double *dl = cu.mem_alloc(8);
        PERF("aq_grad", "4096x4096 2x8g8 (fp64)", 2.0 * s.n_out * s.n_in * s.n_in,
             s.n_out * s.n_in * 4.0 + s.n_in * s.n_in * 4.0, 3,
             cu.aq_grad(dl, dgcb2, dgsc2, dcodes, dw, dsc, dcb, dh, &s));
        cu.mem_free(dgcb2), cu.mem_free(dgsc2), cu.mem_free(dl);
        cu.mem_free(dh), free(h);
        cu.mem_free(dcodes), cu.mem_free(dcb), cu.mem_free(dsc), cu.mem_free(dw);
        cu.mem_free(dx), cu.mem_free(dy);
        free(codes), free(cb);
    }
    { /* forward ops on 4096 rows x 4096 */
        const int64_t rows = 4096, dim = 4096;
        float        *x = cu.mem_alloc(rows * dim * 4), *o = cu.mem_alloc(rows * dim * 4),
              *w = cu.mem_alloc(dim * 4);
        lmp_cuda_zero(x, rows * dim * 4), lmp_cuda_zero(w, dim * 4);
        PERF("rmsnorm", "4096x4096", 3.0 * rows * dim, 2.0 * rows * dim * 4, 5,
             lmp_rmsnorm_cuda(o, x, w, rows, dim, 1e-5f));
        PERF("swiglu", "16M", 0, 3.0 * rows * dim * 4, 5, lmp_swiglu_cuda(o, x, rows * dim));
        PERF("softmax", "4096x4096", 0, 3.0 * rows * dim * 4, 5, lmp_softmax_cuda(o, rows, dim));
        float *cs = cu.mem_alloc(4096 * 64 * 4);
        lmp_cuda_zero(cs, 4096 * 64 * 4);
        PERF("rope", "4096 rows x 32 heads x 128", 0, 2.0 * rows * dim * 4, 5,
             lmp_rope_cuda(o, rows, 32, 128, cs, cs, 0, rows, false));
        cu.mem_free(cs), cu.mem_free(x), cu.mem_free(o), cu.mem_free(w);
    }
    if (path) fclose(perf_out);
}
#endif /* LMP_HAVE_CUDA */

int main(int argc, char **argv) {
    bool        want_perf = argc > 1 && strcmp(argv[1], "--perf") == 0;
    const char *perf_path = want_perf && argc > 2 ? argv[2] : NULL;
    RUN(test_device_names);
#ifndef LMP_HAVE_CUDA
    (void)perf_path;
    RUN(test_device_cuda_refused_without_gpu);
    if (check_failures == 0) {
        fprintf(stderr, "SKIP: built without CUDA (cmake -DLMP_CUDA=ON): no CUDA table to test\n");
        return 77;
    }
    return 1;
#else
    int            n_dev = 0;
    struct lmp_err err   = {0};
    if (lmp_cuda_devices(&n_dev, &err) != LMP_OK) {
        RUN(test_device_cuda_refused_without_gpu);
        RUN(test_cuda_table_refused_without_gpu);
        if (check_failures) return 1;
        /* not check_skip(): a GPU is never a prerequisite, CI=true included */
        fprintf(stderr, "SKIP: %s: the CUDA table was not compared with the references\n", err.msg);
        return 77;
    }
    if (lmp_kernels_init_cuda(&cu, 0, &err) != LMP_OK) {
        fprintf(stderr, "FAIL: %s\n", err.msg);
        return 1;
    }
    RUN(test_mem_round_trip);
    RUN(test_sgemm);
    RUN(test_gram_acc);
    RUN(test_aq_decode);
    RUN(test_aq_matvec);
    RUN(test_kmeans_assign);
    RUN(test_kmeans_update);
    RUN(test_aq_grad_dw);
    RUN(test_aq_grad);
    RUN(test_aq_beam);
    RUN(test_rmsnorm);
    RUN(test_rope);
    RUN(test_swiglu);
    RUN(test_softmax);
    if (want_perf) perf(perf_path);
    lmp_cuda_thread_release();
    return check_report();
#endif
}
