/*  jobopts - see jobopts.h */
#include "cli/jobopts.h"
#include "cli/cli.h"   /* defines: LMP_EXIT_* */
#include "base/file.h" /* defines: lmp_file_read_all */
#include "base/text.h" /* defines: lmp_str_escape */
#include "worker/aq.h" /* defines: lmp_aq_scheme_parse */

#include <assert.h>
#include <errno.h>
#include <float.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum kind {
    K_STR,    /* free text */
    K_PATH,   /* a path: resolved against the JOB file's directory */
    K_CALIB,  /* a path or "generate" */
    K_KEEP,   /* a glob pattern, repeatable */
    K_INT,    /* long long in [lo, hi] */
    K_F64,    /* double in [flo, fhi] */
    K_BOOL,   /* true/false; a flag on the command line */
    K_MODE,   /* sequential | independent */
    K_METHOD, /* aqlm | rtn */
    K_SCHEME, /* MxBgG */
};

struct def {
    const char *key;
    enum kind   kind;
    size_t      off; /* of the value in struct lmp_jobopts */
    long long   lo, hi;
    double      flo, fhi;
};

#define S(f) offsetof(struct lmp_jobopts, f)
/* One row per option, in enum lmp_jobopt order; the ranges are the documented ones. */
static const struct def defs[LMP_JOBOPT_COUNT] = {
    [LMP_JOBOPT_MODEL]          = {"model", K_PATH, S(model), 0, 0, 0, 0},
    [LMP_JOBOPT_TOKENIZER]      = {"tokenizer", K_PATH, S(tokenizer), 0, 0, 0, 0},
    [LMP_JOBOPT_CALIB]          = {"calib", K_CALIB, S(calib), 0, 0, 0, 0},
    [LMP_JOBOPT_NSAMPLES]       = {"nsamples", K_INT, S(nsamples), 1, 1 << 20, 0, 0},
    [LMP_JOBOPT_CTX]            = {"ctx", K_INT, S(ctx), 2, 1 << 20, 0, 0},
    [LMP_JOBOPT_OUT]            = {"out", K_PATH, S(out), 0, 0, 0, 0},
    [LMP_JOBOPT_SCHEME]         = {"scheme", K_SCHEME, S(scheme), 0, 0, 0, 0},
    [LMP_JOBOPT_MODE]           = {"mode", K_MODE, S(mode), 0, 0, 0, 0},
    [LMP_JOBOPT_METHOD]         = {"method", K_METHOD, S(method), 0, 0, 0, 0},
    [LMP_JOBOPT_BITS]           = {"bits", K_INT, S(bits), 1, 8, 0, 0},
    [LMP_JOBOPT_GROUP]          = {"group", K_INT, S(group), 1, 1 << 20, 0, 0},
    [LMP_JOBOPT_KEEP]           = {"keep", K_KEEP, 0, 0, 0, 0, 0},
    [LMP_JOBOPT_FINETUNE]       = {"finetune", K_BOOL, S(finetune), 0, 0, 0, 0},
    [LMP_JOBOPT_FT_EPOCHS]      = {"ft-epochs", K_INT, S(ft_epochs), 1, 1000, 0, 0},
    [LMP_JOBOPT_FT_MAX_STEPS]   = {"ft-max-steps", K_INT, S(ft_max_steps), 1, 1 << 30, 0, 0},
    [LMP_JOBOPT_BEAM]           = {"beam", K_INT, S(beam), 1, 256, 0, 0},
    [LMP_JOBOPT_MAX_ROUNDS]     = {"max-rounds", K_INT, S(max_rounds), 1, 64, 0, 0},
    [LMP_JOBOPT_TOL]            = {"tol", K_F64, S(tol), 0, 0, 0, 1},
    [LMP_JOBOPT_CG_ITERS]       = {"cg-iters", K_INT, S(cg_iters), 0, 1 << 20, 0, 0},
    [LMP_JOBOPT_ADAM_STEPS]     = {"adam-steps", K_INT, S(adam_steps), 0, 1 << 20, 0, 0},
    [LMP_JOBOPT_LR]             = {"lr", K_F64, S(lr), 0, 0, 0, 1},
    [LMP_JOBOPT_SEED]           = {"seed", K_INT, S(seed), 0, LLONG_MAX, 0, 0},
    [LMP_JOBOPT_THREADS]        = {"threads", K_INT, S(threads), 1, 256, 0, 0},
    [LMP_JOBOPT_NAME]           = {"name", K_STR, S(name), 0, 0, 0, 0},
    [LMP_JOBOPT_MAX_ATTEMPTS]   = {"max-attempts", K_INT, S(max_attempts), 1, 100, 0, 0},
    [LMP_JOBOPT_WORKERS]        = {"workers", K_INT, S(workers), 1, 256, 0, 0},
    [LMP_JOBOPT_STATE]          = {"state", K_PATH, S(state), 0, 0, 0, 0},
    [LMP_JOBOPT_ROW_SHARDS]     = {"row-shards", K_INT, S(row_shards), 1, 64, 0, 0},
    [LMP_JOBOPT_FT_LR]          = {"ft-lr", K_F64, S(ft_lr), 0, 0, 0, 1},
    [LMP_JOBOPT_PV]             = {"pv", K_BOOL, S(pv), 0, 0, 0, 0},
    [LMP_JOBOPT_PV_DATA]        = {"pv-data", K_CALIB, S(pv_data), 0, 0, 0, 0},
    [LMP_JOBOPT_PV_STEPS]       = {"pv-steps", K_INT, S(pv_steps), 0, 100000000, 0, 0},
    [LMP_JOBOPT_PV_BATCH]       = {"pv-batch", K_INT, S(pv_batch), 1, 65536, 0, 0},
    [LMP_JOBOPT_PV_MICRO]       = {"pv-micro", K_INT, S(pv_micro), 1, 64, 0, 0},
    [LMP_JOBOPT_PV_LR]          = {"pv-lr", K_F64, S(pv_lr), 0, 0, 0, 1},
    [LMP_JOBOPT_PV_CODE_LR]     = {"pv-code-lr", K_F64, S(pv_code_lr), 0, 0, 0, 10},
    [LMP_JOBOPT_PV_CODE_FRAC]   = {"pv-code-frac", K_F64, S(pv_code_frac), 0, 0, 0, 1},
    [LMP_JOBOPT_PV_V_EVERY]     = {"pv-v-every", K_INT, S(pv_v_every), 0, 1000000, 0, 0},
    [LMP_JOBOPT_PV_BLOCKS]      = {"pv-blocks", K_INT, S(pv_blocks), 1, 100000, 0, 0},
    [LMP_JOBOPT_PV_TRUST_RATIO] = {"pv-trust-ratio", K_F64, S(pv_trust_ratio), 0, 0, 0, 100},
    [LMP_JOBOPT_PV_STAGES]      = {"pv-stages", K_INT, S(pv_stages), 1, 4096, 0, 0},
    [LMP_JOBOPT_PV_LAMB]        = {"pv-lamb", K_BOOL, S(pv_lamb), 0, 0, 0, 0},
    [LMP_JOBOPT_EMBED_BITS]     = {"embed-bits", K_INT, S(embed_bits), 4, 16, 0, 0},
    [LMP_JOBOPT_HEAD_BITS]      = {"head-bits", K_INT, S(head_bits), 4, 16, 0, 0},
};
#undef S

