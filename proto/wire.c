/*  wire - see wire.h */
#include "proto/wire.h"
#include "proto/payload.h" /* defines: lmp_payload_name */

#include <assert.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef LMP_VERSION
#define LMP_VERSION "unknown"
#endif

/* ---------------------------------------------------------------- the permission table */

#define CLI LMP_PEER_CLI
#define WRK LMP_PEER_WORKER
#define CRD LMP_PEER_COORDINATOR

static const struct lmp_wire_kind kinds[] = {
    {LMP__ENVELOPE__BODY_HELLO, "Hello", CLI | WRK, CRD, LMP_WIRE_MAX_CONTROL},
    {LMP__ENVELOPE__BODY_HELLO_ACK, "HelloAck", CRD, CLI | WRK, LMP_WIRE_MAX_CONTROL},
    {LMP__ENVELOPE__BODY_ERROR, "Error", LMP_PEER_ANY, LMP_PEER_ANY, LMP_WIRE_MAX_CONTROL},
    {LMP__ENVELOPE__BODY_HEARTBEAT, "Heartbeat", WRK | CRD, WRK | CRD, LMP_WIRE_MAX_CONTROL},
    {LMP__ENVELOPE__BODY_SHUTDOWN, "Shutdown", CLI | CRD, WRK | CRD, LMP_WIRE_MAX_CONTROL},
    {LMP__ENVELOPE__BODY_JOB_SUBMIT, "JobSubmit", CLI, CRD, LMP_WIRE_MAX_CONTROL},
    {LMP__ENVELOPE__BODY_JOB_ACCEPTED, "JobAccepted", CRD, CLI, LMP_WIRE_MAX_CONTROL},
    {LMP__ENVELOPE__BODY_JOB_QUERY, "JobQuery", CLI, CRD, LMP_WIRE_MAX_CONTROL},
    {LMP__ENVELOPE__BODY_JOB_STATUS, "JobStatus", CRD, CLI, LMP_WIRE_MAX_STATUS},
    {LMP__ENVELOPE__BODY_JOB_CANCEL, "JobCancel", CLI, CRD, LMP_WIRE_MAX_CONTROL},
    {LMP__ENVELOPE__BODY_WORKER_QUERY, "WorkerQuery", CLI, CRD, LMP_WIRE_MAX_CONTROL},
    {LMP__ENVELOPE__BODY_WORKER_LIST, "WorkerList", CRD, CLI, LMP_WIRE_MAX_STATUS},
    {LMP__ENVELOPE__BODY_LOG_QUERY, "LogQuery", CLI, CRD, LMP_WIRE_MAX_CONTROL},
    {LMP__ENVELOPE__BODY_LOG_CHUNK, "LogChunk", CRD, CLI, LMP_WIRE_MAX_LOG},
    {LMP__ENVELOPE__BODY_TASK_ASSIGN, "TaskAssign", CRD, WRK, LMP_WIRE_MAX_FRAME},
    {LMP__ENVELOPE__BODY_TASK_PROGRESS, "TaskProgress", WRK, CRD, LMP_WIRE_MAX_CONTROL},
    {LMP__ENVELOPE__BODY_TASK_RESULT, "TaskResult", WRK, CRD, LMP_WIRE_MAX_FRAME},
    {LMP__ENVELOPE__BODY_TASK_RESULT_ACK, "TaskResultAck", CRD, WRK, LMP_WIRE_MAX_CONTROL},
    {LMP__ENVELOPE__BODY_TASK_HANDBACK, "TaskHandback", WRK, CRD, LMP_WIRE_MAX_CONTROL},
    {LMP__ENVELOPE__BODY_TASK_CANCEL, "TaskCancel", CRD, WRK, LMP_WIRE_MAX_CONTROL},
    {LMP__ENVELOPE__BODY_ROWS_PARTIAL, "RowsPartial", WRK, CRD, LMP_WIRE_MAX_FRAME},
    {LMP__ENVELOPE__BODY_ROWS_SUM, "RowsSum", CRD, WRK, LMP_WIRE_MAX_FRAME},
};

#undef CLI
#undef WRK
#undef CRD

const struct lmp_wire_kind *lmp_wire_kinds(size_t *n) {
    assert(n);
    *n = sizeof(kinds) / sizeof(kinds[0]);
    return kinds;
}

const struct lmp_wire_kind *lmp_wire_kind_of(Lmp__Envelope__BodyCase body) {
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        if (kinds[i].body == body) return &kinds[i];
    return NULL;
}

const char *lmp_wire_body_name(Lmp__Envelope__BodyCase body) {
    if (body == LMP__ENVELOPE__BODY__NOT_SET) return "none";
    const struct lmp_wire_kind *k = lmp_wire_kind_of(body);
    return k ? k->name : "unknown";
}

enum lmp_peer lmp_peer_of_role(Lmp__Role role) {
    switch (role) {
    case LMP__ROLE__ROLE_CLI:
        return LMP_PEER_CLI;
    case LMP__ROLE__ROLE_WORKER:
        return LMP_PEER_WORKER;
    case LMP__ROLE__ROLE_COORDINATOR:
        return LMP_PEER_COORDINATOR;
    default:
        return (enum lmp_peer)0;
    }
}

const char *lmp_peer_name(enum lmp_peer peer) {
    switch (peer) {
    case LMP_PEER_CLI:
        return "cli";
    case LMP_PEER_WORKER:
        return "worker";
    case LMP_PEER_COORDINATOR:
        return "coordinator";
    default:
        return "unknown";
    }
}

