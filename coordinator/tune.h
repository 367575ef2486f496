/*  tune - the PV-Tuning job: an AQLM artifact and its original model in, a tuned artifact
 *  out, resumable from checkpoints
 *
 *  `lmpress tune` and `lmpress compress --pv` run this (docs/pv-tuning.md):
 *
 *      open ART.h5 (complete, AQLM) -> the student (worker/model_grad.h weights, the AQ
 *          layers' codes, codebooks and scales); open the original model -> the teacher,
 *          refused unless its fingerprint is the one ART.h5 was made from
 *      tokenize the tuning text with the artifact's tokenizer -> windows of ctx tokens; the
 *          last val_windows are held out (KL and agreement before and after, never trained on)
 *      resume OUT.tune/checkpoint.h5 when it exists and its key matches these settings
 *      steps of worker/tune.h; a checkpoint every ckpt_seconds (and on SIGTERM / cancel,
 *          at the step boundary the run stopped at)
 *      write OUT.h5 through the artifact writer (crash-safe parts, resumable): the job of
 *          ART.h5 with its calibration fingerprint extended by the tuning key, every AQ
 *          layer with tuned codes, codebooks and scales, every other layer and tensor as in
 *          ART.h5 but the tuned norms, the tokenizer, events; finalize; remove OUT.tune/
 *
 *  The key of a checkpoint (and of OUT.h5's job) covers the input artifact (model and
 *  calibration fingerprints), the tuning tokens, ctx and every setting that changes the
 *  result, and the build; it leaves out the number of steps (a finished run can be
 *  extended by asking for more) and the checkpoint interval. One process, or one set of
 *  data-parallel ranks (opts.comm: every rank runs this call; rank 0 alone writes the
 *  checkpoints and the artifact, all read), runs a tuning job (an flock on OUT.tune/LOCK
 *  refuses a second one).
 */
#ifndef LMP_COORDINATOR_TUNE_H
#define LMP_COORDINATOR_TUNE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include "base/status.h"        /* defines: enum lmp_status, struct lmp_err */
#include "proto/lmpress.pb-c.h" /* defines: Lmp__TuneSpec */
#include "worker/tune.h"        /* defines: struct lmp_tune_opts, struct lmp_tune_step_stats */

/* --data generate without --max-windows: at most this many windows the steps take (then
 * they cycle), plus --val-windows. */
enum { LMP_TUNE_GEN_WINDOWS = 512 };

struct lmp_tune_job {
    const char *artifact;    /* the AQLM artifact to tune */
    const char *model;       /* the original model (teacher) */
    const char *data;        /* tuning text, or "generate": windows the original model
                                writes (worker/calib.h lmp_calib_generate_part) */
    const char *out;         /* the tuned artifact */
    int64_t     ctx;         /* tokens per window (0: min(512, the model's)) */
    int64_t     max_windows; /* windows of the text used (0: all) */
    int64_t     val_windows; /* held out at the end of the text (default 2) */
    int64_t     steps;       /* optimizer steps in total */
    int         max_blocks;  /* sparse tuning: only this many blocks, the ones a probe
                                scores highest (lmp_tune_probe); 0: every block */
    double ckpt_seconds;     /* <= 0: only at the end, on a stop and every step
                                when LMP_TUNE_CKPT_EVERY_STEP is set (tests) */
    int n_threads;
    int stages; /* pipeline stages per replica of a cluster job (TuneSpec.stages; 0 or 1:
                   none); under MPI, opts.pipe says how the ranks run */
    struct lmp_tune_opts opts;
    /* observer: called after each step (may be NULL) */
    void (*progress)(void *ctx, const struct lmp_tune_step_stats *s, int64_t n_steps);
    void *progress_ctx;
    /* one-line notices for the user (resumed from a checkpoint, stopped and saved); may be
     * NULL: then they go to the log at info level */
    void (*notice)(void *ctx, const char *line);
};
void lmp_tune_job_init(struct lmp_tune_job *j);

struct lmp_tune_result {
    int64_t steps_done, resumed_at; /* resumed_at: the checkpoint's step (0: a fresh start) */
    int64_t n_windows, n_tokens;    /* training windows and their tokens */
    double  val_kl_before, val_agree_before, val_kl_after, val_agree_after; /* NaN: none */
    int64_t codes_changed; /* groups re-encoded with new codes, over this run */
    double  seconds_tuning, tokens_per_s;
    double  seconds_sum, seconds_pv; /* of seconds_tuning: the ranks' gradient sums; the P/V
                                        steps and their exchange (lmp_tune_step_stats) */
};

/* A tuning job as a cluster job (`lmpress tune --connect`, the coordinator, its workers):
 * lmp_tune_spec_from_job writes j's settings into t, every default spelled out (strings
 * borrowed from j); lmp_tune_job_from_spec is the inverse (strings borrowed from t, model and
 * out). The same settings give the same checkpoint key and artifact either way. */
void lmp_tune_spec_from_job(Lmp__TuneSpec *t, const struct lmp_tune_job *j, uint32_t replicas);
void lmp_tune_job_from_spec(struct lmp_tune_job *j, const Lmp__TuneSpec *t, const char *model,
                            const char *out);

/* Run the job. RET LMP_OK; LMP_ENOENT / LMP_EFORMAT / LMP_EUNSUP (an input rejected:
 * not AQLM, incomplete), LMP_EMISMATCH (the model is not ART.h5's original, or a
 * checkpoint of other settings), LMP_ECANCEL (stopped; the state is checkpointed),
 * LMP_ENOSPC, LMP_EIO, LMP_ENOMEM. err names the file and problem. */
enum lmp_status lmp_tune_job_run(const struct lmp_tune_job *j, struct lmp_tune_result *r,
                                 struct lmp_err *err);

#endif /* LMP_COORDINATOR_TUNE_H */
