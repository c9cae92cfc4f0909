//  zchat_server — the broker's protocol logic, without sockets: life cycle,
//  dispatch of inbound bodies to the command handlers, the reply helpers
//  they share, and periodic work (see zchat_server.h; the handlers live in
//  zchat_server_session.c, zchat_server_room.c and zchat_server_say.c).

#include "zchat_server_int.h"

//  A request from a peer without a session. The broker cannot tell a peer
//  that never greeted from one whose session expired or that greeted a
//  broker since restarted: keeping every routing id ever seen would let
//  anybody grow the broker's memory by reconnecting. So every request but
//  HELLO from an unknown peer, BYE included, gets 440, whose remedy, greet
//  again, is right in all three cases; 401 is never sent.
static void
s_unknown_session (zchat_server_t *self, zchat_request_t *req)
{
    self->unknown_session++;
    ZCHAT_DEBUG ("zchat: %s from a peer without a session: 440",
                 zchat_msg_type_name (req->msg->type));
    zchat_server_error (self, req, ZCHAT_ERR_SESSION, 0,
                        "unknown session: greet again with HELLO");
}

typedef void (s_handler_fn) (zchat_server_t *self, zchat_request_t *req);

typedef struct {
    s_handler_fn *handler;      //  NULL: not a client request, 501
    bool greeted;               //  needs a session
} s_command_t;

//  Indexed by message type. Replies and PUB-only types are absent: a
//  client sending them gets 501.
static const s_command_t s_commands [ZCHAT_TYPE_MAX + 1] = {
    [ZCHAT_HELLO]   = { zchat_server_do_hello,   false },
    [ZCHAT_BYE]     = { zchat_server_do_bye,     true },
    [ZCHAT_PING]    = { zchat_server_do_ping,    true },
    [ZCHAT_JOIN]    = { zchat_server_do_join,    true },
    [ZCHAT_LEAVE]   = { zchat_server_do_leave,   true },
    [ZCHAT_SAY]     = { zchat_server_do_say,     true },
    [ZCHAT_SAYS]    = { zchat_server_do_says,    true },
    [ZCHAT_DM]      = { zchat_server_do_dm,      true },
    [ZCHAT_NICK]    = { zchat_server_do_nick,    true },
    [ZCHAT_WHO]     = { zchat_server_do_who,     true },
    [ZCHAT_ROOMS]   = { zchat_server_do_rooms,   true },
    [ZCHAT_TOPIC]   = { zchat_server_do_topic,   true },
    [ZCHAT_HISTORY] = { zchat_server_do_history, true },
    [ZCHAT_PROBE]   = { zchat_server_do_probe,   true },
};


//  Destructor of the remembered buckets (zchat_server_rate_keep)
static void
s_spent_free (void **item)
{
    free (*item);
    *item = NULL;
}


//  ---------------------------------------------------------------------
//  Create a server over store (borrowed). Returns NULL if out of memory.

