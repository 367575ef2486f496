/*  export_hf - an AQLM artifact as a Hugging Face model directory (transformers + aqlm)
 *
 *  lmp_export_hf writes, for a complete artifact whose linears are all AQ-coded with one
 *  scheme (M codebooks of B bits over groups of g inputs):
 *
 *    config.json            the architecture's fields (LlamaForCausalLM, MistralForCausalLM,
 *                           Qwen2ForCausalLM, Gemma2ForCausalLM: its activation,
 *                           query_pre_attn_scalar, soft-caps and window), torch_dtype
 *                           float16, and quantization_config
 *                           {"quant_method": "aqlm", num_codebooks M, nbits_per_codebook B,
 *                           in_group_size g, out_group_size 1, linear_weights_not_to_quantize:
 *                           every unquantized tensor's name, and each kept linear's module
 *                           name too ("lm_head" beside "lm_head.weight": transformers 4
 *                           compares "<module>.weight", transformers 5 matches module names)}
 *    model.safetensors      per quantized linear <prefix>: <prefix>.codes (I8 for B <= 8,
 *                           else I16; (n_out, n_in/g, M); a code c >= 2^(B-1) is stored as
 *                           c - 2^B, as aqlm's pack_int_data does, and read back modulo
 *                           2^B), <prefix>.codebooks (F16, (M, 2^B, 1, g)), <prefix>.scales
 *                           (F16, (n_out, 1, 1, 1)), <prefix>.bias (F16) if any; every
 *                           unquantized tensor in F16 under its Hugging Face name (Gemma 2's
 *                           norms as w where the artifact holds 1 + w, transformers'
 *                           post_attention_layernorm being the attention output's and
 *                           pre_feedforward_layernorm the FFN input's)
 *    tokenizer.json         the source's (a Hugging Face source), or rebuilt from the GGUF
 *    tokenizer_config.json  tokenizer metadata (gpt2 byte-level BPE, llama SentencePiece) or
 *                           from llama2.c's tokenizer.bin; the chat template where the
 *                           source has one
 *
 *  RoPE: Hugging Face models rotate (i, i + head_dim/2); a GGUF llama or llama2.c source
 *  rotates pairs (2i, 2i+1) (the artifact keeps the source's row order, cfg.rope). The
 *  export permutes the rows of q_proj and k_proj (codes and scales row by row; codebooks
 *  are shared by the rows) back to the Hugging Face order, as llama.cpp's converter
 *  permutes them the other way.
 *
 *  Everything read from the artifact is checked: the scheme of every layer, shapes, code
 *  ranges, and that every value fits float16 (a value beyond +-65504 or not finite is
 *  LMP_EINVAL naming the tensor). The directory is written atomically: into a temporary
 *  directory beside it (OUT.tmp-XXXXXX), every file fsync'ed, then renamed to OUT; an
 *  existing non-empty OUT is refused unless force (it is then moved aside, replaced, and
 *  removed). On failure the temporary directory is removed and OUT is left as it was.
 */
#ifndef LMP_ARTIFACT_EXPORT_HF_H
#define LMP_ARTIFACT_EXPORT_HF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "artifact/artifact.h" /* defines: enum lmp_art_tok, struct lmp_art_job */
#include "base/status.h"       /* defines: enum lmp_status, struct lmp_err */
#include "model/model.h"       /* defines: struct lmp_config */

struct lmp_export_hf_opts {
    bool force; /* replace an existing non-empty output directory */
};

struct lmp_export_hf_result {
    int64_t  n_quantized;    /* linears written as AQLM */
    int64_t  n_kept;         /* linears written in F16 */
    int64_t  n_tensors;      /* tensors in model.safetensors */
    uint64_t bytes;          /* bytes of model.safetensors */
    int32_t  M, B, g;        /* the scheme */
    bool     permuted_rope;  /* q/k rows were permuted from interleaved RoPE */
    char     tokenizer[128]; /* how tokenizer.json was made: "copied", "gguf gpt2 bpe", ... */
};

/* Export the artifact art_path into the directory out_dir (see the file comment). res
 * may be NULL. RET LMP_OK; LMP_ENOENT, LMP_EFORMAT, LMP_EUNSUP (an RTN layer, mixed
 * schemes, an unsupported architecture or tokenizer), LMP_EINVAL (incomplete artifact, a
 * value beyond float16, out_dir not empty without force), LMP_ENOSPC, LMP_EIO, LMP_ENOMEM;
 * err is one line naming the file or tensor. */
enum lmp_status lmp_export_hf(const char *art_path, const char *out_dir,
                              const struct lmp_export_hf_opts *opts,
                              struct lmp_export_hf_result *res, struct lmp_err *err);

/* --- pieces, for tests and the writer ---------------------------------------------- */

/* The Hugging Face row of q_proj/k_proj row r (0 <= r < n_heads * head_dim) of a source
 * with interleaved RoPE pairs: source row h*hd + 2i + j is HF row h*hd + j*hd/2 + i. */
int64_t lmp_export_hf_rope_row(int64_t r, int32_t head_dim);

/* A code as aqlm stores it: c - 2^B when c >= 2^(B-1), else c (fits int8 for B <= 8,
 * int16 for B <= 16). */
int32_t lmp_export_hf_code(uint32_t c, int32_t B);

/* What the tokenizer files of an export hold (texts malloc'ed, owned by the caller). */
struct lmp_hf_tok_files {
    char   *tokenizer_json;        /* tokenizer.json */
    char   *tokenizer_config_json; /* tokenizer_config.json */
    int32_t bos, eos;              /* token ids for config.json, -1 = none */
    char    how[128];              /* "copied from the source", "gguf gpt2 bpe (smollm)", ... */
};
void lmp_hf_tok_files_release(struct lmp_hf_tok_files *f);

/* Build the tokenizer files from an artifact's tokenizer source (kind, src[0, n)), for a
 * model of config cfg. A Hugging Face source's tokenizer.json is copied as it is, with
 * tokenizer_config.json taken from hf_config_json when given (the source directory's
 * file), else made from tokenizer.json. RET LMP_OK, LMP_EFORMAT (bad source), LMP_EUNSUP
 * (a GGUF tokenizer model or pre-tokenizer not known), LMP_ENOMEM. */
enum lmp_status lmp_export_hf_tokenizer(enum lmp_art_tok kind, const uint8_t *src, size_t n,
                                        const struct lmp_config *cfg, const char *hf_config_json,
                                        struct lmp_hf_tok_files *out, struct lmp_err *err);

/* config.json for job (cfg, linears), the scheme M x B g, the tensors not to quantize
 * (names, n_keep) and the bos/eos ids (-1: none). *json malloc'ed. RET LMP_OK,
 * LMP_EUNSUP (an architecture Hugging Face has no class for here), LMP_ENOMEM. */
enum lmp_status lmp_export_hf_config(const struct lmp_config *cfg, int32_t M, int32_t B, int32_t g,
                                     const char *const *keep, int64_t n_keep, int32_t bos,
                                     int32_t eos, char **json, struct lmp_err *err);

#endif /* LMP_ARTIFACT_EXPORT_HF_H */
