/*  zsock - see zsock.h */
#include "proto/zsock.h"

#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "proto/zauth.h" /* defines: LMP_ZAP_DOMAIN */

static enum lmp_status set_opt(void *sock, int opt, const void *val, size_t len, const char *what,
                               struct lmp_err *err) {
    if (zmq_setsockopt(sock, opt, val, len) != 0)
        return lmp_err_set(err, LMP_EIO, "cannot set %s on a socket: %s", what,
                           zmq_strerror(errno));
    return LMP_OK;
}

enum lmp_status lmp_zsock_configure(void *sock, size_t max_frame, int send_timeout_ms,
                                    struct lmp_err *err) {
    assert(sock);
    int    linger = 0, type = 0, one = 1;
    size_t type_len = sizeof(type);
    /* the ROUTER routing-id frame and ZeroMQ framing ride on top of the Envelope */
    int64_t         max_msg = (int64_t)(max_frame ? max_frame : LMP_WIRE_MAX_FRAME) + 1024;
    enum lmp_status st;
    if ((st = set_opt(sock, ZMQ_LINGER, &linger, sizeof(linger), "ZMQ_LINGER", err)) != LMP_OK ||
        (st = set_opt(sock, ZMQ_MAXMSGSIZE, &max_msg, sizeof(max_msg), "ZMQ_MAXMSGSIZE", err)) !=
            LMP_OK ||
        (st = set_opt(sock, ZMQ_SNDTIMEO, &send_timeout_ms, sizeof(send_timeout_ms), "ZMQ_SNDTIMEO",
                      err)) != LMP_OK)
        return st;
    if (zmq_getsockopt(sock, ZMQ_TYPE, &type, &type_len) != 0)
        return lmp_err_set(err, LMP_EIO, "cannot read the socket type: %s", zmq_strerror(errno));
    /* HANDOVER: a peer that reconnects with its routing id (a worker whose connection
     * went bad one way, worker/agent.c) takes it over from its old connection at once,
     * instead of being turned away until the old one is seen to close */
    if (type == ZMQ_ROUTER &&
        (st = set_opt(sock, ZMQ_ROUTER_HANDOVER, &one, sizeof(one), "ZMQ_ROUTER_HANDOVER", err)))
        return st;
    if (type == ZMQ_ROUTER)
        return set_opt(sock, ZMQ_ROUTER_MANDATORY, &one, sizeof(one), "ZMQ_ROUTER_MANDATORY", err);
    return LMP_OK;
}

enum lmp_status lmp_zsock_set_id(void *sock, const char *id, struct lmp_err *err) {
    assert(sock && id);
    size_t n = strlen(id);
    if (n == 0 || n > 255)
        return lmp_err_set(err, LMP_EINVAL, "routing id '%.64s' must be 1 to 255 bytes", id);
    return set_opt(sock, ZMQ_ROUTING_ID, id, n, "ZMQ_ROUTING_ID", err);
}

enum lmp_status lmp_zsock_curve_server(void *sock, const struct lmp_curve_server *s,
                                       struct lmp_err *err) {
    assert(sock && s);
    int             one = 1;
    enum lmp_status st;
    if ((st = set_opt(sock, ZMQ_CURVE_SERVER, &one, sizeof(one), "ZMQ_CURVE_SERVER", err)) ||
        (st = set_opt(sock, ZMQ_CURVE_SECRETKEY, s->secret_key.z85, LMP_KEY_Z85_LEN + 1,
                      "ZMQ_CURVE_SECRETKEY", err)))
        return st;
    return set_opt(sock, ZMQ_ZAP_DOMAIN, LMP_ZAP_DOMAIN, strlen(LMP_ZAP_DOMAIN), "ZMQ_ZAP_DOMAIN",
                   err);
}

static uint64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Read one monitor event: *ev and *value; false if none could be read. */
static bool read_event(void *mon, uint16_t *ev, uint32_t *value) {
    zmq_msg_t m;
    bool      ok = false, more = true;
    for (int i = 0; more; i++) {
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, mon, 0) < 0) {
            zmq_msg_close(&m);
            return false;
        }
        more = zmq_msg_more(&m);
        if (i == 0 && zmq_msg_size(&m) == 6) {
            memcpy(ev, zmq_msg_data(&m), 2);
            memcpy(value, (const uint8_t *)zmq_msg_data(&m) + 2, 4);
            ok = true;
        }
        zmq_msg_close(&m);
    }
    return ok;
}

