/*  device - which device a process computes on: `--device cpu|cuda:N|auto`
 *
 *  Resolves a device name to a device this process can use, with a one-line reason when
 *  it cannot. Built without CUDA (the default), only "cpu" resolves; with -DLMP_CUDA=ON,
 *  "cuda:N" asks the CUDA runtime (kernels/cuda/cuda_mem.h), which on a machine without a
 *  GPU or driver answers with an error that becomes the reason.
 */
#ifndef LMP_KERNELS_DEVICE_H
#define LMP_KERNELS_DEVICE_H

#include <stdbool.h>
#include <stdint.h>

#include "base/status.h"     /* defines: enum lmp_status, struct lmp_err */
#include "kernels/kernels.h" /* defines: enum lmp_device */

struct lmp_device_sel {
    enum lmp_device device;       /* LMP_DEVICE_CPU or LMP_DEVICE_CUDA */
    int             index;        /* N of cuda:N; 0 for the CPU */
    char            name[32];     /* "cpu", "cuda:0": what a worker reports in its Hello */
    char            model[128];   /* the GPU's name ("NVIDIA H100 80GB HBM3"); "" for the CPU */
    uint64_t        memory_bytes; /* the GPU's memory, bytes; 0 for the CPU */
    int             cc;           /* compute capability, major * 10 + minor; 0 for the CPU */
};

/* Resolve spec into *sel and make it this process's CUDA device where it is one:
 *   "cpu"              the CPU tables;
 *   "cuda:N", "cuda"   GPU N (0), which must exist;
 *   "auto"             cuda:0 where a GPU can be used, else the CPU.
 * RET LMP_OK; LMP_EINVAL (not one of those names); LMP_ENODEV (a GPU that cannot be used:
 * err says why in one line, e.g. "cannot use cuda:0: this lmpress was built without CUDA
 * (cmake -DLMP_CUDA=ON)" or "cannot use cuda:0: no CUDA device: cudaGetDeviceCount: ..."). */
enum lmp_status lmp_device_resolve(const char *spec, struct lmp_device_sel *sel,
                                   struct lmp_err *err);

/* Whether name is a device name a worker may report: "cpu" or "cuda:N" (N < 10000). */
bool lmp_device_name_ok(const char *name);

#endif /* LMP_KERNELS_DEVICE_H */
