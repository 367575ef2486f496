/*  kernels - the compute ops of lmpress and the table that picks their variants
 *
 *  Every op has a plain scalar reference in kernels/ref/ that defines it; optimized
 *  variants (kernels/cpu/ AVX2/AVX-512, kernels/cuda/) keep the same signature and
 *  are compared with the reference by tests/kernels/test_kernels.c. The table is
 *  chosen once at startup (lmp_kernels_select) and read-only afterwards, so stages
 *  never mention a device. Kernels do no I/O and hold no state.
 */
#ifndef LMP_KERNELS_KERNELS_H
#define LMP_KERNELS_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum lmp_device { LMP_DEVICE_CPU, LMP_DEVICE_CUDA };

/* ---- scalar conversions (exact IEEE round-to-nearest-even) ---------------------- */
float    lmp_f16_to_f32(uint16_t h);
uint16_t lmp_f32_to_f16(float f);
float    lmp_bf16_to_f32(uint16_t h);
uint16_t lmp_f32_to_bf16(float f);

/* ---- op signatures ---------------------------------------------------------------- */

/* Dequantize n elements (n a multiple of the dtype's block) of a row stored as `dtype`
 * (enum lmp_dtype value, kernels/dtype.h) into fp32. */
typedef void lmp_dequant_row_fn(int dtype, const void *src, float *dst, int64_t n);

/* ---- AQLM ops (math and tolerances: each reference file's header) ---------------- */

/* Shape of an additive-quantized slice: rows of n_in weights cut into n_in/g groups,
 * each group the sum of M codewords (one per codebook of K entries of length g) times
 * the row's scale. n_out is the number of rows the call sees (a slice may be a range
 * of a layer's rows). */
struct lmp_aq_shape {
    int64_t n_out;   /* rows in this call */
    int64_t n_in;    /* input features, a multiple of g */
    int     M;       /* codebooks */
    int     K;       /* entries per codebook, 2^bits (<= 65536) */
    int     g;       /* in-group size */
};

/* h (n_in, n_in), symmetric, += x^T x for x (n_tok, n_in) row-major. */
typedef void lmp_gram_acc_fn(double *h, const float *x, int64_t n_tok, int64_t n_in);
/* assign[i] = argmin_k ||pts[i] - cent[k]||^2 (lowest k on ties); dist2[i] (may be NULL)
 * the squared distance. pts (n, g), cent (K, g). */
typedef void lmp_kmeans_assign_fn(int32_t *assign, float *dist2, const float *pts, int64_t n,
                                  const float *cent, int64_t K, int g);
/* cent[k] = weighted mean of the points assigned to k (weights (n) or NULL for 1);
 * a centroid with no (or zero-weight) points keeps its value. */
typedef void lmp_kmeans_update_fn(float *cent, const float *pts, const float *weights,
                                  const int32_t *assign, int64_t n, int64_t K, int g);
/* One beam-search sweep over the codes of each row (w - w_hat) H (w - w_hat)^T, one
 * code position (group j, codebook m) at a time, starting from the codes given.
 * codes (n_out, n_in/g, M) in/out; loss (n_out) out (may be NULL): the objective of the
 * returned codes; w (n_out, n_in); scale (n_out); cb (M, K, g); h (n_in, n_in).
 * Returns 0, or LMP_ENOMEM when scratch cannot be allocated (codes then unchanged). */
typedef int lmp_aq_beam_fn(uint16_t *codes, double *loss, const float *w, const float *scale,
                           const float *cb, const float *h, const struct lmp_aq_shape *s,
                           int beam);
/* Objective L = sum_o (w_o - w_hat_o) H (w_o - w_hat_o)^T (written to *loss) and its
 * gradient: g_cb (M, K, g) and g_scale (n_out), both overwritten. Same arrays as above.
 * Returns 0, or LMP_ENOMEM. */
typedef int lmp_aq_grad_fn(double *loss, float *g_cb, float *g_scale, const uint16_t *codes,
                           const float *w, const float *scale, const float *cb, const float *h,
                           const struct lmp_aq_shape *s);
/* Codebook and scale gradients from a dense weight gradient dw (n_out, n_in) = dL/dW_hat
 * with codes frozen: g_cb (M, K, g) and g_scale (n_out), both overwritten (sum g_cb over
 * row shards). Returns 0, or LMP_ENOMEM. */
typedef int lmp_aq_grad_dw_fn(float *g_cb, float *g_scale, const float *dw, const uint16_t *codes,
                              const float *cb, const float *scale, const struct lmp_aq_shape *s);
/* w (n_out, n_in) = decoded weights. */
typedef void lmp_aq_decode_fn(float *w, const uint16_t *codes, const float *cb,
                              const float *scale, const struct lmp_aq_shape *s);
/* y (n_batch, n_out) = x (n_batch, n_in) W_hat^T straight from the codes.
 * Returns 0, or LMP_ENOMEM. */
typedef int lmp_aq_matvec_fn(float *y, const float *x, int64_t n_batch, const uint16_t *codes,
                             const float *cb, const float *scale, const struct lmp_aq_shape *s);

struct lmp_kernels {
    const char         *name;       /* "ref", "avx512", "cuda" */
    enum lmp_device     device;
    lmp_dequant_row_fn *dequant_row;
    lmp_gram_acc_fn      *gram_acc;
    lmp_kmeans_assign_fn *kmeans_assign;
    lmp_kmeans_update_fn *kmeans_update;
    lmp_aq_beam_fn       *aq_beam;
    lmp_aq_grad_fn       *aq_grad;
    lmp_aq_grad_dw_fn    *aq_grad_dw;
    lmp_aq_decode_fn     *aq_decode;
    lmp_aq_matvec_fn     *aq_matvec;
};

/* References (kernels/ref/). */
lmp_dequant_row_fn lmp_dequant_row_ref;
lmp_gram_acc_fn      lmp_gram_acc_ref;
lmp_kmeans_assign_fn lmp_kmeans_assign_ref;
lmp_kmeans_update_fn lmp_kmeans_update_ref;
lmp_aq_beam_fn       lmp_aq_beam_ref;
lmp_aq_grad_fn       lmp_aq_grad_ref;
lmp_aq_grad_dw_fn    lmp_aq_grad_dw_ref;
lmp_aq_decode_fn     lmp_aq_decode_ref;
lmp_aq_matvec_fn     lmp_aq_matvec_ref;

/* Fill every slot with the reference. */
void lmp_kernels_init_ref(struct lmp_kernels *k);
/* References first, then the best variant this CPU supports for each slot. */
void lmp_kernels_init_best(struct lmp_kernels *k);

/* Select the process-wide table: "ref" or "best" (default when never called).
 * Returns false for an unknown name. Call before starting threads. */
bool lmp_kernels_select(const char *name);
const struct lmp_kernels *lmp_kernels_get(void);

/* CPU feature probes (cpuid). */
bool lmp_cpu_has_avx2(void);     /* AVX2 + FMA */
bool lmp_cpu_has_avx512(void);   /* AVX-512 F + BW + VL */

#endif /* LMP_KERNELS_KERNELS_H */
