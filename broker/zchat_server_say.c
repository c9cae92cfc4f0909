//  zchat_server_say — the message path: SAY staged into a store group and
//  acknowledged only after the group commits, DM delivered at once, and
//  the per-session rate limit, which every command that publishes or
//  writes is charged to (SAY, DM, JOIN, LEAVE, NICK, TOPIC set, PROBE).
//
//  This is the broker's hot path. A SAY costs a hash lookup of its peer, a
//  scan of the sender's rooms, one store append, and two encodes straight
//  into the group's arena; the arena and the staged array are reused from
//  group to group, so a steady stream allocates nothing.
//
//  With ack_before_commit (durability off) the SAY is appended to the
//  group just the same, so it is numbered, stored at the next flush, and
//  recognised if resent, but its ACK and MESSAGE go out at once.

#include "zchat_server_int.h"

//  Worst-case sizes of an ACK and a MESSAGE without the text.
#define S_ACK_MAX       (ZCHAT_HEADER_SIZE + 1 + ZCHAT_MAX_ROOM + 8 + 8)
#define S_MESSAGE_MAX   (ZCHAT_HEADER_SIZE + 1 + ZCHAT_MAX_ROOM + 8 + 8 \
                         + 1 + ZCHAT_MAX_NICK + 1 + 4)

//  ---------------------------------------------------------------------
//  Rate limit: token buckets per session. Room and direct messages have
//  one, the other commands that publish or write another of the same
//  size, so that a client's own probes while it joins a room never eat
//  into what its user may say, and neither kind can flood a room.

void
zchat_server_rate_init (zchat_server_t *self, zchat_session_t *session,
                        uint64_t now_ms)
{
    zchat_bucket_fill (&session->messages, self->config.rate_burst, now_ms);
    zchat_bucket_fill (&session->commands, self->config.rate_burst, now_ms);
    zchat_bucket_fill (&session->queries, (uint64_t) self->config.query_burst * 1024,
                       now_ms);
}

bool
zchat_server_rate_limited (zchat_server_t *self, zchat_request_t *req)
{
    const zchat_server_config_t *c = &self->config;
    if (c->rate_limit == 0)
        return false;
    bool message = req->msg->type == ZCHAT_SAY || req->msg->type == ZCHAT_DM;
    zchat_bucket_t *bucket = message ? &req->session->messages : &req->session->commands;
    uint32_t retry_ms = zchat_bucket_wait (bucket, c->rate_limit, c->rate_burst, 1,
                                           req->mono_ms);
    if (retry_ms == 0) {
        zchat_bucket_charge (bucket, 1);
        return false;
    }
    self->rate_limited++;
    ZCHAT_DEBUG ("zchat: %s is over the rate limit", req->session->nick);
    zchat_server_error (self, req, ZCHAT_ERR_RATE_LIMITED, retry_ms,
                        "rate limited: at most %u %s per second (burst %u)",
                        c->rate_limit, message ? "messages" : "room commands",
                        c->rate_burst);
    return true;
}


bool
zchat_server_query_refused (zchat_server_t *self, zchat_request_t *req)
{
    const zchat_server_config_t *c = &self->config;
    if (c->query_rate == 0)
        return false;
    uint32_t retry_ms = zchat_bucket_wait (&req->session->queries,
                                           (uint64_t) c->query_rate * 1024,
                                           (uint64_t) c->query_burst * 1024, 1,
                                           req->mono_ms);
    if (retry_ms == 0)
        return false;
    self->rate_limited++;
    ZCHAT_DEBUG ("zchat: %s is over its query budget", req->session->nick);
    zchat_server_error (self, req, ZCHAT_ERR_RATE_LIMITED, retry_ms,
                        "rate limited: history, member and room lists at most"
                        " %u KiB per second (burst %u KiB)", c->query_rate, c->query_burst);
    return true;
}

void
zchat_server_query_charge (zchat_server_t *self, zchat_request_t *req, size_t size)
{
    if (self->config.query_rate)
        zchat_bucket_charge (&req->session->queries, size + ZCHAT_QUERY_OVERHEAD);
}


