/*  cancel - asking a long computation to stop: a flag it polls, and the process's stop
 *
 *  Stages (calibration, generation, AQLM rounds, fine-tuning) and the job planner poll
 *  lmp_cancelled() between units of work small enough that a stop acts within a second
 *  or so, and then return LMP_ECANCEL with what they had committed untouched.
 *
 *  Two sources: the flag of one task (an atomic_int the owner sets, e.g. a worker that
 *  is told TaskCancel; NULL = none) and the process-wide stop that a SIGTERM / SIGINT
 *  handler requests with lmp_cancel_shutdown() (async-signal-safe: one lock-free atomic
 *  store). The process-wide flag is set only when the whole process is going down, so
 *  every computation in it may stop; it is never cleared.
 */
#ifndef LMP_BASE_CANCEL_H
#define LMP_BASE_CANCEL_H

#include <stdatomic.h>
#include <stdbool.h>

/* The process is stopping: every lmp_cancelled() is true from now on. Async-signal-safe. */
void lmp_cancel_shutdown(void);
/* Has lmp_cancel_shutdown() been called? */
bool lmp_cancel_is_shutdown(void);
/* Should the computation stop: flag (may be NULL) is non-zero, or the process stops. */
bool lmp_cancelled(const atomic_int *flag);

#endif /* LMP_BASE_CANCEL_H */
