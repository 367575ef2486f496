/*  cluster - see cluster.h */
#include "cli/cluster.h"
#include "cli/launch.h" /* defines: lmp_launch_submit */

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A positive number of milliseconds from the environment variable name, else def. */
static int env_ms(const char *name, int def) {
    const char *t = getenv(name);
    if (t == NULL || t[0] == '\0') return def;
    char *end    = NULL;
    errno        = 0;
    const long v = strtol(t, &end, 10);
    return errno == 0 && *end == '\0' && v > 0 && v <= INT_MAX ? (int)v : def;
}

static int call_timeout_ms(void) {
    return env_ms("LMPRESS_TIMEOUT_MS", 5000);
}

static uint64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Connect with the CURVE keys of the environment: *st and err say how it went. Returns
 * the exit code of bad key options or files (printed), else LMP_EXIT_OK. */
static int try_connect(const char *endpoint, int timeout_ms, struct lmp_client **cl,
                       enum lmp_status *st, struct lmp_err *err) {
    struct lmp_curve_client curve;
    bool                    use_curve = false;
    int                     rc        = lmp_cli_curve_from_env(&curve, &use_curve);
    if (rc != LMP_EXIT_OK) return rc;
    *st = lmp_client_connect_curve(endpoint, timeout_ms, use_curve ? &curve : NULL, cl, err);
    memset(&curve, 0, sizeof(curve));
    return LMP_EXIT_OK;
}

int lmp_cli_connect(const char *endpoint, struct lmp_client **cl) {
    struct lmp_err  err = {0};
    enum lmp_status st  = LMP_OK;
    int             rc  = try_connect(endpoint, call_timeout_ms(), cl, &st, &err);
    if (rc != LMP_EXIT_OK) return rc;
    if (st != LMP_OK) {
        fprintf(stderr, "lmpress: %s\n", err.msg);
        return st == LMP_EPERM ? LMP_EXIT_DENIED : LMP_EXIT_UNREACHABLE;
    }
    return LMP_EXIT_OK;
}

/* ---- following a job across coordinator restarts (cluster.h) --------------------- */

void lmp_cli_session_init(struct lmp_cli_session *s, const char *endpoint, uint64_t job_id,
                          const char *out_path) {
    memset(s, 0, sizeof(*s));
    s->endpoint     = endpoint;
    s->job_id       = job_id;
    s->out_path     = out_path && out_path[0] ? strdup(out_path) : NULL;
    s->reconnect_ms = env_ms("LMPRESS_RECONNECT_MS", 60000);
}

void lmp_cli_session_release(struct lmp_cli_session *s) {
    lmp_client_close(&s->cl);
    free(s->out_path);
    s->out_path = NULL;
}

int lmp_cli_session_connect(struct lmp_cli_session *s) {
    return lmp_cli_connect(s->endpoint, &s->cl);
}

/* After a reconnection: the job followed may have a new id (a coordinator restarted with
 * its state resumes it as a new job): take the id of the current job when it writes the
 * same artifact. */
static void relocate_job(struct lmp_cli_session *s) {
    if (s->job_id == 0 || s->out_path == NULL) return;
    Lmp__Envelope  env, *rep = NULL;
    Lmp__JobQuery  q   = LMP__JOB_QUERY__INIT;
    struct lmp_err err = {0};
    lmp_wire_init(&env, 0, 0);
    env.body_case = LMP__ENVELOPE__BODY_JOB_QUERY;
    env.job_query = &q;
    if (lmp_client_call(s->cl, &env, &rep, &err) != LMP_OK) return;
    if (rep->body_case == LMP__ENVELOPE__BODY_JOB_STATUS && rep->job_status->n_jobs == 1) {
        const Lmp__JobInfo *j = rep->job_status->jobs[0];
        if (j->job_id != s->job_id && j->out_path && strcmp(j->out_path, s->out_path) == 0) {
            fprintf(stderr, "lmpress: job %llu ('%s') is job %llu on the restarted coordinator\n",
                    (unsigned long long)s->job_id, s->out_path, (unsigned long long)j->job_id);
            s->job_id = j->job_id;
        }
    }
    lmp_wire_free(&rep);
}

/* Open a new session (Hello again) until one answers or *deadline passes (0: set it now,
 * reconnect_ms ahead). Exit code: 0, 3 (no coordinator in time), 5, or a key option's. */
