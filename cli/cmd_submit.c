/*  cmd_submit - lmpress submit: send a compression job to the coordinator
 *
 *  Takes a JOB file and/or the options of `lmpress compress` (one parser: jobopts.h;
 *  the coordinator runs sequential and independent jobs with a calibration text file); paths are
 * resolved by the coordinator and the workers, so they must name the same files there (a shared
 * file system, or loopback). Prints the job id; with --wait follows the job and exits with its
 * outcome (0 done, 1 failed or cancelled, 3 coordinator unreachable), reconnecting to a coordinator
 * that was restarted meanwhile (cli/cluster.h).
 */
#include "cli/cli.h"
#include "cli/cluster.h" /* defines: lmp_cli_connect, lmp_cli_print_status */
#include "cli/jobopts.h" /* defines: lmp_jobopts_* */
#include "cli/launch.h"  /* defines: lmp_launch_submit */

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const usage =
    "lmpress submit [--connect EP] [--wait] [JOB] [job options]\n"
    "job options (as lmpress compress; they override the JOB file's):\n    " LMP_JOBOPTS_USAGE;

static const char *const help =
    "Send the job to a coordinator; its workers open the paths, so they must name the same\n"
    "files there. Prints the job id, or with --wait follows the job to its end.\n\n"
    "  --connect EP          the coordinator (default " LMP_CLI_DEFAULT_ENDPOINT ")\n"
    "  --wait                follow the job: progress on stderr, exit 0 done, 1 failed,\n"
    "                        3 coordinator gone (a restarted one is reconnected to for up\n"
    "                        to LMPRESS_RECONNECT_MS, default 60000; default: print the\n"
    "                        job id and exit)\n" LMP_CLI_KEYS_HELP "\n" LMP_JOBOPTS_HELP;

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Follow job_id to its end, across restarts of the coordinator (a new session each time,
 * cli/cluster.h); the session cl is taken over and closed. */
static int follow(struct lmp_cli *cli, const char *ep, struct lmp_client *cl, uint64_t job_id,
                  const char *out_path) {
    uint32_t               last_done = UINT32_MAX;
    struct lmp_cli_session ss, *s = &ss;
    lmp_cli_session_init(s, ep, job_id, out_path);
    s->cl  = cl;
    int rc = LMP_EXIT_OK;
    for (;;) {
        Lmp__Envelope *rep = NULL;
        if ((rc = lmp_cli_session_query(s, false, false, &rep)) != LMP_EXIT_OK) break;
        job_id                   = s->job_id; /* a restarted coordinator may give it another id */
        const Lmp__JobStatus *js = rep->job_status;
        if (js->n_jobs != 1) {
            lmp_wire_free(&rep);
            fprintf(stderr, "lmpress: job %llu is gone from the coordinator\n",
                    (unsigned long long)job_id);
            rc = LMP_EXIT_FAIL;
            break;
        }
        const Lmp__JobInfo *j = js->jobs[0];
        if (j->layers_done != last_done && !cli->json) {
            last_done = j->layers_done;
            fprintf(stderr, "job %llu: %u/%u layers done", (unsigned long long)job_id,
                    j->layers_done, j->layers_total);
            if (j->eta_s >= 0 && j->state == LMP__JOB_STATE__JOB_STATE_RUNNING)
                fprintf(stderr, ", ETA %.0fs", j->eta_s);
            fputc('\n', stderr);
        }
        if (j->state != LMP__JOB_STATE__JOB_STATE_RUNNING &&
            j->state != LMP__JOB_STATE__JOB_STATE_QUEUED) {
            rc = lmp_cli_job_exit(j->state);
            if (cli->json)
                lmp_cli_print_status(cli, js, false);
            else if (rc != LMP_EXIT_OK)
                fprintf(stderr, "lmpress: job %llu %s: %s\n", (unsigned long long)job_id,
                        lmp_cli_job_state_name(j->state),
                        j->error && j->error->message ? j->error->message : "");
            else
                printf("job %llu done: %s\n", (unsigned long long)job_id, j->out_path);
            lmp_wire_free(&rep);
            break;
        }
        lmp_wire_free(&rep);
        sleep_ms(300);
    }
    lmp_cli_session_release(s);
    return rc;
}

/* Submit spec, waiting out a coordinator that does not answer or restarts (for up to
 * LMPRESS_RECONNECT_MS): the job is sent again on a new session, and a coordinator that has
 * it already (planned, running, or resumed from its state) answers with that job. On success
 * *cl is the session. Exit code as lmp_cli_session_call. */
