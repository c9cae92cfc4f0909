//  zchat_client — libzchat, the client side of the zchat protocol.
//
//  One DEALER carries requests and replies, one SUB carries room traffic.
//  Everything runs in the caller's thread, inside zchat_client_next and
//  zchat_client_wait: they drain both sockets in bounded batches, turn
//  what arrives into events on a queue, and do the session's housekeeping
//  when it is due (pings, resends, probes, fetches, re-greeting).
//
//  How the pieces fit (PROTOCOL.md §6):
//  - sends: every SAY/DM stays in the outbox (zchat_outbox) until its
//    ACK; it is resent with the same id every heartbeat interval and at
//    once after a new session, so the broker can deduplicate retries;
//    one refused with 429 waits, with every send after it, for the
//    broker's retry time, then goes again in order. At most S_DM_WINDOW
//    DMs go out from the oldest unanswered one on, the most whose
//    resends the broker still recognises; the next DM, and every send
//    after it, waits until that one is answered. The outbox keeps its
//    entries in send order and in last-sent order, so housekeeping only
//    ever touches the entries that are due.
//  - rooms (zchat_client_room): subscribe first, JOIN, then PROBE until
//    our own probe comes back on SUB; only then is the join reported, and
//    from then on a per-room zchat_sequencer puts messages in order and
//    asks for what is missing over DEALER (HISTORY). A send-only room is a
//    JOIN and no more: no subscription, no probe, no sequencing; it is
//    reported at JOINED, and whatever of it still reaches the SUB is
//    dropped. This file keeps the rooms in a table by name and hands each
//    what arrives for it.
//  - the session: silence from the broker for its session timeout, or an
//    ERROR 440/401, means the session is gone: greet again with our token
//    on the same DEALER (libzmq reconnects by itself), rejoin, resend.
//    The DEALER is ZMQ_IMMEDIATE, so nothing is queued to a broker that is
//    not there: sends that cannot go out wait in our own tables instead,
//    where we control their order and their retries.
//  - pings: before version 6 one goes whenever nothing else went for a
//    heartbeat, so that the broker keeps the session. From version 6 the
//    broker keeps it as long as our connection (PROTOCOL.md 6.1), and a
//    ping goes only when its PONG is worth having (s_ping_wanted): an idle
//    client sends nothing at all, and every ping it spares is a message
//    the broker's queues for it never carry. The DEALER's own ZMTP
//    heartbeats close a connection to a broker that stopped answering;
//    every new connection begins with an empty message (ZMQ_PROBE_ROUTER),
//    which a broker that does not know its routing id answers with 440, so
//    a client whose broker restarted greets again at once.

#include <czmq.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <stddef.h>
#include <sys/random.h>
#include "zchat_client_int.h"
#include "zchat_client_room.h"
#include "zchat_sequencer.h"

//  Tuning: zchat_client_int.h, in one place with what the self test
//  (zchat_client_test.c) checks it by.

static void s_quiet_check (zchat_client_t *self, int64_t now);
static void s_monitor_stop (zchat_client_t *self);


//  ==========================================================================
//  Events

//  --------------------------------------------------------------------------
//  Emit an ERROR event answering id (0 if none).

void
zchat_client_emit_error (zchat_client_t *self, uint64_t id, int code, uint32_t retry_ms,
                         const char *room, const char *nick, const char *reason)
{
    zchat_event_t *event = zchat_event_new (ZCHAT_EV_ERROR);
    if (!event)
        return;
    event->id = id;
    event->code = code;
    event->retry_ms = retry_ms;
    if (room)
        zchat_client_copy (event->room, sizeof (event->room), room);
    if (nick)
        zchat_client_copy (event->nick, sizeof (event->nick), nick);
    zchat_client_copy (event->reason, sizeof (event->reason), reason);
    zchat_client_emit (self, event);
}


//  ==========================================================================
//  Small helpers

//  --------------------------------------------------------------------------
//  Whether sends still wait out a 429. The coarse clock saves a clock read
//  per call, but it lags the one the pause was set by (by up to a tick):
//  it alone kept the pause on for a while after it had ended, and a caller
//  told by zchat_client_due_ms that nothing was to be written slept until
//  the next idle round, a second later, with its sends waiting (all four
//  senders of a flat-out 4->4 run at once, after the fair share had
//  refused them in the same period). So the precise clock has the last
//  word, read only while the coarse one still says "paused".

static bool
s_paused (zchat_client_t *self)
{
    return zchat_client_now_coarse () < self->send_pause_until && zchat_client_now () < self->send_pause_until;
}

static void
s_set_error (zchat_client_t *self, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    int size = vsnprintf (self->error, sizeof (self->error), format, args);
    va_end (args);
    //  Cut to fit, it may quote a broker's text: end on a whole character
    if (size >= (int) sizeof (self->error))
        self->error [zchat_client_utf8_cut (self->error, strlen (self->error))] = 0;
}

//  --------------------------------------------------------------------------
//  An endpoint with an IPv6 address (tcp://[::1]:5555) needs IPv6 on the
//  socket that connects to it, which libzmq leaves off. Only then, as the
//  broker does for its own endpoints: with IPv6 on, libzmq resolves a host
//  name to its IPv6 address alone when it has one, and a host without an
//  IPv6 route could no longer reach a broker it reaches today (ZSYS_IPV6=1
//  turns it on for every socket, for host names with IPv6 addresses only).

static void
s_ipv6_for (zsock_t *sock, const char *endpoint)
{
    if (strchr (endpoint, '['))
        zsock_set_ipv6 (sock, 1);
}

//  --------------------------------------------------------------------------
//  Request ids: random start, +1 each, never 0 (reserved for "no request").

static uint64_t
s_next_id (zchat_client_t *self)
{
    uint64_t id = self->next_id++;
    if (id == 0)
        id = self->next_id++;
    return id;
}

//  --------------------------------------------------------------------------
//  64 random bits, from the kernel (getrandom, which needs no file
//  descriptor: a room's probe tag takes some at every receiving join),
//  else from a UUID.

uint64_t
zchat_client_random64 (void)
{
    uint64_t value = 0;
    if (getrandom (&value, sizeof (value), 0) != (ssize_t) sizeof (value))
        value = 0;
    if (value == 0) {
        zuuid_t *uuid = zuuid_new ();
        if (uuid) {
            memcpy (&value, zuuid_data (uuid), sizeof (value));
            zuuid_destroy (&uuid);
        }
    }
    if (value == 0)
        value = (uint64_t) zclock_time () * 2654435761u;
    return value;
}

//  ==========================================================================
//  Sending on DEALER

//  --------------------------------------------------------------------------
//  Send the body encoded in self->buffer (size bytes, 0 = encoding
//  failed) behind an empty delimiter. Never blocks. Returns 0, or -1 if it
//  cannot go out now (no connection, or the DEALER is full).

static int
s_send_body (zchat_client_t *self, size_t size, int64_t now)
{
    if (size == 0)
        return -1;
    if (zmq_send (self->dealer_h, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT) == -1)
        return -1;
    //  A high-water mark is checked on a message's first frame only, so
    //  the body cannot be refused once the delimiter went out
    if (zchat_msgpool_send (self->sendpool, self->dealer_h, self->buffer, size,
                            S_POOLED_MIN, ZMQ_DONTWAIT) == -1)
        return -1;
    self->last_send_ms = now;
    return 0;
}

//  --------------------------------------------------------------------------
//  Encode request req under id into self->buffer; returns the body size.

