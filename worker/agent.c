/*  agent - see agent.h */
#define _GNU_SOURCE
#include "worker/agent.h"
#include "proto/payload.h"     /* defines: lmp_payload_name, lmp_payload_layer */
#include "kernels/kernels.h"   /* defines: lmp_kernels_get */
#include "kernels/device.h"    /* defines: lmp_device_resolve, lmp_device_name_ok */
#include "base/cancel.h"       /* defines: lmp_cancelled */
#include "base/fault.h"        /* defines: lmp_fault_sleep */
#include "base/log.h"          /* defines: lmp_log_* */
#include "proto/zsock.h"       /* defines: lmp_zsock_*, lmp_wire_* */
#include "proto/blobfile.h"    /* defines: lmp_blobfile_*, lmp_blob_inline_max */
#include "worker/calib.h"      /* defines: lmp_calib_*, LMP_INPUT_COUNT */
#include "worker/finetune.h"   /* defines: lmp_finetune_block */
#include "model/model.h"       /* defines: lmp_model_open, lmp_model_linear */
#include "model/rope.h"        /* defines: lmp_rope_block_is_local */
#include "model/transformer.h" /* defines: lmp_transformer_new */

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

void lmp_agent_opts_init(struct lmp_agent_opts *o) {
    assert(o);
    memset(o, 0, sizeof(*o));
    o->connect_timeout_ms = 10000;
}

enum lmp_status lmp_agent_method_spec(const Lmp__MethodSpec *m, struct lmp_compress_spec *spec,
                                      struct lmp_err *err) {
    assert(m && spec);
    lmp_compress_spec_init(spec);
    if (m->method == LMP__METHOD__METHOD_RTN) {
        spec->method = LMP_COMPRESS_RTN;
        if (m->bits) spec->rtn_bits = (int)m->bits;
        if (m->group) spec->rtn_group = m->group;
        if (spec->rtn_bits < 1 || spec->rtn_bits > 8)
            return lmp_err_set(err, LMP_EINVAL, "rtn bits %d out of range 1..8", spec->rtn_bits);
        return LMP_OK;
    }
    if (m->method != LMP__METHOD__METHOD_AQLM)
        return lmp_err_set(err, LMP_EINVAL, "unknown method %d", (int)m->method);
    spec->method = LMP_COMPRESS_AQLM;
    if (m->scheme && m->scheme[0]) {
        enum lmp_status st = lmp_aq_scheme_parse(&spec->sc, m->scheme, err);
        if (st != LMP_OK) return st;
    }
    if (m->beam) spec->aq.beam = (int)m->beam;
    if (m->adam_steps) spec->aq.adam_steps = (int)m->adam_steps;
    if (m->lr > 0) spec->aq.lr = m->lr;
    if (m->tol > 0) spec->aq.tol = m->tol;
    if (m->max_rounds) spec->aq.max_rounds = (int)m->max_rounds;
    if (m->codebook_update_case == LMP__METHOD_SPEC__CODEBOOK_UPDATE_CG_ITERS)
        spec->aq.cg_iters = (int)m->cg_iters; /* 0 = Adam steps instead of CG */
    if (m->kmeans_iters) spec->aq.kmeans_iters = (int)m->kmeans_iters;
    if (m->damp > 0) spec->aq.damp = m->damp;
    return LMP_OK;
}

static uint64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* A calibration slice this worker holds: its tokens and the original model's activations
 * at the input of block `pos` (TASK_KIND_CALIBRATE). */
enum { AGENT_MAX_SLICES = 32 };
struct slice {
    int32_t          *tokens; /* (n_seq, ctx) */
    int64_t           n_seq, ctx;
    uint64_t          begin; /* first sequence in the job */
    struct lmp_calib *cal;
    int32_t           pos;    /* x = input of this block */
    uint64_t          used;   /* LRU stamp */
    bool              full;   /* every sequence of the job, unsliced (fine-tuning) */
    uint64_t          job_id; /* sequential mode: the job whose blocks it went through */
};

/* TASK_KIND_QUANTIZE_ROWS: the compute thread's sums (lmp_aq_reducer) go out through the
 * main thread, which owns the socket: the compute thread posts its part and waits; the
 * main thread sends it as RowsPartial (woken by red_fd) and copies the RowsSum back. */
struct rowsum {
    pthread_mutex_t mu;
    pthread_cond_t  cv;
    double         *vec;  /* the part, then the sum (the compute thread's buffer) */
    int64_t        *ivec; /* TASK_KIND_TUNE: instead of vec, int64 values (RowsPartial.ipart) */
    int64_t         n;
    uint64_t        step; /* sums asked so far */
    bool            posted, sent, have, abort;
    int             red_fd; /* write end: "a part is posted" */
    double          wait_s; /* time spent waiting for sums */
};

/* The latest progress of the compute thread (its AQ round or fine-tuning step), read by
 * the main thread for TaskProgress. */
struct progress {
    pthread_mutex_t mu;
    const char     *phase; /* "quantize", "rows", "finetune", "calibrate" (static) */
    uint32_t        step, n_steps;
    double          loss, rel_err;
    double          tok_s;         /* TASK_KIND_TUNE */
    uint64_t        codes_changed; /* TASK_KIND_TUNE */
    uint64_t        seq;           /* updates so far */
};

/* The task the compute thread runs: inputs copied out of the TaskAssign, the result. */
struct task {
    uint64_t                 job_id, task_id;
    uint32_t                 attempt;
    atomic_int               cancel; /* set by the main thread: task_cancel() */
    Lmp__TaskKind            kind;
    char                     layer[LMP_NAME_MAX];
    uint32_t                 layer_index;
    const struct lmp_linear *lin; /* in the agent's model */
    struct lmp_compress_spec spec;
    uint64_t                 seed; /* job seed; the layer seed is derived from it */
    float                   *h;    /* (n_in, n_in) or NULL (RTN) */
    struct {                       /* H by reference (a big layer): read by the compute thread */
        char    *path;
        uint64_t offset, length, xxh;
    } href;
    struct { /* Blob "shipped": the blocks to pass or tune, by reference */
        char    *path;
        uint64_t length, xxh;
    } ship;
    Lmp__TaskAssign *qx;      /* ... read from there by the compute thread (ship_load) */
    char            *out_dir; /* TaskAssign.out_dir: the spool for results too big to send */
    char            *spooled; /* the calibration sums were written there: this file */
    uint64_t         spool_xxh[4], spool_len[4];
    /* TASK_KIND_CALIBRATE: the slice (tokens copied in) and its block's sums (out) */
    struct agent    *agent;
    int32_t         *tokens;
    int64_t          n_seq, ctx;
    uint64_t         row_begin, row_end;
    int              n_threads;
    struct rowsum    rs; /* TASK_KIND_QUANTIZE_ROWS */
    Lmp__TaskAssign *qa; /* sequential calibration: the assign (its "q/..." blobs) */
    /* TASK_KIND_FINETUNE_BLOCK: settings in, the tuned block out */
    int64_t                 ft_epochs, ft_max_steps;
    float                   ft_lr; /* 0: the default */
    struct lmp_aq_layer     ftl[LMP_LIN_COUNT];
    float                  *ft_norm[2];
    struct lmp_ft_stats     fs;
    int32_t                 qfrom; /* ... first quantized block shipped; -1 = independent */
    struct lmp_calib_grams *grams;
    /* out */
    struct lmp_compress_result res;
    enum lmp_status            st;
    struct lmp_err             err;
    int                        done_fd; /* write end of the pipe */
    uint64_t                   started_ms;
    struct progress            pg;
    uint64_t                   pg_sent; /* main thread: pg.seq last sent as TaskProgress */
    uint64_t                   pg_sent_ms;
};

static void progress_set(struct task *t, uint32_t step, uint32_t n_steps, double loss,
                         double rel_err) {
    pthread_mutex_lock(&t->pg.mu);
    t->pg.step = step, t->pg.n_steps = n_steps, t->pg.loss = loss, t->pg.rel_err = rel_err;
    t->pg.seq++;
    pthread_mutex_unlock(&t->pg.mu);
}

/* lmp_fault_sleep for a task's hooks: the milliseconds in environment variable var, in
 * slices of 20 ms, ended early when the task is cancelled (or the process stops), so that
 * a slowed-down task still stops as soon as a normal one would. */
static void task_fault_sleep(struct task *t, const char *var) {
    const char *s  = getenv(var);
    const long  ms = s ? atol(s) : 0;
    for (long done = 0; done < ms && !lmp_cancelled(&t->cancel); done += 20) {
        const long      step = ms - done < 20 ? ms - done : 20;
        struct timespec ts   = {0, step * 1000000L};
        nanosleep(&ts, NULL);
    }
}

/* Fault-injection hook for tests: LMP_FAULT_ROUND_SLEEP_MS stretches each AQ round and
 * each fine-tuning step, so that a status poll sees a task mid-way. */
static void round_sleep(struct task *t) {
    task_fault_sleep(t, "LMP_FAULT_ROUND_SLEEP_MS");
}

/* lmp_aq_opts.progress: one optimisation round done. */
static void on_aq_round(void *ctx, int round, int max_rounds, double loss, double rel_err) {
    progress_set(ctx, (uint32_t)round, (uint32_t)max_rounds, loss, rel_err);
    round_sleep(ctx);
}

/* lmp_ft_opts.progress: one Adam step of the block fine-tuning done. */
static void on_ft_step(void *ctx, int64_t step, int64_t n_steps, double loss) {
    progress_set(ctx, (uint32_t)step, (uint32_t)n_steps, loss, 0);
    round_sleep(ctx);
}

static enum lmp_status calibrate(struct task *t, struct lmp_err *err);
static enum lmp_status finetune(struct task *t, struct lmp_err *err);
static enum lmp_status tune(struct task *t, struct lmp_err *err);

/* Post a part (vec, or ivec for int64 values), wait for the sum (or an abort). */
static enum lmp_status post_sum(struct rowsum *r, double *vec, int64_t *ivec, int64_t n) {
    pthread_mutex_lock(&r->mu);
    r->step++;
    r->vec = vec, r->ivec = ivec, r->n = n;
    r->posted = true, r->sent = false, r->have = false;
    pthread_mutex_unlock(&r->mu);
    char           one = 1;
    const uint64_t t0  = mono_ms();
    while (write(r->red_fd, &one, 1) < 0 && errno == EINTR) {
    }
    pthread_mutex_lock(&r->mu);
    while (!r->have && !r->abort) pthread_cond_wait(&r->cv, &r->mu);
    r->wait_s += (double)(mono_ms() - t0) / 1000.0;
    const bool ok = r->have;
    r->posted = false, r->vec = NULL, r->ivec = NULL;
    pthread_mutex_unlock(&r->mu);
    return ok ? LMP_OK : LMP_ECANCEL;
}

/* lmp_aq_reducer of a row shard. */
static enum lmp_status rows_sum(void *ctx, double *vec, int64_t n, struct lmp_err *err) {
    if (post_sum(ctx, vec, NULL, n) == LMP_OK) return LMP_OK;
    return lmp_err_set(err, LMP_ECANCEL, "row shard stopped while its layer was being summed");
}

/* TASK_KIND_TUNE: the ranks' sums (struct lmp_tune_comm), in chunks of at most
 * TUNE_CHUNK values so that no frame comes near the coordinator's limit. */
enum { TUNE_CHUNK = 1 << 21 }; /* 16 MiB of int64 */
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "RowsPartial.ipart is little-endian int64: this host would need a byte swap"
#endif
static enum lmp_status tune_sum_chunks(struct rowsum *r, double *d, int64_t *i, int64_t n) {
    for (int64_t off = 0; off < n; off += TUNE_CHUNK) {
        const int64_t   m  = n - off < TUNE_CHUNK ? n - off : TUNE_CHUNK;
        enum lmp_status st = post_sum(r, d ? d + off : NULL, i ? i + off : NULL, m);
        if (st != LMP_OK) return st;
    }
    return LMP_OK;
}
static enum lmp_status tune_sum_i64(void *ctx, int64_t *x, int64_t n) {
    return tune_sum_chunks(ctx, NULL, x, n);
}
static enum lmp_status tune_sum_f64(void *ctx, double *x, int64_t n) {
    return tune_sum_chunks(ctx, x, NULL, n);
}

/* True for the kinds whose compute thread waits for the coordinator's sums. */
static bool sums_through_coordinator(Lmp__TaskKind k) {
    return k == LMP__TASK_KIND__TASK_KIND_QUANTIZE_ROWS || k == LMP__TASK_KIND__TASK_KIND_TUNE;
}

/* Wake a compute thread that waits for a sum: it ends its task (cancel, hand-back, stop). */
static void rows_abort(struct task *t) {
    if (t == NULL || !sums_through_coordinator(t->kind)) return;
    pthread_mutex_lock(&t->rs.mu);
    t->rs.abort = true;
    pthread_cond_broadcast(&t->rs.cv);
    pthread_mutex_unlock(&t->rs.mu);
}