enum lmp_status lmp_zsock_connect(void *zctx, void *sock, const char *endpoint,
                                  const struct lmp_curve_client *curve, int timeout_ms,
                                  struct lmp_err *err) {
    assert(zctx && sock && endpoint);
    enum lmp_status st = LMP_OK;
    if (curve && ((st = set_opt(sock, ZMQ_CURVE_SERVERKEY, curve->server_key.z85,
                                LMP_KEY_Z85_LEN + 1, "ZMQ_CURVE_SERVERKEY", err)) ||
                  (st = set_opt(sock, ZMQ_CURVE_PUBLICKEY, curve->public_key.z85,
                                LMP_KEY_Z85_LEN + 1, "ZMQ_CURVE_PUBLICKEY", err)) ||
                  (st = set_opt(sock, ZMQ_CURVE_SECRETKEY, curve->secret_key.z85,
                                LMP_KEY_Z85_LEN + 1, "ZMQ_CURVE_SECRETKEY", err))))
        return st;
    /* ZeroMQ fails a refused handshake silently (it just reconnects): watch it */
    char addr[64];
    snprintf(addr, sizeof(addr), "inproc://lmp-zsock-mon-%p", sock);
    const int events = ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH |
                       ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                       ZMQ_EVENT_DISCONNECTED;
    void *mon    = NULL;
    int   linger = 0;
    if (zmq_socket_monitor(sock, addr, events) != 0 || (mon = zmq_socket(zctx, ZMQ_PAIR)) == NULL ||
        zmq_setsockopt(mon, ZMQ_LINGER, &linger, sizeof(linger)) != 0 ||
        zmq_connect(mon, addr) != 0) {
        st = lmp_err_set(err, LMP_EIO, "cannot monitor a socket: %s", zmq_strerror(errno));
        goto out;
    }
    if (zmq_connect(sock, endpoint) != 0) {
        st = lmp_err_set(err, LMP_EIO, "cannot connect to '%s': %s", endpoint, zmq_strerror(errno));
        goto out;
    }
    const uint64_t t0        = mono_ms();
    int            n_dropped = 0;
    for (;;) {
        const uint64_t el = mono_ms() - t0;
        if (el >= (uint64_t)timeout_ms) {
            st = lmp_err_set(err, LMP_EIO,
                             "cannot reach the coordinator at '%s' (no answer in "
                             "%.1fs)",
                             endpoint, timeout_ms / 1000.0);
            break;
        }
        zmq_pollitem_t it = {mon, 0, ZMQ_POLLIN, 0};
        int            rc = zmq_poll(&it, 1, (long)((uint64_t)timeout_ms - el));
        if (rc < 0 && errno == EINTR) {
            st = lmp_err_set(err, LMP_ECANCEL, "interrupted while connecting to '%s'", endpoint);
            break;
        }
        if (rc < 0) {
            st = lmp_err_set(err, LMP_EIO, "cannot poll a socket: %s", zmq_strerror(errno));
            break;
        }
        uint16_t ev    = 0;
        uint32_t value = 0;
        if (rc == 0 || !read_event(mon, &ev, &value)) continue;
        if (ev == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) break;
        if (ev == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) {
            st = lmp_err_set(err, LMP_EPERM,
                             "the coordinator at '%s' refused this key ('%.10s...'): "
                             "it must be in the coordinator's workers/ or clients/ key directory",
                             endpoint, curve ? curve->public_key.z85 : "none");
            break;
        }
        if (ev == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL &&
            value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH) {
            st = lmp_err_set(
                err, LMP_EPERM,
                curve ? "the coordinator at '%s' does not use CURVE keys: connect without them"
                      : "the coordinator at '%s' requires CURVE keys (--key and --server-key, "
                        "or LMPRESS_KEY and LMPRESS_SERVER_KEY)",
                endpoint);
            break;
        }
        if (ev == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL ||
            ev == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL || ev == ZMQ_EVENT_DISCONNECTED)
            n_dropped++; /* ZeroMQ reconnects; a wrong server key looks like this */
        /* an unreachable host never gets this far (no connection, nothing dropped); without
         * keys, a CURVE coordinator closing the connection first can hide the mismatch event */
        if (n_dropped >= 5) {
            st = lmp_err_set(
                err, LMP_EPERM,
                curve ? "the coordinator at '%s' dropped the CURVE handshake %d times: "
                        "is the server key its public key?"
                      : "the coordinator at '%s' requires CURVE keys (it dropped the "
                        "connection %d times; --key and --server-key, or LMPRESS_KEY and "
                        "LMPRESS_SERVER_KEY)",
                endpoint, n_dropped);
            break;
        }
    }
out:
    zmq_socket_monitor(sock, NULL, 0);
    if (mon) zmq_close(mon);
    return st;
}

