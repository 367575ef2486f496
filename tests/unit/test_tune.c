/*  test_tune - the PV-Tuning loop (worker/tune.h) and its checkpoints (artifact/checkpoint.h)
 *  on a tiny random model
 *
 *  The teacher is a random 2-block model (tests/tiny_model.h); the student the same model
 *  with every linear quantized to 2 bits (M 2, K 16, g 4). Checked:
 *  - steps lower the KL on held-out windows (measured before and after, no update);
 *  - resume is exact: 3 steps, the state written to a checkpoint file, read back into a
 *    fresh student, 3 more steps, gives the same codes, codebooks, scales and norms, bit
 *    for bit, as 6 uninterrupted steps (data order, Adam moments and step counts, the
 *    straight-through buffers all restored);
 *  - the checkpoint reader refuses a missing file (ENOENT), another key (EMISMATCH), a
 *    flipped byte in an array and a truncated file (EFORMAT), and wrong expectations
 *    (another length: EFORMAT);
 *  - a cancelled step returns LMP_ECANCEL and leaves the student untouched;
 *  - data parallelism is exact: two ranks (threads summing through shared memory, as
 *    MPI_Allreduce would) taking 4 steps give the same bits as one process; with owner-only
 *    P/V each rank steps only its own linears, receiving only their gradients (a reduce to
 *    the owner that scribbles over the others' copy), its state cannot be listed until a
 *    step ends gathered (rank 0 asking), and then every array of either rank's state is the
 *    one process's;
 *  - so are pipeline stages (activations and gradients through shared-memory mailboxes):
 *    2 stages, 2 stages x 2 replicas (also with chains of unequal micro-batch counts), and
 *    sparse tuning where stage 0 runs no backward or only part of one, every message
 *    received; the same with collective transfers (the sums alone, as through the
 *    coordinator, P/V replicated on every rank); a stop at stage 0 stops both stages, and
 *    after steps under owner-only P/V leaves every rank the whole state;
 *  - bad inputs are refused: a token outside the vocabulary, a linear that is not the
 *    student's;
 *  - a Qwen3-like and a Gemma-3-like student (tests/tiny_arch.h): steps lower the held-out
 *    KL, the q/k and post norms are trained (and frozen without train_norms), resume from a
 *    checkpoint is exact with them in the state, and so are 2 pipeline stages (with and
 *    without 2 replicas).
 */
#include "worker/tune.h"
#include "artifact/checkpoint.h" /* defines: lmp_ckpt_write, lmp_ckpt_read */
#include "tests/check.h"         /* defines: CHECK, RUN, check_report */
#include "tests/tiny_model.h"    /* defines: build, struct spec, random_tokens, tiny_aq_encode */
#include "tests/tiny_arch.h"     /* defines: build_arch, ARCH_QWEN3, ARCH_GEMMA3 */

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { T = 8, N_WIN = 12, N_VAL = 3, NL = LAYERS * LMP_LIN_COUNT, M = 2, K = 16, G = 4 };

struct student {
    struct lmp_model         *m;
    struct lmp_model_weights *teacher, *w;
    struct lmp_tune_linear    lin[NL];
    int32_t                   tokens[(N_WIN + N_VAL) * T];
    struct lmp_tune          *tune;
    float                    *extra; /* build_arch's tensors, or NULL */
};

/* Linears [g_lin0, NL) are tuned (the rest frozen: sparse tuning from block g_lin0 / 7). */
static int g_lin0;
/* 0: the llama model; ARCH_QWEN3 or ARCH_GEMMA3: build_arch's */
static int g_arch;

