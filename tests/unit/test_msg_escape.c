/*  test_msg_escape - file text that a refusal quotes is escaped (base/text.h), so that a
 *  crafted checkpoint cannot drive the terminal through an error message: a GGUF metadata
 *  key and architecture, a config.json's hidden_act and rope type. */
#include "base/text.h"         /* defines: lmp_str_escape */
#include "model/gguf.h"        /* defines: lmp_gguf_parse */
#include "model/model.h"       /* defines: lmp_model_open */
#include "tests/check.h"       /* defines: CHECK, RUN, check_report */
#include "tests/gguf_writer.h" /* defines: gw_* */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[64];

/* msg has no control byte and contains want */
static void expect_escaped(const char *msg, const char *want) {
    for (const char *p = msg; *p; p++) CHECK((unsigned char)*p >= 0x20 && *p != 0x7f);
    CHECK(strstr(msg, want) != NULL);
    if (strstr(msg, want) == NULL) fprintf(stderr, "  want '%s' in '%s'\n", want, msg);
}

static enum lmp_status parse(const struct gw_buf *img, struct lmp_err *err) {
    *err                = (struct lmp_err){0};
    struct lmp_gguf *g  = NULL;
    enum lmp_status  st = lmp_gguf_parse(img->p, img->n, "img.gguf", &g, err);
    lmp_gguf_close(&g);
    return st;
}

static void test_gguf_key_is_escaped(void) {
    struct gw      w;
    struct gw_buf  img;
    struct lmp_err err = {0};
    gw_init(&w); /* duplicate key with an escape sequence */
    gw_kv_u32(&w, "k\x1b[2J", 1);
    gw_kv_u32(&w, "k\x1b[2J", 2);
    img = gw_finish(&w, 3);
    CHECK(parse(&img, &err) == LMP_EFORMAT);
    expect_escaped(err.msg, "duplicate metadata key 'k\\x1B[2J'");
    free(img.p);

    gw_init(&w); /* unknown value type, a bell and a newline in the key */
    gw_key(&w, "a\x07\nb", 13);
    gw_u32(&w.kv, 0);
    img = gw_finish(&w, 3);
    CHECK(parse(&img, &err) == LMP_EFORMAT);
    expect_escaped(err.msg, "key 'a\\x07\\nb' has unknown value type 13");
    free(img.p);
}

static void test_gguf_architecture_is_escaped(void) {
    struct gw w;
    gw_init(&w);
    gw_kv_str(&w, "general.architecture", "\x1b]0;pwned\x07");
    struct gw_buf img = gw_finish(&w, 3);
    char          path[128];
    snprintf(path, sizeof(path), "%s/arch.gguf", tmpdir);
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(img.p, 1, img.n, f) == img.n);
    if (f) fclose(f);
    free(img.p);
    struct lmp_model *m   = NULL;
    struct lmp_err    err = {0};
    CHECK(lmp_model_open(path, &m, &err) == LMP_EUNSUP);
    expect_escaped(err.msg, "architecture '\\x1B]0;pwned\\x07' is not supported");
    lmp_model_close(&m);
    unlink(path);
}

static void test_hf_config_strings_are_escaped(void) {
    static const char *const cfgs[2][2] = {
        {"{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_act\": \"gelu\\u001b[31m\"}",
         "hidden_act 'gelu\\x1B[31m' is not supported"},
        {"{\"architectures\": [\"LlamaForCausalLM\"], \"rope_scaling\": {\"rope_type\": "
         "\"yarn\\u001b[2J\"}}",
         "(yarn\\x1B[2J) is not supported"},
    };
    for (int i = 0; i < 2; i++) {
        char dir[128], path[160];
        snprintf(dir, sizeof(dir), "%s/hf%d", tmpdir, i);
        snprintf(path, sizeof(path), "%s/config.json", dir);
        CHECK(mkdir(dir, 0755) == 0);
        FILE *f = fopen(path, "w");
        CHECK(f != NULL);
        if (f) fputs(cfgs[i][0], f), fclose(f);
        struct lmp_model *m   = NULL;
        struct lmp_err    err = {0};
        CHECK(lmp_model_open(dir, &m, &err) != LMP_OK);
        expect_escaped(err.msg, cfgs[i][1]);
        lmp_model_close(&m);
        unlink(path);
        rmdir(dir);
    }
}

int main(void) {
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/lmp_msg_escape_XXXXXX");
    if (mkdtemp(tmpdir) == NULL) return 1;
    RUN(test_gguf_key_is_escaped);
    RUN(test_gguf_architecture_is_escaped);
    RUN(test_hf_config_strings_are_escaped);
    rmdir(tmpdir);
    return check_report();
}
