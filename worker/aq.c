/*  aq - see aq.h */
#include "worker/aq.h"
#include "kernels/kernels.h" /* defines: lmp_kernels_get(), struct lmp_aq_shape */
#include "base/cancel.h"     /* defines: lmp_cancelled */
#include "base/text.h"       /* defines: lmp_str_escape */

#include <assert.h>
#include <ctype.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static struct lmp_aq_shape shape_of(const struct lmp_aq_scheme *sc, int64_t n_rows, int64_t n_in) {
    return (struct lmp_aq_shape){.n_out = n_rows, .n_in = n_in, .M = sc->M, .K = sc->K, .g = sc->g};
}

/* ---- scheme ------------------------------------------------------------------------ */

static int parse_uint(const char **p, long *out) {
    if (!isdigit((unsigned char)**p)) return 0;
    char *end;
    *out = strtol(*p, &end, 10);
    if (end - *p > 6) return 0;
    *p = end;
    return 1;
}

enum lmp_status lmp_aq_scheme_parse(struct lmp_aq_scheme *sc, const char *text,
                                    struct lmp_err *err) {
    assert(sc);
    long        M, B, G;
    const char *p = text ? text : "";
    char        q[48]; /* the text as a message may quote it (a client's or a JOB file's) */
    if (!parse_uint(&p, &M) || *p++ != 'x' || !parse_uint(&p, &B) || *p++ != 'g' ||
        !parse_uint(&p, &G) || *p != '\0')
        return lmp_err_set(err, LMP_EINVAL, "invalid AQ scheme '%s': expected MxBgG, e.g. 2x8g8",
                           text ? lmp_str_escape(q, sizeof(q), text) : "(null)");
    if (M < 1 || M > 8 || B < 1 || B > 16 || G < 1 || G > 64)
        return lmp_err_set(err, LMP_EINVAL,
                           "invalid AQ scheme '%s': need 1 <= M <= 8 codebooks, 1 <= B <= 16 bits, "
                           "1 <= G <= 64 group size",
                           lmp_str_escape(q, sizeof(q), text));
    *sc = (struct lmp_aq_scheme){.M = (int)M, .B = (int)B, .g = (int)G, .K = 1 << B};
    return LMP_OK;
}

enum lmp_status lmp_aq_scheme_check(const struct lmp_aq_scheme *sc, int64_t n_out, int64_t n_in,
                                    struct lmp_err *err) {
    if (n_out <= 0 || n_in <= 0)
        return lmp_err_set(err, LMP_EINVAL, "invalid layer shape %lld x %lld", (long long)n_out,
                           (long long)n_in);
    if (n_in % sc->g != 0)
        return lmp_err_set(err, LMP_EINVAL,
                           "AQ scheme %dx%dg%d: group size %d does not divide n_in %lld", sc->M,
                           sc->B, sc->g, sc->g, (long long)n_in);
    return LMP_OK;
}

double lmp_aq_bits_per_weight(const struct lmp_aq_scheme *sc, int64_t n_out, int64_t n_in) {
    double n          = (double)n_out * (double)n_in;
    double code_bits  = n / sc->g * sc->M * sc->B;
    double cb_bits    = (double)sc->M * (double)sc->K * sc->g * 16.0;
    double scale_bits = (double)n_out * 16.0;
    return (code_bits + cb_bits + scale_bits) / n;
}

/* ---- H and errors -------------------------------------------------------------------- */

enum lmp_status lmp_aq_check_h(const float *h, int64_t n_in, struct lmp_err *err) {
    double tr = 0.0;
    for (int64_t a = 0; a < n_in; a++)
        for (int64_t b = 0; b < n_in; b++)
            if (!isfinite(h[a * n_in + b]))
                return lmp_err_set(err, LMP_EINVAL, "H has a non-finite entry at (%lld, %lld)",
                                   (long long)a, (long long)b);
    for (int64_t a = 0; a < n_in; a++) {
        if (h[a * n_in + a] < 0.0f)
            return lmp_err_set(err, LMP_EINVAL,
                               "H has a negative diagonal entry at %lld: not a Gram matrix",
                               (long long)a);
        tr += h[a * n_in + a];
    }
    if (!(tr > 0.0)) return lmp_err_set(err, LMP_EINVAL, "H is zero: no calibration signal");
    return LMP_OK;
}

/* *out = sum_o a_o H a_o^T for a (n_out, n_in), via sgemm in row blocks. */
static enum lmp_status quad_form(double *out, const float *a, const float *h, int64_t n_out,
                                 int64_t n_in) {
    const int64_t blk = 256;
    float        *t   = malloc((size_t)(blk * n_in) * sizeof(float));
    if (t == NULL) return LMP_ENOMEM;
    double L = 0.0;
    for (int64_t o0 = 0; o0 < n_out; o0 += blk) {
        int64_t nb = n_out - o0 < blk ? n_out - o0 : blk;
        lmp_kernels_get()->sgemm(LMP_NO_TRANS, LMP_NO_TRANS, nb, n_in, n_in, 1.0f, a + o0 * n_in,
                                 n_in, h, n_in, 0.0f, t, n_in);
        for (int64_t i = 0; i < nb * n_in; i++) L += (double)a[o0 * n_in + i] * t[i];
    }
    free(t);
    *out = L;
    return LMP_OK;
}

