/* libFuzzer target for the HTTP/2 input path: the input is what a client
 * sends after its preface (frames), fed to an nghttp2 server session set
 * up as http/h2_conn.c sets it up (no automatic window updates, the same
 * limits), whose header callbacks run the mux's mapping (http/h2_map.c);
 * every complete request head is then parsed by http/h1_parse.c as the
 * mux does.  Checks: the mapping never writes a head the parser reads
 * with a different method or a Host other than :authority; the session
 * never asks to send more than it was given room for.  The socket and the
 * endpoints are not involved (the integration tests cover them). */
#include <nghttp2/nghttp2.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "http/h1_parse.h"
#include "http/h2_map.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_STREAMS 16

typedef struct fuzz_stream {
    int32_t id;
    wf_h2_map_req_t map;
    bool bad;
} fuzz_stream_t;

typedef struct fuzz_conn {
    fuzz_stream_t s[FUZZ_STREAMS];
} fuzz_conn_t;

static fuzz_stream_t *
fuzz_stream(fuzz_conn_t *c, int32_t id, bool create)
{
    for (size_t i = 0; i < FUZZ_STREAMS; i++) {
        if (c->s[i].id == id) {
            return &c->s[i];
        }
    }
    for (size_t i = 0; create && i < FUZZ_STREAMS; i++) {
        if (c->s[i].id == 0) {
            c->s[i].id = id;
            wf_h2_map_req_init(&c->s[i].map, 32768);
            c->s[i].bad = false;
            return &c->s[i];
        }
    }
    return NULL;
}

static void
fuzz_stream_end(fuzz_stream_t *s)
{
    wf_h2_map_req_fini(&s->map);
    s->id = 0;
}

static int
fuzz_on_begin(nghttp2_session *ng, const nghttp2_frame *f, void *user)
{
    wf_unused(ng);
    if (f->hd.type == NGHTTP2_HEADERS
        && f->headers.cat == NGHTTP2_HCAT_REQUEST) {
        fuzz_stream(user, f->hd.stream_id, true);
    }
    return 0;
}

static int
fuzz_on_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name,
               size_t nlen, const uint8_t *value, size_t vlen, uint8_t flags,
               void *user)
{
    fuzz_stream_t *s = fuzz_stream(user, f->hd.stream_id, false);

    wf_unused(ng);
    wf_unused(flags);
    if (s == NULL || s->bad) {
        return 0;
    }
    if (wf_h2_map_req_field(&s->map, name, nlen, value, vlen) != WF_H2_MAP_OK) {
        s->bad = true;
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    return 0;
}

/* The head the mapping wrote parses back to what the list said. */
static void
fuzz_head_check(fuzz_stream_t *s)
{
    wf_h1_limits_t lim = {32768, 32768, 131072, true};
    wf_h1_head_t h;
    char *out = NULL;
    size_t len = 0;

    if (wf_h2_map_req_head(&s->map, &out, &len) != WF_H2_MAP_OK) {
        return;
    }
    wf_h1_head_init(&h);
    if (wf_h1_parse_head(&h, out, len, &lim) == WF_OK) {
        wf_str_t m =
            wf_str_make(s->map.pseudo.data + s->map.poff[WF_H2_PSEUDO_METHOD],
                        s->map.plen[WF_H2_PSEUDO_METHOD]);

        if (h.method.len != m.len || memcmp(h.method.data, m.data, m.len)
            || h.head_len != len) {
            abort();
        }
        if ((s->map.seen & (1u << WF_H2_PSEUDO_AUTHORITY)) != 0
            && (h.host.len != s->map.plen[WF_H2_PSEUDO_AUTHORITY]
                || memcmp(h.host.data,
                          s->map.pseudo.data
                              + s->map.poff[WF_H2_PSEUDO_AUTHORITY],
                          h.host.len))) {
            abort();
        }
    }
    free(out);
}

static int
fuzz_on_frame(nghttp2_session *ng, const nghttp2_frame *f, void *user)
{
    fuzz_stream_t *s = fuzz_stream(user, f->hd.stream_id, false);

    wf_unused(ng);
    if (s != NULL && !s->bad && f->hd.type == NGHTTP2_HEADERS
        && f->headers.cat == NGHTTP2_HCAT_REQUEST) {
        fuzz_head_check(s);
        s->bad = true; /* trailers are not mapped */
    }
    return 0;
}

static int
fuzz_on_data(nghttp2_session *ng, uint8_t flags, int32_t id,
             const uint8_t *data, size_t len, void *user)
{
    wf_unused(flags);
    wf_unused(data);
    wf_unused(user);
    nghttp2_session_consume(ng, id, len);
    return 0;
}

static int
fuzz_on_close(nghttp2_session *ng, int32_t id, uint32_t err, void *user)
{
    fuzz_stream_t *s = fuzz_stream(user, id, false);

    wf_unused(ng);
    wf_unused(err);
    if (s != NULL) {
        fuzz_stream_end(s);
    }
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    nghttp2_session_callbacks *cbs;
    nghttp2_option *opt;
    nghttp2_session *ng;
    fuzz_conn_t c;
    const uint8_t *out;

    memset(&c, 0, sizeof(c));
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, fuzz_on_begin);
    nghttp2_session_callbacks_set_on_header_callback(cbs, fuzz_on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, fuzz_on_frame);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs,
                                                              fuzz_on_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, fuzz_on_close);
    nghttp2_option_new(&opt);
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_max_outbound_ack(opt, 1000);
    nghttp2_option_set_max_settings(opt, 32);
    nghttp2_session_server_new2(&ng, cbs, &c, opt);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cbs);
    nghttp2_submit_settings(ng, NGHTTP2_FLAG_NONE, NULL, 0);
    if (nghttp2_session_mem_recv(ng, (const uint8_t *)preface,
                                 sizeof(preface) - 1)
        >= 0) {
        /* In pieces, as reads split it: the first byte says where. */
        size_t cut = size > 0 ? data[0] % (size + 1) : 0;

        if (nghttp2_session_mem_recv(ng, data, cut) >= 0) {
            nghttp2_session_mem_recv(ng, data + cut, size - cut);
        }
    }
    while (nghttp2_session_mem_send(ng, &out) > 0) {
    }
    nghttp2_session_del(ng);
    for (size_t i = 0; i < FUZZ_STREAMS; i++) {
        if (c.s[i].id != 0) {
            fuzz_stream_end(&c.s[i]);
        }
    }
    return 0;
}
