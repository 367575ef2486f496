/*  export_hf_tok - tokenizer.json / tokenizer_config.json for the Hugging Face export
 *
 *  Three sources (the artifact's /tokenizer, docs/artifact.md):
 *   - hf: tokenizer.json is copied byte for byte; tokenizer_config.json is the source
 *     directory's when the caller found it, else a minimal one.
 *   - gguf, tokenizer.ggml.model "gpt2": a byte-level BPE (vocab, merges as stored, the
 *     pre-tokenizer named by tokenizer.ggml.pre: gpt2, smollm, llama3, qwen2, as the
 *     reader in model/tokenizer_bpe.c knows them).
 *   - gguf "llama" and llama2.c's tokenizer.bin: SentencePiece-style BPE with byte
 *     fallback, as transformers' LlamaConverter writes it: spaces become U+2581 and one
 *     is prepended (normalizer), merges are derived from the piece scores the way
 *     transformers' SentencePieceExtractor derives them (every split of a piece into two
 *     pieces, ordered by the piece's score, best first), so encoding merges the
 *     best-scored pair first as llama2.c and llama.cpp do.
 *  Control and user-defined tokens become added_tokens; the BOS the source adds becomes a
 *  TemplateProcessing post-processor; GGUF's tokenizer.chat_template goes into
 *  tokenizer_config.json.
 */
#include "artifact/export_hf.h"
#include "base/text.h"       /* defines: lmp_strfmt */
#include "model/gguf.h"      /* defines: lmp_gguf_parse, lmp_gguf_arr_* */
#include "model/tokenizer.h" /* defines: lmp_tokenizer_parse_* */

#include <assert.h>
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* GGUF tokenizer.ggml.token_type values (llama.cpp's llama_token_type) */
enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER = 4, TT_UNUSED = 5, TT_BYTE = 6 };

void lmp_hf_tok_files_release(struct lmp_hf_tok_files *f) {
    if (f == NULL) return;
    free(f->tokenizer_json);
    free(f->tokenizer_config_json);
    memset(f, 0, sizeof(*f));
    f->bos = f->eos = -1;
}

/* A vocabulary: texts as Hugging Face stores them, types, optional scores. */
struct vocab {
    char   **text;  /* (n) NUL-terminated, owned */
    uint8_t *type;  /* (n) TT_* */
    float   *score; /* (n) or NULL */
    int32_t  n;
    int32_t  bos, eos, unk; /* -1 when absent */
    bool     add_bos, add_eos;
    /* text -> id, open addressing */
    int32_t *slot;
    uint32_t cap;
};

static void vocab_release(struct vocab *v) {
    for (int32_t i = 0; v->text && i < v->n; i++) free(v->text[i]);
    free(v->text);
    free(v->type);
    free(v->score);
    free(v->slot);
    memset(v, 0, sizeof(*v));
}

static bool vocab_alloc(struct vocab *v, int32_t n, bool scores) {
    memset(v, 0, sizeof(*v));
    v->n   = n;
    v->bos = v->eos = v->unk = -1;
    v->text                  = calloc((size_t)n, sizeof(*v->text));
    v->type                  = calloc((size_t)n, 1);
    v->score                 = scores ? calloc((size_t)n, sizeof(float)) : NULL;
    return v->text && v->type && (!scores || v->score);
}

