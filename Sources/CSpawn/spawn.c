#define _GNU_SOURCE
#include <sys/timex.h>
#include "CSpawn.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/capability.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

/// Closes every descriptor from `low` up, except the `count` in `keep` (-1: none). close_range
/// where the kernel has it (5.9+); otherwise one close per possible descriptor. Only system
/// calls: this runs between fork and exec, where nothing that allocates or locks is allowed.
static void close_all_from(int low, int *keep, int count) {
    for (int i = 1; i < count; i++) {
        for (int j = i; j > 0 && keep[j - 1] > keep[j]; j--) {
            int swap = keep[j];
            keep[j] = keep[j - 1];
            keep[j - 1] = swap;
        }
    }
    unsigned next = (unsigned)low;
    for (int i = 0; i < count; i++) {
        if (keep[i] < low || (unsigned)keep[i] < next) continue;
        if ((unsigned)keep[i] > next && syscall(SYS_close_range, next, (unsigned)(keep[i] - 1), 0u) != 0) goto fallback;
        next = (unsigned)keep[i] + 1;
    }
    if (syscall(SYS_close_range, next, ~0u, 0u) == 0) return;
fallback:;
    struct rlimit limit;
    long top = (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY) ? (long)limit.rlim_cur : 65536;
    for (long fd = low; fd < top; fd++) {
        int kept = 0;
        for (int i = 0; i < count; i++) kept |= keep[i] == fd;
        if (!kept) close((int)fd);
    }
}

static int clear_inheritable_capabilities(void) {
    struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
    if (syscall(SYS_capget, &header, data) != 0) return -1;
    int any = 0;
    for (int i = 0; i < _LINUX_CAPABILITY_U32S_3; i++) {
        any |= data[i].inheritable != 0;
        data[i].inheritable = 0;
    }
    return any ? (int)syscall(SYS_capset, &header, data) : 0;
}

/// A descriptor moved to 3 or above (close-on-exec): a lead started with stdin, stdout or
/// stderr closed gets 0–2 from pipe2, and the child's dup2 onto 0–2 would overwrite them.
static int above_stdio(int fd) {
    if (fd < 0 || fd > 2) return fd;
    int moved = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    int error = errno;
    close(fd);
    errno = error;
    return moved;
}

static int pipe_above_stdio(int fds[2]) {
    if (pipe2(fds, O_CLOEXEC) != 0) return -1;
    fds[0] = above_stdio(fds[0]);
    fds[1] = above_stdio(fds[1]);
    if (fds[0] < 0 || fds[1] < 0) {
        int error = errno;
        if (fds[0] >= 0) close(fds[0]);
        if (fds[1] >= 0) close(fds[1]);
        errno = error;
        return -1;
    }
    return 0;
}

static void report(int fd, int step, int error) {
    int message[2] = {step, error};
    ssize_t ignored = write(fd, message, sizeof message);
    (void)ignored;
    _exit(127);
}

