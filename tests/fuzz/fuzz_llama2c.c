/*  fuzz_llama2c - libFuzzer target for the llama2.c checkpoint reader (model/model_llama2c.c)
 *
 *  The input is written to a file (the reader maps a path) and opened with lmp_model_open
 *  (format detection, then the llama2.c header, sizes and layout; a GGUF magic goes to the
 *  GGUF reader). An accepted model is walked: the first and last byte of every tensor
 *  and of every linear's weight (the row views of split fused tensors too), and every
 *  linear's shape. A refusal must name the file. Any crash, sanitizer report, leak or
 *  abort is a finding. Seeds: tests/fuzz/corpus/fuzz_llama2c/ (small v0 and v1 files,
 *  tied and untied; GGUF llama, qwen3 and phi3 models from tests/fuzz/gen_arch_seeds.c).
 */
#include "model/model.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile uint64_t sink;
static char              path[64];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (path[0] == '\0') snprintf(path, sizeof(path), "/tmp/fuzz_llama2c_%d.bin", (int)getpid());
    FILE *f = fopen(path, "wb");
    if (f == NULL) abort();
    if (size && fwrite(data, 1, size, f) != size) abort();
    fclose(f);
    struct lmp_model *m   = NULL;
    struct lmp_err    err = {0};
    enum lmp_status   st  = lmp_model_open(path, &m, &err);
    if (st == LMP_OK) {
        for (int64_t i = 0; i < m->n_tensors; i++) {
            const struct lmp_tensor *t = &m->tensors[i];
            if (t->nbytes)
                sink += ((const uint8_t *)t->data)[0] + ((const uint8_t *)t->data)[t->nbytes - 1];
        }
        for (int64_t i = 0; i < lmp_model_n_linears(m); i++) {
            const struct lmp_linear *l = lmp_model_linear(m, i);
            sink += (uint64_t)(l->n_out * l->n_in);
            if (l->weight && l->weight->nbytes) /* a split part (Phi-3) is a view: its ends */
                sink += ((const uint8_t *)l->weight->data)[0] +
                        ((const uint8_t *)l->weight->data)[l->weight->nbytes - 1];
        }
        if (m->cfg.vocab_size < 2 || m->cfg.dim <= 0) abort(); /* the bounds every reader shares */
    } else if (strstr(err.msg, path) == NULL) {
        abort(); /* naming the file. (Not yet: one line. Outside text such as a GGUF key
                  * or tensor name can still bring a newline into a message; see issue 10,
                  * "binary bytes echoed raw".) */
    }
    lmp_model_close(&m);
    unlink(path);
    return 0;
}
