/*  test_artifact - the HDF5 artifact: round trip, resume, refusal, corruption, full
 *  disk, and kill -9 at random instants during a many-layer write */
#include "artifact/artifact.h"
#include "artifact/fingerprint.h"
#include "artifact/artifact_model.h" /* defines: lmp_artifact_model_load */
#include "kernels/kernels.h" /* defines: lmp_f32_to_f16(), lmp_f16_to_f32(), lmp_f32_to_bf16() */
#include "tests/check.h"     /* defines: CHECK, RUN, check_report */

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char tmpdir[256];

static const char *tpath(int slot, const char *name) {
    static char buf[8][512];
    snprintf(buf[slot & 7], sizeof(buf[0]), "%s/%s", tmpdir, name);
    return buf[slot & 7];
}

static void rm_artifact(const char *path) {
    char cmd[1600]; /* paths come from tpath: under 512 bytes */
    snprintf(cmd, sizeof(cmd), "rm -rf '%.511s' '%.511s.parts' '%.511s.tmp'", path, path, path);
    if (system(cmd) != 0) fprintf(stderr, "cannot clean %s\n", path);
}

static bool no_open_handles(void) {
    return lmp_artifact_n_open_ids() == 0;
}

/* A job over n_blocks fake blocks of 7 small linears (odd shapes on purpose). */
static void make_job(struct lmp_art_job *job, int n_blocks, uint64_t model_fp, const char *scheme) {
    static const char *const kinds[7] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                         "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                         "mlp.down_proj"};
    lmp_art_job_init(job);
    job->n_linears = (int64_t)n_blocks * 7;
    job->linears   = calloc((size_t)job->n_linears, sizeof(*job->linears));
    for (int64_t i = 0; i < job->n_linears; i++) {
        snprintf(job->linears[i].name, sizeof(job->linears[i].name), "model.layers.%d.%s",
                 (int)(i / 7), kinds[i % 7]);
        job->linears[i].n_out = 8 + 4 * (i % 3);
        job->linears[i].n_in  = 16 + 8 * (i % 2);
    }
    job->model_fp = model_fp;
    job->calib_fp = 0xC0FFEE;
    char name[64];
    snprintf(name, sizeof(name), "fake-model-%llx", (unsigned long long)model_fp);
    CHECK(lmp_art_job_set_text(&job->model_name, name) == LMP_OK);
    CHECK(lmp_art_job_set_text(&job->calib_desc, "synthetic") == LMP_OK);
    snprintf(job->method, sizeof(job->method), "aqlm");
    snprintf(job->scheme, sizeof(job->scheme), "%s", scheme);
    job->cfg.n_layers   = n_blocks;
    job->cfg.dim        = 16;
    job->cfg.rope_theta = 10000.0f;
    job->cfg.norm_eps   = 1e-5f;
}

static float f16_round(float x) {
    return lmp_f16_to_f32(lmp_f32_to_f16(x));
}

/* Deterministic layer i of job: AQ 2x8g8 for even i (B = 8: uint8 on disk), RTN 4-bit
 * group 8 for i % 4 == 1, AQ 1x12g8 (uint16 on disk) otherwise. AQ codebooks and scales
 * are fp16 values (what format 2 stores), unless raw. */
static void make_layer_raw(const struct lmp_art_job *job, int64_t i, struct lmp_art_layer *l,
                           bool raw) {
    memset(l, 0, sizeof(*l));
    snprintf(l->name, sizeof(l->name), "%s", job->linears[i].name);
    l->n_out = job->linears[i].n_out;
    l->n_in  = job->linears[i].n_in;
    l->g     = 8;
    if (i % 4 == 1) {
        l->codec = LMP_ART_CODEC_RTN;
        l->M     = 1;
        l->B     = 4;
    } else if (i % 2 == 0) {
        l->codec = LMP_ART_CODEC_AQ;
        l->M     = 2;
        l->B     = 8;
    } else {
        l->codec = LMP_ART_CODEC_AQ;
        l->M     = 1;
        l->B     = 12;
    }
    int64_t nc = lmp_art_layer_n_codes(l), ncb = lmp_art_layer_n_codebooks(l),
            ns = lmp_art_layer_n_scales(l);
    l->codes   = malloc((size_t)nc * sizeof(uint16_t));
    l->scales  = malloc((size_t)ns * sizeof(float));
    uint64_t s = (uint64_t)i * 77 + 5;
    for (int64_t k = 0; k < nc; k++) {
        s           = s * 6364136223846793005ull + 1442695040888963407ull;
        l->codes[k] = (uint16_t)((s >> 33) & ((1u << l->B) - 1));
    }
    check_fill_random(l->scales, ns, (uint64_t)i + 100);
    if (l->codec == LMP_ART_CODEC_AQ) {
        l->codebooks = malloc((size_t)ncb * sizeof(float));
        check_fill_random(l->codebooks, ncb, (uint64_t)i + 200);
        for (int64_t k = 0; !raw && k < ncb; k++) l->codebooks[k] = f16_round(l->codebooks[k]);
        for (int64_t k = 0; !raw && k < ns; k++) l->scales[k] = f16_round(l->scales[k]);
    } else {
        l->zeros = malloc((size_t)ns * sizeof(float));
        check_fill_random(l->zeros, ns, (uint64_t)i + 300);
    }
    l->stats = (struct lmp_art_stats){.rel_err_before  = 0.5 + (double)i,
                                      .rel_err_after   = 0.1,
                                      .bits_per_weight = 2.0,
                                      .seconds         = 0.25,
                                      .steps           = i};
}

static void make_layer(const struct lmp_art_job *job, int64_t i, struct lmp_art_layer *l) {
    make_layer_raw(job, i, l, false);
}

static bool layers_equal(const struct lmp_art_layer *a, const struct lmp_art_layer *b) {
    if (strcmp(a->name, b->name) || a->codec != b->codec || a->n_out != b->n_out ||
        a->n_in != b->n_in || a->M != b->M || a->B != b->B || a->g != b->g)
        return false;
    if (memcmp(&a->stats, &b->stats, sizeof(a->stats)) != 0) return false;
    int64_t nc = lmp_art_layer_n_codes(a), ncb = lmp_art_layer_n_codebooks(a),
            ns = lmp_art_layer_n_scales(a);
    if (memcmp(a->codes, b->codes, (size_t)nc * 2) || memcmp(a->scales, b->scales, (size_t)ns * 4))
        return false;
    if (a->codebooks && memcmp(a->codebooks, b->codebooks, (size_t)ncb * 4)) return false;
    if (a->zeros && memcmp(a->zeros, b->zeros, (size_t)ns * 4)) return false;
    return true;
}

/* Every committed layer of path equals make_layer's; returns how many there are (-1 on error). */
static int64_t check_layers(const char *path, const struct lmp_art_job *job) {
    struct lmp_artifact *a   = NULL;
    struct lmp_err       err = {0};
    enum lmp_status      st  = lmp_artifact_open_read(path, &a, &err);
    if (st == LMP_ENOENT) return 0; /* nothing committed yet (killed before the first part) */
    if (st != LMP_OK) {
        fprintf(stderr, "open_read: %s\n", err.msg);
        return -1;
    }
    int64_t n = lmp_artifact_n_layers(a), bad = 0;
    for (int64_t k = 0; k < n; k++) {
        const char *name = lmp_artifact_layer_name(a, k);
        int64_t     i    = 0;
        while (i < job->n_linears && strcmp(job->linears[i].name, name)) i++;
        struct lmp_art_layer want, got;
        make_layer(job, i, &want);
        if (lmp_artifact_read_layer(a, name, &got, &err) != LMP_OK || !layers_equal(&want, &got)) {
            fprintf(stderr, "layer %s differs: %s\n", name, err.msg);
            bad++;
        }
        lmp_art_layer_release(&want);
        lmp_art_layer_release(&got);
    }
    lmp_artifact_close(&a);
    return bad ? -1 : n;
}

