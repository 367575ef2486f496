/*  coord_status - JobStatus and WorkerList replies from the coordinator's state
 *  (see coord_internal.h) */
#define _GNU_SOURCE
#include "coordinator/coord_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- status --------------------------------------------------------------------- */

static Lmp__WorkerState worker_state(const struct peer *p) {
    if (p->dead) return LMP__WORKER_STATE__WORKER_STATE_DEAD;
    if (p->cancelling) return LMP__WORKER_STATE__WORKER_STATE_DRAINING;
    /* cal: a calibration slice; ft: a block's fine-tuning */
    return p->task >= 0 || p->cal >= 0 || p->ft ? LMP__WORKER_STATE__WORKER_STATE_BUSY
                                                : LMP__WORKER_STATE__WORKER_STATE_IDLE;
}

/* Arrays for a JobStatus / WorkerList; freed by status_free. */
struct status_buf {
    Lmp__JobInfo      job;
    Lmp__LayerInfo   *layers, **layer_ptrs;
    Lmp__WorkerInfo   workers[MAX_PEERS], *worker_ptrs[MAX_PEERS];
    Lmp__Capabilities caps[MAX_PEERS];
    char             *variants[MAX_PEERS];
    uint64_t          running[MAX_PEERS];
    Lmp__Error        error;
    Lmp__TuneInfo     tune;
    size_t            n_workers;
};

static void fill_workers(struct lmp_coord *c, struct status_buf *b, bool with_dead) {
    b->n_workers = 0;
    for (int i = 0; i < MAX_PEERS; i++) {
        struct peer *p = &c->peers[i];
        if (!p->used || p->role != LMP_PEER_WORKER || (p->dead && !with_dead)) continue;
        size_t           k = b->n_workers++;
        Lmp__WorkerInfo *w = &b->workers[k];
        lmp__worker_info__init(w);
        lmp__capabilities__init(&b->caps[k]);
        b->caps[k].cores             = p->cores;
        b->caps[k].memory_bytes      = p->memory;
        b->caps[k].hostname          = p->host;
        b->caps[k].device            = p->device;
        b->variants[k]               = p->kernels;
        b->caps[k].n_kernel_variants = 1;
        b->caps[k].kernel_variants   = &b->variants[k];
        w->id                        = p->id.name;
        w->name                      = p->id.name;
        w->state                     = worker_state(p);
        w->caps                      = &b->caps[k];
        w->last_heartbeat_ms         = p->last_hb_unix;
        w->throughput                = p->busy_s > 0 ? p->params_done / p->busy_s : 0;
        const int32_t ftb            = p->ft && c->job ? coord_ft_block(c->job) : -1;
        if (p->task >= 0 || p->cal >= 0 || ftb >= 0) { /* task ids: see coord.h */
            b->running[k]      = p->task >= 0  ? (uint64_t)p->task + 1
                                 : p->cal >= 0 ? LMP_CAL_TASK_BASE + (uint64_t)p->cal
                                               : LMP_FT_TASK_BASE + (uint64_t)ftb;
            w->n_running_tasks = 1;
            w->running_tasks   = &b->running[k];
        }
        w->n_done         = p->n_done;
        w->n_failed       = p->n_failed;
        b->worker_ptrs[k] = w;
    }
}

/* The job being planned (coord.c, background thread): QUEUED, nothing known but its spec. */
static void fill_plan(const struct coord_plan *P, struct status_buf *b) {
    Lmp__JobInfo *ji = &b->job;
    lmp__job_info__init(ji);
    ji->job_id = P->id;
    ji->name   = P->spec->name;
    ji->state =
        P->cancelled ? LMP__JOB_STATE__JOB_STATE_CANCELLED : LMP__JOB_STATE__JOB_STATE_QUEUED;
    ji->model_path   = P->spec->model_path;
    ji->out_path     = P->spec->out_path;
    ji->submitted_ms = P->submitted_ms;
    ji->eta_s        = -1;
}

