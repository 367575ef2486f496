/*  jobopts - the options of a compression job, from the command line and from a JOB file
 *
 *  `lmpress compress`, `lmpress submit` and `lmpress run` take the same job options
 *  (--model, --calib, --scheme, ...). They are declared once, in the table of jobopts.c,
 *  and parsed into one struct lmp_jobopts, from which both the local driver's
 *  struct lmp_compress_opts and the wire's Lmp__JobSpec are built, so the two paths
 *  cannot drift apart.
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
#include "coordinator/compress.h"       /* defines: struct lmp_compress_opts */
#include "proto/lmpress.pb-c.h"         /* defines: Lmp__JobSpec */
#include "base/status.h"               /* defines: enum lmp_status, struct lmp_err */

enum { LMP_JOBOPTS_MAX_KEEP = 64 };

/* Every job option; the order of the table in jobopts.c. */
enum lmp_jobopt {
    LMP_JOBOPT_MODEL, LMP_JOBOPT_TOKENIZER, LMP_JOBOPT_CALIB, LMP_JOBOPT_NSAMPLES,
    LMP_JOBOPT_CTX, LMP_JOBOPT_OUT, LMP_JOBOPT_SCHEME, LMP_JOBOPT_MODE, LMP_JOBOPT_METHOD,
    LMP_JOBOPT_BITS, LMP_JOBOPT_GROUP, LMP_JOBOPT_KEEP, LMP_JOBOPT_FINETUNE,
    LMP_JOBOPT_FT_EPOCHS, LMP_JOBOPT_FT_MAX_STEPS, LMP_JOBOPT_BEAM, LMP_JOBOPT_MAX_ROUNDS,
    LMP_JOBOPT_TOL, LMP_JOBOPT_CG_ITERS, LMP_JOBOPT_ADAM_STEPS, LMP_JOBOPT_LR,
    LMP_JOBOPT_SEED, LMP_JOBOPT_THREADS, LMP_JOBOPT_NAME, LMP_JOBOPT_MAX_ATTEMPTS,
    LMP_JOBOPT_WORKERS, LMP_JOBOPT_STATE, LMP_JOBOPT_ROW_SHARDS, LMP_JOBOPT_FT_LR,
    LMP_JOBOPT_COUNT
};

struct lmp_jobopts {
    bool  set[LMP_JOBOPT_COUNT];    /* given (on the line or in the file) */
    /* strings: owned (NULL = not given); paths from a file are resolved against its dir */
    char *model, *tokenizer, *calib, *out, *scheme, *name, *state;
    char *keep[LMP_JOBOPTS_MAX_KEEP];
    int   n_keep;
    enum lmp_compress_mode   mode;      /* default independent for the cluster, see check */
    enum lmp_compress_method method;    /* default aqlm */
    long long nsamples, ctx, bits, group, seed, threads, beam, max_rounds, cg_iters,
              adam_steps, ft_epochs, ft_max_steps, max_attempts, workers, row_shards;
    double    tol, lr, ft_lr;
    bool      finetune;
    char     *job_path;                 /* the JOB file read, or NULL */
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
enum lmp_status lmp_jobopts_load_file(struct lmp_jobopts *o, const char *path,
                                      struct lmp_err *err);
/* The same from a buffer (fuzzing, tests); path only names it in messages and gives the
 * base directory. */
enum lmp_status lmp_jobopts_load_buffer(struct lmp_jobopts *o, const char *path,
                                        const char *text, size_t len, struct lmp_err *err);

/* Command-specific options that ride along with the job options. */
struct lmp_jobopts_cmd {
    const struct option *extra;     /* { name, has_arg, NULL, val >= 256 }, { 0 }-terminated */
    /* called for each extra option; false = bad value (it printed why) */
    bool (*on_extra)(void *ctx, int val, const char *arg);
    void *ctx;
    bool  job_arg;                  /* a positional JOB file is allowed */
    bool  json;                     /* out: --json given */
    bool  help;                     /* out: --help / -h given */
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

/* The local driver's options (everything but the calibration data, ctx resolution and the
 * tokenizer, which need the model). n_threads: --threads, else default_threads. */
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
#define LMP_JOBOPTS_USAGE \
    "--model PATH [--tokenizer PATH] --calib FILE|generate [--nsamples N] [--ctx L]\n" \
    "    --out ART.h5 [--scheme MxBgG] [--mode sequential|independent] [--method aqlm|rtn]\n" \
    "    [--bits N] [--group G] [--keep PATTERN]... [--finetune] [--ft-epochs E]\n" \
    "    [--ft-max-steps S] [--ft-lr LR] [--beam B] [--max-rounds R] [--tol T] [--cg-iters N]\n" \
    "    [--adam-steps S] [--lr LR] [--seed S] [--threads T] [--name NAME]\n" \
    "    [--max-attempts N] [--workers N] [--state DIR] [--json]"

#endif /* LMP_CLI_JOBOPTS_H */