/* The running task t (may be NULL) is not wanted any more (TaskCancel, hand-back, stop):
 * its compute thread stops at its next poll of the flag and ends with LMP_ECANCEL. */
static void task_cancel(struct task *t) {
    if (t == NULL) return;
    atomic_store_explicit(&t->cancel, 1, memory_order_relaxed);
    rows_abort(t);
}

/* TASK_KIND_QUANTIZE_ROWS: rows [row_begin, row_end) of the linear, meeting the other
 * shards in the coordinator's sums. res: those rows' codes and scales, the codebooks. */
static enum lmp_status quantize_rows(struct task *t, const float *w, struct lmp_err *err) {
    const struct lmp_linear *l = t->lin;
    struct lmp_aq_opts       o = t->spec.aq;
    struct lmp_aq_stats      S;
    struct lmp_err           e   = {0};
    struct lmp_aq_reducer    red = {.sum = rows_sum, .ctx = &t->rs};
    const double             t0  = (double)mono_ms() / 1000.0;
    o.seed                       = lmp_compress_layer_seed(t->seed, t->layer);
    o.progress = on_aq_round, o.progress_ctx = t;
    enum lmp_status st =
        lmp_aq_quantize_rows(&t->res.aq, &S, w, t->h, l->n_out, l->n_in, (int64_t)t->row_begin,
                             (int64_t)t->row_end, &t->spec.sc, &o, &red, &e);
    if (st != LMP_OK)
        return lmp_err_set(err, st, "layer '%s' rows [%llu, %llu): %s", t->layer,
                           (unsigned long long)t->row_begin, (unsigned long long)t->row_end, e.msg);
    t->res.method = LMP_COMPRESS_AQLM;
    t->res.n_out = (int64_t)(t->row_end - t->row_begin), t->res.n_in = l->n_in;
    t->res.rel_err_before = S.rel_err_init, t->res.rel_err_after = S.rel_err_final;
    t->res.steps           = S.n_rounds + S.n_adam_steps;
    t->res.bits_per_weight = lmp_compress_bits_per_weight(&t->spec, l->n_out, l->n_in);
    t->res.seconds         = (double)mono_ms() / 1000.0 - t0;
    lmp_log_info("%s: '%s' rows [%llu, %llu): init %.2fs, codebook update %.2fs, beam %.2fs, "
                 "%llu sums (%.2fs waiting for them), %d rounds",
                 "row shard", t->layer, (unsigned long long)t->row_begin,
                 (unsigned long long)t->row_end, S.seconds_init, S.seconds_adam, S.seconds_beam,
                 (unsigned long long)t->rs.step, t->rs.wait_s, S.n_rounds);
    return LMP_OK;
}

/* lmp_tune_job's observer: one step done. */
static void on_tune_step(void *ctx, const struct lmp_tune_step_stats *s, int64_t n_steps) {
    struct task *t = ctx;
    pthread_mutex_lock(&t->pg.mu);
    t->pg.step = (uint32_t)s->step, t->pg.n_steps = (uint32_t)n_steps;
    t->pg.loss = s->kl, t->pg.rel_err = s->agree;
    t->pg.tok_s         = s->seconds > 0 ? (double)s->rows / s->seconds : 0;
    t->pg.codes_changed = (uint64_t)s->codes_changed;
    t->pg.seq++;
    pthread_mutex_unlock(&t->pg.mu);
}

static enum lmp_status spool_grams(struct task *t, struct lmp_err *err);
static enum lmp_status read_href(struct task *t, struct lmp_err *err);

static void *task_main(void *arg) {
    struct task             *t = arg;
    const struct lmp_linear *l = t->lin;
    /* fault-injection hook for tests: a slow task, so that a kill or a cancel lands mid-task */
    task_fault_sleep(t, "LMP_FAULT_TASK_SLEEP_MS");
    if (lmp_cancelled(&t->cancel)) {
        t->st =
            lmp_err_set(&t->err, LMP_ECANCEL, "task '%s' cancelled before it started", t->layer);
        char one = 1;
        while (write(t->done_fd, &one, 1) < 0 && errno == EINTR) {
        }
        return NULL;
    }
    if (t->kind == LMP__TASK_KIND__TASK_KIND_TUNE) {
        t->st = tune(t, &t->err);
        /* tests: a stopped rank that takes a while to end (its checkpoint on a slow disk) */
        if (lmp_cancelled(&t->cancel)) lmp_fault_sleep("LMP_FAULT_STOP_SLEEP_MS");
        char one = 1;
        while (write(t->done_fd, &one, 1) < 0 && errno == EINTR) {
        }
        return NULL;
    }
    if (t->kind == LMP__TASK_KIND__TASK_KIND_CALIBRATE ||
        t->kind == LMP__TASK_KIND__TASK_KIND_FINETUNE_BLOCK) {
        const uint64_t t0 = mono_ms();
        t->st             = t->kind == LMP__TASK_KIND__TASK_KIND_CALIBRATE ? calibrate(t, &t->err)
                                                                           : finetune(t, &t->err);
        if (t->st == LMP_OK && t->kind == LMP__TASK_KIND__TASK_KIND_CALIBRATE)
            t->st = spool_grams(t, &t->err);
        t->res.seconds = (double)(mono_ms() - t0) / 1000.0;
        char one       = 1;
        while (write(t->done_fd, &one, 1) < 0 && errno == EINTR) {
        }
        return NULL;
    }
    if (t->href.path && (t->st = read_href(t, &t->err)) != LMP_OK) {
        char one = 1;
        while (write(t->done_fd, &one, 1) < 0 && errno == EINTR) {
        }
        return NULL;
    }
    float *w = malloc((size_t)(l->n_out * l->n_in) * sizeof(float));
    if (w == NULL) {
        t->st = lmp_err_set(&t->err, LMP_ENOMEM, "out of memory for layer '%s'", t->layer);
    } else {
        lmp_tensor_rows_f32(l->weight, 0, l->n_out, w);
        if (t->kind == LMP__TASK_KIND__TASK_KIND_QUANTIZE_ROWS)
            t->st = quantize_rows(t, w, &t->err);
        else
            t->st = lmp_compress_linear(&t->res, &t->spec, t->layer, w, t->h, l->n_out, l->n_in,
                                        lmp_compress_layer_seed(t->seed, t->layer), &t->err);
        free(w);
    }
    char one = 1;
    while (write(t->done_fd, &one, 1) < 0 && errno == EINTR) {
    }
    return NULL;
}

struct agent {
    const struct lmp_agent_opts *o;
    char                         name[128]; /* the worker's name (Hello.name) */
    char                         rid[192];  /* routing id: name.pid.random, one per process */
    void                        *zctx, *sock;
    uint64_t                     seq, hello_seq; /* hello_seq: seq of the latest Hello */
    uint32_t                     hb_ms, hb_timeout_ms;
    uint64_t                     last_rx_ms, last_hb_ms, last_hello_ms;
    bool                         registered;
    struct lmp_model            *model;
    char                         model_path[4096];
    struct lmp_transformer      *tf; /* on model, lazy weights: calibration tasks */
    struct slice                 slices[AGENT_MAX_SLICES];
    uint64_t                     slice_clock;
    /* the running task */
    struct task   *task;
    pthread_t      thread;
    bool           cancelled, handed_back;
    int            red_fd[2];        /* a row shard's part is posted (struct rowsum) */
    Lmp__Envelope *queued;           /* a TaskAssign that waits for an abandoned task to end */
    bool           report_pending;   /* the task ended (thread joined), its report not sent */
    uint32_t       n_assigns;        /* TaskAssigns received */
    uint32_t       drop_assign[8];   /* tests (LMP_FAULT_DROP_ASSIGN=N[,N...]): drop those
                                        (numbered from 1; 0 = none) */
    uint64_t              report_ms; /* when the report was last tried (mono ms) */
    int                   pipe_fd[2];
    struct lmp_device_sel dev; /* what the Hello reports (Capabilities.device, gpus) */
};

/* TASK_KIND_TUNE: this rank of the tuning, through the caller's runner. */
static enum lmp_status tune(struct task *t, struct lmp_err *err) {
    const struct lmp_agent_opts *o  = t->agent->o;
    const Lmp__TaskAssign       *ta = t->qa;
    /* no reduce: the coordinator's sums go back to every rank anyway */
    struct lmp_tune_comm      comm = {(int)ta->rank, (int)ta->ranks, &t->rs,
                                      tune_sum_i64,  tune_sum_f64,   NULL};
    struct lmp_agent_tune_out out  = {0};
    enum lmp_status st    = o->tune(o->tune_ctx, ta, ta->ranks > 1 ? &comm : NULL, &t->cancel,
                                    on_tune_step, t, &out, err);
    t->res.steps          = out.steps_done;
    t->res.seconds        = out.seconds;
    t->res.rel_err_before = out.val_kl_before;
    t->res.rel_err_after  = out.val_kl_after;
    return st;
}

static enum lmp_status send_env(struct agent *A, Lmp__Envelope *env, struct lmp_err *err) {
    env->seq = ++A->seq;
    return lmp_zsock_send(A->sock, NULL, env, "coordinator", err);
}

static enum lmp_status send_hello(struct agent *A, struct lmp_err *err) {
    Lmp__Envelope     env;
    Lmp__Hello        hello;
    Lmp__Capabilities caps      = LMP__CAPABILITIES__INIT;
    char              host[256] = "";
    gethostname(host, sizeof(host) - 1);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN), pages = sysconf(_SC_PHYS_PAGES),
         psz   = sysconf(_SC_PAGESIZE);
    caps.cores = A->o->n_threads > 0 ? (uint32_t)A->o->n_threads : (uint32_t)(ncpu > 0 ? ncpu : 1);
    caps.memory_bytes      = pages > 0 && psz > 0 ? (uint64_t)pages * (uint64_t)psz : 0;
    char *variant          = (char *)lmp_kernels_get()->name;
    caps.n_kernel_variants = 1;
    caps.kernel_variants   = &variant;
    caps.hostname          = host;
    caps.max_tasks         = 1;
    caps.pid               = (uint32_t)getpid();
    caps.device            = A->dev.name;
    Lmp__Gpu gpu = LMP__GPU__INIT, *gpus[1] = {&gpu};
    if (A->dev.device == LMP_DEVICE_CUDA && A->dev.model[0]) { /* a real one, not LMP_FAKE_DEVICE */
        gpu.index              = (uint32_t)A->dev.index;
        gpu.name               = A->dev.model;
        gpu.memory_bytes       = A->dev.memory_bytes;
        gpu.compute_capability = (uint32_t)A->dev.cc;
        caps.n_gpus            = 1;
        caps.gpus              = gpus;
    }
    lmp_wire_hello_init(&env, &hello, 0, LMP__ROLE__ROLE_WORKER, A->name, &caps);
    A->last_hello_ms = mono_ms();
    /* a new session: the coordinator no longer counts on the running task's result */
    if (A->task) A->handed_back = true, task_cancel(A->task);
    enum lmp_status st = send_env(A, &env, err);
    A->hello_seq       = env.seq;
    return st;
}

static enum lmp_status send_error(struct agent *A, const struct task *t, enum lmp_status code,
                                  const char *msg, uint64_t reply_to, struct lmp_err *err) {
    Lmp__Envelope env;
    Lmp__Error    e;
    lmp_wire_error_init(&env, &e, 0, reply_to, code, msg);
    if (t) {
        e.job_id    = t->job_id;
        e.task_id   = t->task_id;
        e.attempt   = t->attempt;
        e.layer     = (char *)t->layer;
        e.retryable = code == LMP_ENOMEM || code == LMP_EIO;
    }
    return send_env(A, &env, err);
}

static void slice_drop(struct slice *s) {
    lmp_calib_destroy(&s->cal);
    free(s->tokens);
    memset(s, 0, sizeof(*s));
}

/* The calibration task: slice (tokens, rows) at block layer_index. The activations are
 * the original model's, whoever computes them, so a slice held at block pos <= b is
 * advanced from there; otherwise it starts from the embedding. Runs in the compute
 * thread, which alone touches the slices and the transformer while it runs. */
/* The tensor of blob `name` of the sequential assign, or NULL. */
static const Lmp__Tensor *q_blob(const struct task *t, const char *name) {
    const Lmp__TaskAssign *in[2] = {t->qa, t->qx};
    for (int j = 0; j < 2; j++)
        for (size_t i = 0; in[j] && i < in[j]->n_inputs; i++)
            if (in[j]->inputs[i]->name && strcmp(in[j]->inputs[i]->name, name) == 0 &&
                in[j]->inputs[i]->where_case == LMP__BLOB__WHERE_TENSOR)
                return in[j]->inputs[i]->tensor;
    return NULL;
}

/* Blob "shipped" (coordinator/coord.c ship_spool): the quantized blocks the task passes and
 * the layers it tunes, a packed TaskAssign in the spool. Read on the compute thread,
 * checksummed, unpacked and checked like a frame (lmp_wire_validate), then removed: the
 * coordinator named the file for this attempt only. */
