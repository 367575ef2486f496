/*  bench_art_size - an artifact's size in the current format against the one it was written in
 *
 *  usage: bench_art_size OLD.h5 MODEL NEW.h5 [EMBED_BITS]
 *
 *  Rewrites OLD.h5 (any format this lmpress reads, e.g. a format-1 artifact with fp32
 *  codebooks, scales and tensors) as NEW.h5 in the current format, as a compression of
 *  MODEL (the source checkpoint OLD.h5 was made from: it says which tensors were fp16,
 *  bf16, fp32 or ggml-quantized) writes it now: its layers as they are (codebooks and
 *  scales rounded to fp16), its tokenizer, and its tensors: the embedding, the head and
 *  kept linears, which no stage changes, in the source's precision as
 *  lmp_artifact_put_model_tensors stores them (fp32 values of a ggml or bf16 source are its
 *  exact dequantization, so rounding them gives the same bits), every other tensor (norms,
 *  tuned by fine-tuning or PV-Tuning; biases) as it is. MODEL "-" copies every tensor as it
 *  is (a format-2 copy of a format-1 test artifact: tests/fuzz/corpus/fuzz_artifact/).
 *  EMBED_BITS 8 or 4 stores model.embed_tokens.weight and lm_head.weight as a compression
 *  with --embed-bits 8 / 4 (and --head-bits alike) does: Q8_0 or Q4_1 blocks
 *  (lmp_quantize_row of the stored values; a source tensor already of that type is copied as
 *  it is), so that an artifact made before the option gets its quantized-embedding variant
 *  without a new compression (16, the default: the source's precision).
 *  Prints one JSON object: both files'
 * bytes and bits per weight (lmp_artifact_size). The rewrite skips the effect of rounding on the
 * calibration of later blocks that a sequential compression in the new format has; evaluate NEW.h5
 * to see the quality (lmpress eval --artifact).
 */
#include "artifact/artifact.h" /* defines: lmp_artifact_*, struct lmp_art_size */
#include "kernels/kernels.h"   /* defines: lmp_f32_to_f16(), lmp_f32_to_bf16() */
#include "model/model.h"       /* defines: lmp_model_open */

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void print_size(const char *key, const char *path, const struct lmp_art_size *s) {
    printf("\"%s\":{\"path\":\"%s\",\"file_bytes\":%lld,\"linear_bytes\":%lld,"
           "\"tensor_bytes\":%lld,\"params\":%lld,\"bits_per_weight_model\":%.4f,"
           "\"bits_per_weight_linear\":%.4f}",
           key, path, (long long)s->file_bytes, (long long)s->linear_bytes,
           (long long)s->tensor_bytes, (long long)s->n_params,
           8.0 * (double)s->file_bytes / (double)(s->n_params ? s->n_params : 1),
           8.0 * (double)s->linear_bytes / (double)(s->n_linear_params ? s->n_linear_params : 1));
}

/* The source tensor that stored tensor name was written from unchanged (embedding, head,
 * a kept linear's weight), or NULL (norms, biases: maybe tuned). */
static const struct lmp_tensor *source_of(const struct lmp_model *m, const char *name) {
    if (m == NULL) return NULL;
    if (strcmp(name, "model.embed_tokens.weight") == 0) return m->tok_emb;
    if (strcmp(name, "lm_head.weight") == 0) return m->output;
    for (int64_t i = 0; i < lmp_model_n_linears(m); i++) {
        const struct lmp_linear *l = lmp_model_linear(m, i);
        size_t                   n = strlen(l->name);
        if (strncmp(name, l->name, n) == 0 && strcmp(name + n, ".weight") == 0) return l->weight;
    }
    return NULL;
}

/* t (fp32) in the precision a format-2 writer stores src's tensor with, in place. */
static void narrow(struct lmp_art_tensor *t, const struct lmp_tensor *src) {
    if (src == NULL || t->dtype != LMP_DTYPE_F32 || src->dtype == LMP_DTYPE_F32) return;
    int64_t n = 1;
    for (int d = 0; d < t->n_dims; d++) n *= t->shape[d];
    const float *f = t->data;
    uint16_t    *h = t->data; /* element i is read before bytes 2i..2i+1 are written */
    for (int64_t i = 0; i < n; i++) {
        const float v = f[i];
        h[i]          = src->dtype == LMP_DTYPE_BF16 ? lmp_f32_to_bf16(v) : lmp_f32_to_f16(v);
    }
    t->dtype = src->dtype == LMP_DTYPE_BF16 ? LMP_DTYPE_BF16 : LMP_DTYPE_F16;
}

/* t (2-D fp32, fp16 or bf16) in place as blocks of dtype q (Q8_0, Q4_1), as a compression
 * stores it: src's blocks when src (may be NULL) is of that type, else t's values
 * quantized row by row. 0, or -1 (out of memory, a row that cannot be quantized). */
