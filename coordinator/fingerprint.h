/*  fingerprint - xxHash64 and the fingerprints an artifact is keyed by
 *
 *  An artifact remembers which model, which calibration data and which settings
 *  produced it, so that a resumed run can refuse to mix layers from two different
 *  jobs. A fingerprint is the 64-bit xxHash (XXH64, seed 0) of a canonical byte
 *  stream: fixed-width little-endian fields, never a struct image (no padding).
 *
 *  Why XXH64: it is a well-specified, widely implemented non-cryptographic hash
 *  (python-xxhash, xxhsum, the C reference all agree on the same values), it runs
 *  at memory speed (~10 GB/s on one core, so a 135M-parameter model hashes in tens
 *  of milliseconds once paged in), and 64 bits make an accidental collision between
 *  two jobs negligible. Tampering is not in the threat model. The ~100 lines here
 *  are written from the public specification (xxhash.h / doc/xxhash_spec.md) and
 *  pinned by its test vectors, which avoids a new build dependency (Debian ships
 *  only the runtime libxxhash0 by default, not libxxhash-dev).
 *
 *  The streaming state is a plain struct: init, update any number of times, digest.
 *  All functions are thread-safe on distinct states.
 */
#ifndef LMP_COORDINATOR_FINGERPRINT_H
#define LMP_COORDINATOR_FINGERPRINT_H

#include <stddef.h>
#include <stdint.h>

struct lmp_model;

struct lmp_xxh64 {
    uint64_t v[4];          /* the four lane accumulators */
    uint64_t total;         /* bytes consumed so far */
    uint8_t  buf[32];       /* a pending partial stripe */
    uint32_t n_buf;         /* bytes in buf */
    uint64_t seed;
};

void     lmp_xxh64_init(struct lmp_xxh64 *s, uint64_t seed);
void     lmp_xxh64_update(struct lmp_xxh64 *s, const void *data, size_t len);
uint64_t lmp_xxh64_digest(const struct lmp_xxh64 *s);
/* One-shot: equal to init + update + digest. */
uint64_t lmp_xxh64(const void *data, size_t len, uint64_t seed);

/* Helpers that feed fixed-width little-endian values (canonical streams). */
void lmp_xxh64_u64(struct lmp_xxh64 *s, uint64_t v);
void lmp_xxh64_f64(struct lmp_xxh64 *s, double v);
void lmp_xxh64_str(struct lmp_xxh64 *s, const char *str);   /* length first, then bytes */

/* Fingerprint of a model: its config (every field of struct lmp_config) and, for
 * every tensor in m->tensors in order, its name, dtype, shape and the raw source
 * bytes (as stored: a Q4_1 tensor is hashed as Q4_1 blocks). Reads the mapped data
 * once; ~90 MB of SmolLM2-135M Q4_1 takes a few tens of ms when cached. */
uint64_t lmp_fingerprint_model(const struct lmp_model *m);

/* Fingerprint of calibration data: the token ids (as little-endian int32) and a
 * settings string (e.g. "wikitext2 seq=2048 n=128 seed=0"); settings may be NULL. */
uint64_t lmp_fingerprint_calib(const int32_t *ids, int64_t n_ids, const char *settings);

#endif /* LMP_COORDINATOR_FINGERPRINT_H */
