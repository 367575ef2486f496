/*  text - see text.h */
#include "base/text.h"

#include <assert.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void lmp_strbuf_init(struct lmp_strbuf *b) {
    assert(b);
    memset(b, 0, sizeof(*b));
}

void lmp_strbuf_release(struct lmp_strbuf *b) {
    if (b == NULL) return;
    free(b->s);
    lmp_strbuf_init(b);
}

/* Room for extra more bytes and the NUL. RET false (and b->failed) when out of memory. */
static bool reserve(struct lmp_strbuf *b, size_t extra) {
    if (b->failed) return false;
    if (extra > SIZE_MAX / 2 - b->len) {
        b->failed = true;
        return false;
    }
    const size_t need = b->len + extra + 1;
    if (need <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) cap *= 2;
    char *s = realloc(b->s, cap);
    if (s == NULL) {
        b->failed = true;
        return false;
    }
    b->s = s, b->cap = cap;
    return true;
}

void lmp_strbuf_append(struct lmp_strbuf *b, const char *s, size_t n) {
    assert(b && (s || n == 0));
    if (!reserve(b, n)) return;
    if (n) memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

void lmp_strbuf_printf(struct lmp_strbuf *b, const char *fmt, ...) {
    assert(b && fmt);
    va_list ap;
    va_start(ap, fmt);
    const int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->failed = true;
        return;
    }
    if (!reserve(b, (size_t)n)) return;
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

char *lmp_strfmt(const char *fmt, ...) {
    assert(fmt);
    va_list ap;
    va_start(ap, fmt);
    const int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return NULL;
    char *s = malloc((size_t)n + 1);
    if (s == NULL) return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

const char *lmp_strbuf_str(const struct lmp_strbuf *b) {
    assert(b);
    return b->s ? b->s : "";
}

char *lmp_strbuf_take(struct lmp_strbuf *b) {
    assert(b);
    char *s = NULL;
    if (!b->failed) s = b->s ? b->s : strdup("");
    if (s != b->s) free(b->s);
    lmp_strbuf_init(b);
    return s;
}

/* Length of the well-formed UTF-8 sequence of at least two bytes at s (n bytes left),
 * or 0 (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF). */
static size_t utf8_len(const unsigned char *s, size_t n) {
    const unsigned c = s[0];
    size_t         k;
    unsigned       lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        k = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        k = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        k = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else
        return 0;
    if (n < k || s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < k; i++)
        if (s[i] < 0x80 || s[i] > 0xBF) return 0;
    return k;
}

/* The escaped form of the piece of s at i (len bytes in all) into tmp (>= 5 bytes):
 * RET its length; *k = the bytes of s it stands for. */
static size_t piece(const unsigned char *u, size_t len, size_t i, char *tmp, size_t *k) {
    const unsigned c = u[i];
    *k               = 1;
    if (c >= 0x20 && c < 0x7F && c != '\\') {
        tmp[0] = (char)c;
        return 1;
    }
    if (c == '\\' || c == '\n' || c == '\r' || c == '\t') {
        tmp[0] = '\\', tmp[1] = c == '\\' ? '\\' : c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
        return 2;
    }
    size_t n;
    if (c >= 0x80 && (n = utf8_len(u + i, len - i)) > 0) {
        memcpy(tmp, u + i, n);
        *k = n;
        return n;
    }
    snprintf(tmp, 5, "\\x%02X", c);
    return 4;
}

const char *lmp_str_escape_n(char *out, size_t n, const char *s, size_t len) {
    assert(out && n >= 4 && (s || len == 0));
    const unsigned char *u = (const unsigned char *)s;
    char                 tmp[8];
    size_t               total = 0, k;
    for (size_t i = 0; i < len && total < n; i += k) total += piece(u, len, i, tmp, &k);
    /* what does not fit is cut, and "..." says so */
    const bool   cut  = total > n - 1;
    const size_t room = cut ? n - 4 : n - 1;
    size_t       o    = 0;
    for (size_t i = 0; i < len; i += k) {
        const size_t m = piece(u, len, i, tmp, &k);
        if (o + m > room) break;
        memcpy(out + o, tmp, m);
        o += m;
    }
    if (cut) memcpy(out + o, "...", 3), o += 3;
    out[o] = '\0';
    return out;
}

const char *lmp_str_escape(char *out, size_t n, const char *s) {
    return lmp_str_escape_n(out, n, s ? s : "", s ? strlen(s) : 0);
}
