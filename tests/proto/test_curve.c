/*  test_curve - CURVE keys, the ZAP handler and role binding, over real loopback sockets
 *
 *  Key files: lmp_key_generate's format and modes, no overwrite without force, and a
 *  table of bad files, each refused with one line naming the file. The coordinator's
 *  key directory: layout, bad names, duplicates. The bind policy. Then a coordinator
 *  with CURVE in a thread of this program: a listed client gets in; an unlisted key,
 *  no key, a wrong server key, a worker's key used by a client and a client's key used
 *  by a worker are refused at once with LMP_EPERM (never a hang), and the coordinator
 *  counts the ZAP refusals. Last, a worker told by its coordinator that it speaks
 *  another protocol version stops with LMP_EVERSION and says so.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "proto/client.h"
#include "coordinator/coord.h"
#include "coordinator/coord_internal.h" /* struct lmp_coord: the ZAP handler's counters */
#include "proto/keys.h"
#include "proto/zauth.h"
#include "proto/zsock.h"
#include "tests/check.h"
#include "worker/agent.h"

static char tmp[256];

static void path_of(char *buf, size_t cap, const char *rel) {
    snprintf(buf, cap, "%s/%s", tmp, rel);
}

static void write_file(const char *rel, const void *data, size_t len, mode_t mode) {
    char p[512];
    path_of(p, sizeof(p), rel);
    FILE *f = fopen(p, "wb");
    CHECK(f != NULL);
    if (f == NULL) return;
    CHECK(fwrite(data, 1, len, f) == len);
    fclose(f);
    chmod(p, mode);
}

static size_t read_file(const char *rel, char *buf, size_t cap) {
    char p[512];
    path_of(p, sizeof(p), rel);
    FILE *f = fopen(p, "rb");
    if (f == NULL) return 0;
    size_t n = fread(buf, 1, cap, f);
    fclose(f);
    return n;
}

static mode_t mode_of(const char *rel) {
    char        p[512];
    struct stat sb;
    path_of(p, sizeof(p), rel);
    return stat(p, &sb) == 0 ? (sb.st_mode & 0777) : 0;
}

static bool one_line_naming(const struct lmp_err *err, const char *name) {
    return strchr(err->msg, '\n') == NULL && strstr(err->msg, name) != NULL;
}

static void gen(const char *rel, struct lmp_key *pub) {
    char           p[512];
    struct lmp_err err = {0};
    path_of(p, sizeof(p), rel);
    CHECK(lmp_key_generate(p, false, pub, &err) == LMP_OK);
}

static void test_keygen_format_and_modes(void) {
    struct lmp_key pub, sec, derived, read_pub;
    struct lmp_err err = {0};
    char           p[512], buf[128];
    gen("a", &pub);
    CHECK(mode_of("a.key") == 0600);
    size_t n = read_file("a.key", buf, sizeof(buf));
    CHECK(n == LMP_KEY_Z85_LEN + 1 && buf[LMP_KEY_Z85_LEN] == '\n');
    n = read_file("a.pub", buf, sizeof(buf));
    CHECK(n == LMP_KEY_Z85_LEN + 1 && memcmp(buf, pub.z85, LMP_KEY_Z85_LEN) == 0);
    path_of(p, sizeof(p), "a.key");
    CHECK(lmp_key_load_secret(p, &sec, &derived, &err) == LMP_OK);
    CHECK(strcmp(derived.z85, pub.z85) == 0); /* the pair belongs together */
    path_of(p, sizeof(p), "a.pub");
    CHECK(lmp_key_load_public(p, &read_pub, &err) == LMP_OK && strcmp(read_pub.z85, pub.z85) == 0);

    /* no overwrite without force; the files are untouched */
    struct lmp_key pub2;
    path_of(p, sizeof(p), "a");
    err = (struct lmp_err){0};
    CHECK(lmp_key_generate(p, false, &pub2, &err) == LMP_EINVAL && one_line_naming(&err, "a.key"));
    n = read_file("a.pub", buf, sizeof(buf));
    CHECK(n > 0 && memcmp(buf, pub.z85, LMP_KEY_Z85_LEN) == 0);
    CHECK(lmp_key_generate(p, true, &pub2, &err) == LMP_OK && strcmp(pub2.z85, pub.z85) != 0);
    CHECK(mode_of("a.key") == 0600);
    /* a missing directory names the file */
    path_of(p, sizeof(p), "no-such-dir/b");
    err = (struct lmp_err){0};
    CHECK(lmp_key_generate(p, false, NULL, &err) == LMP_EIO &&
          one_line_naming(&err, "no-such-dir/b.key"));
}

