/*  pretok - tokenizer.json normalizers and pre-tokenizers as the file declares them
 *
 *  A pipe is the normalizer and the pre_tokenizer of a Hugging Face tokenizer.json,
 *  compiled once per tokenizer: every regex (Split patterns, Replace patterns, the GPT-2
 *  pattern of ByteLevel, \p{N} of Digits) is a PCRE2 pattern compiled with PCRE2_UTF |
 *  PCRE2_UCP and JIT where available; NFC/NFD/NFKC/NFKD come from utf8proc. Running a
 *  pipe on a text normalizes it, then refines one piece (the whole text) into words step by
 *  step, as the tokenizers library's PreTokenizedString does: each step sees every current
 *  piece as a string of its own (a lookahead stops at the piece's end), empty pieces
 *  vanish.
 *
 *  Supported (anything else is refused, naming the file and the type):
 *    pre_tokenizer: Sequence, Split (pattern String or Regex; behavior Isolated, Removed,
 *      MergedWithPrevious, MergedWithNext, Contiguous; invert), ByteLevel (add_prefix_space,
 *      use_regex), Metaspace (replacement, prepend_scheme or add_prefix_space, split), Digits
 *      (individual_digits), Whitespace, WhitespaceSplit
 *    normalizer: Sequence, Prepend, Replace (String or Regex), Lowercase, Strip, NFC, NFD,
 *      NFKC, NFKD
 *  A pipe is immutable once built; running it is thread-safe (scratch is per call).
 */
#ifndef LMP_MODEL_PRETOK_H
#define LMP_MODEL_PRETOK_H

#include <stdbool.h>
#include <stddef.h>
#include "base/status.h"          /* defines: enum lmp_status, struct lmp_err */
#include "model/tokenizer_impl.h" /* defines: enum tok_pretok */

struct tok_pipe;
struct cJSON;

/* Build the pipe of a tokenizer.json from its "normalizer" and "pre_tokenizer" objects
 * (either may be NULL or JSON null: no step). name is the file, for messages. *byte_level
 * tells whether a ByteLevel pre-tokenizer step is present (the vocabulary is then GPT-2
 * byte chars). RET LMP_OK, LMP_EUNSUP (a type or option not supported), LMP_EFORMAT (a
 * malformed step or a regex PCRE2 rejects) or LMP_ENOMEM, each with a one-line message. */
enum lmp_status tok_pipe_from_json(const struct cJSON *normalizer, const struct cJSON *pre,
                                   const char *name, struct tok_pipe **out, bool *byte_level,
                                   struct lmp_err *err);

/* A pipe of Isolated regex splits, in order (llama.cpp's regex_exprs for a GGUF
 * tokenizer.ggml.pre). */
enum lmp_status tok_pipe_from_regexes(const char *const *regexes, int n, const char *name,
                                      struct tok_pipe **out, struct lmp_err *err);

void tok_pipe_free(struct tok_pipe **p);

/* One word of the output: s[0..len), borrowed for the call. */
typedef enum lmp_status tok_piece_fn(void *ctx, const char *s, size_t len);

/* Normalize and pre-tokenize text[0..len) (valid UTF-8) and hand every non-empty word to fn
 * in order. RET LMP_OK, LMP_ENOMEM, LMP_EINVAL (a regex engine failure) or fn's first
 * failure. */
enum lmp_status tok_pipe_run(const struct tok_pipe *p, const char *text, size_t len,
                             tok_piece_fn *fn, void *ctx);
/* The same for a part of a longer input (the text between two added tokens): at_start says
 * whether it begins the input, which Metaspace's prepend_scheme "first" looks at. */
enum lmp_status tok_pipe_run_at(const struct tok_pipe *p, const char *text, size_t len,
                                bool at_start, tok_piece_fn *fn, void *ctx);

/* The hand-written scanner of kind (tokenizer_bpe.c) on text[0..len) (valid UTF-8), words
 * handed to fn as byte ranges: to compare the scanners with their PCRE2 patterns. */
enum lmp_status tok_bpe_scan(enum tok_pretok kind, const char *text, size_t len, tok_piece_fn *fn,
                             void *ctx);

#endif /* LMP_MODEL_PRETOK_H */
