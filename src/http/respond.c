#include "http/respond.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "core/common.h"
#include "http/cond.h"
#include "http/tpl.h"

#define WF_SERVER_NAME    "Wharf"
#define WF_SERVER_VERSION "0.1.0"

#define RESP_PAGE_MIN 400
#define RESP_PAGE_MAX 599
#define RESP_PAGE_LEN                                 \
    (sizeof("<!DOCTYPE html><title>Error 000</title>" \
            "<p>Error 000.\r\n")                      \
     - 1)

typedef struct resp_reason {
    unsigned status;
    const char *text;
} resp_reason_t;

/* Sorted by status for the binary search in wf_resp_reason(). */
static const resp_reason_t resp_reasons[] = {
    {100, "Continue"},
    {101, "Switching Protocols"},
    {200, "OK"},
    {201, "Created"},
    {202, "Accepted"},
    {203, "Non-Authoritative Information"},
    {204, "No Content"},
    {205, "Reset Content"},
    {206, "Partial Content"},
    {300, "Multiple Choices"},
    {301, "Moved Permanently"},
    {302, "Found"},
    {303, "See Other"},
    {304, "Not Modified"},
    {307, "Temporary Redirect"},
    {308, "Permanent Redirect"},
    {400, "Bad Request"},
    {401, "Unauthorized"},
    {402, "Payment Required"},
    {403, "Forbidden"},
    {404, "Not Found"},
    {405, "Method Not Allowed"},
    {406, "Not Acceptable"},
    {407, "Proxy Authentication Required"},
    {408, "Request Timeout"},
    {409, "Conflict"},
    {410, "Gone"},
    {411, "Length Required"},
    {412, "Precondition Failed"},
    {413, "Payload Too Large"},
    {414, "URI Too Long"},
    {415, "Unsupported Media Type"},
    {416, "Range Not Satisfiable"},
    {417, "Expectation Failed"},
    {421, "Misdirected Request"},
    {422, "Unprocessable Content"},
    {426, "Upgrade Required"},
    {428, "Precondition Required"},
    {429, "Too Many Requests"},
    {431, "Request Header Fields Too Large"},
    {500, "Internal Server Error"},
    {501, "Not Implemented"},
    {502, "Bad Gateway"},
    {503, "Service Unavailable"},
    {504, "Gateway Timeout"},
    {505, "HTTP Version Not Supported"},
};

static char resp_pages[RESP_PAGE_MAX - RESP_PAGE_MIN + 1][RESP_PAGE_LEN + 1];
static pthread_once_t resp_pages_once = PTHREAD_ONCE_INIT;

static __thread char resp_date[WF_HTTP_DATE_LEN];
static __thread time_t resp_date_sec = -1;

