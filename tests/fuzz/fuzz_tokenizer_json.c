/*  fuzz_tokenizer_json - lmp_tokenizer_parse_hf on arbitrary text, then encode and decode
 *  a fixed string with whatever parsed. */
#include <stdint.h>
#include <stdlib.h>
#include "model/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct lmp_tokenizer *t   = NULL;
    struct lmp_err        err = {0};
    if (lmp_tokenizer_parse_hf((const char *)data, size, "fuzz", &t, &err) != LMP_OK) return 0;
    static const char text[] = "Hello world 123 don't  \n\n\tx \xF0\x9F\xA6\x99<s>ab \xff";
    int32_t          *ids;
    int64_t           n;
    if (lmp_tokenizer_encode(t, text, sizeof(text) - 1, true, &ids, &n, &err) == LMP_OK) {
        char  *out;
        size_t len;
        if (lmp_tokenizer_decode(t, ids, n, &out, &len, &err) == LMP_OK) free(out);
        free(ids);
    }
    lmp_tokenizer_free(&t);
    return 0;
}
