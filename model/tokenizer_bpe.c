/*  tokenizer_bpe - GPT-2 style byte-level BPE: regex pre-tokenizer, ranked merges
 *
 *  Encoding follows llama.cpp's BPE session: user-defined tokens are cut out first
 *  (tok_partition), the text is decoded to codepoints (an invalid UTF-8 byte becomes
 *  U+FFFD, as in llama.cpp), split into words by the pre-tokenizer, and each word's
 *  bytes start as one symbol each (GPT-2's byte-to-char mapping gives the token);
 *  adjacent pairs merge by lowest rank, leftmost first. A final symbol that is not a
 *  token falls back to its single-byte tokens.
 *
 *  The pre-tokenizer regexes are hand-written scanners (same structure as llama.cpp's
 *  unicode_regex_split_custom_*), selected by GGUF tokenizer.ggml.pre or by the
 *  pre_tokenizer of a tokenizer.json:
 *    gpt2   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *    smollm \p{N} first (every digit alone), then gpt2 inside each piece
 *    llama3 (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
 *           ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 *    qwen2  llama3 with \p{N} (single digits)
 *  Any other tokenizer.json pre_tokenizer, and any normalizer, runs as the file declares
 *  it through PCRE2 (pretok.h); so does a GGUF tokenizer.ggml.pre that llama.cpp knows by
 *  its regexes but the scanners do not cover. The scanners stay the fast path, and a test
 *  (tests/unit/test_pretok.c) checks they split like PCRE2 runs of their patterns.
 */
#include "model/tokenizer.h"
#include "model/tokenizer_impl.h"
#include "model/gguf.h"    /* defines: lmp_gguf_arr_str() */
#include "model/pretok.h"  /* defines: tok_pipe_from_json(), tok_pipe_run() */
#include "model/unicode.h" /* defines: lmp_utf8_decode(), lmp_unicode_class() */
#include "base/file.h"     /* defines: lmp_file_read_all() */

#include <assert.h>
#include <ctype.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- merges -------------------------------------------------------------------- */

