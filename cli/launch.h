/*  launch - a coordinator and workers inside this process, and a job followed to its end
 *
 *  `lmpress compress` (the embedded local path) and `lmpress run` (MPI rank 0) run the
 *  same coordinator and workers as a cluster does, as threads of one process: the
 *  coordinator's loop in one thread (coordinator/coord.h), each worker's agent in one
 *  thread (worker/agent.h), talking over a loopback TCP endpoint exactly as separate
 *  processes would. The calling thread submits the job with a client (proto/client.h)
 *  and polls its status until it ends. So there is one code path for a job, wherever its
 *  processes run.
 *
 *  On loopback no keys are needed. A coordinator that workers on other hosts must reach
 *  binds lmp_launch_bind_endpoint's address and is given CURVE keys (opts.curve; the
 *  in-process workers then need opts.worker_curve, and the client connects with
 *  lmp_client_connect_curve).
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
#ifndef LMP_CLI_LAUNCH_H
#define LMP_CLI_LAUNCH_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>
#include "proto/client.h" /* defines: struct lmp_client */
#include "proto/keys.h"   /* defines: struct lmp_curve_server, lmp_curve_client */
#include "base/status.h"  /* defines: enum lmp_status, struct lmp_err */
#include "proto/wire.h"   /* defines: Lmp__JobSpec, Lmp__JobInfo */

struct lmp_launch_opts {
    const char *bind;                 /* default "tcp://127.0.0.1:*" (a free loopback port) */
    const char *state_dir;            /* coordinator --state; NULL = none; borrowed until stop */
    int         n_workers;            /* in-process worker threads (0 = none: remote only) */
    int         worker_threads;       /* cores each worker advertises and uses (0 = all) */
    const char *worker_name;          /* "NAME-<i>" (default "local") */
    uint32_t    heartbeat_timeout_ms; /* 0 = the coordinator's default */
    const struct lmp_curve_server *curve;        /* the coordinator's CURVE keys (borrowed during
                                                    start); NULL = none (then bind must be local) */
    const struct lmp_curve_client *worker_curve; /* the in-process workers' CURVE keys,
                                             borrowed until stop; NULL = none */
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

/* The IPv4 address other hosts reach this one at, as text ("10.1.2.3"), for a
 * coordinator serving workers on several hosts: the first non-loopback IPv4 address
 * the host name resolves to, else the first non-loopback IPv4 address of an interface
 * that is up (Debian maps the host name to 127.0.1.1 in /etc/hosts, so the first rule
 * alone often finds nothing). RET LMP_OK, LMP_ENOENT (no such address). */
enum lmp_status lmp_launch_host_address(char *addr, size_t n, struct lmp_err *err);

/* The bind endpoint "tcp://IPV4:PORT" for spec "ADDR[:PORT]": ADDR an IPv4 address, an
 * interface name (its first IPv4 address) or a host name (resolved, IPv4); PORT a number
 * (default "*": a free port). NULL or "" = lmp_launch_host_address. *loopback tells
 * whether the address is in 127.0.0.0/8. RET LMP_OK, LMP_EINVAL (a wildcard, IPv6, a bad
 * port, an unknown name: the message says which), LMP_ENOENT (no address found). */
enum lmp_status lmp_launch_bind_endpoint(const char *spec, char *endpoint, size_t n, bool *loopback,
                                         struct lmp_err *err);

/* Submit spec; *job_id and *n_tasks (may be NULL) from the JobAccepted.
 * RET LMP_OK; the coordinator's refusal (its code and message), LMP_EIO (no answer). */
enum lmp_status lmp_launch_submit(struct lmp_client *cl, const Lmp__JobSpec *spec, uint64_t *job_id,
                                  uint32_t *n_tasks, struct lmp_err *err);

/* Called with every status poll (with layers) and with the final one. */
typedef void lmp_launch_status_fn(void *ctx, const Lmp__JobInfo *job);

/* Poll job_id every poll_ms until it is done, failed or cancelled, or *stop is set
 * (stop may be NULL). *state = the last state seen. RET LMP_OK (the job ended, whatever
 * its state), LMP_ECANCEL (*stop was set first), LMP_EIO (the coordinator stopped
 * answering), LMP_EPROTO (the job vanished). */
enum lmp_status lmp_launch_follow(struct lmp_client *cl, uint64_t job_id, int poll_ms,
                                  volatile sig_atomic_t *stop, lmp_launch_status_fn *cb, void *ctx,
                                  Lmp__JobState *state, struct lmp_err *err);

#endif /* LMP_CLI_LAUNCH_H */
