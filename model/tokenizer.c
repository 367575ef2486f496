/*  tokenizer - see tokenizer.h; shared machinery (maps, merge engine, decoding,
 *  dispatch) lives here, the algorithms in tokenizer_spm.c and tokenizer_bpe.c.
 */
#define _GNU_SOURCE /* memmem, qsort_r */
#include "model/tokenizer.h"
#include "model/tokenizer_impl.h"
#include "model/gguf.h"    /* defines: lmp_gguf_get_str() */
#include "model/model.h"   /* defines: struct lmp_model */
#include "model/pretok.h"  /* defines: tok_pipe_free() */
#include "model/unicode.h" /* defines: lmp_utf8_decode(), lmp_gpt2_char_to_byte() */
#include "base/file.h"     /* defines: lmp_path_is_dir() */

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- hashing --------------------------------------------------------------------- */

#define FNV_OFFSET 0xcbf29ce484222325ull
#define FNV_PRIME  0x100000001b3ull

static uint64_t fnv_add(uint64_t h, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * FNV_PRIME;
    return h;
}

static uint64_t mix64(uint64_t x) { /* splitmix64 finalizer */
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static uint32_t pow2_at_least(uint64_t n) {
    uint32_t c = 16;
    while (c < n) c <<= 1;
    return c;
}

static enum lmp_status strmap_build(struct lmp_tokenizer *t) {
    struct tok_strmap *m = &t->vocab;
    m->cap               = pow2_at_least((uint64_t)t->n_vocab * 2);
    m->slot              = malloc((size_t)m->cap * sizeof(*m->slot));
    if (m->slot == NULL) return LMP_ENOMEM;
    for (uint32_t i = 0; i < m->cap; i++) m->slot[i] = -1;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        size_t      n;
        const char *s = tok_text(t, id, &n);
        uint32_t    i = (uint32_t)mix64(fnv_add(FNV_OFFSET, s, n)) & (m->cap - 1);
        for (;; i = (i + 1) & (m->cap - 1)) {
            int32_t o = m->slot[i];
            if (o < 0) {
                m->slot[i] = id;
                break;
            }
            size_t      on;
            const char *os = tok_text(t, o, &on);
            if (on == n && memcmp(os, s, n) == 0) { /* duplicate: the last id wins, */
                m->slot[i] = id;                    /* as in llama.cpp's token map */
                break;
            }
        }
    }
    return LMP_OK;
}

int32_t tok_lookup2(const struct lmp_tokenizer *t, const char *a, size_t na, const char *b,
                    size_t nb) {
    const struct tok_strmap *m = &t->vocab;
    if (m->cap == 0) return -1;
    uint32_t i = (uint32_t)mix64(fnv_add(fnv_add(FNV_OFFSET, a, na), b, nb)) & (m->cap - 1);
    for (;; i = (i + 1) & (m->cap - 1)) {
        int32_t o = m->slot[i];
        if (o < 0) return -1;
        size_t      on;
        const char *os = tok_text(t, o, &on);
        if (on == na + nb && memcmp(os, a, na) == 0 && memcmp(os + na, b, nb) == 0) return o;
    }
}

int32_t tok_lookup(const struct lmp_tokenizer *t, const char *s, size_t len) {
    return tok_lookup2(t, s, len, "", 0);
}

/* --- construction ------------------------------------------------------------------ */

struct lmp_tokenizer *tok_alloc(int32_t n_vocab) {
    assert(n_vocab > 0);
    struct lmp_tokenizer *t = calloc(1, sizeof(*t));
    if (t == NULL) return NULL;
    t->n_vocab = n_vocab;
    t->bos = t->eos = t->unk = -1;
    for (int b = 0; b < 256; b++) t->byte_tok[b] = -1;
    t->text_off = calloc((size_t)n_vocab, sizeof(*t->text_off));
    t->text_len = calloc((size_t)n_vocab, sizeof(*t->text_len));
    t->dec_off  = calloc((size_t)n_vocab, sizeof(*t->dec_off));
    t->dec_len  = calloc((size_t)n_vocab, sizeof(*t->dec_len));
    t->type     = calloc((size_t)n_vocab, sizeof(*t->type));
    if (!t->text_off || !t->text_len || !t->dec_off || !t->dec_len || !t->type) {
        lmp_tokenizer_free(&t);
        return NULL;
    }
    for (int32_t i = 0; i < n_vocab; i++) t->type[i] = TOK_TYPE_NORMAL;
    return t;
}

