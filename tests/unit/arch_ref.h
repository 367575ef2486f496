/*  arch_ref - what test_qwen3 and test_phi3 share: a direct double-precision forward pass
 *  of a llama-family block with NEOX RoPE (optionally partial) and optional per-head q/k
 *  RMSNorm, a small F32 safetensors writer, and the check of lmpress's logits (batch,
 *  KV cache one token at a time, lazy weights; 1 and 2 threads) against the direct pass.
 *
 *  The direct pass is written from the architectures' definitions (Hugging Face's
 *  modeling_qwen3 / modeling_phi3, llama.cpp's qwen3 / phi3 graphs), not from lmpress:
 *      x = emb[tok]
 *      per block: h = rmsnorm(x) * attn_norm; q, k, v = h Wq^T, h Wk^T, h Wv^T;
 *                 (q/k norm) every head of q and k = rmsnorm(head) * q_norm / k_norm;
 *                 RoPE on the first rope_dims of each head, pairs (i, i + rope_dims / 2),
 *                 angle pos * theta^(-2i / rope_dims); causal softmax(q k^T / sqrt(hd)) v
 *                 (head h reads kv head h / (heads / kv)); x += a Wo^T;
 *                 h = rmsnorm(x) * ffn_norm; x += (silu(h Wg^T) * h Wu^T) Wd^T
 *      logits = (rmsnorm(x) * out_norm) out^T   (out = emb when tied)
 *  Weights are pointers, so a fused matrix is given as row offsets into it.
 */
#ifndef LMP_TESTS_UNIT_ARCH_REF_H
#define LMP_TESTS_UNIT_ARCH_REF_H

#include "model/model.h"
#include "model/transformer.h"
#include "tests/check.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { REF_MAX_LAYERS = 4, REF_MAX_TOK = 16 };

struct ref_block {
    const float *attn_norm, *q, *k, *v, *q_norm, *k_norm, *o; /* q_norm NULL: none */
    const float *ffn_norm, *gate, *up, *down;
};

struct ref_model {
    int              dim, heads, kv, hd, hid, vocab, layers, rope_dims;
    double           theta, eps;
    const float     *emb, *out_norm, *output; /* output NULL: tied to emb */
    struct ref_block b[REF_MAX_LAYERS];
};

static void ref_rmsnorm(double *x, const float *w, int n, double eps) { /* in place */
    double ss = 0;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    double s = 1.0 / sqrt(ss / n + eps);
    for (int i = 0; i < n; i++) x[i] = x[i] * s * w[i];
}

static void ref_matvec(const float *W, const double *x, int n_out, int n_in, double *y) {
    for (int o = 0; o < n_out; o++) {
        double a = 0;
        for (int i = 0; i < n_in; i++) a += (double)W[(int64_t)o * n_in + i] * x[i];
        y[o] = a;
    }
}

static void ref_rope(double *h, int pos, int rope_dims, double theta) {
    const int half = rope_dims / 2;
    for (int i = 0; i < half; i++) {
        double ang = pos * pow(theta, -2.0 * i / rope_dims), c = cos(ang), s = sin(ang);
        double a = h[i], b = h[i + half];
        h[i]        = a * c - b * s;
        h[i + half] = a * s + b * c;
    }
}

