/*  test_wire - every Envelope body round-trips field by field; truncated, corrupted,
 *  oversized, empty, wrong-version and misdirected frames give a clean LMP_EPROTO or
 *  LMP_EVERSION; the schema digest pins the protocol version.
 *
 *  The round trip is driven by the protobuf-c descriptors: a filler gives every field of
 *  every message reachable from the body a distinct non-default value (multi-byte varints,
 *  negative numbers, two elements in every repeated field, each oneof member in turn), and
 *  a comparer walks both messages field by field. A field added to lmpress.proto is
 *  therefore covered without touching this file.
 */
#include "proto/wire.h"
#include "tests/check.h" /* defines: CHECK, RUN, check_report */

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- the version history
 * One row per released schema. Changing lmpress.proto changes the digest: append a row
 * with a bumped LMP_PROTO_VERSION (incompatible) or LMP_PROTO_MINOR (compatible
 * addition), set LMP_PROTO_SCHEMA_DIGEST in proto/wire.h, and add the row to
 * docs/protocol.md. Rows are never edited. */
static const struct {
    unsigned major, minor;
    uint64_t digest;
} history[] = {
    {1, 0, 0xd5e19b44c8ee957full},  /* first release */
    {1, 1, 0x1c7154d88884fecfull},  /* JobSpec.tokenizer_path, JobSpec.threads */
    {1, 2, 0x4d1527e826374038ull},  /* LogQuery.since_ms, LogLine.kind, LogLine.layer */
    {1, 3, 0xa9932e43095ad72aull},  /* MethodSpec.cg_iters (oneof), FinetuneSpec.max_steps */
    {1, 4, 0x0b27520389eb938eull},  /* JobSpec.row_shards, RowsPartial, RowsSum */
    {1, 5, 0x58a6ffcba16e07e6ull},  /* JobInfo.seconds_calibration/_quantization/_finetune */
    {1, 6, 0x58d6bb2be1bebf86ull},  /* enum Payload: the names of task inputs and results */
    {1, 7, 0x1dcd0de04f49dabdull},  /* Capabilities.pid: a worker name's holder in messages */
    {1, 8, 0x268902ae30bb6cf9ull},  /* TuneSpec, TASK_KIND_TUNE, int64 sums, TuneInfo */
    {1, 9, 0xeb76f3b3771ccc8full},  /* Capabilities.device: cpu or cuda:N */
    {1, 10, 0xd2043b914a75299dull}, /* JobSpec.embed_bits, JobSpec.head_bits */
    {1, 11, 0xb25529cc996ba124ull}, /* TuneSpec.stages: pipeline stages */
};

/* ---------------------------------------------------------------- a test arena */

static void **blocks;
static size_t n_blocks, cap_blocks;

static void *arena(size_t n) {
    if (n_blocks == cap_blocks) {
        cap_blocks = cap_blocks ? 2 * cap_blocks : 256;
        blocks     = realloc(blocks, cap_blocks * sizeof(*blocks));
        if (blocks == NULL) abort();
    }
    void *p = calloc(1, n ? n : 1);
    if (p == NULL) abort();
    blocks[n_blocks++] = p;
    return p;
}

static void arena_free(void) {
    for (size_t i = 0; i < n_blocks; i++) free(blocks[i]);
    free(blocks);
    blocks   = NULL;
    n_blocks = cap_blocks = 0;
}

/* ---------------------------------------------------------------- generic filler */

static uint32_t counter;

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

static void fill_message(ProtobufCMessage *m, unsigned variant, int depth);

static void fill_value(const ProtobufCFieldDescriptor *f, void *p, unsigned variant, int depth) {
    uint32_t c = ++counter;
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        *(int32_t *)p = -(int32_t)c;
        break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        *(uint32_t *)p = 0x80000000u | c;
        break; /* 5-byte varint */
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        *(int64_t *)p = -(int64_t)c * 1000000007;
        break;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        *(uint64_t *)p = (1ull << 63) | c;
        break; /* 10-byte varint */
    case PROTOBUF_C_TYPE_FLOAT:
        *(float *)p = (float)c + 0.5f;
        break;
    case PROTOBUF_C_TYPE_DOUBLE:
        *(double *)p = (double)c + 0.25;
        break;
    case PROTOBUF_C_TYPE_BOOL:
        *(protobuf_c_boolean *)p = 1;
        break;
    case PROTOBUF_C_TYPE_ENUM: { /* the last declared value */
        const ProtobufCEnumDescriptor *ed = f->descriptor;
        *(int *)p                         = ed->values[ed->n_values - 1].value;
        break;
    }
    case PROTOBUF_C_TYPE_STRING: {
        char *s = arena(32);
        snprintf(s, 32, "%s-%u", f->name, c);
        *(char **)p = s;
        break;
    }
    case PROTOBUF_C_TYPE_BYTES: {
        ProtobufCBinaryData *b = p;
        b->len                 = 3;
        b->data                = arena(3);
        b->data[0]             = (uint8_t)c;
        b->data[1]             = 0;
        b->data[2]             = 0xff;
        break;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessageDescriptor *md  = f->descriptor;
        ProtobufCMessage                 *sub = arena(md->sizeof_message);
        md->message_init(sub);
        if (depth < 8) fill_message(sub, variant, depth + 1);
        *(ProtobufCMessage **)p = sub;
        break;
    }
    }
}

/* Index of field i among the members of its oneof, and the member count. */
static unsigned oneof_position(const ProtobufCMessageDescriptor *d, unsigned i,
                               unsigned *n_members) {
    unsigned pos = 0, n = 0;
    for (unsigned j = 0; j < d->n_fields; j++) {
        if (!(d->fields[j].flags & PROTOBUF_C_FIELD_FLAG_ONEOF) ||
            d->fields[j].quantifier_offset != d->fields[i].quantifier_offset)
            continue;
        if (j < i) pos++;
        n++;
    }
    *n_members = n;
    return pos;
}

static void fill_message(ProtobufCMessage *m, unsigned variant, int depth) {
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f      = &d->fields[i];
        char                           *member = (char *)m + f->offset;
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            unsigned n, pos = oneof_position(d, i, &n);
            if (pos != variant % n) continue;
            *(uint32_t *)((char *)m + f->quantifier_offset) = f->id;
            fill_value(f, member, variant, depth);
        } else if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t sz  = elem_size(f);
            char  *arr = arena(2 * sz);
            for (unsigned k = 0; k < 2; k++) fill_value(f, arr + k * sz, variant + k, depth);
            *(size_t *)((char *)m + f->quantifier_offset) = 2;
            *(void **)member                              = arr;
        } else {
            fill_value(f, member, variant, depth);
        }
    }
}

