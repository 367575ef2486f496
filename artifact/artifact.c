/*  artifact - see artifact.h; the layout is specified in docs/artifact.md
 *
 *  Three layers of code:
 *   - h5 helpers: attributes and datasets with checked calls; every dataset carries
 *     an "xxh64" attribute (hash of its little-endian element bytes) verified on read,
 *     so silent corruption of the data is caught, not only of the HDF5 metadata;
 *   - parts: one commit = one HDF5 image built with the core (in-memory) driver, then
 *     written by our own write loop (exact errno, fault injection), fsync, rename;
 *   - the index: which job/layer/tensor/tokenizer lives in the main file or which part.
 */
#include "artifact/artifact.h"
#include "artifact/events.h" /* defines: lmp_events_*, struct lmp_event_list */
#include "base/build.h"      /* defines: lmp_build_id() */
#include "base/file.h" /* defines: lmp_file_read_all(), lmp_path_is_file(), lmp_map_release_pages */
#include "base/text.h" /* defines: lmp_str_escape() */
#include "base/log.h"  /* defines: lmp_log_warn() */
#include "kernels/kernels.h" /* defines: lmp_f32_to_f16(), lmp_f16_to_f32() */

#include <hdf5.h>

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "artifact.c hashes in-memory arrays as little-endian bytes"
#endif

#define FORMAT_MAIN "lmpress-artifact"
#define FORMAT_PART "lmpress-artifact-part"
#define EVENTS_FILE "events.log" /* in the parts directory: artifact/events.h */

/* ITEM_BLOCK names a part only: a block part holds several layers and tensors, indexed as
 * ITEM_LAYER and ITEM_TENSOR items that share its path (lmp_artifact_commit_block). */
enum item_kind { ITEM_JOB, ITEM_LAYER, ITEM_TENSOR, ITEM_TOKENIZER, ITEM_BLOCK, ITEM_COUNT };
static const char *const item_prefix[ITEM_COUNT] = {"job", "layer", "tensor", "tokenizer", "block"};

struct item {
    enum item_kind kind;
    char           name[LMP_NAME_MAX];
    char          *part; /* part file path, or NULL when the item is in the main file */
};

struct lmp_artifact {
    char *path;      /* ART.h5 */
    char *parts_dir; /* ART.h5.parts */
    /* paths derived from path, on the heap: outside text has no fixed size */
    char                   *dir;         /* the directory holding path ("." for a bare name) */
    char                   *tmp_path;    /* ART.h5.tmp, what finalize writes before its rename */
    char                   *lock_path;   /* parts_dir/LOCK */
    char                   *events_file; /* parts_dir/events.log */
    bool                    writer;
    bool                    finalized; /* no more commits */
    int                     lock_fd;   /* writer: flock'ed parts_dir/LOCK; -1 otherwise */
    hid_t                   main;      /* the main file, or H5I_INVALID_HID if absent */
    struct lmp_art_job      job;
    bool                    have_job;
    int64_t                 job_version; /* format_version of the file holding the job */
    struct item            *items;
    int64_t                 n_items, cap_items;
    int64_t                *layer_order; /* (n_layer_order) indices into items, job linear order */
    int64_t                 n_layer_order;
    int64_t                *tensor_order; /* (n_tensor_order) indices into items, sorted by name */
    int64_t                 n_tensor_order;
    struct lmp_events_file *events; /* writer: parts_dir/events.log, appended */
    uint32_t                run;    /* writer: this session's run number (events.h) */
};

static enum lmp_status events_start(struct lmp_artifact *a, struct lmp_err *err);

/* The format version this process writes: LMP_ARTIFACT_FORMAT_VERSION, or 1 for the
 * tests that make a previous-version artifact (lmp_artifact_set_write_version). */
static int write_version = LMP_ARTIFACT_WRITE_VERSION;

/* Formats 2 and 3 store the same types; 3 adds architecture fields (lmp_artifact_cfg_is_v3). */
static int64_t storage_version(int64_t v) {
    return v >= 2 ? 2 : v;
}

/* The main file's format_version: 3 where the model needs the fields of format 3 (so a
 * reader of format 2 refuses it rather than run another model), else the writer's. */
static int64_t main_version(const struct lmp_art_job *job) {
    return write_version >= 2 && lmp_artifact_cfg_is_v3(&job->cfg) ? 3 : write_version;
}

void lmp_artifact_set_write_version(int version) {
    assert(version >= 1 && version <= LMP_ARTIFACT_FORMAT_VERSION);
    write_version = version;
}

/* ------------------------------------------------------------------------------ */
/* small utilities                                                                  */

static void h5_quiet(void) {
    static bool done;
    if (!done) {
        /* No H5close at exit: HDF5 1.10.8's handler crashes (H5F__close_cb) on a file whose
         * H5Fclose failed (a write error), after lmpress has said why it stops. Nothing
         * needs it: parts are built in memory and written by us, the main file is read-only
         * and finalize closes what it writes. Must come before any other HDF5 call. */
        H5dont_atexit();
        H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* errors come back through lmp_err */
        done = true;
    }
}

static char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char  *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static bool is_enospc(int e) {
    return e == ENOSPC || e == EFBIG || e == EDQUOT;
}

/* Names become file names and HDF5 link names: keep them plain. */
static bool name_ok(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n >= LMP_NAME_MAX || s[0] == '.') return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '+' || c == '-'))
            return false;
    }
    return true;
}

/* The directory of path, on the heap ("." for a bare name). NULL when out of memory. */
static char *dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    if (slash == NULL) return lmp_strfmt(".");
    return lmp_strfmt("%.*s", (int)(slash == path ? 1 : slash - path), path);
}

/* Fault injection: LMP_FAULT_WRITE_LIMIT=<bytes> lets each part file write at most
 * that many bytes, then fail with ENOSPC as a full disk would. */
static int64_t fault_write_limit(void) {
    const char *s = getenv("LMP_FAULT_WRITE_LIMIT");
    if (s == NULL || *s == '\0') return -1;
    char     *end = NULL;
    long long v   = strtoll(s, &end, 10);
    return (end && *end == '\0' && v >= 0) ? (int64_t)v : -1;
}

static int write_all(int fd, const uint8_t *p, size_t n) {
    int64_t limit = fault_write_limit();
    size_t  done  = 0;
    while (done < n) {
        size_t want = n - done;
        if (limit >= 0) {
            if ((int64_t)done >= limit) {
                errno = ENOSPC;
                return -1;
            }
            if ((int64_t)(done + want) > limit) want = (size_t)(limit - (int64_t)done);
        }
        if (want > (1u << 30)) want = 1u << 30;
        ssize_t w = write(fd, p + done, want);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        done += (size_t)w;
    }
    return 0;
}

/* ------------------------------------------------------------------------------ */
/* HDF5 attributes and datasets                                                      */

static hid_t str_type(size_t len) {
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0) return t;
    if (H5Tset_size(t, len ? len : 1) < 0 || H5Tset_strpad(t, H5T_STR_NULLTERM) < 0 ||
        H5Tset_cset(t, H5T_CSET_UTF8) < 0) {
        H5Tclose(t);
        return H5I_INVALID_HID;
    }
    return t;
}

/* IEEE binary16, little-endian: HDF5 1.10 has no predefined half type; h5py and
 * h5dump recognise this layout as float16. */
static hid_t f16_type(void) {
    hid_t t = H5Tcopy(H5T_IEEE_F32LE);
    if (t < 0) return t;
    if (H5Tset_fields(t, 15, 10, 5, 0, 10) < 0 || H5Tset_precision(t, 16) < 0 ||
        H5Tset_size(t, 2) < 0 || H5Tset_ebias(t, 15) < 0) {
        H5Tclose(t);
        return H5I_INVALID_HID;
    }
    return t;
}

/* bfloat16 (1 sign, 8 exponent, 7 mantissa bits), little-endian: the top half of an
 * IEEE binary32; h5py reads it as a 2-byte float of that layout. */
static hid_t bf16_type(void) {
    hid_t t = H5Tcopy(H5T_IEEE_F32LE);
    if (t < 0) return t;
    if (H5Tset_fields(t, 15, 7, 8, 0, 7) < 0 || H5Tset_precision(t, 16) < 0 ||
        H5Tset_size(t, 2) < 0 || H5Tset_ebias(t, 127) < 0) {
        H5Tclose(t);
        return H5I_INVALID_HID;
    }
    return t;
}

/* The stored type of a 2-byte float dataset type: LMP_DTYPE_F16 (5 exponent bits) or
 * LMP_DTYPE_BF16 (8); -1 for any other layout. */
static int f2_kind(hid_t ftype) {
    size_t spos, epos, esize, mpos, msize;
    if (H5Tget_class(ftype) != H5T_FLOAT || H5Tget_size(ftype) != 2 ||
        H5Tget_fields(ftype, &spos, &epos, &esize, &mpos, &msize) < 0)
        return -1;
    if (spos == 15 && epos == 10 && esize == 5 && mpos == 0 && msize == 10) return LMP_DTYPE_F16;
    if (spos == 15 && epos == 7 && esize == 8 && mpos == 0 && msize == 7) return LMP_DTYPE_BF16;
    return -1;
}

/* Write attribute name: n values of mtype stored as ftype, a 1-D array, or one scalar when
 * n is 0 (replacing an attribute of that name). */
static int attr_put_n(hid_t obj, const char *name, hid_t ftype, hid_t mtype, const void *v,
                      int32_t n) {
    const hsize_t dims[1] = {(hsize_t)n};
    hid_t         space   = n > 0 ? H5Screate_simple(1, dims, NULL) : H5Screate(H5S_SCALAR);
    hid_t         attr    = H5I_INVALID_HID;
    int           rc      = -1;
    if (space < 0) goto out;
    if (H5Aexists(obj, name) > 0 && H5Adelete(obj, name) < 0) goto out;
    if ((attr = H5Acreate2(obj, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT)) < 0) goto out;
    if (H5Awrite(attr, mtype, v) < 0) goto out;
    rc = 0;
out:
    if (attr >= 0) H5Aclose(attr);
    if (space >= 0) H5Sclose(space);
    return rc;
}

static int attr_put(hid_t obj, const char *name, hid_t ftype, hid_t mtype, const void *v) {
    return attr_put_n(obj, name, ftype, mtype, v, 0);
}

/* A 1-D float attribute of n values (written as f32). */
static int attr_put_f32_array(hid_t obj, const char *name, const float *v, int32_t n) {
    return attr_put_n(obj, name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, v, n);
}

static int attr_put_str(hid_t obj, const char *name, const char *v) {
    hid_t t = str_type(strlen(v) + 1);
    if (t < 0) return -1;
    int rc = attr_put(obj, name, t, t, v);
    H5Tclose(t);
    return rc;
}
static int attr_put_i64(hid_t obj, const char *name, int64_t v) {
    return attr_put(obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v);
}
static int attr_put_u64(hid_t obj, const char *name, uint64_t v) {
    return attr_put(obj, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, &v);
}
static int attr_put_f64(hid_t obj, const char *name, double v) {
    return attr_put(obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v);
}

/* Read a numeric attribute converted to mtype: a scalar (n 0) or a 1-D array of exactly n
 * values. -1 if absent or of another shape or class. */
static int attr_get_n(hid_t obj, const char *name, hid_t mtype, void *v, int32_t n) {
    hid_t attr = H5I_INVALID_HID, space = H5I_INVALID_HID, ftype = H5I_INVALID_HID;
    int   rc = -1;
    if (H5Aexists(obj, name) <= 0) return -1;
    if ((attr = H5Aopen(obj, name, H5P_DEFAULT)) < 0) goto out;
    if ((space = H5Aget_space(attr)) < 0 ||
        H5Sget_simple_extent_npoints(space) != (n > 0 ? n : 1) ||
        (n > 0 && H5Sget_simple_extent_ndims(space) != 1))
        goto out;
    if ((ftype = H5Aget_type(attr)) < 0) goto out;
    H5T_class_t cls = H5Tget_class(ftype);
    if (cls != H5T_INTEGER && cls != H5T_FLOAT) goto out;
    if (H5Aread(attr, mtype, v) < 0) goto out;
    rc = 0;
out:
    if (ftype >= 0) H5Tclose(ftype);
    if (space >= 0) H5Sclose(space);
    if (attr >= 0) H5Aclose(attr);
    return rc;
}

static int attr_get(hid_t obj, const char *name, hid_t mtype, void *v) {
    return attr_get_n(obj, name, mtype, v, 0);
}
static int attr_get_f32_array(hid_t obj, const char *name, float *v, int32_t n) {
    return attr_get_n(obj, name, H5T_NATIVE_FLOAT, v, n);
}
static int attr_get_i64(hid_t obj, const char *name, int64_t *v) {
    return attr_get(obj, name, H5T_NATIVE_INT64, v);
}
static int attr_get_u64(hid_t obj, const char *name, uint64_t *v) {
    return attr_get(obj, name, H5T_NATIVE_UINT64, v);
}
static int attr_get_f64(hid_t obj, const char *name, double *v) {
    return attr_get(obj, name, H5T_NATIVE_DOUBLE, v);
}

/* Read a fixed-length string attribute into buf (cap bytes, NUL-terminated).
 * -1 if absent, not a fixed-length scalar string, or too long. */
static int attr_get_str(hid_t obj, const char *name, char *buf, size_t cap) {
    hid_t attr = H5I_INVALID_HID, space = H5I_INVALID_HID, ftype = H5I_INVALID_HID;
    hid_t mtype = H5I_INVALID_HID;
    int   rc    = -1;
    if (H5Aexists(obj, name) <= 0) return -1;
    if ((attr = H5Aopen(obj, name, H5P_DEFAULT)) < 0) goto out;
    if ((space = H5Aget_space(attr)) < 0 || H5Sget_simple_extent_npoints(space) != 1) goto out;
    if ((ftype = H5Aget_type(attr)) < 0 || H5Tget_class(ftype) != H5T_STRING ||
        H5Tis_variable_str(ftype) != 0)
        goto out;
    size_t size = H5Tget_size(ftype);
    if (size == 0 || size > cap) goto out;
    if ((mtype = str_type(size)) < 0) goto out;
    memset(buf, 0, cap);
    if (H5Aread(attr, mtype, buf) < 0) goto out;
    buf[cap - 1] = '\0';
    rc           = 0;
out:
    if (mtype >= 0) H5Tclose(mtype);
    if (ftype >= 0) H5Tclose(ftype);
    if (space >= 0) H5Sclose(space);
    if (attr >= 0) H5Aclose(attr);
    return rc;
}

/* A scalar fixed-length string attribute of any length, into *out (malloc'ed). */
static int attr_get_str_dup(hid_t obj, const char *name, char **out) {
    hid_t  attr = H5I_INVALID_HID, ftype = H5I_INVALID_HID;
    size_t size = 0;
    if (H5Aexists(obj, name) <= 0) return -1;
    if ((attr = H5Aopen(obj, name, H5P_DEFAULT)) >= 0 && (ftype = H5Aget_type(attr)) >= 0 &&
        H5Tget_class(ftype) == H5T_STRING)
        size = H5Tget_size(ftype);
    if (ftype >= 0) H5Tclose(ftype);
    if (attr >= 0) H5Aclose(attr);
    char *buf = size > 0 && size < ((size_t)1 << 30) ? malloc(size + 1) : NULL;
    if (buf == NULL || attr_get_str(obj, name, buf, size + 1) < 0) {
        free(buf);
        return -1;
    }
    free(*out);
    *out = buf;
    return 0;
}

/* Create dataset name under loc with file type ftype, shape dims (rank >= 1, a zero
 * dimension allowed), write buf (memory type mtype, elem_size bytes per element) and
 * its xxh64. */
