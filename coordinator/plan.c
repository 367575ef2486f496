/*  plan - see plan.h */
#include "coordinator/plan.h"
#include "artifact/artifact_model.h" /* defines: lmp_art_tokenizer_source */
#include "artifact/fingerprint.h"    /* defines: lmp_fingerprint_calib */
#include "base/fault.h"              /* defines: lmp_fault_sleep */
#include "base/file.h"               /* defines: lmp_file_read_all */
#include "coordinator/job_check.h"   /* defines: lmp_job_check */
#include "model/tokenizer.h"         /* defines: lmp_tokenizer_open, lmp_tokenizer_encode */
#include "model/transformer.h"       /* defines: lmp_transformer_new */
#include "worker/agent.h"            /* defines: lmp_agent_method_spec */
#include "worker/calib.h"            /* defines: lmp_calib_sample_text, lmp_calib_n_slices */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The job's settings as the artifact describes them (calib_desc) and as the resume
 * fingerprint hashes them (all but the leading calibration source, whose tokens are hashed
 * instead): the one place that words them. src is the text file or "generate"; RTN has no
 * calibration. RET the length of the source prefix in buf. */
static size_t plan_settings(char *buf, size_t n, const Lmp__JobSpec *s, bool rtn, const char *src,
                            int64_t n_seq, int64_t ctx) {
    char keep[160] = "";
    for (size_t i = 0, off = 0; i < s->n_keep && off < sizeof(keep) - 1; i++)
        off += (size_t)snprintf(keep + off, sizeof(keep) - off, "%s%s", i ? "," : "", s->keep[i]);
    if (rtn) {
        snprintf(buf, n, "rtn (no calibration) keep=[%s]", keep);
        return 0;
    }
    const bool ft = s->finetune && s->finetune->enabled;
    snprintf(buf, n, "%s n=%lld ctx=%lld seed=%llu mode=%s%s keep=[%s]", src, (long long)n_seq,
             (long long)ctx, (unsigned long long)s->method->seed,
             s->mode == LMP__MODE__MODE_SEQUENTIAL ? "sequential" : "independent",
             ft ? " finetune" : "", keep);
    const size_t n_src = strlen(src);
    return n_src < n ? n_src : n - 1;
}

/* --calib generate: n_seq sequences of ctx tokens the model writes itself (worker/calib.h,
 * lmp_calib_generate) from its BOS token, or from a neutral opening when the tokenizer has
 * none; threads for the forward passes. */
static enum lmp_status plan_generate(int32_t *tokens, const struct lmp_model *m,
                                     const struct lmp_tokenizer *tok, int64_t n_seq, int64_t ctx,
                                     uint64_t seed, int threads, struct lmp_err *err) {
    int32_t  bos = lmp_tokenizer_bos(tok), *prompt = &bos;
    int64_t  n_prompt = 1;
    int32_t *enc = NULL;
    if (bos < 0) {
        static const char opening[] = "Once upon a time";
        enum lmp_status   st =
            lmp_tokenizer_encode(tok, opening, sizeof(opening) - 1, false, &enc, &n_prompt, err);
        if (st != LMP_OK) return st;
        prompt = enc;
    }
    /* lazy weights: generation holds one block's fp32 linears at a time */
    struct lmp_transformer_opts to = {.n_threads = threads, .lazy_weights = true};
    struct lmp_transformer     *tf = NULL;
    enum lmp_status             st = lmp_transformer_new(m, &to, &tf, err);
    if (st == LMP_OK) st = lmp_calib_generate(tokens, tf, prompt, n_prompt, n_seq, ctx, seed, err);
    lmp_transformer_destroy(&tf);
    free(enc);
    return st;
}

