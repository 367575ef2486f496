/*  calib - see calib.h */
#include "worker/calib.h"
#include "kernels/kernels.h" /* defines: lmp_kernels_get(), gram_acc */
#include "base/cancel.h"     /* defines: lmp_cancelled */
#include "base/mem.h"        /* defines: lmp_mem_budget, lmp_mem_mul */

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Tokens per call of lmp_transformer_block: big enough for efficient GEMMs, small
 * enough that the block's scratch (hidden_dim wide) stays a few MB. */
#define CALIB_CHUNK_TOKENS 2048
/* Sequences generated together (one KV cache of this many). */
#define CALIB_GEN_BATCH LMP_CALIB_GEN_CHUNK

/* splitmix64: a tiny, well-known generator; each stream is fully fixed by its seed. */
static uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z          = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z          = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Uniform in [0, n) without modulo bias (n > 0). */
static uint64_t rng_below(uint64_t *s, uint64_t n) {
    uint64_t lim = UINT64_MAX - UINT64_MAX % n, r;
    do r = rng_next(s);
    while (r >= lim);
    return r % n;
}

/* Uniform in [0, 1) with 53 bits. */
static double rng_unit(uint64_t *s) {
    return (double)(rng_next(s) >> 11) * (1.0 / 9007199254740992.0);
}

enum lmp_status lmp_calib_sample_text(int32_t *out, const int32_t *ids, int64_t n_ids,
                                      int64_t n_seq, int64_t ctx, uint64_t seed,
                                      struct lmp_err *err) {
    assert(out && ids);
    if (n_seq <= 0 || ctx <= 0)
        return lmp_err_set(err, LMP_EINVAL, "invalid calibration size %lld x %lld",
                           (long long)n_seq, (long long)ctx);
    if (n_ids < ctx) /* the text is too short: input rejected (exit 4), not a usage error */
        return lmp_err_set(err, LMP_EFORMAT,
                           "calibration text has %lld tokens, fewer than one "
                           "window of %lld",
                           (long long)n_ids, (long long)ctx);
    uint64_t s = seed ^ 0x63616c6962ULL; /* "calib": text and generation streams differ */
    for (int64_t i = 0; i < n_seq; i++) {
        int64_t off = (int64_t)rng_below(&s, (uint64_t)(n_ids - ctx + 1));
        memcpy(out + i * ctx, ids + off, (size_t)ctx * sizeof(*out));
    }
    return LMP_OK;
}

uint64_t lmp_calib_bytes(int64_t n_seq, int64_t ctx, int64_t dim) {
    if (n_seq <= 0 || ctx <= 0) return 0;
    const uint64_t tok = lmp_mem_mul((uint64_t)n_seq, (uint64_t)ctx, 1);
    const uint64_t act = lmp_mem_mul(tok, (uint64_t)(dim > 0 ? dim : 1), 2 * sizeof(float));
    const uint64_t tb  = lmp_mem_mul(tok, sizeof(int32_t), 1);
    return act > UINT64_MAX - tb ? UINT64_MAX : act + tb;
}

/* bytes in words for a message: "3.2 GiB", "740 MiB", "12 KiB" */
static const char *fmt_bytes(char *buf, size_t n, uint64_t b) {
    if (b >= (1ull << 30))
        snprintf(buf, n, "%.1f GiB", (double)b / (1ull << 30));
    else if (b >= (1ull << 20))
        snprintf(buf, n, "%.0f MiB", (double)b / (1ull << 20));
    else
        snprintf(buf, n, "%.0f KiB", (double)b / (1ull << 10));
    return buf;
}

