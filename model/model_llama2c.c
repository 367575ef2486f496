/*  model_llama2c - reader for llama2.c checkpoints (legacy v0 and version 1, fp32)
 *
 *  v0 ("legacy") layout, all little-endian:
 *      int32 dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len
 *          (vocab_size < 0: a separate classifier follows the weights; > 0: tied)
 *      fp32  token_embedding (vocab, dim)
 *            rms_att (L, dim)   wq (L, dim, dim)   wk (L, kv_dim, dim)  wv (L, kv_dim, dim)
 *            wo (L, dim, dim)   rms_ffn (L, dim)   w1 (L, hidden, dim)  w2 (L, dim, hidden)
 *            w3 (L, hidden, dim)  rms_final (dim)
 *            freq_cis_real (seq_len, head_size/2)  freq_cis_imag (seq_len, head_size/2)
 *            wcls (vocab, dim) if not tied
 *  version 1 layout: a 256-byte header
 *      uint32 magic 0x616b3432 ("ak42"), int32 version = 1, the same 7 int32 (vocab > 0),
 *      uint8 shared_classifier, zero padding
 *  then fp32 rms_att (L, dim), rms_ffn (L, dim), rms_final (dim), token_embedding (vocab, dim),
 *  wq, wk, wv, wo, w1, w2, w3 (each stacked over L as above), wcls (vocab, dim) if not shared.
 *
 *  A v0 file has no magic: a file without the GGUF or version 1 magic is taken for one
 *  only if its header is plausible (every size within the bounds below, heads dividing
 *  dim into even head sizes); otherwise it is reported as no known checkpoint format
 *  ("not a GGUF, safetensors or llama2.c file"), not as a llama2.c file with absurd sizes.
 *
 *  w1 is the FFN gate, w3 the up projection, w2 the down projection. RoPE rotates
 *  interleaved pairs with theta 10000 (the v0 frequency tables are recomputable and are
 *  not exposed as tensors). Per-layer tensors point into slices of the file map and are
 *  named "layers.<b>.<w>", e.g. "layers.3.wq"; the others "tok_embeddings", "norm",
 *  "output".
 */
#include "model/model.h"
#include "base/file.h" /* defines: struct lmp_map, lmp_map_open() */

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LLAMA2C_MAGIC     0x616b3432u
#define LLAMA2C_V0_HEADER 28  /* bytes: 7 int32 */
#define LLAMA2C_V1_HEADER 256 /* bytes */

/* Bounds for a header to be believed; far above any llama2.c-sized model, far below
 * what could overflow the size arithmetic (every product stays under 2^62). */
#define MAX_DIM    (1 << 16)
#define MAX_HIDDEN (1 << 18)
#define MAX_LAYERS 4096
#define MAX_VOCAB  (1 << 22)
#define MAX_SEQ    (1 << 24)

/* what a file without a known magic and without a plausible llama2.c header is */
#define LMP_LLAMA2C_UNKNOWN "not a GGUF, safetensors or llama2.c file"

struct llama2c_src {
    struct lmp_map map;
};

static void llama2c_src_close(void *p) {
    struct llama2c_src *s = p;
    if (s == NULL) return;
    lmp_map_close(&s->map);
    free(s);
}

static int32_t rd_i32(const uint8_t *p) {
    return (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                     (uint32_t)p[3] << 24);
}

struct llama2c_hdr {
    int     version; /* 0 or 1 */
    int32_t dim, hidden, n_layers, n_heads, n_kv_heads, vocab, seq_len;
    int     shared; /* classifier tied to the embedding */
    int64_t header_bytes;
};

