/*  aq_beam_eager_avx512 - the previous AVX-512 beam search (eager rank-g updates), kept
 *  as the baseline of bench/bench_kernels only (built into that program, not into the
 *  kernel library); the table uses kernels/cpu/aq_beam_avx512.c. Same search as
 *  aq_beam_ref.
 *
 *  - The starting products rH of all rows come from one OpenBLAS sgemm (R H).
 *  - q_jm[k] = cb_m[k]^T H_jj cb_m[k] is built once per call, groups split across threads.
 *  - Scoring: codebooks transposed to (M, g, K) so 16 candidates take g FMAs.
 *  - Applying a change is a rank-g update rH -= d^T H[j-rows, :] fused with the copy from
 *    the parent hypothesis, restricted to the columns of groups not yet visited in this
 *    sweep (the others are never read again: half the work on average); for g = 8 the
 *    H rows are loaded once per position for all hypotheses (16 lanes, scalar tail).
 *  - Selection keeps a sorted list of the b best distinct candidates; a vector compare
 *    against the current b-th value skips almost every candidate.
 *  - Rows are split across threads (each with its own hypotheses) and searched 8 at a time
 *    in lockstep, so a position's g rows of H come from memory once per 8 rows.
 *  - A hypothesis' first child takes over its buffers (updated in place, nothing to do
 *    when its code is kept); only further children of the same parent copy.
 *  rH and the candidate deltas are fp32 (the reference uses double), so the loss
 *  reported is tracked to fp32 rounding; the objective of the codes is what tests compare.
 *  CPU reference: kernels/ref/aq_beam_ref.c
 */
#include "bench/aq_beam_eager.h"
#include "kernels/cpu/cpu_variants.h"
#include "kernels/cpu/parallel.h"
#include "base/status.h" /* defines: LMP_ENOMEM */