static int reconnect(struct lmp_cli_session *s, const struct lmp_err *why, uint64_t *deadline) {
    lmp_client_close(&s->cl);
    if (*deadline == 0) {
        *deadline = mono_ms() + (uint64_t)s->reconnect_ms;
        if (why->code == LMP_EPROTO) /* answered "say Hello first" */
            fprintf(stderr,
                    "lmpress: the coordinator at '%s' no longer knows this session "
                    "(restarted); reconnecting\n",
                    s->endpoint);
        else
            fprintf(stderr,
                    "lmpress: lost the coordinator at '%s' (%s); reconnecting for up "
                    "to %.0fs\n",
                    s->endpoint, why->msg, s->reconnect_ms / 1000.0);
    }
    const int per_try = call_timeout_ms();
    for (;;) {
        const uint64_t now = mono_ms();
        if (s->stop && *s->stop) return LMP_EXIT_INTERRUPTED;
        if (now >= *deadline) {
            fprintf(stderr,
                    "lmpress: cannot reach the coordinator at '%s' (no answer in the %.0fs "
                    "after it was lost; LMPRESS_RECONNECT_MS)\n",
                    s->endpoint, s->reconnect_ms / 1000.0);
            return LMP_EXIT_UNREACHABLE;
        }
        const uint64_t  left = *deadline - now;
        struct lmp_err  err  = {0};
        enum lmp_status st   = LMP_OK;
        const int       t    = left < (uint64_t)per_try ? (int)left : per_try;
        int             rc   = try_connect(s->endpoint, t > 100 ? t : 100, &s->cl, &st, &err);
        if (rc != LMP_EXIT_OK) return rc;
        if (st == LMP_OK) break;
        if (st == LMP_EPERM) {
            fprintf(stderr, "lmpress: %s\n", err.msg);
            return LMP_EXIT_DENIED;
        }
        struct timespec ts = {0, 200 * 1000000L}; /* a refused connection returns at once */
        nanosleep(&ts, NULL);
    }
    fprintf(stderr, "lmpress: reconnected to the coordinator at '%s'\n", s->endpoint);
    s->reconnected = true;
    relocate_job(s);
    return LMP_EXIT_OK;
}

int lmp_cli_session_connect_patient(struct lmp_cli_session *s) {
    struct lmp_err  err = {0};
    enum lmp_status st  = LMP_OK;
    int             rc  = try_connect(s->endpoint, call_timeout_ms(), &s->cl, &st, &err);
    if (rc != LMP_EXIT_OK) return rc;
    if (st == LMP_OK) return LMP_EXIT_OK;
    if (st != LMP_EIO) {
        fprintf(stderr, "lmpress: %s\n", err.msg);
        return st == LMP_EPERM ? LMP_EXIT_DENIED : LMP_EXIT_UNREACHABLE;
    }
    uint64_t deadline = 0;
    rc                = reconnect(s, &err, &deadline);
    s->reconnected    = false; /* the first session: nothing to look up again */
    return rc;
}

int lmp_cli_session_call(struct lmp_cli_session *s, Lmp__Envelope *req, Lmp__Envelope **rep) {
    uint64_t deadline = 0;
    bool     fresh    = false; /* a session opened by this call: its refusals are real */
    for (;;) {
        struct lmp_err  err = {0};
        enum lmp_status st  = LMP_EIO;
        if (s->cl)
            st = lmp_client_call(s->cl, req, rep, &err);
        else
            lmp_err_set(&err, LMP_EIO, "no session");
        if (st == LMP_OK) return LMP_EXIT_OK;
        /* no answer: killed or unreachable; EPROTO from a session the coordinator does not
         * know ("say Hello first"): it was restarted. Either way, a new session. */
        if (st != LMP_EIO && !(st == LMP_EPROTO && !fresh)) {
            fprintf(stderr, "lmpress: %s\n", err.msg);
            const int rc = lmp_cli_exit_code(st);
            return rc == LMP_EXIT_OK ? LMP_EXIT_FAIL : rc;
        }
        const uint64_t old_id = s->job_id;
        int            rc     = reconnect(s, &err, &deadline);
        if (rc != LMP_EXIT_OK) return rc;
        fresh = true;
        /* the request again, for the job's id there, and from the start of the new
         * coordinator's log ring */
        if (req->body_case == LMP__ENVELOPE__BODY_JOB_QUERY && old_id &&
            req->job_query->job_id == old_id)
            req->job_query->job_id = s->job_id;
        if (req->body_case == LMP__ENVELOPE__BODY_LOG_QUERY) {
            if (old_id && req->log_query->job_id == old_id) req->log_query->job_id = s->job_id;
            req->log_query->after_seq = 0;
        }
    }
}

