/*  forward - the transformer's elementwise and row ops as kernel-table ops
 *
 *  RMSNorm, RoPE, SiLU-gated MLP (SwiGLU) and softmax, defined by the scalar references in
 *  kernels/ref/forward_ref.c with the transformer's semantics (model/transformer.c: the
 *  same order of operations, double sums where it takes them). The CUDA table implements
 *  them on device pointers (kernels/cuda/cuda_kernels.h); tests/kernels/test_kernels_cuda.c
 *  compares the two. The CPU forward pass still runs its own loops (it threads them
 *  through its pool); these are the definitions a device forward pass is held to.
 */
#ifndef LMP_KERNELS_FORWARD_H
#define LMP_KERNELS_FORWARD_H

#include <stdbool.h>
#include <stdint.h>

/* out[r, i] = x[r, i] * s_r * w[i], s_r = 1 / sqrt(mean_i x[r, i]^2 + eps) (sum of squares
 * in double, s_r rounded to float once). x, out (n_rows, dim); w (dim). out may be x. */
typedef void lmp_rmsnorm_fn(float *out, const float *x, const float *w, int64_t n_rows, int64_t dim,
                            float eps);

/* Rotate n_heads heads of head_dim (even) in each row of x (n_rows, n_heads * head_dim), in
 * place; row r is at position pos0 + r % n_tok. cos_t, sin_t (n_pos, head_dim / 2): the
 * angles' tables, position-major. interleaved: pairs (2i, 2i+1) (llama.cpp / GGUF),
 * else (i, i + head_dim / 2) (Hugging Face). */
typedef void lmp_rope_fn(float *x, int64_t n_rows, int n_heads, int64_t head_dim,
                         const float *cos_t, const float *sin_t, int64_t pos0, int64_t n_tok,
                         bool interleaved);

/* g[i] = silu(g[i]) * u[i] = g[i] / (1 + exp(-g[i])) * u[i] for i < n. */
typedef void lmp_swiglu_fn(float *g, const float *u, int64_t n);

/* Each row of x (n_rows, n) in place: x = exp(x - max) / sum exp(x - max) (sum in double). */
typedef void lmp_softmax_fn(float *x, int64_t n_rows, int64_t n);

lmp_rmsnorm_fn lmp_rmsnorm_ref;
lmp_rope_fn    lmp_rope_ref;
lmp_swiglu_fn  lmp_swiglu_ref;
lmp_softmax_fn lmp_softmax_ref;

#endif /* LMP_KERNELS_FORWARD_H */
