/*  coord - see coord.h */
#define _GNU_SOURCE
#include "coordinator/coord_internal.h"
#include "coordinator/sched.h"       /* defines: lmp_sched_* */
#include "proto/payload.h"           /* defines: lmp_payload_name, lmp_payload_layer */
#include "coordinator/lease.h"       /* defines: struct lmp_lease */
#include "coordinator/plan.h"        /* defines: coord_plan_job */
#include "artifact/artifact.h"       /* defines: lmp_artifact_* */
#include "artifact/artifact_model.h" /* defines: lmp_art_tokenizer_source */
#include "coordinator/compress.h"    /* defines: lmp_compress_result_to_layer */
#include "artifact/fingerprint.h"    /* defines: lmp_fingerprint_calib */
#include "base/fault.h"              /* defines: lmp_fault_sleep */
#include "base/file.h"               /* defines: lmp_file_read_all */
#include "base/log.h"                /* defines: lmp_log_* */
#include "base/text.h"               /* defines: lmp_strfmt, lmp_str_escape */
#include "coordinator/job_check.h"   /* defines: lmp_job_spec_check */
#include "proto/zauth.h"             /* defines: lmp_zauth_* */
#include "proto/zsock.h"             /* defines: lmp_zsock_*, lmp_wire_* */
#include "proto/blobfile.h"          /* defines: lmp_blobfile_*, lmp_blob_inline_max */
#include "worker/agent.h"            /* defines: lmp_agent_method_spec */
#include "worker/calib.h"            /* defines: lmp_calib_* */
#include "model/tokenizer.h"         /* defines: lmp_tokenizer_open, lmp_tokenizer_encode */
#include "model/transformer.h"       /* defines: lmp_transformer_new */

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

void lmp_coord_opts_init(struct lmp_coord_opts *o) {
    assert(o);
    memset(o, 0, sizeof(*o));
    o->bind                 = "tcp://127.0.0.1:7070";
    o->name                 = "coordinator";
    o->heartbeat_ms         = 1000;
    o->heartbeat_timeout_ms = 5000;
    o->max_attempts         = 3;
}

/* ---- sending -------------------------------------------------------------------- */

static int find_peer(struct lmp_coord *c, const struct lmp_zpeer *p);

bool coord_send(struct lmp_coord *c, const struct lmp_zpeer *to, Lmp__Envelope *env) {
    struct lmp_err err = {0};
    env->seq           = ++c->seq;
    if (lmp_zsock_send(c->sock, to, env, NULL, &err) == LMP_OK) {
        /* the worker's heartbeats should list it from now on (lease_check_running) */
        const int pi = env->body_case == LMP__ENVELOPE__BODY_TASK_ASSIGN ? find_peer(c, to) : -1;
        if (pi >= 0) {
            struct peer *p  = &c->peers[pi];
            p->sent_task    = env->task_assign->task_id;
            p->sent_attempt = env->task_assign->attempt;
            p->run_seen_ms  = mono_ms();
            p->run_missed   = 0;
        }
        return true;
    }
    lmp_log_warn("coordinator: cannot send to '%s': %s", to->name, err.msg);
    /* A TaskAssign that did not go out leaves the worker idle while the job waits for its
     * result, for ever if the worker stays connected: its lease is given up on the next
     * timer (on_timer; not here, in the middle of an assignment) */
    const int pi = env->body_case == LMP__ENVELOPE__BODY_TASK_ASSIGN ? find_peer(c, to) : -1;
    if (pi >= 0) {
        c->peers[pi].unsent_task    = env->task_assign->task_id;
        c->peers[pi].unsent_attempt = env->task_assign->attempt;
    }
    return false;
}

void coord_send_error(struct lmp_coord *c, const struct lmp_zpeer *to, uint64_t reply_to,
                      enum lmp_status code, const char *msg) {
    Lmp__Envelope env;
    Lmp__Error    e;
    lmp_wire_error_init(&env, &e, 0, reply_to, code, msg);
    coord_send(c, to, &env);
}

/* ---- peers ---------------------------------------------------------------------- */

static int find_peer(struct lmp_coord *c, const struct lmp_zpeer *p) {
    for (int i = 0; i < MAX_PEERS; i++)
        if (c->peers[i].used && c->peers[i].id.id_len == p->id_len &&
            memcmp(c->peers[i].id.id, p->id, p->id_len) == 0)
            return i;
    return -1;
}

static void job_fail(struct lmp_coord *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Put a running task back in the queue; a failure counts towards max_attempts. */
static void requeue(struct lmp_coord *c, int ti, bool failure, const char *why) {
    struct job  *J = c->job;
    struct task *t = &J->tasks[ti];
    t->state       = LMP__TASK_STATE__TASK_STATE_PENDING;
    t->worker      = -1;
    coord_event(c, failure ? LMP_LOG_WARN : LMP_LOG_INFO, LMP_EVENT_REQUEUED, ti, "%s",
                why && why[0] ? why : "not a failure");
    if (!failure) return;
    t->n_failures++;
    if (t->n_failures >= c->o.max_attempts)
        job_fail(c, "layer '%s' failed %u times; last: %s", t->l->name, t->n_failures, why);
}

/* ---- a layer in row shards (TASK_KIND_QUANTIZE_ROWS) ------------------------------ */

enum { MAX_ROW_SHARDS = LMP_SCHED_MAX_SHARDS };

struct rshard {
    int     worker;
    int64_t r0, r1;
    double *part; /* its part of the sum being collected, NULL = not in */
    bool    done; /* its result is in */
};

struct rtask {
    int           n;
    struct rshard s[MAX_ROW_SHARDS];
    uint64_t      step;   /* sums completed */
    int64_t       n_part; /* length of the sum being collected (0 = none in yet) */
    double       *sum;
    uint16_t     *codes; /* (n_out, n_in/g, M) assembled */
    float        *scales, *cb;
    double        rel_before, rel_after, bpw, seconds;
    uint32_t      steps;
};

static void rows_free(struct task *t) {
    struct rtask *R = t->rows;
    if (R == NULL) return;
    for (int k = 0; k < R->n; k++) free(R->s[k].part);
    free(R->sum);
    free(R->codes);
    free(R->scales);
    free(R->cb);
    free(R);
    t->rows = NULL;
}

#define FT_TASK_BASE LMP_FT_TASK_BASE /* coord.h */

struct ftstate {
    struct lmp_compress_result *held; /* (n_tasks) quantized layers awaiting their block's tuning */
    bool                       *have; /* (n_tasks) */
    int32_t                     block;  /* block ready or being tuned, -1 = none */
    int                         worker; /* peer tuning it, -1 */
    int                         owner;  /* peer holding the full-set activations, -1 */
    int32_t                     pos;    /* ... at the input of this block */
    uint32_t                    attempt, n_failures;
};

static void job_finish_if_done(struct lmp_coord *c);

const struct lmp_compress_result *coord_ft_held(const struct job *J, int64_t ti, int *tuner) {
    const struct ftstate *F = J->ft;
    *tuner                  = -1;
    if (F == NULL || ti < 0 || ti >= J->n_tasks || !F->have[ti]) return NULL;
    if (F->block == J->tasks[ti].l->block) *tuner = F->worker;
    return &F->held[ti];
}

int32_t coord_ft_block(const struct job *J) {
    return J->ft ? J->ft->block : -1;
}

/* A TaskProgress of the block fine-tuning: the step and loss of every layer of the block. */
static void ft_progress(struct lmp_coord *c, int pi, const Lmp__TaskProgress *tp) {
    struct job     *J = c->job;
    struct ftstate *F = J->ft;
    if (tp->job_id != J->id || F->worker != pi || F->block < 0 ||
        tp->task_id != FT_TASK_BASE + (uint64_t)F->block || tp->attempt != F->attempt)
        return;
    for (int64_t i = 0; i < J->n_tasks; i++) {
        struct task *t = &J->tasks[i];
        if (t->l->block != F->block || !F->have[i]) continue;
        t->progress_attempt = t->attempt;
        t->step = tp->step, t->n_steps = tp->n_steps, t->loss = tp->loss, t->rel_err = tp->rel_err;
        t->progress_s = tp->elapsed_s;
    }
}

static void ft_free(struct job *J) {
    struct ftstate *F = J->ft;
    if (F == NULL) return;
    for (int64_t i = 0; i < J->n_tasks; i++)
        if (F->have[i]) lmp_aq_layer_release(&F->held[i].aq);
    free(F->held);
    free(F->have);
    free(F);
    J->ft = NULL;
}

static int rows_shard_of(const struct task *t, int pi) {
    for (int k = 0; t->rows && k < t->rows->n; k++)
        if (t->rows->s[k].worker == pi) return k;
    return -1;
}

/* The shards of task ti stop: the others still running are cancelled (they wait on a sum
 * that will not come), and the layer goes back to the queue (a failure if `failure`). */
static void rows_abort(struct lmp_coord *c, int ti, bool failure, const char *why) {
    struct job   *J = c->job;
    struct task  *t = &J->tasks[ti];
    struct rtask *R = t->rows;
    for (int k = 0; R && k < R->n; k++) {
        struct peer *q = &c->peers[R->s[k].worker];
        if (q->task != ti) continue;
        q->task = -1;
        if (R->s[k].done || q->dead || !q->used) continue;
        Lmp__Envelope   env;
        Lmp__TaskCancel tc = LMP__TASK_CANCEL__INIT;
        lmp_wire_init(&env, 0, 0);
        tc.job_id = J->id, tc.task_id = (uint64_t)ti + 1;
        tc.reason       = "a row shard of the layer was lost";
        env.body_case   = LMP__ENVELOPE__BODY_TASK_CANCEL;
        env.task_cancel = &tc;
        coord_send(c, &q->id, &env);
        q->cancelling = true;
    }
    rows_free(t);
    lmp_log_warn("coordinator: row shards of '%s' stopped (%s): layer requeued", t->l->name,
                 why && why[0] ? why : "not a failure");
    requeue(c, ti, failure, why);
}

/* Calibration task ids: CAL_TASK_BASE + slice (the attempt tells attempts apart). */
#define CAL_TASK_BASE LMP_CAL_TASK_BASE /* coord.h */
/* Blocks summed or holding H at once (bounds the coordinator's memory). */
enum { CAL_WINDOW = 3 };

/* A running calibration slice goes back to the queue; its activations are lost with the
 * worker that held them (owner cleared: anyone may recompute them). */
static void cal_requeue(struct lmp_coord *c, int si, bool failure, const char *why) {
    struct job    *J  = c->job;
    struct cslice *sl = &J->slices[si];
    if (sl->worker >= 0 && c->peers[sl->worker].cal == si) c->peers[sl->worker].cal = -1;
    sl->worker = -1;
    sl->owner  = -1;
    if (!failure) return;
    if (++sl->n_failures >= c->o.max_attempts)
        job_fail(c, "calibration of sequences [%lld, %lld) failed %u times; last: %s",
                 (long long)sl->begin, (long long)sl->end, sl->n_failures, why);
}

static void ft_lost(struct lmp_coord *c, bool failure, const char *why);

/* ---- leases: the work a worker holds, one shape for every kind (lease.h) ------------ */

static int ft_block_of(const struct job *J) {
    return J->ft ? J->ft->block : -1;
}

/* What worker pi holds now, from the task table, the slices and the fine-tuning state. */
static bool peer_lease(const struct lmp_coord *c, int pi, struct lmp_lease *L) {
    const struct peer *p = &c->peers[pi];
    const struct job  *J = c->job;
    *L                   = (struct lmp_lease){.kind = LMP_LEASE_NONE, .id = -1, .peer = pi};
    if (J == NULL) return false;
    if (J->tune && p->tune_rank >= 0 && p->tune_rank < J->tune->n &&
        J->tune->worker[p->tune_rank] == pi) {
        L->kind = LMP_LEASE_TUNE, L->id = p->tune_rank, L->attempt = J->tune->attempt;
    } else if (p->ft && J->ft && J->ft->worker == pi) {
        L->kind = LMP_LEASE_FINETUNE, L->id = ft_block_of(J), L->attempt = J->ft->attempt;
    } else if (p->cal >= 0 && J->slices && p->cal < J->n_slices && J->slices[p->cal].worker == pi) {
        L->kind = LMP_LEASE_SLICE, L->id = p->cal, L->attempt = J->slices[p->cal].attempt;
    } else if (p->task >= 0 && p->task < J->n_tasks) {
        const struct task *t = &J->tasks[p->task];
        if (t->rows && rows_shard_of(t, pi) >= 0)
            L->kind = LMP_LEASE_ROWS;
        else if (t->worker == pi)
            L->kind = LMP_LEASE_LAYER;
        L->id = p->task, L->attempt = t->attempt;
    }
    return L->kind != LMP_LEASE_NONE;
}

struct lease_ops {
    /* the task id on the wire */
    uint64_t (*wire_id)(const struct lmp_lease *L);
    /* the work, for log lines */
    void (*describe)(const struct lmp_coord *c, const struct lmp_lease *L, char *buf, size_t n);
    /* an Error with this code is the work's failure (counts towards --max-attempts) */
    bool (*fails)(enum lmp_status code);
    /* the lease ends without a result: the work goes back to be assigned again */
    void (*lost)(struct lmp_coord *c, const struct lmp_lease *L, bool failure, const char *why);
};

static uint64_t task_wire_id(const struct lmp_lease *L) {
    return (uint64_t)L->id + 1;
}
static uint64_t slice_wire_id(const struct lmp_lease *L) {
    return CAL_TASK_BASE + (uint64_t)L->id;
}
static uint64_t ft_wire_id(const struct lmp_lease *L) {
    return FT_TASK_BASE + (uint64_t)L->id;
}
static uint64_t tune_wire_id(const struct lmp_lease *L) {
    return LMP_TUNE_TASK_BASE + (uint64_t)L->id;
}
static void tune_describe(const struct lmp_coord *c, const struct lmp_lease *L, char *buf,
                          size_t n) {
    snprintf(buf, n, "PV-Tuning rank %lld of %d", (long long)L->id, c->job->tune->n);
}

static void layer_describe(const struct lmp_coord *c, const struct lmp_lease *L, char *buf,
                           size_t n) {
    snprintf(buf, n, "%s", c->job->tasks[L->id].l->name);
}
static void rows_describe(const struct lmp_coord *c, const struct lmp_lease *L, char *buf,
                          size_t n) {
    snprintf(buf, n, "a row shard of %s", c->job->tasks[L->id].l->name);
}
static void slice_describe(const struct lmp_coord *c, const struct lmp_lease *L, char *buf,
                           size_t n) {
    const struct cslice *sl = &c->job->slices[L->id];
    snprintf(buf, n, "calibration of sequences [%lld, %lld) block %d", (long long)sl->begin,
             (long long)sl->end, sl->next_b);
}
static void ft_describe(const struct lmp_coord *c, const struct lmp_lease *L, char *buf, size_t n) {
    (void)c;
    snprintf(buf, n, "fine-tuning of block %lld", (long long)L->id);
}

static bool fails_unless_busy(enum lmp_status code) {
    return code != LMP_EBUSY;
}
/* ENOENT: a sequential slice (or the tuning's sequences) the worker no longer holds; sent
 * again from block 0. ECANCEL: a tuning stopped on request. */
static bool slice_fails(enum lmp_status code) {
    return code != LMP_EBUSY && code != LMP_ENOENT;
}
static bool ft_fails(enum lmp_status code) {
    return code != LMP_EBUSY && code != LMP_ECANCEL && code != LMP_ENOENT;
}
static bool tune_fails(enum lmp_status code) {
    return code != LMP_EBUSY && code != LMP_ECANCEL;
}

static void layer_lost(struct lmp_coord *c, const struct lmp_lease *L, bool failure,
                       const char *why) {
    c->peers[L->peer].task = -1;
    requeue(c, (int)L->id, failure, why);
}
static void rows_lost(struct lmp_coord *c, const struct lmp_lease *L, bool failure,
                      const char *why) {
    c->peers[L->peer].task = -1;
    rows_abort(c, (int)L->id, failure, why); /* the other shards are cancelled */
}
static void slice_lost(struct lmp_coord *c, const struct lmp_lease *L, bool failure,
                       const char *why) {
    cal_requeue(c, (int)L->id, failure, why);
}
static void ft_lease_lost(struct lmp_coord *c, const struct lmp_lease *L, bool failure,
                          const char *why) {
    (void)L;
    ft_lost(c, failure, why);
}
static void tune_rank_lost(struct lmp_coord *c, const struct lmp_lease *L, bool failure,
                           const char *why);

static const struct lease_ops lease_ops[LMP_LEASE_KIND_COUNT] = {
    [LMP_LEASE_LAYER]    = {task_wire_id, layer_describe, fails_unless_busy, layer_lost},
    [LMP_LEASE_ROWS]     = {task_wire_id, rows_describe, fails_unless_busy, rows_lost},
    [LMP_LEASE_SLICE]    = {slice_wire_id, slice_describe, slice_fails, slice_lost},
    [LMP_LEASE_FINETUNE] = {ft_wire_id, ft_describe, ft_fails, ft_lease_lost},
    [LMP_LEASE_TUNE]     = {tune_wire_id, tune_describe, tune_fails, tune_rank_lost},
};

/* Lease L ends without a result, and not by its worker's failure (its TaskAssign was not
 * sent, or the worker does not run it): logged, an event naming the worker and the work,
 * and the work goes back to be assigned again. */
static void lease_give_up(struct lmp_coord *c, const struct lmp_lease *L, const char *why) {
    lmp_log_warn("coordinator: %s; assigned again", why);
    /* a layer's requeue (layer_lost, rows_lost) records its own event with `why` */
    if (L->kind == LMP_LEASE_SLICE || L->kind == LMP_LEASE_FINETUNE || L->kind == LMP_LEASE_TUNE)
        coord_peer_event(c, LMP_LOG_INFO, LMP_EVENT_REQUEUED, L->peer, "%s", why);
    lease_ops[L->kind].lost(c, L, false, why);
}

/* Heartbeats that must miss a lease's task, over more than the heartbeat timeout. */
enum { RUN_MISSED_MAX = 2 };

/* Worker pi's Heartbeat lists the tasks it runs. A lease whose TaskAssign went out but that
 * the worker does not run (lost on the way, or dropped as unparseable when protobuf-c had no
 * memory) would keep the job waiting for ever while the worker idles: it is given up once
 * RUN_MISSED_MAX heartbeats in a row, over more than the heartbeat timeout since the
 * TaskAssign went out or the worker last listed it, have not listed it. The grace covers a
 * heartbeat the worker sent before it read its TaskAssign; a lease whose TaskAssign waits
 * for a read-back (not sent yet) is left alone. */
static void lease_check_running(struct lmp_coord *c, int pi, const Lmp__Heartbeat *hb) {
    struct peer     *p = &c->peers[pi];
    struct lmp_lease L;
    if (p->role != LMP_PEER_WORKER || !peer_lease(c, pi, &L)) return;
    const uint64_t id = lease_ops[L.kind].wire_id(&L), now = mono_ms();
    if (p->sent_task != id || p->sent_attempt != L.attempt) return;
    for (size_t i = 0; i < hb->n_running_tasks; i++)
        if (hb->running_tasks[i] == id) {
            p->run_seen_ms = now;
            p->run_missed  = 0;
            return;
        }
    if (++p->run_missed < RUN_MISSED_MAX || now - p->run_seen_ms <= c->o.heartbeat_timeout_ms)
        return;
    char what[LMP_NAME_MAX + 64], why[2 * LMP_NAME_MAX + 256];
    lease_ops[L.kind].describe(c, &L, what, sizeof(what));
    snprintf(why, sizeof(why),
             "worker '%s' does not run %s (attempt %u): none of its last %u heartbeats "
             "over %.1fs lists it",
             p->id.name, what, L.attempt, p->run_missed, (double)(now - p->run_seen_ms) / 1000.0);
    p->sent_task = 0;
    lease_give_up(c, &L, why);
}

/* The peer no longer holds the activations of slices or of the fine-tuning. */
static void peer_forget_owned(struct lmp_coord *c, int pi) {
    struct job *J = c->job;
    for (int64_t i = 0; J && J->slices && i < J->n_slices; i++)
        if (J->slices[i].owner == pi) J->slices[i].owner = -1;
    if (J && J->ft && J->ft->owner == pi) J->ft->owner = -1;
    c->peers[pi].cal = -1;
}

static void peer_gone(struct lmp_coord *c, int pi, const char *why) {
    struct peer     *p = &c->peers[pi];
    struct lmp_lease L;
    char             what[LMP_NAME_MAX + 64] = "", msg[300];
    snprintf(msg, sizeof(msg), "worker '%s' %s", p->id.name, why);
    const bool held = peer_lease(c, pi, &L);
    if (held) lease_ops[L.kind].describe(c, &L, what, sizeof(what));
    if (p->role == LMP_PEER_WORKER) {
        coord_peer_event(c, LMP_LOG_WARN, LMP_EVENT_GONE, pi, "%s", why);
        lmp_log_warn("coordinator: worker '%s' %s: declared gone%s%s", p->id.name, why,
                     held ? "; task requeued: " : "", what);
    }
    if (held) lease_ops[L.kind].lost(c, &L, true, msg);
    peer_forget_owned(c, pi);
    p->task      = -1;
    p->ft        = false;
    p->tune_rank = -1;
    p->dead      = true;
    if (p->role != LMP_PEER_WORKER) p->used = false;
}

/* ---- PV-Tuning jobs (JobSpec.tune; struct tstate in coord_internal.h) ---------------- */

static void job_end(struct lmp_coord *c, Lmp__JobState state);

/* Drop the sum being collected (a gang stopping, or done). */
static void tune_sum_reset(struct tstate *T) {
    if (T == NULL) return;
    free(T->isum);
    T->isum = NULL;
    for (int r = 0; r < MAX_TUNE_RANKS; r++) {
        free(T->dpart[r]);
        T->dpart[r] = NULL;
        T->in[r]    = false;
    }
    T->n_part = 0;
}

static int tune_live(const struct tstate *T) {
    int n = 0;
    for (int r = 0; r < T->n; r++) n += T->worker[r] >= 0;
    return n;
}

/* Stop the gang's ranks still running (TaskCancel: rank 0 checkpoints and reports ECANCEL),
 * once per gang. */
static void tune_gang_stop(struct lmp_coord *c, const char *why) {
    struct job    *J = c->job;
    struct tstate *T = J->tune;
    tune_sum_reset(T);
    for (int r = 0; r < T->n; r++) {
        const int pi = T->worker[r];
        if (pi < 0 || c->peers[pi].cancelling) continue;
        Lmp__Envelope   env;
        Lmp__TaskCancel tc = LMP__TASK_CANCEL__INIT;
        lmp_wire_init(&env, 0, 0);
        tc.job_id = J->id, tc.task_id = LMP_TUNE_TASK_BASE + (uint64_t)r;
        tc.reason       = (char *)why;
        env.body_case   = LMP__ENVELOPE__BODY_TASK_CANCEL;
        env.task_cancel = &tc;
        coord_send(c, &c->peers[pi].id, &env);
        c->peers[pi].cancelling = true;
    }
}

/* A rank's lease ended without its result (its worker gone, an error, a cancel, a hand-back):
 * the rest of the gang is stopped; once none runs, the next gang starts from the checkpoint.
 * A failure counts towards --max-attempts once per gang. */
static void tune_rank_lost(struct lmp_coord *c, const struct lmp_lease *L, bool failure,
                           const char *why) {
    struct job    *J            = c->job;
    struct tstate *T            = J->tune;
    const int      r            = (int)L->id;
    c->peers[L->peer].tune_rank = -1;
    if (r >= 0 && r < T->n) T->worker[r] = -1;
    if (failure && !T->failed) {
        T->n_failures++;
        T->failed = true;
        if (T->n_failures >= c->o.max_attempts) {
            job_fail(c, "PV-Tuning failed %u times; last: %s", T->n_failures, why);
            return;
        }
    }
    tune_gang_stop(c, why);
    if (tune_live(T) > 0) return;
    int n_done = 0;
    for (int q = 0; q < T->n; q++) n_done += T->done[q];
    lmp_log_warn("coordinator: PV-Tuning run %u ended with %d of %d ranks done (%s); the next "
                 "resumes from the checkpoint",
                 T->attempt - T->base, n_done, T->n, why);
    coord_event(c, LMP_LOG_WARN, LMP_EVENT_REQUEUED, -1,
                "PV-Tuning run %u stopped (%s); resumes from the checkpoint", T->attempt - T->base,
                why);
    T->n          = 0;
    T->wait_until = mono_ms() + 3000; /* a replaced worker may be on its way back */
}

static bool peer_idle(const struct peer *p);

/* Start a gang when none runs: `replicas` idle workers (replicas x stages ranks), or as
 * many as there are (at least one) once wait_until has passed, as chains of min(stages,
 * n) stages (the ranks derive the layout from their count and TuneSpec.stages; the result
 * is the same for any). Ranks go to the workers in peer order. */
static void tune_dispatch(struct lmp_coord *c) {
    struct job    *J = c->job;
    struct tstate *T = J->tune;
    if (T->n > 0) return;
    int idle[MAX_TUNE_RANKS], n = 0;
    for (int pi = 0; pi < MAX_PEERS && n < (int)T->replicas && n < MAX_TUNE_RANKS; pi++)
        if (peer_idle(&c->peers[pi])) idle[n++] = pi;
    if (n == 0 || (n < (int)T->replicas && mono_ms() < T->wait_until)) return;
    const int S = (int)T->stages < n ? (int)T->stages : n;
    n           = n / S * S; /* whole chains */
    T->attempt++;
    T->n      = n;
    T->step   = 0;
    T->failed = false;
    tune_sum_reset(T);
    for (int r = 0; r < n; r++) {
        struct peer    *p = &c->peers[idle[r]];
        Lmp__Envelope   env;
        Lmp__TaskAssign ta = LMP__TASK_ASSIGN__INIT;
        lmp_wire_init(&env, 0, 0);
        ta.job_id = J->id, ta.task_id = LMP_TUNE_TASK_BASE + (uint64_t)r, ta.attempt = T->attempt;
        ta.kind         = LMP__TASK_KIND__TASK_KIND_TUNE;
        ta.model_path   = J->spec->model_path;
        ta.out_dir      = J->spec->out_path;
        ta.tune         = J->spec->tune;
        ta.rank         = (uint32_t)r;
        ta.ranks        = (uint32_t)n;
        ta.kernels      = J->spec->kernels;
        ta.n_threads    = p->cores;
        env.body_case   = LMP__ENVELOPE__BODY_TASK_ASSIGN;
        env.task_assign = &ta;
        T->worker[r]    = idle[r];
        T->done[r]      = false;
        p->tune_rank    = r;
        coord_send(c, &p->id, &env);
    }
    lmp_log_info("coordinator: PV-Tuning run %u: %d rank%s", T->attempt - T->base, n,
                 n > 1 ? "s" : "");
    coord_event(c, LMP_LOG_INFO, LMP_EVENT_ASSIGNED, -1, "PV-Tuning run %u on %d worker%s",
                T->attempt - T->base, n, n > 1 ? "s" : "");
}

/* A rank's part of a sum: every rank's part in, the sum goes back to each (int64 parts
 * added as they come, exact in any order; double parts in rank order). */
static void tune_on_partial(struct lmp_coord *c, int pi, const Lmp__RowsPartial *rp) {
    struct job    *J = c->job;
    struct tstate *T = J->tune;
    const int      r = c->peers[pi].tune_rank;
    if (rp->job_id != J->id || J->state != LMP__JOB_STATE__JOB_STATE_RUNNING || r < 0 ||
        r >= T->n || T->worker[r] != pi || rp->attempt != T->attempt ||
        rp->task_id != LMP_TUNE_TASK_BASE + (uint64_t)r || c->peers[pi].cancelling)
        return; /* stale: a stopped gang */
    const bool    is_int = rp->ipart.len > 0;
    const int64_t n      = is_int ? (int64_t)(rp->ipart.len / 8) : (int64_t)rp->n_part;
    bool          finite = true;
    for (size_t i = 0; !is_int && i < rp->n_part; i++) finite &= isfinite(rp->part[i]) != 0;
    if (rp->step != T->step + 1 || T->in[r] || n == 0 ||
        (T->n_part && (n != T->n_part || is_int != T->is_int)) || !finite) {
        char msg[256];
        snprintf(msg, sizeof(msg), "worker '%s' sent sum %llu (%lld values) %s",
                 c->peers[pi].id.name, (unsigned long long)rp->step, (long long)n,
                 finite ? "out of step with the other ranks" : "with values not finite");
        struct lmp_lease L;
        if (peer_lease(c, pi, &L)) lease_ops[L.kind].lost(c, &L, true, msg);
        return;
    }
    if (T->n_part == 0) {
        T->n_part = n, T->is_int = is_int;
        if (is_int && (T->isum = calloc((size_t)n, sizeof(uint64_t))) == NULL) {
            job_fail(c, "out of memory for the tuning's sums");
            return;
        }
    }
    if (is_int) {
        for (int64_t i = 0; i < n; i++) {
            uint64_t v;
            memcpy(&v, rp->ipart.data + 8 * i, 8); /* little-endian on the wire and here */
            T->isum[i] += v;
        }
    } else {
        if ((T->dpart[r] = malloc((size_t)n * sizeof(double))) == NULL) {
            job_fail(c, "out of memory for the tuning's sums");
            return;
        }
        memcpy(T->dpart[r], rp->part, (size_t)n * sizeof(double));
    }
    T->in[r] = true;
    for (int q = 0; q < T->n; q++)
        if (!T->in[q]) return;
    double *dsum = NULL;
    if (!is_int) {
        if ((dsum = malloc((size_t)n * sizeof(double))) == NULL) {
            job_fail(c, "out of memory for the tuning's sums");
            return;
        }
        for (int64_t i = 0; i < n; i++) {
            double acc = 0;
            for (int q = 0; q < T->n; q++) acc += T->dpart[q][i];
            dsum[i] = acc;
        }
    }
    T->step++;
    for (int q = 0; q < T->n; q++) {
        Lmp__Envelope env;
        Lmp__RowsSum  rs = LMP__ROWS_SUM__INIT;
        lmp_wire_init(&env, 0, 0);
        rs.job_id = J->id, rs.task_id = LMP_TUNE_TASK_BASE + (uint64_t)q, rs.attempt = T->attempt;
        rs.step = T->step;
        if (is_int)
            rs.isum.data = (uint8_t *)T->isum, rs.isum.len = (size_t)n * 8;
        else
            rs.n_sum = (size_t)n, rs.sum = dsum;
        env.body_case = LMP__ENVELOPE__BODY_ROWS_SUM;
        env.rows_sum  = &rs;
        coord_send(c, &c->peers[T->worker[q]].id, &env);
    }
    free(dsum);
    tune_sum_reset(T);
}

/* Rank 0's TaskProgress: the job's step, KL, agreement, codes changed; tokens/s of all. */
static void tune_progress(struct lmp_coord *c, int pi, const Lmp__TaskProgress *tp) {
    struct job    *J = c->job;
    struct tstate *T = J->tune;
    if (tp->job_id != J->id || tp->attempt != T->attempt || tp->task_id != LMP_TUNE_TASK_BASE ||
        T->n < 1 || T->worker[0] != pi || tp->step == 0)
        return;
    if (tp->step != T->p_step) {
        coord_event(c, LMP_LOG_INFO, LMP_EVENT_PROGRESS, -1,
                    "tune step %u/%u kl %.5f agree %.4f codes changed %llu %.1f tok/s", tp->step,
                    tp->n_steps, tp->loss, tp->rel_err, (unsigned long long)tp->codes_changed,
                    tp->tokens_per_s);
        T->p_step = tp->step;
    }
    T->p_n_steps = tp->n_steps, T->kl = tp->loss, T->agree = tp->rel_err;
    T->tok_s = tp->tokens_per_s, T->codes_changed = tp->codes_changed;
}

static void on_tune_result(struct lmp_coord *c, int pi, const Lmp__TaskResult *r,
                           Lmp__Envelope *ackenv, Lmp__TaskResultAck *ack) {
    struct job    *J = c->job;
    struct peer   *p = &c->peers[pi];
    struct tstate *T = J ? J->tune : NULL;
    const int      q = p->tune_rank;
    if (T == NULL || r->job_id != J->id || J->state != LMP__JOB_STATE__JOB_STATE_RUNNING || q < 0 ||
        q >= T->n || T->worker[q] != pi || r->attempt != T->attempt ||
        r->task_id != LMP_TUNE_TASK_BASE + (uint64_t)q) {
        lmp_log_info("coordinator: stale tuning result from '%s' dropped", p->id.name);
        coord_send(c, &p->id, ackenv);
        return;
    }
    ack->accepted = true;
    coord_send(c, &p->id, ackenv);
    p->tune_rank = -1;
    T->worker[q] = -1;
    T->done[q]   = true;
    p->n_done++;
    if (q == 0 && r->stats) {
        if (r->stats->steps > T->p_step) /* its last TaskProgress may not have gone out */
            coord_event(c, LMP_LOG_INFO, LMP_EVENT_PROGRESS, -1, "tune step %u/%llu kl %.5f",
                        r->stats->steps, (unsigned long long)J->spec->tune->steps, r->stats->loss);
        T->val_kl_before = r->stats->rel_err_before, T->val_kl_after = r->stats->rel_err_after;
        T->seconds = r->stats->seconds;
        T->p_step  = r->stats->steps;
    }
    for (int k = 0; k < T->n; k++)
        if (!T->done[k]) return;
    lmp_log_info("coordinator: job %llu: PV-Tuning done on %d rank%s; wrote '%s'",
                 (unsigned long long)J->id, T->n, T->n > 1 ? "s" : "", J->spec->out_path);
    coord_event(c, LMP_LOG_INFO, LMP_EVENT_JOB_END, -1,
                "job %llu done: PV-Tuning, held-out KL %.4f -> %.4f, wrote '%s'",
                (unsigned long long)J->id, T->val_kl_before, T->val_kl_after, J->spec->out_path);
    job_end(c, LMP__JOB_STATE__JOB_STATE_DONE);
}

/* A PV-Tuning job's plan: the spec's files are there (the ranks check the rest: an AQLM
 * artifact, the teacher's fingerprint, the text; "generate": the ranks write it). */
static enum lmp_status tune_plan(struct job *J, const Lmp__JobSpec *spec, struct lmp_err *err) {
    const char *const what[3] = {"original model", "artifact to tune", "tuning text"};
    const char *const path[3] = {spec->model_path, spec->tune->artifact, spec->tune->data};
    const int         n_files = strcmp(spec->tune->data, "generate") == 0 ? 2 : 3;
    for (int i = 0; i < n_files; i++) {
        struct stat sb;
        char        q[300];
        errno = 0;
        if (stat(path[i], &sb) != 0 || !S_ISREG(sb.st_mode))
            return lmp_err_set(err, LMP_ENOENT, "%s '%s': %s", what[i],
                               lmp_str_escape(q, sizeof(q), path[i]),
                               errno == 0 || S_ISDIR(sb.st_mode) ? "not a file" : strerror(errno));
    }
    if ((J->spec = coord_spec_copy(spec)) == NULL ||
        (J->tune = calloc(1, sizeof(*J->tune))) == NULL)
        return lmp_err_set(err, LMP_ENOMEM, "out of memory");
    uint16_t rnd = 0;
    if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != (ssize_t)sizeof(rnd))
        rnd = (uint16_t)(unix_ms() ^ (uint64_t)getpid());
    J->tune->base     = (uint32_t)rnd << 16;
    J->tune->attempt  = J->tune->base;
    J->tune->stages   = spec->tune->stages ? spec->tune->stages : 1;
    J->tune->replicas = (spec->tune->replicas ? spec->tune->replicas : 1) * J->tune->stages;
    if (J->tune->replicas > MAX_TUNE_RANKS) J->tune->replicas = MAX_TUNE_RANKS;
    if (J->tune->stages > MAX_TUNE_RANKS) J->tune->stages = MAX_TUNE_RANKS;
    J->tune->wait_until = mono_ms() + 5000; /* the workers asked for may still be joining */
    for (int r = 0; r < MAX_TUNE_RANKS; r++) J->tune->worker[r] = -1;
    return LMP_OK;
}

