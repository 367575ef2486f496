/*  jobopts - the options of a compression job, from the command line and from a JOB file
 *
 *  `lmpress compress`, `lmpress submit` and `lmpress run` take the same job options
 *  (--model, --calib, --scheme, ...). They are declared once, in the table of jobopts.c,
 *  and parsed into one struct lmp_jobopts, from which the wire's Lmp__JobSpec (what the
 *  coordinator plans every job from, also `lmpress compress`'s embedded one) and the few
 *  facts `lmpress compress` reports itself (struct lmp_compress_opts) are built, with
 *  the same defaults (mode sequential).
 *
 *  A JOB file (docs/cli.md, "JOB files") holds the same options as text, one
 *  `key = value` per line, keys being the long option names without the dashes:
 *
 *      # stories260K, 2 bits
 *      model     = models/stories260K.bin      # relative to this file's directory
 *      calib     = cal.txt
 *      scheme    = 2x6g4
 *      keep      = *.down_proj                 # repeatable
 *      finetune  = false
 *
 *  Errors in a file are one line, "JOBFILE:LINE: problem". Options given on the command
 *  line override the file's (wherever they stand on the line); a --keep on the command
 *  line replaces the file's keep list.
 *
 *  Calling sequence:
 *      struct lmp_jobopts jo; lmp_jobopts_init(&jo);
 *      rc = lmp_jobopts_parse_argv(&jo, argc, argv, &cmd, &err);   // reads the JOB too
 *      st = lmp_jobopts_check(&jo, &err);
 *      st = lmp_jobopts_to_compress(&jo, &copts, &err);  or  lmp_jobopts_to_jobspec(&jo, &pb);
 *      lmp_jobopts_release(&jo);
 *  Strings in the outputs are borrowed from jo: release jo last.
 */
#ifndef LMP_CLI_JOBOPTS_H
#define LMP_CLI_JOBOPTS_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "worker/compress.h"    /* defines: struct lmp_compress_spec */
#include "proto/lmpress.pb-c.h" /* defines: Lmp__JobSpec */
#include "base/status.h"        /* defines: enum lmp_status, struct lmp_err */
#include "coordinator/tune.h"   /* defines: struct lmp_tune_job */

enum { LMP_JOBOPTS_MAX_KEEP = 64 };

enum lmp_compress_mode { LMP_COMPRESS_SEQUENTIAL, LMP_COMPRESS_INDEPENDENT };

/* Every job option; the order of the table in jobopts.c. */
enum lmp_jobopt {
    LMP_JOBOPT_MODEL,
    LMP_JOBOPT_TOKENIZER,
    LMP_JOBOPT_CALIB,
    LMP_JOBOPT_NSAMPLES,
    LMP_JOBOPT_CTX,
    LMP_JOBOPT_OUT,
    LMP_JOBOPT_SCHEME,
    LMP_JOBOPT_MODE,
    LMP_JOBOPT_METHOD,
    LMP_JOBOPT_BITS,
    LMP_JOBOPT_GROUP,
    LMP_JOBOPT_KEEP,
    LMP_JOBOPT_FINETUNE,
    LMP_JOBOPT_FT_EPOCHS,
    LMP_JOBOPT_FT_MAX_STEPS,
    LMP_JOBOPT_BEAM,
    LMP_JOBOPT_MAX_ROUNDS,
    LMP_JOBOPT_TOL,
    LMP_JOBOPT_CG_ITERS,
    LMP_JOBOPT_ADAM_STEPS,
    LMP_JOBOPT_LR,
    LMP_JOBOPT_SEED,
    LMP_JOBOPT_THREADS,
    LMP_JOBOPT_NAME,
    LMP_JOBOPT_MAX_ATTEMPTS,
    LMP_JOBOPT_WORKERS,
    LMP_JOBOPT_STATE,
    LMP_JOBOPT_ROW_SHARDS,
    LMP_JOBOPT_FT_LR,
    LMP_JOBOPT_PV,
    LMP_JOBOPT_PV_DATA,
    LMP_JOBOPT_PV_STEPS,
    LMP_JOBOPT_PV_BATCH,
    LMP_JOBOPT_PV_MICRO,
    LMP_JOBOPT_PV_LR,
    LMP_JOBOPT_PV_CODE_LR,
    LMP_JOBOPT_PV_CODE_FRAC,
    LMP_JOBOPT_PV_V_EVERY,
    LMP_JOBOPT_PV_BLOCKS,
    LMP_JOBOPT_PV_TRUST_RATIO,
    LMP_JOBOPT_PV_STAGES,
    LMP_JOBOPT_PV_LAMB,
    LMP_JOBOPT_EMBED_BITS,
    LMP_JOBOPT_HEAD_BITS,
    LMP_JOBOPT_COUNT
};

