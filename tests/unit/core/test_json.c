/* placeholder: being written */
#include "unit.h"

int
wf_test_json(void)
{
    return 0;
}
