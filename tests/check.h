/*  check - a tiny test harness: CHECK keeps going and counts, RUN names each test,
 *  check_report() returns the exit code (0 pass, 1 fail, 77 skipped), and
 *  check_shared() finds ../shared (or $LMP_SHARED) and skips, or fails under CI=true,
 *  when it is absent.
 */
#ifndef LMP_TESTS_CHECK_H
#define LMP_TESTS_CHECK_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int check_failures, check_skipped, check_count;

#define CHECK(expr)                                                                                \
    do {                                                                                           \
        check_count++;                                                                             \
        if (!(expr)) {                                                                             \
            check_failures++;                                                                      \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #expr);               \
        }                                                                                          \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                                      \
    do {                                                                                           \
        double check_a_ = (double)(a), check_b_ = (double)(b);                                     \
        check_count++;                                                                             \
        if (!(fabs(check_a_ - check_b_) <= (tol))) {                                               \
            check_failures++;                                                                      \
            fprintf(stderr, "%s:%d: CHECK_NEAR failed: %s = %.9g, %s = %.9g (tol %g)\n", __FILE__, \
                    __LINE__, #a, check_a_, #b, check_b_, (double)(tol));                          \
        }                                                                                          \
    } while (0)

#define RUN(fn)                                                                                    \
    do {                                                                                           \
        int check_before_ = check_failures;                                                        \
        fn();                                                                                      \
        fprintf(stderr, "%s %s\n", check_failures == check_before_ ? "ok  " : "FAIL", #fn);        \
    } while (0)

/* Deterministic uniform values in [-1, 1). */
static inline void check_fill_random(float *x, int64_t n, uint64_t seed) {
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (int64_t i = 0; i < n; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        x[i] = (float)((double)(s >> 11) / 9007199254740992.0 * 2.0 - 1.0);
    }
}

/* Mark the whole test program skipped (with a reason) unless CI=true, where a missing
 * prerequisite is a failure. */
static inline void check_skip(const char *why) {
    const char *ci = getenv("CI");
    if (ci && strcmp(ci, "true") == 0) {
        fprintf(stderr, "FAIL: %s (CI=true: prerequisites must be present)\n", why);
        check_failures++;
    } else {
        fprintf(stderr, "SKIP: %s\n", why);
        check_skipped++;
    }
}

/* The shared directory (models, data): $LMP_SHARED, else the compile-time default
 * (../shared beside the source tree). NULL (after check_skip) if absent. */
static inline const char *check_shared(void) {
    const char *env = getenv("LMP_SHARED");
    static char path[4096];
#ifdef LMP_SHARED_DIR
    snprintf(path, sizeof(path), "%s", env ? env : LMP_SHARED_DIR);
#else
    snprintf(path, sizeof(path), "%s", env ? env : "../shared");
#endif
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
        char why[4200];
        snprintf(why, sizeof(why), "shared test data not found at '%s'", path);
        check_skip(why);
        return NULL;
    }
    return path;
}

/* Path to a file under the shared dir, in a static buffer per call slot (0..3). */
static inline const char *check_shared_file(int slot, const char *rel) {
    static char bufs[4][8192]; /* root (< 4096) + "/" + rel */
    const char *root = check_shared();
    if (root == NULL) return NULL;
    snprintf(bufs[slot & 3], sizeof(bufs[0]), "%s/%s", root, rel);
    return bufs[slot & 3];
}

/* Path of a file in the lmpress cache ($LMP_CACHE, else $HOME/.cache/lmpress), where
 * deploy/setup.sh puts the default model, in a static buffer per call slot (0..3). */
static inline const char *check_cache_file(int slot, const char *rel) {
    static char bufs[4][8192];
    const char *cache = getenv("LMP_CACHE"), *home = getenv("HOME");
    if (cache && *cache)
        snprintf(bufs[slot & 3], sizeof(bufs[0]), "%s/%s", cache, rel);
    else
        snprintf(bufs[slot & 3], sizeof(bufs[0]), "%s/.cache/lmpress/%s", home ? home : ".", rel);
    return bufs[slot & 3];
}

/* Is a prerequisite file present? If not: a note outside CI (the caller skips that part),
 * a failure under CI=true (deploy/setup.sh must have fetched it). */
static inline int check_have_file(const char *path) {
    struct stat st;
    if (stat(path, &st) == 0) return 1;
    const char *ci = getenv("CI");
    if (ci && strcmp(ci, "true") == 0) {
        fprintf(stderr, "FAIL: '%s' is absent (CI=true: deploy/setup.sh fetches it)\n", path);
        check_failures++;
    } else {
        fprintf(stderr, "note: '%s' is absent, its checks are not run\n", path);
    }
    return 0;
}

/* The default model (SmolLM2-135M-Instruct Q4_1 GGUF) as fetched by deploy/setup.sh. */
#define CHECK_SMOLLM2_GGUF "models/SmolLM2-135M-Instruct.Q4_1.gguf"

static inline int check_report(void) {
    fprintf(stderr, "%d checks, %d failed%s\n", check_count, check_failures,
            check_skipped ? ", skipped" : "");
    if (check_failures) return 1;
    if (check_skipped) return 77;
    return 0;
}

#endif /* LMP_TESTS_CHECK_H */
