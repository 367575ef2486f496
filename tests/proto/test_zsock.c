/*  test_zsock - Envelopes over a loopback ROUTER/DEALER pair: Hello/HelloAck, a worker of
 *  another protocol version refused with a clear message on both sides, receive timeouts,
 *  malformed multipart messages, a gone peer.
 */
#include "proto/zsock.h"
#include "tests/check.h" /* defines: CHECK, RUN, check_report */

#include <string.h>
#include <zmq.h>

#define TIMEOUT_MS 5000 /* generous: a loaded CI machine; a hang would fail */

struct pair {
    void *ctx, *router, *dealer;
    char  endpoint[256];
};

static bool pair_open(struct pair *p, const char *dealer_id) {
    struct lmp_err err = {0};
    size_t         n   = sizeof(p->endpoint);
    memset(p, 0, sizeof(*p));
    p->ctx    = zmq_ctx_new();
    p->router = zmq_socket(p->ctx, ZMQ_ROUTER);
    p->dealer = zmq_socket(p->ctx, ZMQ_DEALER);
    if (!p->ctx || !p->router || !p->dealer) return false;
    if (lmp_zsock_configure(p->router, 0, TIMEOUT_MS, &err) != LMP_OK ||
        lmp_zsock_configure(p->dealer, 0, TIMEOUT_MS, &err) != LMP_OK ||
        (dealer_id && lmp_zsock_set_id(p->dealer, dealer_id, &err) != LMP_OK)) {
        fprintf(stderr, "  %s\n", err.msg);
        return false;
    }
    if (zmq_bind(p->router, "tcp://127.0.0.1:*") != 0 ||
        zmq_getsockopt(p->router, ZMQ_LAST_ENDPOINT, p->endpoint, &n) != 0 ||
        zmq_connect(p->dealer, p->endpoint) != 0)
        return false;
    return true;
}

static void pair_close(struct pair *p) {
    if (p->dealer) zmq_close(p->dealer);
    if (p->router) zmq_close(p->router);
    if (p->ctx) zmq_ctx_term(p->ctx);
}

static void test_hello_handshake(void) {
    struct pair p;
    CHECK(pair_open(&p, "w1"));
    struct lmp_err    err = {0};
    Lmp__Envelope     env, *got = NULL;
    Lmp__Hello        h;
    Lmp__Capabilities caps = LMP__CAPABILITIES__INIT;
    caps.cores             = 2;
    lmp_wire_hello_init(&env, &h, 1, LMP__ROLE__ROLE_WORKER, "w1", &caps);
    CHECK(lmp_zsock_send(p.dealer, NULL, &env, NULL, &err) == LMP_OK);

    struct lmp_zpeer from;
    CHECK(lmp_zsock_recv(p.router, TIMEOUT_MS, 0, &from, NULL, &got, &err) == LMP_OK);
    CHECK(got && got->body_case == LMP__ENVELOPE__BODY_HELLO);
    CHECK(strcmp(from.name, "w1") == 0 && from.id_len == 2);
    if (got) {
        CHECK(lmp_wire_check_sender(got, lmp_peer_of_role(got->hello->role), from.name, &err) ==
              LMP_OK);
        CHECK(got->hello->caps && got->hello->caps->cores == 2);
        Lmp__Envelope reply;
        Lmp__HelloAck ack;
        lmp_wire_hello_ack_init(&reply, &ack, 1, got->seq, "coord", "w-1", 500, 5000, 0);
        CHECK(lmp_zsock_send(p.router, &from, &reply, NULL, &err) == LMP_OK);
    }
    lmp_wire_free(&got);

    CHECK(lmp_zsock_recv(p.dealer, TIMEOUT_MS, 0, NULL, NULL, &got, &err) == LMP_OK);
    CHECK(got && got->body_case == LMP__ENVELOPE__BODY_HELLO_ACK);
    if (got) {
        CHECK(got->reply_to == 1 && strcmp(got->hello_ack->peer_id, "w-1") == 0);
        CHECK(lmp_wire_check_sender(got, LMP_PEER_COORDINATOR, "coord", &err) == LMP_OK);
    }
    lmp_wire_free(&got);
    if (err.msg[0]) fprintf(stderr, "  %s\n", err.msg);
    pair_close(&p);
}