/* Apply fn to every message reachable from m (m included). */
static void walk(ProtobufCMessage *m, void (*fn)(ProtobufCMessage *)) {
    if (m == NULL) return;
    fn(m);
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->type != PROTOBUF_C_TYPE_MESSAGE) continue;
        char *member = (char *)m + f->offset;
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            if (*(uint32_t *)((char *)m + f->quantifier_offset) == f->id)
                walk(*(ProtobufCMessage **)member, fn);
        } else if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(size_t *)((char *)m + f->quantifier_offset);
            for (size_t k = 0; k < n; k++) walk((*(ProtobufCMessage ***)member)[k], fn);
        } else {
            walk(*(ProtobufCMessage **)member, fn);
        }
    }
}

static void set_tensor(Lmp__Tensor *t, Lmp__DType dtype, uint64_t d0, uint64_t d1, uint64_t d2,
                       size_t n_dims) {
    uint64_t *shape = arena(3 * sizeof(uint64_t));
    shape[0]        = d0;
    shape[1]        = d1;
    shape[2]        = d2;
    uint64_t n      = 1;
    for (size_t i = 0; i < n_dims; i++) n *= shape[i];
    size_t   bytes = (size_t)n * lmp_dtype_size(dtype);
    uint8_t *data  = arena(bytes);
    for (size_t i = 0; i < bytes; i++) data[i] = (uint8_t)(i * 7 + 1);
    t->dtype     = dtype;
    t->shape     = shape;
    t->n_shape   = n_dims;
    t->data.data = data;
    t->data.len  = bytes;
}

static void fix_leaf(ProtobufCMessage *m) {
    if (m->descriptor == &lmp__tensor__descriptor)
        set_tensor((Lmp__Tensor *)m, LMP__DTYPE__DTYPE_F32, 2, 3, 0, 2);
    if (m->descriptor == &lmp__blob_ref__descriptor) { /* offset + length must not wrap */
        ((Lmp__BlobRef *)m)->length = 1ull << 40;
    }
    if (m->descriptor == &lmp__tune_spec__descriptor) { /* values in their ranges */
        Lmp__TuneSpec *t = (Lmp__TuneSpec *)m;
        t->batch = 8, t->micro = 2, t->steps = 100, t->ctx = 512, t->val_windows = 2;
        t->beam = 8, t->lr = 1e-4f, t->code_lr = 1e-3f, t->code_frac = 0.01;
        t->trust_ratio = 0.5, t->checkpoint_s = 600, t->replicas = 2, t->stages = 2;
    }
    if (m->descriptor == &lmp__rows_partial__descriptor) /* whole int64 values */
        ((Lmp__RowsPartial *)m)->ipart.len &= ~(size_t)7;
    if (m->descriptor == &lmp__rows_sum__descriptor) ((Lmp__RowsSum *)m)->isum.len &= ~(size_t)7;
    if (m->descriptor == &lmp__task_assign__descriptor) {
        ((Lmp__TaskAssign *)m)->rank  = 1;
        ((Lmp__TaskAssign *)m)->ranks = 2;
    }
}

/* The filled values are arbitrary; make the few that carry meaning consistent. */
static void make_valid(Lmp__Envelope *env) {
    env->version = LMP_PROTO_VERSION;
    walk(&env->base, fix_leaf);
    switch (env->body_case) {
    case LMP__ENVELOPE__BODY_HELLO:
        env->hello->role        = LMP__ROLE__ROLE_WORKER;
        env->hello->proto_major = LMP_PROTO_VERSION;
        if (env->hello->caps) env->hello->caps->device = "cuda:7"; /* cpu or cuda:N */
        break;
    case LMP__ENVELOPE__BODY_HELLO_ACK:
        env->hello_ack->proto_major = LMP_PROTO_VERSION;
        break;
    case LMP__ENVELOPE__BODY_TASK_RESULT: {
        Lmp__TaskResult *r = env->task_result;
        set_tensor(r->codes, LMP__DTYPE__DTYPE_U16, 2, 3, 2, 3); /* (n_out, n_in/g, M) */
        uint16_t *codes = (uint16_t *)r->codes->data.data;
        for (int i = 0; i < 12; i++) codes[i] = (uint16_t)(i % 4);
        set_tensor(r->codebooks, LMP__DTYPE__DTYPE_F32, 2, 4, 1, 3); /* (M, K, g) */
        set_tensor(r->codebook_grad, LMP__DTYPE__DTYPE_F32, 2, 4, 1, 3);
        set_tensor(r->scales, LMP__DTYPE__DTYPE_F32, 2, 0, 0, 1); /* (n_out) */
        break;
    }
    default:
        break;
    }
}

/* A valid envelope of kinds[k] with every field set; memory in the arena. */
static Lmp__Envelope *make_full(size_t k) {
    Lmp__Envelope *env = arena(sizeof(*env));
    lmp__envelope__init(env);
    fill_message(&env->base, (unsigned)k, 0);
    make_valid(env);
    return env;
}

/* ---------------------------------------------------------------- generic comparer */

static bool eq_message(const ProtobufCMessage *a, const ProtobufCMessage *b, const char *path);

static bool eq_value(const ProtobufCFieldDescriptor *f, const void *pa, const void *pb,
                     const char *path) {
    char sub[512];
    snprintf(sub, sizeof(sub), "%s.%s", path, f->name);
    bool ok;
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING:
        ok = strcmp(*(char *const *)pa, *(char *const *)pb) == 0;
        break;
    case PROTOBUF_C_TYPE_BYTES: {
        const ProtobufCBinaryData *x = pa, *y = pb;
        ok = x->len == y->len && (x->len == 0 || memcmp(x->data, y->data, x->len) == 0);
        break;
    }
    case PROTOBUF_C_TYPE_MESSAGE:
        return eq_message(*(ProtobufCMessage *const *)pa, *(ProtobufCMessage *const *)pb, sub);
    default:
        ok = memcmp(pa, pb, elem_size(f)) == 0;
        break;
    }
    if (!ok) fprintf(stderr, "  differs: %s\n", sub);
    return ok;
}

