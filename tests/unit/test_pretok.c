/*  test_pretok - tokenizer.json normalizers and pre-tokenizers through PCRE2 (model/pretok.c)
 *
 *  The expected splits are derived by hand from the tokenizers library's rules
 *  (NormalizedString::split and the pre-tokenizers' definitions); the refusals name the
 *  file and the unsupported type; and the hand-written scanners of tokenizer_bpe.c split
 *  WikiText-2 and a multilingual text (tests/data/multilingual.txt) exactly as PCRE2 runs of
 *  the patterns they implement.
 */
#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "model/pretok.h"
#include "model/tokenizer.h"
#include "model/gguf.h"        /* defines: lmp_gguf_parse */
#include "model/unicode.h"     /* defines: lmp_gpt2_byte_to_char, lmp_utf8_encode */
#include "base/file.h"         /* defines: lmp_file_read_all */
#include "tests/check.h"       /* defines: CHECK, RUN, check_report, check_shared_file */
#include "tests/gguf_writer.h" /* defines: gw_init, gw_kv_*, gw_finish */

/* --- helpers --------------------------------------------------------------------- */

struct words {
    char   s[4096]; /* "[w1][w2]..." */
    size_t n;
};

static enum lmp_status put_word(void *ctx, const char *s, size_t len) {
    struct words *w = ctx;
    int           k = snprintf(w->s + w->n, sizeof(w->s) - w->n, "[%.*s]", (int)len, s);
    if (k < 0 || (size_t)k >= sizeof(w->s) - w->n) return LMP_ENOMEM;
    w->n += (size_t)k;
    return LMP_OK;
}

/* Split text with the pipe of {"normalizer": norm, "pre_tokenizer": pre} (JSON texts, or
 * NULL) and compare with want ("[a][b]"). */
static void check_split(const char *norm, const char *pre, const char *text, const char *want) {
    cJSON           *jn = norm ? cJSON_Parse(norm) : NULL, *jp = pre ? cJSON_Parse(pre) : NULL;
    struct tok_pipe *p   = NULL;
    struct lmp_err   err = {0};
    bool             bl;
    CHECK((norm == NULL || jn) && (pre == NULL || jp));
    CHECK(tok_pipe_from_json(jn, jp, "t.json", &p, &bl, &err) == LMP_OK);
    struct words w = {{0}, 0};
    if (p) CHECK(tok_pipe_run(p, text, strlen(text), put_word, &w) == LMP_OK);
    if (strcmp(w.s, want) != 0)
        fprintf(stderr, "  %s | %s on '%s':\n    got  %s\n    want %s %s\n", norm ? norm : "-",
                pre ? pre : "-", text, w.s, want, err.msg);
    CHECK(strcmp(w.s, want) == 0);
    tok_pipe_free(&p);
    cJSON_Delete(jn);
    cJSON_Delete(jp);
}

#define SPLIT_STR(b, inv)                                                                          \
    "{\"type\":\"Split\",\"pattern\":{\"String\":\" \"},\"behavior\":\"" b "\",\"invert\":" inv "}"

/* --- behaviours ------------------------------------------------------------------- */

/* Metaspace (U+2581 written "_" here through replacement "_"): spaces replaced, the prefix
 * by prepend_scheme (tok_pipe_run's text begins the input), split before each "_" */
