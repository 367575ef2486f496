/*  client - a CLI's session with the coordinator: Hello, then request / reply
 *
 *  Calling sequence:
 *      struct lmp_client *cl;
 *      st = lmp_client_connect("tcp://127.0.0.1:7070", 5000, &cl, &err);
 *          // LMP_EIO "cannot reach the coordinator at '...'" when no HelloAck comes
 *      Lmp__Envelope req; lmp_wire_init(&req, 0, 0); req.body_case = ...; req.job_query = &q;
 *      Lmp__Envelope *rep;
 *      st = lmp_client_call(cl, &req, &rep, &err);   // an Error reply becomes its status
 *      ... rep->job_status ...
 *      lmp_wire_free(&rep);
 *      lmp_client_close(&cl);
 *  Not thread-safe.
 */
#ifndef LMP_PROTO_CLIENT_H
#define LMP_PROTO_CLIENT_H

#include "proto/keys.h" /* defines: struct lmp_curve_client */
#include "proto/wire.h" /* defines: Lmp__Envelope */

struct lmp_client;

/* Connect a DEALER to endpoint and do the handshake within timeout_ms.
 * RET LMP_OK, LMP_EIO (unreachable: no answer in time), LMP_EVERSION (refused). */
enum lmp_status lmp_client_connect(const char *endpoint, int timeout_ms, struct lmp_client **out,
                                   struct lmp_err *err);

/* The same as a CURVE client of curve (NULL: none). Also LMP_EPERM: the coordinator
 * refused the key (not authorized, or a worker's key), requires keys, or does not use
 * them; the message says which. */
enum lmp_status lmp_client_connect_curve(const char *endpoint, int timeout_ms,
                                         const struct lmp_curve_client *curve,
                                         struct lmp_client **out, struct lmp_err *err);

/* Send req (seq is set here) and wait for the reply to it (other messages are skipped).
 * An Error reply returns its code with its message in err. LMP_EIO on timeout. */
enum lmp_status lmp_client_call(struct lmp_client *cl, Lmp__Envelope *req, Lmp__Envelope **reply,
                                struct lmp_err *err);

void lmp_client_close(struct lmp_client **cl);

#endif /* LMP_PROTO_CLIENT_H */
