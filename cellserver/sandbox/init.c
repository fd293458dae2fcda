/* cellstack-init: PID 1 of a kernel's pid namespace (cellserver.sandbox.pidns).
 *
 * The provider spawns it (posix_spawn: no copy of the provider's memory) as
 * the first process of a new pid namespace, then forks the kernel into the
 * same namespace as PID 2.  It only reaps: processes the kernel leaves
 * behind are reparented to it, and without a reaper they would stay zombies.
 * The provider SIGKILLs it once the kernel has ended, and then the kernel of
 * the host kills whatever is left in the namespace.  It dies with its parent
 * (parent-death signal; argv[1] is the parent's host pid, checked after the
 * signal is set, in case the parent died before).  Every signal is blocked:
 * only SIGKILL, from outside the namespace, ends it.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

/* The parent's pid on the host: getppid() is 0 from inside the namespace,
 * so read field 4 of /proc/self/stat (the host's /proc is still mounted). */
static long host_ppid(void)
{
    char buf[1024];
    FILE *f = fopen("/proc/self/stat", "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    char state;
    long ppid;
    if (!p || sscanf(p + 1, " %c %ld", &state, &ppid) != 2)
        return -1;
    return ppid;
}

int main(int argc, char **argv)
{
    sigset_t all, chld;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, NULL);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0)
        return 1;
    if (argc < 2 || host_ppid() != atol(argv[1]))
        return 1;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    for (;;) {
        while (waitpid(-1, NULL, WNOHANG) > 0)
            ;
        sigwaitinfo(&chld, NULL);
    }
}
