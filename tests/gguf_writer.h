/*  gguf_writer - builds small GGUF images in memory for tests and fuzz seeds
 *
 *  Calling sequence:
 *      struct gw w;  gw_init(&w);
 *      gw_kv_u32(&w, "llama.block_count", 2); ... (metadata in file order)
 *      gw_tensor(&w, "token_embd.weight", GW_Q8_0, 2, (uint64_t[]){64, 32}, data, nbytes);
 *      struct gw_buf img = gw_finish(&w, 3);   (caller frees img.p; w is released)
 *
 *  Tensor dims are given innermost first, as GGUF stores them. Data are copied; each
 *  tensor is placed at the next multiple of the alignment (gw.align, default 32; set
 *  gw.off_override[i] to force an offset). Not part of any library: test code only.
 */
#ifndef LMP_TESTS_GGUF_WRITER_H
#define LMP_TESTS_GGUF_WRITER_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    GW_F32    = 0,
    GW_F16    = 1,
    GW_Q4_0   = 2,
    GW_Q4_1   = 3,
    GW_Q5_0   = 6,
    GW_Q5_1   = 7,
    GW_Q8_0   = 8,
    GW_Q2_K   = 10,
    GW_Q3_K   = 11,
    GW_Q4_K   = 12,
    GW_Q5_K   = 13,
    GW_Q6_K   = 14,
    GW_IQ4_XS = 23, /* a type lmpress does not read (256 per 136 bytes) */
    GW_BF16   = 30
};
enum { GW_MAX_TENSORS = 128 };

struct gw_buf {
    uint8_t *p;
    size_t   n, cap;
};

struct gw {
    struct gw_buf kv; /* metadata entries, already encoded */
    uint64_t      n_kv;
    uint32_t      align; /* data alignment used for placement */
    int           n_t;
    struct {
        char     name[256];
        uint32_t n_dims, type;
        uint64_t ne[4];
        uint8_t *data;
        size_t   nbytes;
    } t[GW_MAX_TENSORS];
    uint64_t off_override[GW_MAX_TENSORS]; /* UINT64_MAX = computed */
};

