/*  aq_beam_avx512 - the beam search of aq_beam_ref with blocked (delayed) updates of rH
 *
 *  The search is the reference's: same objective, positions in the same order (groups
 *  j = 0, 1, ..., inside group j the codebooks in the order m_order gives, or 0..M-1),
 *  the b lowest-loss distinct code vectors survive each position, ties to the earlier
 *  hypothesis then the lower k. What changes is how the running product rH is kept.
 *
 *  Scoring position (j, m) needs only the g columns of group j of rH. Groups are taken
 *  JB at a time (a "column block"); inside a block every hypothesis carries rH for the
 *  block's JB g columns only (kept exact by rank-g updates of those columns, at most
 *  JB g wide) and its codes for the block's positions. Every position not yet visited
 *  still holds the row's starting code in every hypothesis, so when a block ends, a
 *  survivor e differs from the block-start hypothesis it descends from (its "ancestor")
 *  exactly by the weight change D_e = s (decode(codes_e) - decode(codes_start)) on the
 *  block's JB g weights, and the columns right of the block follow from one product
 *
 *      rH_e[tail] = rH_ancestor[tail] - D_e^T H[block rows, tail]
 *
 *  done for the survivors of RB rows at once as a GEMM (k = JB g, n = the tail; 8
 *  hypotheses x 32 columns in registers, the JB g rows of H read once per 8 hypotheses).
 *  Per row this is at most b n_in^2 flops, against M b n_in^2 for the rank-g update of
 *  the whole tail after every position (the eager baseline, aq_beam_eager_avx512.c), and
 *  each hypothesis' rH is streamed once per block instead of once per position.
 *  Survivors of one ancestor usually differ in few of the block's groups: only the first
 *  one takes the GEMM; the others start from its new rH and apply the difference of the
 *  weight changes on the groups where their codes differ (a rank-(groups x g) update).
 *
 *  - The starting products rH of all rows come from one OpenBLAS sgemm (R H).
 *  - q_jm[k] = cb_m[k]^T H_jj cb_m[k] once per call, groups split across threads.
 *  - Scoring: codebooks transposed to (M, g, K) so 16 candidates take g FMAs; for g = 8
 *    two hypotheses of a row share each codebook load. Scores are stored as loss - base
 *    (the hypothesis' offset folded into the constant term) with 16 lane-wise minima.
 *  - Selection keeps a sorted list of the b best distinct candidates (Zobrist hashes as
 *    in the reference); the scan starts from a bound that at least b candidates meet
 *    (from the lane minima), skips hypotheses with no lane minimum below the threshold,
 *    and a vector compare skips almost every candidate of the others. Beam 1 is a
 *    vector argmin (lowest k on ties, as the reference's first-lowest).
 *  - Rows are split across threads, RB rows per thread searched in lockstep.
 *  rH and the candidate deltas are fp32 (the reference uses double), so the loss
 *  reported is tracked to fp32 rounding; the objective of the codes is what tests compare.
 *  CPU reference: kernels/ref/aq_beam_ref.c
 */
#include "kernels/cpu/cpu_variants.h"
#include "kernels/cpu/parallel.h"
#include "base/status.h" /* defines: LMP_ENOMEM */

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
            for (int64_t k = 0; k < K; k += 16) {
                __m512 acc = _mm512_setzero_ps();
                for (int64_t a = 0; a < g; a++) {
                    __m512 hc = _mm512_setzero_ps(); /* (H_jj c)[a] for 16 codewords */
                    for (int64_t b = 0; b < g; b++)
                        hc = _mm512_fmadd_ps(_mm512_set1_ps(J->h[(j * g + a) * n_in + j * g + b]),
                                             _mm512_loadu_ps(cm + b * K + k), hc);
                    acc = _mm512_fmadd_ps(_mm512_loadu_ps(cm + a * K + k), hc, acc);
                }
                _mm512_storeu_ps(qp + k, acc);
            }
        }
}

static inline __mmask16 tail_mask(int64_t rem) {
    return rem >= 16 ? (__mmask16)0xFFFF : rem <= 0 ? (__mmask16)0 : (__mmask16)((1u << rem) - 1);
}

/* Short copies inside the search (a libc call costs more than the move). */
static inline void copy_f32(float *dst, const float *src, int64_t n) {
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 mk = tail_mask(n - i);
        _mm512_mask_storeu_ps(dst + i, mk, _mm512_maskz_loadu_ps(mk, src + i));
    }
}