static size_t
s_encode_request (zchat_client_t *self, uint64_t id, zchat_client_request_t *req)
{
    zchat_buf_t *buf = &self->buf;
    switch (req->kind) {
        case RQ_JOIN:
            return zchat_encode_join (buf, id, req->room);
        case RQ_LEAVE:
            return zchat_encode_leave (buf, id, req->room);
        case RQ_NICK:
            return zchat_encode_nick (buf, id, req->arg);
        case RQ_WHO:
            return zchat_encode_who (buf, id, req->room);
        case RQ_ROOMS:
            return zchat_encode_rooms (buf, id);
        case RQ_TOPIC:
            return zchat_encode_topic (buf, id, req->room, req->set, req->arg);
        case RQ_HISTORY:
        case RQ_FETCH:
            return zchat_encode_history (buf, id, req->room, req->from_seq,
                                         req->to_seq, (uint16_t) req->limit);
        case RQ_PROBE:
            //  Tagged (version 5) or not: the room chose (arg)
            return zchat_encode_probe (buf, id, req->room, *req->arg? req->arg: NULL);
        case RQ_BYE:
            return zchat_encode_bye (buf, id);
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  Try to send request id now; if it cannot go out, it is retried by
//  housekeeping (while in session) or on the next WELCOME.

static void
s_request_send (zchat_client_t *self, uint64_t id, zchat_client_request_t *req, int64_t now)
{
    if (req->sent)
        return;
    if (self->state == S_READY
    &&  s_send_body (self, s_encode_request (self, id, req), now) == 0)
        req->sent = true;
    else
        self->unsent_requests++;
}

//  --------------------------------------------------------------------------
//  Register a request and send it. Takes req (heap). Returns its id, or 0
//  if out of memory.

uint64_t
zchat_client_request (zchat_client_t *self, zchat_client_request_t *req, int64_t now)
{
    s_quiet_check (self, now);
    uint64_t id = s_next_id (self);
    if (!req->user_id)
        req->user_id = id;
    if (zchat_idmap_insert (self->requests, id, req)) {
        free (req);
        s_set_error (self, "out of memory");
        return 0;
    }
    s_request_send (self, id, req, now);
    return id;
}

zchat_client_request_t *
zchat_client_request_new (zchat_client_req_kind_t kind, bool user, const char *room)
{
    zchat_client_request_t *req = (zchat_client_request_t *)
        calloc (1, sizeof (zchat_client_request_t));
    if (req) {
        req->kind = kind;
        req->user = user;
        if (room)
            zchat_client_copy (req->room, sizeof (req->room), room);
    }
    return req;
}

//  --------------------------------------------------------------------------
//  Forget a request; returns it (the caller frees it) or NULL.

zchat_client_request_t *
zchat_client_request_take (zchat_client_t *self, uint64_t id)
{
    zchat_client_request_t *req = (zchat_client_request_t *)
        zchat_idmap_delete (self->requests, id);
    if (req && !req->sent && self->unsent_requests > 0)
        self->unsent_requests--;
    return req;
}

//  --------------------------------------------------------------------------
//  Retry requests that could not go out. Only when some are waiting:
//  walking the table is rare.

static void
s_request_flush (zchat_client_t *self, int64_t now)
{
    if (self->unsent_requests == 0 || self->state != S_READY)
        return;
    self->unsent_requests = 0;
    size_t cursor = 0;
    uint64_t id;
    zchat_client_request_t *req;
    while ((req = (zchat_client_request_t *) zchat_idmap_next (self->requests, &cursor, &id)))
        if (!req->sent)
            s_request_send (self, id, req, now);
}

//  --------------------------------------------------------------------------
//  Encode a pending send into self->buffer; returns the body size.

static size_t
s_encode_send (zchat_client_t *self, zchat_outbox_entry_t *send)
{
    if (send->type == ZCHAT_SAY)
        return zchat_encode_say (&self->buf, send->id, send->target, send->kind,
                                 send->text, send->text_size);
    else
        return zchat_encode_dm (&self->buf, send->id, send->target, send->kind,
                                send->text, send->text_size);
}

//  --------------------------------------------------------------------------
//  Send the SAYs waiting at the head of the unsent queue (from first on)
//  as one SAYS, if the broker speaks version 2 and two or more wait.
//  Returns how many went out, 0 if this is not a case for SAYS (send
//  first alone), or -1 if the DEALER did not take it (nothing is marked).

static int
s_send_says (zchat_client_t *self, zchat_outbox_entry_t *first, size_t room, int64_t now)
{
    if (self->version < 2 || first->type != ZCHAT_SAY || room < 2
    ||  !first->queue.next || first->queue.next->type != ZCHAT_SAY)
        return 0;
    zchat_outbox_entry_t *batch [S_SAYS_ITEMS];
    size_t most = room < S_SAYS_ITEMS? room: S_SAYS_ITEMS;
    size_t count = 0;
    //  The broker cuts off a peer whose message is over the request limit
    //  (PROTOCOL.md 2): a SAYS stays within that. Before version 3 it was
    //  max_text + 4 KiB, which held only 7 texts of 1 KiB.
    size_t limit = zchat_request_limit (self->version, self->max_text);
    zchat_buf_t buf;
    zchat_buf_init (&buf, self->buffer, limit < S_SAYS_BYTES? limit: S_SAYS_BYTES);
    size_t size = zchat_encode_says_begin (&buf);
    //  The unsent queue is in send order: a run of SAYs from its head
    for (zchat_outbox_entry_t *send = first; send && send->type == ZCHAT_SAY
         && count < most; send = send->queue.next) {
        size_t added = zchat_encode_says_add (&buf, send->id, send->target, send->kind,
                                              send->text, send->text_size);
        if (!added)
            break;              //  full: the rest go next time
        size = added;
        batch [count++] = send;
    }
    if (count < 2)
        return 0;
    if (s_send_body (self, size, now))
        return -1;
    for (size_t i = 0; i < count; i++)
        zchat_outbox_sent (self->outbox, batch [i], now);
    return (int) count;
}

//  --------------------------------------------------------------------------
//  How many more sends may go out now: unlimited (SIZE_MAX) but after a
//  SAY or DM refused with 429. A flooder with thousands of sends in flight
//  used to send them all again when the retry time had passed, of which the
//  broker took its fair share (a hundred or so per 100 ms beside people
//  talking) and refused the rest again, one ERROR each, every period: a
//  burst of work for the broker and the sender's own process on cores
//  the others share (bench/README.md, "Fairness and the flooder's
//  window"). Now it sends S_SEND_CAP_RESUME and as many more as are
//  acknowledged, so what is refused again stays about one round's worth.

size_t
zchat_client_send_room (zchat_client_t *self)
{
    if (!self->send_cap)
        return SIZE_MAX;
    size_t in_flight = zchat_outbox_in_flight (self->outbox);
    return in_flight < self->send_cap? self->send_cap - in_flight: 0;
}

//  --------------------------------------------------------------------------
//  Whether send, the next in line, must wait for the DM window: it is a DM
//  that never went out, and S_DM_WINDOW DMs went out since the oldest one
//  still unanswered did. That is a span, not a count: with one ACK lost
//  and later ones answered, the broker's memory of delivered DMs would
//  otherwise forget the unanswered one before its resend comes. A DM that
//  went out before may always go again: it is in the window already, and
//  a resend must not wait behind the DMs it holds back. Everything behind
//  a held DM waits too, SAYs as well: sends leave in the order they were
//  made, as they do after a 429. The oldest DM's ACK makes room, as soon
//  as the broker has delivered it, with no commit to wait for (or its
//  resend's, a heartbeat later, if that ACK was lost).

static bool
s_dm_held (zchat_client_t *self, zchat_outbox_entry_t *send)
{
    return send->type == ZCHAT_DM && !send->went_out
        && zchat_outbox_dm_span (self->outbox) >= S_DM_WINDOW;
}

//  --------------------------------------------------------------------------
//  Send the unsent queue in order, as far as the DEALER takes it and the
//  cap since a 429 and the DM window allow; what went out joins the
//  resend list.

static void
s_send_flush (zchat_client_t *self, int64_t now)
{
    if (self->state != S_READY || now < self->send_pause_until)
        return;
    self->gathered = 0;
    zchat_outbox_entry_t *send;
    size_t room;
    while ((room = zchat_client_send_room (self)) > 0
    &&     (send = zchat_outbox_next_unsent (self->outbox))
    &&     !s_dm_held (self, send)) {
        if (s_send_says (self, send, room, now) > 0)
            continue;
        if (s_send_body (self, s_encode_send (self, send), now))
            break;
        zchat_outbox_sent (self->outbox, send, now);
    }
}

static int
    s_drain_dealer (zchat_client_t *self, int64_t now, int most);

//  --------------------------------------------------------------------------
//  Queue a SAY or DM and send it if it can go out now. Returns its id.

static uint64_t
s_send_new (zchat_client_t *self, uint8_t type, const char *target,
            const char *text, size_t text_size, bool action)
{
    //  The send's timestamps time its resend and timeout, seconds away:
    //  the tick's resolution does, and a flat-out sender saves a clock
    //  read per message
    int64_t now = zchat_client_now_coarse ();
    s_quiet_check (self, now);
    //  Replies first, if none were read lately (a caller busy with each
    //  event, between calls to zchat_client_next): a 429 there puts earlier
    //  sends back in line, and this one must go behind them. The broker's
    //  hold on our stream ends 1 s after its retry time whatever comes
    //  (PROTOCOL.md 6.3), and would take it ahead of them. A caller that
    //  polls us as it should never reads here.
    if (self->state == S_READY && now - self->dealer_read_ms >= S_REPLIES_STALE_MS)
        s_drain_dealer (self, now, S_REPLIES_MAX);
    //  Behind others that wait, it waits too: sends keep their order
    bool first_in_line = zchat_outbox_next_unsent (self->outbox) == NULL;
    uint64_t id = s_next_id (self);
    zchat_outbox_entry_t *send = zchat_outbox_add (
        self->outbox, id, type, action? ZCHAT_KIND_ACTION: ZCHAT_KIND_TEXT,
        target, text, text_size, now);
    if (!send) {
        s_set_error (self, "out of memory");
        return 0;
    }
    //  With many sends unacknowledged already (a busy sender), a SAY waits
    //  for the next pass of the loop, which sends what has gathered by then
    //  as one SAYS: the ACKs of those in flight come back meanwhile and
    //  wake any caller's poll, so nothing waits longer than that. A quiet
    //  sender's SAYs go out at once. A caller that sends a long run between
    //  passes has it go out every S_SAYS_EARLY SAYs, so that the broker
    //  works on the first part while the caller makes the rest: one SAYS
    //  per run made the two take turns.
    bool gather = self->version >= 2 && type == ZCHAT_SAY
               && zchat_outbox_size (self->outbox) > S_SAYS_AFTER;
    if (first_in_line && !gather && self->state == S_READY
    &&  !s_paused (self) && zchat_client_send_room (self) > 0 && !s_dm_held (self, send)
    &&  s_send_body (self, s_encode_send (self, send), now) == 0)
        zchat_outbox_sent (self->outbox, send, now);
    else
    if (gather && ++self->gathered >= S_SAYS_EARLY)
        s_send_flush (self, now);
    self->active_ms = now;
    //  A timeout shorter than the heartbeat comes due before anything else
    zchat_client_schedule (self, now + self->timeout_ms);
    return id;
}

//  --------------------------------------------------------------------------
//  Send HELLO with our nick and token.

static void
s_send_hello (zchat_client_t *self, int64_t now)
{
    self->hello_id = s_next_id (self);
    size_t size = zchat_encode_hello (&self->buf, self->hello_id, ZCHAT_VERSION,
                                      self->nick, self->token);
    self->hello_sent = s_send_body (self, size, now) == 0;
    self->greet_next_ms = now + (self->hello_sent? S_HELLO_ANSWER_MS: S_GREET_RETRY_MS);
}


//  ==========================================================================
//  Rooms: the table by name (each room is a zchat_client_room)

//  --------------------------------------------------------------------------
//  The rooms table's destructor, for zhashx: it takes void **.

static void
s_room_free (void **item)
{
    zchat_client_room_destroy ((zchat_client_room_t **) item);
}

//  --------------------------------------------------------------------------
//  The room of this name, or NULL. Traffic comes in runs of one room, so
//  the last one found is compared first: cheaper than hashing the name.

static zchat_client_room_t *
s_room_lookup (zchat_client_t *self, const char *name)
{
    if (self->last_room && streq (self->last_room->name, name))
        return self->last_room;
    zchat_client_room_t *room = (zchat_client_room_t *) zhashx_lookup (self->rooms, name);
    if (room)
        self->last_room = room;
    return room;
}


//  ==========================================================================
//  Sessions

//  --------------------------------------------------------------------------
//  The session is gone (silence, or the broker does not know us): tell the
//  caller and greet again at once.

static void
s_session_lost (zchat_client_t *self, int64_t now)
{
    if (self->state != S_READY)
        return;
    self->state = S_GREETING;
    self->greet_error_told = false;
    zchat_client_emit (self, zchat_event_new (ZCHAT_EV_DISCONNECTED));
    s_send_hello (self, now);
    zchat_client_schedule (self, self->greet_next_ms);
}

//  --------------------------------------------------------------------------
//  The SUB endpoint: the caller's choice, else for TCP the host we used
//  for the ROUTER with the broker's PUB port, else the broker's endpoint.
//  Returns a fresh string or NULL.

static char *
s_sub_endpoint (zchat_client_t *self, const zchat_msg_t *welcome)
{
    if (self->sub_option)
        return strdup (self->sub_option);
    if (welcome->pub_port && strncmp (self->server, "tcp://", 6) == 0) {
        const char *host = self->server + 6;
        const char *colon = strrchr (host, ':');
        if (colon && colon > host)
            return zsys_sprintf ("tcp://%.*s:%u", (int) (colon - host), host,
                                 (unsigned) welcome->pub_port);
    }
    if (*welcome->endpoint)
        return strdup (welcome->endpoint);
    return NULL;
}

//  --------------------------------------------------------------------------
//  Does a room of ours want the SUB: one joined (or joining) to receive?

static bool
s_sub_wanted (zchat_client_t *self)
{
    zchat_client_room_t *room = (zchat_client_room_t *) zhashx_first (self->rooms);
    for (; room; room = (zchat_client_room_t *) zhashx_next (self->rooms))
        if (!room->send_only)
            return true;
    return false;
}

//  --------------------------------------------------------------------------
//  Connect the SUB to the PUB endpoint last learnt, unless it is connected
//  there already; connected elsewhere (a restarted broker moved its PUB),
//  follow. Returns 0, or -1 with the error set if the SUB cannot connect:
//  it is then connected nowhere, and the next receiving join tries again.

static int
s_sub_connect (zchat_client_t *self)
{
    if (!self->pub_endpoint) {
        s_set_error (self, "the broker told no usable PUB endpoint");
        return -1;
    }
    if (self->sub_endpoint && streq (self->sub_endpoint, self->pub_endpoint))
        return 0;
    if (self->sub_endpoint) {
        zsock_disconnect (self->sub, "%s", self->sub_endpoint);
        zstr_free (&self->sub_endpoint);
    }
    char *endpoint = strdup (self->pub_endpoint);
    if (endpoint)
        s_ipv6_for (self->sub, endpoint);
    if (!endpoint || zsock_connect (self->sub, "%s", endpoint)) {
        s_set_error (self, "cannot connect to the PUB endpoint %s: %s", self->pub_endpoint,
                     endpoint? zmq_strerror (errno): "out of memory");
        free (endpoint);
        return -1;
    }
    self->sub_endpoint = endpoint;
    return 0;
}

//  --------------------------------------------------------------------------
//  Learn where the broker's PUB is from a WELCOME. The SUB connects there
//  only once a room wants it (s_join): a client that only greets, sends or
//  talks in DMs never holds a second connection to the broker. A SUB that
//  is connected follows a PUB that moved, and one that is not connects now
//  if a room to be rejoined receives. Returns 0, or -1 with the error set
//  if the SUB is wanted and cannot connect. A WELCOME that names no usable
//  endpoint changes nothing: what is known stays, and a client that has
//  never known one fails only its receiving joins (s_join), not the
//  greeting, which a sender does not need it for.

static int
s_pub_learn (zchat_client_t *self, const zchat_msg_t *welcome)
{
    char *endpoint = s_sub_endpoint (self, welcome);
    if (!endpoint) {
        if (!self->sub_endpoint && !s_sub_wanted (self))
            return 0;
        s_set_error (self, "the broker told no usable PUB endpoint");
        return -1;
    }
    free (self->pub_endpoint);
    self->pub_endpoint = endpoint;
    if (self->sub_endpoint || s_sub_wanted (self))
        return s_sub_connect (self);
    return 0;
}

//  --------------------------------------------------------------------------
//  A WELCOME: the session is (again) ours. After a re-greeting, rejoin
//  every room, send again what the old session may have lost, and drop
//  what belonged to it.

static void
s_on_welcome (zchat_client_t *self, const zchat_msg_t *msg, int64_t now)
{
    bool renewed = self->welcomed;
    self->version = msg->version;
    zchat_client_copy (self->token, sizeof (self->token), msg->token);
    if (zchat_nick_valid (msg->nick))
        zchat_client_copy (self->nick, sizeof (self->nick), msg->nick);
    self->heartbeat_ms = msg->heartbeat_ms? msg->heartbeat_ms: S_DEFAULT_HEARTBEAT_MS;
    self->session_ms = msg->timeout_ms? msg->timeout_ms: S_DEFAULT_SESSION_MS;
    self->max_text = msg->max_text && msg->max_text <= ZCHAT_MAX_TEXT?
                     msg->max_text: ZCHAT_MAX_TEXT;
    if (s_pub_learn (self, msg) && !renewed) {
        //  connect reports it; later, keep the session: the next WELCOME
        //  or receiving join tries the SUB again
        self->state = S_IDLE;
        return;
    }
    bool was_ready = self->state == S_READY;
    self->state = S_READY;
    self->welcomed = true;
    self->hello_sent = false;
    self->last_recv_ms = now;
    self->active_ms = now;
    if (!renewed)
        return;
    if (!was_ready) {
        zchat_event_t *event = zchat_event_new (ZCHAT_EV_CONNECTED);
        if (event) {
            event->resumed = msg->flag != 0;
            zchat_client_emit (self, event);
        }
    }
    //  The old session's own requests are void; the caller's go again
    size_t count = zchat_idmap_size (self->requests);
    uint64_t *ids = count? (uint64_t *) malloc (count * sizeof (uint64_t)): NULL;
    size_t cursor = 0, found = 0;
    uint64_t id;
    zchat_client_request_t *req;
    while (ids && (req = (zchat_client_request_t *)
                          zchat_idmap_next (self->requests, &cursor, &id)))
        ids [found++] = id;
    for (size_t i = 0; i < found; i++) {
        req = (zchat_client_request_t *) zchat_idmap_lookup (self->requests, ids [i]);
        if (req->user) {
            if (req->sent)
                self->unsent_requests++;
            req->sent = false;
        }
        else {
            req = zchat_client_request_take (self, ids [i]);
            free (req);
        }
    }
    free (ids);
    //  Rooms first, so that the sends that follow find us members
    zchat_client_room_t *room = (zchat_client_room_t *) zhashx_first (self->rooms);
    while (room) {
        zchat_client_room_rejoin (room, now);
        room = (zchat_client_room_t *) zhashx_next (self->rooms);
    }
    s_request_flush (self, now);
    //  Every pending send again, in the order the caller sent them; a
    //  resumed session is still under the broker's refusal, if any, so a
    //  cap since a 429 starts again from the bottom instead of coming off
    zchat_outbox_unsend_all (self->outbox);
    if (msg->flag && self->send_cap)
        self->send_cap = S_SEND_CAP_RESUME;
    else
        self->send_cap = 0;
    s_send_flush (self, now);
}

//  --------------------------------------------------------------------------
//  An ERROR answering HELLO: refused (nick in use, version...).

static void
s_on_hello_refused (zchat_client_t *self, const zchat_msg_t *msg)
{
    if (self->in_connect) {
        self->refused = msg->code;
        s_set_error (self, "%s", *msg->reason? msg->reason: "refused by the broker");
        return;
    }
    //  While re-greeting we keep trying (the nick may come free); the
    //  caller hears about it once
    if (!self->greet_error_told) {
        self->greet_error_told = true;
        zchat_client_emit_error (self, 0, msg->code, msg->retry_ms, NULL, self->nick,
                                 msg->reason);
    }
}


//  ==========================================================================
//  Inbound: DEALER

//  --------------------------------------------------------------------------
//  Build a room MESSAGE event from a MESSAGE or a PAGE item; of type
//  ZCHAT_CLIENT_EV_DROPPED if the sender's nick is not a valid nick.

zchat_event_t *
zchat_client_message_event (zchat_client_t *self, const char *room, uint64_t seq, uint64_t ts,
                            const char *nick, uint8_t kind, const char *text, size_t text_size)
{
    //  Runs of messages come from one sender: remember the last nick that
    //  passed the rules instead of checking it character by character
    bool valid = *nick && streq (nick, self->nick_ok);
    if (!valid && zchat_nick_valid (nick)) {
        zchat_client_copy (self->nick_ok, sizeof (self->nick_ok), nick);
        valid = true;
    }
    zchat_event_t *event = zchat_event_new_text (valid? ZCHAT_EV_MESSAGE: ZCHAT_CLIENT_EV_DROPPED,
                                             text, text_size);
    if (!event)
        return NULL;
    zchat_client_copy (event->room, sizeof (event->room), room);
    zchat_client_copy (event->nick, sizeof (event->nick), nick);
    event->seq = seq;
    event->ts = ts;
    event->action = kind == ZCHAT_KIND_ACTION;
    return event;
}

//  --------------------------------------------------------------------------
//  A PAGE answering one of our fetches: to its room, unless it was left.

static void
s_on_fetch_page (zchat_client_t *self, uint64_t id, const zchat_msg_t *msg, int64_t now)
{
    zchat_client_request_t *req = zchat_client_request_take (self, id);
    zchat_client_room_t *room = req? (zchat_client_room_t *)
                                     zhashx_lookup (self->rooms, req->room): NULL;
    free (req);
    if (room)
        zchat_client_room_page (room, id, msg, now);
}

//  --------------------------------------------------------------------------
//  A PAGE answering the caller's history request: straight to the caller,
//  then the next page if the range has more, else the HISTORY event.

static void
s_on_history_page (zchat_client_t *self, uint64_t id, const zchat_msg_t *msg, int64_t now)
{
    zchat_client_request_t *req = zchat_client_request_take (self, id);
    assert (req);
    if (req->from_seq > 0 && msg->first_seq != 0 && msg->first_seq > req->from_seq) {
        zchat_event_t *event = zchat_event_new (ZCHAT_EV_GAP);
        if (event) {
            event->id = req->user_id;
            zchat_client_copy (event->room, sizeof (event->room), req->room);
            event->from_seq = req->from_seq;
            event->to_seq = msg->first_seq - 1;
            if (req->to_seq && event->to_seq > req->to_seq)
                event->to_seq = req->to_seq;
            zchat_client_emit (self, event);
        }
    }
    size_t cursor = 0, count = 0;
    zchat_item_t item;
    while (zchat_msg_next_item (msg, &cursor, &item)) {
        zchat_event_t *event = zchat_client_message_event (self, req->room, item.seq, item.ts,
                                                           item.nick, item.kind, item.text,
                                                           item.text_size);
        if (event && event->type == ZCHAT_CLIENT_EV_DROPPED)
            zchat_event_destroy (&event);
        if (event) {
            event->id = req->user_id;
            event->history = true;
            zchat_client_emit (self, event);
        }
        req->last_seq = item.seq;
        count++;
    }
    bool capped = req->remaining > 0;
    if (capped)
        req->remaining = count >= req->remaining? 0: req->remaining - (uint32_t) count;
    //  A range (from_seq > 0) continues while the broker has more and the
    //  caller wants more; "the last N" is one page
    if (msg->flag && count > 0 && req->from_seq > 0 && (!capped || req->remaining > 0)
    &&  (req->to_seq == 0 || req->last_seq < req->to_seq)) {
        uint64_t user_id = req->user_id;
        req->from_seq = req->last_seq + 1;
        req->sent = false;
        if (capped && req->limit > req->remaining)
            req->limit = req->remaining;
        if (zchat_client_request (self, req, now) == 0)      //  freed req
            zchat_client_emit_error (self, user_id, ZCHAT_CLIENT_FAILED, 0, NULL, NULL,
                                     "out of memory");
        return;
    }
    zchat_event_t *event = zchat_event_new (ZCHAT_EV_HISTORY);
    if (event) {
        event->id = req->user_id;
        zchat_client_copy (event->room, sizeof (event->room), req->room);
        event->seq = req->last_seq;
        zchat_client_emit (self, event);
    }
    free (req);
}

//  --------------------------------------------------------------------------
//  JOINED: to the room it answers, unless it was left meanwhile.

static void
s_on_joined (zchat_client_t *self, uint64_t id, const zchat_msg_t *msg, int64_t now)
{
    zchat_client_request_t *req = zchat_client_request_take (self, id);
    zchat_client_room_t *room = (zchat_client_room_t *)
        zhashx_lookup (self->rooms, req? req->room: msg->room);
    uint64_t user_id = req? req->user_id: 0;
    free (req);
    if (room)
        zchat_client_room_joined (room, user_id, msg, now);
}

//  --------------------------------------------------------------------------
//  ERROR: session loss, a refused greeting, a failed send, or a failed
//  request.

static void
s_on_error (zchat_client_t *self, const zchat_msg_t *msg, int64_t now)
{
    if (msg->code == ZCHAT_ERR_SESSION || msg->code == ZCHAT_ERR_NOT_GREETED) {
        //  Anything else in flight is answered again on the new session
        s_session_lost (self, now);
        return;
    }
    zchat_outbox_entry_t *send = zchat_outbox_lookup (self->outbox, msg->id);
    if (self->state == S_GREETING
    &&  (msg->id == self->hello_id
        || (!send && !zchat_idmap_lookup (self->requests, msg->id)
            && msg->code != ZCHAT_ERR_RATE_LIMITED))) {
        //  Answers an earlier HELLO of ours, if not the latest. A HELLO is
        //  never refused with 429: that is the late answer to a send given
        //  up already, which the broker held (dropped below, as when ready)
        s_on_hello_refused (self, msg);
        return;
    }
    if (send && msg->code == ZCHAT_ERR_RATE_LIMITED) {
        //  Refused for now (rate limit, fair share): the broker holds the
        //  rest of our stream until retry_ms has passed and we send again
        //  (PROTOCOL.md 6.3), so this SAY or DM and every send after it go
        //  out again, in order, once that has passed. The others' refusals
        //  find them waiting already. The caller hears nothing but a later
        //  ACK (or, past its timeout, a timeout). A send the broker took
        //  after all (a DM after a SAY the fair share refused, which counts
        //  SAYs only) is acknowledged before it goes again, or comes again
        //  as a retry, which the broker answers without storing or
        //  delivering it twice.
        if (!send->unsent) {
            zchat_outbox_unsend_from (self->outbox, send);
            int64_t until = now + (msg->retry_ms? msg->retry_ms: S_RATE_RETRY_MS);
            if (until > self->send_pause_until)
                self->send_pause_until = until;
            zchat_client_schedule (self, self->send_pause_until);
            self->send_cap = S_SEND_CAP_RESUME;
            self->cap_from_id = send->id;
        }
        return;
    }
    zchat_client_room_t *rejoining = send && msg->code == ZCHAT_ERR_NOT_MEMBER
                                     && send->type == ZCHAT_SAY?
        (zchat_client_room_t *) zhashx_lookup (self->rooms, send->target): NULL;
    if (rejoining && rejoining->confirmed && rejoining->state == R_JOINING) {
        //  Sent behind our rejoin of its room on a new session, which the
        //  broker refused for now (its command rate) and the room asks for
        //  again (zchat_client_room_join_refused): the room is ours again
        //  shortly, so this SAY and every send after it go again then, in
        //  order, as after a 429 (those already back in line wait there).
        //  A room refused for good is dropped, and its SAYs fail as usual.
        if (!send->unsent) {
            zchat_outbox_unsend_from (self->outbox, send);
            int64_t until = rejoining->rejoin_ms > now? rejoining->rejoin_ms:
                                                        now + S_RATE_RETRY_MS;
            if (until > self->send_pause_until)
                self->send_pause_until = until;
            zchat_client_schedule (self, self->send_pause_until);
        }
        return;
    }
    if (send) {
        zchat_client_emit_error (self, msg->id, msg->code, msg->retry_ms,
                                 send->type == ZCHAT_SAY? send->target: NULL,
                                 send->type == ZCHAT_DM? send->target: NULL, msg->reason);
        zchat_outbox_remove (self->outbox, send);
        return;
    }
    zchat_client_request_t *req = msg->id? zchat_client_request_take (self, msg->id): NULL;
    if (!req && msg->id && msg->code == ZCHAT_ERR_RATE_LIMITED)
        //  A 429 for a send already answered or given up: the broker held
        //  a copy that was on its way (PROTOCOL.md 6.3). The caller has
        //  had its answer, and a 429 is never reported for a send
        return;
    if (!req) {
        zchat_client_emit_error (self, msg->id, msg->code, msg->retry_ms, NULL, NULL,
                                 msg->reason);
        return;
    }
    zchat_client_room_t *room = *req->room? (zchat_client_room_t *)
                                            zhashx_lookup (self->rooms, req->room): NULL;
    switch (req->kind) {
        case RQ_JOIN:
            if (room && zchat_client_room_join_refused (room, req->user_id, msg, now))
                zhashx_delete (self->rooms, room->name);
            break;
        case RQ_FETCH:
            if (room)
                zchat_client_room_fetch_refused (room, msg->id, msg->retry_ms, now);
            break;
        case RQ_PROBE:
        case RQ_BYE:
            break;
        default:
            zchat_client_emit_error (self, req->user_id, msg->code, msg->retry_ms,
                                     *req->room? req->room: NULL,
                                     req->kind == RQ_NICK? req->arg: NULL, msg->reason);
            break;
    }
    free (req);
}

//  --------------------------------------------------------------------------
//  OK: LEAVE -> LEFT, NICK -> our new nick (a NICK event answering the
//  request, as zchat_client.h says), BYE noted, PROBE ignored.

static void
s_on_ok (zchat_client_t *self, const zchat_msg_t *msg)
{
    if (msg->id && msg->id == self->bye_id) {
        self->bye_answered = true;
        return;
    }
    zchat_client_request_t *req = zchat_client_request_take (self, msg->id);
    if (req && req->kind == RQ_PROBE) {
        free (req);
        return;
    }
    zchat_event_t *event = zchat_event_new (req && req->kind == RQ_LEAVE? ZCHAT_EV_LEFT:
                                                   req && req->kind == RQ_NICK?  ZCHAT_EV_NICK:
                                                                      ZCHAT_EV_OK);
    if (event) {
        event->id = req? req->user_id: msg->id;
        if (req && req->kind == RQ_LEAVE)
            zchat_client_copy (event->room, sizeof (event->room), req->room);
        if (req && req->kind == RQ_NICK) {
            zchat_client_copy (event->nick, sizeof (event->nick), self->nick);
            zchat_client_copy (event->new_nick, sizeof (event->new_nick), req->arg);
            zchat_client_copy (self->nick, sizeof (self->nick), req->arg);
        }
        zchat_client_emit (self, event);
    }
    free (req);
}

//  --------------------------------------------------------------------------
//  A list reply (MEMBERS, ROOMLIST) as an event with items.

static void
s_on_list (zchat_client_t *self, const zchat_msg_t *msg)
{
    zchat_client_request_t *req = zchat_client_request_take (self, msg->id);
    zchat_event_t *event = zchat_event_new (msg->type == ZCHAT_MEMBERS?
                                                   ZCHAT_EV_MEMBERS: ZCHAT_EV_ROOMS);
    if (!event) {
        free (req);
        return;
    }
    event->id = req? req->user_id: msg->id;
    //  Names we did not send ourselves are checked: callers print them
    zchat_client_copy (event->room, sizeof (event->room),
                       req? req->room: zchat_room_valid (msg->room)? msg->room: "");
    free (req);
    if (msg->item_count) {
        event->items = (zchat_list_item_t *) calloc (msg->item_count,
                                                     sizeof (zchat_list_item_t));
        if (!event->items) {
            zchat_event_destroy (&event);
            return;
        }
    }
    size_t cursor = 0;
    zchat_item_t item;
    while (event->item_count < msg->item_count
    &&     zchat_msg_next_item (msg, &cursor, &item)) {
        if (msg->type == ZCHAT_MEMBERS? !zchat_nick_valid (item.nick)
                                      : !zchat_room_valid (item.room))
            continue;           //  a name no broker of ours sends
        zchat_list_item_t *entry = &event->items [event->item_count++];
        zchat_client_copy (entry->room, sizeof (entry->room), item.room);
        zchat_client_copy (entry->nick, sizeof (entry->nick), item.nick);
        zchat_client_copy (entry->topic, sizeof (entry->topic), item.topic);
        entry->members = item.members;
        entry->seq = item.seq;
    }
    zchat_client_emit (self, event);
}

//  --------------------------------------------------------------------------
//  PONG: each room's newest seq, to the room.

static void
s_on_pong (zchat_client_t *self, const zchat_msg_t *msg, int64_t now)
{
    size_t cursor = 0;
    zchat_item_t item;
    while (zchat_msg_next_item (msg, &cursor, &item)) {
        zchat_client_room_t *room = (zchat_client_room_t *)
                                    zhashx_lookup (self->rooms, item.room);
        if (room)
            zchat_client_room_tail (room, item.seq, now);
    }
}

//  --------------------------------------------------------------------------
//  One acknowledgement, from an ACK, an item of ACKS or one of a run of
//  ACKRUNS.

static void
s_on_ack (zchat_client_t *self, uint64_t id, const char *room, uint64_t seq,
          uint64_t ts)
{
    zchat_outbox_entry_t *send = zchat_outbox_lookup (self->outbox, id);
    if (!send)
        return;                 //  a retry's second ACK
    //  The ACKs of SAYs taken before the refusal come after it (the broker
    //  answers a 429 at once, an ACK after its group's commit): they say
    //  nothing of what the broker takes now. Ids count up in send order.
    if (self->send_cap && (int64_t) (id - self->cap_from_id) >= 0
    &&  ++self->send_cap >= S_SEND_CAP_OPEN)
        self->send_cap = 0;
    zchat_event_t *event = zchat_event_new (ZCHAT_EV_ACK);
    if (event) {
        event->id = id;
        //  The room is the one we sent to ("" for a DM); a broker that
        //  names another, unprintable one is not believed (the room we
        //  sent to was checked when it was sent)
        bool ours = send->type == ZCHAT_SAY && streq (room, send->target);
        zchat_client_copy (event->room, sizeof (event->room),
                           ours || !*room || zchat_room_valid (room)? room:
                           send->type == ZCHAT_SAY? send->target: "");
        if (send->type == ZCHAT_DM)
            zchat_client_copy (event->nick, sizeof (event->nick), send->target);
        event->seq = seq;
        event->ts = ts;
        zchat_client_emit (self, event);
    }
    zchat_outbox_remove (self->outbox, send);
}

//  --------------------------------------------------------------------------
//  A run of ACKs, an item of ACKRUNS: count ids from item->id, with seqs
//  from item->seq. Only our sends still out can be acknowledged, so a run
//  costs at most as many steps as we have sends out, whatever its count
//  (a u32 from the network) and however far apart our sends' ids are (a
//  broker may hold one ACK back while we draw ids for everything else): a
//  run no longer than that is walked by its ids, a longer one by our
//  sends, which the outbox keeps in send order, that is in id order.

static void
s_on_ack_run (zchat_client_t *self, const zchat_item_t *item)
{
    uint64_t last = item->id + (item->count - 1);
    if (item->count <= zchat_outbox_size (self->outbox)) {
        for (uint64_t id = item->id; ; id++) {
            s_on_ack (self, id, item->room, item->seq + (id - item->id), item->ts);
            if (id == last)
                break;          //  last may be the largest id of all
        }
        return;
    }
    zchat_outbox_entry_t *send = zchat_outbox_oldest (self->outbox);
    while (send && send->id <= last) {
        //  An ACK frees its send: the next one is taken first
        zchat_outbox_entry_t *next = send->order.next;
        if (send->id >= item->id)
            s_on_ack (self, send->id, item->room, item->seq + (send->id - item->id),
                      item->ts);
        send = next;
    }
}

//  --------------------------------------------------------------------------
//  One body from the DEALER.

void
zchat_client_on_dealer (zchat_client_t *self, const void *data, size_t size, int64_t now)
{
    zchat_msg_t msg;
    if (zchat_msg_decode (&msg, data, size) != ZCHAT_DECODE_OK)
        return;                 //  nothing sensible to do with garbage
    self->last_recv_ms = now;
    //  A PONG is no activity: it answers a ping, and the pings would
    //  otherwise keep themselves going (and a broker's check of our
    //  connection is a PONG of no items, PROTOCOL.md 6.1)
    if (msg.type != ZCHAT_PONG)
        self->active_ms = now;
    if (msg.type == ZCHAT_WELCOME) {
        if (self->state == S_GREETING || self->state == S_READY)
            s_on_welcome (self, &msg, now);
        return;
    }
    switch (msg.type) {
        case ZCHAT_ACK:
            s_on_ack (self, msg.id, msg.room, msg.seq, msg.ts);
            break;
        case ZCHAT_ACKS: {
            //  Version 2: several ACKs in one reply; the decoder has
            //  validated every item
            size_t cursor = 0;
            zchat_item_t item;
            while (zchat_msg_next_item (&msg, &cursor, &item))
                s_on_ack (self, item.id, item.room, item.seq, item.ts);
            break;
        }
        case ZCHAT_ACKRUNS: {
            //  Version 4: runs of ACKs, ids and seqs counting up together
            //  (the decoder has checked that neither wraps)
            size_t cursor = 0;
            zchat_item_t item;
            while (zchat_msg_next_item (&msg, &cursor, &item))
                s_on_ack_run (self, &item);
            break;
        }
        case ZCHAT_DELIVER: {
            if (!zchat_nick_valid (msg.nick))
                break;          //  no sender we could name safely
            zchat_event_t *event = zchat_event_new_text (ZCHAT_EV_DM, msg.text, msg.text_size);
            if (!event)
                break;
            zchat_client_copy (event->nick, sizeof (event->nick), msg.nick);
            event->ts = msg.ts;
            event->action = msg.kind == ZCHAT_KIND_ACTION;
            zchat_client_emit (self, event);
            break;
        }
        case ZCHAT_PONG:
            s_on_pong (self, &msg, now);
            break;
        case ZCHAT_JOINED:
            s_on_joined (self, msg.id, &msg, now);
            break;
        case ZCHAT_OK:
            s_on_ok (self, &msg);
            break;
        case ZCHAT_ERROR:
            s_on_error (self, &msg, now);
            break;
        case ZCHAT_MEMBERS:
        case ZCHAT_ROOMLIST:
            s_on_list (self, &msg);
            break;
        case ZCHAT_TOPICIS: {
            //  An answer to our request always comes (a caller waits for
            //  it), naming the room we asked about; a setter whose nick
            //  breaks the rules is left out, as for a topic never set
            zchat_client_request_t *req = zchat_client_request_take (self, msg.id);
            const char *room = req? req->room: msg.room;
            zchat_event_t *event = zchat_room_valid (room)?
                                   zchat_event_new (ZCHAT_EV_TOPIC): NULL;
            if (event) {
                event->id = req? req->user_id: msg.id;
                zchat_client_copy (event->room, sizeof (event->room), room);
                zchat_client_copy (event->topic, sizeof (event->topic), msg.topic);
                if (zchat_nick_valid (msg.nick))
                    zchat_client_copy (event->nick, sizeof (event->nick), msg.nick);
                event->ts = msg.ts;
                zchat_client_emit (self, event);
            }
            free (req);
            break;
        }
        case ZCHAT_PAGE: {
            zchat_client_request_t *req = (zchat_client_request_t *)
                                          zchat_idmap_lookup (self->requests, msg.id);
            if (req && req->kind == RQ_HISTORY)
                s_on_history_page (self, msg.id, &msg, now);
            else
            if (req && req->kind == RQ_FETCH)
                s_on_fetch_page (self, msg.id, &msg, now);
            break;
        }
        default:
            break;              //  not for a client
    }
}


//  ==========================================================================
//  Inbound: SUB

//  --------------------------------------------------------------------------
//  One body from the SUB, which came under topic (its topic frame: only a
//  PROBE needs it, to tell its probing episode's tag).

void
zchat_client_on_sub (zchat_client_t *self, const void *topic, size_t topic_size,
          const void *data, size_t size, int64_t now)
{
    zchat_msg_t msg;
    if (zchat_msg_decode (&msg, data, size) != ZCHAT_DECODE_OK)
        return;
    zchat_client_room_t *room = s_room_lookup (self, msg.room);
    if (!room || room->send_only)
        return;                 //  a room we left, or one we left and
                                //  joined again to send only
    if (msg.type == ZCHAT_MESSAGE) {
        zchat_client_room_message (room, msg.seq, msg.ts, msg.nick, msg.kind,
                                   msg.text, msg.text_size);
        zchat_client_room_check_fetch (room, now);
    }
    else
    if (msg.type == ZCHAT_MESSAGES) {
        //  Version 2: a run of the room's messages, validated by the decoder
        size_t cursor = 0;
        zchat_item_t item;
        while (zchat_msg_next_item (&msg, &cursor, &item))
            zchat_client_room_message (room, item.seq, item.ts, item.nick, item.kind,
                                       item.text, item.text_size);
        zchat_client_room_check_fetch (room, now);
    }
    else
    if (msg.type == ZCHAT_EVENT) {
        //  Every presence event names a nick, a rename two: the room we
        //  know (it is ours), the names not, and callers print them
        if (!zchat_nick_valid (msg.nick)
        ||  (msg.event == ZCHAT_EVENT_NICK && !zchat_nick_valid (msg.topic)))
            return;
        static const zchat_event_type_t types [] = {
            0, ZCHAT_EV_JOIN, ZCHAT_EV_LEAVE, ZCHAT_EV_QUIT, ZCHAT_EV_NICK, ZCHAT_EV_TOPIC
        };
        //  The decoder has checked the range of msg.event
        zchat_event_t *event = zchat_event_new (types [msg.event]);
        if (!event)
            return;
        zchat_client_copy (event->room, sizeof (event->room), msg.room);
        zchat_client_copy (event->nick, sizeof (event->nick), msg.nick);
        event->ts = msg.ts;
        if (msg.event == ZCHAT_EVENT_NICK)
            zchat_client_copy (event->new_nick, sizeof (event->new_nick), msg.topic);
        else
        if (msg.event == ZCHAT_EVENT_TOPIC)
            zchat_client_copy (event->topic, sizeof (event->topic), msg.topic);
        zchat_client_room_presence (room, event);
    }
    else
    if (msg.type == ZCHAT_PROBE)
        zchat_client_room_probe (room, (const uint8_t *) topic, topic_size, msg.nick, now);
}


//  ==========================================================================
//  The loop

//  --------------------------------------------------------------------------
//  Receive one whole message from a socket without waiting into frames
//  [3]; frames past the third overwrite the third. Returns the number of
//  frames (0 if nothing was waiting), or -1 on a socket error.

static int
s_recv (void *handle, zmq_msg_t *frames)
{
    if (zmq_msg_recv (&frames [0], handle, ZMQ_DONTWAIT) == -1)
        return errno == EAGAIN || errno == EINTR? 0: -1;
    //  The rest of a multipart message is always there once its first
    //  frame is: reading it cannot block
    int count = 1;
    zmq_msg_t *last = &frames [0];
    while (zmq_msg_more (last)) {
        zmq_msg_t *frame = &frames [count < 3? count: 2];
        if (zmq_msg_recv (frame, handle, 0) == -1)
            return -1;
        last = frame;
        count++;
    }
    return count;
}

//  --------------------------------------------------------------------------
//  Why a handshake failed, as far as we can tell.

static const char *
s_auth_reason (zchat_client_t *self)
{
    return self->cert?
        "CURVE handshake refused by the broker (unknown key, wrong server key, "
        "a broker without CURVE, or not a zchat broker)":
        "handshake refused: not a zchat broker, or one that requires CURVE (a client "
        "certificate and the broker's public key)";
}

//  --------------------------------------------------------------------------
//  Read at most most messages waiting on the DEALER, without waiting.
//  Returns the number read.

static int
s_drain_dealer (zchat_client_t *self, int64_t now, int most)
{
    self->dealer_read_ms = now;
    int total = 0;
    zmq_msg_t frames [3];
    for (int i = 0; i < 3; i++)
        zmq_msg_init (&frames [i]);
    //  [""] [body]
    for (; total < most; total++) {
        int count = s_recv (self->dealer_h, frames);
        if (count <= 0)
            break;
        if (count == 2 && zmq_msg_size (&frames [0]) == 0)
            zchat_client_on_dealer (self, zmq_msg_data (&frames [1]), zmq_msg_size (&frames [1]), now);
    }
    for (int i = 0; i < 3; i++)
        zmq_msg_close (&frames [i]);
    return total;
}

//  --------------------------------------------------------------------------
//  Drain the DEALER, the SUB and the monitor, each at most a batch, without
//  waiting. Returns the number of messages read.

int
zchat_client_drain (zchat_client_t *self, int64_t now)
{
    int total = s_drain_dealer (self, now, S_BATCH);
    zmq_msg_t frames [3];
    for (int i = 0; i < 3; i++)
        zmq_msg_init (&frames [i]);
    //  SUB: [topic] [body]. A MESSAGES frame holds up to hundreds of
    //  messages, so the pass also stops once S_BATCH events wait for the
    //  caller: events are recycled from a small pool while the queue stays
    //  short, where a pass of S_BATCH whole frames queued a hundred
    //  thousand of them, fresh heap pages each time (page faults were a
    //  third of a subscriber's time)
    if (self->sub_endpoint) {
        int n = 0;
        for (; n < S_BATCH && self->queue.count < S_BATCH; n++) {
            int count = s_recv (self->sub_h, frames);
            if (count <= 0)
                break;
            total++;
            if (count == 2)
                zchat_client_on_sub (self, zmq_msg_data (&frames [0]), zmq_msg_size (&frames [0]),
                          zmq_msg_data (&frames [1]), zmq_msg_size (&frames [1]), now);
        }
        if (n > 0)
            self->active_ms = now;
    }
    //  Monitor: [event u16, value u32] [endpoint]
    if (self->monitor_h)
        while (true) {
            int count = s_recv (self->monitor_h, frames);
            if (count <= 0)
                break;
            total++;
            uint16_t event = 0;
            if (zmq_msg_size (&frames [0]) >= 2)
                memcpy (&event, zmq_msg_data (&frames [0]), 2);
            //  A broker that cannot decrypt us (wrong server key) just
            //  closes: that is "no detail". Without CURVE, a CURVE broker
            //  is a mechanism mismatch, "protocol" -- unless the broker
            //  notices the mismatch first and closes, which is again "no
            //  detail" (a race, measured here in about half the attempts).
            //  A plaintext broker never closes a plaintext handshake, so
            //  a second such close in a row is no accident.
            if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH
            ||  event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL)
                self->auth_failed = true;
            else
            if (event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL
            &&  (self->cert || ++self->handshake_drops >= 2))
                self->auth_failed = true;
        }
    for (int i = 0; i < 3; i++)
        zmq_msg_close (&frames [i]);

    if (self->auth_failed && !self->in_connect && !self->auth_told) {
        self->auth_told = true;
        zchat_client_emit_error (self, 0, ZCHAT_CLIENT_AUTH, 0, NULL, NULL, s_auth_reason (self));
    }
    return total;
}

//  --------------------------------------------------------------------------
//  Whether a PING is worth sending now. Before version 6 always: the
//  broker ends a session that is silent for its timeout. From version 6
//  the broker keeps the session as long as our connection, and a PONG is
//  worth having only while something waits for an answer (a send, a
//  request, a join or probe, a fetch; were the broker stuck, the silence
//  rule needs pings to go unanswered), and for
//  ZCHAT_CLIENT_ACTIVE_HEARTBEATS after traffic: a PONG tells each room's
//  newest seq, which is how a tail lost at the end of a burst is noticed.

static bool
s_ping_wanted (zchat_client_t *self, int64_t now)
{
    if (self->version < ZCHAT_VERSION_BOUND)
        return true;
    if (zchat_outbox_size (self->outbox) || zchat_idmap_size (self->requests)
    ||  self->unsent_requests
    ||  now - self->active_ms
        < (int64_t) ZCHAT_CLIENT_ACTIVE_HEARTBEATS * self->heartbeat_ms)
        return true;
    zchat_client_room_t *room = (zchat_client_room_t *) zhashx_first (self->rooms);
    for (; room; room = (zchat_client_room_t *) zhashx_next (self->rooms))
        if (room->state != R_LIVE || room->fetch_id || room->tail_due_ms
        ||  room->rejoin_ms
        ||  (!room->send_only && zchat_sequencer_buffered (room->sequencer)))
            return true;
    return false;
}

//  When the broker was last heard from, as far as the silence rule goes:
//  a version 6 session found idle and connected counts as heard then.
static int64_t
s_heard_ms (zchat_client_t *self)
{
    return self->quiet_ms > self->last_recv_ms? self->quiet_ms: self->last_recv_ms;
}

//  Version 6, idle: the broker keeps the session while our connection
//  is up, so silence from it says nothing, and its clock starts again.
//  The connection is up while the DEALER takes messages: it is
//  IMMEDIATE, with no pipe to a broker it is not connected to (asking
//  also lets it take a new connection in, whose probe tells us at
//  once if the broker forgot us), and its ZMTP heartbeats close a
//  connection to a broker that stopped answering within seconds. With
//  something waiting for an answer, the rule holds as before. Checked at
//  housekeeping, and when something of ours starts to wait for an
//  answer: a caller back after a long absence must not take its own
//  absence for the broker's silence.
static void
s_quiet_check (zchat_client_t *self, int64_t now)
{
    if (self->state == S_READY && self->version >= ZCHAT_VERSION_BOUND
    &&  !s_ping_wanted (self, now) && (zsock_events (self->dealer) & ZMQ_POLLOUT))
        self->quiet_ms = now;
}

//  --------------------------------------------------------------------------
//  Housekeeping: whatever is due at now, then when to come back (due_ms).

void
zchat_client_housekeep (zchat_client_t *self, int64_t now)
{
    self->due_ms = now + S_MAX_IDLE_MS;
    if (self->state == S_IDLE)
        return;

    s_quiet_check (self, now);
    //  Silence for the session timeout: the broker is gone or forgot us.
    //  Read what may be waiting first: a caller that was busy elsewhere
    //  must not mistake its own absence for the broker's.
    if (self->state == S_READY && now - s_heard_ms (self) >= self->session_ms) {
        zchat_client_drain (self, now);
        if (now - s_heard_ms (self) >= self->session_ms)
            s_session_lost (self, now);
    }
    if (self->state == S_GREETING) {
        if (!self->hello_sent || now >= self->greet_next_ms)
            s_send_hello (self, now);
        zchat_client_schedule (self, self->greet_next_ms);
    }

    //  Sends past their time: give up on them, oldest first
    zchat_outbox_entry_t *send;
    while ((send = zchat_outbox_oldest (self->outbox))
    &&     now - send->first_ms >= self->timeout_ms) {
        char reason [ZCHAT_MAX_REASON + 1];
        snprintf (reason, sizeof (reason), "no acknowledgement within %.1f s",
                  self->timeout_ms / 1000.0);
        zchat_client_emit_error (self, send->id, ZCHAT_CLIENT_TIMEOUT, 0,
                                 send->type == ZCHAT_SAY? send->target: NULL,
                                 send->type == ZCHAT_DM? send->target: NULL, reason);
        zchat_outbox_remove (self->outbox, send);
    }
    if ((send = zchat_outbox_oldest (self->outbox)))
        zchat_client_schedule (self, send->first_ms + self->timeout_ms);
    if (self->state != S_READY)
        return;

    //  Replies first, if anything is to go again, by heartbeat or as a
    //  resend the DEALER did not take before: a 429 not read yet must put
    //  what it refused, and every send after it, back in line before any
    //  of them is resent, or the resend of a later one would end the
    //  broker's hold and be taken ahead of the refused one (PROTOCOL.md
    //  6.3). Every reply waiting, not one pass's worth: the 429 may wait
    //  behind more than that.
    zchat_outbox_entry_t *next = zchat_outbox_next_unsent (self->outbox);
    if (((send = zchat_outbox_stalest (self->outbox))
         && now - send->last_ms >= self->heartbeat_ms)
    ||  (next && next->went_out && now >= self->send_pause_until)) {
        s_drain_dealer (self, now, S_REPLIES_MAX);
        if (self->state != S_READY) {
            //  A reply changed that: the rest waits for the next round,
            //  which comes at once
            zchat_client_schedule (self, now);
            return;
        }
    }
    //  What could not go out before, then resends of the oldest sends
    s_request_flush (self, now);
    s_send_flush (self, now);
    //  Sends held back after a 429 go when the pause ends. This round
    //  began by forgetting every due time, and nothing below names that
    //  one: a round during the pause (a probe, a resend, a caller's
    //  POLLOUT) would leave them for the next idle round, up to a second
    //  later.
    if (now < self->send_pause_until && zchat_outbox_next_unsent (self->outbox))
        zchat_client_schedule (self, self->send_pause_until);
    while ((send = zchat_outbox_stalest (self->outbox))
    &&     now - send->last_ms >= self->heartbeat_ms) {
        if (s_send_body (self, s_encode_send (self, send), now) == 0)
            zchat_outbox_sent (self->outbox, send, now);
        else {
            zchat_outbox_unsend (self->outbox, send);
            break;
        }
    }
    if ((send = zchat_outbox_stalest (self->outbox)))
        zchat_client_schedule (self, send->last_ms + self->heartbeat_ms);

    zchat_client_room_t *room = (zchat_client_room_t *) zhashx_first (self->rooms);
    while (room) {
        zchat_client_room_tick (room, now);
        room = (zchat_client_room_t *) zhashx_next (self->rooms);
    }

    //  A ping the DEALER cannot take (no connection: it is IMMEDIATE) is
    //  tried again at the next round, a second on at most: its due time
    //  is past, and coming back for it at once spun the loop until the
    //  silence rule ended the session
    if (s_ping_wanted (self, now)) {
        if (now - self->last_send_ms >= self->heartbeat_ms) {
            size_t size = zchat_encode_ping (&self->buf, s_next_id (self));
            s_send_body (self, size, now);
        }
        if (self->last_send_ms + self->heartbeat_ms > now)
            zchat_client_schedule (self, self->last_send_ms + self->heartbeat_ms);
    }
    zchat_client_schedule (self, s_heard_ms (self) + self->session_ms);
}

//  --------------------------------------------------------------------------
//  Whether we wait for the DEALER to take something.

bool
zchat_client_want_write (zchat_client_t *self)
{
    if (self->state == S_GREETING)
        return !self->hello_sent;
    if (self->state == S_READY) {
        //  Not while the next send waits for a 429's pause, the cap or the
        //  DM window: an ACK or the pause's end brings us back, and a
        //  writable DEALER would only spin the caller's loop meanwhile
        zchat_outbox_entry_t *send = zchat_outbox_next_unsent (self->outbox);
        return (send && !s_paused (self) && zchat_client_send_room (self) > 0
                && !s_dm_held (self, send))
            || self->unsent_requests;
    }
    return false;
}

//  --------------------------------------------------------------------------
//  One round: housekeeping if due, read what is waiting, and if nothing
//  was and no event came, wait up to wait_ms (-1 forever) for input or the
//  next due time. Events queued already do not count: zchat_client_wait
//  leaves those that are not its answer there, and went round without
//  waiting, at full CPU, for as long as it waited.
//  Returns -1 if interrupted, else 0.

static int
s_pump (zchat_client_t *self, int wait_ms)
{
    int64_t now = zchat_client_now ();
    size_t queued = self->queue.count;
    //  A caller that never waits (next with 0) never polls: look whether
    //  the DEALER takes what waits for it, e.g. a HELLO once the broker
    //  is back
    if (zchat_client_want_write (self) && (zsock_events (self->dealer) & ZMQ_POLLOUT))
        self->due_ms = 0;
    if (now >= self->due_ms)
        zchat_client_housekeep (self, now);
    if (zchat_client_drain (self, now) > 0 || self->queue.count > queued || wait_ms == 0)
        return zsys_interrupted? -1: 0;

    int64_t until_due = self->due_ms - now;
    if (until_due < 0)
        until_due = 0;
    long timeout = wait_ms < 0 || until_due < wait_ms? (long) until_due: wait_ms;
    //  The SUB is waited on only when the drain reads it: not before it
    //  is connected, nor with a batch of events queued (see there), when
    //  it would be ready at once, for ever
    zmq_pollitem_t items [3] = {
        { self->dealer_h, 0, (short) (ZMQ_POLLIN | (zchat_client_want_write (self)? ZMQ_POLLOUT: 0)), 0 }
    };
    int count = 1;
    if (self->sub_endpoint && self->queue.count < S_BATCH)
        items [count++] = (zmq_pollitem_t) { self->sub_h, 0, ZMQ_POLLIN, 0 };
    if (self->monitor_h)
        items [count++] = (zmq_pollitem_t) { self->monitor_h, 0, ZMQ_POLLIN, 0 };
    int rc = zmq_poll (items, count, timeout);
    if (rc == -1 && errno != EINTR)
        return -1;
    if (zsys_interrupted)
        return -1;
    if (rc > 0 && (items [0].revents & ZMQ_POLLOUT))
        self->due_ms = 0;       //  what waited for the DEALER can go now
    return 0;
}

//  --------------------------------------------------------------------------
//  Whether the events waiting for the caller hold too much for a call that
//  waits for something else to read on (S_QUEUE_MAX_BYTES); if so, says so
//  in the error.

static bool
s_queue_full (zchat_client_t *self)
{
    if (self->queue.bytes <= self->queue_max_bytes)
        return false;
    s_set_error (self, "%zu events (%zu KiB) wait to be read: read them with "
                 "zchat_client_next", self->queue.count, self->queue.bytes / 1024);
    return true;
}

//  --------------------------------------------------------------------------
//  Is event the answer to request id?

static bool
s_is_answer (const zchat_event_t *event, uint64_t id)
{
    if (event->id != id)
        return false;
    switch (event->type) {
        case ZCHAT_EV_ACK:
        case ZCHAT_EV_OK:
        case ZCHAT_EV_ERROR:
        case ZCHAT_EV_JOINED:
        case ZCHAT_EV_LEFT:
        case ZCHAT_EV_MEMBERS:
        case ZCHAT_EV_ROOMS:
        case ZCHAT_EV_TOPIC:
        case ZCHAT_EV_HISTORY:
        case ZCHAT_EV_NICK:             //  with an id: our own rename
            return true;
        default:
            return false;
    }
}


//  ==========================================================================
//  Public API

//  --------------------------------------------------------------------------
//  Create a client; nothing is sent yet.

zchat_client_t *
zchat_client_new (const char *server, const char *nick)
{
    if (!server || !nick || !zchat_nick_valid (nick))
        return NULL;
    zchat_client_t *self = (zchat_client_t *) calloc (1, sizeof (zchat_client_t));
    if (!self)
        return NULL;
    self->server = strdup (server);
    zchat_client_copy (self->nick, sizeof (self->nick), nick);
    self->timeout_ms = S_DEFAULT_TIMEOUT_MS;
    self->heartbeat_ms = S_DEFAULT_HEARTBEAT_MS;
    self->session_ms = S_DEFAULT_SESSION_MS;
    self->max_text = ZCHAT_MAX_TEXT;
    self->queue_max_bytes = S_QUEUE_MAX_BYTES;
    //  Random, so that a new process's ids are not an old one's, and below
    //  2^63, so that they never wrap within a session: the broker takes an
    //  id at or below the largest it saw as a message sent again
    //  (PROTOCOL.md 6.3, the hold)
    self->next_id = (zchat_client_random64 () >> 1) | 1;
    self->rooms = zhashx_new ();
    self->requests = zchat_idmap_new ();
    self->outbox = zchat_outbox_new ();
    self->buffer = (uint8_t *) malloc (S_BUFFER_SIZE);
    self->sendpool = zchat_msgpool_new (S_BUFFER_SIZE, S_POOL_KEEP);
    self->dealer = zsock_new (ZMQ_DEALER);
    self->sub = zsock_new (ZMQ_SUB);
    if (!self->server || !self->rooms || !self->requests || !self->outbox
    ||  !self->buffer || !self->sendpool || !self->dealer || !self->sub) {
        zchat_client_destroy (&self);
        return NULL;
    }
    zhashx_set_destructor (self->rooms, s_room_free);
    zchat_buf_init (&self->buf, self->buffer, S_BUFFER_SIZE);
    self->dealer_h = zsock_resolve (self->dealer);
    self->sub_h = zsock_resolve (self->sub);

    //  Nothing queues towards a broker that is not connected (IMMEDIATE);
    //  ZMTP heartbeats notice a dead peer that TCP would not
    zsock_set_linger (self->dealer, S_LINGER_MS);
    zsock_set_immediate (self->dealer, 1);
    zsock_set_sndhwm (self->dealer, S_SNDHWM);
    zsock_set_rcvhwm (self->dealer, S_DEALER_RCVHWM);
    zsock_set_heartbeat_ivl (self->dealer, ZCHAT_CLIENT_ZMTP_HEARTBEAT_IVL);
    zsock_set_heartbeat_timeout (self->dealer, ZCHAT_CLIENT_ZMTP_HEARTBEAT_TIMEOUT);
    //  Each new connection begins with an empty message, which a broker
    //  of version 6 answers with 440 if it has no session for it: after a
    //  broker restart, or a connection replaced, we greet again at once,
    //  where an idle client would otherwise never hear. Older brokers
    //  drop it. (A socket monitor would say as much, at two more sockets
    //  per client for as long as it lives.)
    zsock_set_probe_router (self->dealer, 1);
    zsock_set_linger (self->sub, 0);
    zsock_set_rcvhwm (self->sub, S_SUB_RCVHWM);
    //  Before any connect: the limit applies to connections made after
    int64_t dealer_max = S_DEALER_MAXMSGSIZE;
    int64_t sub_max = S_SUB_MAXMSGSIZE;
    if (zmq_setsockopt (self->dealer_h, ZMQ_MAXMSGSIZE, &dealer_max, sizeof (dealer_max))
    ||  zmq_setsockopt (self->sub_h, ZMQ_MAXMSGSIZE, &sub_max, sizeof (sub_max))) {
        zchat_client_destroy (&self);
        return NULL;
    }
    self->due_ms = INT64_MAX;
    snprintf (self->error, sizeof (self->error), "no error");
    return self;
}

//  --------------------------------------------------------------------------
//  Say goodbye if in session, then free everything.

void
zchat_client_destroy (zchat_client_t **self_p)
{
    assert (self_p);
    zchat_client_t *self = *self_p;
    if (!self)
        return;
    if (self->state == S_READY && self->dealer_h) {
        //  BYE frees the nick at once instead of after the session
        //  timeout; wait a little for the broker to confirm it
        int64_t now = zchat_client_now ();
        self->bye_id = s_next_id (self);
        if (s_send_body (self, zchat_encode_bye (&self->buf, self->bye_id), now) == 0) {
            int64_t deadline = now + S_BYE_WAIT_MS;
            while (!self->bye_answered && !zsys_interrupted && (now = zchat_client_now ()) < deadline) {
                zmq_pollitem_t item = { self->dealer_h, 0, ZMQ_POLLIN, 0 };
                if (zmq_poll (&item, 1, (long) (deadline - now)) <= 0)
                    break;
                zmq_msg_t frames [3];
                for (int i = 0; i < 3; i++)
                    zmq_msg_init (&frames [i]);
                //  A batch per poll at most: a broker that keeps sending
                //  must not keep us here past the deadline
                int count = 0;
                for (int read = 0; read < S_BATCH
                                && (count = s_recv (self->dealer_h, frames)) > 0; read++) {
                    zchat_msg_t msg;
                    if (count == 2
                    &&  zchat_msg_decode (&msg, zmq_msg_data (&frames [1]),
                                          zmq_msg_size (&frames [1])) == ZCHAT_DECODE_OK
                    &&  msg.id == self->bye_id
                    &&  (msg.type == ZCHAT_OK || msg.type == ZCHAT_ERROR))
                        self->bye_answered = true;
                }
                for (int i = 0; i < 3; i++)
                    zmq_msg_close (&frames [i]);
                if (count < 0)
                    break;
            }
        }
    }
    s_monitor_stop (self);
    //  Rooms unsubscribe from the SUB as they go: before the SUB
    zhashx_destroy (&self->rooms);
    zsock_destroy (&self->sub);
    zsock_destroy (&self->dealer);
    if (self->requests) {
        size_t cursor = 0;
        zchat_client_request_t *req;
        while ((req = (zchat_client_request_t *)
                      zchat_idmap_next (self->requests, &cursor, NULL)))
            free (req);
        zchat_idmap_destroy (&self->requests);
    }
    zchat_outbox_destroy (&self->outbox);
    zchat_client_queue_purge (&self->queue);
    zcert_destroy (&self->cert);
    zchat_msgpool_destroy (&self->sendpool);
    free (self->buffer);
    free (self->server);
    free (self->sub_option);
    free (self->pub_endpoint);
    free (self->sub_endpoint);
    free (self);
    *self_p = NULL;
}

//  --------------------------------------------------------------------------
//  Options

void
zchat_client_set_sub_endpoint (zchat_client_t *self, const char *endpoint)
{
    assert (self);
    free (self->sub_option);
    self->sub_option = endpoint? strdup (endpoint): NULL;
}

void
zchat_client_set_timeout (zchat_client_t *self, int timeout_ms)
{
    assert (self);
    if (timeout_ms > 0)
        self->timeout_ms = timeout_ms;
}

void
zchat_client_set_history (zchat_client_t *self, int n)
{
    assert (self);
    self->history_n = n > 0? n: 0;
}

//  --------------------------------------------------------------------------
//  CURVE: our certificate (with its secret key) and the broker's public
//  key, from a certificate file or as Z85 text.

int
zchat_client_set_curve (zchat_client_t *self, const char *cert_path,
                        const char *server_key)
{
    assert (self);
    if (!cert_path || !server_key) {
        s_set_error (self, "CURVE needs both our certificate and the broker's key");
        return -1;
    }
    //  zcert_load reads PATH_secret when given PATH, or the secret file
    //  itself when given it; either way the secret key must be there
    zcert_t *cert = zsys_file_exists (cert_path)? zcert_load (cert_path): NULL;
    if (!cert) {
        s_set_error (self, "cannot load the certificate %s", cert_path);
        return -1;
    }
    uint8_t zero [32] = { 0 };
    if (memcmp (zcert_secret_key (cert), zero, 32) == 0) {
        s_set_error (self, "%s holds no secret key (give the _secret file)", cert_path);
        zcert_destroy (&cert);
        return -1;
    }
    char key [41] = "";
    if (zsys_file_exists (server_key)) {
        zcert_t *server = zcert_load (server_key);
        if (server)
            zchat_client_copy (key, sizeof (key), zcert_public_txt (server));
        zcert_destroy (&server);
    }
    else
    if (strlen (server_key) == 40) {
        uint8_t decoded [32];
        if (zmq_z85_decode (decoded, server_key))
            zchat_client_copy (key, sizeof (key), server_key);
    }
    if (!*key) {
        s_set_error (self, "the server key %s is neither a certificate file "
                           "nor a 40-character Z85 key", server_key);
        zcert_destroy (&cert);
        return -1;
    }
    zcert_destroy (&self->cert);
    self->cert = cert;
    memcpy (self->server_key, key, sizeof (self->server_key));
    return 0;
}

//  --------------------------------------------------------------------------
//  Watch the DEALER's handshakes: a refused CURVE handshake is otherwise
//  silent, and libzmq does not retry it.

static int
s_monitor_start (zchat_client_t *self)
{
    if (self->monitor)
        return 0;
    //  A name of its own each time: a stopped monitor is unbound from its
    //  endpoint only once libzmq's reaper has closed it, and a client made
    //  right after another was destroyed may sit at the same address
    static unsigned monitors = 0;
    char endpoint [64];
    snprintf (endpoint, sizeof (endpoint), "inproc://zchat-monitor-%u",
              __atomic_add_fetch (&monitors, 1, __ATOMIC_RELAXED));
    if (zmq_socket_monitor (self->dealer_h, endpoint,
                            ZMQ_EVENT_HANDSHAKE_FAILED_AUTH
                          | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL
                          | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL))
        return -1;
    self->monitor = zsock_new (ZMQ_PAIR);
    if (!self->monitor || zsock_connect (self->monitor, "%s", endpoint)) {
        zmq_socket_monitor (self->dealer_h, NULL, 0);
        zsock_destroy (&self->monitor);
        return -1;
    }
    self->monitor_h = zsock_resolve (self->monitor);
    return 0;
}

static void
s_monitor_stop (zchat_client_t *self)
{
    if (self->monitor_h && self->dealer_h)
        zmq_socket_monitor (self->dealer_h, NULL, 0);
    zsock_destroy (&self->monitor);
    self->monitor_h = NULL;
}

//  --------------------------------------------------------------------------
//  Connect and greet.

int
zchat_client_connect (zchat_client_t *self, int timeout_ms)
{
    assert (self);
    if (self->state != S_IDLE) {
        s_set_error (self, "already connected");
        return ZCHAT_CLIENT_FAILED;
    }
    if (self->cert) {
        zcert_apply (self->cert, self->dealer);
        zcert_apply (self->cert, self->sub);
        zsock_set_curve_serverkey (self->dealer, self->server_key);
        zsock_set_curve_serverkey (self->sub, self->server_key);
    }
    //  Watched while connecting even without CURVE, so that a broker
    //  requiring it is reported at once instead of as a timeout
    if (s_monitor_start (self)) {
        s_set_error (self, "cannot monitor the DEALER socket: %s", zmq_strerror (errno));
        return ZCHAT_CLIENT_FAILED;
    }
    s_ipv6_for (self->dealer, self->server);
    if (zsock_connect (self->dealer, "%s", self->server)) {
        s_set_error (self, "cannot connect to %s: %s", self->server, zmq_strerror (errno));
        return ZCHAT_CLIENT_INVALID;
    }
    int64_t now = zchat_client_now ();
    int64_t deadline = now + (timeout_ms > 0? timeout_ms: 0);
    self->state = S_GREETING;
    self->in_connect = true;
    self->refused = 0;
    self->auth_failed = false;
    self->handshake_drops = 0;
    self->auth_told = false;
    self->last_send_ms = now;
    s_send_hello (self, now);
    self->due_ms = self->greet_next_ms;

    int rc = 0;
    while (self->state == S_GREETING) {
        if (self->refused) {
            rc = ZCHAT_CLIENT_REFUSED;
            break;
        }
        if (self->auth_failed) {
            rc = ZCHAT_CLIENT_AUTH;
            s_set_error (self, "%s", s_auth_reason (self));
            break;
        }
        now = zchat_client_now ();
        if (now >= deadline) {
            rc = ZCHAT_CLIENT_TIMEOUT;
            s_set_error (self, "cannot reach broker at %s within %.1f s",
                         self->server, (timeout_ms > 0? timeout_ms: 0) / 1000.0);
            break;
        }
        if (s_queue_full (self)) {
            rc = ZCHAT_CLIENT_FAILED;
            break;
        }
        if (s_pump (self, (int) (deadline - now)) == -1) {
            rc = ZCHAT_CLIENT_INTERRUPTED;
            s_set_error (self, "interrupted");
            break;
        }
    }
    self->in_connect = false;
    if (rc == 0 && self->state != S_READY) {
        //  The WELCOME came, but a receiving join made meanwhile could not
        //  connect the SUB (error set)
        rc = ZCHAT_CLIENT_FAILED;
    }
    if (rc) {
        zsock_disconnect (self->dealer, "%s", self->server);
        self->state = S_IDLE;
        self->due_ms = INT64_MAX;
        return rc;
    }
    //  Without CURVE, nothing to watch for any more: save the sockets
    if (!self->cert)
        s_monitor_stop (self);
    //  Events seen during the greeting stay queued for zchat_client_next
    self->due_ms = now;
    return 0;
}

const char *
zchat_client_error (zchat_client_t *self)
{
    assert (self);
    return self->error;
}

const char *
zchat_client_nick (zchat_client_t *self)
{
    assert (self);
    return self->nick;
}

uint32_t
zchat_client_max_text (zchat_client_t *self)
{
    assert (self);
    return self->welcomed? self->max_text: 0;
}

//  --------------------------------------------------------------------------
//  Common checks of every request: connected at least once.

static bool
s_can_request (zchat_client_t *self)
{
    if (self->state == S_IDLE) {
        s_set_error (self, "not connected");
        return false;
    }
    return true;
}

static bool
s_check_room (zchat_client_t *self, const char *room)
{
    //  A room we are in had its name checked when we joined it (a
    //  send-only sender's room becomes the last one looked up here)
    if (room && s_room_lookup (self, room))
        return true;
    if (!room || !zchat_room_valid (room)) {
        s_set_error (self, "invalid room name '%s' (1-%d of A-Z a-z 0-9 _ . -)",
                     room? room: "", ZCHAT_MAX_ROOM);
        return false;
    }
    return true;
}

//  --------------------------------------------------------------------------
//  A receiving join whose SUB cannot connect (error set): answered as a
//  join the broker refused, with an ERROR event under a request id of its
//  own, so that a caller waiting for the join hears of it.

static uint64_t
s_join_failed (zchat_client_t *self, const char *room_name)
{
    uint64_t id = s_next_id (self);
    zchat_client_emit_error (self, id, ZCHAT_CLIENT_FAILED, 0, room_name, NULL, self->error);
    return id;
}

//  --------------------------------------------------------------------------
//  Join: connect the SUB if it is not yet (the first receiving join, or
//  the first since it failed to follow a PUB that moved), subscribe, then
//  JOIN (PROTOCOL.md §6.4: the PROBEs that follow JOINED wait out the TCP
//  and ZMTP handshake as they wait out the subscription); send-only: JOIN
//  only. A receiving join of a send-only room makes it receiving; a
//  send-only join of a receiving room changes nothing: both answer as a
//  join of a room already joined does.

static uint64_t
s_join (zchat_client_t *self, const char *room_name, bool send_only)
{
    assert (self);
    if (!s_check_room (self, room_name) || !s_can_request (self))
        return 0;
    int64_t now = zchat_client_now ();
    zchat_client_room_t *room = (zchat_client_room_t *) zhashx_lookup (self->rooms, room_name);
    //  Before the first WELCOME there is nowhere to connect yet: the
    //  subscription waits on the SUB, and the WELCOME connects it
    //  (s_pub_learn), as it does for the rooms a new session rejoins.
    //  After one that named no usable endpoint, this join fails
    bool receiving = !send_only && (!room || room->send_only);
    if (receiving && (self->pub_endpoint || self->welcomed) && s_sub_connect (self))
        return s_join_failed (self, room_name);
    if (room && room->send_only && !send_only) {
        uint64_t join_id = room->confirmed? s_next_id (self): room->join_id;
        if (zchat_client_room_upgrade (room, join_id, now)) {
            s_set_error (self, "cannot subscribe to room %s", room_name);
            return 0;
        }
        return join_id;
    }
    if (room) {
        if (!room->confirmed)
            return room->join_id;       //  already on its way
        //  Joined already: ask again, and report the answer under a new id
        zchat_client_request_t *req = zchat_client_request_new (RQ_JOIN, true, room_name);
        if (!req) {
            s_set_error (self, "out of memory");
            return 0;
        }
        req->sent = false;
        return zchat_client_request (self, req, now);
    }
    room = zchat_client_room_new (self, room_name, send_only);
    if (!room) {
        if (send_only)
            s_set_error (self, "out of memory");
        else
            s_set_error (self, "cannot subscribe to room %s", room_name);
        return 0;
    }
    room->join_id = s_next_id (self);
    if (zhashx_insert (self->rooms, room->name, room)) {
        zchat_client_room_destroy (&room);
        s_set_error (self, "out of memory");
        return 0;
    }
    zchat_client_room_join (room, now);
    return room->join_id;
}

uint64_t
zchat_client_join (zchat_client_t *self, const char *room)
{
    return s_join (self, room, false);
}

uint64_t
zchat_client_join_send_only (zchat_client_t *self, const char *room)
{
    return s_join (self, room, true);
}

//  --------------------------------------------------------------------------
//  Leave: stop listening at once, then LEAVE. The SUB stays connected
//  when the last receiving room goes: with no subscription left the
//  broker publishes nothing to it, and a client that followed one room
//  tends to follow another, whose join then finds it ready.

uint64_t
zchat_client_leave (zchat_client_t *self, const char *room)
{
    assert (self);
    if (!s_check_room (self, room) || !s_can_request (self))
        return 0;
    //  A join the caller is still waiting for is answered now: no JOINED
    //  will come for a room we no longer keep
    zchat_client_room_t *joining = s_room_lookup (self, room);
    if (joining && joining->join_id && (!joining->confirmed || joining->upgrade))
        zchat_client_emit_error (self, joining->join_id, ZCHAT_CLIENT_FAILED, 0, room, NULL,
                                 "join cancelled: left before it was confirmed");
    zhashx_delete (self->rooms, room);
    zchat_client_request_t *req = zchat_client_request_new (RQ_LEAVE, true, room);
    if (!req) {
        s_set_error (self, "out of memory");
        return 0;
    }
    return zchat_client_request (self, req, zchat_client_now ());
}

//  --------------------------------------------------------------------------
//  Check a text before it is queued.

static bool
s_check_text (zchat_client_t *self, const char *text, size_t text_size)
{
    if (!text && text_size) {
        s_set_error (self, "no text");
        return false;
    }
    if (text_size > self->max_text) {
        s_set_error (self, "text too long: %zu bytes, the broker takes at most %u",
                     text_size, self->max_text);
        return false;
    }
    if (text_size && !zchat_utf8_valid (text, text_size)) {
        s_set_error (self, "text is not valid UTF-8 (or holds a NUL byte)");
        return false;
    }
    return true;
}

uint64_t
zchat_client_say (zchat_client_t *self, const char *room, const char *text,
                  size_t text_size, bool action)
{
    assert (self);
    if (!s_check_room (self, room) || !s_check_text (self, text, text_size)
    ||  !s_can_request (self))
        return 0;
    return s_send_new (self, ZCHAT_SAY, room, text, text_size, action);
}

uint64_t
zchat_client_dm (zchat_client_t *self, const char *nick, const char *text,
                 size_t text_size, bool action)
{
    assert (self);
    if (!nick || !zchat_nick_valid (nick)) {
        s_set_error (self, "invalid nick '%s'", nick? nick: "");
        return 0;
    }
    if (!s_check_text (self, text, text_size) || !s_can_request (self))
        return 0;
    return s_send_new (self, ZCHAT_DM, nick, text, text_size, action);
}

uint64_t
zchat_client_set_nick (zchat_client_t *self, const char *nick)
{
    assert (self);
    if (!s_can_request (self))
        return 0;
    if (!nick || !zchat_nick_valid (nick)) {
        s_set_error (self, "invalid nick '%s' (1-%d of A-Z a-z 0-9 _ - [ ] { } | ^ `, "
                           "not starting with a digit or -)", nick? nick: "", ZCHAT_MAX_NICK);
        return 0;
    }
    zchat_client_request_t *req = zchat_client_request_new (RQ_NICK, true, NULL);
    if (!req) {
        s_set_error (self, "out of memory");
        return 0;
    }
    zchat_client_copy (req->arg, sizeof (req->arg), nick);
    return zchat_client_request (self, req, zchat_client_now ());
}

uint64_t
zchat_client_who (zchat_client_t *self, const char *room)
{
    assert (self);
    if (!s_check_room (self, room) || !s_can_request (self))
        return 0;
    zchat_client_request_t *req = zchat_client_request_new (RQ_WHO, true, room);
    if (!req) {
        s_set_error (self, "out of memory");
        return 0;
    }
    return zchat_client_request (self, req, zchat_client_now ());
}

uint64_t
zchat_client_rooms (zchat_client_t *self)
{
    assert (self);
    if (!s_can_request (self))
        return 0;
    zchat_client_request_t *req = zchat_client_request_new (RQ_ROOMS, true, NULL);
    if (!req) {
        s_set_error (self, "out of memory");
        return 0;
    }
    return zchat_client_request (self, req, zchat_client_now ());
}

uint64_t
zchat_client_topic (zchat_client_t *self, const char *room, const char *topic)
{
    assert (self);
    if (!s_check_room (self, room) || !s_can_request (self))
        return 0;
    if (topic && (strlen (topic) > ZCHAT_MAX_TOPIC
              ||  !zchat_utf8_valid (topic, strlen (topic)))) {
        s_set_error (self, "invalid topic: at most %d bytes of UTF-8", ZCHAT_MAX_TOPIC);
        return 0;
    }
    zchat_client_request_t *req = zchat_client_request_new (RQ_TOPIC, true, room);
    if (!req) {
        s_set_error (self, "out of memory");
        return 0;
    }
    if (topic) {
        req->set = true;
        zchat_client_copy (req->arg, sizeof (req->arg), topic);
    }
    return zchat_client_request (self, req, zchat_client_now ());
}

uint64_t
zchat_client_history (zchat_client_t *self, const char *room, uint64_t from_seq,
                      uint64_t to_seq, int limit)
{
    assert (self);
    if (!s_check_room (self, room) || !s_can_request (self))
        return 0;
    if (to_seq && from_seq > to_seq) {
        s_set_error (self, "empty range %" PRIu64 "..%" PRIu64, from_seq, to_seq);
        return 0;
    }
    zchat_client_request_t *req = zchat_client_request_new (RQ_HISTORY, true, room);
    if (!req) {
        s_set_error (self, "out of memory");
        return 0;
    }
    req->from_seq = from_seq;
    req->to_seq = to_seq;
    //  limit caps the whole request; each page asks at most a wire u16
    req->remaining = limit > 0? (uint32_t) limit: 0;
    req->limit = limit > 0 && limit < 65535? (uint32_t) limit: 65535;
    if (from_seq == 0 && limit <= 0)
        req->limit = ZCHAT_CLIENT_PAGE_LIMIT;
    return zchat_client_request (self, req, zchat_client_now ());
}

//  --------------------------------------------------------------------------
//  The next event.

zchat_event_t *
zchat_client_next (zchat_client_t *self, int timeout_ms)
{
    assert (self);
    //  A caller that drains with timeout 0 reads no clock here: the
    //  deadline only matters when there is one to wait for
    int64_t deadline = timeout_ms > 0? zchat_client_now () + timeout_ms: 0;
    while (true) {
        if (self->queue.count > 0) {
            //  Keep the session alive even for a caller that never runs
            //  out of events
            if (zchat_client_now_coarse () >= self->due_ms)
                zchat_client_housekeep (self, zchat_client_now ());
            return zchat_client_queue_pop (&self->queue);
        }
        if (zsys_interrupted)
            return NULL;
        int wait = timeout_ms < 0? -1: 0;
        if (timeout_ms > 0) {
            int64_t left = deadline - zchat_client_now ();
            wait = left > 0? (int) left: 0;
        }
        if (s_pump (self, wait) == -1)
            return NULL;
        if (self->queue.count == 0 && wait == 0)
            return NULL;        //  s_pump has had its one look
    }
}

//  --------------------------------------------------------------------------
//  The answer to one request; other events stay queued.

zchat_event_t *
zchat_client_wait (zchat_client_t *self, uint64_t id, int timeout_ms)
{
    assert (self);
    int64_t deadline = timeout_ms < 0? -1: zchat_client_now () + timeout_ms;
    size_t scanned = 0;
    while (true) {
        for (; scanned < self->queue.count; scanned++)
            if (s_is_answer (zchat_client_queue_at (&self->queue, scanned), id))
                return zchat_client_queue_remove (&self->queue, scanned);
        if (zsys_interrupted)
            return NULL;
        if (s_queue_full (self)) {
            //  An answer the caller handles as any refusal; the request
            //  itself stays, and its real answer comes to zchat_client_next
            zchat_event_t *event = zchat_event_new (ZCHAT_EV_ERROR);
            if (event) {
                event->id = id;
                event->code = ZCHAT_CLIENT_FAILED;
                zchat_client_copy (event->reason, sizeof (event->reason), self->error);
            }
            return event;
        }
        int wait = -1;
        if (deadline >= 0) {
            int64_t left = deadline - zchat_client_now ();
            if (left <= 0)
                return NULL;
            wait = (int) left;
        }
        //  s_pump returns at once when it read something; otherwise it
        //  waits for input or the next due time
        if (s_pump (self, wait) == -1)
            return NULL;
    }
}

size_t
zchat_client_pending (zchat_client_t *self)
{
    assert (self);
    return zchat_outbox_size (self->outbox);
}

zsock_t *
zchat_client_dealer (zchat_client_t *self)
{
    assert (self);
    return self->dealer;
}

zsock_t *
zchat_client_sub (zchat_client_t *self)
{
    assert (self);
    return self->sub;
}

int
zchat_client_due_ms (zchat_client_t *self)
{
    assert (self);
    if (self->queue.count > 0)
        return 0;
    if (self->state == S_IDLE)
        return -1;
    int64_t left = self->due_ms - zchat_client_now ();
    //  A caller's poller watches for input only: if sends wait for room
    //  in the DEALER, come back soon to try again (a HELLO waiting for the
    //  broker to come back is tried every S_GREET_RETRY_MS instead)
    if (self->state == S_READY && zchat_client_want_write (self) && left > S_WRITE_RETRY_MS)
        left = S_WRITE_RETRY_MS;
    if (left < 0)
        return 0;
    return left > INT_MAX? INT_MAX: (int) left;
}
