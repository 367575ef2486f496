/*  aq_matvec_cpu - the CPU drivers of aq_matvec shared by its SIMD variants
 *
 *  Included by kernels/cpu/aq_matvec_avx512.c and aq_matvec_avx2.c, so every static
 *  function here is compiled with the including file's instruction-set flags (the
 *  plain loops are vectorized for that ISA); the one ISA-specific piece, the lookup
 *  table of a chunk of groups and its gathers, is passed in as a function.
 *
 *  Three ways to y (n_batch, n_out) = x (n_batch, n_in) W_hat^T, picked by shape
 *  (measured on SmolLM2's shapes, 2x8g8, one thread: tables 2-3x faster than the dense
 *  fp32 matvec at batch 1, even at 8; tiles + sgemm within 10% of dense sgemm from 64):
 *    - lookup tables (K <= 256, n_batch <= AQMV_LUT_BATCH: decoding a token at a
 *      time). The groups are cut into chunks of AQMV_CHUNK groups, fixed by the shape;
 *      a task builds its chunk's tables (AQMV_CHUNK M K floats per input row, 32 KiB
 *      for 2x8: cache-resident) and, for every output row, sums the entries its codes
 *      select into part (n_chunk, n_batch, n_out); the caller adds the chunks in order
 *      and scales. One fork/join per call; the table of each group is built once.
 *    - decode-dot (K > 256, i.e. 1x16, up to AQMV_GEMM_BATCH rows; K not a multiple
 *      of the vector width): each task takes a range of output rows and sums, per
 *      group, its codewords and their product with the input.
 *    - decoded tiles + sgemm (more rows: prompt processing, eval):
 *      AQMV_TILE floats of rows are decoded into scratch at a time (never the whole
 *      layer) and multiplied with OpenBLAS; the decode is amortized over the batch.
 *  Thread invariance: a chunk's partial sums, a row's dot products and the sgemm's
 *  blocks do not depend on the thread count, and chunks are added in a fixed order.
 */
#ifndef LMP_KERNELS_CPU_AQ_MATVEC_CPU_H
#define LMP_KERNELS_CPU_AQ_MATVEC_CPU_H

#include "kernels/cpu/cpu_variants.h" /* defines: lmp_cpu_threads, lmp_sgemm_blas */
#include "kernels/cpu/parallel.h"     /* defines: lmp_cpu_parallel, lmp_par_range */
#include "base/status.h"              /* defines: LMP_ENOMEM */

#include <immintrin.h>
#include <stdlib.h>

enum {
    AQMV_CHUNK      = 16,         /* groups per table chunk */
    AQMV_LUT_BATCH  = 8,          /* at most this many input rows take the tables (Kx8) */
    AQMV_GEMM_BATCH = 16,         /* at least this many take decoded tiles + sgemm (1x16) */
    AQMV_TILE       = 256 * 1024, /* floats of decoded rows per tile (1 MiB) */
    /* fewer input rows than this: lmp_sgemm_blas runs one call on one thread (it cuts
     * calls of 2 x 256 rows and more into row blocks for the pool), so the tiles go to the
     * threads whole instead: at least AQMV_MIN_TILES of them per layer */
    AQMV_TILE_PAR  = 512,
    AQMV_MIN_TILES = 4,
};

/* Tables of groups [j0, j0 + nj) for the n_batch rows of x, then, for every output row
 * o, part[b * n_out + o] = sum over the chunk's (group, codebook) of the entry its code
 * selects. cT (M, g, K) is the transposed codebook; tab is scratch of
 * n_batch AQMV_CHUNK M K floats. */
typedef void aqmv_lut_chunk_fn(float *part, float *tab, const float *x, int64_t n_batch,
                               const uint16_t *codes, const float *cT, const struct lmp_aq_shape *s,
                               int64_t j0, int64_t nj);

struct aqmv_job {
    float                     *y;
    const float               *x;
    int64_t                    n_batch;
    const uint16_t            *codes;
    const float               *cb, *cT, *scale;
    const struct lmp_aq_shape *s;
    float                     *part; /* (n_chunk, n_batch, n_out) */
    int64_t                    n_chunk;
    aqmv_lut_chunk_fn         *lut_chunk;
    lmp_aq_decode_fn          *decode;
    float                     *tile; /* (rows, n_in) decoded rows */
    int64_t                    o0, n_rows;
    int64_t                    tile_rows, n_tiles, next_tile; /* aqmv_tile_part */
    int                        failed;
};

