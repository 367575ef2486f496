/*  inspect_artifact - lmpress inspect ART.h5: what a compression artifact holds
 *
 *  Called by cmd_inspect when the path is an HDF5 file (or an unfinished artifact, i.e.
 *  only ART.h5.parts/ exists). Prints the job (model, fingerprints, calibration, method,
 *  scheme, config), one line per committed layer (codec, rel. error before/after, the
 *  scheme's bits per weight, seconds, steps) and totals: what the file takes on disk and
 *  its bits per weight (8 file bytes / parameters of the model; the linears: 8 bytes of
 *  their data / their parameters); --json prints the same as one object.
 */
#include "cli/cli.h"
#include "artifact/artifact.h" /* defines: lmp_artifact_open_read, lmp_artifact_read_layer */

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int lmp_cli_inspect_artifact(struct lmp_cli *cli, const char *path);

/* True if path starts with the HDF5 signature, or only its parts directory exists. */
bool lmp_cli_is_artifact(const char *path);

bool lmp_cli_is_artifact(const char *path) {
    static const unsigned char magic[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    unsigned char              buf[8];
    FILE                      *f = fopen(path, "rb");
    if (f) {
        bool ok = fread(buf, 1, 8, f) == 8 && memcmp(buf, magic, 8) == 0;
        fclose(f);
        return ok;
    }
    char parts[4200];
    snprintf(parts, sizeof(parts), "%s.parts", path);
    FILE *d = fopen(parts, "r"); /* a directory opens read-only on Linux */
    if (d) fclose(d);
    return d != NULL;
}

int lmp_cli_inspect_artifact(struct lmp_cli *cli, const char *path) {
    struct lmp_err       err = {0};
    struct lmp_artifact *a   = NULL;
    if (lmp_artifact_open_read(path, &a, &err) != LMP_OK) return lmp_cli_fail(cli, &err);
    const struct lmp_art_job *job      = lmp_artifact_job(a);
    const struct lmp_config  *c        = &job->cfg;
    const int64_t             n_layers = lmp_artifact_n_layers(a);
    cJSON                    *root = NULL, *jl = NULL;
    if (cli->json) {
        root     = cJSON_CreateObject();
        cJSON *j = cJSON_AddObjectToObject(root, "job");
        cJSON_AddStringToObject(j, "model", job->model_name);
        char fp[32];
        snprintf(fp, sizeof(fp), "%016" PRIx64, job->model_fp);
        cJSON_AddStringToObject(j, "model_fingerprint", fp);
        snprintf(fp, sizeof(fp), "%016" PRIx64, job->calib_fp);
        cJSON_AddStringToObject(j, "calib_fingerprint", fp);
        cJSON_AddStringToObject(j, "calibration", job->calib_desc);
        cJSON_AddStringToObject(j, "method", job->method);
        cJSON_AddStringToObject(j, "scheme", job->scheme);
        cJSON_AddStringToObject(j, "tool_version", job->tool_version);
        cJSON_AddStringToObject(j, "arch", lmp_arch_name(c->arch));
        cJSON_AddNumberToObject(j, "n_layers", c->n_layers);
        cJSON_AddNumberToObject(j, "dim", c->dim);
        cJSON_AddNumberToObject(j, "hidden_dim", c->hidden_dim);
        cJSON_AddNumberToObject(j, "vocab_size", c->vocab_size);
        jl = cJSON_AddArrayToObject(root, "layers");
    } else {
        printf("artifact   %s\n", path);
        printf("model      %s (fingerprint %016" PRIx64 ")\n", job->model_name, job->model_fp);
        printf("config     %s, %d layers, dim %d, hidden %d, heads %d/%d, vocab %d\n",
               lmp_arch_name(c->arch), c->n_layers, c->dim, c->hidden_dim, c->n_heads,
               c->n_kv_heads, c->vocab_size);
        printf("method     %s, scheme %s\n", job->method, job->scheme);
        printf("calib      %s (fingerprint %016" PRIx64 ")\n", job->calib_desc, job->calib_fp);
        printf("written by lmpress %s\n\n", job->tool_version);
        printf("%-40s %-5s %10s %10s %7s %8s %7s\n", "layer", "codec", "rel before", "rel after",
               "bits", "seconds", "steps");
    }
    double  rel = 0, secs = 0;
    int64_t steps = 0, n_q_params = 0;
    int     rc = LMP_EXIT_OK;
    for (int64_t i = 0; i < n_layers; i++) {
        struct lmp_art_layer l    = {0};
        const char          *name = lmp_artifact_layer_name(a, i);
        if (lmp_artifact_read_layer(a, name, &l, &err) != LMP_OK) {
            rc = lmp_cli_fail(cli, &err);
            goto out;
        }
        const struct lmp_art_stats *s = &l.stats;
        char                        codec[32];
        if (l.codec == LMP_ART_CODEC_AQ)
            snprintf(codec, sizeof(codec), "%dx%dg%d", l.M, l.B, l.g);
        else
            snprintf(codec, sizeof(codec), "rtn%dg%d", l.B, l.g);
        rel += s->rel_err_after, secs += s->seconds, steps += s->steps;
        n_q_params += l.n_out * l.n_in;
        if (jl) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "name", name);
            cJSON_AddStringToObject(o, "codec", codec);
            cJSON_AddNumberToObject(o, "n_out", (double)l.n_out);
            cJSON_AddNumberToObject(o, "n_in", (double)l.n_in);
            cJSON_AddNumberToObject(o, "rel_err_before", s->rel_err_before);
            cJSON_AddNumberToObject(o, "rel_err_after", s->rel_err_after);
            cJSON_AddNumberToObject(o, "bits_per_weight", s->bits_per_weight);
            cJSON_AddNumberToObject(o, "seconds", s->seconds);
            cJSON_AddNumberToObject(o, "steps", (double)s->steps);
            cJSON_AddItemToArray(jl, o);
        } else {
            printf("%-40s %-5s %10.5f %10.5f %7.3f %8.2f %7lld\n", name, codec, s->rel_err_before,
                   s->rel_err_after, s->bits_per_weight, s->seconds, (long long)s->steps);
        }
        lmp_art_layer_release(&l);
    }
    int64_t n_kept = 0;
    for (int64_t i = 0; i < job->n_linears; i++) {
        char t[LMP_NAME_MAX + 8];
        snprintf(t, sizeof(t), "%s.weight", job->linears[i].name);
        for (int64_t k = 0; k < lmp_artifact_n_tensors(a); k++)
            if (strcmp(lmp_artifact_tensor_name(a, k), t) == 0) {
                n_kept++;
                break;
            }
    }
    struct lmp_art_size sz;
    if (lmp_artifact_size(a, &sz, &err) != LMP_OK) {
        rc = lmp_cli_fail(cli, &err);
        goto out;
    }
    const double mean_rel = n_layers ? rel / (double)n_layers : 0.0;
    /* what the files hold, not what the scheme's nominal bits would make them */
    const double bits_lin =
        sz.n_linear_params ? 8.0 * (double)sz.linear_bytes / (double)sz.n_linear_params : 0.0;
    const double bits_model = sz.n_params ? 8.0 * (double)sz.file_bytes / (double)sz.n_params : 0.0;
    const bool   complete   = lmp_artifact_is_complete(a);
    if (root) {
        cJSON *t = cJSON_AddObjectToObject(root, "totals");
        cJSON_AddNumberToObject(t, "linears", (double)job->n_linears);
        cJSON_AddNumberToObject(t, "compressed", (double)n_layers);
        cJSON_AddNumberToObject(t, "kept", (double)n_kept);
        cJSON_AddNumberToObject(t, "tensors", (double)lmp_artifact_n_tensors(a));
        cJSON_AddBoolToObject(t, "complete", complete);
        cJSON_AddBoolToObject(t, "tokenizer", lmp_artifact_has_tokenizer(a));
        cJSON_AddNumberToObject(t, "mean_rel_err", mean_rel);
        cJSON_AddNumberToObject(t, "bits_per_weight_linear", bits_lin);
        cJSON_AddNumberToObject(t, "bits_per_weight_model", bits_model);
        cJSON_AddNumberToObject(t, "file_bytes", (double)sz.file_bytes);
        cJSON_AddNumberToObject(t, "linear_bytes", (double)sz.linear_bytes);
        cJSON_AddNumberToObject(t, "tensor_bytes", (double)sz.tensor_bytes);
        cJSON_AddNumberToObject(t, "params", (double)sz.n_params);
        if (sz.embed_dtype >= 0)
            cJSON_AddStringToObject(t, "embed_dtype", lmp_dtype_name(sz.embed_dtype));
        if (sz.head_dtype >= 0)
            cJSON_AddStringToObject(t, "head_dtype", lmp_dtype_name(sz.head_dtype));
        cJSON_AddNumberToObject(t, "linear_params", (double)sz.n_linear_params);
        cJSON_AddNumberToObject(t, "seconds", secs);
        cJSON_AddNumberToObject(t, "steps", (double)steps);
        char *s = cJSON_PrintUnformatted(root);
        if (s)
            printf("%s\n", s);
        else
            rc = LMP_EXIT_FAIL;
        free(s);
    } else {
        printf("\n%lld of %lld linears compressed, %lld kept unquantized, %lld tensors stored, "
               "tokenizer %s, %s\n",
               (long long)n_layers, (long long)job->n_linears, (long long)n_kept,
               (long long)lmp_artifact_n_tensors(a),
               lmp_artifact_has_tokenizer(a) ? "stored" : "missing",
               complete ? "complete" : "INCOMPLETE");
        printf("mean rel err %.5f, %.1f s, %lld steps (%lld compressed weights)\n", mean_rel, secs,
               (long long)steps, (long long)n_q_params);
        printf("size %.2f MB on disk (%lld bytes): %.3f bits per weight over the model's %lld "
               "parameters; linears %.3f bits per weight (%.2f MB of data), unquantized tensors "
               "%.2f MB\n",
               (double)sz.file_bytes / 1e6, (long long)sz.file_bytes, bits_model,
               (long long)sz.n_params, bits_lin, (double)sz.linear_bytes / 1e6,
               (double)sz.tensor_bytes / 1e6);
        if (sz.embed_dtype >= 0) /* Q8_0 / Q4_1: compress --embed-bits 8 / 4 */
            printf("embedding %s%s%s\n", lmp_dtype_name(sz.embed_dtype),
                   sz.head_dtype >= 0 ? ", lm head " : " (the lm head is tied to it)",
                   sz.head_dtype >= 0 ? lmp_dtype_name(sz.head_dtype) : "");
    }
out:
    cJSON_Delete(root);
    lmp_artifact_close(&a);
    return rc;
}
