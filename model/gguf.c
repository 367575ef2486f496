/*  gguf - see gguf.h
 *
 *  Layout of a GGUF v2/v3 file (little-endian):
 *
 *      "GGUF" u32 version u64 n_tensors u64 n_kv
 *      n_kv x      { str key, u32 type, value }
 *      n_tensors x { str name, u32 n_dims, u64 ne[n_dims] (innermost first), u32 ggml_type,
 *                    u64 offset (from the data section, a multiple of the alignment) }
 *      padding to general.alignment (default 32), then the data section
 *
 *  where str is { u64 len, len bytes } and an array value is { u32 elem_type, u64 n,
 *  n elements }. v1 (u32 counts and lengths) is refused.
 *
 *  Parsing walks the header once with a bounds-checked cursor. Every count is checked
 *  against the bytes left before anything is allocated, so the heap used is at most a
 *  small multiple of the header size: one record per key, one lmp_tensor per tensor,
 *  one offset per string of a string array, and two hash indexes. Tensor data is never
 *  copied.
 */
#include "model/gguf.h"
#include "base/file.h" /* defines: struct lmp_map, lmp_map_open() */
#include "base/text.h" /* defines: lmp_str_escape_n (keys are file text) */

#include <assert.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_ALIGNMENT     (UINT32_C(1) << 24) /* 16 MiB: far above any real writer */

/* ggml tensor types: id -> (name, elements per block, bytes per block, our dtype or -1).
 * Types we cannot dequantize are still sized so that their byte ranges get checked. */
static const struct ggml_type_info {
    const char *name;
    int64_t     block, bytes;
    int         dtype;
} ggml_types[] = {
    [0]  = {"F32", 1, 4, LMP_DTYPE_F32},
    [1]  = {"F16", 1, 2, LMP_DTYPE_F16},
    [2]  = {"Q4_0", 32, 18, LMP_DTYPE_Q4_0},
    [3]  = {"Q4_1", 32, 20, LMP_DTYPE_Q4_1},
    [6]  = {"Q5_0", 32, 22, LMP_DTYPE_Q5_0},
    [7]  = {"Q5_1", 32, 24, LMP_DTYPE_Q5_1},
    [8]  = {"Q8_0", 32, 34, LMP_DTYPE_Q8_0},
    [9]  = {"Q8_1", 32, 36, -1},
    [10] = {"Q2_K", 256, 84, LMP_DTYPE_Q2_K},
    [11] = {"Q3_K", 256, 110, LMP_DTYPE_Q3_K},
    [12] = {"Q4_K", 256, 144, LMP_DTYPE_Q4_K},
    [13] = {"Q5_K", 256, 176, LMP_DTYPE_Q5_K},
    [14] = {"Q6_K", 256, 210, LMP_DTYPE_Q6_K},
    [15] = {"Q8_K", 256, 292, -1},
    [16] = {"IQ2_XXS", 256, 66, -1},
    [17] = {"IQ2_XS", 256, 74, -1},
    [18] = {"IQ3_XXS", 256, 98, -1},
    [19] = {"IQ1_S", 256, 50, -1},
    [20] = {"IQ4_NL", 32, 18, -1},
    [21] = {"IQ3_S", 256, 110, -1},
    [22] = {"IQ2_S", 256, 82, -1},
    [23] = {"IQ4_XS", 256, 136, -1},
    [24] = {"I8", 1, 1, -1},
    [25] = {"I16", 1, 2, -1},
    [26] = {"I32", 1, 4, -1},
    [27] = {"I64", 1, 8, -1},
    [28] = {"F64", 1, 8, -1},
    [29] = {"IQ1_M", 256, 56, -1},
    [30] = {"BF16", 1, 2, LMP_DTYPE_BF16},
    [34] = {"TQ1_0", 256, 54, -1},
    [35] = {"TQ2_0", 256, 66, -1},
    [39] = {"MXFP4", 32, 17, -1},
};
#define N_GGML_TYPES ((uint32_t)(sizeof(ggml_types) / sizeof(ggml_types[0])))

