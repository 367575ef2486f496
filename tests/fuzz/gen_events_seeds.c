/*  gen_events_seeds - writes the seed corpus of fuzz_events (small event-log files)
 *
 *      cmake --build build --target lmp_coord && \
 *      cc -I. -Ibuild -o /tmp/gen_events_seeds tests/fuzz/gen_events_seeds.c \
 *          build/coordinator/liblmp_coord.a build/proto/liblmp_proto.a build/proto/liblmp_base.a &&
 * \ /tmp/gen_events_seeds tests/fuzz/corpus/fuzz_events
 *
 *  Not built by CMake (only tests/fuzz/fuzz_*.c are); deterministic output.
 */
#include "artifact/events.h"

#include <stdio.h>
#include <string.h>

static uint8_t buf[1 << 16];

static void save(const char *dir, const char *name, size_t n) {
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(buf, 1, n, f) != n || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        return;
    }
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: gen_events_seeds DIR\n");
        return 2;
    }
    static const char *const kinds[] = {"open",   "assigned", "started", "progress", "done",
                                        "failed", "requeued", "gone",    "finalize"};
    lmp_events_header(buf, 0x1234567890abcdefull);
    size_t n = LMP_EVENTS_HEADER, ends[16];
    for (int i = 0; i < 9; i++) {
        struct lmp_event e;
        char             msg[128];
        snprintf(msg, sizeof(msg), "step %d loss %.4g", i * 10, 1.0 / (i + 1));
        lmp_event_set(&e, 1700000000000ull + (uint64_t)i * 1000, 1 + (i > 5), i % 4, kinds[i],
                      i % 2 ? "worker-1" : "", i % 3 ? "model.layers.0.self_attn.q_proj" : "", msg);
        n += lmp_events_encode(&e, buf + n);
        ends[i] = n;
    }
    save(argv[1], "nine_events.seed", n);
    save(argv[1], "torn_tail.seed", n - 7);
    save(argv[1], "header_only.seed", LMP_EVENTS_HEADER);
    save(argv[1], "torn_header.seed", 20);
    buf[ends[3] + 14] ^= 0x20; /* a payload byte of record 5 */
    save(argv[1], "bad_checksum.seed", n);
    return 0;
}