/* logits (ntok, vocab) of tokens tok at positions 0 .. ntok-1 */
static void ref_logits(const struct ref_model *r, const int32_t *tok, int ntok, double *logits) {
    const int qd = r->heads * r->hd, kd = r->kv * r->hd;
    double   *x = calloc((size_t)ntok * r->dim, sizeof(double));
    double   *q = calloc((size_t)ntok * qd, sizeof(double));
    double   *k = calloc((size_t)ntok * kd, sizeof(double));
    double   *v = calloc((size_t)ntok * kd, sizeof(double));
    double   *h = calloc((size_t)(r->dim > qd ? r->dim : qd) + r->hid * 2, sizeof(double));
    double   *a = calloc((size_t)qd, sizeof(double)), *o = calloc((size_t)r->dim, sizeof(double));
    for (int t = 0; t < ntok; t++)
        for (int i = 0; i < r->dim; i++) x[t * r->dim + i] = r->emb[tok[t] * r->dim + i];
    for (int l = 0; l < r->layers; l++) {
        const struct ref_block *B = &r->b[l];
        for (int t = 0; t < ntok; t++) {
            memcpy(h, x + t * r->dim, sizeof(double) * (size_t)r->dim);
            ref_rmsnorm(h, B->attn_norm, r->dim, r->eps);
            ref_matvec(B->q, h, qd, r->dim, q + t * qd);
            ref_matvec(B->k, h, kd, r->dim, k + t * kd);
            ref_matvec(B->v, h, kd, r->dim, v + t * kd);
            for (int hh = 0; hh < r->heads; hh++) {
                if (B->q_norm) ref_rmsnorm(q + t * qd + hh * r->hd, B->q_norm, r->hd, r->eps);
                ref_rope(q + t * qd + hh * r->hd, t, r->rope_dims, r->theta);
            }
            for (int hh = 0; hh < r->kv; hh++) {
                if (B->k_norm) ref_rmsnorm(k + t * kd + hh * r->hd, B->k_norm, r->hd, r->eps);
                ref_rope(k + t * kd + hh * r->hd, t, r->rope_dims, r->theta);
            }
        }
        for (int t = 0; t < ntok; t++) {
            memset(a, 0, sizeof(double) * (size_t)qd);
            for (int hh = 0; hh < r->heads; hh++) {
                const int kh = hh / (r->heads / r->kv);
                double    sc[REF_MAX_TOK], mx = -INFINITY, sum = 0;
                for (int j = 0; j <= t; j++) {
                    double d = 0;
                    for (int i = 0; i < r->hd; i++)
                        d += q[t * qd + hh * r->hd + i] * k[j * kd + kh * r->hd + i];
                    sc[j] = d / sqrt((double)r->hd);
                    mx    = sc[j] > mx ? sc[j] : mx;
                }
                for (int j = 0; j <= t; j++) sum += (sc[j] = exp(sc[j] - mx));
                for (int j = 0; j <= t; j++)
                    for (int i = 0; i < r->hd; i++)
                        a[hh * r->hd + i] += sc[j] / sum * v[j * kd + kh * r->hd + i];
            }
            ref_matvec(B->o, a, r->dim, qd, o);
            for (int i = 0; i < r->dim; i++) x[t * r->dim + i] += o[i];
            double *g = h + r->dim, *u = g + r->hid;
            memcpy(h, x + t * r->dim, sizeof(double) * (size_t)r->dim);
            ref_rmsnorm(h, B->ffn_norm, r->dim, r->eps);
            ref_matvec(B->gate, h, r->hid, r->dim, g);
            ref_matvec(B->up, h, r->hid, r->dim, u);
            for (int i = 0; i < r->hid; i++) g[i] = g[i] / (1.0 + exp(-g[i])) * u[i];
            ref_matvec(B->down, g, r->dim, r->hid, o);
            for (int i = 0; i < r->dim; i++) x[t * r->dim + i] += o[i];
        }
    }
    for (int t = 0; t < ntok; t++) {
        ref_rmsnorm(x + t * r->dim, r->out_norm, r->dim, r->eps);
        ref_matvec(r->output ? r->output : r->emb, x + t * r->dim, r->vocab, r->dim,
                   logits + (int64_t)t * r->vocab);
    }
    free(x), free(q), free(k), free(v), free(h), free(a), free(o);
}

/* max |got - want| over n */
static double ref_max_diff(const float *got, const double *want, int64_t n) {
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs(got[i] - want[i]);
        worst    = d > worst || d != d ? d : worst;
    }
    return worst;
}

/* lmpress's logits of m for tok against want (ntok, vocab): the batch, one token at a
 * time through the KV cache, and the batch with lazy weights (loaded per block, released
 * after: the file pages of split tensors are dropped too), on 1 and 2 threads. */
