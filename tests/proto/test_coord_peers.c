/*  test_coord_peers - the coordinator refuses bad peers without harm
 *
 *  Garbage frames, a frame of another protocol version, a bad multipart message, a
 *  request before Hello and a body the role may not send each get an Error (EPROTO or
 *  EVERSION) and leave the coordinator serving: a well-behaved CLI still gets its
 *  answers afterwards.
 *
 *  Without arguments the coordinator runs in a thread of this program (no job). With an
 *  endpoint argument, the same attacks go to that coordinator (tests/integration/
 *  cluster_basic.sh does so while a job runs, and checks the job is undisturbed).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "proto/client.h"
#include "coordinator/coord.h"
#include "proto/zsock.h"
#include "tests/check.h"

static const char *endpoint;
static char        bound[256];

static void *dealer(void *ctx, const char *id) {
    struct lmp_err err = {0};
    void          *s   = zmq_socket(ctx, ZMQ_DEALER);
    CHECK(s != NULL);
    CHECK(lmp_zsock_configure(s, 0, 2000, &err) == LMP_OK);
    CHECK(lmp_zsock_set_id(s, id, &err) == LMP_OK);
    CHECK(zmq_connect(s, endpoint) == 0);
    return s;
}

/* Receive one reply within 3 s; expect an Error with the given code. */
static void expect_error(void *s, enum lmp_status want, const char *what) {
    Lmp__Envelope  *env = NULL;
    struct lmp_err  err = {0};
    enum lmp_status st  = lmp_zsock_recv(s, 3000, 0, NULL, "coordinator", &env, &err);
    CHECK(st == LMP_OK && env != NULL);
    if (env == NULL) {
        fprintf(stderr, "  %s: no reply (%s)\n", what, err.msg);
        return;
    }
    CHECK(env->body_case == LMP__ENVELOPE__BODY_ERROR);
    if (env->body_case == LMP__ENVELOPE__BODY_ERROR) {
        enum lmp_status code = LMP_OK;
        CHECK(lmp_status_from_name(env->error->code, &code));
        CHECK(code == want);
        fprintf(stderr, "  %s -> %s: %s\n", what, env->error->code, env->error->message);
    }
    lmp_wire_free(&env);
}

/* A good CLI session: Hello, JobQuery -> JobStatus. */
static void check_serving(void) {
    struct lmp_client *cl  = NULL;
    struct lmp_err     err = {0};
    CHECK(lmp_client_connect(endpoint, 5000, &cl, &err) == LMP_OK);
    if (cl == NULL) return;
    Lmp__Envelope env, *rep = NULL;
    Lmp__JobQuery q = LMP__JOB_QUERY__INIT;
    lmp_wire_init(&env, 0, 0);
    env.body_case = LMP__ENVELOPE__BODY_JOB_QUERY;
    env.job_query = &q;
    CHECK(lmp_client_call(cl, &env, &rep, &err) == LMP_OK);
    CHECK(rep && rep->body_case == LMP__ENVELOPE__BODY_JOB_STATUS);
    lmp_wire_free(&rep);
    lmp_client_close(&cl);
}

static void test_garbage_frames_are_refused(void) {
    void                *ctx    = zmq_ctx_new();
    void                *s      = dealer(ctx, "garbage");
    struct lmp_err       err    = {0};
    static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                   0xff, 0xff, 0xff, 0xff, 0x01};
    CHECK(lmp_zsock_send_frame(s, NULL, junk, sizeof(junk), "coordinator", &err) == LMP_OK);
    expect_error(s, LMP_EPROTO, "garbage bytes");
    static const uint8_t text[] = "GET / HTTP/1.0\r\n\r\n";
    CHECK(lmp_zsock_send_frame(s, NULL, text, sizeof(text) - 1, "coordinator", &err) == LMP_OK);
    expect_error(s, LMP_EPROTO, "http request");
    /* two frames in one message: drained and refused */
    CHECK(zmq_send(s, "a", 1, ZMQ_SNDMORE) == 1 && zmq_send(s, "b", 1, 0) == 1);
    expect_error(s, LMP_EPROTO, "multipart");
    zmq_close(s);
    zmq_ctx_term(ctx);
    check_serving();
}

