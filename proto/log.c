/*  log - see log.h */
#include "proto/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int g_level = -1;   /* -1: not yet read from the environment */

static enum lmp_log_level env_level(void) {
    const char *s = getenv("LMPRESS_LOG");
    if (s == NULL) return LMP_LOG_WARN;
    if (strcmp(s, "error") == 0) return LMP_LOG_ERROR;
    if (strcmp(s, "info") == 0) return LMP_LOG_INFO;
    if (strcmp(s, "debug") == 0) return LMP_LOG_DEBUG;
    return LMP_LOG_WARN;
}

void lmp_log_set_level(enum lmp_log_level level) { g_level = (int) level; }

enum lmp_log_level lmp_log_get_level(void) {
    if (g_level < 0) g_level = (int) env_level();
    return (enum lmp_log_level) g_level;
}

void lmp_log(enum lmp_log_level level, const char *fmt, ...) {
    if ((int) level > (int) lmp_log_get_level()) return;
    static const char *const names[] = {"error", "warning", "info", "debug"};
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    fprintf(stderr, "lmpress: %s: %s\n", names[level], line);
}