static uint32_t hash_n(const char *s, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

static bool vocab_index(struct vocab *v) {
    v->cap = 16;
    while (v->cap < 2u * (uint32_t)v->n) v->cap *= 2;
    if ((v->slot = malloc(v->cap * sizeof(int32_t))) == NULL) return false;
    for (uint32_t i = 0; i < v->cap; i++) v->slot[i] = -1;
    for (int32_t i = 0; i < v->n; i++) {
        uint32_t h = hash_n(v->text[i], strlen(v->text[i])) & (v->cap - 1);
        while (v->slot[h] >= 0) {
            if (strcmp(v->text[v->slot[h]], v->text[i]) == 0) break; /* first id wins */
            h = (h + 1) & (v->cap - 1);
        }
        if (v->slot[h] < 0) v->slot[h] = i;
    }
    return true;
}

static int32_t vocab_find(const struct vocab *v, const char *s, size_t n) {
    uint32_t h = hash_n(s, n) & (v->cap - 1);
    for (; v->slot[h] >= 0; h = (h + 1) & (v->cap - 1)) {
        const char *t = v->text[v->slot[h]];
        if (strncmp(t, s, n) == 0 && t[n] == '\0') return v->slot[h];
    }
    return -1;
}

static bool utf8_ok(const char *s) {
    const uint8_t *p = (const uint8_t *)s;
    while (*p) {
        int n = *p < 0x80             ? 0
                : (*p & 0xE0) == 0xC0 ? 1
                : (*p & 0xF0) == 0xE0 ? 2
                : (*p & 0xF8) == 0xF0 ? 3
                                      : -1;
        if (n < 0 || (n == 1 && *p < 0xC2)) return false;
        p++;
        for (int k = 0; k < n; k++, p++)
            if ((*p & 0xC0) != 0x80) return false;
    }
    return true;
}

static enum lmp_status check_texts(const struct vocab *v, const char *what, struct lmp_err *err) {
    for (int32_t i = 0; i < v->n; i++)
        if (!utf8_ok(v->text[i]))
            return lmp_err_set(err, LMP_EUNSUP,
                               "%s: token %d is not valid UTF-8: tokenizer.json cannot hold it",
                               what, i);
    return LMP_OK;
}

/* --- pieces of tokenizer.json ---------------------------------------------------------- */

static cJSON *added_tokens(const struct vocab *v) {
    cJSON *arr = cJSON_CreateArray();
    for (int32_t i = 0; i < v->n; i++) {
        uint8_t t = v->type[i];
        if (t != TT_CONTROL && t != TT_USER && t != TT_UNKNOWN) continue;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "id", i);
        cJSON_AddStringToObject(o, "content", v->text[i]);
        cJSON_AddBoolToObject(o, "single_word", false);
        cJSON_AddBoolToObject(o, "lstrip", false);
        cJSON_AddBoolToObject(o, "rstrip", false);
        cJSON_AddBoolToObject(o, "normalized", false);
        cJSON_AddBoolToObject(o, "special", t != TT_USER);
        cJSON_AddItemToArray(arr, o);
    }
    return arr;
}

static cJSON *special_ref(const struct vocab *v, int32_t id) {
    cJSON *o = cJSON_CreateObject(), *s = cJSON_AddObjectToObject(o, "SpecialToken");
    cJSON_AddStringToObject(s, "id", v->text[id]);
    cJSON_AddNumberToObject(s, "type_id", 0);
    return o;
}

static cJSON *sequence_ref(const char *id) {
    cJSON *o = cJSON_CreateObject(), *s = cJSON_AddObjectToObject(o, "Sequence");
    cJSON_AddStringToObject(s, "id", id);
    cJSON_AddNumberToObject(s, "type_id", 0);
    return o;
}

/* TemplateProcessing adding the source's BOS (and EOS), or NULL when it adds neither. */
static cJSON *template_post(const struct vocab *v) {
    bool bos = v->add_bos && v->bos >= 0, eos = v->add_eos && v->eos >= 0;
    if (!bos && !eos) return NULL;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "TemplateProcessing");
    cJSON *single = cJSON_AddArrayToObject(o, "single"), *pair = cJSON_AddArrayToObject(o, "pair");
    if (bos) cJSON_AddItemToArray(single, special_ref(v, v->bos));
    cJSON_AddItemToArray(single, sequence_ref("A"));
    if (eos) cJSON_AddItemToArray(single, special_ref(v, v->eos));
    const char *ab[2] = {"A", "B"};
    for (int k = 0; k < 2; k++) {
        if (bos) cJSON_AddItemToArray(pair, special_ref(v, v->bos));
        cJSON_AddItemToArray(pair, sequence_ref(ab[k]));
        if (eos) cJSON_AddItemToArray(pair, special_ref(v, v->eos));
    }
    cJSON  *sp     = cJSON_AddObjectToObject(o, "special_tokens");
    int32_t ids[2] = {bos ? v->bos : -1, eos ? v->eos : -1};
    for (int k = 0; k < 2; k++) {
        if (ids[k] < 0 || cJSON_GetObjectItemCaseSensitive(sp, v->text[ids[k]])) continue;
        cJSON *t = cJSON_AddObjectToObject(sp, v->text[ids[k]]);
        cJSON_AddStringToObject(t, "id", v->text[ids[k]]);
        cJSON_AddItemToArray(cJSON_AddArrayToObject(t, "ids"), cJSON_CreateNumber(ids[k]));
        cJSON_AddItemToArray(cJSON_AddArrayToObject(t, "tokens"),
                             cJSON_CreateString(v->text[ids[k]]));
    }
    return o;
}