int pimesh_spawn(const char *path, char *const argv[], char *const envp[], int input_fd, int output_fd,
                 int passed_fd, int change_ids, uid_t uid, gid_t gid, const gid_t *groups, size_t group_count,
                 int hold, pid_t *pid_out, int held_fds[2], int *failed_step) {
    int status_pipe[2];
    int gate[2] = {-1, -1};
    *failed_step = PIMESH_SPAWN_OK;
    if (pipe_above_stdio(status_pipe) != 0) {
        *failed_step = PIMESH_SPAWN_PIPE;
        return errno;
    }
    // The gate is a socket pair, not a pipe: the go byte is sent with MSG_NOSIGNAL, so a child
    // that died before the gate costs an error, not a SIGPIPE to the lead.
    if (hold && (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, gate) != 0
                 || (gate[0] = above_stdio(gate[0])) < 0 || (gate[1] = above_stdio(gate[1])) < 0)) {
        int error = errno;
        if (gate[0] >= 0) close(gate[0]);
        if (gate[1] >= 0) close(gate[1]);
        close(status_pipe[0]);
        close(status_pipe[1]);
        *failed_step = PIMESH_SPAWN_PIPE;
        return error;
    }
    // Signals are blocked around fork so that no handler of the lead's runs in the child
    // before it has reset them.
    sigset_t all, previous;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &previous);
    pid_t pid = fork();
    if (pid == 0) {
        for (int signal = 1; signal < NSIG; signal++) {
            if (signal == SIGKILL || signal == SIGSTOP) continue;
            struct sigaction action;
            memset(&action, 0, sizeof action);
            action.sa_handler = SIG_DFL;
            sigaction(signal, &action, NULL);
        }
        setpgid(0, 0);
        int null_fd = above_stdio(open("/dev/null", O_RDWR | O_CLOEXEC));
        if (null_fd < 0) report(status_pipe[1], PIMESH_SPAWN_STDIO, errno);
        // Above 2 first: a caller's descriptor that is itself 0, 1 or 2 (a lead started with
        // stdio closed) would be overwritten by the dup2 onto another of them.
        int in = input_fd >= 0 ? fcntl(input_fd, F_DUPFD_CLOEXEC, 3) : null_fd;
        int out = output_fd >= 0 ? fcntl(output_fd, F_DUPFD_CLOEXEC, 3) : null_fd;
        if (in < 0 || out < 0) report(status_pipe[1], PIMESH_SPAWN_STDIO, errno);
        if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0) report(status_pipe[1], PIMESH_SPAWN_STDIO, errno);
        // Nothing of the lead's (API listener, heartbeat sockets, the database) reaches the agent,
        // but the one descriptor passed on purpose (its secret), which outlives exec.
        int keep[3] = {status_pipe[1], gate[0], passed_fd};
        close_all_from(3, keep, 3);
        if (passed_fd >= 0 && fcntl(passed_fd, F_SETFD, 0) != 0) report(status_pipe[1], PIMESH_SPAWN_PASSED_FD, errno);
        if (hold) {
            // The lead records this pid before the program runs: a lead killed in between
            // closes the gate unopened, and the child ends here instead of running unknown.
            char go = 0;
            ssize_t got;
            do {
                got = read(gate[0], &go, 1);
            } while (got < 0 && errno == EINTR);
            if (got != 1) _exit(127);
            close(gate[0]);
        }
        if (change_ids) {
            if (setgroups(group_count, groups) != 0) report(status_pipe[1], PIMESH_SPAWN_SETGROUPS, errno);
            if (setresgid(gid, gid, gid) != 0) report(status_pipe[1], PIMESH_SPAWN_SETGID, errno);
            if (setresuid(uid, uid, uid) != 0) report(status_pipe[1], PIMESH_SPAWN_SETUID, errno);
        }
        // A lead that runs as its own user keeps CAP_SETUID, CAP_SETGID and CAP_KILL as
        // ambient capabilities (the unit's AmbientCapabilities=), and ambient capabilities
        // survive execve: cleared here, the agent's program starts with none. (Kernels before
        // 4.3 have no ambient set and refuse the call; there is nothing to clear then.)
        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL)
            report(status_pipe[1], PIMESH_SPAWN_CAPABILITIES, errno);
        // The inheritable set too: a program with file-inheritable capabilities would gain them.
        if (clear_inheritable_capabilities() != 0) report(status_pipe[1], PIMESH_SPAWN_CAPABILITIES, errno);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execve(path, argv, envp);
        report(status_pipe[1], PIMESH_SPAWN_EXEC, errno);
    }
    int fork_error = errno;
    pthread_sigmask(SIG_SETMASK, &previous, NULL);
    close(status_pipe[1]);
    if (hold) close(gate[0]);
    if (pid < 0) {
        close(status_pipe[0]);
        if (hold) close(gate[1]);
        *failed_step = PIMESH_SPAWN_FORK;
        return fork_error;
    }
    // Also set here, so that no signal to the group can race the child's own setpgid.
    setpgid(pid, pid);
    *pid_out = pid;
    if (hold) {
        held_fds[0] = gate[1];
        held_fds[1] = status_pipe[0];
        return 0;
    }
    return pimesh_spawn_release(pid, -1, status_pipe[0], 1, failed_step);
}

