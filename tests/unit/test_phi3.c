/*  test_phi3 - a tiny Phi-3 through the GGUF and Hugging Face readers and the forward pass
 *
 *  A two-block model shaped like Phi-3 (q, k and v fused in one matrix, gate and up in
 *  another; 4 query heads and 2 kv heads of 6 dimensions; an untied head; a sliding window
 *  of 4 in the file) is written as GGUF with llama.cpp's phi3 keys and tensor names
 *  (attn_qkv; ffn_up of 2 x feed_forward_length rows, gate first) and as a Hugging Face
 *  directory (self_attn.qkv_proj, mlp.gate_up_proj), read back (the fused tensors split
 *  into the llama block's linears, as row views), and run on 9 tokens. The logits must
 *  equal the direct double-precision pass of tests/unit/arch_ref.h, which reads the fused
 *  matrices by its own row offsets, in batch, through the KV cache and with lazy weights;
 *  the window is not applied, as llama.cpp does not for phi3. A variant has partial rotary
 *  dimensions (4 of 6, as Phi-4-mini rotates 96 of 128). Separate attn_q/k/v (which
 *  llama.cpp also accepts) give the same logits. Compression and training are allowed,
 *  partial rotary included (the split layout is the llama block). Errors, one line naming the file:
 * fused tensors of the wrong size, LongRoPE factor tensors, a LongRoPE config, a qkv bias.
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

enum { DIM = 24, HEADS = 4, KV = 2, HD = 6, HID = 20, VOCAB = 40, LAYERS = 2, NTOK = 9 };
enum { QKV = (HEADS + 2 * KV) * HD, WINDOW = 4 };
#define THETA 10000.0
#define EPS   1e-5

static char tmpdir[256];

struct weights {
    float emb[VOCAB * DIM], out_norm[DIM], output[VOCAB * DIM];
    struct {
        float attn_norm[DIM], qkv[QKV * DIM], o[DIM * HEADS * HD];
        float ffn_norm[DIM], gate_up[2 * HID * DIM], down[DIM * HID];
    } b[LAYERS];
};
static struct weights W;

static void fill(float *x, int n, uint64_t seed, float center, float spread) {
    check_fill_random(x, n, seed);
    for (int i = 0; i < n; i++) x[i] = center + spread * x[i];
}

static void make_weights(struct weights *w) {
    uint64_t s = 31;
    fill(w->emb, VOCAB * DIM, s++, 0, 0.8f);
    fill(w->out_norm, DIM, s++, 1, 0.3f);
    fill(w->output, VOCAB * DIM, s++, 0, 0.5f);
    for (int l = 0; l < LAYERS; l++) {
        fill(w->b[l].attn_norm, DIM, s++, 1, 0.3f);
        fill(w->b[l].qkv, QKV * DIM, s++, 0, 0.4f);
        fill(w->b[l].o, DIM * HEADS * HD, s++, 0, 0.3f);
        fill(w->b[l].ffn_norm, DIM, s++, 1, 0.3f);
        fill(w->b[l].gate_up, 2 * HID * DIM, s++, 0, 0.4f);
        fill(w->b[l].down, DIM * HID, s++, 0, 0.3f);
    }
}

/* The direct pass: q, k, v are rows [0, H*hd), [H*hd, (H+KV)*hd), the rest of qkv; gate
 * the first HID rows of gate_up, up the next HID. */
