/*  tokenizer_spm - SentencePiece-style BPE by merge score with byte fallback
 *
 *  Two flavors:
 *   - llama2.c tokenizer.bin (run.c's encode): BOS (id 1) if asked, the token for " "
 *     if the text is not empty, then one token per UTF-8 character (at most 4 bytes;
 *     unknown characters become byte tokens id = byte + 3), then repeatedly the
 *     adjacent pair whose concatenated text is a token with the highest score
 *     (> -1e10; leftmost on ties) is merged. The BOS token takes part in merging,
 *     exactly as in run.c.
 *   - GGUF tokenizer.ggml.model = "llama" (llama.cpp's SPM session): spaces become
 *     U+2581, a leading space is added if add_space_prefix (default true), symbols
 *     start as UTF-8 characters and merge by score over their text; a final symbol
 *     that is not a token becomes <0xNN> byte tokens.
 *
 *  tokenizer.bin layout (little-endian): int32 max_token_length, then per token
 *  float score, int32 len, len bytes of text (no NUL).
 */
#include "model/tokenizer.h"
#include "model/tokenizer_impl.h"
#include "model/gguf.h" /* defines: lmp_gguf_arr_n(), lmp_gguf_arr_str() */
#include "base/file.h"  /* defines: lmp_map_open() */

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_VOCAB (1 << 22)

/* --- llama2.c tokenizer.bin ---------------------------------------------------- */

struct bin_texts {
    const uint8_t *data;
    size_t         size;
    size_t        *off; /* (n_vocab) offset of each token's text */
    uint32_t      *len; /* (n_vocab) */
};

static bool bin_text(void *ctx, int32_t i, const char **s, size_t *len) {
    struct bin_texts *b = ctx;
    *s                  = (const char *)b->data + b->off[i];
    *len                = b->len[i];
    return true;
}

static int32_t rd_i32(const uint8_t *p) {
    return (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                     (uint32_t)p[3] << 24);
}

static float rd_f32(const uint8_t *p) {
    uint32_t u = (uint32_t)rd_i32(p);
    float    f;
    memcpy(&f, &u, sizeof(f));
    return f;
}