enum lmp_status coord_plan_job(struct job *J, const Lmp__JobSpec *spec_in, struct lmp_err *err) {
    enum lmp_status       st = LMP_OK;
    struct lmp_tokenizer *tok = NULL;
    char                 *text = NULL;
    int32_t              *ids = NULL;
    uint8_t              *tok_bytes = NULL;
    size_t                tok_n = 0, len = 0, plen;
    uint8_t              *packed = NULL;
    /* own a copy of the spec */
    plen = lmp__job_spec__get_packed_size(spec_in);
    if ((packed = malloc(plen ? plen : 1)) == NULL) {
        st = lmp_err_set(err, LMP_ENOMEM, "out of memory");
        goto out;
    }
    lmp__job_spec__pack(spec_in, packed);
    if ((J->spec = lmp__job_spec__unpack(NULL, plen, packed)) == NULL) {
        st = lmp_err_set(err, LMP_ENOMEM, "cannot copy the job spec");
        goto out;
    }
    const Lmp__JobSpec *s = J->spec;
    if (s->mode != LMP__MODE__MODE_INDEPENDENT && s->mode != LMP__MODE__MODE_SEQUENTIAL) {
        st = lmp_err_set(err, LMP_EINVAL, "job mode %d is neither sequential nor independent",
                         (int)s->mode);
        goto out;
    }
    const bool ft = s->finetune && s->finetune->enabled;
    if ((st = lmp_agent_method_spec(s->method, &J->cspec, err))) goto out;
    const bool     rtn = J->cspec.method == LMP_COMPRESS_RTN;
    const uint64_t seed = s->method->seed;
    if ((st = lmp_model_open(s->model_path, &J->m, err))) goto out;
    lmp_fault_sleep("LMP_FAULT_PLAN_SLEEP_MS"); /* tests: planning a large model */
    const struct lmp_model *m = J->m;
    /* fail fast (coordinator/job_check.h): --keep patterns, scheme fit, calibration file */
    if ((st = lmp_job_check(m, &J->cspec, (const char *const *)s->keep, (int)s->n_keep,
                            s->calib && s->calib->source == LMP__CALIB_SOURCE__CALIB_SOURCE_FILE
                                ? s->calib->path
                                : NULL,
                            err)))
        goto out;
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
    if (rtn) {
        plan_settings(J->aj.calib_desc, sizeof(J->aj.calib_desc), s, true, "", 0, 0);
    } else {
        const Lmp__CalibSpec *cs = s->calib;
        const int             max_seq = m->cfg.max_seq;
        const bool            gen = cs->source == LMP__CALIB_SOURCE__CALIB_SOURCE_GENERATE;
        int64_t               n_seq = cs->nsamples ? cs->nsamples : 128, ctx = cs->ctx;
        if (ctx == 0) ctx = max_seq > 0 && max_seq < 512 ? max_seq : 512;
        if (!gen && cs->source != LMP__CALIB_SOURCE__CALIB_SOURCE_FILE) {
            st = lmp_err_set(err, LMP_EINVAL, "unknown calibration source %d", (int)cs->source);
            goto out;
        }
        if (max_seq > 0 && ctx > max_seq) {
            st = lmp_err_set(err, LMP_EINVAL,
                             "context length %lld exceeds the model's maximum of %d",
                             (long long)ctx, max_seq);
            goto out;
        }
        if ((J->tokens = malloc((size_t)(n_seq * ctx) * sizeof(int32_t))) == NULL) {
            st = lmp_err_set(err, LMP_ENOMEM, "out of memory for the calibration tokens");
            goto out;
        }
        if (gen) {
            const int threads = s->threads ? (int)s->threads : 1;
            if ((st = plan_generate(J->tokens, m, tok, n_seq, ctx, seed, threads, err))) goto out;
        } else {
            int64_t n_ids = 0;
            if ((st = lmp_file_read_all(cs->path, &text, &len, err)) ||
                (st = lmp_tokenizer_encode(tok, text, len, true, &ids, &n_ids, err)) ||
                (st = lmp_calib_sample_text(J->tokens, ids, n_ids, n_seq, ctx, seed, err)))
                goto out;
        }
        /* the tokens are hashed, so the file's name stays out of the fingerprint */
        const char  *src = gen ? "generate" : cs->path;
        const size_t n_src =
            plan_settings(J->aj.calib_desc, sizeof(J->aj.calib_desc), s, false, src, n_seq, ctx);
        J->aj.calib_fp = lmp_fingerprint_calib(J->tokens, n_seq * ctx, J->aj.calib_desc + n_src);
        /* calibration slices: the workers compute them (see coord.h) */
        J->n_seq = n_seq, J->ctx = ctx;
        J->n_slices = lmp_calib_n_slices(n_seq);
        const int64_t k = lmp_calib_slice_seqs(n_seq);
        if ((J->slices = calloc((size_t)J->n_slices, sizeof(*J->slices))) == NULL ||
            (J->cblocks = calloc((size_t)m->cfg.n_layers, sizeof(*J->cblocks))) == NULL ||
            (J->need_block = calloc((size_t)m->cfg.n_layers, sizeof(bool))) == NULL) {
            st = lmp_err_set(err, LMP_ENOMEM, "out of memory");
            goto out;
        }
        for (int64_t i = 0; i < J->n_slices; i++)
            J->slices[i] = (struct cslice){.begin = i * k,
                                           .end = (i + 1) * k < n_seq ? (i + 1) * k : n_seq,
                                           .worker = -1,
                                           .owner = -1};
    }
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
    free(packed);
    free(text);
    free(ids);
    free(tok_bytes);
    lmp_tokenizer_free(&tok);
    return st;
}