static int dset_put(hid_t loc, const char *name, hid_t ftype, hid_t mtype, size_t elem_size,
                    int rank, const int64_t *dims, const void *buf) {
    hsize_t hd[LMP_MAX_DIMS];
    int64_t n = 1;
    for (int i = 0; i < rank; i++) {
        hd[i] = (hsize_t)dims[i];
        n *= dims[i];
    }
    hid_t space = H5Screate_simple(rank, hd, NULL), dset = H5I_INVALID_HID;
    int   rc = -1;
    if (space < 0) goto out;
    if ((dset = H5Dcreate2(loc, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) < 0)
        goto out;
    if (n > 0 && H5Dwrite(dset, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) goto out;
    if (attr_put_u64(dset, "xxh64", lmp_xxh64(buf, (size_t)n * elem_size, 0)) < 0) goto out;
    rc = 0;
out:
    if (dset >= 0) H5Dclose(dset);
    if (space >= 0) H5Sclose(space);
    return rc;
}

/* Dataset shape: rank and dims (up to LMP_MAX_DIMS). -1 if absent or unreadable. */
static int dset_shape(hid_t loc, const char *name, int *rank, int64_t *dims, size_t *ftype_size,
                      H5T_class_t *cls) {
    if (H5Lexists(loc, name, H5P_DEFAULT) <= 0) return -1;
    hid_t dset = H5Dopen2(loc, name, H5P_DEFAULT), space = H5I_INVALID_HID, ft = H5I_INVALID_HID;
    int   rc = -1;
    if (dset < 0) goto out;
    if ((space = H5Dget_space(dset)) < 0) goto out;
    int r = H5Sget_simple_extent_ndims(space);
    if (r < 1 || r > LMP_MAX_DIMS) goto out;
    hsize_t hd[LMP_MAX_DIMS];
    if (H5Sget_simple_extent_dims(space, hd, NULL) != r) goto out;
    for (int i = 0; i < r; i++) {
        if (hd[i] > (hsize_t)INT64_MAX / 2) goto out;
        dims[i] = (int64_t)hd[i];
    }
    *rank = r;
    if ((ft = H5Dget_type(dset)) < 0) goto out;
    if (ftype_size) *ftype_size = H5Tget_size(ft);
    if (cls) *cls = H5Tget_class(ft);
    rc = 0;
out:
    if (ft >= 0) H5Tclose(ft);
    if (space >= 0) H5Sclose(space);
    if (dset >= 0) H5Dclose(dset);
    return rc;
}

/* Read dataset name into buf (n elements of mtype, elem_size bytes each) after checking
 * its shape is exactly dims, then verify its xxh64. */
static enum lmp_status dset_get(hid_t loc, const char *name, hid_t mtype, size_t elem_size,
                                int rank, const int64_t *dims, void *buf, const char *fname,
                                const char *obj, struct lmp_err *err) {
    int     r = 0;
    int64_t got[LMP_MAX_DIMS];
    if (dset_shape(loc, name, &r, got, NULL, NULL) < 0)
        return lmp_err_set(err, LMP_EFORMAT, "'%s': %s has no readable dataset '%s'", fname, obj,
                           name);
    int64_t n    = 1;
    bool    same = r == rank;
    for (int i = 0; same && i < rank; i++) {
        same = got[i] == dims[i];
        n *= dims[i];
    }
    if (!same)
        return lmp_err_set(err, LMP_EFORMAT, "'%s': %s dataset '%s' has the wrong shape", fname,
                           obj, name);
    hid_t dset = H5Dopen2(loc, name, H5P_DEFAULT);
    if (dset < 0)
        return lmp_err_set(err, LMP_EFORMAT, "'%s': cannot open %s dataset '%s'", fname, obj, name);
    uint64_t want = 0;
    int      rd   = n > 0 ? H5Dread(dset, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) : 0;
    int      ha   = attr_get_u64(dset, "xxh64", &want);
    H5Dclose(dset);
    if (rd < 0)
        return lmp_err_set(err, LMP_EFORMAT, "'%s': cannot read %s dataset '%s'", fname, obj, name);
    if (ha < 0 || lmp_xxh64(buf, (size_t)n * elem_size, 0) != want)
        return lmp_err_set(err, LMP_EFORMAT, "'%s': %s dataset '%s' fails its checksum (corrupt)",
                           fname, obj, name);
    return LMP_OK;
}

/* The element type of float dataset name: LMP_DTYPE_F32 (4 bytes), LMP_DTYPE_F16 or
 * LMP_DTYPE_BF16 (2 bytes, see f2_kind); -1 if absent or another type. */
static int dset_float_dtype(hid_t loc, const char *name) {
    if (H5Lexists(loc, name, H5P_DEFAULT) <= 0) return -1;
    hid_t d = H5Dopen2(loc, name, H5P_DEFAULT), ft = d >= 0 ? H5Dget_type(d) : H5I_INVALID_HID;
    int   k = -1;
    if (ft >= 0 && H5Tget_class(ft) == H5T_FLOAT)
        k = H5Tget_size(ft) == 4 ? (int)LMP_DTYPE_F32 : f2_kind(ft);
    if (ft >= 0) H5Tclose(ft);
    if (d >= 0) H5Dclose(d);
    return k;
}

/* Write v (fp32) as IEEE binary16, rounded to nearest even (lmp_f32_to_f16): the
 * half bits are the memory type too, so the xxh64 covers exactly what is stored. */
static int dset_put_f16(hid_t loc, const char *name, int rank, const int64_t *dims,
                        const float *v) {
    int64_t n = 1;
    for (int i = 0; i < rank; i++) n *= dims[i];
    uint16_t *h  = malloc((size_t)(n > 0 ? n : 1) * sizeof(uint16_t));
    hid_t     ft = h ? f16_type() : H5I_INVALID_HID;
    int       rc = -1;
    if (ft >= 0) {
        for (int64_t i = 0; i < n; i++) h[i] = lmp_f32_to_f16(v[i]);
        rc = dset_put(loc, name, ft, ft, 2, rank, dims, h);
        H5Tclose(ft);
    }
    free(h);
    return rc;
}

/* Read float dataset name, stored as fp32 (format 1) or fp16 (format 2 codebooks and
 * scales), into v as fp32 (fp16 converts exactly); shape and xxh64 as dset_get. */
static enum lmp_status dset_get_f32(hid_t loc, const char *name, int rank, const int64_t *dims,
                                    float *v, const char *fname, const char *obj,
                                    struct lmp_err *err) {
    const int k = dset_float_dtype(loc, name);
    if (k != LMP_DTYPE_F16) /* fp32, or absent: dset_get says so */
        return dset_get(loc, name, H5T_NATIVE_FLOAT, 4, rank, dims, v, fname, obj, err);
    int64_t n = 1;
    for (int i = 0; i < rank; i++) n *= dims[i];
    uint16_t *h  = malloc((size_t)(n > 0 ? n : 1) * sizeof(uint16_t));
    hid_t     ft = h ? f16_type() : H5I_INVALID_HID;
    if (ft < 0) {
        free(h);
        return lmp_err_set(err, LMP_ENOMEM, "out of memory reading %s of '%s'", obj, fname);
    }
    enum lmp_status st = dset_get(loc, name, ft, 2, rank, dims, h, fname, obj, err);
    H5Tclose(ft);
    for (int64_t i = 0; st == LMP_OK && i < n; i++) v[i] = lmp_f16_to_f32(h[i]);
    free(h);
    return st;
}

static hid_t group_open_or_create(hid_t loc, const char *name) {
    if (H5Lexists(loc, name, H5P_DEFAULT) > 0) return H5Gopen2(loc, name, H5P_DEFAULT);
    return H5Gcreate2(loc, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
}

/* ------------------------------------------------------------------------------ */
/* job description                                                                  */

void lmp_art_job_init(struct lmp_art_job *job) {
    memset(job, 0, sizeof(*job));
    snprintf(job->tool_version, sizeof(job->tool_version), "%s", LMP_VERSION);
    snprintf(job->build, sizeof(job->build), "%s", lmp_build_id());
}

void lmp_art_job_release(struct lmp_art_job *job) {
    if (job == NULL) return;
    free(job->rope_freqs);
    free(job->linears);
    free(job->model_name);
    free(job->calib_desc);
    memset(job, 0, sizeof(*job));
}

enum lmp_status lmp_art_job_set_text(char **field, const char *v) {
    assert(field);
    char *c = xstrdup(v ? v : "");
    if (c == NULL) return LMP_ENOMEM;
    free(*field);
    *field = c;
    return LMP_OK;
}

/* Entries of a GGUF rope_freqs tensor: one per rotated pair (model/rope.h). */
static int32_t rope_freqs_n(const struct lmp_config *c) {
    return (c->rope_dims ? c->rope_dims : c->head_dim) / 2;
}

/* A deep copy of src into dst (zeroed or released). RET LMP_OK or LMP_ENOMEM. */
static enum lmp_status job_copy(struct lmp_art_job *dst, const struct lmp_art_job *src) {
    *dst            = *src;
    dst->model_name = dst->calib_desc = NULL;
    dst->linears                      = NULL;
    dst->n_linears                    = 0;
    dst->rope_freqs = NULL, dst->cfg.rope_freq_factors = NULL;
    if (src->rope_freqs) {
        const size_t n = (size_t)rope_freqs_n(&src->cfg);
        if ((dst->rope_freqs = malloc(n * sizeof(float))) == NULL) {
            lmp_art_job_release(dst);
            return LMP_ENOMEM;
        }
        memcpy(dst->rope_freqs, src->rope_freqs, n * sizeof(float));
        dst->cfg.rope_freq_factors = dst->rope_freqs;
    }
    if (lmp_art_job_set_text(&dst->model_name, src->model_name) != LMP_OK ||
        lmp_art_job_set_text(&dst->calib_desc, src->calib_desc) != LMP_OK ||
        (dst->linears = malloc((size_t)(src->n_linears ? src->n_linears : 1) *
                               sizeof(*src->linears))) == NULL) {
        lmp_art_job_release(dst);
        return LMP_ENOMEM;
    }
    memcpy(dst->linears, src->linears, (size_t)src->n_linears * sizeof(*src->linears));
    dst->n_linears = src->n_linears;
    return LMP_OK;
}

enum lmp_status lmp_art_job_from_model(struct lmp_art_job *job, const struct lmp_model *m) {
    assert(job && m);
    int64_t                n   = lmp_model_n_linears(m);
    struct lmp_art_linear *lin = calloc((size_t)(n ? n : 1), sizeof(*lin));
    if (lin == NULL) return LMP_ENOMEM;
    for (int64_t i = 0; i < n; i++) {
        const struct lmp_linear *l = lmp_model_linear(m, i);
        snprintf(lin[i].name, sizeof(lin[i].name), "%s", l->name);
        lin[i].n_out = l->n_out;
        lin[i].n_in  = l->n_in;
    }
    free(job->linears);
    job->linears               = lin;
    job->n_linears             = n;
    job->cfg                   = m->cfg;
    job->cfg.rope_freq_factors = NULL; /* into the model: a copy the job owns */
    free(job->rope_freqs), job->rope_freqs = NULL;
    if (m->cfg.rope_freq_factors) {
        const size_t nf = (size_t)rope_freqs_n(&m->cfg);
        if ((job->rope_freqs = malloc(nf * sizeof(float))) == NULL) return LMP_ENOMEM;
        memcpy(job->rope_freqs, m->cfg.rope_freq_factors, nf * sizeof(float));
        job->cfg.rope_freq_factors = job->rope_freqs;
    }
    job->model_fp = lmp_fingerprint_model(m);
    if (lmp_art_job_set_text(&job->model_name, m->path ? m->path : "(unnamed)") != LMP_OK)
        return LMP_ENOMEM;
    snprintf(job->tool_version, sizeof(job->tool_version), "%s", LMP_VERSION);
    snprintf(job->build, sizeof(job->build), "%s", lmp_build_id());
    return LMP_OK;
}

static const char *rope_name(enum lmp_rope r) {
    return r == LMP_ROPE_HALF ? "half" : "interleaved";
}

/* Root attributes and /model of a main file or a job part. */
/* The architecture fields beyond the plain llama block (format 3: Gemma 3, Qwen3, scaled
 * RoPE), each written only where it differs from the plain value: a plain model's
 * /model group is what format 2 wrote. q/k norms and post norms need no field: their
 * tensors say it (lmp_model_finish). */
static const char *const act_names[]          = {"silu", "gelu_tanh"};
static const char *const rope_scaling_names[] = {"none", "linear", "llama3", "yarn"};

bool lmp_artifact_cfg_is_v3(const struct lmp_config *c) {
    return c->qk_norm || c->post_norms || c->ffn_act != LMP_ACT_SILU ||
           (c->embed_scale != 0 && c->embed_scale != 1) || c->attn_scale != 0 ||
           c->swa_pattern != 0 || c->rope_theta_local != 0 || c->attn_softcap != 0 ||
           c->final_softcap != 0 || c->rope_scaling != LMP_ROPE_SCALING_NONE ||
           c->rope_freq_factors != NULL ||
           (c->rope_dims != 0 && c->rope_dims != c->head_dim); /* finish sets it to head_dim */
}

static int write_arch(hid_t g, const struct lmp_config *c) {
    if (c->ffn_act != LMP_ACT_SILU && attr_put_str(g, "ffn_act", act_names[c->ffn_act]) < 0)
        return -1;
    if (c->embed_scale != 0 && c->embed_scale != 1 &&
        attr_put_f64(g, "embed_scale", c->embed_scale) < 0)
        return -1;
    if (c->attn_scale != 0 && attr_put_f64(g, "attn_scale", c->attn_scale) < 0) return -1;
    if (c->swa_pattern != 0 && attr_put_i64(g, "swa_pattern", c->swa_pattern) < 0) return -1;
    if (c->rope_theta_local != 0 && attr_put_f64(g, "rope_theta_local", c->rope_theta_local) < 0)
        return -1;
    if (c->attn_softcap != 0 && attr_put_f64(g, "attn_softcap", c->attn_softcap) < 0) return -1;
    if (c->final_softcap != 0 && attr_put_f64(g, "final_softcap", c->final_softcap) < 0) return -1;
    if (c->rope_dims != 0 && c->rope_dims != c->head_dim &&
        attr_put_i64(g, "rope_dims", c->rope_dims) < 0)
        return -1;
    if (c->rope_freq_factors &&
        attr_put_f32_array(g, "rope_freqs", c->rope_freq_factors, rope_freqs_n(c)) < 0)
        return -1;
    if (c->rope_scaling == LMP_ROPE_SCALING_NONE) return 0;
    if (attr_put_str(g, "rope_scaling", rope_scaling_names[c->rope_scaling]) < 0 ||
        attr_put_f64(g, "rope_factor", c->rope_factor) < 0 ||
        attr_put_f64(g, "rope_low_freq_factor", c->rope_low_freq_factor) < 0 ||
        attr_put_f64(g, "rope_high_freq_factor", c->rope_high_freq_factor) < 0 ||
        attr_put_i64(g, "rope_orig_max_seq", c->rope_orig_max_seq) < 0 ||
        attr_put_f64(g, "rope_beta_fast", c->rope_beta_fast) < 0 ||
        attr_put_f64(g, "rope_beta_slow", c->rope_beta_slow) < 0 ||
        attr_put_f64(g, "rope_attn_factor", c->rope_attn_factor) < 0)
        return -1;
    return 0;
}

/* An optional attribute: absent leaves *v; present but unreadable or outside [lo, hi]
 * (or not finite) is an error naming it. */
static enum lmp_status opt_f64(hid_t g, const char *fname, const char *name, double lo, double hi,
                               float *v, struct lmp_err *err) {
    if (H5Aexists(g, name) <= 0) return LMP_OK;
    double x = 0;
    if (attr_get_f64(g, name, &x) < 0 || !isfinite(x) || x < lo || x > hi)
        return lmp_err_set(err, LMP_EFORMAT,
                           "'%s': /model attribute '%s' malformed or out of range", fname, name);
    *v = (float)x;
    return LMP_OK;
}

static enum lmp_status opt_i64(hid_t g, const char *fname, const char *name, int64_t lo, int64_t hi,
                               int32_t *v, struct lmp_err *err) {
    if (H5Aexists(g, name) <= 0) return LMP_OK;
    int64_t x = 0;
    if (attr_get_i64(g, name, &x) < 0 || x < lo || x > hi)
        return lmp_err_set(err, LMP_EFORMAT,
                           "'%s': /model attribute '%s' malformed or out of range", fname, name);
    *v = (int32_t)x;
    return LMP_OK;
}

static enum lmp_status opt_enum(hid_t g, const char *fname, const char *name,
                                const char *const *names, int n, int *v, struct lmp_err *err) {
    if (H5Aexists(g, name) <= 0) return LMP_OK;
    char buf[32] = "";
    if (attr_get_str(g, name, buf, sizeof(buf)) >= 0)
        for (int i = 0; i < n; i++)
            if (strcmp(buf, names[i]) == 0) {
                *v = i;
                return LMP_OK;
            }
    char q[64];
    return lmp_err_set(err, LMP_EFORMAT, "'%s': /model attribute '%s' has an unknown value '%s'",
                       fname, name, lmp_str_escape(q, sizeof(q), buf));
}

static enum lmp_status read_arch(hid_t g, const char *fname, struct lmp_art_job *job,
                                 struct lmp_err *err) {
    struct lmp_config *c   = &job->cfg;
    int                act = LMP_ACT_SILU, sc = LMP_ROPE_SCALING_NONE;
    enum lmp_status    st;
    if ((st = opt_enum(g, fname, "ffn_act", act_names, 2, &act, err)) ||
        (st = opt_f64(g, fname, "embed_scale", 1e-6, 1e6, &c->embed_scale, err)) ||
        (st = opt_f64(g, fname, "attn_scale", 1e-6, 1e6, &c->attn_scale, err)) ||
        (st = opt_i64(g, fname, "swa_pattern", 1, c->n_layers, &c->swa_pattern, err)) ||
        (st = opt_f64(g, fname, "rope_theta_local", 1e-3, 1e12, &c->rope_theta_local, err)) ||
        (st = opt_f64(g, fname, "attn_softcap", 1e-6, 1e6, &c->attn_softcap, err)) ||
        (st = opt_f64(g, fname, "final_softcap", 1e-6, 1e6, &c->final_softcap, err)) ||
        (st = opt_i64(g, fname, "rope_dims", 2, c->head_dim, &c->rope_dims, err)) ||
        (st = opt_enum(g, fname, "rope_scaling", rope_scaling_names, 4, &sc, err)))
        return st;
    c->ffn_act      = (enum lmp_act)act;
    c->rope_scaling = (enum lmp_rope_scaling)sc;
    if (c->rope_dims % 2 != 0)
        return lmp_err_set(err, LMP_EFORMAT, "'%s': /model attribute 'rope_dims' is odd", fname);
    c->rope_freq_factors = NULL;
    if (H5Aexists(g, "rope_freqs") > 0) { /* GGUF rope_freqs divisors: one per pair, > 0 */
        const int32_t n = rope_freqs_n(c);
        if (n < 1 || (job->rope_freqs = malloc((size_t)n * sizeof(float))) == NULL)
            return lmp_err_set(err, n < 1 ? LMP_EFORMAT : LMP_ENOMEM,
                               "'%s': /model attribute 'rope_freqs' cannot be read", fname);
        if (attr_get_f32_array(g, "rope_freqs", job->rope_freqs, n) < 0)
            return lmp_err_set(err, LMP_EFORMAT,
                               "'%s': /model attribute 'rope_freqs' is not %d floats", fname, n);
        for (int32_t i = 0; i < n; i++)
            if (!isfinite(job->rope_freqs[i]) || job->rope_freqs[i] <= 0)
                return lmp_err_set(err, LMP_EFORMAT,
                                   "'%s': /model attribute 'rope_freqs'[%d] = %g is not positive",
                                   fname, i, (double)job->rope_freqs[i]);
        c->rope_freq_factors = job->rope_freqs;
    }
    if (sc == LMP_ROPE_SCALING_NONE) return LMP_OK;
    static const char *const need[] = {
        "rope_factor",    "rope_low_freq_factor", "rope_high_freq_factor", "rope_orig_max_seq",
        "rope_beta_fast", "rope_beta_slow",       "rope_attn_factor"};
    for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++)
        if (H5Aexists(g, need[i]) <= 0)
            return lmp_err_set(err, LMP_EFORMAT, "'%s': /model attribute '%s' missing", fname,
                               need[i]);
    if ((st = opt_f64(g, fname, "rope_factor", 1e-6, 1e6, &c->rope_factor, err)) ||
        (st = opt_f64(g, fname, "rope_low_freq_factor", 0, 1e6, &c->rope_low_freq_factor, err)) ||
        (st = opt_f64(g, fname, "rope_high_freq_factor", 0, 1e6, &c->rope_high_freq_factor, err)) ||
        (st = opt_i64(g, fname, "rope_orig_max_seq", 0, INT32_MAX, &c->rope_orig_max_seq, err)) ||
        (st = opt_f64(g, fname, "rope_beta_fast", 0, 1e6, &c->rope_beta_fast, err)) ||
        (st = opt_f64(g, fname, "rope_beta_slow", 0, 1e6, &c->rope_beta_slow, err)) ||
        (st = opt_f64(g, fname, "rope_attn_factor", 0, 1e6, &c->rope_attn_factor, err)))
        return st;
    return LMP_OK;
}

static int write_job(hid_t file, const struct lmp_art_job *job) {
    const struct lmp_config *c = &job->cfg;
    hid_t                    g = H5I_INVALID_HID, t = H5I_INVALID_HID;
    int                      rc     = -1;
    char                    *names  = NULL;
    int64_t                 *shapes = NULL;
    if (attr_put_str(file, "tool_version", job->tool_version) < 0 ||
        attr_put_str(file, "method", job->method) < 0 ||
        attr_put_str(file, "scheme", job->scheme) < 0 ||
        attr_put_str(file, "model_name", job->model_name ? job->model_name : "") < 0 ||
        attr_put_str(file, "calib_desc", job->calib_desc ? job->calib_desc : "") < 0 ||
        attr_put_str(file, "build", job->build) < 0 ||
        attr_put_u64(file, "model_fingerprint", job->model_fp) < 0 ||
        attr_put_u64(file, "calib_fingerprint", job->calib_fp) < 0)
        goto out;
    if ((g = group_open_or_create(file, "model")) < 0) goto out;
    if (attr_put_str(g, "arch", lmp_arch_name(c->arch)) < 0 ||
        attr_put_str(g, "source_format", lmp_format_name(c->format)) < 0 ||
        attr_put_str(g, "rope", rope_name(c->rope)) < 0 ||
        attr_put_i64(g, "n_layers", c->n_layers) < 0 || attr_put_i64(g, "dim", c->dim) < 0 ||
        attr_put_i64(g, "hidden_dim", c->hidden_dim) < 0 ||
        attr_put_i64(g, "n_heads", c->n_heads) < 0 ||
        attr_put_i64(g, "n_kv_heads", c->n_kv_heads) < 0 ||
        attr_put_i64(g, "head_dim", c->head_dim) < 0 ||
        attr_put_i64(g, "vocab_size", c->vocab_size) < 0 ||
        attr_put_i64(g, "max_seq", c->max_seq) < 0 ||
        attr_put_f64(g, "rope_theta", c->rope_theta) < 0 ||
        attr_put_f64(g, "norm_eps", c->norm_eps) < 0 ||
        attr_put_i64(g, "tied_embeddings", c->tied_embeddings) < 0 ||
        attr_put_i64(g, "qkv_bias", c->qkv_bias) < 0 ||
        attr_put_i64(g, "sliding_window", c->sliding_window) < 0 || write_arch(g, c) < 0)
        goto out;
    int64_t n = job->n_linears;
    names     = calloc((size_t)(n ? n : 1), sizeof(job->linears[0].name));
    shapes    = calloc((size_t)(n ? n : 1) * 2, sizeof(int64_t));
    if (names == NULL || shapes == NULL) goto out;
    for (int64_t i = 0; i < n; i++) {
        memcpy(names + i * sizeof(job->linears[0].name), job->linears[i].name,
               sizeof(job->linears[0].name));
        shapes[2 * i]     = job->linears[i].n_out;
        shapes[2 * i + 1] = job->linears[i].n_in;
    }
    if ((t = str_type(sizeof(job->linears[0].name))) < 0) goto out;
    int64_t d1[1] = {n}, d2[2] = {n, 2};
    if (dset_put(g, "linear_names", t, t, sizeof(job->linears[0].name), 1, d1, names) < 0 ||
        dset_put(g, "linear_shapes", H5T_STD_I64LE, H5T_NATIVE_INT64, sizeof(int64_t), 2, d2,
                 shapes) < 0)
        goto out;
    rc = 0;
out:
    free(names);
    free(shapes);
    if (t >= 0) H5Tclose(t);
    if (g >= 0) H5Gclose(g);
    return rc;
}

static enum lmp_status read_job(hid_t file, const char *fname, struct lmp_art_job *job,
                                struct lmp_err *err) {
    struct lmp_config *c = &job->cfg;
    char               arch[32], fmt[32], rope[32];
    hid_t              g = H5I_INVALID_HID, t = H5I_INVALID_HID;
    enum lmp_status    st     = LMP_OK;
    char              *names  = NULL;
    int64_t           *shapes = NULL;
    int64_t            v[12];
    lmp_art_job_release(job);
    if (attr_get_str(file, "tool_version", job->tool_version, sizeof(job->tool_version)) < 0 ||
        attr_get_str(file, "method", job->method, sizeof(job->method)) < 0 ||
        attr_get_str(file, "scheme", job->scheme, sizeof(job->scheme)) < 0 ||
        attr_get_str_dup(file, "model_name", &job->model_name) < 0 ||
        attr_get_str_dup(file, "calib_desc", &job->calib_desc) < 0 ||
        attr_get_u64(file, "model_fingerprint", &job->model_fp) < 0 ||
        attr_get_u64(file, "calib_fingerprint", &job->calib_fp) < 0) {
        st = lmp_err_set(err, LMP_EFORMAT, "'%s': missing or malformed job attributes", fname);
        goto out;
    }
    /* optional (absent before it was recorded): "" = unknown build */
    if (H5Aexists(file, "build") > 0 &&
        attr_get_str(file, "build", job->build, sizeof(job->build)) < 0) {
        st = lmp_err_set(err, LMP_EFORMAT, "'%s': malformed attribute 'build'", fname);
        goto out;
    }
    if (H5Lexists(file, "model", H5P_DEFAULT) <= 0 ||
        (g = H5Gopen2(file, "model", H5P_DEFAULT)) < 0) {
        st = lmp_err_set(err, LMP_EFORMAT, "'%s': missing group /model", fname);
        goto out;
    }
    double theta = 0, eps = 0;
    if (attr_get_str(g, "arch", arch, sizeof(arch)) < 0 ||
        attr_get_str(g, "source_format", fmt, sizeof(fmt)) < 0 ||
        attr_get_str(g, "rope", rope, sizeof(rope)) < 0 || attr_get_i64(g, "n_layers", &v[0]) < 0 ||
        attr_get_i64(g, "dim", &v[1]) < 0 || attr_get_i64(g, "hidden_dim", &v[2]) < 0 ||
        attr_get_i64(g, "n_heads", &v[3]) < 0 || attr_get_i64(g, "n_kv_heads", &v[4]) < 0 ||
        attr_get_i64(g, "head_dim", &v[5]) < 0 || attr_get_i64(g, "vocab_size", &v[6]) < 0 ||
        attr_get_i64(g, "max_seq", &v[7]) < 0 || attr_get_i64(g, "tied_embeddings", &v[8]) < 0 ||
        attr_get_i64(g, "qkv_bias", &v[9]) < 0 || attr_get_i64(g, "sliding_window", &v[10]) < 0 ||
        attr_get_f64(g, "rope_theta", &theta) < 0 || attr_get_f64(g, "norm_eps", &eps) < 0) {
        st = lmp_err_set(err, LMP_EFORMAT, "'%s': missing or malformed /model attributes", fname);
        goto out;
    }
    for (int i = 0; i < 11; i++)
        if (v[i] < 0 || v[i] > INT32_MAX) {
            st = lmp_err_set(err, LMP_EFORMAT, "'%s': /model attribute out of range", fname);
            goto out;
        }
    int a = 0, f = 0;
    while (a < LMP_ARCH_COUNT && strcmp(lmp_arch_name((enum lmp_arch)a), arch) != 0) a++;
    while (f <= LMP_FORMAT_LLAMA2C && strcmp(lmp_format_name((enum lmp_format)f), fmt) != 0) f++;
    if (a == LMP_ARCH_COUNT || f > LMP_FORMAT_LLAMA2C ||
        (strcmp(rope, "half") != 0 && strcmp(rope, "interleaved") != 0)) {
        st = lmp_err_set(err, LMP_EFORMAT, "'%s': unknown arch '%s', format '%s' or rope '%s'",
                         fname, arch, fmt, rope);
        goto out;
    }
    c->arch            = (enum lmp_arch)a;
    c->format          = (enum lmp_format)f;
    c->rope            = strcmp(rope, "half") == 0 ? LMP_ROPE_HALF : LMP_ROPE_INTERLEAVED;
    c->n_layers        = (int32_t)v[0];
    c->dim             = (int32_t)v[1];
    c->hidden_dim      = (int32_t)v[2];
    c->n_heads         = (int32_t)v[3];
    c->n_kv_heads      = (int32_t)v[4];
    c->head_dim        = (int32_t)v[5];
    c->vocab_size      = (int32_t)v[6];
    c->max_seq         = (int32_t)v[7];
    c->tied_embeddings = v[8] != 0;
    c->qkv_bias        = v[9] != 0;
    c->sliding_window  = (int32_t)v[10];
    c->rope_theta      = (float)theta;
    c->norm_eps        = (float)eps;
    if ((st = read_arch(g, fname, job, err))) goto out;

    int     r = 0;
    int64_t dims[LMP_MAX_DIMS];
    if (dset_shape(g, "linear_names", &r, dims, NULL, NULL) < 0 || r != 1 || dims[0] > 1000000) {
        st = lmp_err_set(err, LMP_EFORMAT, "'%s': missing or malformed /model/linear_names", fname);
        goto out;
    }
    int64_t      n  = dims[0];
    const size_t nl = sizeof(job->linears[0].name);
    names           = calloc((size_t)(n ? n : 1), nl);
    shapes          = calloc((size_t)(n ? n : 1) * 2, sizeof(int64_t));
    job->linears    = calloc((size_t)(n ? n : 1), sizeof(*job->linears));
    if (names == NULL || shapes == NULL || job->linears == NULL) {
        st = lmp_err_set(err, LMP_ENOMEM, "out of memory reading '%s'", fname);
        goto out;
    }
    if ((t = str_type(nl)) < 0) {
        st = lmp_err_set(err, LMP_EIO, "'%s': hdf5 type error", fname);
        goto out;
    }
    int64_t d1[1] = {n}, d2[2] = {n, 2};
    if ((st = dset_get(g, "linear_names", t, nl, 1, d1, names, fname, "/model", err)) ||
        (st = dset_get(g, "linear_shapes", H5T_NATIVE_INT64, sizeof(int64_t), 2, d2, shapes, fname,
                       "/model", err)))
        goto out;
    for (int64_t i = 0; i < n; i++) {
        memcpy(job->linears[i].name, names + i * nl, nl);
        job->linears[i].name[nl - 1] = '\0';
        job->linears[i].n_out        = shapes[2 * i];
        job->linears[i].n_in         = shapes[2 * i + 1];
        if (!name_ok(job->linears[i].name) || shapes[2 * i] <= 0 || shapes[2 * i + 1] <= 0) {
            st = lmp_err_set(err, LMP_EFORMAT, "'%s': malformed linear %lld in /model", fname,
                             (long long)i);
            goto out;
        }
    }
    job->n_linears = n;
out:
    free(names);
    free(shapes);
    if (t >= 0) H5Tclose(t);
    if (g >= 0) H5Gclose(g);
    if (st != LMP_OK) lmp_art_job_release(job);
    return st;
}

/* Format attributes: which kind of file, which version. */
static enum lmp_status check_format(hid_t file, const char *fname, const char *want,
                                    struct lmp_err *err) {
    char    fmt[64];
    int64_t ver = 0;
    if (attr_get_str(file, "format", fmt, sizeof(fmt)) < 0 || strcmp(fmt, want) != 0 ||
        attr_get_i64(file, "format_version", &ver) < 0)
        return lmp_err_set(err, LMP_EFORMAT, "'%s': not an lmpress artifact (no '%s' format tag)",
                           fname, want);
    if (ver < 1 || ver > LMP_ARTIFACT_FORMAT_VERSION)
        return lmp_err_set(err, LMP_EUNSUP,
                           "'%s': artifact format version %lld, this lmpress reads up to %d", fname,
                           (long long)ver, LMP_ARTIFACT_FORMAT_VERSION);
    return LMP_OK;
}

/* ------------------------------------------------------------------------------ */
/* layers, tensors, tokenizer as HDF5 objects                                        */

static int64_t mul_ok(int64_t a, int64_t b) { /* a*b, or -1 on overflow */
    if (a < 0 || b < 0) return -1;
    if (a != 0 && b > INT64_MAX / 4 / a) return -1;
    return a * b;
}

int64_t lmp_art_layer_n_codes(const struct lmp_art_layer *l) {
    if (l->g <= 0) return -1;
    if (l->codec == LMP_ART_CODEC_AQ) return mul_ok(mul_ok(l->n_out, l->n_in / l->g), l->M);
    return mul_ok(l->n_out, l->n_in);
}
int64_t lmp_art_layer_n_codebooks(const struct lmp_art_layer *l) {
    if (l->codec != LMP_ART_CODEC_AQ || l->B < 1 || l->B > 16) return 0;
    return mul_ok(mul_ok(l->M, (int64_t)1 << l->B), l->g);
}
int64_t lmp_art_layer_n_scales(const struct lmp_art_layer *l) {
    if (l->codec == LMP_ART_CODEC_AQ) return l->n_out;
    if (l->g <= 0) return -1;
    return mul_ok(l->n_out, l->n_in / l->g);
}

void lmp_art_layer_release(struct lmp_art_layer *l) {
    if (l == NULL) return;
    free(l->codes);
    free(l->codebooks);
    free(l->scales);
    free(l->zeros);
    l->codes     = NULL;
    l->codebooks = l->scales = l->zeros = NULL;
}

void lmp_art_tensor_release(struct lmp_art_tensor *t) {
    if (t == NULL) return;
    free(t->data);
    t->data = NULL;
}

const char *lmp_art_tok_name(enum lmp_art_tok k) {
    switch (k) {
    case LMP_ART_TOK_GGUF:
        return "gguf";
    case LMP_ART_TOK_LLAMA2C:
        return "llama2c";
    case LMP_ART_TOK_HF:
        return "hf";
    }
    return "?";
}

/* Shape and parameter check shared by writing and reading; msg gets the problem. */
static bool layer_params_ok(const struct lmp_art_layer *l, char *msg, size_t cap) {
    if (l->codec != LMP_ART_CODEC_AQ && l->codec != LMP_ART_CODEC_RTN)
        return snprintf(msg, cap, "unknown codec %d", (int)l->codec), false;
    if (l->n_out <= 0 || l->n_in <= 0 || l->g <= 0 || l->n_in % l->g != 0)
        return snprintf(msg, cap, "shape (%lld, %lld) with group %d", (long long)l->n_out,
                        (long long)l->n_in, l->g),
               false;
    if (l->B < 1 || l->B > 16) return snprintf(msg, cap, "%d bits per code (1..16)", l->B), false;
    if (l->codec == LMP_ART_CODEC_AQ && (l->M < 1 || l->M > 64))
        return snprintf(msg, cap, "%d codebooks (1..64)", l->M), false;
    if (l->codec == LMP_ART_CODEC_RTN && l->M != 1)
        return snprintf(msg, cap, "rtn layer with M = %d (must be 1)", l->M), false;
    if (lmp_art_layer_n_codes(l) < 0 || lmp_art_layer_n_codebooks(l) < 0 ||
        lmp_art_layer_n_scales(l) < 0)
        return snprintf(msg, cap, "sizes overflow"), false;
    return true;
}

static void layer_dims(const struct lmp_art_layer *l, int *rc, int64_t *dc, int64_t *dcb, int *rs,
                       int64_t *ds) {
    if (l->codec == LMP_ART_CODEC_AQ) {
        *rc    = 3;
        dc[0]  = l->n_out;
        dc[1]  = l->n_in / l->g;
        dc[2]  = l->M;
        dcb[0] = l->M;
        dcb[1] = (int64_t)1 << l->B;
        dcb[2] = l->g;
        *rs    = 1;
        ds[0]  = l->n_out;
    } else {
        *rc   = 2;
        dc[0] = l->n_out;
        dc[1] = l->n_in;
        *rs   = 2;
        ds[0] = l->n_out;
        ds[1] = l->n_in / l->g;
    }
}

static int write_layer_obj(hid_t file, const struct lmp_art_layer *l) {
    hid_t   lg = H5I_INVALID_HID, g = H5I_INVALID_HID;
    int     rc     = -1;
    int     rcodes = 0, rsc = 0;
    int64_t dc[3], dcb[3], ds[2];
    layer_dims(l, &rcodes, dc, dcb, &rsc, ds);
    if ((lg = group_open_or_create(file, "layers")) < 0) goto out;
    if ((g = H5Gcreate2(lg, l->name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) < 0) goto out;
    const struct lmp_art_stats *s = &l->stats;
    if (attr_put_str(g, "codec", l->codec == LMP_ART_CODEC_AQ ? "aq" : "rtn") < 0 ||
        attr_put_i64(g, "n_out", l->n_out) < 0 || attr_put_i64(g, "n_in", l->n_in) < 0 ||
        attr_put_i64(g, "M", l->M) < 0 || attr_put_i64(g, "B", l->B) < 0 ||
        attr_put_i64(g, "g", l->g) < 0 ||
        attr_put_f64(g, "rel_err_before", s->rel_err_before) < 0 ||
        attr_put_f64(g, "rel_err_after", s->rel_err_after) < 0 ||
        attr_put_f64(g, "bits_per_weight", s->bits_per_weight) < 0 ||
        attr_put_f64(g, "seconds", s->seconds) < 0 || attr_put_i64(g, "steps", s->steps) < 0)
        goto out;
    /* codes: uint8 on disk when they fit (half the bytes), always uint16 in memory */
    if (dset_put(g, "codes", l->B <= 8 ? H5T_STD_U8LE : H5T_STD_U16LE, H5T_NATIVE_UINT16, 2, rcodes,
                 dc, l->codes) < 0)
        goto out;
    /* AQ codebooks and scales: fp16 (format 2), as the aqlm format defines them; the
     * writer of format 1 (tests only) stored them as fp32 */
    const bool f16 = l->codec == LMP_ART_CODEC_AQ && write_version >= 2;
    if (l->codec == LMP_ART_CODEC_AQ &&
        (f16 ? dset_put_f16(g, "codebooks", 3, dcb, l->codebooks)
             : dset_put(g, "codebooks", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 4, 3, dcb,
                        l->codebooks)) < 0)
        goto out;
    if ((f16 ? dset_put_f16(g, "scales", rsc, ds, l->scales)
             : dset_put(g, "scales", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 4, rsc, ds, l->scales)) < 0)
        goto out;
    if (l->codec == LMP_ART_CODEC_RTN &&
        dset_put(g, "zeros", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 4, rsc, ds, l->zeros) < 0)
        goto out;
    rc = 0;
out:
    if (g >= 0) H5Gclose(g);
    if (lg >= 0) H5Gclose(lg);
    return rc;
}

static enum lmp_status read_layer_obj(hid_t file, const char *fname, const char *name,
                                      struct lmp_art_layer *l, struct lmp_err *err) {
    char            path[LMP_NAME_MAX + 16], codec[16], msg[128], obj[LMP_NAME_MAX + 16];
    int64_t         v[5];
    enum lmp_status st = LMP_OK;
    memset(l, 0, sizeof(*l));
    snprintf(path, sizeof(path), "layers/%s", name);
    snprintf(obj, sizeof(obj), "layer '%s'", name);
    hid_t g = H5I_INVALID_HID;
    if (H5Lexists(file, "layers", H5P_DEFAULT) <= 0 || H5Lexists(file, path, H5P_DEFAULT) <= 0 ||
        (g = H5Gopen2(file, path, H5P_DEFAULT)) < 0)
        return lmp_err_set(err, LMP_EFORMAT, "'%s': missing group /%s", fname, path);
    struct lmp_art_stats *s = &l->stats;
    if (attr_get_str(g, "codec", codec, sizeof(codec)) < 0 || attr_get_i64(g, "n_out", &v[0]) < 0 ||
        attr_get_i64(g, "n_in", &v[1]) < 0 || attr_get_i64(g, "M", &v[2]) < 0 ||
        attr_get_i64(g, "B", &v[3]) < 0 || attr_get_i64(g, "g", &v[4]) < 0 ||
        attr_get_f64(g, "rel_err_before", &s->rel_err_before) < 0 ||
        attr_get_f64(g, "rel_err_after", &s->rel_err_after) < 0 ||
        attr_get_f64(g, "bits_per_weight", &s->bits_per_weight) < 0 ||
        attr_get_f64(g, "seconds", &s->seconds) < 0 || attr_get_i64(g, "steps", &s->steps) < 0) {
        st = lmp_err_set(err, LMP_EFORMAT, "'%s': %s has missing or malformed attributes", fname,
                         obj);
        goto out;
    }
    snprintf(l->name, sizeof(l->name), "%s", name);
    l->codec = strcmp(codec, "aq") == 0    ? LMP_ART_CODEC_AQ
               : strcmp(codec, "rtn") == 0 ? LMP_ART_CODEC_RTN
                                           : (enum lmp_art_codec) - 1;
    bool small =
        v[2] >= 0 && v[2] <= 64 && v[3] >= 0 && v[3] <= 16 && v[4] >= 0 && v[4] <= INT32_MAX;
    l->n_out = v[0];
    l->n_in  = v[1];
    l->M     = small ? (int32_t)v[2] : -1;
    l->B     = small ? (int32_t)v[3] : -1;
    l->g     = small ? (int32_t)v[4] : -1;
    if (!layer_params_ok(l, msg, sizeof(msg))) {
        st = lmp_err_set(err, LMP_EFORMAT, "'%s': %s: %s", fname, obj, msg);
        goto out;
    }
    int     rc = 0, rs = 0;
    int64_t dc[3], dcb[3], ds[2];
    layer_dims(l, &rc, dc, dcb, &rs, ds);
    int64_t nc = lmp_art_layer_n_codes(l), ncb = lmp_art_layer_n_codebooks(l),
            ns = lmp_art_layer_n_scales(l);
    l->codes   = malloc((size_t)(nc ? nc : 1) * sizeof(uint16_t));
    l->scales  = malloc((size_t)(ns ? ns : 1) * sizeof(float));
    if (l->codec == LMP_ART_CODEC_AQ)
        l->codebooks = malloc((size_t)(ncb ? ncb : 1) * sizeof(float));
    else
        l->zeros = malloc((size_t)(ns ? ns : 1) * sizeof(float));
    if (!l->codes || !l->scales || (!l->codebooks && !l->zeros)) {
        st = lmp_err_set(err, LMP_ENOMEM, "out of memory reading %s from '%s'", obj, fname);
        goto out;
    }
    if ((st = dset_get(g, "codes", H5T_NATIVE_UINT16, 2, rc, dc, l->codes, fname, obj, err)) ||
        (st = dset_get_f32(g, "scales", rs, ds, l->scales, fname, obj, err)))
        goto out;
    if (l->codebooks && (st = dset_get_f32(g, "codebooks", 3, dcb, l->codebooks, fname, obj, err)))
        goto out;
    if (l->zeros &&
        (st = dset_get(g, "zeros", H5T_NATIVE_FLOAT, 4, rs, ds, l->zeros, fname, obj, err)))
        goto out;
    const uint32_t lim = 1u << l->B;
    for (int64_t i = 0; i < nc; i++)
        if (l->codes[i] >= lim) {
            st = lmp_err_set(err, LMP_EFORMAT, "'%s': %s has a code %u >= 2^%d", fname, obj,
                             l->codes[i], l->B);
            goto out;
        }
out:
    H5Gclose(g);
    if (st != LMP_OK) lmp_art_layer_release(l);
    return st;
}

static int64_t tensor_elem(const struct lmp_art_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->n_dims; i++) n = mul_ok(n, t->shape[i]);
    return n;
}

static size_t tensor_es(const struct lmp_art_tensor *t) { /* bytes per element */
    return t->dtype == LMP_DTYPE_F32 ? 4 : 2;
}

/* A quantized tensor (docs/artifact.md, "Quantized tensors"): Q8_0 or Q4_1 blocks of 32
 * along the rows, stored as a uint8 dataset (rows, n_cols / 32 * block bytes) with a
 * string attribute `dtype` ("Q8_0", "Q4_1"). */
static bool quant_dtype(enum lmp_dtype d) {
    return d == LMP_DTYPE_Q8_0 || d == LMP_DTYPE_Q4_1;
}

/* Bytes of t's data: the blocks of a quantized tensor, else elements x element size. */
static int64_t tensor_bytes(const struct lmp_art_tensor *t) {
    if (quant_dtype(t->dtype)) return lmp_tensor_expected_bytes(t->dtype, t->n_dims, t->shape);
    return mul_ok(tensor_elem(t), (int64_t)tensor_es(t));
}

/* The dtype of quantized tensor dataset name, or -1 when it is not one. */
static int dset_quant_dtype(hid_t loc, const char *name) {
    if (H5Lexists(loc, name, H5P_DEFAULT) <= 0) return -1;
    hid_t d = H5Dopen2(loc, name, H5P_DEFAULT);
    char  v[16];
    int   k = -1;
    if (d >= 0 && attr_get_str(d, "dtype", v, sizeof(v)) == 0)
        k = strcmp(v, "Q8_0") == 0 ? LMP_DTYPE_Q8_0 : strcmp(v, "Q4_1") == 0 ? LMP_DTYPE_Q4_1 : -1;
    if (d >= 0) H5Dclose(d);
    return k;
}

/* The tensor shape of dataset path (rank, dims): a quantized tensor's stored (rows,
 * row bytes) gives (rows, columns). *dtype: its dtype (-1 for a plain float dataset).
 * -1 when absent, unreadable, or a quantized dataset of an impossible shape. */
static int tensor_shape(hid_t loc, const char *path, int *rank, int64_t *dims, int *dtype) {
    size_t      es  = 0;
    H5T_class_t cls = H5T_NO_CLASS;
    if (dset_shape(loc, path, rank, dims, &es, &cls) < 0) return -1;
    *dtype = -1;
    if (cls != H5T_INTEGER) return 0;
    const int k = dset_quant_dtype(loc, path);
    if (k < 0 || es != 1 || *rank != 2) return -1;
    const int64_t bb = lmp_dtype_block_bytes((enum lmp_dtype)k);
    if (dims[1] <= 0 || dims[1] % bb != 0 || dims[1] / bb > (INT64_MAX / 64)) return -1;
    dims[1] = dims[1] / bb * lmp_dtype_block((enum lmp_dtype)k);
    *dtype  = k;
    return 0;
}

static int write_tensor_obj(hid_t file, const struct lmp_art_tensor *t, uint64_t *hash) {
    hid_t tg = H5I_INVALID_HID, ft = H5I_INVALID_HID;
    int   rc = -1;
    if (quant_dtype(t->dtype)) { /* (rows, row bytes) of blocks, and the dtype's name */
        const int64_t d[2] = {t->shape[0], lmp_tensor_expected_bytes(t->dtype, 1, &t->shape[1])};
        hid_t         dset = H5I_INVALID_HID;
        if ((tg = group_open_or_create(file, "tensors")) < 0 ||
            dset_put(tg, t->name, H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, 2, d, t->data) < 0 ||
            (dset = H5Dopen2(tg, t->name, H5P_DEFAULT)) < 0 ||
            attr_put_str(dset, "dtype", lmp_dtype_name(t->dtype)) < 0)
            rc = -1;
        else
            rc = 0;
        if (dset >= 0) H5Dclose(dset);
        if (tg >= 0) H5Gclose(tg);
        if (rc == 0 && hash) *hash = lmp_xxh64(t->data, (size_t)tensor_bytes(t), 0);
        return rc;
    }
    const bool   f2 = t->dtype != LMP_DTYPE_F32; /* F16 or BF16 */
    const size_t es = tensor_es(t);
    if ((tg = group_open_or_create(file, "tensors")) < 0) goto out;
    if (f2 && (ft = t->dtype == LMP_DTYPE_BF16 ? bf16_type() : f16_type()) < 0) goto out;
    /* memory type == file type for 2-byte floats: the bits are stored as they are */
    if (dset_put(tg, t->name, f2 ? ft : H5T_IEEE_F32LE, f2 ? ft : H5T_NATIVE_FLOAT, es, t->n_dims,
                 t->shape, t->data) < 0)
        goto out;
    if (hash) *hash = lmp_xxh64(t->data, (size_t)tensor_elem(t) * es, 0);
    rc = 0;
out:
    if (ft >= 0) H5Tclose(ft);
    if (tg >= 0) H5Gclose(tg);
    return rc;
}

static enum lmp_status read_tensor_obj(hid_t file, const char *fname, const char *name,
                                       struct lmp_art_tensor *t, bool data, uint64_t *hash,
                                       struct lmp_err *err) {
    char        path[LMP_NAME_MAX + 16], obj[LMP_NAME_MAX + 16];
    size_t      es = 0;
    H5T_class_t cls;
    memset(t, 0, sizeof(*t));
    snprintf(path, sizeof(path), "tensors/%s", name);
    snprintf(obj, sizeof(obj), "tensor '%s'", name);
    if (H5Lexists(file, "tensors", H5P_DEFAULT) <= 0 ||
        dset_shape(file, path, &t->n_dims, t->shape, &es, &cls) < 0)
        return lmp_err_set(err, LMP_EFORMAT, "'%s': missing dataset /%s", fname, path);
    int q = -1; /* a quantized tensor: its dtype, and the shape in weights */
    if (cls == H5T_INTEGER && tensor_shape(file, path, &t->n_dims, t->shape, &q) < 0)
        return lmp_err_set(err, LMP_EFORMAT,
                           "'%s': %s is neither a float dataset nor Q8_0/Q4_1 blocks of a "
                           "possible shape",
                           fname, obj);
    const int k = q >= 0 ? q : cls == H5T_FLOAT ? dset_float_dtype(file, path) : -1;
    t->dtype    = (enum lmp_dtype)(k >= 0 ? k : 0);
    if (k < 0 || tensor_elem(t) < 0 || tensor_bytes(t) < 0)
        return lmp_err_set(err, LMP_EFORMAT, "'%s': %s is not fp32, fp16, bf16, Q8_0 or Q4_1",
                           fname, obj);
    snprintf(t->name, sizeof(t->name), "%s", name);
    if (hash) {
        hid_t d = H5Dopen2(file, path, H5P_DEFAULT);
        int   r = d >= 0 ? attr_get_u64(d, "xxh64", hash) : -1;
        if (d >= 0) H5Dclose(d);
        if (r < 0) return lmp_err_set(err, LMP_EFORMAT, "'%s': %s has no checksum", fname, obj);
    }
    if (!data) return LMP_OK;
    if (q >= 0) { /* the blocks as they are stored: (rows, row bytes) */
        const int64_t d[2] = {t->shape[0], lmp_tensor_expected_bytes(t->dtype, 1, &t->shape[1])};
        const int64_t n    = tensor_bytes(t);
        hid_t         tg   = H5I_INVALID_HID;
        if ((t->data = malloc((size_t)(n ? n : 1))) == NULL)
            return lmp_err_set(err, LMP_ENOMEM, "out of memory reading %s", obj);
        enum lmp_status st =
            (tg = H5Gopen2(file, "tensors", H5P_DEFAULT)) < 0
                ? lmp_err_set(err, LMP_EFORMAT, "'%s': cannot open /tensors", fname)
                : dset_get(tg, name, H5T_NATIVE_UINT8, 1, 2, d, t->data, fname, obj, err);
        if (tg >= 0) H5Gclose(tg);
        if (st != LMP_OK) lmp_art_tensor_release(t);
        return st;
    }
    int64_t n = tensor_elem(t);
    t->data   = malloc((size_t)(n ? n : 1) * es);
    if (t->data == NULL) return lmp_err_set(err, LMP_ENOMEM, "out of memory reading %s", obj);
    hid_t ft = es != 2 ? H5I_INVALID_HID : t->dtype == LMP_DTYPE_BF16 ? bf16_type() : f16_type();
    hid_t tg = H5Gopen2(file, "tensors", H5P_DEFAULT);
    enum lmp_status st = tg < 0 ? lmp_err_set(err, LMP_EFORMAT, "'%s': cannot open /tensors", fname)
                                : dset_get(tg, name, es == 2 ? ft : H5T_NATIVE_FLOAT, es, t->n_dims,
                                           t->shape, t->data, fname, obj, err);
    if (tg >= 0) H5Gclose(tg);
    if (ft >= 0) H5Tclose(ft);
    if (st != LMP_OK) lmp_art_tensor_release(t);
    return st;
}

static int write_tokenizer_obj(hid_t file, enum lmp_art_tok kind, const uint8_t *bytes, size_t n) {
    hid_t   g    = H5I_INVALID_HID;
    int     rc   = -1;
    int64_t d[1] = {(int64_t)n};
    if ((g = H5Gcreate2(file, "tokenizer", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) < 0) goto out;
    if (attr_put_str(g, "kind", lmp_art_tok_name(kind)) < 0) goto out;
    if (dset_put(g, "source", H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, 1, d,
                 n ? bytes : (const uint8_t *)"") < 0)
        goto out;
    rc = 0;
out:
    if (g >= 0) H5Gclose(g);
    return rc;
}

static enum lmp_status read_tokenizer_obj(hid_t file, const char *fname, enum lmp_art_tok *kind,
                                          uint8_t **bytes, size_t *n, struct lmp_err *err) {
    char    k[16];
    int     r = 0;
    int64_t d[LMP_MAX_DIMS];
    *bytes             = NULL;
    *n                 = 0;
    hid_t           g  = H5I_INVALID_HID;
    enum lmp_status st = LMP_OK;
    if (H5Lexists(file, "tokenizer", H5P_DEFAULT) <= 0 ||
        (g = H5Gopen2(file, "tokenizer", H5P_DEFAULT)) < 0)
        return lmp_err_set(err, LMP_ENOENT, "'%s': no tokenizer stored", fname);
    if (attr_get_str(g, "kind", k, sizeof(k)) < 0 ||
        dset_shape(g, "source", &r, d, NULL, NULL) < 0 || r != 1) {
        st = lmp_err_set(err, LMP_EFORMAT, "'%s': malformed /tokenizer", fname);
        goto out;
    }
    if (strcmp(k, "gguf") == 0)
        *kind = LMP_ART_TOK_GGUF;
    else if (strcmp(k, "llama2c") == 0)
        *kind = LMP_ART_TOK_LLAMA2C;
    else if (strcmp(k, "hf") == 0)
        *kind = LMP_ART_TOK_HF;
    else {
        st = lmp_err_set(err, LMP_EFORMAT, "'%s': unknown tokenizer kind '%s'", fname, k);
        goto out;
    }
    *bytes = malloc((size_t)d[0] + 1);
    if (*bytes == NULL) {
        st = lmp_err_set(err, LMP_ENOMEM, "out of memory reading the tokenizer of '%s'", fname);
        goto out;
    }
    if ((st = dset_get(g, "source", H5T_NATIVE_UINT8, 1, 1, d, *bytes, fname, "/tokenizer", err)))
        goto out;
    *n = (size_t)d[0];
out:
    H5Gclose(g);
    if (st != LMP_OK) {
        free(*bytes);
        *bytes = NULL;
    }
    return st;
}

/* ------------------------------------------------------------------------------ */
/* parts                                                                            */

/* An in-memory HDF5 file for building one part. */
static hid_t part_begin(const char *label, enum item_kind kind, const char *name) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS), f = H5I_INVALID_HID;
    if (fapl < 0) return H5I_INVALID_HID;
    if (H5Pset_fapl_core(fapl, 1 << 20, 0) >= 0)
        f = H5Fcreate(label, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    if (f < 0) return f;
    if (attr_put_str(f, "format", FORMAT_PART) < 0 ||
        attr_put_i64(f, "format_version", write_version) < 0 ||
        attr_put_str(f, "part_kind", item_prefix[kind]) < 0 ||
        attr_put_str(f, "part_name", name) < 0) {
        H5Fclose(f);
        return H5I_INVALID_HID;
    }
    return f;
}

/* Take the image of the in-memory file f, close f (always), and commit it as the part
 * for (kind, name): write <dir>/<kind>-<name>.tmp, fsync, rename to
 * <dir>/<kind>-<name>-<xxh64>.h5, fsync the directory. *out_path gets the final path. */
static enum lmp_status part_commit(struct lmp_artifact *a, hid_t f, enum item_kind kind,
                                   const char *name, char **out_path, struct lmp_err *err) {
    uint8_t        *img = NULL;
    char           *fin = NULL;
    int             fd  = -1;
    enum lmp_status st  = LMP_OK;
    *out_path           = NULL;
    const char *sep     = name[0] ? "-" : "";
    char       *tmp     = lmp_strfmt("%s/%s%s%s.tmp", a->parts_dir, item_prefix[kind], sep, name);
    if (tmp == NULL) {
        H5Fclose(f);
        return lmp_err_set(err, LMP_ENOMEM, "out of memory committing to '%s'", a->parts_dir);
    }
    ssize_t size = -1;
    if (H5Fflush(f, H5F_SCOPE_GLOBAL) >= 0) size = H5Fget_file_image(f, NULL, 0);
    if (size > 0 && (img = malloc((size_t)size)) != NULL &&
        H5Fget_file_image(f, img, (size_t)size) != size)
        size = -1;
    if (H5Fclose(f) < 0) size = -1;
    if (size <= 0 || img == NULL) {
        st = lmp_err_set(err, img ? LMP_EIO : LMP_ENOMEM, "cannot build the hdf5 image of '%s'",
                         tmp);
        goto out;
    }
    uint64_t h = lmp_xxh64(img, (size_t)size, 0);
    fin = lmp_strfmt("%s/%s%s%s-%016" PRIx64 ".h5", a->parts_dir, item_prefix[kind], sep, name, h);
    if (fin == NULL) {
        st = lmp_err_set(err, LMP_ENOMEM, "out of memory committing '%s'", tmp);
        goto out;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || write_all(fd, img, (size_t)size) < 0 || fsync(fd) < 0) {
        int e = errno;
        st    = lmp_err_set(err, is_enospc(e) ? LMP_ENOSPC : LMP_EIO,
                            "cannot write '%s': %s (committed layers are intact)", tmp, strerror(e));
        goto out;
    }
    if (close(fd) < 0) {
        fd    = -1;
        int e = errno;
        st    = lmp_err_set(err, is_enospc(e) ? LMP_ENOSPC : LMP_EIO, "cannot write '%s': %s", tmp,
                            strerror(e));
        goto out;
    }
    fd = -1;
    if (rename(tmp, fin) < 0) {
        int e = errno;
        st    = lmp_err_set(err, LMP_EIO, "cannot commit '%s': %s", fin, strerror(e));
        goto out;
    }
    /* The part is in place: every reader and resume sees it from now on, so it is
     * committed, whatever the directory's fsync says. Reporting a failure here would make
     * the caller redo (or a fine-tuned block re-tune) work that a resume then finds
     * committed. A failed directory fsync is retried once; if it fails again the rename
     * may not survive a machine crash (only that: the next commit's directory fsync makes
     * it durable), which is said in a warning. */
    if (lmp_fsync_path(a->parts_dir, true) < 0 && lmp_fsync_path(a->parts_dir, true) < 0)
        lmp_log_warn("'%s' committed, but fsync of '%s' failed: %s (a machine crash before the "
                     "next commit could lose it)",
                     fin, a->parts_dir, strerror(errno));
    *out_path = fin;
    fin       = NULL;
out:
    if (fd >= 0) close(fd);
    if (st != LMP_OK && st != LMP_ENOMEM) unlink(tmp);
    free(img);
    free(tmp);
    free(fin);
    return st;
}

/* Open a committed part: read it, check its bytes against the hash in its name, and
 * open the image in memory. */
static enum lmp_status part_open(const char *path, hid_t *out, struct lmp_err *err) {
    char  *buf         = NULL;
    size_t len         = 0;
    *out               = H5I_INVALID_HID;
    enum lmp_status st = lmp_file_read_all(path, &buf, &len, err);
    if (st != LMP_OK) return st;
    const char *dash = strrchr(path, '-');
    uint64_t    want = dash ? strtoull(dash + 1, NULL, 16) : 0;
    if (len == 0 || lmp_xxh64(buf, len, 0) != want) {
        free(buf);
        return lmp_err_set(err, LMP_EFORMAT,
                           "'%s': checksum mismatch, the committed part is corrupt (delete it to "
                           "recompute what it held)",
                           path);
    }
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS), f = H5I_INVALID_HID;
    if (fapl >= 0 && H5Pset_fapl_core(fapl, 1 << 20, 0) >= 0 &&
        H5Pset_file_image(fapl, buf, len) >= 0) {
        /* the core driver refuses an image whose name exists on disk: give it another */
        char *label = lmp_strfmt("%s#image", path);
        if (label) f = H5Fopen(label, H5F_ACC_RDONLY, fapl);
        free(label);
    }
    if (fapl >= 0) H5Pclose(fapl);
    free(buf); /* H5Pset_file_image copied it */
    if (f < 0) return lmp_err_set(err, LMP_EFORMAT, "'%s': not a readable hdf5 part", path);
    if ((st = check_format(f, path, FORMAT_PART, err)) != LMP_OK) {
        H5Fclose(f);
        return st;
    }
    *out = f;
    return LMP_OK;
}

/* Parse "<kind>-<name>-<16 hex>.h5" (name may be empty for job/tokenizer). */
static bool part_parse(const char *fn, enum item_kind *kind, char *name, size_t cap) {
    size_t n = strlen(fn);
    if (n < 3 + 17 || strcmp(fn + n - 3, ".h5") != 0) return false;
    const char *hex = fn + n - 3 - 16;
    if (hex[-1] != '-') return false;
    for (int i = 0; i < 16; i++)
        if (!((hex[i] >= '0' && hex[i] <= '9') || (hex[i] >= 'a' && hex[i] <= 'f'))) return false;
    for (int k = 0; k < ITEM_COUNT; k++) {
        size_t pl = strlen(item_prefix[k]);
        if (strncmp(fn, item_prefix[k], pl) != 0 || fn[pl] != '-') continue;
        const char *nm = fn + pl + 1;
        size_t      nl = nm >= hex ? 0 : (size_t)(hex - 1 - nm); /* 0: "job-<hex>.h5" */
        if (nl >= cap) return false;
        memcpy(name, nm, nl);
        name[nl]        = '\0';
        bool needs_name = k == ITEM_LAYER || k == ITEM_TENSOR || k == ITEM_BLOCK;
        if (needs_name != (nl > 0) || (nl > 0 && !name_ok(name))) return false;
        *kind = (enum item_kind)k;
        return true;
    }
    return false;
}

/* ------------------------------------------------------------------------------ */
/* the index                                                                        */

static int64_t find_item(const struct lmp_artifact *a, enum item_kind kind, const char *name) {
    for (int64_t i = 0; i < a->n_items; i++)
        if (a->items[i].kind == kind && strcmp(a->items[i].name, name) == 0) return i;
    return -1;
}

static enum lmp_status add_item(struct lmp_artifact *a, enum item_kind kind, const char *name,
                                char *part /* taken */, struct lmp_err *err) {
    if (a->n_items == a->cap_items) {
        int64_t      cap = a->cap_items ? 2 * a->cap_items : 64;
        struct item *ni  = realloc(a->items, (size_t)cap * sizeof(*ni));
        if (ni == NULL) {
            free(part);
            return lmp_err_set(err, LMP_ENOMEM, "out of memory indexing '%s'", a->path);
        }
        a->items     = ni;
        a->cap_items = cap;
    }
    struct item *it = &a->items[a->n_items++];
    it->kind        = kind;
    snprintf(it->name, sizeof(it->name), "%s", name);
    it->part = part;
    return LMP_OK;
}

struct name_idx {
    const char *name;
    int64_t     idx;
};

static int cmp_name_idx(const void *x, const void *y) {
    return strcmp(((const struct name_idx *)x)->name, ((const struct name_idx *)y)->name);
}

static enum lmp_status rebuild_order(struct lmp_artifact *a, struct lmp_err *err) {
    free(a->layer_order);
    free(a->tensor_order);
    a->n_layer_order = a->n_tensor_order = 0;
    a->layer_order                       = malloc((size_t)(a->n_items + 1) * sizeof(int64_t));
    a->tensor_order                      = malloc((size_t)(a->n_items + 1) * sizeof(int64_t));
    if (!a->layer_order || !a->tensor_order)
        return lmp_err_set(err, LMP_ENOMEM, "out of memory indexing '%s'", a->path);
    for (int64_t j = 0; j < a->job.n_linears; j++) {
        int64_t i = find_item(a, ITEM_LAYER, a->job.linears[j].name);
        if (i >= 0) a->layer_order[a->n_layer_order++] = i;
    }
    struct name_idx *ni = malloc((size_t)(a->n_items + 1) * sizeof(*ni));
    if (ni == NULL) return lmp_err_set(err, LMP_ENOMEM, "out of memory indexing '%s'", a->path);
    int64_t n = 0;
    for (int64_t i = 0; i < a->n_items; i++)
        if (a->items[i].kind == ITEM_TENSOR) ni[n++] = (struct name_idx){a->items[i].name, i};
    qsort(ni, (size_t)n, sizeof(*ni), cmp_name_idx);
    for (int64_t k = 0; k < n; k++) a->tensor_order[k] = ni[k].idx;
    a->n_tensor_order = n;
    free(ni);
    return LMP_OK;
}

static const struct lmp_art_linear *job_linear(const struct lmp_art_job *job, const char *name) {
    for (int64_t j = 0; j < job->n_linears; j++)
        if (strcmp(job->linears[j].name, name) == 0) return &job->linears[j];
    return NULL;
}

/* Index the layers and tensors of file f (named fname): each becomes an item of part
 * (copied; NULL = the main file). Objects indexed already are skipped and counted in
 * *n_old, the others in *n_new. */
static enum lmp_status index_objects(struct lmp_artifact *a, hid_t f, const char *fname,
                                     const char *part, int64_t *n_new, int64_t *n_old,
                                     struct lmp_err *err) {
    static const char *const groups[2] = {"layers", "tensors"};
    enum lmp_status          st;
    for (int gi = 0; gi < 2; gi++) {
        if (H5Lexists(f, groups[gi], H5P_DEFAULT) <= 0) continue;
        hid_t      g = H5Gopen2(f, groups[gi], H5P_DEFAULT);
        H5G_info_t info;
        if (g < 0 || H5Gget_info(g, &info) < 0) {
            if (g >= 0) H5Gclose(g);
            return lmp_err_set(err, LMP_EFORMAT, "'%s': cannot read group /%s", fname, groups[gi]);
        }
        for (hsize_t k = 0; k < info.nlinks; k++) {
            char    name[LMP_NAME_MAX];
            ssize_t nl = H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, k, name,
                                            sizeof(name), H5P_DEFAULT);
            if (nl <= 0 || nl >= (ssize_t)sizeof(name) || !name_ok(name)) {
                H5Gclose(g);
                return lmp_err_set(err, LMP_EFORMAT, "'%s': bad object name in /%s", fname,
                                   groups[gi]);
            }
            const enum item_kind kind = gi == 0 ? ITEM_LAYER : ITEM_TENSOR;
            if (find_item(a, kind, name) >= 0) {
                (*n_old)++;
                continue;
            }
            char *p = part ? xstrdup(part) : NULL;
            if (part && p == NULL) {
                H5Gclose(g);
                return lmp_err_set(err, LMP_ENOMEM, "out of memory indexing '%s'", fname);
            }
            if ((st = add_item(a, kind, name, p, err))) {
                H5Gclose(g);
                return st;
            }
            (*n_new)++;
        }
        H5Gclose(g);
    }
    return LMP_OK;
}

