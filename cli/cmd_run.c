/*  cmd_run - lmpress run JOB: one compression job on the ranks of an MPI launch
 *
 *      mpirun -np N lmpress run JOB          srun --mpi=pmix lmpress run JOB
 *
 *  Rank 0 is the coordinator: it binds an endpoint, broadcasts it (MPI_Bcast), submits the
 *  JOB to its own coordinator, follows it to its end, then tells the workers to stop
 *  (MPI_Ibcast, which the workers test with a sleep between tests instead of spinning).
 *  Ranks 1..N-1 are workers; each takes cores-on-the-node / ranks-on-the-node threads
 *  (OpenBLAS too). With -np 1 rank 0 also runs one worker thread. Every rank exits with
 *  the same code, agreed with MPI_Allreduce (MAX): the job's (0 done, 1 failed, 2 bad JOB
 *  or bind address, 130 stopped).
 *
 *  Where the coordinator listens:
 *    - every rank on rank 0's host (MPI_Comm_split_type SHARED holds the whole world):
 *      a free port on 127.0.0.1, no keys;
 *    - ranks on several hosts (or LMPRESS_RUN_FORCE_REMOTE=1, for tests on one host):
 *      a free port on --bind-address ADDR[:PORT] (or LMPRESS_RUN_ADDRESS), by default
 *      the address of rank 0's host name, else its first non-loopback interface address
 *      (lmp_launch_bind_endpoint), with CURVE and keys made for this run only: every
 *      rank makes a worker key pair in memory and rank 0 gathers the public keys
 *      (MPI_Gather; no secret key leaves the rank that made it), makes the coordinator's
 *      pair and a client pair for its own submitting client, authorizes exactly those
 *      keys (workers "rankR", client "run") and broadcasts its public key with the
 *      endpoint. Nothing is written to disk; a peer outside the launch is refused at the
 *      handshake. Only public keys are printed.
 *
 *  A worker rank whose agent ends before the job (the coordinator unreachable from its
 *  host, its key refused) tells rank 0 (MPI_Send, TAG_LOST), which reports it; once no
 *  worker rank is left rank 0 stops the job (state kept) and every rank exits with that
 *  rank's code (3 unreachable, 5 refused) instead of waiting for workers that never come.
 *  Tests: LMP_FAULT_RUN_WRONG_SERVER_KEY=1 gives the worker ranks a wrong server key.
 *
 *  SIGTERM / SIGINT on rank 0 (Slurm preemption): the coordinator stops, keeping the
 *  committed layers and its --state directory (default: the JOB's out path + ".state");
 *  running the same command again resumes the job (with new keys). Without LMP_MPI at
 *  build time the command says so and fails.
 */
#include "cli/cli.h"
#include "cli/tune_cli.h" /* defines: lmp_cli_tune_rank */
#include "cli/jobopts.h"  /* defines: lmp_jobopts_* */

#include <stdio.h>
#include <string.h>

static const char *const usage =
    "mpirun -np N lmpress run [--verbose] [--bind-address ADDR[:PORT]] JOB [job options]\n"
    "job options (as lmpress compress; they override the JOB file's):\n    " LMP_JOBOPTS_USAGE;

static const char *const help =
    "Rank 0 runs the coordinator, the other ranks are workers (-np 1: one worker thread);\n"
    "every rank exits with the job's code. Run the same command again to resume.\n\n"
    "  --verbose             the coordinator's and workers' per-task log lines (default off)\n"
    "  --bind-address ADDR[:PORT]\n"
    "                        across hosts: the address (or interface, host name) rank 0\n"
    "                        listens on (default LMPRESS_RUN_ADDRESS, else its host name's\n"
    "                        address, else its first non-loopback interface)\n\n" LMP_JOBOPTS_HELP;

#ifndef LMP_HAVE_MPI

static int cmd_run_exec(struct lmp_cli *cli, int argc, char **argv) {
    (void)cli;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: %s\n", usage);
            return LMP_EXIT_OK;
        }
    fprintf(stderr, "lmpress: 'run' needs MPI, and this lmpress was built without MPI "
                    "(configure with -DLMP_MPI=ON)\n");
    return LMP_EXIT_FAIL;
}

#else /* LMP_HAVE_MPI */