size_t lmp_dtype_size(Lmp__DType dtype) {
    switch (dtype) {
    case LMP__DTYPE__DTYPE_F32:
        return 4;
    case LMP__DTYPE__DTYPE_F16:
        return 2;
    case LMP__DTYPE__DTYPE_BF16:
        return 2;
    case LMP__DTYPE__DTYPE_U16:
        return 2;
    case LMP__DTYPE__DTYPE_U8:
        return 1;
    case LMP__DTYPE__DTYPE_I32:
        return 4;
    case LMP__DTYPE__DTYPE_F64:
        return 8;
    default:
        return 0;
    }
}

bool lmp_status_from_name(const char *name, enum lmp_status *st) {
    assert(st);
    if (name == NULL) return false;
    for (int c = 0; c >= -64; c--) { /* status codes are small negatives */
        const char *s = lmp_status_str((enum lmp_status)c);
        if (strcmp(s, "E?") != 0 && strcmp(s, name) == 0) {
            *st = (enum lmp_status)c;
            return true;
        }
    }
    return false;
}

/* ---------------------------------------------------------------- building */

void lmp_wire_init(Lmp__Envelope *env, uint64_t seq, uint64_t reply_to) {
    assert(env);
    lmp__envelope__init(env);
    env->version  = LMP_PROTO_VERSION;
    env->seq      = seq;
    env->reply_to = reply_to;
}

void lmp_wire_error_init(Lmp__Envelope *env, Lmp__Error *body, uint64_t seq, uint64_t reply_to,
                         enum lmp_status code, const char *msg) {
    assert(env && body);
    lmp_wire_init(env, seq, reply_to);
    lmp__error__init(body);
    body->code     = (char *)lmp_status_str(code); /* protobuf-c never writes through it */
    body->message  = (char *)(msg ? msg : "");
    env->body_case = LMP__ENVELOPE__BODY_ERROR;
    env->error     = body;
}

void lmp_wire_hello_init(Lmp__Envelope *env, Lmp__Hello *body, uint64_t seq, Lmp__Role role,
                         const char *name, Lmp__Capabilities *caps) {
    assert(env && body);
    lmp_wire_init(env, seq, 0);
    lmp__hello__init(body);
    body->proto_major      = LMP_PROTO_VERSION;
    body->proto_minor      = LMP_PROTO_MINOR;
    body->schema_digest    = lmp_proto_schema_digest();
    body->role             = role;
    body->name             = (char *)(name ? name : "");
    body->software_version = (char *)LMP_VERSION;
    body->caps             = caps;
    env->body_case         = LMP__ENVELOPE__BODY_HELLO;
    env->hello             = body;
}

void lmp_wire_hello_ack_init(Lmp__Envelope *env, Lmp__HelloAck *body, uint64_t seq,
                             uint64_t reply_to, const char *name, const char *peer_id,
                             uint32_t heartbeat_ms, uint32_t heartbeat_timeout_ms,
                             uint64_t max_frame) {
    assert(env && body);
    lmp_wire_init(env, seq, reply_to);
    lmp__hello_ack__init(body);
    body->proto_major          = LMP_PROTO_VERSION;
    body->proto_minor          = LMP_PROTO_MINOR;
    body->schema_digest        = lmp_proto_schema_digest();
    body->name                 = (char *)(name ? name : "");
    body->software_version     = (char *)LMP_VERSION;
    body->peer_id              = (char *)(peer_id ? peer_id : "");
    body->heartbeat_ms         = heartbeat_ms;
    body->heartbeat_timeout_ms = heartbeat_timeout_ms;
    body->max_frame_bytes      = max_frame;
    env->body_case             = LMP__ENVELOPE__BODY_HELLO_ACK;
    env->hello_ack             = body;
}

void lmp_wire_tensor_init(Lmp__Tensor *t, const char *name, Lmp__DType dtype, const uint64_t *shape,
                          size_t n_dims, const void *data, size_t n_bytes) {
    assert(t && (shape || n_dims == 0) && (data || n_bytes == 0));
    lmp__tensor__init(t);
    t->name      = (char *)(name ? name : "");
    t->dtype     = dtype;
    t->n_shape   = n_dims;
    t->shape     = (uint64_t *)shape;
    t->data.len  = n_bytes;
    t->data.data = (uint8_t *)data;
}

/* ---------------------------------------------------------------- validation */

struct vctx {
    struct lmp_err *err;
    const char     *kind; /* body name */
    const char     *peer; /* NULL when checking a frame about to be sent */
};

