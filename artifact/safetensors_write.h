/*  safetensors_write - stream tensors into a safetensors file
 *
 *  The reader is model/safetensors.{h,c}; this is the other direction, used by the
 *  Hugging Face export (artifact/export_hf.h). Layout: an 8-byte little-endian header
 *  length N, N bytes of JSON ({"__metadata__": {"format": "pt"}, then one object per
 *  tensor: {"dtype", "shape", "data_offsets": [begin, end]}), padded with spaces so the
 *  data section starts at a multiple of 8 bytes, then the tensors' bytes back to back
 *  in declaration order (the format forbids holes). Declare tensors with larger
 *  elements first and every tensor's data stays aligned to its element size.
 *
 *  Calling sequence:
 *
 *      struct lmp_st_writer *w = lmp_st_writer_new();
 *      for each tensor: lmp_st_writer_add(w, name, LMP_ST_F16, n_dims, shape, &err);
 *      lmp_st_writer_open(w, path, shown_name, &err);        // creates path, writes the header
 *      for each tensor in order: lmp_st_writer_write(w, bytes, n, &err) (any number of calls);
 *      lmp_st_writer_close(w, &err);                          // checks the count, fsyncs
 *      lmp_st_writer_destroy(&w);                              // always; closes an open file
 *
 *  The file is created with O_EXCL; on failure the caller removes it (the export writes
 *  into a temporary directory that it removes whole). Errors name shown_name (the path the
 *  user will see) and are LMP_ENOSPC for a full disk (or a file-size limit), LMP_EIO
 *  otherwise. The fault hook LMP_FAULT_WRITE_LIMIT=<bytes> (as for artifact parts) makes
 *  the file fail with ENOSPC once that many bytes were written to it.
 */
#ifndef LMP_ARTIFACT_SAFETENSORS_WRITE_H
#define LMP_ARTIFACT_SAFETENSORS_WRITE_H

#include <stddef.h>
#include <stdint.h>
#include "base/status.h" /* defines: enum lmp_status, struct lmp_err */

enum lmp_st_dtype { LMP_ST_F32, LMP_ST_F16, LMP_ST_I16, LMP_ST_I8 };

/* "F32", "F16", "I16", "I8" */
const char *lmp_st_dtype_name(enum lmp_st_dtype t);
/* Bytes per element: 4, 2, 2, 1. */
int lmp_st_dtype_size(enum lmp_st_dtype t);

struct lmp_st_writer;

/* NULL on out-of-memory. */
struct lmp_st_writer *lmp_st_writer_new(void);
/* Free *w (closing its file if open) and set it to NULL. Safe on NULL. */
void lmp_st_writer_destroy(struct lmp_st_writer **w);

/* Declare the next tensor: name (copied; no '"', '\\' or control characters, not
 * "__metadata__"), dtype and shape (n_dims 0..8, every dimension >= 0). RET LMP_OK,
 * LMP_EINVAL (bad or duplicate name, bad shape, after open), LMP_ENOMEM. */
enum lmp_status lmp_st_writer_add(struct lmp_st_writer *w, const char *name,
                                  enum lmp_st_dtype dtype, int n_dims, const int64_t *shape,
                                  struct lmp_err *err);

/* Bytes the file will have once written (header + data). */
uint64_t lmp_st_writer_file_size(const struct lmp_st_writer *w);

/* Create path (it must not exist) and write the header. shown_name: the name in
 * messages (NULL: path). RET LMP_OK, LMP_ENOSPC, LMP_EIO, LMP_ENOMEM. */
enum lmp_status lmp_st_writer_open(struct lmp_st_writer *w, const char *path,
                                   const char *shown_name, struct lmp_err *err);

/* Append n bytes of tensor data (little-endian, the declared tensors in order). More
 * bytes than declared in total is LMP_EINVAL. */
enum lmp_status lmp_st_writer_write(struct lmp_st_writer *w, const void *p, size_t n,
                                    struct lmp_err *err);

/* Check that every declared byte was written (else LMP_EINVAL), fsync and close. */
enum lmp_status lmp_st_writer_close(struct lmp_st_writer *w, struct lmp_err *err);

#endif /* LMP_ARTIFACT_SAFETENSORS_WRITE_H */