static uint64_t pair_hash(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

static enum lmp_status pairmap_init(struct tok_pairmap *m, int64_t n) {
    m->cap = 16;
    while (m->cap < (uint64_t)n * 2) m->cap <<= 1;
    m->slot = malloc((size_t)m->cap * sizeof(*m->slot));
    if (m->slot == NULL) return LMP_ENOMEM;
    for (uint32_t i = 0; i < m->cap; i++) m->slot[i].key = UINT64_MAX;
    return LMP_OK;
}

/* Insert (a, b) with rank unless present (the first, lowest rank wins, as llama.cpp). */
static void pairmap_add(struct tok_pairmap *m, int32_t a, int32_t b, int32_t rank, int32_t id) {
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    for (uint32_t i = (uint32_t)pair_hash(key) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (m->slot[i].key == key) return;
        if (m->slot[i].key == UINT64_MAX) {
            m->slot[i] = (struct tok_pair){key, rank, id};
            return;
        }
    }
}

static const struct tok_pair *pairmap_get(const struct tok_pairmap *m, int32_t a, int32_t b) {
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    for (uint32_t i = (uint32_t)pair_hash(key) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (m->slot[i].key == key) return &m->slot[i];
        if (m->slot[i].key == UINT64_MAX) return NULL;
    }
}

/* Add merge "a b" (split at the first space after the first byte, as llama.cpp). */
static bool add_merge_str(struct lmp_tokenizer *t, const char *s, size_t n, int32_t rank) {
    const char *sp = n > 1 ? memchr(s + 1, ' ', n - 1) : NULL;
    if (sp == NULL) return false;
    size_t  na = (size_t)(sp - s), nb = n - na - 1;
    int32_t a = tok_lookup(t, s, na), b = tok_lookup(t, sp + 1, nb);
    if (a >= 0 && b >= 0) pairmap_add(&t->merges, a, b, rank, tok_lookup2(t, s, na, sp + 1, nb));
    return true;
}

/* --- the pre-tokenizer scanners ----------------------------------------------------- */

enum { F_LETTER = 1, F_NUMBER = 2, F_SPACE = 4, F_IN = 8 };

struct scan {
    const uint32_t *cp;     /* (n) codepoints of the fragment */
    const uint8_t  *fl;     /* (n) F_* flags */
    int64_t         lo, hi; /* the piece being split: [lo, hi) */
};

static uint8_t flags_at(const struct scan *s, int64_t i) {
    return (i >= s->lo && i < s->hi) ? s->fl[i] : 0;
}
static uint32_t cp_at(const struct scan *s, int64_t i) {
    return (i >= s->lo && i < s->hi) ? s->cp[i] : 0xFFFFFFFFu;
}

typedef enum lmp_status word_fn(void *ctx, int64_t a, int64_t b); /* codepoints [a, b) */

static bool is_other(uint8_t f) {
    return (f & F_IN) && !(f & (F_SPACE | F_LETTER | F_NUMBER));
}

static enum lmp_status scan_gpt2(const struct scan *s, word_fn *emit, void *ctx) {
    enum lmp_status st = LMP_OK;
    for (int64_t pos = s->lo; pos < s->hi && st == LMP_OK;) {
        int64_t  start = pos;
        uint32_t c     = s->cp[pos];
        uint8_t  f     = s->fl[pos];
        if (c == '\'' && pos + 1 < s->hi) { /* 's|'t|'re|'ve|'m|'ll|'d */
            uint32_t n1 = cp_at(s, pos + 1), n2 = cp_at(s, pos + 2);
            if (n1 == 's' || n1 == 't' || n1 == 'm' || n1 == 'd') {
                st = emit(ctx, start, pos + 2);
                pos += 2;
                continue;
            }
            if ((n1 == 'r' && n2 == 'e') || (n1 == 'v' && n2 == 'e') || (n1 == 'l' && n2 == 'l')) {
                st = emit(ctx, start, pos + 3);
                pos += 3;
                continue;
            }
        }
        uint8_t f2 = c == ' ' ? flags_at(s, pos + 1) : f;
        if (f2 & (F_LETTER | F_NUMBER)) { /*  ?\p{L}+ |  ?\p{N}+ */
            uint8_t want = f2 & F_LETTER ? F_LETTER : F_NUMBER;
            pos += c == ' ';
            while (flags_at(s, pos) & want) pos++;
            st = emit(ctx, start, pos);
            continue;
        }
        if (is_other(f2)) { /*  ?[^\s\p{L}\p{N}]+ */
            pos += c == ' ';
            while (is_other(flags_at(s, pos))) pos++;
            st = emit(ctx, start, pos);
            continue;
        }
        int64_t n_ws = 0;
        while (flags_at(s, pos + n_ws) & F_SPACE) n_ws++;
        if (n_ws > 1 && pos + n_ws < s->hi)
            pos += n_ws - 1; /* \s+(?!\S) */
        else if (n_ws > 0)
            pos += n_ws; /* \s+ */
        else
            pos++; /* no match: one codepoint */
        st = emit(ctx, start, pos);
    }
    return st;
}

static uint32_t ascii_lower(uint32_t c) {
    return (c >= 'A' && c <= 'Z') ? c + 32 : c;
}

static enum lmp_status scan_llama3(const struct scan *s, int max_digits, word_fn *emit, void *ctx) {
    enum lmp_status st = LMP_OK;
    for (int64_t pos = s->lo; pos < s->hi && st == LMP_OK;) {
        int64_t  start = pos;
        uint32_t c     = s->cp[pos];
        uint8_t  f     = s->fl[pos];
        if (c == '\'' && pos + 1 < s->hi) { /* (?i:'s|'t|...) */
            uint32_t n1 = ascii_lower(cp_at(s, pos + 1)), n2 = ascii_lower(cp_at(s, pos + 2));
            if (n1 == 's' || n1 == 't' || n1 == 'm' || n1 == 'd') {
                st = emit(ctx, start, pos + 2);
                pos += 2;
                continue;
            }
            if ((n1 == 'r' && n2 == 'e') || (n1 == 'v' && n2 == 'e') || (n1 == 'l' && n2 == 'l')) {
                st = emit(ctx, start, pos + 3);
                pos += 3;
                continue;
            }
        }
        if (!(c == '\r' || c == '\n' || (f & F_NUMBER)) && /* [^\r\n\p{L}\p{N}]?\p{L}+ */
            ((f & F_LETTER) || (flags_at(s, pos + 1) & F_LETTER))) {
            pos++;
            while (flags_at(s, pos) & F_LETTER) pos++;
            st = emit(ctx, start, pos);
            continue;
        }
        if (f & F_NUMBER) { /* \p{N}{1,max_digits} */
            int64_t ini = pos;
            while ((flags_at(s, pos) & F_NUMBER) && st == LMP_OK) {
                if (++pos - ini >= max_digits) {
                    st  = emit(ctx, ini, pos);
                    ini = pos;
                }
            }
            if (pos > ini && st == LMP_OK) st = emit(ctx, ini, pos);
            continue;
        }
        uint8_t f2 = c == ' ' ? flags_at(s, pos + 1) : f;
        if (is_other(f2)) { /*  ?[^\s\p{L}\p{N}]+[\r\n]* */
            pos += c == ' ';
            while (is_other(flags_at(s, pos))) pos++;
            while (cp_at(s, pos) == '\r' || cp_at(s, pos) == '\n') pos++;
            st = emit(ctx, start, pos);
            continue;
        }
        int64_t n_ws = 0, last_rn = -1;
        while (flags_at(s, pos + n_ws) & F_SPACE) {
            uint32_t c2 = s->cp[pos + n_ws];
            if (c2 == '\r' || c2 == '\n') last_rn = pos + n_ws + 1;
            n_ws++;
        }
        if (last_rn > 0)
            pos = last_rn; /* \s*[\r\n]+ */
        else if (n_ws > 1 && pos + n_ws < s->hi)
            pos += n_ws - 1; /* \s+(?!\S) */
        else if (n_ws > 0)
            pos += n_ws; /* \s+ */
        else
            pos++;
        st = emit(ctx, start, pos);
    }
    return st;
}

static enum lmp_status pretokenize(enum tok_pretok kind, const uint32_t *cp, const uint8_t *fl,
                                   int64_t n, word_fn *emit, void *ctx) {
    struct scan s = {cp, fl, 0, n};
    switch (kind) {
    case TOK_PRETOK_GPT2:
        return scan_gpt2(&s, emit, ctx);
    case TOK_PRETOK_LLAMA3:
        return scan_llama3(&s, 3, emit, ctx);
    case TOK_PRETOK_QWEN2:
        return scan_llama3(&s, 1, emit, ctx);
    case TOK_PRETOK_NONE:
        return n ? emit(ctx, 0, n) : LMP_OK;
    case TOK_PRETOK_PIPE:
    case TOK_PRETOK_SP:
        return LMP_EINVAL; /* not a scanner */
    case TOK_PRETOK_SMOLLM: {
        /* \p{N} splits the text into single digits and the runs between them; gpt2
         * then splits each run on its own (its lookahead stops at the run's end) */
        enum lmp_status st = LMP_OK;
        for (int64_t i = 0; i < n && st == LMP_OK;) {
            int64_t j = i + 1;
            if (!(fl[i] & F_NUMBER))
                while (j < n && !(fl[j] & F_NUMBER)) j++;
            s.lo = i;
            s.hi = j;
            st   = scan_gpt2(&s, emit, ctx);
            i    = j;
        }
        return st;
    }
    }
    return LMP_EINVAL;
}

/* The F_* flags of each codepoint. */
static void classify(const uint32_t *cp, uint8_t *fl, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        enum lmp_uclass k = lmp_unicode_class(cp[i]);
        fl[i]             = (uint8_t)(F_IN | (k == LMP_UCLASS_LETTER ? F_LETTER : 0) |
                          (k == LMP_UCLASS_NUMBER ? F_NUMBER : 0) |
                          (lmp_unicode_is_space(cp[i]) ? F_SPACE : 0));
    }
}

