/*  fuzz_tokenize_text - encode arbitrary bytes with a small llama2.c tokenizer and a small
 *  byte-level BPE built in memory; the llama2.c encoding must decode back to the input
 *  (byte fallback makes it lossless), the BPE one to the input when it is valid UTF-8
 *  without NUL-free caveats (checked only for ASCII inputs). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "model/tokenizer.h"

static struct lmp_tokenizer *spm, *bpe;

static struct lmp_tokenizer *make_spm(void) {
    static const char *const pieces[] = {" ", "a", "b", "ab", " a", "ba", "aba", "\xC3\xA9"};
    static uint8_t           buf[8192];
    size_t                   w  = 4;
    int32_t                  mx = 8, n = 259 + (int32_t)(sizeof(pieces) / sizeof(pieces[0]));
    memcpy(buf, &mx, 4);
    for (int i = 0; i < n; i++) {
        char        tmp[8];
        const char *s = i == 0 ? "<unk>" : i == 1 ? "<s>" : i == 2 ? "</s>" : tmp;
        if (i >= 3 && i < 259) snprintf(tmp, sizeof(tmp), "<0x%02X>", i - 3);
        if (i >= 259) s = pieces[i - 259];
        float   sc  = (float)-(i % 7);
        int32_t len = (int32_t)strlen(s);
        memcpy(buf + w, &sc, 4), memcpy(buf + w + 4, &len, 4), memcpy(buf + w + 8, s, (size_t)len);
        w += 8 + (size_t)len;
    }
    struct lmp_tokenizer *t = NULL;
    if (lmp_tokenizer_parse_llama2c(buf, w, n, "spm", &t, NULL) != LMP_OK) abort();
    return t;
}

static struct lmp_tokenizer *make_bpe(void) {
    /* every printable ASCII byte char, a few merges, GPT-2 regex */
    static char json[16384];
    size_t w  = (size_t)snprintf(json, sizeof(json), "{\"model\":{\"type\":\"BPE\",\"vocab\":{");
    int    id = 0;
    for (int c = 0x21; c < 0x7F; c++) {
        if (c == '"' || c == '\\')
            w += (size_t)snprintf(json + w, sizeof(json) - w, "\"\\%c\":%d,", c, id++);
        else
            w += (size_t)snprintf(json + w, sizeof(json) - w, "\"%c\":%d,", c, id++);
    }
    w += (size_t)snprintf(
        json + w, sizeof(json) - w,
        "\"\\u0120\":%d,\"\\u0120a\":%d,\"ab\":%d,\"\\u0120ab\":%d,\"\\u010a\":%d},"
        "\"merges\":[\"\\u0120 a\",\"a b\",\"\\u0120a b\"]},"
        "\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Digits\","
        "\"individual_digits\":true},{\"type\":\"ByteLevel\",\"add_prefix_space\":false,"
        "\"use_regex\":true}]}}",
        id, id + 1, id + 2, id + 3, id + 4);
    struct lmp_tokenizer *t   = NULL;
    struct lmp_err        err = {0};
    if (lmp_tokenizer_parse_hf(json, w, "bpe", &t, &err) != LMP_OK) {
        fprintf(stderr, "%s\n", err.msg);
        abort();
    }
    return t;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (spm == NULL) spm = make_spm(), bpe = make_bpe();
    int32_t *ids;
    int64_t  n;
    char    *out;
    size_t   len;
    if (lmp_tokenizer_encode(spm, (const char *)data, size, true, &ids, &n, NULL) != LMP_OK)
        abort();
    if (lmp_tokenizer_decode(spm, ids, n, &out, &len, NULL) != LMP_OK) abort();
    if (len != size || memcmp(out, data, size) != 0) abort();
    free(ids);
    free(out);
    bool ascii = true; /* printable ASCII, space and newline are all in the small vocab */
    for (size_t i = 0; i < size; i++)
        ascii &= (data[i] >= 0x20 && data[i] < 0x7F) || data[i] == '\n';
    if (lmp_tokenizer_encode(bpe, (const char *)data, size, false, &ids, &n, NULL) != LMP_OK)
        abort();
    if (lmp_tokenizer_decode(bpe, ids, n, &out, &len, NULL) != LMP_OK) abort();
    if (ascii && (len != size || memcmp(out, data, size) != 0)) abort();
    free(ids);
    free(out);
    return 0;
}