static int to_blocks(struct lmp_art_tensor *t, const struct lmp_tensor *src, enum lmp_dtype q) {
    const int64_t rows = t->shape[0], cols = t->shape[1];
    const int64_t rb  = lmp_tensor_expected_bytes(q, 1, &cols);
    uint8_t      *b   = rb > 0 ? malloc((size_t)(rows * rb)) : NULL;
    float        *row = malloc((size_t)cols * sizeof(float));
    int           rc  = b && row ? 0 : -1;
    if (rc == 0 && src && src->dtype == q && (int64_t)src->nbytes == rows * rb)
        memcpy(b, src->data, (size_t)(rows * rb));
    else
        for (int64_t r = 0; rc == 0 && r < rows; r++) {
            const float    *f = (const float *)t->data + r * cols;
            const uint16_t *h = (const uint16_t *)t->data + r * cols;
            for (int64_t k = 0; k < cols; k++)
                row[k] = t->dtype == LMP_DTYPE_F32    ? f[k]
                         : t->dtype == LMP_DTYPE_BF16 ? lmp_bf16_to_f32(h[k])
                                                      : lmp_f16_to_f32(h[k]);
            rc = lmp_quantize_row(q, row, b + r * rb, cols) == 0 ? 0 : -1;
        }
    free(row);
    if (rc != 0) {
        free(b);
        return -1;
    }
    free(t->data);
    t->data  = b;
    t->dtype = q;
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: %s OLD.h5 MODEL NEW.h5 [EMBED_BITS]\n", argv[0]);
        return 2;
    }
    const int bits = argc == 5 ? atoi(argv[4]) : 16;
    if (bits != 16 && bits != 8 && bits != 4) {
        fprintf(stderr, "bench_art_size: EMBED_BITS is 16, 8 or 4, not '%s'\n", argv[4]);
        return 2;
    }
    struct lmp_err       err = {0};
    struct lmp_artifact *in = NULL, *out = NULL;
    struct lmp_model    *m = NULL;
    struct lmp_art_size  s_in, s_out;
    enum lmp_status      st;
    int                  rc   = 1;
    const bool           copy = strcmp(argv[2], "-") == 0;
    if ((st = lmp_artifact_open_read(argv[1], &in, &err)) ||
        (!copy && (st = lmp_model_open(argv[2], &m, &err))))
        goto out;
    if ((st = lmp_artifact_open_write(argv[3], lmp_artifact_job(in), &out, &err))) goto out;
    for (int64_t i = 0; i < lmp_artifact_n_layers(in); i++) {
        struct lmp_art_layer l;
        const char          *name = lmp_artifact_layer_name(in, i);
        if (lmp_artifact_has_layer(out, name)) continue; /* a resumed rewrite */
        if ((st = lmp_artifact_read_layer(in, name, &l, &err))) goto out;
        st = lmp_artifact_commit_layer(out, &l, &err);
        lmp_art_layer_release(&l);
        if (st) goto out;
    }
    for (int64_t i = 0; i < lmp_artifact_n_tensors(in); i++) {
        const char           *name = lmp_artifact_tensor_name(in, i);
        struct lmp_art_tensor t;
        if ((st = lmp_artifact_read_tensor(in, name, &t, &err))) goto out;
        const bool emb =
            strcmp(name, "model.embed_tokens.weight") == 0 || strcmp(name, "lm_head.weight") == 0;
        if (bits != 16 && emb && t.n_dims == 2 && t.shape[1] % 32 == 0) { /* from the values read */
            if (to_blocks(&t, source_of(m, name), bits == 8 ? LMP_DTYPE_Q8_0 : LMP_DTYPE_Q4_1)) {
                lmp_art_tensor_release(&t);
                snprintf(err.msg, sizeof(err.msg), "cannot quantize '%s' to %d bits", name, bits);
                goto out;
            }
        } else
            narrow(&t, source_of(m, name));
        st = lmp_artifact_put_tensor(out, &t, &err);
        lmp_art_tensor_release(&t);
        if (st) goto out;
    }
    enum lmp_art_tok kind;
    uint8_t         *tok = NULL;
    size_t           n   = 0;
    if (lmp_artifact_has_tokenizer(in)) {
        if ((st = lmp_artifact_read_tokenizer(in, &kind, &tok, &n, &err))) goto out;
        st = lmp_artifact_put_tokenizer(out, kind, tok, n, &err);
        free(tok);
    }
    if (st || (st = lmp_artifact_finalize(out, &err)) ||
        (st = lmp_artifact_size(in, &s_in, &err)) || (st = lmp_artifact_size(out, &s_out, &err)))
        goto out;
    printf("{");
    print_size("old", argv[1], &s_in);
    printf(",");
    print_size("new", argv[3], &s_out);
    printf(",\"ratio\":%.4f", (double)s_out.file_bytes / (double)s_in.file_bytes);
    printf(",\"embed_bits\":%d", bits);
    printf("}\n");
    rc = 0;
out:
    if (rc) fprintf(stderr, "bench_art_size: %s\n", err.msg[0] ? err.msg : "out of memory");
    lmp_artifact_close(&out);
    lmp_artifact_close(&in);
    lmp_model_close(&m);
    return rc;
}
