/*  fingerprint - see fingerprint.h */
#include "artifact/fingerprint.h"
#include "base/file.h"   /* defines: lmp_map_release_pages */
#include "model/model.h" /* defines: struct lmp_model, struct lmp_tensor */

#include <assert.h>
#include <string.h>

uint64_t lmp_fingerprint_model(const struct lmp_model *m) {
    assert(m);
    const struct lmp_config *c = &m->cfg;
    struct lmp_xxh64         s;
    lmp_xxh64_init(&s, 0);
    lmp_xxh64_str(&s, "lmpress-model-v1"); /* domain separation, and a version to bump */
    const int64_t ints[] = {c->arch,       c->format,        c->n_layers,   c->dim,
                            c->hidden_dim, c->n_heads,       c->n_kv_heads, c->head_dim,
                            c->vocab_size, c->max_seq,       c->rope,       c->tied_embeddings,
                            c->qkv_bias,   c->sliding_window};
    for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++)
        lmp_xxh64_u64(&s, (uint64_t)ints[i]);
    lmp_xxh64_f64(&s, c->rope_theta);
    lmp_xxh64_f64(&s, c->norm_eps);
    lmp_xxh64_u64(&s, (uint64_t)m->n_tensors);
    for (int64_t i = 0; i < m->n_tensors; i++) {
        const struct lmp_tensor *t = &m->tensors[i];
        lmp_xxh64_str(&s, t->name);
        lmp_xxh64_u64(&s, (uint64_t)t->dtype);
        lmp_xxh64_u64(&s, (uint64_t)t->n_dims);
        for (int d = 0; d < t->n_dims; d++) lmp_xxh64_u64(&s, (uint64_t)t->shape[d]);
        lmp_xxh64_u64(&s, t->nbytes);
        if (t->data && t->nbytes) {
            lmp_xxh64_update(&s, t->data, (size_t)t->nbytes);
            /* hashing pages a mapped file in: give them back, or the whole model stays
             * resident (memory is bounded by one block, not the model; no-op outside maps) */
            lmp_map_release_pages(t->data, (size_t)t->nbytes);
        }
    }
    return lmp_xxh64_digest(&s);
}

/* ---- job settings ---------------------------------------------------------------- */

enum { TAG_STR = 1, TAG_I64, TAG_F64, TAG_LIST };

void lmp_fp_settings_init(struct lmp_fp_settings *s) {
    assert(s);
    lmp_xxh64_init(&s->h, 0);
    lmp_xxh64_str(&s->h, "lmpress-settings-v2");
    lmp_strbuf_init(&s->desc);
}

void lmp_fp_settings_release(struct lmp_fp_settings *s) {
    if (s) lmp_strbuf_release(&s->desc);
}

static void field(struct lmp_fp_settings *s, const char *key, uint64_t tag) {
    lmp_xxh64_str(&s->h, key);
    lmp_xxh64_u64(&s->h, tag);
    lmp_strbuf_printf(&s->desc, "%s%s=", s->desc.len ? " " : "", key);
}

void lmp_fp_settings_str(struct lmp_fp_settings *s, const char *key, const char *v) {
    assert(s && key);
    field(s, key, TAG_STR);
    lmp_xxh64_str(&s->h, v ? v : "");
    lmp_strbuf_printf(&s->desc, "%s", v ? v : "");
}

void lmp_fp_settings_i64(struct lmp_fp_settings *s, const char *key, int64_t v) {
    assert(s && key);
    field(s, key, TAG_I64);
    lmp_xxh64_u64(&s->h, (uint64_t)v);
    lmp_strbuf_printf(&s->desc, "%lld", (long long)v);
}

void lmp_fp_settings_f64(struct lmp_fp_settings *s, const char *key, double v) {
    assert(s && key);
    field(s, key, TAG_F64);
    lmp_xxh64_f64(&s->h, v);
    lmp_strbuf_printf(&s->desc, "%.9g", v);
}

void lmp_fp_settings_list(struct lmp_fp_settings *s, const char *key, const char *const *v,
                          size_t n) {
    assert(s && key && (v || n == 0));
    field(s, key, TAG_LIST);
    lmp_xxh64_u64(&s->h, (uint64_t)n);
    lmp_strbuf_append(&s->desc, "[", 1);
    for (size_t i = 0; i < n; i++) {
        lmp_xxh64_str(&s->h, v[i] ? v[i] : "");
        lmp_strbuf_printf(&s->desc, "%s%s", i ? "," : "", v[i] ? v[i] : "");
    }
    lmp_strbuf_append(&s->desc, "]", 1);
}

void lmp_fp_settings_note(struct lmp_fp_settings *s, const char *key, const char *v) {
    assert(s && key);
    lmp_strbuf_printf(&s->desc, "%s%s=%s", s->desc.len ? " " : "", key, v ? v : "");
}

uint64_t lmp_fp_settings_digest(const struct lmp_fp_settings *s) {
    assert(s);
    return lmp_xxh64_digest(&s->h);
}

uint64_t lmp_fingerprint_job(const int32_t *ids, int64_t n_ids, uint64_t settings) {
    assert(ids || n_ids == 0);
    struct lmp_xxh64 s;
    lmp_xxh64_init(&s, 0);
    lmp_xxh64_str(&s, "lmpress-job-v2");
    lmp_xxh64_u64(&s, settings);
    lmp_xxh64_u64(&s, (uint64_t)n_ids);
    uint8_t buf[4096];
    size_t  k = 0;
    for (int64_t i = 0; i < n_ids; i++) { /* little-endian int32 whatever the host */
        uint32_t u = (uint32_t)ids[i];
        buf[k++]   = (uint8_t)u;
        buf[k++]   = (uint8_t)(u >> 8);
        buf[k++]   = (uint8_t)(u >> 16);
        buf[k++]   = (uint8_t)(u >> 24);
        if (k == sizeof(buf)) {
            lmp_xxh64_update(&s, buf, k);
            k = 0;
        }
    }
    lmp_xxh64_update(&s, buf, k);
    return lmp_xxh64_digest(&s);
}
