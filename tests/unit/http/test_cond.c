/* placeholder: being written */
#include "unit.h"

int
wf_test_cond(void)
{
    return 0;
}