/* ---- the job -------------------------------------------------------------------- */

/* A block's H: freed, and its spool files removed, when its last task lets go of it. */
static void blockh_free(struct blockh *h) {
    for (int k = 0; k < LMP_INPUT_COUNT; k++) {
        free(h->h[k]);
        if (h->path[k]) unlink(h->path[k]);
        free(h->path[k]);
    }
    free(h);
}

/* The spool (proto/blobfile.h): the job's payloads too big for a frame, next to its
 * artifact. Files are named by the job, so clearing removes only what lmpress wrote there
 * (a calibration result "cal-j*", an H "h-j*", shipped blocks "q-j*", or one's ".tmp"), then
 * the directory
 * when it is empty. */
static void spool_clear(const char *dir, bool rm_dir) {
    DIR *d = dir ? opendir(dir) : NULL;
    if (d == NULL) return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strncmp(e->d_name, "cal-j", 5) == 0 || strncmp(e->d_name, "h-j", 3) == 0 ||
            strncmp(e->d_name, "q-j", 3) == 0) {
            char *p = lmp_strfmt("%s/%s", dir, e->d_name);
            if (p) unlink(p);
            free(p);
        }
    closedir(d);
    if (rm_dir) rmdir(dir);
}

/* The job's spool directory, created (and cleared of an earlier run's files) as the job
 * is planned. */
static enum lmp_status spool_open(struct job *J, struct lmp_err *err) {
    if ((J->spool = lmp_strfmt("%s.spool", J->spec->out_path)) == NULL)
        return lmp_err_set(err, LMP_ENOMEM, "out of memory");
    if (mkdir(J->spool, 0700) != 0 && errno != EEXIST)
        return lmp_err_set(err, LMP_EIO, "cannot create the spool directory '%s': %s", J->spool,
                           strerror(errno));
    char *abs = realpath(J->spool, NULL); /* workers elsewhere get an absolute path */
    if (abs == NULL)
        return lmp_err_set(err, LMP_EIO, "cannot resolve the spool directory '%s': %s", J->spool,
                           strerror(errno));
    free(J->spool);
    J->spool = abs;
    spool_clear(J->spool, false);
    return LMP_OK;
}

static void cal_sums_free(struct cal_sums *s) {
    if (s == NULL) return;
    for (int k = 0; k < LMP_INPUT_COUNT; k++) free(s->g[k]);
    free(s);
}

static void cblock_free(struct job *J, int32_t b) {
    struct cblock *cb = J->cblocks ? J->cblocks[b] : NULL;
    if (cb == NULL) return;
    lmp_calib_grams_destroy(&cb->acc);
    for (int64_t i = 0; cb->held && i < J->n_slices; i++) cal_sums_free(cb->held[i]);
    free(cb->held);
    free(cb);
    J->cblocks[b] = NULL;
}

static void job_free_calib(struct job *J) {
    for (int32_t b = 0; J->cblocks && J->m && b < J->m->cfg.n_layers; b++) cblock_free(J, b);
    free(J->cblocks);
    J->cblocks = NULL;
}

static void job_destroy(struct job **jp) {
    struct job *J = *jp;
    if (J == NULL) return;
    job_free_calib(J);
    ft_free(J);
    free(J->slices);
    free(J->need_block);
    lmp_calib_destroy(&J->cal);
    lmp_calib_grams_destroy(&J->grams);
    lmp_transformer_destroy(&J->tf);
    lmp_artifact_close(&J->a);
    lmp_art_job_release(&J->aj);
    for (int64_t i = 0; i < J->n_tasks; i++) {
        struct blockh *h = J->tasks[i].h;
        rows_free(&J->tasks[i]);
        if (h && --h->refs == 0) blockh_free(h);
    }
    free(J->tasks);
    free(J->spool);
    free(J->sched_tasks);
    free(J->sched_slices);
    free(J->tokens);
    free(J->quantized);
    lmp_model_close(&J->m);
    tune_sum_reset(J->tune);
    free(J->tune);
    if (J->spec) lmp__job_spec__free_unpacked(J->spec, NULL);
    free(J);
    *jp = NULL;
}

static void drop_h(struct job *J, struct task *t) {
    if (t->h && --t->h->refs == 0) {
        blockh_free(t->h);
        J->n_open--;
    }
    t->h = NULL;
}

/* DIR/job.pb on the heap (the state directory is outside text); NULL when out of memory */
static char *state_path(const struct lmp_coord *c) {
    return lmp_strfmt("%s/job.pb", c->o.state_dir);
}

/* Write spec to DIR/job.pb (write, rename): from then on a restarted coordinator picks the
 * job up again. Called when a job is accepted (before JobAccepted goes out) and when it is
 * planned. A failure is logged: the job runs, but a restart will not know it. */
static void state_save(struct lmp_coord *c, const Lmp__JobSpec *spec) {
    if (c->o.state_dir == NULL || spec == NULL) return;
    char        *p      = state_path(c);
    char        *tmp    = p ? lmp_strfmt("%s.tmp", p) : NULL;
    const size_t plen   = lmp__job_spec__get_packed_size(spec);
    uint8_t     *packed = tmp ? malloc(plen ? plen : 1) : NULL;
    FILE        *f      = packed ? fopen(tmp, "wb") : NULL;
    if (packed) lmp__job_spec__pack(spec, packed);
    bool ok = f && fwrite(packed, 1, plen, f) == plen;
    if (f && fclose(f) != 0) ok = false;
    if (!ok || rename(tmp, p) != 0)
        lmp_log_warn("coordinator: cannot save the job to '%s/job.pb': %s", c->o.state_dir,
                     packed ? strerror(errno) : "out of memory");
    free(packed);
    free(tmp);
    free(p);
}

static void state_forget(struct lmp_coord *c) {
    if (c->o.state_dir == NULL) return;
    char *p = state_path(c);
    if (p) unlink(p);
    free(p);
}

/* DIR/last.pb: the last job that ended (a JobInfo: id, state, paths, times, error), written
 * (write, rename) before job.pb goes, so that a coordinator killed after a job ended, but
 * before a client following it saw the end, still answers for it after a restart. */
static void state_save_last(struct lmp_coord *c, const struct job *J) {
    if (c->o.state_dir == NULL || J->spec == NULL) return;
    Lmp__JobInfo ji = LMP__JOB_INFO__INIT;
    ji.job_id       = J->id;
    ji.name         = J->spec->name;
    ji.state        = J->state;
    ji.model_path   = J->spec->model_path;
    ji.out_path     = J->spec->out_path;
    ji.submitted_ms = J->submitted_ms;
    ji.started_ms   = J->started_ms;
    ji.finished_ms  = J->finished_ms;
    Lmp__Error e    = LMP__ERROR__INIT;
    if (J->error[0]) {
        e.code    = (char *)lmp_status_str(J->error_st ? J->error_st : LMP_EIO);
        e.message = (char *)J->error;
        ji.error  = &e;
    }
    char        *p      = lmp_strfmt("%s/last.pb", c->o.state_dir);
    char        *tmp    = p ? lmp_strfmt("%s.tmp", p) : NULL;
    const size_t len    = lmp__job_info__get_packed_size(&ji);
    uint8_t     *packed = tmp ? malloc(len ? len : 1) : NULL;
    FILE        *f      = packed ? fopen(tmp, "wb") : NULL;
    if (packed) lmp__job_info__pack(&ji, packed);
    bool ok = f && fwrite(packed, 1, len, f) == len;
    if (f && fclose(f) != 0) ok = false;
    if (!ok || rename(tmp, p) != 0)
        lmp_log_warn("coordinator: cannot save the ended job to '%s/last.pb': %s", c->o.state_dir,
                     packed ? strerror(errno) : "out of memory");
    free(packed);
    free(tmp);
    free(p);
}

/* At start: the job of DIR/last.pb as an ended job (status answers for it), and job ids go
 * on after it. Anything unreadable is ignored (it is only for status). */
static void state_load_last(struct lmp_coord *c) {
    char          *p   = lmp_strfmt("%s/last.pb", c->o.state_dir);
    uint8_t       *buf = NULL;
    size_t         len = 0;
    struct lmp_err e2  = {0};
    if (p == NULL || access(p, F_OK) != 0 ||
        lmp_file_read_all(p, (char **)&buf, &len, &e2) != LMP_OK) {
        free(p);
        return;
    }
    Lmp__JobInfo *ji = lmp__job_info__unpack(NULL, len, buf);
    free(buf);
    free(p);
    if (ji == NULL) return;
    const bool ended = ji->state == LMP__JOB_STATE__JOB_STATE_DONE ||
                       ji->state == LMP__JOB_STATE__JOB_STATE_FAILED ||
                       ji->state == LMP__JOB_STATE__JOB_STATE_CANCELLED;
    struct job *J =
        ended && ji->job_id > 0 && ji->job_id < UINT64_MAX / 2 && ji->out_path && ji->out_path[0]
            ? calloc(1, sizeof(*J))
            : NULL;
    if (J) {
        Lmp__JobSpec spec = LMP__JOB_SPEC__INIT;
        spec.name         = ji->name;
        spec.model_path   = ji->model_path;
        spec.out_path     = ji->out_path;
        if ((J->spec = coord_spec_copy(&spec)) == NULL) {
            free(J);
            J = NULL;
        }
    }
    if (J) {
        lmp_art_job_init(&J->aj);
        J->id           = ji->job_id;
        J->state        = ji->state;
        J->submitted_ms = ji->submitted_ms;
        J->started_ms   = ji->started_ms;
        J->finished_ms  = ji->finished_ms;
        if (ji->error && ji->error->message)
            snprintf(J->error, sizeof(J->error), "%.250s", ji->error->message);
        if (ji->error && ji->error->code) lmp_status_from_name(ji->error->code, &J->error_st);
        c->job         = J;
        c->next_job_id = J->id;
    }
    lmp__job_info__free_unpacked(ji, NULL);
}

/* The job ends (done, failed, cancelled): workers are told, resources released; the
 * job's summary stays visible to status queries. */
static void close_post(struct lmp_coord *c, struct job *J);