static void ref_check_forward(const struct lmp_model *m, const int32_t *tok, int ntok,
                              const double *want, double tol) {
    const int64_t V = m->cfg.vocab_size, D = m->cfg.dim;
    float        *hidden = malloc(sizeof(float) * (size_t)(ntok * D));
    float        *logits = malloc(sizeof(float) * (size_t)(ntok * V));
    for (int mode = 0; mode < 4; mode++) {
        const int               threads = 1 + mode % 2;
        const bool              lazy    = mode >= 2;
        struct lmp_transformer *tf      = NULL;
        struct lmp_err          err     = {0};
        CHECK(lmp_transformer_new(
                  m, &(struct lmp_transformer_opts){.n_threads = threads, .lazy_weights = lazy},
                  &tf, &err) == LMP_OK);
        if (tf == NULL) break;
        CHECK(lmp_transformer_forward(tf, NULL, tok, 1, ntok, hidden, NULL, &err) == LMP_OK);
        CHECK(lmp_transformer_load_head(tf, &err) == LMP_OK);
        lmp_transformer_logits(tf, hidden, ntok, logits);
        double worst = ref_max_diff(logits, want, ntok * V);
        if (!(worst <= tol))
            fprintf(stderr, "  batch (%d threads%s): max |logit diff| %g\n", threads,
                    lazy ? ", lazy" : "", worst);
        CHECK(worst <= tol);
        if (lazy)
            for (int32_t b = 0; b < m->cfg.n_layers; b++) lmp_transformer_release_block(tf, b);
        struct lmp_kvcache *kv = lmp_kvcache_new(tf, 1, ntok);
        CHECK(kv != NULL);
        worst = 0;
        for (int t = 0; kv && t < ntok; t++) {
            CHECK(lmp_transformer_forward(tf, kv, &tok[t], 1, 1, hidden, NULL, &err) == LMP_OK);
            lmp_transformer_logits(tf, hidden, 1, logits);
            double d = ref_max_diff(logits, want + t * V, V);
            worst    = d > worst ? d : worst;
        }
        if (!(worst <= tol))
            fprintf(stderr, "  cached (%d threads%s): max |logit diff| %g\n", threads,
                    lazy ? ", lazy" : "", worst);
        CHECK(worst <= tol);
        lmp_kvcache_destroy(&kv);
        lmp_transformer_destroy(&tf);
    }
    free(hidden);
    free(logits);
}

/* --- a tiny F32 safetensors writer -------------------------------------------------------- */

struct st_entry {
    char         name[96];
    int          n_dims;
    int64_t      shape[2];
    const float *data;
};

static void st_add(struct st_entry *e, int *n, const char *name, int n_dims, int64_t d0, int64_t d1,
                   const float *data) {
    struct st_entry *t = &e[(*n)++];
    snprintf(t->name, sizeof(t->name), "%s", name);
    t->n_dims   = n_dims;
    t->shape[0] = d0;
    t->shape[1] = n_dims == 2 ? d1 : 1;
    t->data     = data;
}

/* path: a safetensors file of the n entries, F32, in order. Returns 0 or -1. */
static int st_write(const char *path, const struct st_entry *e, int n) {
    size_t cap = 256 + (size_t)n * 200, jn = 0, off = 0;
    char  *json = malloc(cap);
    if (json == NULL) return -1;
    jn += (size_t)snprintf(json, cap, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (int i = 0; i < n; i++) {
        size_t nb = (size_t)(e[i].shape[0] * e[i].shape[1]) * sizeof(float);
        char   shape[64];
        if (e[i].n_dims == 1)
            snprintf(shape, sizeof(shape), "[%lld]", (long long)e[i].shape[0]);
        else
            snprintf(shape, sizeof(shape), "[%lld,%lld]", (long long)e[i].shape[0],
                     (long long)e[i].shape[1]);
        jn +=
            (size_t)snprintf(json + jn, cap - jn,
                             ",\"%s\":{\"dtype\":\"F32\",\"shape\":%s,\"data_offsets\":[%zu,%zu]}",
                             e[i].name, shape, off, off + nb);
        off += nb;
    }
    jn += (size_t)snprintf(json + jn, cap - jn, "}");
    while (jn % 8) json[jn++] = ' ';
    FILE *f = fopen(path, "wb");
    if (f == NULL) {
        free(json);
        return -1;
    }
    uint8_t len[8];
    for (int b = 0; b < 8; b++) len[b] = (uint8_t)((uint64_t)jn >> (8 * b));
    int ok = fwrite(len, 1, 8, f) == 8 && fwrite(json, 1, jn, f) == jn;
    for (int i = 0; i < n; i++)
        ok = ok && fwrite(e[i].data, sizeof(float), (size_t)(e[i].shape[0] * e[i].shape[1]), f) ==
                       (size_t)(e[i].shape[0] * e[i].shape[1]);
    free(json);
    return fclose(f) == 0 && ok ? 0 : -1;
}

static int write_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (f == NULL) return -1;
    int ok = fwrite(p, 1, n, f) == n;
    return fclose(f) == 0 && ok ? 0 : -1;
}

#endif /* LMP_TESTS_UNIT_ARCH_REF_H */