zchat_server_t *
zchat_server_new (const zchat_server_config_t *config, zchat_store_t *store,
                  zchat_server_output_t output)
{
    assert (config);
    assert (store);
    assert (output.reply && output.publish && output.reaches);

    zchat_server_t *self = (zchat_server_t *) zmalloc (sizeof (zchat_server_t));
    if (!self)
        return NULL;
    self->config = *config;
    self->store = store;
    self->output = output;
    //  Rooms and sessions start with generation 0: in no group
    self->group_gen = 1;

    //  Normalise the limits once, so handlers never meet a zero that
    //  means "default".
    zchat_server_config_t *c = &self->config;
    if (c->max_text == 0)
        c->max_text = 4096;
    if (c->max_text > ZCHAT_MAX_TEXT)
        c->max_text = ZCHAT_MAX_TEXT;
    //  Membership is a scan of the session's rooms (on every SAY), and a
    //  PONG lists at most ZCHAT_MAX_ITEMS rooms: the limit bounds both.
    if (c->max_rooms == 0 || c->max_rooms > ZCHAT_MAX_ITEMS)
        c->max_rooms = ZCHAT_MAX_ITEMS;
    if (c->history_page == 0)
        c->history_page = 500;
    if (c->history_page > ZCHAT_MAX_ITEMS)
        c->history_page = ZCHAT_MAX_ITEMS;
    if (c->heartbeat_ms == 0)
        c->heartbeat_ms = c->timeout_ms ? c->timeout_ms / 3 : 1000;
    if (c->rate_limit && c->rate_burst == 0)
        c->rate_burst = c->rate_limit;
    if (c->query_rate && c->query_burst == 0)
        c->query_burst = c->query_rate;

    const char *endpoint = config->pub_endpoint ? config->pub_endpoint : "";
    if (strlen (endpoint) > ZCHAT_MAX_ENDPOINT) {
        zsys_warning ("zchat: PUB endpoint too long to tell clients; sending none");
        endpoint = "";
    }
    self->pub_endpoint = strdup (endpoint);
    c->pub_endpoint = self->pub_endpoint;

    self->sessions = zchat_sessions_new ();
    self->rooms = zchat_rooms_new ();
    self->spent = zhashx_new ();
    if (self->spent) {
        zhashx_set_key_hasher (self->spent, zchat_hash_string);
        zhashx_set_destructor (self->spent, s_spent_free);
    }
    self->buffer_size = ZCHAT_MAX_FRAME;
    self->buffer = (uint8_t *) malloc (self->buffer_size);
    if (!self->pub_endpoint || !self->sessions || !self->rooms || !self->spent
    ||  !self->buffer)
        zchat_server_destroy (&self);
    return self;
}


//  ---------------------------------------------------------------------
//  Flush what is staged, then free everything. Sessions end silently: the
//  broker is going away, and its clients will find out from their pings.

void
zchat_server_destroy (zchat_server_t **self_p)
{
    assert (self_p);
    zchat_server_t *self = *self_p;
    if (self) {
        if (self->group_open)
            zchat_server_flush (self);
        zchat_sessions_destroy (&self->sessions);
        zchat_rooms_destroy (&self->rooms);
        zhashx_destroy (&self->spent);
        free (self->staged);
        zchat_arena_destroy (&self->arena_block);
        free (self->runs);
        free (self->senders);
        free (self->peers);
        free (self->buffer);
        free (self->pub_endpoint);
        free (self);
        *self_p = NULL;
    }
}


//  ---------------------------------------------------------------------
//  Handle one inbound body from peer.

