/*  model - the one internal description of a transformer checkpoint
 *
 *  Every stage (eval, calibration, codebook learning, fine-tuning, export) sees a
 *  model only through struct lmp_model: its config, its blocks, and for each block
 *  the seven linear layers with their canonical names, shapes, source tensors and
 *  the id of the input they read (q/k/v share one input, gate/up another). The
 *  readers (GGUF, Hugging Face safetensors, llama2.c) fill it; nothing downstream
 *  knows which format a model came from, except the RoPE pair order in cfg.rope.
 *
 *  Tensors point into read-only file maps: opening a model reads headers only,
 *  and a stage pages in just the tensors it touches. Rows are dequantized to fp32
 *  on demand with lmp_tensor_rows_f32(). A model is immutable after open and may
 *  be shared by threads.
 *
 *  Canonical linear names are the Hugging Face module prefixes
 *  ("model.layers.3.self_attn.q_proj"), which is also what the export format uses.
 */
#ifndef LMP_MODEL_MODEL_H
#define LMP_MODEL_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "base/status.h"     /* defines: enum lmp_status, struct lmp_err */
#include "kernels/dtype.h"   /* defines: enum lmp_dtype */
#include "kernels/kernels.h" /* defines: struct lmp_aq_shape */

#define LMP_MAX_DIMS 4
#define LMP_NAME_MAX 160

struct lmp_tensor {
    char           name[LMP_NAME_MAX]; /* name in the source file */
    enum lmp_dtype dtype;
    int            n_dims;
    int64_t        shape[LMP_MAX_DIMS]; /* outermost first: a linear weight is {n_out, n_in} */
    const void    *data;                /* into the file map (or an owned buffer of the reader) */
    uint64_t       nbytes;              /* == bytes needed for shape and dtype (checked at open) */
};

int64_t lmp_tensor_n_elem(const struct lmp_tensor *t);
/* Innermost dimension (row length) and number of rows (product of the others). */
int64_t lmp_tensor_n_cols(const struct lmp_tensor *t);
int64_t lmp_tensor_n_rows(const struct lmp_tensor *t);
/* Bytes a tensor of this dtype and shape needs; -1 if the row length is not a
 * multiple of the dtype's block or the size overflows. */
int64_t lmp_tensor_expected_bytes(enum lmp_dtype dtype, int n_dims, const int64_t *shape);

/* Dequantize rows [row0, row0 + n_rows) into dst, shape (n_rows, n_cols), fp32.
 * The caller guarantees the range is inside the tensor (asserted). Thread-safe. */
void lmp_tensor_rows_f32(const struct lmp_tensor *t, int64_t row0, int64_t n_rows, float *dst);

enum lmp_arch {
    LMP_ARCH_LLAMA,
    LMP_ARCH_MISTRAL,
    LMP_ARCH_QWEN2,
    LMP_ARCH_GEMMA3,
    LMP_ARCH_QWEN3,  /* Qwen2 without biases, with per-head q/k norms */
    LMP_ARCH_PHI3,   /* fused qkv and gate_up in the files, split on read */
    LMP_ARCH_GEMMA2, /* Gemma 3's block without q/k norms, with logit soft-capping */
    LMP_ARCH_COUNT
};
enum lmp_format { LMP_FORMAT_GGUF, LMP_FORMAT_HF, LMP_FORMAT_LLAMA2C };
enum lmp_rope {
    LMP_ROPE_INTERLEAVED, /* rotate pairs (2i, 2i+1): llama2.c, GGUF llama */
    LMP_ROPE_HALF,        /* rotate (i, i + head_dim/2): Hugging Face, GGUF qwen2 (NEOX) */
};

/* How RoPE frequencies are stretched for a longer context (model/rope.h has the formulas). */
enum lmp_rope_scaling {
    LMP_ROPE_SCALING_NONE,
    LMP_ROPE_SCALING_LINEAR, /* every frequency / factor (positions interpolated) */
    LMP_ROPE_SCALING_LLAMA3, /* Llama 3.1: low frequencies / factor, high kept, smooth between */
    LMP_ROPE_SCALING_YARN,   /* YaRN: ramp between interpolation and extrapolation, mscale */
};

/* The FFN's gate activation: f = act(h Wgate^T) * (h Wup^T). */
enum lmp_act {
    LMP_ACT_SILU,      /* SwiGLU: llama, mistral, qwen2 */
    LMP_ACT_GELU_TANH, /* GeGLU with the tanh approximation of GELU: gemma */
};

/* "llama", "mistral", "qwen2", "gemma3", "qwen3", "phi3", "gemma2" (GGUF's
 * general.architecture) */
const char *lmp_arch_name(enum lmp_arch a);
const char *lmp_format_name(enum lmp_format f); /* "gguf", "hf", "llama2c" */

