//  zchat_cli_requests — the requests a zchat front end (interactive or
//  --json) has in flight: what each one was, so that its answer can be
//  shown or echo the command's id, and the wait for the last answers once
//  input has ended.

#ifndef ZCHAT_CLI_REQUESTS_H_INCLUDED
#define ZCHAT_CLI_REQUESTS_H_INCLUDED

#include <czmq.h>
#include <cjson/cJSON.h>
#include "zchat_client.h"

//  What a request was: the front ends answer these kinds differently.
typedef enum {
    ZCHAT_CLI_REQ_SEND,                 //  a message said or sent directly
    ZCHAT_CLI_REQ_JOIN,                 //  refused: the room is not joined
    ZCHAT_CLI_REQ_LEAVE,
    ZCHAT_CLI_REQ_TOPIC_SET,
    ZCHAT_CLI_REQ_OTHER
} zchat_cli_req_kind_t;

typedef struct {
    zchat_cli_req_kind_t kind;
    char     room [ZCHAT_MAX_ROOM + 1]; //  the room it is about, or ""
    cJSON   *id;                        //  the JSON command's "id", or NULL
} zchat_cli_request_t;

typedef struct _zchat_cli_requests_t zchat_cli_requests_t;

//  An empty table.
zchat_cli_requests_t *
    zchat_cli_requests_new (void);

//  Destroy the table and every request in it; nulls *self_p. Safe on NULL.
void
    zchat_cli_requests_destroy (zchat_cli_requests_t **self_p);

//  Remember request rid (the library's request id, > 0). room (may be
//  NULL) and id (may be NULL) are copied. A second add of rid replaces
//  the first.
void
    zchat_cli_requests_add (zchat_cli_requests_t *self, uint64_t rid,
                            zchat_cli_req_kind_t kind, const char *room, const cJSON *id);

//  The request rid, or NULL (always for rid 0, which no request has).
//  Borrowed until it is removed.
zchat_cli_request_t *
    zchat_cli_requests_lookup (zchat_cli_requests_t *self, uint64_t rid);

//  Forget request rid (answered) if it is in the table.
void
    zchat_cli_requests_remove (zchat_cli_requests_t *self, uint64_t rid);

//  How many requests of kind are in flight.
size_t
    zchat_cli_requests_count (zchat_cli_requests_t *self, zchat_cli_req_kind_t kind);

//  The requests in flight, in no order: the first, then the next ones,
//  NULL after the last. Borrowed; the table must not change meanwhile.
zchat_cli_request_t *
    zchat_cli_requests_first (zchat_cli_requests_t *self);
zchat_cli_request_t *
    zchat_cli_requests_next (zchat_cli_requests_t *self);

//  Call once input has ended, on each turn of the loop: true when every
//  request is answered, or when drain_ms (-1: no bound) has passed since
//  the first call. Until then the loop waits for the answers.
bool
    zchat_cli_requests_drained (zchat_cli_requests_t *self, int drain_ms);

//  When that wait gives up, on the zchat_cli_now () clock, for
//  zchat_cli_wait_ms: 0 before the first zchat_cli_requests_drained call
//  and when the wait has no bound.
int64_t
    zchat_cli_requests_deadline (zchat_cli_requests_t *self);

#endif