static void free_frame(void *data, void *hint) {
    (void)hint;
    free(data);
}

/* Sends the routing id (ROUTER) and then takes ownership of buf (freed in every case). */
static enum lmp_status send_owned(void *sock, const struct lmp_zpeer *to, uint8_t *buf, size_t len,
                                  const char *peer, struct lmp_err *err) {
    zmq_msg_t m;
    if (to && zmq_send(sock, to->id, to->id_len, ZMQ_SNDMORE) < 0) {
        free(buf);
        goto fail;
    }
    if (zmq_msg_init_data(&m, buf, len, free_frame, NULL) != 0) {
        free(buf);
        return lmp_err_set(err, LMP_ENOMEM, "out of memory sending to peer '%s'", peer);
    }
    if (zmq_msg_send(&m, sock, 0) < 0) {
        int e = errno;
        zmq_msg_close(&m); /* still ours after a failed send: frees buf */
        errno = e;
        goto fail;
    }
    return LMP_OK;
fail:
    if (errno == EHOSTUNREACH) return lmp_err_set(err, LMP_EIO, "peer '%s' is gone", peer);
    if (errno == EAGAIN) return lmp_err_set(err, LMP_EIO, "timed out sending to peer '%s'", peer);
    return lmp_err_set(err, LMP_EIO, "cannot send to peer '%s': %s", peer, zmq_strerror(errno));
}

enum lmp_status lmp_zsock_send(void *sock, const struct lmp_zpeer *to, const Lmp__Envelope *env,
                               const char *peer, struct lmp_err *err) {
    assert(sock && env);
    if (peer == NULL) peer = to ? to->name : "coordinator";
    uint8_t        *buf = NULL;
    size_t          len = 0;
    enum lmp_status st  = lmp_wire_pack(env, &buf, &len, err);
    if (st != LMP_OK) return st;
    return send_owned(sock, to, buf, len, peer, err);
}

enum lmp_status lmp_zsock_send_frame(void *sock, const struct lmp_zpeer *to, const uint8_t *frame,
                                     size_t len, const char *peer, struct lmp_err *err) {
    assert(sock && (frame || len == 0));
    if (peer == NULL) peer = to ? to->name : "coordinator";
    uint8_t *buf = malloc(len ? len : 1);
    if (buf == NULL)
        return lmp_err_set(err, LMP_ENOMEM, "out of memory sending to peer '%s'", peer);
    if (len) memcpy(buf, frame, len);
    return send_owned(sock, to, buf, len, peer, err);
}

static void peer_from_id(struct lmp_zpeer *p, const uint8_t *id, size_t n) {
    bool text = n > 0;
    p->id_len = n;
    memcpy(p->id, id, n);
    for (size_t i = 0; i < n; i++)
        if (id[i] < 0x21 || id[i] > 0x7e) text = false;
    if (text) {
        snprintf(p->name, sizeof(p->name), "%.*s",
                 (int)(n < sizeof(p->name) - 1 ? n : sizeof(p->name) - 1), (const char *)id);
        return;
    }
    size_t o = (size_t)snprintf(p->name, sizeof(p->name), "0x");
    for (size_t i = 0; i < n && o + 3 < sizeof(p->name); i++)
        o += (size_t)snprintf(p->name + o, sizeof(p->name) - o, "%02x", id[i]);
}

/* The ZAP User-Id and the peer address of a received frame (ZeroMQ message properties). */
static void peer_auth(struct lmp_zpeer *p, zmq_msg_t *m) {
    const char *u = zmq_msg_gets(m, "User-Id"), *a = zmq_msg_gets(m, "Peer-Address");
    snprintf(p->user, sizeof(p->user), "%s", u ? u : "");
    snprintf(p->addr, sizeof(p->addr), "%s", a ? a : "");
}

/* A CURVE peer's key has a role ("worker:NAME"): a Hello must claim it, and the body must
 * be one that role may send. */
