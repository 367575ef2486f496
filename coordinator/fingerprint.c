/*  fingerprint - see fingerprint.h
 *
 *  XXH64 as specified in xxHash's doc/xxhash_spec.md: four 64-bit lanes over
 *  32-byte stripes, a merge of the lanes, then the tail in 8-, 4- and 1-byte steps
 *  and a final avalanche. Input words are read little-endian.
 */
#include "coordinator/fingerprint.h"
#include "proto/file.h"              /* defines: lmp_map_release_pages */
#include "worker/model/model.h"     /* defines: struct lmp_model, struct lmp_tensor */

#include <assert.h>
#include <string.h>

#define P1 0x9E3779B185EBCA87ull
#define P2 0xC2B2AE3D27D4EB4Full
#define P3 0x165667B19E3779F9ull
#define P4 0x85EBCA77C2B2AE63ull
#define P5 0x27D4EB2F165667C5ull

static inline uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

static inline uint64_t rd64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];    /* little-endian, any host */
    return v;
}

static inline uint32_t rd32(const uint8_t *p) {
    return (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16 | (uint32_t) p[3] << 24;
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
        s->n_buf += (uint32_t) len;
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
    uint64_t v[4] = {s->v[0], s->v[1], s->v[2], s->v[3]};   /* locals: the compiler keeps them in registers */
    for (; len >= 32; p += 32, len -= 32) stripe(v, p);
    memcpy(s->v, v, sizeof(v));
    if (len) memcpy(s->buf, p, len);
    s->n_buf = (uint32_t) len;
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
    uint32_t n = s->n_buf;
    for (; n >= 8; p += 8, n -= 8) {
        h ^= round64(0, rd64(p));
        h = rotl(h, 27) * P1 + P4;
    }
    if (n >= 4) {
        h ^= (uint64_t) rd32(p) * P1;
        h = rotl(h, 23) * P2 + P3;
        p += 4;
        n -= 4;
    }
    for (; n > 0; p++, n--) {
        h ^= (uint64_t) *p * P5;
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
    for (int i = 0; i < 8; i++) b[i] = (uint8_t) (v >> (8 * i));
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

uint64_t lmp_fingerprint_model(const struct lmp_model *m) {
    assert(m);
    const struct lmp_config *c = &m->cfg;
    struct lmp_xxh64 s;
    lmp_xxh64_init(&s, 0);
    lmp_xxh64_str(&s, "lmpress-model-v1");     /* domain separation, and a version to bump */
    const int64_t ints[] = {c->arch, c->format, c->n_layers, c->dim, c->hidden_dim, c->n_heads,
                            c->n_kv_heads, c->head_dim, c->vocab_size, c->max_seq, c->rope,
                            c->tied_embeddings, c->qkv_bias, c->sliding_window};
    for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) lmp_xxh64_u64(&s, (uint64_t) ints[i]);
    lmp_xxh64_f64(&s, c->rope_theta);
    lmp_xxh64_f64(&s, c->norm_eps);
    lmp_xxh64_u64(&s, (uint64_t) m->n_tensors);
    for (int64_t i = 0; i < m->n_tensors; i++) {
        const struct lmp_tensor *t = &m->tensors[i];
        lmp_xxh64_str(&s, t->name);
        lmp_xxh64_u64(&s, (uint64_t) t->dtype);
        lmp_xxh64_u64(&s, (uint64_t) t->n_dims);
        for (int d = 0; d < t->n_dims; d++) lmp_xxh64_u64(&s, (uint64_t) t->shape[d]);
        lmp_xxh64_u64(&s, t->nbytes);
        if (t->data && t->nbytes) {
            lmp_xxh64_update(&s, t->data, (size_t) t->nbytes);
            /* hashing pages a mapped file in: give them back, or the whole model stays
             * resident (memory is bounded by one block, not the model; no-op outside maps) */
            lmp_map_release_pages(t->data, (size_t) t->nbytes);
        }
    }
    return lmp_xxh64_digest(&s);
}

uint64_t lmp_fingerprint_calib(const int32_t *ids, int64_t n_ids, const char *settings) {
    struct lmp_xxh64 s;
    lmp_xxh64_init(&s, 0);
    lmp_xxh64_str(&s, "lmpress-calib-v1");
    lmp_xxh64_str(&s, settings);
    lmp_xxh64_u64(&s, (uint64_t) n_ids);
    uint8_t buf[4096];
    size_t  k = 0;
    for (int64_t i = 0; i < n_ids; i++) {          /* little-endian int32 whatever the host */
        uint32_t u = (uint32_t) ids[i];
        buf[k++] = (uint8_t) u; buf[k++] = (uint8_t) (u >> 8);
        buf[k++] = (uint8_t) (u >> 16); buf[k++] = (uint8_t) (u >> 24);
        if (k == sizeof(buf)) { lmp_xxh64_update(&s, buf, k); k = 0; }
    }
    lmp_xxh64_update(&s, buf, k);
    return lmp_xxh64_digest(&s);
}