static void student_init(struct student *s, const struct lmp_tune_opts *o) {
    memset(s, 0, sizeof(*s));
    const struct spec sp  = {LMP_ROPE_HALF, true, false, 4, 2};
    struct lmp_err    err = {0};
    s->m                  = g_arch ? build_arch(g_arch, 7, &s->extra) : build(&sp, 7);
    CHECK(lmp_model_weights_load(s->m, &s->teacher, &err) == LMP_OK);
    CHECK(lmp_model_weights_load(s->m, &s->w, &err) == LMP_OK);
    random_tokens(s->tokens, (N_WIN + N_VAL) * T, VOCAB, 8);
    for (int i = 0; i < NL; i++) {
        const struct lmp_linear *l = &s->m->blocks[i / LMP_LIN_COUNT].lin[i % LMP_LIN_COUNT];
        struct lmp_pv_linear    *q = &s->lin[i].pv;
        s->lin[i].block            = i / LMP_LIN_COUNT;
        s->lin[i].kind             = (enum lmp_lin)(i % LMP_LIN_COUNT);
        q->shape =
            (struct lmp_aq_shape){.n_out = l->n_out, .n_in = l->n_in, .M = M, .K = K, .g = G};
        q->codes = calloc((size_t)(l->n_out * (l->n_in / G) * M), sizeof(uint16_t));
        q->cb    = calloc((size_t)(M * K * G), sizeof(float));
        q->scale = calloc((size_t)l->n_out, sizeof(float));
        q->w     = s->w->w[i];
        tiny_aq_encode(s->teacher->w[i], l->n_out, l->n_in, M, K, G, q->codes, q->cb, q->scale,
                       100 + i);
    }
    enum lmp_status st = lmp_tune_new(s->w, s->teacher, s->lin + g_lin0, NL - g_lin0, s->tokens,
                                      N_WIN, T, o, &s->tune, &err);
    if (st != LMP_OK) fprintf(stderr, "tune_new: %s\n", err.msg);
    CHECK(st == LMP_OK);
}

static void student_free(struct student *s) {
    lmp_tune_destroy(&s->tune);
    for (int i = 0; i < NL; i++) {
        free(s->lin[i].pv.codes);
        free(s->lin[i].pv.cb);
        free(s->lin[i].pv.scale);
    }
    lmp_model_weights_free(&s->w);
    lmp_model_weights_free(&s->teacher);
    lmp_model_close(&s->m);
    free(s->extra);
}

static struct lmp_tune_opts opts(void) {
    struct lmp_tune_opts o;
    lmp_tune_opts_init(&o);
    o.batch_seqs   = 4;
    o.micro_seqs   = 2;
    o.pv.lr        = 2e-3f;
    o.pv.code_lr   = 1e-3f;
    o.pv.code_frac = 0.05;
    o.seed         = 3;
    return o;
}

static void steps(struct student *s, int n) {
    struct lmp_err err = {0};
    for (int i = 0; i < n; i++) CHECK(lmp_tune_step(s->tune, NULL, &err) == LMP_OK);
}

static bool same_student(const struct student *a, const struct student *b) {
    bool same = true;
    for (int i = 0; i < NL; i++) {
        const struct lmp_pv_linear *x = &a->lin[i].pv, *y = &b->lin[i].pv;
        const int64_t               nc = x->shape.n_out * (x->shape.n_in / G) * M;
        same                           = same && memcmp(x->codes, y->codes, (size_t)nc * 2) == 0 &&
               memcmp(x->cb, y->cb, sizeof(float) * M * K * G) == 0 &&
               memcmp(x->scale, y->scale, sizeof(float) * (size_t)x->shape.n_out) == 0 &&
               memcmp(x->w, y->w, sizeof(float) * (size_t)(x->shape.n_out * x->shape.n_in)) == 0;
    }
    for (int l = 0; l < LAYERS; l++) {
        same = same && memcmp(a->w->attn_norm[l], b->w->attn_norm[l], 4 * DIM) == 0 &&
               memcmp(a->w->ffn_norm[l], b->w->ffn_norm[l], 4 * DIM) == 0;
        if (a->w->q_norm[l])
            same = same && memcmp(a->w->q_norm[l], b->w->q_norm[l], 4 * HD) == 0 &&
                   memcmp(a->w->k_norm[l], b->w->k_norm[l], 4 * HD) == 0;
        if (a->w->post_attn_norm[l])
            same = same && memcmp(a->w->post_attn_norm[l], b->w->post_attn_norm[l], 4 * DIM) == 0 &&
                   memcmp(a->w->post_ffn_norm[l], b->w->post_ffn_norm[l], 4 * DIM) == 0;
    }
    return same && memcmp(a->w->out_norm, b->w->out_norm, 4 * DIM) == 0;
}

static const int32_t *val_tokens(const struct student *s) {
    return s->tokens + N_WIN * T;
}