static enum lmp_status write_layers(const char *path, const struct lmp_art_job *job, bool finalize,
                                    struct lmp_err *err) {
    struct lmp_artifact *a  = NULL;
    enum lmp_status      st = lmp_artifact_open_write(path, job, &a, err);
    for (int64_t i = 0; st == LMP_OK && i < job->n_linears; i++) {
        if (lmp_artifact_has_layer(a, job->linears[i].name)) continue;
        struct lmp_art_layer l;
        make_layer(job, i, &l);
        st = lmp_artifact_commit_layer(a, &l, err);
        lmp_art_layer_release(&l);
    }
    if (st == LMP_OK && finalize) st = lmp_artifact_finalize(a, err);
    lmp_artifact_close(&a);
    return st;
}

static void test_xxh64_vectors(void) {
    CHECK(lmp_xxh64("", 0, 0) == 0xEF46DB3751D8E999ull); /* from the xxHash specification */
    CHECK(lmp_xxh64("abc", 3, 0) == 0x44BC2CF5AD770999ull);
    uint8_t buf[1000];
    for (int i = 0; i < 1000; i++) buf[i] = (uint8_t)(i * 131 + 7);
    uint64_t         one = lmp_xxh64(buf, sizeof(buf), 42);
    struct lmp_xxh64 s; /* uneven splits */
    lmp_xxh64_init(&s, 42);
    size_t off = 0, step = 1;
    while (off < sizeof(buf)) {
        size_t n = step < sizeof(buf) - off ? step : sizeof(buf) - off;
        lmp_xxh64_update(&s, buf + off, n);
        off += n;
        step = step * 3 % 61 + 1;
    }
    CHECK(lmp_xxh64_digest(&s) == one);
    CHECK(lmp_xxh64(buf, sizeof(buf), 0) != one); /* the seed matters */
    int32_t ids[3] = {1, 2, 3};
    CHECK(lmp_fingerprint_job(ids, 3, 1) != lmp_fingerprint_job(ids, 3, 2));
    CHECK(lmp_fingerprint_job(ids, 3, 1) != lmp_fingerprint_job(ids, 2, 1));
    CHECK(lmp_fingerprint_job(NULL, 0, 1) != lmp_fingerprint_job(NULL, 0, 2));
}

/* The digest of a keep list and a few settings, and its words into *desc (owned). */
static uint64_t settings_of(const char *const *keep, size_t n_keep, int64_t nsamples, char **desc) {
    struct lmp_fp_settings s;
    lmp_fp_settings_init(&s);
    lmp_fp_settings_note(&s, "calib", "/some/text.txt");
    lmp_fp_settings_i64(&s, "nsamples", nsamples);
    lmp_fp_settings_list(&s, "keep", keep, n_keep);
    lmp_fp_settings_f64(&s, "tol", 0.01);
    lmp_fp_settings_str(&s, "mode", "sequential");
    const uint64_t d = lmp_fp_settings_digest(&s);
    if (desc) *desc = lmp_strbuf_take(&s.desc);
    lmp_fp_settings_release(&s);
    return d;
}

/* issue 10, item 3: the keep list was cut at 160 characters in the fingerprinted string,
 * so a resume with a changed long keep list was accepted. Every pattern counts, whole. */
static void test_fingerprint_covers_long_settings(void) {
    enum { N = 40 };
    static char pat[N][64];
    const char *keep[N];
    for (int i = 0; i < N; i++) {
        snprintf(pat[i], sizeof(pat[i]), "model.layers.%d.self_attn.*_proj", i);
        keep[i] = pat[i];
    }
    char          *d1 = NULL, *d2 = NULL;
    const uint64_t a = settings_of(keep, N, 128, &d1);
    keep[N - 1]      = "model.layers.39.mlp.down_proj"; /* the last pattern, far past 160 chars */
    const uint64_t b = settings_of(keep, N, 128, &d2);
    CHECK(a != b);
    CHECK(d1 && d2 && strlen(d1) > 1000 && strcmp(d1, d2) != 0); /* the words, whole */
    CHECK(d2 && strstr(d2, "model.layers.39.mlp.down_proj]") != NULL);
    CHECK(d1 && strstr(d1, "calib=/some/text.txt nsamples=128 keep=[model.layers.0.") == d1);
    free(d1), free(d2);
    /* one pattern "a,b" is not the two patterns "a" and "b" (no text to read two ways) */
    const char *one[1] = {"a,b"}, *two[2] = {"a", "b"};
    CHECK(settings_of(one, 1, 128, NULL) != settings_of(two, 2, 128, NULL));
    CHECK(settings_of(two, 2, 128, NULL) != settings_of(two, 2, 129, NULL));
    CHECK(settings_of(two, 2, 128, NULL) == settings_of(two, 2, 128, NULL));
    /* a note (the calibration file's name: its tokens are hashed) is words only */
    struct lmp_fp_settings s1, s2;
    lmp_fp_settings_init(&s1), lmp_fp_settings_init(&s2);
    lmp_fp_settings_note(&s1, "calib", "a.txt"), lmp_fp_settings_note(&s2, "calib", "b.txt");
    CHECK(lmp_fp_settings_digest(&s1) == lmp_fp_settings_digest(&s2));
    lmp_fp_settings_release(&s1), lmp_fp_settings_release(&s2);
}

/* Long outside text (a model path, the settings in words) is stored and read back whole,
 * and a different calibration description of the same length still refuses a resume. */
static void test_long_job_text_round_trip(void) {
    const char *path = tpath(0, "long.h5");
    rm_artifact(path);
    struct lmp_art_job job;
    make_job(&job, 1, 0x77, "2x8g8");
    char long_name[1200], long_desc[3000];
    memset(long_name, 'm', sizeof(long_name) - 1), long_name[sizeof(long_name) - 1] = '\0';
    memset(long_desc, 'd', sizeof(long_desc) - 1), long_desc[sizeof(long_desc) - 1] = '\0';
    CHECK(lmp_art_job_set_text(&job.model_name, long_name) == LMP_OK);
    CHECK(lmp_art_job_set_text(&job.calib_desc, long_desc) == LMP_OK);
    struct lmp_err err = {0};
    CHECK(write_layers(path, &job, true, &err) == LMP_OK);
    struct lmp_artifact *a = NULL;
    CHECK(lmp_artifact_open_read(path, &a, &err) == LMP_OK);
    if (a) {
        const struct lmp_art_job *j = lmp_artifact_job(a);
        CHECK(j->model_name && strcmp(j->model_name, long_name) == 0);
        CHECK(j->calib_desc && strcmp(j->calib_desc, long_desc) == 0);
        CHECK(strcmp(j->build, job.build) == 0 && j->build[0] != '\0');
    }
    lmp_artifact_close(&a);
    CHECK(no_open_handles());
    lmp_art_job_release(&job);
}

/* issue 10, "Also": a resume by another build (Debug and Release compute other codebooks)
 * is refused with a message naming both builds; the same build resumes. */
static void test_resume_refuses_other_build(void) {
    const char *path = tpath(0, "build.h5");
    rm_artifact(path);
    struct lmp_art_job job, other;
    make_job(&job, 1, 0x99, "2x8g8");
    struct lmp_err       err = {0};
    struct lmp_artifact *a   = NULL;
    CHECK(lmp_artifact_open_write(path, &job, &a, &err) == LMP_OK);
    lmp_artifact_close(&a);
    make_job(&other, 1, 0x99, "2x8g8");
    snprintf(other.build, sizeof(other.build), "lmpress 0.0.0 Other cc 1.0 -O1");
    CHECK(lmp_artifact_open_write(path, &other, &a, &err) == LMP_EMISMATCH);
    CHECK(strstr(err.msg, "was written by build '") != NULL);
    CHECK(strstr(err.msg, "lmpress 0.0.0 Other cc 1.0 -O1") != NULL);
    CHECK(strstr(err.msg, job.build) != NULL);
    lmp_art_job_release(&other);
    err = (struct lmp_err){0};
    CHECK(lmp_artifact_open_write(path, &job, &a, &err) == LMP_OK); /* the same build */
    lmp_artifact_close(&a);
    CHECK(no_open_handles());
    lmp_art_job_release(&job);
}

