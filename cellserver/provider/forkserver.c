/* The kernel template's fork loop (cellserver/provider/forkserver.py).
 *
 * Built by the install command into the venv (lib/cellstack-forkserver.so)
 * and entered through ctypes.PyDLL by the warm template, which calls
 * cs_forkserver() once and never runs Python again: returns only in a
 * forked child (the payload's length; the child then runs
 * PyOS_AfterFork_Child and its kernel) or when the command pipe is closed.
 *
 * Why C: every Python object the template's loop touched lives on pages
 * it shares with its ready kernels, so each kernel used to cost the
 * template ~420 page copies of its own, and the first write into a
 * huge page split it (44 MB in 2 MiB pages at start, 6 MB after a minute
 * of load), after which every fork copied one page-table entry per 4 KiB.
 * This loop writes to a few pages of its own stack and data only.
 *
 * Commands (from the provider's logic process) on cmd_fd:
 *   struct head {op, arg, len} + len bytes
 *   OP_START: arg = flags (FLAG_NEWPID: the child is PID 2 of a new pid
 *             namespace whose PID 1 is init_path), payload = the child's
 *             parameters, handed to it in buf;
 *   OP_KILL:  arg = a kernel's pid: SIGKILL to it, its process group and
 *             its namespace's init, if it is still a child not yet reaped
 *             (so a reused pid is never hit).
 * Reports on report_fd, struct record {kind, pid, init, value}:
 *   REP_STARTED (pid, init), REP_START_FAILED (value = errno),
 *   REP_EXITED (pid, init, value = wait status) after the kernel was reaped
 *   and its group and init killed.  Every other child (an init, an orphan:
 *   the template is a child subreaper) is reaped silently.
 * At EOF on cmd_fd: every kernel is killed, every child reaped, returns -1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { OP_START = 1, OP_KILL = 2 };
enum { FLAG_NEWPID = 1 };
enum { REP_STARTED = 1, REP_START_FAILED = 2, REP_EXITED = 3 };
#define MAX_KERNELS 8192

struct head { int32_t op, arg, len; };
struct record { int32_t kind, pid, init, value; };

static struct { pid_t pid, init; } live[MAX_KERNELS];
static int nlive;

static int write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

/* 0: all n bytes read; -1: EOF or error before that */
static int read_exact(int fd, void *p, size_t n)
{
    char *c = p;
    while (n) {
        ssize_t r = read(fd, c, n);
        if (r < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (r <= 0)
            return -1;
        c += r;
        n -= (size_t)r;
    }
    return 0;
}

static void report(int fd, int kind, int pid, int init, int value)
{
    struct record r = { kind, pid, init, value };
    write_all(fd, &r, sizeof r);        /* the logic process gone: nothing to tell */
}

static int find(pid_t pid)
{
    for (int i = 0; i < nlive; i++)
        if (live[i].pid == pid)
            return i;
    return -1;
}

static void kill_kernel(int i)
{
    kill(live[i].pid, SIGKILL);
    kill(-live[i].pid, SIGKILL);        /* its group (the kernel calls setsid) */
    if (live[i].init)
        kill(live[i].init, SIGKILL);    /* which ends its pid namespace */
}

static void reap(int report_fd)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        int i = find(pid);
        if (i < 0)
            continue;
        pid_t init = live[i].init;
        kill_kernel(i);                 /* what is left of its group and namespace */
        live[i] = live[--nlive];
        report(report_fd, REP_EXITED, pid, init, status);
    }
}

static pid_t spawn_init(const char *path, const char *parent)
{
    posix_spawn_file_actions_t fa;
    pid_t pid;
    char *argv[] = { (char *)path, (char *)parent, NULL };
    char *envp[] = { NULL };
    posix_spawn_file_actions_init(&fa);
    for (int fd = 0; fd < 3; fd++)
        posix_spawn_file_actions_addopen(&fa, fd, "/dev/null", O_RDWR, 0);
    int e = posix_spawn(&pid, path, &fa, NULL, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    if (e) {
        errno = e;
        return -1;
    }
    return pid;
}

static void drain(int fd, int32_t n)
{
    char sink[4096];
    while (n > 0) {
        size_t k = n < (int32_t)sizeof sink ? (size_t)n : sizeof sink;
        if (read_exact(fd, sink, k))
            return;
        n -= (int32_t)k;
    }
}

int cs_forkserver(int cmd_fd, int report_fd, const char *init_path, char *buf, int buflen)
{
    sigset_t chld, old;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    if (sigprocmask(SIG_BLOCK, &chld, &old))
        return -2;
    int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
    int own_ns = open("/proc/self/ns/pid", O_RDONLY | O_CLOEXEC);
    if (sfd < 0 || own_ns < 0)
        return -2;
    char parent[16];
    snprintf(parent, sizeof parent, "%d", (int)getpid());
    struct pollfd fds[2] = { { cmd_fd, POLLIN, 0 }, { sfd, POLLIN, 0 } };
    for (;;) {
        reap(report_fd);
        if (poll(fds, 2, -1) < 0 && errno != EINTR)
            break;
        if (fds[1].revents) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof si) > 0)
                ;
        }
        if (!fds[0].revents)
            continue;
        struct head h;
        if (read_exact(cmd_fd, &h, sizeof h))
            break;                      /* EOF: the logic process is done */
        if (h.op == OP_KILL) {
            int i = find(h.arg);
            if (i >= 0)
                kill_kernel(i);
            continue;
        }
        if (h.op != OP_START || h.len < 0 || h.len > buflen || nlive == MAX_KERNELS) {
            drain(cmd_fd, h.len);
            report(report_fd, REP_START_FAILED, 0, 0, h.op != OP_START ? EINVAL : h.len > buflen ? E2BIG : EAGAIN);
            continue;
        }
        if (read_exact(cmd_fd, buf, (size_t)h.len))
            break;
        pid_t init = 0;
        if (h.arg & FLAG_NEWPID) {
            if (unshare(CLONE_NEWPID)) {
                report(report_fd, REP_START_FAILED, 0, 0, errno);
                continue;
            }
            init = spawn_init(init_path, parent);    /* PID 1 of the namespace */
            if (init < 0) {
                int e = errno;
                setns(own_ns, CLONE_NEWPID);
                report(report_fd, REP_START_FAILED, 0, 0, e);
                continue;
            }
        }
        pid_t pid = fork();
        if (pid == 0) {
            close(sfd);
            close(own_ns);
            close(cmd_fd);
            close(report_fd);
            sigprocmask(SIG_SETMASK, &old, NULL);
            return h.len;
        }
        int e = errno;
        if (init)
            setns(own_ns, CLONE_NEWPID);    /* the next kernel gets a namespace of its own */
        if (pid < 0) {
            if (init)
                kill(init, SIGKILL);
            report(report_fd, REP_START_FAILED, 0, 0, e);
            continue;
        }
        live[nlive].pid = pid;
        live[nlive].init = init;
        nlive++;
        report(report_fd, REP_STARTED, pid, init, 0);
    }
    /* the end: every kernel killed, every child reaped */
    for (int i = 0; i < nlive; i++)
        kill_kernel(i);
    /* for at most 2 s: an orphan that left the kernel's group may outlive
     * it (the logic process empties the kernel's cgroups) */
    struct timespec tick = { 0, 10 * 1000 * 1000 };
    for (int n = 0; n < 200; n++) {
        int status;
        pid_t pid;
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
            ;
        if (pid < 0 && errno == ECHILD)
            break;
        nanosleep(&tick, NULL);
    }
    close(sfd);
    close(own_ns);
    return -1;
}
