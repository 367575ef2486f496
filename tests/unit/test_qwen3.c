/*  test_qwen3 - a tiny Qwen3 through the GGUF and Hugging Face readers and the forward pass
 *
 *  A two-block model shaped like Qwen3 (4 query heads and 2 kv heads of 8 dimensions, so
 *  heads x head_dim = 32 is not the hidden size 16; tied embeddings; RoPE base 1e6; per-head
 *  RMSNorm of q and k) is written as GGUF with llama.cpp's qwen3 keys and tensor names
 *  (attn_q_norm, attn_k_norm) and as a Hugging Face directory (self_attn.q_norm / k_norm),
 *  read back, and run on 9 tokens. The logits must equal the direct double-precision pass
 *  of tests/unit/arch_ref.h (NEOX RoPE, q/k norms before RoPE), in batch, through the KV
 *  cache and with lazy weights, and both files must give the same logits. Errors: a missing
 *  or misshapen q/k norm (one line naming the file), and compression refused.
 */
#include "model/model.h"
#include "model/transformer.h"
#include "tests/check.h"         /* defines: CHECK, RUN, check_report */
#include "tests/gguf_writer.h"   /* defines: struct gw, gw_* */
#include "tests/unit/arch_ref.h" /* defines: ref_logits, ref_check_forward, st_write */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { DIM = 16, HEADS = 4, KV = 2, HD = 8, HID = 24, VOCAB = 40, LAYERS = 2, NTOK = 9 };
#define THETA 1e6
#define EPS   1e-6

static char tmpdir[256];

struct weights {
    float emb[VOCAB * DIM], out_norm[DIM];
    struct {
        float attn_norm[DIM], q[HEADS * HD * DIM], k[KV * HD * DIM], v[KV * HD * DIM];
        float q_norm[HD], k_norm[HD], o[DIM * HEADS * HD];
        float ffn_norm[DIM], gate[HID * DIM], up[HID * DIM], down[DIM * HID];
    } b[LAYERS];
};
static struct weights W;

static void fill(float *x, int n, uint64_t seed, float center, float spread) {
    check_fill_random(x, n, seed);
    for (int i = 0; i < n; i++) x[i] = center + spread * x[i];
}

static void make_weights(struct weights *w) {
    uint64_t s = 11;
    fill(w->emb, VOCAB * DIM, s++, 0, 0.8f);
    fill(w->out_norm, DIM, s++, 1, 0.3f);
    for (int l = 0; l < LAYERS; l++) {
        fill(w->b[l].attn_norm, DIM, s++, 1, 0.3f);
        fill(w->b[l].q, HEADS * HD * DIM, s++, 0, 0.4f);
        fill(w->b[l].k, KV * HD * DIM, s++, 0, 0.4f);
        fill(w->b[l].v, KV * HD * DIM, s++, 0, 0.4f);
        fill(w->b[l].q_norm, HD, s++, 1, 0.5f);
        fill(w->b[l].k_norm, HD, s++, 1, 0.5f);
        fill(w->b[l].o, DIM * HEADS * HD, s++, 0, 0.3f);
        fill(w->b[l].ffn_norm, DIM, s++, 1, 0.3f);
        fill(w->b[l].gate, HID * DIM, s++, 0, 0.4f);
        fill(w->b[l].up, HID * DIM, s++, 0, 0.4f);
        fill(w->b[l].down, DIM * HID, s++, 0, 0.3f);
    }
}

static struct ref_model reference(void) {
    struct ref_model r = {.dim       = DIM,
                          .heads     = HEADS,
                          .kv        = KV,
                          .hd        = HD,
                          .hid       = HID,
                          .vocab     = VOCAB,
                          .layers    = LAYERS,
                          .rope_dims = HD,
                          .theta     = THETA,
                          .eps       = EPS,
                          .emb       = W.emb,
                          .out_norm  = W.out_norm};
    for (int l = 0; l < LAYERS; l++)
        r.b[l] = (struct ref_block){W.b[l].attn_norm, W.b[l].q,      W.b[l].k,   W.b[l].v,
                                    W.b[l].q_norm,    W.b[l].k_norm, W.b[l].o,   W.b[l].ffn_norm,
                                    W.b[l].gate,      W.b[l].up,     W.b[l].down};
    return r;
}

