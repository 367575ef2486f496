/*  payload - see payload.h */
#include "proto/payload.h"

#include <stdio.h>

static const char *const names[] = {
    [LMP__PAYLOAD__PAYLOAD_UNSPECIFIED] = "",      [LMP__PAYLOAD__PAYLOAD_GRAM] = "gram",
    [LMP__PAYLOAD__PAYLOAD_TOKENS] = "tokens",     [LMP__PAYLOAD__PAYLOAD_QFROM] = "qfrom",
    [LMP__PAYLOAD__PAYLOAD_SHIPPED] = "q/",        [LMP__PAYLOAD__PAYLOAD_HELD] = "ft/",
    [LMP__PAYLOAD__PAYLOAD_CODES] = "codes",       [LMP__PAYLOAD__PAYLOAD_CODEBOOKS] = "codebooks",
    [LMP__PAYLOAD__PAYLOAD_SCALES] = "scales",     [LMP__PAYLOAD__PAYLOAD_ATTN_NORM] = "attn_norm",
    [LMP__PAYLOAD__PAYLOAD_FFN_NORM] = "ffn_norm", [LMP__PAYLOAD__PAYLOAD_RTN_Q] = "q",
    [LMP__PAYLOAD__PAYLOAD_RTN_SCALE] = "scale",   [LMP__PAYLOAD__PAYLOAD_RTN_ZERO] = "zero",
};

const char *lmp_payload_name(Lmp__Payload p) {
    const size_t i = (size_t)p;
    return i < sizeof(names) / sizeof(names[0]) && names[i] ? names[i] : "";
}

char *lmp_payload_layer(char *buf, size_t n, Lmp__Payload prefix, const char *name,
                        Lmp__Payload part) {
    if (part == LMP__PAYLOAD__PAYLOAD_UNSPECIFIED)
        snprintf(buf, n, "%s%s", lmp_payload_name(prefix), name);
    else
        snprintf(buf, n, "%s%s/%s", lmp_payload_name(prefix), name, lmp_payload_name(part));
    return buf;
}
