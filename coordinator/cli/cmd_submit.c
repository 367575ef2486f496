/*  cmd_submit - lmpress submit: send a compression job to the coordinator
 *
 *  Takes the options of `lmpress compress` (the coordinator runs --mode independent
 *  only, with a calibration text file); paths are resolved by the coordinator and the
 *  workers, so they must name the same files there (a shared file system, or loopback).
 *  Prints the job id; with --wait follows the job and exits with its outcome (0 done,
 *  1 failed or cancelled, 3 coordinator unreachable).
 */
#include "coordinator/cli/cli.h"
#include "coordinator/cli/cluster.h"  /* defines: lmp_cli_connect, lmp_cli_print_status */

#include <float.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const usage =
    "lmpress submit --connect EP [--wait] [--json] --model PATH [--tokenizer PATH] --calib FILE\n"
    "               [--nsamples N] [--ctx L] --out ART.h5 [--scheme MxBgG] [--mode independent]\n"
    "               [--method aqlm|rtn] [--bits N] [--group G] [--keep PATTERN]... [--beam B]\n"
    "               [--max-rounds R] [--tol T] [--adam-steps S] [--lr LR] [--seed S] [--threads T]\n"
    "               [--max-attempts N] [--name NAME]";

enum { MAX_KEEP = 64 };

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long) (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int follow(struct lmp_cli *cli, struct lmp_client *cl, uint64_t job_id) {
    uint32_t last_done = UINT32_MAX;
    for (;;) {
        Lmp__Envelope *rep = NULL;
        int rc = lmp_cli_query(cl, job_id, false, false, &rep);
        if (rc != LMP_EXIT_OK) return rc;
        const Lmp__JobStatus *js = rep->job_status;
        if (js->n_jobs != 1) {
            lmp_wire_free(&rep);
            fprintf(stderr, "lmpress: job %llu is gone from the coordinator\n",
                    (unsigned long long) job_id);
            return LMP_EXIT_FAIL;
        }
        const Lmp__JobInfo *j = js->jobs[0];
        if (j->layers_done != last_done && !cli->json) {
            last_done = j->layers_done;
            fprintf(stderr, "job %llu: %u/%u layers done", (unsigned long long) job_id,
                    j->layers_done, j->layers_total);
            if (j->eta_s >= 0 && j->state == LMP__JOB_STATE__JOB_STATE_RUNNING)
                fprintf(stderr, ", ETA %.0fs", j->eta_s);
            fputc('\n', stderr);
        }
        if (j->state != LMP__JOB_STATE__JOB_STATE_RUNNING &&
            j->state != LMP__JOB_STATE__JOB_STATE_QUEUED) {
            int rc2 = lmp_cli_job_exit(j->state);
            if (cli->json) lmp_cli_print_status(cli, js, false);
            else if (rc2 != LMP_EXIT_OK)
                fprintf(stderr, "lmpress: job %llu %s: %s\n", (unsigned long long) job_id,
                        lmp_cli_job_state_name(j->state),
                        j->error && j->error->message ? j->error->message : "");
            else
                printf("job %llu done: %s\n", (unsigned long long) job_id, j->out_path);
            lmp_wire_free(&rep);
            return rc2;
        }
        lmp_wire_free(&rep);
        sleep_ms(300);
    }
}

static int cmd_submit_exec(struct lmp_cli *cli, int argc, char **argv) {
    const char *ep = LMP_CLI_DEFAULT_ENDPOINT, *model = NULL, *tok = NULL, *calib = NULL,
               *out = NULL, *scheme = "2x8g8", *mode = "independent", *method = "aqlm",
               *name = "";
    char *keep[MAX_KEEP];
    int n_keep = 0;
    bool wait = false;
    long long nsamples = 128, ctx = 0, bits = 4, group = 128, seed = 0, threads = 1, beam = 0,
              max_rounds = 0, adam_steps = 0, attempts = 0;
    double tol = -1, lr = -1;
    static const struct option opts[] = {
        {"connect", required_argument, NULL, 'C'}, {"wait", no_argument, NULL, 'w'},
        {"model", required_argument, NULL, 'm'},    {"tokenizer", required_argument, NULL, 'k'},
        {"calib", required_argument, NULL, 'c'},    {"nsamples", required_argument, NULL, 'n'},
        {"ctx", required_argument, NULL, 'L'},      {"scheme", required_argument, NULL, 's'},
        {"out", required_argument, NULL, 'o'},      {"mode", required_argument, NULL, 'M'},
        {"method", required_argument, NULL, 'q'},   {"bits", required_argument, NULL, 'b'},
        {"group", required_argument, NULL, 'g'},    {"keep", required_argument, NULL, 'K'},
        {"seed", required_argument, NULL, 'S'},     {"threads", required_argument, NULL, 't'},
        {"json", no_argument, NULL, 'j'},           {"beam", required_argument, NULL, 1},
        {"max-rounds", required_argument, NULL, 2}, {"tol", required_argument, NULL, 3},
        {"adam-steps", required_argument, NULL, 4}, {"lr", required_argument, NULL, 5},
        {"max-attempts", required_argument, NULL, 6}, {"name", required_argument, NULL, 7}, {0},
    };
    for (int c; (c = getopt_long(argc, argv, "C:wm:k:c:n:L:s:o:M:q:b:g:K:S:t:j", opts, NULL)) != -1;) {
        bool ok = true;
        switch (c) {
        case 'C': ep = optarg; break;
        case 'w': wait = true; break;
        case 'm': model = optarg; break;
        case 'k': tok = optarg; break;
        case 'c': calib = optarg; break;
        case 's': scheme = optarg; break;
        case 'o': out = optarg; break;
        case 'M': mode = optarg; break;
        case 'q': method = optarg; break;
        case 'j': cli->json = true; break;
        case 7: name = optarg; break;
        case 'K':
            if (n_keep == MAX_KEEP) return lmp_cli_usage_msg(usage, "too many --keep patterns");
            keep[n_keep++] = optarg;
            break;
        case 'n': ok = lmp_cli_parse_i64("--nsamples", optarg, 1, 1 << 20, &nsamples); break;
        case 'L': ok = lmp_cli_parse_i64("--ctx", optarg, 2, 1 << 20, &ctx); break;
        case 'b': ok = lmp_cli_parse_i64("--bits", optarg, 1, 8, &bits); break;
        case 'g': ok = lmp_cli_parse_i64("--group", optarg, 1, 1 << 20, &group); break;
        case 'S': ok = lmp_cli_parse_i64("--seed", optarg, 0, INT64_MAX, &seed); break;
        case 't': ok = lmp_cli_parse_i64("--threads", optarg, 1, 256, &threads); break;
        case 1: ok = lmp_cli_parse_i64("--beam", optarg, 1, 256, &beam); break;
        case 2: ok = lmp_cli_parse_i64("--max-rounds", optarg, 1, 64, &max_rounds); break;
        case 3: ok = lmp_cli_parse_f64("--tol", optarg, 0, 1, &tol); break;
        case 4: ok = lmp_cli_parse_i64("--adam-steps", optarg, 0, 1 << 20, &adam_steps); break;
        case 5: ok = lmp_cli_parse_f64("--lr", optarg, 0, 1, &lr); break;
        case 6: ok = lmp_cli_parse_i64("--max-attempts", optarg, 1, 100, &attempts); break;
        default: return lmp_cli_usage(usage);
        }
        if (!ok) return LMP_EXIT_USAGE;
    }
    if (optind != argc) return lmp_cli_usage_msg(usage, "unexpected argument");
    if (model == NULL || out == NULL) return lmp_cli_usage_msg(usage, "--model and --out are required");
    if (strcmp(mode, "independent") != 0)
        return lmp_cli_usage_msg(usage, "the coordinator runs --mode independent only");
    const bool rtn = strcmp(method, "rtn") == 0;
    if (!rtn && strcmp(method, "aqlm") != 0) return lmp_cli_usage_msg(usage, "--method must be aqlm or rtn");
    if (!rtn && calib == NULL) return lmp_cli_usage_msg(usage, "--calib FILE is required for aqlm");
    if (adam_steps == 0 && !rtn) adam_steps = 0;   /* 0 = the default */

    Lmp__JobSpec spec = LMP__JOB_SPEC__INIT;
    Lmp__CalibSpec cs = LMP__CALIB_SPEC__INIT;
    Lmp__MethodSpec ms = LMP__METHOD_SPEC__INIT;
    spec.name = (char *) name;
    spec.model_path = (char *) model;
    spec.tokenizer_path = (char *) (tok ? tok : "");
    spec.out_path = (char *) out;
    spec.mode = LMP__MODE__MODE_INDEPENDENT;
    spec.n_keep = (size_t) n_keep;
    spec.keep = keep;
    spec.max_attempts = (uint32_t) attempts;
    spec.kernels = "best";
    spec.threads = (uint32_t) threads;
    cs.source = LMP__CALIB_SOURCE__CALIB_SOURCE_FILE;
    cs.path = (char *) (calib ? calib : "");
    cs.nsamples = (uint32_t) nsamples;
    cs.ctx = (uint32_t) ctx;
    cs.seed = (uint64_t) seed;
    spec.calib = &cs;
    ms.method = rtn ? LMP__METHOD__METHOD_RTN : LMP__METHOD__METHOD_AQLM;
    ms.scheme = rtn ? "" : (char *) scheme;
    ms.bits = rtn ? (uint32_t) bits : 0;
    ms.group = rtn ? (uint32_t) group : 0;
    ms.beam = (uint32_t) beam;
    ms.max_rounds = (uint32_t) max_rounds;
    ms.adam_steps = (uint32_t) adam_steps;
    if (tol >= 0) ms.tol = tol > 0 ? tol : DBL_MIN;   /* 0 on the wire means "default" */
    if (lr > 0) ms.lr = (float) lr;
    ms.seed = (uint64_t) seed;
    spec.method = &ms;

    struct lmp_client *cl = NULL;
    int rc = lmp_cli_connect(ep, &cl);
    if (rc != LMP_EXIT_OK) return rc;
    Lmp__Envelope env, *rep = NULL;
    Lmp__JobSubmit js = LMP__JOB_SUBMIT__INIT;
    js.spec = &spec;
    lmp_wire_init(&env, 0, 0);
    env.body_case = LMP__ENVELOPE__BODY_JOB_SUBMIT;
    env.job_submit = &js;
    struct lmp_err err = {0};
    enum lmp_status st = lmp_client_call(cl, &env, &rep, &err);
    if (st == LMP_OK && rep->body_case != LMP__ENVELOPE__BODY_JOB_ACCEPTED) {
        lmp_wire_free(&rep);
        st = lmp_err_set(&err, LMP_EPROTO, "unexpected reply to a job submission");
    }
    if (st != LMP_OK) {
        rc = st == LMP_EIO ? (fprintf(stderr, "lmpress: %s\n", err.msg), LMP_EXIT_UNREACHABLE)
                           : lmp_cli_fail(cli, &err);
        lmp_client_close(&cl);
        return rc;
    }
    const uint64_t job_id = rep->job_accepted->job_id;
    if (!cli->json || !wait)
        printf(cli->json ? "{\"job_id\":%llu,\"tasks\":%u}\n" : "job %llu submitted (%u tasks)\n",
               (unsigned long long) job_id, rep->job_accepted->n_tasks);
    fflush(stdout);
    lmp_wire_free(&rep);
    if (wait) rc = follow(cli, cl, job_id);
    lmp_client_close(&cl);
    return rc;
}

const struct lmp_cli_cmd lmp_cli_cmd_submit = {
    .name = "submit", .summary = "submit a compression job to a coordinator",
    .usage = usage, .exec = cmd_submit_exec,
};
