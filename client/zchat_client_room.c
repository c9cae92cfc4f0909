//  zchat_client_room — one room a libzchat client is in: join, probe,
//  held presence events, sequencing, gap fetches (see the header).

#include "zchat_client_room.h"

//  Tuning of rooms (the client's own is in zchat_client_int.h)
#define S_PROBE_IVL_MS          100     //  PROBE resend while joining, at most
#define S_PROBE_FIRST_MS        5       //  and at first
#define S_TAIL_GRACE_MS         200     //  a PONG's newer seq may still be in flight on SUB
#define S_FETCH_RETRY_MS        1000    //  after a failed history fetch without retry_ms
#define S_REJOIN_RETRY_MS       100     //  after a 429 without retry_ms
#define S_BUFFER_LIMIT          10000   //  out-of-order messages per room
#define S_BUFFER_BYTES          (64 * 1024 * 1024)  //  and what they may hold
#define S_HELD_LIMIT            1000    //  presence events held per joining room
#define S_PROBE_TAG_DIGITS      16      //  hex: 64 random bits per probing episode


//  --------------------------------------------------------------------------
//  Sequencer callbacks: a room's messages in order, gaps, drops

static void
s_deliver (void *arg, uint64_t seq, void *item)
{
    zchat_client_room_t *self = (zchat_client_room_t *) arg;
    zchat_event_t *event = (zchat_event_t *) item;
    if (event->type == ZCHAT_CLIENT_EV_DROPPED) {
        zchat_event_destroy (&event);
        return;
    }
    event->history = seq <= self->join_seq;
    zchat_client_emit (self->client, event);
}

static void
s_gap (void *arg, uint64_t from_seq, uint64_t to_seq)
{
    zchat_client_room_t *self = (zchat_client_room_t *) arg;
    zchat_event_t *event = zchat_event_new (ZCHAT_EV_GAP);
    if (!event)
        return;
    zchat_client_copy (event->room, sizeof (event->room), self->name);
    event->from_seq = from_seq;
    event->to_seq = to_seq;
    zchat_client_emit (self->client, event);
}

static void
s_drop (void *arg, void *item)
{
    (void) arg;
    zchat_event_t *event = (zchat_event_t *) item;
    zchat_event_destroy (&event);
}

//  --------------------------------------------------------------------------
//  A fresh sequencer for the room, or NULL if out of memory.

//  The buffer holds as many messages as S_BUFFER_BYTES has room for at the
//  broker's largest text: 10,000 at the default 4 KiB, 1,000 at 64 KiB,
//  where 10,000 let a broker that sends only out of order make one room
//  hold 640 MiB.

static zchat_sequencer_t *
s_sequencer_new (zchat_client_room_t *self)
{
    zchat_sequencer_output_t output = { self, s_deliver, s_gap, s_drop };
    size_t most = S_BUFFER_BYTES / (sizeof (zchat_event_t) + self->client->max_text);
    return zchat_sequencer_new (most < S_BUFFER_LIMIT? most: S_BUFFER_LIMIT, output);
}

//  --------------------------------------------------------------------------
//  Start a probing episode's tag (version 5): a fresh one, subscribed on
//  the SUB, so that the broker publishes our probes to us alone. A SUB
//  that refuses the subscription leaves the episode untagged: its probes
//  then come back on the room's topic, as before version 5.
//
//  Why the tag's topic starts with 0xFF: receiving our tagged probe must
//  prove that the room's subscription is live, so the tag's subscription
//  must reach the PUB after the room's (the PUB applies one connection's
//  subscriptions in order). Over the connection the SUB has, it does:
//  subscriptions go in the order of the calls (the SUB is not IMMEDIATE,
//  so even one still connecting queues them in order), and the room's
//  went before JOIN. But when the SUB attaches a connection while it
//  holds subscriptions already (a reconnect after a break, a broker
//  restart, a PUB that moved), libzmq sends them all by walking its
//  subscription trie in ascending byte order, not in the order of the
//  calls: the room's subscription and the tag's then go out together.
//  0xFF sorts after every byte a room's topic can start with (UTF-8
//  never uses it), so the tag still goes last (the client's self
//  test, s_test_tag_order in zchat_client_test.c, shows it).

static void
s_tag (zchat_client_room_t *self)
{
    assert (self->probe_topic_size == 0);
    if (self->client->version < 5)
        return;
    //  Only uniqueness matters: a probe of an earlier episode's tag, or
    //  one meant for another client, must not pass for this episode's
    static const char hex [] = "0123456789abcdef";
    uint64_t bits = zchat_client_random64 ();
    char tag [S_PROBE_TAG_DIGITS + 1];
    _Static_assert (S_PROBE_TAG_DIGITS * 4 <= 64 && S_PROBE_TAG_DIGITS <= ZCHAT_MAX_PROBE_TAG,
                    "a tag is hex digits of one random u64, within the protocol's limit");
    for (size_t i = 0; i < S_PROBE_TAG_DIGITS; i++)
        tag [i] = hex [(bits >> (4 * i)) & 15];
    tag [S_PROBE_TAG_DIGITS] = 0;
    size_t size = zchat_probe_topic_frame (tag, self->probe_topic);
    if (zmq_setsockopt (self->client->sub_h, ZMQ_SUBSCRIBE, self->probe_topic, size))
        return;
    self->probe_topic [size] = 0;
    self->probe_topic_size = size;
}

//  --------------------------------------------------------------------------
//  End the episode's tag, if any: probing is over (live, given up, the
//  room gone or send-only again, a new JOIN). A probe of it still on its
//  way is then ignored (zchat_client_room_probe).

static void
s_untag (zchat_client_room_t *self)
{
    if (self->probe_topic_size) {
        zmq_setsockopt (self->client->sub_h, ZMQ_UNSUBSCRIBE,
                        self->probe_topic, self->probe_topic_size);
        self->probe_topic_size = 0;
    }
}

//  --------------------------------------------------------------------------
//  A room we are joining.

zchat_client_room_t *
zchat_client_room_new (zchat_client_t *client, const char *name, bool send_only)
{
    zchat_client_room_t *self = (zchat_client_room_t *) calloc (1, sizeof (zchat_client_room_t));
    if (!self)
        return NULL;
    self->client = client;
    self->send_only = send_only;
    zchat_client_copy (self->name, sizeof (self->name), name);
    self->topic_frame_size = zchat_topic_frame (name, self->topic_frame);
    //  A send-only room has a sequencer too, unused until a receiving join
    //  upgrades the room: it holds nothing meanwhile
    self->sequencer = s_sequencer_new (self);
    if (!self->sequencer
    ||  (!send_only && zmq_setsockopt (client->sub_h, ZMQ_SUBSCRIBE,
                                       self->topic_frame, self->topic_frame_size))) {
        zchat_sequencer_destroy (&self->sequencer);
        free (self);
        return NULL;
    }
    return self;
}