static void job_end(struct lmp_coord *c, Lmp__JobState state) {
    struct job *J = c->job;
    J->state      = state;
    if (state == LMP__JOB_STATE__JOB_STATE_CANCELLED) J->error_st = LMP_ECANCEL;
    if (state == LMP__JOB_STATE__JOB_STATE_FAILED && J->error_st == LMP_OK) J->error_st = LMP_EIO;
    J->finished_ms = unix_ms();
    for (int i = 0; i < MAX_PEERS; i++) {
        struct peer *p = &c->peers[i];
        if (!p->used || p->dead || (p->task < 0 && p->cal < 0 && !p->ft && p->tune_rank < 0))
            continue;
        if (p->read_token) { /* reserved, not sent (read-back in flight): nothing to cancel */
            p->read_token = 0, p->cal = -1, p->ft = false;
            continue;
        }
        Lmp__Envelope   env;
        Lmp__TaskCancel tc = LMP__TASK_CANCEL__INIT;
        lmp_wire_init(&env, 0, 0);
        tc.job_id = J->id;
        tc.reason = state == LMP__JOB_STATE__JOB_STATE_CANCELLED ? "job cancelled" : "job ended";
        env.body_case   = LMP__ENVELOPE__BODY_TASK_CANCEL;
        env.task_cancel = &tc;
        coord_send(c, &p->id, &env);
        p->cancelling = true;
        p->task       = -1;
        p->cal        = -1;
        p->ft         = false;
        p->tune_rank  = -1;
    }
    for (int64_t i = 0; J->slices && i < J->n_slices; i++) J->slices[i].worker = -1;
    tune_sum_reset(J->tune);
    for (int r = 0; J->tune && r < MAX_TUNE_RANKS; r++) J->tune->worker[r] = -1;
    job_free_calib(J);
    ft_free(J);
    for (int64_t i = 0; i < J->n_tasks; i++) {
        struct task *t = &J->tasks[i];
        if (t->state == LMP__TASK_STATE__TASK_STATE_PENDING ||
            t->state == LMP__TASK_STATE__TASK_STATE_RUNNING)
            t->state = LMP__TASK_STATE__TASK_STATE_CANCELLED;
        t->worker = -1;
        rows_free(t);
        drop_h(J, t);
    }
    lmp_calib_destroy(&J->cal);
    lmp_calib_grams_destroy(&J->grams);
    lmp_transformer_destroy(&J->tf);
    spool_clear(J->spool, true);
    /* committed parts stay; the lock is released. With a background item using the artifact
     * (a read-back), closed on the background thread after it and before anything posted
     * later (a new job's plan opening the same artifact): HDF5 is not thread-safe */
    if (J->bg_busy == 0)
        lmp_artifact_close(&J->a);
    else
        close_post(c, J);
    free(J->tokens);
    J->tokens = NULL;
    state_save_last(c, J);
    state_forget(c);
}

static void job_fail(struct lmp_coord *c, const char *fmt, ...) {
    struct job *J = c->job;
    if (J == NULL || J->state != LMP__JOB_STATE__JOB_STATE_RUNNING) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(J->error, sizeof(J->error), fmt, ap);
    va_end(ap);
    lmp_log_error("coordinator: job %llu failed: %s", (unsigned long long)J->id, J->error);
    coord_event(c, LMP_LOG_ERROR, LMP_EVENT_JOB_END, -1, "job %llu failed: %s",
                (unsigned long long)J->id, J->error);
    job_end(c, LMP__JOB_STATE__JOB_STATE_FAILED);
}

/* The next block after b (or the first, b = -1) whose H some pending task waits for; -1. */
static int32_t next_needed(const struct job *J, int32_t b) {
    for (int32_t k = b + 1; J->need_block && k < J->m->cfg.n_layers; k++)
        if (J->need_block[k]) return k;
    return -1;
}

static void hwrite_post(struct lmp_coord *c, struct blockh *h, int32_t b);

/* Every slice of block b is added: hf[k] its four inputs' H (taken), and its tasks become
 * ready (those of an H over the inline limit once it is in the spool: hwrite_done). */
static void cal_block_done(struct lmp_coord *c, int32_t b, float **hf) {
    struct job    *J = c->job;
    struct blockh *h = calloc(1, sizeof(*h));
    if (h == NULL) {
        job_fail(c, "out of memory for the Gram matrices");
        return;
    }
    bool spool = false; /* an H too big for a frame goes by reference (BG_HWRITE) */
    for (int k = 0; k < LMP_INPUT_COUNT; k++) {
        const int64_t  n   = lmp_calib_input_width(&J->m->cfg, (enum lmp_input)k);
        const uint64_t len = (uint64_t)(n * n) * sizeof(float);
        h->h[k] = hf[k], hf[k] = NULL;
        if (len <= lmp_blob_inline_max()) continue;
        spool     = true;
        h->len[k] = len;
        if ((h->path[k] = lmp_strfmt("%s/h-j%llu-b%d-%d.f32", J->spool, (unsigned long long)J->id,
                                     b, k)) == NULL) {
            blockh_free(h);
            job_fail(c, "out of memory");
            return;
        }
    }
    if (spool) hwrite_post(c, h, b);
    cblock_free(J, b); /* n_open unchanged: the block now holds H instead */
    for (int64_t i = 0; i < J->n_tasks; i++)
        if (J->tasks[i].l->block == b && J->tasks[i].state == LMP__TASK_STATE__TASK_STATE_PENDING &&
            J->tasks[i].h == NULL) {
            J->tasks[i].h = h;
            h->refs++;
        }
    J->need_block[b] = false;
    if (h->refs == 0) { /* nothing waits for it any more */
        blockh_free(h);
        J->n_open--;
    }
    lmp_log_info("coordinator: block %d calibrated (%lld slices)", b, (long long)J->n_slices);
    coord_event(c, LMP_LOG_INFO, "calibrated", -1, "block %d (%lld slices)", b,
                (long long)J->n_slices);
}

static bool seq_mode(const struct job *J) {
    return J->spec->mode == LMP__MODE__MODE_SEQUENTIAL;
}

/* Sequential mode: every layer of the blocks before b is committed (final). */
static bool blocks_final_before(const struct job *J, int32_t b) {
    for (int64_t i = 0; i < J->n_tasks; i++)
        if (J->tasks[i].l->block < b && J->tasks[i].state != LMP__TASK_STATE__TASK_STATE_DONE)
            return false;
    return true;
}

/* Slice si may compute its next block now: not running, a block left, inside the window
 * (sequential mode: the blocks before it final). */
static bool slice_ready(const struct job *J, const struct cslice *sl) {
    if (sl->worker >= 0 || sl->next_b < 0) return false;
    if (seq_mode(J) && !blocks_final_before(J, sl->next_b)) return false;
    return J->cblocks[sl->next_b] != NULL || J->n_open < CAL_WINDOW;
}

/* Sequential mode: what a calibration task carries so that its slice advances through
 * the quantized blocks [from, b): Blob "qfrom" (i32 [1] = from) and, for each committed
 * layer of those blocks, Blobs "q/<layer>/codes", "q/<layer>/codebooks", "q/<layer>/scales"
 * (as in TaskResult), and tuned norms as "q/<tensor name>" (f32 (dim)). Read back from
 * the artifact, so a worker needs no shared storage. */
struct qship {
    size_t       n, cap;
    Lmp__Blob   *blobs;
    Lmp__Tensor *tens;
    uint64_t (*shape)[3];
    char (*name)[LMP_NAME_MAX + 16];
    struct lmp_art_layer  *layers;
    size_t                 n_layers;
    struct lmp_art_tensor *norms;
    size_t                 n_norms;
    int32_t                qfrom;
};

static void qship_release(struct qship *q) {
    for (size_t i = 0; i < q->n_layers; i++) lmp_art_layer_release(&q->layers[i]);
    for (size_t i = 0; i < q->n_norms; i++) lmp_art_tensor_release(&q->norms[i]);
    free(q->blobs);
    free(q->tens);
    free(q->shape);
    free(q->name);
    free(q->layers);
    free(q->norms);
    memset(q, 0, sizeof(*q));
}

static Lmp__Blob *qship_add(struct qship *q, const char *name, Lmp__DType dt, const uint64_t *shape,
                            int nd, const void *data, size_t bytes) {
    const size_t i = q->n++;
    snprintf(q->name[i], sizeof(q->name[i]), "%s", name);
    for (int d = 0; d < nd; d++) q->shape[i][d] = shape[d];
    q->tens[i] = (Lmp__Tensor)LMP__TENSOR__INIT;
    lmp_wire_tensor_init(&q->tens[i], "", dt, q->shape[i], (size_t)nd, data, bytes);
    q->blobs[i]            = (Lmp__Blob)LMP__BLOB__INIT;
    q->blobs[i].name       = q->name[i];
    q->blobs[i].where_case = LMP__BLOB__WHERE_TENSOR;
    q->blobs[i].tensor     = &q->tens[i];
    return &q->blobs[i];
}

static const char *const seq_norm_names[2] = {"input_layernorm", "post_attention_layernorm"};

static enum lmp_status qship_build(struct qship *q, struct job *J, int32_t from, int32_t b,
                                   struct lmp_err *err) {
    memset(q, 0, sizeof(*q));
    if (!seq_mode(J)) return LMP_OK; /* independent: workers walk the original model */
    const size_t nb = b > from ? (size_t)(b - from) : 0, cap = nb * (LMP_LIN_COUNT * 3 + 2) + 1;
    q->blobs  = calloc(cap, sizeof(*q->blobs));
    q->tens   = calloc(cap, sizeof(*q->tens));
    q->shape  = calloc(cap, sizeof(*q->shape));
    q->name   = calloc(cap, sizeof(*q->name));
    q->layers = calloc(nb * LMP_LIN_COUNT + 1, sizeof(*q->layers));
    q->norms  = calloc(nb * 2 + 1, sizeof(*q->norms));
    if (!q->blobs || !q->tens || !q->shape || !q->name || !q->layers || !q->norms) {
        qship_release(q);
        return lmp_err_set(err, LMP_ENOMEM, "out of memory");
    }
    q->qfrom           = from;
    const uint64_t one = 1;
    qship_add(q, lmp_payload_name(LMP__PAYLOAD__PAYLOAD_QFROM), LMP__DTYPE__DTYPE_I32, &one, 1,
              &q->qfrom, sizeof(int32_t));
    for (int32_t k = from; k < b; k++) {
        const struct lmp_block *B = &J->m->blocks[k];
        for (int j = 0; j < LMP_LIN_COUNT; j++) {
            const char *nm = B->lin[j].name;
            if (!lmp_artifact_has_layer(J->a, nm)) continue; /* kept: the original weights */
            struct lmp_art_layer *l  = &q->layers[q->n_layers];
            enum lmp_status       st = lmp_artifact_read_layer(J->a, nm, l, err);
            if (st != LMP_OK) {
                qship_release(q);
                return st;
            }
            q->n_layers++;
            if (l->codec != LMP_ART_CODEC_AQ) continue;
            char           bn[LMP_NAME_MAX + 16];
            const uint64_t cs[3] = {(uint64_t)l->n_out, (uint64_t)(l->n_in / l->g), (uint64_t)l->M};
            const uint64_t bs[3] = {(uint64_t)l->M, (uint64_t)1 << l->B, (uint64_t)l->g};
            const uint64_t ss[1] = {(uint64_t)l->n_out};
            lmp_payload_layer(bn, sizeof(bn), LMP__PAYLOAD__PAYLOAD_SHIPPED, nm,
                              LMP__PAYLOAD__PAYLOAD_CODES);
            qship_add(q, bn, LMP__DTYPE__DTYPE_U16, cs, 3, l->codes, cs[0] * cs[1] * cs[2] * 2);
            lmp_payload_layer(bn, sizeof(bn), LMP__PAYLOAD__PAYLOAD_SHIPPED, nm,
                              LMP__PAYLOAD__PAYLOAD_CODEBOOKS);
            qship_add(q, bn, LMP__DTYPE__DTYPE_F32, bs, 3, l->codebooks, bs[0] * bs[1] * bs[2] * 4);
            lmp_payload_layer(bn, sizeof(bn), LMP__PAYLOAD__PAYLOAD_SHIPPED, nm,
                              LMP__PAYLOAD__PAYLOAD_SCALES);
            qship_add(q, bn, LMP__DTYPE__DTYPE_F32, ss, 1, l->scales, ss[0] * 4);
        }
        for (int i = 0; i < 2; i++) { /* tuned norms (fine-tuning), when committed */
            char tn[LMP_NAME_MAX], bn[LMP_NAME_MAX + 16];
            snprintf(tn, sizeof(tn), "model.layers.%d.%s.weight", k, seq_norm_names[i]);
            bool have = false;
            for (int64_t t = 0; t < lmp_artifact_n_tensors(J->a) && !have; t++)
                have = strcmp(lmp_artifact_tensor_name(J->a, t), tn) == 0;
            if (!have) continue;
            struct lmp_art_tensor *t  = &q->norms[q->n_norms];
            enum lmp_status        st = lmp_artifact_read_tensor(J->a, tn, t, err);
            if (st != LMP_OK) {
                qship_release(q);
                return st;
            }
            q->n_norms++;
            const uint64_t d = (uint64_t)J->m->cfg.dim;
            if (t->dtype != LMP_DTYPE_F32) continue;
            lmp_payload_layer(bn, sizeof(bn), LMP__PAYLOAD__PAYLOAD_SHIPPED, tn,
                              LMP__PAYLOAD__PAYLOAD_UNSPECIFIED);
            qship_add(q, bn, LMP__DTYPE__DTYPE_F32, &d, 1, t->data, d * 4);
        }
    }
    return LMP_OK;
}

static void read_post(struct lmp_coord *c, bool ft, int pi, int si, uint32_t attempt, int32_t from,
                      int32_t b, bool fresh);
static void cal_send(struct lmp_coord *c, int pi, int si, struct qship *qs, bool fresh);

/* Blob "shipped" of a task, the caller's until the send (ship_spool fills it; free path). */
struct ship {
    Lmp__Blob    blob;
    Lmp__BlobRef ref;
    char        *path; /* the spool file, or NULL (inline) */
};
#define SHIP_INIT                                                                                  \
    { LMP__BLOB__INIT, LMP__BLOB_REF__INIT, NULL }

/* Whether a task input stays inline whatever its size ("tokens", "qfrom": small, and read
 * by the worker's loop before the compute thread starts). */
static bool ship_keeps(const Lmp__Blob *b) {
    return strcmp(b->name, lmp_payload_name(LMP__PAYLOAD__PAYLOAD_TOKENS)) == 0 ||
           strcmp(b->name, lmp_payload_name(LMP__PAYLOAD__PAYLOAD_QFROM)) == 0;
}

/* A task's shipped blocks (every input ship_keeps does not keep: the quantized blocks it
 * passes, the layers it tunes) over the inline limit go to the spool as one packed
 * TaskAssign (ta's fields, those inputs), sent as Blob "shipped" by reference (sh); the
 * worker's compute thread reads, checks and removes it. ta->inputs (the caller's array) is
 * rearranged in place. tag names the task in the file name and messages. false: the job
 * failed (a full disk, or more than protobuf's 2 GiB). */
static bool ship_spool(struct lmp_coord *c, Lmp__TaskAssign *ta, const char *tag, struct ship *sh) {
    struct job *J     = c->job;
    uint64_t    bytes = 0;
    size_t      n_mv  = 0;
    for (size_t i = 0; i < ta->n_inputs; i++) {
        const Lmp__Blob *b = ta->inputs[i];
        if (ship_keeps(b)) continue;
        n_mv++;
        if (b->where_case == LMP__BLOB__WHERE_TENSOR) bytes += b->tensor->data.len;
    }
    if (n_mv == 0 || bytes <= lmp_blob_inline_max()) return true;
    Lmp__Blob **mv = malloc(n_mv * sizeof(*mv));
    if (mv == NULL) {
        job_fail(c, "out of memory");
        return false;
    }
    size_t n_keep = 0, m = 0;
    for (size_t i = 0; i < ta->n_inputs; i++) {
        Lmp__Blob *b = ta->inputs[i];
        if (ship_keeps(b))
            ta->inputs[n_keep++] = b;
        else
            mv[m++] = b;
    }
    Lmp__TaskAssign pk = *ta;
    pk.base            = (ProtobufCMessage)PROTOBUF_C_MESSAGE_INIT(&lmp__task_assign__descriptor);
    pk.n_inputs = n_mv, pk.inputs = mv;
    const size_t    len = lmp__task_assign__get_packed_size(&pk);
    uint8_t        *buf = len <= (size_t)INT32_MAX ? malloc(len) : NULL;
    struct lmp_err  e   = {0};
    enum lmp_status st  = LMP_ENOMEM;
    uint64_t        xxh = 0, len64 = len;
    if (buf) {
        lmp__task_assign__pack(&pk, buf);
        const void *part[1] = {buf};
        if ((sh->path = lmp_strfmt("%s/q-j%llu-%s-a%u.pb", J->spool, (unsigned long long)J->id, tag,
                                   ta->attempt)) != NULL)
            st = lmp_blobfile_write(sh->path, part, &len64, 1, &xxh, &e);
    }
    free(buf);
    /* the moved blobs stay the caller's; put them back after the kept ones on failure */
    if (st != LMP_OK) {
        for (size_t i = 0; i < n_mv; i++) ta->inputs[n_keep + i] = mv[i];
        free(mv);
        free(sh->path), sh->path = NULL;
        if (len > (size_t)INT32_MAX)
            job_fail(c, "%s: the blocks to ship are %zu bytes, over protobuf's 2 GiB", tag, len);
        else
            job_fail(c, "%s: cannot ship blocks through the spool: %s", tag,
                     e.msg[0] ? e.msg : "out of memory");
        return false;
    }
    free(mv);
    sh->ref.path = sh->path, sh->ref.offset = 0, sh->ref.length = len64, sh->ref.xxh64 = xxh;
    sh->blob.name       = "shipped";
    sh->blob.where_case = LMP__BLOB__WHERE_REF;
    sh->blob.ref        = &sh->ref;
    ta->inputs[n_keep]  = &sh->blob;
    ta->n_inputs        = n_keep + 1;
    lmp_log_info("coordinator: %s: %.0f MB of blocks shipped through '%s'", tag, (double)len / 1e6,
                 sh->path);
    return true;
}

/* Slice si's next block goes to worker pi: reserved now (slice and worker busy), sent now
 * (independent mode) or once the committed blocks it must pass are read back (sequential
 * mode: the background thread reads them, see bg_done). */
static void assign_cal(struct lmp_coord *c, int pi, int si) {
    struct job    *J  = c->job;
    struct cslice *sl = &J->slices[si];
    struct peer   *p  = &c->peers[pi];
    const int32_t  b  = sl->next_b;
    if (J->cblocks[b] == NULL) {
        struct cblock *cb = calloc(1, sizeof(*cb));
        if (cb == NULL || (cb->acc = lmp_calib_grams_new(&J->m->cfg)) == NULL ||
            (cb->held = calloc((size_t)J->n_slices, sizeof(*cb->held))) == NULL) {
            if (cb) lmp_calib_grams_destroy(&cb->acc), free(cb);
            job_fail(c, "out of memory for the Gram matrices of block %d", b);
            return;
        }
        J->cblocks[b] = cb;
        J->n_open++;
    }
    const bool    fresh = sl->owner != pi; /* its activations start from the embedding */
    const int32_t from  = fresh ? 0 : sl->pos;
    sl->attempt++;
    sl->worker = pi;
    sl->owner  = pi;
    p->cal     = si;
    if (seq_mode(J)) /* the quantized blocks the slice must pass first */
        read_post(c, false, pi, si, sl->attempt, from, b, fresh);
    else
        cal_send(c, pi, si, NULL, fresh);
}

/* Send slice si's task to worker pi (reserved by assign_cal), with the blocks in qs. */
static void cal_send(struct lmp_coord *c, int pi, int si, struct qship *qs, bool fresh) {
    struct job     *J  = c->job;
    struct cslice  *sl = &J->slices[si];
    struct peer    *p  = &c->peers[pi];
    const int32_t   b  = sl->next_b;
    Lmp__Envelope   env;
    Lmp__TaskAssign ta   = LMP__TASK_ASSIGN__INIT;
    Lmp__RowRange   rows = LMP__ROW_RANGE__INIT;
    Lmp__Blob       blob = LMP__BLOB__INIT, *blobs1[1] = {&blob}, **blobs = blobs1;
    Lmp__Tensor     tok      = LMP__TENSOR__INIT;
    const uint64_t  shape[2] = {(uint64_t)(sl->end - sl->begin), (uint64_t)J->ctx};
    const size_t    n_q      = qs ? qs->n : 0;
    if (n_q) {
        if ((blobs = calloc(n_q + 1, sizeof(*blobs))) == NULL) {
            job_fail(c, "out of memory");
            return;
        }
        blobs[0] = &blob;
        for (size_t i = 0; i < n_q; i++) blobs[i + 1] = &qs->blobs[i];
    }
    lmp_wire_init(&env, 0, 0);
    ta.job_id = J->id, ta.task_id = CAL_TASK_BASE + (uint64_t)si, ta.attempt = sl->attempt;
    ta.kind        = LMP__TASK_KIND__TASK_KIND_CALIBRATE;
    ta.layer       = "";
    ta.layer_index = (uint32_t)b;
    rows.begin = (uint64_t)sl->begin, rows.end = (uint64_t)sl->end;
    ta.rows       = &rows;
    ta.model_path = J->spec->model_path;
    ta.method     = J->spec->method;
    ta.kernels    = J->spec->kernels;
    ta.n_threads  = p->cores;
    ta.out_dir    = J->spool; /* sums too big for a frame go there */
    lmp_wire_tensor_init(&tok, lmp_payload_name(LMP__PAYLOAD__PAYLOAD_TOKENS),
                         LMP__DTYPE__DTYPE_I32, shape, 2, J->tokens + sl->begin * J->ctx,
                         shape[0] * shape[1] * sizeof(int32_t));
    blob.name       = (char *)lmp_payload_name(LMP__PAYLOAD__PAYLOAD_TOKENS);
    blob.where_case = LMP__BLOB__WHERE_TENSOR;
    blob.tensor     = &tok;
    ta.n_inputs     = 1 + n_q;
    ta.inputs       = blobs;
    env.body_case   = LMP__ENVELOPE__BODY_TASK_ASSIGN;
    env.task_assign = &ta;
    struct ship sh  = SHIP_INIT;
    char        tag[48];
    snprintf(tag, sizeof(tag), "cal-s%d", si);
    if (!ship_spool(c, &ta, tag, &sh)) {
        if (blobs != blobs1) free(blobs);
        return;
    }
    lmp_log_info("coordinator: calibration of sequences [%lld, %lld) block %d -> worker '%s'%s",
                 (long long)sl->begin, (long long)sl->end, b, p->id.name,
                 fresh ? " (from the embedding)" : "");
    coord_peer_event(c, LMP_LOG_INFO, "calibrate", pi, "sequences [%lld, %lld) block %d",
                     (long long)sl->begin, (long long)sl->end, b);
    coord_send(c, &p->id, &env);
    if (blobs != blobs1) free(blobs);
    free(sh.path);
}