static inline void gw_put(struct gw_buf *b, const void *x, size_t n) {
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n) cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (p == NULL) abort();
        b->p = p, b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, x, n);
    b->n += n;
}
static inline void gw_u8(struct gw_buf *b, uint8_t v) {
    gw_put(b, &v, 1);
}
static inline void gw_u16(struct gw_buf *b, uint16_t v) {
    uint8_t x[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    gw_put(b, x, 2);
}
static inline void gw_u32(struct gw_buf *b, uint32_t v) {
    gw_u16(b, (uint16_t)v);
    gw_u16(b, (uint16_t)(v >> 16));
}
static inline void gw_u64(struct gw_buf *b, uint64_t v) {
    gw_u32(b, (uint32_t)v);
    gw_u32(b, (uint32_t)(v >> 32));
}
static inline void gw_str(struct gw_buf *b, const char *s) {
    gw_u64(b, strlen(s));
    gw_put(b, s, strlen(s));
}

static inline void gw_init(struct gw *w) {
    memset(w, 0, sizeof(*w));
    w->align = 32;
    for (int i = 0; i < GW_MAX_TENSORS; i++) w->off_override[i] = UINT64_MAX;
}

/* Key and type; the caller appends the value to w->kv. */
static inline void gw_key(struct gw *w, const char *key, uint32_t type) {
    gw_str(&w->kv, key);
    gw_u32(&w->kv, type);
    w->n_kv++;
}
static inline void gw_kv_u8(struct gw *w, const char *k, uint8_t v) {
    gw_key(w, k, 0);
    gw_u8(&w->kv, v);
}
static inline void gw_kv_i8(struct gw *w, const char *k, int8_t v) {
    gw_key(w, k, 1);
    gw_u8(&w->kv, (uint8_t)v);
}
static inline void gw_kv_u16(struct gw *w, const char *k, uint16_t v) {
    gw_key(w, k, 2);
    gw_u16(&w->kv, v);
}
static inline void gw_kv_i16(struct gw *w, const char *k, int16_t v) {
    gw_key(w, k, 3);
    gw_u16(&w->kv, (uint16_t)v);
}
static inline void gw_kv_u32(struct gw *w, const char *k, uint32_t v) {
    gw_key(w, k, 4);
    gw_u32(&w->kv, v);
}
static inline void gw_kv_i32(struct gw *w, const char *k, int32_t v) {
    gw_key(w, k, 5);
    gw_u32(&w->kv, (uint32_t)v);
}
static inline void gw_kv_f32(struct gw *w, const char *k, float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    gw_key(w, k, 6);
    gw_u32(&w->kv, u);
}
static inline void gw_kv_bool(struct gw *w, const char *k, int v) {
    gw_key(w, k, 7);
    gw_u8(&w->kv, (uint8_t) !!v);
}
static inline void gw_kv_str(struct gw *w, const char *k, const char *v) {
    gw_key(w, k, 8);
    gw_str(&w->kv, v);
}
static inline void gw_kv_u64(struct gw *w, const char *k, uint64_t v) {
    gw_key(w, k, 10);
    gw_u64(&w->kv, v);
}
static inline void gw_kv_i64(struct gw *w, const char *k, int64_t v) {
    gw_key(w, k, 11);
    gw_u64(&w->kv, (uint64_t)v);
}
static inline void gw_kv_f64(struct gw *w, const char *k, double v) {
    uint64_t u;
    memcpy(&u, &v, 8);
    gw_key(w, k, 12);
    gw_u64(&w->kv, u);
}
static inline void gw_kv_arr_i32(struct gw *w, const char *k, const int32_t *v, uint64_t n) {
    gw_key(w, k, 9);
    gw_u32(&w->kv, 5);
    gw_u64(&w->kv, n);
    for (uint64_t i = 0; i < n; i++) gw_u32(&w->kv, (uint32_t)v[i]);
}
static inline void gw_kv_arr_f32(struct gw *w, const char *k, const float *v, uint64_t n) {
    gw_key(w, k, 9);
    gw_u32(&w->kv, 6);
    gw_u64(&w->kv, n);
    for (uint64_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        gw_u32(&w->kv, u);
    }
}
static inline void gw_kv_arr_str(struct gw *w, const char *k, const char *const *v, uint64_t n) {
    gw_key(w, k, 9);
    gw_u32(&w->kv, 8);
    gw_u64(&w->kv, n);
    for (uint64_t i = 0; i < n; i++) gw_str(&w->kv, v[i]);
}

static inline void gw_tensor(struct gw *w, const char *name, uint32_t type, uint32_t n_dims,
                             const uint64_t *ne, const void *data, size_t nbytes) {
    if (w->n_t >= GW_MAX_TENSORS) abort();
    int i = w->n_t++;
    snprintf(w->t[i].name, sizeof(w->t[i].name), "%s", name);
    w->t[i].type = type, w->t[i].n_dims = n_dims;
    for (uint32_t d = 0; d < n_dims && d < 4; d++) w->t[i].ne[d] = ne[d];
    w->t[i].data = malloc(nbytes ? nbytes : 1);
    if (w->t[i].data == NULL) abort();
    if (nbytes) memcpy(w->t[i].data, data, nbytes);
    w->t[i].nbytes = nbytes;
}

/* The whole file image for `version` (counts as u64, v2/v3 layout); releases w. */
static inline struct gw_buf gw_finish(struct gw *w, uint32_t version) {
    struct gw_buf b = {0};
    gw_put(&b, "GGUF", 4);
    gw_u32(&b, version);
    gw_u64(&b, (uint64_t)w->n_t);
    gw_u64(&b, w->n_kv);
    gw_put(&b, w->kv.p, w->kv.n);
    uint64_t off[GW_MAX_TENSORS], next = 0;
    for (int i = 0; i < w->n_t; i++) {
        off[i] = w->off_override[i] != UINT64_MAX ? w->off_override[i] : next;
        next   = (off[i] + w->t[i].nbytes + w->align - 1) / w->align * w->align;
        gw_str(&b, w->t[i].name);
        gw_u32(&b, w->t[i].n_dims);
        for (uint32_t d = 0; d < w->t[i].n_dims; d++) gw_u64(&b, d < 4 ? w->t[i].ne[d] : 1);
        gw_u32(&b, w->t[i].type);
        gw_u64(&b, off[i]);
    }
    if (w->n_t > 0) {
        size_t base = (b.n + w->align - 1) / w->align * w->align;
        while (b.n < base) gw_u8(&b, 0);
        for (int i = 0; i < w->n_t; i++) {
            if (base + off[i] > b.n + (1u << 20)) continue; /* far out: leave it beyond EOF */
            while (b.n < base + off[i]) gw_u8(&b, 0);
            if (b.n == base + off[i]) gw_put(&b, w->t[i].data, w->t[i].nbytes);
        }
    }
    for (int i = 0; i < w->n_t; i++) free(w->t[i].data);
    free(w->kv.p);
    gw_init(w);
    return b;
}

#endif /* LMP_TESTS_GGUF_WRITER_H */