static void test_bad_key_files_are_refused(void) {
    static const char good[] = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"; /* 40 Z85 chars */
    char              long_key[64], bad_char[64], nul[64];
    snprintf(long_key, sizeof(long_key), "%sA\n", good);
    snprintf(bad_char, sizeof(bad_char), "%s\n", good);
    bad_char[7] = ','; /* not in the Z85 alphabet */
    memcpy(nul, good, 40);
    nul[12]                       = '\0';
    nul[40]                       = '\n';
    static const char big_group[] = "%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%"; /* > 2^32-1 */
    const struct {
        const char     *name;
        const char     *data;
        size_t          len;
        enum lmp_status want;
    } cases[] = {
        {"empty.pub", "", 0, LMP_EFORMAT},
        {"short.pub", good, 39, LMP_EFORMAT},
        {"long.pub", long_key, 42, LMP_EFORMAT},
        {"crlf.pub", "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7\r\n", 42, LMP_EFORMAT},
        {"two-newlines.pub", "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7\n\n", 42, LMP_EFORMAT},
        {"leading-space.pub", " rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7", 41, LMP_EFORMAT},
        {"bad-char.pub", bad_char, 41, LMP_EFORMAT},
        {"nul.pub", nul, 41, LMP_EFORMAT},
        {"overflow.pub", big_group, 40, LMP_EFORMAT},
        {"ok-no-newline.pub", good, 40, LMP_OK},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char           p[512];
        struct lmp_key k;
        struct lmp_err err = {0};
        write_file(cases[i].name, cases[i].data, cases[i].len, 0644);
        path_of(p, sizeof(p), cases[i].name);
        enum lmp_status st = lmp_key_load_public(p, &k, &err);
        CHECK(st == cases[i].want);
        if (st != cases[i].want)
            fprintf(stderr, "  %s: %s (%s)\n", cases[i].name, lmp_status_str(st), err.msg);
        if (cases[i].want != LMP_OK) {
            CHECK(one_line_naming(&err, cases[i].name));
            CHECK(k.z85[0] == '\0');
        }
    }
    /* too large: refused before it is read */
    static char huge[LMP_KEY_FILE_MAX + 10];
    memset(huge, 'a', sizeof(huge));
    write_file("huge.pub", huge, sizeof(huge), 0644);
    char           p[512];
    struct lmp_key k, pub;
    struct lmp_err err = {0};
    path_of(p, sizeof(p), "huge.pub");
    CHECK(lmp_key_load_public(p, &k, &err) == LMP_EFORMAT && one_line_naming(&err, "huge.pub"));
    /* missing, a directory */
    err = (struct lmp_err){0};
    path_of(p, sizeof(p), "missing.pub");
    CHECK(lmp_key_load_public(p, &k, &err) == LMP_ENOENT && one_line_naming(&err, "missing.pub"));
    err = (struct lmp_err){0};
    path_of(p, sizeof(p), ".");
    CHECK(lmp_key_load_public(p, &k, &err) == LMP_EFORMAT);
    /* a secret key others may read */
    gen("loose", &pub);
    path_of(p, sizeof(p), "loose.key");
    chmod(p, 0640);
    err = (struct lmp_err){0};
    CHECK(lmp_key_load_secret(p, &k, NULL, &err) == LMP_EINVAL &&
          one_line_naming(&err, "loose.key"));
    CHECK(strstr(err.msg, "chmod 600") != NULL);
    chmod(p, 0600);
    CHECK(lmp_key_load_secret(p, &k, NULL, &err) == LMP_OK);
}

