//  zchat_cli_poll — the one wait in each zchat front end's loop: on the
//  client's sockets, and on stdin while the front end takes input.

#ifndef ZCHAT_CLI_POLL_H_INCLUDED
#define ZCHAT_CLI_POLL_H_INCLUDED

#include <czmq.h>
#include "zchat_client.h"

typedef struct _zchat_cli_poll_t zchat_cli_poll_t;

//  What stdin did during a wait.
typedef enum {
    ZCHAT_CLI_POLL_QUIET,               //  nothing, or it was not watched
    ZCHAT_CLI_POLL_INPUT,               //  readable
    ZCHAT_CLI_POLL_HANGUP               //  hung up: read () will see the end
} zchat_cli_poll_stdin_t;

//  Wait on client's DEALER and SUB sockets and, when a wait asks for it,
//  on fd (stdin; -1 for never). client is borrowed and must outlive the
//  poll; fd is never read or closed here.
zchat_cli_poll_t *
    zchat_cli_poll_new (zchat_client_t *client, int fd);

//  Destroy the poll; nulls *self_p. Safe on NULL.
void
    zchat_cli_poll_destroy (zchat_cli_poll_t **self_p);

//  Wait until a socket or (when reading) fd has input, the library has
//  work due (zchat_client_due_ms), or deadline passes (zchat_cli_now ()
//  time; 0 = none). Then handle the events with zchat_client_next. Returns
//  what fd did: it must be read after INPUT and after HANGUP alike.
zchat_cli_poll_stdin_t
    zchat_cli_poll_wait (zchat_cli_poll_t *self, bool reading, int64_t deadline);

//  True once SIGINT or SIGTERM arrived, or the last wait was cut short by
//  a signal or by czmq shutting down.
bool
    zchat_cli_poll_interrupted (zchat_cli_poll_t *self);

#endif
