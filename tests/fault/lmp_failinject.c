/*  lmp_failinject - an LD_PRELOAD library that fails the N-th call of one kind of libc or
 *  libzmq call, for the fault-injection tests (tests/integration/fault_inject.sh)
 *
 *  SQLite tests its own I/O errors by making the N-th allocation or write fail, for every N,
 *  and checking that each run either completes or stops cleanly with the database intact.
 *  This library does the same to the lmpress program from outside, so the failures also land
 *  inside HDF5, libzmq, protobuf-c, OpenBLAS and glibc, which call libc through the PLT:
 *
 *    kind     calls counted                                  failure returned
 *    malloc   malloc calloc realloc posix_memalign           NULL / ENOMEM
 *             aligned_alloc memalign valloc
 *    write    write pwrite pwrite64 writev pwritev           -1 / ENOSPC (or the errno named)
 *             (only to regular files, fd > 2: the artifact,
 *             its parts and event log, not eventfds or pipes)
 *    fsync    fsync fdatasync                                -1 / EIO
 *    send     zmq_send zmq_msg_send (a message's first       -1 / EHOSTUNREACH on a ROUTER
 *             frame: libzmq never fails a later frame)       socket, EAGAIN on others
 *    netsend  send sendto sendmsg (libzmq's I/O threads)     -1 / ECONNRESET
 *
 *  Environment:
 *    LMP_FAILINJECT=KIND:N[+][:ERRNO]   fail the N-th call (1-based) of KIND; with '+' that call
 *                                       and every later one (a disk that stays full); ERRNO a
 *                                       name (ENOSPC, EIO, EDQUOT, ...) replaces the default
 *    LMP_FAILINJECT_ARGV=WORD           only in processes with WORD among their arguments
 *    LMP_FAILINJECT_COUNT=PATH          at exit, append "pid=P malloc=M write=W fsync=F
 *                                       send=S netsend=T injected=I" (the calls of each kind
 *                                       this process made: the range of N for a later run)
 *    LMP_FAILINJECT_LOG=PATH            for each failure injected, append "inject KIND N ERRNO
 *                                       pid=P" and the caller's stack (backtrace_symbols_fd);
 *                                       after one, the same for a non-zero exit() ("exit S"),
 *                                       an abort() ("abort 0") and a crash ("signal SIG"), so
 *                                       a stop can be traced to the library that decided it
 *
 *  The allocator: our malloc is found before the real one, which dlsym(RTLD_NEXT) finds (glibc,
 *  or the AddressSanitizer runtime when the library is preloaded before an ASan binary's
 *  libasan with ASAN_OPTIONS=verify_asan_link_order=0). dlsym itself allocates, so calls made
 *  while resolving are served from a static buffer that free() recognises. A thread inside the
 *  library (logging, its backtrace) neither counts nor fails its own calls.
 *  Counters are atomic: with threads, which call is the N-th depends on timing, as it would
 *  for a real fault.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <execinfo.h>
#include <signal.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

enum kind { K_MALLOC, K_WRITE, K_FSYNC, K_SEND, K_NETSEND, N_KINDS };
static const char *const kind_names[N_KINDS] = {"malloc", "write", "fsync", "send", "netsend"};

static uint64_t g_count[N_KINDS]; /* calls seen, atomic */
static uint64_t g_injected;       /* failures injected, atomic */
static int      g_kind = -1;      /* the kind to fail; -1: none */
static uint64_t g_nth;            /* 1-based */
static bool     g_persist;        /* fail every call from the N-th on */
static int      g_errno;          /* 0: the kind's default */
static bool     g_active;         /* this process is the one to fail (LMP_FAILINJECT_ARGV) */
static char     g_count_path[512], g_log_path[512];

static _Thread_local int t_inside; /* > 0 while this library runs its own code */

/* ---- the real functions ---------------------------------------------------------------- */

static void *(*real_malloc)(size_t);
static void *(*real_calloc)(size_t, size_t);
static void *(*real_realloc)(void *, size_t);
static void (*real_free)(void *);
static int (*real_posix_memalign)(void **, size_t, size_t);
static void *(*real_aligned_alloc)(size_t, size_t);
static void *(*real_memalign)(size_t, size_t);
static void *(*real_valloc)(size_t);
static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_pwrite64)(int, const void *, size_t, off_t);
static ssize_t (*real_writev)(int, const struct iovec *, int);
static ssize_t (*real_pwritev)(int, const struct iovec *, int, off_t);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static ssize_t (*real_send)(int, const void *, size_t, int);
static ssize_t (*real_sendto)(int, const void *, size_t, int, const struct sockaddr *, socklen_t);
static ssize_t (*real_sendmsg)(int, const struct msghdr *, int);
static int (*real_zmq_send)(void *, const void *, size_t, int);
static int (*real_zmq_msg_send)(void *, void *, int);
static int (*real_zmq_getsockopt)(void *, int, void *, size_t *);

