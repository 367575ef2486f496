/*  cmd_cancel - lmpress cancel: cancel the coordinator's job (committed layers are kept) */
#include "cli/cli.h"
#include "cli/cluster.h" /* defines: lmp_cli_connect */

#include <getopt.h>
#include <stdio.h>

static const char *const usage = "lmpress cancel --connect EP [--job ID] [--reason TEXT]";

static const char *const help =
    "Busy workers stop, committed layers are kept; submitting the job again resumes it.\n\n"
    "  --connect EP          the coordinator (default " LMP_CLI_DEFAULT_ENDPOINT ")\n"
    "  --job ID              the job to cancel (default the current one)\n"
    "  --reason TEXT         recorded in the job's events (default none)\n"
    "  --json                print the answer as JSON\n" LMP_CLI_KEYS_HELP;

static int cmd_cancel_exec(struct lmp_cli *cli, int argc, char **argv) {
    const char                *ep = LMP_CLI_DEFAULT_ENDPOINT, *reason = "";
    long long                  job    = 0;
    static const struct option opts[] = {
        {"connect", required_argument, NULL, 'C'},
        {"job", required_argument, NULL, 'J'},
        {"reason", required_argument, NULL, 'r'},
        {"json", no_argument, NULL, 'j'},
        {0},
    };
    for (int c; (c = getopt_long(argc, argv, "C:J:r:j", opts, NULL)) != -1;) {
        if (c == 'C')
            ep = optarg;
        else if (c == 'r')
            reason = optarg;
        else if (c == 'j')
            cli->json = true;
        else if (c == 'J') {
            if (!lmp_cli_parse_i64("--job", optarg, 1, INT64_MAX, &job)) return LMP_EXIT_USAGE;
        } else
            return lmp_cli_usage(usage);
    }
    if (optind != argc) return lmp_cli_usage_msg(usage, "unexpected argument");
    struct lmp_client *cl = NULL;
    int                rc = lmp_cli_connect(ep, &cl);
    if (rc != LMP_EXIT_OK) return rc;
    Lmp__Envelope env, *rep = NULL;
    if (job == 0) { /* the coordinator's current job */
        if ((rc = lmp_cli_query(cl, 0, false, false, &rep)) != LMP_EXIT_OK) {
            lmp_client_close(&cl);
            return rc;
        }
        if (rep->job_status->n_jobs == 1) job = (long long)rep->job_status->jobs[0]->job_id;
        lmp_wire_free(&rep);
        if (job == 0) {
            fprintf(stderr, "lmpress: the coordinator at '%s' has no job\n", ep);
            lmp_client_close(&cl);
            return LMP_EXIT_FAIL;
        }
    }
    Lmp__JobCancel jc = LMP__JOB_CANCEL__INIT;
    jc.job_id         = (uint64_t)job;
    jc.reason         = (char *)reason;
    lmp_wire_init(&env, 0, 0);
    env.body_case       = LMP__ENVELOPE__BODY_JOB_CANCEL;
    env.job_cancel      = &jc;
    struct lmp_err  err = {0};
    enum lmp_status st  = lmp_client_call(cl, &env, &rep, &err);
    if (st != LMP_OK)
        rc = st == LMP_EIO ? (fprintf(stderr, "lmpress: %s\n", err.msg), LMP_EXIT_UNREACHABLE)
                           : lmp_cli_fail(cli, &err);
    else if (rep->body_case == LMP__ENVELOPE__BODY_JOB_STATUS)
        lmp_cli_print_status(cli, rep->job_status, false);
    lmp_wire_free(&rep);
    lmp_client_close(&cl);
    return rc;
}

const struct lmp_cli_cmd lmp_cli_cmd_cancel = {
    .name    = "cancel",
    .summary = "cancel the coordinator's job (committed layers are kept)",
    .usage   = usage,
    .help    = help,
    .exec    = cmd_cancel_exec,
};
