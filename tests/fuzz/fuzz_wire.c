/*  fuzz_wire - libFuzzer target for lmp_wire_unpack
 *
 *  Unpacks the input as a frame from a peer. An accepted envelope is then walked: every
 *  field of every message reachable from it is read (strings to their terminator, bytes
 *  and repeated arrays end to end), the sender check runs for every role, and the envelope
 *  is packed again and must unpack to the same bytes. A rejected frame must leave a
 *  message naming the peer. Any crash, sanitizer report, leak or abort is a finding.
 */
#include "proto/wire.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static volatile uint64_t sink;

static void walk(const ProtobufCMessage *m, int depth);

static void walk_value(const ProtobufCFieldDescriptor *f, const void *p, int depth) {
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING:
        sink += strlen(*(char *const *)p);
        break;
    case PROTOBUF_C_TYPE_BYTES: {
        const ProtobufCBinaryData *b = p;
        if (b->len) sink += b->data[0] + b->data[b->len - 1];
        break;
    }
    case PROTOBUF_C_TYPE_MESSAGE:
        walk(*(ProtobufCMessage *const *)p, depth + 1);
        break;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE:
        sink += *(const uint64_t *)p;
        break;
    default:
        sink += *(const uint32_t *)p;
        break;
    }
}

static size_t elem_size(const ProtobufCFieldDescriptor *f) {
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE:
        return 8;
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING:
        return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(ProtobufCMessage *);
    default:
        return 4;
    }
}

static void walk(const ProtobufCMessage *m, int depth) {
    if (m == NULL || depth > 32) return;
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f      = &d->fields[i];
        const char                     *member = (const char *)m + f->offset;
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            if (*(const uint32_t *)((const char *)m + f->quantifier_offset) == f->id)
                walk_value(f, member, depth);
        } else if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)((const char *)m + f->quantifier_offset);
            for (size_t k = 0; k < n; k++)
                walk_value(f, *(char *const *)member + k * elem_size(f), depth);
        } else {
            walk_value(f, member, depth);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    Lmp__Envelope  *env = NULL;
    struct lmp_err  err = {0};
    enum lmp_status st  = lmp_wire_unpack(data, size, 1 << 20, "fuzz", &env, &err);
    if (st != LMP_OK) {
        if (env != NULL || strstr(err.msg, "fuzz") == NULL) abort();
        if (st != LMP_EPROTO && st != LMP_EVERSION && st != LMP_ENOMEM) abort();
        return 0;
    }
    walk(&env->base, 0);
    for (unsigned r = 1; r <= LMP_PEER_COORDINATOR; r <<= 1)
        sink += (uint64_t)lmp_wire_check_sender(env, (enum lmp_peer)r, "fuzz", &err);
    /* what was accepted can be sent on, and reads back identically */
    uint8_t *out = NULL;
    size_t   len = 0;
    if (lmp_wire_pack(env, &out, &len, &err) != LMP_OK) abort();
    Lmp__Envelope *again = NULL;
    if (lmp_wire_unpack(out, len, 0, "fuzz", &again, &err) != LMP_OK) abort();
    size_t   len2 = protobuf_c_message_get_packed_size(&again->base);
    uint8_t *out2 = malloc(len2 ? len2 : 1);
    if (out2 == NULL) abort();
    protobuf_c_message_pack(&again->base, out2);
    if (len2 != len || memcmp(out, out2, len) != 0) abort();
    free(out2);
    free(out);
    lmp_wire_free(&again);
    lmp_wire_free(&env);
    return 0;
}