enum lmp_status tok_set_texts(struct lmp_tokenizer *t, tok_text_fn *get, void *ctx) {
    uint64_t total = 0;
    for (int32_t i = 0; i < t->n_vocab; i++) {
        const char *s;
        size_t      n;
        if (!get(ctx, i, &s, &n)) return LMP_EFORMAT;
        total += n;
    }
    if (total >= UINT32_MAX) return LMP_EFORMAT;
    t->text = malloc(total + 1);
    if (t->text == NULL) return LMP_ENOMEM;
    uint32_t off = 0;
    for (int32_t i = 0; i < t->n_vocab; i++) {
        const char *s;
        size_t      n;
        get(ctx, i, &s, &n);
        if (n) memcpy(t->text + off, s, n);
        t->text_off[i] = off;
        t->text_len[i] = (uint32_t)n;
        off += (uint32_t)n;
    }
    t->text[off] = '\0';
    return LMP_OK;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* "<0xHH>" -> HH, else -1. */
static int byte_token_value(const char *s, size_t n) {
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int hi = hexval(s[3]), lo = hexval(s[4]);
    return (hi < 0 || lo < 0) ? -1 : hi * 16 + lo;
}

/* Write token id's decoded bytes to dst (at most 4 * stored length bytes). */
static size_t decode_token(const struct lmp_tokenizer *t, int32_t id, char *dst) {
    size_t      n;
    const char *s  = tok_text(t, id, &n);
    uint8_t     ty = t->type[id];
    if (ty == TOK_TYPE_CONTROL || ty == TOK_TYPE_UNKNOWN || ty == TOK_TYPE_UNUSED) return 0;
    if (ty == TOK_TYPE_BYTE) {
        int b = byte_token_value(s, n);
        if (b >= 0) {
            dst[0] = (char)b;
            return 1;
        }
    }
    if (ty == TOK_TYPE_USER_DEFINED || t->flavor == TOK_FLAVOR_LLAMA2C) {
        memcpy(dst, s, n);
        return n;
    }
    size_t w = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int      k = lmp_utf8_decode((const uint8_t *)s + i, n - i, &cp);
        if (t->flavor == TOK_FLAVOR_SPM && cp == 0x2581) {
            dst[w++] = ' ';
        } else if (t->flavor == TOK_FLAVOR_BPE && lmp_gpt2_char_to_byte(cp) >= 0) {
            dst[w++] = (char)lmp_gpt2_char_to_byte(cp);
        } else {
            memcpy(dst + w, s + i, (size_t)k);
            w += (size_t)k;
        }
        i += (size_t)k;
    }
    return w;
}

enum lmp_status tok_finish(struct lmp_tokenizer *t) {
    enum lmp_status st = strmap_build(t);
    if (st != LMP_OK) return st;
    uint64_t total = 0;
    for (int32_t i = 0; i < t->n_vocab; i++) total += t->text_len[i];
    t->dec = malloc(total + 1);
    if (t->dec == NULL) return LMP_ENOMEM;
    uint32_t off = 0;
    for (int32_t i = 0; i < t->n_vocab; i++) {
        size_t n      = decode_token(t, i, t->dec + off); /* never longer than the stored text */
        t->dec_off[i] = off;
        t->dec_len[i] = (uint32_t)n;
        off += (uint32_t)n;
    }
    t->dec[off] = '\0';
    return LMP_OK;
}

/* --- output ---------------------------------------------------------------------- */

void tok_ids_push(struct tok_ids *o, int32_t id) {
    if (o->oom) return;
    if (o->n == o->cap) {
        int64_t  cap = o->cap ? o->cap * 2 : 64;
        int32_t *v   = realloc(o->v, (size_t)cap * sizeof(*v));
        if (v == NULL) {
            o->oom = true;
            return;
        }
        o->v   = v;
        o->cap = cap;
    }
    o->v[o->n++] = id;
}