/* One metadata entry. Offsets are into the image. */
struct gguf_kv {
    uint64_t           key_off, key_len;
    enum lmp_gguf_type type;
    enum lmp_gguf_type elem;    /* arrays: element type */
    uint64_t           val_off; /* scalar value / string bytes / first array element */
    uint64_t           n;       /* string: length; array: element count */
    uint64_t          *str_off; /* string arrays: (n) offset of each string's bytes */
};

struct lmp_gguf {
    char              *name; /* path or caller's name, for messages */
    struct lmp_map     map;  /* owned when opened from a path */
    const uint8_t     *data; /* the image */
    size_t             size; /* bytes */
    uint32_t           version;
    uint32_t           alignment; /* bytes */
    uint64_t           data_off;  /* start of the data section */
    int64_t            n_kv, n_tensors;
    struct gguf_kv    *kv;      /* (n_kv) */
    struct lmp_tensor *tensors; /* (n_tensors) */
    int64_t           *kv_hash; /* (kv_cap) index into kv, -1 = empty */
    int64_t           *t_hash;  /* (t_cap) index into tensors, -1 = empty */
    uint64_t           kv_cap, t_cap;
};

/* ---- small helpers -------------------------------------------------------------- */

static uint32_t rd_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t rd_u64(const uint8_t *p) {
    return (uint64_t)rd_u32(p) | (uint64_t)rd_u32(p + 4) << 32;
}

static uint64_t hash_bytes(const void *s, size_t n) { /* FNV-1a */
    const uint8_t *p = s;
    uint64_t       h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

static const char *type_name(enum lmp_gguf_type t) {
    static const char *const names[] = {"uint8",  "int8",    "uint16", "int16",  "uint32",
                                        "int32",  "float32", "bool",   "string", "array",
                                        "uint64", "int64",   "float64"};
    return (unsigned)t < sizeof(names) / sizeof(names[0]) ? names[t] : "?";
}

/* Bytes of one scalar of type t; 0 for string, array and unknown types. */
static uint64_t scalar_size(enum lmp_gguf_type t) {
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
    case LMP_GGUF_STRING:
    case LMP_GGUF_ARRAY:
        return 0;
    }
    return 0;
}

/* ---- the parse cursor ----------------------------------------------------------- */

struct cursor {
    struct lmp_gguf *g;
    uint64_t         pos;
    struct lmp_err  *err;
};

static uint64_t left(const struct cursor *c) {
    return c->g->size - c->pos;
}

static enum lmp_status truncated(struct cursor *c, const char *what) {
    return lmp_err_set(c->err, LMP_EFORMAT, "'%s': truncated at offset %" PRIu64 " reading %s",
                       c->g->name, c->pos, what);
}

static enum lmp_status get_u32(struct cursor *c, uint32_t *v, const char *what) {
    if (left(c) < 4) return truncated(c, what);
    *v = rd_u32(c->g->data + c->pos);
    c->pos += 4;
    return LMP_OK;
}

static enum lmp_status get_u64(struct cursor *c, uint64_t *v, const char *what) {
    if (left(c) < 8) return truncated(c, what);
    *v = rd_u64(c->g->data + c->pos);
    c->pos += 8;
    return LMP_OK;
}

/* A string: *off, *len set to its bytes, which are inside the image. */
static enum lmp_status get_str(struct cursor *c, uint64_t *off, uint64_t *len, const char *what) {
    enum lmp_status st = get_u64(c, len, what);
    if (st) return st;
    if (*len > left(c))
        return lmp_err_set(c->err, LMP_EFORMAT,
                           "'%s': %s at offset %" PRIu64 " has length %" PRIu64 " but only %" PRIu64
                           " bytes follow",
                           c->g->name, what, c->pos - 8, *len, left(c));
    *off = c->pos;
    c->pos += *len;
    return LMP_OK;
}

/* ---- hash indexes ------------------------------------------------------------------ */

static uint64_t hash_cap(int64_t n) {
    uint64_t cap = 16;
    while (cap < (uint64_t)n * 2) cap <<= 1;
    return cap;
}

static struct lmp_gguf_str kv_key(const struct lmp_gguf *g, int64_t i) {
    return (struct lmp_gguf_str){(const char *)g->data + g->kv[i].key_off, g->kv[i].key_len};
}

