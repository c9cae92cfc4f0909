//  zchat_client_test — the self test of libzchat's client: what needs no
//  broker. A bare ROUTER stands in for one where a test needs something to
//  connect to, and bodies are fed to the client as if they had come; the
//  protocol against the real broker is tested end to end in tests/.
//
//  Kept apart from zchat_client.c because it is nearly as long as the
//  client; it reaches the client's state through zchat_client_int.h.

#include <czmq.h>
#include <inttypes.h>
#include "zchat_client_int.h"
#include "zchat_client_room.h"
#include "zchat_sequencer.h"

//  A fake broker in its own thread: answers the first HELLO with ERROR 409,
//  as a broker does for a nick in use.
static void
s_test_refuser (zsock_t *pipe, void *args)
{
    zsock_t *router = (zsock_t *) args;
    zsock_signal (pipe, 0);
    zpoller_t *poller = zpoller_new (pipe, router, NULL);
    assert (poller);
    while (true) {
        void *which = zpoller_wait (poller, 5000);
        if (which != router)
            break;              //  $TERM, or the test is stuck
        zmsg_t *request = zmsg_recv (router);
        if (!request)
            break;
        zframe_t *routing_id = zmsg_pop (request);
        zframe_t *body = zmsg_last (request);
        zchat_msg_t msg;
        if (body && zchat_msg_decode (&msg, zframe_data (body), zframe_size (body)) == 0
        &&  msg.type == ZCHAT_HELLO) {
            uint8_t data [512];
            zchat_buf_t buf;
            zchat_buf_init (&buf, data, sizeof (data));
            size_t size = zchat_encode_error (&buf, msg.id, ZCHAT_ERR_NICK_IN_USE, 0,
                                              "nick alice is in use");
            zmsg_t *reply = zmsg_new ();
            zmsg_append (reply, &routing_id);
            zmsg_addmem (reply, "", 0);
            zmsg_addmem (reply, data, size);
            zmsg_send (&reply, router);
            zmsg_destroy (&reply);
        }
        zframe_destroy (&routing_id);
        zmsg_destroy (&request);
    }
    zpoller_destroy (&poller);
}

//  Feed one encoded body to the client as if from the SUB under topic.
static void
s_test_feed_on (zchat_client_t *client, const uint8_t *topic, size_t topic_size,
                size_t size)
{
    assert (size > 0);
    zchat_client_on_sub (client, topic, topic_size, client->buffer, size, zchat_client_now ());
}

//  Feed one encoded body to the client as if from the DEALER (sub false)
//  or the SUB, under its room's topic.
static void
s_test_feed (zchat_client_t *client, bool sub, size_t size)
{
    assert (size > 0);
    if (sub) {
        zchat_msg_t msg;
        int rc = zchat_msg_decode (&msg, client->buffer, size);
        assert (rc == ZCHAT_DECODE_OK);
        uint8_t topic [ZCHAT_MAX_TOPIC_FRAME];
        s_test_feed_on (client, topic, zchat_topic_frame (msg.room, topic), size);
    }
    else
        zchat_client_on_dealer (client, client->buffer, size, zchat_client_now ());
}

//  The next queued event, or NULL.
static zchat_event_t *
s_test_event (zchat_client_t *client)
{
    return zchat_client_queue_pop (&client->queue);
}

//  A broker that sends names breaking the rules (here: terminal escapes)
//  gets nothing of them to the caller; valid names pass unchanged.
static void
s_test_hostile_names (zchat_client_t *client)
{
    const char *evil = "x\x1b]0;owned\x07\x1b[2J";
    zchat_buf_t *buf = &client->buf;
    zchat_event_t *event;

    //  A WELCOME renaming us to an invalid nick keeps ours; max_text is told
    client->state = S_GREETING;
    zchat_client_set_sub_endpoint (client, "tcp://127.0.0.1:1");
    s_test_feed (client, false, zchat_encode_welcome (buf, client->hello_id, ZCHAT_VERSION,
                                                      evil, "token", 0, "", 1000, 3000,
                                                      1234, false));
    assert (client->state == S_READY);
    assert (streq (zchat_client_nick (client), "alice"));
    assert (zchat_client_max_text (client) == 1234);
    s_test_feed (client, false, zchat_encode_welcome (buf, 0, ZCHAT_VERSION, "alice2",
                                                      "token", 0, "", 1000, 3000,
                                                      0, false));
    assert (streq (zchat_client_nick (client), "alice2"));
    //  0 is no limit told: the wire's own
    assert (zchat_client_max_text (client) == ZCHAT_MAX_TEXT);
    while ((event = s_test_event (client)))
        zchat_event_destroy (&event);

    //  A live room, as after a confirmed join
    zchat_client_room_t *room = zchat_client_room_new (client, "lobby", false);
    assert (room);
    room->confirmed = true;
    room->state = R_LIVE;
    zchat_sequencer_start (room->sequencer, 0);
    zchat_sequencer_hold (room->sequencer, false);
    int rc = zhashx_insert (client->rooms, room->name, room);
    assert (rc == 0);

    //  A message from an invalid nick takes its place in the sequence
    //  but is not shown; the next one is
    s_test_feed (client, true, zchat_encode_message (buf, 0, "lobby", 1, 1, evil,
                                                     ZCHAT_KIND_TEXT, "hi", 2));
    assert (s_test_event (client) == NULL);
    s_test_feed (client, true, zchat_encode_message (buf, 0, "lobby", 2, 2, "bob",
                                                     ZCHAT_KIND_TEXT, "yo", 2));
    event = s_test_event (client);
    assert (event && event->type == ZCHAT_EV_MESSAGE && event->seq == 2);
    assert (streq (event->nick, "bob") && streq (event->room, "lobby"));
    zchat_event_destroy (&event);
    assert (zchat_sequencer_last (room->sequencer) == 2);

    //  A hole is fetched; a fetch left unanswered for the timeout is asked
    //  again, and the first answer, come late, is ignored
    s_test_feed (client, true, zchat_encode_message (buf, 0, "lobby", 4, 4, "bob",
                                                     ZCHAT_KIND_TEXT, "ahead", 5));
    assert (s_test_event (client) == NULL);
    uint64_t first_fetch = room->fetch_id;
    assert (first_fetch && zchat_sequencer_fetching (room->sequencer));
    zchat_client_room_tick (room, room->fetch_sent_ms + client->timeout_ms - 1);
    assert (room->fetch_id == first_fetch);
    zchat_client_room_tick (room, room->fetch_sent_ms + client->timeout_ms);
    assert (room->fetch_id && room->fetch_id != first_fetch);
    assert (zchat_idmap_lookup (client->requests, first_fetch) == NULL);
    zchat_encode_page_begin (buf, first_fetch, "lobby", 1, 4, false);
    s_test_feed (client, false, zchat_encode_page_add (buf, 3, 3, "bob", ZCHAT_KIND_TEXT,
                                                       "late", 4));
    assert (s_test_event (client) == NULL);
    zchat_encode_page_begin (buf, room->fetch_id, "lobby", 1, 4, false);
    s_test_feed (client, false, zchat_encode_page_add (buf, 3, 3, "bob", ZCHAT_KIND_TEXT,
                                                       "now", 3));
    event = s_test_event (client);
    assert (event && event->seq == 3 && streq (event->text, "now"));
    zchat_event_destroy (&event);
    event = s_test_event (client);
    assert (event && event->seq == 4 && streq (event->text, "ahead"));
    zchat_event_destroy (&event);
    assert (room->fetch_id == 0 && !zchat_sequencer_fetching (room->sequencer));

    //  Presence: an invalid nick, or an invalid new nick, is dropped
    s_test_feed (client, true, zchat_encode_event (buf, 0, "lobby", 3, ZCHAT_EVENT_JOIN,
                                                   evil, ""));
    s_test_feed (client, true, zchat_encode_event (buf, 0, "lobby", 3, ZCHAT_EVENT_NICK,
                                                   "bob", evil));
    s_test_feed (client, true, zchat_encode_event (buf, 0, "lobby", 3, ZCHAT_EVENT_TOPIC,
                                                   evil, "new topic"));
    assert (s_test_event (client) == NULL);
    assert (streq (room->topic, ""));
    s_test_feed (client, true, zchat_encode_event (buf, 0, "lobby", 3, ZCHAT_EVENT_NICK,
                                                   "bob", "bob[away]"));
    event = s_test_event (client);
    assert (event && event->type == ZCHAT_EV_NICK);
    assert (streq (event->nick, "bob") && streq (event->new_nick, "bob[away]"));
    zchat_event_destroy (&event);

    //  Direct messages
    s_test_feed (client, false, zchat_encode_deliver (buf, 0, evil, ZCHAT_KIND_TEXT, 4,
                                                      "psst", 4));
    assert (s_test_event (client) == NULL);
    s_test_feed (client, false, zchat_encode_deliver (buf, 0, "carol", ZCHAT_KIND_TEXT, 4,
                                                      "psst", 4));
    event = s_test_event (client);
    assert (event && event->type == ZCHAT_EV_DM && streq (event->nick, "carol"));
    zchat_event_destroy (&event);

    //  Lists keep their valid entries only
    uint64_t id = zchat_client_who (client, "lobby");
    assert (id);
    zchat_encode_members_begin (buf, id, evil);
    zchat_encode_members_add (buf, "alice2");
    zchat_encode_members_add (buf, evil);
    s_test_feed (client, false, zchat_encode_members_add (buf, "bob"));
    event = s_test_event (client);
    assert (event && event->type == ZCHAT_EV_MEMBERS && event->id == id);
    assert (streq (event->room, "lobby"));
    assert (event->item_count == 2);
    assert (streq (event->items [0].nick, "alice2") && streq (event->items [1].nick, "bob"));
    zchat_event_destroy (&event);
    id = zchat_client_rooms (client);
    assert (id);
    zchat_encode_roomlist_begin (buf, id);
    zchat_encode_roomlist_add (buf, evil, 1, 1, "");
    s_test_feed (client, false, zchat_encode_roomlist_add (buf, "ops", 2, 5, "t"));
    event = s_test_event (client);
    assert (event && event->type == ZCHAT_EV_ROOMS && event->item_count == 1);
    assert (streq (event->items [0].room, "ops"));
    zchat_event_destroy (&event);

    //  The answer about a topic always comes, for the room asked about;
    //  a setter with an invalid nick is left out
    id = zchat_client_topic (client, "lobby", NULL);
    assert (id);
    s_test_feed (client, false, zchat_encode_topicis (buf, id, evil, "t", evil, 5));
    event = s_test_event (client);
    assert (event && event->type == ZCHAT_EV_TOPIC && event->id == id);
    assert (streq (event->room, "lobby") && streq (event->nick, "") && streq (event->topic, "t"));
    zchat_event_destroy (&event);
    //  Unasked, about a room with an invalid name: dropped
    s_test_feed (client, false, zchat_encode_topicis (buf, 0, evil, "t", "bob", 5));
    assert (s_test_event (client) == NULL);
    id = zchat_client_topic (client, "lobby", NULL);
    assert (id);
    s_test_feed (client, false, zchat_encode_topicis (buf, id, evil, "", "", 0));
    event = s_test_event (client);
    assert (event && event->type == ZCHAT_EV_TOPIC && event->id == id);
    assert (streq (event->room, "lobby") && streq (event->nick, ""));
    zchat_event_destroy (&event);

    //  History: the invalid sender's message is left out, the page ends
    id = zchat_client_history (client, "lobby", 0, 0, 10);
    assert (id);
    zchat_encode_page_begin (buf, id, "lobby", 1, 2, false);
    zchat_encode_page_add (buf, 1, 1, evil, ZCHAT_KIND_TEXT, "hi", 2);
    s_test_feed (client, false, zchat_encode_page_add (buf, 2, 2, "bob", ZCHAT_KIND_TEXT,
                                                       "yo", 2));
    event = s_test_event (client);
    assert (event && event->type == ZCHAT_EV_MESSAGE && event->seq == 2 && event->history);
    zchat_event_destroy (&event);
    event = s_test_event (client);
    assert (event && event->type == ZCHAT_EV_HISTORY && event->seq == 2);
    zchat_event_destroy (&event);

    //  An ACK naming an invalid room names the room we sent to
    id = zchat_client_say (client, "lobby", "hi", 2, false);
    assert (id);
    s_test_feed (client, false, zchat_encode_ack (buf, id, evil, 3, 6));
    event = s_test_event (client);
    assert (event && event->type == ZCHAT_EV_ACK && streq (event->room, "lobby"));
    zchat_event_destroy (&event);
    assert (s_test_event (client) == NULL);
}

