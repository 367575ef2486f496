/*  artifact - the HDF5 file a compression job produces, written crash-safely
 *
 *  An artifact ART.h5 holds everything needed to run the compressed model: the
 *  job description (model config and fingerprint, calibration fingerprint, method,
 *  scheme, tool version), one group per compressed linear layer (codes, codebooks,
 *  scales and statistics), every tensor left unquantized, and the tokenizer source.
 *  docs/artifact.md specifies the layout and its version history.
 *
 *  Crash safety. HDF5 1.10 has no journaling: a process killed while it updates
 *  a file can leave the file's metadata corrupt. So this module never updates an
 *  HDF5 file in place. While a job runs, every commit (the job description, one
 *  layer, one unquantized tensor, the tokenizer) is a small self-contained HDF5
 *  file, a "part", built in memory, written to ART.h5.parts/<name>.tmp, fsync'ed,
 *  and renamed to ART.h5.parts/<kind>-<name>-<xxh64>.h5, where <xxh64> is the hash
 *  of the part's bytes; the directory is fsync'ed too (a part is committed once
 *  renamed: a failed directory fsync is retried, then only warned about). Work that
 *  must land together (a fine-tuned block's layers and norms) is one part
 *  (lmp_artifact_commit_block). A rename is atomic, so a part either exists complete
 *  or not at all; a .tmp left by a crash was never committed and is removed with a
 *  warning. finalize assembles the main file: it copies the main file's and the
 *  parts' objects into ART.h5.tmp, fsyncs, renames it over ART.h5, fsyncs the
 *  directory, and only then removes the parts. A kill at any instant leaves the old
 *  ART.h5 (or none) plus all committed parts; readers and resume read the main file
 *  plus the parts, so nothing committed is ever lost.
 *  One writer at a time: the writer holds an flock on ART.h5.parts/LOCK (released
 *  by the kernel if the process dies, so a killed run never blocks its resume).
 *
 *  Calling sequence (writer), in the style of git's lockfile.h:
 *
 *      struct lmp_art_job job;
 *      lmp_art_job_init(&job);
 *      lmp_art_job_from_model(&job, model);           // config, linears, fingerprint
 *      job.calib_fp = lmp_fingerprint_job(ids, n, settings_digest);
 *      lmp_art_job_set_text(&job.calib_desc, settings_in_words);
 *      snprintf(job.method, ..., "aqlm"); snprintf(job.scheme, ..., "2x8g8");
 *      struct lmp_artifact *a;
 *      st = lmp_artifact_open_write("ART.h5", &job, &a, &err);
 *          // creates it, or resumes it if it was made by the same job;
 *          // LMP_EMISMATCH if it belongs to another model/calibration/settings/
 *          // method/scheme, or was written by another build
 *      lmp_artifact_put_model_tensors(a, model, quantized, false, &err);   // idempotent
 *      lmp_artifact_put_tokenizer(a, kind, bytes, n, &err);         // once
 *      for each linear:
 *          if (lmp_artifact_has_layer(a, name)) continue;   // committed by an earlier run
 *          ... compress ...
 *          st = lmp_artifact_commit_layer(a, &layer, &err);  // durable when it returns OK
 *      st = lmp_artifact_finalize(a, &err);                  // assemble ART.h5
 *      lmp_artifact_close(&a);                                // always, also after errors
 *      lmp_art_job_release(&job);
 *
 *  Calling sequence (reader: eval, inspect, export):
 *
 *      lmp_artifact_open_read("ART.h5", &a, &err);      // main file + committed parts
 *      const struct lmp_art_job *job = lmp_artifact_job(a);
 *      for (i = 0; i < lmp_artifact_n_layers(a); i++)
 *          lmp_artifact_read_layer(a, lmp_artifact_layer_name(a, i), &layer, &err);
 *          ... lmp_art_layer_release(&layer);
 *      lmp_artifact_read_tensor(a, "model.embed_tokens.weight", &t, &err); ...
 *      lmp_artifact_close(&a);
 *
 *  Errors: every failure returns a status and fills err with one line naming the
 *  file: LMP_EFORMAT for a corrupt or truncated file or part (bad checksum, not
 *  HDF5, missing fields), LMP_EUNSUP for a newer format version, LMP_EMISMATCH for
 *  a job mismatch, LMP_ENOSPC when the disk is full (committed parts stay intact),
 *  LMP_EIO otherwise. The fault-injection hook LMP_FAULT_WRITE_LIMIT=<bytes> (an
 *  environment variable, read at each write) makes the part writer fail with
 *  ENOSPC once that many bytes have been written by this process.
 *
 *  This is the only file that includes hdf5.h. HDF5 (the Debian build) is not
 *  thread-safe: use artifacts from one thread. The module turns off HDF5's
 *  automatic error printing for the process (messages come back through err).
 */
