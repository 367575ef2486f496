/*  gguf - reader of GGUF v2/v3 files (llama.cpp's model format)
 *
 *  The file is memory-mapped; parsing checks every length, count, offset and
 *  alignment against the file size, so a truncated or corrupt file yields
 *  LMP_EFORMAT with a message naming the file and the field, never a read past
 *  the map. Strings in the returned views point into the map and are NOT
 *  NUL-terminated: use the explicit lengths. The object is immutable after open.
 *
 *  Tensor shapes are reported outermost first (GGUF stores ne[0] innermost;
 *  the reader reverses), so a linear weight is {n_out, n_in} as everywhere else.
 */
#ifndef LMP_MODEL_GGUF_H
#define LMP_MODEL_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "base/status.h" /* defines: enum lmp_status, struct lmp_err */
#include "model/model.h" /* defines: struct lmp_tensor */

enum lmp_gguf_type {
    LMP_GGUF_UINT8   = 0,
    LMP_GGUF_INT8    = 1,
    LMP_GGUF_UINT16  = 2,
    LMP_GGUF_INT16   = 3,
    LMP_GGUF_UINT32  = 4,
    LMP_GGUF_INT32   = 5,
    LMP_GGUF_FLOAT32 = 6,
    LMP_GGUF_BOOL    = 7,
    LMP_GGUF_STRING  = 8,
    LMP_GGUF_ARRAY   = 9,
    LMP_GGUF_UINT64  = 10,
    LMP_GGUF_INT64   = 11,
    LMP_GGUF_FLOAT64 = 12,
};

struct lmp_gguf;

struct lmp_gguf_str {
    const char *s;
    uint64_t    len;
}; /* view into the map */

/* Open and fully validate path. RET LMP_OK, LMP_ENOENT, LMP_EIO, LMP_EFORMAT (bad magic,
 * truncated, offsets beyond the file, misaligned), LMP_EUNSUP (version, tensor type). */
enum lmp_status lmp_gguf_open(const char *path, struct lmp_gguf **out, struct lmp_err *err);

/* Parse a GGUF image already in memory (borrowed; must outlive the object). `name` is
 * used in messages. Same checks as lmp_gguf_open. Used by the fuzz target. */
enum lmp_status lmp_gguf_parse(const uint8_t *data, size_t size, const char *name,
                               struct lmp_gguf **out, struct lmp_err *err);

void lmp_gguf_close(struct lmp_gguf **g);

const char *lmp_gguf_path(const struct lmp_gguf *g);
uint32_t    lmp_gguf_version(const struct lmp_gguf *g);

/* --- metadata ---------------------------------------------------------------- */
int64_t lmp_gguf_n_kv(const struct lmp_gguf *g);
/* Index of key, or -1. */
int64_t             lmp_gguf_find(const struct lmp_gguf *g, const char *key);
struct lmp_gguf_str lmp_gguf_key(const struct lmp_gguf *g, int64_t idx);
enum lmp_gguf_type  lmp_gguf_kv_type(const struct lmp_gguf *g, int64_t idx);

/* Scalar getters by key: true if present and convertible (any integer type for the
 * integer getters, when the value fits; FLOAT32/FLOAT64 for get_f64). */
bool lmp_gguf_get_i64(const struct lmp_gguf *g, const char *key, int64_t *v);
bool lmp_gguf_get_f64(const struct lmp_gguf *g, const char *key, double *v);
bool lmp_gguf_get_bool(const struct lmp_gguf *g, const char *key, bool *v);
bool lmp_gguf_get_str(const struct lmp_gguf *g, const char *key, struct lmp_gguf_str *v);

/* Arrays: element type and count; -1 count if key is absent or not an array. */
int64_t lmp_gguf_arr_n(const struct lmp_gguf *g, const char *key, enum lmp_gguf_type *elem);
/* Pointer to the raw little-endian elements of a numeric array (unaligned: memcpy out). */
const void *lmp_gguf_arr_data(const struct lmp_gguf *g, const char *key);
/* i-th string of a string array (0 <= i < n). O(1): offsets are indexed at open. */
struct lmp_gguf_str lmp_gguf_arr_str(const struct lmp_gguf *g, const char *key, int64_t i);

/* --- tensors ------------------------------------------------------------------ */
int64_t lmp_gguf_n_tensors(const struct lmp_gguf *g);
/* i-th tensor as a model tensor (name NUL-terminated, data into the map). */
const struct lmp_tensor *lmp_gguf_tensor(const struct lmp_gguf *g, int64_t i);
const struct lmp_tensor *lmp_gguf_find_tensor(const struct lmp_gguf *g, const char *name);

#endif /* LMP_MODEL_GGUF_H */
