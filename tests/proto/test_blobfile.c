/*  test_blobfile - payloads by reference (proto/blobfile.h): a file of parts written and
 *  read back by offset with their checksums; every way a spool file can be wrong (a changed
 *  byte, a truncation, a missing file, no checksum, a range that overflows) refused with the
 *  file's name; a write into a missing directory or onto a full disk (/dev/full) fails with
 *  nothing left behind; LMP_INLINE_MAX parsed strictly.
 */
#define _GNU_SOURCE
#include "proto/blobfile.h"
#include "base/hash.h"   /* defines: lmp_xxh64 */
#include "tests/check.h" /* defines: CHECK, RUN, check_report */

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char g_dir[64];

static char *path_in(const char *name) {
    char *p = NULL;
    if (asprintf(&p, "%s/%s", g_dir, name) < 0) return NULL;
    return p;
}

static bool exists(const char *p) {
    struct stat sb;
    return lstat(p, &sb) == 0;
}

static void test_round_trip(void) {
    double a[100];
    float  b[37];
    for (int i = 0; i < 100; i++) a[i] = i * 0.5 - 7;
    for (int i = 0; i < 37; i++) b[i] = (float)i * 3.25f;
    const void    *parts[2] = {a, b};
    const uint64_t lens[2]  = {sizeof(a), sizeof(b)};
    uint64_t       xxh[2]   = {0, 0};
    struct lmp_err err      = {0};
    char          *p        = path_in("rt.bin");
    CHECK(lmp_blobfile_write(p, parts, lens, 2, xxh, &err) == LMP_OK);
    CHECK(xxh[0] == lmp_xxh64(a, sizeof(a), 0) && xxh[1] == lmp_xxh64(b, sizeof(b), 0));
    char *tmp = NULL;
    CHECK(asprintf(&tmp, "%s.tmp", p) > 0 && !exists(tmp));
    double a2[100];
    float  b2[37];
    CHECK(lmp_blobfile_read(p, 0, sizeof(a), xxh[0], a2, &err) == LMP_OK);
    CHECK(lmp_blobfile_read(p, sizeof(a), sizeof(b), xxh[1], b2, &err) == LMP_OK);
    CHECK(memcmp(a, a2, sizeof(a)) == 0 && memcmp(b, b2, sizeof(b)) == 0);
    /* the wrong part's checksum for a range */
    struct lmp_err e2 = {0};
    CHECK(lmp_blobfile_read(p, sizeof(a), sizeof(b), xxh[0], b2, &e2) == LMP_EFORMAT);
    CHECK(strstr(e2.msg, "checksum") && strstr(e2.msg, p));
    free(tmp);
    free(p);
}

static void test_bad_files(void) {
    uint8_t        buf[4096];
    const void    *parts[1] = {buf};
    const uint64_t lens[1]  = {sizeof(buf)};
    uint64_t       xxh      = 0;
    struct lmp_err err      = {0};
    for (size_t i = 0; i < sizeof(buf); i++) buf[i] = (uint8_t)(i * 131 + 7);
    char *p = path_in("bad.bin");
    CHECK(lmp_blobfile_write(p, parts, lens, 1, &xxh, &err) == LMP_OK);
    uint8_t out[4096];
    /* a changed byte */
    FILE *f = fopen(p, "r+b");
    CHECK(f && fseek(f, 1000, SEEK_SET) == 0 && fputc(buf[1000] ^ 1, f) != EOF);
    if (f) fclose(f);
    struct lmp_err e1 = {0};
    CHECK(lmp_blobfile_read(p, 0, sizeof(buf), xxh, out, &e1) == LMP_EFORMAT);
    CHECK(strstr(e1.msg, p) && strstr(e1.msg, "differs from the reference"));
    /* truncated */
    CHECK(truncate(p, 100) == 0);
    struct lmp_err e2 = {0};
    CHECK(lmp_blobfile_read(p, 0, sizeof(buf), xxh, out, &e2) == LMP_EFORMAT);
    CHECK(strstr(e2.msg, p) && strstr(e2.msg, "truncated"));
    /* no checksum; a range that overflows */
    struct lmp_err e3 = {0}, e4 = {0};
    CHECK(lmp_blobfile_read(p, 0, 10, 0, out, &e3) == LMP_EFORMAT && strstr(e3.msg, "checksum"));
    CHECK(lmp_blobfile_read(p, UINT64_MAX - 5, 10, 1, out, &e4) == LMP_EFORMAT &&
          strstr(e4.msg, "overflows"));
    /* missing */
    CHECK(unlink(p) == 0);
    struct lmp_err e5 = {0};
    CHECK(lmp_blobfile_read(p, 0, 10, xxh, out, &e5) == LMP_ENOENT && strstr(e5.msg, p));
    free(p);
}

static void test_write_failures(void) {
    uint8_t        buf[1 << 16];
    const void    *parts[1] = {buf};
    const uint64_t lens[1]  = {sizeof(buf)};
    uint64_t       xxh      = 0;
    memset(buf, 3, sizeof(buf));
    /* a directory that is not there (a node that does not mount the spool) */
    char          *p  = path_in("no-such-dir/x.bin");
    struct lmp_err e1 = {0};
    CHECK(lmp_blobfile_write(p, parts, lens, 1, &xxh, &e1) == LMP_EIO);
    CHECK(strstr(e1.msg, "cannot create") && strstr(e1.msg, "no-such-dir/x.bin.tmp"));
    free(p);
    /* a full disk: the temporary file is /dev/full (through a link), so every write fails
     * with ENOSPC; the link is removed and no file appears */
    if (access("/dev/full", W_OK) != 0) {
        fprintf(stderr, "  skip the full-disk case: no writable /dev/full\n");
        return;
    }
    char *q = path_in("full.bin"), *qt = path_in("full.bin.tmp");
    CHECK(symlink("/dev/full", qt) == 0);
    struct lmp_err e2 = {0};
    CHECK(lmp_blobfile_write(q, parts, lens, 1, &xxh, &e2) == LMP_ENOSPC);
    CHECK(strstr(e2.msg, "full.bin.tmp") && strstr(e2.msg, "No space left"));
    CHECK(!exists(qt) && !exists(q));
    free(q), free(qt);
}

static void test_inline_max_and_names(void) {
    unsetenv("LMP_INLINE_MAX");
    CHECK(lmp_blob_inline_max() == LMP_BLOB_INLINE_MAX);
    setenv("LMP_INLINE_MAX", "123", 1);
    CHECK(lmp_blob_inline_max() == 123);
    const char *bad[] = {"0", "-5", "12x", "", "abc", "99999999999999999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        setenv("LMP_INLINE_MAX", bad[i], 1);
        CHECK(lmp_blob_inline_max() == LMP_BLOB_INLINE_MAX);
    }
    unsetenv("LMP_INLINE_MAX");
    char *n = lmp_blobfile_cal_path("/s", 7, 4294967296ull, 3);
    CHECK(n && strcmp(n, "/s/cal-j7-t4294967296-a3.f64") == 0);
    free(n);
}

int main(void) {
    snprintf(g_dir, sizeof(g_dir), "blobfile.XXXXXX");
    if (mkdtemp(g_dir) == NULL) return 1;
    RUN(test_round_trip);
    RUN(test_bad_files);
    RUN(test_write_failures);
    RUN(test_inline_max_and_names);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "  cannot remove %s\n", g_dir);
    return check_report();
}
