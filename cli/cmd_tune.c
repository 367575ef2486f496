/*  cmd_tune - lmpress tune: PV-Tuning of an AQLM artifact against its original model
 *
 *  Runs coordinator/tune.h's job in this process: prints one line per step (step, KL,
 *  agreement, codes changed, tokens/s) or, with --json, one object at the end. SIGINT /
 *  SIGTERM stop at the next micro-batch and checkpoint the state (exit 130); the same
 *  command resumes it. Under mpirun / srun (built with MPI) the ranks are data-parallel
 *  replicas (worker/tune.h: exact integer gradient sums, so any number of ranks gives the
 *  one-process result), or with --stages S chains of S pipeline stages (rank = replica x S
 *  + stage; activations and gradients between neighbours by MPI_Send / MPI_Recv); rank 0
 *  prints and writes.
 */
#include "cli/cli.h"
#include "base/cancel.h"      /* defines: lmp_cancel_shutdown */
#include "cli/cluster.h"      /* defines: lmp_cli_submit_job */
#include "cli/tune_cli.h"     /* defines: lmp_cli_tune_run */
#include "coordinator/tune.h" /* defines: lmp_tune_job_run */

#include <cjson/cJSON.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const usage =
    "lmpress tune --artifact ART.h5 --model ORIGINAL --data FILE|generate --out TUNED.h5\n"
    "             [--steps N] [--batch B] [--micro M] [--ctx N] [--max-windows K] [--val-windows "
    "V]\n"
    "             [--lr X] [--code-lr X] [--code-frac F] [--v-every N] [--beam W]\n"
    "             [--trust-ratio X] [--lamb] [--blocks K] [--no-norms] [--seed S] "
    "[--checkpoint-minutes X]\n"
    "             [--threads T] [--json] [--stages S]\n"
    "             [--connect EP [--wait] [--replicas R] [--stages S]]";

static const char *const help =
    "PV-Tuning (docs/pv-tuning.md): codebooks, scales and norms by Adam (P step) and codes by\n"
    "a linearized V step, against KL(original || compressed) over the whole vocabulary.\n\n"
    "  --artifact ART.h5     an AQLM artifact (complete) to tune (required)\n"
    "  --model ORIGINAL      the model ART.h5 was compressed from (required; checked by its\n"
    "                        fingerprint)\n"
    "  --data FILE|generate  tuning text (required): a text file, never the evaluation text,\n"
    "                        or \"generate\": windows the original model writes itself\n"
    "                        (sampled at temperature 1; --max-windows of them, default one\n"
    "                        per window the steps take, at most 512, plus --val-windows)\n"
    "  --out TUNED.h5        the tuned artifact (required); TUNED.h5.tune/ holds the\n"
    "                        checkpoint while it runs, and the same command resumes from it\n"
    "  --steps N             optimizer steps in total (default 100)\n"
    "  --batch B             windows per step (default 8)\n"
    "  --micro M             windows per forward/backward, for memory (default 1)\n"
    "  --ctx N               tokens per window (default the model's context, at most 512)\n"
    "  --max-windows K       use at most K windows of the text (default all), or generate K\n"
    "  --val-windows V       windows at the end of the text held out for KL and agreement\n"
    "                        before and after (default 2; never trained on)\n"
    "  --lr X                P step Adam learning rate (default 1e-4)\n"
    "  --lamb                P step by LAMB: --lr is then a fraction of each tensor's norm per\n"
    "                        step (default Adam)\n"
    "  --code-lr X           V step: the straight-through buffers' learning rate (default by\n"
    "                        the scheme's code bits per weight: 3e-3 at 2, 5e-4 at 4)\n"
    "  --code-frac F         V step: fraction of each layer's groups re-encoded (default 0.01)\n"
    "  --v-every N           a V step every N steps; 0: P steps only (default 1)\n"
    "  --beam W              V step beam width (default 8)\n"
    "  --trust-ratio X       V step: keep new codes (farthest groups first) only while a layer's\n"
    "                        weight moves by at most X times its norm per step (default 0: no\n"
    "                        cap)\n"
    "  --blocks K            sparse tuning: only the K blocks a probe (|gradient| on 2\n"
    "                        windows) scores highest; no backward below the earliest (default\n"
    "                        every block)\n"
    "  --no-norms            keep the RMSNorm weights frozen (default: trained)\n"
    "  --seed S              data order (default 1)\n"
    "  --checkpoint-minutes X  minutes between checkpoints (default 10; also on a stop)\n"
    "  --threads T           threads (default every core; per rank under MPI)\n"
    "  --json                print one JSON object at the end\n"
    "  --stages S            split the model's blocks into S pipeline stages, one rank each:\n"
    "                        under mpirun / srun (the ranks must be a multiple of S; the\n"
    "                        rest are replicas), or with --connect (S x R workers); the same\n"
    "                        artifact as one process\n"
    "  --connect EP          run it as a job of the coordinator at EP instead, on its workers\n"
    "                        (the paths must name the same files there); prints the job id\n"
    "  --wait                with --connect: follow the job to its end (one line per step)\n"
    "  --replicas R          with --connect: data-parallel replicas (default 1; fewer when\n"
    "                        fewer are there; any number gives the same "
    "artifact)\n" LMP_CLI_KEYS_HELP;

