/*  aq_beam_avx2 - the beam search of aq_beam_avx512.c with AVX2 + FMA (256-bit vectors)
 *
 *  The algorithm, the data layout and the order of every floating-point operation are
 *  those of aq_beam_avx512.c (read its header for the column blocks, the block-end GEMM,
 *  the sparse siblings, the scoring and the selection): each candidate's score, each
 *  column of rH and each block-end weight change is formed by the same FMA chains, lane
 *  for lane, only 8 lanes at a time instead of 16. Candidates are still grouped 16 to a
 *  "lane" set (two 8-lane halves), so the lane-wise minima and the selection bound are
 *  the AVX-512 variant's values, and the selection (ties to the earlier hypothesis, then
 *  the lower k) picks the same survivors: the codes are lmp_aq_beam_avx512's, and so are
 *  the losses for g = 8 and 16 (GCC 12, -O3; tests/kernels/test_kernels.c checks it where
 *  both tables run). For other g the scalar setup of a position's scoring (H_jj c, v,
 *  e(c)) is plain C, which the compiler fuses and vectorizes differently under -mavx512f
 *  than under -mavx2: candidates' scores can differ in the last bit there (nmse ~1e-14).
 *  What changes for 16 ymm registers instead of 32 zmm: the block-end GEMM holds 4
 *  hypotheses x 16 columns in registers (two passes per 8 hypotheses), the scoring
 *  broadcasts the hypothesis' v from memory, masks are vectors (vmaskmov) and the
 *  compress-store of the selection is a loop over mask bits.
 *  Shapes: K a multiple of 16, g up to 64, beam up to 64; others take the reference.
 *  CPU reference: kernels/ref/aq_beam_ref.c
 */
#include "kernels/cpu/cpu_variants.h"
#include "kernels/cpu/parallel.h"
#include "kernels/cpu/avx2_util.h" /* defines: avx2_mask8, avx2_hsum8 */
#include "base/status.h"           /* defines: LMP_ENOMEM */

#include <cblas.h>
#include <float.h>
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum {
    RB   = 8,  /* rows searched in lockstep by one thread */
    JB   = 8,  /* groups per column block */
    MAXB = 64, /* widest beam handled here (wider: the reference) */
};

static uint64_t zkey(int64_t pos, int code) { /* same keys as the reference */
    uint64_t z = (uint64_t)pos * 65536u + (uint64_t)code + 0x9E3779B97F4A7C15ull;
    z          = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z          = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

struct beam_job {
    uint16_t      *codes;
    double        *loss;
    const float   *scale, *cb, *h;
    const float   *cT;      /* (M, g, K) */
    const float   *hd;      /* (n_grp, g, g) the diagonal blocks H_jj, contiguous */
    float         *q;       /* (P, K) */
    const float   *rh0;     /* (n_out, n_in) R H at the start */
    const double  *loss0;   /* (n_out) */
    const uint8_t *m_order; /* (n_grp, M) codebook order in each group, or NULL: 0..M-1 */
    int64_t        n_out, n_in, g, M, K, n_grp, P;
    int            beam, rb; /* rb: rows in lockstep */
    int            failed;   /* set by a thread that could not allocate (rows left unchanged) */
};

static void q_part(void *arg, int tid, int nt) {
    struct beam_job *J = arg;
    int64_t          lo, hi;
    lmp_par_range(J->n_grp, tid, nt, &lo, &hi);
    const int64_t g = J->g, K = J->K, n_in = J->n_in;
    for (int64_t j = lo; j < hi; j++)
        for (int64_t m = 0; m < J->M; m++) {
            const float *cm = J->cT + m * g * K;
            float       *qp = J->q + (j * J->M + m) * K;
            for (int64_t k = 0; k < K; k += 8) {
                __m256 acc = _mm256_setzero_ps();
                for (int64_t a = 0; a < g; a++) {
                    __m256 hc = _mm256_setzero_ps(); /* (H_jj c)[a] for 8 codewords */
                    for (int64_t b = 0; b < g; b++)
                        hc = _mm256_fmadd_ps(_mm256_set1_ps(J->h[(j * g + a) * n_in + j * g + b]),
                                             _mm256_loadu_ps(cm + b * K + k), hc);
                    acc = _mm256_fmadd_ps(_mm256_loadu_ps(cm + a * K + k), hc, acc);
                }
                _mm256_storeu_ps(qp + k, acc);
            }
        }
}

/* Short copies inside the search (a libc call costs more than the move). */
static inline void copy_f32(float *dst, const float *src, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_loadu_ps(src + i));
    if (i < n) {
        const __m256i mk = avx2_mask8(n - i);
        _mm256_maskstore_ps(dst + i, mk, _mm256_maskload_ps(src + i, mk));
    }
}

static inline void copy_u16(uint16_t *dst, const uint16_t *src, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)(dst + i), _mm256_loadu_si256((const __m256i *)(src + i)));
    for (; i < n; i++) dst[i] = src[i];
}

/* y[c] = x[c] - sum_t d[t] hr[t ld + c] for c in [0, n): a change inside the block. */
static void blk_rank_g(float *y, const float *x, const float *d, const float *hr, int64_t g,
                       int64_t n, int64_t ld) {
    int64_t c = 0;
    for (; c + 8 <= n; c += 8) {
        __m256 acc = _mm256_loadu_ps(x + c);
        for (int64_t t = 0; t < g; t++)
            acc = _mm256_fnmadd_ps(_mm256_set1_ps(d[t]), _mm256_loadu_ps(hr + t * ld + c), acc);
        _mm256_storeu_ps(y + c, acc);
    }
    if (c < n) {
        const __m256i mk  = avx2_mask8(n - c);
        __m256        acc = _mm256_maskload_ps(x + c, mk);
        for (int64_t t = 0; t < g; t++)
            acc = _mm256_fnmadd_ps(_mm256_set1_ps(d[t]), _mm256_maskload_ps(hr + t * ld + c, mk),
                                   acc);
        _mm256_maskstore_ps(y + c, mk, acc);
    }
}