struct lmp_jobopts {
    bool set[LMP_JOBOPT_COUNT]; /* given (on the line or in the file) */
    /* strings: owned (NULL = not given); paths from a file are resolved against its dir */
    char                    *model, *tokenizer, *calib, *out, *scheme, *name, *state;
    char                    *keep[LMP_JOBOPTS_MAX_KEEP];
    int                      n_keep;
    enum lmp_compress_mode   mode;   /* default sequential */
    enum lmp_compress_method method; /* default aqlm */
    long long nsamples, ctx, bits, group, seed, threads, beam, max_rounds, cg_iters, adam_steps,
        ft_epochs, ft_max_steps, max_attempts, workers, row_shards;
    double tol, lr, ft_lr;
    bool   finetune;
    /* PV-Tuning after quantization (compress --pv; coordinator/tune.h) */
    bool      pv, pv_lamb;
    char     *pv_data;
    long long pv_steps, pv_batch, pv_micro, pv_v_every, pv_blocks, pv_stages;
    double    pv_lr, pv_code_lr, pv_code_frac, pv_trust_ratio;
    long long embed_bits, head_bits; /* 16, 8 or 4 (docs/artifact.md, "Quantized tensors") */
    char     *job_path;              /* the JOB file read, or NULL */
};

void lmp_jobopts_init(struct lmp_jobopts *o);
void lmp_jobopts_release(struct lmp_jobopts *o);

/* The key of an option ("cg-iters"); NULL out of range. */
const char *lmp_jobopt_key(enum lmp_jobopt id);

/* Set option key (a long name: "cg-iters"; "cg_iters" is accepted too) from its text.
 * base_dir (may be NULL) resolves a relative path value. A repeated non-repeatable key is
 * an error only when forbid_dup. On error *problem (of size n) says what is wrong, worded
 * to follow "FILE:LINE: " or "lmpress: ": "unknown key 'x'", "bits wants an integer in
 * [1, 8], got 'nine'". RET LMP_OK, LMP_EINVAL or LMP_ENOMEM. */
enum lmp_status lmp_jobopts_set(struct lmp_jobopts *o, const char *key, const char *value,
                                const char *base_dir, bool forbid_dup, char *problem, size_t n);

/* Read a JOB file into o (see the file comment). RET LMP_OK; LMP_ENOENT / LMP_EIO (cannot
 * read it), LMP_EINVAL (err->msg = "FILE:LINE: problem"), LMP_ENOMEM. */
enum lmp_status lmp_jobopts_load_file(struct lmp_jobopts *o, const char *path, struct lmp_err *err);
/* The same from a buffer (fuzzing, tests); path only names it in messages and gives the
 * base directory. */
enum lmp_status lmp_jobopts_load_buffer(struct lmp_jobopts *o, const char *path, const char *text,
                                        size_t len, struct lmp_err *err);

