#include "http/upstream_dns.h"

#include <ares.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/tpool.h"
#include "http/upstream.h"

/* What one lookup collects (the c-ares callback's argument). */
typedef struct dns_query {
    wf_upstream_addrs_t *out;
    uint16_t port;
    int status;
    bool done;
} dns_query_t;

static pthread_once_t dns_once = PTHREAD_ONCE_INIT;

static void
dns_library_init(void)
{
    ares_library_init(ARES_LIB_INIT_ALL);
}

int
wf_upstream_dns_parse(const char *s, size_t *namelen, uint16_t *port)
{
    const char *colon = strrchr(s, ':');
    bool alpha = false;
    char *end;
    unsigned long p;

    if (colon == NULL || colon == s || colon[1] == '\0') {
        return WF_DECLINED;
    }
    for (const char *c = s; c < colon; c++) {
        bool letter = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z');

        if (!letter && !(*c >= '0' && *c <= '9') && *c != '-' && *c != '.') {
            return WF_DECLINED;
        }
        alpha |= letter || *c == '-';
    }
    p = strtoul(colon + 1, &end, 10);
    if (!alpha || *end != '\0' || p == 0 || p > 65535 || colon - s > 253) {
        return WF_DECLINED; /* an address (digits and dots), or no port */
    }
    *namelen = (size_t)(colon - s);
    *port = (uint16_t)p;
    return WF_OK;
}

static int
dns_addr_cmp(const void *a, const void *b)
{
    return memcmp(a, b, sizeof(struct sockaddr_storage));
}

static void
dns_on_answer(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
    dns_query_t *q = arg;
    wf_upstream_addrs_t *out = q->out;

    wf_unused(timeouts);
    q->done = true;
    q->status = status;
    for (struct ares_addrinfo_node *n = res != NULL ? res->nodes : NULL;
         n != NULL && out->n < WF_UPSTREAM_DNS_MAX; n = n->ai_next) {
        struct sockaddr_storage *ss = &out->addr[out->n];

        if ((n->ai_family != AF_INET && n->ai_family != AF_INET6)
            || n->ai_addrlen > sizeof(*ss)) {
            continue;
        }
        memset(ss, 0, sizeof(*ss));
        memcpy(ss, n->ai_addr, n->ai_addrlen);
        if (n->ai_family == AF_INET) {
            ((struct sockaddr_in *)ss)->sin_port = htons(q->port);
        } else {
            ((struct sockaddr_in6 *)ss)->sin6_port = htons(q->port);
        }
        if (n->ai_ttl > 0
            && (out->ttl == 0 || (uint32_t)n->ai_ttl < out->ttl)) {
            out->ttl = (uint32_t)n->ai_ttl;
        }
        out->n++;
    }
    if (res != NULL) {
        ares_freeaddrinfo(res);
    }
}