/* Slot of key (len bytes) in the kv index: its entry, or the empty slot where it goes. */
static uint64_t kv_slot(const struct lmp_gguf *g, const char *key, size_t len) {
    uint64_t mask = g->kv_cap - 1, h = hash_bytes(key, len) & mask;
    for (;; h = (h + 1) & mask) {
        int64_t i = g->kv_hash[h];
        if (i < 0) return h;
        struct lmp_gguf_str k = kv_key(g, i);
        if (k.len == len && memcmp(k.s, key, len) == 0) return h;
    }
}

static uint64_t t_slot(const struct lmp_gguf *g, const char *name, size_t len) {
    uint64_t mask = g->t_cap - 1, h = hash_bytes(name, len) & mask;
    for (;; h = (h + 1) & mask) {
        int64_t i = g->t_hash[h];
        if (i < 0) return h;
        const char *s = g->tensors[i].name;
        if (strlen(s) == len && memcmp(s, name, len) == 0) return h;
    }
}

/* ---- parsing -------------------------------------------------------------------- */

/* The value of kv (type already read), leaving the cursor after it. */
static enum lmp_status parse_value(struct cursor *c, struct gguf_kv *kv) {
    struct lmp_gguf *g   = c->g;
    const char      *key = (const char *)g->data + kv->key_off;
    char             q[128]; /* the key for messages: escaped (control bytes), cut */
    enum lmp_status  st;
    lmp_str_escape_n(q, sizeof(q), key, kv->key_len);
    kv->val_off = c->pos;
    if (kv->type == LMP_GGUF_STRING) {
        if ((st = get_str(c, &kv->val_off, &kv->n, "a string value"))) return st;
        return LMP_OK;
    }
    if (kv->type != LMP_GGUF_ARRAY) {
        uint64_t sz = scalar_size(kv->type);
        if (sz == 0)
            return lmp_err_set(c->err, LMP_EFORMAT, "'%s': key '%s' has unknown value type %u",
                               g->name, q, (unsigned)kv->type);
        if (left(c) < sz) return truncated(c, "a scalar value");
        c->pos += sz;
        return LMP_OK;
    }
    uint32_t elem = 0;
    if ((st = get_u32(c, &elem, "an array type")) || (st = get_u64(c, &kv->n, "an array length")))
        return st;
    kv->elem    = (enum lmp_gguf_type)elem;
    kv->val_off = c->pos;
    if (kv->elem == LMP_GGUF_ARRAY)
        return lmp_err_set(c->err, LMP_EUNSUP, "'%s': key '%s' is an array of arrays", g->name, q);
    if (kv->elem != LMP_GGUF_STRING) {
        uint64_t sz = scalar_size(kv->elem);
        if (sz == 0)
            return lmp_err_set(c->err, LMP_EFORMAT, "'%s': key '%s' is an array of unknown type %u",
                               g->name, q, (unsigned)elem);
        if (kv->n > left(c) / sz)
            return lmp_err_set(c->err, LMP_EFORMAT,
                               "'%s': array '%s' of %" PRIu64 " %s does not fit in the %" PRIu64
                               " bytes left",
                               g->name, q, kv->n, type_name(kv->elem), left(c));
        c->pos += kv->n * sz;
        return LMP_OK;
    }
    /* string array: each element needs at least its 8-byte length */
    if (kv->n > left(c) / 8)
        return lmp_err_set(c->err, LMP_EFORMAT,
                           "'%s': string array '%s' of %" PRIu64
                           " strings does not fit in the %" PRIu64 " bytes left",
                           g->name, q, kv->n, left(c));
    kv->str_off = malloc((kv->n ? kv->n : 1) * sizeof(*kv->str_off));
    if (kv->str_off == NULL)
        return lmp_err_set(c->err, LMP_ENOMEM, "'%s': out of memory indexing '%s'", g->name, q);
    for (uint64_t i = 0; i < kv->n; i++) {
        uint64_t len = 0;
        if ((st = get_str(c, &kv->str_off[i], &len, "a string array element"))) return st;
    }
    return LMP_OK;
}

