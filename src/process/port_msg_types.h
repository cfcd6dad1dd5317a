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
    /* router -> main: start one app process.  Payload: JSON text
     * {"name": NAME, "conf": {the app's config object, as validated},
     *  "slots": T, "router_threads": N}; fds: the N * T app ends of the
     * app's sockets, in apps/app_proto.h's order (up to WF_APP_MAX_FDS, in
     * one message).  main forks the process (user, group, environment,
     * working directory, stdout/stderr, title), closes its copies of the
     * fds and answers WF_MSG_APP_PID, or WF_MSG_FAIL with the reason.
     * Whether the app then loads is told by the app itself (READY on its
     * sockets) or by WF_MSG_APP_EXIT. */
    WF_MSG_APP_START,
    /* main -> router: the answer to WF_MSG_APP_START.  Payload: the pid as
     * decimal text. */
    WF_MSG_APP_PID,
    /* main -> router, stream 0: an app process started for this router
     * ended.  Payload: JSON text {"pid": P, "name": NAME, "code": C} (exit
     * code) or {"pid": P, "name": NAME, "signal": S}.  No answer. */
    WF_MSG_APP_EXIT,
    /* router -> main: kill this app process (SIGKILL), e.g. one that did
     * not exit within the graceful bound after its sockets closed.
     * Payload: the pid as decimal text; main ignores a pid that is not one
     * of this router's app processes.  No answer. */
    WF_MSG_APP_KILL,
    /* main -> controller and router, stream 0, once at start (and to a
     * restarted child): the language modules found in the modules
     * directory.  Payload: JSON text [{"type": "python", "version":
     * "3.11.2", "file": "/path/python3.11.wharf.so"}, ...] (may be []).
     * No answer. */
    WF_MSG_MODULES,
    /* controller -> router: GET /control/applications/NAME/restart.
     * Payload: the name.  Answer: WF_MSG_OK once new processes serve the
     * app (the old ones finish their requests), or WF_MSG_FAIL with
     * Unit's error text. */
    WF_MSG_APP_RESTART,
    /* controller -> main: store this config as STATEDIR/conf.json (Unit's
     * NXT_PORT_MSG_CONF_STORE; main writes it atomically, so that the
     * controller needs no right on the state directory).  Payload: JSON
     * text.  Answer: WF_MSG_OK once stored, or WF_MSG_FAIL with the
     * reason (the previous file is intact). */
    WF_MSG_CONF_STORE,
    /* router -> main: open this access log file (O_APPEND, created 0644,
     * as root when main is: Unit's NXT_PORT_MSG_ACCESS_LOG).  Payload: the
     * path.  Answer: WF_MSG_ACCESS_LOG with the fd, or WF_MSG_FAIL with
     * Unit's error text. */
    WF_MSG_ACCESS_LOG_OPEN,
    /* main -> router: the answer to WF_MSG_ACCESS_LOG_OPEN; one fd, no
     * payload. */
    WF_MSG_ACCESS_LOG,
    /* main -> controller and router, stream 0: main got USR1 and reopened
     * the error log (Unit's NXT_PORT_MSG_CHANGE_FILE).  fds: the new error
     * log, or none when the log is stderr.  The router then asks for its
     * access log files anew (WF_MSG_ACCESS_LOG_OPEN).  No answer. */
    WF_MSG_LOG_REOPEN,
    /* controller -> main: store a certificate as STATEDIR/certs/NAME
     * (Unit's NXT_PORT_MSG_CERT_GET, whose fd the controller wrote).
     * Payload: NAME, a NUL byte, then the PEM bundle the controller
     * validated.  main writes it atomically, mode 0600.  Answer: WF_MSG_OK
     * once stored, or WF_MSG_FAIL (the previous file is intact). */
    WF_MSG_CERT_STORE,
    /* controller -> main: remove STATEDIR/certs/NAME (Unit's
     * NXT_PORT_MSG_CERT_DELETE).  Payload: NAME.  Answer: WF_MSG_OK, or
     * WF_MSG_FAIL. */
    WF_MSG_CERT_DELETE,
    /* controller -> router, stream 0, right before each WF_MSG_CONF_APPLY:
     * the certificates that config's listeners name.  Payload: JSON text
     * {NAME: PEM bundle, ...} (may be {}).  The router compiles the next
     * config with them.  No answer. */
    WF_MSG_CERTS,
    /* controller -> main: store an ACME entry (docs/internals/acme.md).
     * Payload: NAME, a NUL byte, the entry's state as JSON text, then
     * optionally a NUL byte and the key and chain the controller
     * validated.  main writes STATEDIR/acme/NAME, then (with a bundle)
     * STATEDIR/certs/NAME, each atomically, mode 0600.  Answer: WF_MSG_OK
     * once stored, or WF_MSG_FAIL.  WF_MSG_CERT_DELETE removes both. */
    WF_MSG_ACME_STORE,
    /* controller -> router: the ACME challenges to answer, replacing the
     * previous set.  Payload: JSON text {"http": {TOKEN: KEY
     * AUTHORIZATION}, "alpn": {DOMAIN: PEM bundle}} ({} withdraws all).
     * Answer: WF_MSG_OK once every listener answers them, or
     * WF_MSG_FAIL. */
    WF_MSG_ACME_TOKENS,
    WF_MSG_NTYPES /* must stay last */
};

#endif
