/*  lease - one shape for the work a worker holds
 *
 *  Whatever a worker runs for the coordinator (a layer, a row shard of a layer, a
 *  calibration slice, a block's fine-tuning; next: global fine-tuning steps, GPU work) is a
 *  lease: its kind, the id of the work within its kind, the peer holding it, the attempt
 *  (assignments so far; a result or report of another attempt is stale) and a deadline.
 *  coord.c keeps one handler table per kind (what it is called in logs, the id it has on
 *  the wire, which error codes count as the work's failure, and what happens when the
 *  lease is lost), so that a worker gone, a worker reconnecting, a hand-back, a
 *  cancellation and an Error all end a lease the same way, whatever its kind.
 */
#ifndef LMP_COORDINATOR_LEASE_H
#define LMP_COORDINATOR_LEASE_H

#include <stdint.h>

enum lmp_lease_kind {
    LMP_LEASE_NONE,
    LMP_LEASE_LAYER,    /* TASK_KIND_QUANTIZE_LAYER: id = task index */
    LMP_LEASE_ROWS,     /* TASK_KIND_QUANTIZE_ROWS: id = task index (one shard of it) */
    LMP_LEASE_SLICE,    /* TASK_KIND_CALIBRATE: id = slice index */
    LMP_LEASE_FINETUNE, /* TASK_KIND_FINETUNE_BLOCK: id = block */
    LMP_LEASE_TUNE,     /* TASK_KIND_TUNE: id = rank */
    LMP_LEASE_KIND_COUNT
};

struct lmp_lease {
    enum lmp_lease_kind kind;
    int64_t             id;
    int                 peer; /* the coordinator's peer index */
    uint32_t            attempt;
    uint64_t            deadline_ms; /* monotonic; 0 = none (liveness is the heartbeat) */
};

#endif /* LMP_COORDINATOR_LEASE_H */
