/*  test_jobopts - the job-options parser: JOB files, their errors, argv, override order,
 *  and the same JobSpec from a file and from the command line */
#include "cli/cli.h"
#include "cli/jobopts.h"
#include "tests/check.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static enum lmp_status load(struct lmp_jobopts *o, const char *path, const char *text,
                            struct lmp_err *err) {
    return lmp_jobopts_load_buffer(o, path, text, strlen(text), err);
}

static const char good[] = "# a comment line\n"
                           "model     = m/model.bin     # trailing comment\n"
                           "calib     = cal.txt\n"
                           "\n"
                           "   nsamples = 12\n"
                           "ctx=96\n"
                           "out       = /abs/out.h5\n"
                           "scheme    = 2x6g4\n"
                           "mode      = independent\n"
                           "method    = aqlm\n"
                           "keep      = *.down_proj\n"
                           "keep      = *.lm_head\n"
                           "finetune  = false\n"
                           "cg_iters  = 0\n"
                           "adam-steps = 50\n"
                           "lr        = 0.001\n"
                           "ft-epochs = 2\n"
                           "ft-max-steps = 30\n"
                           "ft_lr     = 0.0005\n"
                           "seed      = 5\n"
                           "threads   = 2\r\n";

static void test_good_file(void) {
    struct lmp_jobopts o;
    struct lmp_err     err = {0};
    lmp_jobopts_init(&o);
    CHECK(load(&o, "dir/job.txt", good, &err) == LMP_OK);
    CHECK(strcmp(o.model, "dir/m/model.bin") == 0); /* relative to the file's directory */
    CHECK(strcmp(o.calib, "dir/cal.txt") == 0);
    CHECK(strcmp(o.out, "/abs/out.h5") == 0); /* absolute stays */
    CHECK(o.nsamples == 12 && o.ctx == 96 && o.seed == 5 && o.threads == 2);
    CHECK(strcmp(o.scheme, "2x6g4") == 0);
    CHECK(o.mode == LMP_COMPRESS_INDEPENDENT && o.method == LMP_COMPRESS_AQLM);
    CHECK(o.n_keep == 2 && strcmp(o.keep[1], "*.lm_head") == 0);
    CHECK(!o.finetune && o.cg_iters == 0 && o.set[LMP_JOBOPT_CG_ITERS]);
    CHECK(o.adam_steps == 50 && o.lr == 0.001 && o.ft_epochs == 2 && o.ft_max_steps == 30);
    CHECK(!o.set[LMP_JOBOPT_BEAM]);
    CHECK(lmp_jobopts_check(&o, &err) == LMP_OK);

    struct lmp_compress_opts c;
    CHECK(lmp_jobopts_to_compress(&o, 7, &c, &err) == LMP_OK);
    CHECK(c.spec.sc.M == 2 && c.spec.sc.B == 6 && c.spec.sc.g == 4);
    CHECK(c.spec.aq.cg_iters == 0 && c.spec.aq.adam_steps == 50);
    CHECK(c.n_threads == 2 && c.n_keep == 2);
    CHECK(c.mode == LMP_COMPRESS_INDEPENDENT && c.n_seq == 12 && c.seed == 5);

    struct lmp_jobopts_pb pb;
    lmp_jobopts_to_jobspec(&o, &pb);
    CHECK(pb.spec.method->codebook_update_case == LMP__METHOD_SPEC__CODEBOOK_UPDATE_CG_ITERS);
    CHECK(pb.spec.method->cg_iters == 0 && pb.spec.method->adam_steps == 50);
    CHECK(pb.spec.finetune && pb.spec.finetune->epochs == 2 && pb.spec.finetune->max_steps == 30 &&
          pb.spec.finetune->lr == 0.0005f);
    CHECK(pb.spec.mode == LMP__MODE__MODE_INDEPENDENT && pb.spec.n_keep == 2);
    lmp_jobopts_release(&o);
}

