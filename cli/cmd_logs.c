/*  cmd_logs - lmpress logs: the job's events and the coordinator's warnings
 *
 *  Online (no file argument): LogQuery -> LogChunk from a running coordinator's ring;
 *  --follow asks again every half second for the lines after the last one seen, until
 *  the job ends (exit 0) or Ctrl-C (130), reconnecting to a coordinator restarted
 *  meanwhile (cli/cluster.h; then from the first line of its new ring), 3 when it stays
 *  away for LMPRESS_RECONNECT_MS. Offline (`lmpress logs ART.h5`): the events
 *  kept in the artifact, from the assembled file's /events and from ART.h5.parts/ of a
 *  job still running or killed (artifact/events.h). One line per event, or one JSON
 *  object per line with --json.
 */
#include "cli/cli.h"
#include "cli/cluster.h"       /* defines: lmp_cli_connect, lmp_cli_query */
#include "artifact/artifact.h" /* defines: lmp_artifact_open_read, lmp_artifact_read_events */
#include "artifact/events.h"   /* defines: struct lmp_event_list */

#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const usage =
    "lmpress logs [--connect EP] [--follow] [--since SECONDS] [--tail N] [--worker NAME] "
    "[--job ID] [--json] [ART.h5]";

static const char *const help =
    "From a coordinator (no ART.h5), or the events kept in an artifact (ART.h5).\n\n"
    "  --connect EP          the coordinator (default " LMP_CLI_DEFAULT_ENDPOINT ")\n"
    "  --follow              keep printing new lines until the job ends, across a restart of\n"
    "                        the coordinator (exit 3 when it is gone for LMPRESS_RECONNECT_MS,\n"
    "                        default 60000) (default off)\n"
    "  --since SECONDS       only the lines of the last SECONDS (default all)\n"
    "  --tail N              only the last N lines (default all)\n"
    "  --worker NAME         only that worker's lines (default all)\n"
    "  --job ID              that job's lines (default the current job)\n"
    "  --json                one JSON object per line\n" LMP_CLI_KEYS_HELP;

static volatile sig_atomic_t interrupted;
static void                  on_signal(int sig) {
                     (void)sig;
                     interrupted = 1;
}

static const char *level_name(uint32_t l) {
    static const char *const names[] = {"error", "warn", "info", "debug"};
    return l < 4 ? names[l] : "?";
}

