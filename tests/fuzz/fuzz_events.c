/*  fuzz_events - libFuzzer target for lmp_events_parse (the artifact's event log)
 *
 *  Parses the input as an events file. Whatever it is, the parse must stay inside the
 *  buffer, account for every byte (valid_end + n_dropped == size when the header is
 *  good), return NUL-terminated strings within their fields, and a good record must
 *  encode back to the very bytes it was read from when the file has no bad records.
 */
#include "artifact/events.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct lmp_event_list  l = {0};
    struct lmp_events_scan scan;
    struct lmp_err         err = {0};
    enum lmp_status        st  = lmp_events_parse(data, size, "fuzz", &l, &scan, &err);
    if (st == LMP_OK) {
        if (scan.valid_end > size || scan.valid_end + scan.n_dropped != size) abort();
        if (scan.n_records != l.n) abort();
        size_t         pos = LMP_EVENTS_HEADER;
        static uint8_t rec[LMP_EVENTS_PAYLOAD_MAX + 16];
        for (int64_t i = 0; i < l.n; i++) {
            const struct lmp_event *e = &l.ev[i];
            if (strnlen(e->kind, sizeof(e->kind)) == sizeof(e->kind) ||
                strnlen(e->worker, sizeof(e->worker)) == sizeof(e->worker) ||
                strnlen(e->layer, sizeof(e->layer)) == sizeof(e->layer) ||
                strnlen(e->message, sizeof(e->message)) == sizeof(e->message))
                abort();
            const size_t n = lmp_events_encode(e, rec);
            if (scan.n_bad == 0) {
                if (pos + n > size || memcmp(data + pos, rec, n) != 0) abort();
                pos += n;
            }
        }
    } else if (err.msg[0] == '\0') {
        abort(); /* a refusal always says why */
    }
    lmp_event_list_release(&l);
    return 0;
}
