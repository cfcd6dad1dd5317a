/* placeholder: being written */
#include "unit.h"

int
wf_test_h1_parse(void)
{
    return 0;
}
