/*  test_job_check - lmp_job_check on stories260K: --keep patterns that match nothing, a
 *  scheme that does not fit a layer, a calibration file that cannot be read */
#include "coordinator/job_check.h"
#include "tests/check.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static struct lmp_model *open_stories(void) {
    const char *path = check_shared_file(0, "models/stories260K/stories260K.bin");
    if (path == NULL) return NULL;
    struct lmp_model *m   = NULL;
    struct lmp_err    err = {0};
    if (lmp_model_open(path, &m, &err) != LMP_OK) fprintf(stderr, "%s\n", err.msg);
    CHECK(m != NULL);
    return m;
}

static struct lmp_compress_spec aqlm(int M, int B, int g) {
    struct lmp_compress_spec s;
    lmp_compress_spec_init(&s);
    s.sc = (struct lmp_aq_scheme){.M = M, .B = B, .g = g, .K = 1 << B};
    return s;
}

static void test_scheme_must_fit_every_quantized_layer(void) {
    struct lmp_model *m = open_stories();
    if (m == NULL) return;
    struct lmp_err                 err = {0};
    const struct lmp_compress_spec g8 = aqlm(2, 8, 8), g4 = aqlm(2, 4, 4);
    const char *const              keep[] = {"*.down_proj"};
    /* down_proj has n_in 172: g = 8 does not divide it, g = 4 does */
    CHECK(lmp_job_check(m, &g8, NULL, 0, NULL, false, &err) == LMP_EINVAL);
    CHECK(strstr(err.msg, "model.layers.0.mlp.down_proj") != NULL);
    CHECK(strstr(err.msg, "2x8g8") != NULL);
    CHECK(strchr(err.msg, '\n') == NULL);
    err = (struct lmp_err){0};
    CHECK(lmp_job_check(m, &g4, NULL, 0, NULL, false, &err) == LMP_OK);
    CHECK(lmp_job_check(m, &g8, keep, 1, NULL, false, &err) == LMP_OK); /* kept: not checked */
    struct lmp_compress_spec rtn = g4;
    rtn.method                   = LMP_COMPRESS_RTN;
    rtn.rtn_group                = 32;
    CHECK(lmp_job_check(m, &rtn, NULL, 0, NULL, false, &err) == LMP_EINVAL);
    CHECK(strstr(err.msg, "rtn") != NULL);
    lmp_model_close(&m);
}

static void test_keep_must_match_a_layer(void) {
    struct lmp_model *m = open_stories();
    if (m == NULL) return;
    struct lmp_err                 err      = {0};
    const struct lmp_compress_spec g4       = aqlm(2, 4, 4);
    const char *const              good[]   = {"*.down_proj", "model.layers.2.*"};
    const char *const              typo[]   = {"*.down_proj", "*.dwon_proj"};
    const char *const              tensor[] = {"tok_embeddings"}; /* a tensor, no linear */
    CHECK(lmp_job_check(m, &g4, good, 2, NULL, false, &err) == LMP_OK);
    CHECK(lmp_job_check(m, &g4, typo, 2, NULL, false, &err) == LMP_EINVAL);
    CHECK(strstr(err.msg, "'*.dwon_proj'") != NULL);
    CHECK(strstr(err.msg, "stories260K.bin") != NULL);
    CHECK(strstr(err.msg, "matches no linear layer") != NULL);
    err = (struct lmp_err){0};
    CHECK(lmp_job_check(m, &g4, tensor, 1, NULL, false, &err) == LMP_EINVAL);
    lmp_model_close(&m);
}

static void test_calibration_file_must_be_readable(void) {
    struct lmp_model *m = open_stories();
    if (m == NULL) return;
    struct lmp_err                 err   = {0};
    const struct lmp_compress_spec g4    = aqlm(2, 4, 4);
    char                           dir[] = "/tmp/lmp_job_check_XXXXXX", file[64], missing[64];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(file, sizeof(file), "%s/cal.txt", dir);
    snprintf(missing, sizeof(missing), "%s/nope.txt", dir);
    FILE *f = fopen(file, "w");
    CHECK(f != NULL);
    if (f) fputs("Once upon a time\n", f), fclose(f);
    CHECK(lmp_job_check(m, &g4, NULL, 0, file, false, &err) == LMP_OK);
    CHECK(lmp_job_check(m, &g4, NULL, 0, missing, false, &err) == LMP_ENOENT);
    CHECK(strstr(err.msg, missing) != NULL && strstr(err.msg, "calibration file") != NULL);
    err = (struct lmp_err){0};
    CHECK(lmp_job_check(m, &g4, NULL, 0, dir, false, &err) == LMP_ENOENT); /* a directory */
    CHECK(strstr(err.msg, dir) != NULL);
    /* issue 10: an empty file is rejected input too (exit 4), not a job failure (1) */
    char empty[64];
    snprintf(empty, sizeof(empty), "%s/empty.txt", dir);
    FILE *fe = fopen(empty, "w");
    CHECK(fe != NULL);
    if (fe) fclose(fe);
    err = (struct lmp_err){0};
    CHECK(lmp_job_check(m, &g4, NULL, 0, empty, false, &err) == LMP_EFORMAT);
    CHECK(strstr(err.msg, empty) != NULL && strstr(err.msg, "empty") != NULL);
    unlink(empty);
    /* RTN reads no calibration: a missing file is not its problem */
    struct lmp_compress_spec rtn = g4;
    rtn.method                   = LMP_COMPRESS_RTN;
    rtn.rtn_group                = 4;
    CHECK(lmp_job_check(m, &rtn, NULL, 0, missing, false, &err) == LMP_OK);
    unlink(file);
    rmdir(dir);
    lmp_model_close(&m);
}

int main(void) {
    RUN(test_scheme_must_fit_every_quantized_layer);
    RUN(test_keep_must_match_a_layer);
    RUN(test_calibration_file_must_be_readable);
    return check_report();
}