/* Runs the channel until the query is answered or ms have passed. */
static void
dns_wait(ares_channel ch, dns_query_t *q, uint32_t ms)
{
    for (uint32_t waited = 0; !q->done && waited < ms; waited += 50) {
        ares_socket_t socks[ARES_GETSOCK_MAXNUM];
        struct pollfd pfd[ARES_GETSOCK_MAXNUM];
        /* (ARES_GETSOCK_WRITABLE() shifts an int by up to 31: UB.) */
        unsigned bits = (unsigned)ares_getsock(ch, socks, ARES_GETSOCK_MAXNUM);
        nfds_t n = 0;

        for (unsigned i = 0; i < ARES_GETSOCK_MAXNUM; i++) {
            short ev =
                (short)(((bits & (1u << i)) != 0 ? POLLIN : 0)
                        | ((bits & (1u << (i + 16))) != 0 ? POLLOUT : 0));

            if (ev != 0) {
                pfd[n].fd = socks[i];
                pfd[n].events = ev;
                pfd[n].revents = 0;
                n++;
            }
        }
        poll(pfd, n, 50);
        for (nfds_t i = 0; i < n; i++) {
            ares_process_fd(ch,
                            (pfd[i].revents & (POLLIN | POLLERR | POLLHUP)) != 0
                                ? pfd[i].fd
                                : ARES_SOCKET_BAD,
                            (pfd[i].revents & POLLOUT) != 0 ? pfd[i].fd
                                                            : ARES_SOCKET_BAD);
        }
        /* Retransmissions and the channel's own timeouts. */
        ares_process_fd(ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    }
}

size_t
wf_upstream_dns_resolve(const char *name, size_t namelen, uint16_t port,
                        const char *resolver, uint32_t timeout_ms,
                        wf_upstream_addrs_t *out, char *err, size_t errlen)
{
    struct ares_options opt = {.timeout = 1000, .tries = 2};
    struct ares_addrinfo_hints hints = {.ai_family = AF_UNSPEC};
    dns_query_t q = {.out = out, .port = port};
    ares_channel ch;
    char host[256];

    memset(out, 0, sizeof(*out));
    snprintf(host, sizeof(host), "%.*s", (int)namelen, name);
    pthread_once(&dns_once, dns_library_init);
    if (ares_init_options(&ch, &opt, ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES)
        != ARES_SUCCESS) {
        snprintf(err, errlen, "resolver failed to start");
        return 0;
    }
    if (resolver != NULL
        && ares_set_servers_ports_csv(ch, resolver) != ARES_SUCCESS) {
        ares_destroy(ch);
        snprintf(err, errlen, "invalid resolver \"%s\"", resolver);
        return 0;
    }
    ares_getaddrinfo(ch, host, NULL, &hints, dns_on_answer, &q);
    dns_wait(ch, &q, timeout_ms);
    ares_destroy(ch); /* answers a query still pending: done, cancelled */
    if (out->n == 0) {
        snprintf(err, errlen, "\"%s\" could not be resolved: %s", host,
                 q.done ? ares_strerror(q.status) : "timed out");
        return 0;
    }
    qsort(out->addr, out->n, sizeof(out->addr[0]), dns_addr_cmp);
    for (size_t i = 0; i < out->n; i++) {
        out->len[i] = out->addr[i].ss_family == AF_INET
                          ? sizeof(struct sockaddr_in)
                          : sizeof(struct sockaddr_in6);
    }
    return out->n;
}

/* ---- re-resolution ------------------------------------------------------ */

/* One configured name of the current snapshot, with the addresses it was
 * compiled with. */
typedef struct dns_name {
    char *host;     /* "NAME:PORT", owned */
    char *resolver; /* owned; NULL: the system's */
    wf_upstream_addrs_t have;
    bool changed; /* set by the job */
} dns_name_t;

/* The names of one snapshot; the job checks them on a helper thread
 * while the loop keeps only this pointer. */
typedef struct dns_watch {
    wf_job_t job;
    wf_timer_t timer;
    dns_name_t *names;
    size_t n;
    uint32_t every_ms;
    bool running; /* the job is on a helper thread */
    bool stale;   /* replaced by a newer snapshot's: free when back */
    wf_upstream_dns_changed_cb changed;
    void *arg;
} dns_watch_t;

static dns_watch_t *dns_current; /* the router's main loop only */

static void
dns_watch_free(dns_watch_t *w)
{
    for (size_t i = 0; i < w->n; i++) {
        free(w->names[i].host);
        free(w->names[i].resolver);
    }
    free(w->names);
    free(w);
}

static bool
dns_addrs_eq(const wf_upstream_addrs_t *a, const wf_upstream_addrs_t *b)
{
    if (a->n != b->n) {
        return false;
    }
    for (size_t i = 0; i < a->n; i++) {
        if (a->len[i] != b->len[i]
            || memcmp(&a->addr[i], &b->addr[i], a->len[i]) != 0) {
            return false;
        }
    }
    return true;
}

/* On a helper thread: each name resolved again. */
static void
dns_on_work(wf_job_t *job)
{
    dns_watch_t *w = wf_container_of(job, dns_watch_t, job);
    wf_upstream_addrs_t now;
    char err[300];

    for (size_t i = 0; i < w->n; i++) {
        dns_name_t *d = &w->names[i];
        size_t namelen;
        uint16_t port;

        if (wf_upstream_dns_parse(d->host, &namelen, &port) != WF_OK) {
            continue;
        }
        if (wf_upstream_dns_resolve(d->host, namelen, port, d->resolver, 5000,
                                    &now, err, sizeof(err))
            > 0) {
            d->changed = !dns_addrs_eq(&now, &d->have);
        }
    }
}

static void
dns_on_done(wf_task_t *task)
{
    dns_watch_t *w = wf_container_of(task, dns_watch_t, job.done);

    w->running = false;
    if (w->stale) {
        dns_watch_free(w);
        return;
    }
    for (size_t i = 0; i < w->n; i++) {
        if (w->names[i].changed) {
            wf_log_notice(0, "upstream server \"%s\": new addresses",
                          w->names[i].host);
            w->changed(w->arg); /* a new snapshot replaces w */
            return;
        }
    }
    wf_timer_set(w->job.loop, &w->timer, w->every_ms);
}

static void
dns_on_timer(wf_timer_t *t)
{
    dns_watch_t *w = wf_container_of(t, dns_watch_t, timer);

    w->running = true;
    wf_tpool_submit(&w->job);
}

/* The addresses u's servers of host have (in the resolver's order). */
static void
dns_have(const wf_upstream_t *u, const char *host, wf_upstream_addrs_t *out)
{
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < u->nservers && out->n < WF_UPSTREAM_DNS_MAX; i++) {
        if (u->servers[i].host == host) {
            memcpy(&out->addr[out->n], &u->servers[i].addr,
                   u->servers[i].addrlen);
            out->len[out->n++] = u->servers[i].addrlen;
        }
    }
}

