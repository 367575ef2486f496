/*  test_llama2c - the llama2.c reader on stories260K, on synthetic v0/v1 files whose every
 *  weight carries a marker value, and on truncated and corrupt files */
#include "model/model.h"
#include "tests/check.h"

#include <stdbool.h>
#include <unistd.h>

static char tmpdir[256];

/* the message for a file of no known checkpoint format (model.c, model_llama2c.c) */
#define UNKNOWN "not a GGUF, safetensors or llama2.c file"

static void make_tmpdir(void) {
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof(tmpdir), "%s/lmp_llama2c_XXXXXX", base ? base : "/tmp");
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        exit(1);
    }
}

static long file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

static unsigned char *read_file(const char *path, long *n) {
    *n      = file_size(path);
    FILE *f = fopen(path, "rb");
    if (f == NULL || *n < 0) {
        if (f) fclose(f);
        return NULL;
    }
    unsigned char *buf = malloc((size_t)*n + 1);
    if (fread(buf, 1, (size_t)*n, f) != (size_t)*n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    return buf;
}

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (f == NULL) return;
    CHECK(fwrite(data, 1, n, f) == n);
    fclose(f);
}

/* --- stories260K ------------------------------------------------------------------ */

static void test_stories260k(void) {
    const char *path = check_shared_file(0, "models/stories260K/stories260K.bin");
    if (path == NULL) return;
    long           n_file = 0;
    unsigned char *raw    = read_file(path, &n_file);
    CHECK(raw != NULL);
    if (raw == NULL) return;

    struct lmp_model *m   = NULL;
    struct lmp_err    err = {0};
    enum lmp_status   st  = lmp_model_open(path, &m, &err);
    if (st != LMP_OK) fprintf(stderr, "open: %s\n", err.msg);
    CHECK(st == LMP_OK);
    if (m == NULL) {
        free(raw);
        return;
    }
    const struct lmp_config *c = &m->cfg;
    CHECK(c->format == LMP_FORMAT_LLAMA2C);
    CHECK(c->arch == LMP_ARCH_LLAMA);
    CHECK(c->dim == 64);
    CHECK(c->hidden_dim == 172);
    CHECK(c->n_layers == 5);
    CHECK(c->n_heads == 8);
    CHECK(c->n_kv_heads == 4);
    CHECK(c->head_dim == 8);
    CHECK(c->vocab_size == 512);
    CHECK(c->max_seq == 512);
    CHECK(c->tied_embeddings);
    CHECK(m->output == m->tok_emb);
    CHECK(c->rope == LMP_ROPE_INTERLEAVED);
    CHECK(c->rope_theta == 10000.0f);
    CHECK_NEAR(c->norm_eps, 1e-5, 1e-12);
    CHECK(!c->qkv_bias);
    /* 32768 embedding + 5 * 45440 per layer + 64 final norm: the "260K" of the name */
    CHECK(lmp_model_n_params(m) == 260032);

    /* the embedding starts right after the 28-byte header: compare with the raw bytes */
    float want[8], got[8];
    memcpy(want, raw + 28, sizeof(want));
    float row[64];
    lmp_tensor_rows_f32(m->tok_emb, 0, 1, row);
    memcpy(got, row, sizeof(got));
    for (int i = 0; i < 8; i++) CHECK(got[i] == want[i]);
    CHECK(want[0] != 0.0f || want[1] != 0.0f); /* a real embedding, not zero padding */

    /* offsets of a late tensor computed independently from the v0 layout */
    const int64_t dim = 64, hid = 172, L = 5, kv = 32, vocab = 512;
    const int64_t w3_off = 28 + 4 * (vocab * dim + L * dim + L * dim * dim * 2 + L * kv * dim * 2 +
                                     L * dim + L * hid * dim * 2 + 4 * hid * dim);
    const struct lmp_tensor *w3 = lmp_model_find_tensor(m, "layers.4.w3");
    CHECK(w3 != NULL);
    if (w3) {
        CHECK((const unsigned char *)w3->data -
                  (const unsigned char *)m->blocks[0].attn_norm->data ==
              w3_off - (28 + 4 * vocab * dim));
        CHECK(m->blocks[4].lin[LMP_LIN_UP].weight == w3);
        CHECK(memcmp(w3->data, raw + w3_off, (size_t)(hid * dim * 4)) == 0);
    }
    const struct lmp_tensor *fin = lmp_model_find_tensor(m, "norm");
    CHECK(fin == m->out_norm);
    if (fin) CHECK(memcmp(fin->data, raw + w3_off + 4 * hid * dim, 64 * 4) == 0);
    CHECK(m->blocks[2].lin[LMP_LIN_GATE].weight == lmp_model_find_tensor(m, "layers.2.w1"));
    CHECK(m->blocks[2].lin[LMP_LIN_DOWN].weight == lmp_model_find_tensor(m, "layers.2.w2"));
    CHECK(strcmp(lmp_model_linear(m, 3 * LMP_LIN_COUNT + LMP_LIN_K)->name,
                 "model.layers.3.self_attn.k_proj") == 0);
    lmp_model_close(&m);
    CHECK(m == NULL);

    /* truncated copies fail cleanly, naming the file and both sizes */
    const long cuts[] = {0, 4, 27, 28, 29, 28 + 4 * 32768, n_file / 2, n_file - 4, n_file - 1};
    for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
        char p[512];
        snprintf(p, sizeof(p), "%s/stories_cut%zu.bin", tmpdir, i);
        write_file(p, raw, (size_t)cuts[i]);
        struct lmp_err e = {0};
        CHECK(lmp_model_open(p, &m, &e) == LMP_EFORMAT);
        CHECK(m == NULL);
        CHECK(strstr(e.msg, p) != NULL);
        /* under one header no reader can tell what the file was meant to be */
        CHECK(strstr(e.msg, cuts[i] < 28 ? UNKNOWN : "truncated") != NULL);
        if (cuts[i] >= 28) {
            char sizes[128];
            snprintf(sizes, sizeof(sizes), "needs %ld bytes, file has %ld", n_file, cuts[i]);
            CHECK(strstr(e.msg, sizes) != NULL);
        }
        unlink(p);
    }

    /* trailing bytes after a v0 file: its size is the only check of a v0 header */
    char p[512];
    snprintf(p, sizeof(p), "%s/stories_trail.bin", tmpdir);
    unsigned char *big = calloc((size_t)n_file + 100, 1);
    memcpy(big, raw, (size_t)n_file);
    write_file(p, big, (size_t)n_file + 100);
    CHECK(lmp_model_open(p, &m, &err) == LMP_EFORMAT && m == NULL);
    CHECK(strstr(err.msg, p) != NULL && strstr(err.msg, "(100 trailing)") != NULL);
    unlink(p);
    free(big);

    /* issue 10 item 8: vocab_size -1 (an untied classifier of one row) describes a prefix
     * of the file; so do the other fields changed to smaller plausible values */
    const struct {
        int         field;
        int32_t     value;
        const char *says;
    } edits[] = {
        {5, -1, "vocab 1 with an untied classifier"},
        {5, 256, "vocab 256,"},
        {5, -512, "truncated: llama2.c layout needs"},
        {2, 4, "layers 4,"},
        {1, 100, "hidden 100,"},
        {4, 8, "truncated: llama2.c layout needs"},
        {6, 64, "seq_len 64)"},
    };
    for (size_t i = 0; i < sizeof(edits) / sizeof(edits[0]); i++) {
        unsigned char *ed = malloc((size_t)n_file);
        memcpy(ed, raw, (size_t)n_file);
        memcpy(ed + 4 * edits[i].field, &edits[i].value, 4);
        snprintf(p, sizeof(p), "%s/stories_edit%zu.bin", tmpdir, i);
        write_file(p, ed, (size_t)n_file);
        err                      = (struct lmp_err){0};
        const enum lmp_status st = lmp_model_open(p, &m, &err);
        if (st != LMP_EFORMAT || strstr(err.msg, edits[i].says) == NULL)
            fprintf(stderr, "edit %zu: %s (%s)\n", i, lmp_status_str(st), err.msg);
        CHECK(st == LMP_EFORMAT && m == NULL);
        CHECK(strstr(err.msg, p) != NULL && strstr(err.msg, edits[i].says) != NULL);
        CHECK(strchr(err.msg, '\n') == NULL);
        lmp_model_close(&m);
        unlink(p);
        free(ed);
    }
    free(raw);
}

