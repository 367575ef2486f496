/*  cmd_generate - lmpress generate: continue a prompt, streaming text to stdout
 *
 *  The prompt (BOS first) is prefilled in one forward pass into a KV cache, then one
 *  token at a time is sampled and fed back: greedy (argmax) at --temperature 0, else
 *  softmax(logits / T) restricted to the smallest set of tokens whose probability
 *  reaches --top-p. Generation stops after -n tokens, at EOS/BOS, or at the model's
 *  context length. The prompt is echoed, then each new token's text as it comes; the
 *  prompt-processing and generation rates go to stderr at the end (one line).
 *
 *  Chat: when the model's GGUF metadata (a checkpoint's, or the tokenizer image an
 *  artifact of a GGUF model keeps) declares a ChatML chat template (SmolLM2-Instruct,
 *  Qwen2-Instruct) and the vocabulary has its markers, the prompt is sent as one user
 *  turn, after the template's default system turn (or --system's), and the assistant's
 *  answer is generated, stopping at <|im_end|> (model/chat.h). --raw continues the text
 *  instead. Other templates (Jinja) are not interpreted: the prompt is continued as text.
 *
 *  --artifact runs a compressed model on its AQLM codes (artifact/artifact_model.h,
 *  the aq_matvec kernel: no dense copy of a quantized layer); --decode decodes them to
 *  dense fp32 first instead (the slower reference path).
 */
#include "cli/cli.h"
#include "artifact/artifact_model.h" /* defines: lmp_artifact_model_load */
#include "kernels/kernels.h"         /* defines: lmp_kernels_set_spin_us */
#include "model/chat.h"              /* defines: lmp_chat_chatml, lmp_chat_encode */
#include "model/model.h"             /* defines: lmp_model_open */
#include "model/tokenizer.h"         /* defines: lmp_tokenizer_* */
#include "model/transformer.h"       /* defines: lmp_transformer_*, lmp_kvcache_* */

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *const usage =
    "lmpress generate (--model PATH [--tokenizer PATH] | --artifact ART.h5 [--decode])\n"
    "                 --prompt TEXT [-n N] [--temperature T] [--top-p P] [--seed S]\n"
    "                 [--threads T] [--spin US] [--raw | --system TEXT]";

static const char *const help =
    "  --model PATH          checkpoint: .gguf, Hugging Face directory or llama2.c .bin\n"
    "  --artifact ART.h5     a compressed model instead, run on its AQLM codes (it carries\n"
    "                        its tokenizer)\n"
    "  --decode              with --artifact: decode the compressed layers to dense fp32\n"
    "                        first (more memory, slower; for checks)\n"
    "  --tokenizer PATH      tokenizer for --model (default the checkpoint's own)\n"
    "  --prompt TEXT         the text to continue (required)\n"
    "  -n N                  tokens to generate (default 128)\n"
    "  --temperature T       sampling temperature; 0 is greedy (default 0)\n"
    "  --top-p P             nucleus sampling: the smallest set of tokens of probability P\n"
    "                        (default 1: all)\n"
    "  --seed S              sampling seed (default: the time)\n"
    "  --threads T           threads (default every core)\n"
    "  --spin US             with 2 or more threads: how long (microseconds) a thread\n"
    "                        waits for the next step's work before it sleeps (default 100;\n"
    "                        0 sleeps at once: for cores shared with other work)\n"
    "  --raw                 continue the prompt as text even where the model declares a\n"
    "                        ChatML chat template (default: the prompt is a user turn and\n"
    "                        the assistant's answer is generated)\n"
    "  --system TEXT         the system turn of a chat (default the template's own default\n"
    "                        system message where it has one, as SmolLM2's; \"\" for none)\n"
    "The rates of prompt processing and generation (tokens/s) are printed on stderr.\n";

struct sampler {
    double   temperature, top_p;
    uint64_t rng;   /* xorshift64* state, never 0 */
    float   *prob;  /* (vocab) */
    int32_t *order; /* (vocab) */
};