static bool eq_message(const ProtobufCMessage *a, const ProtobufCMessage *b, const char *path) {
    if (a == NULL || b == NULL) {
        if (a != b) fprintf(stderr, "  differs: %s present on one side only\n", path);
        return a == b;
    }
    if (a->descriptor != b->descriptor) return false;
    const ProtobufCMessageDescriptor *d  = a->descriptor;
    bool                              ok = true;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const char *ma = (const char *)a + f->offset, *mb = (const char *)b + f->offset;
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            uint32_t ca = *(const uint32_t *)((const char *)a + f->quantifier_offset);
            uint32_t cb = *(const uint32_t *)((const char *)b + f->quantifier_offset);
            if (ca != cb) {
                fprintf(stderr, "  differs: %s oneof case %u vs %u\n", path, ca, cb);
                return false;
            }
            if (ca == f->id) ok &= eq_value(f, ma, mb, path);
        } else if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t na = *(const size_t *)((const char *)a + f->quantifier_offset);
            size_t nb = *(const size_t *)((const char *)b + f->quantifier_offset);
            if (na != nb) {
                fprintf(stderr, "  differs: %s.%s has %zu vs %zu elements\n", path, f->name, na,
                        nb);
                ok = false;
                continue;
            }
            size_t sz = elem_size(f);
            for (size_t k = 0; k < na; k++)
                ok &= eq_value(f, *(char *const *)ma + k * sz, *(char *const *)mb + k * sz, path);
        } else {
            ok &= eq_value(f, ma, mb, path);
        }
    }
    return ok;
}

/* ---------------------------------------------------------------- helpers */

static size_t n_kinds(void) {
    size_t n;
    lmp_wire_kinds(&n);
    return n;
}

static uint8_t *pack_raw(const Lmp__Envelope *env, size_t *len) { /* no checks, for bad frames */
    *len         = protobuf_c_message_get_packed_size(&env->base);
    uint8_t *buf = malloc(*len ? *len : 1);
    protobuf_c_message_pack(&env->base, buf);
    return buf;
}

/* Unpack must fail cleanly: want (or any failure if want == 0), no envelope, a message. */
static enum lmp_status unpack_fails(const uint8_t *buf, size_t len, size_t max_frame) {
    Lmp__Envelope  *env = (Lmp__Envelope *)1;
    struct lmp_err  err = {0};
    enum lmp_status st  = lmp_wire_unpack(buf, len, max_frame, "peer-x", &env, &err);
    if (st == LMP_OK) {
        lmp_wire_free(&env);
        return LMP_OK;
    }
    CHECK(env == NULL);
    CHECK(err.code == st && strstr(err.msg, "peer-x") != NULL);
    return st;
}

/* ---------------------------------------------------------------- tests */

static void test_every_body_roundtrips_field_by_field(void) {
    size_t                      nk;
    const struct lmp_wire_kind *kinds = lmp_wire_kinds(&nk);
    CHECK(nk == 22);
    for (size_t k = 0; k < nk; k++) {
        Lmp__Envelope *env = make_full(k);
        CHECK(env->body_case == kinds[k].body);
        uint8_t       *buf = NULL;
        size_t         len = 0;
        struct lmp_err err = {0};
        CHECK(lmp_wire_pack(env, &buf, &len, &err) == LMP_OK);
        if (err.msg[0]) fprintf(stderr, "  %s: %s\n", kinds[k].name, err.msg);
        Lmp__Envelope *got = NULL;
        CHECK(lmp_wire_unpack(buf, len, 0, "peer", &got, &err) == LMP_OK);
        if (got) {
            CHECK(got->body_case == kinds[k].body);
            CHECK(eq_message(&env->base, &got->base, kinds[k].name));
            /* nothing was dropped as unknown: repacking gives the same bytes */
            size_t   len2 = protobuf_c_message_get_packed_size(&got->base);
            uint8_t *buf2 = malloc(len2);
            protobuf_c_message_pack(&got->base, buf2);
            CHECK(len2 == len && memcmp(buf, buf2, len) == 0);
            free(buf2);
        }
        lmp_wire_free(&got);
        CHECK(got == NULL);
        free(buf);
    }
    arena_free();
}

static void test_comparer_sees_one_changed_field(void) {
    /* the comparer itself must be able to fail, at any depth */
    size_t                      k = LMP__ENVELOPE__BODY_TASK_RESULT;
    size_t                      nk;
    const struct lmp_wire_kind *kinds = lmp_wire_kinds(&nk);
    for (k = 0; kinds[k].body != LMP__ENVELOPE__BODY_TASK_RESULT; k++) {
    }
    Lmp__Envelope *a = make_full(k);
    uint8_t       *buf;
    size_t         len;
    struct lmp_err err = {0};
    CHECK(lmp_wire_pack(a, &buf, &len, &err) == LMP_OK);
    Lmp__Envelope *b = NULL;
    CHECK(lmp_wire_unpack(buf, len, 0, "peer", &b, &err) == LMP_OK);
    if (b) {
        fprintf(stderr, "  (three differences expected below)\n");
        b->task_result->codes->data.data[5] ^= 1;
        CHECK(!eq_message(&a->base, &b->base, "TaskResult"));
        b->task_result->codes->data.data[5] ^= 1;
        b->task_result->outputs[1]->tensor->shape[0]++;
        CHECK(!eq_message(&a->base, &b->base, "TaskResult"));
        b->task_result->outputs[1]->tensor->shape[0]--;
        b->task_result->stats->steps++;
        CHECK(!eq_message(&a->base, &b->base, "TaskResult"));
        b->task_result->stats->steps--;
        CHECK(eq_message(&a->base, &b->base, "TaskResult"));
    }
    lmp_wire_free(&b);
    free(buf);
    arena_free();
}

static void test_truncated_frames_are_eproto(void) {
    for (size_t k = 0; k < n_kinds(); k++) {
        Lmp__Envelope *env = make_full(k);
        uint8_t       *buf;
        size_t         len;
        struct lmp_err err = {0};
        CHECK(lmp_wire_pack(env, &buf, &len, &err) == LMP_OK);
        int bad = 0;
        for (size_t n = 0; n < len; n++) {
            uint8_t *copy = malloc(n ? n : 1); /* exact size: ASan sees overreads */
            memcpy(copy, buf, n);
            if (unpack_fails(copy, n, 0) != LMP_EPROTO) bad++;
            free(copy);
        }
        CHECK(bad == 0);
        free(buf);
    }
    arena_free();
}