static void test_endpoint_policy(void) {
    CHECK(lmp_endpoint_is_local("tcp://127.0.0.1:7070"));
    CHECK(lmp_endpoint_is_local("tcp://127.1.2.3:*"));
    CHECK(lmp_endpoint_is_local("tcp://localhost:7070"));
    CHECK(lmp_endpoint_is_local("tcp://[::1]:7070"));
    CHECK(lmp_endpoint_is_local("ipc:///tmp/lmpress.sock"));
    CHECK(!lmp_endpoint_is_local("tcp://0.0.0.0:7070"));
    CHECK(!lmp_endpoint_is_local("tcp://*:7070"));
    CHECK(!lmp_endpoint_is_local("tcp://10.0.0.5:7070"));
    CHECK(!lmp_endpoint_is_local("tcp://[::]:7070"));
    CHECK(!lmp_endpoint_is_local("tcp://eth0:7070"));
    CHECK(!lmp_endpoint_is_local("tcp://128.0.0.1:7070"));
    CHECK(!lmp_endpoint_is_local("tcp://127.0.0.1.evil.example:7070"));
    CHECK(!lmp_endpoint_is_local("tcp://[::1"));
    CHECK(!lmp_endpoint_is_local("pgm://127.0.0.1;239.192.1.1:5555"));
    struct lmp_err err = {0};
    CHECK(lmp_bind_check("tcp://0.0.0.0:7070", false, false, &err) == LMP_EINVAL);
    CHECK(one_line_naming(&err, "0.0.0.0") && strstr(err.msg, "--insecure"));
    CHECK(lmp_bind_check("tcp://0.0.0.0:7070", false, true, &err) == LMP_OK);
    CHECK(lmp_bind_check("tcp://0.0.0.0:7070", true, false, &err) == LMP_OK);
    CHECK(lmp_bind_check("tcp://127.0.0.1:7070", false, false, &err) == LMP_OK);
    /* the coordinator applies it */
    struct lmp_coord_opts o;
    struct lmp_coord     *c = NULL;
    lmp_coord_opts_init(&o);
    o.bind = "tcp://0.0.0.0:*";
    err    = (struct lmp_err){0};
    CHECK(lmp_coord_new(&o, &c, &err) == LMP_EINVAL && c == NULL);
}

/* The coordinator's directory: d/server.key, d/workers/w1.pub, d/clients/alice.pub, and
 * loose key pairs mallory (listed nowhere) and fake-server. */
static struct lmp_key pub_w1, pub_alice;

static void make_dir(const char *rel) {
    char p[512];
    path_of(p, sizeof(p), rel);
    mkdir(p, 0755);
}

static void copy_pub(const char *from, const char *to) {
    char   buf[128];
    size_t n = read_file(from, buf, sizeof(buf));
    write_file(to, buf, n, 0644);
}

