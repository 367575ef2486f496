/*  coord_log - the coordinator's events and log ring (see coord_internal.h)
 *
 *  Every event (artifact/events.h kinds) goes to three places: the log at debug level
 *  (the call sites keep their own info/warn lines), a bounded in-memory ring that
 *  LogQuery reads (`lmpress logs`), and the running job's artifact, whose event log
 *  survives a kill -9 of the coordinator. The coordinator thread's warning and error
 *  lines (lmp_log_warn/lmp_log_error, through lmp_log_set_hook) are kept the same way
 *  as events of kind "log"; its info lines are not: each one has an event beside it.
 *  Owned by the coordinator's thread, like the rest of struct lmp_coord.
 */
#define _GNU_SOURCE
#include "coordinator/coord_internal.h"
#include "artifact/events.h" /* defines: struct lmp_event, LMP_EVENT_* */
#include "base/log.h"        /* defines: lmp_log, lmp_log_set_hook */

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    RING_CAP          = 4096,  /* lines kept: a 7B model's ~450 tasks, several events each */
    CHUNK_MAX         = 2000,  /* lines per LogChunk: 2000 * ~850 bytes < LMP_WIRE_MAX_LOG */
    PROGRESS_EVERY_MS = 10000, /* at most one progress event per task per 10 s */
};

struct ring_line {
    uint64_t         seq; /* 1, 2, ... over the coordinator's life */
    struct lmp_event e;   /* worker "" = the coordinator itself */
};

struct coord_log {
    struct ring_line *lines; /* (RING_CAP) circular */
    uint64_t          next_seq;
    int64_t           n;    /* lines kept, <= RING_CAP */
    int64_t           head; /* index of the oldest */
    bool              hooked;
};

static void log_hook(void *ctx, enum lmp_log_level level, const char *line);

static struct coord_log *get_log(struct lmp_coord *c) {
    if (c->log == NULL) {
        struct coord_log *L = calloc(1, sizeof(*L));
        if (L == NULL || (L->lines = calloc(RING_CAP, sizeof(*L->lines))) == NULL) {
            free(L);
            return NULL;
        }
        L->next_seq = 1;
        c->log      = L;
    }
    if (!c->log->hooked) { /* the thread that first records is the coordinator's */
        lmp_log_set_hook(log_hook, c, LMP_LOG_WARN);
        c->log->hooked = true;
    }
    return c->log;
}

void coord_log_free(struct lmp_coord *c) {
    if (c->log == NULL) return;
    if (c->log->hooked) lmp_log_set_hook(NULL, NULL, LMP_LOG_ERROR);
    free(c->log->lines);
    free(c->log);
    c->log = NULL;
}

/* Keep e in the ring and the artifact. */
static void record(struct lmp_coord *c, const struct lmp_event *e) {
    struct coord_log *L = get_log(c);
    if (L) {
        int64_t slot;
        if (L->n < RING_CAP)
            slot = (L->head + L->n++) % RING_CAP;
        else
            slot = L->head, L->head = (L->head + 1) % RING_CAP;
        L->lines[slot].seq = L->next_seq++;
        L->lines[slot].e   = *e;
    }
    struct job *J = c->job;
    /* not once the job ended (its artifact may be closing on the background thread), nor
     * while finalize (background) absorbs the log file */
    if (J && J->a && J->state == LMP__JOB_STATE__JOB_STATE_RUNNING && !J->finalizing) {
        struct lmp_err err = {0};
        if (lmp_artifact_add_event(J->a, e, &err) != LMP_OK) /* not fatal: the ring has it */
            lmp_log_debug("coordinator: event not kept in the artifact: %s", err.msg);
    }
}

static void log_hook(void *ctx, enum lmp_log_level level, const char *line) {
    struct lmp_coord *c = ctx;
    struct lmp_event  e;
    const char       *p = strncmp(line, "coordinator: ", 13) == 0 ? line + 13 : line;
    lmp_event_set(&e, unix_ms(), 0, (int)level, LMP_EVENT_LOG, "", "", p);
    record(c, &e);
}

static void vevent(struct lmp_coord *c, int level, const char *kind, const char *worker,
                   const char *layer, const char *fmt, va_list ap) {
    char msg[LMP_EVENTS_MESSAGE_MAX];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    struct lmp_event e;
    lmp_event_set(&e, unix_ms(), 0, level, kind, worker, layer, msg);
    lmp_log_debug("coordinator: event %s%s%s%s%s: %s", kind, layer[0] ? " '" : "", layer,
                  layer[0] ? "'" : "", worker[0] ? " (worker)" : "", msg);
    record(c, &e);
}

void coord_event(struct lmp_coord *c, int level, const char *kind, int task, const char *fmt, ...) {
    const struct job *J      = c->job;
    const char       *worker = "", *layer = "";
    if (J && task >= 0 && task < J->n_tasks) {
        const struct task *t = &J->tasks[task];
        layer                = t->l->name;
        worker =
            t->worker >= 0 && t->worker < MAX_PEERS ? c->peers[t->worker].id.name : t->worker_name;
    }
    va_list ap;
    va_start(ap, fmt);
    vevent(c, level, kind, worker, layer, fmt, ap);
    va_end(ap);
}