static void test_steps_lower_kl(void) {
    struct lmp_tune_opts o = opts();
    struct student       s;
    student_init(&s, &o);
    struct lmp_err err = {0};
    double         kl0, ag0, kl1, ag1;
    CHECK(lmp_tune_measure(s.tune, val_tokens(&s), N_VAL, &kl0, &ag0, &err) == LMP_OK);
    struct lmp_tune_step_stats st      = {0};
    int64_t                    changed = 0;
    for (int i = 0; i < 30; i++) {
        CHECK(lmp_tune_step(s.tune, &st, &err) == LMP_OK);
        changed += st.codes_changed;
    }
    CHECK(lmp_tune_measure(s.tune, val_tokens(&s), N_VAL, &kl1, &ag1, &err) == LMP_OK);
    printf("  held-out KL %.4f -> %.4f, agreement %.3f -> %.3f, codes changed %lld\n", kl0, kl1,
           ag0, ag1, (long long)changed);
    CHECK(st.step == 30 && lmp_tune_steps_done(s.tune) == 30);
    CHECK(st.rows == 4 * T && st.kl > 0);
    CHECK(kl1 < 0.8 * kl0);
    CHECK(changed > 0);
    student_free(&s);
}

/* The state of s->tune as checkpoint arrays (a listing: pointers into the live state). */
static struct lmp_ckpt_array *listing(struct student *s, struct lmp_pv_array **pa, int *n) {
    CHECK(lmp_tune_state(s->tune, pa, n) == LMP_OK);
    struct lmp_ckpt_array *ck = calloc((size_t)*n, sizeof(*ck));
    for (int i = 0; i < *n; i++) {
        const struct lmp_pv_array *a = &(*pa)[i];
        ck[i].name                   = a->name;
        ck[i].type                   = a->f32 ? LMP_CKPT_F32 : a->u16 ? LMP_CKPT_U16 : LMP_CKPT_I64;
        ck[i].data = a->f32 ? (void *)a->f32 : a->u16 ? (void *)a->u16 : (void *)a->i64;
        ck[i].n    = a->n;
    }
    return ck;
}

static void test_resume_exact(void) {
    struct lmp_tune_opts o = opts();
    struct student       a, b, c;
    struct lmp_err       err = {0};
    char                 path[64];
    snprintf(path, sizeof(path), "test_tune_%d.ckpt", (int)getpid());
    student_init(&a, &o);
    steps(&a, 6);
    student_init(&b, &o);
    steps(&b, 3);
    struct lmp_pv_array   *pa = NULL;
    int                    n  = 0;
    struct lmp_ckpt_array *ck = listing(&b, &pa, &n);
    CHECK(n > 4 * NL);
    CHECK(lmp_ckpt_write(path, 42, ck, n, &err) == LMP_OK);
    free(ck);
    free(pa);
    CHECK(!same_student(&a, &b));

    student_init(&c, &o);
    ck = listing(&c, &pa, &n);
    CHECK(lmp_ckpt_read(path, 42, ck, n, &err) == LMP_OK);
    lmp_tune_state_loaded(c.tune);
    CHECK(lmp_tune_steps_done(c.tune) == 3);
    CHECK(same_student(&b, &c));
    steps(&c, 3);
    CHECK(same_student(&a, &c));

    /* refusals */
    err = (struct lmp_err){0};
    CHECK(lmp_ckpt_read(path, 43, ck, n, &err) == LMP_EMISMATCH);
    CHECK(strstr(err.msg, path) != NULL);
    ck[0].n--;
    CHECK(lmp_ckpt_read(path, 42, ck, n, &err) == LMP_EFORMAT);
    ck[0].n++;
    CHECK(lmp_ckpt_read(path, 42, ck, n - 1, &err) == LMP_EFORMAT); /* one array too many */
    char missing[80];
    snprintf(missing, sizeof(missing), "%s.none", path);
    CHECK(lmp_ckpt_read(missing, 42, ck, n, &err) == LMP_ENOENT);
    /* a flipped byte inside the largest array's data: its checksum fails */
    FILE *f = fopen(path, "r+b");
    CHECK(f != NULL);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    int  bad  = 0;
    for (long off = size / 2; off < size && !bad; off += 97) { /* data lies in the middle */
        fseek(f, off, SEEK_SET);
        int ch = fgetc(f);
        fseek(f, off, SEEK_SET);
        fputc(ch ^ 0x40, f);
        fflush(f);
        enum lmp_status st = lmp_ckpt_read(path, 42, ck, n, &err);
        fseek(f, off, SEEK_SET);
        fputc(ch, f);
        fflush(f);
        if (st != LMP_OK) {
            CHECK(st == LMP_EFORMAT);
            bad = 1;
        }
    }
    CHECK(bad);
    fclose(f);
    CHECK(lmp_ckpt_read(path, 42, ck, n, &err) == LMP_OK); /* restored */
    CHECK(truncate(path, size / 2) == 0);
    CHECK(lmp_ckpt_read(path, 42, ck, n, &err) == LMP_EFORMAT);
    free(ck);
    free(pa);
    unlink(path);
    student_free(&a);
    student_free(&b);
    student_free(&c);
}

