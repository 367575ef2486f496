/*  cmd_keygen - lmpress keygen: write a CURVE key pair for a coordinator, worker or client
 *
 *  --out DIR/NAME writes DIR/NAME.key (the secret key, mode 0600) and DIR/NAME.pub (the
 *  public key), each one line of Z85 (proto/keys.h), and prints the public key. Existing
 *  files are kept unless --force. Where the files go is the deployment (docs/cli.md,
 *  "Remote deployment"): the coordinator's pair is DIR/server.{key,pub}; a worker's .pub
 *  is copied into the coordinator's DIR/workers/, a client's into DIR/clients/.
 */
#include "cli/cli.h"
#include "proto/keys.h" /* defines: lmp_key_generate */

#include <getopt.h>
#include <stdio.h>

static const char *const usage = "lmpress keygen --out DIR/NAME [--force]";

static const char *const help =
    "  --out DIR/NAME        write DIR/NAME.key (secret, mode 0600) and DIR/NAME.pub\n"
    "                        (required)\n"
    "  --force               overwrite an existing pair (default: refuse)\n";

static int cmd_keygen_exec(struct lmp_cli *cli, int argc, char **argv) {
    const char                *out    = NULL;
    bool                       force  = false;
    static const struct option opts[] = {
        {"out", required_argument, NULL, 'o'},
        {"force", no_argument, NULL, 'f'},
        {0},
    };
    for (int c; (c = getopt_long(argc, argv, "o:f", opts, NULL)) != -1;) {
        if (c == 'o')
            out = optarg;
        else if (c == 'f')
            force = true;
        else
            return lmp_cli_usage(usage);
    }
    if (optind != argc) return lmp_cli_usage_msg(usage, "unexpected argument");
    if (out == NULL || out[0] == '\0')
        return lmp_cli_usage_msg(usage, "--out DIR/NAME is required");
    struct lmp_key  pub;
    struct lmp_err  err = {0};
    enum lmp_status st  = lmp_key_generate(out, force, &pub, &err);
    if (st == LMP_EINVAL) { /* exists, or a bad path: the command line's fault */
        fprintf(stderr, "lmpress: %s\n", err.msg);
        return LMP_EXIT_USAGE;
    }
    if (st != LMP_OK) return lmp_cli_fail(cli, &err);
    printf("%s\n", pub.z85);
    fprintf(stderr, "lmpress: wrote %s.key (secret, mode 0600) and %s.pub\n", out, out);
    return LMP_EXIT_OK;
}

const struct lmp_cli_cmd lmp_cli_cmd_keygen = {
    .name    = "keygen",
    .summary = "write a CURVE key pair (NAME.key secret, NAME.pub public)",
    .usage   = usage,
    .help    = help,
    .exec    = cmd_keygen_exec,
};