int pimesh_spawn_release(pid_t pid, int gate_fd, int status_fd, int go, int *failed_step) {
    *failed_step = PIMESH_SPAWN_OK;
    if (gate_fd >= 0) {
        if (go) {
            char byte = 1;
            ssize_t sent;
            do {
                sent = send(gate_fd, &byte, 1, MSG_NOSIGNAL);
            } while (sent < 0 && errno == EINTR);
        }
        close(gate_fd);
    }
    int message[2] = {0, 0};
    ssize_t got;
    do {
        got = read(status_fd, message, sizeof message);
    } while (got < 0 && errno == EINTR);
    close(status_fd);
    if (got == (ssize_t)sizeof message || !go) {
        // exec never happened: collect the child here so no zombie is left for anyone else.
        int ignored;
        while (waitpid(pid, &ignored, 0) < 0 && errno == EINTR) {}
        if (!go) {
            *failed_step = PIMESH_SPAWN_EXEC;
            return ECANCELED;
        }
        *failed_step = message[0];
        return message[1];
    }
    return 0;
}

unsigned long long pimesh_process_start_time(pid_t pid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    char buffer[1024];
    ssize_t n = read(fd, buffer, sizeof buffer - 1);
    close(fd);
    if (n <= 0) return 0;
    buffer[n] = 0;
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    char *p = strrchr(buffer, ')');
    if (!p) return 0;
    p++;
    for (int field = 3; field < 22 && *p; field++) {
        while (*p == ' ') p++;
        while (*p && *p != ' ') p++;
    }
    return strtoull(p, NULL, 10);
}

int pimesh_become_subreaper(void) {
    return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
}

int pimesh_pidfd_send_signal(int pidfd, int sig) {
    return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0u);
}

int pimesh_pidfd_open(pid_t pid) {
    return (int)syscall(SYS_pidfd_open, pid, 0u);
}

int pimesh_peer_credentials(int fd, pid_t *pid, uid_t *uid, gid_t *gid) {
    struct ucred credentials;
    socklen_t length = sizeof credentials;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) != 0) return errno;
    *pid = credentials.pid;
    *uid = credentials.uid;
    *gid = credentials.gid;
    return 0;
}

int pimesh_filled_pipe(const void *bytes, size_t count) {
    if (count > PIPE_BUF) {
        errno = EMSGSIZE;
        return -1;
    }
    int fds[2];
    if (pipe_above_stdio(fds) != 0) return -1;
    ssize_t written;
    do {
        written = write(fds[1], bytes, count);
    } while (written < 0 && errno == EINTR);
    int error = errno;
    close(fds[1]);
    if (written != (ssize_t)count) {
        close(fds[0]);
        errno = written < 0 ? error : EIO;
        return -1;
    }
    return fds[0];
}

int pimesh_pipe_cloexec(int fds[2]) {
    return pipe2(fds, O_CLOEXEC) == 0 ? 0 : errno;
}

int pimesh_set_dumpable(int dumpable) {
    return prctl(PR_SET_DUMPABLE, dumpable, 0, 0, 0);
}

int pimesh_memfd_cloexec(const char *name) {
    return memfd_create(name, MFD_CLOEXEC);
}

int pimesh_set_pipe_size(int fd, int bytes) {
    return fcntl(fd, F_SETPIPE_SZ, bytes);
}

int pimesh_clock_synchronized(void) {
    struct timex status = {0};
    int state = adjtimex(&status);
    if (state == -1) return -1;
    return state != TIME_ERROR && (status.status & STA_UNSYNC) == 0;
}