/* dlsym allocates (its error state); those calls get memory from here, never freed. */
static _Alignas(64) unsigned char boot_buf[64 * 1024];
static size_t            boot_used; /* atomic */
static _Thread_local int t_resolving;

static void *boot_alloc(size_t n) {
    n          = (n + 63) & ~(size_t)63;
    size_t off = __atomic_fetch_add(&boot_used, n, __ATOMIC_RELAXED);
    if (off + n > sizeof(boot_buf)) return NULL;
    return boot_buf + off;
}
static bool is_boot(const void *p) {
    return (const unsigned char *)p >= boot_buf &&
           (const unsigned char *)p < boot_buf + sizeof(boot_buf);
}

static void *next_sym(const char *name) {
    t_resolving++;
    void *p = dlsym(RTLD_NEXT, name);
    t_resolving--;
    return p;
}

#define RESOLVE(name)                                                                              \
    do {                                                                                           \
        if (real_##name == NULL) real_##name = (__typeof__(real_##name))next_sym(#name);           \
    } while (0)

static void resolve_alloc(void) {
    RESOLVE(malloc);
    RESOLVE(calloc);
    RESOLVE(realloc);
    RESOLVE(free);
}

/* ---- configuration ------------------------------------------------------------------- */

static int errno_by_name(const char *s) {
    static const struct {
        const char *name;
        int         e;
    } t[] = {{"ENOMEM", ENOMEM},
             {"ENOSPC", ENOSPC},
             {"EIO", EIO},
             {"EDQUOT", EDQUOT},
             {"EFBIG", EFBIG},
             {"EAGAIN", EAGAIN},
             {"EINTR", EINTR},
             {"EHOSTUNREACH", EHOSTUNREACH},
             {"ECONNRESET", ECONNRESET},
             {"EPIPE", EPIPE},
             {"ETERM", 156384765 /* libzmq's ETERM */}};
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        if (strcmp(s, t[i].name) == 0) return t[i].e;
    return 0;
}

/* Whether WORD is one of this process's arguments (/proc/self/cmdline, read without malloc). */
static bool argv_has(const char *word) {
    static char buf[8192];
    int         fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0) return false;
    buf[n] = '\0';
    for (ssize_t i = 0; i < n; i += (ssize_t)strlen(buf + i) + 1)
        if (strcmp(buf + i, word) == 0) return true;
    return false;
}

static void log_stack(const char *what, int status);

/* A crash after a failure was injected: log where (the frame after the signal trampoline), then
 * die of the same signal. AddressSanitizer, when present, replaces this with its own report. */
static void on_crash(int sig) {
    log_stack("signal", sig);
    raise(sig);
}

__attribute__((constructor)) static void failinject_init(void) {
    t_inside++;
    resolve_alloc();
    const char *s = getenv("LMP_FAILINJECT");
    const char *c = getenv("LMP_FAILINJECT_COUNT");
    const char *l = getenv("LMP_FAILINJECT_LOG");
    const char *a = getenv("LMP_FAILINJECT_ARGV");
    if (c) snprintf(g_count_path, sizeof(g_count_path), "%s", c);
    if (l) snprintf(g_log_path, sizeof(g_log_path), "%s", l);
    g_active = a == NULL || a[0] == '\0' || argv_has(a);
    if (s && s[0]) {
        char spec[128];
        snprintf(spec, sizeof(spec), "%s", s);
        char *colon = strchr(spec, ':');
        if (colon) *colon = '\0';
        for (int k = 0; k < N_KINDS; k++)
            if (strcmp(spec, kind_names[k]) == 0) g_kind = k;
        char *end = NULL;
        if (colon) g_nth = strtoull(colon + 1, &end, 10);
        if (end && *end == '+') g_persist = true, end++;
        if (end && *end == ':') g_errno = errno_by_name(end + 1), end += strlen(end);
        if (g_kind < 0 || g_nth == 0 || end == NULL || *end != '\0') {
            static const char msg[] = "lmp_failinject: LMP_FAILINJECT wants KIND:N[+][:ERRNO] "
                                      "with KIND malloc|write|fsync|send|netsend\n";
            if (write(2, msg, sizeof(msg) - 1) < 0) abort();
            abort();
        }
        void *bt[4];
        backtrace(bt, 4); /* loads libgcc_s now, not in the middle of a failed malloc */
        static const int sigs[] = {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL};
        for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
            struct sigaction sa;
            memset(&sa, 0, sizeof(sa));
            sa.sa_handler = on_crash;
            sa.sa_flags   = (int)SA_RESETHAND;
            sigaction(sigs[i], &sa, NULL);
        }
    }
    t_inside--;
}