static enum lmp_status ship_load(struct task *t, struct lmp_err *err) {
    const uint64_t  t0  = mono_ms();
    uint8_t        *buf = malloc(t->ship.length ? (size_t)t->ship.length : 1);
    enum lmp_status st  = LMP_OK;
    if (buf == NULL) return lmp_err_set(err, LMP_ENOMEM, "out of memory for the shipped blocks");
    if ((st = lmp_blobfile_read(t->ship.path, 0, t->ship.length, t->ship.xxh, buf, err))) {
        free(buf);
        return st;
    }
    t->qx = lmp__task_assign__unpack(NULL, (size_t)t->ship.length, buf);
    free(buf);
    if (t->qx == NULL)
        return lmp_err_set(err, LMP_EPROTO, "shipped blocks in '%s' do not unpack", t->ship.path);
    Lmp__Envelope env;
    lmp_wire_init(&env, 0, 0);
    env.body_case   = LMP__ENVELOPE__BODY_TASK_ASSIGN;
    env.task_assign = t->qx;
    if ((st = lmp_wire_validate(&env, t->ship.path, err))) return st;
    unlink(t->ship.path);
    lmp_log_info("worker: %zu shipped arrays read from '%s' (%.0f MB, %.2fs)", t->qx->n_inputs,
                 t->ship.path, (double)t->ship.length / 1e6, (double)(mono_ms() - t0) / 1000.0);
    return LMP_OK;
}

/* Sequential mode: install block k's quantized linears (decoded from the shipped codes,
 * codebooks, scales) and tuned norms into the transformer; saved[] / norm0[] restore it. */
static enum lmp_status q_install(struct task *t, int32_t k, float *dec[LMP_LIN_COUNT],
                                 float *saved_w[LMP_LIN_COUNT], float *norm0[2],
                                 struct lmp_err *err) {
    struct agent           *A   = t->agent;
    const struct lmp_block *B   = &A->model->blocks[k];
    const int64_t           dim = A->model->cfg.dim;
    char                    bn[LMP_NAME_MAX + 32];
    /* loaded first: lazy loading fills only empty operators, so a block loaded while ours
     * were installed would keep them empty once we restore them */
    enum lmp_status st = lmp_transformer_load_block(A->tf, k, err);
    if (st != LMP_OK) return st;
    for (int j = 0; j < LMP_LIN_COUNT; j++) {
        const struct lmp_linear *l  = &B->lin[j];
        struct lmp_linop        *op = lmp_transformer_linop(A->tf, k, (enum lmp_lin)j);
        saved_w[j]                  = (float *)op->w;
        lmp_payload_layer(bn, sizeof(bn), LMP__PAYLOAD__PAYLOAD_SHIPPED, l->name,
                          LMP__PAYLOAD__PAYLOAD_CODES);
        const Lmp__Tensor *tc = q_blob(t, bn);
        if (tc == NULL) continue; /* kept layer: the original weights */
        lmp_payload_layer(bn, sizeof(bn), LMP__PAYLOAD__PAYLOAD_SHIPPED, l->name,
                          LMP__PAYLOAD__PAYLOAD_CODEBOOKS);
        const Lmp__Tensor *tb = q_blob(t, bn);
        lmp_payload_layer(bn, sizeof(bn), LMP__PAYLOAD__PAYLOAD_SHIPPED, l->name,
                          LMP__PAYLOAD__PAYLOAD_SCALES);
        const Lmp__Tensor *ts = q_blob(t, bn);
        if (tb == NULL || ts == NULL || tc->n_shape != 3 || tb->n_shape != 3 || ts->n_shape != 1 ||
            tc->shape[0] != (uint64_t)l->n_out ||
            tc->shape[1] * tb->shape[2] != (uint64_t)l->n_in || tc->shape[2] != tb->shape[0] ||
            tb->shape[1] > 65536 || tb->shape[2] == 0 || ts->shape[0] != (uint64_t)l->n_out ||
            tc->dtype != LMP__DTYPE__DTYPE_U16 || tb->dtype != LMP__DTYPE__DTYPE_F32 ||
            ts->dtype != LMP__DTYPE__DTYPE_F32 ||
            tc->data.len != tc->shape[0] * tc->shape[1] * tc->shape[2] * 2 ||
            tb->data.len != tb->shape[0] * tb->shape[1] * tb->shape[2] * 4 ||
            ts->data.len != ts->shape[0] * 4)
            return lmp_err_set(err, LMP_EPROTO,
                               "calibration task: quantized layer '%s' has wrong arrays", l->name);
        const size_t nc = tc->data.len / 2, nb = tb->data.len / 4, ns = ts->data.len / 4;
        uint16_t    *codes = malloc(nc * 2);
        float       *cb = malloc(nb * 4), *sc = malloc(ns * 4);
        dec[j] = malloc((size_t)(l->n_out * l->n_in) * sizeof(float));
        if (!codes || !cb || !sc || !dec[j]) {
            free(codes), free(cb), free(sc);
            return lmp_err_set(err, LMP_ENOMEM, "out of memory");
        }
        memcpy(codes, tc->data.data, nc * 2); /* aligned copies: protobuf-c does not align */
        memcpy(cb, tb->data.data, nb * 4);
        memcpy(sc, ts->data.data, ns * 4);
        for (size_t i = 0; i < nc; i++)
            if (codes[i] >= tb->shape[1]) {
                free(codes), free(cb), free(sc);
                return lmp_err_set(err, LMP_EPROTO, "calibration task: code out of range in '%s'",
                                   l->name);
            }
        const struct lmp_aq_shape shp = {.n_out = l->n_out,
                                         .n_in  = l->n_in,
                                         .M     = (int)tb->shape[0],
                                         .K     = (int)tb->shape[1],
                                         .g     = (int)tb->shape[2]};
        lmp_kernels_get()->aq_decode(dec[j], codes, cb, sc, &shp);
        free(codes), free(cb), free(sc);
        op->w = dec[j];
    }
    for (int i = 0; i < 2; i++) {
        char norm[LMP_NAME_MAX];
        snprintf(norm, sizeof(norm), "model.layers.%d.%s.weight", k,
                 i ? "post_attention_layernorm" : "input_layernorm");
        lmp_payload_layer(bn, sizeof(bn), LMP__PAYLOAD__PAYLOAD_SHIPPED, norm,
                          LMP__PAYLOAD__PAYLOAD_UNSPECIFIED);
        const Lmp__Tensor *tn = q_blob(t, bn);
        if (tn == NULL) continue;
        if (tn->dtype != LMP__DTYPE__DTYPE_F32 || tn->data.len != (size_t)dim * 4)
            return lmp_err_set(err, LMP_EPROTO, "calibration task: norm '%s' has a wrong shape",
                               bn + 2);
        float *n = lmp_transformer_norm(A->tf, k, i == 1);
        if ((norm0[i] = malloc((size_t)dim * 4)) == NULL)
            return lmp_err_set(err, LMP_ENOMEM, "out of memory");
        memcpy(norm0[i], n, (size_t)dim * 4);
        memcpy(n, tn->data.data, (size_t)dim * 4);
    }
    return LMP_OK;
}

static void q_uninstall(struct task *t, int32_t k, float *dec[LMP_LIN_COUNT],
                        float *saved_w[LMP_LIN_COUNT], float *norm0[2]) {
    struct agent *A = t->agent;
    for (int j = 0; j < LMP_LIN_COUNT; j++) {
        if (dec[j]) lmp_transformer_linop(A->tf, k, (enum lmp_lin)j)->w = saved_w[j];
        free(dec[j]);
        dec[j] = NULL;
    }
    for (int i = 0; i < 2; i++) {
        if (norm0[i])
            memcpy(lmp_transformer_norm(A->tf, k, i == 1), norm0[i], (size_t)A->model->cfg.dim * 4);
        free(norm0[i]);
        norm0[i] = NULL;
    }
}

/* x = block k(x) through the quantized block k (sequential mode). */
static enum lmp_status q_advance(struct task *t, struct lmp_calib *cal, int32_t k,
                                 struct lmp_err *err) {
    float          *dec[LMP_LIN_COUNT] = {0}, *saved[LMP_LIN_COUNT] = {0}, *norm0[2] = {0};
    enum lmp_status st = q_install(t, k, dec, saved, norm0, err);
    if (st == LMP_OK) st = lmp_calib_advance(cal, k, err);
    q_uninstall(t, k, dec, saved, norm0);
    return st;
}

static enum lmp_status calibrate(struct task *t, struct lmp_err *err) {
    struct agent   *A  = t->agent;
    const int32_t   b  = (int32_t)t->layer_index;
    enum lmp_status st = LMP_OK;
    if (t->ship.path && (st = ship_load(t, err))) return st;
    if (A->tf == NULL) {
        struct lmp_transformer_opts to = {.n_threads    = t->n_threads > 0 ? t->n_threads : 1,
                                          .lazy_weights = true};
        if ((st = lmp_transformer_new(A->model, &to, &A->tf, err))) return st;
    }
    const size_t  ntok = (size_t)(t->n_seq * t->ctx);
    struct slice *s = NULL, *lru = &A->slices[0];
    for (int i = 0; i < AGENT_MAX_SLICES && s == NULL; i++) {
        struct slice *q = &A->slices[i];
        if (q->cal && q->begin == t->row_begin && q->n_seq == t->n_seq && q->ctx == t->ctx &&
            memcmp(q->tokens, t->tokens, ntok * sizeof(int32_t)) == 0)
            s = q;
        if (q->used < lru->used) lru = q;
    }
    if (s && s->pos > b) slice_drop(s), s = NULL; /* past it: start again */
    /* sequential: activations of this job's quantized blocks only, and from the embedding
     * when the coordinator ships every block (it believes nobody holds them) */
    if (s && t->qfrom >= 0 &&
        (s->pos < t->qfrom || s->job_id != t->job_id || (t->qfrom == 0 && s->pos > 0)))
        slice_drop(s), s = NULL;
    if (s == NULL && t->qfrom > 0)
        return lmp_err_set(err, LMP_ENOENT,
                           "calibration slice [%llu, %llu) is not held here any more: "
                           "it restarts from the embedding",
                           (unsigned long long)t->row_begin, (unsigned long long)t->row_end);
    if (s == NULL) {
        s = lru;
        slice_drop(s);
        s->tokens = t->tokens, t->tokens = NULL;
        s->n_seq = t->n_seq, s->ctx = t->ctx, s->begin = t->row_begin;
        if ((st = lmp_calib_new(A->tf, s->tokens, s->n_seq, s->ctx, &s->cal, err))) {
            slice_drop(s);
            return st;
        }
        lmp_calib_set_slice(s->cal, s->n_seq);
        lmp_transformer_release_head(A->tf);
    }
    s->used   = ++A->slice_clock;
    s->job_id = t->job_id;
    lmp_calib_set_cancel(s->cal, &t->cancel); /* cleared below: the slice outlives the task */
    for (; s->pos < b; s->pos++)
        if ((st = t->qfrom >= 0 ? q_advance(t, s->cal, s->pos, err)
                                : lmp_calib_advance(s->cal, s->pos, err)))
            goto fail;
    if ((t->grams = lmp_calib_grams_new(lmp_transformer_config(A->tf))) == NULL) {
        st = lmp_err_set(err, LMP_ENOMEM, "out of memory for the Gram matrices");
        goto fail;
    }
    if ((st = lmp_calib_collect(s->cal, b, t->grams, err))) goto fail;
    if (t->qfrom < 0) { /* independent: the original model's output is the next input */
        lmp_calib_take_output(s->cal);
        s->pos = b + 1;
    } /* sequential: x stays block b's input until b is quantized (the next task ships it) */
    for (int32_t k = 0; k < b; k++) lmp_transformer_release_block(A->tf, k);
    lmp_calib_set_cancel(s->cal, NULL);
    return LMP_OK;
fail:
    slice_drop(s);
    return st;
}

/* TASK_KIND_FINETUNE_BLOCK b: every sequence of the job, advanced through the tuned
 * blocks before b (sequential mode; independent mode, without 'qfrom': the original
 * blocks) and kept here between tasks like a slice, b's original output as the target,
 * and b's quantized layers (shipped as ft/<layer>/...) tuned with the settings and seed of
 * every fine-tuned block (worker/finetune.h); x stays b's input for the next block. */
