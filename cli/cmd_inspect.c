/*  cmd_inspect - lmpress inspect: what a checkpoint holds, as lmpress sees it
 *
 *  Prints the format, architecture and config, the tensors outside the blocks and the
 *  seven linears of block 0 under their canonical names (with the source tensor, shape
 *  and dtype), totals by dtype, the parameter count and the tokenizer. --all lists every
 *  tensor of the file; --json prints all of it as one object (every tensor included).
 *  --dump-tensor NAME --out FILE writes one tensor's values, dequantized by lmpress's
 *  kernels, as raw little-endian f32 (row-major, shape as listed); for a .gguf file the
 *  architecture is not checked, so any GGUF whose tensor types lmpress reads will do
 *  (scripts/ref/check_kquants.py compares them with the gguf package's dequantization).
 */
#include "cli/cli.h"
#include "model/gguf.h"      /* defines: lmp_gguf_open, lmp_gguf_find_tensor */
#include "model/model.h"     /* defines: lmp_model_open, struct lmp_model */
#include "model/tokenizer.h" /* defines: lmp_tokenizer_open, lmp_tokenizer_describe */

#include <cjson/cJSON.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const usage =
    "lmpress inspect [--tokenizer PATH] [--all] [--json] <model|ART.h5>\n"
    "       lmpress inspect --dump-tensor NAME --out FILE <model>";

static const char *const help =
    "A checkpoint's format, architecture, config, tensors and tokenizer; for an artifact\n"
    "its job, layers and bits.\n\n"
    "  --tokenizer PATH      tokenizer to describe (default the checkpoint's own)\n"
    "  --all                 list every tensor (default block 0 only)\n"
    "  --json                print one JSON object (every tensor)\n"
    "  --dump-tensor NAME    write tensor NAME dequantized to fp32 (raw little-endian,\n"
    "                        row-major) to the file --out names, and nothing else\n"
    "  --out FILE            where --dump-tensor writes\n";

/* inspect_artifact.c */
bool lmp_cli_is_artifact(const char *path);
int  lmp_cli_inspect_artifact(struct lmp_cli *cli, const char *path);

static void shape_str(const struct lmp_tensor *t, char *buf, size_t n) {
    int off = snprintf(buf, n, "(");
    for (int i = 0; i < t->n_dims && off < (int)n; i++)
        off += snprintf(buf + off, n - (size_t)off, "%s%" PRId64, i ? ", " : "", t->shape[i]);
    if (off < (int)n) snprintf(buf + off, n - (size_t)off, ")");
}

static cJSON *tensor_json(const struct lmp_tensor *t) {
    cJSON *o = cJSON_CreateObject(), *shape = cJSON_AddArrayToObject(o, "shape");
    cJSON_AddStringToObject(o, "name", t->name);
    for (int i = 0; i < t->n_dims; i++)
        cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[i]));
    cJSON_AddStringToObject(o, "dtype", lmp_dtype_name(t->dtype));
    cJSON_AddNumberToObject(o, "bytes", (double)t->nbytes);
    return o;
}

static void print_tensor(const char *role, const struct lmp_tensor *t) {
    char shape[96];
    if (t == NULL) {
        printf("  %-40s -\n", role);
        return;
    }
    shape_str(t, shape, sizeof(shape));
    printf("  %-40s %-30s %-14s %s\n", role, t->name, shape, lmp_dtype_name(t->dtype));
}

static bool is_gguf_file(const char *path) {
    char  magic[4] = {0};
    FILE *f        = fopen(path, "rb");
    bool  yes      = f != NULL && fread(magic, 1, 4, f) == 4 && memcmp(magic, "GGUF", 4) == 0;
    if (f != NULL) fclose(f);
    return yes;
}