static uint64_t rng_next(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void test_corrupted_frames_fail_cleanly(void) {
    uint64_t rng  = 0x1234567;
    int      n_ok = 0, n_proto = 0, n_version = 0, n_other = 0;
    for (size_t k = 0; k < n_kinds(); k++) {
        Lmp__Envelope *env = make_full(k);
        uint8_t       *buf;
        size_t         len;
        struct lmp_err err = {0};
        CHECK(lmp_wire_pack(env, &buf, &len, &err) == LMP_OK);
        if (buf == NULL) continue;
        uint8_t *copy = malloc(len);
        /* every single bit flip, then 200 random multi-byte corruptions */
        for (size_t bit = 0; bit < 8 * len + 200; bit++) {
            memcpy(copy, buf, len);
            if (bit < 8 * len) {
                copy[bit / 8] ^= (uint8_t)(1u << (bit % 8));
            } else {
                for (int r = 0; r < 4; r++) copy[rng_next(&rng) % len] = (uint8_t)rng_next(&rng);
            }
            Lmp__Envelope  *got = NULL;
            struct lmp_err  e2  = {0};
            enum lmp_status st  = lmp_wire_unpack(copy, len, 0, "peer", &got, &e2);
            if (st == LMP_OK) {
                /* accepted: it must then be a valid, packable envelope */
                n_ok++;
                CHECK(lmp_wire_validate(got, "peer", &e2) == LMP_OK);
                uint8_t *re;
                size_t   re_len;
                CHECK(lmp_wire_pack(got, &re, &re_len, &e2) == LMP_OK);
                if (e2.code == LMP_OK) free(re);
                lmp_wire_free(&got);
            } else if (st == LMP_EPROTO) {
                n_proto++;
            } else if (st == LMP_EVERSION) {
                n_version++;
            } else {
                n_other++;
            }
            CHECK(st == LMP_OK || got == NULL);
        }
        free(copy);
        free(buf);
    }
    fprintf(stderr, "  corruptions: %d accepted (valid), %d EPROTO, %d EVERSION, %d other\n", n_ok,
            n_proto, n_version, n_other);
    CHECK(n_other == 0);
    CHECK(n_proto > 0 && n_version > 0);
    arena_free();
}

static void test_empty_and_oversized_frames(void) {
    CHECK(unpack_fails(NULL, 0, 0) == LMP_EPROTO);
    uint8_t one = 0;
    CHECK(unpack_fails(&one, 1, 0) == LMP_EPROTO);

    /* over the caller's limit: refused before parsing */
    Lmp__Envelope *env = make_full(0);
    uint8_t       *buf;
    size_t         len;
    struct lmp_err err = {0};
    CHECK(lmp_wire_pack(env, &buf, &len, &err) == LMP_OK);
    CHECK(unpack_fails(buf, len, len - 1) == LMP_EPROTO);
    Lmp__Envelope *got = NULL;
    CHECK(lmp_wire_unpack(buf, len, len, "peer", &got, &err) == LMP_OK); /* exactly at it */
    lmp_wire_free(&got);
    free(buf);

    /* an Error of 2 MiB: the sender refuses, and so does the receiver (control limit) */
    Lmp__Envelope e;
    Lmp__Error    body;
    size_t        big  = 2u << 20;
    char         *text = malloc(big + 1);
    memset(text, 'a', big);
    text[big] = '\0';
    lmp_wire_error_init(&e, &body, 1, 0, LMP_EIO, text);
    struct lmp_err perr = {0};
    CHECK(lmp_wire_pack(&e, &buf, &len, &perr) == LMP_EINVAL);
    CHECK(strstr(perr.msg, "exceeds its limit") != NULL);
    buf                 = pack_raw(&e, &len);
    struct lmp_err uerr = {0};
    CHECK(lmp_wire_unpack(buf, len, 0, "peer-x", &got, &uerr) == LMP_EPROTO);
    CHECK(strstr(uerr.msg, "Error") && strstr(uerr.msg, "exceeds its limit"));
    free(buf);
    free(text);
    arena_free();
}

static void test_wrong_version_is_eversion_with_a_clear_message(void) {
    Lmp__Envelope env;
    Lmp__Hello    hello;
    lmp_wire_hello_init(&env, &hello, 1, LMP__ROLE__ROLE_WORKER, "w1", NULL);
    env.version       = LMP_PROTO_VERSION + 1;
    hello.proto_major = LMP_PROTO_VERSION + 1;
    size_t         len;
    uint8_t       *buf = pack_raw(&env, &len);
    Lmp__Envelope *got = NULL;
    struct lmp_err err = {0};
    CHECK(lmp_wire_unpack(buf, len, 0, "w1", &got, &err) == LMP_EVERSION);
    CHECK(got == NULL);
    char want[128];
    snprintf(want, sizeof(want), "peer 'w1' speaks protocol %u, this is %u", LMP_PROTO_VERSION + 1,
             LMP_PROTO_VERSION);
    CHECK(strcmp(err.msg, want) == 0);
    free(buf);

    /* a refusal from a peer of another version stays readable (frozen Error fields) */
    Lmp__Error eb;
    lmp_wire_error_init(&env, &eb, 7, 1, LMP_EVERSION, "coordinator speaks protocol 9\x1b[2J");
    env.version       = 9;
    buf               = pack_raw(&env, &len);
    struct lmp_err e2 = {0};
    CHECK(lmp_wire_unpack(buf, len, 0, "coord", &got, &e2) == LMP_EVERSION);
    CHECK(strstr(e2.msg, "peer 'coord' speaks protocol 9") != NULL);
    CHECK(strstr(e2.msg, "it says: EVERSION: coordinator speaks protocol 9?[2J") != NULL);
    free(buf);

    /* version absent (proto3 omits 0) is not an lmpress frame */
    lmp_wire_hello_init(&env, &hello, 1, LMP__ROLE__ROLE_WORKER, "w1", NULL);
    env.version       = 0;
    buf               = pack_raw(&env, &len);
    struct lmp_err e3 = {0};
    CHECK(lmp_wire_unpack(buf, len, 0, "w1", &got, &e3) == LMP_EPROTO);
    CHECK(strstr(e3.msg, "no protocol version") != NULL);
    free(buf);

    /* pack refuses to send another version */
    env.version       = LMP_PROTO_VERSION + 1;
    struct lmp_err e4 = {0};
    CHECK(lmp_wire_pack(&env, &buf, &len, &e4) == LMP_EINVAL);
}

/* Capabilities.device (1.9) is empty, "cpu" or "cuda:N"; anything else is EPROTO, on
 * send and on receipt, and the message does not echo the peer's bytes. */
static void test_hello_device_is_checked(void) {
    static const char *const good[] = {"", "cpu", "cuda:0", "cuda:1234"};
    static const char *const bad[]  = {"gpu", "cuda:", "cuda:12345", "cuda:-1", "cpu\n", "CUDA:0"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]) + sizeof(bad) / sizeof(bad[0]); i++) {
        const bool        ok = i < sizeof(good) / sizeof(good[0]);
        Lmp__Envelope     env, *got = NULL;
        Lmp__Hello        h;
        Lmp__Capabilities caps = LMP__CAPABILITIES__INIT;
        caps.device            = (char *)(ok ? good[i] : bad[i - sizeof(good) / sizeof(good[0])]);
        lmp_wire_hello_init(&env, &h, 1, LMP__ROLE__ROLE_WORKER, "w1", &caps);
        size_t         len;
        uint8_t       *buf = pack_raw(&env, &len), *b2 = NULL;
        struct lmp_err err = {0}, e2 = {0};
        CHECK((lmp_wire_unpack(buf, len, 0, "w1", &got, &err) == LMP_OK) == ok);
        CHECK((lmp_wire_pack(&env, &b2, &len, &e2) == LMP_OK) == ok);
        if (!ok) CHECK(strstr(err.msg, "the device is not cpu or cuda:N") != NULL);
        lmp_wire_free(&got);
        free(buf);
        free(b2);
    }
}

