/*  fingerprint - see fingerprint.h */
#include "artifact/fingerprint.h"
#include "base/file.h"     /* defines: lmp_map_release_pages */
#include "model/model.h"   /* defines: struct lmp_model, struct lmp_tensor */

#include <assert.h>
#include <string.h>

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