//  The id of a request of kind for room in the client's table (sent or
//  not), or 0.
static uint64_t
s_test_request (zchat_client_t *client, zchat_client_req_kind_t kind, const char *room)
{
    size_t cursor = 0;
    uint64_t id;
    zchat_client_request_t *req;
    while ((req = (zchat_client_request_t *) zchat_idmap_next (client->requests, &cursor, &id)))
        if (req->kind == kind && streq (req->room, room))
            return id;
    return 0;
}

//  The next subscription change an XPUB saw, as "+topic" or "-topic"
//  (fresh string), or NULL if none came within timeout_ms.
static char *
s_test_subscription (zsock_t *xpub, int timeout_ms)
{
    zsock_set_rcvtimeo (xpub, timeout_ms);
    zframe_t *frame = zframe_recv (xpub);
    if (!frame)
        return NULL;
    const char *data = (const char *) zframe_data (frame);
    size_t size = zframe_size (frame);
    char *change = size? zsys_sprintf ("%c%.*s", data [0] == 1? '+': '-',
                                       (int) size - 1, data + 1): NULL;
    zframe_destroy (&frame);
    return change;
}

//  Assert that the next subscription change an XPUB sees is expected.
static void
s_test_expect_subscription (zsock_t *xpub, const char *expected)
{
    char *change = s_test_subscription (xpub, 5000);
    assert (change && streq (change, expected));
    zstr_free (&change);
}

//  The next queued event, which must be of type and answer id (any id if
//  id is 0); destroyed, its seq returned.
static uint64_t
s_test_expect_event (zchat_client_t *client, zchat_event_type_t type, uint64_t id)
{
    zchat_event_t *event = s_test_event (client);
    assert (event && event->type == type);
    assert (id == 0 || event->id == id);
    uint64_t seq = event->seq;
    zchat_event_destroy (&event);
    return seq;
}

//  A client named alice, greeted by a broker that is not there (nothing
//  listens at its endpoint): answers are fed in by hand. Its SUB connects
//  to sub_endpoint.
static zchat_client_t *
s_test_greeted_client (const char *sub_endpoint)
{
    zchat_client_t *client = zchat_client_new ("tcp://127.0.0.1:1", "alice");
    assert (client);
    zchat_client_set_sub_endpoint (client, sub_endpoint);
    client->state = S_GREETING;
    s_test_feed (client, false, zchat_encode_welcome (&client->buf, client->hello_id,
                                                      ZCHAT_VERSION, "alice", "token", 0, "",
                                                      1000, 3000, 0, false));
    assert (client->state == S_READY);
    return client;
}

//  A 429 that comes while greeting again, for a send given up already
//  (the broker held a copy on its way, PROTOCOL.md 6.3), is not the
//  HELLO's refusal: nothing reaches the caller. A refusal that answers no
//  request of ours is the HELLO's.
static void
s_test_late_429_while_greeting (void)
{
    zchat_client_t *client = s_test_greeted_client ("tcp://127.0.0.1:1");
    client->state = S_GREETING;
    uint64_t gone = client->hello_id + 1000;    //  no send or request of ours
    assert (!zchat_outbox_lookup (client->outbox, gone)
            && !zchat_idmap_lookup (client->requests, gone));
    s_test_feed (client, false, zchat_encode_error (&client->buf, gone,
                                                    ZCHAT_ERR_RATE_LIMITED, 100, "held"));
    assert (s_test_event (client) == NULL && !client->greet_error_told);
    s_test_feed (client, false, zchat_encode_error (&client->buf, gone,
                                                    ZCHAT_ERR_NICK_IN_USE, 0, "in use"));
    zchat_event_t *event = s_test_event (client);
    assert (event && event->type == ZCHAT_EV_ERROR && event->code == ZCHAT_ERR_NICK_IN_USE);
    zchat_event_destroy (&event);
    assert (client->greet_error_told);
    client->state = S_IDLE;
    zchat_client_destroy (&client);
}

//  Batched answers: an ACKS item and an ACKRUNS run are each the ACKs they
//  stand for, in order; ids that are not ours (answered already, or never
//  sent) are passed over. No broker: answers are fed in.
static void
s_test_ack_batches (void)
{
    zchat_client_t *client = s_test_greeted_client ("tcp://127.0.0.1:1");
    zchat_buf_t *buf = &client->buf;
    uint64_t ids [6];
    for (int i = 0; i < 6; i++) {
        ids [i] = zchat_client_say (client, "ops", "hi", 2, false);
        assert (ids [i] && (i == 0 || ids [i] == ids [i - 1] + 1));
    }
    zchat_encode_ackruns_begin (buf);
    zchat_encode_ackruns_add (buf, ids [0] - 2, 5, "ops", 8, 1000);
    s_test_feed (client, false, zchat_encode_ackruns_add (buf, ids [3], 2, "ops", 20, 1001));
    zchat_encode_acks_begin (buf);
    zchat_encode_acks_add (buf, ids [0], "ops", 10, 1000);
    s_test_feed (client, false, zchat_encode_acks_add (buf, ids [5], "ops", 30, 1002));
    //  The first run: ids [0..2] at seqs 10-12 (two before them not ours)
    const uint64_t seqs [6] = { 10, 11, 12, 20, 21, 30 };
    for (int i = 0; i < 6; i++) {
        zchat_event_t *event = s_test_event (client);
        assert (event && event->type == ZCHAT_EV_ACK && event->id == ids [i]);
        assert (event->seq == seqs [i] && streq (event->room, "ops"));
        assert (event->ts == (i < 3? 1000: i < 5? 1001: 1002));
        zchat_event_destroy (&event);
    }
    assert (s_test_event (client) == NULL && zchat_client_pending (client) == 0);
    //  A run of 2^32 - 1 ids, ours among them: only ours are walked (it
    //  would take seconds otherwise), and acknowledged
    uint64_t id = zchat_client_say (client, "ops", "hi", 2, false);
    assert (id);
    zchat_encode_ackruns_begin (buf);
    int64_t start = zclock_mono ();
    s_test_feed (client, false, zchat_encode_ackruns_add (buf, id - 1000, UINT32_MAX,
                                                          "ops", 1, 1003));
    assert (zclock_mono () - start < 1000);
    zchat_event_t *event = s_test_event (client);
    assert (event && event->type == ZCHAT_EV_ACK && event->id == id && event->seq == 1001);
    zchat_event_destroy (&event);
    assert (s_test_event (client) == NULL && zchat_client_pending (client) == 0);
    //  Runs over a wide gap between two of our sends (a broker that holds
    //  one ACK back while we draw ids for sends it answers, pings and
    //  requests; here the ids are skipped by hand): each run is walked by
    //  our sends in it, not by the ids between them
    uint64_t held = zchat_client_say (client, "ops", "hi", 2, false);
    client->next_id += (uint64_t) 1 << 26;
    id = zchat_client_say (client, "ops", "hi", 2, false);
    assert (held && id == held + 1 + ((uint64_t) 1 << 26));
    zchat_encode_ackruns_begin (buf);
    size_t size = 0;
    for (int i = 0; i < 8; i++)
        size = zchat_encode_ackruns_add (buf, held + 1, UINT32_MAX, "ops", 1, 1004);
    start = zclock_mono ();
    s_test_feed (client, false, size);
    assert (zclock_mono () - start < 1000);
    event = s_test_event (client);
    assert (event && event->type == ZCHAT_EV_ACK && event->id == id);
    assert (event->seq == 1 + (id - held - 1));
    zchat_event_destroy (&event);
    assert (s_test_event (client) == NULL && zchat_client_pending (client) == 1);
    s_test_feed (client, false, zchat_encode_ack (buf, held, "ops", 9, 1004));
    event = s_test_event (client);
    assert (event && event->type == ZCHAT_EV_ACK && event->id == held);
    zchat_event_destroy (&event);
    assert (s_test_event (client) == NULL && zchat_client_pending (client) == 0);
    client->state = S_IDLE;
    zchat_client_destroy (&client);
}

//  The cap after a 429 (zchat_client_send_room): 64 in flight, one more for each ACK
//  of the refused send or a later one, off at S_SEND_CAP_OPEN; a new session
//  takes it off, a resumed one starts it again from the bottom. No broker:
//  sends are marked as sent by hand and answers fed in.
static void
s_test_send_cap (void)
{
    zchat_client_t *client = s_test_greeted_client ("tcp://127.0.0.1:1");
    zchat_buf_t *buf = &client->buf;
    assert (zchat_client_send_room (client) == SIZE_MAX);
    uint64_t ids [4];
    for (int i = 0; i < 4; i++) {
        ids [i] = zchat_client_say (client, "ops", "hi", 2, false);
        assert (ids [i]);
        zchat_outbox_entry_t *send = zchat_outbox_lookup (client->outbox, ids [i]);
        assert (send);
        if (send->unsent)
            zchat_outbox_sent (client->outbox, send, zchat_client_now ());
    }
    //  ids [1] refused: it and ids [2..3] wait again, ids [0] is in flight
    s_test_feed (client, false, zchat_encode_error (buf, ids [1], ZCHAT_ERR_RATE_LIMITED,
                                                    100, "slow down"));
    assert (client->send_cap == S_SEND_CAP_RESUME && client->cap_from_id == ids [1]);
    assert (zchat_outbox_in_flight (client->outbox) == 1);
    assert (zchat_client_send_room (client) == S_SEND_CAP_RESUME - 1);
    //  The ACK of what the broker took before it refused does not count
    s_test_feed (client, false, zchat_encode_ack (buf, ids [0], "ops", 1, 1));
    assert (client->send_cap == S_SEND_CAP_RESUME);
    assert (zchat_client_send_room (client) == S_SEND_CAP_RESUME);
    //  The refused one's, and later ones', do
    zchat_outbox_entry_t *send = zchat_outbox_lookup (client->outbox, ids [1]);
    assert (send);
    zchat_outbox_sent (client->outbox, send, zchat_client_now ());
    s_test_feed (client, false, zchat_encode_ack (buf, ids [1], "ops", 2, 1));
    assert (client->send_cap == S_SEND_CAP_RESUME + 1);
    client->send_cap = S_SEND_CAP_OPEN - 1;
    send = zchat_outbox_lookup (client->outbox, ids [2]);
    assert (send);
    zchat_outbox_sent (client->outbox, send, zchat_client_now ());
    s_test_feed (client, false, zchat_encode_ack (buf, ids [2], "ops", 3, 1));
    assert (client->send_cap == 0 && zchat_client_send_room (client) == SIZE_MAX);
    //  Housekeeping during a pause after a 429 comes back when it ends,
    //  not a whole idle round later
    int64_t now = zchat_client_now ();
    client->last_recv_ms = client->last_send_ms = now;
    client->send_pause_until = now + 300;
    assert (zchat_outbox_next_unsent (client->outbox));
    zchat_client_housekeep (client, now);
    assert (client->due_ms <= client->send_pause_until);
    assert (zchat_client_due_ms (client) <= 300);
    //  A pause that has ended by the precise clock is over, though the
    //  coarse one (a tick behind) does not say so yet
    int64_t coarse = zchat_client_now_coarse ();
    int64_t fine = zchat_client_now ();
    for (int i = 0; i < 1000 && coarse >= fine; i++) {
        zclock_sleep (1);
        coarse = zchat_client_now_coarse ();
        fine = zchat_client_now ();
    }
    if (coarse < fine) {        //  else this kernel's coarse clock never lags
        client->send_pause_until = fine;
        assert (zchat_client_want_write (client));
        assert (zchat_client_due_ms (client) <= S_WRITE_RETRY_MS);
    }
    client->send_pause_until = 0;
    //  A resumed session starts the cap again; a new one takes it off
    client->send_cap = S_SEND_CAP_RESUME + 10;
    s_test_feed (client, false, zchat_encode_welcome (buf, 0, ZCHAT_VERSION, "alice", "token",
                                                      0, "", 1000, 3000, 0, true));
    assert (client->send_cap == S_SEND_CAP_RESUME);
    s_test_feed (client, false, zchat_encode_welcome (buf, 0, ZCHAT_VERSION, "alice", "token",
                                                      0, "", 1000, 3000, 0, false));
    assert (client->send_cap == 0);
    zchat_client_destroy (&client);
}