//  ---------------------------------------------------------------------
//  The staged group

//  Make room for one more staged entry and extra arena bytes. Returns 0,
//  or -1 if out of memory.
static int
s_group_reserve (zchat_server_t *self, size_t bytes)
{
    if (self->staged_count == self->staged_limit) {
        size_t limit = self->staged_limit ? self->staged_limit * 2 : 64;
        zchat_staged_t *staged = (zchat_staged_t *) realloc (self->staged,
                                                 limit * sizeof (zchat_staged_t));
        if (!staged)
            return -1;
        self->staged = staged;
        self->staged_limit = limit;
    }
    if (self->arena_limit - self->arena_size < bytes) {
        size_t limit = self->arena_limit ? self->arena_limit : 64 * 1024;
        while (limit - self->arena_size < bytes)
            limit *= 2;
        uint8_t *arena = (uint8_t *) realloc (self->arena, limit);
        if (!arena)
            return -1;
        self->arena = arena;
        self->arena_limit = limit;
    }
    return 0;
}

//  Release the rooms the group pinned and empty it.
static void
s_group_clear (zchat_server_t *self)
{
    for (size_t i = 0; i < self->staged_count; i++) {
        zchat_room_t *room = self->staged [i].room;
        if (room) {
            assert (room->pins > 0);
            room->pins--;
            zchat_server_room_release (self, &room);
        }
    }
    self->staged_count = 0;
    self->arena_size = 0;
    self->early_count = 0;
    self->early_bytes = 0;
    self->group_open = false;
}

//  The group is lost (the store failed): nothing of it was stored. Every
//  sender in it gets ERROR 500 for its request, and the rooms hand out
//  their seqs again from the last committed one, so no hole appears.
static void
s_group_fail (zchat_server_t *self)
{
    if (self->early_count)
        //  Already acknowledged and published: they are lost, and their
        //  seqs stay used (a later message must not reuse a seq that
        //  subscribers have seen), leaving a hole in the history.
        zsys_error ("zchat: storage failed; %zu acknowledged messages (durability"
                    " off) were not stored", self->early_count);
    else
        zsys_error ("zchat: storage failed; %zu staged messages refused with 500",
                    self->staged_count);
    for (size_t i = 0; i < self->staged_count; i++) {
        zchat_staged_t *staged = &self->staged [i];
        if (staged->room)
            staged->room->staged_seq = staged->room->last_seq;
        size_t size = zchat_server_encode_error (self, staged->id, ZCHAT_ERR_INTERNAL, 0,
                                                 "storage failed, message not stored;"
                                                 " send it again");
        zchat_server_send (self, self->arena + staged->peer_at, staged->peer_size, size);
    }
    s_group_clear (self);
}


//  ---------------------------------------------------------------------
//  Commit the staged group, then emit its ACKs and MESSAGEs.

int
zchat_server_flush (zchat_server_t *self)
{
    assert (self);
    if (!self->group_open)
        return 0;
    if (self->fail_commit) {
        //  Fault injection for the self test: a commit that fails.
        self->fail_commit = false;
        zchat_store_rollback (self->store);
        s_group_fail (self);
        return -1;
    }
    if (zchat_store_commit (self->store)) {
        //  The store has rolled the group back.
        s_group_fail (self);
        return -1;
    }
    int committed = (int) self->early_count;
    for (size_t i = 0; i < self->staged_count; i++) {
        const zchat_staged_t *staged = &self->staged [i];
        if (staged->room) {
            //  Durable now: the room's newest seq may be told to anyone.
            if (staged->seq > staged->room->last_seq)
                staged->room->last_seq = staged->seq;
            committed++;
        }
        self->output.reply (self->output.arg, self->arena + staged->peer_at,
                            staged->peer_size, self->arena + staged->ack_at,
                            staged->ack_size);
        if (staged->room)
            self->output.publish (self->output.arg, staged->room->topic_frame,
                                  staged->room->topic_frame_size,
                                  self->arena + staged->message_at,
                                  staged->message_size);
    }
    s_group_clear (self);
    return committed;
}

