/*  test_bg - the coordinator's background thread (coordinator/bg.h): items run off the
 *  caller's thread, come back in posting order, the fd says when, and destroy drops the rest */
#include "coordinator/bg.h"
#include "tests/check.h" /* defines: CHECK, RUN, check_report */

#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <time.h>

struct item {
    struct lmp_bg_item it; /* first */
    int                seq, sleep_ms;
    pthread_t          ran_on;
    bool               ran, dropped;
};

static void work(struct lmp_bg_item *it) {
    struct item *x = (struct item *)it;
    if (x->sleep_ms) {
        struct timespec ts = {0, (long)x->sleep_ms * 1000000L};
        nanosleep(&ts, NULL);
    }
    x->ran_on = pthread_self();
    x->ran    = true;
}

static bool readable(int fd, int timeout_ms) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, timeout_ms) == 1 && (p.revents & POLLIN);
}

static void test_bg_items_come_back_in_order(void) {
    struct lmp_bg *bg  = NULL;
    struct lmp_err err = {0};
    CHECK(lmp_bg_new(&bg, &err) == LMP_OK);
    CHECK(!readable(lmp_bg_fd(bg), 0)); /* nothing done yet */
    CHECK(lmp_bg_take(bg) == NULL);
    enum { N = 5 };
    struct item items[N];
    for (int i = 0; i < N; i++) {
        items[i] = (struct item){.it.work = work, .seq = i, .sleep_ms = i == 0 ? 50 : 0};
        lmp_bg_post(bg, &items[i].it);
    }
    CHECK(lmp_bg_n_pending(bg) == N);
    int next = 0;
    while (next < N && readable(lmp_bg_fd(bg), 5000)) {
        struct lmp_bg_item *it;
        while ((it = lmp_bg_take(bg)) != NULL) {
            struct item *x = (struct item *)it;
            CHECK(x->seq == next++); /* posting order, whatever each one took */
            CHECK(x->ran && !pthread_equal(x->ran_on, pthread_self()));
        }
    }
    CHECK(next == N);
    CHECK(lmp_bg_n_pending(bg) == 0);
    CHECK(!readable(lmp_bg_fd(bg), 0)); /* every byte taken with its item */
    lmp_bg_destroy(&bg, NULL);
    CHECK(bg == NULL);
    lmp_bg_destroy(&bg, NULL); /* twice is safe */
}

static void drop(struct lmp_bg_item *it) {
    ((struct item *)it)->dropped = true;
}

static void test_bg_destroy_drops_what_was_not_taken(void) {
    struct lmp_bg *bg  = NULL;
    struct lmp_err err = {0};
    CHECK(lmp_bg_new(&bg, &err) == LMP_OK);
    struct item slow = {.it.work = work, .sleep_ms = 100}, queued = {.it.work = work};
    lmp_bg_post(bg, &slow.it);
    lmp_bg_post(bg, &queued.it);
    lmp_bg_destroy(&bg, drop);             /* waits for the running one, if any; drops both */
    CHECK(slow.dropped && queued.dropped); /* run or not, neither was taken back */
}

int main(void) {
    RUN(test_bg_items_come_back_in_order);
    RUN(test_bg_destroy_drops_what_was_not_taken);
    return check_report();
}
