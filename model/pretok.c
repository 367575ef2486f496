/*  pretok - see pretok.h. The split behaviours follow the tokenizers library
 *  (tokenizers/src/tokenizer/normalizer.rs, NormalizedString::split): a pattern yields the
 *  piece as alternating (range, is_match) spans; invert flips is_match; the behaviour then
 *  keeps, drops or glues the spans.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "model/pretok.h"
#include "model/unicode.h" /* defines: lmp_utf8_decode(), lmp_utf8_encode() */

#include <assert.h>
#include <cjson/cJSON.h>
#include <pcre2.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* GPT-2's pattern (ByteLevel use_regex) */
static const char gpt2_re[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
/* The White_Space property (Rust's char::is_whitespace), for WhitespaceSplit */
#define WHITE_SPACE                                                                                \
    "\\t\\n\\x{0B}\\f\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{"   \
    "202F}"                                                                                        \
    "\\x{205F}\\x{3000}"
static const char white_space_re[] = "[" WHITE_SPACE "]";
/* Whitespace keeps \w+|[^\w\s]+ with Unicode's \w (UTS #18, as Oniguruma and Rust's regex
 * define it: Alphabetic, marks, decimal digits, connector punctuation, joiners), which is
 * wider than PCRE2's UCP \w (letters, numbers, underscore) */
#define WORD "\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\x{200C}\\x{200D}"
static const char whitespace_re[] = "[" WORD "]+|[^" WORD WHITE_SPACE "]+";

enum behavior { BEH_REMOVED, BEH_ISOLATED, BEH_PREV, BEH_NEXT, BEH_CONTIGUOUS };

enum step_kind { STEP_SPLIT, STEP_PREFIX_SPACE, STEP_METASPACE };

enum prepend { PREPEND_NEVER, PREPEND_FIRST, PREPEND_ALWAYS };

struct step {
    enum step_kind kind;
    pcre2_code    *re;       /* SPLIT: NULL for an empty String pattern (matches nothing) */
    enum behavior  behavior; /* SPLIT */
    bool           invert;   /* SPLIT */
    char           rep[8];   /* METASPACE: the replacement character, UTF-8 */
    size_t         rep_len;  /* METASPACE: its bytes */
    enum prepend   prepend;  /* METASPACE */
    bool           split;    /* METASPACE: split before every replacement character */
};

enum norm_kind {
    NORM_PREPEND,
    NORM_REPLACE,
    NORM_LOWERCASE,
    NORM_STRIP,
    NORM_NFC,
    NORM_NFD,
    NORM_NFKC,
    NORM_NFKD,
};

struct norm {
    enum norm_kind kind;
    pcre2_code    *re;          /* REPLACE: NULL for an empty String pattern */
    char          *str;         /* PREPEND: the prefix; REPLACE: the content */
    size_t         len;         /* bytes of str */
    bool           left, right; /* STRIP */
};

struct tok_pipe {
    struct norm *norm; /* (n_norm) */
    int          n_norm, cap_norm;
    struct step *step; /* (n_step) */
    int          n_step, cap_step;
};

/* --- building ------------------------------------------------------------------ */

#define MAX_STEPS 64 /* steps in one pipe, nested sequences included */
#define MAX_DEPTH 8  /* nesting of Sequence */

static void pipe_release(struct tok_pipe *p) {
    for (int i = 0; i < p->n_norm; i++) {
        pcre2_code_free(p->norm[i].re);
        free(p->norm[i].str);
    }
    for (int i = 0; i < p->n_step; i++) pcre2_code_free(p->step[i].re);
    free(p->norm);
    free(p->step);
}

void tok_pipe_free(struct tok_pipe **pp) {
    assert(pp);
    if (*pp == NULL) return;
    pipe_release(*pp);
    free(*pp);
    *pp = NULL;
}

/* Strict UTF-8: no overlong forms, no surrogates, no stray bytes (what PCRE2 accepts). */
static bool valid_utf8(const char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        char     enc[4];
        int      k = lmp_utf8_decode((const uint8_t *)s + i, n - i, &cp);
        if ((cp >= 0xD800 && cp <= 0xDFFF) || lmp_utf8_encode(cp, enc) != k ||
            memcmp(enc, s + i, (size_t)k) != 0)
            return false;
        i += (size_t)k;
    }
    return true;
}

/* PCRE2's UCP \s is \p{Z}, \h and \v, so it matches U+180E; the \s of Oniguruma (the
 * tokenizers library), of llama.cpp and of the scanners is the White_Space property. Rewrite
 * \s and \S as White_Space classes (inside a class, \s becomes the members; \S there is left
 * to PCRE2). Returns a malloc'ed pattern of *n bytes, or NULL on out-of-memory. */