struct lmp_config {
    enum lmp_arch   arch;
    enum lmp_format format;
    int32_t         n_layers;
    int32_t         dim;        /* hidden size */
    int32_t         hidden_dim; /* FFN intermediate size */
    int32_t         n_heads;
    int32_t         n_kv_heads;
    int32_t         head_dim; /* usually dim / n_heads */
    int32_t         vocab_size;
    int32_t         max_seq; /* trained context length */
    float           rope_theta;
    float           norm_eps; /* RMSNorm epsilon */
    enum lmp_rope   rope;
    bool            tied_embeddings; /* output == tok_emb */
    bool            qkv_bias;        /* q/k/v have biases (Qwen2) */
    int32_t sliding_window; /* keys per query of a local layer (itself included); 0 = none */
    int32_t swa_pattern;    /* 0: sliding_window is not applied (Mistral, Qwen2, Phi-3); n > 0:
                               block b is local iff (b + 1) % n != 0 (Gemma 3: 6, Gemma 2: 2) */
    float rope_theta_local; /* RoPE base of local layers (unscaled); 0 = rope_theta */
    /* RoPE variants (the global layers' frequencies; see model/rope.h) */
    enum lmp_rope_scaling rope_scaling;
    float                 rope_factor;           /* linear, llama3, yarn: context stretch (> 0) */
    float                 rope_low_freq_factor;  /* llama3 */
    float                 rope_high_freq_factor; /* llama3 */
    int32_t               rope_orig_max_seq;     /* llama3, yarn: original context length */
    float                 rope_beta_fast;        /* yarn: 32 by default */
    float                 rope_beta_slow;        /* yarn: 1 by default */
    float                 rope_attn_factor;  /* yarn: cos/sin magnitude; 0 = 0.1 ln(factor) + 1 */
    int32_t               rope_dims;         /* rotated dimensions of a head; 0 = head_dim */
    const float          *rope_freq_factors; /* (rope_dims / 2) or NULL: frequency i divided
                                                by [i] (GGUF rope_freqs), into the model */
    /* Gemma */
    enum lmp_act ffn_act;
    float embed_scale; /* token embeddings are multiplied by this; 0 = 1 (Gemma: sqrt(dim)) */
    float attn_scale;  /* scores = q k^T * attn_scale; 0 = 1 / sqrt(head_dim) */
    bool  qk_norm;     /* per-head q and k RMSNorm before RoPE (Gemma 3, Qwen3; tensors) */
    bool  post_norms;  /* RMSNorm of the attention and FFN outputs before the residual
                          adds (set from the tensors) */
    /* soft-capping (Gemma 2): x -> cap * tanh(x / cap); 0 = none */
    float attn_softcap;  /* attention scores, after attn_scale, before the mask and softmax */
    float final_softcap; /* logits of the head */
};

/* x (n) -> cap * tanh(x / cap) in place, in float (as llama.cpp's ggml_tanh); nothing when
 * cap is 0. */
void lmp_softcap(float *x, int64_t n, float cap);

enum lmp_lin {
    LMP_LIN_Q,
    LMP_LIN_K,
    LMP_LIN_V,
    LMP_LIN_O,
    LMP_LIN_GATE,
    LMP_LIN_UP,
    LMP_LIN_DOWN,
    LMP_LIN_COUNT
};

/* The distinct inputs of a block's linears: one Gram matrix H each in calibration. */
enum lmp_input {
    LMP_INPUT_ATTN,     /* normed block input: q, k, v */
    LMP_INPUT_ATTN_OUT, /* attention output: o */
    LMP_INPUT_FFN,      /* normed residual: gate, up */
    LMP_INPUT_FFN_OUT,  /* silu(gate) * up: down */
    LMP_INPUT_COUNT
};

const char    *lmp_lin_name(enum lmp_lin k); /* "q_proj", ..., "down_proj" */
enum lmp_input lmp_lin_input(enum lmp_lin k);

/* A linear's weight held as AQLM codes (a compressed layer read back from an artifact):
 * the forward pass runs it with the aq_matvec kernel, no dense copy exists. */
struct lmp_aq_linear {
    struct lmp_aq_shape shape;     /* n_out, n_in, M, K, g of the whole layer */
    const uint16_t     *codes;     /* (n_out, n_in/g, M), each < K */
    const float        *codebooks; /* (M, K, g) */
    const float        *scales;    /* (n_out) */
};

struct lmp_linear {
    char                        name[64]; /* "model.layers.3.self_attn.q_proj" */
    int32_t                     block;
    enum lmp_lin                kind;
    enum lmp_input              input;
    int64_t                     n_out, n_in;
    const struct lmp_tensor    *weight; /* (n_out, n_in); NULL when aq is set */
    const struct lmp_tensor    *bias;   /* (n_out), or NULL */
    const struct lmp_aq_linear *aq;     /* the weight as codes, or NULL (only models built
                                           from an artifact; stages that read weight rows
                                           need a dense model) */
};

struct lmp_block {
    const struct lmp_tensor *attn_norm; /* (dim) */
    const struct lmp_tensor *ffn_norm;  /* (dim) */
    /* Gemma 3 and Qwen3 (q/k), Gemma 3 (post); NULL elsewhere (each pair both or none) */
    const struct lmp_tensor *q_norm;         /* (head_dim) */
    const struct lmp_tensor *k_norm;         /* (head_dim) */
    const struct lmp_tensor *post_attn_norm; /* (dim) applied to the attention output */
    const struct lmp_tensor *post_ffn_norm;  /* (dim) applied to the FFN output */
    struct lmp_linear        lin[LMP_LIN_COUNT];
};

