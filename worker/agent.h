/*  agent - the worker process: connects to the coordinator, runs the tasks it is given
 *
 *  One DEALER socket, owned by the calling (main) thread, which says Hello (with the
 *  node's capabilities), sends a Heartbeat every heartbeat_ms (as told by HelloAck) and a
 *  TaskProgress for the running task, and answers TaskAssign / TaskCancel / Shutdown.
 *  The task itself (TASK_KIND_QUANTIZE_LAYER: lmp_compress_linear on one linear; the other
 *  kinds below) runs in
 *  a compute thread, which reports back through a pipe, so heartbeats keep flowing
 *  during a long codebook search. One task at a time.
 *
 *  What a task needs: the worker opens the model itself (model_path, mmapped once and
 *  kept for the next task of the same model) and reads only the weight rows of its
 *  linear; H comes inline in the TaskAssign (Blob "gram", f32 (n_in, n_in)), summed by
 *  the coordinator from the workers' calibration slices.
 *
 *  TASK_KIND_CALIBRATE {layer_index b, rows [s0, s1), Blob "tokens" i32 (s1 - s0, ctx)}:
 *  the slice's Gram sums of block b of the original model (worker/calib.h: the slice's
 *  own sum S_k, chunked from its first sequence), returned as four f64 (n_in, n_in)
 *  tensors "gram0".."gram3" (enum lmp_input order). The worker keeps the slice's
 *  activations (up to 32 slices, least recently used dropped), so the next task of the
 *  slice advances from block b + 1 instead of starting from the embedding; a slice it
 *  does not hold (another worker died, or it was dropped) is recomputed from the tokens.
 *
 *  In sequential mode a CALIBRATE task also carries the quantized blocks the slice must pass
 *  (Blob "qfrom" and q/<layer>/codes|codebooks|scales, q/<norm tensor>): the worker installs
 *  their decoded weights, advances, restores the originals, and keeps the input (not the output)
 *  of the block it collected, until the next task ships that block quantized.
 *
 *  TASK_KIND_QUANTIZE_ROWS {layer, rows [r0, r1), Blob "gram"}: lmp_aq_quantize_rows on those
 *  rows; each sum of the optimisation goes out as RowsPartial and comes back as RowsSum (the
 *  compute thread posts its part and waits, the main thread sends it, a pipe wakes the main
 *  thread); a TaskCancel, hand-back or stop wakes a waiting compute thread, which ends the task.
 *
 *  TASK_KIND_FINETUNE_BLOCK {block b, Blob "tokens" (every sequence), "qfrom", q/..., the
 *  block's quantized layers as ft/<layer>/codes|codebooks|scales, FinetuneSpec}: every sequence
 *  advanced through the shipped blocks (sequential mode; without "qfrom", independent mode,
 *  through the original blocks), kept between tasks like a slice, b's original output as the
 *  target, lmp_finetune_block with the FinetuneSpec's settings and the block's seed; the result
 *  is the tuned ft/<layer>/codebooks|scales and attn_norm, ffn_norm.
 *
 *  TASK_KIND_TUNE {TuneSpec, rank r of ranks R, model_path = the original model, out_dir = the
 *  tuned artifact's path}: one data-parallel replica of a PV-Tuning job, run by the caller's
 *  lmp_agent_opts.tune (the tuning reads and writes artifacts, a layer above this one; the
 *  CLI gives coordinator/tune.h's job). Its exact int64 gradient sums (worker/tune.h struct
 *  lmp_tune_comm) go out in chunks as RowsPartial.ipart and come back as RowsSum.isum, like a
 *  row shard's; TaskProgress carries each step (KL as loss, agreement as rel_err, tokens/s,
 *  codes changed). A worker whose session with the coordinator is new (a restarted
 *  coordinator) stops such a task: nobody is summing for it any more.
 *
 *  Cancel: every task has its own cancel flag (an atomic_int), which the stages poll
 *  together with the process's stop (base/cancel.h: lmp_aq_opts.cancel, lmp_ft_opts.cancel,
 *  lmp_calib_set_cancel) between units of work of well under a second. The main thread sets
 *  it on TaskCancel (the task then ends with Error{ECANCEL}), on a hand-back (a new Hello)
 *  and on stop, so the worker is free again within about a second instead of running the
 *  task to its end.
 *
 *  Stop (*stop set, e.g. by SIGTERM): a running task is handed back (TaskHandback) at
 *  once, so the coordinator reassigns it; its cancel flag is set, the agent waits for its
 *  compute thread to end and returns LMP_OK. A silent coordinator (no message for
 *  heartbeat_timeout_ms) is greeted again with Hello, so a restarted coordinator finds its
 *  workers back.
 *
 *  Name: the worker's name goes in Hello (with its host and pid in Capabilities); its
 *  ZeroMQ routing id is "<name>.<pid>.<random hex>", one per agent, so that a second worker
 *  given a name in use is heard and refused by name (Error{EBUSY} naming the holder's host
 *  and pid) rather than dropped by ZeroMQ, and a worker replacing one that is gone joins.
 *
 *  Fault injection (tests): LMP_FAULT_TASK_SLEEP_MS=<ms> makes every task sleep that long
 *  before it computes, so that a kill or a cancel reliably lands mid-task;
 *  LMP_FAULT_ROUND_SLEEP_MS=<ms> after each AQ round and fine-tuning step. Both sleeps end
 *  early when the task is cancelled.
 */
