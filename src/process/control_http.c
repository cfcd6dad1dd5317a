#include "process/control_http.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "control/acme.h"
#include "control/api.h"
#include "control/cert.h"
#include "control/conf.h"
#include "core/common.h"
#include "core/json.h"
#include "core/log.h"
#include "http/cond.h"
#include "http/h1_parse.h"
#include "http/metrics.h"
#include "process/controller.h"
#include "process/port_msg_types.h"
#include "process/statedir.h"

#define CTL_TIMEOUT_MS  60000 /* a whole request and its reply */
#define CTL_HEAD_MAX    65536
#define CTL_BUF_INITIAL 4096

typedef enum ctl_state {
    CTL_READ = 0, /* reading the head and body */
    CTL_STATUS,   /* waiting for the router's /status */
    CTL_APPLY,    /* waiting for the router to apply the new config */
    CTL_RESTART,  /* waiting for the router to restart an application */
    CTL_CERT,     /* waiting for main to store or delete a certificate */
    CTL_WRITE,    /* writing the reply */
    CTL_CLOSED,   /* fd closed; freed at the end of the tick, or when the
                     controller is done with it */
} ctl_state_t;

struct wf_ctl_conn {
    wf_io_t io;
    wf_timer_t timer;
    wf_task_t free_task;
    wf_list_t link; /* in the controller's apply queue while CTL_APPLY */
    wf_loop_t *loop;
    ctl_state_t state;
    bool in_controller; /* the controller holds c (queued or applying) */

    char *buf; /* owned: the request as read */
    size_t len;
    size_t cap;
    wf_h1_head_t head;
    bool head_done;
    size_t body_start; /* offset of the body in buf */
    size_t body_len;   /* decoded body bytes at buf + body_start */
    size_t raw_pos;    /* chunked: next undecoded byte */
    bool chunked;
    bool body_done;
    uint64_t content_length;
    wf_h1_chunked_t ch;

    wf_port_request_t status_req;
    wf_port_request_t restart_req;
    wf_port_request_t cert_req; /* WF_MSG_CERT_STORE or _DELETE to main */
    wf_api_reply_t reply;

    char *out; /* owned: the reply */
    size_t out_len;
    size_t out_sent;
};

static void ctl_conn_close(wf_ctl_conn_t *c);
static void ctl_conn_reply(wf_ctl_conn_t *c);

static void
ctl_conn_free(wf_ctl_conn_t *c)
{
    wf_api_reply_fini(&c->reply);
    free(c->buf);
    free(c->out);
    free(c);
}

static void
ctl_on_free(wf_task_t *task)
{
    ctl_conn_free(wf_container_of(task, wf_ctl_conn_t, free_task));
}

static void
ctl_conn_close(wf_ctl_conn_t *c)
{
    if (c->state == CTL_CLOSED) {
        return;
    }
    if (c->state == CTL_STATUS && wf_ctl_router_port() != NULL) {
        wf_port_request_del(wf_ctl_router_port(), &c->status_req);
    }
    if (c->state == CTL_CERT && wf_ctl_main_port() != NULL) {
        wf_port_request_del(wf_ctl_main_port(), &c->cert_req);
    }
    if (c->state == CTL_RESTART && wf_ctl_router_port() != NULL) {
        wf_port_request_del(wf_ctl_router_port(), &c->restart_req);
    }
    wf_timer_stop(c->loop, &c->timer);
    wf_io_del(c->loop, &c->io);
    close(c->io.fd);
    c->io.fd = -1;
    c->state = CTL_CLOSED;
    wf_listen_conn_release(c->loop);
    if (!c->in_controller) {
        wf_task_defer(c->loop, &c->free_task);
    }
}

static void
ctl_on_timer(wf_timer_t *t)
{
    ctl_conn_close(wf_container_of(t, wf_ctl_conn_t, timer));
}

