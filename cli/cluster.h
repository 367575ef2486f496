/*  cluster - what the cluster subcommands (submit, status, cancel, workers, logs) share:
 *  connecting with the fixed exit code 3 when the coordinator cannot be reached,
 *  following a job across a restart of its coordinator, and printing a JobStatus (text
 *  or --json).
 *
 *  Following (submit --wait, status --watch, logs --follow):
 *      struct lmp_cli_session s;
 *      lmp_cli_session_init(&s, endpoint, job_id, out_path);   // out_path may be NULL
 *      rc = lmp_cli_session_connect(&s);                       // 0, 3, 5 (as lmp_cli_connect)
 *      while (...) {
 *          rc = lmp_cli_session_query(&s, layers, workers, &rep);  // or lmp_cli_session_call
 *          if (rc != 0) break;                                  // 1 refused, 3 gone for good
 *          ... rep->job_status ...; if (s.reconnected) {...; s.reconnected = false;}
 *      }
 *      lmp_cli_session_release(&s);
 *  A call that gets no answer (the coordinator was killed) or an answer that says this
 *  session is unknown to it (a restarted coordinator: "say Hello first") closes the
 *  session and opens a new one (Hello again), retrying for up to LMPRESS_RECONNECT_MS
 *  (default 60000 ms) since the coordinator was last heard; then exit code 3. After a
 *  reconnection the job is looked up again: a coordinator restarted with its --state
 *  resumes the job under a new id, so the job followed is the one writing the same
 *  artifact (out_path) when its id is unknown there.
 */
#ifndef LMP_CLI_CLUSTER_H
#define LMP_CLI_CLUSTER_H

#include <signal.h>
#include <stdbool.h>
#include "cli/cli.h"
#include "proto/client.h" /* defines: struct lmp_client */

#define LMP_CLI_DEFAULT_ENDPOINT "tcp://127.0.0.1:7070"

/* Connect (timeout from LMPRESS_TIMEOUT_MS, default 5000), with the CURVE keys of
 * lmp_cli_curve_from_env if set. On failure print the message and return the exit code
 * (3 unreachable or refused, 5 key refused, 2/4 bad key options/files); 0 on success. */
int lmp_cli_connect(const char *endpoint, struct lmp_client **cl);

/* A client session that survives a restart of the coordinator (see above). */
struct lmp_cli_session {
    const char        *endpoint;       /* borrowed */
    struct lmp_client *cl;             /* the current session; NULL between two */
    uint64_t           job_id;         /* the job followed; 0: the coordinator's current job */
    char              *out_path;       /* its artifact (owned), to find it again; NULL: unknown */
    int                reconnect_ms;   /* how long to retry after the coordinator is lost */
    bool               reconnected;    /* set by a call that reconnected; the caller clears it */
    const volatile sig_atomic_t *stop; /* set (e.g. by SIGINT): stop reconnecting, exit 130 */
};

void lmp_cli_session_init(struct lmp_cli_session *s, const char *endpoint, uint64_t job_id,
                          const char *out_path);
void lmp_cli_session_release(struct lmp_cli_session *s);

/* Open the first session. Exit code as lmp_cli_connect. */
int lmp_cli_session_connect(struct lmp_cli_session *s);

/* Open the first session, retrying a coordinator that does not answer (a restarting one)
 * for up to reconnect_ms as a lost one is: for clients that follow a job anyway. Exit code
 * as lmp_cli_connect. */
int lmp_cli_session_connect_patient(struct lmp_cli_session *s);

/* One request (req's seq is set here), reconnecting as described above. On success *rep is
 * the reply (free with lmp_wire_free). Exit code: 0, 1 (refused: the message is printed),
 * 3 (no coordinator within reconnect_ms), 5 (key refused on reconnection), 130 (*stop). */
int lmp_cli_session_call(struct lmp_cli_session *s, Lmp__Envelope *req, Lmp__Envelope **rep);

/* A JobQuery of the job followed (see lmp_cli_query), through lmp_cli_session_call; the
 * first answer naming one job records its artifact. */
int lmp_cli_session_query(struct lmp_cli_session *s, bool layers, bool workers,
                          Lmp__Envelope **rep);

/* Submit spec to the coordinator at ep: prints "job N submitted (T tasks)" (or its JSON), and
 * with wait follows the job to its end (progress on stderr: layers, or a tuning's steps),
 * patiently across a restart of the coordinator (a job sent again is the same job). Exit code:
 * 0 (submitted; with wait: done), 1 (failed, cancelled, refused), 3 (no coordinator), 4 (the
 * coordinator refused an input), 5 (key refused), 130 (interrupted). */
int lmp_cli_submit_job(struct lmp_cli *cli, const char *ep, const Lmp__JobSpec *spec, bool wait);

/* One line on stderr for a PV-Tuning job's latest step ("job N: tune step s/n  kl ..."). */
void lmp_cli_print_tune_step(uint64_t job_id, const Lmp__TuneInfo *t);

/* Query job_id (0 = current) with layers and workers into *rep. Exit code as above. */
int lmp_cli_query(struct lmp_client *cl, uint64_t job_id, bool layers, bool workers,
                  Lmp__Envelope **rep);

/* Print a JobStatus: text (per layer and per worker when with_detail) or one JSON object. */
void lmp_cli_print_status(const struct lmp_cli *cli, const Lmp__JobStatus *js, bool with_detail);

/* Exit code for a finished job's state: 0 done, 1 failed or cancelled. */
int lmp_cli_job_exit(Lmp__JobState st);

/* One line per worker: name, state, cores, heartbeat age, counts, throughput. */
void lmp_cli_print_workers_text(size_t n, Lmp__WorkerInfo **ws);

const char *lmp_cli_job_state_name(Lmp__JobState st);
const char *lmp_cli_task_state_name(Lmp__TaskState st);
const char *lmp_cli_worker_state_name(Lmp__WorkerState st);

#endif /* LMP_CLI_CLUSTER_H */
