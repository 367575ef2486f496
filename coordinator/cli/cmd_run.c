/*  cmd_run - lmpress run JOB: one compression job on the ranks of an MPI launch
 *
 *      mpirun -np N lmpress run JOB          srun --mpi=pmix lmpress run JOB
 *
 *  Rank 0 is the coordinator: it binds a loopback TCP endpoint (every rank must share its
 *  host: a multi-node run needs CURVE authentication, which is not wired into the
 *  coordinator yet, so it is refused), broadcasts it (MPI_Bcast), submits the JOB to its
 *  own coordinator, follows it to its end, then tells the workers to stop (MPI_Ibcast,
 *  which the workers test with a sleep between tests instead of spinning). Ranks 1..N-1
 *  are workers; each takes cores-on-the-node / ranks-on-the-node threads (OpenBLAS too).
 *  With -np 1 rank 0 also runs one worker thread. Every rank exits with the same code,
 *  agreed with MPI_Allreduce (MAX): the job's (0 done, 1 failed, 2 bad JOB, 130 stopped).
 *
 *  SIGTERM / SIGINT on rank 0 (Slurm preemption): the coordinator stops, keeping the
 *  committed layers and its --state directory (default: the JOB's out path + ".state");
 *  running the same command again resumes the job. Without LMP_MPI at build time the
 *  command says so and fails.
 */
#include "coordinator/cli/cli.h"
#include "coordinator/cli/jobopts.h"  /* defines: lmp_jobopts_* */

#include <stdio.h>
#include <string.h>

static const char *const usage =
    "mpirun -np N lmpress run [--verbose] JOB [job options]\n"
    "job options (as lmpress compress; they override the JOB file's):\n    " LMP_JOBOPTS_USAGE;

#ifndef LMP_HAVE_MPI

