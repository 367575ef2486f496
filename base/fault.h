/*  fault - fault-injection hooks for tests, read from the environment
 *
 *  A hook is an environment variable naming a delay; production runs never set them.
 *  Hooks in use: LMP_FAULT_TASK_SLEEP_MS (a worker task starts late), LMP_FAULT_ROUND_SLEEP_MS
 *  (each AQ round, fine-tuning step and PV-Tuning step), LMP_FAULT_HELLO_SLEEP_MS (a worker greets
 * its coordinator late), LMP_FAULT_PLAN_SLEEP_MS (the coordinator plans a job slowly),
 * LMP_FAULT_STOP_SLEEP_MS (a stopped PV-Tuning rank ends late).
 * Hooks that are not delays, read where they act: LMP_FAULT_RESULT_CORRUPT (worker/agent.c: a
 * worker sends a broken result), LMP_FAULT_DROP_ASSIGN=N[,N...] (worker/agent.c: a
 * worker drops its N-th TaskAssigns as if it could not unpack them).
 */
#ifndef LMP_BASE_FAULT_H
#define LMP_BASE_FAULT_H

/* Sleep for the milliseconds in environment variable var, if it holds a positive number. */
void lmp_fault_sleep(const char *var);

#endif /* LMP_BASE_FAULT_H */
