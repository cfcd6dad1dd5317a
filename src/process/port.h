/* placeholder: being written */
#ifndef WF_PROCESS_PORT_H
#define WF_PROCESS_PORT_H
#endif