static char *rewrite_space(const char *pat, size_t len, size_t *n) {
    static const char ws[] = WHITE_SPACE;
    size_t            cap = len + 1, w = 0;
    for (size_t i = 0; i + 1 < len; i++)
        if (pat[i] == '\\') cap += sizeof(ws) + 3, i++;
    char *o = malloc(cap);
    if (o == NULL) return NULL;
#define PUT(str, k) (memcpy(o + w, (str), (k)), w += (k))
    bool in_class = false;
    for (size_t i = 0; i < len;) {
        char c = pat[i];
        if (c == '\\' && i + 1 < len) {
            char d = pat[i + 1];
            if (d == 's') {
                if (!in_class) PUT("[", 1);
                PUT(ws, sizeof(ws) - 1);
                if (!in_class) PUT("]", 1);
            } else if (d == 'S' && !in_class) {
                PUT("[^", 2);
                PUT(ws, sizeof(ws) - 1);
                PUT("]", 1);
            } else {
                PUT(pat + i, 2);
            }
            i += 2;
            continue;
        }
        if (!in_class && c == '[') { /* "[]" and "[^]" start with a literal ']' */
            in_class = true;
            PUT(pat + i++, 1);
            if (i < len && pat[i] == '^') PUT(pat + i++, 1);
            if (i < len && pat[i] == ']') PUT(pat + i++, 1);
            continue;
        }
        if (in_class && c == '[' && i + 1 < len && pat[i + 1] == ':') { /* [:alpha:] */
            const char *e = strstr(pat + i + 2, ":]");
            size_t      k = e && (size_t)(e - pat) + 2 <= len ? (size_t)(e - pat) + 2 - i : 1;
            PUT(pat + i, k);
            i += k;
            continue;
        }
        if (in_class && c == ']') in_class = false;
        PUT(pat + i++, 1);
    }
#undef PUT
    o[w] = '\0';
    *n   = w;
    return o;
}

/* Compile pattern (a regex, or a literal when literal) once; *out NULL for an empty
 * literal. */
static enum lmp_status compile(const char *pat, size_t len, bool literal, const char *name,
                               const char *what, pcre2_code **out, struct lmp_err *err) {
    *out = NULL;
    if (literal && len == 0) return LMP_OK;
    if (!valid_utf8(pat, len))
        return lmp_err_set(err, LMP_EFORMAT, "'%s': %s pattern is not valid UTF-8", name, what);
    int        ec;
    PCRE2_SIZE eo;
    uint32_t   opt = PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);
    size_t     n   = len;
    char      *rw  = literal ? NULL : rewrite_space(pat, len, &n);
    if (!literal && rw == NULL) return lmp_err_set(err, LMP_ENOMEM, "'%s': out of memory", name);
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)(rw ? rw : pat), n, opt, &ec, &eo, NULL);
    free(rw);
    if (re == NULL && !literal) { /* the message and offset of the pattern as written */
        int         ec2;
        PCRE2_SIZE  eo2;
        pcre2_code *o = pcre2_compile((PCRE2_SPTR)pat, len, opt, &ec2, &eo2, NULL);
        if (o == NULL) ec = ec2, eo = eo2;
        pcre2_code_free(o);
    }
    if (re == NULL) {
        PCRE2_UCHAR msg[120];
        pcre2_get_error_message(ec, msg, sizeof(msg));
        return lmp_err_set(err, LMP_EFORMAT, "'%s': %s regex rejected at offset %zu: %s", name,
                           what, (size_t)eo, (const char *)msg);
    }
    (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* interpreted where JIT is absent */
    *out = re;
    return LMP_OK;
}

static enum lmp_status add_step(struct tok_pipe *p, const char *name, struct step **out,
                                struct lmp_err *err) {
    if (p->n_step == MAX_STEPS)
        return lmp_err_set(err, LMP_EUNSUP, "'%s': pre_tokenizer has more than %d steps", name,
                           MAX_STEPS);
    if (p->n_step == p->cap_step) {
        int          cap = p->cap_step ? p->cap_step * 2 : 4;
        struct step *v   = realloc(p->step, (size_t)cap * sizeof(*v));
        if (v == NULL) return lmp_err_set(err, LMP_ENOMEM, "'%s': out of memory", name);
        p->step     = v;
        p->cap_step = cap;
    }
    *out  = &p->step[p->n_step++];
    **out = (struct step){.kind = STEP_SPLIT, .behavior = BEH_ISOLATED};
    return LMP_OK;
}