/* --- the merge engine -------------------------------------------------------------- */

struct cand {
    double   key;
    int32_t  l, r;
    uint32_t size; /* len(l) + len(r) when queued: stale if either has changed since */
    int32_t  id;
};

static bool cand_before(const struct cand *a, const struct cand *b) {
    return a->key < b->key || (a->key == b->key && a->l < b->l);
}

struct heap {
    struct cand *v;
    int64_t      n, cap;
};

static bool heap_push(struct heap *h, struct cand c) {
    if (h->n == h->cap) {
        int64_t      cap = h->cap ? h->cap * 2 : 64;
        struct cand *v   = realloc(h->v, (size_t)cap * sizeof(*v));
        if (v == NULL) return false;
        h->v   = v;
        h->cap = cap;
    }
    int64_t i = h->n++;
    while (i > 0) {
        int64_t p = (i - 1) / 2;
        if (!cand_before(&c, &h->v[p])) break;
        h->v[i] = h->v[p];
        i       = p;
    }
    h->v[i] = c;
    return true;
}

static struct cand heap_pop(struct heap *h) {
    struct cand top = h->v[0], last = h->v[--h->n];
    int64_t     i = 0;
    for (;;) {
        int64_t c = 2 * i + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && cand_before(&h->v[c + 1], &h->v[c])) c++;
        if (!cand_before(&h->v[c], &last)) break;
        h->v[i] = h->v[c];
        i       = c;
    }
    if (h->n > 0) h->v[i] = last;
    return top;
}

static bool try_pair(const struct lmp_tokenizer *t, const char *word, const struct tok_sym *syms,
                     int32_t l, tok_pair_fn *pair, struct heap *h) {
    if (l < 0 || syms[l].next < 0) return true;
    int32_t r = syms[l].next;
    double  key;
    int32_t id;
    if (!pair(t, word, &syms[l], &syms[r], &key, &id)) return true;
    return heap_push(h, (struct cand){key, l, r, syms[l].len + syms[r].len, id});
}

bool tok_merge(const struct lmp_tokenizer *t, const char *word, struct tok_sym *syms, int32_t n,
               tok_pair_fn *pair) {
    struct heap h  = {0};
    bool        ok = true;
    for (int32_t i = 0; i + 1 < n && ok; i++) ok = try_pair(t, word, syms, i, pair, &h);
    while (ok && h.n > 0) {
        struct cand     c = heap_pop(&h);
        struct tok_sym *l = &syms[c.l], *r = &syms[c.r];
        if (l->len == 0 || r->len == 0 || l->next != c.r || l->len + r->len != c.size) continue;
        l->id = c.id;
        l->len += r->len;
        l->next = r->next;
        if (r->next >= 0) syms[r->next].prev = c.l;
        r->len = 0;
        ok = try_pair(t, word, syms, l->prev, pair, &h) && try_pair(t, word, syms, c.l, pair, &h);
    }
    free(h.v);
    return ok;
}

/* --- user-defined tokens ----------------------------------------------------------- */

/* Split text at occurrences of user-defined tokens, as llama.cpp does with
 * parse_special = false: for each such token, longest text first, every raw fragment
 * is cut at its non-overlapping occurrences from the left. Control tokens are not
 * matched. The fragments are handed to fn in order (id -1: raw text). */
struct frag {
    size_t  off, len;
    int32_t id; /* -1 for raw text */
};

static int cmp_len_desc(const void *a, const void *b, void *ctx) {
    const struct lmp_tokenizer *t = ctx;
    int32_t                     x = *(const int32_t *)a, y = *(const int32_t *)b;
    if (t->text_len[x] != t->text_len[y]) return t->text_len[x] > t->text_len[y] ? -1 : 1;
    return x < y ? -1 : x > y;
}

