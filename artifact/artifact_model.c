/*  artifact_model - see artifact_model.h */
#include "artifact/artifact_model.h"
#include "kernels/kernels.h" /* defines: lmp_kernels_get(), aq_decode, lmp_f16_to_f32 */
#include "base/file.h"       /* defines: lmp_file_read_all, lmp_path_is_dir/file */
#include "base/text.h"       /* defines: lmp_strfmt */
#include "model/gguf.h"      /* defines: lmp_gguf_parse, lmp_gguf_* metadata getters */

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void lmp_art_layer_decode(const struct lmp_art_layer *l, float *w) {
    assert(l && w);
    if (l->codec == LMP_ART_CODEC_AQ) {
        const struct lmp_aq_shape s = {
            .n_out = l->n_out, .n_in = l->n_in, .M = l->M, .K = 1 << l->B, .g = l->g};
        lmp_kernels_get()->aq_decode(w, l->codes, l->codebooks, l->scales, &s);
        return;
    }
    const int64_t n_grp = l->n_in / l->g;
    for (int64_t o = 0; o < l->n_out; o++)
        for (int64_t i = 0; i < l->n_in; i++) {
            const int64_t j    = o * n_grp + i / l->g;
            w[o * l->n_in + i] = l->scales[j] * ((float)l->codes[o * l->n_in + i] - l->zeros[j]);
        }
}

/* ---- tokenizer source --------------------------------------------------------------- */

static bool has_suffix(const char *s, const char *suf) {
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && strcmp(s + n - k, suf) == 0;
}

static enum lmp_status read_file(const char *path, uint8_t **bytes, size_t *n,
                                 struct lmp_err *err) {
    char           *buf = NULL;
    enum lmp_status st  = lmp_file_read_all(path, &buf, n, err);
    *bytes              = (uint8_t *)buf;
    return st;
}

/* read_file of a path made with lmp_strfmt (freed here; NULL: out of memory) */
static enum lmp_status read_made(char *path, uint8_t **bytes, size_t *n, struct lmp_err *err) {
    if (path == NULL) return lmp_err_set(err, LMP_ENOMEM, "out of memory finding the tokenizer");
    enum lmp_status st = read_file(path, bytes, n, err);
    free(path);
    return st;
}

enum lmp_status lmp_art_tokenizer_source(const struct lmp_model *m, const char *tok_path,
                                         enum lmp_art_tok *kind, uint8_t **bytes, size_t *n,
                                         struct lmp_err *err) {
    assert(m && kind && bytes && n);
    *bytes = NULL;
    *n     = 0;
    if (tok_path) {
        if (lmp_path_is_dir(tok_path)) {
            *kind = LMP_ART_TOK_HF;
            return read_made(lmp_strfmt("%s/tokenizer.json", tok_path), bytes, n, err);
        }
        *kind = has_suffix(tok_path, ".json") ? LMP_ART_TOK_HF : LMP_ART_TOK_LLAMA2C;
        return read_file(tok_path, bytes, n, err);
    }
    switch (m->cfg.format) {
    case LMP_FORMAT_GGUF:
        *kind = LMP_ART_TOK_GGUF;
        if (m->gguf == NULL)
            return lmp_err_set(err, LMP_EINVAL, "'%s': GGUF model without its file", m->path);
        return lmp_gguf_tokenizer_image(m->gguf, bytes, n, err);
    case LMP_FORMAT_HF:
        *kind = LMP_ART_TOK_HF;
        return read_made(lmp_strfmt("%s/tokenizer.json", m->path), bytes, n, err);
    case LMP_FORMAT_LLAMA2C: { /* tokenizer.bin beside the model */
        const char *slash = strrchr(m->path, '/');
        const int   dir   = slash ? (int)(slash + 1 - m->path) : 0;
        *kind             = LMP_ART_TOK_LLAMA2C;
        return read_made(lmp_strfmt("%.*stokenizer.bin", dir, m->path), bytes, n, err);
    }
    }
    return lmp_err_set(err, LMP_EUNSUP, "'%s': unknown model format", m->path);
}

/* A growable byte buffer for the GGUF image. */
struct gbuf {
    uint8_t *p;
    size_t   n, cap;
    bool     oom;
};