static enum lmp_status add_norm(struct tok_pipe *p, enum norm_kind kind, const char *name,
                                struct norm **out, struct lmp_err *err) {
    if (p->n_norm == MAX_STEPS)
        return lmp_err_set(err, LMP_EUNSUP, "'%s': normalizer has more than %d steps", name,
                           MAX_STEPS);
    if (p->n_norm == p->cap_norm) {
        int          cap = p->cap_norm ? p->cap_norm * 2 : 4;
        struct norm *v   = realloc(p->norm, (size_t)cap * sizeof(*v));
        if (v == NULL) return lmp_err_set(err, LMP_ENOMEM, "'%s': out of memory", name);
        p->norm     = v;
        p->cap_norm = cap;
    }
    *out  = &p->norm[p->n_norm++];
    **out = (struct norm){.kind = kind};
    return LMP_OK;
}

static const char *type_of(const cJSON *o) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "type");
    return cJSON_IsString(t) ? t->valuestring : NULL;
}

/* Optional boolean field: default when absent or null; EFORMAT when another type. */
static enum lmp_status get_bool(const cJSON *o, const char *key, bool dflt, bool *v,
                                const char *name, const char *type, struct lmp_err *err) {
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(o, key);
    if (b == NULL || cJSON_IsNull(b)) {
        *v = dflt;
        return LMP_OK;
    }
    if (!cJSON_IsBool(b))
        return lmp_err_set(err, LMP_EFORMAT, "'%s': %s field '%s' is not a boolean", name, type,
                           key);
    *v = cJSON_IsTrue(b);
    return LMP_OK;
}

/* A {"String": s} or {"Regex": r} pattern object: compiled into *re. */
static enum lmp_status get_pattern(const cJSON *o, const char *name, const char *type,
                                   pcre2_code **re, struct lmp_err *err) {
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(o, "pattern");
    const cJSON *str = cJSON_GetObjectItemCaseSensitive(pat, "String");
    const cJSON *rx  = cJSON_GetObjectItemCaseSensitive(pat, "Regex");
    if (cJSON_IsString(str))
        return compile(str->valuestring, strlen(str->valuestring), true, name, type, re, err);
    if (cJSON_IsString(rx))
        return compile(rx->valuestring, strlen(rx->valuestring), false, name, type, re, err);
    return lmp_err_set(err, LMP_EFORMAT,
                       "'%s': %s has no pattern {\"String\": ...} or {\"Regex\": ...}", name, type);
}

static enum lmp_status split_step(struct tok_pipe *p, const char *re, bool literal,
                                  enum behavior beh, bool invert, const char *name,
                                  const char *what, struct lmp_err *err) {
    struct step    *s  = NULL;
    enum lmp_status st = add_step(p, name, &s, err);
    if (st != LMP_OK) return st;
    s->behavior = beh;
    s->invert   = invert;
    return compile(re, strlen(re), literal, name, what, &s->re, err);
}