#ifndef LMP_ARTIFACT_ARTIFACT_H
#define LMP_ARTIFACT_ARTIFACT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "base/log.h"             /* defines: enum lmp_log_level */
#include "base/status.h"          /* defines: enum lmp_status, struct lmp_err */
#include "model/model.h"          /* defines: struct lmp_config, struct lmp_model, LMP_NAME_MAX */
#include "artifact/fingerprint.h" /* defines: lmp_fingerprint_model(), lmp_fingerprint_job() */

#define LMP_ARTIFACT_FORMAT_VERSION 3 /* docs/artifact.md: version history; reads 1 to 3 */
#define LMP_ARTIFACT_WRITE_VERSION  2 /* written: 2, or 3 where lmp_artifact_cfg_is_v3 */
#define LMP_ARTIFACT_FORMAT_MINOR   1 /* 1.1: /events; readers of 1.0 ignore it */

struct lmp_event; /* artifact/events.h */
struct lmp_event_list;

/* One linear of the model description: name and shape. */
struct lmp_art_linear {
    char    name[64]; /* "model.layers.3.self_attn.q_proj" */
    int64_t n_out, n_in;
};

/* What a job is: the key an artifact is checked against on resume. The strings that
 * come from outside (the model's path, the settings in words) are owned, whole, and
 * never NULL once read back; set them with lmp_art_job_set_text. */
struct lmp_art_job {
    uint64_t model_fp;                 /* lmp_fingerprint_model() */
    uint64_t calib_fp;                 /* lmp_fingerprint_job(): calibration tokens and every
                                          setting that changes the artifact (docs/artifact.md) */
    char *model_name;                  /* for messages: the model's path (owned) */
    char *calib_desc;                  /* the fingerprinted settings in words (owned) */
    char  method[32];                  /* "aqlm", "rtn" */
    char  scheme[64];                  /* "2x8g8", "int4g128" */
    char  tool_version[32];            /* LMP_VERSION of the writer */
    char  build[256];                  /* lmp_build_id() of the writer; "" = not recorded (an
                                          artifact older than the record); checked on resume */
    struct lmp_config      cfg;        /* cfg.rope_freq_factors points into rope_freqs */
    float                 *rope_freqs; /* (rope dims / 2) GGUF rope_freqs divisors, owned; NULL */
    struct lmp_art_linear *linears;    /* (n_linears), owned */
    int64_t                n_linears;
};

/* Zero job, then tool_version and build of this program. */
void lmp_art_job_init(struct lmp_art_job *job);
/* Free what job owns; job is zeroed (init it again to reuse it). */
void lmp_art_job_release(struct lmp_art_job *job);
/* *field (job->model_name or job->calib_desc) = a copy of v. RET LMP_OK or LMP_ENOMEM. */
enum lmp_status lmp_art_job_set_text(char **field, const char *v);
/* Fill cfg, linears, model_name, model_fp (hashes the model: reads every tensor once),
 * tool_version and build. RET LMP_OK or LMP_ENOMEM. */
enum lmp_status lmp_art_job_from_model(struct lmp_art_job *job, const struct lmp_model *m);
/* Whether a model of config c needs format 3's architecture fields (norms beyond the llama
 * block's, GeGLU, scaled embeddings or attention, sliding-window layers, scaled or partial
 * RoPE); its artifact is then written as format 3. */
bool lmp_artifact_cfg_is_v3(const struct lmp_config *c);

/* Statistics of one layer's compression (attributes of its group). */
struct lmp_art_stats {
    double  rel_err_before;  /* ||(W - W0) X|| / ||W X|| of the initialisation */
    double  rel_err_after;   /* same, final */
    double  bits_per_weight; /* including codebooks and scales */
    double  seconds;         /* wall time spent on the layer */
    int64_t steps;           /* optimisation steps (beam-search rounds, Adam steps) */
};

enum lmp_art_codec {
    LMP_ART_CODEC_AQ,  /* additive quantization (AQLM) */
    LMP_ART_CODEC_RTN, /* round-to-nearest with per-group scale and zero */
};