static void test_metaspace(void) {
#define MS(scheme, split)                                                                          \
    "{\"type\":\"Metaspace\",\"replacement\":\"_\",\"prepend_scheme\":\"" scheme                   \
    "\",\"split\":" split "}"
    check_split(NULL, MS("always", "true"), "a b  c", "[_a][_b][_][_c]");
    check_split(NULL, MS("always", "false"), "a b  c", "[_a_b__c]");
    check_split(NULL, MS("first", "false"), "a b", "[_a_b]");
    check_split(NULL, MS("never", "true"), "a b", "[a][_b]");
    check_split(NULL, MS("always", "true"), " a", "[_a]"); /* already starts with it */
    /* after a Split, "first" prefixes only the piece at the start, "always" each one */
    check_split(NULL,
                "{\"type\":\"Sequence\",\"pretokenizers\":[" SPLIT_STR("Isolated", "false") "," MS(
                    "first", "true") "]}",
                "a b", "[_a][_][b]");
    check_split(NULL,
                "{\"type\":\"Sequence\",\"pretokenizers\":[" SPLIT_STR("Isolated", "false") "," MS(
                    "always", "true") "]}",
                "a b", "[_a][_][_b]");
    /* the legacy form: add_prefix_space (true: always) */
    check_split(NULL, "{\"type\":\"Metaspace\",\"replacement\":\"_\",\"add_prefix_space\":true}",
                "a b", "[_a][_b]");
#undef MS
    /* a part of a longer input (text after an added token): "first" adds no prefix */
    cJSON           *jp  = cJSON_Parse("{\"type\":\"Metaspace\",\"replacement\":\"_\","
                                                  "\"prepend_scheme\":\"first\",\"split\":true}");
    struct tok_pipe *p   = NULL;
    struct lmp_err   err = {0};
    bool             bl;
    CHECK(jp && tok_pipe_from_json(NULL, jp, "t.json", &p, &bl, &err) == LMP_OK && !bl);
    struct words w = {{0}, 0};
    if (p) CHECK(tok_pipe_run_at(p, "a b", 3, false, put_word, &w) == LMP_OK);
    CHECK(strcmp(w.s, "[a][_b]") == 0);
    tok_pipe_free(&p);
    cJSON_Delete(jp);
}

static void test_split_behaviors(void) {
    /* "a b  c": spans [a] [ ]* [b] [ ]* [ ]* [c] (* = match) */
    check_split(NULL, SPLIT_STR("Removed", "false"), "a b  c", "[a][b][c]");
    check_split(NULL, SPLIT_STR("Isolated", "false"), "a b  c", "[a][ ][b][ ][ ][c]");
    check_split(NULL, SPLIT_STR("MergedWithPrevious", "false"), "a b  c", "[a ][b ][ ][c]");
    check_split(NULL, SPLIT_STR("MergedWithNext", "false"), "a b  c", "[a][ b][ ][ c]");
    check_split(NULL, SPLIT_STR("Contiguous", "false"), "a b  c", "[a][ ][b][  ][c]");
    check_split(NULL, SPLIT_STR("Removed", "true"), "a b  c", "[ ][ ][ ]");
    check_split(NULL, SPLIT_STR("MergedWithPrevious", "true"), "a b  c", "[a][ b][ ][ c]");
    /* a regex, an empty String pattern (no match), an empty text */
    check_split(NULL,
                "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"\\\\p{Lu}\"},"
                "\"behavior\":\"MergedWithNext\",\"invert\":false}",
                "helloWorldFooBAR", "[hello][World][Foo][B][A][R]");
    check_split(NULL,
                "{\"type\":\"Split\",\"pattern\":{\"String\":\"\"},\"behavior\":\"Isolated\"}",
                "ab c", "[ab c]");
    check_split(NULL, SPLIT_STR("Isolated", "false"), "", "");
    /* \s and \S are White_Space (as Oniguruma's), not PCRE2's UCP \s with U+180E */
    check_split(NULL,
                "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"\\\\s+\"},\"behavior\":\"Removed\"}",
                "a\xE1\xA0\x8E"
                "b c\xC2\x85"
                "d",
                "[a\xE1\xA0\x8E"
                "b][c][d]");
    check_split(NULL,
                "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"[^\\\\s]+|\\\\S\"},"
                "\"behavior\":\"Removed\",\"invert\":true}",
                "a\xE1\xA0\x8E"
                "b c",
                "[a\xE1\xA0\x8E"
                "b][c]");
    /* a regex that can match empty: empty matches are dropped, the rest kept */
    check_split(NULL,
                "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"x*\"},\"behavior\":\"Isolated\"}",
                "axxb", "[a][xx][b]");
}

