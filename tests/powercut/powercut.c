/* powercut.c: an LD_PRELOAD shim that cuts the power under a real process at a chosen fsync.
 *
 * Build: cc -shared -fPIC -O2 -o powercut.so powercut.c -ldl -lpthread
 *
 * A kill -9 never tears a write (the page cache survives the process), so it cannot test what a
 * power cut does. This shim remembers, for every write to a tracked file, the bytes it replaced;
 * an fsync or fdatasync that succeeds makes that file's writes durable (forgets them). At the
 * chosen sync the shim instead puts back, sector by sector, what a power cut could have lost,
 * then dies by SIGKILL: the next process sees the disk a power cut could leave.
 *
 * Environment (without PHOTONDB_POWERCUT_DIR the shim passes everything through):
 *   PHOTONDB_POWERCUT_DIR      track only files at or below this directory (compared with the
 *                              canonical path of each opened fd, /proc/self/fd/N, and with the
 *                              directory's realpath, so symlinks and relative opens match)
 *   PHOTONDB_POWERCUT_AT_SYNC  the N-th fsync/fdatasync of a tracked fd (directories included:
 *                              the engine syncs them) is the cut, instead of syncing; unset or 0:
 *                              track but never cut
 *   PHOTONDB_POWERCUT_SEED     seeds the private PRNG (xorshift64*) that decides what survives
 *   PHOTONDB_POWERCUT_REPORT   a file that gets the one-line summary of the cut (also on stderr)
 * Syncs are counted from the process's start. When armed, the shim says so on stderr first
 * ("powercut: armed: ..."), so a test can tell it was really preloaded.
 *
 * The model (the engine's simulated filesystem, storaged/src/engine/io/sim.rs, `crash`): the
 * synced state survives; of each unsynced write, every 512-byte sector (aligned to the file's
 * offsets) reached the disk or not with probability 1/2. Records are walked newest first; a
 * sector that is reverted gets back the bytes that write replaced (zeros past the file's old
 * size); a sector that reached the disk is settled, so older writes to it are kept too: a sector
 * on disk is always one of its versions (page-cache writeback writes whole sectors of the latest
 * content), never a newer write's bytes without an older one's.
 *
 * Limitations (what the model simplifies, and what the shim cannot see):
 *   - ftruncate, ftruncate64 and O_TRUNC are durable metadata at once: nothing is recorded and
 *     the file is never shrunk or regrown by the cut (unsynced writes past the new length are
 *     forgotten, since their bytes are gone; a reverted sector past the old size becomes zeros,
 *     the file keeps its length).
 *   - Directory operations (create, rename, unlink, mkdir) are durable at once: not modelled.
 *   - Intercepted: open, open64, openat, openat64, __open_2, __open64_2, creat, creat64, close,
 *     write, pwrite, pwrite64, fsync, fdatasync, ftruncate, ftruncate64, sync and syncfs (sync
 *     makes every tracked write durable, syncfs those on its filesystem; neither is counted as
 *     a cut point). writev, pwritev, pwritev64, pwritev2, pwritev64v2 and
 *     copy_file_range abort() loudly on a tracked fd, so no write can be missed silently through
 *     them. Not seen: writes through mmap, through stdio (glibc's internal calls), and through
 *     an fd made by dup/dup2/dup3/fcntl(F_DUPFD) (storaged uses none of these).
 *   - Every tracked operation runs under one global mutex, held across the real write or sync,
 *     so no write slips between an fsync's start and the moment its file's records are dropped.
 *     This serialises tracked I/O: fine for a test.
 */
#undef _FORTIFY_SOURCE /* its inline open() wrappers would clash with the definitions below */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define SECTOR 512
/* fds at or above this are never tracked (a tracked open there aborts): fds are allocated
 * lowest first, so reaching it takes a million open files. */
#define MAX_FDS (1 << 20)

/* One unsynced write: what [off, off + len) held before it (bytes past old_size were absent). */
struct undo {
    struct undo *next; /* the next older write to the same file */
    off64_t off;
    size_t len;
    off64_t old_size;
    unsigned char old[]; /* [off, min(off + len, old_size)) */
};

