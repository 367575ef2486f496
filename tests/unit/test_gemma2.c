/*  test_gemma2 - a tiny Gemma 2 GGUF through the reader and the forward pass
 *
 *  A three-block model (blocks 0 and 2 local with a 4-token window, block 1 global; one
 *  RoPE base) is written as GGUF with llama.cpp's gemma2 keys and tensor names, read back,
 *  and run by lmp_transformer_forward on 11 tokens (longer than the window). The logits
 *  must equal a direct double-precision implementation of Gemma 2 written here from the
 *  architecture (embedding * sqrt(dim); per block: norm, q/k/v, NEOX RoPE, scores scaled
 *  by 1/sqrt(head_dim) then soft-capped, cap * tanh(s / cap), causal softmax limited to
 *  the window on even blocks, post-attention norm, residual; norm, GeGLU (tanh GELU),
 *  post-FFN norm, residual; final norm; tied head; logits soft-capped). The caps are small
 *  (ATTN_CAP, FINAL_CAP) so that tanh is far from linear on these values: without either
 *  the logits differ by far more than the tolerance (checked). The same logits come from
 *  the KV-cache path (one token at a time), from lmp_transformer_logits_row (generation),
 *  lmp_transformer_hidden_nll (eval), and, with a linear held as AQ codes, from the one-
 *  token attention of a model on codes against its own batch pass. The model written into
 *  a format-3 artifact reads back with its caps and the same logits; compression and
 *  training accept it. The same weights as a Hugging Face directory (config.json with
 *  transformers' Gemma 2 keys, norms stored as w with the model computing x * (1 + w), the
 *  FFN's input norm named pre_feedforward_layernorm) give the GGUF's logits bit for bit.
 *  `lmpress export --format hf-aqlm` of the model (every linear kept) writes transformers'
 *  Gemma 2 config.json keys and the norms as w, and the directory reads back in lmpress
 *  with the model's logits up to float16 rounding.
 *  Errors: in the GGUF a cap of 0, < 0, NaN or infinite, or not a float; in config.json a
 *  cap of 0, < 0, too large or not a number, another activation or layer pattern; each a
 *  one-line error naming the file and the key; a missing post norm.
 */
#include "artifact/artifact.h"       /* defines: lmp_artifact_*, lmp_art_job_* */
#include "artifact/artifact_model.h" /* defines: lmp_artifact_model_open */
#include "artifact/export_hf.h"      /* defines: lmp_export_hf */
#include "base/file.h"               /* defines: lmp_file_read_all */
#include "coordinator/job_check.h"   /* defines: lmp_job_check */
#include "kernels/kernels.h"         /* defines: lmp_kernels_get, struct lmp_aq_shape */
#include "model/gguf.h"              /* defines: lmp_gguf_arr_n */
#include "model/model.h"
#include "model/transformer.h"
#include "tests/check.h"       /* defines: CHECK, RUN, check_report */
#include "tests/gguf_writer.h" /* defines: struct gw, gw_* */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function" /* only its safetensors writer is used */
#include "tests/unit/arch_ref.h"                   /* defines: st_add, st_write, write_file */
#pragma GCC diagnostic pop

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { DIM = 16, HEADS = 4, KV = 2, HD = 8, HID = 24, VOCAB = 40, LAYERS = 3, NTOK = 11 };
enum { WINDOW = 4 };
#define THETA     10000.0
#define EPS       1e-6
#define ATTN_CAP  3.0f /* the largest |score| here is 8.4 */
#define FINAL_CAP 1.5f /* the largest |logit| before the cap is 4.0 */

static char tmpdir[256];

struct weights {
    float emb[VOCAB * DIM], out_norm[DIM];
    struct {
        float attn_norm[DIM], q[HEADS * HD * DIM], k[KV * HD * DIM], v[KV * HD * DIM];
        float o[DIM * HEADS * HD], post_attn[DIM];
        float ffn_norm[DIM], gate[HID * DIM], up[HID * DIM], down[DIM * HID], post_ffn[DIM];
    } b[LAYERS];
};

static void fill(float *x, int n, uint64_t seed, float center, float spread) {
    check_fill_random(x, n, seed);
    for (int i = 0; i < n; i++) x[i] = center + spread * x[i];
}