/* One compressed linear layer. For writing, the pointers are borrowed for the call;
 * for reading, lmp_artifact_read_layer allocates them and lmp_art_layer_release
 * frees them. AQ codebooks and scales are fp32 here and stored as fp16 (format 2,
 * rounded to nearest even; a value that is not a finite fp16 is refused): what is read
 * back is the rounded value, which every later stage (sequential calibration, eval)
 * uses.
 *   AQ:  w[o, j*g + t] = scales[o] * sum_m codebooks[m, codes[o, j, m], t]
 *   RTN: w[o, i]       = scales[o, i/g] * (codes[o, i] - zeros[o, i/g])      (M = 1) */
struct lmp_art_layer {
    char                 name[LMP_NAME_MAX]; /* canonical linear name */
    enum lmp_art_codec   codec;
    int64_t              n_out, n_in;
    int32_t              M;         /* AQ: codebooks; RTN: 1 */
    int32_t              B;         /* bits per code, 1..16 (stored as uint8 if B <= 8) */
    int32_t              g;         /* AQ: in-group size; RTN: quantization group along n_in */
    uint16_t            *codes;     /* AQ: (n_out, n_in/g, M); RTN: (n_out, n_in) */
    float               *codebooks; /* AQ: (M, 2^B, g); RTN: NULL */
    float               *scales;    /* AQ: (n_out); RTN: (n_out, n_in/g) */
    float               *zeros;     /* AQ: NULL; RTN: (n_out, n_in/g) */
    struct lmp_art_stats stats;
};

void lmp_art_layer_release(struct lmp_art_layer *l);
/* Number of elements of each array for l's codec and shape (0 when absent). */
int64_t lmp_art_layer_n_codes(const struct lmp_art_layer *l);
int64_t lmp_art_layer_n_codebooks(const struct lmp_art_layer *l);
int64_t lmp_art_layer_n_scales(const struct lmp_art_layer *l);

/* A tensor stored outside the compressed linears: fp32, fp16 or bf16 bits, or (the
 * embedding and lm head, 2-D only) Q8_0 / Q4_1 blocks of 32 along each row. Reading
 * allocates data; release frees it. */
struct lmp_art_tensor {
    char           name[LMP_NAME_MAX]; /* canonical name: "model.embed_tokens.weight" */
    enum lmp_dtype dtype;              /* LMP_DTYPE_F32, _F16, _BF16, or _Q8_0, _Q4_1 (n_dims 2) */
    int            n_dims;
    int64_t        shape[LMP_MAX_DIMS]; /* in weights, also for the blocks */
    void          *data; /* row-major, little-endian; the blocks as ggml lays them out */
};
void lmp_art_tensor_release(struct lmp_art_tensor *t);

enum lmp_art_tok {
    LMP_ART_TOK_GGUF,    /* a GGUF image holding only the tokenizer.* metadata */
    LMP_ART_TOK_LLAMA2C, /* the bytes of a llama2.c tokenizer.bin */
    LMP_ART_TOK_HF,      /* the bytes of a Hugging Face tokenizer.json */
};
const char *lmp_art_tok_name(enum lmp_art_tok k); /* "gguf", "llama2c", "hf" */

struct lmp_artifact;

/* --- writing ------------------------------------------------------------------ */

/* Open path for writing job: create it (and path.parts/) if neither exists, else
 * resume: committed layers and tensors are kept and listed by lmp_artifact_has_layer.
 * A leftover .tmp part is removed with a warning. RET LMP_OK; LMP_EMISMATCH if the
 * artifact was made by a job with another model fingerprint, calibration fingerprint,
 * method or scheme; LMP_EFORMAT (corrupt file or part), LMP_EUNSUP (newer format),
 * LMP_EIO (e.g. locked by another writer), LMP_ENOSPC. */
enum lmp_status lmp_artifact_open_write(const char *path, const struct lmp_art_job *job,
                                        struct lmp_artifact **out, struct lmp_err *err);

/* Commit one layer durably (part file + fsync + rename). Shapes are checked against
 * the job's linear of the same name. RET LMP_OK, LMP_EINVAL (unknown name, bad
 * shape, already committed), LMP_ENOSPC, LMP_EIO. */
enum lmp_status lmp_artifact_commit_layer(struct lmp_artifact *a, const struct lmp_art_layer *l,
                                          struct lmp_err *err);

/* Commit layers (n_layers) and unquantized tensors (n_tensors), all borrowed for the call,
 * as one part ART.h5.parts/block-<name>-<xxh64>.h5: after a failure or a kill, all of
 * them are committed or none is (a fine-tuned block: its layers and its tuned norms). Each
 * layer is checked as by lmp_artifact_commit_layer; a tensor committed earlier must have
 * identical bytes and is then left out of the part. name: the block's ("model.layers.3").
 * RET LMP_OK, LMP_EINVAL (a layer already committed, a bad shape, a name twice),
 * LMP_EMISMATCH (a tensor stored with other bytes), LMP_ENOSPC, LMP_EIO, LMP_ENOMEM. */
