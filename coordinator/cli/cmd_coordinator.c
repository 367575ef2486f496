/*  cmd_coordinator - lmpress coordinator: run the coordinator daemon in the foreground
 *
 *  Binds loopback by default; --bind opens it to other hosts (there is no
 *  authentication yet: bind a trusted network only). SIGINT / SIGTERM stop it; with
 *  --state DIR a restarted coordinator resumes the unfinished job.
 */
#include "coordinator/cli/cli.h"
#include "coordinator/coord.h"      /* defines: lmp_coord_* */
#include "proto/log.h"              /* defines: lmp_log_set_level */

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

static const char *const usage =
    "lmpress coordinator [--bind EP] [--state DIR] [--heartbeat-timeout MS] [--max-attempts N]\n"
    "                    [--verbose]";

static volatile sig_atomic_t stop_flag;
static void on_signal(int sig) { (void) sig; stop_flag = 1; }

static int cmd_coordinator_exec(struct lmp_cli *cli, int argc, char **argv) {
    struct lmp_coord_opts o;
    lmp_coord_opts_init(&o);
    long long hb_timeout = o.heartbeat_timeout_ms, attempts = o.max_attempts;
    static const struct option opts[] = {
        {"bind", required_argument, NULL, 'b'}, {"state", required_argument, NULL, 's'},
        {"heartbeat-timeout", required_argument, NULL, 'T'},
        {"max-attempts", required_argument, NULL, 'a'}, {"verbose", no_argument, NULL, 'v'}, {0},
    };
    bool verbose = false;
    for (int c; (c = getopt_long(argc, argv, "b:s:T:a:v", opts, NULL)) != -1;) {
        bool ok = true;
        switch (c) {
        case 'b': o.bind = optarg; break;
        case 's': o.state_dir = optarg; break;
        case 'v': verbose = true; break;
        case 'T': ok = lmp_cli_parse_i64("--heartbeat-timeout", optarg, 200, 3600000, &hb_timeout); break;
        case 'a': ok = lmp_cli_parse_i64("--max-attempts", optarg, 1, 100, &attempts); break;
        default: return lmp_cli_usage(usage);
        }
        if (!ok) return LMP_EXIT_USAGE;
    }
    if (optind != argc) return lmp_cli_usage_msg(usage, "unexpected argument");
    o.heartbeat_timeout_ms = (uint32_t) hb_timeout;
    o.max_attempts = (uint32_t) attempts;
    if (o.heartbeat_ms * 2 > o.heartbeat_timeout_ms) o.heartbeat_ms = o.heartbeat_timeout_ms / 3;
    if (verbose && lmp_log_get_level() < LMP_LOG_INFO) lmp_log_set_level(LMP_LOG_INFO);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    struct lmp_err err = {0};
    struct lmp_coord *c = NULL;
    if (lmp_coord_new(&o, &c, &err) != LMP_OK) return lmp_cli_fail(cli, &err);
    fprintf(stderr, "lmpress: coordinator listening on %s\n", lmp_coord_endpoint(c));
    enum lmp_status st = lmp_coord_run(c, &stop_flag, &err);
    lmp_coord_destroy(&c);
    if (st != LMP_OK) return lmp_cli_fail(cli, &err);
    return LMP_EXIT_OK;
}

const struct lmp_cli_cmd lmp_cli_cmd_coordinator = {
    .name = "coordinator", .summary = "run the coordinator daemon (jobs, workers, artifact)",
    .usage = usage, .exec = cmd_coordinator_exec,
};