#include <cblas.h>
#include <float.h>
#include <stdbool.h>
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t zkey(int64_t pos, int code) { /* same keys as the reference */
    uint64_t z = (uint64_t)pos * 65536u + (uint64_t)code + 0x9E3779B97F4A7C15ull;
    z          = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z          = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

struct beam_job {
    uint16_t      *codes;
    double        *loss;
    const float   *w, *scale, *cb, *h;
    const float   *cT;    /* (M, g, K) */
    float         *q;     /* (P, K) */
    const float   *rh0;   /* (n_out, n_in) R H at the start */
    const double  *loss0; /* (n_out) */
    int64_t        n_out, n_in, g, M, K, n_grp, P;
    int            beam;
    int            failed;  /* set by a thread that could not allocate (rows left unchanged) */
    const uint8_t *m_order; /* (n_grp, M) or NULL, as the table's aq_beam */
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

/* y[i] = x[i] - sum_t dl[t] * hrows[t * ld + i] for i in [0, n) (hrows: g rows of H) */
static void rank_update(float *y, const float *x, const float *dl, const float *hrows, int64_t g,
                        int64_t n, int64_t ld) {
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512 a0 = _mm512_loadu_ps(x + i), a1 = _mm512_loadu_ps(x + i + 16);
        for (int64_t t = 0; t < g; t++) {
            __m512 d = _mm512_set1_ps(dl[t]);
            a0       = _mm512_fnmadd_ps(d, _mm512_loadu_ps(hrows + t * ld + i), a0);
            a1       = _mm512_fnmadd_ps(d, _mm512_loadu_ps(hrows + t * ld + i + 16), a1);
        }
        _mm512_storeu_ps(y + i, a0);
        _mm512_storeu_ps(y + i + 16, a1);
    }
    for (; i < n; i++) {
        float acc = x[i];
        for (int64_t t = 0; t < g; t++) acc -= dl[t] * hrows[t * ld + i];
        y[i] = acc;
    }
}

/* d[k] = s^2 q[k] - e(c) + sum_t v[t] cT[t, k] for g = 8: v in registers, two
 * accumulators per 16 candidates so the FMA chains are 4 long. */
static float score_g8(float *d, const float *q, const float *cT, int64_t K, const float *v,
                      __m512 s2, __m512 nec) {
    __m512 vb[8], mn0 = _mm512_set1_ps(FLT_MAX), mn1 = mn0; /* also returns min_k d[k] */
#pragma GCC unroll 8
    for (int t = 0; t < 8; t++) vb[t] = _mm512_set1_ps(v[t]);
    for (int64_t k = 0; k < K; k += 16) {
        __m512 a0 = _mm512_fmadd_ps(s2, _mm512_loadu_ps(q + k), nec), a1 = _mm512_setzero_ps();
#pragma GCC unroll 4
        for (int t = 0; t < 8; t += 2) {
            a0 = _mm512_fmadd_ps(vb[t], _mm512_loadu_ps(cT + t * K + k), a0);
            a1 = _mm512_fmadd_ps(vb[t + 1], _mm512_loadu_ps(cT + (t + 1) * K + k), a1);
        }
        a0 = _mm512_add_ps(a0, a1);
        _mm512_storeu_ps(d + k, a0);
        if (k & 16)
            mn1 = _mm512_min_ps(mn1, a0);
        else
            mn0 = _mm512_min_ps(mn0, a0);
    }
    return _mm512_reduce_min_ps(_mm512_min_ps(mn0, mn1));
}

struct hyp {
    uint16_t *codes;
    float    *rh;
    double    loss;
    uint64_t  hash;
    int       buf;
};

/* For every new hypothesis e: y_e[i] = x_e[i] - sum_t dl_e[t] H[t, i] for i in [i0, n_in)
 * (dl_e NULL: plain copy). The g = 8 rows of H are loaded once per 32 columns and
 * applied to all hypotheses, so H is read from L2 once per position, not once per
 * hypothesis. */
static void fused_update8(float *const *y, const float *const *x, const float *const *dl, int n,
                          const float *hrows, int64_t i0, int64_t n_in) {
    int64_t i = i0;
    for (; i + 32 <= n_in; i += 32) {
        __m512 h0[8], h1[8];
        for (int t = 0; t < 8; t++) {
            h0[t] = _mm512_loadu_ps(hrows + t * n_in + i);
            h1[t] = _mm512_loadu_ps(hrows + t * n_in + i + 16);
        }
        for (int e = 0; e < n; e++) {
            __m512 a0 = _mm512_loadu_ps(x[e] + i), a1 = _mm512_loadu_ps(x[e] + i + 16);
            if (dl[e])
                for (int t = 0; t < 8; t++) {
                    __m512 d = _mm512_set1_ps(dl[e][t]);
                    a0       = _mm512_fnmadd_ps(d, h0[t], a0);
                    a1       = _mm512_fnmadd_ps(d, h1[t], a1);
                }
            _mm512_storeu_ps(y[e] + i, a0);
            _mm512_storeu_ps(y[e] + i + 16, a1);
        }
    }
    for (; i < n_in; i++) /* scalar tail */
        for (int e = 0; e < n; e++) {
            float acc = x[e][i];
            if (dl[e])
                for (int t = 0; t < 8; t++) acc -= dl[e][t] * hrows[t * n_in + i];
            y[e][i] = acc;
        }
}
struct cand {
    float    val;
    int      idx;
    uint64_t hash;
};

/* Hypotheses of one row: 2 beam buffers (R H row and codes) that hypotheses point at. */
struct row_st {
    int64_t    o;
    float      so;
    int        n_cur;
    struct hyp hy[2 * 64], *cur, *nxt;
    float     *buf_rh[2 * 64];
    uint16_t  *buf_codes[2 * 64];
};

/* Rows are searched ROW_BLOCK at a time in lockstep, position by position, so the g rows
 * of H a position needs are read from memory once per block rather than once per row
 * (each row's sweep otherwise streams half of H). The per-row arithmetic is unchanged. */
enum { ROW_BLOCK = 8 };

static void rows_part(void *arg, int tid, int nt) {
    struct beam_job *J = arg;
    int64_t          lo, hi;
    lmp_par_range(J->n_out, tid, nt, &lo, &hi);
    if (lo >= hi) return;
    const int64_t g = J->g, K = J->K, M = J->M, P = J->P, n_in = J->n_in;
    const int     beam = J->beam;
    size_t per = ((size_t)P * sizeof(uint16_t) + (size_t)n_in * sizeof(float) + 63) / 64 * 64;
    char  *mem =
        malloc(per * 2 * (size_t)beam * ROW_BLOCK + (size_t)(beam * K + 64) * sizeof(float) +
               (size_t)(beam + 1) * sizeof(struct cand));
    struct row_st *rows = malloc(ROW_BLOCK * sizeof(struct row_st));
    if (mem == NULL || rows == NULL) {
        free(mem);
        free(rows);
        __atomic_store_n(&J->failed, 1, __ATOMIC_RELAXED);
        return;
    }
    for (int r = 0; r < ROW_BLOCK; r++)
        for (int i = 0; i < 2 * beam; i++) {
            char *b              = mem + per * (size_t)(r * 2 * beam + i);
            rows[r].buf_rh[i]    = (float *)b;
            rows[r].buf_codes[i] = (uint16_t *)(b + (size_t)n_in * sizeof(float));
        }
    float       *d   = (float *)(mem + per * 2 * (size_t)beam * ROW_BLOCK);
    struct cand *top = (struct cand *)(d + beam * K + 64);
    float        v[64], hc[64], dl[64], dls[64][8], hmin[64];
    float       *ys[64];
    const float *xs[64], *dls_p[64];

    for (int64_t o0 = lo; o0 < hi; o0 += ROW_BLOCK) {
        const int nr = hi - o0 < ROW_BLOCK ? (int)(hi - o0) : ROW_BLOCK;
        for (int r = 0; r < nr; r++) {
            struct row_st *R = &rows[r];
            const int64_t  o = o0 + r;
            R->o             = o;
            R->so            = J->scale[o];
            R->cur           = R->hy;
            R->nxt           = R->hy + beam;
            R->n_cur         = 1;
            struct hyp *c0   = &R->cur[0];
            c0->buf          = 0;
            c0->rh           = R->buf_rh[0];
            c0->codes        = R->buf_codes[0];
            memcpy(c0->codes, J->codes + o * P, (size_t)P * sizeof(uint16_t));
            memcpy(c0->rh, J->rh0 + o * n_in, (size_t)n_in * sizeof(float));
            c0->loss = J->loss0[o];
            c0->hash = 0;
            if (beam > 1)
                for (int64_t p = 0; p < P; p++) c0->hash ^= zkey(p, c0->codes[p]);
        }
        for (int64_t j = 0; j < J->n_grp; j++) {
            const float *hrows = J->h + j * g * n_in;
            for (int64_t mi = 0; mi < M; mi++)
                for (int r = 0; r < nr; r++) {
                    const int64_t    m   = J->m_order ? J->m_order[j * M + mi] : mi;
                    struct row_st   *R   = &rows[r];
                    const float      so  = R->so;
                    struct hyp      *cur = R->cur, *nxt = R->nxt;
                    const int        n_cur     = R->n_cur;
                    float *const    *buf_rh    = R->buf_rh;
                    uint16_t *const *buf_codes = R->buf_codes;
                    const int64_t    p         = j * M + m;
                    const float     *qp = J->q + p * K, *cm = J->cT + m * g * K;
                    const __m512     s2 = _mm512_set1_ps(so * so);
                    for (int hi2 = 0; hi2 < n_cur; hi2++) {
                        const struct hyp *x  = &cur[hi2];
                        const int         c  = x->codes[p];
                        const float      *cc = J->cb + (m * K + c) * g; /* row-major: contiguous */
                        if (g == 8) { /* H_jj symmetric: sum of rows */
                            __m256 acc = _mm256_setzero_ps();
                            for (int64_t b = 0; b < 8; b++)
                                acc =
                                    _mm256_fmadd_ps(_mm256_set1_ps(cc[b]),
                                                    _mm256_loadu_ps(hrows + b * n_in + j * 8), acc);
                            _mm256_storeu_ps(hc, acc);
                        } else {
                            for (int64_t a = 0; a < g; a++) {
                                float acc = 0.0f;
                                for (int64_t b = 0; b < g; b++)
                                    acc += cc[b] * hrows[b * n_in + j * g + a];
                                hc[a] = acc;
                            }
                        }
                        for (int64_t a = 0; a < g; a++)
                            v[a] = -2.0f * so * x->rh[j * g + a] - 2.0f * so * so * hc[a];
                        float *dh = d + hi2 * K;
                        float  ec = so * so * qp[c]; /* e(c), see the reference */
                        for (int64_t t = 0; t < g; t++) ec += v[t] * cm[t * K + c];
                        const __m512 nec = _mm512_set1_ps(-ec);
                        if (g == 8)
                            hmin[hi2] = score_g8(dh, qp, cm, K, v, s2, nec);
                        else
                            for (int64_t k = 0; k < K; k += 16) {
                                __m512 acc = _mm512_fmadd_ps(s2, _mm512_loadu_ps(qp + k), nec);
                                for (int64_t t = 0; t < g; t++)
                                    acc = _mm512_fmadd_ps(_mm512_set1_ps(v[t]),
                                                          _mm512_loadu_ps(cm + t * K + k), acc);
                                _mm512_storeu_ps(dh + k, acc);
                            }
                        dh[c]     = 0.0f;
                        hmin[hi2] = hmin[hi2] < 0.0f ? hmin[hi2] : 0.0f; /* "keep" is 0 */
                        if (g != 8 && beam > 1 && n_cur >= beam) {       /* its best candidate */
                            __m512 mn = _mm512_loadu_ps(dh);
                            for (int64_t k = 16; k < K; k += 16)
                                mn = _mm512_min_ps(mn, _mm512_loadu_ps(dh + k));
                            hmin[hi2] = _mm512_reduce_min_ps(mn);
                        }
                    }
                    if (beam == 1) { /* greedy: in place */
                        struct hyp *x  = &cur[0];
                        const int   c  = x->codes[p];
                        __m512      bv = _mm512_set1_ps(0.0f);
                        __m512i     bi = _mm512_set1_epi32(c),
                                idx    = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
                                                           13, 14, 15);
                        for (int64_t k = 0; k < K; k += 16) {
                            __m512    dv = _mm512_loadu_ps(d + k);
                            __mmask16 lt = _mm512_cmp_ps_mask(dv, bv, _CMP_LT_OQ);
                            bv           = _mm512_mask_blend_ps(lt, bv, dv);
                            bi           = _mm512_mask_blend_epi32(lt, bi, idx);
                            idx          = _mm512_add_epi32(idx, _mm512_set1_epi32(16));
                        }
                        float   bvs[16];
                        int32_t bis[16];
                        _mm512_storeu_ps(bvs, bv);
                        _mm512_storeu_si512(bis, bi);
                        float best = 0.0f;
                        int   bk   = c;
                        for (int l = 0; l < 16; l++)
                            if (bvs[l] < best || (bvs[l] == best && bvs[l] < 0.0f && bis[l] < bk)) {
                                best = bvs[l];
                                bk   = bis[l];
                            }
                        if (bk != c) {
                            for (int64_t t = 0; t < g; t++)
                                dl[t] =
                                    so * (J->cb[(m * K + bk) * g + t] - J->cb[(m * K + c) * g + t]);
                            /* columns of groups already visited are never read again */
                            rank_update(x->rh + j * g, x->rh + j * g, dl, hrows + j * g, g,
                                        n_in - j * g, n_in);
                            x->codes[p] = (uint16_t)bk;
                            x->loss += best;
                        }
                        continue;
                    }
                    const double base = cur[0].loss;
                    /* With b hypotheses, their b best candidates are all <= the largest of them:
                     * start from that bound so almost nothing passes the vector compare. Should
                     * duplicates leave fewer than b survivors, scan again without the bound. */
                    float bound = FLT_MAX;
                    if (n_cur >= beam) {
                        bound = -FLT_MAX;
                        for (int hi2 = 0; hi2 < n_cur; hi2++) {
                            float bh = (float)(cur[hi2].loss - base) + hmin[hi2];
                            bound    = bh > bound ? bh : bound;
                        }
                        bound = nextafterf(bound, FLT_MAX);
                    }
                    int n_top = 0;
                rescan:
                    n_top     = 0;
                    float thr = bound;
                    for (int hi2 = 0; hi2 < n_cur; hi2++) {
                        const float    off = (float)(cur[hi2].loss - base);
                        const uint64_t hb  = cur[hi2].hash ^ zkey(p, cur[hi2].codes[p]);
                        for (int64_t k = 0; k < K; k += 16) {
                            __m512    val = _mm512_add_ps(_mm512_set1_ps(off),
                                                          _mm512_loadu_ps(d + hi2 * K + k));
                            __mmask16 mk = _mm512_cmp_ps_mask(val, _mm512_set1_ps(thr), _CMP_LT_OQ);
                            while (mk) {
                                int l = __builtin_ctz(mk);
                                mk &= mk - 1;
                                float cv = off + d[hi2 * K + k + l];
                                if (!(cv < thr)) continue;
                                uint64_t chs = hb ^ zkey(p, (int)(k + l));
                                int      e = 0, dup = -1;
                                for (; e < n_top; e++)
                                    if (top[e].hash == chs) {
                                        dup = e;
                                        break;
                                    }
                                if (dup >= 0) {
                                    if (!(cv < top[dup].val)) continue;
                                    memmove(top + dup, top + dup + 1,
                                            (size_t)(n_top - dup - 1) * sizeof(*top));
                                    n_top--;
                                }
                                int pos = n_top; /* insert after equal values */
                                while (pos > 0 && cv < top[pos - 1].val) pos--;
                                if (pos >= beam) continue;
                                int last = n_top < beam ? n_top : beam - 1;
                                memmove(top + pos + 1, top + pos,
                                        (size_t)(last - pos) * sizeof(*top));
                                top[pos] = (struct cand){cv, hi2 * (int)K + (int)(k + l), chs};
                                if (n_top < beam) n_top++;
                                if (n_top == beam) thr = top[beam - 1].val;
                            }
                        }
                    }
                    if (n_top < beam && bound != FLT_MAX && n_top < n_cur * K) {
                        bound = FLT_MAX;
                        goto rescan;
                    }
                    const int64_t i0 = j * g; /* columns of visited groups are never read again */
                    /* Buffers: the first child of a hypothesis takes over its parent's buffers
                     * and is updated in place; further children get free buffers and copies.
                     * Copies are listed first, so in every column block they read the parent
                     * before an in-place child overwrites it. */
                    int  taken[64] = {0}, in_place[64], n_upd = 0;
                    bool busy[2 * 64] = {0};
                    for (int hi2 = 0; hi2 < n_cur; hi2++) busy[cur[hi2].buf] = true;
                    int next_free = 0;
                    for (int e = 0; e < n_top; e++) {
                        const int         par = top[e].idx / (int)K;
                        const struct hyp *x   = &cur[par];
                        struct hyp       *y   = &nxt[e];
                        in_place[e]           = !taken[par];
                        taken[par]            = 1;
                        if (in_place[e]) {
                            y->buf   = x->buf;
                            y->rh    = x->rh;
                            y->codes = x->codes;
                        } else {
                            while (busy[next_free]) next_free++;
                            busy[next_free] = true;
                            y->buf          = next_free;
                            y->rh           = buf_rh[next_free];
                            y->codes        = buf_codes[next_free];
                            memcpy(y->codes, x->codes, (size_t)P * sizeof(uint16_t));
                        }
                    }
                    for (int pass = 0; pass < 2; pass++) /* copies, then in place */
                        for (int e = 0; e < n_top; e++) {
                            if (in_place[e] != pass) continue;
                            const struct hyp *x = &cur[top[e].idx / K];
                            const int         k = top[e].idx % (int)K, c = x->codes[p];
                            const float      *src = x->rh;
                            const float      *de  = NULL;
                            if (k != c) {
                                float *dd = g == 8 ? dls[n_upd] : dl;
                                for (int64_t t = 0; t < g; t++)
                                    dd[t] = so * (J->cb[(m * K + k) * g + t] -
                                                  J->cb[(m * K + c) * g + t]);
                                de = dd;
                            } else if (pass == 1) {
                                continue; /* same buffer, same code: nothing to do */
                            }
                            float *dst = nxt[e].rh;
                            if (g == 8) {
                                ys[n_upd]    = dst;
                                xs[n_upd]    = src;
                                dls_p[n_upd] = de;
                                n_upd++;
                            } else if (de) {
                                rank_update(dst + i0, src + i0, de, hrows + i0, g, n_in - i0, n_in);
                            } else {
                                memcpy(dst + i0, src + i0, (size_t)(n_in - i0) * sizeof(float));
                            }
                        }
                    for (int e = 0; e < n_top; e++) { /* codes last: children share parents */
                        struct hyp *y = &nxt[e];
                        y->codes[p]   = (uint16_t)(top[e].idx % (int)K);
                        y->loss       = base + top[e].val;
                        y->hash       = top[e].hash;
                    }
                    if (g == 8) fused_update8(ys, xs, dls_p, n_upd, hrows, i0, n_in);
                    R->cur   = nxt;
                    R->nxt   = cur;
                    R->n_cur = n_top;
                }
        }
        for (int r = 0; r < nr; r++) {
            memcpy(J->codes + rows[r].o * P, rows[r].cur[0].codes, (size_t)P * sizeof(uint16_t));
            if (J->loss) J->loss[rows[r].o] = rows[r].cur[0].loss;
        }
    }
    free(mem);
    free(rows);
}