enum lmp_status tok_partition(const struct lmp_tokenizer *t, const char *text, size_t len,
                              tok_frag_fn *fn, void *ctx) {
    int32_t n_user = 0;
    for (int32_t i = 0; i < t->n_vocab; i++)
        n_user += t->type[i] == TOK_TYPE_USER_DEFINED && t->text_len[i] > 0;
    if (n_user == 0) return len ? fn(ctx, text, len, -1) : LMP_OK;

    enum lmp_status st     = LMP_ENOMEM;
    int32_t        *users  = malloc((size_t)n_user * sizeof(*users));
    int64_t         n_frag = len ? 1 : 0, cap = 16;
    struct frag    *frags = malloc((size_t)cap * sizeof(*frags));
    if (users == NULL || frags == NULL) goto out;
    n_user = 0;
    for (int32_t i = 0; i < t->n_vocab; i++)
        if (t->type[i] == TOK_TYPE_USER_DEFINED && t->text_len[i] > 0) users[n_user++] = i;
    qsort_r(users, (size_t)n_user, sizeof(*users), cmp_len_desc, (void *)t);
    frags[0] = (struct frag){0, len, -1};
    for (int32_t u = 0; u < n_user; u++) {
        size_t      tl;
        const char *tt = tok_text(t, users[u], &tl);
        for (int64_t f = 0; f < n_frag; f++) {
            if (frags[f].id >= 0 || frags[f].len < tl) continue;
            const char *base = text + frags[f].off;
            const char *hit  = memmem(base, frags[f].len, tt, tl);
            if (hit == NULL) continue;
            if (n_frag + 2 > cap) {
                cap *= 2;
                struct frag *nf = realloc(frags, (size_t)cap * sizeof(*frags));
                if (nf == NULL) goto out;
                frags = nf;
            }
            /* [before][token][after]: after is examined again by the next iteration */
            size_t      before = (size_t)(hit - base), after = frags[f].len - before - tl;
            struct frag tail = {frags[f].off + before + tl, after, -1};
            struct frag tok  = {frags[f].off + before, tl, users[u]};
            int64_t     ins  = (before ? 1 : 0) + 1 + (after ? 1 : 0) - 1; /* net growth */
            memmove(&frags[f + 1 + ins], &frags[f + 1], (size_t)(n_frag - f - 1) * sizeof(*frags));
            int64_t w = f;
            if (before) frags[w++].len = before;
            frags[w++] = tok;
            if (after) frags[w] = tail;
            n_frag += ins;
            if (!before) f--; /* re-enter at the token, which is skipped */
        }
    }
    st = LMP_OK;
    for (int64_t f = 0; f < n_frag && st == LMP_OK; f++)
        st = fn(ctx, text + frags[f].off, frags[f].len, frags[f].id);
out:
    free(users);
    free(frags);
    return st;
}

/* --- public API ------------------------------------------------------------------- */

void lmp_tokenizer_free(struct lmp_tokenizer **tp) {
    assert(tp);
    struct lmp_tokenizer *t = *tp;
    if (t == NULL) return;
    free(t->text);
    free(t->text_off);
    free(t->text_len);
    free(t->dec);
    free(t->dec_off);
    free(t->dec_len);
    free(t->score);
    free(t->type);
    free(t->vocab.slot);
    free(t->merges.slot);
    tok_pipe_free(&t->pipe);
    free(t);
    *tp = NULL;
}

enum lmp_tok_kind lmp_tokenizer_kind(const struct lmp_tokenizer *t) {
    return t->kind;
}
const char *lmp_tokenizer_describe(const struct lmp_tokenizer *t) {
    return t->desc;
}
int32_t lmp_tokenizer_n_vocab(const struct lmp_tokenizer *t) {
    return t->n_vocab;
}
int32_t lmp_tokenizer_bos(const struct lmp_tokenizer *t) {
    return t->bos;
}
int32_t lmp_tokenizer_eos(const struct lmp_tokenizer *t) {
    return t->eos;
}

