/* The messages Wharf's processes exchange over ports (see
 * docs/internals/ipc.md).  Payload formats are given per type; text
 * payloads are not NUL-terminated on the wire (wf_port_msg_flatten() adds
 * one).  Each process's type table lists the types it handles. */
#ifndef WF_PROCESS_PORT_MSG_TYPES_H
#define WF_PROCESS_PORT_MSG_TYPES_H

enum {
    /* A generic answer on a request's stream.  Payload: optional text. */
    WF_MSG_OK = 1,
    /* A failure on a request's stream.  Payload: error text. */
    WF_MSG_FAIL,
    /* router -> main: open a listening socket.  Payload: the listener's
     * name as in the config (e.g. "127.0.0.1:8080", "unix:/run/a.sock").
     * Answer: WF_MSG_SOCKET with the fd, or WF_MSG_FAIL. */
    WF_MSG_SOCKET_OPEN,
    /* main -> router: the answer to WF_MSG_SOCKET_OPEN; one fd, no payload. */
    WF_MSG_SOCKET,
    /* router -> main: the listener named by the payload left the config;
     * main closes its copy.  No answer. */
    WF_MSG_SOCKET_RELEASE,
    /* main -> controller or router: one fd, the end of a new port to the
     * other of the two (after a restart).  No answer. */
    WF_MSG_PEER_PORT,
    /* controller -> router: apply this config.  Payload: JSON text.
     * Answer: WF_MSG_OK once every thread switched, or WF_MSG_FAIL. */
    WF_MSG_CONF_APPLY,
    /* controller -> router: send the /status object.  Answer: WF_MSG_OK
     * with JSON text. */
    WF_MSG_STATUS_GET,
    WF_MSG_NTYPES /* must stay last */
};

#endif
