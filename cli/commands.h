/*  commands - the subcommand entries, one per cmd_<verb>.c; main.c lists them in this order */
#ifndef LMP_CLI_COMMANDS_H
#define LMP_CLI_COMMANDS_H

#include "cli/cli.h"

extern const struct lmp_cli_cmd lmp_cli_cmd_inspect;
extern const struct lmp_cli_cmd lmp_cli_cmd_eval;
extern const struct lmp_cli_cmd lmp_cli_cmd_generate;
extern const struct lmp_cli_cmd lmp_cli_cmd_export;
extern const struct lmp_cli_cmd lmp_cli_cmd_compress;
extern const struct lmp_cli_cmd lmp_cli_cmd_tune;
extern const struct lmp_cli_cmd lmp_cli_cmd_coordinator;
extern const struct lmp_cli_cmd lmp_cli_cmd_worker;
extern const struct lmp_cli_cmd lmp_cli_cmd_submit;
extern const struct lmp_cli_cmd lmp_cli_cmd_status;
extern const struct lmp_cli_cmd lmp_cli_cmd_logs;
extern const struct lmp_cli_cmd lmp_cli_cmd_cancel;
extern const struct lmp_cli_cmd lmp_cli_cmd_workers;
extern const struct lmp_cli_cmd lmp_cli_cmd_keygen;
extern const struct lmp_cli_cmd lmp_cli_cmd_run;
extern const struct lmp_cli_cmd lmp_cli_cmd_tokenize;

#define LMP_CLI_COMMANDS                                                                           \
    &lmp_cli_cmd_inspect, &lmp_cli_cmd_eval, &lmp_cli_cmd_generate, &lmp_cli_cmd_export,           \
        &lmp_cli_cmd_compress, &lmp_cli_cmd_tune, &lmp_cli_cmd_coordinator, &lmp_cli_cmd_worker,   \
        &lmp_cli_cmd_submit, &lmp_cli_cmd_run, &lmp_cli_cmd_status, &lmp_cli_cmd_logs,             \
        &lmp_cli_cmd_cancel, &lmp_cli_cmd_workers, &lmp_cli_cmd_keygen, &lmp_cli_cmd_tokenize

#endif /* LMP_CLI_COMMANDS_H */