static enum lmp_status parse_kvs(struct cursor *c) {
    struct lmp_gguf *g = c->g;
    enum lmp_status  st;
    for (int64_t i = 0; i < g->n_kv; i++) {
        struct gguf_kv *kv   = &g->kv[i];
        uint32_t        type = 0;
        if ((st = get_str(c, &kv->key_off, &kv->key_len, "a metadata key")) ||
            (st = get_u32(c, &type, "a metadata value type")))
            return st;
        kv->type = (enum lmp_gguf_type)type;
        if ((st = parse_value(c, kv))) return st;
        struct lmp_gguf_str k    = kv_key(g, i);
        uint64_t            slot = kv_slot(g, k.s, k.len);
        if (g->kv_hash[slot] >= 0) {
            char q[128];
            return lmp_err_set(c->err, LMP_EFORMAT, "'%s': duplicate metadata key '%s'", g->name,
                               lmp_str_escape_n(q, sizeof(q), k.s, k.len));
        }
        g->kv_hash[slot] = i;
    }
    return LMP_OK;
}

/* general.alignment: any unsigned integer type holding a power of two. */
static enum lmp_status read_alignment(struct lmp_gguf *g, struct lmp_err *err) {
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    int64_t idx  = lmp_gguf_find(g, "general.alignment");
    if (idx < 0) return LMP_OK;
    int64_t a;
    if (!lmp_gguf_get_i64(g, "general.alignment", &a))
        return lmp_err_set(err, LMP_EFORMAT,
                           "'%s': general.alignment has type %s, expected an "
                           "integer",
                           g->name, type_name(g->kv[idx].type));
    if (a <= 0 || a > (int64_t)GGUF_MAX_ALIGNMENT || (a & (a - 1)) != 0)
        return lmp_err_set(err, LMP_EFORMAT,
                           "'%s': general.alignment %" PRId64
                           " is not a power of two up to %" PRIu32,
                           g->name, a, GGUF_MAX_ALIGNMENT);
    g->alignment = (uint32_t)a;
    return LMP_OK;
}

/* Tensor infos: shapes, types and offsets (relative, checked later). */
static enum lmp_status parse_tensor_infos(struct cursor *c, uint64_t *rel_off, uint32_t *types) {
    struct lmp_gguf *g = c->g;
    enum lmp_status  st;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        struct lmp_tensor *t        = &g->tensors[i];
        uint64_t           name_off = 0, name_len = 0;
        if ((st = get_str(c, &name_off, &name_len, "a tensor name"))) return st;
        const char *name = (const char *)g->data + name_off;
        bool        ctrl = false; /* names end up in messages: one line, no terminal escapes */
        for (uint64_t k = 0; k < name_len && !ctrl; k++)
            ctrl = (uint8_t)name[k] < 0x20 || name[k] == 0x7f;
        if (name_len == 0 || name_len >= LMP_NAME_MAX || ctrl)
            return lmp_err_set(c->err, LMP_EFORMAT,
                               "'%s': tensor %" PRId64 " has an invalid name (length %" PRIu64
                               ", at most %d, no control characters)",
                               g->name, i, name_len, LMP_NAME_MAX - 1);
        memcpy(t->name, name, name_len);
        t->name[name_len] = '\0';
        uint64_t slot     = t_slot(g, t->name, name_len);
        if (g->t_hash[slot] >= 0)
            return lmp_err_set(c->err, LMP_EFORMAT, "'%s': duplicate tensor '%s'", g->name,
                               t->name);
        g->t_hash[slot] = i;

        uint32_t n_dims = 0;
        if ((st = get_u32(c, &n_dims, "a tensor rank"))) return st;
        if (n_dims < 1 || n_dims > LMP_MAX_DIMS)
            return lmp_err_set(c->err, LMP_EFORMAT,
                               "'%s': tensor '%s' has %u dimensions "
                               "(1 to %d allowed)",
                               g->name, t->name, n_dims, LMP_MAX_DIMS);
        t->n_dims = (int)n_dims;
        for (uint32_t d = 0; d < n_dims; d++) {
            uint64_t ne = 0;
            if ((st = get_u64(c, &ne, "a tensor dimension"))) return st;
            if (ne > (uint64_t)INT64_MAX)
                return lmp_err_set(c->err, LMP_EFORMAT, "'%s': tensor '%s' has dimension %" PRIu64,
                                   g->name, t->name, ne);
            t->shape[n_dims - 1 - d] = (int64_t)ne; /* GGUF: innermost first */
        }
        if ((st = get_u32(c, &types[i], "a tensor type")) ||
            (st = get_u64(c, &rel_off[i], "a tensor offset")))
            return st;
    }
    return LMP_OK;
}

