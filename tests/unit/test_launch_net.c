/*  test_launch_net - where `lmpress run` binds across hosts, and the keys it makes in memory
 *
 *  lmp_launch_bind_endpoint (addresses, interface names, host names, ports; wildcards, IPv6
 *  and bad ports refused), lmp_launch_host_address, lmp_key_pair_new and
 *  lmp_curve_server_add, and a launch with in-memory CURVE keys: its own worker and an
 *  authorized client get in, a stranger's key and a peer without keys are refused (EPERM).
 */
#include "proto/client.h"
#include "cli/launch.h"
#include "proto/keys.h"
#include "tests/check.h"

#include <arpa/inet.h>
#include <stdbool.h>
#include <time.h>
#include <zmq.h>

static void test_bind_endpoint(void) {
    char           ep[256];
    bool           lo  = false;
    struct lmp_err err = {0};
    CHECK(lmp_launch_bind_endpoint("127.0.0.1", ep, sizeof(ep), &lo, &err) == LMP_OK);
    CHECK(strcmp(ep, "tcp://127.0.0.1:*") == 0 && lo);
    CHECK(lmp_launch_bind_endpoint("10.1.2.3:7070", ep, sizeof(ep), &lo, &err) == LMP_OK);
    CHECK(strcmp(ep, "tcp://10.1.2.3:7070") == 0 && !lo);
    CHECK(lmp_launch_bind_endpoint("127.0.0.2", ep, sizeof(ep), &lo, &err) == LMP_OK);
    CHECK(strcmp(ep, "tcp://127.0.0.2:*") == 0 && lo);
    /* an interface name and a host name become the numeric address zmq_bind needs */
    CHECK(lmp_launch_bind_endpoint("lo:9000", ep, sizeof(ep), &lo, &err) == LMP_OK);
    CHECK(strcmp(ep, "tcp://127.0.0.1:9000") == 0 && lo);
    CHECK(lmp_launch_bind_endpoint("localhost", ep, sizeof(ep), &lo, &err) == LMP_OK);
    CHECK(strncmp(ep, "tcp://127.", 10) == 0 && lo);

    static const char *const refused[] = {
        "*",
        "0.0.0.0",
        "0.0.0.0:7070",
        "fe80::1",
        "[::1]:7070",
        "1.2.3.4:0",
        "1.2.3.4:70000",
        "1.2.3.4:x",
        "1.2.3.4:",
        ":7070",
        "no-such-interface.invalid",
    };
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        memset(&err, 0, sizeof(err));
        enum lmp_status st = lmp_launch_bind_endpoint(refused[i], ep, sizeof(ep), &lo, &err);
        CHECK(st == LMP_EINVAL);
        CHECK(strstr(err.msg, refused[i]) != NULL); /* the message names it */
        if (st != LMP_EINVAL) fprintf(stderr, "  accepted '%s' as %s\n", refused[i], ep);
    }
    char long_name[400];
    memset(long_name, 'a', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    memset(&err, 0, sizeof(err));
    CHECK(lmp_launch_bind_endpoint(long_name, ep, sizeof(ep), &lo, &err) == LMP_EINVAL);
}

/* The default (NULL or ""): this host's non-loopback IPv4 address, or ENOENT. */
static void test_default_address(void) {
    char            addr[64], ep[256], ep2[256];
    bool            lo  = true;
    struct lmp_err  err = {0};
    enum lmp_status st  = lmp_launch_host_address(addr, sizeof(addr), &err);
    CHECK(st == LMP_OK || st == LMP_ENOENT);
    if (st == LMP_ENOENT) {
        fprintf(stderr, "  (no non-loopback address here: %s)\n", err.msg);
        CHECK(lmp_launch_bind_endpoint(NULL, ep, sizeof(ep), &lo, &err) == LMP_ENOENT);
        return;
    }
    struct in_addr a;
    CHECK(inet_pton(AF_INET, addr, &a) == 1);
    CHECK((ntohl(a.s_addr) >> 24) != 127);
    CHECK(lmp_launch_bind_endpoint(NULL, ep, sizeof(ep), &lo, &err) == LMP_OK && !lo);
    CHECK(lmp_launch_bind_endpoint("", ep2, sizeof(ep2), &lo, &err) == LMP_OK && !lo);
    char want[128];
    snprintf(want, sizeof(want), "tcp://%s:*", addr);
    CHECK(strcmp(ep, want) == 0 && strcmp(ep2, want) == 0);
    fprintf(stderr, "  default bind: %s\n", ep);
}