/* Command-specific options that ride along with the job options. */
struct lmp_jobopts_cmd {
    const struct option *extra; /* { name, has_arg, NULL, val >= 256 }, { 0 }-terminated */
    /* called for each extra option; false = bad value (it printed why) */
    bool (*on_extra)(void *ctx, int val, const char *arg);
    void *ctx;
    bool  job_arg; /* a positional JOB file is allowed */
    bool  json;    /* out: --json given */
    bool  help;    /* out: --help / -h given */
};

/* Parse argv (argv[0] = the subcommand) with getopt_long: the job options, --json, --help,
 * and cmd->extra. A positional JOB file (when cmd->job_arg) is loaded first, then the
 * command-line options override it. Prints one-line messages itself.
 * RET LMP_EXIT_OK, LMP_EXIT_USAGE (bad option or value, bad JOB file), LMP_EXIT_INPUT
 * (the JOB file cannot be read). With --help, LMP_EXIT_OK and cmd->help set. */
int lmp_jobopts_parse_argv(struct lmp_jobopts *o, int argc, char **argv,
                           struct lmp_jobopts_cmd *cmd, struct lmp_err *err);

/* Cross-option checks: --model and --out given, --calib for AQLM, a scheme that parses.
 * RET LMP_OK or LMP_EINVAL (err->msg without "lmpress: "). */
enum lmp_status lmp_jobopts_check(const struct lmp_jobopts *o, struct lmp_err *err);

/* What `lmpress compress` reports of its job (the job itself runs from the JobSpec): the
 * method spec as the coordinator parses it, the keep list (borrowed from o), the mode and
 * the resolved defaults. ctx 0 = not given (the model decides). */
struct lmp_compress_opts {
    const char              *out_path; /* ART.h5 */
    enum lmp_compress_mode   mode;
    struct lmp_compress_spec spec;
    const char *const       *keep; /* (n_keep) glob patterns of linears to keep */
    int                      n_keep;
    bool                     finetune;
    uint64_t                 seed;
    int                      n_threads;
    int64_t                  n_seq, ctx;
};

/* c from o; n_threads: --threads, else default_threads. RET LMP_OK or LMP_EINVAL (a scheme
 * that does not parse). */
enum lmp_status lmp_jobopts_to_compress(const struct lmp_jobopts *o, int default_threads,
                                        struct lmp_compress_opts *c, struct lmp_err *err);

/* The wire form. The nested messages live in *pb; strings are borrowed from o. */
struct lmp_jobopts_pb {
    Lmp__JobSpec      spec;
    Lmp__CalibSpec    calib;
    Lmp__MethodSpec   method;
    Lmp__FinetuneSpec finetune;
};
void lmp_jobopts_to_jobspec(const struct lmp_jobopts *o, struct lmp_jobopts_pb *pb);

/* Usage text of the job options, for the commands' usage strings. */
#define LMP_JOBOPTS_USAGE                                                                          \
    "--model PATH [--tokenizer PATH] --calib FILE|generate [--nsamples N] [--ctx L]\n"             \
    "    --out ART.h5 [--scheme MxBgG] [--mode sequential|independent] [--method aqlm|rtn]\n"      \
    "    [--bits N] [--group G] [--keep PATTERN]... [--finetune] [--ft-epochs E]\n"                \
    "    [--ft-max-steps S] [--ft-lr LR] [--beam B] [--max-rounds R] [--tol T] [--cg-iters N]\n"   \
    "    [--adam-steps S] [--lr LR] [--seed S] [--threads T] [--name NAME]\n"                      \
    "    [--max-attempts N] [--workers N] [--state DIR] [--row-shards N] [--pv]\n"                 \
    "    [--pv-data FILE|generate] [--pv-steps N] [--pv-batch B] [--pv-micro M] [--pv-lr LR]\n"    \
    "    [--pv-code-lr LR] [--pv-code-frac F] [--pv-v-every N] [--pv-blocks K]\n"                  \
    "    [--pv-trust-ratio X] [--pv-lamb] [--pv-stages S] [--embed-bits 16|8|4]\n"                 \
    "    [--head-bits 16|8|4]\n"                                                                   \
    "    [--json]"

