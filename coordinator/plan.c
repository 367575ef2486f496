/*  plan - see plan.h */
#include "coordinator/plan.h"
#include "artifact/artifact_model.h"   /* defines: lmp_art_tokenizer_source */
#include "artifact/fingerprint.h"      /* defines: lmp_fingerprint_calib */
#include "base/fault.h"                /* defines: lmp_fault_sleep */
#include "base/file.h"                 /* defines: lmp_file_read_all */
#include "coordinator/job_check.h"     /* defines: lmp_job_check */
#include "model/tokenizer.h"           /* defines: lmp_tokenizer_open, lmp_tokenizer_encode */
#include "worker/agent.h"              /* defines: lmp_agent_method_spec */
#include "worker/calib.h"              /* defines: lmp_calib_sample_text, lmp_calib_n_slices */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum lmp_status coord_plan_job(struct job *J, const Lmp__JobSpec *spec_in, struct lmp_err *err) {
    enum lmp_status       st  = LMP_OK;
    struct lmp_tokenizer *tok = NULL;
    char                 *text = NULL;
    int32_t              *ids  = NULL;
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
                         (int) s->mode);
        goto out;
    }
    const bool ft = s->finetune && s->finetune->enabled;
    if (ft && s->mode != LMP__MODE__MODE_SEQUENTIAL) {
        st = lmp_err_set(err, LMP_EINVAL,
                         "the coordinator fine-tunes blocks in sequential mode only: "
                         "use 'lmpress compress --finetune --mode independent'");
        goto out;
    }
    if ((st = lmp_agent_method_spec(s->method, &J->cspec, err))) goto out;
    const bool     rtn  = J->cspec.method == LMP_COMPRESS_RTN;
    const uint64_t seed = s->method->seed;
    if ((st = lmp_model_open(s->model_path, &J->m, err))) goto out;
    lmp_fault_sleep("LMP_FAULT_PLAN_SLEEP_MS");   /* tests: planning a large model */
    const struct lmp_model *m     = J->m;
    /* fail fast (coordinator/job_check.h): --keep patterns, scheme fit, calibration file */
    if ((st = lmp_job_check(m, &J->cspec, (const char *const *) s->keep, (int) s->n_keep,
                            s->calib && s->calib->source == LMP__CALIB_SOURCE__CALIB_SOURCE_FILE
                                ? s->calib->path : NULL, err)))
        goto out;
    const int64_t           n_lin = lmp_model_n_linears(m);
    if ((J->quantized = calloc((size_t) n_lin, sizeof(bool))) == NULL ||
        (J->tasks = calloc((size_t) n_lin, sizeof(struct task))) == NULL) {
        st = lmp_err_set(err, LMP_ENOMEM, "out of memory");
        goto out;
    }
    for (int64_t i = 0; i < n_lin; i++) {
        const struct lmp_linear *l = lmp_model_linear(m, i);
        J->quantized[i] = !lmp_compress_keep_match((const char *const *) s->keep, (int) s->n_keep,
                                                   l->name);
        if (!J->quantized[i]) continue;
        if ((st = lmp_compress_check(&J->cspec, l->name, l->n_out, l->n_in, err))) goto out;
        J->tasks[J->n_tasks++] = (struct task){.lin = i, .l = l, .worker = -1,
                                               .state = LMP__TASK_STATE__TASK_STATE_PENDING};
        J->params_total += (double) (l->n_out * l->n_in);
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
    /* the keep list and settings, worded exactly as lmp_compress_run words them */
    char keep[160] = "";
    for (size_t i = 0, off = 0; i < s->n_keep && off < sizeof(keep) - 1; i++)
        off += (size_t) snprintf(keep + off, sizeof(keep) - off, "%s%s", i ? "," : "", s->keep[i]);
    char settings[256], scheme[64];
    lmp_compress_spec_name(&J->cspec, scheme, sizeof(scheme));
    if (rtn) {
        snprintf(settings, sizeof(settings), "rtn (no calibration) keep=[%s]", keep);
        snprintf(J->aj.calib_desc, sizeof(J->aj.calib_desc), "%s", settings);
    } else {
        const Lmp__CalibSpec *cs      = s->calib;
        const int             max_seq = m->cfg.max_seq;
        int64_t n_seq = cs->nsamples ? cs->nsamples : 128, ctx = cs->ctx;
        if (ctx == 0) ctx = max_seq > 0 && max_seq < 512 ? max_seq : 512;
        if (cs->source != LMP__CALIB_SOURCE__CALIB_SOURCE_FILE) {
            st = lmp_err_set(err, LMP_EUNSUP, "the coordinator calibrates from a text file only "
                             "(--calib generate runs in 'lmpress compress')");
            goto out;
        }
        if (max_seq > 0 && ctx > max_seq) {
            st = lmp_err_set(err, LMP_EINVAL, "context length %lld exceeds the model's maximum of %d",
                             (long long) ctx, max_seq);
            goto out;
        }
        int64_t n_ids = 0;
        if ((st = lmp_file_read_all(cs->path, &text, &len, err)) ||
            (st = lmp_tokenizer_encode(tok, text, len, true, &ids, &n_ids, err)))
            goto out;
        if ((J->tokens = malloc((size_t) (n_seq * ctx) * sizeof(int32_t))) == NULL) {
            st = lmp_err_set(err, LMP_ENOMEM, "out of memory for the calibration tokens");
            goto out;
        }
        if ((st = lmp_calib_sample_text(J->tokens, ids, n_ids, n_seq, ctx, seed, err))) goto out;
        snprintf(settings, sizeof(settings), "%s n=%lld ctx=%lld seed=%llu mode=%s%s keep=[%s]",
                 cs->path, (long long) n_seq, (long long) ctx, (unsigned long long) seed,
                 s->mode == LMP__MODE__MODE_SEQUENTIAL ? "sequential" : "independent",
                 ft ? " finetune" : "", keep);
        J->aj.calib_fp = lmp_fingerprint_calib(J->tokens, n_seq * ctx, settings + strlen(cs->path));
        snprintf(J->aj.calib_desc, sizeof(J->aj.calib_desc), "%s", settings);
        /* calibration slices: the workers compute them (see coord.h) */
        J->n_seq = n_seq, J->ctx = ctx;
        J->n_slices = lmp_calib_n_slices(n_seq);
        const int64_t k = lmp_calib_slice_seqs(n_seq);
        if ((J->slices = calloc((size_t) J->n_slices, sizeof(*J->slices))) == NULL ||
            (J->cblocks = calloc((size_t) m->cfg.n_layers, sizeof(*J->cblocks))) == NULL ||
            (J->need_block = calloc((size_t) m->cfg.n_layers, sizeof(bool))) == NULL) {
            st = lmp_err_set(err, LMP_ENOMEM, "out of memory");
            goto out;
        }
        for (int64_t i = 0; i < J->n_slices; i++)
            J->slices[i] = (struct cslice){.begin = i * k, .end = (i + 1) * k < n_seq ? (i + 1) * k : n_seq,
                                           .worker = -1, .owner = -1};
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