void lmp_jobopts_init(struct lmp_jobopts *o) {
    assert(o);
    memset(o, 0, sizeof(*o));
    o->mode       = LMP_COMPRESS_SEQUENTIAL;
    o->method     = LMP_COMPRESS_AQLM;
    o->nsamples   = 128;
    o->bits       = 4;
    o->group      = 128;
    o->workers    = 1;
    o->embed_bits = o->head_bits = 16;
}

static char **str_field(struct lmp_jobopts *o, const struct def *d) {
    return (char **)((char *)o + d->off);
}

static void clear_keep(struct lmp_jobopts *o) {
    for (int i = 0; i < o->n_keep; i++) free(o->keep[i]);
    o->n_keep = 0;
}

void lmp_jobopts_release(struct lmp_jobopts *o) {
    if (o == NULL) return;
    for (int i = 0; i < LMP_JOBOPT_COUNT; i++) {
        const enum kind k = defs[i].kind;
        if (k == K_STR || k == K_PATH || k == K_CALIB || k == K_SCHEME) {
            char **p = str_field(o, &defs[i]);
            free(*p);
            *p = NULL;
        }
    }
    clear_keep(o);
    free(o->job_path);
    o->job_path = NULL;
}

const char *lmp_jobopt_key(enum lmp_jobopt id) {
    return (int)id >= 0 && id < LMP_JOBOPT_COUNT ? defs[id].key : NULL;
}