struct variant {
    int no_k_norm_block; /* > 0: leave out blk.(n-1).attn_k_norm */
    int q_norm_dim;      /* 1: attn_q_norm of DIM elements instead of HD */
};

static const char *path_of(const char *name) {
    static char path[8][512];
    static int  slot;
    char       *p = path[slot++ & 7];
    snprintf(p, 512, "%s/%s", tmpdir, name);
    return p;
}

static const char *write_gguf(const char *fname, const struct variant *v) {
    struct gw w;
    gw_init(&w);
    gw_kv_str(&w, "general.architecture", "qwen3");
    gw_kv_u32(&w, "qwen3.block_count", LAYERS);
    gw_kv_u32(&w, "qwen3.context_length", 64);
    gw_kv_u32(&w, "qwen3.embedding_length", DIM);
    gw_kv_u32(&w, "qwen3.feed_forward_length", HID);
    gw_kv_u32(&w, "qwen3.attention.head_count", HEADS);
    gw_kv_u32(&w, "qwen3.attention.head_count_kv", KV);
    gw_kv_u32(&w, "qwen3.attention.key_length", HD);
    gw_kv_u32(&w, "qwen3.attention.value_length", HD);
    gw_kv_f32(&w, "qwen3.attention.layer_norm_rms_epsilon", (float)EPS);
    gw_kv_f32(&w, "qwen3.rope.freq_base", (float)THETA);
    const uint64_t d1[1] = {DIM}, hd1[1] = {HD};
#define T2(name, ptr, n_in, n_out)                                                                 \
    gw_tensor(&w, name, GW_F32, 2, (const uint64_t[]){n_in, n_out}, ptr,                           \
              sizeof(float) * (n_in) * (n_out))
    T2("token_embd.weight", W.emb, DIM, VOCAB);
    gw_tensor(&w, "output_norm.weight", GW_F32, 1, d1, W.out_norm, sizeof(W.out_norm));
    for (int l = 0; l < LAYERS; l++) {
        char n[96];
#define NAME(s) (snprintf(n, sizeof(n), "blk.%d.%s.weight", l, s), n)
        gw_tensor(&w, NAME("attn_norm"), GW_F32, 1, d1, W.b[l].attn_norm, sizeof(float) * DIM);
        T2(NAME("attn_q"), W.b[l].q, DIM, HEADS * HD);
        T2(NAME("attn_k"), W.b[l].k, DIM, KV * HD);
        T2(NAME("attn_v"), W.b[l].v, DIM, KV * HD);
        if (v->q_norm_dim)
            gw_tensor(&w, NAME("attn_q_norm"), GW_F32, 1, d1, W.b[l].attn_norm,
                      sizeof(float) * DIM);
        else
            gw_tensor(&w, NAME("attn_q_norm"), GW_F32, 1, hd1, W.b[l].q_norm, sizeof(float) * HD);
        if (v->no_k_norm_block != l + 1)
            gw_tensor(&w, NAME("attn_k_norm"), GW_F32, 1, hd1, W.b[l].k_norm, sizeof(float) * HD);
        T2(NAME("attn_output"), W.b[l].o, HEADS * HD, DIM);
        gw_tensor(&w, NAME("ffn_norm"), GW_F32, 1, d1, W.b[l].ffn_norm, sizeof(float) * DIM);
        T2(NAME("ffn_gate"), W.b[l].gate, DIM, HID);
        T2(NAME("ffn_up"), W.b[l].up, DIM, HID);
        T2(NAME("ffn_down"), W.b[l].down, HID, DIM);
#undef NAME
    }
#undef T2
    struct gw_buf img = gw_finish(&w, 3);
    const char   *p   = path_of(fname);
    if (write_file(p, img.p, img.n) != 0) abort();
    free(img.p);
    return p;
}

