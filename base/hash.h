/*  hash - xxHash64 (XXH64), streaming and one-shot
 *
 *  Why XXH64: it is a well-specified, widely implemented non-cryptographic hash
 *  (python-xxhash, xxhsum, the C reference all agree on the same values), it runs
 *  at memory speed (~10 GB/s on one core), and 64 bits make an accidental collision
 *  between two inputs negligible. Tampering is not in the threat model. The ~100 lines
 *  in hash.c are written from the public specification (xxhash.h / doc/xxhash_spec.md)
 *  and pinned by its test vectors, which avoids a new build dependency (Debian ships
 *  only the runtime libxxhash0 by default, not libxxhash-dev).
 *
 *  The streaming state is a plain struct: init, update any number of times, digest.
 *  All functions are thread-safe on distinct states.
 */
#ifndef LMP_BASE_HASH_H
#define LMP_BASE_HASH_H

#include <stddef.h>
#include <stdint.h>

struct lmp_xxh64 {
    uint64_t v[4];    /* the four lane accumulators */
    uint64_t total;   /* bytes consumed so far */
    uint8_t  buf[32]; /* a pending partial stripe */
    uint32_t n_buf;   /* bytes in buf */
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
void lmp_xxh64_str(struct lmp_xxh64 *s, const char *str); /* length first, then bytes */

#endif /* LMP_BASE_HASH_H */