static enum lmp_status pre_from_json(struct tok_pipe *p, const cJSON *o, int depth,
                                     const char *name, bool *byte_level, struct lmp_err *err) {
    const char *type = type_of(o);
    if (!cJSON_IsObject(o) || type == NULL)
        return lmp_err_set(err, LMP_EFORMAT, "'%s': a pre_tokenizer without a \"type\"", name);
    enum lmp_status st = LMP_OK;
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(o, "pretokenizers"), *it;
        if (!cJSON_IsArray(arr))
            return lmp_err_set(err, LMP_EFORMAT,
                               "'%s': pre_tokenizer Sequence without a pretokenizers array", name);
        if (depth == MAX_DEPTH)
            return lmp_err_set(err, LMP_EUNSUP,
                               "'%s': pre_tokenizer Sequences nested more than %d deep", name,
                               MAX_DEPTH);
        cJSON_ArrayForEach(it, arr) {
            if ((st = pre_from_json(p, it, depth + 1, name, byte_level, err)) != LMP_OK) return st;
        }
        return LMP_OK;
    }
    if (strcmp(type, "Split") == 0) {
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(o, "behavior");
        static const struct {
            const char   *name;
            enum behavior b;
        } behs[] = {
            {"Removed", BEH_REMOVED},         {"Isolated", BEH_ISOLATED},
            {"MergedWithPrevious", BEH_PREV}, {"MergedWithNext", BEH_NEXT},
            {"Contiguous", BEH_CONTIGUOUS},
        };
        size_t k = 0;
        while (k < sizeof(behs) / sizeof(behs[0]) &&
               !(cJSON_IsString(b) && strcmp(b->valuestring, behs[k].name) == 0))
            k++;
        if (k == sizeof(behs) / sizeof(behs[0]))
            return lmp_err_set(err, LMP_EUNSUP, "'%s': Split behavior '%.40s' is not supported",
                               name, cJSON_IsString(b) ? b->valuestring : "(missing)");
        bool invert = false;
        if ((st = get_bool(o, "invert", false, &invert, name, "Split", err)) != LMP_OK) return st;
        struct step *s = NULL;
        if ((st = add_step(p, name, &s, err)) != LMP_OK) return st;
        s->behavior = behs[k].b;
        s->invert   = invert;
        return get_pattern(o, name, "Split", &s->re, err);
    }
    if (strcmp(type, "ByteLevel") == 0) {
        bool prefix = false, use_regex = false;
        /* tokenizers requires add_prefix_space; absent, it is false as in the scanner path */
        if ((st = get_bool(o, "add_prefix_space", false, &prefix, name, type, err)) != LMP_OK ||
            (st = get_bool(o, "use_regex", true, &use_regex, name, type, err)) != LMP_OK)
            return st;
        *byte_level = true;
        if (prefix) {
            struct step *s = NULL;
            if ((st = add_step(p, name, &s, err)) != LMP_OK) return st;
            s->kind = STEP_PREFIX_SPACE;
        }
        return use_regex ? split_step(p, gpt2_re, false, BEH_ISOLATED, false, name, type, err)
                         : LMP_OK;
    }
    if (strcmp(type, "Metaspace") == 0) { /* SentencePiece's U+2581 for spaces */
        const cJSON *rep = cJSON_GetObjectItemCaseSensitive(o, "replacement");
        const cJSON *ps  = cJSON_GetObjectItemCaseSensitive(o, "prepend_scheme");
        uint32_t     cp  = 0;
        if (!cJSON_IsString(rep) || rep->valuestring[0] == '\0' ||
            !valid_utf8(rep->valuestring, strlen(rep->valuestring)) ||
            (size_t)lmp_utf8_decode((const uint8_t *)rep->valuestring, strlen(rep->valuestring),
                                    &cp) != strlen(rep->valuestring))
            return lmp_err_set(err, LMP_EFORMAT,
                               "'%s': Metaspace needs a \"replacement\" of one character", name);
        bool prefix = true, split = true;
        if ((st = get_bool(o, "add_prefix_space", true, &prefix, name, type, err)) != LMP_OK ||
            (st = get_bool(o, "split", true, &split, name, type, err)) != LMP_OK)
            return st;
        enum prepend pre = prefix ? PREPEND_ALWAYS : PREPEND_NEVER; /* before prepend_scheme */
        if (ps && !cJSON_IsNull(ps)) {
            static const char *const names[] = {"never", "first", "always"};
            int                      k       = 0;
            while (k < 3 && !(cJSON_IsString(ps) && strcmp(ps->valuestring, names[k]) == 0)) k++;
            if (k == 3)
                return lmp_err_set(err, LMP_EFORMAT,
                                   "'%s': Metaspace prepend_scheme '%.20s' (never, first, always)",
                                   name, cJSON_IsString(ps) ? ps->valuestring : "(not a string)");
            pre = (enum prepend)k;
        }
        struct step *m = NULL;
        if ((st = add_step(p, name, &m, err)) != LMP_OK) return st;
        m->kind    = STEP_METASPACE;
        m->rep_len = strlen(rep->valuestring);
        memcpy(m->rep, rep->valuestring, m->rep_len);
        m->prepend = pre;
        m->split   = split;
        return LMP_OK;
    }
    if (strcmp(type, "Digits") == 0) {
        bool single = false;
        if ((st = get_bool(o, "individual_digits", false, &single, name, type, err)) != LMP_OK)
            return st;
        return split_step(p, "\\p{N}", false, single ? BEH_ISOLATED : BEH_CONTIGUOUS, false, name,
                          type, err);
    }
    if (strcmp(type, "Whitespace") == 0) /* keep the matches of \w+|[^\w\s]+ */
        return split_step(p, whitespace_re, false, BEH_REMOVED, true, name, type, err);
    if (strcmp(type, "WhitespaceSplit") == 0)
        return split_step(p, white_space_re, false, BEH_REMOVED, false, name, type, err);
    return lmp_err_set(err, LMP_EUNSUP,
                       "'%s': pre_tokenizer type '%.40s' is not supported (Sequence, Split, "
                       "ByteLevel, Metaspace, Digits, Whitespace, WhitespaceSplit)",
                       name, type);
}