/* A tracked file, keyed by (dev, ino): every fd on it shares its records. */
struct pfile {
    int used;
    dev_t dev;
    ino_t ino;
    int refs;          /* user fds open on it */
    int priv;          /* our own O_RDWR fd for the preads and the cut; -1 until the first write */
    struct undo *undo; /* newest first */
};

static struct {
    int (*open)(const char *, int, ...);
    int (*open64)(const char *, int, ...);
    int (*openat)(int, const char *, int, ...);
    int (*openat64)(int, const char *, int, ...);
    int (*open_2)(const char *, int);
    int (*open64_2)(const char *, int);
    int (*creat)(const char *, mode_t);
    int (*creat64)(const char *, mode_t);
    int (*close)(int);
    ssize_t (*write)(int, const void *, size_t);
    ssize_t (*pwrite)(int, const void *, size_t, off_t);
    ssize_t (*pwrite64)(int, const void *, size_t, off64_t);
    ssize_t (*writev)(int, const struct iovec *, int);
    ssize_t (*pwritev)(int, const struct iovec *, int, off_t);
    ssize_t (*pwritev64)(int, const struct iovec *, int, off64_t);
    ssize_t (*pwritev2)(int, const struct iovec *, int, off_t, int);
    ssize_t (*pwritev64v2)(int, const struct iovec *, int, off64_t, int);
    ssize_t (*copy_file_range)(int, off64_t *, int, off64_t *, size_t, unsigned int);
    int (*fsync)(int);
    int (*fdatasync)(int);
    int (*ftruncate)(int, off_t);
    int (*ftruncate64)(int, off64_t);
    void (*sync)(void);
    int (*syncfs)(int);
} real;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int enabled;
static char dir_raw[PATH_MAX];
static char dir_real[PATH_MAX]; /* realpath(dir_raw), resolved once the directory exists */
static char report_path[PATH_MAX];
static unsigned long long cut_at, syncs;
static uint64_t rng;
/* fd -> index + 1 into files (0: untracked). Atomic so untracked fds skip the mutex. */
static _Atomic int fd_file[MAX_FDS];
static struct pfile *files; /* under mu; realloc'd, so never keep a pointer across an open */
static int nfiles;

static void die(const char *what)
{
    static const char pre[] = "powercut: ";
    if (real.write) {
        real.write(2, pre, sizeof pre - 1);
        real.write(2, what, strlen(what));
        real.write(2, "\n", 1);
    }
    abort();
}

#define RESOLVE(name, sym) (*(void **)&real.name = dlsym(RTLD_NEXT, sym))

static void init_once(void)
{
    RESOLVE(open, "open");
    RESOLVE(open64, "open64");
    RESOLVE(openat, "openat");
    RESOLVE(openat64, "openat64");
    RESOLVE(open_2, "__open_2");
    RESOLVE(open64_2, "__open64_2");
    RESOLVE(creat, "creat");
    RESOLVE(creat64, "creat64");
    RESOLVE(close, "close");
    RESOLVE(write, "write");
    RESOLVE(pwrite, "pwrite");
    RESOLVE(pwrite64, "pwrite64");
    RESOLVE(writev, "writev");
    RESOLVE(pwritev, "pwritev");
    RESOLVE(pwritev64, "pwritev64");
    RESOLVE(pwritev2, "pwritev2");
    RESOLVE(pwritev64v2, "pwritev64v2");
    RESOLVE(copy_file_range, "copy_file_range");
    RESOLVE(fsync, "fsync");
    RESOLVE(fdatasync, "fdatasync");
    RESOLVE(ftruncate, "ftruncate");
    RESOLVE(ftruncate64, "ftruncate64");
    RESOLVE(sync, "sync");
    RESOLVE(syncfs, "syncfs");
    if (!real.open64 || !real.openat64 || !real.close || !real.write || !real.pwrite64 ||
        !real.fsync || !real.fdatasync || !real.ftruncate64)
        die("cannot resolve the real libc functions");
    const char *d = getenv("PHOTONDB_POWERCUT_DIR");
    if (!d || !*d)
        return;
    if (strlen(d) >= sizeof dir_raw)
        die("PHOTONDB_POWERCUT_DIR is too long");
    strcpy(dir_raw, d);
    for (size_t n = strlen(dir_raw); n > 1 && dir_raw[n - 1] == '/'; n--)
        dir_raw[n - 1] = '\0';
    const char *at = getenv("PHOTONDB_POWERCUT_AT_SYNC");
    cut_at = at ? strtoull(at, NULL, 10) : 0;
    const char *seed = getenv("PHOTONDB_POWERCUT_SEED");
    /* splitmix64 of the seed: any seed (0 too) gives a nonzero xorshift state */
    uint64_t z = (seed ? strtoull(seed, NULL, 10) : 0) + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    rng = (z ^ (z >> 31)) | 1;
    const char *rep = getenv("PHOTONDB_POWERCUT_REPORT");
    if (rep && strlen(rep) < sizeof report_path)
        strcpy(report_path, rep);
    enabled = 1;
    /* Proof for the test that the shim is loaded (ld.so only warns when a preload fails). */
    char line[PATH_MAX + 64];
    int n = snprintf(line, sizeof line, "powercut: armed: cut at sync %llu of files under %s\n",
                     cut_at, dir_raw);
    if (n > 0 && (size_t)n < sizeof line)
        (void)real.write(2, line, (size_t)n);
}