static void test_roundtrip_and_handles(void) {
    const char *path = tpath(0, "rt.h5");
    rm_artifact(path);
    struct lmp_art_job job;
    make_job(&job, 3, 0x1234, "mixed");
    struct lmp_err       err = {0};
    struct lmp_artifact *a   = NULL;
    CHECK(lmp_artifact_open_write(path, &job, &a, &err) == LMP_OK);
    for (int64_t i = 0; a && i < job.n_linears; i++) {
        struct lmp_art_layer l;
        make_layer(&job, i, &l);
        CHECK(lmp_artifact_commit_layer(a, &l, &err) == LMP_OK);
        lmp_art_layer_release(&l);
    }
    float    emb[6 * 16];
    uint16_t norm16[16];
    check_fill_random(emb, 6 * 16, 9);
    for (int i = 0; i < 16; i++) norm16[i] = (uint16_t)(0x3C00 + i); /* 1.0, 1.0009765625, ... */
    struct lmp_art_tensor te    = {.name   = "model.embed_tokens.weight",
                                   .dtype  = LMP_DTYPE_F32,
                                   .n_dims = 2,
                                   .shape  = {6, 16},
                                   .data   = emb};
    struct lmp_art_tensor tn    = {.name   = "model.norm.weight",
                                   .dtype  = LMP_DTYPE_F16,
                                   .n_dims = 1,
                                   .shape  = {16},
                                   .data   = norm16};
    const uint8_t         tok[] = "tokenizer bytes \0 with a NUL";
    if (a) {
        CHECK(lmp_artifact_put_tensor(a, &te, &err) == LMP_OK);
        CHECK(lmp_artifact_put_tensor(a, &tn, &err) == LMP_OK);
        CHECK(lmp_artifact_put_tensor(a, &tn, &err) == LMP_OK); /* same bytes: no-op */
        float keep = emb[3];
        emb[3]     = 7.0f;
        CHECK(lmp_artifact_put_tensor(a, &te, &err) == LMP_EMISMATCH); /* different bytes */
        emb[3] = keep;
        CHECK(lmp_artifact_put_tokenizer(a, LMP_ART_TOK_LLAMA2C, tok, sizeof(tok), &err) == LMP_OK);
        struct lmp_art_layer l;
        make_layer(&job, 0, &l);
        CHECK(lmp_artifact_commit_layer(a, &l, &err) == LMP_EINVAL); /* already committed */
        l.n_out += 1;
        snprintf(l.name, sizeof(l.name), "model.layers.9.mlp.up_proj");
        CHECK(lmp_artifact_commit_layer(a, &l, &err) == LMP_EINVAL); /* not in the model */
        lmp_art_layer_release(&l);
        CHECK(lmp_artifact_is_complete(a));
        CHECK(lmp_artifact_finalize(a, &err) == LMP_OK);
    }
    lmp_artifact_close(&a);
    CHECK(no_open_handles());
    struct stat sb;
    CHECK(stat(tpath(1, "rt.h5.parts"), &sb) != 0); /* parts removed after assembly */
    CHECK(check_layers(path, &job) == job.n_linears);
    CHECK(lmp_artifact_open_read(path, &a, &err) == LMP_OK);
    if (a) {
        const struct lmp_art_job *j = lmp_artifact_job(a);
        CHECK(j->model_fp == 0x1234 && j->calib_fp == 0xC0FFEE && j->n_linears == job.n_linears);
        CHECK(strcmp(j->scheme, "mixed") == 0 && strcmp(j->tool_version, LMP_VERSION) == 0);
        CHECK(j->cfg.n_layers == 3 && j->cfg.dim == 16 && j->cfg.norm_eps == 1e-5f);
        CHECK(lmp_artifact_n_tensors(a) == 2);
        CHECK(strcmp(lmp_artifact_tensor_name(a, 0), "model.embed_tokens.weight") == 0);
        struct lmp_art_tensor t;
        CHECK(lmp_artifact_read_tensor(a, "model.norm.weight", &t, &err) == LMP_OK);
        CHECK(t.dtype == LMP_DTYPE_F16 && t.n_dims == 1 && t.shape[0] == 16 && t.data &&
              memcmp(t.data, norm16, sizeof(norm16)) == 0);
        lmp_art_tensor_release(&t);
        CHECK(lmp_artifact_read_tensor(a, "model.embed_tokens.weight", &t, &err) == LMP_OK);
        CHECK(t.dtype == LMP_DTYPE_F32 && t.shape[0] == 6 && t.data &&
              memcmp(t.data, emb, sizeof(emb)) == 0);
        lmp_art_tensor_release(&t);
        enum lmp_art_tok kind;
        uint8_t         *bytes = NULL;
        size_t           n     = 0;
        CHECK(lmp_artifact_read_tokenizer(a, &kind, &bytes, &n, &err) == LMP_OK);
        CHECK(kind == LMP_ART_TOK_LLAMA2C && n == sizeof(tok) && bytes && !memcmp(bytes, tok, n));
        free(bytes);
        CHECK(lmp_artifact_read_tensor(a, "nope", &t, &err) == LMP_ENOENT);
        lmp_artifact_close(&a);
    }
    CHECK(no_open_handles());
    if (system("command -v h5dump >/dev/null 2>&1") == 0) { /* the standard tool reads it */
        char cmd[10000];
        snprintf(cmd, sizeof(cmd), "h5dump -H '%s' >/dev/null 2>&1", path);
        CHECK(system(cmd) == 0);
        snprintf(cmd, sizeof(cmd),
                 "h5dump -d '/layers/model.layers.0.self_attn.q_proj/codes' '%s' "
                 "| grep -q H5T_STD_U8LE",
                 path);
        CHECK(system(cmd) == 0); /* B = 8: one byte per code */
    } else {
        fprintf(stderr, "note: h5dump not installed, its check is skipped\n");
    }
    lmp_art_job_release(&job);
}

static void test_resume_and_refusal(void) {
    const char *path = tpath(0, "res.h5");
    rm_artifact(path);
    struct lmp_art_job job, other;
    make_job(&job, 2, 0xAAAA, "2x8g8");
    struct lmp_err       err = {0};
    struct lmp_artifact *a   = NULL;
    CHECK(lmp_artifact_open_write(path, &job, &a, &err) == LMP_OK);
    for (int64_t i = 0; a && i < 5; i++) {
        struct lmp_art_layer l;
        make_layer(&job, i, &l);
        CHECK(lmp_artifact_commit_layer(a, &l, &err) == LMP_OK);
        lmp_art_layer_release(&l);
    }
    struct lmp_artifact *b = NULL; /* a second writer is refused */
    CHECK(lmp_artifact_open_write(path, &job, &b, &err) == LMP_EIO);
    CHECK(strstr(err.msg, "another process") != NULL);
    lmp_artifact_close(&a);
    CHECK(check_layers(path, &job) == 5); /* readable before assembly */

    CHECK(lmp_artifact_open_write(path, &job, &a, &err) == LMP_OK);
    CHECK(a && lmp_artifact_n_layers(a) == 5 && lmp_artifact_has_layer(a, job.linears[4].name) &&
          !lmp_artifact_has_layer(a, job.linears[5].name));
    lmp_artifact_close(&a);

    make_job(&other, 2, 0xBBBB, "2x8g8"); /* another model */
    err = (struct lmp_err){0};
    CHECK(lmp_artifact_open_write(path, &other, &a, &err) == LMP_EMISMATCH);
    CHECK(strstr(err.msg, "res.h5' was made from model 'fake-model-aaaa' (fingerprint "
                          "000000000000aaaa), this run uses 'fake-model-bbbb'") != NULL);
    CHECK(strstr(err.msg, "use another --out or delete it") != NULL);
    lmp_art_job_release(&other);
    make_job(&other, 2, 0xAAAA, "1x16g8"); /* another scheme */
    err = (struct lmp_err){0};
    CHECK(lmp_artifact_open_write(path, &other, &a, &err) == LMP_EMISMATCH);
    CHECK(strstr(err.msg, "'2x8g8'") && strstr(err.msg, "'1x16g8'"));
    other.calib_fp = 1; /* another calibration set */
    snprintf(other.scheme, sizeof(other.scheme), "2x8g8");
    err = (struct lmp_err){0};
    CHECK(lmp_artifact_open_write(path, &other, &a, &err) == LMP_EMISMATCH);
    CHECK(strstr(err.msg, "other calibration data (same settings, other tokens") != NULL);
    lmp_art_job_release(&other);

    CHECK(write_layers(path, &job, true, &err) == LMP_OK); /* resume to the end */
    CHECK(check_layers(path, &job) == job.n_linears);
    err = (struct lmp_err){0}; /* the finished file still refuses others */
    make_job(&other, 2, 0xBBBB, "2x8g8");
    CHECK(lmp_artifact_open_write(path, &other, &a, &err) == LMP_EMISMATCH);
    lmp_art_job_release(&other);
    CHECK(no_open_handles());
    lmp_art_job_release(&job);
}