enum lmp_status lmp_calib_check_budget(int64_t n_seq, int64_t ctx, int64_t dim,
                                       struct lmp_err *err) {
    const uint64_t need = lmp_calib_bytes(n_seq, ctx, dim), budget = lmp_mem_budget();
    if (need <= budget) return LMP_OK;
    char a[32], b[32];
    return lmp_err_set(err, LMP_EUNSUP,
                       "calibration of --nsamples %lld x --ctx %lld needs %s (tokens and two fp32 "
                       "activations of width %lld), over this machine's budget of %s (half its "
                       "memory, or LMP_MEM_BUDGET): ask for fewer samples or a shorter --ctx",
                       (long long)n_seq, (long long)ctx, fmt_bytes(a, sizeof(a), need),
                       (long long)dim, fmt_bytes(b, sizeof(b), budget));
}

/* Sample from softmax(logits) (n) by inverse CDF, in double. */
static int32_t sample_softmax(const float *logits, int64_t n, uint64_t *s) {
    float mx = logits[0];
    for (int64_t i = 1; i < n; i++) mx = logits[i] > mx ? logits[i] : mx;
    double z = 0.0;
    for (int64_t i = 0; i < n; i++) z += exp((double)(logits[i] - mx));
    double u = rng_unit(s) * z, c = 0.0;
    for (int64_t i = 0; i < n; i++) {
        c += exp((double)(logits[i] - mx));
        if (u < c) return (int32_t)i;
    }
    return (int32_t)(n - 1);
}

enum lmp_status lmp_calib_generate(int32_t *out, struct lmp_transformer *tf, const int32_t *prompt,
                                   int64_t n_prompt, int64_t n_seq, int64_t ctx, uint64_t seed,
                                   struct lmp_err *err) {
    assert(out && tf && prompt);
    const struct lmp_config *cfg = lmp_transformer_config(tf);
    if (n_seq <= 0 || n_prompt < 1 || n_prompt >= ctx || (cfg->max_seq > 0 && ctx > cfg->max_seq))
        return lmp_err_set(err, LMP_EINVAL,
                           "cannot generate %lld sequences of %lld tokens from "
                           "a %lld-token prompt (model context %d)",
                           (long long)n_seq, (long long)ctx, (long long)n_prompt, cfg->max_seq);
    const int64_t   dim = cfg->dim, vocab = cfg->vocab_size;
    const int64_t   nb = n_seq < CALIB_GEN_BATCH ? n_seq : CALIB_GEN_BATCH;
    enum lmp_status st = lmp_transformer_load_head(tf, err); /* lazy weights: the head */
    if (st != LMP_OK) return st;
    struct lmp_kvcache *kv     = lmp_kvcache_new(tf, nb, ctx);
    int32_t            *tok    = malloc((size_t)(nb * n_prompt) * sizeof(*tok));
    float              *hidden = malloc((size_t)(nb * n_prompt * dim) * sizeof(*hidden));
    float              *last   = malloc((size_t)(nb * dim) * sizeof(*last));
    float              *logits = malloc((size_t)(nb * vocab) * sizeof(*logits));
    if (kv == NULL || tok == NULL || hidden == NULL || last == NULL || logits == NULL) {
        st = lmp_err_set(err, LMP_ENOMEM, "out of memory generating calibration text");
        goto out;
    }
    uint64_t s = seed ^ 0x67656e6572617465ULL; /* "generate" */
    for (int64_t s0 = 0; s0 < n_seq; s0 += nb) {
        const int64_t n = n_seq - s0 < nb ? n_seq - s0 : nb;
        lmp_kvcache_reset(kv);
        for (int64_t i = 0; i < n; i++) {
            memcpy(tok + i * n_prompt, prompt, (size_t)n_prompt * sizeof(*tok));
            memcpy(out + (s0 + i) * ctx, prompt, (size_t)n_prompt * sizeof(*out));
        }
        int64_t step = n_prompt; /* tokens fed in this forward pass */
        for (int64_t pos = n_prompt; pos < ctx; pos++) {
            if (lmp_cancelled(NULL)) { /* one token of a batch at a time: a stop acts now */
                st = lmp_err_set(err, LMP_ECANCEL,
                                 "generating calibration text: stopped "
                                 "(sequence %lld of %lld)",
                                 (long long)s0, (long long)n_seq);
                goto out;
            }
            if ((st = lmp_transformer_forward(tf, kv, tok, n, step, hidden, NULL, err))) goto out;
            for (int64_t i = 0; i < n; i++)
                memcpy(last + i * dim, hidden + (i * step + step - 1) * dim,
                       (size_t)dim * sizeof(*last));
            lmp_transformer_logits(tf, last, n, logits);
            for (int64_t i = 0; i < n; i++) {
                tok[i]                    = sample_softmax(logits + i * vocab, vocab, &s);
                out[(s0 + i) * ctx + pos] = tok[i];
            }
            step = 1;
        }
    }
out:
    free(logits);
    free(last);
    free(hidden);
    free(tok);
    lmp_kvcache_destroy(&kv);
    return st;
}