static void gb_put(struct gbuf *b, const void *d, size_t k) {
    if (b->oom) return;
    if (b->n + k > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + k) cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (p == NULL) {
            b->oom = true;
            return;
        }
        b->p = p, b->cap = cap;
    }
    memcpy(b->p + b->n, d, k);
    b->n += k;
}
/* GGUF is little-endian; so is every host this builds for (static check below). */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the GGUF image writer assumes a little-endian host"
#endif
static void gb_u32(struct gbuf *b, uint32_t v) {
    gb_put(b, &v, 4);
}
static void gb_u64(struct gbuf *b, uint64_t v) {
    gb_put(b, &v, 8);
}
static void gb_str(struct gbuf *b, const char *s, uint64_t n) {
    gb_u64(b, n);
    gb_put(b, s, n);
}

static size_t gguf_scalar_size(enum lmp_gguf_type t) {
    switch (t) {
    case LMP_GGUF_UINT8:
    case LMP_GGUF_INT8:
    case LMP_GGUF_BOOL:
        return 1;
    case LMP_GGUF_UINT16:
    case LMP_GGUF_INT16:
        return 2;
    case LMP_GGUF_UINT32:
    case LMP_GGUF_INT32:
    case LMP_GGUF_FLOAT32:
        return 4;
    case LMP_GGUF_UINT64:
    case LMP_GGUF_INT64:
    case LMP_GGUF_FLOAT64:
        return 8;
    default:
        return 0;
    }
}

/* Encode one scalar of type t from the getters; false if it cannot be represented. */
static bool put_scalar(struct gbuf *b, const struct lmp_gguf *g, const char *key,
                       enum lmp_gguf_type t) {
    int64_t             i;
    double              f;
    bool                v;
    struct lmp_gguf_str s;
    switch (t) {
    case LMP_GGUF_STRING:
        if (!lmp_gguf_get_str(g, key, &s)) return false;
        gb_str(b, s.s ? s.s : "", s.len);
        return true;
    case LMP_GGUF_BOOL:
        if (!lmp_gguf_get_bool(g, key, &v)) return false;
        gb_put(b, &(uint8_t){v ? 1 : 0}, 1);
        return true;
    case LMP_GGUF_FLOAT32:
        if (!lmp_gguf_get_f64(g, key, &f)) return false;
        gb_put(b, &(float){(float)f}, 4);
        return true;
    case LMP_GGUF_FLOAT64:
        if (!lmp_gguf_get_f64(g, key, &f)) return false;
        gb_put(b, &f, 8);
        return true;
    default:
        if (gguf_scalar_size(t) == 0 || !lmp_gguf_get_i64(g, key, &i)) return false;
        gb_put(b, &i, gguf_scalar_size(t)); /* low bytes: little-endian truncation */
        return true;
    }
}

enum lmp_status lmp_gguf_tokenizer_image(const struct lmp_gguf *g, uint8_t **img, size_t *n,
                                         struct lmp_err *err) {
    assert(g && img && n);
    struct gbuf body = {0}, out = {0};
    uint64_t    n_kv = 0;
    char        key[512];
    for (int64_t i = 0; i < lmp_gguf_n_kv(g); i++) {
        struct lmp_gguf_str k = lmp_gguf_key(g, i);
        if (k.len < 10 || k.len >= sizeof(key) || memcmp(k.s, "tokenizer.", 10) != 0) continue;
        memcpy(key, k.s, k.len);
        key[k.len]              = '\0';
        enum lmp_gguf_type t    = lmp_gguf_kv_type(g, i);
        size_t             mark = body.n;
        gb_str(&body, key, k.len);
        gb_u32(&body, (uint32_t)t);
        bool ok = true;
        if (t == LMP_GGUF_ARRAY) {
            enum lmp_gguf_type et;
            int64_t            cnt = lmp_gguf_arr_n(g, key, &et);
            gb_u32(&body, (uint32_t)et);
            gb_u64(&body, (uint64_t)cnt);
            if (cnt < 0)
                ok = false;
            else if (et == LMP_GGUF_STRING) {
                for (int64_t j = 0; j < cnt; j++) {
                    struct lmp_gguf_str s = lmp_gguf_arr_str(g, key, j);
                    gb_str(&body, s.s ? s.s : "", s.len);
                }
            } else if (gguf_scalar_size(et) > 0) {
                const void *d = lmp_gguf_arr_data(g, key);
                if (d == NULL && cnt > 0)
                    ok = false;
                else
                    gb_put(&body, d, (size_t)cnt * gguf_scalar_size(et));
            } else
                ok = false; /* nested arrays: no tokenizer key uses them */
        } else
            ok = put_scalar(&body, g, key, t);
        if (!ok)
            body.n = mark; /* drop a key we cannot reproduce */
        else
            n_kv++;
    }
    gb_put(&out, "GGUF", 4);
    gb_u32(&out, 3);
    gb_u64(&out, 0); /* tensors */
    gb_u64(&out, n_kv);
    if (body.n) gb_put(&out, body.p, body.n);
    free(body.p);
    if (out.oom || body.oom) {
        free(out.p);
        return lmp_err_set(err, LMP_ENOMEM, "out of memory building the tokenizer image");
    }
    *img = out.p;
    *n   = out.n;
    return LMP_OK;
}

