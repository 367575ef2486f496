/*  test_events - the job event log: record round trip, torn tail, checksum mismatch,
 *  resume, kill -9 while appending, assembly into the artifact's /events, h5dump */
#include "artifact/artifact.h"
#include "artifact/events.h"
#include "base/file.h"   /* defines: lmp_path_is_dir() */
#include "base/log.h"    /* defines: LMP_LOG_* */
#include "tests/check.h" /* defines: CHECK, RUN, check_report */

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char tmpdir[256];

static const char *tpath(int slot, const char *name) {
    static char buf[8][512];
    snprintf(buf[slot & 7], sizeof(buf[0]), "%s/%s", tmpdir, name);
    return buf[slot & 7];
}

static void rm_rf(const char *path) {
    char cmd[12000];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s' '%s.parts' '%s.tmp'", path, path, path);
    if (system(cmd) != 0) fprintf(stderr, "cannot clean %s\n", path);
}

static uint8_t *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        *n = 0;
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)sz + 1);
    *n         = fread(b, 1, (size_t)sz, f);
    fclose(f);
    return b;
}

static void spit(const char *path, const uint8_t *b, size_t n) {
    FILE *f = fopen(path, "wb");
    if (f) {
        if (n) fwrite(b, 1, n, f);
        fclose(f);
    }
}

/* Event i: varied lengths, including empty worker/layer and a long message. */
static void make_event(struct lmp_event *e, int i) {
    char worker[64], layer[96], msg[600];
    worker[0] = layer[0] = '\0';
    if (i % 3) snprintf(worker, sizeof(worker), "w-%d", i);
    if (i % 4) snprintf(layer, sizeof(layer), "model.layers.%d.mlp.up_proj", i);
    memset(msg, 'a' + i % 26, sizeof(msg));
    msg[(i * 37) % 590] = '\0';
    lmp_event_set(e, 1700000000000ull + (uint64_t)i, (uint32_t)(1 + i % 2), i % 4,
                  i % 2 ? LMP_EVENT_DONE : LMP_EVENT_ASSIGNED, worker, layer, msg);
}

static bool events_equal(const struct lmp_event *a, const struct lmp_event *b) {
    return a->time_ms == b->time_ms && a->run == b->run && a->level == b->level &&
           strcmp(a->kind, b->kind) == 0 && strcmp(a->worker, b->worker) == 0 &&
           strcmp(a->layer, b->layer) == 0 && strcmp(a->message, b->message) == 0;
}

/* Write n events with the writer; return the file's bytes. */
static uint8_t *write_log(const char *path, int n, size_t *len, size_t *rec_end /* (n) */) {
    unlink(path);
    struct lmp_events_file *w       = NULL;
    struct lmp_err          err     = {0};
    uint32_t                max_run = 99;
    CHECK(lmp_events_open(path, 0, &w, &max_run, &err) == LMP_OK);
    CHECK(max_run == 0);
    struct stat sb;
    for (int i = 0; i < n; i++) {
        struct lmp_event e;
        make_event(&e, i);
        CHECK(lmp_events_append(w, &e, &err) == LMP_OK);
        if (rec_end && stat(path, &sb) == 0) rec_end[i] = (size_t)sb.st_size;
    }
    CHECK(lmp_events_count(w) == n);
    lmp_events_close(&w);
    return slurp(path, len);
}

static void test_roundtrip(void) {
    enum { N = 40 };
    const char            *p = tpath(0, "rt.log");
    size_t                 len;
    uint8_t               *b = write_log(p, N, &len, NULL);
    struct lmp_event_list  l = {0};
    struct lmp_events_scan scan;
    struct lmp_err         err = {0};
    CHECK(lmp_events_read(p, &l, &scan, &err) == LMP_OK);
    CHECK(scan.header_ok && scan.n_records == N && scan.n_bad == 0 && scan.n_dropped == 0);
    CHECK(scan.valid_end == len);
    CHECK(l.n == N);
    for (int i = 0; i < N && i < l.n; i++) {
        struct lmp_event e;
        make_event(&e, i);
        CHECK(events_equal(&e, &l.ev[i]));
    }
    CHECK(strlen(l.ev[5].message) == LMP_EVENTS_MESSAGE_MAX - 1 || strlen(l.ev[5].message) == 185);
    lmp_event_list_release(&l);
    free(b);
}

/* Cut the file inside its last record at every offset: the record is dropped, the
 * others kept; the writer truncates the tail on reopen and appends after it. */
