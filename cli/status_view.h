/*  status_view - the screen of `lmpress status --watch` on a terminal, as a pure function
 *
 *  A job's status (JobStatus: the job, its layers, the workers) drawn for a terminal of
 *  rows x cols, so that it always fits: the job header, the overall bar and the layer
 *  counts by state come first and always stay on screen; then what runs now (the stage of
 *  each busy worker: calibration slice, quantizing a layer, fine-tuning block), the running
 *  layers with their step bars (as many as fit, then "... N more running"), then the
 *  workers. Pending and done layers are counted, not listed (SmolLM2 has 210 layers).
 *  Every line is cut to cols characters; at most rows - 1 lines, so the last row keeps
 *  the cursor and nothing scrolls.
 *
 *  The view keeps what it needs across refreshes: the job's throughput while it ran. A
 *  coordinator divides the weights done by the time since the job started, so after the
 *  job ends its figure decays; the view shows the last figure seen while running instead.
 *
 *  Calling sequence:
 *      struct lmp_status_view v; lmp_status_view_init(&v);
 *      each refresh: char *s = lmp_status_view_render(&v, js, now_ms, rows, cols); print; free(s);
 */
#ifndef LMP_CLI_STATUS_VIEW_H
#define LMP_CLI_STATUS_VIEW_H

#include <stddef.h>
#include <stdint.h>
#include "proto/lmpress.pb-c.h" /* defines: Lmp__JobStatus */

struct lmp_status_view {
    uint64_t job_id;     /* the job last seen running (0: none) */
    double   throughput; /* its throughput then, weights per second */
};

void lmp_status_view_init(struct lmp_status_view *v);

/* The screen for js at now_ms (unix ms) on rows x cols (rows >= 1, cols >= 20; smaller
 * values are raised to these): '\n'-terminated lines, see the file comment. Updates v.
 * RET a string the caller frees, or NULL when out of memory. */
char *lmp_status_view_render(struct lmp_status_view *v, const Lmp__JobStatus *js, uint64_t now_ms,
                             int rows, int cols);

/* The job's throughput to show (weights per second): the coordinator's while it runs,
 * afterwards the last one v saw while it ran (the coordinator's when v saw none). */
double lmp_status_view_throughput(struct lmp_status_view *v, const Lmp__JobInfo *j);

/* "[####----]": width cells filled by frac (clamped to [0, 1]); out holds width + 3 bytes. */
void lmp_status_view_bar(char *out, int width, double frac);
/* "42s", "3m05s", "2h10m" ("?" for a negative or NaN s). */
void lmp_status_view_duration(char *out, size_t cap, double s);

#endif /* LMP_CLI_STATUS_VIEW_H */
