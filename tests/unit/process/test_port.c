/* placeholder: being written */
#include "unit.h"

int
wf_test_port(void)
{
    return 0;
}
