/* placeholder: being written */
#include "unit.h"

int
wf_test_pool(void)
{
    return 0;
}