static enum lmp_status finetune(struct task *t, struct lmp_err *err) {
    struct agent           *A                   = t->agent;
    const int32_t           b                   = (int32_t)t->layer_index;
    const struct lmp_block *B                   = &A->model->blocks[b];
    const int64_t           dim                 = A->model->cfg.dim;
    enum lmp_status         st                  = LMP_OK;
    float                  *bias[LMP_LIN_COUNT] = {0};
    float                  *extra[4]            = {0}; /* q/k and post norms, frozen */
    if (t->ship.path && (st = ship_load(t, err))) return st;
    if (A->tf == NULL) {
        struct lmp_transformer_opts to = {.n_threads    = t->n_threads > 0 ? t->n_threads : 1,
                                          .lazy_weights = true};
        if ((st = lmp_transformer_new(A->model, &to, &A->tf, err))) return st;
    }
    const size_t  ntok = (size_t)(t->n_seq * t->ctx);
    struct slice *s = NULL, *lru = &A->slices[0];
    for (int i = 0; i < AGENT_MAX_SLICES && s == NULL; i++) {
        struct slice *q = &A->slices[i];
        if (q->cal && q->full && q->n_seq == t->n_seq && q->ctx == t->ctx &&
            memcmp(q->tokens, t->tokens, ntok * sizeof(int32_t)) == 0)
            s = q;
        if (q->used < lru->used) lru = q;
    }
    if (s && (s->pos > b || s->pos < t->qfrom || s->job_id != t->job_id ||
              (t->qfrom == 0 && s->pos > 0)))
        slice_drop(s), s = NULL;
    if (s == NULL && t->qfrom > 0)
        return lmp_err_set(err, LMP_ENOENT,
                           "the fine-tuning activations are not held here any more: they "
                           "restart from the embedding");
    if (s == NULL) {
        s = lru;
        slice_drop(s);
        s->tokens = t->tokens, t->tokens = NULL;
        s->n_seq = t->n_seq, s->ctx = t->ctx, s->begin = 0, s->full = true;
        if ((st = lmp_calib_new(A->tf, s->tokens, s->n_seq, s->ctx, &s->cal, err))) {
            slice_drop(s);
            return st;
        }
        lmp_transformer_release_head(A->tf);
    }
    s->used   = ++A->slice_clock;
    s->job_id = t->job_id;
    lmp_calib_set_cancel(s->cal, &t->cancel); /* cleared below: the slice outlives the task */
    for (; s->pos < b; s->pos++) /* independent mode (no 'qfrom'): the original blocks */
        if ((st = t->qfrom >= 0 ? q_advance(t, s->cal, s->pos, err)
                                : lmp_calib_advance(s->cal, s->pos, err)))
            goto fail;
    if ((st = lmp_calib_collect(s->cal, b, NULL, err))) goto fail; /* y: the original block b */
    if ((st = lmp_transformer_load_block(A->tf, b, err))) goto fail;
    struct lmp_ft_block fb = {.cfg = &A->model->cfg};
    for (int i = 0; i < 2; i++) {
        if ((t->ft_norm[i] = malloc((size_t)dim * sizeof(float))) == NULL) {
            st = lmp_err_set(err, LMP_ENOMEM, "out of memory");
            goto fail;
        }
        lmp_tensor_rows_f32(i ? B->ffn_norm : B->attn_norm, 0, 1, t->ft_norm[i]);
    }
    fb.attn_norm = t->ft_norm[0], fb.ffn_norm = t->ft_norm[1];
    /* Qwen3, Gemma 3: the block's q/k and post norms take part in the forward but stay
     * frozen here: the result carries only attn_norm and ffn_norm back (PAYLOAD_ATTN_NORM,
     * _FFN_NORM) and the artifact keeps the source's (lmp_artifact_put_model_tensors);
     * PV-Tuning (worker/tune.h) trains them */
    const struct lmp_tensor *xt[4] = {B->q_norm, B->k_norm, B->post_attn_norm, B->post_ffn_norm};
    for (int i = 0; i < 4; i++) {
        if (xt[i] == NULL) continue;
        if ((extra[i] = malloc((size_t)lmp_tensor_n_elem(xt[i]) * sizeof(float))) == NULL) {
            st = lmp_err_set(err, LMP_ENOMEM, "out of memory");
            goto fail;
        }
        lmp_tensor_rows_f32(xt[i], 0, 1, extra[i]);
    }
    fb.q_norm = extra[0], fb.k_norm = extra[1];
    fb.post_attn_norm = extra[2], fb.post_ffn_norm = extra[3];
    fb.local = lmp_rope_block_is_local(&A->model->cfg, b);
    for (int k = 0; k < LMP_LIN_COUNT; k++) {
        const struct lmp_linear *l = &B->lin[k];
        char                     bn[LMP_NAME_MAX + 32];
        lmp_payload_layer(bn, sizeof(bn), LMP__PAYLOAD__PAYLOAD_HELD, l->name,
                          LMP__PAYLOAD__PAYLOAD_CODES);
        const Lmp__Tensor *tc = q_blob(t, bn);
        lmp_payload_layer(bn, sizeof(bn), LMP__PAYLOAD__PAYLOAD_HELD, l->name,
                          LMP__PAYLOAD__PAYLOAD_CODEBOOKS);
        const Lmp__Tensor *tb = q_blob(t, bn);
        lmp_payload_layer(bn, sizeof(bn), LMP__PAYLOAD__PAYLOAD_HELD, l->name,
                          LMP__PAYLOAD__PAYLOAD_SCALES);
        const Lmp__Tensor *ts = q_blob(t, bn);
        if (tc && tb && ts) {
            const struct lmp_aq_scheme *sc = &t->spec.sc;
            const size_t                nc = (size_t)(l->n_out * (l->n_in / sc->g) * sc->M),
                         nb                = (size_t)sc->M * sc->K * sc->g;
            if (tc->data.len != nc * 2 || tb->data.len != nb * 4 ||
                ts->data.len != (size_t)l->n_out * 4) {
                st = lmp_err_set(err, LMP_EPROTO,
                                 "fine-tuning task: layer '%s' does not have the job's scheme",
                                 l->name);
                goto fail;
            }
            struct lmp_aq_layer *q = &t->ftl[k];
            *q       = (struct lmp_aq_layer){.sc = *sc, .n_out = l->n_out, .n_in = l->n_in};
            q->codes = malloc(nc * 2), q->codebooks = malloc(nb * 4),
            q->scales = malloc((size_t)l->n_out * 4);
            if (!q->codes || !q->codebooks || !q->scales) {
                st = lmp_err_set(err, LMP_ENOMEM, "out of memory");
                goto fail;
            }
            memcpy(q->codes, tc->data.data, nc * 2);
            memcpy(q->codebooks, tb->data.data, nb * 4);
            memcpy(q->scales, ts->data.data, (size_t)l->n_out * 4);
            for (size_t i = 0; i < nc; i++)
                if (q->codes[i] >= sc->K) {
                    st = lmp_err_set(err, LMP_EPROTO, "fine-tuning task: code out of range in '%s'",
                                     l->name);
                    goto fail;
                }
            fb.lin[k].aq = q;
        } else {
            fb.lin[k].w = lmp_transformer_linop(A->tf, b, (enum lmp_lin)k)->w; /* kept: frozen */
        }
        if (l->bias) { /* not trained, but the forward needs it */
            if ((bias[k] = malloc((size_t)l->n_out * sizeof(float))) == NULL) {
                st = lmp_err_set(err, LMP_ENOMEM, "out of memory");
                goto fail;
            }
            lmp_tensor_rows_f32(l->bias, 0, 1, bias[k]);
            fb.lin[k].bias = bias[k];
        }
    }
    struct lmp_ft_opts fo;
    lmp_ft_opts_init(&fo);
    if (t->ft_epochs > 0) fo.max_epochs = (int)t->ft_epochs;
    if (t->ft_max_steps > 0) fo.max_steps = t->ft_max_steps;
    if (t->ft_lr > 0) fo.lr = t->ft_lr;
    fo.n_threads = t->n_threads;
    fo.seed = lmp_compress_layer_seed(t->seed, B->lin[0].name) ^ 0x6674ULL; /* the block's seed */
    fo.train_bias        = false;
    fo.train_extra_norms = false; /* see above */
    fo.progress = on_ft_step, fo.progress_ctx = t;
    fo.cancel = &t->cancel;
    st = lmp_finetune_block(&fb, lmp_calib_x(s->cal), lmp_calib_y(s->cal), lmp_calib_n_seq(s->cal),
                            lmp_calib_ctx(s->cal), &fo, &t->fs, err);
    for (int k = 0; k < LMP_LIN_COUNT; k++) free(bias[k]);
    for (int i = 0; i < 4; i++) free(extra[i]);
    lmp_transformer_release_block(A->tf, b);
    if (st != LMP_OK)
        slice_drop(s);
    else
        s->pos = b, lmp_calib_set_cancel(s->cal, NULL); /* x stays b's input for the next task */
    return st;
fail:
    for (int k = 0; k < LMP_LIN_COUNT; k++) free(bias[k]);
    for (int i = 0; i < 4; i++) free(extra[i]);
    slice_drop(s);
    return st;
}

static void task_free(struct task **tp) {
    struct task *t = *tp;
    if (t == NULL) return;
    lmp_compress_result_release(&t->res);
    lmp_calib_grams_destroy(&t->grams);
    free(t->tokens);
    free(t->h);
    free(t->href.path);
    free(t->ship.path);
    if (t->qx) lmp__task_assign__free_unpacked(t->qx, NULL);
    free(t->out_dir);
    free(t->spooled);
    if (t->qa) lmp__task_assign__free_unpacked(t->qa, NULL);
    for (int k = 0; k < LMP_LIN_COUNT; k++) lmp_aq_layer_release(&t->ftl[k]);
    free(t->ft_norm[0]), free(t->ft_norm[1]);
    pthread_mutex_destroy(&t->rs.mu);
    pthread_cond_destroy(&t->rs.cv);
    pthread_mutex_destroy(&t->pg.mu);
    free(t);
    *tp = NULL;
}

/* Wait for the compute thread (it has written to the pipe or is about to). */
static void task_join(struct agent *A) {
    if (A->task == NULL || A->report_pending) return; /* none, or joined already */
    pthread_join(A->thread, NULL);
    char c;
    while (read(A->pipe_fd[0], &c, 1) < 0 && errno == EINTR) {
    }
}

/* Fault-injection hook for tests (tests/integration/cluster_badresult.sh):
 * LMP_FAULT_RESULT_CORRUPT=nan|inf|code|relerr spoils a layer's result before it is sent
 * (a NaN codebook entry, an Inf scale, a code of 2^B, a relative error of -1e300). */
static void corrupt_result(const struct lmp_aq_layer *q, Lmp__TaskStats *ts) {
    const char *f = getenv("LMP_FAULT_RESULT_CORRUPT");
    if (f == NULL || f[0] == '\0') return;
    if (strcmp(f, "nan") == 0) q->codebooks[0] = NAN;
    if (strcmp(f, "inf") == 0) q->scales[0] = INFINITY;
    if (strcmp(f, "code") == 0 && q->sc.K < 65536) q->codes[0] = (uint16_t)q->sc.K;
    if (strcmp(f, "relerr") == 0) ts->rel_err_after = -1e300;
}

/* The same hook for the other results: =calnan a NaN in a calibration slice's first Gram
 * sum, =calneg a negative diagonal there, =ftnan a NaN tuned norm, =ftbig a tuned norm of
 * 1e30. Spoils what is about to be sent (the task is dropped after it). */
static void corrupt_other(struct task *t) {
    const char *f = getenv("LMP_FAULT_RESULT_CORRUPT");
    if (f == NULL || f[0] == '\0') return;
    if (t->kind == LMP__TASK_KIND__TASK_KIND_CALIBRATE && t->grams && strncmp(f, "cal", 3) == 0)
        ((double *)lmp_calib_grams_sum(t->grams, (enum lmp_input)0))[0] =
            strcmp(f, "calnan") == 0 ? NAN : -1.0;
    if (t->kind == LMP__TASK_KIND__TASK_KIND_FINETUNE_BLOCK && strncmp(f, "ft", 2) == 0)
        t->ft_norm[0][0] = strcmp(f, "ftnan") == 0 ? NAN : 1e30f;
}

/* A calibration result bigger than the inline limit goes to the job's spool (TaskAssign.
 * out_dir) as one file of the four f64 sums, sent as references (send_result); smaller
 * ones, or a task without a spool (then the frame limit decides), go inline. */
static enum lmp_status spool_grams(struct task *t, struct lmp_err *err) {
    uint64_t    total = 0;
    const void *parts[LMP_INPUT_COUNT];
    for (int k = 0; k < LMP_INPUT_COUNT; k++) {
        const uint64_t n = (uint64_t)lmp_calib_grams_n_in(t->grams, (enum lmp_input)k);
        t->spool_len[k]  = n * n * sizeof(double);
        parts[k]         = lmp_calib_grams_sum(t->grams, (enum lmp_input)k);
        total += t->spool_len[k];
    }
    if (total <= lmp_blob_inline_max() || t->out_dir == NULL) return LMP_OK;
    corrupt_other(t);
    char *path = lmp_blobfile_cal_path(t->out_dir, t->job_id, t->task_id, t->attempt);
    if (path == NULL) return lmp_err_set(err, LMP_ENOMEM, "out of memory");
    const uint64_t  t0 = mono_ms();
    enum lmp_status st =
        lmp_blobfile_write(path, parts, t->spool_len, LMP_INPUT_COUNT, t->spool_xxh, err);
    if (st != LMP_OK) {
        free(path);
        return st;
    }
    if (getenv("LMP_FAULT_SPOOL_FLIP")) { /* tests: a byte changes after the checksum */
        FILE *f = fopen(path, "r+b");
        if (f) {
            const int ch = fgetc(f);
            if (ch != EOF && fseek(f, 0, SEEK_SET) == 0) fputc(ch ^ 0xff, f);
            fclose(f);
        }
    }
    lmp_log_info("worker %s: calibration sums of block %u written to '%s' (%.0f MB, %.2fs)",
                 t->agent->name, t->layer_index, path, (double)total / 1e6,
                 (double)(mono_ms() - t0) / 1000.0);
    t->spooled = path;
    lmp_calib_grams_destroy(&t->grams); /* the file has them */
    return LMP_OK;
}

