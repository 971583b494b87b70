#define _GNU_SOURCE
#include "CDatagram.h"

#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

int pimesh_recv_datagrams(int fd, void *buffer, size_t slot_bytes, unsigned count, void *sources, unsigned *lengths) {
    struct sockaddr_in *names = sources;
    if (count > PIMESH_DATAGRAMS_MAX) {
        errno = EINVAL;
        return -1;
    }
    struct mmsghdr headers[PIMESH_DATAGRAMS_MAX];
    struct iovec vectors[PIMESH_DATAGRAMS_MAX];
    memset(headers, 0, sizeof(struct mmsghdr) * count);
    for (unsigned i = 0; i < count; i++) {
        vectors[i].iov_base = (char *)buffer + i * slot_bytes;
        vectors[i].iov_len = slot_bytes;
        headers[i].msg_hdr.msg_iov = &vectors[i];
        headers[i].msg_hdr.msg_iovlen = 1;
        headers[i].msg_hdr.msg_name = &names[i];
        headers[i].msg_hdr.msg_namelen = sizeof(struct sockaddr_in);
    }
    int received = recvmmsg(fd, headers, count, MSG_DONTWAIT, NULL);
    for (int i = 0; i < received; i++) {
        lengths[i] = headers[i].msg_len;
    }
    return received;
}
