/*  cmd_status - lmpress status: the coordinator's job, per layer and per worker
 *
 *  One JobQuery (with layers and workers) per refresh. Text on a terminal has progress
 *  bars (the job's layers, each running layer's steps); text elsewhere is plain lines;
 *  --json prints one JSON document per refresh (one line each). --watch refreshes every
 *  --interval seconds until the job ends; its exit code is then the job's (0 done,
 *  1 failed or cancelled), 3 if the coordinator goes away for good (a restarted one is
 *  reconnected to, cli/cluster.h), 130 on Ctrl-C. Without --watch the exit code is 0
 *  when the coordinator answered.
 */
#include "cli/cli.h"
#include "cli/cluster.h"       /* defines: lmp_cli_connect, lmp_cli_query, lmp_cli_*_state_name */
#include "cli/status_view.h"   /* defines: lmp_status_view_render, _bar, _duration */
#include "coordinator/coord.h" /* defines: LMP_CAL_TASK_BASE, LMP_FT_TASK_BASE */

#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

static const char *const usage =
    "lmpress status [--connect EP] [--json] [--watch] [--interval SECONDS] [--job ID]";

static const char *const help =
    "The job (state, layers done, throughput, ETA, stage seconds), its layers and workers.\n\n"
    "  --connect EP          the coordinator (default " LMP_CLI_DEFAULT_ENDPOINT ")\n"
    "  --json                one JSON document per refresh\n"
    "  --watch               refresh until the job ends; exit 0 done, 1 failed, 3 coordinator\n"
    "                        gone for LMPRESS_RECONNECT_MS (default 60000; a restarted one is\n"
    "                        reconnected to) (default: once)\n"
    "  --interval SECONDS    --watch's refresh period (default 1)\n"
    "  --job ID              that job (default the current one)\n" LMP_CLI_KEYS_HELP;

static volatile sig_atomic_t interrupted;
static void                  on_signal(int sig) {
                     (void)sig;
                     interrupted = 1;
}

static uint64_t now_unix_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static double age_s(uint64_t unix_ms, uint64_t now) {
    return unix_ms ? ((double)now - (double)unix_ms) / 1000.0 : -1.0;
}

/* Counts of layers per state: pending, running, done, failed (+ cancelled). */
struct counts {
    unsigned pending, running, done, failed, cancelled;
};

static struct counts count_layers(const Lmp__JobInfo *j) {
    struct counts k = {0};
    for (size_t i = 0; i < j->n_layers; i++) {
        switch (j->layers[i]->state) {
        case LMP__TASK_STATE__TASK_STATE_PENDING:
            k.pending++;
            break;
        case LMP__TASK_STATE__TASK_STATE_RUNNING:
            k.running++;
            break;
        case LMP__TASK_STATE__TASK_STATE_DONE:
            k.done++;
            break;
        case LMP__TASK_STATE__TASK_STATE_FAILED:
            k.failed++;
            break;
        default:
            k.cancelled++;
            break;
        }
    }
    return k;
}

/* The layer a worker runs (running_tasks holds task index + 1), "" if none. */
/* What worker w runs: a layer's name, "calibration slice N", "fine-tuning block N" (task
 * ids: coordinator/coord.h), or "". buf: at least 48 bytes. */
static const char *worker_layer(const Lmp__JobStatus *js, const Lmp__WorkerInfo *w, char *buf,
                                size_t cap) {
    if (js->n_jobs != 1 || w->n_running_tasks == 0) return "";
    const Lmp__JobInfo *j = js->jobs[0];
    const uint64_t      t = w->running_tasks[0];
    if (t >= LMP_FT_TASK_BASE) {
        snprintf(buf, cap, "fine-tuning block %llu", (unsigned long long)(t - LMP_FT_TASK_BASE));
        return buf;
    }
    if (t >= LMP_CAL_TASK_BASE) {
        snprintf(buf, cap, "calibration slice %llu", (unsigned long long)(t - LMP_CAL_TASK_BASE));
        return buf;
    }
    return t >= 1 && t <= j->n_layers && j->layers[t - 1]->name ? j->layers[t - 1]->name : "";
}

