/*  bench_aq_init - AQLM settings on real (W, H) pairs: the k-means start and the search
 *  order, old against new, each layer quantized with every configuration in one run
 *
 *  Opens a checkpoint, samples calibration windows from a text (as `lmpress compress`:
 *  windows at seeded offsets), walks the first --blocks blocks of the original model
 *  (independent mode: block b's inputs are the original model's, so every configuration
 *  sees the same H) and quantizes each of a block's linears with every configuration of
 *  --configs, one after another on the same (W, H), with the job's per-layer seed. Prints
 *  per layer the relative error ||(W - W_hat) X||^2 / ||W X||^2 and the seconds of each
 *  configuration, and their ratios to the first configuration (the baseline), then the
 *  geometric means over the layers (and over gate_proj/up_proj alone).
 *
 *  Configurations (comma-separated):
 *    old           k-means on a sample of 64 K groups, points weighted by s^2 tr(H_jj)/g,
 *                  beam search in order (j, m) (the defaults before this bench)
 *    new           k-means on every group, unweighted, search order shuffled every round
 *    new-sample    new, but k-means on a sample of 64 K groups
 *    new-weighted  new, but weighted k-means points
 *    new-fixed     new, but the search in order (j, m)
 *    old+all, old+unweighted, old+shuffle   old with one change
 *    any of them with "@B" appended: beam width B (default 8), e.g. new@16
 *
 *  usage: bench_aq_init [--model PATH] [--text FILE] [--blocks N] [--nsamples N] [--ctx N]
 *                       [--scheme 2x8g8] [--threads N] [--seed S] [--configs LIST]
 *                       [--layers q,k,v,o,gate,up,down]
 *  defaults: ~/.cache/lmpress/models/SmolLM2-135M-Instruct.Q4_1.gguf,
 *  ../shared/data/tinystories_valid_first1000.txt, 2 blocks, 32 x 256 tokens, 2x8g8,
 *  2 threads, seed 0, "old,new", every linear. bench/aq_init.sh runs the documented table.
 */
#include "worker/aq.h"
#include "worker/calib.h"
#include "worker/compress.h"   /* defines: lmp_compress_layer_seed */
#include "model/model.h"       /* defines: lmp_model_open, lmp_tensor_rows_f32 */
#include "model/tokenizer.h"   /* defines: lmp_tokenizer_open, lmp_tokenizer_encode */
#include "model/transformer.h" /* defines: lmp_transformer_new */
#include "kernels/kernels.h"   /* defines: lmp_kernels_set_threads */
#include "base/file.h"         /* defines: lmp_file_read_all */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_CONFIGS = 16 };

struct config {
    char               name[32];
    struct lmp_aq_opts o;
};

/* opts for a configuration name (see the header); 0, or -1 for an unknown name. */
static int config_parse(struct config *c, const char *text, int K) {
    char base[32];
    int  beam = 8;
    snprintf(c->name, sizeof(c->name), "%s", text);
    snprintf(base, sizeof(base), "%s", text);
    char *at = strchr(base, '@');
    if (at) {
        beam = atoi(at + 1);
        *at  = '\0';
        if (beam < 1) return -1;
    }
    struct lmp_aq_opts *o = &c->o;
    lmp_aq_opts_init(o);
    o->beam              = beam;
    const int64_t sample = 64 * (int64_t)K;
    if (!strncmp(base, "old", 3)) {
        o->kmeans_max_points = sample;
        o->kmeans_weighted   = 1;
        o->beam_shuffle      = 0;
        if (!strcmp(base, "old+all"))
            o->kmeans_max_points = 0;
        else if (!strcmp(base, "old+unweighted"))
            o->kmeans_weighted = 0;
        else if (!strcmp(base, "old+shuffle"))
            o->beam_shuffle = 1;
        else if (strcmp(base, "old"))
            return -1;
    } else if (!strncmp(base, "new", 3)) {
        o->kmeans_max_points = 0;
        o->kmeans_weighted   = 0;
        o->beam_shuffle      = 1;
        if (!strcmp(base, "new-sample"))
            o->kmeans_max_points = sample;
        else if (!strcmp(base, "new-weighted"))
            o->kmeans_weighted = 1;
        else if (!strcmp(base, "new-fixed"))
            o->beam_shuffle = 0;
        else if (strcmp(base, "new"))
            return -1;
    } else {
        return -1;
    }
    return 0;
}

static int layer_wanted(const char *list, enum lmp_lin k) {
    if (list == NULL) return 1;
    static const char *short_names[LMP_LIN_COUNT] = {"q", "k", "v", "o", "gate", "up", "down"};
    char               buf[128];
    snprintf(buf, sizeof(buf), "%s", list);
    for (char *t = strtok(buf, ","); t; t = strtok(NULL, ","))
        if (!strcmp(t, short_names[k])) return 1;
    return 0;
}