/* A Hugging Face directory of the same weights; skip_k_norm: no k_norm in block 1. */
static const char *write_hf(const char *dname, bool skip_k_norm) {
    const char *dir = path_of(dname);
    mkdir(dir, 0755);
    char cfg[1024], p[600];
    snprintf(cfg, sizeof(cfg),
             "{\"architectures\": [\"Qwen3ForCausalLM\"], \"model_type\": \"qwen3\", "
             "\"hidden_size\": %d, \"intermediate_size\": %d, \"num_hidden_layers\": %d, "
             "\"num_attention_heads\": %d, \"num_key_value_heads\": %d, \"head_dim\": %d, "
             "\"vocab_size\": %d, \"max_position_embeddings\": 64, \"rope_theta\": 1000000, "
             "\"rms_norm_eps\": 1e-06, \"hidden_act\": \"silu\", \"tie_word_embeddings\": true, "
             "\"rope_scaling\": null, \"attention_bias\": false, \"use_sliding_window\": false, "
             "\"sliding_window\": null}",
             DIM, HID, LAYERS, HEADS, KV, HD, VOCAB);
    snprintf(p, sizeof(p), "%s/config.json", dir);
    if (write_file(p, cfg, strlen(cfg)) != 0) abort();
    struct st_entry e[64];
    int             n = 0;
    st_add(e, &n, "model.embed_tokens.weight", 2, VOCAB, DIM, W.emb);
    st_add(e, &n, "model.norm.weight", 1, DIM, 0, W.out_norm);
    for (int l = 0; l < LAYERS; l++) {
        char nm[96];
#define ADD(s, nd, d0, d1, ptr)                                                                    \
    (snprintf(nm, sizeof(nm), "model.layers.%d.%s", l, s), st_add(e, &n, nm, nd, d0, d1, ptr))
        ADD("input_layernorm.weight", 1, DIM, 0, W.b[l].attn_norm);
        ADD("post_attention_layernorm.weight", 1, DIM, 0, W.b[l].ffn_norm);
        ADD("self_attn.q_proj.weight", 2, HEADS * HD, DIM, W.b[l].q);
        ADD("self_attn.k_proj.weight", 2, KV * HD, DIM, W.b[l].k);
        ADD("self_attn.v_proj.weight", 2, KV * HD, DIM, W.b[l].v);
        ADD("self_attn.o_proj.weight", 2, DIM, HEADS * HD, W.b[l].o);
        ADD("self_attn.q_norm.weight", 1, HD, 0, W.b[l].q_norm);
        if (!(skip_k_norm && l == 1)) ADD("self_attn.k_norm.weight", 1, HD, 0, W.b[l].k_norm);
        ADD("mlp.gate_proj.weight", 2, HID, DIM, W.b[l].gate);
        ADD("mlp.up_proj.weight", 2, HID, DIM, W.b[l].up);
        ADD("mlp.down_proj.weight", 2, DIM, HID, W.b[l].down);
#undef ADD
    }
    snprintf(p, sizeof(p), "%s/model.safetensors", dir);
    if (st_write(p, e, n) != 0) abort();
    return dir;
}

static void tokens(int32_t *tok) {
    for (int t = 0; t < NTOK; t++) tok[t] = (t * 13 + 5) % VOCAB;
}

/* --- tests -------------------------------------------------------------------------------- */

static void check_config(const struct lmp_model *m, enum lmp_format fmt) {
    const struct lmp_config *c = &m->cfg;
    CHECK(c->arch == LMP_ARCH_QWEN3 && c->format == fmt && c->rope == LMP_ROPE_HALF);
    CHECK(c->qk_norm && !c->post_norms && !c->qkv_bias && c->ffn_act == LMP_ACT_SILU);
    CHECK(c->head_dim == HD && c->n_heads == HEADS && c->n_kv_heads == KV && c->rope_dims == HD);
    CHECK(c->rope_theta == (float)THETA && c->norm_eps == (float)EPS && c->swa_pattern == 0);
    CHECK(c->tied_embeddings && m->output == m->tok_emb && m->n_views == 0);
    CHECK(m->blocks[1].q_norm && m->blocks[1].k_norm && !m->blocks[1].post_attn_norm);
    CHECK(lmp_model_linear(m, LMP_LIN_COUNT + LMP_LIN_Q)->n_out == HEADS * HD);
    struct lmp_err err = {0};
    CHECK(lmp_model_check_trainable(m, "compression", &err) == LMP_OK); /* q/k norms train */
}