//  --------------------------------------------------------------------------
//  Unsubscribe (a receiving room) and free a room.

void
zchat_client_room_destroy (zchat_client_room_t **self_p)
{
    zchat_client_room_t *self = *self_p;
    if (self) {
        if (self->client->last_room == self)
            self->client->last_room = NULL;
        s_untag (self);
        if (!self->send_only)
            zmq_setsockopt (self->client->sub_h, ZMQ_UNSUBSCRIBE,
                            self->topic_frame, self->topic_frame_size);
        zchat_sequencer_destroy (&self->sequencer);
        zchat_client_queue_purge (&self->held);
        free (self);
        *self_p = NULL;
    }
}

//  --------------------------------------------------------------------------
//  Send JOIN for the room (first join, or rejoin on a new session).

void
zchat_client_room_join (zchat_client_room_t *self, int64_t now)
{
    zchat_client_request_t *req = zchat_client_request_new (RQ_JOIN, false, self->name);
    if (!req)
        return;
    req->user_id = self->join_id;
    //  A JOIN ends a probing episode: its JOINED starts the next
    s_untag (self);
    self->state = R_JOINING;
    self->join_ms = now;
    self->rejoin_ms = 0;
    zchat_client_request (self->client, req, now);
}

//  --------------------------------------------------------------------------
//  A new session: the fetch in flight, if any, went with the old one.

void
zchat_client_room_rejoin (zchat_client_room_t *self, int64_t now)
{
    if (!self->send_only) {
        self->fetch_id = 0;
        self->fetch_retry_ms = 0;
        zchat_sequencer_fetch_failed (self->sequencer);
    }
    zchat_client_room_join (self, now);
}

//  --------------------------------------------------------------------------
//  Report a join of the room to the caller: JOINED answering id, at seq.

static void
s_report_joined (zchat_client_room_t *self, uint64_t id, uint64_t seq)
{
    zchat_event_t *event = zchat_event_new (ZCHAT_EV_JOINED);
    if (event) {
        event->id = id;
        zchat_client_copy (event->room, sizeof (event->room), self->name);
        zchat_client_copy (event->topic, sizeof (event->topic), self->topic);
        event->seq = seq;
        zchat_client_emit (self->client, event);
    }
}

//  --------------------------------------------------------------------------
//  Ask history for what the room's sequencer misses, if anything, and if
//  no fetch is outstanding.

void
zchat_client_room_fetch (zchat_client_room_t *self, int64_t now)
{
    zchat_client_t *client = self->client;
    uint64_t from, to;
    if (client->state != S_READY || now < self->fetch_retry_ms
    ||  !zchat_sequencer_want (self->sequencer, &from, &to))
        return;
    zchat_client_request_t *req = zchat_client_request_new (RQ_FETCH, false, self->name);
    if (!req)
        return;
    req->from_seq = from;
    req->to_seq = to;
    req->limit = ZCHAT_CLIENT_PAGE_LIMIT;
    uint64_t id = zchat_client_request (client, req, now);
    if (id) {
        self->fetch_id = id;
        self->fetch_sent_ms = now;
        zchat_sequencer_fetch_sent (self->sequencer, from, to);
        zchat_client_schedule (client, now + client->timeout_ms);
    }
}

//  --------------------------------------------------------------------------
//  Our probe came back (or we stopped waiting, and said so: then report
//  is false): the room is live. Report the join, then what was held back,
//  then let the sequencer run.

static void
s_live (zchat_client_room_t *self, bool report, int64_t now)
{
    s_untag (self);
    self->state = R_LIVE;
    self->upgrade = false;
    if (!self->confirmed) {
        self->confirmed = true;
        if (report)
            s_report_joined (self, self->join_id, self->join_seq);
        zchat_event_t *held;
        while ((held = zchat_client_queue_pop (&self->held)))
            zchat_client_emit (self->client, held);
    }
    zchat_sequencer_hold (self->sequencer, false);
    zchat_client_room_fetch (self, now);
}

//  --------------------------------------------------------------------------
//  Make a send-only room receiving.

int
zchat_client_room_upgrade (zchat_client_room_t *self, uint64_t join_id, int64_t now)
{
    if (zmq_setsockopt (self->client->sub_h, ZMQ_SUBSCRIBE,
                        self->topic_frame, self->topic_frame_size))
        return -1;
    self->send_only = false;
    self->join_id = join_id;
    if (self->confirmed) {
        self->upgrade = true;
        self->confirmed = false;
        zchat_client_room_join (self, now);
    }
    //  else its JOIN is on its way: its JOINED starts probing as for any
    //  receiving join, and reports the join once live
    return 0;
}

//  --------------------------------------------------------------------------
//  Back to send-only after a failed upgrade: the broker still counts us as
//  a member, but we stop listening and forget whatever the room had begun
//  to receive (a fresh sequencer, so that a later upgrade starts afresh).

static void
s_send_only (zchat_client_room_t *self)
{
    s_untag (self);
    zmq_setsockopt (self->client->sub_h, ZMQ_UNSUBSCRIBE,
                    self->topic_frame, self->topic_frame_size);
    self->send_only = true;
    self->upgrade = false;
    self->confirmed = true;
    self->state = R_LIVE;
    self->fetch_id = 0;
    self->fetch_retry_ms = 0;
    self->tail_seq = 0;
    self->tail_due_ms = 0;
    zchat_client_queue_purge (&self->held);
    zchat_sequencer_t *fresh = s_sequencer_new (self);
    if (fresh) {                //  out of memory: the old one it is
        zchat_sequencer_destroy (&self->sequencer);
        self->sequencer = fresh;
    }
}

//  --------------------------------------------------------------------------
//  JOINED: where the room stands; a first join starts probing.

void
zchat_client_room_joined (zchat_client_room_t *self, uint64_t user_id,
                          const zchat_msg_t *msg, int64_t now)
{
    self->members = msg->members;
    zchat_client_copy (self->topic, sizeof (self->topic), msg->topic);
    if (self->send_only) {
        self->state = R_LIVE;
        if (!self->confirmed) {
            self->confirmed = true;
            self->join_seq = msg->seq;
            s_report_joined (self, self->join_id, msg->seq);
        }
        else
        if (user_id && user_id != self->join_id)
            s_report_joined (self, user_id, msg->seq);
        return;
    }
    if (!zchat_sequencer_started (self->sequencer)) {
        uint64_t replay = (uint64_t) self->client->history_n;
        if (replay > msg->seq)
            replay = msg->seq;
        self->join_seq = msg->seq;
        zchat_sequencer_start (self->sequencer, msg->seq - replay);
    }
    zchat_sequencer_newest (self->sequencer, msg->seq);
    if (self->confirmed) {
        //  A rejoin on a new session, or the caller joining again: live at
        //  once; the sequencer fetches whatever we missed meanwhile
        self->state = R_LIVE;
        if (user_id && user_id != self->join_id)
            s_report_joined (self, user_id, msg->seq);
        zchat_client_room_fetch (self, now);
    }
    else
    if (self->state == R_JOINING) {
        self->state = R_PROBING;
        s_untag (self);
        s_tag (self);
        self->probe_start_ms = now;
        self->probe_rtt_ms = now - self->join_ms;
        self->probe_next_ms = now;
        zchat_client_room_tick (self, now);
    }
}

