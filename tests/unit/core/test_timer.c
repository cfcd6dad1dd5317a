/* placeholder: being written */
#include "unit.h"

int
wf_test_timer(void)
{
    return 0;
}
