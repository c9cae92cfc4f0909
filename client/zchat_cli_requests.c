//  zchat_cli_requests — the requests a zchat front end has in flight, by
//  the library's request id; see zchat_cli_requests.h.

#include "zchat_cli.h"
#include "zchat_cli_requests.h"

#define S_KINDS     (ZCHAT_CLI_REQ_OTHER + 1)

struct _zchat_cli_requests_t {
    zhashx_t *table;                    //  request id (hex) -> zchat_cli_request_t
    size_t   counts [S_KINDS];          //  requests in the table, by kind
    int64_t  drain_deadline;            //  0 until input ended; INT64_MAX: no bound
};

static void
s_request_destroy (void **item_p)
{
    zchat_cli_request_t *request = (zchat_cli_request_t *) *item_p;
    if (request) {
        cJSON_Delete (request->id);
        free (request);
        *item_p = NULL;
    }
}

//  zhashx keys are strings: the request id in a fixed width.
static void
s_key (uint64_t rid, char *key, size_t size)
{
    snprintf (key, size, "%016" PRIx64, rid);
}


//  ---------------------------------------------------------------------
//  An empty table.

zchat_cli_requests_t *
zchat_cli_requests_new (void)
{
    zchat_cli_requests_t *self =
        (zchat_cli_requests_t *) zmalloc (sizeof (zchat_cli_requests_t));
    assert (self);
    self->table = zhashx_new ();
    assert (self->table);
    zhashx_set_destructor (self->table, s_request_destroy);
    return self;
}


//  ---------------------------------------------------------------------
//  Destroy the table and its requests; nulls *self_p.

void
zchat_cli_requests_destroy (zchat_cli_requests_t **self_p)
{
    assert (self_p);
    zchat_cli_requests_t *self = *self_p;
    if (self) {
        zhashx_destroy (&self->table);
        free (self);
        *self_p = NULL;
    }
}


//  ---------------------------------------------------------------------
//  Remember request rid; copies room and id.

void
zchat_cli_requests_add (zchat_cli_requests_t *self, uint64_t rid,
                        zchat_cli_req_kind_t kind, const char *room, const cJSON *id)
{
    assert (self);
    assert (rid);
    assert (kind < S_KINDS);
    //  A replaced request no longer counts.
    zchat_cli_requests_remove (self, rid);
    zchat_cli_request_t *request =
        (zchat_cli_request_t *) zmalloc (sizeof (zchat_cli_request_t));
    assert (request);
    request->kind = kind;
    request->id = id? cJSON_Duplicate (id, true): NULL;
    snprintf (request->room, sizeof request->room, "%s", room? room: "");
    char key [17];
    s_key (rid, key, sizeof key);
    zhashx_update (self->table, key, request);
    self->counts [kind]++;
}


//  ---------------------------------------------------------------------
//  The request rid, or NULL.

zchat_cli_request_t *
zchat_cli_requests_lookup (zchat_cli_requests_t *self, uint64_t rid)
{
    assert (self);
    if (!rid)
        return NULL;
    char key [17];
    s_key (rid, key, sizeof key);
    return (zchat_cli_request_t *) zhashx_lookup (self->table, key);
}


//  ---------------------------------------------------------------------
//  Forget request rid.

void
zchat_cli_requests_remove (zchat_cli_requests_t *self, uint64_t rid)
{
    assert (self);
    zchat_cli_request_t *request = zchat_cli_requests_lookup (self, rid);
    if (request) {
        self->counts [request->kind]--;
        char key [17];
        s_key (rid, key, sizeof key);
        zhashx_delete (self->table, key);
    }
}


//  ---------------------------------------------------------------------
//  How many requests of kind are in flight.

size_t
zchat_cli_requests_count (zchat_cli_requests_t *self, zchat_cli_req_kind_t kind)
{
    assert (self);
    assert (kind < S_KINDS);
    return self->counts [kind];
}


//  ---------------------------------------------------------------------
//  Walk the requests in flight.

zchat_cli_request_t *
zchat_cli_requests_first (zchat_cli_requests_t *self)
{
    assert (self);
    return (zchat_cli_request_t *) zhashx_first (self->table);
}

zchat_cli_request_t *
zchat_cli_requests_next (zchat_cli_requests_t *self)
{
    assert (self);
    return (zchat_cli_request_t *) zhashx_next (self->table);
}


//  ---------------------------------------------------------------------
//  After input ended: all answered, or drain_ms passed since the first call.

bool
zchat_cli_requests_drained (zchat_cli_requests_t *self, int drain_ms)
{
    assert (self);
    if (zhashx_size (self->table) == 0)
        return true;
    //  One deadline for all that is left, from the end of input: the run
    //  ends within drain_ms however many answers are still out.
    if (!self->drain_deadline)
        self->drain_deadline = drain_ms < 0? INT64_MAX: zchat_cli_now () + drain_ms;
    return zchat_cli_now () >= self->drain_deadline;
}


//  ---------------------------------------------------------------------
//  When the drain gives up; 0 when not draining or without bound.

int64_t
zchat_cli_requests_deadline (zchat_cli_requests_t *self)
{
    assert (self);
    return self->drain_deadline == INT64_MAX? 0: self->drain_deadline;
}
