/*  compress - see compress.h */
#define _POSIX_C_SOURCE 200809L
#include "coordinator/compress.h"
#include "artifact/artifact_model.h"   /* defines: lmp_art_layer_decode */
#include "artifact/fingerprint.h"      /* defines: lmp_fingerprint_calib */
#include "kernels/kernels.h"              /* defines: lmp_f16 conversions */
#include "base/file.h"                   /* defines: lmp_map_release_pages */
#include "worker/calib.h"                 /* defines: struct lmp_calib, lmp_calib_grams */
#include "model/transformer.h"     /* defines: struct lmp_transformer, lmp_linop */

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + 1e-9 * (double) ts.tv_nsec;
}

void lmp_compress_opts_init(struct lmp_compress_opts *o) {
    assert(o);
    memset(o, 0, sizeof(*o));
    o->mode = LMP_COMPRESS_SEQUENTIAL;
    lmp_compress_spec_init(&o->spec);
    lmp_ft_opts_init(&o->ft);
    o->n_threads = 1;
    o->n_seq     = 128;
    o->ctx       = 512;
}

/* Everything one run holds; released by job_release. */
struct job {
    const struct lmp_model         *m;
    const struct lmp_compress_opts *o;
    struct lmp_art_job              aj;
    struct lmp_artifact            *a;
    struct lmp_transformer         *tf;
    struct lmp_calib               *cal;
    struct lmp_calib_grams         *grams;
    int32_t                        *tokens;      /* (n_seq, ctx) */
    bool                           *quantized;   /* (n_linears) false = kept */
    float                          *h[LMP_INPUT_COUNT];   /* (n_in, n_in) of the block */
    struct lmp_compress_summary     S;
    double                          rel_sum;
    int64_t                         n_rel, done, n_params_lin, params_done;
    double                          t_quant_start;
};

static void emit(struct job *J, enum lmp_compress_what what, const char *name, double before,
                 double after, double bits, double seconds, int64_t steps) {
    if (what != LMP_COMPRESS_EV_STAGE) J->done++;
    lmp_artifact_note(J->a, LMP_LOG_INFO, what == LMP_COMPRESS_EV_STAGE ? "stage" : what == LMP_COMPRESS_EV_KEPT ? "kept" : what == LMP_COMPRESS_EV_RESUMED ? "resumed" : "done", "", what == LMP_COMPRESS_EV_STAGE ? "" : name, "%s%s%.4g -> %.4g, %.1fs", what == LMP_COMPRESS_EV_STAGE ? name : "rel err", what == LMP_COMPRESS_EV_STAGE ? ": " : " ", before, after, seconds);
    if (J->o->progress == NULL) return;
    double eta = -1.0;
    if (J->params_done > 0 && J->params_done < J->n_params_lin)
        eta = (J->S.seconds_quant + J->S.seconds_finetune + J->S.seconds_calib) /
              (double) J->params_done * (double) (J->n_params_lin - J->params_done);
    else if (J->params_done >= J->n_params_lin)
        eta = 0.0;
    struct lmp_compress_event ev = {.what = what, .name = name, .index = J->done,
                                    .n_linears = J->S.n_linears, .rel_err_before = before,
                                    .rel_err_after = after, .bits_per_weight = bits,
                                    .seconds = seconds, .steps = steps, .eta_s = eta};
    J->o->progress(J->o->progress_ctx, &ev);
}

