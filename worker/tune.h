/*  tune - PV-Tuning of a whole quantized model on one process: the training loop
 *
 *  The stage over a model (docs/pv-tuning.md): the student is the quantized model (its
 *  dense buffers are the decodes of its AQ linears, worker/pv.h), the teacher the
 *  original; both are fp32 parameter sets (worker/model_grad.h). Each optimizer step
 *  takes batch_seqs windows of the tuning data, one micro-batch of micro_seqs at a time:
 *
 *      teacher forward -> its logits for every row (n_micro * seq_len, vocab)
 *      student forward, KL(teacher || student) backward -> dense weight and norm gradients,
 *                                                          accumulated over the micro-batches
 *      gradients / (micro-batches)                          (the step's mean loss)
 *      P step (codebooks, scales, norms: Adam), then every v_every steps a V step (codes)
 *
 *  The teacher enters "computed alongside": its logits are recomputed per micro-batch
 *  (one extra forward, no storage; memory: one (micro_seqs * seq_len, vocab) fp32 array,
 *  100 MB for SmolLM2 at 512 tokens). Exact, so no approximation to measure.
 *
 *  Gradients are summed exactly: each micro-batch's gradient is rounded to fixed point
 *  (int64, LMP_TUNE_FIXED_BITS fractional bits, each contribution clamped so that no sum of
 *  a step can overflow) and added as integers, so the sum does not depend on the order the
 *  micro-batches were added in. That makes data parallelism exact: with a communicator
 *  (struct lmp_tune_comm, e.g. MPI ranks), rank r of R runs its contiguous share of the
 *  step's micro-batches, the integer sums are added across ranks, and every rank takes the
 *  same P/V step on the same bits: R ranks give the result of one process, bit for bit
 *  (tests/integration/tune_mpi.sh). The rounding is below 2^-44 ~ 6e-14 absolute per
 *  element, far below a gradient's float rounding where it matters for Adam.
 *
 *  Owner-only P/V (opts.owner_pv): with 2+ ranks each linear has one owner (contiguous runs of
 * linears of about equal weight count per rank), and only the owner takes its P and V steps (they
 * cost O(weights) each: the codebook gradient, U's Adam step, the group distances). The owners' new
 * codebooks, scales and codes then go to every rank in one exact sum (raw bytes from the owner,
 * zeros from the others), and the others decode them: the weights stay the one process's bit for
 * bit. U and the moments stay with the owner until a step asked for a checkpoint
 * (lmp_tune_want_checkpoint) gathers them.
 *
 *  Data order is a pure function of (seed, step): window k of the stream (k = step *
 *  batch_seqs + i) is perm_e[k mod n_win] where e = k / n_win and perm_e a permutation
 *  seeded by (seed, e). So the position in the data is the step, and a run resumed from
 *  a checkpoint at step s (lmp_tune_state + lmp_tune_state_loaded) continues bit for bit
 *  as if it had never stopped (test_tune).
 *
 *  What is trained: every AQ linear given (lmp_tune_new's lins) has its codebooks, scales
 *  (P) and codes (V) trained; with train_norms the RMSNorm weights of the blocks that have
 *  one of them, and the final one. Dense or RTN linears, biases, embeddings and the head
 *  stay frozen. The backward stops at the first block with a linear given (sparse tuning:
 *  give only the linears of the blocks worth it, lmp_tune_probe).
 *
 *  Threads: the kernels' (GEMMs at the process's budget, the beam search's rows); calls on
 *  one object must not overlap.
 */
#ifndef LMP_WORKER_TUNE_H
#define LMP_WORKER_TUNE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "base/status.h"       /* defines: enum lmp_status, struct lmp_err */
#include "worker/model_grad.h" /* defines: struct lmp_model_weights */
#include "worker/pv.h"         /* defines: struct lmp_pv_opts, struct lmp_pv_array */

/* Fractional bits of the fixed-point gradient sums. */
enum { LMP_TUNE_FIXED_BITS = 44 };

/* Data-parallel ranks running the same tuning in lockstep (NULL: one process). The sums
 * must be exact elementwise integer / double sums over all ranks, every rank getting the
 * result (MPI_Allreduce with MPI_SUM). RET LMP_OK or an error status (then every rank
 * fails the step). */