static int find_key(const char *key) {
    char   k[32];
    size_t n = strlen(key);
    if (n == 0 || n >= sizeof(k)) return -1;
    for (size_t i = 0; i <= n; i++) k[i] = key[i] == '_' ? '-' : key[i];
    for (int i = 0; i < LMP_JOBOPT_COUNT; i++)
        if (strcmp(defs[i].key, k) == 0) return i;
    return -1;
}

/* base_dir/value for a relative value with a base directory; else a copy of value */
static char *resolve(const char *value, const char *base_dir) {
    if (base_dir == NULL || base_dir[0] == '\0' || value[0] == '/') return strdup(value);
    size_t n = strlen(base_dir) + strlen(value) + 2;
    char  *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", base_dir, value);
    return p;
}

enum lmp_status lmp_jobopts_set(struct lmp_jobopts *o, const char *key, const char *value,
                                const char *base_dir, bool forbid_dup, char *problem, size_t n) {
    assert(o && key && value && problem);
    /* key and value are outside text: quoted escaped, and cut, in a problem */
    char qk[48], qv[48];
    lmp_str_escape(qk, sizeof(qk), key);
    lmp_str_escape(qv, sizeof(qv), value);
    const int id = find_key(key);
    if (id < 0) {
        snprintf(problem, n, "unknown key '%s'", qk);
        return LMP_EINVAL;
    }
    const struct def *d = &defs[id];
    if (d->kind != K_KEEP && forbid_dup && o->set[id]) {
        snprintf(problem, n, "duplicate key '%s'", d->key);
        return LMP_EINVAL;
    }
    if (value[0] == '\0') {
        snprintf(problem, n, "%s wants a value", d->key);
        return LMP_EINVAL;
    }
    char *end = NULL;
    switch (d->kind) {
    case K_INT: {
        errno       = 0;
        long long x = strtoll(value, &end, 10);
        if (errno != 0 || end == value || *end != '\0' || x < d->lo || x > d->hi) {
            snprintf(problem, n, "%s wants an integer in [%lld, %lld], got '%s'", d->key, d->lo,
                     d->hi, qv);
            return LMP_EINVAL;
        }
        *(long long *)((char *)o + d->off) = x;
        break;
    }
    case K_F64: {
        errno    = 0;
        double x = strtod(value, &end);
        if (errno != 0 || end == value || *end != '\0' || !(x >= d->flo && x <= d->fhi)) {
            snprintf(problem, n, "%s wants a number in [%g, %g], got '%s'", d->key, d->flo, d->fhi,
                     qv);
            return LMP_EINVAL;
        }
        *(double *)((char *)o + d->off) = x;
        break;
    }
    case K_BOOL:
        if (strcmp(value, "true") == 0 || strcmp(value, "1") == 0)
            *(bool *)((char *)o + d->off) = true;
        else if (strcmp(value, "false") == 0 || strcmp(value, "0") == 0)
            *(bool *)((char *)o + d->off) = false;
        else {
            snprintf(problem, n, "%s wants true or false, got '%s'", d->key, qv);
            return LMP_EINVAL;
        }
        break;
    case K_MODE:
        if (strcmp(value, "sequential") == 0)
            o->mode = LMP_COMPRESS_SEQUENTIAL;
        else if (strcmp(value, "independent") == 0)
            o->mode = LMP_COMPRESS_INDEPENDENT;
        else {
            snprintf(problem, n, "mode must be sequential or independent, got '%s'", qv);
            return LMP_EINVAL;
        }
        break;
    case K_METHOD:
        if (strcmp(value, "aqlm") == 0)
            o->method = LMP_COMPRESS_AQLM;
        else if (strcmp(value, "rtn") == 0)
            o->method = LMP_COMPRESS_RTN;
        else {
            snprintf(problem, n, "method must be aqlm or rtn, got '%s'", qv);
            return LMP_EINVAL;
        }
        break;
    case K_SCHEME: {
        struct lmp_aq_scheme sc;
        struct lmp_err       e = {0};
        if (lmp_aq_scheme_parse(&sc, value, &e) != LMP_OK) {
            snprintf(problem, n, "%s", e.msg);
            return LMP_EINVAL;
        }
        __attribute__((fallthrough)); /* a valid scheme: keep the text */
    }
    case K_STR:
    case K_PATH:
    case K_CALIB: {
        const bool path = d->kind == K_PATH || (d->kind == K_CALIB && strcmp(value, "generate"));
        char      *s    = path ? resolve(value, base_dir) : strdup(value);
        if (s == NULL) {
            snprintf(problem, n, "out of memory");
            return LMP_ENOMEM;
        }
        char **p = str_field(o, d);
        free(*p);
        *p = s;
        break;
    }
    case K_KEEP:
        if (o->n_keep == LMP_JOBOPTS_MAX_KEEP) {
            snprintf(problem, n, "more than %d keep patterns", LMP_JOBOPTS_MAX_KEEP);
            return LMP_EINVAL;
        }
        if ((o->keep[o->n_keep] = strdup(value)) == NULL) {
            snprintf(problem, n, "out of memory");
            return LMP_ENOMEM;
        }
        o->n_keep++;
        break;
    }
    o->set[id] = true;
    return LMP_OK;
}

static bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\r';
}

enum lmp_status lmp_jobopts_load_buffer(struct lmp_jobopts *o, const char *path, const char *text,
                                        size_t len, struct lmp_err *err) {
    assert(o && path && (text || len == 0));
    /* base directory: the file's directory, when it names one */
    char       *dir   = NULL;
    const char *slash = strrchr(path, '/');
    if (slash && (dir = strndup(path, slash == path ? 1 : (size_t)(slash - path))) == NULL)
        return lmp_err_set(err, LMP_ENOMEM, "out of memory");
    char *line = malloc(len + 1);
    if (line == NULL) {
        free(dir);
        return lmp_err_set(err, LMP_ENOMEM, "out of memory");
    }
    char qpath[200]; /* the file's name as messages quote it */
    lmp_str_escape(qpath, sizeof(qpath), path);
    enum lmp_status st  = LMP_OK;
    size_t          pos = 0;
    for (long lineno = 1; pos < len && st == LMP_OK; lineno++) {
        size_t e = pos;
        while (e < len && text[e] != '\n') e++;
        size_t n = e - pos;
        if (memchr(text + pos, '\0', n)) {
            st = lmp_err_set(err, LMP_EINVAL, "%s:%ld: NUL byte in the line", qpath, lineno);
            break;
        }
        memcpy(line, text + pos, n);
        line[n] = '\0';
        pos     = e + 1;
        /* a comment starts with '#' at the start of the line or after a blank */
        for (size_t i = 0; i < n; i++)
            if (line[i] == '#' && (i == 0 || is_space(line[i - 1]))) {
                line[i] = '\0';
                break;
            }
        char *s = line;
        while (is_space(*s)) s++;
        size_t m = strlen(s);
        while (m > 0 && is_space(s[m - 1])) s[--m] = '\0';
        if (m == 0) continue;
        char *eq = strchr(s, '=');
        if (eq == NULL) {
            st = lmp_err_set(err, LMP_EINVAL, "%s:%ld: expected 'key = value'", qpath, lineno);
            break;
        }
        char *k = s, *v = eq + 1;
        char *ke = eq;
        while (ke > k && is_space(ke[-1])) ke--;
        *ke = '\0';
        while (is_space(*v)) v++;
        if (k[0] == '\0') {
            st = lmp_err_set(err, LMP_EINVAL, "%s:%ld: a line with no key", qpath, lineno);
            break;
        }
        char            problem[200];
        enum lmp_status s2 = lmp_jobopts_set(o, k, v, dir, true, problem, sizeof(problem));
        if (s2 != LMP_OK) st = lmp_err_set(err, s2, "%s:%ld: %s", qpath, lineno, problem);
    }
    free(line);
    free(dir);
    return st;
}

