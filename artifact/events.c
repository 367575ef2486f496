/*  events - see events.h */
#define _GNU_SOURCE
#include "artifact/events.h"
#include "artifact/fingerprint.h" /* defines: lmp_xxh64() */
#include "base/file.h"            /* defines: lmp_file_read_all() */
#include "base/log.h"             /* defines: lmp_log_warn() */

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const uint8_t magic[8] = {'L', 'M', 'P', 'E', 'V', 'T', 'S', '1'};
enum { EVENTS_VERSION = 1, RECORD_HEAD = 12, SYNC_MS = 1000 };

struct lmp_events_file {
    char    *path;
    int      fd;
    uint64_t id;
    int64_t  n;         /* records in the file */
    bool     dirty;     /* appended since the last fsync */
    uint64_t last_sync; /* ms, monotonic */
};

static uint64_t now_mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void put_u16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8);
}
static void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint16_t get_u16(const uint8_t *p) {
    return (uint16_t)(p[0] | (p[1] << 8));
}
static uint32_t get_u32(const uint8_t *p) {
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}
static uint64_t get_u64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static void copy_str(char *dst, size_t cap, const char *src) {
    size_t n = src ? strnlen(src, cap - 1) : 0;
    if (n) memcpy(dst, src, n);
    dst[n] = '\0';
}

void lmp_event_set(struct lmp_event *e, uint64_t time_ms, uint32_t run, int level, const char *kind,
                   const char *worker, const char *layer, const char *message) {
    assert(e);
    e->time_ms = time_ms;
    e->run     = run;
    e->level   = (uint8_t)(level < 0 ? 0 : level > 255 ? 255 : level);
    copy_str(e->kind, sizeof(e->kind), kind);
    copy_str(e->worker, sizeof(e->worker), worker);
    copy_str(e->layer, sizeof(e->layer), layer);
    copy_str(e->message, sizeof(e->message), message);
}

enum lmp_status lmp_event_list_push(struct lmp_event_list *l, const struct lmp_event *e) {
    if (l->n == l->cap) {
        int64_t           cap = l->cap ? 2 * l->cap : 64;
        struct lmp_event *ne  = realloc(l->ev, (size_t)cap * sizeof(*ne));
        if (ne == NULL) return LMP_ENOMEM;
        l->ev  = ne;
        l->cap = cap;
    }
    l->ev[l->n++] = *e;
    return LMP_OK;
}

void lmp_event_list_release(struct lmp_event_list *l) {
    free(l->ev);
    memset(l, 0, sizeof(*l));
}

/* ---- records -------------------------------------------------------------------- */

size_t lmp_events_encode(const struct lmp_event *e, uint8_t *buf) {
    const size_t lk = strnlen(e->kind, sizeof(e->kind) - 1),
                 lw = strnlen(e->worker, sizeof(e->worker) - 1);
    const size_t ll = strnlen(e->layer, sizeof(e->layer) - 1);
    const size_t lm = strnlen(e->message, sizeof(e->message) - 1);
    uint8_t     *p  = buf + RECORD_HEAD;
    put_u64(p, e->time_ms);
    put_u32(p + 8, e->run);
    p[12] = e->level;
    p[13] = (uint8_t)lk;
    put_u16(p + 14, (uint16_t)lw);
    put_u16(p + 16, (uint16_t)ll);
    put_u16(p + 18, (uint16_t)lm);
    size_t off = LMP_EVENTS_PAYLOAD_MIN;
    memcpy(p + off, e->kind, lk), off += lk;
    memcpy(p + off, e->worker, lw), off += lw;
    memcpy(p + off, e->layer, ll), off += ll;
    memcpy(p + off, e->message, lm), off += lm;
    put_u32(buf, (uint32_t)off);
    put_u64(buf + 4, lmp_xxh64(p, off, 0));
    return RECORD_HEAD + off;
}

/* Copy n bytes of a string field; false if it holds a NUL or does not fit cap. */
static bool take_str(char *dst, size_t cap, const uint8_t *src, size_t n) {
    if (n >= cap || memchr(src, '\0', n) != NULL) return false;
    memcpy(dst, src, n);
    dst[n] = '\0';
    return true;
}

/* Decode a payload whose checksum matched. */
static bool decode_payload(const uint8_t *p, size_t n, struct lmp_event *e) {
    if (n < LMP_EVENTS_PAYLOAD_MIN) return false;
    const size_t lk = p[13], lw = get_u16(p + 14), ll = get_u16(p + 16), lm = get_u16(p + 18);
    if (LMP_EVENTS_PAYLOAD_MIN + lk + lw + ll + lm != n) return false;
    e->time_ms       = get_u64(p);
    e->run           = get_u32(p + 8);
    e->level         = p[12];
    const uint8_t *s = p + LMP_EVENTS_PAYLOAD_MIN;
    if (!take_str(e->kind, sizeof(e->kind), s, lk) || lk == 0) return false;
    s += lk;
    if (!take_str(e->worker, sizeof(e->worker), s, lw)) return false;
    s += lw;
    if (!take_str(e->layer, sizeof(e->layer), s, ll)) return false;
    s += ll;
    return take_str(e->message, sizeof(e->message), s, lm);
}

