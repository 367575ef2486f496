/*  checkpoint - see checkpoint.h */
#include "artifact/checkpoint.h"

#include "base/file.h" /* defines: lmp_fsync_path */
#include "base/hash.h" /* defines: lmp_xxh64 */

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CKPT_MAGIC 0x6c6d70636b707431ull /* "lmpckpt1": root attribute "format" */

static bool name_ok(const char *s) {
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 120 || s[0] == '.') return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

static size_t elem_size(enum lmp_ckpt_type t) {
    return t == LMP_CKPT_F32 ? 4 : t == LMP_CKPT_U16 ? 2 : 8;
}

static hid_t mem_type(enum lmp_ckpt_type t) {
    return t == LMP_CKPT_F32   ? H5T_NATIVE_FLOAT
           : t == LMP_CKPT_U16 ? H5T_NATIVE_UINT16
                               : H5T_NATIVE_INT64;
}

static hid_t file_type(enum lmp_ckpt_type t) {
    return t == LMP_CKPT_F32 ? H5T_IEEE_F32LE : t == LMP_CKPT_U16 ? H5T_STD_U16LE : H5T_STD_I64LE;
}

static herr_t put_u64_attr(hid_t obj, const char *name, uint64_t v) {
    hid_t  sp = H5Screate(H5S_SCALAR);
    hid_t  at = H5Acreate2(obj, name, H5T_STD_U64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = at < 0 ? -1 : H5Awrite(at, H5T_NATIVE_UINT64, &v);
    if (at >= 0) H5Aclose(at);
    H5Sclose(sp);
    return rc;
}

static bool get_u64_attr(hid_t obj, const char *name, uint64_t *v) {
    if (H5Aexists(obj, name) <= 0) return false;
    hid_t at = H5Aopen(obj, name, H5P_DEFAULT);
    if (at < 0) return false;
    hid_t sp = H5Aget_space(at);
    bool  ok =
        sp >= 0 && H5Sget_simple_extent_npoints(sp) == 1 && H5Aread(at, H5T_NATIVE_UINT64, v) >= 0;
    if (sp >= 0) H5Sclose(sp);
    H5Aclose(at);
    return ok;
}

/* Directory of path (malloc'ed). */
static char *dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    if (slash == NULL) return strdup(".");
    if (slash == path) return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

enum lmp_status lmp_ckpt_write(const char *path, uint64_t key, const struct lmp_ckpt_array *arrays,
                               int n, struct lmp_err *err) {
    for (int i = 0; i < n; i++)
        if (!name_ok(arrays[i].name) || arrays[i].n < 0 || (arrays[i].n > 0 && !arrays[i].data))
            return lmp_err_set(err, LMP_EINVAL, "checkpoint '%s': bad array %d", path, i);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    size_t pl  = strlen(path);
    char  *tmp = malloc(pl + 5);
    char  *dir = dir_of(path);
    if (tmp == NULL || dir == NULL) {
        free(tmp);
        free(dir);
        return lmp_err_set(err, LMP_ENOMEM, "out of memory");
    }
    memcpy(tmp, path, pl);
    memcpy(tmp + pl, ".tmp", 5);
    enum lmp_status st = LMP_OK;
    errno              = 0;
    hid_t f            = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) {
        st = lmp_err_set(err, LMP_EIO, "cannot create checkpoint '%s': %s", tmp,
                         errno ? strerror(errno) : "HDF5 error");
        goto out;
    }
    bool ok = put_u64_attr(f, "format", CKPT_MAGIC) >= 0 && put_u64_attr(f, "key", key) >= 0;
    for (int i = 0; ok && i < n; i++) {
        const struct lmp_ckpt_array *a  = &arrays[i];
        hsize_t                      dn = (hsize_t)a->n;
        hid_t                        sp = H5Screate_simple(1, &dn, NULL);
        hid_t                        ds =
            H5Dcreate2(f, a->name, file_type(a->type), sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        ok = ds >= 0 && (a->n == 0 || H5Dwrite(ds, mem_type(a->type), H5S_ALL, H5S_ALL, H5P_DEFAULT,
                                               a->data) >= 0);
        if (ok)
            ok = put_u64_attr(ds, "xxh64",
                              lmp_xxh64(a->data, (size_t)a->n * elem_size(a->type), 0)) >= 0;
        if (ds >= 0) H5Dclose(ds);
        H5Sclose(sp);
    }
    int e = errno;
    if (H5Fclose(f) < 0) ok = false;
    if (!ok) {
        st =
            lmp_err_set(err, e == ENOSPC ? LMP_ENOSPC : LMP_EIO, "cannot write checkpoint '%s': %s",
                        tmp, e ? strerror(e) : "HDF5 write failed");
        unlink(tmp);
        goto out;
    }
    if (lmp_fsync_path(tmp, false) != 0 || rename(tmp, path) != 0 ||
        lmp_fsync_path(dir, true) != 0) {
        e  = errno;
        st = lmp_err_set(err, e == ENOSPC ? LMP_ENOSPC : LMP_EIO,
                         "cannot commit checkpoint '%s': %s", path, strerror(e));
        unlink(tmp);
    }
out:
    free(tmp);
    free(dir);
    return st;
}

enum lmp_status lmp_ckpt_read(const char *path, uint64_t key, const struct lmp_ckpt_array *arrays,
                              int n, struct lmp_err *err) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    if (access(path, F_OK) != 0)
        return errno == ENOENT ? lmp_err_set(err, LMP_ENOENT, "no checkpoint '%s'", path)
                               : lmp_err_set(err, LMP_EIO, "cannot read checkpoint '%s': %s", path,
                                             strerror(errno));
    if (H5Fis_hdf5(path) <= 0)
        return lmp_err_set(err, LMP_EFORMAT, "checkpoint '%s' is not an HDF5 file", path);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return lmp_err_set(err, LMP_EFORMAT, "cannot open checkpoint '%s'", path);
    enum lmp_status st = LMP_OK;
    uint64_t        v  = 0;
    if (!get_u64_attr(f, "format", &v) || v != CKPT_MAGIC) {
        st = lmp_err_set(err, LMP_EFORMAT, "'%s' is not an lmpress checkpoint", path);
        goto out;
    }
    if (!get_u64_attr(f, "key", &v)) {
        st = lmp_err_set(err, LMP_EFORMAT, "checkpoint '%s' has no key", path);
        goto out;
    }
    if (v != key) {
        st = lmp_err_set(err, LMP_EMISMATCH,
                         "checkpoint '%s' belongs to other settings (key %016llx, these %016llx)",
                         path, (unsigned long long)v, (unsigned long long)key);
        goto out;
    }
    H5G_info_t gi;
    if (H5Gget_info(f, &gi) < 0 || gi.nlinks != (hsize_t)n) {
        st = lmp_err_set(err, LMP_EFORMAT, "checkpoint '%s' holds %llu arrays, expected %d", path,
                         (unsigned long long)gi.nlinks, n);
        goto out;
    }
    for (int i = 0; i < n && st == LMP_OK; i++) {
        const struct lmp_ckpt_array *a = &arrays[i];
        if (!name_ok(a->name) || H5Lexists(f, a->name, H5P_DEFAULT) <= 0) {
            st = lmp_err_set(err, LMP_EFORMAT, "checkpoint '%s' lacks array '%s'", path,
                             name_ok(a->name) ? a->name : "?");
            break;
        }
        hid_t ds = H5Dopen2(f, a->name, H5P_DEFAULT);
        hid_t sp = ds >= 0 ? H5Dget_space(ds) : -1;
        hid_t ty = ds >= 0 ? H5Dget_type(ds) : -1;
        bool  ok = ds >= 0 && sp >= 0 && ty >= 0 && H5Sget_simple_extent_ndims(sp) == 1 &&
                  H5Sget_simple_extent_npoints(sp) == a->n && H5Tequal(ty, file_type(a->type)) > 0;
        if (!ok)
            st = lmp_err_set(err, LMP_EFORMAT,
                             "checkpoint '%s': array '%s' has another type or length (want %lld)",
                             path, a->name, (long long)a->n);
        else if (a->n > 0 &&
                 H5Dread(ds, mem_type(a->type), H5S_ALL, H5S_ALL, H5P_DEFAULT, a->data) < 0)
            st = lmp_err_set(err, LMP_EFORMAT, "checkpoint '%s': cannot read array '%s'", path,
                             a->name);
        else if (!get_u64_attr(ds, "xxh64", &v) ||
                 v != lmp_xxh64(a->data, (size_t)a->n * elem_size(a->type), 0))
            st = lmp_err_set(err, LMP_EFORMAT, "checkpoint '%s': array '%s' fails its checksum",
                             path, a->name);
        if (ty >= 0) H5Tclose(ty);
        if (sp >= 0) H5Sclose(sp);
        if (ds >= 0) H5Dclose(ds);
    }
out:
    H5Fclose(f);
    return st;
}