int lmp_cli_session_query(struct lmp_cli_session *s, bool layers, bool workers,
                          Lmp__Envelope **rep) {
    Lmp__Envelope env;
    Lmp__JobQuery q = LMP__JOB_QUERY__INIT;
    lmp_wire_init(&env, 0, 0);
    q.job_id = s->job_id, q.with_layers = layers, q.with_workers = workers;
    env.body_case = LMP__ENVELOPE__BODY_JOB_QUERY;
    env.job_query = &q;
    int rc        = lmp_cli_session_call(s, &env, rep);
    if (rc != LMP_EXIT_OK) return rc;
    if ((*rep)->body_case != LMP__ENVELOPE__BODY_JOB_STATUS) {
        lmp_wire_free(rep);
        fprintf(stderr, "lmpress: unexpected reply to a job query\n");
        return LMP_EXIT_FAIL;
    }
    const Lmp__JobStatus *js = (*rep)->job_status;
    if (js->n_jobs == 1 && js->jobs[0]->out_path && js->jobs[0]->out_path[0] &&
        (s->out_path == NULL || strcmp(s->out_path, js->jobs[0]->out_path) != 0)) {
        char *o = strdup(js->jobs[0]->out_path);
        if (o) free(s->out_path), s->out_path = o;
    }
    return LMP_EXIT_OK;
}

int lmp_cli_query(struct lmp_client *cl, uint64_t job_id, bool layers, bool workers,
                  Lmp__Envelope **rep) {
    Lmp__Envelope  env;
    Lmp__JobQuery  q   = LMP__JOB_QUERY__INIT;
    struct lmp_err err = {0};
    lmp_wire_init(&env, 0, 0);
    q.job_id = job_id, q.with_layers = layers, q.with_workers = workers;
    env.body_case      = LMP__ENVELOPE__BODY_JOB_QUERY;
    env.job_query      = &q;
    enum lmp_status st = lmp_client_call(cl, &env, rep, &err);
    if (st == LMP_OK && (*rep)->body_case != LMP__ENVELOPE__BODY_JOB_STATUS) {
        lmp_wire_free(rep);
        st = lmp_err_set(&err, LMP_EPROTO, "unexpected reply to a job query");
    }
    if (st == LMP_OK) return LMP_EXIT_OK;
    fprintf(stderr, "lmpress: %s\n", err.msg);
    return st == LMP_EIO ? LMP_EXIT_UNREACHABLE : LMP_EXIT_FAIL;
}

const char *lmp_cli_job_state_name(Lmp__JobState st) {
    switch (st) {
    case LMP__JOB_STATE__JOB_STATE_QUEUED:
        return "queued";
    case LMP__JOB_STATE__JOB_STATE_RUNNING:
        return "running";
    case LMP__JOB_STATE__JOB_STATE_DONE:
        return "done";
    case LMP__JOB_STATE__JOB_STATE_FAILED:
        return "failed";
    case LMP__JOB_STATE__JOB_STATE_CANCELLED:
        return "cancelled";
    default:
        return "unknown";
    }
}

const char *lmp_cli_task_state_name(Lmp__TaskState st) {
    switch (st) {
    case LMP__TASK_STATE__TASK_STATE_PENDING:
        return "pending";
    case LMP__TASK_STATE__TASK_STATE_RUNNING:
        return "running";
    case LMP__TASK_STATE__TASK_STATE_DONE:
        return "done";
    case LMP__TASK_STATE__TASK_STATE_FAILED:
        return "failed";
    case LMP__TASK_STATE__TASK_STATE_CANCELLED:
        return "cancelled";
    default:
        return "unknown";
    }
}

const char *lmp_cli_worker_state_name(Lmp__WorkerState st) {
    switch (st) {
    case LMP__WORKER_STATE__WORKER_STATE_IDLE:
        return "idle";
    case LMP__WORKER_STATE__WORKER_STATE_BUSY:
        return "busy";
    case LMP__WORKER_STATE__WORKER_STATE_DRAINING:
        return "draining";
    case LMP__WORKER_STATE__WORKER_STATE_DEAD:
        return "dead";
    default:
        return "unknown";
    }
}

