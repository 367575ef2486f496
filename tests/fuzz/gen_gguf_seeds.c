/*  gen_gguf_seeds - writes the seed corpus of fuzz_gguf (small valid GGUF files)
 *
 *      cc -I. -o /tmp/gen_gguf_seeds tests/fuzz/gen_gguf_seeds.c && \
 *          /tmp/gen_gguf_seeds tests/fuzz/corpus/fuzz_gguf
 *
 *  Not built by CMake (only tests/fuzz/fuzz_*.c are); deterministic output.
 */
#include "tests/gguf_writer.h"

#include <stdio.h>

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

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: gen_gguf_seeds DIR\n");
        return 2;
    }
    uint8_t bytes[1024];
    for (int i = 0; i < 1024; i++) bytes[i] = (uint8_t)(i * 37 + 11);
    for (int i = 0; i < 1024; i += 2) bytes[i + 1] &= 0x3f; /* keep f16/bf16 values finite-ish */
    struct gw w;

    /* every metadata type, an F32 and a Q8_0 tensor (v3) */
    gw_init(&w);
    gw_kv_u8(&w, "a.u8", 7);
    gw_kv_i8(&w, "a.i8", -7);
    gw_kv_u16(&w, "a.u16", 700);
    gw_kv_i16(&w, "a.i16", -700);
    gw_kv_u32(&w, "a.u32", 70000);
    gw_kv_i32(&w, "a.i32", -70000);
    gw_kv_f32(&w, "a.f32", 0.5f);
    gw_kv_bool(&w, "a.bool", 1);
    gw_kv_str(&w, "a.str", "text");
    gw_kv_u64(&w, "a.u64", 1ull << 40);
    gw_kv_i64(&w, "a.i64", -(1ll << 40));
    gw_kv_f64(&w, "a.f64", 0.25);
    gw_kv_arr_i32(&w, "a.arr_i32", (int32_t[]){1, 2, 3}, 3);
    gw_kv_arr_f32(&w, "a.arr_f32", (float[]){1.5f, -2.5f}, 2);
    gw_kv_arr_str(&w, "a.arr_str", (const char *[]){"x", "", "yz"}, 3);
    gw_tensor(&w, "f32", GW_F32, 1, (uint64_t[]){8}, bytes, 32);
    gw_tensor(&w, "q8_0", GW_Q8_0, 2, (uint64_t[]){32, 2}, bytes, 68);
    save(argv[1], "types_v3.gguf.seed", gw_finish(&w, 3));

    /* v2, alignment 64, the other tensor types */
    gw_init(&w);
    gw_kv_u32(&w, "general.alignment", 64);
    w.align = 64;
    gw_kv_str(&w, "general.architecture", "llama");
    gw_tensor(&w, "f16", GW_F16, 2, (uint64_t[]){16, 2}, bytes, 64);
    gw_tensor(&w, "bf16", GW_BF16, 1, (uint64_t[]){16}, bytes, 32);
    gw_tensor(&w, "q4_0", GW_Q4_0, 2, (uint64_t[]){64, 1}, bytes, 36);
    gw_tensor(&w, "q4_1", GW_Q4_1, 3, (uint64_t[]){32, 2, 2}, bytes, 80);
    save(argv[1], "tensors_v2_align64.gguf.seed", gw_finish(&w, 2));

    /* the K-quants and Q5_0/Q5_1, one or two super-blocks each (v3) */
    gw_init(&w);
    gw_kv_str(&w, "general.architecture", "llama");
    gw_tensor(&w, "q2_k", GW_Q2_K, 2, (uint64_t[]){256, 2}, bytes, 168);
    gw_tensor(&w, "q3_k", GW_Q3_K, 1, (uint64_t[]){256}, bytes, 110);
    gw_tensor(&w, "q4_k", GW_Q4_K, 2, (uint64_t[]){512, 1}, bytes, 288);
    gw_tensor(&w, "q5_k", GW_Q5_K, 1, (uint64_t[]){256}, bytes, 176);
    gw_tensor(&w, "q6_k", GW_Q6_K, 2, (uint64_t[]){256, 2}, bytes, 420);
    gw_tensor(&w, "q5_0", GW_Q5_0, 1, (uint64_t[]){64}, bytes, 44);
    gw_tensor(&w, "q5_1", GW_Q5_1, 1, (uint64_t[]){32}, bytes, 24);
    save(argv[1], "kquants_v3.gguf.seed", gw_finish(&w, 3));

    /* llama-style model metadata and a tokenizer, two small tensors */
    gw_init(&w);
    gw_kv_str(&w, "general.architecture", "llama");
    gw_kv_u32(&w, "llama.block_count", 1);
    gw_kv_u32(&w, "llama.embedding_length", 32);
    gw_kv_u32(&w, "llama.feed_forward_length", 64);
    gw_kv_u32(&w, "llama.attention.head_count", 4);
    gw_kv_u32(&w, "llama.attention.head_count_kv", 2);
    gw_kv_f32(&w, "llama.rope.freq_base", 10000.0f);
    gw_kv_f32(&w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    gw_kv_str(&w, "tokenizer.ggml.model", "gpt2");
    gw_kv_str(&w, "tokenizer.ggml.pre", "smollm");
    gw_kv_arr_str(&w, "tokenizer.ggml.tokens", (const char *[]){"<s>", "</s>", "a", "b", "ab"}, 5);
    gw_kv_arr_i32(&w, "tokenizer.ggml.token_type", (int32_t[]){3, 3, 1, 1, 1}, 5);
    gw_kv_arr_str(&w, "tokenizer.ggml.merges", (const char *[]){"a b"}, 1);
    gw_kv_u32(&w, "tokenizer.ggml.bos_token_id", 0);
    gw_tensor(&w, "output_norm.weight", GW_F32, 1, (uint64_t[]){32}, bytes, 128);
    gw_tensor(&w, "token_embd.weight", GW_Q4_1, 2, (uint64_t[]){32, 5}, bytes, 100);
    save(argv[1], "llama_meta_v3.gguf.seed", gw_finish(&w, 3));

    /* metadata only */
    gw_init(&w);
    gw_kv_str(&w, "general.name", "empty");
    save(argv[1], "no_tensors.gguf.seed", gw_finish(&w, 3));
    return 0;
}
