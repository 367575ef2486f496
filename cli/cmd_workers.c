/*  cmd_workers - lmpress workers: the workers known to the coordinator */
#include "cli/cli.h"
#include "cli/cluster.h" /* defines: lmp_cli_connect, lmp_cli_print_status */

#include <getopt.h>
#include <stdio.h>

static const char *const usage = "lmpress workers --connect EP [--all] [--json]";

static const char *const help =
    "  --connect EP          the coordinator (default " LMP_CLI_DEFAULT_ENDPOINT ")\n"
    "  --all                 also the workers that are gone (default the live ones)\n"
    "  --json                one JSON document\n" LMP_CLI_KEYS_HELP;

static int cmd_workers_exec(struct lmp_cli *cli, int argc, char **argv) {
    const char                *ep     = LMP_CLI_DEFAULT_ENDPOINT;
    bool                       all    = false;
    static const struct option opts[] = {
        {"connect", required_argument, NULL, 'C'},
        {"all", no_argument, NULL, 'a'},
        {"json", no_argument, NULL, 'j'},
        {0},
    };
    for (int c; (c = getopt_long(argc, argv, "C:aj", opts, NULL)) != -1;) {
        if (c == 'C')
            ep = optarg;
        else if (c == 'a')
            all = true;
        else if (c == 'j')
            cli->json = true;
        else
            return lmp_cli_usage(usage);
    }
    if (optind != argc) return lmp_cli_usage_msg(usage, "unexpected argument");
    struct lmp_client *cl = NULL;
    int                rc = lmp_cli_connect(ep, &cl);
    if (rc != LMP_EXIT_OK) return rc;
    Lmp__Envelope    env, *rep = NULL;
    Lmp__WorkerQuery q = LMP__WORKER_QUERY__INIT;
    q.with_dead        = all;
    lmp_wire_init(&env, 0, 0);
    env.body_case       = LMP__ENVELOPE__BODY_WORKER_QUERY;
    env.worker_query    = &q;
    struct lmp_err  err = {0};
    enum lmp_status st  = lmp_client_call(cl, &env, &rep, &err);
    if (st != LMP_OK) {
        rc = st == LMP_EIO ? (fprintf(stderr, "lmpress: %s\n", err.msg), LMP_EXIT_UNREACHABLE)
                           : lmp_cli_fail(cli, &err);
    } else if (rep->body_case == LMP__ENVELOPE__BODY_WORKER_LIST) {
        if (cli->json) {
            Lmp__JobStatus js = LMP__JOB_STATUS__INIT;
            js.n_workers      = rep->worker_list->n_workers;
            js.workers        = rep->worker_list->workers;
            lmp_cli_print_status(cli, &js, true);
        } else {
            lmp_cli_print_workers_text(rep->worker_list->n_workers, rep->worker_list->workers);
        }
    }
    lmp_wire_free(&rep);
    lmp_client_close(&cl);
    return rc;
}

const struct lmp_cli_cmd lmp_cli_cmd_workers = {
    .name    = "workers",
    .summary = "list the workers of a coordinator",
    .usage   = usage,
    .help    = help,
    .exec    = cmd_workers_exec,
};