/* Index the main file's contents. */
static enum lmp_status index_main(struct lmp_artifact *a, struct lmp_err *err) {
    enum lmp_status st;
    if ((st = check_format(a->main, a->path, FORMAT_MAIN, err)) ||
        (st = read_job(a->main, a->path, &a->job, err)))
        return st;
    if (attr_get_i64(a->main, "format_version", &a->job_version) < 0) a->job_version = 0;
    a->have_job   = true;
    int64_t n_new = 0, n_old = 0;
    if ((st = index_objects(a, a->main, a->path, NULL, &n_new, &n_old, err))) return st;
    if (H5Lexists(a->main, "tokenizer", H5P_DEFAULT) > 0 &&
        (st = add_item(a, ITEM_TOKENIZER, "", NULL, err)))
        return st;
    return LMP_OK;
}

/* The setting where description a first differs from b ("key=value" words), escaped
 * into out: the key and, for a long value, its part around the first difference. */
static void desc_diff(const char *a, const char *b, char *out, size_t n) {
    size_t i = 0;
    while (a[i] && a[i] == b[i]) i++;
    size_t w = i; /* the word holding the difference */
    while (w > 0 && a[w - 1] != ' ') w--;
    size_t e = i;
    while (a[e] && a[e] != ' ') e++;
    const char *eq = memchr(a + w, '=', e - w);
    size_t      v  = eq ? (size_t)(eq - a) + 1 : w; /* the value's start */
    char        key[64], val[200];
    lmp_str_escape_n(key, sizeof(key), a + w, v - w);
    const size_t from = i > v + 40 ? i - 40 : v; /* a little context before the change */
    lmp_str_escape_n(val, sizeof(val), a + from, e - from);
    if (e == w)
        snprintf(out, n, "(nothing)");
    else
        snprintf(out, n, "'%s%s%s'", key, from > v ? "..." : "", val);
}

