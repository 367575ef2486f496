/*  test_gemma3 - a tiny Gemma 3 GGUF through the reader and the forward pass
 *
 *  A three-block model (blocks 0 and 1 local with a 4-token window and RoPE base 100,
 *  block 2 global with base 1e6 and linear RoPE scaling 2) is written as GGUF with
 *  llama.cpp's gemma3 keys and tensor names, read back, and run by lmp_transformer_forward
 *  on 11 tokens (longer than the window). The logits must equal a direct double-precision
 *  implementation of Gemma 3 written here from the architecture (embedding * sqrt(dim);
 *  per block: norm, q/k/v, per-head q/k RMSNorm, NEOX RoPE with the layer's base, scaled
 *  causal attention limited to the window on local blocks, post-attention norm, residual;
 *  norm, GeGLU (tanh GELU), post-FFN norm, residual; final norm; tied head). The KV-cache
 *  path (one token at a time) must give the same logits. Errors: a missing Gemma tensor, an
 *  unknown RoPE scaling type, a rope_freqs of the wrong size. The model written into a
 *  format-3 artifact reads back as the same model, a rope_freqs tensor's divisors included.
 */
#include "artifact/artifact.h"       /* defines: lmp_artifact_*, lmp_art_job_* */
#include "artifact/artifact_model.h" /* defines: lmp_artifact_model_open */
#include "coordinator/job_check.h"   /* defines: lmp_job_check */
#include "model/model.h"
#include "model/transformer.h"
#include "tests/check.h"       /* defines: CHECK, RUN, check_report */
#include "tests/gguf_writer.h" /* defines: struct gw, gw_* */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { DIM = 16, HEADS = 2, KV = 1, HD = 8, HID = 24, VOCAB = 40, LAYERS = 3, NTOK = 11 };
enum { WINDOW = 4, PATTERN = 3 };
#define THETA       1e6
#define THETA_LOCAL 100.0
#define FACTOR      2.0
#define EPS         1e-6

static char tmpdir[256];

struct weights {
    float emb[VOCAB * DIM], out_norm[DIM];
    struct {
        float attn_norm[DIM], q[HEADS * HD * DIM], k[KV * HD * DIM], v[KV * HD * DIM];
        float q_norm[HD], k_norm[HD], o[DIM * HEADS * HD], post_attn[DIM];
        float ffn_norm[DIM], gate[HID * DIM], up[HID * DIM], down[DIM * HID], post_ffn[DIM];
    } b[LAYERS];
};

static void fill(float *x, int n, uint64_t seed, float center, float spread) {
    check_fill_random(x, n, seed);
    for (int i = 0; i < n; i++) x[i] = center + spread * x[i];
}

static void make_weights(struct weights *w) {
    uint64_t s = 7;
    fill(w->emb, VOCAB * DIM, s++, 0, 0.5f);
    fill(w->out_norm, DIM, s++, 1, 0.3f);
    for (int l = 0; l < LAYERS; l++) {
        fill(w->b[l].attn_norm, DIM, s++, 1, 0.3f);
        fill(w->b[l].q, HEADS * HD * DIM, s++, 0, 0.4f);
        fill(w->b[l].k, KV * HD * DIM, s++, 0, 0.4f);
        fill(w->b[l].v, KV * HD * DIM, s++, 0, 0.4f);
        fill(w->b[l].q_norm, HD, s++, 1, 0.3f);
        fill(w->b[l].k_norm, HD, s++, 1, 0.3f);
        fill(w->b[l].o, DIM * HEADS * HD, s++, 0, 0.4f);
        fill(w->b[l].post_attn, DIM, s++, 1, 0.3f);
        fill(w->b[l].ffn_norm, DIM, s++, 1, 0.3f);
        fill(w->b[l].gate, HID * DIM, s++, 0, 0.4f);
        fill(w->b[l].up, HID * DIM, s++, 0, 0.4f);
        fill(w->b[l].down, DIM * HID, s++, 0, 0.4f);
        fill(w->b[l].post_ffn, DIM, s++, 1, 0.3f);
    }
}

