/* placeholder: being written */
#include "unit.h"

int
wf_test_route(void)
{
    return 0;
}