void
zchat_server_settle (zchat_server_t *self)
{
    if (self->group_open)
        zchat_server_flush (self);
}


//  ---------------------------------------------------------------------
//  Durability off: answer an appended SAY (rc from the append) and publish
//  it now. Its seq counts as the room's newest at once, since subscribers
//  see it; history commits the group before it reads.

static void
s_say_now (zchat_server_t *self, zchat_request_t *req, zchat_room_t *room, int rc,
           uint64_t seq, uint64_t ts, const char *orig_room, uint64_t orig_seq,
           uint64_t orig_ts)
{
    const zchat_msg_t *msg = req->msg;
    zchat_buf_t buf;
    zchat_buf_init (&buf, self->buffer, self->buffer_size);
    if (rc == 1) {
        ZCHAT_DEBUG ("zchat: %s resent message %" PRIu64 " (stored as %s #%" PRIu64 ")",
                     req->session->nick, msg->id, orig_room, orig_seq);
        zchat_server_reply (self, req,
                            zchat_encode_ack (&buf, msg->id, orig_room, orig_seq, orig_ts));
        return;
    }
    room->staged_seq = seq;
    room->last_seq = seq;
    self->early_count++;
    self->early_bytes += S_MESSAGE_MAX + msg->text_size;
    zchat_server_reply (self, req, zchat_encode_ack (&buf, msg->id, room->name, seq, ts));
    zchat_buf_init (&buf, self->buffer, self->buffer_size);
    zchat_server_publish (self, room,
                          zchat_encode_message (&buf, 0, room->name, seq, ts,
                                                req->session->nick, msg->kind,
                                                msg->text, msg->text_size));
}


//  ---------------------------------------------------------------------
//  SAY: check, stamp (nick, next seq, time), append to the open group and
//  stage its ACK and MESSAGE; they go out when the group commits. A SAY
//  whose (nick, id) was stored before gets the original ACK, consumes no
//  seq and publishes nothing: its ACK is staged too, since the original
//  may itself still be in this group.

