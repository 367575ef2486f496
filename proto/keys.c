/*  keys - see keys.h */
#define _GNU_SOURCE
#include "proto/keys.h"

#include <arpa/inet.h>
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

static const char z85_chars[] =
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

bool lmp_curve_available(void) {
    return zmq_has("curve") != 0;
}

static enum lmp_status need_curve(struct lmp_err *err) {
    if (lmp_curve_available()) return LMP_OK;
    return lmp_err_set(err, LMP_EUNSUP,
                       "this libzmq was built without CURVE (libsodium): "
                       "keys cannot be used");
}

enum lmp_status lmp_key_parse(const char *text, size_t len, const char *path, struct lmp_key *key,
                              struct lmp_err *err) {
    assert((text || len == 0) && path && key);
    memset(key, 0, sizeof(*key));
    size_t n = len;
    if (n > 0 && text[n - 1] == '\n') n--;
    if (n != LMP_KEY_Z85_LEN)
        return lmp_err_set(err, LMP_EFORMAT,
                           "key file '%s': expected %d Z85 characters and an "
                           "optional newline, found %zu bytes",
                           path, LMP_KEY_Z85_LEN, len);
    for (size_t i = 0; i < n; i++)
        if (text[i] == '\0' || strchr(z85_chars, text[i]) == NULL)
            return lmp_err_set(err, LMP_EFORMAT,
                               "key file '%s': byte %zu (0x%02x) is not a Z85 "
                               "character",
                               path, i, (unsigned)(unsigned char)text[i]);
    memcpy(key->z85, text, n);
    key->z85[n] = '\0';
    uint8_t raw[32];
    if (zmq_z85_decode(raw, key->z85) == NULL) { /* e.g. a group above 2^32 - 1 */
        memset(key, 0, sizeof(*key));
        return lmp_err_set(err, LMP_EFORMAT, "key file '%s': not a valid Z85 key", path);
    }
    return LMP_OK;
}

/* Read a small key file; secret: refuse group/other access. */
static enum lmp_status read_key_file(const char *path, bool secret, struct lmp_key *key,
                                     struct lmp_err *err) {
    enum lmp_status st = LMP_OK;
    int             fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return lmp_err_set(err, errno == ENOENT ? LMP_ENOENT : LMP_EIO,
                           "cannot open key file "
                           "'%s': %s",
                           path, strerror(errno));
    struct stat sb;
    char        buf[LMP_KEY_FILE_MAX];
    if (fstat(fd, &sb) != 0) {
        st = lmp_err_set(err, LMP_EIO, "cannot stat key file '%s': %s", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(sb.st_mode)) {
        st = lmp_err_set(err, LMP_EFORMAT, "key file '%s' is not a regular file", path);
        goto out;
    }
    if (secret && (sb.st_mode & 077)) {
        st = lmp_err_set(err, LMP_EINVAL,
                         "secret key file '%s' may be read by others (mode %04o): "
                         "chmod 600 it",
                         path, (unsigned)(sb.st_mode & 07777));
        goto out;
    }
    if (sb.st_size > LMP_KEY_FILE_MAX) {
        st = lmp_err_set(err, LMP_EFORMAT, "key file '%s': %lld bytes, a key file has %d or %d",
                         path, (long long)sb.st_size, LMP_KEY_Z85_LEN, LMP_KEY_Z85_LEN + 1);
        goto out;
    }
    size_t len = 0;
    for (;;) {
        ssize_t r = read(fd, buf + len, sizeof(buf) - len);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            st = lmp_err_set(err, LMP_EIO, "cannot read key file '%s': %s", path, strerror(errno));
            goto out;
        }
        if (r == 0) break;
        len += (size_t)r;
        if (len == sizeof(buf)) { /* grew since fstat */
            st = lmp_err_set(err, LMP_EFORMAT, "key file '%s' is too large", path);
            goto out;
        }
    }
    st = lmp_key_parse(buf, len, path, key, err);
out:
    memset(buf, 0, sizeof(buf));
    close(fd);
    return st;
}

enum lmp_status lmp_key_load_public(const char *path, struct lmp_key *key, struct lmp_err *err) {
    assert(path && key);
    return read_key_file(path, false, key, err);
}

