/*  cmd_compress - lmpress compress: compress a model into an artifact on this machine
 *
 *  Calibration comes from a text file (windows of --ctx tokens at seeded random offsets)
 *  or from the model itself (--calib generate). Each linear is compressed with AQLM
 *  (--scheme MxBgG) or RTN (--method rtn --bits N --group G) and committed to the
 *  artifact as soon as it is final, so an interrupted run resumes where it stopped.
 *  Progress goes to stderr, one line per layer (a live line on a terminal); the summary
 *  to stdout (--json: one object).
 *
 *  Every job runs on an embedded coordinator and --workers local worker threads on a
 *  loopback endpoint (cli/launch.h), the same code as a cluster: the coordinator plans it
 *  from the JobSpec (coordinator/plan.h). Options (and a JOB file) are parsed by
 *  jobopts.h, shared with submit and run.
 */
#include "cli/cli.h"
#include "cli/jobopts.h"           /* defines: lmp_jobopts_* */
#include "coordinator/job_check.h" /* defines: lmp_job_check */
#include "cli/launch.h"            /* defines: lmp_launch_* */
#include "cli/tune_cli.h"          /* defines: lmp_cli_tune_run */
#include "base/cancel.h"           /* defines: lmp_cancel_shutdown */
#include "worker/calib.h"          /* defines: lmp_calib_check_budget */
#include "model/model.h"           /* defines: lmp_model_open */
#include "model/tokenizer.h"       /* defines: lmp_tokenizer_open, lmp_tokenizer_encode */
#include "artifact/artifact.h"     /* defines: lmp_artifact_size */

#include <cjson/cJSON.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

static const char *const usage =
    "lmpress compress [JOB] [job options]\n"
    "job options (they override the JOB file's):\n    " LMP_JOBOPTS_USAGE;

static const char *const help =
    "Compress on this machine: an embedded coordinator with --workers local worker threads,\n"
    "the same code as a cluster. Progress on stderr, the summary on stdout.\n\n" LMP_JOBOPTS_HELP;

enum lmp_compress_what {
    LMP_COMPRESS_EV_QUANTIZED, /* a layer was compressed and committed */
    LMP_COMPRESS_EV_KEPT,      /* matched --keep: stored unquantized */
    LMP_COMPRESS_EV_RESUMED,   /* already in the artifact */
    LMP_COMPRESS_EV_STAGE,     /* a stage finished (name = "calibration", "finetune ...") */
};

/* One progress line. */
struct lmp_compress_event {
    enum lmp_compress_what what;
    const char            *name;  /* layer or stage */
    int64_t                index; /* linears handled so far (1-based), of n_linears */
    int64_t                n_linears;
    double                 rel_err_before, rel_err_after, bits_per_weight, seconds;
    int64_t                steps;
    double                 eta_s; /* estimated seconds left (< 0: unknown) */
};

/* The summary of a run. */
struct lmp_compress_summary {
    int64_t n_linears, n_quantized, n_kept, n_resumed;
    double  mean_rel_err;  /* over the layers compressed in this run */
    double  bits_linear;   /* 8 bytes of the linears' data (codes, codebooks, scales, kept
                              weights) / their parameters, as stored */
    double  bits_model;    /* 8 bytes of the artifact's files / every parameter */
    int64_t file_bytes;    /* the artifact on disk */
    int64_t n_params;      /* the model's parameters */
    double  seconds_calib; /* the workers' seconds per stage */
    double  seconds_quant;
    double  seconds_finetune;
    double  seconds_total; /* wall */
};

struct progress {
    bool tty;
    bool live; /* a live line is on screen */
};

static void fmt_eta(double s, char *buf, size_t n) {
    if (s < 0)
        snprintf(buf, n, "?");
    else if (s < 90)
        snprintf(buf, n, "%.0fs", s);
    else if (s < 5400)
        snprintf(buf, n, "%.1fm", s / 60);
    else
        snprintf(buf, n, "%.1fh", s / 3600);
}

