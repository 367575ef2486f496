/*  plan - the one planner of a compression job: JobSpec -> the coordinator's job
 *
 *  Every compression runs on the coordinator (`lmpress compress` embeds one), and this is
 *  where its job is planned: the model opened, the linears to quantize (the --keep globs,
 *  every scheme checked before any long work), the calibration sequences (windows of the
 *  text file, or sequences the model writes itself for --calib generate), their slices,
 *  the job's settings worded for the artifact and the resume fingerprint (the one place
 *  that words them), and the artifact opened or resumed (committed layers are done).
 *  Only coordinator/coord*.c include it.
 */
#ifndef LMP_COORDINATOR_PLAN_H
#define LMP_COORDINATOR_PLAN_H

#include "coordinator/coord_internal.h" /* defines: struct job */
#include "base/status.h"                /* defines: enum lmp_status, struct lmp_err */
#include "proto/lmpress.pb-c.h"         /* defines: Lmp__JobSpec */

/* Plan spec into J (zeroed, its aj initialised, by the caller): J->spec (a copy), model,
 * quantized, tasks (committed ones DONE), aj, tokens, slices, cblocks, need_block (all
 * false), artifact. Not filled: the fine-tuning state, the job id and times. On error J
 * may be partly filled; the caller destroys it. RET LMP_OK, LMP_EINVAL (bad mode, a scheme
 * that does not fit a layer, bad calibration sizes), LMP_EMISMATCH (the artifact belongs
 * to another job), LMP_ENOENT / LMP_EIO (model, tokenizer, calibration file), LMP_ENOMEM. */
enum lmp_status coord_plan_job(struct job *J, const Lmp__JobSpec *spec, struct lmp_err *err);

/* The bits the token embedding (head false) or an untied lm head (head true) of spec's job
 * are stored at: 16 (the source's precision), 8 (Q8_0) or 4 (Q4_1); JobSpec 0 = the
 * default (16; the head: as the embedding). Values were checked by coord_plan_job. */
int coord_spec_embed_bits(const Lmp__JobSpec *spec, bool head);

/* A copy of spec (free with lmp__job_spec__free_unpacked), NULL when out of memory. */
Lmp__JobSpec *coord_spec_copy(const Lmp__JobSpec *spec);

#endif /* LMP_COORDINATOR_PLAN_H */