//  A DM refused with 429 is not reported: it waits, with every send that
//  went out after it (a SAY too), for the retry time, then goes again in
//  order, while what went out before it stays in flight; its ACK comes
//  to the caller as any other. Other refusals of a DM are reported. No
//  broker: sends are marked as sent by hand and answers fed in.
static void
s_test_dm_refused (void)
{
    zchat_client_t *client = s_test_greeted_client ("tcp://127.0.0.1:1");
    zchat_buf_t *buf = &client->buf;
    uint64_t ids [3];
    ids [0] = zchat_client_say (client, "ops", "one", 3, false);
    ids [1] = zchat_client_dm (client, "bob", "psst", 4, false);
    ids [2] = zchat_client_say (client, "ops", "two", 3, false);
    zchat_outbox_entry_t *sends [3];
    for (int i = 0; i < 3; i++) {
        assert (ids [i]);
        sends [i] = zchat_outbox_lookup (client->outbox, ids [i]);
        assert (sends [i]);
        if (sends [i]->unsent)
            zchat_outbox_sent (client->outbox, sends [i], zchat_client_now ());
    }
    int64_t refused_at = zchat_client_now ();
    s_test_feed (client, false, zchat_encode_error (buf, ids [1], ZCHAT_ERR_RATE_LIMITED,
                                                    300, "slow down"));
    assert (s_test_event (client) == NULL);
    assert (zchat_outbox_lookup (client->outbox, ids [1]) == sends [1]);
    assert (zchat_outbox_next_unsent (client->outbox) == sends [1]);
    assert (sends [1]->queue.next == sends [2] && sends [2]->queue.next == NULL);
    assert (!sends [0]->unsent && zchat_outbox_in_flight (client->outbox) == 1);
    assert (client->send_pause_until >= refused_at + 300);
    assert (client->send_cap == S_SEND_CAP_RESUME && client->cap_from_id == ids [1]);
    //  The SAY after it, refused as well, finds itself waiting already
    s_test_feed (client, false, zchat_encode_error (buf, ids [2], ZCHAT_ERR_RATE_LIMITED,
                                                    300, "slow down"));
    assert (s_test_event (client) == NULL);
    assert (zchat_outbox_next_unsent (client->outbox) == sends [1]);
    //  Sent again after the retry time (by hand here), then acknowledged
    zchat_outbox_sent (client->outbox, sends [1], zchat_client_now ());
    s_test_feed (client, false, zchat_encode_ack (buf, ids [1], "", 0, 5));
    zchat_event_t *event = s_test_event (client);
    assert (event && event->type == ZCHAT_EV_ACK && event->id == ids [1]);
    assert (streq (event->nick, "bob") && streq (event->room, "") && event->ts == 5);
    zchat_event_destroy (&event);
    assert (zchat_outbox_lookup (client->outbox, ids [1]) == NULL);
    //  Not a refusal for now: reported, and forgotten
    uint64_t id = zchat_client_dm (client, "nobody", "x", 1, false);
    assert (id);
    s_test_feed (client, false, zchat_encode_error (buf, id, ZCHAT_ERR_NO_SUCH_NICK, 0,
                                                    "no such nick: nobody"));
    event = s_test_event (client);
    assert (event && event->type == ZCHAT_EV_ERROR && event->id == id);
    assert (event->code == ZCHAT_ERR_NO_SUCH_NICK && streq (event->nick, "nobody"));
    zchat_event_destroy (&event);
    assert (zchat_outbox_lookup (client->outbox, id) == NULL);
    zchat_client_destroy (&client);
}

//  The DMs and SAYs that reach router, their ids put in got (at most
//  most): want of them, each within a generous time, then any more that
//  come within quiet_ms. The items of a SAYS count one by one; PINGs are
//  skipped. Returns how many.
static size_t
s_test_sends_seen (zsock_t *router, uint64_t *got, size_t most, size_t want, int quiet_ms)
{
    size_t count = 0;
    zsock_set_rcvtimeo (router, want? 5000: quiet_ms);
    zmsg_t *request;
    while ((request = zmsg_recv (router))) {
        zframe_t *body = zmsg_last (request);
        if (body && zframe_size (body) == 0) {
            zmsg_destroy (&request);            //  a new connection's probe
            continue;
        }
        zchat_msg_t msg;
        assert (body && zchat_msg_decode (&msg, zframe_data (body),
                                          zframe_size (body)) == ZCHAT_DECODE_OK);
        assert (msg.type == ZCHAT_DM || msg.type == ZCHAT_SAY || msg.type == ZCHAT_SAYS
                || msg.type == ZCHAT_PING);
        size_t cursor = 0;
        zchat_say_t item;
        if (msg.type == ZCHAT_SAYS)
            while (zchat_msg_next_say (&msg, &cursor, &item)) {
                assert (count < most);
                got [count++] = item.id;
            }
        else
        if (msg.type != ZCHAT_PING) {
            assert (count < most);
            got [count++] = msg.id;
        }
        if (want && count >= want)
            zsock_set_rcvtimeo (router, quiet_ms);
        zmsg_destroy (&request);
    }
    return count;
}

//  A ROUTER standing in for the broker's and a greeted client (*client_p)
//  whose DEALER, named "alice", is connected to it. Over inproc what one
//  side sends the other can read as soon as the send returns, so the test
//  knows what is waiting for the client without timing anything. No timer
//  of the client's own comes due while the test runs: the test drives
//  housekeeping with the times it chooses.
static zsock_t *
s_test_stand_in (zchat_client_t **client_p)
{
    static int stand_ins = 0;
    char endpoint [64];
    snprintf (endpoint, sizeof (endpoint), "inproc://zchat-test-router-%d", ++stand_ins);
    zsock_t *router = zsock_new (ZMQ_ROUTER);
    assert (router);
    int rc = zsock_bind (router, "%s", endpoint);
    assert (rc == 0);
    zchat_client_t *client = s_test_greeted_client ("tcp://127.0.0.1:1");
    client->heartbeat_ms = 60000;
    client->session_ms = 180000;
    client->timeout_ms = 180000;
    zsock_set_identity (client->dealer, "alice");
    rc = zsock_connect (client->dealer, "%s", endpoint);
    assert (rc == 0);
    for (int i = 0; i < 5000 && !(zsock_events (client->dealer) & ZMQ_POLLOUT); i++)
        zclock_sleep (1);
    assert (zsock_events (client->dealer) & ZMQ_POLLOUT);
    *client_p = client;
    return router;
}

//  Send the body encoded in the client's buffer (size bytes) from the
//  stand-in to the client, unread until the client reads it.
static void
s_test_answer (zsock_t *router, zchat_client_t *client, size_t size)
{
    assert (size > 0);
    int rc = zstr_sendm (router, "alice");
    assert (rc == 0);
    rc = zstr_sendm (router, "");
    assert (rc == 0);
    zframe_t *body = zframe_new (client->buffer, size);
    assert (body);
    rc = zframe_send (&body, router, 0);
    assert (rc == 0);
}