static enum lmp_status norm_from_json(struct tok_pipe *p, const cJSON *o, int depth,
                                      const char *name, struct lmp_err *err) {
    const char *type = type_of(o);
    if (!cJSON_IsObject(o) || type == NULL)
        return lmp_err_set(err, LMP_EFORMAT, "'%s': a normalizer without a \"type\"", name);
    enum lmp_status st = LMP_OK;
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(o, "normalizers"), *it;
        if (!cJSON_IsArray(arr))
            return lmp_err_set(err, LMP_EFORMAT,
                               "'%s': normalizer Sequence without a normalizers array", name);
        if (depth == MAX_DEPTH)
            return lmp_err_set(err, LMP_EUNSUP,
                               "'%s': normalizer Sequences nested more than %d deep", name,
                               MAX_DEPTH);
        cJSON_ArrayForEach(it, arr) {
            if ((st = norm_from_json(p, it, depth + 1, name, err)) != LMP_OK) return st;
        }
        return LMP_OK;
    }
    static const struct {
        const char    *name;
        enum norm_kind k;
    } simple[] = {
        {"Lowercase", NORM_LOWERCASE}, {"NFC", NORM_NFC},   {"NFD", NORM_NFD},
        {"NFKC", NORM_NFKC},           {"NFKD", NORM_NFKD},
    };
    struct norm *n = NULL;
    for (size_t k = 0; k < sizeof(simple) / sizeof(simple[0]); k++)
        if (strcmp(type, simple[k].name) == 0) return add_norm(p, simple[k].k, name, &n, err);
    if (strcmp(type, "Strip") == 0) {
        if ((st = add_norm(p, NORM_STRIP, name, &n, err)) != LMP_OK) return st;
        if ((st = get_bool(o, "strip_left", true, &n->left, name, type, err)) != LMP_OK) return st;
        return get_bool(o, "strip_right", true, &n->right, name, type, err);
    }
    if (strcmp(type, "Prepend") == 0 || strcmp(type, "Replace") == 0) {
        bool         prepend = strcmp(type, "Prepend") == 0;
        const cJSON *s       = cJSON_GetObjectItemCaseSensitive(o, prepend ? "prepend" : "content");
        if (!cJSON_IsString(s) || !valid_utf8(s->valuestring, strlen(s->valuestring)))
            return lmp_err_set(err, LMP_EFORMAT, "'%s': %s without a valid \"%s\" string", name,
                               type, prepend ? "prepend" : "content");
        if ((st = add_norm(p, prepend ? NORM_PREPEND : NORM_REPLACE, name, &n, err)) != LMP_OK)
            return st;
        n->len = strlen(s->valuestring);
        n->str = malloc(n->len + 1);
        if (n->str == NULL) return lmp_err_set(err, LMP_ENOMEM, "'%s': out of memory", name);
        memcpy(n->str, s->valuestring, n->len + 1);
        return prepend ? LMP_OK : get_pattern(o, name, type, &n->re, err);
    }
    return lmp_err_set(err, LMP_EUNSUP,
                       "'%s': normalizer type '%.40s' is not supported (Sequence, Prepend, "
                       "Replace, Lowercase, Strip, NFC, NFD, NFKC, NFKD)",
                       name, type);
}

enum lmp_status tok_pipe_from_json(const cJSON *normalizer, const cJSON *pre, const char *name,
                                   struct tok_pipe **out, bool *byte_level, struct lmp_err *err) {
    assert(name && out && byte_level);
    *out               = NULL;
    *byte_level        = false;
    struct tok_pipe *p = calloc(1, sizeof(*p));
    if (p == NULL) return lmp_err_set(err, LMP_ENOMEM, "'%s': out of memory", name);
    enum lmp_status st = LMP_OK;
    if (normalizer && !cJSON_IsNull(normalizer)) st = norm_from_json(p, normalizer, 0, name, err);
    if (st == LMP_OK && pre && !cJSON_IsNull(pre))
        st = pre_from_json(p, pre, 0, name, byte_level, err);
    if (st != LMP_OK) {
        tok_pipe_free(&p);
        return st;
    }
    *out = p;
    return LMP_OK;
}

enum lmp_status tok_pipe_from_regexes(const char *const *regexes, int n, const char *name,
                                      struct tok_pipe **out, struct lmp_err *err) {
    assert(name && out && n >= 0);
    *out               = NULL;
    struct tok_pipe *p = calloc(1, sizeof(*p));
    if (p == NULL) return lmp_err_set(err, LMP_ENOMEM, "'%s': out of memory", name);
    enum lmp_status st = LMP_OK;
    for (int i = 0; i < n && st == LMP_OK; i++)
        st = split_step(p, regexes[i], false, BEH_ISOLATED, false, name, "pre-tokenizer", err);
    if (st != LMP_OK) {
        tok_pipe_free(&p);
        return st;
    }
    *out = p;
    return LMP_OK;
}