static void on_progress(void *ctx, const struct lmp_compress_event *ev) {
    struct progress *p = ctx;
    char             eta[32], line[400];
    fmt_eta(ev->eta_s, eta, sizeof(eta));
    switch (ev->what) {
    case LMP_COMPRESS_EV_STAGE:
        if (ev->steps > 0)
            snprintf(line, sizeof(line), "%s: rel mse %.4g -> %.4g, %lld steps, %.1fs", ev->name,
                     ev->rel_err_before, ev->rel_err_after, (long long)ev->steps, ev->seconds);
        else
            snprintf(line, sizeof(line), "%s: %.1fs", ev->name, ev->seconds);
        break;
    case LMP_COMPRESS_EV_KEPT:
        snprintf(line, sizeof(line), "[%lld/%lld] %s kept (source precision)", (long long)ev->index,
                 (long long)ev->n_linears, ev->name);
        break;
    default:
        snprintf(line, sizeof(line),
                 "[%lld/%lld] %s%s rel err %.4g -> %.4g, %.3f bits, %.1fs, "
                 "ETA %s",
                 (long long)ev->index, (long long)ev->n_linears, ev->name,
                 ev->what == LMP_COMPRESS_EV_RESUMED ? " (resumed)" : "", ev->rel_err_before,
                 ev->rel_err_after, ev->bits_per_weight, ev->seconds, eta);
    }
    if (p->tty) {
        /* layers overwrite one live line; stages stay */
        fprintf(stderr, "\r\033[K%s", line);
        if (ev->what == LMP_COMPRESS_EV_STAGE || ev->index == ev->n_linears) {
            fputc('\n', stderr);
            p->live = false;
        } else
            p->live = true;
    } else {
        fprintf(stderr, "%s\n", line);
    }
    fflush(stderr);
}

