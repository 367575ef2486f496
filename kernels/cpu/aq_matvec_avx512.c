/*  aq_matvec_avx512 - y = x W_hat^T from the codes, through lookup tables
 *
 *  The drivers (tables, decode-dot, decoded tiles + sgemm; which one for which shape;
 *  threads) are kernels/cpu/aq_matvec_cpu.h. Here: a chunk's tables, 16 entries per
 *  FMA with the codebook transposed to (M, g, K), and the lookups, 16 codes per
 *  gather (a masked gather for the chunk's last positions). Below them, aq_matvec_pk
 *  (decoding on packed codes: 24-bit tables and byte permutes, AVX-512 VBMI).
 *  CPU reference: kernels/ref/aq_matvec_ref.c
 */
#include "kernels/cpu/aq_matvec_cpu.h"

#include <immintrin.h>
#include <string.h>

static void lut_chunk_avx512(float *part, float *tab, const float *x, int64_t n_batch,
                             const uint16_t *codes, const float *cT, const struct lmp_aq_shape *s,
                             int64_t j0, int64_t nj) {
    const int64_t K = s->K, g = s->g, M = s->M, n_in = s->n_in, n_grp = n_in / g;
    const int64_t n_out = s->n_out, P = nj * M, TS = (int64_t)AQMV_CHUNK * M * K;
    for (int64_t b = 0; b < n_batch; b++)
        for (int64_t jj = 0; jj < nj; jj++) {
            const float *xg = x + b * n_in + (j0 + jj) * g;
            for (int64_t m = 0; m < M; m++) {
                float       *tp = tab + b * TS + (jj * M + m) * K;
                const float *cm = cT + m * g * K;
                for (int64_t k = 0; k < K; k += 16) {
                    __m512 acc = _mm512_mul_ps(_mm512_set1_ps(xg[0]), _mm512_loadu_ps(cm + k));
                    for (int64_t t = 1; t < g; t++)
                        acc = _mm512_fmadd_ps(_mm512_set1_ps(xg[t]),
                                              _mm512_loadu_ps(cm + t * K + k), acc);
                    _mm512_storeu_ps(tp + k, acc);
                }
            }
        }
    /* position p of the chunk reads tab[p K + code]: lane i of a step at p adds (p + i) K */
    const __m512i lane =
        _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                           _mm512_set1_epi32((int)K));
    for (int64_t o = 0; o < n_out; o++) {
        const uint16_t *co = codes + (o * n_grp + j0) * M;
        __m512          acc[AQMV_LUT_BATCH];
        for (int64_t b = 0; b < n_batch; b++) acc[b] = _mm512_setzero_ps();
        for (int64_t p = 0; p < P; p += 16) {
            const __mmask16 mk = P - p >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (P - p)) - 1);
            const __m512i   c  = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mk, co + p));
            const __m512i   idx =
                _mm512_add_epi32(_mm512_add_epi32(c, lane), _mm512_set1_epi32((int)(p * K)));
            for (int64_t b = 0; b < n_batch; b++)
                acc[b] = _mm512_add_ps(acc[b], _mm512_mask_i32gather_ps(_mm512_setzero_ps(), mk,
                                                                        idx, tab + b * TS, 4));
        }
        for (int64_t b = 0; b < n_batch; b++) part[b * n_out + o] = _mm512_reduce_add_ps(acc[b]);
    }
}

int lmp_aq_matvec_avx512(float *y, const float *x, int64_t n_batch, const uint16_t *codes,
                         const float *cb, const float *scale, const struct lmp_aq_shape *s) {
    return aqmv_run(y, x, n_batch, codes, cb, scale, s, lut_chunk_avx512, 16, lmp_aq_decode_avx512);
}

/* ---- 24-bit lookup tables on packed codes (AVX-512 VBMI): aq_matvec_pk ------------
 *
 * The reference (kernels/ref/aq_matvec_ref.c, lmp_aq_matvec_pk_ref) with the same
 * tables and integer sums. A position's 256 entries (24-bit integers) are stored as three
 * 256-byte tables: low, middle and high bytes. 64 rows' codes of a position (64 bytes, one
 * load) look up 64 entries of a table with two vpermi2b (entries 0-127 and 128-255 by the
 * code's low 7 bits) and a blend on the code's top bit: 64 bytes in three instructions
 * where a gather fetches 16 floats. Two positions' bytes are interleaved (unpack) and
 * summed by pmaddubsw into int16 (low and middle bytes unsigned, high bytes signed: at most
 * 255 LMP_AQ_CHUNK, no overflow); at the end of the chunk pmaddwd and a shift make
 * 65536 high + 256 middle + low in int32, exact, and the chunk's step scales it to fp32.
 * The byte order within the 64 rows (struct lmp_aq_packed) is the one these unpacks
 * leave, so the sums come out in row order.
 *
 * Work: units of (layer, chunk, rows), each building its chunk's tables (positions x 256
 * entries: g FMAs of 16 each) and summing its rows; the threads of the kernel pool take the
 * units of every layer of the call from one counter, largest first (one fork/join per call
 * however many layers; a thread that starts late, on a busy machine, finds less left), and
 * run on one thread below about 15 us of work, where the fork costs more than it saves.
 * Each unit writes its chunk's partial sums, and the caller adds the chunks in order: the
 * result does not depend on the thread count or on which thread ran a unit.
 */
