/*  wire - frame <-> Envelope: version check, size limits, sender permissions, validation
 *
 *  Every frame between the coordinator, a worker and the CLI is one lmp.Envelope
 *  (proto/lmpress.proto) serialized by protobuf-c. A received frame goes through, in order:
 *
 *    1. size: empty or larger than the caller's max_frame          -> LMP_EPROTO
 *    2. a scan of the top-level fields (no allocation): the frame must be well-formed
 *       protobuf at the top level and carry Envelope.version       -> LMP_EPROTO
 *    3. version != LMP_PROTO_VERSION                                -> LMP_EVERSION
 *       ("peer 'w1' speaks protocol 2, this is 1"; if the frame is an Error, its text
 *       is quoted, which is how a refused peer learns why)
 *    4. body kind unknown or absent                                 -> LMP_EPROTO
 *    5. frame larger than the limit of its body kind                -> LMP_EPROTO
 *    6. protobuf-c unpack under a memory budget (2 x frame + 16 MiB) -> LMP_EPROTO
 *    7. lmp_wire_validate(): enums the receiver acts on are known, tensors' byte counts
 *       match dtype x shape, codes index existing codebook entries, ranges are ordered
 *                                                                   -> LMP_EPROTO
 *
 *  Which role may send which body is a separate check (lmp_wire_check_sender), because
 *  only the receiver's session knows the sender's role (from its Hello).
 *
 *  Calling sequence, receiver:
 *
 *      Lmp__Envelope *env = NULL;
 *      st = lmp_wire_unpack(buf, len, max_frame, peer, &env, &err);   // owns env on LMP_OK
 *      if (st == LMP_OK) st = lmp_wire_check_sender(env, role_of_peer, peer, &err);
 *      ... use env->body_case / env->task_result ...
 *      lmp_wire_free(&env);
 *
 *  Sender: fill an Envelope with lmp_wire_init() (or a helper below) and a body struct on
 *  the stack (pointers borrowed), then lmp_wire_pack(). Pack runs the same validation, so a
 *  frame the receiver would refuse never leaves.
 *
 *  All functions are thread-safe (no global mutable state).
 */
#ifndef LMP_PROTO_WIRE_H
#define LMP_PROTO_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/lmpress.pb-c.h" /* defines: Lmp__Envelope and every body (generated) */
#include "base/status.h"        /* defines: enum lmp_status, struct lmp_err */

/* Protocol version. MAJOR goes in every Envelope and must match exactly; MINOR counts
 * compatible additions (new fields receivers may ignore) and is informational.
 * Every change to proto/lmpress.proto changes LMP_PROTO_SCHEMA_DIGEST and must bump one
 * of them (tests/proto/test_wire.c fails otherwise; docs/protocol.md, "Versioning"). */
#define LMP_PROTO_VERSION       1u
#define LMP_PROTO_MINOR         11u
#define LMP_PROTO_SCHEMA_DIGEST 0xb25529cc996ba124ull

/* Size limits (bytes). A frame larger than the receiver's max_frame is refused before it
 * is parsed; each body kind also has its own limit (struct lmp_wire_kind.max_frame):
 * results and task inputs may be large, control messages may not. */
#define LMP_WIRE_MAX_FRAME   ((size_t)256 << 20) /* TaskAssign, TaskResult */
#define LMP_WIRE_MAX_LOG     ((size_t)4 << 20)   /* LogChunk */
#define LMP_WIRE_MAX_STATUS  ((size_t)16 << 20)  /* JobStatus, WorkerList */
#define LMP_WIRE_MAX_CONTROL ((size_t)1 << 20)   /* everything else */
#define LMP_WIRE_MEM_SLACK   ((size_t)16 << 20)  /* unpack memory budget = 2 x frame + this */
#define LMP_WIRE_MAX_DIMS    8                   /* Tensor.shape */

/* Roles as a bit mask (a body may be sent by several roles). */
enum lmp_peer {
    LMP_PEER_CLI         = 1,
    LMP_PEER_WORKER      = 2,
    LMP_PEER_COORDINATOR = 4,
    LMP_PEER_ANY         = 7,
};

/* One row of the permission table: body kind, who sends it, who receives it, its limit. */
struct lmp_wire_kind {
    Lmp__Envelope__BodyCase body;
    const char             *name;      /* "TaskResult" */
    unsigned                from;      /* enum lmp_peer mask */
    unsigned                to;        /* enum lmp_peer mask */
    size_t                  max_frame; /* bytes */
};

/* The table, in field-number order; *n gets its length. */
const struct lmp_wire_kind *lmp_wire_kinds(size_t *n);

/* The row of body, or NULL for LMP__ENVELOPE__BODY__NOT_SET and unknown values. */
const struct lmp_wire_kind *lmp_wire_kind_of(Lmp__Envelope__BodyCase body);