static void test_other_version_is_refused(void) {
    void          *ctx = zmq_ctx_new();
    void          *s   = dealer(ctx, "time-traveller");
    struct lmp_err err = {0};
    Lmp__Envelope  env;
    Lmp__Hello     hello;
    lmp_wire_hello_init(&env, &hello, 1, LMP__ROLE__ROLE_WORKER, "time-traveller", NULL);
    uint8_t *buf = NULL;
    size_t   len = 0;
    CHECK(lmp_wire_pack(&env, &buf, &len, &err) == LMP_OK);
    /* Envelope.version is field 1, a varint, written first: 0x08 <version> */
    CHECK(len > 2 && buf[0] == 0x08 && buf[1] == LMP_PROTO_VERSION);
    buf[1] = LMP_PROTO_VERSION + 1;
    CHECK(lmp_zsock_send_frame(s, NULL, buf, len, "coordinator", &err) == LMP_OK);
    free(buf);
    expect_error(s, LMP_EVERSION, "protocol version + 1");
    zmq_close(s);
    zmq_ctx_term(ctx);
    check_serving();
}

static void test_requests_before_hello_and_wrong_role(void) {
    void          *ctx = zmq_ctx_new();
    void          *s   = dealer(ctx, "rude");
    struct lmp_err err = {0};
    Lmp__Envelope  env;
    Lmp__JobQuery  q = LMP__JOB_QUERY__INIT;
    lmp_wire_init(&env, 1, 0);
    env.body_case = LMP__ENVELOPE__BODY_JOB_QUERY;
    env.job_query = &q;
    CHECK(lmp_zsock_send(s, NULL, &env, "coordinator", &err) == LMP_OK);
    expect_error(s, LMP_EPROTO, "query before hello");
    /* a CLI may not send a TaskResult */
    Lmp__Hello hello;
    lmp_wire_hello_init(&env, &hello, 2, LMP__ROLE__ROLE_CLI, "rude", NULL);
    CHECK(lmp_zsock_send(s, NULL, &env, "coordinator", &err) == LMP_OK);
    Lmp__Envelope *rep = NULL;
    CHECK(lmp_zsock_recv(s, 3000, 0, NULL, "coordinator", &rep, &err) == LMP_OK && rep &&
          rep->body_case == LMP__ENVELOPE__BODY_HELLO_ACK);
    lmp_wire_free(&rep);
    Lmp__TaskHandback hb = LMP__TASK_HANDBACK__INIT;
    hb.job_id = 1, hb.task_id = 1, hb.attempt = 1;
    lmp_wire_init(&env, 3, 0);
    env.body_case     = LMP__ENVELOPE__BODY_TASK_HANDBACK;
    env.task_handback = &hb;
    CHECK(lmp_zsock_send(s, NULL, &env, "coordinator", &err) == LMP_OK);
    expect_error(s, LMP_EPROTO, "cli sends a worker message");
    zmq_close(s);
    zmq_ctx_term(ctx);
    check_serving();
}

static volatile sig_atomic_t stop;

static void *coord_thread(void *arg) {
    struct lmp_err err = {0};
    CHECK(lmp_coord_run(arg, &stop, &err) == LMP_OK);
    return NULL;
}

int main(int argc, char **argv) {
    struct lmp_coord *c = NULL;
    pthread_t         th;
    if (argc > 1) {
        endpoint = argv[1];
    } else {
        struct lmp_coord_opts o;
        struct lmp_err        err = {0};
        lmp_coord_opts_init(&o);
        o.bind = "tcp://127.0.0.1:*";
        CHECK(lmp_coord_new(&o, &c, &err) == LMP_OK);
        if (c == NULL) return check_report();
        snprintf(bound, sizeof(bound), "%s", lmp_coord_endpoint(c));
        endpoint = bound;
        CHECK(pthread_create(&th, NULL, coord_thread, c) == 0);
    }
    RUN(test_garbage_frames_are_refused);
    RUN(test_other_version_is_refused);
    RUN(test_requests_before_hello_and_wrong_role);
    if (c) {
        stop = 1;
        pthread_join(th, NULL);
        lmp_coord_destroy(&c);
    }
    return check_report();
}
