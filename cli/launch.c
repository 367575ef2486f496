/*  launch - see launch.h */
#define _GNU_SOURCE
#include "cli/launch.h"
#include "cli/tune_cli.h"      /* defines: lmp_cli_tune_rank */
#include "coordinator/coord.h" /* defines: lmp_coord_* */
#include "worker/agent.h"      /* defines: lmp_agent_run */
#include "base/log.h"          /* defines: lmp_log_warn */

#include <arpa/inet.h>
#include <assert.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct worker {
    struct lmp_launch    *L;
    struct lmp_agent_opts o;
    char                  name[96];
    pthread_t             thr;
    bool                  started;
    volatile sig_atomic_t stop;
    enum lmp_status       st;
    struct lmp_err        err;
};

struct lmp_launch {
    struct lmp_coord     *coord;
    pthread_t             coord_thr;
    bool                  coord_started;
    volatile sig_atomic_t coord_stop;
    enum lmp_status       coord_st;
    struct lmp_err        coord_err;
    char                  endpoint[256];
    struct worker        *w; /* (n_workers) */
    int                   n_workers;
};

void lmp_launch_opts_init(struct lmp_launch_opts *o) {
    assert(o);
    memset(o, 0, sizeof(*o));
    o->bind        = "tcp://127.0.0.1:*";
    o->n_workers   = 1;
    o->worker_name = "local";
}

static void *coord_main(void *arg) {
    struct lmp_launch *L = arg;
    L->coord_st          = lmp_coord_run(L->coord, &L->coord_stop, &L->coord_err);
    return NULL;
}

enum { WORKER_RESTART_MS = 1000 };

/* The worker's agent, restarted (as a new session of the same name) whenever it ends with
 * an error before it is told to stop: an in-process worker that ended for good would leave
 * the job waiting for workers that never come (the coordinator declares the old session
 * gone and requeues its task). A refusal by the coordinator (another protocol version, a
 * key without the worker role) is final. */
static void *worker_main(void *arg) {
    struct worker *w = arg;
    for (;;) {
        w->st = lmp_agent_run(&w->o, &w->stop, &w->err);
        if (w->stop || w->st == LMP_OK || w->st == LMP_EVERSION || w->st == LMP_EPERM) break;
        lmp_log_warn("worker '%s' ended: %s; restarting it in %.1fs", w->name, w->err.msg,
                     WORKER_RESTART_MS / 1000.0);
        for (int t = 0; t < WORKER_RESTART_MS && !w->stop; t += 50) {
            struct timespec ts = {0, 50 * 1000000L};
            nanosleep(&ts, NULL);
        }
        if (w->stop) break;
    }
    return NULL;
}

enum lmp_status lmp_launch_start(const struct lmp_launch_opts *o, struct lmp_launch **out,
                                 struct lmp_err *err) {
    assert(o && out);
    *out                 = NULL;
    struct lmp_launch *L = calloc(1, sizeof(*L));
    if (L == NULL) return lmp_err_set(err, LMP_ENOMEM, "out of memory");
    struct lmp_coord_opts co;
    lmp_coord_opts_init(&co);
    co.bind      = o->bind ? o->bind : "tcp://127.0.0.1:*";
    co.state_dir = o->state_dir;
    co.curve     = o->curve;
    if (o->heartbeat_timeout_ms) {
        co.heartbeat_timeout_ms = o->heartbeat_timeout_ms;
        if (co.heartbeat_ms * 2 > co.heartbeat_timeout_ms)
            co.heartbeat_ms = co.heartbeat_timeout_ms / 3;
    }
    enum lmp_status st = lmp_coord_new(&co, &L->coord, err);
    if (st != LMP_OK) {
        free(L);
        return st;
    }
    snprintf(L->endpoint, sizeof(L->endpoint), "%s", lmp_coord_endpoint(L->coord));
    if (pthread_create(&L->coord_thr, NULL, coord_main, L) != 0) {
        lmp_coord_destroy(&L->coord);
        free(L);
        return lmp_err_set(err, LMP_ENOMEM, "cannot start the coordinator thread");
    }
    L->coord_started = true;
    if (o->n_workers > 0 && (L->w = calloc((size_t)o->n_workers, sizeof(*L->w))) == NULL) {
        lmp_launch_stop(&L, NULL);
        return lmp_err_set(err, LMP_ENOMEM, "out of memory");
    }
    for (int i = 0; i < o->n_workers; i++) {
        struct worker *w = &L->w[i];
        w->L             = L;
        lmp_agent_opts_init(&w->o);
        snprintf(w->name, sizeof(w->name), "%s-%d", o->worker_name ? o->worker_name : "local", i);
        w->o.endpoint  = L->endpoint;
        w->o.name      = w->name;
        w->o.n_threads = o->worker_threads;
        w->o.curve     = o->worker_curve;
        w->o.tune      = lmp_cli_tune_rank;
        if (pthread_create(&w->thr, NULL, worker_main, w) != 0) {
            lmp_launch_stop(&L, NULL);
            return lmp_err_set(err, LMP_ENOMEM, "cannot start worker thread %d", i);
        }
        w->started   = true;
        L->n_workers = i + 1;
    }
    *out = L;
    return LMP_OK;
}