static void test_torn_tail(void) {
    enum { N = 6 };
    const char  *p = tpath(0, "torn.log");
    size_t       len, ends[N];
    uint8_t     *b     = write_log(p, N, &len, ends);
    const size_t start = ends[N - 2];
    int          bad   = 0;
    for (size_t cut = start; cut < len; cut++) {
        struct lmp_events_scan scan;
        struct lmp_err         err = {0};
        if (lmp_events_parse(b, cut, p, NULL, &scan, &err) != LMP_OK || scan.n_records != N - 1 ||
            scan.n_dropped != cut - start || scan.valid_end != start)
            bad++;
    }
    CHECK(bad == 0);
    /* reopen a torn file: truncated, then one more record, all readable */
    spit(p, b, len - 3);
    struct lmp_events_file *w       = NULL;
    struct lmp_err          err     = {0};
    uint32_t                max_run = 0;
    CHECK(lmp_events_open(p, 0, &w, &max_run, &err) == LMP_OK);
    CHECK(max_run == 2);
    CHECK(lmp_events_count(w) == N - 1);
    struct lmp_event e;
    make_event(&e, 100);
    CHECK(lmp_events_append(w, &e, &err) == LMP_OK);
    lmp_events_close(&w);
    struct lmp_event_list  l = {0};
    struct lmp_events_scan scan;
    CHECK(lmp_events_read(p, &l, &scan, &err) == LMP_OK);
    CHECK(l.n == N && scan.n_dropped == 0 && scan.n_bad == 0);
    if (l.n == N) CHECK(events_equal(&l.ev[N - 1], &e));
    lmp_event_list_release(&l);
    /* a file torn inside its header is an empty log, restarted by the writer */
    spit(p, b, 17);
    struct lmp_events_scan s2;
    CHECK(lmp_events_read(p, NULL, &s2, &err) == LMP_OK && !s2.header_ok && s2.n_records == 0);
    CHECK(lmp_events_open(p, 0, &w, &max_run, &err) == LMP_OK && lmp_events_count(w) == 0);
    lmp_events_close(&w);
    free(b);
}

static void test_checksum_mismatch(void) {
    enum { N = 5 };
    const char            *p = tpath(0, "crc.log");
    size_t                 len, ends[N];
    uint8_t               *b = write_log(p, N, &len, ends);
    struct lmp_events_scan scan;
    struct lmp_err         err = {0};
    struct lmp_event_list  l   = {0};
    /* a flipped payload byte in record 2: skipped, the rest kept */
    b[ends[1] + 12 + 3] ^= 0x40;
    CHECK(lmp_events_parse(b, len, p, &l, &scan, &err) == LMP_OK);
    CHECK(scan.n_records == N - 1 && scan.n_bad == 1 && scan.n_dropped == 0);
    CHECK(l.n == N - 1);
    if (l.n == N - 1) {
        struct lmp_event e;
        make_event(&e, 4);
        CHECK(events_equal(&l.ev[3], &e));
    }
    lmp_event_list_release(&l);
    b[ends[1] + 12 + 3] ^= 0x40;
    /* a flipped checksum byte: same */
    b[ends[2] + 5] ^= 1;
    CHECK(lmp_events_parse(b, len, p, NULL, &scan, &err) == LMP_OK && scan.n_bad == 1 &&
          scan.n_records == N - 1);
    b[ends[2] + 5] ^= 1;
    /* an impossible length: no way to find the next record, the tail is dropped */
    b[ends[2] + 3] = 0x7f;
    CHECK(lmp_events_parse(b, len, p, NULL, &scan, &err) == LMP_OK && scan.n_records == 3 &&
          scan.n_dropped == len - ends[2]);
    b[ends[2] + 3] = 0;
    /* a wrong header is an error that names the file */
    b[0] = 'X';
    CHECK(lmp_events_parse(b, len, p, NULL, &scan, &err) == LMP_EFORMAT);
    CHECK(strstr(err.msg, "crc.log") != NULL);
    b[0] = 'L';
    b[20] ^= 1; /* file id covered by the header checksum */
    CHECK(lmp_events_parse(b, len, p, NULL, &scan, &err) == LMP_EFORMAT);
    free(b);
}

/* Random corruptions never crash or read out of bounds (ASan), and never invent a
 * record: each good record found equals one that was written. */
