/*  test_sched - the coordinator's scheduling rules (coordinator/sched.h) on tables of tasks,
 *  slices and peers: no sockets, no job */
#include "coordinator/sched.h"
#include "tests/check.h" /* defines: CHECK, RUN, check_report */

#include <stdio.h>

enum { N_PEERS = 4 };

/* Peers: 0..3; rate r (weights per second, 0 = unmeasured), idle or running task t. */
static struct lmp_sched_peer worker(double rate, bool idle, int task, bool calibrating) {
    return (struct lmp_sched_peer){.connected   = true,
                                   .worker      = true,
                                   .idle        = idle,
                                   .calibrating = calibrating,
                                   .task        = task,
                                   .busy_s      = rate > 0 ? 1.0 : 0.0,
                                   .params_done = rate};
}
static const struct lmp_sched_peer none = {.task = -1};

static struct lmp_sched_task ready_task(double size) {
    return (struct lmp_sched_task){.ready = true, .has_h = true, .size = size, .n_out = 64};
}

/* ---- lmp_sched_pick_task -------------------------------------------------------------- */

struct pick_task_case {
    const char           *name;
    struct lmp_sched_task tasks[4];
    int                   n_tasks;
    struct lmp_sched_peer peers[N_PEERS];
    int                   pi, want;
};

static void test_pick_task_table(void) {
    const struct lmp_sched_peer idle0   = worker(0, true, -1, false);
    const struct pick_task_case cases[] = {
        {"nothing ready", {{.size = 9}}, 1, {idle0, none, none, none}, 0, -1},
        {"biggest first",
         {ready_task(4), ready_task(9), ready_task(6)},
         3,
         {idle0, none, none, none},
         0,
         1},
        {"first of equal sizes",
         {ready_task(5), ready_task(5)},
         2,
         {idle0, none, none, none},
         0,
         0},
        {"unmeasured worker takes the biggest",
         {ready_task(100), ready_task(10)},
         2,
         {idle0, worker(1000, false, -1, false), none, none},
         0,
         0},
        /* slow worker (rate 1): the 3x faster worker 1, free now, would finish the only big
         * task sooner (100/3 < 100/1), so worker 0 takes the next size (two of them) */
        {"leaves the big one to a faster worker",
         {ready_task(100), ready_task(10), ready_task(10)},
         3,
         {worker(1, true, -1, false), worker(3, false, -1, false), none, none},
         0,
         1},
        /* two big tasks, one faster worker: one of them is still mine */
        {"more big tasks than faster workers",
         {ready_task(100), ready_task(100), ready_task(10)},
         3,
         {worker(1, true, -1, false), worker(3, false, -1, false), none, none},
         0,
         0},
        /* faster by only 10%: not "measurably faster" */
        {"faster by under 20% does not count",
         {ready_task(100), ready_task(10)},
         2,
         {worker(1, true, -1, false), worker(1.1, false, -1, false), none, none},
         0,
         0},
        /* the faster worker is busy with task 2 (size 1000 at rate 3, none done): free in
         * 333 s + 33 s > 100 s on mine */
        {"a faster worker busy for long does not count",
         {ready_task(100), ready_task(10), {.size = 1000, .n_out = 64}},
         3,
         {worker(1, true, -1, false), worker(3, false, 2, false), none, none},
         0,
         0},
        /* ... unless that task is nearly done (progress 330 of 333 s) */
        {"a faster worker about to be free counts",
         {ready_task(100),
          ready_task(10),
          {.size = 1000, .n_out = 64, .progress_s = 330},
          ready_task(10)},
         4,
         {worker(1, true, -1, false), worker(3, false, 2, false), none, none},
         0,
         1},
        /* every size left to faster workers: none */
        {"all sizes left to a faster worker",
         {ready_task(100)},
         1,
         {worker(1, true, -1, false), worker(3, false, -1, false), none, none},
         0,
         -1},
        /* a disconnected fast peer does not count */
        {"a gone worker does not count",
         {ready_task(100), ready_task(10)},
         2,
         {worker(1, true, -1, false), {.busy_s = 1, .params_done = 3, .task = -1}, none, none},
         0,
         0},
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        const struct pick_task_case *t = &cases[k];
        const struct lmp_sched       s = {
                  .tasks = t->tasks, .n_tasks = t->n_tasks, .peers = t->peers, .n_peers = N_PEERS};
        const int got = lmp_sched_pick_task(&s, t->pi);
        if (got != t->want)
            fprintf(stderr, "  pick_task '%s': %d, want %d\n", t->name, got, t->want);
        CHECK(got == t->want);
    }
}

