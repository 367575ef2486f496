/*  cmd_status - lmpress status: the coordinator's job (per layer) and workers */
#include "coordinator/cli/cli.h"
#include "coordinator/cli/cluster.h"  /* defines: lmp_cli_connect, lmp_cli_print_status */

#include <getopt.h>
#include <stdio.h>
#include <time.h>

static const char *const usage = "lmpress status --connect EP [--json] [--watch] [--job ID]";

static int cmd_status_exec(struct lmp_cli *cli, int argc, char **argv) {
    const char *ep = LMP_CLI_DEFAULT_ENDPOINT;
    bool watch = false;
    long long job = 0;
    static const struct option opts[] = {
        {"connect", required_argument, NULL, 'C'}, {"json", no_argument, NULL, 'j'},
        {"watch", no_argument, NULL, 'w'},          {"job", required_argument, NULL, 'J'}, {0},
    };
    for (int c; (c = getopt_long(argc, argv, "C:jwJ:", opts, NULL)) != -1;) {
        if (c == 'C') ep = optarg;
        else if (c == 'j') cli->json = true;
        else if (c == 'w') watch = true;
        else if (c == 'J') { if (!lmp_cli_parse_i64("--job", optarg, 1, INT64_MAX, &job)) return LMP_EXIT_USAGE; }
        else return lmp_cli_usage(usage);
    }
    if (optind != argc) return lmp_cli_usage_msg(usage, "unexpected argument");
    struct lmp_client *cl = NULL;
    int rc = lmp_cli_connect(ep, &cl);
    if (rc != LMP_EXIT_OK) return rc;
    for (;;) {
        Lmp__Envelope *rep = NULL;
        if ((rc = lmp_cli_query(cl, (uint64_t) job, true, true, &rep)) != LMP_EXIT_OK) break;
        if (watch && !cli->json) printf("\033[H\033[J");
        lmp_cli_print_status(cli, rep->job_status, true);
        bool running = rep->job_status->n_jobs == 1 &&
                       rep->job_status->jobs[0]->state == LMP__JOB_STATE__JOB_STATE_RUNNING;
        lmp_wire_free(&rep);
        if (!watch || !running) break;
        struct timespec ts = {1, 0};
        nanosleep(&ts, NULL);
    }
    lmp_client_close(&cl);
    return rc;
}

const struct lmp_cli_cmd lmp_cli_cmd_status = {
    .name = "status", .summary = "show the coordinator's job, layers and workers",
    .usage = usage, .exec = cmd_status_exec,
};
