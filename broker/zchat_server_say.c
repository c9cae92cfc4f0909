//  zchat_server_say — the message path: SAY (and SAYS) staged into a store
//  group and acknowledged only after the group commits, DM delivered at
//  once, the fair share that holds a flood back while others talk, and
//  the per-session rate limit, which every command that publishes or
//  writes is charged to (SAY, DM, JOIN, LEAVE, NICK, TOPIC set, PROBE).
//
//  This is the broker's hot path. A SAY costs a hash lookup of its peer, a
//  scan of the sender's rooms, one store append, and two encodes straight
//  into the group's arena; the arena and the staged array are reused from
//  group to group, so a steady stream allocates nothing.
//
//  When the group goes out, what it holds is batched: each room's new
//  messages are published as one MESSAGES (up to S_BATCH_BYTES), and each
//  version 2 sender gets one ACKS for all its SAYs in the group. Under load
//  a group holds hundreds of messages, and every frame saved is a send and
//  a receive in libzmq and the kernel at both ends of a hop; at low rates
//  a group holds one message, which goes out as a plain MESSAGE and ACK,
//  as soon as it would have anyway.
//
//  With ack_before_commit (durability off) the group is staged just the
//  same, so it is numbered, stored and recognised if resent, but it goes
//  out before the commit instead of after it.

#include "zchat_server_int.h"

#define S_BATCH_BYTES   ZCHAT_SERVER_BATCH_BYTES

//  Fair share is counted in periods this long (s_fair_refused).
#define S_FAIR_PERIOD_MS        100

//  "No entry" in the chains through the staged array.
#define S_NONE          SIZE_MAX

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
    //  Once one message is refused, every message after it is until the
    //  time given, though the bucket refills meanwhile: a sender that
    //  sends everything from the refused one on again keeps its order
    if (message && req->mono_ms < req->session->refused_until_ms)
        retry_ms = (uint32_t) (req->session->refused_until_ms - req->mono_ms);
    if (retry_ms == 0) {
        zchat_bucket_charge (bucket, 1);
        return false;
    }
    if (message && req->mono_ms + retry_ms > req->session->refused_until_ms)
        req->session->refused_until_ms = req->mono_ms + retry_ms;
    self->rate_limited++;
    ZCHAT_DEBUG ("zchat: %s is over the rate limit", req->session->nick);
    zchat_server_error (self, req, ZCHAT_ERR_RATE_LIMITED, retry_ms,
                        "rate limited: at most %u %s per second (burst %u)",
                        c->rate_limit, message ? "messages" : "room commands",
                        c->rate_burst);
    return true;
}


//  ---------------------------------------------------------------------
//  Fair share, on by default (config.fair_share, --fair-share): a session
//  may always send fair_share SAYs a second; past that, while other
//  sessions send too, at most that many more than twice what they send on
//  average, and the excess is refused with 429 until the period ends. A
//  sender alone, or senders that send alike, are not held back; one that
//  floods beside people who talk is held to about the floor, so that what
//  everyone else receives stays what the room's members can read. Counted
//  over all rooms (the broker's capacity is what they share) in periods of
//  S_FAIR_PERIOD_MS of the monotonic clock, with a tenth of the floor
//  each. It judges by counts, so the last of several flat-out senders can
//  be refused while the others finish; libzchat then sends the refused
//  SAYs again in order after the retry time, which costs that sender a
//  pause, not an error.