struct lmp_tune_comm {
    int   rank, size;
    void *ctx;
    enum lmp_status (*sum_i64)(void *ctx, int64_t *x, int64_t n);
    enum lmp_status (*sum_f64)(void *ctx, double *x, int64_t n);
    /* Optional (NULL: sum_i64 does it): the same sum delivered to rank root only, the
     * others' x then undefined (MPI_Reduce). Owner-only P/V sends each owner only the
     * gradients of its linears with it. */
    enum lmp_status (*reduce_i64)(void *ctx, int root, int64_t *x, int64_t n);
};

/* Pipeline stages (the model split by blocks across ranks): stage k of n_stages owns blocks
 * [L k / S, L (k + 1) / S) of the L blocks (S <= L). Per micro-batch, activations go forward
 * from stage to stage (the teacher's, then the student's), the last stage computes the
 * logits and the KL, and dL/d(hidden) comes back; each stage runs the forward and backward
 * of its own blocks and keeps only their activations. Several chains (replicas) split a
 * step's micro-batches as data-parallel ranks do. Stage 0 decides a stop before each
 * micro-batch and passes it down the chain. The gradient sums (opts.comm, whose ranks are
 * all n_stages x n_replicas processes) then give every rank the whole model's gradient,
 * each block's part added by the stages that own it, and every rank takes the same P/V
 * step: the result is the one process's, bit for bit, for any number of stages and
 * replicas. send/recv move exactly n bytes to / from stage `to` / `from` of the same
 * replica, in order (MPI_Send / MPI_Recv); RET LMP_OK or an error status. Without them
 * (both NULL) every transfer is an exact integer sum over comm instead, each chain's sender
 * contributing its bytes and every other rank zeros (all ranks take part in every transfer,
 * chains with fewer micro-batches idle through the extra rounds): what ranks whose only
 * link is a reduction, as through the coordinator, use. */
struct lmp_tune_pipe {
    int   stage, n_stages;
    int   replica, n_replicas;
    void *ctx;
    enum lmp_status (*send)(void *ctx, int to, const void *buf, size_t n);
    enum lmp_status (*recv)(void *ctx, int from, void *buf, size_t n);
};

struct lmp_tune_opts {
    int64_t            batch_seqs; /* windows per optimizer step (default 8) */
    int64_t            micro_seqs; /* windows per forward/backward (default 1; memory) */
    int                v_every; /* a V step after every v_every-th P step; 0: P only (default 1) */
    bool               train_norms;
    uint64_t           seed;   /* data order */
    struct lmp_pv_opts pv;     /* learning rates, code fraction, beam (worker/pv.h defaults) */
    const atomic_int  *cancel; /* polled with the process's stop before each micro-batch */
    const struct lmp_tune_comm *comm; /* data-parallel ranks, or NULL */
    const struct lmp_tune_pipe *pipe; /* pipeline stages (then comm spans every rank), or NULL */
    int64_t xch_words; /* owner-only P/V: the exchange buffer in int64 words; exchanges
                          and gathers go through it in pieces (0: the step's exchange up
                          to 64 MiB, at least 1 MiB) */
    bool owner_pv;     /* with comm: owner-only P/V (above). For ranks that fail together (MPI:
                          one rank's death aborts them all); ranks that survive each other
                          (through a coordinator) keep it off, so that every rank holds the
                          whole state and rank 0 can checkpoint whichever other rank is lost */
};
void lmp_tune_opts_init(struct lmp_tune_opts *o);

/* What one step did (observer's view; also returned by lmp_tune_step). */
struct lmp_tune_step_stats {
    int64_t step;          /* steps done, this one included */
    double  kl;            /* mean KL(teacher || student) over the step's rows, before it */
    double  agree;         /* fraction of rows whose argmaxes agree, before the step */
    int64_t rows;          /* rows (tokens) of the step */
    int64_t codes_changed; /* groups whose codes the V step changed (0 without one) */
    int64_t codes_selected;
    double  seconds;     /* wall time of the step */
    double  seconds_sum; /* of it: the ranks' gradient sum (0 without a communicator) */
    double  seconds_pv;  /* of it: the P and V steps (with ranks: their exchange too) */
    bool    gathered;    /* some rank wanted a checkpoint: lmp_tune_state may list it now */
};

