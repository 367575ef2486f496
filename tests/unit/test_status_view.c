/*  test_status_view - the `lmpress status --watch` screen: it fits the terminal whatever
 *  the job (SmolLM2's 210 layers), keeps the header and the bar, lists only running
 *  layers, names the stage of each busy worker, and keeps the job's throughput after the
 *  job ends */
#include "cli/status_view.h"
#include "coordinator/coord.h" /* defines: LMP_CAL_TASK_BASE, LMP_FT_TASK_BASE */
#include "tests/check.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { N_LAYERS = 210, N_WORKERS = 6, NOW = 1000000 };

static Lmp__LayerInfo  layers[N_LAYERS], *layer_p[N_LAYERS];
static char            names[N_LAYERS][64];
static Lmp__JobInfo    job, *job_p = &job;
static Lmp__WorkerInfo workers[N_WORKERS], *worker_p[N_WORKERS];
static uint64_t        tasks[N_WORKERS];
static char            wnames[N_WORKERS][16];
static Lmp__JobStatus  js;

/* SmolLM2-like: 210 layers, n_done done, n_run running (each on a worker), the rest pending */
static void make_job(unsigned n_done, unsigned n_run) {
    job        = (Lmp__JobInfo)LMP__JOB_INFO__INIT;
    job.job_id = 7, job.name = "smollm2", job.state = LMP__JOB_STATE__JOB_STATE_RUNNING;
    job.model_path = "/models/SmolLM2-135M", job.out_path = "smol.h5";
    job.layers_total = N_LAYERS, job.layers_done = n_done;
    job.started_ms = NOW - 65000, job.eta_s = 120, job.throughput = 12345;
    for (unsigned i = 0; i < N_LAYERS; i++) {
        layers[i] = (Lmp__LayerInfo)LMP__LAYER_INFO__INIT;
        snprintf(names[i], sizeof(names[i]), "model.layers.%u.mlp.proj_%u", i / 7, i % 7);
        layers[i].index = i, layers[i].name = names[i];
        layers[i].state = i < n_done           ? LMP__TASK_STATE__TASK_STATE_DONE
                          : i < n_done + n_run ? LMP__TASK_STATE__TASK_STATE_RUNNING
                                               : LMP__TASK_STATE__TASK_STATE_PENDING;
        layers[i].step = 3, layers[i].n_steps = 20, layers[i].loss = 0.25;
        layers[i].worker = i >= n_done && i < n_done + n_run ? "w" : "";
        layer_p[i]       = &layers[i];
    }
    job.n_layers = N_LAYERS, job.layers = layer_p;
    for (unsigned i = 0; i < N_WORKERS; i++) {
        workers[i] = (Lmp__WorkerInfo)LMP__WORKER_INFO__INIT;
        snprintf(wnames[i], sizeof(wnames[i]), "worker-%u", i);
        workers[i].id = wnames[i], workers[i].state = LMP__WORKER_STATE__WORKER_STATE_IDLE;
        workers[i].last_heartbeat_ms = NOW - 300;
        worker_p[i]                  = &workers[i];
    }
    js        = (Lmp__JobStatus)LMP__JOB_STATUS__INIT;
    js.n_jobs = 1, js.jobs = &job_p, js.n_workers = N_WORKERS, js.workers = worker_p;
}

static void busy(unsigned w, uint64_t task) {
    workers[w].state           = LMP__WORKER_STATE__WORKER_STATE_BUSY;
    tasks[w]                   = task;
    workers[w].n_running_tasks = 1, workers[w].running_tasks = &tasks[w];
}

/* every line at most cols, at most rows - 1 lines; returns the line count */
static int check_fits(const char *s, int rows, int cols) {
    int n = 0;
    for (const char *p = s; *p; n++) {
        const char *e = strchr(p, '\n');
        CHECK(e != NULL);
        if (e == NULL) break;
        if (e - p > cols)
            fprintf(stderr, "line %d longer than %d: %.*s\n", n, cols, (int)(e - p), p);
        CHECK(e - p <= cols);
        p = e + 1;
    }
    if (n > (rows > 1 ? rows - 1 : 1)) fprintf(stderr, "%d lines for %d rows:\n%s", n, rows, s);
    CHECK(n <= (rows > 1 ? rows - 1 : 1));
    return n;
}