#define LUT24_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vbmi,fma")))

enum {
    LUT24_TABLE_ROWS = 768,  /* a position's table costs about as much as this many rows' lookups */
    LUT24_PREFETCH   = 2048, /* bytes of codes fetched ahead */
    LUT24_POS_BYTES  = 768,  /* a position's tables: low, middle, high bytes */
};

struct lut24_unit {
    int     layer;
    int64_t c, rb0, rb1;
};

struct lut24_job {
    const struct lmp_aq_packed *const *w;
    const float                       *x;
    int64_t                            n_batch;
    float                            **part; /* per layer: (n_chunk, n_batch, n_rb 64) */
    struct lut24_unit                 *units;
    int64_t                            n_units;
    int64_t                            next;     /* the next unit to take (atomic) */
    uint8_t                            idx[128]; /* byte picks, lut24_byte_index */
    int                                failed;
};

/* idx[0..64): from two vectors of 16 int32 entries (a: 0-15, b: 16-31), bytes 0-31 = the
 * low bytes of entries 0-31 and bytes 32-63 their middle bytes; idx[64..96): their high
 * bytes (bytes 96-127 unused). */
static void lut24_byte_index(uint8_t *idx) {
    for (int k = 0; k < 32; k++) {
        const int at = (k / 16) * 64 + (k % 16) * 4; /* byte 0 of entry k in (a, b) */
        idx[k]       = (uint8_t)at;
        idx[32 + k]  = (uint8_t)(at + 1);
        idx[64 + k]  = (uint8_t)(at + 2);
        idx[96 + k]  = (uint8_t)(at + 2);
    }
}

/* The 256 entries of one position: t (768 bytes: low, middle, high bytes) from xs (g
 * scaled inputs) and cTm (g, 256). The first product is a multiply (fma from +0 rounds
 * the same; only the sign of a zero differs, and it converts to 0 alike). */
LUT24_TARGET static inline __attribute__((always_inline)) void
lut24_table_g(uint8_t *t, const float *xs, const float *cTm, const int64_t g, __m512i ilm,
              __m512i ih) {
    __m512 a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15;
    {
        const __m512 bx = _mm512_set1_ps(xs[0]);
#define LUT24_MUL(i) a##i = _mm512_mul_ps(bx, _mm512_loadu_ps(cTm + 16 * i))
        LUT24_MUL(0);
        LUT24_MUL(1);
        LUT24_MUL(2);
        LUT24_MUL(3);
        LUT24_MUL(4);
        LUT24_MUL(5);
        LUT24_MUL(6);
        LUT24_MUL(7);
        LUT24_MUL(8);
        LUT24_MUL(9);
        LUT24_MUL(10);
        LUT24_MUL(11);
        LUT24_MUL(12);
        LUT24_MUL(13);
        LUT24_MUL(14);
        LUT24_MUL(15);
#undef LUT24_MUL
    }
    for (int64_t s = 1; s < g; s++) {
        const __m512 bx = _mm512_set1_ps(xs[s]);
        const float *c  = cTm + s * 256;
#define LUT24_FMA(i) a##i = _mm512_fmadd_ps(bx, _mm512_loadu_ps(c + 16 * i), a##i)
        LUT24_FMA(0);
        LUT24_FMA(1);
        LUT24_FMA(2);
        LUT24_FMA(3);
        LUT24_FMA(4);
        LUT24_FMA(5);
        LUT24_FMA(6);
        LUT24_FMA(7);
        LUT24_FMA(8);
        LUT24_FMA(9);
        LUT24_FMA(10);
        LUT24_FMA(11);
        LUT24_FMA(12);
        LUT24_FMA(13);
        LUT24_FMA(14);
        LUT24_FMA(15);
#undef LUT24_FMA
    }
    /* 64 entries: [low 0-31 | middle 0-31] and [low 32-63 | middle 32-63] by two permutes,
     * then the lanes regrouped; the high bytes likewise */
#define LUT24_Q(q, e0, e1, e2, e3)                                                                 \
    do {                                                                                           \
        const __m512i v0 = _mm512_cvtps_epi32(e0), v1 = _mm512_cvtps_epi32(e1);                    \
        const __m512i v2 = _mm512_cvtps_epi32(e2), v3 = _mm512_cvtps_epi32(e3);                    \
        const __m512i x1 = _mm512_permutex2var_epi8(v0, ilm, v1);                                  \
        const __m512i x2 = _mm512_permutex2var_epi8(v2, ilm, v3);                                  \
        const __m512i h1 = _mm512_permutex2var_epi8(v0, ih, v1);                                   \
        const __m512i h2 = _mm512_permutex2var_epi8(v2, ih, v3);                                   \
        _mm512_storeu_si512((void *)(t + 64 * q), _mm512_shuffle_i64x2(x1, x2, 0x44));             \
        _mm512_storeu_si512((void *)(t + 256 + 64 * q), _mm512_shuffle_i64x2(x1, x2, 0xee));       \
        _mm512_storeu_si512((void *)(t + 512 + 64 * q), _mm512_shuffle_i64x2(h1, h2, 0x44));       \
    } while (0)
    LUT24_Q(0, a0, a1, a2, a3);
    LUT24_Q(1, a4, a5, a6, a7);
    LUT24_Q(2, a8, a9, a10, a11);
    LUT24_Q(3, a12, a13, a14, a15);
#undef LUT24_Q
}