//  The DM window: of 600 DMs made at once with no ACK coming back, only
//  S_DM_WINDOW go out, and a SAY made after them waits behind them; a new
//  session sends those same ones again and no more; each ACK lets one
//  more go, in order, through the caller's ordinary calls. A ROUTER stands
//  in for the broker's, so that what the DEALER really sends is seen; the
//  answers are fed in by hand.
#define S_TEST_DMS  600
static void
s_test_dm_window (void)
{
    zsock_t *router = zsock_new (ZMQ_ROUTER);
    assert (router);
    int port = zsock_bind (router, "tcp://127.0.0.1:*");
    assert (port > 0);
    zchat_client_t *client = s_test_greeted_client ("tcp://127.0.0.1:1");
    zchat_buf_t *buf = &client->buf;
    //  No resend or ping of its own while the test runs, however slowly
    client->heartbeat_ms = 60000;
    client->session_ms = 180000;
    client->timeout_ms = 180000;
    int rc = zsock_connect (client->dealer, "tcp://127.0.0.1:%d", port);
    assert (rc == 0);
    //  The DEALER is IMMEDIATE: it takes nothing until it is connected
    for (int i = 0; i < 5000 && !(zsock_events (client->dealer) & ZMQ_POLLOUT); i++)
        zclock_sleep (1);
    assert (zsock_events (client->dealer) & ZMQ_POLLOUT);

    uint64_t ids [S_TEST_DMS + 1];
    for (int i = 0; i < S_TEST_DMS; i++) {
        char text [16];
        int size = snprintf (text, sizeof (text), "dm %d", i);
        ids [i] = zchat_client_dm (client, "bob", text, (size_t) size, false);
        assert (ids [i]);
    }
    ids [S_TEST_DMS] = zchat_client_say (client, "ops", "after", 5, false);
    assert (ids [S_TEST_DMS]);
    assert (zchat_client_pending (client) == S_TEST_DMS + 1);
    //  Passes of the caller's loop change nothing while no ACK comes, and
    //  nothing tells it to come back for a writable DEALER
    assert (zchat_client_next (client, 0) == NULL);
    assert (zchat_client_next (client, 50) == NULL);
    assert (!zchat_client_want_write (client));
    uint64_t got [S_TEST_DMS * 2];
    size_t seen = s_test_sends_seen (router, got, S_TEST_DMS * 2, S_DM_WINDOW, 200);
    assert (seen == S_DM_WINDOW);
    for (size_t i = 0; i < seen; i++)
        assert (got [i] == ids [i]);
    assert (zchat_outbox_in_flight (client->outbox) == S_DM_WINDOW);
    assert (zchat_outbox_dms_out (client->outbox) == S_DM_WINDOW);

    //  A new session (resumed) sends what was out again, no more
    s_test_feed (client, false, zchat_encode_welcome (buf, 0, ZCHAT_VERSION, "alice", "token",
                                                      0, "", 60000, 180000, 0, true));
    assert (zchat_client_next (client, 0) == NULL);
    seen = s_test_sends_seen (router, got, S_TEST_DMS * 2, S_DM_WINDOW, 100);
    assert (seen == S_DM_WINDOW);
    for (size_t i = 0; i < seen; i++)
        assert (got [i] == ids [i]);

    //  Each ACK makes room for one more, in order, the SAY last; every
    //  send gets its ACK event
    size_t acked = 0, sent = S_DM_WINDOW, events = 0;
    while (acked < S_TEST_DMS + 1) {
        //  A few at a time, as they come from a broker
        size_t until = acked + 50 < sent? acked + 50: sent;
        for (; acked < until; acked++)
            s_test_feed (client, false, acked < S_TEST_DMS?
                         zchat_encode_ack (buf, ids [acked], "", 0, 1):
                         zchat_encode_ack (buf, ids [acked], "ops", 1, 1));
        zchat_event_t *event;
        while ((event = zchat_client_next (client, 0))) {
            assert (event->type == ZCHAT_EV_ACK && event->id == ids [events]);
            events++;
            zchat_event_destroy (&event);
        }
        assert (events == acked);
        //  Up to S_DM_WINDOW DMs past the last acknowledged one, and the
        //  SAY once the last DM went
        size_t due = acked + S_DM_WINDOW < S_TEST_DMS? acked + S_DM_WINDOW: S_TEST_DMS + 1;
        seen = s_test_sends_seen (router, got, S_TEST_DMS * 2, due - sent, 20);
        assert (seen == due - sent);
        for (size_t i = 0; i < seen; i++)
            assert (got [i] == ids [sent + i]);
        sent += seen;
        size_t dms_sent = sent < S_TEST_DMS? sent: S_TEST_DMS;
        size_t dms_acked = acked < S_TEST_DMS? acked: S_TEST_DMS;
        assert (zchat_outbox_dms_out (client->outbox) == dms_sent - dms_acked);
    }
    assert (sent == S_TEST_DMS + 1);
    assert (zchat_client_pending (client) == 0);
    assert (zchat_outbox_dms_out (client->outbox) == 0);

    //  One ACK lost, the later ones answered: no DM goes past S_DM_WINDOW
    //  from the unanswered one, which the broker must still recognise
    //  when it comes again; its ACK lets the rest go
    for (int i = 0; i < S_DM_WINDOW + 10; i++) {
        ids [i] = zchat_client_dm (client, "bob", "again", 5, false);
        assert (ids [i]);
    }
    assert (zchat_client_next (client, 0) == NULL);
    seen = s_test_sends_seen (router, got, S_TEST_DMS * 2, S_DM_WINDOW, 100);
    assert (seen == S_DM_WINDOW && got [0] == ids [0]);
    for (int i = 1; i < S_DM_WINDOW; i++)
        s_test_feed (client, false, zchat_encode_ack (buf, ids [i], "", 0, 1));
    zchat_event_t *event;
    for (events = 0; (event = zchat_client_next (client, 0)); events++)
        zchat_event_destroy (&event);
    assert (events == S_DM_WINDOW - 1);
    assert (zchat_outbox_dms_out (client->outbox) == 1);
    assert (s_test_sends_seen (router, got, S_TEST_DMS * 2, 0, 50) == 0);
    s_test_feed (client, false, zchat_encode_ack (buf, ids [0], "", 0, 1));
    for (events = 0; (event = zchat_client_next (client, 0)); events++) {
        assert (event->type == ZCHAT_EV_ACK && event->id == ids [0]);
        zchat_event_destroy (&event);
    }
    assert (events == 1);
    seen = s_test_sends_seen (router, got, S_TEST_DMS * 2, 10, 50);
    assert (seen == 10 && got [0] == ids [S_DM_WINDOW] && got [9] == ids [S_DM_WINDOW + 9]);

    //  The window full again behind that oldest one, and DMs held: when
    //  the DEALER refuses its resend, it goes again first once the DEALER
    //  takes sends, not behind the DMs it holds back (which would wait
    //  for its ACK until it timed out)
    uint64_t oldest = ids [S_DM_WINDOW];
    for (int i = 0; i < S_DM_WINDOW; i++) {
        ids [300 + i] = zchat_client_dm (client, "bob", "more", 4, false);
        assert (ids [300 + i]);
    }
    assert (zchat_client_next (client, 0) == NULL);
    seen = s_test_sends_seen (router, got, S_TEST_DMS * 2, S_DM_WINDOW - 10, 100);
    assert (seen == S_DM_WINDOW - 10 && got [0] == ids [300]);
    for (int i = 1; i < 10; i++)
        s_test_feed (client, false, zchat_encode_ack (buf, ids [S_DM_WINDOW + i], "", 0, 1));
    for (int i = 0; i < S_DM_WINDOW - 10; i++)
        s_test_feed (client, false, zchat_encode_ack (buf, ids [300 + i], "", 0, 1));
    while ((event = zchat_client_next (client, 0)))
        zchat_event_destroy (&event);
    assert (zchat_outbox_dm_span (client->outbox) == S_DM_WINDOW);
    assert (s_test_sends_seen (router, got, S_TEST_DMS * 2, 0, 50) == 0);
    rc = zsock_disconnect (client->dealer, "tcp://127.0.0.1:%d", port);
    assert (rc == 0);
    client->heartbeat_ms = 20;
    zchat_outbox_entry_t *entry = zchat_outbox_lookup (client->outbox, oldest);
    for (int i = 0; i < 500 && !entry->unsent; i++)
        assert (zchat_client_next (client, 10) == NULL);
    assert (entry->unsent);
    client->heartbeat_ms = 60000;
    rc = zsock_connect (client->dealer, "tcp://127.0.0.1:%d", port);
    assert (rc == 0);
    for (int i = 0; i < 5000 && !(zsock_events (client->dealer) & ZMQ_POLLOUT); i++)
        zclock_sleep (1);
    assert (zchat_client_next (client, 0) == NULL);
    seen = s_test_sends_seen (router, got, S_TEST_DMS * 2, 1, 100);
    assert (seen == 1 && got [0] == oldest);
    //  A 429 for a send answered long ago is no ERROR event
    s_test_feed (client, false, zchat_encode_error (buf, ids [300], ZCHAT_ERR_RATE_LIMITED,
                                                    1, "held"));
    assert (zchat_client_next (client, 0) == NULL);
    //  No BYE on the way out: the stand-in would never answer it
    client->state = S_IDLE;
    zchat_client_destroy (&client);
    zsock_destroy (&router);
}

//  The stand-in acknowledges the two sends ids, which the client reports
//  in that order; nothing else is left waiting.
static void
s_test_acked_in_order (zsock_t *router, zchat_client_t *client, const uint64_t *ids)
{
    zchat_buf_t *buf = &client->buf;
    s_test_answer (router, client, zchat_encode_ack (buf, ids [0], "ops", 1, 1));
    s_test_answer (router, client, zchat_encode_ack (buf, ids [1], "ops", 2, 1));
    zchat_event_t *event;
    size_t acks = 0;
    while ((event = zchat_client_next (client, 0))) {
        assert (event->type == ZCHAT_EV_ACK && acks < 2 && event->id == ids [acks]);
        acks++;
        zchat_event_destroy (&event);
    }
    assert (acks == 2 && zchat_client_pending (client) == 0);
}

//  A heartbeat resend waits for what the broker has answered already: a
//  429 not read yet for an earlier send puts that send and every one
//  after it back in line first (PROTOCOL.md 6.3). Here the refused SAY
//  went again lately (a heartbeat resend that the broker held, too
//  early), so a later SAY's heartbeat comes due first; sent then, it
//  would end the broker's hold and be taken ahead of the refused one.
//  ahead: how many other replies wait ahead of the 429. waiting: the later
//  SAY's resend is not due by heartbeat but waits for the DEALER, which
//  did not take it before (the same, to the broker).
static void
s_test_resend_round (zsock_t *router, zchat_client_t *client, size_t ahead, bool waiting)
{
    zchat_buf_t *buf = &client->buf;
    uint64_t got [8];
    uint64_t ids [2];
    ids [0] = zchat_client_say (client, "ops", "one", 3, false);
    ids [1] = zchat_client_say (client, "ops", "two", 3, false);
    assert (ids [0] && ids [1]);
    assert (s_test_sends_seen (router, got, 8, 2, 0) == 2);
    assert (got [0] == ids [0] && got [1] == ids [1]);
    zchat_outbox_entry_t *one = zchat_outbox_lookup (client->outbox, ids [0]);
    zchat_outbox_entry_t *two = zchat_outbox_lookup (client->outbox, ids [1]);
    assert (one && two);
    int64_t base = zchat_client_now ();
    client->heartbeat_ms = 1000;
    zchat_outbox_sent (client->outbox, two, base);
    zchat_outbox_sent (client->outbox, one, base + 500);
    assert (zchat_outbox_stalest (client->outbox) == two);
    if (waiting)
        zchat_outbox_unsend (client->outbox, two);
    //  Answers to nothing of ours, which the client ignores
    for (size_t i = 0; i < ahead; i++)
        s_test_answer (router, client, zchat_encode_ack (buf, 1, "ops", 1, 1));
    s_test_answer (router, client, zchat_encode_error (buf, ids [0], ZCHAT_ERR_RATE_LIMITED,
                                                       100, "slow down"));
    //  The later SAY may go again, the refused one not yet: the 429 is
    //  read first, and both wait for the retry time
    zchat_client_housekeep (client, base + 1000);
    assert (one->unsent && two->unsent);
    assert (zchat_outbox_next_unsent (client->outbox) == one);
    assert (client->send_pause_until == base + 1100);
    assert (s_test_sends_seen (router, got, 8, 0, 0) == 0);
    //  Then they go again, in send order, and are acknowledged
    zchat_client_housekeep (client, base + 1100);
    assert (s_test_sends_seen (router, got, 8, 2, 0) == 2);
    assert (got [0] == ids [0] && got [1] == ids [1]);
    s_test_acked_in_order (router, client, ids);
    client->heartbeat_ms = 60000;
    client->send_pause_until = 0;
    client->send_cap = 0;
}

//  A new send made while a 429 waits unread, by a caller that has not let
//  us read for a while (busy with each event): the replies are read first,
//  so it waits behind the refused one instead of going ahead of it.
static void
s_test_new_send_after_429 (zsock_t *router, zchat_client_t *client)
{
    zchat_buf_t *buf = &client->buf;
    uint64_t got [8];
    uint64_t ids [2];
    ids [0] = zchat_client_say (client, "ops", "one", 3, false);
    assert (ids [0]);
    assert (s_test_sends_seen (router, got, 8, 1, 0) == 1 && got [0] == ids [0]);
    s_test_answer (router, client, zchat_encode_error (buf, ids [0], ZCHAT_ERR_RATE_LIMITED,
                                                       100, "slow down"));
    client->dealer_read_ms = zchat_client_now_coarse () - 1000;
    ids [1] = zchat_client_say (client, "ops", "two", 3, false);
    assert (ids [1]);
    assert (s_test_sends_seen (router, got, 8, 0, 0) == 0);
    zchat_outbox_entry_t *one = zchat_outbox_lookup (client->outbox, ids [0]);
    zchat_outbox_entry_t *two = zchat_outbox_lookup (client->outbox, ids [1]);
    assert (one && two && one->unsent && two->unsent);
    assert (zchat_outbox_next_unsent (client->outbox) == one);
    //  After the retry time both go, in send order
    zchat_client_housekeep (client, client->send_pause_until);
    assert (s_test_sends_seen (router, got, 8, 2, 0) == 2);
    assert (got [0] == ids [0] && got [1] == ids [1]);
    s_test_acked_in_order (router, client, ids);
    client->send_pause_until = 0;
    client->send_cap = 0;
}

static void
s_test_resend_after_429 (void)
{
    zchat_client_t *client;
    zsock_t *router = s_test_stand_in (&client);
    s_test_resend_round (router, client, 0, false);
    s_test_resend_round (router, client, S_BATCH + 100, false);
    s_test_resend_round (router, client, 0, true);
    s_test_new_send_after_429 (router, client);
    //  No BYE on the way out: the stand-in would never answer it
    client->state = S_IDLE;
    zchat_client_destroy (&client);
    zsock_destroy (&router);
}

