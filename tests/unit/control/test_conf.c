/* placeholder: being written */
#include "unit.h"

int
wf_test_conf(void)
{
    return 0;
}
