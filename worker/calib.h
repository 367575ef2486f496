/*  calib - calibration data and the Gram matrices H = X^T X of every linear input
 *
 *  AQLM's layer objective ||(W - W_hat) X||^2 = tr((W - W_hat) H (W - W_hat)^T) needs
 *  only H per distinct linear input (enum lmp_input: one for q/k/v, one for o, one for
 *  gate/up, one for down), so this is all the quantizer sees of the activations.
 *
 *  Calibration sequences (n_seq, ctx) of token ids come either from a text
 *  (lmp_calib_sample_text: windows at seeded random offsets of the tokenized text) or
 *  from the model itself (lmp_calib_generate: seeded sampling at temperature 1).
 *
 *  struct lmp_calib walks the model one block at a time and keeps only the residual
 *  stream of the current block, x (n_seq * ctx, dim) fp32, plus the block's output y of
 *  the same size (the target of block fine-tuning). Calling sequence per block b:
 *
 *      lmp_calib_collect(cal, b, grams, &err);   H of b's four inputs from x; y = block_b(x)
 *                                                with the linops currently installed
 *      ... quantize b's linears from lmp_calib_grams_h() ...
 *      sequential:   install b's quantized linops, then lmp_calib_advance(cal, b, &err)
 *                    (x = block_b(x) through the quantized block)
 *      independent:  lmp_calib_take_output(cal)   (x = y: the original model's output)
 *
 *  Sequences run through a block in chunks of about 2048 tokens, so scratch stays small
 *  whatever n_seq. Grams accumulate in double (gram_acc kernel); lmp_calib_grams_h hands
 *  out H / n_tok in fp32 as lmp_aq_quantize expects.
 *
 *  Calibration slices: the sequences are cut into at most LMP_CALIB_SLICES consecutive
 *  slices of lmp_calib_slice_seqs(n_seq) sequences. A block's sum is always formed as
 *  ((0 + S_0) + S_1) + ... where S_k is slice k's sum started from zero (chunks of the
 *  slice start at its first sequence). A cluster computes each S_k on some worker (a
 *  struct lmp_calib over that slice's tokens alone gives S_k bit for bit) and adds them
 *  with lmp_calib_grams_add in slice order, so H is the same bits whatever the number
 *  of workers, and the same as a single process. Not thread-safe; the transformer
 *  must not be used by anything else while a calib object runs blocks on it.
 */
#ifndef LMP_WORKER_CALIB_H
#define LMP_WORKER_CALIB_H

#include <stdint.h>
#include <stdatomic.h>
#include "base/status.h"       /* defines: enum lmp_status, struct lmp_err */
#include "model/model.h"       /* defines: enum lmp_input, struct lmp_config */
#include "model/tokenizer.h"   /* defines: struct lmp_tokenizer */
#include "model/transformer.h" /* defines: struct lmp_transformer */

/* ---- calibration sequences ------------------------------------------------------ */

/* Fill out (n_seq, ctx) with windows of ids (n_ids >= ctx) starting at offsets drawn
 * uniformly from [0, n_ids - ctx] by a generator seeded with seed (same seed, same
 * windows). RET LMP_OK, LMP_EFORMAT (text shorter than one window: the input is
 * rejected) or LMP_EINVAL (bad sizes). */
enum lmp_status lmp_calib_sample_text(int32_t *out, const int32_t *ids, int64_t n_ids,
                                      int64_t n_seq, int64_t ctx, uint64_t seed,
                                      struct lmp_err *err);

/* Bytes a calibration of n_seq x ctx tokens asks of memory: the tokens (int32, held by
 * the coordinator) and the fp32 activations of every sequence, two copies of
 * (n_seq * ctx, dim) (a block's input and output, held by the workers: all of them on one
 * worker, as in `lmpress compress`). Saturates at UINT64_MAX instead of overflowing. */
uint64_t lmp_calib_bytes(int64_t n_seq, int64_t ctx, int64_t dim);
/* RET LMP_OK, or LMP_EUNSUP with one line naming --nsamples and --ctx when
 * lmp_calib_bytes exceeds the memory budget (base/mem.h: half the physical memory, or
 * LMP_MEM_BUDGET). The planner and `lmpress compress` (before it starts) check a job. */
enum lmp_status lmp_calib_check_budget(int64_t n_seq, int64_t ctx, int64_t dim,
                                       struct lmp_err *err);

/* Let the model write its own calibration text: out (n_seq, ctx) starts with the prompt
 * (n_prompt >= 1 tokens, e.g. just BOS) and continues by sampling the next token from
 * softmax(logits) (temperature 1) with a generator seeded with seed. Sequences are
 * generated in batches with a KV cache. RET LMP_OK, LMP_EINVAL (ctx > the model's
 * context, n_prompt >= ctx), LMP_ENOMEM, LMP_ECANCEL (the process is stopping: polled
 * before each token step). */
enum lmp_status lmp_calib_generate(int32_t *out, struct lmp_transformer *tf, const int32_t *prompt,
                                   int64_t n_prompt, int64_t n_seq, int64_t ctx, uint64_t seed,
                                   struct lmp_err *err);

/* Sequences per chunk of lmp_calib_generate_part. */
enum { LMP_CALIB_GEN_CHUNK = 32 };