/* Store one model tensor as F32 (F16 sources as they are) under a canonical name. */
static enum lmp_status put_tensor(struct lmp_artifact *a, const char *name,
                                  const struct lmp_tensor *t, const float *override,
                                  struct lmp_err *err) {
    struct lmp_art_tensor at = {0};
    snprintf(at.name, sizeof(at.name), "%s", name);
    const int64_t n = lmp_tensor_n_elem(t);
    at.n_dims = t->n_dims == 2 && t->shape[0] == 1 ? 1 : t->n_dims;
    if (at.n_dims == 1) at.shape[0] = n;
    else for (int i = 0; i < t->n_dims; i++) at.shape[i] = t->shape[i];
    void *buf = NULL;
    if (override == NULL && t->dtype == LMP_DTYPE_F16) {
        at.dtype = LMP_DTYPE_F16;
        at.data  = (void *) t->data;
    } else {
        at.dtype = LMP_DTYPE_F32;
        if ((buf = malloc((size_t) n * sizeof(float))) == NULL)
            return lmp_err_set(err, LMP_ENOMEM, "out of memory storing '%s'", name);
        if (override) memcpy(buf, override, (size_t) n * sizeof(float));
        else lmp_tensor_rows_f32(t, 0, lmp_tensor_n_rows(t), buf);
        at.data = buf;
    }
    enum lmp_status st = lmp_artifact_put_tensor(a, &at, err);
    free(buf);
    /* the source's file pages read here stay resident otherwise: every kept linear of
     * every block would add up */
    lmp_map_release_pages(t->data, (size_t) t->nbytes);
    return st;
}

static bool has_tensor(struct job *J, const char *name) {
    for (int64_t i = 0; i < lmp_artifact_n_tensors(J->a); i++)
        if (strcmp(lmp_artifact_tensor_name(J->a, i), name) == 0) return true;
    return false;
}

/* The artifact form of a task result. Arrays are allocated into *l (release it). */
static enum lmp_status result_to_layer(struct lmp_art_layer *l, const struct lmp_compress_result *r,
                                       const char *name, struct lmp_err *err) {
    memset(l, 0, sizeof(*l));
    snprintf(l->name, sizeof(l->name), "%s", name);
    l->n_out = r->n_out;
    l->n_in  = r->n_in;
    l->stats = (struct lmp_art_stats){.rel_err_before = r->rel_err_before,
                                      .rel_err_after = r->rel_err_after,
                                      .bits_per_weight = r->bits_per_weight,
                                      .seconds = r->seconds, .steps = r->steps};
    if (r->method == LMP_COMPRESS_AQLM) {
        const struct lmp_aq_layer *q = &r->aq;
        l->codec = LMP_ART_CODEC_AQ;
        l->M = q->sc.M, l->B = q->sc.B, l->g = q->sc.g;
        const size_t nc = (size_t) (r->n_out * (r->n_in / q->sc.g) * q->sc.M);
        const size_t nb = (size_t) q->sc.M * (size_t) q->sc.K * (size_t) q->sc.g;
        l->codes     = malloc(nc * sizeof(uint16_t));
        l->codebooks = malloc(nb * sizeof(float));
        l->scales    = malloc((size_t) r->n_out * sizeof(float));
        if (l->codes == NULL || l->codebooks == NULL || l->scales == NULL)
            return lmp_err_set(err, LMP_ENOMEM, "out of memory storing '%s'", name);
        memcpy(l->codes, q->codes, nc * sizeof(uint16_t));
        memcpy(l->codebooks, q->codebooks, nb * sizeof(float));
        memcpy(l->scales, q->scales, (size_t) r->n_out * sizeof(float));
        return LMP_OK;
    }
    return lmp_err_set(err, LMP_EINVAL, "layer '%s': not an AQ result", name);
}

/* RTN w_hat = z + s q  ->  artifact w = scale * (q - zero) with scale = s, zero = -z / s;
 * a constant group (s = 0, every q = 0) stores scale = z, zero = -1. */