static void init(void)
{
    pthread_once(&once, init_once);
}

__attribute__((constructor)) static void ctor(void)
{
    init();
}

/* xorshift64*: one fair coin. */
static int coin(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return (int)((rng * 0x2545F4914F6CDD1Dull) >> 63);
}

static int slot_of(int fd)
{
    return fd >= 0 && fd < MAX_FDS ? atomic_load(&fd_file[fd]) : 0;
}

static int is_under(const char *path, const char *dir)
{
    size_t n = strlen(dir);
    if (n == 0)
        return 0;
    if (n == 1 && dir[0] == '/')
        return path[0] == '/';
    return strncmp(path, dir, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

/* Under mu. */
static int under_dir(const char *path)
{
    if (!dir_real[0]) {
        char r[PATH_MAX];
        if (realpath(dir_raw, r))
            strcpy(dir_real, r);
    }
    return is_under(path, dir_raw) || is_under(path, dir_real);
}

static void free_undo(struct pfile *f)
{
    while (f->undo) {
        struct undo *u = f->undo;
        f->undo = u->next;
        free(u);
    }
}

/* Under mu: frees the entry once no fd is open on it and nothing is left to revert. */
static void release_if_idle(struct pfile *f)
{
    if (f->used && f->refs == 0 && !f->undo) {
        if (f->priv >= 0)
            real.close(f->priv);
        memset(f, 0, sizeof *f);
    }
}

/* Under mu: forgets fd (a close, or a stale entry for an fd closed behind our back). */
static void untrack(int fd)
{
    int slot = slot_of(fd);
    if (!slot)
        return;
    atomic_store(&fd_file[fd], 0);
    files[slot - 1].refs--;
    release_if_idle(&files[slot - 1]);
}

/* Under mu: the file fd is tracked on, or NULL (dropping the entry if fd now names another). */
static struct pfile *tracked(int fd, struct stat *st)
{
    int slot = slot_of(fd);
    if (!slot)
        return NULL;
    struct pfile *f = &files[slot - 1];
    if (fstat(fd, st) != 0 || st->st_dev != f->dev || st->st_ino != f->ino) {
        untrack(fd);
        return NULL;
    }
    return f;
}

/* Under mu: unsynced writes past a durable new length are gone with their bytes. */
static void clip(struct pfile *f, off64_t len)
{
    for (struct undo **p = &f->undo; *p;) {
        struct undo *u = *p;
        if (u->off >= len) {
            *p = u->next;
            free(u);
            continue;
        }
        if (u->off + (off64_t)u->len > len)
            u->len = (size_t)(len - u->off);
        p = &u->next;
    }
}

/* Called after every open: tracks fd if it is a regular file or directory under the dir. */
static int after_open(int fd, int flags)
{
    if (fd < 0 || !enabled)
        return fd;
    int saved = errno;
    char link[64], path[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n < 0)
        die("cannot read /proc/self/fd/N (the shim needs /proc to name opened files)");
    path[n] = '\0';
    struct stat st;
    pthread_mutex_lock(&mu);
    untrack(fd);
    if (under_dir(path) && fstat(fd, &st) == 0 && (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode))) {
        if (fd >= MAX_FDS)
            die("a tracked file got an fd past the shim's table");
        int i, free_slot = -1;
        for (i = 0; i < nfiles; i++) {
            if (files[i].used && files[i].dev == st.st_dev && files[i].ino == st.st_ino)
                break;
            if (!files[i].used && free_slot < 0)
                free_slot = i;
        }
        if (i == nfiles) {
            if (free_slot < 0) {
                struct pfile *grown = realloc(files, (size_t)(nfiles * 2 + 16) * sizeof *files);
                if (!grown)
                    die("out of memory");
                files = grown;
                memset(files + nfiles, 0, (size_t)(nfiles + 16) * sizeof *files);
                free_slot = nfiles;
                nfiles = nfiles * 2 + 16;
            }
            i = free_slot;
            files[i] = (struct pfile){.used = 1, .dev = st.st_dev, .ino = st.st_ino, .priv = -1};
        }
        files[i].refs++;
        atomic_store(&fd_file[fd], i + 1);
        if (flags & O_TRUNC)
            clip(&files[i], 0);
    }
    pthread_mutex_unlock(&mu);
    errno = saved;
    return fd;
}

/* O_CREAT and O_TMPFILE take a mode. */
#define MODE_ARG(flags)                                                                        \
    mode_t mode = 0;                                                                           \
    if ((flags) & O_CREAT || ((flags) & O_TMPFILE) == O_TMPFILE) {                             \
        va_list ap;                                                                            \
        va_start(ap, flags);                                                                   \
        mode = (mode_t)va_arg(ap, int);                                                        \
        va_end(ap);                                                                            \
    }

int open(const char *path, int flags, ...)
{
    init();
    MODE_ARG(flags);
    return after_open(real.open(path, flags, mode), flags);
}

int open64(const char *path, int flags, ...)
{
    init();
    MODE_ARG(flags);
    return after_open(real.open64(path, flags, mode), flags);
}

int openat(int dirfd, const char *path, int flags, ...)
{
    init();
    MODE_ARG(flags);
    return after_open(real.openat(dirfd, path, flags, mode), flags);
}

int openat64(int dirfd, const char *path, int flags, ...)
{
    init();
    MODE_ARG(flags);
    return after_open(real.openat64(dirfd, path, flags, mode), flags);
}

int __open_2(const char *path, int flags)
{
    init();
    return after_open(real.open_2(path, flags), flags);
}

int __open64_2(const char *path, int flags)
{
    init();
    return after_open(real.open64_2(path, flags), flags);
}

int creat(const char *path, mode_t mode)
{
    init();
    return after_open(real.creat(path, mode), O_CREAT | O_WRONLY | O_TRUNC);
}

int creat64(const char *path, mode_t mode)
{
    init();
    return after_open(real.creat64(path, mode), O_CREAT | O_WRONLY | O_TRUNC);
}

int close(int fd)
{
    init();
    if (slot_of(fd)) {
        pthread_mutex_lock(&mu);
        untrack(fd);
        pthread_mutex_unlock(&mu);
    }
    return real.close(fd);
}

enum kind { K_WRITE, K_PWRITE, K_PWRITE64 };

static ssize_t pass(enum kind k, int fd, const void *buf, size_t n, off64_t off)
{
    switch (k) {
    case K_WRITE:
        return real.write(fd, buf, n);
    case K_PWRITE:
        return real.pwrite(fd, buf, n, (off_t)off);
    default:
        return real.pwrite64(fd, buf, n, off);
    }
}

/* Reads [off, off + n) through fd; whatever is past the end reads as zeros. */
static void read_full(int fd, unsigned char *buf, size_t n, off64_t off)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread64(fd, buf + got, n - got, off + (off64_t)got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    memset(buf + got, 0, n - got);
}

/* Every write to a tracked fd: saves what it replaces, then writes (both under mu). */
static ssize_t tracked_write(enum kind k, int fd, const void *buf, size_t n, off64_t off)
{
    init();
    if (!slot_of(fd))
        return pass(k, fd, buf, n, off);
    pthread_mutex_lock(&mu);
    struct stat st;
    struct pfile *f = tracked(fd, &st);
    if (!f || n == 0 || S_ISDIR(st.st_mode)) {
        ssize_t r = pass(k, fd, buf, n, off);
        int e = errno;
        pthread_mutex_unlock(&mu);
        errno = e;
        return r;
    }
    if (f->priv < 0) {
        char link[64];
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        f->priv = real.open64(link, O_RDWR | O_CLOEXEC);
        if (f->priv < 0)
            die("cannot reopen a tracked file read-write for its undo records");
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0 && (fl & O_APPEND))
        off = st.st_size; /* Linux appends even for pwrite on an O_APPEND fd */
    else if (k == K_WRITE)
        off = lseek64(fd, 0, SEEK_CUR);
    if (off < 0)
        die("cannot find the offset of a write to a tracked file");
    size_t keep = off < st.st_size ? (size_t)(st.st_size - off) : 0;
    if (keep > n)
        keep = n;
    struct undo *u = malloc(sizeof *u + keep);
    if (!u)
        die("out of memory for an undo record");
    u->off = off;
    u->len = n;
    u->old_size = st.st_size;
    read_full(f->priv, u->old, keep, off);
    ssize_t r = pass(k, fd, buf, n, off);
    int e = errno;
    if (r > 0) {
        u->len = (size_t)r;
        u->next = f->undo;
        f->undo = u;
    } else {
        free(u);
    }
    pthread_mutex_unlock(&mu);
    errno = e;
    return r;
}

ssize_t write(int fd, const void *buf, size_t n)
{
    return tracked_write(K_WRITE, fd, buf, n, 0);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
    return tracked_write(K_PWRITE, fd, buf, n, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off64_t off)
{
    return tracked_write(K_PWRITE64, fd, buf, n, off);
}

/* Vectored and kernel-side copies are not modelled: refuse them on a tracked fd, loudly. */
#define REFUSE(fd, name)                                                                       \
    init();                                                                                    \
    if (slot_of(fd))                                                                           \
        die(#name " on a tracked file is not modelled");                                        \
    if (!real.name) {                                                                          \
        errno = ENOSYS;                                                                        \
        return -1;                                                                             \
    }

ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
    REFUSE(fd, writev);
    return real.writev(fd, iov, cnt);
}

ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
    REFUSE(fd, pwritev);
    return real.pwritev(fd, iov, cnt, off);
}

ssize_t pwritev64(int fd, const struct iovec *iov, int cnt, off64_t off)
{
    REFUSE(fd, pwritev64);
    return real.pwritev64(fd, iov, cnt, off);
}

ssize_t pwritev2(int fd, const struct iovec *iov, int cnt, off_t off, int flags)
{
    REFUSE(fd, pwritev2);
    return real.pwritev2(fd, iov, cnt, off, flags);
}

ssize_t pwritev64v2(int fd, const struct iovec *iov, int cnt, off64_t off, int flags)
{
    REFUSE(fd, pwritev64v2);
    return real.pwritev64v2(fd, iov, cnt, off, flags);
}

ssize_t copy_file_range(int in, off64_t *in_off, int out, off64_t *out_off, size_t n,
                        unsigned int flags)
{
    REFUSE(out, copy_file_range);
    return real.copy_file_range(in, in_off, out, out_off, n, flags);
}

/* Under mu, and never returns: reverts what a power cut could lose, reports, dies. */
static void cut(void)
{
    unsigned long long nwrites = 0, nfiles_cut = 0, sectors = 0, reverted = 0, changed = 0,
                       torn = 0;
    for (int i = 0; i < nfiles; i++) {
        struct pfile *f = &files[i];
        if (!f->used || !f->undo)
            continue;
        nfiles_cut++;
        struct stat st;
        if (fstat(f->priv, &st) != 0)
            die("cannot stat a tracked file at the cut");
        /* Sectors settled: a newer version of them reached the disk. */
        off64_t end_max = 0;
        for (struct undo *u = f->undo; u; u = u->next)
            if (u->off + (off64_t)u->len > end_max)
                end_max = u->off + (off64_t)u->len;
        unsigned char *settled = calloc((size_t)(end_max / SECTOR / 8 + 1), 1);
        if (!settled)
            die("out of memory at the cut");
        for (struct undo *u = f->undo; u; u = u->next) {
            nwrites++;
            off64_t end = u->off + (off64_t)u->len;
            if (end > st.st_size)
                end = st.st_size; /* truncated away: not on disk either way */
            unsigned long long parts = 0, back = 0;
            for (off64_t at = u->off, next; at < end; at = next) {
                off64_t s = at / SECTOR;
                next = (s + 1) * SECTOR < end ? (s + 1) * SECTOR : end;
                parts++;
                if (settled[s / 8] & (1u << (s % 8)))
                    continue;
                if (coin()) {
                    settled[s / 8] |= (unsigned char)(1u << (s % 8));
                    continue;
                }
                unsigned char old[SECTOR], now[SECTOR];
                size_t len = (size_t)(next - at);
                for (size_t j = 0; j < len; j++) {
                    off64_t p = at + (off64_t)j;
                    old[j] = p < u->old_size ? u->old[p - u->off] : 0;
                }
                read_full(f->priv, now, len, at);
                if (memcmp(old, now, len) != 0)
                    changed++;
                if (real.pwrite64(f->priv, old, len, at) != (ssize_t)len)
                    die("cannot revert a sector at the cut");
                back++;
            }
            sectors += parts;
            reverted += back;
            if (back > 0 && back < parts)
                torn++;
        }
        free(settled);
    }
    char line[256];
    int n = snprintf(line, sizeof line,
                     "cut at sync %llu: %llu unsynced writes in %llu files, %llu sectors, "
                     "%llu sectors reverted (%llu changed), %llu writes torn\n",
                     syncs, nwrites, nfiles_cut, sectors, reverted, changed, torn);
    if (n > 0 && (size_t)n < sizeof line) {
        real.write(2, "powercut: ", 10);
        real.write(2, line, (size_t)n);
        if (report_path[0]) {
            int fd = real.open64(report_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
            if (fd >= 0) {
                if (real.write(fd, line, (size_t)n) == n)
                    real.fsync(fd);
                real.close(fd);
            }
        }
    }
    raise(SIGKILL);
    for (;;)
        pause();
}

static int tracked_sync(int fd, int data)
{
    init();
    int (*sync_fn)(int) = data ? real.fdatasync : real.fsync;
    if (!slot_of(fd))
        return sync_fn(fd);
    pthread_mutex_lock(&mu);
    struct stat st;
    struct pfile *f = tracked(fd, &st);
    if (f && ++syncs == cut_at)
        cut();
    int r = sync_fn(fd);
    int e = errno;
    if (f && r == 0)
        free_undo(f); /* durable now */
    pthread_mutex_unlock(&mu);
    errno = e;
    return r;
}

int fsync(int fd)
{
    return tracked_sync(fd, 0);
}

int fdatasync(int fd)
{
    return tracked_sync(fd, 1);
}

static int tracked_truncate(int fd, off64_t len, int is64)
{
    init();
    if (!slot_of(fd))
        return is64 ? real.ftruncate64(fd, len) : real.ftruncate(fd, (off_t)len);
    pthread_mutex_lock(&mu);
    struct stat st;
    struct pfile *f = tracked(fd, &st);
    int r = is64 ? real.ftruncate64(fd, len) : real.ftruncate(fd, (off_t)len);
    int e = errno;
    if (f && r == 0)
        clip(f, len);
    pthread_mutex_unlock(&mu);
    errno = e;
    return r;
}

int ftruncate(int fd, off_t len)
{
    return tracked_truncate(fd, len, 0);
}

int ftruncate64(int fd, off64_t len)
{
    return tracked_truncate(fd, len, 1);
}

/* Under mu: every tracked write (on device dev only, unless all) is durable now. */
static void all_durable(int all, dev_t dev)
{
    for (int i = 0; i < nfiles; i++) {
        if (files[i].used && (all || files[i].dev == dev)) {
            free_undo(&files[i]);
            release_if_idle(&files[i]);
        }
    }
}

/* sync makes every write durable, syncfs those on its fd's filesystem. Neither is a cut. */
void sync(void)
{
    init();
    pthread_mutex_lock(&mu);
    real.sync();
    all_durable(1, 0);
    pthread_mutex_unlock(&mu);
}

int syncfs(int fd)
{
    init();
    pthread_mutex_lock(&mu);
    struct stat st;
    int r = real.syncfs ? real.syncfs(fd) : (errno = ENOSYS, -1);
    int e = errno;
    if (r == 0 && fstat(fd, &st) == 0)
        all_durable(0, st.st_dev);
    pthread_mutex_unlock(&mu);
    errno = e;
    return r;
}