/* --- running ------------------------------------------------------------------- */

struct buf {
    char  *s;
    size_t n, cap;
};

static bool buf_put(struct buf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n + 1) cap *= 2;
        char *v = realloc(b->s, cap);
        if (v == NULL) return false;
        b->s   = v;
        b->cap = cap;
    }
    if (n) memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = '\0';
    return true;
}

struct span {
    size_t a, b;  /* byte range */
    bool   match; /* SPLIT: a match of the pattern (after invert); later: remove */
};

struct spans {
    struct span *v;
    size_t       n, cap;
};

static bool spans_push(struct spans *l, size_t a, size_t b, bool match) {
    if (l->n == l->cap) {
        size_t       cap = l->cap ? l->cap * 2 : 64;
        struct span *v   = realloc(l->v, cap * sizeof(*v));
        if (v == NULL) return false;
        l->v   = v;
        l->cap = cap;
    }
    l->v[l->n++] = (struct span){a, b, match};
    return true;
}

/* Per-call matching state (match data and JIT stack are not shareable between threads). */
struct runner {
    pcre2_match_data    *md;
    pcre2_match_context *mc;
    pcre2_jit_stack     *js;
};

static enum lmp_status runner_init(struct runner *r) {
    *r    = (struct runner){0};
    r->md = pcre2_match_data_create(32, NULL);
    r->mc = pcre2_match_context_create(NULL);
    r->js = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, NULL);
    if (r->md == NULL || r->mc == NULL) return LMP_ENOMEM;
    if (r->js) pcre2_jit_stack_assign(r->mc, NULL, r->js);
    return LMP_OK;
}

static void runner_release(struct runner *r) {
    pcre2_match_data_free(r->md);
    pcre2_match_context_free(r->mc);
    pcre2_jit_stack_free(r->js);
}

/* Length of the UTF-8 character at s (valid UTF-8 assumed; 1 for a stray byte). */
static size_t char_len(const char *s, size_t n) {
    uint8_t c = (uint8_t)s[0];
    size_t  k = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
    return k <= n ? k : 1;
}

/* The matches of re in s[0..n) as alternating spans (the tokenizers library's find_matches:
 * an empty match is kept as an empty span, and the search goes on one character later). */
static enum lmp_status find_spans(struct runner *r, const pcre2_code *re, const char *s, size_t n,
                                  size_t base, struct spans *out) {
    if (re == NULL || n == 0) return spans_push(out, base, base + n, false) ? LMP_OK : LMP_ENOMEM;
    size_t   prev = 0, pos = 0;
    uint32_t opt = 0; /* the first call checks the subject's UTF-8, the others need not */
    while (pos <= n) {
        int rc = pcre2_match(re, (PCRE2_SPTR)s, n, pos, opt, r->md, r->mc);
        opt    = PCRE2_NO_UTF_CHECK;
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) return LMP_EINVAL;
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(r->md);
        size_t      a = ov[0], b = ov[1];
        if (b < a || a < prev) return LMP_EINVAL; /* \K games */
        if (prev != a && !spans_push(out, base + prev, base + a, false)) return LMP_ENOMEM;
        if (!spans_push(out, base + a, base + b, true)) return LMP_ENOMEM;
        prev = b;
        if (b == a) {
            if (b == n) break;
            pos = b + char_len(s + b, n - b);
        } else {
            pos = b;
        }
    }
    if (prev != n && !spans_push(out, base + prev, base + n, false)) return LMP_ENOMEM;
    return LMP_OK;
}

/* Apply a split behaviour to the spans of one piece, in place; afterwards .match means
 * "drop this span". */
static void apply_behavior(struct spans *l, size_t first, enum behavior beh, bool invert) {
    struct span *v = l->v + first;
    size_t       n = l->n - first, w = 0;
    if (invert)
        for (size_t i = 0; i < n; i++) v[i].match = !v[i].match;
    bool prev_match = false;
    switch (beh) {
    case BEH_REMOVED:
        return;
    case BEH_ISOLATED:
        for (size_t i = 0; i < n; i++) v[i].match = false;
        return;
    case BEH_PREV:
        for (size_t i = 0; i < n; i++) {
            bool m = v[i].match;
            if (m && !prev_match && w > 0)
                v[w - 1].b = v[i].b;
            else
                v[w++] = (struct span){v[i].a, v[i].b, false};
            prev_match = m;
        }
        break;
    case BEH_NEXT: /* the same from the right */
        w = n;
        for (size_t i = n; i-- > 0;) {
            bool m = v[i].match;
            if (m && !prev_match && w < n)
                v[w].a = v[i].a;
            else
                v[--w] = (struct span){v[i].a, v[i].b, false};
            prev_match = m;
        }
        memmove(v, v + w, (n - w) * sizeof(*v));
        w = n - w;
        break;
    case BEH_CONTIGUOUS:
        for (size_t i = 0; i < n; i++) {
            bool m = v[i].match;
            if (m == prev_match && w > 0)
                v[w - 1].b = v[i].b;
            else
                v[w++] = (struct span){v[i].a, v[i].b, false};
            prev_match = m;
        }
        break;
    }
    l->n = first + w;
}

