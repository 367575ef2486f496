/*  test_chat - ChatML prompts (model/chat.h): the default system message found in real
 *  templates (SmolLM2-Instruct's as its GGUF has it, Qwen2.5's with escaped newlines) and
 *  not found where there is none or the literal is broken; and, with SmolLM2 in the cache,
 *  the ids of a user turn equal to those transformers' apply_chat_template gives.
 */
#include "tests/check.h"     /* defines: CHECK, RUN, check_report, check_cache_file */
#include "model/chat.h"      /* defines: lmp_chat_default_system, lmp_chat_encode */
#include "model/tokenizer.h" /* defines: lmp_tokenizer_open */

static bool sys_is(const char *tmpl, const char *want) {
    char *got = lmp_chat_default_system(tmpl, strlen(tmpl));
    bool  ok  = want == NULL ? got == NULL : got != NULL && strcmp(got, want) == 0;
    if (!ok) fprintf(stderr, "template %.60s...: got '%s'\n", tmpl, got ? got : "(none)");
    free(got);
    return ok;
}

static void test_default_system(void) {
    /* SmolLM2-135M-Instruct's tokenizer.chat_template (real newlines in the literal) */
    CHECK(sys_is("{% for message in messages %}{% if loop.first and messages[0]['role'] != "
                 "'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named "
                 "SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + "
                 "message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor "
                 "%}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}",
                 "You are a helpful AI assistant named SmolLM, trained by Hugging Face"));
    /* Qwen2.5-Instruct's (escaped newlines, double-quoted strings elsewhere) */
    CHECK(sys_is("{%- if messages[0]['role'] == 'system' %}\n        {{- '<|im_start|>system\\n' "
                 "+ messages[0]['content'] + '<|im_end|>\\n' }}\n    {%- else %}\n        {{- "
                 "'<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a "
                 "helpful assistant.<|im_end|>\\n' }}\n    {%- endif %}",
                 "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."));
    /* the message's own system turn only: no default */
    CHECK(sys_is("{{ '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
                 "{{ '<|im_start|>user\\n' }}",
                 NULL));
    CHECK(sys_is("{{ \"<|im_start|>system\\nSay \\\"hi\\\".<|im_end|>\" }}", "Say \"hi\"."));
    CHECK(sys_is("{{ '<|im_start|>system\nunclosed<|im_end|>", NULL));
    CHECK(sys_is("<|im_start|>system\nno quote<|im_end|>", NULL));
    CHECK(sys_is("'<|im_start|>system'", NULL));
    CHECK(sys_is("", NULL));
    CHECK(lmp_chat_default_system(NULL, 0) == NULL);
    /* not NUL-terminated: only n bytes are read */
    const char cut[] = "'<|im_start|>system\nA<|im_end|>'XXXX";
    char      *got   = lmp_chat_default_system(cut, sizeof(cut) - 5);
    CHECK(got && strcmp(got, "A") == 0);
    free(got);
    CHECK(lmp_chat_default_system(cut, sizeof(cut) - 7) == NULL); /* the closing quote cut off */
}

static void test_smollm2_ids(void) {
    const char *path = check_cache_file(0, CHECK_SMOLLM2_GGUF);
    if (!check_have_file(path)) return;
    struct lmp_model     *m   = NULL;
    struct lmp_tokenizer *tok = NULL;
    struct lmp_err        err = {0};
    CHECK(lmp_model_open(path, &m, &err) == LMP_OK);
    CHECK(m && lmp_tokenizer_open(NULL, m, &tok, &err) == LMP_OK);
    int32_t start = -1, end = -1;
    CHECK(m && lmp_chat_chatml(m, &start, &end) && start == 1 && end == 2);
    char *sys = m ? lmp_chat_model_default_system(m) : NULL;
    CHECK(sys && strcmp(sys, "You are a helpful AI assistant named SmolLM, trained by "
                             "Hugging Face") == 0);
    /* transformers 5.23, AutoTokenizer of `lmpress export`'s directory:
     * apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
     * add_generation_prompt=True) */
    static const int32_t want[] = {1,    9690, 198,   2683, 359,  253,  5356, 5646,  11173, 3365,
                                   3511, 308,  34519, 28,   7018, 411,  407,  19712, 8182,  2,
                                   198,  1,    4093,  198,  1780, 314,  260,  3575,  282,   4649,
                                   47,   2,    198,   1,    520,  9531, 198};
    int32_t             *ids    = NULL;
    int64_t              n      = 0;
    if (tok && sys) {
        CHECK(lmp_chat_encode(tok, sys, "What is the capital of France?", start, end, &ids, &n,
                              &err) == LMP_OK);
        CHECK(n == (int64_t)(sizeof(want) / sizeof(want[0])) &&
              memcmp(ids, want, sizeof(want)) == 0);
        free(ids);
        /* no system turn: the same without its first 21 ids */
        CHECK(lmp_chat_encode(tok, "", "What is the capital of France?", start, end, &ids, &n,
                              &err) == LMP_OK);
        CHECK(n == 16 && ids && memcmp(ids, want + 21, 16 * sizeof(int32_t)) == 0);
        free(ids);
    }
    free(sys);
    lmp_tokenizer_free(&tok);
    lmp_model_close(&m);
}

int main(void) {
    RUN(test_default_system);
    RUN(test_smollm2_ids);
    return check_report();
}
