/*  tokenizer_impl - internals shared by tokenizer.c, tokenizer_spm.c and tokenizer_bpe.c
 *
 *  A tokenizer holds its vocabulary twice: the token texts as the file stores them
 *  (U+2581 for spaces in SentencePiece files, GPT-2's byte-to-char mapping in
 *  byte-level BPE files), indexed by a hash map for encoding, and the bytes each
 *  token decodes to. Both live in single blobs addressed by (offset, length).
 *
 *  Encoding is one merge engine (tok_merge) over a linked list of symbols with a
 *  binary heap of candidate pairs: each step takes the best pair (lowest key, then
 *  leftmost), so the result equals the quadratic "rescan and merge the best pair"
 *  loops of the reference implementations, in O(n log n).
 */
#ifndef LMP_MODEL_TOKENIZER_IMPL_H
#define LMP_MODEL_TOKENIZER_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "model/tokenizer.h"

/* Token types, numbered as GGUF tokenizer.ggml.token_type (llama.cpp's llama_token_type). */
enum tok_type {
    TOK_TYPE_UNDEFINED    = 0,
    TOK_TYPE_NORMAL       = 1,
    TOK_TYPE_UNKNOWN      = 2,
    TOK_TYPE_CONTROL      = 3,
    TOK_TYPE_USER_DEFINED = 4,
    TOK_TYPE_UNUSED       = 5,
    TOK_TYPE_BYTE         = 6,
};

enum tok_flavor {
    TOK_FLAVOR_LLAMA2C, /* SPM merges over llama2.c tokenizer.bin ids (run.c encode) */
    TOK_FLAVOR_SPM,     /* SPM over U+2581-escaped text (GGUF "llama", llama.cpp) */
    TOK_FLAVOR_BPE,     /* byte-level BPE (GGUF "gpt2", tokenizer.json "BPE") */
};

/* Pre-tokenizers of byte-level BPE (regex splits implemented as scanners in tokenizer_bpe.c). */
enum tok_pretok {
    TOK_PRETOK_GPT2,   /* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
                        */
    TOK_PRETOK_SMOLLM, /* \p{N} (each digit alone), then GPT2 */
    TOK_PRETOK_LLAMA3, /* Llama-3 pattern: case-insensitive contractions, \p{N}{1,3}, ... */
    TOK_PRETOK_QWEN2,  /* Llama-3 pattern with single digits \p{N} */
    TOK_PRETOK_NONE,   /* whole text is one word (ByteLevel without regex) */
    TOK_PRETOK_PIPE,   /* tokenizer.json normalizer + pre_tokenizer through PCRE2 (pretok.h) */
    TOK_PRETOK_SP,     /* the pipe, over a SentencePiece vocabulary (sp_bpe) */
};

/* String -> id, open addressing; keys are spans of the tokenizer's text blob. */
struct tok_strmap {
    int32_t *slot; /* (cap) id or -1 */
    uint32_t cap;  /* power of two */
};

/* (left id, right id) -> merge rank and resulting id, open addressing. */
struct tok_pair {
    uint64_t key; /* (uint64) left << 32 | right; UINT64_MAX = empty */
    int32_t  rank;
    int32_t  id; /* id of the concatenation, or -1 when not in the vocabulary */
};
struct tok_pairmap {
    struct tok_pair *slot; /* (cap) */
    uint32_t         cap;  /* power of two */
};

struct lmp_tokenizer {
    enum lmp_tok_kind  kind;
    enum tok_flavor    flavor;
    enum tok_pretok    pretok;
    char               desc[160];
    int32_t            n_vocab;
    char              *text;             /* token texts as stored, concatenated */
    uint32_t          *text_off;         /* (n_vocab) */
    uint32_t          *text_len;         /* (n_vocab) bytes */
    char              *dec;              /* decoded bytes of every token, concatenated */
    uint32_t          *dec_off;          /* (n_vocab) */
    uint32_t          *dec_len;          /* (n_vocab) bytes */
    float             *score;            /* (n_vocab) SPM merge scores, or NULL */
    uint8_t           *type;             /* (n_vocab) enum tok_type */
    struct tok_strmap  vocab;            /* text -> id (first id wins for duplicate texts) */
    struct tok_pairmap merges;           /* BPE only */
    int32_t            bos, eos, unk;    /* -1 when absent */
    bool               add_space_prefix; /* prepend the dummy-prefix space (SPM; BPE:
                                            ByteLevel add_prefix_space) */
    bool ignore_merges;                  /* BPE: a word that is a token is taken whole */
    bool sp_bpe;           /* BPE over characters, not GPT-2 bytes (a SentencePiece vocabulary in a
                              tokenizer.json: Llama-2, Mistral, Gemma): unknown characters become
                              their <0xXX> byte tokens (byte_fallback) or unk */
    bool    fuse_unk;      /* sp_bpe: consecutive unknown characters give one unk */
    int32_t byte_tok[256]; /* token of each raw byte (fallback), or -1 */

