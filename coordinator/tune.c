/*  tune - see tune.h */
#include "coordinator/tune.h"

#include "artifact/artifact.h"       /* defines: lmp_artifact_open_read, ... */
#include "artifact/artifact_model.h" /* defines: lmp_artifact_model_open */
#include "artifact/checkpoint.h"     /* defines: lmp_ckpt_write, lmp_ckpt_read */
#include "artifact/events.h"         /* defines: LMP_EVENT_PROGRESS */
#include "artifact/fingerprint.h"    /* defines: lmp_fingerprint_model, lmp_fp_settings */
#include "base/build.h"              /* defines: lmp_build_id */
#include "base/cancel.h"             /* defines: lmp_cancelled */
#include "base/file.h"               /* defines: lmp_file_read_all */
#include "base/log.h"                /* defines: lmp_log_info */
#include "base/text.h"               /* defines: lmp_str_escape */
#include "kernels/kernels.h"         /* defines: lmp_kernels_set_threads */
#include "model/tokenizer.h"         /* defines: lmp_tokenizer_encode */
#include "worker/calib.h"            /* defines: lmp_calib_generate_part */

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void lmp_tune_job_init(struct lmp_tune_job *j) {
    memset(j, 0, sizeof(*j));
    j->val_windows  = 2;
    j->steps        = 100;
    j->ckpt_seconds = 600;
    lmp_tune_opts_init(&j->opts);
}

void lmp_tune_spec_from_job(Lmp__TuneSpec *t, const struct lmp_tune_job *j, uint32_t replicas) {
    struct lmp_pv_opts pv = j->opts.pv;
    lmp_pv_opts_resolve(&pv);
    pv.code_lr = j->opts.pv.code_lr > 0 ? j->opts.pv.code_lr : 0; /* 0: by the scheme, on
                                                                       the artifact */
    lmp__tune_spec__init(t);
    t->artifact     = (char *)j->artifact;
    t->data         = (char *)j->data;
    t->ctx          = (uint32_t)j->ctx;
    t->max_windows  = (uint64_t)j->max_windows;
    t->val_windows  = (uint32_t)j->val_windows;
    t->steps        = (uint64_t)j->steps;
    t->batch        = (uint32_t)j->opts.batch_seqs;
    t->micro        = (uint32_t)j->opts.micro_seqs;
    t->v_every      = (uint32_t)j->opts.v_every;
    t->beam         = (uint32_t)pv.beam;
    t->blocks       = (uint32_t)j->max_blocks;
    t->lr           = pv.lr;
    t->code_lr      = pv.code_lr;
    t->code_frac    = pv.code_frac;
    t->trust_ratio  = pv.trust_ratio;
    t->lamb         = pv.lamb;
    t->train_norms  = j->opts.train_norms;
    t->seed         = j->opts.seed;
    t->checkpoint_s = j->ckpt_seconds;
    t->replicas     = replicas;
    t->stages       = j->stages > 1 ? (uint32_t)j->stages : 0;
}

void lmp_tune_job_from_spec(struct lmp_tune_job *j, const Lmp__TuneSpec *t, const char *model,
                            const char *out) {
    lmp_tune_job_init(j);
    j->artifact            = t->artifact;
    j->model               = model;
    j->data                = t->data;
    j->out                 = out;
    j->ctx                 = t->ctx;
    j->max_windows         = (int64_t)t->max_windows;
    j->val_windows         = t->val_windows;
    j->steps               = (int64_t)t->steps;
    j->max_blocks          = (int)t->blocks;
    j->stages              = (int)t->stages;
    j->ckpt_seconds        = t->checkpoint_s;
    j->opts.batch_seqs     = t->batch;
    j->opts.micro_seqs     = t->micro;
    j->opts.v_every        = (int)t->v_every;
    j->opts.train_norms    = t->train_norms;
    j->opts.seed           = t->seed;
    j->opts.pv.lr          = t->lr;
    j->opts.pv.code_lr     = t->code_lr;
    j->opts.pv.code_frac   = t->code_frac;
    j->opts.pv.beam        = (int)t->beam;
    j->opts.pv.trust_ratio = t->trust_ratio;
    j->opts.pv.lamb        = t->lamb;
}

