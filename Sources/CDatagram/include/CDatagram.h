#ifndef PIMESH_CDATAGRAM_H
#define PIMESH_CDATAGRAM_H

#include <stddef.h>

/// The most datagrams one `pimesh_recv_datagrams` call takes.
#define PIMESH_DATAGRAMS_MAX 64

/// Takes up to `count` (at most PIMESH_DATAGRAMS_MAX) waiting IPv4 datagrams from `fd` in one
/// `recvmmsg` without blocking: datagram i lands at `buffer + i * slot_bytes` (cut to
/// `slot_bytes`), its length in `lengths[i]` and its source in `sources[i]` (an array of
/// `struct sockaddr_in`, untyped: a socket header here would clash with Swift's Glibc module).
/// Returns how many were taken, or -1 with errno (EAGAIN when none waits). Glibc's `recvmmsg` and `mmsghdr`
/// are GNU extensions that Swift's Glibc module does not show.
int pimesh_recv_datagrams(int fd, void *buffer, size_t slot_bytes, unsigned count, void *sources, unsigned *lengths);

#endif
