/* placeholder: being written */
#ifndef WF_CONTROL_API_H
#define WF_CONTROL_API_H
#endif
