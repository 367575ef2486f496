/*  cluster - what the cluster subcommands (submit, status, cancel, workers) share:
 *  connecting with the fixed exit code 3 when the coordinator cannot be reached, and
 *  printing a JobStatus (text or --json).
 */
#ifndef LMP_CLI_CLUSTER_H
#define LMP_CLI_CLUSTER_H

#include <stdbool.h>
#include "cli/cli.h"
#include "proto/client.h"     /* defines: struct lmp_client */

#define LMP_CLI_DEFAULT_ENDPOINT "tcp://127.0.0.1:7070"

/* Connect (timeout from LMPRESS_TIMEOUT_MS, default 5000), with the CURVE keys of
 * lmp_cli_curve_from_env if set. On failure print the message and return the exit code
 * (3 unreachable or refused, 5 key refused, 2/4 bad key options/files); 0 on success. */
int lmp_cli_connect(const char *endpoint, struct lmp_client **cl);

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