static enum lmp_status job_match(const struct lmp_artifact *a, const struct lmp_art_job *have,
                                 const struct lmp_art_job *want, struct lmp_err *err) {
    /* outside text (paths, settings) is escaped and cut to fit the one-line message */
    char p[256], hn[160], wn[160], hd[512], wd[512];
    lmp_str_escape(p, sizeof(p), a->path);
    if (have->model_fp != want->model_fp)
        return lmp_err_set(err, LMP_EMISMATCH,
                           "'%s' was made from model '%s' (fingerprint %016" PRIx64 "), this run "
                           "uses '%s' (%016" PRIx64 "): use another --out or delete it",
                           p, lmp_str_escape(hn, sizeof(hn), have->model_name), have->model_fp,
                           lmp_str_escape(wn, sizeof(wn), want->model_name), want->model_fp);
    if (strcmp(have->build, want->build) != 0)
        return lmp_err_set(err, LMP_EMISMATCH,
                           "'%s' was written by build '%s', this is '%s': another build computes "
                           "other codebooks, so a resume would mix them; resume with the same "
                           "build, or use another --out",
                           p, have->build[0] ? have->build : "(not recorded)", want->build);
    if (have->calib_fp != want->calib_fp) {
        const char *a0 = have->calib_desc ? have->calib_desc : "";
        const char *b0 = want->calib_desc ? want->calib_desc : "";
        if (strcmp(a0, b0) == 0)
            return lmp_err_set(err, LMP_EMISMATCH,
                               "'%s' was made with other calibration data (same settings, "
                               "other tokens: fingerprint %016" PRIx64 ", this run %016" PRIx64
                               "): use another --out or delete it",
                               p, have->calib_fp, want->calib_fp);
        desc_diff(a0, b0, hd, sizeof(hd));
        desc_diff(b0, a0, wd, sizeof(wd));
        return lmp_err_set(err, LMP_EMISMATCH,
                           "'%s' was made with other calibration data or settings: %s there, "
                           "%s in this run (fingerprint %016" PRIx64 ", this run %016" PRIx64
                           "): use another --out or delete it",
                           p, hd, wd, have->calib_fp, want->calib_fp);
    }
    if (strcmp(have->method, want->method) != 0 || strcmp(have->scheme, want->scheme) != 0)
        return lmp_err_set(err, LMP_EMISMATCH,
                           "'%s' was made with method '%s' scheme '%s', this run uses '%s' '%s': "
                           "use another --out or delete it",
                           p, have->method, have->scheme, want->method, want->scheme);
    return LMP_OK;
}

