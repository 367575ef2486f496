/*  zauth - see zauth.h */
#include "proto/zauth.h"
#include "base/log.h" /* defines: lmp_log_* */

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

enum { MAX_FRAMES = 8, N_RECENT = 32, LOG_EVERY_MS = 10000 };

/* A refused key and when it was last logged (rate limit). */
struct recent {
    uint8_t  raw[32];
    uint64_t logged_ms;
    uint64_t n_quiet; /* refusals not logged since */
};

struct lmp_zauth {
    struct lmp_curve_server keys; /* own copy */
    void                   *zap, *mon, *ctl_in, *ctl_out;
    pthread_t               thread;
    bool                    running;
    atomic_uint_fast64_t    n_accepted, n_refused;
    struct recent           recent[N_RECENT];
    uint64_t proto_logged_ms[3], proto_quiet[3]; /* per kind: no keys, crypto, other */
};

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static bool frame_is(zmq_msg_t *m, const char *s) {
    size_t n = strlen(s);
    return zmq_msg_size(m) == n && memcmp(zmq_msg_data(m), s, n) == 0;
}

/* Printable copy of a frame (addresses, mechanism names). */
static void frame_text(zmq_msg_t *m, char *buf, size_t cap) {
    size_t      n = zmq_msg_size(m);
    const char *d = zmq_msg_data(m);
    size_t      o = 0;
    for (size_t i = 0; i < n && o + 1 < cap; i++)
        buf[o++] = (d[i] >= 0x20 && d[i] < 0x7f) ? d[i] : '?';
    buf[o] = '\0';
}

/* True if this refusal of raw should be logged now; *quiet gets the refusals skipped. */
static bool should_log(struct lmp_zauth *z, const uint8_t raw[32], uint64_t *quiet) {
    const uint64_t now  = now_ms();
    int            slot = 0;
    for (int i = 0; i < N_RECENT; i++) {
        if (memcmp(z->recent[i].raw, raw, 32) == 0 && z->recent[i].logged_ms) {
            struct recent *r = &z->recent[i];
            if (now - r->logged_ms < LOG_EVERY_MS) {
                r->n_quiet++;
                return false;
            }
            *quiet       = r->n_quiet;
            r->n_quiet   = 0;
            r->logged_ms = now;
            return true;
        }
        if (z->recent[i].logged_ms < z->recent[slot].logged_ms) slot = i;
    }
    memcpy(z->recent[slot].raw, raw, 32); /* evict the oldest */
    z->recent[slot].logged_ms = now;
    z->recent[slot].n_quiet   = 0;
    *quiet                    = 0;
    return true;
}

static void send_reply(void *zap, zmq_msg_t *req_id, const char *status, const char *text,
                       const char *user_id) {
    zmq_send(zap, "1.0", 3, ZMQ_SNDMORE);
    if (req_id)
        zmq_send(zap, zmq_msg_data(req_id), zmq_msg_size(req_id), ZMQ_SNDMORE);
    else
        zmq_send(zap, "", 0, ZMQ_SNDMORE);
    zmq_send(zap, status, strlen(status), ZMQ_SNDMORE);
    zmq_send(zap, text, strlen(text), ZMQ_SNDMORE);
    zmq_send(zap, user_id, strlen(user_id), ZMQ_SNDMORE);
    zmq_send(zap, "", 0, 0); /* no metadata */
}

/* One ZAP request (RFC 27): version, request id, domain, address, routing id, mechanism,
 * credentials. Always answered, so the REP socket stays in step. */