const char *lmp_launch_endpoint(const struct lmp_launch *L) {
    assert(L);
    return L->endpoint;
}

enum lmp_status lmp_launch_stop(struct lmp_launch **Lp, struct lmp_err *err) {
    assert(Lp);
    struct lmp_launch *L = *Lp;
    if (L == NULL) return LMP_OK;
    enum lmp_status st = LMP_OK;
    for (int i = 0; i < L->n_workers; i++) L->w[i].stop = 1;
    for (int i = 0; i < L->n_workers; i++) {
        struct worker *w = &L->w[i];
        if (!w->started) continue;
        pthread_join(w->thr, NULL);
        if (w->st != LMP_OK && st == LMP_OK) {
            st = w->st;
            if (err) *err = w->err;
        }
    }
    if (L->coord_started) {
        L->coord_stop = 1;
        pthread_join(L->coord_thr, NULL);
        if (L->coord_st != LMP_OK && st == LMP_OK) {
            st = L->coord_st;
            if (err) *err = L->coord_err;
        }
    }
    lmp_coord_destroy(&L->coord);
    free(L->w);
    free(L);
    *Lp = NULL;
    return st;
}

static bool is_loopback4(const struct in_addr *a) {
    return (ntohl(a->s_addr) >> 24) == 127;
}

/* The first IPv4 address of name (a host name or a numeric address); skip_loopback:
 * the first one outside 127.0.0.0/8. */
static bool resolve4(const char *name, bool skip_loopback, struct in_addr *out) {
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family   = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(name, NULL, &hints, &res) != 0) return false;
    bool found = false;
    for (const struct addrinfo *r = res; r && !found; r = r->ai_next) {
        const struct in_addr *a = &((const struct sockaddr_in *)r->ai_addr)->sin_addr;
        if (skip_loopback && is_loopback4(a)) continue;
        *out  = *a;
        found = true;
    }
    freeaddrinfo(res);
    return found;
}

/* The first IPv4 address of interface ifname (NULL: of any up, non-loopback interface). */
static bool interface4(const char *ifname, struct in_addr *out) {
    struct ifaddrs *ifs = NULL;
    if (getifaddrs(&ifs) != 0) return false;
    bool found = false;
    for (const struct ifaddrs *i = ifs; i && !found; i = i->ifa_next) {
        if (i->ifa_addr == NULL || i->ifa_addr->sa_family != AF_INET) continue;
        if (ifname ? strcmp(i->ifa_name, ifname) != 0
                   : (!(i->ifa_flags & IFF_UP) || (i->ifa_flags & IFF_LOOPBACK)))
            continue;
        const struct in_addr *a = &((const struct sockaddr_in *)i->ifa_addr)->sin_addr;
        if (ifname == NULL && is_loopback4(a)) continue;
        *out  = *a;
        found = true;
    }
    freeifaddrs(ifs);
    return found;
}

enum lmp_status lmp_launch_host_address(char *addr, size_t n, struct lmp_err *err) {
    assert(addr && n >= INET_ADDRSTRLEN);
    char           host[256] = "";
    struct in_addr a;
    if (gethostname(host, sizeof(host) - 1) == 0 && host[0] && resolve4(host, true, &a)) {
        inet_ntop(AF_INET, &a, addr, (socklen_t)n);
        return LMP_OK;
    }
    if (interface4(NULL, &a)) {
        inet_ntop(AF_INET, &a, addr, (socklen_t)n);
        return LMP_OK;
    }
    return lmp_err_set(err, LMP_ENOENT,
                       "no non-loopback IPv4 address: the host name '%s' "
                       "resolves to none and no interface that is up has one (give "
                       "--bind-address ADDR)",
                       host);
}