enum lmp_status lmp_jobopts_load_file(struct lmp_jobopts *o, const char *path,
                                      struct lmp_err *err) {
    char           *text = NULL;
    size_t          len  = 0;
    enum lmp_status st   = lmp_file_read_all(path, &text, &len, err);
    if (st != LMP_OK) return st;
    st = lmp_jobopts_load_buffer(o, path, text, len, err);
    free(text);
    if (st == LMP_OK && (o->job_path = strdup(path)) == NULL)
        st = lmp_err_set(err, LMP_ENOMEM, "out of memory");
    return st;
}

/* Move every option src gave into dst (src's strings are taken). */
static void merge(struct lmp_jobopts *dst, struct lmp_jobopts *src) {
    for (int i = 0; i < LMP_JOBOPT_COUNT; i++) {
        if (!src->set[i]) continue;
        const struct def *d = &defs[i];
        switch (d->kind) {
        case K_INT:
            *(long long *)((char *)dst + d->off) = *(long long *)((char *)src + d->off);
            break;
        case K_F64:
            *(double *)((char *)dst + d->off) = *(double *)((char *)src + d->off);
            break;
        case K_BOOL:
            *(bool *)((char *)dst + d->off) = *(bool *)((char *)src + d->off);
            break;
        case K_MODE:
            dst->mode = src->mode;
            break;
        case K_METHOD:
            dst->method = src->method;
            break;
        case K_KEEP:
            clear_keep(dst);
            for (int k = 0; k < src->n_keep; k++) dst->keep[k] = src->keep[k];
            dst->n_keep = src->n_keep;
            src->n_keep = 0;
            break;
        default: {
            char **a = str_field(dst, d), **b = str_field(src, d);
            free(*a);
            *a = *b;
            *b = NULL;
        }
        }
        dst->set[i] = true;
    }
}

int lmp_jobopts_parse_argv(struct lmp_jobopts *o, int argc, char **argv,
                           struct lmp_jobopts_cmd *cmd, struct lmp_err *err) {
    enum { OPT_BASE = 1000, OPT_JSON = 2000, OPT_HELP };
    struct option opts[LMP_JOBOPT_COUNT + 64];
    int           n = 0;
    for (int i = 0; i < LMP_JOBOPT_COUNT; i++)
        opts[n++] =
            (struct option){defs[i].key, defs[i].kind == K_BOOL ? no_argument : required_argument,
                            NULL, OPT_BASE + i};
    opts[n++] = (struct option){"json", no_argument, NULL, OPT_JSON};
    opts[n++] = (struct option){"help", no_argument, NULL, OPT_HELP};
    for (const struct option *x = cmd->extra;
         x && x->name && n < (int)(sizeof(opts) / sizeof(opts[0])) - 1; x++)
        opts[n++] = *x;
    opts[n] = (struct option){0};

    struct lmp_jobopts cl; /* the command line's options, merged over the JOB file's */
    lmp_jobopts_init(&cl);
    int rc = LMP_EXIT_OK;
    for (int c; (c = getopt_long(argc, argv, "h", opts, NULL)) != -1;) {
        if (c == OPT_JSON)
            cmd->json = true;
        else if (c == OPT_HELP || c == 'h')
            cmd->help = true;
        else if (c >= OPT_BASE && c < OPT_BASE + LMP_JOBOPT_COUNT) {
            const struct def *d = &defs[c - OPT_BASE];
            char              problem[200];
            if (lmp_jobopts_set(&cl, d->key, d->kind == K_BOOL ? "true" : optarg, NULL, false,
                                problem, sizeof(problem)) != LMP_OK) {
                fprintf(stderr, "lmpress: option '--%s': %s\n", d->key, problem);
                rc = LMP_EXIT_USAGE;
                goto out;
            }
        } else if (c >= 256 && cmd->on_extra) {
            if (!cmd->on_extra(cmd->ctx, c, optarg)) {
                rc = LMP_EXIT_USAGE;
                goto out;
            }
        } else {
            rc = LMP_EXIT_USAGE; /* getopt printed why */
            goto out;
        }
    }
    if (cmd->help) goto out;
    if (optind < argc) {
        if (!cmd->job_arg || argc - optind > 1) {
            char q[200];
            fprintf(stderr, "lmpress: unexpected argument '%s'\n",
                    lmp_str_escape(q, sizeof(q), argv[cmd->job_arg ? optind + 1 : optind]));
            rc = LMP_EXIT_USAGE;
            goto out;
        }
        enum lmp_status st = lmp_jobopts_load_file(o, argv[optind], err);
        if (st != LMP_OK) {
            /* EINVAL: "FILE:LINE: problem", its outside text escaped already; else a message
             * of the file reader, which quotes the name as given */
            char q[sizeof(err->msg) + 64];
            fprintf(stderr, "%s%s\n", st == LMP_EINVAL ? "" : "lmpress: JOB file: ",
                    st == LMP_EINVAL ? err->msg : lmp_str_escape(q, sizeof(q), err->msg));
            rc = st == LMP_EINVAL ? LMP_EXIT_USAGE : LMP_EXIT_INPUT;
            goto out;
        }
    }
    merge(o, &cl);
out:
    lmp_jobopts_release(&cl);
    return rc;
}

