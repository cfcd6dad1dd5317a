/* app-rt-bench: the app process's cost per request, without the router.
 * Forks an app process (wf_app_main() with a real module) over S sockets
 * and plays the router on them: keeps one GET in flight per socket, for
 * COUNT requests in all, then closes the sockets and reports the app
 * process's CPU time per request (getrusage of the child).  Not a test:
 * docs/internals/apps.md quotes its figures.
 *
 *   app-rt-bench MODULE.so CONF_JSON [COUNT [SOCKETS]]
 *
 * Run it under `strace -c -f` to count the app's syscalls per request. */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "apps/app_main.h"
#include "apps/app_proto.h"
#include "process/port.h"

#define MAX_SOCKS 16

static size_t
put_str(unsigned char *p, const char *s)
{
    uint32_t l = (uint32_t)strlen(s);
    size_t padded = (l + 1 + 3) & ~(size_t)3;

    memcpy(p, &l, 4);
    memcpy(p + 4, s, l);
    memset(p + 4 + l, 0, padded - l);
    return 4 + padded;
}

static size_t
get_encode(unsigned char *buf)
{
    static const char *const strs[WF_APP_REQ_NSTR] = {
        "GET",       "/",         "/",         "", "HTTP/1.1", "localhost:8080",
        "127.0.0.1", "127.0.0.1", "localhost",
    };
    static const char *const fields[] = {
        "Host", "localhost:8080", "User-Agent", "bench", "Accept", "*/*"};
    wf_app_req_hdr_t hdr = {.flags = WF_APP_REQ_BODY_END,
                            .nfields = 3,
                            .content_length = WF_APP_LEN_NONE,
                            .remote_port = 40000,
                            .local_port = 8080};
    size_t off = sizeof(hdr);

    memcpy(buf, &hdr, sizeof(hdr));
    for (unsigned i = 0; i < WF_APP_REQ_NSTR; i++) {
        off += put_str(buf + off, strs[i]);
    }
    for (unsigned i = 0; i < 6; i++) {
        off += put_str(buf + off, fields[i]);
    }
    return off;
}

static int
send_get(int fd, uint64_t stream, const unsigned char *get, size_t len)
{
    wf_port_hdr_t h = {.stream = stream,
                       .type = WF_APP_MSG_REQ_HEAD,
                       .size = (uint32_t)len,
                       .total = (uint32_t)len,
                       .version = WF_PORT_VERSION};
    struct iovec iov[2] = {{&h, sizeof(h)}, {(void *)get, len}};
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};

    return sendmsg(fd, &mh, MSG_NOSIGNAL) > 0 ? 0 : -1;
}

/* Reads one packet; returns its type, or 0 on EOF or error.  A
 * RESP_HEAD that says WF_APP_RESP_DONE ends the request: RESP_END. */
static uint32_t
recv_type(int fd)
{
    static unsigned char buf[WF_APP_MAX_SIZE];
    wf_port_hdr_t h;
    wf_app_resp_hdr_t rh;
    struct iovec iov[2] = {{&h, sizeof(h)}, {buf, sizeof(buf)}};
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
    ssize_t n = recvmsg(fd, &mh, 0);

    if (n < (ssize_t)sizeof(h)) {
        return 0;
    }
    if (h.type == WF_APP_MSG_RESP_HEAD && (size_t)n >= sizeof(h) + sizeof(rh)) {
        memcpy(&rh, buf, sizeof(rh));
        if (rh.flags & WF_APP_RESP_DONE) {
            return WF_APP_MSG_RESP_END;
        }
    }
    return h.type;
}

static pid_t
app_fork(const char *module, const char *json, int *router, unsigned n)
{
    int app[MAX_SOCKS];
    pid_t pid;

    for (unsigned i = 0; i < n; i++) {
        int sv[2];

        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
            perror("socketpair");
            exit(1);
        }
        router[i] = sv[0];
        app[i] = sv[1];
    }
    pid = fork();
    if (pid == 0) {
        wf_app_start_t st = {.name = "bench",
                             .conf_json = json,
                             .module_file = module,
                             .tmpdir = "/tmp",
                             .slots = 1,
                             .router_threads = n,
                             .fds = app};

        for (unsigned i = 0; i < n; i++) {
            close(router[i]);
        }
        _exit(wf_app_main(&st));
    }
    for (unsigned i = 0; i < n; i++) {
        close(app[i]);
    }
    return pid;
}

int
main(int argc, char **argv)
{
    unsigned char get[1024];
    int router[MAX_SOCKS];
    unsigned long count = argc > 3 ? strtoul(argv[3], NULL, 10) : 100000;
    unsigned n = argc > 4 ? (unsigned)atoi(argv[4]) : 1;
    unsigned long sent = 0, done = 0;
    uint64_t stream = 1;
    struct timespec t0, t1;
    struct rusage ru;
    size_t glen;
    pid_t pid;
    int status;
    double wall, cpu;

    if (argc < 3 || n == 0 || n > MAX_SOCKS) {
        fprintf(stderr, "usage: %s MODULE CONF_JSON [COUNT [SOCKETS]]\n",
                argv[0]);
        return 2;
    }
    glen = get_encode(get);
    pid = app_fork(argv[1], argv[2], router, n);
    for (unsigned i = 0; i < n; i++) {
        if (recv_type(router[i]) != WF_APP_MSG_READY) {
            fprintf(stderr, "no READY\n");
            return 1;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (unsigned i = 0; i < n && sent < count; i++, sent++) {
        send_get(router[i], stream++, get, glen);
    }
    while (done < count) {
        struct pollfd p[MAX_SOCKS];

        for (unsigned i = 0; i < n; i++) {
            p[i] = (struct pollfd){.fd = router[i], .events = POLLIN};
        }
        if (poll(p, n, 10000) <= 0) {
            fprintf(stderr, "stalled after %lu\n", done);
            return 1;
        }
        for (unsigned i = 0; i < n; i++) {
            uint32_t t;

            if ((p[i].revents & POLLIN) == 0) {
                continue;
            }
            t = recv_type(router[i]);
            if (t == 0) {
                fprintf(stderr, "app closed\n");
                return 1;
            }
            if (t != WF_APP_MSG_RESP_END) {
                continue;
            }
            done++;
            if (sent < count) {
                send_get(router[i], stream++, get, glen);
                sent++;
            }
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    for (unsigned i = 0; i < n; i++) {
        close(router[i]);
    }
    waitpid(pid, &status, 0);
    getrusage(RUSAGE_CHILDREN, &ru);
    wall = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
    cpu = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6
          + (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
    printf("%lu requests in %.3f s: %.0f req/s; app CPU %.3f s "
           "(user %.3f, sys %.3f) = %.2f us/request, exit %d\n",
           count, wall, count / wall, cpu,
           ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6,
           ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6, cpu * 1e6 / count,
           WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    return 0;
}