static void aqmv_lut_part(void *arg, int tid, int nt) {
    struct aqmv_job        *J     = arg;
    const int64_t           n_grp = J->s->n_in / J->s->g, n_out = J->s->n_out;
    int64_t                 lo, hi;
    struct lmp_scratch_mark mark = lmp_scratch_mark();
    float                  *tab =
        lmp_scratch_alloc((size_t)(J->n_batch * AQMV_CHUNK * J->s->M * J->s->K) * sizeof(float));
    if (tab == NULL) {
        __atomic_store_n(&J->failed, 1, __ATOMIC_RELAXED);
        lmp_scratch_reset(mark);
        return;
    }
    lmp_par_range(J->n_chunk, tid, nt, &lo, &hi);
    for (int64_t c = lo; c < hi; c++) {
        const int64_t j0 = c * AQMV_CHUNK, nj = n_grp - j0 < AQMV_CHUNK ? n_grp - j0 : AQMV_CHUNK;
        J->lut_chunk(J->part + c * J->n_batch * n_out, tab, J->x, J->n_batch, J->codes, J->cT, J->s,
                     j0, nj);
    }
    lmp_scratch_reset(mark);
}

/* Rows [lo, hi) of the decode-dot: y[b, o] for every b. g a multiple of 8: 8 weights of
 * a group per step, each lane summing over the groups (AVX2 registers: both variants);
 * other g: scalar. */
static void aqmv_direct_part(void *arg, int tid, int nt) {
    struct aqmv_job           *J     = arg;
    const struct lmp_aq_shape *s     = J->s;
    const int64_t              n_grp = s->n_in / s->g, M = s->M, K = s->K, g = s->g, B = J->n_batch;
    int64_t                    lo, hi;
    lmp_par_range(s->n_out, tid, nt, &lo, &hi);
    for (int64_t o = lo; o < hi; o++) {
        const uint16_t *co = J->codes + o * n_grp * M;
        for (int64_t b = 0; b < B; b++) {
            const float *xb  = J->x + b * s->n_in;
            float        sum = 0.0f;
            if (g % 8 == 0) {
                __m256 acc = _mm256_setzero_ps();
                for (int64_t j = 0; j < n_grp; j++)
                    for (int64_t t = 0; t < g; t += 8) {
                        __m256 w = _mm256_loadu_ps(J->cb + (int64_t)co[j * M] * g + t);
                        for (int64_t m = 1; m < M; m++)
                            w = _mm256_add_ps(
                                w, _mm256_loadu_ps(J->cb + (m * K + co[j * M + m]) * g + t));
                        acc = _mm256_fmadd_ps(w, _mm256_loadu_ps(xb + j * g + t), acc);
                    }
                __m128 h = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
                h        = _mm_add_ps(h, _mm_movehl_ps(h, h));
                h        = _mm_add_ss(h, _mm_movehdup_ps(h));
                sum      = _mm_cvtss_f32(h);
            } else {
                for (int64_t j = 0; j < n_grp; j++)
                    for (int64_t t = 0; t < g; t++) {
                        float w = 0.0f;
                        for (int64_t m = 0; m < M; m++) w += J->cb[(m * K + co[j * M + m]) * g + t];
                        sum += w * xb[j * g + t];
                    }
            }
            J->y[b * s->n_out + o] = sum * J->scale[o];
        }
    }
}

/* Decode rows [o0 + lo, o0 + hi) of the tile. */
static void aqmv_decode_part(void *arg, int tid, int nt) {
    struct aqmv_job *J     = arg;
    const int64_t    n_grp = J->s->n_in / J->s->g;
    int64_t          lo, hi;
    lmp_par_range(J->n_rows, tid, nt, &lo, &hi);
    if (hi <= lo) return;
    struct lmp_aq_shape rs = *J->s;
    rs.n_out               = hi - lo;
    J->decode(J->tile + lo * rs.n_in, J->codes + (J->o0 + lo) * n_grp * rs.M, J->cb,
              J->scale + J->o0 + lo, &rs);
}

/* Whole tiles, taken from a counter: each decoded into the thread's scratch and multiplied
 * by its own sgemm (one thread's: fewer than AQMV_TILE_PAR input rows). The tiles and their
 * sgemm calls depend on the shape only, so the result does not depend on the threads. */
static void aqmv_tile_part(void *arg, int tid, int nt) {
    struct aqmv_job *J    = arg;
    const int64_t    n_in = J->s->n_in, n_out = J->s->n_out;
    (void)tid, (void)nt;
    struct lmp_scratch_mark mark = lmp_scratch_mark();
    float                  *tile = lmp_scratch_alloc((size_t)(J->tile_rows * n_in) * sizeof(float));
    if (tile == NULL) {
        __atomic_store_n(&J->failed, 1, __ATOMIC_RELAXED);
        lmp_scratch_reset(mark);
        return;
    }
    for (;;) {
        const int64_t t = __atomic_fetch_add(&J->next_tile, 1, __ATOMIC_RELAXED);
        if (t >= J->n_tiles) break;
        struct aqmv_job T = *J;
        T.tile            = tile;
        T.o0              = t * J->tile_rows;
        T.n_rows          = n_out - T.o0 < J->tile_rows ? n_out - T.o0 : J->tile_rows;
        aqmv_decode_part(&T, 0, 1);
        lmp_sgemm_blas(LMP_NO_TRANS, LMP_TRANS, J->n_batch, T.n_rows, n_in, 1.0f, J->x, n_in, tile,
                       n_in, 0.0f, J->y + T.o0, n_out);
    }
    lmp_scratch_reset(mark);
}

