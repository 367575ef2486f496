/*  fuzz_hf_config - libFuzzer target for the Hugging Face config.json reader (model/model_hf.c)
 *
 *  The input is written as DIR/config.json of a directory without weights and the
 *  directory opened with lmp_model_open: the config is parsed and checked in full (every
 *  field, its bounds, heads dividing), then the reader stops at the missing
 *  model.safetensors. Any input must give an error naming a path, never a
 *  crash, a leak or an out-of-bounds read. Seeds: tests/fuzz/corpus/fuzz_hf_config/.
 */
#include "model/model.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[64], cfg[96];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (dir[0] == '\0') {
        snprintf(dir, sizeof(dir), "/tmp/fuzz_hf_config_%d", (int)getpid());
        snprintf(cfg, sizeof(cfg), "%s/config.json", dir);
        mkdir(dir, 0755);
    }
    FILE *f = fopen(cfg, "wb");
    if (f == NULL) abort();
    if (size && fwrite(data, 1, size, f) != size) abort();
    fclose(f);
    struct lmp_model *m   = NULL;
    struct lmp_err    err = {0};
    if (lmp_model_open(dir, &m, &err) == LMP_OK) abort(); /* there are no weights */
    /* naming the file (not yet: one line; a value such as hidden_act is quoted raw) */
    if (strstr(err.msg, dir) == NULL) abort();
    lmp_model_close(&m);
    unlink(cfg);
    return 0;
}