enum lmp_status lmp_events_parse(const uint8_t *buf, size_t len, const char *name,
                                 struct lmp_event_list *out, struct lmp_events_scan *scan,
                                 struct lmp_err *err) {
    assert(scan && (buf || len == 0));
    memset(scan, 0, sizeof(*scan));
    name            = name ? name : "events";
    scan->valid_end = len < LMP_EVENTS_HEADER ? len : LMP_EVENTS_HEADER;
    if (len < LMP_EVENTS_HEADER) { /* torn while it was being created: nothing in it */
        scan->n_dropped = len;
        scan->valid_end = 0;
        return LMP_OK;
    }
    if (memcmp(buf, magic, sizeof(magic)) != 0)
        return lmp_err_set(err, LMP_EFORMAT, "'%s': not an lmpress events file (bad magic)", name);
    if (get_u64(buf + 24) != lmp_xxh64(buf, 24, 0))
        return lmp_err_set(err, LMP_EFORMAT, "'%s': events header fails its checksum", name);
    if (get_u32(buf + 8) != EVENTS_VERSION || get_u32(buf + 12) != LMP_EVENTS_HEADER)
        return lmp_err_set(err, LMP_EUNSUP, "'%s': events file version %u, this lmpress reads %d",
                           name, get_u32(buf + 8), EVENTS_VERSION);
    scan->header_ok       = true;
    scan->file_id         = get_u64(buf + 16);
    size_t            pos = LMP_EVENTS_HEADER;
    struct lmp_event *e   = malloc(sizeof(*e));
    if (e == NULL) return lmp_err_set(err, LMP_ENOMEM, "out of memory reading '%s'", name);
    enum lmp_status st = LMP_OK;
    while (len - pos >= RECORD_HEAD) {
        const uint32_t n = get_u32(buf + pos);
        if (n < LMP_EVENTS_PAYLOAD_MIN || n > LMP_EVENTS_PAYLOAD_MAX) break; /* cannot resync */
        if (n > len - pos - RECORD_HEAD) break;                              /* torn */
        const uint8_t *p = buf + pos + RECORD_HEAD;
        pos += RECORD_HEAD + n;
        if (get_u64(buf + pos - n - 8) != lmp_xxh64(p, n, 0) || !decode_payload(p, n, e)) {
            scan->n_bad++;
            continue;
        }
        scan->n_records++;
        scan->valid_end = pos;
        if (out && lmp_event_list_push(out, e) != LMP_OK) {
            st = lmp_err_set(err, LMP_ENOMEM, "out of memory reading '%s'", name);
            break;
        }
    }
    free(e);
    scan->n_dropped = len - scan->valid_end;
    return st;
}

enum lmp_status lmp_events_read(const char *path, struct lmp_event_list *out,
                                struct lmp_events_scan *scan, struct lmp_err *err) {
    struct stat sb;
    if (stat(path, &sb) != 0 && errno == ENOENT)
        return lmp_err_set(err, LMP_ENOENT, "no events file '%s'", path);
    char           *buf = NULL;
    size_t          len = 0;
    enum lmp_status st  = lmp_file_read_all(path, &buf, &len, err);
    if (st != LMP_OK) return st;
    st = lmp_events_parse((const uint8_t *)buf, len, path, out, scan, err);
    free(buf);
    return st;
}

/* ---- the writer ------------------------------------------------------------------ */

static uint64_t random_id(void) {
    uint64_t id = 0;
    int      fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        if (read(fd, &id, sizeof(id)) != (ssize_t)sizeof(id)) id = 0;
        close(fd);
    }
    if (id == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t seed[3] = {(uint64_t)ts.tv_sec, (uint64_t)ts.tv_nsec, (uint64_t)getpid()};
        id               = lmp_xxh64(seed, sizeof(seed), 0);
    }
    return id ? id : 1;
}

static int write_full(int fd, const uint8_t *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w, n -= (size_t)w;
    }
    return 0;
}

static enum lmp_status io_fail(const char *what, const char *path, struct lmp_err *err) {
    const int e = errno;
    return lmp_err_set(err, e == ENOSPC || e == EDQUOT || e == EFBIG ? LMP_ENOSPC : LMP_EIO,
                       "cannot %s '%s': %s", what, path, strerror(e));
}