struct scan_ctx {
    const char   *text;
    const size_t *off; /* (n + 1) byte offset of each codepoint */
    tok_piece_fn *fn;
    void         *ctx;
};

static enum lmp_status scan_word(void *vctx, int64_t a, int64_t b) {
    struct scan_ctx *c = vctx;
    return c->fn(c->ctx, c->text + c->off[a], c->off[b] - c->off[a]);
}

enum lmp_status tok_bpe_scan(enum tok_pretok kind, const char *text, size_t len, tok_piece_fn *fn,
                             void *ctx) {
    assert((text || len == 0) && fn);
    uint32_t       *cp  = malloc(len * sizeof(*cp) + 1);
    uint8_t        *fl  = malloc(len + 1);
    size_t         *off = malloc((len + 1) * sizeof(*off));
    enum lmp_status st  = LMP_ENOMEM;
    if (cp != NULL && fl != NULL && off != NULL) {
        int64_t n = 0;
        for (size_t i = 0; i < len; n++) {
            off[n] = i;
            i += (size_t)lmp_utf8_decode((const uint8_t *)text + i, len - i, &cp[n]);
        }
        off[n] = len;
        classify(cp, fl, n);
        struct scan_ctx c = {text, off, fn, ctx};
        st                = pretokenize(kind, cp, fl, n, scan_word, &c);
    }
    free(cp);
    free(fl);
    free(off);
    return st;
}

/* --- encoding ------------------------------------------------------------------ */

struct bpe_ctx {
    const struct lmp_tokenizer *t;
    const char                 *text; /* the whole input: a fragment at text begins it */
    struct tok_ids             *out;
    char                       *u8;   /* the fragment re-encoded (invalid bytes -> U+FFFD) */
    int64_t                    *off;  /* (n_cp + 1) byte offset of each codepoint in u8 */
    struct tok_sym             *syms; /* scratch, one per byte of the longest word */
    int64_t                     syms_cap;
    char                       *mapped; /* scratch: a word in GPT-2 byte chars */
    size_t                      mapped_cap;
};

static bool bpe_pair(const struct lmp_tokenizer *t, const char *word, const struct tok_sym *l,
                     const struct tok_sym *r, double *key, int32_t *id) {
    if (l->id < 0 || r->id < 0) return false;
    const struct tok_pair *p = pairmap_get(&t->merges, l->id, r->id);
    if (p == NULL) return false;
    *key = p->rank;
    *id  = p->id;
    return true;
}

/* Token of byte b as a GPT-2 char (precomputable, but cheap). */
static int32_t byte_char_token(const struct lmp_tokenizer *t, uint8_t b) {
    return t->byte_tok[b];
}

/* BPE of one word w[0..n) (bytes). */
static enum lmp_status bpe_bytes(struct bpe_ctx *c, const char *w, int64_t n) {
    const struct lmp_tokenizer *t = c->t;
    if (n <= 0) return LMP_OK;
    if (t->ignore_merges) { /* a word that is a token is taken whole (Llama-3) */
        if ((size_t)n * 2 > c->mapped_cap) {
            char *m = realloc(c->mapped, (size_t)n * 2);
            if (m == NULL) return LMP_ENOMEM;
            c->mapped     = m;
            c->mapped_cap = (size_t)n * 2;
        }
        size_t k = 0;
        for (int64_t i = 0; i < n; i++)
            k += (size_t)lmp_utf8_encode(lmp_gpt2_byte_to_char((uint8_t)w[i]), c->mapped + k);
        int32_t id = tok_lookup(t, c->mapped, k);
        if (id >= 0) {
            tok_ids_push(c->out, id);
            return LMP_OK;
        }
    }
    if (n > c->syms_cap) {
        struct tok_sym *s = realloc(c->syms, (size_t)n * sizeof(*s));
        if (s == NULL) return LMP_ENOMEM;
        c->syms     = s;
        c->syms_cap = n;
    }
    for (int64_t i = 0; i < n; i++)
        c->syms[i] = (struct tok_sym){byte_char_token(t, (uint8_t)w[i]), (uint32_t)i, 1,
                                      (int32_t)i - 1, i + 1 < n ? (int32_t)i + 1 : -1};
    if (n > 1 && !tok_merge(t, w, c->syms, (int32_t)n, bpe_pair)) return LMP_ENOMEM;
    for (int32_t i = 0; i >= 0; i = c->syms[i].next) {
        const struct tok_sym *s = &c->syms[i];
        if (s->id >= 0) {
            tok_ids_push(c->out, s->id);
            continue;
        }
        for (uint32_t k = 0; k < s->len; k++) { /* not a token: its bytes' tokens */
            int32_t id = byte_char_token(t, (uint8_t)w[s->start + k]);
            if (id >= 0) tok_ids_push(c->out, id);
        }
    }
    return LMP_OK;
}

static enum lmp_status bpe_word(void *vctx, int64_t a, int64_t b) { /* codepoints [a, b) */
    struct bpe_ctx *c = vctx;
    return bpe_bytes(c, c->u8 + c->off[a], c->off[b] - c->off[a]);
}

/* BPE of one word of a SentencePiece vocabulary (t->sp_bpe): the symbols are its UTF-8
 * characters, merged by rank as in bpe_bytes; a character that is not a token gives its
 * bytes' <0xXX> tokens, or unk (once for a run of them with fuse_unk), as the tokenizers
 * library's BPE with byte_fallback does. */