/* --- synthetic files ---------------------------------------------------------------- */

enum { DIM = 8, HID = 12, NL = 2, NH = 2, NKV = 1, VOCAB = 10, SEQ = 4, KV = DIM / NH * NKV };

/* A section of the data: marker k, per-layer or not, shape. Every element e of section k
 * holds k * 1024 + e (e counts across the stacked layers). */
struct section {
    const char *name;
    int         per_layer;
    int         rows, cols;
};

static const struct section v0_order[] = {{"tok_embeddings", 0, VOCAB, DIM},
                                          {"attention_norm", 1, DIM, 0},
                                          {"wq", 1, DIM, DIM},
                                          {"wk", 1, KV, DIM},
                                          {"wv", 1, KV, DIM},
                                          {"wo", 1, DIM, DIM},
                                          {"ffn_norm", 1, DIM, 0},
                                          {"w1", 1, HID, DIM},
                                          {"w2", 1, DIM, HID},
                                          {"w3", 1, HID, DIM},
                                          {"norm", 0, DIM, 0},
                                          {"freq_cis_real", 0, SEQ, DIM / NH / 2},
                                          {"freq_cis_imag", 0, SEQ, DIM / NH / 2},
                                          {"output", 0, VOCAB, DIM}};
static const struct section v1_order[] = {{"attention_norm", 1, DIM, 0},
                                          {"ffn_norm", 1, DIM, 0},
                                          {"norm", 0, DIM, 0},
                                          {"tok_embeddings", 0, VOCAB, DIM},
                                          {"wq", 1, DIM, DIM},
                                          {"wk", 1, KV, DIM},
                                          {"wv", 1, KV, DIM},
                                          {"wo", 1, DIM, DIM},
                                          {"w1", 1, HID, DIM},
                                          {"w2", 1, DIM, HID},
                                          {"w3", 1, HID, DIM},
                                          {"output", 0, VOCAB, DIM}};