/* 4 hypotheses x 16 columns [i, i + 16) of the block-end GEMM (m0, m1: the columns of the
 * two halves that exist; full: all 16, unmasked loads). */
static inline __attribute__((always_inline)) void
tail_gemm4x16(float *const *y, const float *const *x, const float *const *D, int64_t kn,
              const float *hb, int64_t ld, int64_t i, __m256i m0, __m256i m1, int full) {
    __m256 a0[4], a1[4];
#pragma GCC unroll 4
    for (int e = 0; e < 4; e++) {
        a0[e] = full ? _mm256_loadu_ps(x[e] + i) : _mm256_maskload_ps(x[e] + i, m0);
        a1[e] = full ? _mm256_loadu_ps(x[e] + i + 8) : _mm256_maskload_ps(x[e] + i + 8, m1);
    }
    for (int64_t kk = 0; kk < kn; kk++) {
        const float *hk = hb + kk * ld + i;
        const __m256 h0 = full ? _mm256_loadu_ps(hk) : _mm256_maskload_ps(hk, m0);
        const __m256 h1 = full ? _mm256_loadu_ps(hk + 8) : _mm256_maskload_ps(hk + 8, m1);
#pragma GCC unroll 4
        for (int e = 0; e < 4; e++) {
            const __m256 d = _mm256_broadcast_ss(D[e] + kk);
            a0[e]          = _mm256_fnmadd_ps(d, h0, a0[e]);
            a1[e]          = _mm256_fnmadd_ps(d, h1, a1[e]);
        }
    }
#pragma GCC unroll 4
    for (int e = 0; e < 4; e++) {
        if (full) {
            _mm256_storeu_ps(y[e] + i, a0[e]);
            _mm256_storeu_ps(y[e] + i + 8, a1[e]);
        } else {
            _mm256_maskstore_ps(y[e] + i, m0, a0[e]);
            _mm256_maskstore_ps(y[e] + i + 8, m1, a1[e]);
        }
    }
}

/* The block-end GEMM for 8 hypotheses: y_e[i] = x_e[i] - sum_{kk < kn} D_e[kk] hb[kk ld + i]
 * for i in [i1, n_in), 4 hypotheses x 16 columns in registers at a time. */
static void tail_gemm8(float *const *y, const float *const *x, const float *const *D, int64_t kn,
                       const float *hb, int64_t ld, int64_t i1, int64_t n_in) {
    const __m256i all = _mm256_set1_epi32(-1);
    for (int64_t i = i1; i < n_in; i += 16) {
        if (i + 16 <= n_in) {
            tail_gemm4x16(y, x, D, kn, hb, ld, i, all, all, 1);
            tail_gemm4x16(y + 4, x + 4, D + 4, kn, hb, ld, i, all, all, 1);
        } else {
            const __m256i m0 = avx2_mask8(n_in - i), m1 = avx2_mask8(n_in - i - 8);
            tail_gemm4x16(y, x, D, kn, hb, ld, i, m0, m1, 0);
            tail_gemm4x16(y + 4, x + 4, D + 4, kn, hb, ld, i, m0, m1, 0);
        }
    }
}

/* y[i] = x[i] - sum_{kk in groups of mask} D[kk] hb[kk ld + i] for i in [i1, n_in): a survivor
 * from a sibling (same ancestor) whose block codes differ from its own only in those groups. */
static void tail_sparse(float *y, const float *x, const float *D, uint32_t mask, int64_t g,
                        const float *hb, int64_t ld, int64_t i1, int64_t n_in) {
    const float *hr[JB * 64];
    float        cf[JB * 64];
    int          nk = 0;
    for (int64_t jj = 0; jj < JB; jj++)
        if (mask >> jj & 1u)
            for (int64_t t = 0; t < g; t++) {
                hr[nk] = hb + (jj * g + t) * ld;
                cf[nk] = D[jj * g + t];
                nk++;
            }
    int64_t i = i1;
    for (; i + 32 <= n_in; i += 32) {
        __m256 a0 = _mm256_loadu_ps(x + i), a1 = _mm256_loadu_ps(x + i + 8);
        __m256 a2 = _mm256_loadu_ps(x + i + 16), a3 = _mm256_loadu_ps(x + i + 24);
        for (int kk = 0; kk < nk; kk++) {
            const __m256 c = _mm256_broadcast_ss(cf + kk);
            const float *h = hr[kk] + i;
            a0             = _mm256_fnmadd_ps(c, _mm256_loadu_ps(h), a0);
            a1             = _mm256_fnmadd_ps(c, _mm256_loadu_ps(h + 8), a1);
            a2             = _mm256_fnmadd_ps(c, _mm256_loadu_ps(h + 16), a2);
            a3             = _mm256_fnmadd_ps(c, _mm256_loadu_ps(h + 24), a3);
        }
        _mm256_storeu_ps(y + i, a0);
        _mm256_storeu_ps(y + i + 8, a1);
        _mm256_storeu_ps(y + i + 16, a2);
        _mm256_storeu_ps(y + i + 24, a3);
    }
    for (; i < n_in; i += 8) {
        const __m256i mk  = avx2_mask8(n_in - i);
        __m256        acc = _mm256_maskload_ps(x + i, mk);
        for (int kk = 0; kk < nk; kk++)
            acc = _mm256_fnmadd_ps(_mm256_broadcast_ss(cf + kk), _mm256_maskload_ps(hr[kk] + i, mk),
                                   acc);
        _mm256_maskstore_ps(y + i, mk, acc);
    }
}