static void make_weights(struct weights *w) {
    uint64_t s = 17;
    fill(w->emb, VOCAB * DIM, s++, 0, 0.5f);
    fill(w->out_norm, DIM, s++, 1, 0.3f);
    for (int l = 0; l < LAYERS; l++) {
        fill(w->b[l].attn_norm, DIM, s++, 1, 0.3f);
        fill(w->b[l].q, HEADS * HD * DIM, s++, 0, 0.6f);
        fill(w->b[l].k, KV * HD * DIM, s++, 0, 0.6f);
        fill(w->b[l].v, KV * HD * DIM, s++, 0, 0.4f);
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
    bool        no_caps;        /* leave both cap keys out (llama.cpp's defaults: 50, 30) */
    bool        no_window;      /* leave attention.sliding_window out (default 4096) */
    const char *bad_key;        /* this cap key gets bad_value */
    float       bad_value;      /* written as a float */
    bool        bad_as_string;  /* bad_key written as a string instead */
    int         skip_post_norm; /* 1: leave out blk.1.post_attention_norm */
    bool        tokenizer;      /* a SentencePiece vocabulary of VOCAB pieces (the export) */
};

static const char *write_gemma2(const char *fname, const struct weights *wt,
                                const struct variant *v) {
    struct gw w;
    gw_init(&w);
    gw_kv_str(&w, "general.architecture", "gemma2");
    gw_kv_u32(&w, "gemma2.block_count", LAYERS);
    gw_kv_u32(&w, "gemma2.context_length", 64);
    gw_kv_u32(&w, "gemma2.embedding_length", DIM);
    gw_kv_u32(&w, "gemma2.feed_forward_length", HID);
    gw_kv_u32(&w, "gemma2.attention.head_count", HEADS);
    gw_kv_u32(&w, "gemma2.attention.head_count_kv", KV);
    gw_kv_u32(&w, "gemma2.attention.key_length", HD);
    gw_kv_u32(&w, "gemma2.attention.value_length", HD);
    gw_kv_f32(&w, "gemma2.attention.layer_norm_rms_epsilon", (float)EPS);
    gw_kv_f32(&w, "gemma2.rope.freq_base", (float)THETA);
    if (!v->no_window) gw_kv_u32(&w, "gemma2.attention.sliding_window", WINDOW);
    static const char *const keys[2] = {"gemma2.attn_logit_softcapping",
                                        "gemma2.final_logit_softcapping"};
    const float              caps[2] = {ATTN_CAP, FINAL_CAP};
    for (int i = 0; i < 2 && !v->no_caps; i++) {
        if (v->bad_key && strcmp(v->bad_key, keys[i]) == 0) {
            if (v->bad_as_string)
                gw_kv_str(&w, keys[i], "50");
            else
                gw_kv_f32(&w, keys[i], v->bad_value);
        } else {
            gw_kv_f32(&w, keys[i], caps[i]);
        }
    }
    if (v->tokenizer) {
        static char    piece[VOCAB][8];
        const char    *tok[VOCAB];
        static float   score[VOCAB];
        static int32_t type[VOCAB];
        for (int i = 0; i < VOCAB; i++) {
            snprintf(piece[i], sizeof(piece[i]), "%s",
                     i == 0   ? "<unk>"
                     : i == 1 ? "<s>"
                     : i == 2 ? "</s>"
                              : "");
            if (i > 2) snprintf(piece[i], sizeof(piece[i]), "p%d", i);
            tok[i]   = piece[i];
            score[i] = -(float)i;
            type[i]  = i == 0 ? 2 : i <= 2 ? 3 : 1;
        }
        gw_kv_str(&w, "tokenizer.ggml.model", "llama");
        gw_kv_arr_str(&w, "tokenizer.ggml.tokens", tok, VOCAB);
        gw_kv_arr_f32(&w, "tokenizer.ggml.scores", score, VOCAB);
        gw_kv_arr_i32(&w, "tokenizer.ggml.token_type", type, VOCAB);
        gw_kv_u32(&w, "tokenizer.ggml.bos_token_id", 1);
        gw_kv_u32(&w, "tokenizer.ggml.eos_token_id", 2);
        gw_kv_u32(&w, "tokenizer.ggml.unknown_token_id", 0);
    }
    const uint64_t d1[1] = {DIM};
#define T2(name, ptr, n_in, n_out)                                                                 \
    gw_tensor(&w, name, GW_F32, 2, (const uint64_t[]){n_in, n_out}, ptr,                           \
              sizeof(float) * (n_in) * (n_out))
    T2("token_embd.weight", wt->emb, DIM, VOCAB);
    gw_tensor(&w, "output_norm.weight", GW_F32, 1, d1, wt->out_norm, sizeof(wt->out_norm));
    for (int l = 0; l < LAYERS; l++) {
        char n[96];
#define NAME(s) (snprintf(n, sizeof(n), "blk.%d.%s.weight", l, s), n)
        gw_tensor(&w, NAME("attn_norm"), GW_F32, 1, d1, wt->b[l].attn_norm, sizeof(float) * DIM);
        T2(NAME("attn_q"), wt->b[l].q, DIM, HEADS * HD);
        T2(NAME("attn_k"), wt->b[l].k, DIM, KV * HD);
        T2(NAME("attn_v"), wt->b[l].v, DIM, KV * HD);
        T2(NAME("attn_output"), wt->b[l].o, HEADS * HD, DIM);
        if (!(v->skip_post_norm && l == 1))
            gw_tensor(&w, NAME("post_attention_norm"), GW_F32, 1, d1, wt->b[l].post_attn,
                      sizeof(float) * DIM);
        gw_tensor(&w, NAME("ffn_norm"), GW_F32, 1, d1, wt->b[l].ffn_norm, sizeof(float) * DIM);
        T2(NAME("ffn_gate"), wt->b[l].gate, DIM, HID);
        T2(NAME("ffn_up"), wt->b[l].up, DIM, HID);
        T2(NAME("ffn_down"), wt->b[l].down, HID, DIM);
        gw_tensor(&w, NAME("post_ffw_norm"), GW_F32, 1, d1, wt->b[l].post_ffn, sizeof(float) * DIM);
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

static void rope_neox(double *h, int pos) {
    for (int i = 0; i < HD / 2; i++) {
        double ang = pos * pow(THETA, -2.0 * i / HD), c = cos(ang), s = sin(ang);
        double a = h[i], b = h[i + HD / 2];
        h[i]          = a * c - b * s;
        h[i + HD / 2] = a * s + b * c;
    }
}

static double softcap(double x, double cap) {
    return cap > 0 ? cap * tanh(x / cap) : x;
}

static double max_score, max_logit; /* before the caps, of the last reference pass */

/* Gemma 2's logits (NTOK, VOCAB) for tok with the given caps (0: none). */
static void reference_logits(const struct weights *w, const int32_t *tok, double attn_cap,
                             double final_cap, double *logits) {
    static double x[NTOK][DIM], q[NTOK][HEADS * HD], k[NTOK][KV * HD], v[NTOK][KV * HD];
    max_score = max_logit = 0;
    for (int t = 0; t < NTOK; t++)
        for (int i = 0; i < DIM; i++) x[t][i] = w->emb[tok[t] * DIM + i] * sqrtf((float)DIM);
    for (int l = 0; l < LAYERS; l++) {
        const bool local = l % 2 == 0;
        for (int t = 0; t < NTOK; t++) {
            double h[DIM];
            memcpy(h, x[t], sizeof(h));
            rmsnorm(h, w->b[l].attn_norm, DIM);
            matvec(w->b[l].q, h, HEADS * HD, DIM, q[t]);
            matvec(w->b[l].k, h, KV * HD, DIM, k[t]);
            matvec(w->b[l].v, h, KV * HD, DIM, v[t]);
            for (int hh = 0; hh < HEADS; hh++) rope_neox(q[t] + hh * HD, t);
            for (int hh = 0; hh < KV; hh++) rope_neox(k[t] + hh * HD, t);
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
                    d         = d / sqrt((double)HD);
                    max_score = fmax(max_score, fabs(d));
                    sc[j]     = softcap(d, attn_cap);
                    mx        = sc[j] > mx ? sc[j] : mx;
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
        for (int i = 0; i < VOCAB; i++) {
            max_logit             = fmax(max_logit, fabs(logits[t * VOCAB + i]));
            logits[t * VOCAB + i] = softcap(logits[t * VOCAB + i], final_cap);
        }
    }
}

static double max_diff(const float *got, const double *want, int n) {
    double worst = 0;
    for (int i = 0; i < n; i++) worst = fmax(worst, fabs(got[i] - want[i]));
    return worst;
}

/* --- tests ------------------------------------------------------------------------------ */

static struct weights W;

static void test_gemma2_config_from_gguf(void) {
    const char       *path = write_gemma2("g2.gguf", &W, &(struct variant){0});
    struct lmp_model *m    = NULL;
    struct lmp_err    err  = {0};
    CHECK(lmp_model_open(path, &m, &err) == LMP_OK);
    if (m == NULL) {
        fprintf(stderr, "  %s\n", err.msg);
        return;
    }
    const struct lmp_config *c = &m->cfg;
    CHECK(c->arch == LMP_ARCH_GEMMA2 && strcmp(lmp_arch_name(c->arch), "gemma2") == 0);
    CHECK(c->rope == LMP_ROPE_HALF && c->ffn_act == LMP_ACT_GELU_TANH);
    CHECK(!c->qk_norm && c->post_norms && c->tied_embeddings && m->output == m->tok_emb);
    CHECK(c->embed_scale == sqrtf((float)DIM) && c->attn_scale == 1.0f / sqrtf((float)HD));
    CHECK(c->attn_softcap == ATTN_CAP && c->final_softcap == FINAL_CAP);
    CHECK(c->sliding_window == WINDOW && c->swa_pattern == 2 && c->rope_theta_local == 0 &&
          c->rope_theta == (float)THETA && c->rope_scaling == LMP_ROPE_SCALING_NONE);
    /* the block and model backward run the caps (worker/block_grad.c, model_grad.c) */
    CHECK(lmp_model_check_trainable(m, "compression", &err) == LMP_OK);
    lmp_model_close(&m);
    /* without the keys: llama.cpp's defaults */
    path = write_gemma2("g2d.gguf", &W, &(struct variant){.no_caps = true, .no_window = true});
    CHECK(lmp_model_open(path, &m, &err) == LMP_OK);
    CHECK(m && m->cfg.attn_softcap == 50.0f && m->cfg.final_softcap == 30.0f &&
          m->cfg.sliding_window == 4096);
    lmp_model_close(&m);
}

static void test_gemma2_forward_matches_direct(void) {
    const char       *path = write_gemma2("g2f.gguf", &W, &(struct variant){0});
    struct lmp_model *m    = NULL;
    struct lmp_err    err  = {0};
    CHECK(lmp_model_open(path, &m, &err) == LMP_OK);
    if (m == NULL) return;
    int32_t tok[NTOK];
    for (int t = 0; t < NTOK; t++) tok[t] = (t * 7 + 3) % VOCAB;
    static double want[NTOK * VOCAB], other[NTOK * VOCAB];
    reference_logits(&W, tok, ATTN_CAP, FINAL_CAP, want);
    fprintf(stderr, "  largest |score| %.3g (cap %g), |logit| %.3g (cap %g) before the caps\n",
            max_score, (double)ATTN_CAP, max_logit, (double)FINAL_CAP);
    CHECK(max_score > 2 * ATTN_CAP && max_logit > 2 * FINAL_CAP); /* the caps bite */
    /* each cap matters far beyond the tolerance below */
    static float wantf[NTOK * VOCAB];
    for (int i = 0; i < NTOK * VOCAB; i++) wantf[i] = (float)want[i];
    reference_logits(&W, tok, 0, FINAL_CAP, other);
    CHECK(max_diff(wantf, other, NTOK * VOCAB) > 0.1);
    reference_logits(&W, tok, ATTN_CAP, 0, other);
    CHECK(max_diff(wantf, other, NTOK * VOCAB) > 0.1);

    for (int threads = 1; threads <= 2; threads++) {
        struct lmp_transformer *tf = NULL;
        CHECK(lmp_transformer_new(m, &(struct lmp_transformer_opts){.n_threads = threads}, &tf,
                                  &err) == LMP_OK);
        if (tf == NULL) break;
        static float hidden[NTOK * DIM], logits[NTOK * VOCAB];
        CHECK(lmp_transformer_forward(tf, NULL, tok, 1, NTOK, hidden, NULL, &err) == LMP_OK);
        lmp_transformer_logits(tf, hidden, NTOK, logits);
        double worst = max_diff(logits, want, NTOK * VOCAB);
        if (worst > 2e-4) fprintf(stderr, "  batch: max |logit diff| %g\n", worst);
        CHECK(worst <= 2e-4);

        /* eval's path: the NLL from the head swept in slices equals the logits' */
        int32_t target[NTOK];
        double  nll[NTOK];
        for (int t = 0; t < NTOK; t++) target[t] = (t * 11 + 5) % VOCAB;
        CHECK(lmp_transformer_hidden_nll(tf, hidden, NTOK, target, nll) == LMP_OK);
        worst = 0;
        for (int t = 0; t < NTOK; t++) {
            double z = 0;
            for (int i = 0; i < VOCAB; i++) z += exp(want[t * VOCAB + i]);
            worst = fmax(worst, fabs(nll[t] - (log(z) - want[t * VOCAB + target[t]])));
        }
        if (worst > 2e-4) fprintf(stderr, "  hidden_nll: max |nll diff| %g\n", worst);
        CHECK(worst <= 2e-4);

        /* one token at a time through the KV cache, and generation's one-row head */
        struct lmp_kvcache *kv = lmp_kvcache_new(tf, 1, NTOK);
        CHECK(kv != NULL);
        double worst_row = 0;
        worst            = 0;
        for (int t = 0; kv && t < NTOK; t++) {
            float h1[DIM], l1[VOCAB];
            CHECK(lmp_transformer_forward(tf, kv, &tok[t], 1, 1, h1, NULL, &err) == LMP_OK);
            lmp_transformer_logits(tf, h1, 1, l1);
            worst = fmax(worst, max_diff(l1, want + t * VOCAB, VOCAB));
            lmp_transformer_logits_row(tf, h1, l1);
            worst_row = fmax(worst_row, max_diff(l1, want + t * VOCAB, VOCAB));
        }
        if (worst > 2e-4 || worst_row > 2e-4)
            fprintf(stderr, "  cached: max |logit diff| %g, one-row head %g\n", worst, worst_row);
        CHECK(worst <= 2e-4 && worst_row <= 2e-4);
        lmp_kvcache_destroy(&kv);
        lmp_transformer_destroy(&tf);
    }
    lmp_model_close(&m);
}

/* A model with one linear held as AQ codes (as an artifact's inference runs it): its one-
 * token decoding (the grouped attention of a model on codes, which skips the attn_row
 * kernel under a soft-cap) equals its own batch pass. */
static void test_gemma2_codes_decode_matches_batch(void) {
    const char       *path = write_gemma2("g2c.gguf", &W, &(struct variant){0});
    struct lmp_model *m    = NULL;
    struct lmp_err    err  = {0};
    CHECK(lmp_model_open(path, &m, &err) == LMP_OK);
    if (m == NULL) return;
    enum { M = 1, K = 16, G = 4, N_OUT = DIM, N_IN = HEADS * HD };
    static uint16_t codes[N_OUT * (N_IN / G) * M];
    static float    cb[M * K * G], scales[N_OUT];
    check_fill_random(cb, M * K * G, 91);
    for (int i = 0; i < N_OUT; i++) scales[i] = 0.3f;
    for (int i = 0; i < N_OUT * (N_IN / G) * M; i++) codes[i] = (uint16_t)((i * 7 + 3) % K);
    const struct lmp_aq_linear aq = {
        .shape     = {.n_out = N_OUT, .n_in = N_IN, .M = M, .K = K, .g = G},
        .codes     = codes,
        .codebooks = cb,
        .scales    = scales};
    m->blocks[0].lin[LMP_LIN_O].aq = &aq;
    int32_t tok[NTOK];
    for (int t = 0; t < NTOK; t++) tok[t] = (t * 3 + 2) % VOCAB;
    struct lmp_transformer *tf = NULL;
    CHECK(lmp_transformer_new(m, &(struct lmp_transformer_opts){.n_threads = 1}, &tf, &err) ==
          LMP_OK);
    if (tf) {
        static float hidden[NTOK * DIM], want[NTOK * VOCAB];
        CHECK(lmp_transformer_forward(tf, NULL, tok, 1, NTOK, hidden, NULL, &err) == LMP_OK);
        lmp_transformer_logits(tf, hidden, NTOK, want);
        struct lmp_kvcache *kv    = lmp_kvcache_new(tf, 1, NTOK);
        double              worst = 0;
        for (int t = 0; kv && t < NTOK; t++) {
            float h1[DIM], l1[VOCAB];
            CHECK(lmp_transformer_forward(tf, kv, &tok[t], 1, 1, h1, NULL, &err) == LMP_OK);
            lmp_transformer_logits(tf, h1, 1, l1);
            for (int i = 0; i < VOCAB; i++)
                worst = fmax(worst, fabs((double)l1[i] - want[t * VOCAB + i]));
        }
        if (worst > 1e-4) fprintf(stderr, "  codes: cached vs batch max |logit diff| %g\n", worst);
        CHECK(worst <= 1e-4);
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
    enum lmp_art_tok kind;
    uint8_t         *tok = NULL;
    size_t           n   = 0;
    if (a && lmp_gguf_arr_n(m->gguf, "tokenizer.ggml.tokens", NULL) > 0) { /* for the export */
        CHECK(lmp_art_tokenizer_source(m, NULL, &kind, &tok, &n, &err) == LMP_OK);
        CHECK(tok && lmp_artifact_put_tokenizer(a, kind, tok, n, &err) == LMP_OK);
        free(tok);
    }
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

/* Format 3 keeps the caps: the model read back from an artifact has them and the same
 * logits bit for bit; compression and training (block fine-tuning, PV-Tuning) accept it. */
static void test_gemma2_artifact_round_trip(void) {
    const char       *path = write_gemma2("g2a.gguf", &W, &(struct variant){0});
    struct lmp_model *m = NULL, *am = NULL;
    struct lmp_err    err = {0};
    static float      l0[NTOK * VOCAB], l1[NTOK * VOCAB];
    CHECK(lmp_model_open(path, &m, &err) == LMP_OK);
    if (m == NULL) return;
    char art[300];
    snprintf(art, sizeof(art), "%s/g2.h5", tmpdir);
    write_kept_artifact(m, art);
    CHECK(lmp_artifact_model_open(art, &am, NULL, &err) == LMP_OK);
    if (am == NULL) {
        fprintf(stderr, "  %s\n", err.msg);
        lmp_model_close(&m);
        return;
    }
    const struct lmp_config *c = &m->cfg, *d = &am->cfg;
    CHECK(d->arch == LMP_ARCH_GEMMA2 && d->ffn_act == c->ffn_act && !d->qk_norm && d->post_norms);
    CHECK(d->attn_softcap == ATTN_CAP && d->final_softcap == FINAL_CAP);
    CHECK(d->embed_scale == c->embed_scale && d->attn_scale == c->attn_scale &&
          d->swa_pattern == 2 && d->sliding_window == WINDOW);
    logits_of(m, l0);
    logits_of(am, l1);
    CHECK(memcmp(l0, l1, sizeof(l0)) == 0);
    lmp_model_close(&am);
    struct lmp_compress_spec spec;
    lmp_compress_spec_init(&spec);
    spec.sc.g = 4;
    CHECK(lmp_job_check(m, &spec, NULL, 0, NULL, false, &err) == LMP_OK);
    CHECK(lmp_job_check(m, &spec, NULL, 0, NULL, true, &err) == LMP_OK);
    lmp_model_close(&m);
}

static void expect_open_error(const char *fname, const struct variant *v, enum lmp_status want,
                              const char *words) {
    const char       *path = write_gemma2(fname, &W, v);
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

static void test_gemma2_bad_files(void) {
    static const char *const key[2] = {"gemma2.attn_logit_softcapping",
                                       "gemma2.final_logit_softcapping"};
    const float              bad[4] = {0.0f, -5.0f, NAN, INFINITY};
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < 4; i++) {
            char name[32], words[96];
            snprintf(name, sizeof(name), "cap%d%d.gguf", k, i);
            snprintf(words, sizeof(words), "%s = ", key[k]);
            expect_open_error(name, &(struct variant){.bad_key = key[k], .bad_value = bad[i]},
                              LMP_EFORMAT, words);
        }
        char name[32], words[96];
        snprintf(name, sizeof(name), "capstr%d.gguf", k);
        snprintf(words, sizeof(words), "key %s is not a float", key[k]);
        expect_open_error(name, &(struct variant){.bad_key = key[k], .bad_as_string = true},
                          LMP_EFORMAT, words);
    }
    expect_open_error("nopost.gguf", &(struct variant){.skip_post_norm = 1}, LMP_EFORMAT,
                      "missing tensor 'blk.1.post_attention_norm.weight'");
}

/* --- the same model as a Hugging Face directory ----------------------------------------- */

/* dir/config.json (with `extra` appended to its members) and dir/model.safetensors of W,
 * the norms stored as w - 1 (transformers' Gemma 2 computes x * (1 + w)). */
static const char *write_hf(const char *name, const char *extra) {
    static char dir[400];
    char        path[512];
    snprintf(dir, sizeof(dir), "%s/%s", tmpdir, name);
    if (mkdir(dir, 0700) != 0) abort();
    char json[2048];
    int  n = snprintf(json, sizeof(json),
                      "{\"architectures\": [\"Gemma2ForCausalLM\"], \"model_type\": \"gemma2\", "
                       "\"hidden_size\": %d, \"intermediate_size\": %d, \"num_hidden_layers\": %d, "
                       "\"num_attention_heads\": %d, \"num_key_value_heads\": %d, \"head_dim\": %d, "
                       "\"vocab_size\": %d, \"max_position_embeddings\": 64, \"rms_norm_eps\": %g, "
                       "\"rope_theta\": %g, \"hidden_act\": \"gelu_pytorch_tanh\", "
                       "\"hidden_activation\": \"gelu_pytorch_tanh\", \"query_pre_attn_scalar\": %d, "
                       "\"sliding_window\": %d, \"attn_logit_softcapping\": %g, "
                       "\"final_logit_softcapping\": %g, \"tie_word_embeddings\": true%s}",
                      DIM, HID, LAYERS, HEADS, KV, HD, VOCAB, EPS, THETA, HD, WINDOW,
                      (double)ATTN_CAP, (double)FINAL_CAP, extra);
    snprintf(path, sizeof(path), "%s/config.json", dir);
    CHECK(n > 0 && n < (int)sizeof(json) && write_file(path, json, (size_t)n) == 0);
    static float    shifted[(4 * LAYERS + 1) * DIM]; /* every norm, w - 1 */
    struct st_entry e[64];
    int             ne = 0, ns = 0;
    char            nm[LAYERS][11][96];
#define NORM(dst_name, src)                                                                        \
    do {                                                                                           \
        for (int i = 0; i < DIM; i++) shifted[ns * DIM + i] = (src)[i] - 1.0f;                     \
        st_add(e, &ne, dst_name, 1, DIM, 0, shifted + ns++ * DIM);                                 \
    } while (0)
    st_add(e, &ne, "model.embed_tokens.weight", 2, VOCAB, DIM, W.emb);
    NORM("model.norm.weight", W.out_norm);
    for (int l = 0; l < LAYERS; l++) {
        static const char *const f[11] = {"input_layernorm",
                                          "self_attn.q_proj",
                                          "self_attn.k_proj",
                                          "self_attn.v_proj",
                                          "self_attn.o_proj",
                                          "post_attention_layernorm",
                                          "pre_feedforward_layernorm",
                                          "mlp.gate_proj",
                                          "mlp.up_proj",
                                          "mlp.down_proj",
                                          "post_feedforward_layernorm"};
        for (int i = 0; i < 11; i++)
            snprintf(nm[l][i], sizeof(nm[l][i]), "model.layers.%d.%s.weight", l, f[i]);
        NORM(nm[l][0], W.b[l].attn_norm);
        st_add(e, &ne, nm[l][1], 2, HEADS * HD, DIM, W.b[l].q);
        st_add(e, &ne, nm[l][2], 2, KV * HD, DIM, W.b[l].k);
        st_add(e, &ne, nm[l][3], 2, KV * HD, DIM, W.b[l].v);
        st_add(e, &ne, nm[l][4], 2, DIM, HEADS * HD, W.b[l].o);
        NORM(nm[l][5], W.b[l].post_attn);
        NORM(nm[l][6], W.b[l].ffn_norm);
        st_add(e, &ne, nm[l][7], 2, HID, DIM, W.b[l].gate);
        st_add(e, &ne, nm[l][8], 2, HID, DIM, W.b[l].up);
        st_add(e, &ne, nm[l][9], 2, DIM, HID, W.b[l].down);
        NORM(nm[l][10], W.b[l].post_ffn);
    }
#undef NORM
    snprintf(path, sizeof(path), "%s/model.safetensors", dir);
    CHECK(st_write(path, e, ne) == 0);
    return dir;
}

static void test_gemma2_hf_matches_gguf(void) {
    struct lmp_model *g = NULL, *h = NULL;
    struct lmp_err    err = {0};
    static float      lg[NTOK * VOCAB], lh[NTOK * VOCAB];
    CHECK(lmp_model_open(write_gemma2("g2h.gguf", &W, &(struct variant){0}), &g, &err) == LMP_OK);
    CHECK(lmp_model_open(write_hf("hf", ""), &h, &err) == LMP_OK);
    if (g == NULL || h == NULL) {
        fprintf(stderr, "  %s\n", err.msg);
        lmp_model_close(&g);
        lmp_model_close(&h);
        return;
    }
    const struct lmp_config *c = &h->cfg;
    CHECK(c->arch == LMP_ARCH_GEMMA2 && c->format == LMP_FORMAT_HF && !c->qk_norm &&
          c->post_norms && c->tied_embeddings && c->ffn_act == LMP_ACT_GELU_TANH);
    CHECK(c->attn_softcap == ATTN_CAP && c->final_softcap == FINAL_CAP &&
          c->attn_scale == g->cfg.attn_scale && c->embed_scale == g->cfg.embed_scale &&
          c->sliding_window == WINDOW && c->swa_pattern == 2);
    logits_of(g, lg);
    logits_of(h, lh);
    CHECK(memcmp(lg, lh, sizeof(lg)) == 0);
    lmp_model_close(&h);
    /* null caps: none (transformers' "no soft-capping"); layer_types as Gemma 2 alternates */
    CHECK(lmp_model_open(write_hf("hfnull", ", \"attn_logit_softcapping\": null, "
                                            "\"layer_types\": [\"sliding_attention\", "
                                            "\"full_attention\", \"sliding_attention\"]"),
                         &h, &err) == LMP_OK);
    CHECK(h && h->cfg.attn_softcap == 0 && h->cfg.final_softcap == FINAL_CAP);
    if (h) {
        logits_of(h, lh);
        CHECK(memcmp(lg, lh, sizeof(lg)) != 0);
    }
    lmp_model_close(&h);
    lmp_model_close(&g);
}

static void expect_hf_error(const char *name, const char *extra, const char *words) {
    struct lmp_model *m   = NULL;
    struct lmp_err    err = {0};
    enum lmp_status   st  = lmp_model_open(write_hf(name, extra), &m, &err);
    bool              ok  = st != LMP_OK && m == NULL && strstr(err.msg, words) != NULL &&
              strstr(err.msg, name) != NULL && strchr(err.msg, '\n') == NULL;
    if (!ok) fprintf(stderr, "  expected '%s', got %s: %s\n", words, lmp_status_str(st), err.msg);
    CHECK(ok);
    lmp_model_close(&m);
}

static void test_gemma2_hf_bad_configs(void) {
    /* a repeated key: the last wins, as in Python's json */
    expect_hf_error("hfc0", ", \"attn_logit_softcapping\": 0",
                    "'attn_logit_softcapping' is not a positive number");
    expect_hf_error("hfc1", ", \"final_logit_softcapping\": -30",
                    "'final_logit_softcapping' is not a positive number");
    expect_hf_error("hfc2", ", \"final_logit_softcapping\": 1e400",
                    "'final_logit_softcapping' is not a positive number");
    expect_hf_error("hfc3", ", \"attn_logit_softcapping\": \"50\"",
                    "'attn_logit_softcapping' is not a positive number");
    expect_hf_error("hfc4", ", \"query_pre_attn_scalar\": 0",
                    "'query_pre_attn_scalar' is not a positive number");
    expect_hf_error("hfa", ", \"hidden_activation\": \"gelu\"",
                    "hidden_activation 'gelu' is not supported");
    expect_hf_error("hfl", ", \"layer_types\": [\"full_attention\"]",
                    "layer_types[0] is not 'sliding_attention'");
}

/* The hf-aqlm export of a Gemma 2 artifact (every linear kept: F16 weights beside the
 * AQLM config) is a transformers Gemma 2 directory, which lmpress reads back. */
static void test_gemma2_export_hf(void) {
    const char       *path = write_gemma2("g2e.gguf", &W, &(struct variant){.tokenizer = true});
    struct lmp_model *m = NULL, *h = NULL;
    struct lmp_err    err = {0};
    CHECK(lmp_model_open(path, &m, &err) == LMP_OK);
    if (m == NULL) return;
    char art[300], out[300], cfgp[340];
    snprintf(art, sizeof(art), "%s/g2e.h5", tmpdir);
    snprintf(out, sizeof(out), "%s/g2e-hf", tmpdir);
    write_kept_artifact(m, art);
    struct lmp_export_hf_result res;
    CHECK(lmp_export_hf(art, out, NULL, &res, &err) == LMP_OK);
    if (err.msg[0]) fprintf(stderr, "  %s\n", err.msg);
    CHECK(res.n_kept == LAYERS * LMP_LIN_COUNT && !res.permuted_rope);
    snprintf(cfgp, sizeof(cfgp), "%s/config.json", out);
    char  *text = NULL;
    size_t n    = 0;
    CHECK(lmp_file_read_all(cfgp, &text, &n, &err) == LMP_OK);
    cJSON *cj = text ? cJSON_ParseWithLength(text, n) : NULL;
    CHECK(cj != NULL);
    static const struct {
        const char *key;
        double      want; /* -1: the string below */
        const char *str;
    } keys[] = {{"model_type", -1, "gemma2"},
                {"hidden_act", -1, "gelu_pytorch_tanh"},
                {"hidden_activation", -1, "gelu_pytorch_tanh"},
                {"query_pre_attn_scalar", HD, NULL},
                {"attn_logit_softcapping", ATTN_CAP, NULL},
                {"final_logit_softcapping", FINAL_CAP, NULL},
                {"sliding_window", WINDOW, NULL},
                {"head_dim", HD, NULL}};
    for (size_t i = 0; cj && i < sizeof(keys) / sizeof(keys[0]); i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(cj, keys[i].key);
        bool ok        = keys[i].str ? cJSON_IsString(v) && strcmp(v->valuestring, keys[i].str) == 0
                                     : cJSON_IsNumber(v) && v->valuedouble == keys[i].want;
        if (!ok) fprintf(stderr, "  config.json: %s is wrong\n", keys[i].key);
        CHECK(ok);
    }
    const cJSON *a = cj ? cJSON_GetObjectItemCaseSensitive(cj, "architectures") : NULL;
    CHECK(cJSON_IsString(cJSON_GetArrayItem(a, 0)) &&
          strcmp(cJSON_GetArrayItem(a, 0)->valuestring, "Gemma2ForCausalLM") == 0);
    CHECK(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cj, "tie_word_embeddings")));
    cJSON_Delete(cj);
    free(text);
    /* read back: the same model up to the float16 of the export (norms as w, 1 + w again) */
    CHECK(lmp_model_open(out, &h, &err) == LMP_OK);
    if (h) {
        static float l0[NTOK * VOCAB], l1[NTOK * VOCAB];
        logits_of(m, l0);
        logits_of(h, l1);
        double d = 0, mx = 0;
        for (int i = 0; i < NTOK * VOCAB; i++) {
            d  = fmax(d, fabs((double)l0[i] - l1[i]));
            mx = fmax(mx, fabs((double)l0[i]));
        }
        fprintf(stderr, "  export read back: max |logit diff| %.3g of %.3g\n", d, mx);
        CHECK(mx > 0.5 && d < 1e-2 * mx);
        CHECK(h->cfg.attn_softcap == ATTN_CAP && h->cfg.final_softcap == FINAL_CAP &&
              h->cfg.attn_scale == m->cfg.attn_scale && h->cfg.swa_pattern == 2);
    } else {
        fprintf(stderr, "  %s\n", err.msg);
    }
    lmp_model_close(&h);
    lmp_model_close(&m);
}

int main(void) {
    const char *t = getenv("TMPDIR");
    snprintf(tmpdir, sizeof(tmpdir), "%s/test_gemma2.XXXXXX", t ? t : "/tmp");
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    make_weights(&W);
    RUN(test_gemma2_config_from_gguf);
    RUN(test_gemma2_forward_matches_direct);
    RUN(test_gemma2_codes_decode_matches_batch);
    RUN(test_gemma2_bad_files);
    RUN(test_gemma2_artifact_round_trip);
    RUN(test_gemma2_hf_matches_gguf);
    RUN(test_gemma2_hf_bad_configs);
    RUN(test_gemma2_export_hf);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "note: could not remove %s\n", tmpdir);
    return check_report();
}
