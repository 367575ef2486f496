/*  checkpoint - a set of named arrays written to one file atomically, read back verified
 *
 *  Long stages (PV-Tuning, coordinator/tune.c) save their whole state every so often so a
 *  killed process, or a Slurm requeue, resumes from the last save. A checkpoint is one
 *  HDF5 file: one 1-D dataset per array (float32, uint16 or int64, named as given), each
 *  with its xxh64 as an attribute, and a root attribute "key" (the caller's fingerprint of
 *  what the state belongs to). It is written to PATH.tmp, fsync'ed, renamed over PATH
 *  and the directory fsync'ed: a kill at any instant leaves the previous checkpoint or
 *  the new one, whole. Reading checks the key, every array's name, type and length
 *  against what the caller expects, and every checksum, before anything is used.
 */
#ifndef LMP_ARTIFACT_CHECKPOINT_H
#define LMP_ARTIFACT_CHECKPOINT_H

#include <stdint.h>
#include "base/status.h" /* defines: enum lmp_status, struct lmp_err */

enum lmp_ckpt_type { LMP_CKPT_F32, LMP_CKPT_U16, LMP_CKPT_I64 };

struct lmp_ckpt_array {
    const char        *name; /* dataset name: [A-Za-z0-9._-], at most 120 characters */
    enum lmp_ckpt_type type;
    void              *data; /* n elements; read fills it */
    int64_t            n;
};

/* Write arrays (borrowed) and key to path atomically (see the file comment). RET LMP_OK,
 * LMP_EINVAL (a bad name), LMP_ENOSPC (the disk is full: the previous checkpoint stays),
 * LMP_EIO. */
enum lmp_status lmp_ckpt_write(const char *path, uint64_t key, const struct lmp_ckpt_array *arrays,
                               int n, struct lmp_err *err);

/* Read path into arrays (data buffers owned by the caller, n elements each). RET LMP_OK;
 * LMP_ENOENT (no checkpoint); LMP_EMISMATCH (another key: the state belongs to other
 * settings); LMP_EFORMAT (not a checkpoint, a missing or extra array, another type or
 * length, a checksum that does not match); LMP_EIO. On an error the buffers may be partly
 * overwritten. */
enum lmp_status lmp_ckpt_read(const char *path, uint64_t key, const struct lmp_ckpt_array *arrays,
                              int n, struct lmp_err *err);

#endif /* LMP_ARTIFACT_CHECKPOINT_H */