static int64_t section_elems(const struct section *s) {
    return (int64_t)s->rows * (s->cols ? s->cols : 1) * (s->per_layer ? NL : 1);
}

/* Build a file image; returns its size. hdr7 = the 7 header ints (vocab sign included). */
static size_t build(unsigned char *buf, int version, const int32_t hdr7[7], bool shared,
                    size_t trailing) {
    size_t off = 0;
    if (version == 1) {
        uint32_t magic = 0x616b3432u;
        int32_t  ver   = 1;
        memcpy(buf, &magic, 4);
        memcpy(buf + 4, &ver, 4);
        memcpy(buf + 8, hdr7, 28);
        buf[36] = shared;
        memset(buf + 37, 0, 256 - 37);
        off = 256;
    } else {
        memcpy(buf, hdr7, 28);
        off = 28;
    }
    const struct section *order = version ? v1_order : v0_order;
    size_t                n_sec =
        version ? sizeof(v1_order) / sizeof(v1_order[0]) : sizeof(v0_order) / sizeof(v0_order[0]);
    for (size_t k = 0; k < n_sec; k++) {
        if (strcmp(order[k].name, "output") == 0 && shared) continue;
        for (int64_t e = 0; e < section_elems(&order[k]); e++) {
            float v = (float)(k * 1024 + e);
            memcpy(buf + off, &v, 4);
            off += 4;
        }
    }
    memset(buf + off, 0x5a, trailing);
    return off + trailing;
}

