#include "net/xprt.h"

#include <sys/sendfile.h>

ssize_t
wf_xprt_plain_sendfile(int fd, int in_fd, off_t *off, size_t n)
{
    return sendfile(fd, in_fd, off, n);
}