static void test_cancel_and_refusals(void) {
    struct lmp_tune_opts o    = opts();
    atomic_int           stop = 1;
    o.cancel                  = &stop;
    struct student a, b;
    struct lmp_err err = {0};
    student_init(&a, &o);
    student_init(&b, &o);
    CHECK(lmp_tune_step(a.tune, NULL, &err) == LMP_ECANCEL);
    CHECK(lmp_tune_steps_done(a.tune) == 0);
    CHECK(same_student(&a, &b));
    struct lmp_tune *t = NULL;
    err                = (struct lmp_err){0};
    b.tokens[5]        = VOCAB; /* outside the vocabulary */
    CHECK(lmp_tune_new(b.w, b.teacher, b.lin, NL, b.tokens, N_WIN, T, &o, &t, &err) == LMP_EINVAL);
    CHECK(t == NULL && strstr(err.msg, "vocabulary") != NULL);
    b.tokens[5]              = 0;
    struct lmp_tune_linear l = b.lin[0];
    l.pv.w                   = b.w->w[1]; /* not linear 0's buffer */
    CHECK(lmp_tune_new(b.w, b.teacher, &l, 1, b.tokens, N_WIN, T, &o, &t, &err) == LMP_EINVAL);
    CHECK(lmp_tune_new(b.w, b.teacher, b.lin, NL, b.tokens, N_WIN, T + 100, &o, &t, &err) ==
          LMP_EINVAL);
    student_free(&a);
    student_free(&b);
}

/* ---- data parallelism and pipeline stages: ranks on threads, sums and messages through
 * shared memory (as MPI_Allreduce and MPI_Send / MPI_Recv would) ------------------------ */

enum { MAX_RANKS = 4 };

struct msg {
    struct msg *next;
    size_t      n;
    char        data[];
};

struct fake_world {
    int               n;
    pthread_barrier_t bar;
    void             *slot[MAX_RANKS];
    pthread_mutex_t   mu;
    pthread_cond_t    cv;
    struct msg       *box[MAX_RANKS][MAX_RANKS]; /* [from][to], FIFO */
    int               stages;                    /* world rank = replica * stages + stage */
};

static void world_init(struct fake_world *w, int n, int stages) {
    memset(w, 0, sizeof(*w));
    w->n      = n;
    w->stages = stages;
    pthread_barrier_init(&w->bar, NULL, (unsigned)n);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
}

static bool world_destroy(struct fake_world *w) { /* true: every message was received */
    bool empty = true;
    for (int a = 0; a < MAX_RANKS; a++)
        for (int b = 0; b < MAX_RANKS; b++) {
            empty = empty && w->box[a][b] == NULL;
            while (w->box[a][b]) {
                struct msg *m = w->box[a][b];
                w->box[a][b]  = m->next;
                free(m);
            }
        }
    pthread_barrier_destroy(&w->bar);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    return empty;
}

static enum lmp_status fake_sum(struct fake_world *w, int rank, void *x, int64_t n, bool i64) {
    w->slot[rank] = x;
    pthread_barrier_wait(&w->bar);
    /* each rank sums (in rank order) into a private copy, then all write back after
     * everyone has read */
    void *tmp = calloc((size_t)n, 8);
    for (int k = 0; k < w->n; k++)
        for (int64_t i = 0; i < n; i++) {
            if (i64)
                ((int64_t *)tmp)[i] += ((int64_t *)w->slot[k])[i];
            else
                ((double *)tmp)[i] += ((double *)w->slot[k])[i];
        }
    pthread_barrier_wait(&w->bar);
    memcpy(x, tmp, (size_t)n * 8);
    free(tmp);
    pthread_barrier_wait(&w->bar);
    return LMP_OK;
}

struct rank_ctx {
    struct fake_world   *w;
    int                  rank;
    struct lmp_tune_comm comm;
    struct lmp_tune_pipe pipe;
    atomic_int           stop;
    enum lmp_status      step_st;
    struct student       s;
    int                  n_steps;
    double               kl, agree;
    bool                 owner;    /* owner-only P/V */
    bool                 gathered; /* the last step ended gathered, the state behind before
                                      it exactly when owner */
};
static enum lmp_status sum_i64(void *ctx, int64_t *x, int64_t n) {
    struct rank_ctx *r = ctx;
    return fake_sum(r->w, r->rank, x, n, true);
}
/* MPI_Reduce's contract: the sum on root; the others' buffer is scribbled over, so that a
 * rank reading a sum it was not sent fails the comparisons. */