/* Bytes the tensor needs as ggml type `type` (known): -1 when the row is not a whole
 * number of blocks or the size overflows. */
static int64_t ggml_nbytes(const struct lmp_tensor *t, const struct ggml_type_info *ti) {
    const int64_t limit = INT64_C(1) << 50;
    int64_t       n     = 1;
    for (int d = 0; d < t->n_dims; d++) {
        if (t->shape[d] > 0 && n > limit / t->shape[d]) return -1;
        n *= t->shape[d];
    }
    if (t->shape[t->n_dims - 1] % ti->block != 0) return -1;
    return n / ti->block * ti->bytes;
}

struct placed {
    uint64_t off; /* relative to the data section */
    int64_t  i;   /* tensor index */
};
static int cmp_placed(const void *a, const void *b) {
    const struct placed *x = a, *y = b;
    if (x->off != y->off) return x->off < y->off ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

/* Each tensor's bytes (its type x shape) must end before the next tensor's start: a
 * writer that sized a type's blocks differently from us (or a corrupt offset) shows up
 * here as a tensor whose bytes run into another's, named with both. */
static enum lmp_status check_overlaps(const struct lmp_gguf *g, const uint64_t *rel_off,
                                      const uint32_t *types, struct lmp_err *err) {
    if (g->n_tensors < 2) return LMP_OK;
    struct placed *pl = malloc((size_t)g->n_tensors * sizeof(*pl));
    if (pl == NULL) return lmp_err_set(err, LMP_ENOMEM, "'%s': out of memory", g->name);
    for (int64_t i = 0; i < g->n_tensors; i++) pl[i] = (struct placed){rel_off[i], i};
    qsort(pl, (size_t)g->n_tensors, sizeof(*pl), cmp_placed);
    enum lmp_status st = LMP_OK;
    for (int64_t k = 0; k + 1 < g->n_tensors && st == LMP_OK; k++) {
        const struct lmp_tensor *t = &g->tensors[pl[k].i], *u = &g->tensors[pl[k + 1].i];
        uint64_t                 room = pl[k + 1].off - pl[k].off;
        if (t->nbytes > room)
            st = lmp_err_set(err, LMP_EFORMAT,
                             "'%s': tensor '%s' (%s, %" PRId64 " elements) needs %" PRIu64
                             " bytes but tensor '%s' starts %" PRIu64 " bytes after it",
                             g->name, t->name, ggml_types[types[pl[k].i]].name,
                             lmp_tensor_n_elem(t), t->nbytes, u->name, room);
    }
    free(pl);
    return st;
}

static enum lmp_status place_tensors(struct lmp_gguf *g, const uint64_t *rel_off,
                                     const uint32_t *types, struct lmp_err *err) {
    const struct lmp_tensor *unsup      = NULL;
    const char              *unsup_type = NULL;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        struct lmp_tensor *t = &g->tensors[i];
        if (types[i] >= N_GGML_TYPES || ggml_types[types[i]].name == NULL)
            return lmp_err_set(err, LMP_EUNSUP, "'%s': tensor '%s' has unknown ggml type %u",
                               g->name, t->name, types[i]);
        const struct ggml_type_info *ti     = &ggml_types[types[i]];
        int64_t                      nbytes = ggml_nbytes(t, ti);
        if (nbytes < 0)
            return lmp_err_set(
                err, LMP_EFORMAT,
                "'%s': tensor '%s' has a shape invalid for type %s (row length %" PRId64
                ", block %" PRId64 ")",
                g->name, t->name, ti->name, t->shape[t->n_dims - 1], ti->block);
        if (rel_off[i] % g->alignment != 0)
            return lmp_err_set(err, LMP_EFORMAT,
                               "'%s': tensor '%s' offset %" PRIu64
                               " is not a multiple of the alignment %u",
                               g->name, t->name, rel_off[i], g->alignment);
        uint64_t room = g->size - g->data_off; /* data_off <= size checked by the caller */
        if (rel_off[i] > room || (uint64_t)nbytes > room - rel_off[i])
            return lmp_err_set(err, LMP_EFORMAT,
                               "'%s': tensor '%s' data [%" PRIu64 ", +%" PRId64
                               ") lies beyond the end of the file (%zu bytes)",
                               g->name, t->name, g->data_off + rel_off[i], nbytes, g->size);
        t->data   = g->data + g->data_off + rel_off[i];
        t->nbytes = (uint64_t)nbytes;
        if (ti->dtype >= 0)
            t->dtype = (enum lmp_dtype)ti->dtype;
        else if (unsup == NULL)
            unsup = t, unsup_type = ti->name;
    }
    enum lmp_status st = check_overlaps(g, rel_off, types, err);
    if (st != LMP_OK) return st;
    /* Reported only after every range has been checked: a corrupt file says so first. */
    if (unsup != NULL)
        return lmp_err_set(err, LMP_EUNSUP,
                           "'%s': tensor '%s' has unsupported type %s "
                           "(F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K..Q6_K)",
                           g->name, unsup->name, unsup_type);
    return LMP_OK;
}

