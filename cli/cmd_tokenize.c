/*  cmd_tokenize - lmpress tokenize: the token ids of a text file, for comparing tokenizers
 *
 *  The ids are those `lmpress eval` feeds the model (BOS only with --bos): one line of
 *  space-separated ids, or with --json {"n": N, "ids": [...]}. A GGUF file's tokenizer is
 *  read from its metadata without loading the model; a tokenizer.json (or a directory
 *  holding one) needs no model at all. scripts/ref/check_tokenizer.py compares these ids
 *  with the Hugging Face tokenizers library's.
 */
#include "cli/cli.h"
#include "model/gguf.h"      /* defines: lmp_gguf_open */
#include "model/model.h"     /* defines: lmp_model_open */
#include "model/tokenizer.h" /* defines: lmp_tokenizer_open, lmp_tokenizer_encode */
#include "base/file.h"       /* defines: lmp_file_read_all */

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const usage =
    "lmpress tokenize (--model PATH [--tokenizer PATH] | --tokenizer PATH) --text FILE "
    "[--bos] [--json]";

static const char *const help =
    "  --model PATH          checkpoint whose tokenizer to use (GGUF: read from its\n"
    "                        metadata, the weights are not loaded)\n"
    "  --tokenizer PATH      tokenizer.json, a directory holding one, or tokenizer.bin\n"
    "                        (needs --model for its vocabulary size); default the model's\n"
    "  --text FILE           UTF-8 text to encode (required)\n"
    "  --bos                 put the tokenizer's BOS first when it has one (default off)\n"
    "  --json                print {\"n\": N, \"ids\": [...]} instead of one line of ids\n";

static bool ends_with(const char *s, const char *suf) {
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && strcmp(s + n - k, suf) == 0;
}

static enum lmp_status open_tok(const char *model_path, const char *tok_path,
                                struct lmp_tokenizer **tok, struct lmp_err *err) {
    if (model_path == NULL) return lmp_tokenizer_open(tok_path, NULL, tok, err);
    if (tok_path == NULL && ends_with(model_path, ".gguf")) {
        struct lmp_gguf *g;
        enum lmp_status  st = lmp_gguf_open(model_path, &g, err);
        if (st != LMP_OK) return st;
        st = lmp_tokenizer_from_gguf(g, tok, err);
        lmp_gguf_close(&g);
        return st;
    }
    struct lmp_model *m;
    enum lmp_status   st = lmp_model_open(model_path, &m, err);
    if (st != LMP_OK) return st;
    st = lmp_tokenizer_open(tok_path, m, tok, err);
    lmp_model_close(&m);
    return st;
}

static int cmd_tokenize_exec(struct lmp_cli *cli, int argc, char **argv) {
    const char                *model = NULL, *tok_path = NULL, *text_path = NULL;
    bool                       bos = false, json = cli->json;
    static const struct option opts[] = {
        {"model", required_argument, NULL, 'm'}, {"tokenizer", required_argument, NULL, 'k'},
        {"text", required_argument, NULL, 't'},  {"bos", no_argument, NULL, 'b'},
        {"json", no_argument, NULL, 'j'},        {0},
    };
    for (int c; (c = getopt_long(argc, argv, "m:k:t:bj", opts, NULL)) != -1;) {
        if (c == 'm')
            model = optarg;
        else if (c == 'k')
            tok_path = optarg;
        else if (c == 't')
            text_path = optarg;
        else if (c == 'b')
            bos = true;
        else if (c == 'j')
            json = true;
        else
            return lmp_cli_usage(usage);
    }
    if (optind != argc) return lmp_cli_usage_msg(usage, "unexpected argument");
    if (text_path == NULL) return lmp_cli_usage_msg(usage, "--text FILE is required");
    if (model == NULL && tok_path == NULL)
        return lmp_cli_usage_msg(usage, "--model or --tokenizer is required");
    struct lmp_err        err = {0};
    struct lmp_tokenizer *tok = NULL;
    char                 *text;
    size_t                len;
    int32_t              *ids = NULL;
    int64_t               n   = 0;
    if (open_tok(model, tok_path, &tok, &err) != LMP_OK ||
        lmp_file_read_all(text_path, &text, &len, &err) != LMP_OK) {
        lmp_tokenizer_free(&tok);
        return lmp_cli_fail(cli, &err);
    }
    enum lmp_status st = lmp_tokenizer_encode(tok, text, len, bos, &ids, &n, &err);
    free(text);
    lmp_tokenizer_free(&tok);
    if (st != LMP_OK) return lmp_cli_fail(cli, &err);
    if (json) printf("{\"n\": %lld, \"ids\": [", (long long)n);
    for (int64_t i = 0; i < n; i++) printf(i ? (json ? ", %d" : " %d") : "%d", ids[i]);
    printf(json ? "]}\n" : "\n");
    free(ids);
    return fflush(stdout) == 0 ? LMP_EXIT_OK : LMP_EXIT_FAIL;
}

const struct lmp_cli_cmd lmp_cli_cmd_tokenize = {
    .name    = "tokenize",
    .summary = "print the token ids of a text file (to compare with a reference tokenizer)",
    .usage   = usage,
    .help    = help,
    .exec    = cmd_tokenize_exec,
};