/* ---- model from artifact --------------------------------------------------------------- */

struct am_src {
    void                **bufs; /* (n_bufs) owned tensor data */
    int64_t               n_bufs;
    struct lmp_art_layer *layers; /* (n_layers) AQ layers kept as codes, owned */
    struct lmp_aq_linear *aq;     /* (n_layers) their views for lmp_linear.aq */
    int64_t               n_layers;
    uint8_t              *img;  /* GGUF tokenizer image, or NULL */
    struct lmp_gguf      *gguf; /* parsed from img */
};

static void am_src_close(void *p) {
    struct am_src *s = p;
    if (s == NULL) return;
    for (int64_t i = 0; i < s->n_bufs; i++) free(s->bufs[i]);
    free(s->bufs);
    for (int64_t i = 0; i < s->n_layers; i++) lmp_art_layer_release(&s->layers[i]);
    free(s->layers);
    free(s->aq);
    lmp_gguf_close(&s->gguf);
    free(s->img);
    free(s);
}

struct am_build {
    struct lmp_model    *m;
    struct am_src       *src;
    struct lmp_artifact *a;
    const char          *path;
    int64_t              cap; /* tensors allocated */
};

/* Append a tensor owning data; returns it or NULL (ENOMEM). */
static struct lmp_tensor *am_add(struct am_build *b, const char *name, enum lmp_dtype dtype,
                                 int n_dims, const int64_t *shape, void *data) {
    if (b->m->n_tensors == b->cap) {
        free(data);
        return NULL;
    }
    b->src->bufs[b->src->n_bufs++] = data;
    struct lmp_tensor *t           = &b->m->tensors[b->m->n_tensors++];
    snprintf(t->name, sizeof(t->name), "%s", name);
    t->dtype  = dtype;
    t->n_dims = n_dims;
    for (int i = 0; i < n_dims; i++) t->shape[i] = shape[i];
    t->data   = data;
    t->nbytes = (uint64_t)lmp_tensor_expected_bytes(dtype, n_dims, shape);
    return t;
}

/* x (n_rows, n_cols) fp32 as Q8_0 blocks if every block of 32 is exactly d q (an fp16 d,
 * int8 q: a Q8_0 tensor widened, as a format-1 artifact's embedding taken from a Q8_0 GGUF),
 * else as halves if every value is one; *dtype set; NULL if neither (or out of memory: the
 * fp32 tensor is used). Widening the result gives back x bit for bit (checked row by row
 * with the dequant_row kernel the forward pass uses). */