static enum lmp_status rtn_to_layer(struct lmp_art_layer *l, const struct lmp_compress_result *r,
                                    int bits, int64_t group, const char *name,
                                    struct lmp_err *err) {
    memset(l, 0, sizeof(*l));
    snprintf(l->name, sizeof(l->name), "%s", name);
    l->codec = LMP_ART_CODEC_RTN;
    l->n_out = r->n_out, l->n_in = r->n_in, l->M = 1, l->B = bits, l->g = (int32_t) group;
    l->stats = (struct lmp_art_stats){.rel_err_before = r->rel_err_before,
                                      .rel_err_after = r->rel_err_after,
                                      .bits_per_weight = r->bits_per_weight,
                                      .seconds = r->seconds, .steps = r->steps};
    const int64_t n = r->n_out * r->n_in, n_s = r->n_out * (r->n_in / group);
    l->codes  = malloc((size_t) n * sizeof(uint16_t));
    l->scales = malloc((size_t) n_s * sizeof(float));
    l->zeros  = malloc((size_t) n_s * sizeof(float));
    if (l->codes == NULL || l->scales == NULL || l->zeros == NULL)
        return lmp_err_set(err, LMP_ENOMEM, "out of memory storing '%s'", name);
    for (int64_t i = 0; i < n; i++) l->codes[i] = r->rtn_q[i];
    for (int64_t j = 0; j < n_s; j++) {
        const float s = lmp_f16_to_f32(r->rtn_scale[j]), z = lmp_f16_to_f32(r->rtn_zero[j]);
        if (s > 0.0f) l->scales[j] = s, l->zeros[j] = -z / s;
        else l->scales[j] = z, l->zeros[j] = -1.0f;
    }
    return LMP_OK;
}

/* ---- one block ------------------------------------------------------------------------ */

struct block_state {
    struct lmp_compress_result res[LMP_LIN_COUNT];   /* fresh results (AQ state for FT) */
    struct lmp_aq_layer        aq[LMP_LIN_COUNT];    /* committed layers read back (FT) */
    float                     *w_hat[LMP_LIN_COUNT];   /* (n_out, n_in) decoded */
    bool                       fresh[LMP_LIN_COUNT], committed[LMP_LIN_COUNT];
    float                     *norm[2];              /* tuned norms (dim) or NULL */
    const float               *orig_w[LMP_LIN_COUNT];
    float                     *orig_norm[2];         /* copies to restore */
};

static void block_state_release(struct block_state *bs) {
    for (int k = 0; k < LMP_LIN_COUNT; k++) {
        lmp_compress_result_release(&bs->res[k]);
        lmp_aq_layer_release(&bs->aq[k]);
        free(bs->w_hat[k]);
    }
    for (int i = 0; i < 2; i++) free(bs->norm[i]), free(bs->orig_norm[i]);
    memset(bs, 0, sizeof(*bs));
}

/* Read a committed layer: decoded weights (and its AQ state for fine-tuning). */
static enum lmp_status load_committed(struct job *J, struct block_state *bs, int k,
                                      const char *name, struct lmp_err *err) {
    struct lmp_art_layer l = {0};
    enum lmp_status st = lmp_artifact_read_layer(J->a, name, &l, err);
    if (st != LMP_OK) return st;
    bs->w_hat[k] = malloc((size_t) (l.n_out * l.n_in) * sizeof(float));
    if (bs->w_hat[k] == NULL) st = lmp_err_set(err, LMP_ENOMEM, "out of memory");
    else lmp_art_layer_decode(&l, bs->w_hat[k]);
    J->rel_sum += l.stats.rel_err_after;
    J->n_rel++;
    if (st == LMP_OK && l.codec == LMP_ART_CODEC_AQ) {   /* keep as AQ state (steal arrays) */
        bs->aq[k] = (struct lmp_aq_layer){.sc = {.M = l.M, .B = l.B, .g = l.g, .K = 1 << l.B},
                                          .n_out = l.n_out, .n_in = l.n_in, .codes = l.codes,
                                          .codebooks = l.codebooks, .scales = l.scales};
        l.codes = NULL, l.codebooks = NULL, l.scales = NULL;
    }
    emit(J, LMP_COMPRESS_EV_RESUMED, name, l.stats.rel_err_before, l.stats.rel_err_after,
         l.stats.bits_per_weight, l.stats.seconds, l.stats.steps);
    lmp_art_layer_release(&l);
    return st;
}