/* Builds the reply: Unit's controller fields and a JSON body. */
static int
ctl_conn_build(wf_ctl_conn_t *c)
{
    char date[WF_HTTP_DATE_LEN];
    size_t body_len;
    char *body = wf_api_reply_text(&c->reply, &body_len);
    int n;

    if (body == NULL) {
        return WF_ERROR;
    }
    c->out = malloc(body_len + 256);
    if (c->out == NULL) {
        free(body);
        return WF_ERROR;
    }
    wf_http_date_format(c->loop->now_sec, date);
    n = snprintf(c->out, 256,
                 "HTTP/1.1 %u %s\r\nServer: Wharf/" WF_VERSION
                 "\r\nDate: %.*s\r\nContent-Type: %s\r\n"
                 "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                 c->reply.status, wf_api_status_text(c->reply.status),
                 WF_HTTP_DATE_LEN, date,
                 c->reply.text != NULL ? WF_METRICS_CONTENT_TYPE
                                       : "application/json",
                 body_len);
    memcpy(c->out + n, body, body_len);
    c->out_len = (size_t)n + body_len;
    free(body);
    return WF_OK;
}

static void
ctl_conn_write(wf_ctl_conn_t *c)
{
    while (c->out_sent < c->out_len) {
        ssize_t n = send(c->io.fd, c->out + c->out_sent,
                         c->out_len - c->out_sent, MSG_NOSIGNAL);

        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            wf_io_mod(c->loop, &c->io, EPOLLOUT);
            return;
        }
        if (n <= 0) {
            break;
        }
        c->out_sent += (size_t)n;
    }
    ctl_conn_close(c);
}

static void
ctl_conn_reply(wf_ctl_conn_t *c)
{
    c->state = CTL_WRITE;
    if (ctl_conn_build(c) != WF_OK) {
        ctl_conn_close(c);
        return;
    }
    ctl_conn_write(c);
}

static void
ctl_conn_error(wf_ctl_conn_t *c, unsigned status, const char *title)
{
    wf_api_reply_fini(&c->reply);
    wf_api_reply_set(&c->reply, status, title, NULL);
    ctl_conn_reply(c);
}

void
wf_ctl_conn_applied(wf_ctl_conn_t *c, const char *error)
{
    c->in_controller = false;
    if (c->state == CTL_CLOSED) {
        wf_task_defer(c->loop, &c->free_task);
        return;
    }
    if (error != NULL) {
        ctl_conn_error(c, 500, error);
        return;
    }
    ctl_conn_reply(c);
}

wf_ctl_conn_t *
wf_ctl_conn_from_link(wf_list_t *link)
{
    return wf_container_of(link, wf_ctl_conn_t, link);
}

json_t *
wf_ctl_conn_take_conf(wf_ctl_conn_t *c)
{
    json_t *conf = c->reply.conf;

    c->reply.conf = NULL;
    return conf;
}

/* The router answered the restart (or went away). */
static void
ctl_on_restarted(wf_port_request_t *req, wf_port_msg_t *msg, int status)
{
    wf_ctl_conn_t *c = wf_container_of(req, wf_ctl_conn_t, restart_req);
    const char *why = "the router is gone";

    if (status == WF_OK && msg->type == WF_MSG_OK) {
        ctl_conn_reply(c);
        return;
    }
    if (status == WF_OK) {
        why = (const char *)wf_port_msg_flatten(msg);
    }
    wf_log_error(0, "application \"%s\" not restarted: %s", c->reply.restart,
                 why != NULL ? why : "?");
    ctl_conn_error(c, 500, WF_API_RESTART_FAILED);
}

/* Unit's GET /control/applications/NAME/restart: the router starts new
 * processes, the old ones finish their requests, and only then does the
 * client hear "Ok".  It is not queued behind config changes: the router
 * reads its port in order, so a restart sent after a change runs after
 * it. */
