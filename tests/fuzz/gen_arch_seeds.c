/*  gen_arch_seeds - GGUF model seeds for fuzz_llama2c (whose lmp_model_open sends a GGUF
 *  magic to the GGUF model reader): one-block llama, qwen3 (q/k norms), phi3 (fused
 *  attn_qkv and ffn_up, split on read; and the separate attn_q/k/v form) and gemma2 (post
 *  norms, sliding window, soft-caps) models, F32
 *
 *      cc -I. -o /tmp/gen_arch_seeds tests/fuzz/gen_arch_seeds.c && \
 *          /tmp/gen_arch_seeds tests/fuzz/corpus/fuzz_llama2c
 *
 *  Not built by CMake (only tests/fuzz/fuzz_*.c are); deterministic output.
 */
#include "tests/gguf_writer.h"

#include <stdio.h>

enum { DIM = 8, HEADS = 2, KV = 1, HD = 4, HID = 8, VOCAB = 4 };

static float vals[4 * HID * DIM];

static void save(const char *dir, const char *name, struct gw_buf b) {
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(b.p, 1, b.n, f) != b.n) {
        perror(path);
        exit(1);
    }
    fclose(f);
    free(b.p);
}

static void t2(struct gw *w, const char *name, uint64_t n_in, uint64_t n_out) {
    gw_tensor(w, name, GW_F32, 2, (const uint64_t[]){n_in, n_out}, vals,
              sizeof(float) * n_in * n_out);
}

static void t1(struct gw *w, const char *name, uint64_t n) {
    gw_tensor(w, name, GW_F32, 1, (const uint64_t[]){n}, vals, sizeof(float) * n);
}

/* arch "llama", "qwen3", "phi3" or "gemma2"; fused: phi3's attn_qkv */
static struct gw_buf model(const char *arch, int fused) {
    struct gw w;
    char      k[96];
    gw_init(&w);
    gw_kv_str(&w, "general.architecture", arch);
#define KEY(s) (snprintf(k, sizeof(k), "%s.%s", arch, s), k)
    gw_kv_u32(&w, KEY("block_count"), 1);
    gw_kv_u32(&w, KEY("context_length"), 32);
    gw_kv_u32(&w, KEY("embedding_length"), DIM);
    gw_kv_u32(&w, KEY("feed_forward_length"), HID);
    gw_kv_u32(&w, KEY("attention.head_count"), HEADS);
    gw_kv_u32(&w, KEY("attention.head_count_kv"), KV);
    gw_kv_u32(&w, KEY("attention.key_length"), HD);
    gw_kv_f32(&w, KEY("attention.layer_norm_rms_epsilon"), 1e-6f);
    gw_kv_f32(&w, KEY("rope.freq_base"), 10000.0f);
    if (!strcmp(arch, "phi3")) {
        gw_kv_u32(&w, KEY("rope.dimension_count"), HD);
        gw_kv_u32(&w, KEY("attention.sliding_window"), 16);
    }
    if (!strcmp(arch, "gemma2")) {
        gw_kv_u32(&w, KEY("attention.sliding_window"), 16);
        gw_kv_f32(&w, KEY("attn_logit_softcapping"), 50.0f);
        gw_kv_f32(&w, KEY("final_logit_softcapping"), 30.0f);
    }
#undef KEY
    t2(&w, "token_embd.weight", DIM, VOCAB);
    t1(&w, "output_norm.weight", DIM);
    t1(&w, "blk.0.attn_norm.weight", DIM);
    if (fused) {
        t2(&w, "blk.0.attn_qkv.weight", DIM, (HEADS + 2 * KV) * HD);
    } else {
        t2(&w, "blk.0.attn_q.weight", DIM, HEADS * HD);
        t2(&w, "blk.0.attn_k.weight", DIM, KV * HD);
        t2(&w, "blk.0.attn_v.weight", DIM, KV * HD);
    }
    if (!strcmp(arch, "qwen3")) {
        t1(&w, "blk.0.attn_q_norm.weight", HD);
        t1(&w, "blk.0.attn_k_norm.weight", HD);
    }
    t2(&w, "blk.0.attn_output.weight", HEADS * HD, DIM);
    if (!strcmp(arch, "gemma2")) t1(&w, "blk.0.post_attention_norm.weight", DIM);
    t1(&w, "blk.0.ffn_norm.weight", DIM);
    if (!strcmp(arch, "phi3")) {
        t2(&w, "blk.0.ffn_up.weight", DIM, 2 * HID);
    } else {
        t2(&w, "blk.0.ffn_gate.weight", DIM, HID);
        t2(&w, "blk.0.ffn_up.weight", DIM, HID);
    }
    t2(&w, "blk.0.ffn_down.weight", HID, DIM);
    if (!strcmp(arch, "gemma2")) t1(&w, "blk.0.post_ffw_norm.weight", DIM);
    return gw_finish(&w, 3);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: gen_arch_seeds DIR\n");
        return 2;
    }
    for (int i = 0; i < 4 * HID * DIM; i++) vals[i] = (float)((i * 37 + 11) % 17) / 16.0f - 0.5f;
    save(argv[1], "gguf_llama", model("llama", 0));
    save(argv[1], "gguf_qwen3", model("qwen3", 0));
    save(argv[1], "gguf_phi3_fused", model("phi3", 1));
    save(argv[1], "gguf_phi3_separate", model("phi3", 0));
    save(argv[1], "gguf_gemma2", model("gemma2", 0));
    return 0;
}
