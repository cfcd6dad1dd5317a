/* placeholder: being written */
#include "unit.h"

int
wf_test_tpl(void)
{
    return 0;
}
