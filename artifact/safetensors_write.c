/*  safetensors_write - see safetensors_write.h */
#include "artifact/safetensors_write.h"
#include "base/text.h" /* defines: struct lmp_strbuf, lmp_str_escape */

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { ST_MAX_DIMS = 8, ST_BUF = 1 << 20 };

struct st_entry {
    char             *name;
    enum lmp_st_dtype dtype;
    int               n_dims;
    int64_t           shape[ST_MAX_DIMS];
    uint64_t          begin, end; /* bytes, relative to the data section */
};

struct lmp_st_writer {
    struct st_entry *t; /* (n) declared tensors */
    int64_t          n, cap;
    uint64_t         data_size;   /* bytes of all declared tensors */
    uint64_t         header_size; /* bytes of the padded JSON header, once open */
    int              fd;          /* -1 when closed */
    char            *shown;       /* name in messages */
    uint64_t         written;     /* data bytes written so far */
    int64_t          file_bytes;  /* bytes written to the file (for the fault hook) */
    int64_t          limit;       /* LMP_FAULT_WRITE_LIMIT, or -1 */
    uint8_t         *buf;         /* (ST_BUF) pending bytes */
    size_t           n_buf;
};

const char *lmp_st_dtype_name(enum lmp_st_dtype t) {
    switch (t) {
    case LMP_ST_F32:
        return "F32";
    case LMP_ST_F16:
        return "F16";
    case LMP_ST_I16:
        return "I16";
    case LMP_ST_I8:
        return "I8";
    }
    return "?";
}

int lmp_st_dtype_size(enum lmp_st_dtype t) {
    return t == LMP_ST_F32 ? 4 : t == LMP_ST_I8 ? 1 : 2;
}

struct lmp_st_writer *lmp_st_writer_new(void) {
    struct lmp_st_writer *w = calloc(1, sizeof(*w));
    if (w == NULL) return NULL;
    w->fd    = -1;
    w->limit = -1;
    return w;
}

void lmp_st_writer_destroy(struct lmp_st_writer **wp) {
    assert(wp);
    struct lmp_st_writer *w = *wp;
    if (w == NULL) return;
    if (w->fd >= 0) close(w->fd);
    for (int64_t i = 0; i < w->n; i++) free(w->t[i].name);
    free(w->t);
    free(w->shown);
    free(w->buf);
    free(w);
    *wp = NULL;
}

static bool name_ok(const char *s) {
    if (*s == '\0' || strcmp(s, "__metadata__") == 0) return false;
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == '"' || *s == '\\' || *s == 0x7f) return false;
    return true;
}

enum lmp_status lmp_st_writer_add(struct lmp_st_writer *w, const char *name,
                                  enum lmp_st_dtype dtype, int n_dims, const int64_t *shape,
                                  struct lmp_err *err) {
    assert(w && name && (shape || n_dims == 0));
    char q[96];
    if (w->fd >= 0 || w->header_size)
        return lmp_err_set(err, LMP_EINVAL, "safetensors: tensor '%s' declared after the header",
                           lmp_str_escape(q, sizeof(q), name));
    if (!name_ok(name))
        return lmp_err_set(err, LMP_EINVAL, "safetensors: bad tensor name '%s'",
                           lmp_str_escape(q, sizeof(q), name));
    if (n_dims < 0 || n_dims > ST_MAX_DIMS)
        return lmp_err_set(err, LMP_EINVAL, "safetensors: tensor '%s' has rank %d", name, n_dims);
    for (int64_t i = 0; i < w->n; i++)
        if (strcmp(w->t[i].name, name) == 0)
            return lmp_err_set(err, LMP_EINVAL, "safetensors: tensor '%s' declared twice", name);
    uint64_t bytes = (uint64_t)lmp_st_dtype_size(dtype);
    for (int d = 0; d < n_dims; d++) {
        if (shape[d] < 0 || (shape[d] > 0 && bytes > (UINT64_MAX >> 2) / (uint64_t)shape[d]))
            return lmp_err_set(err, LMP_EINVAL, "safetensors: tensor '%s' has a bad shape", name);
        bytes *= (uint64_t)shape[d];
    }
    if (w->n == w->cap) {
        int64_t          cap = w->cap ? 2 * w->cap : 64;
        struct st_entry *t   = realloc(w->t, (size_t)cap * sizeof(*t));
        if (t == NULL) return lmp_err_set(err, LMP_ENOMEM, "safetensors: out of memory");
        w->t   = t;
        w->cap = cap;
    }
    struct st_entry *e = &w->t[w->n];
    memset(e, 0, sizeof(*e));
    if ((e->name = lmp_strfmt("%s", name)) == NULL)
        return lmp_err_set(err, LMP_ENOMEM, "safetensors: out of memory");
    e->dtype  = dtype;
    e->n_dims = n_dims;
    for (int d = 0; d < n_dims; d++) e->shape[d] = shape[d];
    e->begin = w->data_size;
    e->end   = w->data_size + bytes;
    w->data_size += bytes;
    w->n++;
    return LMP_OK;
}

/* The JSON header, padded with spaces to a multiple of 8 bytes (with its 8-byte length,
 * the data section then starts 8-aligned). NULL on out-of-memory. */
