/*  events - a job's event log on disk: an append-only file of checksummed records
 *
 *  The coordinator (and `lmpress compress`) record what happens to a job: task
 *  assigned / started / progress / done / failed / requeued, worker joined / gone,
 *  cancel, open, resume, finalize. The artifact keeps these events so that a crash
 *  does not take them away (artifact.h: lmp_artifact_add_event). While the job runs
 *  they live in ART.h5.parts/events.log, this module's file format; finalize copies
 *  them into the /events group of ART.h5 (docs/artifact.md).
 *
 *  File format (all integers little-endian):
 *
 *      header  (32 bytes)  magic "LMPEVTS1" | u32 version (1) | u32 header size (32)
 *                          | u64 file id (random) | u64 xxh64 of the previous 24 bytes
 *      record  (repeated)  u32 n (payload bytes, LMP_EVENTS_PAYLOAD_MIN..MAX)
 *                          | u64 xxh64(payload) | payload
 *      payload             u64 time_ms | u32 run | u8 level | u8 kind_len | u16 worker_len
 *                          | u16 layer_len | u16 message_len | kind | worker | layer | message
 *                          (strings without NUL, each shorter than its field in struct lmp_event;
 *                          n equals 20 + the four lengths)
 *
 *  Crash safety: records are appended with write(2) as they happen, so a killed process
 *  loses none of them; fsync follows a policy (lmp_events_sync at each layer commit, and
 *  at most a second after an append). A machine crash can leave a torn last record: the
 *  parser stops at a record that does not fit the file or whose length is impossible,
 *  and the writer truncates the file after the last good record on reopen (a warning,
 *  never an error). A record of plausible length whose checksum or payload is wrong is
 *  skipped and counted (n_bad); the records after it are kept.
 *
 *  The parser reads untrusted bytes (tests/fuzz/fuzz_events.c): it never reads outside
 *  the buffer and bounds every length.
 *
 *  Writer calling sequence:
 *      struct lmp_events_file *w;
 *      uint32_t max_run;
 *      st = lmp_events_open("ART.h5.parts/events.log", absorbed_id, &w, &max_run, &err);
 *      ev.run = max_run + 1; ...
 *      st = lmp_events_append(w, &ev, &err);       // written now, fsync'ed within a second
 *      st = lmp_events_sync(w, &err);              // fsync now (e.g. after a layer commit)
 *      lmp_events_close(&w);                       // fsync + close
 *  Not thread-safe.
 */
#ifndef LMP_ARTIFACT_EVENTS_H
#define LMP_ARTIFACT_EVENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "base/status.h" /* defines: enum lmp_status, struct lmp_err */
#include "model/model.h" /* defines: LMP_NAME_MAX */

#define LMP_EVENTS_HEADER      32
#define LMP_EVENTS_PAYLOAD_MIN 20
#define LMP_EVENTS_KIND_MAX    24 /* bytes, with the NUL */
#define LMP_EVENTS_WORKER_MAX  128
#define LMP_EVENTS_LAYER_MAX   LMP_NAME_MAX
#define LMP_EVENTS_MESSAGE_MAX 512
#define LMP_EVENTS_PAYLOAD_MAX                                                                     \
    (LMP_EVENTS_PAYLOAD_MIN + LMP_EVENTS_KIND_MAX + LMP_EVENTS_WORKER_MAX + LMP_EVENTS_LAYER_MAX + \
     LMP_EVENTS_MESSAGE_MAX)

/* The event kinds the coordinator and `lmpress compress` write (any short name is valid). */
#define LMP_EVENT_OPEN     "open"     /* the artifact was created by run 1 */
#define LMP_EVENT_RESUME   "resume"   /* a later run reopened it */
#define LMP_EVENT_FINALIZE "finalize" /* ART.h5 assembled */
#define LMP_EVENT_SUBMIT   "submit"   /* a job was accepted */
#define LMP_EVENT_ASSIGNED "assigned" /* task sent to a worker */
#define LMP_EVENT_STARTED  "started"  /* first progress from the worker */
#define LMP_EVENT_PROGRESS "progress" /* periodic summary: step, loss, rel err */
#define LMP_EVENT_DONE     "done"     /* layer committed */
#define LMP_EVENT_FAILED   "failed"   /* the worker reported an error */
#define LMP_EVENT_REQUEUED "requeued" /* task back in the queue */
#define LMP_EVENT_JOINED   "joined"   /* worker said Hello */
#define LMP_EVENT_GONE     "gone"     /* worker silent or disconnected */
#define LMP_EVENT_CANCEL   "cancel"   /* job cancelled */
#define LMP_EVENT_JOB_END  "job_end"  /* job done or failed */
#define LMP_EVENT_LOG      "log"      /* a plain log line */