//  --------------------------------------------------------------------------
//  A JOIN of the room refused.

bool
zchat_client_room_join_refused (zchat_client_room_t *self, uint64_t user_id,
                                const zchat_msg_t *msg, int64_t now)
{
    if (self->confirmed && !self->upgrade && user_id == self->join_id
    &&  msg->code == ZCHAT_ERR_RATE_LIMITED) {
        //  Our own rejoin on a new session, refused for now: the caller
        //  asked for nothing and the room is still theirs, so ask again
        //  when the broker says. A client in more rooms than the broker's
        //  command burst has some rejoins refused after every restart, and
        //  those rooms were left half joined: subscribed, but no longer a
        //  member for the broker.
        self->rejoin_ms = now + (msg->retry_ms? msg->retry_ms: S_REJOIN_RETRY_MS);
        zchat_client_schedule (self->client, self->rejoin_ms);
        return false;
    }
    if (self->upgrade) {
        //  The receiving join of a send-only room failed: the broker still
        //  has us as a member, so send-only it stays
        zchat_client_emit_error (self->client, self->join_id, msg->code, msg->retry_ms,
                                 self->name, NULL, msg->reason);
        s_send_only (self);
        return false;
    }
    if (!self->confirmed) {
        //  The join failed: the room is to be forgotten
        zchat_client_emit_error (self->client, self->join_id, msg->code, msg->retry_ms,
                                 self->name, NULL, msg->reason);
        return true;
    }
    //  The caller joining a room again, refused: the broker still has us.
    //  Our rejoin refused for good (a lower --max-rooms after a restart,
    //  say): the broker has us no more, so neither do we. The caller asked
    //  for neither, so the error names the room, without an id.
    bool rejoin = user_id == self->join_id;
    zchat_client_emit_error (self->client, rejoin? 0: user_id,
                             msg->code, msg->retry_ms, self->name, NULL, msg->reason);
    return rejoin;
}

//  --------------------------------------------------------------------------
//  A fetch refused: ask again later.

void
zchat_client_room_fetch_refused (zchat_client_room_t *self, uint64_t id, uint32_t retry_ms,
                                 int64_t now)
{
    if (self->fetch_id != id)
        return;
    self->fetch_id = 0;
    //  When the broker says: a fetch over its query budget may go again as
    //  soon as the budget is out of debt. A fixed second repaired at half
    //  the budget's pace (two pages, then a second's wait) and, with a
    //  small budget, asked again every second only to be refused
    self->fetch_retry_ms = now + (retry_ms? retry_ms: S_FETCH_RETRY_MS);
    zchat_sequencer_fetch_failed (self->sequencer);
    zchat_client_schedule (self->client, self->fetch_retry_ms);
}

//  --------------------------------------------------------------------------
//  A PAGE answering one of our fetches: through the room's sequencer.

void
zchat_client_room_page (zchat_client_room_t *self, uint64_t id, const zchat_msg_t *msg,
                        int64_t now)
{
    if (self->fetch_id != id)
        return;                 //  the session renewed
    self->fetch_id = 0;
    zchat_sequencer_page_begin (self->sequencer, msg->first_seq);
    size_t cursor = 0;
    zchat_item_t item;
    while (zchat_msg_next_item (msg, &cursor, &item)) {
        zchat_event_t *event = zchat_client_message_event (self->client, self->name,
                                                           item.seq, item.ts, item.nick,
                                                           item.kind, item.text,
                                                           item.text_size);
        if (event)
            zchat_sequencer_offer (self->sequencer, item.seq, event);
    }
    zchat_sequencer_page_end (self->sequencer, msg->flag != 0);
    //  A page also tells the room's newest seq: a tail the PUB dropped
    //  while we repair is then fetched a grace later, not at the next PONG
    zchat_client_room_tail (self, msg->seq, now);
    zchat_client_room_fetch (self, now);
}

//  --------------------------------------------------------------------------
//  A PONG told the room's newest seq.

void
zchat_client_room_tail (zchat_client_room_t *self, uint64_t seq, int64_t now)
{
    if (self->send_only || !zchat_sequencer_started (self->sequencer)
    ||  seq <= zchat_sequencer_last (self->sequencer))
        return;
    if (self->tail_seq < seq)
        self->tail_seq = seq;
    if (!self->tail_due_ms) {
        self->tail_due_ms = now + S_TAIL_GRACE_MS;
        self->tail_last = zchat_sequencer_last (self->sequencer);
        zchat_client_schedule (self->client, self->tail_due_ms);
    }
}

//  --------------------------------------------------------------------------
//  One live message to the room's sequencer.

void
zchat_client_room_message (zchat_client_room_t *self, uint64_t seq, uint64_t ts,
                           const char *nick, uint8_t kind, const char *text,
                           size_t text_size)
{
    //  Seen already (our fetch overtook it), or newer than what a full
    //  buffer keeps while we are behind: skip the copy. The sequencer
    //  still learns that it exists, to fetch it in its turn.
    if (zchat_sequencer_accepts (self->sequencer, seq)) {
        zchat_event_t *event = zchat_client_message_event (self->client, self->name, seq,
                                                           ts, nick, kind, text, text_size);
        if (event)
            zchat_sequencer_offer (self->sequencer, seq, event);
    }
    else
        zchat_sequencer_newest (self->sequencer, seq);
}

//  --------------------------------------------------------------------------
//  A presence event: to the caller once the join is, held until then.

void
zchat_client_room_presence (zchat_client_room_t *self, zchat_event_t *event)
{
    if (event->type == ZCHAT_EV_TOPIC)
        zchat_client_copy (self->topic, sizeof (self->topic), event->topic);
    if (self->confirmed)
        zchat_client_emit (self->client, event);
    else
    if (self->held.count >= S_HELD_LIMIT || zchat_client_queue_push (&self->held, event))
        zchat_event_destroy (&event);
}

//  --------------------------------------------------------------------------
//  A PROBE came back on SUB.

