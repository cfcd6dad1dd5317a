/* placeholder: being written */
#include "unit.h"

int
wf_test_range(void)
{
    return 0;
}