static enum lmp_status check_key_role(const struct lmp_zpeer *p, const Lmp__Envelope *env,
                                      struct lmp_err *err) {
    const char   *colon = strchr(p->user, ':');
    const size_t  n     = colon ? (size_t)(colon - p->user) : strlen(p->user);
    const char   *key   = colon ? colon + 1 : p->user;
    enum lmp_peer role  = 0;
    if (n == 6 && strncmp(p->user, "worker", 6) == 0)
        role = LMP_PEER_WORKER;
    else if (n == 3 && strncmp(p->user, "cli", 3) == 0)
        role = LMP_PEER_CLI;
    if (role == 0)
        return lmp_err_set(err, LMP_EPERM, "peer '%s' (%s) has an unknown key role '%s'", p->name,
                           p->addr[0] ? p->addr : "?", p->user);
    if (env->body_case == LMP__ENVELOPE__BODY_HELLO) {
        const enum lmp_peer claimed = lmp_peer_of_role(env->hello->role);
        if (claimed != role)
            return lmp_err_set(err, LMP_EPERM,
                               "key '%s' is a %s key: peer '%s' (%s) may not join "
                               "as a %s",
                               key, role == LMP_PEER_WORKER ? "worker" : "client", p->name,
                               p->addr[0] ? p->addr : "?",
                               claimed == LMP_PEER_WORKER ? "worker"
                               : claimed == LMP_PEER_CLI  ? "client"
                                                          : "peer of no role");
        return LMP_OK;
    }
    const struct lmp_wire_kind *k = lmp_wire_kind_of(env->body_case);
    if (k == NULL || (k->from & role) == 0)
        return lmp_err_set(err, LMP_EPERM, "key '%s' is a %s key: peer '%s' (%s) may not send %s",
                           key, role == LMP_PEER_WORKER ? "worker" : "client", p->name,
                           p->addr[0] ? p->addr : "?", lmp_wire_body_name(env->body_case));
    return LMP_OK;
}

enum lmp_status lmp_zsock_recv(void *sock, int timeout_ms, size_t max_frame, struct lmp_zpeer *from,
                               const char *peer, Lmp__Envelope **env, struct lmp_err *err) {
    assert(sock && env);
    *env              = NULL;
    zmq_pollitem_t it = {.socket = sock, .events = ZMQ_POLLIN};
    int            rc = zmq_poll(&it, 1, timeout_ms);
    if (rc < 0 && errno == EINTR) return LMP_OK; /* like a timeout: the caller checks its flags */
    if (rc < 0) return lmp_err_set(err, LMP_EIO, "cannot poll a socket: %s", zmq_strerror(errno));
    if (rc == 0) return LMP_OK;

    /* all frames of a ZeroMQ message arrive together: drain them, keep the first two */
    zmq_msg_t       parts[2];
    size_t          n_parts = 0;
    bool            more    = true;
    enum lmp_status st      = LMP_OK;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, sock, n_parts == 0 ? ZMQ_DONTWAIT : 0) < 0) {
            int e = errno;
            zmq_msg_close(&m);
            if (n_parts == 0 && e == EAGAIN) return LMP_OK; /* raced away: a timeout */
            st = lmp_err_set(err, LMP_EIO, "cannot receive from a socket: %s", zmq_strerror(e));
            goto out;
        }
        more = zmq_msg_more(&m);
        if (n_parts < 2)
            parts[n_parts] = m;
        else
            zmq_msg_close(&m);
        n_parts++;
    }

    size_t      want = from ? 2 : 1;
    const char *name = peer;
    if (from) {
        size_t n = zmq_msg_size(&parts[0]);
        peer_from_id(from, zmq_msg_data(&parts[0]), n > sizeof(from->id) ? sizeof(from->id) : n);
        if (name == NULL) name = from->name;
    }
    if (name == NULL) name = "coordinator";
    if (n_parts != want) {
        st = lmp_err_set(err, LMP_EPROTO, "message of %zu frames from peer '%s' (expected %zu)",
                         from ? n_parts - 1 : n_parts, name, (size_t)1);
        goto out;
    }
    zmq_msg_t *payload = &parts[want - 1];
    if (from) peer_auth(from, payload);
    st = lmp_wire_unpack(zmq_msg_data(payload), zmq_msg_size(payload), max_frame, name, env, err);
    if (st == LMP_OK && from && from->user[0] && (st = check_key_role(from, *env, err)) != LMP_OK)
        lmp_wire_free(env);
out:
    for (size_t i = 0; i < n_parts && i < 2; i++) zmq_msg_close(&parts[i]);
    return st;
}