static void test_pretokenizers(void) {
    static const char digits1[] = "{\"type\":\"Digits\",\"individual_digits\":true}";
    static const char digitsN[] = "{\"type\":\"Digits\",\"individual_digits\":false}";
    check_split(NULL, digits1, "ab12c3\xD9\xA3", "[ab][1][2][c][3][\xD9\xA3]");
    check_split(NULL, digitsN, "ab12c3", "[ab][12][c][3]");
    /* ByteLevel: GPT-2 regex; add_prefix_space prefixes every piece of the previous step */
    check_split(NULL, "{\"type\":\"ByteLevel\",\"add_prefix_space\":true}", "hello world's",
                "[ hello][ world]['s]");
    check_split(NULL, "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":false}",
                "a b", "[a b]");
    check_split(NULL,
                "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Digits\","
                "\"individual_digits\":true},{\"type\":\"ByteLevel\",\"add_prefix_space\":true}]}",
                "a1b", "[ a][ 1][ b]");
    /* each piece is a string of its own: \s+(?!\S) sees the piece's end */
    check_split(NULL, "{\"type\":\"ByteLevel\",\"add_prefix_space\":false}", "a  b", "[a][ ][ b]");
    check_split(NULL,
                "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":"
                "{\"String\":\"x\"},\"behavior\":\"Removed\"},{\"type\":\"ByteLevel\","
                "\"add_prefix_space\":false}]}",
                "a  xb", "[a][  ][b]");
    check_split(NULL, "{\"type\":\"Whitespace\"}", "Hello, world!  x_1",
                "[Hello][,][world][!][x_1]");
    check_split(NULL, "{\"type\":\"WhitespaceSplit\"}",
                "a \tb\xC2\xA0"
                "c\xE3\x80\x80"
                "d",
                "[a][b][c][d]");
}

static void test_normalizers(void) {
    static const char bl[] = "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,"
                             "\"use_regex\":false}";
    check_split("{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\",\"prepend\":"
                "\"\xE2\x96\x81\"},{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},"
                "\"content\":\"\xE2\x96\x81\"}]}",
                bl, "a b",
                "[\xE2\x96\x81"
                "a\xE2\x96\x81"
                "b]");
    check_split("{\"type\":\"Prepend\",\"prepend\":\"x\"}", bl, "", ""); /* empty stays empty */
    check_split("{\"type\":\"Replace\",\"pattern\":{\"Regex\":\"\\\\s+\"},\"content\":\" \"}", bl,
                "a \t\nb  c", "[a b c]");
    /* Lowercase: Unicode simple case mapping, U+0130 -> "i\u0307" */
    check_split("{\"type\":\"Lowercase\"}", bl,
                "\xC3\x80"
                "B\xC4\xB0\xCE\xA3", /* ÀBİΣ */
                "[\xC3\xA0"
                "bi\xCC\x87\xCF\x83]");
    check_split("{\"type\":\"NFC\"}", bl, "e\xCC\x81", "[\xC3\xA9]");
    check_split("{\"type\":\"NFD\"}", bl, "\xC3\xA9", "[e\xCC\x81]");
    check_split("{\"type\":\"NFKC\"}", bl, "\xEF\xAC\x81", "[fi]");
    check_split("{\"type\":\"NFKD\"}", bl, "\xC2\xBD",
                "[1\xE2\x81\x84"
                "2]");
    check_split("{\"type\":\"Strip\",\"strip_left\":true,\"strip_right\":false}", bl, "  a b  ",
                "[a b  ]");
}

/* --- refusals, through the tokenizer.json loader --------------------------------------- */