static enum lmp_status sp_chars(struct bpe_ctx *c, const char *w, int64_t n) {
    const struct lmp_tokenizer *t = c->t;
    if (n <= 0) return LMP_OK;
    if (n > c->syms_cap) {
        struct tok_sym *s = realloc(c->syms, (size_t)n * sizeof(*s));
        if (s == NULL) return LMP_ENOMEM;
        c->syms     = s;
        c->syms_cap = n;
    }
    int32_t m = 0;
    for (int64_t i = 0; i < n;) {
        uint32_t cp;
        int      k = lmp_utf8_decode((const uint8_t *)w + i, (size_t)(n - i), &cp);
        c->syms[m] =
            (struct tok_sym){tok_lookup(t, w + i, (size_t)k), (uint32_t)i, (uint32_t)k, m - 1, -1};
        if (m > 0) c->syms[m - 1].next = m;
        m++;
        i += k;
    }
    if (m > 1 && !tok_merge(t, w, c->syms, m, bpe_pair)) return LMP_ENOMEM;
    bool last_unk = false;
    for (int32_t i = 0; i >= 0; i = c->syms[i].next) {
        const struct tok_sym *s = &c->syms[i];
        if (s->id >= 0) {
            tok_ids_push(c->out, s->id);
            last_unk = false;
            continue;
        }
        bool bytes = true;
        for (uint32_t k = 0; k < s->len && bytes; k++)
            bytes = t->byte_tok[(uint8_t)w[s->start + k]] >= 0;
        if (bytes) {
            for (uint32_t k = 0; k < s->len; k++)
                tok_ids_push(c->out, t->byte_tok[(uint8_t)w[s->start + k]]);
            last_unk = false;
        } else if (t->unk >= 0 && !(t->fuse_unk && last_unk)) {
            tok_ids_push(c->out, t->unk);
            last_unk = true;
        }
    }
    return LMP_OK;
}

static enum lmp_status bpe_piece(void *vctx, const char *s, size_t len) {
    struct bpe_ctx *c = vctx;
    return c->t->sp_bpe ? sp_chars(c, s, (int64_t)len) : bpe_bytes(c, s, (int64_t)len);
}

static enum lmp_status bpe_fragment(void *vctx, const char *s, size_t len, int32_t id) {
    struct bpe_ctx             *c = vctx;
    const struct lmp_tokenizer *t = c->t;
    if (id >= 0) {
        tok_ids_push(c->out, id);
        return LMP_OK;
    }
    /* the pipe prepends ByteLevel's space itself (to every piece, as tokenizers does) */
    bool      pre   = t->pipe == NULL && t->add_space_prefix && !(len > 0 && s[0] == ' ');
    size_t    n_max = len + pre;
    uint32_t *cp    = malloc(n_max * sizeof(*cp) + 1);
    uint8_t  *fl    = malloc(n_max + 1);
    free(c->u8);
    free(c->off);
    c->u8              = malloc(3 * n_max + 1);
    c->off             = malloc((n_max + 1) * sizeof(*c->off));
    enum lmp_status st = LMP_ENOMEM;
    if (cp == NULL || fl == NULL || c->u8 == NULL || c->off == NULL) goto out;
    int64_t n = 0, w = 0;
    if (pre) {
        cp[n]       = ' ';
        c->off[n++] = w;
        c->u8[w++]  = ' ';
    }
    for (size_t i = 0; i < len;) {
        uint32_t u;
        i += (size_t)lmp_utf8_decode((const uint8_t *)s + i, len - i, &u);
        if (u >= 0xD800 && u <= 0xDFFF && t->pipe != NULL) u = 0xFFFD; /* PCRE2 wants UTF-8 */
        cp[n]       = u;
        c->off[n++] = w;
        w += lmp_utf8_encode(u, c->u8 + w);
    }
    c->off[n] = w;
    if (t->pipe != NULL) {
        st = tok_pipe_run_at(t->pipe, c->u8, (size_t)w, s == c->text, bpe_piece, c);
        goto out;
    }
    classify(cp, fl, n);
    st = pretokenize(t->pretok, cp, fl, n, bpe_word, c);
out:
    free(cp);
    free(fl);
    return st;
}

enum lmp_status tok_bpe_encode(const struct lmp_tokenizer *t, const char *text, size_t len,
                               bool add_bos, struct tok_ids *out) {
    if (add_bos && t->bos >= 0) tok_ids_push(out, t->bos);
    struct bpe_ctx  c  = {.t = t, .text = text, .out = out};
    enum lmp_status st = tok_partition(t, text, len, bpe_fragment, &c);
    free(c.u8);
    free(c.off);
    free(c.syms);
    free(c.mapped);
    return st;
}

/* Byte tokens (GPT-2 chars) and a description; after the vocab map exists. */
static void bpe_finish_bytes(struct lmp_tokenizer *t) {
    for (int b = 0; b < 256; b++) {
        char s[4];
        int  k         = lmp_utf8_encode(lmp_gpt2_byte_to_char((uint8_t)b), s);
        t->byte_tok[b] = tok_lookup(t, s, (size_t)k);
    }
}

static const char *pretok_name(enum tok_pretok p) {
    switch (p) {
    case TOK_PRETOK_GPT2:
        return "gpt2";
    case TOK_PRETOK_SMOLLM:
        return "smollm";
    case TOK_PRETOK_LLAMA3:
        return "llama3";
    case TOK_PRETOK_QWEN2:
        return "qwen2";
    case TOK_PRETOK_NONE:
        return "none";
    case TOK_PRETOK_PIPE:
        return "pcre2";
    case TOK_PRETOK_SP:
        return "sentencepiece, pcre2";
    }
    return "?";
}

/* --- GGUF "gpt2" --------------------------------------------------------------- */

