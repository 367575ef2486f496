/*  text - growable strings, and outside text made safe to quote in a message
 *
 *  struct lmp_strbuf is a NUL-terminated string that grows as it is appended to: what
 *  replaces a fixed char[N] wherever the text comes from outside (a client's JobSpec, a
 *  JOB file, a path) and must be kept whole (a description, a fingerprinted setting).
 *  An allocation failure is sticky: the buffer keeps what it had and `failed` is set,
 *  so a caller appends freely and checks once at the end.
 *
 *  lmp_str_escape copies outside text into a message: printable ASCII and well-formed
 *  UTF-8 stay as they are; a backslash is doubled; \n \r \t and every other control or
 *  ill-formed byte become \n \r \t or \xHH, so a binary JOB file or a path with escape
 *  sequences cannot drive the terminal. Messages have bounded size, so the copy is cut
 *  (with "...") to fit its buffer; only messages are cut, never data.
 *  Not thread-safe on one buffer; distinct buffers are independent.
 */
#ifndef LMP_BASE_TEXT_H
#define LMP_BASE_TEXT_H

#include <stdbool.h>
#include <stddef.h>

struct lmp_strbuf {
    char  *s;      /* NULL until the first append; lmp_strbuf_str gives "" then */
    size_t len;    /* bytes, without the NUL */
    size_t cap;    /* bytes allocated */
    bool   failed; /* an append ran out of memory (what it had is kept) */
};

void lmp_strbuf_init(struct lmp_strbuf *b);
/* Free the text; b is empty (and usable) again. */
void lmp_strbuf_release(struct lmp_strbuf *b);
/* Append n bytes of s / a formatted string. */
void lmp_strbuf_append(struct lmp_strbuf *b, const char *s, size_t n);
void lmp_strbuf_printf(struct lmp_strbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The text so far ("" when empty); valid until the next append or release. */
const char *lmp_strbuf_str(const struct lmp_strbuf *b);
/* Hand the text over (malloc'ed, the caller frees it; "" copied when empty) and empty b.
 * RET NULL when an append had failed or out of memory (b is released either way). */
char *lmp_strbuf_take(struct lmp_strbuf *b);

/* A formatted string on the heap, as long as it needs to be (asprintf): what replaces
 * snprintf into a char[N] when an argument is outside text (a path derived from --out, a
 * state directory). The caller frees it. RET NULL when out of memory. */
char *lmp_strfmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Copy the len bytes of s into out (size n >= 4, NUL-terminated) escaped as the file
 * comment says, cut with "..." when it does not fit. RET out. */
const char *lmp_str_escape_n(char *out, size_t n, const char *s, size_t len);
/* The same for a NUL-terminated s (NULL reads as ""). */
const char *lmp_str_escape(char *out, size_t n, const char *s);

#endif /* LMP_BASE_TEXT_H */