struct lmp_gguf;

struct lmp_model {
    struct lmp_config        cfg;
    char                    *path;     /* what was opened (file or directory) */
    const struct lmp_tensor *tok_emb;  /* (vocab, dim) */
    const struct lmp_tensor *out_norm; /* (dim) */
    const struct lmp_tensor *output;   /* (vocab, dim); == tok_emb when tied */
    struct lmp_block        *blocks;   /* (n_layers) */
    struct lmp_tensor       *tensors;  /* every tensor the reader found */
    int64_t                  n_tensors;
    struct lmp_tensor       *views; /* lmp_model_split_rows parts, or NULL */
    int64_t                  n_views;
    const struct lmp_gguf   *gguf; /* the GGUF file (tokenizer, metadata) or NULL */
    void                    *src;  /* reader state (maps), released by src_close */
    void (*src_close)(void *src);
};

/* Open a checkpoint: a .gguf file, a Hugging Face directory (config.json + safetensors),
 * or a llama2.c .bin. Reads headers and validates every shape and byte range; tensor
 * data stays mapped. RET LMP_OK; otherwise *out is NULL and err names the file and the
 * problem (LMP_ENOENT, LMP_EFORMAT, LMP_EUNSUP, LMP_EIO, LMP_ENOMEM). */
enum lmp_status lmp_model_open(const char *path, struct lmp_model **out, struct lmp_err *err);

/* Release everything; *m set to NULL. Safe on NULL. */
void lmp_model_close(struct lmp_model **m);

/* Linear by flat index idx in [0, n_layers * LMP_LIN_COUNT): block-major, then kind. */
const struct lmp_linear *lmp_model_linear(const struct lmp_model *m, int64_t idx);
int64_t                  lmp_model_n_linears(const struct lmp_model *m);

/* Parameter count (every tensor once; a tied output is not counted twice). */
int64_t lmp_model_n_params(const struct lmp_model *m);

/* LMP_OK if every stage can run m, block fine-tuning and PV-Tuning included: their
 * backward (worker/block_grad.c, worker/model_grad.c) runs the llama block and what
 * Gemma 3, Gemma 2 and Qwen3 add (per-head q/k norms, post norms, GeGLU, the embedding and
 * attention scales, sliding-window blocks with their own RoPE base, Gemma 2's attention
 * and final soft-caps, linear/llama3/YaRN
 * RoPE scaling, partial rotary dimensions, GGUF rope_freqs divisors), and artifact format 3
 * records it. Refused with LMP_EUNSUP and a one-line message naming the model and what it
 * has: an FFN activation other than SiLU and tanh-GELU (no architecture read today has one).
 * `what` names the stage in the message ("compression"). */
enum lmp_status lmp_model_check_trainable(const struct lmp_model *m, const char *what,
                                          struct lmp_err *err);

/* Find a tensor by source name; NULL if absent. */
const struct lmp_tensor *lmp_model_find_tensor(const struct lmp_model *m, const char *name);

/* --- for readers --------------------------------------------------------------- */

/* Allocate a model with n_layers blocks (zeroed). NULL on out-of-memory. */
struct lmp_model *lmp_model_alloc(int32_t n_layers);

/* A fused weight split on read (Phi-3's qkv and gate_up): t must be a 2-D tensor of
 * (rows[0] + ... + rows[n_parts - 1], n_in); part i, the next rows[i] rows, becomes a tensor
 * of its own, *out[i], pointing into t's data and owned by m (in m->views, at most
 * n_layers * LMP_LIN_COUNT in all), named as t with its row range appended
 * ("blk.0.attn_qkv.weight[0:3072]"). RET LMP_OK, LMP_EFORMAT (t has another shape: err
 * names the model, t and the shape expected) or LMP_ENOMEM. */
enum lmp_status lmp_model_split_rows(struct lmp_model *m, const struct lmp_tensor *t, int64_t n_in,
                                     int n_parts, const int64_t *rows,
                                     const struct lmp_tensor **const *out, struct lmp_err *err);

/* Fill every block's linear names, kinds, inputs and shapes from cfg and check that
 * every tensor the readers attached has the shape cfg implies and that required ones
 * are present. RET LMP_OK or LMP_EFORMAT with err naming path and the tensor. */
enum lmp_status lmp_model_finish(struct lmp_model *m, struct lmp_err *err);

/* The readers (one file each). Called by lmp_model_open after format detection. */
enum lmp_status lmp_model_open_gguf(const char *path, struct lmp_model **out, struct lmp_err *err);
enum lmp_status lmp_model_open_hf(const char *dir, struct lmp_model **out, struct lmp_err *err);
enum lmp_status lmp_model_open_llama2c(const char *path, struct lmp_model **out,
                                       struct lmp_err *err);

#endif /* LMP_MODEL_MODEL_H */
