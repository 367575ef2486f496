/*  safetensors - parse and validate the header of a safetensors file
 *
 *  Layout: an 8-byte little-endian header length N, N bytes of JSON (an object
 *  mapping tensor names to {"dtype", "shape", "data_offsets": [begin, end]}, plus an
 *  optional "__metadata__" object that is ignored), then the data section; offsets
 *  are relative to the start of the data section.
 *
 *  The parser works on memory (a file map or a fuzzer's buffer) and never reads
 *  outside [data, data + size). It checks that the header fits the file, that every
 *  tensor's byte range lies inside the data section, and, for every dtype whose
 *  element size is known, that end - begin is exactly what shape and dtype need.
 *  Tensors of dtypes lmpress cannot compute with (I64, F8_E4M3, ...) or of rank above
 *  LMP_MAX_DIMS are recorded with `unsup` set, so that a reader can reject them only
 *  when a model actually needs them. Data is not required to be aligned.
 */
#ifndef LMP_MODEL_SAFETENSORS_H
#define LMP_MODEL_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>
#include "base/status.h" /* defines: enum lmp_status, struct lmp_err */
#include "model/model.h" /* defines: enum lmp_dtype, LMP_MAX_DIMS, LMP_NAME_MAX */

#define LMP_SAFETENSORS_MAX_HEADER (100u << 20) /* bytes; the format's own limit */

struct lmp_st_tensor {
    char           name[LMP_NAME_MAX];
    char           dtype_name[16];      /* as written in the header: "BF16", "I64" */
    enum lmp_dtype dtype;               /* valid only when unsup is NULL */
    const char    *unsup;               /* NULL, or why lmpress cannot use it: "dtype", "rank" */
    int            n_dims;              /* may exceed LMP_MAX_DIMS when unsup == "rank" */
    int64_t        shape[LMP_MAX_DIMS]; /* outermost first; first LMP_MAX_DIMS dims only */
    uint64_t       begin, end;          /* bytes, relative to the data section */
};

struct lmp_safetensors {
    struct lmp_st_tensor *tensors; /* (n_tensors), in header order */
    int64_t               n_tensors;
    uint64_t              data_offset; /* bytes from the file start: 8 + header length */
    uint64_t              data_size;   /* bytes of the data section (to the end of file) */
};

/* Parse the safetensors file image data[0, size) into *out (zeroed first; release with
 * lmp_safetensors_release even on failure). name is used in messages only.
 * RET LMP_OK; LMP_EFORMAT (truncated, bad JSON, bad field, range outside the data
 * section, size not matching shape and dtype, duplicate name); LMP_ENOMEM. */
enum lmp_status lmp_safetensors_parse_header(const uint8_t *data, size_t size, const char *name,
                                             struct lmp_safetensors *out, struct lmp_err *err);

/* Free what parse allocated; *st is zeroed. Safe on a zeroed struct. */
void lmp_safetensors_release(struct lmp_safetensors *st);

/* The record named name, or NULL. Linear search. */
const struct lmp_st_tensor *lmp_safetensors_find(const struct lmp_safetensors *st,
                                                 const char                   *name);

#endif /* LMP_MODEL_SAFETENSORS_H */