enum lmp_status lmp_tokenizer_parse_llama2c(const uint8_t *data, size_t size, int32_t vocab_size,
                                            const char *name, struct lmp_tokenizer **out,
                                            struct lmp_err *err) {
    assert(out && name);
    *out = NULL;
    if (vocab_size <= 0 || vocab_size > MAX_VOCAB)
        return lmp_err_set(err, LMP_EINVAL, "'%s': vocabulary size %d is out of range", name,
                           vocab_size);
    if (size < 4)
        return lmp_err_set(err, LMP_EFORMAT, "'%s': truncated tokenizer.bin (%zu bytes)", name,
                           size);
    enum lmp_status       st = LMP_OK;
    struct lmp_tokenizer *t  = tok_alloc(vocab_size);
    struct bin_texts      b  = {data, size, malloc((size_t)vocab_size * sizeof(size_t)),
                                malloc((size_t)vocab_size * sizeof(uint32_t))};
    if (t == NULL || b.off == NULL || b.len == NULL ||
        (t->score = malloc((size_t)vocab_size * sizeof(float))) == NULL) {
        st = lmp_err_set(err, LMP_ENOMEM, "'%s': out of memory loading the tokenizer", name);
        goto out;
    }
    int32_t max_len = rd_i32(data);
    if (max_len <= 0) {
        st = lmp_err_set(err, LMP_EFORMAT, "'%s': max_token_length %d is not positive", name,
                         max_len);
        goto out;
    }
    size_t pos = 4;
    for (int32_t i = 0; i < vocab_size; i++) {
        if (size - pos < 8) {
            st = lmp_err_set(err, LMP_EFORMAT, "'%s': truncated at token %d of %d (offset %zu)",
                             name, i, vocab_size, pos);
            goto out;
        }
        t->score[i] = rd_f32(data + pos);
        int32_t n   = rd_i32(data + pos + 4);
        pos += 8;
        if (n < 0 || (size_t)n > size - pos) {
            st = lmp_err_set(err, LMP_EFORMAT,
                             "'%s': token %d has length %d, beyond the end of "
                             "the file (offset %zu)",
                             name, i, n, pos);
            goto out;
        }
        if (n > max_len) { /* llama2.c sizes its buffers by max_token_length */
            st = lmp_err_set(err, LMP_EFORMAT,
                             "'%s': token %d has length %d, above max_token_length %d", name, i, n,
                             max_len);
            goto out;
        }
        b.off[i] = pos;
        b.len[i] = (uint32_t)n;
        pos += (size_t)n;
    }
    /* the file has no token count: the model's vocab_size says how many tokens it holds,
     * and bytes left over mean the two disagree */
    if (pos != size) {
        st = lmp_err_set(err, LMP_EMISMATCH,
                         "'%s': %zu bytes follow the model's vocab_size %d tokens: this "
                         "tokenizer.bin is not the model's (its vocabulary is larger)",
                         name, size - pos, vocab_size);
        goto out;
    }
    t->kind             = LMP_TOK_SPM;
    t->flavor           = TOK_FLAVOR_LLAMA2C;
    t->add_space_prefix = true;
    if ((st = tok_set_texts(t, bin_text, &b)) != LMP_OK) {
        st = lmp_err_set(err, st, "'%s': cannot store the vocabulary", name);
        goto out;
    }
    /* llama2.c's fixed layout: <unk>, <s>, </s>, then the 256 byte tokens <0x00>.. */
    if (vocab_size > 0) t->type[0] = TOK_TYPE_UNKNOWN, t->unk = 0;
    if (vocab_size > 1) t->type[1] = TOK_TYPE_CONTROL, t->bos = 1;
    if (vocab_size > 2) t->type[2] = TOK_TYPE_CONTROL, t->eos = 2;
    for (int32_t i = 3; i < vocab_size; i++) {
        size_t      n;
        const char *s = tok_text(t, i, &n);
        if (n == 6 && memcmp(s, "<0x", 3) == 0 && s[5] == '>') t->type[i] = TOK_TYPE_BYTE;
    }
    for (int b8 = 0; b8 < 256 && b8 + 3 < vocab_size; b8++) t->byte_tok[b8] = b8 + 3;
    if ((st = tok_finish(t)) != LMP_OK) {
        st = lmp_err_set(err, st, "'%s': out of memory indexing the vocabulary", name);
        goto out;
    }
    snprintf(t->desc, sizeof(t->desc), "llama2.c spm, %d tokens", vocab_size);
out:
    free(b.off);
    free(b.len);
    if (st != LMP_OK) lmp_tokenizer_free(&t);
    *out = t;
    return st;
}

enum lmp_status lmp_tokenizer_load_llama2c(const char *path, int32_t vocab_size,
                                           struct lmp_tokenizer **out, struct lmp_err *err) {
    assert(path && out);
    *out = NULL;
    struct lmp_map  map;
    enum lmp_status st = lmp_map_open(&map, path, err);
    if (st != LMP_OK) return st;
    st = lmp_tokenizer_parse_llama2c(map.data ? map.data : (const uint8_t *)"", map.size,
                                     vocab_size, path, out, err);
    lmp_map_close(&map);
    return st;
}

/* --- encoding ------------------------------------------------------------------ */

struct syms {
    struct tok_sym *v;
    int32_t         n, cap;
};

static bool syms_push(struct syms *s, int32_t id, uint32_t start, uint32_t len) {
    if (s->n == s->cap) {
        int32_t         cap = s->cap ? s->cap * 2 : 256;
        struct tok_sym *v   = realloc(s->v, (size_t)cap * sizeof(*v));
        if (v == NULL) return false;
        s->v   = v;
        s->cap = cap;
    }
    s->v[s->n] = (struct tok_sym){id, start, len, s->n - 1, -1};
    if (s->n > 0) s->v[s->n - 1].next = s->n;
    s->n++;
    return true;
}