static enum lmp_status parse(struct lmp_gguf *g, struct lmp_err *err) {
    struct cursor   c = {g, 0, err};
    enum lmp_status st;
    uint64_t       *rel_off   = NULL;
    uint32_t       *types     = NULL;
    uint32_t        version   = 0;
    uint64_t        n_tensors = 0, n_kv = 0;

    if (g->size < 4 || memcmp(g->data, "GGUF", 4) != 0)
        return lmp_err_set(err, LMP_EFORMAT, "'%s': not a GGUF file (bad magic)", g->name);
    c.pos = 4;
    if ((st = get_u32(&c, &version, "the version"))) return st;
    g->version = version;
    if (version == 1)
        return lmp_err_set(err, LMP_EUNSUP, "'%s': GGUF version 1 is not supported (2 or 3)",
                           g->name);
    if (version != 2 && version != 3) {
        if ((version & 0xffff) == 0 && (version >> 24) >= 1 && (version >> 24) <= 3)
            return lmp_err_set(err, LMP_EUNSUP, "'%s': big-endian GGUF is not supported", g->name);
        return lmp_err_set(err, LMP_EUNSUP, "'%s': GGUF version %u is not supported (2 or 3)",
                           g->name, version);
    }
    if ((st = get_u64(&c, &n_tensors, "the tensor count")) ||
        (st = get_u64(&c, &n_kv, "the metadata count")))
        return st;
    /* A key takes at least 13 bytes (length, type, 1-byte value), a tensor info 32
     * (name length, rank, one dimension, type, offset): bound the counts by what is left
     * before allocating anything proportional to them. */
    if (n_kv > left(&c) / 13)
        return lmp_err_set(err, LMP_EFORMAT,
                           "'%s': metadata count %" PRIu64 " is impossible for a file of %zu bytes",
                           g->name, n_kv, g->size);
    if (n_tensors > left(&c) / 32 || n_tensors > (left(&c) - n_kv * 13) / 32)
        return lmp_err_set(err, LMP_EFORMAT,
                           "'%s': tensor count %" PRIu64 " is impossible for a file of %zu bytes",
                           g->name, n_tensors, g->size);
    g->n_kv      = (int64_t)n_kv;
    g->n_tensors = (int64_t)n_tensors;
    g->kv_cap    = hash_cap(g->n_kv);
    g->t_cap     = hash_cap(g->n_tensors);
    g->kv        = calloc(n_kv ? n_kv : 1, sizeof(*g->kv));
    g->tensors   = calloc(n_tensors ? n_tensors : 1, sizeof(*g->tensors));
    g->kv_hash   = malloc(g->kv_cap * sizeof(*g->kv_hash));
    g->t_hash    = malloc(g->t_cap * sizeof(*g->t_hash));
    rel_off      = malloc((n_tensors ? n_tensors : 1) * sizeof(*rel_off));
    types        = malloc((n_tensors ? n_tensors : 1) * sizeof(*types));
    if (!g->kv || !g->tensors || !g->kv_hash || !g->t_hash || !rel_off || !types) {
        st = lmp_err_set(err, LMP_ENOMEM, "'%s': out of memory reading the header", g->name);
        goto out;
    }
    memset(g->kv_hash, 0xff, g->kv_cap * sizeof(*g->kv_hash)); /* all -1 */
    memset(g->t_hash, 0xff, g->t_cap * sizeof(*g->t_hash));

