/*  mem - the memory budget: how much one job may ask a machine for
 *
 *  A job's size comes from outside (a client's JobSpec: --nsamples, --ctx), so what it
 *  makes a process allocate is checked against a budget before the allocation, and a
 *  job that does not fit is refused with one line saying so, instead of growing until
 *  the kernel kills the process. The budget is half of the machine's physical memory
 *  (the other half for the model's pages, the kernel and other processes), or the
 *  environment variable LMP_MEM_BUDGET (bytes, with an optional K, M or G suffix) where
 *  an operator sets it (a coordinator smaller than its workers, or a test).
 */
#ifndef LMP_BASE_MEM_H
#define LMP_BASE_MEM_H

#include <stdint.h>

/* Bytes of physical memory of this machine; 0 if unknown. */
uint64_t lmp_mem_physical(void);
/* The budget in bytes (see the file comment); UINT64_MAX when nothing is known. */
uint64_t lmp_mem_budget(void);
/* a * b * c (bytes), saturating at UINT64_MAX (sizes from outside may overflow). */
uint64_t lmp_mem_mul(uint64_t a, uint64_t b, uint64_t c);

#endif /* LMP_BASE_MEM_H */