static void check_refused(const char *normalizer, const char *pre, enum lmp_status want,
                          const char *needle) {
    char json[2048];
    snprintf(json, sizeof(json),
             "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},"
             "\"normalizer\":%s,\"pre_tokenizer\":%s}",
             normalizer, pre);
    struct lmp_tokenizer *t   = NULL;
    struct lmp_err        err = {0};
    enum lmp_status       st  = lmp_tokenizer_parse_hf(json, strlen(json), "tok.json", &t, &err);
    if (st != want || strstr(err.msg, needle) == NULL || strstr(err.msg, "'tok.json'") == NULL)
        fprintf(stderr, "  %s / %s: %s (%s), want %s and '%s'\n", normalizer, pre,
                lmp_status_str(st), err.msg, lmp_status_str(want), needle);
    CHECK(st == want && t == NULL);
    CHECK(strstr(err.msg, needle) != NULL && strstr(err.msg, "'tok.json'") != NULL);
    CHECK(strchr(err.msg, '\n') == NULL);
    lmp_tokenizer_free(&t);
}

static void test_refusals(void) {
    static const char bl[] = "{\"type\":\"ByteLevel\"}";
    /* Metaspace is run, but a vocabulary without ByteLevel needs its byte tokens or unk */
    check_refused("null", "{\"type\":\"Metaspace\",\"replacement\":\"x\"}", LMP_EUNSUP,
                  "byte_fallback");
    check_refused("null", "{\"type\":\"BertPreTokenizer\"}", LMP_EUNSUP, "'BertPreTokenizer'");
    check_refused("{\"type\":\"BertNormalizer\"}", bl, LMP_EUNSUP, "'BertNormalizer'");
    check_refused("{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Precompiled\"}]}", bl,
                  LMP_EUNSUP, "'Precompiled'");
    check_refused("null",
                  "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(\"},\"behavior\":\"Isolated\"}",
                  LMP_EFORMAT, "regex");
    check_refused("null",
                  "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"a\"},\"behavior\":\"Sideways\"}",
                  LMP_EUNSUP, "'Sideways'");
    check_refused("null", "{\"type\":\"Split\",\"behavior\":\"Isolated\"}", LMP_EFORMAT, "pattern");
    check_refused("null",
                  "{\"type\":\"Split\",\"pattern\":{\"String\":\"a\"},\"behavior\":\"Isolated\","
                  "\"invert\":1}",
                  LMP_EFORMAT, "'invert'");
    check_refused("null", "{\"type\":\"Digits\"}", LMP_EUNSUP, "without ByteLevel");
    check_refused("{\"type\":\"Replace\",\"pattern\":{\"String\":\"a\"}}", bl, LMP_EFORMAT,
                  "content");
    check_refused("{\"type\":\"Prepend\",\"prepend\":\"\xff\"}", bl, LMP_EFORMAT, "prepend");
    check_refused("7", bl, LMP_EFORMAT, "normalizer");
    char deep[1024] = "", tail[512] = ""; /* Sequences nested too deep */
    for (int i = 0; i < 12; i++) {
        strcat(deep, "{\"type\":\"Sequence\",\"pretokenizers\":[");
        strcat(tail, "]}");
    }
    strcat(deep, bl);
    strcat(deep, tail);
    check_refused("null", deep, LMP_EUNSUP, "nested");
}

/* A whole tokenizer.json through the pipe: Lowercase, then Digits and ByteLevel. */
static void test_pipe_tokenizer(void) {
    static const char json[] =
        "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2,\"\\u0120\":3,"
        "\"\\u0120ab\":4,\"1\":5,\"2\":6,\"12\":7},\"merges\":[\"a b\",\"\\u0120 ab\",\"1 2\"]},"
        "\"normalizer\":{\"type\":\"Lowercase\"},"
        "\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Digits\","
        "\"individual_digits\":true},{\"type\":\"ByteLevel\",\"add_prefix_space\":false}]}}";
    struct lmp_tokenizer *t   = NULL;
    struct lmp_err        err = {0};
    CHECK(lmp_tokenizer_parse_hf(json, sizeof(json) - 1, "pipe.json", &t, &err) == LMP_OK);
    if (t == NULL) {
        fprintf(stderr, "  %s\n", err.msg);
        return;
    }
    CHECK(strcmp(lmp_tokenizer_describe(t), "hf bpe (pcre2), 8 tokens") == 0);
    int32_t *ids;
    int64_t  n;
    /* "AB AB12" -> "ab ab12" -> [ab][ ab][1][2]: "12" never merges (digits are split) */
    CHECK(lmp_tokenizer_encode(t, "AB AB12", 7, false, &ids, &n, NULL) == LMP_OK);
    CHECK(n == 4 && ids[0] == 2 && ids[1] == 4 && ids[2] == 5 && ids[3] == 6);
    free(ids);
    /* invalid UTF-8 and a lone surrogate's bytes are U+FFFD, not an engine error */
    CHECK(lmp_tokenizer_encode(t, "a\xff\xed\xa0\x80", 5, false, &ids, &n, NULL) == LMP_OK);
    free(ids);
    lmp_tokenizer_free(&t);
}

