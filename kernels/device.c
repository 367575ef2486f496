/*  device - see device.h */
#include "kernels/device.h"
#ifdef LMP_HAVE_CUDA
#include "kernels/cuda/cuda_mem.h" /* defines: lmp_cuda_device_info, lmp_cuda_use */
#endif

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool lmp_device_name_ok(const char *name) {
    if (name == NULL) return false;
    if (strcmp(name, "cpu") == 0) return true;
    if (strncmp(name, "cuda:", 5) != 0) return false;
    const char *d = name + 5;
    size_t      n = strspn(d, "0123456789");
    return n >= 1 && n <= 4 && d[n] == '\0';
}

static enum lmp_status use_cuda(int index, struct lmp_device_sel *sel, struct lmp_err *err) {
#ifdef LMP_HAVE_CUDA
    struct lmp_cuda_info info;
    struct lmp_err       e  = {0};
    enum lmp_status      st = lmp_cuda_device_info(index, &info, &e);
    if (st == LMP_OK) st = lmp_cuda_use(index, &e);
    if (st != LMP_OK) return lmp_err_set(err, st, "cannot use cuda:%d: %s", index, e.msg);
    sel->device = LMP_DEVICE_CUDA;
    sel->index  = index;
    snprintf(sel->name, sizeof(sel->name), "cuda:%d", index);
    snprintf(sel->model, sizeof(sel->model), "%s", info.name);
    sel->memory_bytes = info.memory_bytes;
    sel->cc           = info.cc;
    return LMP_OK;
#else
    (void)sel;
    return lmp_err_set(err, LMP_ENODEV,
                       "cannot use cuda:%d: this lmpress was built without CUDA "
                       "(cmake -DLMP_CUDA=ON)",
                       index);
#endif
}

enum lmp_status lmp_device_resolve(const char *spec, struct lmp_device_sel *sel,
                                   struct lmp_err *err) {
    assert(spec && sel);
    memset(sel, 0, sizeof(*sel));
    sel->device = LMP_DEVICE_CPU;
    snprintf(sel->name, sizeof(sel->name), "cpu");
    if (strcmp(spec, "cpu") == 0) return LMP_OK;
    if (strcmp(spec, "auto") == 0) {
        struct lmp_device_sel g = {0};
        if (use_cuda(0, &g, NULL) == LMP_OK) *sel = g;
        return LMP_OK;
    }
    if (strcmp(spec, "cuda") == 0) return use_cuda(0, sel, err);
    if (lmp_device_name_ok(spec) && strncmp(spec, "cuda:", 5) == 0)
        return use_cuda(atoi(spec + 5), sel, err);
    return lmp_err_set(err, LMP_EINVAL, "unknown device '%.40s' (cpu, cuda:N or auto)", spec);
}