static void test_memory_keys(void) {
    struct lmp_key pub, sec, pub2, sec2, derived;
    struct lmp_err err = {0};
    CHECK(lmp_key_pair_new(&pub, &sec, &err) == LMP_OK);
    CHECK(lmp_key_pair_new(&pub2, &sec2, &err) == LMP_OK);
    CHECK(strlen(pub.z85) == LMP_KEY_Z85_LEN && strlen(sec.z85) == LMP_KEY_Z85_LEN);
    CHECK(strcmp(pub.z85, pub2.z85) != 0 && strcmp(sec.z85, sec2.z85) != 0);
    CHECK(zmq_curve_public(derived.z85, sec.z85) == 0 && strcmp(derived.z85, pub.z85) == 0);

    struct lmp_curve_server s;
    memset(&s, 0, sizeof(s));
    s.public_key = pub;
    s.secret_key = sec;
    CHECK(lmp_curve_server_add(&s, &pub2, LMP_PEER_CLI, "run", &err) == LMP_OK);
    /* more than one allocation step of keys */
    struct lmp_key w[70];
    for (int i = 0; i < 70; i++) {
        struct lmp_key ws;
        char           name[16];
        snprintf(name, sizeof(name), "rank%d", i + 1);
        CHECK(lmp_key_pair_new(&w[i], &ws, &err) == LMP_OK);
        CHECK(lmp_curve_server_add(&s, &w[i], LMP_PEER_WORKER, name, &err) == LMP_OK);
    }
    CHECK(s.n_keys == 71);
    uint8_t raw[32];
    zmq_z85_decode(raw, w[68].z85);
    const struct lmp_authorized_key *k = lmp_curve_server_find(&s, raw);
    CHECK(k && k->role == LMP_PEER_WORKER && strcmp(k->name, "rank69") == 0);
    zmq_z85_decode(raw, pub2.z85);
    k = lmp_curve_server_find(&s, raw);
    CHECK(k && k->role == LMP_PEER_CLI && strcmp(k->name, "run") == 0);

    /* refusals leave the list as it was */
    CHECK(lmp_curve_server_add(&s, &w[3], LMP_PEER_CLI, "again", &err) == LMP_EINVAL);
    CHECK(strstr(err.msg, "rank4") != NULL);
    memset(&err, 0, sizeof(err)); /* the first error is kept: start afresh */
    CHECK(lmp_curve_server_add(&s, &pub, LMP_PEER_WORKER, "self", &err) == LMP_EINVAL);
    CHECK(strstr(err.msg, "coordinator's own key") != NULL);
    struct lmp_key fresh, fs;
    CHECK(lmp_key_pair_new(&fresh, &fs, &err) == LMP_OK);
    CHECK(lmp_curve_server_add(&s, &fresh, LMP_PEER_WORKER, "bad name", &err) == LMP_EINVAL);
    CHECK(lmp_curve_server_add(&s, &fresh, LMP_PEER_WORKER, "", &err) == LMP_EINVAL);
    struct lmp_key junk;
    memset(&junk, 0, sizeof(junk));
    snprintf(junk.z85, sizeof(junk.z85), "not a key");
    CHECK(lmp_curve_server_add(&s, &junk, LMP_PEER_WORKER, "junk", &err) == LMP_EFORMAT);
    memset(junk.z85, '~', LMP_KEY_Z85_LEN); /* right length, not Z85 */
    CHECK(lmp_curve_server_add(&s, &junk, LMP_PEER_WORKER, "junk", &err) == LMP_EFORMAT);
    CHECK(s.n_keys == 71);
    lmp_curve_server_release(&s);
    CHECK(s.keys == NULL && s.n_keys == 0);
}