/* ---- lmp_sched_pick_slice ------------------------------------------------------------- */

struct pick_slice_case {
    const char            *name;
    struct lmp_sched_slice slices[4];
    int                    n_slices;
    struct lmp_sched_peer  peers[N_PEERS];
    int                    pi;
    int                    want[3]; /* passes 0, 1, 2 */
};

static void test_pick_slice_table(void) {
    const struct lmp_sched_peer  idle    = worker(0, true, -1, false);
    const struct lmp_sched_peer  busy    = worker(0, false, 5, false);
    const struct lmp_sched_peer  cal     = worker(0, false, -1, true);
    const struct pick_slice_case cases[] = {
        {"no slices", {{0}}, 0, {idle, none, none, none}, 0, {-1, -1, -1}},
        {"unheld slice of the earliest block",
         {{.next_b = 0, .ready = true, .owner = -1}, {.next_b = 0, .ready = true, .owner = -1}},
         2,
         {idle, none, none, none},
         0,
         {0, 0, -1}},
        {"its own slice before an unheld one",
         {{.next_b = 0, .ready = true, .owner = -1}, {.next_b = 0, .ready = true, .owner = 0}},
         2,
         {idle, none, none, none},
         0,
         {1, 1, -1}},
        /* pass 0 only takes the earliest block a slice owes, even if that slice is running */
        {"a later block waits in pass 0",
         {{.next_b = 1, .ready = false, .owner = 1}, {.next_b = 2, .ready = true, .owner = -1}},
         2,
         {idle, cal, none, none},
         0,
         {-1, 1, -1}},
        {"held by a busy worker: recomputed in pass 2 only",
         {{.next_b = 0, .ready = true, .owner = 1}},
         1,
         {idle, busy, none, none},
         0,
         {-1, -1, 0}},
        {"held by a calibrating worker: pass 2",
         {{.next_b = 3, .ready = true, .owner = 2}},
         1,
         {idle, none, cal, none},
         0,
         {-1, -1, 0}},
        {"held by an idle worker: left to it",
         {{.next_b = 0, .ready = true, .owner = 1}},
         1,
         {idle, idle, none, none},
         0,
         {-1, -1, -1}},
        {"held by a gone worker: anyone's",
         {{.next_b = 0, .ready = true, .owner = 3}},
         1,
         {idle, none, none, none},
         0,
         {0, 0, -1}},
        {"lowest block first",
         {{.next_b = 2, .ready = true, .owner = -1}, {.next_b = 1, .ready = true, .owner = -1}},
         2,
         {idle, none, none, none},
         0,
         {1, 1, -1}},
        {"none left",
         {{.next_b = -1, .ready = false, .owner = 0}},
         1,
         {idle, none, none, none},
         0,
         {-1, -1, -1}},
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        const struct pick_slice_case *t = &cases[k];
        const struct lmp_sched        s = {
                   .slices = t->slices, .n_slices = t->n_slices, .peers = t->peers, .n_peers = N_PEERS};
        for (int pass = 0; pass < 3; pass++) {
            const int got = lmp_sched_pick_slice(&s, t->pi, pass);
            if (got != t->want[pass])
                fprintf(stderr, "  pick_slice '%s' pass %d: %d, want %d\n", t->name, pass, got,
                        t->want[pass]);
            CHECK(got == t->want[pass]);
        }
    }
}

/* ---- lmp_sched_split and the shard weights -------------------------------------------- */

static void test_split(void) {
    struct lmp_sched_task       tasks[1] = {ready_task(100)};
    const struct lmp_sched_peer idle     = worker(0, true, -1, false),
                                busy     = worker(0, false, 7, false);
    struct lmp_sched_peer peers[N_PEERS] = {idle, idle, busy, idle};
    struct lmp_sched      s              = {.tasks      = tasks,
                                            .n_tasks    = 1,
                                            .peers      = peers,
                                            .n_peers    = N_PEERS,
                                            .aqlm       = true,
                                            .row_shards = 8};
    int                   pis[LMP_SCHED_MAX_SHARDS];
    CHECK(lmp_sched_split(&s, 1, 0, pis) == 3); /* 1, then the other idle ones: 0, 3 */
    CHECK(pis[0] == 1 && pis[1] == 0 && pis[2] == 3);
    s.row_shards = 2;
    CHECK(lmp_sched_split(&s, 3, 0, pis) == 2 && pis[0] == 3 && pis[1] == 0);
    s.row_shards = 0; /* not asked for */
    CHECK(lmp_sched_split(&s, 0, 0, pis) == 0);
    s.row_shards = 8, s.aqlm = false; /* RTN */
    CHECK(lmp_sched_split(&s, 0, 0, pis) == 0);
    s.aqlm = true, tasks[0].has_h = false;
    CHECK(lmp_sched_split(&s, 0, 0, pis) == 0);
    tasks[0].has_h = true, tasks[0].n_out = 1; /* one row: one shard */
    CHECK(lmp_sched_split(&s, 0, 0, pis) == 0);
    tasks[0].n_out = 64;
    peers[1] = busy, peers[3] = busy; /* no second idle worker, but live ones: wait */
    CHECK(lmp_sched_split(&s, 0, 0, pis) == -1);
    peers[1] = none, peers[2] = none, peers[3] = none; /* the only live worker: whole */
    CHECK(lmp_sched_split(&s, 0, 0, pis) == 0);
}