struct variant {
    const char *scaling_type;    /* rope.scaling.type, NULL: linear FACTOR */
    int         rope_freqs_n;    /* > 0: a rope_freqs tensor of that many values */
    float       rope_freqs_step; /* value i = 1 + step * i (0: ones, the same frequencies) */
    int         skip_layer_norm; /* 1: leave out blk.1.post_ffw_norm */
    int         no_type;         /* 1: no rope.scaling.type (llama.cpp's default: linear) */
};

static const char *write_gemma3(const char *fname, const struct weights *wt,
                                const struct variant *v) {
    struct gw w;
    gw_init(&w);
    gw_kv_str(&w, "general.architecture", "gemma3");
    gw_kv_u32(&w, "gemma3.block_count", LAYERS);
    gw_kv_u32(&w, "gemma3.context_length", 64);
    gw_kv_u32(&w, "gemma3.embedding_length", DIM);
    gw_kv_u32(&w, "gemma3.feed_forward_length", HID);
    gw_kv_u32(&w, "gemma3.attention.head_count", HEADS);
    gw_kv_u32(&w, "gemma3.attention.head_count_kv", KV);
    gw_kv_u32(&w, "gemma3.attention.key_length", HD);
    gw_kv_u32(&w, "gemma3.attention.value_length", HD);
    gw_kv_f32(&w, "gemma3.attention.layer_norm_rms_epsilon", (float)EPS);
    gw_kv_f32(&w, "gemma3.rope.freq_base", (float)THETA);
    gw_kv_f32(&w, "gemma3.rope.freq_base_swa", (float)THETA_LOCAL);
    gw_kv_u32(&w, "gemma3.attention.sliding_window", WINDOW);
    gw_kv_u32(&w, "gemma3.attention.sliding_window_pattern", PATTERN);
    if (!v->no_type)
        gw_kv_str(&w, "gemma3.rope.scaling.type", v->scaling_type ? v->scaling_type : "linear");
    gw_kv_f32(&w, "gemma3.rope.scaling.factor", (float)FACTOR);
    const uint64_t d1[1] = {DIM}, hd1[1] = {HD};
#define T2(name, ptr, n_in, n_out)                                                                 \
    gw_tensor(&w, name, GW_F32, 2, (const uint64_t[]){n_in, n_out}, ptr,                           \
              sizeof(float) * (n_in) * (n_out))
    T2("token_embd.weight", wt->emb, DIM, VOCAB);
    gw_tensor(&w, "output_norm.weight", GW_F32, 1, d1, wt->out_norm, sizeof(wt->out_norm));
    if (v->rope_freqs_n > 0) {
        float ones[64];
        for (int i = 0; i < 64; i++) ones[i] = 1.0f + v->rope_freqs_step * (float)i;
        gw_tensor(&w, "rope_freqs.weight", GW_F32, 1, (const uint64_t[]){(uint64_t)v->rope_freqs_n},
                  ones, sizeof(float) * (size_t)v->rope_freqs_n);
    }
    for (int l = 0; l < LAYERS; l++) {
        char n[96];
#define NAME(s) (snprintf(n, sizeof(n), "blk.%d.%s.weight", l, s), n)
        gw_tensor(&w, NAME("attn_norm"), GW_F32, 1, d1, wt->b[l].attn_norm, sizeof(float) * DIM);
        T2(NAME("attn_q"), wt->b[l].q, DIM, HEADS * HD);
        T2(NAME("attn_k"), wt->b[l].k, DIM, KV * HD);
        T2(NAME("attn_v"), wt->b[l].v, DIM, KV * HD);
        gw_tensor(&w, NAME("attn_q_norm"), GW_F32, 1, hd1, wt->b[l].q_norm, sizeof(float) * HD);
        gw_tensor(&w, NAME("attn_k_norm"), GW_F32, 1, hd1, wt->b[l].k_norm, sizeof(float) * HD);
        T2(NAME("attn_output"), wt->b[l].o, HEADS * HD, DIM);
        gw_tensor(&w, NAME("post_attention_norm"), GW_F32, 1, d1, wt->b[l].post_attn,
                  sizeof(float) * DIM);
        gw_tensor(&w, NAME("ffn_norm"), GW_F32, 1, d1, wt->b[l].ffn_norm, sizeof(float) * DIM);
        T2(NAME("ffn_gate"), wt->b[l].gate, DIM, HID);
        T2(NAME("ffn_up"), wt->b[l].up, DIM, HID);
        T2(NAME("ffn_down"), wt->b[l].down, HID, DIM);
        if (!(v->skip_layer_norm && l == 1))
            gw_tensor(&w, NAME("post_ffw_norm"), GW_F32, 1, d1, wt->b[l].post_ffn,
                      sizeof(float) * DIM);
#undef NAME
    }
#undef T2
    struct gw_buf img = gw_finish(&w, 3);
    static char   path[4][512];
    static int    slot;
    char         *p = path[slot++ & 3];
    snprintf(p, 512, "%s/%s", tmpdir, fname);
    FILE *f = fopen(p, "wb");
    if (f == NULL || fwrite(img.p, 1, img.n, f) != img.n) abort();
    fclose(f);
    free(img.p);
    return p;
}