static enum lmp_status bad(const struct vctx *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static enum lmp_status bad(const struct vctx *c, const char *fmt, ...) {
    char    what[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    if (c->peer)
        return lmp_err_set(c->err, LMP_EPROTO, "invalid %s from peer '%s': %s", c->kind, c->peer,
                           what);
    return lmp_err_set(c->err, LMP_EPROTO, "refusing to send invalid %s: %s", c->kind, what);
}

static bool empty(const char *s) {
    return s == NULL || s[0] == '\0';
}

/* Element count of t; checks dtype, rank and that the bytes match dtype x shape. */
static enum lmp_status check_tensor(const struct vctx *c, const Lmp__Tensor *t, const char *what,
                                    uint64_t *n_elem) {
    size_t esize = lmp_dtype_size(t->dtype);
    if (esize == 0) return bad(c, "%s has unknown dtype %d", what, (int)t->dtype);
    if (t->n_shape > LMP_WIRE_MAX_DIMS)
        return bad(c, "%s has %zu dimensions (at most %d)", what, t->n_shape, LMP_WIRE_MAX_DIMS);
    if (t->n_shape > 0 && t->shape == NULL) return bad(c, "%s has no shape array", what);
    uint64_t n = 1, bytes;
    for (size_t d = 0; d < t->n_shape; d++)
        if (__builtin_mul_overflow(n, t->shape[d], &n))
            return bad(c, "%s has an element count that overflows", what);
    if (__builtin_mul_overflow(n, (uint64_t)esize, &bytes) || bytes != (uint64_t)t->data.len)
        return bad(c, "%s holds %zu bytes, its dtype and shape need %llu x %zu", what, t->data.len,
                   (unsigned long long)n, esize);
    if (t->data.len > 0 && t->data.data == NULL) return bad(c, "%s has no data", what);
    if (n_elem) *n_elem = n;
    return LMP_OK;
}

static enum lmp_status check_blob(const struct vctx *c, const Lmp__Blob *b, size_t i) {
    char what[64];
    if (b == NULL) return bad(c, "blob %zu is missing", i);
    snprintf(what, sizeof(what), "blob %zu ('%.32s')", i, b->name ? b->name : "");
    switch (b->where_case) {
    case LMP__BLOB__WHERE_REF: {
        const Lmp__BlobRef *r = b->ref;
        uint64_t            end;
        if (r == NULL || empty(r->path)) return bad(c, "%s refers to no path", what);
        if (__builtin_add_overflow(r->offset, r->length, &end))
            return bad(c, "%s has a byte range that overflows", what);
        return LMP_OK;
    }
    case LMP__BLOB__WHERE_TENSOR:
        if (b->tensor == NULL) return bad(c, "%s has no tensor", what);
        return check_tensor(c, b->tensor, what, NULL);
    default:
        return bad(c, "%s is neither a reference nor inline data", what);
    }
}

static enum lmp_status check_blobs(const struct vctx *c, Lmp__Blob *const *b, size_t n) {
    if (n > 0 && b == NULL) return bad(c, "blob list is missing");
    for (size_t i = 0; i < n; i++) {
        enum lmp_status st = check_blob(c, b[i], i);
        if (st != LMP_OK) return st;
    }
    return LMP_OK;
}

static bool task_kind_known(Lmp__TaskKind k) {
    return k >= LMP__TASK_KIND__TASK_KIND_CALIBRATE && k <= LMP__TASK_KIND__TASK_KIND_TUNE;
}

/* Capabilities.device (1.9): empty (not given), "cpu" or "cuda:N" with 1 to 4 digits
 * (kernels/device.h lmp_device_name_ok; the wire does not know the kernels layer). */
static bool device_ok(const char *d) {
    if (d == NULL || d[0] == '\0' || strcmp(d, "cpu") == 0) return true;
    if (strncmp(d, "cuda:", 5) != 0) return false;
    size_t n = strspn(d + 5, "0123456789");
    return n >= 1 && n <= 4 && d[5 + n] == '\0';
}

static enum lmp_status check_method(const struct vctx *c, const Lmp__MethodSpec *m) {
    if (m == NULL) return bad(c, "no method");
    if (m->method != LMP__METHOD__METHOD_AQLM && m->method != LMP__METHOD__METHOD_RTN)
        return bad(c, "unknown method %d", (int)m->method);
    if (m->method == LMP__METHOD__METHOD_AQLM && m->bits > 16)
        return bad(c, "AQLM with %u bits per code (codes are 16-bit)", m->bits);
    return LMP_OK;
}

static enum lmp_status check_calib(const struct vctx *c, const Lmp__CalibSpec *k) {
    if (k == NULL) return bad(c, "no calibration spec");
    if (k->source == LMP__CALIB_SOURCE__CALIB_SOURCE_FILE) {
        if (empty(k->path)) return bad(c, "calibration from a file without a path");
    } else if (k->source != LMP__CALIB_SOURCE__CALIB_SOURCE_GENERATE) {
        return bad(c, "unknown calibration source %d", (int)k->source);
    }
    return LMP_OK;
}

static enum lmp_status check_task_ids(const struct vctx *c, uint64_t job, uint64_t task,
                                      uint32_t attempt) {
    if (job == 0) return bad(c, "job id 0");
    if (task == 0) return bad(c, "task id 0");
    if (attempt == 0) return bad(c, "attempt 0 (attempts count from 1)");
    return LMP_OK;
}

/* A TuneSpec's values in range (the same bounds as `lmpress tune`'s options). */
static enum lmp_status check_tune(const struct vctx *c, const Lmp__TuneSpec *t) {
    if (empty(t->artifact)) return bad(c, "tuning without an artifact to tune");
    if (empty(t->data)) return bad(c, "tuning without a text to tune on");
    if (t->batch < 1 || t->batch > 65536) return bad(c, "tuning batch %u (1..65536)", t->batch);
    if (t->micro < 1 || t->micro > 64) return bad(c, "tuning micro-batch %u (1..64)", t->micro);
    if (t->steps > 100000000) return bad(c, "%llu tuning steps", (unsigned long long)t->steps);
    if (t->ctx == 1 || t->ctx > (1u << 20)) return bad(c, "tuning ctx %u", t->ctx);
    if (t->val_windows > 100000) return bad(c, "%u held-out windows", t->val_windows);
    if (t->beam < 1 || t->beam > 256) return bad(c, "tuning beam %u (1..256)", t->beam);
    if (!(t->lr >= 1e-9f && t->lr <= 1.0f)) return bad(c, "tuning lr %g", (double)t->lr);
    if (!(t->code_lr == 0.0f || (t->code_lr >= 1e-9f && t->code_lr <= 10.0f))) /* 0: by scheme */
        return bad(c, "tuning code lr %g", (double)t->code_lr);
    if (!(t->code_frac >= 0.0 && t->code_frac <= 1.0))
        return bad(c, "tuning code fraction %g", t->code_frac);
    if (!(t->trust_ratio >= 0.0 && t->trust_ratio <= 100.0))
        return bad(c, "tuning trust ratio %g", t->trust_ratio);
    if (!(t->checkpoint_s <= 1e8)) return bad(c, "checkpoint interval %g s", t->checkpoint_s);
    if (t->replicas > 4096) return bad(c, "%u tuning replicas (at most 4096)", t->replicas);
    if (t->stages > 4096) return bad(c, "%u pipeline stages (at most 4096)", t->stages);
    return LMP_OK;
}

static enum lmp_status check_job_submit(const struct vctx *c, const Lmp__JobSubmit *b) {
    const Lmp__JobSpec *s = b->spec;
    enum lmp_status     st;
    if (s == NULL) return bad(c, "no job spec");
    if (empty(s->model_path)) return bad(c, "no model path");
    if (empty(s->out_path)) return bad(c, "no output path");
    if (s->tune) return check_tune(c, s->tune);
    if ((st = check_method(c, s->method)) != LMP_OK) return st;
    /* RTN needs no calibration: no source at all is fine there */
    const bool no_calib =
        s->method->method == LMP__METHOD__METHOD_RTN &&
        (s->calib == NULL || s->calib->source == LMP__CALIB_SOURCE__CALIB_SOURCE_UNSPECIFIED);
    if (!no_calib && (st = check_calib(c, s->calib)) != LMP_OK) return st;
    if (s->mode != LMP__MODE__MODE_SEQUENTIAL && s->mode != LMP__MODE__MODE_INDEPENDENT)
        return bad(c, "unknown mode %d", (int)s->mode);
    if (s->n_keep > 0 && s->keep == NULL) return bad(c, "keep list is missing");
    for (size_t i = 0; i < s->n_keep; i++)
        if (empty(s->keep[i])) return bad(c, "keep pattern %zu is empty", i);
    return LMP_OK;
}

static enum lmp_status check_task_assign(const struct vctx *c, const Lmp__TaskAssign *b) {
    enum lmp_status st = check_task_ids(c, b->job_id, b->task_id, b->attempt);
    if (st != LMP_OK) return st;
    if (!task_kind_known(b->kind)) return bad(c, "unknown task kind %d", (int)b->kind);
    if (b->kind == LMP__TASK_KIND__TASK_KIND_QUANTIZE_LAYER ||
        b->kind == LMP__TASK_KIND__TASK_KIND_QUANTIZE_ROWS) {
        if (empty(b->layer)) return bad(c, "quantization task without a layer name");
        if ((st = check_method(c, b->method)) != LMP_OK) return st;
    }
    if (b->kind == LMP__TASK_KIND__TASK_KIND_QUANTIZE_ROWS &&
        (b->rows == NULL || b->rows->begin >= b->rows->end))
        return bad(c, "row task without a non-empty row range");
    if (b->kind == LMP__TASK_KIND__TASK_KIND_TUNE) {
        if (b->tune == NULL) return bad(c, "tuning task without a TuneSpec");
        if ((st = check_tune(c, b->tune)) != LMP_OK) return st;
        if (empty(b->model_path) || empty(b->out_dir))
            return bad(c, "tuning task without a model or an output path");
        if (b->ranks < 1 || b->rank >= b->ranks)
            return bad(c, "tuning rank %u of %u", b->rank, b->ranks);
    }
    if (b->calib && (st = check_calib(c, b->calib)) != LMP_OK) return st;
    return check_blobs(c, b->inputs, b->n_inputs);
}

static enum lmp_status check_task_result(const struct vctx *c, const Lmp__TaskResult *b) {
    enum lmp_status st      = check_task_ids(c, b->job_id, b->task_id, b->attempt);
    uint64_t        n_codes = 0, n_cb = 0, n_sc = 0;
    if (st != LMP_OK) return st;
    if (!task_kind_known(b->kind)) return bad(c, "unknown task kind %d", (int)b->kind);
    if (b->rows && b->rows->begin > b->rows->end) return bad(c, "row range ends before it begins");
    if (b->codes) {
        const Lmp__Tensor *cd = b->codes, *cb = b->codebooks;
        if ((st = check_tensor(c, cd, "codes", &n_codes)) != LMP_OK) return st;
        if (cd->dtype != LMP__DTYPE__DTYPE_U16 || cd->n_shape != 3)
            return bad(c, "codes must be u16 (n_out, n_in/g, M)");
        if (cb == NULL) return bad(c, "codes without codebooks");
        if ((st = check_tensor(c, cb, "codebooks", &n_cb)) != LMP_OK) return st;
        if (cb->dtype != LMP__DTYPE__DTYPE_F32 || cb->n_shape != 3)
            return bad(c, "codebooks must be f32 (M, 2^B, g)");
        if (cd->shape[2] != cb->shape[0])
            return bad(c, "codes index %llu codebooks, there are %llu",
                       (unsigned long long)cd->shape[2], (unsigned long long)cb->shape[0]);
        uint64_t K = cb->shape[1];
        if (K == 0 || K > 65536)
            return bad(c, "codebooks have %llu entries (1..65536)", (unsigned long long)K);
        const uint8_t *p = cd->data.data;
        for (uint64_t i = 0; i < n_codes; i++) {
            uint16_t v = (uint16_t)(p[2 * i] | (p[2 * i + 1] << 8)); /* little-endian */
            if (v >= K)
                return bad(c, "code %llu is %u, codebooks have %llu entries", (unsigned long long)i,
                           v, (unsigned long long)K);
        }
        if (b->rows && b->kind == LMP__TASK_KIND__TASK_KIND_QUANTIZE_ROWS &&
            cd->shape[0] != b->rows->end - b->rows->begin)
            return bad(c, "codes have %llu rows, the row range has %llu",
                       (unsigned long long)cd->shape[0],
                       (unsigned long long)(b->rows->end - b->rows->begin));
    } else if (b->codebooks) {
        if ((st = check_tensor(c, b->codebooks, "codebooks", &n_cb)) != LMP_OK) return st;
    }
    if (b->scales) {
        if ((st = check_tensor(c, b->scales, "scales", &n_sc)) != LMP_OK) return st;
        if (b->scales->dtype != LMP__DTYPE__DTYPE_F32 || b->scales->n_shape != 1)
            return bad(c, "scales must be f32 (n_out)");
        if (b->codes && b->scales->shape[0] != b->codes->shape[0])
            return bad(c, "%llu scales for %llu rows of codes",
                       (unsigned long long)b->scales->shape[0],
                       (unsigned long long)b->codes->shape[0]);
    }
    if (b->codebook_grad) {
        const Lmp__Tensor *g = b->codebook_grad, *cb = b->codebooks;
        if ((st = check_tensor(c, g, "codebook gradient", NULL)) != LMP_OK) return st;
        if (cb == NULL || g->dtype != cb->dtype || g->n_shape != cb->n_shape ||
            memcmp(g->shape, cb->shape, g->n_shape * sizeof(*g->shape)) != 0)
            return bad(c, "codebook gradient does not have the codebooks' dtype and shape");
    }
    if (b->n_tensors > 0 && b->tensors == NULL) return bad(c, "tensor list is missing");
    for (size_t i = 0; i < b->n_tensors; i++) {
        char what[64];
        snprintf(what, sizeof(what), "tensor %zu", i);
        if (b->tensors[i] == NULL) return bad(c, "%s is missing", what);
        if ((st = check_tensor(c, b->tensors[i], what, NULL)) != LMP_OK) return st;
    }
    return check_blobs(c, b->outputs, b->n_outputs);
}

static enum lmp_status validate(const Lmp__Envelope *env, const char *peer, struct lmp_err *err) {
    struct vctx c = {err, lmp_wire_body_name(env->body_case), peer};
    /* every oneof case points at its body; a hand-built envelope might not */
    if (env->body_case != LMP__ENVELOPE__BODY__NOT_SET && env->hello == NULL)
        return bad(&c, "body pointer is NULL");
    switch (env->body_case) {
    case LMP__ENVELOPE__BODY_HELLO:
        if (lmp_peer_of_role(env->hello->role) == 0 ||
            env->hello->role == LMP__ROLE__ROLE_COORDINATOR)
            return bad(&c, "role %d cannot connect", (int)env->hello->role);
        if (env->hello->proto_major != env->version)
            return bad(&c, "protocol %u inside an envelope of protocol %u", env->hello->proto_major,
                       env->version);
        if (env->hello->caps && !device_ok(env->hello->caps->device))
            return bad(&c, "the device is not cpu or cuda:N");
        return LMP_OK;
    case LMP__ENVELOPE__BODY_HELLO_ACK:
        if (env->hello_ack->proto_major != env->version)
            return bad(&c, "protocol %u inside an envelope of protocol %u",
                       env->hello_ack->proto_major, env->version);
        return LMP_OK;
    case LMP__ENVELOPE__BODY_ERROR:
        return empty(env->error->code) ? bad(&c, "no error code") : LMP_OK;
    case LMP__ENVELOPE__BODY_JOB_SUBMIT:
        return check_job_submit(&c, env->job_submit);
    case LMP__ENVELOPE__BODY_JOB_ACCEPTED:
        return env->job_accepted->job_id == 0 ? bad(&c, "job id 0") : LMP_OK;
    case LMP__ENVELOPE__BODY_JOB_CANCEL:
        return env->job_cancel->job_id == 0 ? bad(&c, "job id 0") : LMP_OK;
    case LMP__ENVELOPE__BODY_TASK_ASSIGN:
        return check_task_assign(&c, env->task_assign);
    case LMP__ENVELOPE__BODY_TASK_PROGRESS:
        return check_task_ids(&c, env->task_progress->job_id, env->task_progress->task_id,
                              env->task_progress->attempt);
    case LMP__ENVELOPE__BODY_TASK_RESULT:
        return check_task_result(&c, env->task_result);
    case LMP__ENVELOPE__BODY_TASK_RESULT_ACK:
        return check_task_ids(&c, env->task_result_ack->job_id, env->task_result_ack->task_id,
                              env->task_result_ack->attempt);
    case LMP__ENVELOPE__BODY_TASK_HANDBACK:
        return check_task_ids(&c, env->task_handback->job_id, env->task_handback->task_id,
                              env->task_handback->attempt);
    case LMP__ENVELOPE__BODY_TASK_CANCEL:
        return env->task_cancel->job_id == 0 ? bad(&c, "job id 0") : LMP_OK;
    case LMP__ENVELOPE__BODY_ROWS_PARTIAL:
        if (env->rows_partial->step == 0) return bad(&c, "rows step 0");
        if (env->rows_partial->ipart.len % 8 != 0)
            return bad(&c, "int64 part of %zu bytes", env->rows_partial->ipart.len);
        return check_task_ids(&c, env->rows_partial->job_id, env->rows_partial->task_id,
                              env->rows_partial->attempt);
    case LMP__ENVELOPE__BODY_ROWS_SUM:
        if (env->rows_sum->step == 0) return bad(&c, "rows step 0");
        if (env->rows_sum->isum.len % 8 != 0)
            return bad(&c, "int64 sum of %zu bytes", env->rows_sum->isum.len);
        return check_task_ids(&c, env->rows_sum->job_id, env->rows_sum->task_id,
                              env->rows_sum->attempt);
    case LMP__ENVELOPE__BODY_HEARTBEAT:
    case LMP__ENVELOPE__BODY_SHUTDOWN:
    case LMP__ENVELOPE__BODY_JOB_QUERY:
    case LMP__ENVELOPE__BODY_JOB_STATUS:
    case LMP__ENVELOPE__BODY_WORKER_QUERY:
    case LMP__ENVELOPE__BODY_WORKER_LIST:
    case LMP__ENVELOPE__BODY_LOG_QUERY:
    case LMP__ENVELOPE__BODY_LOG_CHUNK:
        return LMP_OK; /* informational: any values are acceptable */
    case LMP__ENVELOPE__BODY__NOT_SET:
        return bad(&c, "no body");
    default:
        return bad(&c, "unknown body kind %d", (int)env->body_case);
    }
}

enum lmp_status lmp_wire_validate(const Lmp__Envelope *env, const char *peer, struct lmp_err *err) {
    assert(env);
    return validate(env, peer ? peer : "?", err);
}

enum lmp_status lmp_wire_check_sender(const Lmp__Envelope *env, enum lmp_peer from,
                                      const char *peer, struct lmp_err *err) {
    assert(env);
    const struct lmp_wire_kind *k = lmp_wire_kind_of(env->body_case);
    if (k == NULL)
        return lmp_err_set(err, LMP_EPROTO, "peer '%s' sent a frame without a known body", peer);
    if ((k->from & (unsigned)from) == 0 || from == 0)
        return lmp_err_set(err, LMP_EPROTO, "%s '%s' may not send %s", lmp_peer_name(from), peer,
                           k->name);
    return LMP_OK;
}

/* ---------------------------------------------------------------- bounded allocator */

/* Every block carries its size in front so that the budget can be given back on free.
 * The header keeps the payload aligned for any type. */
union blk_hdr {
    size_t      size;
    max_align_t align;
};

struct budget {
    size_t used, limit; /* bytes */
    bool   exceeded;
};

static void *budget_alloc(void *data, size_t size) {
    struct budget *b = data;
    size_t         total;
    if (__builtin_add_overflow(size, sizeof(union blk_hdr), &total) || total > b->limit - b->used) {
        b->exceeded = true;
        return NULL;
    }
    union blk_hdr *h = malloc(total);
    if (h == NULL) return NULL;
    h->size = total;
    b->used += total;
    return h + 1;
}

/* data is the budget while unpacking, NULL when lmp_wire_free releases the envelope. */
static void budget_free(void *data, void *ptr) {
    if (ptr == NULL) return;
    union blk_hdr *h = (union blk_hdr *)ptr - 1;
    if (data) ((struct budget *)data)->used -= h->size;
    free(h);
}

void lmp_wire_free(Lmp__Envelope **env) {
    assert(env);
    if (*env == NULL) return;
    ProtobufCAllocator a = {budget_alloc, budget_free, NULL};
    protobuf_c_message_free_unpacked(&(*env)->base, &a);
    *env = NULL;
}

/* ---------------------------------------------------------------- frames */

enum lmp_status lmp_wire_pack(const Lmp__Envelope *env, uint8_t **out, size_t *out_len,
                              struct lmp_err *err) {
    assert(env && out && out_len);
    *out     = NULL;
    *out_len = 0;
    if (env->version != LMP_PROTO_VERSION)
        return lmp_err_set(err, LMP_EINVAL, "refusing to send a frame of protocol %u (this is %u)",
                           env->version, LMP_PROTO_VERSION);
    const struct lmp_wire_kind *k = lmp_wire_kind_of(env->body_case);
    if (k == NULL)
        return lmp_err_set(err, LMP_EINVAL, "refusing to send a frame without a known body");
    struct lmp_err verr = {0};
    if (validate(env, NULL, &verr) != LMP_OK) return lmp_err_set(err, LMP_EINVAL, "%s", verr.msg);
    size_t n = protobuf_c_message_get_packed_size(&env->base);
    if (n > k->max_frame)
        return lmp_err_set(err, LMP_EINVAL, "%s of %zu bytes exceeds its limit of %zu bytes",
                           k->name, n, k->max_frame);
    uint8_t *buf = malloc(n ? n : 1);
    if (buf == NULL)
        return lmp_err_set(err, LMP_ENOMEM, "out of memory packing a %s of %zu bytes", k->name, n);
    size_t m = protobuf_c_message_pack(&env->base, buf);
    assert(m == n);
    (void)m;
    *out     = buf;
    *out_len = n;
    return LMP_OK;
}

/* What the top-level scan learns about a frame without allocating. */
struct head {
    bool     has_version;
    uint64_t version;
    uint32_t body_field; /* last known body field, else the last unknown field >= 10 */
    size_t   body_off, body_len;
};

static bool read_varint(const uint8_t *p, size_t len, size_t *pos, uint64_t *v) {
    uint64_t x = 0;
    for (int shift = 0; shift < 64 && *pos < len; shift += 7) {
        uint8_t b = p[(*pos)++];
        x |= (uint64_t)(b & 0x7f) << shift;
        if ((b & 0x80) == 0) {
            *v = x;
            return true;
        }
    }
    return false;
}

/* Every unknown field kept by protobuf-c, at any depth, has a valid field number (>= 1). */
static bool unknown_fields_ok(const ProtobufCMessage *m, int depth) {
    if (m == NULL) return true;
    if (depth > 32) return false;
    for (unsigned i = 0; i < m->n_unknown_fields; i++)
        if (m->unknown_fields[i].tag == 0) return false;
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->type != PROTOBUF_C_TYPE_MESSAGE) continue;
        const char *member = (const char *)m + f->offset;
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            if (*(const uint32_t *)((const char *)m + f->quantifier_offset) != f->id) continue;
            if (!unknown_fields_ok(*(const ProtobufCMessage *const *)member, depth + 1))
                return false;
        } else if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)((const char *)m + f->quantifier_offset);
            const ProtobufCMessage *const *arr = *(const ProtobufCMessage *const *const *)member;
            for (size_t k = 0; k < n; k++)
                if (!unknown_fields_ok(arr[k], depth + 1)) return false;
        } else if (!unknown_fields_ok(*(const ProtobufCMessage *const *)member, depth + 1)) {
            return false;
        }
    }
    return true;
}