/* The "keep" lane of candidate c in its block of 16 (k0 = c & ~15): all-ones in the half
 * (lo: lanes 0-7, hi: 8-15) that holds it, zero elsewhere. */
static inline void keep_lanes(int c, __m256 *lo, __m256 *hi) {
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i l    = _mm256_set1_epi32(c & 15);
    *lo                = _mm256_castsi256_ps(_mm256_cmpeq_epi32(iota, l));
    *hi = _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_add_epi32(iota, _mm256_set1_epi32(8)), l));
}

/* d[k] = s^2 q[k] - ec + sum_t v[t] cT[t, k] for g = 8 (ec: e(c) less the hypothesis' loss
 * offset), two hypotheses (v0, v1) sharing the codebook loads, 16 candidates a step (two
 * halves); also the 16 lane-wise minima of each (min over k = l mod 16). */
static void score2_g8(float *d0, float *d1, const float *q, const float *cT, int64_t K,
                      const float *v0, const float *v1, __m256 s2, float ec0, float ec1, int c0,
                      int c1, float off0, float off1, float *min0, float *min1) {
    __m256       mn0l = _mm256_set1_ps(FLT_MAX), mn0h = mn0l, mn1l = mn0l, mn1h = mn0l;
    const __m256 n0 = _mm256_set1_ps(-ec0), n1 = _mm256_set1_ps(-ec1);
    const __m256 o0 = _mm256_set1_ps(off0), o1 = _mm256_set1_ps(off1);
    __m256       k0l, k0h, k1l, k1h;
    keep_lanes(c0, &k0l, &k0h);
    keep_lanes(c1, &k1l, &k1h);
    for (int64_t k = 0; k < K; k += 16) {
        const __m256 ql = _mm256_loadu_ps(q + k), qh = _mm256_loadu_ps(q + k + 8);
        __m256       al = _mm256_fmadd_ps(s2, ql, n0), ah = _mm256_fmadd_ps(s2, qh, n0);
        __m256       bl = _mm256_fmadd_ps(s2, ql, n1), bh = _mm256_fmadd_ps(s2, qh, n1);
#pragma GCC unroll 8
        for (int t = 0; t < 8; t++) {
            const __m256 cl = _mm256_loadu_ps(cT + t * K + k),
                         ch = _mm256_loadu_ps(cT + t * K + k + 8);
            const __m256 va = _mm256_broadcast_ss(v0 + t), vb = _mm256_broadcast_ss(v1 + t);
            al = _mm256_fmadd_ps(va, cl, al);
            ah = _mm256_fmadd_ps(va, ch, ah);
            bl = _mm256_fmadd_ps(vb, cl, bl);
            bh = _mm256_fmadd_ps(vb, ch, bh);
        }
        /* "keep" (k = c) changes nothing: exactly the offset, also in the lane minima */
        if (k == (c0 & ~15)) {
            al = _mm256_blendv_ps(al, o0, k0l);
            ah = _mm256_blendv_ps(ah, o0, k0h);
        }
        if (k == (c1 & ~15)) {
            bl = _mm256_blendv_ps(bl, o1, k1l);
            bh = _mm256_blendv_ps(bh, o1, k1h);
        }
        _mm256_storeu_ps(d0 + k, al);
        _mm256_storeu_ps(d0 + k + 8, ah);
        _mm256_storeu_ps(d1 + k, bl);
        _mm256_storeu_ps(d1 + k + 8, bh);
        mn0l = _mm256_min_ps(mn0l, al);
        mn0h = _mm256_min_ps(mn0h, ah);
        mn1l = _mm256_min_ps(mn1l, bl);
        mn1h = _mm256_min_ps(mn1h, bh);
    }
    _mm256_storeu_ps(min0, mn0l);
    _mm256_storeu_ps(min0 + 8, mn0h);
    _mm256_storeu_ps(min1, mn1l);
    _mm256_storeu_ps(min1 + 8, mn1h);
}

/* The same for one hypothesis and any g <= 64. */
static void score1(float *d, const float *q, const float *cT, int64_t K, int64_t g, const float *v,
                   __m256 s2, float ec, int c, float off, float *min) {
    __m256       mnl = _mm256_set1_ps(FLT_MAX), mnh = mnl;
    const __m256 nec = _mm256_set1_ps(-ec), o = _mm256_set1_ps(off);
    __m256       kl, kh;
    keep_lanes(c, &kl, &kh);
    for (int64_t k = 0; k < K; k += 16) {
        __m256 al = _mm256_fmadd_ps(s2, _mm256_loadu_ps(q + k), nec);
        __m256 ah = _mm256_fmadd_ps(s2, _mm256_loadu_ps(q + k + 8), nec);
        for (int64_t t = 0; t < g; t++) {
            const __m256 vt = _mm256_broadcast_ss(v + t);
            al              = _mm256_fmadd_ps(vt, _mm256_loadu_ps(cT + t * K + k), al);
            ah              = _mm256_fmadd_ps(vt, _mm256_loadu_ps(cT + t * K + k + 8), ah);
        }
        if (k == (c & ~15)) {
            al = _mm256_blendv_ps(al, o, kl);
            ah = _mm256_blendv_ps(ah, o, kh);
        }
        _mm256_storeu_ps(d + k, al);
        _mm256_storeu_ps(d + k + 8, ah);
        mnl = _mm256_min_ps(mnl, al);
        mnh = _mm256_min_ps(mnh, ah);
    }
    _mm256_storeu_ps(min, mnl);
    _mm256_storeu_ps(min + 8, mnh);
}

/* Bits l (< 16) set where lane l of the 16 values at p (two halves) is cmp x. */
static inline unsigned mask16_lt(const float *p, __m256 x) {
    return (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(p), x, _CMP_LT_OQ)) |
           (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(p + 8), x, _CMP_LT_OQ)) << 8;
}