static void *narrow_exact(const float *x, int64_t n_rows, int64_t n_cols, enum lmp_dtype *dtype) {
    static const enum lmp_dtype dtypes[2] = {LMP_DTYPE_Q8_0, LMP_DTYPE_F16};
    float                       back[256];
    for (int d = 0; d < 2; d++) {
        const bool q8 = dtypes[d] == LMP_DTYPE_Q8_0;
        if (q8 && n_cols % 32 != 0) continue;
        const int64_t row_bytes = q8 ? n_cols / 32 * 34 : 2 * n_cols;
        uint8_t      *out       = malloc((size_t)(n_rows * row_bytes) + 1);
        if (out == NULL) return NULL;
        bool exact = true;
        for (int64_t r = 0; r < n_rows && exact; r++) {
            const float *row = x + r * n_cols;
            uint8_t     *q   = out + r * row_bytes;
            for (int64_t blk = 0; q8 && blk < n_cols / 32; blk++) { /* d = max |x| / 127 */
                const float *xb   = row + blk * 32;
                float        amax = 0.0f;
                for (int t = 0; t < 32; t++) amax = fabsf(xb[t]) > amax ? fabsf(xb[t]) : amax;
                const uint16_t dh  = lmp_f32_to_f16(amax / 127.0f);
                const float    dd  = lmp_f16_to_f32(dh);
                const float    inv = dd > 0.0f ? 1.0f / dd : 0.0f; /* exact blocks: x inv is
                                                                   within an ulp of an integer */
                uint8_t *p = q + blk * 34;
                p[0]       = (uint8_t)(dh & 0xff);
                p[1]       = (uint8_t)(dh >> 8);
                int32_t k[32]; /* branch-free, so the compiler vectorizes it */
                for (int t = 0; t < 32; t++) {
                    float v = xb[t] * inv;
                    v       = v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v;
                    k[t]    = (int32_t)(v + (v >= 0.0f ? 0.5f : -0.5f));
                }
                for (int t = 0; t < 32; t++) p[2 + t] = (uint8_t)(int8_t)k[t];
            }
            for (int64_t i = 0; !q8 && i < n_cols; i++) {
                const uint16_t h = lmp_f32_to_f16(row[i]);
                q[2 * i]         = (uint8_t)(h & 0xff);
                q[2 * i + 1]     = (uint8_t)(h >> 8);
            }
            for (int64_t c = 0; c < n_cols && exact; c += 256) { /* widened back: same bits? */
                const int64_t n = n_cols - c < 256 ? n_cols - c : 256;
                lmp_kernels_get()->dequant_row(dtypes[d], q + (q8 ? c / 32 * 34 : 2 * c), back, n);
                exact = memcmp(back, row + c, (size_t)n * sizeof(float)) == 0;
            }
        }
        if (exact) {
            *dtype = dtypes[d];
            return out;
        }
        free(out);
    }
    return NULL;
}

/* A stored tensor by name, as fp32 (the forward pass uses fp32 rows directly: a 2-byte
 * tensor kept as it is would add an fp32 copy beside it), or as its Q8_0 / Q4_1 blocks;
 * *out NULL if absent and !required. `narrow` (the embedding and head of a model run on its
 * codes, whose transformer runs them on Q8_0 / Q4_1 / F16 rows): fp16 stays fp16, and an
 * fp32 tensor that is exactly Q8_0 or fp16 (narrow_exact) becomes that. */