static enum lmp_status reduce_i64(void *ctx, int root, int64_t *x, int64_t n) {
    struct rank_ctx *r  = ctx;
    enum lmp_status  st = fake_sum(r->w, r->rank, x, n, true);
    if (r->rank != root) memset(x, 0x5A, (size_t)n * sizeof(*x));
    return st;
}
static enum lmp_status sum_f64(void *ctx, double *x, int64_t n) {
    struct rank_ctx *r = ctx;
    return fake_sum(r->w, r->rank, x, n, false);
}

static enum lmp_status pipe_send(void *ctx, int to, const void *buf, size_t n) {
    struct rank_ctx   *r = ctx;
    struct fake_world *w = r->w;
    struct msg        *m = malloc(sizeof(*m) + n);
    m->next              = NULL;
    m->n                 = n;
    memcpy(m->data, buf, n);
    const int dst = r->pipe.replica * w->stages + to;
    pthread_mutex_lock(&w->mu);
    struct msg **tail = &w->box[r->rank][dst];
    while (*tail) tail = &(*tail)->next;
    *tail = m;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    return LMP_OK;
}
static enum lmp_status pipe_recv(void *ctx, int from, void *buf, size_t n) {
    struct rank_ctx   *r   = ctx;
    struct fake_world *w   = r->w;
    const int          src = r->pipe.replica * w->stages + from;
    pthread_mutex_lock(&w->mu);
    while (w->box[src][r->rank] == NULL) pthread_cond_wait(&w->cv, &w->mu);
    struct msg *m        = w->box[src][r->rank];
    w->box[src][r->rank] = m->next;
    pthread_mutex_unlock(&w->mu);
    const bool ok = m->n == n;
    if (ok) memcpy(buf, m->data, n);
    free(m);
    return ok ? LMP_OK : LMP_EFORMAT;
}

static void *rank_main(void *arg) {
    struct rank_ctx *r   = arg;
    struct lmp_err   err = {0};
    steps(&r->s, r->n_steps - 1);
    /* owner-only P/V: each rank's copy of the other owners' U and moments is behind, so the
     * state cannot be listed until a step that rank 0 asked to end gathered */
    struct lmp_pv_array *pa     = NULL;
    int                  n      = 0;
    const bool           behind = lmp_tune_state(r->s.tune, &pa, &n) == LMP_EINVAL;
    free(pa);
    if (r->rank == 0) lmp_tune_want_checkpoint(r->s.tune);
    struct lmp_tune_step_stats st = {0};
    CHECK(lmp_tune_step(r->s.tune, &st, &err) == LMP_OK);
    r->gathered = st.gathered && behind == r->owner;
    CHECK(lmp_tune_measure(r->s.tune, val_tokens(&r->s), N_VAL, &r->kl, &r->agree, &err) == LMP_OK);
    return NULL;
}

/* Every array of the tuning states of a and b (codes, codebooks, scales, U, every Adam
 * moment and step count, the norms and the step) holds the same bits. */
static bool same_state(struct student *a, struct student *b) {
    struct lmp_pv_array *x = NULL, *y = NULL;
    int                  nx = 0, ny = 0;
    bool                 ok = lmp_tune_state(a->tune, &x, &nx) == LMP_OK &&
              lmp_tune_state(b->tune, &y, &ny) == LMP_OK && nx == ny;
    for (int i = 0; ok && i < nx; i++) {
        const size_t sz = x[i].f32 ? 4 : x[i].u16 ? 2 : 8;
        const void  *p  = x[i].f32   ? (void *)x[i].f32
                          : x[i].u16 ? (void *)x[i].u16
                                     : (void *)x[i].i64;
        const void  *q  = y[i].f32   ? (void *)y[i].f32
                          : y[i].u16 ? (void *)y[i].u16
                                     : (void *)y[i].i64;
        ok              = strcmp(x[i].name, y[i].name) == 0 && x[i].n == y[i].n &&
             memcmp(p, q, (size_t)x[i].n * sz) == 0;
        if (!ok) printf("  state array %s differs\n", x[i].name);
    }
    free(x);
    free(y);
    return ok;
}

/* Two ranks, owner-only P/V with an exchange buffer of xch_words words (0: the default, one
 * piece per exchange here; 3: 24-byte pieces, every region split and several in a piece). */