/* Point the transformer's block at the quantized weights (and tuned norms). */
static void install(struct job *J, struct block_state *bs, int32_t b) {
    const int64_t dim = J->m->cfg.dim;
    for (int k = 0; k < LMP_LIN_COUNT; k++) {
        struct lmp_linop *op = lmp_transformer_linop(J->tf, b, (enum lmp_lin) k);
        bs->orig_w[k] = op->w;
        if (bs->w_hat[k]) op->w = bs->w_hat[k];
    }
    for (int i = 0; i < 2; i++) {
        if (bs->norm[i] == NULL) continue;
        float *n = lmp_transformer_norm(J->tf, b, i == 1);
        if ((bs->orig_norm[i] = malloc((size_t) dim * sizeof(float))) != NULL)
            memcpy(bs->orig_norm[i], n, (size_t) dim * sizeof(float));
        memcpy(n, bs->norm[i], (size_t) dim * sizeof(float));
    }
}

static void uninstall(struct job *J, struct block_state *bs, int32_t b) {
    const int64_t dim = J->m->cfg.dim;
    for (int k = 0; k < LMP_LIN_COUNT; k++)
        lmp_transformer_linop(J->tf, b, (enum lmp_lin) k)->w = bs->orig_w[k];
    for (int i = 0; i < 2; i++)
        if (bs->orig_norm[i])
            memcpy(lmp_transformer_norm(J->tf, b, i == 1), bs->orig_norm[i],
                   (size_t) dim * sizeof(float));
}

static const char *const norm_names[2] = {"input_layernorm", "post_attention_layernorm"};

/* Read block b's tuned norms from the artifact if committed; true if both were. */
static enum lmp_status load_norms(struct job *J, struct block_state *bs, int32_t b, bool *have,
                                  struct lmp_err *err) {
    char name[LMP_NAME_MAX];
    *have = true;
    for (int i = 0; i < 2; i++) {
        snprintf(name, sizeof(name), "model.layers.%d.%s.weight", b, norm_names[i]);
        if (!has_tensor(J, name)) { *have = false; return LMP_OK; }
    }
    for (int i = 0; i < 2; i++) {
        snprintf(name, sizeof(name), "model.layers.%d.%s.weight", b, norm_names[i]);
        struct lmp_art_tensor t = {0};
        enum lmp_status st = lmp_artifact_read_tensor(J->a, name, &t, err);
        if (st != LMP_OK) return st;
        int64_t n = 1;
        for (int d = 0; d < t.n_dims; d++) n *= t.shape[d];
        if (t.dtype != LMP_DTYPE_F32 || n != J->m->cfg.dim) {
            lmp_art_tensor_release(&t);
            return lmp_err_set(err, LMP_EFORMAT, "'%s': tensor '%s' has a wrong shape or dtype",
                               J->o->out_path, name);
        }
        bs->norm[i] = t.data;
    }
    return LMP_OK;
}

static enum lmp_status do_block(struct job *J, int32_t b, struct lmp_err *err) {
    const struct lmp_compress_opts *o = J->o;
    const struct lmp_block *B = &J->m->blocks[b];
    const int64_t dim = J->m->cfg.dim;
    const bool rtn = o->spec.method == LMP_COMPRESS_RTN;
    struct block_state bs = {0};
    enum lmp_status st = LMP_OK;
    bool todo = false, have_norms = false, any_q = false;
    double t0;

    for (int k = 0; k < LMP_LIN_COUNT; k++) {
        const int64_t idx = (int64_t) b * LMP_LIN_COUNT + k;
        bs.committed[k] = J->quantized[idx] && lmp_artifact_has_layer(J->a, B->lin[k].name);
        todo = todo || (J->quantized[idx] && !bs.committed[k]);
        any_q = any_q || J->quantized[idx];
    }
    /* a block whose linears are all kept is not fine-tuned (lmp_artifact_put_model_tensors
     * stores its norms as they are), as on the coordinator */
    const bool tune = o->finetune && any_q;
    if (tune && (st = load_norms(J, &bs, b, &have_norms, err))) goto out;

