//  zchat_cli_poll — the wait in each zchat front end's loop; see
//  zchat_cli_poll.h.

#include "zchat_cli.h"
#include "zchat_cli_poll.h"

struct _zchat_cli_poll_t {
    zchat_client_t *client;
    int      fd;                        //  zpoller watches it by address
    //  Two pollers, since zpoller cannot stop watching a descriptor: a
    //  readable stdin we do not want to read yet would wake every wait.
    zpoller_t *with_stdin;              //  NULL when fd is -1
    zpoller_t *without_stdin;
    zpoller_t *last;                    //  the one the last wait used
    bool     signalled;                 //  it was cut short by a signal
};


//  ---------------------------------------------------------------------
//  A poll on client's sockets and on fd (-1: none) when asked.

zchat_cli_poll_t *
zchat_cli_poll_new (zchat_client_t *client, int fd)
{
    assert (client);
    zchat_cli_poll_t *self = (zchat_cli_poll_t *) zmalloc (sizeof (zchat_cli_poll_t));
    assert (self);
    self->client = client;
    self->fd = fd;
    self->without_stdin = zpoller_new (zchat_client_dealer (client),
                                       zchat_client_sub (client), NULL);
    assert (self->without_stdin);
    if (fd >= 0) {
        self->with_stdin = zpoller_new (zchat_client_dealer (client),
                                        zchat_client_sub (client), NULL);
        assert (self->with_stdin);
        int rc = zpoller_add (self->with_stdin, &self->fd);
        assert (rc == 0);
    }
    self->last = self->without_stdin;
    return self;
}


//  ---------------------------------------------------------------------
//  Destroy the poll; nulls *self_p.

void
zchat_cli_poll_destroy (zchat_cli_poll_t **self_p)
{
    assert (self_p);
    zchat_cli_poll_t *self = *self_p;
    if (self) {
        zpoller_destroy (&self->with_stdin);
        zpoller_destroy (&self->without_stdin);
        free (self);
        *self_p = NULL;
    }
}


//  How long a wait may last: until the library's next due time (a retry,
//  a heartbeat), at most a second when it has none, and never past
//  deadline.
static int
s_wait_ms (zchat_client_t *client, int64_t deadline)
{
    int wait = zchat_client_due_ms (client);
    if (wait < 0)
        wait = 1000;
    if (deadline > 0) {
        int64_t left = deadline - zchat_cli_now ();
        if (left < 0)
            left = 0;
        if (left < wait)
            wait = (int) left;
    }
    return wait;
}


//  ---------------------------------------------------------------------
//  One wait; returns what stdin did.

zchat_cli_poll_stdin_t
zchat_cli_poll_wait (zchat_cli_poll_t *self, bool reading, int64_t deadline)
{
    assert (self);
    assert (!reading || self->with_stdin);
    self->last = reading? self->with_stdin: self->without_stdin;
    void *which = zpoller_wait (self->last, s_wait_ms (self->client, deadline));
    //  zpoller calls a poll that a signal cut short "terminated": only
    //  SIGINT and SIGTERM (zsys_interrupted) end us, not the terminal's
    //  SIGWINCH or SIGCONT, which the interactive client handles
    self->signalled = !which && zpoller_terminated (self->last) && errno == EINTR
                   && !zsys_interrupted;
    if (self->signalled)
        return ZCHAT_CLI_POLL_QUIET;
    if (!reading)
        return ZCHAT_CLI_POLL_QUIET;
    if (which == &self->fd)
        return ZCHAT_CLI_POLL_INPUT;
    //  poll reports a pipe whose writer has gone as POLLHUP without
    //  POLLIN, and zpoller then returns NULL without having expired:
    //  read () must still be called to see the end of file, or the loop
    //  spins.
    if (!which && !zpoller_expired (self->last) && !zpoller_terminated (self->last))
        return ZCHAT_CLI_POLL_HANGUP;
    return ZCHAT_CLI_POLL_QUIET;
}


//  ---------------------------------------------------------------------
//  True once interrupted.

bool
zchat_cli_poll_interrupted (zchat_cli_poll_t *self)
{
    assert (self);
    return zsys_interrupted || (zpoller_terminated (self->last) && !self->signalled);
}