static void test_server_dir(void) {
    struct lmp_key pub;
    make_dir("d");
    make_dir("d/workers");
    make_dir("d/clients");
    gen("d/server", &pub);
    gen("w1", &pub_w1);
    gen("alice", &pub_alice);
    gen("mallory", &pub);
    gen("fake-server", &pub);
    copy_pub("w1.pub", "d/workers/w1.pub");
    copy_pub("alice.pub", "d/clients/alice.pub");
    write_file("d/clients/README", "not a key\n", 10, 0644); /* ignored */
    write_file("d/clients/alice.pub~", "junk", 4, 0644);     /* ignored */

    char                    p[512];
    struct lmp_curve_server s;
    struct lmp_err          err = {0};
    path_of(p, sizeof(p), "d");
    CHECK(lmp_curve_server_load(p, &s, &err) == LMP_OK);
    CHECK(s.n_keys == 2);
    uint8_t raw[32];
    CHECK(zmq_z85_decode(raw, pub_w1.z85) != NULL);
    const struct lmp_authorized_key *k = lmp_curve_server_find(&s, raw);
    CHECK(k && k->role == LMP_PEER_WORKER && strcmp(k->name, "w1") == 0);
    CHECK(zmq_z85_decode(raw, pub_alice.z85) != NULL);
    k = lmp_curve_server_find(&s, raw);
    CHECK(k && k->role == LMP_PEER_CLI && strcmp(k->name, "alice") == 0);
    lmp_curve_server_release(&s);

    /* a duplicate across roles, a bad name, a bad key: the whole directory is refused */
    copy_pub("w1.pub", "d/clients/w1-again.pub");
    err = (struct lmp_err){0};
    CHECK(lmp_curve_server_load(p, &s, &err) == LMP_EINVAL &&
          one_line_naming(&err, "w1-again.pub"));
    lmp_curve_server_release(&s);
    char q[512];
    path_of(q, sizeof(q), "d/clients/w1-again.pub");
    unlink(q);
    copy_pub("mallory.pub", "d/clients/bad name.pub");
    err = (struct lmp_err){0};
    CHECK(lmp_curve_server_load(p, &s, &err) == LMP_EINVAL &&
          one_line_naming(&err, "bad name.pub"));
    lmp_curve_server_release(&s);
    path_of(q, sizeof(q), "d/clients/bad name.pub");
    unlink(q);
    write_file("d/workers/broken.pub", "short\n", 6, 0644);
    err = (struct lmp_err){0};
    CHECK(lmp_curve_server_load(p, &s, &err) == LMP_EFORMAT && one_line_naming(&err, "broken.pub"));
    lmp_curve_server_release(&s);
    path_of(q, sizeof(q), "d/workers/broken.pub");
    unlink(q);
    /* no server key */
    path_of(q, sizeof(q), "w1.pub");
    err = (struct lmp_err){0};
    CHECK(lmp_curve_server_load(q, &s, &err) == LMP_ENOENT);
    lmp_curve_server_release(&s);
}

/* ---- a coordinator with CURVE ----------------------------------------------------- */

static volatile sig_atomic_t stop;
static char                  endpoint[256];
static struct lmp_coord     *coord;

static void *coord_thread(void *arg) {
    struct lmp_err err = {0};
    CHECK(lmp_coord_run(arg, &stop, &err) == LMP_OK);
    return NULL;
}

static void client_keys(struct lmp_curve_client *c, const char *key, const char *server) {
    char           kp[512], sp[512];
    struct lmp_err err = {0};
    path_of(kp, sizeof(kp), key);
    path_of(sp, sizeof(sp), server);
    CHECK(lmp_curve_client_load(kp, sp, c, &err) == LMP_OK);
}

/* Connect as a client; expect want. Returns the time it took (ms). */
static void expect_client(const char *what, const struct lmp_curve_client *curve,
                          enum lmp_status want) {
    struct lmp_client *cl  = NULL;
    struct lmp_err     err = {0};
    enum lmp_status    st  = lmp_client_connect_curve(endpoint, 3000, curve, &cl, &err);
    fprintf(stderr, "  %s -> %s %s\n", what, lmp_status_str(st), err.msg);
    CHECK(st == want);
    CHECK(st == LMP_OK || strchr(err.msg, '\n') == NULL);
    if (cl && st == LMP_OK) { /* a real request goes through */
        Lmp__Envelope env, *rep = NULL;
        Lmp__JobQuery q = LMP__JOB_QUERY__INIT;
        lmp_wire_init(&env, 0, 0);
        env.body_case = LMP__ENVELOPE__BODY_JOB_QUERY;
        env.job_query = &q;
        CHECK(lmp_client_call(cl, &env, &rep, &err) == LMP_OK);
        CHECK(rep && rep->body_case == LMP__ENVELOPE__BODY_JOB_STATUS);
        lmp_wire_free(&rep);
    }
    lmp_client_close(&cl);
}