enum lmp_status lmp_key_load_secret(const char *path, struct lmp_key *secret_key,
                                    struct lmp_key *public_key, struct lmp_err *err) {
    assert(path && secret_key);
    enum lmp_status st = need_curve(err);
    if (st == LMP_OK) st = read_key_file(path, true, secret_key, err);
    if (st == LMP_OK && public_key && zmq_curve_public(public_key->z85, secret_key->z85) != 0)
        st = lmp_err_set(err, LMP_EFORMAT, "key file '%s': cannot derive the public key: %s", path,
                         zmq_strerror(errno));
    if (st != LMP_OK) memset(secret_key, 0, sizeof(*secret_key));
    return st;
}

/* Write text to path through a temporary file and a rename. */
static enum lmp_status write_key_file(const char *path, const char *text, mode_t mode,
                                      struct lmp_err *err) {
    char tmp[4200];
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp%d", path, (int)getpid()) >= sizeof(tmp))
        return lmp_err_set(err, LMP_EINVAL, "key path '%.64s...' is too long", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0)
        return lmp_err_set(err, LMP_EIO, "cannot write key file '%s': %s", path, strerror(errno));
    const size_t len = strlen(text);
    bool ok = fchmod(fd, mode) == 0 && write(fd, text, len) == (ssize_t)len && fsync(fd) == 0;
    int  e  = errno;
    ok      = close(fd) == 0 && ok;
    if (ok && rename(tmp, path) == 0) return LMP_OK;
    if (ok) e = errno;
    unlink(tmp);
    return lmp_err_set(err, LMP_EIO, "cannot write key file '%s': %s", path, strerror(e));
}

enum lmp_status lmp_key_generate(const char *base, bool force, struct lmp_key *public_key,
                                 struct lmp_err *err) {
    assert(base);
    enum lmp_status st = need_curve(err);
    if (st != LMP_OK) return st;
    char key_path[4096], pub_path[4096];
    if (base[0] == '\0' ||
        (size_t)snprintf(key_path, sizeof(key_path), "%s.key", base) >= sizeof(key_path) ||
        (size_t)snprintf(pub_path, sizeof(pub_path), "%s.pub", base) >= sizeof(pub_path))
        return lmp_err_set(err, LMP_EINVAL, "key path '%.64s' is empty or too long", base);
    struct stat sb;
    if (!force)
        for (int i = 0; i < 2; i++) {
            const char *p = i ? pub_path : key_path;
            if (lstat(p, &sb) == 0 || errno != ENOENT)
                return lmp_err_set(err, LMP_EINVAL, "'%s' already exists (--force replaces it)", p);
        }
    struct lmp_key pub, sec;
    if (zmq_curve_keypair(pub.z85, sec.z85) != 0)
        return lmp_err_set(err, LMP_EIO, "cannot generate a key pair: %s", zmq_strerror(errno));
    char text[LMP_KEY_Z85_LEN + 2];
    snprintf(text, sizeof(text), "%s\n", sec.z85);
    st = write_key_file(key_path, text, 0600, err);
    snprintf(text, sizeof(text), "%s\n", pub.z85);
    if (st == LMP_OK) st = write_key_file(pub_path, text, 0644, err);
    memset(&sec, 0, sizeof(sec));
    memset(text, 0, sizeof(text));
    if (st == LMP_OK && public_key) *public_key = pub;
    return st;
}

enum lmp_status lmp_curve_client_load(const char *key_path, const char *server_key_path,
                                      struct lmp_curve_client *c, struct lmp_err *err) {
    assert(key_path && server_key_path && c);
    memset(c, 0, sizeof(*c));
    enum lmp_status st = lmp_key_load_secret(key_path, &c->secret_key, &c->public_key, err);
    if (st == LMP_OK) st = lmp_key_load_public(server_key_path, &c->server_key, err);
    if (st != LMP_OK) memset(c, 0, sizeof(*c));
    return st;
}

static int key_cmp(const void *a, const void *b) {
    const struct lmp_authorized_key *x = a, *y = b;
    if (x->role != y->role) return x->role < y->role ? -1 : 1;
    return strcmp(x->name, y->name);
}

static bool valid_name(const char *s, size_t n) {
    if (n == 0 || n >= LMP_KEY_NAME_MAX) return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '.' || s[i] == '_' || s[i] == '-'))
            return false;
    return true;
}

