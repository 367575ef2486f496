/*  coord_internal - the coordinator's state, shared by its translation units
 *
 *  coord.c owns the loop, planning, dispatch and results; coord_status.c answers
 *  JobQuery / WorkerQuery from this state. Not a public interface: only coordinator/coord*.c
 *  include it. One thread, the loop's, owns a struct lmp_coord (see coord.h): the
 *  background thread (bg.h) runs items that carry what they need (a spec to plan; a job's
 *  model and artifact to read back or finalize, marked by job.bg_busy / job.finalizing,
 *  which the loop then leaves alone) and never touches this state.
 */
#ifndef LMP_COORDINATOR_COORD_INTERNAL_H
#define LMP_COORDINATOR_COORD_INTERNAL_H

#include "coordinator/coord.h"
#include "coordinator/bg.h"       /* defines: struct lmp_bg */
#include "coordinator/sched.h"    /* defines: struct lmp_sched_* */
#include "artifact/artifact.h"    /* defines: struct lmp_artifact, struct lmp_art_job */
#include "coordinator/compress.h" /* defines: struct lmp_compress_spec */
#include "artifact/events.h"      /* defines: LMP_EVENT_* (coord_event kinds) */
#include "proto/zsock.h"          /* defines: struct lmp_zpeer, Lmp__* */
#include "worker/calib.h"         /* defines: struct lmp_calib, LMP_INPUT_COUNT */
#include "model/transformer.h"    /* defines: struct lmp_transformer */

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

/* The peer table: workers and clients have separate capacities, so clients can never lock
 * workers out. A worker slot (alive, or declared gone and kept for status) is reused by
 * a new worker once MAX_WORKERS are taken; a client slot is freed when the client has
 * been silent for CLIENT_IDLE_MS, or taken from the longest-silent client when
 * MAX_CLIENTS are in use (docs/cli.md "Limits"). */
enum { MAX_WORKERS = 256, MAX_CLIENTS = 64, MAX_PEERS = MAX_WORKERS + MAX_CLIENTS };
enum { CLIENT_IDLE_MS = 60000 };

static inline uint64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static inline uint64_t unix_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* H of one block's four inputs, shared by its tasks. */
struct blockh {
    int    refs;
    float *h[LMP_INPUT_COUNT]; /* (n_in, n_in) each; NULL once it is in the spool */
    /* an H bigger than the inline limit (proto/blobfile.h) goes to the job's spool, and its
     * tasks get a reference: the file (removed with the blockh), its size and XXH64 */
    char    *path[LMP_INPUT_COUNT];
    uint64_t len[LMP_INPUT_COUNT], xxh[LMP_INPUT_COUNT];
    bool     writing; /* coord.c BG_HWRITE: being written there; its tasks wait */
};

/* A calibration slice (TASK_KIND_CALIBRATE): sequences [begin, end) of the job's tokens,
 * walked through the original model by a worker that keeps its activations. */
struct cslice {
    int64_t  begin, end;
    int32_t  next_b; /* next block whose sums it owes; -1 = none left */
    int      worker; /* peer computing it, -1 */
    int      owner;  /* peer believed to hold its activations, -1 = none */
    int32_t  pos;    /* sequential mode: the owner holds the input of this block */
    uint32_t attempt, n_failures;
    bool     loading; /* its result is being read from the spool (BG_LOAD): worker stays set */
};

/* One block's sums in the making: slice sums added in slice order (worker/calib.h). */
/* One slice's four f64 sums (n_in, n_in) for a block, owned. */
struct cal_sums {
    double *g[LMP_INPUT_COUNT];
    int64_t n_tok;
};

/* A block being calibrated: its slices' sums are added in slice order on the background
 * thread (coord.c cal_pump), one add at a time, which holds acc meanwhile. */
struct cblock {
    struct lmp_calib_grams *acc;        /* NULL while an add runs (adding) */
    int64_t                 next_slice; /* slices below this one are added or being added */
    struct cal_sums       **held;       /* (n_slices) arrived and not yet added */
    bool                    adding;
};

struct rtask; /* coord.c: a layer running as row shards */

/* A PV-Tuning job (JobSpec.tune): one gang of data-parallel ranks at a time, each on its
 * own worker (TASK_KIND_TUNE, task id LMP_TUNE_TASK_BASE + rank); the coordinator adds
 * their gradient sums (RowsPartial / RowsSum) and keeps rank 0's progress. A rank lost
 * stops the gang; the next gang (as many ranks as there are workers then, up to the
 * replicas asked for) resumes from the checkpoint rank 0 wrote. */