static inline unsigned mask16_le(const float *p, __m256 x) {
    return (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(p), x, _CMP_LE_OQ)) |
           (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(p + 8), x, _CMP_LE_OQ)) << 8;
}

/* A hypothesis inside the current column block. */
struct hyp {
    int       anc; /* block-start hypothesis it descends from */
    double    loss;
    uint64_t  hash;
    uint16_t *bc;  /* (JB M) codes of the block's positions */
    float    *rhb; /* (JB g) rH on the block's columns, exact */
};

struct row_st {
    int64_t         o;
    float           so;
    int             n_cur, set;
    struct hyp      hy[2 * MAXB], *cur, *nxt;
    const float    *base_rh[MAXB];    /* block-start rH (n_in) of each hypothesis */
    const uint16_t *base_codes[MAXB]; /* block-start codes (the positions before the block) */
    float          *slot_rh[2][MAXB]; /* storage of block-start states, two alternating sets */
    uint16_t       *slot_codes[2][MAXB];
};

struct cand {
    float    val;
    int      idx;
    uint64_t hash;
};

struct thr_mem { /* one thread's scratch */
    char          *slots, *small;
    float         *d, *D, *zero, *dummy;
    float         *hb; /* (jn g, jn g) the block's diagonal block of H, contiguous */
    struct cand   *top;
    float        **ys;
    const float  **xs, **Ds; /* dense block-end list */
    float        **sp_y;
    const float  **sp_x, **sp_D; /* sparse block-end list */
    uint32_t      *sp_mask;
    const float   *Dof[MAXB];
    struct row_st *rows;
};

