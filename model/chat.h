/*  chat - a prompt as a chat turn, for instruct models whose template is ChatML
 *
 *  A GGUF model (or an artifact of one, which keeps its tokenizer metadata) declares its
 *  chat template in tokenizer.chat_template, a Jinja program. lmpress does not run Jinja: it
 *  recognizes ChatML (SmolLM2-Instruct, Qwen2/2.5-Instruct, and what else uses
 *  <|im_start|> / <|im_end|>) and builds the turns itself:
 *
 *      [BOS] <|im_start|>system\nSYSTEM<|im_end|>\n        (when there is a system turn)
 *            <|im_start|>user\nPROMPT<|im_end|>\n<|im_start|>assistant\n
 *
 *  each text between the markers encoded on its own, as a Hugging Face tokenizer splits
 *  special tokens out of the rendered template. The system turn is the caller's, or the
 *  template's default: the quoted literal "<|im_start|>system\n...<|im_end|>" that templates
 *  such as SmolLM2's and Qwen2.5's emit when the conversation has no system message.
 */
#ifndef LMP_MODEL_CHAT_H
#define LMP_MODEL_CHAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "base/status.h"     /* defines: enum lmp_status, struct lmp_err */
#include "model/model.h"     /* defines: struct lmp_model */
#include "model/tokenizer.h" /* defines: struct lmp_tokenizer */

/* The ids of <|im_start|> and <|im_end|> when m's GGUF metadata declares a chat template
 * using them and its vocabulary (within the model's) has both; else false. */
bool lmp_chat_chatml(const struct lmp_model *m, int32_t *start, int32_t *end);

/* The template's default system message: the text of the first quoted literal (' or ")
 * that starts "<|im_start|>system" + a newline (or the escape \n) and ends "<|im_end|>"
 * (optionally + newline) before its closing quote, with \n, \t, \\, \' and \" unescaped;
 * malloc'ed, NUL-terminated. NULL if the template (n bytes, not NUL-terminated) has none,
 * the literal is not closed, or memory runs out. */
char *lmp_chat_default_system(const char *tmpl, size_t n);

/* m's template's default system message (lmp_chat_default_system), or NULL. */
char *lmp_chat_model_default_system(const struct lmp_model *m);

/* The turns above as ids: system (NULL or "": none), prompt as the user turn. *ids
 * malloc'ed, owned by the caller. RET LMP_OK or what encoding returns (LMP_ENOMEM, ...). */
enum lmp_status lmp_chat_encode(const struct lmp_tokenizer *tok, const char *system,
                                const char *prompt, int32_t start, int32_t end, int32_t **ids,
                                int64_t *n_ids, struct lmp_err *err);

#endif /* LMP_MODEL_CHAT_H */
