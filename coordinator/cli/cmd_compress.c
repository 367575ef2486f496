/*  cmd_compress - lmpress compress: compress a model into an artifact on this machine
 *
 *  Calibration comes from a text file (windows of --ctx tokens at seeded random offsets)
 *  or from the model itself (--calib generate). Each linear is compressed with AQLM
 *  (--scheme MxBgG) or RTN (--method rtn --bits N --group G) and committed to the
 *  artifact as soon as it is final, so an interrupted run resumes where it stopped
 *  (coordinator/compress.h). Progress goes to stderr, one line per layer (a live line on
 *  a terminal); the summary to stdout (--json: one object).
 */
#include "coordinator/cli/cli.h"
#include "coordinator/artifact_model.h"   /* defines: lmp_art_tokenizer_source */
#include "coordinator/compress.h"         /* defines: lmp_compress_run */
#include "proto/file.h"                   /* defines: lmp_file_read_all */
#include "worker/model/model.h"           /* defines: lmp_model_open */
#include "worker/model/tokenizer.h"       /* defines: lmp_tokenizer_open, lmp_tokenizer_encode */

#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const usage =
    "lmpress compress --model PATH [--tokenizer PATH] --calib FILE|generate [--nsamples N]\n"
    "                 [--ctx L] --out ART.h5 [--scheme MxBgG] [--mode sequential|independent]\n"
    "                 [--method aqlm|rtn] [--bits N] [--group G] [--keep PATTERN]...\n"
    "                 [--finetune] [--ft-epochs E] [--ft-max-steps S] [--beam B]\n"
    "                 [--max-rounds R] [--tol T] [--cg-iters N] [--adam-steps S] [--lr LR]\n"
    "                 [--seed S] [--threads T] [--json]";

enum { MAX_KEEP = 64 };

struct progress {
    bool tty;
    bool live;   /* a live line is on screen */
};

static void fmt_eta(double s, char *buf, size_t n) {
    if (s < 0) snprintf(buf, n, "?");
    else if (s < 90) snprintf(buf, n, "%.0fs", s);
    else if (s < 5400) snprintf(buf, n, "%.1fm", s / 60);
    else snprintf(buf, n, "%.1fh", s / 3600);
}

static void on_progress(void *ctx, const struct lmp_compress_event *ev) {
    struct progress *p = ctx;
    char eta[32], line[400];
    fmt_eta(ev->eta_s, eta, sizeof(eta));
    switch (ev->what) {
    case LMP_COMPRESS_EV_STAGE:
        if (ev->steps > 0)
            snprintf(line, sizeof(line), "%s: rel mse %.4g -> %.4g, %lld steps, %.1fs", ev->name,
                     ev->rel_err_before, ev->rel_err_after, (long long) ev->steps, ev->seconds);
        else
            snprintf(line, sizeof(line), "%s: %.1fs", ev->name, ev->seconds);
        break;
    case LMP_COMPRESS_EV_KEPT:
        snprintf(line, sizeof(line), "[%lld/%lld] %s kept (16 bits)", (long long) ev->index,
                 (long long) ev->n_linears, ev->name);
        break;
    default:
        snprintf(line, sizeof(line), "[%lld/%lld] %s%s rel err %.4g -> %.4g, %.3f bits, %.1fs, "
                 "ETA %s", (long long) ev->index, (long long) ev->n_linears, ev->name,
                 ev->what == LMP_COMPRESS_EV_RESUMED ? " (resumed)" : "", ev->rel_err_before,
                 ev->rel_err_after, ev->bits_per_weight, ev->seconds, eta);
    }
    if (p->tty) {
        /* layers overwrite one live line; stages stay */
        fprintf(stderr, "\r\033[K%s", line);
        if (ev->what == LMP_COMPRESS_EV_STAGE || ev->index == ev->n_linears) {
            fputc('\n', stderr);
            p->live = false;
        } else p->live = true;
    } else {
        fprintf(stderr, "%s\n", line);
    }
    fflush(stderr);
}

static int default_threads(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int) n : 1;
}

