/*  status - the error vocabulary shared by every lmpress program and library
 *
 *  Environmental failures (I/O, bad input, OOM, bad peer data) travel as
 *  enum lmp_status, with a human message in struct lmp_err filled where the
 *  context is (file name, tensor name, peer). Library code never exits.
 *  The names returned by lmp_status_str() are stable: they also go on the wire.
 */
#ifndef LMP_BASE_STATUS_H
#define LMP_BASE_STATUS_H

#include <stdarg.h>

enum lmp_status {
    LMP_OK        = 0,
    LMP_EINVAL    = -1, /* caller passed something invalid */
    LMP_ENOMEM    = -2,
    LMP_EIO       = -3,  /* file, HDF5 or socket failure */
    LMP_EPROTO    = -4,  /* malformed or unexpected message */
    LMP_EVERSION  = -5,  /* peer speaks another protocol version */
    LMP_ENODEV    = -6,  /* requested device or kernel variant not available */
    LMP_ECANCEL   = -7,  /* job cancelled or shutdown requested */
    LMP_EFORMAT   = -8,  /* file contents malformed: bad magic, truncated, out-of-range offsets */
    LMP_EUNSUP    = -9,  /* well-formed but not supported: dtype, architecture, version */
    LMP_ENOENT    = -10, /* file, tensor or key missing */
    LMP_ENOSPC    = -11, /* disk full */
    LMP_EMISMATCH = -12, /* artifact/job belongs to another model, data or scheme */
    LMP_EBUSY     = -13, /* peer is busy with other work: try again later (not a failure) */
    LMP_EPERM     = -14, /* not allowed: the peer's key is not authorized for this */
};

/* Stable short name ("EIO"); "E?" for unknown values. */
const char *lmp_status_str(enum lmp_status st);

/* Filled at API boundaries; msg is one line, lowercase, no final full stop. */
struct lmp_err {
    enum lmp_status code;
    char            msg[512];
};

/* Set err (if not NULL) to code and the formatted message; return code.
 * A message already set is kept (the innermost context wins) unless it is empty. */
enum lmp_status lmp_err_set(struct lmp_err *err, enum lmp_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Like lmp_err_set but always overwrites. */
enum lmp_status lmp_err_reset(struct lmp_err *err, enum lmp_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif /* LMP_BASE_STATUS_H */
