/*  hash - see hash.h
 *
 *  XXH64 as specified in xxHash's doc/xxhash_spec.md: four 64-bit lanes over
 *  32-byte stripes, a merge of the lanes, then the tail in 8-, 4- and 1-byte steps
 *  and a final avalanche. Input words are read little-endian.
 */
#include "base/hash.h"

#include <assert.h>
#include <string.h>

#define P1 0x9E3779B185EBCA87ull
#define P2 0xC2B2AE3D27D4EB4Full
#define P3 0x165667B19E3779F9ull
#define P4 0x85EBCA77C2B2AE63ull
#define P5 0x27D4EB2F165667C5ull

static inline uint64_t rotl(uint64_t x, int r) {
    return (x << r) | (x >> (64 - r));
}

static inline uint64_t rd64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i]; /* little-endian, any host */
    return v;
}

static inline uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t round64(uint64_t acc, uint64_t lane) {
    acc += lane * P2;
    acc = rotl(acc, 31);
    return acc * P1;
}

static inline uint64_t merge64(uint64_t h, uint64_t v) {
    h ^= round64(0, v);
    return h * P1 + P4;
}

void lmp_xxh64_init(struct lmp_xxh64 *s, uint64_t seed) {
    memset(s, 0, sizeof(*s));
    s->seed = seed;
    s->v[0] = seed + P1 + P2;
    s->v[1] = seed + P2;
    s->v[2] = seed;
    s->v[3] = seed - P1;
}

static void stripe(uint64_t v[4], const uint8_t *p) {
    v[0] = round64(v[0], rd64(p));
    v[1] = round64(v[1], rd64(p + 8));
    v[2] = round64(v[2], rd64(p + 16));
    v[3] = round64(v[3], rd64(p + 24));
}

void lmp_xxh64_update(struct lmp_xxh64 *s, const void *data, size_t len) {
    const uint8_t *p = data;
    s->total += len;
    if (s->n_buf + len < 32) {
        if (len) memcpy(s->buf + s->n_buf, p, len);
        s->n_buf += (uint32_t)len;
        return;
    }
    if (s->n_buf) {
        size_t take = 32 - s->n_buf;
        memcpy(s->buf + s->n_buf, p, take);
        stripe(s->v, s->buf);
        p += take;
        len -= take;
        s->n_buf = 0;
    }
    uint64_t v[4] = {s->v[0], s->v[1], s->v[2],
                     s->v[3]}; /* locals: the compiler keeps them in registers */
    for (; len >= 32; p += 32, len -= 32) stripe(v, p);
    memcpy(s->v, v, sizeof(v));
    if (len) memcpy(s->buf, p, len);
    s->n_buf = (uint32_t)len;
}

uint64_t lmp_xxh64_digest(const struct lmp_xxh64 *s) {
    uint64_t h;
    if (s->total >= 32) {
        h = rotl(s->v[0], 1) + rotl(s->v[1], 7) + rotl(s->v[2], 12) + rotl(s->v[3], 18);
        for (int i = 0; i < 4; i++) h = merge64(h, s->v[i]);
    } else {
        h = s->seed + P5;
    }
    h += s->total;
    const uint8_t *p = s->buf;
    uint32_t       n = s->n_buf;
    for (; n >= 8; p += 8, n -= 8) {
        h ^= round64(0, rd64(p));
        h = rotl(h, 27) * P1 + P4;
    }
    if (n >= 4) {
        h ^= (uint64_t)rd32(p) * P1;
        h = rotl(h, 23) * P2 + P3;
        p += 4;
        n -= 4;
    }
    for (; n > 0; p++, n--) {
        h ^= (uint64_t)*p * P5;
        h = rotl(h, 11) * P1;
    }
    h ^= h >> 33;
    h *= P2;
    h ^= h >> 29;
    h *= P3;
    h ^= h >> 32;
    return h;
}

uint64_t lmp_xxh64(const void *data, size_t len, uint64_t seed) {
    struct lmp_xxh64 s;
    lmp_xxh64_init(&s, seed);
    lmp_xxh64_update(&s, data, len);
    return lmp_xxh64_digest(&s);
}

void lmp_xxh64_u64(struct lmp_xxh64 *s, uint64_t v) {
    uint8_t b[8];
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(v >> (8 * i));
    lmp_xxh64_update(s, b, 8);
}

void lmp_xxh64_f64(struct lmp_xxh64 *s, double v) {
    uint64_t u;
    memcpy(&u, &v, sizeof(u));
    lmp_xxh64_u64(s, u);
}

void lmp_xxh64_str(struct lmp_xxh64 *s, const char *str) {
    size_t n = str ? strlen(str) : 0;
    lmp_xxh64_u64(s, n);
    if (n) lmp_xxh64_update(s, str, n);
}