/* ---- checks of what a worker sends back (the AQLM results' are aq_result_problem) ------
 * A result is data from outside: a worker with a bug, bad memory or a bad build must cost
 * an attempt, never a committed layer. Values are read with memcpy (protobuf-c does not
 * align bytes fields for their element type). */

/* |tuned value| above this is no weight, norm or scale of a model but a diverged run */
#define LMP_TUNED_MAX 1e6

static void bench(struct peer *p); /* a refused worker's pause (below, with the AQLM checks) */

/* One input's Gram sum (n, n) f64 from a calibration slice: finite, a non-negative
 * diagonal, and |g_ij| <= sqrt(g_ii g_jj) (Cauchy-Schwarz, with room for rounding), as
 * every sum of x^T x is. NULL, or what is wrong. */
static const char *gram_problem(const uint8_t *bytes, int64_t n) {
    for (int64_t i = 0; i < n * n; i++) {
        double v;
        memcpy(&v, bytes + (size_t)i * sizeof(v), sizeof(v));
        if (!isfinite(v)) return "a Gram sum is not finite (NaN or Inf)";
        if (i / n == i % n && v < 0) return "a Gram sum has a negative diagonal";
    }
    for (int64_t i = 0; i < n; i++) {
        double gii;
        memcpy(&gii, bytes + (size_t)(i * n + i) * sizeof(gii), sizeof(gii));
        for (int64_t j = 0; j < n; j++) {
            double gij, gjj;
            memcpy(&gij, bytes + (size_t)(i * n + j) * sizeof(gij), sizeof(gij));
            memcpy(&gjj, bytes + (size_t)(j * n + j) * sizeof(gjj), sizeof(gjj));
            if (fabs(gij) > sqrt(gii) * sqrt(gjj) * (1 + 1e-6) + 1e-300)
                return "a Gram sum is not a sum of x^T x (|g_ij| > sqrt(g_ii g_jj))";
        }
    }
    return NULL;
}

/* n_bytes of f32 values from a fine-tuning result: finite and within LMP_TUNED_MAX.
 * NULL, or what is wrong (what: "codebooks", "scales", "norms"). */
static const char *tuned_problem(const uint8_t *bytes, size_t n_bytes, const char *what, char *buf,
                                 size_t cap) {
    for (size_t i = 0; i + sizeof(float) <= n_bytes; i += sizeof(float)) {
        float v;
        memcpy(&v, bytes + i, sizeof(v));
        if (!isfinite(v) || fabsf(v) > LMP_TUNED_MAX) {
            snprintf(buf, cap, "tuned %s %s", what,
                     isfinite(v) ? "out of range (|v| > 1e6)" : "not finite (NaN or Inf)");
            return buf;
        }
    }
    return NULL;
}

static void cal_pump(struct lmp_coord *c, int32_t b);

/* Slice si's sums for block b, checked, from here on the job's: g[k] aligned doubles read
 * from the spool (taken: set to NULL), or g NULL and bytes[k] the inline bytes (copied:
 * protobuf-c does not align them). Held until every earlier slice is added, then added in
 * slice order on the background thread (cal_pump), so the loop never walks the sums (8 GB
 * per slice of a 70B block). */
static void cal_take(struct lmp_coord *c, int si, int32_t b, double **g,
                     const uint8_t *const *bytes, double seconds) {
    struct job      *J  = c->job;
    struct cslice   *sl = &J->slices[si];
    struct cblock   *cb = J->cblocks[b];
    struct cal_sums *s  = calloc(1, sizeof(*s));
    if (seconds > 0) J->sec_calib += seconds;
    if (s == NULL) {
        job_fail(c, "out of memory for the Gram matrices of block %d", b);
        return;
    }
    s->n_tok = (sl->end - sl->begin) * J->ctx;
    for (int k = 0; k < LMP_INPUT_COUNT; k++) {
        if (g) {
            s->g[k] = g[k], g[k] = NULL;
            continue;
        }
        const int64_t n = lmp_calib_input_width(&J->m->cfg, (enum lmp_input)k);
        if ((s->g[k] = malloc((size_t)(n * n) * sizeof(double))) == NULL) {
            cal_sums_free(s);
            job_fail(c, "out of memory for the Gram matrices of block %d", b);
            return;
        }
        memcpy(s->g[k], bytes[k], (size_t)(n * n) * sizeof(double));
    }
    cb->held[si] = s;
    sl->worker   = -1;
    sl->pos    = b; /* sequential: the owner holds block b's input (it advances once b is final) */
    sl->next_b = next_needed(J, b);
    cal_pump(c, b);
}

/* A slice's result refused (its sums are wrong, or its spool file is): a failed attempt of
 * the worker; the slice goes to another. */
static void cal_refuse(struct lmp_coord *c, int pi, int si, const char *msg) {
    struct peer *p = &c->peers[pi];
    lmp_log_warn("coordinator: %s", msg);
    p->n_failed++;
    bench(p);
    cal_requeue(c, si, true, msg);
}

/* The answer to a TaskResult (seq: its envelope's), refused until ack->accepted is set. */
static void result_ack_init(Lmp__Envelope *out, Lmp__TaskResultAck *ack, uint64_t seq,
                            uint64_t job_id, uint64_t task_id, uint32_t attempt) {
    lmp__task_result_ack__init(ack);
    lmp_wire_init(out, 0, seq);
    ack->job_id = job_id, ack->task_id = task_id, ack->attempt = attempt;
    out->body_case       = LMP__ENVELOPE__BODY_TASK_RESULT_ACK;
    out->task_result_ack = ack;
}

static void load_post(struct lmp_coord *c, int pi, int si, int32_t b, const Lmp__TaskResult *r,
                      uint64_t seq);

/* A slice's sums for its block, inline (four f64 Tensors) or in the spool (four BlobRefs
 * to the file lmp_blobfile_cal_path names, read and checked on the background thread
 * before the answer: load_done). */
static void on_cal_result(struct lmp_coord *c, int pi, const Lmp__TaskResult *r,
                          Lmp__Envelope *ackenv, Lmp__TaskResultAck *ack) {
    struct job    *J    = c->job;
    struct peer   *p    = &c->peers[pi];
    const uint64_t si64 = r->task_id - CAL_TASK_BASE;
    p->cal              = -1;
    if (J == NULL || r->job_id != J->id || J->state != LMP__JOB_STATE__JOB_STATE_RUNNING ||
        J->slices == NULL || si64 >= (uint64_t)J->n_slices || J->slices[si64].worker != pi ||
        J->slices[si64].attempt != r->attempt || J->slices[si64].loading) {
        lmp_log_info("coordinator: stale calibration result from '%s' dropped", p->id.name);
        coord_send(c, &p->id, ackenv);
        return;
    }
    const int          si                 = (int)si64;
    struct cslice     *sl                 = &J->slices[si];
    const int32_t      b                  = sl->next_b;
    const Lmp__Tensor *g[LMP_INPUT_COUNT] = {0};
    char               msg[768];
    if (r->layer_index == (uint32_t)b && r->n_tensors == 0 && r->n_outputs == LMP_INPUT_COUNT) {
        /* by reference: the file this task was told to write, the sizes of the sums */
        char *want = lmp_blobfile_cal_path(J->spool, J->id, r->task_id, r->attempt);
        bool  ok   = want != NULL;
        for (int k = 0; ok && k < LMP_INPUT_COUNT; k++) {
            const Lmp__Blob *o = r->outputs[k];
            const uint64_t   n = (uint64_t)lmp_calib_input_width(&J->m->cfg, (enum lmp_input)k);
            ok = o->where_case == LMP__BLOB__WHERE_REF && strcmp(o->ref->path, want) == 0 &&
                 o->ref->dataset[0] == '\0' && o->ref->length == n * n * sizeof(double);
        }
        if (ok) {
            free(want);
            load_post(c, pi, si, b, r, ackenv->seq);
            return;
        }
        snprintf(msg, sizeof(msg),
                 "calibration result from '%s' refers to other bytes than the four f64 Gram "
                 "sums of block %d in '%s'",
                 p->id.name, b, want ? want : "(out of memory)");
        free(want);
        ack->accepted = false;
        coord_send(c, &p->id, ackenv);
        cal_refuse(c, pi, si, msg);
        return;
    }
    bool ok = r->layer_index == (uint32_t)b && r->n_tensors == LMP_INPUT_COUNT;
    for (int k = 0; ok && k < LMP_INPUT_COUNT; k++) {
        const uint64_t n = (uint64_t)lmp_calib_input_width(&J->m->cfg, (enum lmp_input)k);
        g[k]             = r->tensors[k];
        ok = g[k]->dtype == LMP__DTYPE__DTYPE_F64 && g[k]->n_shape == 2 && g[k]->shape[0] == n &&
             g[k]->shape[1] == n && g[k]->data.len == n * n * sizeof(double);
    }
    const char *bad = NULL;
    for (int k = 0; ok && bad == NULL && k < LMP_INPUT_COUNT; k++)
        bad = gram_problem(g[k]->data.data, (int64_t)g[k]->shape[0]);
    if (!ok || bad) { /* a failed attempt of this worker: the slice goes to another */
        if (bad)
            snprintf(msg, sizeof(msg), "calibration result of block %d from '%s' refused: %s", b,
                     p->id.name, bad);
        else
            snprintf(msg, sizeof(msg),
                     "calibration result from '%s' has not four f64 Gram sums "
                     "of block %d",
                     p->id.name, b);
        ack->accepted = false;
        coord_send(c, &p->id, ackenv);
        cal_refuse(c, pi, si, msg);
        return;
    }
    ack->accepted = true;
    coord_send(c, &p->id, ackenv);
    const uint8_t *bytes[LMP_INPUT_COUNT];
    for (int k = 0; k < LMP_INPUT_COUNT; k++) bytes[k] = g[k]->data.data;
    cal_take(c, si, b, NULL, bytes, r->stats ? r->stats->seconds : 0);
}

static bool task_ready(const struct job *J, const struct task *t) {
    return t->state == LMP__TASK_STATE__TASK_STATE_PENDING &&
           (J->cspec.method == LMP_COMPRESS_RTN || (t->h != NULL && !t->h->writing));
}

/* Task t's H as the Blob "gram": inline, or a reference to its spool file. The blob points
 * into gram/ref/shape, which the caller keeps until the send. */
static void gram_blob(const struct task *t, Lmp__Blob *blob, Lmp__Tensor *gram, Lmp__BlobRef *ref,
                      const uint64_t shape[2]) {
    const int k = (int)t->l->input;
    blob->name  = (char *)lmp_payload_name(LMP__PAYLOAD__PAYLOAD_GRAM);
    if (t->h->path[k]) {
        ref->path = t->h->path[k], ref->offset = 0, ref->length = t->h->len[k];
        ref->xxh64       = t->h->xxh[k];
        blob->where_case = LMP__BLOB__WHERE_REF;
        blob->ref        = ref;
        return;
    }
    lmp_wire_tensor_init(gram, lmp_payload_name(LMP__PAYLOAD__PAYLOAD_GRAM), LMP__DTYPE__DTYPE_F32,
                         shape, 2, t->h->h[k], shape[0] * shape[1] * sizeof(float));
    blob->where_case = LMP__BLOB__WHERE_TENSOR;
    blob->tensor     = gram;
}

static void assign(struct lmp_coord *c, int pi, int ti) {
    struct job     *J = c->job;
    struct task    *t = &J->tasks[ti];
    struct peer    *p = &c->peers[pi];
    Lmp__Envelope   env;
    Lmp__TaskAssign ta   = LMP__TASK_ASSIGN__INIT;
    Lmp__Blob       blob = LMP__BLOB__INIT, *blobs[1] = {&blob};
    Lmp__Tensor     gram = LMP__TENSOR__INIT;
    Lmp__BlobRef    gref = LMP__BLOB_REF__INIT;
    const uint64_t  n = (uint64_t)t->l->n_in, shape[2] = {n, n}; /* borrowed until the send */
    lmp_wire_init(&env, 0, 0);
    t->attempt++;
    ta.job_id = J->id, ta.task_id = (uint64_t)ti + 1, ta.attempt = t->attempt;
    ta.kind        = LMP__TASK_KIND__TASK_KIND_QUANTIZE_LAYER;
    ta.layer       = (char *)t->l->name;
    ta.layer_index = (uint32_t)t->l->block;
    ta.model_path  = J->spec->model_path;
    ta.method      = J->spec->method;
    ta.kernels     = J->spec->kernels;
    ta.n_threads   = p->cores;
    if (t->h) {
        gram_blob(t, &blob, &gram, &gref, shape);
        ta.n_inputs = 1;
        ta.inputs   = blobs;
    }
    env.body_case   = LMP__ENVELOPE__BODY_TASK_ASSIGN;
    env.task_assign = &ta;
    t->state        = LMP__TASK_STATE__TASK_STATE_RUNNING;
    t->worker       = pi;
    t->progress_s   = 0;
    snprintf(t->worker_name, sizeof(t->worker_name), "%s", p->id.name);
    p->task = ti;
    lmp_log_info("coordinator: '%s' -> worker '%s' (attempt %u)", t->l->name, p->id.name,
                 t->attempt);
    coord_event(c, LMP_LOG_INFO, LMP_EVENT_ASSIGNED, ti, "attempt %u", t->attempt);
    coord_send(c, &p->id, &env);
}

/* Measured throughput of a worker, weights per second of quantization (0 = unknown). */
static double peer_rate(const struct peer *p) {
    const struct lmp_sched_peer sp = {.busy_s = p->busy_s, .params_done = p->params_done};
    return lmp_sched_rate(&sp);
}

/* Task ti as n row shards on peers pis[]: rows in proportion to the workers' measured
 * throughputs (a worker not measured yet counts as the mean of those that are, or 1). */
static void assign_rows(struct lmp_coord *c, int ti, const int *pis, int n) {
    struct job                 *J     = c->job;
    struct task                *t     = &J->tasks[ti];
    const struct lmp_aq_scheme *sc    = &J->cspec.sc;
    struct rtask               *R     = calloc(1, sizeof(*R));
    const int64_t               n_out = t->l->n_out, n_in = t->l->n_in, n_grp = n_in / sc->g;
    const int64_t               n_cb = (int64_t)sc->M * sc->K * sc->g;
    if (R == NULL || (R->sum = malloc((size_t)(n_cb + 1) * sizeof(double))) == NULL ||
        (R->codes = malloc((size_t)(n_out * n_grp * sc->M) * sizeof(uint16_t))) == NULL ||
        (R->scales = malloc((size_t)n_out * sizeof(float))) == NULL ||
        (R->cb = malloc((size_t)n_cb * sizeof(float))) == NULL) {
        if (R) free(R->sum), free(R->codes), free(R->scales), free(R->cb);
        free(R);
        job_fail(c, "out of memory for the row shards of '%s'", t->l->name);
        return;
    }
    double rate[MAX_ROW_SHARDS], wt[MAX_ROW_SHARDS];
    for (int k = 0; k < n; k++) rate[k] = peer_rate(&c->peers[pis[k]]);
    lmp_sched_shard_weights(rate, n, wt);
    int64_t bounds[MAX_ROW_SHARDS + 1];
    lmp_aq_shard_rows(bounds, n_out, wt, n);
    R->n    = n;
    t->rows = R;
    t->attempt++;
    t->state      = LMP__TASK_STATE__TASK_STATE_RUNNING;
    t->worker     = pis[0];
    t->progress_s = 0;
    snprintf(t->worker_name, sizeof(t->worker_name), "%.100s +%d", c->peers[pis[0]].id.name, n - 1);
    Lmp__Blob      blob = LMP__BLOB__INIT, *blobs[1] = {&blob};
    Lmp__Tensor    gram     = LMP__TENSOR__INIT;
    Lmp__BlobRef   gref     = LMP__BLOB_REF__INIT;
    const uint64_t shape[2] = {(uint64_t)n_in, (uint64_t)n_in};
    gram_blob(t, &blob, &gram, &gref, shape);
    for (int k = 0; k < n; k++) {
        struct peer *p = &c->peers[pis[k]];
        R->s[k]        = (struct rshard){.worker = pis[k], .r0 = bounds[k], .r1 = bounds[k + 1]};
        Lmp__Envelope   env;
        Lmp__TaskAssign ta   = LMP__TASK_ASSIGN__INIT;
        Lmp__RowRange   rows = LMP__ROW_RANGE__INIT;
        lmp_wire_init(&env, 0, 0);
        ta.job_id = J->id, ta.task_id = (uint64_t)ti + 1, ta.attempt = t->attempt;
        ta.kind        = LMP__TASK_KIND__TASK_KIND_QUANTIZE_ROWS;
        ta.layer       = (char *)t->l->name;
        ta.layer_index = (uint32_t)t->l->block;
        rows.begin = (uint64_t)bounds[k], rows.end = (uint64_t)bounds[k + 1];
        ta.rows         = &rows;
        ta.model_path   = J->spec->model_path;
        ta.method       = J->spec->method;
        ta.kernels      = J->spec->kernels;
        ta.n_threads    = p->cores;
        ta.n_inputs     = 1;
        ta.inputs       = blobs;
        env.body_case   = LMP__ENVELOPE__BODY_TASK_ASSIGN;
        env.task_assign = &ta;
        p->task         = ti;
        lmp_log_info(
            "coordinator: '%s' rows [%lld, %lld) -> worker '%s' (shard %d of %d, attempt %u)",
            t->l->name, (long long)bounds[k], (long long)bounds[k + 1], p->id.name, k + 1, n,
            t->attempt);
        coord_send(c, &p->id, &env);
    }
    coord_event(c, LMP_LOG_INFO, LMP_EVENT_ASSIGNED, ti, "attempt %u, %d row shards", t->attempt,
                n);
}

/* A shard's part of the current sum; when every shard's is in, the sum (in shard order)
 * goes back to each of them. */
static void tune_on_partial(struct lmp_coord *c, int pi, const Lmp__RowsPartial *rp);

static void on_rows_partial(struct lmp_coord *c, int pi, const Lmp__RowsPartial *rp) {
    struct job *J = c->job;
    if (J && J->tune) {
        tune_on_partial(c, pi, rp);
        return;
    }
    const int ti = (int)rp->task_id - 1;
    if (J == NULL || rp->job_id != J->id || J->state != LMP__JOB_STATE__JOB_STATE_RUNNING ||
        ti < 0 || ti >= J->n_tasks || J->tasks[ti].rows == NULL ||
        J->tasks[ti].attempt != rp->attempt)
        return; /* stale: the shards of that attempt were cancelled */
    struct task                *t     = &J->tasks[ti];
    struct rtask               *R     = t->rows;
    const int                   k     = rows_shard_of(t, pi);
    const struct lmp_aq_scheme *sc    = &J->cspec.sc;
    const int64_t               n_max = (int64_t)sc->M * sc->K * sc->g + 1;
    if (k < 0) return;
    bool finite = true;
    for (size_t i = 0; i < rp->n_part; i++) finite &= isfinite(rp->part[i]) != 0;
    if (rp->step != R->step + 1 || R->s[k].part != NULL || R->s[k].done || rp->n_part == 0 ||
        (int64_t)rp->n_part > n_max || (R->n_part && (int64_t)rp->n_part != R->n_part) || !finite) {
        char msg[300];
        snprintf(msg, sizeof(msg), "worker '%s' sent part %llu (%zu values) of '%s' %s",
                 c->peers[pi].id.name, (unsigned long long)rp->step, rp->n_part, t->l->name,
                 finite ? "out of step" : "with values not finite: refused");
        rows_abort(c, ti, true, msg);
        return;
    }
    if ((R->s[k].part = malloc(rp->n_part * sizeof(double))) == NULL) {
        job_fail(c, "out of memory for the sums of '%s'", t->l->name);
        return;
    }
    memcpy(R->s[k].part, rp->part, rp->n_part * sizeof(double));
    R->n_part = (int64_t)rp->n_part;
    for (int q = 0; q < R->n; q++)
        if (R->s[q].part == NULL) return;
    for (int64_t i = 0; i < R->n_part; i++) {
        double acc = 0.0;
        for (int q = 0; q < R->n; q++) acc += R->s[q].part[i];
        R->sum[i] = acc;
    }
    R->step++;
    for (int q = 0; q < R->n; q++) {
        free(R->s[q].part);
        R->s[q].part = NULL;
        Lmp__Envelope env;
        Lmp__RowsSum  rs = LMP__ROWS_SUM__INIT;
        lmp_wire_init(&env, 0, 0);
        rs.job_id = J->id, rs.task_id = (uint64_t)ti + 1, rs.attempt = t->attempt;
        rs.step       = R->step;
        rs.n_sum      = (size_t)R->n_part;
        rs.sum        = R->sum;
        env.body_case = LMP__ENVELOPE__BODY_ROWS_SUM;
        env.rows_sum  = &rs;
        coord_send(c, &c->peers[R->s[q].worker].id, &env);
    }
    R->n_part = 0;
}

static bool peer_idle(const struct peer *p) {
    return p->used && !p->dead && p->role == LMP_PEER_WORKER && p->task < 0 && p->cal < 0 &&
           !p->ft && p->tune_rank < 0 && !p->cancelling && p->busy_until <= mono_ms();
}

/* The scheduler's view of the job and the peers now (sched.h), in J's scratch arrays. */
static bool sched_snapshot(struct lmp_coord *c, struct job *J, struct lmp_sched *s) {
    if (J->sched_tasks == NULL &&
        (J->sched_tasks = calloc((size_t)J->n_tasks + 1, sizeof(*J->sched_tasks))) == NULL)
        return false;
    if (J->n_slices && J->sched_slices == NULL &&
        (J->sched_slices = calloc((size_t)J->n_slices, sizeof(*J->sched_slices))) == NULL)
        return false;
    for (int64_t i = 0; i < J->n_tasks; i++) {
        const struct task *t = &J->tasks[i];
        J->sched_tasks[i]    = (struct lmp_sched_task){.ready = task_ready(J, t),
                                                       .has_h = t->h != NULL,
                                                       .size  = (double)(t->l->n_out * t->l->n_in),
                                                       .n_out = t->l->n_out,
                                                       .progress_s = t->progress_s};
    }
    for (int64_t i = 0; J->slices && i < J->n_slices; i++)
        J->sched_slices[i] = (struct lmp_sched_slice){.next_b = J->slices[i].next_b,
                                                      .ready  = slice_ready(J, &J->slices[i]),
                                                      .owner  = J->slices[i].owner};
    for (int q = 0; q < MAX_PEERS; q++) {
        const struct peer *p = &c->peers[q];
        c->sched_peers[q]    = (struct lmp_sched_peer){.connected   = p->used && !p->dead,
                                                       .worker      = p->role == LMP_PEER_WORKER,
                                                       .idle        = peer_idle(p),
                                                       .calibrating = p->cal >= 0,
                                                       .task        = p->task,
                                                       .busy_s      = p->busy_s,
                                                       .params_done = p->params_done};
    }
    /* sequential mode: a block's layers run one after another over every idle worker */
    const uint32_t rs = J->spec->row_shards ? J->spec->row_shards
                        : seq_mode(J)       ? MAX_ROW_SHARDS
                                            : 0;
    *s                = (struct lmp_sched){.tasks      = J->sched_tasks,
                                           .n_tasks    = J->n_tasks,
                                           .slices     = J->sched_slices,
                                           .n_slices   = J->slices ? J->n_slices : 0,
                                           .peers      = c->sched_peers,
                                           .n_peers    = MAX_PEERS,
                                           .ft_waiting = J->ft && J->ft->block >= 0 && J->ft->worker < 0,
                                           .ft_owner   = J->ft ? J->ft->owner : -1,
                                           .aqlm       = J->cspec.method == LMP_COMPRESS_AQLM,
                                           .row_shards = (int)(rs < MAX_ROW_SHARDS ? rs : MAX_ROW_SHARDS)};
    return true;
}