/* One position (j, m) of one row: score, select the b best distinct, apply inside the block. */
static void step(const struct beam_job *J, struct row_st *R, struct thr_mem *T, int64_t j,
                 int64_t j0, int64_t jn, int64_t m) {
    const int64_t g = J->g, K = J->K, M = J->M;
    const int     beam = J->beam;
    const float   so   = R->so;
    struct hyp   *cur = R->cur, *nxt = R->nxt;
    const int     n_cur = R->n_cur;
    const int64_t p = j * M + m, jj = j - j0, pb = jj * M + m;
    const float  *qp = J->q + p * K, *cm = J->cT + m * g * K;
    const __m256  s2  = _mm256_set1_ps(so * so);
    float        *d   = T->d;
    struct cand  *top = T->top;
    float         v[2][64], hc[64], dl[64], ecs[2], lmin[MAXB * 16], best[MAXB + 1], offs[MAXB],
        cv_buf[MAXB * 16 + 16];
    const double base = cur[0].loss;
    /* d[h K + k] holds loss(candidate) - base, the hypothesis' offset folded into scoring */
    for (int hi = 0; hi < n_cur; hi++) offs[hi] = (float)(cur[hi].loss - base);

    for (int h0 = 0, nh; h0 < n_cur; h0 += nh) { /* score every variant */
        nh = g == 8 && h0 + 1 < n_cur ? 2 : 1;
        for (int u = 0; u < nh; u++) {
            const struct hyp *x  = &cur[h0 + u];
            const int         c  = x->bc[pb];
            const float      *cc = J->cb + (m * K + c) * g;
            const float      *hd = J->hd + j * g * g; /* H_jj symmetric: sum of its rows */
            if (g == 8) {
                __m256 a0 = _mm256_mul_ps(_mm256_set1_ps(cc[0]), _mm256_loadu_ps(hd));
                __m256 a1 = _mm256_mul_ps(_mm256_set1_ps(cc[1]), _mm256_loadu_ps(hd + 8));
                for (int64_t b = 2; b < 8; b += 2) { /* two chains: latency, not FMAs, bound this */
                    a0 = _mm256_fmadd_ps(_mm256_set1_ps(cc[b]), _mm256_loadu_ps(hd + b * 8), a0);
                    a1 = _mm256_fmadd_ps(_mm256_set1_ps(cc[b + 1]), _mm256_loadu_ps(hd + b * 8 + 8),
                                         a1);
                }
                /* v = -2 s rH_j - 2 s^2 H_jj c;  e(c) = s^2 q[c] + c . v */
                const __m256 vv = _mm256_fmadd_ps(
                    _mm256_set1_ps(-2.0f * so * so), _mm256_add_ps(a0, a1),
                    _mm256_mul_ps(_mm256_set1_ps(-2.0f * so), _mm256_loadu_ps(x->rhb + jj * 8)));
                _mm256_storeu_ps(v[u], vv);
                __m256 pe = _mm256_mul_ps(vv, _mm256_loadu_ps(cc));
                __m128 p4 = _mm_add_ps(_mm256_castps256_ps128(pe), _mm256_extractf128_ps(pe, 1));
                p4        = _mm_add_ps(p4, _mm_movehl_ps(p4, p4));
                p4        = _mm_add_ss(p4, _mm_movehdup_ps(p4));
                /* s^2 q[c] rounded, then added (not fused): what GCC makes of the AVX-512
                 * variant's so * so * qp[c] + _mm_cvtss_f32(p4) */
                ecs[u] = _mm_cvtss_f32(_mm_add_ss(_mm_set_ss(so * so * qp[c]), p4));
                continue;
            } else {
                for (int64_t a = 0; a < g; a++) hc[a] = 0.0f;
                for (int64_t b = 0; b < g; b++)
                    for (int64_t a = 0; a < g; a++) hc[a] += cc[b] * hd[b * g + a];
            }
            for (int64_t a = 0; a < g; a++)
                v[u][a] = -2.0f * so * x->rhb[jj * g + a] - 2.0f * so * so * hc[a];
            float ec = so * so * qp[c]; /* e(c), see the reference */
            for (int64_t t = 0; t < g; t++) ec += v[u][t] * cc[t];
            ecs[u] = ec;
        }
        if (nh == 2)
            score2_g8(d + h0 * K, d + (h0 + 1) * K, qp, cm, K, v[0], v[1], s2, ecs[0] - offs[h0],
                      ecs[1] - offs[h0 + 1], cur[h0].bc[pb], cur[h0 + 1].bc[pb], offs[h0],
                      offs[h0 + 1], lmin + h0 * 16, lmin + (h0 + 1) * 16);
        else
            score1(d + h0 * K, qp, cm, K, g, v[0], s2, ecs[0] - offs[h0], cur[h0].bc[pb], offs[h0],
                   lmin + h0 * 16);
    }
    if (beam == 1) { /* greedy: the first lowest candidate (keep is 0), updated in place */
        struct hyp *x  = &cur[0];
        const int   c  = x->bc[pb];
        __m256      bv = _mm256_set1_ps(FLT_MAX);
        __m256i     bi = _mm256_setzero_si256(), idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        for (int64_t k = 0; k < K; k += 8) {
            const __m256 dv = _mm256_loadu_ps(d + k);
            const __m256 lt = _mm256_cmp_ps(dv, bv, _CMP_LT_OQ); /* strictly: first per lane */
            bv              = _mm256_blendv_ps(bv, dv, lt);
            bi              = _mm256_castps_si256(
                             _mm256_blendv_ps(_mm256_castsi256_ps(bi), _mm256_castsi256_ps(idx), lt));
            idx = _mm256_add_epi32(idx, _mm256_set1_epi32(8));
        }
        float   bvl[8];
        int32_t bil[8];
        _mm256_storeu_ps(bvl, bv);
        _mm256_storeu_si256((__m256i *)bil, bi);
        float mn = bvl[0];
        for (int l = 1; l < 8; l++) mn = bvl[l] < mn ? bvl[l] : mn;
        int k = INT32_MAX; /* lowest k among the lowest */
        for (int l = 0; l < 8; l++)
            if (bvl[l] == mn && bil[l] < k) k = bil[l];
        if (k != c) {
            for (int64_t t = 0; t < g; t++)
                dl[t] = so * (J->cb[(m * K + k) * g + t] - J->cb[(m * K + c) * g + t]);
            blk_rank_g(x->rhb + jj * g, x->rhb + jj * g, dl, T->hb + jj * g * (jn * g) + jj * g, g,
                       (jn - jj) * g, jn * g);
            x->bc[pb] = (uint16_t)k;
            x->loss   = base + d[k];
        }
        return;
    }
    /* Selection bound: the b-th smallest of the hypotheses' lane-wise minima (n_cur x 16
     * values, each a different candidate, distinct code vectors across hypotheses as all
     * of them still hold the starting code here). At least b candidates lie at or below
     * it, so the scan starts from a threshold that lets almost nothing through. Any bound
     * is safe: should fewer than b distinct candidates lie below it (a hash collision),
     * the scan runs again unbounded. */
    float bound = FLT_MAX;
    if (n_cur * 16 >= beam) {
        /* prefilter: the b-th smallest lane of the minimum over hypotheses bounds the b-th
         * smallest of all n_cur x 16 values, so only values <= it take part; for b <= 16
         * their b-th smallest comes from vector counts (no data-dependent branches), for
         * wider beams from insertion into a sorted list */
        __m256 gminl = _mm256_set1_ps(FLT_MAX), gminh = gminl;
        for (int hi = 0; hi < n_cur; hi++) {
            gminl = _mm256_min_ps(gminl, _mm256_loadu_ps(lmin + hi * 16));
            gminh = _mm256_min_ps(gminh, _mm256_loadu_ps(lmin + hi * 16 + 8));
        }
        float pre = FLT_MAX, gl[16];
        _mm256_storeu_ps(gl, gminl);
        _mm256_storeu_ps(gl + 8, gminh);
        if (beam <= 16) { /* smallest lane with at least b lanes <= it (no branches) */
            for (int l = 0; l < 16; l++) {
                const int   n_le = __builtin_popcount(mask16_le(gl, _mm256_set1_ps(gl[l])));
                const float x    = n_le >= beam ? gl[l] : FLT_MAX;
                pre              = x < pre ? x : pre;
            }
        }
        if (pre != FLT_MAX) { /* the values <= pre, then the smallest with b of them <= it */
            int nc = 0;
            for (int hi = 0; hi < n_cur; hi++) {
                unsigned mk = mask16_le(lmin + hi * 16, _mm256_set1_ps(pre));
                while (mk) { /* compress: the lanes at or below pre, in lane order */
                    cv_buf[nc++] = lmin[hi * 16 + __builtin_ctz(mk)];
                    mk &= mk - 1;
                }
            }
            for (int l = 0; l < 16; l++) cv_buf[nc + l] = FLT_MAX;
            float bth = FLT_MAX;
            for (int i = 0; i < nc; i++) {
                const __m256 x   = _mm256_set1_ps(cv_buf[i]);
                int          cnt = 0;
                for (int v0 = 0; v0 < nc; v0 += 16)
                    cnt += __builtin_popcount(mask16_le(cv_buf + v0, x));
                const float y = cnt >= beam ? cv_buf[i] : FLT_MAX;
                bth           = y < bth ? y : bth;
            }
            bound = nextafterf(bth, FLT_MAX);
            goto scan;
        }
        int nb = 0;
        for (int hi = 0; hi < n_cur; hi++) {
            unsigned mk = mask16_le(lmin + hi * 16, _mm256_set1_ps(pre));
            while (mk) {
                const int l = __builtin_ctz(mk);
                mk &= mk - 1;
                const float x = lmin[hi * 16 + l];
                if (nb == beam && !(x < best[beam - 1])) continue;
                int pos = nb < beam ? nb++ : beam - 1;
                while (pos > 0 && x < best[pos - 1]) {
                    best[pos] = best[pos - 1];
                    pos--;
                }
                best[pos] = x;
            }
        }
        bound = nextafterf(best[beam - 1], FLT_MAX);
    }
scan:;
    int n_top;
rescan:
    n_top     = 0;
    float thr = bound;
    for (int hi = 0; hi < n_cur; hi++) {
        /* a hypothesis none of whose lane minima is below the threshold has no candidate
         * below it (lane minima are never below the candidates they stand for) */
        if (!mask16_lt(lmin + hi * 16, _mm256_set1_ps(thr))) continue;
        const uint64_t hb = cur[hi].hash ^ zkey(p, cur[hi].bc[pb]);
        for (int64_t k = 0; k < K; k += 16) {
            unsigned mk = mask16_lt(d + hi * K + k, _mm256_set1_ps(thr));
            while (mk) {
                int l = __builtin_ctz(mk);
                mk &= mk - 1;
                float cv = d[hi * K + k + l];
                if (!(cv < thr)) continue;
                uint64_t chs = hb ^ zkey(p, (int)(k + l));
                int      dup = -1;
                for (int e = 0; e < n_top; e++)
                    if (top[e].hash == chs) {
                        dup = e;
                        break;
                    }
                if (dup >= 0) {
                    if (!(cv < top[dup].val)) continue;
                    for (int e = dup; e + 1 < n_top; e++) top[e] = top[e + 1];
                    n_top--;
                }
                int pos = n_top; /* insert after equal values */
                while (pos > 0 && cv < top[pos - 1].val) pos--;
                if (pos >= beam) continue;
                int last = n_top < beam ? n_top : beam - 1;
                for (int e = last; e > pos; e--) top[e] = top[e - 1];
                top[pos] = (struct cand){cv, hi * (int)K + (int)(k + l), chs};
                if (n_top < beam) n_top++;
                if (n_top == beam) thr = top[beam - 1].val;
            }
        }
    }
    if (n_top < beam && bound != FLT_MAX && n_top < n_cur * K) {
        bound = FLT_MAX;
        goto rescan;
    }
    const int64_t ncol = (jn - jj) * g; /* block columns still to be read: group j onwards */
    for (int e = 0; e < n_top; e++) {
        const struct hyp *x = &cur[top[e].idx / (int)K];
        struct hyp       *y = &nxt[e];
        const int         k = top[e].idx % (int)K, c = x->bc[pb];
        y->anc = x->anc;
        copy_u16(y->bc, x->bc, jn * M);
        if (k != c) {
            for (int64_t t = 0; t < g; t++)
                dl[t] = so * (J->cb[(m * K + k) * g + t] - J->cb[(m * K + c) * g + t]);
            blk_rank_g(y->rhb + jj * g, x->rhb + jj * g, dl, T->hb + jj * g * (jn * g) + jj * g, g,
                       ncol, jn * g);
        } else {
            copy_f32(y->rhb + jj * g, x->rhb + jj * g, ncol);
        }
        y->bc[pb] = (uint16_t)k;
        y->loss   = base + top[e].val;
        y->hash   = top[e].hash;
    }
    R->cur   = nxt;
    R->nxt   = cur;
    R->n_cur = n_top;
}