static cJSON *vocab_obj(const struct vocab *v) {
    cJSON *o = cJSON_CreateObject();
    for (int32_t i = 0; i < v->n; i++) /* a text twice: its first id, as the readers do */
        if (vocab_find(v, v->text[i], strlen(v->text[i])) == i)
            cJSON_AddItemToObject(o, v->text[i], cJSON_CreateNumber(i));
    return o;
}

static cJSON *merge_pair(const char *a, size_t na, const char *b, size_t nb) {
    cJSON *m = cJSON_CreateArray();
    char  *s = lmp_strfmt("%.*s", (int)na, a), *t = lmp_strfmt("%.*s", (int)nb, b);
    cJSON_AddItemToArray(m, cJSON_CreateString(s ? s : ""));
    cJSON_AddItemToArray(m, cJSON_CreateString(t ? t : ""));
    free(s);
    free(t);
    return m;
}

static cJSON *bpe_model(const struct vocab *v, bool spm, bool ignore_merges) {
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "type", "BPE");
    cJSON_AddNullToObject(m, "dropout");
    if (spm && v->unk >= 0)
        cJSON_AddStringToObject(m, "unk_token", v->text[v->unk]);
    else
        cJSON_AddNullToObject(m, "unk_token");
    cJSON_AddNullToObject(m, "continuing_subword_prefix");
    cJSON_AddNullToObject(m, "end_of_word_suffix");
    cJSON_AddBoolToObject(m, "fuse_unk", spm);
    cJSON_AddBoolToObject(m, "byte_fallback", spm);
    cJSON_AddBoolToObject(m, "ignore_merges", ignore_merges);
    cJSON_AddItemToObject(m, "vocab", vocab_obj(v));
    return m;
}

/* --- SentencePiece-style (llama2.c, GGUF "llama") ------------------------------------ */

struct merge {
    int32_t l, r, piece;
    float   score;
    int64_t seq;
};

static int cmp_merge(const void *va, const void *vb) {
    const struct merge *a = va, *b = vb;
    if (a->score != b->score) return a->score > b->score ? -1 : 1;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

/* Merges as transformers' SentencePieceExtractor derives them. NULL on out-of-memory. */
static cJSON *spm_merges(const struct vocab *v) {
    struct merge *m = NULL;
    int64_t       n = 0, cap = 0;
    for (int32_t p = 0; p < v->n; p++) {
        if (v->type[p] != TT_NORMAL || !(v->score[p] > -1e10f)) continue;
        const char *s     = v->text[p];
        size_t      len   = strlen(s);
        int64_t     first = n;
        for (size_t k = 1; k < len; k++) {
            if (((uint8_t)s[k] & 0xC0) == 0x80) continue; /* split at characters only */
            int32_t l = vocab_find(v, s, k), r = vocab_find(v, s + k, len - k);
            if (l < 0 || r < 0) continue;
            if (n == cap) {
                cap             = cap ? 2 * cap : 4096;
                struct merge *b = realloc(m, (size_t)cap * sizeof(*m));
                if (b == NULL) {
                    free(m);
                    return NULL;
                }
                m = b;
            }
            m[n++] = (struct merge){l, r, p, v->score[p], 0};
        }
        /* within a piece: by (left id, right id), as the extractor sorts them */
        for (int64_t i = first + 1; i < n; i++)
            for (int64_t j = i; j > first && (m[j - 1].l > m[j].l ||
                                              (m[j - 1].l == m[j].l && m[j - 1].r > m[j].r));
                 j--) {
                struct merge t = m[j];
                m[j]           = m[j - 1];
                m[j - 1]       = t;
            }
    }
    for (int64_t i = 0; i < n; i++) m[i].seq = i;
    if (n > 0) qsort(m, (size_t)n, sizeof(*m), cmp_merge);
    cJSON *arr = cJSON_CreateArray();
    for (int64_t i = 0; arr && i < n; i++) {
        const char *a = v->text[m[i].l], *b = v->text[m[i].r];
        cJSON_AddItemToArray(arr, merge_pair(a, strlen(a), b, strlen(b)));
    }
    free(m);
    return arr;
}

static cJSON *replace_step(const char *from, const char *to) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "Replace");
    cJSON_AddStringToObject(cJSON_AddObjectToObject(o, "pattern"), "String", from);
    cJSON_AddStringToObject(o, "content", to);
    return o;
}

