/*  fuzz_artifact - libFuzzer target for the artifact reader (artifact/artifact.h,
 *  artifact/artifact_model.h)
 *
 *  `lmpress eval --artifact`, `inspect`, `logs` and a resumed job read ART.h5 files that
 *  may be truncated, corrupt or crafted. Two modes:
 *
 *  - LMP_FUZZ_HDF5=1: the input bytes are the main file of an artifact (no parts
 *    directory); it is opened with lmp_artifact_open_read, every layer, tensor, the
 *    tokenizer and the events are read back, it is closed, and the compressed model is
 *    built from it (lmp_artifact_model_open, and lmp_artifact_model_load with the layers
 *    kept as codes). Every failure must be a status with a
 *    one-line message, and no HDF5 identifier may stay open. libhdf5 1.10.8 (Debian 12)
 *    overflows its heap within seconds here, decoding the object-header messages of a
 *    corrupt file (H5Aexists -> H5O__msg_iterate_real), before lmpress sees anything:
 *    the main file carries no checksum lmpress could verify first (docs/artifact.md,
 *    "Corrupt files"). Run it by hand to look past those.
 *  - default (ctest): the input is a committed part file (ART.h5.parts/layer-<name>-
 *    <xxh64>.h5), the path lmpress guards itself: its bytes must hash to the name before
 *    HDF5 reads them, so a part whose bytes do not match is refused in one line
 *    (LMP_EFORMAT) and never reaches libhdf5; the name is taken from the seed's hash
 *    for the seed's own bytes, so valid parts are read through too.
 *
 *  Any crash, sanitizer report, leak or abort is a finding. Seeds:
 *  tests/fuzz/corpus/fuzz_artifact/ (a finalized two-layer artifact from the writer:
 *  two_layers.h5 in format 1, two_layers_v2.h5 its format-2 copy by bench/bench_art_size).
 */
#include "artifact/artifact.h"       /* defines: lmp_artifact_open_read, lmp_artifact_read_* */
#include "artifact/artifact_model.h" /* defines: lmp_artifact_model_open */
#include "artifact/events.h"         /* defines: struct lmp_event_list */
#include "base/hash.h"               /* defines: lmp_xxh64 */
#include "model/tokenizer.h"         /* defines: lmp_tokenizer_free */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <inttypes.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char path[64], dir[64];

/* libhdf5 (1.10) leaks blocks of its own on some corrupt files, with nothing of ours
 * open (lmp_artifact_n_open_ids() is 0 after every close, checked below): LeakSanitizer
 * is told to leave allocations made inside libhdf5 alone, and only those. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) {
    return "leak:libhdf5\n";
}

static void one_line(const struct lmp_err *err) {
    if (strchr(err->msg, '\n') != NULL) abort();
}

static void write_file(const char *p, const uint8_t *data, size_t size) {
    FILE *f = fopen(p, "wb");
    if (f == NULL || fwrite(data, 1, size, f) != size || fclose(f) != 0) abort();
}

/* default mode: data as the part of layer "model.layers.0.mlp.up_proj", named with the
 * hash of its first half (the whole input's hash when it is short): a part that does not
 * match its name must be refused before libhdf5 reads it */
static void fuzz_part(const uint8_t *data, size_t size) {
    char parts[96], part[192];
    snprintf(parts, sizeof(parts), "%s.parts", path);
    mkdir(parts, 0755);
    const size_t   hashed = size < 64 ? size : size / 2;
    const uint64_t h      = lmp_xxh64(data, hashed, 0);
    snprintf(part, sizeof(part), "%s/layer-model.layers.0.mlp.up_proj-%016" PRIx64 ".h5", parts, h);
    write_file(part, data, size);
    struct lmp_artifact *a   = NULL;
    struct lmp_err       err = {0};
    enum lmp_status      st  = lmp_artifact_open_read(path, &a, &err);
    if (st != LMP_OK) one_line(&err);
    if (st == LMP_OK && hashed != size && lmp_xxh64(data, size, 0) != h) abort(); /* unchecked */
    lmp_artifact_close(&a);
    if (lmp_artifact_n_open_ids() != 0) abort();
    unlink(part);
    rmdir(parts);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (path[0] == '\0') {
        snprintf(dir, sizeof(dir), "/tmp/lmp_fuzz_artifact_XXXXXX");
        if (mkdtemp(dir) == NULL) abort();
        snprintf(path, sizeof(path), "%s/a.h5", dir);
    }
    const char *hdf5 = getenv("LMP_FUZZ_HDF5");
    if (hdf5 == NULL || strcmp(hdf5, "1") != 0) {
        fuzz_part(data, size);
        return 0;
    }
    write_file(path, data, size);

    struct lmp_artifact *a   = NULL;
    struct lmp_err       err = {0};
    if (lmp_artifact_open_read(path, &a, &err) == LMP_OK) {
        for (int64_t i = 0; i < lmp_artifact_n_layers(a); i++) {
            struct lmp_art_layer l = {0};
            err                    = (struct lmp_err){0};
            if (lmp_artifact_read_layer(a, lmp_artifact_layer_name(a, i), &l, &err) != LMP_OK)
                one_line(&err);
            lmp_art_layer_release(&l);
        }
        for (int64_t i = 0; i < lmp_artifact_n_tensors(a); i++) {
            struct lmp_art_tensor t = {0};
            err                     = (struct lmp_err){0};
            if (lmp_artifact_read_tensor(a, lmp_artifact_tensor_name(a, i), &t, &err) != LMP_OK)
                one_line(&err);
            lmp_art_tensor_release(&t);
        }
        enum lmp_art_tok kind;
        uint8_t         *bytes = NULL;
        size_t           n     = 0;
        err                    = (struct lmp_err){0};
        if (lmp_artifact_read_tokenizer(a, &kind, &bytes, &n, &err) != LMP_OK) one_line(&err);
        free(bytes);
        struct lmp_event_list ev = {0};
        err                      = (struct lmp_err){0};
        if (lmp_artifact_read_events(a, &ev, &err) != LMP_OK) one_line(&err);
        lmp_event_list_release(&ev);
    } else {
        one_line(&err);
    }
    lmp_artifact_close(&a);
    if (lmp_artifact_n_open_ids() != 0) abort(); /* a handle left open */

    struct lmp_model     *m   = NULL;
    struct lmp_tokenizer *tok = NULL;
    err                       = (struct lmp_err){0};
    if (lmp_artifact_model_open(path, &m, &tok, &err) != LMP_OK) one_line(&err);
    lmp_tokenizer_free(&tok);
    lmp_model_close(&m);
    if (lmp_artifact_n_open_ids() != 0) abort();
    err = (struct lmp_err){0}; /* the inference model: layers kept as codes */
    if (lmp_artifact_model_load(path, LMP_ART_WEIGHTS_CODES, &m, NULL, &err) != LMP_OK)
        one_line(&err);
    lmp_model_close(&m);
    if (lmp_artifact_n_open_ids() != 0) abort();
    unlink(path);
    return 0;
}