enum lmp_status lmp_artifact_commit_block(struct lmp_artifact *a, const char *name,
                                          const struct lmp_art_layer *layers, int64_t n_layers,
                                          const struct lmp_art_tensor *tensors, int64_t n_tensors,
                                          struct lmp_err *err);

/* Commit one unquantized tensor. Re-putting a committed tensor with identical bytes is
 * a no-op; different bytes give LMP_EMISMATCH. */
enum lmp_status lmp_artifact_put_tensor(struct lmp_artifact *a, const struct lmp_art_tensor *t,
                                        struct lmp_err *err);

/* Commit every tensor of m that the compressed model needs unquantized, under its
 * canonical name: model.embed_tokens.weight, model.norm.weight, lm_head.weight (unless
 * tied), model.layers.N.{input,post_attention}_layernorm.weight, every bias, and
 * <linear>.weight for each linear i with quantized[i] false (quantized NULL = all
 * linears are quantized). With finetune, the norms of the blocks that have a quantized
 * linear are left out: block fine-tuning stores them, tuned (a block whose linears are
 * all kept is not tuned). F32, F16 and BF16 sources are stored as they are; the ggml
 * quants are dequantized and stored as F16 (rounded to nearest even). The source's mapped file
 * pages are released after each tensor. Idempotent (see put_tensor). */
enum lmp_status lmp_artifact_put_model_tensors(struct lmp_artifact *a, const struct lmp_model *m,
                                               const bool *quantized, bool finetune,
                                               struct lmp_err *err);
/* lmp_artifact_put_model_tensors with the token embedding stored at embed_bits and an
 * untied lm head at head_bits: 16 (or any other value) = the source's precision as above,
 * 8 = Q8_0, 4 = Q4_1 (docs/artifact.md, "Quantized tensors"; a source already in that
 * type is copied as it is). RET as above, and LMP_EINVAL when the model's width is not a
 * multiple of 32 or a row cannot be quantized. */
enum lmp_status lmp_artifact_put_model_tensors_q(struct lmp_artifact *a, const struct lmp_model *m,
                                                 const bool *quantized, bool finetune,
                                                 int embed_bits, int head_bits,
                                                 struct lmp_err *err);

/* Commit the tokenizer source (bytes borrowed for the call). Once per artifact:
 * identical bytes again are a no-op, different ones LMP_EMISMATCH. */
enum lmp_status lmp_artifact_put_tokenizer(struct lmp_artifact *a, enum lmp_art_tok kind,
                                           const uint8_t *bytes, size_t n, struct lmp_err *err);

/* Assemble path from the main file and the parts (see the file comment), then remove
 * the parts. The artifact stays readable but accepts no more commits. RET LMP_OK,
 * LMP_ENOSPC (the old main file and all parts are intact), LMP_EIO, LMP_EFORMAT. */
enum lmp_status lmp_artifact_finalize(struct lmp_artifact *a, struct lmp_err *err);

/* --- events (artifact/events.h) -------------------------------------------- */

/* Record an event of the job (writer only): appended to ART.h5.parts/events.log at
 * once (write(2): a killed process loses nothing), fsync'ed at the next layer commit,
 * at finalize, or by an append a second after the last fsync. e->run is set to this
 * writer's run (1 for the run that created the artifact, +1 per reopen); time_ms 0 =
 * now. open_write records "open" or "resume", finalize records "finalize" and copies
 * every event into /events. RET LMP_OK, LMP_EINVAL (read-only or finalized),
 * LMP_EIO, LMP_ENOSPC. */
enum lmp_status lmp_artifact_add_event(struct lmp_artifact *a, const struct lmp_event *e,
                                       struct lmp_err *err);
/* Convenience: format and record an event (time now), for call sites that go on
 * whatever happens: a NULL, read-only or finalized artifact or a failed write is
 * logged at debug level and otherwise ignored. */