/* ---- block fine-tuning (--finetune: TASK_KIND_FINETUNE_BLOCK) -------------------------
 * A block's quantized layers are held here, not committed, until one worker has tuned the
 * block (worker/finetune.h) on every calibration sequence: it keeps those activations
 * (the input of the block it tuned last) like a calibration slice, and advances them
 * through the tuned blocks shipped with its next task (sequential mode) or through the
 * original blocks (independent mode: nothing shipped). Blocks are tuned in order. The
 * tuned norms and layers of a block are committed as one part (lmp_artifact_commit_block):
 * a resumed run finds the whole tuned block or none of it. */

/* The block to tune next: the first block with a layer not committed, once all such
 * layers are held; -1 = none yet. Blocks are tuned in order, so the tuning worker's
 * activations only move forward (independent mode quantizes several blocks at once). */
static int32_t ft_ready_block(const struct job *J) {
    int32_t b = -1;
    for (int64_t i = 0; i < J->n_tasks; i++)
        if (J->tasks[i].state != LMP__TASK_STATE__TASK_STATE_DONE &&
            (b < 0 || J->tasks[i].l->block < b))
            b = J->tasks[i].l->block;
    for (int64_t i = 0; b >= 0 && i < J->n_tasks; i++)
        if (J->tasks[i].l->block == b && J->tasks[i].state != LMP__TASK_STATE__TASK_STATE_DONE &&
            !J->ft->have[i])
            return -1;
    return b;
}

/* The quantized layer of task ti (its arrays copied) waits for its block's tuning. */
static enum lmp_status ft_hold(struct job *J, int ti, const struct lmp_compress_result *res) {
    struct ftstate             *F  = J->ft;
    struct lmp_compress_result *h  = &F->held[ti];
    const struct lmp_aq_layer  *q  = &res->aq;
    const size_t                nc = (size_t)(q->n_out * (q->n_in / q->sc.g) * q->sc.M),
                 nb                = (size_t)q->sc.M * q->sc.K * q->sc.g;
    *h                             = *res;
    h->w_hat = NULL, h->rtn_q = NULL, h->rtn_scale = NULL, h->rtn_zero = NULL;
    h->aq.codes = malloc(nc * 2), h->aq.codebooks = malloc(nb * 4),
    h->aq.scales = malloc((size_t)q->n_out * 4);
    if (!h->aq.codes || !h->aq.codebooks || !h->aq.scales) {
        lmp_aq_layer_release(&h->aq);
        return LMP_ENOMEM;
    }
    memcpy(h->aq.codes, q->codes, nc * 2);
    memcpy(h->aq.codebooks, q->codebooks, nb * 4);
    memcpy(h->aq.scales, q->scales, (size_t)q->n_out * 4);
    F->have[ti]         = true;
    J->tasks[ti].worker = -1; /* RUNNING, held: quantized, not final */
    J->tasks[ti].step = 0, J->tasks[ti].n_steps = 0, J->tasks[ti].loss = 0; /* the tuning's, next */
    J->tasks[ti].rel_err = 0, J->tasks[ti].progress_s = 0;
    if (F->block < 0) F->block = ft_ready_block(J);
    return LMP_OK;
}

/* The tuning worker is lost or failed: the block is tuned again (from the embedding). */
static void ft_lost(struct lmp_coord *c, bool failure, const char *why) {
    struct job     *J = c->job;
    struct ftstate *F = J->ft;
    if (F->worker >= 0) c->peers[F->worker].ft = false;
    F->worker = -1;
    F->owner  = -1;
    lmp_log_warn("coordinator: fine-tuning of block %d requeued: %s", F->block, why);
    if (failure && ++F->n_failures >= c->o.max_attempts)
        job_fail(c, "fine-tuning of block %d failed %u times; last: %s", F->block, F->n_failures,
                 why);
}

/* The block waiting for its tuning goes to worker pi: reserved now, sent (ft_send) once the
 * committed blocks before it are read back by the background thread. */
static void assign_ft(struct lmp_coord *c, int pi) {
    struct job     *J    = c->job;
    struct ftstate *F    = J->ft;
    const int32_t   from = F->owner == pi ? F->pos : 0;
    F->attempt++;
    F->worker       = pi;
    F->owner        = pi;
    c->peers[pi].ft = true;
    read_post(c, true, pi, -1, F->attempt, from, F->block, from == 0);
}

static void ft_send(struct lmp_coord *c, int pi, struct qship *qs) {
    struct job     *J    = c->job;
    struct ftstate *F    = J->ft;
    struct peer    *p    = &c->peers[pi];
    const int32_t   b    = F->block;
    const int32_t   from = qs->qfrom;
    /* inputs: tokens, qship's, 3 per held layer of block b */
    const size_t cap   = 1 + qs->n + 3 * LMP_LIN_COUNT;
    Lmp__Blob  **blobs = calloc(cap, sizeof(*blobs)), fb[3 * LMP_LIN_COUNT], tokb = LMP__BLOB__INIT;
    Lmp__Tensor  ft[3 * LMP_LIN_COUNT], tok = LMP__TENSOR__INIT;
    uint64_t     fsh[3 * LMP_LIN_COUNT][3];
    char         fname[3 * LMP_LIN_COUNT][LMP_NAME_MAX + 16];
    if (blobs == NULL) {
        job_fail(c, "out of memory");
        return;
    }
    size_t         n         = 0;
    const uint64_t tshape[2] = {(uint64_t)J->n_seq, (uint64_t)J->ctx};
    lmp_wire_tensor_init(&tok, lmp_payload_name(LMP__PAYLOAD__PAYLOAD_TOKENS),
                         LMP__DTYPE__DTYPE_I32, tshape, 2, J->tokens,
                         tshape[0] * tshape[1] * sizeof(int32_t));
    tokb.name       = (char *)lmp_payload_name(LMP__PAYLOAD__PAYLOAD_TOKENS),
    tokb.where_case = LMP__BLOB__WHERE_TENSOR, tokb.tensor = &tok;
    blobs[n++] = &tokb;
    for (size_t i = 0; i < qs->n; i++) blobs[n++] = &qs->blobs[i];
    int nf = 0;
    for (int64_t i = 0; i < J->n_tasks; i++) {
        if (J->tasks[i].l->block != b || !F->have[i]) continue;
        const struct lmp_aq_layer *q       = &F->held[i].aq;
        const char                *nm      = J->tasks[i].l->name;
        static const Lmp__Payload  part[3] = {LMP__PAYLOAD__PAYLOAD_CODES,
                                              LMP__PAYLOAD__PAYLOAD_CODEBOOKS,
                                              LMP__PAYLOAD__PAYLOAD_SCALES};
        for (int k = 0; k < 3; k++, nf++) {
            int         nd = 3;
            const void *data;
            size_t      bytes;
            Lmp__DType  dt = LMP__DTYPE__DTYPE_F32;
            if (k == 0) {
                fsh[nf][0] = (uint64_t)q->n_out, fsh[nf][1] = (uint64_t)(q->n_in / q->sc.g),
                fsh[nf][2] = (uint64_t)q->sc.M;
                data = q->codes, bytes = fsh[nf][0] * fsh[nf][1] * fsh[nf][2] * 2,
                dt = LMP__DTYPE__DTYPE_U16;
            } else if (k == 1) {
                fsh[nf][0] = (uint64_t)q->sc.M, fsh[nf][1] = (uint64_t)q->sc.K,
                fsh[nf][2] = (uint64_t)q->sc.g;
                data = q->codebooks, bytes = fsh[nf][0] * fsh[nf][1] * fsh[nf][2] * 4;
            } else {
                fsh[nf][0] = (uint64_t)q->n_out, nd = 1;
                data = q->scales, bytes = fsh[nf][0] * 4;
            }
            lmp_payload_layer(fname[nf], sizeof(fname[nf]), LMP__PAYLOAD__PAYLOAD_HELD, nm,
                              part[k]);
            ft[nf] = (Lmp__Tensor)LMP__TENSOR__INIT;
            lmp_wire_tensor_init(&ft[nf], "", dt, fsh[nf], (size_t)nd, data, bytes);
            fb[nf]      = (Lmp__Blob)LMP__BLOB__INIT;
            fb[nf].name = fname[nf], fb[nf].where_case = LMP__BLOB__WHERE_TENSOR,
            fb[nf].tensor = &ft[nf];
            blobs[n++]    = &fb[nf];
        }
    }
    Lmp__Envelope   env;
    Lmp__TaskAssign ta   = LMP__TASK_ASSIGN__INIT;
    Lmp__RowRange   rows = LMP__ROW_RANGE__INIT;
    lmp_wire_init(&env, 0, 0);
    ta.job_id = J->id, ta.task_id = FT_TASK_BASE + (uint64_t)b, ta.attempt = F->attempt;
    ta.kind        = LMP__TASK_KIND__TASK_KIND_FINETUNE_BLOCK;
    ta.layer       = "";
    ta.layer_index = (uint32_t)b;
    rows.begin = 0, rows.end = (uint64_t)J->n_seq;
    ta.rows       = &rows;
    ta.model_path = J->spec->model_path;
    ta.method     = J->spec->method;
    ta.finetune   = J->spec->finetune;
    ta.kernels    = J->spec->kernels;
    ta.n_threads =
        J->spec->threads ? J->spec->threads : p->cores; /* --threads: the driver's count */
    ta.n_inputs     = n;
    ta.inputs       = blobs;
    env.body_case   = LMP__ENVELOPE__BODY_TASK_ASSIGN;
    env.task_assign = &ta;
    struct ship sh  = SHIP_INIT;
    char        tag[48];
    snprintf(tag, sizeof(tag), "ft-b%d", b);
    if (!ship_spool(c, &ta, tag, &sh)) {
        free(blobs);
        return;
    }
    lmp_log_info("coordinator: fine-tuning of block %d -> worker '%s' (attempt %u%s)", b,
                 p->id.name, F->attempt, from ? "" : ", from the embedding");
    coord_peer_event(c, LMP_LOG_INFO, "finetune", pi, "block %d", b);
    coord_send(c, &p->id, &env);
    free(blobs);
    free(sh.path);
}

static const Lmp__Tensor *result_tensor(const Lmp__TaskResult *r, const char *name) {
    for (size_t i = 0; i < r->n_tensors; i++)
        if (r->tensors[i]->name && strcmp(r->tensors[i]->name, name) == 0) return r->tensors[i];
    return NULL;
}

/* The tuned block: its norms and layers, committed together. */
static void on_ft_result(struct lmp_coord *c, int pi, const Lmp__TaskResult *r,
                         Lmp__Envelope *ackenv, Lmp__TaskResultAck *ack) {
    struct job     *J = c->job;
    struct peer    *p = &c->peers[pi];
    struct ftstate *F = J ? J->ft : NULL;
    p->ft             = false;
    if (J == NULL || F == NULL || r->job_id != J->id ||
        J->state != LMP__JOB_STATE__JOB_STATE_RUNNING || F->worker != pi ||
        r->attempt != F->attempt || r->task_id != FT_TASK_BASE + (uint64_t)F->block) {
        lmp_log_info("coordinator: stale fine-tuning result from '%s' dropped", p->id.name);
        coord_send(c, &p->id, ackenv);
        return;
    }
    const int32_t      b     = F->block;
    const int64_t      dim   = J->m->cfg.dim;
    const Lmp__Tensor *nt[2] = {result_tensor(r, lmp_payload_name(LMP__PAYLOAD__PAYLOAD_ATTN_NORM)),
                                result_tensor(r, lmp_payload_name(LMP__PAYLOAD__PAYLOAD_FFN_NORM))};
    bool               ok    = true;
    for (int i = 0; i < 2; i++)
        ok = ok && nt[i] && nt[i]->dtype == LMP__DTYPE__DTYPE_F32 &&
             nt[i]->data.len == (size_t)dim * 4;
    char        why[96];
    const char *bad = NULL;
    for (int i = 0; ok && bad == NULL && i < 2; i++)
        bad = tuned_problem(nt[i]->data.data, nt[i]->data.len, "norms", why, sizeof(why));
    for (int64_t i = 0; ok && i < J->n_tasks; i++) {
        if (J->tasks[i].l->block != b || !F->have[i]) continue;
        const struct lmp_aq_layer *q = &F->held[i].aq;
        char                       nm[LMP_NAME_MAX + 32];
        lmp_payload_layer(nm, sizeof(nm), LMP__PAYLOAD__PAYLOAD_HELD, J->tasks[i].l->name,
                          LMP__PAYLOAD__PAYLOAD_CODEBOOKS);
        const Lmp__Tensor *tb = result_tensor(r, nm);
        lmp_payload_layer(nm, sizeof(nm), LMP__PAYLOAD__PAYLOAD_HELD, J->tasks[i].l->name,
                          LMP__PAYLOAD__PAYLOAD_SCALES);
        const Lmp__Tensor *ts = result_tensor(r, nm);
        ok = tb && ts && tb->dtype == LMP__DTYPE__DTYPE_F32 && ts->dtype == LMP__DTYPE__DTYPE_F32 &&
             tb->data.len == (size_t)q->sc.M * q->sc.K * q->sc.g * 4 &&
             ts->data.len == (size_t)q->n_out * 4;
        if (ok && bad == NULL &&
            (bad = tuned_problem(tb->data.data, tb->data.len, "codebooks", why, sizeof(why))) ==
                NULL)
            bad = tuned_problem(ts->data.data, ts->data.len, "scales", why, sizeof(why));
    }
    if (!ok || bad) { /* a failed attempt of this worker: the tuning runs again */
        char msg[200];
        if (bad)
            snprintf(msg, sizeof(msg), "fine-tuning result of block %d from '%s' refused: %s", b,
                     p->id.name, bad);
        else
            snprintf(msg, sizeof(msg),
                     "fine-tuning result of block %d from '%s' lacks tuned arrays", b, p->id.name);
        ack->accepted = false;
        coord_send(c, &p->id, ackenv);
        p->n_failed++;
        bench(p);
        ft_lost(c, true, msg);
        return;
    }
    ack->accepted = true;
    coord_send(c, &p->id, ackenv);
    /* the tuned norms and layers of block b: one part, committed all together or not at all
     * (a partial block would be tuned again from another start on resume) */
    struct lmp_err        err = {0};
    enum lmp_status       st  = LMP_OK;
    struct lmp_art_tensor at[2];
    struct lmp_art_layer  al[LMP_LIN_COUNT];
    int64_t               ti[LMP_LIN_COUNT];
    int64_t               n_al = 0;
    memset(at, 0, sizeof(at));
    memset(al, 0, sizeof(al));
    for (int i = 0; i < 2; i++) {
        snprintf(at[i].name, sizeof(at[i].name), "model.layers.%d.%s.weight", b, seq_norm_names[i]);
        at[i].dtype = LMP_DTYPE_F32, at[i].n_dims = 1, at[i].shape[0] = dim;
        at[i].data = nt[i]->data.data; /* borrowed for the commit */
    }
    for (int64_t i = 0; st == LMP_OK && i < J->n_tasks; i++) {
        struct task *t = &J->tasks[i];
        if (t->l->block != b || !F->have[i]) continue;
        struct lmp_compress_result *h = &F->held[i];
        char                        nm[LMP_NAME_MAX + 32];
        lmp_payload_layer(nm, sizeof(nm), LMP__PAYLOAD__PAYLOAD_HELD, t->l->name,
                          LMP__PAYLOAD__PAYLOAD_CODEBOOKS);
        memcpy(h->aq.codebooks, result_tensor(r, nm)->data.data, result_tensor(r, nm)->data.len);
        lmp_payload_layer(nm, sizeof(nm), LMP__PAYLOAD__PAYLOAD_HELD, t->l->name,
                          LMP__PAYLOAD__PAYLOAD_SCALES);
        memcpy(h->aq.scales, result_tensor(r, nm)->data.data, result_tensor(r, nm)->data.len);
        assert(n_al < LMP_LIN_COUNT);
        ti[n_al] = i;
        st       = lmp_compress_result_to_layer(&al[n_al++], h, &J->cspec, t->l->name, &err);
    }
    if (st == LMP_OK) {
        char bn[LMP_NAME_MAX];
        snprintf(bn, sizeof(bn), "model.layers.%d", b);
        st = lmp_artifact_commit_block(J->a, bn, al, n_al, at, 2, &err);
    }
    for (int64_t k = 0; k < n_al; k++) lmp_art_layer_release(&al[k]);
    if (st != LMP_OK) {
        job_fail(c, "cannot store fine-tuned block %d: %s", b, err.msg);
        return;
    }
    for (int64_t k = 0; k < n_al; k++) {
        const int64_t               i = ti[k];
        struct task                *t = &J->tasks[i];
        struct lmp_compress_result *h = &F->held[i];
        t->state                      = LMP__TASK_STATE__TASK_STATE_DONE;
        t->seconds = h->seconds, t->rel_before = h->rel_err_before, t->rel_after = h->rel_err_after;
        lmp_aq_layer_release(&h->aq);
        F->have[i] = false;
        drop_h(J, t);
        J->n_done++;
        J->params_done_run += (double)(t->l->n_out * t->l->n_in);
        lmp_log_info("coordinator: [%lld/%lld] %s committed after fine-tuning (rel err %.4g)",
                     (long long)J->n_done, (long long)J->n_tasks, t->l->name, h->rel_err_after);
        coord_event(c, LMP_LOG_INFO, LMP_EVENT_DONE, (int)i,
                    "[%lld/%lld] rel err %.4g -> %.4g, tuned", (long long)J->n_done,
                    (long long)J->n_tasks, h->rel_err_before, h->rel_err_after);
    }
    const Lmp__TaskStats *ts = r->stats;
    if (ts && ts->seconds > 0) J->sec_ft += ts->seconds;
    lmp_log_info("coordinator: block %d fine-tuned by '%s' (rel mse %.4g -> %.4g, %u steps, %.1fs)",
                 b, p->id.name, ts ? ts->rel_err_before : 0.0, ts ? ts->rel_err_after : 0.0,
                 ts ? ts->steps : 0u, ts ? ts->seconds : 0.0);
    F->worker     = -1;
    F->owner      = pi;
    F->pos        = b;
    F->attempt    = 0;
    F->n_failures = 0;
    F->block      = ft_ready_block(J); /* independent mode: the next block may be held already */
    job_finish_if_done(c);
}

/* Give every idle worker work: a slice of the earliest block being calibrated, then
 * quantization tasks, then slices of later blocks, then (rather than idle) a busy worker's
 * slice. */
static void tune_dispatch(struct lmp_coord *c);

static void dispatch(struct lmp_coord *c) {
    struct job *J = c->job;
    if (J == NULL || J->state != LMP__JOB_STATE__JOB_STATE_RUNNING) return;
    if (J->tune) {
        tune_dispatch(c);
        return;
    }
    for (int pi = 0; pi < MAX_PEERS; pi++) {
        if (!peer_idle(&c->peers[pi])) continue;
        struct lmp_sched      s;
        struct lmp_sched_pick d;
        if (!sched_snapshot(c, J, &s)) {
            job_fail(c, "out of memory");
            return;
        }
        lmp_sched_decide(&s, pi, &d);
        switch (d.kind) {
        case LMP_SCHED_FINETUNE:
            assign_ft(c, pi);
            break;
        case LMP_SCHED_SLICE:
            assign_cal(c, pi, d.index);
            break;
        case LMP_SCHED_TASK:
            assign(c, pi, d.index);
            break;
        case LMP_SCHED_ROWS:
            assign_rows(c, d.index, d.peers, d.n);
            break;
        case LMP_SCHED_NONE:
            break;
        }
        if (J->state != LMP__JOB_STATE__JOB_STATE_RUNNING) return;
    }
}

static void finalize_post(struct lmp_coord *c, struct job *J);

/* Every layer is committed: the artifact is finalized in the background (bg_done ends the
 * job). */
static void job_finish_if_done(struct lmp_coord *c) {
    struct job *J = c->job;
    if (J == NULL || J->state != LMP__JOB_STATE__JOB_STATE_RUNNING || J->n_done < J->n_tasks ||
        J->finalizing || J->tune)
        return;
    finalize_post(c, J);
}

/* Build the job from its spec: coordinator/plan.h plans it; the fine-tuning state, the
 * first block to calibrate, the job id and the saved spec are the coordinator's. */
static enum lmp_status job_plan(struct lmp_coord *c, const Lmp__JobSpec *spec_in, struct job **out,
                                struct lmp_err *err) {
    struct job *J = calloc(1, sizeof(*J));
    if (J == NULL) return lmp_err_set(err, LMP_ENOMEM, "out of memory");
    lmp_art_job_init(&J->aj);
    enum lmp_status st =
        spec_in->tune ? tune_plan(J, spec_in, err) : coord_plan_job(J, spec_in, err);
    if (st != LMP_OK) goto out;
    if (J->spec->finetune && J->spec->finetune->enabled) {
        if ((J->ft = calloc(1, sizeof(*J->ft))) == NULL ||
            (J->ft->held = calloc((size_t)J->n_tasks + 1, sizeof(*J->ft->held))) == NULL ||
            (J->ft->have = calloc((size_t)J->n_tasks + 1, sizeof(bool))) == NULL) {
            st = lmp_err_set(err, LMP_ENOMEM, "out of memory");
            goto out;
        }
        J->ft->block = -1, J->ft->worker = -1, J->ft->owner = -1;
    }
    if (J->need_block && (st = spool_open(J, err)) != LMP_OK) goto out;
    if (J->need_block) {
        for (int64_t i = 0; i < J->n_tasks; i++)
            if (J->tasks[i].state == LMP__TASK_STATE__TASK_STATE_PENDING)
                J->need_block[J->tasks[i].l->block] = true;
        const int32_t first = next_needed(J, -1);
        for (int64_t i = 0; i < J->n_slices; i++) J->slices[i].next_b = first;
    }
    J->state        = LMP__JOB_STATE__JOB_STATE_RUNNING;
    J->submitted_ms = J->started_ms = unix_ms();
    J->started_mono                 = mono_ms();
    /* keep the spec so a restarted coordinator picks the job up again */
    state_save(c, J->spec);
out:
    if (st != LMP_OK) job_destroy(&J);
    *out = J;
    return st;
}