/* byte_fallback: a byte without its GPT-2 char token takes its <0xXX> token. */
static void test_byte_fallback(void) {
    static const char json[] =
        "{\"model\":{\"type\":\"BPE\",\"byte_fallback\":true,\"vocab\":{\"a\":0,"
        "\"<0x62>\":1},\"merges\":[]},\"pre_tokenizer\":{\"type\":\"ByteLevel\"}}";
    struct lmp_tokenizer *t   = NULL;
    struct lmp_err        err = {0};
    CHECK(lmp_tokenizer_parse_hf(json, sizeof(json) - 1, "bf.json", &t, &err) == LMP_OK);
    int32_t *ids;
    int64_t  n;
    CHECK(t && lmp_tokenizer_encode(t, "ab", 2, false, &ids, &n, NULL) == LMP_OK);
    CHECK(t && n == 2 && ids[0] == 0 && ids[1] == 1);
    if (t) free(ids);
    lmp_tokenizer_free(&t);
}

/* --- scanners against PCRE2 ------------------------------------------------------------ */

struct lens {
    size_t *v;
    size_t  n, cap;
};

static enum lmp_status put_len(void *ctx, const char *s, size_t len) {
    (void)s;
    struct lens *l = ctx;
    if (l->n == l->cap) {
        size_t  cap = l->cap ? l->cap * 2 : 1024;
        size_t *v   = realloc(l->v, cap * sizeof(*v));
        if (v == NULL) return LMP_ENOMEM;
        l->v   = v;
        l->cap = cap;
    }
    l->v[l->n++] = len;
    return LMP_OK;
}

static const char llama3_re[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}{1,3}| "
    "?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+";
static const char qwen2_re[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}| "
    "?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+";

/* The PCRE2 pipe (as a tokenizer.json would declare it) that kind's scanner implements. */
static struct tok_pipe *pipe_of(enum tok_pretok kind) {
    char json[1024];
    switch (kind) {
    case TOK_PRETOK_GPT2:
        snprintf(json, sizeof(json), "{\"type\":\"ByteLevel\",\"add_prefix_space\":false}");
        break;
    case TOK_PRETOK_SMOLLM:
        snprintf(json, sizeof(json),
                 "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Digits\","
                 "\"individual_digits\":true},{\"type\":\"ByteLevel\",\"add_prefix_space\":"
                 "false}]}");
        break;
    default:
        snprintf(json, sizeof(json),
                 "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"%s\"},\"behavior\":\"Isolated\"}",
                 kind == TOK_PRETOK_LLAMA3 ? llama3_re : qwen2_re);
        break;
    }
    cJSON           *j   = cJSON_Parse(json);
    struct tok_pipe *p   = NULL;
    struct lmp_err   err = {0};
    bool             bl;
    CHECK(j != NULL && tok_pipe_from_json(NULL, j, "scan", &p, &bl, &err) == LMP_OK);
    if (p == NULL) fprintf(stderr, "  %s\n", err.msg);
    cJSON_Delete(j);
    return p;
}

