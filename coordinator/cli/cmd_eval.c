/*  cmd_eval - placeholder */
#include "coordinator/cli/cli.h"

#include <stdio.h>

static const char *const usage = "lmpress eval";

static int cmd_eval_exec(struct lmp_cli *cli, int argc, char **argv) {
    fprintf(stderr, "lmpress: eval is not implemented yet\n");
    return LMP_EXIT_FAIL;
}

const struct lmp_cli_cmd lmp_cli_cmd_eval = {
    .name = "eval", .summary = "eval (not yet)", .usage = usage, .exec = cmd_eval_exec,
};