void
zchat_server_handle (zchat_server_t *self, const uint8_t *peer, size_t peer_size,
                     int fd, const char *user_id, const char *address,
                     const uint8_t *body, size_t body_size, uint64_t now_ms)
{
    assert (self);
    if (peer_size > ZCHAT_MAX_PEER || (peer_size && !peer)) {
        //  The loop never builds such a blob; refuse rather than copy it.
        self->malformed++;
        ZCHAT_DEBUG ("zchat: dropped a message with a %zu-byte envelope", peer_size);
        return;
    }
    zchat_msg_t msg;
    zchat_request_t req = {
        .peer = peer, .peer_size = peer_size, .fd = fd,
        .user_id = user_id, .address = address,
        .session = zchat_sessions_by_peer (self->sessions, peer, peer_size),
        .msg = &msg, .now_ms = now_ms,
        .mono_ms = self->clock_given ? self->mono_ms : now_ms
    };
    //  Under CURVE a session belongs to the key that opened it, not to the
    //  envelope alone: a connection that comes by the same routing id with
    //  another key (a chosen routing id, once the owner's connection is
    //  gone) must not act as that session, nor keep it alive.
    bool foreign = false;
    if (req.session && self->config.curve
    &&  !(user_id && streq (req.session->key, user_id))) {
        foreign = true;
        req.session = NULL;
    }
    //  Any message at all, even a bad one, is a sign of life.
    if (req.session)
        zchat_sessions_touch (self->sessions, req.session, req.mono_ms);

    int rc = body ? zchat_msg_decode (&msg, body, body_size) : ZCHAT_DECODE_TRUNCATED;
    if (rc != ZCHAT_DECODE_OK) {
        //  Echo the id when the header is intact, so the client can tell
        //  which request was refused.
        memset (&msg, 0, sizeof (msg));
        if (body && body_size >= ZCHAT_HEADER_SIZE
        &&  body [0] == ZCHAT_SIGNATURE_0 && body [1] == ZCHAT_SIGNATURE_1) {
            msg.type = body [2];
            for (int i = 3; i < ZCHAT_HEADER_SIZE; i++)
                msg.id = (msg.id << 8) | body [i];
        }
        self->malformed++;
        ZCHAT_DEBUG ("zchat: undecodable body (%zu bytes, type %u): %s",
                     body_size, msg.type, zchat_decode_strerror (rc));
        //  A field over the wire format's own limit (a 40-byte nick, a
        //  70 KB text) is malformed like any other undecodable body: the
        //  codec cannot tell it from a length running past the end.
        if (rc == ZCHAT_DECODE_UNKNOWN_TYPE)
            zchat_server_error (self, &req, ZCHAT_ERR_UNKNOWN_COMMAND, 0,
                                "unknown command type %u", msg.type);
        else
            zchat_server_error (self, &req, ZCHAT_ERR_MALFORMED, 0,
                                "malformed message: %s", zchat_decode_strerror (rc));
        return;
    }

    if (foreign) {
        ZCHAT_DEBUG ("zchat: %s from another key on a session's routing id: 403",
                     zchat_msg_type_name (msg.type));
        zchat_server_error (self, &req, ZCHAT_ERR_FORBIDDEN, 0,
                            "this routing id belongs to a session of another key");
        return;
    }
    const s_command_t *command = msg.type <= ZCHAT_TYPE_MAX ? &s_commands [msg.type] : NULL;
    if (!command || !command->handler) {
        self->malformed++;
        ZCHAT_DEBUG ("zchat: %s is not a client request: 501",
                     zchat_msg_type_name (msg.type));
        zchat_server_error (self, &req, ZCHAT_ERR_UNKNOWN_COMMAND, 0,
                            "unknown command: %s is not a request",
                            zchat_msg_type_name (msg.type));
        return;
    }
    if (command->greeted && !req.session) {
        s_unknown_session (self, &req);
        return;
    }
    command->handler (self, &req);
}


//  ---------------------------------------------------------------------
//  A new connection announced itself.

void
zchat_server_connected (zchat_server_t *self, const uint8_t *peer, size_t peer_size,
                        int fd, const char *user_id, uint64_t now_ms)
{
    assert (self);
    if (peer_size > ZCHAT_MAX_PEER || (peer_size && !peer)) {
        self->malformed++;
        return;
    }
    zchat_msg_t msg;
    memset (&msg, 0, sizeof (msg));
    zchat_request_t req = {
        .peer = peer, .peer_size = peer_size, .fd = fd, .user_id = user_id,
        .session = zchat_sessions_by_peer (self->sessions, peer, peer_size),
        .msg = &msg, .now_ms = now_ms,
        .mono_ms = self->clock_given ? self->mono_ms : now_ms
    };
    zchat_session_t *session = req.session;
    if (!session) {
        //  A routing id the ROUTER made up for a new connection: nothing
        //  can be ours on it. Said at once, a client whose broker
        //  restarted, or whose connection was replaced, greets again now,
        //  where an idle version 6 client would otherwise never find out.
        //  Not counted as a request without a session: every libzchat
        //  connection begins this way.
        ZCHAT_DEBUG ("zchat: a new connection without a session: 440");
        zchat_server_error (self, &req, ZCHAT_ERR_SESSION, 0,
                            "unknown session: greet again with HELLO");
        return;
    }
    //  A routing id of the client's own choosing, which survives its
    //  reconnecting: the session goes on, on the new connection (bound to
    //  it again, if a check had found the old one gone). Another key's
    //  connection under that routing id is told nothing.
    if (self->config.curve && !(user_id && streq (session->key, user_id)))
        return;
    zchat_sessions_touch (self->sessions, session, req.mono_ms);
    //  A new connection that cannot be bound (a relay's, say) would leave
    //  a version 6 session unbound: its client, not pinging, would never
    //  find out, and it would end by silence. Greeting again makes it a
    //  session of the version before, whose client pings.
    if (!zchat_server_bind (self, session, &req) && session->version >= ZCHAT_VERSION_BOUND)
        zchat_server_error (self, &req, ZCHAT_ERR_SESSION, 0,
                            "this connection cannot keep the session: greet again with HELLO");
}