void lmp_artifact_note(struct lmp_artifact *a, enum lmp_log_level level, const char *kind,
                       const char *worker, const char *layer, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
/* fsync the events appended so far. */
enum lmp_status lmp_artifact_sync_events(struct lmp_artifact *a, struct lmp_err *err);
/* Append every event to out, oldest run first: the main file's /events, then the events
 * file of the parts directory (a running or crashed job), without duplicates. A torn
 * last record is dropped; a corrupt one skipped. RET LMP_OK, LMP_EFORMAT, LMP_ENOMEM. */
enum lmp_status lmp_artifact_read_events(struct lmp_artifact *a, struct lmp_event_list *out,
                                         struct lmp_err *err);

/* --- reading ------------------------------------------------------------------ */

/* Open path (and its parts, if any) for reading. A part is verified against its
 * checksum when it is read. RET LMP_OK, LMP_ENOENT, LMP_EFORMAT, LMP_EUNSUP, LMP_EIO. */
enum lmp_status lmp_artifact_open_read(const char *path, struct lmp_artifact **out,
                                       struct lmp_err *err);

/* Close (writer or reader). Safe on NULL; *a set to NULL. Leaves no HDF5 id open. */
void lmp_artifact_close(struct lmp_artifact **a);

const struct lmp_art_job *lmp_artifact_job(const struct lmp_artifact *a);

/* Committed layers, in the order of the job's linears. Names valid while a lives. */
int64_t     lmp_artifact_n_layers(const struct lmp_artifact *a);
const char *lmp_artifact_layer_name(const struct lmp_artifact *a, int64_t i);
bool        lmp_artifact_has_layer(const struct lmp_artifact *a, const char *name);
/* Committed unquantized tensors, sorted by name. */
int64_t     lmp_artifact_n_tensors(const struct lmp_artifact *a);
const char *lmp_artifact_tensor_name(const struct lmp_artifact *a, int64_t i);
bool        lmp_artifact_has_tokenizer(const struct lmp_artifact *a);
/* True when every linear of the job is either a committed layer or an unquantized
 * tensor "<linear>.weight". */
bool lmp_artifact_is_complete(const struct lmp_artifact *a);

/* Read a committed layer (arrays allocated; release with lmp_art_layer_release).
 * RET LMP_OK, LMP_ENOENT, LMP_EFORMAT, LMP_EIO, LMP_ENOMEM. */
enum lmp_status lmp_artifact_read_layer(struct lmp_artifact *a, const char *name,
                                        struct lmp_art_layer *out, struct lmp_err *err);
enum lmp_status lmp_artifact_read_tensor(struct lmp_artifact *a, const char *name,
                                         struct lmp_art_tensor *out, struct lmp_err *err);
/* The tokenizer source (*bytes malloc'ed, owned by the caller). */
enum lmp_status lmp_artifact_read_tokenizer(struct lmp_artifact *a, enum lmp_art_tok *kind,
                                            uint8_t **bytes, size_t *n, struct lmp_err *err);

/* What an artifact takes on disk against what it holds. */
struct lmp_art_size {
    int64_t file_bytes;      /* ART.h5 plus every committed part (an unfinished job) */
    int64_t linear_bytes;    /* data of the compressed layers (codes, codebooks, scales,
                                zeros) and of the kept linears' weights: no HDF5 metadata */
    int64_t tensor_bytes;    /* data of every unquantized tensor (kept linears included) */
    int64_t n_params;        /* the model's parameters: every linear of the job and every
                                stored tensor that is not a linear's weight (a tied head
                                counts once) */
    int64_t n_linear_params; /* every linear of the job (n_out n_in each) */
    int     embed_dtype;     /* how model.embed_tokens.weight is stored (enum lmp_dtype: F32,
                                F16, BF16, Q8_0, Q4_1), -1 if not stored yet */
    int head_dtype;          /* the same for lm_head.weight (-1: tied, or not stored yet) */
};
/* Sizes of a's files and data, and the model's parameter counts; bits per weight are
 * 8 file_bytes / n_params (the whole model) and 8 linear_bytes / n_linear_params.
 * RET LMP_OK, LMP_EFORMAT, LMP_EIO. */
enum lmp_status lmp_artifact_size(struct lmp_artifact *a, struct lmp_art_size *out,
                                  struct lmp_err *err);

/* For tests of the previous format: make this process write format version (1: AQ
 * codebooks and scales as fp32, format_version 1; LMP_ARTIFACT_WRITE_VERSION: the
 * default). Tensors are written in the dtype the caller gives. */
void lmp_artifact_set_write_version(int version);

/* HDF5 identifiers of any kind still open in this process (H5Fget_obj_count with
 * H5F_OBJ_ALL): 0 after every artifact is closed, or a handle leaked. For tests. */
int64_t lmp_artifact_n_open_ids(void);

#endif /* LMP_ARTIFACT_ARTIFACT_H */
