/*  cli - shared helpers of the subcommands (see cli.h) */
#include "coordinator/cli/cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

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
    case LMP_OK:        return LMP_EXIT_OK;
    case LMP_EFORMAT:
    case LMP_EUNSUP:
    case LMP_ENOENT:
    case LMP_EMISMATCH: return LMP_EXIT_INPUT;
    case LMP_ECANCEL:   return LMP_EXIT_INTERRUPTED;
    default:            return LMP_EXIT_FAIL;
    }
}

int lmp_cli_fail(const struct lmp_cli *cli, const struct lmp_err *err) {
    (void) cli;
    fprintf(stderr, "lmpress: %s\n", err->msg[0] ? err->msg : lmp_status_str(err->code));
    int rc = lmp_cli_exit_code(err->code);
    return rc == LMP_EXIT_OK ? LMP_EXIT_FAIL : rc;
}

bool lmp_cli_parse_i64(const char *opt, const char *s, long long lo, long long hi, long long *v) {
    char *end = NULL;
    errno = 0;
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
    errno = 0;
    double x = strtod(s, &end);
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