LUT24_TARGET static void lut24_table(uint8_t *t, const float *xs, const float *cTm, int64_t g,
                                     __m512i ilm, __m512i ih) {
    if (g == 8) /* 2x8g8, 1x8g8: the constant unrolls the loop */
        lut24_table_g(t, xs, cTm, 8, ilm, ih);
    else
        lut24_table_g(t, xs, cTm, g, ilm, ih);
}

/* 64 entries of a 256-byte table for 64 codes. */
LUT24_TARGET static inline __m512i lut24_look(const uint8_t *t, __m512i c, __mmask64 top) {
    const __m512i a = _mm512_permutex2var_epi8(_mm512_loadu_si512((const void *)t), c,
                                               _mm512_loadu_si512((const void *)(t + 64)));
    const __m512i b = _mm512_permutex2var_epi8(_mm512_loadu_si512((const void *)(t + 128)), c,
                                               _mm512_loadu_si512((const void *)(t + 192)));
    return _mm512_mask_blend_epi8(top, a, b);
}

/* One row block over a chunk of len (even) positions: out[0..64) = S step. */
LUT24_TARGET static void lut24_rows(float *out, const uint8_t *codes, const uint8_t *tab,
                                    int64_t len, float step) {
    const __m512i ones = _mm512_set1_epi8(1);
    __m512i aL0 = _mm512_setzero_si512(), aL1 = aL0, aM0 = aL0, aM1 = aL0, aH0 = aL0, aH1 = aL0;
    for (int64_t pp = 0; pp < len; pp += 2) {
        /* the codes stream through once per token (a layer's are contiguous, chunk by
         * chunk): fetched ahead, across 4 KiB pages where the hardware stops */
        _mm_prefetch((const char *)(codes + pp * 64 + LUT24_PREFETCH), _MM_HINT_T0);
        _mm_prefetch((const char *)(codes + pp * 64 + LUT24_PREFETCH + 64), _MM_HINT_T0);
        const __m512i   c0 = _mm512_loadu_si512((const void *)(codes + pp * 64));
        const __m512i   c1 = _mm512_loadu_si512((const void *)(codes + pp * 64 + 64));
        const __mmask64 m0 = _mm512_movepi8_mask(c0), m1 = _mm512_movepi8_mask(c1);
        const uint8_t  *t0 = tab + pp * LUT24_POS_BYTES, *t1 = t0 + LUT24_POS_BYTES;
        {
            const __m512i L0 = lut24_look(t0, c0, m0), L1 = lut24_look(t1, c1, m1);
            aL0 = _mm512_add_epi16(aL0, _mm512_maddubs_epi16(_mm512_unpacklo_epi8(L0, L1), ones));
            aL1 = _mm512_add_epi16(aL1, _mm512_maddubs_epi16(_mm512_unpackhi_epi8(L0, L1), ones));
        }
        {
            const __m512i M0 = lut24_look(t0 + 256, c0, m0), M1 = lut24_look(t1 + 256, c1, m1);
            aM0 = _mm512_add_epi16(aM0, _mm512_maddubs_epi16(_mm512_unpacklo_epi8(M0, M1), ones));
            aM1 = _mm512_add_epi16(aM1, _mm512_maddubs_epi16(_mm512_unpackhi_epi8(M0, M1), ones));
        }
        {
            const __m512i H0 = lut24_look(t0 + 512, c0, m0), H1 = lut24_look(t1 + 512, c1, m1);
            aH0 = _mm512_add_epi16(aH0, _mm512_maddubs_epi16(ones, _mm512_unpacklo_epi8(H0, H1)));
            aH1 = _mm512_add_epi16(aH1, _mm512_maddubs_epi16(ones, _mm512_unpackhi_epi8(H0, H1)));
        }
    }
    /* rows 16 k + i: dwords (low + 256 middle) by pmaddwd, plus the high words at 65536 */
    const __m512i w  = _mm512_set1_epi32(0x01000001); /* low word 1, high word 256 */
    const __m512i z  = _mm512_setzero_si512();
    const __m512  st = _mm512_set1_ps(step);
#define LUT24_OUT(k, unpack, l, m, h)                                                              \
    _mm512_storeu_ps(out + 16 * k,                                                                 \
                     _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(                            \
                                       _mm512_madd_epi16(unpack(l, m), w), unpack(z, h))),         \
                                   st))
    LUT24_OUT(0, _mm512_unpacklo_epi16, aL0, aM0, aH0);
    LUT24_OUT(1, _mm512_unpackhi_epi16, aL0, aM0, aH0);
    LUT24_OUT(2, _mm512_unpacklo_epi16, aL1, aM1, aH1);
    LUT24_OUT(3, _mm512_unpackhi_epi16, aL1, aM1, aH1);