    struct tok_pipe *pipe; /* TOK_PRETOK_PIPE: normalizer + pre_tokenizer (pretok.h), else NULL */
};

/* --- construction helpers (tokenizer.c) ---------------------------------------- */

/* Allocate a tokenizer for n_vocab tokens with empty blobs. NULL on out-of-memory. */
struct lmp_tokenizer *tok_alloc(int32_t n_vocab);
/* Set the stored text of every token from (ptr, len) pairs given by get(ctx, i).
 * RET LMP_OK or LMP_ENOMEM. */
typedef bool    tok_text_fn(void *ctx, int32_t i, const char **s, size_t *len);
enum lmp_status tok_set_texts(struct lmp_tokenizer *t, tok_text_fn *get, void *ctx);
/* Compute the decoded bytes of every token (by flavor and type) and build the vocab map. */
enum lmp_status tok_finish(struct lmp_tokenizer *t);

int32_t tok_lookup(const struct lmp_tokenizer *t, const char *s, size_t len);
/* Lookup of the concatenation a || b without building it. */
int32_t tok_lookup2(const struct lmp_tokenizer *t, const char *a, size_t na, const char *b,
                    size_t nb);
static inline const char *tok_text(const struct lmp_tokenizer *t, int32_t id, size_t *len) {
    *len = t->text_len[id];
    return t->text + t->text_off[id];
}

/* --- output buffer -------------------------------------------------------------- */
struct tok_ids {
    int32_t *v;
    int64_t  n, cap;
    bool     oom;
};
void tok_ids_push(struct tok_ids *o, int32_t id);

/* --- the merge engine ------------------------------------------------------------ */
struct tok_sym {
    int32_t  id;         /* token id, or -1 when the symbol's text is not a token */
    uint32_t start;      /* byte offset of the symbol's text in the word (flavor-specific) */
    uint32_t len;        /* bytes (or units); grows on every merge, 0 once merged away */
    int32_t  prev, next; /* neighbours, -1 at the ends */
};

/* Candidate pair l,r (adjacent): return true and set *key (lower merges first) and *id
 * (the merged token) if they may merge. */
typedef bool tok_pair_fn(const struct lmp_tokenizer *t, const char *word, const struct tok_sym *l,
                         const struct tok_sym *r, double *key, int32_t *id);

/* Merge syms[0..n) (linked in order) until no pair qualifies. Returns false on
 * out-of-memory. The surviving symbols are those with len > 0, in list order from 0. */
bool tok_merge(const struct lmp_tokenizer *t, const char *word, struct tok_sym *syms, int32_t n,
               tok_pair_fn *pair);

/* --- user-defined tokens ----------------------------------------------------------- */
/* One fragment of the input: raw text (id -1) or a user-defined token's occurrence. */
typedef enum lmp_status tok_frag_fn(void *ctx, const char *s, size_t len, int32_t id);
/* Cut text at user-defined tokens (llama.cpp's partition with parse_special = false) and
 * call fn on each fragment in order. RET LMP_OK, LMP_ENOMEM or fn's first failure. */
enum lmp_status tok_partition(const struct lmp_tokenizer *t, const char *text, size_t len,
                              tok_frag_fn *fn, void *ctx);

/* --- per-algorithm entry points ------------------------------------------------ */
/* Append the ids of text[0..len) to out, BOS first if add_bos and t->bos >= 0.
 * (llama2.c merges across the BOS token, so BOS is the algorithm's business.) */
enum lmp_status tok_spm_encode(const struct lmp_tokenizer *t, const char *text, size_t len,
                               bool add_bos, struct tok_ids *out);
enum lmp_status tok_bpe_encode(const struct lmp_tokenizer *t, const char *text, size_t len,
                               bool add_bos, struct tok_ids *out);
/* Vocabulary, token types, optionally scores, and BOS/EOS/UNK of a GGUF tokenizer. */
enum lmp_status tok_gguf_common(const struct lmp_gguf *g, struct lmp_tokenizer **out,
                                bool want_scores, struct lmp_err *err);
enum lmp_status tok_spm_from_gguf(const struct lmp_gguf *g, struct lmp_tokenizer **out,
                                  struct lmp_err *err);
enum lmp_status tok_bpe_from_gguf(const struct lmp_gguf *g, struct lmp_tokenizer **out,
                                  struct lmp_err *err);

#endif /* LMP_MODEL_TOKENIZER_IMPL_H */