#ifndef LMP_WORKER_AGENT_H
#define LMP_WORKER_AGENT_H

#include <signal.h>
#include <stdint.h>

#include "proto/lmpress.pb-c.h" /* defines: Lmp__MethodSpec */
#include "proto/keys.h"         /* defines: struct lmp_curve_client */
#include "base/status.h"        /* defines: enum lmp_status, struct lmp_err */
#include "worker/compress.h"    /* defines: struct lmp_compress_spec */
#include "worker/tune.h"        /* defines: struct lmp_tune_comm, struct lmp_tune_step_stats */

#include <stdatomic.h>

/* What a TASK_KIND_TUNE rank reports at its end (TaskStats: steps, seconds, loss = the
 * held-out KL after, rel_err_before / rel_err_after = the held-out KL before / after). */
struct lmp_agent_tune_out {
    int64_t steps_done;
    double  val_kl_before, val_kl_after, seconds;
};

/* Runs rank ta->rank of ta->ranks of the tuning job ta->tune (comm: the other ranks, NULL
 * when alone), polling cancel, calling progress after each step. RET as
 * lmp_tune_job_run (LMP_ECANCEL: stopped, the state checkpointed by rank 0). */
typedef enum lmp_status lmp_agent_tune_fn(
    void *ctx, const Lmp__TaskAssign *ta, const struct lmp_tune_comm *comm,
    const atomic_int *cancel,
    void (*progress)(void *pctx, const struct lmp_tune_step_stats *s, int64_t n_steps), void *pctx,
    struct lmp_agent_tune_out *out, struct lmp_err *err);

struct lmp_agent_opts {
    const char *endpoint;                 /* "tcp://127.0.0.1:7000" */
    const char *name;                     /* the worker's name; NULL = "<host>-<pid>" */
    int         n_threads;                /* advertised cores (0 = all online) */
    int         connect_timeout_ms;       /* HelloAck must come within this (default 10000) */
    const struct lmp_curve_client *curve; /* CURVE keys (proto/keys.h), NULL = none */
    lmp_agent_tune_fn             *tune;  /* TASK_KIND_TUNE; NULL: refused (EUNSUP) */
    void                          *tune_ctx;
    /* "cpu", "cuda:N", "auto" (kernels/device.h); NULL: $LMPRESS_DEVICE if set, else "cpu".
     * Reported in the Hello (Capabilities.device). Tests only: $LMP_FAKE_DEVICE=cuda:N
     * reports that device without a GPU, and the tasks compute on the CPU (docs/gpu.md). */
    const char *device;
};

void lmp_agent_opts_init(struct lmp_agent_opts *o);

/* Run the worker until *stop is set, the coordinator sends Shutdown, or it refuses this
 * worker. RET LMP_OK; LMP_ENODEV / LMP_EINVAL (the device cannot be used / is not a device
 * name: nothing was sent); LMP_EIO (no HelloAck within the timeout: "cannot reach ..."),
 * LMP_EVERSION (refused: another protocol version), LMP_EPERM (refused: the key is not
 * authorized, or not a worker's key), LMP_EBUSY (refused for now: a live worker of this
 * name is connected, or the coordinator has all the workers it takes; the message names
 * which), another code the coordinator refused the Hello with, LMP_ENOMEM. */
enum lmp_status lmp_agent_run(const struct lmp_agent_opts *o, volatile sig_atomic_t *stop,
                              struct lmp_err *err);

/* The compression settings of a MethodSpec (0 / empty fields = the defaults of
 * lmp_compress_spec_init, as `lmpress compress` without that option).
 * RET LMP_OK or LMP_EINVAL (unknown method, bad scheme, bits/group out of range). */
enum lmp_status lmp_agent_method_spec(const Lmp__MethodSpec *m, struct lmp_compress_spec *spec,
                                      struct lmp_err *err);

#endif /* LMP_WORKER_AGENT_H */
