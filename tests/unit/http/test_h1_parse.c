/* Tests of the HTTP/1 request parser: one table row per accepted or rejected
 * case, each also fed one byte more at a time, and a table for the chunked
 * body decoder, also fed split at every byte position. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "http/h1_parse.h"
#include "unit.h"

/* Expected values that are 0 in a row are not checked; the macros below
 * encode values that may be 0. */
#define MID(id) .mid = (int)(id) + 1
#define NH(n)   .nh = (n) + 1
#define CL(n)   .has_cl = true, .cl = (n)
#define KA(b)   .ka = (b) ? 1 : 2
#define IN(s)   .in = (s), .len = sizeof(s) - 1
#define HOST    "Host: a\r\n"

typedef struct h1_case {
    const char *name;
    const char *in;
    size_t len;
    const wf_h1_limits_t *lim; /* NULL: h1_lim */
    int rc;
    unsigned status;
    /* Checked when rc is WF_OK. */
    const char *method;
    int mid;
    const char *path;
    const char *target; /* NULL: not checked */
    const char *query;  /* non-NULL: has_query is expected too */
    const char *host;
    const char *authority;
    unsigned version;
    bool has_cl;
    int64_t cl;
    bool chunked;
    bool expect;
    int ka;
    int nh;
    size_t head_len; /* 0: the whole input */
} h1_case_t;

static const wf_h1_limits_t h1_lim = {8192, 8192, 65536, false};
static const wf_h1_limits_t h1_lim_discard = {8192, 8192, 65536, true};
/* Small limits: request line 20, field line 16, head 64 bytes. */
static const wf_h1_limits_t h1_lim_small = {20, 16, 64, false};
/* A request-line limit above the head limit: the head limit wins. */
static const wf_h1_limits_t h1_lim_head_first = {30, 100, 30, false};