static void on_zap_request(struct lmp_zauth *z) {
    zmq_msg_t f[MAX_FRAMES];
    int       n = 0;
    for (bool more = true; more;) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, z->zap, 0) < 0) {
            zmq_msg_close(&m);
            break;
        }
        more = zmq_msg_more(&m);
        if (n < MAX_FRAMES)
            f[n++] = m;
        else
            zmq_msg_close(&m);
    }
    char addr[64] = "?", mech[32] = "?";
    if (n >= 4) frame_text(&f[3], addr, sizeof(addr));
    if (n >= 6) frame_text(&f[5], mech, sizeof(mech));
    if (n < 6 || !frame_is(&f[0], "1.0")) {
        send_reply(z->zap, n >= 2 ? &f[1] : NULL, "500", "malformed ZAP request", "");
        lmp_log_warn("coordinator: malformed ZAP request (%d frames) refused", n);
        atomic_fetch_add(&z->n_refused, 1);
    } else if (!frame_is(&f[5], "CURVE") || n != 7 || zmq_msg_size(&f[6]) != 32) {
        send_reply(z->zap, &f[1], "400", "CURVE keys required", "");
        atomic_fetch_add(&z->n_refused, 1);
        const uint8_t none[32] = {0};
        uint64_t      quiet    = 0;
        if (should_log(z, none, &quiet))
            lmp_log_warn("coordinator: refused a %s connection from %s: this coordinator requires "
                         "CURVE keys",
                         mech, addr);
    } else {
        const uint8_t                   *raw = zmq_msg_data(&f[6]);
        const struct lmp_authorized_key *k   = lmp_curve_server_find(&z->keys, raw);
        if (k) {
            char user[LMP_KEY_NAME_MAX + 16];
            snprintf(user, sizeof(user), "%s:%s", lmp_peer_name(k->role), k->name);
            send_reply(z->zap, &f[1], "200", "OK", user);
            atomic_fetch_add(&z->n_accepted, 1);
            lmp_log_info("coordinator: key '%s' (%s) connected from %s", k->name,
                         lmp_peer_name(k->role), addr);
        } else {
            send_reply(z->zap, &f[1], "400", "key not authorized", "");
            atomic_fetch_add(&z->n_refused, 1);
            char z85[LMP_KEY_Z85_LEN + 1] = "?";
            zmq_z85_encode(z85, raw, 32);
            uint64_t quiet = 0;
            if (should_log(z, raw, &quiet))
                lmp_log_warn("coordinator: refused key '%.10s...' from %s: not in the workers/ or "
                             "clients/ key directory%s",
                             z85, addr, quiet ? " (refused again since, not logged)" : "");
        }
    }
    for (int i = 0; i < n; i++) zmq_msg_close(&f[i]);
}

/* One monitor event of the server socket: log handshakes that fail before ZAP. */
static void on_monitor_event(struct lmp_zauth *z) {
    zmq_msg_t f[2];
    int       n = 0;
    for (bool more = true; more;) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, z->mon, 0) < 0) {
            zmq_msg_close(&m);
            break;
        }
        more = zmq_msg_more(&m);
        if (n < 2)
            f[n++] = m;
        else
            zmq_msg_close(&m);
    }
    if (n == 2 && zmq_msg_size(&f[0]) == 6) {
        uint16_t ev;
        uint32_t value;
        memcpy(&ev, zmq_msg_data(&f[0]), 2);
        memcpy(&value, (const uint8_t *)zmq_msg_data(&f[0]) + 2, 4);
        const uint64_t now = now_ms();
        if (ev == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL) {
            const int                kind = value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH ? 0
                                            : value == ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC    ? 1
                                                                                                : 2;
            static const char *const why[3] = {"the peer has no CURVE keys",
                                               "the peer may use a wrong server key",
                                               "protocol error"};
            if (z->proto_logged_ms[kind] == 0 || now - z->proto_logged_ms[kind] >= LOG_EVERY_MS) {
                lmp_log_warn("coordinator: a handshake failed (%s, 0x%08x)%s", why[kind], value,
                             z->proto_quiet[kind] ? "; more since, not logged" : "");
                z->proto_logged_ms[kind] = now, z->proto_quiet[kind] = 0;
            } else {
                z->proto_quiet[kind]++;
            }
        }
    }
    for (int i = 0; i < n; i++) zmq_msg_close(&f[i]);
}

static void *zauth_main(void *arg) {
    struct lmp_zauth *z = arg;
    for (;;) {
        zmq_pollitem_t it[3] = {
            {z->ctl_in, 0, ZMQ_POLLIN, 0}, {z->zap, 0, ZMQ_POLLIN, 0}, {z->mon, 0, ZMQ_POLLIN, 0}};
        int rc = zmq_poll(it, z->mon ? 3 : 2, -1);
        if (rc < 0) {
            if (errno == EINTR) continue;
            lmp_log_error("coordinator: ZAP handler stops: %s", zmq_strerror(errno));
            break;
        }
        if (it[0].revents & ZMQ_POLLIN) break; /* lmp_zauth_stop */
        if (it[1].revents & ZMQ_POLLIN) on_zap_request(z);
        if (z->mon && (it[2].revents & ZMQ_POLLIN)) on_monitor_event(z);
    }
    return NULL;
}

