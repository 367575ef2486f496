/*  file - see file.h */
#include "proto/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

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
    m->size = (size_t) st.st_size;
    if (m->size > 0) {
        void *p = mmap(NULL, m->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(fd);
            return lmp_err_set(err, LMP_EIO, "cannot map '%s': %s", path, strerror(e));
        }
        m->data = p;
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
    if (m->data != NULL) munmap((void *) m->data, m->size);
    free(m->path);
    memset(m, 0, sizeof(*m));
}

enum lmp_status lmp_file_read_all(const char *path, char **out, size_t *len, struct lmp_err *err) {
    *out = NULL;
    *len = 0;
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
    size_t cap = (size_t) st.st_size + 1, n = 0;
    char *buf = malloc(cap);
    if (buf == NULL) {
        fclose(f);
        return lmp_err_set(err, LMP_ENOMEM, "out of memory reading '%s'", path);
    }
    for (;;) {
        if (n + 1 >= cap) {   /* file grew while reading (or a pipe): grow */
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
    *out = buf;
    *len = n;
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