void
zchat_server_do_say (zchat_server_t *self, zchat_request_t *req)
{
    const zchat_msg_t *msg = req->msg;
    zchat_session_t *session = req->session;
    zchat_room_t *room = zchat_room_of (session, msg->room);
    if (!room) {
        zchat_server_error (self, req, ZCHAT_ERR_NOT_MEMBER, 0,
                            "not a member of room %s", zchat_server_printable (msg->room));
        return;
    }
    if (msg->text_size > self->config.max_text) {
        zchat_server_error (self, req, ZCHAT_ERR_TOO_LARGE, 0,
                            "text is %zu bytes, the limit is %u",
                            msg->text_size, self->config.max_text);
        return;
    }
    if (zchat_server_rate_limited (self, req))
        return;
    if (self->staged_count + self->early_count >= ZCHAT_GROUP_MESSAGES
    ||  self->arena_size + self->early_bytes >= ZCHAT_GROUP_BYTES)
        zchat_server_flush (self);

    bool early = self->config.ack_before_commit;
    size_t bytes = req->peer_size + S_ACK_MAX + S_MESSAGE_MAX + msg->text_size;
    if (!early && s_group_reserve (self, bytes)) {
        zchat_server_error (self, req, ZCHAT_ERR_INTERNAL, 0, "out of memory");
        return;
    }
    if (!self->group_open) {
        if (zchat_store_begin (self->store)) {
            zsys_warning ("zchat: could not start a store group");
            zchat_server_error (self, req, ZCHAT_ERR_INTERNAL, 0,
                                "storage failed, message not stored; send it again");
            return;
        }
        self->group_open = true;
    }
    uint64_t seq = room->staged_seq + 1;
    uint64_t ts = req->now_ms;
    char orig_room [ZCHAT_MAX_ROOM + 1] = "";
    uint64_t orig_seq = 0, orig_ts = 0;
    int rc = zchat_store_append (self->store, room->name, seq, ts, session->nick,
                                 msg->kind, msg->text, msg->text_size, msg->id,
                                 orig_room, &orig_seq, &orig_ts);
    if (rc < 0) {
        //  A failed write may have spoiled the whole transaction: give up
        //  the group rather than commit something half-known.
        zchat_store_rollback (self->store);
        s_group_fail (self);
        zchat_server_error (self, req, ZCHAT_ERR_INTERNAL, 0,
                            "storage failed, message not stored; send it again");
        return;
    }
    if (early) {
        s_say_now (self, req, room, rc, seq, ts, orig_room, orig_seq, orig_ts);
        return;
    }
    zchat_staged_t *staged = &self->staged [self->staged_count];
    staged->id = msg->id;
    staged->peer_at = self->arena_size;
    staged->peer_size = req->peer_size;
    if (req->peer_size)
        memcpy (self->arena + self->arena_size, req->peer, req->peer_size);
    self->arena_size += req->peer_size;

    zchat_buf_t buf;
    staged->ack_at = self->arena_size;
    zchat_buf_init (&buf, self->arena + self->arena_size, S_ACK_MAX);
    if (rc == 1) {
        ZCHAT_DEBUG ("zchat: %s resent message %" PRIu64 " (stored as %s #%" PRIu64 ")",
                     session->nick, msg->id, orig_room, orig_seq);
        staged->ack_size = zchat_encode_ack (&buf, msg->id, orig_room, orig_seq, orig_ts);
        staged->room = NULL;
        staged->seq = 0;
        staged->message_at = 0;
        staged->message_size = 0;
    }
    else {
        staged->ack_size = zchat_encode_ack (&buf, msg->id, room->name, seq, ts);
        staged->room = room;
        staged->seq = seq;
        room->staged_seq = seq;
        room->pins++;
    }
    self->arena_size += staged->ack_size;
    if (staged->room) {
        staged->message_at = self->arena_size;
        zchat_buf_init (&buf, self->arena + self->arena_size,
                        S_MESSAGE_MAX + msg->text_size);
        staged->message_size = zchat_encode_message (&buf, 0, room->name, seq, ts,
                                                     session->nick, msg->kind,
                                                     msg->text, msg->text_size);
        self->arena_size += staged->message_size;
    }
    //  Everything encoded fits its reserved space by construction.
    assert (staged->ack_size > 0);
    assert (!staged->room || staged->message_size > 0);
    self->staged_count++;
}


//  ---------------------------------------------------------------------
//  DM: deliver to the recipient's peer at once (DMs are not stored), and
//  acknowledge with an empty room and seq 0.

void
zchat_server_do_dm (zchat_server_t *self, zchat_request_t *req)
{
    const zchat_msg_t *msg = req->msg;
    zchat_session_t *recipient = zchat_sessions_by_nick (self->sessions, msg->nick);
    if (!recipient) {
        zchat_server_error (self, req, ZCHAT_ERR_NO_SUCH_NICK, 0,
                            "no such nick: %s", zchat_server_printable (msg->nick));
        return;
    }
    if (msg->text_size > self->config.max_text) {
        zchat_server_error (self, req, ZCHAT_ERR_TOO_LARGE, 0,
                            "text is %zu bytes, the limit is %u",
                            msg->text_size, self->config.max_text);
        return;
    }
    if (zchat_server_rate_limited (self, req))
        return;
    uint64_t ts = req->now_ms;
    zchat_buf_t buf;
    zchat_buf_init (&buf, self->buffer, self->buffer_size);
    zchat_server_send (self, recipient->peer, recipient->peer_size,
                       zchat_encode_deliver (&buf, 0, req->session->nick, msg->kind,
                                             ts, msg->text, msg->text_size));
    zchat_buf_init (&buf, self->buffer, self->buffer_size);
    zchat_server_reply (self, req, zchat_encode_ack (&buf, msg->id, "", 0, ts));
}