/* Found by fuzz_wire: a HelloAck whose body ends in an over-long tag encoding field 0
 * ("80 00"); protobuf-c kept it as an unknown field and re-packed a frame it then rejected. */
static void test_unknown_field_zero_is_eproto(void) {
    static const uint8_t frame[] = {0x08, 0x01, 0x10, 0x01, 0x18, 0x01, 0x5a, 0x2a, 0x08, 0x01,
                                    0x19, 0x7f, 0x95, 0xee, 0xcf, 0x44, 0x9b, 0x20, 0x5a, 0x22,
                                    0x03, 0x72, 0x65, 0x66, 0x22, 0x06, 0x61, 0x76, 0x78, 0x35,
                                    0x31, 0x32, 0x22, 0x04, 0x63, 0x75, 0x2d, 0x37, 0x38, 0xe8,
                                    0x07, 0x40, 0x90, 0x4e, 0x48, 0x79, 0x80, 0x00, 0x80, 0x01};
    Lmp__Envelope       *env     = NULL;
    struct lmp_err       err     = {0};
    CHECK(lmp_wire_unpack(frame, sizeof(frame), 1 << 20, "p", &env, &err) == LMP_EPROTO);
    CHECK(env == NULL);
}

static void test_body_missing_or_unknown_is_eproto(void) {
    Lmp__Envelope env;
    lmp_wire_init(&env, 3, 0);
    size_t         len;
    uint8_t       *buf = pack_raw(&env, &len);
    struct lmp_err err = {0};
    Lmp__Envelope *got = NULL;
    CHECK(lmp_wire_unpack(buf, len, 0, "p", &got, &err) == LMP_EPROTO);
    CHECK(strstr(err.msg, "no body") != NULL);
    uint8_t *buf2 = malloc(len + 3); /* + field 99, length-delimited, empty */
    memcpy(buf2, buf, len);
    buf2[len]         = (uint8_t)((99 << 3 | 2) & 0x7f) | 0x80;
    buf2[len + 1]     = (uint8_t)((99 << 3 | 2) >> 7);
    buf2[len + 2]     = 0;
    struct lmp_err e2 = {0};
    CHECK(lmp_wire_unpack(buf2, len + 3, 0, "p", &got, &e2) == LMP_EPROTO);
    CHECK(strstr(e2.msg, "unknown body kind (field 99)") != NULL);
    /* a known body followed by an unknown field: the body stands, the field is carried on */
    Lmp__Heartbeat hb = LMP__HEARTBEAT__INIT;
    env.body_case     = LMP__ENVELOPE__BODY_HEARTBEAT;
    env.heartbeat     = &hb;
    free(buf);
    buf = pack_raw(&env, &len);
    free(buf2);
    buf2 = malloc(len + 3);
    memcpy(buf2, buf, len);
    buf2[len]     = (uint8_t)((99 << 3 | 2) & 0x7f) | 0x80;
    buf2[len + 1] = (uint8_t)((99 << 3 | 2) >> 7);
    buf2[len + 2] = 0;
    CHECK(lmp_wire_unpack(buf2, len + 3, 0, "p", &got, &e2) == LMP_OK);
    if (got) {
        uint8_t *re     = NULL;
        size_t   re_len = 0;
        CHECK(got->body_case == LMP__ENVELOPE__BODY_HEARTBEAT && got->base.n_unknown_fields == 1);
        CHECK(lmp_wire_pack(got, &re, &re_len, &e2) == LMP_OK);
        Lmp__Envelope *again = NULL;
        CHECK(re && lmp_wire_unpack(re, re_len, 0, "p", &again, &e2) == LMP_OK);
        CHECK(again && again->body_case == LMP__ENVELOPE__BODY_HEARTBEAT);
        lmp_wire_free(&again);
        free(re);
    }
    lmp_wire_free(&got);
    env.body_case = LMP__ENVELOPE__BODY__NOT_SET;

    struct lmp_err e3      = {0};
    uint8_t       *out     = NULL;
    size_t         out_len = 0;
    CHECK(lmp_wire_pack(&env, &out, &out_len, &e3) == LMP_EINVAL && out == NULL);
    free(buf2);
    free(buf);
}

