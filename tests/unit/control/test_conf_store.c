/* placeholder: being written */
#include "unit.h"

int
wf_test_conf_store(void)
{
    return 0;
}
