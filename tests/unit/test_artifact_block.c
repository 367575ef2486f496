/*  test_artifact_block - lmp_artifact_commit_block: a fine-tuned block's layers and norms
 *  land together or not at all (a partial block made resume tune it again from another
 *  start and refuse the artifact for good), and read, resume and finalize see the objects
 *  of a block part like those of single parts */
#include "artifact/artifact.h"
#include "kernels/kernels.h" /* defines: lmp_f32_to_f16(), lmp_f16_to_f32() */
#include "tests/check.h"     /* defines: CHECK, RUN, check_report */

#include <dirent.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char tmpdir[256];

static const char *tpath(const char *name) {
    static char buf[512];
    snprintf(buf, sizeof(buf), "%s/%s", tmpdir, name);
    return buf;
}

/* One block of 7 linears, dim 16. */
static void make_job(struct lmp_art_job *job) {
    static const char *const kinds[7] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                         "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                         "mlp.down_proj"};
    lmp_art_job_init(job);
    job->n_linears = 7;
    job->linears   = calloc(7, sizeof(*job->linears));
    for (int i = 0; i < 7; i++) {
        snprintf(job->linears[i].name, sizeof(job->linears[i].name), "model.layers.0.%s", kinds[i]);
        job->linears[i].n_out = 8, job->linears[i].n_in = 16;
    }
    job->model_fp = 0xB10C, job->calib_fp = 0xC0FFEE;
    CHECK(lmp_art_job_set_text(&job->model_name, "fake-model") == LMP_OK);
    CHECK(lmp_art_job_set_text(&job->calib_desc, "synthetic") == LMP_OK);
    snprintf(job->method, sizeof(job->method), "aqlm");
    snprintf(job->scheme, sizeof(job->scheme), "2x4g8");
    job->cfg.n_layers = 1, job->cfg.dim = 16;
}

/* Layer i of the job, AQ 2x4g8, its values from seed. */
static void make_layer(const struct lmp_art_job *job, int i, uint64_t seed,
                       struct lmp_art_layer *l) {
    memset(l, 0, sizeof(*l));
    snprintf(l->name, sizeof(l->name), "%s", job->linears[i].name);
    l->codec = LMP_ART_CODEC_AQ, l->n_out = 8, l->n_in = 16, l->M = 2, l->B = 4, l->g = 8;
    const int64_t nc = lmp_art_layer_n_codes(l), ncb = lmp_art_layer_n_codebooks(l);
    l->codes     = malloc((size_t)nc * sizeof(uint16_t));
    l->codebooks = malloc((size_t)ncb * sizeof(float));
    l->scales    = malloc(8 * sizeof(float));
    for (int64_t k = 0; k < nc; k++) l->codes[k] = (uint16_t)((k * 7 + i + seed) & 15);
    check_fill_random(l->codebooks, ncb, seed * 10 + (uint64_t)i);
    check_fill_random(l->scales, 8, seed * 20 + (uint64_t)i);
    /* fp16 values: what the artifact stores (format 2), so they read back exactly */
    for (int64_t k = 0; k < ncb; k++)
        l->codebooks[k] = lmp_f16_to_f32(lmp_f32_to_f16(l->codebooks[k]));
    for (int64_t k = 0; k < 8; k++) l->scales[k] = lmp_f16_to_f32(lmp_f32_to_f16(l->scales[k]));
}

static void make_norm(int which, float *data, uint64_t seed, struct lmp_art_tensor *t) {
    memset(t, 0, sizeof(*t));
    snprintf(t->name, sizeof(t->name), "model.layers.0.%s.weight",
             which ? "post_attention_layernorm" : "input_layernorm");
    t->dtype = LMP_DTYPE_F32, t->n_dims = 1, t->shape[0] = 16, t->data = data;
    check_fill_random(data, 16, seed * 30 + (uint64_t)which);
}

/* Commit the block (6 layers: down_proj kept) with the values of seed. */
static enum lmp_status commit(struct lmp_artifact *a, const struct lmp_art_job *job, uint64_t seed,
                              struct lmp_err *err) {
    struct lmp_art_layer  l[6];
    struct lmp_art_tensor t[2];
    float                 nd[2][16];
    for (int i = 0; i < 6; i++) make_layer(job, i, seed, &l[i]);
    for (int i = 0; i < 2; i++) make_norm(i, nd[i], seed, &t[i]);
    enum lmp_status st = lmp_artifact_commit_block(a, "model.layers.0", l, 6, t, 2, err);
    for (int i = 0; i < 6; i++) lmp_art_layer_release(&l[i]);
    return st;
}

static int n_tensors(struct lmp_artifact *a) {
    return (int)lmp_artifact_n_tensors(a);
}

