/*  fuzz_chat - lmp_chat_default_system on arbitrary template bytes (a GGUF's
 *  tokenizer.chat_template is untrusted text): no read past the n bytes, and a result, when
 *  there is one, shorter than the template. */
#include "model/chat.h" /* defines: lmp_chat_default_system */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *tmpl = malloc(size ? size : 1); /* exactly size bytes: ASan sees any over-read */
    if (tmpl == NULL) return 0;
    if (size) memcpy(tmpl, data, size);
    char *sys = lmp_chat_default_system(tmpl, size);
    if (sys && strlen(sys) >= size) abort();
    free(sys);
    free(tmpl);
    return 0;
}