    /* calibration of this block: H (only if something is left to quantize) and the
     * original block output (the fine-tuning target; the next input in independent mode) */
    t0 = now_s();
    if (J->cal) {
        if (todo) lmp_calib_grams_reset(J->grams);
        if ((st = lmp_calib_collect(J->cal, b, todo ? J->grams : NULL, err))) goto out;
    }
    J->S.seconds_calib += now_s() - t0;

    for (int k = 0; k < LMP_LIN_COUNT; k++) {
        const struct lmp_linear *l = &B->lin[k];
        const int64_t idx = (int64_t) b * LMP_LIN_COUNT + k, n = l->n_out * l->n_in;
        if (!J->quantized[idx]) {
            emit(J, LMP_COMPRESS_EV_KEPT, l->name, 0, 0, 16.0, 0, 0);
            J->params_done += n;
            continue;
        }
        if (bs.committed[k]) {
            if ((st = load_committed(J, &bs, k, l->name, err))) goto out;
            J->params_done += n;
            continue;
        }
        t0 = now_s();
        float *w = malloc((size_t) n * sizeof(float));
        if (w == NULL) { st = lmp_err_set(err, LMP_ENOMEM, "out of memory"); goto out; }
        lmp_tensor_rows_f32(l->weight, 0, l->n_out, w);
        const float *h = NULL;
        if (!rtn) {
            if (lmp_calib_grams_h(J->grams, l->input, J->h[l->input]) != LMP_OK) {
                free(w);
                st = lmp_err_set(err, LMP_EINVAL, "layer '%s': no calibration tokens", l->name);
                goto out;
            }
            h = J->h[l->input];
        }
        st = lmp_compress_linear(&bs.res[k], &o->spec, l->name, w, h, l->n_out, l->n_in,
                                 lmp_compress_layer_seed(o->seed, l->name), err);
        free(w);
        if (st != LMP_OK) goto out;
        bs.fresh[k]   = true;
        bs.w_hat[k]   = bs.res[k].w_hat;   /* moved: released with w_hat[] */
        bs.res[k].w_hat = NULL;
        J->S.seconds_quant += now_s() - t0;
        J->params_done += n;
        J->rel_sum += bs.res[k].rel_err_after;
        J->n_rel++;
        J->S.n_quantized++;
        if (!o->finetune) {   /* final now: commit at once */
            struct lmp_art_layer al;
            st = rtn ? rtn_to_layer(&al, &bs.res[k], o->spec.rtn_bits, o->spec.rtn_group,
                                    l->name, err)
                     : result_to_layer(&al, &bs.res[k], l->name, err);
            if (st == LMP_OK) st = lmp_artifact_commit_layer(J->a, &al, err);
            lmp_art_layer_release(&al);
            if (st != LMP_OK) goto out;
        }
        emit(J, LMP_COMPRESS_EV_QUANTIZED, l->name, bs.res[k].rel_err_before,
             bs.res[k].rel_err_after, bs.res[k].bits_per_weight, bs.res[k].seconds,
             bs.res[k].steps);
    }