static void on_signal(int sig) {
    (void)sig;
    lmp_cancel_shutdown();
}

/* ---- MPI: data-parallel ranks (mpirun / srun lmpress tune) ---------------------------- */

static int g_rank; /* this process's rank (0 without MPI) */

#ifdef LMP_HAVE_MPI
#include <mpi.h>

static enum lmp_status mpi_sum(void *x, int64_t n, MPI_Datatype type, size_t size) {
    for (int64_t off = 0; off < n;) { /* MPI counts are int: chunks */
        const int64_t m = n - off < (1 << 28) ? n - off : (1 << 28);
        if (MPI_Allreduce(MPI_IN_PLACE, (char *)x + (size_t)off * size, (int)m, type, MPI_SUM,
                          MPI_COMM_WORLD) != MPI_SUCCESS)
            return LMP_EIO;
        off += m;
    }
    return LMP_OK;
}
static enum lmp_status mpi_sum_i64(void *ctx, int64_t *x, int64_t n) {
    (void)ctx;
    return mpi_sum(x, n, MPI_INT64_T, sizeof(*x));
}
/* The sum lands on rank root only (the others' x is left as it was). */
static enum lmp_status mpi_reduce_i64(void *ctx, int root, int64_t *x, int64_t n) {
    (void)ctx;
    for (int64_t off = 0; off < n;) {
        const int64_t m  = n - off < (1 << 28) ? n - off : (1 << 28);
        const bool    me = g_rank == root;
        if (MPI_Reduce(me ? MPI_IN_PLACE : x + off, me ? x + off : NULL, (int)m, MPI_INT64_T,
                       MPI_SUM, root, MPI_COMM_WORLD) != MPI_SUCCESS)
            return LMP_EIO;
        off += m;
    }
    return LMP_OK;
}
static enum lmp_status mpi_sum_f64(void *ctx, double *x, int64_t n) {
    (void)ctx;
    return mpi_sum(x, n, MPI_DOUBLE, sizeof(*x));
}

/* Pipeline messages: to / from stage `to` of this rank's chain (rank = replica x S + stage),
 * in chunks (MPI counts are int). */
static int             g_stages = 1, g_replica;
static enum lmp_status mpi_send(void *ctx, int to, const void *buf, size_t n) {
    (void)ctx;
    size_t off = 0;
    do {
        const size_t m = n - off < ((size_t)1 << 30) ? n - off : ((size_t)1 << 30);
        if (MPI_Send((const char *)buf + off, (int)m, MPI_BYTE, g_replica * g_stages + to, 7,
                     MPI_COMM_WORLD) != MPI_SUCCESS)
            return LMP_EIO;
        off += m;
    } while (off < n);
    return LMP_OK;
}
static enum lmp_status mpi_recv(void *ctx, int from, void *buf, size_t n) {
    (void)ctx;
    size_t off = 0;
    do {
        const size_t m   = n - off < ((size_t)1 << 30) ? n - off : ((size_t)1 << 30);
        MPI_Status   st  = {0};
        int          got = 0;
        if (MPI_Recv((char *)buf + off, (int)m, MPI_BYTE, g_replica * g_stages + from, 7,
                     MPI_COMM_WORLD, &st) != MPI_SUCCESS ||
            MPI_Get_count(&st, MPI_BYTE, &got) != MPI_SUCCESS || (size_t)got != m)
            return LMP_EFORMAT;
        off += m;
    } while (off < n);
    return LMP_OK;
}