static struct ref_model reference(int rope_dims) {
    struct ref_model r = {.dim       = DIM,
                          .heads     = HEADS,
                          .kv        = KV,
                          .hd        = HD,
                          .hid       = HID,
                          .vocab     = VOCAB,
                          .layers    = LAYERS,
                          .rope_dims = rope_dims,
                          .theta     = THETA,
                          .eps       = EPS,
                          .emb       = W.emb,
                          .out_norm  = W.out_norm,
                          .output    = W.output};
    for (int l = 0; l < LAYERS; l++) {
        const float *qkv = W.b[l].qkv, *gu = W.b[l].gate_up;
        r.b[l] = (struct ref_block){.attn_norm = W.b[l].attn_norm,
                                    .q         = qkv,
                                    .k         = qkv + HEADS * HD * DIM,
                                    .v         = qkv + (HEADS + KV) * HD * DIM,
                                    .o         = W.b[l].o,
                                    .ffn_norm  = W.b[l].ffn_norm,
                                    .gate      = gu,
                                    .up        = gu + HID * DIM,
                                    .down      = W.b[l].down};
    }
    return r;
}

struct variant {
    int         rope_dims;    /* phi3.rope.dimension_count; 0: HD */
    int         separate_qkv; /* attn_q, attn_k, attn_v instead of attn_qkv */
    int         qkv_rows;     /* > 0: attn_qkv of this many rows (from the start of qkv) */
    int         up_rows;      /* > 0: ffn_up of this many rows */
    const char *extra_tensor; /* a tensor of HD / 2 ones (rope_factors_long.weight, ...) */
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
    gw_kv_str(&w, "general.architecture", "phi3");
    gw_kv_u32(&w, "phi3.block_count", LAYERS);
    gw_kv_u32(&w, "phi3.context_length", 64);
    gw_kv_u32(&w, "phi3.rope.scaling.original_context_length", 64);
    gw_kv_u32(&w, "phi3.embedding_length", DIM);
    gw_kv_u32(&w, "phi3.feed_forward_length", HID);
    gw_kv_u32(&w, "phi3.attention.head_count", HEADS);
    gw_kv_u32(&w, "phi3.attention.head_count_kv", KV);
    gw_kv_f32(&w, "phi3.attention.layer_norm_rms_epsilon", (float)EPS);
    gw_kv_u32(&w, "phi3.rope.dimension_count", (uint32_t)(v->rope_dims ? v->rope_dims : HD));
    gw_kv_f32(&w, "phi3.rope.freq_base", (float)THETA);
    gw_kv_u32(&w, "phi3.attention.sliding_window", WINDOW);
    const uint64_t d1[1] = {DIM};
#define T2(name, ptr, n_in, n_out)                                                                 \
    gw_tensor(&w, name, GW_F32, 2, (const uint64_t[]){n_in, n_out}, ptr,                           \
              sizeof(float) * (n_in) * (n_out))
    T2("token_embd.weight", W.emb, DIM, VOCAB);
    gw_tensor(&w, "output_norm.weight", GW_F32, 1, d1, W.out_norm, sizeof(W.out_norm));
    T2("output.weight", W.output, DIM, VOCAB);
    if (v->extra_tensor) {
        const float ones[HD / 2] = {1, 1, 1};
        gw_tensor(&w, v->extra_tensor, GW_F32, 1, (const uint64_t[]){HD / 2}, ones, sizeof(ones));
    }
    for (int l = 0; l < LAYERS; l++) {
        char         n[96];
        const float *qkv = W.b[l].qkv;
#define NAME(s) (snprintf(n, sizeof(n), "blk.%d.%s.weight", l, s), n)
        gw_tensor(&w, NAME("attn_norm"), GW_F32, 1, d1, W.b[l].attn_norm, sizeof(float) * DIM);
        if (v->separate_qkv) {
            T2(NAME("attn_q"), qkv, DIM, HEADS * HD);
            T2(NAME("attn_k"), qkv + HEADS * HD * DIM, DIM, KV * HD);
            T2(NAME("attn_v"), qkv + (HEADS + KV) * HD * DIM, DIM, KV * HD);
        } else {
            T2(NAME("attn_qkv"), qkv, DIM, v->qkv_rows ? v->qkv_rows : QKV);
        }
        T2(NAME("attn_output"), W.b[l].o, HEADS * HD, DIM);
        gw_tensor(&w, NAME("ffn_norm"), GW_F32, 1, d1, W.b[l].ffn_norm, sizeof(float) * DIM);
        T2(NAME("ffn_up"), W.b[l].gate_up, DIM, v->up_rows ? v->up_rows : 2 * HID);
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

/* A Hugging Face directory of the same weights; extra: more config fields; qkv_bias: a
 * self_attn.qkv_proj.bias in block 0. */
static const char *write_hf(const char *dname, const char *extra, bool qkv_bias) {
    const char *dir = path_of(dname);
    mkdir(dir, 0755);
    char cfg[1536], p[600];
    snprintf(cfg, sizeof(cfg),
             "{\"architectures\": [\"Phi3ForCausalLM\"], \"model_type\": \"phi3\", "
             "\"hidden_size\": %d, \"intermediate_size\": %d, \"num_hidden_layers\": %d, "
             "\"num_attention_heads\": %d, \"num_key_value_heads\": %d, \"vocab_size\": %d, "
             "\"max_position_embeddings\": 64, \"original_max_position_embeddings\": 64, "
             "\"rope_theta\": 10000.0, \"rms_norm_eps\": 1e-05, \"hidden_act\": \"silu\", "
             "\"tie_word_embeddings\": false, \"rope_scaling\": null, \"sliding_window\": %d%s}",
             DIM, HID, LAYERS, HEADS, KV, VOCAB, WINDOW, extra ? extra : "");
    snprintf(p, sizeof(p), "%s/config.json", dir);
    if (write_file(p, cfg, strlen(cfg)) != 0) abort();
    struct st_entry e[64];
    int             n = 0;
    st_add(e, &n, "model.embed_tokens.weight", 2, VOCAB, DIM, W.emb);
    st_add(e, &n, "model.norm.weight", 1, DIM, 0, W.out_norm);
    st_add(e, &n, "lm_head.weight", 2, VOCAB, DIM, W.output);
    for (int l = 0; l < LAYERS; l++) {
        char nm[96];
#define ADD(s, nd, d0, d1, ptr)                                                                    \
    (snprintf(nm, sizeof(nm), "model.layers.%d.%s", l, s), st_add(e, &n, nm, nd, d0, d1, ptr))
        ADD("input_layernorm.weight", 1, DIM, 0, W.b[l].attn_norm);
        ADD("post_attention_layernorm.weight", 1, DIM, 0, W.b[l].ffn_norm);
        ADD("self_attn.qkv_proj.weight", 2, QKV, DIM, W.b[l].qkv);
        if (qkv_bias && l == 0) ADD("self_attn.qkv_proj.bias", 1, QKV, 0, W.b[l].qkv);
        ADD("self_attn.o_proj.weight", 2, DIM, HEADS * HD, W.b[l].o);
        ADD("mlp.gate_up_proj.weight", 2, 2 * HID, DIM, W.b[l].gate_up);
        ADD("mlp.down_proj.weight", 2, DIM, HID, W.b[l].down);
#undef ADD
    }
    snprintf(p, sizeof(p), "%s/model.safetensors", dir);
    if (st_write(p, e, n) != 0) abort();
    return dir;
}

static void tokens(int32_t *tok) {
    for (int t = 0; t < NTOK; t++) tok[t] = (t * 17 + 3) % VOCAB;
}

/* --- tests -------------------------------------------------------------------------------- */

static void check_config(const struct lmp_model *m, enum lmp_format fmt) {
    const struct lmp_config *c = &m->cfg;
    CHECK(c->arch == LMP_ARCH_PHI3 && c->format == fmt && c->rope == LMP_ROPE_HALF);
    CHECK(!c->qk_norm && !c->post_norms && !c->qkv_bias && c->ffn_act == LMP_ACT_SILU);
    CHECK(c->head_dim == HD && c->n_heads == HEADS && c->n_kv_heads == KV && c->hidden_dim == HID);
    CHECK(c->sliding_window == WINDOW && c->swa_pattern == 0); /* recorded, not applied */
    CHECK(!c->tied_embeddings && m->output != m->tok_emb && m->n_views == 5 * LAYERS);
    /* the split: shapes, names, and the rows of the fused tensors in the map */
    const struct lmp_block *b1 = &m->blocks[1];
    CHECK(b1->lin[LMP_LIN_Q].weight->shape[0] == HEADS * HD &&
          b1->lin[LMP_LIN_K].weight->shape[0] == KV * HD &&
          b1->lin[LMP_LIN_V].weight->shape[0] == KV * HD &&
          b1->lin[LMP_LIN_GATE].weight->shape[0] == HID &&
          b1->lin[LMP_LIN_UP].weight->shape[0] == HID);
    const float *q = b1->lin[LMP_LIN_Q].weight->data, *up = b1->lin[LMP_LIN_UP].weight->data;
    CHECK((const float *)b1->lin[LMP_LIN_K].weight->data == q + HEADS * HD * DIM);
    CHECK((const float *)b1->lin[LMP_LIN_V].weight->data == q + (HEADS + KV) * HD * DIM);
    CHECK(up == (const float *)b1->lin[LMP_LIN_GATE].weight->data + HID * DIM);
    CHECK(memcmp(up, W.b[1].gate_up + HID * DIM, sizeof(float) * HID * DIM) == 0);
    CHECK(b1->lin[LMP_LIN_V].weight->nbytes == sizeof(float) * KV * HD * DIM);
    if (fmt == LMP_FORMAT_GGUF) {
        CHECK(strcmp(b1->lin[LMP_LIN_K].weight->name, "blk.1.attn_qkv.weight[24:36]") == 0);
        CHECK(strcmp(b1->lin[LMP_LIN_UP].weight->name, "blk.1.ffn_up.weight[20:40]") == 0);
    }
    /* every parameter once: the views are not tensors of their own */
    const int64_t per_block = 2 * DIM + QKV * DIM + DIM * HEADS * HD + 3 * HID * DIM;
    CHECK(lmp_model_n_params(m) == 2 * VOCAB * DIM + DIM + LAYERS * per_block);
    CHECK(lmp_model_find_tensor(m, b1->lin[LMP_LIN_K].weight->name) == NULL);
}

static void test_phi3_gguf(void) {
    struct lmp_model *m   = NULL;
    struct lmp_err    err = {0};
    CHECK(lmp_model_open(write_gguf("p3.gguf", &(struct variant){0}), &m, &err) == LMP_OK);
    if (m == NULL) {
        fprintf(stderr, "  %s\n", err.msg);
        return;
    }
    check_config(m, LMP_FORMAT_GGUF);
    CHECK(m->cfg.rope_dims == HD);
    /* the split layout is the llama block: compression may run */
    CHECK(lmp_model_check_trainable(m, "compression", &err) == LMP_OK);
    int32_t tok[NTOK];
    tokens(tok);
    static double    want[NTOK * VOCAB];
    struct ref_model r = reference(HD);
    ref_logits(&r, tok, NTOK, want);
    ref_check_forward(m, tok, NTOK, want, 2e-4);
    lmp_model_close(&m);

    /* separate attn_q/k/v, as llama.cpp also reads phi3: the same model */
    CHECK(lmp_model_open(write_gguf("p3s.gguf", &(struct variant){.separate_qkv = 1}), &m, &err) ==
          LMP_OK);
    CHECK(m && m->n_views == 2 * LAYERS);
    if (m) ref_check_forward(m, tok, NTOK, want, 2e-4);
    lmp_model_close(&m);
}

static void test_phi3_partial_rotary(void) {
    struct lmp_model *m   = NULL;
    struct lmp_err    err = {0};
    CHECK(lmp_model_open(write_gguf("p3r.gguf", &(struct variant){.rope_dims = 4}), &m, &err) ==
          LMP_OK);
    if (m == NULL) return;
    CHECK(m->cfg.rope_dims == 4);
    int32_t tok[NTOK];
    tokens(tok);
    static double    want[NTOK * VOCAB], full[NTOK * VOCAB];
    struct ref_model r = reference(4);
    ref_logits(&r, tok, NTOK, want);
    ref_check_forward(m, tok, NTOK, want, 2e-4);
    r.rope_dims = HD; /* rotating every dimension differs: the check above sees it */
    ref_logits(&r, tok, NTOK, full);
    double d = 0;
    for (int i = 0; i < NTOK * VOCAB; i++) d = fmax(d, fabs(full[i] - want[i]));
    CHECK(d > 0.01);
    /* the backward rotates the same dimensions (test_model_grad): it trains */
    CHECK(lmp_model_check_trainable(m, "compression", &err) == LMP_OK);
    lmp_model_close(&m);
}

static void test_phi3_hf(void) {
    struct lmp_model *h   = NULL;
    struct lmp_err    err = {0};
    CHECK(lmp_model_open(write_hf("p3hf", NULL, false), &h, &err) == LMP_OK);
    if (h == NULL) {
        fprintf(stderr, "  %s\n", err.msg);
        return;
    }
    check_config(h, LMP_FORMAT_HF);
    CHECK(strcmp(h->blocks[0].lin[LMP_LIN_GATE].weight->name,
                 "model.layers.0.mlp.gate_up_proj.weight[0:20]") == 0);
    int32_t tok[NTOK];
    tokens(tok);
    static double    want[NTOK * VOCAB];
    struct ref_model r = reference(HD);
    ref_logits(&r, tok, NTOK, want);
    ref_check_forward(h, tok, NTOK, want, 2e-4);
    lmp_model_close(&h);
    /* Phi-4-mini's partial rotary factor */
    CHECK(
        lmp_model_open(write_hf("p3hfr", ", \"partial_rotary_factor\": 0.6666666666666666", false),
                       &h, &err) == LMP_OK);
    CHECK(h && h->cfg.rope_dims == 4);
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

static void test_phi3_bad_files(void) {
    expect_error(write_gguf("qkv.gguf", &(struct variant){.qkv_rows = (HEADS + KV) * HD}),
                 "qkv.gguf", LMP_EFORMAT,
                 "tensor 'blk.0.attn_qkv.weight' has shape (36, 24), expected (48, 24)");
    expect_error(write_gguf("up.gguf", &(struct variant){.up_rows = HID}), "up.gguf", LMP_EFORMAT,
                 "tensor 'blk.0.ffn_up.weight' has shape (20, 24), expected (40, 24)");
    expect_error(
        write_gguf("long.gguf", &(struct variant){.extra_tensor = "rope_factors_long.weight"}),
        "long.gguf", LMP_EUNSUP, "LongRoPE");
    expect_error(
        write_gguf("short.gguf", &(struct variant){.extra_tensor = "rope_factors_short.weight"}),
        "short.gguf", LMP_EUNSUP, "rope_factors_short.weight");
    expect_error(write_hf("hflong",
                          ", \"rope_scaling\": {\"type\": \"longrope\", \"long_factor\": [1, 1, "
                          "1], \"short_factor\": [1, 1, 1]}",
                          false),
                 "hflong", LMP_EUNSUP, "rope_scaling (longrope) is not supported");
    expect_error(write_hf("hfbias", NULL, true), "hfbias", LMP_EUNSUP,
                 "bias 'model.layers.0.self_attn.qkv_proj.bias' is not supported");
}

int main(void) {
    const char *t = getenv("TMPDIR");
    snprintf(tmpdir, sizeof(tmpdir), "%s/test_phi3.XXXXXX", t ? t : "/tmp");
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    make_weights(&W);
    RUN(test_phi3_gguf);
    RUN(test_phi3_partial_rotary);
    RUN(test_phi3_hf);
    RUN(test_phi3_bad_files);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "note: could not remove %s\n", tmpdir);
    return check_report();
}