static int submit_patient(const char *ep, const Lmp__JobSpec *spec, struct lmp_client **cl,
                          uint64_t *job_id, uint32_t *n_tasks) {
    struct lmp_cli_session s;
    lmp_cli_session_init(&s, ep, 0, NULL);
    int rc = lmp_cli_session_connect_patient(&s);
    if (rc == LMP_EXIT_OK) {
        Lmp__Envelope  env, *rep = NULL;
        Lmp__JobSubmit js = LMP__JOB_SUBMIT__INIT;
        js.spec           = (Lmp__JobSpec *)spec;
        lmp_wire_init(&env, 0, 0);
        env.body_case  = LMP__ENVELOPE__BODY_JOB_SUBMIT;
        env.job_submit = &js;
        if ((rc = lmp_cli_session_call(&s, &env, &rep)) == LMP_EXIT_OK) {
            if (rep->body_case == LMP__ENVELOPE__BODY_JOB_ACCEPTED) {
                *job_id  = rep->job_accepted->job_id;
                *n_tasks = rep->job_accepted->n_tasks;
            } else {
                fprintf(stderr, "lmpress: unexpected reply to a job submission\n");
                rc = LMP_EXIT_FAIL;
            }
            lmp_wire_free(&rep);
        }
    }
    if (rc == LMP_EXIT_OK) *cl = s.cl, s.cl = NULL;
    lmp_cli_session_release(&s);
    return rc;
}

struct submit_args {
    const char *ep;
    bool        wait;
};

static bool on_extra(void *ctx, int val, const char *arg) {
    struct submit_args *a = ctx;
    if (val == 256)
        a->ep = arg;
    else if (val == 257)
        a->wait = true;
    return true;
}

static int cmd_submit_exec(struct lmp_cli *cli, int argc, char **argv) {
    static const struct option extra[] = {
        {"connect", required_argument, NULL, 256},
        {"wait", no_argument, NULL, 257},
        {0},
    };
    struct submit_args     args = {.ep = LMP_CLI_DEFAULT_ENDPOINT};
    struct lmp_jobopts_cmd pc   = {
          .extra = extra, .on_extra = on_extra, .ctx = &args, .job_arg = true};
    struct lmp_jobopts jo;
    struct lmp_err     err = {0};
    lmp_jobopts_init(&jo);
    int rc = lmp_jobopts_parse_argv(&jo, argc, argv, &pc, &err);
    if (rc != LMP_EXIT_OK || pc.help) {
        lmp_jobopts_release(&jo);
        if (pc.help) printf("usage: %s\n", usage);
        return rc;
    }
    cli->json        = cli->json || pc.json;
    const bool  wait = args.wait;
    const char *ep   = args.ep;
    if (lmp_jobopts_check(&jo, &err) != LMP_OK) {
        lmp_jobopts_release(&jo);
        return lmp_cli_usage_msg(usage, err.msg);
    }
    if (jo.pv) {
        lmp_jobopts_release(&jo);
        return lmp_cli_usage_msg(usage, "--pv runs in lmpress compress, or as lmpress tune on the "
                                        "finished artifact; a cluster job does not take it yet");
    }
    struct lmp_jobopts_pb pb;
    lmp_jobopts_to_jobspec(&jo, &pb);

    struct lmp_client *cl      = NULL;
    uint64_t           job_id  = 0;
    uint32_t           n_tasks = 0;
    if (wait) /* patient: across a restart of the coordinator (a resent job is the same job) */
        rc = submit_patient(ep, &pb.spec, &cl, &job_id, &n_tasks);
    else if ((rc = lmp_cli_connect(ep, &cl)) == LMP_EXIT_OK) {
        enum lmp_status st = lmp_launch_submit(cl, &pb.spec, &job_id, &n_tasks, &err);
        if (st != LMP_OK)
            rc = st == LMP_EIO ? (fprintf(stderr, "lmpress: %s\n", err.msg), LMP_EXIT_UNREACHABLE)
                               : lmp_cli_fail(cli, &err);
    }
    if (rc != LMP_EXIT_OK) {
        lmp_client_close(&cl);
        lmp_jobopts_release(&jo);
        return rc;
    }
    if (!cli->json || !wait)
        printf(cli->json ? "{\"job_id\":%llu,\"tasks\":%u}\n" : "job %llu submitted (%u tasks)\n",
               (unsigned long long)job_id, n_tasks);
    fflush(stdout);
    if (wait)
        rc = follow(cli, ep, cl, job_id, pb.spec.out_path); /* takes cl over */
    else
        lmp_client_close(&cl);
    lmp_jobopts_release(&jo);
    return rc;
}

const struct lmp_cli_cmd lmp_cli_cmd_submit = {
    .name    = "submit",
    .summary = "submit a compression job to a coordinator",
    .usage   = usage,
    .help    = help,
    .exec    = cmd_submit_exec,
};
