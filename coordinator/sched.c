/*  sched - see sched.h */
#include "coordinator/sched.h"

#include <assert.h>

double lmp_sched_rate(const struct lmp_sched_peer *p) {
    return p->busy_s > 0 && p->params_done > 0 ? p->params_done / p->busy_s : 0.0;
}

int lmp_sched_pick_task(const struct lmp_sched *s, int pi) {
    assert(s && pi >= 0 && pi < s->n_peers);
    const struct lmp_sched_task *T  = s->tasks;
    const double                 rp = lmp_sched_rate(&s->peers[pi]);
    double last = -1.0; /* size of the last candidate tried: sizes strictly decreasing */
    for (;;) {
        int best = -1;
        for (int64_t i = 0; i < s->n_tasks; i++)
            if (T[i].ready && (last < 0 || T[i].size < last) &&
                (best < 0 || T[i].size > T[best].size))
                best = (int)i;
        if (best < 0 || rp <= 0) return best;
        const double sz = T[best].size, mine = sz / rp;
        int          n_same = 0, n_faster = 0; /* ready tasks of this size; workers that beat me */
        for (int64_t i = 0; i < s->n_tasks; i++) n_same += T[i].ready && T[i].size == sz;
        for (int q = 0; q < s->n_peers; q++) {
            const struct lmp_sched_peer *o  = &s->peers[q];
            const double                 rq = lmp_sched_rate(o);
            if (q == pi || !o->connected || !o->worker || rq <= rp * 1.2) continue;
            double free_in = 0; /* seconds until o is free */
            if (o->task >= 0 && o->task < s->n_tasks)
                free_in = T[o->task].size / rq - T[o->task].progress_s;
            n_faster += (free_in > 0 ? free_in : 0) + sz / rq < mine;
        }
        if (n_same > n_faster) return best;
        last = sz;
    }
}

int lmp_sched_pick_slice(const struct lmp_sched *s, int pi, int pass) {
    assert(s && pi >= 0 && pi < s->n_peers);
    const struct lmp_sched_slice *S    = s->slices;
    int                           best = -1;
    int32_t                       lo   = -1; /* earliest block a slice still owes */
    for (int64_t i = 0; i < s->n_slices; i++)
        if (S[i].next_b >= 0 && (lo < 0 || S[i].next_b < lo)) lo = S[i].next_b;
    for (int64_t i = 0; i < s->n_slices; i++) {
        const struct lmp_sched_slice *sl = &S[i];
        if (!sl->ready || (pass == 0 && sl->next_b != lo)) continue;
        const int  o    = sl->owner;
        const bool gone = o < 0 || !s->peers[o].connected;
        const bool busy_other =
            !gone && o != pi && (s->peers[o].task >= 0 || s->peers[o].calibrating);
        if (pass < 2 ? (o == pi || gone) : busy_other)
            if (best < 0 || sl->next_b < S[best].next_b ||
                (sl->next_b == S[best].next_b && o == pi))
                best = (int)i;
    }
    return best;
}

int lmp_sched_split(const struct lmp_sched *s, int pi, int ti, int *pis) {
    assert(s && pis && ti >= 0 && ti < s->n_tasks);
    int want = s->row_shards < LMP_SCHED_MAX_SHARDS ? s->row_shards : LMP_SCHED_MAX_SHARDS;
    if (want > s->tasks[ti].n_out) want = (int)s->tasks[ti].n_out;
    if (!s->aqlm || want < 2 || !s->tasks[ti].has_h) return 0;
    int n = 0, n_live = 0;
    pis[n++] = pi;
    for (int q = 0; q < s->n_peers; q++) {
        const struct lmp_sched_peer *o = &s->peers[q];
        n_live += o->connected && o->worker;
        if (q != pi && n < want && o->idle) pis[n++] = q;
    }
    if (n < 2) return n_live < 2 ? 0 : -1;
    return n;
}

void lmp_sched_shard_weights(const double *rate, int n, double *weight) {
    assert(rate && weight && n > 0);
    double known   = 0.0;
    int    n_known = 0;
    for (int k = 0; k < n; k++)
        if ((weight[k] = rate[k]) > 0) known += weight[k], n_known++;
    for (int k = 0; k < n; k++)
        if (weight[k] <= 0) weight[k] = n_known ? known / n_known : 1.0;
}

void lmp_sched_decide(const struct lmp_sched *s, int pi, struct lmp_sched_pick *out) {
    assert(s && out && pi >= 0 && pi < s->n_peers);
    out->kind = LMP_SCHED_NONE, out->index = -1, out->n = 0;
    if (s->ft_waiting) { /* a block waits for its tuning: on its activations' holder if free */
        const int o = s->ft_owner;
        if (o < 0 || o == pi || !s->peers[o].idle) {
            out->kind = LMP_SCHED_FINETUNE;
            return;
        }
    }
    int si = lmp_sched_pick_slice(s, pi, 0), ti = -1, split = 0;
    if (si < 0 && (ti = lmp_sched_pick_task(s, pi)) >= 0 &&
        (split = lmp_sched_split(s, pi, ti, out->peers)) < 0)
        ti = -1; /* row shards wait for a second free worker; calibrate meanwhile */
    if (si < 0 && ti < 0 && (si = lmp_sched_pick_slice(s, pi, 1)) < 0)
        si = lmp_sched_pick_slice(s, pi, 2);
    if (si >= 0) {
        out->kind = LMP_SCHED_SLICE, out->index = si;
    } else if (ti >= 0) {
        out->kind = split > 0 ? LMP_SCHED_ROWS : LMP_SCHED_TASK, out->index = ti;
        out->n = split > 0 ? split : 0;
    }
}