//  Whether a PING reaches router within ms (any other message is not
//  expected: this client has nothing else to send).
static bool
s_test_pinged (zsock_t *router, int ms)
{
    zsock_set_rcvtimeo (router, ms);
    zmsg_t *request;
    bool pinged = false;
    while (!pinged && (request = zmsg_recv (router))) {
        zframe_t *body = zmsg_last (request);
        zchat_msg_t msg;
        if (body && zframe_size (body) > 0) {
            assert (zchat_msg_decode (&msg, zframe_data (body), zframe_size (body))
                    == ZCHAT_DECODE_OK);
            assert (msg.type == ZCHAT_PING);
            pinged = true;
        }
        zmsg_destroy (&request);
        zsock_set_rcvtimeo (router, 0);
    }
    return pinged;
}

//  The ping policy. Before version 6 an idle client pings every
//  heartbeat. From version 6 it pings only while something waits for an
//  answer or for ZCHAT_CLIENT_ACTIVE_HEARTBEATS after activity (a send,
//  anything but a PONG coming), and a PONG itself (the broker's check of our
//  connection) is no activity; silence from the broker does not end an
//  idle session whose connection is up, and does end one whose
//  connection is down. A ROUTER stands in for the broker's; housekeeping
//  runs at the times the test chooses.
static void
s_test_ping_policy (void)
{
    zchat_client_t *client;
    zsock_t *router = s_test_stand_in (&client);
    assert (client->version == ZCHAT_VERSION && ZCHAT_VERSION >= ZCHAT_VERSION_BOUND);
    client->heartbeat_ms = 1000;
    client->session_ms = 3000;
    int64_t now = zchat_client_now ();
    //  Just greeted: active, so it pings a heartbeat after its last send
    client->last_send_ms = now - 1000;
    zchat_client_housekeep (client, now);
    assert (s_test_pinged (router, 1000));
    //  Three heartbeats after the last activity: no more
    client->active_ms = now - 3 * 1000;
    client->last_send_ms = now - 1000;
    zchat_client_housekeep (client, now);
    assert (!s_test_pinged (router, 100));
    //  Idle far past the session timeout, connected: still in session,
    //  still no ping
    client->last_recv_ms = now - 60000;
    client->last_send_ms = now - 60000;
    zchat_client_housekeep (client, now);
    assert (client->state == S_READY && !s_test_pinged (router, 100));
    assert (s_test_event (client) == NULL);
    //  A PONG (a check of our connection) is no activity
    s_test_answer (router, client, zchat_encode_pong_begin (&client->buf, 0));
    zchat_client_drain (client, now);
    assert (client->last_recv_ms == now && client->active_ms == now - 3 * 1000);
    zchat_client_housekeep (client, now);
    assert (!s_test_pinged (router, 100));
    //  Something waiting for an answer: pings, and the silence rule holds
    //  again, counted from the last moment the client was idle (the
    //  request's own, on the client's clock)
    uint64_t id = zchat_client_rooms (client);
    int64_t idle_until = client->quiet_ms;
    assert (idle_until >= now);
    assert (id);
    zsock_set_rcvtimeo (router, 1000);
    zmsg_t *request = zmsg_recv (router);
    zchat_msg_t msg;
    assert (request && zchat_msg_decode (&msg, zframe_data (zmsg_last (request)),
                                         zframe_size (zmsg_last (request))) == 0);
    assert (msg.type == ZCHAT_ROOMS && msg.id == id);
    zmsg_destroy (&request);
    client->last_send_ms = now - 1000;
    zchat_client_housekeep (client, now);
    assert (s_test_pinged (router, 1000));
    zchat_client_housekeep (client, idle_until + 2999);
    assert (client->state == S_READY);
    zchat_client_housekeep (client, idle_until + 3000);
    assert (client->state == S_GREETING);
    zchat_event_t *event = s_test_event (client);
    assert (event && event->type == ZCHAT_EV_DISCONNECTED);
    zchat_event_destroy (&event);
    client->state = S_IDLE;
    zchat_client_destroy (&client);
    zsock_destroy (&router);

    //  Version 5: an idle client pings every heartbeat
    router = s_test_stand_in (&client);
    client->version = 5;
    client->heartbeat_ms = 1000;
    now = zchat_client_now ();
    client->active_ms = now - 60000;
    client->last_send_ms = now - 1000;
    zchat_client_housekeep (client, now);
    assert (s_test_pinged (router, 1000));
    client->state = S_IDLE;
    zchat_client_destroy (&client);
    zsock_destroy (&router);

    //  A ping due that the DEALER cannot take (no connection: nothing
    //  listens where it connects) brings housekeeping back a round later,
    //  not at once: that spun the caller's loop until the session ended
    client = s_test_greeted_client ("tcp://127.0.0.1:1");
    client->version = 5;
    now = zchat_client_now ();
    client->last_send_ms = now - 60000;
    client->last_recv_ms = now;
    zchat_client_housekeep (client, now);
    assert (client->state == S_READY && client->last_send_ms == now - 60000);
    assert (client->due_ms > now);
    client->state = S_IDLE;
    zchat_client_destroy (&client);

    //  Version 6 with no connection (nothing listens where it connects):
    //  idle, but the silence rule holds
    client = s_test_greeted_client ("tcp://127.0.0.1:1");
    client->session_ms = 3000;
    now = zchat_client_now ();
    client->active_ms = now - 60000;
    client->last_recv_ms = now - 3000;
    zchat_client_housekeep (client, now);
    assert (client->state == S_GREETING);
    event = s_test_event (client);
    assert (event && event->type == ZCHAT_EV_DISCONNECTED);
    zchat_event_destroy (&event);
    client->state = S_IDLE;
    zchat_client_destroy (&client);
}

//  Version 6: a caller away longer than the session timeout while the
//  session was idle and connected, then asking something, must not take
//  the session for lost before the broker has had any time to answer (its
//  silence counted from when the caller was last here).
static void
s_test_absent_caller (void)
{
    zchat_client_t *client;
    zsock_t *router = s_test_stand_in (&client);
    client->heartbeat_ms = 200;
    client->session_ms = 600;
    client->timeout_ms = 5000;
    int64_t now = zchat_client_now ();
    client->active_ms = now - 60000;
    client->last_send_ms = now - 60000;
    client->due_ms = 0;
    zchat_event_t *event = zchat_client_next (client, 0);
    assert (event == NULL && client->state == S_READY);
    zclock_sleep (1000);            //  the caller is busy elsewhere
    uint64_t id = zchat_client_rooms (client);
    assert (id);
    event = zchat_client_next (client, 0);
    assert (client->state == S_READY);
    zchat_event_destroy (&event);
    client->state = S_IDLE;
    zchat_client_destroy (&client);
    zsock_destroy (&router);
}

//  CPU time of the calling thread, in ms.
static int64_t
s_test_cpu_ms (void)
{
    struct timespec ts;
    int rc = clock_gettime (CLOCK_THREAD_CPUTIME_ID, &ts);
    assert (rc == 0);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

//  Waiting for an answer sleeps, whatever waits in the queue: events that
//  are not the answer (they went round at full CPU, for as long as the
//  wait), and a batch of them with the SUB ready (the drain leaves the
//  SUB unread then, so it must not be polled either). The wait's CPU is
//  far under its time either way: a busy loop would use all of it.
static void
s_test_wait_sleeps (void)
{
    zchat_client_t *client;
    zsock_t *router = s_test_stand_in (&client);
    //  A PUB the client's SUB reads, ready with one publication
    zsock_t *pub = zsock_new (ZMQ_PUB);
    assert (pub);
    int rc = zsock_bind (pub, "inproc://zchat-test-wait-pub");
    assert (rc == 0);
    zsock_set_subscribe (client->sub, "");
    client->sub_endpoint = strdup ("inproc://zchat-test-wait-pub");
    assert (client->sub_endpoint);
    rc = zsock_connect (client->sub, "%s", client->sub_endpoint);
    assert (rc == 0);

    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 5000 && !(zsock_events (client->sub) & ZMQ_POLLIN); i++) {
            zstr_send (pub, "x");       //  one frame: read and passed over
            zclock_sleep (1);
        }
        assert (zsock_events (client->sub) & ZMQ_POLLIN);
        //  One unrelated event queued, then a whole batch of them
        size_t want = round == 0? 1: S_BATCH;
        while (client->queue.count < want)
            zchat_client_emit_error (client, 0, ZCHAT_ERR_NICK_IN_USE, 0, NULL, NULL, "x");
        int64_t cpu = s_test_cpu_ms ();
        int64_t start = zchat_client_now ();
        assert (zchat_client_wait (client, client->hello_id + 777, 300) == NULL);
        int64_t took = zchat_client_now () - start;
        cpu = s_test_cpu_ms () - cpu;
        assert (took >= 290);
        assert (cpu < took / 3);
        assert (client->queue.count >= want);
    }
    zsock_destroy (&pub);
    client->state = S_IDLE;
    zchat_client_destroy (&client);
    zsock_destroy (&router);
}

//  What a wait reads past is bounded: a broker that floods DMs while we
//  wait for an answer fills the queue up to its limit, and the wait then
//  answers with a local ERROR instead of reading on; the events read are
//  still there for zchat_client_next, and the request's real answer still
//  comes to it.
static void
s_test_wait_bounded (void)
{
    zchat_client_t *client;
    zsock_t *router = s_test_stand_in (&client);
    client->queue_max_bytes = 256 * 1024;
    uint64_t id = zchat_client_rooms (client);
    assert (id);
    char text [4000];
    memset (text, 'd', sizeof (text));
    for (int i = 0; i < 200; i++)
        s_test_answer (router, client, zchat_encode_deliver (&client->buf, 0, "bob",
                                                             ZCHAT_KIND_TEXT, 1, text,
                                                             sizeof (text)));
    zchat_event_t *event = zchat_client_wait (client, id, 5000);
    assert (event && event->type == ZCHAT_EV_ERROR && event->id == id);
    assert (event->code == ZCHAT_CLIENT_FAILED);
    assert (strstr (event->reason, "wait to be read"));
    zchat_event_destroy (&event);
    assert (client->queue.bytes > client->queue_max_bytes);
    assert (client->queue.bytes < client->queue_max_bytes
                                  + S_BATCH * (sizeof (zchat_event_t) + sizeof (text)));
    //  The answer, after the flood: the caller reads everything in order
    s_test_answer (router, client, zchat_encode_roomlist_begin (&client->buf, id));
    size_t dms = 0;
    while ((event = zchat_client_next (client, 2000))) {
        zchat_event_type_t type = event->type;
        assert (type == ZCHAT_EV_DM || (type == ZCHAT_EV_ROOMS && event->id == id));
        if (type == ZCHAT_EV_DM)
            dms++;
        zchat_event_destroy (&event);
        if (type == ZCHAT_EV_ROOMS)
            break;
    }
    assert (dms == 200);
    assert (client->queue.count == 0 && client->queue.bytes == 0);
    client->state = S_IDLE;
    zchat_client_destroy (&client);
    zsock_destroy (&router);
}

