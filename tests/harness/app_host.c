/* app-host: runs one app process (wf_app_main(): the real runtime and a
 * real language module) on a socket the caller passes, so that a test can
 * play the router over apps/app_proto.h without main or the router
 * (tests/integration/lib/app_router.py).
 *
 *   app-host MODULE.so APP_CONF_JSON FD
 *
 * One worker slot, one router thread: FD is socket 0.  Exits with
 * wf_app_main()'s status. */
#include <stdio.h>
#include <stdlib.h>

#include "apps/app_main.h"

int
main(int argc, char **argv)
{
    int fds[1];
    wf_app_start_t st = {
        .name = "test",
        .tmpdir = "/tmp",
        .slots = 1,
        .router_threads = 1,
        .fds = fds,
    };

    if (argc != 4) {
        fprintf(stderr, "usage: app-host MODULE.so APP_CONF_JSON FD\n");
        return 2;
    }
    st.module_file = argv[1];
    st.conf_json = argv[2];
    fds[0] = atoi(argv[3]);
    return wf_app_main(&st);
}