enum lmp_status lmp_launch_bind_endpoint(const char *spec, char *endpoint, size_t n, bool *loopback,
                                         struct lmp_err *err) {
    assert(endpoint && n > 0);
    char           name[256] = "", port[16] = "*", text[INET_ADDRSTRLEN];
    struct in_addr a;
    if (spec && spec[0]) {
        const char *colon = strchr(spec, ':');
        if (colon && strchr(colon + 1, ':'))
            return lmp_err_set(err, LMP_EINVAL,
                               "bind address '%s': IPv6 is not supported, give "
                               "an IPv4 address or an interface name",
                               spec);
        size_t len = colon ? (size_t)(colon - spec) : strlen(spec);
        if (len == 0 || len >= sizeof(name))
            return lmp_err_set(err, LMP_EINVAL, "bind address '%s': expected ADDR or ADDR:PORT",
                               spec);
        memcpy(name, spec, len);
        name[len] = '\0';
        if (colon) {
            char *end = NULL;
            long  p   = strtol(colon + 1, &end, 10);
            if (end == colon + 1 || *end != '\0' || p < 1 || p > 65535)
                return lmp_err_set(err, LMP_EINVAL,
                                   "bind address '%s': the port must be a "
                                   "number in [1, 65535]",
                                   spec);
            snprintf(port, sizeof(port), "%ld", p);
        }
        if (strcmp(name, "*") == 0 || strcmp(name, "0.0.0.0") == 0)
            return lmp_err_set(err, LMP_EINVAL,
                               "bind address '%s': a wildcard is not an "
                               "address the workers can connect to; give one of this host's "
                               "addresses",
                               spec);
        if (inet_pton(AF_INET, name, &a) != 1 && !interface4(name, &a) &&
            !resolve4(name, false, &a))
            return lmp_err_set(err, LMP_EINVAL,
                               "bind address '%s': not an IPv4 address, an "
                               "interface with one, or a host name that resolves to one",
                               spec);
        inet_ntop(AF_INET, &a, text, sizeof(text));
    } else {
        enum lmp_status st = lmp_launch_host_address(text, sizeof(text), err);
        if (st != LMP_OK) return st;
        inet_pton(AF_INET, text, &a);
    }
    if (loopback) *loopback = is_loopback4(&a);
    if ((size_t)snprintf(endpoint, n, "tcp://%s:%s", text, port) >= n)
        return lmp_err_set(err, LMP_EINVAL, "endpoint buffer too small");
    return LMP_OK;
}

enum lmp_status lmp_launch_submit(struct lmp_client *cl, const Lmp__JobSpec *spec, uint64_t *job_id,
                                  uint32_t *n_tasks, struct lmp_err *err) {
    assert(cl && spec);
    Lmp__Envelope  env, *rep = NULL;
    Lmp__JobSubmit js = LMP__JOB_SUBMIT__INIT;
    js.spec           = (Lmp__JobSpec *)spec;
    lmp_wire_init(&env, 0, 0);
    env.body_case      = LMP__ENVELOPE__BODY_JOB_SUBMIT;
    env.job_submit     = &js;
    enum lmp_status st = lmp_client_call(cl, &env, &rep, err);
    if (st != LMP_OK) return st;
    if (rep->body_case != LMP__ENVELOPE__BODY_JOB_ACCEPTED) {
        lmp_wire_free(&rep);
        return lmp_err_set(err, LMP_EPROTO, "unexpected reply to a job submission");
    }
    if (job_id) *job_id = rep->job_accepted->job_id;
    if (n_tasks) *n_tasks = rep->job_accepted->n_tasks;
    lmp_wire_free(&rep);
    return LMP_OK;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

enum lmp_status lmp_launch_follow(struct lmp_client *cl, uint64_t job_id, int poll_ms,
                                  volatile sig_atomic_t *stop, lmp_launch_status_fn *cb, void *ctx,
                                  Lmp__JobState *state, struct lmp_err *err) {
    assert(cl);
    for (;;) {
        if (stop && *stop) return lmp_err_set(err, LMP_ECANCEL, "interrupted");
        Lmp__Envelope env, *rep = NULL;
        Lmp__JobQuery q = LMP__JOB_QUERY__INIT;
        q.job_id        = job_id;
        q.with_layers   = true;
        lmp_wire_init(&env, 0, 0);
        env.body_case      = LMP__ENVELOPE__BODY_JOB_QUERY;
        env.job_query      = &q;
        enum lmp_status st = lmp_client_call(cl, &env, &rep, err);
        if (st != LMP_OK) return st;
        if (rep->body_case != LMP__ENVELOPE__BODY_JOB_STATUS || rep->job_status->n_jobs != 1) {
            lmp_wire_free(&rep);
            return lmp_err_set(err, LMP_EPROTO, "job %llu is gone from the coordinator",
                               (unsigned long long)job_id);
        }
        const Lmp__JobInfo *j = rep->job_status->jobs[0];
        if (state) *state = j->state;
        if (cb) cb(ctx, j);
        const bool end = j->state != LMP__JOB_STATE__JOB_STATE_RUNNING &&
                         j->state != LMP__JOB_STATE__JOB_STATE_QUEUED;
        lmp_wire_free(&rep);
        if (end) return LMP_OK;
        /* sleep in slices so a stop is seen quickly */
        for (int t = 0; t < poll_ms && !(stop && *stop); t += 50) sleep_ms(50);
    }
}