static void close_sockets(struct lmp_zauth *z) {
    void **s[] = {&z->zap, &z->mon, &z->ctl_in, &z->ctl_out};
    for (size_t i = 0; i < sizeof(s) / sizeof(s[0]); i++)
        if (*s[i]) zmq_close(*s[i]), *s[i] = NULL;
}

enum lmp_status lmp_zauth_start(void *zctx, void *server, const struct lmp_curve_server *keys,
                                struct lmp_zauth **out, struct lmp_err *err) {
    assert(zctx && keys && out);
    *out                = NULL;
    struct lmp_zauth *z = calloc(1, sizeof(*z));
    if (z == NULL) return lmp_err_set(err, LMP_ENOMEM, "out of memory");
    enum lmp_status st = LMP_OK;
    z->keys            = *keys;
    z->keys.keys       = NULL;
    if (keys->n_keys) {
        z->keys.keys = malloc(keys->n_keys * sizeof(*keys->keys));
        if (z->keys.keys == NULL) {
            free(z);
            return lmp_err_set(err, LMP_ENOMEM, "out of memory");
        }
        memcpy(z->keys.keys, keys->keys, keys->n_keys * sizeof(*keys->keys));
    }
    char ctl[64], mon[64];
    snprintf(ctl, sizeof(ctl), "inproc://lmp-zauth-ctl-%p", (void *)z);
    snprintf(mon, sizeof(mon), "inproc://lmp-zauth-mon-%p", (void *)z);
    int linger = 0;
    if ((z->zap = zmq_socket(zctx, ZMQ_REP)) == NULL ||
        (z->ctl_in = zmq_socket(zctx, ZMQ_PAIR)) == NULL ||
        (z->ctl_out = zmq_socket(zctx, ZMQ_PAIR)) == NULL) {
        st = lmp_err_set(err, LMP_EIO, "cannot create the ZAP handler's sockets: %s",
                         zmq_strerror(errno));
        goto fail;
    }
    zmq_setsockopt(z->zap, ZMQ_LINGER, &linger, sizeof(linger));
    zmq_setsockopt(z->ctl_in, ZMQ_LINGER, &linger, sizeof(linger));
    zmq_setsockopt(z->ctl_out, ZMQ_LINGER, &linger, sizeof(linger));
    if (zmq_bind(z->zap, "inproc://zeromq.zap.01") != 0) {
        st = lmp_err_set(err, LMP_EIO, "cannot bind the ZAP handler: %s", zmq_strerror(errno));
        goto fail;
    }
    if (zmq_bind(z->ctl_in, ctl) != 0 || zmq_connect(z->ctl_out, ctl) != 0) {
        st = lmp_err_set(err, LMP_EIO, "cannot connect the ZAP handler's pipe: %s",
                         zmq_strerror(errno));
        goto fail;
    }
    if (server) {
        if (zmq_socket_monitor(server, mon, ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL) != 0 ||
            (z->mon = zmq_socket(zctx, ZMQ_PAIR)) == NULL || zmq_connect(z->mon, mon) != 0) {
            st = lmp_err_set(err, LMP_EIO, "cannot monitor the coordinator's socket: %s",
                             zmq_strerror(errno));
            goto fail;
        }
        zmq_setsockopt(z->mon, ZMQ_LINGER, &linger, sizeof(linger));
    }
    if (pthread_create(&z->thread, NULL, zauth_main, z) != 0) {
        st = lmp_err_set(err, LMP_EIO, "cannot start the ZAP handler thread");
        goto fail;
    }
    z->running = true;
    *out       = z;
    return LMP_OK;
fail:
    close_sockets(z);
    lmp_curve_server_release(&z->keys);
    free(z);
    return st;
}

void lmp_zauth_stop(struct lmp_zauth **zp) {
    assert(zp);
    struct lmp_zauth *z = *zp;
    if (z == NULL) return;
    if (z->running) {
        zmq_send(z->ctl_out, "$TERM", 5, 0);
        pthread_join(z->thread, NULL);
    }
    close_sockets(z);
    memset(z->keys.secret_key.z85, 0, sizeof(z->keys.secret_key.z85));
    lmp_curve_server_release(&z->keys);
    free(z);
    *zp = NULL;
}

uint64_t lmp_zauth_n_accepted(const struct lmp_zauth *z) {
    return atomic_load(&((struct lmp_zauth *)z)->n_accepted);
}

uint64_t lmp_zauth_n_refused(const struct lmp_zauth *z) {
    return atomic_load(&((struct lmp_zauth *)z)->n_refused);
}