/* run.c: merge if the concatenated texts form a token with score > -1e10. */
static bool llama2c_pair(const struct lmp_tokenizer *t, const char *word, const struct tok_sym *l,
                         const struct tok_sym *r, double *key, int32_t *id) {
    size_t      na, nb;
    const char *a = tok_text(t, l->id, &na), *b = tok_text(t, r->id, &nb);
    int32_t     m = tok_lookup2(t, a, na, b, nb);
    if (m < 0 || !(t->score[m] > -1e10f)) return false;
    *key = -(double)t->score[m];
    *id  = m;
    return true;
}

static enum lmp_status llama2c_encode(const struct lmp_tokenizer *t, const char *text, size_t len,
                                      bool add_bos, struct tok_ids *out) {
    struct syms s  = {0};
    bool        ok = true;
    if (add_bos && t->bos >= 0) ok = syms_push(&s, t->bos, 0, 1);
    if (len > 0) {
        int32_t sp = tok_lookup(t, " ", 1);
        if (sp >= 0) ok = ok && syms_push(&s, sp, 0, 1);
    }
    /* one UTF-8 character at a time (a lead byte and at most 3 continuation bytes) */
    for (size_t i = 0; i < len && ok;) {
        size_t n = 1;
        while (n < 4 && i + n < len && ((uint8_t)text[i + n] & 0xC0) == 0x80) n++;
        int32_t id = tok_lookup(t, text + i, n);
        if (id >= 0) {
            ok = syms_push(&s, id, 0, 1);
        } else {
            for (size_t k = 0; k < n && ok; k++) {
                int32_t b = t->byte_tok[(uint8_t)text[i + k]];
                ok        = syms_push(&s, b >= 0 ? b : (t->unk >= 0 ? t->unk : 0), 0, 1);
            }
        }
        i += n;
    }
    ok = ok && tok_merge(t, NULL, s.v, s.n, llama2c_pair);
    for (int32_t i = 0; ok && s.n > 0 && i >= 0; i = s.v[i].next) tok_ids_push(out, s.v[i].id);
    free(s.v);
    return ok ? LMP_OK : LMP_ENOMEM;
}

/* llama.cpp SPM: merge if the symbols' joint text is a token (any score). */
static bool spm_pair(const struct lmp_tokenizer *t, const char *word, const struct tok_sym *l,
                     const struct tok_sym *r, double *key, int32_t *id) {
    int32_t m = tok_lookup(t, word + l->start, l->len + r->len);
    if (m < 0 || isnan(t->score[m])) return false;
    *key = -(double)t->score[m];
    *id  = m;
    return true;
}

struct spm_ctx {
    const struct lmp_tokenizer *t;
    struct tok_ids             *out;
    bool                        prev_special;
    char                       *buf; /* escaped text of one fragment */
    size_t                      cap;
};

static const uint8_t utf8_len_by_hi4[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};

