/*  cmd_worker - lmpress worker: connect to a coordinator and run its tasks until stopped
 *
 *  SIGINT / SIGTERM: a running task is handed back to the coordinator and stopped (it polls
 *  the process's stop, base/cancel.h), then the worker exits with 0, within about a second.
 *  A coordinator that does not answer, or refuses this worker (another protocol version,
 *  a live worker of the same name, no room for more workers): one line, exit 3.
 */
#include "cli/cli.h"
#include "cli/tune_cli.h"   /* defines: lmp_cli_tune_rank */
#include "cli/cluster.h"    /* defines: LMP_CLI_DEFAULT_ENDPOINT */
#include "base/log.h"       /* defines: lmp_log_set_level */
#include "worker/agent.h"   /* defines: lmp_agent_run */
#include "kernels/device.h" /* defines: lmp_device_name_ok */

#include <getopt.h>
#include <stdio.h>
#include <string.h>

static const char *const usage =
    "lmpress worker --connect EP [--threads T] [--name NAME] [--timeout MS] [--verbose]\n"
    "               [--device cpu|cuda:N|auto] [--key FILE --server-key FILE]";

static const char *const help =
    "  --connect EP          the coordinator (default " LMP_CLI_DEFAULT_ENDPOINT ")\n"
    "  --threads T           compute threads (default every core)\n"
    "  --name NAME           unique among the coordinator's live workers; a second one is\n"
    "                        refused (exit 3) (default HOST-PID)\n"
    "  --timeout MS          give up (exit 3) when the coordinator does not answer this\n"
    "                        long (default 10000)\n"
    "  --verbose             per-task log lines (default off)\n"
    "  --device D            cpu, cuda:N (GPU N; one line and exit 1 when it cannot be\n"
    "                        used) or auto (cuda:0 if usable, else cpu); reported to the\n"
    "                        coordinator (default $LMPRESS_DEVICE, else cpu; "
    "docs/gpu.md)\n" LMP_CLI_KEYS_HELP;

static volatile sig_atomic_t stop_flag;

static int cmd_worker_exec(struct lmp_cli *cli, int argc, char **argv) {
    struct lmp_agent_opts o;
    lmp_agent_opts_init(&o);
    o.endpoint                         = LMP_CLI_DEFAULT_ENDPOINT;
    o.tune                             = lmp_cli_tune_rank;
    long long                  threads = 0, timeout = o.connect_timeout_ms;
    bool                       verbose = false;
    static const struct option opts[]  = {
         {"connect", required_argument, NULL, 'c'},
         {"threads", required_argument, NULL, 't'},
         {"name", required_argument, NULL, 'n'},
         {"timeout", required_argument, NULL, 'T'},
         {"verbose", no_argument, NULL, 'v'},
         {"device", required_argument, NULL, 'd'},
         {0},
    };
    for (int c; (c = getopt_long(argc, argv, "c:t:n:T:vd:", opts, NULL)) != -1;) {
        bool ok = true;
        switch (c) {
        case 'c':
            o.endpoint = optarg;
            break;
        case 'n':
            o.name = optarg;
            break;
        case 'v':
            verbose = true;
            break;
        case 'd':
            if (strcmp(optarg, "auto") != 0 && strcmp(optarg, "cuda") != 0 &&
                !lmp_device_name_ok(optarg))
                return lmp_cli_usage_msg(usage, "--device: expected cpu, cuda:N or auto");
            o.device = optarg;
            break;
        case 't':
            ok = lmp_cli_parse_i64("--threads", optarg, 1, 1024, &threads);
            break;
        case 'T':
            ok = lmp_cli_parse_i64("--timeout", optarg, 100, 86400000, &timeout);
            break;
        default:
            return lmp_cli_usage(usage);
        }
        if (!ok) return LMP_EXIT_USAGE;
    }
    if (optind != argc) return lmp_cli_usage_msg(usage, "unexpected argument");
    o.n_threads          = (int)threads;
    o.connect_timeout_ms = (int)timeout;
    struct lmp_curve_client curve; /* --key / --server-key, taken out of argv by main.c */
    bool                    use_curve = false;
    int                     rc        = lmp_cli_curve_from_env(&curve, &use_curve);
    if (rc != LMP_EXIT_OK) return rc;
    o.curve = use_curve ? &curve : NULL;
    if (verbose && lmp_log_get_level() < LMP_LOG_INFO) lmp_log_set_level(LMP_LOG_INFO);
    lmp_cli_stop_on_signals(&stop_flag);
    struct lmp_err  err = {0};
    enum lmp_status st  = lmp_agent_run(&o, &stop_flag, &err);
    memset(&curve, 0, sizeof(curve));
    if (st == LMP_EIO || st == LMP_EVERSION || st == LMP_EBUSY) {
        fprintf(stderr, "lmpress: %s\n", err.msg);
        return LMP_EXIT_UNREACHABLE;
    }
    if (st != LMP_OK) return lmp_cli_fail(cli, &err);
    return LMP_EXIT_OK;
}

const struct lmp_cli_cmd lmp_cli_cmd_worker = {
    .name    = "worker",
    .summary = "run a worker: take tasks from a coordinator",
    .usage   = usage,
    .help    = help,
    .exec    = cmd_worker_exec,
};
