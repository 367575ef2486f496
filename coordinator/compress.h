/*  compress - the artifact form of a worker's task result
 *
 *  A quantization task (worker/compress.h) returns codes, codebooks and scales (AQLM) or
 *  integer levels with f16 scales and zeros (RTN); the coordinator commits them to the
 *  artifact (artifact/artifact.h) as a struct lmp_art_layer converted here, whichever
 *  worker, shard layout or fine-tuning produced them, so every run stores a layer the
 *  same way.
 */
#ifndef LMP_COORDINATOR_COMPRESS_H
#define LMP_COORDINATOR_COMPRESS_H

#include "artifact/artifact.h" /* defines: struct lmp_art_layer */
#include "base/status.h"       /* defines: enum lmp_status, struct lmp_err */
#include "worker/compress.h"   /* defines: struct lmp_compress_result, lmp_compress_spec */

/* The artifact form of one task result: arrays of r are copied into *l, which the caller
 * releases with lmp_art_layer_release (also after an error). Only r's method, shape,
 * aq / rtn_* arrays and statistics are read (w_hat may be NULL); RTN's w_hat = z + s q is
 * stored as w = scale * (q - zero) with scale = s, zero = -z / s (a constant group, s = 0:
 * scale = z, zero = -1). RET LMP_OK, LMP_ENOMEM, LMP_EINVAL (an AQLM result without AQ
 * arrays). */
enum lmp_status lmp_compress_result_to_layer(struct lmp_art_layer             *l,
                                             const struct lmp_compress_result *r,
                                             const struct lmp_compress_spec *spec, const char *name,
                                             struct lmp_err *err);

#endif /* LMP_COORDINATOR_COMPRESS_H */