/* H by reference: read by the compute thread, off the loop that keeps the heartbeats. */
static enum lmp_status read_href(struct task *t, struct lmp_err *err) {
    const uint64_t t0 = mono_ms();
    if ((t->h = malloc((size_t)t->href.length)) == NULL)
        return lmp_err_set(err, LMP_ENOMEM, "out of memory for H of '%s'", t->layer);
    enum lmp_status st =
        lmp_blobfile_read(t->href.path, t->href.offset, t->href.length, t->href.xxh, t->h, err);
    if (st == LMP_OK)
        lmp_log_info("worker %s: H of '%s' read from '%s' (%.0f MB, %.2fs)", t->agent->name,
                     t->layer, t->href.path, (double)t->href.length / 1e6,
                     (double)(mono_ms() - t0) / 1000.0);
    return st;
}

static enum lmp_status send_result(struct agent *A, struct task *t, struct lmp_err *err) {
    const struct lmp_compress_result *r = &t->res;
    Lmp__Envelope                     env;
    lmp_wire_init(&env, 0, 0);
    Lmp__TaskResult tr    = LMP__TASK_RESULT__INIT;
    Lmp__TaskStats  ts    = LMP__TASK_STATS__INIT;
    Lmp__Tensor     codes = LMP__TENSOR__INIT, cb = LMP__TENSOR__INIT, sc = LMP__TENSOR__INIT;
    Lmp__Tensor     rq = LMP__TENSOR__INIT, rs = LMP__TENSOR__INIT, rz = LMP__TENSOR__INIT;
    Lmp__Tensor    *extra[3] = {&rq, &rs, &rz};
    uint64_t        cs[3], bs[3], ss[1], qs[2], gs[2]; /* shapes: borrowed until the send */
    Lmp__Tensor     gt[LMP_INPUT_COUNT];
    Lmp__Tensor    *gp[LMP_INPUT_COUNT];
    Lmp__RowRange   rows = LMP__ROW_RANGE__INIT;
    uint64_t        gsh[LMP_INPUT_COUNT][2];
    Lmp__BlobRef    gref[LMP_INPUT_COUNT];
    Lmp__Blob       gblob[LMP_INPUT_COUNT], *gbp[LMP_INPUT_COUNT];
    static const char *const gname[LMP_INPUT_COUNT] = {"gram0", "gram1", "gram2", "gram3"};
    corrupt_other(t);
    tr.job_id = t->job_id, tr.task_id = t->task_id, tr.attempt = t->attempt;
    tr.kind           = t->kind;
    tr.layer          = t->layer;
    tr.layer_index    = t->layer_index;
    ts.rel_err_before = r->rel_err_before, ts.rel_err_after = r->rel_err_after;
    ts.bits_per_weight = r->bits_per_weight, ts.seconds = r->seconds;
    ts.steps = (uint32_t)r->steps;
    tr.stats = &ts;
    if (t->kind == LMP__TASK_KIND__TASK_KIND_QUANTIZE_ROWS) {
        rows.begin = t->row_begin, rows.end = t->row_end;
        tr.rows = &rows;
    }
    Lmp__Tensor  ftt[2 * LMP_LIN_COUNT + 2];
    Lmp__Tensor *ftp[2 * LMP_LIN_COUNT + 2];
    char         ftn[2 * LMP_LIN_COUNT][LMP_NAME_MAX + 32];
    uint64_t     fsh[2 * LMP_LIN_COUNT + 2][3];
    if (t->kind == LMP__TASK_KIND__TASK_KIND_FINETUNE_BLOCK) {
        const struct lmp_block *B = &A->model->blocks[t->layer_index];
        size_t                  n = 0;
        for (int k = 0; k < LMP_LIN_COUNT; k++) {
            const struct lmp_aq_layer *q = &t->ftl[k];
            if (q->codebooks == NULL) continue;
            for (int part = 0; part < 2; part++, n++) {
                lmp_payload_layer(
                    ftn[n], sizeof(ftn[n]), LMP__PAYLOAD__PAYLOAD_HELD, B->lin[k].name,
                    part ? LMP__PAYLOAD__PAYLOAD_SCALES : LMP__PAYLOAD__PAYLOAD_CODEBOOKS);
                ftt[n] = (Lmp__Tensor)LMP__TENSOR__INIT;
                if (part == 0) {
                    fsh[n][0] = (uint64_t)q->sc.M, fsh[n][1] = (uint64_t)q->sc.K,
                    fsh[n][2] = (uint64_t)q->sc.g;
                    lmp_wire_tensor_init(&ftt[n], ftn[n], LMP__DTYPE__DTYPE_F32, fsh[n], 3,
                                         q->codebooks, fsh[n][0] * fsh[n][1] * fsh[n][2] * 4);
                } else {
                    fsh[n][0] = (uint64_t)q->n_out;
                    lmp_wire_tensor_init(&ftt[n], ftn[n], LMP__DTYPE__DTYPE_F32, fsh[n], 1,
                                         q->scales, fsh[n][0] * 4);
                }
                ftp[n] = &ftt[n];
            }
        }
        for (int i = 0; i < 2; i++, n++) {
            fsh[n][0] = (uint64_t)A->model->cfg.dim;
            ftt[n]    = (Lmp__Tensor)LMP__TENSOR__INIT;
            lmp_wire_tensor_init(&ftt[n],
                                 lmp_payload_name(i ? LMP__PAYLOAD__PAYLOAD_FFN_NORM
                                                    : LMP__PAYLOAD__PAYLOAD_ATTN_NORM),
                                 LMP__DTYPE__DTYPE_F32, fsh[n], 1, t->ft_norm[i], fsh[n][0] * 4);
            ftp[n] = &ftt[n];
        }
        tr.n_tensors      = n;
        tr.tensors        = ftp;
        ts.rel_err_before = t->fs.rel_mse_before, ts.rel_err_after = t->fs.rel_mse_after;
        ts.steps = (uint32_t)t->fs.n_steps;
    } else if (t->kind == LMP__TASK_KIND__TASK_KIND_TUNE) {
        /* the tuned artifact is on disk (rank 0 wrote it): the stats say how it went */
        ts.loss = r->rel_err_after;
    } else if (t->kind == LMP__TASK_KIND__TASK_KIND_CALIBRATE && t->spooled) {
        rows.begin = t->row_begin, rows.end = t->row_end;
        tr.rows      = &rows;
        uint64_t off = 0;
        for (int k = 0; k < LMP_INPUT_COUNT; k++) {
            gref[k]        = (Lmp__BlobRef)LMP__BLOB_REF__INIT;
            gref[k].path   = t->spooled;
            gref[k].offset = off, gref[k].length = t->spool_len[k], gref[k].xxh64 = t->spool_xxh[k];
            off += t->spool_len[k];
            gblob[k]            = (Lmp__Blob)LMP__BLOB__INIT;
            gblob[k].name       = (char *)gname[k];
            gblob[k].where_case = LMP__BLOB__WHERE_REF;
            gblob[k].ref        = &gref[k];
            gbp[k]              = &gblob[k];
        }
        tr.n_outputs = LMP_INPUT_COUNT;
        tr.outputs   = gbp;
    } else if (t->kind == LMP__TASK_KIND__TASK_KIND_CALIBRATE) {
        rows.begin = t->row_begin, rows.end = t->row_end;
        tr.rows = &rows;
        for (int k = 0; k < LMP_INPUT_COUNT; k++) {
            const uint64_t n = (uint64_t)lmp_calib_grams_n_in(t->grams, (enum lmp_input)k);
            gsh[k][0] = gsh[k][1] = n;
            gt[k]                 = (Lmp__Tensor)LMP__TENSOR__INIT;
            lmp_wire_tensor_init(&gt[k], gname[k], LMP__DTYPE__DTYPE_F64, gsh[k], 2,
                                 lmp_calib_grams_sum(t->grams, (enum lmp_input)k),
                                 n * n * sizeof(double));
            gp[k] = &gt[k];
        }
        tr.n_tensors = LMP_INPUT_COUNT;
        tr.tensors   = gp;
    } else if (r->method == LMP_COMPRESS_AQLM) {
        const struct lmp_aq_layer *q = &r->aq;
        corrupt_result(q, &ts);
        cs[0] = (uint64_t)r->n_out, cs[1] = (uint64_t)(r->n_in / q->sc.g),
        cs[2] = (uint64_t)q->sc.M;
        bs[0] = (uint64_t)q->sc.M, bs[1] = (uint64_t)q->sc.K, bs[2] = (uint64_t)q->sc.g;
        ss[0] = (uint64_t)r->n_out;
        lmp_wire_tensor_init(&codes, lmp_payload_name(LMP__PAYLOAD__PAYLOAD_CODES),
                             LMP__DTYPE__DTYPE_U16, cs, 3, q->codes,
                             cs[0] * cs[1] * cs[2] * sizeof(uint16_t));
        lmp_wire_tensor_init(&cb, lmp_payload_name(LMP__PAYLOAD__PAYLOAD_CODEBOOKS),
                             LMP__DTYPE__DTYPE_F32, bs, 3, q->codebooks,
                             bs[0] * bs[1] * bs[2] * sizeof(float));
        lmp_wire_tensor_init(&sc, lmp_payload_name(LMP__PAYLOAD__PAYLOAD_SCALES),
                             LMP__DTYPE__DTYPE_F32, ss, 1, q->scales, ss[0] * sizeof(float));
        tr.codes = &codes, tr.codebooks = &cb, tr.scales = &sc;
    } else {
        const uint64_t G = (uint64_t)t->spec.rtn_group;
        qs[0] = (uint64_t)r->n_out, qs[1] = (uint64_t)r->n_in;
        gs[0] = (uint64_t)r->n_out, gs[1] = (uint64_t)r->n_in / G;
        lmp_wire_tensor_init(&rq, lmp_payload_name(LMP__PAYLOAD__PAYLOAD_RTN_Q),
                             LMP__DTYPE__DTYPE_U8, qs, 2, r->rtn_q, qs[0] * qs[1]);
        lmp_wire_tensor_init(&rs, lmp_payload_name(LMP__PAYLOAD__PAYLOAD_RTN_SCALE),
                             LMP__DTYPE__DTYPE_U16, gs, 2, r->rtn_scale, gs[0] * gs[1] * 2);
        lmp_wire_tensor_init(&rz, lmp_payload_name(LMP__PAYLOAD__PAYLOAD_RTN_ZERO),
                             LMP__DTYPE__DTYPE_U16, gs, 2, r->rtn_zero, gs[0] * gs[1] * 2);
        tr.n_tensors = 3;
        tr.tensors   = extra;
    }
    env.body_case   = LMP__ENVELOPE__BODY_TASK_RESULT;
    env.task_result = &tr;
    return send_env(A, &env, err);
}

static enum lmp_status on_assign(struct agent *A, const Lmp__Envelope *env, struct lmp_err *err);

enum { REPORT_RETRY_MS = 500, HELLO_RETRY_MS = 2000 };

/* Report the ended task (joined): its result, its error or its cancel, or drop it after a
 * hand-back. A report that cannot be sent (a send timed out, no route to the coordinator
 * for now, no memory for the frame) is kept, with the task, and tried again every
 * REPORT_RETRY_MS by the loop: the result is never dropped for a failed send, and the
 * agent goes on (a failed send used to end lmp_agent_run, leaving the coordinator to wait
 * for a worker that was gone). If the coordinator forgets this worker meanwhile, the next
 * Hello hands the task back and the report is dropped. */
