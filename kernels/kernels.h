/*  kernels - the compute ops of lmpress and the table that picks their variants
 *
 *  Every op has a plain scalar reference in kernels/ref/ that defines it; optimized
 *  variants (kernels/cpu/: OpenBLAS, AVX-512; kernels/cuda/ later) keep the same
 *  signature and are compared with the reference by tests/kernels/test_kernels.c. The
 *  table is chosen once per process (lmp_kernels_select, or $LMP_KERNELS) and read-only
 *  afterwards, so stages never mention a device: every GEMM and every buffer a kernel
 *  works on goes through lmp_kernels_get(). Kernels do no I/O and keep no state between
 *  calls (scratch is a per-thread arena, below).
 *
 *  Memory. A table owns its device's memory: mem_alloc / mem_free / mem_copy (host memory
 *  for the CPU tables; a CUDA table gives device memory). Pointers passed to a table's ops
 *  are that device's memory; a buffer from mem_alloc belongs to the caller until mem_free.
 *  Scratch inside a kernel comes from the calling thread's arena (lmp_scratch_*): carved
 *  between a mark and a reset within one call, never returned to the caller, kept (up to
 *  64 MiB per thread) for the thread's next call and freed when the thread exits or on
 *  lmp_scratch_trim. Each thread has its own arena, so no locking; a pointer from it must
 *  not be handed to another thread beyond the call that made it (the kernel pool's threads
 *  use their own arenas).
 *
 *  Threads. One compute budget per process (lmp_kernels_threads), fixed once; the kernel
 *  pool (kernels/cpu/parallel.c) is started once with that many threads. OpenBLAS always
 *  runs one thread (kernels/cpu/gemm_blas.c, the only caller of openblas_set_num_threads):
 *  its results depend on its thread count, ours must not. A big sgemm is cut into fixed
 *  blocks of rows that the pool shares out, so every result is the same bits whatever the
 *  budget (docs/kernels.md "Thread invariance"). A caller that runs GEMMs from several
 *  threads of its own (the transformer's attention) brackets them with
 *  lmp_kernels_blas_serial_begin/end, a counted section in which an sgemm runs its blocks
 *  on the calling thread (same blocks, same bits).
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

/* ---- dense linear algebra (references: kernels/ref/sgemm_ref.c) ------------------- */

enum lmp_trans { LMP_NO_TRANS = 0, LMP_TRANS = 1 };

/* C (m, n) = alpha op(A) op(B) + beta C, all row-major as cblas_sgemm with CblasRowMajor:
 * op(A) (m, k) is A (m, k) with leading dimension lda, or A^T for A (k, m) (LMP_TRANS);
 * op(B) (k, n) likewise with ldb; C (m, n) with ldc. beta == 0: C is only written (its
 * old contents, NaN included, are ignored, as in BLAS). No aliasing between C and A, B. */
typedef void lmp_sgemm_fn(enum lmp_trans ta, enum lmp_trans tb, int64_t m, int64_t n, int64_t k,
                          float alpha, const float *a, int64_t lda, const float *b, int64_t ldb,
                          float beta, float *c, int64_t ldc);

/* ---- memory of the table's device ------------------------------------------------- */

enum lmp_copy_dir {
    LMP_COPY_HOST_TO_DEVICE,
    LMP_COPY_DEVICE_TO_HOST,
    LMP_COPY_DEVICE_TO_DEVICE,
};

/* bytes of the table's device memory, 64-byte aligned; NULL on failure (or bytes == 0).
 * The caller owns it until mem_free. Thread-safe. */
typedef void *lmp_mem_alloc_fn(size_t bytes);
/* Free what mem_alloc returned; NULL is a no-op. */
typedef void lmp_mem_free_fn(void *p);
/* Copy bytes between host and device memory (CPU tables: memcpy, every direction);
 * synchronous: dst is complete on return. Regions do not overlap. */
typedef void lmp_mem_copy_fn(void *dst, const void *src, size_t bytes, enum lmp_copy_dir dir);

/* Dequantize n elements (n a multiple of the dtype's block) of a row stored as `dtype`
 * (enum lmp_dtype value, kernels/dtype.h) into fp32. */