/* Add every DIR/sub/NAME.pub with role; a missing sub directory has no keys. */
static enum lmp_status load_role_dir(const char *dir, const char *sub, enum lmp_peer role,
                                     struct lmp_curve_server *s, struct lmp_err *err) {
    char path[4096];
    if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, sub) >= sizeof(path))
        return lmp_err_set(err, LMP_EINVAL, "key directory '%.64s...' is too long", dir);
    DIR *d = opendir(path);
    if (d == NULL) {
        if (errno == ENOENT) return LMP_OK;
        return lmp_err_set(err, LMP_EIO, "cannot read key directory '%s': %s", path,
                           strerror(errno));
    }
    enum lmp_status st = LMP_OK;
    for (struct dirent *e; st == LMP_OK && (e = readdir(d)) != NULL;) {
        const size_t n = strlen(e->d_name);
        if (e->d_name[0] == '.' || n < 5 || strcmp(e->d_name + n - 4, ".pub") != 0)
            continue; /* not a key: "README", "node7.pub~", ".node7.pub.swp" */
        char file[4400];
        snprintf(file, sizeof(file), "%s/%s", path, e->d_name);
        if (!valid_name(e->d_name, n - 4)) {
            st = lmp_err_set(err, LMP_EINVAL,
                             "key file '%s': the name must be 1 to %d of "
                             "[A-Za-z0-9._-] before '.pub'",
                             file, LMP_KEY_NAME_MAX - 1);
            break;
        }
        if (s->n_keys >= LMP_KEYS_MAX) {
            st = lmp_err_set(err, LMP_EINVAL, "key directory '%s': more than %d keys", dir,
                             LMP_KEYS_MAX);
            break;
        }
        if (s->n_keys % 64 == 0) {
            void *p = realloc(s->keys, (s->n_keys + 64) * sizeof(*s->keys));
            if (p == NULL) {
                st = lmp_err_set(err, LMP_ENOMEM, "out of memory");
                break;
            }
            s->keys = p;
        }
        struct lmp_authorized_key *k = &s->keys[s->n_keys];
        memset(k, 0, sizeof(*k));
        if ((st = lmp_key_load_public(file, &k->key, err)) != LMP_OK) break;
        zmq_z85_decode(k->raw, k->key.z85); /* cannot fail: lmp_key_parse decoded it */
        k->role = role;
        memcpy(k->name, e->d_name, n - 4);
        const struct lmp_authorized_key *dup = lmp_curve_server_find(s, k->raw);
        if (dup) {
            st = lmp_err_set(err, LMP_EINVAL, "key file '%s': the same key as %s/%s.pub", file,
                             dup->role == LMP_PEER_WORKER ? "workers" : "clients", dup->name);
            break;
        }
        if (memcmp(k->key.z85, s->public_key.z85, LMP_KEY_Z85_LEN) == 0) {
            st = lmp_err_set(err, LMP_EINVAL, "key file '%s' is the coordinator's own key", file);
            break;
        }
        s->n_keys++;
    }
    closedir(d);
    return st;
}

enum lmp_status lmp_curve_server_load(const char *dir, struct lmp_curve_server *s,
                                      struct lmp_err *err) {
    assert(dir && s);
    memset(s, 0, sizeof(*s));
    enum lmp_status st = need_curve(err);
    if (st != LMP_OK) return st;
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return lmp_err_set(err, LMP_ENOENT,
                           "key directory '%s' does not exist (see 'lmpress help "
                           "keygen')",
                           dir);
    char path[4096];
    if ((size_t)snprintf(path, sizeof(path), "%s/server.key", dir) >= sizeof(path))
        return lmp_err_set(err, LMP_EINVAL, "key directory '%.64s...' is too long", dir);
    if ((st = lmp_key_load_secret(path, &s->secret_key, &s->public_key, err)) != LMP_OK ||
        (st = load_role_dir(dir, "workers", LMP_PEER_WORKER, s, err)) != LMP_OK ||
        (st = load_role_dir(dir, "clients", LMP_PEER_CLI, s, err)) != LMP_OK)
        return st;
    if (s->n_keys > 1) qsort(s->keys, s->n_keys, sizeof(*s->keys), key_cmp);
    return LMP_OK;
}

void lmp_curve_server_release(struct lmp_curve_server *s) {
    if (s == NULL) return;
    free(s->keys);
    memset(s, 0, sizeof(*s));
}