/* llama.cpp's GPT-2 list (no final \s+: what no alternative matches stays a piece anyway) */
#define RE_GPT2         "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"
#define RE_CONTRACTIONS "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
#define RE_GPT4O                                                                                   \
    "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+" RE_CONTRACTIONS         \
    "?|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*" RE_CONTRACTIONS       \
    "?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_BLOOM " ?[^(\\s|.,!?\\x{2026}\\x{3002}\\x{FF0C}\\x{3001}\\x{0964}\\x{06D4}\\x{060C})]+"

/* tokenizer.ggml.pre names as llama.cpp (src/llama-vocab.cpp) reads them: first the scanners'
 * own names and the names llama.cpp gives the same regexes, then names whose regex lists
 * (llama.cpp's data, escaped for PCRE2) run through PCRE2 as Isolated splits in order. */
struct gguf_pre {
    const char     *name;
    enum tok_pretok p;
    bool            ignore_merges;
    const char     *re[5]; /* TOK_PRETOK_PIPE, NULL-terminated */
};
static const struct gguf_pre gguf_pres[] = {
    {"gpt2", TOK_PRETOK_GPT2, false, {NULL}},
    {"gpt-2", TOK_PRETOK_GPT2, false, {NULL}},
    {"smollm", TOK_PRETOK_SMOLLM, false, {NULL}},
    {"starcoder", TOK_PRETOK_SMOLLM, false, {NULL}},
    {"llama3", TOK_PRETOK_LLAMA3, true, {NULL}},
    {"llama-bpe", TOK_PRETOK_LLAMA3, true, {NULL}},
    {"qwen2", TOK_PRETOK_QWEN2, false, {NULL}},
    /* llama.cpp's other names for the scanners' regexes */
    {"mpt", TOK_PRETOK_GPT2, false, {NULL}},
    {"olmo", TOK_PRETOK_GPT2, false, {NULL}},
    {"jais", TOK_PRETOK_GPT2, false, {NULL}},
    {"phi-2", TOK_PRETOK_GPT2, false, {NULL}},
    {"roberta-bpe", TOK_PRETOK_GPT2, false, {NULL}},
    {"exaone4", TOK_PRETOK_GPT2, false, {NULL}},
    {"refact", TOK_PRETOK_SMOLLM, false, {NULL}},
    {"command-r", TOK_PRETOK_SMOLLM, false, {NULL}},
    {"codeshell", TOK_PRETOK_SMOLLM, false, {NULL}},
    {"exaone", TOK_PRETOK_SMOLLM, false, {NULL}},
    {"minerva-7b", TOK_PRETOK_SMOLLM, false, {NULL}},
    {"llama-v3", TOK_PRETOK_LLAMA3, true, {NULL}},
    {"falcon3", TOK_PRETOK_LLAMA3, true, {NULL}},
    {"pixtral", TOK_PRETOK_LLAMA3, true, {NULL}},
    {"dbrx", TOK_PRETOK_LLAMA3, false, {NULL}},
    {"smaug-bpe", TOK_PRETOK_LLAMA3, false, {NULL}},
    {"chatglm-bpe", TOK_PRETOK_LLAMA3, false, {NULL}},
    {"glm4", TOK_PRETOK_LLAMA3, false, {NULL}},
    {"stablelm2", TOK_PRETOK_QWEN2, false, {NULL}},
    {"deepseek-r1-qwen", TOK_PRETOK_QWEN2, false, {NULL}},
    {"megrez", TOK_PRETOK_QWEN2, false, {NULL}},
    /* through PCRE2 */
    {"deepseek-coder",
     TOK_PRETOK_PIPE,
     false,
     {"[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+",
      "[\\x{4E00}-\\x{9FA5}\\x{0800}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+", "\\p{N}"}},
    {"deepseek-v3",
     TOK_PRETOK_PIPE,
     false,
     {"\\p{N}{1,3}", "[\\x{4E00}-\\x{9FA5}\\x{3040}-\\x{309F}\\x{30A0}-\\x{30FF}]+",
      "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}"
      "\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"}},
    {"falcon", TOK_PRETOK_PIPE, false, {"[\\p{P}\\$\\+<=>\\^~\\|`]+", RE_GPT2, "[0-9][0-9][0-9]"}},
    {"bloom", TOK_PRETOK_PIPE, false, {RE_BLOOM}},
    {"poro-chat", TOK_PRETOK_PIPE, false, {RE_BLOOM}},
    {"gpt3-finnish", TOK_PRETOK_PIPE, false, {RE_BLOOM}},
    {"viking", TOK_PRETOK_PIPE, false, {RE_BLOOM, "\\p{N}"}},
    {"tekken",
     TOK_PRETOK_PIPE,
     false,
     {"[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+|[^\\r\\n\\p{L}\\p{N}]?"
      "((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|"
      "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}},
    {"gpt-4o", TOK_PRETOK_PIPE, false, {RE_GPT4O}},
    {"llama4", TOK_PRETOK_PIPE, false, {RE_GPT4O}},
    {"qwen35",
     TOK_PRETOK_PIPE,
     false,
     {RE_CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+"
                      "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}},
};

enum lmp_status tok_bpe_from_gguf(const struct lmp_gguf *g, struct lmp_tokenizer **out,
                                  struct lmp_err *err) {
    const char           *path = lmp_gguf_path(g);
    struct lmp_tokenizer *t;
    enum lmp_status       st = tok_gguf_common(g, &t, false, err);
    if (st != LMP_OK) return st;
    t->kind                 = LMP_TOK_BPE;
    t->flavor               = TOK_FLAVOR_BPE;
    struct lmp_gguf_str pre = {"default", 7};
    lmp_gguf_get_str(g, "tokenizer.ggml.pre", &pre);
    const struct gguf_pre *gp = NULL;
    for (size_t i = 0; i < sizeof(gguf_pres) / sizeof(gguf_pres[0]) && gp == NULL; i++)
        if (pre.len == strlen(gguf_pres[i].name) && memcmp(pre.s, gguf_pres[i].name, pre.len) == 0)
            gp = &gguf_pres[i];
    if (gp == NULL) {
        st = lmp_err_set(err, LMP_EUNSUP,
                         "'%s': pre-tokenizer '%.*s' is not supported (gpt2, "
                         "smollm, starcoder, llama3, llama-bpe, qwen2, and llama.cpp's names "
                         "for the same or for the regexes of docs/tokenizers.md)",
                         path, (int)(pre.len > 64 ? 64 : pre.len), pre.s);
        goto fail;
    }
    t->pretok = gp->p;
    if (gp->p == TOK_PRETOK_PIPE) {
        int n_re = 0;
        while (n_re < 5 && gp->re[n_re] != NULL) n_re++;
        if ((st = tok_pipe_from_regexes(gp->re, n_re, path, &t->pipe, err)) != LMP_OK) goto fail;
    }
    t->ignore_merges = gp->ignore_merges;
    if ((st = tok_finish(t)) != LMP_OK) {
        st = lmp_err_set(err, st, "'%s': out of memory indexing the vocabulary", path);
        goto fail;
    }
    enum lmp_gguf_type et;
    int64_t            nm = lmp_gguf_arr_n(g, "tokenizer.ggml.merges", &et);
    if (nm < 0 || et != LMP_GGUF_STRING || nm > INT32_MAX) {
        st = lmp_err_set(err, LMP_EFORMAT,
                         "'%s': tokenizer.ggml.merges is missing or not a "
                         "string array",
                         path);
        goto fail;
    }
    if ((st = pairmap_init(&t->merges, nm)) != LMP_OK) {
        st = lmp_err_set(err, st, "'%s': out of memory", path);
        goto fail;
    }
    for (int64_t i = 0; i < nm; i++) {
        struct lmp_gguf_str m = lmp_gguf_arr_str(g, "tokenizer.ggml.merges", i);
        if (!add_merge_str(t, m.s ? m.s : "", (size_t)m.len, (int32_t)i)) {
            st = lmp_err_set(err, LMP_EFORMAT,
                             "'%s': merge %lld has no space separating its "
                             "two parts",
                             path, (long long)i);
            goto fail;
        }
    }
    bpe_finish_bytes(t);
    snprintf(t->desc, sizeof(t->desc), "gpt2 bpe (%s), %d tokens", pretok_name(t->pretok),
             t->n_vocab);
    *out = t;
    return LMP_OK;
fail:
    lmp_tokenizer_free(&t);
    return st;
}

/* --- Hugging Face tokenizer.json ------------------------------------------------- */

/* The split patterns of tokenizer.json files that map onto our scanners. */
static const struct {
    const char     *re;
    enum tok_pretok p;
} known_regex[] = {
    {"'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
     TOK_PRETOK_GPT2},
    {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+"
     "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
     TOK_PRETOK_LLAMA3},
    {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+"
     "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
     TOK_PRETOK_QWEN2},
};

static bool json_is(const cJSON *o, const char *key, const char *val) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) && strcmp(v->valuestring, val) == 0;
}

static bool json_true(const cJSON *o, const char *key, bool dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return v == NULL || cJSON_IsNull(v) ? dflt : cJSON_IsTrue(v);
}

/* Map the pre_tokenizer object onto a scanner; false if unsupported (why in *why). */
static bool hf_pretok(const cJSON *pt, struct lmp_tokenizer *t, const char **why) {
    *why = "pre_tokenizer";
    if (pt == NULL || cJSON_IsNull(pt)) {
        *why = "a missing pre_tokenizer";
        return false;
    }
    const cJSON *steps[4];
    int          n = 0;
    if (json_is(pt, "type", "Sequence")) {
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(pt, "pretokenizers"), *s;
        cJSON_ArrayForEach(s, arr) {
            if (n == 4) {
                *why = "a pre_tokenizer sequence of more than 4 steps";
                return false;
            }
            steps[n++] = s;
        }
    } else {
        steps[n++] = pt;
    }
    bool digits = false, have_regex = false, byte_level = false;
    t->pretok = TOK_PRETOK_NONE;
    for (int i = 0; i < n; i++) {
        const cJSON *s = steps[i];
        if (json_is(s, "type", "Digits") && json_true(s, "individual_digits", false) && i == 0) {
            digits = true;
        } else if (json_is(s, "type", "Split") && !have_regex && !byte_level) {
            const cJSON *pat = cJSON_GetObjectItemCaseSensitive(s, "pattern");
            const cJSON *re  = cJSON_GetObjectItemCaseSensitive(pat, "Regex");
            if (!cJSON_IsString(re) || !json_is(s, "behavior", "Isolated") ||
                json_true(s, "invert", false)) {
                *why = "a Split pre_tokenizer other than an isolated regex";
                return false;
            }
            size_t k = 0;
            while (k < sizeof(known_regex) / sizeof(known_regex[0]) &&
                   strcmp(known_regex[k].re, re->valuestring) != 0)
                k++;
            if (k == sizeof(known_regex) / sizeof(known_regex[0])) {
                *why = "the Split regex (only the GPT-2, Llama-3 and Qwen2 patterns are known)";
                return false;
            }
            t->pretok  = known_regex[k].p;
            have_regex = true;
        } else if (json_is(s, "type", "ByteLevel") && !byte_level && i == n - 1) {
            byte_level          = true;
            t->add_space_prefix = json_true(s, "add_prefix_space", false);
            if (json_true(s, "use_regex", true)) {
                if (have_regex) {
                    *why = "a Split followed by a regex ByteLevel";
                    return false;
                }
                t->pretok  = TOK_PRETOK_GPT2;
                have_regex = true;
            }
        } else {
            *why = "a pre_tokenizer step (supported: Digits, Split, ByteLevel)";
            return false;
        }
    }
    if (!byte_level) {
        *why = "a pre_tokenizer without ByteLevel";
        return false;
    }
    if (t->add_space_prefix && n > 1) { /* tokenizers prefixes every piece of the split */
        *why = "ByteLevel add_prefix_space after another step";
        return false;
    }
    if (digits) {
        if (t->pretok != TOK_PRETOK_GPT2) {
            *why = "Digits before a non-GPT-2 split";
            return false;
        }
        t->pretok = TOK_PRETOK_SMOLLM;
    }
    return true;
}

struct hf_texts {
    const char **s; /* (n_vocab) */
};

static bool hf_text(void *ctx, int32_t i, const char **s, size_t *len) {
    struct hf_texts *c = ctx;
    if (c->s[i] == NULL) return false;
    *s   = c->s[i];
    *len = strlen(c->s[i]);
    return true;
}

enum lmp_status lmp_tokenizer_parse_hf(const char *json, size_t len, const char *name,
                                       struct lmp_tokenizer **out, struct lmp_err *err) {
    assert(json && name && out);
    *out                       = NULL;
    enum lmp_status       st   = LMP_OK;
    struct lmp_tokenizer *t    = NULL;
    struct hf_texts       c    = {NULL};
    cJSON                *root = cJSON_ParseWithLength(json, len);
    if (root == NULL) return lmp_err_set(err, LMP_EFORMAT, "'%s': not valid JSON", name);
    const cJSON *model  = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *vocab  = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    const cJSON *added  = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    const cJSON *it;
    if (!cJSON_IsObject(model) || !json_is(model, "type", "BPE")) {
        st = lmp_err_set(err, LMP_EUNSUP,
                         "'%s': only tokenizer.json models of type \"BPE\" are "
                         "supported",
                         name);
        goto out;
    }
    if (!cJSON_IsObject(vocab) || !cJSON_IsArray(merges)) {
        st = lmp_err_set(err, LMP_EFORMAT,
                         "'%s': model.vocab must be an object and model.merges "
                         "an array",
                         name);
        goto out;
    }
    const cJSON *pfx = cJSON_GetObjectItemCaseSensitive(model, "continuing_subword_prefix");
    const cJSON *sfx = cJSON_GetObjectItemCaseSensitive(model, "end_of_word_suffix");
    if ((pfx && !cJSON_IsNull(pfx) && !(cJSON_IsString(pfx) && !*pfx->valuestring)) ||
        (sfx && !cJSON_IsNull(sfx) && !(cJSON_IsString(sfx) && !*sfx->valuestring))) {
        st = lmp_err_set(err, LMP_EUNSUP, "'%s': BPE with a subword prefix/suffix is not supported",
                         name);
        goto out;
    }
    /* the vocabulary size is one past the largest id in vocab and added_tokens */
    int64_t n = 0;
    cJSON_ArrayForEach(it, vocab) {
        if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble >= (1 << 22)) {
            st = lmp_err_set(err, LMP_EFORMAT, "'%s': vocab entry has a bad id", name);
            goto out;
        }
        if ((int64_t)it->valuedouble + 1 > n) n = (int64_t)it->valuedouble + 1;
    }
    cJSON_ArrayForEach(it, added) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
        const cJSON *ct = cJSON_GetObjectItemCaseSensitive(it, "content");
        if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble >= (1 << 22) ||
            !cJSON_IsString(ct)) {
            st = lmp_err_set(err, LMP_EFORMAT,
                             "'%s': added_tokens entry without a valid id and "
                             "content",
                             name);
            goto out;
        }
        if ((int64_t)id->valuedouble + 1 > n) n = (int64_t)id->valuedouble + 1;
    }
    if (n == 0) {
        st = lmp_err_set(err, LMP_EFORMAT, "'%s': empty vocabulary", name);
        goto out;
    }
    c.s = calloc((size_t)n, sizeof(*c.s));
    t   = tok_alloc((int32_t)n);
    if (c.s == NULL || t == NULL) {
        st = lmp_err_set(err, LMP_ENOMEM, "'%s': out of memory", name);
        goto out;
    }
    t->kind                                                     = LMP_TOK_BPE;
    t->flavor                                                   = TOK_FLAVOR_BPE;
    cJSON_ArrayForEach(it, vocab) c.s[(int64_t)it->valuedouble] = it->string;
    cJSON_ArrayForEach(it, added) {
        int32_t id  = (int32_t)cJSON_GetObjectItemCaseSensitive(it, "id")->valuedouble;
        c.s[id]     = cJSON_GetObjectItemCaseSensitive(it, "content")->valuestring;
        t->type[id] = json_true(it, "special", false) ? TOK_TYPE_CONTROL : TOK_TYPE_USER_DEFINED;
    }
    for (int64_t i = 0; i < n; i++) {
        if (c.s[i] == NULL) {
            st = lmp_err_set(err, LMP_EFORMAT,
                             "'%s': token id %lld is missing from the "
                             "vocabulary (ids must be dense)",
                             name, (long long)i);
            goto out;
        }
    }
    /* a scanner when one is the pre_tokenizer's exact equivalent, else the PCRE2 pipe */
    const char  *why;
    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    const cJSON *pre  = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    if (!((norm == NULL || cJSON_IsNull(norm)) && hf_pretok(pre, t, &why))) {
        bool byte_level;
        t->add_space_prefix = false;
        if ((st = tok_pipe_from_json(norm, pre, name, &t->pipe, &byte_level, err)) != LMP_OK)
            goto out;
        t->pretok = TOK_PRETOK_PIPE;
        if (!byte_level) { /* a SentencePiece vocabulary: characters, U+2581 for spaces */
            const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
            if (!json_true(model, "byte_fallback", false) && !cJSON_IsString(unk)) {
                st = lmp_err_set(err, LMP_EUNSUP,
                                 "'%s': unsupported tokenizer: a BPE without ByteLevel, "
                                 "byte_fallback or an unk_token",
                                 name);
                goto out;
            }
            t->sp_bpe   = true;
            t->fuse_unk = json_true(model, "fuse_unk", false);
            t->flavor   = TOK_FLAVOR_SPM; /* tokens decode with U+2581 as a space */
            t->pretok   = TOK_PRETOK_SP;
            /* the decoder's Strip of one leading space: the dummy prefix is not text */
            const cJSON *dec = cJSON_GetObjectItemCaseSensitive(root, "decoder"), *d;
            if (json_is(dec, "type", "Strip") && cJSON_GetObjectItemCaseSensitive(dec, "start") &&
                cJSON_GetObjectItemCaseSensitive(dec, "start")->valuedouble >= 1)
                t->add_space_prefix = true;
            cJSON_ArrayForEach(d, cJSON_GetObjectItemCaseSensitive(dec, "decoders")) {
                const cJSON *start = cJSON_GetObjectItemCaseSensitive(d, "start");
                if (json_is(d, "type", "Strip") && cJSON_IsNumber(start) && start->valuedouble >= 1)
                    t->add_space_prefix = true;
            }
        }
    }
    t->ignore_merges = json_true(model, "ignore_merges", false);
    for (int64_t i = 0; t->sp_bpe && json_true(model, "byte_fallback", false) && i < n; i++) {
        const char *v = c.s[i]; /* <0xXX> tokens decode as their byte */
        if (t->type[i] == TOK_TYPE_NORMAL && strlen(v) == 6 && memcmp(v, "<0x", 3) == 0 &&
            v[5] == '>' && isxdigit((unsigned char)v[3]) && isxdigit((unsigned char)v[4]))
            t->type[i] = TOK_TYPE_BYTE;
    }
    if ((st = tok_set_texts(t, hf_text, &c)) != LMP_OK || (st = tok_finish(t)) != LMP_OK ||
        (st = pairmap_init(&t->merges, cJSON_GetArraySize(merges))) != LMP_OK) {
        st = lmp_err_set(err, st, "'%s': cannot index the vocabulary", name);
        goto out;
    }
    int32_t rank = 0;
    cJSON_ArrayForEach(it, merges) { /* "a b" strings, or ["a", "b"] pairs */
        bool ok = false;
        if (cJSON_IsString(it)) {
            ok = add_merge_str(t, it->valuestring, strlen(it->valuestring), rank);
        } else if (cJSON_IsArray(it) && cJSON_GetArraySize(it) == 2) {
            const cJSON *a = cJSON_GetArrayItem(it, 0), *b = cJSON_GetArrayItem(it, 1);
            if (cJSON_IsString(a) && cJSON_IsString(b)) {
                size_t  na = strlen(a->valuestring), nb = strlen(b->valuestring);
                int32_t ia = tok_lookup(t, a->valuestring, na),
                        ib = tok_lookup(t, b->valuestring, nb);
                if (ia >= 0 && ib >= 0)
                    pairmap_add(&t->merges, ia, ib, rank,
                                tok_lookup2(t, a->valuestring, na, b->valuestring, nb));
                ok = true;
            }
        }
        if (!ok) {
            st = lmp_err_set(err, LMP_EFORMAT,
                             "'%s': merge %d is neither \"a b\" nor [\"a\", "
                             "\"b\"]",
                             name, rank);
            goto out;
        }
        rank++;
    }
    if (t->sp_bpe) { /* no GPT-2 byte chars: only <0xXX> tokens stand for bytes */
        for (int b = 0; b < 256; b++) t->byte_tok[b] = -1;
        const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
        if (cJSON_IsString(unk)) t->unk = tok_lookup(t, unk->valuestring, strlen(unk->valuestring));
    } else {
        bpe_finish_bytes(t);
    }
    /* byte_fallback (transformers writes it into the tokenizer.json it converts from a
     * GGUF): a byte whose GPT-2 char is not a token becomes its <0xXX> token if there is one
     * (a byte without either is dropped, where tokenizers would emit model.unk_token) */
    for (int b = 0; b < 256 && json_true(model, "byte_fallback", false); b++) {
        char hex[8];
        snprintf(hex, sizeof(hex), "<0x%02X>", b);
        if (t->byte_tok[b] < 0) t->byte_tok[b] = tok_lookup(t, hex, 6);
    }
    /* BOS: the first special token the post-processor puts before $A */
    const cJSON *pp     = cJSON_GetObjectItemCaseSensitive(root, "post_processor");
    const cJSON *single = NULL;
    if (json_is(pp, "type", "TemplateProcessing"))
        single = cJSON_GetObjectItemCaseSensitive(pp, "single");
    else if (json_is(pp, "type", "Sequence")) {
        const cJSON *p;
        cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(
                                  pp, "processors")) if (json_is(p, "type", "TemplateProcessing"))
            single = cJSON_GetObjectItemCaseSensitive(p, "single");
    }
    const cJSON *first = cJSON_GetArrayItem(single, 0);
    const cJSON *sp    = cJSON_GetObjectItemCaseSensitive(first, "SpecialToken");
    const cJSON *spid  = cJSON_GetObjectItemCaseSensitive(sp, "id");
    if (cJSON_IsString(spid)) t->bos = tok_lookup(t, spid->valuestring, strlen(spid->valuestring));
    snprintf(t->desc, sizeof(t->desc), "hf bpe (%s), %d tokens", pretok_name(t->pretok),
             t->n_vocab);
out:
    cJSON_Delete(root);
    free(c.s);
    if (st != LMP_OK) lmp_tokenizer_free(&t);
    *out = t;
    return st;
}

enum lmp_status lmp_tokenizer_load_hf(const char *path, struct lmp_tokenizer **out,
                                      struct lmp_err *err) {
    assert(path && out);
    *out = NULL;
    char           *json;
    size_t          len;
    enum lmp_status st = lmp_file_read_all(path, &json, &len, err);
    if (st != LMP_OK) return st;
    st = lmp_tokenizer_parse_hf(json, len, path, out, err);
    free(json);
    return st;
}