/* each bad file gives "FILE:LINE: problem" naming the right line */
static void test_errors_name_the_line(void) {
    static const struct {
        const char *text, *want;
    } cases[] = {
        {"model = a\nbogus = 1\n", "j.txt:2: unknown key 'bogus'"},
        {"model = a\n# c\nmodel = b\n", "j.txt:3: duplicate key 'model'"},
        {"bits = nine\n", "j.txt:1: bits wants an integer in [1, 8], got 'nine'"},
        {"\n\nbits = 9\n", "j.txt:3: bits wants an integer in [1, 8], got '9'"},
        {"model = a\njust words\n", "j.txt:2: expected 'key = value'"},
        {"= x\n", "j.txt:1: a line with no key"},
        {"mode = parallel\n", "j.txt:1: mode must be sequential or independent, got 'parallel'"},
        {"method = gptq\n", "j.txt:1: method must be aqlm or rtn, got 'gptq'"},
        {"finetune = maybe\n", "j.txt:1: finetune wants true or false, got 'maybe'"},
        {"lr = 2\n", "j.txt:1: lr wants a number in [0, 1], got '2'"},
        {"ft-lr = -1e-4\n", "j.txt:1: ft-lr wants a number in [0, 1], got '-1e-4'"},
        {"seed =\n", "j.txt:1: seed wants a value"},
        {"ctx = 12abc\n", "j.txt:1: ctx wants an integer in [2, 1048576], got '12abc'"},
        {"scheme = 2x8\n", "j.txt:1: "},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct lmp_jobopts o;
        struct lmp_err     err = {0};
        lmp_jobopts_init(&o);
        CHECK(load(&o, "j.txt", cases[i].text, &err) == LMP_EINVAL);
        if (strncmp(err.msg, cases[i].want, strlen(cases[i].want)) != 0)
            fprintf(stderr, "case %zu: got '%s', want '%s'\n", i, err.msg, cases[i].want);
        CHECK(strncmp(err.msg, cases[i].want, strlen(cases[i].want)) == 0);
        CHECK(strchr(err.msg, '\n') == NULL);
        lmp_jobopts_release(&o);
    }
    /* a NUL byte inside a line */
    struct lmp_jobopts o;
    struct lmp_err     err = {0};
    lmp_jobopts_init(&o);
    CHECK(lmp_jobopts_load_buffer(&o, "j.txt", "seed = 1\nse\0ed = 2\n", 20, &err) == LMP_EINVAL);
    CHECK(strncmp(err.msg, "j.txt:2: ", 9) == 0);
    lmp_jobopts_release(&o);
}

/* the JOB file written to disk; returns its path (static buffer) */
static const char *write_job(const char *text) {
    static char path[64];
    snprintf(path, sizeof(path), "/tmp/test_jobopts_%d.job", (int)getpid());
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f) {
        fputs(text, f);
        fclose(f);
    }
    return path;
}

static int parse(struct lmp_jobopts *o, int argc, char **argv) {
    struct lmp_jobopts_cmd pc  = {.job_arg = true};
    struct lmp_err         err = {0};
    optind                     = 1;
    return lmp_jobopts_parse_argv(o, argc, argv, &pc, &err);
}