int lmp_cli_job_exit(Lmp__JobState st) {
    return st == LMP__JOB_STATE__JOB_STATE_DONE ? LMP_EXIT_OK : LMP_EXIT_FAIL;
}

static double age_s(uint64_t unix_ms) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    const double now = (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
    return unix_ms ? (now - (double)unix_ms) / 1000.0 : -1.0;
}

static cJSON *worker_json(const Lmp__WorkerInfo *w) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", w->id ? w->id : "");
    cJSON_AddStringToObject(o, "state", lmp_cli_worker_state_name(w->state));
    cJSON_AddNumberToObject(o, "cores", w->caps ? w->caps->cores : 0);
    cJSON_AddStringToObject(
        o, "device", w->caps && w->caps->device && w->caps->device[0] ? w->caps->device : "cpu");
    cJSON_AddStringToObject(o, "host", w->caps && w->caps->hostname ? w->caps->hostname : "");
    cJSON_AddNumberToObject(o, "last_heartbeat_age_s", age_s(w->last_heartbeat_ms));
    cJSON_AddNumberToObject(o, "throughput", w->throughput);
    cJSON_AddNumberToObject(o, "done", w->n_done);
    cJSON_AddNumberToObject(o, "failed", w->n_failed);
    return o;
}

void lmp_cli_print_workers_text(size_t n, Lmp__WorkerInfo **ws) {
    for (size_t i = 0; i < n; i++) {
        const Lmp__WorkerInfo *w = ws[i];
        printf("worker %-24s %-8s %3u cores %-7s  heartbeat %.1fs ago  %u done  %u failed  %.3g "
               "weights/s\n",
               w->id ? w->id : "", lmp_cli_worker_state_name(w->state),
               w->caps ? w->caps->cores : 0,
               w->caps && w->caps->device && w->caps->device[0] ? w->caps->device : "cpu",
               age_s(w->last_heartbeat_ms), w->n_done, w->n_failed, w->throughput);
    }
}

void lmp_cli_print_status(const struct lmp_cli *cli, const Lmp__JobStatus *js, bool with_detail) {
    if (cli->json) {
        cJSON *root = cJSON_CreateObject(), *jobs = cJSON_AddArrayToObject(root, "jobs");
        for (size_t i = 0; i < js->n_jobs; i++) {
            const Lmp__JobInfo *j = js->jobs[i];
            cJSON              *o = cJSON_CreateObject();
            cJSON_AddNumberToObject(o, "job_id", (double)j->job_id);
            cJSON_AddStringToObject(o, "state", lmp_cli_job_state_name(j->state));
            cJSON_AddStringToObject(o, "model", j->model_path ? j->model_path : "");
            cJSON_AddStringToObject(o, "out", j->out_path ? j->out_path : "");
            cJSON_AddNumberToObject(o, "layers_total", j->layers_total);
            cJSON_AddNumberToObject(o, "layers_done", j->layers_done);
            cJSON_AddNumberToObject(o, "throughput", j->throughput);
            cJSON_AddNumberToObject(o, "eta_s", j->eta_s);
            cJSON_AddStringToObject(o, "error",
                                    j->error && j->error->message ? j->error->message : "");
            cJSON *ls = cJSON_AddArrayToObject(o, "layers");
            for (size_t k = 0; k < j->n_layers; k++) {
                const Lmp__LayerInfo *l  = j->layers[k];
                cJSON                *lo = cJSON_CreateObject();
                cJSON_AddStringToObject(lo, "name", l->name ? l->name : "");
                cJSON_AddStringToObject(lo, "state", lmp_cli_task_state_name(l->state));
                cJSON_AddStringToObject(lo, "worker", l->worker ? l->worker : "");
                cJSON_AddNumberToObject(lo, "attempt", l->attempt);
                cJSON_AddNumberToObject(lo, "rel_err", l->rel_err_after);
                cJSON_AddNumberToObject(lo, "seconds", l->seconds);
                cJSON_AddItemToArray(ls, lo);
            }
            cJSON_AddItemToArray(jobs, o);
        }
        cJSON *ws = cJSON_AddArrayToObject(root, "workers");
        for (size_t i = 0; i < js->n_workers; i++)
            cJSON_AddItemToArray(ws, worker_json(js->workers[i]));
        char *s = cJSON_PrintUnformatted(root);
        if (s) printf("%s\n", s);
        free(s);
        cJSON_Delete(root);
        fflush(stdout);
        return;
    }
    if (js->n_jobs == 0) printf("no job\n");
    for (size_t i = 0; i < js->n_jobs; i++) {
        const Lmp__JobInfo *j = js->jobs[i];
        printf("job %llu %s: %u/%u layers done, %.3g weights/s", (unsigned long long)j->job_id,
               lmp_cli_job_state_name(j->state), j->layers_done, j->layers_total, j->throughput);
        if (j->eta_s >= 0 && j->state == LMP__JOB_STATE__JOB_STATE_RUNNING)
            printf(", ETA %.0fs", j->eta_s);
        printf("\n  %s -> %s\n", j->model_path ? j->model_path : "",
               j->out_path ? j->out_path : "");
        if (j->error && j->error->message && j->error->message[0])
            printf("  %s\n", j->error->message);
        if (!with_detail) continue;
        for (size_t k = 0; k < j->n_layers; k++) {
            const Lmp__LayerInfo *l = j->layers[k];
            printf("  %-44s %-9s %-22s attempt %u  rel err %.4g  %.2fs\n", l->name ? l->name : "",
                   lmp_cli_task_state_name(l->state), l->worker ? l->worker : "", l->attempt,
                   l->rel_err_after, l->seconds);
        }
    }
    if (with_detail) lmp_cli_print_workers_text(js->n_workers, js->workers);
    fflush(stdout);
}