static void
ctl_conn_restart(wf_ctl_conn_t *c)
{
    wf_port_t *rp = wf_ctl_router_port();
    const char *name = c->reply.restart;

    c->state = CTL_RESTART;
    c->restart_req.handler = ctl_on_restarted;
    if (rp == NULL || wf_port_request_add(rp, &c->restart_req) != WF_OK) {
        ctl_conn_error(c, 500, "Send restart failed.");
        return;
    }
    if (wf_port_send(rp, WF_MSG_APP_RESTART, c->restart_req.stream, name,
                     strlen(name), NULL, 0)
        != WF_OK) {
        wf_port_request_del(rp, &c->restart_req);
        ctl_conn_error(c, 500, "Send restart failed.");
    }
}

/* main stored (or deleted) the certificate's file: only now does the
 * store change and the client hear it (Unit replies once it wrote). */
static void
ctl_on_cert_stored(wf_port_request_t *req, wf_port_msg_t *msg, int status)
{
    wf_ctl_conn_t *c = wf_container_of(req, wf_ctl_conn_t, cert_req);
    wf_api_reply_t *r = &c->reply;

    if (status != WF_OK || msg->type != WF_MSG_OK) {
        wf_log_error(0, "certificate \"%s\" not stored", r->cert_name);
        ctl_conn_error(c, 500, WF_API_CERT_FAILED);
        return;
    }
    if (r->cert_pem == NULL) {
        wf_cert_store_del(r->cert_name);
    } else if (wf_cert_store_set(r->cert_name, r->cert_pem, r->cert_len,
                                 r->cert_info)
               != WF_OK) {
        r->cert_info = NULL; /* released by wf_cert_store_set() */
        ctl_conn_error(c, 500, WF_API_CERT_FAILED);
        return;
    }
    r->cert_info = NULL; /* the store's now */
    if (r->acme != NULL) {
        wf_acme_entry_add(r->cert_name, r->acme);
        r->acme = NULL;
    }
    ctl_conn_reply(c);
}

/* NAME, NUL, the ACME state, NUL, the placeholder bundle. */
static char *
ctl_acme_payload(const wf_api_reply_t *r, size_t *len)
{
    char *state = wf_acme_state_text(r->acme);
    char *pem = malloc(r->cert_len + 1);
    char *payload = NULL;

    if (state != NULL && pem != NULL) {
        memcpy(pem, r->cert_pem, r->cert_len);
        pem[r->cert_len] = '\0';
        payload = wf_acme_store_payload(r->cert_name, state, pem, len);
    }
    free(state);
    free(pem);
    return payload;
}

/* Sends NAME (then NUL and the PEM for a store) to main. */
static void
ctl_conn_cert(wf_ctl_conn_t *c)
{
    wf_port_t *mp = wf_ctl_main_port();
    wf_api_reply_t *r = &c->reply;
    size_t n = strlen(r->cert_name);
    size_t len = r->cert_pem != NULL ? n + 1 + r->cert_len : n;
    char *payload = malloc(len + 1);
    int rc = WF_ERROR;
    uint32_t type =
        r->cert_pem != NULL ? WF_MSG_CERT_STORE : WF_MSG_CERT_DELETE;

    c->state = CTL_CERT;
    c->cert_req.handler = ctl_on_cert_stored;
    if (r->acme != NULL) {
        /* An ACME entry: its state and its placeholder, together. */
        free(payload);
        payload = ctl_acme_payload(r, &len);
        type = WF_MSG_ACME_STORE;
    } else if (payload != NULL) {
        memcpy(payload, r->cert_name, n + 1);
        if (r->cert_pem != NULL) {
            memcpy(payload + n + 1, r->cert_pem, r->cert_len);
        }
    }
    if (r->cert_pem == NULL) {
        /* No attempt of the ACME thread may store it again. */
        wf_acme_entry_del(r->cert_name);
    }
    if (payload != NULL && mp != NULL) {
        rc = wf_port_request_add(mp, &c->cert_req);
    }
    if (rc == WF_OK
        && wf_port_send(mp, type, c->cert_req.stream, payload, len, NULL, 0)
               != WF_OK) {
        wf_port_request_del(mp, &c->cert_req);
        rc = WF_ERROR;
    }
    free(payload);
    if (rc != WF_OK) {
        ctl_conn_error(c, 500, WF_API_CERT_FAILED);
    }
}

