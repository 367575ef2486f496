/*  zsock - one Envelope per ZeroMQ message, over ROUTER (coordinator) and DEALER (peers)
 *
 *  A DEALER sends and receives single-frame messages: [frame]. A ROUTER sees the
 *  routing id in front: [id][frame]. Anything else (an empty delimiter, extra frames)
 *  is refused as LMP_EPROTO after the whole message has been drained, so one bad
 *  peer cannot desynchronize the socket.
 *
 *  Calling sequence (coordinator side):
 *
 *      void *s = zmq_socket(ctx, ZMQ_ROUTER);
 *      lmp_zsock_configure(s, LMP_WIRE_MAX_FRAME, 5000, &err);  // linger 0, limits
 *      zmq_bind(s, "tcp://0.0.0.0:7000");
 *      struct lmp_zpeer from;
 *      Lmp__Envelope *env;
 *      st = lmp_zsock_recv(s, 1000, 0, &from, NULL, &env, &err);   // env NULL: timed out
 *      ... lmp_zsock_send(s, &from, &reply, &err) ...
 *      lmp_wire_free(&env);
 *
 *  Peer side: lmp_zsock_connect() instead of zmq_connect(), with CURVE keys or NULL; it
 *  waits for ZeroMQ's handshake, so a refused key is an error at once instead of silence.
 *
 *  CURVE (proto/keys.h, proto/zauth.h): on a server whose ZAP handler accepted the peer's
 *  key, every message carries the key's role (lmp_zpeer.user). lmp_zsock_recv binds it:
 *  a Hello must claim the key's role, and every body must be one that role may send
 *  (lmp_wire_check_sender); otherwise LMP_EPERM, with a message naming the key and peer.
 *
 *  Sockets are not thread-safe; neither are these calls on one socket.
 */
#ifndef LMP_PROTO_ZSOCK_H
#define LMP_PROTO_ZSOCK_H

#include <stddef.h>
#include <stdint.h>

#include "proto/keys.h" /* defines: struct lmp_curve_client, lmp_curve_server */
#include "proto/wire.h" /* defines: Lmp__Envelope, lmp_wire_* */

/* The sender of a message on a ROUTER socket. */
struct lmp_zpeer {
    size_t  id_len;
    uint8_t id[255];   /* ZeroMQ routing id (at most 255 bytes) */
    char    name[128]; /* printable form for messages: the id if it is text, else hex */
    char    user[LMP_KEY_NAME_MAX +
              16]; /* CURVE peers: "worker:NAME" / "cli:NAME" (ZAP User-Id), else "" */
    char    addr[64]; /* the peer's IP address where known, else "" */
};

/* ZMQ_LINGER 0 (close never blocks), ZMQ_MAXMSGSIZE max_frame + 1 KiB (0 =
 * LMP_WIRE_MAX_FRAME: ZeroMQ drops bigger messages before they are buffered),
 * ZMQ_SNDTIMEO send_timeout_ms (-1 = block), and ZMQ_ROUTER_MANDATORY on ROUTER sockets
 * (sending to a gone peer fails instead of vanishing). RET LMP_OK or LMP_EIO. */
enum lmp_status lmp_zsock_configure(void *sock, size_t max_frame, int send_timeout_ms,
                                    struct lmp_err *err);

/* Make sock a CURVE server with s's key pair and the ZAP domain of proto/zauth.h (before
 * bind). RET LMP_OK or LMP_EIO. */
enum lmp_status lmp_zsock_curve_server(void *sock, const struct lmp_curve_server *s,
                                       struct lmp_err *err);

/* Connect sock (a DEALER of zctx, configured, not yet connected) to endpoint, as a CURVE
 * client of curve (NULL: no encryption), and wait up to timeout_ms for ZeroMQ's handshake.
 * RET LMP_OK (connected; send Hello next), LMP_EIO ("cannot reach the coordinator at ..."),
 * LMP_EPERM (the coordinator refused this key, requires keys, or does not use them; the
 * message says which), LMP_ECANCEL (a signal interrupted the wait). */
enum lmp_status lmp_zsock_connect(void *zctx, void *sock, const char *endpoint,
                                  const struct lmp_curve_client *curve, int timeout_ms,
                                  struct lmp_err *err);

/* Set the routing id a DEALER presents to the ROUTER (before connect). RET LMP_OK, LMP_EINVAL
 * (empty or longer than 255 bytes) or LMP_EIO. */
enum lmp_status lmp_zsock_set_id(void *sock, const char *id, struct lmp_err *err);

/* Pack env and send it; to is the ROUTER destination, NULL on a DEALER. peer names the
 * destination in messages (NULL: to->name). RET LMP_OK, LMP_EINVAL (see lmp_wire_pack),
 * LMP_ENOMEM, or LMP_EIO (timeout, peer gone, socket closed). */
enum lmp_status lmp_zsock_send(void *sock, const struct lmp_zpeer *to, const Lmp__Envelope *env,
                               const char *peer, struct lmp_err *err);

/* Send an already packed frame (for relaying, or tests that speak another version). */
enum lmp_status lmp_zsock_send_frame(void *sock, const struct lmp_zpeer *to, const uint8_t *frame,
                                     size_t len, const char *peer, struct lmp_err *err);

/* Wait up to timeout_ms (-1 = forever) for one message and unpack it (lmp_wire_unpack
 * with max_frame, 0 = default). from: filled on a ROUTER (the sender), NULL on a DEALER.
 * peer names the sender in messages (NULL: from->name, or "coordinator").
 * RET LMP_OK with *env set (free with lmp_wire_free), LMP_OK with *env NULL on timeout,
 * LMP_EPROTO / LMP_EVERSION / LMP_EPERM (the message was consumed; from is still filled so
 * the caller can answer with an Error), LMP_ENOMEM, or LMP_EIO. */
enum lmp_status lmp_zsock_recv(void *sock, int timeout_ms, size_t max_frame, struct lmp_zpeer *from,
                               const char *peer, Lmp__Envelope **env, struct lmp_err *err);

#endif /* LMP_PROTO_ZSOCK_H */