/* --- the direct implementation --------------------------------------------------------- */

static void rmsnorm(double *x, const float *w, int n) { /* in place */
    double ss = 0;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    double s = 1.0 / sqrt(ss / n + EPS);
    for (int i = 0; i < n; i++) x[i] = x[i] * s * w[i];
}

static void matvec(const float *W, const double *x, int n_out, int n_in, double *y) {
    for (int o = 0; o < n_out; o++) {
        double a = 0;
        for (int i = 0; i < n_in; i++) a += (double)W[o * n_in + i] * x[i];
        y[o] = a;
    }
}

static void rope_neox(double *h, int pos, double theta, double scale) {
    for (int i = 0; i < HD / 2; i++) {
        double ang = pos * pow(theta, -2.0 * i / HD) / scale, c = cos(ang), s = sin(ang);
        double a = h[i], b = h[i + HD / 2];
        h[i]          = a * c - b * s;
        h[i + HD / 2] = a * s + b * c;
    }
}

static void reference_logits(const struct weights *w, const int32_t *tok, double *logits) {
    static double x[NTOK][DIM], q[NTOK][HEADS * HD], k[NTOK][KV * HD], v[NTOK][KV * HD];
    for (int t = 0; t < NTOK; t++)
        for (int i = 0; i < DIM; i++) x[t][i] = w->emb[tok[t] * DIM + i] * sqrtf((float)DIM);
    for (int l = 0; l < LAYERS; l++) {
        const bool   local = (l + 1) % PATTERN != 0;
        const double theta = local ? THETA_LOCAL : THETA, scale = local ? 1.0 : FACTOR;
        for (int t = 0; t < NTOK; t++) {
            double h[DIM];
            memcpy(h, x[t], sizeof(h));
            rmsnorm(h, w->b[l].attn_norm, DIM);
            matvec(w->b[l].q, h, HEADS * HD, DIM, q[t]);
            matvec(w->b[l].k, h, KV * HD, DIM, k[t]);
            matvec(w->b[l].v, h, KV * HD, DIM, v[t]);
            for (int hh = 0; hh < HEADS; hh++) {
                rmsnorm(q[t] + hh * HD, w->b[l].q_norm, HD);
                rope_neox(q[t] + hh * HD, t, theta, scale);
            }
            for (int hh = 0; hh < KV; hh++) {
                rmsnorm(k[t] + hh * HD, w->b[l].k_norm, HD);
                rope_neox(k[t] + hh * HD, t, theta, scale);
            }
        }
        for (int t = 0; t < NTOK; t++) {
            double a[HEADS * HD] = {0}, o[DIM];
            for (int hh = 0; hh < HEADS; hh++) {
                const int kh = hh / (HEADS / KV);
                double    sc[NTOK], mx = -INFINITY, sum = 0;
                int       j0 = local && t - WINDOW + 1 > 0 ? t - WINDOW + 1 : 0;
                for (int j = j0; j <= t; j++) {
                    double d = 0;
                    for (int i = 0; i < HD; i++) d += q[t][hh * HD + i] * k[j][kh * HD + i];
                    sc[j] = d / sqrt((double)HD);
                    mx    = sc[j] > mx ? sc[j] : mx;
                }
                for (int j = j0; j <= t; j++) sum += (sc[j] = exp(sc[j] - mx));
                for (int j = j0; j <= t; j++)
                    for (int i = 0; i < HD; i++) a[hh * HD + i] += sc[j] / sum * v[j][kh * HD + i];
            }
            matvec(w->b[l].o, a, DIM, HEADS * HD, o);
            rmsnorm(o, w->b[l].post_attn, DIM);
            for (int i = 0; i < DIM; i++) x[t][i] += o[i];
            double h[DIM], g[HID], u[HID], f[DIM];
            memcpy(h, x[t], sizeof(h));
            rmsnorm(h, w->b[l].ffn_norm, DIM);
            matvec(w->b[l].gate, h, HID, DIM, g);
            matvec(w->b[l].up, h, HID, DIM, u);
            for (int i = 0; i < HID; i++)
                g[i] = 0.5 * g[i] * (1 + tanh(sqrt(2 / M_PI) * (g[i] + 0.044715 * pow(g[i], 3)))) *
                       u[i];
            matvec(w->b[l].down, g, DIM, HID, f);
            rmsnorm(f, w->b[l].post_ffn, DIM);
            for (int i = 0; i < DIM; i++) x[t][i] += f[i];
        }
    }
    for (int t = 0; t < NTOK; t++) {
        rmsnorm(x[t], w->out_norm, DIM);
        matvec(w->emb, x[t], VOCAB, DIM, logits + t * VOCAB);
    }
}

