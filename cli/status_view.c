/*  status_view - see status_view.h */
#define _GNU_SOURCE /* vasprintf */
#include "cli/status_view.h"
#include "cli/cluster.h"       /* defines: lmp_cli_*_state_name */
#include "coordinator/coord.h" /* defines: LMP_CAL_TASK_BASE, LMP_FT_TASK_BASE */

#include <assert.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The lines of the screen: a growing buffer, each line cut to cols, at most max lines. */
struct screen {
    char  *buf;
    size_t len, cap;
    int    n_lines, max_lines, cols;
    bool   oom;
};

static bool full(const struct screen *s) {
    return s->n_lines >= s->max_lines;
}

static void add_line(struct screen *s, const char *fmt, ...) {
    if (full(s) || s->oom) return;
    va_list ap;
    va_start(ap, fmt);
    char     *line = NULL;
    const int n    = vasprintf(&line, fmt, ap);
    va_end(ap);
    if (n < 0) {
        s->oom = true;
        return;
    }
    size_t m = strcspn(line, "\n");
    if (m > (size_t)s->cols) m = (size_t)s->cols;
    if (s->len + m + 2 > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 1024;
        while (cap < s->len + m + 2) cap *= 2;
        char *b = realloc(s->buf, cap);
        if (b == NULL) {
            free(line);
            s->oom = true;
            return;
        }
        s->buf = b, s->cap = cap;
    }
    memcpy(s->buf + s->len, line, m);
    s->len += m;
    s->buf[s->len++] = '\n';
    s->buf[s->len]   = '\0';
    s->n_lines++;
    free(line);
}

void lmp_status_view_bar(char *out, int width, double frac) {
    if (!(frac >= 0)) frac = 0;
    if (frac > 1) frac = 1;
    const int n_full = (int)(frac * width + 0.5);
    out[0]           = '[';
    for (int i = 0; i < width; i++) out[1 + i] = i < n_full ? '#' : '-';
    out[1 + width] = ']';
    out[2 + width] = '\0';
}

void lmp_status_view_duration(char *out, size_t cap, double s) {
    if (!(s >= 0)) {
        snprintf(out, cap, "?");
        return;
    }
    const long t = (long)(s + 0.5);
    if (t < 120)
        snprintf(out, cap, "%lds", t);
    else if (t < 7200)
        snprintf(out, cap, "%ldm%02lds", t / 60, t % 60);
    else
        snprintf(out, cap, "%ldh%02ldm", t / 3600, t % 3600 / 60);
}

void lmp_status_view_init(struct lmp_status_view *v) {
    assert(v);
    memset(v, 0, sizeof(*v));
}

double lmp_status_view_throughput(struct lmp_status_view *v, const Lmp__JobInfo *j) {
    if (j->state == LMP__JOB_STATE__JOB_STATE_RUNNING) {
        v->job_id     = j->job_id;
        v->throughput = j->throughput;
        return j->throughput;
    }
    return v->job_id == j->job_id && v->throughput > 0 ? v->throughput : j->throughput;
}

/* What a worker runs, from its first running task id (coordinator/coord.h): a stage and
 * its subject. */
static void worker_task(const Lmp__JobInfo *j, const Lmp__WorkerInfo *w, char *out, size_t cap) {
    out[0] = '\0';
    if (w->n_running_tasks == 0) return;
    const uint64_t t = w->running_tasks[0];
    if (t >= LMP_FT_TASK_BASE)
        snprintf(out, cap, "fine-tuning block %llu", (unsigned long long)(t - LMP_FT_TASK_BASE));
    else if (t >= LMP_CAL_TASK_BASE)
        snprintf(out, cap, "calibrating (slice %llu)", (unsigned long long)(t - LMP_CAL_TASK_BASE));
    else if (j && t >= 1 && t <= j->n_layers && j->layers[t - 1]->name)
        snprintf(out, cap, "quantizing %s", j->layers[t - 1]->name);
}

