/*  job_check - see job_check.h */
#include "coordinator/job_check.h"
#include "base/text.h" /* defines: lmp_str_escape */

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* LMP_ENOENT unless path is a regular file this process can read; LMP_EFORMAT when it
 * is empty */
static enum lmp_status check_calib_file(const char *path, struct lmp_err *err) {
    char q[256];
    lmp_str_escape(q, sizeof(q), path);
    /* O_NONBLOCK: a FIFO named as the text must be refused, not wait for a writer */
    const int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        const int e = errno;
        return lmp_err_set(err, LMP_ENOENT, "calibration file '%s': %s", q, strerror(e));
    }
    struct stat st;
    const bool  regular = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
    close(fd);
    if (!regular)
        return lmp_err_set(err, LMP_ENOENT, "calibration file '%s': not a regular file", q);
    if (st.st_size == 0) /* no text: as rejected as a missing file (exit 4, not 1) */
        return lmp_err_set(err, LMP_EFORMAT, "calibration file '%s': empty", q);
    return LMP_OK;
}

enum lmp_status lmp_job_spec_check(const Lmp__JobSpec *spec, const char *from,
                                   struct lmp_err *err) {
    char q[256];
    lmp_str_escape(q, sizeof(q), from ? from : "?");
    if (spec == NULL) return lmp_err_set(err, LMP_EPROTO, "'%s': no job spec", q);
    Lmp__Envelope  env;
    Lmp__JobSubmit js = LMP__JOB_SUBMIT__INIT;
    lmp_wire_init(&env, 0, 0);
    js.spec        = (Lmp__JobSpec *)spec; /* read only */
    env.body_case  = LMP__ENVELOPE__BODY_JOB_SUBMIT;
    env.job_submit = &js;
    return lmp_wire_validate(&env, q, err);
}

enum lmp_status lmp_job_check(const struct lmp_model *m, const struct lmp_compress_spec *spec,
                              const char *const *keep, int n_keep, const char *calib_path,
                              bool train, struct lmp_err *err) {
    assert(m && spec && (keep || n_keep == 0));
    /* what the block backward cannot run (model/model.h; Gemma 3 and Qwen3 train) */
    if (train) {
        enum lmp_status trainable =
            lmp_model_check_trainable(m, "block fine-tuning or PV-Tuning", err);
        if (trainable != LMP_OK) {
            char msg[sizeof(err->msg)];
            snprintf(msg, sizeof(msg), "%s", err->msg);
            return lmp_err_reset(err, trainable,
                                 "%s; it compresses without --finetune and --pv (format 3)", msg);
        }
    }
    const int64_t n_lin = lmp_model_n_linears(m);
    for (int k = 0; k < n_keep; k++) {
        bool hit = false;
        for (int64_t i = 0; i < n_lin && !hit; i++)
            hit = lmp_compress_keep_match(&keep[k], 1, lmp_model_linear(m, i)->name);
        if (!hit) {
            char qk[160], qm[256], ql[160];
            return lmp_err_set(
                err, LMP_EINVAL,
                "--keep '%s' matches no linear layer of '%s' (their names look "
                "like '%s')",
                lmp_str_escape(qk, sizeof(qk), keep[k]),
                lmp_str_escape(qm, sizeof(qm), m->path ? m->path : "the model"),
                lmp_str_escape(ql, sizeof(ql),
                               n_lin > 0 ? lmp_model_linear(m, n_lin - 1)->name : ""));
        }
    }
    for (int64_t i = 0; i < n_lin; i++) {
        const struct lmp_linear *l = lmp_model_linear(m, i);
        if (lmp_compress_keep_match(keep, n_keep, l->name)) continue;
        enum lmp_status st = lmp_compress_check(spec, l->name, l->n_out, l->n_in, err);
        if (st != LMP_OK) return st;
    }
    if (calib_path && spec->method == LMP_COMPRESS_AQLM) return check_calib_file(calib_path, err);
    return LMP_OK;
}