static void test_random_corruption(void) {
    enum { N = 8 };
    const char *p = tpath(0, "rand.log");
    size_t      len;
    uint8_t    *b = write_log(p, N, &len, NULL), *c = malloc(len);
    uint64_t    s        = 42;
    int         invented = 0;
    for (int it = 0; it < 3000; it++) {
        memcpy(c, b, len);
        for (int k = 0; k < 1 + it % 4; k++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            c[LMP_EVENTS_HEADER + (s >> 33) % (len - LMP_EVENTS_HEADER)] ^=
                (uint8_t)(1u << ((s >> 20) & 7));
        }
        struct lmp_event_list  l = {0};
        struct lmp_events_scan scan;
        struct lmp_err         err = {0};
        if (lmp_events_parse(c, len - (size_t)(it % 7), p, &l, &scan, &err) == LMP_OK)
            for (int64_t i = 0; i < l.n; i++) {
                bool known = false;
                for (int j = 0; j < N && !known; j++) {
                    struct lmp_event e;
                    make_event(&e, j);
                    known = events_equal(&e, &l.ev[i]);
                }
                if (!known) invented++;
            }
        lmp_event_list_release(&l);
    }
    CHECK(invented == 0);
    free(c);
    free(b);
}

/* ---- through the artifact --------------------------------------------------------- */

static void make_job(struct lmp_art_job *job) {
    lmp_art_job_init(job);
    job->n_linears = 2;
    job->linears   = calloc(2, sizeof(*job->linears));
    for (int i = 0; i < 2; i++) {
        snprintf(job->linears[i].name, sizeof(job->linears[i].name), "model.layers.0.mlp.l%d", i);
        job->linears[i].n_out = 4;
        job->linears[i].n_in  = 8;
    }
    job->model_fp = 0xABCD;
    lmp_art_job_set_text(&job->model_name, "fake");
    snprintf(job->method, sizeof(job->method), "rtn");
    snprintf(job->scheme, sizeof(job->scheme), "int4g8");
    job->cfg.n_layers = 1;
    job->cfg.dim      = 8;
}

static enum lmp_status commit(struct lmp_artifact *a, const struct lmp_art_job *job, int i) {
    struct lmp_art_layer l         = {0};
    uint16_t             codes[32] = {0};
    float                sc[4] = {1, 1, 1, 1}, z[4] = {0};
    snprintf(l.name, sizeof(l.name), "%s", job->linears[i].name);
    l.codec = LMP_ART_CODEC_RTN, l.n_out = 4, l.n_in = 8, l.M = 1, l.B = 4, l.g = 8;
    l.codes = codes, l.scales = sc, l.zeros = z;
    struct lmp_err err = {0};
    return lmp_artifact_commit_layer(a, &l, &err);
}

static enum lmp_status add(struct lmp_artifact *a, const char *kind, const char *layer, int i) {
    struct lmp_event e;
    char             msg[64];
    snprintf(msg, sizeof(msg), "event %d", i);
    lmp_event_set(&e, 0, 0, LMP_LOG_INFO, kind, "w1", layer, msg);
    struct lmp_err err = {0};
    return lmp_artifact_add_event(a, &e, &err);
}

static int64_t count_kind(const struct lmp_event_list *l, const char *kind, uint32_t run) {
    int64_t n = 0;
    for (int64_t i = 0; i < l->n; i++)
        if (strcmp(l->ev[i].kind, kind) == 0 && (run == 0 || l->ev[i].run == run)) n++;
    return n;
}

static int64_t read_all(const char *path, struct lmp_event_list *l) {
    struct lmp_artifact *a   = NULL;
    struct lmp_err       err = {0};
    lmp_event_list_release(l);
    if (lmp_artifact_open_read(path, &a, &err) != LMP_OK) {
        fprintf(stderr, "  open_read: %s\n", err.msg);
        return -1;
    }
    enum lmp_status st = lmp_artifact_read_events(a, l, &err);
    if (st != LMP_OK) fprintf(stderr, "  read_events: %s\n", err.msg);
    lmp_artifact_close(&a);
    return st == LMP_OK ? l->n : -1;
}

/* Run 1 writes events and a layer, then stops without finalizing; run 2 resumes,
 * appends, finalizes: /events holds both runs in order; the parts are gone; h5dump
 * reads /events. */
