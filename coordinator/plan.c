/*  plan - see plan.h */
#include "coordinator/plan.h"
#include "artifact/artifact_model.h" /* defines: lmp_art_tokenizer_source */
#include "artifact/fingerprint.h"    /* defines: lmp_fingerprint_job, struct lmp_fp_settings */
#include "base/fault.h"              /* defines: lmp_fault_sleep */
#include "base/file.h"               /* defines: lmp_file_read_all */
#include "base/mem.h"                /* defines: lmp_mem_budget, lmp_mem_mul */
#include "base/text.h"               /* defines: lmp_str_escape */
#include "coordinator/job_check.h"   /* defines: lmp_job_check */
#include "model/tokenizer.h"         /* defines: lmp_tokenizer_open, lmp_tokenizer_encode */
#include "worker/agent.h"            /* defines: lmp_agent_method_spec */
#include "worker/calib.h"            /* defines: lmp_calib_sample_text, lmp_calib_generate_part */
#include "worker/finetune.h"         /* defines: lmp_ft_opts_init */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* The job's settings, field by field, into the resume fingerprint and the artifact's
 * description (calib_desc), resolved (defaults filled in, as the stages will use them) and
 * whole: every setting that changes what the artifact holds. The one place that decides
 * which. Left out on purpose (docs/artifact.md, "Fingerprints"): the paths of the model,
 * tokenizer and calibration text (their contents are fingerprinted: the model's bytes,
 * the tokens; the text's path is in the words only); what decides only where and how
 * fast the work runs (name, out path, threads, row shards, max attempts, the kernel
 * table); settings a method does not read (the Adam settings of the codebook update when
 * it is conjugate gradient; mode and calibration for RTN); and the JobSpec fields no stage
 * reads (CalibSpec seed and temperature, FinetuneSpec batch_size, pv_tuning, code_ratio,
 * seed: the job seed is MethodSpec.seed). The build is checked apart (artifact.h). */
static void plan_settings(struct lmp_fp_settings *S, const Lmp__JobSpec *s,
                          const struct lmp_compress_spec *cs, const char *calib_path, int64_t n_seq,
                          int64_t ctx) {
    const char *const *keep = (const char *const *)s->keep;
    /* the embedding's and head's storage: named only when not the default, so the jobs
     * of before it was a setting keep their fingerprint */
    if (coord_spec_embed_bits(s, false) != 16)
        lmp_fp_settings_i64(S, "embed_bits", coord_spec_embed_bits(s, false));
    if (coord_spec_embed_bits(s, true) != 16)
        lmp_fp_settings_i64(S, "head_bits", coord_spec_embed_bits(s, true));
    if (cs->method == LMP_COMPRESS_RTN) {
        lmp_fp_settings_str(S, "method", "rtn");
        lmp_fp_settings_i64(S, "bits", cs->rtn_bits);
        lmp_fp_settings_i64(S, "group", cs->rtn_group);
        lmp_fp_settings_list(S, "keep", keep, s->n_keep);
        return;
    }
    if (calib_path)
        lmp_fp_settings_note(S, "calib", calib_path); /* its tokens are hashed */
    else
        lmp_fp_settings_str(S, "calib", "generate");
    lmp_fp_settings_i64(S, "nsamples", n_seq);
    lmp_fp_settings_i64(S, "ctx", ctx);
    lmp_fp_settings_i64(S, "seed", (int64_t)s->method->seed);
    lmp_fp_settings_str(S, "mode",
                        s->mode == LMP__MODE__MODE_SEQUENTIAL ? "sequential" : "independent");
    lmp_fp_settings_list(S, "keep", keep, s->n_keep);
    const struct lmp_aq_opts *a = &cs->aq;
    char                      scheme[64];
    lmp_compress_spec_name(cs, scheme, sizeof(scheme));
    lmp_fp_settings_str(S, "method", "aqlm");
    lmp_fp_settings_str(S, "scheme", scheme);
    lmp_fp_settings_i64(S, "beam", a->beam);
    lmp_fp_settings_i64(S, "max_rounds", a->max_rounds);
    lmp_fp_settings_f64(S, "tol", a->tol);
    lmp_fp_settings_i64(S, "max_steps", a->max_adam_steps);
    lmp_fp_settings_i64(S, "kmeans_iters", a->kmeans_iters);
    lmp_fp_settings_i64(S, "kmeans_points", a->kmeans_max_points);
    lmp_fp_settings_f64(S, "damp", a->damp);
    lmp_fp_settings_i64(S, "cg_iters", a->cg_iters);
    if (a->cg_iters <= 0) { /* Adam updates the codebooks: its settings count */
        lmp_fp_settings_i64(S, "adam_steps", a->adam_steps);
        lmp_fp_settings_f64(S, "lr", a->lr);
        lmp_fp_settings_f64(S, "beta1", a->beta1);
        lmp_fp_settings_f64(S, "beta2", a->beta2);
    }
    const Lmp__FinetuneSpec *f = s->finetune;
    if (f && f->enabled) { /* resolved as the worker resolves them (worker/agent.c) */
        struct lmp_ft_opts fo;
        lmp_ft_opts_init(&fo);
        lmp_fp_settings_str(S, "finetune", "on");
        lmp_fp_settings_i64(S, "ft_epochs", f->epochs > 0 ? (int64_t)f->epochs : fo.max_epochs);
        lmp_fp_settings_i64(S, "ft_max_steps", f->max_steps > 0 ? (int64_t)f->max_steps : 0);
        lmp_fp_settings_f64(S, "ft_lr", f->lr > 0 && isfinite(f->lr) ? f->lr : fo.lr);
        lmp_fp_settings_i64(S, "ft_batch", fo.batch_seqs);
        lmp_fp_settings_f64(S, "ft_tol", fo.tol);
    } else {
        lmp_fp_settings_str(S, "finetune", "off");
    }
}

int coord_spec_embed_bits(const Lmp__JobSpec *spec, bool head) {
    const int e = spec->embed_bits ? (int)spec->embed_bits : 16;
    return head && spec->head_bits ? (int)spec->head_bits : e;
}

Lmp__JobSpec *coord_spec_copy(const Lmp__JobSpec *spec) {
    const size_t  n    = lmp__job_spec__get_packed_size(spec);
    uint8_t      *buf  = malloc(n ? n : 1);
    Lmp__JobSpec *copy = NULL;
    if (buf) {
        lmp__job_spec__pack(spec, buf);
        copy = lmp__job_spec__unpack(NULL, n, buf);
    }
    free(buf);
    return copy;
}

enum lmp_status coord_plan_job(struct job *J, const Lmp__JobSpec *spec_in, struct lmp_err *err) {
    enum lmp_status       st        = LMP_OK;
    struct lmp_tokenizer *tok       = NULL;
    char                 *text      = NULL;
    int32_t              *ids       = NULL;
    uint8_t              *tok_bytes = NULL;
    size_t                tok_n = 0, len = 0;
    if ((J->spec = coord_spec_copy(spec_in)) == NULL) { /* own a copy of the spec */
        st = lmp_err_set(err, LMP_ENOMEM, "cannot copy the job spec");
        goto out;
    }
    const Lmp__JobSpec *s = J->spec;
    /* the checks a client's JobSubmit gets on the wire, whoever handed this spec over */
    if ((st = lmp_job_spec_check(s, s->out_path && s->out_path[0] ? s->out_path : "job spec", err)))
        goto out;
    if (s->mode != LMP__MODE__MODE_INDEPENDENT && s->mode != LMP__MODE__MODE_SEQUENTIAL) {
        st = lmp_err_set(err, LMP_EINVAL, "job mode %d is neither sequential nor independent",
                         (int)s->mode);
        goto out;
    }
    for (int h = 0; h < 2; h++) { /* docs/artifact.md, "Quantized tensors" */
        const uint32_t b = h ? s->head_bits : s->embed_bits;
        if (b != 0 && b != 16 && b != 8 && b != 4) {
            st = lmp_err_set(err, LMP_EINVAL, "%s %u: the embedding and head take 16, 8 or 4 bits",
                             h ? "head_bits" : "embed_bits", b);
            goto out;
        }
    }
    const bool ft = s->finetune && s->finetune->enabled;
    if ((st = lmp_agent_method_spec(s->method, &J->cspec, err))) goto out;
    const bool     rtn  = J->cspec.method == LMP_COMPRESS_RTN;
    const uint64_t seed = s->method->seed;
    if ((st = lmp_model_open(s->model_path, &J->m, err))) goto out;
    lmp_fault_sleep("LMP_FAULT_PLAN_SLEEP_MS"); /* tests: planning a large model */
    const struct lmp_model *m = J->m;
    /* fail fast (coordinator/job_check.h): --keep patterns, scheme fit, calibration file */
    if ((st = lmp_job_check(m, &J->cspec, (const char *const *)s->keep, (int)s->n_keep,
                            s->calib && s->calib->source == LMP__CALIB_SOURCE__CALIB_SOURCE_FILE
                                ? s->calib->path
                                : NULL,
                            ft, err)))
        goto out;
    if ((coord_spec_embed_bits(s, false) != 16 ||
         (!m->cfg.tied_embeddings && coord_spec_embed_bits(s, true) != 16)) &&
        m->cfg.dim % 32 != 0) {
        st = lmp_err_set(err, LMP_EINVAL,
                         "the embedding is quantized in blocks of 32 along its rows: the model's "
                         "width %d is not a multiple of 32 (use --embed-bits 16)",
                         m->cfg.dim);
        goto out;
    }
    const int64_t n_lin = lmp_model_n_linears(m);
    if ((J->quantized = calloc((size_t)n_lin, sizeof(bool))) == NULL ||
        (J->tasks = calloc((size_t)n_lin, sizeof(struct task))) == NULL) {
        st = lmp_err_set(err, LMP_ENOMEM, "out of memory");
        goto out;
    }
    for (int64_t i = 0; i < n_lin; i++) {
        const struct lmp_linear *l = lmp_model_linear(m, i);
        J->quantized[i] =
            !lmp_compress_keep_match((const char *const *)s->keep, (int)s->n_keep, l->name);
        if (!J->quantized[i]) continue;
        if ((st = lmp_compress_check(&J->cspec, l->name, l->n_out, l->n_in, err))) goto out;
        J->tasks[J->n_tasks++] = (struct task){
            .lin = i, .l = l, .worker = -1, .state = LMP__TASK_STATE__TASK_STATE_PENDING};
        J->params_total += (double)(l->n_out * l->n_in);
    }
    if ((st = lmp_art_job_from_model(&J->aj, m))) {
        st = lmp_err_set(err, st, "out of memory describing the model");
        goto out;
    }
    const char *tok_path = s->tokenizer_path && s->tokenizer_path[0] ? s->tokenizer_path : NULL;
    enum lmp_art_tok tok_kind;
    if ((st = lmp_tokenizer_open(tok_path, m, &tok, err)) ||
        (st = lmp_art_tokenizer_source(m, tok_path, &tok_kind, &tok_bytes, &tok_n, err)))
        goto out;
    char scheme[64];
    lmp_compress_spec_name(&J->cspec, scheme, sizeof(scheme));
    struct lmp_fp_settings fs;
    lmp_fp_settings_init(&fs);
    if (rtn) {
        plan_settings(&fs, s, &J->cspec, NULL, 0, 0);
        J->aj.calib_fp = lmp_fingerprint_job(NULL, 0, lmp_fp_settings_digest(&fs));
    } else {
        const Lmp__CalibSpec *cs      = s->calib;
        const int             max_seq = m->cfg.max_seq;
        const bool            gen     = cs->source == LMP__CALIB_SOURCE__CALIB_SOURCE_GENERATE;
        int64_t               n_seq = cs->nsamples ? cs->nsamples : 128, ctx = cs->ctx;
        if (ctx == 0) ctx = max_seq > 0 && max_seq < 512 ? max_seq : 512;
        if (!gen && cs->source != LMP__CALIB_SOURCE__CALIB_SOURCE_FILE) {
            st = lmp_err_set(err, LMP_EINVAL, "unknown calibration source %d", (int)cs->source);
            goto settings_out;
        }
        if (max_seq > 0 && ctx > max_seq) {
            st = lmp_err_set(err, LMP_EINVAL,
                             "context length %lld exceeds the model's maximum of %d",
                             (long long)ctx, max_seq);
            goto settings_out;
        }
        /* the memory budget (base/mem.h), before anything of that size is allocated */
        if ((st = lmp_calib_check_budget(n_seq, ctx, m->cfg.dim, err))) goto settings_out;
        if ((J->tokens = malloc((size_t)(n_seq * ctx) * sizeof(int32_t))) == NULL) {
            st = lmp_err_set(err, LMP_ENOMEM, "out of memory for the calibration tokens");
            goto settings_out;
        }
        if (gen) {
            const int threads = s->threads ? (int)s->threads : 1;
            /* the model writes n_seq sequences of ctx tokens itself (worker/calib.h) */
            if ((st = lmp_calib_generate_part(J->tokens, m, tok, n_seq, ctx, seed, 0, 1, threads,
                                              err)))
                goto settings_out;
        } else {
            int64_t     n_ids = 0;
            struct stat sb;
            /* the text is read whole and tokenized (at most one 4-byte id per byte): it
             * counts against the memory budget too */
            if (stat(cs->path, &sb) == 0 && S_ISREG(sb.st_mode) &&
                lmp_mem_mul((uint64_t)sb.st_size, 5, 1) > lmp_mem_budget()) {
                char q[160];
                st = lmp_err_set(err, LMP_EUNSUP,
                                 "calibration text '%s' (%lld MiB) is too big to tokenize within "
                                 "this machine's memory budget (half its memory, or "
                                 "LMP_MEM_BUDGET): use a shorter text",
                                 lmp_str_escape(q, sizeof(q), cs->path),
                                 (long long)(sb.st_size >> 20));
                goto settings_out;
            }
            if ((st = lmp_file_read_all(cs->path, &text, &len, err)) ||
                (st = lmp_tokenizer_encode(tok, text, len, true, &ids, &n_ids, err)))
                goto settings_out;
            /* windows are drawn with replacement (as AQLM's), but never more tokens than
             * the text has: more would only repeat it, at the memory cost of new ones */
            if (n_seq * ctx > n_ids) { /* input rejected (exit 4), as a missing text */
                char q[160], fix[80];
                if (n_ids >= ctx)
                    snprintf(fix, sizeof(fix), "at most %lld sample%s", (long long)(n_ids / ctx),
                             n_ids / ctx == 1 ? "" : "s");
                else
                    snprintf(fix, sizeof(fix), "--ctx at most %lld", (long long)n_ids);
                st = lmp_err_set(err, LMP_EUNSUP,
                                 "calibration text '%s' has %lld tokens, fewer than --nsamples "
                                 "%lld x --ctx %lld = %lld: use a longer text or %s",
                                 lmp_str_escape(q, sizeof(q), cs->path), (long long)n_ids,
                                 (long long)n_seq, (long long)ctx, (long long)(n_seq * ctx), fix);
                goto settings_out;
            }
            if ((st = lmp_calib_sample_text(J->tokens, ids, n_ids, n_seq, ctx, seed, err)))
                goto settings_out;
        }
        plan_settings(&fs, s, &J->cspec, gen ? NULL : cs->path, n_seq, ctx);
        J->aj.calib_fp = lmp_fingerprint_job(J->tokens, n_seq * ctx, lmp_fp_settings_digest(&fs));
        /* calibration slices: the workers compute them (see coord.h) */
        J->n_seq = n_seq, J->ctx = ctx;
        J->n_slices     = lmp_calib_n_slices(n_seq);
        const int64_t k = lmp_calib_slice_seqs(n_seq);
        if ((J->slices = calloc((size_t)J->n_slices, sizeof(*J->slices))) == NULL ||
            (J->cblocks = calloc((size_t)m->cfg.n_layers, sizeof(*J->cblocks))) == NULL ||
            (J->need_block = calloc((size_t)m->cfg.n_layers, sizeof(bool))) == NULL) {
            st = lmp_err_set(err, LMP_ENOMEM, "out of memory");
            goto settings_out;
        }
        for (int64_t i = 0; i < J->n_slices; i++)
            J->slices[i] = (struct cslice){.begin  = i * k,
                                           .end    = (i + 1) * k < n_seq ? (i + 1) * k : n_seq,
                                           .worker = -1,
                                           .owner  = -1};
    }
    if (fs.desc.failed || lmp_art_job_set_text(&J->aj.calib_desc, lmp_strbuf_str(&fs.desc)))
        st = lmp_err_set(err, LMP_ENOMEM, "out of memory describing the job");
settings_out:
    lmp_fp_settings_release(&fs);
    if (st != LMP_OK) goto out;
    if (ft && rtn) {
        st = lmp_err_set(err, LMP_EINVAL,
                         "--finetune needs --method aqlm (RTN has no codebooks to tune)");
        goto out;
    }
    snprintf(J->aj.method, sizeof(J->aj.method), "%s", rtn ? "rtn" : "aqlm");
    snprintf(J->aj.scheme, sizeof(J->aj.scheme), "%s", scheme);
    if ((st = lmp_artifact_open_write(s->out_path, &J->aj, &J->a, err)) ||
        (st = lmp_artifact_put_tokenizer(J->a, tok_kind, tok_bytes, tok_n, err)))
        goto out;
    for (int64_t i = 0; i < J->n_tasks; i++)
        if (lmp_artifact_has_layer(J->a, J->tasks[i].l->name)) {
            J->tasks[i].state = LMP__TASK_STATE__TASK_STATE_DONE;
            snprintf(J->tasks[i].worker_name, sizeof(J->tasks[i].worker_name), "(resumed)");
            J->n_done++;
        }
out:
    free(text);
    free(ids);
    free(tok_bytes);
    lmp_tokenizer_free(&tok);
    return st;
}