/* One event: "2026-01-02T03:04:05.678Z info  done      layer  worker  message". */
static void print_line(bool json, uint64_t seq, uint32_t run, uint64_t time_ms, uint32_t level,
                       const char *kind, const char *worker, const char *layer, const char *text) {
    if (json) {
        cJSON *o = cJSON_CreateObject();
        if (seq) cJSON_AddNumberToObject(o, "seq", (double)seq);
        if (run) cJSON_AddNumberToObject(o, "run", run);
        cJSON_AddNumberToObject(o, "time_ms", (double)time_ms);
        cJSON_AddStringToObject(o, "level", level_name(level));
        cJSON_AddStringToObject(o, "kind", kind);
        cJSON_AddStringToObject(o, "worker", worker);
        cJSON_AddStringToObject(o, "layer", layer);
        cJSON_AddStringToObject(o, "message", text);
        char *s = cJSON_PrintUnformatted(o);
        if (s) printf("%s\n", s);
        free(s);
        cJSON_Delete(o);
        return;
    }
    char      ts[40];
    time_t    t = (time_t)(time_ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    printf("%s.%03uZ ", ts, (unsigned)(time_ms % 1000));
    if (run) printf("run %u ", run);
    printf("%-5s %-9s", level_name(level), kind);
    if (layer[0]) printf(" %s", layer);
    if (worker[0]) printf(" [%s]", worker);
    printf("%s%s\n", text[0] ? ": " : "", text);
}

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int logs_offline(const char *path, bool json, uint64_t since_ms, long long tail,
                        const char *worker) {
    struct lmp_artifact  *a   = NULL;
    struct lmp_err        err = {0};
    struct lmp_event_list l   = {0};
    int                   rc  = LMP_EXIT_OK;
    if (lmp_artifact_open_read(path, &a, &err) != LMP_OK ||
        lmp_artifact_read_events(a, &l, &err) != LMP_OK) {
        fprintf(stderr, "lmpress: %s\n", err.msg);
        rc = lmp_cli_exit_code(err.code) == LMP_EXIT_INPUT ? LMP_EXIT_INPUT : LMP_EXIT_FAIL;
        goto out;
    }
    int64_t n = 0, *keep = malloc((size_t)(l.n + 1) * sizeof(*keep));
    if (keep == NULL) {
        fprintf(stderr, "lmpress: out of memory\n");
        rc = LMP_EXIT_FAIL;
        goto out;
    }
    for (int64_t i = 0; i < l.n; i++)
        if (l.ev[i].time_ms >= since_ms && (worker == NULL || strcmp(worker, l.ev[i].worker) == 0))
            keep[n++] = i;
    for (int64_t k = tail > 0 && tail < n ? n - tail : 0; k < n; k++) {
        const struct lmp_event *e = &l.ev[keep[k]];
        print_line(json, 0, e->run, e->time_ms, e->level, e->kind, e->worker, e->layer, e->message);
    }
    free(keep);
out:
    lmp_event_list_release(&l);
    lmp_artifact_close(&a);
    return rc;
}

/* One LogQuery; prints the lines, advances *after. *eof: nothing more right now. With
 * follow (--follow) a restarted coordinator is reconnected to, and its ring,
 * which starts afresh, is read from its first line. */
static int query_once(struct lmp_cli_session *s, bool follow, const Lmp__LogQuery *q0, bool json,
                      uint64_t *after, bool *eof) {
    Lmp__Envelope  env, *rep = NULL;
    Lmp__LogQuery  q   = *q0;
    struct lmp_err err = {0};
    if (s->reconnected) *after = 0, s->reconnected = false; /* by the job query in between */
    q.after_seq = *after;
    if (q.job_id) q.job_id = s->job_id; /* a restarted coordinator may give it another id */
    lmp_wire_init(&env, 0, 0);
    env.body_case = LMP__ENVELOPE__BODY_LOG_QUERY;
    env.log_query = &q;
    if (follow) {
        int rc = lmp_cli_session_call(s, &env, &rep);
        if (rc != LMP_EXIT_OK) return rc;
        if (s->reconnected) *after = 0, s->reconnected = false;
    } else {
        enum lmp_status st = lmp_client_call(s->cl, &env, &rep, &err);
        if (st != LMP_OK) {
            fprintf(stderr, "lmpress: %s\n", err.msg);
            return st == LMP_EIO ? LMP_EXIT_UNREACHABLE : LMP_EXIT_FAIL;
        }
    }
    if (rep->body_case != LMP__ENVELOPE__BODY_LOG_CHUNK) {
        lmp_wire_free(&rep);
        fprintf(stderr, "lmpress: unexpected reply to a log query\n");
        return LMP_EXIT_FAIL;
    }
    const Lmp__LogChunk *ch = rep->log_chunk;
    for (size_t i = 0; i < ch->n_lines; i++) {
        const Lmp__LogLine *l   = ch->lines[i];
        const char         *src = l->source ? l->source : "";
        print_line(json, l->seq, 0, l->time_ms, l->level, l->kind && l->kind[0] ? l->kind : "log",
                   strcmp(src, "coordinator") == 0 ? "" : src, l->layer ? l->layer : "",
                   l->text ? l->text : "");
        if (l->seq > *after) *after = l->seq;
    }
    *eof = ch->eof;
    lmp_wire_free(&rep);
    fflush(stdout);
    return LMP_EXIT_OK;
}

static int logs_online(const char *ep, bool json, bool follow, uint64_t since_ms, long long tail,
                       const char *worker, long long job) {
    struct lmp_cli_session s; /* --follow follows the job across coordinator restarts */
    lmp_cli_session_init(&s, ep, (uint64_t)job, NULL);
    s.stop = &interrupted;
    int rc = lmp_cli_session_connect(&s);
    if (rc != LMP_EXIT_OK) {
        lmp_cli_session_release(&s);
        return rc;
    }
    Lmp__LogQuery q = LMP__LOG_QUERY__INIT;
    q.job_id        = (uint64_t)job;
    q.worker        = (char *)(worker ? worker : "");
    q.tail          = (uint32_t)tail;
    q.since_ms      = since_ms;
    uint64_t after  = 0;
    bool     eof    = false;
    while (!interrupted) {
        if ((rc = query_once(&s, follow, &q, json, &after, &eof)) != LMP_EXIT_OK) break;
        q.tail = 0;         /* the tail applies to the first answer only */
        if (!eof) continue; /* more than one chunk's worth: ask again at once */
        if (!follow) break;
        Lmp__Envelope *rep = NULL;
        if ((rc = lmp_cli_session_query(&s, false, false, &rep)) != LMP_EXIT_OK) break;
        const bool ended = rep->job_status->n_jobs == 1 &&
                           rep->job_status->jobs[0]->state != LMP__JOB_STATE__JOB_STATE_RUNNING &&
                           rep->job_status->jobs[0]->state != LMP__JOB_STATE__JOB_STATE_QUEUED;
        lmp_wire_free(&rep);
        if (ended) { /* the last lines, then stop */
            rc = query_once(&s, follow, &q, json, &after, &eof);
            break;
        }
        struct timespec ts = {0, 500 * 1000000L};
        while (!interrupted && nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
    }
    if (interrupted) rc = LMP_EXIT_INTERRUPTED;
    lmp_cli_session_release(&s);
    return rc;
}

static int cmd_logs_exec(struct lmp_cli *cli, int argc, char **argv) {
    const char                *ep = LMP_CLI_DEFAULT_ENDPOINT, *worker = NULL;
    bool                       follow = false;
    long long                  job = 0, tail = 0;
    double                     since  = -1;
    static const struct option opts[] = {
        {"connect", required_argument, NULL, 'C'}, {"json", no_argument, NULL, 'j'},
        {"follow", no_argument, NULL, 'f'},        {"job", required_argument, NULL, 'J'},
        {"since", required_argument, NULL, 's'},   {"tail", required_argument, NULL, 'n'},
        {"worker", required_argument, NULL, 'W'},  {0},
    };
    for (int c; (c = getopt_long(argc, argv, "C:jfJ:s:n:W:", opts, NULL)) != -1;) {
        if (c == 'C')
            ep = optarg;
        else if (c == 'j')
            cli->json = true;
        else if (c == 'f')
            follow = true;
        else if (c == 'W')
            worker = optarg;
        else if (c == 'J') {
            if (!lmp_cli_parse_i64("--job", optarg, 1, INT64_MAX, &job)) return LMP_EXIT_USAGE;
        } else if (c == 'n') {
            if (!lmp_cli_parse_i64("--tail", optarg, 1, UINT32_MAX, &tail)) return LMP_EXIT_USAGE;
        } else if (c == 's') {
            if (!lmp_cli_parse_f64("--since", optarg, 0, 1e10, &since)) return LMP_EXIT_USAGE;
        } else
            return lmp_cli_usage(usage);
    }
    if (argc - optind > 1) return lmp_cli_usage_msg(usage, "expected at most one artifact path");
    const uint64_t since_ms = since >= 0 ? now_ms() - (uint64_t)(since * 1000.0) : 0;
    if (argc - optind == 1) {
        if (follow || job)
            return lmp_cli_usage_msg(usage,
                                     "--follow and --job need a coordinator, not an artifact");
        return logs_offline(argv[optind], cli->json, since_ms, tail, worker);
    }
    struct sigaction sa, old_int, old_term;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    int rc = logs_online(ep, cli->json, follow, since_ms, tail, worker, job);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    return rc;
}

const struct lmp_cli_cmd lmp_cli_cmd_logs = {
    .name    = "logs",
    .summary = "show the job's events (coordinator, or an artifact offline)",
    .usage   = usage,
    .help    = help,
    .exec    = cmd_logs_exec,
};