//  A join left before it was confirmed is answered, with an ERROR, before
//  the leave: the caller waiting for it would otherwise wait for ever.
static void
s_test_join_then_leave (void)
{
    zchat_client_t *client;
    zsock_t *router = s_test_stand_in (&client);
    uint64_t join_id = zchat_client_join (client, "lobby");
    assert (join_id);
    uint64_t leave_id = zchat_client_leave (client, "lobby");
    assert (leave_id);
    zchat_event_t *event = zchat_client_next (client, 0);
    assert (event && event->type == ZCHAT_EV_ERROR && event->id == join_id);
    assert (event->code == ZCHAT_CLIENT_FAILED && streq (event->room, "lobby"));
    zchat_event_destroy (&event);
    //  A confirmed room's leave answers nothing but the leave
    join_id = zchat_client_join_send_only (client, "ops");
    assert (join_id);
    zchat_client_room_t *room = (zchat_client_room_t *) zhashx_lookup (client->rooms, "ops");
    assert (room);
    room->confirmed = true;
    leave_id = zchat_client_leave (client, "ops");
    assert (leave_id);
    assert (zchat_client_next (client, 0) == NULL);
    client->state = S_IDLE;
    zchat_client_destroy (&client);
    zsock_destroy (&router);
}

//  A text cut to fit ends on a whole UTF-8 character.
static void
s_test_utf8_cut (void)
{
    //  "a", then e-acute (2 bytes), a euro sign (3), a G clef (4)
    const char *text = "a\xc3\xa9\xe2\x82\xac\xf0\x9d\x84\x9e";
    size_t cuts [][2] = {       //  len, where to cut
        { 0, 0 }, { 1, 1 }, { 2, 1 }, { 3, 3 }, { 4, 3 }, { 5, 3 }, { 6, 6 },
        { 7, 6 }, { 8, 6 }, { 9, 6 }, { 10, 10 }
    };
    for (size_t i = 0; i < sizeof (cuts) / sizeof (cuts [0]); i++)
        assert (zchat_client_utf8_cut (text, cuts [i][0]) == cuts [i][1]);
    //  Not UTF-8: left as it is
    assert (zchat_client_utf8_cut ("\x80\x80", 2) == 2);
    assert (zchat_client_utf8_cut ("a\x80\x80\x80\x80", 5) == 5);
    char dest [5];
    zchat_client_copy (dest, sizeof (dest), text);
    assert (streq (dest, "a\xc3\xa9"));
    zchat_client_copy (dest, sizeof (dest), "abcdef");
    assert (streq (dest, "abcd"));
}

//  Send-only rooms: JOIN and nothing more. What the SUB subscribes to is
//  watched on an XPUB standing in for the broker's PUB.
static void
s_test_send_only (void)
{
    zsock_t *xpub = zsock_new (ZMQ_XPUB);
    assert (xpub);
    int on = 1;
    int rc = zmq_setsockopt (zsock_resolve (xpub), ZMQ_XPUB_VERBOSER, &on, sizeof (on));
    assert (rc == 0);
    int port = zsock_bind (xpub, "tcp://127.0.0.1:*");
    assert (port > 0);
    char endpoint [64];
    snprintf (endpoint, sizeof (endpoint), "tcp://127.0.0.1:%d", port);
    zchat_client_t *client = s_test_greeted_client (endpoint);
    zchat_buf_t *buf = &client->buf;

    //  A send-only join is reported at JOINED: no probe, no sequencing
    uint64_t id = zchat_client_join_send_only (client, "ops");
    assert (id);
    assert (zchat_client_join_send_only (client, "ops") == id);     //  on its way
    zchat_client_room_t *room = (zchat_client_room_t *) zhashx_lookup (client->rooms, "ops");
    assert (room && room->send_only && room->state == R_JOINING);
    uint64_t join = s_test_request (client, RQ_JOIN, "ops");
    assert (join);
    s_test_feed (client, false, zchat_encode_joined (buf, join, "ops", 7, 1, 2, "t"));
    zchat_event_t *event = s_test_event (client);
    assert (event && event->type == ZCHAT_EV_JOINED && event->id == id);
    assert (event->seq == 7 && streq (event->room, "ops") && streq (event->topic, "t"));
    zchat_event_destroy (&event);
    assert (room->state == R_LIVE && room->confirmed);
    assert (s_test_request (client, RQ_PROBE, "ops") == 0);
    assert (!zchat_sequencer_started (room->sequencer));

    //  The SUB never subscribed to it: the first subscription the PUB sees
    //  is that of a receiving room joined after it
    uint64_t mark = zchat_client_join (client, "mark");
    assert (mark && mark != id);
    s_test_expect_subscription (xpub, "+mark:");

    //  Its traffic, should any reach the SUB, never reaches the caller
    s_test_feed (client, true, zchat_encode_message (buf, 0, "ops", 8, 8, "bob",
                                                     ZCHAT_KIND_TEXT, "hi", 2));
    zchat_encode_messages_begin (buf, "ops");
    zchat_encode_messages_add (buf, 9, 9, "bob", ZCHAT_KIND_TEXT, "a", 1);
    s_test_feed (client, true, zchat_encode_messages_add (buf, 10, 9, "bob",
                                                          ZCHAT_KIND_TEXT, "b", 1));
    s_test_feed (client, true, zchat_encode_event (buf, 0, "ops", 9, ZCHAT_EVENT_JOIN,
                                                   "carol", ""));
    s_test_feed (client, true, zchat_encode_event (buf, 0, "ops", 9, ZCHAT_EVENT_TOPIC,
                                                   "carol", "new"));
    s_test_feed (client, true, zchat_encode_probe (buf, 0, "ops", "alice"));
    assert (s_test_event (client) == NULL);
    assert (!zchat_sequencer_started (room->sequencer));
    //  A PONG telling newer messages fetches nothing
    zchat_encode_pong_begin (buf, 0);
    s_test_feed (client, false, zchat_encode_pong_add (buf, "ops", 20));
    assert (room->tail_due_ms == 0);
    zchat_client_room_tick (room, zchat_client_now () + 60000);
    assert (room->fetch_id == 0 && s_test_request (client, RQ_FETCH, "ops") == 0);
    assert (s_test_event (client) == NULL);

    //  Sends go as from any member; a new session joins the room again,
    //  send-only still, reports nothing, and sends again what is pending
    uint64_t say = zchat_client_say (client, "ops", "yo", 2, false);
    assert (say && zchat_client_pending (client) == 1);
    s_test_feed (client, false, zchat_encode_welcome (buf, 0, ZCHAT_VERSION, "alice",
                                                      "token", 0, "", 1000, 3000, 0, false));
    join = s_test_request (client, RQ_JOIN, "ops");
    assert (join && room->send_only && room->state == R_JOINING);
    assert (zchat_client_pending (client) == 1);
    s_test_feed (client, false, zchat_encode_joined (buf, join, "ops", 11, 1, 2, "t"));
    assert (room->state == R_LIVE && room->send_only);
    assert (s_test_request (client, RQ_PROBE, "ops") == 0);
    assert (s_test_event (client) == NULL);
    s_test_feed (client, false, zchat_encode_ack (buf, say, "ops", 12, 12));
    assert (s_test_expect_event (client, ZCHAT_EV_ACK, say) == 12);
    assert (zchat_client_pending (client) == 0);

    //  Joined again, send-only: answered under the new id
    uint64_t again = zchat_client_join_send_only (client, "ops");
    assert (again && again != id);
    join = s_test_request (client, RQ_JOIN, "ops");
    assert (join);
    s_test_feed (client, false, zchat_encode_joined (buf, join, "ops", 12, 1, 2, "t"));
    assert (s_test_expect_event (client, ZCHAT_EV_JOINED, again) == 12);
    assert (room->send_only);

    //  A receiving join upgrades it: subscribe, join, probe. Refused, the
    //  room is send-only again, and its subscription goes
    uint64_t up = zchat_client_join (client, "ops");
    assert (up && up != again);
    assert (!room->send_only && room->upgrade && !room->confirmed);
    s_test_expect_subscription (xpub, "+ops:");
    join = s_test_request (client, RQ_JOIN, "ops");
    assert (join);
    s_test_feed (client, false, zchat_encode_error (buf, join, ZCHAT_ERR_RATE_LIMITED, 100,
                                                    "slow down"));
    event = s_test_event (client);
    assert (event && event->type == ZCHAT_EV_ERROR && event->id == up);
    assert (event->code == ZCHAT_ERR_RATE_LIMITED && streq (event->room, "ops"));
    zchat_event_destroy (&event);
    assert (room->send_only && room->confirmed && room->state == R_LIVE && !room->upgrade);
    assert (zhashx_lookup (client->rooms, "ops") == room);
    s_test_expect_subscription (xpub, "-ops:");

    //  Accepted, it is reported once live, and receives from then on
    up = zchat_client_join (client, "ops");
    assert (up);
    s_test_expect_subscription (xpub, "+ops:");
    join = s_test_request (client, RQ_JOIN, "ops");
    assert (join);
    s_test_feed (client, false, zchat_encode_joined (buf, join, "ops", 12, 1, 2, "t"));
    assert (room->state == R_PROBING && s_test_request (client, RQ_PROBE, "ops"));
    assert (s_test_event (client) == NULL);
    //  (version 5: it probes with a tag of its own, subscribed after the
    //  room's topic; our probe on the room's topic is no longer the sign,
    //  the one on the tag's is, and then the tag goes)
    assert (room->probe_topic_size == 1 + 16);
    char tag_on [2 + ZCHAT_MAX_PROBE_TOPIC_FRAME], tag_off [2 + ZCHAT_MAX_PROBE_TOPIC_FRAME];
    snprintf (tag_on, sizeof (tag_on), "+%s", (const char *) room->probe_topic);
    snprintf (tag_off, sizeof (tag_off), "-%s", (const char *) room->probe_topic);
    s_test_expect_subscription (xpub, tag_on);
    s_test_feed (client, true, zchat_encode_probe (buf, 0, "ops", "alice"));
    assert (room->state == R_PROBING && s_test_event (client) == NULL);
    s_test_feed_on (client, room->probe_topic, room->probe_topic_size,
                    zchat_encode_probe (buf, 0, "ops", "alice"));
    assert (s_test_expect_event (client, ZCHAT_EV_JOINED, up) == 12);
    s_test_expect_subscription (xpub, tag_off);
    s_test_feed (client, true, zchat_encode_message (buf, 0, "ops", 13, 13, "bob",
                                                     ZCHAT_KIND_TEXT, "hi", 2));
    assert (s_test_expect_event (client, ZCHAT_EV_MESSAGE, 0) == 13);

    //  A send-only join of a receiving room changes nothing
    again = zchat_client_join_send_only (client, "ops");
    assert (again);
    join = s_test_request (client, RQ_JOIN, "ops");
    assert (join);
    s_test_feed (client, false, zchat_encode_joined (buf, join, "ops", 13, 1, 2, "t"));
    assert (s_test_expect_event (client, ZCHAT_EV_JOINED, again) == 13);
    assert (!room->send_only);
    s_test_feed (client, true, zchat_encode_message (buf, 0, "ops", 14, 14, "bob",
                                                     ZCHAT_KIND_TEXT, "hi", 2));
    assert (s_test_expect_event (client, ZCHAT_EV_MESSAGE, 0) == 14);

    //  Leaving a receiving room unsubscribes; leaving a send-only one has
    //  nothing to unsubscribe
    assert (zchat_client_leave (client, "ops"));
    s_test_expect_subscription (xpub, "-ops:");
    uint64_t quiet = zchat_client_join_send_only (client, "quiet");
    assert (quiet);
    assert (zchat_client_leave (client, "quiet"));
    zchat_event_t *cancelled = s_test_event (client);
    assert (cancelled && cancelled->type == ZCHAT_EV_ERROR && cancelled->id == quiet);
    zchat_event_destroy (&cancelled);
    assert (zchat_client_join (client, "mark2"));
    s_test_expect_subscription (xpub, "+mark2:");
    assert (s_test_event (client) == NULL);

    zchat_client_destroy (&client);
    zsock_destroy (&xpub);
}

