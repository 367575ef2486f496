/*  test_text - base/text.h: growable strings and outside text escaped for messages */
#include "base/text.h"
#include "tests/check.h" /* defines: CHECK, RUN, check_report */

#include <stdlib.h>
#include <string.h>

static void test_escape_keeps_printable_and_utf8(void) {
    char out[64];
    CHECK(strcmp(lmp_str_escape(out, sizeof(out), "cal.txt"), "cal.txt") == 0);
    CHECK(strcmp(lmp_str_escape(out, sizeof(out), "caf\xc3\xa9 \xe2\x82\xac"),
                 "caf\xc3\xa9 \xe2\x82\xac") == 0); /* UTF-8 stays readable */
    CHECK(strcmp(lmp_str_escape(out, sizeof(out), NULL), "") == 0);
}

/* issue 10, "Also": the bytes of a binary JOB file reached the terminal raw */
static void test_escape_control_and_binary_bytes(void) {
    char out[64];
    CHECK(strcmp(lmp_str_escape(out, sizeof(out), "a\x1b[2Jb"), "a\\x1B[2Jb") == 0);
    CHECK(strcmp(lmp_str_escape(out, sizeof(out), "x\ny\tz\r"), "x\\ny\\tz\\r") == 0);
    CHECK(strcmp(lmp_str_escape(out, sizeof(out), "back\\slash"), "back\\\\slash") == 0);
    CHECK(strcmp(lmp_str_escape(out, sizeof(out), "\x7f\xff\xc3"), "\\x7F\\xFF\\xC3") == 0);
    CHECK(strcmp(lmp_str_escape(out, sizeof(out), "\xed\xa0\x80"), "\\xED\\xA0\\x80") == 0);
    CHECK(strcmp(lmp_str_escape(out, sizeof(out), "\xc0\xaf"), "\\xC0\\xAF") == 0); /* overlong */
    const char with_nul[] = {'a', '\0', 'b'};
    CHECK(strcmp(lmp_str_escape_n(out, sizeof(out), with_nul, 3), "a\\x00b") == 0);
    for (size_t i = 0; out[i]; i++) CHECK((unsigned char)out[i] >= 0x20);
}

static void test_escape_cuts_to_fit(void) {
    char out[12], big[200];
    memset(big, 'x', sizeof(big) - 1), big[sizeof(big) - 1] = '\0';
    CHECK(strcmp(lmp_str_escape(out, sizeof(out), big), "xxxxxxxx...") == 0);
    CHECK(strcmp(lmp_str_escape(out, sizeof(out), "xxxxxxxxxxx"), "xxxxxxxxxxx") == 0); /* fits */
    CHECK(strcmp(lmp_str_escape(out, sizeof(out), "xxxxxx\x01\x02"), "xxxxxx...") == 0);
    char tiny[4];
    CHECK(strcmp(lmp_str_escape(tiny, sizeof(tiny), "abcdef"), "...") == 0);
}

static void test_strbuf_grows_whole(void) {
    struct lmp_strbuf b;
    lmp_strbuf_init(&b);
    CHECK(strcmp(lmp_strbuf_str(&b), "") == 0);
    for (int i = 0; i < 1000; i++) lmp_strbuf_printf(&b, "%s%d", i ? "," : "", i);
    CHECK(!b.failed && b.len == strlen(lmp_strbuf_str(&b)) && b.len > 3000);
    CHECK(strncmp(lmp_strbuf_str(&b), "0,1,2,", 6) == 0);
    CHECK(strcmp(lmp_strbuf_str(&b) + b.len - 4, ",999") == 0);
    lmp_strbuf_append(&b, "!", 1);
    char *s = lmp_strbuf_take(&b);
    CHECK(s && s[strlen(s) - 1] == '!' && b.len == 0 && b.s == NULL);
    free(s);
    s = lmp_strbuf_take(&b); /* empty: "" */
    CHECK(s && s[0] == '\0');
    free(s);
    lmp_strbuf_release(&b);
    lmp_strbuf_release(&b);
}

static void test_strfmt_holds_any_length(void) {
    enum { N = 9000 }; /* longer than PATH_MAX and any old fixed buffer */
    char *long_dir = malloc(N + 1);
    CHECK(long_dir != NULL);
    if (long_dir == NULL) return;
    memset(long_dir, 'd', N);
    long_dir[N] = '\0';
    char *s     = lmp_strfmt("%s/%s.tmp", long_dir, "LOCK");
    CHECK(s && strlen(s) == N + 9 && strcmp(s + N, "/LOCK.tmp") == 0);
    free(s);
    s = lmp_strfmt("%s", "");
    CHECK(s && s[0] == '\0');
    free(s);
    free(long_dir);
}

int main(void) {
    RUN(test_escape_keeps_printable_and_utf8);
    RUN(test_escape_control_and_binary_bytes);
    RUN(test_escape_cuts_to_fit);
    RUN(test_strbuf_grows_whole);
    RUN(test_strfmt_holds_any_length);
    return check_report();
}