/* --dump-tensor: t's values as f32, one row at a time, to out. */
static int dump_tensor(struct lmp_cli *cli, const char *path, const char *name, const char *out) {
    struct lmp_err           err = {0};
    struct lmp_gguf         *g   = NULL;
    struct lmp_model        *m   = NULL;
    const struct lmp_tensor *t   = NULL;
    FILE                    *f   = NULL;
    float                   *row = NULL;
    int                      rc  = LMP_EXIT_OK;
    if (is_gguf_file(path) ? lmp_gguf_open(path, &g, &err) != LMP_OK
                           : lmp_model_open(path, &m, &err) != LMP_OK) {
        rc = lmp_cli_fail(cli, &err);
        goto out;
    }
    t = g != NULL ? lmp_gguf_find_tensor(g, name) : lmp_model_find_tensor(m, name);
    if (t == NULL) {
        lmp_err_set(&err, LMP_ENOENT, "'%s': no tensor '%s'", path, name);
        rc = lmp_cli_fail(cli, &err);
        goto out;
    }
    const int64_t rows = lmp_tensor_n_rows(t), cols = lmp_tensor_n_cols(t);
    row = malloc((size_t)(cols > 0 ? cols : 1) * sizeof(float));
    if (row == NULL || (f = fopen(out, "wb")) == NULL) {
        lmp_err_set(&err, row == NULL ? LMP_ENOMEM : LMP_EIO, "'%s': cannot write", out);
        rc = lmp_cli_fail(cli, &err);
        goto out;
    }
    for (int64_t r = 0; r < rows && rc == LMP_EXIT_OK; r++) {
        lmp_tensor_rows_f32(t, r, 1, row);
        if (fwrite(row, sizeof(float), (size_t)cols, f) != (size_t)cols) rc = LMP_EXIT_FAIL;
    }
    if (fclose(f) != 0) rc = LMP_EXIT_FAIL;
    f = NULL;
    if (rc != LMP_EXIT_OK)
        fprintf(stderr, "lmpress: '%s': write failed\n", out);
    else
        fprintf(stderr, "lmpress: wrote %s (%s, %" PRId64 " x %" PRId64 ") to %s\n", name,
                lmp_dtype_name(t->dtype), rows, cols, out);
out:
    if (f != NULL) fclose(f);
    free(row);
    lmp_gguf_close(&g);
    lmp_model_close(&m);
    return rc;
}