static double rng_uniform(struct sampler *s) { /* in [0, 1) */
    s->rng ^= s->rng >> 12;
    s->rng ^= s->rng << 25;
    s->rng ^= s->rng >> 27;
    return (double)((s->rng * 0x2545F4914F6CDD1Dull) >> 11) / 9007199254740992.0;
}

static const float *g_sort_prob; /* qsort has no context argument; one sort at a time */
static int          by_prob_desc(const void *a, const void *b) {
             float pa = g_sort_prob[*(const int32_t *)a], pb = g_sort_prob[*(const int32_t *)b];
             return pa < pb ? 1 : pa > pb ? -1 : 0;
}

static int32_t sample(struct sampler *s, const float *logits, int32_t vocab) {
    int32_t best = 0;
    for (int32_t i = 1; i < vocab; i++) best = logits[i] > logits[best] ? i : best;
    if (s->temperature <= 0) return best;
    double sum = 0;
    for (int32_t i = 0; i < vocab; i++) {
        s->prob[i] = (float)exp((logits[i] - logits[best]) / s->temperature);
        sum += s->prob[i];
    }
    int32_t n = 0;
    if (s->top_p < 1.0) {
        /* A token of probability q is in the nucleus only if it and the tokens after it,
         * at most vocab of them, each <= q, hold more than 1 - p: so q > (1 - p) / vocab.
         * Sort only those (the best token always qualifies). */
        const double cut = (1.0 - s->top_p) / vocab * sum;
        for (int32_t i = 0; i < vocab; i++)
            if (s->prob[i] >= cut || i == best) s->order[n++] = i;
        g_sort_prob = s->prob;
        qsort(s->order, (size_t)n, sizeof(*s->order), by_prob_desc);
        double  acc  = 0;
        int32_t keep = n;
        for (int32_t i = 0; i < n; i++) {
            acc += s->prob[s->order[i]];
            if (acc >= s->top_p * sum) {
                keep = i + 1;
                break;
            }
        }
        n   = keep;
        sum = acc;
    } else {
        for (int32_t i = 0; i < vocab; i++) s->order[n++] = i;
    }
    double r = rng_uniform(s) * sum, acc = 0;
    for (int32_t i = 0; i < n; i++) {
        acc += s->prob[s->order[i]];
        if (r < acc) return s->order[i];
    }
    return s->order[n - 1];
}

