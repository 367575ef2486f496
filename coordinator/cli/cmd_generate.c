/*  cmd_generate - placeholder */
#include "coordinator/cli/cli.h"

#include <stdio.h>

static const char *const usage = "lmpress generate";

static int cmd_generate_exec(struct lmp_cli *cli, int argc, char **argv) {
    fprintf(stderr, "lmpress: generate is not implemented yet\n");
    return LMP_EXIT_FAIL;
}

const struct lmp_cli_cmd lmp_cli_cmd_generate = {
    .name = "generate", .summary = "generate (not yet)", .usage = usage, .exec = cmd_generate_exec,
};