static bool
s_fair_refused (zchat_server_t *self, zchat_request_t *req)
{
    if (self->config.fair_share == 0)
        return false;
    uint64_t floor = self->config.fair_share * S_FAIR_PERIOD_MS / 1000;
    if (floor == 0)
        floor = 1;
    uint64_t period = req->mono_ms / S_FAIR_PERIOD_MS;
    if (self->fair_period != period) {
        bool last = self->fair_period + 1 == period;
        self->fair_prev_total = last? self->fair_total: 0;
        self->fair_prev_senders = last? self->fair_senders: 0;
        self->fair_period = period;
        self->fair_total = 0;
        self->fair_senders = 0;
    }
    zchat_session_t *session = req->session;
    if (session->fair_period != period) {
        session->fair_prev_count = session->fair_period + 1 == period?
                                   session->fair_count: 0;
        session->fair_period = period;
        session->fair_count = 0;
        session->fair_refused = 0;
    }
    if (session->fair_count == 0)
        self->fair_senders++;
    //  A flood is more than the floor plus twice what the others send on
    //  average, both in the last period and so far in this one (if they
    //  have sent in it yet): flat-out senders that started a little apart
    //  differ in one period but not the next, and within a period by no
    //  more than a batch or two, which the floor absorbs; people talking
    //  beside a flood send little in both
    uint64_t mine = session->fair_count;
    uint64_t prev = self->fair_prev_senders - (session->fair_prev_count? 1: 0);
    uint64_t prev_total = self->fair_prev_total - session->fair_prev_count;
    uint64_t cur = self->fair_senders - 1;
    uint64_t cur_total = self->fair_total - mine;
    //  Refused once in a period, refused for the rest of it, like the rate
    //  limit: the refused ones are a suffix of the sender's stream, so a
    //  sender that sends them all again next period keeps its order
    bool refused = session->fair_refused > 0
                || (prev > 0
                    && mine * prev >= floor * prev + 2 * prev_total
                    && (cur == 0 || mine * cur >= floor * cur + 2 * cur_total));
    if (refused) {
        session->fair_refused++;
        uint32_t retry_ms = (uint32_t) (S_FAIR_PERIOD_MS - req->mono_ms % S_FAIR_PERIOD_MS);
        self->rate_limited++;
        ZCHAT_DEBUG ("zchat: %s is over its fair share", session->nick);
        zchat_server_error (self, req, ZCHAT_ERR_RATE_LIMITED, retry_ms,
                            "fair share: past %u messages a second, at most twice what"
                            " the other senders send", self->config.fair_share);
        return true;
    }
    session->fair_count++;
    self->fair_total++;
    return false;
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
    self->group_open = false;
}