static inline void copy_u16(uint16_t *dst, const uint16_t *src, int64_t n) {
    for (int64_t i = 0; i < n; i += 32) {
        const __mmask32 mk =
            n - i >= 32 ? (__mmask32)0xFFFFFFFFu : (__mmask32)((1u << (n - i)) - 1);
        _mm512_mask_storeu_epi16(dst + i, mk, _mm512_maskz_loadu_epi16(mk, src + i));
    }
}

/* y[c] = x[c] - sum_t d[t] hr[t ld + c] for c in [0, n): a change inside the block. */
static void blk_rank_g(float *y, const float *x, const float *d, const float *hr, int64_t g,
                       int64_t n, int64_t ld) {
    for (int64_t c = 0; c < n; c += 16) {
        const __mmask16 mk  = tail_mask(n - c);
        __m512          acc = _mm512_maskz_loadu_ps(mk, x + c);
        for (int64_t t = 0; t < g; t++)
            acc = _mm512_fnmadd_ps(_mm512_set1_ps(d[t]), _mm512_maskz_loadu_ps(mk, hr + t * ld + c),
                                   acc);
        _mm512_mask_storeu_ps(y + c, mk, acc);
    }
}

/* The block-end GEMM for 8 hypotheses: y_e[i] = x_e[i] - sum_{kk < kn} D_e[kk] hb[kk ld + i]
 * for i in [i1, n_in). 8 x 32 accumulators stay in registers over the whole k loop. */