static enum lmp_status task_report(struct agent *A, struct lmp_err *err) {
    struct task    *t     = A->task;
    enum lmp_status st    = LMP_OK;
    struct lmp_err  se    = {0};
    const bool      retry = A->report_pending;
    if (A->handed_back) {
        lmp_log_info("worker %s: task '%s' ended after hand-back; result dropped", A->name,
                     t->layer);
    } else if (A->cancelled) {
        if (!retry) lmp_log_info("worker %s: task '%s' cancelled", A->name, t->layer);
        st = send_error(A, t, LMP_ECANCEL, "task cancelled", 0, &se);
    } else if (t->st != LMP_OK) {
        if (!retry) lmp_log_warn("worker %s: task '%s' failed: %s", A->name, t->layer, t->err.msg);
        st = send_error(A, t, t->st, t->err.msg[0] ? t->err.msg : lmp_status_str(t->st), 0, &se);
    } else {
        if (!retry)
            lmp_log_info("worker %s: task '%s' done in %.2fs (rel err %.4g)", A->name, t->layer,
                         t->res.seconds, t->res.rel_err_after);
        st = send_result(A, t, &se);
        if (st == LMP_EINVAL) { /* the result fails the wire's own checks: it never will pass,
                                 * so it is reported as this worker's failed attempt */
            lmp_log_warn("worker %s: result of task '%s' not sent: %s", A->name, t->layer, se.msg);
            char           msg[sizeof(se.msg)];
            struct lmp_err se2 = {0};
            snprintf(msg, sizeof(msg), "%s", se.msg);
            st = send_error(A, t, LMP_EINVAL, msg, 0, &se2);
            se = se2;
        }
    }
    if (st != LMP_OK) { /* kept: the loop tries again */
        if (!retry)
            lmp_log_warn("worker %s: report of task '%s' not sent: %s; trying again every %dms",
                         A->name, t->layer, se.msg, REPORT_RETRY_MS);
        A->report_pending = true;
        A->report_ms      = mono_ms();
        return LMP_OK;
    }
    if (retry) lmp_log_info("worker %s: report of task '%s' sent", A->name, t->layer);
    A->report_pending = false;
    task_free(&A->task);
    A->cancelled = A->handed_back = false;
    if (A->queued) {
        Lmp__Envelope *q = A->queued;
        A->queued        = NULL;
        st               = on_assign(A, q, err);
        lmp_wire_free(&q);
    }
    return st;
}

/* The compute thread finished: report it (or drop it if cancelled / handed back). */
static enum lmp_status on_task_done(struct agent *A, struct lmp_err *err) {
    task_join(A);
    return task_report(A, err);
}

static const struct lmp_linear *find_linear(const struct lmp_model *m, const char *name) {
    for (int64_t i = 0; i < lmp_model_n_linears(m); i++)
        if (strcmp(lmp_model_linear(m, i)->name, name) == 0) return lmp_model_linear(m, i);
    return NULL;
}

/* Start a TaskAssign; a task that cannot start is answered with an Error at once. */
static enum lmp_status on_assign(struct agent *A, const Lmp__Envelope *env, struct lmp_err *err) {
    const Lmp__TaskAssign *ta   = env->task_assign;
    struct lmp_err         terr = {0};
    enum lmp_status        st   = LMP_OK;
    struct task           *t    = calloc(1, sizeof(*t));
    if (t == NULL) return lmp_err_set(err, LMP_ENOMEM, "out of memory");
    pthread_mutex_init(&t->rs.mu, NULL);
    pthread_cond_init(&t->rs.cv, NULL);
    pthread_mutex_init(&t->pg.mu, NULL);
    t->pg.phase  = ta->kind == LMP__TASK_KIND__TASK_KIND_QUANTIZE_ROWS    ? "rows"
                   : ta->kind == LMP__TASK_KIND__TASK_KIND_FINETUNE_BLOCK ? "finetune"
                   : ta->kind == LMP__TASK_KIND__TASK_KIND_CALIBRATE      ? "calibrate"
                   : ta->kind == LMP__TASK_KIND__TASK_KIND_TUNE           ? "tune"
                                                                          : "quantize";
    t->rs.red_fd = A->red_fd[1];
    t->qfrom     = -1;
    t->agent     = A;
    t->job_id = ta->job_id, t->task_id = ta->task_id, t->attempt = ta->attempt;
    t->layer_index = ta->layer_index;
    snprintf(t->layer, sizeof(t->layer), "%s", ta->layer ? ta->layer : "");
    if (A->task != NULL) {
        /* a coordinator never assigns to a worker it knows runs a tuning rank: this one does
         * not know it (it restarted before this worker went silent), so nobody sums for the
         * rank any more: stop it, and the retry of this task finds the worker free */
        if (A->task->kind == LMP__TASK_KIND__TASK_KIND_TUNE && !A->cancelled) {
            lmp_log_warn("worker %s: assigned work while running '%s'; stopping it", A->name,
                         A->task->layer);
            A->cancelled = true;
            task_cancel(A->task);
        }
        st =
            lmp_err_set(&terr, LMP_EBUSY, "worker '%s' is busy with '%s'", A->name, A->task->layer);
        goto refuse;
    }
    t->kind = ta->kind;
    if (ta->kind != LMP__TASK_KIND__TASK_KIND_QUANTIZE_LAYER &&
        ta->kind != LMP__TASK_KIND__TASK_KIND_QUANTIZE_ROWS &&
        ta->kind != LMP__TASK_KIND__TASK_KIND_FINETUNE_BLOCK &&
        ta->kind != LMP__TASK_KIND__TASK_KIND_CALIBRATE &&
        !(ta->kind == LMP__TASK_KIND__TASK_KIND_TUNE && A->o->tune)) {
        st = lmp_err_set(&terr, LMP_EUNSUP, "task kind %d is not supported by this worker",
                         (int)ta->kind);
        goto refuse;
    }
    if (ta->kind == LMP__TASK_KIND__TASK_KIND_TUNE) { /* the runner opens what it needs */
        const size_t len = lmp__task_assign__get_packed_size(ta);
        uint8_t     *buf = malloc(len ? len : 1);
        if (buf) lmp__task_assign__pack(ta, buf), t->qa = lmp__task_assign__unpack(NULL, len, buf);
        free(buf);
        if (t->qa == NULL || t->qa->tune == NULL || t->qa->ranks < 1 ||
            t->qa->rank >= t->qa->ranks) {
            st = t->qa ? lmp_err_set(&terr, LMP_EPROTO, "tuning task %llu: rank %u of %u",
                                     (unsigned long long)ta->task_id, ta->rank, ta->ranks)
                       : lmp_err_set(&terr, LMP_ENOMEM, "out of memory");
            goto refuse;
        }
        snprintf(t->layer, sizeof(t->layer), "tune rank %u/%u", ta->rank, ta->ranks);
        goto start;
    }
    if (ta->method == NULL || (st = lmp_agent_method_spec(ta->method, &t->spec, &terr)))
        goto refuse_inval;
    t->seed = ta->method->seed;
    if (A->model == NULL || strcmp(A->model_path, ta->model_path ? ta->model_path : "") != 0) {
        for (int i = 0; i < AGENT_MAX_SLICES; i++) slice_drop(&A->slices[i]);
        lmp_transformer_destroy(&A->tf);
        lmp_model_close(&A->model);
        A->model_path[0] = '\0';
        if ((st = lmp_model_open(ta->model_path ? ta->model_path : "", &A->model, &terr)))
            goto refuse;
        snprintf(A->model_path, sizeof(A->model_path), "%s", ta->model_path);
    }
    if (ta->kind == LMP__TASK_KIND__TASK_KIND_CALIBRATE ||
        ta->kind == LMP__TASK_KIND__TASK_KIND_FINETUNE_BLOCK) {
        const Lmp__Tensor *tk = NULL;
        for (size_t i = 0; i < ta->n_inputs; i++)
            if (ta->inputs[i]->name &&
                strcmp(ta->inputs[i]->name, lmp_payload_name(LMP__PAYLOAD__PAYLOAD_TOKENS)) == 0 &&
                ta->inputs[i]->where_case == LMP__BLOB__WHERE_TENSOR)
                tk = ta->inputs[i]->tensor;
        const struct lmp_config *cfg = &A->model->cfg;
        if (tk == NULL || tk->dtype != LMP__DTYPE__DTYPE_I32 || tk->n_shape != 2 ||
            tk->shape[0] == 0 || tk->shape[1] == 0 || tk->shape[0] > (1u << 20) ||
            tk->shape[1] > (1u << 20) || tk->data.len != tk->shape[0] * tk->shape[1] * 4 ||
            ta->rows == NULL || ta->rows->end - ta->rows->begin != tk->shape[0] ||
            ta->layer_index >= (uint32_t)cfg->n_layers) {
            st = lmp_err_set(&terr, LMP_EPROTO,
                             "calibration task %llu: no i32 (n, ctx) 'tokens' "
                             "input matching its rows, or block %u out of range",
                             (unsigned long long)ta->task_id, ta->layer_index);
            goto refuse;
        }
        for (size_t i = 0; i < tk->shape[0] * tk->shape[1]; i++) {
            int32_t v;
            memcpy(&v, tk->data.data + i * 4, 4);
            if (v < 0 || v >= cfg->vocab_size) {
                st = lmp_err_set(&terr, LMP_EPROTO,
                                 "calibration task %llu: token %d out of the "
                                 "vocabulary",
                                 (unsigned long long)ta->task_id, (int)v);
                goto refuse;
            }
        }
        if ((t->tokens = malloc(tk->data.len)) == NULL) {
            st = lmp_err_set(&terr, LMP_ENOMEM, "out of memory");
            goto refuse;
        }
        memcpy(t->tokens, tk->data.data, tk->data.len);
        if (ta->kind == LMP__TASK_KIND__TASK_KIND_CALIBRATE && ta->out_dir && ta->out_dir[0] &&
            (t->out_dir = strdup(ta->out_dir)) == NULL) {
            st = lmp_err_set(&terr, LMP_ENOMEM, "out of memory");
            goto refuse;
        }
        for (size_t i = 0; i < ta->n_inputs; i++) /* sequential mode: quantized blocks to pass */
            if (ta->inputs[i]->name &&
                strcmp(ta->inputs[i]->name, lmp_payload_name(LMP__PAYLOAD__PAYLOAD_QFROM)) == 0 &&
                ta->inputs[i]->where_case == LMP__BLOB__WHERE_TENSOR) {
                const Lmp__Tensor *qf = ta->inputs[i]->tensor;
                int32_t            v  = -1;
                if (qf->dtype == LMP__DTYPE__DTYPE_I32 && qf->data.len == 4)
                    memcpy(&v, qf->data.data, 4);
                if (v < 0 || v > (int32_t)ta->layer_index) {
                    st = lmp_err_set(&terr, LMP_EPROTO, "calibration task %llu: bad 'qfrom'",
                                     (unsigned long long)ta->task_id);
                    goto refuse;
                }
                t->qfrom = v;
            }
        /* its blobs (q/..., ft/...) stay with the task */
        if (t->qfrom >= 0 || ta->kind == LMP__TASK_KIND__TASK_KIND_FINETUNE_BLOCK) {
            const size_t len = lmp__task_assign__get_packed_size(ta);
            uint8_t     *buf = malloc(len ? len : 1);
            if (buf)
                lmp__task_assign__pack(ta, buf), t->qa = lmp__task_assign__unpack(NULL, len, buf);
            free(buf);
            if (t->qa == NULL) {
                st = lmp_err_set(&terr, LMP_ENOMEM, "out of memory");
                goto refuse;
            }
            for (size_t i = 0; i < t->qa->n_inputs; i++) { /* by reference: ship_load */
                const Lmp__Blob *sb = t->qa->inputs[i];
                if (sb->name == NULL || strcmp(sb->name, "shipped") != 0 ||
                    sb->where_case != LMP__BLOB__WHERE_REF)
                    continue;
                if (sb->ref->dataset[0] != '\0' || sb->ref->offset != 0 ||
                    sb->ref->length > ((uint64_t)1 << 31)) {
                    st = lmp_err_set(&terr, LMP_EPROTO,
                                     "task %llu: 'shipped' reference with a dataset, an offset "
                                     "or over 2 GiB",
                                     (unsigned long long)ta->task_id);
                    goto refuse;
                }
                if ((t->ship.path = strdup(sb->ref->path)) == NULL) {
                    st = lmp_err_set(&terr, LMP_ENOMEM, "out of memory");
                    goto refuse;
                }
                t->ship.length = sb->ref->length, t->ship.xxh = sb->ref->xxh64;
            }
        }
        t->n_seq = (int64_t)tk->shape[0], t->ctx = (int64_t)tk->shape[1];
        t->row_begin = ta->rows->begin, t->row_end = ta->rows->end;
        t->n_threads = (int)ta->n_threads;
        t->agent     = A;
        if (cfg->max_seq > 0 && t->ctx > cfg->max_seq) {
            st = lmp_err_set(&terr, LMP_EINVAL, "calibration context %lld exceeds the model's %d",
                             (long long)t->ctx, cfg->max_seq);
            goto refuse;
        }
        snprintf(t->layer, sizeof(t->layer), "calib[%llu,%llu)@%u",
                 (unsigned long long)t->row_begin, (unsigned long long)t->row_end, t->layer_index);
        if (ta->kind == LMP__TASK_KIND__TASK_KIND_FINETUNE_BLOCK) {
            if (t->spec.method != LMP_COMPRESS_AQLM || ta->finetune == NULL) {
                st = lmp_err_set(&terr, LMP_EPROTO,
                                 "fine-tuning task %llu: needs AQLM and its settings",
                                 (unsigned long long)ta->task_id);
                goto refuse;
            }
            t->ft_epochs = ta->finetune->epochs, t->ft_max_steps = ta->finetune->max_steps,
            t->ft_lr = ta->finetune->lr > 0 && isfinite(ta->finetune->lr) ? ta->finetune->lr : 0.0f;
            snprintf(t->layer, sizeof(t->layer), "finetune@%u", t->layer_index);
        }
        goto start;
    }
    if ((t->lin = find_linear(A->model, t->layer)) == NULL) {
        st = lmp_err_set(&terr, LMP_ENOENT, "model '%s' has no linear '%s'", A->model_path,
                         t->layer);
        goto refuse;
    }
    if ((st = lmp_compress_check(&t->spec, t->layer, t->lin->n_out, t->lin->n_in, &terr)))
        goto refuse;
    if (ta->kind == LMP__TASK_KIND__TASK_KIND_QUANTIZE_ROWS) {
        if (t->spec.method != LMP_COMPRESS_AQLM || ta->rows == NULL ||
            ta->rows->end <= ta->rows->begin || ta->rows->end > (uint64_t)t->lin->n_out) {
            st =
                lmp_err_set(&terr, LMP_EPROTO, "row task '%s': not AQLM, or rows outside [0, %lld)",
                            t->layer, (long long)t->lin->n_out);
            goto refuse;
        }
        t->row_begin = ta->rows->begin, t->row_end = ta->rows->end;
    }
    if (t->spec.method == LMP_COMPRESS_AQLM) {
        const Lmp__Tensor  *g  = NULL;
        const Lmp__BlobRef *gr = NULL;
        for (size_t i = 0; i < ta->n_inputs; i++)
            if (ta->inputs[i]->name &&
                strcmp(ta->inputs[i]->name, lmp_payload_name(LMP__PAYLOAD__PAYLOAD_GRAM)) == 0) {
                if (ta->inputs[i]->where_case == LMP__BLOB__WHERE_TENSOR)
                    g = ta->inputs[i]->tensor;
                else if (ta->inputs[i]->where_case == LMP__BLOB__WHERE_REF)
                    gr = ta->inputs[i]->ref;
            }
        const uint64_t n = (uint64_t)t->lin->n_in;
        if (g == NULL && gr) { /* by reference: the compute thread reads it (read_href) */
            if (gr->length != n * n * sizeof(float) || gr->dataset[0] != '\0') {
                st = lmp_err_set(&terr, LMP_EPROTO,
                                 "task '%s': 'gram' reference of %llu bytes, an f32 (%llu, %llu) "
                                 "H is %llu (or it names an HDF5 dataset)",
                                 t->layer, (unsigned long long)gr->length, (unsigned long long)n,
                                 (unsigned long long)n, (unsigned long long)(n * n * 4));
                goto refuse;
            }
            if ((t->href.path = strdup(gr->path)) == NULL) {
                st = lmp_err_set(&terr, LMP_ENOMEM, "out of memory");
                goto refuse;
            }
            t->href.offset = gr->offset, t->href.length = gr->length, t->href.xxh = gr->xxh64;
            goto start;
        }
        if (g == NULL || g->dtype != LMP__DTYPE__DTYPE_F32 || g->n_shape != 2 || g->shape[0] != n ||
            g->shape[1] != n) {
            st = lmp_err_set(&terr, LMP_EPROTO, "task '%s': no f32 (%llu, %llu) 'gram' input",
                             t->layer, (unsigned long long)n, (unsigned long long)n);
            goto refuse;
        }
        if ((t->h = malloc(g->data.len)) == NULL) {
            st = lmp_err_set(&terr, LMP_ENOMEM, "out of memory");
            goto refuse;
        }
        memcpy(t->h, g->data.data, g->data.len);
    }
start:
    t->spec.aq.progress = on_aq_round, t->spec.aq.progress_ctx = t; /* observes only */
    t->spec.aq.cancel = &t->cancel;
    t->done_fd        = A->pipe_fd[1];
    t->started_ms     = mono_ms();
    if (pthread_create(&A->thread, NULL, task_main, t) != 0) {
        st = lmp_err_set(&terr, LMP_ENOMEM, "cannot start a compute thread");
        goto refuse;
    }
    A->task = t;
    lmp_log_info("worker %s: task '%s' (attempt %u)", A->name, t->layer, t->attempt);
    return LMP_OK;
refuse_inval:
    if (st == LMP_OK) st = lmp_err_set(&terr, LMP_EPROTO, "task '%s' has no method", t->layer);
refuse:
    lmp_log_warn("worker %s: cannot run task '%s': %s", A->name, t->layer, terr.msg);
    st = send_error(A, t, st, terr.msg, env->seq, err);
    task_free(&t);
    return st;
}

