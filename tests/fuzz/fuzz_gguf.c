/*  fuzz_gguf - libFuzzer target for the GGUF reader
 *
 *  Parses the input with lmp_gguf_parse and, when it is accepted, reads everything a
 *  consumer could: every key with its typed getters, every array element, every
 *  tensor's bytes (the first and last, so ASan sees any range the reader got wrong)
 *  and one dequantized row. Any crash, sanitizer report or leak is a finding.
 */
#include "model/gguf.h"
#include "model/model.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static volatile uint64_t sink;

static void walk(const struct lmp_gguf *g) {
    char key[512];
    for (int64_t i = 0; i < lmp_gguf_n_kv(g); i++) {
        struct lmp_gguf_str k = lmp_gguf_key(g, i);
        if (k.len >= sizeof(key)) continue; /* getters take NUL-terminated keys */
        memcpy(key, k.s, k.len);
        key[k.len] = '\0';
        int64_t             i64;
        double              f64;
        bool                b;
        struct lmp_gguf_str s;
        enum lmp_gguf_type  elem;
        sink += (uint64_t)lmp_gguf_kv_type(g, i) + (uint64_t)(lmp_gguf_find(g, key) == i);
        if (lmp_gguf_get_i64(g, key, &i64)) sink += (uint64_t)i64;
        if (lmp_gguf_get_f64(g, key, &f64)) sink += (uint64_t)(f64 == f64);
        if (lmp_gguf_get_bool(g, key, &b)) sink += b;
        if (lmp_gguf_get_str(g, key, &s) && s.len) sink += (uint8_t)s.s[s.len - 1];
        int64_t n = lmp_gguf_arr_n(g, key, &elem);
        if (n > 0 && elem == LMP_GGUF_STRING) {
            for (int64_t j = 0; j < n; j++) {
                s = lmp_gguf_arr_str(g, key, j);
                if (s.len) sink += (uint8_t)s.s[0] + (uint8_t)s.s[s.len - 1];
            }
        } else if (n > 0) {
            const uint8_t *p = lmp_gguf_arr_data(g, key);
            sink += p[0];
        }
    }
    for (int64_t i = 0; i < lmp_gguf_n_tensors(g); i++) {
        const struct lmp_tensor *t = lmp_gguf_tensor(g, i);
        sink += (uint64_t)(lmp_gguf_find_tensor(g, t->name) == t);
        if (t->nbytes == 0) continue;
        const uint8_t *p = t->data;
        sink += p[0] + p[t->nbytes - 1];
        int64_t cols = lmp_tensor_n_cols(t);
        if (cols > 0 && cols <= 4096 && lmp_tensor_n_rows(t) > 0) {
            float row[4096];
            lmp_tensor_rows_f32(t, lmp_tensor_n_rows(t) - 1, 1, row);
            sink += (uint64_t)(row[cols - 1] == row[cols - 1]);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct lmp_gguf *g   = NULL;
    struct lmp_err   err = {0};
    if (lmp_gguf_parse(data, size, "fuzz.gguf", &g, &err) == LMP_OK)
        walk(g);
    else if (g != NULL || err.msg[0] == '\0')
        abort(); /* failure must be clean and explained */
    lmp_gguf_close(&g);
    return 0;
}
