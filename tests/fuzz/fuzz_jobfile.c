/*  fuzz_jobfile - libFuzzer target for the JOB file parser (cli/jobopts.h)
 *
 *  Any input must give LMP_OK or a one-line "FILE:LINE: problem" error, never a crash,
 *  a leak or an out-of-bounds read; an accepted file must also convert to a JobSpec and
 *  pack. Seeds: tests/fuzz/corpus/fuzz_jobfile/.
 */
#include "cli/jobopts.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct lmp_jobopts o;
    struct lmp_err     err = {0};
    lmp_jobopts_init(&o);
    enum lmp_status st =
        lmp_jobopts_load_buffer(&o, "dir/fuzz.job", (const char *)data, size, &err);
    if (st == LMP_OK) {
        struct lmp_jobopts_pb pb;
        lmp_jobopts_to_jobspec(&o, &pb);
        size_t   n   = lmp__job_spec__get_packed_size(&pb.spec);
        uint8_t *buf = malloc(n + 1);
        if (buf) lmp__job_spec__pack(&pb.spec, buf);
        free(buf);
        (void)lmp_jobopts_check(&o, &err);
    } else if (strchr(err.msg, '\n') != NULL || strncmp(err.msg, "dir/fuzz.job:", 13) != 0) {
        if (st == LMP_EINVAL) abort(); /* a parse error must name the file and line */
    }
    lmp_jobopts_release(&o);
    return 0;
}