/* The assignment queued behind an abandoned task is cancelled before it starts: it is
 * dropped and reported as cancelled, as if it had run (the coordinator waits for the end of
 * every rank it stopped). */
static enum lmp_status cancel_queued(struct agent *A) {
    const Lmp__TaskAssign *ta = A->queued->task_assign;
    Lmp__Envelope          env;
    Lmp__Error             e;
    lmp_wire_error_init(&env, &e, 0, 0, LMP_ECANCEL, "task cancelled before it started");
    e.job_id  = ta->job_id;
    e.task_id = ta->task_id;
    e.attempt = ta->attempt;
    e.layer   = ta->layer;
    lmp_log_info("worker %s: task %llu of job %llu cancelled before it started", A->name,
                 (unsigned long long)ta->task_id, (unsigned long long)ta->job_id);
    struct lmp_err e2 = {0}; /* unsent: the heartbeats no longer list it, which tells too */
    if (send_env(A, &env, &e2) != LMP_OK)
        lmp_log_warn("worker %s: cancel of a queued task not reported: %s", A->name, e2.msg);
    lmp_wire_free(&A->queued);
    return LMP_OK;
}

static enum lmp_status on_message(struct agent *A, Lmp__Envelope *env, bool *quit,
                                  struct lmp_err *err) {
    switch (env->body_case) {
    case LMP__ENVELOPE__BODY_HELLO_ACK:
        if (A->registered && A->task && A->task->kind == LMP__TASK_KIND__TASK_KIND_TUNE &&
            !A->cancelled) { /* a new session: nobody sums for this rank any more */
            lmp_log_warn("worker %s: new session with the coordinator; stopping '%s'", A->name,
                         A->task->layer);
            A->cancelled = true;
            task_cancel(A->task);
        }
        A->registered = true;
        if (env->hello_ack->heartbeat_ms) A->hb_ms = env->hello_ack->heartbeat_ms;
        if (env->hello_ack->heartbeat_timeout_ms)
            A->hb_timeout_ms = env->hello_ack->heartbeat_timeout_ms;
        lmp_log_info("worker %s: registered with coordinator '%s'", A->name,
                     env->hello_ack->name ? env->hello_ack->name : "");
        return LMP_OK;
    case LMP__ENVELOPE__BODY_TASK_ASSIGN:
        return on_assign(A, env, err);
    case LMP__ENVELOPE__BODY_TASK_CANCEL: {
        const Lmp__TaskCancel *tc = env->task_cancel;
        if (A->task && (tc->task_id == 0 || tc->task_id == A->task->task_id) &&
            tc->job_id == A->task->job_id)
            A->cancelled = true, task_cancel(A->task);
        if (A->queued && (tc->task_id == 0 || tc->task_id == A->queued->task_assign->task_id) &&
            tc->job_id == A->queued->task_assign->job_id)
            return cancel_queued(A);
        return LMP_OK;
    }
    case LMP__ENVELOPE__BODY_ROWS_SUM: {
        const Lmp__RowsSum *rs = env->rows_sum;
        struct task        *t  = A->task;
        if (t == NULL || !sums_through_coordinator(t->kind) || rs->job_id != t->job_id ||
            rs->task_id != t->task_id || rs->attempt != t->attempt)
            return LMP_OK; /* stale */
        pthread_mutex_lock(&t->rs.mu);
        if (t->rs.posted && !t->rs.have && rs->step == t->rs.step && t->rs.ivec &&
            rs->isum.len == (size_t)t->rs.n * sizeof(int64_t)) {
            memcpy(t->rs.ivec, rs->isum.data, rs->isum.len);
            t->rs.have = true;
            pthread_cond_broadcast(&t->rs.cv);
        } else if (t->rs.posted && !t->rs.have && rs->step == t->rs.step && t->rs.vec &&
                   (int64_t)rs->n_sum == t->rs.n) {
            memcpy(t->rs.vec, rs->sum, rs->n_sum * sizeof(double));
            t->rs.have = true;
            pthread_cond_broadcast(&t->rs.cv);
        } else if (t->rs.posted && rs->step == t->rs.step) {
            lmp_log_warn("worker %s: sum %llu of '%s' has %zu values, not %lld: shard stopped",
                         A->name, (unsigned long long)rs->step, t->layer, rs->n_sum,
                         (long long)t->rs.n);
            t->rs.abort = true;
            pthread_cond_broadcast(&t->rs.cv);
        }
        pthread_mutex_unlock(&t->rs.mu);
        return LMP_OK;
    }
    case LMP__ENVELOPE__BODY_SHUTDOWN:
        lmp_log_info("worker %s: shutdown requested by the coordinator", A->name);
        *quit = true;
        return LMP_OK;
    case LMP__ENVELOPE__BODY_ERROR: {
        const Lmp__Error *e    = env->error;
        enum lmp_status   code = LMP_EPROTO;
        lmp_status_from_name(e->code ? e->code : "", &code);
        if (code == LMP_EVERSION || code == LMP_EPERM)
            return lmp_err_set(err, code, "coordinator refused this worker: %s",
                               e->message ? e->message : "");
        if (A->hello_seq && env->reply_to == A->hello_seq) /* the answer to our Hello: refused */
            return lmp_err_set(err, code == LMP_ENOMEM ? LMP_EBUSY : code,
                               "worker '%s' refused: %s", A->name,
                               e->message && e->message[0] ? e->message : lmp_status_str(code));
        lmp_log_warn("worker %s: coordinator says %s: %s", A->name, e->code ? e->code : "?",
                     e->message ? e->message : "");
        /* forgot us: say Hello again, once (the refusals of what was sent before that Hello
         * are answered by it; a Hello each would start a new session each) */
        if (code == LMP_EPROTO && e->task_id == 0 &&
            (env->reply_to == 0 || env->reply_to > A->hello_seq))
            return send_hello(A, err);
        return LMP_OK;
    }
    default: /* Heartbeat, TaskResultAck: liveness only */
        return LMP_OK;
    }
}

enum { PROGRESS_MIN_MS = 250 };

/* LMP_FAULT_DROP_ASSIGN: is the TaskAssign just received one to drop? */
static bool drop_assign(struct agent *A) {
    A->n_assigns++;
    for (int i = 0; i < 8; i++)
        if (A->drop_assign[i] == A->n_assigns) return true;
    return false;
}

/* A new connection to the coordinator: the socket is closed (what it still queues is
 * dropped) and opened again with the same routing id, so the coordinator's ROUTER hands
 * this worker's id over to the new connection (ZMQ_ROUTER_HANDOVER). Why: a TCP
 * connection can be alive one way and dead the other. libzmq stops writing to a
 * connection whose send(2) failed (ECONNRESET) and waits for the read side to fail
 * before it reconnects; if the read side stays up, every later message waits for ever,
 * and a Hello on that socket never arrives. Only a new connection gets out of it. If the
 * coordinator is not reachable yet, the new socket keeps trying (ZeroMQ reconnects) and
 * the next silence reconnects again. */
static enum lmp_status agent_reconnect(struct agent *A, struct lmp_err *err) {
    if (A->sock) zmq_close(A->sock);
    A->sock = zmq_socket(A->zctx, ZMQ_DEALER);
    if (A->sock == NULL)
        return lmp_err_set(err, LMP_EIO, "cannot create a zeromq socket: %s", zmq_strerror(errno));
    enum lmp_status st;
    if ((st = lmp_zsock_configure(A->sock, 0, 5000, err)) ||
        (st = lmp_zsock_set_id(A->sock, A->rid, err)))
        return st;
    const int      wait_ms = A->o->connect_timeout_ms < 2000 ? A->o->connect_timeout_ms : 2000;
    struct lmp_err e2      = {0};
    if (lmp_zsock_connect(A->zctx, A->sock, A->o->endpoint, A->o->curve, wait_ms, &e2) != LMP_OK)
        lmp_log_warn("worker %s: reconnecting: %s; trying on", A->name, e2.msg);
    return LMP_OK;
}

/* TaskProgress of the running task: its phase and the compute thread's latest step. */
static void send_progress(struct agent *A, uint64_t now) {
    struct task      *t = A->task;
    Lmp__Envelope     env;
    Lmp__TaskProgress tp = LMP__TASK_PROGRESS__INIT;
    tp.job_id = t->job_id, tp.task_id = t->task_id;
    tp.attempt = t->attempt;
    pthread_mutex_lock(&t->pg.mu);
    tp.phase = (char *)t->pg.phase;
    tp.step = t->pg.step, tp.n_steps = t->pg.n_steps;
    tp.loss = t->pg.loss, tp.rel_err = t->pg.rel_err;
    tp.tokens_per_s = t->pg.tok_s, tp.codes_changed = t->pg.codes_changed;
    t->pg_sent = t->pg.seq;
    pthread_mutex_unlock(&t->pg.mu);
    t->pg_sent_ms = now;
    tp.elapsed_s  = (double)(now - t->started_ms) / 1000.0;
    lmp_wire_init(&env, 0, 0);
    env.body_case     = LMP__ENVELOPE__BODY_TASK_PROGRESS;
    env.task_progress = &tp;
    struct lmp_err e2 = {0};
    send_env(A, &env, &e2);
}