/* --- tests ------------------------------------------------------------------------------ */

static struct weights W;

static void test_gemma3_config_from_gguf(void) {
    const char       *path = write_gemma3("g3.gguf", &W, &(struct variant){0});
    struct lmp_model *m    = NULL;
    struct lmp_err    err  = {0};
    CHECK(lmp_model_open(path, &m, &err) == LMP_OK);
    if (m == NULL) {
        fprintf(stderr, "  %s\n", err.msg);
        return;
    }
    const struct lmp_config *c = &m->cfg;
    CHECK(c->arch == LMP_ARCH_GEMMA3 && c->rope == LMP_ROPE_HALF &&
          c->ffn_act == LMP_ACT_GELU_TANH);
    CHECK(c->qk_norm && c->post_norms && c->tied_embeddings && m->output == m->tok_emb);
    CHECK(c->embed_scale == sqrtf((float)DIM) && c->attn_scale == 1.0f / sqrtf((float)HD));
    CHECK(c->sliding_window == WINDOW && c->swa_pattern == PATTERN &&
          c->rope_theta_local == (float)THETA_LOCAL && c->rope_theta == (float)THETA);
    CHECK(c->rope_scaling == LMP_ROPE_SCALING_LINEAR && c->rope_factor == (float)FACTOR);
    CHECK(c->head_dim == HD && c->n_kv_heads == KV && c->rope_dims == HD);
    /* the block and model backward run Gemma 3's block (worker/block_grad.c, model_grad.c) */
    CHECK(lmp_model_check_trainable(m, "compression", &err) == LMP_OK);
    lmp_model_close(&m);
}

