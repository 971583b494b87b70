#ifndef PIMESH_CSPAWN_H
#define PIMESH_CSPAWN_H

#include <sys/types.h>
#include <stddef.h>

/// What failed in the child before exec; 0 when nothing did.
enum pimesh_spawn_step {
    PIMESH_SPAWN_OK = 0,
    PIMESH_SPAWN_STDIO = 1,
    PIMESH_SPAWN_SETGROUPS = 2,
    PIMESH_SPAWN_SETGID = 3,
    PIMESH_SPAWN_SETUID = 4,
    PIMESH_SPAWN_EXEC = 5,
    PIMESH_SPAWN_FORK = 6,
    PIMESH_SPAWN_PIPE = 7,
    PIMESH_SPAWN_CAPABILITIES = 8,
    PIMESH_SPAWN_PASSED_FD = 9,
};

/// Starts `path` with `argv`/`envp` in a process group of its own, default signal dispositions
/// and an empty mask, stdin from `input_fd` and stdout+stderr into `output_fd` (-1: /dev/null),
/// `passed_fd` (3 or above, -1: none) under the same number, every other descriptor closed,
/// and, when `change_ids` is set, the given groups, gid and uid.
/// Returns 0 and the pid, or an errno with the step that failed.
///
/// With `hold` set, the child waits before it changes ids or runs anything, and the call
/// returns at once with `held_fds` (the gate, the exec status): the caller records the pid,
/// then calls pimesh_spawn_release. If the caller dies first, the child ends without running.
int pimesh_spawn(const char *path, char *const argv[], char *const envp[], int input_fd, int output_fd,
                 int passed_fd, int change_ids, uid_t uid, gid_t gid, const gid_t *groups, size_t group_count,
                 int hold, pid_t *pid_out, int held_fds[2], int *failed_step);

/// Lets a held child go on (`go` 1) or end (`go` 0), then waits for its exec. Returns 0, or an
/// errno with the step that failed (ECANCELED when told not to go); a child that did not exec
/// has been collected.
int pimesh_spawn_release(pid_t pid, int gate_fd, int status_fd, int go, int *failed_step);

/// Exact start time of a process (field 22 of /proc/PID/stat, clock ticks since boot), so that
/// a recycled pid is never taken for the process that had it. 0 when it is gone.
unsigned long long pimesh_process_start_time(pid_t pid);

/// pidfd_open(2): a descriptor that becomes readable when `pid` exits, whoever its parent is.
int pimesh_pidfd_open(pid_t pid);

/// pidfd_send_signal(2): signals exactly the process the descriptor was opened for, never one
/// that took its pid after it was reaped by someone else. 0 on success, -1 with errno.
int pimesh_pidfd_send_signal(int pidfd, int sig);

/// PR_SET_CHILD_SUBREAPER: orphans of this process's children (a lead's agents, once the lead is
/// gone) become its children instead of init's, so that a benchmark can find and stop them.
int pimesh_become_subreaper(void);

/// Peer credentials of a connected unix socket (SO_PEERCRED); 0 on success.
int pimesh_peer_credentials(int fd, pid_t *pid, uid_t *uid, gid_t *gid);

/// A pipe holding `count` bytes (at most PIPE_BUF) and nothing more: its read end, 3 or above
/// and close-on-exec, or -1 with errno. A secret handed to a child this way is in no
/// environment (/proc/PID/environ, the child's own children) and is gone once read.
int pimesh_filled_pipe(const void *bytes, size_t count);

/// pipe2(O_CLOEXEC): both ends close-on-exec from birth, with no window for another thread's
/// spawn to inherit them (Glibc does not export pipe2 to Swift without _GNU_SOURCE).
int pimesh_pipe_cloexec(int fds[2]);

/// PR_SET_DUMPABLE (prctl is variadic, which Swift cannot call): 0 makes /proc/PID/fd,
/// environ and mem of this process root's, and refuses ptrace by its own user.
int pimesh_set_dumpable(int dumpable);

/// memfd_create(2) with MFD_CLOEXEC: an anonymous file in memory, or -1 with errno (Glibc does
/// not export it to Swift without _GNU_SOURCE).
int pimesh_memfd_cloexec(const char *name);

/// F_SETPIPE_SZ: the capacity of a pipe or FIFO; the new size, or -1 (the user's pipe quota).
int pimesh_set_pipe_size(int fd, int bytes);

/* 1 when the kernel says the wall clock is NTP-synchronised (adjtimex: not TIME_ERROR and
 * STA_UNSYNC clear), 0 when not, -1 when it cannot tell. sys/timex.h is not in Swift's Glibc. */
int pimesh_clock_synchronized(void);

#endif