/* Scan parts_dir: index every committed part; writers also verify each part and
 * remove .tmp leftovers and parts already assembled into the main file. */
static enum lmp_status index_parts(struct lmp_artifact *a, const struct lmp_art_job *want,
                                   struct lmp_err *err) {
    DIR *d = opendir(a->parts_dir);
    if (d == NULL) {
        const int e = errno;
        if (e == ENOENT) return LMP_OK;
        /* a path the system cannot take or read is a rejected input, not an I/O fault */
        const bool input = e == ENAMETOOLONG || e == ENOTDIR || e == EACCES || e == ELOOP;
        return lmp_err_set(err, input ? LMP_ENOENT : LMP_EIO, "cannot read '%s': %s", a->parts_dir,
                           strerror(e));
    }
    enum lmp_status st = LMP_OK;
    struct dirent  *e;
    while ((e = readdir(d)) != NULL) {
        const char *fn = e->d_name;
        if (fn[0] == '.' || strcmp(fn, "LOCK") == 0 ||
            strncmp(fn, EVENTS_FILE, strlen(EVENTS_FILE)) == 0)
            continue; /* events.log and a set-aside events.log.bad-<time> */
        char  name[LMP_NAME_MAX];
        char *path = lmp_strfmt("%s/%s", a->parts_dir, fn);
        if (path == NULL) {
            st = lmp_err_set(err, LMP_ENOMEM, "out of memory reading '%s'", a->parts_dir);
            break;
        }
        size_t fl = strlen(fn);
        if (fl > 4 && strcmp(fn + fl - 4, ".tmp") == 0) {
            if (a->writer) {
                lmp_log_warn("removing '%s': a part that was never committed (interrupted write)",
                             path);
                unlink(path);
            }
            free(path);
            continue;
        }
        enum item_kind kind;
        if (!part_parse(fn, &kind, name, sizeof(name))) {
            lmp_log_warn("ignoring '%s': not an artifact part", path);
            free(path);
            continue;
        }
        if (a->writer && kind != ITEM_BLOCK) { /* verify now: resume must not build on it */
            hid_t f;
            if ((st = part_open(path, &f, err))) {
                free(path);
                break;
            }
            H5Fclose(f);
        }
        if (kind == ITEM_BLOCK) { /* its layers and tensors, indexed one by one */
            hid_t   f;
            int64_t n_new = 0, n_old = 0;
            if ((st = part_open(path, &f, err))) {
                free(path);
                break;
            }
            st = index_objects(a, f, path, path, &n_new, &n_old, err);
            H5Fclose(f);
            if (st == LMP_OK && n_new == 0 && a->writer) unlink(path); /* assembled already */
            free(path);
            if (st != LMP_OK) break;
            continue;
        }
        if (find_item(a, kind, name) >= 0) { /* already assembled into the main file */
            if (a->writer) unlink(path);
            free(path);
            continue;
        }
        if ((st = add_item(a, kind, name, path, err))) break; /* path taken */
    }
    closedir(d);
    if (st != LMP_OK) return st;
    (void)want;
    int64_t ji = find_item(a, ITEM_JOB, "");
    if (!a->have_job && ji >= 0) {
        hid_t f;
        if ((st = part_open(a->items[ji].part, &f, err))) return st;
        st = read_job(f, a->items[ji].part, &a->job, err);
        if (attr_get_i64(f, "format_version", &a->job_version) < 0) a->job_version = 0;
        H5Fclose(f);
        if (st) return st;
        a->have_job = true;
    }
    /* parts of a directory without a job part cannot be trusted to belong together */
    if (!a->have_job && a->n_items > 0)
        return lmp_err_set(err, LMP_EFORMAT, "'%s': parts without a job description", a->parts_dir);
    return LMP_OK;
}