int main(int argc, char **argv) {
    const char *home = getenv("HOME");
    char        model_path[512];
    snprintf(model_path, sizeof(model_path),
             "%s/.cache/lmpress/models/SmolLM2-135M-Instruct.Q4_1.gguf", home ? home : ".");
    const char *model = model_path, *text_path = "../shared/data/tinystories_valid_first1000.txt";
    const char *scheme = "2x8g8", *configs = "old,new", *layers = NULL;
    int         n_blocks = 2, threads = 2;
    int64_t     n_seq = 32, ctx = 256;
    uint64_t    seed = 0;
    for (int i = 1; i < argc; i += 2) { /* --option value pairs */
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (v == NULL) goto usage;
        if (!strcmp(a, "--model"))
            model = v;
        else if (!strcmp(a, "--text"))
            text_path = v;
        else if (!strcmp(a, "--blocks"))
            n_blocks = atoi(v);
        else if (!strcmp(a, "--nsamples"))
            n_seq = atoll(v);
        else if (!strcmp(a, "--ctx"))
            ctx = atoll(v);
        else if (!strcmp(a, "--scheme"))
            scheme = v;
        else if (!strcmp(a, "--threads"))
            threads = atoi(v);
        else if (!strcmp(a, "--seed"))
            seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--configs"))
            configs = v;
        else if (!strcmp(a, "--layers"))
            layers = v;
        else
            goto usage;
    }
    if (n_blocks < 1 || threads < 1 || n_seq < 1 || ctx < 2) goto usage;

    struct lmp_err       err = {0};
    struct lmp_aq_scheme sc;
    if (lmp_aq_scheme_parse(&sc, scheme, &err) != LMP_OK) {
        fprintf(stderr, "bench_aq_init: %s\n", err.msg);
        return 2;
    }
    struct config cf[MAX_CONFIGS];
    int           n_cf = 0;
    {
        char buf[512];
        snprintf(buf, sizeof(buf), "%s", configs);
        for (char *t = strtok(buf, ","); t; t = strtok(NULL, ",")) {
            if (n_cf == MAX_CONFIGS || config_parse(&cf[n_cf], t, sc.K) != 0) {
                fprintf(stderr, "bench_aq_init: unknown or too many configurations at '%s'\n", t);
                return 2;
            }
            n_cf++;
        }
    }
    lmp_kernels_set_threads(threads);

    struct lmp_model       *m    = NULL;
    struct lmp_tokenizer   *tok  = NULL;
    struct lmp_transformer *tf   = NULL;
    struct lmp_calib       *cal  = NULL;
    char                   *text = NULL;
    size_t                  len  = 0;
    int32_t                *ids = NULL, *tokens = NULL;
    int64_t                 n_ids = 0;
    int                     rc    = 1;
    if (lmp_model_open(model, &m, &err) || lmp_tokenizer_open(NULL, m, &tok, &err) ||
        lmp_file_read_all(text_path, &text, &len, &err) ||
        lmp_tokenizer_encode(tok, text, len, true, &ids, &n_ids, &err)) {
        fprintf(stderr, "bench_aq_init: %s\n", err.msg);
        goto out;
    }
    if (n_blocks > m->cfg.n_layers) n_blocks = m->cfg.n_layers;
    tokens                         = malloc((size_t)(n_seq * ctx) * sizeof(int32_t));
    struct lmp_transformer_opts to = {.n_threads = threads, .lazy_weights = true};
    if (tokens == NULL ||
        lmp_calib_sample_text(tokens, ids, n_ids, n_seq, ctx, seed, &err) != LMP_OK ||
        lmp_transformer_new(m, &to, &tf, &err) != LMP_OK ||
        lmp_calib_new(tf, tokens, n_seq, ctx, &cal, &err) != LMP_OK) {
        fprintf(stderr, "bench_aq_init: %s\n", err.msg[0] ? err.msg : "out of memory");
        goto out;
    }
    printf("bench_aq_init: %s, %s, %d blocks, %lld x %lld tokens of %s, %d threads, seed %llu\n",
           model, scheme, n_blocks, (long long)n_seq, (long long)ctx, text_path, threads,
           (unsigned long long)seed);
    printf("relative error (rel) and seconds (s) per configuration; x: ratio to '%s'\n",
           cf[0].name);
    printf("%-12s %-10s", "layer", "shape");
    for (int c = 0; c < n_cf; c++) printf(" | %-14s %9s %6s", cf[c].name, "rel", "s");
    printf("\n");

    double lr_sum[MAX_CONFIGS] = {0}, lt_sum[MAX_CONFIGS] = {0}, gu_lr[MAX_CONFIGS] = {0},
           gu_lt[MAX_CONFIGS] = {0}, t_tot[MAX_CONFIGS] = {0};
    int n_layers = 0, n_gu = 0;
    for (int b = 0; b < n_blocks; b++) {
        struct lmp_calib_grams *gr = lmp_calib_grams_new(&m->cfg);
        if (gr == NULL || lmp_calib_collect(cal, b, gr, &err) != LMP_OK) {
            fprintf(stderr, "bench_aq_init: block %d: %s\n", b, err.msg);
            lmp_calib_grams_destroy(&gr);
            goto out;
        }
        for (int k = 0; k < LMP_LIN_COUNT; k++) {
            if (!layer_wanted(layers, (enum lmp_lin)k)) continue;
            const struct lmp_linear *L = &m->blocks[b].lin[k];
            float                   *w = malloc((size_t)(L->n_out * L->n_in) * sizeof(float));
            float                   *h = malloc((size_t)(L->n_in * L->n_in) * sizeof(float));
            if (w == NULL || h == NULL ||
                lmp_calib_grams_h(gr, lmp_lin_input((enum lmp_lin)k), h) != LMP_OK) {
                fprintf(stderr, "bench_aq_init: no H for %s\n", L->name);
                free(w);
                free(h);
                lmp_calib_grams_destroy(&gr);
                goto out;
            }
            lmp_tensor_rows_f32(L->weight, 0, L->n_out, w);
            char shape[32], name[32];
            snprintf(shape, sizeof(shape), "%lldx%lld", (long long)L->n_out, (long long)L->n_in);
            snprintf(name, sizeof(name), "%d.%s", b, lmp_lin_name((enum lmp_lin)k));
            printf("%-12s %-10s", name, shape);
            fflush(stdout);
            double rel0 = 0, t0 = 0;
            for (int c = 0; c < n_cf; c++) {
                struct lmp_aq_opts  o = cf[c].o;
                struct lmp_aq_layer q;
                struct lmp_aq_stats st;
                o.seed = lmp_compress_layer_seed(seed, L->name);
                if (lmp_aq_quantize(&q, &st, w, h, L->n_out, L->n_in, &sc, &o, &err) != LMP_OK) {
                    fprintf(stderr, "\nbench_aq_init: %s: %s\n", L->name, err.msg);
                    free(w);
                    free(h);
                    lmp_calib_grams_destroy(&gr);
                    goto out;
                }
                lmp_aq_layer_release(&q);
                if (c == 0) rel0 = st.rel_err_final, t0 = st.seconds;
                const double xr = st.rel_err_final / rel0, xt = st.seconds / t0;
                if (c == 0)
                    printf(" | %-14s %9.5f %6.2f", "", st.rel_err_final, st.seconds);
                else
                    printf(" | x%-5.3f x%-6.2f %9.5f %6.2f", xr, xt, st.rel_err_final, st.seconds);
                fflush(stdout);
                lr_sum[c] += log(xr);
                lt_sum[c] += log(xt);
                t_tot[c] += st.seconds;
                if (k == LMP_LIN_GATE || k == LMP_LIN_UP) gu_lr[c] += log(xr), gu_lt[c] += log(xt);
            }
            printf("\n");
            n_layers++;
            n_gu += k == LMP_LIN_GATE || k == LMP_LIN_UP;
            free(w);
            free(h);
        }
        lmp_calib_grams_destroy(&gr);
        lmp_calib_take_output(cal); /* independent mode: the original block's output */
    }
    printf("\ngeometric mean ratio to '%s' over %d layers (gate_proj/up_proj: %d):\n", cf[0].name,
           n_layers, n_gu);
    for (int c = 0; c < n_cf; c++)
        printf("  %-16s rel x%.4f  s x%.3f  (gate/up: rel x%.4f  s x%.3f)  total %.1f s\n",
               cf[c].name, exp(lr_sum[c] / n_layers), exp(lt_sum[c] / n_layers),
               n_gu ? exp(gu_lr[c] / n_gu) : 1.0, n_gu ? exp(gu_lt[c] / n_gu) : 1.0, t_tot[c]);
    rc = 0;
out:
    lmp_calib_destroy(&cal);
    lmp_transformer_destroy(&tf);
    lmp_tokenizer_free(&tok);
    lmp_model_close(&m);
    free(text);
    free(ids);
    free(tokens);
    return rc;
usage:
    fprintf(stderr, "usage: bench_aq_init [--model PATH] [--text FILE] [--blocks N] [--nsamples N] "
                    "[--ctx N] [--scheme 2x8g8] [--threads N] [--seed S] [--configs LIST] "
                    "[--layers q,k,v,o,gate,up,down]\n");
    return 2;
}