int lmp_aq_beam_eager_avx512(uint16_t *codes, double *loss, const float *w, const float *scale,
                             const float *cb, const float *h, const struct lmp_aq_shape *s,
                             int beam, const uint8_t *m_order) {
    const int64_t n_out = s->n_out, n_in = s->n_in, g = s->g, M = s->M, K = s->K;
    const int64_t n_grp = n_in / g, P = n_grp * M;
    if (beam < 1) beam = 1;
    if (K % 16 != 0 || g > 64 || beam > 64)
        return lmp_aq_beam_ref(codes, loss, w, scale, cb, h, s, beam, m_order);
    float    *cT    = malloc((size_t)(M * g * K + P * K + 2 * n_out * n_in) * sizeof(float));
    double   *loss0 = malloc((size_t)n_out * sizeof(double));
    uint16_t *keep  = malloc((size_t)(n_out * P) * sizeof(uint16_t));
    if (!cT || !loss0 || !keep) {
        free(cT);
        free(loss0);
        free(keep);
        return LMP_ENOMEM;
    }
    float *q = cT + M * g * K, *r = q + P * K, *rh = r + n_out * n_in;
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
    struct beam_job J  = {codes, loss, w, scale, cb, h,     cT, q,    rh, loss0,
                          n_out, n_in, g, M,     K,  n_grp, P,  beam, 0,  m_order};
    int             nt = lmp_cpu_threads();
    lmp_cpu_parallel(nt < n_grp ? nt : (int)n_grp, q_part, &J);
    lmp_cpu_parallel(nt < n_out ? nt : (int)n_out, rows_part, &J);
    int st = 0;
    if (J.failed) {
        memcpy(codes, keep, (size_t)(n_out * P) * sizeof(uint16_t));
        st = LMP_ENOMEM;
    }
    free(cT);
    free(loss0);
    free(keep);
    return st;
}