static void
ctl_conn_handle(wf_ctl_conn_t *c, json_t *status)
{
    wf_h1_head_t *h = &c->head;

    wf_api_handle(wf_ctl_conf(), status, h->method, h->target,
                  c->buf + c->body_start, c->body_len, &c->reply);
    if (c->reply.restart != NULL) {
        ctl_conn_restart(c);
        return;
    }
    if (c->reply.cert_name != NULL) {
        ctl_conn_cert(c);
        return;
    }
    if (c->reply.conf == NULL) {
        ctl_conn_reply(c);
        return;
    }
    c->state = CTL_APPLY;
    c->in_controller = true;
    wf_ctl_apply(&c->link);
}

static void
ctl_on_status(wf_port_request_t *req, wf_port_msg_t *msg, int status)
{
    wf_ctl_conn_t *c = wf_container_of(req, wf_ctl_conn_t, status_req);
    json_t *st = NULL;

    if (status == WF_OK && msg->type == WF_MSG_OK) {
        const char *text = (const char *)wf_port_msg_flatten(msg);

        st = text != NULL ? json_loads(text, 0, NULL) : NULL;
    }
    ctl_conn_handle(c, st);
    json_decref(st);
}

static bool
ctl_needs_status(wf_str_t target)
{
    return (target.len >= 7 && memcmp(target.data, "/status", 7) == 0)
           || (target.len == 1 && target.data[0] == '/')
           || (target.len > 1 && target.data[0] == '/'
               && target.data[1] == '?');
}

/* The request is complete: ask the router for /status when needed. */
static void
ctl_conn_dispatch(wf_ctl_conn_t *c)
{
    wf_port_t *rp = wf_ctl_router_port();

    wf_io_mod(c->loop, &c->io, 0);
    if (!ctl_needs_status(c->head.target) || rp == NULL) {
        ctl_conn_handle(c, NULL);
        return;
    }
    c->state = CTL_STATUS;
    c->status_req.handler = ctl_on_status;
    if (wf_port_request_add(rp, &c->status_req) != WF_OK
        || wf_port_send(rp, WF_MSG_STATUS_GET, c->status_req.stream, NULL, 0,
                        NULL, 0)
               != WF_OK) {
        wf_port_request_del(rp, &c->status_req);
        ctl_conn_handle(c, NULL);
    }
}

/* Decodes what has come of the body.  Returns WF_OK when it is complete,
 * WF_AGAIN, or WF_ERROR with a reply sent. */
static int
ctl_conn_body(wf_ctl_conn_t *c)
{
    size_t used;
    size_t out;
    int rc;

    if (!c->chunked) {
        c->body_len = wf_min(c->len - c->body_start, c->content_length);
        return c->body_len == c->content_length ? WF_OK : WF_AGAIN;
    }
    rc =
        wf_h1_chunked_decode(&c->ch, c->buf + c->raw_pos, c->len - c->raw_pos,
                             &used, c->buf + c->body_start + c->body_len, &out);
    c->raw_pos += used;
    c->body_len += out;
    if (rc == WF_ERROR) {
        ctl_conn_error(c, 400, "Invalid request body.");
        return WF_ERROR;
    }
    if (c->body_len > WF_API_BODY_MAX) {
        ctl_conn_error(c, WF_API_TOO_LARGE, WF_API_TOO_LARGE_TITLE);
        return WF_ERROR;
    }
    return rc;
}