/* Every tensor of m named after a section holds that section's markers. */
static void check_markers(const struct lmp_model *m, int version) {
    const struct section *order = version ? v1_order : v0_order;
    size_t                n_sec =
        version ? sizeof(v1_order) / sizeof(v1_order[0]) : sizeof(v0_order) / sizeof(v0_order[0]);
    int n_checked = 0;
    for (size_t k = 0; k < n_sec; k++) {
        const struct section *s   = &order[k];
        int64_t               per = (int64_t)s->rows * (s->cols ? s->cols : 1);
        for (int b = 0; b < (s->per_layer ? NL : 1); b++) {
            char name[64];
            if (s->per_layer)
                snprintf(name, sizeof(name), "layers.%d.%s", b, s->name);
            else
                snprintf(name, sizeof(name), "%s", s->name);
            const struct lmp_tensor *t = lmp_model_find_tensor(m, name);
            if (strncmp(s->name, "freq", 4) == 0 ||
                (!strcmp(s->name, "output") && m->cfg.tied_embeddings)) {
                CHECK(t == NULL);
                continue;
            }
            CHECK(t != NULL);
            if (t == NULL) continue;
            CHECK(lmp_tensor_n_elem(t) == per);
            CHECK(t->nbytes == (uint64_t)per * 4);
            float *row = malloc((size_t)per * sizeof(float));
            lmp_tensor_rows_f32(t, 0, lmp_tensor_n_rows(t), row);
            int bad = 0;
            for (int64_t e = 0; e < per; e++) bad += row[e] != (float)(k * 1024 + b * per + e);
            CHECK(bad == 0);
            free(row);
            n_checked++;
        }
    }
    CHECK(n_checked == (int)m->n_tensors);
    /* the roles: w1 = gate, w3 = up, w2 = down, wcls = output */
    CHECK(m->blocks[1].lin[LMP_LIN_GATE].weight == lmp_model_find_tensor(m, "layers.1.w1"));
    CHECK(m->blocks[1].lin[LMP_LIN_UP].weight == lmp_model_find_tensor(m, "layers.1.w3"));
    CHECK(m->blocks[1].lin[LMP_LIN_DOWN].weight == lmp_model_find_tensor(m, "layers.1.w2"));
    CHECK(m->blocks[0].lin[LMP_LIN_V].weight == lmp_model_find_tensor(m, "layers.0.wv"));
    CHECK(m->blocks[1].ffn_norm == lmp_model_find_tensor(m, "layers.1.ffn_norm"));
    CHECK(m->tok_emb == lmp_model_find_tensor(m, "tok_embeddings"));
    CHECK(m->output == (m->cfg.tied_embeddings ? m->tok_emb : lmp_model_find_tensor(m, "output")));
}

static unsigned char image[64 * 1024];

static enum lmp_status open_image(const char *tag, size_t n, struct lmp_model **m,
                                  struct lmp_err *err, char *path_out) {
    snprintf(path_out, 512, "%s/%s.bin", tmpdir, tag);
    write_file(path_out, image, n);
    memset(err, 0, sizeof(*err));
    return lmp_model_open(path_out, m, err);
}

static void test_synthetic_layouts(void) {
    for (int version = 0; version <= 1; version++) {
        for (int shared = 0; shared <= 1; shared++) {
            int32_t hdr[7] = {DIM, HID, NL, NH, NKV, VOCAB, SEQ};
            if (version == 0 && !shared) hdr[5] = -VOCAB;
            size_t            n = build(image, version, hdr, shared, 0);
            struct lmp_model *m = NULL;
            struct lmp_err    err;
            char              path[512], tag[32];
            snprintf(tag, sizeof(tag), "v%d_shared%d", version, shared);
            enum lmp_status st = open_image(tag, n, &m, &err, path);
            if (st != LMP_OK) fprintf(stderr, "%s: %s\n", tag, err.msg);
            CHECK(st == LMP_OK);
            if (m == NULL) continue;
            CHECK(m->cfg.dim == DIM && m->cfg.hidden_dim == HID && m->cfg.n_layers == NL);
            CHECK(m->cfg.n_heads == NH && m->cfg.n_kv_heads == NKV && m->cfg.vocab_size == VOCAB);
            CHECK(m->cfg.max_seq == SEQ && m->cfg.head_dim == DIM / NH);
            CHECK(m->cfg.tied_embeddings == (bool)shared);
            CHECK(m->n_tensors == 2 + 9 * NL + !shared);
            check_markers(m, version);
            lmp_model_close(&m);

            /* one byte short: truncated, with the exact sizes */
            st = open_image(tag, n - 1, &m, &err, path);
            CHECK(st == LMP_EFORMAT && m == NULL);
            char want[128];
            snprintf(want, sizeof(want), "truncated: llama2.c layout needs %zu bytes, file has %zu",
                     n, n - 1);
            CHECK(strstr(err.msg, want) != NULL);

            /* trailing data: rejected in both versions (the size checks the header) */
            n  = build(image, version, hdr, shared, 8);
            st = open_image(tag, n, &m, &err, path);
            CHECK(st == LMP_EFORMAT && m == NULL);
            CHECK(strstr(err.msg, "(8 trailing)") != NULL);
            lmp_model_close(&m);
            unlink(path);
        }
    }
}

/* Files whose size matches their header but whose config no model has: a vocabulary of
 * one token (ppl 1.0 whatever the text). The data is zeros of the size the header
 * implies (the llama2.c layout's element count). */