/* Every layer and norm of the block are there with the values of seed. */
static bool block_is(const char *path, const struct lmp_art_job *job, uint64_t seed) {
    struct lmp_artifact *a   = NULL;
    struct lmp_err       err = {0};
    if (lmp_artifact_open_read(path, &a, &err) != LMP_OK) return false;
    bool ok = lmp_artifact_n_layers(a) == 6 && n_tensors(a) == 2;
    for (int i = 0; ok && i < 6; i++) {
        struct lmp_art_layer want, got;
        make_layer(job, i, seed, &want);
        ok = lmp_artifact_read_layer(a, want.name, &got, &err) == LMP_OK &&
             memcmp(got.codes, want.codes, 8 * 2 * 2 * 2) == 0 &&
             memcmp(got.codebooks, want.codebooks, 2 * 16 * 8 * 4) == 0 &&
             memcmp(got.scales, want.scales, 8 * 4) == 0;
        lmp_art_layer_release(&want);
        lmp_art_layer_release(&got);
    }
    for (int i = 0; ok && i < 2; i++) {
        float                 d[16];
        struct lmp_art_tensor want, got;
        make_norm(i, d, seed, &want);
        ok = lmp_artifact_read_tensor(a, want.name, &got, &err) == LMP_OK &&
             memcmp(got.data, d, sizeof(d)) == 0;
        lmp_art_tensor_release(&got);
    }
    lmp_artifact_close(&a);
    return ok;
}

static int n_files(const char *dir, const char *prefix) {
    DIR *d = opendir(dir);
    int  n = 0;
    if (d == NULL) return 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    closedir(d);
    return n;
}

/* A failed write of the block part commits nothing; the resume commits it whole. */
static void test_block_is_all_or_nothing(void) {
    const char        *path = strdup(tpath("b.h5"));
    struct lmp_art_job job;
    make_job(&job);
    struct lmp_artifact *a   = NULL;
    struct lmp_err       err = {0};
    CHECK(lmp_artifact_open_write(path, &job, &a, &err) == LMP_OK);
    setenv("LMP_FAULT_WRITE_LIMIT", "100", 1); /* the part is torn after 100 bytes */
    CHECK(commit(a, &job, 1, &err) == LMP_ENOSPC);
    unsetenv("LMP_FAULT_WRITE_LIMIT");
    CHECK(lmp_artifact_n_layers(a) == 0 && n_tensors(a) == 0);
    lmp_artifact_close(&a);
    CHECK(lmp_artifact_open_write(path, &job, &a, &err) == LMP_OK); /* the resume */
    CHECK(lmp_artifact_n_layers(a) == 0 && n_tensors(a) == 0);      /* nothing of it */
    CHECK(commit(a, &job, 2, &err) == LMP_OK);                      /* another start: fine */
    CHECK(lmp_artifact_n_layers(a) == 6 && n_tensors(a) == 2);
    lmp_artifact_close(&a);
    char parts[600];
    snprintf(parts, sizeof(parts), "%s.parts", path);
    CHECK(n_files(parts, "block-model.layers.0-") == 1 && n_files(parts, "layer-") == 0);
    CHECK(block_is(path, &job, 2));
    CHECK(lmp_artifact_open_write(path, &job, &a, &err) == LMP_OK); /* resume: all there */
    for (int i = 0; i < 6; i++) CHECK(lmp_artifact_has_layer(a, job.linears[i].name));
    CHECK(!lmp_artifact_has_layer(a, job.linears[6].name));
    CHECK(commit(a, &job, 2, &err) == LMP_EINVAL); /* its layers are committed */
    CHECK(lmp_artifact_finalize(a, &err) == LMP_OK);
    lmp_artifact_close(&a);
    CHECK(access(parts, F_OK) != 0); /* assembled: the parts are gone */
    CHECK(block_is(path, &job, 2));
    CHECK(lmp_artifact_n_open_ids() == 0);
    lmp_art_job_release(&job);
    free((void *)path);
}

/* A norm committed before (identical) is left out of the part; a different one, or a
 * layer committed before, refuses the whole block. */
static void test_block_checks_before_commit(void) {
    const char        *path = strdup(tpath("c.h5"));
    struct lmp_art_job job;
    make_job(&job);
    struct lmp_artifact *a   = NULL;
    struct lmp_err       err = {0};
    CHECK(lmp_artifact_open_write(path, &job, &a, &err) == LMP_OK);
    float                 d[16];
    struct lmp_art_tensor t;
    make_norm(0, d, 3, &t);
    CHECK(lmp_artifact_put_tensor(a, &t, &err) == LMP_OK);
    CHECK(commit(a, &job, 4, &err) == LMP_EMISMATCH); /* another norm: refused whole */
    CHECK(strstr(err.msg, "input_layernorm") != NULL);
    CHECK(lmp_artifact_n_layers(a) == 0 && n_tensors(a) == 1);
    CHECK(commit(a, &job, 3, &err) == LMP_OK); /* the same norm: left out */
    CHECK(lmp_artifact_n_layers(a) == 6 && n_tensors(a) == 2);
    lmp_artifact_close(&a);
    CHECK(block_is(path, &job, 3));
    lmp_art_job_release(&job);
    free((void *)path);
}

int main(void) {
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/lmp_test_artifact_block.XXXXXX");
    if (mkdtemp(tmpdir) == NULL) return 1;
    RUN(test_block_is_all_or_nothing);
    RUN(test_block_checks_before_commit);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", tmpdir);
    return check_report();
}
