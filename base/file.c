/*  file - see file.h */
#include "base/file.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Every live map, so that lmp_map_release_pages never advises away memory that is not a
 * read-only file map (MADV_DONTNEED zeroes anonymous memory). Few entries: a model has a
 * handful of files. */
struct map_range {
    const uint8_t *data;
    size_t         size;
};
static pthread_mutex_t   maps_mu = PTHREAD_MUTEX_INITIALIZER;
static struct map_range *maps;
static size_t            n_maps, cap_maps;

static bool maps_add(const uint8_t *data, size_t size) {
    pthread_mutex_lock(&maps_mu);
    bool ok = true;
    if (n_maps == cap_maps) {
        size_t            cap = cap_maps ? 2 * cap_maps : 16;
        struct map_range *r   = realloc(maps, cap * sizeof(*r));
        if (r == NULL)
            ok = false;
        else
            maps = r, cap_maps = cap;
    }
    if (ok) maps[n_maps++] = (struct map_range){data, size};
    pthread_mutex_unlock(&maps_mu);
    return ok;
}

static void maps_remove(const uint8_t *data) {
    pthread_mutex_lock(&maps_mu);
    for (size_t i = 0; i < n_maps; i++)
        if (maps[i].data == data) {
            maps[i] = maps[--n_maps];
            break;
        }
    if (n_maps == 0) { /* no leak reports at exit once every map is closed */
        free(maps);
        maps     = NULL;
        cap_maps = 0;
    }
    pthread_mutex_unlock(&maps_mu);
}

size_t lmp_map_release_pages(const void *p, size_t n) {
    const long ps = sysconf(_SC_PAGESIZE);
    if (p == NULL || n == 0 || ps <= 0) return 0;
    const uintptr_t a = (uintptr_t)p, page = (uintptr_t)ps;
    const uintptr_t lo = (a + page - 1) / page * page, hi = (a + n) / page * page;
    if (hi <= lo) return 0;
    size_t released = 0;
    pthread_mutex_lock(&maps_mu);
    for (size_t i = 0; i < n_maps; i++) {
        const uintptr_t m0 = (uintptr_t)maps[i].data, m1 = m0 + maps[i].size;
        if (a >= m0 && a + n <= m1) {
            if (madvise((void *)lo, hi - lo, MADV_DONTNEED) == 0) released = hi - lo;
            break;
        }
    }
    pthread_mutex_unlock(&maps_mu);
    return released;
}

static enum lmp_status errno_status(int e) {
    return (e == ENOENT || e == ENOTDIR) ? LMP_ENOENT : LMP_EIO;
}

enum lmp_status lmp_map_open(struct lmp_map *m, const char *path, struct lmp_err *err) {
    memset(m, 0, sizeof(*m));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return lmp_err_set(err, errno_status(e), "cannot open '%s': %s", path, strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return lmp_err_set(err, LMP_EIO, "'%s' is not a regular file", path);
    }
    m->size = (size_t)st.st_size;
    if (m->size > 0) {
        void *p = mmap(NULL, m->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(fd);
            return lmp_err_set(err, LMP_EIO, "cannot map '%s': %s", path, strerror(e));
        }
        m->data = p;
        if (!maps_add(m->data, m->size)) {
            munmap(p, m->size);
            m->data = NULL;
            close(fd);
            return lmp_err_set(err, LMP_ENOMEM, "out of memory mapping '%s'", path);
        }
    }
    close(fd);
    m->path = strdup(path);
    if (m->path == NULL) {
        lmp_map_close(m);
        return lmp_err_set(err, LMP_ENOMEM, "out of memory mapping '%s'", path);
    }
    return LMP_OK;
}

void lmp_map_close(struct lmp_map *m) {
    if (m == NULL) return;
    if (m->data != NULL) {
        maps_remove(m->data);
        munmap((void *)m->data, m->size);
    }
    free(m->path);
    memset(m, 0, sizeof(*m));
}

enum lmp_status lmp_file_read_all(const char *path, char **out, size_t *len, struct lmp_err *err) {
    *out    = NULL;
    *len    = 0;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        int e = errno;
        return lmp_err_set(err, errno_status(e), "cannot open '%s': %s", path, strerror(e));
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return lmp_err_set(err, LMP_EIO, "'%s' is not a regular file", path);
    }
    size_t cap = (size_t)st.st_size + 1, n = 0;
    char  *buf = malloc(cap);
    if (buf == NULL) {
        fclose(f);
        return lmp_err_set(err, LMP_ENOMEM, "out of memory reading '%s'", path);
    }
    for (;;) {
        if (n + 1 >= cap) { /* file grew while reading (or a pipe): grow */
            char *nb = realloc(buf, cap * 2);
            if (nb == NULL) {
                free(buf);
                fclose(f);
                return lmp_err_set(err, LMP_ENOMEM, "out of memory reading '%s'", path);
            }
            buf = nb;
            cap *= 2;
        }
        size_t r = fread(buf + n, 1, cap - 1 - n, f);
        n += r;
        if (r == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return lmp_err_set(err, LMP_EIO, "cannot read '%s'", path);
    }
    buf[n] = '\0';
    *out   = buf;
    *len   = n;
    return LMP_OK;
}

int lmp_path_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int lmp_path_is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int lmp_fsync_path(const char *path, bool dir) {
    int fd = open(path, (dir ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    int e  = errno;
    close(fd);
    errno = e;
    return rc;
}
