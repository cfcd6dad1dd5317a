/* placeholder: being written */
#include "unit.h"

int
wf_test_uri(void)
{
    return 0;
}