static char *spm_json(const struct vocab *v) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "version", "1.0");
    cJSON_AddNullToObject(root, "truncation");
    cJSON_AddNullToObject(root, "padding");
    cJSON_AddItemToObject(root, "added_tokens", added_tokens(v));
    cJSON *norm = cJSON_AddObjectToObject(root, "normalizer");
    cJSON_AddStringToObject(norm, "type", "Sequence");
    cJSON *ns = cJSON_AddArrayToObject(norm, "normalizers"), *pre = cJSON_CreateObject();
    cJSON_AddStringToObject(pre, "type", "Prepend");
    cJSON_AddStringToObject(pre, "prepend", "\xE2\x96\x81");
    cJSON_AddItemToArray(ns, pre);
    cJSON_AddItemToArray(ns, replace_step(" ", "\xE2\x96\x81"));
    cJSON_AddNullToObject(root, "pre_tokenizer");
    cJSON *post = template_post(v);
    if (post)
        cJSON_AddItemToObject(root, "post_processor", post);
    else
        cJSON_AddNullToObject(root, "post_processor");
    cJSON *dec = cJSON_AddObjectToObject(root, "decoder");
    cJSON_AddStringToObject(dec, "type", "Sequence");
    cJSON *ds = cJSON_AddArrayToObject(dec, "decoders"), *o;
    cJSON_AddItemToArray(ds, replace_step("\xE2\x96\x81", " "));
    o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "ByteFallback");
    cJSON_AddItemToArray(ds, o);
    o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "Fuse");
    cJSON_AddItemToArray(ds, o);
    o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "Strip");
    cJSON_AddStringToObject(o, "content", " ");
    cJSON_AddNumberToObject(o, "start", 1);
    cJSON_AddNumberToObject(o, "stop", 0);
    cJSON_AddItemToArray(ds, o);
    cJSON *model = bpe_model(v, true, false), *merges = spm_merges(v);
    if (merges) cJSON_AddItemToObject(model, "merges", merges);
    cJSON_AddItemToObject(root, "model", model);
    char *s = merges ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    return s;
}

/* --- byte-level BPE (GGUF "gpt2") -------------------------------------------------------- */

#define RE_LLAMA3                                                                                  \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "                     \
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_QWEN2                                                                                   \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "                          \
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

static cJSON *byte_level(bool use_regex) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "ByteLevel");
    cJSON_AddBoolToObject(o, "add_prefix_space", false);
    cJSON_AddBoolToObject(o, "trim_offsets", true);
    cJSON_AddBoolToObject(o, "use_regex", use_regex);
    return o;
}

/* The pre_tokenizer for GGUF tokenizer.ggml.pre, or NULL when it is not known. */
static cJSON *bpe_pretok(const char *pre, bool *ignore_merges) {
    *ignore_merges = false;
    if (strcmp(pre, "default") == 0 || strcmp(pre, "gpt2") == 0 || strcmp(pre, "gpt-2") == 0)
        return byte_level(true);
    cJSON *o = cJSON_CreateObject(), *seq;
    cJSON_AddStringToObject(o, "type", "Sequence");
    seq = cJSON_AddArrayToObject(o, "pretokenizers");
    if (strcmp(pre, "smollm") == 0 || strcmp(pre, "starcoder") == 0) {
        cJSON *d = cJSON_CreateObject();
        cJSON_AddStringToObject(d, "type", "Digits");
        cJSON_AddBoolToObject(d, "individual_digits", true);
        cJSON_AddItemToArray(seq, d);
        cJSON_AddItemToArray(seq, byte_level(true));
        return o;
    }
    const char *re = NULL;
    if (strcmp(pre, "llama3") == 0 || strcmp(pre, "llama-bpe") == 0) {
        re             = RE_LLAMA3;
        *ignore_merges = true; /* Llama-3: a word that is a token is taken whole */
    }
    if (strcmp(pre, "qwen2") == 0) re = RE_QWEN2;
    if (re == NULL) {
        cJSON_Delete(o);
        return NULL;
    }
    cJSON *s = cJSON_CreateObject();
    cJSON_AddStringToObject(s, "type", "Split");
    cJSON_AddStringToObject(cJSON_AddObjectToObject(s, "pattern"), "Regex", re);
    cJSON_AddStringToObject(s, "behavior", "Isolated");
    cJSON_AddBoolToObject(s, "invert", false);
    cJSON_AddItemToArray(seq, s);
    cJSON_AddItemToArray(seq, byte_level(false));
    return o;
}

