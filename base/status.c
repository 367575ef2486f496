/*  status - see status.h */
#include "base/status.h"

#include <stdio.h>

const char *lmp_status_str(enum lmp_status st) {
    switch (st) {
    case LMP_OK:
        return "OK";
    case LMP_EINVAL:
        return "EINVAL";
    case LMP_ENOMEM:
        return "ENOMEM";
    case LMP_EIO:
        return "EIO";
    case LMP_EPROTO:
        return "EPROTO";
    case LMP_EVERSION:
        return "EVERSION";
    case LMP_ENODEV:
        return "ENODEV";
    case LMP_ECANCEL:
        return "ECANCEL";
    case LMP_EFORMAT:
        return "EFORMAT";
    case LMP_EUNSUP:
        return "EUNSUP";
    case LMP_ENOENT:
        return "ENOENT";
    case LMP_ENOSPC:
        return "ENOSPC";
    case LMP_EMISMATCH:
        return "EMISMATCH";
    case LMP_EBUSY:
        return "EBUSY";
    case LMP_EPERM:
        return "EPERM";
    }
    return "E?";
}

static enum lmp_status err_vset(struct lmp_err *err, int keep, enum lmp_status code,
                                const char *fmt, va_list ap) {
    if (err == NULL) return code;
    if (keep && err->code != LMP_OK && err->msg[0] != '\0') return code;
    err->code = code;
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    return code;
}

enum lmp_status lmp_err_set(struct lmp_err *err, enum lmp_status code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    err_vset(err, 1, code, fmt, ap);
    va_end(ap);
    return code;
}

enum lmp_status lmp_err_reset(struct lmp_err *err, enum lmp_status code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    err_vset(err, 0, code, fmt, ap);
    va_end(ap);
    return code;
}