static void render_job(struct screen *s, struct lmp_status_view *v, const Lmp__JobStatus *js,
                       const Lmp__JobInfo *j, uint64_t now_ms) {
    unsigned n[8] = {0}; /* layers per task state */
    for (size_t i = 0; i < j->n_layers; i++) n[(unsigned)j->layers[i]->state & 7]++;
    const unsigned pending = n[LMP__TASK_STATE__TASK_STATE_PENDING],
                   running = n[LMP__TASK_STATE__TASK_STATE_RUNNING],
                   failed  = n[LMP__TASK_STATE__TASK_STATE_FAILED],
                   cancel  = n[LMP__TASK_STATE__TASK_STATE_CANCELLED];
    const bool     live    = j->state == LMP__JOB_STATE__JOB_STATE_RUNNING;
    const uint64_t end     = j->finished_ms ? j->finished_ms : now_ms;
    char           el[32], eta[32], b[256];
    lmp_status_view_duration(
        el, sizeof(el),
        j->started_ms && end > j->started_ms ? (double)(end - j->started_ms) / 1e3 : 0);
    lmp_status_view_duration(eta, sizeof(eta), j->eta_s);
    const double tp = lmp_status_view_throughput(v, j);
    add_line(s, "job %llu%s%s %s: %u/%u layers, %.3g weights/s, elapsed %s%s%s",
             (unsigned long long)j->job_id, j->name && j->name[0] ? " " : "",
             j->name ? j->name : "", lmp_cli_job_state_name(j->state), j->layers_done,
             j->layers_total, tp, el, live ? ", ETA " : "", live ? eta : "");
    /* the overall bar: as wide as the terminal allows */
    int w = s->cols - 8;
    if (w > (int)sizeof(b) - 3) w = (int)sizeof(b) - 3;
    if (w < 4) w = 4;
    const double frac = j->layers_total ? (double)j->layers_done / j->layers_total : 0;
    lmp_status_view_bar(b, w, frac);
    add_line(s, "%s %3.0f%%", b, 100 * frac);
    add_line(s, "layers: %u done, %u running, %u pending%s%.0u%s%s%.0u%s", j->layers_done, running,
             pending, failed ? ", " : "", failed, failed ? " failed" : "", cancel ? ", " : "",
             cancel, cancel ? " cancelled" : "");
    /* what runs now, one phrase per busy worker, identical ones counted */
    char now[512] = "", what[160];
    int  n_quant  = 0;
    for (size_t i = 0; i < js->n_workers; i++) {
        worker_task(j, js->workers[i], what, sizeof(what));
        if (strstr(what, "quantizing ") == what)
            n_quant++;
        else if (what[0] && strstr(now, what) == NULL)
            snprintf(now + strlen(now), sizeof(now) - strlen(now), "%s%s", now[0] ? "; " : "",
                     what);
    }
    if (n_quant)
        snprintf(now + strlen(now), sizeof(now) - strlen(now), "%squantizing %d layer%s",
                 now[0] ? "; " : "", n_quant, n_quant > 1 ? "s" : "");
    if (live) add_line(s, "now: %s", now[0] ? now : "waiting for workers");
    if (j->tune)
        add_line(s,
                 "PV-Tuning: step %llu/%llu, kl %.4f, agree %.3f, %.0f tok/s, codes changed %llu; "
                 "%u rank%s (run %u)",
                 (unsigned long long)j->tune->step, (unsigned long long)j->tune->n_steps,
                 j->tune->kl, j->tune->agree, j->tune->tokens_per_s,
                 (unsigned long long)j->tune->codes_changed, j->tune->ranks,
                 j->tune->ranks == 1 ? "" : "s", j->tune->attempt);
    if (j->error && j->error->message && j->error->message[0]) add_line(s, "%s", j->error->message);
    add_line(s, "%s -> %s", j->model_path ? j->model_path : "", j->out_path ? j->out_path : "");
    if (j->seconds_calibration + j->seconds_quantization + j->seconds_finetune > 0)
        add_line(s, "worker time: calibration %.1fs, quantization %.1fs, fine-tuning %.1fs",
                 j->seconds_calibration, j->seconds_quantization, j->seconds_finetune);
    /* the running layers, as many as fit before the workers' summary line */
    unsigned shown = 0;
    for (size_t i = 0; i < j->n_layers && running > 0; i++) {
        const Lmp__LayerInfo *l = j->layers[i];
        if (l->state != LMP__TASK_STATE__TASK_STATE_RUNNING) continue;
        if (s->max_lines - s->n_lines <= 2 && shown + 1 < running) break;
        char sb[32] = "";
        if (l->n_steps > 0) lmp_status_view_bar(sb, 10, (double)l->step / l->n_steps);
        add_line(s, "  %-36s %-12s %s step %u/%u loss %.4g", l->name ? l->name : "",
                 l->worker ? l->worker : "", sb, l->step, l->n_steps, l->loss);
        shown++;
    }
    if (shown < running) add_line(s, "  ... %u more running", running - shown);
}

char *lmp_status_view_render(struct lmp_status_view *v, const Lmp__JobStatus *js, uint64_t now_ms,
                             int rows, int cols) {
    assert(v && js);
    struct screen s = {.max_lines = rows > 1 ? rows - 1 : 1, .cols = cols < 20 ? 20 : cols};
    if (js->n_jobs == 0) add_line(&s, "no job");
    for (size_t i = 0; i < js->n_jobs; i++) render_job(&s, v, js, js->jobs[i], now_ms);
    /* the workers: a summary line, then one line each while they fit */
    unsigned n[8] = {0};
    for (size_t i = 0; i < js->n_workers; i++) n[(unsigned)js->workers[i]->state & 7]++;
    if (js->n_workers > 0)
        add_line(&s, "workers: %zu (%u busy, %u idle, %u draining, %u dead)", js->n_workers,
                 n[LMP__WORKER_STATE__WORKER_STATE_BUSY], n[LMP__WORKER_STATE__WORKER_STATE_IDLE],
                 n[LMP__WORKER_STATE__WORKER_STATE_DRAINING],
                 n[LMP__WORKER_STATE__WORKER_STATE_DEAD]);
    const Lmp__JobInfo *j = js->n_jobs == 1 ? js->jobs[0] : NULL;
    for (size_t i = 0; i < js->n_workers && !full(&s); i++) {
        const Lmp__WorkerInfo *w = js->workers[i];
        if (s.max_lines - s.n_lines == 1 && i + 1 < js->n_workers) {
            add_line(&s, "  ... %zu more workers", js->n_workers - i);
            break;
        }
        char what[160];
        worker_task(j, w, what, sizeof(what));
        const double age = w->last_heartbeat_ms && now_ms > w->last_heartbeat_ms
                               ? (double)(now_ms - w->last_heartbeat_ms) / 1e3
                               : 0;
        add_line(&s, "  %-16s %-8s %3u cores %-6s hb %4.1fs  %3u done %2u failed  %s",
                 w->id ? w->id : "", lmp_cli_worker_state_name(w->state),
                 w->caps ? w->caps->cores : 0,
                 w->caps && w->caps->device && w->caps->device[0] ? w->caps->device : "cpu", age,
                 w->n_done, w->n_failed, what);
    }
    if (s.oom) {
        free(s.buf);
        return NULL;
    }
    if (s.buf == NULL) s.buf = calloc(1, 1);
    return s.buf;
}