/* Text the model m writes itself, split so that processes can share the work: out (n_seq,
 * ctx) in chunks of LMP_CALIB_GEN_CHUNK sequences, chunk c generated by lmp_calib_generate
 * with a seed derived from (seed, c), from m's BOS token (or "Once upon a time" where the
 * tokenizer has none). Only the chunks c with c % n_parts == part are written (the rest of
 * out is left as it is), so n_parts processes that each write their part and add the
 * results get the same tokens as one process writing every part. threads: for the
 * forward passes. RET as lmp_calib_generate, or a tokenizer error. */
enum lmp_status lmp_calib_generate_part(int32_t *out, const struct lmp_model *m,
                                        const struct lmp_tokenizer *tok, int64_t n_seq, int64_t ctx,
                                        uint64_t seed, int part, int n_parts, int threads,
                                        struct lmp_err *err);

/* ---- calibration slices ------------------------------------------------------------ */

enum { LMP_CALIB_SLICES = 8 };

/* Sequences per slice for n_seq sequences: ceil(n_seq / LMP_CALIB_SLICES) (>= 1). */
int64_t lmp_calib_slice_seqs(int64_t n_seq);
/* Number of slices: ceil(n_seq / lmp_calib_slice_seqs(n_seq)). */
int64_t lmp_calib_n_slices(int64_t n_seq);

/* ---- Gram matrices of one block -------------------------------------------------- */

struct lmp_calib_grams;

/* Accumulators for the four inputs of a block of cfg (widths dim, n_heads * head_dim,
 * dim, hidden_dim). NULL on out-of-memory. */
struct lmp_calib_grams *lmp_calib_grams_new(const struct lmp_config *cfg);
void                    lmp_calib_grams_destroy(struct lmp_calib_grams **self_p);
/* Zero every sum (start a new block). */
void lmp_calib_grams_reset(struct lmp_calib_grams *self);
/* The lmp_block_hook_fn that adds x^T x to input `which`; ctx is the grams object. */
void    lmp_calib_grams_hook(void *ctx, int32_t block, enum lmp_input which, const float *x,
                             int64_t n_rows, int64_t n_cols);
int64_t lmp_calib_grams_n_in(const struct lmp_calib_grams *self, enum lmp_input which);
/* The width n_in of input `which` of cfg's blocks (what lmp_calib_grams_n_in reports). */
int64_t lmp_calib_input_width(const struct lmp_config *cfg, enum lmp_input which);
int64_t lmp_calib_grams_n_tok(const struct lmp_calib_grams *self, enum lmp_input which);
/* The running double sum (n_in, n_in) of input `which`, for tests and checkpoints. */
const double *lmp_calib_grams_sum(const struct lmp_calib_grams *self, enum lmp_input which);
/* sum(which) += part (n_in, n_in) element by element, n_tok(which) += n_tok: one slice's
 * sum added in slice order (see the file comment). */
void lmp_calib_grams_add(struct lmp_calib_grams *self, enum lmp_input which, const double *part,
                         int64_t n_tok);
/* h (n_in, n_in) fp32, caller-owned = sum / n_tok. RET LMP_OK or LMP_EINVAL (no tokens). */
enum lmp_status lmp_calib_grams_h(const struct lmp_calib_grams *self, enum lmp_input which,
                                  float *h);

/* ---- the block walk -------------------------------------------------------------- */

struct lmp_calib;

/* Embed tokens (n_seq, ctx) (borrowed for the call) into x, ready for block 0.
 * tf is borrowed and must outlive the object. RET LMP_OK, LMP_ENOMEM, LMP_EINVAL,
 * LMP_EUNSUP (x and y would exceed the memory budget of base/mem.h). */
enum lmp_status lmp_calib_new(struct lmp_transformer *tf, const int32_t *tokens, int64_t n_seq,
                              int64_t ctx, struct lmp_calib **out, struct lmp_err *err);
void            lmp_calib_destroy(struct lmp_calib **self_p);

/* Run block on (a copy of) x with the hooks adding into grams (may be NULL: output
 * only), slice by slice (each slice's sum from zero, then added in order: see the file
 * comment; a calib object over one slice's tokens adds just that slice's sum); the
 * block's output goes to y. x is unchanged. RET as lmp_transformer_block, LMP_ENOMEM. */
enum lmp_status lmp_calib_collect(struct lmp_calib *self, int32_t block,
                                  struct lmp_calib_grams *grams, struct lmp_err *err);
/* x = block(x) in place, with the linops currently installed in the transformer. */
enum lmp_status lmp_calib_advance(struct lmp_calib *self, int32_t block, struct lmp_err *err);
/* Slices of slice_seqs sequences instead of lmp_calib_slice_seqs(n_seq): a worker that
 * holds one slice of a bigger job sets n_seq here, so its collect yields that slice's
 * sum S_k exactly as the whole job's collect forms it. */
void lmp_calib_set_slice(struct lmp_calib *self, int64_t slice_seqs);
/* Poll flag (borrowed; NULL: none) between chunks of a collect or an advance, which then
 * stop with LMP_ECANCEL; the process-wide stop (base/cancel.h) is always polled. */
void lmp_calib_set_cancel(struct lmp_calib *self, const atomic_int *flag);
/* x = y (the output of the last collect). */
void lmp_calib_take_output(struct lmp_calib *self);

/* The current block input x and the last collected output y, (n_seq * ctx, dim),
 * sequence-major; valid until the next call on self. */
float  *lmp_calib_x(struct lmp_calib *self);
float  *lmp_calib_y(struct lmp_calib *self);
int64_t lmp_calib_n_seq(const struct lmp_calib *self);
int64_t lmp_calib_ctx(const struct lmp_calib *self);

#endif /* LMP_WORKER_CALIB_H */
