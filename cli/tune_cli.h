/*  tune_cli - running a PV-Tuning job from a command: progress lines, notices, the summary
 *
 *  `lmpress tune` and `lmpress compress --pv` share it (cmd_tune.c).
 */
#ifndef LMP_CLI_TUNE_CLI_H
#define LMP_CLI_TUNE_CLI_H

#include <cjson/cJSON.h>
#include "cli/cli.h"          /* defines: struct lmp_cli */
#include "coordinator/tune.h" /* defines: struct lmp_tune_job, struct lmp_tune_result */
#include "worker/agent.h"     /* defines: lmp_agent_tune_fn */

/* Run j (its progress and notice hooks are set here: one line per step on stderr unless
 * cli->json). On success, the summary: two lines on stderr, or, with json non-NULL, the
 * result's fields added to it. RET the exit code (130 when stopped: the state is
 * checkpointed and the same command resumes). */
int lmp_cli_tune_run(struct lmp_cli *cli, struct lmp_tune_job *j, cJSON *json);

/* worker/agent.h lmp_agent_tune_fn: a worker's TASK_KIND_TUNE rank runs coordinator/tune.h's
 * job (ctx unused). `lmpress worker`, the embedded and the mpirun workers all set it. */
lmp_agent_tune_fn lmp_cli_tune_rank;

#endif /* LMP_CLI_TUNE_CLI_H */
