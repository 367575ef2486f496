/*  aq_matvec_ref - y = x W_hat^T for a batch of inputs, straight from the codes
 *
 *      y[b, o] = scale[o] * sum_j sum_m  cb[m][codes[o, j, m]] . x[b, j*g : (j+1)*g]
 *
 *  Two plain algorithms, the ones the fast variants run (kernels/cpu/aq_matvec_*.c):
 *
 *  Lookup tables (K <= 256: the Kx8 codebooks, e.g. 2x8g8). For each input row b and
 *  group j, the table
 *      lut[j, m, k] = cb[m][k] . x[b, j*g : (j+1)*g]          (n_grp, M, K) floats
 *  holds every codeword's dot product with that slice of the input (n_in M K
 *  multiply-adds per input row, independent of n_out); each output is then scale[o]
 *  times the sum of the n_grp M entries its codes select: n_in M / g lookups per output
 *  instead of n_in multiply-adds.
 *
 *  Decode-dot (K > 256: 1x16, whose table of n_grp 65536 entries would cost more than
 *  the weights). Each output row's group is decoded (the sum of its M codewords) and
 *  dotted with the input's slice; the codebook is read, no dense row is kept.
 *
 *  Tables are fp32 (as in the variants); sums over groups and codebooks in double.
 */
#include "kernels/kernels.h"
#include "base/status.h" /* defines: LMP_ENOMEM, LMP_EINVAL */

#include <math.h>
#include <stdlib.h>
#include <string.h>

int lmp_aq_matvec_ref(float       *y,                         /* (n_batch, n_out) out */
                      const float *x,                         /* (n_batch, n_in) */
                      int64_t n_batch, const uint16_t *codes, /* (n_out, n_in/g, M) */
                      const float               *cb,          /* (M, K, g) */
                      const float               *scale,       /* (n_out) */
                      const struct lmp_aq_shape *s) {
    const int64_t n_grp = s->n_in / s->g, K = s->K, M = s->M, g = s->g;
    if (K > 256) { /* decode-dot */
        for (int64_t b = 0; b < n_batch; b++)
            for (int64_t o = 0; o < s->n_out; o++) {
                double acc = 0.0;
                for (int64_t j = 0; j < n_grp; j++) {
                    const float *xg = x + b * s->n_in + j * g;
                    for (int64_t t = 0; t < g; t++) {
                        float w = 0.0f; /* the decoded weight w[o, j g + t] / scale[o] */
                        for (int64_t m = 0; m < M; m++)
                            w += cb[(m * K + codes[(o * n_grp + j) * M + m]) * g + t];
                        acc += (double)w * (double)xg[t];
                    }
                }
                y[b * s->n_out + o] = (float)(acc * scale[o]);
            }
        return 0;
    }
    struct lmp_scratch_mark mark = lmp_scratch_mark();
    float *lut = lmp_scratch_alloc((size_t)(n_grp * M * K) * sizeof(float)); /* (n_grp, M, K) */
    if (lut == NULL) {
        lmp_scratch_reset(mark);
        return LMP_ENOMEM;
    }
    for (int64_t b = 0; b < n_batch; b++) {
        const float *xb = x + b * s->n_in;
        for (int64_t j = 0; j < n_grp; j++)
            for (int64_t m = 0; m < M; m++)
                for (int64_t k = 0; k < K; k++) {
                    const float *c   = cb + (m * K + k) * g;
                    float        dot = 0.0f;
                    for (int64_t t = 0; t < g; t++) dot += c[t] * xb[j * g + t];
                    lut[(j * M + m) * K + k] = dot;
                }
        for (int64_t o = 0; o < s->n_out; o++) {
            const uint16_t *co  = codes + o * n_grp * M;
            double          acc = 0.0;
            for (int64_t p = 0; p < n_grp * M; p++) acc += lut[p * K + co[p]];
            y[b * s->n_out + o] = (float)(acc * scale[o]);
        }
    }
    lmp_scratch_reset(mark);
    return 0;
}

/* ---- 24-bit lookup tables on packed codes (kernels/kernels.h: struct lmp_aq_packed) ----
 *
 * What the AVX-512 variant (kernels/cpu/aq_matvec_avx512.c, with VBMI) computes, here one
 * entry at a time: per input row and chunk of LMP_AQ_CHUNK positions, the tables as 24-bit
 * integers (v = round(cb_m[k] . x_j inv)), each row's entries summed exactly in integers,
 * the chunk's sum times its step in fp32, the chunks added in order. The scale
 * (lmp_aq_chunk_scale) is shared by every variant; the entries are fused multiply-adds in
 * t order from 0 (fmaf), as the variants' FMA instructions round, and rounded as cvtps2dq
 * (to nearest even; out of range or NaN: INT32_MIN) keeping the low 24 bits. */

