/*  cmd_eval - lmpress eval: perplexity of a model on a text file (GPTQ/AQLM protocol)
 *
 *  The text is tokenized once with BOS first, cut into windows of --ctx tokens, each run
 *  from an empty context (model/eval.h). --json prints one object on stdout;
 *  --dump-logits writes the first window's fp32 logits, (ctx, vocab) row-major,
 *  little-endian, for comparisons with other implementations. --reference ORIGINAL also
 *  runs the windows through another model (a checkpoint, or an artifact) and reports
 *  KL(reference || model) per predicted token and top-1 agreement (model/eval.h); the
 *  reference must have the same vocabulary and tokenize the text to the same ids.
 *
 *  --artifact runs the compressed model on its AQLM codes (artifact/artifact_model.h:
 *  every AQ linear through the aq_matvec kernel, no dense copy of it); --decode decodes
 *  them to dense fp32 first, the path the code path is checked against
 *  (tests/integration/infer_codes.sh).
 */
#include "cli/cli.h"
#include "artifact/artifact_model.h" /* defines: lmp_artifact_model_load */
#include "base/file.h"               /* defines: lmp_file_read_all */
#include "model/eval.h"              /* defines: lmp_eval_ppl */
#include "model/model.h"             /* defines: lmp_model_open */
#include "model/tokenizer.h"         /* defines: lmp_tokenizer_open, lmp_tokenizer_encode */
#include "model/transformer.h"       /* defines: lmp_transformer_new */

#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const usage =
    "lmpress eval (--model PATH [--tokenizer PATH] | --artifact ART.h5 [--decode]) --text FILE\n"
    "             [--ctx N]"
    "             [--max-windows K] [--reference ORIGINAL]"
    "             [--batch B] [--threads T] [--json] [--dump-logits FILE]";

static const char *const help =
    "Perplexity over windows of --ctx tokens, each from an empty context.\n\n"
    "  --model PATH          checkpoint: .gguf, Hugging Face directory or llama2.c .bin\n"
    "  --artifact ART.h5     a compressed model instead, run on its AQLM codes (it carries\n"
    "                        its tokenizer)\n"
    "  --decode              with --artifact: decode the compressed layers to dense fp32\n"
    "                        first (more memory; the reference for the code path)\n"
    "  --tokenizer PATH      tokenizer for --model (default the checkpoint's own)\n"
    "  --text FILE           the text (required)\n"
    "  --ctx N               tokens per window (default the model's context, at most 512)\n"
    "  --max-windows K       evaluate at most K windows (default all)\n"
    "  --reference ORIGINAL  also KL(ORIGINAL || model) per predicted token (nats) and top-1\n"
    "                        agreement on the same windows; ORIGINAL is a checkpoint or an\n"
    "                        artifact with the same vocabulary and tokenization (its own\n"
    "                        tokenizer, --tokenizer, else the model's; default none)\n"
    "  --batch B             windows run together, 1..64 (default 1)\n"
    "  --threads T           threads (default every core)\n"
    "  --json                print one JSON object\n"
    "  --dump-logits FILE    write the first window's fp32 logits (ctx, vocab), little-endian\n";

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "--dump-logits writes host floats and promises little-endian"
#endif

struct dump {
    FILE       *f;
    const char *path;
    bool        failed;
};

static void dump_logits(void *ctx, int64_t window, int64_t row0, const float *logits,
                        int64_t n_rows, int64_t vocab) {
    struct dump *d = ctx;
    if (window != 0 || d->failed) return;
    size_t n = (size_t)(n_rows * vocab);
    if (fwrite(logits, sizeof(float), n, d->f) != n) d->failed = true;
}

static void progress_bar(void *ctx, int64_t done, int64_t n) {
    const int width = 40, fill = (int)(done * width / n);
    fprintf(stderr, "\r[%.*s%*s] %lld/%lld windows", fill,
            "########################################", width - fill, "", (long long)done,
            (long long)n);
    if (done == n) fputc('\n', stderr);
    fflush(stderr);
}