//  The group is lost (the store failed): nothing of it was stored. If it
//  has not gone out yet, every sender in it gets ERROR 500 for its
//  request, and the rooms hand out their seqs again from the last
//  committed one, so no hole appears.
static void
s_group_fail (zchat_server_t *self, bool answered)
{
    if (answered) {
        //  Already acknowledged and published (durability off): they are
        //  lost, and their seqs stay used (a later message must not reuse
        //  a seq that subscribers have seen), leaving a hole in history.
        zsys_error ("zchat: storage failed; %zu acknowledged messages (durability"
                    " off) were not stored", self->staged_count);
        s_group_clear (self);
        return;
    }
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
//  The group goes out: MESSAGES per room, ACKS per version 2 sender.

//  Publish one room's run of staged messages that was batched into buf:
//  a run of one goes as its own MESSAGE (smaller, and readable by version
//  1 clients).
static void
s_publish_run (zchat_server_t *self, zchat_room_t *room, zchat_buf_t *buf,
               size_t first)
{
    const zchat_staged_t *staged = &self->staged [first];
    if (buf->count == 1)
        self->output.publish (self->output.arg, room->topic_frame, room->topic_frame_size,
                              self->arena + staged->message_at, staged->message_size);
    else
    if (buf->count > 1)
        self->output.publish (self->output.arg, room->topic_frame, room->topic_frame_size,
                              buf->data, buf->size);
}

static void
s_publish_room (zchat_server_t *self, zchat_room_t *room)
{
    zchat_buf_t buf;
    zchat_buf_init (&buf, self->buffer, S_BATCH_BYTES);
    zchat_encode_messages_begin (&buf, room->name);
    size_t first = S_NONE;
    for (size_t i = room->flush_head; i != S_NONE; i = self->staged [i].room_next) {
        const zchat_staged_t *staged = &self->staged [i];
        if (buf.count == 0)
            first = i;
        if (zchat_encode_messages_append (&buf, self->arena + staged->message_at,
                                          staged->message_size))
            continue;
        //  Full: out with the run so far, and start again with this one
        s_publish_run (self, room, &buf, first);
        zchat_encode_messages_begin (&buf, room->name);
        first = i;
        if (!zchat_encode_messages_append (&buf, self->arena + staged->message_at,
                                           staged->message_size)) {
            //  Too big for any batch: alone
            self->output.publish (self->output.arg, room->topic_frame,
                                  room->topic_frame_size,
                                  self->arena + staged->message_at, staged->message_size);
            zchat_encode_messages_begin (&buf, room->name);
        }
    }
    s_publish_run (self, room, &buf, first);
}

//  Same for one sender's ACKs: one ACKS for the chain starting at head.
static void
s_acks_run (zchat_server_t *self, const zchat_staged_t *head, zchat_buf_t *buf,
            size_t first)
{
    const zchat_staged_t *staged = &self->staged [first];
    if (buf->count == 1)
        self->output.reply (self->output.arg, self->arena + head->peer_at, head->peer_size,
                            self->arena + staged->ack_at, staged->ack_size);
    else
    if (buf->count > 1)
        self->output.reply (self->output.arg, self->arena + head->peer_at, head->peer_size,
                            buf->data, buf->size);
}

static void
s_ack_peer (zchat_server_t *self, size_t head_index)
{
    const zchat_staged_t *head = &self->staged [head_index];
    zchat_buf_t buf;
    zchat_buf_init (&buf, self->buffer, S_BATCH_BYTES);
    zchat_encode_acks_begin (&buf);
    size_t first = head_index;
    for (size_t i = head_index; i != S_NONE; i = self->staged [i].peer_next) {
        const zchat_staged_t *staged = &self->staged [i];
        if (buf.count == 0)
            first = i;
        if (zchat_encode_acks_append (&buf, self->arena + staged->ack_at, staged->ack_size))
            continue;
        //  Full (an ACK is always smaller than a batch)
        s_acks_run (self, head, &buf, first);
        zchat_encode_acks_begin (&buf);
        first = i;
        if (!zchat_encode_acks_append (&buf, self->arena + staged->ack_at,
                                       staged->ack_size))
            //  Cannot happen: an ACK is ~60 bytes. Sent alone regardless.
            self->output.reply (self->output.arg, self->arena + head->peer_at,
                                head->peer_size, self->arena + staged->ack_at,
                                staged->ack_size);
    }
    s_acks_run (self, head, &buf, first);
}

static uint64_t
s_peer_hash (const uint8_t *peer, size_t size)
{
    //  FNV-1a: peers are routing ids the loop made, not chosen by clients
    uint64_t hash = 14695981039346656037ULL;
    for (size_t i = 0; i < size; i++)
        hash = (hash ^ peer [i]) * 1099511628211ULL;
    return hash;
}

//  Chain each version 2 sender's entries behind its first one (peer_head),
//  with an open-addressing table over the peer bytes sized for the group.
//  Returns -1 if the table cannot be had (then every ACK goes alone).
static int
s_link_peers (zchat_server_t *self)
{
    size_t limit = 16;
    while (limit < self->staged_count * 2)
        limit *= 2;
    if (limit > self->peer_slot_limit) {
        size_t *slots = (size_t *) realloc (self->peer_slots, limit * sizeof (size_t));
        if (!slots)
            return -1;
        self->peer_slots = slots;
        self->peer_slot_limit = limit;
    }
    for (size_t i = 0; i < limit; i++)
        self->peer_slots [i] = S_NONE;
    for (size_t i = 0; i < self->staged_count; i++) {
        zchat_staged_t *staged = &self->staged [i];
        staged->peer_next = S_NONE;
        staged->peer_head = false;
        if (!staged->batch_ack)
            continue;
        const uint8_t *peer = self->arena + staged->peer_at;
        size_t slot = (size_t) s_peer_hash (peer, staged->peer_size) & (limit - 1);
        while (true) {
            size_t at = self->peer_slots [slot];
            if (at == S_NONE) {
                self->peer_slots [slot] = i;
                staged->peer_head = true;
                staged->peer_tail = i;
                break;
            }
            zchat_staged_t *head = &self->staged [at];
            if (head->peer_size == staged->peer_size
            &&  memcmp (self->arena + head->peer_at, peer, staged->peer_size) == 0) {
                self->staged [head->peer_tail].peer_next = i;
                head->peer_tail = i;
                break;
            }
            slot = (slot + 1) & (limit - 1);
        }
    }
    return 0;
}

static void
s_group_emit (zchat_server_t *self)
{
    //  Messages: chain each room's entries (staged order is seq order),
    //  then publish each room when its first entry comes up.
    uint64_t gen = ++self->flush_gen;
    for (size_t i = 0; i < self->staged_count; i++) {
        zchat_staged_t *staged = &self->staged [i];
        zchat_room_t *room = staged->room;
        if (!room)
            continue;
        staged->room_next = S_NONE;
        if (room->flush_gen != gen) {
            room->flush_gen = gen;
            room->flush_head = i;
        }
        else
            self->staged [room->flush_tail].room_next = i;
        room->flush_tail = i;
        //  Published now: its seq may be told to anyone
        if (staged->seq > room->last_seq)
            room->last_seq = staged->seq;
    }
    for (size_t i = 0; i < self->staged_count; i++) {
        zchat_room_t *room = self->staged [i].room;
        if (room && room->flush_head == i)
            s_publish_room (self, room);
    }
    //  Acknowledgements
    bool linked = s_link_peers (self) == 0;
    for (size_t i = 0; i < self->staged_count; i++) {
        const zchat_staged_t *staged = &self->staged [i];
        if (linked && staged->batch_ack) {
            if (staged->peer_head)
                s_ack_peer (self, i);
        }
        else
            self->output.reply (self->output.arg, self->arena + staged->peer_at,
                                staged->peer_size, self->arena + staged->ack_at,
                                staged->ack_size);
    }
}


//  ---------------------------------------------------------------------
//  Commit the staged group and send out its ACKs and MESSAGEs: after the
//  commit, or before it with durability off.

int
zchat_server_flush (zchat_server_t *self)
{
    assert (self);
    if (!self->group_open)
        return 0;
    bool early = self->config.ack_before_commit;
    if (early)
        s_group_emit (self);
    int rc = 0;
    if (self->fail_commit) {
        //  Fault injection for the self test: a commit that fails.
        self->fail_commit = false;
        zchat_store_rollback (self->store);
        rc = -1;
    }
    else
    if (zchat_store_commit (self->store))
        rc = -1;                //  the store has rolled the group back
    if (rc) {
        s_group_fail (self, early);
        return -1;
    }
    int committed = 0;
    for (size_t i = 0; i < self->staged_count; i++)
        if (self->staged [i].room)
            committed++;
    if (!early)
        s_group_emit (self);
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
    if (zchat_server_rate_limited (self, req) || s_fair_refused (self, req))
        return;
    if (self->staged_count >= ZCHAT_GROUP_MESSAGES
    ||  self->arena_size >= ZCHAT_GROUP_BYTES)
        zchat_server_flush (self);

    size_t bytes = req->peer_size + S_ACK_MAX + S_MESSAGE_MAX + msg->text_size;
    if (s_group_reserve (self, bytes)) {
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
        s_group_fail (self, false);
        zchat_server_error (self, req, ZCHAT_ERR_INTERNAL, 0,
                            "storage failed, message not stored; send it again");
        return;
    }
    zchat_staged_t *staged = &self->staged [self->staged_count];
    staged->id = msg->id;
    staged->batch_ack = session->version >= 2;
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
//  SAYS (version 2): each item exactly as the SAY it stands for, in order,
//  each answered on its own (an ACK, an item of ACKS, or an ERROR with the
//  item's id). One frame for many SAYs is what a busy sender saves; what
//  each SAY costs here stays the same.

void
zchat_server_do_says (zchat_server_t *self, zchat_request_t *req)
{
    const zchat_msg_t *batch = req->msg;
    //  Only the fields zchat_server_do_say reads are set: a SAY view of
    //  each item, without zeroing a whole message per item
    zchat_msg_t say;
    say.type = ZCHAT_SAY;
    zchat_request_t item_req = *req;
    item_req.msg = &say;
    size_t cursor = 0;
    zchat_item_t item;
    while (zchat_msg_next_item (batch, &cursor, &item)) {
        say.id = item.id;
        memcpy (say.room, item.room, sizeof say.room);
        say.kind = item.kind;
        say.text = item.text;
        say.text_size = item.text_size;
        zchat_server_do_say (self, &item_req);
    }
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