/* Lowercase (Rust's char::to_lowercase: U+0130 becomes "i\u0307", the rest one to one). */
static bool lowercase(const char *s, size_t n, struct buf *o) {
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        i += (size_t)lmp_utf8_decode((const uint8_t *)s + i, n - i, &cp);
        char   u[8];
        size_t k;
        if (cp == 0x130) {
            memcpy(u, "i\xCC\x87", 3);
            k = 3;
        } else {
            k = (size_t)lmp_utf8_encode((uint32_t)utf8proc_tolower((utf8proc_int32_t)cp), u);
        }
        if (!buf_put(o, u, k)) return false;
    }
    return true;
}

static enum lmp_status normalize_one(struct runner *r, const struct norm *nm, const char *s,
                                     size_t n, struct buf *o) {
    switch (nm->kind) {
    case NORM_PREPEND:
        return (n == 0 || (buf_put(o, nm->str, nm->len) && buf_put(o, s, n))) ? LMP_OK : LMP_ENOMEM;
    case NORM_LOWERCASE:
        return lowercase(s, n, o) ? LMP_OK : LMP_ENOMEM;
    case NORM_STRIP: {
        size_t a = 0, b = n;
        while (a < b) { /* White_Space, as Rust's trim */
            uint32_t cp;
            int      k = lmp_utf8_decode((const uint8_t *)s + a, b - a, &cp);
            if (!lmp_unicode_is_space(cp) || !nm->left) break;
            a += (size_t)k;
        }
        while (b > a && nm->right) {
            size_t k = b - 1;
            while (k > a && ((uint8_t)s[k] & 0xC0) == 0x80) k--;
            uint32_t cp;
            lmp_utf8_decode((const uint8_t *)s + k, b - k, &cp);
            if (!lmp_unicode_is_space(cp)) break;
            b = k;
        }
        return buf_put(o, s + a, b - a) ? LMP_OK : LMP_ENOMEM;
    }
    case NORM_REPLACE: {
        struct spans    l  = {0};
        enum lmp_status st = find_spans(r, nm->re, s, n, 0, &l);
        for (size_t i = 0; i < l.n && st == LMP_OK; i++) {
            bool ok = l.v[i].match ? buf_put(o, nm->str, nm->len)
                                   : buf_put(o, s + l.v[i].a, l.v[i].b - l.v[i].a);
            if (!ok) st = LMP_ENOMEM;
        }
        free(l.v);
        return st;
    }
    case NORM_NFC:
    case NORM_NFD:
    case NORM_NFKC:
    case NORM_NFKD: {
        int opt = UTF8PROC_STABLE;
        if (nm->kind == NORM_NFC || nm->kind == NORM_NFKC)
            opt |= UTF8PROC_COMPOSE;
        else
            opt |= UTF8PROC_DECOMPOSE;
        if (nm->kind == NORM_NFKC || nm->kind == NORM_NFKD) opt |= UTF8PROC_COMPAT;
        if (n == 0) return buf_put(o, "", 0) ? LMP_OK : LMP_ENOMEM;
        utf8proc_uint8_t *dst = NULL;
        utf8proc_ssize_t  k =
            utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &dst, opt);
        if (k < 0) return k == UTF8PROC_ERROR_NOMEM ? LMP_ENOMEM : LMP_EINVAL;
        bool ok = buf_put(o, (const char *)dst, (size_t)k);
        free(dst);
        return ok ? LMP_OK : LMP_ENOMEM;
    }
    }
    return LMP_EINVAL;
}

/* Metaspace on every piece (tokenizers' pre_tokenizers/metaspace.rs): spaces become the
 * replacement, which is prepended to a piece not starting with it (always; first: only the
 * piece at the start of the input), then the piece splits before every replacement (the
 * delimiter merged with what follows). The pieces are rebuilt into nxt, spans into out. */