static enum lmp_status am_tensor(struct am_build *b, const char *name, bool required, bool narrow,
                                 const struct lmp_tensor **out, struct lmp_err *err) {
    *out         = NULL;
    bool present = false;
    for (int64_t i = 0; i < lmp_artifact_n_tensors(b->a) && !present; i++)
        present = strcmp(lmp_artifact_tensor_name(b->a, i), name) == 0;
    if (!present)
        return required
                   ? lmp_err_set(err, LMP_EFORMAT, "'%s': tensor '%s' is missing", b->path, name)
                   : LMP_OK;
    struct lmp_art_tensor t  = {0};
    enum lmp_status       st = lmp_artifact_read_tensor(b->a, name, &t, err);
    if (st != LMP_OK) return st;
    const bool blocks = t.dtype == LMP_DTYPE_Q8_0 || t.dtype == LMP_DTYPE_Q4_1;
    if ((t.dtype != LMP_DTYPE_F32 && t.dtype != LMP_DTYPE_F16 && t.dtype != LMP_DTYPE_BF16 &&
         !blocks) ||
        t.n_dims < 1 || t.n_dims > LMP_MAX_DIMS ||
        lmp_tensor_expected_bytes(t.dtype, t.n_dims, t.shape) < 0) {
        lmp_art_tensor_release(&t);
        return lmp_err_set(err, LMP_EFORMAT,
                           "'%s': tensor '%s' has an unsupported dtype or "
                           "shape",
                           b->path, name);
    }
    /* Q8_0 / Q4_1 blocks (the embedding and head at 8 or 4 bits) stay as they are: rows are
     * dequantized on use and the head runs on the blocks (qmatvec) */
    if (narrow && t.dtype == LMP_DTYPE_F32 && t.n_dims == 2) {
        enum lmp_dtype dt;
        void          *q = narrow_exact(t.data, t.shape[0], t.shape[1], &dt);
        if (q) {
            free(t.data);
            t.data  = q;
            t.dtype = dt;
        }
    }
    if ((t.dtype == LMP_DTYPE_F16 && !(narrow && t.n_dims == 2)) ||
        t.dtype == LMP_DTYPE_BF16) { /* widened once, here */
        int64_t n = 1;
        for (int d = 0; d < t.n_dims; d++) n *= t.shape[d];
        float *f = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
        if (f == NULL) {
            lmp_art_tensor_release(&t);
            return lmp_err_set(err, LMP_ENOMEM, "out of memory reading '%s' of '%s'", name,
                               b->path);
        }
        const uint16_t *h = t.data;
        for (int64_t i = 0; i < n; i++)
            f[i] = t.dtype == LMP_DTYPE_F16 ? lmp_f16_to_f32(h[i]) : lmp_bf16_to_f32(h[i]);
        free(t.data);
        t.data  = f;
        t.dtype = LMP_DTYPE_F32;
    }
    void *data = t.data;
    t.data     = NULL;
    *out       = am_add(b, name, t.dtype, t.n_dims, t.shape, data);
    lmp_art_tensor_release(&t);
    return *out ? LMP_OK : lmp_err_set(err, LMP_ENOMEM, "'%s': too many tensors", b->path);
}

static enum lmp_status am_tokenizer(struct am_build *b, struct lmp_tokenizer **tok,
                                    struct lmp_err *err) {
    enum lmp_art_tok kind;
    uint8_t         *bytes = NULL;
    size_t           n     = 0;
    enum lmp_status  st    = lmp_artifact_read_tokenizer(b->a, &kind, &bytes, &n, err);
    if (st != LMP_OK) return st;
    char *name = lmp_strfmt("%s#tokenizer", b->path); /* names it in messages */
    if (name == NULL) {
        free(bytes);
        return lmp_err_set(err, LMP_ENOMEM, "out of memory reading '%s'", b->path);
    }
    switch (kind) {
    case LMP_ART_TOK_LLAMA2C:
        st = lmp_tokenizer_parse_llama2c(bytes, n, b->m->cfg.vocab_size, name, tok, err);
        break;
    case LMP_ART_TOK_HF:
        st = lmp_tokenizer_parse_hf((const char *)bytes, n, name, tok, err);
        break;
    case LMP_ART_TOK_GGUF:
        /* the tokenizer may point into the image: the model keeps both alive */
        b->src->img = bytes;
        bytes       = NULL;
        if ((st = lmp_gguf_parse(b->src->img, n, name, &b->src->gguf, err)) == LMP_OK) {
            b->m->gguf = b->src->gguf;
            st         = lmp_tokenizer_from_gguf(b->src->gguf, tok, err);
        }
        break;
    default:
        st = lmp_err_set(err, LMP_EFORMAT, "'%s': unknown tokenizer kind", b->path);
    }
    free(name);
    free(bytes);
    return st;
}

/* Keep AQ layer *l (moved from the caller, who must not release it) as codes for linear
 * lin. The artifact checked every code against 2^B when reading; the shapes are checked
 * again here since the kernel indexes the codebooks with them. */