enum lmp_status lmp_jobopts_check(const struct lmp_jobopts *o, struct lmp_err *err) {
    if (o->model == NULL || o->out == NULL)
        return lmp_err_set(err, LMP_EINVAL, "--model and --out are required");
    if (o->method == LMP_COMPRESS_AQLM && o->calib == NULL)
        return lmp_err_set(err, LMP_EINVAL, "--calib FILE|generate is required for aqlm");
    if (o->pv && o->method != LMP_COMPRESS_AQLM)
        return lmp_err_set(err, LMP_EINVAL, "--pv tunes AQLM codes: it needs --method aqlm");
    for (int i = LMP_JOBOPT_EMBED_BITS; i <= LMP_JOBOPT_HEAD_BITS; i++) {
        const long long b = i == LMP_JOBOPT_EMBED_BITS ? o->embed_bits : o->head_bits;
        if (b != 16 && b != 8 && b != 4)
            return lmp_err_set(err, LMP_EINVAL, "--%s wants 16, 8 or 4, got %lld", defs[i].key, b);
    }
    for (int i = LMP_JOBOPT_PV_DATA; i <= LMP_JOBOPT_PV_LAMB; i++)
        if (o->set[i] && !o->pv)
            return lmp_err_set(err, LMP_EINVAL, "--%s is a PV-Tuning option: add --pv",
                               defs[i].key);
    return LMP_OK;
}

enum lmp_status lmp_jobopts_to_compress(const struct lmp_jobopts *o, int default_threads,
                                        struct lmp_compress_opts *c, struct lmp_err *err) {
    memset(c, 0, sizeof(*c));
    lmp_compress_spec_init(&c->spec);
    c->out_path    = o->out;
    c->mode        = o->mode;
    c->spec.method = o->method;
    if (o->method == LMP_COMPRESS_AQLM && o->scheme &&
        lmp_aq_scheme_parse(&c->spec.sc, o->scheme, err) != LMP_OK)
        return LMP_EINVAL;
    c->spec.rtn_bits  = (int)o->bits;
    c->spec.rtn_group = o->group;
    if (o->set[LMP_JOBOPT_BEAM]) c->spec.aq.beam = (int)o->beam;
    if (o->set[LMP_JOBOPT_MAX_ROUNDS]) c->spec.aq.max_rounds = (int)o->max_rounds;
    if (o->set[LMP_JOBOPT_TOL]) c->spec.aq.tol = o->tol;
    if (o->set[LMP_JOBOPT_ADAM_STEPS]) c->spec.aq.adam_steps = (int)o->adam_steps;
    if (o->set[LMP_JOBOPT_CG_ITERS]) c->spec.aq.cg_iters = (int)o->cg_iters;
    if (o->set[LMP_JOBOPT_LR] && o->lr > 0) c->spec.aq.lr = (float)o->lr;
    c->keep      = (const char *const *)o->keep;
    c->n_keep    = o->n_keep;
    c->finetune  = o->finetune;
    c->seed      = (uint64_t)o->seed;
    c->n_threads = o->set[LMP_JOBOPT_THREADS] ? (int)o->threads : default_threads;
    c->n_seq     = o->nsamples;
    c->ctx       = o->ctx;
    return LMP_OK;
}