static int cmd_inspect_exec(struct lmp_cli *cli, int argc, char **argv) {
    const char                *tok_path = NULL;
    bool                       all      = false;
    static const struct option opts[]   = {
          {"tokenizer", required_argument, NULL, 'k'},
          {"all", no_argument, NULL, 'a'},
          {"json", no_argument, NULL, 'j'},
          {"dump-tensor", required_argument, NULL, 'D'},
          {"out", required_argument, NULL, 'o'},
          {0},
    };
    const char *dump = NULL, *out = NULL;
    for (int c; (c = getopt_long(argc, argv, "k:aj", opts, NULL)) != -1;) {
        if (c == 'D')
            dump = optarg;
        else if (c == 'o')
            out = optarg;
        else if (c == 'k')
            tok_path = optarg;
        else if (c == 'a')
            all = true;
        else if (c == 'j')
            cli->json = true;
        else
            return lmp_cli_usage(usage);
    }
    if (argc - optind != 1) return lmp_cli_usage_msg(usage, "expected one model path");
    const char *path = argv[optind];
    if ((dump == NULL) != (out == NULL))
        return lmp_cli_usage_msg(usage, "--dump-tensor and --out go together");
    if (dump != NULL) return dump_tensor(cli, path, dump, out);
    if (lmp_cli_is_artifact(path)) return lmp_cli_inspect_artifact(cli, path); /* ART.h5 */

    struct lmp_err        err = {0}, tok_err = {0};
    struct lmp_model     *m   = NULL;
    struct lmp_tokenizer *tok = NULL;
    if (lmp_model_open(path, &m, &err) != LMP_OK) return lmp_cli_fail(cli, &err);
    /* a model without a usable tokenizer is still worth inspecting */
    bool        have_tok = lmp_tokenizer_open(tok_path, m, &tok, &tok_err) == LMP_OK;
    const char *tok_desc = have_tok ? lmp_tokenizer_describe(tok) : tok_err.msg;

    const struct lmp_config *c = &m->cfg;
    int64_t n_bytes = 0, count[LMP_DTYPE_COUNT] = {0}, bytes[LMP_DTYPE_COUNT] = {0};
    for (int64_t i = 0; i < m->n_tensors; i++) {
        const struct lmp_tensor *t = &m->tensors[i];
        n_bytes += (int64_t)t->nbytes;
        if ((unsigned)t->dtype < LMP_DTYPE_COUNT) {
            count[t->dtype]++;
            bytes[t->dtype] += (int64_t)t->nbytes;
        }
    }
    const int64_t n_params = lmp_model_n_params(m);
    int           rc       = LMP_EXIT_OK;

    if (cli->json) {
        cJSON *o = cJSON_CreateObject(), *cfg = cJSON_AddObjectToObject(o, "config");
        cJSON_AddStringToObject(o, "path", path);
        cJSON_AddStringToObject(o, "format", lmp_format_name(c->format));
        cJSON_AddStringToObject(o, "arch", lmp_arch_name(c->arch));
        cJSON_AddNumberToObject(cfg, "n_layers", c->n_layers);
        cJSON_AddNumberToObject(cfg, "dim", c->dim);
        cJSON_AddNumberToObject(cfg, "hidden_dim", c->hidden_dim);
        cJSON_AddNumberToObject(cfg, "n_heads", c->n_heads);
        cJSON_AddNumberToObject(cfg, "n_kv_heads", c->n_kv_heads);
        cJSON_AddNumberToObject(cfg, "head_dim", c->head_dim);
        cJSON_AddNumberToObject(cfg, "vocab_size", c->vocab_size);
        cJSON_AddNumberToObject(cfg, "max_seq", c->max_seq);
        cJSON_AddNumberToObject(cfg, "rope_theta", c->rope_theta);
        cJSON_AddNumberToObject(cfg, "norm_eps", c->norm_eps);
        cJSON_AddStringToObject(cfg, "rope", c->rope == LMP_ROPE_HALF ? "half" : "interleaved");
        cJSON_AddBoolToObject(cfg, "tied_embeddings", c->tied_embeddings);
        cJSON_AddBoolToObject(cfg, "qkv_bias", c->qkv_bias);
        cJSON_AddNumberToObject(cfg, "sliding_window", c->sliding_window);
        cJSON_AddNumberToObject(cfg, "swa_pattern", c->swa_pattern);     /* 0: window not applied */
        cJSON_AddNumberToObject(cfg, "attn_softcap", c->attn_softcap);   /* 0: none */
        cJSON_AddNumberToObject(cfg, "final_softcap", c->final_softcap); /* 0: none */
        cJSON_AddNumberToObject(o, "n_params", (double)n_params);
        cJSON_AddNumberToObject(o, "n_tensors", (double)m->n_tensors);
        cJSON_AddNumberToObject(o, "tensor_bytes", (double)n_bytes);
        cJSON *tk = cJSON_AddObjectToObject(o, "tokenizer");
        cJSON_AddBoolToObject(tk, "ok", have_tok);
        cJSON_AddStringToObject(tk, have_tok ? "description" : "error", tok_desc);
        cJSON *lin = cJSON_AddArrayToObject(o, "linears");
        for (int64_t i = 0; i < lmp_model_n_linears(m); i++) {
            const struct lmp_linear *l = lmp_model_linear(m, i);
            cJSON                   *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "name", l->name);
            cJSON_AddStringToObject(e, "tensor", l->weight->name);
            cJSON_AddNumberToObject(e, "n_out", (double)l->n_out);
            cJSON_AddNumberToObject(e, "n_in", (double)l->n_in);
            cJSON_AddStringToObject(e, "dtype", lmp_dtype_name(l->weight->dtype));
            cJSON_AddBoolToObject(e, "bias", l->bias != NULL);
            cJSON_AddItemToArray(lin, e);
        }
        cJSON *ts = cJSON_AddArrayToObject(o, "tensors");
        for (int64_t i = 0; i < m->n_tensors; i++)
            cJSON_AddItemToArray(ts, tensor_json(&m->tensors[i]));
        char *s = cJSON_PrintUnformatted(o);
        if (s)
            printf("%s\n", s);
        else
            rc = LMP_EXIT_FAIL;
        free(s);
        cJSON_Delete(o);
    } else {
        printf("model      %s\n", path);
        printf("format     %s, architecture %s\n", lmp_format_name(c->format),
               lmp_arch_name(c->arch));
        printf("config     %d layers, dim %d, ffn %d, %d heads (%d kv, head dim %d), vocab %d, "
               "context %d\n",
               c->n_layers, c->dim, c->hidden_dim, c->n_heads, c->n_kv_heads, c->head_dim,
               c->vocab_size, c->max_seq);
        printf("           rope %s theta %g, rmsnorm eps %g, %s embeddings%s\n",
               c->rope == LMP_ROPE_HALF ? "half-split" : "interleaved", c->rope_theta, c->norm_eps,
               c->tied_embeddings ? "tied" : "untied", c->qkv_bias ? ", q/k/v biases" : "");
        if (c->sliding_window > 0 && c->swa_pattern > 0)
            printf("           sliding window of %d keys on local blocks (blocks %d, %d, ... "
                   "global)\n",
                   c->sliding_window, c->swa_pattern - 1, 2 * c->swa_pattern - 1);
        else if (c->sliding_window > 0) /* Mistral, Qwen2, Phi-3: recorded, not applied */
            printf("           sliding window %d in the config, not applied (as llama.cpp)\n",
                   c->sliding_window);
        if (c->attn_softcap > 0 || c->final_softcap > 0)
            printf("           soft-capping: attention scores %g, logits %g (0: none)\n",
                   (double)c->attn_softcap, (double)c->final_softcap);
        printf("parameters %" PRId64 " (%.1f M) in %" PRId64 " tensors, %.1f MiB\n", n_params,
               (double)n_params / 1e6, m->n_tensors, (double)n_bytes / 1048576.0);
        for (int d = 0; d < LMP_DTYPE_COUNT; d++)
            if (count[d])
                printf("           %-5s %4" PRId64 " tensors, %.1f MiB\n",
                       lmp_dtype_name((enum lmp_dtype)d), count[d], (double)bytes[d] / 1048576.0);
        printf("tokenizer  %s\n\n", have_tok ? tok_desc : "none");
        if (!have_tok) fprintf(stderr, "lmpress: note: %s\n", tok_desc);
        if (all) {
            printf("tensors:\n");
            for (int64_t i = 0; i < m->n_tensors; i++) print_tensor("", &m->tensors[i]);
        } else {
            printf("tensors (block 0 of %d; the other blocks alike; --all lists every tensor):\n",
                   c->n_layers);
            print_tensor("embedding", m->tok_emb);
            const struct lmp_block *b = &m->blocks[0];
            print_tensor("model.layers.0.input_layernorm", b->attn_norm);
            for (int k = 0; k < LMP_LIN_COUNT; k++) {
                print_tensor(b->lin[k].name, b->lin[k].weight);
                if (b->lin[k].bias) print_tensor("  (bias)", b->lin[k].bias);
                if (k == LMP_LIN_O)
                    print_tensor("model.layers.0.post_attention_layernorm", b->ffn_norm);
            }
            print_tensor("final norm", m->out_norm);
            print_tensor(c->tied_embeddings ? "lm head (tied)" : "lm head", m->output);
        }
    }
    lmp_tokenizer_free(&tok);
    lmp_model_close(&m);
    return rc;
}

const struct lmp_cli_cmd lmp_cli_cmd_inspect = {
    .name    = "inspect",
    .summary = "show a checkpoint's architecture, config and tensors",
    .usage   = usage,
    .help    = help,
    .exec    = cmd_inspect_exec,
};
