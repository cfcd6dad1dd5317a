/* The pieces of an exchange that muxes embed (see http/exchange.h). */
#ifndef WF_HTTP_EXCHANGE_TYPES_H
#define WF_HTTP_EXCHANGE_TYPES_H

typedef struct wf_mux wf_mux_t;
typedef struct wf_mux_ops wf_mux_ops_t;

/* Embedded in a client connection; an exchange points to it and the mux
 * gets its connection back with wf_container_of(). */
struct wf_mux {
    const wf_mux_ops_t *ops;
};

#endif
