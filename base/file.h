/*  file - read-only memory maps and whole-file reads with error messages
 *
 *  Model readers map their source files once and hand out pointers into the
 *  map; the kernel pages in only what a stage touches, so a reader never holds
 *  more than the stage needs. A map is immutable and may be shared by threads.
 */
#ifndef LMP_BASE_FILE_H
#define LMP_BASE_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "base/status.h" /* defines: enum lmp_status, struct lmp_err */

struct lmp_map {
    const uint8_t *data; /* NULL for an empty file */
    size_t         size; /* bytes */
    char          *path; /* owned copy, for messages */
};

/* Map path read-only. An empty file maps to data == NULL, size 0 (not an error here:
 * the caller decides). RET LMP_OK, LMP_ENOENT (missing), LMP_EIO (unreadable, a directory). */
enum lmp_status lmp_map_open(struct lmp_map *m, const char *path, struct lmp_err *err);
void            lmp_map_close(struct lmp_map *m);

/* Drop the resident pages of [p, p + n) (the whole pages inside it) when the range lies
 * inside one map opened by lmp_map_open: pages read stay counted in the process's RSS
 * until released, so a stage that walks a model block by block releases each block's
 * source tensors after use. The data stays valid: a later read pages it in again from
 * the file. Anything else (heap buffers, a range crossing a map's end) is left alone.
 * Thread-safe. RET bytes released (0 if nothing was). */
size_t lmp_map_release_pages(const void *p, size_t n);

/* Read a whole file into a NUL-terminated heap buffer (*out, *len excludes the NUL).
 * RET LMP_OK, LMP_ENOENT, LMP_EIO, LMP_ENOMEM. */
enum lmp_status lmp_file_read_all(const char *path, char **out, size_t *len, struct lmp_err *err);

/* Does path exist and is it a directory / regular file? */
int lmp_path_is_dir(const char *path);
int lmp_path_is_file(const char *path);

/* fsync path, a file or (dir) a directory, making a rename in it durable. RET 0, or -1 with
 * errno set. */
int lmp_fsync_path(const char *path, bool dir);

#endif /* LMP_BASE_FILE_H */