void
zchat_client_room_probe (zchat_client_room_t *self, const uint8_t *topic,
                         size_t topic_size, const char *nick, int64_t now)
{
    if (self->state != R_PROBING || !streq (nick, self->client->nick))
        return;
    //  Only a probe on the topic this episode probes on proves anything:
    //  one of an earlier episode's tag (still queued, or from a session
    //  gone since) says nothing of the room's subscription now
    const uint8_t *expected = self->probe_topic_size? self->probe_topic: self->topic_frame;
    size_t expected_size = self->probe_topic_size? self->probe_topic_size:
                                                   self->topic_frame_size;
    if (topic_size == expected_size && memcmp (topic, expected, topic_size) == 0)
        s_live (self, true, now);
}

//  --------------------------------------------------------------------------
//  Room housekeeping.

void
zchat_client_room_tick (zchat_client_room_t *self, int64_t now)
{
    zchat_client_t *client = self->client;
    if (self->rejoin_ms) {
        if (now >= self->rejoin_ms)
            zchat_client_room_join (self, now);
        else
            zchat_client_schedule (client, self->rejoin_ms);
    }
    if (self->send_only)
        return;                 //  nothing to probe, sequence or fetch
    if (self->fetch_id) {
        if (now - self->fetch_sent_ms >= client->timeout_ms) {
            //  No answer: a broker may drop a reply to a peer it has too
            //  much queued for. Forget that fetch and ask again, or the
            //  room would wait for it until the next session.
            free (zchat_client_request_take (client, self->fetch_id));
            self->fetch_id = 0;
            zchat_sequencer_fetch_failed (self->sequencer);
        }
        else
            zchat_client_schedule (client, self->fetch_sent_ms + client->timeout_ms);
    }
    if (self->state == R_PROBING) {
        if (now - self->probe_start_ms >= client->timeout_ms) {
            //  The subscription never proved live. Say so, and carry on:
            //  PONGs will still reveal, and fetches recover, what SUB misses
            char reason [ZCHAT_MAX_REASON + 1];
            snprintf (reason, sizeof (reason),
                      "room %s: our subscription was not confirmed within %.1f s",
                      self->name, client->timeout_ms / 1000.0);
            zchat_client_emit_error (client, self->join_id, ZCHAT_CLIENT_TIMEOUT, 0,
                                     self->name, NULL, reason);
            s_live (self, false, now);
        }
        else
        if (now >= self->probe_next_ms) {
            zchat_client_request_t *req = zchat_client_request_new (RQ_PROBE, false,
                                                                    self->name);
            if (req) {
                if (self->probe_topic_size)
                    zchat_client_copy (req->arg, sizeof (req->arg),
                                       (const char *) self->probe_topic + 1);
                zchat_client_request (client, req, now);
            }
            //  Back off from S_PROBE_FIRST_MS to S_PROBE_IVL_MS, waiting
            //  as long again as the join has so far, and never less than
            //  a round trip (JOIN to JOINED; a PROBE cannot come back
            //  sooner, and each one counts against our command rate and,
            //  untagged, goes to every member): the subscription, and the SUB
            //  connection that the first receiving join makes, are live
            //  a handshake later, on a LAN within a millisecond or two,
            //  and a first PROBE that overtook them should not cost the
            //  join 100 ms
            int64_t ivl = now - self->probe_start_ms;
            if (ivl < self->probe_rtt_ms)
                ivl = self->probe_rtt_ms;
            self->probe_next_ms = now + (ivl < S_PROBE_FIRST_MS? S_PROBE_FIRST_MS:
                                         ivl > S_PROBE_IVL_MS? S_PROBE_IVL_MS: ivl);
        }
        if (self->state == R_PROBING)
            zchat_client_schedule (client, self->probe_next_ms);
    }
    if (self->tail_due_ms) {
        uint64_t last = zchat_sequencer_last (self->sequencer);
        if (now >= self->tail_due_ms && last < self->tail_seq && last > self->tail_last) {
            //  Still working through what our SUB holds: the tail is
            //  likely in there too. Fetching it now would fetch what is
            //  already on its way, from a client that is behind already;
            //  only a grace without progress says the tail was lost.
            self->tail_due_ms = now + S_TAIL_GRACE_MS;
            self->tail_last = last;
        }
        if (now >= self->tail_due_ms) {
            self->tail_due_ms = 0;
            zchat_sequencer_newest (self->sequencer, self->tail_seq);
        }
        else
            zchat_client_schedule (client, self->tail_due_ms);
    }
    if (self->state == R_LIVE && !zchat_sequencer_fetching (self->sequencer)) {
        if (now < self->fetch_retry_ms)
            zchat_client_schedule (client, self->fetch_retry_ms);
        else
            zchat_client_room_fetch (self, now);
    }
}



//  ==========================================================================
//  Self test: rooms of a client that is not connected, fed decoded replies
//  directly (the client's own test feeds them through its sockets' paths,
//  and tests/ against the real broker).

//  Decode the body just encoded into the client's buffer.
static zchat_msg_t
s_test_msg (zchat_client_t *client, size_t size)
{
    zchat_msg_t msg;
    assert (size > 0);
    int rc = zchat_msg_decode (&msg, client->buffer, size);
    assert (rc == ZCHAT_DECODE_OK);
    return msg;
}

//  The next event for the caller, which must be of type and answer id (any
//  id if id is 0); destroyed, its seq returned.
static uint64_t
s_test_expect (zchat_client_t *client, zchat_event_type_t type, uint64_t id)
{
    zchat_event_t *event = zchat_client_queue_pop (&client->queue);
    assert (event && event->type == type);
    assert (id == 0 || event->id == id);
    uint64_t seq = event->seq;
    zchat_event_destroy (&event);
    return seq;
}

//  The tag of the newest PROBE request for room waiting in the client's
//  table ("" if untagged), or NULL if there is none. Ids count up, so the
//  newest is the one with the highest id.
static const char *
s_test_probe_tag (zchat_client_t *client, const char *room)
{
    const char *tag = NULL;
    uint64_t newest = 0, id;
    size_t cursor = 0;
    zchat_client_request_t *req;
    while ((req = (zchat_client_request_t *)
                  zchat_idmap_next (client->requests, &cursor, &id)))
        if (req->kind == RQ_PROBE && streq (req->room, room) && id >= newest) {
            newest = id;
            tag = req->arg;
        }
    return tag;
}

//  A presence event as the client builds it from an EVENT.
static zchat_event_t *
s_test_presence (zchat_event_type_t type, const char *nick, const char *topic)
{
    zchat_event_t *event = zchat_event_new (type);
    assert (event);
    zchat_client_copy (event->room, sizeof (event->room), "lobby");
    zchat_client_copy (event->nick, sizeof (event->nick), nick);
    zchat_client_copy (event->topic, sizeof (event->topic), topic);
    return event;
}

