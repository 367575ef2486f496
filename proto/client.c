/*  client - see client.h */
#define _GNU_SOURCE
#include "proto/client.h"
#include "proto/zsock.h" /* defines: lmp_zsock_* */

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

struct lmp_client {
    void    *zctx, *sock;
    char    *endpoint; /* owned: the endpoint as given, for messages */
    int      timeout_ms;
    uint64_t seq;
};

static uint64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Wait for the reply to seq. */
static enum lmp_status wait_reply(struct lmp_client *cl, uint64_t seq, Lmp__Envelope **reply,
                                  struct lmp_err *err) {
    const uint64_t t0 = mono_ms();
    *reply            = NULL;
    for (;;) {
        const uint64_t el = mono_ms() - t0;
        if (el >= (uint64_t)cl->timeout_ms)
            return lmp_err_set(err, LMP_EIO,
                               "cannot reach the coordinator at '%s' (no answer in "
                               "%.1fs)",
                               cl->endpoint, cl->timeout_ms / 1000.0);
        Lmp__Envelope  *env = NULL;
        enum lmp_status st =
            lmp_zsock_recv(cl->sock, cl->timeout_ms - (int)el, 0, NULL, "coordinator", &env, err);
        if (st != LMP_OK) return st;
        if (env == NULL) continue;
        if (env->reply_to != seq && env->reply_to != 0) { /* an old reply */
            lmp_wire_free(&env);
            continue;
        }
        if (env->body_case == LMP__ENVELOPE__BODY_ERROR) {
            enum lmp_status code = LMP_EPROTO;
            lmp_status_from_name(env->error->code ? env->error->code : "", &code);
            if (code == LMP_OK) {
                *reply = env;
                return LMP_OK;
            }
            st = lmp_err_set(err, code, "%s", env->error->message ? env->error->message : "error");
            lmp_wire_free(&env);
            return st;
        }
        *reply = env;
        return LMP_OK;
    }
}

enum lmp_status lmp_client_call(struct lmp_client *cl, Lmp__Envelope *req, Lmp__Envelope **reply,
                                struct lmp_err *err) {
    assert(cl && req && reply);
    req->seq           = ++cl->seq;
    enum lmp_status st = lmp_zsock_send(cl->sock, NULL, req, "coordinator", err);
    if (st != LMP_OK) return st;
    return wait_reply(cl, req->seq, reply, err);
}

enum lmp_status lmp_client_connect(const char *endpoint, int timeout_ms, struct lmp_client **out,
                                   struct lmp_err *err) {
    return lmp_client_connect_curve(endpoint, timeout_ms, NULL, out, err);
}

enum lmp_status lmp_client_connect_curve(const char *endpoint, int timeout_ms,
                                         const struct lmp_curve_client *curve,
                                         struct lmp_client **out, struct lmp_err *err) {
    assert(endpoint && out);
    struct lmp_client *cl = calloc(1, sizeof(*cl));
    enum lmp_status    st = LMP_OK;
    *out                  = NULL;
    if (cl == NULL) return lmp_err_set(err, LMP_ENOMEM, "out of memory");
    if ((cl->endpoint = strdup(endpoint)) == NULL) {
        free(cl);
        return lmp_err_set(err, LMP_ENOMEM, "out of memory");
    }
    cl->timeout_ms = timeout_ms > 0 ? timeout_ms : 5000;
    if ((cl->zctx = zmq_ctx_new()) == NULL ||
        (cl->sock = zmq_socket(cl->zctx, ZMQ_DEALER)) == NULL) {
        st = lmp_err_set(err, LMP_EIO, "cannot create a zeromq socket: %s", zmq_strerror(errno));
        goto fail;
    }
    char id[64];
    snprintf(id, sizeof(id), "cli-%d-%llu", (int)getpid(), (unsigned long long)mono_ms());
    if ((st = lmp_zsock_configure(cl->sock, LMP_WIRE_MAX_STATUS, cl->timeout_ms, err)) ||
        (st = lmp_zsock_set_id(cl->sock, id, err)))
        goto fail;
    if ((st = lmp_zsock_connect(cl->zctx, cl->sock, endpoint, curve, cl->timeout_ms, err)))
        goto fail;
    Lmp__Envelope env, *rep = NULL;
    Lmp__Hello    hello;
    char          user[64];
    snprintf(user, sizeof(user), "%s", getenv("USER") ? getenv("USER") : "cli");
    lmp_wire_hello_init(&env, &hello, 0, LMP__ROLE__ROLE_CLI, user, NULL);
    if ((st = lmp_client_call(cl, &env, &rep, err))) goto fail;
    bool ok = rep->body_case == LMP__ENVELOPE__BODY_HELLO_ACK;
    lmp_wire_free(&rep);
    if (!ok) {
        st = lmp_err_set(err, LMP_EPROTO, "coordinator at '%s' did not answer Hello", endpoint);
        goto fail;
    }
    *out = cl;
    return LMP_OK;
fail:
    lmp_client_close(&cl);
    return st;
}

void lmp_client_close(struct lmp_client **clp) {
    struct lmp_client *cl = *clp;
    if (cl == NULL) return;
    if (cl->sock) zmq_close(cl->sock);
    if (cl->zctx) zmq_ctx_term(cl->zctx);
    free(cl->endpoint);
    free(cl);
    *clp = NULL;
}