static void test_zap_accepts_and_refuses(void) {
    struct lmp_curve_client alice, mallory, w1, wrong_server;
    client_keys(&alice, "alice.key", "d/server.pub");
    client_keys(&mallory, "mallory.key", "d/server.pub");
    client_keys(&w1, "w1.key", "d/server.pub");
    client_keys(&wrong_server, "alice.key", "fake-server.pub");
    const uint64_t refused0 = lmp_zauth_n_refused(coord->zauth);
    expect_client("listed client key", &alice, LMP_OK);
    CHECK(lmp_zauth_n_accepted(coord->zauth) >= 1);
    expect_client("unlisted key", &mallory, LMP_EPERM);
    CHECK(lmp_zauth_n_refused(coord->zauth) > refused0);
    expect_client("no key", NULL, LMP_EPERM);
    expect_client("wrong server key", &wrong_server, LMP_EPERM);
    expect_client("worker key as a client", &w1, LMP_EPERM);
    expect_client("listed client key again", &alice, LMP_OK); /* still serving */
}

/* A worker's key gets in as a worker, and may still not submit or cancel. */
static void test_worker_key_may_not_submit(void) {
    struct lmp_curve_client w1;
    client_keys(&w1, "w1.key", "d/server.pub");
    void          *ctx = zmq_ctx_new();
    void          *s   = zmq_socket(ctx, ZMQ_DEALER);
    struct lmp_err err = {0};
    CHECK(lmp_zsock_configure(s, 0, 2000, &err) == LMP_OK &&
          lmp_zsock_set_id(s, "w1", &err) == LMP_OK);
    CHECK(lmp_zsock_connect(ctx, s, endpoint, &w1, 3000, &err) == LMP_OK);
    Lmp__Envelope env, *rep = NULL;
    Lmp__Hello    hello;
    lmp_wire_hello_init(&env, &hello, 1, LMP__ROLE__ROLE_WORKER, "w1", NULL);
    CHECK(lmp_zsock_send(s, NULL, &env, "coordinator", &err) == LMP_OK);
    CHECK(lmp_zsock_recv(s, 3000, 0, NULL, "coordinator", &rep, &err) == LMP_OK && rep &&
          rep->body_case == LMP__ENVELOPE__BODY_HELLO_ACK);
    lmp_wire_free(&rep);
    Lmp__JobCancel jc = LMP__JOB_CANCEL__INIT;
    jc.job_id         = 1;
    lmp_wire_init(&env, 2, 0);
    env.body_case  = LMP__ENVELOPE__BODY_JOB_CANCEL;
    env.job_cancel = &jc;
    CHECK(lmp_zsock_send(s, NULL, &env, "coordinator", &err) == LMP_OK);
    CHECK(lmp_zsock_recv(s, 3000, 0, NULL, "coordinator", &rep, &err) == LMP_OK && rep &&
          rep->body_case == LMP__ENVELOPE__BODY_ERROR);
    if (rep && rep->body_case == LMP__ENVELOPE__BODY_ERROR) {
        fprintf(stderr, "  worker key sends JobCancel -> %s: %s\n", rep->error->code,
                rep->error->message);
        CHECK(strcmp(rep->error->code, "EPERM") == 0 || strcmp(rep->error->code, "EPROTO") == 0);
    }
    lmp_wire_free(&rep);
    zmq_close(s);
    zmq_ctx_term(ctx);
}

static void test_worker_with_client_key_is_refused(void) {
    struct lmp_curve_client alice, mallory;
    client_keys(&alice, "alice.key", "d/server.pub");
    client_keys(&mallory, "mallory.key", "d/server.pub");
    struct lmp_agent_opts o;
    lmp_agent_opts_init(&o);
    o.endpoint           = endpoint;
    o.name               = "impostor";
    o.connect_timeout_ms = 3000;
    static volatile sig_atomic_t never;
    struct lmp_err               err = {0};
    o.curve                          = &alice;
    CHECK(lmp_agent_run(&o, &never, &err) == LMP_EPERM);
    fprintf(stderr, "  worker with a client key -> %s\n", err.msg);
    CHECK(strstr(err.msg, "refused") != NULL);
    err     = (struct lmp_err){0};
    o.curve = &mallory;
    CHECK(lmp_agent_run(&o, &never, &err) == LMP_EPERM);
    fprintf(stderr, "  worker with an unlisted key -> %s\n", err.msg);
    CHECK(strstr(err.msg, "refused this key") != NULL);
}

/* ---- another protocol version, from the worker's side ----------------------------- */

struct fake {
    void *ctx, *router;
};

