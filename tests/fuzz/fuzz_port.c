/* libFuzzer target for the receive side of a port: the input is a sequence
 * of packets sent raw, as a peer would, into a real SOCK_SEQPACKET pair and
 * read by a router-side port (max_size 1024, so that fragmentation is
 * reachable with small inputs).  Each packet is
 *     ctl (1 byte) | len (2 bytes, little endian) | len bytes
 * ctl bits 0-2: fds to attach (0..7, more than a port accepts); bit 3: fix
 * up the version and size fields of the header, so that the fuzzer reaches
 * reassembly and dispatch rather than failing on framing every time; bit
 * 4: read after this packet (else packets pile up in the socket).  Must never
 * crash, leak memory, or leak an fd (checked after every input). */
#include <dirent.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/common.h"
#include "core/log.h"
#include "process/port.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAX_SIZE 1024

static int fuzz_closes; /* on_close calls for the current input */
static wf_port_request_t fuzz_req;

static void
fuzz_on_msg(wf_port_t *p, wf_port_msg_t *msg)
{
    size_t sum = 0;
    unsigned char *flat;

    wf_unused(p);
    wf_list_for_each(l, &msg->chain)
    {
        sum += wf_container_of(l, wf_port_buf_t, link)->size;
    }
    if (sum != msg->size || msg->nfds > WF_PORT_MAX_FDS) {
        abort();
    }
    flat = wf_port_msg_flatten(msg);
    if (flat == NULL || flat[msg->size] != '\0') {
        abort();
    }
}

/* Keeps (and closes) the first fd, as a handler that takes one would. */
static void
fuzz_on_fds(wf_port_t *p, wf_port_msg_t *msg)
{
    int fd = wf_port_msg_take_fd(msg, 0);

    fuzz_on_msg(p, msg);
    if (fd != -1) {
        close(fd);
    }
}

/* Replies, so that the send path runs from inside a handler. */
static void
fuzz_on_echo(wf_port_t *p, wf_port_msg_t *msg)
{
    unsigned char *flat = wf_port_msg_flatten(msg);

    if (flat != NULL) {
        wf_port_reply(p, msg, 4, flat, msg->size);
    }
}

static void
fuzz_on_reply(wf_port_request_t *req, wf_port_msg_t *msg, int status)
{
    wf_unused(req);
    if ((status == WF_OK) != (msg != NULL)) {
        abort();
    }
}

static void
fuzz_on_close(wf_port_t *p)
{
    wf_unused(p);
    fuzz_closes++;
}

#define FROM_MAIN   WF_PORT_FROM(WF_PORT_MAIN)
#define FROM_ROUTER WF_PORT_FROM(WF_PORT_ROUTER)

static const wf_port_type_t fuzz_types[] = {
    {1, "msg", fuzz_on_msg, FROM_MAIN, 0},
    {2, "fds", fuzz_on_fds, FROM_MAIN, 2},
    {3, "router-only", fuzz_on_msg, FROM_ROUTER, 0},
    {4, "reply", wf_port_reply_handler, FROM_MAIN | FROM_ROUTER, 0},
    {5, "echo", fuzz_on_echo, FROM_MAIN, 0},
    {0x10000, "far", fuzz_on_msg, FROM_MAIN, WF_PORT_MAX_FDS},
};

static wf_port_owner_t fuzz_owner = {.on_close = fuzz_on_close};

static void
fuzz_send(int fd, const uint8_t *p, size_t n, unsigned ctl, int spare)
{
    static unsigned char out[65536];
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * 7)];
    } cbuf;
    struct iovec iov = {.iov_base = out, .iov_len = n};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    unsigned nfds = ctl & 7;
    wf_port_hdr_t h;

    memcpy(out, p, n);
    if ((ctl & 8) != 0 && n >= sizeof(h)) {
        memcpy(&h, out, sizeof(h));
        h.version = WF_PORT_VERSION;
        h.size = (uint32_t)(n - sizeof(h));
        memcpy(out, &h, sizeof(h));
    }
    if (nfds > 0) {
        struct cmsghdr *cm;
        int fds[7];

        mh.msg_control = cbuf.buf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
        cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        for (unsigned i = 0; i < nfds; i++) {
            fds[i] = spare;
        }
        memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
    }
    /* EAGAIN (the socket is full) just loses the packet. */
    (void)sendmsg(fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
}