static void test_sender_permissions(void) {
    size_t                      nk;
    const struct lmp_wire_kind *kinds   = lmp_wire_kinds(&nk);
    const enum lmp_peer         roles[] = {LMP_PEER_CLI, LMP_PEER_WORKER, LMP_PEER_COORDINATOR};
    for (size_t k = 0; k < nk; k++) {
        Lmp__Envelope env;
        lmp__envelope__init(&env);
        env.body_case = kinds[k].body;
        for (size_t r = 0; r < 3; r++) {
            struct lmp_err  err = {0};
            enum lmp_status st  = lmp_wire_check_sender(&env, roles[r], "p", &err);
            CHECK((st == LMP_OK) == ((kinds[k].from & roles[r]) != 0));
            if (st != LMP_OK) CHECK(strstr(err.msg, kinds[k].name) != NULL);
        }
        CHECK(kinds[k].from != 0 && kinds[k].to != 0);
    }
    /* the rules that matter, stated independently of the table */
    Lmp__Envelope env;
    lmp__envelope__init(&env);
    struct lmp_err err = {0};
    env.body_case      = LMP__ENVELOPE__BODY_JOB_SUBMIT;
    CHECK(lmp_wire_check_sender(&env, LMP_PEER_WORKER, "w1", &err) == LMP_EPROTO);
    CHECK(strcmp(err.msg, "worker 'w1' may not send JobSubmit") == 0);
    CHECK(lmp_wire_check_sender(&env, LMP_PEER_CLI, "u", &err) == LMP_OK);
    env.body_case = LMP__ENVELOPE__BODY_TASK_RESULT;
    CHECK(lmp_wire_check_sender(&env, LMP_PEER_CLI, "u", &err) == LMP_EPROTO);
    CHECK(lmp_wire_check_sender(&env, LMP_PEER_WORKER, "w", &err) == LMP_OK);
    env.body_case = LMP__ENVELOPE__BODY_TASK_ASSIGN;
    CHECK(lmp_wire_check_sender(&env, LMP_PEER_WORKER, "w", &err) == LMP_EPROTO);
    env.body_case = LMP__ENVELOPE__BODY_HELLO;
    CHECK(lmp_wire_check_sender(&env, LMP_PEER_COORDINATOR, "c", &err) == LMP_EPROTO);
    env.body_case = LMP__ENVELOPE__BODY_ERROR;
    for (size_t r = 0; r < 3; r++)
        CHECK(lmp_wire_check_sender(&env, roles[r], "p", &err) == LMP_OK);
    CHECK(lmp_wire_check_sender(&env, (enum lmp_peer)0, "p", &err) == LMP_EPROTO);
    env.body_case = LMP__ENVELOPE__BODY__NOT_SET;
    CHECK(lmp_wire_check_sender(&env, LMP_PEER_CLI, "p", &err) == LMP_EPROTO);
    CHECK(lmp_peer_of_role(LMP__ROLE__ROLE_WORKER) == LMP_PEER_WORKER);
    CHECK(lmp_peer_of_role(LMP__ROLE__ROLE_UNSPECIFIED) == 0);
}

/* A valid TaskResult of a row shard, then one broken field at a time. */
static void test_validation_catches_inconsistent_results(void) {
    enum { N_OUT = 3, NG = 2, M = 2, K = 4, G = 2 };
    uint16_t codes[N_OUT * NG * M];
    float    cb[M * K * G], grad[M * K * G], scales[N_OUT];
    uint64_t sh_codes[3] = {N_OUT, NG, M}, sh_cb[3] = {M, K, G}, sh_sc[1] = {N_OUT};
    for (int i = 0; i < N_OUT * NG * M; i++) codes[i] = (uint16_t)(i % K);
    check_fill_random(cb, M * K * G, 1);
    check_fill_random(grad, M * K * G, 2);
    check_fill_random(scales, N_OUT, 3);
    Lmp__Tensor tc, tcb, tg, ts;
    lmp_wire_tensor_init(&tc, "codes", LMP__DTYPE__DTYPE_U16, sh_codes, 3, codes, sizeof(codes));
    lmp_wire_tensor_init(&tcb, "codebooks", LMP__DTYPE__DTYPE_F32, sh_cb, 3, cb, sizeof(cb));
    lmp_wire_tensor_init(&tg, "codebook_grad", LMP__DTYPE__DTYPE_F32, sh_cb, 3, grad, sizeof(grad));
    lmp_wire_tensor_init(&ts, "scales", LMP__DTYPE__DTYPE_F32, sh_sc, 1, scales, sizeof(scales));
    Lmp__RowRange rows = LMP__ROW_RANGE__INIT;
    rows.begin         = 10;
    rows.end           = 10 + N_OUT;
    Lmp__TaskResult r  = LMP__TASK_RESULT__INIT;
    r.job_id           = 1;
    r.task_id          = 2;
    r.attempt          = 1;
    r.kind             = LMP__TASK_KIND__TASK_KIND_QUANTIZE_ROWS;
    r.layer            = "blk.0.attn_q";
    r.rows             = &rows;
    r.codes            = &tc;
    r.codebooks        = &tcb;
    r.codebook_grad    = &tg;
    r.scales           = &ts;
    Lmp__Envelope env;
    lmp_wire_init(&env, 5, 4);
    env.body_case   = LMP__ENVELOPE__BODY_TASK_RESULT;
    env.task_result = &r;

    uint8_t       *buf;
    size_t         len;
    struct lmp_err err = {0};
    CHECK(lmp_wire_pack(&env, &buf, &len, &err) == LMP_OK);
    Lmp__Envelope *got = NULL;
    CHECK(lmp_wire_unpack(buf, len, 0, "w1", &got, &err) == LMP_OK);
    if (got) {
        CHECK(memcmp(got->task_result->codebooks->data.data, cb, sizeof(cb)) == 0);
        CHECK(got->task_result->rows->end == 10 + N_OUT);
    }
    lmp_wire_free(&got);
    free(buf);

#define EXPECT_REFUSED(what, mutate, undo)                                                         \
    do {                                                                                           \
        mutate;                                                                                    \
        struct lmp_err e_ = {0};                                                                   \
        CHECK(lmp_wire_validate(&env, "w1", &e_) == LMP_EPROTO);                                   \
        CHECK(strstr(e_.msg, what) != NULL);                                                       \
        if (!strstr(e_.msg, what)) fprintf(stderr, "  got: %s\n", e_.msg);                         \
        size_t   l_ = 0;                                                                           \
        uint8_t *b_ = pack_raw(&env, &l_);                                                         \
        CHECK(unpack_fails(b_, l_, 0) == LMP_EPROTO);                                              \
        free(b_);                                                                                  \
        undo;                                                                                      \
    } while (0)

    EXPECT_REFUSED("code 5 is 4", codes[5] = K, codes[5] = 1);
    EXPECT_REFUSED("codes holds", tc.data.len -= 2, tc.data.len += 2);
    EXPECT_REFUSED("codes must be u16", tc.dtype = LMP__DTYPE__DTYPE_F16,
                   tc.dtype = LMP__DTYPE__DTYPE_U16);
    EXPECT_REFUSED("codes index 2 codebooks, there are 1", sh_cb[0] = 1; tcb.data.len /= 2;
                   tg.data.len /= 2, sh_cb[0] = M; tcb.data.len *= 2; tg.data.len *= 2);
    EXPECT_REFUSED("scales for", sh_sc[0] = 2; ts.data.len -= 4, sh_sc[0] = N_OUT;
                   ts.data.len += 4);
    EXPECT_REFUSED("row range has", rows.end++, rows.end--);
    EXPECT_REFUSED("attempt 0", r.attempt = 0, r.attempt = 1);
    EXPECT_REFUSED("unknown task kind", r.kind = 99,
                   r.kind = LMP__TASK_KIND__TASK_KIND_QUANTIZE_ROWS);
    EXPECT_REFUSED("overflows", sh_codes[0] = 1ull << 62, sh_codes[0] = N_OUT);
    EXPECT_REFUSED("unknown dtype", ts.dtype = 0, ts.dtype = LMP__DTYPE__DTYPE_F32);
    EXPECT_REFUSED("codes without codebooks", r.codebooks = NULL;
                   r.codebook_grad = NULL, r.codebooks = &tcb; r.codebook_grad = &tg);
    CHECK(lmp_wire_validate(&env, "w1", &err) == LMP_OK); /* every undo restored it */

    /* pack refuses what unpack would refuse */
    codes[0]          = K;
    struct lmp_err pe = {0};
    CHECK(lmp_wire_pack(&env, &buf, &len, &pe) == LMP_EINVAL);
    CHECK(strstr(pe.msg, "refusing to send invalid TaskResult") != NULL);
    codes[0] = 0;

    /* a job spec with the essentials missing */
    Lmp__MethodSpec method = LMP__METHOD_SPEC__INIT;
    Lmp__CalibSpec  calib  = LMP__CALIB_SPEC__INIT;
    Lmp__JobSpec    spec   = LMP__JOB_SPEC__INIT;
    Lmp__JobSubmit  sub    = LMP__JOB_SUBMIT__INIT;
    method.method          = LMP__METHOD__METHOD_AQLM;
    method.scheme          = "2x8g8";
    calib.source           = LMP__CALIB_SOURCE__CALIB_SOURCE_FILE;
    calib.path             = "wiki.txt";
    spec.model_path        = "m.gguf";
    spec.out_path          = "m.h5";
    spec.method            = &method;
    spec.calib             = &calib;
    spec.mode              = LMP__MODE__MODE_SEQUENTIAL;
    sub.spec               = &spec;
    lmp_wire_init(&env, 1, 0);
    env.body_case  = LMP__ENVELOPE__BODY_JOB_SUBMIT;
    env.job_submit = &sub;
    CHECK(lmp_wire_validate(&env, "u", &err) == LMP_OK);
    EXPECT_REFUSED("no model path", spec.model_path = "", spec.model_path = "m.gguf");
    EXPECT_REFUSED("without a path", calib.path = "", calib.path = "wiki.txt");
    EXPECT_REFUSED("unknown mode", spec.mode = 0, spec.mode = LMP__MODE__MODE_SEQUENTIAL);
    EXPECT_REFUSED("16-bit", method.bits = 17, method.bits = 0);
    EXPECT_REFUSED("no method", spec.method = NULL, spec.method = &method);
#undef EXPECT_REFUSED
}