static void test_version_mismatch_refused_on_both_sides(void) {
    struct pair p;
    CHECK(pair_open(&p, "w-new"));
    struct lmp_err err = {0};

    /* a worker of the next protocol version says Hello */
    Lmp__Envelope env;
    Lmp__Hello    h;
    lmp_wire_hello_init(&env, &h, 1, LMP__ROLE__ROLE_WORKER, "w-new", NULL);
    env.version = h.proto_major = LMP_PROTO_VERSION + 1;
    size_t   len                = protobuf_c_message_get_packed_size(&env.base);
    uint8_t *buf                = malloc(len);
    protobuf_c_message_pack(&env.base, buf);
    CHECK(lmp_zsock_send_frame(p.dealer, NULL, buf, len, NULL, &err) == LMP_OK);
    free(buf);

    /* coordinator side: EVERSION, sender known, reply with an Error of its own version */
    struct lmp_zpeer from;
    Lmp__Envelope   *got = NULL;
    CHECK(lmp_zsock_recv(p.router, TIMEOUT_MS, 0, &from, NULL, &got, &err) == LMP_EVERSION);
    CHECK(got == NULL);
    char want[160];
    snprintf(want, sizeof(want), "peer 'w-new' speaks protocol %u, this is %u",
             LMP_PROTO_VERSION + 1, LMP_PROTO_VERSION);
    CHECK(strcmp(err.msg, want) == 0);
    if (strcmp(err.msg, want) != 0) fprintf(stderr, "  got: %s\n", err.msg);
    Lmp__Envelope refusal;
    Lmp__Error    eb;
    char          text[600];
    snprintf(text, sizeof(text), "coordinator speaks protocol %u; %s", LMP_PROTO_VERSION, err.msg);
    lmp_wire_error_init(&refusal, &eb, 1, 1, LMP_EVERSION, text);
    struct lmp_err e2 = {0};
    CHECK(lmp_zsock_send(p.router, &from, &refusal, NULL, &e2) == LMP_OK);

    /* worker side (another version): the frozen Envelope/Error fields still read */
    zmq_msg_t m;
    zmq_msg_init(&m);
    int rcvtimeo = TIMEOUT_MS;
    zmq_setsockopt(p.dealer, ZMQ_RCVTIMEO, &rcvtimeo, sizeof(rcvtimeo));
    CHECK(zmq_msg_recv(&m, p.dealer, 0) > 0);
    Lmp__Envelope *raw = lmp__envelope__unpack(NULL, zmq_msg_size(&m), zmq_msg_data(&m));
    CHECK(raw && raw->version == LMP_PROTO_VERSION && raw->body_case == LMP__ENVELOPE__BODY_ERROR);
    if (raw && raw->body_case == LMP__ENVELOPE__BODY_ERROR) {
        CHECK(strcmp(raw->error->code, "EVERSION") == 0);
        CHECK(strstr(raw->error->message, want) != NULL);
    }
    if (raw) lmp__envelope__free_unpacked(raw, NULL);
    zmq_msg_close(&m);
    pair_close(&p);

    /* and the other way round: a coordinator of another version refuses this worker */
    CHECK(pair_open(&p, "w-old"));
    lmp_wire_error_init(&refusal, &eb, 1, 1, LMP_EVERSION,
                        "coordinator speaks protocol 7, worker 1: refused");
    refusal.version = 7;
    len             = protobuf_c_message_get_packed_size(&refusal.base);
    buf             = malloc(len);
    protobuf_c_message_pack(&refusal.base, buf);
    struct lmp_zpeer to = {.id_len = 5};
    memcpy(to.id, "w-old", 5);
    snprintf(to.name, sizeof(to.name), "w-old");
    /* the router only knows the dealer once it has heard from it */
    lmp_wire_hello_init(&env, &h, 1, LMP__ROLE__ROLE_WORKER, "w-old", NULL);
    CHECK(lmp_zsock_send(p.dealer, NULL, &env, NULL, &err) == LMP_OK);
    CHECK(lmp_zsock_recv(p.router, TIMEOUT_MS, 0, &from, NULL, &got, &err) == LMP_OK);
    lmp_wire_free(&got);
    CHECK(lmp_zsock_send_frame(p.router, &to, buf, len, NULL, &err) == LMP_OK);
    free(buf);
    struct lmp_err e3 = {0};
    CHECK(lmp_zsock_recv(p.dealer, TIMEOUT_MS, 0, NULL, "coordinator", &got, &e3) == LMP_EVERSION);
    snprintf(
        want, sizeof(want),
        "peer 'coordinator' speaks protocol 7, this is %u; it says: EVERSION: coordinator speaks "
        "protocol 7, worker 1: refused",
        LMP_PROTO_VERSION);
    CHECK(strcmp(e3.msg, want) == 0);
    if (strcmp(e3.msg, want) != 0) fprintf(stderr, "  got: %s\n", e3.msg);
    pair_close(&p);
}