enum lmp_status lmp_calib_generate_part(int32_t *out, const struct lmp_model *m,
                                        const struct lmp_tokenizer *tok, int64_t n_seq, int64_t ctx,
                                        uint64_t seed, int part, int n_parts, int threads,
                                        struct lmp_err *err) {
    assert(out && m && tok && n_parts >= 1 && part >= 0 && part < n_parts);
    int32_t  bos = lmp_tokenizer_bos(tok), *prompt = &bos;
    int64_t  n_prompt = 1;
    int32_t *enc      = NULL;
    if (bos < 0) {
        static const char opening[] = "Once upon a time";
        enum lmp_status   st =
            lmp_tokenizer_encode(tok, opening, sizeof(opening) - 1, false, &enc, &n_prompt, err);
        if (st != LMP_OK) return st;
        prompt = enc;
    }
    /* lazy weights: generation holds one block's fp32 linears at a time */
    struct lmp_transformer_opts to = {.n_threads = threads, .lazy_weights = true};
    struct lmp_transformer     *tf = NULL;
    enum lmp_status             st = lmp_transformer_new(m, &to, &tf, err);
    const int64_t               nc = (n_seq + LMP_CALIB_GEN_CHUNK - 1) / LMP_CALIB_GEN_CHUNK;
    for (int64_t c = part; st == LMP_OK && c < nc; c += n_parts) {
        const int64_t s0 = c * LMP_CALIB_GEN_CHUNK;
        const int64_t n  = n_seq - s0 < LMP_CALIB_GEN_CHUNK ? n_seq - s0 : LMP_CALIB_GEN_CHUNK;
        uint64_t      cs = seed ^ (0x6368756e6bULL + (uint64_t)c); /* "chunk" + c */
        st = lmp_calib_generate(out + s0 * ctx, tf, prompt, n_prompt, n, ctx, rng_next(&cs), err);
    }
    lmp_transformer_destroy(&tf);
    free(enc);
    return st;
}

/* ---- grams ------------------------------------------------------------------------ */

struct lmp_calib_grams {
    int64_t n_in[LMP_INPUT_COUNT];  /* width of each input */
    int64_t n_tok[LMP_INPUT_COUNT]; /* rows accumulated */
    double *sum[LMP_INPUT_COUNT];   /* (n_in, n_in) running X^T X */
};

int64_t lmp_calib_input_width(const struct lmp_config *cfg, enum lmp_input which) {
    const int64_t head_dim = cfg->head_dim > 0 ? cfg->head_dim : cfg->dim / cfg->n_heads;
    switch (which) {
    case LMP_INPUT_ATTN_OUT:
        return (int64_t)cfg->n_heads * head_dim;
    case LMP_INPUT_FFN_OUT:
        return cfg->hidden_dim;
    default:
        return cfg->dim; /* LMP_INPUT_ATTN, LMP_INPUT_FFN */
    }
}