static void test_memory_budget_bounds_amplification(void) {
    /* 2 M empty JobInfo entries: 4 MiB on the wire, gigabytes as structs */
    size_t   n = 2u << 20, len = 2 * n + 16;
    uint8_t *buf = malloc(len);
    size_t   o   = 0;
    buf[o++]     = 0x08;
    buf[o++]     = LMP_PROTO_VERSION; /* version */
    buf[o++]     = ((23 << 3 | 2) & 0x7f) | 0x80;
    buf[o++]     = (23 << 3 | 2) >> 7; /* job_status */
    size_t body  = 2 * n;              /* varint length */
    for (size_t v = body;; v >>= 7) {
        buf[o++] = (uint8_t)((v & 0x7f) | (v >= 0x80 ? 0x80 : 0));
        if (v < 0x80) break;
    }
    for (size_t i = 0; i < n; i++) {
        buf[o++] = 0x0a;
        buf[o++] = 0x00;
    } /* jobs: {} */
    Lmp__Envelope *got = NULL;
    struct lmp_err err = {0};
    CHECK(lmp_wire_unpack(buf, o, 0, "c", &got, &err) == LMP_EPROTO);
    CHECK(strstr(err.msg, "bytes of memory") != NULL);
    if (!strstr(err.msg, "bytes of memory")) fprintf(stderr, "  got: %s\n", err.msg);
    /* the same with 1000 entries is fine */
    o        = 0;
    buf[o++] = 0x08;
    buf[o++] = LMP_PROTO_VERSION;
    buf[o++] = ((23 << 3 | 2) & 0x7f) | 0x80;
    buf[o++] = (23 << 3 | 2) >> 7;
    buf[o++] = (uint8_t)(2000 & 0x7f) | 0x80;
    buf[o++] = (uint8_t)(2000 >> 7);
    for (size_t i = 0; i < 1000; i++) {
        buf[o++] = 0x0a;
        buf[o++] = 0x00;
    }
    CHECK(lmp_wire_unpack(buf, o, 0, "c", &got, &err) == LMP_OK);
    if (got) CHECK(got->job_status->n_jobs == 1000);
    lmp_wire_free(&got);
    free(buf);
}