/* Zeroed scratch (NULL on out-of-memory). */
static void *scratch_zalloc(size_t bytes) {
    void *p = lmp_scratch_alloc(bytes);
    if (p) memset(p, 0, bytes);
    return p;
}

/* The thread's buffers, from its scratch arena (the caller resets its mark afterwards). */
static int thr_alloc(struct thr_mem *T, const struct beam_job *J) {
    const int64_t g = J->g, K = J->K, M = J->M, P = J->P, n_in = J->n_in, b = J->beam;
    const size_t  per_slot =
        ((size_t)n_in * sizeof(float) + (size_t)P * sizeof(uint16_t) + 63) / 64 * 64;
    const size_t per_small =
        ((size_t)(JB * g) * sizeof(float) + (size_t)(JB * M) * sizeof(uint16_t) + 63) / 64 * 64;
    const int    rb     = J->rb;
    const size_t n_list = (size_t)(rb * b + 8);
    memset(T, 0, sizeof(*T));
    T->slots   = lmp_scratch_alloc(per_slot * (size_t)(rb * 2 * b));
    T->small   = lmp_scratch_alloc(per_small * (size_t)(rb * 2 * b));
    T->d       = lmp_scratch_alloc((size_t)(b * K + 64) * sizeof(float));
    T->D       = lmp_scratch_alloc(n_list * (size_t)(JB * g) * sizeof(float));
    T->zero    = scratch_zalloc((size_t)(JB * g) * sizeof(float));
    T->dummy   = scratch_zalloc(((size_t)n_in + 32) * sizeof(float));
    T->top     = lmp_scratch_alloc((size_t)(b + 1) * sizeof(struct cand));
    T->ys      = lmp_scratch_alloc(n_list * sizeof(float *));
    T->xs      = lmp_scratch_alloc(n_list * sizeof(float *));
    T->Ds      = lmp_scratch_alloc(n_list * sizeof(float *));
    T->rows    = lmp_scratch_alloc((size_t)rb * sizeof(struct row_st));
    T->hb      = lmp_scratch_alloc((size_t)(JB * g * JB * g) * sizeof(float));
    T->sp_y    = lmp_scratch_alloc(n_list * sizeof(float *));
    T->sp_x    = lmp_scratch_alloc(n_list * sizeof(float *));
    T->sp_D    = lmp_scratch_alloc(n_list * sizeof(float *));
    T->sp_mask = lmp_scratch_alloc(n_list * sizeof(uint32_t));
    if (!T->slots || !T->small || !T->d || !T->D || !T->zero || !T->dummy || !T->top || !T->ys ||
        !T->xs || !T->Ds || !T->rows || !T->hb || !T->sp_y || !T->sp_x || !T->sp_D || !T->sp_mask)
        return -1;
    for (int r = 0; r < rb; r++) {
        struct row_st *R = &T->rows[r];
        for (int s = 0; s < 2; s++)
            for (int i = 0; i < b; i++) {
                char *p             = T->slots + per_slot * (size_t)((r * 2 + s) * b + i);
                R->slot_rh[s][i]    = (float *)p;
                R->slot_codes[s][i] = (uint16_t *)(p + (size_t)n_in * sizeof(float));
            }
        for (int i = 0; i < 2 * b; i++) {
            char *p      = T->small + per_small * (size_t)(r * 2 * b + i);
            R->hy[i].rhb = (float *)p;
            R->hy[i].bc  = (uint16_t *)(p + (size_t)(JB * g) * sizeof(float));
        }
    }
    return 0;
}

