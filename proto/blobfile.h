/*  blobfile - payloads too big for a frame, stored as files the peers share
 *
 *  A frame holds at most LMP_WIRE_MAX_FRAME bytes (protobuf-c's own limit is 2 GiB), but a
 *  7B block's calibration sums are 1.37 GB and a 70B down_proj's H is 3.3 GB. Such a
 *  payload goes by reference instead: the sender writes it to the job's spool directory
 *  (on storage every node mounts, next to the artifact unless the job names another) and
 *  sends a BlobRef (path, offset, length, XXH64); the receiver reads and checks it. The
 *  frames that carry heartbeats stay small, and no one packs a gigabyte on an event loop.
 *
 *      uint64_t h[2];
 *      lmp_blobfile_write(path, parts, lens, 2, h, &err);     // atomic: tmp + rename
 *      lmp_blobfile_read(path, off, len, h[0], dst, &err);    // checks size and checksum
 *
 *  Errors name the file and the problem; a failed write leaves no file behind.
 */
#ifndef LMP_PROTO_BLOBFILE_H
#define LMP_PROTO_BLOBFILE_H

#include "base/status.h" /* defines: enum lmp_status, struct lmp_err */

#include <stddef.h>
#include <stdint.h>

/* Default size above which one payload goes by reference: 64 MiB. */
#define LMP_BLOB_INLINE_MAX ((uint64_t)64 << 20)

/* The size above which a payload goes by reference: LMP_INLINE_MAX from the environment
 * (bytes, >= 1; tests set it to 1 to send everything through the spool), else
 * LMP_BLOB_INLINE_MAX. A value that is not a positive integer is ignored with a warning. */
uint64_t lmp_blob_inline_max(void);

/* Write the n parts, one after the other, to path (through path.tmp, renamed when every byte
 * is written and flushed to the page cache); xxh[i] = XXH64 (seed 0) of part i. The part i
 * starts at offset lens[0] + ... + lens[i-1]. LMP_ENOSPC on a full disk, LMP_EIO otherwise;
 * the temporary file is removed on failure. */
enum lmp_status lmp_blobfile_write(const char *path, const void *const *parts, const uint64_t *lens,
                                   size_t n, uint64_t *xxh, struct lmp_err *err);

/* Read length bytes at offset from path into dst, and check them against xxh (required:
 * 0 is refused, a reference without a checksum is not trusted). LMP_ENOENT for a missing
 * file, LMP_EFORMAT for a file too short or a checksum that differs, LMP_EIO otherwise. */
enum lmp_status lmp_blobfile_read(const char *path, uint64_t offset, uint64_t length, uint64_t xxh,
                                  void *dst, struct lmp_err *err);

/* "<dir>/cal-j<job>-t<task>-a<attempt>.f64", on the heap (NULL: out of memory): where a
 * calibration task's sums go when they are too big for a frame. The coordinator accepts a
 * reference to this path and no other (the name is the agreement; a worker does not choose
 * where the coordinator reads). */
char *lmp_blobfile_cal_path(const char *dir, uint64_t job, uint64_t task, uint32_t attempt);

#endif /* LMP_PROTO_BLOBFILE_H */
