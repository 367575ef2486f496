/*  fingerprint - the fingerprints an artifact is keyed by
 *
 *  An artifact remembers which model, which calibration data and which settings
 *  produced it, so that a resumed run can refuse to mix layers from two different
 *  jobs. A fingerprint is the 64-bit xxHash (XXH64, seed 0) of a canonical byte
 *  stream: fixed-width little-endian fields, never a struct image (no padding).
 *
 *  The hash is XXH64 (base/hash.h).
 */
#ifndef LMP_ARTIFACT_FINGERPRINT_H
#define LMP_ARTIFACT_FINGERPRINT_H

#include <stddef.h>
#include <stdint.h>
#include "base/hash.h"   /* defines: struct lmp_xxh64 */

struct lmp_model;

/* Fingerprint of a model: its config (every field of struct lmp_config) and, for
 * every tensor in m->tensors in order, its name, dtype, shape and the raw source
 * bytes (as stored: a Q4_1 tensor is hashed as Q4_1 blocks). Reads the mapped data
 * once; ~90 MB of SmolLM2-135M Q4_1 takes a few tens of ms when cached. */
uint64_t lmp_fingerprint_model(const struct lmp_model *m);

/* Fingerprint of calibration data: the token ids (as little-endian int32) and a
 * settings string (e.g. "wikitext2 seq=2048 n=128 seed=0"); settings may be NULL. */
uint64_t lmp_fingerprint_calib(const int32_t *ids, int64_t n_ids, const char *settings);

#endif /* LMP_ARTIFACT_FINGERPRINT_H */