enum lmp_status lmp_aq_rel_err(double *rel, const float *w, const float *w_hat, const float *h,
                               int64_t n_out, int64_t n_in) {
    float *r = malloc((size_t)(n_out * n_in) * sizeof(float));
    if (r == NULL) return LMP_ENOMEM;
    for (int64_t i = 0; i < n_out * n_in; i++) r[i] = w[i] - w_hat[i];
    double          num = 0.0, den = 0.0;
    enum lmp_status st = quad_form(&num, r, h, n_out, n_in);
    if (st == LMP_OK) st = quad_form(&den, w, h, n_out, n_in);
    free(r);
    if (st != LMP_OK) return st;
    if (!(den > 0.0)) return LMP_EINVAL;
    *rel = (num > 0.0 ? num : 0.0) / den; /* rounding can leave a PSD form slightly negative */
    return LMP_OK;
}

/* ---- slice primitives -------------------------------------------------------------- */

void lmp_aq_scales_from_rows(float *scale, const float *w, int64_t n_rows, int64_t n_in) {
    for (int64_t o = 0; o < n_rows; o++) {
        double s = 0.0;
        for (int64_t i = 0; i < n_in; i++) s += (double)w[o * n_in + i] * w[o * n_in + i];
        scale[o] = s > 0.0 ? (float)sqrt(s) : 1.0f;
    }
}

