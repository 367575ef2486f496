/*  emu - run CUDA kernels on the CPU, one block at a time (scripts/cuda_emu_check.sh)
 *
 *  Not a GPU: a check of the kernels' logic (indexing, bounds, __syncthreads, warp
 *  shuffles, shared memory) where no GPU is available. Each CUDA thread of a block is a
 *  ucontext coroutine on the calling OS thread; the scheduler runs every runnable thread
 *  until it finishes or waits at a barrier, and releases a block barrier (__syncthreads)
 *  when every live thread of the block waits at it, a warp barrier (inside
 *  __shfl_down_sync) when every live thread of the warp does. A barrier no thread can
 *  pass aborts with a message. __shared__ variables are static (blocks never overlap);
 *  the script rewrites `kernel<<<grid, block, shmem, stream>>>(args)` into emu_launch(...)
 *  and the dynamic shared array into emu_dyn_shared. What it cannot see: races between
 *  threads that do not meet at a barrier (they run one after another here), the memory
 *  model, launch limits, timing.
 */
#ifndef LMP_TESTS_CUDA_EMU_EMU_H
#define LMP_TESTS_CUDA_EMU_EMU_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <ucontext.h>

#include <functional>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __launch_bounds__(x)
#define __align__(x) alignas(x)
#define __shared__   static

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

struct emu_cfg {
    dim3   grid, block;
    size_t shmem;
};
static inline emu_cfg emu_cfg_make(dim3 g, dim3 b, size_t shmem = 0, void *stream = NULL) {
    (void)stream;
    return emu_cfg{g, b, shmem};
}

enum { EMU_RUN, EMU_WAIT_BLOCK, EMU_WAIT_WARP, EMU_DONE };
struct emu_thread {
    ucontext_t ctx;
    dim3       tid;
    int        state;
};

static dim3                    emu_threadIdx, emu_blockIdx, emu_blockDim, emu_gridDim;
static std::vector<emu_thread> emu_threads;
static std::vector<char>       emu_stacks;
static ucontext_t              emu_sched;
static size_t                  emu_cur;
static std::function<void()>   emu_body;
alignas(16) static char emu_dyn_shared[48 << 10];
static double       emu_shfl[32][32];
static const size_t EMU_STACK = 256 << 10;

#define threadIdx emu_threadIdx
#define blockIdx  emu_blockIdx
#define blockDim  emu_blockDim
#define gridDim   emu_gridDim

static void emu_entry(void) {
    emu_body();
    emu_threads[emu_cur].state = EMU_DONE;
}

static inline void emu_wait(int state) {
    emu_threads[emu_cur].state = state;
    swapcontext(&emu_threads[emu_cur].ctx, &emu_sched);
}

static inline void __syncthreads(void) {
    emu_wait(EMU_WAIT_BLOCK);
}

template <typename T> static inline T __shfl_down_sync(unsigned mask, T v, int off) {
    (void)mask;
    const size_t lin = emu_cur, warp = lin / 32, lane = lin % 32;
    emu_shfl[warp][lane] = (double)v;
    emu_wait(EMU_WAIT_WARP);
    T r = lane + (size_t)off < 32 ? (T)emu_shfl[warp][lane + off] : v;
    emu_wait(EMU_WAIT_WARP); /* nobody overwrites the slots before everyone has read */
    return r;
}

/* Release the barrier every live thread of a group waits at; false if none can be. */
static bool emu_release(void) {
    const size_t n    = emu_threads.size();
    bool         live = false, all_block = true;
    for (size_t i = 0; i < n; i++) {
        if (emu_threads[i].state == EMU_DONE) continue;
        live = true;
        if (emu_threads[i].state != EMU_WAIT_BLOCK) all_block = false;
    }
    if (!live) return false;
    if (all_block) {
        for (size_t i = 0; i < n; i++)
            if (emu_threads[i].state == EMU_WAIT_BLOCK) emu_threads[i].state = EMU_RUN;
        return true;
    }
    bool released = false;
    for (size_t w = 0; w * 32 < n; w++) {
        bool any = false, all = true;
        for (size_t i = w * 32; i < n && i < w * 32 + 32; i++) {
            if (emu_threads[i].state == EMU_DONE) continue;
            any = true;
            if (emu_threads[i].state != EMU_WAIT_WARP) all = false;
        }
        if (any && all) {
            for (size_t i = w * 32; i < n && i < w * 32 + 32; i++)
                if (emu_threads[i].state == EMU_WAIT_WARP) emu_threads[i].state = EMU_RUN;
            released = true;
        }
    }
    if (!released) {
        fprintf(stderr,
                "cuda emulator: block (%u,%u,%u): threads wait at different barriers "
                "(divergent __syncthreads or shuffle)\n",
                emu_blockIdx.x, emu_blockIdx.y, emu_blockIdx.z);
        abort();
    }
    return true;
}

template <typename... P, typename... A>
static void emu_launch(void (*kernel)(P...), emu_cfg c, A... args) {
    const size_t nt = (size_t)c.block.x * c.block.y * c.block.z;
    if (nt > 1024 || c.shmem > sizeof(emu_dyn_shared)) {
        fprintf(stderr,
                "cuda emulator: launch of %zu threads, %zu bytes of dynamic shared memory\n", nt,
                c.shmem);
        abort();
    }
    emu_body = [&]() { kernel(args...); };
    emu_threads.resize(nt);
    if (emu_stacks.size() < nt * EMU_STACK) emu_stacks.resize(nt * EMU_STACK);
    emu_blockDim = c.block, emu_gridDim = c.grid;
    for (unsigned bz = 0; bz < c.grid.z; bz++)
        for (unsigned by = 0; by < c.grid.y; by++)
            for (unsigned bx = 0; bx < c.grid.x; bx++) {
                emu_blockIdx = dim3(bx, by, bz);
                for (size_t i = 0; i < nt; i++) {
                    emu_thread *t = &emu_threads[i];
                    t->tid = dim3((unsigned)(i % c.block.x), (unsigned)(i / c.block.x % c.block.y),
                                  (unsigned)(i / ((size_t)c.block.x * c.block.y)));
                    t->state = EMU_RUN;
                    getcontext(&t->ctx);
                    t->ctx.uc_stack.ss_sp   = &emu_stacks[i * EMU_STACK];
                    t->ctx.uc_stack.ss_size = EMU_STACK;
                    t->ctx.uc_link          = &emu_sched;
                    makecontext(&t->ctx, emu_entry, 0);
                }
                do {
                    for (size_t i = 0; i < nt; i++) {
                        if (emu_threads[i].state != EMU_RUN) continue;
                        emu_cur       = i;
                        emu_threadIdx = emu_threads[i].tid;
                        swapcontext(&emu_sched, &emu_threads[i].ctx);
                    }
                } while (emu_release());
            }
}

#endif /* LMP_TESTS_CUDA_EMU_EMU_H */