void coord_peer_event(struct lmp_coord *c, int level, const char *kind, int pi, const char *fmt,
                      ...) {
    const struct job *J      = c->job;
    const char       *worker = "", *layer = "";
    if (pi >= 0 && pi < MAX_PEERS) {
        const struct peer *p = &c->peers[pi];
        worker               = p->id.name;
        if (J && p->task >= 0 && p->task < J->n_tasks) layer = J->tasks[p->task].l->name;
    }
    va_list ap;
    va_start(ap, fmt);
    vevent(c, level, kind, worker, layer, fmt, ap);
    va_end(ap);
}

void coord_on_progress(struct lmp_coord *c, int pi, const Lmp__TaskProgress *tp) {
    struct job *J = c->job;
    if (J == NULL || pi < 0 || pi >= MAX_PEERS || tp == NULL) return;
    if (tp->task_id == 0 || tp->task_id > (uint64_t)J->n_tasks) return; /* calibration, tuning */
    const int ti = (int)tp->task_id - 1;
    if (tp->job_id != J->id || ti < 0 || ti >= J->n_tasks || J->tasks[ti].worker != pi ||
        J->tasks[ti].attempt != tp->attempt)
        return;
    struct task *t      = &J->tasks[ti];
    const bool   first  = t->progress_attempt != tp->attempt;
    t->progress_attempt = tp->attempt;
    t->step = tp->step, t->n_steps = tp->n_steps, t->loss = tp->loss, t->rel_err = tp->rel_err;
    const uint64_t now = mono_ms();
    if (first) {
        t->event_ms = now;
        coord_event(c, LMP_LOG_INFO, LMP_EVENT_STARTED, ti, "attempt %u: %s", t->attempt,
                    tp->phase ? tp->phase : "");
    } else if (now - t->event_ms >= PROGRESS_EVERY_MS) {
        t->event_ms = now;
        coord_event(c, LMP_LOG_INFO, LMP_EVENT_PROGRESS, ti,
                    "%s step %u/%u loss %.6g rel err %.4g "
                    "(%.1fs)",
                    tp->phase ? tp->phase : "", tp->step, tp->n_steps, tp->loss, tp->rel_err,
                    tp->elapsed_s);
    }
}

void coord_reply_logs(struct lmp_coord *c, const struct lmp_zpeer *to, uint64_t reply_to,
                      const Lmp__LogQuery *q) {
    struct coord_log *L = get_log(c);
    if (L == NULL) {
        coord_send_error(c, to, reply_to, LMP_ENOMEM, "out of memory");
        return;
    }
    if (q->job_id != 0 && (c->job == NULL || q->job_id != c->job->id)) {
        char msg[96];
        snprintf(msg, sizeof(msg), "no job %llu", (unsigned long long)q->job_id);
        coord_send_error(c, to, reply_to, LMP_EINVAL, msg);
        return;
    }
    /* matching lines, oldest first; with tail, only the last q->tail of them */
    int64_t       *idx = malloc((size_t)(L->n + 1) * sizeof(*idx)), n = 0;
    Lmp__LogLine  *lines = calloc((size_t)CHUNK_MAX, sizeof(*lines));
    Lmp__LogLine **ptrs  = calloc((size_t)CHUNK_MAX, sizeof(*ptrs));
    if (idx == NULL || lines == NULL || ptrs == NULL) {
        free(idx), free(lines), free(ptrs);
        coord_send_error(c, to, reply_to, LMP_ENOMEM, "out of memory");
        return;
    }
    for (int64_t k = 0; k < L->n; k++) {
        const struct ring_line *r = &L->lines[(L->head + k) % RING_CAP];
        if (r->seq <= q->after_seq || r->e.time_ms < q->since_ms) continue;
        if (q->worker && q->worker[0] && strcmp(q->worker, r->e.worker) != 0) continue;
        idx[n++] = (L->head + k) % RING_CAP;
    }
    int64_t first = q->tail && (int64_t)q->tail < n ? n - (int64_t)q->tail : 0;
    int64_t m     = n - first < CHUNK_MAX ? n - first : CHUNK_MAX;
    for (int64_t k = 0; k < m; k++) {
        struct ring_line *r  = &L->lines[idx[first + k]];
        Lmp__LogLine     *ll = &lines[k];
        lmp__log_line__init(ll);
        ll->seq     = r->seq;
        ll->time_ms = r->e.time_ms;
        ll->source  = r->e.worker[0] ? r->e.worker : "coordinator";
        ll->level   = r->e.level;
        ll->text    = r->e.message;
        ll->kind    = r->e.kind;
        ll->layer   = r->e.layer;
        ptrs[k]     = ll;
    }
    Lmp__Envelope env;
    Lmp__LogChunk ch = LMP__LOG_CHUNK__INIT;
    lmp_wire_init(&env, 0, reply_to);
    ch.job_id     = c->job ? c->job->id : 0;
    ch.n_lines    = (size_t)m;
    ch.lines      = ptrs;
    ch.eof        = first + m == n; /* false: ask again after the last seq for the rest */
    env.body_case = LMP__ENVELOPE__BODY_LOG_CHUNK;
    env.log_chunk = &ch;
    coord_send(c, to, &env);
    free(idx), free(lines), free(ptrs);
}