//  ---------------------------------------------------------------------
//  A connection closed: check its sessions a moment from now.

void
zchat_server_closed (zchat_server_t *self, int fd, uint64_t now_ms)
{
    assert (self);
    uint64_t mono_ms = self->clock_given ? self->mono_ms : now_ms;
    zchat_sessions_closed (self->sessions, fd, mono_ms);
    //  Not at once: libzmq tells of the close before the ROUTER has let go
    //  of the peer, so a check now would still reach it; and the kernel
    //  may already have given the descriptor to a new connection, whose
    //  session must not pay for the old one's
    for (zchat_session_t *session = zchat_sessions_bound (self->sessions, fd);
         session; session = session->fd_next)
        zchat_sessions_check (self->sessions, session, mono_ms + ZCHAT_SERVER_CHECK_MS);
}


//  ---------------------------------------------------------------------
//  The monotonic clock, for expiry and rate limits.

void
zchat_server_clock (zchat_server_t *self, uint64_t mono_ms)
{
    assert (self);
    self->clock_given = true;
    self->mono_ms = mono_ms;
}


//  ---------------------------------------------------------------------
//  Periodic work: check the connections due, expire silent sessions,
//  enforce retention a bounded amount at a time, and report what was
//  suppressed from the logs. Silence is measured on the monotonic clock,
//  message age on the wall clock (message timestamps are wall-clock
//  times).

void
zchat_server_tick (zchat_server_t *self, uint64_t now_ms)
{
    assert (self);
    uint64_t mono_ms = self->clock_given ? self->mono_ms : now_ms;
    zchat_session_t *session;
    while ((session = zchat_sessions_next_check (self->sessions))
    &&     session->check_ms <= mono_ms) {
        zchat_sessions_checked (self->sessions, session);
        //  Unbound meanwhile (taken over from a relay): silence ends it
        if (session->fd >= 0)
            zchat_server_check (self, session, mono_ms, now_ms);
    }
    if (self->config.timeout_ms) {
        while ((session = zchat_sessions_oldest (self->sessions))
        &&     mono_ms > session->last_seen_ms
        &&     mono_ms - session->last_seen_ms > self->config.timeout_ms) {
            if (session->fd >= 0) {
                //  Bound to its connection, which is up as far as we know:
                //  its silence says nothing. The walk moves past it and
                //  comes back a timeout later; after an hour of silence
                //  its connection is checked, in case a close was missed
                //  (a check that finds it gone requeues it unbound)
                if (mono_ms - session->alive_ms >= ZCHAT_SERVER_VERIFY_MS)
                    zchat_server_check (self, session, mono_ms, now_ms);
                if (session->fd >= 0)
                    zchat_sessions_requeue (self->sessions, session, mono_ms);
                continue;
            }
            //  Its staged messages go out before its quit.
            zchat_server_settle (self);
            zchat_server_end_session (self, &session, "expired", now_ms);
        }
    }
    zchat_server_rate_prune (self, mono_ms);
    //  Retention deletes rows: never inside a group, whose rollback would
    //  otherwise undo it, and never much at once.
    if ((self->config.retain_messages || self->config.retain_ms)
    &&  !self->group_open && now_ms >= self->retain_due_ms) {
        int deleted = zchat_store_retain (self->store, self->config.retain_messages,
                                          self->config.retain_ms, now_ms,
                                          ZCHAT_RETAIN_BATCH);
        if (deleted < 0) {
            zsys_warning ("zchat: retention failed; retrying in a minute");
            self->retain_due_ms = now_ms + 60000;
        }
        else {
            if (deleted > 0)
                ZCHAT_DEBUG ("zchat: retention removed %d messages", deleted);
            //  Anything removed means more may be due (the batch bounds
            //  the work, not the messages): go on at the next tick.
            self->retain_due_ms = deleted > 0 ? now_ms : now_ms + 1000;
        }
    }
    if (self->report_due_ms == 0)
        self->report_due_ms = now_ms + 60000;
    if (now_ms >= self->report_due_ms) {
        if (self->malformed || self->unknown_session || self->rate_limited)
            zsys_info ("zchat: last minute: %" PRIu64 " malformed, %" PRIu64
                       " without session, %" PRIu64 " rate-limited requests",
                       self->malformed, self->unknown_session, self->rate_limited);
        self->malformed = self->unknown_session = self->rate_limited = 0;
        self->report_due_ms = now_ms + 60000;
    }
}