static void append_line(const char *path, const char *line);
static void log_stack(const char *what, int status) {
    if (g_log_path[0] == '\0' || __atomic_load_n(&g_injected, __ATOMIC_RELAXED) == 0) return;
    t_inside++;
    char line[160];
    snprintf(line, sizeof(line), "%s %d pid=%d\n", what, status, (int)getpid());
    append_line(g_log_path, line);
    int fd = open(g_log_path, O_WRONLY | O_APPEND | O_CLOEXEC);
    if (fd >= 0) {
        void *bt[24];
        int   nb = backtrace(bt, 24);
        backtrace_symbols_fd(bt, nb, fd);
        close(fd);
    }
    t_inside--;
}

static void append_line(const char *path, const char *line) {
    RESOLVE(write);
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return;
    if (real_write(fd, line, strlen(line)) < 0) { /* best effort: a test reads it */
    }
    close(fd);
}

__attribute__((destructor)) static void failinject_fini(void) {
    if (g_count_path[0] == '\0') return;
    t_inside++;
    char line[256];
    snprintf(line, sizeof(line),
             "pid=%d malloc=%llu write=%llu fsync=%llu send=%llu netsend=%llu injected=%llu\n",
             (int)getpid(), (unsigned long long)g_count[K_MALLOC],
             (unsigned long long)g_count[K_WRITE], (unsigned long long)g_count[K_FSYNC],
             (unsigned long long)g_count[K_SEND], (unsigned long long)g_count[K_NETSEND],
             (unsigned long long)g_injected);
    append_line(g_count_path, line);
    t_inside--;
}

/* Count a call of kind k; true if it is to fail (errno is then set). */
static bool should_fail(enum kind k, int err) {
    if (t_inside || t_resolving) return false;
    uint64_t n = __atomic_add_fetch(&g_count[k], 1, __ATOMIC_RELAXED);
    if (!g_active || (int)k != g_kind || n < g_nth || (n > g_nth && !g_persist)) return false;
    __atomic_add_fetch(&g_injected, 1, __ATOMIC_RELAXED);
    const int e = g_errno ? g_errno : err;
    if (n < g_nth + 4) { /* a persistent fault logs its first few */
        char what[64];
        snprintf(what, sizeof(what), "inject %s %llu %s", kind_names[k], (unsigned long long)n,
                 strerrorname_np(e) ? strerrorname_np(e) : "?");
        log_stack(what, 0);
    }
    errno = e;
    return true;
}

/* ---- exit, abort: where a run that got a fault decided to stop (after the first failure) --- */

void exit(int status) {
    static void (*real_exit)(int) __attribute__((noreturn));
    RESOLVE(exit);
    if (status != 0) log_stack("exit", status);
    real_exit(status);
}

void _exit(int status) {
    static void (*real__exit)(int) __attribute__((noreturn));
    RESOLVE(_exit);
    if (status != 0) log_stack("_exit", status);
    real__exit(status);
}

void abort(void) {
    static void (*real_abort)(void) __attribute__((noreturn));
    RESOLVE(abort);
    log_stack("abort", 0);
    real_abort();
}

/* ---- malloc ------------------------------------------------------------------------------ */

void *malloc(size_t n) {
    if (real_malloc == NULL) {
        if (t_resolving) return boot_alloc(n);
        resolve_alloc();
        if (real_malloc == NULL) return boot_alloc(n);
    }
    if (should_fail(K_MALLOC, ENOMEM)) return NULL;
    return real_malloc(n);
}

void *calloc(size_t n, size_t size) {
    if (real_calloc == NULL) {
        if (t_resolving) return boot_alloc(n * size); /* zeroed: static storage, never reused */
        resolve_alloc();
        if (real_calloc == NULL) return boot_alloc(n * size);
    }
    if (should_fail(K_MALLOC, ENOMEM)) return NULL;
    return real_calloc(n, size);
}

void *realloc(void *p, size_t n) {
    if (is_boot(p)) { /* never from the real allocator: copy out (the size is unknown: at most
                         what is left of the buffer after p) */
        void  *q    = malloc(n);
        size_t have = (size_t)(boot_buf + sizeof(boot_buf) - (unsigned char *)p);
        if (q) memcpy(q, p, n < have ? n : have);
        return q;
    }
    if (real_realloc == NULL) resolve_alloc();
    if (should_fail(K_MALLOC, ENOMEM)) return NULL;
    return real_realloc(p, n);
}

void free(void *p) {
    if (p == NULL || is_boot(p)) return;
    if (real_free == NULL) resolve_alloc();
    real_free(p);
}

int posix_memalign(void **out, size_t align, size_t n) {
    RESOLVE(posix_memalign);
    if (should_fail(K_MALLOC, ENOMEM)) return ENOMEM; /* returns the error, errno untouched */
    return real_posix_memalign(out, align, n);
}

