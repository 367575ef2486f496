/*  aq_beam - AQLM's beam search over the codes of each row, on the device
 *
 *  CPU reference: kernels/ref/aq_beam_ref.c (the math, the order of positions, the tie
 *  rules and the Zobrist de-duplication are that file's; read its header first).
 *
 *  Version 1 (this one): the reference's algorithm with its loops spread over the threads
 *  of one block per row (a launch takes as many rows as 512 MiB of per-row state allow):
 *  - q_jm[k] = cb_m[k]^T H_jj cb_m[k] once per call, one thread per (position, k);
 *  - starting residual r and r H (threads over columns), the loss by a block sum;
 *  - per position: H_jj cb_m[c], v and e(c) per hypothesis (threads over (hypothesis, t)),
 *    then the candidate scoring e(k) - e(c) of every (hypothesis, k) in parallel;
 *  - selection: b passes of a block-wide (loss, index) argmin over the candidates not
 *    already picked (hash compared with the picks): the reference's "lowest loss, earlier
 *    candidate on ties" rule exactly;
 *  - the survivors' codes and r H copied and updated (threads over columns, the
 *    reference's order of rank-1 updates, no FMA contraction).
 *  Everything is in double as in the reference. Candidates are scored with a different
 *  summation order (the block sum of the starting loss), so codes can differ from the
 *  reference's where two candidates' losses tie to rounding; the test compares the
 *  objective. Speed was not the goal of this version: the selection and the H_jj products
 *  are per position with one block per row, and no column blocking (kernels/cpu's blocked
 *  search) is done.
 */
#include "kernels/cuda/cuda_internal.cuh"

enum { BEAM_THREADS = 256 };
/* bytes of per-row state per launch (the emulator sets a small one to run several launches) */
#ifndef LMP_CUDA_BEAM_STATE_MAX
#define LMP_CUDA_BEAM_STATE_MAX ((size_t)512 << 20)
#endif
static const size_t BEAM_STATE_MAX = LMP_CUDA_BEAM_STATE_MAX;

__device__ uint64_t zkey(int64_t pos, int code) {
    uint64_t z = (uint64_t)pos * 65536u + (uint64_t)code + 0x9E3779B97F4A7C15ull;
    z          = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z          = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* q[(j M + m) K + k] = cb_m[k]^T H_jj cb_m[k] */
__global__ void beam_q_kernel(double *q, const float *cb, const float *h, int64_t n_in, int M,
                              int K, int g) {
    const int64_t n_grp = n_in / g, i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= n_grp * M * K) return;
    const int64_t j = i / ((int64_t)M * K), m = (i / K) % M, k = i % K;
    const float  *c   = cb + (m * K + k) * g;
    double        acc = 0.0;
    for (int a = 0; a < g; a++)
        for (int b = 0; b < g; b++) acc += (double)c[a] * h[(j * g + a) * n_in + j * g + b] * c[b];
    q[i] = acc;
}

/* Per-row state in global memory, carved from one slab per row. */
struct row_state {
    uint16_t *codes; /* (2 beam, P): hypotheses, current half and next half */
    double   *rh;    /* (2 beam, n_in) */
    double   *loss;  /* (2 beam) */
    uint64_t *hash;  /* (2 beam) */
    double   *cand;  /* (beam, K) */
    uint64_t *chash; /* (beam, K) */
    double   *r;     /* (n_in) starting residual */
    double   *v;     /* (beam, g) */
    double   *ec;    /* (beam) */
};

__host__ __device__ size_t align8(size_t b) {
    return (b + 7) & ~(size_t)7;
}

__host__ __device__ size_t row_state_bytes(int64_t P, int64_t n_in, int beam, int K, int g) {
    return align8(2 * beam * P * sizeof(uint16_t)) + 2 * beam * n_in * sizeof(double) +
           4 * beam * sizeof(double) + 2 * (size_t)beam * K * sizeof(double) +
           n_in * sizeof(double) + (size_t)beam * g * sizeof(double) + beam * sizeof(double);
}