static void two_ranks_case(int64_t xch_words) {
    struct lmp_tune_opts o = opts();
    o.micro_seqs           = 1; /* 4 micro-batches a step: 2 per rank */
    struct student one;
    student_init(&one, &o);
    steps(&one, 4);
    double         kl1, ag1;
    struct lmp_err err = {0};
    CHECK(lmp_tune_measure(one.tune, val_tokens(&one), N_VAL, &kl1, &ag1, &err) == LMP_OK);

    struct fake_world w;
    world_init(&w, 2, 1);
    struct rank_ctx r[2];
    pthread_t       th[2];
    for (int k = 0; k < 2; k++) {
        r[k]      = (struct rank_ctx){.w = &w, .rank = k, .n_steps = 4, .owner = true};
        r[k].comm = (struct lmp_tune_comm){k, 2, &r[k], sum_i64, sum_f64, reduce_i64};
        struct lmp_tune_opts ok = o;
        ok.comm                 = &r[k].comm;
        ok.owner_pv             = true;
        ok.xch_words            = xch_words;
        student_init(&r[k].s, &ok);
    }
    for (int k = 0; k < 2; k++) pthread_create(&th[k], NULL, rank_main, &r[k]);
    for (int k = 0; k < 2; k++) pthread_join(th[k], NULL);
    CHECK(same_student(&one, &r[0].s));
    CHECK(same_student(&one, &r[1].s));
    CHECK(fabs(r[0].kl - kl1) <= 1e-12 * kl1 && r[0].kl == r[1].kl);
    /* owner-only P/V: gathered, either rank's state is the one process's (so a checkpoint
     * written by it resumes exactly, test_resume_exact) */
    CHECK(r[0].gathered && r[1].gathered);
    CHECK(same_state(&one, &r[0].s));
    CHECK(same_state(&one, &r[1].s));
    world_destroy(&w);
    for (int k = 0; k < 2; k++) student_free(&r[k].s);
    student_free(&one);
}

static void test_two_ranks_equal_one_process(void) {
    two_ranks_case(0);
    two_ranks_case(3);
}

/* S stages x R replicas on S R threads, 4 steps: the same bits as one process. */
/* Rank k of S stages x (n / S) replicas on world w, its student tuned with options o
 * (comm and pipe its own; collective transfers with coll); stop0: stage 0 asks to stop. */
static void rank_init(struct rank_ctx *r, struct fake_world *w, int k, int n, int S, bool coll,
                      const struct lmp_tune_opts *o, bool stop0) {
    *r      = (struct rank_ctx){.w = w, .rank = k, .n_steps = 4};
    r->comm = (struct lmp_tune_comm){k, n, r, sum_i64, sum_f64, coll ? NULL : reduce_i64};
    r->pipe = (struct lmp_tune_pipe){.stage      = k % S,
                                     .n_stages   = S,
                                     .replica    = k / S,
                                     .n_replicas = n / S,
                                     .ctx        = r,
                                     .send       = coll ? NULL : pipe_send,
                                     .recv       = coll ? NULL : pipe_recv};
    atomic_init(&r->stop, stop0 && k % S == 0);
    struct lmp_tune_opts ok = *o;
    ok.comm                 = &r->comm;
    ok.pipe                 = &r->pipe;
    ok.owner_pv = !coll; /* collective transfers, as through a coordinator: replicated */
    r->owner    = !coll;
    ok.cancel   = &r->stop;
    student_init(&r->s, &ok);
}

static void pipeline_case(int S, int R, int lin0, bool coll, int batch) {
    g_lin0                 = lin0;
    struct lmp_tune_opts o = opts();
    o.micro_seqs           = 1; /* a micro-batch per window */
    o.batch_seqs           = batch;
    struct student one;
    student_init(&one, &o);
    steps(&one, 4);
    double         kl1, ag1;
    struct lmp_err err = {0};
    CHECK(lmp_tune_measure(one.tune, val_tokens(&one), N_VAL, &kl1, &ag1, &err) == LMP_OK);

    const int         n = S * R;
    struct fake_world w;
    world_init(&w, n, S);
    struct rank_ctx *r = calloc((size_t)n, sizeof(*r));
    pthread_t        th[MAX_RANKS];
    for (int k = 0; k < n; k++) rank_init(&r[k], &w, k, n, S, coll, &o, false);
    for (int k = 0; k < n; k++) pthread_create(&th[k], NULL, rank_main, &r[k]);
    for (int k = 0; k < n; k++) pthread_join(th[k], NULL);
    for (int k = 0; k < n; k++) {
        CHECK(same_student(&one, &r[k].s));
        CHECK(r[k].kl == r[0].kl && r[k].agree == r[0].agree);
        CHECK(r[k].gathered && same_state(&one, &r[k].s));
    }
    printf("  %d stages x %d replicas%s, batch %d (tuned from linear %d): held-out KL %.12f vs "
           "%.12f\n",
           S, R, coll ? " (collective)" : "", batch, lin0, r[0].kl, kl1);
    CHECK(fabs(r[0].kl - kl1) <= 1e-12 * kl1 && r[0].agree == ag1);
    CHECK(world_destroy(&w)); /* every activation and gradient sent was received */
    for (int k = 0; k < n; k++) student_free(&r[k].s);
    free(r);
    student_free(&one);
    g_lin0 = 0;
}

