/* Which script a request runs: Unit's rules (nxt_php_sapi.c's
 * nxt_php_dynamic_request()), without PHP.  docs/internals/php.md,
 * "Paths". */
#include "apps/php/php_app.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#define PHP_EXT     ".php"
#define PHP_EXT_LEN (sizeof(PHP_EXT) - 1)

unsigned
wf_php_fs_status(int err)
{
    switch (err) {
    case ELOOP:
    case EACCES:
    case ENFILE:
        return 403;
    case ENOENT:
    case ENOTDIR:
    case ENAMETOOLONG:
        return 404;
    default:
        return 0;
    }
}

/* True when path has a ".." segment or a NUL.  The router normalises the
 * path, so this never holds for a request it sends; it is the module's
 * own guarantee that root + path stays under root. */
static bool
php_path_is_unsafe(const char *path, size_t len)
{
    const char *p = path, *last = path + len;

    if (memchr(path, '\0', len) != NULL) {
        return true;
    }
    while (p < last) {
        const char *slash = memchr(p, '/', (size_t)(last - p));
        const char *end = slash != NULL ? slash : last;

        if (end - p == 2 && p[0] == '.' && p[1] == '.') {
            return true;
        }
        p = end + 1;
    }
    return false;
}

static void
php_route_status(wf_php_route_t *route, unsigned status)
{
    route->kind = status != 0 ? WF_PHP_ROUTE_STATUS : WF_PHP_ROUTE_FAIL;
    route->status = status;
}

/* A path that neither names a .php file nor ends in '/': Unit answers 301
 * for a directory, stat()'s error status, and cuts an existing file
 * short (it serves no static files). */
static void
php_route_other(const wf_php_target_t *t, const char *path, size_t len,
                char *buf, size_t size, wf_php_route_t *route)
{
    struct stat sb;

    if (t->root_len + len + 1 > size) {
        php_route_status(route, 0);
        return;
    }
    memcpy(buf, t->root, t->root_len);
    memcpy(buf + t->root_len, path, len);
    buf[t->root_len + len] = '\0';

    if (stat(buf, &sb) == -1) {
        php_route_status(route, wf_php_fs_status(errno));
        return;
    }
    if (S_ISDIR(sb.st_mode)) {
        route->kind = WF_PHP_ROUTE_REDIRECT;
        return;
    }
    php_route_status(route, 0);
}

static void
php_route_script(const wf_php_target_t *t, wf_php_route_t *route)
{
    route->kind = WF_PHP_ROUTE_SCRIPT;
    route->script_filename = t->script_filename;
    route->script_filename_len = t->script_filename_len;
    route->script_name.data = t->script_name;
    route->script_name.len = t->script_name_len;
}

void
wf_php_route_find(const wf_php_target_t *t, const char *path, size_t len,
                  char *buf, size_t size, wf_php_route_t *route)
{
    const char *pi;
    const char *index = "";
    size_t index_len = 0, n;

    memset(route, 0, sizeof(*route));
    if (t->script_filename != NULL) {
        php_route_script(t, route);
        return;
    }
    if (len == 0 || path[0] != '/' || php_path_is_unsafe(path, len)) {
        php_route_status(route, 404);
        return;
    }

    pi = memmem(path, len, PHP_EXT "/", PHP_EXT_LEN + 1);
    if (pi != NULL) {
        pi += PHP_EXT_LEN;
        route->path_info.data = pi;
        route->path_info.len = len - (size_t)(pi - path);
        len = (size_t)(pi - path);
    } else if (path[len - 1] == '/') {
        index = t->index;
        index_len = t->index_len;
    } else if (len < PHP_EXT_LEN
               || memcmp(path + len - PHP_EXT_LEN, PHP_EXT, PHP_EXT_LEN) != 0) {
        php_route_other(t, path, len, buf, size, route);
        return;
    }

    n = t->root_len + len + index_len;
    if (n + 1 > size) {
        php_route_status(route, 404); /* longer than PATH_MAX */
        return;
    }
    memcpy(buf, t->root, t->root_len);
    memcpy(buf + t->root_len, path, len);
    memcpy(buf + t->root_len + len, index, index_len);
    buf[n] = '\0';

    route->kind = WF_PHP_ROUTE_SCRIPT;
    route->script_filename = buf;
    route->script_filename_len = n;
    route->script_name.data = buf + t->root_len;
    route->script_name.len = len + index_len;
    route->chdir = true;
}