static enum lmp_status spm_fragment(void *vctx, const char *s, size_t len, int32_t id) {
    struct spm_ctx             *c = vctx;
    const struct lmp_tokenizer *t = c->t;
    if (id >= 0) {
        tok_ids_push(c->out, id);
        c->prev_special = true;
        return LMP_OK;
    }
    size_t need = 3 * (len + 1);
    if (need > c->cap) {
        char *nb = realloc(c->buf, need);
        if (nb == NULL) return LMP_ENOMEM;
        c->buf = nb;
        c->cap = need;
    }
    size_t n = 0;
    if (t->add_space_prefix && c->prev_special) memcpy(c->buf, "\xE2\x96\x81", 3), n = 3;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == ' ')
            memcpy(c->buf + n, "\xE2\x96\x81", 3), n += 3;
        else
            c->buf[n++] = s[i];
    }
    c->prev_special = false;

    struct syms sy = {0};
    bool        ok = true;
    for (size_t i = 0; i < n && ok;) {
        size_t k = utf8_len_by_hi4[(uint8_t)c->buf[i] >> 4];
        if (k > n - i) k = n - i;
        ok = syms_push(&sy, tok_lookup(t, c->buf + i, k), (uint32_t)i, (uint32_t)k);
        i += k;
    }
    ok = ok && tok_merge(t, c->buf, sy.v, sy.n, spm_pair);
    for (int32_t i = 0; ok && sy.n > 0 && i >= 0; i = sy.v[i].next) {
        const struct tok_sym *y = &sy.v[i];
        /* merged symbols are tokens by construction; an initial character may not be */
        int32_t tid = y->id >= 0 ? y->id : tok_lookup(t, c->buf + y->start, y->len);
        if (tid >= 0) {
            tok_ids_push(c->out, tid);
            continue;
        }
        for (uint32_t k = 0; k < y->len; k++) {
            int32_t b = t->byte_tok[(uint8_t)c->buf[y->start + k]];
            if (b < 0) b = t->unk;
            if (b >= 0) tok_ids_push(c->out, b);
        }
    }
    free(sy.v);
    return ok ? LMP_OK : LMP_ENOMEM;
}

enum lmp_status tok_spm_encode(const struct lmp_tokenizer *t, const char *text, size_t len,
                               bool add_bos, struct tok_ids *out) {
    if (t->flavor == TOK_FLAVOR_LLAMA2C) return llama2c_encode(t, text, len, add_bos, out);
    if (add_bos && t->bos >= 0) tok_ids_push(out, t->bos);
    struct spm_ctx  c  = {t, out, true, NULL, 0};
    enum lmp_status st = tok_partition(t, text, len, spm_fragment, &c);
    free(c.buf);
    return st;
}

/* --- GGUF "llama" ------------------------------------------------------------------ */

struct gguf_texts {
    const struct lmp_gguf *g;
};

static bool gguf_text(void *ctx, int32_t i, const char **s, size_t *len) {
    struct gguf_texts  *c = ctx;
    struct lmp_gguf_str v = lmp_gguf_arr_str(c->g, "tokenizer.ggml.tokens", i);
    *s                    = v.s ? v.s : "";
    *len                  = (size_t)v.len;
    return true;
}