static void test_gemma3_forward_matches_direct(void) {
    const char       *path = write_gemma3("g3f.gguf", &W, &(struct variant){0});
    struct lmp_model *m    = NULL;
    struct lmp_err    err  = {0};
    CHECK(lmp_model_open(path, &m, &err) == LMP_OK);
    if (m == NULL) return;
    int32_t tok[NTOK];
    for (int t = 0; t < NTOK; t++) tok[t] = (t * 7 + 3) % VOCAB;
    static double want[NTOK * VOCAB];
    reference_logits(&W, tok, want);

    for (int threads = 1; threads <= 2; threads++) {
        struct lmp_transformer *tf = NULL;
        CHECK(lmp_transformer_new(m, &(struct lmp_transformer_opts){.n_threads = threads}, &tf,
                                  &err) == LMP_OK);
        if (tf == NULL) break;
        static float hidden[NTOK * DIM], logits[NTOK * VOCAB];
        CHECK(lmp_transformer_forward(tf, NULL, tok, 1, NTOK, hidden, NULL, &err) == LMP_OK);
        lmp_transformer_logits(tf, hidden, NTOK, logits);
        double worst = 0;
        for (int i = 0; i < NTOK * VOCAB; i++) {
            double d = fabs(logits[i] - want[i]);
            worst    = d > worst ? d : worst;
        }
        if (worst > 2e-4) fprintf(stderr, "  batch: max |logit diff| %g\n", worst);
        CHECK(worst <= 2e-4);

        /* one token at a time through the KV cache: the window slides over the cache */
        struct lmp_kvcache *kv = lmp_kvcache_new(tf, 1, NTOK);
        CHECK(kv != NULL);
        worst = 0;
        for (int t = 0; kv && t < NTOK; t++) {
            float h1[DIM], l1[VOCAB];
            CHECK(lmp_transformer_forward(tf, kv, &tok[t], 1, 1, h1, NULL, &err) == LMP_OK);
            lmp_transformer_logits(tf, h1, 1, l1);
            for (int i = 0; i < VOCAB; i++) {
                double d = fabs(l1[i] - want[t * VOCAB + i]);
                worst    = d > worst ? d : worst;
            }
        }
        if (worst > 2e-4) fprintf(stderr, "  cached: max |logit diff| %g\n", worst);
        CHECK(worst <= 2e-4);
        lmp_kvcache_destroy(&kv);
        lmp_transformer_destroy(&tf);
    }
    lmp_model_close(&m);
}

/* m written into the artifact art with every linear kept (no codes), as format 3. */
static void write_kept_artifact(const struct lmp_model *m, const char *art) {
    struct lmp_err     err = {0};
    struct lmp_art_job job;
    lmp_art_job_init(&job);
    CHECK(lmp_art_job_from_model(&job, m) == LMP_OK);
    snprintf(job.method, sizeof(job.method), "aqlm");
    snprintf(job.scheme, sizeof(job.scheme), "2x8g8");
    CHECK(lmp_artifact_cfg_is_v3(&job.cfg));
    bool                 quantized[LAYERS * LMP_LIN_COUNT] = {false};
    struct lmp_artifact *a                                 = NULL;
    CHECK(lmp_artifact_open_write(art, &job, &a, &err) == LMP_OK);
    CHECK(a && lmp_artifact_put_model_tensors(a, m, quantized, false, &err) == LMP_OK);
    CHECK(a && lmp_artifact_finalize(a, &err) == LMP_OK);
    lmp_artifact_close(&a);
    lmp_art_job_release(&job);
}

/* The logits (NTOK, VOCAB) of m on a fixed sequence. */
static void logits_of(const struct lmp_model *m, float *l) {
    static float            h[NTOK * DIM];
    struct lmp_err          err = {0};
    struct lmp_transformer *tf  = NULL;
    int32_t                 tok[NTOK];
    for (int t = 0; t < NTOK; t++) tok[t] = (t * 5 + 1) % VOCAB;
    memset(l, 0, sizeof(float) * NTOK * VOCAB);
    CHECK(lmp_transformer_new(m, &(struct lmp_transformer_opts){.n_threads = 1}, &tf, &err) ==
          LMP_OK);
    if (tf == NULL) return;
    CHECK(lmp_transformer_forward(tf, NULL, tok, 1, NTOK, h, NULL, &err) == LMP_OK);
    lmp_transformer_logits(tf, h, NTOK, l);
    lmp_transformer_destroy(&tf);
}

