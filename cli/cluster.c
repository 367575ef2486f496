/*  cluster - see cluster.h */
#include "cli/cluster.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int lmp_cli_connect(const char *endpoint, struct lmp_client **cl) {
    struct lmp_err err = {0};
    const char *t = getenv("LMPRESS_TIMEOUT_MS");
    int timeout = t ? atoi(t) : 5000;
    struct lmp_curve_client curve;
    bool use_curve = false;
    int rc = lmp_cli_curve_from_env(&curve, &use_curve);
    if (rc != LMP_EXIT_OK) return rc;
    enum lmp_status st = lmp_client_connect_curve(endpoint, timeout, use_curve ? &curve : NULL,
                                                  cl, &err);
    memset(&curve, 0, sizeof(curve));
    if (st != LMP_OK) {
        fprintf(stderr, "lmpress: %s\n", err.msg);
        return st == LMP_EPERM ? LMP_EXIT_DENIED : LMP_EXIT_UNREACHABLE;
    }
    return LMP_EXIT_OK;
}

int lmp_cli_query(struct lmp_client *cl, uint64_t job_id, bool layers, bool workers,
                  Lmp__Envelope **rep) {
    Lmp__Envelope env;
    Lmp__JobQuery q = LMP__JOB_QUERY__INIT;
    struct lmp_err err = {0};
    lmp_wire_init(&env, 0, 0);
    q.job_id = job_id, q.with_layers = layers, q.with_workers = workers;
    env.body_case = LMP__ENVELOPE__BODY_JOB_QUERY;
    env.job_query = &q;
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
    case LMP__JOB_STATE__JOB_STATE_QUEUED:    return "queued";
    case LMP__JOB_STATE__JOB_STATE_RUNNING:   return "running";
    case LMP__JOB_STATE__JOB_STATE_DONE:      return "done";
    case LMP__JOB_STATE__JOB_STATE_FAILED:    return "failed";
    case LMP__JOB_STATE__JOB_STATE_CANCELLED: return "cancelled";
    default:                                  return "unknown";
    }
}

const char *lmp_cli_task_state_name(Lmp__TaskState st) {
    switch (st) {
    case LMP__TASK_STATE__TASK_STATE_PENDING:   return "pending";
    case LMP__TASK_STATE__TASK_STATE_RUNNING:   return "running";
    case LMP__TASK_STATE__TASK_STATE_DONE:      return "done";
    case LMP__TASK_STATE__TASK_STATE_FAILED:    return "failed";
    case LMP__TASK_STATE__TASK_STATE_CANCELLED: return "cancelled";
    default:                                    return "unknown";
    }
}

const char *lmp_cli_worker_state_name(Lmp__WorkerState st) {
    switch (st) {
    case LMP__WORKER_STATE__WORKER_STATE_IDLE:     return "idle";
    case LMP__WORKER_STATE__WORKER_STATE_BUSY:     return "busy";
    case LMP__WORKER_STATE__WORKER_STATE_DRAINING: return "draining";
    case LMP__WORKER_STATE__WORKER_STATE_DEAD:     return "dead";
    default:                                       return "unknown";
    }
}

int lmp_cli_job_exit(Lmp__JobState st) {
    return st == LMP__JOB_STATE__JOB_STATE_DONE ? LMP_EXIT_OK : LMP_EXIT_FAIL;
}

static double age_s(uint64_t unix_ms) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    const double now = (double) ts.tv_sec * 1000.0 + (double) ts.tv_nsec / 1e6;
    return unix_ms ? (now - (double) unix_ms) / 1000.0 : -1.0;
}

static cJSON *worker_json(const Lmp__WorkerInfo *w) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", w->id ? w->id : "");
    cJSON_AddStringToObject(o, "state", lmp_cli_worker_state_name(w->state));
    cJSON_AddNumberToObject(o, "cores", w->caps ? w->caps->cores : 0);
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
        printf("worker %-24s %-8s %3u cores  heartbeat %.1fs ago  %u done  %u failed  %.3g "
               "weights/s\n", w->id ? w->id : "", lmp_cli_worker_state_name(w->state), w->caps ? w->caps->cores : 0,
               age_s(w->last_heartbeat_ms), w->n_done, w->n_failed, w->throughput);
    }
}

void lmp_cli_print_status(const struct lmp_cli *cli, const Lmp__JobStatus *js, bool with_detail) {
    if (cli->json) {
        cJSON *root = cJSON_CreateObject(), *jobs = cJSON_AddArrayToObject(root, "jobs");
        for (size_t i = 0; i < js->n_jobs; i++) {
            const Lmp__JobInfo *j = js->jobs[i];
            cJSON *o = cJSON_CreateObject();
            cJSON_AddNumberToObject(o, "job_id", (double) j->job_id);
            cJSON_AddStringToObject(o, "state", lmp_cli_job_state_name(j->state));
            cJSON_AddStringToObject(o, "model", j->model_path ? j->model_path : "");
            cJSON_AddStringToObject(o, "out", j->out_path ? j->out_path : "");
            cJSON_AddNumberToObject(o, "layers_total", j->layers_total);
            cJSON_AddNumberToObject(o, "layers_done", j->layers_done);
            cJSON_AddNumberToObject(o, "throughput", j->throughput);
            cJSON_AddNumberToObject(o, "eta_s", j->eta_s);
            cJSON_AddStringToObject(o, "error", j->error && j->error->message ? j->error->message : "");
            cJSON *ls = cJSON_AddArrayToObject(o, "layers");
            for (size_t k = 0; k < j->n_layers; k++) {
                const Lmp__LayerInfo *l = j->layers[k];
                cJSON *lo = cJSON_CreateObject();
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
        for (size_t i = 0; i < js->n_workers; i++) cJSON_AddItemToArray(ws, worker_json(js->workers[i]));
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
        printf("job %llu %s: %u/%u layers done, %.3g weights/s", (unsigned long long) j->job_id,
               lmp_cli_job_state_name(j->state), j->layers_done, j->layers_total, j->throughput);
        if (j->eta_s >= 0 && j->state == LMP__JOB_STATE__JOB_STATE_RUNNING) printf(", ETA %.0fs", j->eta_s);
        printf("\n  %s -> %s\n", j->model_path ? j->model_path : "", j->out_path ? j->out_path : "");
        if (j->error && j->error->message && j->error->message[0]) printf("  %s\n", j->error->message);
        if (!with_detail) continue;
        for (size_t k = 0; k < j->n_layers; k++) {
            const Lmp__LayerInfo *l = j->layers[k];
            printf("  %-44s %-9s %-22s attempt %u  rel err %.4g  %.2fs\n", l->name ? l->name : "",
                   lmp_cli_task_state_name(l->state), l->worker ? l->worker : "", l->attempt, l->rel_err_after,
                   l->seconds);
        }
    }
    if (with_detail) lmp_cli_print_workers_text(js->n_workers, js->workers);
    fflush(stdout);
}