/* Parses the head.  Returns WF_OK, WF_AGAIN or WF_ERROR (reply sent). */
static int
ctl_conn_head(wf_ctl_conn_t *c)
{
    static const wf_h1_limits_t lim = {8192, 8192, CTL_HEAD_MAX, false};
    int rc = wf_h1_parse_head(&c->head, c->buf, c->len, &lim);

    if (rc == WF_AGAIN) {
        return WF_AGAIN;
    }
    if (rc != WF_OK) {
        ctl_conn_error(c, c->head.status, "Invalid request.");
        return WF_ERROR;
    }
    c->head_done = true;
    c->body_start = c->head.head_len;
    c->raw_pos = c->body_start;
    c->chunked = c->head.chunked;
    c->content_length =
        c->head.content_length > 0 ? (uint64_t)c->head.content_length : 0;
    wf_h1_chunked_init(&c->ch);
    if (c->content_length > WF_API_BODY_MAX) {
        ctl_conn_error(c, WF_API_TOO_LARGE, WF_API_TOO_LARGE_TITLE);
        return WF_ERROR;
    }
    if (c->head.expect_continue && (c->chunked || c->content_length > 0)) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";

        if (send(c->io.fd, cont, sizeof(cont) - 1, MSG_NOSIGNAL) < 0) {
            ctl_conn_close(c);
            return WF_ERROR;
        }
    }
    return WF_OK;
}

static int
ctl_conn_grow(wf_ctl_conn_t *c)
{
    size_t max = CTL_HEAD_MAX + WF_API_BODY_MAX + 4096;
    size_t cap;
    char *b;

    if (c->len < c->cap) {
        return WF_OK;
    }
    if (c->cap >= max) {
        return WF_ERROR;
    }
    cap = c->cap == 0 ? CTL_BUF_INITIAL : wf_min(c->cap * 2, max);
    b = realloc(c->buf, cap);
    if (b == NULL) {
        return WF_ERROR;
    }
    if (c->head_done && b != c->buf) {
        /* The parsed head points into the old buffer. */
        wf_h1_head_rebase(&c->head, c->buf, b);
    }
    c->buf = b;
    c->cap = cap;
    return WF_OK;
}

static void
ctl_conn_read(wf_ctl_conn_t *c)
{
    for (;;) {
        ssize_t n;
        int rc;

        if (ctl_conn_grow(c) != WF_OK) {
            ctl_conn_error(c, WF_API_TOO_LARGE, WF_API_TOO_LARGE_TITLE);
            return;
        }
        n = recv(c->io.fd, c->buf + c->len, c->cap - c->len, 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            return;
        }
        if (n <= 0) {
            ctl_conn_close(c);
            return;
        }
        c->len += (size_t)n;
        rc = c->head_done ? WF_OK : ctl_conn_head(c);
        if (rc != WF_OK) {
            if (rc == WF_ERROR) {
                return;
            }
            continue;
        }
        rc = ctl_conn_body(c);
        if (rc == WF_OK) {
            ctl_conn_dispatch(c);
            return;
        }
        if (rc == WF_ERROR) {
            return;
        }
    }
}

static void
ctl_on_io(wf_io_t *io, uint32_t events)
{
    wf_ctl_conn_t *c = wf_container_of(io, wf_ctl_conn_t, io);

    wf_unused(events);
    if (c->state == CTL_READ) {
        ctl_conn_read(c);
    } else if (c->state == CTL_WRITE) {
        ctl_conn_write(c);
    }
}

static void
ctl_on_accept(wf_listener_t *l, wf_loop_t *loop, int fd,
              const struct sockaddr *peer, socklen_t peerlen)
{
    wf_ctl_conn_t *c = calloc(1, sizeof(*c));

    wf_unused(l);
    wf_unused(peer);
    wf_unused(peerlen);
    if (c == NULL) {
        close(fd);
        wf_listen_conn_release(loop);
        return;
    }
    c->io.fd = fd;
    c->io.handler = ctl_on_io;
    c->loop = loop;
    c->state = CTL_READ;
    c->free_task.handler = ctl_on_free;
    wf_list_init(&c->link);
    wf_h1_head_init(&c->head);
    wf_timer_init(&c->timer, ctl_on_timer);
    if (wf_io_add(loop, &c->io, EPOLLIN) != WF_OK) {
        close(fd);
        wf_listen_conn_release(loop);
        free(c);
        return;
    }
    wf_timer_set(loop, &c->timer, CTL_TIMEOUT_MS);
}