/* byte i of a block's 64 holds row (i / 4 % 4) 16 + (i / 16) 4 + i % 4 (an involution) */
static int64_t lut_row_of_byte(int64_t i) {
    return (i / 4 % 4) * 16 + (i / 16) * 4 + i % 4;
}

static int64_t chunk_len(const struct lmp_aq_packed *p, int64_t c) {
    const int64_t c0 = c * LMP_AQ_CHUNK;
    return p->n_pos - c0 < LMP_AQ_CHUNK ? p->n_pos - c0 : LMP_AQ_CHUNK;
}

void lmp_aq_packed_free(struct lmp_aq_packed *p) {
    if (p == NULL) return;
    free(p->codes);
    free(p->cT);
    free(p->cmax);
    memset(p, 0, sizeof(*p));
}

int lmp_aq_pack(struct lmp_aq_packed *p, const uint16_t *codes, const float *cb, const float *scale,
                const struct lmp_aq_shape *s) {
    memset(p, 0, sizeof(*p));
    if (s->K > 256 || s->K < 1 || s->g < 1 || s->M < 1 || s->n_in % s->g != 0 || s->n_out < 0)
        return LMP_EINVAL;
    const int64_t n_grp = s->n_in / s->g, P = n_grp * s->M, M = s->M, g = s->g, K = s->K;
    p->shape   = *s;
    p->n_pos   = (P + 1) / 2 * 2;
    p->n_chunk = (p->n_pos + LMP_AQ_CHUNK - 1) / LMP_AQ_CHUNK;
    p->n_rb    = (s->n_out + LMP_AQ_ROWS - 1) / LMP_AQ_ROWS;
    p->scale   = scale;
    p->codes   = calloc((size_t)(p->n_rb * p->n_pos * LMP_AQ_ROWS) + 1, 1);
    p->cT      = calloc((size_t)(M * g * 256), sizeof(float));
    p->cmax    = calloc((size_t)M, sizeof(float));
    if (p->codes == NULL || p->cT == NULL || p->cmax == NULL) {
        lmp_aq_packed_free(p);
        return LMP_ENOMEM;
    }
    for (int64_t m = 0; m < M; m++)
        for (int64_t k = 0; k < K; k++) {
            float ss = 0.0f;
            for (int64_t t = 0; t < g; t++) {
                const float c                = cb[(m * K + k) * g + t];
                p->cT[(m * g + t) * 256 + k] = c;
                ss += c * c;
            }
            const float nrm = sqrtf(ss);
            p->cmax[m]      = nrm > p->cmax[m] ? nrm : p->cmax[m];
        }
    for (int64_t c = 0; c < p->n_chunk; c++) {
        const int64_t len = chunk_len(p, c);
        for (int64_t rb = 0; rb < p->n_rb; rb++) {
            uint8_t *blk = p->codes + (c * LMP_AQ_CHUNK * p->n_rb + rb * len) * LMP_AQ_ROWS;
            for (int64_t pp = 0; pp < len; pp++)
                for (int64_t i = 0; i < LMP_AQ_ROWS; i++) {
                    const int64_t o   = rb * LMP_AQ_ROWS + lut_row_of_byte(i),
                                  pos = c * LMP_AQ_CHUNK + pp;
                    if (o >= s->n_out || pos >= P) continue; /* padding: code 0 */
                    const uint16_t code = codes[o * P + pos];
                    if (code >= K) {
                        lmp_aq_packed_free(p);
                        return LMP_EINVAL;
                    }
                    blk[pp * LMP_AQ_ROWS + i] = (uint8_t)code;
                }
        }
    }
    return 0;
}

int lmp_aq_packed_code(const struct lmp_aq_packed *p, int64_t o, int64_t pos) {
    const int64_t c = pos / LMP_AQ_CHUNK, pp = pos % LMP_AQ_CHUNK, len = chunk_len(p, c);
    const int64_t rb = o / LMP_AQ_ROWS, r = o % LMP_AQ_ROWS;
    const int64_t i = (r % 16 / 4) * 16 + (r / 16) * 4 + r % 4; /* the byte of row r */
    return p->codes[(c * LMP_AQ_CHUNK * p->n_rb + rb * len + pp) * LMP_AQ_ROWS + i];
}