static uint64_t rng_next(uint64_t *s) { /* splitmix64 */
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z          = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z          = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

enum lmp_status lmp_aq_kmeans_init(float *cb, uint16_t *codes, const float *w, const float *scale,
                                   const float *h, int64_t n_rows, int64_t n_in,
                                   const struct lmp_aq_scheme *sc, int iters, int64_t max_points,
                                   uint64_t seed, struct lmp_err *err) {
    const struct lmp_kernels *kt = lmp_kernels_get();
    const int                 g = sc->g, M = sc->M;
    const int64_t             K = sc->K, n_grp = n_in / g, N = n_rows * n_grp;
    int64_t                   S   = max_points > 0 && max_points < N ? max_points : N;
    enum lmp_status           st  = LMP_OK;
    float                    *res = malloc((size_t)(N * g) * sizeof(float)); /* residual points */
    float                    *wts = h ? malloc((size_t)N * sizeof(float)) : NULL;
    float                    *sp  = malloc((size_t)(S * g) * sizeof(float));
    float   *sw   = h ? malloc((size_t)S * sizeof(float)) : NULL; /* NULL: unweighted */
    int64_t *perm = malloc((size_t)N * sizeof(int64_t));
    int32_t *as   = malloc((size_t)N * sizeof(int32_t));
    if (!res || (h && (!wts || !sw)) || !sp || !perm || !as) {
        st = lmp_err_set(err, LMP_ENOMEM, "out of memory for k-means on %lld groups", (long long)N);
        goto out;
    }
    for (int64_t o = 0; o < n_rows; o++)
        for (int64_t j = 0; j < n_grp; j++) {
            double tr = 0.0;
            for (int t = 0; t < g; t++) {
                res[(o * n_grp + j) * g + t] = w[o * n_in + j * g + t] / scale[o];
                if (h) tr += h[(j * g + t) * n_in + j * g + t];
            }
            if (h) wts[o * n_grp + j] = (float)((double)scale[o] * scale[o] * tr / g + 1e-30);
        }
    uint64_t rs = seed;
    for (int64_t i = 0; i < N; i++) perm[i] = i;
    for (int64_t i = 0; i < S; i++) { /* partial Fisher-Yates: S distinct groups */
        int64_t k = i + (int64_t)(rng_next(&rs) % (uint64_t)(N - i));
        int64_t t = perm[i];
        perm[i]   = perm[k];
        perm[k]   = t;
    }
    for (int m = 0; m < M; m++) {
        float *c = cb + (int64_t)m * K * g;
        for (int64_t i = 0; i < S; i++) {
            memcpy(sp + i * g, res + perm[i] * g, (size_t)g * sizeof(float));
            if (sw) sw[i] = wts[perm[i]];
        }
        for (int64_t k = 0; k < K; k++) { /* seeds: distinct sampled points */
            int64_t i = k < S ? k : (int64_t)(rng_next(&rs) % (uint64_t)S);
            memcpy(c + k * g, sp + i * g, (size_t)g * sizeof(float));
        }
        for (int it = 0; it < iters; it++) {
            kt->kmeans_assign(as, NULL, sp, S, c, K, g);
            kt->kmeans_update(c, sp, sw, as, S, K, g);
        }
        kt->kmeans_assign(as, NULL, res, N, c, K, g);
        for (int64_t i = 0; i < N; i++) {
            codes[i * M + m] = (uint16_t)as[i];
            for (int t = 0; t < g; t++) res[i * g + t] -= c[as[i] * g + t];
        }
    }
out:
    free(res);
    free(wts);
    free(sp);
    free(sw);
    free(perm);
    free(as);
    return st;
}

enum lmp_status lmp_aq_grad_rows(double *loss, float *g_cb, float *g_scale, const uint16_t *codes,
                                 const float *w, const float *scale, const float *cb,
                                 const float *h, int64_t n_rows, int64_t n_in,
                                 const struct lmp_aq_scheme *sc, struct lmp_err *err) {
    struct lmp_aq_shape s = shape_of(sc, n_rows, n_in);
    if (lmp_kernels_get()->aq_grad(loss, g_cb, g_scale, codes, w, scale, cb, h, &s) != 0)
        return lmp_err_set(err, LMP_ENOMEM, "out of memory in the AQ gradient of %lld x %lld rows",
                           (long long)n_rows, (long long)n_in);
    return LMP_OK;
}

void lmp_aq_beam_order(int32_t *gperm, uint8_t *m_order, int64_t n_grp, int M, uint64_t seed,
                       int round) {
    uint64_t rs = seed ^ (0xD1B54A32D192ED03ull * (uint64_t)(round + 1)); /* not k-means' */
    for (int64_t i = 0; i < n_grp; i++) gperm[i] = (int32_t)i;
    for (int64_t i = n_grp - 1; i > 0; i--) { /* Fisher-Yates */
        int64_t k = (int64_t)(rng_next(&rs) % (uint64_t)(i + 1));
        int32_t t = gperm[i];
        gperm[i]  = gperm[k];
        gperm[k]  = t;
    }
    for (int64_t i = 0; i < n_grp; i++) {
        uint8_t *mo = m_order + i * M;
        for (int m = 0; m < M; m++) mo[m] = (uint8_t)m;
        for (int m = M - 1; m > 0; m--) {
            int     k = (int)(rng_next(&rs) % (uint64_t)(m + 1));
            uint8_t t = mo[m];
            mo[m]     = mo[k];
            mo[k]     = t;
        }
    }
}

/* h with its groups in the order gperm, rows and columns: hp[i g + a, k g + b] =
 * h[gperm[i] g + a, gperm[k] g + b]. NULL on out-of-memory. */
static float *permute_h(const float *h, int64_t n_in, int g, const int32_t *gperm) {
    const int64_t n_grp = n_in / g;
    float        *hp    = malloc((size_t)(n_in * n_in) * sizeof(float));
    if (hp == NULL) return NULL;
    for (int64_t i = 0; i < n_grp; i++)
        for (int a = 0; a < g; a++) {
            const float *src = h + (gperm[i] * g + a) * n_in;
            float       *dst = hp + (i * g + a) * n_in;
            for (int64_t k = 0; k < n_grp; k++)
                memcpy(dst + k * g, src + gperm[k] * g, (size_t)g * sizeof(float));
        }
    return hp;
}

/* The kernel's sweep over rows w with the groups visited in the order gperm (NULL: in
 * order): the same search on the problem whose groups are permuted, hp being h permuted
 * by permute_h (h itself when gperm is NULL). Codes unchanged on failure. */
static enum lmp_status beam_perm(uint16_t *codes, double *loss, const float *w, const float *scale,
                                 const float *cb, const float *hp, int64_t n_rows, int64_t n_in,
                                 const struct lmp_aq_scheme *sc, int beam, const int32_t *gperm,
                                 const uint8_t *m_order, struct lmp_err *err) {
    const struct lmp_aq_shape s = shape_of(sc, n_rows, n_in);
    const int64_t             g = sc->g, M = sc->M, n_grp = n_in / g;
    float                    *wp = NULL;
    uint16_t                 *cp = NULL;
    int                       rc;
    if (gperm == NULL) {
        rc = lmp_kernels_get()->aq_beam(codes, loss, w, scale, cb, hp, &s, beam, m_order);
    } else {
        wp = malloc((size_t)(n_rows * n_in) * sizeof(float));
        cp = malloc((size_t)(n_rows * n_grp * M) * sizeof(uint16_t));
        rc = wp && cp ? 0 : LMP_ENOMEM;
        for (int64_t o = 0; rc == 0 && o < n_rows; o++)
            for (int64_t i = 0; i < n_grp; i++) {
                memcpy(wp + o * n_in + i * g, w + o * n_in + gperm[i] * g,
                       (size_t)g * sizeof(float));
                memcpy(cp + (o * n_grp + i) * M, codes + (o * n_grp + gperm[i]) * M,
                       (size_t)M * sizeof(uint16_t));
            }
        if (rc == 0)
            rc = lmp_kernels_get()->aq_beam(cp, loss, wp, scale, cb, hp, &s, beam, m_order);
        for (int64_t o = 0; rc == 0 && o < n_rows; o++)
            for (int64_t i = 0; i < n_grp; i++)
                memcpy(codes + (o * n_grp + gperm[i]) * M, cp + (o * n_grp + i) * M,
                       (size_t)M * sizeof(uint16_t));
    }
    free(wp);
    free(cp);
    if (rc != 0)
        return lmp_err_set(err, LMP_ENOMEM,
                           "out of memory in the AQ beam search of %lld x %lld rows",
                           (long long)n_rows, (long long)n_in);
    return LMP_OK;
}

enum lmp_status lmp_aq_beam_rows(uint16_t *codes, double *loss, const float *w, const float *scale,
                                 const float *cb, const float *h, int64_t n_rows, int64_t n_in,
                                 const struct lmp_aq_scheme *sc, int beam, const int32_t *gperm,
                                 const uint8_t *m_order, struct lmp_err *err) {
    float *hp = gperm ? permute_h(h, n_in, sc->g, gperm) : NULL;
    if (gperm && hp == NULL)
        return lmp_err_set(err, LMP_ENOMEM, "out of memory for the permuted H of the beam search");
    enum lmp_status st = beam_perm(codes, loss, w, scale, cb, gperm ? hp : h, n_rows, n_in, sc,
                                   beam, gperm, m_order, err);
    free(hp);
    return st;
}

/* ---- stopping ------------------------------------------------------------------------- */

static enum lmp_status stopped(struct lmp_err *err, const char *where) {
    return lmp_err_set(err, LMP_ECANCEL, "AQ quantization stopped (%s)", where);
}

/* The beam search of rows [0, n_out) in the order (gperm, m_order) (NULL: in order), in
 * chunks of rows with a poll of cancel between them. Rows are searched independently
 * (each from its own codes, with the same q and H), so the codes are the same bits as one
 * call. A chunk is about 2^32 flops (the search is ~b n_in^2 per row, aq_beam_avx512.c):
 * a fraction of a second, and at least 256 rows, so the kernel's threads stay busy. */
static enum lmp_status beam_chunked(uint16_t *codes, const float *w, const float *scale,
                                    const float *cb, const float *h, int64_t n_out, int64_t n_in,
                                    const struct lmp_aq_scheme *sc, int beam, const int32_t *gperm,
                                    const uint8_t *m_order, const atomic_int *cancel,
                                    struct lmp_err *err) {
    const double  per_row      = (double)(beam > 0 ? beam : 1) * (double)n_in * (double)n_in;
    const double  rows         = 4294967296.0 / (per_row > 1.0 ? per_row : 1.0);
    const int64_t chunk        = rows < 256.0 ? 256 : rows > (double)n_out ? n_out : (int64_t)rows;
    const int64_t per_code_row = n_in / sc->g * sc->M;
    float        *hp           = gperm ? permute_h(h, n_in, sc->g, gperm) : NULL;
    if (gperm && hp == NULL)
        return lmp_err_set(err, LMP_ENOMEM, "out of memory for the permuted H of the beam search");
    enum lmp_status st = LMP_OK;
    for (int64_t o0 = 0; o0 < n_out && st == LMP_OK; o0 += chunk) {
        if (lmp_cancelled(cancel)) {
            st = stopped(err, "beam search");
            break;
        }
        const int64_t n = n_out - o0 < chunk ? n_out - o0 : chunk;
        st              = beam_perm(codes + o0 * per_code_row, NULL, w + o0 * n_in, scale + o0, cb,
                       gperm ? hp : h, n, n_in, sc, beam, gperm, m_order, err);
    }
    free(hp);
    return st;
}

/* ---- Adam ---------------------------------------------------------------------------- */

enum lmp_status lmp_aq_adam_init(struct lmp_aq_adam *a, int64_t n, float beta1, float beta2) {
    *a   = (struct lmp_aq_adam){.n = n, .beta1 = beta1, .beta2 = beta2, .eps = 1e-8f};
    a->m = calloc((size_t)(2 * n > 0 ? 2 * n : 1), sizeof(float));
    if (a->m == NULL) return LMP_ENOMEM;
    a->v = a->m + n;
    return LMP_OK;
}

void lmp_aq_adam_reset(struct lmp_aq_adam *a) {
    memset(a->m, 0, (size_t)(2 * a->n) * sizeof(float));
    a->t = 0;
}

void lmp_aq_adam_release(struct lmp_aq_adam *a) {
    free(a->m);
    a->m = a->v = NULL;
}

void lmp_aq_adam_step(struct lmp_aq_adam *a, float *param, const float *grad, float lr) {
    a->t++;
    const double c1 = 1.0 - pow(a->beta1, (double)a->t), c2 = 1.0 - pow(a->beta2, (double)a->t);
    const float  step = (float)(lr * sqrt(c2) / c1);
    for (int64_t i = 0; i < a->n; i++) {
        a->m[i] = a->beta1 * a->m[i] + (1.0f - a->beta1) * grad[i];
        a->v[i] = a->beta2 * a->v[i] + (1.0f - a->beta2) * grad[i] * grad[i];
        param[i] -= step * a->m[i] / (sqrtf(a->v[i]) + a->eps * (float)sqrt(c2));
    }
}

/* ---- codebook update by conjugate gradient, scales in closed form -------------------- */

struct cg_ws {
    float *r, *z, *p, *ap, *dinv, *cb0, *sc0, *gtmp; /* (n_cb) x 6, (n_out) x 2 */
    float *zero_w;                                   /* (n_out, n_in) zeros */
    float *ones;                                     /* (n_out) */
};

static void cg_ws_release(struct cg_ws *c) {
    free(c->r);
    free(c->zero_w);
    memset(c, 0, sizeof(*c));
}

static enum lmp_status cg_ws_init(struct cg_ws *c, int64_t n_cb, int64_t n_out, int64_t n_in) {
    memset(c, 0, sizeof(*c));
    c->r      = malloc((size_t)(6 * n_cb + 3 * n_out) * sizeof(float));
    c->zero_w = calloc((size_t)(n_out * n_in), sizeof(float));
    if (c->r == NULL || c->zero_w == NULL) {
        cg_ws_release(c);
        return LMP_ENOMEM;
    }
    c->z    = c->r + n_cb;
    c->p    = c->z + n_cb;
    c->ap   = c->p + n_cb;
    c->dinv = c->ap + n_cb;
    c->cb0  = c->dinv + n_cb;
    c->sc0  = c->cb0 + n_cb;
    c->gtmp = c->sc0 + n_out;
    c->ones = c->gtmp + n_out;
    for (int64_t o = 0; o < n_out; o++) c->ones[o] = 1.0f;
    return LMP_OK;
}

static double dot_f(const float *a, const float *b, int64_t n) {
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

/* The sums over the shards of a layer. buf holds n_cb + 1 doubles. One shard (red NULL):
 * nothing happens, so the single-process path is bit for bit the unsharded algorithm. */
struct allsum {
    const struct lmp_aq_reducer *red;
    double                      *buf;
};

/* *scalar (if not NULL) and vec[0..n) (if not NULL) become their sums over every shard. */
static enum lmp_status allsum(const struct allsum *a, double *scalar, float *vec, int64_t n,
                              struct lmp_err *err) {
    if (a->red == NULL || a->red->sum == NULL) return LMP_OK;
    int64_t k = 0;
    if (scalar) a->buf[k++] = *scalar;
    for (int64_t i = 0; vec && i < n; i++) a->buf[k++] = (double)vec[i];
    enum lmp_status st = a->red->sum(a->red->ctx, a->buf, k, err);
    if (st != LMP_OK) return st;
    k = 0;
    if (scalar) *scalar = a->buf[k++];
    for (int64_t i = 0; vec && i < n; i++) vec[i] = (float)a->buf[k++];
    return LMP_OK;
}

/* grad_rows on this shard's rows, then loss and codebook gradient summed over the shards. */
static enum lmp_status grad_all(const struct allsum *a, double *loss, float *g_cb, float *g_scale,
                                const uint16_t *codes, const float *w, const float *scale,
                                const float *cb, const float *h, int64_t n_rows, int64_t n_in,
                                const struct lmp_aq_scheme *sc, struct lmp_err *err) {
    enum lmp_status st =
        lmp_aq_grad_rows(loss, g_cb, g_scale, codes, w, scale, cb, h, n_rows, n_in, sc, err);
    if (st != LMP_OK) return st;
    return allsum(a, loss, g_cb, (int64_t)sc->M * sc->K * sc->g, err);
}

/* One update of codebooks and scales (codes fixed). On entry and on exit *L, g_cb, g_sc
 * are the objective and gradient of l's state; L never increases. *iters_done += the CG
 * iterations taken. With codes and scales fixed, L(cb) is quadratic with Hessian
 * A = 2 sum_o s_o^2 P_o^T H P_o (P_o places codewords in row o); A d is the codebook
 * gradient at W = 0 with codebooks d (and d^T A d is twice that call's loss). */
static enum lmp_status cg_update(double *L, float *g_cb, float *g_sc, struct lmp_aq_layer *l,
                                 const float *w, const float *h, int iters, int64_t *iters_done,
                                 struct cg_ws *c, const struct allsum *A, const atomic_int *cancel,
                                 struct lmp_err *err) {
    const struct lmp_aq_scheme *sc    = &l->sc;
    const int64_t               n_out = l->n_out, n_in = l->n_in, g = sc->g, M = sc->M, K = sc->K;
    const int64_t               n_grp = n_in / g, n_cb = M * K * g;
    float                      *cb = l->codebooks, *s = l->scales;
    enum lmp_status             st;
    /* Jacobi preconditioner: diag A[m, k, t] = 2 sum over (o, j) coded k in m of s_o^2 H_tt */
    for (int64_t i = 0; i < n_cb; i++) c->dinv[i] = 0.0f;
    for (int64_t o = 0; o < n_out; o++) {
        const float     s2 = 2.0f * s[o] * s[o];
        const uint16_t *co = l->codes + o * n_grp * M;
        for (int64_t j = 0; j < n_grp; j++)
            for (int64_t m = 0; m < M; m++) {
                float *d = c->dinv + (m * K + co[j * M + m]) * g;
                for (int64_t t = 0; t < g; t++) d[t] += s2 * h[(j * g + t) * n_in + j * g + t];
            }
    }
    if ((st = allsum(A, NULL, c->dinv, n_cb, err)) != LMP_OK) return st;
    for (int64_t i = 0; i < n_cb; i++) c->dinv[i] = c->dinv[i] > 0.0f ? 1.0f / c->dinv[i] : 0.0f;

    const double L0 = *L;
    memcpy(c->cb0, cb, (size_t)n_cb * sizeof(float));
    for (int64_t i = 0; i < n_cb; i++) {
        c->r[i] = -g_cb[i];
        c->p[i] = c->z[i] = c->dinv[i] * c->r[i];
    }
    double       rz  = dot_f(c->r, c->z, n_cb);
    const double rz0 = rz;
    for (int it = 0; it < iters && rz > 1e-12 * rz0 && rz > 0.0; it++) {
        if (lmp_cancelled(cancel)) return stopped(err, "codebook update");
        double half_pap;
        if ((st = grad_all(A, &half_pap, c->ap, c->gtmp, l->codes, c->zero_w, s, c->p, h, n_out,
                           n_in, sc, err)) != LMP_OK)
            return st;
        (*iters_done)++;
        const double pap = 2.0 * half_pap;
        if (!(pap > 0.0) || !isfinite(pap)) break; /* flat or broken direction: stop */
        const float alpha = (float)(rz / pap);
        for (int64_t i = 0; i < n_cb; i++) {
            cb[i] += alpha * c->p[i];
            c->r[i] -= alpha * c->ap[i];
            c->z[i] = c->dinv[i] * c->r[i];
        }
        const double rz_new = dot_f(c->r, c->z, n_cb);
        const float  beta   = (float)(rz_new / rz);
        for (int64_t i = 0; i < n_cb; i++) c->p[i] = c->z[i] + beta * c->p[i];
        rz = rz_new;
    }
    if ((st = grad_all(A, L, g_cb, g_sc, l->codes, w, s, cb, h, n_out, n_in, sc, err)) != LMP_OK)
        return st;
    if (!(*L <= L0)) { /* fp32 rounding ate the gain: keep the old codebooks */
        memcpy(cb, c->cb0, (size_t)n_cb * sizeof(float));
        if ((st = grad_all(A, L, g_cb, g_sc, l->codes, w, s, cb, h, n_out, n_in, sc, err)) !=
            LMP_OK)
            return st;
    }
    /* scales: L_o(s) = w H w^T - 2 s u H w^T + s^2 u H u^T; with W = 0 and unit scales the
     * scale gradient is 2 u H u^T, and g_sc = -2 u H w^T + 2 s u H u^T, so the minimiser is
     * s - g_sc / (2 u H u^T) */
    double dummy, L1 = *L;
    if ((st = lmp_aq_grad_rows(&dummy, c->ap, c->gtmp, l->codes, c->zero_w, c->ones, cb, h, n_out,
                               n_in, sc, err)) != LMP_OK)
        return st;
    memcpy(c->sc0, s, (size_t)n_out * sizeof(float));
    for (int64_t o = 0; o < n_out; o++) {
        const float uhu2 = c->gtmp[o], sn = s[o] - g_sc[o] / uhu2;
        if (uhu2 > 0.0f && isfinite(sn) && sn != 0.0f) s[o] = sn;
    }
    if ((st = grad_all(A, L, g_cb, g_sc, l->codes, w, s, cb, h, n_out, n_in, sc, err)) != LMP_OK)
        return st;
    if (!(*L <= L1)) {
        memcpy(s, c->sc0, (size_t)n_out * sizeof(float));
        if ((st = grad_all(A, L, g_cb, g_sc, l->codes, w, s, cb, h, n_out, n_in, sc, err)) !=
            LMP_OK)
            return st;
    }
    return LMP_OK;
}

/* ---- the whole layer ------------------------------------------------------------------ */

void lmp_aq_opts_init(struct lmp_aq_opts *o) {
    *o = (struct lmp_aq_opts){
        .beam              = 8,
        .cg_iters          = 16,
        .adam_steps        = 100,
        .lr                = 1e-4f,
        .beta1             = 0.9f,
        .beta2             = 0.95f,
        .tol               = 0.01,
        .max_rounds        = 20,
        .max_adam_steps    = 10000,
        .kmeans_iters      = 20,
        .kmeans_max_points = 0,
        .kmeans_weighted   = 0,
        .beam_shuffle      = 1,
        .damp              = 0.0,
        .seed              = 0,
    };
}

/* Objective of layer l on h (own scratch, so the caller's gradients survive), summed
 * over the shards. */
static enum lmp_status loss_on(double *L, const float *h, const struct lmp_aq_layer *l,
                               const float *w, const struct allsum *A, struct lmp_err *err) {
    const int64_t n_cb = (int64_t)l->sc.M * l->sc.K * l->sc.g;
    float        *g    = malloc((size_t)(n_cb + l->n_out) * sizeof(float));
    if (g == NULL) return lmp_err_set(err, LMP_ENOMEM, "out of memory");
    enum lmp_status st = lmp_aq_grad_rows(L, g, g + n_cb, l->codes, w, l->scales, l->codebooks, h,
                                          l->n_out, l->n_in, &l->sc, err);
    free(g);
    if (st != LMP_OK) return st;
    return allsum(A, L, NULL, 0, err);
}

void lmp_aq_layer_release(struct lmp_aq_layer *l) {
    if (l == NULL) return;
    free(l->codes);
    free(l->codebooks);
    free(l->scales);
    l->codes     = NULL;
    l->codebooks = NULL;
    l->scales    = NULL;
}

enum lmp_status lmp_aq_quantize(struct lmp_aq_layer *out, struct lmp_aq_stats *stats,
                                const float *w, const float *h, int64_t n_out, int64_t n_in,
                                const struct lmp_aq_scheme *sc, const struct lmp_aq_opts *opts,
                                struct lmp_err *err) {
    return lmp_aq_quantize_rows(out, stats, w, h, n_out, n_in, 0, n_out, sc, opts, NULL, err);
}

void lmp_aq_shard_rows(int64_t *bounds, int64_t n_out, const double *weight, int n) {
    double tot = 0.0;
    for (int i = 0; i < n; i++) tot += weight[i] > 0.0 ? weight[i] : 0.0;
    bounds[0]  = 0;
    double acc = 0.0;
    for (int i = 0; i < n; i++) {
        acc += weight[i] > 0.0 ? weight[i] : 0.0;
        int64_t e = i == n - 1  ? n_out
                    : tot > 0.0 ? (int64_t)((double)n_out * acc / tot + 0.5)
                                : n_out * (i + 1) / n;
        if (e < bounds[i] + 1) e = bounds[i] + 1;             /* every shard has a row */
        if (e > n_out - (n - 1 - i)) e = n_out - (n - 1 - i); /* ... and so do the next */
        bounds[i + 1] = e;
    }
}

enum lmp_status lmp_aq_quantize_rows(struct lmp_aq_layer *out, struct lmp_aq_stats *stats,
                                     const float *w_all, const float *h, int64_t n_out_all,
                                     int64_t n_in, int64_t r0, int64_t r1,
                                     const struct lmp_aq_scheme *sc, const struct lmp_aq_opts *opts,
                                     const struct lmp_aq_reducer *red, struct lmp_err *err) {
    assert(out && w_all && h && sc && opts);
    const double        t_start = now_s();
    struct lmp_aq_stats st_local, *S = stats ? stats : &st_local;
    memset(S, 0, sizeof(*S));
    memset(out, 0, sizeof(*out));
    enum lmp_status st = lmp_aq_scheme_check(sc, n_out_all, n_in, err);
    if (st != LMP_OK) return st;
    if (r0 < 0 || r1 <= r0 || r1 > n_out_all)
        return lmp_err_set(err, LMP_EINVAL, "row range [%lld, %lld) outside a layer of %lld rows",
                           (long long)r0, (long long)r1, (long long)n_out_all);
    if ((st = lmp_aq_check_h(h, n_in, err)) != LMP_OK) return st;
    const int64_t n_out = r1 - r0; /* this shard's rows */
    const float  *w     = w_all + r0 * n_in;
    const int64_t K = sc->K, n_grp = n_in / sc->g, n_codes = n_out * n_grp * sc->M;
    const int64_t n_cb       = (int64_t)sc->M * K * sc->g;
    const int     max_rounds = opts->max_rounds < 1                   ? 1
                               : opts->max_rounds > LMP_AQ_MAX_ROUNDS ? LMP_AQ_MAX_ROUNDS
                                                                      : opts->max_rounds;
    float *hd = NULL, *g_cb = NULL, *g_sc = NULL, *best_cb = NULL, *best_sc = NULL, *sc_all = NULL;
    uint16_t          *codes_prev = NULL, *codes_all = NULL;
    int32_t           *gperm   = NULL; /* the beam search's order (beam_shuffle), per round */
    uint8_t           *m_order = NULL;
    struct lmp_aq_adam ad_cb = {0}, ad_sc = {0};
    struct cg_ws       cg = {0};
    struct allsum      A  = {.red = red && red->sum ? red : NULL};
    out->sc               = *sc;
    out->n_out            = n_out;
    out->n_in             = n_in;
    out->codes            = malloc((size_t)n_codes * sizeof(uint16_t));
    out->codebooks        = malloc((size_t)n_cb * sizeof(float));
    out->scales           = malloc((size_t)n_out * sizeof(float));
    g_cb                  = malloc((size_t)n_cb * sizeof(float));
    best_cb               = malloc((size_t)n_cb * sizeof(float));
    g_sc                  = malloc((size_t)n_out * sizeof(float));
    best_sc               = malloc((size_t)n_out * sizeof(float));
    codes_prev            = malloc((size_t)n_codes * sizeof(uint16_t));
    const bool sharded    = r0 != 0 || r1 != n_out_all;
    if (sharded) {
        sc_all    = malloc((size_t)n_out_all * sizeof(float));
        codes_all = malloc((size_t)(n_out_all * n_grp * sc->M) * sizeof(uint16_t));
    }
    if (A.red) A.buf = malloc((size_t)(n_cb + 1) * sizeof(double));
    if (opts->beam_shuffle) {
        gperm   = malloc((size_t)n_grp * sizeof(int32_t));
        m_order = malloc((size_t)(n_grp * sc->M));
    }
    if (!out->codes || !out->codebooks || !out->scales || !g_cb || !best_cb || !g_sc || !best_sc ||
        !codes_prev || (sharded && (!sc_all || !codes_all)) || (A.red && !A.buf) ||
        (opts->beam_shuffle && (!gperm || !m_order)) ||
        lmp_aq_adam_init(&ad_cb, n_cb, opts->beta1, opts->beta2) != LMP_OK ||
        lmp_aq_adam_init(&ad_sc, n_out, opts->beta1, opts->beta2) != LMP_OK ||
        (opts->cg_iters > 0 && cg_ws_init(&cg, n_cb, n_out, n_in) != LMP_OK)) {
        st = lmp_err_set(err, LMP_ENOMEM, "out of memory for AQ layer %lld x %lld",
                         (long long)n_out, (long long)n_in);
        goto out;
    }
    const float *ho = h; /* H the optimisation sees */
    if (opts->damp > 0.0) {
        hd = malloc((size_t)(n_in * n_in) * sizeof(float));
        if (hd == NULL) {
            st = lmp_err_set(err, LMP_ENOMEM, "out of memory for damped H");
            goto out;
        }
        memcpy(hd, h, (size_t)(n_in * n_in) * sizeof(float));
        double tr = 0.0;
        for (int64_t a = 0; a < n_in; a++) tr += h[a * n_in + a];
        for (int64_t a = 0; a < n_in; a++)
            hd[a * n_in + a] += (float)(opts->damp * tr / (double)n_in);
        ho = hd;
    }
    double wnorm = 0.0;
    if (quad_form(&wnorm, w, h, n_out, n_in) != LMP_OK) {
        st = lmp_err_set(err, LMP_ENOMEM, "out of memory");
        goto out;
    }
    if ((st = allsum(&A, &wnorm, NULL, 0, err)) != LMP_OK) goto out;
    if (!(wnorm > 0.0)) {
        st = lmp_err_set(err, LMP_EINVAL,
                         "W H W^T is zero: the layer's output does not depend on it");
        goto out;
    }
    /* 1. scales and residual k-means: on every row of the layer, identical on every shard
     * (same inputs, same seed), which keeps the codebooks of the shards identical */
    const int64_t maxp = opts->kmeans_max_points > 0 ? opts->kmeans_max_points : 0; /* 0: all */
    const float  *hk   = opts->kmeans_weighted ? ho : NULL; /* NULL: unweighted points */
    if (sharded) {
        lmp_aq_scales_from_rows(sc_all, w_all, n_out_all, n_in);
        if ((st = lmp_aq_kmeans_init(out->codebooks, codes_all, w_all, sc_all, hk, n_out_all, n_in,
                                     sc, opts->kmeans_iters, maxp, opts->seed, err)) != LMP_OK)
            goto out;
        memcpy(out->scales, sc_all + r0, (size_t)n_out * sizeof(float));
        memcpy(out->codes, codes_all + r0 * n_grp * sc->M, (size_t)n_codes * sizeof(uint16_t));
        free(codes_all), codes_all = NULL;
    } else {
        lmp_aq_scales_from_rows(out->scales, w, n_out, n_in);
        if ((st = lmp_aq_kmeans_init(out->codebooks, out->codes, w, out->scales, hk, n_out, n_in,
                                     sc, opts->kmeans_iters, maxp, opts->seed, err)) != LMP_OK)
            goto out;
    }
    double L;
    if ((st = grad_all(&A, &L, g_cb, g_sc, out->codes, w, out->scales, out->codebooks, ho, n_out,
                       n_in, sc, err)) != LMP_OK)
        goto out;
    {
        double Lt = L;
        if (hd && (st = loss_on(&Lt, h, out, w, &A, err)) != LMP_OK) goto out;
        S->rel_err_init = Lt / wnorm;
    }
    S->seconds_init = now_s() - t_start;

    /* 2. rounds: g_cb/g_sc/L always hold the gradient and loss of the current state (g_cb
     * and L summed over the shards, g_sc of this shard's rows) */
    double L_prev = L;
    for (int r = 0; r < max_rounds && S->n_adam_steps < opts->max_adam_steps; r++) {
        if (lmp_cancelled(opts->cancel)) {
            st = stopped(err, "before a round");
            goto out;
        }
        double t0 = now_s();
        lmp_aq_adam_reset(&ad_cb);
        lmp_aq_adam_reset(&ad_sc);
        double L_best = L;
        memcpy(best_cb, out->codebooks, (size_t)n_cb * sizeof(float));
        memcpy(best_sc, out->scales, (size_t)n_out * sizeof(float));
        if (opts->cg_iters > 0) {
            int64_t left = opts->max_adam_steps - S->n_adam_steps;
            if ((st = cg_update(&L, g_cb, g_sc, out, w, ho,
                                left < opts->cg_iters ? (int)left : opts->cg_iters,
                                &S->n_adam_steps, &cg, &A, opts->cancel, err)) != LMP_OK)
                goto out;
            L_best = L;
        }
        for (int s = 0;
             opts->cg_iters <= 0 && s < opts->adam_steps && S->n_adam_steps < opts->max_adam_steps;
             s++) {
            if (lmp_cancelled(opts->cancel)) {
                st = stopped(err, "codebook update");
                goto out;
            }
            lmp_aq_adam_step(&ad_cb, out->codebooks, g_cb, opts->lr);
            lmp_aq_adam_step(&ad_sc, out->scales, g_sc, opts->lr);
            S->n_adam_steps++;
            if ((st = grad_all(&A, &L, g_cb, g_sc, out->codes, w, out->scales, out->codebooks, ho,
                               n_out, n_in, sc, err)) != LMP_OK)
                goto out;
            if (L < L_best) {
                L_best = L;
                memcpy(best_cb, out->codebooks, (size_t)n_cb * sizeof(float));
                memcpy(best_sc, out->scales, (size_t)n_out * sizeof(float));
            }
        }
        if (L > L_best) { /* keep the best iterate of the phase */
            memcpy(out->codebooks, best_cb, (size_t)n_cb * sizeof(float));
            memcpy(out->scales, best_sc, (size_t)n_out * sizeof(float));
        }
        double t1 = now_s();
        S->seconds_adam += t1 - t0;
        memcpy(codes_prev, out->codes, (size_t)n_codes * sizeof(uint16_t));
        if (gperm) /* this round's order, the same on every shard */
            lmp_aq_beam_order(gperm, m_order, n_grp, sc->M, opts->seed, r);
        if ((st = beam_chunked(out->codes, w, out->scales, out->codebooks, ho, n_out, n_in, sc,
                               opts->beam, gperm, m_order, opts->cancel, err)) != LMP_OK)
            goto out;
        if ((st = grad_all(&A, &L, g_cb, g_sc, out->codes, w, out->scales, out->codebooks, ho,
                           n_out, n_in, sc, err)) != LMP_OK)
            goto out;
        if (L > L_best) { /* fp32 rounding in the search: never go back */
            memcpy(out->codes, codes_prev, (size_t)n_codes * sizeof(uint16_t));
            if ((st = grad_all(&A, &L, g_cb, g_sc, out->codes, w, out->scales, out->codebooks, ho,
                               n_out, n_in, sc, err)) != LMP_OK)
                goto out;
        }
        S->seconds_beam += now_s() - t1;
        double Lt = L;
        if (hd && (st = loss_on(&Lt, h, out, w, &A, err)) != LMP_OK) goto out;
        S->rel_err_round[r] = Lt / wnorm;
        S->n_rounds         = r + 1;
        if (opts->progress) /* observes only */
            opts->progress(opts->progress_ctx, r + 1, max_rounds, L, S->rel_err_round[r]);
        double impr = L_prev > 0.0 ? (L_prev - L) / L_prev : 0.0;
        L_prev      = L;
        if (impr < opts->tol) break;
    }
    S->rel_err_final   = S->n_rounds ? S->rel_err_round[S->n_rounds - 1] : S->rel_err_init;
    S->bits_per_weight = lmp_aq_bits_per_weight(sc, n_out_all, n_in);
    S->seconds         = now_s() - t_start;
out:
    free(hd);
    free(g_cb);
    free(g_sc);
    free(best_cb);
    free(best_sc);
    free(codes_prev);
    free(sc_all);
    free(codes_all);
    free(gperm);
    free(m_order);
    free(A.buf);
    lmp_aq_adam_release(&ad_cb);
    lmp_aq_adam_release(&ad_sc);
    cg_ws_release(&cg);
    if (st != LMP_OK) lmp_aq_layer_release(out);
    return st;
}