//  The next subscription change an XPUB sees within timeout_ms (as
//  s_test_subscription), stirring the client's SUB meanwhile as the
//  caller's loop does: a SUB sends what it is subscribed to when a new
//  connection is attached, which it does as it processes its commands.
static char *
s_test_subscription_stirred (zsock_t *xpub, zchat_client_t *client, int timeout_ms)
{
    int64_t deadline = zclock_mono () + timeout_ms;
    while (true) {
        zsock_events (client->sub);
        char *change = s_test_subscription (xpub, 10);
        if (change || zclock_mono () >= deadline)
            return change;
    }
}

//  An XPUB showing every subscription change, bound at endpoint.
static zsock_t *
s_test_xpub_at (const char *endpoint)
{
    zsock_t *xpub = zsock_new (ZMQ_XPUB);
    assert (xpub);
    int on = 1;
    int rc = zmq_setsockopt (zsock_resolve (xpub), ZMQ_XPUB_VERBOSER, &on, sizeof (on));
    assert (rc == 0);
    rc = zsock_bind (xpub, "%s", endpoint);
    assert (rc == 0);
    return xpub;
}

//  Tagged probes (version 5) rest on the order in which subscriptions
//  reach the PUB: a tag's after its room's. Over a connection the SUB
//  has, they go in the order of the calls, and the room's was first. A
//  SUB that connects anew (the broker restarted, here an XPUB on an ipc
//  path closed and bound again) sends everything it is subscribed to in
//  ascending byte order instead, whatever the order of the calls: 0xFF +
//  tag sorts after every room's topic, so the tag still goes last, also
//  after a room subscribed after it. Our probe on the tag's topic makes
//  the room live and unsubscribes the tag; a room left while probing
//  unsubscribes its tag, then its topic.
static void
s_test_tag_order (void)
{
    char dir [] = "/tmp/zchat-tag-order-XXXXXX";
    assert (mkdtemp (dir));
    char endpoint [64];
    snprintf (endpoint, sizeof (endpoint), "ipc://%s/pub", dir);
    zsock_t *xpub = s_test_xpub_at (endpoint);
    zchat_client_t *client = s_test_greeted_client (endpoint);
    assert (client->version >= 5);
    zchat_buf_t *buf = &client->buf;

    uint64_t ops = zchat_client_join (client, "ops");
    assert (ops && client->sub_endpoint);
    char *change = s_test_subscription_stirred (xpub, client, 5000);
    assert (change && streq (change, "+ops:"));
    zstr_free (&change);
    uint64_t join = s_test_request (client, RQ_JOIN, "ops");
    assert (join);
    s_test_feed (client, false, zchat_encode_joined (buf, join, "ops", 5, 1, 2, ""));
    zchat_client_room_t *room = (zchat_client_room_t *) zhashx_lookup (client->rooms, "ops");
    assert (room && room->state == R_PROBING && room->probe_topic_size == 1 + 16);
    char tag_on [2 + ZCHAT_MAX_PROBE_TOPIC_FRAME], tag_off [2 + ZCHAT_MAX_PROBE_TOPIC_FRAME];
    snprintf (tag_on, sizeof (tag_on), "+%s", (const char *) room->probe_topic);
    snprintf (tag_off, sizeof (tag_off), "-%s", (const char *) room->probe_topic);
    s_test_expect_subscription (xpub, tag_on);
    uint64_t zz = zchat_client_join (client, "zz");
    assert (zz);
    s_test_expect_subscription (xpub, "+zz:");

    //  The broker's PUB goes and comes back at the same place
    zsock_destroy (&xpub);
    xpub = s_test_xpub_at (endpoint);
    const char *expected [] = { "+ops:", "+zz:", tag_on };
    for (size_t i = 0; i < sizeof (expected) / sizeof (expected [0]); i++) {
        change = s_test_subscription_stirred (xpub, client, 5000);
        assert (change && streq (change, expected [i]));
        zstr_free (&change);
    }

    s_test_feed_on (client, room->probe_topic, room->probe_topic_size,
                    zchat_encode_probe (buf, 0, "ops", "alice"));
    assert (s_test_expect_event (client, ZCHAT_EV_JOINED, ops) == 5);
    assert (room->state == R_LIVE && room->probe_topic_size == 0);
    s_test_expect_subscription (xpub, tag_off);

    join = s_test_request (client, RQ_JOIN, "zz");
    assert (join);
    s_test_feed (client, false, zchat_encode_joined (buf, join, "zz", 0, 0, 1, ""));
    room = (zchat_client_room_t *) zhashx_lookup (client->rooms, "zz");
    assert (room && room->state == R_PROBING && room->probe_topic_size == 1 + 16);
    snprintf (tag_on, sizeof (tag_on), "+%s", (const char *) room->probe_topic);
    snprintf (tag_off, sizeof (tag_off), "-%s", (const char *) room->probe_topic);
    s_test_expect_subscription (xpub, tag_on);
    assert (zchat_client_leave (client, "zz"));
    s_test_expect_subscription (xpub, tag_off);
    s_test_expect_subscription (xpub, "-zz:");
    zchat_event_t *cancelled = s_test_event (client);     //  the join, left while probing
    assert (cancelled && cancelled->type == ZCHAT_EV_ERROR && cancelled->id == zz);
    zchat_event_destroy (&cancelled);
    assert (s_test_event (client) == NULL);

    client->state = S_IDLE;
    zchat_client_destroy (&client);
    zsock_destroy (&xpub);
    //  libzmq may or may not have removed the ipc file by now
    char path [sizeof (dir) + 8];
    snprintf (path, sizeof (path), "%s/pub", dir);
    if (unlink (path) && errno != ENOENT)
        zsys_warning ("cannot remove %s: %s", path, strerror (errno));
    if (rmdir (dir))
        zsys_warning ("cannot remove %s: %s", dir, strerror (errno));
}

//  An XPUB standing in for the broker's PUB on a port of the kernel's
//  choosing (*port_p), showing every subscription; *monitor_p shows each
//  connection made to it and each one closed.
static zsock_t *
s_test_pub_new (int *port_p, zsock_t **monitor_p)
{
    zsock_t *xpub = zsock_new (ZMQ_XPUB);
    assert (xpub);
    int on = 1;
    int rc = zmq_setsockopt (zsock_resolve (xpub), ZMQ_XPUB_VERBOSER, &on, sizeof (on));
    assert (rc == 0);
    //  A name of its own each time: a destroyed XPUB's address comes back,
    //  and its monitor's endpoint may not be unbound yet
    static int s_pubs_made = 0;
    char endpoint [64];
    snprintf (endpoint, sizeof (endpoint), "inproc://zchat-test-pub-%d", ++s_pubs_made);
    rc = zmq_socket_monitor (zsock_resolve (xpub), endpoint,
                             ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED);
    assert (rc == 0);
    *monitor_p = zsock_new (ZMQ_PAIR);
    assert (*monitor_p);
    rc = zsock_connect (*monitor_p, "%s", endpoint);
    assert (rc == 0);
    *port_p = zsock_bind (xpub, "tcp://127.0.0.1:*");
    assert (*port_p > 0);
    return xpub;
}

static void
s_test_pub_destroy (zsock_t **xpub_p, zsock_t **monitor_p)
{
    zmq_socket_monitor (zsock_resolve (*xpub_p), NULL, 0);
    zsock_destroy (monitor_p);
    zsock_destroy (xpub_p);
}

//  The next event a stand-in PUB's monitor shows (ZMQ_EVENT_ACCEPTED or
//  ZMQ_EVENT_DISCONNECTED) within timeout_ms, or 0 if none came. The
//  client's SUB is stirred meanwhile, as the caller's loop does: a
//  disconnect ends the connection only once the SUB has processed the
//  commands that libzmq's I/O thread sent it.
static int
s_test_pub_event (zsock_t *monitor, zchat_client_t *client, int timeout_ms)
{
    zsock_set_rcvtimeo (monitor, 0);
    int64_t deadline = zclock_mono () + timeout_ms;
    while (true) {
        zsock_events (client->sub);
        zmsg_t *msg = zmsg_recv (monitor);
        if (msg) {
            zframe_t *frame = zmsg_first (msg);
            uint16_t event = 0;
            if (frame && zframe_size (frame) >= 2)
                memcpy (&event, zframe_data (frame), 2);
            zmsg_destroy (&msg);
            return event;
        }
        if (zclock_mono () >= deadline)
            return 0;
        zclock_sleep (5);
    }
}

//  Feed the client a WELCOME answering id (0: a new session unasked)
//  that puts the broker's PUB at pub_port on the server's host.
static void
s_test_welcome_pub (zchat_client_t *client, uint64_t id, int pub_port)
{
    s_test_feed (client, false, zchat_encode_welcome (&client->buf, id, ZCHAT_VERSION,
                                                      "alice", "token", (uint16_t) pub_port,
                                                      "", 1000, 3000, 0, false));
}