static const h1_case_t h1_cases[] = {
    /* Accepted requests. */
    {"get", IN("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"), .rc = WF_OK,
     .method = "GET", MID(WF_HTTP_GET), .path = "/", .host = "example.com",
     .version = 11, KA(true), NH(1)},
    {"query", IN("GET /a/b?x=1&y HTTP/1.1\r\n" HOST "\r\n"), .rc = WF_OK,
     .path = "/a/b", .query = "x=1&y", .version = 11},
    {"empty query", IN("GET /p? HTTP/1.1\r\n" HOST "\r\n"), .rc = WF_OK,
     .path = "/p", .query = ""},
    {"all target chars",
     IN("GET /a%20b!$&'()*+,;=:@[]~\"<>\\^`{|}?/? HTTP/1.1\r\n" HOST "\r\n"),
     .rc = WF_OK, .path = "/a%20b!$&'()*+,;=:@[]~\"<>\\^`{|}", .query = "/?"},
    {"http/1.0 no host", IN("GET / HTTP/1.0\r\n\r\n"), .rc = WF_OK,
     .version = 10, KA(false), NH(0), .host = ""},
    {"http/1.0 keep-alive",
     IN("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"), .rc = WF_OK,
     .version = 10, KA(true)},
    {"http/1.0 keep-alive and close",
     IN("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\nConnection: close\r\n"
        "\r\n"),
     .rc = WF_OK, KA(false)},
    {"http/1.0 empty host", IN("GET / HTTP/1.0\r\nHost:\r\n\r\n"), .rc = WF_OK,
     .host = ""},
    {"close", IN("GET / HTTP/1.1\r\n" HOST "Connection: close\r\n\r\n"),
     .rc = WF_OK, KA(false)},
    {"close in a list",
     IN("GET / HTTP/1.1\r\n" HOST "Connection: Keep-Alive ,CLOSE\r\n\r\n"),
     .rc = WF_OK, KA(false)},
    {"connection other tokens",
     IN("GET / HTTP/1.1\r\n" HOST "Connection: upgrade, keep-alive\r\n\r\n"),
     .rc = WF_OK, KA(true)},
    {"connection closed not close",
     IN("GET / HTTP/1.1\r\n" HOST "Connection: closed\r\n\r\n"), .rc = WF_OK,
     KA(true)},
    {"one leading crlf", IN("\r\nGET / HTTP/1.1\r\n" HOST "\r\n"), .rc = WF_OK,
     .method = "GET"},
    {"eight leading crlf",
     IN("\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\n" HOST "\r\n"),
     .rc = WF_OK, .method = "GET"},
    {"absolute-form",
     IN("GET http://example.com/a?b HTTP/1.1\r\nHost: other\r\n\r\n"),
     .rc = WF_OK, .path = "/a", .query = "b", .host = "example.com",
     .authority = "example.com"},
    {"absolute-form https no path",
     IN("GET HTTPS://Example.com:8443 HTTP/1.1\r\n" HOST "\r\n"), .rc = WF_OK,
     .path = "/", .host = "Example.com:8443", .authority = "Example.com:8443"},
    {"absolute-form query no path",
     IN("GET http://h?q HTTP/1.1\r\n" HOST "\r\n"), .rc = WF_OK, .path = "/",
     .query = "q", .host = "h"},
    {"absolute-form ipv6", IN("GET http://[::1]:80/x HTTP/1.1\r\n" HOST "\r\n"),
     .rc = WF_OK, .path = "/x", .host = "[::1]:80"},
    {"connect", IN("CONNECT example.com:443 HTTP/1.1\r\n" HOST "\r\n"),
     .rc = WF_OK, MID(WF_HTTP_CONNECT), .authority = "example.com:443",
     .path = "", .host = "a"},
    {"options asterisk", IN("OPTIONS * HTTP/1.1\r\n" HOST "\r\n"), .rc = WF_OK,
     MID(WF_HTTP_OPTIONS), .path = "*"},
    {"extension method", IN("PURGE /x HTTP/1.1\r\n" HOST "\r\n"), .rc = WF_OK,
     .method = "PURGE", MID(WF_HTTP_OTHER)},
    {"method is case-sensitive", IN("get / HTTP/1.1\r\n" HOST "\r\n"),
     .rc = WF_OK, .method = "get", MID(WF_HTTP_OTHER)},
    {"content-length",
     IN("POST / HTTP/1.1\r\n" HOST "Content-Length: 5\r\n\r\nhello"),
     .rc = WF_OK, MID(WF_HTTP_POST), CL(5), .head_len = 47},
    {"content-length zero",
     IN("POST / HTTP/1.1\r\n" HOST "content-length: 0\r\n\r\n"), .rc = WF_OK,
     CL(0)},
    {"content-length leading zeros",
     IN("POST / HTTP/1.1\r\n" HOST "Content-Length: 007\r\n\r\n"), .rc = WF_OK,
     CL(7)},
    {"content-length max",
     IN("POST / HTTP/1.1\r\n" HOST
        "Content-Length: 9223372036854775807\r\n\r\n"),
     .rc = WF_OK, CL(INT64_MAX)},
    {"no content-length", IN("GET / HTTP/1.1\r\n" HOST "\r\n"), .rc = WF_OK,
     CL(-1)},
    {"chunked",
     IN("POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked\r\n\r\n"),
     .rc = WF_OK, .chunked = true, CL(-1)},
    {"cl trailing space",
     IN("POST / HTTP/1.1\r\n" HOST "Content-Length: 5  \r\n\r\n"), .rc = WF_OK,
     CL(5)},
    {"htab around other values",
     IN("GET / HTTP/1.1\r\nHost:\ta\t\r\nConnection:\tclose\t\r\n\r\n"),
     .rc = WF_OK, .host = "a", KA(false)},
    {"chunked case",
     IN("POST / HTTP/1.1\r\n" HOST "transfer-encoding:  Chunked \r\n\r\n"),
     .rc = WF_OK, .chunked = true},
    {"chunked in a list",
     IN("POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked\r\n"
        "Connection: ,, close,\r\n\r\n"),
     .rc = WF_OK, .chunked = true, KA(false)},
    {"expect", IN("PUT / HTTP/1.1\r\n" HOST "Expect: 100-continue\r\n\r\n"),
     .rc = WF_OK, .expect = true},
    {"expect case",
     IN("PUT / HTTP/1.1\r\n" HOST "EXPECT: 100-Continue\r\n\r\n"), .rc = WF_OK,
     .expect = true},
    {"expect in http/1.0", IN("PUT / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n"),
     .rc = WF_OK, .expect = false},
    {"expect other ignored",
     IN("PUT / HTTP/1.1\r\n" HOST "Expect: 200-ok\r\n\r\n"), .rc = WF_OK,
     .expect = false},
    {"ows stripped", IN("GET / HTTP/1.1\r\nHost: \t a.b \t \r\n\r\n"),
     .rc = WF_OK, .host = "a.b"},
    {"empty value", IN("GET / HTTP/1.1\r\n" HOST "X-Empty:\r\n\r\n"),
     .rc = WF_OK, NH(2)},
    {"obs-text and htab in value",
     IN("GET / HTTP/1.1\r\n" HOST "X-T: a\tb \x80\xff\r\n\r\n"), .rc = WF_OK,
     NH(2)},
    {"long value with htab and obs-text",
     IN("GET / HTTP/1.1\r\n" HOST
        "X-T: 0123456789abcdef\t0123456789\xc3\xa9\xff"
        "0123456789 \r\n\r\n"),
     .rc = WF_OK, NH(2)},
    {"long target",
     IN("GET /0123456789abcdef/0123456789abcdef?0123456789 "
        "HTTP/1.1\r\n" HOST "\r\n"),
     .rc = WF_OK, .path = "/0123456789abcdef/0123456789abcdef",
     .query = "0123456789"},
    {"tchar name kept", IN("GET / HTTP/1.1\r\n" HOST "X!y_z: 1\r\n\r\n"),
     .rc = WF_OK, NH(2)},
    {"unsafe name discarded",
     IN("GET / HTTP/1.1\r\n" HOST "X!y: 1\r\nX_y: 2\r\nX-y: 3\r\n\r\n"),
     .lim = &h1_lim_discard, .rc = WF_OK, NH(2)},
    {"host ipv6", IN("GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n"), .rc = WF_OK,
     .host = "[::1]:8080"},
    {"host empty port", IN("GET / HTTP/1.1\r\nHost: a:\r\n\r\n"), .rc = WF_OK,
     .host = "a:"},
    {"request line at its limit", IN("GET /123456 HTTP/1.0\r\n\r\n"),
     .lim = &h1_lim_small, .rc = WF_OK},
    {"field at its limit", IN("GET / HTTP/1.0\r\nX: 123456789abcd\r\n\r\n"),
     .lim = &h1_lim_small, .rc = WF_OK, NH(1)},
    {"head at its limit",
     IN("GET / HTTP/1.0\r\nX: 123456789abcd\r\nY: 123456789abcd\r\nZ: 12345\r\n"
        "\r\n"),
     .lim = &h1_lim_small, .rc = WF_OK, NH(3)},

    /* More bytes needed. */
    {"empty", IN(""), .rc = WF_AGAIN},
    {"cr", IN("\r"), .rc = WF_AGAIN},
    {"crlf", IN("\r\n"), .rc = WF_AGAIN},
    {"no empty line", IN("GET / HTTP/1.1\r\n" HOST), .rc = WF_AGAIN},
    {"half the last crlf", IN("GET / HTTP/1.1\r\n" HOST "\r"), .rc = WF_AGAIN},

    /* Request line: 400. */
    {"empty method", IN(" / HTTP/1.1\r\n" HOST "\r\n"), .rc = WF_ERROR,
     .status = 400},
    {"bad method char", IN("G@T / HTTP/1.1\r\n" HOST "\r\n"), .rc = WF_ERROR,
     .status = 400},
    {"two spaces", IN("GET  / HTTP/1.1\r\n" HOST "\r\n"), .rc = WF_ERROR,
     .status = 400},
    {"tab separator", IN("GET\t/ HTTP/1.1\r\n" HOST "\r\n"), .rc = WF_ERROR,
     .status = 400},
    {"no target", IN("GET HTTP/1.1\r\n" HOST "\r\n"), .rc = WF_ERROR,
     .status = 400},
    {"space in target", IN("GET /a b HTTP/1.1\r\n" HOST "\r\n"), .rc = WF_ERROR,
     .status = 400},
    {"control in target", IN("GET /a\x01 HTTP/1.1\r\n" HOST "\r\n"),
     .rc = WF_ERROR, .status = 400},
    {"del in target", IN("GET /a\x7f HTTP/1.1\r\n" HOST "\r\n"), .rc = WF_ERROR,
     .status = 400},
    {"high byte in target", IN("GET /\xc3\xa9 HTTP/1.1\r\n" HOST "\r\n"),
     .rc = WF_ERROR, .status = 400},
    {"nul in target", IN("GET /\0 HTTP/1.1\r\n" HOST "\r\n"), .rc = WF_ERROR,
     .status = 400},
    {"high byte deep in a long target",
     IN("GET /0123456789abcdef0123\x80 HTTP/1.1\r\n" HOST "\r\n"),
     .rc = WF_ERROR, .status = 400},
    {"fragment deep in a long target",
     IN("GET /0123456789abcdef01#x HTTP/1.1\r\n" HOST "\r\n"), .rc = WF_OK,
     .path = "/0123456789abcdef01", .target = "/0123456789abcdef01"},
    {"fragment with a space", IN("GET /a#b c HTTP/1.1\r\n" HOST "\r\n"),
     .rc = WF_ERROR, .status = 400},
    {"fragment with a control", IN("GET /a#b\x01 HTTP/1.1\r\n" HOST "\r\n"),
     .rc = WF_ERROR, .status = 400},
    {"fragment alone", IN("GET #a HTTP/1.1\r\n" HOST "\r\n"), .rc = WF_ERROR,
     .status = 400},
    {"del deep in a long target",
     IN("GET /0123456789abcdef012\x7f HTTP/1.1\r\n" HOST "\r\n"),
     .rc = WF_ERROR, .status = 400},
    /* A fragment is dropped, as Unit and nginx drop it. */
    {"fragment", IN("GET /a#b HTTP/1.1\r\n" HOST "\r\n"), .rc = WF_OK,
     .path = "/a", .target = "/a"},
    {"fragment at root", IN("GET /#x HTTP/1.1\r\n" HOST "\r\n"), .rc = WF_OK,
     .path = "/", .target = "/"},
    {"fragment after query", IN("GET /9?q#a HTTP/1.1\r\n" HOST "\r\n"),
     .rc = WF_OK, .path = "/9", .query = "q", .target = "/9?q"},
    {"empty fragment", IN("GET /a?# HTTP/1.1\r\n" HOST "\r\n"), .rc = WF_OK,
     .path = "/a", .query = "", .target = "/a?"},
    {"fragment with ? and #", IN("GET /a#b?c#d/e HTTP/1.1\r\n" HOST "\r\n"),
     .rc = WF_OK, .path = "/a", .target = "/a"},
    {"absolute fragment", IN("GET http://h/p#f HTTP/1.1\r\n" HOST "\r\n"),
     .rc = WF_OK, .path = "/p", .host = "h", .authority = "h",
     .target = "http://h/p"},
    {"relative target", IN("GET a/b HTTP/1.1\r\n" HOST "\r\n"), .rc = WF_ERROR,
     .status = 400},
    {"asterisk not options", IN("GET * HTTP/1.1\r\n" HOST "\r\n"),
     .rc = WF_ERROR, .status = 400},
    {"asterisk with more", IN("OPTIONS *x HTTP/1.1\r\n" HOST "\r\n"),
     .rc = WF_ERROR, .status = 400},
    {"connect origin-form", IN("CONNECT / HTTP/1.1\r\n" HOST "\r\n"),
     .rc = WF_ERROR, .status = 400},
    {"connect no port", IN("CONNECT example.com HTTP/1.1\r\n" HOST "\r\n"),
     .rc = WF_ERROR, .status = 400},
    {"connect empty port", IN("CONNECT example.com: HTTP/1.1\r\n" HOST "\r\n"),
     .rc = WF_ERROR, .status = 400},
    {"connect absolute-form",
     IN("CONNECT http://a:1/ HTTP/1.1\r\n" HOST "\r\n"), .rc = WF_ERROR,
     .status = 400},
    {"authority-form not connect", IN("GET a.b:80 HTTP/1.1\r\n" HOST "\r\n"),
     .rc = WF_ERROR, .status = 400},
    {"absolute ftp", IN("GET ftp://h/ HTTP/1.1\r\n" HOST "\r\n"),
     .rc = WF_ERROR, .status = 400},
    {"absolute empty host", IN("GET http:///a HTTP/1.1\r\n" HOST "\r\n"),
     .rc = WF_ERROR, .status = 400},
    {"absolute userinfo", IN("GET http://u@h/ HTTP/1.1\r\n" HOST "\r\n"),
     .rc = WF_ERROR, .status = 400},
    {"absolute scheme only", IN("GET http:// HTTP/1.1\r\n" HOST "\r\n"),
     .rc = WF_ERROR, .status = 400},
    {"absolute bad port", IN("GET http://h:x/ HTTP/1.1\r\n" HOST "\r\n"),
     .rc = WF_ERROR, .status = 400},
    {"version trailing space", IN("GET / HTTP/1.1 \r\n" HOST "\r\n"),
     .rc = WF_ERROR, .status = 400},
    {"version lowercase", IN("GET / http/1.1\r\n" HOST "\r\n"), .rc = WF_ERROR,
     .status = 400},
    /* HTTP/1.2 and higher are served as 1.1 (RFC 9110 2.5). */
    {"version 1.2", IN("GET / HTTP/1.2\r\n" HOST "\r\n"), .rc = WF_OK,
     .version = 11, KA(true)},
    {"version 1.9", IN("GET / HTTP/1.9\r\n" HOST "\r\n"), .rc = WF_OK,
     .version = 11},
    {"version 1.2 needs host", IN("GET / HTTP/1.2\r\n\r\n"), .rc = WF_ERROR,
     .status = 400},
    {"version 0.9", IN("GET / HTTP/0.9\r\n" HOST "\r\n"), .rc = WF_ERROR,
     .status = 400},
    {"version no minor", IN("GET / HTTP/1\r\n" HOST "\r\n"), .rc = WF_ERROR,
     .status = 400},
    {"version two digits", IN("GET / HTTP/11.1\r\n" HOST "\r\n"),
     .rc = WF_ERROR, .status = 400},
    {"no version", IN("GET /\r\n" HOST "\r\n"), .rc = WF_ERROR, .status = 400},

    /* Version: 505. */
    {"http/2.0", IN("GET / HTTP/2.0\r\n" HOST "\r\n"), .rc = WF_ERROR,
     .status = 505},
    {"http/3.0", IN("GET / HTTP/3.0\r\n" HOST "\r\n"), .rc = WF_ERROR,
     .status = 505},
    {"http/9.9", IN("GET / HTTP/9.9\r\n" HOST "\r\n"), .rc = WF_ERROR,
     .status = 505},

    /* Bare LF line endings are accepted (RFC 9112 2.2 MAY), as Unit and
     * nginx accept them. */
    {"bare lf everywhere", IN("GET /x HTTP/1.1\nHost: a\nX: 1\n\n"),
     .rc = WF_OK, .path = "/x", .host = "a", .version = 11, NH(2)},
    {"bare lf request line", IN("GET / HTTP/1.1\n" HOST "\r\n"), .rc = WF_OK,
     .host = "a", .version = 11},
    {"bare lf head end", IN("GET / HTTP/1.1\r\n" HOST "\n"), .rc = WF_OK,
     .host = "a"},
    {"bare lf field", IN("GET / HTTP/1.1\r\nHost: a\nX: 1\r\n\r\n"),
     .rc = WF_OK, .host = "a", NH(2)},
    {"bare lf field ows", IN("GET / HTTP/1.1\nHost: a \t\nX:  1 \n\n"),
     .rc = WF_OK, .host = "a", NH(2)},
    {"bare lf then crlf end", IN("GET / HTTP/1.0\nX: 1\n\r\n"), .rc = WF_OK,
     .version = 10, NH(1)},
    {"crlf then bare lf end", IN("GET / HTTP/1.0\r\nX: 1\r\n\n"), .rc = WF_OK,
     .version = 10, NH(1)},
    {"bare lf http/1.0 only request line", IN("GET / HTTP/1.0\n\n"),
     .rc = WF_OK, .version = 10, NH(0)},
    {"bare lf pipelined",
     IN("GET /1 HTTP/1.1\nHost: a\n\nGET /2 HTTP/1.1\nHost: a\n\n"),
     .rc = WF_OK, .path = "/1", .head_len = 25},
    {"bare lf early", IN("GET / HTTP/1.1\r\nX: \n"), .rc = WF_AGAIN},
    {"leading bare lf", IN("\nGET / HTTP/1.1\r\n" HOST "\r\n"), .rc = WF_OK,
     .host = "a", .head_len = 0},
    {"nine leading bare lf",
     IN("\n\n\n\n\n\n\n\n\nGET / HTTP/1.1\r\n" HOST "\r\n"), .rc = WF_ERROR,
     .status = 400},

    /* A bare CR stays a 400. */
    {"bare cr in value", IN("GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n"),
     .rc = WF_ERROR, .status = 400},
    {"bare cr line start", IN("GET / HTTP/1.1\r\n" HOST "\rX: 1\r\n\r\n"),
     .rc = WF_ERROR, .status = 400},
    {"bare cr request line", IN("GET /\r HTTP/1.1\r\n" HOST "\r\n"),
     .rc = WF_ERROR, .status = 400},
    {"bare cr after version", IN("GET / HTTP/1.1\r\r\n" HOST "\r\n"),
     .rc = WF_ERROR, .status = 400},
    {"bare cr before bare lf end", IN("GET / HTTP/1.1\n" HOST "\r\r\n\r\n"),
     .rc = WF_ERROR, .status = 400},
    {"bare cr end of value", IN("GET / HTTP/1.1\nHost: a\r\rX: 1\n\n"),
     .rc = WF_ERROR, .status = 400},
    {"leading bare cr", IN("\rGET / HTTP/1.1\r\n" HOST "\r\n"), .rc = WF_ERROR,
     .status = 400},
    {"nine leading crlf",
     IN("\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\n" HOST "\r\n"),
     .rc = WF_ERROR, .status = 400},

    /* Fields: 400. */
    {"nul in value", IN("GET / HTTP/1.1\r\n" HOST "X: a\0b\r\n\r\n"),
     .rc = WF_ERROR, .status = 400},
    {"ctl in value", IN("GET / HTTP/1.1\r\n" HOST "X: a\x01 b\r\n\r\n"),
     .rc = WF_ERROR, .status = 400},
    {"del in value", IN("GET / HTTP/1.1\r\n" HOST "X: a\x7f\r\n\r\n"),
     .rc = WF_ERROR, .status = 400},
    {"ctl deep in a long value",
     IN("GET / HTTP/1.1\r\n" HOST "X: 0123456789abcdef0123\x1f"
        "4567\r\n\r\n"),
     .rc = WF_ERROR, .status = 400},
    {"del deep in a long value",
     IN("GET / HTTP/1.1\r\n" HOST "X: 0123456789abcdef012\x7f"
        "34567\r\n\r\n"),
     .rc = WF_ERROR, .status = 400},
    {"obs-fold", IN("GET / HTTP/1.1\r\n" HOST "X: a\r\n b\r\n\r\n"),
     .rc = WF_ERROR, .status = 400},
    {"obs-fold htab", IN("GET / HTTP/1.1\r\n" HOST "X: a\r\n\tb\r\n\r\n"),
     .rc = WF_ERROR, .status = 400},
    {"space first line", IN("GET / HTTP/1.1\r\n " HOST "\r\n"), .rc = WF_ERROR,
     .status = 400},
    {"space before colon", IN("GET / HTTP/1.1\r\nHost : a\r\n\r\n"),
     .rc = WF_ERROR, .status = 400},
    {"tab before colon", IN("GET / HTTP/1.1\r\n" HOST "X\t: a\r\n\r\n"),
     .rc = WF_ERROR, .status = 400},
    {"empty name", IN("GET / HTTP/1.1\r\n" HOST ": a\r\n\r\n"), .rc = WF_ERROR,
     .status = 400},
    {"no colon", IN("GET / HTTP/1.1\r\n" HOST "X a\r\n\r\n"), .rc = WF_ERROR,
     .status = 400},
    {"bad name char", IN("GET / HTTP/1.1\r\n" HOST "X(y): a\r\n\r\n"),
     .rc = WF_ERROR, .status = 400},
    {"high byte in name", IN("GET / HTTP/1.1\r\n" HOST "X\xe9: a\r\n\r\n"),
     .rc = WF_ERROR, .status = 400},

    /* Host: 400. */
    {"no host", IN("GET / HTTP/1.1\r\n\r\n"), .rc = WF_ERROR, .status = 400},
    {"no host absolute-form", IN("GET http://h/ HTTP/1.1\r\n\r\n"),
     .rc = WF_ERROR, .status = 400},
    {"two hosts", IN("GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n"),
     .rc = WF_ERROR, .status = 400},
    {"two hosts http/1.0", IN("GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"),
     .rc = WF_ERROR, .status = 400},
    {"empty host", IN("GET / HTTP/1.1\r\nHost:  \r\n\r\n"), .rc = WF_OK,
     .host = "", .version = 11},
    {"dot host", IN("GET / HTTP/1.1\r\nHost: .localhost\r\n\r\n"), .rc = WF_OK,
     .host = ".localhost"},
    {"host with hash", IN("GET / HTTP/1.1\r\nHost: a#b\r\n\r\n"),
     .rc = WF_ERROR, .status = 400},
    {"host with question mark", IN("GET / HTTP/1.1\r\nHost: a?b\r\n\r\n"),
     .rc = WF_ERROR, .status = 400},
    {"host with slash", IN("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"),
     .rc = WF_ERROR, .status = 400},
    {"host with space", IN("GET / HTTP/1.1\r\nHost: a b\r\n\r\n"),
     .rc = WF_ERROR, .status = 400},
    {"host with userinfo", IN("GET / HTTP/1.1\r\nHost: u@h\r\n\r\n"),
     .rc = WF_ERROR, .status = 400},
    {"host bad port", IN("GET / HTTP/1.1\r\nHost: a:b\r\n\r\n"), .rc = WF_ERROR,
     .status = 400},
    {"host unclosed ipv6", IN("GET / HTTP/1.1\r\nHost: [::1\r\n\r\n"),
     .rc = WF_ERROR, .status = 400},

    /* Content-Length and Transfer-Encoding: 400. */
    {"cl not digits",
     IN("POST / HTTP/1.1\r\n" HOST "Content-Length: 5a\r\n\r\n"),
     .rc = WF_ERROR, .status = 400},
    {"cl negative", IN("POST / HTTP/1.1\r\n" HOST "Content-Length: -5\r\n\r\n"),
     .rc = WF_ERROR, .status = 400},
    {"cl plus", IN("POST / HTTP/1.1\r\n" HOST "Content-Length: +5\r\n\r\n"),
     .rc = WF_ERROR, .status = 400},
    {"cl empty", IN("POST / HTTP/1.1\r\n" HOST "Content-Length:\r\n\r\n"),
     .rc = WF_ERROR, .status = 400},
    {"cl inner space",
     IN("POST / HTTP/1.1\r\n" HOST "Content-Length: 1 2\r\n\r\n"),
     .rc = WF_ERROR, .status = 400},
    {"cl overflow",
     IN("POST / HTTP/1.1\r\n" HOST
        "Content-Length: 9223372036854775808\r\n\r\n"),
     .rc = WF_ERROR, .status = 400},
    {"cl huge",
     IN("POST / HTTP/1.1\r\n" HOST
        "Content-Length: 99999999999999999999999\r\n\r\n"),
     .rc = WF_ERROR, .status = 400},
    {"cl duplicate equal",
     IN("POST / HTTP/1.1\r\n" HOST
        "Content-Length: 5\r\nContent-Length: 5\r\n\r\n"),
     .rc = WF_ERROR, .status = 400},
    {"cl list", IN("POST / HTTP/1.1\r\n" HOST "Content-Length: 5, 5\r\n\r\n"),
     .rc = WF_ERROR, .status = 400},
    {"cl then te",
     IN("POST / HTTP/1.1\r\n" HOST "Content-Length: 5\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"),
     .rc = WF_ERROR, .status = 400},
    {"te then cl",
     IN("POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked\r\n"
        "Content-Length: 5\r\n\r\n"),
     .rc = WF_ERROR, .status = 400},
    {"te chunked twice",
     IN("POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked, chunked\r\n"
        "\r\n"),
     .rc = WF_ERROR, .status = 400},
    {"te chunked in two fields",
     IN("POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"),
     .rc = WF_ERROR, .status = 400},
    {"te in http/1.0",
     IN("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
     .rc = WF_ERROR, .status = 400},
    {"te trailing empty element",
     IN("POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked,\r\n\r\n"),
     .rc = WF_ERROR, .status = 400},
    {"te leading empty element",
     IN("POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: , chunked\r\n\r\n"),
     .rc = WF_ERROR, .status = 400},
    {"te trailing htab",
     IN("POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked\t\r\n\r\n"),
     .rc = WF_ERROR, .status = 400},
    {"te leading htab",
     IN("POST / HTTP/1.1\r\n" HOST "Transfer-Encoding:\tchunked\r\n\r\n"),
     .rc = WF_ERROR, .status = 400},
    {"cl trailing htab",
     IN("POST / HTTP/1.1\r\n" HOST "Content-Length: 5\t\r\n\r\n"),
     .rc = WF_ERROR, .status = 400},
    {"te empty", IN("POST / HTTP/1.1\r\n" HOST "Transfer-Encoding:\r\n\r\n"),
     .rc = WF_ERROR, .status = 400},

    /* Transfer codings: 501. */
    {"te gzip",
     IN("POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: gzip\r\n\r\n"),
     .rc = WF_ERROR, .status = 501},
    {"te gzip then chunked",
     IN("POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: gzip, chunked\r\n\r\n"),
     .rc = WF_ERROR, .status = 501},
    {"te chunked then identity",
     IN("POST / HTTP/1.1\r\n" HOST
        "Transfer-Encoding: chunked, identity\r\n\r\n"),
     .rc = WF_ERROR, .status = 501},
    {"te chunked with parameter",
     IN("POST / HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked;q=1\r\n\r\n"),
     .rc = WF_ERROR, .status = 501},

    /* Limits: 414 and 431. */
    {"request line too long", IN("GET /1234567 HTTP/1.0\r\n\r\n"),
     .lim = &h1_lim_small, .rc = WF_ERROR, .status = 414},
    {"request line too long early", IN("GET /123456789012345678"),
     .lim = &h1_lim_small, .rc = WF_ERROR, .status = 414},
    {"request line over the head limit", IN("GET /123456789012345678901234567"),
     .lim = &h1_lim_head_first, .rc = WF_ERROR, .status = 431},
    {"field too long", IN("GET / HTTP/1.0\r\nX: 123456789abcde\r\n\r\n"),
     .lim = &h1_lim_small, .rc = WF_ERROR, .status = 431},
    {"field too long early", IN("GET / HTTP/1.0\r\nX: 123456789abcdef0"),
     .lim = &h1_lim_small, .rc = WF_ERROR, .status = 431},
    {"long field before bare lf", IN("GET / HTTP/1.0\r\nX: 123456789abcdef0\n"),
     .lim = &h1_lim_small, .rc = WF_ERROR, .status = 431},
    {"head too long",
     IN("GET / HTTP/1.0\r\nX: 123456789abcd\r\nY: 123456789abcd\r\n"
        "Z: 123456\r\n\r\n"),
     .lim = &h1_lim_small, .rc = WF_ERROR, .status = 431},
    {"head too long early",
     IN("GET / HTTP/1.0\r\nX: 123456789abcd\r\nY: 123456789abcd\r\n"
        "Z: 123456\r\nW: 1"),
     .lim = &h1_lim_small, .rc = WF_ERROR, .status = 431},
    /* A bad request line is certain at its LF, before the long line. */
    {"bad request line before long line",
     IN("G@T / HTTP/1.0\r\nX: 123456789abcdef0\r\n\r\n"), .lim = &h1_lim_small,
     .rc = WF_ERROR, .status = 400},
    {"long line before syntax error",
     IN("GET / HTTP/1.0\r\nX: 123456789abcdef0\r\nG@T:\r\n\r\n"),
     .lim = &h1_lim_small, .rc = WF_ERROR, .status = 431},
    {"bad request line without end of head", IN("GET /\n"), .rc = WF_ERROR,
     .status = 400},
    {"http/2 request line without end of head", IN("GET / HTTP/2.0\r\nHo"),
     .rc = WF_ERROR, .status = 505},
};

/* Builds a request with n fields in a malloc'ed buffer. */
static char *
h1_many_fields(unsigned n, size_t *len)
{
    char *buf = malloc(32 + (size_t)n * 16);
    size_t o;

    assert_non_null(buf);
    o = (size_t)sprintf(buf, "GET / HTTP/1.1\r\n" HOST);
    for (unsigned i = 1; i < n; i++) {
        o += (size_t)sprintf(buf + o, "X%u: %u\r\n", i, i);
    }
    o += (size_t)sprintf(buf + o, "\r\n");
    *len = o;
    return buf;
}

/* Fails the test with the case name when got != want. */
static void
h1_expect_int(const char *name, const char *what, long long got, long long want)
{
    if (got != want) {
        fail_msg("case \"%s\": %s is %lld, want %lld", name, what, got, want);
    }
}

static void
h1_expect_str(const char *name, const char *what, wf_str_t got,
              const char *want)
{
    if (want == NULL) {
        return;
    }
    if (got.len != strlen(want)
        || (got.len != 0 && memcmp(got.data, want, got.len) != 0)) {
        fail_msg("case \"%s\": %s is \"%.*s\", want \"%s\"", name, what,
                 (int)got.len, got.len != 0 ? got.data : "", want);
    }
}

static void
h1_check_fields(const h1_case_t *t, const wf_h1_head_t *h)
{
    const char *n = t->name;

    h1_expect_str(n, "method", h->method, t->method);
    h1_expect_str(n, "path", h->path, t->path);
    if (t->target != NULL) {
        h1_expect_str(n, "target", h->target, t->target);
    }
    h1_expect_str(n, "host", h->host, t->host);
    h1_expect_str(n, "authority", h->authority, t->authority);
    if (t->query != NULL) {
        h1_expect_int(n, "has_query", h->has_query, true);
        h1_expect_str(n, "query", h->query, t->query);
    }
    if (t->mid != 0) {
        h1_expect_int(n, "method_id", h->method_id, t->mid - 1);
    }
    if (t->version != 0) {
        h1_expect_int(n, "version", h->version, t->version);
    }
    if (t->has_cl) {
        h1_expect_int(n, "content_length", h->content_length, t->cl);
    }
    if (t->ka != 0) {
        h1_expect_int(n, "keep_alive", h->keep_alive, t->ka == 1);
    }
    if (t->nh != 0) {
        h1_expect_int(n, "nheaders", h->nheaders, t->nh - 1);
    }
    h1_expect_int(n, "chunked", h->chunked, t->chunked);
    h1_expect_int(n, "expect_continue", h->expect_continue, t->expect);
    h1_expect_int(n, "head_len", (long long)h->head_len,
                  (long long)(t->head_len != 0 ? t->head_len : t->len));
}

/* Checks the outcome of a parse against the row. */
static void
h1_check_result(const h1_case_t *t, const wf_h1_head_t *h, int rc)
{
    h1_expect_int(t->name, "rc", rc, t->rc);
    if (rc == WF_ERROR) {
        h1_expect_int(t->name, "status", h->status, t->status);
    } else if (rc == WF_OK) {
        h1_check_fields(t, h);
    }
}

/* Parses the prefixes of t->in that grow by one byte, each copied to its own
 * buffer (the parser must not keep pointers between calls), until the result
 * is not WF_AGAIN; returns the last buffer, which the caller frees. */
static char *
h1_parse_bytewise(const h1_case_t *t, const wf_h1_limits_t *lim,
                  wf_h1_head_t *h, int *rc)
{
    char *buf = NULL;

    wf_h1_head_init(h);
    for (size_t n = 0; n <= t->len; n++) {
        free(buf);
        buf = malloc(n + 1);
        assert_non_null(buf);
        memcpy(buf, t->in, n);
        *rc = wf_h1_parse_head(h, buf, n, lim);
        if (*rc != WF_AGAIN) {
            break;
        }
    }
    return buf;
}

static void
h1_test_table(void **state)
{
    static wf_h1_head_t h;
    wf_unused(state);

    for (size_t i = 0; i < wf_nitems(h1_cases); i++) {
        const h1_case_t *t = &h1_cases[i];
        const wf_h1_limits_t *lim = t->lim != NULL ? t->lim : &h1_lim;
        char *buf;
        int rc;

        wf_h1_head_init(&h);
        rc = wf_h1_parse_head(&h, t->in, t->len, lim);
        h1_check_result(t, &h, rc);

        buf = h1_parse_bytewise(t, lim, &h, &rc);
        h1_check_result(t, &h, rc);
        free(buf);
    }
}

static void
h1_test_many_fields(void **state)
{
    static wf_h1_head_t h;
    size_t len;
    char *buf;
    wf_unused(state);

    buf = h1_many_fields(WF_H1_MAX_HEADERS, &len);
    wf_h1_head_init(&h);
    assert_int_equal(wf_h1_parse_head(&h, buf, len, &h1_lim), WF_OK);
    assert_int_equal(h.nheaders, WF_H1_MAX_HEADERS);
    free(buf);

    buf = h1_many_fields(WF_H1_MAX_HEADERS + 1, &len);
    wf_h1_head_init(&h);
    assert_int_equal(wf_h1_parse_head(&h, buf, len, &h1_lim), WF_ERROR);
    assert_int_equal(h.status, 431);
    free(buf);
}

static void
h1_test_pipelined(void **state)
{
    static const char in[] = "POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 2"
                             "\r\n\r\nxyGET /b?c HTTP/1.1\r\nHost: b\r\n\r\n"
                             "GET /c HTTP/1.1\r\n";
    static wf_h1_head_t h;
    size_t off;
    wf_unused(state);

    wf_h1_head_init(&h);
    assert_int_equal(wf_h1_parse_head(&h, in, sizeof(in) - 1, &h1_lim), WF_OK);
    h1_expect_str("pipelined", "path", h.path, "/a");
    assert_int_equal(h.content_length, 2);
    off = h.head_len + 2;
    assert_memory_equal(in + off, "GET /b", 6);

    wf_h1_head_init(&h);
    assert_int_equal(
        wf_h1_parse_head(&h, in + off, sizeof(in) - 1 - off, &h1_lim), WF_OK);
    h1_expect_str("pipelined", "path", h.path, "/b");
    h1_expect_str("pipelined", "host", h.host, "b");
    off += h.head_len;

    wf_h1_head_init(&h);
    assert_int_equal(
        wf_h1_parse_head(&h, in + off, sizeof(in) - 1 - off, &h1_lim),
        WF_AGAIN);
}

static void
h1_test_find(void **state)
{
    static const char in[] = "GET / HTTP/1.1\r\nHost: a\r\nX-Thing: 1\r\n"
                             "x-thing: 2\r\n\r\n";
    static wf_h1_head_t h;
    const wf_h1_header_t *f;
    wf_unused(state);

    wf_h1_head_init(&h);
    assert_int_equal(wf_h1_parse_head(&h, in, sizeof(in) - 1, &h1_lim), WF_OK);
    f = wf_h1_head_find(&h, wf_string("X-THING"));
    assert_non_null(f);
    h1_expect_str("find", "value", f->value, "1");
    h1_expect_str("find", "name", f->name, "X-Thing");
    assert_null(wf_h1_head_find(&h, wf_string("X-Other")));
}

/* Host values and the $host they give (Unit's nxt_http_validate_host
 * keeps a leading dot, strips the port and one trailing dot, lowercases);
 * want NULL: 400. */
static const struct {
    const char *in, *want;
} h1_host_cases[] = {
    {"", ""},
    {"Example.COM", "example.com"},
    {".localhost", ".localhost"},
    {"a.b.", "a.b"},
    {"a.b.:8080", "a.b"},
    {"a:80", "a"},
    {"a:", "a"},
    {"[::1]:80", "[::1]"},
    {"[::1]", "[::1]"},
    {"x_y~z!$&'()*+,;=%41", "x_y~z!$&'()*+,;=%41"},
    {"a..b", NULL},
    {"..", NULL},
    {"a#b", NULL},
    {"a?b", NULL},
    {"a/b", NULL},
    {"a\\b", NULL},
    {"a b", NULL},
    {"a@b", NULL},
};

static void
h1_test_host_name(void **state)
{
    wf_unused(state);
    for (size_t i = 0; i < wf_nitems(h1_host_cases); i++) {
        char in[64], buf[64];
        size_t n = strlen(h1_host_cases[i].in);
        wf_str_t name;
        int rc;

        memcpy(in, h1_host_cases[i].in, n);
        rc = wf_h1_host_name(in, n, buf, &name);
        /* the field itself stays as received (HTTP_HOST) */
        assert_memory_equal(in, h1_host_cases[i].in, n);
        if (h1_host_cases[i].want == NULL) {
            h1_expect_int(h1_host_cases[i].in, "rc", rc, WF_ERROR);
            continue;
        }
        h1_expect_int(h1_host_cases[i].in, "rc", rc, WF_OK);
        h1_expect_str(h1_host_cases[i].in, "name", name, h1_host_cases[i].want);
    }
}

static void
h1_test_method_id(void **state)
{
    static const struct {
        const char *name;
        wf_http_method_t id;
    } methods[] = {
        {"GET", WF_HTTP_GET},         {"HEAD", WF_HTTP_HEAD},
        {"POST", WF_HTTP_POST},       {"PUT", WF_HTTP_PUT},
        {"DELETE", WF_HTTP_DELETE},   {"CONNECT", WF_HTTP_CONNECT},
        {"OPTIONS", WF_HTTP_OPTIONS}, {"TRACE", WF_HTTP_TRACE},
        {"PATCH", WF_HTTP_PATCH},     {"Get", WF_HTTP_OTHER},
        {"GETS", WF_HTTP_OTHER},      {"", WF_HTTP_OTHER},
    };
    wf_unused(state);

    for (size_t i = 0; i < wf_nitems(methods); i++) {
        wf_str_t m = wf_str_make(methods[i].name, strlen(methods[i].name));

        assert_int_equal(wf_http_method_id(m), methods[i].id);
    }
}

/* ---- Chunked decoder --------------------------------------------------- */

typedef struct h1_chunk_case {
    const char *name;
    const char *in;
    size_t len;
    int rc;
    const char *out; /* body for WF_OK and WF_AGAIN */
    size_t used;     /* for WF_OK; 0: the whole input */
} h1_chunk_case_t;

static const h1_chunk_case_t h1_chunk_cases[] = {
    {"one chunk", IN("5\r\nhello\r\n0\r\n\r\n"), WF_OK, "hello"},
    {"chunks", IN("3\r\nabc\r\n2\r\nde\r\n1\r\nf\r\n0\r\n\r\n"), WF_OK,
     "abcdef"},
    {"hex", IN("A\r\n0123456789\r\nb\r\n0123456789a\r\n0\r\n\r\n"), WF_OK,
     "01234567890123456789a"},
    {"leading zeros", IN("0005\r\nhello\r\n000\r\n\r\n"), WF_OK, "hello"},
    {"empty body", IN("0\r\n\r\n"), WF_OK, ""},
    {"extensions", IN("5;foo=bar\r\nhello\r\n0;x\r\n\r\n"), WF_OK, "hello"},
    {"quoted extension", IN("5;a=\"b c\";d\r\nhello\r\n0\r\n\r\n"), WF_OK,
     "hello"},
    {"bws before extension", IN("5 \t;a\r\nhello\r\n0\r\n\r\n"), WF_OK,
     "hello"},
    {"trailers", IN("2\r\nhi\r\n0\r\nX-T: 1\r\nY:\r\n\r\n"), WF_OK, "hi"},
    {"next request follows", IN("2\r\nhi\r\n0\r\n\r\nGET / HTTP/1.1\r\n"),
     WF_OK, "hi", 12},
    {"data with crlf inside", IN("4\r\n\r\n\r\n\r\n0\r\n\r\n"), WF_OK,
     "\r\n\r\n"},
    {"incomplete data", IN("5\r\nhel"), WF_AGAIN, "hel"},
    {"incomplete size", IN("5\r\nhello\r\n1"), WF_AGAIN, "hello"},
    {"incomplete trailers", IN("0\r\nX: 1\r\n"), WF_AGAIN, ""},
    {"large size waits", IN("7fffffffffffffff\r\nab"), WF_AGAIN, "ab"},
    {"bad size", IN("x\r\n"), WF_ERROR},
    {"empty size", IN("\r\nhello\r\n"), WF_ERROR},
    {"negative size", IN("-1\r\n"), WF_ERROR},
    {"0x prefix", IN("0x5\r\nhello\r\n0\r\n\r\n"), WF_ERROR},
    {"size 2^63", IN("8000000000000000\r\n"), WF_ERROR},
    {"size 2^64", IN("10000000000000000\r\n"), WF_ERROR},
    {"size all f", IN("ffffffffffffffff\r\n"), WF_ERROR},
    {"bare lf after size", IN("5\nhello\r\n0\r\n\r\n"), WF_ERROR},
    {"bare cr after size", IN("5\rhello\r\n0\r\n\r\n"), WF_ERROR},
    {"bare lf after data", IN("5\r\nhello\n0\r\n\r\n"), WF_ERROR},
    {"data too long", IN("5\r\nhelloX\r\n0\r\n\r\n"), WF_ERROR},
    {"bare lf in trailer", IN("0\r\nX: 1\n\r\n"), WF_ERROR},
    {"bare lf at the end", IN("0\r\n\n"), WF_ERROR},
    {"space after size", IN("5 \r\nhello\r\n0\r\n\r\n"), WF_ERROR},
    {"ctl in extension", IN("5;a\x01\r\nhello\r\n0\r\n\r\n"), WF_ERROR},
    {"lf in extension", IN("5;a\nhello\r\n0\r\n\r\n"), WF_ERROR},
    {"obs-fold trailer", IN("0\r\nX: 1\r\n folded\r\n\r\n"), WF_ERROR},
    {"trailer without colon", IN("0\r\nX\r\n\r\n"), WF_ERROR},
    {"ctl in trailer", IN("0\r\nX: \x01\r\n\r\n"), WF_ERROR},
};

/* Decodes in[0..len) in pieces cut at the given positions (sorted, each at
 * most len), in place in a copy, as a server does with its read buffer. */
static int
h1_chunk_run(const char *in, size_t len, const size_t *cuts, size_t ncuts,
             char *out, size_t *out_len, size_t *used)
{
    wf_h1_chunked_t ch;
    char *buf = malloc(len + 1);
    size_t from = 0, o = 0;
    int rc = WF_AGAIN;

    assert_non_null(buf);
    memcpy(buf, in, len);
    wf_h1_chunked_init(&ch);
    for (size_t i = 0; i <= ncuts && rc == WF_AGAIN; i++) {
        size_t to = i < ncuts ? cuts[i] : len;
        size_t u, n;

        rc = wf_h1_chunked_decode(&ch, buf + from, to - from, &u, buf + from,
                                  &n);
        assert_true(u <= to - from && n <= u);
        if (rc == WF_AGAIN) {
            assert_int_equal(u, to - from);
        }
        memcpy(out + o, buf + from, n);
        o += n;
        from += u;
    }
    *out_len = o;
    *used = from;
    free(buf);
    return rc;
}

static void
h1_chunk_check(const h1_chunk_case_t *t, int rc, const char *out,
               size_t out_len, size_t used)
{
    h1_expect_int(t->name, "rc", rc, t->rc);
    if (rc == WF_ERROR) {
        return;
    }
    h1_expect_str(t->name, "body", wf_str_make(out, out_len), t->out);
    if (rc == WF_OK) {
        h1_expect_int(t->name, "used", (long long)used,
                      (long long)(t->used != 0 ? t->used : t->len));
    }
}

static void
h1_test_chunked(void **state)
{
    static char out[256];
    size_t out_len, used;
    size_t cuts[2];
    int rc;
    wf_unused(state);

    for (size_t i = 0; i < wf_nitems(h1_chunk_cases); i++) {
        const h1_chunk_case_t *t = &h1_chunk_cases[i];

        rc = h1_chunk_run(t->in, t->len, NULL, 0, out, &out_len, &used);
        h1_chunk_check(t, rc, out, out_len, used);

        /* Every split in two pieces, and every cut of three pieces where the
         * second is one byte long. */
        for (size_t k = 0; k <= t->len; k++) {
            cuts[0] = k;
            rc = h1_chunk_run(t->in, t->len, cuts, 1, out, &out_len, &used);
            h1_chunk_check(t, rc, out, out_len, used);
            if (k < t->len) {
                cuts[1] = k + 1;
                rc = h1_chunk_run(t->in, t->len, cuts, 2, out, &out_len, &used);
                h1_chunk_check(t, rc, out, out_len, used);
            }
        }
    }
}

static void
h1_test_chunked_long_line(void **state)
{
    static char in[5000];
    char out[8];
    size_t out_len, used;
    wf_unused(state);

    /* A 4096-byte size line is accepted; one more byte is not. */
    memset(in, 'a', sizeof(in));
    memcpy(in, "1;", 2);
    memcpy(in + 4094, "\r\nx", 3);
    assert_int_equal(h1_chunk_run(in, 4097, NULL, 0, out, &out_len, &used),
                     WF_AGAIN);
    assert_int_equal(out_len, 1);
    memcpy(in + 4094, "a\r\n", 3);
    assert_int_equal(h1_chunk_run(in, 4097, NULL, 0, out, &out_len, &used),
                     WF_ERROR);
}

int
wf_test_h1_parse(void)
{
    static const struct CMUnitTest tests[] = {
        cmocka_unit_test(h1_test_table),
        cmocka_unit_test(h1_test_many_fields),
        cmocka_unit_test(h1_test_pipelined),
        cmocka_unit_test(h1_test_find),
        cmocka_unit_test(h1_test_method_id),
        cmocka_unit_test(h1_test_host_name),
        cmocka_unit_test(h1_test_chunked),
        cmocka_unit_test(h1_test_chunked_long_line),
    };

    return cmocka_run_group_tests_name("h1_parse", tests, NULL, NULL);
}
