/*  launch - a coordinator and workers inside this process, and a job followed to its end
 *
 *  `lmpress compress` (the embedded local path) and `lmpress run` (MPI rank 0) run the
 *  same coordinator and workers as a cluster does, as threads of one process: the
 *  coordinator's loop in one thread (coordinator/coord.h), each worker's agent in one
 *  thread (worker/agent.h), talking over a loopback TCP endpoint exactly as separate
 *  processes would. The calling thread submits the job with a client (coordinator/client.h)
 *  and polls its status until it ends. So there is one code path for a job, wherever its
 *  processes run.
 *
 *  Calling sequence:
 *      struct lmp_launch_opts lo; lmp_launch_opts_init(&lo); lo.n_workers = 1; ...
 *      st = lmp_launch_start(&lo, &L, &err);            // coordinator bound, workers started
 *      st = lmp_client_connect(lmp_launch_endpoint(L), 5000, &cl, &err);
 *      st = lmp_launch_submit(cl, &spec, &job_id, &n_tasks, &err);
 *      st = lmp_launch_follow(cl, job_id, &stop, on_status, ctx, &state, &err);
 *      lmp_client_close(&cl);
 *      lmp_launch_stop(&L);                             // workers, then the coordinator
 *  The launch object belongs to the thread that started it.
 */
#ifndef LMP_COORDINATOR_LAUNCH_H
#define LMP_COORDINATOR_LAUNCH_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include "coordinator/client.h"     /* defines: struct lmp_client */
#include "proto/status.h"           /* defines: enum lmp_status, struct lmp_err */
#include "proto/wire.h"             /* defines: Lmp__JobSpec, Lmp__JobInfo */

struct lmp_launch_opts {
    const char *bind;               /* default "tcp://127.0.0.1:*" (a free loopback port) */
    const char *state_dir;          /* coordinator --state; NULL = none; borrowed until stop */
    int         n_workers;          /* in-process worker threads (0 = none: remote only) */
    int         worker_threads;     /* cores each worker advertises and uses (0 = all) */
    const char *worker_name;        /* "NAME-<i>" (default "local") */
    uint32_t    heartbeat_timeout_ms; /* 0 = the coordinator's default */
};

void lmp_launch_opts_init(struct lmp_launch_opts *o);

struct lmp_launch;

/* Create and bind the coordinator (resuming a job from state_dir, if any), start its
 * thread, then the worker threads. RET LMP_OK, or the coordinator's error (LMP_EIO: the
 * endpoint cannot be bound), LMP_ENOMEM; nothing is left running on error. */
enum lmp_status lmp_launch_start(const struct lmp_launch_opts *o, struct lmp_launch **out,
                                 struct lmp_err *err);

/* The coordinator's bound endpoint ("tcp://127.0.0.1:41234"). */
const char *lmp_launch_endpoint(const struct lmp_launch *L);

/* Stop the workers (a running task is handed back), then the coordinator (committed layers
 * and the state directory stay), join every thread and free *L. Safe on NULL. Returns the
 * first error a thread ended with (LMP_OK normally) with its message in err (may be NULL). */
enum lmp_status lmp_launch_stop(struct lmp_launch **L, struct lmp_err *err);

/* Submit spec; *job_id and *n_tasks (may be NULL) from the JobAccepted.
 * RET LMP_OK; the coordinator's refusal (its code and message), LMP_EIO (no answer). */
enum lmp_status lmp_launch_submit(struct lmp_client *cl, const Lmp__JobSpec *spec,
                                  uint64_t *job_id, uint32_t *n_tasks, struct lmp_err *err);

/* Called with every status poll (with layers) and with the final one. */
typedef void lmp_launch_status_fn(void *ctx, const Lmp__JobInfo *job);

/* Poll job_id every poll_ms until it is done, failed or cancelled, or *stop is set
 * (stop may be NULL). *state = the last state seen. RET LMP_OK (the job ended, whatever
 * its state), LMP_ECANCEL (*stop was set first), LMP_EIO (the coordinator stopped
 * answering), LMP_EPROTO (the job vanished). */
enum lmp_status lmp_launch_follow(struct lmp_client *cl, uint64_t job_id, int poll_ms,
                                  volatile sig_atomic_t *stop, lmp_launch_status_fn *cb,
                                  void *ctx, Lmp__JobState *state, struct lmp_err *err);

#endif /* LMP_COORDINATOR_LAUNCH_H */
