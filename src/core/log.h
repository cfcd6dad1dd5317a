/* The error log, in Unit's line format:
 *     2026/11/21 23:59:59 [info] 1234#1240 message
 * Lines go to the file given by wf_log_open() or to stderr.  Each line is
 * written with one write(2), so threads never interleave within a line. */
#ifndef WF_CORE_LOG_H
#define WF_CORE_LOG_H

#include <stdarg.h>

typedef enum wf_log_level {
    WF_LOG_ALERT = 0,
    WF_LOG_ERR,
    WF_LOG_WARN,
    WF_LOG_NOTICE,
    WF_LOG_INFO,
    WF_LOG_DEBUG,
    WF_LOG_NLEVELS /* must stay last */
} wf_log_level_t;

/* Opens (appends to) path as the log; NULL means stderr.  Returns WF_OK or
 * WF_ERROR (reported on stderr). */
int wf_log_open(const char *path);

/* The descriptor lines go to (kept open across fork). */
int wf_log_fd(void);

/* Reopens the log file (USR1). */
int wf_log_reopen(void);

/* Puts fd (taken) in place of the log file, which main reopened for this
 * process (an unprivileged one may not open it).  Ignored, fd closed,
 * while the log is stderr.  Returns WF_OK or WF_ERROR (logged). */
int wf_log_redirect(int fd);

/* Lines above this level are dropped; WF_LOG_INFO by default. */
void wf_log_set_level(wf_log_level_t level);

/* Writes one line; err != 0 appends " (err: strerror)" as Unit does. */
void wf_log(wf_log_level_t level, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

void wf_log_v(wf_log_level_t level, int err, const char *fmt, va_list ap);

#define wf_log_alert(err, ...)  wf_log(WF_LOG_ALERT, err, __VA_ARGS__)
#define wf_log_error(err, ...)  wf_log(WF_LOG_ERR, err, __VA_ARGS__)
#define wf_log_warn(err, ...)   wf_log(WF_LOG_WARN, err, __VA_ARGS__)
#define wf_log_notice(err, ...) wf_log(WF_LOG_NOTICE, err, __VA_ARGS__)
#define wf_log_info(...)        wf_log(WF_LOG_INFO, 0, __VA_ARGS__)
#define wf_log_debug(...)       wf_log(WF_LOG_DEBUG, 0, __VA_ARGS__)

#endif
