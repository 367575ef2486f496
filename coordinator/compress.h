/*  compress - the compression job on one machine: calibration, the per-layer tasks,
 *  block fine-tuning and the artifact, block by block
 *
 *  For each block b (coordinator-side loop; a distributed run splits exactly here):
 *      1. calibration: H of b's four linear inputs from the current activations
 *         (worker/calib.h), and b's original output as the fine-tuning target;
 *      2. one task per linear (worker/compress.h: W, H, scheme, seed -> result), skipping
 *         linears matched by a --keep glob (stored unquantized) and linears the artifact
 *         already holds (resume);
 *      3. optional block fine-tuning (worker/finetune.h: codes frozen, codebooks, scales
 *         and norms trained on the block's output error);
 *      4. commit each layer to the artifact as soon as it is final (after step 2, or
 *         after step 3 with fine-tuning);
 *      5. activations for block b+1: sequential mode runs b's quantized linears on the
 *         calibration activations (AQLM's protocol); independent mode keeps the original
 *         model's output, so every block sees the original model's inputs.
 *  A resumed sequential run rebuilds the activations by running the committed blocks,
 *  decoded from the artifact. Memory: the activations of the current block (n_seq x ctx
 *  x dim floats, twice), the four H of one block, one layer's W and W_hat.
 *
 *  Calling sequence:
 *      struct lmp_compress_opts o; lmp_compress_opts_init(&o); o.out_path = ...;
 *      o.text_ids = ids; o.n_text_ids = n;   (or o.prompt for self-generated calibration)
 *      st = lmp_compress_run(model, &o, &summary, &err);
 */
#ifndef LMP_COORDINATOR_COMPRESS_H
#define LMP_COORDINATOR_COMPRESS_H

#include <stdbool.h>
#include <stdint.h>
#include "artifact/artifact.h"   /* defines: enum lmp_art_tok */
#include "base/status.h"           /* defines: enum lmp_status, struct lmp_err */
#include "worker/compress.h"        /* defines: struct lmp_compress_spec */
#include "worker/finetune.h"        /* defines: struct lmp_ft_opts */
#include "model/model.h"     /* defines: struct lmp_model */

enum lmp_compress_mode { LMP_COMPRESS_SEQUENTIAL, LMP_COMPRESS_INDEPENDENT };

enum lmp_compress_what {
    LMP_COMPRESS_EV_QUANTIZED,   /* a layer was compressed and committed */
    LMP_COMPRESS_EV_KEPT,        /* matched --keep: stored unquantized */
    LMP_COMPRESS_EV_RESUMED,     /* already in the artifact */
    LMP_COMPRESS_EV_STAGE,       /* a stage finished (name = "calibration", "finetune ...") */
};

struct lmp_compress_event {
    enum lmp_compress_what what;
    const char *name;            /* layer or stage */
    int64_t     index;           /* linears handled so far (1-based), of n_linears */
    int64_t     n_linears;
    double      rel_err_before, rel_err_after, bits_per_weight, seconds;
    int64_t     steps;
    double      eta_s;           /* estimated seconds left (< 0: unknown) */
};

typedef void lmp_compress_progress_fn(void *ctx, const struct lmp_compress_event *ev);

struct lmp_compress_opts {
    const char              *out_path;      /* ART.h5 */
    enum lmp_compress_mode   mode;
    struct lmp_compress_spec spec;
    const char *const       *keep;          /* (n_keep) glob patterns of linears to keep */
    int                      n_keep;
    bool                     finetune;      /* block fine-tuning (AQLM only) */
    struct lmp_ft_opts       ft;
    uint64_t                 seed;
    int                      n_threads;
    /* calibration: windows of text_ids, or (text_ids NULL) sequences the model writes
     * from prompt; ignored by RTN, which needs none */
    const int32_t           *text_ids;
    int64_t                  n_text_ids;
    const int32_t           *prompt;
    int64_t                  n_prompt;
    int64_t                  n_seq, ctx;
    const char              *calib_source;  /* "FILE" or "generate": for the description */
    /* tokenizer source stored in the artifact (borrowed) */
    enum lmp_art_tok         tok_kind;
    const uint8_t           *tok_bytes;
    size_t                   tok_n;
    lmp_compress_progress_fn *progress;
    void                    *progress_ctx;
};

void lmp_compress_opts_init(struct lmp_compress_opts *o);

struct lmp_compress_summary {
    int64_t n_linears, n_quantized, n_kept, n_resumed;
    double  mean_rel_err;        /* over the layers compressed in this run and resumed ones */
    double  bits_linear;         /* bits per weight over every linear (kept ones at 16) */
    double  bits_model;          /* the same over every parameter (embeddings, norms at 16) */
    double  seconds_calib;       /* calibration: sampling/generation, H, propagation */
    double  seconds_quant;       /* the per-layer tasks */
    double  seconds_finetune;    /* block fine-tuning */
    double  seconds_total;
    uint64_t model_fp, calib_fp;
};

/* Run the job on m (see the file comment) into o->out_path, resuming it if it exists.
 * RET LMP_OK; LMP_EINVAL (a scheme that does not fit a layer, a singular/NaN H: the
 * message names the layer), LMP_EMISMATCH (the artifact belongs to another model,
 * calibration or scheme), LMP_ENOSPC (disk full: committed layers stay), LMP_EFORMAT
 * (corrupt artifact), LMP_EUNSUP, LMP_ENOMEM, LMP_EIO. summary may be NULL. */
enum lmp_status lmp_compress_run(const struct lmp_model *m, const struct lmp_compress_opts *o,
                                 struct lmp_compress_summary *summary, struct lmp_err *err);

/* The artifact form of one task result (the same conversion lmp_compress_run commits, so
 * a distributed run stores identical layers): arrays of r are copied into *l, which the
 * caller releases with lmp_art_layer_release (also after an error). Only r's method,
 * shape, aq / rtn_* arrays and statistics are read (w_hat may be NULL).
 * RET LMP_OK or LMP_ENOMEM. */
enum lmp_status lmp_compress_result_to_layer(struct lmp_art_layer *l,
                                             const struct lmp_compress_result *r,
                                             const struct lmp_compress_spec *spec,
                                             const char *name, struct lmp_err *err);

#endif /* LMP_COORDINATOR_COMPRESS_H */
