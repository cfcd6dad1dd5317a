/* Host names of upstream servers ("http://HOSTNAME:PORT", "HOST:PORT"
 * server keys), resolved with c-ares (DESIGN.md section 8).  A lookup
 * blocks its caller, so it only ever runs on a helper thread: the
 * router compiles configurations there, and re-resolves there
 * (docs/internals/proxy.md, "Host names"). */
#ifndef WF_HTTP_UPSTREAM_DNS_H
#define WF_HTTP_UPSTREAM_DNS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define WF_UPSTREAM_DNS_MAX 16 /* addresses of one name, at most */

typedef struct wf_upstream_addrs {
    struct sockaddr_storage addr[WF_UPSTREAM_DNS_MAX];
    socklen_t len[WF_UPSTREAM_DNS_MAX];
    size_t n;     /* sorted, so that two answers compare */
    uint32_t ttl; /* seconds: the smallest TTL of the answer (0: none
                     given, as from /etc/hosts) */
} wf_upstream_addrs_t;

/* Is s "NAME:PORT" with NAME a host name (letters, digits, '-', '.';
 * not an address)?  Sets *namelen and *port. */
int wf_upstream_dns_parse(const char *s, size_t *namelen, uint16_t *port);

/* Resolves name[0..namelen) (A and AAAA, /etc/hosts first) with the
 * system's resolvers, or with resolver ("IP:PORT", NULL: the system's),
 * within timeout_ms, into out (the port set).  Returns the number of
 * addresses (0: none, or failed; err then says why).  Blocks: helper
 * threads only. */
size_t wf_upstream_dns_resolve(const char *name, size_t namelen, uint16_t port,
                               const char *resolver, uint32_t timeout_ms,
                               wf_upstream_addrs_t *out, char *err,
                               size_t errlen);

/* Called on the router's main loop when a name of the current snapshot
 * resolves to other addresses than it was compiled with. */
typedef void (*wf_upstream_dns_changed_cb)(void *arg);

struct wf_upstream;
struct wf_loop;

/* The snapshot whose upstreams are all (linked by next) is the current
 * one: its host names are resolved again on a helper thread after the
 * smallest TTL of their answers (bounded by [1 s, resolve_interval]), and
 * changed(arg) runs on loop when an answer differs (the router then
 * compiles the same configuration again, which resolves them anew).  A
 * failed lookup keeps the addresses.  On loop only; replaces the
 * previous snapshot's names. */
void wf_upstream_dns_publish(struct wf_upstream *all, struct wf_loop *loop,
                             wf_upstream_dns_changed_cb changed, void *arg);

#endif