static void print_json(const Lmp__JobStatus *js) {
    const uint64_t now  = now_unix_ms();
    cJSON         *root = cJSON_CreateObject();
    cJSON_AddNumberToObject(root, "time_ms", (double)now);
    cJSON *jobs = cJSON_AddArrayToObject(root, "jobs");
    for (size_t i = 0; i < js->n_jobs; i++) {
        const Lmp__JobInfo *j = js->jobs[i];
        const struct counts k = count_layers(j);
        cJSON              *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "job_id", (double)j->job_id);
        cJSON_AddStringToObject(o, "name", j->name ? j->name : "");
        cJSON_AddStringToObject(o, "state", lmp_cli_job_state_name(j->state));
        cJSON_AddStringToObject(o, "model", j->model_path ? j->model_path : "");
        cJSON_AddStringToObject(o, "out", j->out_path ? j->out_path : "");
        cJSON_AddNumberToObject(o, "layers_total", j->layers_total);
        cJSON_AddNumberToObject(o, "layers_done", j->layers_done);
        cJSON_AddNumberToObject(o, "layers_failed", j->layers_failed);
        cJSON *c = cJSON_AddObjectToObject(o, "layer_states");
        cJSON_AddNumberToObject(c, "pending", k.pending);
        cJSON_AddNumberToObject(c, "running", k.running);
        cJSON_AddNumberToObject(c, "done", k.done);
        cJSON_AddNumberToObject(c, "failed", k.failed);
        cJSON_AddNumberToObject(c, "cancelled", k.cancelled);
        cJSON_AddNumberToObject(o, "throughput", j->throughput);
        cJSON_AddNumberToObject(o, "eta_s", j->eta_s);
        cJSON_AddNumberToObject(o, "seconds_calibration", j->seconds_calibration);
        cJSON_AddNumberToObject(o, "seconds_quantization", j->seconds_quantization);
        cJSON_AddNumberToObject(o, "seconds_finetune", j->seconds_finetune);
        cJSON_AddNumberToObject(o, "submitted_ms", (double)j->submitted_ms);
        cJSON_AddNumberToObject(o, "started_ms", (double)j->started_ms);
        cJSON_AddNumberToObject(o, "finished_ms", (double)j->finished_ms);
        const uint64_t end = j->finished_ms ? j->finished_ms : now;
        cJSON_AddNumberToObject(o, "elapsed_s", j->started_ms ? age_s(j->started_ms, end) : 0);
        cJSON_AddStringToObject(o, "error", j->error && j->error->message ? j->error->message : "");
        if (j->tune) { /* a PV-Tuning job */
            cJSON *t = cJSON_AddObjectToObject(o, "tune");
            cJSON_AddNumberToObject(t, "step", (double)j->tune->step);
            cJSON_AddNumberToObject(t, "n_steps", (double)j->tune->n_steps);
            cJSON_AddNumberToObject(t, "kl", j->tune->kl);
            cJSON_AddNumberToObject(t, "agree", j->tune->agree);
            cJSON_AddNumberToObject(t, "tokens_per_s", j->tune->tokens_per_s);
            cJSON_AddNumberToObject(t, "codes_changed", (double)j->tune->codes_changed);
            cJSON_AddNumberToObject(t, "ranks", j->tune->ranks);
            cJSON_AddNumberToObject(t, "run", j->tune->attempt);
        }
        cJSON *ls = cJSON_AddArrayToObject(o, "layers");
        for (size_t q = 0; q < j->n_layers; q++) {
            const Lmp__LayerInfo *l  = j->layers[q];
            cJSON                *lo = cJSON_CreateObject();
            cJSON_AddNumberToObject(lo, "index", l->index);
            cJSON_AddStringToObject(lo, "name", l->name ? l->name : "");
            cJSON_AddStringToObject(lo, "state", lmp_cli_task_state_name(l->state));
            cJSON_AddStringToObject(lo, "worker", l->worker ? l->worker : "");
            cJSON_AddNumberToObject(lo, "attempt", l->attempt);
            cJSON_AddNumberToObject(lo, "step", l->step);
            cJSON_AddNumberToObject(lo, "n_steps", l->n_steps);
            cJSON_AddNumberToObject(lo, "loss", l->loss);
            cJSON_AddNumberToObject(lo, "rel_err_before", l->rel_err_before);
            cJSON_AddNumberToObject(lo, "rel_err", l->rel_err_after);
            cJSON_AddNumberToObject(lo, "seconds", l->seconds);
            cJSON_AddItemToArray(ls, lo);
        }
        cJSON_AddItemToArray(jobs, o);
    }
    cJSON *ws = cJSON_AddArrayToObject(root, "workers");
    for (size_t i = 0; i < js->n_workers; i++) {
        const Lmp__WorkerInfo *w = js->workers[i];
        cJSON                 *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "id", w->id ? w->id : "");
        cJSON_AddStringToObject(o, "state", lmp_cli_worker_state_name(w->state));
        cJSON_AddStringToObject(o, "host", w->caps && w->caps->hostname ? w->caps->hostname : "");
        cJSON_AddNumberToObject(o, "cores", w->caps ? w->caps->cores : 0);
        cJSON_AddStringToObject(o, "device",
                                w->caps && w->caps->device && w->caps->device[0] ? w->caps->device
                                                                                 : "cpu");
        cJSON_AddNumberToObject(o, "last_heartbeat_ms", (double)w->last_heartbeat_ms);
        cJSON_AddNumberToObject(o, "heartbeat_age_s", age_s(w->last_heartbeat_ms, now));
        char wl[64];
        cJSON_AddStringToObject(o, "layer", worker_layer(js, w, wl, sizeof(wl)));
        cJSON_AddNumberToObject(o, "throughput", w->throughput);
        cJSON_AddNumberToObject(o, "done", w->n_done);
        cJSON_AddNumberToObject(o, "failed", w->n_failed);
        cJSON_AddItemToArray(ws, o);
    }
    char *s = cJSON_PrintUnformatted(root);
    if (s) printf("%s\n", s);
    free(s);
    cJSON_Delete(root);
}