static int cmd_run_exec(struct lmp_cli *cli, int argc, char **argv) {
    (void) cli;
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

#include "coordinator/cli/cluster.h"  /* defines: lmp_cli_job_exit */
#include "coordinator/launch.h"       /* defines: lmp_launch_* */
#include "proto/log.h"                /* defines: lmp_log_set_level */
#include "worker/agent.h"             /* defines: lmp_agent_run */

#include <mpi.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

void openblas_set_num_threads(int n);   /* OpenBLAS's own API (cblas.h) */

enum { EP_MAX = 256 };

static volatile sig_atomic_t stop_flag;
static void on_signal(int sig) { (void) sig; stop_flag = 1; }

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long) (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static bool on_extra(void *ctx, int val, const char *arg) {
    (void) arg;
    if (val == 256) *(bool *) ctx = true;
    return true;
}

static void follow_status(void *ctx, const Lmp__JobInfo *j) {
    uint32_t *last = ctx;
    if (j->layers_done == *last) return;
    *last = j->layers_done;
    fprintf(stderr, "job %llu: %u/%u layers done", (unsigned long long) j->job_id, j->layers_done,
            j->layers_total);
    if (j->eta_s >= 0 && j->state == LMP__JOB_STATE__JOB_STATE_RUNNING)
        fprintf(stderr, ", ETA %.0fs", j->eta_s);
    fputc('\n', stderr);
    if (j->state == LMP__JOB_STATE__JOB_STATE_FAILED && j->error && j->error->message)
        fprintf(stderr, "lmpress: job %llu failed: %s\n", (unsigned long long) j->job_id,
                j->error->message);
}

/* The id of a job the coordinator already runs (resumed from its state directory), or 0. */
static uint64_t running_job(struct lmp_client *cl) {
    Lmp__Envelope env, *rep = NULL;
    Lmp__JobQuery q = LMP__JOB_QUERY__INIT;
    struct lmp_err err = {0};
    lmp_wire_init(&env, 0, 0);
    env.body_case = LMP__ENVELOPE__BODY_JOB_QUERY;
    env.job_query = &q;
    uint64_t id = 0;
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

/* Rank 0 before the broadcast: parse the JOB, start the coordinator (+ a worker with
 * -np 1). On failure *rc is set and no endpoint is returned. */
static struct lmp_launch *rank0_start(struct lmp_cli *cli, int argc, char **argv, int size,
                                      int threads, struct lmp_jobopts *jo, int *rc) {
    bool verbose = false;
    static const struct option extra[] = {{"verbose", no_argument, NULL, 256}, {0}};
    struct lmp_jobopts_cmd pc = {.extra = extra, .on_extra = on_extra, .ctx = &verbose,
                                 .job_arg = true};
    struct lmp_err err = {0};
    if ((*rc = lmp_jobopts_parse_argv(jo, argc, argv, &pc, &err)) != LMP_EXIT_OK) return NULL;
    if (verbose && lmp_log_get_level() < LMP_LOG_INFO) lmp_log_set_level(LMP_LOG_INFO);
    if (jo->job_path == NULL) {
        *rc = lmp_cli_usage_msg(usage, "expected a JOB file");
        return NULL;
    }
    if (lmp_jobopts_check(jo, &err) != LMP_OK) {
        *rc = lmp_cli_usage_msg(usage, err.msg);
        return NULL;
    }
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
    struct lmp_launch *L = NULL;
    if (lmp_launch_start(&lo, &L, &err) != LMP_OK) {
        *rc = lmp_cli_fail(cli, &err);
        return NULL;
    }
    return L;
}

static int rank0_job(struct lmp_cli *cli, struct lmp_launch *L, const struct lmp_jobopts *jo) {
    struct lmp_err err = {0};
    struct lmp_client *cl = NULL;
    struct lmp_jobopts_pb pb;
    lmp_jobopts_to_jobspec(jo, &pb);
    uint64_t job_id = 0;
    uint32_t last = UINT32_MAX;
    Lmp__JobState state = LMP__JOB_STATE__JOB_STATE_UNSPECIFIED;
    enum lmp_status st = lmp_client_connect(lmp_launch_endpoint(L), 10000, &cl, &err);
    if (st == LMP_OK && (job_id = running_job(cl)) != 0)
        fprintf(stderr, "lmpress: resuming job %llu from the state directory\n",
                (unsigned long long) job_id);
    if (st == LMP_OK && job_id == 0) st = lmp_launch_submit(cl, &pb.spec, &job_id, NULL, &err);
    if (st == LMP_OK) st = lmp_launch_follow(cl, job_id, 300, &stop_flag, follow_status, &last, &state, &err);
    lmp_client_close(&cl);
    if (st == LMP_ECANCEL) {
        fprintf(stderr, "lmpress: stopped; committed layers and the state directory are kept: "
                        "run the same command again to resume\n");
        return LMP_EXIT_INTERRUPTED;
    }
    if (st != LMP_OK) return lmp_cli_fail(cli, &err);
    if (state == LMP__JOB_STATE__JOB_STATE_DONE) printf("job %llu done: %s\n", (unsigned long long) job_id, jo->out);
    return lmp_cli_job_exit(state);
}

struct agent_thread {
    struct lmp_agent_opts o;
    volatile sig_atomic_t stop;
    enum lmp_status       st;
    struct lmp_err        err;
};

static void *agent_main(void *arg) {
    struct agent_thread *a = arg;
    a->st = lmp_agent_run(&a->o, &a->stop, &a->err);
    return NULL;
}

static int cmd_run_exec(struct lmp_cli *cli, int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: %s\n", usage);
            return LMP_EXIT_OK;
        }
    int provided = 0, rank = 0, size = 1, local = 1;
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        fprintf(stderr, "lmpress: MPI_Init failed\n");
        return LMP_EXIT_FAIL;
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Comm node;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node);
    MPI_Comm_size(node, &local);
    MPI_Comm_free(&node);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int threads = (int) ((ncpu > 0 ? ncpu : 1) / local);
    if (threads < 1) threads = 1;
    openblas_set_num_threads(threads);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    int rc = LMP_EXIT_OK;
    char ep[EP_MAX] = "";
    struct lmp_jobopts jo;
    lmp_jobopts_init(&jo);
    struct lmp_launch *L = NULL;
    if (rank == 0) {
        if (local != size) {
            fprintf(stderr, "lmpress: the ranks span several hosts; a multi-node run needs CURVE "
                            "authentication, which 'lmpress run' does not set up yet: run on one "
                            "node, or start 'lmpress coordinator' and 'lmpress worker' yourself\n");
            rc = LMP_EXIT_USAGE;
        } else if ((L = rank0_start(cli, argc, argv, size, threads, &jo, &rc)) != NULL) {
            snprintf(ep, sizeof(ep), "%s", lmp_launch_endpoint(L));
            fprintf(stderr, "lmpress: coordinator on %s, %d worker rank%s, %d threads each\n", ep,
                    size > 1 ? size - 1 : 1, size > 2 ? "s" : "", threads);
        }
    }
    MPI_Bcast(ep, EP_MAX, MPI_CHAR, 0, MPI_COMM_WORLD);
    ep[EP_MAX - 1] = '\0';
    char bye = 0;
    MPI_Request req;
    if (rank == 0) {
        if (L) {
            rc = rank0_job(cli, L, &jo);
            struct lmp_err err = {0};
            if (lmp_launch_stop(&L, &err) != LMP_OK && rc == LMP_EXIT_OK) rc = lmp_cli_fail(cli, &err);
        }
        bye = 1;
        MPI_Ibcast(&bye, 1, MPI_CHAR, 0, MPI_COMM_WORLD, &req);
        MPI_Wait(&req, MPI_STATUS_IGNORE);
    } else {
        struct agent_thread a = {.stop = 0};
        pthread_t thr;
        bool started = false;
        char host[128] = "host", name[192];
        gethostname(host, sizeof(host) - 1);
        snprintf(name, sizeof(name), "rank%d@%s", rank, host);
        if (ep[0]) {
            lmp_agent_opts_init(&a.o);
            a.o.endpoint  = ep;
            a.o.name      = name;
            a.o.n_threads = threads;
            started = pthread_create(&thr, NULL, agent_main, &a) == 0;
        }
        /* wait for rank 0's word without spinning on a core the job needs */
        MPI_Ibcast(&bye, 1, MPI_CHAR, 0, MPI_COMM_WORLD, &req);
        for (int done = 0;;) {
            MPI_Test(&req, &done, MPI_STATUS_IGNORE);
            if (done) break;
            if (stop_flag) a.stop = 1;   /* SIGTERM: hand the task back, wait for rank 0 */
            sleep_ms(100);
        }
        if (started) {
            a.stop = 1;
            pthread_join(thr, NULL);
            if (a.st != LMP_OK) fprintf(stderr, "lmpress: rank %d: %s\n", rank, a.err.msg);
        }
    }
    int all = rc;
    MPI_Allreduce(&rc, &all, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    lmp_jobopts_release(&jo);
    MPI_Finalize();
    return all;
}

#endif /* LMP_HAVE_MPI */

const struct lmp_cli_cmd lmp_cli_cmd_run = {
    .name = "run", .summary = "run a JOB on the ranks of an MPI launch (mpirun / srun)",
    .usage = usage, .exec = cmd_run_exec,
};