/* command-line options override the file, wherever they stand; --keep replaces the list */
static void test_command_line_overrides_file(void) {
    const char *job = write_job("model = /m.bin\ncalib = /c.txt\nout = /o.h5\nseed = 5\n"
                                "keep = *.a\nkeep = *.b\nthreads = 2\n");
    char *argv[] = {"compress", "--seed", "9", (char *)job, "--keep", "*.c", "--beam", "4", NULL};
    struct lmp_jobopts o;
    lmp_jobopts_init(&o);
    CHECK(parse(&o, 8, argv) == LMP_EXIT_OK);
    CHECK(o.seed == 9 && o.beam == 4 && o.threads == 2);
    CHECK(o.n_keep == 1 && strcmp(o.keep[0], "*.c") == 0);
    CHECK(strcmp(o.model, "/m.bin") == 0 && o.job_path != NULL);
    lmp_jobopts_release(&o);

    /* a bad file through argv: usage error; a missing file: input error */
    job           = write_job("model = /m.bin\nthreads = 0\n");
    char *argv2[] = {"compress", (char *)job, NULL};
    lmp_jobopts_init(&o);
    CHECK(parse(&o, 2, argv2) == LMP_EXIT_USAGE);
    lmp_jobopts_release(&o);
    char *argv3[] = {"compress", "/nonexistent/job.txt", NULL};
    lmp_jobopts_init(&o);
    CHECK(parse(&o, 2, argv3) == LMP_EXIT_INPUT);
    lmp_jobopts_release(&o);
    char                  *argv4[] = {"compress", "--help", NULL};
    struct lmp_jobopts_cmd pc      = {.job_arg = true};
    struct lmp_err         err     = {0};
    lmp_jobopts_init(&o);
    optind = 1;
    CHECK(lmp_jobopts_parse_argv(&o, 2, argv4, &pc, &err) == LMP_EXIT_OK && pc.help);
    lmp_jobopts_release(&o);
    unlink(job);
}

/* a JOB file and the equivalent command line pack to the same JobSpec bytes */
static void test_file_and_argv_same_jobspec(void) {
    const char *job  = write_job("model = /m/model.bin\ntokenizer = /m/tok.bin\ncalib = /c.txt\n"
                                  "nsamples = 12\nctx = 96\nout = /o.h5\nscheme = 2x6g4\n"
                                  "mode = independent\nkeep = *.down_proj\nseed = 5\nthreads = 2\n"
                                  "max-rounds = 4\nadam-steps = 50\ncg-iters = 8\ntol = 0.02\n"
                                  "lr = 0.0005\nbeam = 4\nname = s\nmax-attempts = 2\n");
    char       *a1[] = {"submit", (char *)job, NULL};
    char       *a2[] = {"submit",
                        "--model",
                        "/m/model.bin",
                        "--tokenizer",
                        "/m/tok.bin",
                        "--calib",
                        "/c.txt",
                        "--nsamples",
                        "12",
                        "--ctx",
                        "96",
                        "--out",
                        "/o.h5",
                        "--scheme",
                        "2x6g4",
                        "--mode",
                        "independent",
                        "--keep",
                        "*.down_proj",
                        "--seed",
                        "5",
                        "--threads",
                        "2",
                        "--max-rounds",
                        "4",
                        "--adam-steps",
                        "50",
                        "--cg-iters",
                        "8",
                        "--tol",
                        "0.02",
                        "--lr",
                        "0.0005",
                        "--beam",
                        "4",
                        "--name",
                        "s",
                        "--max-attempts",
                        "2",
                        NULL};
    struct lmp_jobopts o1, o2;
    lmp_jobopts_init(&o1);
    lmp_jobopts_init(&o2);
    CHECK(parse(&o1, 2, a1) == LMP_EXIT_OK);
    CHECK(parse(&o2, (int)(sizeof(a2) / sizeof(a2[0])) - 1, a2) == LMP_EXIT_OK);
    struct lmp_jobopts_pb p1, p2;
    lmp_jobopts_to_jobspec(&o1, &p1);
    lmp_jobopts_to_jobspec(&o2, &p2);
    size_t n1   = lmp__job_spec__get_packed_size(&p1.spec),
           n2   = lmp__job_spec__get_packed_size(&p2.spec);
    uint8_t *b1 = malloc(n1 + 1), *b2 = malloc(n2 + 1);
    lmp__job_spec__pack(&p1.spec, b1);
    lmp__job_spec__pack(&p2.spec, b2);
    CHECK(n1 == n2 && memcmp(b1, b2, n1) == 0);
    CHECK(p1.spec.method->cg_iters == 8 && p1.spec.method->beam == 4 && p1.spec.max_attempts == 2);
    free(b1);
    free(b2);
    lmp_jobopts_release(&o1);
    lmp_jobopts_release(&o2);
    unlink(job);
}

