/*  blobfile - see blobfile.h */
#define _GNU_SOURCE
#include "proto/blobfile.h"
#include "base/hash.h" /* defines: lmp_xxh64 */
#include "base/log.h"  /* defines: lmp_log_warn */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

uint64_t lmp_blob_inline_max(void) {
    const char *s = getenv("LMP_INLINE_MAX");
    if (s == NULL || s[0] == '\0') return LMP_BLOB_INLINE_MAX;
    char *end            = NULL;
    errno                = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end != '\0' || v == 0 || s[0] == '-') {
        static _Atomic int warned;
        if (warned++ == 0)
            lmp_log_warn("LMP_INLINE_MAX '%.40s' is not a positive byte count; using %" PRIu64, s,
                         LMP_BLOB_INLINE_MAX);
        return LMP_BLOB_INLINE_MAX;
    }
    return (uint64_t)v;
}

static enum lmp_status sys_err(struct lmp_err *err, const char *what, const char *path) {
    const int e = errno;
    return lmp_err_set(err, e == ENOSPC || e == EDQUOT ? LMP_ENOSPC : LMP_EIO, "cannot %s '%s': %s",
                       what, path, strerror(e));
}

enum lmp_status lmp_blobfile_write(const char *path, const void *const *parts, const uint64_t *lens,
                                   size_t n, uint64_t *xxh, struct lmp_err *err) {
    const size_t plen = strlen(path);
    char        *tmp  = malloc(plen + 5);
    if (tmp == NULL) return lmp_err_set(err, LMP_ENOMEM, "out of memory");
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    enum lmp_status st = LMP_OK;
    const int       fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        st = sys_err(err, "create", tmp);
        free(tmp);
        return st;
    }
    for (size_t i = 0; i < n && st == LMP_OK; i++) {
        const uint8_t *p    = parts[i];
        uint64_t       left = lens[i];
        xxh[i]              = lmp_xxh64(p, (size_t)lens[i], 0);
        while (left > 0) {
            const size_t  chunk = left > ((size_t)1 << 30) ? (size_t)1 << 30 : (size_t)left;
            const ssize_t w     = write(fd, p, chunk);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) {
                if (w == 0) errno = EIO;
                st = sys_err(err, "write", tmp);
                break;
            }
            p += w, left -= (uint64_t)w;
        }
    }
    if (close(fd) != 0 && st == LMP_OK) st = sys_err(err, "close", tmp);
    if (st == LMP_OK && rename(tmp, path) != 0) st = sys_err(err, "rename into", path);
    if (st != LMP_OK) unlink(tmp);
    free(tmp);
    return st;
}

enum lmp_status lmp_blobfile_read(const char *path, uint64_t offset, uint64_t length, uint64_t xxh,
                                  void *dst, struct lmp_err *err) {
    uint64_t end;
    if (xxh == 0)
        return lmp_err_set(err, LMP_EFORMAT, "blob '%s': the reference has no checksum", path);
    if (__builtin_add_overflow(offset, length, &end) || end > (uint64_t)INT64_MAX)
        return lmp_err_set(err, LMP_EFORMAT, "blob '%s': byte range overflows", path);
    const int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        const int e = errno;
        return lmp_err_set(err, e == ENOENT ? LMP_ENOENT : LMP_EIO, "cannot open blob '%s': %s",
                           path, strerror(e));
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        enum lmp_status st = sys_err(err, "stat", path);
        close(fd);
        return st;
    }
    if ((uint64_t)sb.st_size < end) {
        close(fd);
        return lmp_err_set(err, LMP_EFORMAT,
                           "blob '%s' is %lld bytes, the reference needs %" PRIu64 " (truncated?)",
                           path, (long long)sb.st_size, end);
    }
    uint8_t *p    = dst;
    uint64_t left = length, at = offset;
    while (left > 0) {
        const size_t  chunk = left > ((size_t)1 << 30) ? (size_t)1 << 30 : (size_t)left;
        const ssize_t r     = pread(fd, p, chunk, (off_t)at);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            enum lmp_status st =
                r == 0 ? lmp_err_set(err, LMP_EFORMAT, "blob '%s' ended early (truncated?)", path)
                       : sys_err(err, "read", path);
            close(fd);
            return st;
        }
        p += r, left -= (uint64_t)r, at += (uint64_t)r;
    }
    close(fd);
    const uint64_t got = lmp_xxh64(dst, (size_t)length, 0);
    if (got != xxh)
        return lmp_err_set(err, LMP_EFORMAT,
                           "blob '%s': checksum %016" PRIx64 " of bytes [%" PRIu64 ", %" PRIu64
                           ") differs from the reference's %016" PRIx64,
                           path, got, offset, end, xxh);
    return LMP_OK;
}

char *lmp_blobfile_cal_path(const char *dir, uint64_t job, uint64_t task, uint32_t attempt) {
    char *p = NULL;
    if (asprintf(&p, "%s/cal-j%" PRIu64 "-t%" PRIu64 "-a%" PRIu32 ".f64", dir, job, task, attempt) <
        0)
        return NULL;
    return p;
}