static void test_qwen3_gguf(void) {
    struct lmp_model *m   = NULL;
    struct lmp_err    err = {0};
    CHECK(lmp_model_open(write_gguf("q3.gguf", &(struct variant){0}), &m, &err) == LMP_OK);
    if (m == NULL) {
        fprintf(stderr, "  %s\n", err.msg);
        return;
    }
    check_config(m, LMP_FORMAT_GGUF);
    int32_t tok[NTOK];
    tokens(tok);
    static double    want[NTOK * VOCAB];
    struct ref_model r = reference();
    ref_logits(&r, tok, NTOK, want);
    ref_check_forward(m, tok, NTOK, want, 2e-4);
    /* without the q/k norms the logits are far off: the check above sees them */
    r.b[0].q_norm = r.b[0].k_norm = NULL;
    static double off[NTOK * VOCAB];
    ref_logits(&r, tok, NTOK, off);
    double d = 0;
    for (int i = 0; i < NTOK * VOCAB; i++) d = fmax(d, fabs(off[i] - want[i]));
    CHECK(d > 0.05);
    lmp_model_close(&m);
}

static void test_qwen3_hf_equals_gguf(void) {
    struct lmp_model *g = NULL, *h = NULL;
    struct lmp_err    err = {0};
    CHECK(lmp_model_open(write_gguf("q3h.gguf", &(struct variant){0}), &g, &err) == LMP_OK);
    CHECK(lmp_model_open(write_hf("q3hf", false), &h, &err) == LMP_OK);
    if (g == NULL || h == NULL) {
        fprintf(stderr, "  %s\n", err.msg);
        lmp_model_close(&g);
        lmp_model_close(&h);
        return;
    }
    check_config(h, LMP_FORMAT_HF);
    int32_t tok[NTOK];
    tokens(tok);
    static double    want[NTOK * VOCAB];
    struct ref_model r = reference();
    ref_logits(&r, tok, NTOK, want);
    ref_check_forward(h, tok, NTOK, want, 2e-4);
    /* the two files hold the same numbers in the same layout: the same logits */
    struct lmp_transformer *tg = NULL, *th = NULL;
    CHECK(lmp_transformer_new(g, NULL, &tg, &err) == LMP_OK);
    CHECK(lmp_transformer_new(h, NULL, &th, &err) == LMP_OK);
    if (tg && th) {
        static float xg[NTOK * DIM], xh[NTOK * DIM];
        CHECK(lmp_transformer_forward(tg, NULL, tok, 1, NTOK, xg, NULL, &err) == LMP_OK);
        CHECK(lmp_transformer_forward(th, NULL, tok, 1, NTOK, xh, NULL, &err) == LMP_OK);
        CHECK(memcmp(xg, xh, sizeof(xg)) == 0);
    }
    lmp_transformer_destroy(&tg);
    lmp_transformer_destroy(&th);
    lmp_model_close(&g);
    lmp_model_close(&h);
}

static void expect_error(const char *path, const char *fname, enum lmp_status want,
                         const char *words) {
    struct lmp_model *m  = NULL;
    struct lmp_err    e  = {0};
    enum lmp_status   st = lmp_model_open(path, &m, &e);
    bool ok = st == want && m == NULL && strstr(e.msg, words) != NULL && strstr(e.msg, fname) &&
              strchr(e.msg, '\n') == NULL;
    if (!ok)
        fprintf(stderr, "  expected %s with '%s', got %s: %s\n", lmp_status_str(want), words,
                lmp_status_str(st), e.msg);
    CHECK(ok);
    lmp_model_close(&m);
}

static void test_qwen3_bad_files(void) {
    expect_error(write_gguf("nok.gguf", &(struct variant){.no_k_norm_block = 2}), "nok.gguf",
                 LMP_EFORMAT, "missing tensor 'blk.1.attn_k_norm.weight'");
    expect_error(write_gguf("qdim.gguf", &(struct variant){.q_norm_dim = 1}), "qdim.gguf",
                 LMP_EFORMAT, "tensor 'blk.0.attn_q_norm.weight' has shape (16), expected (8)");
    expect_error(write_hf("nokhf", true), "nokhf", LMP_EFORMAT,
                 "missing tensor 'model.layers.1.self_attn.k_norm.weight'");
}

int main(void) {
    const char *t = getenv("TMPDIR");
    snprintf(tmpdir, sizeof(tmpdir), "%s/test_qwen3.XXXXXX", t ? t : "/tmp");
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    make_weights(&W);
    RUN(test_qwen3_gguf);
    RUN(test_qwen3_hf_equals_gguf);
    RUN(test_qwen3_bad_files);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "note: could not remove %s\n", tmpdir);
    return check_report();
}