enum { MAX_TUNE_RANKS = 64 };
struct tstate {
    uint32_t replicas;    /* ranks wanted (>= 1): replicas x stages */
    uint32_t stages;      /* pipeline stages per chain wanted (>= 1) */
    uint32_t attempt;     /* the gang's attempt on the wire: base + gangs started so far */
    uint32_t base;        /* random per coordinator process (x 65536), so that a rank of a
                             gang of an earlier coordinator (the same job id after a restart
                             from --state) is never taken for one of this coordinator's */
    uint32_t  n_failures; /* gangs ended by a failure */
    int       n;          /* ranks of the gang running; 0 = none */
    bool      failed;     /* the gang running has counted its failure */
    int       worker[MAX_TUNE_RANKS]; /* peer of each rank while it runs, -1 = ended */
    bool      done[MAX_TUNE_RANKS];   /* its result is in */
    uint64_t  wait_until;             /* mono ms: wait for `replicas` idle workers until then */
    uint64_t  step;                   /* sums completed this gang */
    int64_t   n_part;                 /* length of the sum being collected, 0 = none in */
    bool      is_int;                 /* ... int64 (ipart) or double (part) */
    bool      in[MAX_TUNE_RANKS];     /* ... whose part is in */
    uint64_t *isum;                   /* ... the int64 sum so far (wrapping: exact) */
    double   *dpart[MAX_TUNE_RANKS];  /* ... the double parts (added in rank order) */
    /* rank 0's latest step (TaskProgress) and its result */
    uint64_t p_step, p_n_steps, codes_changed;
    double   kl, agree, tok_s;
    double   val_kl_before, val_kl_after, seconds;
};

struct task {
    int64_t                  lin; /* index into the model's linears */
    const struct lmp_linear *l;
    Lmp__TaskState           state;
    uint32_t                 attempt; /* assignments so far */
    uint32_t                 n_failures;
    int                      worker; /* peer index while running, else -1 */
    char                     worker_name[128];
    struct blockh           *h; /* set once the block is calibrated (AQLM) */
    double                   seconds, rel_before, rel_after, progress_s;
    uint32_t      step, n_steps; /* coord_log.c: latest TaskProgress, of attempt progress_attempt */
    double        loss, rel_err;
    uint32_t      progress_attempt;
    uint64_t      event_ms; /* coord_log.c: ms (monotonic) of its last progress event */
    struct rtask *rows;     /* TASK_KIND_QUANTIZE_ROWS shards while running, else NULL;
                               worker is then shard 0's peer */
};

/* For a worker, id.name is its Hello name (unique among live workers: coord.c on_hello),
 * not its routing id, so that every message names it as its operator does. */
struct peer {
    bool             used, dead;
    struct lmp_zpeer id;
    enum lmp_peer    role;
    uint64_t         last_seen, last_hb_unix;
    int              task;       /* task index, -1 = idle */
    int              cal;        /* calibration slice running, -1 = none */
    bool             ft;         /* coord.c: running the job's block fine-tuning task */
    bool             cancelling; /* a TaskCancel is outstanding */
    uint64_t         read_token; /* coord.c: its task waits for a read-back (the item's
                                    token), not sent yet; 0 = none */
    uint64_t busy_until;         /* ms (monotonic): refused a task as busy, none before then */
    uint64_t unsent_task;        /* coord.c: wire id of a TaskAssign that could not be sent
                                    (its lease is given up on the next timer), 0 = none */
    uint32_t unsent_attempt;     /* and its attempt */
    int      tune_rank;          /* coord.c: the rank of the job's tuning it runs, -1 = none */
    uint64_t sent_task;          /* coord.c: wire id of the last TaskAssign sent, 0 = none */
    uint32_t sent_attempt;       /* and its attempt */
    uint64_t run_seen_ms;        /* ms (monotonic): it went out, or a Heartbeat last listed it */
    uint32_t run_missed;         /* Heartbeats since then that did not list it */
    uint32_t cores;
    uint64_t memory;
    uint32_t pid; /* a worker's process id on host (Capabilities.pid), 0 = not given */
    char     host[128], kernels[64];
    char     device[16]; /* Hello's Capabilities.device: "cpu", "cuda:N" (checked by wire.c) */
    uint32_t n_done, n_failed;
    double   busy_s, params_done;
};

struct job {
    uint64_t                 id;
    Lmp__JobSpec            *spec; /* owned copy (lmp__job_spec__unpack) */
    Lmp__JobState            state;
    char                     error[256];
    enum lmp_status          error_st; /* the failure's kind (status, last.pb); 0 = none given */
    struct lmp_compress_spec cspec;
    struct lmp_model        *m;
    struct lmp_transformer  *tf;
    struct lmp_calib        *cal;
    struct lmp_calib_grams  *grams;
    struct lmp_artifact     *a;
    struct lmp_art_job       aj;
    int32_t                 *tokens;
    bool                    *quantized; /* (n_linears) */
    struct task             *tasks;
    int64_t                  n_tasks, n_done, n_failed;
    int32_t                  next_block; /* next block to calibrate */
    struct cslice           *slices;     /* (n_slices) distributed calibration */
    int64_t                  n_slices, n_seq, ctx;
    struct cblock          **cblocks; /* (n_layers) blocks being summed */
    char           *spool; /* payloads too big for a frame: "<out_path>.spool" (coord.c spool_*) */
    struct ftstate *ft;    /* coord.c: block fine-tuning (sequential --finetune), NULL = off */
    bool           *need_block; /* (n_layers) has tasks waiting for its H */
    int             n_open;     /* blocks being summed or with H alive */
    uint64_t        submitted_ms, started_ms, finished_ms, started_mono;
    double          params_total, params_done_run;
    double          sec_calib, sec_quant, sec_ft; /* worker-seconds of accepted results, this run */
    int             bg_busy;      /* coord.c: background items using a, m in flight; while > 0
                                     the loop neither closes a nor frees m */
    bool finalizing;              /* coord.c: the artifact is being finalized (background);
                                     no events are appended to it meanwhile */
    struct tstate          *tune; /* a PV-Tuning job (JobSpec.tune), else NULL */
    struct lmp_sched_task  *sched_tasks;  /* coord.c: (n_tasks) the scheduler's view */
    struct lmp_sched_slice *sched_slices; /* (n_slices) */
};