static void check_same_split(enum tok_pretok kind, const char *what, const char *text, size_t len) {
    struct tok_pipe *p = pipe_of(kind);
    struct lens      a = {0}, b = {0};
    if (p == NULL) return;
    CHECK(tok_bpe_scan(kind, text, len, put_len, &a) == LMP_OK);
    CHECK(tok_pipe_run(p, text, len, put_len, &b) == LMP_OK);
    size_t off = 0, i = 0;
    while (i < a.n && i < b.n && a.v[i] == b.v[i]) off += a.v[i++];
    bool same = a.n == b.n && i == a.n;
    if (!same)
        fprintf(stderr,
                "  %s, pretok %d: scanner %zu words, pcre2 %zu; first difference at "
                "byte %zu: '%.*s' vs '%.*s'\n",
                what, (int)kind, a.n, b.n, off, (int)(i < a.n ? a.v[i] : 0), text + off,
                (int)(i < b.n ? b.v[i] : 0), text + off);
    else
        fprintf(stderr, "  %s, pretok %d: %zu words, identical\n", what, (int)kind, a.n);
    CHECK(same);
    free(a.v);
    free(b.v);
    tok_pipe_free(&p);
}

static const char edge_text[] =
    "  x 's 'S 'll 'LL 'Re 've'd'm't 123456789 1 12 1234\n\n\n  \n\t \r\n\r\r x  \n"
    "a\xC2\xA0\xC2\xA0"
    "b \xE3\x80\x80 end   \n   !!!?? ...\n\n x' ' '' 'x '1 ' "
    "\xD9\xA3\xD9\xA4 \xE2\x85\xA0\xE2\x85\xA1 \xC2\xBD x\xCC\x81y \xF0\x9F\x98\x80\xF0\x9F"
    "\x98\x80 \xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD  \xE1\xA0\x8E x\xE1\xA0\x8E\xE1\xA0\x8E \x1C\x1C "
    "\xC2\x85\xC2\x85x \xE2\x80\x8B \x0B\x0C";

static void test_scanners_match_pcre2(void) {
    static const enum tok_pretok kinds[] = {TOK_PRETOK_GPT2, TOK_PRETOK_SMOLLM, TOK_PRETOK_LLAMA3,
                                            TOK_PRETOK_QWEN2};
    char                        *multi = NULL, *wiki = NULL;
    size_t                       n_multi = 0, n_wiki = 0;
    struct lmp_err               err = {0};
    CHECK(lmp_file_read_all(LMP_SOURCE_DIR "/tests/data/multilingual.txt", &multi, &n_multi,
                            &err) == LMP_OK);
    const char *wpath = check_shared_file(0, "data/wikitext2_test_join.txt");
    if (wpath && lmp_file_read_all(wpath, &wiki, &n_wiki, &err) != LMP_OK) wiki = NULL;
    for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
        check_same_split(kinds[k], "edge cases", edge_text, sizeof(edge_text) - 1);
        if (multi) check_same_split(kinds[k], "multilingual.txt", multi, n_multi);
        if (wiki) check_same_split(kinds[k], "wikitext-2", wiki, n_wiki);
    }
    free(multi);
    free(wiki);
}

/* A pipe of regexes (the GGUF tokenizer.ggml.pre path) splits as the Split steps would. */
static void test_regex_list(void) {
    static const char *const res[] = {"\\p{N}", "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| "
                                                "?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"};
    struct tok_pipe         *p     = NULL;
    struct lmp_err           err   = {0};
    CHECK(tok_pipe_from_regexes(res, 2, "x.gguf", &p, &err) == LMP_OK);
    struct words w = {{0}, 0};
    if (p) CHECK(tok_pipe_run(p, "ab12 cd", 7, put_word, &w) == LMP_OK);
    CHECK(strcmp(w.s, "[ab][1][2][ cd]") == 0);
    tok_pipe_free(&p);
    static const char *const bad[] = {"[a"};
    CHECK(tok_pipe_from_regexes(bad, 1, "x.gguf", &p, &err) == LMP_EFORMAT && p == NULL);
    CHECK(strstr(err.msg, "'x.gguf'") != NULL);
}