/* Under mpirun or srun (their environment says so): MPI up, *comm filled when there is more
 * than one rank. RET false when MPI_Init failed (it printed why). */
static bool mpi_start(struct lmp_tune_comm *comm, bool *on) {
    *on = getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMIX_RANK");
    if (!*on) return true;
    int provided = 0, rank = 0, size = 1;
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        fprintf(stderr, "lmpress: MPI_Init failed\n");
        return false;
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    g_rank = rank;
    *comm  = (struct lmp_tune_comm){rank, size, NULL, mpi_sum_i64, mpi_sum_f64, mpi_reduce_i64};
    return true;
}

/* A rank that fails while others wait in a sum would hang them: end them all. */
static int mpi_end(bool on, int size, int rc) {
    if (!on) return rc;
    if (rc != LMP_EXIT_OK && rc != LMP_EXIT_INTERRUPTED && size > 1) MPI_Abort(MPI_COMM_WORLD, rc);
    MPI_Finalize();
    return rc;
}
#endif

static void progress(void *ctx, const struct lmp_tune_step_stats *s, int64_t n_steps) {
    const struct lmp_cli *cli = ctx;
    if (cli->json || g_rank != 0) return;
    fprintf(stderr,
            "step %lld/%lld  kl %.4f  agree %.3f  codes changed %lld/%lld  %.0f tok/s  "
            "(%.1f s: sum %.1f, P/V %.1f)\n",
            (long long)s->step, (long long)n_steps, s->kl, s->agree, (long long)s->codes_changed,
            (long long)s->codes_selected, s->seconds > 0 ? (double)s->rows / s->seconds : 0.0,
            s->seconds, s->seconds_sum, s->seconds_pv);
}

static void notice(void *ctx, const char *line) {
    (void)ctx;
    if (g_rank != 0) return;
    fprintf(stderr, "lmpress: %s\n", line);
}

static cJSON *num_or_null(double v) {
    return isnan(v) ? cJSON_CreateNull() : cJSON_CreateNumber(v);
}

