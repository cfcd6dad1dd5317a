/* placeholder: being written */
#ifndef WF_CONTROL_CONF_STORE_H
#define WF_CONTROL_CONF_STORE_H
#endif
