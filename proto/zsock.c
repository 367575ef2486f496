/*  zsock - see zsock.h */
#include "proto/zsock.h"

#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

static enum lmp_status set_opt(void *sock, int opt, const void *val, size_t len, const char *what,
                               struct lmp_err *err) {
    if (zmq_setsockopt(sock, opt, val, len) != 0)
        return lmp_err_set(err, LMP_EIO, "cannot set %s on a socket: %s", what, zmq_strerror(errno));
    return LMP_OK;
}

enum lmp_status lmp_zsock_configure(void *sock, size_t max_frame, int send_timeout_ms,
                                    struct lmp_err *err) {
    assert(sock);
    int       linger = 0, type = 0, one = 1;
    size_t    type_len = sizeof(type);
    /* the ROUTER routing-id frame and ZeroMQ framing ride on top of the Envelope */
    int64_t   max_msg = (int64_t) (max_frame ? max_frame : LMP_WIRE_MAX_FRAME) + 1024;
    enum lmp_status st;
    if ((st = set_opt(sock, ZMQ_LINGER, &linger, sizeof(linger), "ZMQ_LINGER", err)) != LMP_OK ||
        (st = set_opt(sock, ZMQ_MAXMSGSIZE, &max_msg, sizeof(max_msg), "ZMQ_MAXMSGSIZE", err)) != LMP_OK ||
        (st = set_opt(sock, ZMQ_SNDTIMEO, &send_timeout_ms, sizeof(send_timeout_ms), "ZMQ_SNDTIMEO", err)) != LMP_OK)
        return st;
    if (zmq_getsockopt(sock, ZMQ_TYPE, &type, &type_len) != 0)
        return lmp_err_set(err, LMP_EIO, "cannot read the socket type: %s", zmq_strerror(errno));
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

static void free_frame(void *data, void *hint) {
    (void) hint;
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
        zmq_msg_close(&m);                        /* still ours after a failed send: frees buf */
        errno = e;
        goto fail;
    }
    return LMP_OK;
fail:
    if (errno == EHOSTUNREACH)
        return lmp_err_set(err, LMP_EIO, "peer '%s' is gone", peer);
    if (errno == EAGAIN)
        return lmp_err_set(err, LMP_EIO, "timed out sending to peer '%s'", peer);
    return lmp_err_set(err, LMP_EIO, "cannot send to peer '%s': %s", peer, zmq_strerror(errno));
}

enum lmp_status lmp_zsock_send(void *sock, const struct lmp_zpeer *to, const Lmp__Envelope *env,
                               const char *peer, struct lmp_err *err) {
    assert(sock && env);
    if (peer == NULL) peer = to ? to->name : "coordinator";
    uint8_t *buf = NULL;
    size_t   len = 0;
    enum lmp_status st = lmp_wire_pack(env, &buf, &len, err);
    if (st != LMP_OK) return st;
    return send_owned(sock, to, buf, len, peer, err);
}

enum lmp_status lmp_zsock_send_frame(void *sock, const struct lmp_zpeer *to, const uint8_t *frame,
                                     size_t len, const char *peer, struct lmp_err *err) {
    assert(sock && (frame || len == 0));
    if (peer == NULL) peer = to ? to->name : "coordinator";
    uint8_t *buf = malloc(len ? len : 1);
    if (buf == NULL) return lmp_err_set(err, LMP_ENOMEM, "out of memory sending to peer '%s'", peer);
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
        snprintf(p->name, sizeof(p->name), "%.*s", (int) (n < sizeof(p->name) - 1 ? n : sizeof(p->name) - 1),
                 (const char *) id);
        return;
    }
    size_t o = (size_t) snprintf(p->name, sizeof(p->name), "0x");
    for (size_t i = 0; i < n && o + 3 < sizeof(p->name); i++)
        o += (size_t) snprintf(p->name + o, sizeof(p->name) - o, "%02x", id[i]);
}

enum lmp_status lmp_zsock_recv(void *sock, int timeout_ms, size_t max_frame, struct lmp_zpeer *from,
                               const char *peer, Lmp__Envelope **env, struct lmp_err *err) {
    assert(sock && env);
    *env = NULL;
    zmq_pollitem_t it = { .socket = sock, .events = ZMQ_POLLIN };
    int rc = zmq_poll(&it, 1, timeout_ms);
    if (rc < 0 && errno == EINTR) return LMP_OK;  /* like a timeout: the caller checks its flags */
    if (rc < 0) return lmp_err_set(err, LMP_EIO, "cannot poll a socket: %s", zmq_strerror(errno));
    if (rc == 0) return LMP_OK;

    /* all frames of a ZeroMQ message arrive together: drain them, keep the first two */
    zmq_msg_t parts[2];
    size_t    n_parts = 0;
    bool      more = true;
    enum lmp_status st = LMP_OK;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, sock, n_parts == 0 ? ZMQ_DONTWAIT : 0) < 0) {
            int e = errno;
            zmq_msg_close(&m);
            if (n_parts == 0 && e == EAGAIN) return LMP_OK;   /* raced away: a timeout */
            st = lmp_err_set(err, LMP_EIO, "cannot receive from a socket: %s", zmq_strerror(e));
            goto out;
        }
        more = zmq_msg_more(&m);
        if (n_parts < 2) parts[n_parts] = m;
        else zmq_msg_close(&m);
        n_parts++;
    }

    size_t want = from ? 2 : 1;
    const char *name = peer;
    if (from) {
        size_t n = zmq_msg_size(&parts[0]);
        peer_from_id(from, zmq_msg_data(&parts[0]), n > sizeof(from->id) ? sizeof(from->id) : n);
        if (name == NULL) name = from->name;
    }
    if (name == NULL) name = "coordinator";
    if (n_parts != want) {
        st = lmp_err_set(err, LMP_EPROTO, "message of %zu frames from peer '%s' (expected %zu)",
                         from ? n_parts - 1 : n_parts, name, (size_t) 1);
        goto out;
    }
    zmq_msg_t *payload = &parts[want - 1];
    st = lmp_wire_unpack(zmq_msg_data(payload), zmq_msg_size(payload), max_frame, name, env, err);
out:
    for (size_t i = 0; i < n_parts && i < 2; i++) zmq_msg_close(&parts[i]);
    return st;
}
