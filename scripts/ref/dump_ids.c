/*  dump_ids - write the token ids lmpress's tokenizer gives a text file, for comparisons with
 *  other tokenizers (scripts/ref/compare_llamacpp.py --lmpress-ids). Built outside the project
 *  against a build directory's libraries by scripts/ref/build_dump_ids.sh.
 *
 *    dump_ids MODEL TEXT OUT.i32 [--bos] [--tokenizer PATH]
 *  OUT.i32: int32 little-endian ids. Prints the count and the BOS id on stdout.
 */
#include "base/file.h"
#include "model/model.h"
#include "model/tokenizer.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: dump_ids MODEL TEXT OUT.i32 [--bos] [--tokenizer PATH]\n");
        return 2;
    }
    bool        bos      = false;
    const char *tok_path = NULL;
    for (int i = 4; i < argc; i++) {
        if (strcmp(argv[i], "--bos") == 0)
            bos = true;
        else if (strcmp(argv[i], "--tokenizer") == 0 && i + 1 < argc)
            tok_path = argv[++i];
        else {
            fprintf(stderr, "dump_ids: unknown option '%s'\n", argv[i]);
            return 2;
        }
    }
    struct lmp_err        err   = {0};
    struct lmp_model     *model = NULL;
    struct lmp_tokenizer *tok   = NULL;
    char                 *text  = NULL;
    size_t                len   = 0;
    int32_t              *ids   = NULL;
    int64_t               n     = 0;
    int                   rc    = 1;
    if (lmp_file_read_all(argv[2], &text, &len, &err) != LMP_OK ||
        lmp_model_open(argv[1], &model, &err) != LMP_OK ||
        lmp_tokenizer_open(tok_path, model, &tok, &err) != LMP_OK ||
        lmp_tokenizer_encode(tok, text, len, bos, &ids, &n, &err) != LMP_OK) {
        fprintf(stderr, "dump_ids: %s\n", err.msg[0] ? err.msg : lmp_status_str(err.code));
        goto out;
    }
    FILE *f = fopen(argv[3], "wb");
    if (f == NULL || fwrite(ids, sizeof *ids, (size_t)n, f) != (size_t)n || fclose(f) != 0) {
        fprintf(stderr, "dump_ids: cannot write '%s'\n", argv[3]);
        goto out;
    }
    printf("{\"n_ids\": %lld, \"bos\": %d, \"tokenizer\": \"%s\"}\n", (long long)n,
           lmp_tokenizer_bos(tok), lmp_tokenizer_describe(tok));
    rc = 0;
out:
    free(ids);
    lmp_tokenizer_free(&tok);
    lmp_model_close(&model);
    free(text);
    return rc;
}