/* ---- the background thread's items (bg.h) ----------------------------------------------
 * Planning, reading committed blocks back and finalizing run there; the loop goes on
 * answering. Each item carries its inputs; the loop keeps its hands off what an item uses
 * until it is back: a job being planned is not installed yet (only job_plan's reads of c->o,
 * which never change, and its own J); a read-back uses J->m (read-only) and J->a's committed
 * layers (the pipeline commits nothing meanwhile: a sequential slice or a block's tuning
 * waits for every earlier block to be final, and the layers of its block wait for it), with
 * J->bg_busy keeping job_end from closing the artifact under it; a finalize has J->finalizing
 * (no event is appended to the artifact meanwhile). Items come back in posting order. */

enum bgkind { BG_PLAN, BG_READ, BG_FINALIZE, BG_CLOSE, BG_LOAD, BG_HWRITE, BG_ADD };

struct bgjob {
    struct lmp_bg_item      it; /* first */
    enum bgkind             kind;
    struct lmp_coord       *c;       /* BG_PLAN: job_plan reads c->o only */
    struct job             *J;       /* BG_READ, BG_FINALIZE: the job; BG_PLAN: the result */
    Lmp__JobSpec           *spec;    /* BG_PLAN: borrowed from c->plan */
    bool                    ft;      /* BG_READ: for the block's tuning (else slice si) */
    bool                    fresh;   /* BG_READ: the activations start from the embedding */
    int                     pi, si;  /* BG_READ: the worker and slice it was reserved for */
    uint64_t                token;   /* BG_READ: the worker's read_token while in flight */
    uint32_t                attempt; /* BG_READ: ... and the attempt */
    int32_t                 from, b; /* BG_READ: blocks [from, b) */
    struct qship            qs;      /* BG_READ: the result */
    char                   *path;    /* BG_LOAD: a slice's spool file (removed once read) */
    uint64_t                off[LMP_INPUT_COUNT], len[LMP_INPUT_COUNT], xxh[LMP_INPUT_COUNT];
    int64_t                 n[LMP_INPUT_COUNT];
    double                 *g[LMP_INPUT_COUNT]; /* BG_LOAD: the sums read */
    const char             *bad;                /* BG_LOAD: gram_problem's finding */
    double                  seconds; /* BG_LOAD: the worker's seconds; both: the read's */
    double                  io_s;    /* BG_LOAD, BG_HWRITE: seconds reading / writing */
    struct blockh          *hb;      /* BG_HWRITE: the block's H (holds a reference) */
    uint64_t                seq;     /* BG_LOAD: the TaskResult's, for the answer */
    struct lmp_calib_grams *acc;     /* BG_ADD: the block's sums (the loop's cb->acc) */
    struct cal_sums       **sums;    /* BG_ADD: slices to add, in order (owned) */
    int64_t                 n_sums;
    bool                    last; /* BG_ADD: the block's last: then H into hf */
    float                  *hf[LMP_INPUT_COUNT];
    enum lmp_status         st;
    struct lmp_err          err;
};

enum { PLAN_REPLY_MS = 2000 }; /* a submitter waits this long for the plan, then gets JobAccepted */

static void bg_work(struct lmp_bg_item *it) {
    struct bgjob *bj = (struct bgjob *)it;
    switch (bj->kind) {
    case BG_PLAN:
        bj->st = job_plan(bj->c, bj->spec, &bj->J, &bj->err);
        break;
    case BG_READ:
        lmp_fault_sleep("LMP_FAULT_READBACK_SLEEP_MS"); /* tests: reading back a large model */
        bj->st = qship_build(&bj->qs, bj->J, bj->from, bj->b, &bj->err);
        break;
    case BG_HWRITE: { /* a block's H to the spool */
        const uint64_t t0 = mono_ms();
        bj->st            = LMP_OK;
        for (int k = 0; k < LMP_INPUT_COUNT && bj->st == LMP_OK; k++) {
            const struct blockh *h = bj->hb; /* its paths and lengths: set before the post */
            if (h->path[k] == NULL) continue;
            const void *part[1] = {h->h[k]};
            bj->st = lmp_blobfile_write(h->path[k], part, &h->len[k], 1, &bj->xxh[k], &bj->err);
        }
        bj->io_s = (double)(mono_ms() - t0) / 1000.0;
        break;
    }
    case BG_LOAD: { /* a slice's sums from the spool: read, checksummed, checked, removed */
        const uint64_t t0 = mono_ms();
        bj->st            = LMP_OK;
        for (int k = 0; k < LMP_INPUT_COUNT && bj->st == LMP_OK; k++) {
            if ((bj->g[k] = malloc((size_t)bj->len[k])) == NULL) {
                bj->st = lmp_err_set(&bj->err, LMP_ENOMEM, "out of memory for the Gram matrices");
                break;
            }
            bj->st =
                lmp_blobfile_read(bj->path, bj->off[k], bj->len[k], bj->xxh[k], bj->g[k], &bj->err);
            if (bj->st == LMP_OK && bj->bad == NULL)
                bj->bad = gram_problem((const uint8_t *)bj->g[k], bj->n[k]);
        }
        unlink(bj->path);
        bj->io_s = (double)(mono_ms() - t0) / 1000.0;
        break;
    }
    case BG_ADD: { /* slices' sums into the block's, in slice order; the last one: H */
        const uint64_t t0 = mono_ms();
        lmp_fault_sleep("LMP_FAULT_ADD_SLEEP_MS"); /* tests: adding a 70B block's sums */
        bj->st = LMP_OK;
        for (int64_t i = 0; i < bj->n_sums; i++)
            for (int k = 0; k < LMP_INPUT_COUNT; k++)
                lmp_calib_grams_add(bj->acc, (enum lmp_input)k, bj->sums[i]->g[k],
                                    bj->sums[i]->n_tok);
        for (int k = 0; bj->last && bj->st == LMP_OK && k < LMP_INPUT_COUNT; k++) {
            const int64_t n = lmp_calib_grams_n_in(bj->acc, (enum lmp_input)k);
            if ((bj->hf[k] = malloc((size_t)(n * n) * sizeof(float))) == NULL)
                bj->st = lmp_err_set(&bj->err, LMP_ENOMEM, "out of memory for block %d's H", bj->b);
            else if (lmp_calib_grams_h(bj->acc, (enum lmp_input)k, bj->hf[k]) != LMP_OK)
                bj->st =
                    lmp_err_set(&bj->err, LMP_EINVAL, "block %d: no calibration tokens", bj->b);
        }
        bj->io_s = (double)(mono_ms() - t0) / 1000.0;
        break;
    }
    case BG_CLOSE: /* after a job ended with a read-back in flight (bg_done) */
        lmp_artifact_close(&bj->J->a);
        break;
    case BG_FINALIZE: {
        struct job *J = bj->J;
        lmp_fault_sleep("LMP_FAULT_FINALIZE_SLEEP_MS"); /* tests: finalizing a large model */
        bj->st = lmp_artifact_put_model_tensors_q(J->a, J->m, J->quantized, bj->ft,
                                                  coord_spec_embed_bits(J->spec, false),
                                                  coord_spec_embed_bits(J->spec, true), &bj->err);
        if (bj->st == LMP_OK) bj->st = lmp_artifact_finalize(J->a, &bj->err);
        break;
    }
    }
}

static void bgjob_release(struct bgjob *bj) {
    free(bj->path);
    for (int k = 0; k < LMP_INPUT_COUNT; k++) free(bj->g[k]), free(bj->hf[k]);
    for (int64_t i = 0; i < bj->n_sums; i++) cal_sums_free(bj->sums[i]);
    free(bj->sums);
    lmp_calib_grams_destroy(&bj->acc); /* a job that ended with an add in flight */
}

static struct bgjob *bg_new(struct lmp_coord *c, enum bgkind kind, struct job *J) {
    struct bgjob *bj = calloc(1, sizeof(*bj));
    if (bj == NULL) return NULL;
    bj->it.work = bg_work;
    bj->kind = kind, bj->c = c, bj->J = J;
    return bj;
}

/* A reserved slice (ft false) or block tuning (ft true) gets its blocks [from, b) read back. */
static void read_post(struct lmp_coord *c, bool ft, int pi, int si, uint32_t attempt, int32_t from,
                      int32_t b, bool fresh) {
    struct bgjob *bj = bg_new(c, BG_READ, c->job);
    if (bj == NULL) {
        job_fail(c, "out of memory");
        return;
    }
    bj->ft = ft, bj->fresh = fresh, bj->pi = pi, bj->si = si, bj->attempt = attempt;
    bj->from = from, bj->b = b;
    bj->token = c->peers[pi].read_token = ++c->next_read_token;
    c->job->bg_busy++;
    lmp_bg_post(c->bg, &bj->it);
}

/* A slice's sums are in its spool file: read on the background thread (1.37 GB for a 7B
 * block), then answered and added (load_done). The slice keeps its worker meanwhile (not
 * dispatched again); the worker is free. */
static void load_post(struct lmp_coord *c, int pi, int si, int32_t b, const Lmp__TaskResult *r,
                      uint64_t seq) {
    struct job   *J  = c->job;
    struct bgjob *bj = bg_new(c, BG_LOAD, J);
    if (bj == NULL || (bj->path = strdup(r->outputs[0]->ref->path)) == NULL) {
        free(bj);
        job_fail(c, "out of memory");
        return;
    }
    bj->pi = pi, bj->si = si, bj->b = b, bj->attempt = r->attempt, bj->seq = seq;
    bj->seconds = r->stats ? r->stats->seconds : 0;
    for (int k = 0; k < LMP_INPUT_COUNT; k++) {
        const Lmp__BlobRef *ref = r->outputs[k]->ref;
        bj->off[k] = ref->offset, bj->len[k] = ref->length, bj->xxh[k] = ref->xxh64;
        bj->n[k] = lmp_calib_input_width(&J->m->cfg, (enum lmp_input)k);
    }
    J->slices[si].loading = true;
    J->bg_busy++;
    lmp_bg_post(c->bg, &bj->it);
}

static void load_done(struct lmp_coord *c, struct bgjob *bj) {
    struct job *J = bj->J;
    if (J != c->job || J->state != LMP__JOB_STATE__JOB_STATE_RUNNING || J->slices == NULL)
        return; /* job over */
    struct cslice *sl = &J->slices[bj->si];
    sl->loading       = false;
    if (sl->worker != bj->pi || sl->attempt != bj->attempt || sl->next_b != bj->b) return;
    struct peer       *p    = &c->peers[bj->pi];
    const bool         live = p->used && !p->dead;
    Lmp__Envelope      out;
    Lmp__TaskResultAck ack;
    result_ack_init(&out, &ack, bj->seq, J->id, CAL_TASK_BASE + (uint64_t)bj->si, bj->attempt);
    if (bj->st != LMP_OK || bj->bad) {
        char msg[768];
        snprintf(msg, sizeof(msg), "calibration result of block %d from '%s' refused: %s", bj->b,
                 p->id.name, bj->st != LMP_OK ? bj->err.msg : bj->bad);
        if (live) coord_send(c, &p->id, &out);
        cal_refuse(c, bj->pi, bj->si, msg);
        return;
    }
    ack.accepted = true;
    if (live) coord_send(c, &p->id, &out);
    uint64_t bytes = 0;
    for (int k = 0; k < LMP_INPUT_COUNT; k++) bytes += bj->len[k];
    lmp_log_info("coordinator: calibration sums of block %d, sequences [%lld, %lld), read from "
                 "'%s' (%.0f MB, %.2fs)",
                 bj->b, (long long)sl->begin, (long long)sl->end, bj->path, (double)bytes / 1e6,
                 bj->io_s);
    cal_take(c, bj->si, bj->b, bj->g, NULL, bj->seconds);
}

/* Block b's slices next in order go to the background thread to be added (BG_ADD), with
 * the block's sums, which the loop does not touch until they are back (add_done): one add
 * per block at a time; slices arriving meanwhile wait in cb->held. The last one also turns
 * the sums into H. */
static void cal_pump(struct lmp_coord *c, int32_t b) {
    struct job    *J  = c->job;
    struct cblock *cb = J->cblocks[b];
    int64_t        n  = 0;
    if (cb->adding) return;
    while (cb->next_slice + n < J->n_slices && cb->held[cb->next_slice + n]) n++;
    if (n == 0) return;
    struct bgjob *bj = bg_new(c, BG_ADD, J);
    if (bj == NULL || (bj->sums = calloc((size_t)n, sizeof(*bj->sums))) == NULL) {
        free(bj);
        job_fail(c, "out of memory");
        return;
    }
    for (int64_t i = 0; i < n; i++)
        bj->sums[i] = cb->held[cb->next_slice + i], cb->held[cb->next_slice + i] = NULL;
    bj->n_sums = n, bj->b = b;
    cb->next_slice += n;
    bj->last = cb->next_slice == J->n_slices;
    bj->acc = cb->acc, cb->acc = NULL, cb->adding = true;
    J->bg_busy++;
    lmp_bg_post(c->bg, &bj->it);
}

static void add_done(struct lmp_coord *c, struct bgjob *bj) {
    struct job *J = bj->J;
    if (J != c->job || J->state != LMP__JOB_STATE__JOB_STATE_RUNNING || J->cblocks == NULL ||
        J->cblocks[bj->b] == NULL)
        return; /* job over: bgjob_release frees the sums */
    struct cblock *cb = J->cblocks[bj->b];
    cb->acc = bj->acc, bj->acc = NULL, cb->adding = false;
    if (bj->st != LMP_OK) {
        job_fail(c, "%s", bj->err.msg);
        return;
    }
    if (bj->io_s >= 1.0)
        lmp_log_info("coordinator: block %d: %lld calibration slices added in %.2fs", bj->b,
                     (long long)bj->n_sums, bj->io_s);
    if (bj->last)
        cal_block_done(c, bj->b, bj->hf);
    else
        cal_pump(c, bj->b);
}

/* Block b's H over the inline limit (h->path[k] set: the file, h->len[k] its size) goes to
 * the spool on the background thread; the item holds a reference to h, so a job that ends
 * meanwhile frees it after (and removes the files, written or not). */
static void hwrite_post(struct lmp_coord *c, struct blockh *h, int32_t b) {
    struct job   *J  = c->job;
    struct bgjob *bj = bg_new(c, BG_HWRITE, J);
    if (bj == NULL) {
        job_fail(c, "out of memory");
        return;
    }
    bj->hb = h, bj->b = b;
    h->writing = true;
    h->refs++;
    J->bg_busy++;
    lmp_bg_post(c->bg, &bj->it);
}

static void hwrite_done(struct lmp_coord *c, struct bgjob *bj) {
    struct job    *J     = bj->J;
    struct blockh *h     = bj->hb;
    uint64_t       bytes = 0;
    for (int k = 0; k < LMP_INPUT_COUNT; k++) {
        if (h->path[k] == NULL) continue;
        h->xxh[k] = bj->xxh[k];
        bytes += h->len[k];
        if (bj->st == LMP_OK) free(h->h[k]), h->h[k] = NULL;
    }
    h->writing = false;
    if (J == c->job && J->state == LMP__JOB_STATE__JOB_STATE_RUNNING) {
        if (bj->st != LMP_OK)
            job_fail(c, "block %d: cannot store H for its tasks: %s", bj->b, bj->err.msg);
        else
            lmp_log_info("coordinator: H of block %d written to '%s' (%.0f MB, %.2fs)", bj->b,
                         J->spool, (double)bytes / 1e6, bj->io_s);
    }
    if (--h->refs == 0) {
        blockh_free(h);
        J->n_open--;
    }
}

/* job_end with a read-back in flight: the artifact is closed after it (FIFO). */
static void close_post(struct lmp_coord *c, struct job *J) {
    struct bgjob *bj = bg_new(c, BG_CLOSE, J);
    if (bj == NULL) return; /* out of memory: job_destroy closes it */
    J->bg_busy++;
    lmp_bg_post(c->bg, &bj->it);
}

static void finalize_post(struct lmp_coord *c, struct job *J) {
    struct bgjob *bj = bg_new(c, BG_FINALIZE, J);
    if (bj == NULL) {
        job_fail(c, "out of memory");
        return;
    }
    bj->ft        = J->ft != NULL;
    J->finalizing = true;
    J->bg_busy++;
    lmp_log_info("coordinator: job %llu: every layer committed; finalizing '%s'",
                 (unsigned long long)J->id, J->spec->out_path);
    lmp_bg_post(c->bg, &bj->it);
}

/* Plan spec (borrowed; copied) in the background. from = the submitter (NULL: a resume). */
static void plan_post(struct lmp_coord *c, const Lmp__JobSpec *spec, const struct lmp_zpeer *from,
                      uint64_t seq) {
    struct coord_plan *P  = calloc(1, sizeof(*P));
    struct bgjob      *bj = bg_new(c, BG_PLAN, NULL);
    if (P && bj) P->spec = coord_spec_copy(spec);
    if (P == NULL || bj == NULL || P->spec == NULL) {
        if (P && P->spec) lmp__job_spec__free_unpacked(P->spec, NULL);
        free(P);
        free(bj);
        if (from) coord_send_error(c, from, seq, LMP_ENOMEM, "out of memory");
        return;
    }
    P->id           = ++c->next_job_id;
    P->submitted_ms = unix_ms();
    P->resume       = from == NULL;
    P->replied      = from == NULL;
    if (from) P->from = *from;
    P->seq      = seq;
    P->reply_by = mono_ms() + PLAN_REPLY_MS;
    bj->spec    = P->spec;
    c->plan     = P;
    lmp_log_info("coordinator: planning job %llu (%s)", (unsigned long long)P->id,
                 P->spec->model_path ? P->spec->model_path : "");
    lmp_bg_post(c->bg, &bj->it);
}

static void plan_accept_reply(struct lmp_coord *c, const struct coord_plan *P,
                              const struct job *J) {
    Lmp__Envelope    out;
    Lmp__JobAccepted ja = LMP__JOB_ACCEPTED__INIT;
    lmp_wire_init(&out, 0, P->seq);
    ja.job_id        = P->id;
    ja.n_layers      = J && J->m ? (uint32_t)lmp_model_n_linears(J->m) : 0;
    ja.n_tasks       = J ? (uint32_t)J->n_tasks : 0;
    out.body_case    = LMP__ENVELOPE__BODY_JOB_ACCEPTED;
    out.job_accepted = &ja;
    coord_send(c, &P->from, &out);
}

/* A submitter still waiting past reply_by gets JobAccepted now (the job is QUEUED while
 * it is planned; a later planning failure shows as the job FAILED). */
static void plan_reply_late(struct lmp_coord *c) {
    struct coord_plan *P = c->plan;
    if (P == NULL || P->replied || mono_ms() < P->reply_by) return;
    P->replied = true;
    lmp_log_info("coordinator: job %llu accepted; still planning it", (unsigned long long)P->id);
    if (!P->resume) state_save(c, P->spec); /* accepted: a restart must not lose it */
    plan_accept_reply(c, P, NULL);
}

/* Whether a and b are the same job spec, field for field (their packed bytes). */
static bool same_spec(const Lmp__JobSpec *a, const Lmp__JobSpec *b) {
    if (a == NULL || b == NULL) return false;
    const size_t na = lmp__job_spec__get_packed_size(a), nb = lmp__job_spec__get_packed_size(b);
    if (na != nb) return false;
    uint8_t *pa = malloc(na ? na : 1), *pb = malloc(nb ? nb : 1);
    bool     same = false;
    if (pa && pb) {
        lmp__job_spec__pack(a, pa);
        lmp__job_spec__pack(b, pb);
        same = memcmp(pa, pb, na) == 0;
    }
    free(pa);
    free(pb);
    return same;
}

/* A submission of the very job being planned or running (a client that got no answer and
 * sent it again, maybe to a coordinator restarted with its state): answered with that job,
 * so a retried submission never becomes a second job nor a refusal. True when answered. */
static bool resubmitted(struct lmp_coord *c, const struct lmp_zpeer *from,
                        const Lmp__Envelope *env) {
    const Lmp__JobSpec *spec = env->job_submit->spec;
    struct coord_plan  *P    = c->plan;
    struct job         *J    = c->job;
    if (P && !P->cancelled && same_spec(P->spec, spec)) {
        if (!P->replied) { /* the first submitter gets its answer now too */
            P->reply_by = 0;
            plan_reply_late(c);
        }
        plan_accept_reply(c, &(struct coord_plan){.id = P->id, .from = *from, .seq = env->seq},
                          NULL);
        lmp_log_info("coordinator: job %llu submitted again by '%s'; the same job",
                     (unsigned long long)P->id, from->name);
        return true;
    }
    if (P == NULL && J && J->state == LMP__JOB_STATE__JOB_STATE_RUNNING &&
        same_spec(J->spec, spec)) {
        plan_accept_reply(c, &(struct coord_plan){.id = J->id, .from = *from, .seq = env->seq}, J);
        lmp_log_info("coordinator: job %llu submitted again by '%s'; the same job",
                     (unsigned long long)J->id, from->name);
        return true;
    }
    return false;
}

/* A job that never ran (planning failed or was cancelled), kept for status queries. */
static struct job *job_stub(struct coord_plan *P, Lmp__JobState state, const char *error) {
    struct job *J = calloc(1, sizeof(*J));
    if (J == NULL) return NULL;
    lmp_art_job_init(&J->aj);
    J->id           = P->id;
    J->spec         = P->spec;
    P->spec         = NULL;
    J->state        = state;
    J->submitted_ms = P->submitted_ms;
    J->finished_ms  = unix_ms();
    snprintf(J->error, sizeof(J->error), "%.250s", error);
    return J;
}

static void plan_done(struct lmp_coord *c, struct bgjob *bj) {
    struct coord_plan *P = c->plan;
    struct job        *J = bj->J;
    c->plan              = NULL;
    bj->J                = NULL;
    if (bj->st != LMP_OK) {
        if (P->resume) {
            lmp_log_warn("coordinator: cannot resume the job in '%s': %s", c->o.state_dir,
                         bj->err.msg);
        } else if (!P->replied) { /* refused, as if planned at once: the id is not used */
            lmp_log_info("coordinator: job refused: %s", bj->err.msg); /* the submitter is told */
            coord_send_error(c, &P->from, P->seq, bj->st, bj->err.msg);
            if (c->next_job_id == P->id) c->next_job_id--;
        } else {
            lmp_log_warn("coordinator: job %llu failed while planned: %s",
                         (unsigned long long)P->id, bj->err.msg);
            state_forget(c); /* saved when it was accepted; it will not run */
        }
        if (P->resume || P->replied) {
            struct job *S = job_stub(P, LMP__JOB_STATE__JOB_STATE_FAILED, bj->err.msg);
            if (S) job_destroy(&c->job), c->job = S;
        }
    } else {
        J->id           = P->id;
        J->submitted_ms = P->submitted_ms;
        job_destroy(&c->job);
        c->job = J;
        if (P->resume) {
            lmp_log_info("coordinator: resumed job %llu from '%s' (%lld of %lld layers committed)",
                         (unsigned long long)J->id, c->o.state_dir, (long long)J->n_done,
                         (long long)J->n_tasks);
        } else {
            lmp_log_info("coordinator: job %llu accepted: %lld tasks (%lld already committed)",
                         (unsigned long long)J->id, (long long)J->n_tasks, (long long)J->n_done);
            coord_event(c, LMP_LOG_INFO, LMP_EVENT_SUBMIT, -1,
                        "job %llu accepted from '%s': %lld tasks (%lld already committed)",
                        (unsigned long long)J->id, P->from.name, (long long)J->n_tasks,
                        (long long)J->n_done);
        }
        if (!P->replied) plan_accept_reply(c, P, J);
        if (P->cancelled) {
            coord_event(c, LMP_LOG_INFO, LMP_EVENT_CANCEL, -1, "job %llu cancelled: %s",
                        (unsigned long long)J->id, P->reason);
            snprintf(J->error, sizeof(J->error), "cancelled: %.200s", P->reason);
            job_end(c, LMP__JOB_STATE__JOB_STATE_CANCELLED);
        } else {
            job_finish_if_done(c); /* everything was already committed */
        }
    }
    if (P->spec) lmp__job_spec__free_unpacked(P->spec, NULL);
    free(P);
}

