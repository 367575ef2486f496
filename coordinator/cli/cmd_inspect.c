/*  cmd_inspect - placeholder */
#include "coordinator/cli/cli.h"

#include <stdio.h>

static const char *const usage = "lmpress inspect";

static int cmd_inspect_exec(struct lmp_cli *cli, int argc, char **argv) {
    fprintf(stderr, "lmpress: inspect is not implemented yet\n");
    return LMP_EXIT_FAIL;
}

const struct lmp_cli_cmd lmp_cli_cmd_inspect = {
    .name = "inspect", .summary = "inspect (not yet)", .usage = usage, .exec = cmd_inspect_exec,
};