static void test_fits_any_terminal(void) {
    make_job(120, 40);
    for (unsigned w = 0; w < N_WORKERS; w++) busy(w, 121 + w);
    const int sizes[][2] = {{24, 80}, {10, 60}, {4, 40}, {2, 20}, {60, 200}, {1, 5}};
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        struct lmp_status_view v;
        lmp_status_view_init(&v);
        char *s = lmp_status_view_render(&v, &js, NOW, sizes[k][0], sizes[k][1]);
        CHECK(s != NULL);
        if (s == NULL) continue;
        const int         cols   = sizes[k][1] < 20 ? 20 : sizes[k][1];
        const int         n      = check_fits(s, sizes[k][0], cols);
        static const char head[] = "job 7 smollm2 running: 120/210 layers";
        CHECK(strncmp(s, head, cols < (int)sizeof(head) - 1 ? (size_t)cols : sizeof(head) - 1) ==
              0);
        if (sizes[k][0] >= 3) CHECK(strstr(s, "\n[") != NULL); /* the bar stays */
        if (sizes[k][0] >= 24) CHECK(n >= 20);                 /* and the screen is used */
        free(s);
    }
}

static void test_lists_running_layers_only(void) {
    make_job(100, 3);
    busy(0, 101), busy(1, 102), busy(2, 103);
    struct lmp_status_view v;
    lmp_status_view_init(&v);
    char *s = lmp_status_view_render(&v, &js, NOW, 40, 120);
    CHECK(s != NULL);
    if (s == NULL) return;
    check_fits(s, 40, 120);
    CHECK(strstr(s, "layers: 100 done, 3 running, 107 pending") != NULL);
    CHECK(strstr(s, names[100]) && strstr(s, names[101]) && strstr(s, names[102]));
    CHECK(strstr(s, names[99]) == NULL && strstr(s, names[103]) == NULL); /* done, pending */
    CHECK(strstr(s, "now: quantizing 3 layers") != NULL);
    CHECK(strstr(s, "[##--------] step 3/20") != NULL);
    CHECK(strstr(s, "ETA 2m00s") != NULL);
    CHECK(strstr(s, "workers: 6 (3 busy, 3 idle") != NULL);
    free(s);
    /* more running layers than rows: the rest counted */
    make_job(0, 150);
    lmp_status_view_init(&v);
    s = lmp_status_view_render(&v, &js, NOW, 24, 80);
    CHECK(s != NULL);
    if (s == NULL) return;
    check_fits(s, 24, 80);
    if (getenv("LMP_SHOW_SCREEN")) fputs(s, stderr); /* to look at it */
    CHECK(strstr(s, "more running") != NULL);
    CHECK(strstr(s, "workers: 6") != NULL);
    free(s);
}

static void test_names_the_stage(void) {
    make_job(14, 0);
    busy(0, LMP_CAL_TASK_BASE + 2);
    busy(1, LMP_FT_TASK_BASE + 1);
    struct lmp_status_view v;
    lmp_status_view_init(&v);
    char *s = lmp_status_view_render(&v, &js, NOW, 24, 100);
    CHECK(s != NULL);
    if (s == NULL) return;
    CHECK(strstr(s, "now: calibrating (slice 2); fine-tuning block 1") != NULL);
    CHECK(strstr(s, "worker-1         busy") != NULL);
    free(s);
    make_job(14, 0);
    lmp_status_view_init(&v);
    s = lmp_status_view_render(&v, &js, NOW, 24, 100);
    CHECK(s && strstr(s, "now: waiting for workers") != NULL);
    free(s);
}

static void test_throughput_kept_after_the_end(void) {
    make_job(200, 10);
    struct lmp_status_view v;
    lmp_status_view_init(&v);
    char *s = lmp_status_view_render(&v, &js, NOW, 24, 100);
    CHECK(s && strstr(s, "12345 weights/s") == NULL && strstr(s, "1.23e+04 weights/s") != NULL);
    free(s);
    /* done: the coordinator's figure decays with the time since the end; the view keeps
     * the one it saw while the job ran */
    job.state = LMP__JOB_STATE__JOB_STATE_DONE, job.layers_done = 210;
    job.finished_ms = NOW, job.throughput = 123;
    for (unsigned i = 0; i < N_LAYERS; i++) layers[i].state = LMP__TASK_STATE__TASK_STATE_DONE;
    s = lmp_status_view_render(&v, &js, NOW + 3600000, 24, 100);
    CHECK(s && strstr(s, "job 7 smollm2 done: 210/210 layers, 1.23e+04 weights/s") != NULL);
    CHECK(s && strstr(s, "elapsed 65s") != NULL); /* up to the end, not up to now */
    CHECK(lmp_status_view_throughput(&v, &job) == 12345);
    free(s);
    /* a view that never saw it run shows what the coordinator says */
    lmp_status_view_init(&v);
    CHECK(lmp_status_view_throughput(&v, &job) == 123);
}

int main(void) {
    RUN(test_fits_any_terminal);
    RUN(test_lists_running_layers_only);
    RUN(test_names_the_stage);
    RUN(test_throughput_kept_after_the_end);
    return check_report();
}
