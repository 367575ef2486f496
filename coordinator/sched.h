/*  sched - the coordinator's scheduling decisions: which work goes to which idle worker
 *
 *  Pure functions of plain arrays, so that every rule can be pinned down by a table-driven
 *  test without sockets (tests/unit/test_sched.c): coord.c takes a snapshot of its task
 *  table, calibration slices and peers (struct lmp_sched) for each idle worker, asks
 *  lmp_sched_decide, and carries the decision out. The rules (docs/architecture.md,
 *  "Processes"): a waiting block fine-tuning first (on the worker holding its activations
 *  if that one is free); then a calibration slice of the earliest block still being
 *  calibrated; then the biggest ready quantization task that no measurably faster busy
 *  worker would finish sooner (row shards over the idle workers when asked for); then
 *  slices of later blocks; then recomputing a busy worker's slice.
 */
#ifndef LMP_COORDINATOR_SCHED_H
#define LMP_COORDINATOR_SCHED_H

#include <stdbool.h>
#include <stdint.h>

enum { LMP_SCHED_MAX_SHARDS = 64 }; /* row shards of one layer at most */

/* A quantization task (one linear). */
struct lmp_sched_task {
    bool    ready;      /* pending and its H is in (RTN: no H needed) */
    bool    has_h;      /* its H is in (row shards need one) */
    double  size;       /* weights: n_out * n_in */
    int64_t n_out;      /* rows */
    double  progress_s; /* running: seconds its attempt has been at it (TaskProgress) */
};

/* A calibration slice (a range of the calibration sequences). */
struct lmp_sched_slice {
    int32_t next_b; /* the next block whose sums it owes, -1 = none */
    bool    ready;  /* may compute next_b now (not running, inside the window, sequential:
                       the blocks before it final) */
    int owner;      /* peer believed to hold its activations, -1 = none */
};

/* A peer slot (index = the coordinator's peer index). */
struct lmp_sched_peer {
    bool connected;     /* in use and not declared gone */
    bool worker;        /* a worker (not a CLI) */
    bool idle;          /* a connected worker with nothing running, no cancel outstanding and
                           no busy refusal in force */
    bool   calibrating; /* running a calibration slice */
    int    task;        /* the quantization task it runs (index), -1 = none */
    double busy_s, params_done; /* accepted quantization work: seconds, weights */
};

struct lmp_sched {
    const struct lmp_sched_task  *tasks;
    int64_t                       n_tasks;
    const struct lmp_sched_slice *slices;
    int64_t                       n_slices;
    const struct lmp_sched_peer  *peers;
    int                           n_peers;
    bool ft_waiting; /* a block is ready for its fine-tuning and nobody runs it */
    int  ft_owner;   /* the peer holding the fine-tuning's activations, -1 */
    bool aqlm;       /* AQLM (row shards possible); false: RTN */
    int  row_shards; /* shards wanted per layer: JobSpec.row_shards, or LMP_SCHED_MAX_SHARDS
                        in sequential mode, 0 = whole layers */
};

enum lmp_sched_kind {
    LMP_SCHED_NONE,     /* nothing for this worker now */
    LMP_SCHED_FINETUNE, /* the waiting block's fine-tuning */
    LMP_SCHED_SLICE,    /* calibration slice `index` */
    LMP_SCHED_TASK,     /* task `index`, whole */
    LMP_SCHED_ROWS,     /* task `index` as n row shards on peers[0..n) (peers[0] = the worker) */
};

struct lmp_sched_pick {
    enum lmp_sched_kind kind;
    int                 index;
    int                 n;
    int                 peers[LMP_SCHED_MAX_SHARDS];
};

/* Measured throughput of a worker, weights quantized per second (0 = not measured yet). */
double lmp_sched_rate(const struct lmp_sched_peer *p);

/* What idle worker pi does next. */
void lmp_sched_decide(const struct lmp_sched *s, int pi, struct lmp_sched_pick *out);

/* The ready task for worker pi: the biggest first, except one that a worker faster by more
 * than 20%, busy now, would still finish sooner when there are no more tasks of that size
 * than such workers; then the next smaller size. -1: none. */
int lmp_sched_pick_task(const struct lmp_sched *s, int pi);

/* A ready slice for worker pi, lowest block first (held by pi preferred). pass 0: of the
 * earliest block a slice owes, held by pi or by nobody (or a gone peer); 1: the same at any
 * block; 2: one held by another worker that is busy (recomputed here). -1: none. */
int lmp_sched_pick_slice(const struct lmp_sched *s, int pi, int pass);

/* Task ti on idle worker pi as row shards: fills pis with pi and up to row_shards - 1 more
 * idle workers and returns their count (>= 2); 0: run it whole (no row shards asked for, no
 * H, RTN, or one live worker); -1: wait for a second idle worker. */
int lmp_sched_split(const struct lmp_sched *s, int pi, int ti, int *pis);

/* Row-shard weights from the workers' rates (n > 0): a rate <= 0 (not measured) counts as
 * the mean of the measured ones, or 1 when none is. */
void lmp_sched_shard_weights(const double *rate, int n, double *weight);

#endif /* LMP_COORDINATOR_SCHED_H */