static enum lmp_status parse_header(const struct lmp_map *map, struct llama2c_hdr *h,
                                    struct lmp_err *err) {
    const char *path = map->path;
    memset(h, 0, sizeof(*h));
    const uint8_t *p = map->data;
    if (map->size >= 8 && (uint32_t)rd_i32(p) == LLAMA2C_MAGIC) {
        int32_t version = rd_i32(p + 4);
        if (version != 1)
            return lmp_err_set(err, LMP_EUNSUP,
                               "'%s': llama2.c export version %d is not supported (only 0 and 1, "
                               "fp32)",
                               path, version);
        if (map->size < LLAMA2C_V1_HEADER)
            return lmp_err_set(err, LMP_EFORMAT,
                               "'%s': truncated: llama2.c header needs %d bytes, file has %zu",
                               path, LLAMA2C_V1_HEADER, map->size);
        h->version      = 1;
        h->header_bytes = LLAMA2C_V1_HEADER;
        p += 8;
    } else {
        /* no magic: a version 0 file, or no checkpoint at all (see the file comment) */
        if (map->size < LLAMA2C_V0_HEADER)
            return lmp_err_set(err, LMP_EFORMAT,
                               "'%s': " LMP_LLAMA2C_UNKNOWN " (%zu bytes, shorter than any header)",
                               path, map->size);
        h->version      = 0;
        h->header_bytes = LLAMA2C_V0_HEADER;
    }
    h->dim        = rd_i32(p);
    h->hidden     = rd_i32(p + 4);
    h->n_layers   = rd_i32(p + 8);
    h->n_heads    = rd_i32(p + 12);
    h->n_kv_heads = rd_i32(p + 16);
    h->vocab      = rd_i32(p + 20);
    h->seq_len    = rd_i32(p + 24);
    if (h->version == 1) {
        uint8_t flag = p[28];
        if (flag > 1)
            return lmp_err_set(err, LMP_EFORMAT,
                               "'%s': not a llama2.c file (shared_classifier flag %u)", path, flag);
        h->shared = flag;
        if (h->vocab <= 0)
            return lmp_err_set(err, LMP_EFORMAT, "'%s': llama2.c header: vocab_size %d", path,
                               h->vocab);
    } else {
        h->shared = h->vocab > 0;
        /* INT32_MIN has no positive counterpart: rejected by the range check below */
        if (h->vocab < 0 && h->vocab != INT32_MIN) h->vocab = -h->vocab;
    }
    const bool sane = h->dim > 0 && h->dim <= MAX_DIM && h->hidden > 0 && h->hidden <= MAX_HIDDEN &&
                      h->n_layers > 0 && h->n_layers <= MAX_LAYERS && h->n_heads > 0 &&
                      h->n_heads <= h->dim && h->n_kv_heads > 0 && h->n_kv_heads <= h->n_heads &&
                      h->vocab > 0 && h->vocab <= MAX_VOCAB && h->seq_len > 0 &&
                      h->seq_len <= MAX_SEQ && h->dim % h->n_heads == 0 &&
                      h->n_heads % h->n_kv_heads == 0 && (h->dim / h->n_heads) % 2 == 0;
    /* Without the magic only a plausible header says "llama2.c"; anything else is no
     * checkpoint we know, and its first 28 bytes read as dimensions would only mislead. */
    if (h->version == 0 && !sane)
        return lmp_err_set(err, LMP_EFORMAT, "'%s': " LMP_LLAMA2C_UNKNOWN, path);
    if (h->dim <= 0 || h->dim > MAX_DIM || h->hidden <= 0 || h->hidden > MAX_HIDDEN ||
        h->n_layers <= 0 || h->n_layers > MAX_LAYERS || h->n_heads <= 0 || h->n_heads > h->dim ||
        h->n_kv_heads <= 0 || h->n_kv_heads > h->n_heads || h->vocab <= 0 || h->vocab > MAX_VOCAB ||
        h->seq_len <= 0 || h->seq_len > MAX_SEQ)
        return lmp_err_set(err, LMP_EFORMAT,
                           "'%s': not a llama2.c checkpoint or corrupt header (dim %d, hidden %d, "
                           "layers %d, heads %d, kv heads %d, vocab %d, seq_len %d)",
                           path, h->dim, h->hidden, h->n_layers, h->n_heads, h->n_kv_heads,
                           h->vocab, h->seq_len);
    if (h->dim % h->n_heads != 0 || h->n_heads % h->n_kv_heads != 0 ||
        (h->dim / h->n_heads) % 2 != 0)
        return lmp_err_set(err, LMP_EFORMAT,
                           "'%s': llama2.c header: dim %d, %d heads, %d kv heads do not divide "
                           "into even-sized heads",
                           path, h->dim, h->n_heads, h->n_kv_heads);
    return LMP_OK;
}

/* Laying out the file: a cursor over the data section in fp32 elements. */
struct cursor {
    const uint8_t *base; /* first byte after the header */
    int64_t        off;  /* bytes from base */
};

static void set_tensor(struct lmp_tensor *t, const char *name, const struct cursor *c, int64_t off,
                       int n_dims, int64_t d0, int64_t d1) {
    snprintf(t->name, sizeof(t->name), "%s", name);
    t->dtype    = LMP_DTYPE_F32;
    t->n_dims   = n_dims;
    t->shape[0] = d0;
    t->shape[1] = n_dims > 1 ? d1 : 0;
    t->nbytes   = (uint64_t)(n_dims > 1 ? d0 * d1 : d0) * 4;
    t->data     = c->base + off;
}