/* coord.c: a job being planned on the background thread (JobSubmit, or a resume from the
 * state directory). Status shows it as QUEUED. */
struct coord_plan {
    uint64_t         id;
    Lmp__JobSpec    *spec; /* owned copy; the planner reads it until it is done */
    uint64_t         submitted_ms;
    struct lmp_zpeer from; /* the submitter, answered once planned or at reply_by */
    uint64_t         seq, reply_by;
    bool             replied; /* JobAccepted sent (or a resume: nobody to answer) */
    bool             resume;
    bool             cancelled; /* JobCancel while planning: ends cancelled when planned */
    char             reason[256];
};

struct lmp_coord {
    struct lmp_coord_opts o;
    char                  endpoint[256];
    void                 *zctx, *sock;
    struct lmp_zauth     *zauth; /* ZAP handler thread (proto/zauth.h), NULL without CURVE */
    struct coord_log     *log;   /* coord_log.c: ring of log lines and events, LogQuery */
    uint64_t              seq;
    struct peer           peers[MAX_PEERS];
    struct job           *job;
    uint64_t              next_job_id;
    struct coord_plan    *plan;            /* the job being planned, NULL */
    struct lmp_bg        *bg;              /* coordinator/bg.h: planning, read-back, finalize */
    uint64_t              next_read_token; /* coord.c: peer.read_token of the last read-back */
    struct lmp_sched_peer sched_peers[MAX_PEERS]; /* coord.c: the scheduler's view of peers */
};

/* coord.c: send an envelope to a peer (seq assigned here; failures are logged). */
bool coord_send(struct lmp_coord *c, const struct lmp_zpeer *to, Lmp__Envelope *env);
void coord_send_error(struct lmp_coord *c, const struct lmp_zpeer *to, uint64_t reply_to,
                      enum lmp_status code, const char *msg);

/* coord_status.c: JobStatus (job_id 0 = the current job) and WorkerList replies. */
void coord_reply_status(struct lmp_coord *c, const struct lmp_zpeer *to, uint64_t reply_to,
                        uint64_t job_id, bool with_layers, bool with_workers);
void coord_reply_workers(struct lmp_coord *c, const struct lmp_zpeer *to, uint64_t reply_to,
                         bool with_dead);

/* coord_log.c: an event of the job (kinds: artifact/events.h LMP_EVENT_*): logged
 * (debug level: the callers keep their own log lines), kept in a bounded ring that
 * LogQuery reads, and appended to the job's artifact (ART.h5.parts/events.log), so a
 * crash does not lose it. coord_event: task >= 0 names the layer and its worker;
 * coord_peer_event: pi >= 0 names a worker (and its task, if any). Never fails. */
void coord_event(struct lmp_coord *c, int level, const char *kind, int task, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
void coord_peer_event(struct lmp_coord *c, int level, const char *kind, int pi, const char *fmt,
                      ...) __attribute__((format(printf, 5, 6)));
/* A TaskProgress from peer pi: kept as the task's latest step/loss/rel_err (status),
 * "started" on the first one, a "progress" event at most every 10 s. */
void coord_on_progress(struct lmp_coord *c, int pi, const Lmp__TaskProgress *tp);
/* coord.c, block fine-tuning (sequential --finetune): task ti's quantized result held for
 * its block's tuning, or NULL; *tuner = the peer tuning that block now, or -1 (waiting). */
const struct lmp_compress_result *coord_ft_held(const struct job *J, int64_t ti, int *tuner);
/* The block being tuned or ready to be, -1 = none (or no fine-tuning). */
int32_t coord_ft_block(const struct job *J);
/* LogQuery -> LogChunk from the ring. */
void coord_reply_logs(struct lmp_coord *c, const struct lmp_zpeer *to, uint64_t reply_to,
                      const Lmp__LogQuery *q);
void coord_log_free(struct lmp_coord *c);

#endif /* LMP_COORDINATOR_COORD_INTERNAL_H */