static int default_threads(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static volatile sig_atomic_t stop_flag;
/* the process is going down: every computation in it stops within a second or so (the
 * stages poll base/cancel.h), and the launch loop sees stop_flag */
static void on_signal(int sig) {
    (void)sig;
    stop_flag = 1;
    lmp_cancel_shutdown();
}

/* ---- the embedded path: coordinator + local workers, progress from the job status */

struct embedded {
    const struct lmp_model         *m;
    const struct lmp_compress_opts *o;
    struct progress                *prog;
    bool                           *seen; /* (n_linears) a line was printed */
    int64_t                         n_linears, n_printed, n_fresh, n_resumed;
    double                          rel_sum;
    double sec_calib, sec_quant, sec_ft; /* the job's worker-seconds per stage, latest status */
    char   fail_code[32], fail_msg[256];
};

/* On a terminal, the live line between layer lines: the stage the job is in, from the
 * layers' states (a running layer with a quantization error already is in its block's
 * fine-tuning, one without is being quantized; layers quantized but pending wait for
 * their block's fine-tuning; nothing running with layers pending is the calibration of
 * the first pending layer's block), and the coordinator's ETA, redrawn every poll. */
static void live_stage(struct embedded *E, const Lmp__JobInfo *j) {
    const Lmp__LayerInfo *run = NULL, *tuned = NULL, *next = NULL;
    unsigned              n_run = 0;
    for (size_t i = 0; i < j->n_layers; i++) {
        const Lmp__LayerInfo *li = j->layers[i];
        if (li->state == LMP__TASK_STATE__TASK_STATE_RUNNING && li->rel_err_before > 0)
            tuned = tuned ? tuned : li; /* quantized: its block is being fine-tuned */
        else if (li->state == LMP__TASK_STATE__TASK_STATE_RUNNING)
            run = run ? run : li, n_run++;
        else if (li->state == LMP__TASK_STATE__TASK_STATE_PENDING) {
            if (li->worker && li->worker[0] && tuned == NULL)
                tuned = li;
            else if (next == NULL)
                next = li;
        }
    }
    const Lmp__LayerInfo *at = run ? run : tuned ? tuned : next;
    if (at == NULL || at->index >= E->n_linears) return;
    const int block = lmp_model_linear(E->m, at->index)->block;
    char      what[160], eta[32];
    if (run && run->n_steps > 0)
        snprintf(what, sizeof(what), "quantizing %s (step %u/%u)%s", run->name ? run->name : "",
                 run->step, run->n_steps, n_run > 1 ? ", ..." : "");
    else if (run)
        snprintf(what, sizeof(what), "quantizing %s%s", run->name ? run->name : "",
                 n_run > 1 ? ", ..." : "");
    else if (tuned)
        snprintf(what, sizeof(what), "fine-tuning block %d", block);
    else
        snprintf(what, sizeof(what), "calibrating block %d", block);
    fmt_eta(j->eta_s, eta, sizeof(eta));
    struct winsize ws = {0};
    int  cols = ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 ? ws.ws_col : 80;
    char line[320];
    snprintf(line, sizeof(line), "[%u/%u] %s, ETA %s", j->layers_done, j->layers_total, what, eta);
    fprintf(stderr, "\r\033[K%.*s", cols - 1, line);
    fflush(stderr);
    E->prog->live = true;
}

static void embedded_status(void *ctx, const Lmp__JobInfo *j) {
    struct embedded *E = ctx;
    E->sec_calib = j->seconds_calibration, E->sec_quant = j->seconds_quantization;
    E->sec_ft = j->seconds_finetune;
    for (size_t i = 0; i < j->n_layers; i++) {
        const Lmp__LayerInfo *li = j->layers[i];
        if (li->state != LMP__TASK_STATE__TASK_STATE_DONE || li->index >= E->n_linears ||
            E->seen[li->index])
            continue;
        E->seen[li->index]                = true;
        const bool                resumed = li->worker && strcmp(li->worker, "(resumed)") == 0;
        const struct lmp_linear  *l       = lmp_model_linear(E->m, li->index);
        struct lmp_compress_event ev      = {
                 .what            = resumed ? LMP_COMPRESS_EV_RESUMED : LMP_COMPRESS_EV_QUANTIZED,
                 .name            = li->name,
                 .index           = ++E->n_printed,
                 .n_linears       = E->n_linears,
                 .rel_err_before  = li->rel_err_before,
                 .rel_err_after   = li->rel_err_after,
                 .bits_per_weight = lmp_compress_bits_per_weight(&E->o->spec, l->n_out, l->n_in),
                 .seconds         = li->seconds,
                 .eta_s           = j->eta_s};
        if (resumed)
            E->n_resumed++;
        else {
            E->n_fresh++;
            E->rel_sum += li->rel_err_after;
        }
        on_progress(E->prog, &ev);
    }
    if (E->prog->tty && j->state == LMP__JOB_STATE__JOB_STATE_RUNNING) live_stage(E, j);
    if (j->state == LMP__JOB_STATE__JOB_STATE_FAILED ||
        j->state == LMP__JOB_STATE__JOB_STATE_CANCELLED) {
        snprintf(E->fail_code, sizeof(E->fail_code), "%s",
                 j->error && j->error->code ? j->error->code : "");
        snprintf(E->fail_msg, sizeof(E->fail_msg), "%s",
                 j->error && j->error->message && j->error->message[0] ? j->error->message
                                                                       : "the job was cancelled");
    }
}

/* Where the embedded coordinator listens, so that `lmpress status --watch --connect EP`
 * (and logs, workers) can follow this run from another terminal. RET LMP_OK. */
static enum lmp_status announce_endpoint(const struct lmp_launch *L) {
    const char *ep = lmp_launch_endpoint(L);
    fprintf(stderr, "lmpress: coordinator on %s (follow: lmpress status --watch --connect %s)\n",
            ep, ep);
    return LMP_OK;
}

/* Run the job on a coordinator and workers in this process; fills S. */
/* The finished artifact's size and bits per weight, as stored (lmp_artifact_size). */
static int measure_artifact(struct lmp_cli *cli, const char *path, struct lmp_compress_summary *S) {
    struct lmp_err       err = {0};
    struct lmp_artifact *a   = NULL;
    struct lmp_art_size  sz;
    if (lmp_artifact_open_read(path, &a, &err) != LMP_OK ||
        lmp_artifact_size(a, &sz, &err) != LMP_OK) {
        lmp_artifact_close(&a);
        return lmp_cli_fail(cli, &err);
    }
    lmp_artifact_close(&a);
    S->file_bytes = sz.file_bytes;
    S->n_params   = sz.n_params;
    S->bits_model = sz.n_params ? 8.0 * (double)sz.file_bytes / (double)sz.n_params : 0;
    S->bits_linear =
        sz.n_linear_params ? 8.0 * (double)sz.linear_bytes / (double)sz.n_linear_params : 0;
    return LMP_EXIT_OK;
}

static int run_embedded(struct lmp_cli *cli, const struct lmp_jobopts *jo,
                        const struct lmp_model *m, const struct lmp_compress_opts *o, int n_workers,
                        struct progress *prog, struct lmp_compress_summary *S) {
    struct lmp_err  err = {0};
    const double    t0  = (double)time(NULL);
    struct timespec ts0, ts1;
    clock_gettime(CLOCK_MONOTONIC, &ts0);
    (void)t0;
    memset(S, 0, sizeof(*S));
    /* reported up front: kept linears */
    const int64_t   n_lin = lmp_model_n_linears(m);
    struct embedded E     = {.m = m, .o = o, .prog = prog, .n_linears = n_lin};
    if ((E.seen = calloc((size_t)(n_lin > 0 ? n_lin : 1), sizeof(bool))) == NULL) {
        fprintf(stderr, "lmpress: out of memory\n");
        return LMP_EXIT_FAIL;
    }
    for (int64_t i = 0; i < n_lin; i++) {
        const struct lmp_linear *l = lmp_model_linear(m, i);
        if (lmp_compress_keep_match(o->keep, o->n_keep, l->name)) {
            S->n_kept++;
            E.seen[i]                    = true;
            struct lmp_compress_event ev = {.what      = LMP_COMPRESS_EV_KEPT,
                                            .name      = l->name,
                                            .index     = ++E.n_printed,
                                            .n_linears = n_lin,
                                            .eta_s     = -1};
            on_progress(prog, &ev);
        }
    }
    S->n_linears = n_lin;

    struct lmp_jobopts_pb pb;
    lmp_jobopts_to_jobspec(jo, &pb);
    pb.spec.calib->ctx = (uint32_t)o->ctx;       /* resolved against the model */
    pb.spec.threads    = (uint32_t)o->n_threads; /* the coordinator's calibration pass */
    struct lmp_launch_opts lo;
    lmp_launch_opts_init(&lo);
    lo.n_workers              = n_workers;
    lo.worker_threads         = o->n_threads / n_workers > 0 ? o->n_threads / n_workers : 1;
    struct lmp_launch *L      = NULL;
    struct lmp_client *cl     = NULL;
    uint64_t           job_id = 0;
    Lmp__JobState      state  = LMP__JOB_STATE__JOB_STATE_UNSPECIFIED;
    int                rc     = LMP_EXIT_OK;
    enum lmp_status    st;
    if ((st = lmp_launch_start(&lo, &L, &err)) || (st = announce_endpoint(L)) ||
        (st = lmp_client_connect(lmp_launch_endpoint(L), 10000, &cl, &err)) ||
        (st = lmp_launch_submit(cl, &pb.spec, &job_id, NULL, &err)) ||
        (st = lmp_launch_follow(cl, job_id, 200, &stop_flag, embedded_status, &E, &state, &err))) {
        if (prog->live) fputc('\n', stderr), prog->live = false;
        if (st == LMP_ECANCEL) {
            fprintf(stderr,
                    "lmpress: interrupted; committed layers are kept (run again to resume)\n");
            rc = LMP_EXIT_INTERRUPTED;
        } else
            rc = lmp_cli_fail(cli, &err);
        goto out;
    }
    if (prog->live) fputc('\n', stderr), prog->live = false;
    if (state != LMP__JOB_STATE__JOB_STATE_DONE) {
        enum lmp_status code = LMP_EIO;
        if (!lmp_status_from_name(E.fail_code, &code) || code == LMP_OK) code = LMP_EIO;
        fprintf(stderr, "lmpress: %s\n", E.fail_msg);
        rc = lmp_cli_exit_code(code);
        if (rc == LMP_EXIT_OK) rc = LMP_EXIT_FAIL;
        goto out;
    }
out:
    lmp_client_close(&cl);
    struct lmp_err serr = {0};
    if (lmp_launch_stop(&L, &serr) != LMP_OK && rc == LMP_EXIT_OK) rc = lmp_cli_fail(cli, &serr);
    clock_gettime(CLOCK_MONOTONIC, &ts1);
    S->n_quantized  = E.n_fresh;
    S->n_resumed    = E.n_resumed;
    S->mean_rel_err = E.n_fresh ? E.rel_sum / (double)E.n_fresh : 0.0;
    S->seconds_total =
        (double)(ts1.tv_sec - ts0.tv_sec) + 1e-9 * (double)(ts1.tv_nsec - ts0.tv_nsec);
    /* the workers' seconds per stage: with one worker (the default) the stages' share of the
     * wall time; with more, summed over the workers */
    S->seconds_calib    = E.sec_calib;
    S->seconds_quant    = E.sec_quant;
    S->seconds_finetune = E.sec_ft;
    free(E.seen);
    return rc;
}

/* --pv: tune the quantized artifact jo->out into final_out (json: the result as *pvj). */
static int run_pv(struct lmp_cli *cli, const struct lmp_jobopts *jo,
                  const struct lmp_compress_opts *o, const char *final_out, long long ctx,
                  cJSON **pvj) {
    struct lmp_tune_job tj;
    lmp_jobopts_tune_job(jo, jo->out, final_out, ctx, o->n_threads, &tj);
    if (!cli->json) fprintf(stderr, "lmpress: PV-Tuning %s into %s\n", jo->out, final_out);
    cJSON *r  = pvj ? cJSON_CreateObject() : NULL;
    int    rc = lmp_cli_tune_run(cli, &tj, r);
    if (rc != LMP_EXIT_OK || pvj == NULL)
        cJSON_Delete(r);
    else
        *pvj = r;
    return rc;
}

static int cmd_compress_exec(struct lmp_cli *cli, int argc, char **argv) {
    struct lmp_jobopts     jo;
    struct lmp_jobopts_cmd pc  = {.job_arg = true};
    struct lmp_err         err = {0};
    lmp_jobopts_init(&jo);
    int rc = lmp_jobopts_parse_argv(&jo, argc, argv, &pc, &err);
    if (rc != LMP_EXIT_OK || pc.help) {
        lmp_jobopts_release(&jo);
        if (pc.help) printf("usage: %s\n", usage);
        return rc;
    }
    cli->json = cli->json || pc.json;
    /* --pv: the quantized artifact goes beside --out (ART.aqlm.h5), the tuned one to --out */
    char *final_out = NULL;
    if (lmp_jobopts_pv_split(&jo, &final_out) != LMP_OK) {
        lmp_jobopts_release(&jo);
        fprintf(stderr, "lmpress: out of memory\n");
        return LMP_EXIT_FAIL;
    }
    struct lmp_compress_opts o;
    if (lmp_jobopts_check(&jo, &err) != LMP_OK ||
        lmp_jobopts_to_compress(&jo, default_threads(), &o, &err) != LMP_OK) {
        lmp_jobopts_release(&jo);
        return lmp_cli_usage_msg(usage, err.msg);
    }
    const char *model_path = jo.model, *tok_path = jo.tokenizer, *calib = jo.calib;
    const char *method   = o.spec.method == LMP_COMPRESS_RTN ? "rtn" : "aqlm";
    const char *mode     = o.mode == LMP_COMPRESS_INDEPENDENT ? "independent" : "sequential";
    const bool  finetune = o.finetune;
    long long   ctx      = o.ctx;

    struct lmp_model           *model = NULL;
    struct lmp_tokenizer       *tok   = NULL;
    struct progress             prog  = {.tty = cli->tty};
    struct lmp_compress_summary S;

    if (lmp_model_open(model_path, &model, &err) != LMP_OK ||
        lmp_tokenizer_open(tok_path, model, &tok, &err) != LMP_OK) {
        rc = lmp_cli_fail(cli, &err);
        goto out;
    }
    if ((rc = lmp_cli_resolve_ctx(&ctx, model->cfg.max_seq)) != LMP_EXIT_OK) goto out;
    /* fail fast, before any work or artifact: --keep patterns, scheme fit, calibration file */
    if (lmp_job_check(model, &o.spec, o.keep, o.n_keep,
                      calib && strcmp(calib, "generate") != 0 ? calib : NULL,
                      finetune || final_out != NULL, &err) != LMP_OK) {
        fprintf(stderr, "lmpress: %s\n", err.msg);
        rc = err.code == LMP_EINVAL ? LMP_EXIT_USAGE : LMP_EXIT_INPUT;
        goto out;
    }
    /* and the memory budget (worker/calib.h), as the planner will check it */
    if (o.spec.method == LMP_COMPRESS_AQLM &&
        lmp_calib_check_budget(o.n_seq, ctx, model->cfg.dim, &err) != LMP_OK) {
        fprintf(stderr, "lmpress: %s\n", err.msg);
        rc = LMP_EXIT_INPUT;
        goto out;
    }
    o.ctx = ctx;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    if ((rc = run_embedded(cli, &jo, model, &o, (int)jo.workers, &prog, &S)) != LMP_EXIT_OK ||
        (rc = measure_artifact(cli, o.out_path, &S)) != LMP_EXIT_OK)
        goto out;
    char sname[64];
    lmp_compress_spec_name(&o.spec, sname, sizeof(sname));
    if (cli->json) {
        cJSON *j   = cJSON_CreateObject();
        cJSON *pvj = NULL;
        if (final_out && (rc = run_pv(cli, &jo, &o, final_out, ctx, &pvj)) != LMP_EXIT_OK) {
            cJSON_Delete(j);
            goto out;
        }
        if (pvj) cJSON_AddItemToObject(j, "pv", pvj);
        cJSON_AddStringToObject(j, "artifact", o.out_path);
        cJSON_AddStringToObject(j, "method", method);
        cJSON_AddStringToObject(j, "scheme", sname);
        cJSON_AddStringToObject(j, "mode", mode);
        cJSON_AddBoolToObject(j, "finetune", finetune);
        cJSON_AddNumberToObject(j, "linears", (double)S.n_linears);
        cJSON_AddNumberToObject(j, "quantized", (double)S.n_quantized);
        cJSON_AddNumberToObject(j, "resumed", (double)S.n_resumed);
        cJSON_AddNumberToObject(j, "kept", (double)S.n_kept);
        cJSON_AddNumberToObject(j, "mean_rel_err", S.mean_rel_err);
        cJSON_AddNumberToObject(j, "bits_per_weight_linear", S.bits_linear);
        cJSON_AddNumberToObject(j, "bits_per_weight_model", S.bits_model);
        cJSON_AddNumberToObject(j, "file_bytes", (double)S.file_bytes);
        cJSON_AddNumberToObject(j, "params", (double)S.n_params);
        cJSON_AddNumberToObject(j, "seconds_calibration", S.seconds_calib);
        cJSON_AddNumberToObject(j, "seconds_quantization", S.seconds_quant);
        cJSON_AddNumberToObject(j, "seconds_finetune", S.seconds_finetune);
        cJSON_AddNumberToObject(j, "seconds_total", S.seconds_total);
        char *s = cJSON_PrintUnformatted(j);
        if (s)
            printf("%s\n", s);
        else
            rc = LMP_EXIT_FAIL;
        free(s);
        cJSON_Delete(j);
    } else {
        printf("artifact %s: %s %s, %lld linears (%lld compressed, %lld resumed, %lld kept)\n",
               o.out_path, method, sname, (long long)S.n_linears, (long long)S.n_quantized,
               (long long)S.n_resumed, (long long)S.n_kept);
        printf("mean rel err %.5f; %.2f MB on disk: %.3f bits per weight over the whole model "
               "(%lld parameters), %.3f over the linears\n",
               S.mean_rel_err, (double)S.file_bytes / 1e6, S.bits_model, (long long)S.n_params,
               S.bits_linear);
        printf("time: calibration %.1fs, quantization %.1fs, fine-tuning %.1fs (%s); total %.1fs "
               "wall\n",
               S.seconds_calib, S.seconds_quant, S.seconds_finetune, "worker seconds",
               S.seconds_total);
        fflush(stdout);
        if (final_out) rc = run_pv(cli, &jo, &o, final_out, ctx, NULL);
    }
    goto out;
out:
    lmp_tokenizer_free(&tok);
    lmp_model_close(&model);
    lmp_jobopts_release(&jo);
    free(final_out);
    return rc;
}

const struct lmp_cli_cmd lmp_cli_cmd_compress = {
    .name    = "compress",
    .summary = "compress a model (AQLM or RTN) into an artifact",
    .usage   = usage,
    .help    = help,
    .exec    = cmd_compress_exec,
};