/* Token types, scores, BOS/EOS/UNK from GGUF metadata; shared with the BPE loader. */
enum lmp_status tok_gguf_common(const struct lmp_gguf *g, struct lmp_tokenizer **out,
                                bool want_scores, struct lmp_err *err) {
    const char        *path = lmp_gguf_path(g);
    enum lmp_gguf_type et;
    int64_t            n = lmp_gguf_arr_n(g, "tokenizer.ggml.tokens", &et);
    *out                 = NULL;
    if (n < 0 || et != LMP_GGUF_STRING)
        return lmp_err_set(err, LMP_EFORMAT,
                           "'%s': tokenizer.ggml.tokens is missing or not a "
                           "string array",
                           path);
    if (n == 0 || n > MAX_VOCAB)
        return lmp_err_set(err, LMP_EFORMAT, "'%s': tokenizer.ggml.tokens has %lld entries", path,
                           (long long)n);
    struct lmp_tokenizer *t = tok_alloc((int32_t)n);
    enum lmp_status       st;
    struct gguf_texts     c = {g};
    if (t == NULL) return lmp_err_set(err, LMP_ENOMEM, "'%s': out of memory", path);
    if ((st = tok_set_texts(t, gguf_text, &c)) != LMP_OK) {
        st = lmp_err_set(err, st, "'%s': cannot store the vocabulary", path);
        goto fail;
    }
    int64_t nt = lmp_gguf_arr_n(g, "tokenizer.ggml.token_type", &et);
    if (nt >= 0) {
        if (nt != n || (et != LMP_GGUF_INT32 && et != LMP_GGUF_UINT32)) {
            st = lmp_err_set(err, LMP_EFORMAT,
                             "'%s': tokenizer.ggml.token_type has %lld entries "
                             "of type %d, expected %lld int32",
                             path, (long long)nt, (int)et, (long long)n);
            goto fail;
        }
        const uint8_t *p = lmp_gguf_arr_data(g, "tokenizer.ggml.token_type");
        for (int64_t i = 0; i < n; i++) {
            int32_t v  = rd_i32(p + 4 * i);
            t->type[i] = (v >= 0 && v <= TOK_TYPE_BYTE) ? (uint8_t)v : TOK_TYPE_NORMAL;
        }
    }
    if (want_scores) {
        t->score = calloc((size_t)n, sizeof(float));
        if (t->score == NULL) {
            st = lmp_err_set(err, LMP_ENOMEM, "'%s': out of memory", path);
            goto fail;
        }
        int64_t ns = lmp_gguf_arr_n(g, "tokenizer.ggml.scores", &et);
        if (ns >= 0) {
            if (ns != n || et != LMP_GGUF_FLOAT32) {
                st = lmp_err_set(err, LMP_EFORMAT,
                                 "'%s': tokenizer.ggml.scores has %lld entries "
                                 "of type %d, expected %lld float32",
                                 path, (long long)ns, (int)et, (long long)n);
                goto fail;
            }
            const uint8_t *p = lmp_gguf_arr_data(g, "tokenizer.ggml.scores");
            for (int64_t i = 0; i < n; i++) t->score[i] = rd_f32(p + 4 * i);
        }
    }
    int64_t v;
    if (lmp_gguf_get_i64(g, "tokenizer.ggml.bos_token_id", &v) && v >= 0 && v < n)
        t->bos = (int32_t)v;
    /* BOS is what the tokenizer prepends, as llama.cpp decides it: tokenizer.ggml.add_bos_token,
     * absent meaning yes for SentencePiece and no for byte-level BPE (SmolLM2 says false, as its
     * Hugging Face tokenizer does, so its text starts without one). */
    bool add_bos = want_scores;
    (void)lmp_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &add_bos);
    if (!add_bos) t->bos = -1;
    if (lmp_gguf_get_i64(g, "tokenizer.ggml.eos_token_id", &v) && v >= 0 && v < n)
        t->eos = (int32_t)v;
    if (lmp_gguf_get_i64(g, "tokenizer.ggml.unknown_token_id", &v) && v >= 0 && v < n)
        t->unk = (int32_t)v;
    *out = t;
    return LMP_OK;
fail:
    lmp_tokenizer_free(&t);
    return st;
}

enum lmp_status tok_spm_from_gguf(const struct lmp_gguf *g, struct lmp_tokenizer **out,
                                  struct lmp_err *err) {
    struct lmp_tokenizer *t;
    enum lmp_status       st = tok_gguf_common(g, &t, true, err);
    if (st != LMP_OK) return st;
    t->kind             = LMP_TOK_SPM;
    t->flavor           = TOK_FLAVOR_SPM;
    t->add_space_prefix = true;
    bool b;
    if (lmp_gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", &b)) t->add_space_prefix = b;
    if ((st = tok_finish(t)) != LMP_OK) {
        lmp_tokenizer_free(&t);
        return lmp_err_set(err, st, "'%s': out of memory indexing the vocabulary",
                           lmp_gguf_path(g));
    }
    static const char hex[] = "0123456789ABCDEF";
    for (int c = 0; c < 256; c++) { /* <0xNN>, else the byte itself, as llama.cpp */
        char    name[6] = {'<', '0', 'x', hex[c >> 4], hex[c & 15], '>'};
        char    one     = (char)c;
        int32_t id      = tok_lookup(t, name, 6);
        t->byte_tok[c]  = id >= 0 ? id : tok_lookup(t, &one, 1);
    }
    if (t->unk < 0) t->unk = tok_lookup(t, "<unk>", 5);
    snprintf(t->desc, sizeof(t->desc), "sentencepiece bpe, %d tokens", t->n_vocab);
    *out = t;
    return LMP_OK;
}
