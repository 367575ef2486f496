/*  artifact_model - a runnable model and tokenizer rebuilt from a compression artifact
 *
 *  An artifact (artifact/artifact.h) holds the job's model config, the compressed
 *  linears, the tensors left unquantized and the tokenizer source. This module turns
 *  it back into the two things every stage consumes: a struct lmp_model (config from
 *  the job description; embeddings, norms, head and kept linears from the stored
 *  tensors) and a struct lmp_tokenizer. An AQ-compressed linear is either kept as its
 *  codes, codebooks and scales (lmp_linear.aq, LMP_ART_WEIGHTS_CODES: the transformer
 *  runs it with the aq_matvec kernel and no dense copy of it exists: inference) or
 *  decoded once to a dense fp32 weight through the aq_decode kernel
 *  (LMP_ART_WEIGHTS_DENSE: stages that read weight rows, PV-Tuning, and the check of
 *  the code path). RTN layers are always decoded (by their scale and zero). With the codes,
 *  the embedding and head also stay narrow: fp16 as stored, and an fp32 one (format 1) as
 *  Q8_0 blocks or halves where those give back every value exactly (the same weights in a
 *  quarter or half of the bytes); elsewhere 16-bit tensors are widened to fp32 at load.
 *
 *  The model owns its buffers (released by lmp_model_close). The tokenizer may borrow
 *  from the model (a GGUF tokenizer is parsed from an in-memory GGUF image that the
 *  model keeps alive as m->gguf): free the tokenizer before closing the model.
 *
 *  It also holds the reverse direction used when writing an artifact: the tokenizer
 *  source bytes for a model (a tokenizer.bin / tokenizer.json file as it is, or, for
 *  GGUF, a minimal GGUF image holding only the tokenizer.* metadata).
 */
#ifndef LMP_ARTIFACT_ARTIFACT_MODEL_H
#define LMP_ARTIFACT_ARTIFACT_MODEL_H

#include <stddef.h>
#include <stdint.h>
#include "artifact/artifact.h" /* defines: struct lmp_artifact, enum lmp_art_tok */
#include "base/status.h"       /* defines: enum lmp_status, struct lmp_err */
#include "model/model.h"       /* defines: struct lmp_model */
#include "model/tokenizer.h"   /* defines: struct lmp_tokenizer */

/* Decode compressed layer l into w (l->n_out, l->n_in) fp32, caller-owned. */
void lmp_art_layer_decode(const struct lmp_art_layer *l, float *w);

/* The tokenizer source to store for model m: tok_path's bytes if given (kind from the
 * name as lmp_tokenizer_open decides it), else the model's own (GGUF metadata image,
 * tokenizer.json of a HF directory, tokenizer.bin beside a llama2.c checkpoint).
 * *bytes malloc'ed, owned by the caller. RET LMP_OK, LMP_ENOENT, LMP_EIO, LMP_ENOMEM. */
enum lmp_status lmp_art_tokenizer_source(const struct lmp_model *m, const char *tok_path,
                                         enum lmp_art_tok *kind, uint8_t **bytes, size_t *n,
                                         struct lmp_err *err);

/* A GGUF v3 image (no tensors) with every "tokenizer.*" key of g, in g's order.
 * *img malloc'ed. RET LMP_OK or LMP_ENOMEM. */
enum lmp_status lmp_gguf_tokenizer_image(const struct lmp_gguf *g, uint8_t **img, size_t *n,
                                         struct lmp_err *err);

/* How the compressed linears of an artifact's model are held. */
enum lmp_art_weights {
    LMP_ART_WEIGHTS_CODES, /* AQ linears as codes (lmp_linear.aq, weight NULL) */
    LMP_ART_WEIGHTS_DENSE, /* every linear a dense fp32 weight tensor */
};

/* Open the artifact at path (it must be complete: every linear compressed or kept)
 * and rebuild model and tokenizer (tok may be NULL: no tokenizer), the compressed
 * linears held as `weights` says. RET LMP_OK, LMP_ENOENT, LMP_EFORMAT (incomplete or
 * corrupt artifact, missing tensors, bad shapes or codes), LMP_EUNSUP, LMP_ENOMEM,
 * LMP_EIO; err names the file and the problem. */
enum lmp_status lmp_artifact_model_load(const char *path, enum lmp_art_weights weights,
                                        struct lmp_model **model, struct lmp_tokenizer **tok,
                                        struct lmp_err *err);

/* lmp_artifact_model_load(path, LMP_ART_WEIGHTS_DENSE, ...): every weight dense. */
enum lmp_status lmp_artifact_model_open(const char *path, struct lmp_model **model,
                                        struct lmp_tokenizer **tok, struct lmp_err *err);

#endif /* LMP_ARTIFACT_ARTIFACT_MODEL_H */