/* One quantized linear of the student: which block and kind, and its arrays (borrowed). */
struct lmp_tune_linear {
    int32_t              block;
    enum lmp_lin         kind;
    struct lmp_pv_linear pv; /* pv.w must be the student's dense buffer of this linear */
};

struct lmp_tune;

/* Set up tuning of student against teacher (same config; both borrowed, the student's
 * norm and linear buffers updated in place) on tokens (n_win, seq_len) (borrowed; every
 * id inside the vocabulary). RET LMP_OK, LMP_EINVAL (shapes, options, configs that
 * differ; err says which), LMP_ENOMEM. */
enum lmp_status lmp_tune_new(struct lmp_model_weights       *student,
                             const struct lmp_model_weights *teacher,
                             const struct lmp_tune_linear *lins, int n_lins, const int32_t *tokens,
                             int64_t n_win, int64_t seq_len, const struct lmp_tune_opts *opts,
                             struct lmp_tune **out, struct lmp_err *err);
void            lmp_tune_destroy(struct lmp_tune **self_p);

/* One optimizer step (the next one). With a communicator every rank must call it; a stop
 * on any rank stops all of them at the same step. RET LMP_OK, LMP_ENOMEM, LMP_ECANCEL
 * (the student is then as before the step: gradients are only applied at its end; the
 * state is gathered for a checkpoint), or a communicator's error. */
enum lmp_status lmp_tune_step(struct lmp_tune *self, struct lmp_tune_step_stats *stats,
                              struct lmp_err *err);

/* Steps taken so far. */
int64_t lmp_tune_steps_done(const struct lmp_tune *self);

/* Mean KL and agreement of the student against the teacher on n windows of seq_len
 * tokens (borrowed; held-out text, not the training windows), without an update. RET
 * LMP_OK, LMP_EINVAL (a token outside the vocabulary), LMP_ECANCEL. */
enum lmp_status lmp_tune_measure(struct lmp_tune *self, const int32_t *tokens, int64_t n,
                                 double *kl, double *agree, struct lmp_err *err);

/* What tuning each block is worth, cheaply (PockEngine's question: which blocks pay): over
 * windows tokens (n, seq_len), one forward and backward each against the teacher, score[b]
 * = the sum over block b's linears and norms of |dL/dW| (the first-order loss drop of one
 * sign-like Adam step of unit rate on them). Deterministic. RET LMP_OK, LMP_EINVAL,
 * LMP_ENOMEM, LMP_ECANCEL (cancel, may be NULL). */
enum lmp_status lmp_tune_probe(const struct lmp_model_weights *student,
                               const struct lmp_model_weights *teacher, const int32_t *tokens,
                               int64_t n, int64_t seq_len, const atomic_int *cancel, double *score,
                               struct lmp_err *err);

/* Ask that the next step end with the whole state on every rank, for a checkpoint. With
 * a communicator of 2+ ranks each rank keeps U and the Adam moments current only for the
 * linears it steps (see "Owner-only P/V" above); the wish travels in the step's gradient
 * sum, so one rank asking (the one that writes checkpoints, on its own clock) is enough and
 * costs no extra round, and every rank then gathers the owners' arrays at the end of that
 * step (lmp_tune_step_stats.gathered). A step that stops (LMP_ECANCEL) always ends
 * gathered. Without ranks this only sets .gathered. */
void lmp_tune_want_checkpoint(struct lmp_tune *self);

/* The whole state for a checkpoint: lmp_pv_state's arrays plus "tune.step" (i64, 1
 * element) and the norms' state when trained. Same contract as lmp_pv_state: refill the
 * arrays, then call lmp_tune_state_loaded. *arrays malloc'ed (caller frees). RET LMP_OK,
 * LMP_ENOMEM, or LMP_EINVAL after a step under owner-only stepping that did not end gathered
 * (this rank's copy is behind: writing it would lose the owners' state). */
enum lmp_status lmp_tune_state(struct lmp_tune *self, struct lmp_pv_array **arrays, int *n);
void            lmp_tune_state_loaded(struct lmp_tune *self);

#endif /* LMP_WORKER_TUNE_H */