#include "cli/cluster.h"  /* defines: lmp_cli_job_exit */
#include "cli/launch.h"   /* defines: lmp_launch_* */
#include "proto/keys.h"   /* defines: lmp_key_pair_new, lmp_curve_server_add */
#include "base/log.h"     /* defines: lmp_log_set_level */
#include "base/cancel.h"  /* defines: lmp_cancel_shutdown */
#include "worker/agent.h" /* defines: lmp_agent_run */

#include <mpi.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "kernels/kernels.h" /* defines: lmp_kernels_set_threads */

enum { EP_MAX = 256, KEY_LEN = LMP_KEY_Z85_LEN + 1, TAG_LOST = 7 };

/* What rank 0 tells every rank (MPI_Bcast, as bytes). */
struct run_info {
    char ep[EP_MAX];          /* the endpoint to connect to; "" = rank 0 failed */
    char server_key[KEY_LEN]; /* the coordinator's public key; "" = no CURVE */
};

/* Rank 0's launch: the endpoint it binds and, across hosts, the keys of this run. */
struct run_net {
    bool                    remote; /* ranks on several hosts (or forced): CURVE */
    int                     n_hosts;
    const char             *bind_address; /* --bind-address, else LMPRESS_RUN_ADDRESS */
    char                    bind[EP_MAX];
    struct lmp_curve_server server; /* the coordinator's keys and the authorized ones */
    struct lmp_curve_client client; /* rank 0's submitting client */
    struct lmp_curve_client worker; /* this rank's worker (in-process with -np 1) */
};

static volatile sig_atomic_t stop_flag;
/* the process is going down: every computation in it stops within a second or so (the
 * stages poll base/cancel.h), and the launch loop sees stop_flag */