struct lmp_calib_grams *lmp_calib_grams_new(const struct lmp_config *cfg) {
    assert(cfg);
    struct lmp_calib_grams *self = calloc(1, sizeof(*self));
    if (self == NULL) return NULL;
    for (int i = 0; i < LMP_INPUT_COUNT; i++) {
        self->n_in[i] = lmp_calib_input_width(cfg, (enum lmp_input)i);
        self->sum[i]  = calloc((size_t)(self->n_in[i] * self->n_in[i]), sizeof(double));
        if (self->sum[i] == NULL) {
            lmp_calib_grams_destroy(&self);
            return NULL;
        }
    }
    return self;
}

void lmp_calib_grams_destroy(struct lmp_calib_grams **self_p) {
    assert(self_p);
    struct lmp_calib_grams *self = *self_p;
    if (self == NULL) return;
    for (int i = 0; i < LMP_INPUT_COUNT; i++) free(self->sum[i]);
    free(self);
    *self_p = NULL;
}

void lmp_calib_grams_reset(struct lmp_calib_grams *self) {
    assert(self);
    for (int i = 0; i < LMP_INPUT_COUNT; i++) {
        memset(self->sum[i], 0, (size_t)(self->n_in[i] * self->n_in[i]) * sizeof(double));
        self->n_tok[i] = 0;
    }
}

int64_t lmp_calib_slice_seqs(int64_t n_seq) {
    const int64_t k = (n_seq + LMP_CALIB_SLICES - 1) / LMP_CALIB_SLICES;
    return k > 0 ? k : 1;
}

int64_t lmp_calib_n_slices(int64_t n_seq) {
    const int64_t k = lmp_calib_slice_seqs(n_seq);
    return n_seq > 0 ? (n_seq + k - 1) / k : 0;
}

void lmp_calib_grams_add(struct lmp_calib_grams *self, enum lmp_input which, const double *part,
                         int64_t n_tok) {
    assert(self && part && which >= 0 && which < LMP_INPUT_COUNT);
    const int64_t n = self->n_in[which] * self->n_in[which];
    double       *s = self->sum[which];
    for (int64_t k = 0; k < n; k++) s[k] += part[k];
    self->n_tok[which] += n_tok;
}

void lmp_calib_grams_hook(void *ctx, int32_t block, enum lmp_input which, const float *x,
                          int64_t n_rows, int64_t n_cols) {
    (void)block;
    struct lmp_calib_grams *self = ctx;
    assert(self && which >= 0 && which < LMP_INPUT_COUNT && n_cols == self->n_in[which]);
    if (n_rows <= 0) return;
    lmp_kernels_get()->gram_acc(self->sum[which], x, n_rows, n_cols);
    self->n_tok[which] += n_rows;
}

int64_t lmp_calib_grams_n_in(const struct lmp_calib_grams *self, enum lmp_input which) {
    assert(self && which >= 0 && which < LMP_INPUT_COUNT);
    return self->n_in[which];
}

int64_t lmp_calib_grams_n_tok(const struct lmp_calib_grams *self, enum lmp_input which) {
    assert(self && which >= 0 && which < LMP_INPUT_COUNT);
    return self->n_tok[which];
}

const double *lmp_calib_grams_sum(const struct lmp_calib_grams *self, enum lmp_input which) {
    assert(self && which >= 0 && which < LMP_INPUT_COUNT);
    return self->sum[which];
}

enum lmp_status lmp_calib_grams_h(const struct lmp_calib_grams *self, enum lmp_input which,
                                  float *h) {
    assert(self && h && which >= 0 && which < LMP_INPUT_COUNT);
    if (self->n_tok[which] == 0) return LMP_EINVAL;
    const int64_t n   = self->n_in[which];
    const double  inv = 1.0 / (double)self->n_tok[which];
    for (int64_t k = 0; k < n * n; k++) h[k] = (float)(self->sum[which][k] * inv);
    return LMP_OK;
}

/* ---- the block walk --------------------------------------------------------------- */

