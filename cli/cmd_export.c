/*  cmd_export - lmpress export: an artifact in a format other tools load
 *
 *  --format hf-aqlm writes a Hugging Face model directory (config.json with an AQLM
 *  quantization_config, model.safetensors, tokenizer.json, tokenizer_config.json) that
 *  transformers loads with the aqlm package (artifact/export_hf.h). The directory is
 *  written beside OUT and renamed into place, so an interrupted or failed export leaves
 *  no half-written model; Ctrl-C stops it within one tensor (exit 130).
 */
#include "cli/cli.h"
#include "artifact/export_hf.h" /* defines: lmp_export_hf */

#include <cjson/cJSON.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const usage =
    "lmpress export --format hf-aqlm --out DIR [--force] [--json] <ART.h5>";

static const char *const help =
    "Write a compressed model in a format other tools load.\n\n"
    "  --format FMT          hf-aqlm: a Hugging Face directory for transformers + aqlm\n"
    "                        (default hf-aqlm)\n"
    "  --out DIR             the directory to write (required); it must be absent or empty\n"
    "  --force               replace a non-empty DIR (default off)\n"
    "  --json                print the summary as one JSON object\n"
    "exit codes: 0 ok, 1 write failed or DIR not empty, 2 usage, 4 artifact rejected\n";

static int cmd_export_exec(struct lmp_cli *cli, int argc, char **argv) {
    const char                *format = "hf-aqlm", *out = NULL;
    struct lmp_export_hf_opts  opts    = {0};
    static const struct option lopts[] = {{"format", required_argument, NULL, 'f'},
                                          {"out", required_argument, NULL, 'o'},
                                          {"force", no_argument, NULL, 'F'},
                                          {"json", no_argument, NULL, 'j'},
                                          {0, 0, 0, 0}};
    for (int c; (c = getopt_long(argc, argv, "f:o:", lopts, NULL)) != -1;) {
        if (c == 'f')
            format = optarg;
        else if (c == 'o')
            out = optarg;
        else if (c == 'F')
            opts.force = true;
        else if (c == 'j')
            cli->json = true;
        else
            return lmp_cli_usage(usage);
    }
    if (argc - optind != 1) return lmp_cli_usage_msg(usage, "expected one artifact");
    if (strcmp(format, "hf-aqlm") != 0) {
        char msg[160];
        snprintf(msg, sizeof(msg), "unknown format '%.64s' (known: hf-aqlm)", format);
        return lmp_cli_usage_msg(usage, msg);
    }
    if (out == NULL || out[0] == '\0') return lmp_cli_usage_msg(usage, "--out DIR is required");

    static volatile sig_atomic_t stop;
    lmp_cli_stop_on_signals(&stop);
    struct lmp_err              err = {0};
    struct lmp_export_hf_result r;
    if (lmp_export_hf(argv[optind], out, &opts, &r, &err) != LMP_OK) return lmp_cli_fail(cli, &err);
    if (cli->json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "format", format);
        cJSON_AddStringToObject(o, "out", out);
        char scheme[48];
        snprintf(scheme, sizeof(scheme), "%dx%dg%d", r.M, r.B, r.g);
        cJSON_AddStringToObject(o, "scheme", scheme);
        cJSON_AddNumberToObject(o, "quantized", (double)r.n_quantized);
        cJSON_AddNumberToObject(o, "kept", (double)r.n_kept);
        cJSON_AddNumberToObject(o, "tensors", (double)r.n_tensors);
        cJSON_AddNumberToObject(o, "bytes", (double)r.bytes);
        cJSON_AddBoolToObject(o, "rope_permuted", r.permuted_rope);
        cJSON_AddStringToObject(o, "tokenizer", r.tokenizer);
        char *s = cJSON_PrintUnformatted(o);
        if (s) printf("%s\n", s);
        free(s);
        cJSON_Delete(o);
    } else {
        printf("exported %s to %s: %" PRId64 " linears AQLM %dx%dg%d, %" PRId64
               " kept in float16, %" PRId64 " tensors, %.1f MB%s\n"
               "tokenizer: %s\n",
               argv[optind], out, r.n_quantized, r.M, r.B, r.g, r.n_kept, r.n_tensors,
               (double)r.bytes / 1e6, r.permuted_rope ? "; q/k rows permuted to HF RoPE" : "",
               r.tokenizer);
    }
    return LMP_EXIT_OK;
}

const struct lmp_cli_cmd lmp_cli_cmd_export = {
    .name    = "export",
    .summary = "write an artifact as a Hugging Face AQLM model (transformers + aqlm)",
    .usage   = usage,
    .help    = help,
    .exec    = cmd_export_exec,
};