static void test_shard_weights(void) {
    double w[3];
    lmp_sched_shard_weights((const double[]){2, 0, 4}, 3, w); /* unmeasured = mean of measured */
    CHECK(w[0] == 2 && w[1] == 3 && w[2] == 4);
    lmp_sched_shard_weights((const double[]){0, 0}, 2, w); /* none measured: equal */
    CHECK(w[0] == 1 && w[1] == 1);
    const struct lmp_sched_peer p = worker(5, true, -1, false), q = worker(0, true, -1, false);
    CHECK(lmp_sched_rate(&p) == 5 && lmp_sched_rate(&q) == 0);
}

/* ---- lmp_sched_decide: the order of the rules ----------------------------------------- */

static void test_decide_order(void) {
    const struct lmp_sched_peer idle           = worker(0, true, -1, false);
    struct lmp_sched_task       tasks[2]       = {ready_task(50), ready_task(80)};
    struct lmp_sched_slice      slices[2]      = {{.next_b = 1, .ready = true, .owner = -1},
                                                  {.next_b = 2, .ready = true, .owner = -1}};
    struct lmp_sched_peer       peers[N_PEERS] = {idle, idle, none, none};
    struct lmp_sched            s              = {.tasks    = tasks,
                                                  .n_tasks  = 2,
                                                  .slices   = slices,
                                                  .n_slices = 2,
                                                  .peers    = peers,
                                                  .n_peers  = N_PEERS,
                                                  .aqlm     = true,
                                                  .ft_owner = -1};
    struct lmp_sched_pick       d;
    lmp_sched_decide(&s, 0, &d); /* a slice of the earliest block before any task */
    CHECK(d.kind == LMP_SCHED_SLICE && d.index == 0);
    slices[0].ready = false; /* block 1 running elsewhere: the biggest task */
    lmp_sched_decide(&s, 0, &d);
    CHECK(d.kind == LMP_SCHED_TASK && d.index == 1);
    s.row_shards = 4; /* as row shards over the idle workers */
    lmp_sched_decide(&s, 1, &d);
    CHECK(d.kind == LMP_SCHED_ROWS && d.index == 1 && d.n == 2 && d.peers[0] == 1 &&
          d.peers[1] == 0);
    peers[1] = worker(0, false, 0, false); /* row shards wait for a second worker: later slice */
    lmp_sched_decide(&s, 0, &d);
    CHECK(d.kind == LMP_SCHED_SLICE && d.index == 1);
    slices[1].ready = false; /* ... or nothing */
    lmp_sched_decide(&s, 0, &d);
    CHECK(d.kind == LMP_SCHED_NONE);
    s.ft_waiting = true; /* a waiting tuning comes first */
    lmp_sched_decide(&s, 0, &d);
    CHECK(d.kind == LMP_SCHED_FINETUNE);
    s.ft_owner = 3, peers[3] = idle; /* ... but goes to its idle activations' holder, */
    lmp_sched_decide(&s, 0, &d);     /* and worker 0 goes on (row shards with the idle 3) */
    CHECK(d.kind == LMP_SCHED_ROWS && d.n == 2 && d.peers[1] == 3);
    lmp_sched_decide(&s, 3, &d);
    CHECK(d.kind == LMP_SCHED_FINETUNE);
    peers[3] = worker(0, false, 1, false); /* a busy holder: anyone */
    lmp_sched_decide(&s, 0, &d);
    CHECK(d.kind == LMP_SCHED_FINETUNE);
}

int main(void) {
    RUN(test_pick_task_table);
    RUN(test_pick_slice_table);
    RUN(test_split);
    RUN(test_shard_weights);
    RUN(test_decide_order);
    return check_report();
}
