/*  fuzz_keys - libFuzzer target for the CURVE key-file parser and the bind policy
 *
 *  The input is a key file's contents (lmp_key_parse) and, as a C string, a bind endpoint
 *  (lmp_endpoint_is_local). An accepted key must be 40 Z85 characters that decode to 32
 *  bytes and encode back to themselves; a refused one must leave one line naming the
 *  file and an empty key. Any crash, sanitizer report or abort is a finding.
 */
#include "proto/keys.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct lmp_key  k;
    struct lmp_err  err = {0};
    enum lmp_status st  = lmp_key_parse((const char *)data, size, "fuzz.pub", &k, &err);
    if (st == LMP_OK) {
        uint8_t raw[32];
        char    back[LMP_KEY_Z85_LEN + 1];
        if (strlen(k.z85) != LMP_KEY_Z85_LEN || zmq_z85_decode(raw, k.z85) == NULL ||
            zmq_z85_encode(back, raw, 32) == NULL || strcmp(back, k.z85) != 0)
            abort();
        if (size != LMP_KEY_Z85_LEN && !(size == LMP_KEY_Z85_LEN + 1 && data[size - 1] == '\n'))
            abort();
    } else if (st != LMP_EFORMAT || strstr(err.msg, "fuzz.pub") == NULL ||
               strchr(err.msg, '\n') != NULL || k.z85[0] != '\0') {
        abort();
    }
    char *ep = malloc(size + 1);
    if (ep == NULL) return 0;
    memcpy(ep, data, size);
    ep[size] = '\0';
    (void)lmp_endpoint_is_local(ep);
    free(ep);
    return 0;
}