static void corrupt_file(const char *p, long off, size_t n_trunc_to) {
    FILE *f = fopen(p, "r+b");
    if (f == NULL) return;
    if (n_trunc_to) {
        if (ftruncate(fileno(f), (off_t)n_trunc_to) != 0) perror("ftruncate");
    } else {
        fseek(f, off, SEEK_SET);
        int c = fgetc(f);
        fseek(f, off, SEEK_SET);
        fputc(c ^ 0x5A, f);
    }
    fclose(f);
}

static void test_corrupt_inputs(void) {
    struct lmp_err       err     = {0};
    struct lmp_artifact *a       = NULL;
    const char          *garbage = tpath(0, "garbage.h5");
    rm_artifact(garbage);
    FILE *f = fopen(garbage, "wb");
    fputs("this is not an hdf5 file at all, just text", f);
    fclose(f);
    CHECK(lmp_artifact_open_read(garbage, &a, &err) == LMP_EFORMAT);
    CHECK(strstr(err.msg, "garbage.h5") != NULL);
    err = (struct lmp_err){0};
    CHECK(lmp_artifact_open_read(tpath(1, "absent.h5"), &a, &err) == LMP_ENOENT);

    struct lmp_art_job job;
    make_job(&job, 1, 0x77, "2x8g8");
    const char *path = tpath(2, "trunc.h5");
    rm_artifact(path);
    CHECK(write_layers(path, &job, true, &err) == LMP_OK);
    struct stat sb;
    CHECK(stat(path, &sb) == 0);
    corrupt_file(path, 0, (size_t)sb.st_size / 2); /* truncated main file */
    err                = (struct lmp_err){0};
    enum lmp_status st = lmp_artifact_open_read(path, &a, &err);
    if (st == LMP_OK) { /* metadata may sit early: reads must fail */
        int64_t bad = 0;
        for (int64_t k = 0; k < lmp_artifact_n_layers(a); k++) {
            struct lmp_art_layer l;
            if (lmp_artifact_read_layer(a, lmp_artifact_layer_name(a, k), &l, &err) != LMP_OK)
                bad++;
            lmp_art_layer_release(&l);
        }
        CHECK(bad > 0);
        lmp_artifact_close(&a);
    }
    CHECK(strstr(err.msg, "trunc.h5") != NULL);
    CHECK(no_open_handles());

    /* a committed part whose bytes no longer match its checksum */
    path = tpath(3, "badpart.h5");
    rm_artifact(path);
    CHECK(write_layers(path, &job, false, &err) == LMP_OK);
    char cmd[10000], part[1024] = "";
    snprintf(cmd, sizeof(cmd), "ls %s.parts/layer-model.layers.0.mlp.up_proj-*.h5", path);
    FILE *p = popen(cmd, "r");
    if (p && fgets(part, sizeof(part), p)) part[strcspn(part, "\n")] = '\0';
    if (p) pclose(p);
    CHECK(part[0] != '\0');
    corrupt_file(part, 600, 0);
    err = (struct lmp_err){0};
    CHECK(lmp_artifact_open_write(path, &job, &a, &err) == LMP_EFORMAT);
    CHECK(strstr(err.msg, "mlp.up_proj-") && strstr(err.msg, "checksum"));
    err = (struct lmp_err){0};
    CHECK(lmp_artifact_open_read(path, &a, &err) == LMP_OK); /* lazily verified when read */
    struct lmp_art_layer l;
    CHECK(a && lmp_artifact_read_layer(a, "model.layers.0.mlp.up_proj", &l, &err) == LMP_EFORMAT);
    CHECK(a && lmp_artifact_read_layer(a, "model.layers.0.mlp.down_proj", &l, &err) == LMP_OK);
    lmp_art_layer_release(&l);
    lmp_artifact_close(&a);

    /* an interrupted (never committed) part is removed with a warning */
    remove(part);
    snprintf(cmd, sizeof(cmd), "%s.parts/layer-model.layers.0.mlp.up_proj.tmp", path);
    f = fopen(cmd, "wb");
    fputs("half a part", f);
    fclose(f);
    CHECK(lmp_artifact_open_write(path, &job, &a, &err) == LMP_OK);
    CHECK(a && !lmp_artifact_has_layer(a, "model.layers.0.mlp.up_proj"));
    CHECK(stat(cmd, &sb) != 0);
    lmp_artifact_close(&a);
    CHECK(no_open_handles());
    lmp_art_job_release(&job);
}