struct lmp_calib {
    struct lmp_transformer *tf; /* borrowed */
    int64_t                 n_seq, ctx, dim;
    int64_t                 chunk;  /* sequences per block call */
    int64_t                 slice;  /* sequences per calibration slice */
    float                  *x;      /* (n_seq * ctx, dim) current block input */
    float                  *y;      /* (n_seq * ctx, dim) last collected output */
    struct lmp_calib_grams *part;   /* one slice's sums (several slices only), lazily */
    const atomic_int       *cancel; /* a task's cancel flag (NULL: none), polled per chunk */
};

enum lmp_status lmp_calib_new(struct lmp_transformer *tf, const int32_t *tokens, int64_t n_seq,
                              int64_t ctx, struct lmp_calib **out, struct lmp_err *err) {
    assert(tf && tokens && out);
    *out                         = NULL;
    const struct lmp_config *cfg = lmp_transformer_config(tf);
    if (n_seq <= 0 || ctx <= 0 || (cfg->max_seq > 0 && ctx > cfg->max_seq))
        return lmp_err_set(err, LMP_EINVAL,
                           "invalid calibration size %lld x %lld (model "
                           "context %d)",
                           (long long)n_seq, (long long)ctx, cfg->max_seq);
    struct lmp_calib *self = calloc(1, sizeof(*self));
    enum lmp_status   st   = LMP_OK;
    if (self == NULL) return lmp_err_set(err, LMP_ENOMEM, "out of memory");
    self->tf    = tf;
    self->n_seq = n_seq;
    self->ctx   = ctx;
    self->dim   = cfg->dim;
    self->chunk = CALIB_CHUNK_TOKENS / ctx > 0 ? CALIB_CHUNK_TOKENS / ctx : 1;
    self->slice = lmp_calib_slice_seqs(n_seq);
    /* sizes come from a job: check them against the memory budget before allocating */
    const uint64_t bytes =
        lmp_mem_mul((uint64_t)n_seq * (uint64_t)ctx, (uint64_t)self->dim, 2 * sizeof(float));
    const uint64_t budget = lmp_mem_budget();
    if (bytes > budget) {
        char a[32], b[32];
        st = lmp_err_set(err, LMP_EUNSUP,
                         "calibration activations of %lld x %lld x %lld floats need %s, over "
                         "this machine's budget of %s (half its memory, or LMP_MEM_BUDGET)",
                         (long long)n_seq, (long long)ctx, (long long)self->dim,
                         fmt_bytes(a, sizeof(a), bytes), fmt_bytes(b, sizeof(b), budget));
        goto fail;
    }
    const size_t n = (size_t)(n_seq * ctx * self->dim);
    self->x        = malloc(n * sizeof(float));
    self->y        = malloc(n * sizeof(float));
    if (self->x == NULL || self->y == NULL) {
        st = lmp_err_set(err, LMP_ENOMEM,
                         "out of memory for calibration activations "
                         "(%lld x %lld x %lld floats)",
                         (long long)n_seq, (long long)ctx, (long long)self->dim);
        goto fail;
    }
    if ((st = lmp_transformer_embed(tf, tokens, n_seq * ctx, self->x, err))) goto fail;
    *out = self;
    return LMP_OK;
fail:
    lmp_calib_destroy(&self);
    return st;
}

void lmp_calib_destroy(struct lmp_calib **self_p) {
    assert(self_p);
    struct lmp_calib *self = *self_p;
    if (self == NULL) return;
    free(self->x);
    free(self->y);
    lmp_calib_grams_destroy(&self->part);
    free(self);
    *self_p = NULL;
}