void lmp_jobopts_to_jobspec(const struct lmp_jobopts *o, struct lmp_jobopts_pb *pb) {
    const bool rtn    = o->method == LMP_COMPRESS_RTN;
    pb->spec          = (Lmp__JobSpec)LMP__JOB_SPEC__INIT;
    pb->calib         = (Lmp__CalibSpec)LMP__CALIB_SPEC__INIT;
    pb->method        = (Lmp__MethodSpec)LMP__METHOD_SPEC__INIT;
    pb->finetune      = (Lmp__FinetuneSpec)LMP__FINETUNE_SPEC__INIT;
    Lmp__JobSpec *s   = &pb->spec;
    s->name           = o->name ? o->name : "";
    s->model_path     = o->model ? o->model : "";
    s->tokenizer_path = o->tokenizer ? o->tokenizer : "";
    s->out_path       = o->out ? o->out : "";
    s->mode           = o->mode == LMP_COMPRESS_INDEPENDENT ? LMP__MODE__MODE_INDEPENDENT
                                                            : LMP__MODE__MODE_SEQUENTIAL;
    s->n_keep         = (size_t)o->n_keep;
    s->keep           = (char **)o->keep;
    s->max_attempts   = o->set[LMP_JOBOPT_MAX_ATTEMPTS] ? (uint32_t)o->max_attempts : 0;
    s->kernels        = "best";
    s->threads        = o->set[LMP_JOBOPT_THREADS] ? (uint32_t)o->threads : 0;
    s->row_shards     = o->set[LMP_JOBOPT_ROW_SHARDS] ? (uint32_t)o->row_shards : 0;
    s->embed_bits     = o->set[LMP_JOBOPT_EMBED_BITS] ? (uint32_t)o->embed_bits : 0;
    s->head_bits      = o->set[LMP_JOBOPT_HEAD_BITS] ? (uint32_t)o->head_bits : 0;

    Lmp__CalibSpec *cs  = &pb->calib;
    const bool      gen = o->calib && strcmp(o->calib, "generate") == 0;
    cs->source          = o->calib == NULL ? LMP__CALIB_SOURCE__CALIB_SOURCE_UNSPECIFIED /* RTN */
                          : gen            ? LMP__CALIB_SOURCE__CALIB_SOURCE_GENERATE
                                           : LMP__CALIB_SOURCE__CALIB_SOURCE_FILE;
    cs->path            = o->calib && !gen ? o->calib : "";
    cs->nsamples        = (uint32_t)o->nsamples;
    cs->ctx             = (uint32_t)o->ctx;
    cs->seed            = (uint64_t)o->seed;
    s->calib            = cs;

    Lmp__MethodSpec *ms = &pb->method;
    ms->method          = rtn ? LMP__METHOD__METHOD_RTN : LMP__METHOD__METHOD_AQLM;
    ms->scheme          = !rtn && o->scheme ? o->scheme : "";
    ms->bits            = rtn ? (uint32_t)o->bits : 0;
    ms->group           = rtn ? (uint32_t)o->group : 0;
    ms->beam            = o->set[LMP_JOBOPT_BEAM] ? (uint32_t)o->beam : 0;
    ms->max_rounds      = o->set[LMP_JOBOPT_MAX_ROUNDS] ? (uint32_t)o->max_rounds : 0;
    ms->adam_steps      = o->set[LMP_JOBOPT_ADAM_STEPS] ? (uint32_t)o->adam_steps : 0;
    if (o->set[LMP_JOBOPT_TOL]) ms->tol = o->tol > 0 ? o->tol : DBL_MIN; /* 0 = "default" */
    if (o->set[LMP_JOBOPT_LR] && o->lr > 0) ms->lr = (float)o->lr;
    if (o->set[LMP_JOBOPT_CG_ITERS]) {
        ms->codebook_update_case = LMP__METHOD_SPEC__CODEBOOK_UPDATE_CG_ITERS;
        ms->cg_iters             = (uint32_t)o->cg_iters;
    }
    ms->seed  = (uint64_t)o->seed;
    s->method = ms;

    Lmp__FinetuneSpec *fs = &pb->finetune;
    fs->enabled           = o->finetune;
    fs->epochs            = o->set[LMP_JOBOPT_FT_EPOCHS] ? (uint32_t)o->ft_epochs : 0;
    fs->max_steps         = o->set[LMP_JOBOPT_FT_MAX_STEPS] ? (uint32_t)o->ft_max_steps : 0;
    fs->lr                = o->set[LMP_JOBOPT_FT_LR] && o->ft_lr > 0 ? (float)o->ft_lr : 0.0f;
    fs->seed              = (uint64_t)o->seed;
    s->finetune           = o->finetune || fs->epochs || fs->max_steps || fs->lr > 0 ? fs : NULL;
}