static int cmd_generate_exec(struct lmp_cli *cli, int argc, char **argv) {
    const char *model_path = NULL, *tok_path = NULL, *prompt = NULL, *art_path = NULL,
               *system = NULL;
    bool      decode = false, raw = false;
    long long n_new = 128, seed = -1, threads = sysconf(_SC_NPROCESSORS_ONLN), spin_us = 100;
    double    temperature = 0.0, top_p = 1.0;
    static const struct option opts[] = {
        {"model", required_argument, NULL, 'm'},
        {"tokenizer", required_argument, NULL, 'k'},
        {"prompt", required_argument, NULL, 'p'},
        {"temperature", required_argument, NULL, 'T'},
        {"top-p", required_argument, NULL, 'P'},
        {"seed", required_argument, NULL, 's'},
        {"threads", required_argument, NULL, 't'},
        {"artifact", required_argument, NULL, 'a'},
        {"decode", no_argument, NULL, 'D'},
        {"raw", no_argument, NULL, 'R'},
        {"spin", required_argument, NULL, 'S'},
        {"system", required_argument, NULL, 'Y'},
        {0},
    };
    if (threads < 1) threads = 1;
    for (int c; (c = getopt_long(argc, argv, "m:k:p:n:T:P:s:t:", opts, NULL)) != -1;) {
        switch (c) {
        case 'm':
            model_path = optarg;
            break;
        case 'k':
            tok_path = optarg;
            break;
        case 'p':
            prompt = optarg;
            break;
        case 'a':
            art_path = optarg;
            break;
        case 'D':
            decode = true;
            break;
        case 'R':
            raw = true;
            break;
        case 'Y':
            system = optarg;
            break;
        case 'n':
            if (!lmp_cli_parse_i64("-n", optarg, 0, 1 << 20, &n_new)) return LMP_EXIT_USAGE;
            break;
        case 'T':
            if (!lmp_cli_parse_f64("--temperature", optarg, 0, 100, &temperature))
                return LMP_EXIT_USAGE;
            break;
        case 'P':
            if (!lmp_cli_parse_f64("--top-p", optarg, 1e-9, 1, &top_p)) return LMP_EXIT_USAGE;
            break;
        case 's':
            if (!lmp_cli_parse_i64("--seed", optarg, 0, INT64_MAX, &seed)) return LMP_EXIT_USAGE;
            break;
        case 't':
            if (!lmp_cli_parse_i64("--threads", optarg, 1, 256, &threads)) return LMP_EXIT_USAGE;
            break;
        case 'S':
            if (!lmp_cli_parse_i64("--spin", optarg, 0, 100000, &spin_us)) return LMP_EXIT_USAGE;
            break;
        default:
            return lmp_cli_usage(usage);
        }
    }
    if (optind != argc) return lmp_cli_usage_msg(usage, "unexpected argument");
    if ((model_path == NULL) == (art_path == NULL) || prompt == NULL)
        return lmp_cli_usage_msg(usage, "--prompt and one of --model or --artifact are required");
    if (art_path && tok_path)
        return lmp_cli_usage_msg(usage, "--artifact carries its tokenizer: drop --tokenizer");
    if (decode && art_path == NULL) return lmp_cli_usage_msg(usage, "--decode needs --artifact");
    if (raw && system) return lmp_cli_usage_msg(usage, "--system is a chat turn: drop --raw");

    struct lmp_err          err    = {0};
    struct lmp_model       *model  = NULL;
    struct lmp_tokenizer   *tok    = NULL;
    struct lmp_transformer *tf     = NULL;
    struct lmp_kvcache     *kv     = NULL;
    int32_t                *ids    = NULL;
    int64_t                 n_ids  = 0;
    float                  *hidden = NULL, *logits = NULL;
    struct sampler          smp = {.temperature = temperature, .top_p = top_p};
    int                     rc  = LMP_EXIT_OK;

    enum lmp_status st =
        art_path ? lmp_artifact_model_load(art_path,
                                           decode ? LMP_ART_WEIGHTS_DENSE : LMP_ART_WEIGHTS_CODES,
                                           &model, &tok, &err)
                 : lmp_model_open(model_path, &model, &err);
    if (st == LMP_OK && art_path == NULL) st = lmp_tokenizer_open(tok_path, model, &tok, &err);
    int32_t    im_start = -1, im_end = -1;
    const bool chat      = st == LMP_OK && !raw && lmp_chat_chatml(model, &im_start, &im_end);
    char *default_system = chat && system == NULL ? lmp_chat_model_default_system(model) : NULL;
    if (st == LMP_OK)
        st = chat ? lmp_chat_encode(tok, system ? system : default_system, prompt, im_start, im_end,
                                    &ids, &n_ids, &err)
                  : lmp_tokenizer_encode(tok, prompt, strlen(prompt), true, &ids, &n_ids, &err);
    free(default_system);
    if (st != LMP_OK) {
        rc = lmp_cli_fail(cli, &err);
        goto out;
    }
    const struct lmp_config *c       = &model->cfg;
    const int64_t            max_ctx = c->max_seq > 0 ? c->max_seq : 4096;
    if (n_ids == 0) {
        fprintf(stderr, "lmpress: the prompt encodes to no tokens\n");
        rc = LMP_EXIT_USAGE;
        goto out;
    }
    if (n_ids >= max_ctx) {
        fprintf(stderr, "lmpress: the prompt has %lld tokens, the model's context is %lld\n",
                (long long)n_ids, (long long)max_ctx);
        rc = LMP_EXIT_INPUT;
        goto out;
    }
    if (n_new > max_ctx - n_ids) n_new = max_ctx - n_ids;
    /* on the codes, a Q8_0 / Q4_1 head runs on its blocks too (--decode: dense fp32) */
    struct lmp_transformer_opts topts = {.n_threads   = (int)threads,
                                         .head_blocks = art_path != NULL && !decode};
    if (lmp_transformer_new(model, &topts, &tf, &err) != LMP_OK) {
        rc = lmp_cli_fail(cli, &err);
        goto out;
    }
    /* decoding hands work to the threads about 150 times a token: they wait for it awake */
    if (threads > 1) lmp_kernels_set_spin_us((int)spin_us);
    kv        = lmp_kvcache_new(tf, 1, n_ids + n_new > 0 ? n_ids + n_new : 1);
    hidden    = malloc(sizeof(float) * (size_t)(n_ids * c->dim));
    logits    = malloc(sizeof(float) * (size_t)c->vocab_size);
    smp.prob  = malloc(sizeof(float) * (size_t)c->vocab_size);
    smp.order = malloc(sizeof(int32_t) * (size_t)c->vocab_size);
    if (!kv || !hidden || !logits || !smp.prob || !smp.order) {
        fprintf(stderr, "lmpress: out of memory\n");
        rc = LMP_EXIT_FAIL;
        goto out;
    }
    smp.rng = (seed >= 0 ? (uint64_t)seed : (uint64_t)time(NULL)) * 0x9E3779B97F4A7C15ull + 1;
    if (smp.rng == 0) smp.rng = 1;

    fputs(prompt, stdout);
    if (chat) fputc('\n', stdout); /* the answer on its own line */
    fflush(stdout);
    struct timespec t0, tp, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    tp                = t0;
    const int32_t bos = lmp_tokenizer_bos(tok), eos = lmp_tokenizer_eos(tok);
    int32_t       prev   = ids[n_ids - 1];
    int64_t       n_done = 0;
    if (n_new > 0 && lmp_transformer_forward(tf, kv, ids, 1, n_ids, hidden, NULL, &err) != LMP_OK) {
        rc = lmp_cli_fail(cli, &err);
        goto out;
    }
    clock_gettime(CLOCK_MONOTONIC, &tp);
    const float *last = hidden + (n_ids - 1) * c->dim;
    for (; n_done < n_new; n_done++) {
        lmp_transformer_logits_row(tf, last, logits);
        int32_t next = sample(&smp, logits, c->vocab_size);
        if (next == eos || next == bos || (chat && next == im_end)) break;
        size_t      plen  = 0;
        const char *piece = lmp_tokenizer_piece(tok, prev, next, &plen);
        fwrite(piece, 1, plen, stdout);
        fflush(stdout);
        prev = next;
        if (n_done + 1 == n_new) {
            n_done++;
            break;
        }
        if (lmp_transformer_forward(tf, kv, &next, 1, 1, hidden, NULL, &err) != LMP_OK) {
            rc = lmp_cli_fail(cli, &err);
            goto out;
        }
        last = hidden;
    }
    fputc('\n', stdout);
    fflush(stdout); /* before the rates on stderr */
    clock_gettime(CLOCK_MONOTONIC, &t1);
    {
        /* prompt: its one forward pass; generation: every sampled token (the first one's
         * logits come from the prompt's pass, the others each from one token's pass) */
        double sp = (double)(tp.tv_sec - t0.tv_sec) + 1e-9 * (double)(tp.tv_nsec - t0.tv_nsec);
        double sg = (double)(t1.tv_sec - tp.tv_sec) + 1e-9 * (double)(t1.tv_nsec - tp.tv_nsec);
        fprintf(stderr,
                "(%lld prompt tokens, %.3f s, %.1f tokens/s; %lld generated tokens, %.3f s, "
                "%.1f tokens/s)\n",
                (long long)n_ids, sp, sp > 0 ? (double)n_ids / sp : 0.0, (long long)n_done, sg,
                sg > 0 ? (double)n_done / sg : 0.0);
    }
out:
    free(smp.prob);
    free(smp.order);
    free(hidden);
    free(logits);
    lmp_kvcache_destroy(&kv);
    lmp_transformer_destroy(&tf);
    free(ids);
    lmp_tokenizer_free(&tok);
    lmp_model_close(&model);
    return rc;
}

const struct lmp_cli_cmd lmp_cli_cmd_generate = {
    .name    = "generate",
    .summary = "continue a prompt with the model (KV cache, streaming)",
    .usage   = usage,
    .help    = help,
    .exec    = cmd_generate_exec,
};