/* "TaskResult", or "none" / "unknown". */
const char *lmp_wire_body_name(Lmp__Envelope__BodyCase body);

/* LMP_PEER_* of a Hello role, 0 for ROLE_UNSPECIFIED and unknown values. */
enum lmp_peer lmp_peer_of_role(Lmp__Role role);

/* "cli", "worker", "coordinator", or "unknown" (for masks with several bits). */
const char *lmp_peer_name(enum lmp_peer peer);

/* Bytes per element of dtype, 0 if unknown. */
size_t lmp_dtype_size(Lmp__DType dtype);

/* Parse a stable status name ("EIO") as sent in Error.code. RET true if known. */
bool lmp_status_from_name(const char *name, enum lmp_status *st);

/* ---- building envelopes (all pointers are borrowed until the envelope is packed) ---- */

/* Reset env to an empty Envelope of this protocol version. */
void lmp_wire_init(Lmp__Envelope *env, uint64_t seq, uint64_t reply_to);

/* env := Error { code: lmp_status_str(code), message: msg } in body (caller's storage). */
void lmp_wire_error_init(Lmp__Envelope *env, Lmp__Error *body, uint64_t seq, uint64_t reply_to,
                         enum lmp_status code, const char *msg);

/* env := Hello { this version, digest and LMP_VERSION, role, name, caps (may be NULL) }. */
void lmp_wire_hello_init(Lmp__Envelope *env, Lmp__Hello *body, uint64_t seq, Lmp__Role role,
                         const char *name, Lmp__Capabilities *caps);

/* env := HelloAck { this version, digest and LMP_VERSION, name, peer_id, heartbeats,
 * max_frame }. */
void lmp_wire_hello_ack_init(Lmp__Envelope *env, Lmp__HelloAck *body, uint64_t seq,
                             uint64_t reply_to, const char *name, const char *peer_id,
                             uint32_t heartbeat_ms, uint32_t heartbeat_timeout_ms,
                             uint64_t max_frame);

/* t := Tensor { name, dtype, shape[0..n_dims), data[0..n_bytes) }, all borrowed. */
void lmp_wire_tensor_init(Lmp__Tensor *t, const char *name, Lmp__DType dtype, const uint64_t *shape,
                          size_t n_dims, const void *data, size_t n_bytes);

/* ---- frames ---- */

/* Serialize env into a new buffer *out of *out_len bytes (caller frees it with free()).
 * RET LMP_OK; LMP_EINVAL if env is not this version, has no body, fails
 * lmp_wire_validate() or exceeds its body kind's limit; LMP_ENOMEM. */
enum lmp_status lmp_wire_pack(const Lmp__Envelope *env, uint8_t **out, size_t *out_len,
                              struct lmp_err *err);

/* Parse and check one frame of len bytes (borrowed) received from peer (a name used in
 * messages). max_frame 0 means LMP_WIRE_MAX_FRAME. On LMP_OK *env is a new Envelope the
 * caller releases with lmp_wire_free(); on failure *env is NULL and err says why, naming
 * the peer. RET LMP_OK, LMP_EPROTO, LMP_EVERSION (see the file header) or LMP_ENOMEM. */
enum lmp_status lmp_wire_unpack(const uint8_t *data, size_t len, size_t max_frame, const char *peer,
                                Lmp__Envelope **env, struct lmp_err *err);

/* Free an Envelope from lmp_wire_unpack and set *env to NULL; safe on NULL. */
void lmp_wire_free(Lmp__Envelope **env);

/* LMP_OK if a peer of role from may send env's body (the table above), else LMP_EPROTO
 * ("worker 'w1' may not send JobSubmit"). */
enum lmp_status lmp_wire_check_sender(const Lmp__Envelope *env, enum lmp_peer from,
                                      const char *peer, struct lmp_err *err);

/* Semantic checks on a parsed or hand-built envelope (see the file header, step 7).
 * RET LMP_OK or LMP_EPROTO naming the peer and the field. */
enum lmp_status lmp_wire_validate(const Lmp__Envelope *env, const char *peer, struct lmp_err *err);

/* ---- schema identity ---- */

/* FNV-1a 64 of lmp_proto_schema_text(): changes with any wire-visible change of
 * lmpress.proto (a field's number, name, type, label, packing or oneof, a message or
 * enum name, an enum value), not with comments or formatting. */
uint64_t lmp_proto_schema_digest(void);

/* Write the canonical description of the schema (one line per message, field, enum and
 * value, reachable from Envelope) into buf (cap bytes, NUL-terminated when cap > 0).
 * RET its length, as snprintf. */
size_t lmp_proto_schema_text(char *buf, size_t cap);

#endif /* LMP_PROTO_WIRE_H */
