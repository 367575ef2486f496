/*  fuzz_safetensors - libFuzzer target for the safetensors header parser
 *
 *  Parses the input with lmp_safetensors_parse_header and, when it is accepted, reads
 *  the first and last byte of every tensor's range and dequantizes the first row of
 *  every tensor lmpress can use, so ASan sees any range the parser let through
 *  outside the input. Any crash, sanitizer report or leak is a finding.
 */
#include "model/safetensors.h"
#include "kernels/kernels.h" /* defines: lmp_dequant_row_ref() */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static volatile uint64_t sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct lmp_safetensors st;
    struct lmp_err         err = {0};
    if (lmp_safetensors_parse_header(data, size, "fuzz", &st, &err) == LMP_OK) {
        const uint8_t *base = data + st.data_offset;
        for (int64_t i = 0; i < st.n_tensors; i++) {
            const struct lmp_st_tensor *t = &st.tensors[i];
            sink += strlen(t->name) + strlen(t->dtype_name);
            if (t->end > t->begin) sink += base[t->begin] + base[t->end - 1];
            if (t->unsup || t->end == t->begin) continue;
            int64_t cols = t->n_dims > 0 ? t->shape[t->n_dims - 1] : 1;
            float  *row  = malloc((size_t)cols * sizeof(float));
            if (row == NULL) continue;
            lmp_dequant_row_ref((int)t->dtype, base + t->begin, row, cols);
            sink += (uint64_t)(row[cols - 1] == row[cols - 1]);
            free(row);
        }
        if (st.n_tensors > 0)
            sink += (uint64_t)(lmp_safetensors_find(&st, st.tensors[0].name) != NULL);
    } else {
        sink += strlen(err.msg); /* the message is a terminated string */
    }
    lmp_safetensors_release(&st);
    return 0;
}