static int
ctl_socket_owner(const char *path, const wf_opts_t *opts)
{
    uid_t uid = (uid_t)-1;
    gid_t gid = (gid_t)-1;

    if (opts->control_user != NULL) {
        struct passwd *pw = getpwnam(opts->control_user);

        if (pw == NULL) {
            wf_log_alert(0, "unknown --control-user \"%s\"",
                         opts->control_user);
            return WF_ERROR;
        }
        uid = pw->pw_uid;
    }
    if (opts->control_group != NULL) {
        struct group *gr = getgrnam(opts->control_group);

        if (gr == NULL) {
            wf_log_alert(0, "unknown --control-group \"%s\"",
                         opts->control_group);
            return WF_ERROR;
        }
        gid = gr->gr_gid;
    }
    if ((uid != (uid_t)-1 || gid != (gid_t)-1) && chown(path, uid, gid) == -1) {
        wf_log_alert(errno, "chown(\"%s\") failed", path);
        return WF_ERROR;
    }
    return WF_OK;
}

static int
ctl_socket_mode(const char *path, const wf_opts_t *opts)
{
    unsigned long mode = 0600;
    char *end;

    if (opts->control_mode != NULL) {
        mode = strtoul(opts->control_mode, &end, 8);
        if (*end != '\0' || mode > 0777) {
            wf_log_alert(0, "invalid --control-mode \"%s\"",
                         opts->control_mode);
            return WF_ERROR;
        }
    }
    if (chmod(path, (mode_t)mode) == -1) {
        wf_log_alert(errno, "chmod(\"%s\") failed", path);
        return WF_ERROR;
    }
    return ctl_socket_owner(path, opts);
}

static int
ctl_socket_addr(wf_listener_t *l, const wf_opts_t *opts)
{
    memset(l, 0, sizeof(*l));
    l->io.fd = -1;
    l->name = opts->control;
    if (!wf_conf_addr_parse(opts->control, &l->addr, &l->addrlen)) {
        wf_log_alert(0, "invalid --control address \"%s\"", opts->control);
        return WF_ERROR;
    }
    return WF_OK;
}

int
wf_ctl_http_open(wf_listener_t *l, const wf_opts_t *opts)
{
    const char *path = NULL;

    if (ctl_socket_addr(l, opts) != WF_OK) {
        return WF_ERROR;
    }
    if (l->addr.ss_family == AF_UNIX) {
        path = ((struct sockaddr_un *)&l->addr)->sun_path;
        if (path[0] != '\0' && wf_mkdir_parents(path) != WF_OK) {
            return WF_ERROR;
        }
    }
    if (wf_listener_open(l) != WF_OK) {
        return WF_ERROR;
    }
    if (path != NULL && path[0] != '\0'
        && ctl_socket_mode(path, opts) != WF_OK) {
        wf_ctl_http_close(l, opts);
        return WF_ERROR;
    }
    return WF_OK;
}

int
wf_ctl_http_start(wf_listener_t *l, const wf_opts_t *opts, int fd)
{
    if (ctl_socket_addr(l, opts) != WF_OK) {
        return WF_ERROR;
    }
    l->io.fd = fd;
    l->on_accept = ctl_on_accept;
    return wf_listener_start(l);
}

void
wf_ctl_http_close(wf_listener_t *l, const wf_opts_t *opts)
{
    wf_unused(opts);
    wf_listener_close(l);
    if (l->addr.ss_family == AF_UNIX) {
        const char *path = ((struct sockaddr_un *)&l->addr)->sun_path;

        if (path[0] != '\0') {
            unlink(path);
        }
    }
}
