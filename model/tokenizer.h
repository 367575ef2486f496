/*  tokenizer - text <-> token ids for every model lmpress reads
 *
 *  Two algorithms behind one interface:
 *   - SPM: SentencePiece-style BPE by merge score with byte fallback, as llama2.c's
 *     tokenizer.bin and GGUF tokenizer.ggml.model = "llama" (dummy-prefix space,
 *     spaces as U+2581 for GGUF, <0xNN> byte tokens).
 *   - BPE: GPT-2 byte-level BPE with ranked merges and a regex pre-tokenizer, as GGUF
 *     tokenizer.ggml.model = "gpt2" (pre-tokenizer named by tokenizer.ggml.pre, e.g.
 *     "smollm") and Hugging Face tokenizer.json (model.type = "BPE").
 *  Encodings match the reference implementations byte for byte (tests pin them).
 *  A tokenizer is immutable after load; encode/decode are thread-safe.
 */
#ifndef LMP_MODEL_TOKENIZER_H
#define LMP_MODEL_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "base/status.h" /* defines: enum lmp_status, struct lmp_err */

struct lmp_tokenizer;
struct lmp_gguf;
struct lmp_model;

enum lmp_tok_kind { LMP_TOK_SPM, LMP_TOK_BPE };

/* llama2.c tokenizer.bin with vocab_size entries. */
enum lmp_status lmp_tokenizer_load_llama2c(const char *path, int32_t vocab_size,
                                           struct lmp_tokenizer **out, struct lmp_err *err);
/* Parse a tokenizer.bin image in memory (borrowed for the call). For the fuzz target. */
enum lmp_status lmp_tokenizer_parse_llama2c(const uint8_t *data, size_t size, int32_t vocab_size,
                                            const char *name, struct lmp_tokenizer **out,
                                            struct lmp_err *err);
/* Hugging Face tokenizer.json (BPE models). */
enum lmp_status lmp_tokenizer_load_hf(const char *path, struct lmp_tokenizer **out,
                                      struct lmp_err *err);
/* Parse a tokenizer.json text in memory (borrowed for the call). For the fuzz target. */
enum lmp_status lmp_tokenizer_parse_hf(const char *json, size_t len, const char *name,
                                       struct lmp_tokenizer **out, struct lmp_err *err);
/* The tokenizer embedded in a GGUF file's metadata. */
enum lmp_status lmp_tokenizer_from_gguf(const struct lmp_gguf *g, struct lmp_tokenizer **out,
                                        struct lmp_err *err);

/* The tokenizer for a model: path if given (tokenizer.bin, tokenizer.json, or a directory
 * holding tokenizer.json), else the model's own (GGUF metadata; tokenizer.json beside a HF
 * checkpoint; tokenizer.bin beside a llama2.c checkpoint). With a model, a tokenizer with
 * more tokens than the model's vocab_size is LMP_EMISMATCH (a llama2.c tokenizer.bin with
 * bytes after vocab_size tokens is one). */
enum lmp_status lmp_tokenizer_open(const char *path, const struct lmp_model *m,
                                   struct lmp_tokenizer **out, struct lmp_err *err);

void lmp_tokenizer_free(struct lmp_tokenizer **t);

enum lmp_tok_kind lmp_tokenizer_kind(const struct lmp_tokenizer *t);
const char *
lmp_tokenizer_describe(const struct lmp_tokenizer *t); /* "gpt2 bpe (smollm), 49152 tokens" */
int32_t lmp_tokenizer_n_vocab(const struct lmp_tokenizer *t);
/* The BOS id the tokenizer prepends when asked to (llama2.c: 1; GGUF: bos_token_id when
 * tokenizer.ggml.add_bos_token says so; tokenizer.json: the post-processor's template), or -1
 * when this tokenizer adds none (SmolLM2). */
int32_t lmp_tokenizer_bos(const struct lmp_tokenizer *t);
int32_t lmp_tokenizer_eos(const struct lmp_tokenizer *t); /* -1 if none */

/* Encode text[0..len) (UTF-8; invalid bytes go through byte fallback / byte-level BPE),
 * BOS first if add_bos and the tokenizer has one. *ids is malloc'ed, owned by the caller.
 * Linear-ish time: a whole WikiText-2 (1.3 MB) encodes in well under a second. */
enum lmp_status lmp_tokenizer_encode(const struct lmp_tokenizer *t, const char *text, size_t len,
                                     bool add_bos, int32_t **ids, int64_t *n_ids,
                                     struct lmp_err *err);

/* The bytes token id stands for when it follows prev (prev matters for SPM: the
 * dummy-prefix space is dropped after BOS). Special/control tokens give "".
 * Pointer valid while t lives. */
const char *lmp_tokenizer_piece(const struct lmp_tokenizer *t, int32_t prev, int32_t id,
                                size_t *len);

/* Decode a whole sequence into a malloc'ed NUL-terminated string. */
enum lmp_status lmp_tokenizer_decode(const struct lmp_tokenizer *t, const int32_t *ids, int64_t n,
                                     char **out, size_t *len, struct lmp_err *err);

#endif /* LMP_MODEL_TOKENIZER_H */