/* Text: bars on a terminal, plain lines elsewhere. */
static void print_text(const Lmp__JobStatus *js, bool tty) {
    const uint64_t now = now_unix_ms();
    char           b[64], eta[32], el[32];
    if (js->n_jobs == 0) printf("no job\n");
    for (size_t i = 0; i < js->n_jobs; i++) {
        const Lmp__JobInfo *j   = js->jobs[i];
        const struct counts k   = count_layers(j);
        const uint64_t      end = j->finished_ms ? j->finished_ms : now;
        lmp_status_view_duration(el, sizeof(el), j->started_ms ? age_s(j->started_ms, end) : 0);
        lmp_status_view_duration(eta, sizeof(eta), j->eta_s);
        printf(
            "job %llu %s: %u/%u layers done (pending %u, running %u, failed %u), %.3g weights/s, "
            "elapsed %s",
            (unsigned long long)j->job_id, lmp_cli_job_state_name(j->state), j->layers_done,
            j->layers_total, k.pending, k.running, k.failed, j->throughput, el);
        if (j->state == LMP__JOB_STATE__JOB_STATE_RUNNING) printf(", ETA %s", eta);
        printf("\n  %s -> %s\n", j->model_path ? j->model_path : "",
               j->out_path ? j->out_path : "");
        if (j->seconds_calibration + j->seconds_quantization + j->seconds_finetune > 0)
            printf("  worker time: calibration %.1fs, quantization %.1fs, fine-tuning %.1fs\n",
                   j->seconds_calibration, j->seconds_quantization, j->seconds_finetune);
        if (j->tune)
            printf("  PV-Tuning: step %llu/%llu, kl %.4f, agree %.3f, %.0f tok/s, codes changed "
                   "%llu; %u rank%s (run %u)\n",
                   (unsigned long long)j->tune->step, (unsigned long long)j->tune->n_steps,
                   j->tune->kl, j->tune->agree, j->tune->tokens_per_s,
                   (unsigned long long)j->tune->codes_changed, j->tune->ranks,
                   j->tune->ranks == 1 ? "" : "s", j->tune->attempt);
        if (j->error && j->error->message && j->error->message[0])
            printf("  %s\n", j->error->message);
        if (tty && j->layers_total > 0) {
            lmp_status_view_bar(b, 40, (double)j->layers_done / j->layers_total);
            printf("  %s %3.0f%%\n", b, 100.0 * j->layers_done / j->layers_total);
        }
        for (size_t q = 0; q < j->n_layers; q++) {
            const Lmp__LayerInfo *l   = j->layers[q];
            const bool            run = l->state == LMP__TASK_STATE__TASK_STATE_RUNNING;
            printf("  %-40s %-9s %-20s attempt %u", l->name ? l->name : "",
                   lmp_cli_task_state_name(l->state), l->worker ? l->worker : "", l->attempt);
            if (run && l->n_steps > 0) {
                if (tty) {
                    lmp_status_view_bar(b, 20, (double)l->step / l->n_steps);
                    printf("  %s", b);
                }
                printf("  step %u/%u loss %.4g", l->step, l->n_steps, l->loss);
            }
            if (run || l->state == LMP__TASK_STATE__TASK_STATE_DONE)
                printf("  rel err %.4g  %.1fs", l->rel_err_after, l->seconds);
            printf("\n");
        }
    }
    for (size_t i = 0; i < js->n_workers; i++) {
        const Lmp__WorkerInfo *w = js->workers[i];
        char                   wl[64];
        const char            *layer = worker_layer(js, w, wl, sizeof(wl));
        printf("worker %-20s %-8s %3u cores %-7s  heartbeat %.1fs ago  %u done  %u failed  %.3g "
               "weights/s%s%s\n",
               w->id ? w->id : "", lmp_cli_worker_state_name(w->state),
               w->caps ? w->caps->cores : 0,
               w->caps && w->caps->device && w->caps->device[0] ? w->caps->device : "cpu",
               age_s(w->last_heartbeat_ms, now), w->n_done, w->n_failed, w->throughput,
               layer[0] ? "  on " : "", layer);
    }
}