static enum lmp_status am_keep_codes(struct am_build *b, struct lmp_linear *lin,
                                     struct lmp_art_layer *l, struct lmp_err *err) {
    if (l->M < 1 || l->M > 64 || l->B < 1 || l->B > 16 || l->g < 1 || l->n_in % l->g != 0 ||
        l->codes == NULL || l->codebooks == NULL || l->scales == NULL) {
        enum lmp_status st = lmp_err_set(err, LMP_EFORMAT,
                                         "'%s': layer '%s' has a bad AQ shape (M %d, B %d, g %d, "
                                         "n_in %lld)",
                                         b->path, l->name, l->M, l->B, l->g, (long long)l->n_in);
        lmp_art_layer_release(l);
        return st;
    }
    struct am_src *src         = b->src;
    src->layers[src->n_layers] = *l;
    struct lmp_art_layer *kept = &src->layers[src->n_layers];
    struct lmp_aq_linear *q    = &src->aq[src->n_layers++];
    q->shape                   = (struct lmp_aq_shape){
                          .n_out = kept->n_out, .n_in = kept->n_in, .M = kept->M, .K = 1 << kept->B, .g = kept->g};
    q->codes     = kept->codes;
    q->codebooks = kept->codebooks;
    q->scales    = kept->scales;
    lin->aq      = q;
    lin->weight  = NULL;
    return LMP_OK;
}

enum lmp_status lmp_artifact_model_open(const char *path, struct lmp_model **model,
                                        struct lmp_tokenizer **tok, struct lmp_err *err) {
    return lmp_artifact_model_load(path, LMP_ART_WEIGHTS_DENSE, model, tok, err);
}