static dns_watch_t *
dns_watch_create(wf_upstream_t *all, size_t n)
{
    dns_watch_t *w = calloc(1, sizeof(*w));

    if (w == NULL || (w->names = calloc(n, sizeof(*w->names))) == NULL) {
        free(w);
        return NULL;
    }
    w->every_ms = UINT32_MAX;
    for (wf_upstream_t *u = all; u != NULL; u = u->next) {
        uint32_t ms =
            u->ttl_ms != 0 ? wf_min(u->ttl_ms, u->resolve_ms) : u->resolve_ms;

        for (size_t i = 0; i < u->nhosts; i++) {
            dns_name_t *d = &w->names[w->n++];

            d->host = strdup(u->hosts[i]);
            d->resolver = u->resolver != NULL ? strdup(u->resolver) : NULL;
            dns_have(u, u->hosts[i], &d->have);
            w->every_ms = wf_min(w->every_ms, wf_max(ms, (uint32_t)1000));
            if (d->host == NULL
                || (u->resolver != NULL && d->resolver == NULL)) {
                dns_watch_free(w);
                return NULL;
            }
        }
    }
    return w;
}

void
wf_upstream_dns_publish(struct wf_upstream *all, struct wf_loop *loop,
                        wf_upstream_dns_changed_cb changed, void *arg)
{
    size_t n = 0;
    dns_watch_t *w;

    for (wf_upstream_t *u = all; u != NULL; u = u->next) {
        n += u->nhosts;
    }
    if (dns_current != NULL) {
        wf_timer_stop(dns_current->job.loop, &dns_current->timer);
        dns_current->stale = true;
        if (!dns_current->running) {
            dns_watch_free(dns_current);
        }
        dns_current = NULL;
    }
    if (n == 0) {
        return;
    }
    w = dns_watch_create(all, n);
    if (w == NULL) {
        wf_log_error(0, "upstream host names: out of memory");
        return;
    }
    w->changed = changed;
    w->arg = arg;
    w->job.loop = loop;
    w->job.work = dns_on_work;
    w->job.done.handler = dns_on_done;
    wf_timer_init(&w->timer, dns_on_timer);
    wf_timer_set(loop, &w->timer, w->every_ms);
    dns_current = w;
}