static void test_resume_and_assembly(void) {
    const char *art = tpath(1, "ev.h5");
    rm_rf(art);
    struct lmp_art_job job;
    make_job(&job);
    struct lmp_artifact  *a   = NULL;
    struct lmp_err        err = {0};
    struct lmp_event_list l   = {0};
    CHECK(lmp_artifact_open_write(art, &job, &a, &err) == LMP_OK);
    CHECK(add(a, LMP_EVENT_ASSIGNED, job.linears[0].name, 1) == LMP_OK);
    CHECK(commit(a, &job, 0) == LMP_OK);
    CHECK(add(a, LMP_EVENT_DONE, job.linears[0].name, 2) == LMP_OK);
    lmp_artifact_close(&a);
    /* readable from the parts directory alone */
    CHECK(read_all(art, &l) == 3);
    CHECK(count_kind(&l, LMP_EVENT_OPEN, 1) == 1 && count_kind(&l, LMP_EVENT_DONE, 1) == 1);
    CHECK(lmp_artifact_open_write(art, &job, &a, &err) == LMP_OK);
    CHECK(add(a, LMP_EVENT_ASSIGNED, job.linears[1].name, 3) == LMP_OK);
    CHECK(commit(a, &job, 1) == LMP_OK);
    CHECK(lmp_artifact_finalize(a, &err) == LMP_OK);
    CHECK(add(a, LMP_EVENT_DONE, "", 4) == LMP_EINVAL); /* finalized */
    lmp_artifact_close(&a);
    CHECK(!lmp_path_is_dir(tpath(2, "ev.h5.parts")));
    CHECK(read_all(art, &l) == 6);
    CHECK(count_kind(&l, LMP_EVENT_RESUME, 2) == 1 && count_kind(&l, LMP_EVENT_FINALIZE, 2) == 1);
    CHECK(count_kind(&l, LMP_EVENT_ASSIGNED, 0) == 2);
    for (int64_t i = 1; i < l.n; i++) CHECK(l.ev[i].run >= l.ev[i - 1].run);
    CHECK(lmp_artifact_n_open_ids() == 0);
    /* a third run on the finalized artifact keeps the old events and adds its own */
    CHECK(lmp_artifact_open_write(art, &job, &a, &err) == LMP_OK);
    CHECK(lmp_artifact_finalize(a, &err) == LMP_OK);
    lmp_artifact_close(&a);
    CHECK(read_all(art, &l) == 8);
    CHECK(count_kind(&l, LMP_EVENT_RESUME, 3) == 1);
    /* h5dump reads the layout */
    if (system("command -v h5dump >/dev/null 2>&1") == 0) {
        char cmd[8400];
        snprintf(cmd, sizeof(cmd),
                 "h5dump -d /events/kind '%s' 2>&1 | grep -q '\"finalize\"' && "
                 "h5dump -H '%s' | grep -q 'DATASET \"message\"'",
                 art, art);
        CHECK(system(cmd) == 0);
    } else {
        fprintf(stderr, "  (h5dump not installed: layout check skipped)\n");
    }
    lmp_event_list_release(&l);
    lmp_art_job_release(&job);
    rm_rf(art);
}

/* A crash between the assembly's rename and the removal of the parts leaves an events
 * file already copied into /events: readers do not count it twice, the next writer
 * restarts it. */
static void test_absorbed_file_not_duplicated(void) {
    const char *art = tpath(1, "abs.h5");
    rm_rf(art);
    struct lmp_art_job job;
    make_job(&job);
    struct lmp_artifact  *a   = NULL;
    struct lmp_err        err = {0};
    struct lmp_event_list l   = {0};
    char                  ev[4200], parts[4200];
    snprintf(ev, sizeof(ev), "%s.parts/events.log", art);
    snprintf(parts, sizeof(parts), "%s.parts", art);
    CHECK(lmp_artifact_open_write(art, &job, &a, &err) == LMP_OK);
    CHECK(add(a, LMP_EVENT_ASSIGNED, "", 1) == LMP_OK);
    CHECK(lmp_artifact_sync_events(a, &err) == LMP_OK);
    size_t   len;
    uint8_t *b = slurp(ev, &len); /* the file /events will absorb */
    CHECK(b != NULL && len > LMP_EVENTS_HEADER);
    CHECK(lmp_artifact_finalize(a, &err) == LMP_OK);
    lmp_artifact_close(&a);
    CHECK(read_all(art, &l) == 3); /* open, assigned, finalize */
    mkdir(parts, 0755);            /* as a crash before its unlink leaves it */
    spit(ev, b, len);
    CHECK(read_all(art, &l) == 3);
    CHECK(lmp_artifact_open_write(art, &job, &a, &err) == LMP_OK); /* restarts the file */
    lmp_artifact_close(&a);
    CHECK(read_all(art, &l) == 4);
    CHECK(count_kind(&l, LMP_EVENT_ASSIGNED, 0) == 1 && count_kind(&l, LMP_EVENT_RESUME, 2) == 1);
    free(b);
    lmp_event_list_release(&l);
    lmp_art_job_release(&job);
    rm_rf(art);
}

/* An events file with a wrong header does not block the job: it is set aside and a new
 * log started. */
