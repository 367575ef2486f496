/*  bg - the coordinator's background thread: a FIFO of slow jobs, results back by a pipe
 *
 *  The coordinator's loop must answer every message within milliseconds (status queries,
 *  heartbeats), so the work that can take seconds to minutes on a large model runs here:
 *  planning a job (model open, fingerprint, tokenization), reading committed layers back
 *  for a sequential task, and finalizing the artifact. The loop posts an item; the thread
 *  runs item->work(item) and queues it as done; the loop, woken by lmp_bg_fd() becoming
 *  readable in its zmq_poll, takes the done items back in posting order (one thread: done
 *  order is posting order) and applies their results to its state.
 *
 *  Ownership: an item belongs to the thread from lmp_bg_post until lmp_bg_take returns it;
 *  its work function touches only what the item carries and what the loop promises not to
 *  touch meanwhile (coord.c documents which). The loop stays the only owner of the
 *  coordinator's state: nothing here calls back into it.
 */
#ifndef LMP_COORDINATOR_BG_H
#define LMP_COORDINATOR_BG_H

#include "base/status.h" /* defines: enum lmp_status, struct lmp_err */

#include <stddef.h>

struct lmp_bg;

/* Embed this first in an item struct. work runs on the background thread. */
struct lmp_bg_item {
    void (*work)(struct lmp_bg_item *it);
    struct lmp_bg_item *next; /* lmp_bg's */
};

/* Start the thread. RET LMP_OK; LMP_ENOMEM or LMP_EIO (no pipe or thread). */
enum lmp_status lmp_bg_new(struct lmp_bg **out, struct lmp_err *err);

/* Stop the thread once its current item is done (waits for it), and hand every item not
 * taken back (queued, running or done) to drop, in posting order (drop may be NULL). Safe on
 * NULL and twice. */
void lmp_bg_destroy(struct lmp_bg **bg_p, void (*drop)(struct lmp_bg_item *it));

/* Queue it (owned by the thread until taken back). Never blocks. */
void lmp_bg_post(struct lmp_bg *bg, struct lmp_bg_item *it);

/* A file descriptor that is readable while a done item waits to be taken (zmq_poll it). */
int lmp_bg_fd(const struct lmp_bg *bg);

/* The oldest done item, or NULL (none done yet). Never blocks. */
struct lmp_bg_item *lmp_bg_take(struct lmp_bg *bg);

/* Items posted and not yet taken back. */
size_t lmp_bg_n_pending(const struct lmp_bg *bg);

#endif /* LMP_COORDINATOR_BG_H */