    if ((st = parse_kvs(&c)) || (st = read_alignment(g, err)) ||
        (st = parse_tensor_infos(&c, rel_off, types)))
        goto out;
    g->data_off = (c.pos + g->alignment - 1) / g->alignment * g->alignment;
    if (g->n_tensors > 0 && g->data_off > g->size) {
        st = lmp_err_set(err, LMP_EFORMAT,
                         "'%s': truncated: the data section would start at "
                         "offset %" PRIu64 ", after the end of the file (%zu bytes)",
                         g->name, g->data_off, g->size);
        goto out;
    }
    st = place_tensors(g, rel_off, types, err);
out:
    free(rel_off);
    free(types);
    return st;
}

static enum lmp_status gguf_new(const char *name, struct lmp_gguf **out, struct lmp_err *err) {
    *out = calloc(1, sizeof(**out));
    if (*out == NULL || ((*out)->name = strdup(name)) == NULL) {
        free(*out);
        *out = NULL;
        return lmp_err_set(err, LMP_ENOMEM, "'%s': out of memory", name);
    }
    return LMP_OK;
}

enum lmp_status lmp_gguf_parse(const uint8_t *data, size_t size, const char *name,
                               struct lmp_gguf **out, struct lmp_err *err) {
    assert(out && name);
    enum lmp_status st = gguf_new(name, out, err);
    if (st) return st;
    (*out)->data = data;
    (*out)->size = data ? size : 0;
    if ((st = parse(*out, err))) lmp_gguf_close(out);
    return st;
}

enum lmp_status lmp_gguf_open(const char *path, struct lmp_gguf **out, struct lmp_err *err) {
    assert(out && path);
    enum lmp_status st = gguf_new(path, out, err);
    if (st) return st;
    struct lmp_gguf *g = *out;
    if ((st = lmp_map_open(&g->map, path, err))) goto fail;
    g->data = g->map.data;
    g->size = g->map.size;
    if ((st = parse(g, err))) goto fail;
    return LMP_OK;
fail:
    lmp_gguf_close(out);
    return st;
}

void lmp_gguf_close(struct lmp_gguf **gp) {
    if (gp == NULL || *gp == NULL) return;
    struct lmp_gguf *g = *gp;
    if (g->kv)
        for (int64_t i = 0; i < g->n_kv; i++) free(g->kv[i].str_off);
    free(g->kv);
    free(g->tensors);
    free(g->kv_hash);
    free(g->t_hash);
    lmp_map_close(&g->map);
    free(g->name);
    free(g);
    *gp = NULL;
}

const char *lmp_gguf_path(const struct lmp_gguf *g) {
    return g->name;
}
uint32_t lmp_gguf_version(const struct lmp_gguf *g) {
    return g->version;
}

/* ---- metadata ------------------------------------------------------------------- */

int64_t lmp_gguf_n_kv(const struct lmp_gguf *g) {
    return g->n_kv;
}

int64_t lmp_gguf_find(const struct lmp_gguf *g, const char *key) {
    assert(g && key);
    return g->kv_hash[kv_slot(g, key, strlen(key))];
}

struct lmp_gguf_str lmp_gguf_key(const struct lmp_gguf *g, int64_t idx) {
    if (idx < 0 || idx >= g->n_kv) return (struct lmp_gguf_str){NULL, 0};
    return kv_key(g, idx);
}

enum lmp_gguf_type lmp_gguf_kv_type(const struct lmp_gguf *g, int64_t idx) {
    assert(idx >= 0 && idx < g->n_kv);
    return g->kv[idx].type;
}

static const struct gguf_kv *find_kv(const struct lmp_gguf *g, const char *key) {
    int64_t i = lmp_gguf_find(g, key);
    return i < 0 ? NULL : &g->kv[i];
}