static void test_consistent_but_absurd(void) {
    const int32_t vocabs[] = {1, -1};
    for (int version = 0; version <= 1; version++)
        for (size_t i = 0; i < sizeof(vocabs) / sizeof(vocabs[0]); i++) {
            if (version == 1 && vocabs[i] < 0) continue; /* v1: vocab > 0, a flag for tying */
            const int32_t hdr[7]    = {DIM, HID, NL, NH, NKV, vocabs[i], SEQ};
            const int64_t v         = vocabs[i] < 0 ? -vocabs[i] : vocabs[i];
            const bool    shared    = version == 1 || vocabs[i] > 0;
            const int64_t per_layer = 2 * DIM + 2 * DIM * DIM + 2 * KV * DIM + 3 * HID * DIM;
            int64_t       n_elem    = v * DIM + NL * per_layer + DIM + (shared ? 0 : v * DIM);
            if (version == 0) n_elem += 2 * SEQ * (DIM / NH / 2);
            const size_t hdr_bytes = version ? 256 : 28, n = hdr_bytes + 4 * (size_t)n_elem;
            memset(image, 0, n);
            if (version == 1) {
                const uint32_t magic = 0x616b3432u;
                const int32_t  ver   = 1;
                memcpy(image, &magic, 4), memcpy(image + 4, &ver, 4), memcpy(image + 8, hdr, 28);
                image[36] = 1;
            } else {
                memcpy(image, hdr, 28);
            }
            struct lmp_model *m = NULL;
            struct lmp_err    err;
            char              path[512];
            enum lmp_status   st   = open_image("absurd", n, &m, &err, path);
            const char       *says = "vocab_size 1 is out of range [2, ";
            if (st != LMP_EFORMAT || strstr(err.msg, says) == NULL)
                fprintf(stderr, "v%d vocab %d: %s (%s)\n", version, vocabs[i], lmp_status_str(st),
                        err.msg);
            CHECK(st == LMP_EFORMAT && m == NULL);
            CHECK(strstr(err.msg, path) != NULL && strstr(err.msg, says) != NULL);
            lmp_model_close(&m);
            unlink(path);
        }
}

static void test_bad_headers(void) {
    const int32_t good[7] = {DIM, HID, NL, NH, NKV, VOCAB, SEQ};
    /* field index, bad value */
    const struct {
        int     field;
        int32_t value;
    } bad[] = {
        {0, 0},          {0, -8},        {0, 7},  /* dim: zero, negative, not divisible by heads */
        {0, 0x7fffffff},                          /* absurd */
        {1, 0},          {1, -1},                 /* hidden */
        {2, 0},          {2, 100000},             /* layers */
        {3, 0},          {3, 3},         {3, 16}, /* heads: zero, not dividing dim, > dim */
        {4, 0},          {4, 3},         {4, 4},  /* kv heads: zero, not dividing, > heads */
        {5, 0},          {5, INT32_MIN}, {5, 1 << 30}, /* vocab */
        {6, 0},          {6, -4},                      /* seq_len */
    };
    for (int version = 0; version <= 1; version++) {
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            int32_t hdr[7];
            memcpy(hdr, good, sizeof(hdr));
            hdr[bad[i].field] = bad[i].value;
            /* header only, followed by plenty of bytes so only the header can be wrong */
            size_t n = build(image, version, good, true, 0);
            if (version == 1)
                memcpy(image + 8, hdr, 28);
            else
                memcpy(image, hdr, 28);
            struct lmp_model *m = NULL;
            struct lmp_err    err;
            char              path[512];
            enum lmp_status   st = open_image("badhdr", n, &m, &err, path);
            if (st != LMP_EFORMAT)
                fprintf(stderr, "v%d field %d = %d: %s (%s)\n", version, bad[i].field, bad[i].value,
                        lmp_status_str(st), err.msg);
            CHECK(st == LMP_EFORMAT);
            CHECK(m == NULL);
            CHECK(strstr(err.msg, path) != NULL);
            /* without the magic an implausible header means no known format */
            if (version == 0)
                CHECK(strstr(err.msg, UNKNOWN) != NULL);
            else
                CHECK(strstr(err.msg, UNKNOWN) == NULL);
            unlink(path);
        }
    }
    /* v1 with an unsupported version (int8 export) or a bad flag */
    size_t  n  = build(image, 1, good, true, 0);
    int32_t v2 = 2;
    memcpy(image + 4, &v2, 4);
    struct lmp_model *m = NULL;
    struct lmp_err    err;
    char              path[512];
    CHECK(open_image("v2", n, &m, &err, path) == LMP_EUNSUP);
    CHECK(strstr(err.msg, "version 2") != NULL);
    unlink(path);
    n         = build(image, 1, good, true, 0);
    image[36] = 7;
    CHECK(open_image("flag", n, &m, &err, path) == LMP_EFORMAT);
    unlink(path);
    /* a v1 header that ends early */
    build(image, 1, good, true, 0);
    CHECK(open_image("v1short", 100, &m, &err, path) == LMP_EFORMAT);
    CHECK(strstr(err.msg, "truncated") != NULL);
    unlink(path);
    /* a missing file */
    CHECK(lmp_model_open("/nonexistent/dir/model.bin", &m, &err) == LMP_ENOENT);
    CHECK(m == NULL);
}