    /* block fine-tuning: every quantized linear of the block trained together */
    if (tune && (todo || !have_norms)) {
        t0 = now_s();
        struct lmp_ft_block fb = {.cfg = &J->m->cfg};
        float *norm[2];
        for (int i = 0; i < 2; i++) {
            if (bs.norm[i] == NULL) {
                if ((bs.norm[i] = malloc((size_t) dim * sizeof(float))) == NULL) {
                    st = lmp_err_set(err, LMP_ENOMEM, "out of memory");
                    goto out;
                }
                lmp_tensor_rows_f32(i ? B->ffn_norm : B->attn_norm, 0, 1, bs.norm[i]);
            }
            norm[i] = bs.norm[i];
        }
        fb.attn_norm = norm[0];
        fb.ffn_norm  = norm[1];
        struct lmp_ft_opts fo = o->ft;
        fo.train_norms = fo.train_norms && !have_norms;
        fo.n_threads   = o->n_threads;
        fo.seed        = lmp_compress_layer_seed(o->seed, B->lin[0].name) ^ 0x6674ULL;
        float *bias_copy[LMP_LIN_COUNT] = {0};
        for (int k = 0; k < LMP_LIN_COUNT; k++) {
            const struct lmp_linear *l = &B->lin[k];
            if (bs.fresh[k]) fb.lin[k].aq = &bs.res[k].aq;
            else if (bs.committed[k]) fb.lin[k].w = bs.w_hat[k];   /* frozen: already stored */
            else fb.lin[k].w = lmp_transformer_linop(J->tf, b, (enum lmp_lin) k)->w;
            if (l->bias) {   /* not trained (train_bias off) but the forward needs it */
                if ((bias_copy[k] = malloc((size_t) l->n_out * sizeof(float))) == NULL) {
                    for (int q = 0; q < k; q++) free(bias_copy[q]);
                    st = lmp_err_set(err, LMP_ENOMEM, "out of memory");
                    goto out;
                }
                lmp_tensor_rows_f32(l->bias, 0, 1, bias_copy[k]);
                fb.lin[k].bias = bias_copy[k];
            }
        }
        fo.train_bias = false;
        struct lmp_ft_stats fs = {0};
        st = lmp_finetune_block(&fb, lmp_calib_x(J->cal), lmp_calib_y(J->cal),
                                lmp_calib_n_seq(J->cal), lmp_calib_ctx(J->cal), &fo, &fs, err);
        for (int k = 0; k < LMP_LIN_COUNT; k++) free(bias_copy[k]);
        if (st != LMP_OK) goto out;
        J->S.seconds_finetune += now_s() - t0;
        char stage[96];
        snprintf(stage, sizeof(stage), "finetune block %d", b);
        emit(J, LMP_COMPRESS_EV_STAGE, stage, fs.rel_mse_before, fs.rel_mse_after, 0,
             fs.seconds, fs.n_steps);
        /* commit: tuned norms first (a resumed run then keeps them), then the layers */
        if (!have_norms) {
            char name[LMP_NAME_MAX];
            for (int i = 0; i < 2; i++) {
                snprintf(name, sizeof(name), "model.layers.%d.%s.weight", b, norm_names[i]);
                if ((st = put_tensor(J->a, name, i ? B->ffn_norm : B->attn_norm, bs.norm[i], err)))
                    goto out;
            }
        }
        for (int k = 0; k < LMP_LIN_COUNT; k++) {
            if (!bs.fresh[k]) continue;
            const struct lmp_aq_layer *q = &bs.res[k].aq;
            const struct lmp_aq_shape s = {.n_out = q->n_out, .n_in = q->n_in, .M = q->sc.M,
                                           .K = q->sc.K, .g = q->sc.g};
            lmp_kernels_get()->aq_decode(bs.w_hat[k], q->codes, q->codebooks, q->scales, &s);
            struct lmp_art_layer al;
            st = result_to_layer(&al, &bs.res[k], B->lin[k].name, err);
            if (st == LMP_OK) st = lmp_artifact_commit_layer(J->a, &al, err);
            lmp_art_layer_release(&al);
            if (st != LMP_OK) goto out;
        }
    }

    /* the next block's input */
    t0 = now_s();
    if (J->cal) {
        if (o->mode == LMP_COMPRESS_SEQUENTIAL) {
            install(J, &bs, b);
            st = lmp_calib_advance(J->cal, b, err);
            uninstall(J, &bs, b);
            if (st != LMP_OK) goto out;
        } else {
            lmp_calib_take_output(J->cal);
        }
    }
    J->S.seconds_calib += now_s() - t0;
out:
    block_state_release(&bs);
    lmp_transformer_release_block(J->tf, b);   /* one block's weights resident at a time */
    return st;
}

static void job_release(struct job *J) {
    lmp_calib_destroy(&J->cal);
    lmp_calib_grams_destroy(&J->grams);
    lmp_transformer_destroy(&J->tf);
    lmp_artifact_close(&J->a);
    lmp_art_job_release(&J->aj);
    free(J->tokens);
    free(J->quantized);
    for (int i = 0; i < LMP_INPUT_COUNT; i++) free(J->h[i]);
}