enum lmp_status lmp_tokenizer_encode(const struct lmp_tokenizer *t, const char *text, size_t len,
                                     bool add_bos, int32_t **ids, int64_t *n_ids,
                                     struct lmp_err *err) {
    assert(t && ids && n_ids);
    *ids   = NULL;
    *n_ids = 0;
    if (text == NULL && len > 0)
        return lmp_err_set(err, LMP_EINVAL, "cannot encode a NULL text of %zu bytes", len);
    if (len >= INT32_MAX)
        return lmp_err_set(err, LMP_EINVAL, "text of %zu bytes is too long to encode in one call",
                           len);
    struct tok_ids  out = {0};
    enum lmp_status st  = t->kind == LMP_TOK_SPM
                              ? tok_spm_encode(t, text ? text : "", len, add_bos, &out)
                              : tok_bpe_encode(t, text ? text : "", len, add_bos, &out);
    if (st == LMP_OK && out.oom) st = LMP_ENOMEM;
    if (st == LMP_OK && out.v == NULL) { /* empty result: still hand back a valid pointer */
        out.v = malloc(sizeof(int32_t));
        if (out.v == NULL) st = LMP_ENOMEM;
    }
    if (st != LMP_OK) {
        free(out.v);
        return lmp_err_set(err, st, "cannot encode %zu bytes with %s: %s", len, t->desc,
                           st == LMP_ENOMEM ? "out of memory" : lmp_status_str(st));
    }
    *ids   = out.v;
    *n_ids = out.n;
    return LMP_OK;
}

const char *lmp_tokenizer_piece(const struct lmp_tokenizer *t, int32_t prev, int32_t id,
                                size_t *len) {
    assert(t && len);
    if (id < 0 || id >= t->n_vocab) {
        *len = 0;
        return "";
    }
    const char *s = t->dec + t->dec_off[id];
    size_t      n = t->dec_len[id];
    /* SentencePiece: the dummy-prefix space of the first word is not part of the text */
    if ((t->kind == LMP_TOK_SPM || (t->sp_bpe && t->add_space_prefix)) && prev == t->bos &&
        prev >= 0 && n > 0 && s[0] == ' ') {
        s++;
        n--;
    }
    *len = n;
    return s;
}

enum lmp_status lmp_tokenizer_decode(const struct lmp_tokenizer *t, const int32_t *ids, int64_t n,
                                     char **out, size_t *len, struct lmp_err *err) {
    assert(t && out && len);
    *out         = NULL;
    *len         = 0;
    size_t total = 0;
    for (int64_t i = 0; i < n; i++)
        if (ids[i] >= 0 && ids[i] < t->n_vocab) total += t->dec_len[ids[i]];
    char *buf = malloc(total + 1);
    if (buf == NULL)
        return lmp_err_set(err, LMP_ENOMEM, "out of memory decoding %lld tokens", (long long)n);
    size_t w = 0;
    for (int64_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_vocab) {
            free(buf);
            return lmp_err_set(err, LMP_EINVAL,
                               "token id %d at position %lld is outside the "
                               "vocabulary of %s",
                               ids[i], (long long)i, t->desc);
        }
        size_t      k;
        const char *p = lmp_tokenizer_piece(t, i ? ids[i - 1] : -1, ids[i], &k);
        /* the first piece of a sequence drops the dummy prefix like one after BOS */
        if (i == 0 && (t->kind == LMP_TOK_SPM || t->sp_bpe) && t->add_space_prefix && k > 0 &&
            p[0] == ' ') {
            p++;
            k--;
        }
        memcpy(buf + w, p, k);
        w += k;
    }
    buf[w] = '\0';
    *out   = buf;
    *len   = w;
    return LMP_OK;
}

/* --- loading and dispatch -------------------------------------------------------- */

enum lmp_status lmp_tokenizer_from_gguf(const struct lmp_gguf *g, struct lmp_tokenizer **out,
                                        struct lmp_err *err) {
    assert(g && out);
    *out = NULL;
    struct lmp_gguf_str model;
    if (!lmp_gguf_get_str(g, "tokenizer.ggml.model", &model))
        return lmp_err_set(err, LMP_ENOENT,
                           "'%s' has no tokenizer (tokenizer.ggml.model is "
                           "missing): pass --tokenizer",
                           lmp_gguf_path(g));
    if (model.len == 5 && memcmp(model.s, "llama", 5) == 0) return tok_spm_from_gguf(g, out, err);
    if (model.len == 4 && memcmp(model.s, "gpt2", 4) == 0) return tok_bpe_from_gguf(g, out, err);
    return lmp_err_set(err, LMP_EUNSUP,
                       "'%s': tokenizer model '%.*s' is not supported (only "
                       "'llama' and 'gpt2')",
                       lmp_gguf_path(g), (int)(model.len > 64 ? 64 : model.len), model.s);
}