void *aligned_alloc(size_t align, size_t n) {
    RESOLVE(aligned_alloc);
    if (should_fail(K_MALLOC, ENOMEM)) return NULL;
    return real_aligned_alloc(align, n);
}

void *memalign(size_t align, size_t n) {
    RESOLVE(memalign);
    if (should_fail(K_MALLOC, ENOMEM)) return NULL;
    return real_memalign(align, n);
}

void *valloc(size_t n) {
    RESOLVE(valloc);
    if (should_fail(K_MALLOC, ENOMEM)) return NULL;
    return real_valloc(n);
}

/* ---- write, fsync ------------------------------------------------------------------------- */

static bool regular_file(int fd) {
    struct stat st;
    return fd > 2 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
}

ssize_t write(int fd, const void *buf, size_t n) {
    RESOLVE(write);
    if (!t_inside && regular_file(fd) && should_fail(K_WRITE, ENOSPC)) return -1;
    return real_write(fd, buf, n);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) {
    RESOLVE(pwrite);
    if (!t_inside && regular_file(fd) && should_fail(K_WRITE, ENOSPC)) return -1;
    return real_pwrite(fd, buf, n, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off) {
    RESOLVE(pwrite64);
    if (!t_inside && regular_file(fd) && should_fail(K_WRITE, ENOSPC)) return -1;
    return real_pwrite64(fd, buf, n, off);
}

ssize_t writev(int fd, const struct iovec *iov, int n) {
    RESOLVE(writev);
    if (!t_inside && regular_file(fd) && should_fail(K_WRITE, ENOSPC)) return -1;
    return real_writev(fd, iov, n);
}

ssize_t pwritev(int fd, const struct iovec *iov, int n, off_t off) {
    RESOLVE(pwritev);
    if (!t_inside && regular_file(fd) && should_fail(K_WRITE, ENOSPC)) return -1;
    return real_pwritev(fd, iov, n, off);
}

int fsync(int fd) {
    RESOLVE(fsync);
    if (should_fail(K_FSYNC, EIO)) return -1;
    return real_fsync(fd);
}

int fdatasync(int fd) {
    RESOLVE(fdatasync);
    if (should_fail(K_FSYNC, EIO)) return -1;
    return real_fdatasync(fd);
}

/* ---- sockets: libc (libzmq's I/O threads) ------------------------------------------------- */

ssize_t send(int fd, const void *buf, size_t n, int flags) {
    RESOLVE(send);
    if (should_fail(K_NETSEND, ECONNRESET)) return -1;
    return real_send(fd, buf, n, flags);
}

ssize_t sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *to,
               socklen_t len) {
    RESOLVE(sendto);
    if (should_fail(K_NETSEND, ECONNRESET)) return -1;
    return real_sendto(fd, buf, n, flags, to, len);
}

ssize_t sendmsg(int fd, const struct msghdr *msg, int flags) {
    RESOLVE(sendmsg);
    if (should_fail(K_NETSEND, ECONNRESET)) return -1;
    return real_sendmsg(fd, msg, flags);
}

/* ---- sockets: libzmq's API ---------------------------------------------------------------- */

#define LMP_ZMQ_SNDMORE 2  /* zmq.h */
#define LMP_ZMQ_TYPE    16 /* ZMQ_TYPE */
#define LMP_ZMQ_ROUTER  6  /* ZMQ_ROUTER */

/* The socket whose multipart message this thread is in the middle of: its later frames are
 * never failed (libzmq accepts them once the first frame is in). A socket is used by one
 * thread at a time (libzmq's rule). */
static _Thread_local void *t_more_sock;

static bool send_fails(void *sock, int flags) {
    const bool first = t_more_sock != sock;
    t_more_sock      = (flags & LMP_ZMQ_SNDMORE) ? sock : NULL;
    if (!first) return false;
    int e = EAGAIN;
    RESOLVE(zmq_getsockopt);
    if (real_zmq_getsockopt) {
        int    type = 0;
        size_t len  = sizeof(type);
        if (real_zmq_getsockopt(sock, LMP_ZMQ_TYPE, &type, &len) == 0 && type == LMP_ZMQ_ROUTER)
            e = EHOSTUNREACH;
    }
    if (!should_fail(K_SEND, e)) return false;
    t_more_sock = NULL; /* the failed first frame starts no message */
    return true;
}

int zmq_send(void *sock, const void *buf, size_t n, int flags) {
    RESOLVE(zmq_send);
    if (send_fails(sock, flags)) return -1;
    return real_zmq_send(sock, buf, n, flags);
}

int zmq_msg_send(void *msg, void *sock, int flags) {
    RESOLVE(zmq_msg_send);
    if (send_fails(sock, flags)) return -1;
    return real_zmq_msg_send(msg, sock, flags);
}