static void test_pipeline_equals_one_process(void) {
    for (int coll = 0; coll < 2; coll++) {
        pipeline_case(2, 1, 0, coll, 4);
        pipeline_case(2, 2, 0, coll, 4);
        pipeline_case(2, 2, 0, coll, 3);                 /* chains of 1 and 2 micro-batches */
        pipeline_case(2, 1, LMP_LIN_COUNT, coll, 4);     /* block 1 only: stage 0 no backward */
        pipeline_case(2, 1, LMP_LIN_COUNT - 1, coll, 4); /* from block 0's last linear */
    }
}

/* n_steps steps, then stage 0 asks to stop (the flag set by its own thread: the other
 * stage may already be in the next step) and the next step runs into it. */
static void *stop_main(void *arg) {
    struct rank_ctx *r   = arg;
    struct lmp_err   err = {0};
    steps(&r->s, r->n_steps);
    if (r->pipe.stage == 0) atomic_store(&r->stop, 1);
    r->step_st = lmp_tune_step(r->s.tune, NULL, &err);
    return NULL;
}

/* A stop seen by stage 0 stops every stage at the same micro-batch: ECANCEL everywhere, the
 * students as after the steps before, no message left unread; after steps (owner-only
 * P/V: the state behind) the stopped step ends gathered, every rank's state the one
 * process's, as the checkpoint written at a stop needs. */
static void pipeline_stop(bool coll, int n_before) {
    struct lmp_tune_opts o = opts();
    struct student       ref;
    student_init(&ref, &o);
    steps(&ref, n_before);
    struct fake_world w;
    world_init(&w, 2, 2);
    struct rank_ctx r[2];
    pthread_t       th[2];
    for (int k = 0; k < 2; k++) {
        rank_init(&r[k], &w, k, 2, 2, coll, &o, false);
        r[k].n_steps = n_before;
    }
    for (int k = 0; k < 2; k++) pthread_create(&th[k], NULL, stop_main, &r[k]);
    for (int k = 0; k < 2; k++) pthread_join(th[k], NULL);
    for (int k = 0; k < 2; k++) {
        CHECK(r[k].step_st == LMP_ECANCEL);
        CHECK(lmp_tune_steps_done(r[k].s.tune) == n_before);
        CHECK(same_student(&ref, &r[k].s));
        CHECK(same_state(&ref, &r[k].s));
    }
    CHECK(world_destroy(&w));
    for (int k = 0; k < 2; k++) student_free(&r[k].s);
    student_free(&ref);
}

static void test_pipeline_stop(void) {
    pipeline_stop(false, 0);
    pipeline_stop(true, 0);
    pipeline_stop(false, 2);
    pipeline_stop(true, 2);
    struct lmp_tune_opts o = opts();
    struct student       ref;
    student_init(&ref, &o);
    /* refused: a pipe that does not match the ranks */
    struct lmp_tune_comm c1  = {0, 3, NULL, sum_i64, sum_f64, NULL};
    struct lmp_tune_pipe p   = {0, 2, 0, 1, NULL, pipe_send, pipe_recv};
    struct lmp_tune     *t   = NULL;
    struct lmp_err       err = {0};
    struct lmp_tune_opts bad = o;
    bad.comm                 = &c1;
    bad.pipe                 = &p;
    CHECK(lmp_tune_new(ref.w, ref.teacher, ref.lin, NL, ref.tokens, N_WIN, T, &bad, &t, &err) ==
          LMP_EINVAL);
    CHECK(t == NULL && strstr(err.msg, "stages") != NULL);
    p.n_stages = 3; /* more stages than blocks */
    c1.size    = 3;
    CHECK(lmp_tune_new(ref.w, ref.teacher, ref.lin, NL, ref.tokens, N_WIN, T, &bad, &t, &err) ==
          LMP_EINVAL);
    p.n_stages = 2; /* collective transfers without a communicator */
    p.send = NULL, p.recv = NULL;
    bad.comm = NULL;
    CHECK(lmp_tune_new(ref.w, ref.teacher, ref.lin, NL, ref.tokens, N_WIN, T, &bad, &t, &err) ==
          LMP_EINVAL);
    student_free(&ref);
}