/* Format 3: the model written into an artifact with every linear kept (no codes) reads
 * back as the same model (config, norms beyond the llama block's, forward pass bit for
 * bit), the file says format 3; a rope_freqs tensor is stored and read back. */
static void test_gemma3_artifact_round_trip(void) {
    const char       *path = write_gemma3("g3a.gguf", &W, &(struct variant){0});
    struct lmp_model *m = NULL, *am = NULL;
    struct lmp_err    err = {0};
    static float      l0[NTOK * VOCAB], l1[NTOK * VOCAB];
    CHECK(lmp_model_open(path, &m, &err) == LMP_OK);
    if (m == NULL) return;
    char art[300];
    snprintf(art, sizeof(art), "%s/g3.h5", tmpdir);
    write_kept_artifact(m, art);
    CHECK(lmp_artifact_model_open(art, &am, NULL, &err) == LMP_OK);
    if (am == NULL) {
        fprintf(stderr, "  %s\n", err.msg);
        lmp_model_close(&m);
        return;
    }
    const struct lmp_config *c = &m->cfg, *d = &am->cfg;
    CHECK(d->arch == LMP_ARCH_GEMMA3 && d->ffn_act == c->ffn_act && d->qk_norm && d->post_norms);
    CHECK(d->embed_scale == c->embed_scale && d->attn_scale == c->attn_scale);
    CHECK(d->swa_pattern == c->swa_pattern && d->sliding_window == c->sliding_window &&
          d->rope_theta_local == c->rope_theta_local);
    CHECK(d->rope_scaling == c->rope_scaling && d->rope_factor == c->rope_factor &&
          d->rope_dims == c->rope_dims);
    struct lmp_artifact *r = NULL;
    CHECK(lmp_artifact_open_read(art, &r, &err) == LMP_OK);
    lmp_artifact_close(&r);
    char cmd[400]; /* the attribute itself: a reader of format 2 refuses the file */
    snprintf(cmd, sizeof(cmd), "h5dump -a format_version '%s' 2>/dev/null | grep -q '(0): 3'", art);
    if (system("command -v h5dump > /dev/null 2>&1") == 0) CHECK(system(cmd) == 0);
    logits_of(m, l0);
    logits_of(am, l1);
    CHECK(memcmp(l0, l1, sizeof(l0)) == 0);
    lmp_model_close(&am);
    lmp_model_close(&m);

    /* a rope_freqs tensor (divisors 1, 4, 7, 10) goes into the artifact: the model read back
     * has the same divisors and the same logits, bit for bit; it compresses and trains */
    path = write_gemma3("g3r.gguf", &W,
                        &(struct variant){.rope_freqs_n = HD / 2, .rope_freqs_step = 3.0f});
    CHECK(lmp_model_open(path, &m, &err) == LMP_OK);
    struct lmp_compress_spec spec;
    lmp_compress_spec_init(&spec);
    spec.sc.g = 4;
    if (m) {
        CHECK(lmp_job_check(m, &spec, NULL, 0, NULL, false, &err) == LMP_OK);
        CHECK(lmp_job_check(m, &spec, NULL, 0, NULL, true, &err) == LMP_OK);
        snprintf(art, sizeof(art), "%s/g3r.h5", tmpdir);
        write_kept_artifact(m, art);
        CHECK(lmp_artifact_model_open(art, &am, NULL, &err) == LMP_OK);
        CHECK(am && am->cfg.rope_freq_factors &&
              am->cfg.rope_freq_factors != m->cfg.rope_freq_factors);
        for (int i = 0; am && am->cfg.rope_freq_factors && i < HD / 2; i++)
            CHECK(am->cfg.rope_freq_factors[i] == 1.0f + 3.0f * (float)i);
        logits_of(m, l0);
        if (am) {
            logits_of(am, l1);
            CHECK(memcmp(l0, l1, sizeof(l0)) == 0);
        }
        lmp_model_close(&am);
        /* the same model without its divisors gives other logits: the check above can fail */
        const float *keep_ff     = m->cfg.rope_freq_factors;
        m->cfg.rope_freq_factors = NULL;
        logits_of(m, l1);
        CHECK(memcmp(l0, l1, sizeof(l0)) != 0);
        m->cfg.rope_freq_factors = keep_ff;
    }
    lmp_model_close(&m);
    /* training (block fine-tuning, PV-Tuning) runs Gemma 3's block */
    path = write_gemma3("g3t.gguf", &W, &(struct variant){0});
    CHECK(lmp_model_open(path, &m, &err) == LMP_OK);
    if (m) {
        CHECK(lmp_job_check(m, &spec, NULL, 0, NULL, true, &err) == LMP_OK);
        CHECK(lmp_job_check(m, &spec, NULL, 0, NULL, false, &err) == LMP_OK);
    }
    lmp_model_close(&m);
}

