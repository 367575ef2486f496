/*  chat - see chat.h */
#include "model/chat.h"
#include "model/gguf.h" /* defines: lmp_gguf_get_str, lmp_gguf_arr_n, lmp_gguf_arr_str */

#include <assert.h>
#include <stdlib.h>
#include <string.h>

static bool has_sub(const char *s, size_t n, const char *sub) {
    const size_t k = strlen(sub);
    for (size_t i = 0; i + k <= n; i++)
        if (memcmp(s + i, sub, k) == 0) return true;
    return false;
}

static bool template_of(const struct lmp_model *m, struct lmp_gguf_str *t) {
    return m->gguf && lmp_gguf_get_str(m->gguf, "tokenizer.chat_template", t) && t->s != NULL;
}

bool lmp_chat_chatml(const struct lmp_model *m, int32_t *start, int32_t *end) {
    assert(m && start && end);
    const struct lmp_gguf *g = m->gguf;
    struct lmp_gguf_str    t;
    enum lmp_gguf_type     et;
    if (!template_of(m, &t) || !has_sub(t.s, t.len, "<|im_start|>")) return false;
    int64_t n = lmp_gguf_arr_n(g, "tokenizer.ggml.tokens", &et);
    if (n <= 0 || et != LMP_GGUF_STRING) return false;
    if (n > m->cfg.vocab_size) n = m->cfg.vocab_size;
    *start = *end = -1;
    for (int64_t i = 0; i < n; i++) {
        struct lmp_gguf_str v = lmp_gguf_arr_str(g, "tokenizer.ggml.tokens", i);
        if (v.s && v.len == 12 && memcmp(v.s, "<|im_start|>", 12) == 0) *start = (int32_t)i;
        if (v.s && v.len == 10 && memcmp(v.s, "<|im_end|>", 10) == 0) *end = (int32_t)i;
    }
    return *start >= 0 && *end >= 0;
}

/* The literal starting at s[i] (just after its opening quote q), unescaped into out (room
 * for n - i bytes); its length, or -1 if it is not closed. */
static long unquote(const char *s, size_t n, size_t i, char q, char *out) {
    long k = 0;
    for (; i < n; i++) {
        if (s[i] == q) return k;
        if (s[i] == '\\' && i + 1 < n) {
            const char e = s[++i];
            out[k++]     = e == 'n' ? '\n' : e == 't' ? '\t' : e;
            continue;
        }
        out[k++] = s[i];
    }
    return -1;
}

char *lmp_chat_default_system(const char *tmpl, size_t n) {
    static const char head[] = "<|im_start|>system", tail[] = "<|im_end|>";
    const size_t      nh = sizeof(head) - 1, nt = sizeof(tail) - 1;
    if (tmpl == NULL) return NULL;
    for (size_t i = 1; i + nh <= n; i++) {
        const char q = tmpl[i - 1];
        if ((q != '\'' && q != '"') || memcmp(tmpl + i, head, nh) != 0) continue;
        char *lit = malloc(n - i + 1);
        if (lit == NULL) return NULL;
        const long len = unquote(tmpl, n, i, q, lit);
        if (len < 0) { /* not closed: no literal here, nor after it */
            free(lit);
            return NULL;
        }
        size_t end = (size_t)len;
        if (end > 0 && lit[end - 1] == '\n') end--;
        if (end >= nh + 1 + nt && lit[nh] == '\n' && memcmp(lit + end - nt, tail, nt) == 0) {
            const size_t body = end - nt - (nh + 1);
            memmove(lit, lit + nh + 1, body);
            lit[body] = '\0';
            return lit;
        }
        free(lit);
    }
    return NULL;
}

char *lmp_chat_model_default_system(const struct lmp_model *m) {
    struct lmp_gguf_str t;
    return template_of(m, &t) ? lmp_chat_default_system(t.s, t.len) : NULL;
}

/* Append text's ids to *ids (leaving room for one more id). */
static enum lmp_status append_text(const struct lmp_tokenizer *tok, const char *a, const char *b,
                                   int32_t **ids, int64_t *n_ids, struct lmp_err *err) {
    const size_t la = strlen(a), lb = b ? strlen(b) : 0;
    char        *text = malloc(la + lb + 1);
    if (text == NULL) return lmp_err_set(err, LMP_ENOMEM, "out of memory encoding the prompt");
    memcpy(text, a, la);
    if (lb) memcpy(text + la, b, lb);
    text[la + lb]        = '\0';
    int32_t        *more = NULL;
    int64_t         n    = 0;
    enum lmp_status st   = lmp_tokenizer_encode(tok, text, la + lb, false, &more, &n, err);
    free(text);
    if (st != LMP_OK) return st;
    int32_t *all = realloc(*ids, (size_t)(*n_ids + n + 1) * sizeof(*all));
    if (all == NULL) {
        free(more);
        return lmp_err_set(err, LMP_ENOMEM, "out of memory encoding the prompt");
    }
    if (n) memcpy(all + *n_ids, more, (size_t)n * sizeof(*all));
    *ids = all;
    *n_ids += n;
    free(more);
    return LMP_OK;
}

/* <|im_start|> ROLE "\n" TEXT <|im_end|> "\n" */
static enum lmp_status turn(const struct lmp_tokenizer *tok, const char *role, const char *text,
                            int32_t start, int32_t end, int32_t **ids, int64_t *n_ids,
                            struct lmp_err *err) {
    (*ids)[(*n_ids)++] = start; /* room left by the previous append */
    enum lmp_status st = append_text(tok, role, text, ids, n_ids, err);
    if (st != LMP_OK) return st;
    (*ids)[(*n_ids)++] = end;
    return append_text(tok, "\n", NULL, ids, n_ids, err);
}

enum lmp_status lmp_chat_encode(const struct lmp_tokenizer *tok, const char *system,
                                const char *prompt, int32_t start, int32_t end, int32_t **ids,
                                int64_t *n_ids, struct lmp_err *err) {
    assert(tok && prompt && ids && n_ids);
    *n_ids = 0;
    *ids   = malloc(2 * sizeof(**ids));
    if (*ids == NULL) return lmp_err_set(err, LMP_ENOMEM, "out of memory encoding the prompt");
    const int32_t bos = lmp_tokenizer_bos(tok);
    if (bos >= 0) (*ids)[(*n_ids)++] = bos;
    enum lmp_status st = LMP_OK;
    if (system && *system) st = turn(tok, "system\n", system, start, end, ids, n_ids, err);
    if (st == LMP_OK) st = turn(tok, "user\n", prompt, start, end, ids, n_ids, err);
    if (st == LMP_OK) {
        (*ids)[(*n_ids)++] = start;
        st                 = append_text(tok, "assistant\n", NULL, ids, n_ids, err);
    }
    if (st != LMP_OK) {
        free(*ids);
        *ids   = NULL;
        *n_ids = 0;
    }
    return st;
}