static bool metaspace(const struct step *m, const struct buf *cur, const struct spans *pieces,
                      bool at_start, struct buf *nxt, struct spans *out) {
    nxt->n = 0;
    for (size_t k = 0; k < pieces->n; k++) {
        const char  *a = cur->s + pieces->v[k].a;
        const size_t n = pieces->v[k].b - pieces->v[k].a, at = nxt->n;
        const bool   starts = /* after the replacement */
            (n > 0 && a[0] == ' ') || (n >= m->rep_len && memcmp(a, m->rep, m->rep_len) == 0);
        const bool pre = !starts && (n > 0 || m->prepend == PREPEND_ALWAYS) &&
                         (m->prepend == PREPEND_ALWAYS ||
                          (m->prepend == PREPEND_FIRST && at_start && pieces->v[k].a == 0));
        if (pre && !buf_put(nxt, m->rep, m->rep_len)) return false;
        for (size_t i = 0; i < n; i++)
            if (!(a[i] == ' ' ? buf_put(nxt, m->rep, m->rep_len) : buf_put(nxt, a + i, 1)))
                return false;
        size_t from = at; /* split: a new piece at every replacement but the first byte */
        for (size_t i = at; m->split && i + m->rep_len <= nxt->n; i++)
            if (i > from && memcmp(nxt->s + i, m->rep, m->rep_len) == 0) {
                if (!spans_push(out, from, i, false)) return false;
                from = i;
            }
        if (nxt->n > from && !spans_push(out, from, nxt->n, false)) return false;
    }
    return true;
}

enum lmp_status tok_pipe_run(const struct tok_pipe *p, const char *text, size_t len,
                             tok_piece_fn *fn, void *ctx) {
    return tok_pipe_run_at(p, text, len, true, fn, ctx);
}

enum lmp_status tok_pipe_run_at(const struct tok_pipe *p, const char *text, size_t len,
                                bool at_start, tok_piece_fn *fn, void *ctx) {
    assert(p && fn && (text || len == 0));
    struct runner   r;
    struct buf      cur = {0}, nxt = {0};
    struct spans    pieces = {0}, out = {0};
    enum lmp_status st = runner_init(&r);
    if (st != LMP_OK) goto done;
    st = LMP_ENOMEM;
    if (!buf_put(&cur, text, len)) goto done;
    for (int i = 0; i < p->n_norm; i++) { /* normalize the whole text */
        nxt.n = 0;
        if ((st = normalize_one(&r, &p->norm[i], cur.s, cur.n, &nxt)) != LMP_OK) goto done;
        if (nxt.s == NULL && !buf_put(&nxt, "", 0)) goto done;
        struct buf t = cur;
        cur          = nxt;
        nxt          = t;
    }
    st = LMP_ENOMEM;
    if (cur.n > 0 && !spans_push(&pieces, 0, cur.n, false)) goto done;
    for (int i = 0; i < p->n_step; i++) {
        const struct step *s = &p->step[i];
        out.n                = 0;
        if (s->kind == STEP_PREFIX_SPACE) { /* a space before each piece lacking one */
            nxt.n = 0;
            for (size_t k = 0; k < pieces.n; k++) {
                const char *a = cur.s + pieces.v[k].a;
                size_t      m = pieces.v[k].b - pieces.v[k].a, at = nxt.n;
                if ((a[0] != ' ' && !buf_put(&nxt, " ", 1)) || !buf_put(&nxt, a, m) ||
                    !spans_push(&out, at, nxt.n, false))
                    goto done;
            }
            struct buf t = cur;
            cur          = nxt;
            nxt          = t;
        } else if (s->kind == STEP_METASPACE) {
            if (!metaspace(s, &cur, &pieces, at_start, &nxt, &out)) goto done;
            struct buf t = cur;
            cur          = nxt;
            nxt          = t;
        } else {
            for (size_t k = 0; k < pieces.n; k++) {
                size_t a = pieces.v[k].a, first = out.n;
                st = find_spans(&r, s->re, cur.s + a, pieces.v[k].b - a, a, &out);
                if (st != LMP_OK) goto done;
                apply_behavior(&out, first, s->behavior, s->invert);
                size_t w = first; /* drop removed and empty spans */
                for (size_t j = first; j < out.n; j++)
                    if (!out.v[j].match && out.v[j].b > out.v[j].a) out.v[w++] = out.v[j];
                out.n = w;
            }
            st = LMP_ENOMEM;
        }
        struct spans t = pieces;
        pieces         = out;
        out            = t;
    }
    st = LMP_OK;
    for (size_t k = 0; k < pieces.n && st == LMP_OK; k++)
        st = fn(ctx, cur.s + pieces.v[k].a, pieces.v[k].b - pieces.v[k].a);
done:
    runner_release(&r);
    free(cur.s);
    free(nxt.s);
    free(pieces.v);
    free(out.v);
    return st;
}
