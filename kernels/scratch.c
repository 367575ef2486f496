/*  scratch - host memory for the CPU tables and each thread's scratch arena
 *
 *  The arena is a stack of chunks owned by one thread (thread-local, no locks): carving
 *  bumps an offset, a reset drops back to a mark, and chunks stay cached for the thread's
 *  next kernel call, so a kernel called in a loop allocates nothing after its first call.
 *  A chunk never moves (carved pointers stay valid while later carvings take new chunks);
 *  a request that does not fit the current chunk takes the next one, made at least twice
 *  the previous size. Up to KEEP_BYTES stay cached when the outermost carving is reset;
 *  the rest is freed then, and everything when the thread exits (pthread key destructor)
 *  or on lmp_scratch_trim. Under AddressSanitizer every byte not carved is poisoned and
 *  carvings are separated by a 64-byte red zone, so overruns are still reported.
 */
#include "kernels/kernels.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define ARENA_REDZONE 64
#else
#define ASAN_POISON_MEMORY_REGION(p, n)   ((void)(p), (void)(n))
#define ASAN_UNPOISON_MEMORY_REGION(p, n) ((void)(p), (void)(n))
#define ARENA_REDZONE                     0
#endif

enum {
    ALIGN      = 64, /* bytes: a cache line, and any SIMD load */
    MAX_CHUNKS = 40, /* doubling from 1 MiB: far beyond any memory */
};
#define MIN_CHUNK ((size_t)1 << 20) /* bytes: small kernels fit the first chunk */
/* bytes a thread keeps cached between calls: the scratch of the kernels on a SmolLM2-sized
 * layer; a larger one (a 7B layer's aq_grad needs 0.5 GB) is freed when its call ends,
 * so memory between calls stays bounded as when kernels allocated their own */
#define KEEP_BYTES ((size_t)64 << 20)

/* ---- host memory (every CPU table's mem_* slots) ---------------------------------------- */

void *lmp_mem_alloc_host(size_t bytes) {
    if (bytes == 0 || bytes > SIZE_MAX - ALIGN) return NULL;
    return aligned_alloc(ALIGN, (bytes + ALIGN - 1) / ALIGN * ALIGN);
}

void lmp_mem_free_host(void *p) {
    free(p);
}

void lmp_mem_copy_host(void *dst, const void *src, size_t bytes, enum lmp_copy_dir dir) {
    (void)dir; /* host and device are the same memory */
    if (bytes > 0) memcpy(dst, src, bytes);
}

/* ---- the arena ------------------------------------------------------------------------- */

struct arena {
    char  *base[MAX_CHUNKS];
    size_t cap[MAX_CHUNKS]; /* bytes */
    int    n_chunks;        /* chunks allocated (cached or in use) */
    int    cur;             /* chunk being carved, -1: none */
    size_t used;            /* bytes carved from chunk cur */
};

static pthread_key_t               g_key;
static pthread_once_t              g_once = PTHREAD_ONCE_INIT;
static _Thread_local struct arena *tl_arena;

static void arena_free_from(struct arena *a, int first) {
    for (int i = first; i < a->n_chunks; i++) {
        ASAN_UNPOISON_MEMORY_REGION(a->base[i], a->cap[i]);
        free(a->base[i]);
        a->base[i] = NULL;
        a->cap[i]  = 0;
    }
    if (a->n_chunks > first) a->n_chunks = first;
}

static void arena_destroy(void *p) {
    struct arena *a = p;
    arena_free_from(a, 0);
    free(a);
}

static void key_init(void) {
    (void)pthread_key_create(&g_key, arena_destroy);
}

static struct arena *arena_get(void) {
    if (tl_arena) return tl_arena;
    pthread_once(&g_once, key_init);
    struct arena *a = calloc(1, sizeof(*a));
    if (a == NULL) return NULL;
    a->cur = -1;
    if (pthread_setspecific(g_key, a) != 0) {
        free(a);
        return NULL;
    }
    return tl_arena = a;
}

struct lmp_scratch_mark lmp_scratch_mark(void) {
    struct arena *a = arena_get();
    return a ? (struct lmp_scratch_mark){a->cur, a->used} : (struct lmp_scratch_mark){-1, 0};
}

void *lmp_scratch_alloc(size_t bytes) {
    struct arena *a = arena_get();
    if (a == NULL || bytes > SIZE_MAX / 4) return NULL;
    const size_t need = (bytes + ALIGN - 1) / ALIGN * ALIGN + ARENA_REDZONE;
    if (a->cur < 0 || a->used + need > a->cap[a->cur]) {
        const int next = a->cur + 1;
        if (next >= MAX_CHUNKS) return NULL;
        if (next < a->n_chunks && a->cap[next] < need) /* cached but too small: remake */
            arena_free_from(a, next);
        if (next >= a->n_chunks) {
            size_t cap = next > 0 ? 2 * a->cap[next - 1] : MIN_CHUNK;
            if (cap < need) cap = need;
            char *p = aligned_alloc(ALIGN, cap);
            if (p == NULL) return NULL;
            ASAN_POISON_MEMORY_REGION(p, cap);
            a->base[next] = p;
            a->cap[next]  = cap;
            a->n_chunks   = next + 1;
        }
        a->cur  = next;
        a->used = 0;
    }
    char *p = a->base[a->cur] + a->used;
    a->used += need;
    ASAN_UNPOISON_MEMORY_REGION(p, bytes);
    return p;
}

void lmp_scratch_reset(struct lmp_scratch_mark mark) {
    struct arena *a = tl_arena;
    if (a == NULL) return;
    for (int i = mark.chunk + 1; i <= a->cur && i < a->n_chunks; i++)
        ASAN_POISON_MEMORY_REGION(a->base[i], a->cap[i]);
    if (mark.chunk >= 0 && mark.chunk <= a->cur)
        ASAN_POISON_MEMORY_REGION(a->base[mark.chunk] + mark.used, a->cap[mark.chunk] - mark.used);
    a->cur  = mark.chunk;
    a->used = mark.used;
    if (a->cur < 0) { /* the outermost call is done: keep at most KEEP_BYTES cached */
        size_t kept = 0;
        int    i    = 0;
        while (i < a->n_chunks && kept + a->cap[i] <= KEEP_BYTES) kept += a->cap[i++];
        arena_free_from(a, i);
    }
}

void lmp_scratch_trim(void) {
    struct arena *a = tl_arena;
    if (a == NULL) return;
    arena_free_from(a, a->cur + 1);
}

size_t lmp_scratch_held(void) {
    const struct arena *a = tl_arena;
    size_t              n = 0;
    for (int i = 0; a && i < a->n_chunks; i++) n += a->cap[i];
    return n;
}