//  The SUB connects only when a room first wants it (PROTOCOL.md §1): a
//  greeting, a send-only join, and a PUB that moves meanwhile connect
//  nothing; the first receiving join (here the upgrade of a send-only
//  room) connects where the PUB is then, before it subscribes; a PUB that
//  moves after is followed; leaving every room keeps the connection. Two
//  XPUBs stand in for the broker's PUB before and after it moves, their
//  monitors showing every connection. Answers are fed in by hand.
static void
s_test_lazy_sub (void)
{
    int port_a, port_b;
    zsock_t *monitor_a, *monitor_b;
    zsock_t *pub_a = s_test_pub_new (&port_a, &monitor_a);
    zsock_t *pub_b = s_test_pub_new (&port_b, &monitor_b);
    zchat_client_t *client = zchat_client_new ("tcp://127.0.0.1:1", "alice");
    assert (client);
    zchat_buf_t *buf = &client->buf;

    //  Greeted: the PUB is known, and not connected to
    client->state = S_GREETING;
    s_test_welcome_pub (client, client->hello_id, port_a);
    assert (client->state == S_READY);
    assert (client->pub_endpoint && !client->sub_endpoint);
    //  A send-only join needs no SUB
    uint64_t ops = zchat_client_join_send_only (client, "ops");
    assert (ops);
    uint64_t join = s_test_request (client, RQ_JOIN, "ops");
    assert (join);
    s_test_feed (client, false, zchat_encode_joined (buf, join, "ops", 7, 1, 2, "t"));
    assert (s_test_expect_event (client, ZCHAT_EV_JOINED, ops) == 7);
    //  A new session whose PUB moved: remembered, nothing followed
    s_test_welcome_pub (client, 0, port_b);
    assert (client->pub_endpoint && !client->sub_endpoint);
    join = s_test_request (client, RQ_JOIN, "ops");
    assert (join);
    s_test_feed (client, false, zchat_encode_joined (buf, join, "ops", 7, 1, 2, "t"));
    assert (s_test_event (client) == NULL);
    //  (the monitors keep what they saw: one wait covers all of the above)
    assert (s_test_pub_event (monitor_a, client, 300) == 0);
    assert (s_test_pub_event (monitor_b, client, 0) == 0);

    //  The first receiving join, an upgrade, connects to where the PUB is
    //  now and subscribes; the next only subscribes
    uint64_t up = zchat_client_join (client, "ops");
    assert (up && up != ops);
    assert (client->sub_endpoint && streq (client->sub_endpoint, client->pub_endpoint));
    assert (s_test_pub_event (monitor_b, client, 5000) == ZMQ_EVENT_ACCEPTED);
    s_test_expect_subscription (pub_b, "+ops:");
    uint64_t lobby = zchat_client_join (client, "lobby");
    assert (lobby);
    s_test_expect_subscription (pub_b, "+lobby:");
    assert (s_test_event (client) == NULL);

    //  A new session whose PUB moved, while connected: followed, with
    //  every subscription (in no set order)
    s_test_welcome_pub (client, 0, port_a);
    assert (s_test_pub_event (monitor_a, client, 5000) == ZMQ_EVENT_ACCEPTED);
    assert (s_test_pub_event (monitor_b, client, 5000) == ZMQ_EVENT_DISCONNECTED);
    char *first = s_test_subscription (pub_a, 5000);
    char *second = s_test_subscription (pub_a, 5000);
    assert (first && second);
    assert ((streq (first, "+ops:") && streq (second, "+lobby:"))
        ||  (streq (first, "+lobby:") && streq (second, "+ops:")));
    zstr_free (&first);
    zstr_free (&second);
    //  Leaving every room unsubscribes but stays connected, also across
    //  a new session at the same place
    assert (zchat_client_leave (client, "ops"));
    s_test_expect_subscription (pub_a, "-ops:");
    assert (zchat_client_leave (client, "lobby"));
    s_test_expect_subscription (pub_a, "-lobby:");
    s_test_welcome_pub (client, 0, port_a);
    assert (client->sub_endpoint && streq (client->sub_endpoint, client->pub_endpoint));
    assert (s_test_pub_event (monitor_a, client, 300) == 0);
    assert (s_test_pub_event (monitor_b, client, 0) == 0);
    zchat_event_t *event;
    while ((event = s_test_event (client)))
        zchat_event_destroy (&event);
    zchat_client_destroy (&client);
    s_test_pub_destroy (&pub_a, &monitor_a);
    s_test_pub_destroy (&pub_b, &monitor_b);

    //  A PUB endpoint the SUB cannot connect to fails only what needs it:
    //  the greeting does not, a receiving join does with an ERROR event
    //  under its id, an upgrade leaves the room send-only (and a send-only
    //  join still on its way is answered as ever, under its own id)
    client = s_test_greeted_client ("nonsense");
    buf = &client->buf;
    assert (!client->sub_endpoint);
    lobby = zchat_client_join (client, "lobby");
    assert (lobby);
    event = s_test_event (client);
    assert (event && event->type == ZCHAT_EV_ERROR && event->id == lobby);
    assert (event->code == ZCHAT_CLIENT_FAILED && streq (event->room, "lobby"));
    assert (strstr (event->reason, "nonsense"));
    zchat_event_destroy (&event);
    assert (!zhashx_lookup (client->rooms, "lobby"));
    assert (s_test_request (client, RQ_JOIN, "lobby") == 0);
    ops = zchat_client_join_send_only (client, "ops");
    assert (ops);
    join = s_test_request (client, RQ_JOIN, "ops");
    assert (join);
    up = zchat_client_join (client, "ops");
    assert (up && up != ops);
    assert (s_test_expect_event (client, ZCHAT_EV_ERROR, up) == 0);
    s_test_feed (client, false, zchat_encode_joined (buf, join, "ops", 7, 1, 2, "t"));
    assert (s_test_expect_event (client, ZCHAT_EV_JOINED, ops) == 7);
    up = zchat_client_join (client, "ops");
    assert (up && up != ops);
    assert (s_test_expect_event (client, ZCHAT_EV_ERROR, up) == 0);
    zchat_client_room_t *room = (zchat_client_room_t *) zhashx_lookup (client->rooms, "ops");
    assert (room && room->send_only && room->confirmed && !room->upgrade);
    assert (s_test_event (client) == NULL && !client->sub_endpoint);
    zchat_client_destroy (&client);

    //  A receiving join while the first greeting is on its way is no
    //  error: the WELCOME connects the SUB, whose subscription waited
    pub_a = s_test_pub_new (&port_a, &monitor_a);
    client = zchat_client_new ("tcp://127.0.0.1:1", "alice");
    assert (client);
    client->state = S_GREETING;
    lobby = zchat_client_join (client, "lobby");
    assert (lobby && !client->sub_endpoint);
    assert (s_test_event (client) == NULL);
    assert (zhashx_lookup (client->rooms, "lobby"));
    s_test_welcome_pub (client, client->hello_id, port_a);
    assert (client->state == S_READY && client->sub_endpoint);
    assert (s_test_pub_event (monitor_a, client, 5000) == ZMQ_EVENT_ACCEPTED);
    s_test_expect_subscription (pub_a, "+lobby:");
    while ((event = s_test_event (client)))
        zchat_event_destroy (&event);
    zchat_client_destroy (&client);
    s_test_pub_destroy (&pub_a, &monitor_a);

    //  A WELCOME that names no PUB endpoint at all greets a sender all
    //  the same; a receiving join then fails, a send-only one does not
    client = zchat_client_new ("tcp://127.0.0.1:1", "alice");
    assert (client);
    client->state = S_GREETING;
    s_test_welcome_pub (client, client->hello_id, 0);
    assert (client->state == S_READY && !client->pub_endpoint);
    lobby = zchat_client_join (client, "lobby");
    assert (lobby);
    event = s_test_event (client);
    assert (event && event->type == ZCHAT_EV_ERROR && event->id == lobby);
    assert (event->code == ZCHAT_CLIENT_FAILED && strstr (event->reason, "PUB endpoint"));
    zchat_event_destroy (&event);
    assert (!zhashx_lookup (client->rooms, "lobby"));
    ops = zchat_client_join_send_only (client, "ops");
    assert (ops && s_test_request (client, RQ_JOIN, "ops"));
    assert (s_test_event (client) == NULL && !client->sub_endpoint);
    zchat_client_destroy (&client);
}

void
zchat_client_test (bool verbose)
{
    if (verbose)
        printf (" * zchat_client: ");

    //  Bad arguments: no client
    assert (zchat_client_new (NULL, "alice") == NULL);
    assert (zchat_client_new ("tcp://127.0.0.1:5555", NULL) == NULL);
    assert (zchat_client_new ("tcp://127.0.0.1:5555", "") == NULL);
    assert (zchat_client_new ("tcp://127.0.0.1:5555", "1alice") == NULL);
    assert (zchat_client_new ("tcp://127.0.0.1:5555", "al ice") == NULL);
    assert (zchat_client_new ("tcp://127.0.0.1:5555",
                              "a23456789012345678901234567890123") == NULL);

    //  A stand-in that accepts connections and never answers
    zsock_t *router = zsock_new (ZMQ_ROUTER);
    assert (router);
    int port = zsock_bind (router, "tcp://127.0.0.1:*");
    assert (port > 0);
    char endpoint [64];
    snprintf (endpoint, sizeof (endpoint), "tcp://127.0.0.1:%d", port);

    zchat_client_t *client = zchat_client_new (endpoint, "alice");
    assert (client);
    assert (streq (zchat_client_nick (client), "alice"));
    assert (zchat_client_dealer (client) && zchat_client_sub (client));
    assert (zchat_client_pending (client) == 0);
    assert (zchat_client_due_ms (client) == -1);
    assert (zchat_client_next (client, 0) == NULL);

    //  Invalid input is refused before anything is sent
    assert (zchat_client_say (client, "lobby", "\xff", 1, false) == 0);
    assert (strstr (zchat_client_error (client), "UTF-8"));
    assert (zchat_client_say (client, "lobby", "a\0b", 3, false) == 0);
    assert (zchat_client_say (client, "lobby", "\xc0\xaf", 2, false) == 0);
    assert (zchat_client_say (client, "lob:by", "hi", 2, false) == 0);
    assert (strstr (zchat_client_error (client), "room"));
    assert (zchat_client_say (client, NULL, "hi", 2, false) == 0);
    char *big = (char *) malloc (ZCHAT_MAX_TEXT + 1);
    assert (big);
    memset (big, 'x', ZCHAT_MAX_TEXT + 1);
    assert (zchat_client_say (client, "lobby", big, ZCHAT_MAX_TEXT + 1, false) == 0);
    assert (strstr (zchat_client_error (client), "too long"));
    free (big);
    assert (zchat_client_dm (client, "-bob", "hi", 2, false) == 0);
    assert (zchat_client_dm (client, "bob", "\xed\xa0\x80", 3, false) == 0);
    assert (zchat_client_join (client, "") == 0);
    assert (zchat_client_set_nick (client, "9lives") == 0);
    assert (zchat_client_topic (client, "lobby", "\xff") == 0);
    //  Valid, but not connected yet
    assert (zchat_client_say (client, "lobby", "hi", 2, false) == 0);
    assert (strstr (zchat_client_error (client), "not connected"));
    assert (zchat_client_join (client, "lobby") == 0);
    assert (zchat_client_pending (client) == 0);

    //  CURVE options that cannot be loaded
    assert (zchat_client_set_curve (client, "/nonexistent/cert_secret",
                                    "0000000000000000000000000000000000000000") == -1);

    //  Nobody answers: a timeout within about the time given
    int64_t start = zclock_mono ();
    assert (zchat_client_connect (client, 300) == ZCHAT_CLIENT_TIMEOUT);
    int64_t took = zclock_mono () - start;
    assert (took >= 290 && took < 1500);
    assert (strstr (zchat_client_error (client), "cannot reach broker at"));
    assert (strstr (zchat_client_error (client), "within 0.3 s"));
    zchat_client_destroy (&client);
    assert (client == NULL);
    zchat_client_destroy (&client);

    //  The broker refuses: its reason is ours
    zactor_t *refuser = zactor_new (s_test_refuser, router);
    assert (refuser);
    client = zchat_client_new (endpoint, "alice");
    assert (client);
    assert (zchat_client_connect (client, 3000) == ZCHAT_CLIENT_REFUSED);
    assert (streq (zchat_client_error (client), "nick alice is in use"));
    zchat_client_destroy (&client);
    zactor_destroy (&refuser);
    zsock_destroy (&router);

    //  A bad endpoint is a bad argument
    client = zchat_client_new ("nonsense", "alice");
    assert (client);
    assert (zchat_client_connect (client, 100) == ZCHAT_CLIENT_INVALID);
    zchat_client_destroy (&client);

    //  Frames over the limits are refused by libzmq before they are
    //  allocated, on both sockets, and few are queued
    client = zchat_client_new ("tcp://127.0.0.1:1", "alice");
    assert (client);
    assert (zsock_maxmsgsize (zchat_client_dealer (client)) == S_DEALER_MAXMSGSIZE);
    assert (zsock_maxmsgsize (zchat_client_sub (client)) == S_SUB_MAXMSGSIZE);
    assert (S_DEALER_MAXMSGSIZE >= ZCHAT_MAX_FRAME);
    assert (S_SUB_MAXMSGSIZE >= ZCHAT_HEADER_SIZE + 1 + ZCHAT_MAX_ROOM + 8 + 8
                                + 1 + ZCHAT_MAX_NICK + 1 + 4 + ZCHAT_MAX_TEXT);
    assert (zsock_rcvhwm (zchat_client_dealer (client)) == S_DEALER_RCVHWM);
    assert (zsock_rcvhwm (zchat_client_sub (client)) == S_SUB_RCVHWM);
    assert (zchat_client_max_text (client) == 0);
    s_test_hostile_names (client);
    zchat_client_destroy (&client);

    s_test_send_only ();
    s_test_tag_order ();
    s_test_lazy_sub ();
    s_test_ack_batches ();
    s_test_send_cap ();
    s_test_late_429_while_greeting ();
    s_test_dm_refused ();
    s_test_dm_window ();
    s_test_resend_after_429 ();
    s_test_absent_caller ();
    s_test_ping_policy ();
    s_test_wait_sleeps ();
    s_test_wait_bounded ();
    s_test_utf8_cut ();
    s_test_join_then_leave ();

    if (verbose)
        printf ("OK\n");
}