static void test_disk_full(void) {
    const char *path = tpath(0, "full.h5");
    rm_artifact(path);
    struct lmp_art_job job;
    make_job(&job, 1, 0x99, "2x8g8");
    struct lmp_err       err = {0};
    struct lmp_artifact *a   = NULL;
    CHECK(lmp_artifact_open_write(path, &job, &a, &err) == LMP_OK);
    struct lmp_art_layer l;
    for (int64_t i = 0; a && i < 3; i++) {
        make_layer(&job, i, &l);
        CHECK(lmp_artifact_commit_layer(a, &l, &err) == LMP_OK);
        lmp_art_layer_release(&l);
    }
    setenv("LMP_FAULT_WRITE_LIMIT", "1000", 1); /* the disk fills during layer 3 */
    make_layer(&job, 3, &l);
    err = (struct lmp_err){0};
    CHECK(a && lmp_artifact_commit_layer(a, &l, &err) == LMP_ENOSPC);
    CHECK(strstr(err.msg, "full.h5.parts/layer-model.layers.0.self_attn.o_proj.tmp") != NULL);
    CHECK(a && !lmp_artifact_has_layer(a, l.name));
    unsetenv("LMP_FAULT_WRITE_LIMIT");
    CHECK(a && lmp_artifact_commit_layer(a, &l, &err) == LMP_OK); /* space again: it works */
    lmp_art_layer_release(&l);
    lmp_artifact_close(&a);
    CHECK(check_layers(path, &job) == 4);

    /* assembly on a full disk (RLIMIT_FSIZE: write() fails with EFBIG) keeps everything */
    CHECK(write_layers(path, &job, false, &err) == LMP_OK); /* all parts, no main file */
    pid_t pid = fork();
    if (pid == 0) {
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit rl = {.rlim_cur = 8192, .rlim_max = 8192}; /* the main file needs more */
        setrlimit(RLIMIT_FSIZE, &rl);
        struct lmp_artifact *c  = NULL;
        struct lmp_err       e  = {0};
        enum lmp_status      st = lmp_artifact_open_write(path, &job, &c, &e);
        if (st == LMP_OK) st = lmp_artifact_finalize(c, &e);
        fprintf(stderr, "finalize under an 8 KiB file size limit: %s (%s)\n", lmp_status_str(st),
                e.msg);
        lmp_artifact_close(&c);
        _exit(st == LMP_ENOSPC && strstr(e.msg, "full.h5.tmp") ? 0 : 1);
    }
    int ws = 0;
    waitpid(pid, &ws, 0);
    if (!WIFEXITED(ws)) fprintf(stderr, "child: signal %d\n", WTERMSIG(ws));
    CHECK(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
    struct stat sb;
    CHECK(stat(path, &sb) != 0);                      /* no half-assembled main file */
    CHECK(check_layers(path, &job) == job.n_linears); /* every committed part intact */
    CHECK(write_layers(path, &job, true, &err) == LMP_OK);
    CHECK(check_layers(path, &job) == job.n_linears);
    CHECK(no_open_handles());
    lmp_art_job_release(&job);
}

/* Kill a writer with SIGKILL at random instants, resume, and compare with a clean run. */
static void test_kill_anywhere_then_resume(void) {
    const char *ref = tpath(0, "ref.h5"), *path = tpath(1, "killed.h5");
    rm_artifact(ref);
    rm_artifact(path);
    struct lmp_art_job job;
    make_job(&job, 6, 0x5151, "mixed"); /* 42 layers */
    struct lmp_err  err = {0};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CHECK(write_layers(ref, &job, true, &err) == LMP_OK);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long full_us = (t1.tv_sec - t0.tv_sec) * 1000000L + (t1.tv_nsec - t0.tv_nsec) / 1000;
    if (full_us < 1000) full_us = 1000;
    srand(12345);
    int kills = 0, prev = -1, finished = 0;
    for (int round = 0; round < 20 && !finished; round++) {
        pid_t pid = fork();
        if (pid == 0) {
            struct lmp_err e = {0};
            _exit(write_layers(path, &job, true, &e) == LMP_OK ? 0 : 1);
        }
        usleep((useconds_t)(rand() % (full_us / 4))); /* anywhere in a quarter run */
        kill(pid, SIGKILL);
        int ws = 0;
        waitpid(pid, &ws, 0);
        if (WIFSIGNALED(ws))
            kills++;
        else
            finished = WIFEXITED(ws) && WEXITSTATUS(ws) == 0;
        int64_t n = check_layers(path, &job); /* only complete, correct layers */
        CHECK(n >= 0);
        CHECK(n >= prev); /* never loses a committed layer */
        prev = (int)n;
    }
    fprintf(stderr,
            "killed %d writers at random instants; %d layers were committed before the "
            "last kill\n",
            kills, prev);
    CHECK(kills > 0);
    CHECK(write_layers(path, &job, true, &err) == LMP_OK); /* resume completes it */
    CHECK(check_layers(path, &job) == job.n_linears);
    if (system("command -v h5diff >/dev/null 2>&1") == 0) { /* datasets byte-equal a clean run */
        char cmd[10000];
        snprintf(cmd, sizeof(cmd), "h5diff '%s' '%s' /layers /layers", ref, path);
        CHECK(system(cmd) == 0);
    }
    CHECK(no_open_handles());
    lmp_art_job_release(&job);
}

static int64_t file_size(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 ? (int64_t)sb.st_size : -1;
}

/* Format 2 stores AQ codebooks and scales as fp16: fp32 values come back rounded to
 * nearest even, a value beyond fp16 is refused; a format-1 artifact (fp32, written by
 * the test-only previous-version writer) still reads back exactly, is smaller to read
 * than to resume: a resume of it is refused (one artifact, one storage precision). */
static void test_fp16_storage_and_format1(void) {
    const char *p2 = tpath(0, "v2.h5"), *p1 = tpath(1, "v1.h5");
    rm_artifact(p2);
    rm_artifact(p1);
    struct lmp_art_job job;
    make_job(&job, 2, 0x5151, "mixed");
    struct lmp_err err = {0};
    for (int v = 2; v >= 1; v--) {
        lmp_artifact_set_write_version(v);
        struct lmp_artifact *a = NULL;
        CHECK(lmp_artifact_open_write(v == 2 ? p2 : p1, &job, &a, &err) == LMP_OK);
        for (int64_t i = 0; a && i < job.n_linears; i++) {
            struct lmp_art_layer l;
            make_layer_raw(&job, i, &l, true);
            CHECK(lmp_artifact_commit_layer(a, &l, &err) == LMP_OK);
            lmp_art_layer_release(&l);
        }
        CHECK(a && lmp_artifact_finalize(a, &err) == LMP_OK);
        lmp_artifact_close(&a);
    }
    lmp_artifact_set_write_version(LMP_ARTIFACT_WRITE_VERSION);
    /* 8 AQ layers: (8..16) x 2 x 256 x 8 + (8..16) x 1 x 4096 x 8 codebook entries at 2
     * bytes instead of 4 */
    fprintf(stderr, "format 1: %lld bytes, format 2: %lld bytes\n", (long long)file_size(p1),
            (long long)file_size(p2));
    CHECK(file_size(p2) > 0 && file_size(p2) + 100000 < file_size(p1));
    for (int v = 2; v >= 1; v--) {
        struct lmp_artifact *a = NULL;
        CHECK(lmp_artifact_open_read(v == 2 ? p2 : p1, &a, &err) == LMP_OK);
        int64_t n_ok = 0, want_bytes = 0, want_params = 0;
        for (int64_t i = 0; a && i < job.n_linears; i++) {
            struct lmp_art_layer want, got;
            make_layer_raw(&job, i, &want, true);
            /* the data as stored: codes 1 byte (B <= 8) or 2; AQ codebooks and scales 2
             * bytes in format 2, 4 in format 1; RTN scales and zeros 4 */
            const int64_t fb = want.codec == LMP_ART_CODEC_AQ && v == 2 ? 2 : 4;
            want_bytes += lmp_art_layer_n_codes(&want) * (want.B <= 8 ? 1 : 2) +
                          (lmp_art_layer_n_codebooks(&want) + lmp_art_layer_n_scales(&want)) * fb +
                          (want.zeros ? lmp_art_layer_n_scales(&want) * 4 : 0);
            want_params += want.n_out * want.n_in;
            if (v == 2 && want.codec == LMP_ART_CODEC_AQ) {
                for (int64_t k = 0; k < lmp_art_layer_n_codebooks(&want); k++)
                    want.codebooks[k] = f16_round(want.codebooks[k]);
                for (int64_t k = 0; k < lmp_art_layer_n_scales(&want); k++)
                    want.scales[k] = f16_round(want.scales[k]);
            }
            if (lmp_artifact_read_layer(a, job.linears[i].name, &got, &err) == LMP_OK &&
                layers_equal(&want, &got))
                n_ok++;
            lmp_art_layer_release(&want);
            lmp_art_layer_release(&got);
        }
        CHECK(n_ok == job.n_linears);
        struct lmp_art_size sz;
        CHECK(a && lmp_artifact_size(a, &sz, &err) == LMP_OK);
        CHECK(sz.file_bytes == file_size(v == 2 ? p2 : p1));
        CHECK(sz.linear_bytes == want_bytes && sz.tensor_bytes == 0);
        CHECK(sz.n_linear_params == want_params && sz.n_params == want_params);
        lmp_artifact_close(&a);
    }
    /* raw values do not survive format 2 (the rounding above is not a no-op) */
    struct lmp_art_layer l;
    make_layer_raw(&job, 0, &l, true);
    CHECK(f16_round(l.codebooks[0]) != l.codebooks[0] ||
          f16_round(l.codebooks[1]) != l.codebooks[1]);
    /* a resume of the format-1 artifact is refused in one line */
    struct lmp_artifact *a = NULL;
    CHECK(lmp_artifact_open_write(p1, &job, &a, &err) == LMP_EMISMATCH);
    CHECK(strstr(err.msg, "artifact format 1") != NULL);
    lmp_artifact_close(&a);
    /* a value beyond fp16 is refused, not stored as infinity */
    const char *p3 = tpath(2, "big.h5");
    rm_artifact(p3);
    CHECK(lmp_artifact_open_write(p3, &job, &a, &err) == LMP_OK);
    l.scales[3] = 70000.0f;
    err         = (struct lmp_err){0};
    CHECK(a && lmp_artifact_commit_layer(a, &l, &err) == LMP_EINVAL);
    CHECK(strstr(err.msg, "not a finite fp16") != NULL);
    l.scales[3] = 65000.0f; /* the largest finite fp16 is 65504 */
    CHECK(a && lmp_artifact_commit_layer(a, &l, &err) == LMP_OK);
    lmp_art_layer_release(&l);
    lmp_artifact_close(&a);
    CHECK(no_open_handles());
    lmp_art_job_release(&job);
}

/* A tiny model in memory: 1 block, dim 16, hidden 32, 2 heads, 1 kv head, vocab 8. */
struct fake_model {
    struct lmp_model *m;
    float            *buf;
};

static struct fake_model fake_model_new(void) {
    struct fake_model fm = {0};
    struct lmp_model *m  = lmp_model_alloc(1);
    m->path              = strdup("fake.bin");
    m->cfg               = (struct lmp_config){
                      .n_layers = 1, .dim = 16, .hidden_dim = 32, .n_heads = 2, .n_kv_heads = 1, .vocab_size = 8};
    const int64_t shapes[12][2] = {{8, 16}, {16, 0}, {8, 16},  {16, 0},  {16, 0},  {16, 16},
                                   {8, 16}, {8, 16}, {16, 16}, {32, 16}, {32, 16}, {16, 32}};
    m->n_tensors                = 12;
    m->tensors                  = calloc(12, sizeof(*m->tensors));
    fm.buf                      = malloc(12 * 512 * sizeof(float));
    for (int i = 0; i < 12; i++) {
        struct lmp_tensor *t = &m->tensors[i];
        snprintf(t->name, sizeof(t->name), "t%d", i);
        t->dtype    = LMP_DTYPE_F32;
        t->n_dims   = shapes[i][1] ? 2 : 1;
        t->shape[0] = shapes[i][0];
        t->shape[1] = shapes[i][1];
        t->data     = fm.buf + i * 512;
        t->nbytes   = (uint64_t)lmp_tensor_n_elem(t) * 4;
        check_fill_random(fm.buf + i * 512, 512, (uint64_t)i);
    }
    /* down_proj (16, 32) as ggml Q8_0 (stored as fp16), the head as bf16 (stored as it is) */
    struct lmp_tensor *e = &m->tensors[11];
    uint8_t           *q = (uint8_t *)(fm.buf + 11 * 512);
    for (int b = 0; b < 16; b++) { /* 512 values = 16 blocks of 32: f16 d, int8 q[32] */
        uint16_t d = lmp_f32_to_f16(0.01f * (float)(b + 1));
        memcpy(q + 34 * b, &d, 2);
        for (int k = 0; k < 32; k++) q[34 * b + 2 + k] = (uint8_t)(int8_t)(k * 7 - 100 + b);
    }
    e->dtype              = LMP_DTYPE_Q8_0;
    e->nbytes             = 16 * 34;
    struct lmp_tensor *h  = &m->tensors[2];
    uint16_t          *hb = (uint16_t *)(fm.buf + 2 * 512);
    for (int k = 0; k < 128; k++) hb[k] = lmp_f32_to_bf16(fm.buf[2 * 512 + 256 + k]);
    h->dtype               = LMP_DTYPE_BF16;
    h->nbytes              = 128 * 2;
    m->tok_emb             = &m->tensors[0];
    m->out_norm            = &m->tensors[1];
    m->output              = &m->tensors[2];
    m->blocks[0].attn_norm = &m->tensors[3];
    m->blocks[0].ffn_norm  = &m->tensors[4];
    for (int k = 0; k < LMP_LIN_COUNT; k++) m->blocks[0].lin[k].weight = &m->tensors[5 + k];
    struct lmp_err err = {0};
    if (lmp_model_finish(m, &err) != LMP_OK) fprintf(stderr, "fake model: %s\n", err.msg);
    fm.m = m;
    return fm;
}

/* An untied one-block model of width 32 (dim a multiple of 32: the embedding can be blocks),
 * every tensor fp32 from seeded values. */
static struct fake_model fake_model_32(void) {
    struct fake_model fm = {0};
    struct lmp_model *m  = lmp_model_alloc(1);
    m->path              = strdup("fake32.bin");
    m->cfg               = (struct lmp_config){
                      .n_layers = 1, .dim = 32, .hidden_dim = 32, .n_heads = 2, .n_kv_heads = 1, .vocab_size = 8};
    const int64_t shapes[12][2] = {{8, 32},  {32, 0},  {8, 32},  {32, 0},  {32, 0},  {32, 32},
                                   {16, 32}, {16, 32}, {32, 32}, {32, 32}, {32, 32}, {32, 32}};
    m->n_tensors                = 12;
    m->tensors                  = calloc(12, sizeof(*m->tensors));
    fm.buf                      = malloc(12 * 1024 * sizeof(float));
    for (int i = 0; i < 12; i++) {
        struct lmp_tensor *t = &m->tensors[i];
        snprintf(t->name, sizeof(t->name), "t%d", i);
        t->dtype    = LMP_DTYPE_F32;
        t->n_dims   = shapes[i][1] ? 2 : 1;
        t->shape[0] = shapes[i][0];
        t->shape[1] = shapes[i][1];
        t->data     = fm.buf + i * 1024;
        t->nbytes   = (uint64_t)lmp_tensor_n_elem(t) * 4;
        check_fill_random(fm.buf + i * 1024, 1024, (uint64_t)(40 + i));
    }
    m->tok_emb             = &m->tensors[0];
    m->out_norm            = &m->tensors[1];
    m->output              = &m->tensors[2];
    m->blocks[0].attn_norm = &m->tensors[3];
    m->blocks[0].ffn_norm  = &m->tensors[4];
    for (int k = 0; k < LMP_LIN_COUNT; k++) m->blocks[0].lin[k].weight = &m->tensors[5 + k];
    struct lmp_err err = {0};
    if (lmp_model_finish(m, &err) != LMP_OK) fprintf(stderr, "fake model: %s\n", err.msg);
    fm.m = m;
    return fm;
}

/* put_model_tensors_q: the embedding as Q8_0 and the untied head as Q4_1 blocks, each weight
 * within half a step of its source; read back with their shape in weights; sizes count the
 * weights as parameters and the blocks as bytes; idempotent; a width of 16 is refused; a
 * uint8 tensor without its dtype attribute is EFORMAT, not a model. */
static void test_model_tensors_quantized(void) {
    struct fake_model  fm = fake_model_32();
    struct lmp_art_job job;
    lmp_art_job_init(&job);
    CHECK(lmp_art_job_from_model(&job, fm.m) == LMP_OK);
    snprintf(job.method, sizeof(job.method), "aqlm");
    const char *path = tpath(0, "model_q.h5");
    rm_artifact(path);
    struct lmp_err       err          = {0};
    struct lmp_artifact *a            = NULL;
    bool                 quantized[7] = {false, false, false, false, false, false, false};
    CHECK(lmp_artifact_open_write(path, &job, &a, &err) == LMP_OK);
    if (a) {
        CHECK(lmp_artifact_put_model_tensors_q(a, fm.m, quantized, false, 8, 4, &err) == LMP_OK);
        CHECK(lmp_artifact_put_model_tensors_q(a, fm.m, quantized, false, 8, 4, &err) == LMP_OK);
        CHECK(lmp_artifact_put_model_tensors_q(a, fm.m, quantized, false, 4, 4, &err) ==
              LMP_EMISMATCH); /* other blocks for a stored tensor */
        CHECK(lmp_artifact_is_complete(a));
        CHECK(lmp_artifact_finalize(a, &err) == LMP_OK);
        static const struct {
            const char *name;
            int         dtype, src;
        } want[2] = {{"model.embed_tokens.weight", LMP_DTYPE_Q8_0, 0},
                     {"lm_head.weight", LMP_DTYPE_Q4_1, 2}};
        for (int w = 0; w < 2; w++) {
            struct lmp_art_tensor t;
            CHECK(lmp_artifact_read_tensor(a, want[w].name, &t, &err) == LMP_OK);
            CHECK((int)t.dtype == want[w].dtype && t.n_dims == 2 && t.shape[0] == 8 &&
                  t.shape[1] == 32);
            const int64_t bb  = lmp_dtype_block_bytes(t.dtype);
            int           bad = 0;
            for (int r = 0; t.data && r < 8; r++) {
                float          row[32];
                const uint8_t *blk = (const uint8_t *)t.data + r * bb;
                lmp_kernels_get()->dequant_row(t.dtype, blk, row, 32);
                const float d = lmp_f16_to_f32((uint16_t)(blk[0] | blk[1] << 8));
                for (int k = 0; k < 32; k++)
                    bad += !(fabsf(row[k] - fm.buf[want[w].src * 1024 + r * 32 + k]) <=
                             0.5f * d * 1.001f + 1e-6f);
            }
            CHECK(bad == 0);
            lmp_art_tensor_release(&t);
        }
        struct lmp_art_size sz;
        CHECK(lmp_artifact_size(a, &sz, &err) == LMP_OK);
        CHECK(sz.embed_dtype == LMP_DTYPE_Q8_0 && sz.head_dtype == LMP_DTYPE_Q4_1);
        CHECK(sz.n_params == sz.n_linear_params + 2 * 8 * 32 + 3 * 32);
        CHECK(sz.tensor_bytes == 8 * 34 + 8 * 20 + 3 * 32 * 4 + sz.linear_bytes);
    }
    lmp_artifact_close(&a);
    /* the model runs from it: the blocks kept as they are, rows on use */
    struct lmp_model *m = NULL;
    CHECK(lmp_artifact_model_load(path, LMP_ART_WEIGHTS_CODES, &m, NULL, &err) == LMP_OK);
    if (m) {
        CHECK(m->tok_emb->dtype == LMP_DTYPE_Q8_0 && m->output->dtype == LMP_DTYPE_Q4_1);
        float row[32];
        lmp_tensor_rows_f32(m->output, 3, 1, row);
        CHECK(fabsf(row[5] - fm.buf[2 * 1024 + 3 * 32 + 5]) < 0.2f);
    }
    lmp_model_close(&m);
    CHECK(no_open_handles());
    lmp_art_job_release(&job);
    lmp_model_close(&fm.m);
    free(fm.buf);

    fm = fake_model_new(); /* width 16: not whole blocks */
    lmp_art_job_init(&job);
    CHECK(lmp_art_job_from_model(&job, fm.m) == LMP_OK);
    snprintf(job.method, sizeof(job.method), "aqlm");
    path = tpath(1, "model_q16.h5");
    err  = (struct lmp_err){0};
    rm_artifact(path);
    CHECK(lmp_artifact_open_write(path, &job, &a, &err) == LMP_OK);
    if (a) {
        CHECK(lmp_artifact_put_model_tensors_q(a, fm.m, NULL, false, 8, 16, &err) == LMP_EINVAL);
        CHECK(strstr(err.msg, "multiple of 32") != NULL);
        struct lmp_art_tensor t = {.dtype = LMP_DTYPE_Q8_0, .n_dims = 1, .shape = {32}};
        snprintf(t.name, sizeof(t.name), "x.weight");
        uint8_t blk[34] = {0};
        t.data          = blk;
        CHECK(lmp_artifact_put_tensor(a, &t, &err) == LMP_EINVAL); /* blocks are 2-D only */
    }
    lmp_artifact_close(&a);
    CHECK(no_open_handles());
    lmp_art_job_release(&job);
    lmp_model_close(&fm.m);
    free(fm.buf);
}

/* A model run on its codes keeps its embedding and head narrow: written in format 1 (fp32
 * tensors), an embedding whose values are exactly Q8_0 blocks comes back as those blocks and a
 * head of halves as F16, both widening to the stored values bit for bit; values that are
 * neither stay fp32; format 2 (fp16 tensors) stays F16; a dense load widens everything. */
static void test_model_head_narrowed(void) {
    for (int variant = 0; variant < 3; variant++) { /* exact fp32, random fp32, fp16 storage */
        struct fake_model fm  = fake_model_32();
        float            *emb = fm.buf, *head = fm.buf + 2 * 1024;
        if (variant == 0) {
            for (int b = 0; b < 8; b++) { /* one block of 32 per row: d q with fp16 d */
                const float d = lmp_f16_to_f32(lmp_f32_to_f16(0.003f * (float)(b + 1)));
                for (int k = 0; k < 32; k++)
                    emb[b * 32 + k] = d * (float)((k * 11 + b) % 255 - 127);
                emb[b * 32 + 5] = d * 127.0f; /* max |q| is 127, as the Q8_0 quantizer makes */
            }
            for (int k = 0; k < 256; k++) head[k] = lmp_f16_to_f32(lmp_f32_to_f16(head[k]));
        }
        uint16_t halves[2][256]; /* variant 2: a source of fp16 tensors, stored as fp16 */
        for (int t = 0; variant == 2 && t < 2; t++) {
            struct lmp_tensor *x =
                t ? (struct lmp_tensor *)fm.m->output : (struct lmp_tensor *)fm.m->tok_emb;
            for (int k = 0; k < 256; k++) halves[t][k] = lmp_f32_to_f16((t ? head : emb)[k]);
            x->dtype  = LMP_DTYPE_F16;
            x->data   = halves[t];
            x->nbytes = 512;
        }
        struct lmp_art_job job;
        lmp_art_job_init(&job);
        CHECK(lmp_art_job_from_model(&job, fm.m) == LMP_OK);
        snprintf(job.method, sizeof(job.method), "aqlm");
        const char *path = tpath(0, "narrow.h5");
        rm_artifact(path);
        struct lmp_err       err          = {0};
        struct lmp_artifact *a            = NULL;
        bool                 quantized[7] = {false, false, false, false, false, false, false};
        lmp_artifact_set_write_version(variant == 2 ? 2 : 1);
        CHECK(lmp_artifact_open_write(path, &job, &a, &err) == LMP_OK);
        CHECK(a && lmp_artifact_put_model_tensors(a, fm.m, quantized, false, &err) == LMP_OK);
        CHECK(a && lmp_artifact_finalize(a, &err) == LMP_OK);
        lmp_artifact_close(&a);
        lmp_artifact_set_write_version(LMP_ARTIFACT_WRITE_VERSION);
        for (int w = 0; w < 2; w++) {
            struct lmp_model *m = NULL;
            CHECK(lmp_artifact_model_load(path, w ? LMP_ART_WEIGHTS_DENSE : LMP_ART_WEIGHTS_CODES,
                                          &m, NULL, &err) == LMP_OK);
            if (m == NULL) continue;
            const int want_e = w || variant == 1 ? LMP_DTYPE_F32
                               : variant == 0    ? LMP_DTYPE_Q8_0
                                                 : LMP_DTYPE_F16;
            const int want_h = w || variant == 1 ? LMP_DTYPE_F32 : LMP_DTYPE_F16;
            if ((int)m->tok_emb->dtype != want_e || (int)m->output->dtype != want_h)
                fprintf(stderr, "variant %d, %s: embedding dtype %d, head %d\n", variant,
                        w ? "dense" : "codes", (int)m->tok_emb->dtype, (int)m->output->dtype);
            CHECK((int)m->tok_emb->dtype == want_e && (int)m->output->dtype == want_h);
            float row[256];
            int   diff = 0;
            for (int r = 0; r < 8; r++) {
                lmp_tensor_rows_f32(m->tok_emb, r, 1, row);
                for (int k = 0; k < 32; k++)
                    diff += variant == 2 ? row[k] != f16_round(emb[r * 32 + k])
                                         : memcmp(&row[k], &emb[r * 32 + k], 4) != 0;
                lmp_tensor_rows_f32(m->output, r, 1, row);
                for (int k = 0; k < 32; k++)
                    diff += variant == 2 ? row[k] != f16_round(head[r * 32 + k])
                                         : memcmp(&row[k], &head[r * 32 + k], 4) != 0;
            }
            CHECK(diff == 0);
            lmp_model_close(&m);
        }
        CHECK(no_open_handles());
        lmp_art_job_release(&job);
        lmp_model_close(&fm.m);
        free(fm.buf);
    }
}

static void test_model_tensors_and_fingerprint(void) {
    struct fake_model fm = fake_model_new();
    uint64_t          fp = lmp_fingerprint_model(fm.m);
    CHECK(fp == lmp_fingerprint_model(fm.m));
    float keep          = fm.buf[5 * 512 + 7];
    fm.buf[5 * 512 + 7] = 3.0f; /* one weight of q_proj */
    CHECK(lmp_fingerprint_model(fm.m) != fp);
    fm.buf[5 * 512 + 7] = keep;
    fm.m->cfg.max_seq   = 77; /* the config is part of it */
    CHECK(lmp_fingerprint_model(fm.m) != fp);
    fm.m->cfg.max_seq = 0;
    CHECK(lmp_fingerprint_model(fm.m) == fp);

    struct lmp_art_job job;
    lmp_art_job_init(&job);
    CHECK(lmp_art_job_from_model(&job, fm.m) == LMP_OK);
    CHECK(job.model_fp == fp && job.n_linears == 7);
    CHECK(strcmp(job.linears[6].name, "model.layers.0.mlp.down_proj") == 0 &&
          job.linears[6].n_out == 16 && job.linears[6].n_in == 32);
    snprintf(job.method, sizeof(job.method), "aqlm");
    const char *path = tpath(0, "model.h5");
    rm_artifact(path);
    struct lmp_err       err = {0};
    struct lmp_artifact *a   = NULL;
    bool quantized[7]        = {true, true, true, true, true, true, false}; /* down_proj kept */
    CHECK(lmp_artifact_open_write(path, &job, &a, &err) == LMP_OK);
    if (a) {
        CHECK(lmp_artifact_put_model_tensors(a, fm.m, quantized, false, &err) == LMP_OK);
        fprintf(stderr, "%s\n", err.msg);
        CHECK(lmp_artifact_put_model_tensors(a, fm.m, quantized, false, &err) ==
              LMP_OK); /* idempotent */
        CHECK(lmp_artifact_n_tensors(a) == 6);
        CHECK(!lmp_artifact_is_complete(a));
        for (int64_t i = 0; i < 6; i++) {
            struct lmp_art_layer l = {0};
            snprintf(l.name, sizeof(l.name), "%s", job.linears[i].name);
            l.codec  = LMP_ART_CODEC_RTN;
            l.M      = 1;
            l.B      = 2;
            l.g      = 8;
            l.n_out  = job.linears[i].n_out;
            l.n_in   = job.linears[i].n_in;
            l.codes  = calloc((size_t)(l.n_out * l.n_in), 2);
            l.scales = calloc((size_t)lmp_art_layer_n_scales(&l), 4);
            l.zeros  = calloc((size_t)lmp_art_layer_n_scales(&l), 4);
            CHECK(lmp_artifact_commit_layer(a, &l, &err) == LMP_OK);
            lmp_art_layer_release(&l);
        }
        CHECK(lmp_artifact_is_complete(a));
        CHECK(lmp_artifact_finalize(a, &err) == LMP_OK);
        struct lmp_art_size sz; /* linears: 7 (one kept); not: embedding, head, 3 norms */
        int64_t             n_lin = 0;
        for (int64_t i = 0; i < 7; i++) n_lin += job.linears[i].n_out * job.linears[i].n_in;
        CHECK(lmp_artifact_size(a, &sz, &err) == LMP_OK);
        CHECK(sz.n_linear_params == n_lin && sz.n_params == n_lin + 128 + 128 + 3 * 16);
        /* embedding and norms fp32, head bf16, kept down_proj fp16 (from Q8_0) */
        CHECK(sz.tensor_bytes == 128 * 4 + 3 * 16 * 4 + 128 * 2 + 512 * 2);
        CHECK(sz.linear_bytes > 512 * 2 && sz.file_bytes > sz.linear_bytes + sz.tensor_bytes);
        struct lmp_art_tensor t;
        CHECK(lmp_artifact_read_tensor(a, "model.layers.0.mlp.down_proj.weight", &t, &err) ==
              LMP_OK);
        CHECK(t.dtype == LMP_DTYPE_F16 && t.n_dims == 2 && t.shape[0] == 16 && t.shape[1] == 32);
        bool same = t.data != NULL;
        for (int k = 0; same && k < 512; k++) { /* the dequantized Q8_0 value, rounded */
            const uint8_t *qb = (const uint8_t *)(fm.buf + 11 * 512) + 34 * (k / 32);
            uint16_t       d = 0, got = 0;
            memcpy(&d, qb, 2);
            memcpy(&got, (const uint16_t *)t.data + k, 2);
            same = got == lmp_f32_to_f16(lmp_f16_to_f32(d) * (float)(int8_t)qb[2 + k % 32]);
        }
        CHECK(same);
        lmp_art_tensor_release(&t);
        CHECK(lmp_artifact_read_tensor(a, "lm_head.weight", &t, &err) == LMP_OK);
        CHECK(t.dtype == LMP_DTYPE_BF16 && t.n_dims == 2 && t.shape[0] == 8 &&
              memcmp(t.data, fm.buf + 2 * 512, 128 * 2) == 0); /* bf16 bits as they were */
        lmp_art_tensor_release(&t);
        CHECK(lmp_artifact_read_tensor(a, "model.embed_tokens.weight", &t, &err) == LMP_OK);
        CHECK(t.dtype == LMP_DTYPE_F32 && memcmp(t.data, fm.buf, 128 * 4) == 0); /* fp32 stays */
        lmp_art_tensor_release(&t);
        CHECK(lmp_artifact_read_tensor(a, "model.layers.0.input_layernorm.weight", &t, &err) ==
              LMP_OK);
        CHECK(t.n_dims == 1 && t.shape[0] == 16);
        lmp_art_tensor_release(&t);
    }
    lmp_artifact_close(&a);
    CHECK(no_open_handles());
    lmp_art_job_release(&job);
    lmp_model_close(&fm.m);
    free(fm.buf);
}

int main(void) {
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/lmp_test_artifact.XXXXXX");
    if (mkdtemp(tmpdir) == NULL) return 1;
    RUN(test_xxh64_vectors);
    RUN(test_roundtrip_and_handles);
    RUN(test_resume_and_refusal);
    RUN(test_fingerprint_covers_long_settings);
    RUN(test_long_job_text_round_trip);
    RUN(test_resume_refuses_other_build);
    RUN(test_corrupt_inputs);
    RUN(test_disk_full);
    RUN(test_kill_anywhere_then_resume);
    RUN(test_model_tensors_and_fingerprint);
    RUN(test_model_tensors_quantized);
    RUN(test_model_head_narrowed);
    RUN(test_fp16_storage_and_format1);
    if (check_failures == 0) rm_artifact(tmpdir);
    return check_report();
}