/* Lay out one per-layer weight of shape (rows, cols) stacked over the layers, starting
 * at the cursor; the cursor advances past all layers. */
static void layer_tensors(struct lmp_tensor *ts, int64_t *n_ts, const struct llama2c_hdr *h,
                          struct cursor *c, const char *what, int n_dims, int64_t rows,
                          int64_t cols, const struct lmp_tensor **slot0, size_t slot_stride) {
    const int64_t per = (n_dims > 1 ? rows * cols : rows) * 4;
    for (int32_t b = 0; b < h->n_layers; b++) {
        char name[64];
        snprintf(name, sizeof(name), "layers.%d.%s", b, what);
        struct lmp_tensor *t = &ts[(*n_ts)++];
        set_tensor(t, name, c, c->off + b * per, n_dims, rows, cols);
        if (slot0) *(const struct lmp_tensor **)((char *)slot0 + b * slot_stride) = t;
    }
    c->off += per * h->n_layers;
}

enum lmp_status lmp_model_open_llama2c(const char *path, struct lmp_model **out,
                                       struct lmp_err *err) {
    *out                    = NULL;
    enum lmp_status     st  = LMP_OK;
    struct lmp_model   *m   = NULL;
    struct llama2c_src *src = calloc(1, sizeof(*src));
    if (src == NULL) return lmp_err_set(err, LMP_ENOMEM, "out of memory opening '%s'", path);
    if ((st = lmp_map_open(&src->map, path, err)) != LMP_OK) goto fail;

    struct llama2c_hdr h;
    if ((st = parse_header(&src->map, &h, err)) != LMP_OK) goto fail;

    const int64_t L = h.n_layers, dim = h.dim, hid = h.hidden, vocab = h.vocab;
    const int64_t head = dim / h.n_heads, kv_dim = head * h.n_kv_heads;
    /* fp32 elements of the data section, in file order for v0 */
    const int64_t per_layer = 2 * dim + 2 * dim * dim + 2 * kv_dim * dim + 3 * hid * dim;
    int64_t       n_elem    = vocab * dim + L * per_layer + dim;
    if (h.version == 0) n_elem += 2 * (int64_t)h.seq_len * (head / 2);
    if (!h.shared) n_elem += vocab * dim;
    const int64_t need = h.header_bytes + 4 * n_elem;
    const int64_t have = (int64_t)src->map.size;
    if (have < need) {
        st = lmp_err_set(err, LMP_EFORMAT,
                         "'%s': truncated: llama2.c layout needs %lld bytes, file has %lld", path,
                         (long long)need, (long long)have);
        goto fail;
    }
    /* The file size is the only check a v0 header has (no magic, no checksum), so it
     * must match exactly, as every llama2.c export writes it: a header whose fields were
     * changed (vocab_size -1 for 512: an untied classifier of one row) otherwise
     * describes a prefix of the file and opens as a different, absurd model. */
    if (have != need) {
        st = lmp_err_set(err, LMP_EFORMAT,
                         "'%s': llama2.c header (dim %d, hidden %d, layers %d, heads %d, kv heads "
                         "%d, vocab %d%s, seq_len %d) describes %lld bytes, the file has %lld "
                         "(%lld trailing)",
                         path, h.dim, h.hidden, h.n_layers, h.n_heads, h.n_kv_heads, h.vocab,
                         h.shared ? "" : " with an untied classifier", h.seq_len, (long long)need,
                         (long long)have, (long long)(have - need));
        goto fail;
    }

    if ((m = lmp_model_alloc(h.n_layers)) == NULL || (m->path = strdup(path)) == NULL) {
        st = lmp_err_set(err, LMP_ENOMEM, "out of memory opening '%s'", path);
        goto fail;
    }
    const int64_t max_tensors = 3 + 9 * L;
    m->tensors                = calloc((size_t)max_tensors, sizeof(*m->tensors));
    if (m->tensors == NULL) {
        st = lmp_err_set(err, LMP_ENOMEM, "out of memory opening '%s'", path);
        goto fail;
    }
    m->src       = src;
    m->src_close = llama2c_src_close;
    src          = NULL; /* owned by m from here */

    struct lmp_config *c = &m->cfg;
    c->arch              = LMP_ARCH_LLAMA;
    c->format            = LMP_FORMAT_LLAMA2C;
    c->dim               = h.dim;
    c->hidden_dim        = h.hidden;
    c->n_heads           = h.n_heads;
    c->n_kv_heads        = h.n_kv_heads;
    c->head_dim          = (int32_t)head;
    c->vocab_size        = h.vocab;
    c->max_seq           = h.seq_len;
    c->rope_theta        = 10000.0f;
    c->norm_eps          = 1e-5f;
    c->rope              = LMP_ROPE_INTERLEAVED;
    c->tied_embeddings   = h.shared;

    struct lmp_tensor *ts  = m->tensors;
    int64_t            n   = 0;
    struct cursor      cur = {((const struct llama2c_src *)m->src)->map.data + h.header_bytes, 0};
    struct lmp_block  *b0  = m->blocks;
    const size_t       bs  = sizeof(*b0);
#define LIN(k) (&b0->lin[k].weight)

    struct lmp_tensor *tok = NULL, *norm = NULL;
    if (h.version == 0) {
        tok = &ts[n++];
        set_tensor(tok, "tok_embeddings", &cur, cur.off, 2, vocab, dim);
        cur.off += vocab * dim * 4;
        layer_tensors(ts, &n, &h, &cur, "attention_norm", 1, dim, 0, &b0->attn_norm, bs);
        layer_tensors(ts, &n, &h, &cur, "wq", 2, dim, dim, LIN(LMP_LIN_Q), bs);
        layer_tensors(ts, &n, &h, &cur, "wk", 2, kv_dim, dim, LIN(LMP_LIN_K), bs);
        layer_tensors(ts, &n, &h, &cur, "wv", 2, kv_dim, dim, LIN(LMP_LIN_V), bs);
        layer_tensors(ts, &n, &h, &cur, "wo", 2, dim, dim, LIN(LMP_LIN_O), bs);
        layer_tensors(ts, &n, &h, &cur, "ffn_norm", 1, dim, 0, &b0->ffn_norm, bs);
        layer_tensors(ts, &n, &h, &cur, "w1", 2, hid, dim, LIN(LMP_LIN_GATE), bs);
        layer_tensors(ts, &n, &h, &cur, "w2", 2, dim, hid, LIN(LMP_LIN_DOWN), bs);
        layer_tensors(ts, &n, &h, &cur, "w3", 2, hid, dim, LIN(LMP_LIN_UP), bs);
        norm = &ts[n++];
        set_tensor(norm, "norm", &cur, cur.off, 1, dim, 0);
        cur.off += dim * 4;
        cur.off += 2 * (int64_t)h.seq_len * (head / 2) * 4; /* freq_cis_real, freq_cis_imag */
    } else {
        layer_tensors(ts, &n, &h, &cur, "attention_norm", 1, dim, 0, &b0->attn_norm, bs);
        layer_tensors(ts, &n, &h, &cur, "ffn_norm", 1, dim, 0, &b0->ffn_norm, bs);
        norm = &ts[n++];
        set_tensor(norm, "norm", &cur, cur.off, 1, dim, 0);
        cur.off += dim * 4;
        tok = &ts[n++];
        set_tensor(tok, "tok_embeddings", &cur, cur.off, 2, vocab, dim);
        cur.off += vocab * dim * 4;
        layer_tensors(ts, &n, &h, &cur, "wq", 2, dim, dim, LIN(LMP_LIN_Q), bs);
        layer_tensors(ts, &n, &h, &cur, "wk", 2, kv_dim, dim, LIN(LMP_LIN_K), bs);
        layer_tensors(ts, &n, &h, &cur, "wv", 2, kv_dim, dim, LIN(LMP_LIN_V), bs);
        layer_tensors(ts, &n, &h, &cur, "wo", 2, dim, dim, LIN(LMP_LIN_O), bs);
        layer_tensors(ts, &n, &h, &cur, "w1", 2, hid, dim, LIN(LMP_LIN_GATE), bs);
        layer_tensors(ts, &n, &h, &cur, "w2", 2, dim, hid, LIN(LMP_LIN_DOWN), bs);
        layer_tensors(ts, &n, &h, &cur, "w3", 2, hid, dim, LIN(LMP_LIN_UP), bs);
    }
#undef LIN
    m->tok_emb  = tok;
    m->out_norm = norm;
    if (h.shared) {
        m->output = tok;
    } else {
        struct lmp_tensor *cls = &ts[n++];
        set_tensor(cls, "output", &cur, cur.off, 2, vocab, dim);
        cur.off += vocab * dim * 4;
        m->output = cls;
    }
    m->n_tensors = n;
    assert(h.header_bytes + cur.off == need && n <= max_tensors);
    if ((st = lmp_model_finish(m, err)) != LMP_OK) goto fail;
    *out = m;
    return LMP_OK;
fail:
    lmp_model_close(&m);
    llama2c_src_close(src);
    return st;
}