/* Do the student's q/k (and post) norms differ from the teacher's in every block? */
static bool extra_norms_moved(const struct student *s) {
    bool moved = true;
    for (int l = 0; l < LAYERS; l++) {
        moved = moved && memcmp(s->w->q_norm[l], s->teacher->q_norm[l], 4 * HD) != 0 &&
                memcmp(s->w->k_norm[l], s->teacher->k_norm[l], 4 * HD) != 0;
        if (s->w->post_attn_norm[l])
            moved = moved &&
                    memcmp(s->w->post_attn_norm[l], s->teacher->post_attn_norm[l], 4 * DIM) != 0 &&
                    memcmp(s->w->post_ffn_norm[l], s->teacher->post_ffn_norm[l], 4 * DIM) != 0;
    }
    return moved;
}

static void test_arch_students(void) {
    for (g_arch = ARCH_QWEN3; g_arch <= ARCH_GEMMA3; g_arch++) {
        const char          *name = g_arch == ARCH_GEMMA3 ? "gemma3" : "qwen3";
        struct lmp_tune_opts o    = opts();
        struct student       s;
        struct lmp_err       err = {0};
        student_init(&s, &o);
        double kl0, ag0, kl1, ag1;
        CHECK(lmp_tune_measure(s.tune, val_tokens(&s), N_VAL, &kl0, &ag0, &err) == LMP_OK);
        steps(&s, 20);
        CHECK(lmp_tune_measure(s.tune, val_tokens(&s), N_VAL, &kl1, &ag1, &err) == LMP_OK);
        printf("  %s: held-out KL %.4f -> %.4f, agreement %.3f -> %.3f\n", name, kl0, kl1, ag0,
               ag1);
        CHECK(kl1 < 0.8 * kl0);
        CHECK(extra_norms_moved(&s));
        student_free(&s);

        /* without train_norms every norm keeps the teacher's bits */
        o.train_norms = false;
        student_init(&s, &o);
        steps(&s, 2);
        for (int l = 0; l < LAYERS; l++) {
            CHECK(memcmp(s.w->q_norm[l], s.teacher->q_norm[l], 4 * HD) == 0);
            CHECK(!s.w->post_ffn_norm[l] ||
                  memcmp(s.w->post_ffn_norm[l], s.teacher->post_ffn_norm[l], 4 * DIM) == 0);
        }
        student_free(&s);

        /* resume: 2 steps, a checkpoint, 2 more in a fresh student == 4 uninterrupted */
        o = opts();
        struct student a, b, c;
        char           path[64];
        snprintf(path, sizeof(path), "test_tune_arch_%d.ckpt", (int)getpid());
        student_init(&a, &o);
        steps(&a, 4);
        student_init(&b, &o);
        steps(&b, 2);
        struct lmp_pv_array   *pa = NULL;
        int                    n  = 0;
        struct lmp_ckpt_array *ck = listing(&b, &pa, &n);
        CHECK(lmp_ckpt_write(path, 42, ck, n, &err) == LMP_OK);
        free(ck);
        free(pa);
        student_init(&c, &o);
        ck = listing(&c, &pa, &n);
        CHECK(lmp_ckpt_read(path, 42, ck, n, &err) == LMP_OK);
        lmp_tune_state_loaded(c.tune);
        CHECK(same_student(&b, &c));
        steps(&c, 2);
        CHECK(same_student(&a, &c) && extra_norms_moved(&c));
        free(ck);
        free(pa);
        unlink(path);
        student_free(&a);
        student_free(&b);
        student_free(&c);

        /* pipeline stages (the embedding scale on stage 0, a local block on each stage) and
         * replicas give the one process's bits */
        pipeline_case(2, 1, 0, false, 4);
        pipeline_case(2, 2, 0, true, 4);
    }
    g_arch = 0;
}

int main(void) {
    RUN(test_steps_lower_kl);
    RUN(test_two_ranks_equal_one_process);
    RUN(test_pipeline_equals_one_process);
    RUN(test_pipeline_stop);
    RUN(test_resume_exact);
    RUN(test_cancel_and_refusals);
    RUN(test_arch_students);
    return check_report();
}