//  ---------------------------------------------------------------------
//  End the sessions of keys no longer admitted.

size_t
zchat_server_revoke (zchat_server_t *self, uint64_t now_ms)
{
    assert (self);
    if (!self->config.curve || !self->config.admits)
        return 0;
    size_t ended = 0;
    zchat_session_t *session = zchat_sessions_oldest (self->sessions);
    while (session) {
        zchat_session_t *next = session->newer;
        if (!self->config.admits (self->config.admits_arg, session->key)) {
            //  Its staged messages go out before its quit.
            zchat_server_settle (self);
            zchat_server_end_session (self, &session, "key no longer admitted", now_ms);
            ended++;
        }
        session = next;
    }
    return ended;
}


//  ---------------------------------------------------------------------
//  SAYs staged in the open group.

size_t
zchat_server_staged (zchat_server_t *self)
{
    assert (self);
    return self->group_open? self->staged_count: 0;
}


//  ---------------------------------------------------------------------
//  Number of live sessions.

size_t
zchat_server_sessions (zchat_server_t *self)
{
    assert (self);
    return zchat_sessions_size (self->sessions);
}


//  ---------------------------------------------------------------------
//  Helpers shared by the handlers (see zchat_server_int.h)

void
zchat_server_send (zchat_server_t *self, const uint8_t *peer, size_t peer_size,
                   size_t size)
{
    if (size == 0) {
        //  Our own encoder refused our own data: a bug, not the peer's.
        zsys_error ("zchat: could not encode a reply (dropped)");
        return;
    }
    self->output.reply (self->output.arg, peer, peer_size, self->buffer, size);
}

void
zchat_server_reply (zchat_server_t *self, const zchat_request_t *req, size_t size)
{
    zchat_server_send (self, req->peer, req->peer_size, size);
}

//  Format a reason into reason (ZCHAT_MAX_REASON + 1), cut at a character
//  boundary if it is too long.
static void
s_format_reason (char *reason, const char *format, va_list args)
{
    int size = vsnprintf (reason, ZCHAT_MAX_REASON + 1, format, args);
    if (size < 0)
        reason [0] = 0;
    else
    if (size > ZCHAT_MAX_REASON) {
        size_t end = ZCHAT_MAX_REASON;
        while (end > 0 && ((unsigned char) reason [end] & 0xC0) == 0x80)
            end--;
        reason [end] = 0;
    }
}

size_t
zchat_server_encode_error (zchat_server_t *self, uint64_t id, uint16_t code,
                           uint32_t retry_ms, const char *format, ...)
{
    char reason [ZCHAT_MAX_REASON + 1];
    va_list args;
    va_start (args, format);
    s_format_reason (reason, format, args);
    va_end (args);
    zchat_buf_t buf;
    zchat_buf_init (&buf, self->buffer, self->buffer_size);
    return zchat_encode_error (&buf, id, code, retry_ms, reason);
}