static int cmd_compress_exec(struct lmp_cli *cli, int argc, char **argv) {
    const char *model_path = NULL, *tok_path = NULL, *calib = NULL, *scheme = "2x8g8",
               *mode = "sequential", *method = "aqlm";
    const char *keep[MAX_KEEP];
    int         n_keep = 0;
    long long   nsamples = 128, ctx = 0, bits = 4, group = 128, seed = 0,
                threads = default_threads(), beam = -1, max_rounds = -1, adam_steps = -1,
                ft_epochs = -1, ft_steps = -1, cg_iters = -1;
    double      tol = -1, lr = -1;
    bool        finetune = false;
    struct lmp_compress_opts o;
    lmp_compress_opts_init(&o);
    static const struct option opts[] = {
        {"model", required_argument, NULL, 'm'},    {"tokenizer", required_argument, NULL, 'k'},
        {"calib", required_argument, NULL, 'c'},    {"nsamples", required_argument, NULL, 'n'},
        {"ctx", required_argument, NULL, 'L'},      {"scheme", required_argument, NULL, 's'},
        {"out", required_argument, NULL, 'o'},      {"mode", required_argument, NULL, 'M'},
        {"method", required_argument, NULL, 'q'},   {"bits", required_argument, NULL, 'b'},
        {"group", required_argument, NULL, 'g'},    {"keep", required_argument, NULL, 'K'},
        {"finetune", no_argument, NULL, 'f'},       {"seed", required_argument, NULL, 'S'},
        {"threads", required_argument, NULL, 't'},  {"json", no_argument, NULL, 'j'},
        {"beam", required_argument, NULL, 1},       {"max-rounds", required_argument, NULL, 2},
        {"tol", required_argument, NULL, 3},        {"adam-steps", required_argument, NULL, 4},
        {"lr", required_argument, NULL, 5},         {"ft-epochs", required_argument, NULL, 6},
        {"ft-max-steps", required_argument, NULL, 7}, {"cg-iters", required_argument, NULL, 8},
        {0},
    };
    for (int c; (c = getopt_long(argc, argv, "m:k:c:n:L:s:o:M:q:b:g:K:fS:t:j", opts, NULL)) != -1;) {
        bool ok = true;
        switch (c) {
        case 'm': model_path = optarg; break;
        case 'k': tok_path = optarg; break;
        case 'c': calib = optarg; break;
        case 's': scheme = optarg; break;
        case 'o': o.out_path = optarg; break;
        case 'M': mode = optarg; break;
        case 'q': method = optarg; break;
        case 'f': finetune = true; break;
        case 'j': cli->json = true; break;
        case 'K':
            if (n_keep == MAX_KEEP) return lmp_cli_usage_msg(usage, "too many --keep patterns");
            keep[n_keep++] = optarg;
            break;
        case 'n': ok = lmp_cli_parse_i64("--nsamples", optarg, 1, 1 << 20, &nsamples); break;
        case 'L': ok = lmp_cli_parse_i64("--ctx", optarg, 2, 1 << 20, &ctx); break;
        case 'b': ok = lmp_cli_parse_i64("--bits", optarg, 1, 8, &bits); break;
        case 'g': ok = lmp_cli_parse_i64("--group", optarg, 1, 1 << 20, &group); break;
        case 'S': ok = lmp_cli_parse_i64("--seed", optarg, 0, INT64_MAX, &seed); break;
        case 't': ok = lmp_cli_parse_i64("--threads", optarg, 1, 256, &threads); break;
        case 1: ok = lmp_cli_parse_i64("--beam", optarg, 1, 256, &beam); break;
        case 2: ok = lmp_cli_parse_i64("--max-rounds", optarg, 1, 64, &max_rounds); break;
        case 3: ok = lmp_cli_parse_f64("--tol", optarg, 0, 1, &tol); break;
        case 4: ok = lmp_cli_parse_i64("--adam-steps", optarg, 0, 1 << 20, &adam_steps); break;
        case 5: ok = lmp_cli_parse_f64("--lr", optarg, 0, 1, &lr); break;
        case 6: ok = lmp_cli_parse_i64("--ft-epochs", optarg, 1, 1000, &ft_epochs); break;
        case 7: ok = lmp_cli_parse_i64("--ft-max-steps", optarg, 1, 1 << 30, &ft_steps); break;
        case 8: ok = lmp_cli_parse_i64("--cg-iters", optarg, 0, 1 << 20, &cg_iters); break;
        default: return lmp_cli_usage(usage);
        }
        if (!ok) return LMP_EXIT_USAGE;
    }
    if (optind != argc) return lmp_cli_usage_msg(usage, "unexpected argument");
    if (model_path == NULL || o.out_path == NULL)
        return lmp_cli_usage_msg(usage, "--model and --out are required");
    if (strcmp(method, "aqlm") == 0) o.spec.method = LMP_COMPRESS_AQLM;
    else if (strcmp(method, "rtn") == 0) o.spec.method = LMP_COMPRESS_RTN;
    else return lmp_cli_usage_msg(usage, "--method must be aqlm or rtn");
    if (strcmp(mode, "sequential") == 0) o.mode = LMP_COMPRESS_SEQUENTIAL;
    else if (strcmp(mode, "independent") == 0) o.mode = LMP_COMPRESS_INDEPENDENT;
    else return lmp_cli_usage_msg(usage, "--mode must be sequential or independent");
    if (o.spec.method == LMP_COMPRESS_AQLM && calib == NULL)
        return lmp_cli_usage_msg(usage, "--calib FILE|generate is required for aqlm");

    struct lmp_err        err   = {0};
    if (o.spec.method == LMP_COMPRESS_AQLM &&
        lmp_aq_scheme_parse(&o.spec.sc, scheme, &err) != LMP_OK)
        return lmp_cli_usage_msg(usage, err.msg);
    o.spec.rtn_bits  = (int) bits;
    o.spec.rtn_group = group;
    if (beam > 0) o.spec.aq.beam = (int) beam;
    if (max_rounds > 0) o.spec.aq.max_rounds = (int) max_rounds;
    if (tol >= 0) o.spec.aq.tol = tol;
    if (adam_steps >= 0) o.spec.aq.adam_steps = (int) adam_steps;
    if (cg_iters >= 0) o.spec.aq.cg_iters = (int) cg_iters;
    if (lr > 0) o.spec.aq.lr = (float) lr;
    if (ft_epochs > 0) o.ft.max_epochs = (int) ft_epochs;
    if (ft_steps > 0) o.ft.max_steps = ft_steps;
    o.keep      = keep;
    o.n_keep    = n_keep;
    o.finetune  = finetune;
    o.seed      = (uint64_t) seed;
    o.n_threads = (int) threads;
    o.n_seq     = nsamples;

    struct lmp_model     *model = NULL;
    struct lmp_tokenizer *tok   = NULL;
    char                 *text  = NULL;
    int32_t              *ids = NULL, *prompt = NULL;
    uint8_t              *tok_bytes = NULL;
    size_t                len = 0;
    int64_t               n_ids = 0, n_prompt = 0;
    int                   rc = LMP_EXIT_OK;
    struct progress       prog = {.tty = cli->tty};

    if (lmp_model_open(model_path, &model, &err) != LMP_OK ||
        lmp_tokenizer_open(tok_path, model, &tok, &err) != LMP_OK ||
        lmp_art_tokenizer_source(model, tok_path, &o.tok_kind, &tok_bytes, &o.tok_n, &err) != LMP_OK) {
        rc = lmp_cli_fail(cli, &err);
        goto out;
    }
    o.tok_bytes = tok_bytes;
    if ((rc = lmp_cli_resolve_ctx(&ctx, model->cfg.max_seq)) != LMP_EXIT_OK) goto out;
    o.ctx = ctx;
    if (calib && strcmp(calib, "generate") == 0) {
        o.calib_source = "generate";
        int32_t bos = lmp_tokenizer_bos(tok);
        if (bos >= 0) {
            if ((prompt = malloc(sizeof(*prompt))) == NULL) goto oom;
            prompt[0] = bos;
            n_prompt  = 1;
        } else {
            static const char p[] = "Once upon a time";   /* a neutral opening */
            if (lmp_tokenizer_encode(tok, p, sizeof(p) - 1, false, &prompt, &n_prompt, &err)) {
                rc = lmp_cli_fail(cli, &err);
                goto out;
            }
        }
        o.prompt   = prompt;
        o.n_prompt = n_prompt;
    } else if (calib) {
        o.calib_source = calib;
        if (lmp_file_read_all(calib, &text, &len, &err) != LMP_OK) {
            fprintf(stderr, "lmpress: calibration file: %s\n", err.msg);
            rc = LMP_EXIT_INPUT;
            goto out;
        }
        if (lmp_tokenizer_encode(tok, text, len, true, &ids, &n_ids, &err) != LMP_OK) {
            rc = lmp_cli_fail(cli, &err);
            goto out;
        }
        if (n_ids < ctx) {
            fprintf(stderr, "lmpress: calibration file '%s' has %lld tokens, fewer than one "
                    "window of %lld\n", calib, (long long) n_ids, ctx);
            rc = LMP_EXIT_INPUT;
            goto out;
        }
        o.text_ids   = ids;
        o.n_text_ids = n_ids;
    }
    o.progress     = on_progress;
    o.progress_ctx = &prog;

    struct lmp_compress_summary S;
    enum lmp_status st = lmp_compress_run(model, &o, &S, &err);
    if (prog.live) fputc('\n', stderr);
    if (st != LMP_OK) {
        rc = lmp_cli_fail(cli, &err);
        goto out;
    }
    char sname[64];
    lmp_compress_spec_name(&o.spec, sname, sizeof(sname));
    if (cli->json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "artifact", o.out_path);
        cJSON_AddStringToObject(j, "method", method);
        cJSON_AddStringToObject(j, "scheme", sname);
        cJSON_AddStringToObject(j, "mode", mode);
        cJSON_AddBoolToObject(j, "finetune", finetune);
        cJSON_AddNumberToObject(j, "linears", (double) S.n_linears);
        cJSON_AddNumberToObject(j, "quantized", (double) S.n_quantized);
        cJSON_AddNumberToObject(j, "resumed", (double) S.n_resumed);
        cJSON_AddNumberToObject(j, "kept", (double) S.n_kept);
        cJSON_AddNumberToObject(j, "mean_rel_err", S.mean_rel_err);
        cJSON_AddNumberToObject(j, "bits_per_weight_linear", S.bits_linear);
        cJSON_AddNumberToObject(j, "bits_per_weight_model", S.bits_model);
        cJSON_AddNumberToObject(j, "seconds_calibration", S.seconds_calib);
        cJSON_AddNumberToObject(j, "seconds_quantization", S.seconds_quant);
        cJSON_AddNumberToObject(j, "seconds_finetune", S.seconds_finetune);
        cJSON_AddNumberToObject(j, "seconds_total", S.seconds_total);
        char *s = cJSON_PrintUnformatted(j);
        if (s) printf("%s\n", s);
        else rc = LMP_EXIT_FAIL;
        free(s);
        cJSON_Delete(j);
    } else {
        printf("artifact %s: %s %s, %lld linears (%lld compressed, %lld resumed, %lld kept)\n",
               o.out_path, method, sname, (long long) S.n_linears, (long long) S.n_quantized,
               (long long) S.n_resumed, (long long) S.n_kept);
        printf("mean rel err %.5f; bits/weight %.3f over linears, %.3f over the whole model "
               "(unquantized tensors at 16)\n", S.mean_rel_err, S.bits_linear, S.bits_model);
        printf("wall time: calibration %.1fs, quantization %.1fs, fine-tuning %.1fs, total %.1fs\n",
               S.seconds_calib, S.seconds_quant, S.seconds_finetune, S.seconds_total);
    }
    goto out;
oom:
    fprintf(stderr, "lmpress: out of memory\n");
    rc = LMP_EXIT_FAIL;
out:
    free(tok_bytes);
    free(prompt);
    free(ids);
    free(text);
    lmp_tokenizer_free(&tok);
    lmp_model_close(&model);
    return rc;
}

const struct lmp_cli_cmd lmp_cli_cmd_compress = {
    .name = "compress", .summary = "compress a model (AQLM or RTN) into an artifact",
    .usage = usage, .exec = cmd_compress_exec,
};