/* A byte-level GGUF tokenizer (every byte's char, "Ġa") named by tokenizer.ggml.pre. */
static enum lmp_status gguf_with_pre(const char *pre, struct lmp_tokenizer **t,
                                     struct lmp_err *err) {
    static char chars[256][4];
    const char *tokens[257];
    int32_t     types[257];
    for (int b = 0; b < 256; b++) {
        int k       = lmp_utf8_encode(lmp_gpt2_byte_to_char((uint8_t)b), chars[b]);
        chars[b][k] = '\0';
        tokens[b]   = chars[b];
        types[b]    = 1;
    }
    tokens[256]                 = "\xC4\xA0"
                                  "a";
    types[256]                  = 1;
    static const char *merges[] = {"\xC4\xA0 a"};
    struct gw          w;
    gw_init(&w);
    gw_kv_str(&w, "general.architecture", "llama");
    gw_kv_str(&w, "tokenizer.ggml.model", "gpt2");
    gw_kv_str(&w, "tokenizer.ggml.pre", pre);
    gw_kv_arr_str(&w, "tokenizer.ggml.tokens", tokens, 257);
    gw_kv_arr_i32(&w, "tokenizer.ggml.token_type", types, 257);
    gw_kv_arr_str(&w, "tokenizer.ggml.merges", merges, 1);
    struct gw_buf    img = gw_finish(&w, 3);
    struct lmp_gguf *g   = NULL;
    enum lmp_status  st  = lmp_gguf_parse(img.p, img.n, "pre.gguf", &g, err);
    if (st == LMP_OK) st = lmp_tokenizer_from_gguf(g, t, err);
    lmp_gguf_close(&g);
    free(img.p);
    return st;
}

/* llama.cpp's tokenizer.ggml.pre names load (their regexes compile) and split losslessly. */
static void test_gguf_pre_names(void) {
    static const char *const names[] = {
        "gpt2",  "smollm", "llama3", "qwen2",          "mpt",         "command-r",
        "dbrx",  "glm4",   "megrez", "deepseek-coder", "deepseek-v3", "falcon",
        "bloom", "viking", "tekken", "gpt-4o",         "llama4",      "qwen35",
    };
    static const char text[] = "Hello World's 12345 \xE4\xB8\xAD\xE6\x96\x87, "
                               "\xD9\x85\xD8\xB1\xD8\xAD\xD8\xA8\xD8\xA7.\n\n  a\xE2\x80\xA6"
                               "b "
                               "\xF0\x9F\x98\x80 CamelCase a";
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        struct lmp_tokenizer *t   = NULL;
        struct lmp_err        err = {0};
        enum lmp_status       st  = gguf_with_pre(names[i], &t, &err);
        if (st != LMP_OK) fprintf(stderr, "  %s: %s\n", names[i], err.msg);
        CHECK(st == LMP_OK);
        if (t == NULL) continue;
        int32_t *ids;
        int64_t  n;
        char    *out;
        size_t   len;
        CHECK(lmp_tokenizer_encode(t, text, sizeof(text) - 1, false, &ids, &n, NULL) == LMP_OK);
        CHECK(lmp_tokenizer_decode(t, ids, n, &out, &len, NULL) == LMP_OK);
        CHECK(len == sizeof(text) - 1 && memcmp(out, text, len) == 0);
        CHECK(ids[n - 1] == 256); /* " a" merged */
        free(ids);
        free(out);
        lmp_tokenizer_free(&t);
    }
    struct lmp_tokenizer *t   = NULL;
    struct lmp_err        err = {0};
    CHECK(gguf_with_pre("no-such-pre", &t, &err) == LMP_EUNSUP && t == NULL);
    CHECK(strstr(err.msg, "'pre.gguf'") && strstr(err.msg, "'no-such-pre'"));
}

int main(void) {
    RUN(test_split_behaviors);
    RUN(test_metaspace);
    RUN(test_pretokenizers);
    RUN(test_normalizers);
    RUN(test_refusals);
    RUN(test_pipe_tokenizer);
    RUN(test_byte_fallback);
    RUN(test_regex_list);
    RUN(test_gguf_pre_names);
    RUN(test_scanners_match_pcre2);
    return check_report();
}
