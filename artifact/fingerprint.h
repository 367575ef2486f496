/*  fingerprint - the fingerprints an artifact is keyed by
 *
 *  An artifact remembers which model, which calibration data and which settings
 *  produced it, so that a resumed run can refuse to mix layers from two different
 *  jobs. A fingerprint is the 64-bit xxHash (XXH64, seed 0) of a canonical byte
 *  stream: fixed-width little-endian fields, never a struct image (no padding), and
 *  never a formatted string that could be cut or read two ways.
 *
 *  The job's settings are fed field by field into a struct lmp_fp_settings, which keeps
 *  two views of the same fields: the digest (each field as its key, a type tag and its
 *  value: strings whole, length first) and the words of the artifact's description
 *  ("key=value ..."). The planner (coordinator/plan.c) is the one caller that decides
 *  which settings are fed; docs/artifact.md, "Fingerprints", lists them and those left
 *  out on purpose.
 *
 *  The hash is XXH64 (base/hash.h).
 */
#ifndef LMP_ARTIFACT_FINGERPRINT_H
#define LMP_ARTIFACT_FINGERPRINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "base/hash.h" /* defines: struct lmp_xxh64 */
#include "base/text.h" /* defines: struct lmp_strbuf */

struct lmp_model;

/* Fingerprint of a model: its config (every field of struct lmp_config) and, for
 * every tensor in m->tensors in order, its name, dtype, shape and the raw source
 * bytes (as stored: a Q4_1 tensor is hashed as Q4_1 blocks). Reads the mapped data
 * once; ~90 MB of SmolLM2-135M Q4_1 takes a few tens of ms when cached. */
uint64_t lmp_fingerprint_model(const struct lmp_model *m);

/* A job's settings, field by field (see the file comment). Not thread-safe. */
struct lmp_fp_settings {
    struct lmp_xxh64  h;    /* the digest so far */
    struct lmp_strbuf desc; /* the words so far */
};
/* Start (the digest begins with the settings format, "lmpress-settings-v2"). */
void lmp_fp_settings_init(struct lmp_fp_settings *s);
void lmp_fp_settings_release(struct lmp_fp_settings *s);
/* One setting: into the digest and the words. key is a plain word ("nsamples"). */
void lmp_fp_settings_str(struct lmp_fp_settings *s, const char *key, const char *v);
void lmp_fp_settings_i64(struct lmp_fp_settings *s, const char *key, int64_t v);
void lmp_fp_settings_f64(struct lmp_fp_settings *s, const char *key, double v);
/* A list of strings (the --keep patterns): their count, then each whole; in words
 * "key=[a,b]". */
void lmp_fp_settings_list(struct lmp_fp_settings *s, const char *key, const char *const *v,
                          size_t n);
/* Words only, not in the digest: what is fingerprinted another way (the calibration
 * file's name: its tokens are hashed). */
void lmp_fp_settings_note(struct lmp_fp_settings *s, const char *key, const char *v);
/* The digest of the settings fed so far. */
uint64_t lmp_fp_settings_digest(const struct lmp_fp_settings *s);

/* Fingerprint of a job's data and settings (the artifact's calib_fingerprint): the
 * calibration token ids as little-endian int32 (ids may be NULL when n_ids is 0: RTN)
 * and the settings digest (lmp_fp_settings_digest). */
uint64_t lmp_fingerprint_job(const int32_t *ids, int64_t n_ids, uint64_t settings);

#endif /* LMP_ARTIFACT_FINGERPRINT_H */