/* Files of no known format: random bytes, a text, an empty file, a GGUF cut short. None
 * may be read as a llama2.c file with absurd sizes ("dim 1178880137"). */
static void open_unknown(const char *tag, const void *data, size_t n, enum lmp_status want,
                         const char *want_msg) {
    char path[512];
    snprintf(path, sizeof(path), "%s/%s.bin", tmpdir, tag);
    write_file(path, data, n);
    struct lmp_model *m   = NULL;
    struct lmp_err    err = {0};
    enum lmp_status   st  = lmp_model_open(path, &m, &err);
    if (st != want || strstr(err.msg, want_msg) == NULL)
        fprintf(stderr, "%s: %s (%s)\n", tag, lmp_status_str(st), err.msg);
    CHECK(st == want);
    CHECK(m == NULL);
    CHECK(strstr(err.msg, path) != NULL);
    CHECK(strstr(err.msg, want_msg) != NULL);
    CHECK(strstr(err.msg, "dim ") == NULL && strstr(err.msg, "llama2.c checkpoint") == NULL);
    lmp_model_close(&m);
    unlink(path);
}

static void test_unknown_formats(void) {
    enum { N = 4096 };
    unsigned char *buf = malloc(N);
    CHECK(buf != NULL);
    if (buf == NULL) return;
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    for (int seed = 0; seed < 16; seed++) { /* xorshift bytes */
        for (int i = 0; i < N; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            buf[i] = (unsigned char)(x >> 24);
        }
        char tag[32];
        snprintf(tag, sizeof(tag), "random%d", seed);
        open_unknown(tag, buf, N, LMP_EFORMAT, UNKNOWN);
    }
    static const char text[] =
        "Once upon a time, there was a little girl named Lily. She loved to play outside\n"
        "in the sunshine. One day, she saw a big, red ball in the park.\n";
    open_unknown("text", text, sizeof(text) - 1, LMP_EFORMAT, UNKNOWN);
    open_unknown("short_text", "GGU", 3, LMP_EFORMAT, UNKNOWN);
    open_unknown("empty", "", 0, LMP_EFORMAT, UNKNOWN);
    /* an HDF5 file (an artifact given as a model): named as such, with the way to run it */
    static const unsigned char hdf5[] = "\x89HDF\r\n\x1a\n\0\0\0\0\0\x08\x08\0\x04\0\x10";
    open_unknown("artifact", hdf5, sizeof(hdf5) - 1, LMP_EFORMAT, "an HDF5 file");
    open_unknown("artifact2", hdf5, sizeof(hdf5) - 1, LMP_EFORMAT, "--artifact");
    /* a GGUF cut inside its header: the GGUF reader's "truncated", not a llama2.c error */
    static const unsigned char gguf[] = {'G', 'G', 'U', 'F', 3, 0, 0, 0, 9, 0, 0,
                                         0,   0,   0,   0,   0, 2, 0, 0, 0, 0, 0};
    for (size_t cut = 4; cut <= sizeof(gguf); cut += 6) {
        char tag[32];
        snprintf(tag, sizeof(tag), "gguf_cut%zu", cut);
        open_unknown(tag, gguf, cut, LMP_EFORMAT, "truncated");
    }
    free(buf);
}

int main(void) {
    make_tmpdir();
    RUN(test_unknown_formats);
    RUN(test_synthetic_layouts);
    RUN(test_bad_headers);
    RUN(test_consistent_but_absurd);
    RUN(test_stories260k);
    rmdir(tmpdir);
    return check_report();
}
