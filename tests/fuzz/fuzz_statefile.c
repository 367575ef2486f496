/*  fuzz_statefile - libFuzzer target for the coordinator's state file (--state DIR/job.pb)
 *
 *  A restarted coordinator reads DIR/job.pb with lmp__job_spec__unpack (coordinator/
 *  coord.c) and plans the job it holds as if a client had submitted it. This target does
 *  the reading part on any bytes: unpack, walk every field (strings to their end,
 *  repeated fields end to end), pack again (the same length), then the checks a submitted
 *  spec gets on the wire (lmp_wire_validate of a JobSubmit carrying it). A refusal must
 *  be one line. Any crash, sanitizer report, leak or abort is a finding. Seeds:
 *  tests/fuzz/corpus/fuzz_statefile/ (packed JobSpecs).
 */
#include "proto/wire.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static volatile uint64_t sink;

static void walk_str(const char *s) {
    sink += s ? strlen(s) : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    Lmp__JobSpec *spec = lmp__job_spec__unpack(NULL, size, data);
    if (spec == NULL) return 0; /* the coordinator logs "not a job spec" and ignores it */
    walk_str(spec->model_path), walk_str(spec->tokenizer_path), walk_str(spec->out_path);
    walk_str(spec->name);
    for (size_t i = 0; i < spec->n_keep; i++) walk_str(spec->keep[i]);
    if (spec->calib) walk_str(spec->calib->path), sink += spec->calib->nsamples + spec->calib->ctx;
    const size_t n   = lmp__job_spec__get_packed_size(spec);
    uint8_t     *buf = malloc(n ? n : 1);
    if (buf == NULL || lmp__job_spec__pack(spec, buf) != n) abort();
    free(buf);
    Lmp__Envelope  env;
    Lmp__JobSubmit js  = LMP__JOB_SUBMIT__INIT;
    struct lmp_err err = {0};
    lmp_wire_init(&env, 0, 0);
    js.spec        = spec;
    env.body_case  = LMP__ENVELOPE__BODY_JOB_SUBMIT;
    env.job_submit = &js;
    if (lmp_wire_validate(&env, "state", &err) != LMP_OK && strchr(err.msg, '\n') != NULL) abort();
    lmp__job_spec__free_unpacked(spec, NULL);
    return 0;
}