bool lmp_gguf_get_i64(const struct lmp_gguf *g, const char *key, int64_t *v) {
    const struct gguf_kv *kv = find_kv(g, key);
    if (kv == NULL) return false;
    const uint8_t *p = g->data + kv->val_off;
    switch (kv->type) {
    case LMP_GGUF_UINT8:
        *v = p[0];
        return true;
    case LMP_GGUF_INT8:
        *v = (int8_t)p[0];
        return true;
    case LMP_GGUF_UINT16:
        *v = (uint16_t)(p[0] | p[1] << 8);
        return true;
    case LMP_GGUF_INT16:
        *v = (int16_t)(uint16_t)(p[0] | p[1] << 8);
        return true;
    case LMP_GGUF_UINT32:
        *v = rd_u32(p);
        return true;
    case LMP_GGUF_INT32:
        *v = (int32_t)rd_u32(p);
        return true;
    case LMP_GGUF_INT64:
        *v = (int64_t)rd_u64(p);
        return true;
    case LMP_GGUF_UINT64: {
        uint64_t u = rd_u64(p);
        if (u > (uint64_t)INT64_MAX) return false;
        *v = (int64_t)u;
        return true;
    }
    default:
        return false;
    }
}

bool lmp_gguf_get_f64(const struct lmp_gguf *g, const char *key, double *v) {
    const struct gguf_kv *kv = find_kv(g, key);
    if (kv == NULL) return false;
    const uint8_t *p = g->data + kv->val_off;
    if (kv->type == LMP_GGUF_FLOAT32) {
        uint32_t u = rd_u32(p);
        float    f;
        memcpy(&f, &u, 4);
        *v = f;
        return true;
    }
    if (kv->type == LMP_GGUF_FLOAT64) {
        uint64_t u = rd_u64(p);
        memcpy(v, &u, 8);
        return true;
    }
    return false;
}

bool lmp_gguf_get_bool(const struct lmp_gguf *g, const char *key, bool *v) {
    const struct gguf_kv *kv = find_kv(g, key);
    if (kv == NULL || kv->type != LMP_GGUF_BOOL) return false;
    *v = g->data[kv->val_off] != 0;
    return true;
}

bool lmp_gguf_get_str(const struct lmp_gguf *g, const char *key, struct lmp_gguf_str *v) {
    const struct gguf_kv *kv = find_kv(g, key);
    if (kv == NULL || kv->type != LMP_GGUF_STRING) return false;
    *v = (struct lmp_gguf_str){(const char *)g->data + kv->val_off, kv->n};
    return true;
}

int64_t lmp_gguf_arr_n(const struct lmp_gguf *g, const char *key, enum lmp_gguf_type *elem) {
    const struct gguf_kv *kv = find_kv(g, key);
    if (kv == NULL || kv->type != LMP_GGUF_ARRAY) return -1;
    if (elem) *elem = kv->elem;
    return (int64_t)kv->n;
}

const void *lmp_gguf_arr_data(const struct lmp_gguf *g, const char *key) {
    const struct gguf_kv *kv = find_kv(g, key);
    if (kv == NULL || kv->type != LMP_GGUF_ARRAY || kv->elem == LMP_GGUF_STRING) return NULL;
    return g->data + kv->val_off;
}

struct lmp_gguf_str lmp_gguf_arr_str(const struct lmp_gguf *g, const char *key, int64_t i) {
    const struct gguf_kv *kv = find_kv(g, key);
    if (kv == NULL || kv->type != LMP_GGUF_ARRAY || kv->elem != LMP_GGUF_STRING || i < 0 ||
        (uint64_t)i >= kv->n)
        return (struct lmp_gguf_str){NULL, 0};
    uint64_t off = kv->str_off[i];
    return (struct lmp_gguf_str){(const char *)g->data + off, rd_u64(g->data + off - 8)};
}

/* ---- tensors -------------------------------------------------------------------- */

int64_t lmp_gguf_n_tensors(const struct lmp_gguf *g) {
    return g->n_tensors;
}

const struct lmp_tensor *lmp_gguf_tensor(const struct lmp_gguf *g, int64_t i) {
    if (i < 0 || i >= g->n_tensors) return NULL;
    return &g->tensors[i];
}

const struct lmp_tensor *lmp_gguf_find_tensor(const struct lmp_gguf *g, const char *name) {
    assert(g && name);
    int64_t i = g->t_hash[t_slot(g, name, strlen(name))];
    return i < 0 ? NULL : &g->tensors[i];
}