static void rows_part(void *arg, int tid, int nt) {
    struct beam_job *J = arg;
    int64_t          lo, hi;
    lmp_par_range(J->n_out, tid, nt, &lo, &hi);
    if (lo >= hi) return;
    const int64_t  g = J->g, K = J->K, M = J->M, P = J->P, n_in = J->n_in, n_grp = J->n_grp;
    const int      beam = J->beam;
    struct thr_mem T;
    const struct lmp_scratch_mark mark = lmp_scratch_mark();
    if (thr_alloc(&T, J) != 0) {
        lmp_scratch_reset(mark);
        __atomic_store_n(&J->failed, 1, __ATOMIC_RELAXED);
        return;
    }
    struct row_st *rows = T.rows;

    for (int64_t o0 = lo; o0 < hi; o0 += J->rb) {
        const int nr = hi - o0 < J->rb ? (int)(hi - o0) : J->rb;
        for (int r = 0; r < nr; r++) {
            struct row_st *R = &rows[r];
            const int64_t  o = o0 + r;
            R->o             = o;
            R->so            = J->scale[o];
            R->cur           = R->hy;
            R->nxt           = R->hy + beam;
            R->n_cur         = 1;
            R->set           = 0;
            R->base_rh[0]    = J->rh0 + o * n_in;
            R->base_codes[0] = J->codes + o * P;
            struct hyp *c0   = &R->cur[0];
            c0->anc          = 0;
            c0->loss         = J->loss0[o];
            c0->hash         = 0;
            if (beam > 1)
                for (int64_t p = 0; p < P; p++) c0->hash ^= zkey(p, J->codes[o * P + p]);
        }
        for (int64_t j0 = 0; j0 < n_grp; j0 += JB) {
            const int64_t jn = n_grp - j0 < JB ? n_grp - j0 : JB;
            for (int r = 0; r < nr; r++) { /* block start */
                struct row_st *R = &rows[r];
                for (int e = 0; e < R->n_cur; e++) {
                    struct hyp *x = &R->cur[e];
                    x->anc        = e;
                    memcpy(x->bc, J->codes + R->o * P + j0 * M,
                           (size_t)(jn * M) * sizeof(uint16_t));
                    memcpy(x->rhb, R->base_rh[e] + j0 * g, (size_t)(jn * g) * sizeof(float));
                }
            }
            for (int64_t a = 0; a < jn * g; a++) /* H on the block's rows and columns */
                memcpy(T.hb + a * jn * g, J->h + (j0 * g + a) * n_in + j0 * g,
                       (size_t)(jn * g) * sizeof(float));
            for (int64_t j = j0; j < j0 + jn; j++)
                for (int64_t mi = 0; mi < M; mi++) {
                    const int64_t m = J->m_order ? J->m_order[j * M + mi] : mi;
                    for (int r = 0; r < nr; r++) step(J, &rows[r], &T, j, j0, jn, m);
                }
            /* block end: survivors' block-start states from their ancestors' */
            const int64_t i1 = (j0 + jn) * g, kn = jn * g;
            int           nl = 0, nsp = 0, nD = 0;
            for (int r = 0; r < nr; r++) {
                struct row_st  *R    = &rows[r];
                const uint16_t *orig = J->codes + R->o * P + j0 * M;
                const int       ns   = R->set ^ 1;
                for (int e = 0; e < R->n_cur; e++) {
                    const struct hyp *x  = &R->cur[e];
                    float            *De = T.D + (size_t)nD++ * (size_t)(JB * g);
                    for (int64_t jj = 0; jj < jn; jj++)
                        for (int64_t t = 0; t < g;
                             t += 8) { /* the last step masked if 8 does not divide g */
                            const __m256i mk  = avx2_mask8(g - t);
                            __m256        acc = _mm256_setzero_ps();
                            for (int64_t m = 0; m < M; m++)
                                acc = _mm256_add_ps(
                                    acc, _mm256_sub_ps(
                                             _mm256_maskload_ps(
                                                 J->cb + (m * K + x->bc[jj * M + m]) * g + t, mk),
                                             _mm256_maskload_ps(
                                                 J->cb + (m * K + orig[jj * M + m]) * g + t, mk)));
                            _mm256_maskstore_ps(De + jj * g + t, mk,
                                                _mm256_mul_ps(_mm256_set1_ps(R->so), acc));
                        }
                    uint16_t *dc = R->slot_codes[ns][e];
                    memcpy(dc, R->base_codes[x->anc], (size_t)(j0 * M) * sizeof(uint16_t));
                    memcpy(dc + j0 * M, x->bc, (size_t)(jn * M) * sizeof(uint16_t));
                    int ref = -1; /* first survivor of the same ancestor */
                    for (int e2 = 0; e2 < e && ref < 0; e2++)
                        if (R->cur[e2].anc == x->anc) ref = e2;
                    if (ref < 0) {
                        T.ys[nl] = R->slot_rh[ns][e];
                        T.xs[nl] = R->base_rh[x->anc];
                        T.Ds[nl] = De;
                        nl++;
                        T.Dof[e] = De;
                    } else { /* from the first one's new rH */
                        const float    *Dr   = T.Dof[ref];
                        const uint16_t *bcr  = R->cur[ref].bc;
                        uint32_t        mask = 0;
                        for (int64_t jj = 0; jj < jn; jj++) {
                            int same = 1;
                            for (int64_t m = 0; m < M; m++)
                                same &= x->bc[jj * M + m] == bcr[jj * M + m];
                            if (same) continue;
                            mask |= 1u << jj;
                            for (int64_t t = 0; t < g; t++) De[jj * g + t] -= Dr[jj * g + t];
                        }
                        T.sp_y[nsp]    = R->slot_rh[ns][e];
                        T.sp_x[nsp]    = R->slot_rh[ns][ref];
                        T.sp_D[nsp]    = De;
                        T.sp_mask[nsp] = mask;
                        nsp++;
                    }
                }
                for (int e = 0; e < R->n_cur; e++) {
                    R->base_rh[e]    = R->slot_rh[ns][e];
                    R->base_codes[e] = R->slot_codes[ns][e];
                }
                R->set = ns;
            }
            if (i1 < n_in) {
                while (nl % 8) {
                    T.ys[nl] = T.dummy;
                    T.xs[nl] = T.dummy;
                    T.Ds[nl] = T.zero;
                    nl++;
                }
                for (int e = 0; e < nl; e += 8)
                    tail_gemm8(T.ys + e, T.xs + e, T.Ds + e, kn, J->h + j0 * g * n_in, n_in, i1,
                               n_in);
                for (int e = 0; e < nsp; e++)
                    tail_sparse(T.sp_y[e], T.sp_x[e], T.sp_D[e], T.sp_mask[e], g,
                                J->h + j0 * g * n_in, n_in, i1, n_in);
            }
        }
        for (int r = 0; r < nr; r++) {
            if (n_grp > 0)
                memcpy(J->codes + rows[r].o * P, rows[r].base_codes[0],
                       (size_t)P * sizeof(uint16_t));
            if (J->loss) J->loss[rows[r].o] = rows[r].cur[0].loss;
        }
    }
    lmp_scratch_reset(mark);
}