__device__ row_state carve(char *base, int64_t P, int64_t n_in, int beam, int K, int g) {
    row_state s;
    s.codes = (uint16_t *)base;
    base += align8(2 * beam * P * sizeof(uint16_t));
    s.rh = (double *)base;
    base += 2 * beam * n_in * sizeof(double);
    s.loss = (double *)base;
    base += 2 * beam * sizeof(double);
    s.hash = (uint64_t *)base;
    base += 2 * beam * sizeof(uint64_t);
    s.cand = (double *)base;
    base += (size_t)beam * K * sizeof(double);
    s.chash = (uint64_t *)base;
    base += (size_t)beam * K * sizeof(uint64_t);
    s.r = (double *)base;
    base += n_in * sizeof(double);
    s.v = (double *)base;
    base += (size_t)beam * g * sizeof(double);
    s.ec = (double *)base;
    return s;
}

__device__ double block_sum_d(double v, double *sh) {
    sh[threadIdx.x] = v;
    __syncthreads();
    for (int k = BEAM_THREADS / 2; k > 0; k >>= 1) {
        if ((int)threadIdx.x < k) sh[threadIdx.x] += sh[threadIdx.x + k];
        __syncthreads();
    }
    double r = sh[0];
    __syncthreads();
    return r;
}

__global__ void __launch_bounds__(BEAM_THREADS)
    beam_kernel(uint16_t *codes, double *loss, const float *w, const float *scale, const float *cb,
                const float *h, const double *q, const uint8_t *m_order, char *slab,
                size_t slab_row, int64_t o0, int64_t n_in, int M, int K, int g, int beam) {
    __shared__ double red_v[BEAM_THREADS];
    __shared__ int    red_i[BEAM_THREADS];
    __shared__ int    n_cur_s, n_nxt_s, cur_half;
    extern __shared__ __align__(
        8) char dyn[]; /* pick (beam ints), then pick hashes (beam uint64) */
    uint64_t         *pick_hash = (uint64_t *)dyn;
    int              *pick      = (int *)(dyn + beam * sizeof(uint64_t));

    const int64_t o = o0 + blockIdx.x, n_grp = n_in / g, P = n_grp * M;
    const int     tid = threadIdx.x;
    row_state     S   = carve(slab + blockIdx.x * slab_row, P, n_in, beam, K, g);
    const double  so  = scale[o];

    /* hypothesis 0 = the given codes; r = w - s u; r H; loss = r . rH */
    for (int64_t p = tid; p < P; p += BEAM_THREADS) S.codes[p] = codes[o * P + p];
    __syncthreads();
    for (int64_t i = tid; i < n_in; i += BEAM_THREADS) {
        const int64_t j = i / g, t = i % g;
        double        u = 0.0;
        for (int m = 0; m < M; m++) u += cb[((int64_t)m * K + S.codes[j * M + m]) * g + t];
        S.r[i] = (double)w[o * n_in + i] - so * u;
    }
    __syncthreads();
    double part = 0.0;
    for (int64_t i = tid; i < n_in; i += BEAM_THREADS) {
        double acc = 0.0;
        for (int64_t a = 0; a < n_in; a++) acc += S.r[a] * h[a * n_in + i];
        S.rh[i] = acc;
        part += S.r[i] * acc;
    }
    const double l0 = block_sum_d(part, red_v);
    if (tid == 0) {
        uint64_t hs = 0;
        for (int64_t p = 0; p < P; p++) hs ^= zkey(p, S.codes[p]);
        S.hash[0] = hs;
        S.loss[0] = l0;
        n_cur_s   = 1;
        cur_half  = 0;
    }
    __syncthreads();

    for (int64_t j = 0; j < n_grp; j++) {
        for (int mi = 0; mi < M; mi++) {
            const int64_t m = m_order ? m_order[j * M + mi] : mi, p = j * M + m;
            const int     n_cur = n_cur_s, cb_ = cur_half * beam, nb_ = (1 - cur_half) * beam;
            const double *qp = q + p * K;
            /* v (per hypothesis) = -2 s (rH)_j - 2 s^2 H_jj cb_m[c] */
            for (int64_t x = tid; x < (int64_t)n_cur * g; x += BEAM_THREADS) {
                const int    hi = (int)(x / g), a = (int)(x % g);
                const int    c  = S.codes[(cb_ + hi) * P + p];
                const float *cc = cb + (m * K + c) * g;
                double       hc = 0.0;
                for (int b = 0; b < g; b++) hc += h[(j * g + a) * n_in + j * g + b] * cc[b];
                S.v[hi * g + a] =
                    -2.0 * so * S.rh[(cb_ + hi) * n_in + j * g + a] - 2.0 * so * so * hc;
            }
            __syncthreads();
            for (int hi = tid; hi < n_cur; hi += BEAM_THREADS) { /* e(c) */
                const int    c  = S.codes[(cb_ + hi) * P + p];
                const float *cc = cb + (m * K + c) * g;
                double       ec = so * so * qp[c];
                for (int a = 0; a < g; a++) ec += cc[a] * S.v[hi * g + a];
                S.ec[hi] = ec;
            }
            __syncthreads();
            /* score every (hypothesis, k) */
            for (int64_t x = tid; x < (int64_t)n_cur * K; x += BEAM_THREADS) {
                const int    hi = (int)(x / K), k = (int)(x % K);
                const int    c  = S.codes[(cb_ + hi) * P + p];
                const float *ck = cb + (m * K + k) * g;
                double       d  = so * so * qp[k] - S.ec[hi];
                for (int a = 0; a < g; a++) d += ck[a] * S.v[hi * g + a];
                if (k == c) d = 0.0;
                S.cand[x]  = S.loss[cb_ + hi] + d;
                S.chash[x] = S.hash[cb_ + hi] ^ zkey(p, c) ^ zkey(p, k);
            }
            __syncthreads();
            /* b passes: the lowest (loss, index) not yet picked */
            if (tid == 0) n_nxt_s = 0;
            __syncthreads();
            for (int e = 0; e < beam; e++) {
                const int n_nxt = n_nxt_s;
                double    bv    = 0.0;
                int       bi    = -1;
                for (int x = tid; x < n_cur * K; x += BEAM_THREADS) {
                    if (bi >= 0 && !(S.cand[x] < bv)) continue;
                    bool dup = false;
                    for (int f = 0; f < n_nxt; f++) dup |= pick_hash[f] == S.chash[x];
                    if (!dup) bv = S.cand[x], bi = x;
                }
                red_v[tid] = bv;
                red_i[tid] = bi;
                __syncthreads();
                for (int k2 = BEAM_THREADS / 2; k2 > 0; k2 >>= 1) {
                    if (tid < k2) {
                        const int    ia = red_i[tid], ib = red_i[tid + k2];
                        const double va = red_v[tid], vb = red_v[tid + k2];
                        if (ib >= 0 && (ia < 0 || vb < va || (!(va < vb) && ib < ia)))
                            red_v[tid] = vb, red_i[tid] = ib;
                    }
                    __syncthreads();
                }
                if (tid == 0 && red_i[0] >= 0) {
                    pick[n_nxt]      = red_i[0];
                    pick_hash[n_nxt] = S.chash[red_i[0]];
                    n_nxt_s          = n_nxt + 1;
                }
                __syncthreads();
                if (n_nxt_s == n_nxt) break; /* no candidate left */
            }
            const int n_nxt = n_nxt_s;
            /* apply: copy each survivor's ancestor, change its code, update its r H */
            for (int64_t x = tid; x < (int64_t)n_nxt * P; x += BEAM_THREADS) {
                const int e = (int)(x / P), pp = (int)(x % P), hi = pick[e] / K;
                S.codes[(nb_ + e) * P + pp] =
                    pp == p ? (uint16_t)(pick[e] % K) : S.codes[(cb_ + hi) * P + pp];
            }
            for (int64_t x = tid; x < (int64_t)n_nxt * n_in; x += BEAM_THREADS) {
                const int     e = (int)(x / n_in), hi = pick[e] / K, k = pick[e] % K;
                const int64_t i  = x % n_in;
                const int     c  = S.codes[(cb_ + hi) * P + p];
                double        rh = S.rh[(cb_ + hi) * n_in + i];
                if (k != c)
                    for (int a = 0; a < g; a++) {
                        const double d = so * ((double)cb[(m * K + k) * g + a] -
                                               (double)cb[(m * K + c) * g + a]);
                        rh             = __dadd_rn(rh, -__dmul_rn(d, h[(j * g + a) * n_in + i]));
                    }
                S.rh[(nb_ + e) * n_in + i] = rh;
            }
            if (tid < n_nxt) {
                S.loss[nb_ + tid] = S.cand[pick[tid]];
                S.hash[nb_ + tid] = pick_hash[tid];
            }
            __syncthreads();
            if (tid == 0) {
                cur_half = 1 - cur_half;
                n_cur_s  = n_nxt;
            }
            __syncthreads();
        }
    }
    const int cb_ = cur_half * beam; /* the survivors are sorted: the first is best */
    for (int64_t p = tid; p < P; p += BEAM_THREADS) codes[o * P + p] = S.codes[cb_ * P + p];
    if (tid == 0 && loss) loss[o] = S.loss[cb_];
}

