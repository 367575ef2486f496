/*  fuzz_tokenizer_bin - lmp_tokenizer_parse_llama2c on arbitrary bytes, then encode and
 *  decode a fixed string with whatever parsed (vocabulary size 270: 259 fixed + 11). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "model/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct lmp_tokenizer *t     = NULL;
    struct lmp_err        err   = {0};
    int32_t               vocab = size > 0 ? 1 + data[size - 1] % 2 * 269 : 270; /* 1 or 270 */
    if (lmp_tokenizer_parse_llama2c(data, size, vocab, "fuzz", &t, &err) != LMP_OK) return 0;
    static const char text[] = "Once upon a time \xC3\xA9\xF0\x9F\xA6\x99 \xff 12345";
    int32_t          *ids;
    int64_t           n;
    if (lmp_tokenizer_encode(t, text, sizeof(text) - 1, true, &ids, &n, &err) == LMP_OK) {
        char  *out;
        size_t len;
        if (lmp_tokenizer_decode(t, ids, n, &out, &len, &err) == LMP_OK) free(out);
        for (int64_t i = 0; i < n; i++) {
            size_t k;
            lmp_tokenizer_piece(t, i ? ids[i - 1] : 1, ids[i], &k);
        }
        free(ids);
    }
    lmp_tokenizer_free(&t);
    return 0;
}