static void test_helpers_build_what_they_say(void) {
    Lmp__Envelope env;
    Lmp__Error    eb;
    lmp_wire_error_init(&env, &eb, 4, 3, LMP_ENOSPC, "disk full at '/scratch'");
    uint8_t       *buf;
    size_t         len;
    struct lmp_err err = {0};
    CHECK(lmp_wire_pack(&env, &buf, &len, &err) == LMP_OK);
    Lmp__Envelope *got = NULL;
    CHECK(lmp_wire_unpack(buf, len, 0, "w", &got, &err) == LMP_OK);
    if (got) {
        enum lmp_status st = LMP_OK;
        CHECK(got->seq == 4 && got->reply_to == 3);
        CHECK(lmp_status_from_name(got->error->code, &st) && st == LMP_ENOSPC);
        CHECK(strcmp(got->error->message, "disk full at '/scratch'") == 0);
    }
    lmp_wire_free(&got);
    free(buf);

    Lmp__Hello        h;
    Lmp__Capabilities caps       = LMP__CAPABILITIES__INIT;
    char             *variants[] = {"ref", "avx512"};
    caps.cores                   = 16;
    caps.memory_bytes            = 1ull << 37;
    caps.n_kernel_variants       = 2;
    caps.kernel_variants         = variants;
    caps.device                  = "cuda:1";
    lmp_wire_hello_init(&env, &h, 1, LMP__ROLE__ROLE_WORKER, "w7", &caps);
    CHECK(lmp_wire_pack(&env, &buf, &len, &err) == LMP_OK);
    CHECK(lmp_wire_unpack(buf, len, 0, "w7", &got, &err) == LMP_OK);
    if (got) {
        CHECK(got->hello->proto_major == LMP_PROTO_VERSION);
        CHECK(got->hello->proto_minor == LMP_PROTO_MINOR);
        CHECK(got->hello->schema_digest == lmp_proto_schema_digest());
        CHECK(got->hello->caps && got->hello->caps->n_kernel_variants == 2);
        CHECK(got->hello->caps && strcmp(got->hello->caps->kernel_variants[1], "avx512") == 0);
        CHECK(got->hello->caps && strcmp(got->hello->caps->device, "cuda:1") == 0);
        CHECK(lmp_wire_check_sender(got, lmp_peer_of_role(got->hello->role), "w7", &err) == LMP_OK);
    }
    lmp_wire_free(&got);
    free(buf);

    Lmp__HelloAck ack;
    lmp_wire_hello_ack_init(&env, &ack, 1, 1, "coord", "w-3", 1000, 10000, LMP_WIRE_MAX_FRAME);
    CHECK(lmp_wire_pack(&env, &buf, &len, &err) == LMP_OK);
    CHECK(lmp_wire_unpack(buf, len, 0, "c", &got, &err) == LMP_OK);
    if (got)
        CHECK(got->hello_ack->heartbeat_timeout_ms == 10000 &&
              strcmp(got->hello_ack->peer_id, "w-3") == 0);
    lmp_wire_free(&got);
    free(buf);

    for (int c = 0; c >= -12; c--) {
        enum lmp_status st = LMP_OK;
        CHECK(lmp_status_from_name(lmp_status_str((enum lmp_status)c), &st) &&
              st == (enum lmp_status)c);
    }
    enum lmp_status st = LMP_OK;
    CHECK(!lmp_status_from_name("EWHATEVER", &st) && !lmp_status_from_name("E?", &st));
}

static void test_frozen_fields_are_where_old_peers_expect_them(void) {
    const ProtobufCFieldDescriptor *f;
    f = protobuf_c_message_descriptor_get_field(&lmp__envelope__descriptor, 1);
    CHECK(f && strcmp(f->name, "version") == 0 && f->type == PROTOBUF_C_TYPE_UINT32);
    f = protobuf_c_message_descriptor_get_field(&lmp__envelope__descriptor, 2);
    CHECK(f && strcmp(f->name, "seq") == 0 && f->type == PROTOBUF_C_TYPE_UINT64);
    f = protobuf_c_message_descriptor_get_field(&lmp__envelope__descriptor, 12);
    CHECK(f && f->descriptor == &lmp__error__descriptor);
    f = protobuf_c_message_descriptor_get_field(&lmp__error__descriptor, 1);
    CHECK(f && strcmp(f->name, "code") == 0 && f->type == PROTOBUF_C_TYPE_STRING);
    f = protobuf_c_message_descriptor_get_field(&lmp__error__descriptor, 2);
    CHECK(f && strcmp(f->name, "message") == 0 && f->type == PROTOBUF_C_TYPE_STRING);
    /* the permission table lists exactly the oneof members, in field order */
    size_t                      nk, n_oneof = 0;
    const struct lmp_wire_kind *kinds = lmp_wire_kinds(&nk);
    for (unsigned i = 0; i < lmp__envelope__descriptor.n_fields; i++) {
        f = &lmp__envelope__descriptor.fields[i];
        if (!(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)) continue;
        CHECK(n_oneof < nk && (unsigned)kinds[n_oneof].body == f->id);
        n_oneof++;
    }
    CHECK(n_oneof == nk);
}

static void test_schema_digest_pins_the_version(void) {
    size_t   n      = sizeof(history) / sizeof(history[0]);
    uint64_t digest = lmp_proto_schema_digest();
    for (size_t i = 1; i < n; i++) {
        CHECK(
            history[i].major > history[i - 1].major ||
            (history[i].major == history[i - 1].major && history[i].minor > history[i - 1].minor));
        for (size_t j = 0; j < i; j++) CHECK(history[i].digest != history[j].digest);
    }
    CHECK(history[n - 1].major == LMP_PROTO_VERSION && history[n - 1].minor == LMP_PROTO_MINOR);
    CHECK(history[n - 1].digest == LMP_PROTO_SCHEMA_DIGEST);
    CHECK(digest == LMP_PROTO_SCHEMA_DIGEST);
    if (digest != LMP_PROTO_SCHEMA_DIGEST) {
        fprintf(stderr,
                "  proto/lmpress.proto changed: its schema digest is now 0x%016llxull.\n"
                "  Bump LMP_PROTO_VERSION (incompatible) or LMP_PROTO_MINOR (compatible addition)\n"
                "  in proto/wire.h, set LMP_PROTO_SCHEMA_DIGEST, append a row to history[] here\n"
                "  and to the version history in docs/protocol.md.\n",
                (unsigned long long)digest);
    }
    /* the description covers what the wire sees */
    size_t len  = lmp_proto_schema_text(NULL, 0);
    char  *text = malloc(len + 1);
    CHECK(lmp_proto_schema_text(text, len + 1) == len);
    CHECK(strstr(text, "message lmp.Envelope\n  field 1 version") != NULL);
    CHECK(strstr(text, "field 42 task_result label=") != NULL);
    CHECK(strstr(text, "enum lmp.TaskKind\n") != NULL);
    CHECK(strstr(text, "value TASK_KIND_QUANTIZE_ROWS 3\n") != NULL);
    CHECK(strstr(text, " packed") != NULL && strstr(text, " oneof=10") != NULL);
    free(text);
    char small[8];
    CHECK(lmp_proto_schema_text(small, sizeof(small)) == len && strlen(small) == 7);
}

int main(void) {
    RUN(test_every_body_roundtrips_field_by_field);
    RUN(test_comparer_sees_one_changed_field);
    RUN(test_truncated_frames_are_eproto);
    RUN(test_corrupted_frames_fail_cleanly);
    RUN(test_empty_and_oversized_frames);
    RUN(test_wrong_version_is_eversion_with_a_clear_message);
    RUN(test_body_missing_or_unknown_is_eproto);
    RUN(test_unknown_field_zero_is_eproto);
    RUN(test_hello_device_is_checked);
    RUN(test_sender_permissions);
    RUN(test_validation_catches_inconsistent_results);
    RUN(test_memory_budget_bounds_amplification);
    RUN(test_helpers_build_what_they_say);
    RUN(test_frozen_fields_are_where_old_peers_expect_them);
    RUN(test_schema_digest_pins_the_version);
    return check_report();
}