int lmp_aq_beam_avx2(uint16_t *codes, double *loss, const float *w, const float *scale,
                     const float *cb, const float *h, const struct lmp_aq_shape *s, int beam,
                     const uint8_t *m_order) {
    const int64_t n_out = s->n_out, n_in = s->n_in, g = s->g, M = s->M, K = s->K;
    const int64_t n_grp = n_in / g, P = n_grp * M;
    if (beam < 1) beam = 1;
    if (K % 16 != 0 || g > 64 || beam > MAXB)
        return lmp_aq_beam_ref(codes, loss, w, scale, cb, h, s, beam, m_order);
    if (n_out <= 0) return 0;
    const struct lmp_scratch_mark mark = lmp_scratch_mark();
    float    *cT    = lmp_scratch_alloc((size_t)(M * g * K + P * K + 2 * n_out * n_in + n_in * g) *
                                        sizeof(float));
    double   *loss0 = lmp_scratch_alloc((size_t)n_out * sizeof(double));
    uint16_t *keep  = lmp_scratch_alloc((size_t)(n_out * P) * sizeof(uint16_t));
    if (!cT || !loss0 || !keep) {
        lmp_scratch_reset(mark);
        return LMP_ENOMEM;
    }
    float *q = cT + M * g * K, *r = q + P * K, *rh = r + n_out * n_in, *hd = rh + n_out * n_in;
    for (int64_t j = 0; j < n_grp; j++)
        for (int64_t a = 0; a < g; a++)
            for (int64_t b = 0; b < g; b++)
                hd[(j * g + a) * g + b] = h[(j * g + a) * n_in + j * g + b];
    memcpy(keep, codes, (size_t)(n_out * P) * sizeof(uint16_t));
    for (int64_t m = 0; m < M; m++)
        for (int64_t k = 0; k < K; k++)
            for (int64_t t = 0; t < g; t++) cT[(m * g + t) * K + k] = cb[(m * K + k) * g + t];
    lmp_aq_decode_avx2(r, codes, cb, scale, s); /* the same bits as the AVX-512 decode */
    for (int64_t i = 0; i < n_out * n_in; i++) r[i] = w[i] - r[i];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)n_out, (blasint)n_in,
                (blasint)n_in, 1.0f, r, (blasint)n_in, h, (blasint)n_in, 0.0f, rh, (blasint)n_in);
    for (int64_t o = 0; o < n_out; o++) {
        double acc = 0.0;
        for (int64_t i = 0; i < n_in; i++) acc += (double)r[o * n_in + i] * rh[o * n_in + i];
        loss0[o] = acc;
    }
    struct beam_job J  = {codes, loss, scale, cb, h, cT,    hd, q,    rh, loss0, m_order,
                          n_out, n_in, g,     M,  K, n_grp, P,  beam, 1,  0};
    int             nt = lmp_cpu_threads();
    if (n_grp > 0) lmp_cpu_parallel(nt < n_grp ? nt : (int)n_grp, q_part, &J);
    J.rb = RB; /* the first survivors of each ancestor in RB rows fill the GEMM tiles */
    /* at least rb rows per thread, so the lockstep blocks stay full */
    int64_t nt_rows = (n_out + J.rb - 1) / J.rb;
    lmp_cpu_parallel(nt < nt_rows ? nt : (int)nt_rows, rows_part, &J);
    int st = 0;
    if (J.failed) {
        memcpy(codes, keep, (size_t)(n_out * P) * sizeof(uint16_t));
        st = LMP_ENOMEM;
    }
    lmp_scratch_reset(mark);
    return st;
}