static enum lmp_status scan_head(const uint8_t *p, size_t len, const char *peer, struct head *h,
                                 struct lmp_err *err) {
    size_t pos = 0;
    memset(h, 0, sizeof(*h));
    while (pos < len) {
        size_t   at = pos;
        uint64_t tag, v;
        if (!read_varint(p, len, &pos, &tag) || (tag >> 3) == 0 || (tag >> 3) > 0x1fffffff)
            goto malformed;
        uint32_t field = (uint32_t)(tag >> 3);
        switch (tag & 7) {
        case 0:
            if (!read_varint(p, len, &pos, &v)) goto malformed;
            if (field == 1) {
                h->has_version = true;
                h->version     = v;
            }
            break;
        case 1:
            if (len - pos < 8) goto malformed;
            pos += 8;
            break;
        case 2:
            if (!read_varint(p, len, &pos, &v) || v > len - pos) goto malformed;
            /* the oneof keeps its last member; unknown fields are not members */
            if (field >= 10 &&
                (lmp_wire_kind_of((Lmp__Envelope__BodyCase)field) || h->body_field == 0 ||
                 lmp_wire_kind_of((Lmp__Envelope__BodyCase)h->body_field) == NULL)) {
                h->body_field = field;
                h->body_off   = pos;
                h->body_len   = (size_t)v;
            }
            pos += (size_t)v;
            break;
        case 5:
            if (len - pos < 4) goto malformed;
            pos += 4;
            break;
        default:
            goto malformed;
        }
        if ((field == 1 && (tag & 7) != 0) || (field >= 10 && (tag & 7) != 2)) {
            pos = at;
            goto malformed;
        }
        continue;
    malformed:
        return lmp_err_set(err, LMP_EPROTO,
                           "malformed frame from peer '%s' (%zu bytes): bad field at byte %zu",
                           peer, len, at);
    }
    return LMP_OK;
}

