/*  log - see log.h */
#include "base/log.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int g_level = -1; /* -1: not yet read from the environment */

static enum lmp_log_level env_level(void) {
    const char *s = getenv("LMPRESS_LOG");
    if (s == NULL) return LMP_LOG_WARN;
    if (strcmp(s, "error") == 0) return LMP_LOG_ERROR;
    if (strcmp(s, "info") == 0) return LMP_LOG_INFO;
    if (strcmp(s, "debug") == 0) return LMP_LOG_DEBUG;
    return LMP_LOG_WARN;
}

void lmp_log_set_level(enum lmp_log_level level) {
    g_level = (int)level;
}

enum lmp_log_level lmp_log_get_level(void) {
    if (g_level < 0) g_level = (int)env_level();
    return (enum lmp_log_level)g_level;
}

static _Thread_local lmp_log_hook_fn *t_hook;
static _Thread_local void            *t_hook_ctx;
static _Thread_local int              t_hook_max, t_in_hook;

void lmp_log_set_hook(lmp_log_hook_fn *fn, void *ctx, enum lmp_log_level max_level) {
    t_hook = fn, t_hook_ctx = ctx, t_hook_max = (int)max_level;
}

void lmp_log(enum lmp_log_level level, const char *fmt, ...) {
    const bool to_hook = t_hook != NULL && !t_in_hook && (int)level <= t_hook_max;
    const bool to_err  = (int)level <= (int)lmp_log_get_level();
    if (!to_hook && !to_err) return;
    static const char *const names[] = {"error", "warning", "info", "debug"};
    char                     line[1024];
    va_list                  ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (to_hook) {
        t_in_hook = 1;
        t_hook(t_hook_ctx, level, line);
        t_in_hook = 0;
    }
    if (to_err) fprintf(stderr, "lmpress: %s: %s\n", names[level], line);
}