static enum lmp_status bpe_json(const struct vocab *v, const struct lmp_gguf *g, const char *pre,
                                char **out, struct lmp_err *err) {
    bool   ignore = false;
    cJSON *pt     = bpe_pretok(pre, &ignore);
    if (pt == NULL)
        return lmp_err_set(err, LMP_EUNSUP,
                           "gguf pre-tokenizer '%s' has no tokenizer.json form here (known: "
                           "gpt2, smollm, starcoder, llama3, llama-bpe, qwen2)",
                           pre);
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "version", "1.0");
    cJSON_AddNullToObject(root, "truncation");
    cJSON_AddNullToObject(root, "padding");
    cJSON_AddItemToObject(root, "added_tokens", added_tokens(v));
    cJSON_AddNullToObject(root, "normalizer");
    cJSON_AddItemToObject(root, "pre_tokenizer", pt);
    cJSON *post = template_post(v);
    if (post == NULL) {
        post = byte_level(true);
        cJSON_ReplaceItemInObject(post, "add_prefix_space", cJSON_CreateBool(true));
        cJSON_ReplaceItemInObject(post, "trim_offsets", cJSON_CreateBool(false));
    }
    cJSON_AddItemToObject(root, "post_processor", post);
    cJSON *dec = byte_level(true);
    cJSON_ReplaceItemInObject(dec, "add_prefix_space", cJSON_CreateBool(true));
    cJSON_AddItemToObject(root, "decoder", dec);
    cJSON  *model  = bpe_model(v, false, ignore);
    cJSON  *merges = cJSON_AddArrayToObject(model, "merges");
    int64_t n      = lmp_gguf_arr_n(g, "tokenizer.ggml.merges", NULL);
    for (int64_t i = 0; i < n; i++) {
        struct lmp_gguf_str s  = lmp_gguf_arr_str(g, "tokenizer.ggml.merges", i);
        const char         *sp = memchr(s.s, ' ', s.len);
        if (sp == NULL || sp == s.s || (size_t)(sp - s.s) + 1 >= s.len) {
            cJSON_Delete(root);
            return lmp_err_set(err, LMP_EFORMAT, "gguf merge %lld is not 'left right'",
                               (long long)i);
        }
        cJSON_AddItemToArray(
            merges, merge_pair(s.s, (size_t)(sp - s.s), sp + 1, s.len - (size_t)(sp - s.s) - 1));
    }
    cJSON_AddItemToObject(root, "model", model);
    *out = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return *out ? LMP_OK : lmp_err_set(err, LMP_ENOMEM, "out of memory writing tokenizer.json");
}

/* --- tokenizer_config.json ------------------------------------------------------------ */

static char *tok_config(const struct vocab *v, const struct lmp_config *cfg, const char *chat,
                        size_t chat_len) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "tokenizer_class", "PreTrainedTokenizerFast");
    cJSON_AddBoolToObject(o, "add_bos_token", v->add_bos && v->bos >= 0);
    cJSON_AddBoolToObject(o, "add_eos_token", v->add_eos && v->eos >= 0);
    const char *keys[3] = {"bos_token", "eos_token", "unk_token"};
    int32_t     ids[3]  = {v->bos, v->eos, v->unk};
    for (int k = 0; k < 3; k++)
        if (ids[k] >= 0) cJSON_AddStringToObject(o, keys[k], v->text[ids[k]]);
    cJSON_AddBoolToObject(o, "clean_up_tokenization_spaces", false);
    cJSON_AddNumberToObject(o, "model_max_length", cfg->max_seq > 0 ? cfg->max_seq : 2048);
    if (chat) {
        char *c = lmp_strfmt("%.*s", (int)chat_len, chat);
        if (c) cJSON_AddStringToObject(o, "chat_template", c);
        free(c);
    }
    char *s = cJSON_Print(o);
    cJSON_Delete(o);
    return s;
}

/* --- sources -------------------------------------------------------------------------- */

static const char SPACE_U2581[] = "\xE2\x96\x81";

