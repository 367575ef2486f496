/*  cli - shared helpers of the subcommands (see cli.h) */
#include "cli/cli.h"
#include "base/cancel.h" /* defines: lmp_cancel_shutdown */
#include "proto/keys.h"  /* defines: lmp_curve_client_load */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void lmp_cli_print_help(const struct lmp_cli_cmd *cmd, FILE *f) {
    fprintf(f, "usage: %s\n%s\n", cmd->usage, cmd->summary);
    if (cmd->help && cmd->help[0]) fprintf(f, "\n%s", cmd->help);
}

bool lmp_cli_wants_help(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) return false;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) return true;
    }
    return false;
}

int lmp_cli_usage(const char *usage) {
    fprintf(stderr, "usage: %s\n", usage);
    return LMP_EXIT_USAGE;
}

int lmp_cli_usage_msg(const char *usage, const char *msg) {
    fprintf(stderr, "lmpress: %s\nusage: %s\n", msg, usage);
    return LMP_EXIT_USAGE;
}

int lmp_cli_exit_code(enum lmp_status st) {
    switch (st) {
    case LMP_OK:
        return LMP_EXIT_OK;
    case LMP_EFORMAT:
    case LMP_EUNSUP:
    case LMP_ENOENT:
    case LMP_EMISMATCH:
        return LMP_EXIT_INPUT;
    case LMP_ECANCEL:
        return LMP_EXIT_INTERRUPTED;
    case LMP_EPERM:
        return LMP_EXIT_DENIED;
    default:
        return LMP_EXIT_FAIL;
    }
}

int lmp_cli_fail(const struct lmp_cli *cli, const struct lmp_err *err) {
    (void)cli;
    fprintf(stderr, "lmpress: %s\n", err->msg[0] ? err->msg : lmp_status_str(err->code));
    int rc = lmp_cli_exit_code(err->code);
    return rc == LMP_EXIT_OK ? LMP_EXIT_FAIL : rc;
}

static volatile sig_atomic_t *stop_flag; /* lmp_cli_stop_on_signals */

static void on_stop_signal(int sig) {
    (void)sig;
    if (stop_flag) *stop_flag = 1;
    lmp_cancel_shutdown(); /* async-signal-safe: one lock-free atomic store */
}

void lmp_cli_stop_on_signals(volatile sig_atomic_t *flag) {
    stop_flag = flag;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

bool lmp_cli_parse_i64(const char *opt, const char *s, long long lo, long long hi, long long *v) {
    char *end   = NULL;
    errno       = 0;
    long long x = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || x < lo || x > hi) {
        fprintf(stderr, "lmpress: option '%s' wants an integer in [%lld, %lld], got '%s'\n", opt,
                lo, hi, s);
        return false;
    }
    *v = x;
    return true;
}

bool lmp_cli_parse_f64(const char *opt, const char *s, double lo, double hi, double *v) {
    char *end = NULL;
    errno     = 0;
    double x  = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !(x >= lo && x <= hi)) {
        fprintf(stderr, "lmpress: option '%s' wants a number in [%g, %g], got '%s'\n", opt, lo, hi,
                s);
        return false;
    }
    *v = x;
    return true;
}

int lmp_cli_resolve_ctx(long long *ctx, int max_seq) {
    if (*ctx == 0) *ctx = max_seq > 0 && max_seq < 512 ? max_seq : 512;
    if (max_seq > 0 && *ctx > max_seq) {
        fprintf(stderr, "lmpress: context length %lld exceeds the model's maximum of %d\n", *ctx,
                max_seq);
        return LMP_EXIT_INPUT;
    }
    return LMP_EXIT_OK;
}

int lmp_cli_curve_from_env(struct lmp_curve_client *c, bool *on) {
    const char *key = getenv("LMPRESS_KEY"), *server = getenv("LMPRESS_SERVER_KEY");
    *on = false;
    if (key && !key[0]) key = NULL;
    if (server && !server[0]) server = NULL;
    if (key == NULL && server == NULL) return LMP_EXIT_OK;
    if (key == NULL || server == NULL) {
        fprintf(stderr, "lmpress: CURVE needs both keys: --key FILE (LMPRESS_KEY) and "
                        "--server-key FILE (LMPRESS_SERVER_KEY)\n");
        return LMP_EXIT_USAGE;
    }
    struct lmp_err err = {0};
    if (lmp_curve_client_load(key, server, c, &err) != LMP_OK) {
        fprintf(stderr, "lmpress: %s\n", err.msg);
        return err.code == LMP_EUNSUP ? LMP_EXIT_FAIL : LMP_EXIT_INPUT;
    }
    *on = true;
    return LMP_EXIT_OK;
}

int lmp_cli_take_key_options(int *argc, char **argv) {
    static const struct {
        const char *opt, *env;
    } keys[] = {
        {"--key", "LMPRESS_KEY"},
        {"--server-key", "LMPRESS_SERVER_KEY"},
    };
    int out = 0;
    for (int i = 0; i < *argc; i++) {
        bool taken = false;
        if (strcmp(argv[i], "--") == 0) { /* the rest are operands */
            while (i < *argc) argv[out++] = argv[i++];
            break;
        }
        for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]) && !taken; k++) {
            const size_t n = strlen(keys[k].opt);
            if (strncmp(argv[i], keys[k].opt, n) != 0) continue;
            const char *v = NULL;
            if (argv[i][n] == '=')
                v = argv[i] + n + 1;
            else if (argv[i][n] != '\0')
                continue;
            else if (i + 1 < *argc)
                v = argv[++i];
            if (v == NULL || v[0] == '\0') {
                fprintf(stderr, "lmpress: option '%s' wants a key file\n", keys[k].opt);
                return LMP_EXIT_USAGE;
            }
            setenv(keys[k].env, v, 1);
            taken = true;
        }
        if (!taken) argv[out++] = argv[i];
    }
    argv[out] = NULL;
    *argc     = out;
    return LMP_EXIT_OK;
}