static void test_bad_header_set_aside(void) {
    const char *art = tpath(1, "bad.h5");
    rm_rf(art);
    struct lmp_art_job job;
    make_job(&job);
    struct lmp_artifact  *a   = NULL;
    struct lmp_err        err = {0};
    struct lmp_event_list l   = {0};
    CHECK(lmp_artifact_open_write(art, &job, &a, &err) == LMP_OK);
    CHECK(add(a, LMP_EVENT_ASSIGNED, "", 1) == LMP_OK);
    lmp_artifact_close(&a);
    char ev[4200];
    snprintf(ev, sizeof(ev), "%s.parts/events.log", art);
    size_t   len;
    uint8_t *b = slurp(ev, &len);
    CHECK(b != NULL && len > 8);
    if (b) {
        b[2] = 'X';
        spit(ev, b, len);
    }
    CHECK(read_all(art, &l) == -1); /* a reader says what is wrong */
    CHECK(lmp_artifact_open_write(art, &job, &a, &err) == LMP_OK);
    CHECK(add(a, LMP_EVENT_DONE, "", 2) == LMP_OK);
    lmp_artifact_close(&a);
    CHECK(read_all(art, &l) == 2); /* "open" of the new log + done */
    CHECK(count_kind(&l, LMP_EVENT_DONE, 0) == 1);
    free(b);
    lmp_event_list_release(&l);
    lmp_art_job_release(&job);
    rm_rf(art);
}

/* kill -9 of a writer at a random instant while it appends: every event whose
 * append returned is readable from the parts, and a resume appends after them. */
static void test_kill_while_appending(void) {
    const char        *art = tpath(1, "kill.h5");
    struct lmp_art_job job;
    make_job(&job);
    for (int trial = 0; trial < 6; trial++) {
        rm_rf(art);
        int pfd[2];
        CHECK(pipe(pfd) == 0);
        pid_t pid = fork();
        if (pid == 0) {
            close(pfd[0]);
            struct lmp_artifact *a   = NULL;
            struct lmp_err       err = {0};
            if (lmp_artifact_open_write(art, &job, &a, &err) != LMP_OK) _exit(3);
            int32_t ready = 0;
            if (write(pfd[1], &ready, sizeof(ready)) != sizeof(ready)) _exit(5);
            for (int i = 0;; i++) {
                if (add(a, LMP_EVENT_PROGRESS, "model.layers.0.mlp.l0", i) != LMP_OK) _exit(4);
                int32_t done = i + 1; /* appended: the parent may count it */
                if (write(pfd[1], &done, sizeof(done)) != sizeof(done)) _exit(5);
            }
        }
        close(pfd[1]);
        int32_t last = 0, v;
        CHECK(read(pfd[0], &v, sizeof(v)) == sizeof(v) && v == 0); /* opened */
        usleep(500 + 2000 * trial);
        kill(pid, SIGKILL);
        int status = 0;
        waitpid(pid, &status, 0);
        while (read(pfd[0], &v, sizeof(v)) == sizeof(v)) last = v;
        close(pfd[0]);
        CHECK(WIFSIGNALED(status));
        struct lmp_event_list l = {0};
        int64_t               n = read_all(art, &l);
        /* "open" + at least every acknowledged append (one more may have landed) */
        CHECK(n >= 1 + last && n <= 2 + last);
        CHECK(count_kind(&l, LMP_EVENT_OPEN, 1) == 1);
        struct lmp_artifact *a   = NULL;
        struct lmp_err       err = {0};
        CHECK(lmp_artifact_open_write(art, &job, &a, &err) == LMP_OK);
        lmp_artifact_close(&a);
        CHECK(read_all(art, &l) == n + 1);
        CHECK(l.n > 0 && strcmp(l.ev[l.n - 1].kind, LMP_EVENT_RESUME) == 0 &&
              l.ev[l.n - 1].run == 2);
        lmp_event_list_release(&l);
    }
    lmp_art_job_release(&job);
    rm_rf(art);
}

int main(void) {
    snprintf(tmpdir, sizeof(tmpdir), "%s/lmp_test_events_%d",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", (int)getpid());
    mkdir(tmpdir, 0755);
    RUN(test_roundtrip);
    RUN(test_torn_tail);
    RUN(test_checksum_mismatch);
    RUN(test_random_corruption);
    RUN(test_resume_and_assembly);
    RUN(test_absorbed_file_not_duplicated);
    RUN(test_bad_header_set_aside);
    RUN(test_kill_while_appending);
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "cannot clean %s\n", tmpdir);
    return check_report();
}
