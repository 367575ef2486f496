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
#include "cli/cluster.h" /* defines: lmp_cli_submit_job */
#include "cli/jobopts.h" /* defines: lmp_jobopts_* */

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
        return lmp_cli_usage_msg(usage, "--pv: submit the compression, then lmpress tune "
                                        "--connect on its artifact (lmpress compress and "
                                        "lmpress run do both)");
    }
    struct lmp_jobopts_pb pb;
    lmp_jobopts_to_jobspec(&jo, &pb);

    rc = lmp_cli_submit_job(cli, ep, &pb.spec, wait);
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