void lmp_events_header(uint8_t *h, uint64_t file_id) {
    memcpy(h, magic, 8);
    put_u32(h + 8, EVENTS_VERSION);
    put_u32(h + 12, LMP_EVENTS_HEADER);
    put_u64(h + 16, file_id);
    put_u64(h + 24, lmp_xxh64(h, 24, 0));
}

/* Start the file afresh: header with a new id, fsync'ed. */
static enum lmp_status start_fresh(struct lmp_events_file *w, struct lmp_err *err) {
    uint8_t h[LMP_EVENTS_HEADER];
    w->id = random_id();
    lmp_events_header(h, w->id);
    if (ftruncate(w->fd, 0) < 0 || lseek(w->fd, 0, SEEK_SET) < 0 ||
        write_full(w->fd, h, sizeof(h)) < 0 || fsync(w->fd) < 0)
        return io_fail("write", w->path, err);
    w->n = 0;
    return LMP_OK;
}

enum lmp_status lmp_events_open(const char *path, uint64_t absorbed_id,
                                struct lmp_events_file **out, uint32_t *max_run,
                                struct lmp_err *err) {
    assert(path && out && max_run);
    *out                      = NULL;
    *max_run                  = 0;
    struct lmp_events_file *w = calloc(1, sizeof(*w));
    if (w == NULL || (w->path = strdup(path)) == NULL) {
        free(w);
        return lmp_err_set(err, LMP_ENOMEM, "out of memory opening '%s'", path);
    }
    enum lmp_status        st = LMP_OK;
    struct lmp_event_list  l  = {0};
    struct lmp_events_scan scan;
    char                  *buf = NULL;
    size_t                 len = 0;
    w->fd                      = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (w->fd < 0) {
        st = io_fail("open", path, err);
        goto fail;
    }
    if ((st = lmp_file_read_all(path, &buf, &len, err))) goto fail;
    if ((st = lmp_events_parse((const uint8_t *)buf, len, path, &l, &scan, err))) goto fail;
    if (!scan.header_ok || scan.file_id == absorbed_id) {
        if (scan.header_ok && scan.n_records > 0)
            lmp_log_info("'%s' is already in the assembled artifact: starting it afresh", path);
        if ((st = start_fresh(w, err))) goto fail;
    } else {
        w->id = scan.file_id;
        w->n  = scan.n_records;
        for (int64_t i = 0; i < l.n; i++)
            if (l.ev[i].run > *max_run) *max_run = l.ev[i].run;
        if (scan.n_dropped > 0) {
            lmp_log_warn("'%s': dropping %zu bytes after the last complete event (a torn write)",
                         path, scan.n_dropped);
            if (ftruncate(w->fd, (off_t)scan.valid_end) < 0 || fsync(w->fd) < 0) {
                st = io_fail("truncate", path, err);
                goto fail;
            }
        }
        if (scan.n_bad > 0)
            lmp_log_warn("'%s': %lld corrupt events skipped", path, (long long)scan.n_bad);
        if (lseek(w->fd, 0, SEEK_END) < 0) {
            st = io_fail("seek", path, err);
            goto fail;
        }
    }
    w->last_sync = now_mono_ms();
    free(buf);
    lmp_event_list_release(&l);
    *out = w;
    return LMP_OK;
fail:
    free(buf);
    lmp_event_list_release(&l);
    lmp_events_close(&w);
    return st;
}

enum lmp_status lmp_events_append(struct lmp_events_file *w, const struct lmp_event *e,
                                  struct lmp_err *err) {
    assert(w && e);
    uint8_t      rec[LMP_EVENTS_PAYLOAD_MAX + RECORD_HEAD];
    const size_t n = lmp_events_encode(e, rec);
    if (write_full(w->fd, rec, n) < 0) return io_fail("append to", w->path, err);
    w->n++;
    w->dirty = true;
    if (now_mono_ms() - w->last_sync >= SYNC_MS) return lmp_events_sync(w, err);
    return LMP_OK;
}

enum lmp_status lmp_events_sync(struct lmp_events_file *w, struct lmp_err *err) {
    assert(w);
    if (!w->dirty) return LMP_OK;
    if (fdatasync(w->fd) < 0) return io_fail("sync", w->path, err);
    w->dirty     = false;
    w->last_sync = now_mono_ms();
    return LMP_OK;
}

uint64_t lmp_events_file_id(const struct lmp_events_file *w) {
    return w->id;
}
int64_t lmp_events_count(const struct lmp_events_file *w) {
    return w->n;
}
const char *lmp_events_path(const struct lmp_events_file *w) {
    return w->path;
}

void lmp_events_close(struct lmp_events_file **wp) {
    if (wp == NULL || *wp == NULL) return;
    struct lmp_events_file *w = *wp;
    if (w->fd >= 0) {
        if (w->dirty) fdatasync(w->fd);
        close(w->fd);
    }
    free(w->path);
    free(w);
    *wp = NULL;
}