/* Copy s into out (cap bytes) replacing control and non-ASCII bytes with '?', so that a
 * peer's text cannot forge log lines or terminal escapes. */
static void sanitize(char *out, size_t cap, const char *s) {
    size_t i = 0;
    for (; s && s[i] && i + 1 < cap; i++) out[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
    if (cap) out[i] = '\0';
}

enum lmp_status lmp_wire_unpack(const uint8_t *data, size_t len, size_t max_frame, const char *peer,
                                Lmp__Envelope **env, struct lmp_err *err) {
    assert(env && (data || len == 0));
    *env = NULL;
    if (peer == NULL) peer = "?";
    if (max_frame == 0) max_frame = LMP_WIRE_MAX_FRAME;
    if (len == 0) return lmp_err_set(err, LMP_EPROTO, "empty frame from peer '%s'", peer);
    if (len > max_frame)
        return lmp_err_set(err, LMP_EPROTO,
                           "frame of %zu bytes from peer '%s' exceeds the limit of %zu bytes", len,
                           peer, max_frame);

    struct head     h;
    enum lmp_status st = scan_head(data, len, peer, &h, err);
    if (st != LMP_OK) return st;
    if (!h.has_version)
        return lmp_err_set(err, LMP_EPROTO, "frame from peer '%s' carries no protocol version",
                           peer);
    if (h.version != LMP_PROTO_VERSION) {
        /* Envelope.error and Error.{code,message} are frozen: a refusal stays readable. */
        char said[300] = "";
        if (h.body_field == LMP__ENVELOPE__BODY_ERROR && h.body_len <= LMP_WIRE_MAX_CONTROL) {
            struct budget      b = {0, 2 * h.body_len + 4096, false};
            ProtobufCAllocator a = {budget_alloc, budget_free, &b};
            Lmp__Error        *e = lmp__error__unpack(&a, h.body_len, data + h.body_off);
            if (e) {
                char code[32], msg[256];
                sanitize(code, sizeof(code), e->code);
                sanitize(msg, sizeof(msg), e->message);
                snprintf(said, sizeof(said), "; it says: %s: %s", code, msg);
                lmp__error__free_unpacked(e, &a);
            }
        }
        return lmp_err_set(err, LMP_EVERSION, "peer '%s' speaks protocol %llu, this is %u%s", peer,
                           (unsigned long long)h.version, LMP_PROTO_VERSION, said);
    }
    if (h.body_field == 0)
        return lmp_err_set(err, LMP_EPROTO, "frame from peer '%s' has no body", peer);
    const struct lmp_wire_kind *k = lmp_wire_kind_of((Lmp__Envelope__BodyCase)h.body_field);
    if (k == NULL)
        return lmp_err_set(err, LMP_EPROTO,
                           "frame from peer '%s' has an unknown body kind (field %u)", peer,
                           h.body_field);
    if (len > k->max_frame)
        return lmp_err_set(err, LMP_EPROTO,
                           "%s of %zu bytes from peer '%s' exceeds its limit of %zu bytes", k->name,
                           len, peer, k->max_frame);

    struct budget b = {0, 0, false};
    if (__builtin_mul_overflow(len, (size_t)2, &b.limit) ||
        __builtin_add_overflow(b.limit, LMP_WIRE_MEM_SLACK, &b.limit))
        b.limit = SIZE_MAX;
    ProtobufCAllocator a = {budget_alloc, budget_free, &b};
    Lmp__Envelope     *e = lmp__envelope__unpack(&a, len, data);
    if (e == NULL) {
        if (b.exceeded)
            return lmp_err_set(err, LMP_EPROTO,
                               "%s of %zu bytes from peer '%s' needs more than %zu bytes of memory",
                               k->name, len, peer, b.limit);
        return lmp_err_set(err, LMP_EPROTO, "malformed %s from peer '%s' (%zu bytes)", k->name,
                           peer, len);
    }
    if ((uint32_t)e->body_case != h.body_field || !unknown_fields_ok(&e->base, 0)) {
        /* protobuf-c accepts an over-long tag encoding field number 0 inside nested messages and
         * keeps it as an unknown field that it would re-send as a frame no peer accepts */
        lmp_wire_free(&e);
        return lmp_err_set(err, LMP_EPROTO, "malformed %s from peer '%s' (%zu bytes)", k->name,
                           peer, len);
    }
    if ((st = validate(e, peer, err)) != LMP_OK) {
        lmp_wire_free(&e);
        return st;
    }
    *env = e;
    return LMP_OK;
}

/* ---------------------------------------------------------------- schema digest */

#define SCHEMA_MAX_TYPES 256

struct schema_walk {
    FILE       *f;
    const void *seen[SCHEMA_MAX_TYPES];
    size_t      n_seen;
};

static bool seen(struct schema_walk *w, const void *d) {
    for (size_t i = 0; i < w->n_seen; i++)
        if (w->seen[i] == d) return true;
    assert(w->n_seen < SCHEMA_MAX_TYPES);
    if (w->n_seen < SCHEMA_MAX_TYPES) w->seen[w->n_seen++] = d;
    return false;
}

static void walk_enum(struct schema_walk *w, const ProtobufCEnumDescriptor *d) {
    if (seen(w, d)) return;
    fprintf(w->f, "enum %s\n", d->name);
    for (unsigned i = 0; i < d->n_values; i++)
        fprintf(w->f, "  value %s %d\n", d->values[i].name, d->values[i].value);
}

static void walk_message(struct schema_walk *w, const ProtobufCMessageDescriptor *d) {
    if (seen(w, d)) return;
    fprintf(w->f, "message %s\n", d->name);
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *fd = &d->fields[i];
        fprintf(w->f, "  field %u %s label=%d type=%d", fd->id, fd->name, (int)fd->label,
                (int)fd->type);
        if (fd->type == PROTOBUF_C_TYPE_MESSAGE)
            fprintf(w->f, " %s", ((const ProtobufCMessageDescriptor *)fd->descriptor)->name);
        else if (fd->type == PROTOBUF_C_TYPE_ENUM)
            fprintf(w->f, " %s", ((const ProtobufCEnumDescriptor *)fd->descriptor)->name);
        if (fd->flags & PROTOBUF_C_FIELD_FLAG_PACKED) fprintf(w->f, " packed");
        if (fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            unsigned first = i; /* a oneof is named by its first member's number */
            while (first > 0 && (d->fields[first - 1].flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
                   d->fields[first - 1].quantifier_offset == fd->quantifier_offset)
                first--;
            fprintf(w->f, " oneof=%u", d->fields[first].id);
        }
        fputc('\n', w->f);
    }
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *fd = &d->fields[i];
        if (fd->type == PROTOBUF_C_TYPE_MESSAGE)
            walk_message(w, fd->descriptor);
        else if (fd->type == PROTOBUF_C_TYPE_ENUM)
            walk_enum(w, fd->descriptor);
    }
}