static int cmd_tune_exec(struct lmp_cli *cli, int argc, char **argv) {
    struct lmp_tune_job j;
    lmp_tune_job_init(&j);
    long long                  ll;
    double                     d;
    static const struct option opts[] = {
        {"artifact", required_argument, NULL, 'a'},
        {"model", required_argument, NULL, 'm'},
        {"data", required_argument, NULL, 'd'},
        {"out", required_argument, NULL, 'o'},
        {"steps", required_argument, NULL, 's'},
        {"batch", required_argument, NULL, 'b'},
        {"micro", required_argument, NULL, 'u'},
        {"ctx", required_argument, NULL, 'c'},
        {"max-windows", required_argument, NULL, 'w'},
        {"val-windows", required_argument, NULL, 'V'},
        {"lr", required_argument, NULL, 'l'},
        {"code-lr", required_argument, NULL, 'L'},
        {"code-frac", required_argument, NULL, 'f'},
        {"v-every", required_argument, NULL, 'e'},
        {"beam", required_argument, NULL, 'B'},
        {"blocks", required_argument, NULL, 'K'},
        {"trust-ratio", required_argument, NULL, 'R'},
        {"lamb", no_argument, NULL, 'A'},
        {"no-norms", no_argument, NULL, 'N'},
        {"seed", required_argument, NULL, 'S'},
        {"checkpoint-minutes", required_argument, NULL, 'C'},
        {"threads", required_argument, NULL, 't'},
        {"json", no_argument, NULL, 'j'},
        {"connect", required_argument, NULL, 'E'},
        {"wait", no_argument, NULL, 'W'},
        {"replicas", required_argument, NULL, 'P'},
        {"stages", required_argument, NULL, 'G'},
        {0},
    };
    const char *connect  = NULL;
    bool        wait     = false;
    long long   replicas = 0, stages = 1;
    for (int c; (c = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
        switch (c) {
        case 'a':
            j.artifact = optarg;
            break;
        case 'm':
            j.model = optarg;
            break;
        case 'd':
            j.data = optarg;
            break;
        case 'o':
            j.out = optarg;
            break;
        case 's':
            if (!lmp_cli_parse_i64("--steps", optarg, 0, 100000000, &ll)) return LMP_EXIT_USAGE;
            j.steps = ll;
            break;
        case 'b':
            if (!lmp_cli_parse_i64("--batch", optarg, 1, 65536, &ll)) return LMP_EXIT_USAGE;
            j.opts.batch_seqs = ll;
            break;
        case 'u':
            if (!lmp_cli_parse_i64("--micro", optarg, 1, 64, &ll)) return LMP_EXIT_USAGE;
            j.opts.micro_seqs = ll;
            break;
        case 'c':
            if (!lmp_cli_parse_i64("--ctx", optarg, 2, 1 << 20, &ll)) return LMP_EXIT_USAGE;
            j.ctx = ll;
            break;
        case 'w':
            if (!lmp_cli_parse_i64("--max-windows", optarg, 1, 100000000, &ll))
                return LMP_EXIT_USAGE;
            j.max_windows = ll;
            break;
        case 'V':
            if (!lmp_cli_parse_i64("--val-windows", optarg, 0, 100000, &ll)) return LMP_EXIT_USAGE;
            j.val_windows = ll;
            break;
        case 'l':
            if (!lmp_cli_parse_f64("--lr", optarg, 1e-9, 1.0, &d)) return LMP_EXIT_USAGE;
            j.opts.pv.lr = (float)d;
            break;
        case 'L':
            if (!lmp_cli_parse_f64("--code-lr", optarg, 1e-9, 10.0, &d)) return LMP_EXIT_USAGE;
            j.opts.pv.code_lr = (float)d;
            break;
        case 'f':
            if (!lmp_cli_parse_f64("--code-frac", optarg, 0.0, 1.0, &d)) return LMP_EXIT_USAGE;
            j.opts.pv.code_frac = d;
            break;
        case 'e':
            if (!lmp_cli_parse_i64("--v-every", optarg, 0, 1000000, &ll)) return LMP_EXIT_USAGE;
            j.opts.v_every = (int)ll;
            break;
        case 'B':
            if (!lmp_cli_parse_i64("--beam", optarg, 1, 256, &ll)) return LMP_EXIT_USAGE;
            j.opts.pv.beam = (int)ll;
            break;
        case 'A':
            j.opts.pv.lamb = true;
            break;
        case 'R':
            if (!lmp_cli_parse_f64("--trust-ratio", optarg, 0.0, 100.0, &d)) return LMP_EXIT_USAGE;
            j.opts.pv.trust_ratio = d;
            break;
        case 'K':
            if (!lmp_cli_parse_i64("--blocks", optarg, 1, 100000, &ll)) return LMP_EXIT_USAGE;
            j.max_blocks = (int)ll;
            break;
        case 'N':
            j.opts.train_norms = false;
            break;
        case 'S':
            if (!lmp_cli_parse_i64("--seed", optarg, 0, INT64_MAX, &ll)) return LMP_EXIT_USAGE;
            j.opts.seed = (uint64_t)ll;
            break;
        case 'C':
            if (!lmp_cli_parse_f64("--checkpoint-minutes", optarg, 0.0, 1e6, &d))
                return LMP_EXIT_USAGE;
            j.ckpt_seconds = 60.0 * d;
            break;
        case 't':
            if (!lmp_cli_parse_i64("--threads", optarg, 1, 1024, &ll)) return LMP_EXIT_USAGE;
            j.n_threads = (int)ll;
            break;
        case 'j':
            cli->json = true;
            break;
        case 'E':
            connect = optarg;
            break;
        case 'W':
            wait = true;
            break;
        case 'P':
            if (!lmp_cli_parse_i64("--replicas", optarg, 1, 64, &replicas)) return LMP_EXIT_USAGE;
            break;
        case 'G':
            if (!lmp_cli_parse_i64("--stages", optarg, 1, 4096, &stages)) return LMP_EXIT_USAGE;
            break;
        default:
            return lmp_cli_usage(usage);
        }
    }
    if (optind != argc) return lmp_cli_usage_msg(usage, "unexpected argument");
    if (!j.artifact || !j.model || !j.data || !j.out)
        return lmp_cli_usage_msg(usage, "--artifact, --model, --data and --out are required");
    if (strcmp(j.artifact, j.out) == 0)
        return lmp_cli_usage_msg(usage, "--out must differ from --artifact");
    if ((wait || replicas) && connect == NULL)
        return lmp_cli_usage_msg(usage, "--wait and --replicas go with --connect");
    if (connect) { /* a cluster job: the coordinator's workers run it */
        Lmp__JobSpec  spec = LMP__JOB_SPEC__INIT;
        Lmp__TuneSpec ts;
        j.stages = (int)stages;
        lmp_tune_spec_from_job(&ts, &j, (uint32_t)(replicas ? replicas : 1));
        spec.model_path = (char *)j.model;
        spec.out_path   = (char *)j.out;
        spec.tune       = &ts;
        return lmp_cli_submit_job(cli, connect, &spec, wait);
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
#ifdef LMP_HAVE_MPI
    struct lmp_tune_comm comm = {0};
    struct lmp_tune_pipe pipe = {0};
    bool                 mpi  = false;
    if (!mpi_start(&comm, &mpi)) return LMP_EXIT_FAIL;
    if (mpi && comm.size > 1) { /* MPI ranks fail together: owner-only P/V */
        j.opts.comm     = &comm;
        j.opts.owner_pv = true;
    }
    if (stages > 1 && (!mpi || comm.size % stages != 0)) {
        if (g_rank == 0)
            fprintf(stderr,
                    "lmpress: --stages %lld needs mpirun / srun with a multiple of %lld ranks "
                    "(here %d)\n",
                    stages, stages, mpi ? comm.size : 1);
        return mpi_end(mpi, comm.size, LMP_EXIT_USAGE);
    }
    if (stages > 1) {
        g_stages    = (int)stages;
        g_replica   = comm.rank / g_stages;
        pipe        = (struct lmp_tune_pipe){comm.rank % g_stages,
                                             g_stages,
                                             g_replica,
                                             comm.size / g_stages,
                                             NULL,
                                             mpi_send,
                                             mpi_recv};
        j.opts.pipe = &pipe;
    }
#else
    if (stages > 1) {
        fprintf(stderr, "lmpress: --stages needs a build with MPI (-DLMP_MPI=ON)\n");
        return LMP_EXIT_USAGE;
    }
#endif
    cJSON *o  = cli->json && g_rank == 0 ? cJSON_CreateObject() : NULL;
    int    rc = lmp_cli_tune_run(cli, &j, o);
#ifdef LMP_HAVE_MPI
    rc = mpi_end(mpi, comm.size, rc);
#endif
    if (o && rc == LMP_EXIT_OK) {
        char *s = cJSON_PrintUnformatted(o);
        if (s) puts(s);
        free(s);
    }
    cJSON_Delete(o);
    return rc;
}

int lmp_cli_tune_run(struct lmp_cli *cli, struct lmp_tune_job *j, cJSON *o) {
    j->progress     = progress;
    j->progress_ctx = cli;
    j->notice       = notice;
    struct lmp_tune_result r;
    struct lmp_err         err = {0};
    enum lmp_status        st  = lmp_tune_job_run(j, &r, &err);
    if (st == LMP_ECANCEL) {
        if (g_rank == 0) fprintf(stderr, "lmpress: %s\n", err.msg);
        return LMP_EXIT_INTERRUPTED;
    }
    if (st != LMP_OK) return lmp_cli_fail(cli, &err);
    if (g_rank != 0) return LMP_EXIT_OK;
    if (o) {
        cJSON_AddStringToObject(o, "out", j->out);
        cJSON_AddNumberToObject(o, "steps", (double)r.steps_done);
        cJSON_AddNumberToObject(o, "resumed_at", (double)r.resumed_at);
        cJSON_AddNumberToObject(o, "windows", (double)r.n_windows);
        cJSON_AddNumberToObject(o, "tokens", (double)r.n_tokens);
        cJSON_AddItemToObject(o, "val_kl_before", num_or_null(r.val_kl_before));
        cJSON_AddItemToObject(o, "val_agree_before", num_or_null(r.val_agree_before));
        cJSON_AddItemToObject(o, "val_kl_after", num_or_null(r.val_kl_after));
        cJSON_AddItemToObject(o, "val_agree_after", num_or_null(r.val_agree_after));
        cJSON_AddNumberToObject(o, "codes_changed", (double)r.codes_changed);
        cJSON_AddNumberToObject(o, "seconds_tuning", r.seconds_tuning);
        cJSON_AddNumberToObject(o, "seconds_sum", r.seconds_sum);
        cJSON_AddNumberToObject(o, "seconds_pv", r.seconds_pv);
        cJSON_AddNumberToObject(o, "tokens_per_s", r.tokens_per_s);
    } else {
        fprintf(stderr, "tuned %lld steps (%lld windows of text) in %.1f s, %.0f tok/s; wrote %s\n",
                (long long)r.steps_done, (long long)r.n_windows, r.seconds_tuning, r.tokens_per_s,
                j->out);
        if (!isnan(r.val_kl_after))
            fprintf(stderr, "held-out KL %.4f -> %.4f, top-1 agreement %.3f -> %.3f%s\n",
                    r.val_kl_before, r.val_kl_after, r.val_agree_before, r.val_agree_after,
                    r.resumed_at > 0 ? " (before: not measured by a resumed run)" : "");
    }
    return LMP_EXIT_OK;
}

enum lmp_status lmp_cli_tune_rank(void *ctx, const Lmp__TaskAssign *ta,
                                  const struct lmp_tune_comm *comm, const atomic_int *cancel,
                                  void (*progress)(void *, const struct lmp_tune_step_stats *,
                                                   int64_t),
                                  void *pctx, struct lmp_agent_tune_out *out, struct lmp_err *err) {
    (void)ctx;
    struct lmp_tune_job j;
    lmp_tune_job_from_spec(&j, ta->tune, ta->model_path, ta->out_dir);
    j.n_threads = (int)ta->n_threads;
    j.opts.comm = comm; /* ranks through a coordinator survive each other: no owner_pv */
    /* pipeline stages: chains of min(stages, ranks) (the coordinator sends whole chains),
     * their transfers as sums through the coordinator (no send/recv) */
    struct lmp_tune_pipe pipe = {0};
    const uint32_t       S    = j.stages > 1 ? (uint32_t)j.stages : 1;
    const uint32_t       Se   = comm && S > (uint32_t)comm->size ? (uint32_t)comm->size : S;
    if (Se > 1) {
        if (comm == NULL || comm->size % (int)Se != 0)
            return lmp_err_set(err, LMP_EINVAL, "tune: %d ranks do not make chains of %u stages",
                               comm ? comm->size : 1, Se);
        pipe        = (struct lmp_tune_pipe){.stage      = comm->rank % (int)Se,
                                             .n_stages   = (int)Se,
                                             .replica    = comm->rank / (int)Se,
                                             .n_replicas = comm->size / (int)Se};
        j.opts.pipe = &pipe;
    }
    j.opts.cancel  = cancel;
    j.progress     = progress;
    j.progress_ctx = pctx;
    struct lmp_tune_result r;
    enum lmp_status        st = lmp_tune_job_run(&j, &r, err);
    if (st == LMP_OK) {
        out->steps_done    = r.steps_done;
        out->val_kl_before = r.val_kl_before;
        out->val_kl_after  = r.val_kl_after;
        out->seconds       = r.seconds_tuning;
    }
    return st;
}

const struct lmp_cli_cmd lmp_cli_cmd_tune = {
    .name    = "tune",
    .summary = "PV-Tuning of an AQLM artifact against its original model",
    .usage   = usage,
    .help    = help,
    .exec    = cmd_tune_exec,
};
