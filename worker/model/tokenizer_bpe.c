/*  tokenizer_bpe - byte-level BPE (placeholder) */
#include "worker/model/tokenizer.h"
#include "worker/model/tokenizer_impl.h"

enum lmp_status tok_bpe_encode(const struct lmp_tokenizer *t, const char *text, size_t len,
                               bool add_bos, struct tok_ids *out) {
    return LMP_EUNSUP;
}
enum lmp_status tok_bpe_from_gguf(const struct lmp_gguf *g, struct lmp_tokenizer **out,
                                  struct lmp_err *err) {
    return lmp_err_set(err, LMP_EUNSUP, "gpt2 tokenizers are not supported yet");
}
enum lmp_status lmp_tokenizer_load_hf(const char *path, struct lmp_tokenizer **out,
                                      struct lmp_err *err) {
    *out = NULL;
    return lmp_err_set(err, LMP_EUNSUP, "tokenizer.json is not supported yet");
}
enum lmp_status lmp_tokenizer_parse_hf(const char *json, size_t len, const char *name,
                                       struct lmp_tokenizer **out, struct lmp_err *err) {
    *out = NULL;
    return lmp_err_set(err, LMP_EUNSUP, "tokenizer.json is not supported yet");
}