static bool fill_job(struct lmp_coord *c, struct status_buf *b, bool with_layers) {
    struct job   *J  = c->job;
    Lmp__JobInfo *ji = &b->job;
    lmp__job_info__init(ji);
    ji->job_id        = J->id;
    ji->name          = J->spec->name;
    ji->state         = J->state;
    ji->model_path    = J->spec->model_path;
    ji->out_path      = J->spec->out_path;
    ji->layers_total  = (uint32_t)J->n_tasks;
    ji->layers_done   = (uint32_t)J->n_done;
    ji->layers_failed = (uint32_t)J->n_failed;
    ji->submitted_ms  = J->submitted_ms;
    ji->started_ms    = J->started_ms;
    ji->finished_ms   = J->finished_ms;
    const double el   = (double)(mono_ms() - J->started_mono) / 1000.0;
    ji->throughput    = el > 0 ? J->params_done_run / el : 0;
    double left       = 0;
    for (int64_t i = 0; i < J->n_tasks; i++)
        if (J->tasks[i].state != LMP__TASK_STATE__TASK_STATE_DONE)
            left += (double)(J->tasks[i].l->n_out * J->tasks[i].l->n_in);
    ji->eta_s                = J->state != LMP__JOB_STATE__JOB_STATE_RUNNING ? 0
                               : ji->throughput > 0                          ? left / ji->throughput
                                                                             : -1;
    ji->seconds_calibration  = J->sec_calib;
    ji->seconds_quantization = J->sec_quant;
    ji->seconds_finetune     = J->sec_ft;
    if (J->tune) { /* a PV-Tuning job: rank 0's latest step */
        const struct tstate *T = J->tune;
        lmp__tune_info__init(&b->tune);
        b->tune.step          = T->p_step;
        b->tune.n_steps       = T->p_n_steps ? T->p_n_steps : J->spec->tune->steps;
        b->tune.kl            = T->kl;
        b->tune.agree         = T->agree;
        b->tune.tokens_per_s  = T->tok_s; /* a step's tokens are every rank's */
        b->tune.codes_changed = T->codes_changed;
        b->tune.ranks         = (uint32_t)T->n;
        b->tune.attempt       = T->attempt - T->base;
        ji->tune              = &b->tune;
        ji->eta_s             = J->state != LMP__JOB_STATE__JOB_STATE_RUNNING ? 0 : -1;
    }
    if (J->error[0]) {
        lmp__error__init(&b->error);
        b->error.code    = (char *)lmp_status_str(J->error_st ? J->error_st : LMP_EIO);
        b->error.message = J->error;
        ji->error        = &b->error;
    }
    if (!with_layers) return true;
    b->layers     = calloc((size_t)J->n_tasks + 1, sizeof(*b->layers));
    b->layer_ptrs = calloc((size_t)J->n_tasks + 1, sizeof(*b->layer_ptrs));
    if (b->layers == NULL || b->layer_ptrs == NULL) return false;
    for (int64_t i = 0; i < J->n_tasks; i++) {
        const struct task *t  = &J->tasks[i];
        Lmp__LayerInfo    *li = &b->layers[i];
        lmp__layer_info__init(li);
        li->index          = (uint32_t)t->lin;
        li->name           = (char *)t->l->name;
        li->state          = t->state;
        li->worker         = (char *)t->worker_name;
        li->attempt        = t->attempt;
        li->rel_err_before = t->rel_before;
        li->rel_err_after  = t->rel_after;
        li->seconds = t->state == LMP__TASK_STATE__TASK_STATE_RUNNING ? t->progress_s : t->seconds;
        int                               tuner;
        const struct lmp_compress_result *held = coord_ft_held(J, i, &tuner);
        if (held) { /* quantized, held for its block's fine-tuning */
            li->rel_err_before = held->rel_err_before;
            li->rel_err_after  = held->rel_err_after;
            if (tuner >= 0)
                li->worker = c->peers[tuner].id.name; /* running: its block is being tuned */
            else {
                li->state   = LMP__TASK_STATE__TASK_STATE_PENDING; /* waiting for that */
                li->seconds = held->seconds;
            }
        }
        if (li->state == LMP__TASK_STATE__TASK_STATE_RUNNING && t->progress_attempt == t->attempt) {
            li->step    = t->step; /* the latest TaskProgress (coord_log.c) */
            li->n_steps = t->n_steps;
            li->loss    = t->loss;
            if (held == NULL) li->rel_err_after = t->rel_err; /* so far (held: quantized) */
        }
        b->layer_ptrs[i] = li;
    }
    ji->n_layers = (size_t)J->n_tasks;
    ji->layers   = b->layer_ptrs;
    return true;
}

static void status_free(struct status_buf *b) {
    free(b->layers);
    free(b->layer_ptrs);
}

void coord_reply_status(struct lmp_coord *c, const struct lmp_zpeer *to, uint64_t reply_to,
                        uint64_t job_id, bool with_layers, bool with_workers) {
    struct status_buf *b = calloc(1, sizeof(*b));
    if (b == NULL) {
        coord_send_error(c, to, reply_to, LMP_ENOMEM, "out of memory");
        return;
    }
    Lmp__Envelope  env;
    Lmp__JobStatus js = LMP__JOB_STATUS__INIT;
    Lmp__JobInfo  *jp[1];
    lmp_wire_init(&env, 0, reply_to);
    if (c->plan && (job_id == 0 || job_id == c->plan->id)) {
        fill_plan(c->plan, b);
        jp[0]     = &b->job;
        js.n_jobs = 1;
        js.jobs   = jp;
    } else if (c->job && (job_id == 0 || job_id == c->job->id)) {
        if (!fill_job(c, b, with_layers)) {
            status_free(b);
            free(b);
            coord_send_error(c, to, reply_to, LMP_ENOMEM, "out of memory");
            return;
        }
        jp[0]     = &b->job;
        js.n_jobs = 1;
        js.jobs   = jp;
    } else if (job_id != 0) {
        char msg[96];
        snprintf(msg, sizeof(msg), "no job %llu", (unsigned long long)job_id);
        coord_send_error(c, to, reply_to, LMP_EINVAL, msg);
        free(b);
        return;
    }
    if (with_workers) {
        fill_workers(c, b, false);
        js.n_workers = b->n_workers;
        js.workers   = b->worker_ptrs;
    }
    env.body_case  = LMP__ENVELOPE__BODY_JOB_STATUS;
    env.job_status = &js;
    coord_send(c, to, &env);
    status_free(b);
    free(b);
}

/* ---- messages ------------------------------------------------------------------- */
void coord_reply_workers(struct lmp_coord *c, const struct lmp_zpeer *to, uint64_t reply_to,
                         bool with_dead) {
    struct status_buf *b = calloc(1, sizeof(*b));
    if (b == NULL) {
        coord_send_error(c, to, reply_to, LMP_ENOMEM, "out of memory");
        return;
    }
    fill_workers(c, b, with_dead);
    Lmp__Envelope   out;
    Lmp__WorkerList wl = LMP__WORKER_LIST__INIT;
    lmp_wire_init(&out, 0, reply_to);
    wl.n_workers    = b->n_workers;
    wl.workers      = b->worker_ptrs;
    out.body_case   = LMP__ENVELOPE__BODY_WORKER_LIST;
    out.worker_list = &wl;
    coord_send(c, to, &out);
    free(b);
}