/* issue 10, "Also": the bytes of a binary JOB file were echoed raw to the terminal. Every
 * message that quotes the file (its name, a key, a value) escapes what is not printable. */
static void test_errors_escape_binary_bytes(void) {
    static const struct {
        const char *path, *text, *want;
    } cases[] = {
        {"j.txt", "\x1b[2J\x01\x02 = 1\n", "j.txt:1: unknown key '\\x1B[2J\\x01\\x02'"},
        {"j.txt", "bits = \x7f\xff\n",
         "j.txt:1: bits wants an integer in [1, 8], got '\\x7F\\xFF'"},
        {"j.txt", "scheme = 2x\x1b\n", "j.txt:1: invalid AQ scheme '2x\\x1B'"},
        {"j.txt", "mode = \r\x1b]0;pwned\x07\n",
         "j.txt:1: mode must be sequential or independent, got '\\x1B]0;pwned\\x07'"},
        {"a\nb\x1b.txt", "bogus = 1\n", "a\\nb\\x1B.txt:1: unknown key 'bogus'"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct lmp_jobopts o;
        struct lmp_err     err = {0};
        lmp_jobopts_init(&o);
        CHECK(load(&o, cases[i].path, cases[i].text, &err) == LMP_EINVAL);
        if (strncmp(err.msg, cases[i].want, strlen(cases[i].want)) != 0)
            fprintf(stderr, "  case %zu: got \"%s\"\n", i, err.msg);
        CHECK(strncmp(err.msg, cases[i].want, strlen(cases[i].want)) == 0);
        for (const char *c = err.msg; *c; c++) CHECK((unsigned char)*c >= 0x20 && *c != 0x7f);
        lmp_jobopts_release(&o);
    }
}

static void test_check_requires_model_out_calib(void) {
    struct lmp_jobopts o;
    struct lmp_err     err = {0};
    lmp_jobopts_init(&o);
    CHECK(load(&o, "j", "model = /m\n", &err) == LMP_OK);
    CHECK(lmp_jobopts_check(&o, &err) == LMP_EINVAL);
    CHECK(load(&o, "j", "out = /o\n", &err) == LMP_OK);
    err = (struct lmp_err){0};
    CHECK(lmp_jobopts_check(&o, &err) == LMP_EINVAL); /* aqlm needs --calib */
    CHECK(strstr(err.msg, "--calib") != NULL);
    CHECK(load(&o, "j", "method = rtn\n", &err) == LMP_OK);
    CHECK(lmp_jobopts_check(&o, &err) == LMP_OK);
    lmp_jobopts_release(&o);
}

/* Without --mode, what lmpress compress reports and the JobSpec its coordinator plans from
 * (and submit sends) are both sequential. */
static void test_default_mode_is_sequential_everywhere(void) {
    struct lmp_jobopts o;
    struct lmp_err     err = {0};
    lmp_jobopts_init(&o);
    CHECK(load(&o, "j", "model = /m\ncalib = /c\nout = /o\n", &err) == LMP_OK);
    struct lmp_compress_opts c;
    CHECK(lmp_jobopts_to_compress(&o, 1, &c, &err) == LMP_OK);
    CHECK(c.mode == LMP_COMPRESS_SEQUENTIAL);
    struct lmp_jobopts_pb pb;
    lmp_jobopts_to_jobspec(&o, &pb);
    CHECK(pb.spec.mode == LMP__MODE__MODE_SEQUENTIAL);
    lmp_jobopts_release(&o);
}

int main(void) {
    RUN(test_good_file);
    RUN(test_default_mode_is_sequential_everywhere);
    RUN(test_errors_name_the_line);
    RUN(test_errors_escape_binary_bytes);
    RUN(test_command_line_overrides_file);
    RUN(test_file_and_argv_same_jobspec);
    RUN(test_check_requires_model_out_calib);
    return check_report();
}