static void notice(const struct lmp_tune_job *j, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void notice(const struct lmp_tune_job *j, const char *fmt, ...) {
    char    line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (j->notice)
        j->notice(j->progress_ctx, line);
    else
        lmp_log_info("%s", line);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static char *cat(const char *a, const char *b) {
    size_t na = strlen(a), nb = strlen(b);
    char  *s = malloc(na + nb + 1);
    if (s) {
        memcpy(s, a, na);
        memcpy(s + na, b, nb + 1);
    }
    return s;
}

/* Everything the job holds, released in one place. */
struct tj {
    struct lmp_artifact      *in;
    struct lmp_model         *smodel, *teacher_model;
    struct lmp_tokenizer     *tok;
    struct lmp_model_weights *student, *teacher;
    struct lmp_art_layer     *layers; /* (n_linears) of the input artifact; codec AQ or RTN */
    bool                     *have;   /* layer i was read */
    struct lmp_tune_linear   *lins;   /* the AQ ones */
    int                       n_lins;
    int64_t                   n_linears;
    int32_t                  *ids, *windows;
    int64_t                   n_ids;
    struct lmp_tune          *tune;
    struct lmp_artifact      *out; /* OUT.h5, open for writing from before the steps (rank 0) */
    struct lmp_pv_array      *state;
    int                       n_state;
    struct lmp_ckpt_array    *ck;
    char                     *tune_dir, *ckpt_path, *lock_path, *desc;
    int                       lock_fd;
    uint64_t                  key;
};

static void tj_release(struct tj *t) {
    lmp_tune_destroy(&t->tune);
    for (int64_t i = 0; t->layers && i < t->n_linears; i++) lmp_art_layer_release(&t->layers[i]);
    free(t->layers);
    free(t->have);
    free(t->lins);
    free(t->ids);
    free(t->windows);
    free(t->state);
    free(t->ck);
    lmp_model_weights_free(&t->student);
    lmp_model_weights_free(&t->teacher);
    lmp_tokenizer_free(&t->tok);
    lmp_model_close(&t->smodel);
    lmp_model_close(&t->teacher_model);
    lmp_artifact_close(&t->out);
    lmp_artifact_close(&t->in);
    if (t->lock_fd >= 0) close(t->lock_fd);
    free(t->tune_dir);
    free(t->ckpt_path);
    free(t->lock_path);
    free(t->desc);
}

/* t->ck: the checkpoint arrays of the tuning state, listed afresh (the listing refreshes
 * the step and Adam counters, which change with every step). */
static enum lmp_status list_state(struct tj *t) {
    free(t->state);
    t->state           = NULL;
    enum lmp_status st = lmp_tune_state(t->tune, &t->state, &t->n_state);
    if (st != LMP_OK) return st;
    free(t->ck);
    if ((t->ck = calloc((size_t)t->n_state, sizeof(*t->ck))) == NULL) return LMP_ENOMEM;
    for (int i = 0; i < t->n_state; i++) {
        const struct lmp_pv_array *a = &t->state[i];
        t->ck[i]                     = (struct lmp_ckpt_array){
                                .name = a->name,
                                .type = a->f32   ? LMP_CKPT_F32
                                        : a->u16 ? LMP_CKPT_U16
                                                 : LMP_CKPT_I64,
                                .data = a->f32   ? (void *)a->f32
                                        : a->u16 ? (void *)a->u16
                                                 : (void *)a->i64,
                                .n    = a->n,
        };
    }
    return LMP_OK;
}

static enum lmp_status save_checkpoint(struct tj *t, struct lmp_err *err) {
    enum lmp_status st = list_state(t);
    if (st == LMP_EINVAL)
        return lmp_err_set(err, st, "tune: the tuning state was not gathered from the ranks");
    if (st != LMP_OK) return lmp_err_set(err, st, "out of memory");
    return lmp_ckpt_write(t->ckpt_path, t->key, t->ck, t->n_state, err);
}

/* One norm of the student: every value finite, or a one-line error naming the file (kind:
 * "artifact" or "checkpoint") and the tensor. NULL: absent. */
static enum lmp_status finite_norm(const float *v, int64_t n, const char *kind, const char *path,
                                   int32_t blk, const char *name, struct lmp_err *err) {
    for (int64_t i = 0; v && i < n; i++)
        if (!isfinite(v[i])) {
            char q[160], t[LMP_NAME_MAX];
            if (blk < 0)
                snprintf(t, sizeof(t), "%s", name);
            else
                snprintf(t, sizeof(t), "model.layers.%d.%s", blk, name);
            return lmp_err_set(err, LMP_EFORMAT,
                               "%s '%s': norm '%s' holds a value that is not finite", kind,
                               lmp_str_escape(q, sizeof(q), path), t);
        }
    return LMP_OK;
}

/* The student's norms, the trained parameters tuning starts from (read from the input
 * artifact, whose reader checked their shapes, or from a checkpoint): all finite. */
static enum lmp_status check_norms(const struct lmp_model_weights *w, const char *kind,
                                   const char *path, struct lmp_err *err) {
    const struct lmp_config *c = &w->cfg;
    enum lmp_status st = finite_norm(w->out_norm, c->dim, kind, path, -1, "model.norm.weight", err);
    for (int32_t b = 0; st == LMP_OK && b < c->n_layers; b++) {
        const float             *v[6] = {w->attn_norm[b], w->ffn_norm[b],       w->q_norm[b],
                                         w->k_norm[b],    w->post_attn_norm[b], w->post_ffn_norm[b]};
        const int64_t            n[6] = {c->dim, c->dim, c->head_dim, c->head_dim, c->dim, c->dim};
        static const char *const name[6] = {
            "input_layernorm.weight",     "post_attention_layernorm.weight",
            "self_attn.q_norm.weight",    "self_attn.k_norm.weight",
            "post_attention_norm.weight", "post_feedforward_layernorm.weight"};
        for (int k = 0; k < 6 && st == LMP_OK; k++)
            st = finite_norm(v[k], n[k], kind, path, b, name[k], err);
    }
    return st;
}

/* Map the artifact's layers onto the student: AQ layers become tuned linears. */
static enum lmp_status load_layers(struct tj *t, const char *art, struct lmp_err *err) {
    const struct lmp_model *m = t->smodel;
    t->n_linears              = lmp_model_n_linears(m);
    t->layers                 = calloc((size_t)t->n_linears, sizeof(*t->layers));
    t->have                   = calloc((size_t)t->n_linears, sizeof(*t->have));
    t->lins                   = calloc((size_t)t->n_linears, sizeof(*t->lins));
    if (!t->layers || !t->have || !t->lins) return lmp_err_set(err, LMP_ENOMEM, "out of memory");
    for (int64_t i = 0; i < t->n_linears; i++) {
        const struct lmp_linear *l = lmp_model_linear(m, i);
        if (!lmp_artifact_has_layer(t->in, l->name)) continue; /* kept dense */
        enum lmp_status st = lmp_artifact_read_layer(t->in, l->name, &t->layers[i], err);
        if (st != LMP_OK) return st;
        t->have[i]                    = true;
        const struct lmp_art_layer *L = &t->layers[i];
        if (L->codec != LMP_ART_CODEC_AQ) continue; /* RTN: frozen */
        t->lins[t->n_lins++] = (struct lmp_tune_linear){
            .block = l->block,
            .kind  = l->kind,
            .pv    = {.shape =
                          {.n_out = L->n_out, .n_in = L->n_in, .M = L->M, .K = 1 << L->B, .g = L->g},
                      .codes = L->codes,
                      .cb    = L->codebooks,
                      .scale = L->scales,
                      .w     = t->student->w[l->block * LMP_LIN_COUNT + l->kind]},
        };
    }
    if (t->n_lins == 0) {
        char q[160];
        return lmp_err_set(err, LMP_EUNSUP,
                           "artifact '%s' has no AQLM layer to tune (PV-Tuning needs codes)",
                           lmp_str_escape(q, sizeof(q), art));
    }
    return LMP_OK;
}

/* The code bits per weight of the tuned linears, weighted by their sizes (M B / g). */
static double code_bits(const struct tj *t) {
    double bits = 0, n = 0;
    for (int i = 0; i < t->n_lins; i++) {
        const struct lmp_aq_shape *s  = &t->lins[i].pv.shape;
        const double               nw = (double)s->n_out * (double)s->n_in;
        bits += nw * s->M * log2((double)s->K) / s->g;
        n += nw;
    }
    return n > 0 ? bits / n : 2.0;
}

/* Fingerprint the tuning: input artifact, tokens, settings (o: j's options with the code lr
 * resolved), build. */
static void make_key(struct tj *t, const struct lmp_tune_job *j, const struct lmp_tune_opts *o,
                     int64_t ctx, int64_t n_train) {
    const struct lmp_art_job *job = lmp_artifact_job(t->in);
    struct lmp_fp_settings    s;
    lmp_fp_settings_init(&s);
    lmp_fp_settings_str(&s, "tune", "pv");
    lmp_fp_settings_i64(&s, "from_model", (int64_t)job->model_fp);
    lmp_fp_settings_i64(&s, "from_calib", (int64_t)job->calib_fp);
    lmp_fp_settings_i64(&s, "ctx", ctx);
    lmp_fp_settings_i64(&s, "windows", n_train);
    lmp_fp_settings_i64(&s, "val_windows", j->val_windows);
    lmp_fp_settings_i64(&s, "batch", j->opts.batch_seqs);
    lmp_fp_settings_i64(&s, "micro", j->opts.micro_seqs);
    lmp_fp_settings_i64(&s, "v_every", j->opts.v_every);
    lmp_fp_settings_i64(&s, "train_norms", j->opts.train_norms);
    lmp_fp_settings_i64(&s, "seed", (int64_t)j->opts.seed);
    struct lmp_pv_opts pv = o->pv; /* defaults spelled out: 0 and 1e-4 are one lr */
    lmp_pv_opts_resolve(&pv);
    lmp_fp_settings_f64(&s, "lr", pv.lr);
    lmp_fp_settings_f64(&s, "code_lr", pv.code_lr);
    lmp_fp_settings_f64(&s, "code_frac", pv.code_frac);
    lmp_fp_settings_i64(&s, "beam", pv.beam);
    lmp_fp_settings_i64(&s, "blocks", j->max_blocks);
    lmp_fp_settings_f64(&s, "trust_ratio", pv.trust_ratio);
    lmp_fp_settings_i64(&s, "lamb", pv.lamb);
    lmp_fp_settings_str(&s, "build", lmp_build_id());
    lmp_fp_settings_note(&s, "data", j->data);
    t->key  = lmp_fingerprint_job(t->ids, t->n_ids, lmp_fp_settings_digest(&s));
    t->desc = lmp_strbuf_take(&s.desc);
    lmp_fp_settings_release(&s);
}

/* OUT.h5's calibration fingerprint: the input's, extended by the key and the steps. */
static uint64_t out_fingerprint(const struct tj *t, const struct lmp_tune_job *j) {
    const uint64_t v[3] = {lmp_artifact_job(t->in)->calib_fp, t->key, (uint64_t)j->steps};
    return lmp_xxh64(v, sizeof(v), 0);
}

/* Before any work: an existing OUT must be this job's. *done: it is, and complete. */
static enum lmp_status check_existing_out(const struct tj *t, const struct lmp_tune_job *j,
                                          bool *done, struct lmp_err *err) {
    *done = false;
    if (!lmp_path_is_file(j->out)) return LMP_OK;
    struct lmp_artifact *a  = NULL;
    enum lmp_status      st = lmp_artifact_open_read(j->out, &a, err);
    if (st != LMP_OK) return st;
    char q[200];
    if (lmp_artifact_job(a)->calib_fp != out_fingerprint(t, j))
        st = lmp_err_set(err, LMP_EMISMATCH,
                         "'%s' holds another job's artifact (another input, text or tuning "
                         "setting): use another --out or delete it",
                         lmp_str_escape(q, sizeof(q), j->out));
    else
        *done = lmp_artifact_is_complete(a);
    lmp_artifact_close(&a);
    return st;
}

/* OUT.h5: the input job with the calibration fingerprint extended (out_fingerprint). */
/* Open OUT.h5 for writing (creating it, or resuming its parts) before the steps: its event
 * log records the tuning as it goes. */
static enum lmp_status open_output(struct tj *t, const struct lmp_tune_job *j,
                                   struct lmp_err *err) {
    const struct lmp_art_job *in = lmp_artifact_job(t->in);
    struct lmp_art_job        job;
    lmp_art_job_init(&job);
    enum lmp_status st = LMP_ENOMEM;
    job.model_fp       = in->model_fp;
    job.calib_fp       = out_fingerprint(t, j);
    job.cfg            = in->cfg;
    /* the q/k and post norms are no /model field (their tensors say it): the input's job
     * config lacks them, the student model has them, and they make OUT format 3 as its
     * input (lmp_artifact_cfg_is_v3) */
    job.cfg.qk_norm    = t->smodel->cfg.qk_norm;
    job.cfg.post_norms = t->smodel->cfg.post_norms;
    job.n_linears      = in->n_linears;
    job.linears = malloc((size_t)(in->n_linears > 0 ? in->n_linears : 1) * sizeof(*job.linears));
    char *desc  = malloc(strlen(in->calib_desc) + strlen(t->desc) + 16);
    if (job.linears == NULL || desc == NULL) {
        free(desc);
        lmp_art_job_release(&job);
        return lmp_err_set(err, LMP_ENOMEM, "out of memory");
    }
    memcpy(job.linears, in->linears, (size_t)in->n_linears * sizeof(*job.linears));
    sprintf(desc, "%s; pv-tuning: %s", in->calib_desc, t->desc);
    snprintf(job.method, sizeof(job.method), "%s", in->method);
    snprintf(job.scheme, sizeof(job.scheme), "%s", in->scheme);
    if ((st = lmp_art_job_set_text(&job.model_name, in->model_name)) ||
        (st = lmp_art_job_set_text(&job.calib_desc, desc))) {
        free(desc);
        lmp_art_job_release(&job);
        return lmp_err_set(err, st, "out of memory");
    }
    free(desc);
    st = lmp_artifact_open_write(j->out, &job, &t->out, err);
    lmp_art_job_release(&job);
    return st;
}

/* Everything into OUT.h5 and finalize it. */
static enum lmp_status write_output(struct tj *t, const struct lmp_tune_job *j,
                                    struct lmp_err *err) {
    struct lmp_artifact *a  = t->out;
    enum lmp_status      st = LMP_OK;
    /* every tensor of the input; the trained norms from the student */
    const struct lmp_config *c = &t->student->cfg;
    for (int64_t i = 0; i < lmp_artifact_n_tensors(t->in) && st == LMP_OK; i++) {
        struct lmp_art_tensor ten = {0};
        if ((st = lmp_artifact_read_tensor(t->in, lmp_artifact_tensor_name(t->in, i), &ten, err)))
            break;
        const float *tuned = NULL;
        int64_t      n     = c->dim;
        if (j->opts.train_norms) {
            int  blk = -1;
            char tail[LMP_NAME_MAX];
            if (strcmp(ten.name, "model.norm.weight") == 0)
                tuned = t->student->out_norm;
            else if (sscanf(ten.name, "model.layers.%d.%159s", &blk, tail) == 2 && blk >= 0 &&
                     blk < c->n_layers) {
                /* the names artifact_model.c reads; the q/k and post norms (Qwen3, Gemma 3)
                 * are NULL in the student where the model has none */
                const struct lmp_model_weights *s = t->student;
                if (strcmp(tail, "input_layernorm.weight") == 0) tuned = s->attn_norm[blk];
                if (strcmp(tail, "post_attention_layernorm.weight") == 0) tuned = s->ffn_norm[blk];
                if (strcmp(tail, "self_attn.q_norm.weight") == 0)
                    tuned = s->q_norm[blk], n = c->head_dim;
                if (strcmp(tail, "self_attn.k_norm.weight") == 0)
                    tuned = s->k_norm[blk], n = c->head_dim;
                if (strcmp(tail, "post_attention_norm.weight") == 0) tuned = s->post_attn_norm[blk];
                if (strcmp(tail, "post_feedforward_layernorm.weight") == 0)
                    tuned = s->post_ffn_norm[blk];
            }
        }
        if (tuned) {
            void *nd = malloc((size_t)n * sizeof(float));
            if (nd == NULL) {
                lmp_art_tensor_release(&ten);
                st = lmp_err_set(err, LMP_ENOMEM, "out of memory");
                break;
            }
            memcpy(nd, tuned, (size_t)n * sizeof(float));
            free(ten.data);
            ten.data     = nd;
            ten.dtype    = LMP_DTYPE_F32;
            ten.n_dims   = 1;
            ten.shape[0] = n;
        }
        st = lmp_artifact_put_tensor(a, &ten, err);
        lmp_art_tensor_release(&ten);
    }
    for (int64_t i = 0; i < t->n_linears && st == LMP_OK; i++)
        if (t->have[i] && !lmp_artifact_has_layer(a, t->layers[i].name))
            st = lmp_artifact_commit_layer(a, &t->layers[i], err);
    if (st == LMP_OK && lmp_artifact_has_tokenizer(t->in)) {
        enum lmp_art_tok kind;
        uint8_t         *bytes = NULL;
        size_t           n     = 0;
        if ((st = lmp_artifact_read_tokenizer(t->in, &kind, &bytes, &n, err)) == LMP_OK)
            st = lmp_artifact_put_tokenizer(a, kind, bytes, n, err);
        free(bytes);
    }
    if (st == LMP_OK) {
        lmp_artifact_note(a, LMP_LOG_INFO, "tune", "", "", "PV-Tuning of '%s': %s", j->artifact,
                          t->desc);
        st = lmp_artifact_finalize(a, err);
    }
    return st;
}

/* --data generate: the teacher writes the windows (worker/calib.h): --max-windows of them,
 * or one per window the steps take up to LMP_TUNE_GEN_WINDOWS, plus --val-windows. With
 * ranks each writes its share of the chunks and the shares are added, so every rank holds
 * the same tokens, the ones one process would write. */
static enum lmp_status generate_data(struct tj *t, const struct lmp_tune_job *j, int64_t ctx,
                                     struct lmp_err *err) {
    const int64_t batch = j->opts.batch_seqs > 0 ? j->opts.batch_seqs : 1;
    int64_t       n     = j->max_windows;
    if (n <= 0) {
        n = j->steps > LMP_TUNE_GEN_WINDOWS / batch ? LMP_TUNE_GEN_WINDOWS : j->steps * batch;
        if (n < 1) n = 1;
        n += j->val_windows > 0 ? j->val_windows : 0;
    }
    enum lmp_status st = lmp_calib_check_budget(n, ctx, t->teacher_model->cfg.dim, err);
    if (st != LMP_OK) return st;
    if ((t->ids = calloc((size_t)(n * ctx), sizeof(*t->ids))) == NULL)
        return lmp_err_set(err, LMP_ENOMEM, "out of memory for %lld generated windows",
                           (long long)n);
    t->n_ids                         = n * ctx;
    const struct lmp_tune_comm *c    = j->opts.comm;
    const int                   part = c ? c->rank : 0, n_parts = c ? c->size : 1;
    const double                t0 = now_s();
    st = lmp_calib_generate_part(t->ids, t->teacher_model, t->tok, n, ctx,
                                 j->opts.seed ^ 0x74756e65ULL /* "tune" */, part, n_parts,
                                 j->n_threads > 0 ? j->n_threads : 1, err);
    if (st == LMP_OK && n_parts > 1) {
        int64_t *w = malloc((size_t)t->n_ids * sizeof(*w));
        if (w == NULL) return lmp_err_set(err, LMP_ENOMEM, "out of memory");
        for (int64_t i = 0; i < t->n_ids; i++) w[i] = t->ids[i];
        st = c->sum_i64(c->ctx, w, t->n_ids);
        for (int64_t i = 0; st == LMP_OK && i < t->n_ids; i++) t->ids[i] = (int32_t)w[i];
        free(w);
        if (st != LMP_OK)
            return lmp_err_set(err, st, "tune: adding the ranks' generated windows failed");
    }
    if (st == LMP_OK)
        notice(j, "generated %lld windows of %lld tokens from the original model in %.0f s",
               (long long)n, (long long)ctx, now_s() - t0);
    return st;
}

enum lmp_status lmp_tune_job_run(const struct lmp_tune_job *j, struct lmp_tune_result *r,
                                 struct lmp_err *err) {
    struct tj       t  = {.lock_fd = -1};
    enum lmp_status st = LMP_OK;
    /* with data-parallel ranks, rank 0 alone writes (checkpoints, the artifact); all read */
    const bool lead = j->opts.comm == NULL || j->opts.comm->rank == 0;
    char       q[200], q2[200];
    *r = (struct lmp_tune_result){
        .val_kl_before = NAN, .val_agree_before = NAN, .val_kl_after = NAN, .val_agree_after = NAN};
    if (j->n_threads > 0) lmp_kernels_set_threads(j->n_threads);
    if (j->steps < 0) return lmp_err_set(err, LMP_EINVAL, "tune: --steps must be >= 0");

    /* the student */
    if ((st = lmp_artifact_open_read(j->artifact, &t.in, err))) goto out;
    const struct lmp_art_job *job = lmp_artifact_job(t.in);
    if (strcmp(job->method, "aqlm") != 0) {
        st = lmp_err_set(err, LMP_EUNSUP,
                         "artifact '%s' was made by method %s; PV-Tuning needs "
                         "an AQLM artifact",
                         lmp_str_escape(q, sizeof(q), j->artifact), job->method);
        goto out;
    }
    if ((st = lmp_artifact_model_open(j->artifact, &t.smodel, &t.tok, err))) goto out;
    /* what the model backward cannot run (model/model.h); Gemma 3 and Qwen3 tune */
    if ((st = lmp_model_check_trainable(t.smodel, "PV-Tuning", err))) goto out;
    if ((st = lmp_model_open(j->model, &t.teacher_model, err))) goto out;
    if (lmp_fingerprint_model(t.teacher_model) != job->model_fp) {
        st = lmp_err_set(
            err, LMP_EMISMATCH, "model '%s' is not the one artifact '%s' was compressed from (%s)",
            lmp_str_escape(q, sizeof(q), j->model), lmp_str_escape(q2, sizeof(q2), j->artifact),
            job->model_name ? job->model_name : "?");
        goto out;
    }
    int64_t ctx = j->ctx > 0 ? j->ctx : (t.smodel->cfg.max_seq < 512 ? t.smodel->cfg.max_seq : 512);
    if (ctx < 2 || ctx > t.smodel->cfg.max_seq) {
        st = lmp_err_set(err, LMP_EINVAL, "tune: --ctx %lld outside [2, %d] (the model's context)",
                         (long long)ctx, t.smodel->cfg.max_seq);
        goto out;
    }

    /* the data: a text, or windows the original model writes itself */
    if (strcmp(j->data, "generate") == 0) {
        if ((st = generate_data(&t, j, ctx, err))) goto out;
    } else {
        char  *text = NULL;
        size_t len  = 0;
        if ((st = lmp_file_read_all(j->data, &text, &len, err))) goto out;
        st = lmp_tokenizer_encode(t.tok, text, len, true, &t.ids, &t.n_ids, err);
        free(text);
        if (st) goto out;
    }
    int64_t n_win = t.n_ids / ctx;
    if (j->max_windows > 0 && n_win > j->max_windows) n_win = j->max_windows;
    const int64_t n_val = j->val_windows > 0 ? j->val_windows : 0;
    if (n_win - n_val < 1) {
        st = lmp_err_set(err, LMP_EUNSUP,
                         "tuning text '%s' has %lld tokens: fewer than %lld windows of %lld "
                         "(training and --val-windows %lld): use a longer text",
                         lmp_str_escape(q, sizeof(q), j->data), (long long)t.n_ids,
                         (long long)(n_val + 1), (long long)ctx, (long long)n_val);
        goto out;
    }
    t.n_ids      = n_win * ctx; /* what is used, in windows */
    r->n_windows = n_win - n_val;
    r->n_tokens  = r->n_windows * ctx;

    /* fp32 weights; the decoded dense artifact model and the teacher's file pages go */
    if ((st = lmp_model_weights_load(t.smodel, &t.student, err)) ||
        (st = check_norms(t.student, "artifact", j->artifact, err)) ||
        (st = lmp_model_weights_load(t.teacher_model, &t.teacher, err)))
        goto out;
    if ((st = load_layers(&t, j->artifact, err))) goto out;
    /* j's options with the code lr resolved from the scheme where not given */
    struct lmp_tune_opts opts = j->opts;
    if (opts.pv.code_lr <= 0) {
        const double bits = code_bits(&t);
        opts.pv.code_lr   = lmp_pv_default_code_lr(bits);
        notice(j,
               "code lr %.3g for %.2f code bits per weight (--code-lr or compress --pv-code-lr "
               "sets it)",
               (double)opts.pv.code_lr, bits);
    }
    make_key(&t, j, &opts, ctx, n_win - n_val);
    {
        bool done = false;
        if ((st = check_existing_out(&t, j, &done, err))) goto out;
        if (done) {
            notice(j, "'%s' is already this tuning's result: nothing to do",
                   lmp_str_escape(q, sizeof(q), j->out));
            r->steps_done = r->resumed_at = j->steps;
            goto out;
        }
    }
    /* sparse tuning: the max_blocks blocks the probe scores highest (ties: the lower block) */
    if (j->max_blocks > 0 && j->max_blocks < t.smodel->cfg.n_layers) {
        const int L     = t.smodel->cfg.n_layers;
        double   *score = calloc((size_t)L, sizeof(double));
        bool     *keep  = calloc((size_t)L, sizeof(bool));
        if (score == NULL || keep == NULL) {
            free(score);
            free(keep);
            st = lmp_err_set(err, LMP_ENOMEM, "out of memory");
            goto out;
        }
        const int64_t n_probe = n_win - n_val < 2 ? n_win - n_val : 2;
        st = lmp_tune_probe(t.student, t.teacher, t.ids, n_probe, ctx, j->opts.cancel, score, err);
        bool *aq = calloc((size_t)L, sizeof(bool)); /* blocks with a layer to tune */
        if (aq == NULL) st = lmp_err_set(err, LMP_ENOMEM, "out of memory");
        for (int i = 0; st == LMP_OK && i < t.n_lins; i++) aq[t.lins[i].block] = true;
        for (int k = 0; st == LMP_OK && k < j->max_blocks; k++) {
            int best = -1;
            for (int b = 0; b < L; b++)
                if (aq[b] && !keep[b] && (best < 0 || score[b] > score[best])) best = b;
            if (best >= 0) keep[best] = true;
        }
        free(aq);
        struct lmp_strbuf sel;
        lmp_strbuf_init(&sel);
        int n = 0;
        for (int i = 0; st == LMP_OK && i < t.n_lins; i++)
            if (keep[t.lins[i].block]) t.lins[n++] = t.lins[i];
        for (int b = 0; st == LMP_OK && b < L; b++)
            if (keep[b]) lmp_strbuf_printf(&sel, "%s%d", sel.len ? "," : "", b);
        if (st == LMP_OK) {
            t.n_lins = n;
            notice(j,
                   "tuning blocks %s of %d (--blocks %d, by the probe's |gradient| on %lld "
                   "windows); no backward below block %d",
                   lmp_strbuf_str(&sel), L, j->max_blocks, (long long)n_probe, t.lins[0].block);
        }
        lmp_strbuf_release(&sel);
        free(score);
        free(keep);
        if (st != LMP_OK) goto out;
    }
    if (j->opts.pipe && j->opts.pipe->n_stages > 1) {
        const int S = j->opts.pipe->n_stages, L = t.smodel->cfg.n_layers;
        if (S > L) {
            st = lmp_err_set(err, LMP_EUNSUP,
                             "tune: %d pipeline stages for a model of %d blocks (at most one "
                             "stage per block)",
                             S, L);
            goto out;
        }
        notice(j, "pipeline: %d stages x %d replicas, %d-%d blocks per stage", S,
               j->opts.pipe->n_replicas, L / S, (L + S - 1) / S);
    }
    /* tokens are the training windows [0, n_win - n_val), then the held-out ones */
    const int32_t *val = t.ids + (n_win - n_val) * ctx;
    if ((st = lmp_tune_new(t.student, t.teacher, t.lins, t.n_lins, t.ids, n_win - n_val, ctx, &opts,
                           &t.tune, err)))
        goto out;

    /* checkpoint directory, lock, resume */
    if (!(t.tune_dir = cat(j->out, ".tune")) ||
        !(t.ckpt_path = cat(t.tune_dir, "/checkpoint.h5")) ||
        !(t.lock_path = cat(t.tune_dir, "/LOCK"))) {
        st = lmp_err_set(err, LMP_ENOMEM, "out of memory");
        goto out;
    }
    if (lead && mkdir(t.tune_dir, 0777) != 0 && errno != EEXIST) {
        st = lmp_err_set(err, LMP_EIO, "cannot create '%s': %s",
                         lmp_str_escape(q, sizeof(q), t.tune_dir), strerror(errno));
        goto out;
    }
    if (lead) t.lock_fd = open(t.lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (lead && (t.lock_fd < 0 || flock(t.lock_fd, LOCK_EX | LOCK_NB) != 0)) {
        /* EBUSY: another run holds it (e.g. a cluster rank 0 still checkpointing after its
         * coordinator restarted): not this run's failure, it may go on once that one ends */
        const bool held = t.lock_fd >= 0 && errno == EWOULDBLOCK;
        st              = held ? lmp_err_set(err, LMP_EBUSY, "'%s' is in use by another tuning run",
                                             lmp_str_escape(q, sizeof(q), t.tune_dir))
                               : lmp_err_set(err, LMP_EIO, "cannot lock '%s': %s",
                                             lmp_str_escape(q, sizeof(q), t.lock_path), strerror(errno));
        goto out;
    }
    if ((st = list_state(&t))) {
        st = lmp_err_set(err, st, "out of memory");
        goto out;
    }
    {
        struct lmp_err e2 = {0};
        st                = lmp_ckpt_read(t.ckpt_path, t.key, t.ck, t.n_state, &e2);
        if (st == LMP_OK) {
            lmp_tune_state_loaded(t.tune);
            /* the trained norms it brought back (the P/V state's own arrays: their checksums) */
            if ((st = check_norms(t.student, "checkpoint", t.ckpt_path, err))) goto out;
            r->resumed_at = lmp_tune_steps_done(t.tune);
            notice(j, "resuming '%s' at step %lld", lmp_str_escape(q, sizeof(q), t.ckpt_path),
                   (long long)r->resumed_at);
        } else if (st == LMP_ENOENT) {
            st = LMP_OK;
        } else {
            /* a mismatching or damaged checkpoint: the state may be partly overwritten */
            *err = e2;
            if (st == LMP_EMISMATCH)
                lmp_err_reset(err, st, "%s: remove '%s' to start over with these settings", e2.msg,
                              lmp_str_escape(q, sizeof(q), t.tune_dir));
            goto out;
        }
    }

    if (lead && (st = open_output(&t, j, err))) goto out;
    lmp_artifact_note(t.out, LMP_LOG_INFO, LMP_EVENT_PROGRESS, "", "",
                      "PV-Tuning from '%s' at step %lld of %lld: %s", j->artifact,
                      (long long)r->resumed_at, (long long)j->steps, t.desc);
    if (j->opts.pipe && j->opts.pipe->n_stages > 1)
        lmp_artifact_note(t.out, LMP_LOG_INFO, LMP_EVENT_PROGRESS, "", "",
                          "pipeline: %d stages x %d replicas", j->opts.pipe->n_stages,
                          j->opts.pipe->n_replicas);
    /* held-out windows before */
    if (n_val > 0 && r->resumed_at == 0 &&
        (st = lmp_tune_measure(t.tune, val, n_val, &r->val_kl_before, &r->val_agree_before, err)))
        goto out;
    /* the steps */
    {
        const bool every = getenv("LMP_TUNE_CKPT_EVERY_STEP") != NULL;
        double     t0 = now_s(), last_ckpt = t0;
        int64_t    rows = 0;
        while (lmp_tune_steps_done(t.tune) < j->steps) {
            /* a checkpoint after this step: on the lead rank's clock, and after the last
             * one (with owner-only P/V the step gathers the ranks' state for it) */
            const double since = now_s() - last_ckpt;
            if ((lead && (every || (j->ckpt_seconds > 0 && since >= j->ckpt_seconds))) ||
                lmp_tune_steps_done(t.tune) + 1 == j->steps)
                lmp_tune_want_checkpoint(t.tune);
            struct lmp_tune_step_stats s;
            st = lmp_tune_step(t.tune, &s, err);
            if (st == LMP_ECANCEL) { /* every rank stopped at this step, its state gathered */
                struct lmp_err e2 = {0};
                if (lead && save_checkpoint(&t, &e2) != LMP_OK)
                    lmp_log_warn("%s", e2.msg);
                else if (lead)
                    notice(j, "stopped at step %lld; the same command resumes from '%s'",
                           (long long)lmp_tune_steps_done(t.tune),
                           lmp_str_escape(q, sizeof(q), t.ckpt_path));
                goto out;
            }
            if (st != LMP_OK) goto out;
            rows += s.rows;
            r->codes_changed += s.codes_changed;
            r->seconds_sum += s.seconds_sum;
            r->seconds_pv += s.seconds_pv;
            if (j->progress) j->progress(j->progress_ctx, &s, j->steps);
            lmp_artifact_note(t.out, LMP_LOG_INFO, LMP_EVENT_PROGRESS, "", "",
                              "tune step %lld/%lld kl %.5f agree %.4f codes changed %lld/%lld "
                              "%.1f tok/s (sum %.2f s, P/V %.2f s)",
                              (long long)s.step, (long long)j->steps, s.kl, s.agree,
                              (long long)s.codes_changed, (long long)s.codes_selected,
                              s.seconds > 0 ? (double)s.rows / s.seconds : 0.0, s.seconds_sum,
                              s.seconds_pv);
            if (s.gathered && lead) {
                if ((st = save_checkpoint(&t, err))) goto out;
                last_ckpt = now_s();
            }
        }
        r->seconds_tuning = now_s() - t0;
        r->tokens_per_s   = r->seconds_tuning > 0 ? (double)rows / r->seconds_tuning : 0;
        r->steps_done     = lmp_tune_steps_done(t.tune);
    }
    if (n_val > 0 &&
        (st = lmp_tune_measure(t.tune, val, n_val, &r->val_kl_after, &r->val_agree_after, err)))
        goto out;
    if (!lead) goto out;
    if ((st = write_output(&t, j, err))) goto out;
    unlink(t.ckpt_path);
    unlink(t.lock_path);
    rmdir(t.tune_dir);
out:
    tj_release(&t);
    return st;
}