#undef LUT24_OUT
}

LUT24_TARGET static void lut24_part(void *arg, int tid, int nt) {
    struct lut24_job       *J    = arg;
    struct lmp_scratch_mark mark = lmp_scratch_mark();
    uint8_t                *tab  = lmp_scratch_alloc((size_t)LMP_AQ_CHUNK * LUT24_POS_BYTES);
    (void)nt;
    if (tab == NULL) {
        __atomic_store_n(&J->failed, 1, __ATOMIC_RELAXED);
        lmp_scratch_reset(mark);
        return;
    }
    const __m512i ilm = _mm512_loadu_si512((const void *)J->idx);
    const __m512i ih  = _mm512_loadu_si512((const void *)(J->idx + 64));
    (void)tid;
    for (;;) {
        const int64_t u = __atomic_fetch_add(&J->next, 1, __ATOMIC_RELAXED);
        if (u >= J->n_units) break;
        const struct lut24_unit    *U = &J->units[u];
        const struct lmp_aq_packed *p = J->w[U->layer];
        const int64_t               M = p->shape.M, g = p->shape.g, n_in = p->shape.n_in;
        const int64_t               P = n_in / g * M, c0 = U->c * LMP_AQ_CHUNK;
        const int64_t  len   = p->n_pos - c0 < LMP_AQ_CHUNK ? p->n_pos - c0 : LMP_AQ_CHUNK;
        const uint8_t *codes = p->codes + c0 * p->n_rb * LMP_AQ_ROWS;
        for (int64_t b = 0; b < J->n_batch; b++) {
            const float *xb = J->x + b * n_in;
            float        inv, step, xs[16];
            lmp_aq_chunk_scale(p, xb, U->c, &inv, &step);
            for (int64_t pp = 0; pp < len; pp++) {
                const int64_t pos = c0 + pp, j = pos / M, m = pos % M;
                if (pos >= P) {
                    memset(tab + pp * LUT24_POS_BYTES, 0, LUT24_POS_BYTES);
                    continue;
                }
                for (int64_t s = 0; s < g; s++) xs[s] = xb[j * g + s] * inv;
                lut24_table(tab + pp * LUT24_POS_BYTES, xs, p->cT + m * g * 256, g, ilm, ih);
            }
            float *out = J->part[U->layer] + (U->c * J->n_batch + b) * p->n_rb * LMP_AQ_ROWS;
            for (int64_t rb = U->rb0; rb < U->rb1; rb++)
                lut24_rows(out + rb * LMP_AQ_ROWS, codes + rb * len * LMP_AQ_ROWS, tab, len, step);
        }
    }
    lmp_scratch_reset(mark);
}