extern "C" int lmp_aq_beam_cuda(uint16_t *codes, double *loss, const float *w, const float *scale,
                                const float *cb, const float *h, const struct lmp_aq_shape *s,
                                int beam, const uint8_t *m_order) {
    cudaStream_t st = lmp_cuda_stream_get();
    if (st == NULL) return LMP_ENOMEM;
    if (beam < 1) beam = 1;
    if (s->n_out <= 0) return 0;
    const int64_t n_in = s->n_in, n_grp = n_in / s->g, P = n_grp * s->M;
    const size_t  row  = align8(row_state_bytes(P, n_in, beam, s->K, s->g));
    int64_t       rows = (int64_t)(BEAM_STATE_MAX / row);
    if (rows < 1) rows = 1;
    if (rows > s->n_out) rows = s->n_out;
    double *q    = (double *)lmp_cuda_scratch((size_t)(P * s->K) * sizeof(double));
    char   *slab = (char *)lmp_cuda_scratch((size_t)rows * row);
    int     rc   = 0;
    if (q == NULL || slab == NULL) {
        rc = LMP_ENOMEM;
        goto out;
    }
    beam_q_kernel<<<lmp_cuda_blocks(P * s->K, 256), 256, 0, st>>>(q, cb, h, n_in, s->M, s->K, s->g);
    if (!lmp_cuda_check_launch("aq_beam: q")) {
        rc = LMP_ENOMEM;
        goto out;
    }
    for (int64_t o0 = 0; o0 < s->n_out; o0 += rows) {
        const int64_t nr  = s->n_out - o0 < rows ? s->n_out - o0 : rows;
        const size_t  dyn = (size_t)beam * (sizeof(uint64_t) + sizeof(int));
        beam_kernel<<<(unsigned)nr, BEAM_THREADS, dyn, st>>>(
            codes, loss, w, scale, cb, h, q, m_order, slab, row, o0, n_in, s->M, s->K, s->g, beam);
        if (!lmp_cuda_check_launch("aq_beam: search")) {
            rc = LMP_ENOMEM;
            break;
        }
    }
out:
    lmp_cuda_scratch_free(slab);
    lmp_cuda_scratch_free(q);
    return rc;
}
