/*  cmd_coordinator - lmpress coordinator: run the coordinator daemon in the foreground
 *
 *  Binds loopback by default. A bind beyond loopback needs --curve-dir DIR (CURVE keys:
 *  DIR/server.key, DIR/workers/NAME.pub, DIR/clients/NAME.pub, see proto/keys.h), or
 *  --insecure on a trusted network. SIGINT / SIGTERM stop it within about a second, also
 *  while it plans a job (the planner polls the process's stop, base/cancel.h); with
 *  --state DIR a restarted coordinator resumes the unfinished job.
 */
#include "cli/cli.h"
#include "coordinator/coord.h" /* defines: lmp_coord_* */
#include "proto/keys.h"        /* defines: lmp_curve_server_load */
#include "base/log.h"          /* defines: lmp_log_set_level */

#include <getopt.h>
#include <stdio.h>

static const char *const usage =
    "lmpress coordinator [--bind EP] [--state DIR] [--heartbeat-timeout MS] [--max-attempts N]\n"
    "                    [--curve-dir DIR | --insecure] [--verbose]";

static const char *const help =
    "  --bind EP             endpoint to listen on (default tcp://127.0.0.1:7070; port *: a\n"
    "                        free one, printed on stderr)\n"
    "  --state DIR           keep the running job in DIR/job.pb and resume it on restart\n"
    "                        (default none)\n"
    "  --heartbeat-timeout MS  a worker silent this long is gone and its task requeued\n"
    "                        (default 5000)\n"
    "  --max-attempts N      failures of one task before the job fails (default 3)\n"
    "  --curve-dir DIR       CURVE keys: DIR/server.key, authorized DIR/workers/*.pub and\n"
    "                        DIR/clients/*.pub (required to bind beyond loopback)\n"
    "  --insecure            bind beyond loopback without keys: the network is trusted\n"
    "  --verbose             per-task log lines (default off)\n";

static volatile sig_atomic_t stop_flag;

static int cmd_coordinator_exec(struct lmp_cli *cli, int argc, char **argv) {
    struct lmp_coord_opts o;
    lmp_coord_opts_init(&o);
    long long                  hb_timeout = o.heartbeat_timeout_ms, attempts = o.max_attempts;
    static const struct option opts[] = {
        {"bind", required_argument, NULL, 'b'},
        {"state", required_argument, NULL, 's'},
        {"heartbeat-timeout", required_argument, NULL, 'T'},
        {"max-attempts", required_argument, NULL, 'a'},
        {"verbose", no_argument, NULL, 'v'},
        {"curve-dir", required_argument, NULL, 'K'},
        {"insecure", no_argument, NULL, 'I'},
        {0},
    };
    const char *curve_dir = NULL;
    bool        verbose   = false;
    for (int c; (c = getopt_long(argc, argv, "b:s:T:a:v", opts, NULL)) != -1;) {
        bool ok = true;
        switch (c) {
        case 'b':
            o.bind = optarg;
            break;
        case 's':
            o.state_dir = optarg;
            break;
        case 'v':
            verbose = true;
            break;
        case 'K':
            curve_dir = optarg;
            break;
        case 'I':
            o.insecure = true;
            break;
        case 'T':
            ok = lmp_cli_parse_i64("--heartbeat-timeout", optarg, 200, 3600000, &hb_timeout);
            break;
        case 'a':
            ok = lmp_cli_parse_i64("--max-attempts", optarg, 1, 100, &attempts);
            break;
        default:
            return lmp_cli_usage(usage);
        }
        if (!ok) return LMP_EXIT_USAGE;
    }
    if (optind != argc) return lmp_cli_usage_msg(usage, "unexpected argument");
    if (curve_dir && o.insecure)
        return lmp_cli_usage_msg(usage, "--curve-dir and --insecure exclude each other");
    o.heartbeat_timeout_ms = (uint32_t)hb_timeout;
    o.max_attempts         = (uint32_t)attempts;
    if (o.heartbeat_ms * 2 > o.heartbeat_timeout_ms) o.heartbeat_ms = o.heartbeat_timeout_ms / 3;
    if (verbose && lmp_log_get_level() < LMP_LOG_INFO) lmp_log_set_level(LMP_LOG_INFO);
    lmp_cli_stop_on_signals(&stop_flag);
    struct lmp_err          err = {0};
    struct lmp_coord       *c   = NULL;
    struct lmp_curve_server curve;
    size_t                  n_workers = 0, n_keys = 0;
    if (curve_dir) {
        if (lmp_curve_server_load(curve_dir, &curve, &err) != LMP_OK) {
            lmp_curve_server_release(&curve);
            fprintf(stderr, "lmpress: %s\n", err.msg);
            return err.code == LMP_EUNSUP ? LMP_EXIT_FAIL : LMP_EXIT_INPUT;
        }
        for (size_t i = 0; i < curve.n_keys; i++)
            n_workers += curve.keys[i].role == LMP_PEER_WORKER;
        n_keys  = curve.n_keys;
        o.curve = &curve;
    }
    enum lmp_status cst = lmp_coord_new(&o, &c, &err);
    if (curve_dir) lmp_curve_server_release(&curve);
    if (cst != LMP_OK) {
        fprintf(stderr, "lmpress: %s\n", err.msg);
        return cst == LMP_EINVAL        ? LMP_EXIT_USAGE
               : lmp_cli_exit_code(cst) ? lmp_cli_exit_code(cst)
                                        : LMP_EXIT_FAIL;
    }
    if (curve_dir)
        fprintf(stderr,
                "lmpress: coordinator listening on %s (CURVE: %zu worker keys, %zu client "
                "keys)\n",
                lmp_coord_endpoint(c), n_workers, n_keys - n_workers);
    else
        fprintf(stderr, "lmpress: coordinator listening on %s%s\n", lmp_coord_endpoint(c),
                o.insecure ? " (insecure: no authentication, no encryption)" : "");
    enum lmp_status st = lmp_coord_run(c, &stop_flag, &err);
    lmp_coord_destroy(&c);
    if (st != LMP_OK) return lmp_cli_fail(cli, &err);
    return LMP_EXIT_OK;
}

const struct lmp_cli_cmd lmp_cli_cmd_coordinator = {
    .name    = "coordinator",
    .summary = "run the coordinator daemon (jobs, workers, artifact)",
    .usage   = usage,
    .help    = help,
    .exec    = cmd_coordinator_exec,
};
