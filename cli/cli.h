/*  cli - the `lmpress` command table and the helpers every subcommand shares
 *
 *  One file per subcommand (cmd_<verb>.c) exports a struct lmp_cli_cmd; main.c
 *  lists them. Errors print as "lmpress: <problem>" on one line (git style) and map
 *  to the fixed exit codes below (documented in docs/cli.md).
 */
#ifndef LMP_CLI_CLI_H
#define LMP_CLI_CLI_H

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include "base/status.h" /* defines: struct lmp_err */

enum lmp_exit {
    LMP_EXIT_OK          = 0,   /* success */
    LMP_EXIT_FAIL        = 1,   /* the operation or job failed */
    LMP_EXIT_USAGE       = 2,   /* bad command line */
    LMP_EXIT_UNREACHABLE = 3,   /* cannot reach the coordinator */
    LMP_EXIT_INPUT       = 4,   /* an input file (model, tokenizer, text, artifact) was rejected */
    LMP_EXIT_DENIED      = 5,   /* the coordinator refused this key (CURVE), or requires one */
    LMP_EXIT_INTERRUPTED = 130, /* SIGINT / SIGTERM */
};

struct lmp_cli {
    bool json; /* machine-readable output */
    bool tty;  /* stderr is a terminal: progress bars */
};

struct lmp_cli_cmd {
    const char *name;
    const char *summary;
    const char *usage;
    /* each option with its default and meaning (`lmpress CMD --help`, `lmpress help CMD`) */
    const char *help;
    /* argv[0] is the subcommand name; optind is reset before the call */
    int (*exec)(struct lmp_cli *cli, int argc, char **argv);
};

/* The help lines of --key / --server-key, for the commands main.c gives them to. */
#define LMP_CLI_KEYS_HELP                                                                          \
    "  --key FILE            this peer's CURVE secret key (default LMPRESS_KEY, else none)\n"      \
    "  --server-key FILE     the coordinator's CURVE public key (default LMPRESS_SERVER_KEY)\n"

/* Print the command's usage, summary and help (every option, its default and meaning). */
void lmp_cli_print_help(const struct lmp_cli_cmd *cmd, FILE *f);
/* True if argv[1..argc) asks for help: "--help" or "-h" before any "--". */
bool lmp_cli_wants_help(int argc, char **argv);

/* Print "usage: ..." to stderr; return LMP_EXIT_USAGE. */
int lmp_cli_usage(const char *usage);
/* Print "lmpress: msg" and the usage line; return LMP_EXIT_USAGE. */
int lmp_cli_usage_msg(const char *usage, const char *msg);
/* Print "lmpress: <err->msg>" and map the status to an exit code. */
int lmp_cli_fail(const struct lmp_cli *cli, const struct lmp_err *err);
/* The exit code for a status. */
int lmp_cli_exit_code(enum lmp_status st);

/* CURVE keys of a worker or client, from LMPRESS_KEY (its secret key file) and
 * LMPRESS_SERVER_KEY (the coordinator's public key file); `--key FILE` and
 * `--server-key FILE` anywhere on the command line set these (main.c, as git's --git-dir
 * sets GIT_DIR). Neither set: *on = false, exit code 0. One without the other, or a bad
 * file: a one-line message naming the file and its exit code (2 usage, 4 input). */
struct lmp_curve_client;
int lmp_cli_curve_from_env(struct lmp_curve_client *c, bool *on);

/* Remove "--key FILE", "--key=FILE", "--server-key FILE", "--server-key=FILE" from argv
 * (argc updated) and export them as LMPRESS_KEY / LMPRESS_SERVER_KEY. RET 0, or
 * LMP_EXIT_USAGE (an option without its value) after a message. */
int lmp_cli_take_key_options(int *argc, char **argv);

/* Context length for a model trained on max_seq positions (0 = unknown): *ctx == 0 becomes
 * min(512, max_seq); a *ctx above max_seq prints a one-line error and returns LMP_EXIT_INPUT. */
int lmp_cli_resolve_ctx(long long *ctx, int max_seq);

/* Install the stop handler of a long-running command (coordinator, worker): SIGINT and
 * SIGTERM set *flag (the command's loop ends) and request the process-wide stop
 * (base/cancel.h, lmp_cancel_shutdown), so the computation in progress (planning, a
 * calibration, an AQ round, a fine-tuning step) ends within about a second; SIGPIPE is
 * ignored. flag must outlive the process's handling of signals (a static). */
void lmp_cli_stop_on_signals(volatile sig_atomic_t *flag);

/* Parse helpers: a whole-string integer / float; false (and a message) on junk. */
bool lmp_cli_parse_i64(const char *opt, const char *s, long long lo, long long hi, long long *v);
bool lmp_cli_parse_f64(const char *opt, const char *s, double lo, double hi, double *v);

#endif /* LMP_CLI_CLI_H */
