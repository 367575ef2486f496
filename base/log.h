/*  log - leveled logging to stderr
 *
 *  Log once, where the context is. The level comes from LMPRESS_LOG
 *  (error|warn|info|debug, default warn) or lmp_log_set_level().
 */
#ifndef LMP_BASE_LOG_H
#define LMP_BASE_LOG_H

enum lmp_log_level { LMP_LOG_ERROR, LMP_LOG_WARN, LMP_LOG_INFO, LMP_LOG_DEBUG };

void               lmp_log_set_level(enum lmp_log_level level);
enum lmp_log_level lmp_log_get_level(void);
void lmp_log(enum lmp_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A hook that also receives this thread's lines of level <= max_level (whatever
 * LMPRESS_LOG says), e.g. the coordinator's log ring. Thread-local; fn NULL removes it.
 * Lines the hook itself logs do not reach it again. */
typedef void lmp_log_hook_fn(void *ctx, enum lmp_log_level level, const char *line);
void         lmp_log_set_hook(lmp_log_hook_fn *fn, void *ctx, enum lmp_log_level max_level);

#define lmp_log_error(...) lmp_log(LMP_LOG_ERROR, __VA_ARGS__)
#define lmp_log_warn(...)  lmp_log(LMP_LOG_WARN, __VA_ARGS__)
#define lmp_log_info(...)  lmp_log(LMP_LOG_INFO, __VA_ARGS__)
#define lmp_log_debug(...) lmp_log(LMP_LOG_DEBUG, __VA_ARGS__)

#endif /* LMP_BASE_LOG_H */