static bool has_suffix(const char *s, const char *suf) {
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && strcmp(s + n - k, suf) == 0;
}

/* dir of path (a file) joined with name, into buf. */
static void sibling(char *buf, size_t cap, const char *path, const char *name) {
    const char *slash = strrchr(path, '/');
    if (slash == NULL)
        snprintf(buf, cap, "%s", name);
    else
        snprintf(buf, cap, "%.*s/%s", (int)(slash - path), path, name);
}

static enum lmp_status open_any(const char *path, const struct lmp_model *m,
                                struct lmp_tokenizer **out, struct lmp_err *err) {
    assert(out);
    *out = NULL;
    char buf[4096];
    if (path != NULL) {
        if (lmp_path_is_dir(path)) {
            snprintf(buf, sizeof(buf), "%s/tokenizer.json", path);
            if (!lmp_path_is_file(buf))
                return lmp_err_set(err, LMP_ENOENT, "no tokenizer.json in directory '%s'", path);
            return lmp_tokenizer_load_hf(buf, out, err);
        }
        if (has_suffix(path, ".json")) return lmp_tokenizer_load_hf(path, out, err);
        if (has_suffix(path, ".bin")) {
            if (m == NULL || m->cfg.vocab_size <= 0)
                return lmp_err_set(err, LMP_EINVAL,
                                   "'%s': a llama2.c tokenizer.bin needs the "
                                   "model's vocabulary size",
                                   path);
            return lmp_tokenizer_load_llama2c(path, m->cfg.vocab_size, out, err);
        }
        return lmp_err_set(err, LMP_EUNSUP,
                           "'%s': unknown tokenizer format (expected "
                           "tokenizer.bin, tokenizer.json or a directory holding tokenizer.json)",
                           path);
    }
    if (m == NULL) return lmp_err_set(err, LMP_EINVAL, "no tokenizer path and no model given");
    switch (m->cfg.format) {
    case LMP_FORMAT_GGUF:
        if (m->gguf == NULL)
            return lmp_err_set(err, LMP_EINVAL, "'%s': GGUF model without its file", m->path);
        return lmp_tokenizer_from_gguf(m->gguf, out, err);
    case LMP_FORMAT_HF:
        snprintf(buf, sizeof(buf), "%s/tokenizer.json", m->path);
        if (!lmp_path_is_file(buf))
            return lmp_err_set(err, LMP_ENOENT, "no tokenizer.json in '%s': pass --tokenizer",
                               m->path);
        return lmp_tokenizer_load_hf(buf, out, err);
    case LMP_FORMAT_LLAMA2C:
        sibling(buf, sizeof(buf), m->path, "tokenizer.bin");
        if (!lmp_path_is_file(buf))
            return lmp_err_set(err, LMP_ENOENT, "no tokenizer.bin beside '%s': pass --tokenizer",
                               m->path);
        return lmp_tokenizer_load_llama2c(buf, m->cfg.vocab_size, out, err);
    }
    return lmp_err_set(err, LMP_EUNSUP, "'%s': unknown model format", m->path);
}

enum lmp_status lmp_tokenizer_open(const char *path, const struct lmp_model *m,
                                   struct lmp_tokenizer **out, struct lmp_err *err) {
    enum lmp_status st = open_any(path, m, out, err);
    if (st != LMP_OK || m == NULL) return st;
    /* a model's vocabulary may be padded beyond its tokenizer's, never smaller: ids past
     * the embedding would be refused at the first forward pass, or worse */
    if ((*out)->n_vocab > m->cfg.vocab_size) {
        st = lmp_err_set(err, LMP_EMISMATCH,
                         "tokenizer '%s' (%s) has %d tokens, more than the vocab_size %d of "
                         "model '%s'",
                         path ? path : m->path, (*out)->desc, (*out)->n_vocab, m->cfg.vocab_size,
                         m->path);
        lmp_tokenizer_free(out);
    }
    return st;
}