static int aqmv_threads(int64_t n_tasks) {
    int nt = lmp_cpu_threads();
    return n_tasks < nt ? (int)(n_tasks > 0 ? n_tasks : 1) : nt;
}

/* lanes: the table builder's vector width (K must be a multiple of it). */
static inline int aqmv_run(float *y, const float *x, int64_t n_batch, const uint16_t *codes,
                           const float *cb, const float *scale, const struct lmp_aq_shape *s,
                           aqmv_lut_chunk_fn *lut_chunk, int lanes, lmp_aq_decode_fn *decode) {
    const int64_t   n_out = s->n_out, n_in = s->n_in, M = s->M, K = s->K, g = s->g;
    const int64_t   n_grp = n_in / g;
    struct aqmv_job J     = {.y       = y,
                             .x       = x,
                             .n_batch = n_batch,
                             .codes   = codes,
                             .cb      = cb,
                             .scale   = scale,
                             .s       = s,
                             .decode  = decode};
    if (n_out <= 0 || n_batch <= 0) return 0;
    const bool lut = K <= 256 && K % lanes == 0;
    if (n_batch >= AQMV_GEMM_BATCH || (lut && n_batch > AQMV_LUT_BATCH)) { /* tiles + sgemm */
        int64_t rows = AQMV_TILE / n_in;
        rows         = rows < 16 ? 16 : rows / 16 * 16;
        if (rows > n_out) rows = n_out;
        if (n_batch < AQMV_TILE_PAR) { /* prompts, short windows: tiles over the threads */
            const int64_t quarter = (n_out + AQMV_MIN_TILES - 1) / AQMV_MIN_TILES;
            const int64_t r16     = (quarter + 15) / 16 * 16;
            J.tile_rows           = r16 < rows ? r16 : rows;
            J.n_tiles             = (n_out + J.tile_rows - 1) / J.tile_rows;
            lmp_cpu_parallel(aqmv_threads(J.n_tiles), aqmv_tile_part, &J);
            return J.failed ? LMP_ENOMEM : 0;
        }
        struct lmp_scratch_mark mark = lmp_scratch_mark();
        J.tile                       = lmp_scratch_alloc((size_t)(rows * n_in) * sizeof(float));
        if (J.tile == NULL) {
            lmp_scratch_reset(mark);
            return LMP_ENOMEM;
        }
        for (int64_t o0 = 0; o0 < n_out; o0 += rows) {
            J.o0     = o0;
            J.n_rows = n_out - o0 < rows ? n_out - o0 : rows;
            lmp_cpu_parallel(aqmv_threads(J.n_rows / 16), aqmv_decode_part, &J);
            lmp_sgemm_blas(LMP_NO_TRANS, LMP_TRANS, n_batch, J.n_rows, n_in, 1.0f, x, n_in, J.tile,
                           n_in, 0.0f, y + o0, n_out);
        }
        lmp_scratch_reset(mark);
        return 0;
    }
    if (!lut) { /* decode-dot */
        lmp_cpu_parallel(aqmv_threads(n_out / 8), aqmv_direct_part, &J);
        return J.failed ? LMP_ENOMEM : 0;
    }
    /* lookup tables */
    struct lmp_scratch_mark mark = lmp_scratch_mark();
    J.n_chunk                    = (n_grp + AQMV_CHUNK - 1) / AQMV_CHUNK;
    float *cT   = lmp_scratch_alloc((size_t)(M * g * K) * sizeof(float)); /* (M, g, K) */
    J.part      = lmp_scratch_alloc((size_t)(J.n_chunk * n_batch * n_out) * sizeof(float));
    J.lut_chunk = lut_chunk;
    if (cT == NULL || J.part == NULL) {
        lmp_scratch_reset(mark);
        return LMP_ENOMEM;
    }
    for (int64_t m = 0; m < M; m++)
        for (int64_t k = 0; k < K; k++)
            for (int64_t t = 0; t < g; t++) cT[(m * g + t) * K + k] = cb[(m * K + k) * g + t];
    J.cT = cT;
    lmp_cpu_parallel(aqmv_threads(J.n_chunk), aqmv_lut_part, &J);
    if (J.failed) {
        lmp_scratch_reset(mark);
        return LMP_ENOMEM;
    }
    for (int64_t i = 0; i < n_batch * n_out; i++) {
        float sum = 0.0f;
        for (int64_t c = 0; c < J.n_chunk; c++) sum += J.part[c * n_batch * n_out + i];
        y[i] = sum * scale[i % n_out];
    }
    lmp_scratch_reset(mark);
    return 0;
}

#endif /* LMP_KERNELS_CPU_AQ_MATVEC_CPU_H */