void lmp_aq_chunk_scale(const struct lmp_aq_packed *p, const float *x, int64_t c, float *inv,
                        float *step) {
    const int64_t M = p->shape.M, g = p->shape.g, P = p->shape.n_in / g * M;
    const int64_t p0 = c * LMP_AQ_CHUNK, p1 = p0 + chunk_len(p, c) < P ? p0 + chunk_len(p, c) : P;
    float         bound = 0.0f;
    for (int64_t j = p0 / M; j * M < p1; j++) {
        float ss = 0.0f; /* one compiled copy for every variant: the same bits */
        for (int64_t t = 0; t < g; t++) ss += x[j * g + t] * x[j * g + t];
        const float nrm = sqrtf(ss);
        for (int64_t m = 0; m < M; m++) {
            const int64_t pos = j * M + m;
            if (pos < p0 || pos >= p1) continue;
            const float b = nrm * p->cmax[m];
            bound         = b > bound ? b : bound;
        }
    }
    if (!(bound > 0.0f) || !isfinite(bound)) {
        *inv = *step = 0.0f;
        return;
    }
    *inv  = LMP_AQ_TABLE_MAX / bound;
    *step = bound / LMP_AQ_TABLE_MAX;
}

int lmp_aq_matvec_pk_ref(int n, float *const *y, const float *x, int64_t n_batch,
                         const struct lmp_aq_packed *const *w) {
    for (int l = 1; l < n; l++)
        if (w[l]->shape.n_in != w[0]->shape.n_in) return LMP_EINVAL;
    struct lmp_scratch_mark mark = lmp_scratch_mark();
    int32_t                *tab  = lmp_scratch_alloc((size_t)LMP_AQ_CHUNK * 256 * sizeof(int32_t));
    float                  *acc =
        n > 0 ? lmp_scratch_alloc((size_t)(w[0]->n_rb * LMP_AQ_ROWS + 1) * sizeof(float)) : NULL;
    for (int l = 0; l < n && acc; l++)
        if (w[l]->n_rb > w[0]->n_rb) {
            acc = lmp_scratch_alloc((size_t)(w[l]->n_rb * LMP_AQ_ROWS + 1) * sizeof(float));
            break;
        }
    if (tab == NULL || (n > 0 && acc == NULL)) {
        lmp_scratch_reset(mark);
        return LMP_ENOMEM;
    }
    for (int l = 0; l < n; l++) {
        const struct lmp_aq_packed *p = w[l];
        const int64_t M = p->shape.M, g = p->shape.g, n_in = p->shape.n_in, n_out = p->shape.n_out;
        const int64_t P = n_in / g * M;
        for (int64_t b = 0; b < n_batch; b++) {
            const float *xb = x + b * n_in;
            for (int64_t o = 0; o < n_out; o++) acc[o] = 0.0f;
            for (int64_t c = 0; c < p->n_chunk; c++) {
                const int64_t len = chunk_len(p, c);
                float         inv, step;
                lmp_aq_chunk_scale(p, xb, c, &inv, &step);
                for (int64_t pp = 0; pp < len; pp++) {
                    const int64_t pos = c * LMP_AQ_CHUNK + pp, j = pos / M, m = pos % M;
                    for (int64_t k = 0; k < 256; k++) {
                        float e = 0.0f;
                        for (int64_t t = 0; t < g && pos < P; t++)
                            e = fmaf(xb[j * g + t] * inv, p->cT[(m * g + t) * 256 + k], e);
                        const float    r = rintf(e); /* to nearest even, as cvtps2dq */
                        const uint32_t v =
                            fabsf(r) < 2147483648.0f ? (uint32_t)(int32_t)r : 0x80000000u;
                        tab[pp * 256 + k] = /* the low 24 bits, sign-extended */
                            (int32_t)(v & 0xffffffu) - (int32_t)((v & 0x800000u) << 1);
                    }
                }
                for (int64_t o = 0; o < n_out; o++) {
                    int32_t S = 0;
                    for (int64_t pp = 0; pp < len; pp++)
                        S += tab[pp * 256 + lmp_aq_packed_code(p, o, c * LMP_AQ_CHUNK + pp)];
                    const float part = (float)S * step;
                    acc[o] += part;
                }
            }
            for (int64_t o = 0; o < n_out; o++) y[l][b * n_out + o] = acc[o] * p->scale[o];
        }
    }
    lmp_scratch_reset(mark);
    return 0;
}
