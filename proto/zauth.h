/*  zauth - the coordinator's ZAP handler: which CURVE keys may connect, and as what
 *
 *  ZeroMQ asks a ZAP handler (RFC 27, a REP socket at inproc://zeromq.zap.01 in the
 *  server socket's context) about every CURVE handshake. This one runs in a thread of
 *  its own and answers from a copy of the coordinator's key list (proto/keys.h):
 *
 *    key listed       200, User-Id "worker:NAME" or "cli:NAME"; every message of that
 *                     connection carries the User-Id, and lmp_zsock_recv binds the peer's
 *                     role to it (a worker key cannot say Hello as a client, nor send
 *                     JobSubmit / JobCancel; a client key cannot join as a worker)
 *    key not listed   400; the peer's handshake fails (it sees
 *                     ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) and nothing it sends is delivered
 *    not CURVE        400 (a NULL or PLAIN client never gets in)
 *
 *  Refusals are logged (warn) with the key's first 10 Z85 characters and the peer's
 *  address, at most once per key every 10 s (a refused peer reconnects every 100 ms).
 *  The thread also watches the server socket's monitor, to log handshakes that fail
 *  before ZAP is asked (a peer using a wrong server key, or no key at all).
 *
 *  Calling sequence (before the server socket binds, in the same context):
 *      struct lmp_zauth *z;
 *      st = lmp_zauth_start(zctx, router, &curve_server, &z, &err);
 *      lmp_zsock_curve_server(router, &curve_server, &err); zmq_bind(router, ...);
 *      ...
 *      zmq_close(router);
 *      lmp_zauth_stop(&z);          // before zmq_ctx_term
 */
#ifndef LMP_PROTO_ZAUTH_H
#define LMP_PROTO_ZAUTH_H

#include <stdint.h>

#include "proto/keys.h" /* defines: struct lmp_curve_server */

#define LMP_ZAP_DOMAIN "lmpress"

struct lmp_zauth;

/* Bind the ZAP endpoint in zctx and start the thread. keys is copied. server (may be NULL)
 * is the socket whose failed handshakes are logged. RET LMP_OK, LMP_EIO (another ZAP
 * handler is bound in zctx, or a socket/thread could not be created), LMP_ENOMEM. */
enum lmp_status lmp_zauth_start(void *zctx, void *server, const struct lmp_curve_server *keys,
                                struct lmp_zauth **out, struct lmp_err *err);

/* Stop the thread, close its sockets and free *z (NULL afterwards); safe on NULL. */
void lmp_zauth_stop(struct lmp_zauth **z);

/* Handshakes accepted / refused so far (for tests and status). */
uint64_t lmp_zauth_n_accepted(const struct lmp_zauth *z);
uint64_t lmp_zauth_n_refused(const struct lmp_zauth *z);

#endif /* LMP_PROTO_ZAUTH_H */
