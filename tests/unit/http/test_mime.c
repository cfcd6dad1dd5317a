/* placeholder: being written */
#include "unit.h"

int
wf_test_mime(void)
{
    return 0;
}