const struct lmp_authorized_key *lmp_curve_server_find(const struct lmp_curve_server *s,
                                                       const uint8_t                  raw[32]) {
    assert(s && raw);
    for (size_t i = 0; i < s->n_keys; i++)
        if (memcmp(s->keys[i].raw, raw, 32) == 0) return &s->keys[i];
    return NULL;
}

enum lmp_status lmp_key_pair_new(struct lmp_key *public_key, struct lmp_key *secret_key,
                                 struct lmp_err *err) {
    assert(public_key && secret_key);
    memset(public_key, 0, sizeof(*public_key));
    memset(secret_key, 0, sizeof(*secret_key));
    enum lmp_status st = need_curve(err);
    if (st != LMP_OK) return st;
    if (zmq_curve_keypair(public_key->z85, secret_key->z85) != 0)
        return lmp_err_set(err, LMP_EIO, "cannot generate a key pair: %s", zmq_strerror(errno));
    return LMP_OK;
}

enum lmp_status lmp_curve_server_add(struct lmp_curve_server *s, const struct lmp_key *key,
                                     enum lmp_peer role, const char *name, struct lmp_err *err) {
    assert(s && key && name);
    assert(role == LMP_PEER_WORKER || role == LMP_PEER_CLI);
    struct lmp_authorized_key k;
    memset(&k, 0, sizeof(k));
    if (!valid_name(name, strlen(name)))
        return lmp_err_set(err, LMP_EINVAL, "key name '%.64s': must be 1 to %d of [A-Za-z0-9._-]",
                           name, LMP_KEY_NAME_MAX - 1);
    enum lmp_status st =
        lmp_key_parse(key->z85, strnlen(key->z85, sizeof(key->z85)), name, &k.key, err);
    if (st != LMP_OK) return st;
    zmq_z85_decode(k.raw, k.key.z85); /* cannot fail: lmp_key_parse decoded it */
    k.role = role;
    snprintf(k.name, sizeof(k.name), "%s", name);
    const struct lmp_authorized_key *dup = lmp_curve_server_find(s, k.raw);
    if (dup) return lmp_err_set(err, LMP_EINVAL, "key '%s': the same key as '%s'", name, dup->name);
    if (memcmp(k.key.z85, s->public_key.z85, LMP_KEY_Z85_LEN) == 0)
        return lmp_err_set(err, LMP_EINVAL, "key '%s' is the coordinator's own key", name);
    if (s->n_keys >= LMP_KEYS_MAX)
        return lmp_err_set(err, LMP_EINVAL, "more than %d keys", LMP_KEYS_MAX);
    if (s->n_keys % 64 == 0) {
        void *p = realloc(s->keys, (s->n_keys + 64) * sizeof(*s->keys));
        if (p == NULL) return lmp_err_set(err, LMP_ENOMEM, "out of memory");
        s->keys = p;
    }
    s->keys[s->n_keys++] = k;
    return LMP_OK;
}

bool lmp_endpoint_is_local(const char *ep) {
    assert(ep);
    if (strncmp(ep, "ipc://", 6) == 0 || strncmp(ep, "inproc://", 9) == 0) return true;
    if (strncmp(ep, "tcp://", 6) != 0) return false;
    const char *h = ep + 6, *end;
    char        host[256];
    if (*h == '[') {
        end = strchr(h, ']');
        if (end == NULL) return false;
        h++;
    } else {
        end = strrchr(h, ':');
        if (end == NULL) return false;
    }
    size_t n = (size_t)(end - h);
    if (n == 0 || n >= sizeof(host)) return false;
    memcpy(host, h, n);
    host[n] = '\0';
    if (strcasecmp(host, "localhost") == 0 || strcmp(host, "lo") == 0) return true;
    struct in_addr  a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, host, &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) == 1) return IN6_IS_ADDR_LOOPBACK(&a6);
    return false;
}

enum lmp_status lmp_bind_check(const char *endpoint, bool curve, bool insecure,
                               struct lmp_err *err) {
    assert(endpoint);
    if (curve || insecure || lmp_endpoint_is_local(endpoint)) return LMP_OK;
    return lmp_err_set(err, LMP_EINVAL,
                       "refusing to bind '%s' without CURVE keys: anyone who can "
                       "reach it could submit jobs (use --curve-dir DIR, or --insecure on a "
                       "trusted network)",
                       endpoint);
}
