/*  coord - the coordinator daemon: one loop thread, one zmq_poll loop, one ROUTER socket
 *
 *  Peers (workers and CLI invocations) connect DEALER sockets and say Hello first
 *  (docs/protocol.md). The coordinator runs one job at a time, in INDEPENDENT mode:
 *
 *    submit   JobSubmit -> planned on the background thread (coordinator/bg.h; the job is
 *             QUEUED meanwhile): open the model, tokenize the calibration text,
 *             describe the job (coordinator/plan.h), open (or resume) the artifact;
 *             one task per quantized linear, those already committed are done at
 *             once. The submitter gets JobAccepted (or the refusal) when planned, or
 *             JobAccepted after 2 s, a later failure then showing as the job FAILED.
 *    calib    the calibration sequences are cut into slices (worker/calib.h, at most 8);
 *             a TASK_KIND_CALIBRATE task {slice, block} runs on a worker, which keeps
 *             the slice's activations for its next block; the coordinator adds the
 *             slices' f64 sums in slice order (the bits of `lmpress compress`, whatever
 *             the number of workers) and a block's tasks become ready when its last
 *             slice is in. At most 3 blocks are summed or hold H at once; a block's H
 *             is freed when its tasks are done. A slice whose worker is gone is
 *             recomputed elsewhere from the tokens.
 *    dispatch coordinator/sched.h decides what each idle worker does next; TaskAssign
 *             {layer, method, model path, H inline} (sequential tasks: the committed
 *             blocks they pass, read back on the background thread first).
 *    results  TaskResult -> lmp_compress_result_to_layer -> lmp_artifact_commit_layer
 *             (durable) -> TaskResultAck. Every layer done: the unquantized tensors and
 *             finalize on the background thread, then job DONE.
 *    failure  Error from a worker, or a worker silent for heartbeat_timeout_ms (declared
 *             gone): the work (a lease, coordinator/lease.h) goes back to the queue; after
 *             max_attempts failures of one task the job FAILS with the last message.
 *             TaskHandback requeues without counting a failure.
 *    cancel   JobCancel: TaskCancel to busy workers, pending tasks cancelled, committed
 *             layers kept (a later submit of the same job resumes them).
 *    state    with a state directory, the running job's spec is kept in DIR/job.pb until
 *             the job ends, and a restarted coordinator plans it again in the background
 *             (the artifact resumes: committed layers are not redone).
 *
 *  Refusals never disturb the job: a garbage frame is logged and answered with
 *  Error{EPROTO}; another protocol version gets Error{EVERSION} and the peer is forgotten;
 *  a message before Hello or a body the peer's role may not send gets Error{EPROTO}.
 *
 *  Calling sequence:
 *      struct lmp_coord_opts o; lmp_coord_opts_init(&o); o.bind = "tcp://127.0.0.1:7000";
 *      st = lmp_coord_new(&o, &c, &err);
 *      st = lmp_coord_run(c, &stop_flag, &err);     // until *stop_flag is set
 *      lmp_coord_destroy(&c);
 *  Not thread-safe: one thread owns the object (tests run it in a thread of their own); its
 *  background thread (started by lmp_coord_new, joined by lmp_coord_destroy) never touches
 *  it (coord_internal.h).
 */
#ifndef LMP_COORDINATOR_COORD_H
#define LMP_COORDINATOR_COORD_H

#include <signal.h>
#include <stdint.h>
#include "base/status.h" /* defines: enum lmp_status, struct lmp_err */
#include "proto/keys.h"  /* defines: struct lmp_curve_server */

/* Task ids of a job (TaskAssign, TaskProgress, WorkerInfo.running_tasks): 1 + the layer's
 * index for a layer (or its row shards); LMP_CAL_TASK_BASE + slice for a calibration slice;
 * LMP_FT_TASK_BASE + block for a block's fine-tuning; LMP_TUNE_TASK_BASE + rank for a rank
 * of a PV-Tuning job. */
#define LMP_CAL_TASK_BASE  (UINT64_C(1) << 32)
#define LMP_FT_TASK_BASE   (UINT64_C(2) << 32)
#define LMP_TUNE_TASK_BASE (UINT64_C(3) << 32)

struct lmp_coord_opts {
    const char *bind;                 /* default "tcp://127.0.0.1:7070" */
    const char *state_dir;            /* NULL = no state kept */
    const char *name;                 /* default "coordinator" */
    uint32_t    heartbeat_ms;         /* workers' heartbeat interval (default 1000) */
    uint32_t    heartbeat_timeout_ms; /* silence after which a worker is gone (default 5000) */
    uint32_t    max_attempts;         /* failures of one task before the job fails (default 3) */
    const struct lmp_curve_server *curve; /* CURVE keys (proto/keys.h, borrowed during
                                             lmp_coord_new); NULL = none: then a bind beyond
                                             loopback is refused unless insecure */
    bool insecure;                        /* allow a non-loopback bind without CURVE */
};

void lmp_coord_opts_init(struct lmp_coord_opts *o);

struct lmp_coord;

/* Bind the socket and, with a state directory holding an unfinished job, resubmit it.
 * With o->curve, the socket is a CURVE server and a ZAP handler thread (proto/zauth.h)
 * admits only the listed keys. RET LMP_OK, LMP_EIO (cannot bind: the message names the
 * endpoint), LMP_EINVAL (a non-loopback bind without CURVE or insecure), LMP_ENOMEM. */
enum lmp_status lmp_coord_new(const struct lmp_coord_opts *o, struct lmp_coord **out,
                              struct lmp_err *err);

/* The endpoint actually bound (resolves "tcp://127.0.0.1:*"). */
const char *lmp_coord_endpoint(const struct lmp_coord *c);

/* Serve until *stop becomes non-zero. RET LMP_OK or LMP_EIO (socket failure). */
enum lmp_status lmp_coord_run(struct lmp_coord *c, volatile sig_atomic_t *stop,
                              struct lmp_err *err);

void lmp_coord_destroy(struct lmp_coord **c);

#endif /* LMP_COORDINATOR_COORD_H */