wf_str_t
wf_resp_reason(unsigned status)
{
    size_t lo = 0;
    size_t hi = wf_nitems(resp_reasons);

    while (lo < hi) {
        size_t mid = (lo + hi) / 2;

        if (resp_reasons[mid].status == status) {
            return wf_str_make(resp_reasons[mid].text,
                               strlen(resp_reasons[mid].text));
        }
        if (resp_reasons[mid].status < status) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return wf_string("");
}

static void
resp_pages_build(void)
{
    for (unsigned s = RESP_PAGE_MIN; s <= RESP_PAGE_MAX; s++) {
        snprintf(resp_pages[s - RESP_PAGE_MIN], RESP_PAGE_LEN + 1,
                 "<!DOCTYPE html><title>Error %03u</title><p>Error %03u.\r\n",
                 s, s);
    }
}

wf_str_t
wf_resp_error_page(unsigned status)
{
    if (status < RESP_PAGE_MIN || status > RESP_PAGE_MAX) {
        return wf_string("");
    }
    pthread_once(&resp_pages_once, resp_pages_build);
    return wf_str_make(resp_pages[status - RESP_PAGE_MIN], RESP_PAGE_LEN);
}

void
wf_resp_set_error_page(wf_resp_t *resp, unsigned status)
{
    resp->body = wf_resp_error_page(status);
    resp->content_length = resp->body.len;
    resp->content_type =
        resp->body.len > 0 ? wf_string("text/html") : wf_null_str;
    if (status == 426) {
        /* Only a WebSocket handshake of another version gets it: the one
         * this server speaks (RFC 6455 4.2.2). */
        resp->raw_fields = wf_string("Sec-WebSocket-Version: 13\r\n");
    }
}

static const char *
resp_date_get(wf_loop_t *loop)
{
    time_t now = loop != NULL ? loop->now_sec : time(NULL);

    if (now != resp_date_sec) {
        wf_http_date_format(now, resp_date);
        resp_date_sec = now;
    }
    return resp_date;
}

/* Bytes the action's fields need: "Name: value\r\n" each. */
static size_t
resp_fields_size(const wf_resp_t *resp)
{
    const wf_action_t *a = resp->fields;
    size_t n = 0;

    for (size_t i = 0; a != NULL && i < a->nresp_fields; i++) {
        const wf_resp_field_t *f = &a->resp_fields[i];

        if (f->value != NULL) {
            n += f->name.len + 4
                 + wf_tpl_render(f->value, resp->fields_rq, NULL, 0);
        }
    }
    return n;
}

size_t
wf_resp_head_size(const wf_resp_t *resp)
{
    /* Fixed fields and numbers fit in 512 bytes; the strings are added. */
    return 512 + resp->content_type.len + resp->location.len + resp->etag.len
           + resp->content_range.len + resp->raw_fields.len
           + (resp->fields != NULL ? resp_fields_size(resp) : 0);
}

static char *
resp_put(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

#define resp_put_lit(p, s) resp_put(p, s, sizeof(s) - 1)

static char *
resp_put_field(char *p, const char *name, size_t name_len, wf_str_t value)
{
    p = resp_put(p, name, name_len);
    p = resp_put(p, value.data, value.len);
    return resp_put_lit(p, "\r\n");
}

static char *
resp_put_u64(char *p, uint64_t v)
{
    char tmp[20];
    size_t n = 0;

    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    while (n > 0) {
        *p++ = tmp[--n];
    }
    return p;
}

static char *
resp_put_status_line(char *p, unsigned status)
{
    wf_str_t reason = wf_resp_reason(status);

    p = resp_put_lit(p, "HTTP/1.1 ");
    *p++ = (char)('0' + status / 100 % 10);
    *p++ = (char)('0' + status / 10 % 10);
    *p++ = (char)('0' + status % 10);
    *p++ = ' ';
    p = resp_put(p, reason.data, reason.len);
    return resp_put_lit(p, "\r\n");
}

/* The WF_RESP_F_* fields that resp->fields replace or delete. */
static unsigned
resp_overridden(const wf_resp_t *resp)
{
    return resp->fields != NULL ? resp->fields->resp_builtin : 0;
}

/* Writes the action's fields with a value.  A value is cut to the room
 * left (it was measured before, but variables such as $request_id may
 * render differently), and CR, LF and NUL become spaces so that a variable
 * can never split the response. */
static char *
resp_put_fields(char *p, char *end, const wf_resp_t *resp)
{
    const wf_action_t *a = resp->fields;

    for (size_t i = 0; i < a->nresp_fields; i++) {
        const wf_resp_field_t *f = &a->resp_fields[i];
        size_t room;
        size_t n;

        if (f->value == NULL || (size_t)(end - p) < f->name.len + 4) {
            continue;
        }
        p = resp_put(p, f->name.data, f->name.len);
        p = resp_put_lit(p, ": ");
        room = (size_t)(end - p) - 2;
        n = wf_min(wf_tpl_render(f->value, resp->fields_rq, p, room), room);
        for (size_t k = 0; k < n; k++) {
            if (p[k] == '\r' || p[k] == '\n' || p[k] == '\0') {
                p[k] = ' ';
            }
        }
        p = resp_put_lit(p + n, "\r\n");
    }
    return p;
}

static bool
resp_has_body_fields(unsigned status)
{
    return status >= 200 && status != 204 && status != 304;
}

size_t
wf_resp_head_write(char *out, size_t cap, const wf_resp_t *resp,
                   wf_loop_t *loop, bool keep_alive, unsigned version,
                   bool server_version)
{
    unsigned skip = resp_overridden(resp);
    char *p = resp_put_status_line(out, resp->status);

    p = server_version ? resp_put_lit(p, "Server: " WF_SERVER_NAME
                                         "/" WF_SERVER_VERSION "\r\n")
                       : resp_put_lit(p, "Server: " WF_SERVER_NAME "\r\n");
    p = resp_put_lit(p, "Date: ");
    p = resp_put(p, resp_date_get(loop), WF_HTTP_DATE_LEN);
    p = resp_put_lit(p, "\r\n");
    if (resp->content_type.len > 0 && (skip & WF_RESP_F_CONTENT_TYPE) == 0) {
        p = resp_put_field(p, "Content-Type: ", 14, resp->content_type);
    }
    if (resp_has_body_fields(resp->status) && resp->stream
        && !resp->stream_length) {
        /* Unknown length: chunked, or close-delimited for HTTP/1.0 (the
         * caller then passes keep_alive false). */
        if (version != 10) {
            p = resp_put_lit(p, "Transfer-Encoding: chunked\r\n");
        }
    } else if (resp_has_body_fields(resp->status)) {
        p = resp_put_lit(p, "Content-Length: ");
        p = resp_put_u64(p, resp->content_length);
        p = resp_put_lit(p, "\r\n");
    }
    if (resp->last_modified != 0 && (skip & WF_RESP_F_LAST_MODIFIED) == 0) {
        p = resp_put_lit(p, "Last-Modified: ");
        wf_http_date_format(resp->last_modified, p);
        p = resp_put_lit(p + WF_HTTP_DATE_LEN, "\r\n");
    }
    if (resp->etag.len > 0 && (skip & WF_RESP_F_ETAG) == 0) {
        p = resp_put_field(p, "ETag: ", 6, resp->etag);
    }
    if (resp->accept_ranges && (skip & WF_RESP_F_ACCEPT_RANGES) == 0) {
        p = resp_put_lit(p, "Accept-Ranges: bytes\r\n");
    }
    if (resp->content_range.len > 0 && (skip & WF_RESP_F_CONTENT_RANGE) == 0) {
        p = resp_put_field(p, "Content-Range: ", 15, resp->content_range);
    }
    if (resp->location.len > 0 && (skip & WF_RESP_F_LOCATION) == 0) {
        p = resp_put_field(p, "Location: ", 10, resp->location);
    }
    if (resp->raw_fields.len > 0) {
        p = resp_put(p, resp->raw_fields.data, resp->raw_fields.len);
    }
    if (resp->fields != NULL) {
        /* 64: room for Connection and the final CRLF. */
        p = resp_put_fields(p, out + cap - 64, resp);
    }
    if (!keep_alive) {
        p = resp_put_lit(p, "Connection: close\r\n");
    } else if (version == 10) {
        p = resp_put_lit(p, "Connection: keep-alive\r\n");
    }
    p = resp_put_lit(p, "\r\n");
    return (size_t)(p - out);
}