static void tail_gemm8(float *const *y, const float *const *x, const float *const *D, int64_t kn,
                       const float *hb, int64_t ld, int64_t i1, int64_t n_in) {
    for (int64_t i = i1; i < n_in; i += 32) {
        const __mmask16 m0 = tail_mask(n_in - i), m1 = tail_mask(n_in - i - 16);
        __m512          a0[8], a1[8];
#pragma GCC unroll 8
        for (int e = 0; e < 8; e++) {
            a0[e] = _mm512_maskz_loadu_ps(m0, x[e] + i);
            a1[e] = _mm512_maskz_loadu_ps(m1, x[e] + i + 16);
        }
        for (int64_t kk = 0; kk < kn; kk++) {
            const __m512 h0 = _mm512_maskz_loadu_ps(m0, hb + kk * ld + i);
            const __m512 h1 = _mm512_maskz_loadu_ps(m1, hb + kk * ld + i + 16);
#pragma GCC unroll 8
            for (int e = 0; e < 8; e++) {
                const __m512 d = _mm512_set1_ps(D[e][kk]);
                a0[e]          = _mm512_fnmadd_ps(d, h0, a0[e]);
                a1[e]          = _mm512_fnmadd_ps(d, h1, a1[e]);
            }
        }
#pragma GCC unroll 8
        for (int e = 0; e < 8; e++) {
            _mm512_mask_storeu_ps(y[e] + i, m0, a0[e]);
            _mm512_mask_storeu_ps(y[e] + i + 16, m1, a1[e]);
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
    for (int64_t i = i1; i < n_in; i += 64) {
        const __mmask16 m0 = tail_mask(n_in - i), m1 = tail_mask(n_in - i - 16),
                        m2 = tail_mask(n_in - i - 32), m3 = tail_mask(n_in - i - 48);
        __m512 a0 = _mm512_maskz_loadu_ps(m0, x + i), a1 = _mm512_maskz_loadu_ps(m1, x + i + 16);
        __m512 a2 = _mm512_maskz_loadu_ps(m2, x + i + 32),
               a3 = _mm512_maskz_loadu_ps(m3, x + i + 48);
        for (int kk = 0; kk < nk; kk++) {
            const __m512 c = _mm512_set1_ps(cf[kk]);
            const float *h = hr[kk] + i;
            a0             = _mm512_fnmadd_ps(c, _mm512_maskz_loadu_ps(m0, h), a0);
            a1             = _mm512_fnmadd_ps(c, _mm512_maskz_loadu_ps(m1, h + 16), a1);
            a2             = _mm512_fnmadd_ps(c, _mm512_maskz_loadu_ps(m2, h + 32), a2);
            a3             = _mm512_fnmadd_ps(c, _mm512_maskz_loadu_ps(m3, h + 48), a3);
        }
        _mm512_mask_storeu_ps(y + i, m0, a0);
        _mm512_mask_storeu_ps(y + i + 16, m1, a1);
        _mm512_mask_storeu_ps(y + i + 32, m2, a2);
        _mm512_mask_storeu_ps(y + i + 48, m3, a3);
    }
}

/* d[k] = s^2 q[k] - ec + sum_t v[t] cT[t, k] for g = 8 (ec: e(c) less the hypothesis' loss
 * offset), two hypotheses (v0, v1) sharing the codebook loads; also the 16 lane-wise minima
 * of each (min over k = l mod 16). */
static void score2_g8(float *d0, float *d1, const float *q, const float *cT, int64_t K,
                      const float *v0, const float *v1, __m512 s2, float ec0, float ec1, int c0,
                      int c1, float off0, float off1, float *min0, float *min1) {
    __m512       va[8], vb[8];
    __m512       mn0 = _mm512_set1_ps(FLT_MAX), mn1 = mn0;
    const __m512 n0 = _mm512_set1_ps(-ec0), n1 = _mm512_set1_ps(-ec1);
    const __m512 o0 = _mm512_set1_ps(off0), o1 = _mm512_set1_ps(off1);
#pragma GCC unroll 8
    for (int t = 0; t < 8; t++) {
        va[t] = _mm512_set1_ps(v0[t]);
        vb[t] = _mm512_set1_ps(v1[t]);
    }
    for (int64_t k = 0; k < K; k += 16) {
        const __m512 qk = _mm512_loadu_ps(q + k);
        __m512       a = _mm512_fmadd_ps(s2, qk, n0), b = _mm512_fmadd_ps(s2, qk, n1);
#pragma GCC unroll 8
        for (int t = 0; t < 8; t++) {
            const __m512 c = _mm512_loadu_ps(cT + t * K + k);
            a              = _mm512_fmadd_ps(va[t], c, a);
            b              = _mm512_fmadd_ps(vb[t], c, b);
        }
        /* "keep" (k = c) changes nothing: exactly the offset, also in the lane minima */
        a = _mm512_mask_mov_ps(a, (__mmask16)(k == (c0 & ~15)) << (c0 & 15), o0);
        b = _mm512_mask_mov_ps(b, (__mmask16)(k == (c1 & ~15)) << (c1 & 15), o1);
        _mm512_storeu_ps(d0 + k, a);
        _mm512_storeu_ps(d1 + k, b);
        mn0 = _mm512_min_ps(mn0, a);
        mn1 = _mm512_min_ps(mn1, b);
    }
    _mm512_storeu_ps(min0, mn0);
    _mm512_storeu_ps(min1, mn1);
}

/* The same for one hypothesis and any g <= 64. */
static void score1(float *d, const float *q, const float *cT, int64_t K, int64_t g, const float *v,
                   __m512 s2, float ec, int c, float off, float *min) {
    __m512       mn  = _mm512_set1_ps(FLT_MAX);
    const __m512 nec = _mm512_set1_ps(-ec);
    for (int64_t k = 0; k < K; k += 16) {
        __m512 acc = _mm512_fmadd_ps(s2, _mm512_loadu_ps(q + k), nec);
        for (int64_t t = 0; t < g; t++)
            acc = _mm512_fmadd_ps(_mm512_set1_ps(v[t]), _mm512_loadu_ps(cT + t * K + k), acc);
        acc = _mm512_mask_mov_ps(acc, (__mmask16)(k == (c & ~15)) << (c & 15), _mm512_set1_ps(off));
        _mm512_storeu_ps(d + k, acc);
        mn = _mm512_min_ps(mn, acc);
    }
    _mm512_storeu_ps(min, mn);
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
    const __m512  s2  = _mm512_set1_ps(so * so);
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
                ecs[u]    = so * so * qp[c] + _mm_cvtss_f32(p4);
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
        __m512      bv = _mm512_set1_ps(FLT_MAX);
        __m512i     bi = _mm512_setzero_si512(),
                idx    = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        for (int64_t k = 0; k < K; k += 16) {
            const __m512    dv = _mm512_loadu_ps(d + k);
            const __mmask16 lt =
                _mm512_cmp_ps_mask(dv, bv, _CMP_LT_OQ); /* strictly: first per lane */
            bv  = _mm512_mask_blend_ps(lt, bv, dv);
            bi  = _mm512_mask_blend_epi32(lt, bi, idx);
            idx = _mm512_add_epi32(idx, _mm512_set1_epi32(16));
        }
        const float     mn = _mm512_reduce_min_ps(bv);
        const __mmask16 at = _mm512_cmp_ps_mask(bv, _mm512_set1_ps(mn), _CMP_EQ_OQ);
        const int       k  = _mm512_mask_reduce_min_epi32(at, bi); /* lowest k among the lowest */
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
        __m512 gmin = _mm512_set1_ps(FLT_MAX);
        for (int hi = 0; hi < n_cur; hi++)
            gmin = _mm512_min_ps(gmin, _mm512_loadu_ps(lmin + hi * 16));
        float pre = FLT_MAX;
        if (beam <= 16) { /* smallest lane with at least b lanes <= it (no branches) */
            float gl[16];
            _mm512_storeu_ps(gl, gmin);
            for (int l = 0; l < 16; l++) {
                const int n_le =
                    __builtin_popcount(_mm512_cmp_ps_mask(gmin, _mm512_set1_ps(gl[l]), _CMP_LE_OQ));
                const float x = n_le >= beam ? gl[l] : FLT_MAX;
                pre           = x < pre ? x : pre;
            }
        }
        if (pre != FLT_MAX) { /* the values <= pre, then the smallest with b of them <= it */
            int nc = 0;
            for (int hi = 0; hi < n_cur; hi++) {
                const __m512    lv = _mm512_loadu_ps(lmin + hi * 16);
                const __mmask16 mk = _mm512_cmp_ps_mask(lv, _mm512_set1_ps(pre), _CMP_LE_OQ);
                _mm512_mask_compressstoreu_ps(cv_buf + nc, mk, lv);
                nc += __builtin_popcount(mk);
            }
            _mm512_storeu_ps(cv_buf + nc, _mm512_set1_ps(FLT_MAX));
            float bth = FLT_MAX;
            for (int i = 0; i < nc; i++) {
                const __m512 x   = _mm512_set1_ps(cv_buf[i]);
                int          cnt = 0;
                for (int v0 = 0; v0 < nc; v0 += 16)
                    cnt += __builtin_popcount(
                        _mm512_cmp_ps_mask(_mm512_loadu_ps(cv_buf + v0), x, _CMP_LE_OQ));
                const float y = cnt >= beam ? cv_buf[i] : FLT_MAX;
                bth           = y < bth ? y : bth;
            }
            bound = nextafterf(bth, FLT_MAX);
            goto scan;
        }
        int nb = 0;
        for (int hi = 0; hi < n_cur; hi++) {
            const __m512 lv = _mm512_loadu_ps(lmin + hi * 16);
            __mmask16    mk = _mm512_cmp_ps_mask(lv, _mm512_set1_ps(pre), _CMP_LE_OQ);
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
        if (!_mm512_cmp_ps_mask(_mm512_loadu_ps(lmin + hi * 16), _mm512_set1_ps(thr), _CMP_LT_OQ))
            continue;
        const uint64_t hb = cur[hi].hash ^ zkey(p, cur[hi].bc[pb]);
        for (int64_t k = 0; k < K; k += 16) {
            __m512    val = _mm512_loadu_ps(d + hi * K + k);
            __mmask16 mk  = _mm512_cmp_ps_mask(val, _mm512_set1_ps(thr), _CMP_LT_OQ);
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
                            const __mmask8 mk =
                                g - t >= 8 ? (__mmask8)0xFF : (__mmask8)((1u << (g - t)) - 1);
                            __m256 acc = _mm256_setzero_ps();
                            for (int64_t m = 0; m < M; m++)
                                acc = _mm256_add_ps(
                                    acc, _mm256_sub_ps(
                                             _mm256_maskz_loadu_ps(
                                                 mk, J->cb + (m * K + x->bc[jj * M + m]) * g + t),
                                             _mm256_maskz_loadu_ps(
                                                 mk, J->cb + (m * K + orig[jj * M + m]) * g + t)));
                            _mm256_mask_storeu_ps(De + jj * g + t, mk,
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

int lmp_aq_beam_avx512(uint16_t *codes, double *loss, const float *w, const float *scale,
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
    lmp_aq_decode_avx512(r, codes, cb, scale, s);
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