/* --watch on a terminal: the screen of status_view.h, redrawn in place, sized to the
 * terminal (TIOCGWINSZ; LINES / COLUMNS, else 24 x 80). */
static void draw_screen(struct lmp_status_view *view, const Lmp__JobStatus *js) {
    struct winsize ws   = {0};
    int            rows = 0, cols = 0;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0) rows = ws.ws_row, cols = ws.ws_col;
    if (rows <= 0) rows = getenv("LINES") ? atoi(getenv("LINES")) : 24;
    if (cols <= 0) cols = getenv("COLUMNS") ? atoi(getenv("COLUMNS")) : 80;
    char *s =
        lmp_status_view_render(view, js, now_unix_ms(), rows > 0 ? rows : 24, cols > 0 ? cols : 80);
    if (s == NULL) return;
    fputs("\033[H", stdout); /* home, then each line cleared to its end, then the rest */
    for (char *p = s, *e; (e = strchr(p, '\n')) != NULL; p = e + 1)
        printf("%.*s\033[K\n", (int)(e - p), p);
    fputs("\033[J", stdout);
    free(s);
}

/* Sleep for seconds, waking early on a signal. */
static void nap(double seconds) {
    struct timespec ts = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
    while (!interrupted && nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static int cmd_status_exec(struct lmp_cli *cli, int argc, char **argv) {
    const char                *ep       = LMP_CLI_DEFAULT_ENDPOINT;
    bool                       watch    = false;
    long long                  job      = 0;
    double                     interval = 1.0;
    static const struct option opts[]   = {
          {"connect", required_argument, NULL, 'C'},  {"json", no_argument, NULL, 'j'},
          {"watch", no_argument, NULL, 'w'},          {"job", required_argument, NULL, 'J'},
          {"interval", required_argument, NULL, 'i'}, {0},
    };
    for (int c; (c = getopt_long(argc, argv, "C:jwJ:i:", opts, NULL)) != -1;) {
        if (c == 'C')
            ep = optarg;
        else if (c == 'j')
            cli->json = true;
        else if (c == 'w')
            watch = true;
        else if (c == 'J') {
            if (!lmp_cli_parse_i64("--job", optarg, 1, INT64_MAX, &job)) return LMP_EXIT_USAGE;
        } else if (c == 'i') {
            if (!lmp_cli_parse_f64("--interval", optarg, 0.05, 3600, &interval))
                return LMP_EXIT_USAGE;
        } else
            return lmp_cli_usage(usage);
    }
    if (optind != argc) return lmp_cli_usage_msg(usage, "unexpected argument");
    const bool       tty = isatty(STDOUT_FILENO) == 1;
    struct sigaction sa, old_int, old_term;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal; /* no SA_RESTART: the nap and the poll wake up */
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    struct lmp_cli_session s; /* --watch follows the job across coordinator restarts */
    struct lmp_status_view view;
    lmp_status_view_init(&view);
    lmp_cli_session_init(&s, ep, (uint64_t)job, NULL);
    s.stop = &interrupted;
    int rc = lmp_cli_session_connect(&s);
    while (rc == LMP_EXIT_OK && !interrupted) {
        Lmp__Envelope *rep = NULL;
        if (!watch) {
            if ((rc = lmp_cli_query(s.cl, (uint64_t)job, true, true, &rep)) != LMP_EXIT_OK) break;
        } else if ((rc = lmp_cli_session_query(&s, true, true, &rep)) != LMP_EXIT_OK)
            break;
        const Lmp__JobStatus *js = rep->job_status;
        if (cli->json)
            print_json(js);
        else if (watch && tty)
            draw_screen(&view, js); /* fits the terminal */
        else {
            print_text(js, tty);
            if (watch) printf("\n"); /* one block per refresh */
        }
        fflush(stdout);
        const bool          has_job = js->n_jobs == 1;
        const Lmp__JobState st =
            has_job ? js->jobs[0]->state : LMP__JOB_STATE__JOB_STATE_UNSPECIFIED;
        const bool running =
            st == LMP__JOB_STATE__JOB_STATE_RUNNING || st == LMP__JOB_STATE__JOB_STATE_QUEUED;
        lmp_wire_free(&rep);
        if (!watch) break;
        if (has_job && !running) { /* the job ended: its exit code */
            rc = lmp_cli_job_exit(st);
            break;
        }
        nap(interval);
    }
    if (interrupted && (rc == LMP_EXIT_OK || watch)) rc = LMP_EXIT_INTERRUPTED;
    lmp_cli_session_release(&s);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    return rc;
}

const struct lmp_cli_cmd lmp_cli_cmd_status = {
    .name    = "status",
    .summary = "show the coordinator's job, layers and workers",
    .usage   = usage,
    .help    = help,
    .exec    = cmd_status_exec,
};