static char *header_json(const struct lmp_st_writer *w, size_t *len) {
    struct lmp_strbuf b;
    lmp_strbuf_init(&b);
    lmp_strbuf_printf(&b, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (int64_t i = 0; i < w->n; i++) {
        const struct st_entry *e = &w->t[i];
        lmp_strbuf_printf(&b, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[", e->name,
                          lmp_st_dtype_name(e->dtype));
        for (int d = 0; d < e->n_dims; d++)
            lmp_strbuf_printf(&b, "%s%" PRId64, d ? "," : "", e->shape[d]);
        lmp_strbuf_printf(&b, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", e->begin, e->end);
    }
    lmp_strbuf_append(&b, "}", 1);
    while (b.len % 8 != 0) lmp_strbuf_append(&b, " ", 1);
    *len = b.len;
    return lmp_strbuf_take(&b);
}

uint64_t lmp_st_writer_file_size(const struct lmp_st_writer *w) {
    assert(w);
    size_t len = 0;
    char  *h   = header_json(w, &len);
    free(h);
    return 8 + (uint64_t)len + w->data_size;
}

static int64_t fault_write_limit(void) {
    const char *s = getenv("LMP_FAULT_WRITE_LIMIT");
    if (s == NULL || *s == '\0') return -1;
    char     *end = NULL;
    long long v   = strtoll(s, &end, 10);
    return (end && *end == '\0' && v >= 0) ? (int64_t)v : -1;
}

static bool is_enospc(int e) {
    return e == ENOSPC || e == EFBIG || e == EDQUOT;
}

static enum lmp_status io_fail(struct lmp_st_writer *w, int e, const char *what,
                               struct lmp_err *err) {
    char q[320];
    return lmp_err_set(err, is_enospc(e) ? LMP_ENOSPC : LMP_EIO, "cannot %s '%s': %s", what,
                       lmp_str_escape(q, sizeof(q), w->shown), strerror(e));
}

/* Write p[0, n) to the file, honouring the fault limit. 0, or -1 with errno set. */
static int write_raw(struct lmp_st_writer *w, const uint8_t *p, size_t n) {
    size_t done = 0;
    while (done < n) {
        size_t want = n - done;
        if (w->limit >= 0) {
            if (w->file_bytes >= w->limit) {
                errno = ENOSPC;
                return -1;
            }
            if ((int64_t)want > w->limit - w->file_bytes) want = (size_t)(w->limit - w->file_bytes);
        }
        ssize_t r = write(w->fd, p + done, want);
        if (r < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (r == 0) {
            errno = ENOSPC;
            return -1;
        }
        done += (size_t)r;
        w->file_bytes += r;
    }
    return 0;
}

static int flush_buf(struct lmp_st_writer *w) {
    if (w->n_buf == 0) return 0;
    int rc   = write_raw(w, w->buf, w->n_buf);
    w->n_buf = 0;
    return rc;
}

enum lmp_status lmp_st_writer_open(struct lmp_st_writer *w, const char *path,
                                   const char *shown_name, struct lmp_err *err) {
    assert(w && path && w->fd < 0);
    free(w->shown);
    if ((w->shown = lmp_strfmt("%s", shown_name ? shown_name : path)) == NULL ||
        (w->buf == NULL && (w->buf = malloc(ST_BUF)) == NULL))
        return lmp_err_set(err, LMP_ENOMEM, "safetensors: out of memory");
    size_t len = 0;
    char  *h   = header_json(w, &len);
    if (h == NULL) return lmp_err_set(err, LMP_ENOMEM, "safetensors: out of memory");
    w->header_size = len;
    w->limit       = fault_write_limit();
    w->fd          = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (w->fd < 0) {
        free(h);
        return io_fail(w, errno, "create", err);
    }
    uint8_t n8[8];
    for (int i = 0; i < 8; i++) n8[i] = (uint8_t)((uint64_t)len >> (8 * i));
    int rc = write_raw(w, n8, 8);
    if (rc == 0) rc = write_raw(w, (const uint8_t *)h, len);
    free(h);
    return rc == 0 ? LMP_OK : io_fail(w, errno, "write", err);
}

enum lmp_status lmp_st_writer_write(struct lmp_st_writer *w, const void *p, size_t n,
                                    struct lmp_err *err) {
    assert(w && (p || n == 0));
    if (w->fd < 0) return lmp_err_set(err, LMP_EINVAL, "safetensors: write before open");
    if (n > w->data_size - w->written) {
        char q[320];
        return lmp_err_set(err, LMP_EINVAL, "'%s': more tensor bytes than the header declares",
                           lmp_str_escape(q, sizeof(q), w->shown));
    }
    const uint8_t *s = p;
    w->written += n;
    while (n > 0) {
        size_t k = ST_BUF - w->n_buf;
        if (k > n) k = n;
        memcpy(w->buf + w->n_buf, s, k);
        w->n_buf += k;
        s += k;
        n -= k;
        if (w->n_buf == ST_BUF && flush_buf(w) != 0) return io_fail(w, errno, "write", err);
    }
    return LMP_OK;
}

enum lmp_status lmp_st_writer_close(struct lmp_st_writer *w, struct lmp_err *err) {
    assert(w);
    if (w->fd < 0) return lmp_err_set(err, LMP_EINVAL, "safetensors: close before open");
    char q[320];
    if (w->written != w->data_size)
        return lmp_err_set(err, LMP_EINVAL,
                           "'%s': %" PRIu64 " tensor bytes written, the header declares %" PRIu64,
                           lmp_str_escape(q, sizeof(q), w->shown), w->written, w->data_size);
    if (flush_buf(w) != 0) return io_fail(w, errno, "write", err);
    if (fsync(w->fd) != 0) return io_fail(w, errno, "sync", err);
    int rc = close(w->fd);
    w->fd  = -1;
    if (rc != 0) return io_fail(w, errno, "close", err);
    return LMP_OK;
}