enum lmp_status lmp_jobopts_pv_split(struct lmp_jobopts *jo, char **final_out) {
    *final_out = NULL;
    if (!jo->pv || jo->out == NULL) return LMP_OK;
    const size_t n    = strlen(jo->out);
    const bool   h5   = n > 3 && strcmp(jo->out + n - 3, ".h5") == 0;
    char        *aqlm = malloc(n + 16);
    if (aqlm == NULL) return LMP_ENOMEM;
    snprintf(aqlm, n + 16, "%.*s.aqlm.h5", (int)(h5 ? n - 3 : n), jo->out);
    *final_out = jo->out;
    jo->out    = aqlm;
    return LMP_OK;
}

void lmp_jobopts_tune_job(const struct lmp_jobopts *jo, const char *artifact, const char *out,
                          long long ctx, int n_threads, struct lmp_tune_job *tj) {
    lmp_tune_job_init(tj);
    tj->artifact  = artifact;
    tj->model     = jo->model;
    tj->data      = jo->pv_data ? jo->pv_data : jo->calib;
    tj->out       = out;
    tj->ctx       = ctx;
    tj->n_threads = n_threads;
    tj->opts.seed = (uint64_t)jo->seed + 1;
    if (jo->set[LMP_JOBOPT_PV_STEPS]) tj->steps = jo->pv_steps;
    if (jo->set[LMP_JOBOPT_PV_BATCH]) tj->opts.batch_seqs = jo->pv_batch;
    if (jo->set[LMP_JOBOPT_PV_MICRO]) tj->opts.micro_seqs = jo->pv_micro;
    if (jo->set[LMP_JOBOPT_PV_LR]) tj->opts.pv.lr = (float)jo->pv_lr;
    if (jo->set[LMP_JOBOPT_PV_CODE_LR]) tj->opts.pv.code_lr = (float)jo->pv_code_lr;
    if (jo->set[LMP_JOBOPT_PV_CODE_FRAC]) tj->opts.pv.code_frac = jo->pv_code_frac;
    if (jo->set[LMP_JOBOPT_PV_V_EVERY]) tj->opts.v_every = (int)jo->pv_v_every;
    if (jo->set[LMP_JOBOPT_PV_BLOCKS]) tj->max_blocks = (int)jo->pv_blocks;
    if (jo->set[LMP_JOBOPT_PV_TRUST_RATIO]) tj->opts.pv.trust_ratio = jo->pv_trust_ratio;
    tj->opts.pv.lamb = jo->pv_lamb;
    if (jo->set[LMP_JOBOPT_PV_STAGES]) tj->stages = (int)jo->pv_stages;
}