/* The device this worker reports: o->device, else $LMPRESS_DEVICE, else the CPU; tests set
 * $LMP_FAKE_DEVICE to report a GPU without one (the tasks then compute on the CPU). */
static enum lmp_status agent_device(struct agent *A, struct lmp_err *err) {
    const char *fake = getenv("LMP_FAKE_DEVICE"), *env = getenv("LMPRESS_DEVICE");
    const char *spec = A->o->device ? A->o->device : env && env[0] ? env : "cpu";
    if (fake && fake[0]) {
        if (!lmp_device_name_ok(fake))
            return lmp_err_set(err, LMP_EINVAL, "LMP_FAKE_DEVICE='%.40s' is not cpu or cuda:N",
                               fake);
        memset(&A->dev, 0, sizeof(A->dev));
        A->dev.device = strcmp(fake, "cpu") == 0 ? LMP_DEVICE_CPU : LMP_DEVICE_CUDA;
        snprintf(A->dev.name, sizeof(A->dev.name), "%s", fake);
        lmp_log_warn("worker %s: reporting device %s without using it (LMP_FAKE_DEVICE, tests "
                     "only)",
                     A->name, fake);
        return LMP_OK;
    }
    enum lmp_status st = lmp_device_resolve(spec, &A->dev, err);
    if (st != LMP_OK) return st;
    if (A->dev.device == LMP_DEVICE_CUDA)
        lmp_log_warn("worker %s: device %s (%s) selected; the stages do not run on the CUDA "
                     "table yet, tasks compute on the CPU (docs/gpu.md)",
                     A->name, A->dev.name, A->dev.model);
    return LMP_OK;
}

enum lmp_status lmp_agent_run(const struct lmp_agent_opts *o, volatile sig_atomic_t *stop,
                              struct lmp_err *err) {
    assert(o && o->endpoint && stop);
    struct agent A = {
        .o = o, .hb_ms = 1000, .hb_timeout_ms = 10000, .pipe_fd = {-1, -1}, .red_fd = {-1, -1}};
    enum lmp_status st = LMP_OK;
    for (const char *d = getenv("LMP_FAULT_DROP_ASSIGN"); d && *d;) {
        char         *end;
        unsigned long n = strtoul(d, &end, 10);
        for (int i = 0; i < 8 && end != d; i++)
            if (A.drop_assign[i] == 0) {
                A.drop_assign[i] = (uint32_t)n;
                break;
            }
        d = end != d && *end == ',' ? end + 1 : NULL;
    }
    if (o->name && o->name[0])
        snprintf(A.name, sizeof(A.name), "%s", o->name);
    else {
        char host[64] = "";
        gethostname(host, sizeof(host) - 1);
        snprintf(A.name, sizeof(A.name), "%s-%d", host, (int)getpid());
    }
    if ((st = agent_device(&A, err))) return st;
    /* The routing id is this process's alone (two workers given one name, or several
     * agents in one process, never share it), so the coordinator hears a second worker of
     * a name and can refuse it by name instead of ZeroMQ dropping its connection. */
    uint32_t rnd = 0;
    if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != (ssize_t)sizeof(rnd))
        rnd = (uint32_t)mono_ms() ^ (uint32_t)(uintptr_t)&A;
    snprintf(A.rid, sizeof(A.rid), "%.120s.%d.%08x", A.name, (int)getpid(), rnd);
    if (pipe(A.pipe_fd) != 0 || pipe(A.red_fd) != 0) {
        for (int i = 0; i < 2; i++)
            if (A.pipe_fd[i] >= 0) close(A.pipe_fd[i]);
        return lmp_err_set(err, LMP_EIO, "cannot create a pipe");
    }
    if ((A.zctx = zmq_ctx_new()) == NULL || (A.sock = zmq_socket(A.zctx, ZMQ_DEALER)) == NULL) {
        st = lmp_err_set(err, LMP_EIO, "cannot create a zeromq socket: %s", zmq_strerror(errno));
        goto out;
    }
    if ((st = lmp_zsock_configure(A.sock, 0, 5000, err)) ||
        (st = lmp_zsock_set_id(A.sock, A.rid, err)))
        goto out;
    if ((st = lmp_zsock_connect(A.zctx, A.sock, o->endpoint, o->curve, o->connect_timeout_ms, err)))
        goto out;
    lmp_fault_sleep("LMP_FAULT_HELLO_SLEEP_MS"); /* tests: a worker that joins late */
    if ((st = send_hello(&A, err))) goto out;
    const uint64_t t_start = mono_ms();
    A.last_rx_ms           = t_start;
    bool quit              = false;
    while (!quit) {
        if (*stop) {
            if (A.task && !A.handed_back && !A.cancelled) {
                Lmp__Envelope     env;
                Lmp__TaskHandback hb = LMP__TASK_HANDBACK__INIT;
                lmp_wire_init(&env, 0, 0);
                hb.job_id = A.task->job_id, hb.task_id = A.task->task_id;
                hb.attempt        = A.task->attempt;
                hb.reason         = "worker stopping";
                env.body_case     = LMP__ENVELOPE__BODY_TASK_HANDBACK;
                env.task_handback = &hb;
                struct lmp_err e2 = {0};
                if (send_env(&A, &env, &e2) != LMP_OK)
                    lmp_log_warn("worker %s: hand-back not sent: %s", A.name, e2.msg);
                else
                    lmp_log_info("worker %s: stopping; task '%s' handed back", A.name,
                                 A.task->layer);
                A.handed_back = true;
            }
            task_cancel(A.task);
            if (A.task) task_join(&A), task_free(&A.task);
            break;
        }
        zmq_pollitem_t items[3] = {{A.sock, 0, ZMQ_POLLIN, 0},
                                   {NULL, A.pipe_fd[0], ZMQ_POLLIN, 0},
                                   {NULL, A.red_fd[0], ZMQ_POLLIN, 0}};
        int            n        = zmq_poll(items, 3, 100);
        if (n < 0 && errno != EINTR) {
            st = lmp_err_set(err, LMP_EIO, "poll: %s", zmq_strerror(errno));
            break;
        }
        const uint64_t now = mono_ms();
        if (n > 0 && (items[2].revents & ZMQ_POLLIN)) { /* a row shard's part: out it goes */
            char c;
            while (read(A.red_fd[0], &c, 1) < 0 && errno == EINTR) {
            }
            struct task *t = A.task;
            if (t && sums_through_coordinator(t->kind)) {
                pthread_mutex_lock(&t->rs.mu);
                if (t->rs.posted && !t->rs.sent && !t->rs.abort) {
                    Lmp__Envelope    env;
                    Lmp__RowsPartial rp = LMP__ROWS_PARTIAL__INIT;
                    lmp_wire_init(&env, 0, 0);
                    rp.job_id = t->job_id, rp.task_id = t->task_id, rp.attempt = t->attempt;
                    rp.step = t->rs.step;
                    if (t->rs.ivec) {
                        rp.ipart.data = (uint8_t *)t->rs.ivec;
                        rp.ipart.len  = (size_t)t->rs.n * sizeof(int64_t);
                    } else {
                        rp.n_part = (size_t)t->rs.n;
                        rp.part   = t->rs.vec;
                    }
                    env.body_case     = LMP__ENVELOPE__BODY_ROWS_PARTIAL;
                    env.rows_partial  = &rp;
                    struct lmp_err e2 = {0};
                    if (send_env(&A, &env, &e2) != LMP_OK) {
                        lmp_log_warn("worker %s: part of '%s' not sent: %s", A.name, t->layer,
                                     e2.msg);
                        t->rs.abort = true;
                        pthread_cond_broadcast(&t->rs.cv);
                    }
                    t->rs.sent = true;
                }
                pthread_mutex_unlock(&t->rs.mu);
            }
        }
        if (n > 0 && (items[1].revents & ZMQ_POLLIN)) {
            if ((st = on_task_done(&A, err))) break;
        }
        if (A.report_pending && (A.handed_back || now - A.report_ms >= REPORT_RETRY_MS)) {
            if ((st = task_report(&A, err))) break;
        }
        if (n > 0 && (items[0].revents & ZMQ_POLLIN)) {
            Lmp__Envelope  *env  = NULL;
            struct lmp_err  rerr = {0};
            enum lmp_status rs   = lmp_zsock_recv(A.sock, 0, 0, NULL, "coordinator", &env, &rerr);
            if (rs == LMP_EVERSION) {
                st = lmp_err_set(err, LMP_EVERSION, "%s", rerr.msg);
                break;
            }
            if (rs != LMP_OK) lmp_log_warn("worker %s: bad message dropped: %s", A.name, rerr.msg);
            if (env && env->body_case == LMP__ENVELOPE__BODY_TASK_ASSIGN &&
                drop_assign(&A)) { /* tests: as if it could not be unpacked */
                lmp_log_warn("worker %s: bad message dropped: TaskAssign %u dropped "
                             "(LMP_FAULT_DROP_ASSIGN)",
                             A.name, A.n_assigns);
                lmp_wire_free(&env);
            }
            if (env && env->body_case == LMP__ENVELOPE__BODY_TASK_ASSIGN && A.task &&
                A.handed_back) { /* runs when the abandoned task ends */
                A.last_rx_ms = now;
                lmp_wire_free(&A.queued);
                A.queued = env;
                env      = NULL;
            }
            if (env) {
                A.last_rx_ms = now;
                st           = on_message(&A, env, &quit, err);
                lmp_wire_free(&env);
                if (st != LMP_OK) break;
            }
        }
        /* a Hello or its HelloAck can be lost (a failed send on either side): ask again */
        if (!A.registered && now - A.last_hello_ms >= HELLO_RETRY_MS) {
            struct lmp_err e2 = {0};
            send_hello(&A, &e2);
        }
        if (!A.registered && now - t_start > (uint64_t)o->connect_timeout_ms) {
            st = lmp_err_set(err, LMP_EIO,
                             "cannot reach the coordinator at '%s' (no answer in "
                             "%.1fs)",
                             o->endpoint, o->connect_timeout_ms / 1000.0);
            break;
        }
        if (A.registered && now - A.last_hb_ms >= A.hb_ms) {
            A.last_hb_ms = now;
            Lmp__Envelope  env;
            Lmp__Heartbeat hb = LMP__HEARTBEAT__INIT;
            uint64_t       running[2];
            size_t         n_running = 0;
            if (A.task) running[n_running++] = A.task->task_id;
            if (A.queued) running[n_running++] = A.queued->task_assign->task_id; /* next */
            lmp_wire_init(&env, 0, 0);
            hb.time_ms         = now;
            hb.n_running_tasks = n_running;
            hb.running_tasks   = running;
            env.body_case      = LMP__ENVELOPE__BODY_HEARTBEAT;
            env.heartbeat      = &hb;
            struct lmp_err e2  = {0};
            send_env(&A, &env, &e2);
            if (A.task && !A.cancelled && !A.report_pending) send_progress(&A, now);
        } else if (A.registered && A.task && !A.cancelled && !A.report_pending &&
                   now - A.task->pg_sent_ms >= PROGRESS_MIN_MS) {
            /* a new round or step between heartbeats: report it (at most every 250 ms) */
            pthread_mutex_lock(&A.task->pg.mu);
            const bool fresh = A.task->pg.seq != A.task->pg_sent;
            pthread_mutex_unlock(&A.task->pg.mu);
            if (fresh) send_progress(&A, now);
        }
        /* a silent coordinator may have restarted: greet it again */
        if (A.registered && now - A.last_rx_ms > A.hb_timeout_ms &&
            now - A.last_hello_ms > A.hb_timeout_ms) {
            lmp_log_warn("worker %s: coordinator silent for %.1fs; reconnecting and saying "
                         "Hello again",
                         A.name, (double)(now - A.last_rx_ms) / 1000.0);
            if ((st = agent_reconnect(&A, err))) break;
            struct lmp_err e2 = {0};
            send_hello(&A, &e2);
        }
    }
out:
    task_cancel(A.task);
    if (A.task) task_join(&A), task_free(&A.task);
    lmp_wire_free(&A.queued);
    for (int i = 0; i < AGENT_MAX_SLICES; i++) slice_drop(&A.slices[i]);
    lmp_transformer_destroy(&A.tf);
    lmp_model_close(&A.model);
    if (A.sock) zmq_close(A.sock);
    if (A.zctx) zmq_ctx_term(A.zctx);
    for (int i = 0; i < 2; i++) {
        if (A.pipe_fd[i] >= 0) close(A.pipe_fd[i]);
        if (A.red_fd[i] >= 0) close(A.red_fd[i]);
    }
    return st;
}