/* Run block over sequences [q0, q1) of buf in chunks of sequences, in place. */
static enum lmp_status run_seqs(struct lmp_calib *self, int32_t block, float *buf, int64_t q0,
                                int64_t q1, const struct lmp_block_hooks *hooks,
                                struct lmp_err *err) {
    for (int64_t s0 = q0; s0 < q1; s0 += self->chunk) {
        const int64_t n = q1 - s0 < self->chunk ? q1 - s0 : self->chunk;
        if (lmp_cancelled(self->cancel)) /* ~2048 tokens through one block between polls */
            return lmp_err_set(err, LMP_ECANCEL, "calibration of block %d stopped", (int)block);
        enum lmp_status st = lmp_transformer_block(
            self->tf, block, NULL, buf + s0 * self->ctx * self->dim, n, self->ctx, hooks, err);
        if (st != LMP_OK) return st;
    }
    return LMP_OK;
}

/* Run block over buf slice by slice (chunks start at each slice's first sequence). */
static enum lmp_status run_block(struct lmp_calib *self, int32_t block, float *buf,
                                 const struct lmp_block_hooks *hooks, struct lmp_err *err) {
    const int64_t k = self->slice;
    for (int64_t q0 = 0; q0 < self->n_seq; q0 += k) {
        enum lmp_status st =
            run_seqs(self, block, buf, q0, q0 + k < self->n_seq ? q0 + k : self->n_seq, hooks, err);
        if (st != LMP_OK) return st;
    }
    return LMP_OK;
}

enum lmp_status lmp_calib_collect(struct lmp_calib *self, int32_t block,
                                  struct lmp_calib_grams *grams, struct lmp_err *err) {
    assert(self);
    memcpy(self->y, self->x, (size_t)(self->n_seq * self->ctx * self->dim) * sizeof(float));
    const int64_t k = self->slice;
    if (grams == NULL) return run_block(self, block, self->y, NULL, err);
    if (k >= self->n_seq) { /* one slice: its sum is the block's */
        struct lmp_block_hooks hooks = {.on_input = lmp_calib_grams_hook, .ctx = grams};
        return run_seqs(self, block, self->y, 0, self->n_seq, &hooks, err);
    }
    if (self->part == NULL &&
        (self->part = lmp_calib_grams_new(lmp_transformer_config(self->tf))) == NULL)
        return lmp_err_set(err, LMP_ENOMEM, "out of memory for a slice's Gram matrices");
    struct lmp_block_hooks hooks = {.on_input = lmp_calib_grams_hook, .ctx = self->part};
    for (int64_t q0 = 0; q0 < self->n_seq; q0 += k) {
        lmp_calib_grams_reset(self->part);
        enum lmp_status st = run_seqs(self, block, self->y, q0,
                                      q0 + k < self->n_seq ? q0 + k : self->n_seq, &hooks, err);
        if (st != LMP_OK) return st;
        for (int w = 0; w < LMP_INPUT_COUNT; w++)
            lmp_calib_grams_add(grams, (enum lmp_input)w, self->part->sum[w], self->part->n_tok[w]);
    }
    return LMP_OK;
}

enum lmp_status lmp_calib_advance(struct lmp_calib *self, int32_t block, struct lmp_err *err) {
    assert(self);
    return run_block(self, block, self->x, NULL, err);
}

void lmp_calib_set_slice(struct lmp_calib *self, int64_t slice_seqs) {
    assert(self && slice_seqs > 0);
    self->slice = slice_seqs;
}

void lmp_calib_set_cancel(struct lmp_calib *self, const atomic_int *flag) {
    assert(self);
    self->cancel = flag;
}

void lmp_calib_take_output(struct lmp_calib *self) {
    assert(self);
    float *t = self->x;
    self->x  = self->y;
    self->y  = t;
}

float *lmp_calib_x(struct lmp_calib *self) {
    assert(self);
    return self->x;
}
float *lmp_calib_y(struct lmp_calib *self) {
    assert(self);
    return self->y;
}
int64_t lmp_calib_n_seq(const struct lmp_calib *self) {
    assert(self);
    return self->n_seq;
}
int64_t lmp_calib_ctx(const struct lmp_calib *self) {
    assert(self);
    return self->ctx;
}
