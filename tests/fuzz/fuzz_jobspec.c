/*  fuzz_jobspec - libFuzzer target for a client's JobSpec as the coordinator checks it
 *
 *  What a JobSubmit carries reaches the coordinator's planner (coordinator/plan.c) after
 *  two kinds of checks: the spec alone (lmp_job_spec_check, coordinator/job_check.h: the
 *  wire checks, also run on a spec read back from --state) and the spec against the model
 *  (lmp_job_check: --keep patterns, the scheme's fit, through lmp_agent_method_spec). This
 *  target runs both on any bytes, against a tiny in-memory model (tests/tiny_model.h), with
 *  no calibration file (the target must not open paths from its input). A refusal must be
 *  one line. Any crash, sanitizer report, leak or abort is a finding. Seeds:
 *  tests/fuzz/corpus/fuzz_jobspec/ (packed JobSpecs; fuzz_statefile's seeds are the same
 *  format).
 */
#include "coordinator/job_check.h" /* defines: lmp_job_spec_check, lmp_job_check */
#include "worker/agent.h"          /* defines: lmp_agent_method_spec */
#include "tests/tiny_model.h"      /* defines: build, struct spec */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static struct lmp_model *model;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (model == NULL) {
        (void)random_tokens; /* tiny_model.h's, not needed here */
        const struct spec sp = {.rope = LMP_ROPE_INTERLEAVED, .n_heads = 4, .n_kv_heads = 2};
        if ((model = build(&sp, 1)) == NULL) abort();
    }
    Lmp__JobSpec *spec = lmp__job_spec__unpack(NULL, size, data);
    if (spec == NULL) return 0; /* the wire layer refuses it as EPROTO */
    struct lmp_err err = {0};
    if (lmp_job_spec_check(spec, "fuzz", &err) != LMP_OK) {
        if (strchr(err.msg, '\n') != NULL) abort();
        lmp__job_spec__free_unpacked(spec, NULL);
        return 0;
    }
    if (spec->tune) { /* a tuning job: the planner only looks for its files (coord.c) */
        lmp__job_spec__free_unpacked(spec, NULL);
        return 0;
    }
    /* what the planner does next, up to opening the model: the method, then the checks
     * against the model */
    struct lmp_compress_spec cs;
    err = (struct lmp_err){0};
    if (lmp_agent_method_spec(spec->method, &cs, &err) == LMP_OK) {
        err              = (struct lmp_err){0};
        const bool train = spec->finetune && spec->finetune->enabled;
        if (lmp_job_check(model, &cs, (const char *const *)spec->keep, (int)spec->n_keep, NULL,
                          train, &err) != LMP_OK &&
            strchr(err.msg, '\n') != NULL)
            abort();
    } else if (strchr(err.msg, '\n') != NULL) {
        abort();
    }
    lmp__job_spec__free_unpacked(spec, NULL);
    return 0;
}