void lmp_cli_print_tune_step(uint64_t job_id, const Lmp__TuneInfo *t) {
    fprintf(stderr,
            "job %llu: tune step %llu/%llu  kl %.4f  agree %.3f  codes changed %llu  %.0f tok/s  "
            "(%u rank%s)\n",
            (unsigned long long)job_id, (unsigned long long)t->step, (unsigned long long)t->n_steps,
            t->kl, t->agree, (unsigned long long)t->codes_changed, t->tokens_per_s, t->ranks,
            t->ranks == 1 ? "" : "s");
}

/* ---- submitting a job (submit, tune --connect) ---------------------------------------- */

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Follow job_id to its end, across restarts of the coordinator (a new session each time,
 * cli/cluster.h); the session cl is taken over and closed. */
static int follow(struct lmp_cli *cli, const char *ep, struct lmp_client *cl, uint64_t job_id,
                  const char *out_path) {
    uint32_t               last_done = UINT32_MAX;
    uint64_t               last_step = 0;
    struct lmp_cli_session ss, *s = &ss;
    lmp_cli_session_init(s, ep, job_id, out_path);
    s->cl  = cl;
    int rc = LMP_EXIT_OK;
    for (;;) {
        Lmp__Envelope *rep = NULL;
        if ((rc = lmp_cli_session_query(s, false, false, &rep)) != LMP_EXIT_OK) break;
        job_id                   = s->job_id; /* a restarted coordinator may give it another id */
        const Lmp__JobStatus *js = rep->job_status;
        if (js->n_jobs != 1) {
            lmp_wire_free(&rep);
            fprintf(stderr, "lmpress: job %llu is gone from the coordinator\n",
                    (unsigned long long)job_id);
            rc = LMP_EXIT_FAIL;
            break;
        }
        const Lmp__JobInfo *j = js->jobs[0];
        if (j->tune && (j->tune->kl == 0 && j->tune->agree == 0)) { /* no step of this run yet */
        } else if (j->tune && j->tune->step != last_step && !cli->json) { /* a PV-Tuning job */
            last_step = j->tune->step;
            lmp_cli_print_tune_step(job_id, j->tune);
        } else if (!j->tune && j->layers_done != last_done && !cli->json) {
            last_done = j->layers_done;
            fprintf(stderr, "job %llu: %u/%u layers done", (unsigned long long)job_id,
                    j->layers_done, j->layers_total);
            if (j->eta_s >= 0 && j->state == LMP__JOB_STATE__JOB_STATE_RUNNING)
                fprintf(stderr, ", ETA %.0fs", j->eta_s);
            fputc('\n', stderr);
        }
        if (j->state != LMP__JOB_STATE__JOB_STATE_RUNNING &&
            j->state != LMP__JOB_STATE__JOB_STATE_QUEUED) {
            rc                  = lmp_cli_job_exit(j->state);
            enum lmp_status est = LMP_OK; /* an input the job refused: exit 4, as compress */
            if (j->state == LMP__JOB_STATE__JOB_STATE_FAILED && j->error && j->error->code &&
                lmp_status_from_name(j->error->code, &est) &&
                lmp_cli_exit_code(est) == LMP_EXIT_INPUT)
                rc = LMP_EXIT_INPUT;
            if (cli->json)
                lmp_cli_print_status(cli, js, false);
            else if (rc != LMP_EXIT_OK)
                fprintf(stderr, "lmpress: job %llu %s: %s\n", (unsigned long long)job_id,
                        lmp_cli_job_state_name(j->state),
                        j->error && j->error->message ? j->error->message : "");
            else
                printf("job %llu done: %s\n", (unsigned long long)job_id, j->out_path);
            lmp_wire_free(&rep);
            break;
        }
        lmp_wire_free(&rep);
        sleep_ms(300);
    }
    lmp_cli_session_release(s);
    return rc;
}