size_t lmp_proto_schema_text(char *buf, size_t cap) {
    char              *text = NULL;
    size_t             n    = 0;
    struct schema_walk w    = {.f = open_memstream(&text, &n)};
    if (w.f == NULL) {
        if (cap) buf[0] = '\0';
        return 0;
    }
    walk_message(&w, &lmp__envelope__descriptor);
    walk_enum(&w, &lmp__role__descriptor);    /* reached from Hello, listed for clarity */
    walk_enum(&w, &lmp__payload__descriptor); /* Blob and Tensor names, and their strings */
    for (unsigned i = 0; i < lmp__payload__descriptor.n_values; i++)
        fprintf(w.f, "payload %s \"%s\"\n", lmp__payload__descriptor.values[i].name,
                lmp_payload_name((Lmp__Payload)lmp__payload__descriptor.values[i].value));
    fclose(w.f);
    if (cap) {
        size_t m = n < cap - 1 ? n : cap - 1;
        memcpy(buf, text, m);
        buf[m] = '\0';
    }
    free(text);
    return n;
}

uint64_t lmp_proto_schema_digest(void) {
    size_t   n    = lmp_proto_schema_text(NULL, 0);
    char    *text = malloc(n + 1);
    uint64_t hash = 0xcbf29ce484222325ull; /* FNV-1a 64 offset basis */
    if (text == NULL) return 0;
    lmp_proto_schema_text(text, n + 1);
    for (size_t i = 0; i < n; i++) {
        hash ^= (uint8_t)text[i];
        hash *= 0x100000001b3ull; /* FNV-1a 64 prime */
    }
    free(text);
    return hash;
}