/* Each job option with its default and meaning, for --help (and `lmpress help CMD`) of
 * compress, submit and run. tests/integration/cli_help.sh checks that every option of the
 * table in jobopts.c appears here. */
#define LMP_JOBOPTS_HELP                                                                           \
    "the scheme MxBgG: M codebooks of B bits each over groups of G consecutive input weights\n"    \
    "  of a row; each group is stored as M codes of B bits, so about M*B/G bits per weight\n"      \
    "  plus the codebooks and one scale per row. 2x8g8 = 2 codebooks x 8 bits per group of 8\n"    \
    "  weights = 2 bits per weight; 2x8g4 = 4 bits, 1x16g8 = 2 bits. G must divide the input\n"    \
    "  width of every layer that is not kept (--keep).\n"                                          \
    "\n"                                                                                           \
    "job options (in a JOB file: one 'key = value' per line, keys without the dashes):\n"          \
    "  --model PATH          checkpoint: a .gguf file, a Hugging Face directory or a llama2.c\n"   \
    "                        .bin (required)\n"                                                    \
    "  --tokenizer PATH      tokenizer (default: the checkpoint's own; tokenizer.bin beside a\n"   \
    "                        llama2.c file)\n"                                                     \
    "  --calib FILE|generate calibration: windows of a text file, or sequences the model\n"        \
    "                        writes itself (required for aqlm; rtn needs none)\n"                  \
    "  --nsamples N          calibration windows (default 128); N x L tokens at most what the\n"   \
    "                        text has, and tokens + activations (2 x N x L x dim floats) at\n"     \
    "                        most half this machine's memory (LMP_MEM_BUDGET overrides)\n"         \
    "  --ctx L               tokens per window (default the model's context, at most 512)\n"       \
    "  --out ART.h5          the artifact (required); an existing one of the same job resumes\n"   \
    "  --scheme MxBgG        AQLM scheme, see above (default 2x8g8)\n"                             \
    "  --mode sequential|independent\n"                                                            \
    "                        sequential: each block is calibrated on the outputs of the\n"         \
    "                        blocks already quantized (AQLM's protocol); independent: every\n"     \
    "                        block on the original model's (default sequential)\n"                 \
    "  --method aqlm|rtn     AQLM codebooks, or round-to-nearest baseline (default aqlm)\n"        \
    "  --bits N              rtn: bits per weight, 1..8 (default 4)\n"                             \
    "  --group G             rtn: weights per scale/zero group (default 128)\n"                    \
    "  --keep PATTERN        leave the linears whose name matches this glob unquantized (16\n"     \
    "                        bits), e.g. '*.down_proj'; repeatable; each must match a layer\n"     \
    "                        (default none)\n"                                                     \
    "  --finetune            block fine-tuning after each block: codes frozen, codebooks,\n"       \
    "                        scales and norms trained on the block's output (default off)\n"       \
    "  --ft-epochs E         fine-tuning passes over the calibration windows (default 4)\n"        \
    "  --ft-max-steps S      fine-tuning Adam steps per block at most (default no limit)\n"        \
    "  --ft-lr LR            fine-tuning Adam learning rate (default 1e-4)\n"                      \
    "  --beam B              beam width of the code search (default 8)\n"                          \
    "  --max-rounds R        AQLM rounds (code search + codebook update) at most (default 20)\n"   \
    "  --tol T               stop when a round improves the error by less than T (default\n"       \
    "                        0.01)\n"                                                              \
    "  --cg-iters N          conjugate-gradient iterations of the codebook update (default 16;\n"  \
    "                        0: --adam-steps Adam steps instead)\n"                                \
    "  --adam-steps S        Adam steps per round when --cg-iters is 0 (default 100)\n"            \
    "  --lr LR               that Adam's learning rate (default 1e-4)\n"                           \
    "  --seed S              the job's seed: calibration windows, k-means, fine-tuning order\n"    \
    "                        (default 0)\n"                                                        \
    "  --threads T           threads in all (default: every core; split between --workers)\n"      \
    "  --name NAME           the job's name in status and logs (default none)\n"                   \
    "  --max-attempts N      failures of one task before the job fails (default 3)\n"              \
    "  --workers N           compress: local worker threads (default 1)\n"                         \
    "  --state DIR           run: where the coordinator keeps the job to resume it (default\n"     \
    "                        ART.h5.state); compress and submit ignore it\n"                       \
    "  --row-shards N        quantize a layer as up to N row shards over idle workers, 1..64\n"    \
    "                        (default: whole layers in independent mode, every idle worker\n"      \
    "                        in sequential mode)\n"                                                \
    "  --pv                  compress: PV-Tuning after quantization (lmpress tune): the\n"         \
    "                        quantized artifact goes to ART.aqlm.h5, the tuned one to --out\n"     \
    "                        (default off; submit and run refuse it)\n"                            \
    "  --pv-data FILE|generate  tuning text (default the --calib file, or generate with\n"         \
    "                        --calib generate: windows the original model writes); never\n"        \
    "                        the evaluation text\n"                                                \
    "  --pv-steps N          PV-Tuning steps (default 100)\n"                                      \
    "  --pv-batch B          windows per step (default 8)\n"                                       \
    "  --pv-micro M          windows per forward/backward (default 1)\n"                           \
    "  --pv-lr LR            P step learning rate (default 1e-4)\n"                                \
    "  --pv-code-lr LR       V step learning rate of the straight-through buffers (default\n"      \
    "                        by the scheme: 3e-3 at 2 code bits per weight, 5e-4 at 4)\n"          \
    "  --pv-code-frac F      V step: fraction of each layer's groups re-encoded (default 0.01)\n"  \
    "  --pv-v-every N        a V step every N steps; 0: P steps only (default 1)\n"                \
    "  --pv-blocks K         tune only the K blocks a gradient probe ranks highest (default\n"     \
    "                        every block)\n"                                                       \
    "  --pv-trust-ratio X    V step weight change cap per layer and step (default 0: none)\n"      \
    "  --pv-lamb             P step by LAMB (--pv-lr a fraction of each tensor's norm)\n"          \
    "  --pv-stages S         under mpirun (lmpress run): the worker ranks tune as chains of S\n"   \
    "                        pipeline stages (default 1: data-parallel replicas)\n"                \
    "  --embed-bits 16|8|4   the token embedding (and a tied lm head): 16 = the source's\n"        \
    "                        precision (fp16 for a quantized GGUF), 8 = int8 and 4 = 4-bit\n"      \
    "                        with min, an fp16 scale per 32 weights of a row (8.5 and 5 bits\n"    \
    "                        per weight; default 16)\n"                                            \
    "  --head-bits 16|8|4    an untied lm head, the same (default: as --embed-bits)\n"             \
    "  --json                print the result as one JSON object\n"                                \
    "  -h, --help            this help\n"

/* --pv: the quantized artifact goes beside --out ("OUT.aqlm.h5" for "OUT.h5"), the tuned one
 * to --out. When jo->pv and jo->out are set: jo->out becomes the quantized path (owned by jo)
 * and *final_out the tuned one (the caller frees it); else *final_out is NULL. RET LMP_OK or
 * LMP_ENOMEM. */
enum lmp_status lmp_jobopts_pv_split(struct lmp_jobopts *jo, char **final_out);

/* The PV-Tuning job of jo's --pv options (strings borrowed from jo, artifact and out): the
 * quantized artifact into out, ctx tokens per window; data order seeded by --seed + 1. */
void lmp_jobopts_tune_job(const struct lmp_jobopts *jo, const char *artifact, const char *out,
                          long long ctx, int n_threads, struct lmp_tune_job *tj);

#endif /* LMP_CLI_JOBOPTS_H */