static void on_signal(int sig) {
    (void)sig;
    stop_flag = 1;
    lmp_cancel_shutdown();
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

struct run_flags {
    bool        verbose;
    const char *bind_address;
};

static bool on_extra(void *ctx, int val, const char *arg) {
    struct run_flags *f = ctx;
    if (val == 256) f->verbose = true;
    if (val == 257) f->bind_address = arg;
    return true;
}

/* Rank 0 following the job: progress lines, and the worker ranks that could not join. */
struct follow {
    uint32_t    last;        /* layers done at the last line */
    int         n_ranks;     /* worker ranks (size - 1) */
    int         n_lost;      /* of them, those whose agent ended with an error */
    int         lost_status; /* the last one's enum lmp_status */
    bool        gave_up;     /* every worker rank is lost: the job was stopped */
    const char *ep;
};

/* A worker rank whose agent stopped before the end sends its status (TAG_LOST). */
static void collect_lost(struct follow *f) {
    for (int flag = 1; flag;) {
        MPI_Status ms;
        MPI_Iprobe(MPI_ANY_SOURCE, TAG_LOST, MPI_COMM_WORLD, &flag, &ms);
        if (!flag) break;
        int code = 0;
        MPI_Recv(&code, 1, MPI_INT, ms.MPI_SOURCE, TAG_LOST, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        f->n_lost++;
        f->lost_status = code;
        fprintf(stderr, "lmpress: worker rank %d cannot work with the coordinator at %s (%s)%s\n",
                ms.MPI_SOURCE, f->ep, lmp_status_str((enum lmp_status)code),
                code == LMP_EIO ? ": can its host reach that address? (--bind-address, "
                                  "LMPRESS_RUN_ADDRESS)"
                                : "");
    }
    if (f->n_ranks > 0 && f->n_lost >= f->n_ranks && !f->gave_up) {
        fprintf(stderr, "lmpress: no worker rank is left: stopping\n");
        f->gave_up = true;
        stop_flag  = 1;
    }
}

static void follow_status(void *ctx, const Lmp__JobInfo *j) {
    struct follow *f = ctx;
    collect_lost(f);
    if (j->tune) { /* the --pv tuning job (no step of this run yet: nothing to print) */
        if (j->tune->step == f->last || (j->tune->kl == 0 && j->tune->agree == 0)) return;
        f->last = (uint32_t)j->tune->step;
        lmp_cli_print_tune_step(j->job_id, j->tune);
        if (j->state == LMP__JOB_STATE__JOB_STATE_FAILED && j->error && j->error->message)
            fprintf(stderr, "lmpress: job %llu failed: %s\n", (unsigned long long)j->job_id,
                    j->error->message);
        return;
    }
    if (j->layers_done == f->last) return;
    f->last = j->layers_done;
    fprintf(stderr, "job %llu: %u/%u layers done", (unsigned long long)j->job_id, j->layers_done,
            j->layers_total);
    if (j->eta_s >= 0 && j->state == LMP__JOB_STATE__JOB_STATE_RUNNING)
        fprintf(stderr, ", ETA %.0fs", j->eta_s);
    fputc('\n', stderr);
    if (j->state == LMP__JOB_STATE__JOB_STATE_FAILED && j->error && j->error->message)
        fprintf(stderr, "lmpress: job %llu failed: %s\n", (unsigned long long)j->job_id,
                j->error->message);
}

/* The id of a job the coordinator already runs (resumed from its state directory), or 0. */
static uint64_t running_job(struct lmp_client *cl) {
    Lmp__Envelope  env, *rep = NULL;
    Lmp__JobQuery  q   = LMP__JOB_QUERY__INIT;
    struct lmp_err err = {0};
    lmp_wire_init(&env, 0, 0);
    env.body_case = LMP__ENVELOPE__BODY_JOB_QUERY;
    env.job_query = &q;
    uint64_t id   = 0;
    if (lmp_client_call(cl, &env, &rep, &err) != LMP_OK) return 0;
    if (rep->body_case == LMP__ENVELOPE__BODY_JOB_STATUS)
        for (size_t i = 0; i < rep->job_status->n_jobs; i++) {
            const Lmp__JobInfo *j = rep->job_status->jobs[i];
            if (j->state == LMP__JOB_STATE__JOB_STATE_RUNNING ||
                j->state == LMP__JOB_STATE__JOB_STATE_QUEUED)
                id = j->job_id;
        }
    lmp_wire_free(&rep);
    return id;
}

/* Rank 0, across hosts: the bind endpoint and this run's keys. pubs (size * KEY_LEN) are
 * the ranks' worker public keys; rank 0's own is used only with -np 1. RET an exit code. */
static int rank0_net(struct run_net *net, const char *pubs, int size) {
    struct lmp_err err      = {0};
    bool           loopback = false;
    if (lmp_launch_bind_endpoint(net->bind_address, net->bind, sizeof(net->bind), &loopback,
                                 &err) != LMP_OK) {
        fprintf(stderr, "lmpress: %s\n", err.msg);
        return err.code == LMP_EINVAL ? LMP_EXIT_USAGE : LMP_EXIT_FAIL;
    }
    if (loopback && net->n_hosts > 1) {
        fprintf(stderr,
                "lmpress: the ranks span %d hosts but the bind address %s is a loopback "
                "address the others cannot reach: give --bind-address ADDR "
                "(or LMPRESS_RUN_ADDRESS)\n",
                net->n_hosts, net->bind);
        return LMP_EXIT_USAGE;
    }
    struct lmp_curve_server *s  = &net->server;
    enum lmp_status          st = lmp_key_pair_new(&s->public_key, &s->secret_key, &err);
    if (st == LMP_OK) st = lmp_key_pair_new(&net->client.public_key, &net->client.secret_key, &err);
    if (st == LMP_OK)
        st = lmp_curve_server_add(s, &net->client.public_key, LMP_PEER_CLI, "run", &err);
    for (int r = size == 1 ? 0 : 1; st == LMP_OK && r < size; r++) {
        struct lmp_key k;
        char           name[32];
        snprintf(name, sizeof(name), "rank%d", r);
        memcpy(k.z85, pubs + (size_t)r * KEY_LEN, KEY_LEN);
        k.z85[LMP_KEY_Z85_LEN] = '\0';
        if (k.z85[0] == '\0') {
            st = lmp_err_set(&err, LMP_EUNSUP,
                             "rank %d could not make a CURVE key pair (libzmq "
                             "without CURVE there?)",
                             r);
            break;
        }
        st = lmp_curve_server_add(s, &k, LMP_PEER_WORKER, name, &err);
    }
    net->client.server_key = s->public_key;
    net->worker.server_key = s->public_key;
    if (st != LMP_OK) {
        fprintf(stderr, "lmpress: a run across hosts needs CURVE keys: %s\n", err.msg);
        return LMP_EXIT_FAIL;
    }
    return LMP_EXIT_OK;
}

/* Rank 0 before the broadcast: parse the JOB, start the coordinator (+ a worker with
 * -np 1). On failure *rc is set and no endpoint is returned. */
static struct lmp_launch *rank0_start(struct lmp_cli *cli, int argc, char **argv, int size,
                                      int threads, const char *pubs, struct run_net *net,
                                      struct lmp_jobopts *jo, char **final_out, int *rc) {
    struct run_flags           flags   = {.bind_address = NULL};
    static const struct option extra[] = {
        {"verbose", no_argument, NULL, 256}, {"bind-address", required_argument, NULL, 257}, {0}};
    struct lmp_jobopts_cmd pc = {
        .extra = extra, .on_extra = on_extra, .ctx = &flags, .job_arg = true};
    struct lmp_err err = {0};
    if ((*rc = lmp_jobopts_parse_argv(jo, argc, argv, &pc, &err)) != LMP_EXIT_OK) return NULL;
    if (flags.verbose && lmp_log_get_level() < LMP_LOG_INFO) lmp_log_set_level(LMP_LOG_INFO);
    if (jo->job_path == NULL) {
        *rc = lmp_cli_usage_msg(usage, "expected a JOB file");
        return NULL;
    }
    if (lmp_jobopts_check(jo, &err) != LMP_OK) {
        *rc = lmp_cli_usage_msg(usage, err.msg);
        return NULL;
    }
    if (lmp_jobopts_pv_split(jo, final_out) != LMP_OK) { /* --pv: OUT.aqlm.h5, then OUT */
        fprintf(stderr, "lmpress: out of memory\n");
        *rc = LMP_EXIT_FAIL;
        return NULL;
    }
    net->bind_address = flags.bind_address ? flags.bind_address : getenv("LMPRESS_RUN_ADDRESS");
    if (net->remote && (*rc = rank0_net(net, pubs, size)) != LMP_EXIT_OK) return NULL;
    if (!jo->set[LMP_JOBOPT_THREADS]) jo->threads = threads, jo->set[LMP_JOBOPT_THREADS] = true;
    /* the coordinator keeps the pointer: the string lives in jo until the end */
    if (jo->state == NULL) {
        size_t n = strlen(jo->out) + sizeof(".state");
        if ((jo->state = malloc(n)) == NULL) {
            fprintf(stderr, "lmpress: out of memory\n");
            *rc = LMP_EXIT_FAIL;
            return NULL;
        }
        snprintf(jo->state, n, "%s.state", jo->out);
    }
    struct lmp_launch_opts lo;
    lmp_launch_opts_init(&lo);
    lo.state_dir      = jo->state;
    lo.n_workers      = size == 1 ? 1 : 0;
    lo.worker_threads = threads;
    lo.worker_name    = "rank0";
    if (net->remote) {
        lo.bind         = net->bind;
        lo.curve        = &net->server;
        lo.worker_curve = &net->worker;
    }
    struct lmp_launch *L = NULL;
    if (lmp_launch_start(&lo, &L, &err) != LMP_OK) {
        *rc = lmp_cli_fail(cli, &err);
        return NULL;
    }
    return L;
}

/* --pv, once the quantized artifact jo->out is done: its PV-Tuning into final_out as a job
 * of the same coordinator, on the worker ranks as data-parallel replicas (a job resumed from
 * the state directory may be this one already: then it is followed; a tuning whose result is
 * already there ends at once). RET an exit code. */
static int rank0_tune(struct lmp_cli *cli, struct lmp_client *cl, int size,
                      const struct lmp_jobopts *jo, const char *final_out, struct follow *f) {
    struct lmp_tune_job tj;
    lmp_jobopts_tune_job(jo, jo->out, final_out, jo->set[LMP_JOBOPT_CTX] ? jo->ctx : 0, 0, &tj);
    Lmp__TuneSpec ts;
    Lmp__JobSpec  spec = LMP__JOB_SPEC__INIT;
    /* the worker ranks as chains of tj.stages pipeline stages (pv-stages), the rest replicas */
    const int S  = tj.stages > 1 ? tj.stages : 1;
    const int nw = size > 1 ? size - 1 : 1;
    lmp_tune_spec_from_job(&ts, &tj, (uint32_t)(nw / S > 0 ? nw / S : 1));
    spec.model_path     = (char *)jo->model;
    spec.out_path       = (char *)final_out;
    spec.tune           = &ts;
    struct lmp_err  err = {0};
    uint64_t        id  = 0;
    Lmp__JobState   state;
    enum lmp_status st = lmp_launch_submit(cl, &spec, &id, NULL, &err);
    fprintf(stderr, "lmpress: PV-Tuning %s into %s (job %llu)\n", jo->out, final_out,
            (unsigned long long)id);
    f->last = UINT32_MAX;
    if (st == LMP_OK)
        st = lmp_launch_follow(cl, id, 300, &stop_flag, follow_status, f, &state, &err);
    if (st == LMP_ECANCEL) {
        fprintf(stderr, "lmpress: stopped; the tuning's checkpoint is kept: run the same command "
                        "again to resume\n");
        return LMP_EXIT_INTERRUPTED;
    }
    if (st != LMP_OK) return lmp_cli_fail(cli, &err);
    if (state == LMP__JOB_STATE__JOB_STATE_DONE)
        printf("job %llu done: %s\n", (unsigned long long)id, final_out);
    return lmp_cli_job_exit(state);
}

static int rank0_job(struct lmp_cli *cli, struct lmp_launch *L, const struct run_net *net, int size,
                     const struct lmp_jobopts *jo, const char *final_out) {
    struct lmp_err        err = {0};
    struct lmp_client    *cl  = NULL;
    struct lmp_jobopts_pb pb;
    lmp_jobopts_to_jobspec(jo, &pb);
    uint64_t        job_id = 0;
    struct follow   f     = {.last = UINT32_MAX, .n_ranks = size - 1, .ep = lmp_launch_endpoint(L)};
    Lmp__JobState   state = LMP__JOB_STATE__JOB_STATE_UNSPECIFIED;
    enum lmp_status st    = lmp_client_connect_curve(lmp_launch_endpoint(L), 10000,
                                                  net->remote ? &net->client : NULL, &cl, &err);
    if (st == LMP_OK && (job_id = running_job(cl)) != 0)
        fprintf(stderr, "lmpress: resuming job %llu from the state directory\n",
                (unsigned long long)job_id);
    if (st == LMP_OK && job_id == 0) st = lmp_launch_submit(cl, &pb.spec, &job_id, NULL, &err);
    if (st == LMP_OK)
        st = lmp_launch_follow(cl, job_id, 300, &stop_flag, follow_status, &f, &state, &err);
    if (st == LMP_OK && state == LMP__JOB_STATE__JOB_STATE_DONE && final_out) {
        printf("job %llu done: %s\n", (unsigned long long)job_id, jo->out);
        const int rc = rank0_tune(cli, cl, size, jo, final_out, &f);
        lmp_client_close(&cl);
        return rc;
    }
    lmp_client_close(&cl);
    if (st == LMP_ECANCEL && f.gave_up) { /* as lmpress worker would have exited */
        if (f.lost_status == LMP_EIO || f.lost_status == LMP_EVERSION) return LMP_EXIT_UNREACHABLE;
        return f.lost_status == LMP_EPERM ? LMP_EXIT_DENIED : LMP_EXIT_FAIL;
    }
    if (st == LMP_ECANCEL) {
        fprintf(stderr, "lmpress: stopped; committed layers and the state directory are kept: "
                        "run the same command again to resume\n");
        return LMP_EXIT_INTERRUPTED;
    }
    if (st != LMP_OK) return lmp_cli_fail(cli, &err);
    if (state == LMP__JOB_STATE__JOB_STATE_DONE)
        printf("job %llu done: %s\n", (unsigned long long)job_id, jo->out);
    return lmp_cli_job_exit(state);
}

struct agent_thread {
    struct lmp_agent_opts o;
    volatile sig_atomic_t stop;
    enum lmp_status       st;
    struct lmp_err        err;
    int                   finished; /* __atomic: the agent returned */
};

static void *agent_main(void *arg) {
    struct agent_thread *a = arg;
    a->st                  = lmp_agent_run(&a->o, &a->stop, &a->err);
    __atomic_store_n(&a->finished, 1, __ATOMIC_RELEASE);
    return NULL;
}

static bool env_on(const char *name) {
    const char *v = getenv(name);
    return v && v[0] && strcmp(v, "0") != 0;
}

static int cmd_run_exec(struct lmp_cli *cli, int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: %s\n", usage);
            return LMP_EXIT_OK;
        }
    int provided = 0, rank = 0, size = 1, local = 1, local_rank = 0;
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        fprintf(stderr, "lmpress: MPI_Init failed\n");
        return LMP_EXIT_FAIL;
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Comm node;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node);
    MPI_Comm_size(node, &local);
    MPI_Comm_rank(node, &local_rank);
    MPI_Comm_free(&node);
    int first_on_host = local_rank == 0, n_hosts = 1;
    MPI_Allreduce(&first_on_host, &n_hosts, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    long ncpu    = sysconf(_SC_NPROCESSORS_ONLN);
    int  threads = (int)((ncpu > 0 ? ncpu : 1) / local);
    if (threads < 1) threads = 1;
    lmp_kernels_set_threads(threads); /* the process budget, OpenBLAS included */
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* every rank's worker key pair; the public keys meet on rank 0 (used across hosts) */
    struct run_net net;
    memset(&net, 0, sizeof(net));
    net.n_hosts         = n_hosts;
    net.remote          = n_hosts > 1 || (rank == 0 && env_on("LMPRESS_RUN_FORCE_REMOTE"));
    struct lmp_err kerr = {0};
    if (lmp_key_pair_new(&net.worker.public_key, &net.worker.secret_key, &kerr) != LMP_OK)
        memset(&net.worker, 0, sizeof(net.worker));
    char *pubs = rank == 0 ? calloc((size_t)size, KEY_LEN) : NULL;
    if (rank == 0 && pubs == NULL) {
        fprintf(stderr, "lmpress: out of memory\n");
        MPI_Abort(MPI_COMM_WORLD, LMP_EXIT_FAIL);
    }
    MPI_Gather(net.worker.public_key.z85, KEY_LEN, MPI_CHAR, pubs, KEY_LEN, MPI_CHAR, 0,
               MPI_COMM_WORLD);

    int             rc = LMP_EXIT_OK;
    struct run_info info;
    memset(&info, 0, sizeof(info));
    struct lmp_jobopts jo;
    lmp_jobopts_init(&jo);
    struct lmp_launch *L         = NULL;
    char              *final_out = NULL; /* --pv: the tuned artifact (jo.out: the quantized) */
    if (rank == 0) {
        if ((L = rank0_start(cli, argc, argv, size, threads, pubs, &net, &jo, &final_out, &rc)) !=
            NULL) {
            snprintf(info.ep, sizeof(info.ep), "%s", lmp_launch_endpoint(L));
            if (net.remote)
                snprintf(info.server_key, sizeof(info.server_key), "%s", net.server.public_key.z85);
            fprintf(stderr, "lmpress: coordinator on %s, %d worker rank%s, %d threads each",
                    info.ep, size > 1 ? size - 1 : 1, size > 2 ? "s" : "", threads);
            if (net.remote)
                fprintf(stderr, "; %d host%s, CURVE with this run's keys (server key %s)", n_hosts,
                        n_hosts > 1 ? "s" : "", info.server_key);
            fputc('\n', stderr);
        }
        /* the coordinator's ZAP handler has its own copy of the keys */
        lmp_curve_server_release(&net.server);
        explicit_bzero(&net.server, sizeof(net.server));
    }
    free(pubs);
    MPI_Bcast(&info, (int)sizeof(info), MPI_BYTE, 0, MPI_COMM_WORLD);
    info.ep[EP_MAX - 1]          = '\0';
    info.server_key[KEY_LEN - 1] = '\0';
    char        bye              = 0;
    MPI_Request req;
    if (rank == 0) {
        if (L) {
            rc                 = rank0_job(cli, L, &net, size, &jo, final_out);
            struct lmp_err err = {0};
            if (lmp_launch_stop(&L, &err) != LMP_OK && rc == LMP_EXIT_OK)
                rc = lmp_cli_fail(cli, &err);
        }
        bye = 1;
        MPI_Ibcast(&bye, 1, MPI_CHAR, 0, MPI_COMM_WORLD, &req);
        MPI_Wait(&req, MPI_STATUS_IGNORE);
    } else {
        struct agent_thread a = {.stop = 0};
        pthread_t           thr;
        bool                started   = false;
        char                host[128] = "host", name[192];
        gethostname(host, sizeof(host) - 1);
        snprintf(name, sizeof(name), "rank%d@%s", rank, host);
        int lost = LMP_OK; /* why this rank cannot work, told to rank 0 once */
        if (info.ep[0] && info.server_key[0] && net.worker.public_key.z85[0] == '\0') {
            fprintf(stderr, "lmpress: rank %d: no CURVE key pair: %s\n", rank, kerr.msg);
            lost = LMP_EUNSUP;
        } else if (info.ep[0]) {
            memcpy(net.worker.server_key.z85, info.server_key, KEY_LEN);
            if (env_on("LMP_FAULT_RUN_WRONG_SERVER_KEY")) { /* tests: a worker that cannot join */
                struct lmp_key unused;
                lmp_key_pair_new(&net.worker.server_key, &unused, &kerr);
                explicit_bzero(&unused, sizeof(unused));
            }
            lmp_agent_opts_init(&a.o);
            a.o.endpoint  = info.ep;
            a.o.name      = name;
            a.o.n_threads = threads;
            a.o.curve     = info.server_key[0] ? &net.worker : NULL;
            a.o.tune      = lmp_cli_tune_rank;
            started       = pthread_create(&thr, NULL, agent_main, &a) == 0;
            if (!started) lost = LMP_ENOMEM;
        }
        /* wait for rank 0's word without spinning on a core the job needs; an agent that
         * ends before it (unreachable, refused) is told to rank 0, which stops the job once
         * no worker rank is left instead of waiting for workers that will never come */
        bool told = false, said = false;
        MPI_Ibcast(&bye, 1, MPI_CHAR, 0, MPI_COMM_WORLD, &req);
        for (int done = 0;;) {
            MPI_Test(&req, &done, MPI_STATUS_IGNORE);
            if (done) break;
            if (stop_flag) a.stop = 1; /* SIGTERM: hand the task back, wait for rank 0 */
            if (started && !a.stop && !said && __atomic_load_n(&a.finished, __ATOMIC_ACQUIRE)) {
                said = true;
                if (a.st != LMP_OK) {
                    fprintf(stderr, "lmpress: rank %d: %s\n", rank, a.err.msg);
                    lost = a.st;
                }
            }
            if (lost != LMP_OK && !told) {
                MPI_Send(&lost, 1, MPI_INT, 0, TAG_LOST, MPI_COMM_WORLD);
                told = true;
            }
            sleep_ms(100);
        }
        if (started) {
            a.stop = 1;
            pthread_join(thr, NULL);
            if (a.st != LMP_OK && !said) fprintf(stderr, "lmpress: rank %d: %s\n", rank, a.err.msg);
        }
    }
    explicit_bzero(&net, sizeof(net));
    int all = rc;
    MPI_Allreduce(&rc, &all, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    for (int flag = rank == 0; flag;) { /* news of a worker rank that came too late */
        int code;
        MPI_Iprobe(MPI_ANY_SOURCE, TAG_LOST, MPI_COMM_WORLD, &flag, MPI_STATUS_IGNORE);
        if (flag)
            MPI_Recv(&code, 1, MPI_INT, MPI_ANY_SOURCE, TAG_LOST, MPI_COMM_WORLD,
                     MPI_STATUS_IGNORE);
    }
    lmp_jobopts_release(&jo);
    free(final_out);
    MPI_Finalize();
    return all;
}

#endif /* LMP_HAVE_MPI */

const struct lmp_cli_cmd lmp_cli_cmd_run = {
    .name    = "run",
    .summary = "run a JOB on the ranks of an MPI launch (mpirun / srun)",
    .usage   = usage,
    .help    = help,
    .exec    = cmd_run_exec,
};