static void
fuzz_read(wf_port_t *p)
{
    while (wf_port_on_readable(p) == WF_OK) {
    }
}

/* The fd table, as seen by fuzz_fds_scan(). */
#define FUZZ_MAX_FD 4096

typedef struct fuzz_fd {
    bool open;
    dev_t dev; /* the file the fd refers to */
    ino_t ino;
} fuzz_fd_t;

static fuzz_fd_t fuzz_fds_before[FUZZ_MAX_FD];
static fuzz_fd_t fuzz_fds_after[FUZZ_MAX_FD];

/* Records every open fd and the file it refers to.  The leak check compares
 * the table before and after one input rather than the lowest free fd with
 * its value at the first input: the sanitizer runtime opens fds of its own
 * between inputs (two pipes to llvm-symbolizer the first time libFuzzer
 * prints a NEW_FUNC line, i.e. once the library is instrumented), which
 * moved the lowest free fd with no leak at all; and fds received by the port
 * are numbered above the sockets and the spare, so leaking one did not move
 * it anyway. */
static void
fuzz_fds_scan(fuzz_fd_t *tab)
{
    DIR *dir = opendir("/proc/self/fd");
    struct dirent *e;

    if (dir == NULL) {
        abort();
    }
    memset(tab, 0, sizeof(*tab) * FUZZ_MAX_FD);
    while ((e = readdir(dir)) != NULL) {
        char *end;
        long fd = strtol(e->d_name, &end, 10);
        struct stat st;

        if (end == e->d_name || *end != '\0' || fd == dirfd(dir)) {
            continue; /* ".", "..", or the directory being read */
        }
        if (fd < 0 || fd >= FUZZ_MAX_FD || fstat((int)fd, &st) == -1) {
            abort();
        }
        tab[fd] = (fuzz_fd_t){.open = true, .dev = st.st_dev, .ino = st.st_ino};
    }
    closedir(dir);
}

/* True if an fd is open now that was not open, or referred to another file,
 * when fuzz_fds_before was scanned. */
static bool
fuzz_fds_leaked(void)
{
    fuzz_fds_scan(fuzz_fds_after);
    for (size_t i = 0; i < FUZZ_MAX_FD; i++) {
        const fuzz_fd_t *b = &fuzz_fds_before[i], *a = &fuzz_fds_after[i];

        if (a->open && (!b->open || a->dev != b->dev || a->ino != b->ino)) {
            return true;
        }
    }
    return false;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fds[2], spare;
    wf_port_t *p;

    wf_log_set_level(WF_LOG_ALERT);
    fuzz_fds_scan(fuzz_fds_before);
    fuzz_closes = 0;
    if (wf_port_pair(fds) != WF_OK) {
        abort();
    }
    spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
    p = wf_port_create(fds[1], WF_PORT_ROUTER, WF_PORT_MAIN, fuzz_types,
                       wf_nitems(fuzz_types), &fuzz_owner);
    if (p == NULL || spare == -1
        || wf_port_set_max_size(p, FUZZ_MAX_SIZE) != WF_OK) {
        abort();
    }
    fuzz_req.handler = fuzz_on_reply;
    wf_port_request_add(p, &fuzz_req); /* a reply may hit it by chance */

    while (size >= 3 && !wf_port_is_closed(p)) {
        unsigned ctl = data[0];
        size_t n = wf_min((size_t)(data[1] | data[2] << 8), size - 3);

        fuzz_send(fds[0], data + 3, n, ctl, spare);
        data += 3 + n;
        size -= 3 + n;
        if ((ctl & 16) != 0) {
            fuzz_read(p);
        }
    }
    fuzz_read(p);
    close(fds[0]); /* EOF, or EPIPE on a pending reply */
    fuzz_read(p);
    wf_port_flush(p);
    if (!wf_port_is_closed(p) || fuzz_closes != 1) {
        abort(); /* EOF must close the port, and on_close run once */
    }
    wf_port_request_del(p, &fuzz_req);
    wf_port_destroy(p);
    close(spare);
    if (fuzz_fds_leaked()) {
        abort(); /* an fd leaked */
    }
    return 0;
}
