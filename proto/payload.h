/*  payload - the names of task inputs and result tensors (proto/lmpress.proto, enum Payload)
 *
 *  The coordinator and the worker name what a TaskAssign carries (Blob.name) and what a
 *  TaskResult returns (Tensor.name) only through this table, so the names live with the
 *  protocol and its schema digest versions them (lmp_proto_schema_text lists them).
 */
#ifndef LMP_PROTO_PAYLOAD_H
#define LMP_PROTO_PAYLOAD_H

#include <stddef.h>

#include "proto/lmpress.pb-c.h" /* defines: Lmp__Payload (generated) */

/* The wire string of p ("gram", "q/", ...); "" for PAYLOAD_UNSPECIFIED or an unknown value. */
const char *lmp_payload_name(Lmp__Payload p);

/* buf := PREFIX NAME "/" PART, e.g. "q/<layer>/codes" (prefix: PAYLOAD_SHIPPED or
 * PAYLOAD_HELD; part: PAYLOAD_CODES, _CODEBOOKS or _SCALES), or PREFIX NAME when part is
 * PAYLOAD_UNSPECIFIED. Returns buf (truncated to n - 1 characters if need be). */
char *lmp_payload_layer(char *buf, size_t n, Lmp__Payload prefix, const char *name,
                        Lmp__Payload part);

#endif /* LMP_PROTO_PAYLOAD_H */