static void read_done(struct lmp_coord *c, struct bgjob *bj) {
    struct job *J = bj->J;
    if (c->peers[bj->pi].read_token == bj->token) c->peers[bj->pi].read_token = 0;
    if (J != c->job || J->state != LMP__JOB_STATE__JOB_STATE_RUNNING) return; /* job over */
    if (bj->st != LMP_OK) {
        job_fail(c, "cannot read the committed blocks for %s: %s",
                 bj->ft ? "fine-tuning" : "calibration", bj->err.msg);
        return;
    }
    const struct peer *p = &c->peers[bj->pi];
    if (!p->used || p->dead) return; /* peer_gone requeued it */
    if (bj->ft) {
        const struct ftstate *F = J->ft;
        if (F && F->worker == bj->pi && F->attempt == bj->attempt && p->ft)
            ft_send(c, bj->pi, &bj->qs);
    } else {
        const struct cslice *sl = &J->slices[bj->si];
        if (sl->worker == bj->pi && sl->attempt == bj->attempt && p->cal == bj->si)
            cal_send(c, bj->pi, bj->si, &bj->qs, bj->fresh);
    }
}

static void finalize_done(struct lmp_coord *c, struct bgjob *bj) {
    struct job *J = bj->J;
    J->finalizing = false;
    if (J != c->job || J->state != LMP__JOB_STATE__JOB_STATE_RUNNING) return; /* cancelled */
    if (bj->st != LMP_OK) {
        job_fail(c, "%s", bj->err.msg);
        return;
    }
    lmp_log_info("coordinator: job %llu done: %s", (unsigned long long)J->id, J->spec->out_path);
    coord_event(c, LMP_LOG_INFO, LMP_EVENT_JOB_END, -1, "job %llu done: %s",
                (unsigned long long)J->id, J->spec->out_path);
    job_end(c, LMP__JOB_STATE__JOB_STATE_DONE);
}

/* The loop takes back what the background thread has done. */
static void bg_done(struct lmp_coord *c) {
    struct lmp_bg_item *it;
    while ((it = lmp_bg_take(c->bg)) != NULL) {
        struct bgjob *bj = (struct bgjob *)it;
        if (bj->kind == BG_PLAN) {
            plan_done(c, bj);
        } else {
            struct job *J = bj->J;
            J->bg_busy--;
            if (bj->kind == BG_READ)
                read_done(c, bj);
            else if (bj->kind == BG_FINALIZE)
                finalize_done(c, bj);
            else if (bj->kind == BG_LOAD)
                load_done(c, bj);
            else if (bj->kind == BG_HWRITE)
                hwrite_done(c, bj);
            else if (bj->kind == BG_ADD)
                add_done(c, bj);
        }
        qship_release(&bj->qs);
        bgjob_release(bj);
        if (bj->kind == BG_PLAN) job_destroy(&bj->J);
        free(bj);
    }
}

/* lmp_bg_destroy: an item not taken back (the coordinator is going away). */
static void bg_drop(struct lmp_bg_item *it) {
    struct bgjob *bj = (struct bgjob *)it;
    qship_release(&bj->qs);
    bgjob_release(bj);
    if (bj->kind == BG_PLAN) job_destroy(&bj->J);
    free(bj);
}

/* A slot for a new peer of this role, -1 if none (MAX_WORKERS workers connected). A client
 * always gets one: the longest-silent client's if MAX_CLIENTS are in use. */
static int new_slot(struct lmp_coord *c, enum lmp_peer role) {
    int n = 0, free_slot = -1, reuse = -1;
    for (int i = 0; i < MAX_PEERS; i++) {
        const struct peer *q = &c->peers[i];
        if (!q->used) {
            if (free_slot < 0) free_slot = i;
        } else if (q->role == role) {
            n++;
            if (role == LMP_PEER_WORKER ? q->dead && reuse < 0
                                        : reuse < 0 || q->last_seen < c->peers[reuse].last_seen)
                reuse = i;
        }
    }
    const int cap = role == LMP_PEER_WORKER ? MAX_WORKERS : MAX_CLIENTS;
    if (n < cap && free_slot >= 0) return free_slot;
    if (reuse >= 0 && role == LMP_PEER_CLI) {
        lmp_log_info("coordinator: %d clients connected: the session of '%s' (silent %.1fs) ends",
                     n, c->peers[reuse].id.name,
                     (double)(mono_ms() - c->peers[reuse].last_seen) / 1000.0);
        c->peers[reuse].used = false;
    }
    return reuse;
}

/* ---- checks of a worker's result before anything of it is kept -------------------- */

/* The largest relative error a result may report (a worse layer is a broken worker,
 * not a hard layer: docs/protocol.md "Results are checked"). */
#define LMP_REL_ERR_MAX 1e3

static bool all_finite_f32(const Lmp__Tensor *t) {
    const float *v = (const float *)t->data.data;
    for (size_t i = 0; i < t->data.len / sizeof(float); i++)
        if (!isfinite(v[i])) return false;
    return true;
}

/* A worker whose result was refused gets no task for a while (longer after each failure),
 * so that the other workers' attempts come first. */
static void bench(struct peer *p) {
    const uint64_t n = p->n_failed < 10 ? p->n_failed : 10;
    p->busy_until    = mono_ms() + 1000 * n;
}

static bool rel_err_sane(double e) {
    return isfinite(e) && e >= 0 && e <= LMP_REL_ERR_MAX;
}

/* An AQLM result's payload (shapes already checked): data lengths and types, finite
 * codebooks and scales, codes below 2^B, sane errors. NULL, or what is wrong. */
static const char *aq_result_problem(const Lmp__TaskResult *r, const struct lmp_aq_scheme *sc) {
    const Lmp__Tensor *cd = r->codes, *cb = r->codebooks, *scl = r->scales;
    if (cd->dtype != LMP__DTYPE__DTYPE_U16 || cb->dtype != LMP__DTYPE__DTYPE_F32 ||
        scl->dtype != LMP__DTYPE__DTYPE_F32 ||
        cd->data.len != cd->shape[0] * cd->shape[1] * cd->shape[2] * 2 ||
        cb->data.len != cb->shape[0] * cb->shape[1] * cb->shape[2] * 4 ||
        scl->data.len != scl->shape[0] * 4)
        return "arrays of the wrong type or length";
    if (!all_finite_f32(cb)) return "codebooks not finite (NaN or Inf)";
    if (!all_finite_f32(scl)) return "scales not finite (NaN or Inf)";
    const uint16_t *code = (const uint16_t *)cd->data.data;
    for (size_t i = 0; i < cd->data.len / 2; i++)
        if ((int64_t)code[i] >= (int64_t)sc->K) return "codes out of range (>= 2^B)";
    if (r->stats == NULL) return "no statistics";
    if (!rel_err_sane(r->stats->rel_err_before) || !rel_err_sane(r->stats->rel_err_after))
        return "relative error outside [0, 1e3]";
    if (!isfinite(r->stats->seconds) || r->stats->seconds < 0) return "seconds not a duration";
    return NULL;
}

/* Is the connection of peer q still there? A Heartbeat is sent to it: with
 * ZMQ_ROUTER_MANDATORY the send fails once ZeroMQ has seen the connection close (the
 * process exited or was killed), and a live worker takes it as the coordinator's. */
static bool peer_connected(struct lmp_coord *c, struct peer *q) {
    Lmp__Envelope  env;
    Lmp__Heartbeat hb  = LMP__HEARTBEAT__INIT;
    struct lmp_err err = {0};
    lmp_wire_init(&env, ++c->seq, 0);
    hb.time_ms    = mono_ms();
    env.body_case = LMP__ENVELOPE__BODY_HEARTBEAT;
    env.heartbeat = &hb;
    return lmp_zsock_send(c->sock, &q->id, &env, NULL, &err) == LMP_OK;
}

/* Worker names are unique among live workers. The live worker other than routing id
 * `from` that goes by name, or -1. A namesake silent for the heartbeat timeout or whose
 * connection is gone is declared gone here, so that a worker restarted under its name (after
 * a crash, or to replace a hung one) joins at once. *gone: a slot of a gone worker of that
 * name (reused, so `workers --all` lists a name once), or -1. */
static int name_holder(struct lmp_coord *c, const struct lmp_zpeer *from, const char *name,
                       int *gone) {
    const uint64_t now = mono_ms();
    *gone              = -1;
    for (int i = 0; i < MAX_PEERS; i++) {
        struct peer *q = &c->peers[i];
        if (!q->used || q->role != LMP_PEER_WORKER || strcmp(q->id.name, name) != 0 ||
            (q->id.id_len == from->id_len && memcmp(q->id.id, from->id, from->id_len) == 0))
            continue;
        if (!q->dead && now - q->last_seen > c->o.heartbeat_timeout_ms) {
            char why[96];
            snprintf(why, sizeof(why), "silent for %.1fs and replaced by a worker of its name",
                     (double)(now - q->last_seen) / 1000.0);
            peer_gone(c, i, why);
        } else if (!q->dead && !peer_connected(c, q)) {
            peer_gone(c, i, "disconnected and replaced by a worker of its name");
        }
        if (!q->dead) return i;
        if (*gone < 0) *gone = i;
    }
    return -1;
}

/* A worker's name from its Hello (an old worker's routing id when it sends none), checked:
 * printable ASCII that fits a peer's name. NULL if it is not one. */
static const char *worker_name(const Lmp__Hello *h, const struct lmp_zpeer *from) {
    const char  *name = h->name && h->name[0] ? h->name : from->name;
    const size_t n    = strlen(name);
    if (n == 0 || n >= sizeof(from->name)) return NULL;
    for (size_t i = 0; i < n; i++)
        if (name[i] < 0x20 || name[i] > 0x7e) return NULL;
    return name;
}

static void on_hello(struct lmp_coord *c, const struct lmp_zpeer *from, const Lmp__Envelope *env) {
    const Lmp__Hello   *h    = env->hello;
    const enum lmp_peer role = lmp_peer_of_role(h->role);
    if (role != LMP_PEER_CLI && role != LMP_PEER_WORKER) {
        coord_send_error(c, from, env->seq, LMP_EPROTO, "hello: role must be cli or worker");
        return;
    }
    const char *name = role == LMP_PEER_WORKER ? worker_name(h, from) : from->name;
    if (name == NULL) {
        char msg[128];
        snprintf(msg, sizeof(msg), "hello: a worker name is 1 to %zu printable ASCII characters",
                 sizeof(from->name) - 1);
        lmp_log_warn("coordinator: worker '%s' refused: %s", from->name, msg);
        coord_send_error(c, from, env->seq, LMP_EPROTO, msg);
        return;
    }
    int pi = find_peer(c, from);
    if (role == LMP_PEER_WORKER) {
        int       gone   = -1;
        const int holder = name_holder(c, from, name, &gone);
        if (holder >= 0) {
            const struct peer *q = &c->peers[holder];
            char               msg[300], pid[32] = "";
            if (q->pid) snprintf(pid, sizeof(pid), " (pid %u)", q->pid);
            snprintf(msg, sizeof(msg), "a live worker of that name is connected from %s%s",
                     q->host[0] ? q->host : "an unnamed host", pid);
            lmp_log_warn("coordinator: worker '%s' refused: %s", name, msg);
            coord_send_error(c, from, env->seq, LMP_EBUSY, msg);
            return;
        }
        if (pi < 0) pi = gone;
    }
    if (pi < 0) pi = new_slot(c, role);
    if (pi < 0) {
        char msg[96];
        snprintf(msg, sizeof(msg), "too many workers (at most %d connected)", MAX_WORKERS);
        coord_send_error(c, from, env->seq, LMP_ENOMEM, msg);
        return;
    }
    struct peer     *p = &c->peers[pi];
    struct lmp_lease L; /* a new session: its old work is not coming back */
    if (p->used && !p->dead && peer_lease(c, pi, &L))
        lease_ops[L.kind].lost(c, &L, false, "its worker reconnected");
    if (p->used) peer_forget_owned(c, pi);
    memset(p, 0, sizeof(*p));
    p->used = true;
    p->id   = *from;
    snprintf(p->id.name, sizeof(p->id.name), "%s", name); /* a worker's messages name it */
    p->role         = role;
    p->task         = -1;
    p->cal          = -1;
    p->tune_rank    = -1;
    p->last_seen    = mono_ms();
    p->last_hb_unix = unix_ms();
    if (h->caps) {
        p->cores  = h->caps->cores;
        p->memory = h->caps->memory_bytes;
        p->pid    = h->caps->pid;
        snprintf(p->host, sizeof(p->host), "%s", h->caps->hostname ? h->caps->hostname : "");
        if (h->caps->n_kernel_variants)
            snprintf(p->kernels, sizeof(p->kernels), "%s", h->caps->kernel_variants[0]);
        snprintf(p->device, sizeof(p->device), "%s",
                 h->caps->device && h->caps->device[0] ? h->caps->device : "cpu");
    }
    if (role == LMP_PEER_WORKER)
        lmp_log_info("coordinator: worker '%s' joined (%u cores, kernels %s; host %s, pid %u)",
                     p->id.name, p->cores, p->kernels, p->host, p->pid);
    if (role == LMP_PEER_WORKER)
        coord_peer_event(c, LMP_LOG_INFO, LMP_EVENT_JOINED, pi, "%u cores, kernels %s", p->cores,
                         p->kernels);
    Lmp__Envelope out;
    Lmp__HelloAck ack;
    lmp_wire_hello_ack_init(&out, &ack, 0, env->seq, c->o.name, from->name, c->o.heartbeat_ms,
                            c->o.heartbeat_timeout_ms, LMP_WIRE_MAX_FRAME);
    coord_send(c, from, &out);
}

/* A row shard's result: its rows' codes and scales go into place (codebooks must equal
 * the other shards'); with the last shard in, the layer is committed. */
/* An accepted quantization result (a layer or a row shard): the worker's counters and
 * throughput, and the job's quantization seconds. */
static void credit_quant(struct job *J, struct peer *p, double seconds, double params) {
    p->n_done++;
    p->busy_s += seconds;
    p->params_done += params;
    if (seconds > 0) J->sec_quant += seconds;
}

static void on_rows_result(struct lmp_coord *c, int pi, const Lmp__TaskResult *r,
                           Lmp__Envelope *ackenv, Lmp__TaskResultAck *ack) {
    struct peer *p  = &c->peers[pi];
    struct job  *J  = c->job;
    const int    ti = (int)r->task_id - 1;
    if (J == NULL || r->job_id != J->id || J->state != LMP__JOB_STATE__JOB_STATE_RUNNING ||
        ti < 0 || ti >= J->n_tasks || J->tasks[ti].rows == NULL ||
        J->tasks[ti].attempt != r->attempt || rows_shard_of(&J->tasks[ti], pi) < 0) {
        lmp_log_info("coordinator: stale row result from '%s' dropped", p->id.name);
        coord_send(c, &p->id, ackenv);
        return;
    }
    struct task                *t  = &J->tasks[ti];
    struct rtask               *R  = t->rows;
    const int                   k  = rows_shard_of(t, pi);
    struct rshard              *sh = &R->s[k];
    const struct lmp_linear    *l  = t->l;
    const struct lmp_aq_scheme *sc = &J->cspec.sc;
    const int64_t               nr = sh->r1 - sh->r0, n_grp = l->n_in / sc->g,
                  n_cb       = (int64_t)sc->M * sc->K * sc->g;
    const uint64_t want_c[3] = {(uint64_t)nr, (uint64_t)n_grp, (uint64_t)sc->M};
    const uint64_t want_b[3] = {(uint64_t)sc->M, (uint64_t)sc->K, (uint64_t)sc->g};
    bool           ok        = !sh->done && r->rows && r->rows->begin == (uint64_t)sh->r0 &&
              r->rows->end == (uint64_t)sh->r1 && r->codes && r->codebooks && r->scales &&
              r->stats && r->codes->n_shape == 3 && r->codebooks->n_shape == 3 &&
              r->scales->n_shape == 1 && memcmp(r->codes->shape, want_c, sizeof(want_c)) == 0 &&
              memcmp(r->codebooks->shape, want_b, sizeof(want_b)) == 0 &&
              r->scales->shape[0] == (uint64_t)nr &&
              r->codes->data.len == (size_t)(nr * n_grp * sc->M) * 2 &&
              r->codebooks->data.len == (size_t)n_cb * 4 && r->scales->data.len == (size_t)nr * 4;
    bool first = true;
    for (int q = 0; q < R->n; q++) first &= !R->s[q].done;
    if (ok && !first && memcmp(R->cb, r->codebooks->data.data, (size_t)n_cb * 4) != 0) ok = false;
    const char *bad = ok ? aq_result_problem(r, sc) : NULL;
    p->task         = -1;
    if (!ok || bad) {
        char msg[400];
        if (bad)
            snprintf(msg, sizeof(msg), "row result for '%s' from '%s' refused: %s", l->name,
                     p->id.name, bad);
        else
            snprintf(msg, sizeof(msg),
                     "row result for '%s' from '%s' does not fit its shard (rows, shapes, "
                     "or codebooks differing from the other shards')",
                     l->name, p->id.name);
        lmp_log_warn("coordinator: %s", msg);
        ack->accepted = false;
        coord_send(c, &p->id, ackenv);
        p->n_failed++;
        bench(p);
        rows_abort(c, ti, true, msg);
        return;
    }
    ack->accepted = true;
    coord_send(c, &p->id, ackenv);
    memcpy(R->codes + sh->r0 * n_grp * sc->M, r->codes->data.data, r->codes->data.len);
    memcpy(R->scales + sh->r0, r->scales->data.data, r->scales->data.len);
    if (first) {
        memcpy(R->cb, r->codebooks->data.data, (size_t)n_cb * 4);
        R->rel_before = r->stats->rel_err_before, R->rel_after = r->stats->rel_err_after;
        R->bpw = r->stats->bits_per_weight, R->steps = r->stats->steps;
    }
    if (r->stats->seconds > R->seconds) R->seconds = r->stats->seconds;
    sh->done = true;
    credit_quant(J, p, r->stats->seconds, (double)(nr * l->n_in));
    for (int q = 0; q < R->n; q++)
        if (!R->s[q].done) return;
    /* every shard is in: commit the layer */
    struct lmp_err             err = {0};
    struct lmp_compress_result res = {.method          = LMP_COMPRESS_AQLM,
                                      .n_out           = l->n_out,
                                      .n_in            = l->n_in,
                                      .rel_err_before  = R->rel_before,
                                      .rel_err_after   = R->rel_after,
                                      .bits_per_weight = R->bpw,
                                      .seconds         = R->seconds,
                                      .steps           = R->steps};
    res.aq                         = (struct lmp_aq_layer){.sc        = *sc,
                                                           .n_out     = l->n_out,
                                                           .n_in      = l->n_in,
                                                           .codes     = R->codes,
                                                           .codebooks = R->cb,
                                                           .scales    = R->scales};
    const int n_sh                 = R->n;
    if (J->ft) { /* final after its block's fine-tuning */
        const enum lmp_status hs = ft_hold(J, ti, &res);
        rows_free(t);
        if (hs != LMP_OK)
            job_fail(c, "out of memory holding '%s' for fine-tuning", l->name);
        else
            lmp_log_info(
                "coordinator: %s quantized in %d row shards (rel err %.4g), held for its block's "
                "fine-tuning",
                l->name, n_sh, res.rel_err_after);
        return;
    }
    struct lmp_art_layer al = {0};
    enum lmp_status      st = lmp_compress_result_to_layer(&al, &res, &J->cspec, l->name, &err);
    if (st == LMP_OK) st = lmp_artifact_commit_layer(J->a, &al, &err);
    lmp_art_layer_release(&al);
    rows_free(t);
    if (st != LMP_OK) {
        job_fail(c, "cannot store layer '%s': %s", l->name, err.msg);
        return;
    }
    t->state   = LMP__TASK_STATE__TASK_STATE_DONE;
    t->worker  = -1;
    t->seconds = res.seconds, t->rel_before = res.rel_err_before, t->rel_after = res.rel_err_after;
    drop_h(J, t);
    J->n_done++;
    J->params_done_run += (double)(l->n_out * l->n_in);
    lmp_log_info("coordinator: [%lld/%lld] %s committed (%d row shards, rel err %.4g)",
                 (long long)J->n_done, (long long)J->n_tasks, l->name, n_sh, res.rel_err_after);
    coord_event(c, LMP_LOG_INFO, LMP_EVENT_DONE, ti,
                "[%lld/%lld] rel err %.4g -> %.4g, %.1fs, %d row shards", (long long)J->n_done,
                (long long)J->n_tasks, res.rel_err_before, res.rel_err_after, res.seconds, n_sh);
    job_finish_if_done(c);
}