enum lmp_status lmp_compress_run(const struct lmp_model *m, const struct lmp_compress_opts *o,
                                 struct lmp_compress_summary *summary, struct lmp_err *err) {
    assert(m && o && o->out_path);
    const double t_start = now_s();
    struct job J = {.m = m, .o = o};
    enum lmp_status st = LMP_OK;
    const bool rtn = o->spec.method == LMP_COMPRESS_RTN;
    const int64_t n_lin = lmp_model_n_linears(m);
    char scheme[64];
    lmp_compress_spec_name(&o->spec, scheme, sizeof(scheme));
    lmp_art_job_init(&J.aj);
    J.S.n_linears = n_lin;

    if (o->finetune && rtn) {
        st = lmp_err_set(err, LMP_EINVAL, "--finetune needs --method aqlm (RTN has no codebooks "
                         "to tune)");
        goto out;
    }
    /* which linears are quantized; every scheme check before any long work */
    if ((J.quantized = calloc((size_t) n_lin, sizeof(bool))) == NULL) {
        st = lmp_err_set(err, LMP_ENOMEM, "out of memory");
        goto out;
    }
    int64_t n_params_all = lmp_model_n_params(m);
    double bits_sum = 0.0;
    for (int64_t i = 0; i < n_lin; i++) {
        const struct lmp_linear *l = lmp_model_linear(m, i);
        const int64_t n = l->n_out * l->n_in;
        J.quantized[i] = !lmp_compress_keep_match(o->keep, o->n_keep, l->name);
        J.n_params_lin += n;
        if (!J.quantized[i]) {
            J.S.n_kept++;
            bits_sum += 16.0 * (double) n;
            continue;
        }
        if ((st = lmp_compress_check(&o->spec, l->name, l->n_out, l->n_in, err))) goto out;
        bits_sum += lmp_compress_bits_per_weight(&o->spec, l->n_out, l->n_in) * (double) n;
    }
    J.S.bits_linear = bits_sum / (double) J.n_params_lin;
    J.S.bits_model  = (bits_sum + 16.0 * (double) (n_params_all - J.n_params_lin)) /
                     (double) n_params_all;

    /* job description: model, calibration, method, scheme */
    if ((st = lmp_art_job_from_model(&J.aj, m))) {
        st = lmp_err_set(err, st, "out of memory describing the model");
        goto out;
    }
    /* lazy weights: the block walk holds one block's fp32 linears (and file pages) at a
     * time, so memory does not grow with the number of blocks */
    struct lmp_transformer_opts topts = {.n_threads = o->n_threads, .lazy_weights = true};
    if ((st = lmp_transformer_new(m, &topts, &J.tf, err))) goto out;

    char keep[160] = "";
    for (int i = 0, off = 0; i < o->n_keep && off < (int) sizeof(keep) - 1; i++)
        off += snprintf(keep + off, sizeof(keep) - (size_t) off, "%s%s", i ? "," : "", o->keep[i]);
    char settings[256];
    double t0 = now_s();
    if (rtn) {
        snprintf(settings, sizeof(settings), "rtn (no calibration) keep=[%s]", keep);
        J.aj.calib_fp = 0;
    } else {
        snprintf(settings, sizeof(settings), "%s n=%lld ctx=%lld seed=%llu mode=%s%s keep=[%s]",
                 o->text_ids ? (o->calib_source ? o->calib_source : "text") : "generate",
                 (long long) o->n_seq, (long long) o->ctx, (unsigned long long) o->seed,
                 o->mode == LMP_COMPRESS_SEQUENTIAL ? "sequential" : "independent",
                 o->finetune ? " finetune" : "", keep);
        J.tokens = malloc((size_t) (o->n_seq * o->ctx) * sizeof(int32_t));
        if (J.tokens == NULL) {
            st = lmp_err_set(err, LMP_ENOMEM, "out of memory for %lld x %lld calibration tokens",
                             (long long) o->n_seq, (long long) o->ctx);
            goto out;
        }
        if (o->text_ids)
            st = lmp_calib_sample_text(J.tokens, o->text_ids, o->n_text_ids, o->n_seq, o->ctx,
                                       o->seed, err);
        else
            st = lmp_calib_generate(J.tokens, J.tf, o->prompt, o->n_prompt, o->n_seq, o->ctx,
                                    o->seed, err);
        /* generation ran the whole model: let go of every block and the head */
        for (int32_t b = 0; b < m->cfg.n_layers; b++) lmp_transformer_release_block(J.tf, b);
        lmp_transformer_release_head(J.tf);
        if (st != LMP_OK) goto out;
        /* the tokens are hashed, so the file's name stays out of the fingerprint */
        const char *src = o->text_ids ? (o->calib_source ? o->calib_source : "text") : "generate";
        J.aj.calib_fp = lmp_fingerprint_calib(J.tokens, o->n_seq * o->ctx,
                                              settings + strlen(src));
        snprintf(J.aj.calib_desc, sizeof(J.aj.calib_desc), "%s", settings);
    }
    if (rtn) snprintf(J.aj.calib_desc, sizeof(J.aj.calib_desc), "%s", settings);
    snprintf(J.aj.method, sizeof(J.aj.method), "%s", rtn ? "rtn" : "aqlm");
    snprintf(J.aj.scheme, sizeof(J.aj.scheme), "%s", scheme);
    J.S.model_fp = J.aj.model_fp;
    J.S.calib_fp = J.aj.calib_fp;

    if ((st = lmp_artifact_open_write(o->out_path, &J.aj, &J.a, err))) goto out;
    if ((st = lmp_artifact_put_tokenizer(J.a, o->tok_kind, o->tok_bytes, o->tok_n, err)))
        goto out;

    if (!rtn) {
        if ((st = lmp_calib_new(J.tf, J.tokens, o->n_seq, o->ctx, &J.cal, err))) goto out;
        lmp_transformer_release_head(J.tf);   /* the embedding rows read, if mapped */
        if ((J.grams = lmp_calib_grams_new(&m->cfg)) == NULL) {
            st = lmp_err_set(err, LMP_ENOMEM, "out of memory for the Gram matrices");
            goto out;
        }
        for (int i = 0; i < LMP_INPUT_COUNT; i++) {
            const int64_t n = lmp_calib_grams_n_in(J.grams, (enum lmp_input) i);
            if ((J.h[i] = malloc((size_t) (n * n) * sizeof(float))) == NULL) {
                st = lmp_err_set(err, LMP_ENOMEM, "out of memory for the Gram matrices");
                goto out;
            }
        }
    }
    J.S.seconds_calib += now_s() - t0;
    emit(&J, LMP_COMPRESS_EV_STAGE, "calibration", 0, 0, 0, now_s() - t0, 0);

    for (int32_t b = 0; b < m->cfg.n_layers; b++)
        if ((st = do_block(&J, b, err))) goto out;
    /* the big unquantized tensors last: the layers, the costly part, are committed first */
    if ((st = lmp_artifact_put_model_tensors(J.a, m, J.quantized, o->finetune, err)) ||
        (st = lmp_artifact_finalize(J.a, err)))
        goto out;
out:
    J.S.n_resumed     = J.n_rel - J.S.n_quantized;
    J.S.mean_rel_err  = J.n_rel ? J.rel_sum / (double) J.n_rel : 0.0;
    J.S.seconds_total = now_s() - t_start;
    if (summary) *summary = J.S;
    job_release(&J);
    return st;
}

enum lmp_status lmp_compress_result_to_layer(struct lmp_art_layer *l,
                                             const struct lmp_compress_result *r,
                                             const struct lmp_compress_spec *spec,
                                             const char *name, struct lmp_err *err) {
    assert(l && r && spec && name);
    return r->method == LMP_COMPRESS_RTN
               ? rtn_to_layer(l, r, spec->rtn_bits, spec->rtn_group, name, err)
               : result_to_layer(l, r, name, err);
}