static void *fake_coordinator(void *arg) {
    struct fake     *f = arg;
    struct lmp_zpeer from;
    Lmp__Envelope   *env = NULL;
    struct lmp_err   err = {0};
    CHECK(lmp_zsock_recv(f->router, 5000, 0, &from, NULL, &env, &err) == LMP_OK && env &&
          env->body_case == LMP__ENVELOPE__BODY_HELLO);
    lmp_wire_free(&env);
    Lmp__Envelope e;
    Lmp__Error    body;
    lmp_wire_error_init(&e, &body, 1, 0, LMP_EVERSION, "this coordinator speaks protocol 2");
    uint8_t *buf = NULL;
    size_t   len = 0;
    CHECK(lmp_wire_pack(&e, &buf, &len, &err) == LMP_OK && len > 2 && buf[0] == 0x08);
    if (buf) buf[1] = LMP_PROTO_VERSION + 1; /* Envelope.version, the first varint */
    CHECK(lmp_zsock_send_frame(f->router, &from, buf, len, NULL, &err) == LMP_OK);
    free(buf);
    return NULL;
}

static void test_worker_refused_for_another_version(void) {
    struct fake    f   = {zmq_ctx_new(), NULL};
    struct lmp_err err = {0};
    f.router           = zmq_socket(f.ctx, ZMQ_ROUTER);
    CHECK(lmp_zsock_configure(f.router, 0, 2000, &err) == LMP_OK);
    CHECK(zmq_bind(f.router, "tcp://127.0.0.1:*") == 0);
    char   ep[256];
    size_t n = sizeof(ep);
    CHECK(zmq_getsockopt(f.router, ZMQ_LAST_ENDPOINT, ep, &n) == 0);
    pthread_t th;
    CHECK(pthread_create(&th, NULL, fake_coordinator, &f) == 0);
    struct lmp_agent_opts o;
    lmp_agent_opts_init(&o);
    o.endpoint           = ep;
    o.name               = "old-worker";
    o.connect_timeout_ms = 5000;
    static volatile sig_atomic_t never;
    CHECK(lmp_agent_run(&o, &never, &err) == LMP_EVERSION);
    fprintf(stderr, "  worker told protocol %u -> %s\n", LMP_PROTO_VERSION + 1, err.msg);
    CHECK(strstr(err.msg, "protocol") != NULL && strchr(err.msg, '\n') == NULL);
    pthread_join(th, NULL);
    zmq_close(f.router);
    zmq_ctx_term(f.ctx);
}

int main(void) {
    if (!lmp_curve_available()) {
        check_skip("libzmq without CURVE");
        return check_report();
    }
    snprintf(tmp, sizeof(tmp), "/tmp/lmp-test-curve-XXXXXX");
    if (mkdtemp(tmp) == NULL) return 1;
    umask(022);
    RUN(test_keygen_format_and_modes);
    RUN(test_bad_key_files_are_refused);
    RUN(test_endpoint_policy);
    RUN(test_server_dir);

    struct lmp_coord_opts   o;
    struct lmp_curve_server s;
    struct lmp_err          err = {0};
    char                    d[512];
    path_of(d, sizeof(d), "d");
    CHECK(lmp_curve_server_load(d, &s, &err) == LMP_OK);
    lmp_coord_opts_init(&o);
    o.bind  = "tcp://127.0.0.1:*";
    o.curve = &s;
    CHECK(lmp_coord_new(&o, &coord, &err) == LMP_OK);
    lmp_curve_server_release(&s); /* the coordinator keeps what it needs */
    pthread_t th;
    if (coord) {
        snprintf(endpoint, sizeof(endpoint), "%s", lmp_coord_endpoint(coord));
        CHECK(pthread_create(&th, NULL, coord_thread, coord) == 0);
        RUN(test_zap_accepts_and_refuses);
        RUN(test_worker_key_may_not_submit);
        RUN(test_worker_with_client_key_is_refused);
        stop = 1;
        pthread_join(th, NULL);
        lmp_coord_destroy(&coord);
    }
    RUN(test_worker_refused_for_another_version);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", tmp);
    return check_report();
}