/* Submit spec, waiting out a coordinator that does not answer or restarts (for up to
 * LMPRESS_RECONNECT_MS): the job is sent again on a new session, and a coordinator that has
 * it already (planned, running, or resumed from its state) answers with that job. On success
 * *cl is the session. Exit code as lmp_cli_session_call. */
static int submit_patient(const char *ep, const Lmp__JobSpec *spec, struct lmp_client **cl,
                          uint64_t *job_id, uint32_t *n_tasks) {
    struct lmp_cli_session s;
    lmp_cli_session_init(&s, ep, 0, NULL);
    int rc = lmp_cli_session_connect_patient(&s);
    if (rc == LMP_EXIT_OK) {
        Lmp__Envelope  env, *rep = NULL;
        Lmp__JobSubmit js = LMP__JOB_SUBMIT__INIT;
        js.spec           = (Lmp__JobSpec *)spec;
        lmp_wire_init(&env, 0, 0);
        env.body_case  = LMP__ENVELOPE__BODY_JOB_SUBMIT;
        env.job_submit = &js;
        if ((rc = lmp_cli_session_call(&s, &env, &rep)) == LMP_EXIT_OK) {
            if (rep->body_case == LMP__ENVELOPE__BODY_JOB_ACCEPTED) {
                *job_id  = rep->job_accepted->job_id;
                *n_tasks = rep->job_accepted->n_tasks;
            } else {
                fprintf(stderr, "lmpress: unexpected reply to a job submission\n");
                rc = LMP_EXIT_FAIL;
            }
            lmp_wire_free(&rep);
        }
    }
    if (rc == LMP_EXIT_OK) *cl = s.cl, s.cl = NULL;
    lmp_cli_session_release(&s);
    return rc;
}

int lmp_cli_submit_job(struct lmp_cli *cli, const char *ep, const Lmp__JobSpec *spec, bool wait) {
    struct lmp_client *cl      = NULL;
    uint64_t           job_id  = 0;
    uint32_t           n_tasks = 0;
    struct lmp_err     err     = {0};
    int                rc;
    if (wait) /* patient: across a restart of the coordinator (a resent job is the same job) */
        rc = submit_patient(ep, spec, &cl, &job_id, &n_tasks);
    else if ((rc = lmp_cli_connect(ep, &cl)) == LMP_EXIT_OK) {
        enum lmp_status st = lmp_launch_submit(cl, spec, &job_id, &n_tasks, &err);
        if (st != LMP_OK)
            rc = st == LMP_EIO ? (fprintf(stderr, "lmpress: %s\n", err.msg), LMP_EXIT_UNREACHABLE)
                               : lmp_cli_fail(cli, &err);
    }
    if (rc != LMP_EXIT_OK) {
        lmp_client_close(&cl);
        return rc;
    }
    if (!cli->json || !wait)
        printf(cli->json ? "{\"job_id\":%llu,\"tasks\":%u}\n" : "job %llu submitted (%u tasks)\n",
               (unsigned long long)job_id, n_tasks);
    fflush(stdout);
    if (wait) return follow(cli, ep, cl, job_id, spec->out_path); /* takes cl over */
    lmp_client_close(&cl);
    return LMP_EXIT_OK;
}