static enum lmp_status open_main_if_any(struct lmp_artifact *a, struct lmp_err *err) {
    struct stat sb;
    if (stat(a->path, &sb) != 0) return LMP_OK;
    if (!S_ISREG(sb.st_mode))
        return lmp_err_set(err, LMP_EIO, "'%s' is not a regular file", a->path);
    if (H5Fis_hdf5(a->path) <= 0)
        return lmp_err_set(err, LMP_EFORMAT, "'%s': not an hdf5 file (corrupt or truncated)",
                           a->path);
    a->main = H5Fopen(a->path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (a->main < 0)
        return lmp_err_set(err, LMP_EFORMAT,
                           "'%s': cannot open the hdf5 file (corrupt or truncated)", a->path);
    return index_main(a, err);
}

static struct lmp_artifact *artifact_new(const char *path) {
    struct lmp_artifact *a = calloc(1, sizeof(*a));
    if (a == NULL) return NULL;
    a->main        = H5I_INVALID_HID;
    a->lock_fd     = -1;
    a->path        = xstrdup(path);
    a->parts_dir   = lmp_strfmt("%s.parts", path);
    a->dir         = dir_of(path);
    a->tmp_path    = lmp_strfmt("%s.tmp", path);
    a->lock_path   = lmp_strfmt("%s.parts/LOCK", path);
    a->events_file = lmp_strfmt("%s.parts/%s", path, EVENTS_FILE);
    if (a->path == NULL || a->parts_dir == NULL || a->dir == NULL || a->tmp_path == NULL ||
        a->lock_path == NULL || a->events_file == NULL)
        lmp_artifact_close(&a);
    return a;
}

void lmp_artifact_close(struct lmp_artifact **ap) {
    if (ap == NULL || *ap == NULL) return;
    struct lmp_artifact *a = *ap;
    if (a->main >= 0) H5Fclose(a->main);
    lmp_events_close(&a->events);
    if (a->lock_fd >= 0) close(a->lock_fd); /* releases the flock */
    for (int64_t i = 0; i < a->n_items; i++) free(a->items[i].part);
    free(a->items);
    free(a->layer_order);
    free(a->tensor_order);
    lmp_art_job_release(&a->job);
    free(a->path);
    free(a->parts_dir);
    free(a->dir);
    free(a->tmp_path);
    free(a->lock_path);
    free(a->events_file);
    free(a);
    *ap = NULL;
}

enum lmp_status lmp_artifact_open_write(const char *path, const struct lmp_art_job *job,
                                        struct lmp_artifact **out, struct lmp_err *err) {
    assert(path && job && out);
    h5_quiet();
    *out               = NULL;
    enum lmp_status st = LMP_OK;
    /* the longest name a writer makes: ART.h5.parts/layer-<name>-<16 hex>.h5 */
    const size_t longest =
        strlen(path) + strlen(".parts/layer--0123456789abcdef.h5") + LMP_NAME_MAX;
    if (longest >= PATH_MAX) {
        char q[200];
        return lmp_err_set(err, LMP_EUNSUP,
                           "'%s': path of %zu bytes, too long for the parts beside it (this "
                           "system takes paths of at most %d bytes): use a shorter --out",
                           lmp_str_escape(q, sizeof(q), path), strlen(path), PATH_MAX - 1);
    }
    struct lmp_artifact *a = artifact_new(path);
    if (a == NULL) return lmp_err_set(err, LMP_ENOMEM, "out of memory opening '%s'", path);
    a->writer = true;
    if (job->method[0] == '\0' || job->n_linears <= 0) {
        st = lmp_err_set(err, LMP_EINVAL, "'%s': job without a method or linears", path);
        goto fail;
    }
    for (int64_t j = 0; j < job->n_linears; j++)
        if (!name_ok(job->linears[j].name)) {
            st = lmp_err_set(err, LMP_EINVAL, "'%s': bad linear name '%s'", path,
                             job->linears[j].name);
            goto fail;
        }
    if (mkdir(a->parts_dir, 0755) < 0 && errno != EEXIST) {
        int e = errno;
        st    = lmp_err_set(err, is_enospc(e) ? LMP_ENOSPC : LMP_EIO, "cannot create '%s': %s",
                            a->parts_dir, strerror(e));
        goto fail;
    }
    const char *lock = a->lock_path;
    a->lock_fd       = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (a->lock_fd < 0) {
        int e = errno;
        st = lmp_err_set(err, is_enospc(e) ? LMP_ENOSPC : LMP_EIO, "cannot create '%s': %s", lock,
                         strerror(e));
        goto fail;
    }
    if (flock(a->lock_fd, LOCK_EX | LOCK_NB) < 0) {
        st = lmp_err_set(err, LMP_EIO, "'%s' is being written by another process (lock '%s')", path,
                         lock);
        goto fail;
    }
    lmp_fsync_path(a->dir, true); /* make the parts directory itself durable */
    if ((st = open_main_if_any(a, err)) || (st = index_parts(a, job, err))) goto fail;
    if (a->have_job) {
        if ((st = job_match(a, &a->job, job, err))) goto fail;
        if (storage_version(a->job_version) != storage_version(write_version)) {
            /* one artifact, one storage precision */
            char p[256];
            st = lmp_err_set(err, LMP_EMISMATCH,
                             "'%s' is in artifact format %lld, this lmpress writes format %d "
                             "(other storage types): a resume would mix them; use another --out "
                             "or delete it",
                             lmp_str_escape(p, sizeof(p), path), (long long)a->job_version,
                             write_version);
            goto fail;
        }
    } else {
        hid_t f = part_begin("job", ITEM_JOB, "");
        char *p = NULL;
        if (f < 0 || write_job(f, job) < 0) {
            if (f >= 0) H5Fclose(f);
            st = lmp_err_set(err, LMP_EIO, "'%s': cannot build the job description", path);
            goto fail;
        }
        if ((st = part_commit(a, f, ITEM_JOB, "", &p, err))) goto fail;
        if ((st = add_item(a, ITEM_JOB, "", p, err))) goto fail;
        /* keep our own copy of the job (with its linears and strings) */
        if (job_copy(&a->job, job) != LMP_OK) {
            st = lmp_err_set(err, LMP_ENOMEM, "out of memory");
            goto fail;
        }
        a->have_job = true;
    }
    if ((st = rebuild_order(a, err)) || (st = events_start(a, err))) goto fail;
    *out = a;
    return LMP_OK;
fail:
    lmp_artifact_close(&a);
    return st;
}

enum lmp_status lmp_artifact_open_read(const char *path, struct lmp_artifact **out,
                                       struct lmp_err *err) {
    assert(path && out);
    h5_quiet();
    *out = NULL;
    enum lmp_status      st;
    struct lmp_artifact *a = artifact_new(path);
    if (a == NULL) return lmp_err_set(err, LMP_ENOMEM, "out of memory opening '%s'", path);
    if ((st = open_main_if_any(a, err)) || (st = index_parts(a, NULL, err))) goto fail;
    if (!a->have_job) {
        st = lmp_err_set(err, LMP_ENOENT, "no artifact at '%s'", path);
        goto fail;
    }
    if ((st = rebuild_order(a, err))) goto fail;
    *out = a;
    return LMP_OK;
fail:
    lmp_artifact_close(&a);
    return st;
}

/* ------------------------------------------------------------------------------ */
/* commits                                                                          */

static enum lmp_status writable(const struct lmp_artifact *a, struct lmp_err *err) {
    if (!a->writer) return lmp_err_set(err, LMP_EINVAL, "'%s' is open read-only", a->path);
    if (a->finalized)
        return lmp_err_set(err, LMP_EINVAL, "'%s' is finalized: reopen it to add more", a->path);
    return LMP_OK;
}

/* Check l against the job before it is committed: a linear of the model, its shape, its
 * parameters and arrays, not committed yet, every code below 2^B. */
static enum lmp_status layer_check(const struct lmp_artifact *a, const struct lmp_art_layer *l,
                                   struct lmp_err *err) {
    char                         msg[128];
    const struct lmp_art_linear *lin = job_linear(&a->job, l->name);
    if (lin == NULL)
        return lmp_err_set(err, LMP_EINVAL, "'%s': '%s' is not a linear of the model", a->path,
                           l->name);
    if (lin->n_out != l->n_out || lin->n_in != l->n_in)
        return lmp_err_set(err, LMP_EINVAL,
                           "'%s': layer '%s' has shape (%lld, %lld), the model "
                           "says (%lld, %lld)",
                           a->path, l->name, (long long)l->n_out, (long long)l->n_in,
                           (long long)lin->n_out, (long long)lin->n_in);
    if (!layer_params_ok(l, msg, sizeof(msg)))
        return lmp_err_set(err, LMP_EINVAL, "'%s': layer '%s': %s", a->path, l->name, msg);
    if (!l->codes || !l->scales || (l->codec == LMP_ART_CODEC_AQ ? !l->codebooks : !l->zeros))
        return lmp_err_set(err, LMP_EINVAL, "'%s': layer '%s' lacks an array", a->path, l->name);
    if (find_item(a, ITEM_LAYER, l->name) >= 0)
        return lmp_err_set(err, LMP_EINVAL, "'%s': layer '%s' is already committed", a->path,
                           l->name);
    const int64_t  nc  = lmp_art_layer_n_codes(l);
    const uint32_t lim = 1u << l->B;
    for (int64_t i = 0; i < nc; i++)
        if (l->codes[i] >= lim)
            return lmp_err_set(err, LMP_EINVAL, "'%s': layer '%s' has a code %u >= 2^%d", a->path,
                               l->name, l->codes[i], l->B);
    if (l->codec == LMP_ART_CODEC_AQ && write_version >= 2) { /* stored as fp16 */
        const int64_t n[2] = {lmp_art_layer_n_codebooks(l), lmp_art_layer_n_scales(l)};
        const float  *v[2] = {l->codebooks, l->scales};
        for (int k = 0; k < 2; k++)
            for (int64_t i = 0; i < n[k]; i++)
                if ((lmp_f32_to_f16(v[k][i]) & 0x7C00u) == 0x7C00u)
                    return lmp_err_set(err, LMP_EINVAL,
                                       "'%s': layer '%s': %s value %g at index %lld is not a "
                                       "finite fp16 (|v| < 65520)",
                                       a->path, l->name, k ? "scale" : "codebook", (double)v[k][i],
                                       (long long)i);
    }
    return LMP_OK;
}

enum lmp_status lmp_artifact_commit_layer(struct lmp_artifact *a, const struct lmp_art_layer *l,
                                          struct lmp_err *err) {
    assert(a && l);
    enum lmp_status st;
    if ((st = writable(a, err)) || (st = layer_check(a, l, err))) return st;
    if ((st = lmp_artifact_sync_events(a, err))) return st; /* events.h: fsync policy */
    hid_t f = part_begin(l->name, ITEM_LAYER, l->name);
    if (f < 0 || write_layer_obj(f, l) < 0) {
        if (f >= 0) H5Fclose(f);
        return lmp_err_set(err, LMP_EIO, "'%s': cannot build layer '%s' (hdf5)", a->path, l->name);
    }
    char *p = NULL;
    if ((st = part_commit(a, f, ITEM_LAYER, l->name, &p, err)) ||
        (st = add_item(a, ITEM_LAYER, l->name, p, err)))
        return st;
    return rebuild_order(a, err);
}

/* Open the file holding item i: the main file (borrowed: *owned false) or its part. */
static enum lmp_status item_file(struct lmp_artifact *a, int64_t i, hid_t *f, const char **fname,
                                 struct lmp_err *err) {
    const struct item *it = &a->items[i];
    if (it->part == NULL) {
        *f     = a->main;
        *fname = a->path;
        return LMP_OK;
    }
    *fname = it->part;
    return part_open(it->part, f, err);
}
static void item_done(struct lmp_artifact *a, hid_t f) {
    if (f >= 0 && f != a->main) H5Fclose(f);
}

static bool tensor_ok(const struct lmp_art_tensor *t) {
    return name_ok(t->name) &&
           (t->dtype == LMP_DTYPE_F32 || t->dtype == LMP_DTYPE_F16 || t->dtype == LMP_DTYPE_BF16 ||
            (quant_dtype(t->dtype) && t->n_dims == 2)) &&
           t->n_dims >= 1 && t->n_dims <= LMP_MAX_DIMS && tensor_elem(t) >= 0 &&
           tensor_bytes(t) >= 0 && t->data != NULL;
}

/* Tensor item i (committed earlier) against t: LMP_OK when identical, LMP_EMISMATCH when
 * not. */
static enum lmp_status tensor_same(struct lmp_artifact *a, int64_t i,
                                   const struct lmp_art_tensor *t, struct lmp_err *err) {
    hid_t                 f;
    const char           *fn;
    struct lmp_art_tensor have;
    uint64_t              h = 0;
    enum lmp_status       st;
    if ((st = item_file(a, i, &f, &fn, err))) return st;
    st = read_tensor_obj(f, fn, t->name, &have, false, &h, err);
    item_done(a, f);
    if (st) return st;
    bool same = have.dtype == t->dtype && have.n_dims == t->n_dims &&
                memcmp(have.shape, t->shape, (size_t)t->n_dims * sizeof(int64_t)) == 0 &&
                h == lmp_xxh64(t->data, (size_t)tensor_bytes(t), 0);
    if (!same)
        return lmp_err_set(err, LMP_EMISMATCH,
                           "'%s': tensor '%s' is already stored with "
                           "different contents",
                           a->path, t->name);
    return LMP_OK;
}

enum lmp_status lmp_artifact_put_tensor(struct lmp_artifact *a, const struct lmp_art_tensor *t,
                                        struct lmp_err *err) {
    assert(a && t);
    enum lmp_status st;
    if ((st = writable(a, err))) return st;
    if (!tensor_ok(t))
        return lmp_err_set(err, LMP_EINVAL, "'%s': invalid tensor '%s'", a->path, t->name);
    int64_t i = find_item(a, ITEM_TENSOR, t->name);
    if (i >= 0) return tensor_same(a, i, t, err); /* committed earlier: must be identical */
    hid_t f = part_begin(t->name, ITEM_TENSOR, t->name);
    if (f < 0 || write_tensor_obj(f, t, NULL) < 0) {
        if (f >= 0) H5Fclose(f);
        return lmp_err_set(err, LMP_EIO, "'%s': cannot build tensor '%s' (hdf5)", a->path, t->name);
    }
    char *p = NULL;
    if ((st = part_commit(a, f, ITEM_TENSOR, t->name, &p, err)) ||
        (st = add_item(a, ITEM_TENSOR, t->name, p, err)))
        return st;
    return rebuild_order(a, err);
}

enum lmp_status lmp_artifact_commit_block(struct lmp_artifact *a, const char *name,
                                          const struct lmp_art_layer *layers, int64_t n_layers,
                                          const struct lmp_art_tensor *tensors, int64_t n_tensors,
                                          struct lmp_err *err) {
    assert(a && name && (layers || n_layers == 0) && (tensors || n_tensors == 0));
    enum lmp_status st;
    if ((st = writable(a, err))) return st;
    if (!name_ok(name) || n_layers + n_tensors <= 0)
        return lmp_err_set(err, LMP_EINVAL, "'%s': invalid block '%s'", a->path, name);
    bool *put = calloc((size_t)n_tensors + 1, sizeof(*put)); /* tensors the part holds */
    if (put == NULL) return lmp_err_set(err, LMP_ENOMEM, "out of memory committing '%s'", name);
    int64_t n_put = n_layers;
    for (int64_t i = 0; i < n_layers && st == LMP_OK; i++) {
        st = layer_check(a, &layers[i], err);
        for (int64_t j = 0; j < i && st == LMP_OK; j++)
            if (strcmp(layers[j].name, layers[i].name) == 0)
                st = lmp_err_set(err, LMP_EINVAL, "'%s': block '%s' holds layer '%s' twice",
                                 a->path, name, layers[i].name);
    }
    for (int64_t i = 0; i < n_tensors && st == LMP_OK; i++) {
        const struct lmp_art_tensor *t = &tensors[i];
        if (!tensor_ok(t)) {
            st = lmp_err_set(err, LMP_EINVAL, "'%s': invalid tensor '%s'", a->path, t->name);
            break;
        }
        for (int64_t j = 0; j < i && st == LMP_OK; j++)
            if (strcmp(tensors[j].name, t->name) == 0)
                st = lmp_err_set(err, LMP_EINVAL, "'%s': block '%s' holds tensor '%s' twice",
                                 a->path, name, t->name);
        int64_t k = find_item(a, ITEM_TENSOR, t->name);
        if (st == LMP_OK && k >= 0)
            st = tensor_same(a, k, t, err); /* committed earlier: identical, left out */
        else if (st == LMP_OK)
            put[i] = true, n_put++;
    }
    if (st != LMP_OK || n_put == 0) {
        free(put);
        return st;
    }
    if ((st = lmp_artifact_sync_events(a, err))) { /* events.h: fsync policy */
        free(put);
        return st;
    }
    hid_t f  = part_begin(name, ITEM_BLOCK, name);
    bool  ok = f >= 0;
    for (int64_t i = 0; ok && i < n_layers; i++) ok = write_layer_obj(f, &layers[i]) >= 0;
    for (int64_t i = 0; ok && i < n_tensors; i++)
        ok = !put[i] || write_tensor_obj(f, &tensors[i], NULL) >= 0;
    if (!ok) {
        if (f >= 0) H5Fclose(f);
        free(put);
        return lmp_err_set(err, LMP_EIO, "'%s': cannot build block '%s' (hdf5)", a->path, name);
    }
    char *p = NULL;
    if ((st = part_commit(a, f, ITEM_BLOCK, name, &p, err))) {
        free(put);
        return st;
    }
    /* committed: index every object of the part (each item owns a copy of its path) */
    for (int64_t i = 0; st == LMP_OK && i < n_layers + n_tensors; i++) {
        if (i >= n_layers && !put[i - n_layers]) continue;
        char *q = xstrdup(p);
        st      = q ? add_item(a, i < n_layers ? ITEM_LAYER : ITEM_TENSOR,
                          i < n_layers ? layers[i].name : tensors[i - n_layers].name, q, err)
                    : lmp_err_set(err, LMP_ENOMEM, "out of memory indexing '%s'", p);
    }
    free(p);
    free(put);
    return st ? st : rebuild_order(a, err);
}

/* dtype of a tensor stored at bits: 8 Q8_0, 4 Q4_1, else -1 (the source's precision) */
static int bits_dtype(int bits) {
    return bits == 8 ? LMP_DTYPE_Q8_0 : bits == 4 ? LMP_DTYPE_Q4_1 : -1;
}

/* t (name and shape set) = src quantized to dtype q, row by row; *buf owns the blocks.
 * A source already in dtype q is copied as it is (requantizing it could only lose). */
static enum lmp_status quantize_tensor(struct lmp_art_tensor *t, const struct lmp_tensor *src,
                                       int q, void **buf, struct lmp_err *err) {
    const int64_t rows = t->shape[0], cols = t->shape[1];
    const int64_t rb = cols % 32 == 0 ? lmp_tensor_expected_bytes((enum lmp_dtype)q, 1, &cols) : -1;
    if (t->n_dims != 2 || rb <= 0)
        return lmp_err_set(err, LMP_EINVAL,
                           "cannot store '%s' as %s: its rows of %lld are not a multiple of 32",
                           t->name, lmp_dtype_name((enum lmp_dtype)q), (long long)cols);
    t->dtype = (enum lmp_dtype)q;
    if (src->dtype == (enum lmp_dtype)q) {
        t->data = (void *)src->data; /* written, never modified */
        return LMP_OK;
    }
    uint8_t *blocks = malloc((size_t)(rows * rb > 0 ? rows * rb : 1));
    float   *row    = malloc((size_t)cols * sizeof(float));
    if (blocks == NULL || row == NULL) {
        free(blocks);
        free(row);
        return lmp_err_set(err, LMP_ENOMEM, "out of memory quantizing '%s'", t->name);
    }
    for (int64_t r = 0; r < rows; r++) {
        lmp_tensor_rows_f32(src, r, 1, row);
        if (lmp_quantize_row(q, row, blocks + r * rb, cols) != 0) {
            free(blocks);
            free(row);
            return lmp_err_set(err, LMP_EINVAL,
                               "cannot store '%s' as %s: row %lld has a value that is not "
                               "finite or too large for an fp16 scale",
                               t->name, lmp_dtype_name((enum lmp_dtype)q), (long long)r);
        }
    }
    free(row);
    t->data = blocks;
    *buf    = blocks;
    return LMP_OK;
}

/* Store source tensor src under name with canonical shape (n_dims, shape), at bits 8 or 4
 * (Q8_0, Q4_1: quantize_tensor), or else in its source's precision. */
static enum lmp_status put_model_tensor(struct lmp_artifact *a, const char *name,
                                        const struct lmp_tensor *src, int n_dims,
                                        const int64_t *shape, int bits, struct lmp_err *err) {
    struct lmp_art_tensor t = {0};
    snprintf(t.name, sizeof(t.name), "%s", name);
    t.n_dims = n_dims;
    memcpy(t.shape, shape, (size_t)n_dims * sizeof(int64_t));
    float *buf = NULL;
    if (bits_dtype(bits) >= 0) {
        void           *qbuf = NULL;
        enum lmp_status st   = quantize_tensor(&t, src, bits_dtype(bits), &qbuf, err);
        if (st == LMP_OK) st = lmp_artifact_put_tensor(a, &t, err);
        free(qbuf);
        lmp_map_release_pages(src->data, (size_t)src->nbytes);
        return st;
    }
    if (src->dtype == LMP_DTYPE_F32 || src->dtype == LMP_DTYPE_F16 ||
        src->dtype == LMP_DTYPE_BF16) {
        t.dtype = src->dtype;
        t.data  = (void *)src->data; /* written, never modified */
    } else {
        /* ggml quants: dequantized, then stored as fp16 (their scales are fp16 too;
         * fp32 would double the file for no information, docs/artifact.md) */
        int64_t rows = lmp_tensor_n_rows(src), cols = lmp_tensor_n_cols(src), n = rows * cols;
        if ((buf = malloc((size_t)(n > 0 ? n : 1) * sizeof(float))) == NULL)
            return lmp_err_set(err, LMP_ENOMEM, "out of memory converting '%s'", name);
        lmp_tensor_rows_f32(src, 0, rows, buf);
        uint16_t *h = (uint16_t *)(void *)buf; /* in place: element i is read before the
                                                  half it writes (bytes 2i..2i+1) is used */
        for (int64_t i = 0; i < n; i++) {
            float v;
            memcpy(&v, (const char *)buf + 4 * i, 4);
            uint16_t b = lmp_f32_to_f16(v);
            memcpy((char *)h + 2 * i, &b, 2);
        }
        t.dtype = LMP_DTYPE_F16;
        t.data  = buf;
    }
    enum lmp_status st = lmp_artifact_put_tensor(a, &t, err);
    free(buf);
    /* the source's file pages read here would stay resident: every kept linear of every
     * block would add up (memory is bounded by one block, not the model) */
    lmp_map_release_pages(src->data, (size_t)src->nbytes);
    return st;
}

enum lmp_status lmp_artifact_put_model_tensors(struct lmp_artifact *a, const struct lmp_model *m,
                                               const bool *quantized, bool finetune,
                                               struct lmp_err *err) {
    return lmp_artifact_put_model_tensors_q(a, m, quantized, finetune, 16, 16, err);
}

enum lmp_status lmp_artifact_put_model_tensors_q(struct lmp_artifact *a, const struct lmp_model *m,
                                                 const bool *quantized, bool finetune,
                                                 int embed_bits, int head_bits,
                                                 struct lmp_err *err) {
    assert(a && m);
    const struct lmp_config *c = &m->cfg;
    enum lmp_status          st;
    int64_t                  emb[2] = {c->vocab_size, c->dim}, vec[1] = {c->dim};
    if ((st = put_model_tensor(a, "model.embed_tokens.weight", m->tok_emb, 2, emb, embed_bits,
                               err)) ||
        (st = put_model_tensor(a, "model.norm.weight", m->out_norm, 1, vec, 16, err)))
        return st;
    if (!c->tied_embeddings &&
        (st = put_model_tensor(a, "lm_head.weight", m->output, 2, emb, head_bits, err)))
        return st;
    char name[LMP_NAME_MAX];
    for (int32_t b = 0; b < c->n_layers; b++) {
        const struct lmp_block *blk   = &m->blocks[b];
        bool                    tuned = false; /* fine-tuning stores this block's norms, tuned */
        for (int k = 0; finetune && k < LMP_LIN_COUNT; k++)
            tuned = tuned || !quantized || quantized[(int64_t)b * LMP_LIN_COUNT + k];
        if (!tuned) {
            snprintf(name, sizeof(name), "model.layers.%d.input_layernorm.weight", b);
            if ((st = put_model_tensor(a, name, blk->attn_norm, 1, vec, 16, err))) return st;
            snprintf(name, sizeof(name), "model.layers.%d.post_attention_layernorm.weight", b);
            if ((st = put_model_tensor(a, name, blk->ffn_norm, 1, vec, 16, err))) return st;
        }
        /* format 3: the norms beyond the llama block's (Qwen3, Gemma 3), as the source has them */
        int64_t                  hd[1]         = {c->head_dim};
        const char *const        extra_name[4] = {"model.layers.%d.self_attn.q_norm.weight",
                                                  "model.layers.%d.self_attn.k_norm.weight",
                                                  "model.layers.%d.post_attention_norm.weight",
                                                  "model.layers.%d.post_feedforward_layernorm.weight"};
        const struct lmp_tensor *extra[4]      = {blk->q_norm, blk->k_norm, blk->post_attn_norm,
                                                  blk->post_ffn_norm};
        for (int e = 0; e < 4; e++) {
            if (extra[e] == NULL) continue;
            snprintf(name, sizeof(name), extra_name[e], b);
            if ((st = put_model_tensor(a, name, extra[e], 1, e < 2 ? hd : vec, 16, err))) return st;
        }
        for (int k = 0; k < LMP_LIN_COUNT; k++) {
            const struct lmp_linear *l = &blk->lin[k];
            int64_t idx = (int64_t)b * LMP_LIN_COUNT + k, w[2] = {l->n_out, l->n_in};
            if (l->bias) {
                snprintf(name, sizeof(name), "%s.bias", l->name);
                if ((st = put_model_tensor(a, name, l->bias, 1, w, 16, err))) return st;
            }
            if (quantized && !quantized[idx]) {
                snprintf(name, sizeof(name), "%s.weight", l->name);
                if ((st = put_model_tensor(a, name, l->weight, 2, w, 16, err))) return st;
            }
        }
    }
    return LMP_OK;
}

enum lmp_status lmp_artifact_put_tokenizer(struct lmp_artifact *a, enum lmp_art_tok kind,
                                           const uint8_t *bytes, size_t n, struct lmp_err *err) {
    assert(a && (bytes || n == 0));
    enum lmp_status st;
    if ((st = writable(a, err))) return st;
    int64_t i = find_item(a, ITEM_TOKENIZER, "");
    if (i >= 0) {
        enum lmp_art_tok k;
        uint8_t         *have = NULL;
        size_t           hn   = 0;
        if ((st = lmp_artifact_read_tokenizer(a, &k, &have, &hn, err))) return st;
        bool same = k == kind && hn == n && (n == 0 || memcmp(have, bytes, n) == 0);
        free(have);
        return same ? LMP_OK
                    : lmp_err_set(err, LMP_EMISMATCH,
                                  "'%s': a different tokenizer is already "
                                  "stored",
                                  a->path);
    }
    hid_t f = part_begin("tokenizer", ITEM_TOKENIZER, "");
    if (f < 0 || write_tokenizer_obj(f, kind, bytes, n) < 0) {
        if (f >= 0) H5Fclose(f);
        return lmp_err_set(err, LMP_EIO, "'%s': cannot build the tokenizer part (hdf5)", a->path);
    }
    char *p = NULL;
    if ((st = part_commit(a, f, ITEM_TOKENIZER, "", &p, err)) ||
        (st = add_item(a, ITEM_TOKENIZER, "", p, err)))
        return st;
    return LMP_OK;
}

/* ------------------------------------------------------------------------------ */
/* events (artifact/events.h): parts_dir/events.log while the job runs, /events    */
/* in the assembled file                                                             */

struct ev_str_field {
    const char *name;
    size_t      off, size;
};
static const struct ev_str_field ev_str_fields[4] = {
    {"kind", offsetof(struct lmp_event, kind), LMP_EVENTS_KIND_MAX},
    {"worker", offsetof(struct lmp_event, worker), LMP_EVENTS_WORKER_MAX},
    {"layer", offsetof(struct lmp_event, layer), LMP_EVENTS_LAYER_MAX},
    {"message", offsetof(struct lmp_event, message), LMP_EVENTS_MESSAGE_MAX},
};

/* Write l as /events: parallel 1-D datasets (docs/artifact.md). */
static int write_events(hid_t file, const struct lmp_event_list *l, uint64_t file_id) {
    const int64_t n = l->n, dims[1] = {n};
    hid_t         g   = H5Gcreate2(file, "events", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    uint64_t     *t   = malloc((size_t)(n + 1) * sizeof(*t));
    uint32_t     *run = malloc((size_t)(n + 1) * sizeof(*run));
    uint8_t      *lvl = malloc((size_t)(n + 1));
    char         *str = NULL;
    int           rc  = -1;
    if (g < 0 || !t || !run || !lvl) goto out;
    for (int64_t i = 0; i < n; i++)
        t[i] = l->ev[i].time_ms, run[i] = l->ev[i].run, lvl[i] = l->ev[i].level;
    if (dset_put(g, "time_ms", H5T_STD_U64LE, H5T_NATIVE_UINT64, 8, 1, dims, t) < 0 ||
        dset_put(g, "run", H5T_STD_U32LE, H5T_NATIVE_UINT32, 4, 1, dims, run) < 0 ||
        dset_put(g, "level", H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, 1, dims, lvl) < 0)
        goto out;
    for (int f = 0; f < 4; f++) {
        const struct ev_str_field *fd = &ev_str_fields[f];
        free(str);
        if ((str = calloc((size_t)n + 1, fd->size)) == NULL) goto out;
        for (int64_t i = 0; i < n; i++) /* NUL-padded, so the checksum is reproducible */
            snprintf(str + (size_t)i * fd->size, fd->size, "%s", (const char *)&l->ev[i] + fd->off);
        hid_t st = str_type(fd->size);
        int   r  = st < 0 ? -1 : dset_put(g, fd->name, st, st, fd->size, 1, dims, str);
        if (st >= 0) H5Tclose(st);
        if (r < 0) goto out;
    }
    if (attr_put_i64(g, "n_events", n) < 0 || attr_put_u64(g, "events_file_id", file_id) < 0)
        goto out;
    rc = 0;
out:
    free(str);
    free(lvl);
    free(run);
    free(t);
    if (g >= 0) H5Gclose(g);
    return rc;
}

/* Append the events of file's /events (if any) to out; *file_id gets the id of the
 * events file they were assembled from (0 = none). */
static enum lmp_status read_events_obj(hid_t file, const char *fname, struct lmp_event_list *out,
                                       uint64_t *file_id, struct lmp_err *err) {
    *file_id = 0;
    if (H5Lexists(file, "events", H5P_DEFAULT) <= 0) return LMP_OK;
    enum lmp_status st     = LMP_OK;
    hid_t           g      = H5Gopen2(file, "events", H5P_DEFAULT);
    uint64_t       *t      = NULL;
    uint32_t       *run    = NULL;
    uint8_t        *lvl    = NULL;
    char           *str[4] = {0};
    int             rank   = 0;
    int64_t         dims[LMP_MAX_DIMS];
    if (g < 0 || dset_shape(g, "time_ms", &rank, dims, NULL, NULL) < 0 || rank != 1 ||
        dims[0] > (int64_t)1 << 28) {
        st = lmp_err_set(err, LMP_EFORMAT, "'%s': unreadable /events", fname);
        goto out;
    }
    const int64_t n = dims[0];
    if (attr_get_u64(g, "events_file_id", file_id) < 0) *file_id = 0;
    t   = malloc((size_t)(n + 1) * sizeof(*t));
    run = malloc((size_t)(n + 1) * sizeof(*run));
    lvl = malloc((size_t)(n + 1));
    if (!t || !run || !lvl) {
        st = lmp_err_set(err, LMP_ENOMEM, "out of memory reading '%s'", fname);
        goto out;
    }
    if ((st = dset_get(g, "time_ms", H5T_NATIVE_UINT64, 8, 1, dims, t, fname, "/events", err)) ||
        (st = dset_get(g, "run", H5T_NATIVE_UINT32, 4, 1, dims, run, fname, "/events", err)) ||
        (st = dset_get(g, "level", H5T_NATIVE_UINT8, 1, 1, dims, lvl, fname, "/events", err)))
        goto out;
    for (int f = 0; f < 4; f++) {
        const struct ev_str_field *fd    = &ev_str_fields[f];
        size_t                     fsize = 0;
        H5T_class_t                cls;
        if (dset_shape(g, fd->name, &rank, dims, &fsize, &cls) < 0 || cls != H5T_STRING ||
            fsize != fd->size) {
            st = lmp_err_set(err, LMP_EFORMAT,
                             "'%s': /events/%s is missing or not a string of %zu "
                             "bytes",
                             fname, fd->name, fd->size);
            goto out;
        }
        hid_t mt = str_type(fd->size);
        if ((str[f] = calloc((size_t)n + 1, fd->size)) == NULL || mt < 0) {
            if (mt >= 0) H5Tclose(mt);
            st = lmp_err_set(err, LMP_ENOMEM, "out of memory reading '%s'", fname);
            goto out;
        }
        dims[0] = n;
        st      = dset_get(g, fd->name, mt, fd->size, 1, dims, str[f], fname, "/events", err);
        H5Tclose(mt);
        if (st) goto out;
    }
    for (int64_t i = 0; i < n; i++) {
        struct lmp_event e;
        char            *s[4];
        for (int f = 0; f < 4; f++) {
            s[f]                            = str[f] + (size_t)i * ev_str_fields[f].size;
            s[f][ev_str_fields[f].size - 1] = '\0';
        }
        lmp_event_set(&e, t[i], run[i], lvl[i], s[0], s[1], s[2], s[3]);
        if (lmp_event_list_push(out, &e) != LMP_OK) {
            st = lmp_err_set(err, LMP_ENOMEM, "out of memory reading '%s'", fname);
            goto out;
        }
    }
out:
    for (int f = 0; f < 4; f++) free(str[f]);
    free(lvl);
    free(run);
    free(t);
    if (g >= 0) H5Gclose(g);
    return st;
}

/* Every event: the main file's /events, then the events file unless the main file
 * already holds it. *file_id gets the events file's id (0 = none or absorbed). */
static enum lmp_status collect_events(struct lmp_artifact *a, struct lmp_event_list *out,
                                      uint64_t *file_id, struct lmp_err *err) {
    uint64_t        absorbed = 0;
    enum lmp_status st;
    *file_id = 0;
    if (a->main >= 0 && (st = read_events_obj(a->main, a->path, out, &absorbed, err))) return st;
    const char            *path = a->events_file;
    struct lmp_event_list  fl   = {0};
    struct lmp_events_scan scan;
    st = lmp_events_read(path, &fl, &scan, err);
    if (st == LMP_ENOENT) return LMP_OK;
    if (st == LMP_OK && scan.header_ok && scan.file_id != absorbed) {
        *file_id = scan.file_id;
        for (int64_t i = 0; i < fl.n && st == LMP_OK; i++)
            if (lmp_event_list_push(out, &fl.ev[i]) != LMP_OK)
                st = lmp_err_set(err, LMP_ENOMEM, "out of memory reading '%s'", path);
    }
    lmp_event_list_release(&fl);
    return st;
}

/* Writer: open the events file, choose this run's number, record "open" or "resume". */
static enum lmp_status events_start(struct lmp_artifact *a, struct lmp_err *err) {
    struct lmp_event_list old      = {0};
    uint64_t              absorbed = 0;
    uint32_t              max_run = 0, file_max = 0;
    enum lmp_status       st = LMP_OK;
    if (a->main >= 0 && (st = read_events_obj(a->main, a->path, &old, &absorbed, err))) goto out;
    for (int64_t i = 0; i < old.n; i++)
        if (old.ev[i].run > max_run) max_run = old.ev[i].run;
    const char *path = a->events_file;
    st               = lmp_events_open(path, absorbed, &a->events, &file_max, err);
    if (st == LMP_EFORMAT || st == LMP_EUNSUP) { /* a log must not block the job: set it aside */
        char *aside = lmp_strfmt("%s.bad-%lld", path, (long long)time(NULL));
        if (aside == NULL) {
            st = lmp_err_set(err, LMP_ENOMEM, "out of memory setting '%s' aside", path);
            goto out;
        }
        lmp_log_warn("%s: moved to '%s', a new event log is started", err ? err->msg : path, aside);
        const int moved = rename(path, aside);
        free(aside);
        if (moved < 0) goto out;
        st = lmp_events_open(path, absorbed, &a->events, &file_max, err);
    }
    if (st) goto out;
    a->run = (file_max > max_run ? file_max : max_run) + 1;
    char msg[160];
    snprintf(msg, sizeof(msg), "run %u: %s (%lld layers committed)", a->run,
             a->run == 1 ? "artifact created" : "artifact reopened", (long long)a->n_layer_order);
    struct lmp_event e;
    lmp_event_set(&e, 0, 0, LMP_LOG_INFO, a->run == 1 ? LMP_EVENT_OPEN : LMP_EVENT_RESUME, "", "",
                  msg);
    st = lmp_artifact_add_event(a, &e, err);
out:
    lmp_event_list_release(&old);
    return st;
}

enum lmp_status lmp_artifact_add_event(struct lmp_artifact *a, const struct lmp_event *e,
                                       struct lmp_err *err) {
    assert(a && e);
    if (a->events == NULL)
        return lmp_err_set(err, LMP_EINVAL, "'%s': %s", a->path,
                           a->finalized ? "finalized: no more events" : "open read-only");
    struct lmp_event ev = *e;
    ev.run              = a->run;
    if (ev.time_ms == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ev.time_ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
    }
    return lmp_events_append(a->events, &ev, err);
}

void lmp_artifact_note(struct lmp_artifact *a, enum lmp_log_level level, const char *kind,
                       const char *worker, const char *layer, const char *fmt, ...) {
    if (a == NULL || a->events == NULL) return;
    char    msg[LMP_EVENTS_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    struct lmp_event e;
    struct lmp_err   err = {0};
    lmp_event_set(&e, 0, 0, level, kind, worker, layer, msg);
    if (lmp_artifact_add_event(a, &e, &err) != LMP_OK)
        lmp_log_debug("event not kept in '%s': %s", a->path, err.msg);
}

enum lmp_status lmp_artifact_sync_events(struct lmp_artifact *a, struct lmp_err *err) {
    assert(a);
    return a->events ? lmp_events_sync(a->events, err) : LMP_OK;
}

enum lmp_status lmp_artifact_read_events(struct lmp_artifact *a, struct lmp_event_list *out,
                                         struct lmp_err *err) {
    assert(a && out);
    uint64_t id;
    return collect_events(a, out, &id, err);
}

/* ------------------------------------------------------------------------------ */
/* finalize                                                                         */

static enum lmp_status copy_item(struct lmp_artifact *a, int64_t i, hid_t dst, const char *tmp,
                                 struct lmp_err *err) {
    const struct item *it = &a->items[i];
    char               obj[LMP_NAME_MAX + 16];
    if (it->kind == ITEM_LAYER)
        snprintf(obj, sizeof(obj), "layers/%s", it->name);
    else if (it->kind == ITEM_TENSOR)
        snprintf(obj, sizeof(obj), "tensors/%s", it->name);
    else
        snprintf(obj, sizeof(obj), "tokenizer");
    hid_t           f;
    const char     *fn;
    enum lmp_status st = item_file(a, i, &f, &fn, err);
    if (st) return st;
    if (H5Lexists(f,
                  it->kind == ITEM_TOKENIZER ? "tokenizer"
                                             : (it->kind == ITEM_LAYER ? "layers" : "tensors"),
                  H5P_DEFAULT) <= 0 ||
        H5Lexists(f, obj, H5P_DEFAULT) <= 0) {
        st = lmp_err_set(err, LMP_EFORMAT, "'%s': missing object /%s", fn, obj);
    } else if (H5Ocopy(f, obj, dst, obj, H5P_DEFAULT, H5P_DEFAULT) < 0) {
        int e = errno;
        st    = lmp_err_set(err, is_enospc(e) ? LMP_ENOSPC : LMP_EIO,
                            "cannot copy /%s from '%s' "
                               "into '%s'%s%s",
                            obj, fn, tmp, is_enospc(e) ? ": " : "", is_enospc(e) ? strerror(e) : "");
    }
    item_done(a, f);
    return st;
}

/* Check that the assembled file fits before writing it. Besides the clear message,
 * this matters because HDF5 1.10.8 can crash (not fail) when a write error hits the
 * middle of H5Ocopy, so a full disk must be caught before HDF5 writes. The estimate
 * is the size of the main file and the parts plus a margin for HDF5's own metadata. */
static enum lmp_status check_space(const struct lmp_artifact *a, const char *tmp, const char *dir,
                                   struct lmp_err *err) {
    uint64_t    need = 64 * 1024;
    struct stat sb;
    if (stat(a->path, &sb) == 0) need += (uint64_t)sb.st_size;
    for (int64_t i = 0; i < a->n_items; i++) {
        const char *p = a->items[i].part, *prev = i > 0 ? a->items[i - 1].part : NULL;
        if (p == NULL || (prev && strcmp(prev, p) == 0)) continue; /* a block part counts once */
        if (stat(p, &sb) == 0) need += (uint64_t)sb.st_size;
    }
    if (a->events) /* fixed-length strings in /events: about 1 KiB an event */
        need += (uint64_t)lmp_events_count(a->events) * sizeof(struct lmp_event);
    need += need / 16;
    uint64_t       have = UINT64_MAX;
    struct statvfs vs;
    if (statvfs(dir, &vs) == 0) have = (uint64_t)vs.f_bavail * (uint64_t)vs.f_frsize;
    struct rlimit rl;
    if (getrlimit(RLIMIT_FSIZE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < have)
        have = (uint64_t)rl.rlim_cur;
    if (need > have)
        return lmp_err_set(err, LMP_ENOSPC,
                           "cannot write '%s': no space left on device (needs "
                           "about %" PRIu64 " bytes, %" PRIu64 " available); committed layers are "
                           "intact",
                           tmp, need, have);
    return LMP_OK;
}

enum lmp_status lmp_artifact_finalize(struct lmp_artifact *a, struct lmp_err *err) {
    assert(a);
    enum lmp_status st;
    if ((st = writable(a, err))) return st;
    const char *tmp = a->tmp_path, *dir = a->dir;
    unlink(tmp);
    if ((st = check_space(a, tmp, dir, err))) return st;
    struct lmp_event_list evs   = {0};
    uint64_t              ev_id = 0;
    {
        char             msg[128];
        struct lmp_event e;
        snprintf(msg, sizeof(msg), "assembling '%s' (%lld layers)", a->path,
                 (long long)a->n_layer_order);
        lmp_event_set(&e, 0, 0, LMP_LOG_INFO, LMP_EVENT_FINALIZE, "", "", msg);
        if ((st = lmp_artifact_add_event(a, &e, err)) || (st = lmp_artifact_sync_events(a, err)) ||
            (st = collect_events(a, &evs, &ev_id, err))) {
            lmp_event_list_release(&evs);
            return st;
        }
    }
    errno     = 0;
    hid_t dst = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), g = H5I_INVALID_HID;
    if (dst < 0) {
        int e = errno;
        return lmp_err_set(err, is_enospc(e) ? LMP_ENOSPC : LMP_EIO, "cannot create '%s'%s%s", tmp,
                           e ? ": " : "", e ? strerror(e) : "");
    }
    const bool complete = lmp_artifact_is_complete(a);
    if (attr_put_str(dst, "format", FORMAT_MAIN) < 0 ||
        attr_put_i64(dst, "format_version", main_version(&a->job)) < 0 ||
        attr_put_i64(dst, "format_minor", LMP_ARTIFACT_FORMAT_MINOR) < 0 ||
        write_job(dst, &a->job) < 0 || attr_put_i64(dst, "complete", complete) < 0 ||
        attr_put_i64(dst, "n_layers", a->n_layer_order) < 0 || write_events(dst, &evs, ev_id) < 0) {
        int e = errno;
        st    = lmp_err_set(err, is_enospc(e) ? LMP_ENOSPC : LMP_EIO, "cannot write '%s'", tmp);
        goto fail;
    }
    for (int gi = 0; gi < 2; gi++) {
        if ((g = H5Gcreate2(dst, gi ? "tensors" : "layers", H5P_DEFAULT, H5P_DEFAULT,
                            H5P_DEFAULT)) < 0) {
            st = lmp_err_set(err, LMP_EIO, "cannot write '%s'", tmp);
            goto fail;
        }
        H5Gclose(g);
        g = H5I_INVALID_HID;
    }
    for (int64_t k = 0; k < a->n_layer_order; k++)
        if ((st = copy_item(a, a->layer_order[k], dst, tmp, err))) goto fail;
    for (int64_t k = 0; k < a->n_tensor_order; k++)
        if ((st = copy_item(a, a->tensor_order[k], dst, tmp, err))) goto fail;
    int64_t ti = find_item(a, ITEM_TOKENIZER, "");
    if (ti >= 0 && (st = copy_item(a, ti, dst, tmp, err))) goto fail;
    errno     = 0;
    herr_t cr = H5Fclose(dst);
    dst       = H5I_INVALID_HID;
    if (cr < 0 || lmp_fsync_path(tmp, false) < 0) {
        int e = errno;
        st    = lmp_err_set(err, is_enospc(e) ? LMP_ENOSPC : LMP_EIO, "cannot write '%s'%s%s", tmp,
                         e ? ": " : "", e ? strerror(e) : "");
        goto fail;
    }
    /* the switch: before the rename readers see old main + parts, after it the new main
     * (+ parts that duplicate it, which readers skip and the next writer removes) */
    if (a->main >= 0) {
        H5Fclose(a->main);
        a->main = H5I_INVALID_HID;
    }
    if (rename(tmp, a->path) < 0 || lmp_fsync_path(dir, true) < 0) {
        int e = errno;
        st = lmp_err_set(err, LMP_EIO, "cannot rename '%s' to '%s': %s", tmp, a->path, strerror(e));
        goto fail;
    }
    for (int64_t i = 0; i < a->n_items; i++) {
        if (a->items[i].part) unlink(a->items[i].part);
        free(a->items[i].part);
        a->items[i].part = NULL;
    }
    lmp_event_list_release(&evs);
    if (a->events) { /* its id is now /events' events_file_id: readers skip it if it stays */
        unlink(lmp_events_path(a->events));
        lmp_events_close(&a->events);
    }
    unlink(a->lock_path);
    if (rmdir(a->parts_dir) < 0)
        lmp_log_warn("cannot remove '%s': %s", a->parts_dir, strerror(errno));
    lmp_fsync_path(dir, true);
    a->finalized = true;
    a->main      = H5Fopen(a->path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (a->main < 0)
        return lmp_err_set(err, LMP_EIO, "cannot reopen '%s' after assembling it", a->path);
    return LMP_OK;
fail:
    lmp_event_list_release(&evs);
    if (g >= 0) H5Gclose(g);
    if (dst >= 0) H5Fclose(dst);
    unlink(tmp);
    if (a->main < 0 && lmp_path_is_file(a->path)) /* closed for a rename that failed */
        a->main = H5Fopen(a->path, H5F_ACC_RDONLY, H5P_DEFAULT);
    return st;
}

/* ------------------------------------------------------------------------------ */
/* queries and reads                                                                */

const struct lmp_art_job *lmp_artifact_job(const struct lmp_artifact *a) {
    return &a->job;
}
int64_t lmp_artifact_n_layers(const struct lmp_artifact *a) {
    return a->n_layer_order;
}
const char *lmp_artifact_layer_name(const struct lmp_artifact *a, int64_t i) {
    assert(i >= 0 && i < a->n_layer_order);
    return a->items[a->layer_order[i]].name;
}
bool lmp_artifact_has_layer(const struct lmp_artifact *a, const char *name) {
    return find_item(a, ITEM_LAYER, name) >= 0;
}
int64_t lmp_artifact_n_tensors(const struct lmp_artifact *a) {
    return a->n_tensor_order;
}
const char *lmp_artifact_tensor_name(const struct lmp_artifact *a, int64_t i) {
    assert(i >= 0 && i < a->n_tensor_order);
    return a->items[a->tensor_order[i]].name;
}
bool lmp_artifact_has_tokenizer(const struct lmp_artifact *a) {
    return find_item(a, ITEM_TOKENIZER, "") >= 0;
}
bool lmp_artifact_is_complete(const struct lmp_artifact *a) {
    char w[LMP_NAME_MAX];
    for (int64_t j = 0; j < a->job.n_linears; j++) {
        if (find_item(a, ITEM_LAYER, a->job.linears[j].name) >= 0) continue;
        snprintf(w, sizeof(w), "%s.weight", a->job.linears[j].name);
        if (find_item(a, ITEM_TENSOR, w) < 0) return false;
    }
    return true;
}

enum lmp_status lmp_artifact_read_layer(struct lmp_artifact *a, const char *name,
                                        struct lmp_art_layer *out, struct lmp_err *err) {
    assert(a && name && out);
    memset(out, 0, sizeof(*out));
    int64_t i = find_item(a, ITEM_LAYER, name);
    if (i < 0) return lmp_err_set(err, LMP_ENOENT, "'%s': no layer '%s'", a->path, name);
    hid_t           f;
    const char     *fn;
    enum lmp_status st = item_file(a, i, &f, &fn, err);
    if (st) return st;
    st = read_layer_obj(f, fn, name, out, err);
    item_done(a, f);
    if (st == LMP_OK) {
        const struct lmp_art_linear *lin = job_linear(&a->job, name);
        if (lin == NULL || lin->n_out != out->n_out || lin->n_in != out->n_in) {
            lmp_art_layer_release(out);
            st = lmp_err_set(err, LMP_EFORMAT,
                             "'%s': layer '%s' does not match the model "
                             "description",
                             fn, name);
        }
    }
    return st;
}

enum lmp_status lmp_artifact_read_tensor(struct lmp_artifact *a, const char *name,
                                         struct lmp_art_tensor *out, struct lmp_err *err) {
    assert(a && name && out);
    memset(out, 0, sizeof(*out));
    int64_t i = find_item(a, ITEM_TENSOR, name);
    if (i < 0) return lmp_err_set(err, LMP_ENOENT, "'%s': no tensor '%s'", a->path, name);
    hid_t           f;
    const char     *fn;
    enum lmp_status st = item_file(a, i, &f, &fn, err);
    if (st) return st;
    st = read_tensor_obj(f, fn, name, out, true, NULL, err);
    item_done(a, f);
    return st;
}

enum lmp_status lmp_artifact_read_tokenizer(struct lmp_artifact *a, enum lmp_art_tok *kind,
                                            uint8_t **bytes, size_t *n, struct lmp_err *err) {
    assert(a && kind && bytes && n);
    *bytes    = NULL;
    *n        = 0;
    int64_t i = find_item(a, ITEM_TOKENIZER, "");
    if (i < 0) return lmp_err_set(err, LMP_ENOENT, "'%s': no tokenizer stored", a->path);
    hid_t           f;
    const char     *fn;
    enum lmp_status st = item_file(a, i, &f, &fn, err);
    if (st) return st;
    st = read_tokenizer_obj(f, fn, kind, bytes, n, err);
    item_done(a, f);
    return st;
}

/* Bytes the data of dataset loc/name takes in its file (0 if absent). */
static int64_t dset_bytes(hid_t loc, const char *name) {
    if (H5Lexists(loc, name, H5P_DEFAULT) <= 0) return 0;
    hid_t   d = H5Dopen2(loc, name, H5P_DEFAULT);
    int64_t n = d >= 0 ? (int64_t)H5Dget_storage_size(d) : 0;
    if (d >= 0) H5Dclose(d);
    return n;
}

enum lmp_status lmp_artifact_size(struct lmp_artifact *a, struct lmp_art_size *out,
                                  struct lmp_err *err) {
    assert(a && out);
    memset(out, 0, sizeof(*out));
    out->embed_dtype = out->head_dtype = -1;
    struct stat sb;
    if (a->main >= 0 && stat(a->path, &sb) == 0) out->file_bytes += (int64_t)sb.st_size;
    for (int64_t i = 0; i < a->n_items; i++) { /* each part once (a block part: many items) */
        const char *p   = a->items[i].part;
        bool        dup = p == NULL;
        for (int64_t k = 0; !dup && k < i; k++)
            dup = a->items[k].part && strcmp(a->items[k].part, p) == 0;
        if (!dup && stat(p, &sb) == 0) out->file_bytes += (int64_t)sb.st_size;
    }
    for (int64_t j = 0; j < a->job.n_linears; j++)
        out->n_linear_params += a->job.linears[j].n_out * a->job.linears[j].n_in;
    out->n_params                     = out->n_linear_params;
    static const char *const dsets[4] = {"codes", "codebooks", "scales", "zeros"};
    char                     path[LMP_NAME_MAX + 24];
    for (int64_t i = 0; i < a->n_items; i++) {
        const struct item *it = &a->items[i];
        if (it->kind != ITEM_LAYER && it->kind != ITEM_TENSOR) continue;
        hid_t           f;
        const char     *fn;
        enum lmp_status st = item_file(a, i, &f, &fn, err);
        if (st) return st;
        if (it->kind == ITEM_LAYER) {
            for (int k = 0; k < 4; k++) {
                snprintf(path, sizeof(path), "layers/%s/%s", it->name, dsets[k]);
                out->linear_bytes += dset_bytes(f, path); /* layers/<name> exists: indexed */
            }
        } else {
            snprintf(path, sizeof(path), "tensors/%s", it->name);
            int     rank = 0, q           = -1;
            int64_t dims[LMP_MAX_DIMS], n = 1;
            if (H5Lexists(f, "tensors", H5P_DEFAULT) <= 0 ||
                tensor_shape(f, path, &rank, dims, &q) < 0) { /* shape in weights */
                item_done(a, f);
                return lmp_err_set(err, LMP_EFORMAT, "'%s': missing dataset /%s", fn, path);
            }
            for (int d = 0; d < rank; d++) n *= dims[d];
            const bool emb  = strcmp(it->name, "model.embed_tokens.weight") == 0,
                       head = strcmp(it->name, "lm_head.weight") == 0;
            if (emb || head) { /* its storage type, for the report */
                const int k = q >= 0 ? q : dset_float_dtype(f, path);
                *(emb ? &out->embed_dtype : &out->head_dtype) = k;
            }
            const int64_t bytes = dset_bytes(f, path);
            out->tensor_bytes += bytes;
            /* a kept linear's weight counts with the linears (its parameters are there) */
            bool   lin = false;
            size_t nl  = strlen(it->name);
            if (nl > 7 && strcmp(it->name + nl - 7, ".weight") == 0) {
                char ln[LMP_NAME_MAX];
                snprintf(ln, sizeof(ln), "%.*s", (int)(nl - 7), it->name);
                lin = job_linear(&a->job, ln) != NULL;
            }
            if (lin)
                out->linear_bytes += bytes;
            else
                out->n_params += n;
        }
        item_done(a, f);
    }
    return LMP_OK;
}

int64_t lmp_artifact_n_open_ids(void) {
    return (int64_t)H5Fget_obj_count((hid_t)H5F_OBJ_ALL, H5F_OBJ_ALL);
}