/* A launch with keys made in memory: as `lmpress run` across hosts, on loopback. */
static void test_launch_curve(void) {
    struct lmp_err          err = {0};
    struct lmp_curve_server s;
    struct lmp_curve_client cli, wk, stranger;
    memset(&s, 0, sizeof(s));
    memset(&cli, 0, sizeof(cli));
    memset(&wk, 0, sizeof(wk));
    memset(&stranger, 0, sizeof(stranger));
    CHECK(lmp_key_pair_new(&s.public_key, &s.secret_key, &err) == LMP_OK);
    CHECK(lmp_key_pair_new(&cli.public_key, &cli.secret_key, &err) == LMP_OK);
    CHECK(lmp_key_pair_new(&wk.public_key, &wk.secret_key, &err) == LMP_OK);
    CHECK(lmp_key_pair_new(&stranger.public_key, &stranger.secret_key, &err) == LMP_OK);
    cli.server_key = wk.server_key = stranger.server_key = s.public_key;
    CHECK(lmp_curve_server_add(&s, &cli.public_key, LMP_PEER_CLI, "run", &err) == LMP_OK);
    CHECK(lmp_curve_server_add(&s, &wk.public_key, LMP_PEER_WORKER, "rank0", &err) == LMP_OK);

    struct lmp_launch_opts lo;
    lmp_launch_opts_init(&lo);
    lo.n_workers          = 1;
    lo.worker_threads     = 1;
    lo.curve              = &s;
    lo.worker_curve       = &wk;
    struct lmp_launch *L  = NULL;
    enum lmp_status    st = lmp_launch_start(&lo, &L, &err);
    CHECK(st == LMP_OK);
    lmp_curve_server_release(&s); /* borrowed during start only */
    if (st != LMP_OK) {
        fprintf(stderr, "  launch: %s\n", err.msg);
        return;
    }
    struct lmp_client *cl = NULL;
    CHECK(lmp_client_connect_curve(lmp_launch_endpoint(L), 5000, &cli, &cl, &err) == LMP_OK);
    /* the in-process worker joined with its key: poll the worker list */
    bool joined = false;
    for (int t = 0; t < 100 && cl && !joined; t++) {
        Lmp__Envelope    env, *rep = NULL;
        Lmp__WorkerQuery q = LMP__WORKER_QUERY__INIT;
        lmp_wire_init(&env, 0, 0);
        env.body_case    = LMP__ENVELOPE__BODY_WORKER_QUERY;
        env.worker_query = &q;
        if (lmp_client_call(cl, &env, &rep, &err) == LMP_OK) {
            joined = rep->body_case == LMP__ENVELOPE__BODY_WORKER_LIST &&
                     rep->worker_list->n_workers == 1;
            lmp_wire_free(&rep);
        }
        if (!joined) {
            struct timespec ts = {0, 50 * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    CHECK(joined);
    lmp_client_close(&cl);

    struct lmp_client *bad = NULL;
    memset(&err, 0, sizeof(err));
    const char *ep = lmp_launch_endpoint(L);
    CHECK(lmp_client_connect_curve(ep, 5000, &stranger, &bad, &err) == LMP_EPERM);
    CHECK(bad == NULL);
    memset(&err, 0, sizeof(err));
    CHECK(lmp_client_connect(ep, 5000, &bad, &err) == LMP_EPERM);
    CHECK(bad == NULL);
    /* the worker's key is not a client's */
    memset(&err, 0, sizeof(err));
    CHECK(lmp_client_connect_curve(ep, 5000, &wk, &bad, &err) == LMP_EPERM);
    lmp_client_close(&bad);
    CHECK(lmp_launch_stop(&L, &err) == LMP_OK);
}

int main(void) {
    RUN(test_bind_endpoint);
    RUN(test_default_address);
    if (!lmp_curve_available()) {
        check_skip("libzmq without CURVE");
        return check_report();
    }
    RUN(test_memory_keys);
    RUN(test_launch_curve);
    return check_report();
}