/* The model and tokenizer from a checkpoint, or both rebuilt from an artifact. */
static enum lmp_status open_model(const char *art_path, bool decode, const char *model_path,
                                  const char *tok_path, struct lmp_model **model,
                                  struct lmp_tokenizer **tok, struct lmp_err *err) {
    if (art_path)
        return lmp_artifact_model_load(
            art_path, decode ? LMP_ART_WEIGHTS_DENSE : LMP_ART_WEIGHTS_CODES, model, tok, err);
    enum lmp_status st = lmp_model_open(model_path, model, err);
    return st != LMP_OK ? st : lmp_tokenizer_open(tok_path, *model, tok, err);
}

/* An HDF5 file (the artifact) starts with this signature; anything else is a checkpoint. */
static bool is_hdf5(const char *path) {
    static const unsigned char sig[8]  = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    unsigned char              head[8] = {0};
    FILE                      *f       = fopen(path, "rb");
    if (f == NULL) return false;
    size_t n = fread(head, 1, sizeof(head), f);
    fclose(f);
    return n == sizeof(head) && memcmp(head, sig, sizeof(sig)) == 0;
}

static int default_threads(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static int cmd_eval_exec(struct lmp_cli *cli, int argc, char **argv) {
    const char *model_path = NULL, *tok_path = NULL, *text_path = NULL, *dump_path = NULL,
               *art_path = NULL, *ref_path = NULL;
    long long                  ctx = 0, max_windows = 0, batch = 1, threads = default_threads();
    bool                       decode = false;
    static const struct option opts[] = {
        {"model", required_argument, NULL, 'm'},
        {"tokenizer", required_argument, NULL, 'k'},
        {"text", required_argument, NULL, 'x'},
        {"ctx", required_argument, NULL, 'c'},
        {"max-windows", required_argument, NULL, 'w'},
        {"batch", required_argument, NULL, 'b'},
        {"threads", required_argument, NULL, 't'},
        {"json", no_argument, NULL, 'j'},
        {"dump-logits", required_argument, NULL, 'd'},
        {"artifact", required_argument, NULL, 'a'},
        {"reference", required_argument, NULL, 'r'},
        {"decode", no_argument, NULL, 'D'},
        {0},
    };
    for (int c; (c = getopt_long(argc, argv, "m:k:x:c:w:b:t:jd:a:r:", opts, NULL)) != -1;) {
        switch (c) {
        case 'm':
            model_path = optarg;
            break;
        case 'k':
            tok_path = optarg;
            break;
        case 'x':
            text_path = optarg;
            break;
        case 'd':
            dump_path = optarg;
            break;
        case 'a':
            art_path = optarg;
            break;
        case 'r':
            ref_path = optarg;
            break;
        case 'j':
            cli->json = true;
            break;
        case 'D':
            decode = true;
            break;
        case 'c':
            if (!lmp_cli_parse_i64("--ctx", optarg, 2, 1 << 20, &ctx)) return LMP_EXIT_USAGE;
            break;
        case 'w':
            if (!lmp_cli_parse_i64("--max-windows", optarg, 1, INT32_MAX, &max_windows))
                return LMP_EXIT_USAGE;
            break;
        case 'b':
            if (!lmp_cli_parse_i64("--batch", optarg, 1, 64, &batch)) return LMP_EXIT_USAGE;
            break;
        case 't':
            if (!lmp_cli_parse_i64("--threads", optarg, 1, 256, &threads)) return LMP_EXIT_USAGE;
            break;
        default:
            return lmp_cli_usage(usage);
        }
    }
    if (optind != argc) return lmp_cli_usage_msg(usage, "unexpected argument");
    if ((model_path == NULL) == (art_path == NULL) || text_path == NULL)
        return lmp_cli_usage_msg(usage, "--text and one of --model or --artifact are required");
    if (art_path && tok_path)
        return lmp_cli_usage_msg(usage, "--artifact carries its tokenizer: drop --tokenizer");
    if (decode && art_path == NULL) return lmp_cli_usage_msg(usage, "--decode needs --artifact");

    struct lmp_err          err       = {0};
    struct lmp_model       *model     = NULL;
    struct lmp_tokenizer   *tok       = NULL;
    struct lmp_transformer *tf        = NULL;
    struct lmp_model       *ref_model = NULL;
    struct lmp_tokenizer   *ref_tok   = NULL;
    struct lmp_transformer *ref_tf    = NULL;
    int32_t                *ref_ids   = NULL;
    int64_t                 n_ref_ids = 0;
    char                   *text      = NULL;
    int32_t                *ids       = NULL;
    size_t                  len       = 0;
    int64_t                 n_ids     = 0;
    struct dump             dump      = {.path = dump_path};
    int                     rc        = LMP_EXIT_OK;

    if (lmp_file_read_all(text_path, &text, &len, &err) != LMP_OK) {
        fprintf(stderr, "lmpress: text file: %s\n",
                err.msg[0] ? err.msg : lmp_status_str(err.code));
        rc = LMP_EXIT_INPUT;
        goto out;
    }
    if (len == 0) {
        fprintf(stderr, "lmpress: text file '%s' is empty\n", text_path);
        rc = LMP_EXIT_INPUT;
        goto out;
    }
    if (open_model(art_path, decode, model_path, tok_path, &model, &tok, &err) != LMP_OK ||
        lmp_tokenizer_encode(tok, text, len, true, &ids, &n_ids, &err) != LMP_OK) {
        rc = lmp_cli_fail(cli, &err);
        goto out;
    }
    if (ref_path) {
        /* the reference's own tokenizer (an artifact's; a checkpoint's, or --tokenizer's),
         * else, for a checkpoint without one, the model's: the ids then agree trivially */
        enum lmp_status st = is_hdf5(ref_path)
                                 ? lmp_artifact_model_load(ref_path, LMP_ART_WEIGHTS_CODES,
                                                           &ref_model, &ref_tok, &err)
                                 : lmp_model_open(ref_path, &ref_model, &err);
        if (st == LMP_OK && ref_tok == NULL) {
            st = lmp_tokenizer_open(tok_path, ref_model, &ref_tok, &err);
            if (st == LMP_ENOENT && tok_path == NULL) st = LMP_OK;
        }
        if (st == LMP_OK && ref_tok)
            st = lmp_tokenizer_encode(ref_tok, text, len, true, &ref_ids, &n_ref_ids, &err);
        if (st != LMP_OK) {
            rc = lmp_cli_fail(cli, &err);
            goto out;
        }
        if (ref_tok == NULL) { /* ids of the model's tokenizer */
            if ((ref_ids = malloc((size_t)n_ids * sizeof(*ids))) != NULL)
                memcpy(ref_ids, ids, (size_t)n_ids * sizeof(*ids));
            n_ref_ids = n_ids;
        }
        if (ref_model->cfg.vocab_size != model->cfg.vocab_size || n_ref_ids != n_ids ||
            ref_ids == NULL || memcmp(ref_ids, ids, (size_t)n_ids * sizeof(*ids)) != 0) {
            fprintf(stderr,
                    "lmpress: the reference '%s' (vocabulary %d) does not tokenize the "
                    "text as the model does (vocabulary %d): no KL to compare\n",
                    ref_path, ref_model->cfg.vocab_size, model->cfg.vocab_size);
            rc = LMP_EXIT_INPUT;
            goto out;
        }
    }
    if ((rc = lmp_cli_resolve_ctx(&ctx, model->cfg.max_seq)) != LMP_EXIT_OK) goto out;
    if (ref_model && ref_model->cfg.max_seq > 0 && ctx > ref_model->cfg.max_seq) {
        fprintf(stderr, "lmpress: --ctx %lld exceeds the reference's context of %d\n", ctx,
                ref_model->cfg.max_seq);
        rc = LMP_EXIT_INPUT;
        goto out;
    }
    if (n_ids < ctx) {
        fprintf(stderr, "lmpress: text file '%s' has %lld tokens, fewer than one window of %lld\n",
                text_path, (long long)n_ids, ctx);
        rc = LMP_EXIT_INPUT;
        goto out;
    }
    if (dump_path && (dump.f = fopen(dump_path, "wb")) == NULL) {
        fprintf(stderr, "lmpress: cannot write '%s': %s\n", dump_path, strerror(errno));
        rc = LMP_EXIT_FAIL;
        goto out;
    }
    /* on the codes, a Q8_0 / Q4_1 head runs on its blocks too (--decode: dense fp32) */
    struct lmp_transformer_opts topts = {.n_threads   = (int)threads,
                                         .head_blocks = art_path != NULL && !decode};
    if (lmp_transformer_new(model, &topts, &tf, &err) != LMP_OK) {
        rc = lmp_cli_fail(cli, &err);
        goto out;
    }
    if (ref_model && lmp_transformer_new(ref_model, &topts, &ref_tf, &err) != LMP_OK) {
        rc = lmp_cli_fail(cli, &err);
        goto out;
    }
    struct lmp_eval_opts   eo = {.ctx         = ctx,
                                 .max_windows = max_windows,
                                 .batch       = batch,
                                 .progress    = cli->tty ? progress_bar : NULL,
                                 .on_logits   = dump.f ? dump_logits : NULL,
                                 .logits_ctx  = &dump,
                                 .reference   = ref_tf};
    struct lmp_eval_result res;
    if (lmp_eval_ppl(tf, ids, n_ids, &eo, &res, &err) != LMP_OK) {
        rc = lmp_cli_fail(cli, &err);
        goto out;
    }
    if (dump.f) {
        bool bad = dump.failed;
        if (fclose(dump.f) != 0) bad = true;
        dump.f = NULL;
        if (bad) {
            fprintf(stderr, "lmpress: cannot write logits to '%s'\n", dump_path);
            rc = LMP_EXIT_FAIL;
            goto out;
        }
    }
    const double tps = res.seconds > 0 ? (double)res.n_tokens / res.seconds : 0.0;
    if (cli->json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "ppl", res.ppl);
        cJSON_AddNumberToObject(o, "nll", res.nll);
        cJSON_AddNumberToObject(o, "tokens", (double)res.n_tokens);
        cJSON_AddNumberToObject(o, "text_tokens", (double)res.n_text);
        cJSON_AddNumberToObject(o, "windows", (double)res.n_windows);
        cJSON_AddNumberToObject(o, "ctx", (double)ctx);
        cJSON_AddNumberToObject(o, "batch", (double)batch);
        cJSON_AddNumberToObject(o, "threads", (double)lmp_transformer_n_threads(tf));
        cJSON_AddNumberToObject(o, "tokens_per_s", tps);
        cJSON_AddNumberToObject(o, "seconds", res.seconds);
        cJSON_AddStringToObject(o, art_path ? "artifact" : "model",
                                art_path ? art_path : model_path);
        if (art_path) cJSON_AddStringToObject(o, "weights", decode ? "dense" : "codes");
        cJSON_AddStringToObject(o, "text", text_path);
        cJSON_AddStringToObject(o, "tokenizer", lmp_tokenizer_describe(tok));
        if (ref_tf) {
            cJSON_AddStringToObject(o, "reference", ref_path);
            cJSON_AddNumberToObject(o, "kl", res.kl);
            cJSON_AddNumberToObject(o, "top1_agreement", res.top1);
            cJSON_AddNumberToObject(o, "reference_ppl", res.ref_ppl);
            cJSON_AddNumberToObject(o, "predicted_tokens", (double)res.n_pred);
        }
        char *s = cJSON_PrintUnformatted(o);
        if (s) printf("%s\n", s);
        free(s);
        cJSON_Delete(o);
        if (s == NULL) rc = LMP_EXIT_FAIL;
    } else {
        printf("ppl %.4f (nll %.6f) over %lld windows of %lld tokens: %lld tokens, %.3f s, "
               "%.1f tokens/s\n",
               res.ppl, res.nll, (long long)res.n_windows, ctx, (long long)res.n_tokens,
               res.seconds, tps);
        if (ref_tf)
            printf("against %s: kl %.6f nats per token, top-1 agreement %.4f over %lld predicted "
                   "tokens (reference ppl %.4f)\n",
                   ref_path, res.kl, res.top1, (long long)res.n_pred, res.ref_ppl);
    }
out:
    if (dump.f) fclose(dump.f);
    lmp_transformer_destroy(&tf);
    lmp_transformer_destroy(&ref_tf);
    free(ref_ids);
    lmp_tokenizer_free(&ref_tok);
    lmp_model_close(&ref_model);
    free(ids);
    lmp_tokenizer_free(&tok);
    lmp_model_close(&model);
    free(text);
    return rc;
}

const struct lmp_cli_cmd lmp_cli_cmd_eval = {
    .name    = "eval",
    .summary = "perplexity of a model on a text file",
    .usage   = usage,
    .help    = help,
    .exec    = cmd_eval_exec,
};
