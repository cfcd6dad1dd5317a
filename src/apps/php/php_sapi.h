/* Between php_sapi.c (PHP's start, the SAPI table, the extension) and
 * php_req.c (one request: the SAPI's request callbacks).  Includes PHP's
 * headers; php_app.h stays free of them. */
#ifndef WF_APPS_PHP_PHP_SAPI_H
#define WF_APPS_PHP_PHP_SAPI_H

#include <SAPI.h>
#include <php.h>
#include <php_main.h>
#include <php_variables.h>

#include "apps/php/php_app.h"

/* The module's state (set by wf_php_sapi_start()): PHP's callbacks get no
 * context of their own. */
extern wf_php_app_t *wf_php_app;

/* Logs text (a PHP message, possibly of several lines) after prefix, in
 * pieces that fit a log line. */
void wf_php_log_text(wf_app_log_level_t level, const char *prefix,
                     const char *text);

/* Arms (on) or disarms the limits.timeout watchdog; nothing without
 * limits.timeout.  Arming again restarts its period. */
void wf_php_timer_arm(bool on);

/* The SAPI's request callbacks (php_req.c).  Each runs inside a request
 * started by wf_php_request_serve(). */
size_t wf_php_ub_write(const char *str, size_t len);
void wf_php_flush(void *server_context);
int wf_php_send_headers(sapi_headers_struct *headers);
size_t wf_php_read_post(char *buf, size_t len);
char *wf_php_read_cookies(void);
void wf_php_register_variables(zval *track_vars);

/* fastcgi_finish_request(): ends the response now (output buffers
 * flushed, head and body sent, the request ended complete); later output
 * is discarded.  False when there is no response to end. */
bool wf_php_req_finish_early(void);

#endif