enum lmp_status lmp_artifact_model_load(const char *path, enum lmp_art_weights weights,
                                        struct lmp_model **model, struct lmp_tokenizer **tok,
                                        struct lmp_err *err) {
    assert(path && model);
    *model = NULL;
    if (tok) *tok = NULL;
    struct am_build b  = {.path = path};
    enum lmp_status st = lmp_artifact_open_read(path, &b.a, err);
    if (st != LMP_OK) return st;
    const struct lmp_art_job *job = lmp_artifact_job(b.a);
    const struct lmp_config  *cfg = &job->cfg;
    if (!lmp_artifact_is_complete(b.a)) {
        st = lmp_err_set(err, LMP_EFORMAT,
                         "'%s': the artifact is incomplete (%lld of %lld "
                         "linears compressed): resume the compression first",
                         path, (long long)lmp_artifact_n_layers(b.a), (long long)job->n_linears);
        goto fail;
    }
    if (cfg->n_layers <= 0 || cfg->n_layers > 4096 ||
        (b.m = lmp_model_alloc(cfg->n_layers)) == NULL) {
        st = lmp_err_set(err, cfg->n_layers <= 0 ? LMP_EFORMAT : LMP_ENOMEM,
                         "'%s': cannot build a model of %d layers", path, cfg->n_layers);
        goto fail;
    }
    b.m->cfg     = *cfg;
    b.m->path    = strdup(path);
    b.cap        = 4 + (int64_t)cfg->n_layers * (6 + 2 * LMP_LIN_COUNT);
    b.m->tensors = calloc((size_t)b.cap, sizeof(*b.m->tensors));
    b.src        = calloc(1, sizeof(*b.src));
    if (b.src) {
        b.src->bufs   = calloc((size_t)b.cap, sizeof(void *));
        b.src->layers = calloc((size_t)cfg->n_layers * LMP_LIN_COUNT, sizeof(*b.src->layers));
        b.src->aq     = calloc((size_t)cfg->n_layers * LMP_LIN_COUNT, sizeof(*b.src->aq));
    }
    if (b.m->path == NULL || b.m->tensors == NULL || b.src == NULL || b.src->bufs == NULL ||
        b.src->layers == NULL || b.src->aq == NULL) {
        if (b.src) {
            free(b.src->bufs);
            free(b.src->layers);
            free(b.src->aq);
        }
        free(b.src);
        b.src = NULL;
        st    = lmp_err_set(err, LMP_ENOMEM, "'%s': out of memory", path);
        goto fail;
    }
    b.m->src       = b.src;
    b.m->src_close = am_src_close;
    if (cfg->rope_freq_factors) { /* the job's copy goes with the artifact: the model's own */
        const size_t nb = (size_t)((cfg->rope_dims ? cfg->rope_dims : cfg->head_dim) / 2) * 4;
        float       *ff = malloc(nb);
        if (ff == NULL) {
            st = lmp_err_set(err, LMP_ENOMEM, "'%s': out of memory", path);
            goto fail;
        }
        memcpy(ff, cfg->rope_freq_factors, nb);
        b.src->bufs[b.src->n_bufs++] = ff;
        b.m->cfg.rope_freq_factors   = ff;
    }
    const bool codes = weights == LMP_ART_WEIGHTS_CODES;

    if ((st = am_tensor(&b, "model.embed_tokens.weight", true, codes, &b.m->tok_emb, err)) ||
        (st = am_tensor(&b, "model.norm.weight", true, false, &b.m->out_norm, err)))
        goto fail;
    if (cfg->tied_embeddings)
        b.m->output = b.m->tok_emb;
    else if ((st = am_tensor(&b, "lm_head.weight", true, codes, &b.m->output, err)))
        goto fail;

    char name[LMP_NAME_MAX];
    for (int32_t blk = 0; blk < cfg->n_layers; blk++) {
        struct lmp_block *B = &b.m->blocks[blk];
        snprintf(name, sizeof(name), "model.layers.%d.input_layernorm.weight", blk);
        if ((st = am_tensor(&b, name, true, false, &B->attn_norm, err))) goto fail;
        snprintf(name, sizeof(name), "model.layers.%d.post_attention_layernorm.weight", blk);
        if ((st = am_tensor(&b, name, true, false, &B->ffn_norm, err))) goto fail;
        /* format 3: optional norms (lmp_model_finish checks that every block has the same) */
        snprintf(name, sizeof(name), "model.layers.%d.self_attn.q_norm.weight", blk);
        if ((st = am_tensor(&b, name, false, false, &B->q_norm, err))) goto fail;
        snprintf(name, sizeof(name), "model.layers.%d.self_attn.k_norm.weight", blk);
        if ((st = am_tensor(&b, name, false, false, &B->k_norm, err))) goto fail;
        snprintf(name, sizeof(name), "model.layers.%d.post_attention_norm.weight", blk);
        if ((st = am_tensor(&b, name, false, false, &B->post_attn_norm, err))) goto fail;
        snprintf(name, sizeof(name), "model.layers.%d.post_feedforward_layernorm.weight", blk);
        if ((st = am_tensor(&b, name, false, false, &B->post_ffn_norm, err))) goto fail;
        for (int k = 0; k < LMP_LIN_COUNT; k++) {
            char lin[64];
            snprintf(lin, sizeof(lin), "model.layers.%d.%s.%s", blk,
                     k <= LMP_LIN_O ? "self_attn" : "mlp", lmp_lin_name((enum lmp_lin)k));
            snprintf(name, sizeof(name), "%s.bias", lin);
            if ((st = am_tensor(&b, name, false, false, &B->lin[k].bias, err))) goto fail;
            snprintf(name, sizeof(name), "%s.weight", lin);
            if (!lmp_artifact_has_layer(b.a, lin)) {
                if ((st = am_tensor(&b, name, true, false, &B->lin[k].weight, err))) goto fail;
                continue;
            }
            struct lmp_art_layer l = {0};
            if ((st = lmp_artifact_read_layer(b.a, lin, &l, err))) goto fail;
            if (weights == LMP_ART_WEIGHTS_CODES && l.codec == LMP_ART_CODEC_AQ) {
                if ((st = am_keep_codes(&b, &B->lin[k], &l, err))) goto fail;
                continue;
            }
            float *w = malloc((size_t)(l.n_out * l.n_in) * sizeof(float));
            if (w) lmp_art_layer_decode(&l, w);
            const int64_t shape[2] = {l.n_out, l.n_in};
            lmp_art_layer_release(&l);
            if (w == NULL ||
                (B->lin[k].weight = am_add(&b, name, LMP_DTYPE_F32, 2, shape, w)) == NULL) {
                st = lmp_err_set(err, LMP_ENOMEM, "'%s': out of memory decoding '%s'", path, lin);
                goto fail;
            }
        }
    }
    if ((st = lmp_model_finish(b.m, err))) goto fail;
    if (tok && (st = am_tokenizer(&b, tok, err))) goto fail;
    lmp_artifact_close(&b.a);
    *model = b.m;
    return LMP_OK;
fail:
    if (tok) lmp_tokenizer_free(tok);
    lmp_model_close(&b.m);
    lmp_artifact_close(&b.a);
    return st;
}
