/*  job_check - the checks of a compression job against its model, before any work
 *
 *  What can be known from the model's description and the job's options alone is
 *  checked here, once, by `lmpress compress` before it starts its coordinator and by the
 *  coordinator's planner before it opens the artifact, so that a job that cannot succeed
 *  fails in one line, before any calibration, and leaves no ART.h5.parts/ behind:
 *    - every --keep pattern matches at least one linear layer (a typo would otherwise
 *      quantize what it meant to keep);
 *    - the scheme fits every linear that is not kept (its group size divides n_in);
 *    - the calibration text file (AQLM with --calib FILE) can be opened for reading and
 *      is not empty.
 *  Every refusal is an "input rejected" status (exit code 4 from the CLI).
 */
#ifndef LMP_COORDINATOR_JOB_CHECK_H
#define LMP_COORDINATOR_JOB_CHECK_H

#include "base/status.h"     /* defines: enum lmp_status, struct lmp_err */
#include "model/model.h"     /* defines: struct lmp_model */
#include "proto/wire.h"      /* defines: Lmp__JobSpec */
#include "worker/compress.h" /* defines: struct lmp_compress_spec */

/* The checks of a JobSpec that need no model, whoever hands it over: a client's JobSubmit
 * gets them on the wire (lmp_wire_validate); the coordinator's own state file (DIR/job.pb,
 * read back by lmp_coord_new) and every plan (coord_plan_job) get the same ones here, so
 * no spec reaches the planner unchecked. from names the spec's source in the message
 * (escaped). RET LMP_OK, or LMP_EPROTO with one line. */
enum lmp_status lmp_job_spec_check(const Lmp__JobSpec *spec, const char *from, struct lmp_err *err);

/* Check the job (see the file comment) on m: keep (n_keep glob patterns, borrowed), spec
 * (method and scheme), calib_path (the calibration text file, or NULL when the job reads
 * none: RTN, --calib generate), train (block fine-tuning or PV-Tuning asked: they need the
 * block backward, which runs the llama block only; without them the artifact stores any
 * block the forward pass runs, format 3). The first problem found is the message, one line
 * naming the pattern, the layer, the file or the model's feature.
 * RET LMP_OK; LMP_EINVAL (a --keep pattern that matches nothing, a scheme that does not
 * fit a layer), LMP_ENOENT (the calibration file cannot be opened: missing, unreadable, a
 * directory), LMP_EFORMAT (the calibration file is empty), LMP_EUNSUP (training a block the
 * backward lacks). A GGUF rope_freqs tensor is stored in the artifact (format 3). */
enum lmp_status lmp_job_check(const struct lmp_model *m, const struct lmp_compress_spec *spec,
                              const char *const *keep, int n_keep, const char *calib_path,
                              bool train, struct lmp_err *err);

#endif /* LMP_COORDINATOR_JOB_CHECK_H */