struct lmp_event {
    uint64_t time_ms;                       /* unix time, ms */
    uint32_t run;                           /* writer session: 1, then +1 per resume */
    uint8_t  level;                         /* enum lmp_log_level */
    char     kind[LMP_EVENTS_KIND_MAX];     /* LMP_EVENT_* */
    char     worker[LMP_EVENTS_WORKER_MAX]; /* "" = none */
    char     layer[LMP_EVENTS_LAYER_MAX];   /* "" = none */
    char     message[LMP_EVENTS_MESSAGE_MAX];
};

/* Fill e (strings truncated to their fields; NULL = ""). */
void lmp_event_set(struct lmp_event *e, uint64_t time_ms, uint32_t run, int level, const char *kind,
                   const char *worker, const char *layer, const char *message);

/* A growable array of events. */
struct lmp_event_list {
    struct lmp_event *ev; /* (n) */
    int64_t           n, cap;
};
enum lmp_status lmp_event_list_push(struct lmp_event_list *l, const struct lmp_event *e);
void            lmp_event_list_release(struct lmp_event_list *l);

/* Encode one record (length, checksum, payload) into buf (LMP_EVENTS_PAYLOAD_MAX + 12
 * bytes at least). RET the record's size in bytes. */
size_t lmp_events_encode(const struct lmp_event *e, uint8_t *buf);

/* Write the LMP_EVENTS_HEADER header bytes of a file with this id into h. */
void lmp_events_header(uint8_t *h, uint64_t file_id);

/* What a parse found. */
struct lmp_events_scan {
    bool     header_ok; /* a valid header was found */
    uint64_t file_id;   /* from the header */
    int64_t  n_records; /* good records */
    int64_t  n_bad;     /* records skipped: checksum or payload wrong */
    size_t   valid_end; /* offset just after the last good record (>= header size) */
    size_t   n_dropped; /* bytes after valid_end: a torn or unreadable tail */
};

/* Parse a whole events file image (header + records). Good records are appended to out
 * (NULL: only count). A buffer shorter than the header is an empty log (header_ok false:
 * a file torn while it was created). RET LMP_OK; LMP_EFORMAT when the 32 header bytes
 * are not an events header (err names what, with `name` for the file); LMP_ENOMEM. */
enum lmp_status lmp_events_parse(const uint8_t *buf, size_t len, const char *name,
                                 struct lmp_event_list *out, struct lmp_events_scan *scan,
                                 struct lmp_err *err);

/* Read the file at path into out. RET LMP_OK, LMP_ENOENT (no file), LMP_EFORMAT, LMP_EIO. */
enum lmp_status lmp_events_read(const char *path, struct lmp_event_list *out,
                                struct lmp_events_scan *scan, struct lmp_err *err);

struct lmp_events_file;

/* Open path for appending: create it with a new random id; or, if it exists, keep its
 * good records and truncate a torn tail (warning). A file whose id is absorbed_id was
 * already copied into the assembled artifact (a crash after the assembly): it is
 * started afresh. *max_run gets the largest run among the kept records (0 = none).
 * RET LMP_OK, LMP_EFORMAT (not an events file), LMP_EIO, LMP_ENOSPC, LMP_ENOMEM. */
enum lmp_status lmp_events_open(const char *path, uint64_t absorbed_id,
                                struct lmp_events_file **out, uint32_t *max_run,
                                struct lmp_err *err);

/* Append one record (write(2) now; fsync when the last one is a second old). */
enum lmp_status lmp_events_append(struct lmp_events_file *w, const struct lmp_event *e,
                                  struct lmp_err *err);

/* fsync if anything was appended since the last one. */
enum lmp_status lmp_events_sync(struct lmp_events_file *w, struct lmp_err *err);

uint64_t    lmp_events_file_id(const struct lmp_events_file *w);
int64_t     lmp_events_count(const struct lmp_events_file *w); /* records in the file */
const char *lmp_events_path(const struct lmp_events_file *w);

/* fsync, close, free; *w set to NULL. Safe on NULL. */
void lmp_events_close(struct lmp_events_file **w);

#endif /* LMP_ARTIFACT_EVENTS_H */
