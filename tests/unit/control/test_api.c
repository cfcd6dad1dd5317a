/* placeholder: being written */
#include "unit.h"

int
wf_test_api(void)
{
    return 0;
}