int lmp_aq_matvec_pk_avx512(int n, float *const *y, const float *x, int64_t n_batch,
                            const struct lmp_aq_packed *const *w) {
    if (n <= 0 || n_batch <= 0) return 0;
    for (int l = 0; l < n; l++)
        if (w[l]->shape.n_in != w[0]->shape.n_in || w[l]->shape.g > 16) return LMP_EINVAL;
    struct lmp_scratch_mark mark     = lmp_scratch_mark();
    struct lut24_job        J        = {.w = w, .x = x, .n_batch = n_batch};
    const int               nt_max   = lmp_cpu_threads();
    int64_t                 n_chunks = 0, n_units = 0;
    for (int l = 0; l < n; l++) n_chunks += w[l]->n_chunk;
    /* at least ~128 k lookups (about 15 us) per thread, or the fork costs more than it
     * saves; fewer chunks than 4 per thread: the rows of each chunk are split too (each
     * part builds the chunk's tables) */
    double work = 0.0;
    for (int l = 0; l < n; l++)
        work += (double)w[l]->n_pos * (double)n_batch *
                (double)(w[l]->n_rb * LMP_AQ_ROWS + LUT24_TABLE_ROWS);
    int64_t nt          = (int64_t)(work / 131072.0);
    nt                  = nt < 1 ? 1 : nt > nt_max ? nt_max : nt;
    const int64_t split = nt == 1 || n_chunks >= 4 * nt ? 1 : (4 * nt + n_chunks - 1) / n_chunks;
    for (int l = 0; l < n; l++)
        n_units += w[l]->n_chunk * (split < w[l]->n_rb ? split : w[l]->n_rb);
    J.part       = lmp_scratch_alloc((size_t)n * sizeof(float *));
    J.units      = lmp_scratch_alloc((size_t)(n_units + 1) * sizeof(*J.units));
    double *cost = lmp_scratch_alloc((size_t)(n_units + 1) * sizeof(double));
    bool    ok   = J.part && J.units && cost;
    for (int l = 0; ok && l < n; l++) {
        J.part[l] = lmp_scratch_alloc((size_t)(w[l]->n_chunk * n_batch * w[l]->n_rb * LMP_AQ_ROWS) *
                                      sizeof(float));
        ok        = J.part[l] != NULL;
    }
    if (!ok) {
        lmp_scratch_reset(mark);
        return LMP_ENOMEM;
    }
    for (int l = 0; l < n; l++) {
        const struct lmp_aq_packed *p  = w[l];
        const int64_t               sl = split < p->n_rb ? split : p->n_rb;
        for (int64_t c = 0; c < p->n_chunk; c++)
            for (int64_t s = 0; s < sl; s++) {
                const int64_t rb0 = p->n_rb * s / sl, rb1 = p->n_rb * (s + 1) / sl;
                const int64_t len = p->n_pos - c * LMP_AQ_CHUNK < LMP_AQ_CHUNK
                                        ? p->n_pos - c * LMP_AQ_CHUNK
                                        : LMP_AQ_CHUNK;
                cost[J.n_units]   = (double)len * (double)n_batch *
                                  (double)((rb1 - rb0) * LMP_AQ_ROWS + LUT24_TABLE_ROWS);
                J.units[J.n_units++] = (struct lut24_unit){l, c, rb0, rb1};
            }
    }
    /* largest first (insertion sort: tens of units), so the last ones taken are short */
    for (int64_t u = 1; u < J.n_units; u++)
        for (int64_t v = u; v > 0 && cost[v] > cost[v - 1]; v--) {
            const double            tc = cost[v];
            const struct lut24_unit tu = J.units[v];
            cost[v] = cost[v - 1], J.units[v] = J.units[v - 1];
            cost[v - 1] = tc, J.units[v - 1] = tu;
        }
    nt = nt > J.n_units ? J.n_units : nt;
    lut24_byte_index(J.idx);
    lmp_cpu_parallel((int)nt, lut24_part, &J);
    if (J.failed) {
        lmp_scratch_reset(mark);
        return LMP_ENOMEM;
    }
    for (int l = 0; l < n; l++) { /* y = (0 + chunk 0 + chunk 1 + ...) scale, o inner */
        const struct lmp_aq_packed *p = w[l];
        const int64_t n_out = p->shape.n_out, stride = n_batch * p->n_rb * LMP_AQ_ROWS;
        for (int64_t b = 0; b < n_batch; b++) {
            const float *pb = J.part[l] + b * p->n_rb * LMP_AQ_ROWS;
            float       *yb = y[l] + b * n_out;
            for (int64_t o = 0; o < n_out; o++) yb[o] = 0.0f;
            for (int64_t c = 0; c < p->n_chunk; c++)
                for (int64_t o = 0; o < n_out; o++) yb[o] += pb[c * stride + o];
            for (int64_t o = 0; o < n_out; o++) yb[o] *= p->scale[o];
        }
    }
    lmp_scratch_reset(mark);
    return 0;
}