/* llama2.c tokenizer.bin: i32 max_len, then per token f32 score, i32 len, bytes. */
static enum lmp_status from_llama2c(const uint8_t *src, size_t n, const struct lmp_config *cfg,
                                    struct vocab *v, struct lmp_err *err) {
    struct lmp_tokenizer *t  = NULL;
    enum lmp_status       st = lmp_tokenizer_parse_llama2c(src, n, cfg->vocab_size,
                                                           "the artifact's tokenizer.bin", &t, err);
    if (st != LMP_OK) return st;
    int32_t nv = cfg->vocab_size;
    if (!vocab_alloc(v, nv, true)) {
        lmp_tokenizer_free(&t);
        return lmp_err_set(err, LMP_ENOMEM, "out of memory");
    }
    size_t pos = 4;
    for (int32_t i = 0; i < nv; i++) { /* layout validated by the parser */
        uint32_t ls;
        int32_t  len;
        memcpy(&ls, src + pos, 4);
        memcpy(&len, src + pos + 4, 4);
        memcpy(&v->score[i], &ls, 4);
        pos += 8;
        /* U+2581 for every space, as the SentencePiece model had it */
        size_t spaces = 0;
        for (int32_t k = 0; k < len; k++) spaces += src[pos + (size_t)k] == ' ';
        char *s = malloc((size_t)len + 2 * spaces + 1), *d = s;
        if (s == NULL) {
            lmp_tokenizer_free(&t);
            return lmp_err_set(err, LMP_ENOMEM, "out of memory");
        }
        for (int32_t k = 0; k < len; k++) {
            char ch = (char)src[pos + (size_t)k];
            if (ch == ' ')
                memcpy(d, SPACE_U2581, 3), d += 3;
            else
                *d++ = ch;
        }
        *d         = '\0';
        v->text[i] = s;
        v->type[i] = TT_NORMAL;
        size_t tl  = strlen(s);
        if (tl == 6 && strncmp(s, "<0x", 3) == 0 && s[5] == '>' && i >= 3) v->type[i] = TT_BYTE;
        pos += (size_t)len;
    }
    /* llama2.c stores "<unk>", "\n<s>\n", "\n</s>\n": the SentencePiece names are these */
    static const char *const special[3] = {"<unk>", "<s>", "</s>"};
    for (int32_t i = 0; i < 3 && i < nv; i++) {
        char *s = lmp_strfmt("%s", special[i]);
        if (s == NULL) {
            lmp_tokenizer_free(&t);
            return lmp_err_set(err, LMP_ENOMEM, "out of memory");
        }
        free(v->text[i]);
        v->text[i] = s;
    }
    if (nv > 0) v->type[0] = TT_UNKNOWN, v->unk = 0;
    if (nv > 1) v->type[1] = TT_CONTROL, v->bos = 1;
    if (nv > 2) v->type[2] = TT_CONTROL, v->eos = 2;
    v->add_bos = lmp_tokenizer_bos(t) >= 0;
    lmp_tokenizer_free(&t);
    return LMP_OK;
}

static bool gguf_id(const struct lmp_gguf *g, const char *key, int32_t n, int32_t *id) {
    int64_t x;
    if (!lmp_gguf_get_i64(g, key, &x) || x < 0 || x >= n) return false;
    *id = (int32_t)x;
    return true;
}

static enum lmp_status from_gguf(const struct lmp_gguf *g, bool spm, struct vocab *v,
                                 struct lmp_err *err) {
    enum lmp_gguf_type et;
    int64_t            n = lmp_gguf_arr_n(g, "tokenizer.ggml.tokens", &et);
    if (n <= 0 || n > INT32_MAX / 4 || et != LMP_GGUF_STRING)
        return lmp_err_set(err, LMP_EFORMAT, "gguf tokenizer: no tokenizer.ggml.tokens");
    if (!vocab_alloc(v, (int32_t)n, spm)) return lmp_err_set(err, LMP_ENOMEM, "out of memory");
    enum lmp_gguf_type tt, st;
    int64_t            n_types = lmp_gguf_arr_n(g, "tokenizer.ggml.token_type", &tt);
    int64_t            n_sc    = lmp_gguf_arr_n(g, "tokenizer.ggml.scores", &st);
    const uint8_t     *types   = lmp_gguf_arr_data(g, "tokenizer.ggml.token_type");
    const uint8_t     *sc      = lmp_gguf_arr_data(g, "tokenizer.ggml.scores");
    bool types_ok = n_types == n && (tt == LMP_GGUF_INT32 || tt == LMP_GGUF_UINT32) && types;
    bool sc_ok    = n_sc == n && st == LMP_GGUF_FLOAT32 && sc;
    if (spm && !sc_ok)
        return lmp_err_set(err, LMP_EFORMAT, "gguf tokenizer: no tokenizer.ggml.scores");
    for (int64_t i = 0; i < n; i++) {
        struct lmp_gguf_str s = lmp_gguf_arr_str(g, "tokenizer.ggml.tokens", i);
        if ((v->text[i] = lmp_strfmt("%.*s", (int)s.len, s.s)) == NULL)
            return lmp_err_set(err, LMP_ENOMEM, "out of memory");
        if (strlen(v->text[i]) != s.len)
            return lmp_err_set(err, LMP_EUNSUP, "gguf token %lld holds a NUL byte", (long long)i);
        int32_t ty = TT_NORMAL;
        if (types_ok) memcpy(&ty, types + 4 * i, 4);
        v->type[i] = (uint8_t)(ty >= 1 && ty <= 6 ? ty : TT_NORMAL);
        if (spm) memcpy(&v->score[i], sc + 4 * i, 4);
    }
    gguf_id(g, "tokenizer.ggml.bos_token_id", v->n, &v->bos);
    gguf_id(g, "tokenizer.ggml.eos_token_id", v->n, &v->eos);
    gguf_id(g, "tokenizer.ggml.unknown_token_id", v->n, &v->unk);
    bool b;
    v->add_bos = lmp_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b) ? b : spm;
    v->add_eos = lmp_gguf_get_bool(g, "tokenizer.ggml.add_eos_token", &b) ? b : false;
    return LMP_OK;
}