static void on_result(struct lmp_coord *c, int pi, const Lmp__Envelope *env) {
    struct peer           *p = &c->peers[pi];
    const Lmp__TaskResult *r = env->task_result;
    struct job            *J = c->job;
    Lmp__Envelope          out;
    Lmp__TaskResultAck     ack;
    result_ack_init(&out, &ack, env->seq, r->job_id, r->task_id, r->attempt);
    p->cancelling = false;
    if (r->kind == LMP__TASK_KIND__TASK_KIND_TUNE || r->task_id >= LMP_TUNE_TASK_BASE) {
        on_tune_result(c, pi, r, &out, &ack);
        return;
    }
    if (r->kind == LMP__TASK_KIND__TASK_KIND_FINETUNE_BLOCK || r->task_id >= FT_TASK_BASE) {
        on_ft_result(c, pi, r, &out, &ack);
        return;
    }
    if (r->kind == LMP__TASK_KIND__TASK_KIND_CALIBRATE || r->task_id >= CAL_TASK_BASE) {
        on_cal_result(c, pi, r, &out, &ack);
        return;
    }
    if (r->kind == LMP__TASK_KIND__TASK_KIND_QUANTIZE_ROWS) {
        on_rows_result(c, pi, r, &out, &ack);
        return;
    }
    const int ti = (int)r->task_id - 1;
    if (J == NULL || r->job_id != J->id || J->state != LMP__JOB_STATE__JOB_STATE_RUNNING ||
        ti < 0 || ti >= J->n_tasks || J->tasks[ti].worker != pi ||
        J->tasks[ti].attempt != r->attempt) {
        lmp_log_info("coordinator: stale result from '%s' dropped", p->id.name);
        if (p->task == ti) p->task = -1;
        coord_send(c, &p->id, &out);
        return;
    }
    struct task               *t   = &J->tasks[ti];
    const struct lmp_linear   *l   = t->l;
    struct lmp_err             err = {0};
    enum lmp_status            st  = LMP_OK;
    struct lmp_compress_result res = {
        .method = J->cspec.method, .n_out = l->n_out, .n_in = l->n_in};
    const Lmp__TaskStats *ts = r->stats;
    if (ts) {
        res.rel_err_before = ts->rel_err_before, res.rel_err_after = ts->rel_err_after;
        res.bits_per_weight = ts->bits_per_weight, res.seconds = ts->seconds;
        res.steps = ts->steps;
    }
    const char *bad = NULL;
    if (ts && (!rel_err_sane(ts->rel_err_before) || !rel_err_sane(ts->rel_err_after)))
        st = lmp_err_set(&err, LMP_EPROTO,
                         "result for '%s' from '%s' refused: relative error "
                         "outside [0, 1e3]",
                         l->name, p->id.name);
    else if (J->cspec.method == LMP_COMPRESS_AQLM) {
        const struct lmp_aq_scheme *sc        = &J->cspec.sc;
        const uint64_t              want_c[3] = {(uint64_t)l->n_out, (uint64_t)(l->n_in / sc->g),
                                                 (uint64_t)sc->M};
        const uint64_t              want_b[3] = {(uint64_t)sc->M, (uint64_t)sc->K, (uint64_t)sc->g};
        if (r->codes == NULL || r->codebooks == NULL || r->scales == NULL ||
            r->codes->n_shape != 3 || r->codebooks->n_shape != 3 || r->scales->n_shape != 1 ||
            memcmp(r->codes->shape, want_c, sizeof(want_c)) != 0 ||
            memcmp(r->codebooks->shape, want_b, sizeof(want_b)) != 0 ||
            r->scales->shape[0] != (uint64_t)l->n_out) {
            st = lmp_err_set(&err, LMP_EPROTO,
                             "result for '%s' from '%s' does not have the "
                             "job's scheme or the layer's shape",
                             l->name, p->id.name);
        } else if ((bad = aq_result_problem(r, sc)) != NULL) {
            st = lmp_err_set(&err, LMP_EPROTO, "result for '%s' from '%s' refused: %s", l->name,
                             p->id.name, bad);
        } else {
            res.aq = (struct lmp_aq_layer){.sc        = *sc,
                                           .n_out     = l->n_out,
                                           .n_in      = l->n_in,
                                           .codes     = (uint16_t *)r->codes->data.data,
                                           .codebooks = (float *)r->codebooks->data.data,
                                           .scales    = (float *)r->scales->data.data};
        }
    } else {
        const Lmp__Tensor *q = NULL, *s = NULL, *z = NULL;
        for (size_t i = 0; i < r->n_tensors; i++) {
            const char *nm = r->tensors[i]->name ? r->tensors[i]->name : "";
            if (strcmp(nm, lmp_payload_name(LMP__PAYLOAD__PAYLOAD_RTN_Q)) == 0)
                q = r->tensors[i];
            else if (strcmp(nm, lmp_payload_name(LMP__PAYLOAD__PAYLOAD_RTN_SCALE)) == 0)
                s = r->tensors[i];
            else if (strcmp(nm, lmp_payload_name(LMP__PAYLOAD__PAYLOAD_RTN_ZERO)) == 0)
                z = r->tensors[i];
        }
        const uint64_t ng = (uint64_t)(l->n_out * (l->n_in / J->cspec.rtn_group));
        if (q == NULL || s == NULL || z == NULL || q->dtype != LMP__DTYPE__DTYPE_U8 ||
            s->dtype != LMP__DTYPE__DTYPE_U16 || z->dtype != LMP__DTYPE__DTYPE_U16 ||
            q->data.len != (size_t)(l->n_out * l->n_in) || s->data.len != ng * 2 ||
            z->data.len != ng * 2) {
            st = lmp_err_set(&err, LMP_EPROTO, "rtn result for '%s' from '%s' has wrong arrays",
                             l->name, p->id.name);
        } else {
            res.rtn_q     = q->data.data;
            res.rtn_scale = (uint16_t *)s->data.data;
            res.rtn_zero  = (uint16_t *)z->data.data;
        }
    }
    if (st == LMP_OK && J->ft) { /* final after its block's fine-tuning */
        p->task = -1;
        if (ft_hold(J, ti, &res) != LMP_OK) {
            job_fail(c, "out of memory holding '%s' for fine-tuning", l->name);
            return;
        }
        ack.accepted = true;
        coord_send(c, &p->id, &out);
        credit_quant(J, p, res.seconds, (double)(l->n_out * l->n_in));
        lmp_log_info(
            "coordinator: %s quantized by '%s' (rel err %.4g), held for its block's fine-tuning",
            l->name, p->id.name, res.rel_err_after);
        return;
    }
    struct lmp_art_layer al = {0};
    if (st == LMP_OK) st = lmp_compress_result_to_layer(&al, &res, &J->cspec, l->name, &err);
    if (st == LMP_OK) st = lmp_artifact_commit_layer(J->a, &al, &err);
    lmp_art_layer_release(&al);
    p->task = -1;
    if (st != LMP_OK) {
        ack.accepted = false;
        coord_send(c, &p->id, &out);
        p->n_failed++;
        if (st == LMP_EPROTO) {
            bench(p);
            lmp_log_warn("coordinator: %s", err.msg);
            requeue(c, ti, true, err.msg);
        } else {
            job_fail(c, "cannot store layer '%s': %s", l->name, err.msg);
        }
        return;
    }
    ack.accepted = true;
    coord_send(c, &p->id, &out);
    t->state   = LMP__TASK_STATE__TASK_STATE_DONE;
    t->worker  = -1;
    t->seconds = res.seconds, t->rel_before = res.rel_err_before, t->rel_after = res.rel_err_after;
    drop_h(J, t);
    J->n_done++;
    const double n = (double)(l->n_out * l->n_in);
    J->params_done_run += n;
    credit_quant(J, p, res.seconds, n);
    lmp_log_info("coordinator: [%lld/%lld] %s committed (worker '%s', rel err %.4g)",
                 (long long)J->n_done, (long long)J->n_tasks, l->name, p->id.name,
                 res.rel_err_after);
    coord_event(c, LMP_LOG_INFO, LMP_EVENT_DONE, ti, "[%lld/%lld] rel err %.4g -> %.4g, %.1fs",
                (long long)J->n_done, (long long)J->n_tasks, res.rel_err_before, res.rel_err_after,
                res.seconds);
    job_finish_if_done(c);
}

static void on_task_error(struct lmp_coord *c, int pi, const Lmp__Envelope *env) {
    struct peer      *p    = &c->peers[pi];
    const Lmp__Error *e    = env->error;
    struct job       *J    = c->job;
    enum lmp_status   code = LMP_EPROTO;
    lmp_status_from_name(e->code ? e->code : "", &code);
    struct lmp_lease L;
    const bool       held =
        peer_lease(c, pi, &L) && e->job_id == J->id && e->task_id == lease_ops[L.kind].wire_id(&L);
    char msg[300];
    snprintf(msg, sizeof(msg), "%s: %s (worker '%s')", e->code ? e->code : "?",
             e->message ? e->message : "", p->id.name);
    if (held && L.kind == LMP_LEASE_TUNE &&
        (code == LMP_EMISMATCH || code == LMP_EFORMAT || code == LMP_EUNSUP ||
         code == LMP_ENOENT)) { /* an input the tuning refuses: no other run would take it */
        p->cancelling    = false;
        c->job->error_st = code;
        tune_gang_stop(c, msg);
        job_fail(c, "PV-Tuning refused its input: %s", msg);
        return;
    }
    if (held && L.kind == LMP_LEASE_FINETUNE) { /* whatever the code: the tuning is over */
        if (code == LMP_EBUSY) p->busy_until = mono_ms() + 1000;
        p->cancelling = false;
        lease_ops[L.kind].lost(c, &L, ft_fails(code), msg);
        return;
    }
    if (code == LMP_ECANCEL || p->cancelling) { /* it stopped on request, or on its own */
        p->cancelling = false;
        p->ft         = false;
        if (peer_lease(c, pi, &L)) lease_ops[L.kind].lost(c, &L, false, "cancelled");
        p->task = -1;
        return;
    }
    lmp_log_warn("coordinator: worker '%s' reports %s: %s", p->id.name, e->code ? e->code : "?",
                 e->message ? e->message : "");
    coord_peer_event(c, LMP_LOG_WARN, LMP_EVENT_FAILED, pi, "%s: %s", e->code ? e->code : "?",
                     e->message ? e->message : "");
    /* EBUSY: a worker that reconnected (e.g. to a restarted coordinator) while still running
     * an earlier task: not the work's fault. Leave the worker alone a while. */
    if (code == LMP_EBUSY) p->busy_until = mono_ms() + 1000;
    if (!held) {
        if (code == LMP_EBUSY) p->task = -1;
        return;
    }
    if (code != LMP_EBUSY) { /* a failed attempt of this worker: others get the retry first */
        p->n_failed++;
        bench(p);
    }
    lease_ops[L.kind].lost(c, &L, lease_ops[L.kind].fails(code), msg);
}

static void on_message(struct lmp_coord *c, const struct lmp_zpeer *from, Lmp__Envelope *env) {
    if (env->body_case == LMP__ENVELOPE__BODY_HELLO) {
        struct lmp_err err = {0};
        if (lmp_wire_check_sender(env, LMP_PEER_CLI | LMP_PEER_WORKER, from->name, &err) !=
            LMP_OK) {
            coord_send_error(c, from, env->seq, LMP_EPROTO, err.msg);
            return;
        }
        on_hello(c, from, env);
        return;
    }
    const int pi = find_peer(c, from);
    if (pi < 0 || c->peers[pi].dead) {
        lmp_log_warn("coordinator: '%s' sent %s before Hello: refused", from->name,
                     lmp_wire_body_name(env->body_case));
        coord_send_error(c, from, env->seq, LMP_EPROTO, "say Hello first");
        return;
    }
    struct peer   *p   = &c->peers[pi];
    struct lmp_err err = {0};
    if (lmp_wire_check_sender(env, p->role, p->id.name, &err) != LMP_OK) {
        lmp_log_warn("coordinator: %s", err.msg);
        coord_send_error(c, from, env->seq, LMP_EPROTO, err.msg);
        return;
    }
    p->last_seen  = mono_ms();
    struct job *J = c->job;
    switch (env->body_case) {
    case LMP__ENVELOPE__BODY_HEARTBEAT: {
        p->last_hb_unix = unix_ms();
        lease_check_running(c, pi, env->heartbeat);
        Lmp__Envelope  out;
        Lmp__Heartbeat hb = LMP__HEARTBEAT__INIT;
        lmp_wire_init(&out, 0, env->seq);
        hb.time_ms    = mono_ms();
        out.body_case = LMP__ENVELOPE__BODY_HEARTBEAT;
        out.heartbeat = &hb;
        coord_send(c, from, &out);
        break;
    }
    case LMP__ENVELOPE__BODY_TASK_PROGRESS:
        if (J && p->task >= 0 && env->task_progress->task_id == (uint64_t)p->task + 1)
            J->tasks[p->task].progress_s = env->task_progress->elapsed_s;
        if (J && J->tune && env->task_progress->task_id >= LMP_TUNE_TASK_BASE)
            tune_progress(c, pi, env->task_progress);
        else if (J && J->ft && env->task_progress->task_id >= FT_TASK_BASE)
            ft_progress(c, pi, env->task_progress);
        else
            coord_on_progress(c, pi, env->task_progress);
        break;
    case LMP__ENVELOPE__BODY_TASK_RESULT:
        on_result(c, pi, env);
        break;
    case LMP__ENVELOPE__BODY_ROWS_PARTIAL:
        on_rows_partial(c, pi, env->rows_partial);
        break;
    case LMP__ENVELOPE__BODY_TASK_HANDBACK: {
        struct lmp_lease L;
        if (peer_lease(c, pi, &L) && env->task_handback->job_id == J->id &&
            env->task_handback->task_id == lease_ops[L.kind].wire_id(&L)) {
            char what[LMP_NAME_MAX + 64];
            lease_ops[L.kind].describe(c, &L, what, sizeof(what));
            lmp_log_info("coordinator: worker '%s' handed back %s (%s)", p->id.name, what,
                         env->task_handback->reason ? env->task_handback->reason : "");
            lease_ops[L.kind].lost(c, &L, false, "handed back");
        }
        p->task       = -1;
        p->cancelling = true; /* it is leaving: no new task */
        break;
    }
    case LMP__ENVELOPE__BODY_ERROR:
        on_task_error(c, pi, env);
        break;
    case LMP__ENVELOPE__BODY_JOB_SUBMIT: {
        if (resubmitted(c, from, env)) break;
        if ((J && J->state == LMP__JOB_STATE__JOB_STATE_RUNNING) || c->plan) {
            char msg[128];
            snprintf(msg, sizeof(msg), "job %llu is %s; one job at a time",
                     (unsigned long long)(c->plan ? c->plan->id : J->id),
                     c->plan ? "being planned" : "running");
            coord_send_error(c, from, env->seq, LMP_EINVAL, msg);
            break;
        }
        plan_post(c, env->job_submit->spec, from, env->seq); /* answered by plan_done */
        break;
    }
    case LMP__ENVELOPE__BODY_JOB_QUERY:
        coord_reply_status(c, from, env->seq, env->job_query->job_id, env->job_query->with_layers,
                           env->job_query->with_workers);
        break;
    case LMP__ENVELOPE__BODY_JOB_CANCEL: {
        const uint64_t id = env->job_cancel->job_id;
        if (c->plan && (id == 0 || id == c->plan->id)) { /* ends cancelled once planned */
            struct coord_plan *P = c->plan;
            P->cancelled         = true;
            snprintf(P->reason, sizeof(P->reason), "%s",
                     env->job_cancel->reason && env->job_cancel->reason[0] ? env->job_cancel->reason
                                                                           : "by request");
            lmp_log_info("coordinator: job %llu cancelled by '%s' while planned",
                         (unsigned long long)P->id, from->name);
            coord_reply_status(c, from, env->seq, P->id, false, false);
            break;
        }
        if (J == NULL || (id != 0 && id != J->id)) {
            coord_send_error(c, from, env->seq, LMP_EINVAL, "no such job");
            break;
        }
        if (J->state == LMP__JOB_STATE__JOB_STATE_RUNNING) {
            lmp_log_info("coordinator: job %llu cancelled by '%s'", (unsigned long long)J->id,
                         from->name);
            coord_event(c, LMP_LOG_INFO, LMP_EVENT_CANCEL, -1, "job %llu cancelled by '%s': %s",
                        (unsigned long long)J->id, from->name,
                        env->job_cancel->reason && env->job_cancel->reason[0]
                            ? env->job_cancel->reason
                            : "by request");
            snprintf(J->error, sizeof(J->error), "cancelled: %s",
                     env->job_cancel->reason && env->job_cancel->reason[0] ? env->job_cancel->reason
                                                                           : "by request");
            job_end(c, LMP__JOB_STATE__JOB_STATE_CANCELLED);
        }
        coord_reply_status(c, from, env->seq, J->id, false, false);
        break;
    }
    case LMP__ENVELOPE__BODY_WORKER_QUERY: {
        coord_reply_workers(c, from, env->seq, env->worker_query->with_dead);
        break;
    }
    case LMP__ENVELOPE__BODY_LOG_QUERY:
        coord_reply_logs(c, from, env->seq, env->log_query);
        break;
    default:
        coord_send_error(c, from, env->seq, LMP_EUNSUP, "not supported by this coordinator");
    }
}

/* ---- the loop ------------------------------------------------------------------- */

static void on_timer(struct lmp_coord *c) {
    const uint64_t now = mono_ms();
    for (int i = 0; i < MAX_PEERS; i++) {
        struct peer *p = &c->peers[i];
        if (!p->used || p->dead) continue;
        struct lmp_lease L;
        if (p->unsent_task && peer_lease(c, i, &L) &&
            lease_ops[L.kind].wire_id(&L) == p->unsent_task && L.attempt == p->unsent_attempt) {
            char what[LMP_NAME_MAX + 64], why[LMP_NAME_MAX + 256];
            lease_ops[L.kind].describe(c, &L, what, sizeof(what));
            snprintf(why, sizeof(why), "the assignment of %s to worker '%s' could not be sent",
                     what, p->id.name);
            lease_give_up(c, &L, why);
        }
        p->unsent_task = 0;
        if (p->role == LMP_PEER_WORKER && now - p->last_seen > c->o.heartbeat_timeout_ms) {
            char why[64];
            snprintf(why, sizeof(why), "silent for %.1fs", (double)(now - p->last_seen) / 1000.0);
            peer_gone(c, i, why);
        } else if (p->role == LMP_PEER_CLI && now - p->last_seen > CLIENT_IDLE_MS) {
            p->used = false; /* a client answered and gone quiet: its session ends */
        }
    }
}

enum lmp_status lmp_coord_new(const struct lmp_coord_opts *o, struct lmp_coord **out,
                              struct lmp_err *err) {
    assert(o && out);
    struct lmp_coord *c  = calloc(1, sizeof(*c));
    enum lmp_status   st = LMP_OK;
    if (c == NULL) return lmp_err_set(err, LMP_ENOMEM, "out of memory");
    c->o = *o;
    if ((c->zctx = zmq_ctx_new()) == NULL || (c->sock = zmq_socket(c->zctx, ZMQ_ROUTER)) == NULL) {
        st = lmp_err_set(err, LMP_EIO, "cannot create a zeromq socket: %s", zmq_strerror(errno));
        goto fail;
    }
    if ((st = lmp_zsock_configure(c->sock, 0, 5000, err)) ||
        (st = lmp_bind_check(o->bind, o->curve != NULL, o->insecure, err)))
        goto fail;
    if (o->curve && ((st = lmp_zauth_start(c->zctx, c->sock, o->curve, &c->zauth, err)) ||
                     (st = lmp_zsock_curve_server(c->sock, o->curve, err))))
        goto fail;
    c->o.curve = NULL; /* borrowed during lmp_coord_new only */
    if (zmq_bind(c->sock, o->bind) != 0) {
        st = lmp_err_set(err, LMP_EIO, "cannot bind '%s': %s", o->bind, zmq_strerror(errno));
        goto fail;
    }
    size_t n = sizeof(c->endpoint);
    if (zmq_getsockopt(c->sock, ZMQ_LAST_ENDPOINT, c->endpoint, &n) != 0)
        snprintf(c->endpoint, sizeof(c->endpoint), "%s", o->bind);
    if ((st = lmp_bg_new(&c->bg, err))) goto fail;
    if (o->state_dir) {
        mkdir(o->state_dir, 0755);
        state_load_last(c);
        char *p = state_path(c);
        if (p == NULL) {
            st = lmp_err_set(err, LMP_ENOMEM, "out of memory");
            goto fail;
        }
        uint8_t       *buf = NULL;
        size_t         len = 0;
        struct lmp_err e2  = {0};
        if (access(p, F_OK) == 0 && lmp_file_read_all(p, (char **)&buf, &len, &e2) == LMP_OK) {
            Lmp__JobSpec *spec = lmp__job_spec__unpack(NULL, len, buf);
            char          q[256];
            if (spec == NULL)
                lmp_log_warn("coordinator: '%s' is not a job spec: ignored",
                             lmp_str_escape(q, sizeof(q), p));
            else if (lmp_job_spec_check(spec, p, &e2) != LMP_OK) /* as a client's would be */
                lmp_log_warn("coordinator: %s: ignored", e2.msg);
            else /* planned in the background: the loop answers meanwhile (QUEUED) */
                plan_post(c, spec, NULL, 0);
            if (spec) lmp__job_spec__free_unpacked(spec, NULL);
            free(buf);
        }
        free(p);
    }
    *out = c;
    return LMP_OK;
fail:
    lmp_coord_destroy(&c);
    *out = NULL;
    return st;
}

const char *lmp_coord_endpoint(const struct lmp_coord *c) {
    return c->endpoint;
}

enum lmp_status lmp_coord_run(struct lmp_coord *c, volatile sig_atomic_t *stop,
                              struct lmp_err *err) {
    assert(c && stop);
    uint64_t last_tick = 0;
    while (!*stop) {
        zmq_pollitem_t items[2] = {{c->sock, 0, ZMQ_POLLIN, 0},
                                   {NULL, lmp_bg_fd(c->bg), ZMQ_POLLIN, 0}};
        int            n        = zmq_poll(items, 2, 100);
        if (n < 0 && errno != EINTR)
            return lmp_err_set(err, LMP_EIO, "poll: %s", zmq_strerror(errno));
        if (n > 0 && (items[1].revents & ZMQ_POLLIN)) bg_done(c);
        n = n > 0 && (items[0].revents & ZMQ_POLLIN);
        /* drain what is there, without blocking */
        for (int k = 0; n > 0 && k < 64; k++) {
            struct lmp_zpeer from = {0};
            Lmp__Envelope   *env  = NULL;
            struct lmp_err   rerr = {0};
            enum lmp_status  st   = lmp_zsock_recv(c->sock, 0, 0, &from, NULL, &env, &rerr);
            if (st == LMP_OK && env == NULL) break;
            if (st == LMP_EVERSION) {
                lmp_log_warn("coordinator: refused '%s': %s", from.name, rerr.msg);
                char msg[160];
                snprintf(msg, sizeof(msg), "this coordinator speaks protocol %u",
                         LMP_PROTO_VERSION);
                coord_send_error(c, &from, 0, LMP_EVERSION, msg);
                int pi = find_peer(c, &from);
                if (pi >= 0) peer_gone(c, pi, "speaks another protocol version");
                continue;
            }
            if (st == LMP_EPROTO || st == LMP_EPERM) {
                lmp_log_warn("coordinator: %s from '%s' dropped: %s",
                             st == LMP_EPERM ? "refused message" : "bad frame", from.name,
                             rerr.msg);
                if (from.id_len) coord_send_error(c, &from, 0, st, rerr.msg);
                continue;
            }
            if (st != LMP_OK) {
                lmp_log_warn("coordinator: receive: %s", rerr.msg);
                break;
            }
            on_message(c, &from, env);
            lmp_wire_free(&env);
        }
        const uint64_t now = mono_ms();
        if (now - last_tick >= 200) {
            last_tick = now;
            on_timer(c);
            plan_reply_late(c);
        }
        dispatch(c);
    }
    return LMP_OK;
}

void lmp_coord_destroy(struct lmp_coord **cp) {
    struct lmp_coord *c = *cp;
    if (c == NULL) return;
    lmp_bg_destroy(&c->bg, bg_drop); /* first: its items use the job */
    if (c->plan && c->plan->spec) lmp__job_spec__free_unpacked(c->plan->spec, NULL);
    free(c->plan);
    c->plan = NULL;
    job_destroy(&c->job);
    coord_log_free(c);
    if (c->sock) zmq_close(c->sock);
    lmp_zauth_stop(&c->zauth); /* after the socket it serves, before the context */
    if (c->zctx) zmq_ctx_term(c->zctx);
    free(c);
    *cp = NULL;
}