static void test_timeout_and_bad_multipart(void) {
    struct pair p;
    CHECK(pair_open(&p, NULL)); /* binary routing id, shown in hex */
    struct lmp_err   err = {0};
    Lmp__Envelope   *got = (Lmp__Envelope *)1;
    struct lmp_zpeer from;
    CHECK(lmp_zsock_recv(p.router, 30, 0, &from, NULL, &got, &err) == LMP_OK);
    CHECK(got == NULL); /* timed out */

    /* three frames from a DEALER (a REQ-style empty delimiter): refused, socket still usable */
    CHECK(zmq_send(p.dealer, "", 0, ZMQ_SNDMORE) == 0);
    CHECK(zmq_send(p.dealer, "x", 1, 0) == 1);
    CHECK(lmp_zsock_recv(p.router, TIMEOUT_MS, 0, &from, NULL, &got, &err) == LMP_EPROTO);
    CHECK(strstr(err.msg, "message of 2 frames") != NULL && strstr(err.msg, "0x") != NULL);
    /* garbage in one frame */
    CHECK(zmq_send(p.dealer, "\xff\xff\xff", 3, 0) == 3);
    struct lmp_err e2 = {0};
    CHECK(lmp_zsock_recv(p.router, TIMEOUT_MS, 0, &from, NULL, &got, &e2) == LMP_EPROTO);
    CHECK(strstr(e2.msg, "malformed frame") != NULL);
    /* and a good one afterwards */
    Lmp__Envelope env;
    Lmp__Hello    h;
    lmp_wire_hello_init(&env, &h, 2, LMP__ROLE__ROLE_CLI, "me", NULL);
    CHECK(lmp_zsock_send(p.dealer, NULL, &env, NULL, &err) == LMP_OK);
    CHECK(lmp_zsock_recv(p.router, TIMEOUT_MS, 0, &from, NULL, &got, &err) == LMP_OK);
    CHECK(got && got->seq == 2);
    lmp_wire_free(&got);

    /* sending to a routing id nobody has: an error, not a silent drop */
    struct lmp_zpeer ghost = {.id_len = 5};
    memcpy(ghost.id, "ghost", 5);
    snprintf(ghost.name, sizeof(ghost.name), "ghost");
    struct lmp_err e3 = {0};
    CHECK(lmp_zsock_send(p.router, &ghost, &env, NULL, &e3) == LMP_EIO);
    CHECK(strcmp(e3.msg, "peer 'ghost' is gone") == 0);
    /* an invalid envelope is not sent at all */
    env.version       = 0;
    struct lmp_err e4 = {0};
    CHECK(lmp_zsock_send(p.dealer, NULL, &env, NULL, &e4) == LMP_EINVAL);
    pair_close(&p);
}

int main(void) {
    RUN(test_hello_handshake);
    RUN(test_version_mismatch_refused_on_both_sides);
    RUN(test_timeout_and_bad_multipart);
    return check_report();
}