typedef void lmp_dequant_row_fn(int dtype, const void *src, float *dst, int64_t n);

/* ---- AQLM ops (math and tolerances: each reference file's header) ---------------- */

/* Shape of an additive-quantized slice: rows of n_in weights cut into n_in/g groups,
 * each group the sum of M codewords (one per codebook of K entries of length g) times
 * the row's scale. n_out is the number of rows the call sees (a slice may be a range
 * of a layer's rows). */
struct lmp_aq_shape {
    int64_t n_out; /* rows in this call */
    int64_t n_in;  /* input features, a multiple of g */
    int     M;     /* codebooks */
    int     K;     /* entries per codebook, 2^bits (<= 65536) */
    int     g;     /* in-group size */
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
 * code position (group j, codebook m) at a time, starting from the codes given: groups
 * in order j = 0, 1, ..., the codebooks of group j in the order m_order[j M .. j M + M)
 * (a permutation of 0..M-1 for each group; m_order NULL: 0, 1, ..., M-1). A caller that
 * wants the groups in another order permutes the groups of w, h and codes (the search on
 * the permuted problem is that search; worker/aq.c does it).
 * codes (n_out, n_in/g, M) in/out; loss (n_out) out (may be NULL): the objective of the
 * returned codes; w (n_out, n_in); scale (n_out); cb (M, K, g); h (n_in, n_in);
 * m_order (n_in/g, M) or NULL.
 * Returns 0, or LMP_ENOMEM when scratch cannot be allocated (codes then unchanged). */
typedef int lmp_aq_beam_fn(uint16_t *codes, double *loss, const float *w, const float *scale,
                           const float *cb, const float *h, const struct lmp_aq_shape *s, int beam,
                           const uint8_t *m_order);
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
typedef void lmp_aq_decode_fn(float *w, const uint16_t *codes, const float *cb, const float *scale,
                              const struct lmp_aq_shape *s);
/* y (n_batch, n_out) = x (n_batch, n_in) W_hat^T straight from the codes, without a
 * dense copy of W_hat: the inference path of a quantized linear. Lookup tables of
 * codeword-input dot products for K <= 256 (Kx8 codebooks), decode-dot for larger K
 * (1x16), decoded row tiles + sgemm for big batches (kernels/ref/aq_matvec_ref.c,
 * kernels/cpu/aq_matvec_cpu.h). The result does not depend on the thread count.
 * Returns 0, or LMP_ENOMEM. */
typedef int lmp_aq_matvec_fn(float *y, const float *x, int64_t n_batch, const uint16_t *codes,
                             const float *cb, const float *scale, const struct lmp_aq_shape *s);
/* y (n_batch, n_rows) = x (n_batch, n_cols) W^T straight from W's 8-bit or 4-bit blocks:
 * W (n_rows, n_cols) stored row by row as ggml Q8_0 or Q4_1 blocks of 32 (`dtype`, enum
 * lmp_dtype; n_cols a multiple of 32), or as F16 halves, never widened to fp32: the
 * quantized lm head, or an fp32 head whose values are exactly such blocks or halves
 * (kernels/ref/qmatvec_ref.c). Each output is summed by one thread, so the result does not
 * depend on the thread count. Returns 0, LMP_EINVAL (another dtype, n_cols not a multiple
 * of 32) or LMP_ENOMEM. */
typedef int lmp_qmatvec_fn(float *y, const float *x, int64_t n_batch, int dtype, const void *w,
                           int64_t n_rows, int64_t n_cols);
/* Quantize one row src (n, a multiple of 32) into n / 32 blocks of dtype (LMP_DTYPE_Q8_0
 * or LMP_DTYPE_Q4_1) at dst: scale (and minimum) rounded to fp16 first, then the nearest
 * codes (kernels/ref/qmatvec_ref.c). Not a slot: it runs once per stored tensor. Returns 0,
 * or LMP_EINVAL (another dtype, a bad n, a value that is not finite or a scale beyond
 * fp16). */
int lmp_quantize_row(int dtype, const float *src, void *dst, int64_t n);

/* ---- 24-bit lookup tables on packed codes (decoding; ref: aq_matvec_ref.c) ---------- */

/* An AQ layer with K <= 256 repacked once (lmp_aq_pack) for aq_matvec_pk: its codes as
 * bytes, read in the order the product reads them. Positions p = j M + m (group j,
 * codebook m), n_pos of them (n_in / g M, rounded up to even: a padded position reads a
 * table of zeros), in chunks of LMP_AQ_CHUNK positions (the last one shorter); rows in
 * blocks of 64 (n_rb, the last one padded with code 0). Chunk c, row block rb holds
 * (len_c, 64) bytes at offset (c LMP_AQ_CHUNK n_rb + rb len_c) 64, and within each
 * 64 bytes the byte at 16 l + 4 k + w (l, k, w < 4) is row 64 rb + 16 k + 4 l + w (the
 * order the AVX-512 sums come out in: lmp_aq_packed_code reads one code). */
enum { LMP_AQ_CHUNK = 32, LMP_AQ_ROWS = 64 };
struct lmp_aq_packed {
    struct lmp_aq_shape shape;
    int64_t             n_pos, n_chunk, n_rb;
    uint8_t            *codes; /* n_chunk chunks, as above */
    float              *cT;    /* (M, g, 256) the codebooks transposed, 0 for k >= K */
    float              *cmax;  /* (M) the largest codeword norm of each codebook */
    const float        *scale; /* (n_out) the caller's, not copied */
};
/* Pack a layer (scale is kept by pointer: it must outlive *p). Returns 0, LMP_EINVAL (K >
 * 256, or a code >= K) or LMP_ENOMEM; *p is zeroed on failure. */
int lmp_aq_pack(struct lmp_aq_packed *p, const uint16_t *codes, const float *cb, const float *scale,
                const struct lmp_aq_shape *s);
void lmp_aq_packed_free(struct lmp_aq_packed *p);
/* The code of row o at position p of a packed layer. */
int lmp_aq_packed_code(const struct lmp_aq_packed *p, int64_t o, int64_t p_pos);
/* Largest table entry in units of a chunk's step: entries are 24-bit integers, and the
 * margin below 2^23 - 1 covers the fp32 rounding of the bound (no clamping needed). */
#define LMP_AQ_TABLE_MAX 8388352.0f
/* The table scale of chunk c of input row x (n_in): every entry of the chunk's tables,
 * cb_m[k] . x[j g : (j+1) g], is at most bound = max over its positions of
 * cmax[m] |x_j| (Cauchy-Schwarz); *inv = LMP_AQ_TABLE_MAX / bound and *step = bound /
 * LMP_AQ_TABLE_MAX (both 0 when bound is 0 or not finite). Shared by every variant (one
 * compiled copy), so all scale alike. */
void lmp_aq_chunk_scale(const struct lmp_aq_packed *p, const float *x, int64_t c, float *inv,
                        float *step);
/* y_l (n_batch, n_out_l) = x (n_batch, n_in) W_l^T for n packed layers sharing their input
 * (q, k, v; gate, up: one call, one fork/join). Per input row and chunk, the table entries
 * e = cb_m[k] . (x_j inv) (fp32, fused multiply-adds over t in order, from 0) are rounded
 * to integers (cvtps2dq, kept to their low 24 bits: |e| <= LMP_AQ_TABLE_MAX, so exact);
 * each row sums the entries its codes select exactly in integers, S; y[b, o] = (sum over
 * chunks in order of (float) S_c step_c) scale[o], fp32. The tables cost n_in M 256
 * multiply-adds per input row and layer; an entry is off by at most half a step, 2^-24 of
 * its chunk's bound (nmse 1e-14 to 3e-13 against fp32 tables on random data). Returns 0,
 * LMP_EINVAL (layers of different n_in, g > 16) or LMP_ENOMEM. */
/* Attention of one query token (decoding) for grp query heads that share one key/value
 * head: o (grp, hd) = softmax(scale q K^T) V over the keys [k0, n), q (grp, hd) row-major,
 * key j's row at k + j ks and its value row at v + j ks; s: scratch of grp n floats
 * (kernels/ref/attn_row_ref.c: fp32, expf, as the transformer's softmax). */
typedef void lmp_attn_row_fn(float *o, const float *q, const float *k, const float *v, int64_t ks,
                             int64_t k0, int64_t n, int grp, int64_t hd, float scale, float *s);
typedef int  lmp_aq_matvec_pk_fn(int n, float *const *y, const float *x, int64_t n_batch,
                                 const struct lmp_aq_packed *const *w);

struct lmp_kernels {
    const char           *name; /* "ref", "blas", "avx2", "avx512", "cuda" */
    enum lmp_device       device;
    lmp_mem_alloc_fn     *mem_alloc;
    lmp_mem_free_fn      *mem_free;
    lmp_mem_copy_fn      *mem_copy;
    lmp_sgemm_fn         *sgemm;
    lmp_dequant_row_fn   *dequant_row;
    lmp_gram_acc_fn      *gram_acc;
    lmp_kmeans_assign_fn *kmeans_assign;
    lmp_kmeans_update_fn *kmeans_update;
    lmp_aq_beam_fn       *aq_beam;
    lmp_aq_grad_fn       *aq_grad;
    lmp_aq_grad_dw_fn    *aq_grad_dw;
    lmp_aq_decode_fn     *aq_decode;
    lmp_aq_matvec_fn     *aq_matvec;
    lmp_qmatvec_fn       *qmatvec;
    lmp_aq_matvec_pk_fn  *aq_matvec_pk; /* NULL: no packed path (avx2, cuda; aq_matvec) */
    lmp_attn_row_fn      *attn_row;     /* NULL: the transformer's sgemms (avx2, cuda) */
};

/* References (kernels/ref/). */
lmp_sgemm_fn         lmp_sgemm_ref;
lmp_mem_alloc_fn     lmp_mem_alloc_host; /* kernels/scratch.c: host memory, every CPU table */
lmp_mem_free_fn      lmp_mem_free_host;
lmp_mem_copy_fn      lmp_mem_copy_host;
lmp_dequant_row_fn   lmp_dequant_row_ref;
lmp_gram_acc_fn      lmp_gram_acc_ref;
lmp_kmeans_assign_fn lmp_kmeans_assign_ref;
lmp_kmeans_update_fn lmp_kmeans_update_ref;
lmp_aq_beam_fn       lmp_aq_beam_ref;
lmp_aq_grad_fn       lmp_aq_grad_ref;
lmp_aq_grad_dw_fn    lmp_aq_grad_dw_ref;
lmp_aq_decode_fn     lmp_aq_decode_ref;
lmp_aq_matvec_fn     lmp_aq_matvec_ref;
lmp_qmatvec_fn       lmp_qmatvec_ref;
lmp_aq_matvec_pk_fn  lmp_aq_matvec_pk_ref;
lmp_attn_row_fn      lmp_attn_row_ref;

/* Fill every slot with the reference (table "ref"). */
void lmp_kernels_init_ref(struct lmp_kernels *k);
/* The best table this CPU runs: "avx512" where the CPU has it, else "avx2", else "blas". */
void lmp_kernels_init_best(struct lmp_kernels *k);
/* Fill *k with the table called name: "ref", "best", or one of lmp_kernels_names().
 * Returns false (k untouched) for an unknown name or one this CPU cannot run. */
bool lmp_kernels_init_named(struct lmp_kernels *k, const char *name);
/* The tables this build and CPU can run, NULL-terminated, reference first:
 * "ref" (every slot scalar), "blas" (the references with OpenBLAS sgemm), "avx2" (the
 * blas table with the AVX2 variants), "avx512" (the blas table with the AVX-512
 * variants; = best on such a CPU). */
const char *const *lmp_kernels_names(void);

/* Select the process-wide table by name (as lmp_kernels_init_named). Returns false for
 * an unknown name. Call before starting threads. Without a call, the first
 * lmp_kernels_get() takes $LMP_KERNELS if set (an unknown name there is reported on
 * stderr once and "best" is used), else "best". */
bool                      lmp_kernels_select(const char *name);
const struct lmp_kernels *lmp_kernels_get(void);

/* ---- scratch: the calling thread's arena (kernels/scratch.c) ----------------------- */

/* Where the arena stands; pass it to lmp_scratch_reset to free what was carved since. */
struct lmp_scratch_mark {
    int    chunk;
    size_t used; /* bytes */
};

/* Calling sequence inside a kernel (allocations nest like a stack):
 *     struct lmp_scratch_mark m = lmp_scratch_mark();
 *     float *t = lmp_scratch_alloc(n * sizeof(float));     NULL on out-of-memory
 *     ...
 *     lmp_scratch_reset(m);                                 every path out, t now invalid
 * Memory is 64-byte aligned and not zeroed; it is host memory (the CPU tables' device). */
struct lmp_scratch_mark lmp_scratch_mark(void);
void                   *lmp_scratch_alloc(size_t bytes);
void                    lmp_scratch_reset(struct lmp_scratch_mark mark);
/* Free the calling thread's cached chunks (nothing may be carved). */
void lmp_scratch_trim(void);
/* Bytes the calling thread's arena holds (carved or cached). */
size_t lmp_scratch_held(void);

/* ---- threads (kernels/cpu/gemm_blas.c, kernels/cpu/parallel.c) ---------------------- */

/* Fix the process's compute thread budget: the first call wins (later calls, and the
 * value a first lmp_kernels_threads() takes, do not change it); OpenBLAS stays at one
 * thread whatever it is. n <= 0: the default, $LMP_THREADS (1..256) if set, else the online CPUs.
 * Returns the budget in effect. Thread-safe. */
int lmp_kernels_set_threads(int n);
/* The budget (fixing the default if nothing set it yet). */
int lmp_kernels_threads(void);
/* Run fn(arg, tid, n) for every tid in [0, n) and return when all are done: tid 0 on the
 * calling thread, the others on the kernel pool's threads (kernels/cpu/parallel.c), so the
 * layers above (the transformer's row and attention tasks) share one set of threads with
 * the kernels; n above the budget, or a pool already running a call, gets threads of its
 * own for the call. fn must not depend on which thread runs which tid. */
typedef void lmp_kernels_par_fn(void *arg, int tid, int n);
void         lmp_kernels_parallel(int n, lmp_kernels_par_fn *fn, void *arg);
/* How long the pool's threads watch for the next call before they park (and a caller for
 * its workers before it sleeps), microseconds, 0..100000; 0, the default, parks at once.
 * For a process that owns its cores and makes many short calls (decoding: about 150 a
 * token); spinning threads take the cores from anything else. Thread-safe. */
void lmp_kernels_set_spin_us(int us);
/* A section whose GEMMs run concurrently on the caller's own threads: an sgemm runs its
 * fixed blocks on the calling thread until the matching end (counted: sections nest). */
void lmp_kernels_blas_serial_begin(void);
void lmp_kernels_blas_serial_end(void);

/* The OpenBLAS core type this CPU deserves when the library's own detection settled on a
 * weaker one: OpenBLAS 0.3.21 does not know every CPU model (a VM that names its CPU
 * "Intel(R) Xeon(R) Processor" gets "Prescott", SSE3 kernels, half the speed of its AVX-512
 * ones). "SkylakeX" (AVX-512 F, CD, BW, DQ, VL) or "Haswell" (AVX2 + FMA), else NULL: the
 * detection is fine, OPENBLAS_CORETYPE is already set, or LMP_BLAS_CORE=keep. OpenBLAS
 * reads OPENBLAS_CORETYPE once, when it is loaded, so the program sets it and re-executes
 * itself (cli/main.c). The core changes the GEMMs' rounding, not their result otherwise. */
const char *lmp_kernels_blas_better_core(void);

/* CPU feature probes (cpuid). */
bool lmp_cpu_has_avx2(void);   /* AVX2 + FMA */
bool lmp_cpu_has_avx512(void); /* AVX-512 F + BW + VL */

#endif /* LMP_KERNELS_KERNELS_H */