static void expect_open_error(const char *fname, const struct variant *v, enum lmp_status want,
                              const char *words) {
    const char       *path = write_gemma3(fname, &W, v);
    struct lmp_model *m    = NULL;
    struct lmp_err    err  = {0};
    enum lmp_status   st   = lmp_model_open(path, &m, &err);
    bool              ok   = st == want && m == NULL && strstr(err.msg, words) != NULL &&
              strstr(err.msg, fname) != NULL && strchr(err.msg, '\n') == NULL;
    if (!ok)
        fprintf(stderr, "  expected %s with '%s', got %s: %s\n", lmp_status_str(want), words,
                lmp_status_str(st), err.msg);
    CHECK(ok);
    lmp_model_close(&m);
}

static void test_gemma3_bad_files(void) {
    expect_open_error("nopost.gguf", &(struct variant){.skip_layer_norm = 1}, LMP_EFORMAT,
                      "missing tensor 'blk.1.post_ffw_norm.weight'");
    expect_open_error("longrope.gguf", &(struct variant){.scaling_type = "longrope"}, LMP_EUNSUP,
                      "gemma3.rope.scaling.type 'longrope' is not supported");
    expect_open_error("freqs.gguf", &(struct variant){.rope_freqs_n = 3}, LMP_EFORMAT,
                      "rope_freqs.weight must be F32 of 4 elements");
    /* the right size is accepted (ones: the same frequencies) */
    const char       *path = write_gemma3("freqs4.gguf", &W, &(struct variant){.rope_freqs_n = 4});
    struct lmp_model *m    = NULL;
    struct lmp_err    err  = {0};
    CHECK(lmp_model_open(path, &m, &err) == LMP_OK);
    CHECK(m && m->cfg.rope_freq_factors != NULL && m->cfg.rope_freq_factors[3] == 1.0f);
    lmp_model_close(&m);
    /* a factor without a type is linear scaling, as llama.cpp reads it */
    path = write_gemma3("notype.gguf", &W, &(struct variant){.no_type = 1});
    CHECK(lmp_model_open(path, &m, &err) == LMP_OK);
    CHECK(m && m->cfg.rope_scaling == LMP_ROPE_SCALING_LINEAR && m->cfg.rope_factor == 2.0f);
    lmp_model_close(&m);
    path = write_gemma3("yarn.gguf", &W, &(struct variant){.scaling_type = "yarn"});
    CHECK(lmp_model_open(path, &m, &err) == LMP_OK);
    CHECK(m && m->cfg.rope_scaling == LMP_ROPE_SCALING_YARN && m->cfg.rope_orig_max_seq == 64 &&
          m->cfg.rope_beta_fast == 32.0f && m->cfg.rope_beta_slow == 1.0f);
    lmp_model_close(&m);
}

int main(void) {
    const char *t = getenv("TMPDIR");
    snprintf(tmpdir, sizeof(tmpdir), "%s/test_gemma3.XXXXXX", t ? t : "/tmp");
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    make_weights(&W);
    RUN(test_gemma3_config_from_gguf);
    RUN(test_gemma3_forward_matches_direct);
    RUN(test_gemma3_bad_files);
    RUN(test_gemma3_artifact_round_trip);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "note: could not remove %s\n", tmpdir);
    return check_report();
}