/* The id of a special token named in tokenizer_config.json (a string or {"content"}). */
static int32_t config_token(const cJSON *cfg, const char *key, const cJSON *tok) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (cJSON_IsObject(t)) t = cJSON_GetObjectItemCaseSensitive(t, "content");
    if (!cJSON_IsString(t)) return -1;
    const cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(tok, "added_tokens")) {
        const cJSON *c  = cJSON_GetObjectItemCaseSensitive(it, "content");
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
        if (cJSON_IsString(c) && cJSON_IsNumber(id) && strcmp(c->valuestring, t->valuestring) == 0)
            return (int32_t)id->valuedouble;
    }
    const cJSON *vid = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(tok, "model"), "vocab"),
        t->valuestring);
    return cJSON_IsNumber(vid) ? (int32_t)vid->valuedouble : -1;
}

static enum lmp_status from_hf(const uint8_t *src, size_t n, const struct lmp_config *cfg,
                               const char *hf_config, struct lmp_hf_tok_files *out,
                               struct lmp_err *err) {
    struct lmp_tokenizer *t = NULL;
    enum lmp_status       st =
        lmp_tokenizer_parse_hf((const char *)src, n, "the artifact's tokenizer.json", &t, err);
    if (st != LMP_OK) return st;
    out->bos = lmp_tokenizer_bos(t);
    out->eos = lmp_tokenizer_eos(t);
    lmp_tokenizer_free(&t);
    if ((out->tokenizer_json = malloc(n + 1)) == NULL)
        return lmp_err_set(err, LMP_ENOMEM, "out of memory");
    memcpy(out->tokenizer_json, src, n);
    out->tokenizer_json[n] = '\0';
    cJSON *tok             = cJSON_ParseWithLength((const char *)src, n);
    cJSON *c               = hf_config ? cJSON_Parse(hf_config) : NULL;
    if (c) {
        int32_t b = config_token(c, "bos_token", tok), e = config_token(c, "eos_token", tok);
        if (b >= 0) out->bos = b;
        if (e >= 0) out->eos = e;
        out->tokenizer_config_json = lmp_strfmt("%s", hf_config);
        snprintf(out->how, sizeof(out->how), "tokenizer.json and tokenizer_config.json copied");
    } else {
        struct vocab v;
        memset(&v, 0, sizeof(v));
        v.bos = out->bos, v.eos = out->eos, v.unk = -1, v.add_bos = out->bos >= 0;
        /* the names of bos/eos from the vocabulary */
        char *names[2] = {NULL, NULL};
        for (int k = 0; k < 2; k++) {
            int32_t      id = k ? out->eos : out->bos;
            const cJSON *it;
            cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(tok, "added_tokens")) {
                const cJSON *cc = cJSON_GetObjectItemCaseSensitive(it, "content");
                const cJSON *ii = cJSON_GetObjectItemCaseSensitive(it, "id");
                if (id >= 0 && cJSON_IsString(cc) && cJSON_IsNumber(ii) && ii->valuedouble == id)
                    names[k] = cc->valuestring;
            }
        }
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "tokenizer_class", "PreTrainedTokenizerFast");
        if (names[0]) cJSON_AddStringToObject(o, "bos_token", names[0]);
        if (names[1]) cJSON_AddStringToObject(o, "eos_token", names[1]);
        cJSON_AddBoolToObject(o, "clean_up_tokenization_spaces", false);
        cJSON_AddNumberToObject(o, "model_max_length", cfg->max_seq > 0 ? cfg->max_seq : 2048);
        out->tokenizer_config_json = cJSON_Print(o);
        cJSON_Delete(o);
        snprintf(out->how, sizeof(out->how),
                 "tokenizer.json copied, tokenizer_config.json made (no source directory)");
    }
    cJSON_Delete(c);
    cJSON_Delete(tok);
    if (out->tokenizer_config_json == NULL) return lmp_err_set(err, LMP_ENOMEM, "out of memory");
    return LMP_OK;
}