void
zchat_server_error (zchat_server_t *self, const zchat_request_t *req,
                    uint16_t code, uint32_t retry_ms, const char *format, ...)
{
    char reason [ZCHAT_MAX_REASON + 1];
    va_list args;
    va_start (args, format);
    s_format_reason (reason, format, args);
    va_end (args);
    zchat_buf_t buf;
    zchat_buf_init (&buf, self->buffer, self->buffer_size);
    zchat_server_reply (self, req,
                        zchat_encode_error (&buf, req->msg->id, code, retry_ms, reason));
}

void
zchat_server_publish_on (zchat_server_t *self, const uint8_t *topic, size_t topic_size,
                         size_t size)
{
    if (size == 0) {
        zsys_error ("zchat: could not encode a publication (dropped)");
        return;
    }
    self->output.publish (self->output.arg, topic, topic_size, self->buffer, size);
}

void
zchat_server_publish (zchat_server_t *self, const zchat_room_t *room, size_t size)
{
    zchat_server_publish_on (self, room->topic_frame, room->topic_frame_size, size);
}

void
zchat_server_event (zchat_server_t *self, const zchat_room_t *room, uint8_t event,
                    const char *nick, const char *detail, uint64_t now_ms)
{
    zchat_buf_t buf;
    zchat_buf_init (&buf, self->buffer, self->buffer_size);
    zchat_server_publish (self, room,
                          zchat_encode_event (&buf, 0, room->name, now_ms,
                                              event, nick, detail));
}

const char *
zchat_server_printable (const char *name)
{
    return zchat_nick_valid (name) || zchat_room_valid (name) ? name : "(invalid name)";
}

void
zchat_server_log (zchat_server_t *self, uint64_t now_ms, const char *format, ...)
{
    if (now_ms >= self->log_window_ms + ZCHAT_LOG_WINDOW_MS || now_ms < self->log_window_ms) {
        if (self->log_held)
            zsys_info ("zchat: %zu more session lines held back (use -v to see them)",
                       self->log_held);
        self->log_window_ms = now_ms;
        self->log_lines = 0;
        self->log_held = 0;
    }
    bool info = self->log_lines < ZCHAT_LOG_BUDGET;
    if (info)
        self->log_lines++;
    else
        self->log_held++;
    if (info || zchat_log_verbose ()) {
        char line [512];
        va_list args;
        va_start (args, format);
        vsnprintf (line, sizeof (line), format, args);
        va_end (args);
        if (info)
            zsys_info ("%s", line);
        else
            zsys_debug ("%s", line);
    }
}

zchat_room_t *
zchat_server_room_open (zchat_server_t *self, const char *name)
{
    zchat_room_t *room = zchat_rooms_lookup (self->rooms, name);
    if (room)
        return room;
    //  Rooms freed from memory keep their history and topic in the store.
    //  Staging pins a room in memory, so a room being created has no
    //  staged rows: this reads committed data even inside a group.
    uint64_t last_seq;
    if (zchat_store_room_seq (self->store, name, &last_seq)) {
        zsys_warning ("zchat: cannot read the newest seq of room %s", name);
        return NULL;
    }
    //  Nor loaded without the topic it has: it would forget it for as long
    //  as it stays in memory, and tell every joiner there is none.
    char topic [ZCHAT_MAX_TOPIC + 1];
    char topic_by [ZCHAT_MAX_NICK + 1];
    uint64_t topic_ts;
    if (zchat_store_topic_get (self->store, name, topic, topic_by, &topic_ts) < 0) {
        zsys_warning ("zchat: cannot read the topic of room %s", name);
        return NULL;
    }
    room = zchat_rooms_add (self->rooms, name);
    if (!room)
        return NULL;
    room->last_seq = last_seq;
    room->staged_seq = room->last_seq;
    strcpy (room->topic, topic);
    strcpy (room->topic_by, topic_by);
    room->topic_ts = topic_ts;
    return room;
}

void
zchat_server_room_release (zchat_server_t *self, zchat_room_t **room_p)
{
    zchat_room_t *room = *room_p;
    if (room && room->member_count == 0 && room->pins == 0)
        zchat_rooms_remove (self->rooms, room_p);
    *room_p = NULL;
}