void
zchat_client_room_test (bool verbose)
{
    if (verbose)
        printf (" * zchat_client_room: ");

    //  In session as far as rooms can tell; nothing can go out, so every
    //  request stays in the table, where the test finds it
    zchat_client_t *client = zchat_client_new ("tcp://127.0.0.1:1", "alice");
    assert (client);
    zchat_client_set_history (client, 2);
    client->state = S_READY;
    zchat_buf_t *buf = &client->buf;
    int64_t now = zclock_mono ();
    zchat_msg_t msg;

    //  A receiving join: JOIN, then JOINED starts probing; nothing is
    //  reported until our own probe comes back
    zchat_client_room_t *room = zchat_client_room_new (client, "lobby", false);
    assert (room && room->state == R_JOINING && !room->confirmed && !room->send_only);
    room->join_id = 42;
    zchat_client_room_join (room, now);
    assert (zchat_idmap_size (client->requests) == 1);
    msg = s_test_msg (client, zchat_encode_joined (buf, 1, "lobby", 10, 1, 3, "old"));
    zchat_client_room_joined (room, 42, &msg, now);
    assert (room->state == R_PROBING && room->members == 3 && streq (room->topic, "old"));
    assert (room->join_seq == 10 && zchat_sequencer_last (room->sequencer) == 8);
    assert (zchat_idmap_size (client->requests) == 2);          //  a PROBE
    assert (client->queue.count == 0);

    //  Meanwhile presence is held (a topic is taken at once), and a live
    //  message waits in the sequencer; a probe not ours changes nothing
    zchat_client_room_presence (room, s_test_presence (ZCHAT_EV_JOIN, "bob", ""));
    zchat_client_room_presence (room, s_test_presence (ZCHAT_EV_TOPIC, "bob", "new"));
    assert (room->held.count == 2 && streq (room->topic, "new"));
    zchat_client_room_message (room, 11, 11, "bob", ZCHAT_KIND_TEXT, "eleven", 6);
    zchat_client_room_check_fetch (room, now);
    assert (room->fetch_id == 0);
    zchat_client_room_probe (room, room->topic_frame, room->topic_frame_size, "bob", now);
    assert (room->state == R_PROBING && client->queue.count == 0);

    //  Ours: JOINED with the topic as it is now, what was held, then a
    //  fetch of the two messages to replay, which come before the live one
    zchat_client_room_probe (room, room->topic_frame, room->topic_frame_size, "alice", now);
    assert (room->state == R_LIVE && room->confirmed && room->held.count == 0);
    assert (s_test_expect (client, ZCHAT_EV_JOINED, 42) == 10);
    s_test_expect (client, ZCHAT_EV_JOIN, 0);
    zchat_event_t *event = zchat_client_queue_pop (&client->queue);
    assert (event && event->type == ZCHAT_EV_TOPIC && streq (event->topic, "new"));
    zchat_event_destroy (&event);
    assert (client->queue.count == 0);
    uint64_t fetch = room->fetch_id;
    assert (fetch && zchat_sequencer_fetching (room->sequencer));
    zchat_client_request_t *req = (zchat_client_request_t *)
                                  zchat_idmap_lookup (client->requests, fetch);
    assert (req && req->kind == RQ_FETCH && req->from_seq == 9 && req->to_seq == 10);
    assert (req->limit == ZCHAT_CLIENT_PAGE_LIMIT);

    //  A page not answering that fetch is ignored; the one that does fills
    //  the hole: replayed messages are history, the live one is not
    zchat_encode_page_begin (buf, fetch + 1, "lobby", 1, 10, false);
    msg = s_test_msg (client, zchat_encode_page_add (buf, 9, 9, "bob", ZCHAT_KIND_TEXT,
                                                     "nine", 4));
    zchat_client_room_page (room, fetch + 1, &msg, now);
    assert (room->fetch_id == fetch && client->queue.count == 0);
    zchat_encode_page_begin (buf, fetch, "lobby", 1, 10, false);
    zchat_encode_page_add (buf, 9, 9, "bob", ZCHAT_KIND_TEXT, "nine", 4);
    msg = s_test_msg (client, zchat_encode_page_add (buf, 10, 10, "eve", ZCHAT_KIND_TEXT,
                                                     "ten", 3));
    zchat_client_room_page (room, fetch, &msg, now);
    assert (room->fetch_id == 0);
    for (uint64_t seq = 9; seq <= 11; seq++) {
        event = zchat_client_queue_pop (&client->queue);
        assert (event && event->type == ZCHAT_EV_MESSAGE && event->seq == seq);
        assert (streq (event->room, "lobby") && event->history == (seq <= 10));
        zchat_event_destroy (&event);
    }
    assert (client->queue.count == 0);
    //  Seen already: not delivered again
    zchat_client_room_message (room, 11, 11, "bob", ZCHAT_KIND_TEXT, "again", 5);
    assert (client->queue.count == 0);

    //  A PONG telling a newer seq: fetched once the grace has passed,
    //  unless it turns up meanwhile; a PONG telling nothing new is ignored
    zchat_client_room_tail (room, 11, now);
    assert (room->tail_due_ms == 0);
    zchat_client_room_tail (room, 15, now);
    assert (room->tail_seq == 15 && room->tail_due_ms > now);
    zchat_client_room_tick (room, now);
    assert (room->fetch_id == 0);
    zchat_client_room_tick (room, room->tail_due_ms);
    assert (room->tail_due_ms == 0 && room->fetch_id);
    fetch = room->fetch_id;
    req = (zchat_client_request_t *) zchat_idmap_lookup (client->requests, fetch);
    assert (req && req->from_seq == 12 && req->to_seq == 15);

    //  Refused: asked again after a pause, not before; the broker's
    //  retry_ms when it tells one
    zchat_client_room_fetch_refused (room, fetch + 1, 0, now);
    assert (room->fetch_id == fetch);
    zchat_client_room_fetch_refused (room, fetch, 0, now);
    assert (room->fetch_id == 0 && room->fetch_retry_ms == now + S_FETCH_RETRY_MS);
    int64_t retried = room->fetch_retry_ms;
    zchat_client_room_tick (room, retried);
    assert (room->fetch_id && room->fetch_id != fetch);
    fetch = room->fetch_id;
    zchat_client_room_fetch_refused (room, fetch, 250, retried);
    assert (room->fetch_id == 0 && room->fetch_retry_ms == retried + 250);
    zchat_client_room_tick (room, room->fetch_retry_ms - 1);
    assert (room->fetch_id == 0);
    zchat_client_room_tick (room, room->fetch_retry_ms);
    assert (room->fetch_id && room->fetch_id != fetch);
    fetch = room->fetch_id;

    //  History no longer holds the start of the range: a gap, then the rest
    zchat_encode_page_begin (buf, fetch, "lobby", 14, 15, false);
    zchat_encode_page_add (buf, 14, 14, "bob", ZCHAT_KIND_TEXT, "a", 1);
    msg = s_test_msg (client, zchat_encode_page_add (buf, 15, 15, "bob", ZCHAT_KIND_TEXT,
                                                     "b", 1));
    zchat_client_room_page (room, fetch, &msg, now);
    event = zchat_client_queue_pop (&client->queue);
    assert (event && event->type == ZCHAT_EV_GAP && streq (event->room, "lobby"));
    assert (event->from_seq == 12 && event->to_seq == 13);
    zchat_event_destroy (&event);
    assert (s_test_expect (client, ZCHAT_EV_MESSAGE, 0) == 14);
    assert (s_test_expect (client, ZCHAT_EV_MESSAGE, 0) == 15);

    //  A message from a nick that breaks the rules takes its place in the
    //  sequence but never reaches the caller
    zchat_client_room_message (room, 16, 16, "-bad", ZCHAT_KIND_TEXT, "x", 1);
    assert (client->queue.count == 0 && zchat_sequencer_last (room->sequencer) == 16);

    //  Behind on our SUB when a PONG tells the tail: the fetch from 17 is
    //  out while the same messages arrive live and pass it. Its page,
    //  stopped early (more), brings only what was seen: no gap, nothing
    //  twice, and the rest is asked for from where live traffic got to
    int64_t later = room->fetch_retry_ms;     //  past the refusal above
    zchat_client_room_tail (room, 30, later);
    zchat_client_room_tick (room, room->tail_due_ms);
    fetch = room->fetch_id;
    req = (zchat_client_request_t *) zchat_idmap_lookup (client->requests, fetch);
    assert (fetch && req && req->from_seq == 17 && req->to_seq == 30);
    for (uint64_t seq = 17; seq <= 22; seq++) {
        zchat_client_room_message (room, seq, seq, "bob", ZCHAT_KIND_TEXT, "live", 4);
        assert (s_test_expect (client, ZCHAT_EV_MESSAGE, 0) == seq);
    }
    zchat_encode_page_begin (buf, fetch, "lobby", 1, 30, true);
    zchat_encode_page_add (buf, 17, 17, "bob", ZCHAT_KIND_TEXT, "live", 4);
    zchat_encode_page_add (buf, 18, 18, "bob", ZCHAT_KIND_TEXT, "live", 4);
    msg = s_test_msg (client, zchat_encode_page_add (buf, 19, 19, "bob", ZCHAT_KIND_TEXT,
                                                     "live", 4));
    zchat_client_room_page (room, fetch, &msg, later);
    assert (client->queue.count == 0 && zchat_sequencer_last (room->sequencer) == 22);
    assert (room->fetch_id && room->fetch_id != fetch);
    fetch = room->fetch_id;
    req = (zchat_client_request_t *) zchat_idmap_lookup (client->requests, fetch);
    assert (req && req->from_seq == 23 && req->to_seq == 30);
    zchat_encode_page_begin (buf, fetch, "lobby", 1, 30, false);
    for (uint64_t seq = 23; seq < 30; seq++)
        zchat_encode_page_add (buf, seq, seq, "bob", ZCHAT_KIND_TEXT, "old", 3);
    msg = s_test_msg (client, zchat_encode_page_add (buf, 30, 30, "bob", ZCHAT_KIND_TEXT,
                                                     "old", 3));
    zchat_client_room_page (room, fetch, &msg, later);
    for (uint64_t seq = 23; seq <= 30; seq++)
        assert (s_test_expect (client, ZCHAT_EV_MESSAGE, 0) == seq);
    assert (client->queue.count == 0 && room->fetch_id == 0);

    //  A PONG told a tail while our SUB still delivers: the fetch waits a
    //  grace more each time live messages came meanwhile, and goes after
    //  a grace without any
    zchat_client_room_tail (room, 34, later);
    int64_t due = room->tail_due_ms;
    zchat_client_room_message (room, 31, 31, "bob", ZCHAT_KIND_TEXT, "live", 4);
    assert (s_test_expect (client, ZCHAT_EV_MESSAGE, 0) == 31);
    zchat_client_room_tick (room, due);
    assert (room->fetch_id == 0 && room->tail_due_ms == due + S_TAIL_GRACE_MS);
    zchat_client_room_tick (room, room->tail_due_ms);
    assert (room->tail_due_ms == 0 && room->fetch_id);
    fetch = room->fetch_id;
    req = (zchat_client_request_t *) zchat_idmap_lookup (client->requests, fetch);
    assert (req && req->from_seq == 32 && req->to_seq == 34);
    //  The page says the room is at 36 by now: that tail is due a grace
    //  later, as a PONG's would be
    zchat_encode_page_begin (buf, fetch, "lobby", 1, 36, false);
    zchat_encode_page_add (buf, 32, 32, "bob", ZCHAT_KIND_TEXT, "old", 3);
    zchat_encode_page_add (buf, 33, 33, "bob", ZCHAT_KIND_TEXT, "old", 3);
    msg = s_test_msg (client, zchat_encode_page_add (buf, 34, 34, "bob", ZCHAT_KIND_TEXT,
                                                     "old", 3));
    zchat_client_room_page (room, fetch, &msg, later);
    for (uint64_t seq = 32; seq <= 34; seq++)
        assert (s_test_expect (client, ZCHAT_EV_MESSAGE, 0) == seq);
    assert (client->queue.count == 0 && room->fetch_id == 0);
    assert (room->tail_seq == 36 && room->tail_due_ms == later + S_TAIL_GRACE_MS);

    //  A new session: the fetch in flight is void, the room joins again;
    //  JOINED finds it confirmed, so it is live at once, and a join the
    //  caller asked again is reported under its own id
    zchat_client_room_tail (room, 40, now);
    zchat_client_room_tick (room, now + 60000);
    assert (room->fetch_id);
    zchat_client_room_rejoin (room, now);
    assert (room->fetch_id == 0 && room->state == R_JOINING);
    assert (!zchat_sequencer_fetching (room->sequencer));
    msg = s_test_msg (client, zchat_encode_joined (buf, 2, "lobby", 40, 1, 4, "new"));
    zchat_client_room_joined (room, 42, &msg, now);
    assert (room->state == R_LIVE && room->members == 4 && room->fetch_id);
    assert (client->queue.count == 0);
    zchat_client_room_joined (room, 43, &msg, now);
    assert (s_test_expect (client, ZCHAT_EV_JOINED, 43) == 40);
    //  Joined again, refused: reported under the id the caller knows;
    //  the room stays
    msg = s_test_msg (client, zchat_encode_error (buf, 3, ZCHAT_ERR_RATE_LIMITED, 100,
                                                  "slow down"));
    assert (!zchat_client_room_join_refused (room, 43, &msg, now));
    assert (s_test_expect (client, ZCHAT_EV_ERROR, 43) == 0);
    assert (room->rejoin_ms == 0);
    //  The room's own rejoin refused for now: nothing for the caller, and
    //  JOIN again once retry_ms has passed
    zchat_client_room_rejoin (room, now);
    size_t asked = zchat_idmap_size (client->requests);
    assert (!zchat_client_room_join_refused (room, 42, &msg, now));
    assert (client->queue.count == 0 && room->rejoin_ms == now + 100);
    zchat_client_room_tick (room, now + 99);
    assert (zchat_idmap_size (client->requests) == asked);
    zchat_client_room_tick (room, now + 100);
    assert (zchat_idmap_size (client->requests) == asked + 1);
    assert (room->rejoin_ms == 0 && room->state == R_JOINING);
    //  Refused for good: reported without an id, and the room is to be
    //  forgotten, as the broker has
    msg = s_test_msg (client, zchat_encode_error (buf, 4, ZCHAT_ERR_LIMIT, 0, "full"));
    assert (zchat_client_room_join_refused (room, 42, &msg, now));
    assert (s_test_expect (client, ZCHAT_EV_ERROR, 0) == 0);
    assert (room->rejoin_ms == 0);
    //  Destroyed, the client no longer finds it as the room last looked up
    client->last_room = room;
    zchat_client_room_destroy (&room);
    assert (room == NULL && client->last_room == NULL);
    zchat_client_room_destroy (&room);

    //  A first join refused: the room is to be forgotten
    room = zchat_client_room_new (client, "lobby", false);
    assert (room);
    room->join_id = 44;
    zchat_client_room_join (room, now);
    assert (zchat_client_room_join_refused (room, 44, &msg, now));
    assert (s_test_expect (client, ZCHAT_EV_ERROR, 44) == 0);
    zchat_client_room_destroy (&room);

    //  While probing, presence held is bounded; if the probe never comes
    //  back, the room says so and goes live without reporting the join,
    //  handing on what it held
    room = zchat_client_room_new (client, "busy", false);
    assert (room);
    room->join_id = 45;
    zchat_client_room_join (room, now);
    msg = s_test_msg (client, zchat_encode_joined (buf, 4, "busy", 0, 0, 1, ""));
    zchat_client_room_joined (room, 45, &msg, now);
    assert (room->state == R_PROBING);
    for (int i = 0; i < S_HELD_LIMIT + 5; i++)
        zchat_client_room_presence (room, s_test_presence (ZCHAT_EV_JOIN, "bob", ""));
    assert (room->held.count == S_HELD_LIMIT);
    //  PROBEs go again soon at first, then ever later, then every
    //  S_PROBE_IVL_MS: at JOINED, then 5, 10, 20, 40, 80, 160, 260 ms after
    int64_t start = room->probe_start_ms;
    int64_t probe_times [] = { 5, 10, 20, 40, 80, 160, 260, 360 };
    for (size_t i = 0; i < sizeof (probe_times) / sizeof (probe_times [0]); i++) {
        assert (room->probe_next_ms == start + probe_times [i]);
        zchat_client_room_tick (room, room->probe_next_ms);
    }
    zchat_client_room_tick (room, room->probe_start_ms + client->timeout_ms - 1);
    assert (room->state == R_PROBING && client->queue.count == 0);
    zchat_client_room_tick (room, room->probe_start_ms + client->timeout_ms);
    assert (room->state == R_LIVE && room->confirmed);
    event = zchat_client_queue_pop (&client->queue);
    assert (event && event->type == ZCHAT_EV_ERROR && event->id == 45);
    assert (event->code == ZCHAT_CLIENT_TIMEOUT && streq (event->room, "busy"));
    zchat_event_destroy (&event);
    assert (client->queue.count == S_HELD_LIMIT);
    for (int i = 0; i < S_HELD_LIMIT; i++)
        s_test_expect (client, ZCHAT_EV_JOIN, 0);
    zchat_client_room_destroy (&room);

    //  Over a link of 30 ms (JOIN to JOINED) no PROBE goes again sooner
    //  than that: 30, 60, 120, 220 ms after JOINED
    room = zchat_client_room_new (client, "far", false);
    assert (room);
    room->join_id = 48;
    zchat_client_room_join (room, now);
    msg = s_test_msg (client, zchat_encode_joined (buf, 6, "far", 0, 0, 1, ""));
    zchat_client_room_joined (room, 48, &msg, now + 30);
    start = room->probe_start_ms;
    assert (start == now + 30 && room->probe_rtt_ms == 30);
    int64_t far_times [] = { 30, 60, 120, 220 };
    for (size_t i = 0; i < sizeof (far_times) / sizeof (far_times [0]); i++) {
        assert (room->probe_next_ms == start + far_times [i]);
        zchat_client_room_tick (room, room->probe_next_ms);
    }
    zchat_client_room_destroy (&room);

    //  Send-only: reported at JOINED, nothing sequenced, fetched or held
    room = zchat_client_room_new (client, "ops", true);
    assert (room && room->send_only);
    room->join_id = 46;
    zchat_client_room_join (room, now);
    msg = s_test_msg (client, zchat_encode_joined (buf, 5, "ops", 7, 1, 2, "t"));
    zchat_client_room_joined (room, 46, &msg, now);
    assert (s_test_expect (client, ZCHAT_EV_JOINED, 46) == 7);
    assert (room->state == R_LIVE && room->confirmed && room->join_seq == 7);
    assert (!zchat_sequencer_started (room->sequencer));
    zchat_client_room_tail (room, 30, now);
    zchat_client_room_tick (room, now + 60000);
    assert (room->tail_due_ms == 0 && room->fetch_id == 0 && client->queue.count == 0);
    //  A receiving join upgrades it; refused, it is send-only again, with a
    //  fresh sequencer
    zchat_sequencer_t *sequencer = room->sequencer;
    assert (zchat_client_room_upgrade (room, 47, now) == 0);
    assert (!room->send_only && room->upgrade && !room->confirmed);
    assert (room->state == R_JOINING && room->join_id == 47);
    msg = s_test_msg (client, zchat_encode_error (buf, 6, ZCHAT_ERR_RATE_LIMITED, 100,
                                                  "slow down"));
    assert (!zchat_client_room_join_refused (room, 47, &msg, now));
    assert (s_test_expect (client, ZCHAT_EV_ERROR, 47) == 0);
    assert (room->send_only && !room->upgrade && room->confirmed && room->state == R_LIVE);
    assert (room->sequencer && room->sequencer != sequencer);
    //  Accepted, it probes and is reported once live
    assert (zchat_client_room_upgrade (room, 48, now) == 0);
    msg = s_test_msg (client, zchat_encode_joined (buf, 7, "ops", 8, 1, 2, "t"));
    zchat_client_room_joined (room, 48, &msg, now);
    assert (room->state == R_PROBING && client->queue.count == 0);
    zchat_client_room_probe (room, room->topic_frame, room->topic_frame_size, "alice", now);
    assert (s_test_expect (client, ZCHAT_EV_JOINED, 48) == 8);
    assert (room->state == R_LIVE && !room->upgrade);
    zchat_client_room_destroy (&room);

    //  Version 5: each probing episode has a tag of its own, 16 hex digits,
    //  which every PROBE of the episode carries; only a probe on that tag's
    //  topic, with our nick, makes the room live
    client->version = 5;
    room = zchat_client_room_new (client, "tagged", false);
    assert (room);
    room->join_id = 50;
    zchat_client_room_join (room, now);
    msg = s_test_msg (client, zchat_encode_joined (buf, 8, "tagged", 3, 1, 2, ""));
    zchat_client_room_joined (room, 50, &msg, now);
    assert (room->state == R_PROBING && room->probe_topic_size == 1 + S_PROBE_TAG_DIGITS);
    assert (room->probe_topic [0] == ZCHAT_PROBE_TOPIC);
    const char *tag = (const char *) room->probe_topic + 1;
    assert (strlen (tag) == S_PROBE_TAG_DIGITS
            && strspn (tag, "0123456789abcdef") == S_PROBE_TAG_DIGITS);
    assert (streq (s_test_probe_tag (client, "tagged"), tag));
    zchat_client_room_tick (room, room->probe_next_ms);
    assert (streq (s_test_probe_tag (client, "tagged"), tag));
    uint8_t first [ZCHAT_MAX_PROBE_TOPIC_FRAME];
    size_t first_size = room->probe_topic_size;
    memcpy (first, room->probe_topic, first_size);
    //  Not on the room's topic, nor a prefix of the tag's, nor another's
    zchat_client_room_probe (room, room->topic_frame, room->topic_frame_size, "alice", now);
    zchat_client_room_probe (room, first, first_size - 1, "alice", now);
    zchat_client_room_probe (room, first, first_size, "bob", now);
    assert (room->state == R_PROBING && client->queue.count == 0);
    //  A new session while probing: the JOIN ends the episode and its tag,
    //  the JOINED starts one with a fresh tag; a probe of the old tag, still
    //  on its way, proves nothing and is ignored
    zchat_client_room_rejoin (room, now);
    assert (room->state == R_JOINING && room->probe_topic_size == 0);
    msg = s_test_msg (client, zchat_encode_joined (buf, 9, "tagged", 4, 1, 2, ""));
    zchat_client_room_joined (room, 50, &msg, now);
    assert (room->state == R_PROBING && room->probe_topic_size == 1 + S_PROBE_TAG_DIGITS);
    assert (memcmp (room->probe_topic, first, first_size) != 0);
    assert (streq (s_test_probe_tag (client, "tagged"), (const char *) room->probe_topic + 1));
    zchat_client_room_probe (room, first, first_size, "alice", now);
    assert (room->state == R_PROBING && client->queue.count == 0);
    //  The current tag's: live, reported, the tag ended
    zchat_client_room_probe (room, room->probe_topic, room->probe_topic_size, "alice", now);
    assert (room->state == R_LIVE && room->probe_topic_size == 0);
    assert (s_test_expect (client, ZCHAT_EV_JOINED, 50) == 3);     //  the first join's
    zchat_client_room_destroy (&room);
    //  Given up (no probe came back): the tag ends too
    room = zchat_client_room_new (client, "lost", false);
    assert (room);
    room->join_id = 51;
    zchat_client_room_join (room, now);
    msg = s_test_msg (client, zchat_encode_joined (buf, 10, "lost", 0, 0, 1, ""));
    zchat_client_room_joined (room, 51, &msg, now);
    assert (room->state == R_PROBING && room->probe_topic_size == 1 + S_PROBE_TAG_DIGITS);
    zchat_client_room_tick (room, room->probe_start_ms + client->timeout_ms);
    assert (room->state == R_LIVE && room->probe_topic_size == 0);
    assert (s_test_expect (client, ZCHAT_EV_ERROR, 51) == 0);
    zchat_client_room_destroy (&room);
    //  Before version 5, untagged as ever: on the room's topic
    client->version = 4;
    room = zchat_client_room_new (client, "older", false);
    assert (room);
    room->join_id = 52;
    zchat_client_room_join (room, now);
    msg = s_test_msg (client, zchat_encode_joined (buf, 11, "older", 0, 0, 1, ""));
    zchat_client_room_joined (room, 52, &msg, now);
    assert (room->state == R_PROBING && room->probe_topic_size == 0);
    assert (streq (s_test_probe_tag (client, "older"), ""));
    zchat_client_room_probe (room, first, first_size, "alice", now);
    assert (room->state == R_PROBING);
    zchat_client_room_probe (room, room->topic_frame, room->topic_frame_size, "alice", now);
    assert (room->state == R_LIVE);
    assert (s_test_expect (client, ZCHAT_EV_JOINED, 52) == 0);
    zchat_client_room_destroy (&room);

    //  What a room buffers out of order is bounded in bytes too: with a
    //  broker's max_text of 64 KiB, about a thousand messages, not 10,000
    uint32_t max_texts [] = { 4096, ZCHAT_MAX_TEXT };
    for (size_t i = 0; i < 2; i++) {
        client->max_text = max_texts [i];
        room = zchat_client_room_new (client, "deep", false);
        assert (room);
        zchat_sequencer_start (room->sequencer, 0);
        zchat_sequencer_hold (room->sequencer, false);
        for (uint64_t seq = 2; seq < 2 + S_BUFFER_LIMIT + 100; seq++) {
            zchat_event_t *message = zchat_event_new (ZCHAT_EV_MESSAGE);
            assert (message);
            zchat_sequencer_offer (room->sequencer, seq, message);
        }
        size_t buffered = zchat_sequencer_buffered (room->sequencer);
        size_t bound = S_BUFFER_BYTES / (sizeof (zchat_event_t) + max_texts [i]);
        assert (buffered == (bound < S_BUFFER_LIMIT? bound: S_BUFFER_LIMIT));
        assert (buffered * (sizeof (zchat_event_t) + max_texts [i]) <= S_BUFFER_BYTES);
        zchat_client_room_destroy (&room);
    }
    assert (client->queue.count == 0);

    client->state = S_IDLE;
    zchat_client_destroy (&client);
    if (verbose)
        printf ("OK\n");
}