enum lmp_status lmp_export_hf_tokenizer(enum lmp_art_tok kind, const uint8_t *src, size_t n,
                                        const struct lmp_config *cfg, const char *hf_config_json,
                                        struct lmp_hf_tok_files *out, struct lmp_err *err) {
    assert(src && cfg && out);
    memset(out, 0, sizeof(*out));
    out->bos = out->eos = -1;
    if (kind == LMP_ART_TOK_HF) {
        enum lmp_status st = from_hf(src, n, cfg, hf_config_json, out, err);
        if (st != LMP_OK) lmp_hf_tok_files_release(out);
        return st;
    }
    struct vocab     v;
    struct lmp_gguf *g        = NULL;
    enum lmp_status  st       = LMP_OK;
    bool             spm      = true;
    const char      *chat     = NULL;
    size_t           chat_len = 0;
    char             pre[64]  = "default";
    memset(&v, 0, sizeof(v));
    if (kind == LMP_ART_TOK_LLAMA2C) {
        if ((st = from_llama2c(src, n, cfg, &v, err)) != LMP_OK) goto out;
        snprintf(out->how, sizeof(out->how), "rebuilt from llama2.c tokenizer.bin (spm, %d tokens)",
                 v.n);
    } else if (kind == LMP_ART_TOK_GGUF) {
        if ((st = lmp_gguf_parse(src, n, "the artifact's gguf tokenizer", &g, err)) != LMP_OK)
            goto out;
        struct lmp_tokenizer *t = NULL;
        if ((st = lmp_tokenizer_from_gguf(g, &t, err)) != LMP_OK) goto out;
        int32_t adds_bos = lmp_tokenizer_bos(t);
        lmp_tokenizer_free(&t);
        struct lmp_gguf_str model = {"", 0}, p;
        lmp_gguf_get_str(g, "tokenizer.ggml.model", &model);
        if (model.len == 5 && memcmp(model.s, "llama", 5) == 0) {
            spm = true;
        } else if (model.len == 4 && memcmp(model.s, "gpt2", 4) == 0) {
            spm = false;
            if (lmp_gguf_get_str(g, "tokenizer.ggml.pre", &p))
                snprintf(pre, sizeof(pre), "%.*s", (int)(p.len > 60 ? 60 : p.len), p.s);
        } else {
            st = lmp_err_set(err, LMP_EUNSUP,
                             "gguf tokenizer model '%.*s' has no tokenizer.json form here "
                             "(known: llama, gpt2)",
                             (int)(model.len > 40 ? 40 : model.len), model.s);
            goto out;
        }
        if ((st = from_gguf(g, spm, &v, err)) != LMP_OK) goto out;
        v.add_bos = adds_bos >= 0; /* what lmpress itself does with this tokenizer */
        struct lmp_gguf_str ct;
        if (lmp_gguf_get_str(g, "tokenizer.chat_template", &ct)) chat = ct.s, chat_len = ct.len;
        snprintf(out->how, sizeof(out->how), "rebuilt from gguf (%s%s, %d tokens)%s",
                 spm ? "llama spm" : "gpt2 bpe, pre ", spm ? "" : pre, v.n,
                 chat ? ", with chat template" : "");
    } else {
        st = lmp_err_set(err, LMP_EUNSUP, "unknown tokenizer kind %d", (int)kind);
        goto out;
    }
    if ((st = check_texts(&v, "tokenizer", err)) != LMP_OK) goto out;
    if (!vocab_index(&v)) {
        st = lmp_err_set(err, LMP_ENOMEM, "out of memory");
        goto out;
    }
    if (spm) {
        if ((out->tokenizer_json = spm_json(&v)) == NULL) {
            st = lmp_err_set(err, LMP_ENOMEM, "out of memory writing tokenizer.json");
            goto out;
        }
    } else if ((st = bpe_json(&v, g, pre, &out->tokenizer_json, err)) != LMP_OK) {
        goto out;
    }
    if ((out->tokenizer_config_json = tok_config(&v, cfg, chat, chat_len)) == NULL) {
        st = lmp_err_set(err, LMP_ENOMEM, "out of memory writing tokenizer_config.json");
        goto out;
    }
    out->bos = v.bos;
    out->eos = v.eos;
out:
    vocab_release(&v);
    lmp_gguf_close(&g);
    if (st != LMP_OK) lmp_hf_tok_files_release(out);
    return st;
}
